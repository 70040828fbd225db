"""Numba walkers that index pcap and pcapng records in place, without copying a byte.

file bytes (a read-only ``uint8`` view of the memory-mapped file, or of standard input read
in chunks) -> **these kernels** -> per record kept: timestamp (us), offset of the packet
bytes in the file, captured and original length (and, for pcapng, the link type of the
record's interface) -> ``wormwatch.source.pcapfile`` wraps them into a ``Batch`` for the
decode stage. Records the decoder would surely call ``ignored`` can be left out as they
are walked (``kernels.prefilter``), only counted.

Each kernel fills the output arrays from index 0 up to their length, starting at a file
position, and returns ``(count, next position, status)``. A status other than
``WALK_FULL`` says why it stopped before the arrays were full. The kernels never raise and
never trust a length: every read is checked against the end of the data first.

pcapng Section Header and Interface Description Blocks are rare and carry options that are
easier to read in Python: the walker stops in front of them (``WALK_SECTION``,
``WALK_INTERFACE``) and the wrapper parses them, then calls the walker again past them.
Per-interface facts reach the kernel as arrays (link type, timestamp scale, offset).
"""

# ruff: noqa: PLR1714, SIM109
# (numba compiles chained == to plain compares; `in {...}` would build a set at run time)

from __future__ import annotations

import numpy as np
from numba import njit

from wormwatch.kernels.prefilter import is_ignored

# why a walk stopped (the third value every walker returns)
WALK_FULL = 0  # the output arrays are full; call again from the returned position
WALK_END = 1  # the position is the end of the data: nothing more in this file
WALK_TRUNCATED = 2  # a record header or body runs past the end of the data
WALK_BAD_LENGTH = 3  # an impossible length (caplen too large, bad pcapng block length)
WALK_SECTION = 4  # a pcapng Section Header Block starts at the returned position
WALK_INTERFACE = 5  # a pcapng Interface Description Block starts at the returned position
WALK_BAD_INTERFACE = 6  # a pcapng packet block names an interface not described before it

# classic pcap: per-record header (ts sec, ts usec or nsec, caplen, original length)
PCAP_FILE_HEADER = 24
PCAP_RECORD_HEADER = 16

# pcapng block types (draft-ietf-opsawg-pcapng, section 10.1)
BT_SHB = 0x0A0D0D0A  # Section Header Block (the value reads the same in both byte orders)
BT_IDB = 0x00000001  # Interface Description Block
BT_PB = 0x00000002  # Packet Block (obsolete; 16-bit interface id + 16-bit drop count)
BT_SPB = 0x00000003  # Simple Packet Block (interface 0, no timestamp)
BT_NRB = 0x00000004  # Name Resolution Block
BT_ISB = 0x00000005  # Interface Statistics Block
BT_EPB = 0x00000006  # Enhanced Packet Block
BT_JOURNAL = 0x00000009  # systemd Journal Export Block
BT_DSB = 0x0000000A  # Decryption Secrets Block
BT_CUSTOM = 0x00000BAD  # Custom Block, may be copied
BT_CUSTOM_NOCOPY = 0x40000BAD  # Custom Block, must not be copied
# smallest block: type, total length, trailing total length
BLOCK_MIN = 12
# EPB/PB: type, length, interface, ts high, ts low, caplen, original length = 28 bytes
# before the packet, 4 after it
PACKET_BLOCK_MIN = 32
# SPB: type, length, original length = 12 bytes before the packet, 4 after it
SIMPLE_BLOCK_MIN = 16

_INT32_MAX = 0x7FFF_FFFF

# Reading records is a chain (each length says where the next record starts), so a
# plain walk waits for memory at every ~600-byte record (~120 ns here). The walkers
# also load one byte of every cache line up to TOUCH_AHEAD bytes past the record they
# read: those loads do not wait on each other, and they bring the next records into the
# cache before the chain gets there (2M records of the replay benchmark's mix: 119 ->
# 21 ns per record).
TOUCH_AHEAD = 4096
CACHE_LINE = 64

# the last microsecond ISO 8601 can name, 9999-12-31T23:59:59.999999 (pcapng only:
# a classic pcap's 32-bit seconds end in 2106)
MAX_TS_US = 253_402_300_799_999_999

# the ``walked`` array of both walkers: running totals the caller keeps
W_RECORDS = 0  # records walked, kept or skipped
W_BYTES = 1  # their captured bytes
W_TOUCH = 2  # xor of the bytes touched ahead: stored, so the compiler keeps those loads
N_WALKED = 3


