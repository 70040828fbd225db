"""The host table of the aggregate stage: one id per source address, bounded.

In: the source address columns of one batch. Out: a host id per event (-1 =
not tracked), and, when the table was full, the :class:`Renumbering` of the
eviction that made room. The id is the one identity of a host for every stage
after the aggregate: the detector's scores and the alert tracker key by it and
follow a renumbering when the aggregate reports one.

Per-host arrays live here: address, first and last packet time, totals since
first seen, allowlist membership, and the ingest in which the host was last
touched (what "dirty" means for the judge: new evidence since a mark,
whatever its packet time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from wormwatch.kernels.aggregate import MODE_ID
from wormwatch.kernels.counting import N_PEAKS, PEAK_KW_A, PEAK_KW_SHARE
from wormwatch.model import (
    BOOL,
    C_ANSWERS,
    C_KW_A,
    C_QUERIES,
    C_SYN135,
    C_SYN139,
    C_SYN445,
    I32,
    I64,
    N_COUNTERS,
    U64,
)
from wormwatch.tables import KeyTable

# Asked before an eviction with the number of hosts; True = never evict this id.
Protect = Callable[[int], BOOL]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Renumbering:
    """Old -> new host ids after an eviction (``mapping[old]``; -1 = evicted)."""

    mapping: I64
    n_evicted: int

    def follow(self, by_host: dict[int, T]) -> dict[int, T]:
        """``by_host`` under the new ids, without the evicted hosts."""
        m, n = self.mapping, self.mapping.shape[0]
        return {int(m[h]): v for h, v in by_host.items() if h < n and m[h] >= 0}

    def follow_array(self, per_host: np.ndarray) -> np.ndarray:
        """A per-host array (at least as long as the mapping) under the new ids;
        the ids of evicted hosts and those past the mapping are zeroed."""
        kept = np.nonzero(self.mapping >= 0)[0]
        out = np.zeros_like(per_host)
        out[self.mapping[kept]] = per_host[kept]
        return out

    def then(self, later: Renumbering) -> Renumbering:
        """This renumbering followed by ``later``, as one."""
        m = self.mapping
        composed = np.where(m >= 0, later.mapping[np.maximum(m, 0)], -1)
        return Renumbering(composed, self.n_evicted + later.n_evicted)


def activity(totals: I64) -> I64:
    """Events per host (DNS queries plus SYNs) from rows of totals."""
    syns = totals[:, C_SYN135] + totals[:, C_SYN139] + totals[:, C_SYN445]
    return totals[:, C_QUERIES] + syns + totals[:, C_ANSWERS]


class HostTable:
    """Address -> host id, with the per-host arrays, evicting when full.

    Args:
        max_hosts: hosts tracked at once.
        protect: asked before an eviction which hosts must stay (flagged
            ones); None protects nobody.
    """

    def __init__(self, max_hosts: int, protect: Protect | None) -> None:
        self.max_hosts = max_hosts
        self._protect = protect
        self._table = KeyTable(max_hosts)
        self.addr_hi = np.zeros(max_hosts, np.uint64)
        self.addr_lo = np.zeros(max_hosts, np.uint64)
        self.first_us = np.full(max_hosts, -1, np.int64)
        self.last_us = np.full(max_hosts, -1, np.int64)
        self.totals = np.zeros((max_hosts, N_COUNTERS), np.int64)
        self.peaks = np.zeros((max_hosts, N_PEAKS), np.float64)
        self.is_allowlisted = np.zeros(max_hosts, np.bool_)
        self.touched = np.zeros(max_hosts, np.int64)
        self.n_sampled = np.zeros(max_hosts, np.int64)
        self.n_mx_sampled = np.zeros(max_hosts, np.int64)
        self.n_nx_sampled = np.zeros(max_hosts, np.int64)
        self.hosts_evicted = 0
        self.events_dropped = 0

    @property
    def n_hosts(self) -> int:
        return int(self._table.used[0])

    def lookup(
        self, src_hi: U64, src_lo: U64, keep: BOOL, allow: Callable[[U64, U64], BOOL] | None
    ) -> tuple[I64, Renumbering | None]:
        """Host id per event (-1 = no room), and the eviction made, if any.

        ``allow`` says which new addresses are allowlisted.
        """
        n = int(src_hi.shape[0])
        zeros_i = np.zeros(n, np.int64)
        host = np.empty(n, np.int64)
        before = self.n_hosts
        refused = self._table.upsert(zeros_i, src_hi, src_lo, keep, zeros_i, MODE_ID, host)
        self._register(host, before, src_hi, src_lo, allow)
        renumbering = self._evict(refused) if refused else None
        if renumbering is not None:
            # renumber this batch's hosts too; evicted ones come back as new
            host = np.where(host >= 0, renumbering.mapping[np.maximum(host, 0)], -1)
            again = keep & (host < 0)
            retry = np.empty(n, np.int64)
            before = self.n_hosts
            refused = self._table.upsert(zeros_i, src_hi, src_lo, again, zeros_i, MODE_ID, retry)
            host[again] = retry[again]
            self._register(host, before, src_hi, src_lo, allow)
        self.events_dropped += refused
        return host, renumbering

    def raise_peaks(self, host: I64, rows: I32) -> None:
        """Raise the peaks of hosts ``host`` (distinct, as a delta's are) to
        those of their bin ``rows``, as the counting kernel does after each
        keyword A query, for counters added other than by that kernel (a
        cluster's deltas)."""
        kw_a = rows[:, C_KW_A]
        share = kw_a / np.maximum(rows[:, C_QUERIES], 1)
        peaks = self.peaks
        peaks[host, PEAK_KW_A] = np.maximum(peaks[host, PEAK_KW_A], kw_a)
        peaks[host, PEAK_KW_SHARE] = np.maximum(peaks[host, PEAK_KW_SHARE], share)

    def find(self, addr_hi: int, addr_lo: int) -> int | None:
        """The host id of an address, or None."""
        n = self.n_hosts
        hit = np.nonzero(
            (self.addr_hi[:n] == np.uint64(addr_hi)) & (self.addr_lo[:n] == np.uint64(addr_lo))
        )[0]
        return int(hit[0]) if hit.shape[0] else None

    def _register(
        self,
        host: I64,
        before: int,
        src_hi: U64,
        src_lo: U64,
        allow: Callable[[U64, U64], BOOL] | None,
    ) -> None:
        if self.n_hosts == before:
            return
        # Every event of a new host carries its address; duplicates write the same value.
        new = host >= before
        ids = host[new]
        self.addr_hi[ids] = src_hi[new]
        self.addr_lo[ids] = src_lo[new]
        if allow is not None:
            self.is_allowlisted[ids] = allow(src_hi[new], src_lo[new])

    def _evict(self, n_wanted: int) -> Renumbering | None:
        """Make room in a full table; the renumbering, or None if no host could go.

        The least useful go (a quarter of the table, or as many as ``n_wanted``
        new hosts need up to half of it: the busier half always stays, so a
        flood of one-packet sources cannot flush a scanner that has not been
        judged yet); never a protected host (one the detectors flagged), and
        of the rest those with the fewest events, then the longest quiet. A
        flood of spoofed one-packet sources thus evicts itself while a real
        scanner (many SYNs) stays.
        """
        n = self.n_hosts
        protected = self._protect(n) if self._protect is not None else np.zeros(n, np.bool_)
        busy = activity(self.totals[:n])
        evictable = np.nonzero(~protected[:n])[0]
        n_out = min(evictable.shape[0], max(n // 4, min(n_wanted, n // 2)))
        if n_out == 0:
            return None
        order = np.lexsort((self.last_us[evictable], busy[evictable]))
        gone = np.zeros(n, np.bool_)
        gone[evictable[order[:n_out]]] = True
        mapping = np.full(n, -1, np.int64)
        kept = np.nonzero(~gone)[0]
        mapping[kept] = np.arange(kept.shape[0])
        self._compact(kept, mapping)
        self.hosts_evicted += n_out
        return Renumbering(mapping, n_out)

    def _compact(self, kept: I64, mapping: I64) -> None:
        """Keep the per-host arrays of the ``kept`` hosts, renumbered."""
        k = int(kept.shape[0])
        for arr in (
            self.addr_hi, self.addr_lo, self.totals, self.peaks, self.is_allowlisted, self.touched,
            self.n_sampled, self.n_mx_sampled, self.n_nx_sampled,
        ):  # fmt: skip
            arr[:k] = arr[kept]
            arr[k:] = 0
        for arr in (self.first_us, self.last_us):
            arr[:k] = arr[kept]
            arr[k:] = -1
        self._table.remap(mapping, host_is_value=True)
