"""Frame templates and pcap records for the bulk benchmark file.

Place in the flow: the byte-level half of ``scripts/bench/bulk.py``, which
decides what each packet is (a :class:`Plan`); this module turns a plan into a
little-endian microsecond pcap (linktype 1). A few hundred templates are built
once with ``struct`` (one per category, VLAN depth, address family and
parameter: payload size or DNS question); per packet only addresses, ports and
ids are patched, with numpy, template by template, and each chunk of records is
written as one buffer. Bulk payload bytes stay zero.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from testkit.pcap import LINKTYPE_ETHERNET, pcap_header

CHUNK_PACKETS = 131_072
# Packet categories (what a template is).
CAT_BULK, CAT_UDP, CAT_DNS, CAT_RESP, CAT_SCAN, CAT_NOSYN = range(6)
PARAM_SPAN = 1024  # template key = ((cat * 3 + vlan) * 2 + family) * PARAM_SPAN + param
BULK_PAYLOADS = (0, 1460, *range(64, 1400, 48))  # TCP payload bytes (IPv6 capped at 1440)
UDP_PAYLOADS = (32, 100, 300, 600, 1200)
MAC_PAIR = bytes.fromhex("020000000002020000000001")
ZERO_V4, ZERO_V6 = bytes(4), bytes(16)
VLAN_TAGS = (b"", b"\x81\x00\x00\x0a", b"\x88\xa8\x00\x64\x81\x00\x00\x0a")  # none, 802.1Q, QinQ


@dataclass(slots=True)
class Plan:
    """Per-packet choices, one row per packet, in file order.

    ``param`` selects the template within a category: a payload size index
    (bulk, UDP), a query kind (DNS; plus ``n_kinds`` for TCP with one message,
    ``2 * n_kinds`` for two), or a flag variant (SYNs). ``src``/``dst`` are rows
    of the address table.
    """

    ts_us: np.ndarray
    cat: np.ndarray
    vlan: np.ndarray
    param: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    ipid: np.ndarray
    dnsid: np.ndarray
    n_msgs: np.ndarray  # DNS query messages in the packet (0 for other packets)


# --- frame templates -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Template:
    """The first bytes of a frame (the rest, bulk payload, stays zero) and where to patch."""

    head: np.ndarray  # uint8
    frame_len: int
    is_v6: bool
    ip_off: int
    dnsid_off: int  # -1: no DNS id to patch

    @property
    def l4_off(self) -> int:
        return self.ip_off + (40 if self.is_v6 else 20)


def _dns_message(name: str, qtype: int, flags: int) -> bytes:
    labels = b"".join(bytes((len(p),)) + p.encode() for p in name.split(".") if p)
    # RFC 1035 4.1.1: id, flags (0x0100 = RD query, 0x8183 = response, NXDOMAIN), QDCOUNT 1
    return (
        struct.pack("!HHHHHH", 0, flags, 1, 0, 0, 0)
        + labels
        + b"\x00"
        + struct.pack("!HH", qtype, 1)
    )


def _tcp(flags: int) -> bytes:
    return struct.pack("!HHIIBBHHH", 0, 0, 0, 0, 0x50, flags, 65535, 0, 0)


def _udp(payload_len: int) -> bytes:
    return struct.pack("!HHHH", 0, 0, 8 + payload_len, 0)


def _l4(
    cat: int, param: int, is_v6: bool, questions: Sequence[tuple[str, int]]
) -> tuple[int, bytes, int, int]:
    """(IP protocol, L4 head bytes, zero bytes after it, DNS id offset in the L4 head or -1)."""
    n_kinds = len(questions)
    if cat == CAT_BULK:
        size = min(BULK_PAYLOADS[param], 1440) if is_v6 else BULK_PAYLOADS[param]
        return 6, _tcp(0x18 if size else 0x10), size, -1
    if cat == CAT_UDP:
        return 17, _udp(UDP_PAYLOADS[param]), UDP_PAYLOADS[param], -1
    if cat == CAT_SCAN:
        return 6, _tcp(0xC2 if param else 0x02), 0, -1
    if cat == CAT_NOSYN:
        return 6, _tcp(0x12 if param else 0x02), 0, -1
    kind, mode = param % n_kinds, param // n_kinds
    flags = 0x8183 if cat == CAT_RESP else 0x0100
    message = _dns_message(*questions[kind], flags)
    if mode == 0:
        return 17, _udp(len(message)) + message, 0, 8
    # DNS over TCP (RFC 1035 4.2.2): each message after a 2-byte length
    framed = struct.pack("!H", len(message)) + message
    return 6, _tcp(0x18) + framed * mode, 0, 22


def make_template(key: int, questions: Sequence[tuple[str, int]]) -> Template:
    """The template of one key (category, VLAN depth, family, parameter);
    ``questions`` are the (name, qtype) of the DNS query kinds."""
    rest, param = divmod(key, PARAM_SPAN)
    rest, fam = divmod(rest, 2)
    cat, vlan = divmod(rest, 3)
    is_v6 = fam == 1
    proto, l4, tail, dnsid = _l4(cat, param, is_v6, questions)
    tags = VLAN_TAGS[vlan]
    ethertype = 0x86DD if is_v6 else 0x0800
    l4_len = len(l4) + tail
    if is_v6:
        ip = struct.pack("!IHBB", 0x6000_0000, l4_len, proto, 64) + ZERO_V6 + ZERO_V6
    else:
        ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + l4_len, 0, 0x4000, 64, proto, 0)
        ip += ZERO_V4 + ZERO_V4
    head = MAC_PAIR + tags + struct.pack("!H", ethertype) + ip + l4
    ip_off = 14 + len(tags)
    return Template(
        head=np.frombuffer(head, np.uint8),
        frame_len=len(head) + tail,
        is_v6=is_v6,
        ip_off=ip_off,
        dnsid_off=-1 if dnsid < 0 else ip_off + len(ip) + dnsid,
    )


# --- writing -----------------------------------------------------------------


def _put16(rows: np.ndarray, col: int, values: np.ndarray) -> None:
    rows[:, col] = values >> 8
    rows[:, col + 1] = values & 0xFF


def _fill_group(
    rows: np.ndarray, t: Template, idx: np.ndarray, plan: Plan, addrs: np.ndarray
) -> None:
    """Patch one template's rows (record header already in columns 0..15)."""
    o = 16 + t.ip_off
    n_addr = 16 if t.is_v6 else 4
    src_col = o + (8 if t.is_v6 else 12)
    rows[:, src_col : src_col + n_addr] = addrs[plan.src[idx], :n_addr]
    rows[:, src_col + n_addr : src_col + 2 * n_addr] = addrs[plan.dst[idx], :n_addr]
    if not t.is_v6:
        _put16(rows, o + 4, plan.ipid[idx])
    _put16(rows, 16 + t.l4_off, plan.sport[idx])
    _put16(rows, 16 + t.l4_off + 2, plan.dport[idx])
    if t.dnsid_off >= 0:
        _put16(rows, 16 + t.dnsid_off, plan.dnsid[idx])


