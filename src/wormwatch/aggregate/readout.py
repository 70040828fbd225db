"""Reading hosts out of the aggregate stage's tables, as whole states.

In: host ids and the aggregate's tables. Out: one
:class:`~wormwatch.model.HostState` per id (copies: later batches never change
a state already read out), for the detector and the presenters.
"""

from __future__ import annotations

import numpy as np

from wormwatch.aggregate.bins import BinRows
from wormwatch.aggregate.hosts import HostTable
from wormwatch.model import I64, HostState, addr_text
from wormwatch.tables import KeyTable


def read_states(
    ids: I64,
    hosts: HostTable,
    bins: BinRows,
    oldest_bin: int,
    prefixes: KeyTable | None,
    samples: tuple[dict[int, list[bytes]], dict[int, list[bytes]], dict[int, list[bytes]]],
) -> list[HostState]:
    """The states of hosts ``ids``, with their rows from ``oldest_bin`` on and
    their name-prefix counts (none when ``prefixes`` is None)."""
    rows, row_hosts = bins.select(ids, oldest_bin)
    by_host = prefix_counts(prefixes, ids) if prefixes is not None else {}
    names, mx_names, nx_names = samples
    out = []
    for h in ids.tolist():
        lo, hi = np.searchsorted(row_hosts, [h, h + 1])
        mine = rows[lo:hi]
        out.append(
            HostState(
                addr=addr_text(int(hosts.addr_hi[h]), int(hosts.addr_lo[h])),
                first_seen_us=int(hosts.first_us[h]),
                last_seen_us=int(hosts.last_us[h]),
                totals=hosts.totals[h].copy(),
                bins=bins.row_bin[mine].copy(),
                series=bins.rows[mine].astype(np.int64),
                sample_names=list(names.get(h, [])),
                sample_mx_names=list(mx_names.get(h, [])),
                prefixes=by_host.get(h, {}),
                sample_nx_names=list(nx_names.get(h, [])),
            )
        )
    return out


def prefix_counts(table: KeyTable, ids: I64) -> dict[int, dict[bytes, int]]:
    """Prefix counts of length 1..5 per host, from the 5-byte keys."""
    sel = np.nonzero(np.isin(table.a, ids))[0]
    out: dict[int, dict[bytes, int]] = {}
    for h, packed, count in zip(
        table.a[sel].tolist(), table.b[sel].tolist(), table.v[sel].tolist(), strict=True
    ):
        length = packed >> 56
        text = (packed & ((1 << (8 * length)) - 1)).to_bytes(8, "little")[:length]
        counts = out.setdefault(h, {})
        for k in range(1, length + 1):
            counts[text[:k]] = counts.get(text[:k], 0) + count
    return out
