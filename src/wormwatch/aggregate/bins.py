"""Per-(host, bin) counter rows of the aggregate stage, bounded in memory.

In: host ids and bin indices of one batch's events. Out: a row per event
(-1 = no room), whose counters the aggregate adds to; and, for read-out, the
rows of given hosts within the window. When the table fills, rows older than
the window go first, then the rows of the window's oldest bins of hosts the
detectors did not flag (new evidence matters more than old: refusing it hid
every host that started scanning after the table filled until the old rows
left the window, up to a day later); the rows dropped and what still finds no
room count in ``rows_dropped``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from wormwatch.kernels.aggregate import MODE_ID
from wormwatch.model import BOOL, I64, N_COUNTERS
from wormwatch.tables import MIN_CAPACITY, KeyTable


def host_mask(ids: I64, keys: I64) -> BOOL:
    """Which ``keys`` (host ids, -1 = none) are among ``ids``: one gather per
    key (``np.isin`` would sort them)."""
    wanted = np.zeros(max(int(keys.max(initial=-1)), int(ids.max(initial=-1))) + 2, np.bool_)
    wanted[ids] = True
    # -1 reads the last element, which no id reaches
    return wanted[keys]


def _n_keys(host: I64, bins: I64, row: I64) -> int:
    """How many distinct (host, bin) keys the events refused a row (``row`` -1) have."""
    miss = (row < 0) & (host >= 0)
    return int(np.unique(np.stack([host[miss], bins[miss]]), axis=1).shape[1])


class BinRows:
    """(host, bin) -> row of counters, grown by doubling up to ``max_rows``."""

    def __init__(self, max_rows: int, protect: Callable[[], BOOL] | None = None) -> None:
        self._table = KeyTable(max_rows)
        self.row_host = np.zeros(MIN_CAPACITY, np.int64)
        self.row_bin = np.zeros(MIN_CAPACITY, np.int64)
        self.rows = np.zeros((MIN_CAPACITY, N_COUNTERS), np.int32)
        self.rows_dropped = 0
        # which host ids keep their rows inside the window when the table is full
        self._protect = protect

    @property
    def n_rows(self) -> int:
        return int(self._table.used[0])

    def rows_of(self, host: I64, bins: I64, oldest_bin: int) -> I64:
        """The row of each event's (host, bin), adding rows as needed.

        When full, rows of bins before ``oldest_bin`` are pruned to make room,
        and if that frees none, the rows of the oldest bins still kept.
        """
        row = np.empty(host.shape[0], np.int64)
        before = self.n_rows
        refused = self._upsert(host, bins, row)
        if refused and (self.prune(oldest_bin) or self._drop_oldest(_n_keys(host, bins, row))):
            before = self.n_rows
            refused = self._upsert(host, bins, row)
        self.rows_dropped += refused
        after = self.n_rows
        if after > self.rows.shape[0]:
            self._grow(after)
        if after > before:
            new = row >= before
            self.row_host[row[new]] = host[new]
            self.row_bin[row[new]] = bins[new]
        return row

    def _upsert(self, host: I64, bins: I64, row: I64) -> int:
        zeros_u = np.zeros(host.shape[0], np.uint64)
        return self._table.upsert(
            host, bins.astype(np.uint64), zeros_u, host >= 0, bins, MODE_ID, row
        )

    def select(self, ids: I64, oldest_bin: int) -> tuple[I64, I64]:
        """(rows, their hosts) of the hosts ``ids`` from ``oldest_bin`` on,
        sorted by host then bin."""
        used = self.n_rows
        row_host = self.row_host[:used]
        sel = np.nonzero(host_mask(ids, row_host) & (self.row_bin[:used] >= oldest_bin))[0]
        order = np.lexsort((self.row_bin[sel], row_host[sel]))
        sel = sel[order]
        return sel, row_host[sel]

    def renumber(self, mapping: I64) -> None:
        """Follow a host renumbering; rows of evicted hosts go."""
        hosts = mapping[self.row_host[: self.n_rows]]
        self._compact(hosts >= 0, hosts)

    def _grow(self, need: int) -> None:
        capacity = self.rows.shape[0]
        while capacity < need:
            capacity *= 2
        capacity = min(capacity, self._table.max_used)
        row_host = np.zeros(capacity, np.int64)
        row_host[: self.row_host.shape[0]] = self.row_host
        row_bin = np.zeros(capacity, np.int64)
        row_bin[: self.row_bin.shape[0]] = self.row_bin
        rows = np.zeros((capacity, N_COUNTERS), np.int32)
        rows[: self.rows.shape[0]] = self.rows
        self.row_host, self.row_bin, self.rows = row_host, row_bin, rows

    def _drop_oldest(self, need: int) -> bool:
        """Drop the rows of the oldest bins of unprotected hosts (of all hosts
        when theirs are too few), at least ``need`` rows and an eighth of the
        table (so that a full table is not rebuilt every batch), never those of
        the newest bin; True if any went."""
        used = self.n_rows
        bins, hosts = self.row_bin[:used], self.row_host[:used]
        movable = np.ones(used, np.bool_)
        if self._protect is not None:
            movable = ~self._protect()[hosts]
            if np.count_nonzero(movable) < need:
                movable[:] = True
        candidates = bins[movable]
        want = min(candidates.shape[0], max(need, self._table.max_used // 8))
        cut = min(int(np.partition(candidates, want - 1)[want - 1]) + 1, int(bins.max()))
        drop = movable & (bins < cut)
        if not drop.any():
            return False
        self.rows_dropped += int(np.count_nonzero(drop))
        self._compact(~drop, hosts)
        return True

    def prune(self, oldest_bin: int) -> bool:
        """Drop rows of bins before ``oldest_bin``; True if any went."""
        used = self.n_rows
        keep = self.row_bin[:used] >= oldest_bin
        if keep.all():
            return False
        self._compact(keep, self.row_host[:used])
        return True

    def _compact(self, keep: BOOL, row_hosts: I64) -> None:
        """Keep the rows marked ``keep`` (with hosts ``row_hosts``), in order,
        and rebuild the (host, bin) table over them."""
        used = self.n_rows
        hosts = row_hosts[keep]
        bins = self.row_bin[:used][keep]
        rows = self.rows[:used][keep]
        n = int(hosts.shape[0])
        self._table.clear()
        out = np.empty(n, np.int64)
        self._table.upsert(
            hosts, bins.astype(np.uint64), np.zeros(n, np.uint64), np.ones(n, np.bool_),
            bins, MODE_ID, out,
        )  # fmt: skip
        self.row_host[:n] = hosts
        self.row_bin[:n] = bins
        self.rows[:n] = rows
        self.rows[n:used] = 0
