"""Tests of the decode stage (wormwatch.decode and its numba kernel) on hand-built frames.

Frames are built with struct (scapy cross-checks a few), one rule of docs/DECODING.md
per test where possible. The comparison with the dpkt reference decoder on real
captures lives with that reference.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from wormwatch.decode import Decoder, warm_up
from wormwatch.dnstcp import TcpFlows
from wormwatch.kernels import decode as kernels
from wormwatch.kernels.prefilter import is_ignored
from wormwatch.model import (
    KIND_DNS,
    KIND_SYN,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    LINKTYPE_RAW_BSD,
    LINKTYPE_RAW_OLD,
    ST_FRAGMENT,
    ST_IGNORED,
    ST_MALFORMED,
    ST_OK,
    ST_TRUNCATED,
    ST_UNSUPPORTED,
    Batch,
    addr_text,
)

from testkit import frames
from testkit.decode_compare import reference_decode
from testkit.frames import (
    DST4,
    DST6,
    SRC4,
    SRC6,
    dns,
    encode_name,
    ether,
    ext,
    frag_header,
    ipv4,
    ipv6,
    pppoe,
    sll,
    sll2,
    tcp,
    tcp_dns,
    udp,
)


def make_batch(packets: list[tuple[int, bytes]], *, filler: int = 0) -> Batch:
    """Packets each followed by 3 ``filler`` bytes that are not part of any packet."""
    ts_us = np.arange(len(packets), dtype=np.int64) * 1000 + 1_700_000_000_000_000
    return frames.make_batch(packets, ts_us=ts_us, gap=bytes((filler,)) * 3)


def decode(
    *packets: tuple[int, bytes], filler: int = 0
) -> tuple[list[dict[str, object]], list[int]]:
    """Decode packets, each judged alone (no fragment pool, every DNS-over-TCP segment
    the first of its flow); -> (events as dicts, statuses)."""
    decoder = Decoder(max_events=64, reassemble=False)
    ev = decoder.decode(make_batch(list(packets), filler=filler))
    rows = [
        {
            "ts_us": int(ev.ts_us[i]),
            "src": addr_text(ev.src_hi[i], ev.src_lo[i]),
            "dst": addr_text(ev.dst_hi[i], ev.dst_lo[i]),
            "kind": int(ev.kind[i]),
            "dport": int(ev.dport[i]),
            "qtype": int(ev.qtype[i]),
            "name": bytes(ev.names[i, : ev.name_lens[i]]),
        }
        for i in range(ev.n)
    ]
    return rows, [int(s) for s in decoder.last_status]


def one(lt: int, frame: bytes) -> tuple[list[dict[str, object]], int]:
    rows, statuses = decode((lt, frame))
    return rows, statuses[0]


def query_event(name: bytes = b"www.example.com", qtype: int = 1, *, v6: bool = False) -> dict:
    return {
        "ts_us": 1_700_000_000_000_000,
        "src": SRC6 if v6 else SRC4,
        "dst": DST6 if v6 else DST4,
        "kind": KIND_DNS,
        "dport": 53,
        "qtype": qtype,
        "name": name,
    }


Q4 = ipv4(udp(dns()))
Q6 = ipv6(udp(dns()))

# --- link layers -------------------------------------------------------------------

LINK_CASES = {
    "ethernet": (LINKTYPE_ETHERNET, ether(Q4), False),
    "ethernet-v6": (LINKTYPE_ETHERNET, ether(Q6, 0x86DD), True),
    "802.1q": (LINKTYPE_ETHERNET, ether(Q4, tags=(0x8100,)), False),
    "qinq-88a8": (LINKTYPE_ETHERNET, ether(Q6, 0x86DD, tags=(0x88A8, 0x8100)), True),
    "qinq-9100": (LINKTYPE_ETHERNET, ether(Q4, tags=(0x9100, 0x8100)), False),
    "8-tags": (LINKTYPE_ETHERNET, ether(Q4, tags=(0x8100,) * 8), False),
    "pppoe-v4": (LINKTYPE_ETHERNET, pppoe(Q4), False),
    "pppoe-v6": (LINKTYPE_ETHERNET, pppoe(Q6, 0x0057), True),
    "sll": (LINKTYPE_LINUX_SLL, sll(Q4), False),
    "sll-v6": (LINKTYPE_LINUX_SLL, sll(Q6, 0x86DD), True),
    "sll-vlan": (LINKTYPE_LINUX_SLL, sll(struct.pack("!HH", 10, 0x0800) + Q4, 0x8100), False),
    "sll2": (LINKTYPE_LINUX_SLL2, sll2(Q4), False),
    "sll2-v6": (LINKTYPE_LINUX_SLL2, sll2(Q6, 0x86DD), True),
    "raw-v4": (LINKTYPE_RAW, Q4, False),
    "raw-v6": (LINKTYPE_RAW, Q6, True),
    "raw12": (LINKTYPE_RAW_OLD, Q4, False),
    "raw14": (LINKTYPE_RAW_BSD, Q6, True),  # OpenBSD's DLT_RAW, as tshark reads it
    "ipv4": (LINKTYPE_IPV4, Q4, False),
    "ipv6": (LINKTYPE_IPV6, Q6, True),
    "null-le": (LINKTYPE_NULL, struct.pack("<I", 2) + Q4, False),
    "null-be": (LINKTYPE_NULL, struct.pack(">I", 2) + Q4, False),
    "null-v6-24": (LINKTYPE_NULL, struct.pack("<I", 24) + Q6, True),
    "null-v6-28": (LINKTYPE_NULL, struct.pack(">I", 28) + Q6, True),
    "null-v6-30": (LINKTYPE_NULL, struct.pack("<I", 30) + Q6, True),
    "null-v6-10": (LINKTYPE_NULL, struct.pack("<I", 10) + Q6, True),
    "loop": (LINKTYPE_LOOP, struct.pack(">I", 2) + Q4, False),
    "loop-v6": (LINKTYPE_LOOP, struct.pack(">I", 24) + Q6, True),
}


@pytest.mark.parametrize("case", LINK_CASES, ids=str)
def test_link_types_give_the_query_event(case: str) -> None:
    linktype, frame, v6 = LINK_CASES[case]
    assert one(linktype, frame) == ([query_event(v6=v6)], ST_OK)


@pytest.mark.parametrize(
    ("linktype", "frame", "status"),
    [
        (LINKTYPE_ETHERNET, ether(Q4, tags=(0x8100,) * 9), ST_MALFORMED),
        (LINKTYPE_ETHERNET, ether(b"\x00" * 28, 0x0806), ST_IGNORED),  # ARP
        (LINKTYPE_ETHERNET, ether(Q4, 0x0050), ST_IGNORED),  # 802.3 length
        (LINKTYPE_ETHERNET, pppoe(Q4, 0xC021), ST_IGNORED),  # LCP
        (LINKTYPE_ETHERNET, ether(Q6, 0x0800), ST_MALFORMED),  # IPv6 under IPv4 type
        (LINKTYPE_LINUX_SLL, sll(Q4, 0x0004), ST_IGNORED),
        (LINKTYPE_RAW, b"\x50" + Q4[1:], ST_MALFORMED),
        (LINKTYPE_IPV4, Q6, ST_MALFORMED),
        (LINKTYPE_IPV6, Q4, ST_MALFORMED),
        (LINKTYPE_NULL, struct.pack("<I", 7) + Q4, ST_IGNORED),
        (LINKTYPE_LOOP, struct.pack("<I", 2) + Q4, ST_IGNORED),  # LOOP is big-endian only
        (105, Q4, ST_UNSUPPORTED),  # 802.11
        (LINKTYPE_ETHERNET, b"", ST_TRUNCATED),
    ],
)
def test_link_layer_problems(linktype: int, frame: bytes, status: int) -> None:
    assert one(linktype, frame) == ([], status)


def test_event_columns_follow_packet_order_and_time() -> None:
    rows, statuses = decode(
        (LINKTYPE_RAW, ipv4(udp(dns(b"a.example")))),
        (LINKTYPE_RAW, ipv4(tcp(dport=445, flags=0x02), 6)),
        (LINKTYPE_RAW, ipv6(tcp(dport=139, flags=0x02), 6)),
        (LINKTYPE_RAW, ipv6(udp(dns(b"b.example", 15)))),
    )
    assert statuses == [ST_OK] * 4
    assert [(r["kind"], r["dport"], r["qtype"], r["name"]) for r in rows] == [
        (KIND_DNS, 53, 1, b"a.example"),
        (KIND_SYN, 445, 0, b""),
        (KIND_SYN, 139, 0, b""),
        (KIND_DNS, 53, 15, b"b.example"),
    ]
    assert [r["ts_us"] for r in rows] == [1_700_000_000_000_000 + 1000 * i for i in range(4)]
    assert rows[2]["src"] == SRC6
    assert rows[2]["dst"] == DST6


# --- IP ----------------------------------------------------------------------------


def test_ipv4_options_are_skipped() -> None:
    assert one(LINKTYPE_RAW, ipv4(udp(dns()), options=b"\x94\x04\x00\x00" * 3)) == (
        [query_event()],
        ST_OK,
    )


def test_ipv4_ah_is_walked_to_the_protocol_it_protects() -> None:
    """IPsec AH in transport mode (Windows domain isolation puts SMB under it): tshark
    4.0 shows the query and the SYN inside; they were ignored. On Ethernet, too: the
    walker's relevance test skipped such frames as ignored before the decoder saw them."""
    ah = bytes((17, 4)) + b"\x00" * 22  # UDP next; (4 + 2) * 4 = 24 bytes
    assert one(LINKTYPE_RAW, ipv4(ah + udp(dns()), 51)) == ([query_event()], ST_OK)
    syn = bytes((6, 4)) + b"\x00" * 22 + tcp(dport=445, flags=0x02)
    rows, status = one(LINKTYPE_ETHERNET, ether(ipv4(syn, 51)))
    assert ([r["kind"] for r in rows], status) == ([KIND_SYN], ST_OK)
    for cut in (1, 20):
        assert one(LINKTYPE_RAW, ipv4(ah[:cut], 51)) == ([], ST_TRUNCATED)
        assert reference_decode(LINKTYPE_RAW, ipv4(ah[:cut], 51)) == (ST_TRUNCATED, [])
    assert reference_decode(LINKTYPE_RAW, ipv4(ah + udp(dns()), 51))[0] == ST_OK
    frame = ether(ipv4(ah + udp(dns()), 51))
    skipped = is_ignored(np.frombuffer(frame, np.uint8), 0, len(frame), LINKTYPE_ETHERNET)
    assert not skipped


