"""The aggregate stage's state and its ingest: per source host and time bin.

In: :class:`~wormwatch.model.Events` and the classifier's keyword indices,
one batch at a time. Out: through the read-out API only (never its arrays):
:class:`~wormwatch.model.HostState` of any host, totals and activity per host,
the hosts touched since a mark, the network-wide per-bin series, and
:class:`AggregateCounts` of what did not fit. An ingest that had to evict
hosts returns the :class:`~wormwatch.aggregate.hosts.Renumbering` for the
stages that key by host id.

All per-event work happens in :mod:`wormwatch.kernels.counting` and
:mod:`wormwatch.kernels.aggregate`; this module
allocates the tables and does per-batch numpy bookkeeping. The only Python
loops are per new sample name (at most a few per host for the whole run) and
per distinct time bin of a batch.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from wormwatch.aggregate.bins import BinRows
from wormwatch.aggregate.columns import add_network, count_events, take_samples
from wormwatch.aggregate.hosts import HostTable, Protect, Renumbering, activity
from wormwatch.aggregate.readout import prefix_counts, read_states
from wormwatch.answers import count_answers, host_words
from wormwatch.dganame import Scored
from wormwatch.kernels.counting import touch_hosts
from wormwatch.model import (
    BOOL,
    I64,
    U64,
    Events,
    HostState,
)
from wormwatch.nets import NetMask, in_networks
from wormwatch.tables import KeyTable

_A = TypeVar("_A", bound=np.ndarray)


@dataclass(frozen=True, slots=True)
class AggregateCounts:
    """How full the aggregate is, and what it could not keep."""

    hosts_tracked: int
    max_hosts: int
    # hosts evicted to make room for new ones
    hosts_evicted: int
    # events of new hosts that found no room (every host protected)
    events_dropped: int
    # events whose (host, bin) row found no room
    rows_dropped: int
    # distinct-set keys (SYN targets, names, prefixes) past the tables' limit
    keys_refused: int
    # events of ignored networks
    events_ignored: int
    # distinct-set keys last seen before the window, dropped from a table about to fill
    keys_dropped: int = 0


def _read_only(view: _A) -> _A:
    view.flags.writeable = False
    return view


class Aggregator:
    """Per-host totals, per-(host, bin) counters, distinct sets, samples.

    Args:
        bin_s: width of a time bin in seconds of packet time.
        window_s: how much history of bins is kept per host.
        max_hosts: hosts tracked at once. When full, the least useful
            quarter is evicted; events of new hosts that still find no room
            (every host protected) are counted, not kept.
        max_host_bins: (host, bin) rows kept; when it fills, rows outside
            the window go, then the window's oldest rows of unprotected hosts.
        max_keys: capacity of each distinct-set table (SYN targets, names,
            prefixes).
        n_samples: sample names kept per host (and as many MX names).
        ignore: networks whose events are not tracked at all.
        allowlisted: networks (mail servers, resolvers) left out of the
            network-wide MX/SYN series.
        protect: asked before an eviction which host ids must stay (the
            judge's flagged hosts); None protects nobody.
    """

    # keyword names kept apart in the names table (a delta's cell sends them)
    keyword_names_apart = False

    def __init__(
        self,
        *,
        bin_s: int = 60,
        window_s: int = 86400,
        max_hosts: int = 100_000,
        max_host_bins: int = 1_000_000,
        max_keys: int = 4_000_000,
        n_samples: int = 5,
        ignore: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
        allowlisted: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
        protect: Protect | None = None,
    ) -> None:
        self.bin_us = int(bin_s) * 1_000_000
        self.bin_s = int(bin_s)
        self.window_bins = max(1, int(window_s) // int(bin_s))
        self.max_hosts = max_hosts
        self.n_samples = n_samples
        self._ignore = [NetMask.of(n) for n in ignore]
        self._allow = [NetMask.of(n) for n in allowlisted]
        self._hosts = HostTable(max_hosts, protect)
        # a flagged host keeps its rows in the window, as it is never evicted
        self._bins = BinRows(
            max_host_bins, None if protect is None else lambda: protect(self.n_hosts)
        )
        # the window's first bin when rows before it were last dropped
        self._pruned_to = -(2**62)
        self._pairs = KeyTable(max_keys)
        self._names = KeyTable(max_keys)
        self._prefixes = KeyTable(max_keys)
        # a prefix key's count is kept in v: its latest bin goes in w
        self._prefixes.keep_latest()
        # the window's first bin when keys last seen before it were last dropped
        self._keys_pruned_to = -(2**62)
        self._samples: dict[int, list[bytes]] = {}
        self._mx_samples: dict[int, list[bytes]] = {}
        self._nx_samples: dict[int, list[bytes]] = {}
        # network-wide series: bin -> [queries, MX, SYN] of non-allowlisted hosts
        self._network: dict[int, list[int]] = {}
        self._keys_refused = 0
        self._keys_dropped = 0
        self._events_ignored = 0
        self._now_us = -1
        self._start_us = -1
        self._n_ingests = 0

    # -- ingest ---------------------------------------------------------------

    def ingest(
        self, ev: Events, keyword_idx: npt.NDArray[np.int16], scored: Scored | None = None
    ) -> Renumbering | None:
        """Count one batch of events (``scored``: the name scores of its NXDOMAIN
        answers, when the caller has them: :func:`wormwatch.classify.score_nx_answers`).

        Returns how host ids changed when hosts had to be evicted to make
        room (None when no host was), for whoever keys by host id.
        """
        n = ev.n
        if n == 0:
            return None
        ts = ev.ts_us[:n]
        src_hi, src_lo, is_answer = host_words(ev)
        keep = np.ones(n, np.bool_)
        if self._ignore:
            ignored = in_networks(src_hi, src_lo, self._ignore)
            self._events_ignored += int(np.count_nonzero(ignored))
            keep &= ~ignored
        self._now_us = max(self._now_us, int(ts.max()))
        # the oldest event, not the first batch's: files read one after the other
        # (--concatenate) may go back in time
        oldest_us = int(ts.min())
        if self._start_us < 0 or oldest_us < self._start_us:
            self._start_us = oldest_us
        host, renumbering = self._admit(src_hi, src_lo, keep)
        self._touch(host, ts)
        h = self._hosts
        bins = ts // self.bin_us
        oldest = self.oldest_bin()
        if oldest >= self._pruned_to + self.window_bins:
            # rows outside the window go once a window of packet time, not only when
            # the table is full: every read-out scans the rows (a year of one query a
            # minute held 525,600 of them, and judging slowed as they grew)
            self._bins.prune(oldest)
            self._pruned_to = oldest
        row = self._bins.rows_of(host, bins, oldest)
        self._make_key_room(n, oldest)
        got = count_events(
            (self._pairs, self._names, self._prefixes), ev, (host, row, bins),
            keyword_idx, (h.totals, self._bins.rows, h.peaks), self.keyword_names_apart,
        )  # fmt: skip
        self._keys_refused += got.refused
        self._take_samples(ev, host, got.new_name == 2, h.n_sampled, self._samples)
        self._take_samples(ev, host, got.new_mx == 2, h.n_mx_sampled, self._mx_samples)
        is_client = ~h.is_allowlisted[np.maximum(host, 0)]
        add_network(self._network, bins, is_client, (got.is_dns, got.is_mx, got.is_syn))
        tables = (self._names, h.totals, self._bins.rows)
        new, refused = count_answers(
            ev, is_answer, (host, row, bins), tables, got.name_hash, scored
        )
        self._keys_refused += refused
        self._take_samples(ev, host, new, h.n_nx_sampled, self._nx_samples)
        return renumbering

    def _make_key_room(self, n_events: int, oldest: int) -> None:
        """When the SYN-target, names or name-prefix table could fill up in this
        batch, drop the keys last seen before the window (at most once per bin
        of packet time): a full table refuses every new key, and once it had
        filled no new target, MX domain or NXDOMAIN domain counted again, so no
        scanner, mass mailer or domain generator was flagged for the rest of the
        run, and no host that began a keyword storm later had prefix counts (its
        top prefixes, and its keyword weights when configured)."""
        if oldest <= self._keys_pruned_to:
            return
        tables = (self._pairs, self._names, self._prefixes)
        # an event adds at most 5 keys to the names table (name, MX name, keyword
        # name, NXDOMAIN name and domain), one to each other table
        if all(int(t.used[0]) + 5 * n_events <= t.max_used for t in tables):
            return
        for t in tables:
            self._keys_dropped += t.keep_tags_from(oldest)
        self._keys_pruned_to = oldest

    def _admit(self, src_hi: U64, src_lo: U64, keep: BOOL) -> tuple[I64, Renumbering | None]:
        """Host ids of a batch's events (-1 = no room), evicting if needed;
        starts a new ingest for :meth:`touched_since`."""
        self._n_ingests += 1
        host, renumbering = self._hosts.lookup(
            src_hi, src_lo, keep, self._is_allowlisted if self._allow else None
        )
        if renumbering is not None:
            self._follow(renumbering)
        return host, renumbering

    def _touch(self, host: I64, ts_us: I64) -> None:
        """First/last seen of the hosts, marked as touched by this ingest."""
        h = self._hosts
        n = int(host.shape[0])
        touch_hosts(host, ts_us, n, h.first_us, h.last_us, h.touched, self._n_ingests)

    def _is_allowlisted(self, hi: U64, lo: U64) -> BOOL:
        return in_networks(hi, lo, self._allow)

    def _follow(self, renumbering: Renumbering) -> None:
        """Renumber every per-host table after the host table evicted."""
        mapping = renumbering.mapping
        for table in (self._pairs, self._names, self._prefixes):
            table.remap(mapping, host_is_value=False)
        self._samples = renumbering.follow(self._samples)
        self._mx_samples = renumbering.follow(self._mx_samples)
        self._nx_samples = renumbering.follow(self._nx_samples)
        self._bins.renumber(mapping)

    def _take_samples(
        self,
        ev: Events,
        host: I64,
        is_new: BOOL,
        n_taken: I64,
        store: dict[int, list[bytes]],
    ) -> None:
        take_samples(ev, host, is_new, n_taken, store, self.n_samples)

    # -- read out ---------------------------------------------------------------

    @property
    def n_hosts(self) -> int:
        """Hosts tracked now; their ids are ``0 .. n_hosts - 1``."""
        return self._hosts.n_hosts

    @property
    def now_us(self) -> int:
        """The newest packet time seen (-1 before any event)."""
        return self._now_us

    def advance(self, ts_us: int) -> None:
        """Packet time has reached ``ts_us`` (a packet about to be counted): the
        window ends there, though no event of that time is counted yet."""
        self._now_us = max(self._now_us, ts_us)

    def oldest_bin(self) -> int:
        """The first bin of the window that ends at the newest packet time:
        rows of older bins are outside every host's window."""
        return self._now_us // self.bin_us - self.window_bins + 1

    @property
    def start_us(self) -> int:
        """The packet time of the oldest event counted (-1 before any)."""
        return self._start_us

    def counts(self) -> AggregateCounts:
        """How full the tables are and what did not fit."""
        return AggregateCounts(
            hosts_tracked=self.n_hosts,
            max_hosts=self.max_hosts,
            hosts_evicted=self._hosts.hosts_evicted,
            events_dropped=self._hosts.events_dropped,
            rows_dropped=self._bins.rows_dropped,
            keys_refused=self._keys_refused,
            events_ignored=self._events_ignored,
            keys_dropped=self._keys_dropped,
        )

    def totals(self) -> I64:
        """Counters since first seen, one read-only row per host id."""
        return _read_only(self._hosts.totals[: self.n_hosts])

    def peaks(self) -> npt.NDArray[np.float64]:
        """Per host id, the most keyword A queries in one bin and the highest
        keyword-A share of a bin's queries since first seen (read-only;
        columns ``PEAK_*`` of :mod:`wormwatch.kernels.counting`): bounds on
        the same in any window, for :func:`wormwatch.detect.could_fire`."""
        return _read_only(self._hosts.peaks[: self.n_hosts])

    def activity(self) -> I64:
        """Events (DNS queries plus SYNs) per host id since first seen."""
        return activity(self._hosts.totals[: self.n_hosts])

    def mark(self) -> int:
        """A mark of now, for :meth:`touched_since`."""
        return self._n_ingests

    def touched_since(self, mark: int) -> I64:
        """Host ids that got events after ``mark``, whatever their packet time."""
        return np.nonzero(self._hosts.touched[: self.n_hosts] > mark)[0].astype(np.int64)

    def first_seen_us(self) -> I64:
        """The oldest packet time per host id (read-only)."""
        return _read_only(self._hosts.first_us[: self.n_hosts])

    def last_seen_us(self) -> I64:
        """The newest packet time per host id (read-only)."""
        return _read_only(self._hosts.last_us[: self.n_hosts])

    def address_words(self) -> tuple[U64, U64]:
        """(high, low) 64-bit words of each host id's address (read-only)."""
        n = self.n_hosts
        return _read_only(self._hosts.addr_hi[:n]), _read_only(self._hosts.addr_lo[:n])

    def address(self, host: int) -> tuple[int, int]:
        """(high, low) 64-bit words of one host id's address."""
        return int(self._hosts.addr_hi[host]), int(self._hosts.addr_lo[host])

    def network_series(self) -> tuple[I64, I64]:
        """(bins, counts[k, 3]) of the network-wide series: queries, MX, SYN."""
        if not self._network:
            return np.zeros(0, np.int64), np.zeros((0, 3), np.int64)
        keys = sorted(self._network)
        return np.array(keys, np.int64), np.array([self._network[k] for k in keys], np.int64)

    def host_states(
        self, ids: Sequence[int] | I64, *, with_prefixes: bool | BOOL = True
    ) -> list[HostState]:
        """The full state of the given hosts, with their bins in the window and
        their name-prefix counts: every host's (True), none (False), or those
        of the hosts a boolean mask over ``ids`` picks (the others get none)."""
        ids = np.asarray(ids, np.int64)
        if with_prefixes is True:
            prefix_ids: I64 | None = ids
        elif with_prefixes is False or self._prefixes is None:
            prefix_ids = None
        else:
            prefix_ids = ids[np.asarray(with_prefixes, np.bool_)]
        return read_states(
            ids, self._hosts, self._bins, self.oldest_bin(),
            self._prefixes, prefix_ids,
            (self._samples, self._mx_samples, self._nx_samples),
        )  # fmt: skip

    def prefixes_of(self, ids: I64) -> dict[int, dict[bytes, int]]:
        """The name-prefix counts of hosts ``ids`` (as in :meth:`host_states`),
        by host id; a host without any is left out."""
        if self._prefixes is None or ids.shape[0] == 0:
            return {}
        return prefix_counts(self._prefixes, ids)

    def find(self, addr_hi: int, addr_lo: int) -> int | None:
        """The host id of an address, or None."""
        return self._hosts.find(addr_hi, addr_lo)
