"""Parser-case samples about DNS itself: hostile names, DNS over TCP, snaplen, IP/UDP edges.

Place in the data flow: input to the decode stage's tests. DNS messages that a
well-behaved library refuses to build (pointer loops, bad label types) are
written byte by byte here; the IP/UDP/TCP around them is scapy's.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import LLC, Dot3, Ether
from scapy.packet import Raw

from scripts.samples.capture import Answer, Capture, Query, Syn, ether, l3
from scripts.samples.cases import FILESERVER4, RESOLVER4, Clock, dns_udp, syn

HOSTILE = "192.0.2.201"
TCP_CLIENT = "192.0.2.202"
CUT_CLIENT = "192.0.2.203"
EDGE = "192.0.2.204"


def header(qid: int, *, flags: int = 0x0100, qdcount: int = 1) -> bytes:
    """A 12-byte DNS header (RFC 1035 4.1.1); flags 0x0100 = standard query, RD."""
    return struct.pack(">HHHHHH", qid, flags, qdcount, 0, 0, 0)


def labels(*parts: bytes) -> bytes:
    """Wire-format name from raw labels (any bytes, including dots and ESC)."""
    return b"".join(bytes([len(p)]) + p for p in parts) + b"\x00"


A_IN = b"\x00\x01\x00\x01"


def _chain(n_jumps: int) -> bytes:
    """A question whose name is ``n_jumps`` pointers long, ending at ``\\x05chain\\x00``.

    Offsets: the question's pointer is at 12; pointer ``k`` lives at 18 + 2k.
    """
    target = 18 + 2 * (n_jumps - 1)
    body = struct.pack(">H", 0xC000 | 18) + A_IN
    for k in range(n_jumps - 1):
        nxt = 18 + 2 * (k + 1) if k + 1 < n_jumps - 1 else target
        body += struct.pack(">H", 0xC000 | nxt)
    return body + labels(b"chain")


def hostile_names() -> Capture:
    cap = Capture(
        "dns_names.pcap",
        1,
        "hostile and malformed question names, QDCOUNT=0, non-queries. tshark 4.0 differs: "
        "it reads a qtype after loops and bad names (we count qtype 0), flags the 255-char "
        "name (257 bytes on the wire) as too long, follows 129 pointers, counts NOTIFY/STATUS "
        "opcodes as queries",
    )
    t = Clock(0)
    long_ok = labels(b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 63)  # 255 bytes with dots
    long_bad = labels(b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 63, b"e")
    chain_128 = _chain(128)
    cases: list[tuple[bytes, str, int, bool]] = [
        (header(1) + b"\xc0\x0c" + A_IN, "malformed", 0, False),
        (header(2) + b"\xc0\x12" + A_IN + b"\xc0\x0c", "malformed", 0, False),
        (header(3) + b"\xc0\x12" + A_IN + labels(b"fwd", b"example"), "ok", 1, False),
        (header(4) + b"\x41" + b"x" * 65 + A_IN, "malformed", 0, False),
        (header(5) + b"\x81" + b"x" * 65 + A_IN, "malformed", 0, False),
        (header(6) + long_ok + A_IN, "ok", 1, False),
        (header(7) + long_bad + A_IN, "malformed", 0, False),
        (header(8) + chain_128, "ok", 1, False),
        (header(9) + _chain(129), "malformed", 0, False),
        (header(10) + labels(b"\x01\x02ctl\x7f", b"example") + A_IN, "ok", 1, False),
        (header(11) + labels(b"\x1b[31mred\x1b[0m", b"example") + A_IN, "ok", 1, False),
        (header(12) + labels(b"[red]alert[/red]", b"example") + A_IN, "ok", 1, False),
        (header(13) + labels(b"\xff\xfe\xc3(", b"example") + A_IN, "ok", 1, False),
        (header(14) + labels(b"MAIL", b"Example", b"NET") + A_IN, "ok", 1, True),
        (header(15) + labels(b"mail.x", b"example") + b"\x00\x0f\x00\x01", "ok", 15, True),
        (header(16, qdcount=0), "ok", 0, False),
        (
            header(17, qdcount=2) + labels(b"ns1", b"example") + A_IN + labels(b"x") + A_IN,
            "ok",
            1,
            True,
        ),
        (header(18) + labels(b"www", b"example")[:6], "truncated", 0, False),
        (header(19) + labels(b"www", b"example") + b"\x00", "truncated", 0, False),
    ]
    for payload, status, qtype, keyword in cases:
        packet = (
            l3(HOSTILE, RESOLVER4) / UDP(sport=30000 + len(cap.records), dport=53) / Raw(payload)
        )
        cap.add(t(), ether(packet), status, (Query(HOSTILE, qtype, keyword),))
    not_queries = [header(20, flags=0x8180), header(21, flags=0x2000), header(22, flags=0x1000)]
    for payload in not_queries:
        packet = (
            l3(HOSTILE, RESOLVER4) / UDP(sport=31000, dport=53) / Raw(payload + labels(b"x") + A_IN)
        )
        cap.add(t(), ether(packet), "ignored")
    short = l3(HOSTILE, RESOLVER4) / UDP(sport=31001, dport=53) / Raw(header(23)[:11])
    cap.add(t(), ether(short), "truncated")
    return cap


def _prefixed(message: bytes) -> bytes:
    return struct.pack(">H", len(message)) + message


def _tcp_stream(src: str, dst: str, sport: int, dport: int) -> Callable[[bytes], bytes]:
    """Frames of one direction of a TCP connection, each carrying the next bytes of its
    stream (sequence numbers from 1, contiguous)."""
    next_seq = [1]

    def segment(payload: bytes) -> bytes:
        seq = next_seq[0]
        next_seq[0] += len(payload)
        tcp = TCP(sport=sport, dport=dport, flags="PA", seq=seq, ack=1)
        return ether(l3(src, dst) / tcp / Raw(payload))

    return segment


def dns_tcp() -> Capture:
    cap = Capture(
        "dns_tcp.pcap",
        1,
        "DNS over TCP: pipelined messages, split messages, bad length, 65 in one segment, "
        "answers (one, two NXDOMAIN in one segment, one split). "
        "As tshark 4.0 (which reassembles) a split message counts once, at the segment that "
        "completes it; all 65 messages of one segment count, as in tshark",
    )
    t = Clock(0)
    a = TCP_CLIENT

    # One coherent stream (contiguous sequence numbers), so a reassembling dissector
    # such as tshark reads the same bytes as one conversation.
    segment = _tcp_stream(a, RESOLVER4, 41000, 53)

    def query(name: str, qtype: int, qid: int) -> bytes:
        return bytes(DNS(id=qid, rd=1, qd=DNSQR(qname=name, qtype=qtype)))

    cap.add(t(), ether(l3(a, RESOLVER4) / TCP(sport=41000, dport=53, flags="S", seq=0)), "ignored")
    cap.add(
        t(),
        ether(l3(RESOLVER4, a) / TCP(sport=53, dport=41000, flags="SA", seq=0, ack=1)),
        "ignored",
    )
    cap.add(
        t(),
        ether(l3(a, RESOLVER4) / TCP(sport=41000, dport=53, flags="A", seq=1, ack=1)),
        "ignored",
    )
    three = b"".join(_prefixed(query(n, q, i)) for i, (n, q) in enumerate(
        [("www.example.com", 1), ("example.com", 15), ("www.example.com", 28)]
    ))  # fmt: skip
    events = (Query(a, 1, False), Query(a, 15, False), Query(a, 28, False))
    cap.add(t(), segment(three), "ok", events)
    # A length below 12 loses the stream: the flow is forgotten, and its next segment
    # is read from its first byte (which here is a length prefix).
    bad_length = _prefixed(query("smtp.example.com", 1, 10)) + b"\x00\x05hello"
    cap.add(t(), segment(bad_length), "malformed", (Query(a, 1, True),))
    # A message split inside its name counts once, whole, at the second part.
    split = _prefixed(query("relay.example.com", 1, 11))
    cap.add(t(), segment(split[:20]), "ignored")
    cap.add(t(), segment(split[20:]), "ok", (Query(a, 1, True),))
    # A message split after its question (an EDNS OPT record follows): it counts at the
    # second part, which completes it.
    with_opt = bytes(DNS(id=12, rd=1, qd=DNSQR(qname="example.org", qtype=15), ar=None))
    opt = b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"
    whole = _prefixed(with_opt[:11] + b"\x01" + with_opt[12:] + opt)
    cut = 2 + len(with_opt)
    cap.add(t(), segment(whole[:cut]), "ignored")
    cap.add(t(), segment(whole[cut:]), "ok", (Query(a, 15, False),))
    many = b"".join(_prefixed(query("x.example", 1, 100 + i)) for i in range(65))
    cap.add(t(), segment(many), "ok", tuple(Query(a, 1, False) for _ in range(65)))
    # Answers come back in the server's own stream (from port 53): counted for the
    # client, the same way (whole, several in one segment, split across segments).
    answer_segment = _tcp_stream(RESOLVER4, a, 53, 41000)

    def answer(name: str, rcode: int, qid: int) -> bytes:
        return bytes(DNS(id=qid, qr=1, rcode=rcode, qd=DNSQR(qname=name)))

    cap.add(t(), answer_segment(_prefixed(answer("www.example.com", 0, 0))), "ok", (Answer(a),))
    two_nx = _prefixed(answer("qzkvhwe.example", 3, 1)) + _prefixed(answer("xjrtp.example", 3, 2))
    cap.add(t(), answer_segment(two_nx), "ok", (Answer(a, 3), Answer(a, 3)))
    split_nx = _prefixed(answer("bmwqzrtk.example", 3, 3))
    cap.add(t(), answer_segment(split_nx[:9]), "ignored")
    cap.add(t(), answer_segment(split_nx[9:]), "ok", (Answer(a, 3),))
    return cap


def snaplen() -> Capture:
    cap = Capture(
        "dns_snaplen.pcap",
        1,
        "snaplen 60: queries cut in the name, in the DNS header, after the qtype. tshark 4.0 "
        "counts the header-cut query (no event here) and gives no qtype when qclass is cut",
        snaplen=60,
    )
    t = Clock(0)
    a = CUT_CLIENT
    for name, qtype, status, event in [
        ("mail.example.com", 1, "truncated", Query(a, 0, False)),
        ("", 2, "ok", Query(a, 2, False)),
        ("io", 1, "ok", Query(a, 1, False)),
    ]:
        frame = ether(dns_udp(a, RESOLVER4, name or b".", qtype, len(cap.records)))
        cap.add(t(), frame[:60], status, (event,), wirelen=len(frame))
    frame = ether(dns_udp(a, RESOLVER4, "www.example.com", 1, 9))
    cap.add(t(), frame[:50], "truncated", wirelen=len(frame))
    frame = ether(syn(a, FILESERVER4, 445, 10))
    cap.add(t(), frame, "ok", (Syn(a, FILESERVER4, 445),))
    return cap


def ip_edges() -> Capture:
    cap = Capture(
        "ip_edges.pcap",
        1,
        "IPv4/UDP/TCP header edge cases around DNS and SYNs. tshark 4.0 does not count the "
        "SYN with 14 captured TCP bytes; the query in a first fragment that is never "
        "completed counts in neither",
    )
    t = Clock(0)
    a = EDGE
    query = UDP(sport=20001, dport=53) / DNS(id=1, qd=DNSQR(qname="www.example.com"))
    good = ether(IP(src=a, dst=RESOLVER4) / query)
    cap.add(t(), good, "ok", (Query(a, 1, False),))
    cap.add(t(), good + b"\x00" * 20, "ok", (Query(a, 1, False),))
    cap.add(
        t(),
        ether(IP(src=a, dst=RESOLVER4, options=b"\x01\x01\x01\x00") / query),
        "ok",
        (Query(a, 1, False),),
    )
    broken = bytearray(good)
    broken[14] = 0x44
    cap.add(t(), bytes(broken), "malformed")
    broken = bytearray(good)
    broken[14] = 0x65
    cap.add(t(), bytes(broken), "malformed")
    cap.add(t(), ether(IP(src=a, dst=RESOLVER4, len=16) / query), "malformed")
    cap.add(t(), ether(IP(src=a, dst=RESOLVER4, frag=185) / query), "fragment")
    # a first fragment is held for reassembly; with the one above (same id) it never
    # completes (bytes between them are missing), so neither counts
    cap.add(t(), ether(IP(src=a, dst=RESOLVER4, flags="MF") / query), "fragment")
    udp8 = bytes(UDP(sport=20002, dport=53, len=8, chksum=0)) + bytes(query[DNS])
    cap.add(t(), ether(IP(src=a, dst=RESOLVER4, proto=17) / Raw(udp8)), "ignored")
    udp7 = bytes(UDP(sport=20003, dport=53, len=7, chksum=0)) + bytes(query[DNS])
    cap.add(t(), ether(IP(src=a, dst=RESOLVER4, proto=17) / Raw(udp7)), "malformed")
    cap.add(
        t(), ether(IP(src=a, dst=FILESERVER4) / TCP(dport=445, flags="S", dataofs=4)), "malformed"
    )
    cap.add(t(), ether(IP(src=a, dst=FILESERVER4) / TCP(dport=445, flags="SA")), "ignored")
    cap.add(t(), ether(IP(src=a, dst=FILESERVER4) / TCP(dport=80, flags="S")), "ignored")
    cap.add(
        t(),
        ether(IP(src=a, dst=FILESERVER4) / TCP(dport=445, flags="SE")),
        "ok",
        (Syn(a, FILESERVER4, 445),),
    )
    short_syn = ether(IP(src=a, dst=FILESERVER4) / TCP(sport=40123, dport=139, flags="S"))
    cap.add(
        t(), short_syn[: 14 + 20 + 14], "ok", (Syn(a, FILESERVER4, 139),), wirelen=len(short_syn)
    )
    cap.add(t(), ether(IP(src=a, dst=RESOLVER4) / ICMP()), "ignored")
    cap.add(
        t(),
        bytes(Dot3(src="02:00:00:00:00:04", dst="01:80:c2:00:00:00") / LLC() / Raw(b"\x00" * 35)),
        "ignored",
    )
    cap.add(
        t(),
        bytes(Ether(src="02:00:00:00:00:04", dst="02:00:00:00:00:05", type=0x0800)) + b"\x45\x00",
        "truncated",
    )
    return cap


DNS_CASES = (hostile_names, dns_tcp, snaplen, ip_edges)