@pytest.mark.parametrize(
    ("frame", "status"),
    [
        (ipv4(udp(dns()), ihl=4), ST_MALFORMED),
        (ipv4(udp(dns()), total_len=19), ST_MALFORMED),
        (ipv4(udp(dns()), frag=0x2000 | 5), ST_FRAGMENT),  # MF + offset 5
        (ipv4(udp(dns()), frag=1), ST_FRAGMENT),  # last fragment
        (ipv4(b"\x08\x00" + b"\x00" * 6, 1), ST_IGNORED),  # ICMP
        (ipv4(b"", ihl=15, total_len=60), ST_TRUNCATED),  # options run past the capture
    ],
)
def test_ipv4_rules(frame: bytes, status: int) -> None:
    assert one(LINKTYPE_RAW, frame) == ([], status)


def test_a_lone_first_ipv4_fragment_is_held_for_reassembly() -> None:
    assert one(LINKTYPE_RAW, ipv4(udp(dns()), frag=0x2000)) == ([], ST_FRAGMENT)


def test_ipv6_extension_headers_are_walked() -> None:
    # offset 0 with M clear is an atomic fragment (RFC 6946): decoded as it is
    chain = ext(60, 16) + ext(44, 8) + frag_header(17, 0) + udp(dns())
    assert one(LINKTYPE_RAW, ipv6(chain, 0)) == ([query_event(v6=True)], ST_OK)
    first = ext(60, 16) + ext(44, 8) + frag_header(17, 0, more=True) + udp(dns())
    assert one(LINKTYPE_RAW, ipv6(first, 0)) == ([], ST_FRAGMENT)


