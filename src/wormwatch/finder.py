"""Finding hosts by address among every tracked host, for the live table's filter.

aggregate -> judge -> **(finder)** -> ``Snapshot.find_hosts`` -> present/live.

In: a filter text as the operator typed it (:class:`~wormwatch.nets.AddressFilter`:
an address prefix, an address in any spelling, a CIDR), the aggregate's address
words and the judge's ranking. Out: the best-ranked matching hosts, at most
``TOP_HOSTS``, in the order :meth:`~wormwatch.judge.Judge.ranked` gives every host,
and how many hosts match.

Cost: whether a host matches is kept per host id, so a text is tested once per
host. A new filter text costs one pass over every tracked host (a Python call per
address for a text prefix, about 0.5 µs each; a CIDR is tested on the words at
once). After that, the hosts that arrived since the last pass are tested at most
every ``RETEST_S`` wall seconds, and no sooner than ten times the last pass took
(a flood of new sources must not turn the filter into per-host Python at every
refresh); each call in between only ranks the matches found and reads out at most
``TOP_HOSTS`` of them. The kept answers follow the aggregate's evictions
(:meth:`HostFinder.renumber`). Nothing here runs while no filter is set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import numpy as np

from wormwatch.aggregate import Aggregator, Renumbering
from wormwatch.judge import TOP_HOSTS, Judge
from wormwatch.model import BOOL, HostView
from wormwatch.nets import AddressFilter

RETEST_S: Final = 2.0  # new hosts are tested against the filter at most this often


class HostFinder:
    """The hosts of ``agg`` whose address passes a filter text, ranked by ``judge``;
    ``clock``: wall seconds, for the rate of the passes over new hosts."""

    def __init__(
        self, agg: Aggregator, judge: Judge, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.agg = agg
        self.judge = judge
        self.clock = clock
        self._next_s = 0.0  # wall time of the next pass over new hosts
        self._text: str | None = None
        # per host id 0 .. len - 1: whether its address passes self._text
        self._hits: BOOL = np.zeros(0, np.bool_)

    def renumber(self, renumbering: Renumbering) -> None:
        """Follow the aggregate's host ids after it evicted hosts (it keeps the
        survivors in their order, so the answers kept stay a prefix of the ids)."""
        if self._text is None:
            return
        mapping = renumbering.mapping
        n = min(self._hits.shape[0], mapping.shape[0])
        self._hits = self._hits[:n][mapping[:n] >= 0]

    def find(self, text: str) -> tuple[list[HostView], int]:
        """The best-ranked hosts (at most ``TOP_HOSTS``) whose address passes
        ``text``, with their verdicts, and how many hosts pass it."""
        n, now = self.agg.n_hosts, self.clock()
        if text != self._text or self._hits.shape[0] > n:
            self._text, self._hits, self._next_s = text, np.zeros(0, np.bool_), now
        done = self._hits.shape[0]
        if done < n and now >= self._next_s:
            started = time.perf_counter()
            hi, lo = self.agg.address_words()
            new = AddressFilter.of(text).matches_words(hi[done:], lo[done:])
            self._hits = np.concatenate([self._hits, new])
            self._next_s = now + max(RETEST_S, 10 * (time.perf_counter() - started))
        ids = np.flatnonzero(self._hits).astype(np.int64)
        best = self.judge.ranked(self.agg, TOP_HOSTS, among=ids)
        return self.judge.views_of(self.agg, best), int(ids.shape[0])
