"""Capture files written and read for tests and scripts: the one pcap writer and reader.

Writing: classic pcap in any of its four magic numbers (:func:`pcap_header`,
:func:`pcap_record`, :func:`pcap_file`, :func:`write_frames`) and pcapng blocks (sections
in either byte order, interfaces with ``if_tsresol``/``if_tsoffset``, enhanced, simple
and obsolete packet blocks, any other block type), straight from the format specs with
``struct``; :func:`write_pcap` and :func:`write_pcapng` write records back out.

Reading, two ways on purpose, so that the project's own reader has two independent
checks: :func:`read_records` is written from the specs (the reference decoder's input),
:func:`dpkt_records` is what dpkt's readers say a capture holds.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path

import dpkt
import pytest

# (ts_us, caplen, wirelen, linktype, packet bytes)
Record = tuple[int, int, int, int, bytes]

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D

BT_SHB = 0x0A0D0D0A
BT_IDB = 1
BT_PB = 2
BT_SPB = 3
BT_NRB = 4
BT_ISB = 5
BT_EPB = 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_IF_TSRESOL = 9
OPT_IF_TSOFFSET = 14
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
ETH_HEADER = 14
ETH_P_IP = 0x0800
IP_PROTO_UDP = 17
TSRESOL_NS = 9


def pcap_header(
    linktype: int = LINKTYPE_ETHERNET,
    *,
    snaplen: int = 262144,
    is_big: bool = False,
    is_nano: bool = False,
) -> bytes:
    """The 24-byte pcap file header, version 2.4."""
    order = ">" if is_big else "<"
    magic = PCAP_MAGIC_NS if is_nano else PCAP_MAGIC_US
    return struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(
    sec: int, frac: int, data: bytes, *, wirelen: int | None = None, is_big: bool = False
) -> bytes:
    """One pcap record: the 16-byte header (``frac`` in us or ns as the file says), then data."""
    order = ">" if is_big else "<"
    wire = len(data) if wirelen is None else wirelen
    return struct.pack(order + "IIII", sec, frac, len(data), wire) + data


def pcap_file(
    records: list[tuple[int, int, int, bytes]],
    *,
    linktype: int = LINKTYPE_ETHERNET,
    is_big: bool = False,
    is_nano: bool = False,
    snaplen: int = 262144,
) -> bytes:
    """A classic pcap file; a record is (sec, usec or nsec, original length, bytes)."""
    out = [pcap_header(linktype, snaplen=snaplen, is_big=is_big, is_nano=is_nano)]
    for sec, frac, wirelen, data in records:
        out.append(pcap_record(sec, frac, data, wirelen=wirelen, is_big=is_big))
    return b"".join(out)


def write_frames(
    path: Path, frames: Iterable[tuple[int, bytes]], *, linktype: int = LINKTYPE_ETHERNET
) -> Path:
    """(ts_us, frame) pairs as a microsecond pcap of one link type."""
    rows = [(ts // 1_000_000, ts % 1_000_000, len(data), data) for ts, data in frames]
    path.write_bytes(pcap_file(rows, linktype=linktype))
    return path


def block(btype: int, body: bytes, *, is_big: bool = False) -> bytes:
    """One pcapng block: type, total length, body padded to 4 bytes, total length."""
    order = ">" if is_big else "<"
    body = body + b"\0" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack(order + "II", btype, length) + body + struct.pack(order + "I", length)


def shb(*, is_big: bool = False, options: bytes = b"") -> bytes:
    """A Section Header Block, version 1.0, section length unknown (-1)."""
    order = ">" if is_big else "<"
    body = struct.pack(order + "IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + options
    return block(BT_SHB, body, is_big=is_big)


def option(code: int, value: bytes, *, is_big: bool = False) -> bytes:
    order = ">" if is_big else "<"
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def idb(
    linktype: int,
    *,
    tsresol: int | None = None,
    tsoffset_s: int | None = None,
    is_big: bool = False,
) -> bytes:
    """An Interface Description Block, with the timestamp options when given."""
    order = ">" if is_big else "<"
    body = struct.pack(order + "HHI", linktype, 0, 262144)
    opts = option(2, b"eth-test", is_big=is_big)  # if_name, to be skipped
    if tsresol is not None:
        opts += option(OPT_IF_TSRESOL, bytes([tsresol]), is_big=is_big)
    if tsoffset_s is not None:
        opts += option(OPT_IF_TSOFFSET, struct.pack(order + "q", tsoffset_s), is_big=is_big)
    if opts:
        opts += struct.pack(order + "HH", 0, 0)
    return block(BT_IDB, body + opts, is_big=is_big)


def epb(
    iface: int, ticks: int, data: bytes, *, wirelen: int | None = None, is_big: bool = False
) -> bytes:
    """An Enhanced Packet Block."""
    order = ">" if is_big else "<"
    head = struct.pack(
        order + "IIIII",
        iface,
        ticks >> 32,
        ticks & 0xFFFF_FFFF,
        len(data),
        len(data) if wirelen is None else wirelen,
    )
    return block(BT_EPB, head + data, is_big=is_big)


def packet_block(iface: int, ticks: int, data: bytes, *, is_big: bool = False) -> bytes:
    """An obsolete Packet Block (type 2): 16-bit interface id and drop count."""
    order = ">" if is_big else "<"
    head = struct.pack(
        order + "HHIIII", iface, 0, ticks >> 32, ticks & 0xFFFF_FFFF, len(data), len(data)
    )
    return block(BT_PB, head + data, is_big=is_big)


def spb(data: bytes, *, wirelen: int | None = None, is_big: bool = False) -> bytes:
    """A Simple Packet Block (interface 0, no timestamp)."""
    order = ">" if is_big else "<"
    head = struct.pack(order + "I", len(data) if wirelen is None else wirelen)
    return block(BT_SPB, head + data, is_big=is_big)


def _us(ts: float | Decimal) -> int:
    """dpkt's timestamp (float seconds, Decimal for nanosecond files) in microseconds."""
    if isinstance(ts, Decimal):
        return int(ts * 1_000_000)  # rounds toward zero, as the source does
    return round(ts * 1_000_000)


