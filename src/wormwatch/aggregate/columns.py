"""The ingest's per-batch column work: distinct sets, counter columns, samples,
the network-wide series.

In: one batch's event columns with their host ids and bins, and the tables
they update. Out: the counters added, and per-event flags (new SYN target, new
name, new MX name) for the samples and the series. One kernel call of
:mod:`wormwatch.kernels.counting` counts a batch (a few numpy calls per batch
would cost more than the counting: batches hold a few thousand events); the
only Python loops are per new sample name (a few per host over a whole run)
and per distinct bin of a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from wormwatch.kernels.counting import count_events as count_events_kernel
from wormwatch.kernels.counting import flag_events, pick_samples
from wormwatch.model import BOOL, I32, I64, U64, Events
from wormwatch.tables import KeyTable


@dataclass(frozen=True, slots=True)
class Counted:
    """What :func:`count_events` found per event of a batch."""

    is_dns: BOOL
    is_syn: BOOL
    is_mx: BOOL
    name_hash: U64
    # SYN target new ever (2) / in this bin (1)
    pair: I64
    # name new to its host (2), MX name new to its host (2)
    new_name: I64
    new_mx: I64
    # keys the full tables refused
    refused: int


def _slots(table: KeyTable, n_new: int) -> tuple[I64, U64, U64, I64, I64, I64]:
    table.reserve(n_new)
    return table.a, table.b, table.c, table.v, table.w, table.used


def count_events(
    tables: tuple[KeyTable, KeyTable, KeyTable],
    ev: Events,
    where: tuple[I64, I64, I64],
    keyword_idx: npt.NDArray[np.int16],
    counters: tuple[I64, I32, npt.NDArray[np.float64]],
    keyword_apart: bool = False,
) -> Counted:
    """Count one batch's queries and SYNs: the distinct sets (``tables`` = SYN
    targets, names, prefixes), the counter columns of the host ``totals`` and
    bin ``rows`` and the host ``peaks`` (``counters``); ``where`` is per event
    (host id, bin row, bin). The three tables share one limit (the
    aggregate's ``max_keys``; the names table keeps keyword names apart too when
    ``keyword_apart``, as a delta's cell does). Two kernel calls:
    :func:`~wormwatch.kernels.counting.flag_events` says how many keys each
    table may get, :func:`~wormwatch.kernels.counting.count_events` counts.
    """
    pairs, names, prefixes = tables
    n = ev.n
    host = where[0]
    flags = (np.empty(n, np.bool_), np.empty(n, np.bool_), np.empty(n, np.bool_))
    has_name = np.empty(n, np.bool_)
    n_syn, n_named, n_mx = flag_events(
        host, ev.kind[:n], ev.qtype[:n], ev.name_lens[:n], n, (*flags, has_name)
    )
    # the names table holds the MX names too, and the keyword names when kept apart
    n_kw = int(np.count_nonzero(keyword_idx[:n] >= 0)) if keyword_apart else 0
    slots = (
        _slots(pairs, n_syn), _slots(names, n_named + n_mx + n_kw), _slots(prefixes, n_named)
    )  # fmt: skip
    out = (np.empty(n, np.uint64), np.empty(n, np.int64), np.empty(n, np.int64))
    new_kw = np.empty(n, np.int64)
    pair = np.empty(n, np.int64)
    columns = (
        ev.kind[:n], ev.qtype[:n], ev.dport[:n], ev.dst_hi[:n], ev.dst_lo[:n],
        ev.names[:n], ev.name_lens[:n], keyword_idx[:n],
    )  # fmt: skip
    refused = count_events_kernel(
        where, columns, n, (*flags, has_name), *slots, pairs.max_used, counters,
        (out[0], pair, out[1], out[2], new_kw), keyword_apart,
    )  # fmt: skip
    return Counted(*flags, out[0], pair, out[1], out[2], int(refused))


def take_samples(
    ev: Events,
    host: I64,
    is_new: BOOL,
    n_taken: I64,
    store: dict[int, list[bytes]],
    n_samples: int,
) -> None:
    """Keep each host's first new names, up to ``n_samples`` over the run."""
    picked = np.empty(ev.n, np.int64)
    k = pick_samples(host, is_new, ev.n, n_taken, n_samples, picked)
    if k == 0:
        return
    idx = picked[:k]
    slot = ev.names.shape[1]
    # one copy of the picked names, sliced per name: bounded by n_samples per host per run
    blob = ev.names[idx].tobytes()
    starts = range(0, k * slot, slot)
    for h, start, length in zip(
        host[idx].tolist(), starts, ev.name_lens[idx].tolist(), strict=True
    ):
        taken = store.get(h)
        if taken is None:
            store[h] = taken = []
        taken.append(blob[start : start + length])


def add_network(
    network: dict[int, list[int]], bins: I64, is_client: BOOL, sel: tuple[BOOL, BOOL, BOOL]
) -> None:
    """Add the clients' (is_dns, is_mx, is_syn) events to the per-bin series."""
    lo = int(bins.min())
    width = int(bins.max()) - lo + 1
    rel = bins - lo
    present = None
    if width > bins.shape[0]:
        # bins far apart (one record stamped 1970 among those of 2026): counted by
        # the bins present, not over the span between them (10^9 bins for 2106)
        present, rel = np.unique(bins, return_inverse=True)
        width = present.shape[0]
    series = [np.bincount(rel[m & is_client], minlength=width) for m in sel]
    for k in np.flatnonzero(series[0] + series[1] + series[2]).tolist():
        acc = network.setdefault(lo + k if present is None else int(present[k]), [0, 0, 0])
        for j in range(3):
            acc[j] += int(series[j][k])