# Compiled once and inlined by LLVM, not copied by numba at each of their ~20 call sites
# (the walkers' first compile 1.4 -> 1.05 s; the machine code is the same).
@njit(cache=True, nogil=True)
def _u32(data, i, is_big):  # type: ignore[no-untyped-def]
    """Unsigned 32-bit field at ``data[i:i+4]`` in the file's byte order, as int64."""
    b0 = np.int64(data[i])
    b1 = np.int64(data[i + 1])
    b2 = np.int64(data[i + 2])
    b3 = np.int64(data[i + 3])
    if is_big:
        return (b0 << 24) | (b1 << 16) | (b2 << 8) | b3
    return (b3 << 24) | (b2 << 16) | (b1 << 8) | b0


@njit(cache=True, nogil=True)
def _u16(data, i, is_big):  # type: ignore[no-untyped-def]
    """Unsigned 16-bit field at ``data[i:i+2]`` in the file's byte order, as int64."""
    if is_big:
        return (np.int64(data[i]) << 8) | np.int64(data[i + 1])
    return (np.int64(data[i + 1]) << 8) | np.int64(data[i])


# longer than 60 lines: the record walk and the relevance test are fused into one pass
@njit(cache=True, nogil=True)
def walk_pcap(  # type: ignore[no-untyped-def]
    data, pos, is_big, is_nano, max_caplen, linktype, max_records,
    ts_us, offsets, caplens, wirelens, walked,
):  # fmt: skip
    """Index classic pcap records from ``pos`` until the outputs are full.

    Args:
        data: the whole file, read-only ``uint8``.
        pos: offset of the next record header (24 right after the file header).
        is_big: the file's fields are big-endian (magic read as 0xd4c3b2a1 / 0x4d3cb2a1
            in little-endian).
        is_nano: the second timestamp field counts nanoseconds, not microseconds.
        max_caplen: a record claiming more captured bytes than this stops the walk.
        linktype: the file's link type, to skip the records the decoder would surely
            call ``ignored`` (:func:`~wormwatch.kernels.prefilter.is_ignored`): nothing is
            written for them; -1
            keeps every record.
        max_records: walk at most this many records, kept or skipped.
        ts_us, offsets, caplens, wirelens: outputs, one row per record kept.
        walked: ``W_*`` totals, added to: records walked and their captured bytes.

    Returns:
        (records written, position after the last record walked, ``WALK_*`` status).
    """
    end = data.shape[0]
    n_max = ts_us.shape[0]
    n = 0
    n_walked = 0
    n_bytes = 0
    touched = pos
    touch = np.uint8(0)
    status = WALK_FULL
    while n < n_max and n_walked < max_records:
        if pos == end:
            status = WALK_END
            break
        stop = min(pos + TOUCH_AHEAD, end)
        while touched < stop:
            touch ^= data[touched]
            touched += CACHE_LINE
        if pos + PCAP_RECORD_HEADER > end:
            status = WALK_TRUNCATED
            break
        caplen = _u32(data, pos + 8, is_big)
        if caplen > max_caplen:
            status = WALK_BAD_LENGTH
            break
        start = pos + PCAP_RECORD_HEADER
        if start + caplen > end:
            status = WALK_TRUNCATED
            break
        n_walked += 1
        n_bytes += caplen
        if linktype >= 0 and is_ignored(data, start, start + caplen, linktype):
            pos = start + caplen
            continue
        sec = _u32(data, pos, is_big)
        frac = _u32(data, pos + 4, is_big)
        # nanosecond files: truncate to the microsecond, as libpcap does
        ts_us[n] = sec * 1_000_000 + (frac // 1000 if is_nano else frac)
        offsets[n] = start
        caplens[n] = caplen
        wirelens[n] = min(_u32(data, pos + 12, is_big), _INT32_MAX)
        pos = start + caplen
        n += 1
    walked[W_RECORDS] += n_walked
    walked[W_BYTES] += n_bytes
    walked[W_TOUCH] ^= touch
    return n, pos, status


@njit(cache=True, nogil=True)
def _ticks_us(ticks, mul, div, offset_us):  # type: ignore[no-untyped-def]
    """A packet block's 64-bit unsigned timestamp (``ticks``, held in an int64), at
    ``mul / div`` microseconds a tick plus ``offset_us``, within ``0 .. MAX_TS_US``:
    a time past the year 9999 (or before 1970) is one no output can write."""
    if ticks < 0 or ticks // div > MAX_TS_US // mul:
        return np.int64(MAX_TS_US)
    # split so that (ticks % div) * mul stays far from int64 overflow
    us = (ticks // div) * mul + ((ticks % div) * mul) // div
    if offset_us > MAX_TS_US - us:
        return np.int64(MAX_TS_US)
    return max(us + offset_us, np.int64(0))


# longer than 60 lines: every pcapng block type is walked in this one loop
@njit(cache=True, nogil=True)
def walk_pcapng(  # type: ignore[no-untyped-def]
    data, pos, is_big, max_caplen, if_linktypes, if_muls, if_divs, if_offsets_us,
    last_ts_us, skip, max_records, ts_us, offsets, caplens, wirelens, linktypes, walked,
):  # fmt: skip
    """Index pcapng packet blocks of one section from ``pos`` until the outputs are full.

    A packet's timestamp in interface units ``t`` becomes
    ``t * if_muls[i] / if_divs[i] + if_offsets_us[i]`` microseconds (integer arithmetic,
    rounded down, held within ``0 .. MAX_TS_US``); a Simple Packet Block has no timestamp
    and reuses the last one.

    Args:
        data: the whole file, read-only ``uint8``.
        pos: offset of the next block.
        is_big: the current section is big-endian.
        max_caplen: a packet claiming more captured bytes than this stops the walk.
        if_linktypes, if_muls, if_divs, if_offsets_us: per interface of the current
            section, in order of their Interface Description Blocks.
        last_ts_us: timestamp of the previous packet (for Simple Packet Blocks).
        skip: leave out the packets the decoder would surely call ``ignored``
            (:func:`~wormwatch.kernels.prefilter.is_ignored`, with their interface's
            link type): nothing is written for them.
        max_records: walk at most this many packets, kept or skipped.
        ts_us, offsets, caplens, wirelens, linktypes: outputs, one row per packet kept.
        walked: ``W_*`` totals, added to: packets walked and their captured bytes.

    Returns:
        (packets written, position of the next block, ``WALK_*`` status, last timestamp,
        number of blocks of unknown type skipped).
    """
    end = data.shape[0]
    n_max = ts_us.shape[0]
    n_if = if_linktypes.shape[0]
    n = 0
    n_unknown = 0
    n_walked = 0
    n_bytes = 0
    touched = pos
    touch = np.uint8(0)
    status = WALK_FULL
    while n < n_max and n_walked < max_records:
        if pos == end:
            status = WALK_END
            break
        stop = min(pos + TOUCH_AHEAD, end)
        while touched < stop:
            touch ^= data[touched]
            touched += CACHE_LINE
        if pos + BLOCK_MIN > end:
            status = WALK_TRUNCATED
            break
        btype = _u32(data, pos, is_big)
        blen = _u32(data, pos + 4, is_big)
        if btype == BT_SHB:
            status = WALK_SECTION
            break
        if blen < BLOCK_MIN or blen % 4 != 0:
            status = WALK_BAD_LENGTH
            break
        if pos + blen > end:
            status = WALK_TRUNCATED
            break
        if _u32(data, pos + blen - 4, is_big) != blen:
            status = WALK_BAD_LENGTH
            break
        if btype == BT_IDB:
            status = WALK_INTERFACE
            break
        if btype == BT_EPB or btype == BT_PB:
            if blen < PACKET_BLOCK_MIN:
                status = WALK_BAD_LENGTH
                break
            # the obsolete Packet Block has a 16-bit interface id and a 16-bit drop count
            iface = _u32(data, pos + 8, is_big) if btype == BT_EPB else _u16(data, pos + 8, is_big)
            if iface >= n_if:
                status = WALK_BAD_INTERFACE
                break
            caplen = _u32(data, pos + 20, is_big)
            if caplen > max_caplen or 28 + caplen > blen - 4:
                status = WALK_BAD_LENGTH
                break
            ticks = (_u32(data, pos + 12, is_big) << 32) | _u32(data, pos + 16, is_big)
            last_ts_us = _ticks_us(ticks, if_muls[iface], if_divs[iface], if_offsets_us[iface])
            start = pos + 28
            wirelen = _u32(data, pos + 24, is_big)
            linktype = if_linktypes[iface]
        elif btype == BT_SPB:
            if blen < SIMPLE_BLOCK_MIN:
                status = WALK_BAD_LENGTH
                break
            if n_if == 0:
                status = WALK_BAD_INTERFACE
                break
            wirelen = _u32(data, pos + 8, is_big)
            caplen = min(wirelen, blen - SIMPLE_BLOCK_MIN)
            if caplen > max_caplen:
                status = WALK_BAD_LENGTH
                break
            start = pos + 12
            linktype = if_linktypes[0]
        else:
            if not (
                btype == BT_NRB
                or btype == BT_ISB
                or btype == BT_JOURNAL
                or btype == BT_DSB
                or btype == BT_CUSTOM
                or btype == BT_CUSTOM_NOCOPY
            ):
                n_unknown += 1
            pos += blen
            continue
        pos += blen
        n_walked += 1
        n_bytes += caplen
        if skip and is_ignored(data, start, start + caplen, linktype):
            continue
        ts_us[n] = last_ts_us
        offsets[n] = start
        caplens[n] = caplen
        wirelens[n] = min(wirelen, _INT32_MAX)
        linktypes[n] = linktype
        n += 1
    walked[W_RECORDS] += n_walked
    walked[W_BYTES] += n_bytes
    walked[W_TOUCH] ^= touch
    return n, pos, status, last_ts_us, n_unknown