def dpkt_records(path: Path) -> list[Record]:
    """Every record of a capture as dpkt reads it."""
    raw = path.read_bytes()
    if raw[:4] == struct.pack("<I", BT_SHB):
        return _dpkt_pcapng(path, raw)
    return _dpkt_pcap(path, raw)


def _dpkt_pcap(path: Path, raw: bytes) -> list[Record]:
    with path.open("rb") as file:
        reader = dpkt.pcap.Reader(file)
        pairs = list(reader)
        linktype = reader.datalink() & 0xFFFF
    header_type = dpkt.pcap.MAGIC_TO_PKT_HDR[dpkt.pcap.FileHdr(raw[:24]).magic]
    out: list[Record] = []
    pos = 24
    for ts, data in pairs:
        hdr = header_type(raw[pos : pos + 16])
        pos += 16 + hdr.caplen
        out.append((_us(ts), hdr.caplen, hdr.len, linktype, bytes(data)))
    return out


def _dpkt_pcapng(path: Path, raw: bytes) -> list[Record]:
    """Walks the blocks with dpkt's block classes, keeping per-interface resolution.

    dpkt's own pcapng Reader applies the first interface's link type and resolution to
    every packet, so it is used only to check the packet bytes.
    """
    out: list[Record] = []
    is_le = True
    ifaces: list[tuple[int, int, int]] = []  # (linktype, if_tsresol byte, offset s)
    pos = 0
    while pos + 12 <= len(raw):
        order = "<" if is_le else ">"
        btype = struct.unpack_from(order + "I", raw, pos)[0]
        if btype == BT_SHB:
            is_le = struct.unpack_from("<I", raw, pos + 8)[0] == BYTE_ORDER_MAGIC
            order = "<" if is_le else ">"
            ifaces = []
        length = struct.unpack_from(order + "I", raw, pos + 4)[0]
        buf = raw[pos : pos + length]
        if btype == BT_IDB:
            blk = (
                dpkt.pcapng.InterfaceDescriptionBlockLE(buf)
                if is_le
                else dpkt.pcapng.InterfaceDescriptionBlock(buf)
            )
            resol, offset = 6, 0
            for opt in blk.opts:
                if opt.code == OPT_IF_TSRESOL:
                    resol = opt.data[0]
                elif opt.code == OPT_IF_TSOFFSET:
                    offset = struct.unpack(order + "q", opt.data)[0]
            ifaces.append((blk.linktype, resol, offset))
        elif btype in (BT_EPB, BT_PB):
            if btype == BT_EPB:
                cls = (
                    dpkt.pcapng.EnhancedPacketBlockLE if is_le else dpkt.pcapng.EnhancedPacketBlock
                )
            else:
                cls = dpkt.pcapng.PacketBlockLE if is_le else dpkt.pcapng.PacketBlock
            blk = cls(buf)
            linktype, resol, offset = ifaces[blk.iface_id]
            ticks = (blk.ts_high << 32) | blk.ts_low
            ts_us = ticks_to_us(ticks, resol) + offset * 1_000_000
            out.append((ts_us, blk.caplen, blk.pkt_len, linktype, bytes(blk.pkt_data)))
        elif btype == BT_SPB:
            wirelen = struct.unpack_from(order + "I", raw, pos + 8)[0]
            caplen = min(wirelen, length - 16)
            last_ts = out[-1][0] if out else 0
            data = raw[pos + 12 : pos + 12 + caplen]
            out.append((last_ts, caplen, wirelen, ifaces[0][0], data))
        pos += length
    return out


