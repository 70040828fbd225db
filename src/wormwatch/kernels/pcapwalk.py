"""Numba walkers that index pcap and pcapng records in place, without copying a byte.

file bytes (a read-only ``uint8`` view of the memory-mapped file) -> **these kernels** ->
per record: timestamp (us), offset of the packet bytes in the file, captured and original
length (and, for pcapng, the link type of the record's interface) ->
``wormwatch.source.pcapfile`` wraps them into a ``Batch`` for the decode stage.

Each kernel fills the output arrays from index 0 up to their length, starting at a file
position, and returns ``(count, next position, status)``. A status other than
``WALK_FULL`` says why it stopped before the arrays were full. The kernels never raise and
never trust a length: every read is checked against the end of the data first.

pcapng Section Header and Interface Description Blocks are rare and carry options that are
easier to read in Python: the walker stops in front of them (``WALK_SECTION``,
``WALK_INTERFACE``) and the wrapper parses them, then calls the walker again past them.
Per-interface facts reach the kernel as arrays (link type, timestamp scale, offset).
"""

from __future__ import annotations

import numpy as np
from numba import njit

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


@njit(cache=True, nogil=True, inline="always")
def _u32(data, i, is_big):  # type: ignore[no-untyped-def]
    """Unsigned 32-bit field at ``data[i:i+4]`` in the file's byte order, as int64."""
    b0 = np.int64(data[i])
    b1 = np.int64(data[i + 1])
    b2 = np.int64(data[i + 2])
    b3 = np.int64(data[i + 3])
    if is_big:
        return (b0 << 24) | (b1 << 16) | (b2 << 8) | b3
    return (b3 << 24) | (b2 << 16) | (b1 << 8) | b0


@njit(cache=True, nogil=True, inline="always")
def _u16(data, i, is_big):  # type: ignore[no-untyped-def]
    """Unsigned 16-bit field at ``data[i:i+2]`` in the file's byte order, as int64."""
    if is_big:
        return (np.int64(data[i]) << 8) | np.int64(data[i + 1])
    return (np.int64(data[i + 1]) << 8) | np.int64(data[i])


