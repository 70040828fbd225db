"""Building blocks of the sample-capture generator: bookkeeping, link layers, file writers.

Place in the data flow: before it. ``scripts/samples/make.py`` tells a story with these
pieces; each :class:`Capture` records the frames it is given *and* what the
author meant by them (events per host, status per packet), and the writers
turn the frames into pcap/pcapng bytes with integer timestamps only, so the same
story gives the same bytes on every run. The manifest's expectations come from
this bookkeeping, never from a decoder.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from testkit import frames
from testkit.pcap import BT_IDB, block, epb, option, pcap_header, pcap_record, shb

# 2026-01-15 09:00:00 UTC, in nanoseconds: every sample starts here (no wall clock).
T0_NS = 1_768_467_600 * 1_000_000_000
SEC_NS = 1_000_000_000
MS_NS = 1_000_000

KEYWORDS = ("mail", "smtp", "mx", "ns", "gate", "relay")
QTYPE_KEYS = {1: "A", 28: "AAAA", 15: "MX", 12: "PTR"}
COUNT_KEYS = ("queries", "A", "AAAA", "MX", "PTR", "other", "keyword")
SYN_KEYS = ("syn135", "syn139", "syn445", "syn_targets")
ANSWER_KEYS = ("answers", "nxdomain")
STATUS_KEYS = ("ok", "ignored", "truncated", "malformed", "unsupported", "fragment")


def is_keyword(name: bytes) -> bool:
    """The story's own keyword rule, used only to double-check hand-made name lists."""
    first = name.split(b".", 1)[0].lower()
    return any(first.startswith(k.encode()) for k in KEYWORDS)


@dataclass
class Tally:
    """What the story made one source host send."""

    counts: Counter[str] = field(default_factory=Counter)
    targets: set[str] = field(default_factory=set)
    first_us: int = -1
    last_us: int = -1

    def seen(self, ts_us: int) -> None:
        self.first_us = ts_us if self.first_us < 0 else min(self.first_us, ts_us)
        self.last_us = max(self.last_us, ts_us)

    def as_dict(self) -> dict[str, int]:
        out = {key: self.counts[key] for key in (*COUNT_KEYS, *SYN_KEYS[:3])}
        out["syn_targets"] = len(self.targets)
        out.update({key: self.counts[key] for key in ANSWER_KEYS})
        out["first_seen_us"] = self.first_us
        out["last_seen_us"] = self.last_us
        return out


@dataclass(frozen=True)
class Query:
    """A DNS query event the story wrote (``keyword`` decided by construction)."""

    src: str
    qtype: int
    keyword: bool


@dataclass(frozen=True)
class Syn:
    """A SYN event the story wrote."""

    src: str
    dst: str
    port: int


@dataclass(frozen=True)
class Answer:
    """A DNS answer event the story wrote (QR=1 from port 53), for the client it answers."""

    client: str
    rcode: int = 0


@dataclass
class Capture:
    """One sample file: its frames and the author's intent for each of them."""

    file: str
    linktype: int
    notes: str
    fmt: str = "pcap"
    endian: str = "<"
    is_nano: bool = False
    snaplen: int = 65535
    # pcapng only: (linktype, if_tsresol byte, if_name) per interface
    interfaces: list[tuple[int, int, str]] = field(default_factory=list)
    records: list[tuple[int, int, bytes, int]] = field(default_factory=list)
    status: Counter[str] = field(default_factory=Counter)
    hosts: dict[str, Tally] = field(default_factory=dict)
    verdicts: dict[str, list[str]] = field(default_factory=dict)

    def add(
        self,
        ts_ns: int,
        frame: bytes,
        status: str = "ignored",
        events: tuple[Query | Syn | Answer, ...] = (),
        *,
        wirelen: int | None = None,
        interface: int = 0,
    ) -> None:
        """Append a frame and book what it is meant to produce."""
        assert status in STATUS_KEYS, status
        assert (status == "ok") <= bool(events), "an ok packet must carry an event"
        self.records.append((ts_ns, interface, frame, len(frame) if wirelen is None else wirelen))
        self.status[status] += 1
        ts_us = ts_ns // 1000
        for event in events:
            if isinstance(event, Answer):
                # counted for the client it answers
                tally = self.hosts.setdefault(event.client, Tally())
                tally.seen(ts_us)
                tally.counts["answers"] += 1
                tally.counts["nxdomain"] += int(event.rcode == 3)
                continue
            tally = self.hosts.setdefault(event.src, Tally())
            tally.seen(ts_us)
            if isinstance(event, Syn):
                tally.counts[f"syn{event.port}"] += 1
                tally.targets.add(event.dst)
            else:
                tally.counts["queries"] += 1
                tally.counts[QTYPE_KEYS.get(event.qtype, "other")] += 1
                tally.counts["keyword"] += int(event.keyword)

    def sorted_records(self) -> list[tuple[int, int, bytes, int]]:
        """Records in time order (stable: equal times keep the order they were added)."""
        return sorted(self.records, key=lambda record: record[0])