def dpkt_pcapng_packets(path: Path) -> list[bytes]:
    """Packet bytes of a one-section pcapng file as dpkt.pcapng.Reader gives them."""
    with path.open("rb") as file:
        return [bytes(data) for _, data in dpkt.pcapng.Reader(file)]


def ticks_to_us(ticks: int, tsresol: int) -> int:
    """Timestamp units -> microseconds, rounded down (exact integer arithmetic)."""
    exp = tsresol & 0x7F
    units_per_s = 2**exp if tsresol & 0x80 else 10**exp
    return ticks * 1_000_000 // units_per_s


def write_pcap(path: Path, records: list[Record], *, is_nano: bool = False) -> Path:
    """Records (as ``dpkt_records`` reads them) into a classic pcap of the first's link type."""
    scale = 1000 if is_nano else 1
    rows = [(ts // 10**6, ts % 10**6 * scale, wire, data) for ts, _, wire, _, data in records]
    path.write_bytes(pcap_file(rows, linktype=records[0][3] if records else 1, is_nano=is_nano))
    return path


def write_pcapng(path: Path, records: list[Record]) -> Path:
    """Nanosecond pcapng with two interfaces: Ethernet, and raw IP for plain IPv4 frames
    (their Ethernet header dropped), so one file mixes link types."""
    blocks = [
        shb(),
        idb(LINKTYPE_ETHERNET, tsresol=TSRESOL_NS),
        idb(LINKTYPE_RAW, tsresol=TSRESOL_NS),
    ]
    for ts, _, wire, _, data in records:
        if struct.unpack_from("!H", data, 12)[0] == ETH_P_IP:
            blocks.append(epb(1, ts * 1000, data[ETH_HEADER:], wirelen=wire - ETH_HEADER))
        else:
            blocks.append(epb(0, ts * 1000, data, wirelen=wire))
    path.write_bytes(b"".join(blocks))
    return path


def is_udp(record: Record) -> bool:
    """An Ethernet IPv4 frame carrying UDP (fragments included: the protocol field)."""
    data = record[4]
    return (
        struct.unpack_from("!H", data, 12)[0] == ETH_P_IP and data[ETH_HEADER + 9] == IP_PROTO_UDP
    )


# --- reading from the specs -------------------------------------------------------


def _ts_to_us(units: int, resol_byte: int) -> int:
    """pcapng ``if_tsresol``: top bit clear = 10**-v s, set = 2**-v s; floor to us."""
    v = resol_byte & 0x7F
    if resol_byte & 0x80:
        return units * 1_000_000 // (1 << v)
    if v >= 6:
        return units // 10 ** (v - 6)
    return units * 10 ** (6 - v)


def _read_pcap(buf: bytes | mmap.mmap) -> Iterator[tuple[int, int, int, bytes]]:
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


def _read_pcapng(buf: bytes | mmap.mmap) -> Iterator[tuple[int, int, int, bytes]]:
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

    Timestamps are floored to microseconds. A truncated last record ends the file. The
    file is mapped, not read, so a benchmark's gigabyte file costs no memory.
    """
    with Path(path).open("rb") as file:
        if Path(path).stat().st_size == 0:
            return
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[:4] == b"\x0a\x0d\x0d\x0a":
                yield from _read_pcapng(buf)
            else:
                yield from _read_pcap(buf)


def resident_file_kib() -> int:
    """KiB of file pages this process has mapped in (``RssFile``): what a replay's
    mapping adds to resident memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    pytest.skip("no RssFile in /proc/self/status")


def present_pages(address: int, size: int) -> int:
    """Pages of this process's ``address .. address + size`` its page table maps now
    (``/proc/self/pagemap``'s present bit): a file's pages stay in the page cache when a
    process lets them go, so only this says whether the process still maps them."""
    page = mmap.PAGESIZE
    first, last = address // page, (address + size - 1) // page
    with open("/proc/self/pagemap", "rb") as pagemap:
        pagemap.seek(first * 8)
        entries = pagemap.read((last - first + 1) * 8)
    return sum(
        (int.from_bytes(entries[i : i + 8], "little") >> 63) & 1 for i in range(0, len(entries), 8)
    )
