"""The fragment reassembly's pool of slots: one datagram in progress per slot, found by
its key through a hash index and ordered in a heap by the time of its first fragment.

Called by the reassembly kernel (kernels/reassemble.py), which stores each fragment's bytes
in the slot these kernels find or make for it: the oldest datagram is the heap's top, so
timing out and evicting cost O(log slots) per fragment, flood or not.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from wormwatch.kernels.probing import unindex

# columns of slot_meta (one row per slot)
S_LIVE_POS = 0  # where the slot is in the live heap, while it holds a datagram
S_VERSION = 1
S_IDENT = 2
S_KEY_PROTO = 3  # IPv4 protocol (part of the key); -1 for IPv6
S_PROTO = 4  # protocol of the datagram: known once the offset-0 fragment arrived, else -1
S_FIRST_TS = 5  # packet time of the slot's first fragment (us)
S_SEQ = 6  # creation order, breaks ties between equal first times
S_TOTAL = 7  # payload length, known once the last fragment arrived, else -1
S_N_FRAGS = 8  # fragments stored
S_N_PIECES = 9  # disjoint byte ranges held (rows of slot_pieces)
S_HOME = 10  # the key's home position in ``index``
N_SLOT_META = 11

# counters (one int64 array the wrapper keeps)
C_REASSEMBLED = 0  # datagrams completed
C_TIMED_OUT = 1  # fragments dropped with a slot that timed out
C_EVICTED = 2  # fragments dropped with a slot evicted from a full pool
C_OVERLAPS = 3  # fragments that overlapped bytes already held
C_BAD = 4  # fragments refused: cut by the snaplen, past 65535 bytes, inconsistent, too split
C_NEXT_SEQ = 5  # state: the next slot's creation number
C_N_LIVE = 6  # state: slots holding a datagram (the heap lists[LIVE, :n])
N_COUNTERS = 7

# rows of ``lists``: the slots holding a datagram (first counters[C_N_LIVE]) as a binary
# min-heap by (first time, creation number), whose top is the next to time out and the
# one to evict; and the free slots (first n_slots - counters[C_N_LIVE]). ``index`` is an
# open-addressing hash table (linear probing, -1 = empty, at least twice the slots) from
# a key to its slot. Every fragment then costs O(log slots), flood or not.
LIVE = 0
FREE = 1
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)


@njit(cache=True, nogil=True, inline="always")
def _home(a0, a1, a2, a3, ident, version, key_proto, mask):  # type: ignore[no-untyped-def]
    """Home position of a key in the hash index."""
    h = np.uint64(ident) * _K1 + np.uint64(version * 256 + (key_proto & 0xFF))
    for word in (a0, a1, a2, a3):
        h = (h ^ np.uint64(word)) * _K2
        h ^= h >> np.uint64(29)
    return np.int64(h & np.uint64(mask))


@njit(cache=True, nogil=True, inline="always")
def _earlier(slot_meta, a, b):  # type: ignore[no-untyped-def]
    """Slot ``a``'s datagram began before ``b``'s (first time, then creation order)."""
    ta = slot_meta[a, S_FIRST_TS]
    tb = slot_meta[b, S_FIRST_TS]
    return ta < tb or (ta == tb and slot_meta[a, S_SEQ] < slot_meta[b, S_SEQ])


@njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
def _sift(slot_meta, lists, n_live, pos):  # type: ignore[no-untyped-def]
    """Restore the heap order around position ``pos`` (up, else down)."""
    s = lists[LIVE, pos]
    while pos > 0:
        parent = (pos - 1) // 2
        p = lists[LIVE, parent]
        if not _earlier(slot_meta, s, p):
            break
        lists[LIVE, pos] = p
        slot_meta[p, S_LIVE_POS] = pos
        pos = parent
    while True:
        child = 2 * pos + 1
        if child >= n_live:
            break
        if child + 1 < n_live and _earlier(slot_meta, lists[LIVE, child + 1], lists[LIVE, child]):
            child += 1
        c = lists[LIVE, child]
        if not _earlier(slot_meta, c, s):
            break
        lists[LIVE, pos] = c
        slot_meta[c, S_LIVE_POS] = pos
        pos = child
    lists[LIVE, pos] = s
    slot_meta[s, S_LIVE_POS] = pos


@njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
def _release(slot_meta, lists, index, counters, slot):  # type: ignore[no-untyped-def]
    """Take ``slot`` out of the heap and the index; put it on the free list."""
    n_live = counters[C_N_LIVE] - 1
    counters[C_N_LIVE] = n_live
    pos = slot_meta[slot, S_LIVE_POS]
    if pos < n_live:
        lists[LIVE, pos] = lists[LIVE, n_live]
        _sift(slot_meta, lists, n_live, pos)
    lists[FREE, lists.shape[1] - n_live - 1] = slot
    unindex(index, slot, slot_meta, S_HOME)


@njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
def _acquire(slot_meta, slot_addr, lists, index, counters, now, version, addr, ident, key_proto):  # type: ignore[no-untyped-def]
    """A free slot for a new datagram, keyed, in the heap and the index."""
    n_live = counters[C_N_LIVE]
    slot = lists[FREE, lists.shape[1] - n_live - 1]
    for w in range(4):
        slot_addr[slot, w] = addr[w]
    slot_meta[slot, S_VERSION] = version
    slot_meta[slot, S_IDENT] = ident
    slot_meta[slot, S_KEY_PROTO] = key_proto
    slot_meta[slot, S_FIRST_TS] = now
    slot_meta[slot, S_SEQ] = counters[C_NEXT_SEQ]
    counters[C_NEXT_SEQ] += 1
    lists[LIVE, n_live] = slot
    counters[C_N_LIVE] = n_live + 1
    _sift(slot_meta, lists, n_live + 1, n_live)
    mask = index.shape[0] - 1
    i = _home(addr[0], addr[1], addr[2], addr[3], ident, version, key_proto, mask)
    slot_meta[slot, S_HOME] = i
    while index[i] >= 0:
        i = (i + 1) & mask
    index[i] = slot
    return slot


@njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
def _find_slot(  # type: ignore[no-untyped-def]
    slot_addr, slot_meta, lists, index, counters, now, timeout_us, version, addr, ident,
    key_proto,
):  # fmt: skip
    """Expire old datagrams; -> the live slot holding the key, or -1."""
    # the heap's top began first: when it has not timed out, nothing has
    while counters[C_N_LIVE] > 0:
        top = lists[LIVE, 0]
        if now - slot_meta[top, S_FIRST_TS] <= timeout_us:
            break
        counters[C_TIMED_OUT] += slot_meta[top, S_N_FRAGS]
        _release(slot_meta, lists, index, counters, top)
    mask = index.shape[0] - 1
    i = _home(addr[0], addr[1], addr[2], addr[3], ident, version, key_proto, mask)
    while index[i] >= 0:
        s = index[i]
        if (
            slot_meta[s, S_IDENT] == ident
            and slot_meta[s, S_VERSION] == version
            and slot_meta[s, S_KEY_PROTO] == key_proto
            and slot_addr[s, 0] == addr[0]
            and slot_addr[s, 1] == addr[1]
            and slot_addr[s, 2] == addr[2]
            and slot_addr[s, 3] == addr[3]
        ):
            return s
        i = (i + 1) & mask
    return -1
