"""pcapng Section Header and Interface Description Blocks, read in Python.

``wormwatch.source.pcapfile`` and ``wormwatch.source.stdin`` -> (the bytes of a mapped file,
or of standard input read in chunks) -> **this module** (:class:`PcapngWalk`) -> the
current section's byte order and per-interface arrays (link type, timestamp scale, offset)
-> handed to the ``walk_pcapng`` kernel, which walks the packet blocks.

These blocks are few (one per section and per interface), so reading their options in
Python costs nothing; the per-packet walk stays in numba. Layouts follow
draft-ietf-opsawg-pcapng (sections 4.1 and 4.2).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field

import numpy as np

from wormwatch.kernels.pcapwalk import (
    W_RECORDS,
    WALK_FULL,
    WALK_INTERFACE,
    WALK_SECTION,
    walk_pcapng,
)
from wormwatch.model import I32, I64, U8, Records

BYTE_ORDER_MAGIC = 0x1A2B3C4D
SHB_MIN = 28  # type, length, byte-order magic, version (2+2), section length (8), trailer
IDB_MIN = 20  # type, length, link type (2), reserved (2), snaplen (4), trailer
PCAPNG_MAJOR = 1

OPT_ENDOFOPT = 0
OPT_IF_TSRESOL = 9  # 1 byte: top bit 0 -> 10^-n s, top bit 1 -> 2^-n s
OPT_IF_TSOFFSET = 14  # signed 64-bit seconds added to every timestamp

US_PER_S = 1_000_000

# what the block readers accept: a mapped file, or the first bytes of one
Bytes = bytes | mmap.mmap | memoryview
# Largest exponents whose scale keeps (ticks % div) * mul below 2**63 in the kernel
MAX_TSRESOL_EXP10 = 24
MAX_TSRESOL_EXP2 = 54
# if_tsoffset in microseconds must fit an int64
MAX_TSOFFSET_S = (2**63 - 1) // US_PER_S


def read_section_header(buf: Bytes, pos: int, size: int) -> tuple[bool, int] | str:
    """Reads the Section Header Block at ``pos``.

    Args:
        buf: the file's bytes (at least the block's first 28 if it is complete).
        pos: where the block starts.
        size: the file's size.

    Returns:
        (is big-endian, block length), or a one-phrase description of what is wrong.
    """
    if pos + 12 > min(size, len(buf)):
        return "section header truncated"
    (bom,) = struct.unpack_from("<I", buf, pos + 8)
    if bom == BYTE_ORDER_MAGIC:
        order = "<"
    elif bom == struct.unpack(">I", struct.pack("<I", BYTE_ORDER_MAGIC))[0]:
        order = ">"
    else:
        return f"section header with an unknown byte-order magic 0x{bom:08x}"
    (length,) = struct.unpack_from(order + "I", buf, pos + 4)
    if length < SHB_MIN or length % 4 != 0:
        return f"section header with an impossible length {length}"
    if pos + length > size or pos + SHB_MIN > len(buf):
        return "section header truncated"
    (major,) = struct.unpack_from(order + "H", buf, pos + 12)
    if major != PCAPNG_MAJOR:
        return f"unsupported pcapng version {major}"
    return order == ">", length


def tsresol_scale(tsresol: int) -> tuple[int, int] | None:
    """if_tsresol -> (mul, div) with ``us = ticks * mul / div``, reduced; None if too fine."""
    exp = tsresol & 0x7F
    if tsresol & 0x80:
        if exp > MAX_TSRESOL_EXP2:
            return None
        # ticks * 10^6 / 2^exp, with 10^6 = 2^6 * 15625 and the common power of two removed
        shared = min(exp, 6)
        return 15625 << (6 - shared), 1 << (exp - shared)
    if exp > MAX_TSRESOL_EXP10:
        return None
    if exp >= 6:
        return 1, 10 ** (exp - 6)
    return 10 ** (6 - exp), 1


@dataclass(slots=True)
class PcapngSections:
    """The walk's view of the current section: byte order and interfaces so far."""

    is_big: bool = False
    linktypes: I32 = field(default_factory=lambda: np.zeros(0, np.int32))
    muls: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    divs: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    offsets_us: I64 = field(default_factory=lambda: np.zeros(0, np.int64))

    def read_section(self, buf: Bytes, pos: int, size: int) -> int | str:
        """Starts a new section at ``pos`` (forgets the interfaces).

        Returns:
            The position of the next block, or what is wrong with this one.
        """
        header = read_section_header(buf, pos, size)
        if isinstance(header, str):
            return header
        self.is_big, length = header
        self.linktypes = np.zeros(0, np.int32)
        self.muls = np.zeros(0, np.int64)
        self.divs = np.zeros(0, np.int64)
        self.offsets_us = np.zeros(0, np.int64)
        return pos + int(length)

    def read_interface(self, buf: Bytes, pos: int) -> int | str:
        """Adds the interface described by the block at ``pos``.

        The walker has checked the block's length (a multiple of 4, inside the file, equal
        to its trailing copy).

        Returns:
            The position of the next block, or what is wrong with this one.
        """
        order = ">" if self.is_big else "<"
        (length,) = struct.unpack_from(order + "I", buf, pos + 4)
        if length < IDB_MIN:
            return f"interface description block of impossible length {length}"
        (linktype,) = struct.unpack_from(order + "H", buf, pos + 8)
        tsresol = 6
        offset_s = 0
        opt = pos + 16
        stop = pos + length - 4
        while opt + 4 <= stop:
            code, opt_len = struct.unpack_from(order + "HH", buf, opt)
            value = opt + 4
            if code == OPT_ENDOFOPT or value + opt_len > stop:
                break
            if code == OPT_IF_TSRESOL and opt_len >= 1:
                (tsresol,) = struct.unpack_from("B", buf, value)
            elif code == OPT_IF_TSOFFSET and opt_len >= 8:
                (offset_s,) = struct.unpack_from(order + "q", buf, value)
            opt = value + (opt_len + 3) // 4 * 4
        scale = tsresol_scale(tsresol)
        if scale is None:
            return f"interface timestamp resolution (if_tsresol 0x{tsresol:02x}) too fine"
        if abs(offset_s) > MAX_TSOFFSET_S:
            return f"interface timestamp offset (if_tsoffset {offset_s} s) out of range"
        self.linktypes = np.append(self.linktypes, np.int32(linktype))
        self.muls = np.append(self.muls, np.int64(scale[0]))
        self.divs = np.append(self.divs, np.int64(scale[1]))
        self.offsets_us = np.append(self.offsets_us, np.int64(offset_s * US_PER_S))
        return pos + int(length)

    def describe_block(self, buf: Bytes, pos: int, size: int) -> str:
        """Type and lengths of the block at ``pos``, for a warning about it."""
        if pos + 8 > size:
            return "block header cut short"
        order = ">" if self.is_big else "<"
        btype, length = struct.unpack_from(order + "II", buf, pos)
        text = f"block type 0x{btype:08x}, block length {length}"
        if btype in (2, 6) and pos + 24 <= size:
            (caplen,) = struct.unpack_from(order + "I", buf, pos + 20)
            text += f", caplen {caplen}"
        return text


