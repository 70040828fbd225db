"""Numba kernel of IP fragment reassembly: fragment rows of a batch -> whole datagrams.

``decode_packets`` (kernels/decode.py) gives every IPv4/IPv6 fragment the status
``fragment`` and a row of F_* columns; **this kernel** stores each fragment's bytes in a
fixed pool of slots that lives across batches, and writes every datagram a fragment
completes into an output buffer as a raw IP packet (a fresh 20-byte IPv4 or 40-byte IPv6
header, then the reassembled payload). ``wormwatch.decode`` decodes those packets with
``decode_packets`` again and credits their events to the completing fragment.

Rules (docs/DECODING.md, "Fragments"): key (version, source, destination, id, and the
IPv4 protocol); "first" overlap policy (bytes already held win); a slot expires when a
fragment arrives more than ``timeout_us`` of packet time after the slot's first fragment;
a full pool evicts the slot whose first fragment is oldest. Slots are found through a
hash index and kept in a heap by first time, so a fragment costs O(log slots).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from wormwatch.kernels.decode import (
    F_CAP_END,
    F_IDENT,
    F_IP,
    F_MORE,
    F_OFFSET,
    F_PACKET,
    F_PROTO,
    F_SENT_END,
    F_START,
    F_VERSION,
)
from wormwatch.kernels.fragpool import (
    C_BAD,
    C_EVICTED,
    C_N_LIVE,
    C_OVERLAPS,
    C_REASSEMBLED,
    LIVE,
    S_IDENT,
    S_N_FRAGS,
    S_N_PIECES,
    S_PROTO,
    S_TOTAL,
    S_VERSION,
    _acquire,
    _find_slot,
    _release,
)
from wormwatch.kernels.layers import _be_word
from wormwatch.model import V4_MAPPED_PREFIX

# Only the three leaf helpers are inlined into their callers; the others are compiled
# as functions of their own without numba's runtime (no reference counting at a call).
# Fragments are rare, and numba's IR inlining copies a helper at every call site: a
# fully inlined kernel took 7.8 s of CPU to compile here, this one 3.7 s, and decodes a
# stream of fragment pairs ~20% slower (1.2M -> 0.95M fragments/s on the loaded box).

# a datagram held in more disjoint ranges than this is refused piece by piece (bad)
MAX_PIECES = 64
# the largest IPv4 payload: total length 65535 minus the smallest header (RFC 791)
MAX_V4_PAYLOAD = 65535 - 20
# the largest IPv6 payload (RFC 8200 4.5: offset + fragment length over 65535 is an error)
MAX_V6_PAYLOAD = 65535
# bytes of the synthetic header written before a datagram's payload (the largest)
MAX_HEADER = 40


@njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
def _pieces_after(slot_pieces, slot, n_pieces, lo, hi):  # type: ignore[no-untyped-def]
    """Disjoint ranges held after adding [lo, hi) (touching ranges merge)."""
    touching = 0
    for k in range(n_pieces):
        if slot_pieces[slot, k, 0] <= hi and slot_pieces[slot, k, 1] >= lo:
            touching += 1
    return n_pieces + 1 - touching


@njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
def _store(data, src, slot_pieces, slot_buf, slot, n_pieces, lo, hi):  # type: ignore[no-untyped-def]
    """Copy the bytes of [lo, hi) that no held range covers ("first" policy), merge the
    range into the sorted disjoint list; -> (new number of ranges, overlapped)."""
    overlapped = False
    pos = lo
    for k in range(n_pieces + 1):
        gap_end = hi if k == n_pieces else min(hi, slot_pieces[slot, k, 0])
        if pos < gap_end:
            for b in range(pos, gap_end):
                slot_buf[slot, b] = data[src + b - lo]
        if k == n_pieces:
            break
        if slot_pieces[slot, k, 0] < hi and slot_pieces[slot, k, 1] > lo:
            overlapped = True
        pos = max(pos, slot_pieces[slot, k, 1])
    # merge: drop the ranges that touch [lo, hi) into one fused range, keep the others
    new_lo = lo
    new_hi = hi
    # not a literal 0: numba would compile _merge_fix once for Literal[int](0) too
    n = np.int64(0)
    for k in range(n_pieces):
        a = slot_pieces[slot, k, 0]
        b = slot_pieces[slot, k, 1]
        if a <= hi and b >= lo:
            new_lo = min(new_lo, a)
            new_hi = max(new_hi, b)
            continue
        slot_pieces[slot, n, 0] = a
        slot_pieces[slot, n, 1] = b
        n += 1
    return _merge_fix(slot_pieces, slot, n, new_lo, new_hi), overlapped


@njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
def _merge_fix(slot_pieces, slot, n, new_lo, new_hi):  # type: ignore[no-untyped-def]
    """Insert [new_lo, new_hi) into the first ``n`` sorted disjoint ranges; -> n + 1."""
    k = n
    while k > 0 and slot_pieces[slot, k - 1, 0] > new_lo:
        slot_pieces[slot, k, 0] = slot_pieces[slot, k - 1, 0]
        slot_pieces[slot, k, 1] = slot_pieces[slot, k - 1, 1]
        k -= 1
    slot_pieces[slot, k, 0] = new_lo
    slot_pieces[slot, k, 1] = new_hi
    return n + 1


@njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
def _emit(slot_addr, slot_meta, slot_buf, slot, out_data, out_used):  # type: ignore[no-untyped-def]
    """Write the completed datagram of ``slot`` as a raw IP packet; -> its length."""
    total = slot_meta[slot, S_TOTAL]
    proto = slot_meta[slot, S_PROTO]
    o = out_used
    if slot_meta[slot, S_VERSION] == 4:
        size = 20 + total
        for k in range(20):
            out_data[o + k] = 0
        out_data[o] = 0x45
        out_data[o + 2] = (size >> 8) & 0xFF
        out_data[o + 3] = size & 0xFF
        out_data[o + 4] = (slot_meta[slot, S_IDENT] >> 8) & 0xFF
        out_data[o + 5] = slot_meta[slot, S_IDENT] & 0xFF
        out_data[o + 8] = 64
        out_data[o + 9] = proto
        for k in range(4):
            shift = np.uint64(24 - 8 * k)
            out_data[o + 12 + k] = (slot_addr[slot, 1] >> shift) & np.uint64(0xFF)
            out_data[o + 16 + k] = (slot_addr[slot, 3] >> shift) & np.uint64(0xFF)
        header = 20
    else:
        size = 40 + total
        for k in range(8):
            out_data[o + k] = 0
        out_data[o] = 0x60
        out_data[o + 4] = (total >> 8) & 0xFF
        out_data[o + 5] = total & 0xFF
        out_data[o + 6] = proto
        out_data[o + 7] = 64
        for w in range(4):
            for k in range(8):
                shift = np.uint64(56 - 8 * k)
                out_data[o + 8 + 8 * w + k] = (slot_addr[slot, w] >> shift) & np.uint64(0xFF)
        header = 40
    for b in range(total):
        out_data[o + header + b] = slot_buf[slot, b]
    return size


# longer than 60 lines: keying, overlap policy and slot bookkeeping of one fragment stay
# in one compiled function (its helpers are compiled apart, not inlined, to cut compile time)
@njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
def _fragment(  # type: ignore[no-untyped-def]
    data, ts_us, frags, i, slot_addr, slot_meta, lists, index, slot_pieces, slot_buf,
    counters, timeout_us, addr,
):  # fmt: skip
    """Store fragment row ``i``; -> the slot it completed, or -1."""
    now = ts_us[frags[i, F_PACKET]]
    version = frags[i, F_VERSION]
    ip = frags[i, F_IP]
    if version == 4:
        addr[0] = 0
        addr[1] = np.uint64(V4_MAPPED_PREFIX) | _be_word(data, ip + 12, 4)
        addr[2] = 0
        addr[3] = np.uint64(V4_MAPPED_PREFIX) | _be_word(data, ip + 16, 4)
        key_proto = frags[i, F_PROTO]
        limit = MAX_V4_PAYLOAD
    else:
        for w in range(4):
            addr[w] = _be_word(data, ip + 8 + 8 * w, 8)
        key_proto = -1
        limit = MAX_V6_PAYLOAD
    ident = frags[i, F_IDENT]
    found = _find_slot(
        slot_addr, slot_meta, lists, index, counters, now, timeout_us, version, addr, ident,
        key_proto,
    )  # fmt: skip
    start = frags[i, F_START]
    sent_end = frags[i, F_SENT_END]
    lo = frags[i, F_OFFSET]
    hi = lo + sent_end - start
    is_last = frags[i, F_MORE] == 0
    # cut by the snaplen, an IPv6 jumbogram, or past the largest datagram (or slot)
    if sent_end < 0 or frags[i, F_CAP_END] < sent_end or hi > min(limit, slot_buf.shape[1]):
        counters[C_BAD] += 1
        return -1
    slot = found
    if slot >= 0:
        total = slot_meta[slot, S_TOTAL]
        n_pieces = slot_meta[slot, S_N_PIECES]
        held_hi = slot_pieces[slot, n_pieces - 1, 1] if n_pieces > 0 else 0
        # a second, different end; data past the known end; an end before held data
        if (
            (total >= 0 and (hi > total or (is_last and hi != total)))
            or (is_last and hi < held_hi)
            or (hi > lo and _pieces_after(slot_pieces, slot, n_pieces, lo, hi) > MAX_PIECES)
        ):
            counters[C_BAD] += 1
            return -1
    else:
        if counters[C_N_LIVE] == lists.shape[1]:
            # full: evict the datagram that began first (the heap's top)
            oldest = lists[LIVE, 0]
            counters[C_EVICTED] += slot_meta[oldest, S_N_FRAGS]
            _release(slot_meta, lists, index, counters, oldest)
        slot = _acquire(
            slot_meta, slot_addr, lists, index, counters, now, version, addr, ident, key_proto
        )
        slot_meta[slot, S_PROTO] = -1
        slot_meta[slot, S_TOTAL] = -1
        slot_meta[slot, S_N_FRAGS] = 0
        slot_meta[slot, S_N_PIECES] = 0
    if hi > lo:
        n_pieces, overlapped = _store(
            data, start, slot_pieces, slot_buf, slot, slot_meta[slot, S_N_PIECES], lo, hi
        )
        slot_meta[slot, S_N_PIECES] = n_pieces
        if overlapped:
            counters[C_OVERLAPS] += 1
    slot_meta[slot, S_N_FRAGS] += 1
    if is_last:
        slot_meta[slot, S_TOTAL] = hi
    if lo == 0 and slot_meta[slot, S_PROTO] < 0:
        # RFC 8200 4.5: the next header of the offset-0 fragment is the datagram's
        slot_meta[slot, S_PROTO] = frags[i, F_PROTO]
    total = slot_meta[slot, S_TOTAL]
    if (
        total > 0
        and slot_meta[slot, S_N_PIECES] == 1
        and slot_pieces[slot, 0, 0] == 0
        and slot_pieces[slot, 0, 1] == total
    ):
        return slot
    return -1


@njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
def reassemble(  # type: ignore[no-untyped-def]
    data, ts_us, frags, first, n_frag, slot_addr, slot_meta, lists, index, slot_pieces,
    slot_buf, counters, timeout_us, addr, out_data, out_rows, n_out, out_used,
):  # fmt: skip
    """Store fragment rows ``first..n_frag`` of a batch, in packet order.

    Every datagram completed is written at ``out_data[out_used:]`` and described by
    ``out_rows[n_out] = (fragment row, offset, length)``. ``lists`` holds the live heap
    and the free list (LIVE, FREE rows), ``index`` the key -> slot hash table. Stops
    before a fragment when
    ``out_data`` has no room for the largest datagram a slot holds. ``addr`` is a
    4-word scratch array.

    Returns:
        (first fragment row not stored, output rows filled, output bytes used).
    """
    room = MAX_HEADER + slot_buf.shape[1]
    i = first
    while i < n_frag and out_data.shape[0] - out_used >= room:
        slot = _fragment(
            data, ts_us, frags, i, slot_addr, slot_meta, lists, index, slot_pieces, slot_buf,
            counters, timeout_us, addr,
        )  # fmt: skip
        if slot >= 0:
            size = _emit(slot_addr, slot_meta, slot_buf, slot, out_data, out_used)
            out_rows[n_out, 0] = i
            out_rows[n_out, 1] = out_used
            out_rows[n_out, 2] = size
            n_out += 1
            out_used += size
            _release(slot_meta, lists, index, counters, slot)
            counters[C_REASSEMBLED] += 1
        i += 1
    return i, n_out, out_used
