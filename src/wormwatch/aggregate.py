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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from wormwatch.kernels.aggregate import (
    MODE_COUNT,
    MODE_ID,
    MODE_TAG,
    add_counters,
    hash_names,
    pack_prefixes,
    table_rehash,
    table_upsert,
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
    V4_MAPPED_PREFIX,
    Events,
    HostState,
    addr_text,
)

BOOL = npt.NDArray[np.bool_]
_MIN_CAPACITY = 1024
# Salt that keeps a host's MX names apart from its other names in one table.
_MX_SALT = 1


def _pow2_at_least(n: int) -> int:
    return 1 << max(int(n) - 1, 1).bit_length()


class _Table:
    """A growable open-addressing table over :func:`table_upsert`.

    Load stays at or below one half, so probes stay short; the table never
    holds more than ``max_used`` keys (new keys past that are refused).
    """

    def __init__(self, max_used: int) -> None:
        self.max_used = max_used
        self.limit = _pow2_at_least(2 * max_used)
        self.used = np.zeros(1, np.int64)
        self._alloc(min(_MIN_CAPACITY, self.limit))

    def _alloc(self, capacity: int) -> None:
        self.a = np.full(capacity, -1, np.int64)
        self.b = np.zeros(capacity, np.uint64)
        self.c = np.zeros(capacity, np.uint64)
        self.v = np.zeros(capacity, np.int64)

    @property
    def capacity(self) -> int:
        return int(self.a.shape[0])

    def reserve(self, n_new: int) -> None:
        """Grow so that ``n_new`` more keys keep the load at or below 1/2."""
        need = min(int(self.used[0]) + n_new, self.max_used)
        capacity = self.capacity
        while 2 * need > capacity and capacity < self.limit:
            capacity *= 2
        if capacity != self.capacity:
            old = (self.a, self.b, self.c, self.v)
            self._alloc(capacity)
            table_rehash(*old, self.a, self.b, self.c, self.v)

    def upsert(
        self,
        keys_a: npt.NDArray[np.int64],
        keys_b: npt.NDArray[np.uint64],
        keys_c: npt.NDArray[np.uint64],
        sel: BOOL,
        tags: npt.NDArray[np.int64],
        mode: int,
        out: npt.NDArray[np.int64],
    ) -> int:
        n = int(keys_a.shape[0])
        self.reserve(int(np.count_nonzero(sel)))
        refused: int = table_upsert(
            self.a, self.b, self.c, self.v, self.used, self.max_used,
            keys_a, keys_b, keys_c, sel, tags, n, mode, out,
        )  # fmt: skip
        return refused

    def clear(self) -> None:
        self.used[0] = 0
        self._alloc(min(_MIN_CAPACITY, self.limit))


