"""The ingest's per-batch column work: distinct sets, counter columns, samples,
the network-wide series.

In: one batch's event columns with their host ids and bins, and the tables
they update. Out: per-event flags (new SYN target, new name, new MX name) and
the counter columns each event adds to. Vectorised numpy and the kernels of
:mod:`wormwatch.kernels.aggregate`; the only Python loops are per new sample
name (a few per host over a whole run) and per distinct bin of a batch.
"""

from __future__ import annotations

import numpy as np

from wormwatch.kernels.aggregate import (
    MODE_COUNT,
    MODE_TAG,
    hash_names,
    pack_prefixes,
    pick_samples,
)
from wormwatch.model import (
    BOOL,
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
    QTYPE_A,
    QTYPE_AAAA,
    QTYPE_MX,
    QTYPE_PTR,
    Events,
)
from wormwatch.tables import KeyTable

# Salt that keeps a host's MX names apart from its other names in one table.
MX_SALT = 1

_QTYPE_COL = np.full(65536, C_OTHER, np.int64)
_QTYPE_COL[QTYPE_A] = C_A
_QTYPE_COL[QTYPE_AAAA] = C_AAAA
_QTYPE_COL[QTYPE_MX] = C_MX
_QTYPE_COL[QTYPE_PTR] = C_PTR
_PORT_COL = np.full(65536, -1, np.int64)
_PORT_COL[135] = C_SYN135
_PORT_COL[139] = C_SYN139
_PORT_COL[445] = C_SYN445


def distinct(
    pairs: KeyTable,
    names: KeyTable,
    ev: Events,
    host: I64,
    bins: I64,
    sel: tuple[BOOL, BOOL, BOOL],
) -> tuple[I64, I64, I64, int]:
    """Per event: SYN target new ever (2) / in this bin (1); name new (2);
    MX name new (2); and how many keys the full tables refused.

    ``sel`` is (is_syn, has_name, is_mx) per event.
    """
    is_syn, has_name, is_mx = sel
    n = ev.n
    zeros_u = np.zeros(n, np.uint64)
    pair = np.empty(n, np.int64)
    refused = pairs.upsert(host, ev.dst_hi[:n], ev.dst_lo[:n], is_syn, bins, MODE_TAG, pair)
    name_hash = np.empty(n, np.uint64)
    hash_names(ev.names, ev.name_lens, n, name_hash)
    new_name = np.empty(n, np.int64)
    refused += names.upsert(host, name_hash, zeros_u, has_name, bins, MODE_TAG, new_name)
    new_mx = np.empty(n, np.int64)
    refused += names.upsert(
        host, name_hash, zeros_u + np.uint64(MX_SALT), is_mx & has_name, bins, MODE_TAG, new_mx
    )
    return pair, new_name, new_mx, refused


def count_prefixes(prefixes: KeyTable, ev: Events, host: I64, sel: BOOL) -> int:
    """Count the name prefixes of the selected events; keys refused."""
    n = ev.n
    packed = np.empty(n, np.uint64)
    pack_prefixes(ev.names, ev.name_lens, sel, n, packed)
    out = np.empty(n, np.int64)
    return prefixes.upsert(host, packed, np.zeros(n, np.uint64), packed != 0, host, MODE_COUNT, out)


def counter_columns(
    ev: Events, is_dns: BOOL, is_syn: BOOL, is_kw: BOOL, pair: I64, new_name: I64, new_mx: I64
) -> I64:
    """The counter columns each event adds 1 to (``(n, 6)``, -1 = none)."""
    n = ev.n
    qtype = ev.qtype[:n]
    cols = np.full((n, 6), -1, np.int64)
    cols[:, 0] = np.where(is_dns, C_QUERIES, np.where(is_syn, _PORT_COL[ev.dport[:n]], -1))
    cols[:, 1] = np.where(is_dns, _QTYPE_COL[qtype], np.where(pair >= 1, C_SYN_DST_BIN, -1))
    cols[:, 2] = np.where(is_kw, C_KW, np.where(pair == 2, C_SYN_DST_NEW, -1))
    cols[:, 3] = np.where(is_kw & (qtype == QTYPE_A), C_KW_A, -1)
    cols[:, 4] = np.where(new_name == 2, C_NAMES_NEW, -1)
    cols[:, 5] = np.where(new_mx == 2, C_MX_DOM_NEW, -1)
    return cols


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
    series = [np.bincount(rel[m & is_client], minlength=width) for m in sel]
    for k in np.flatnonzero(series[0] + series[1] + series[2]).tolist():
        acc = network.setdefault(lo + k, [0, 0, 0])
        for j in range(3):
            acc[j] += int(series[j][k])
