"""Aggregate kernels: open-addressing hash tables and per-host counters.

In: event columns of one batch (already decoded and classified) and the
state arrays owned by :mod:`wormwatch.aggregate`. Out: updated state arrays.

One table kernel serves every keyed set in the aggregate stage. A table is
four parallel arrays (``t_a`` int64, ``t_b`` and ``t_c`` uint64 keys, ``t_v``
int64 value), and for the distinct sets a central merges and the name-prefix
counts a fifth, ``t_w`` (the latest bin a key was seen in; empty elsewhere);
``t_a == -1`` marks an empty slot; capacity is a power of two. The value
means, by mode:

* ``MODE_ID``: a dense id handed out in insertion order (host index, row).
* ``MODE_TAG``: the last tag seen (a bin index); out = 2 new key, 1 tag
  changed, 0 same tag.
* ``MODE_COUNT``: how many times the key was seen; out = 1 on a new key.

Each kernel walks all selected events of the batch; no per-event helper
calls with array arguments (numba's reference counting would dominate).
"""

from __future__ import annotations

import numpy as np
from numba import njit

MODE_ID = 0
MODE_TAG = 1
MODE_COUNT = 2
REMAP_NONE = 0
REMAP_VALUE = 1
REMAP_KEY = 2


@njit(cache=True, nogil=True, inline="always")
def _slot(a: int, b: np.uint64, c: np.uint64, mask: np.uint64) -> np.uint64:
    """Home slot of key (a, b, c): splitmix64 finalizer over the mixed words.

    Scalars only, so calling it per event costs no reference counting.
    """
    x = np.uint64(a) * np.uint64(0x9E3779B97F4A7C15) ^ b ^ (c * np.uint64(0xC2B2AE3D27D4EB4F))
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (x ^ (x >> np.uint64(31))) & mask


# longer than 60 lines: one probe loop for the count, id and tag modes (three copies
# of the loop would be the alternative)
@njit(cache=True, nogil=True)
def table_upsert(
    t_a: np.ndarray,
    t_b: np.ndarray,
    t_c: np.ndarray,
    t_v: np.ndarray,
    t_w: np.ndarray,
    used: np.ndarray,
    max_used: int,
    keys_a: np.ndarray,
    keys_b: np.ndarray,
    keys_c: np.ndarray,
    sel: np.ndarray,
    tags: np.ndarray,
    n: int,
    mode: int | np.int64,
    out: np.ndarray,
) -> int:
    """Find or insert ``(keys_a[i], keys_b[i], keys_c[i])`` for selected events.

    ``used[0]`` counts occupied slots. A key that is new when ``used[0]``
    reached ``max_used`` is not inserted: out is -1 for it. Returns how many
    keys were refused that way. When the table keeps a second value (``t_w``
    not empty), it is the last tag the key was seen with (the latest bin), in
    every mode.
    """
    mask = np.uint64(t_a.shape[0] - 1)
    has_w = t_w.shape[0] > 0
    refused = 0
    for i in range(n):
        if not sel[i]:
            out[i] = -1
            continue
        a = keys_a[i]
        b = np.uint64(keys_b[i])
        c = np.uint64(keys_c[i])
        pos = _slot(a, b, c, mask)
        while t_a[pos] != -1 and not (t_a[pos] == a and t_b[pos] == b and t_c[pos] == c):
            pos = (pos + np.uint64(1)) & mask
        if t_a[pos] == -1:
            if used[0] >= max_used:
                out[i] = -1
                refused += 1
                continue
            t_a[pos] = a
            t_b[pos] = b
            t_c[pos] = c
            if has_w:
                t_w[pos] = tags[i]
            if mode == MODE_ID:
                t_v[pos] = used[0]
                out[i] = used[0]
            elif mode == MODE_TAG:
                t_v[pos] = tags[i]
                out[i] = 2
            else:
                t_v[pos] = 1
                out[i] = 1
            used[0] += 1
            continue
        if has_w:
            t_w[pos] = tags[i]
        if mode == MODE_ID:
            out[i] = t_v[pos]
        elif mode == MODE_TAG:
            if t_v[pos] != tags[i]:
                t_v[pos] = tags[i]
                out[i] = 1
            else:
                out[i] = 0
        else:
            t_v[pos] += 1
            out[i] = 0
    return refused


@njit(cache=True, nogil=True, inline="always")
def hash_names(names: np.ndarray, name_lens: np.ndarray, n: int, out: np.ndarray) -> None:
    """FNV-1a 64 of each name (0 for an empty name)."""
    for i in range(n):
        length = name_lens[i]
        if length == 0:
            out[i] = 0
            continue
        h = np.uint64(0xCBF29CE484222325)
        for j in range(length):
            h = (h ^ np.uint64(names[i, j])) * np.uint64(0x100000001B3)
        out[i] = h