def test_ipv6_routing_mobility_and_ah() -> None:
    ah = bytes((135, 4)) + b"\x00" * 22  # (4 + 2) * 4 = 24 bytes
    mobility = bytes((17, 0)) + b"\x00" * 6
    chain = ext(51, 8) + ah + mobility + udp(dns())
    assert one(LINKTYPE_RAW, ipv6(chain, 43)) == ([query_event(v6=True)], ST_OK)


def test_ipv6_matches_scapy() -> None:
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop

    pkt = (
        IPv6(src=SRC6, dst=DST6)
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrFragment(offset=0, m=0)
        / UDP(sport=5353, dport=53)
        / DNS(rd=1, qd=DNSQR(qname="Mail.Example.ORG", qtype="MX"))
    )
    assert one(LINKTYPE_RAW, bytes(pkt)) == ([query_event(b"mail.example.org", 15, v6=True)], ST_OK)


@pytest.mark.parametrize(
    ("payload", "nh", "status"),
    [
        (ext(44, 8) + frag_header(17, 1) + udp(dns()), 0, ST_FRAGMENT),
        (frag_header(17, 185, more=True) + udp(dns()), 44, ST_FRAGMENT),
        (ext(59, 8) + udp(dns()), 60, ST_IGNORED),  # no next header
        (b"\x80\x00" + b"\x00" * 6, 58, ST_IGNORED),  # ICMPv6
        (b"".join(ext(60, 8) for _ in range(16)) + ext(17, 8) + udp(dns()), 60, ST_MALFORMED),
        (ext(17, 64)[:30], 0, ST_TRUNCATED),
    ],
)
def test_ipv6_rules(payload: bytes, nh: int, status: int) -> None:
    assert one(LINKTYPE_RAW, ipv6(payload, nh)) == ([], status)


def test_a_chain_cut_before_its_17th_header_is_truncated_not_malformed() -> None:
    """The walk meets the cut (inside the 16th header) before it could count a 17th, as a
    dissector does; the whole chain is malformed, and the reference agrees at every cut."""
    chain = b"".join(ext(60, 8) for _ in range(16)) + ext(17, 8) + udp(dns())
    frame = ipv6(chain, 60)
    start_16th = 40 + 15 * 8
    for cut in range(start_16th, start_16th + 8):
        assert one(LINKTYPE_RAW, frame[:cut]) == ([], ST_TRUNCATED), cut
        assert reference_decode(LINKTYPE_RAW, frame[:cut]) == (ST_TRUNCATED, []), cut
    assert one(LINKTYPE_RAW, frame) == ([], ST_MALFORMED)
    assert reference_decode(LINKTYPE_RAW, frame) == (ST_MALFORMED, [])


def test_sixteen_extension_headers_are_allowed() -> None:
    chain = b"".join(ext(60, 8) for _ in range(15)) + ext(17, 8) + udp(dns())
    assert one(LINKTYPE_RAW, ipv6(chain, 60)) == ([query_event(v6=True)], ST_OK)