class PcapngWalk:
    """The walk of one pcapng byte stream (a file, or standard input): packet blocks by
    the ``walk_pcapng`` kernel, section and interface blocks here, between its calls.

    Args:
        max_caplen: a packet claiming more captured bytes than this stops the walk.
        skip: leave out the packets the decoder would surely call ``ignored``.
    """

    def __init__(self, *, max_caplen: int, skip: bool) -> None:
        self.sections = PcapngSections()
        self.max_caplen = max_caplen
        self.skip = skip
        self.last_ts_us = 0  # a Simple Packet Block's timestamp: the packet's before it
        self.n_unknown = 0  # blocks of unknown type passed over

    def walk(
        self, data: U8, buf: Bytes, pos: int, max_packets: int, out: Records, walked: I64
    ) -> tuple[int, int, int | str]:
        """Walks from ``pos`` until ``max_packets`` packets are walked (``walked``'s
        totals, added to) or the walk stops: (packets kept in ``out``, the position
        reached, the ``WALK_*`` status that stopped it or what is wrong with a section
        header or interface description block at that position). ``buf`` holds the
        same bytes as ``data``, for Python to read."""
        n = 0
        while (n_walked := int(walked[W_RECORDS])) < max_packets:
            s = self.sections
            k, pos, status, self.last_ts_us, n_unknown = walk_pcapng(
                data, pos, s.is_big, self.max_caplen, s.linktypes, s.muls, s.divs,
                s.offsets_us, self.last_ts_us, self.skip, max_packets - n_walked,
                out.ts_us[n:], out.offsets[n:], out.caplens[n:], out.wirelens[n:],
                out.linktypes[n:], walked,
            )  # fmt: skip
            n += k
            self.n_unknown += n_unknown
            if status == WALK_SECTION:
                step = s.read_section(buf, pos, int(data.shape[0]))
            elif status == WALK_INTERFACE:
                step = s.read_interface(buf, pos)
            else:
                return n, pos, status
            if isinstance(step, str):
                return n, pos, step
            pos = step
        return n, pos, WALK_FULL