@dataclass(frozen=True, slots=True)
class NetMask:
    """A CIDR as (hi, lo) words and masks, for vectorised membership tests."""

    net_hi: int
    net_lo: int
    mask_hi: int
    mask_lo: int

    @staticmethod
    def of(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> NetMask:
        if network.version == 4:
            bits = 96 + network.prefixlen
            value = (V4_MAPPED_PREFIX | int(network.network_address)) & ((1 << 128) - 1)
        else:
            bits = network.prefixlen
            value = int(network.network_address)
        mask = ((1 << 128) - 1) ^ ((1 << (128 - bits)) - 1)
        return NetMask(value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF, mask >> 64, mask & (2**64 - 1))


def in_networks(hi: U64, lo: U64, nets: Sequence[NetMask]) -> BOOL:
    """Which (hi, lo) addresses fall into any of ``nets``."""
    hit = np.zeros(hi.shape[0], np.bool_)
    for m in nets:
        hit |= ((hi & np.uint64(m.mask_hi)) == np.uint64(m.net_hi)) & (
            (lo & np.uint64(m.mask_lo)) == np.uint64(m.net_lo)
        )
    return hit


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
        max_hosts: hosts tracked; events of further new hosts are dropped
            and counted in ``events_dropped`` / ``hosts_refused``.
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
        self._hosts = _Table(max_hosts)
        self._bins = _Table(max_host_bins)
        self._pairs = _Table(max_keys)
        self._names = _Table(max_keys)
        self._prefixes = _Table(max_keys)
        self.host_hi = np.zeros(max_hosts, np.uint64)
        self.host_lo = np.zeros(max_hosts, np.uint64)
        self.first_us = np.full(max_hosts, -1, np.int64)
        self.last_us = np.full(max_hosts, -1, np.int64)
        self.totals = np.zeros((max_hosts, N_COUNTERS), np.int64)
        self.is_allowlisted = np.zeros(max_hosts, np.bool_)
        self._row_host = np.zeros(_MIN_CAPACITY, np.int64)
        self._row_bin = np.zeros(_MIN_CAPACITY, np.int64)
        self._rows = np.zeros((_MIN_CAPACITY, N_COUNTERS), np.int32)
        self._n_sampled = np.zeros(max_hosts, np.int64)
        self._n_mx_sampled = np.zeros(max_hosts, np.int64)
        self.samples: dict[int, list[bytes]] = {}
        self.mx_samples: dict[int, list[bytes]] = {}
        # network-wide series: bin -> [queries, MX, SYN] of non-allowlisted hosts
        self.network: dict[int, list[int]] = {}
        self.events_dropped = 0
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
        zeros_i = np.zeros(n, np.int64)
        zeros_u = np.zeros(n, np.uint64)
        host = np.empty(n, np.int64)
        before = self.n_hosts
        self.events_dropped += self._hosts.upsert(
            zeros_i, src_hi, src_lo, keep, zeros_i, MODE_ID, host
        )
        self._register_new_hosts(host, before, src_hi, src_lo)
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
        hosts = self._row_host[:used][keep]
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
        return True

    def _count_prefixes(self, ev: Events, host: I64, sel: BOOL) -> None:
        n = ev.n
        packed = np.empty((n, 5), np.uint64)
        pack_prefixes(ev.names, ev.name_lens, sel, n, packed)
        flat = packed.reshape(-1)
        hosts5 = np.repeat(host, 5)
        out = np.empty(flat.shape[0], np.int64)
        self.keys_refused += self._prefixes.upsert(
            hosts5, flat, np.zeros(flat.shape[0], np.uint64), flat != 0,
            hosts5, MODE_COUNT, out,
        )  # fmt: skip

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

    def host_states(self, ids: Sequence[int] | I64) -> list[HostState]:
        """The full state of the given hosts, with their bins in the window."""
        ids_arr = np.asarray(ids, np.int64)
        used = int(self._bins.used[0])
        oldest = self.now_us // self.bin_us - self.window_bins + 1
        row_host = self._row_host[:used]
        sel = np.nonzero(np.isin(row_host, ids_arr) & (self._row_bin[:used] >= oldest))[0]
        order = np.lexsort((self._row_bin[sel], row_host[sel]))
        sel = sel[order]
        hosts_sorted = row_host[sel]
        prefixes = self._prefix_map(ids_arr)
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
        t = self._prefixes
        sel = np.nonzero(np.isin(t.a, ids))[0]
        out: dict[int, dict[bytes, int]] = {}
        for h, packed, count in zip(
            t.a[sel].tolist(), t.b[sel].tolist(), t.v[sel].tolist(), strict=True
        ):
            length = packed >> 56
            text = (packed & ((1 << (8 * length)) - 1)).to_bytes(8, "little")[:length]
            out.setdefault(h, {})[text] = count
        return out

    def find(self, addr_hi: int, addr_lo: int) -> int | None:
        """The host index of an address, or None."""
        n = self.n_hosts
        hit = np.nonzero(
            (self.host_hi[:n] == np.uint64(addr_hi)) & (self.host_lo[:n] == np.uint64(addr_lo))
        )[0]
        return int(hit[0]) if hit.shape[0] else None