# --- link layers -----------------------------------------------------------


def mac(ip: str) -> str:
    """A locally administered MAC derived from an address (no ARP, no randomness)."""
    digest = sum((i + 1) * b for i, b in enumerate(ip.encode())) & 0xFFFFFFFF
    return "02:57:" + ":".join(f"{b:02x}" for b in struct.pack(">I", digest))


def l3(src: str, dst: str, **fields: object) -> Packet:
    """IPv4 or IPv6 header by the address family."""
    if ":" in src:
        return IPv6(src=src, dst=dst, **fields)
    return IP(src=src, dst=dst, **fields)


def stack(*layers: Packet) -> Packet:
    """``a / b / c`` without the copies scapy's ``/`` makes (the demo builds ~15k packets)."""
    for layer in layers[1:]:
        layers[0].add_payload(layer)
    return layers[0]


_ETHER_HEADERS: dict[tuple[str, str, int], bytes] = {}


def ether(packet: Packet, *, tags: tuple[Packet, ...] = ()) -> bytes:
    """Ethernet frame with MACs derived from the packet's addresses (and optional tags)."""
    if tags:
        # ``/`` copies: tag layers are shared between calls and must stay unchained.
        frame = Ether(src=mac(packet.src), dst=mac(packet.dst))
        for tag in tags:
            frame = frame / tag
        return bytes(frame / packet)
    key = (packet.src, packet.dst, ethertype(packet))
    header = _ETHER_HEADERS.get(key)
    if header is None:
        header = bytes(Ether(src=mac(packet.src), dst=mac(packet.dst), type=key[2]))
        _ETHER_HEADERS[key] = header
    return header + bytes(packet)


def ip_bytes(packet: Packet) -> bytes:
    """The IP packet alone (raw link types)."""
    return bytes(packet)


def ethertype(packet: Packet) -> int:
    """0x0800 or 0x86dd by the IP version."""
    return 0x86DD if isinstance(packet, IPv6) else 0x0800


def _link_address(packet: Packet) -> bytes:
    """The cooked header's 8-byte address field: the source MAC, zero-padded."""
    return bytes.fromhex(mac(packet.src).replace(":", "")) + b"\x00\x00"


def sll(packet: Packet, *, packet_type: int = 0) -> bytes:
    """Linux cooked v1 (LINKTYPE_LINUX_SLL) around a scapy IP packet."""
    return frames.sll(
        bytes(packet), ethertype(packet), packet_type=packet_type, address=_link_address(packet)
    )


def sll2(packet: Packet, *, ifindex: int = 2) -> bytes:
    """Linux cooked v2 (LINKTYPE_LINUX_SLL2) around a scapy IP packet."""
    return frames.sll2(
        bytes(packet), ethertype(packet), ifindex=ifindex, address=_link_address(packet)
    )


def null(packet: Packet, family: int, *, endian: str = "<") -> bytes:
    """BSD loopback: a 4-byte address family in the writer's byte order."""
    return struct.pack(endian + "I", family) + bytes(packet)


# --- file writers ----------------------------------------------------------


def pcap_bytes(capture: Capture) -> bytes:
    """Classic pcap: microsecond or nanosecond magic, in the capture's byte order."""
    is_big = capture.endian == ">"
    out = [
        pcap_header(
            capture.linktype, snaplen=capture.snaplen, is_big=is_big, is_nano=capture.is_nano
        )
    ]
    for ts_ns, _, frame, wirelen in capture.sorted_records():
        sec, rest_ns = divmod(ts_ns, SEC_NS)
        frac = rest_ns if capture.is_nano else rest_ns // 1000
        out.append(pcap_record(sec, frac, frame, wirelen=wirelen, is_big=is_big))
    return b"".join(out)


def pcapng_bytes(capture: Capture) -> bytes:
    """pcapng (little-endian): one section, the capture's interfaces, one EPB per frame."""
    # the generator's old path, kept: the committed pcapng files carry these bytes
    out = [shb(options=option(4, b"wormwatch scripts/make_pcaps.py") + option(0, b""))]
    for linktype, tsresol, name in capture.interfaces:
        options = option(2, name.encode()) + option(9, bytes([tsresol])) + option(0, b"")
        out.append(block(BT_IDB, struct.pack("<HHI", linktype, 0, capture.snaplen) + options))
    for ts_ns, interface, frame, wirelen in capture.sorted_records():
        units = ts_ns // 10 ** (9 - capture.interfaces[interface][1])
        out.append(epb(interface, units, frame, wirelen=wirelen))
    return b"".join(out)


def write_capture(capture: Capture, directory: Path) -> Path:
    """Write one capture into ``directory``; return its path."""
    path = directory / capture.file
    data = pcapng_bytes(capture) if capture.fmt == "pcapng" else pcap_bytes(capture)
    path.write_bytes(data)
    return path