def test_ipv6_jumbo_payload_length_zero_reads_to_capture_end() -> None:
    assert one(LINKTYPE_RAW, ipv6(udp(dns()), plen=0)) == ([query_event(v6=True)], ST_OK)


# --- UDP -----------------------------------------------------------------------------


def test_ethernet_padding_is_not_dns_payload() -> None:
    # IP total length ends 10 bytes into the DNS header; the padding completes it
    message = dns()
    short = ipv4(udp(message), total_len=20 + 8 + 10) + b"\x00" * 6
    assert one(LINKTYPE_ETHERNET, ether(short)) == ([], ST_TRUNCATED)
    # a UDP datagram with no payload, padded to the Ethernet minimum
    empty = ipv4(udp(b"")) + dns()[:18]
    assert one(LINKTYPE_ETHERNET, ether(empty)) == ([], ST_IGNORED)


def test_udp_length_8_is_no_query_whatever_follows() -> None:
    # tcpdump's dns-zlip-1: UDP length 8, a whole DNS query after it
    assert one(LINKTYPE_RAW, ipv4(udp(dns(), length=8))) == ([], ST_IGNORED)


@pytest.mark.parametrize(
    ("frame", "status"),
    [
        (ipv4(udp(dns(), length=7)), ST_MALFORMED),
        (ipv4(udp(dns(), dport=5353)), ST_IGNORED),
        (ipv4(udp(dns()[:11])), ST_TRUNCATED),
        (ipv4(udp(dns(), length=8 + 11)), ST_TRUNCATED),
    ],
)
def test_udp_rules(frame: bytes, status: int) -> None:
    assert one(LINKTYPE_RAW, frame) == ([], status)


# --- TCP -----------------------------------------------------------------------------


@pytest.mark.parametrize("port", [135, 139, 445])
def test_syn_to_windows_ports_is_an_event(port: int) -> None:
    rows, status = one(LINKTYPE_ETHERNET, ether(ipv4(tcp(dport=port, flags=0x02), 6)))
    assert status == ST_OK
    assert [(r["kind"], r["dport"], r["src"], r["dst"]) for r in rows] == [
        (KIND_SYN, port, SRC4, DST4)
    ]


def test_syn_needs_only_14_tcp_bytes() -> None:
    frame = ipv4(tcp(dport=445, flags=0x02)[:14], 6, total_len=40)
    assert one(LINKTYPE_RAW, frame)[1] == ST_OK
    assert one(LINKTYPE_RAW, ipv4(tcp(dport=445, flags=0x02)[:13], 6, total_len=40)) == (
        [],
        ST_TRUNCATED,
    )


@pytest.mark.parametrize(
    ("segment", "status"),
    [
        (tcp(dport=445, flags=0x12), ST_IGNORED),  # SYN+ACK
        (tcp(dport=80, flags=0x02), ST_IGNORED),
        (tcp(dport=445, flags=0x10), ST_IGNORED),  # plain ACK
        (tcp(dport=445, flags=0x02, doff=4), ST_MALFORMED),
        (tcp(dport=53, flags=0x02), ST_IGNORED),  # no payload
        (tcp(dport=80)[:16], ST_IGNORED),  # not port 53: no more header is needed
        (tcp(dport=53)[:16], ST_TRUNCATED),
        (tcp(dns(), dport=53, doff=15)[:30], ST_TRUNCATED),  # options cut
    ],
    ids=[
        "syn-ack",
        "syn-80",
        "ack-445",
        "doff-4",
        "syn-53",
        "16-bytes-80",
        "16-bytes-53",
        "options-cut",
    ],
)
def test_tcp_rules(segment: bytes, status: int) -> None:
    assert one(LINKTYPE_RAW, ipv4(segment, 6)) == ([], status)


def test_dns_over_tcp_three_messages_in_one_segment() -> None:
    segment = tcp(tcp_dns(dns(b"a.example"), dns(b"b.example", 28), dns(b"c.example", 15)))
    rows, status = one(LINKTYPE_RAW, ipv6(segment, 6))
    assert status == ST_OK
    assert [(r["name"], r["qtype"], r["dst"]) for r in rows] == [
        (b"a.example", 1, DST6),
        (b"b.example", 28, DST6),
        (b"c.example", 15, DST6),
    ]


def stream(*segments: tuple[int, bytes], sport: int = 44444) -> list[tuple[int, bytes]]:
    """IPv4 TCP segments of one flow to port 53, each ``(seq, payload)``."""
    return [(LINKTYPE_RAW, ipv4(tcp(p, sport=sport, seq=seq), 6)) for seq, p in segments]


def flow_decode(*packets: tuple[int, bytes]) -> tuple[list[dict[str, object]], list[int]]:
    """Decode packets in order through one decoder (the DNS-over-TCP flow table kept)."""
    decoder = Decoder(max_events=64)
    ev = decoder.decode(make_batch(list(packets)))
    names = [bytes(ev.names[i, : ev.name_lens[i]]) for i in range(ev.n)]
    rows = [{"name": n, "ts_us": int(t)} for n, t in zip(names, ev.ts_us[: ev.n], strict=True)]
    return rows, [int(x) for x in decoder.last_status]


