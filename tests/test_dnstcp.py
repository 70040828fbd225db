"""DNS over TCP (wormwatch.dnstcp and its kernel), the answers: the server's stream (from
port 53) is followed like the client's.

Crafted streams (an answer whole, several in one segment, one split at every byte,
retransmitted, after a gap, in IPv4 and IPv6, a query and its answers on one
connection) go through the real decoder, in one batch and one packet per batch, and
through the dpkt reference (``testkit/reference.py`` with its flow table): the same
status per packet and the same events (kind, addresses, ports, qtype, name, RCODE) at
the same packets. The counts per client on the real captures, against tshark's, are
in tests/test_answers.py.
"""

from __future__ import annotations

import itertools
import random

import pytest

from wormwatch.decode import Decoder
from wormwatch.dnstcp import TcpFlows
from wormwatch.model import (
    KIND_ANSWER,
    KIND_DNS,
    LINKTYPE_RAW,
    RCODE_NXDOMAIN,
    ST_IGNORED,
    ST_OK,
    addr_text,
)

from testkit.frames import DST4, DST6, SRC4, SRC6, dns, ipv4, ipv6, make_batch, tcp, tcp_dns
from testkit.reference import RefDecoder
from testkit.reference_dnstcp import RefTcpFlows

IP_PROTO_TCP = 6
CLIENT_PORT = 41000
QUERY_FLAGS = 0x0100  # RD
NOERROR_FLAGS = 0x8180  # QR, RD, RA
NX_FLAGS = NOERROR_FLAGS | RCODE_NXDOMAIN

Packet = tuple[int, bytes]
# per packet: (status, [(kind, src, dst, dport, qtype, name, rcode)])
Decoded = list[tuple[int, list[tuple[int, str, str, int, int, bytes, int]]]]


def answer(name: bytes, *, flags: int = NOERROR_FLAGS, qtype: int = 1) -> bytes:
    return dns(name, qtype, flags=flags)


def from_server(*segments: tuple[int, bytes], v6: bool = False) -> list[Packet]:
    """Segments ``(seq, payload)`` the server (port 53) sends the client."""
    ip = ipv6 if v6 else ipv4
    server, client = (DST6, SRC6) if v6 else (DST4, SRC4)
    return [
        (
            LINKTYPE_RAW,
            ip(tcp(p, sport=53, dport=CLIENT_PORT, seq=seq), IP_PROTO_TCP, src=server, dst=client),
        )
        for seq, p in segments
    ]


def to_server(*segments: tuple[int, bytes]) -> list[Packet]:
    """Segments ``(seq, payload)`` the client sends the server (port 53)."""
    return [
        (LINKTYPE_RAW, ipv4(tcp(p, sport=CLIENT_PORT, dport=53, seq=seq), IP_PROTO_TCP))
        for seq, p in segments
    ]


def in_order(stream: bytes, cuts: list[int], seq0: int = 1) -> list[tuple[int, bytes]]:
    """``stream`` cut at ``cuts`` into consecutive ``(seq, payload)`` segments."""
    bounds = [0, *cuts, len(stream)]
    return [(seq0 + a, stream[a:b]) for a, b in itertools.pairwise(bounds) if b > a]


def kernel(packets: list[Packet], *, per_packet: bool = False) -> Decoded:
    """The real decoder, flow table kept: all packets in one batch, or one per batch."""
    decoder = Decoder(max_events=64)
    batches = [[p] for p in packets] if per_packet else [packets]
    out: Decoded = []
    for i, chunk in enumerate(batches):
        ev = decoder.decode(make_batch(chunk, ts_us=[i + k for k in range(len(chunk))]))
        rows: Decoded = [(int(s), []) for s in decoder.last_status]
        for j in range(ev.n):
            row = (
                int(ev.kind[j]),
                addr_text(int(ev.src_hi[j]), int(ev.src_lo[j])),
                addr_text(int(ev.dst_hi[j]), int(ev.dst_lo[j])),
                int(ev.dport[j]),
                int(ev.qtype[j]),
                bytes(ev.names[j, : ev.name_lens[j]]),
                int(ev.rcode[j]),
            )
            rows[int(ev.ts_us[j]) - i][1].append(row)
        out += rows
    return out


def reference(packets: list[Packet]) -> Decoded:
    ref = RefDecoder()
    out: Decoded = []
    for ts_us, (linktype, frame) in enumerate(packets):
        status, events = ref.decode(linktype, frame, ts_us)
        rows = [(e.kind, e.src, e.dst, e.dport, e.qtype, e.name, e.rcode) for e in events]
        out.append((status, rows))
    return out


def both(packets: list[Packet]) -> Decoded:
    """The kernel's reading, after checking it equals the reference's, batched or not."""
    got = kernel(packets)
    assert got == reference(packets)
    assert kernel(packets, per_packet=True) == got
    return got


def test_an_answer_counts_for_the_client_it_is_sent_to() -> None:
    got = both(from_server((1, tcp_dns(answer(b"www.example.com")))))
    assert got == [(ST_OK, [(KIND_ANSWER, DST4, SRC4, CLIENT_PORT, 1, b"www.example.com", 0)])]


