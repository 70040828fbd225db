"""Merging side of the delta API: deltas from any number of sensors, in any
order, added into one aggregate.

In: :class:`~wormwatch.delta.Delta` values. Out: the aggregate's state, as if
it had counted every event of every delta itself.

Counters add. The counters that depend on history are derived here again from
the sets: a SYN target, a name, an NXDOMAIN name or registrable domain counts
as *new* in the earliest bin any delta reports it in (a delta that arrives late
moves the count back to its bin; a domain's name score moves with it), and a
target counts once per bin however many sensors saw it. The tables of these
sets, and the name-prefix counts, keep each key's latest bin too: when one
could fill, the keys no delta reported since before the window go, as on a
sensor, and the aggregate counts them (and the keys a full table refused) as
its ingest does. Sample names are the host's earliest ones over all deltas
(NXDOMAIN samples: the earliest name of each registrable domain). Each delta
identity is applied once; a second copy changes nothing.

Memory follows the aggregate's limits, not the length of the run: sample times
are kept per host id (an evicted host's go with it, as the aggregate's samples
do), the identities and the (host, bin, target) keys only for the bins of the
window. A bin that leaves the window leaves each (sensor, shard, part) its span
of forgotten bins: a delta older than the window is merged (into lifetime
totals) unless it falls in its sender's span, where a copy cannot be told from
a delta never seen; its SYN targets count once per delta in its bin's distinct
count (once per sensor that reports them that late).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from wormwatch.aggregate import Aggregator, Renumbering
from wormwatch.aggregate.applied import NO_BIN, AppliedIds
from wormwatch.delta import N_ADDITIVE, U32, Delta
from wormwatch.kernels.aggregate import MERGE_ADD, MERGE_FIRST, table_merge
from wormwatch.model import (
    C_KW_NAMES_NEW,
    C_MX,
    C_MX_DOM_NEW,
    C_NAMES_NEW,
    C_NX_DOMS_NEW,
    C_NX_NAMES_NEW,
    C_NX_SCORE,
    C_QUERIES,
    C_SYN135,
    C_SYN139,
    C_SYN445,
    C_SYN_DST_BIN,
    C_SYN_DST_NEW,
    I64,
    U64,
)
from wormwatch.tables import KeyTable

_MIX = np.uint64(0x9E3779B97F4A7C15)
# the counter a name's first sighting adds to, by salt: names, MX names, NXDOMAIN
# names, NXDOMAIN domains (a WWD1 delta's; later ones have their own domains table),
# keyword names
_NEW_COLUMN = np.array(
    [C_NAMES_NEW, C_MX_DOM_NEW, C_NX_NAMES_NEW, C_NX_DOMS_NEW, C_KW_NAMES_NEW], np.int64
)
N_SALTS = int(_NEW_COLUMN.shape[0])
_NX_DOMAIN_SALT = 3
# sample salts: names, MX names, NXDOMAIN names
_N_SAMPLE_SALTS = 3
# a sample: (first seen, name, domain offset)
_Sample = tuple[int, bytes, int]


def _target_key(hi: U64, lo: U64) -> U64:
    """One word per target: the IPv4 (mapped) address itself; IPv6 hashed."""
    with np.errstate(over="ignore"):
        return np.where(hi == 0, lo, (hi * _MIX) ^ lo ^ (lo >> np.uint64(29)))


def _merge_into(
    table: KeyTable, a: I64, b: U64, c: U64, values: I64, mode: int, latest_bin: int = 0
) -> tuple[I64, I64, int]:
    """(out, out_old, refused) of :func:`table_merge` on a growable table."""
    n = int(a.shape[0])
    table.reserve(n)
    out = np.empty(n, np.int64)
    old = np.empty(n, np.int64)
    refused = table_merge(
        table.a, table.b, table.c, table.v, table.w, table.used, table.max_used,
        a, b, c, values, n, mode, latest_bin, out, old,
    )  # fmt: skip
    return out, old, int(refused)


@dataclass(frozen=True, slots=True)
class Applied:
    """What merging one delta did: the aggregate's ids of its hosts (-1 = no
    room), and the renumbering when hosts had to be evicted to make room (for
    whoever keys by host id, as after :meth:`Aggregator.ingest`)."""

    hosts: I64
    renumbering: Renumbering | None


@dataclass(frozen=True, slots=True)
class MergerSizes:
    """How much a merger keeps beside the aggregate (each bounded by its limits)."""

    # delta identities of the window's bins
    n_identities: int
    # (sensor, shard, part) spans of bins whose identities were forgotten
    n_spans: int
    # (host id, kind) sample lists with their first-seen times
    n_sample_lists: int
    # (host, bin, target) keys
    n_bin_targets: int


class DeltaMerger:
    """Applies deltas to ``agg``; remembers which identities it applied."""

    def __init__(self, agg: Aggregator) -> None:
        self.agg = agg
        # the distinct sets keep each key's latest bin too: what a full one drops
        for table in (agg._pairs, agg._names):
            table.keep_latest()
        # (host, bin, target) seen: a target counts once per bin
        self._bin_targets = KeyTable(agg._pairs.max_used)
        # the window's first bin when the table last dropped the keys before it
        self._targets_from = NO_BIN
        # per sample salt: host id -> its samples, earliest first (an evicted
        # host's go with it, as the aggregate's own samples do)
        self._samples: list[dict[int, list[_Sample]]] = [{} for _ in range(_N_SAMPLE_SALTS)]
        self.applied = AppliedIds()
        self.n_rows = 0

    @property
    def n_duplicates(self) -> int:
        """Copies of applied identities that came again (nothing changed)."""
        return self.applied.n_duplicates

    def sizes(self) -> MergerSizes:
        """How much this merger keeps beside the aggregate."""
        return MergerSizes(
            n_identities=self.applied.n_identities,
            n_spans=self.applied.n_spans,
            n_sample_lists=sum(len(by_host) for by_host in self._samples),
            n_bin_targets=int(self._bin_targets.used[0]),
        )

    def apply(self, delta: Delta) -> Applied | None:
        """Merge ``delta``; None when this identity was applied before, or may
        have been (older than the window and in its sender's span of forgotten
        bins): nothing changes."""
        key = delta.key
        if self.applied.is_copy(key):
            return None
        mismatch = self.mismatch(delta)
        if mismatch is not None:
            raise ValueError(mismatch)
        self.applied.add(key)
        agg = self.agg
        if delta.seen_last_us >= 0:
            agg._now_us = max(agg.now_us, delta.seen_last_us)
            start = delta.seen_first_us
            agg._start_us = start if agg.start_us < 0 else min(agg.start_us, start)
        self.applied.forget_before(agg.oldest_bin())
        n = delta.n_hosts
        if n == 0:
            return Applied(np.zeros(0, np.int64), None)
        self.n_rows += n
        host, renumbering = agg._admit(delta.hi, delta.lo, np.ones(n, np.bool_))
        if renumbering is not None:
            self._bin_targets.remap(renumbering.mapping, host_is_value=False)
            self._samples = [renumbering.follow(by_host) for by_host in self._samples]
        agg._touch(host, delta.first_us)
        agg._touch(host, delta.last_us)
        row = self._rows_of(host, np.full(n, delta.ident.bin, np.int64))
        ok = host >= 0
        counts = delta.counts.astype(np.int64)
        # a delta's hosts are distinct, so a fancy-indexed add is exact
        agg._hosts.totals[host[ok], :N_ADDITIVE] += counts[ok]
        has_row = ok & (row >= 0)
        agg._bins.rows[row[has_row], :N_ADDITIVE] += delta.counts[has_row]
        agg._hosts.raise_peaks(host[has_row], agg._bins.rows[row[has_row]])
        self._merge_targets(delta, host)
        self._merge_names(delta, host)
        self._merge_domains(delta, host)
        self._merge_prefixes(delta, host)
        self._merge_samples(delta, host)
        self._add_network(delta, host, counts)
        return Applied(host, renumbering)

    def mismatch(self, delta: Delta) -> str | None:
        """Why ``delta`` cannot merge into this aggregate (its bins are of another
        length: a sensor with another ``[aggregate] bin_s``); None when it can."""
        if delta.bin_s != self.agg.bin_s:
            return f"its bins are {delta.bin_s} s, this aggregate's {self.agg.bin_s} s"
        return None

    def _rows_of(self, host: I64, bins: I64) -> I64:
        return self.agg._bins.rows_of(host, bins, self.agg.oldest_bin())

    def _count(self, host: I64, bins: I64, col: int, sign: int | I64) -> None:
        """Add ``sign`` (one or per key) to column ``col`` of each (host, bin)
        row and host total."""
        ok = host >= 0
        if not ok.any():
            return
        host, bins = host[ok], bins[ok]
        add = sign[ok] if isinstance(sign, np.ndarray) else sign
        np.add.at(self.agg._hosts.totals[:, col], host, add)
        row = self._rows_of(host, bins)
        has_row = row >= 0
        np.add.at(
            self.agg._bins.rows[:, col], row[has_row],
            add[has_row] if isinstance(add, np.ndarray) else add,
        )  # fmt: skip

    def _count_first(
        self, out: I64, old: I64, host: I64, b: int, col: int, weight: I64 | None = None
    ) -> None:
        """Counts of a first-seen merge: new keys here, moved ones from their old
        bin (1 per key, or ``weight`` per key)."""
        w = np.ones(out.shape[0], np.int64) if weight is None else weight
        here = (out == 2) | (out == 3)
        self._count(host[here], np.full(int(np.count_nonzero(here)), b), col, w[here])
        moved = out == 3
        if moved.any():
            self._count(host[moved], old[moved], col, -w[moved])

    def _first_seen(
        self, table: KeyTable, delta: Delta, host: I64, refs: U32, keys: tuple[U64, U64]
    ) -> tuple[I64, I64, I64]:
        """(host ids, out, old) of merging the delta's keys (of its hosts ``refs``)
        into ``table`` as first seen in its bin (:func:`table_merge`'s MERGE_FIRST)."""
        h = host[refs.astype(np.int64)]
        bins = np.full(int(refs.shape[0]), delta.ident.bin, np.int64)
        # keys last seen by any sensor before the window go when the table could
        # fill (a full one refused every new key: no new target, MX domain or
        # NXDOMAIN domain counted, no new scanner or mailer was flagged, for good)
        self.agg._keys_dropped += table.make_room(int(refs.shape[0]), self.agg.oldest_bin())
        out, old, refused = _merge_into(table, h, keys[0], keys[1], bins, MERGE_FIRST)
        self.agg._keys_refused += refused
        return h, out, old

    def _merge_targets(self, delta: Delta, host: I64) -> None:
        m = int(delta.target_host.shape[0])
        if m == 0:
            return
        b = delta.ident.bin
        bins = np.full(m, b, np.int64)
        th, out, old = self._first_seen(
            self.agg._pairs, delta, host, delta.target_host, (delta.target_hi, delta.target_lo)
        )
        self._count_first(out, old, th, b, C_SYN_DST_NEW)
        oldest = self.agg.oldest_bin()
        if b < oldest:
            # a bin before the window has no keys left: a delta's targets are
            # distinct, so each counts (once per sensor reporting it this late)
            self._count(th, bins, C_SYN_DST_BIN, 1)
            return
        self._drop_targets_before(oldest, m)
        key = _target_key(delta.target_hi, delta.target_lo)
        out, _old, refused = _merge_into(
            self._bin_targets, th, bins.astype(np.uint64), key, np.ones(m, np.int64), MERGE_ADD
        )
        self.agg._keys_refused += refused
        self._count(th[out == 1], bins[out == 1], C_SYN_DST_BIN, 1)

    def _drop_targets_before(self, oldest_bin: int, n_new: int) -> None:
        """Drop the (host, bin, target) keys of bins before ``oldest_bin`` when
        ``n_new`` more keys would grow the table or find it full: at most once
        per first bin of the window, and then with room for as many keys again
        as were kept (below its size limit: the next rebuild is that many keys away)."""
        t = self._bin_targets
        need = int(t.used[0]) + n_new
        if oldest_bin <= self._targets_from or (10 * need <= 7 * t.capacity and need <= t.max_used):
            return
        self._targets_from = oldest_bin
        keep = (t.a >= 0) & (t.b.astype(np.int64) >= oldest_bin)
        a, b, c, v = t.a[keep], t.b[keep], t.c[keep], t.v[keep]
        t.clear()
        _merge_into(t, a, b, c, v, MERGE_ADD)
        t.reserve(int(a.shape[0]))

    def _merge_names(self, delta: Delta, host: I64) -> None:
        m = int(delta.name_host.shape[0])
        if m == 0:
            return
        b = delta.ident.bin
        salt = delta.name_salt.astype(np.uint64)
        nh, out, old = self._first_seen(
            self.agg._names, delta, host, delta.name_host, (delta.name_hash, salt)
        )
        for s in np.unique(salt).tolist():
            if s < N_SALTS:
                k = salt == s
                self._count_first(out[k], old[k], nh[k], b, int(_NEW_COLUMN[s]))
                if s == 0 and not delta.keyword_names:
                    # a sensor before WWD3: every new name counts, as it did then
                    self._count_first(out[k], old[k], nh[k], b, C_KW_NAMES_NEW)

    def _merge_domains(self, delta: Delta, host: I64) -> None:
        """NXDOMAIN registrable domains: new in their earliest bin, with their scores."""
        m = int(delta.domain_host.shape[0])
        if m == 0:
            return
        b = delta.ident.bin
        salt = np.full(m, _NX_DOMAIN_SALT, np.uint64)
        dh, out, old = self._first_seen(
            self.agg._names, delta, host, delta.domain_host, (delta.domain_hash, salt)
        )
        self._count_first(out, old, dh, b, C_NX_DOMS_NEW)
        self._count_first(out, old, dh, b, C_NX_SCORE, delta.domain_score.astype(np.int64))

    def _merge_prefixes(self, delta: Delta, host: I64) -> None:
        m = int(delta.prefix_host.shape[0])
        if m == 0:
            return
        ph = host[delta.prefix_host.astype(np.int64)]
        # keys last reported before the window go when the table could fill (the module doc)
        self.agg._keys_dropped += self.agg._prefixes.make_room(m, self.agg.oldest_bin())
        _out, _old, refused = _merge_into(
            self.agg._prefixes, ph, delta.prefix_key, np.zeros(m, np.uint64),
            delta.prefix_count.astype(np.int64), MERGE_ADD, delta.ident.bin,
        )  # fmt: skip
        self.agg._keys_refused += refused

    def _merge_samples(self, delta: Delta, host: I64) -> None:
        """Keep each host's earliest distinct names.

        Python per (host, kind) with samples, at most the sample count per
        host per sensor over a whole run; a host's first samples (the usual
        case) are taken as they come, already in time order.
        """
        if delta.sample_host.shape[0] == 0:
            return
        rows = delta.sample_host.astype(np.int64)
        salts = delta.sample_salt.astype(np.int64)
        order = np.lexsort((delta.sample_us, salts, rows))
        order = order[salts[order] < _N_SAMPLE_SALTS]
        names = delta.sample_names()
        group = rows[order] * _N_SAMPLE_SALTS + salts[order]
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        ends = np.r_[starts[1:], group.shape[0]]
        cands = list(
            zip(
                delta.sample_us[order].tolist(),
                [names[k] for k in order.tolist()],
                delta.sample_reg[order].tolist(),
                strict=True,
            )
        )
        hosts = host.tolist()
        for start, end, g in zip(
            starts.tolist(), ends.tolist(), group[starts].tolist(), strict=True
        ):
            i, salt = divmod(g, _N_SAMPLE_SALTS)
            if hosts[i] >= 0:
                self._take(hosts[i], salt, cands[start:end])

    def _take(self, h: int, salt: int, cand: list[_Sample]) -> None:
        """Merge candidate (first seen, name, domain offset) samples of host ``h``:
        the earliest of each name (NXDOMAIN samples: of each registrable domain)."""
        agg = self.agg
        by_host = self._samples[salt]
        entries = by_host.get(h)
        if entries is not None:
            first: dict[bytes, _Sample] = {}
            for t, name, reg in sorted(entries + cand):
                first.setdefault(name[reg:], (t, name, reg))
            cand = sorted(first.values())
        entries = cand[: agg.n_samples]
        by_host[h] = entries
        store, n_taken = {
            0: (agg._samples, agg._hosts.n_sampled),
            1: (agg._mx_samples, agg._hosts.n_mx_sampled),
            2: (agg._nx_samples, agg._hosts.n_nx_sampled),
        }[salt]
        store[h] = [name for _t, name, _reg in entries]
        n_taken[h] = len(entries)

    def _add_network(self, delta: Delta, host: I64, counts: npt.NDArray[np.int64]) -> None:
        """The network-wide series of the bin: its non-allowlisted hosts' counts."""
        client = (host >= 0) & ~self.agg._hosts.is_allowlisted[np.maximum(host, 0)]
        if not client.any():
            return
        c = counts[client]
        add = [
            int(c[:, C_QUERIES].sum()),
            int(c[:, C_MX].sum()),
            int(c[:, C_SYN135].sum() + c[:, C_SYN139].sum() + c[:, C_SYN445].sum()),
        ]
        if not any(add):
            return
        acc = self.agg._network.setdefault(delta.ident.bin, [0, 0, 0])
        for j in range(3):
            acc[j] += add[j]