BIG = tcp_dns(dns(b"mx." + b"x" * 50 + b".example.net", 15) + b"\x00" * 40)


@pytest.mark.parametrize("cut", [1, 2, 8, 14, 30, len(BIG) - 1], ids=lambda c: f"at-{c}")
def test_dns_over_tcp_message_split_across_segments_counts_once(cut: int) -> None:
    rows, statuses = flow_decode(*stream((1, BIG[:cut]), (1 + cut, BIG[cut:])))
    # counted once, at the segment that completes it (as tshark counts it)
    assert [r["name"] for r in rows] == [b"mx." + b"x" * 50 + b".example.net"]
    assert statuses == [ST_IGNORED, ST_OK]
    assert rows[0]["ts_us"] == make_batch(stream((1, b""), (1, b""))).ts_us[1]


def test_dns_over_tcp_continuation_is_not_read_as_a_message() -> None:
    # issue 13: a long message in 20-byte segments; the garbage of its middle
    # ("i;i;i;...") must not become queries
    huge = tcp_dns(dns(b"i;" * 20 + b"." + b"z" * 60 + b".example"))
    parts = [(1 + i, huge[i : i + 20]) for i in range(0, len(huge), 20)]
    rows, statuses = flow_decode(*stream(*parts))
    assert [r["name"] for r in rows] == [b"i;" * 20 + b"." + b"z" * 60 + b".example"]
    assert statuses == [ST_IGNORED] * (len(parts) - 1) + [ST_OK]
    # judged alone, each segment is the first of its flow (the per-frame rule)
    assert decode(*stream(*parts[2:3]))[1] == [ST_IGNORED]


def test_dns_over_tcp_retransmission_and_gap() -> None:
    two = tcp_dns(dns(b"a.example"), dns(b"b.example"))
    big = tcp_dns(dns(b"c" * 40 + b".example"))
    after = 1 + len(two)
    rows, statuses = flow_decode(
        *stream(
            (1, two),  # two queries
            (1, two),  # a retransmission: read already
            (1, two + big[:10]),  # overlap: only the new bytes are read
            (after + 30, tcp_dns(dns(b"d.example"))),  # a gap: big cannot complete
        )
    )
    assert [r["name"] for r in rows] == [b"a.example", b"b.example", b"d.example"]
    assert statuses == [ST_OK, ST_IGNORED, ST_IGNORED, ST_OK]


def test_dns_over_tcp_flows_are_apart_and_bounded() -> None:
    big = tcp_dns(dns(b"mail.example"))
    a = stream((1, big[:9]), sport=1000)
    b = stream((5, big[:9]), sport=2000)
    rest_a = stream((10, big[9:]), sport=1000)
    rest_b = stream((14, big[9:]), sport=2000)
    rows, statuses = flow_decode(*a, *b, *rest_b, *rest_a)
    assert [r["name"] for r in rows] == [b"mail.example"] * 2
    assert statuses == [ST_IGNORED, ST_IGNORED, ST_OK, ST_OK]
    # a table of one flow forgets the first when the second arrives: the rest of the
    # first is read afresh (its bytes make no query)
    decoder = Decoder(max_events=64)
    decoder._tcp = TcpFlows(max_flows=1)
    ev = decoder.decode(make_batch([*a, *b, *rest_b, *rest_a]))
    assert ev.n == 1
    # an idle flow is forgotten after the timeout (packet time)
    decoder = Decoder(max_events=64)
    decoder._tcp = TcpFlows(timeout_s=0.0005)
    ev = decoder.decode(make_batch([*a, *rest_a]))  # 1 ms apart
    assert ev.n == 0


@pytest.mark.parametrize(
    ("payload", "n_events", "status"),
    [
        (tcp_dns(dns(), b"\x00" * 11), 1, ST_MALFORMED),  # L < 12 stops the walk
        (tcp_dns(dns(), dns(flags=0x8180), dns()), 2, ST_OK),  # a response in between
        # a bad name in the middle message counts, and the walk goes on
        (tcp_dns(dns(b"a.b"), dns(question=b"\x41"), dns()), 3, ST_MALFORMED),
        # the first byte of a length prefix: the rest comes in the next segment
        (tcp_dns(dns()) + b"\x00", 1, ST_OK),
        (tcp_dns(*[dns()] * 70), 70, ST_OK),  # every message of a segment counts
    ],
    ids=["short-length", "response-between", "bad-name-between", "cut-prefix", "many"],
)
def test_dns_over_tcp_walk(payload: bytes, n_events: int, status: int) -> None:
    rows, got = one(LINKTYPE_RAW, ipv4(tcp(payload), 6))
    assert (len(rows), got) == (n_events, status)


# --- DNS names -------------------------------------------------------------------------


def q(message: bytes) -> tuple[list[dict[str, object]], int]:
    return one(LINKTYPE_RAW, ipv4(udp(message)))


def test_name_is_lower_cased_other_bytes_kept() -> None:
    question = encode_name(b"MiXeD.Ex\xc3\x84mple.COM") + b"\x00\x1c\x00\x01"
    assert q(dns(question=question)) == ([query_event(b"mixed.ex\xc3\x84mple.com", 28)], ST_OK)