def test_answers_coalesced_in_one_segment_each_count() -> None:
    three = tcp_dns(
        answer(b"qzkvhwe.example", flags=NX_FLAGS),
        answer(b"www.example.com", qtype=28),
        answer(b"xjrtpfl.example", flags=NX_FLAGS),
    )
    got = both(from_server((1, three), v6=True))
    assert got == [
        (
            ST_OK,
            [
                (KIND_ANSWER, DST6, SRC6, CLIENT_PORT, 1, b"qzkvhwe.example", RCODE_NXDOMAIN),
                (KIND_ANSWER, DST6, SRC6, CLIENT_PORT, 28, b"www.example.com", 0),
                (KIND_ANSWER, DST6, SRC6, CLIENT_PORT, 1, b"xjrtpfl.example", RCODE_NXDOMAIN),
            ],
        )
    ]


NX = tcp_dns(answer(b"bmwqzrtk." + b"k" * 30 + b".example", flags=NX_FLAGS) + b"\x00" * 20)


@pytest.mark.parametrize("cut", range(1, len(NX)), ids=lambda c: f"at-{c}")
def test_an_answer_split_anywhere_counts_once_where_it_completes(cut: int) -> None:
    got = both(from_server(*in_order(NX, [cut])))
    assert got[0] == (ST_IGNORED, [])
    assert [(e[0], e[5], e[6]) for e in got[1][1]] == [
        (KIND_ANSWER, b"bmwqzrtk." + b"k" * 30 + b".example", RCODE_NXDOMAIN)
    ]


def test_a_stream_of_answers_in_small_segments() -> None:
    names = [b"a%d.example" % i for i in range(5)]
    stream = tcp_dns(*(answer(n, flags=NX_FLAGS if i % 2 else NOERROR_FLAGS) for i, n in
                       enumerate(names)))  # fmt: skip
    got = both(from_server(*in_order(stream, list(range(7, len(stream), 7)))))
    found = [(e[5], e[6]) for _, events in got for e in events]
    assert found == [(n, RCODE_NXDOMAIN if i % 2 else 0) for i, n in enumerate(names)]


def test_retransmitted_and_gapped_answers() -> None:
    two = tcp_dns(answer(b"a.example", flags=NX_FLAGS), answer(b"b.example"))
    lost = tcp_dns(answer(b"c" * 40 + b".example", flags=NX_FLAGS))
    after = 1 + len(two)
    got = both(
        from_server(
            (1, two),
            (1, two),  # a retransmission: read already
            (1, two + lost[:10]),  # overlap: only the new bytes are read
            (after + 30, tcp_dns(answer(b"d.example", flags=NX_FLAGS))),  # a gap
        )
    )
    assert [(s, [e[5] for e in ev]) for s, ev in got] == [
        (ST_OK, [b"a.example", b"b.example"]),
        (ST_IGNORED, []),
        (ST_IGNORED, []),
        (ST_OK, [b"d.example"]),
    ]


def test_queries_and_answers_of_one_connection_are_two_streams() -> None:
    """Each direction keeps its own place: the query's second half and the answer's
    first half, interleaved, each complete in their own stream."""
    query = tcp_dns(dns(b"kjhqwe.example", flags=QUERY_FLAGS))
    reply = tcp_dns(answer(b"kjhqwe.example", flags=NX_FLAGS))
    packets = [
        *to_server((1, query[:9])),
        *from_server((1, reply[:5])),
        *to_server((1 + 9, query[9:])),
        *from_server((1 + 5, reply[5:])),
    ]
    got = both(packets)
    assert got == [
        (ST_IGNORED, []),
        (ST_IGNORED, []),
        (ST_OK, [(KIND_DNS, SRC4, DST4, 53, 1, b"kjhqwe.example", 0)]),
        (ST_OK, [(KIND_ANSWER, DST4, SRC4, CLIENT_PORT, 1, b"kjhqwe.example", RCODE_NXDOMAIN)]),
    ]


def test_a_query_from_port_53_and_an_answer_to_it_are_no_events() -> None:
    got = both(
        [
            *from_server((1, tcp_dns(dns(b"q.example", flags=QUERY_FLAGS)))),
            *to_server((1, tcp_dns(answer(b"a.example", flags=NX_FLAGS)))),
        ]
    )
    assert got == [(ST_IGNORED, []), (ST_IGNORED, [])]


