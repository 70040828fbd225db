"""Finding hosts by address among every tracked host, for the live table's filter.

aggregate -> judge -> **(finder)** -> ``Snapshot.find_hosts`` -> present/live.

In: a filter text as the operator typed it (:class:`~wormwatch.nets.AddressFilter`:
an address prefix, an address in any spelling, a CIDR), the aggregate's address
words and the judge's ranking. Out: the best-ranked matching hosts, at most
``TOP_HOSTS``, in the order :meth:`~wormwatch.judge.Judge.ranked` gives every host,
and how many hosts match.

Cost: whether a host matches is kept per host id, so a text is tested once per
host: a new filter text costs one pass over every tracked host (a Python call per
address for a text prefix, about 0.5 µs each; a CIDR is tested on the words at
once), and each later call only the hosts that arrived since the last, then ranks
the matches and reads out at most ``TOP_HOSTS`` of them. The kept answers follow
the aggregate's evictions (:meth:`HostFinder.renumber`). Nothing here runs while
no filter is set.
"""

from __future__ import annotations

import numpy as np

from wormwatch.aggregate import Aggregator, Renumbering
from wormwatch.judge import TOP_HOSTS, Judge
from wormwatch.model import BOOL, HostView
from wormwatch.nets import AddressFilter


class HostFinder:
    """The hosts of ``agg`` whose address passes a filter text, ranked by ``judge``."""

    def __init__(self, agg: Aggregator, judge: Judge) -> None:
        self.agg = agg
        self.judge = judge
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
        n = self.agg.n_hosts
        if text != self._text or self._hits.shape[0] > n:
            self._text, self._hits = text, np.zeros(0, np.bool_)
        done = self._hits.shape[0]
        if done < n:
            hi, lo = self.agg.address_words()
            new = AddressFilter.of(text).matches_words(hi[done:], lo[done:])
            self._hits = np.concatenate([self._hits, new])
        ids = np.flatnonzero(self._hits).astype(np.int64)
        best = self.judge.ranked(self.agg, TOP_HOSTS, among=ids)
        return self.judge.views_of(self.agg, best), int(ids.shape[0])