def test_compression_pointer_is_followed() -> None:
    # "www" + pointer to "example.com" stored after the question; qtype after the pointer
    target = 12 + 4 + 2 + 4
    question = b"\x03www" + struct.pack("!H", 0xC000 | target) + b"\x00\x0f\x00\x01"
    assert q(dns(question=question + encode_name(b"Example.com"))) == (
        [query_event(b"www.example.com", 15)],
        ST_OK,
    )


def test_pointer_into_the_header_is_read_as_labels() -> None:
    # offset 5 is QDCOUNT's low byte (1), then ANCOUNT (0, 0): the name "\x00"
    question = b"\xc0\x05\x00\x01\x00\x01"
    assert q(dns(question=question)) == ([query_event(b"\x00", 1)], ST_OK)


@pytest.mark.parametrize(
    ("question", "status"),
    [
        (b"\xc0\x0c\x00\x01\x00\x01", ST_MALFORMED),  # points at itself
        (b"\x01a\xc0\x0e\x00\x01", ST_MALFORMED),  # a -> pointer to a loop
        (b"\x41abc\x00\x00\x01\x00\x01", ST_MALFORMED),  # label type 01
        (b"\x81abc\x00\x00\x01\x00\x01", ST_MALFORMED),  # label type 10
        (b"\x03www\x07exam", ST_TRUNCATED),
        (b"\x03www\x00\x00", ST_TRUNCATED),  # qtype cut
        (b"\x03www\xc0", ST_TRUNCATED),  # pointer cut
        (b"\x03www\xc0\xff\x00\x01", ST_TRUNCATED),  # pointer past the message
    ],
)
def test_bad_names_still_count_as_queries(question: bytes, status: int) -> None:
    assert q(dns(question=question)) == ([query_event(b"", 0)], status)


def test_name_length_limit_is_255() -> None:
    longest = b".".join([b"a" * 63] * 4)
    assert len(longest) == 255
    assert q(dns(longest)) == ([query_event(longest)], ST_OK)
    too_long = b".".join([b"a" * 63] * 3 + [b"b" * 62, b"c"])
    assert len(too_long) == 256
    assert q(dns(too_long)) == ([query_event(b"", 0)], ST_MALFORMED)


def chained_pointers(n_jumps: int) -> bytes:
    """A question whose name is ``n_jumps`` pointers, each to the next, then the root."""
    first = 12 + 2 + 4  # the chain starts after the first pointer, qtype and qclass
    chain = b"".join(struct.pack("!H", 0xC000 | first + 2 * (i + 1)) for i in range(n_jumps - 1))
    return struct.pack("!H", 0xC000 | first) + b"\x00\x01\x00\x01" + chain + b"\x00"


def test_128_pointer_jumps_are_allowed() -> None:
    assert q(dns(question=chained_pointers(128))) == ([query_event(b"", 1)], ST_OK)
    assert q(dns(question=chained_pointers(129))) == ([query_event(b"", 0)], ST_MALFORMED)


def test_root_name_and_empty_question_section() -> None:
    assert q(dns(b"", 2)) == ([query_event(b"", 2)], ST_OK)
    assert q(dns(qdcount=0, question=b"")) == ([query_event(b"", 0)], ST_OK)


@pytest.mark.parametrize(
    "flags",
    [0x8180, 0x8000, 0x2800, 0x1000, 0x7800],  # responses, UPDATE, STATUS, opcode 15
)
def test_responses_and_other_opcodes_are_ignored(flags: int) -> None:
    assert q(dns(flags=flags)) == ([], ST_IGNORED)


# --- cut and hostile frames --------------------------------------------------------------

CUT_FRAMES = {
    **{name: (lt, frame) for name, (lt, frame, _) in LINK_CASES.items()},
    "syn-445": (LINKTYPE_ETHERNET, ether(ipv4(tcp(dport=445, flags=0x02), 6))),
    "syn-v6-vlan": (
        LINKTYPE_ETHERNET,
        ether(ipv6(tcp(dport=139, flags=0x02), 6), 0x86DD, (0x8100,)),
    ),
    "tcp-3-messages": (
        LINKTYPE_ETHERNET,
        ether(ipv4(tcp(tcp_dns(dns(b"a.x"), dns(b"b.x"), dns(b"c.x")), doff=8), 6)),
    ),
    "v6-ext-chain": (
        LINKTYPE_RAW,
        ipv6(ext(60, 16) + ext(44, 8) + frag_header(17, 0) + udp(dns()), 0),
    ),
    "v4-options": (LINKTYPE_RAW, ipv4(udp(dns(b"A.B")), options=b"\x01" * 8)),
    "pointer": (
        LINKTYPE_RAW,
        ipv4(udp(dns(question=b"\x01a\xc0\x14\x00\x01\x00\x01" + encode_name(b"ex.org")))),
    ),
}
IRRELEVANT_FRAMES = {
    "syn-80": (LINKTYPE_ETHERNET, ether(ipv4(tcp(dport=80, flags=0x02), 6))),
    "response": (
        LINKTYPE_LINUX_SLL2,
        sll2(ipv4(udp(dns(flags=0x8180)))),
    ),
}


