"""Keyed tables of the aggregate stage, over the kernels in
:mod:`wormwatch.kernels.aggregate`.

In: key columns of one batch. Out: per-event ids, tags or counts (see the
kernel module for the three modes). A table grows by doubling up to its limit
and can be rebuilt without the entries of evicted hosts.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from wormwatch.kernels.aggregate import (
    REMAP_KEY,
    REMAP_NONE,
    REMAP_VALUE,
    table_remap,
    table_upsert,
)
from wormwatch.model import BOOL

MIN_CAPACITY = 1024
_NO_MAPPING = np.zeros(0, np.int64)


def _pow2_at_least(n: int) -> int:
    return 1 << max(int(n) - 1, 1).bit_length()


class KeyTable:
    """A growable open-addressing table over :func:`table_upsert`.

    Load stays at or below 7/10 while the table grows (a doubling at one half
    left the 2M replay's tables a quarter to a third full: 17 MB of slots for
    nothing), and at or below one half at its size limit; the table never
    holds more than ``max_used`` keys (new keys past that are refused).
    """

    def __init__(self, max_used: int) -> None:
        self.max_used = max_used
        self.limit = _pow2_at_least(2 * max_used)
        self.used = np.zeros(1, np.int64)
        # a second value per key (empty: none), kept by the merge kernel
        self.w = np.zeros(0, np.int64)
        # the bin before which keys were last dropped by make_room
        self._room_from = -(2**62)
        self._alloc(min(MIN_CAPACITY, self.limit))

    def _alloc(self, capacity: int) -> None:
        self.a = np.full(capacity, -1, np.int64)
        self.b = np.zeros(capacity, np.uint64)
        self.c = np.zeros(capacity, np.uint64)
        self.v = np.zeros(capacity, np.int64)
        if self.w.shape[0]:
            self.w = np.zeros(capacity, np.int64)

    def keep_latest(self) -> None:
        """Keep a second value per key from now on (``w``; :func:`table_merge`
        keeps the latest bin there), starting as the first."""
        self.w = self.v.copy()

    @property
    def capacity(self) -> int:
        return int(self.a.shape[0])

    def reserve(self, n_new: int) -> None:
        """Grow so that ``n_new`` more keys keep the load at or below 7/10."""
        need = min(int(self.used[0]) + n_new, self.max_used)
        capacity = self.capacity
        while 10 * need > 7 * capacity and capacity < self.limit:
            capacity *= 2
        if capacity != self.capacity:
            old = (self.a, self.b, self.c, self.v, self.w)
            self._alloc(capacity)
            table_remap(*old, _NO_MAPPING, REMAP_NONE, *self._arrays())

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
            self.a, self.b, self.c, self.v, self.w, self.used, self.max_used,
            keys_a, keys_b, keys_c, sel, tags, n, mode, out,
        )  # fmt: skip
        return refused

    def remap(self, mapping: npt.NDArray[np.int64], *, host_is_value: bool) -> None:
        """Renumber hosts after an eviction; drop the entries of evicted hosts."""
        old = (self.a, self.b, self.c, self.v, self.w)
        self._alloc(self.capacity)
        mode = REMAP_VALUE if host_is_value else REMAP_KEY
        self.used[0] = table_remap(*old, mapping, mode, *self._arrays())

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return self.a, self.b, self.c, self.v, self.w

    def keep_tags_from(self, oldest: int) -> int:
        """Drop the keys whose tag (``MODE_TAG``: the last bin a key was seen
        in; the second value ``w`` when the table keeps one) is before
        ``oldest``; how many went."""
        live = self.a != -1
        latest = self.w if self.w.shape[0] else self.v
        keep = live & (latest >= oldest)
        n_dropped = int(np.count_nonzero(live)) - int(np.count_nonzero(keep))
        if n_dropped:
            old = (np.where(keep, self.a, -1), self.b, self.c, self.v, self.w)
            self._alloc(self.capacity)
            self.used[0] = table_remap(*old, _NO_MAPPING, REMAP_NONE, *self._arrays())
        return n_dropped

    def make_room(self, n_new: int, oldest: int) -> int:
        """When ``n_new`` more keys could fill the table, drop the keys last seen
        before bin ``oldest`` (:meth:`keep_tags_from`), at most once per
        ``oldest``; how many went."""
        if int(self.used[0]) + n_new <= self.max_used or oldest <= self._room_from:
            return 0
        self._room_from = oldest
        return self.keep_tags_from(oldest)

    def clear(self) -> None:
        self.used[0] = 0
        self._alloc(min(MIN_CAPACITY, self.limit))
