"""Reading hosts out of the aggregate stage's tables, as whole states.

In: host ids and the aggregate's tables. Out: one
:class:`~wormwatch.model.HostState` per id (copies: later batches never change
a state already read out), for the detector and the presenters.
"""

from __future__ import annotations

import numpy as np

from wormwatch.aggregate.bins import BinRows, host_mask
from wormwatch.aggregate.hosts import HostTable
from wormwatch.model import I64, HostState, addr_text
from wormwatch.tables import KeyTable


def read_states(
    ids: I64,
    hosts: HostTable,
    bins: BinRows,
    oldest_bin: int,
    prefixes: KeyTable | None,
    prefix_ids: I64 | None,
    samples: tuple[dict[int, list[bytes]], dict[int, list[bytes]], dict[int, list[bytes]]],
) -> list[HostState]:
    """The states of hosts ``ids``, with their rows from ``oldest_bin`` on, and
    the name-prefix counts of hosts ``prefix_ids`` (the others get none; all get
    none when ``prefixes`` or ``prefix_ids`` is None)."""
    rows, row_hosts = bins.select(ids, oldest_bin)
    by_host = {}
    if prefixes is not None and prefix_ids is not None and prefix_ids.shape[0]:
        by_host = prefix_counts(prefixes, prefix_ids)
    names, mx_names, nx_names = samples
    # every array read once for all ids, then cut per host: fresh copies, so
    # later batches never change a state already read out
    starts = np.searchsorted(row_hosts, ids).tolist()
    ends = np.searchsorted(row_hosts, ids + 1).tolist()
    row_bins = bins.row_bin[rows]
    series = bins.rows[rows]
    totals = hosts.totals[ids]
    firsts, lasts = hosts.first_us[ids].tolist(), hosts.last_us[ids].tolist()
    his, los = hosts.addr_hi[ids].tolist(), hosts.addr_lo[ids].tolist()
    out = []
    for k, h in enumerate(ids.tolist()):
        lo, hi = starts[k], ends[k]
        out.append(
            HostState(
                addr=addr_text(his[k], los[k]),
                first_seen_us=firsts[k],
                last_seen_us=lasts[k],
                totals=totals[k],
                bins=row_bins[lo:hi],
                series=series[lo:hi],
                sample_names=list(names.get(h, [])),
                sample_mx_names=list(mx_names.get(h, [])),
                prefixes=by_host.get(h, {}),
                sample_nx_names=list(nx_names.get(h, [])),
            )
        )
    return out


def prefix_counts(table: KeyTable, ids: I64) -> dict[int, dict[bytes, int]]:
    """Prefix counts of length 1..5 per host, from the 5-byte keys.

    Summed per (host, prefix) with numpy, one length at a time: Python then
    touches each distinct prefix once, not each key five times.
    """
    sel = np.nonzero(host_mask(ids, table.a))[0]
    if sel.shape[0] == 0:
        return {}
    hosts, packed, counts = table.a[sel], table.b[sel], table.v[sel]
    lengths = packed >> np.uint64(56)
    out: dict[int, dict[bytes, int]] = {}
    for length in range(1, 6):
        has = lengths >= length
        if not has.any():
            break
        keys = packed[has] & np.uint64((1 << (8 * length)) - 1)
        of = hosts[has]
        order = np.lexsort((keys, of))
        keys, of = keys[order], of[order]
        starts = np.flatnonzero(np.r_[True, (keys[1:] != keys[:-1]) | (of[1:] != of[:-1])])
        sums = np.add.reduceat(counts[has][order], starts)
        for h, key, count in zip(
            of[starts].tolist(), keys[starts].tolist(), sums.tolist(), strict=True
        ):
            by_prefix = out.get(h)
            if by_prefix is None:
                out[h] = by_prefix = {}
            by_prefix[key.to_bytes(8, "little")[:length]] = count
    return out