def cuts(packets: dict[str, tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    return [(lt, frame[:cut]) for lt, frame in packets.values() for cut in range(len(frame))]


def test_cut_relevant_frames_are_truncated_or_lose_nothing() -> None:
    for name, (lt, frame) in CUT_FRAMES.items():
        full_rows, full_status = one(lt, frame)
        assert full_status == ST_OK, name
        is_tcp_dns = name == "tcp-3-messages"
        ok_cuts = []
        for cut in range(len(frame)):
            rows, status = one(lt, frame[:cut])
            if status == ST_OK:
                # only bytes that are not needed went (qclass, the TCP header after the
                # flags of a SYN), or whole DNS-over-TCP messages at the end of a segment
                assert rows == (full_rows[: len(rows)] if is_tcp_dns else full_rows), (name, cut)
                ok_cuts.append(cut)
            elif status == ST_IGNORED:
                # the capture ends right after the TCP header: an empty payload
                assert is_tcp_dns, (name, cut)
            else:
                assert status == ST_TRUNCATED, (name, cut, status)
        if not is_tcp_dns:
            assert ok_cuts == list(range(len(frame) - len(ok_cuts), len(frame))), name


def test_exact_status_at_chosen_cut_points() -> None:
    frame = ether(ipv4(tcp(tcp_dns(dns(b"a.x"), dns(b"b.x"), dns(b"c.x"))), 6))
    n_message = 2 + len(dns(b"a.x"))
    payload = 14 + 20 + 20
    rows, statuses = decode(
        (LINKTYPE_ETHERNET, frame[:13]),  # inside the Ethernet header
        (LINKTYPE_ETHERNET, frame[:33]),  # inside the IPv4 header
        (LINKTYPE_ETHERNET, frame[: payload - 1]),  # inside the TCP header
        (LINKTYPE_ETHERNET, frame[:payload]),  # TCP header only: the payload cut off
        (LINKTYPE_ETHERNET, frame[: payload + 2 + 11]),  # first DNS header cut
        (LINKTYPE_ETHERNET, frame[: payload + 2 + 12]),  # first header whole, name cut
        (LINKTYPE_ETHERNET, frame[: payload + n_message]),  # cut between messages
        (LINKTYPE_ETHERNET, frame[: payload + n_message + 1]),  # cut in a length prefix
        (LINKTYPE_ETHERNET, frame[:-2]),  # only the last qclass cut off
    )
    # DECODING.md: the payload is what was captured, and only a non-empty one is looked
    # at, so a cut right after the TCP header is ignored and a cut between messages ok
    assert statuses == [ST_TRUNCATED] * 3 + [ST_IGNORED] + [ST_TRUNCATED] * 2 + [
        ST_OK,
        ST_TRUNCATED,
        ST_OK,
    ]
    assert [row["name"] for row in rows] == [b"", b"a.x", b"a.x", b"a.x", b"b.x", b"c.x"]
    syn80 = ether(ipv4(tcp(dport=80, flags=0x02), 6))
    tcp_at = 14 + 20
    _, statuses = decode(
        (LINKTYPE_ETHERNET, syn80[: tcp_at + 13]),  # flags cut: truncated
        (LINKTYPE_ETHERNET, syn80[: tcp_at + 14]),  # flags there, port 80: ignored
        (LINKTYPE_ETHERNET, syn80),
    )
    assert statuses == [ST_TRUNCATED, ST_IGNORED, ST_IGNORED]


def test_cut_irrelevant_frames_are_truncated_or_ignored() -> None:
    for lt, frame in IRRELEVANT_FRAMES.values():
        rows, statuses = decode(*[(lt, frame[:cut]) for cut in range(len(frame) + 1)])
        assert rows == []
        assert set(statuses) <= {ST_TRUNCATED, ST_IGNORED}


def test_no_byte_past_the_capture_is_read() -> None:
    # the same cut frames followed by 0x00 or 0xff filler must decode the same
    packets = cuts(CUT_FRAMES) + cuts(IRRELEVANT_FRAMES)
    assert decode(*packets, filler=0x00) == decode(*packets, filler=0xFF)


ALL_LINKTYPES = (
    LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW_OLD, LINKTYPE_RAW_BSD, LINKTYPE_RAW,
    LINKTYPE_LOOP, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2, 147,
)  # fmt: skip


@pytest.mark.parametrize("linktype", ALL_LINKTYPES)
def test_random_and_mutated_bytes_never_crash(linktype: int) -> None:
    rng = np.random.default_rng(linktype)
    packets = [(linktype, rng.bytes(int(rng.integers(0, 120)))) for _ in range(500)]
    for lt, frame in CUT_FRAMES.values():
        for _ in range(20):
            mutated = bytearray(frame)
            for pos in rng.integers(0, len(frame), 3):
                mutated[pos] = int(rng.integers(0, 256))
            packets.append((linktype if rng.random() < 0.3 else lt, bytes(mutated)))
    zero_fill = decode(*packets, filler=0x00)
    assert zero_fill == decode(*packets, filler=0xFF)
    assert len(zero_fill[1]) == len(packets)


# --- the wrapper ---------------------------------------------------------------------------


def test_more_events_than_max_events_are_all_returned() -> None:
    payload = tcp_dns(dns(b"a.x"), dns(b"b.x"), dns(b"c.x"))
    packets = [(LINKTYPE_RAW, ipv4(udp(dns(b"n%d.x" % i)))) for i in range(150)]
    # 40 TCP connections (a segment resent on one connection would count once)
    packets += [(LINKTYPE_RAW, ipv4(tcp(payload, sport=1000 + i), 6)) for i in range(40)]
    packets += [(LINKTYPE_RAW, ipv4(udp(dns(b"last.x"))))]
    decoder = Decoder(max_events=64)
    batch = make_batch(packets)
    ev = decoder.decode(batch)
    assert ev.n == 150 + 120 + 1
    names = [bytes(ev.names[i, : ev.name_lens[i]]) for i in range(ev.n)]
    assert names == [b"n%d.x" % i for i in range(150)] + [b"a.x", b"b.x", b"c.x"] * 40 + [b"last.x"]
    assert list(ev.ts_us[: ev.n]) == list(np.repeat(batch.ts_us, [1] * 150 + [3] * 40 + [1]))
    assert decoder.stats.dns_queries == ev.n
    # the grown buffers are reused for the next batch
    assert decoder.decode(make_batch(packets[:2])).n == 2


def test_stats_add_up_over_batches() -> None:
    decoder = Decoder()
    packets = [
        (LINKTYPE_RAW, ipv4(udp(dns()))),
        (LINKTYPE_RAW, ipv4(tcp(dport=445, flags=0x02), 6)),
        (LINKTYPE_RAW, ipv4(udp(dns(flags=0x8180)))),
        (LINKTYPE_RAW, ipv4(udp(dns()))[:30]),
        (LINKTYPE_RAW, ipv4(udp(dns()), ihl=3)),
        (200, b"x"),
        (LINKTYPE_RAW, ipv4(udp(dns()), frag=9)),
    ]
    decoder.decode(make_batch(packets))
    assert list(decoder.last_status) == [0, 0, 1, 2, 3, 4, 5]
    decoder.decode(make_batch(packets[:2]))
    assert list(decoder.last_status) == [ST_OK, ST_OK]
    stats = decoder.stats.as_dict()
    assert stats == {
        "packets": 9,
        "bytes": sum(len(f) for _, f in packets) + sum(len(f) for _, f in packets[:2]),
        "ok": 4,
        "ignored": 1,
        "truncated": 1,
        "malformed": 1,
        "unsupported": 1,
        "fragment": 1,
        "dns_queries": 2,
        "syns": 2,
        "dns_answers": 0,
        "frag_reassembled": 0,
        "frag_timed_out": 0,
        "frag_evicted": 0,
        "frag_overlapping": 0,
        "frag_bad": 0,
        "frag_pending": 1,
    }


def test_empty_batch() -> None:
    decoder = Decoder()
    assert decoder.decode(Batch.empty()).n == 0
    assert decoder.last_status.shape == (0,)
    assert decoder.stats.packets == 0


def test_writable_and_read_only_batches_share_one_compiled_kernel() -> None:
    batch = make_batch([(LINKTYPE_RAW, Q4)])
    writable = Batch(
        batch.data.copy(), batch.ts_us.copy(), batch.offsets.copy(),
        batch.caplens.astype(np.int64), batch.wirelens.copy(), batch.linktypes.astype(np.uint8),
    )  # fmt: skip
    assert Decoder().decode(writable).n == 1
    warm_up()
    assert len(kernels.decode_packets.signatures) == 1


def test_every_kernel_compiled_exactly_one_signature() -> None:
    """Runs last: after all the tests above, no stray dtype compiled a second version."""
    from numba.core.registry import CPUDispatcher

    dispatchers = {
        name: obj for name, obj in vars(kernels).items() if isinstance(obj, CPUDispatcher)
    }
    # the private helpers are not called from Python: inlined, or (the small ones)
    # compiled for each caller's array types and inlined by LLVM
    kernel_names = {name for name in dispatchers if not name.startswith("_")}
    assert kernel_names == {"decode_packets"}
    assert len(dispatchers["decode_packets"].signatures) == 1


@pytest.mark.parametrize(
    ("offset", "caplen"),
    [(0, 65), (-1, 5), (2, -1), (62, 3)],
)
def test_a_packet_outside_the_buffer_is_refused(offset: int, caplen: int) -> None:
    batch = make_batch([(LINKTYPE_RAW, Q4)])  # 61 bytes + 3 filler
    batch.offsets[0] = offset
    batch.caplens[0] = caplen
    with pytest.raises(ValueError, match="outside"):
        Decoder().decode(batch)


def test_batch_arrays_of_different_lengths_are_refused() -> None:
    batch = make_batch([(LINKTYPE_RAW, Q4)] * 2)
    batch.linktypes = batch.linktypes[:1]
    with pytest.raises(ValueError, match="length"):
        Decoder().decode(batch)
