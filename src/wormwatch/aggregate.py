"""Aggregate stage: per source host and time bin counters, bounded in memory.

In: :class:`~wormwatch.model.Events` and the classifier's keyword indices,
one batch at a time. Out: :class:`~wormwatch.model.HostState` for any host
on request, network-wide per-bin series, and counts of what did not fit.

All per-event work happens in :mod:`wormwatch.kernels.aggregate`; this module
allocates the tables, grows them, and does per-batch numpy bookkeeping. The
only Python loops are per new sample name (at most a few per host for the
whole run) and per distinct time bin of a batch.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt

from wormwatch.kernels.aggregate import (
    MODE_COUNT,
    MODE_ID,
    MODE_TAG,
    add_counters,
    hash_names,
    pack_prefixes,
    touch_hosts,
)
from wormwatch.model import (
    C_A,
    C_AAAA,
    C_KW,
    C_KW_A,
    C_MX,
    C_MX_DOM_NEW,
    C_NAMES_NEW,
    C_OTHER,
    C_PTR,
    C_QUERIES,
    C_SYN135,
    C_SYN139,
    C_SYN445,
    C_SYN_DST_BIN,
    C_SYN_DST_NEW,
    I64,
    KIND_DNS,
    KIND_SYN,
    N_COUNTERS,
    QTYPE_A,
    QTYPE_AAAA,
    QTYPE_MX,
    QTYPE_PTR,
    U64,
    Events,
    HostState,
    addr_text,
)
from wormwatch.tables import BOOL, MIN_CAPACITY, KeyTable, NetMask, in_networks

# Salt that keeps a host's MX names apart from its other names in one table.
_MX_SALT = 1


_QTYPE_COL = np.full(65536, C_OTHER, np.int64)
_QTYPE_COL[QTYPE_A] = C_A
_QTYPE_COL[QTYPE_AAAA] = C_AAAA
_QTYPE_COL[QTYPE_MX] = C_MX
_QTYPE_COL[QTYPE_PTR] = C_PTR
_PORT_COL = np.full(65536, -1, np.int64)
_PORT_COL[135] = C_SYN135
_PORT_COL[139] = C_SYN139
_PORT_COL[445] = C_SYN445


class Aggregator:
    """Per-host totals, per-(host, bin) counters, distinct sets, samples.

    Args:
        bin_s: width of a time bin in seconds of packet time.
        window_s: how much history of bins is kept per host.
        max_hosts: hosts tracked at once. When full, the least useful
            quarter is evicted (``hosts_evicted``); events of new hosts that
            still find no room (every host flagged) count in ``events_dropped``.
        max_host_bins: (host, bin) rows kept; old rows outside the window
            are pruned when it fills.
        max_keys: capacity of each distinct-set table (SYN targets, names,
            prefixes).
        n_samples: sample names kept per host (and as many MX names).
        ignore: networks whose events are not tracked at all.
        allowlisted: networks (mail servers, resolvers) left out of the
            network-wide MX/SYN series.
    """

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
    ) -> None:
        self.bin_us = int(bin_s) * 1_000_000
        self.bin_s = int(bin_s)
        self.window_bins = max(1, int(window_s) // int(bin_s))
        self.max_hosts = max_hosts
        self.n_samples = n_samples
        self._ignore = [NetMask.of(n) for n in ignore]
        self._allow = [NetMask.of(n) for n in allowlisted]
        self._hosts = KeyTable(max_hosts)
        self._bins = KeyTable(max_host_bins)
        self._pairs = KeyTable(max_keys)
        self._names = KeyTable(max_keys)
        self._prefixes = KeyTable(max_keys)
        self.host_hi = np.zeros(max_hosts, np.uint64)
        self.host_lo = np.zeros(max_hosts, np.uint64)
        self.first_us = np.full(max_hosts, -1, np.int64)
        self.last_us = np.full(max_hosts, -1, np.int64)
        self.totals = np.zeros((max_hosts, N_COUNTERS), np.int64)
        self.is_allowlisted = np.zeros(max_hosts, np.bool_)
        self._row_host = np.zeros(MIN_CAPACITY, np.int64)
        self._row_bin = np.zeros(MIN_CAPACITY, np.int64)
        self._rows = np.zeros((MIN_CAPACITY, N_COUNTERS), np.int32)
        self._n_sampled = np.zeros(max_hosts, np.int64)
        self._n_mx_sampled = np.zeros(max_hosts, np.int64)
        self.samples: dict[int, list[bytes]] = {}
        self.mx_samples: dict[int, list[bytes]] = {}
        # network-wide series: bin -> [queries, MX, SYN] of non-allowlisted hosts
        self.network: dict[int, list[int]] = {}
        self.events_dropped = 0
        self.hosts_evicted = 0
        # Set by the pipeline: per-host scores (a host > 0 is never evicted),
        # and a hook told the old -> new host numbering after an eviction.
        self.keep_scores: Callable[[int], npt.NDArray[np.float64]] | None = None
        self.on_renumber: Callable[[I64], None] | None = None
        self.rows_dropped = 0
        self.keys_refused = 0
        self.events_ignored = 0
        self.now_us = -1
        self.start_us = -1

    # -- ingest ---------------------------------------------------------------

    @property
    def n_hosts(self) -> int:
        return int(self._hosts.used[0])

    def ingest(self, ev: Events, keyword_idx: npt.NDArray[np.int16]) -> None:
        """Count one batch of events."""
        n = ev.n
        if n == 0:
            return
        ts = ev.ts_us[:n]
        src_hi, src_lo = ev.src_hi[:n], ev.src_lo[:n]
        kind = ev.kind[:n]
        keep = np.ones(n, np.bool_)
        if self._ignore:
            ignored = in_networks(src_hi, src_lo, self._ignore)
            self.events_ignored += int(np.count_nonzero(ignored))
            keep &= ~ignored
        self.now_us = max(self.now_us, int(ts.max()))
        if self.start_us < 0:
            self.start_us = int(ts.min())
        zeros_u = np.zeros(n, np.uint64)
        host = self._lookup_hosts(src_hi, src_lo, keep)
        touch_hosts(host, ts, n, self.first_us, self.last_us)

        bins = ts // self.bin_us
        row = self._bin_rows(host, bins)
        is_dns = (kind == KIND_DNS) & (host >= 0)
        is_syn = (kind == KIND_SYN) & (host >= 0)
        is_kw = keyword_idx[:n] >= 0

        # distinct SYN targets, ever and per bin
        pair = np.empty(n, np.int64)
        self.keys_refused += self._pairs.upsert(
            host, ev.dst_hi[:n], ev.dst_lo[:n], is_syn, bins, MODE_TAG, pair
        )
        # distinct names, and distinct MX names
        name_hash = np.empty(n, np.uint64)
        hash_names(ev.names, ev.name_lens, n, name_hash)
        has_name = is_dns & (ev.name_lens[:n] > 0)
        new_name = np.empty(n, np.int64)
        self.keys_refused += self._names.upsert(
            host, name_hash, zeros_u, has_name, bins, MODE_TAG, new_name
        )
        is_mx = is_dns & (ev.qtype[:n] == QTYPE_MX)
        new_mx = np.empty(n, np.int64)
        self.keys_refused += self._names.upsert(
            host, name_hash, zeros_u + np.uint64(_MX_SALT), is_mx & has_name, bins, MODE_TAG, new_mx
        )
        self._count_prefixes(ev, host, has_name)

        cols = np.full((n, 6), -1, np.int64)
        cols[:, 0] = np.where(is_dns, C_QUERIES, np.where(is_syn, _PORT_COL[ev.dport[:n]], -1))
        cols[:, 1] = np.where(
            is_dns, _QTYPE_COL[ev.qtype[:n]], np.where(pair >= 1, C_SYN_DST_BIN, -1)
        )
        cols[:, 2] = np.where(is_dns & is_kw, C_KW, np.where(pair == 2, C_SYN_DST_NEW, -1))
        cols[:, 3] = np.where(is_dns & is_kw & (ev.qtype[:n] == QTYPE_A), C_KW_A, -1)
        cols[:, 4] = np.where(new_name == 2, C_NAMES_NEW, -1)
        cols[:, 5] = np.where(new_mx == 2, C_MX_DOM_NEW, -1)
        add_counters(host, row, cols, n, self.totals, self._rows)

        self._take_samples(ev, host, new_name == 2, self._n_sampled, self.samples)
        self._take_samples(ev, host, new_mx == 2, self._n_mx_sampled, self.mx_samples)
        self._add_network(bins, host, is_dns, is_mx, is_syn)

    def _lookup_hosts(self, src_hi: U64, src_lo: U64, keep: BOOL) -> I64:
        """Host index per event; evicts the least useful hosts when full."""
        n = int(src_hi.shape[0])
        zeros_i = np.zeros(n, np.int64)
        host = np.empty(n, np.int64)
        before = self.n_hosts
        refused = self._hosts.upsert(zeros_i, src_hi, src_lo, keep, zeros_i, MODE_ID, host)
        self._register_new_hosts(host, before, src_hi, src_lo)
        mapping = self._evict(refused) if refused else None
        if mapping is not None:
            # renumber this batch's hosts too; evicted ones come back as new
            host = np.where(host >= 0, mapping[np.maximum(host, 0)], -1)
            again = keep & (host < 0)
            retry = np.empty(n, np.int64)
            before = self.n_hosts
            refused = self._hosts.upsert(zeros_i, src_hi, src_lo, again, zeros_i, MODE_ID, retry)
            host[again] = retry[again]
            self._register_new_hosts(host, before, src_hi, src_lo)
        self.events_dropped += refused
        return host

    # -- eviction -----------------------------------------------------------------

    def _evict(self, n_wanted: int) -> I64 | None:
        """Make room in a full host table; the old -> new numbering, or None
        if no host could go.

        The least useful go (a quarter of the table, or as many as ``n_wanted``
        new hosts need up to half of it: the busier half always stays, so a
        flood of one-packet sources cannot flush a scanner that has not been
        judged yet); never a host the detectors flagged
        (``keep_scores`` > 0), and of the rest those with the fewest events,
        then the longest quiet. A flood of spoofed one-packet sources thus
        evicts itself while a real scanner (many SYNs) stays.
        """
        n = self.n_hosts
        scores = self.keep_scores(n) if self.keep_scores is not None else np.zeros(n)
        totals = self.totals[:n]
        activity = totals[:, C_QUERIES] + totals[:, C_SYN135] + totals[:, C_SYN139]
        activity = activity + totals[:, C_SYN445]
        evictable = np.nonzero(scores[:n] <= 0)[0]
        n_out = min(evictable.shape[0], max(n // 4, min(n_wanted, n // 2)))
        if n_out == 0:
            return None
        order = np.lexsort((self.last_us[evictable], activity[evictable]))
        gone = np.zeros(n, np.bool_)
        gone[evictable[order[:n_out]]] = True
        mapping = np.full(n, -1, np.int64)
        kept = np.nonzero(~gone)[0]
        mapping[kept] = np.arange(kept.shape[0])
        self._renumber(kept, mapping)
        self.hosts_evicted += n_out
        if self.on_renumber is not None:
            self.on_renumber(mapping)
        return mapping

    def _renumber(self, kept: I64, mapping: I64) -> None:
        """Compact every per-host array and table to the ``kept`` hosts."""
        k = int(kept.shape[0])
        for name in (
            "host_hi", "host_lo", "first_us", "last_us", "totals",
            "is_allowlisted", "_n_sampled", "_n_mx_sampled",
        ):  # fmt: skip
            arr = getattr(self, name)
            arr[:k] = arr[kept]
            arr[k:] = -1 if name in ("first_us", "last_us") else 0
        self._hosts.remap(mapping, host_is_value=True)
        for table in (self._pairs, self._names, self._prefixes):
            table.remap(mapping, host_is_value=False)
        self.samples = {int(mapping[h]): v for h, v in self.samples.items() if mapping[h] >= 0}
        self.mx_samples = {
            int(mapping[h]): v for h, v in self.mx_samples.items() if mapping[h] >= 0
        }
        used = int(self._bins.used[0])
        hosts = mapping[self._row_host[:used]]
        self._compact_rows(hosts >= 0, hosts)

    def _register_new_hosts(self, host: I64, before: int, src_hi: U64, src_lo: U64) -> None:
        if self.n_hosts == before:
            return
        # Every event of a new host carries its address; duplicates write the same value.
        new = host >= before
        ids = host[new]
        self.host_hi[ids] = src_hi[new]
        self.host_lo[ids] = src_lo[new]
        if self._allow:
            self.is_allowlisted[ids] = in_networks(src_hi[new], src_lo[new], self._allow)

    def _bin_rows(self, host: I64, bins: I64) -> I64:
        row = np.empty(host.shape[0], np.int64)
        zeros_u = np.zeros(host.shape[0], np.uint64)
        before = int(self._bins.used[0])
        refused = self._bins.upsert(
            host, bins.astype(np.uint64), zeros_u, host >= 0, bins, MODE_ID, row
        )
        if refused and self._prune_rows():
            before = int(self._bins.used[0])
            refused = self._bins.upsert(
                host, bins.astype(np.uint64), zeros_u, host >= 0, bins, MODE_ID, row
            )
        self.rows_dropped += refused
        after = int(self._bins.used[0])
        if after > self._rows.shape[0]:
            self._grow_rows(after)
        if after > before:
            new = row >= before
            self._row_host[row[new]] = host[new]
            self._row_bin[row[new]] = bins[new]
        return row

    def _grow_rows(self, need: int) -> None:
        capacity = self._rows.shape[0]
        while capacity < need:
            capacity *= 2
        capacity = min(capacity, self._bins.max_used)
        for name in ("_row_host", "_row_bin"):
            old = getattr(self, name)
            grown = np.zeros(capacity, np.int64)
            grown[: old.shape[0]] = old
            setattr(self, name, grown)
        rows = np.zeros((capacity, N_COUNTERS), np.int32)
        rows[: self._rows.shape[0]] = self._rows
        self._rows = rows

    def _prune_rows(self) -> bool:
        """Drop (host, bin) rows older than the window; True if any went."""
        used = int(self._bins.used[0])
        oldest = self.now_us // self.bin_us - self.window_bins + 1
        keep = self._row_bin[:used] >= oldest
        if keep.all():
            return False
        self._compact_rows(keep, self._row_host[:used])
        return True

    def _compact_rows(self, keep: BOOL, row_hosts: I64) -> None:
        """Keep the rows marked ``keep`` (with hosts ``row_hosts``), in order,
        and rebuild the (host, bin) table over them."""
        used = int(self._bins.used[0])
        hosts = row_hosts[keep]
        bins = self._row_bin[:used][keep]
        rows = self._rows[:used][keep]
        n = int(hosts.shape[0])
        self._bins.clear()
        out = np.empty(n, np.int64)
        self._bins.upsert(
            hosts, bins.astype(np.uint64), np.zeros(n, np.uint64), np.ones(n, np.bool_),
            bins, MODE_ID, out,
        )  # fmt: skip
        self._row_host[:n] = hosts
        self._row_bin[:n] = bins
        self._rows[:n] = rows
        self._rows[n:used] = 0

    def _count_prefixes(self, ev: Events, host: I64, sel: BOOL) -> None:
        n = ev.n
        packed = np.empty(n, np.uint64)
        pack_prefixes(ev.names, ev.name_lens, sel, n, packed)
        out = np.empty(n, np.int64)
        self.keys_refused += self._prefixes.upsert(
            host, packed, np.zeros(n, np.uint64), packed != 0, host, MODE_COUNT, out
        )

    def _take_samples(
        self,
        ev: Events,
        host: I64,
        is_new: BOOL,
        n_taken: I64,
        store: dict[int, list[bytes]],
    ) -> None:
        cand = np.nonzero(is_new & (n_taken[np.maximum(host, 0)] < self.n_samples))[0]
        if cand.shape[0] == 0:
            return
        hosts = host[cand]
        order = np.argsort(hosts, kind="stable")
        cand, hosts = cand[order], hosts[order]
        starts = np.r_[0, np.flatnonzero(np.diff(hosts)) + 1]
        rank = np.arange(hosts.shape[0]) - np.repeat(starts, np.diff(np.r_[starts, hosts.shape[0]]))
        take = rank < (self.n_samples - n_taken[hosts])
        # bounded: at most n_samples per host over the whole run
        for i, h in zip(cand[take].tolist(), hosts[take].tolist(), strict=True):
            store.setdefault(h, []).append(bytes(ev.names[i, : ev.name_lens[i]]))
            n_taken[h] += 1

    def _add_network(self, bins: I64, host: I64, is_dns: BOOL, is_mx: BOOL, is_syn: BOOL) -> None:
        client = ~self.is_allowlisted[np.maximum(host, 0)]
        lo = int(bins.min())
        width = int(bins.max()) - lo + 1
        rel = bins - lo
        series = [
            np.bincount(rel[m], minlength=width)
            for m in (is_dns & client, is_mx & client, is_syn & client)
        ]
        for k in np.flatnonzero(series[0] + series[1] + series[2]).tolist():
            acc = self.network.setdefault(lo + k, [0, 0, 0])
            for j in range(3):
                acc[j] += int(series[j][k])

    # -- read out ---------------------------------------------------------------

    def network_series(self) -> tuple[I64, I64]:
        """(bins, counts[k, 3]) of the network-wide series: queries, MX, SYN."""
        if not self.network:
            return np.zeros(0, np.int64), np.zeros((0, 3), np.int64)
        keys = sorted(self.network)
        return np.array(keys, np.int64), np.array([self.network[k] for k in keys], np.int64)

    def host_states(
        self, ids: Sequence[int] | I64, *, with_prefixes: bool = True
    ) -> list[HostState]:
        """The full state of the given hosts, with their bins in the window
        (and their name-prefix counts, unless ``with_prefixes`` is False)."""
        ids_arr = np.asarray(ids, np.int64)
        used = int(self._bins.used[0])
        oldest = self.now_us // self.bin_us - self.window_bins + 1
        row_host = self._row_host[:used]
        sel = np.nonzero(np.isin(row_host, ids_arr) & (self._row_bin[:used] >= oldest))[0]
        order = np.lexsort((self._row_bin[sel], row_host[sel]))
        sel = sel[order]
        hosts_sorted = row_host[sel]
        prefixes = self._prefix_map(ids_arr) if with_prefixes else {}
        out = []
        for h in ids_arr.tolist():
            lo, hi = np.searchsorted(hosts_sorted, [h, h + 1])
            rows = sel[lo:hi]
            out.append(
                HostState(
                    addr=addr_text(int(self.host_hi[h]), int(self.host_lo[h])),
                    first_seen_us=int(self.first_us[h]),
                    last_seen_us=int(self.last_us[h]),
                    totals=self.totals[h].copy(),
                    bins=self._row_bin[rows].copy(),
                    series=self._rows[rows].astype(np.int64),
                    sample_names=list(self.samples.get(h, [])),
                    sample_mx_names=list(self.mx_samples.get(h, [])),
                    prefixes=prefixes.get(h, {}),
                )
            )
        return out

    def _prefix_map(self, ids: I64) -> dict[int, dict[bytes, int]]:
        """Prefix counts of length 1..5 per host, from the 5-byte keys."""
        t = self._prefixes
        sel = np.nonzero(np.isin(t.a, ids))[0]
        out: dict[int, dict[bytes, int]] = {}
        for h, packed, count in zip(
            t.a[sel].tolist(), t.b[sel].tolist(), t.v[sel].tolist(), strict=True
        ):
            length = packed >> 56
            text = (packed & ((1 << (8 * length)) - 1)).to_bytes(8, "little")[:length]
            counts = out.setdefault(h, {})
            for k in range(1, length + 1):
                counts[text[:k]] = counts.get(text[:k], 0) + count
        return out

    def find(self, addr_hi: int, addr_lo: int) -> int | None:
        """The host index of an address, or None."""
        n = self.n_hosts
        hit = np.nonzero(
            (self.host_hi[:n] == np.uint64(addr_hi)) & (self.host_lo[:n] == np.uint64(addr_lo))
        )[0]
        return int(hit[0]) if hit.shape[0] else None
