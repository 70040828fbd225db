"""The reference decoder against facts nobody here wrote, and on hand-built frames.

The facts are the tshark counts in SOURCES.md beside the real captures. tshark counts
DNS queries per *question*; we count per *message*, typed by its first question, and
a message whose question cannot be read counts with qtype 0 (tshark lists those as
"no-parsable-question"). Every place where the two disagree is in
:data:`KNOWN_DIFFERENCES` with the reason; any other difference fails.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from wormwatch.model import (
    KIND_DNS,
    KIND_SYN,
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW,
    ST_FRAGMENT,
    ST_IGNORED,
    ST_MALFORMED,
    ST_OK,
    ST_TRUNCATED,
    ST_UNSUPPORTED,
)

from testkit.paths import REAL_PCAPS
from testkit.reference import RefEvent, decode_frame, default_keyword, host_counts, reference_events

SOURCES = REAL_PCAPS / "SOURCES.md"
NO_QUESTION = "no-parsable-question"

# file -> {qtype label: (count in SOURCES.md, our count)} with the reason.
KNOWN_DIFFERENCES: dict[str, tuple[dict[str, tuple[int, int]], str]] = {
    "zeek_dns-invalid-names.pcap": (
        {"1": (1, 0), NO_QUESTION: (2, 3)},
        # Frame 2's question name is a pointer to itself (c0 0c) followed by 00 01 00 01.
        # tshark flags the loop but still reads the qtype after the pointer (A); the rule
        # book counts a malformed name as qtype 0, empty name, status malformed.
        "pointer-loop question: tshark reads qtype A after the loop, we count qtype 0",
    ),
}


def _parse_sources() -> dict[str, dict[str, object]]:
    """SOURCES.md -> {file: {"dns": {qtype label: n}, "syn": {port: n}}}."""
    facts: dict[str, dict[str, object]] = {}
    current = ""
    for line in SOURCES.read_text().splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            facts[current] = {}
        elif current and line.startswith("- DNS queries (QR=0) by qtype:"):
            text = line.split(":", 1)[1].strip()
            dns: dict[str, int] = {}
            if text != "none":
                found = re.findall(r"([\w-]+)\((\d+|\(none\))\) x(\d+)", text)
                assert len(found) == text.count(" x"), f"unparsed qtype list: {text}"
                for label, code, count in found:
                    key = code if code.isdigit() else label
                    dns[key] = dns.get(key, 0) + int(count)
            facts[current]["dns"] = dns
        elif current and line.startswith("- TCP SYN without ACK"):
            ports = re.search(r"\(135:(\d+) 139:(\d+) 445:(\d+)\)", line)
            assert ports, line
            counts = zip((135, 139, 445), ports.groups(), strict=True)
            facts[current]["syn"] = {port: int(n) for port, n in counts}
    return facts


FACTS = _parse_sources() if SOURCES.exists() else {}


def test_sources_parsed_for_every_real_file(real_pcaps: Path) -> None:
    files = sorted(p.name for p in real_pcaps.iterdir() if p.suffix in (".pcap", ".pcapng"))
    assert sorted(FACTS) == files
    for name, fact in FACTS.items():
        assert "dns" in fact, name
        assert "syn" in fact, name


def test_reference_matches_sources(real_capture: Path) -> None:
    name = real_capture.name
    _, events = reference_events(real_capture)
    syn = Counter(e.dport for e in events if e.kind == KIND_SYN)
    assert {p: syn.get(p, 0) for p in (135, 139, 445)} == FACTS[name]["syn"]

    ours = Counter(str(e.qtype) if e.qtype else NO_QUESTION for e in events if e.kind == KIND_DNS)
    theirs = FACTS[name]["dns"]
    assert isinstance(theirs, dict)
    differences = {
        key: (theirs.get(key, 0), ours.get(key, 0))
        for key in set(theirs) | set(ours)
        if theirs.get(key, 0) != ours.get(key, 0)
    }
    known = KNOWN_DIFFERENCES.get(name, ({}, ""))[0]
    assert differences == known


# --- hand-built frames -------------------------------------------------------

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
V4 = IP(src="192.0.2.10", dst="192.0.2.53")


def _frame(*layers: object) -> bytes:
    packet = ETH
    for layer in layers:
        packet = packet / layer
    return bytes(packet)


def _udp_dns(payload: bytes, *, ulen: int | None = None) -> bytes:
    return _frame(V4, UDP(sport=40000, dport=53, len=ulen), payload)


def _raw_query(question: bytes, *, qdcount: int = 1, flags: int = 0x0100) -> bytes:
    return struct.pack(">HHHHHH", 0x1234, flags, qdcount, 0, 0, 0) + question


def test_vlan_dns_query_is_one_event() -> None:
    frame = _frame(
        Dot1Q(vlan=7),
        V4,
        UDP(sport=40000, dport=53),
        DNS(rd=1, qd=DNSQR(qname="MX1.Example.COM", qtype="A")),
    )
    status, events = decode_frame(LINKTYPE_ETHERNET, frame, 5)
    assert status == ST_OK
    assert events == [RefEvent(5, "192.0.2.10", "192.0.2.53", KIND_DNS, 53, 1, b"mx1.example.com")]
    assert default_keyword(events[0].name)


def test_syn_rules() -> None:
    syn = _frame(V4, TCP(sport=1025, dport=445, flags="S"))
    assert decode_frame(LINKTYPE_ETHERNET, syn, 0)[0] == ST_OK
    assert decode_frame(LINKTYPE_ETHERNET, _frame(V4, TCP(dport=445, flags="SA")), 0) == (
        ST_IGNORED,
        [],
    )
    assert decode_frame(LINKTYPE_ETHERNET, _frame(V4, TCP(dport=80, flags="S")), 0) == (
        ST_IGNORED,
        [],
    )
    # 14 bytes of TCP header hold the flags: still a SYN event (the IP total length says more).
    assert decode_frame(LINKTYPE_ETHERNET, syn[: 14 + 20 + 14], 0)[0] == ST_OK
    assert decode_frame(LINKTYPE_ETHERNET, syn[: 14 + 20 + 13], 0) == (ST_TRUNCATED, [])
    bad_offset = bytearray(syn)
    bad_offset[14 + 20 + 12] = 0x40
    assert decode_frame(LINKTYPE_ETHERNET, bytes(bad_offset), 0) == (ST_MALFORMED, [])


def test_name_rules() -> None:
    loop = _raw_query(b"\xc0\x0c\x00\x01\x00\x01")
    forward = _raw_query(b"\xc0\x12\x00\x01\x00\x01\x03abc\x00")
    bad_label = _raw_query(b"\x41abc\x00\x00\x01\x00\x01")
    cut = _raw_query(b"\x03abc\x00\x00")
    no_question = _raw_query(b"", qdcount=0)
    expected = [(loop, ST_MALFORMED, 0, b""), (forward, ST_OK, 1, b"abc")]
    expected += [(bad_label, ST_MALFORMED, 0, b""), (cut, ST_TRUNCATED, 0, b"")]
    expected += [(no_question, ST_OK, 0, b"")]
    for payload, status, qtype, name in expected:
        got_status, events = decode_frame(LINKTYPE_ETHERNET, _udp_dns(payload), 0)
        assert (got_status, events[0].qtype, events[0].name) == (status, qtype, name)


def test_name_length_limit() -> None:
    labels_255 = b"".join(b"\x3f" + b"a" * 63 for _ in range(3)) + b"\x3d" + b"b" * 61
    assert len(b".".join([b"a" * 63] * 3 + [b"b" * 61])) == 253
    ok = _raw_query(labels_255 + b"\x00\x00\x01\x00\x01")
    assert decode_frame(LINKTYPE_ETHERNET, _udp_dns(ok), 0)[0] == ST_OK
    too_long = _raw_query(labels_255 + b"\x03ccc\x00\x00\x01\x00\x01")
    assert decode_frame(LINKTYPE_ETHERNET, _udp_dns(too_long), 0)[0] == ST_MALFORMED


def test_udp_length_rules() -> None:
    query = bytes(DNS(rd=1, qd=DNSQR(qname="a.example")))
    assert decode_frame(LINKTYPE_ETHERNET, _udp_dns(query, ulen=8), 0) == (ST_IGNORED, [])
    assert decode_frame(LINKTYPE_ETHERNET, _udp_dns(query, ulen=7), 0) == (ST_MALFORMED, [])
    assert decode_frame(LINKTYPE_ETHERNET, _udp_dns(query, ulen=8 + 11), 0) == (ST_TRUNCATED, [])
    response = bytes(DNS(qr=1, qd=DNSQR(qname="a.example")))
    assert decode_frame(LINKTYPE_ETHERNET, _udp_dns(response), 0) == (ST_IGNORED, [])


def test_dns_over_tcp_walk() -> None:
    def prefixed(name: str, qtype: str = "A") -> bytes:
        msg = bytes(DNS(rd=1, qd=DNSQR(qname=name, qtype=qtype)))
        return struct.pack(">H", len(msg)) + msg

    segment = prefixed("a.example") + prefixed("b.example", "MX") + b"\x00\x05hello"
    frame = _frame(V4, TCP(sport=40000, dport=53, flags="PA"), segment)
    status, events = decode_frame(LINKTYPE_ETHERNET, frame, 0)
    assert status == ST_MALFORMED
    assert [(e.qtype, e.name) for e in events] == [(1, b"a.example"), (15, b"b.example")]


def test_ip_rules() -> None:
    query = UDP(sport=40000, dport=53) / DNS(qd=DNSQR(qname="a.example"))
    fragment = _frame(IP(src="192.0.2.10", dst="192.0.2.53", frag=10), query)
    assert decode_frame(LINKTYPE_ETHERNET, fragment, 0)[0] == ST_FRAGMENT
    first = _frame(IP(src="192.0.2.10", dst="192.0.2.53", flags="MF"), query)
    # a first fragment is held for reassembly too (DECODING.md, "Fragments")
    assert decode_frame(LINKTYPE_ETHERNET, first, 0)[0] == ST_FRAGMENT
    v6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::53") / query)
    status, events = decode_frame(LINKTYPE_RAW, v6, 0)
    assert (status, events[0].src) == (ST_OK, "2001:db8::1")
    assert decode_frame(LINKTYPE_RAW, b"\x50" + v6[1:], 0) == (ST_MALFORMED, [])
    assert decode_frame(147, v6, 0) == (ST_UNSUPPORTED, [])


def test_every_truncation_of_a_query_is_counted_not_raised() -> None:
    frame = _frame(
        Dot1Q(vlan=1), V4, UDP(sport=40000, dport=53), DNS(qd=DNSQR(qname="mail.example"))
    )
    header_end = 18 + 20 + 8 + 12
    # The last 2 bytes are the qclass, which is not needed.
    for cut in range(len(frame) - 2):
        status, events = decode_frame(LINKTYPE_ETHERNET, frame[:cut], 0)
        assert status == ST_TRUNCATED
        assert len(events) == (1 if cut >= header_end else 0)
    for cut in (len(frame) - 2, len(frame)):
        assert decode_frame(LINKTYPE_ETHERNET, frame[:cut], 0)[0] == ST_OK


def test_host_counts() -> None:
    events = [
        RefEvent(10, "192.0.2.1", "192.0.2.53", KIND_DNS, 53, 1, b"smtp.example"),
        RefEvent(20, "192.0.2.1", "192.0.2.53", KIND_DNS, 53, 15, b"example"),
        RefEvent(5, "192.0.2.1", "203.0.113.9", KIND_SYN, 445, 0, b""),
        RefEvent(30, "192.0.2.1", "203.0.113.9", KIND_SYN, 139, 0, b""),
        RefEvent(40, "192.0.2.1", "192.0.2.53", KIND_DNS, 53, 0, b""),
    ]
    counts = host_counts(events, default_keyword)["192.0.2.1"]
    assert counts["queries"] == 3
    assert (counts["A"], counts["MX"], counts["other"], counts["keyword"]) == (1, 1, 1, 1)
    assert (counts["syn139"], counts["syn445"], counts["syn_targets"]) == (1, 1, 1)
    assert (counts["first_seen_us"], counts["last_seen_us"]) == (5, 40)
