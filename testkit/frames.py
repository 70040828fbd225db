"""Frames built byte by byte with ``struct``, and batches of them, for tests and scripts.

One small function per layer, innermost first: a DNS message, then UDP or TCP around
it, IPv4 or IPv6 around that, then a link layer (Ethernet with any tags, PPPoE, Linux
cooked v1/v2). Every field a test may want to break is a keyword; defaults make a
well-formed query from ``SRC4`` to ``DST4``. Addresses are documentation ranges.
:func:`make_batch` lays (linktype, frame) pairs into one :class:`~wormwatch.model.Batch`,
as a source would hand them to the decoder.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from wormwatch.model import Batch

SRC4, DST4 = "192.0.2.7", "198.51.100.53"
SRC6, DST6 = "2001:db8::7", "2001:db8:1::53"
ETH_P_IP, ETH_P_IPV6, ETH_P_PPPOE = 0x0800, 0x86DD, 0x8864
IP_PROTO_TCP, IP_PROTO_UDP = 6, 17
TCP_SYN = 0x02


def encode_name(name: bytes) -> bytes:
    """``a.example`` -> ``\\x01a\\x07example\\x00`` (empty labels dropped)."""
    labels = [label for label in name.split(b".") if label]
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


def dns(
    name: bytes = b"www.example.com",
    qtype: int = 1,
    *,
    flags: int = 0x0100,
    qdcount: int = 1,
    question: bytes | None = None,
    ident: int = 0x1234,
) -> bytes:
    """A DNS message; ``question`` replaces the encoded name + qtype + qclass."""
    if question is None:
        question = encode_name(name) + struct.pack("!HH", qtype, 1)
    return struct.pack("!HHHHHH", ident, flags, qdcount, 0, 0, 0) + question


def udp(payload: bytes, *, dport: int = 53, sport: int = 33333, length: int | None = None) -> bytes:
    length = 8 + len(payload) if length is None else length
    return struct.pack("!HHHH", sport, dport, length, 0) + payload


def tcp(
    payload: bytes = b"",
    *,
    dport: int = 53,
    sport: int = 44444,
    flags: int = 0x18,
    doff: int = 5,
    seq: int = 1,
) -> bytes:
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, 1, doff << 4, flags, 8192, 0, 0)
    return header + b"\x01" * (max(doff, 5) * 4 - 20) + payload


def tcp_dns(*messages: bytes) -> bytes:
    """DNS messages as a TCP stream carries them: each after its 2-byte length."""
    return b"".join(struct.pack("!H", len(m)) + m for m in messages)


def ipv4(
    payload: bytes,
    proto: int = IP_PROTO_UDP,
    *,
    src: str = SRC4,
    dst: str = DST4,
    options: bytes = b"",
    total_len: int | None = None,
    frag: int = 0,
    ihl: int | None = None,
    version: int = 4,
    ident: int = 7,
) -> bytes:
    ihl = 5 + len(options) // 4 if ihl is None else ihl
    total_len = 20 + len(options) + len(payload) if total_len is None else total_len
    header = struct.pack("!BBHHHBBH", version << 4 | ihl, 0, total_len, ident, frag, 64, proto, 0)
    addrs = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
    return header + addrs + options + payload


def ipv6(
    payload: bytes,
    nh: int = IP_PROTO_UDP,
    *,
    src: str = SRC6,
    dst: str = DST6,
    plen: int | None = None,
) -> bytes:
    plen = len(payload) if plen is None else plen
    addrs = ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
    return struct.pack("!IHBB", 0x60000000, plen, nh, 64) + addrs + payload


def ext(nh: int, size: int) -> bytes:
    """An 8-octet-unit extension header (hop-by-hop, routing, destination options)."""
    return bytes((nh, size // 8 - 1)) + b"\x01" * (size - 2)


def frag_header(nh: int, offset: int, *, more: bool = False, ident: int = 99) -> bytes:
    """An IPv6 fragment header; ``offset`` in 8-octet units."""
    return struct.pack("!BBHI", nh, 0, offset << 3 | int(more), ident)


def ether(ip: bytes, ethertype: int = ETH_P_IP, tags: tuple[int, ...] = ()) -> bytes:
    """Ethernet II, with one 802.1Q-style tag (VLAN 10) per TPID in ``tags``."""
    head = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"
    for tpid in tags:
        head += struct.pack("!HH", tpid, 10)
    return head + struct.pack("!H", ethertype) + ip


def sll(
    ip: bytes, protocol: int = ETH_P_IP, *, packet_type: int = 0, address: bytes = b"\x02" * 8
) -> bytes:
    """Linux cooked capture v1 (LINKTYPE_LINUX_SLL): 16 bytes, protocol at offset 14."""
    return struct.pack("!HHH8sH", packet_type, 1, 6, address, protocol) + ip


def sll2(
    ip: bytes, protocol: int = ETH_P_IP, *, ifindex: int = 2, address: bytes = b"\x02" * 8
) -> bytes:
    """Linux cooked capture v2 (LINKTYPE_LINUX_SLL2): 20 bytes, protocol at offset 0."""
    return struct.pack("!HHIHBB8s", protocol, 0, ifindex, 1, 0, 6, address) + ip


def pppoe(ip: bytes, ppp: int = 0x0021) -> bytes:
    """A PPPoE session frame in Ethernet (PPP protocol 0x0021 = IPv4)."""
    return ether(struct.pack("!BBHHH", 0x11, 0, 1, len(ip) + 2, ppp) + ip, ETH_P_PPPOE)


def query(
    name: bytes,
    qtype: int = 1,
    *,
    src: str = SRC4,
    dst: str = DST4,
    ident: int = 0x1234,
    sport: int = 33333,
) -> bytes:
    """An Ethernet frame with one DNS query over UDP/IPv4."""
    return ether(ipv4(udp(dns(name, qtype, ident=ident), sport=sport), src=src, dst=dst))


def syn(
    dport: int = 445, *, src: str = SRC4, dst: str = DST4, sport: int = 44444, seq: int = 1
) -> bytes:
    """An Ethernet frame with one TCP SYN over IPv4."""
    segment = tcp(dport=dport, sport=sport, flags=TCP_SYN, seq=seq)
    return ether(ipv4(segment, IP_PROTO_TCP, src=src, dst=dst))


def make_batch(
    frames: Sequence[tuple[int, bytes]],
    *,
    ts_us: Sequence[int] | npt.NDArray[np.int64] | None = None,
    gap: bytes = b"",
) -> Batch:
    """(linktype, frame) pairs laid one after another in one buffer, as a source hands
    them out. Each frame is followed by ``gap``, bytes no packet owns (a decoder that
    reads past ``caplen`` sees them). Timestamps default to 0, 1, 2, ... microseconds."""
    data = b"".join(frame + gap for _, frame in frames)
    caplens = np.array([len(frame) for _, frame in frames], np.int32)
    offsets = np.zeros(len(frames), np.int64)
    offsets[1:] = np.cumsum(caplens[:-1].astype(np.int64) + len(gap))
    times = np.arange(len(frames), dtype=np.int64) if ts_us is None else ts_us
    return Batch(
        data=np.frombuffer(data, np.uint8),
        ts_us=np.asarray(times, np.int64),
        offsets=offsets,
        caplens=caplens,
        wirelens=caplens.copy(),
        linktypes=np.array([lt for lt, _ in frames], np.int32),
    )


def ipv4_fragments(frame: bytes, cut: int) -> list[bytes]:
    """An Ethernet IPv4 frame as two fragments of its datagram: payload bytes
    ``[0, cut)`` with More Fragments set, then the rest at offset ``cut`` (a
    multiple of 8). The IP header is copied into both; the checksum is not redone."""
    if cut % 8 or not cut > 0:
        raise ValueError(f"a fragment offset is a positive multiple of 8 bytes, not {cut}")
    link, ip = frame[:14], frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack_from("!H", ip, 2)[0]
    header, payload = ip[:ihl], ip[ihl:total]

    def piece(part: bytes, offset: int, *, more: bool) -> bytes:
        head = bytearray(header)
        struct.pack_into("!HHH", head, 2, ihl + len(part), head[4] << 8 | head[5], 0)
        struct.pack_into("!H", head, 6, offset // 8 | (0x2000 if more else 0))
        return link + bytes(head) + part

    return [piece(payload[:cut], 0, more=True), piece(payload[cut:], cut, more=False)]