def _write_chunk(
    out: BinaryIO,
    lo: int,
    hi: int,
    tids: np.ndarray,
    templates: list[Template],
    plan: Plan,
    addrs: np.ndarray,
) -> int:
    lens = np.array([t.frame_len for t in templates], np.int64)[tids[lo:hi]]
    m = hi - lo
    rec_off = np.zeros(m, np.int64)
    np.cumsum(16 + lens[:-1], out=rec_off[1:])
    buf = np.zeros(int(rec_off[-1] + 16 + lens[-1]), np.uint8)
    hdr = np.empty((m, 4), "<u4")
    ts = plan.ts_us[lo:hi]
    hdr[:, 0], hdr[:, 1], hdr[:, 2], hdr[:, 3] = ts // 1_000_000, ts % 1_000_000, lens, lens
    hdr_bytes = hdr.view(np.uint8).reshape(m, 16)
    order = np.argsort(tids[lo:hi], kind="stable")
    sorted_tids = tids[lo:hi][order]
    for group in np.split(order, np.flatnonzero(np.diff(sorted_tids)) + 1):
        t = templates[int(tids[lo + group[0]])]
        width = 16 + len(t.head)
        rows = np.empty((len(group), width), np.uint8)
        rows[:, :16] = hdr_bytes[group]
        rows[:, 16:] = t.head
        _fill_group(rows, t, lo + group, plan, addrs)
        buf[rec_off[group, None] + np.arange(width)] = rows
    out.write(buf.data)
    return int(buf.nbytes)


def write_pcap(
    path: Path,
    plan: Plan,
    addrs: np.ndarray,
    is_v6: np.ndarray,
    questions: Sequence[tuple[str, int]],
) -> tuple[int, int]:
    """Writes the planned packets to ``path`` as a pcap.

    Args:
        path: the file to write.
        plan: what each packet is.
        addrs: the address table, (n, 16) uint8; IPv4 rows use the first 4 bytes.
        is_v6: per row of ``addrs``, whether it is IPv6.
        questions: (name, qtype) of each DNS query kind.

    Returns:
        (bytes written, number of templates used).
    """
    fam = is_v6[plan.src].astype(np.int64)
    keys = ((plan.cat * 3 + plan.vlan) * 2 + fam) * PARAM_SPAN + plan.param
    unique_keys, tids = np.unique(keys, return_inverse=True)
    templates = [make_template(int(k), questions) for k in unique_keys]
    n_packets = len(plan.ts_us)
    n_bytes = 24
    with path.open("wb") as out:
        out.write(pcap_header(LINKTYPE_ETHERNET, snaplen=65535))
        for lo in range(0, n_packets, CHUNK_PACKETS):
            hi = min(lo + CHUNK_PACKETS, n_packets)
            n_bytes += _write_chunk(out, lo, hi, tids.reshape(-1), templates, plan, addrs)
    return n_bytes, len(templates)