@njit(cache=True, nogil=True, inline="always")
def pack_prefixes(
    names: np.ndarray, name_lens: np.ndarray, sel: np.ndarray, n: int, out: np.ndarray
) -> None:
    """Per event, the first ``L = min(5, name length)`` bytes of its name
    packed as uint64: the bytes in the low bytes, L in the top byte (0 when
    the event is not selected or the name is empty).

    One key per query is enough for the prefix statistics of length 1..5:
    the count of a shorter prefix is the sum over the keys that start with it.
    """
    for i in range(n):
        length = min(name_lens[i], 5) if sel[i] else 0
        acc = np.uint64(0)
        for j in range(length):
            acc |= np.uint64(names[i, j]) << np.uint64(8 * j)
        out[i] = acc | (np.uint64(length) << np.uint64(56)) if length else np.uint64(0)


@njit(cache=True, nogil=True)
def table_remap(
    old_a: np.ndarray,
    old_b: np.ndarray,
    old_c: np.ndarray,
    old_v: np.ndarray,
    old_w: np.ndarray,
    mapping: np.ndarray,
    remap: int,
    t_a: np.ndarray,
    t_b: np.ndarray,
    t_c: np.ndarray,
    t_v: np.ndarray,
    t_w: np.ndarray,
) -> int:
    """Move the entries of the old table into the (empty) new one, with their
    second value ``w`` when the table keeps one (``old_w`` not empty).

    ``remap`` says what ``mapping[old host] -> new host or -1`` applies to:
    ``REMAP_NONE`` nothing (growing a table), ``REMAP_VALUE`` the value (the
    host table, whose values are host indices), ``REMAP_KEY`` key ``a``
    (every per-host table). Entries mapped to -1 (evicted hosts) are
    dropped. Returns how many entries were kept.
    """
    mask = np.uint64(t_a.shape[0] - 1)
    has_w = old_w.shape[0] > 0
    kept = 0
    for j in range(old_a.shape[0]):
        a = old_a[j]
        if a == -1:
            continue
        v = old_v[j]
        if remap == REMAP_VALUE:
            v = mapping[v]
            if v == -1:
                continue
        elif remap == REMAP_KEY:
            a = mapping[a]
            if a == -1:
                continue
        b = old_b[j]
        c = old_c[j]
        pos = _slot(a, b, c, mask)
        while t_a[pos] != -1:
            pos = (pos + np.uint64(1)) & mask
        t_a[pos] = a
        t_b[pos] = b
        t_c[pos] = c
        t_v[pos] = v
        if has_w:
            t_w[pos] = old_w[j]
        kept += 1
    return kept


MERGE_FIRST = 0
MERGE_ADD = 1


# longer than 60 lines: one probe loop for both merge modes and the latest bin (a
# kernel of its own for the latest bin would probe every key a second time)
@njit(cache=True, nogil=True)
def table_merge(
    t_a: np.ndarray,
    t_b: np.ndarray,
    t_c: np.ndarray,
    t_v: np.ndarray,
    t_w: np.ndarray,
    used: np.ndarray,
    max_used: int,
    keys_a: np.ndarray,
    keys_b: np.ndarray,
    keys_c: np.ndarray,
    values: np.ndarray,
    n: int,
    mode: int,
    latest_bin: int,
    out: np.ndarray,
    out_old: np.ndarray,
) -> int:
    """Merge keyed values of another aggregate's table into this one.

    ``MERGE_FIRST``: the value is a bin the key was seen in; the table keeps
    the earliest in ``t_v`` and, when it keeps a second value (``t_w`` not
    empty), the latest in ``t_w``. out = 2 new key, 3 seen earlier here than
    before (``out_old`` = the bin it was counted in until now), 0 no change.
    ``MERGE_ADD``: the value is a count, added; out = 1 on a new key; the
    latest bin ``t_w`` (when kept) is raised to ``latest_bin``.
    A new key refused because the table is full has out -1 (returned count).
    Keys with ``keys_a < 0`` are skipped (out -1, not counted as refused).
    """
    mask = np.uint64(t_a.shape[0] - 1)
    has_w = t_w.shape[0] > 0
    refused = 0
    for i in range(n):
        a = keys_a[i]
        out_old[i] = -1
        if a < 0:
            out[i] = -1
            continue
        b = np.uint64(keys_b[i])
        c = np.uint64(keys_c[i])
        pos = _slot(a, b, c, mask)
        while t_a[pos] != -1 and not (t_a[pos] == a and t_b[pos] == b and t_c[pos] == c):
            pos = (pos + np.uint64(1)) & mask
        if t_a[pos] == -1:
            if used[0] >= max_used:
                out[i] = -1
                refused += 1
                continue
            t_a[pos] = a
            t_b[pos] = b
            t_c[pos] = c
            t_v[pos] = values[i]
            if has_w:
                t_w[pos] = values[i] if mode == MERGE_FIRST else latest_bin
            used[0] += 1
            out[i] = 2 if mode == MERGE_FIRST else 1
        elif mode == MERGE_ADD:
            t_v[pos] += values[i]
            if has_w:
                t_w[pos] = max(t_w[pos], latest_bin)
            out[i] = 0
        else:
            if has_w:
                t_w[pos] = max(t_w[pos], values[i])
            out[i] = 0
            if values[i] < t_v[pos]:
                out_old[i] = t_v[pos]
                t_v[pos] = values[i]
                out[i] = 3
    return refused
