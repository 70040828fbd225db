"""Sensor side of the delta API: the per-host state of each bin, exported
as :class:`~wormwatch.delta.Delta` values when the bin closes.

In: the same event batches the aggregate stage counts. Out: deltas, one per
(shard, bin, part) with at least one host, for the publisher.

Each open bin of packet time is counted by its own small aggregate (a
*cell*, :mod:`~wormwatch.aggregate.cell`), so what a bin saw (its distinct
SYN targets, its distinct names, its prefix counts) can be read off as sets:
the sensor's main aggregate only knows what is new over the whole run. A
bin closes once packet time is ``grace_s`` past its end; events that still
arrive for a closed bin open it again under a new generation, whose parts are
numbered after the earlier ones, so nothing is lost and identities stay
derived from the data. Part numbers are this run's: a restarted sensor
numbers a bin's parts from 0 again, and its deltas are told from the earlier
run's by what they carry (a delta's identity includes a digest of its
content, :attr:`~wormwatch.delta.Delta.key`).

What a close leaves for later bins is bounded by the window (of packet time
less the grace), not by the run: each bin's count of closes is kept while the
bin is in the window, then only the most of them; a bin opened again after it
left the window numbers its parts after that most, so one run still never
gives two deltas one id. The sample names sent per host are kept as
:mod:`~wormwatch.aggregate.sent` says.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from wormwatch.aggregate import Aggregator
from wormwatch.aggregate.applied import NO_BIN
from wormwatch.aggregate.cell import CellAggregator
from wormwatch.aggregate.sent import SentNames
from wormwatch.answers import NX_DOMAIN_SALT, host_words
from wormwatch.delta import DEFAULT_SHARDS, N_ADDITIVE, Delta, DeltaId, shard_of
from wormwatch.model import I64, Events
from wormwatch.nets import NetMask, in_networks

# parts of one generation of a (shard, bin); a re-opened bin starts past them
PARTS_PER_GENERATION = 1_000_000


def take_events(ev: Events, idx: I64) -> Events:
    """The events at ``idx``, copied."""
    return ev.take(idx)


@dataclass(slots=True)
class _Cell:
    agg: CellAggregator
    generation: int
    # packet time of the first and last event of the bin, whoever sent it
    first_us: int = -1
    last_us: int = -1


@dataclass(frozen=True, slots=True)
class ExporterSizes:
    """What an exporter keeps between bins (bounded by its window and limits)."""

    # hosts whose sent sample names are kept (at most max_hosts)
    n_sent_hosts: int
    # bins whose closes are counted (those of the window)
    n_generations: int


class DeltaExporter:
    """Cells of the open bins, closed into deltas as packet time moves on.

    Args:
        sensor: this sensor's name (part of every delta's identity).
        bin_s: bin width, as the aggregate's.
        n_shards: the fixed shard count of the cluster.
        owned: source networks this sensor reports (empty: all).
        max_hosts: hosts one cell tracks.
        n_samples: sample names per host, as the aggregate's.
        max_rows: hosts per delta part.
        max_bytes: bytes per delta part at most (the broker's default maximum
            message is 1 MiB): a part is halved until it fits.
        grace_s: packet time past a bin's end before it closes.
        window_s: the aggregate's window: how long what a close leaves is kept.
    """

    def __init__(
        self,
        *,
        sensor: str,
        bin_s: int = 60,
        n_shards: int = DEFAULT_SHARDS,
        owned: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
        max_hosts: int = 100_000,
        n_samples: int = 5,
        max_rows: int = 8192,
        max_bytes: int = 900_000,
        grace_s: float = 2.0,
        window_s: int = 86400,
    ) -> None:
        self.sensor = sensor
        self.bin_s = int(bin_s)
        self.bin_us = self.bin_s * 1_000_000
        self.n_shards = n_shards
        self.owned = [NetMask.of(n) for n in owned]
        self.max_hosts = max_hosts
        self.n_samples = n_samples
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.grace_us = int(grace_s * 1e6)
        self.window_bins = max(1, int(window_s) // self.bin_s)
        self.cells: dict[int, _Cell] = {}
        # bin -> how often it closed, for the bins from _horizon on (the window's):
        # a bin opened again numbers its parts after those of its earlier closes
        self._generations: dict[int, int] = {}
        self._horizon = NO_BIN
        # the most closes of a bin before _horizon: where such a bin's parts go on
        self._most_forgotten = 0
        self._sent = SentNames(max_hosts=max_hosts)
        self.events_not_owned = 0
        self.now_us = -1

    def ingest(self, ev: Events, keyword_idx: npt.NDArray[np.int16]) -> None:
        """Count one batch into the cells of its bins."""
        n = ev.n
        if n == 0:
            return
        kw = keyword_idx[:n]
        self._see(ev.ts_us[:n])
        self.now_us = max(self.now_us, int(ev.ts_us[:n].max()))
        if self.owned:
            # an answer belongs to the client it answers (its destination)
            hi, lo, _ = host_words(ev)
            mine = in_networks(hi, lo, self.owned)
            self.events_not_owned += n - int(np.count_nonzero(mine))
            idx = np.nonzero(mine)[0]
            ev, kw, n = take_events(ev, idx), kw[idx], int(idx.shape[0])
            if n == 0:
                return
        bins = ev.ts_us[:n] // self.bin_us
        for b in np.unique(bins).tolist():
            cell = self._cell(b)
            if int(bins[0]) == b and int(bins[n - 1]) == b and (bins == b).all():
                cell.agg.ingest(ev, kw)
            else:
                idx = np.nonzero(bins == b)[0]
                cell.agg.ingest(take_events(ev, idx), kw[idx])

    def _see(self, ts_us: I64) -> None:
        """Packet time per bin, of every event (owned or not, ignored or not)."""
        bins = ts_us // self.bin_us
        for b in np.unique(bins).tolist():
            in_bin = ts_us[bins == b]
            cell = self._cell(b)
            lo, hi = int(in_bin.min()), int(in_bin.max())
            cell.first_us = lo if cell.first_us < 0 else min(cell.first_us, lo)
            cell.last_us = max(cell.last_us, hi)

    def _cell(self, b: int) -> _Cell:
        cell = self.cells.get(b)
        if cell is None:
            agg = CellAggregator(
                bin_s=self.bin_s,
                window_s=self.bin_s,
                max_hosts=self.max_hosts,
                max_host_bins=self.max_hosts,
                n_samples=self.n_samples,
            )
            gen = self._most_forgotten if b < self._horizon else 0
            cell = _Cell(agg, self._generations.get(b, gen))
            self.cells[b] = cell
        return cell

    def advance(self, now_us: int) -> None:
        """Packet time is at least ``now_us`` (live capture on a quiet link:
        the wall clock, which stamps the packets, still moves bins on)."""
        self.now_us = max(self.now_us, now_us)

    def close_due(self) -> list[Delta]:
        """Deltas of the bins that packet time has left (by ``grace_s``)."""
        due = [b for b in self.cells if (b + 1) * self.bin_us + self.grace_us <= self.now_us]
        return self._close(sorted(due))

    def close_all(self) -> list[Delta]:
        """Deltas of every open bin (the end of a replay)."""
        return self._close(sorted(self.cells))

    def _close(self, bins: list[int]) -> list[Delta]:
        out: list[Delta] = []
        for b in bins:
            cell = self.cells.pop(b)
            self._generations[b] = cell.generation + 1
            out.extend(self._export(b, cell))
        self._forget()
        return out

    def _forget(self) -> None:
        """Forget the closes of the bins before the window that ends ``grace_s``
        before packet time (all but the most of them), and the sent names of
        hosts without samples in it."""
        oldest = (self.now_us - self.grace_us) // self.bin_us - self.window_bins + 1
        self._horizon = max(self._horizon, oldest)
        for b in [b for b in self._generations if b < self._horizon]:
            self._most_forgotten = max(self._most_forgotten, self._generations.pop(b))
        self._sent.forget_before(self._horizon)

    def sizes(self) -> ExporterSizes:
        """What this exporter keeps between bins, beside its open cells."""
        return ExporterSizes(self._sent.n_hosts, len(self._generations))

    def _export(self, b: int, cell: _Cell) -> list[Delta]:
        agg = cell.agg
        n = agg.n_hosts
        addr_hi, addr_lo = agg.address_words()
        shard = shard_of(addr_hi, addr_lo, self.n_shards)
        # hosts by (shard, address): parts are then the same on every re-read
        order = np.lexsort((addr_lo, addr_hi, shard))
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n)
        tables = _tables(agg)
        samples = self._samples(b, agg).arrays()
        out: list[Delta] = []
        bounds = np.searchsorted(shard[order], np.arange(self.n_shards + 1))
        seen = (cell.first_us, cell.last_us)
        for s in range(self.n_shards):

            def parts(start: int, stop: int, k: int, s: int = s) -> list[Delta]:
                """Hosts ``order[start:stop]``, halved until each part fits
                ``max_bytes`` (one host alone is one part, whatever its size)."""
                ident = DeltaId(self.sensor, s, b, cell.generation * PARTS_PER_GENERATION + k)
                delta = _slice(agg, ident, seen, order[start:stop], rank, start, tables, samples)
                if stop - start <= 1 or delta.nbytes() <= self.max_bytes:
                    return [delta]
                first = parts(start, (start + stop) // 2, k)
                return first + parts((start + stop) // 2, stop, k + len(first))

            lo, hi = int(bounds[s]), int(bounds[s + 1])
            # a shard without hosts in the bin still learns the bin's packet time
            spans = [(a, min(a + self.max_rows, hi)) for a in range(lo, hi, self.max_rows)]
            mine: list[Delta] = []
            for start, stop in spans or [(lo, lo)]:
                mine.extend(parts(start, stop, len(mine)))
            out.extend(mine)
        return out

    def _samples(self, b: int, agg: CellAggregator) -> _Samples:
        """The samples of bin ``b`` not sent for their host as far as ``_sent``
        recalls (an NXDOMAIN sample: of a registrable domain not sent)."""
        out = _Samples()
        for salt, store, when in (
            (0, agg._samples, agg.sample_us),
            (1, agg._mx_samples, agg.mx_sample_us),
            (2, agg._nx_samples, agg.nx_sample_us),
        ):
            for h, taken in store.items():
                sent = self._sent.of(agg.address(h), salt, b)
                regs = agg.nx_sample_reg.get(h, []) if salt == 2 else [0] * len(taken)
                for name, t, r in zip(taken, when.get(h, []), regs, strict=True):
                    if len(sent) >= self.n_samples or name[r:] in sent:
                        continue
                    sent.add(name[r:])
                    out.add(h, salt, t, r, name)
        return out


@dataclass(slots=True)
class _Samples:
    """Sample names of a cell to send: per sample its host, salt, first time,
    registrable domain offset and name."""

    host: list[int] = field(default_factory=list)
    salt: list[int] = field(default_factory=list)
    us: list[int] = field(default_factory=list)
    reg: list[int] = field(default_factory=list)
    names: list[bytes] = field(default_factory=list)

    def add(self, host: int, salt: int, us: int, reg: int, name: bytes) -> None:
        self.host.append(host)
        self.salt.append(salt)
        self.us.append(us)
        self.reg.append(reg)
        self.names.append(name)

    def arrays(self) -> _SampleArrays:
        return (
            np.array(self.host, np.int64),
            np.array(self.salt, np.uint8),
            np.array(self.us, np.int64),
            np.array(self.reg, np.uint8),
            self.names,
        )


# (host, salt, first time, domain offset, name) per sample
_SampleArrays = tuple[I64, npt.NDArray[np.uint8], I64, npt.NDArray[np.uint8], list[bytes]]


_Tables = dict[str, tuple[np.ndarray, ...]]


def _tables(agg: CellAggregator) -> _Tables:
    """The cell's keyed sets as (host, key columns..., value) of occupied slots;
    the NXDOMAIN domains (salt 3 of the names) apart, valued by their scores."""
    out: _Tables = {}
    for name, table in (
        ("targets", agg._pairs),
        ("names", agg._names),
        ("prefixes", agg._prefixes),
    ):
        sel = table.a >= 0
        out[name] = (table.a[sel], table.b[sel], table.c[sel], table.v[sel])
    host, key, salt, _v = out["names"]
    is_domain = salt == np.uint64(NX_DOMAIN_SALT)
    out["names"] = tuple(col[~is_domain] for col in out["names"])
    scores = agg.domain_scores
    score = np.array([scores.get(k, 0) for k in key[is_domain].tolist()], np.uint16)
    out["domains"] = (host[is_domain], key[is_domain], score)
    return out


def _slice(
    agg: Aggregator,
    ident: DeltaId,
    seen: tuple[int, int],
    hosts: I64,
    rank: I64,
    start: int,
    tables: _Tables,
    samples: _SampleArrays,
) -> Delta:
    """The delta of the cell hosts ``hosts`` (ranks ``start..``)."""
    stop = start + int(hosts.shape[0])

    def rows(owner: I64) -> tuple[I64, npt.NDArray[np.uint32]]:
        r = rank[owner]
        sel = np.nonzero((r >= start) & (r < stop))[0]
        return sel, (r[sel] - start).astype(np.uint32)

    t_sel, t_host = rows(tables["targets"][0])
    n_sel, n_host = rows(tables["names"][0])
    d_sel, d_host = rows(tables["domains"][0])
    p_sel, p_host = rows(tables["prefixes"][0])
    s_host_all, s_salt, s_us, s_reg, s_names = samples
    s_sel, s_host = rows(s_host_all)
    picked = [s_names[i] for i in s_sel.tolist()]
    return Delta(
        ident=ident,
        bin_s=agg.bin_s,
        seen_first_us=seen[0],
        seen_last_us=seen[1],
        hi=agg.address_words()[0][hosts],
        lo=agg.address_words()[1][hosts],
        first_us=agg.first_seen_us()[hosts],
        last_us=agg.last_seen_us()[hosts],
        counts=agg.totals()[hosts, :N_ADDITIVE].astype(np.int32),
        target_host=t_host,
        target_hi=tables["targets"][1][t_sel],
        target_lo=tables["targets"][2][t_sel],
        name_host=n_host,
        name_hash=tables["names"][1][n_sel],
        name_salt=tables["names"][2][n_sel].astype(np.uint8),
        prefix_host=p_host,
        prefix_key=tables["prefixes"][1][p_sel],
        prefix_count=tables["prefixes"][3][p_sel],
        sample_host=s_host,
        sample_salt=s_salt[s_sel],
        sample_us=s_us[s_sel],
        sample_lens=np.array([len(x) for x in picked], np.uint16),
        sample_bytes=np.frombuffer(b"".join(picked), np.uint8).copy(),
        domain_host=d_host,
        domain_hash=tables["domains"][1][d_sel],
        domain_score=tables["domains"][2][d_sel],
        sample_reg=s_reg[s_sel],
    )