@njit(cache=True, nogil=True)
def walk_pcap(  # type: ignore[no-untyped-def]
    data, pos, is_big, is_nano, max_caplen, ts_us, offsets, caplens, wirelens
):
    """Index classic pcap records from ``pos`` until the output arrays are full.

    Args:
        data: the whole file, read-only ``uint8``.
        pos: offset of the next record header (24 right after the file header).
        is_big: the file's fields are big-endian (magic read as 0xd4c3b2a1 / 0x4d3cb2a1
            in little-endian).
        is_nano: the second timestamp field counts nanoseconds, not microseconds.
        max_caplen: a record claiming more captured bytes than this stops the walk.
        ts_us, offsets, caplens, wirelens: outputs, one row per record.

    Returns:
        (records written, position after the last one, ``WALK_*`` status).
    """
    end = data.shape[0]
    n_max = ts_us.shape[0]
    n = 0
    while n < n_max:
        if pos == end:
            return n, pos, WALK_END
        if pos + PCAP_RECORD_HEADER > end:
            return n, pos, WALK_TRUNCATED
        sec = _u32(data, pos, is_big)
        frac = _u32(data, pos + 4, is_big)
        caplen = _u32(data, pos + 8, is_big)
        wirelen = _u32(data, pos + 12, is_big)
        if caplen > max_caplen:
            return n, pos, WALK_BAD_LENGTH
        if pos + PCAP_RECORD_HEADER + caplen > end:
            return n, pos, WALK_TRUNCATED
        # nanosecond files: truncate to the microsecond, as libpcap does
        ts_us[n] = sec * 1_000_000 + (frac // 1000 if is_nano else frac)
        offsets[n] = pos + PCAP_RECORD_HEADER
        caplens[n] = caplen
        wirelens[n] = min(wirelen, _INT32_MAX)
        pos += PCAP_RECORD_HEADER + caplen
        n += 1
    return n, pos, WALK_FULL


@njit(cache=True, nogil=True)
def walk_pcapng(  # type: ignore[no-untyped-def]
    data,
    pos,
    is_big,
    max_caplen,
    if_linktypes,
    if_muls,
    if_divs,
    if_offsets_us,
    last_ts_us,
    ts_us,
    offsets,
    caplens,
    wirelens,
    linktypes,
):
    """Index pcapng packet blocks of one section from ``pos`` until the outputs are full.

    A packet's timestamp in interface units ``t`` becomes
    ``t * if_muls[i] / if_divs[i] + if_offsets_us[i]`` microseconds (integer arithmetic,
    rounded down); a Simple Packet Block has no timestamp and reuses the last one.

    Args:
        data: the whole file, read-only ``uint8``.
        pos: offset of the next block.
        is_big: the current section is big-endian.
        max_caplen: a packet claiming more captured bytes than this stops the walk.
        if_linktypes, if_muls, if_divs, if_offsets_us: per interface of the current
            section, in order of their Interface Description Blocks.
        last_ts_us: timestamp of the previous packet (for Simple Packet Blocks).
        ts_us, offsets, caplens, wirelens, linktypes: outputs, one row per packet.

    Returns:
        (packets written, position of the next block, ``WALK_*`` status, last timestamp,
        number of blocks of unknown type skipped).
    """
    end = data.shape[0]
    n_max = ts_us.shape[0]
    n_if = if_linktypes.shape[0]
    n = 0
    n_unknown = 0
    while n < n_max:
        if pos == end:
            return n, pos, WALK_END, last_ts_us, n_unknown
        if pos + BLOCK_MIN > end:
            return n, pos, WALK_TRUNCATED, last_ts_us, n_unknown
        btype = _u32(data, pos, is_big)
        blen = _u32(data, pos + 4, is_big)
        if btype == BT_SHB:
            return n, pos, WALK_SECTION, last_ts_us, n_unknown
        if blen < BLOCK_MIN or blen % 4 != 0:
            return n, pos, WALK_BAD_LENGTH, last_ts_us, n_unknown
        if pos + blen > end:
            return n, pos, WALK_TRUNCATED, last_ts_us, n_unknown
        if _u32(data, pos + blen - 4, is_big) != blen:
            return n, pos, WALK_BAD_LENGTH, last_ts_us, n_unknown
        if btype == BT_IDB:
            return n, pos, WALK_INTERFACE, last_ts_us, n_unknown
        if btype in (BT_EPB, BT_PB):
            if blen < PACKET_BLOCK_MIN:
                return n, pos, WALK_BAD_LENGTH, last_ts_us, n_unknown
            # the obsolete Packet Block has a 16-bit interface id and a 16-bit drop count
            iface = _u32(data, pos + 8, is_big) if btype == BT_EPB else _u16(data, pos + 8, is_big)
            if iface >= n_if:
                return n, pos, WALK_BAD_INTERFACE, last_ts_us, n_unknown
            caplen = _u32(data, pos + 20, is_big)
            if caplen > max_caplen or 28 + caplen > blen - 4:
                return n, pos, WALK_BAD_LENGTH, last_ts_us, n_unknown
            ticks = (_u32(data, pos + 12, is_big) << 32) | _u32(data, pos + 16, is_big)
            mul = if_muls[iface]
            div = if_divs[iface]
            # split so that (ticks % div) * mul stays far from int64 overflow
            last_ts_us = (ticks // div) * mul + ((ticks % div) * mul) // div
            last_ts_us += if_offsets_us[iface]
            ts_us[n] = last_ts_us
            offsets[n] = pos + 28
            caplens[n] = caplen
            wirelens[n] = min(_u32(data, pos + 24, is_big), _INT32_MAX)
            linktypes[n] = if_linktypes[iface]
            n += 1
        elif btype == BT_SPB:
            if blen < SIMPLE_BLOCK_MIN:
                return n, pos, WALK_BAD_LENGTH, last_ts_us, n_unknown
            if n_if == 0:
                return n, pos, WALK_BAD_INTERFACE, last_ts_us, n_unknown
            wirelen = _u32(data, pos + 8, is_big)
            caplen = min(wirelen, blen - SIMPLE_BLOCK_MIN)
            if caplen > max_caplen:
                return n, pos, WALK_BAD_LENGTH, last_ts_us, n_unknown
            ts_us[n] = last_ts_us
            offsets[n] = pos + 12
            caplens[n] = caplen
            wirelens[n] = min(wirelen, _INT32_MAX)
            linktypes[n] = if_linktypes[0]
            n += 1
        elif btype not in (BT_NRB, BT_ISB, BT_JOURNAL, BT_DSB, BT_CUSTOM, BT_CUSTOM_NOCOPY):
            n_unknown += 1
        pos += blen
    return n, pos, WALK_FULL, last_ts_us, n_unknown