@pytest.mark.parametrize("seed", range(6))
def test_a_small_table_under_many_flows_forgets_as_the_reference_does(seed: int) -> None:
    """40 connections' query streams, cut at random and interleaved, through a table of
    6 flows with a short idle timeout, packet time jumping ahead (and once in a while
    back): the flows remembered, evicted (least recently used) and timed out are the
    reference's (an OrderedDict), packet for packet, in one batch and one per batch."""
    rng = random.Random(seed)
    streams = []
    for c in range(40):
        stream = b"".join(tcp_dns(dns(f"h{c}q{k}.example".encode())) for k in range(3))
        cuts = sorted(rng.sample(range(1, len(stream)), 4))
        streams.append([(c, seq, p) for seq, p in in_order(stream, cuts, seq0=1000 * c)])
    packets: list[Packet] = []
    while any(streams):
        live = [s for s in streams if s]
        c, seq, payload = rng.choice(live[:8]).pop(0)
        segment = tcp(payload, sport=CLIENT_PORT + c, dport=53, seq=seq)
        packets.append((LINKTYPE_RAW, ipv4(segment, IP_PROTO_TCP)))
    ts, now = [], 0
    for _ in packets:
        now += rng.choice((1, 1, 2, 30, 120)) if rng.random() > 0.05 else -150
        ts.append(now)
    ref = RefDecoder(flows=RefTcpFlows(max_flows=6, timeout_us=100))
    expected = []
    for (linktype, frame), t in zip(packets, ts, strict=True):
        status, events = ref.decode(linktype, frame, t)
        expected.append((status, sorted(e.name for e in events)))
    assert sum(len(names) for _, names in expected) > 10  # some streams survive
    for per_packet in (False, True):
        decoder = Decoder(max_events=64)
        decoder._tcp = TcpFlows(max_flows=6, timeout_s=0.0001)
        got = []
        chunks = [[k] for k in range(len(packets))] if per_packet else [range(len(packets))]
        for chunk in chunks:
            batch = make_batch([packets[k] for k in chunk], ts_us=[ts[k] for k in chunk])
            ev = decoder.decode(batch)
            rows: list[tuple[int, list[bytes]]] = [(int(s), []) for s in decoder.last_status]
            where = {t: j for j, t in enumerate(ts[k] for k in chunk)}
            for j in range(ev.n):
                rows[where[int(ev.ts_us[j])]][1].append(bytes(ev.names[j, : ev.name_lens[j]]))
            got += [(s, sorted(names)) for s, names in rows]
        assert got == expected


def test_data_in_a_syn_begins_after_the_syns_own_sequence_number() -> None:
    """TCP Fast Open (RFC 7413): a query in the SYN, which takes sequence number ISN, so
    its data is ISN+1 onwards. A server that refuses SYN data makes the client send the
    query again at ISN+1 (a retransmission, as tshark shows it), and the connection's
    next queries count; a query split between the SYN and the next segment counts once.
    The old reading put the SYN's data at ISN, one byte early: the retransmission's last
    byte began a garbage length prefix and no later query of the connection counted."""
    syn, isn = 0x02, 1000
    first = tcp_dns(dns(b"tfo.example", flags=QUERY_FLAGS))
    second = tcp_dns(dns(b"second.example", flags=QUERY_FLAGS))
    third = tcp_dns(dns(b"third.example", flags=QUERY_FLAGS))

    def segment(seq: int, payload: bytes, *, flags: int = 0x18, sport: int = CLIENT_PORT) -> Packet:
        return (LINKTYPE_RAW, ipv4(tcp(payload, sport=sport, seq=seq, flags=flags), IP_PROTO_TCP))

    refused = both(
        [
            segment(isn, first, flags=syn),
            segment(isn + 1, first),
            segment(isn + 1 + len(first), second),
            segment(isn + 1 + len(first) + len(second), third),
        ]
    )
    assert [(s, [e[5] for e in ev]) for s, ev in refused] == [
        (ST_OK, [b"tfo.example"]),
        (ST_IGNORED, []),
        (ST_OK, [b"second.example"]),
        (ST_OK, [b"third.example"]),
    ]
    split = both([segment(isn, first[:8], flags=syn, sport=CLIENT_PORT + 1),
                  segment(isn + 1 + 8, first[8:], sport=CLIENT_PORT + 1)])  # fmt: skip
    assert [(s, [e[5] for e in ev]) for s, ev in split] == [
        (ST_IGNORED, []),
        (ST_OK, [b"tfo.example"]),
    ]


def test_every_message_of_a_segment_counts_however_many() -> None:
    """64 header-only messages, then 20 MX queries, in one 1,500-byte segment: tshark
    4.0 shows all 84; the walk stopped at 64 messages a segment, so the MX queries
    behind them never counted (a way to hide a mass mailer's queries from mx-client).
    Then a segment whose first byte completes the message in progress and whose every
    14 bytes complete another: the most events a segment can make, one buffer growth
    after another."""
    header_only = dns(qdcount=0, question=b"", flags=QUERY_FLAGS)
    mx = [dns(b"mail%d.example" % i, 15, flags=QUERY_FLAGS) for i in range(20)]
    stream = tcp_dns(*[header_only] * 64, *mx)
    got = both(to_server((1, stream)))
    assert len(stream) < 1600
    assert got[0][0] == ST_OK
    assert [e[5] for e in got[0][1][64:]] == [b"mail%d.example" % i for i in range(20)]
    assert len(got[0][1]) == 84
    tight = tcp_dns(*[header_only] * 201)
    got = both(to_server((1, tight[:27]), (28, tight[27:])))
    assert [len(events) for _, events in got] == [1, 200]
    assert len(tight[27:]) == 1 + 14 * 199
