"""Capture-file readers for the reference decoder (tests only).

Place in the data flow: the slow twin of the source stage. A pcap or pcapng
file goes in, ``(ts_us, linktype, wirelen, frame)`` records come out, one by one.
Written from the format specs (pcap: four magics; pcapng: several sections and
interfaces, per-interface link type, ``if_tsresol`` and ``if_tsoffset``) rather
than with a library, so that the project's own reader has an independent check.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

__all__ = ["read_records"]


def _ts_to_us(units: int, resol_byte: int) -> int:
    """pcapng ``if_tsresol``: top bit clear = 10**-v s, set = 2**-v s; floor to us."""
    v = resol_byte & 0x7F
    if resol_byte & 0x80:
        return units * 1_000_000 // (1 << v)
    if v >= 6:
        return units // 10 ** (v - 6)
    return units * 10 ** (6 - v)


def _read_pcap(buf: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    magic_le = struct.unpack_from("<I", buf, 0)[0]
    endian = "<" if magic_le in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    magic = struct.unpack_from(endian + "I", buf, 0)[0]
    frac_div = 1000 if magic == 0xA1B23C4D else 1
    linktype = struct.unpack_from(endian + "I", buf, 20)[0] & 0xFFFF
    pos = 24
    while pos + 16 <= len(buf):
        sec, frac, caplen, wirelen = struct.unpack_from(endian + "IIII", buf, pos)
        pos += 16
        if pos + caplen > len(buf):
            return
        yield sec * 1_000_000 + frac // frac_div, linktype, wirelen, buf[pos : pos + caplen]
        pos += caplen


def _idb_tsresol(body: bytes, endian: str) -> tuple[int, int]:
    """(if_tsresol byte, if_tsoffset seconds) from an IDB's options."""
    resol, offset_s, pos = 6, 0, 8
    while pos + 4 <= len(body):
        code, length = struct.unpack_from(endian + "HH", body, pos)
        value = body[pos + 4 : pos + 4 + length]
        if code == 0:
            break
        if code == 9 and length >= 1:
            resol = value[0]
        elif code == 14 and length == 8:
            offset_s = struct.unpack(endian + "q", value)[0]
        pos += 4 + (length + 3) // 4 * 4
    return resol, offset_s


def _read_pcapng(buf: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    endian = "<"
    interfaces: list[tuple[int, int, int, int]] = []
    pos = 0
    while pos + 12 <= len(buf):
        btype = struct.unpack_from(endian + "I", buf, pos)[0]
        if btype == 0x0A0D0D0A:
            bom = buf[pos + 8 : pos + 12]
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            interfaces = []
        blen = struct.unpack_from(endian + "I", buf, pos + 4)[0]
        if blen < 12 or pos + blen > len(buf):
            return
        body = buf[pos + 8 : pos + blen - 4]
        if btype == 1:
            linktype, _, snaplen = struct.unpack_from(endian + "HHI", body, 0)
            interfaces.append((linktype, snaplen, *_idb_tsresol(body, endian)))
        elif btype == 6:
            ifid, hi, lo, caplen, wirelen = struct.unpack_from(endian + "IIIII", body, 0)
            linktype, _, resol, offset_s = interfaces[ifid]
            ts_us = _ts_to_us((hi << 32) | lo, resol) + offset_s * 1_000_000
            yield ts_us, linktype, wirelen, body[20 : 20 + caplen]
        elif btype == 3:
            wirelen = struct.unpack_from(endian + "I", body, 0)[0]
            linktype, snaplen, _, _ = interfaces[0]
            caplen = min(wirelen, snaplen or wirelen, len(body) - 4)
            yield 0, linktype, wirelen, body[4 : 4 + caplen]
        pos += blen


def read_records(path: str | Path) -> Iterator[tuple[int, int, int, bytes]]:
    """Yield ``(ts_us, linktype, wirelen, frame)`` for every record of a pcap or pcapng.

    Timestamps are floored to microseconds. A truncated last record ends the file.
    """
    buf = Path(path).read_bytes()
    if buf[:4] == b"\x0a\x0d\x0d\x0a":
        yield from _read_pcapng(buf)
    else:
        yield from _read_pcap(buf)
