"""Fragment samples: DNS queries and SYNs split into IPv4/IPv6 fragments.

Place in the data flow: input to the decode stage's reassembly tests. Each function
returns a :class:`.capture.Capture` of Ethernet frames whose fragments were cut by hand
from scapy-built datagrams (so the cut points are exactly the case's), booked as
docs/DECODING.md "Fragments" says: the fragment that completes a datagram carries its
status and events, every other fragment is ``fragment``.
"""

from __future__ import annotations

from collections.abc import Callable

from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.packet import Packet, Raw

from scripts.samples.capture import SEC_NS, Capture, Query, Syn, ether
from scripts.samples.cases import FILESERVER4, RESOLVER4, RESOLVER6, Clock

# (offset in bytes, length in bytes) of each fragment's piece of the datagram's payload
Cut = tuple[int, int]


def _query(src: str, dst: str, name: str, qtype: int, qid: int) -> bytes:
    """The UDP datagram (header and DNS query) an IP datagram would carry."""
    ip: Packet = IP(src=src, dst=dst) if ":" not in src else IPv6(src=src, dst=dst)
    dns = DNS(id=qid, rd=1, qd=DNSQR(qname=name, qtype=qtype))
    return bytes((ip / UDP(sport=30000 + qid, dport=53) / dns)[UDP])


def v4_fragments(
    src: str, dst: str, ident: int, proto: int, payload: bytes, cuts: list[Cut]
) -> list[bytes]:
    """Ethernet frames of IPv4 fragments; the fragment reaching the payload's end is the last."""
    frames = []
    for offset, length in cuts:
        is_last = offset + length >= len(payload)
        ip = IP(
            src=src, dst=dst, id=ident, proto=proto, frag=offset // 8, flags=0 if is_last else "MF"
        )
        frames.append(ether(ip / Raw(payload[offset : offset + length])))
    return frames


def v6_fragments(
    src: str, dst: str, ident: int, nh: int, payload: bytes, cuts: list[Cut]
) -> list[bytes]:
    """Ethernet frames of IPv6 fragments (fragment header right after the IPv6 header)."""
    frames = []
    for offset, length in cuts:
        is_last = offset + length >= len(payload)
        header = IPv6ExtHdrFragment(nh=nh, id=ident, offset=offset // 8, m=0 if is_last else 1)
        frames.append(
            ether(IPv6(src=src, dst=dst) / header / Raw(payload[offset : offset + length]))
        )
    return frames


def three_cuts(size: int) -> list[Cut]:
    """Three pieces at multiples of 8: [0, 16), [16, 40), [40, size)."""
    return [(0, 16), (16, 24), (40, size - 40)]


def dns_v4() -> Capture:
    cap = Capture(
        "frag_dns_v4.pcap",
        1,
        "DNS queries over UDP/IPv4 in 3 fragments: in order, then out of order (last, "
        "first, middle); each counts once, at its completing fragment",
    )
    t = Clock(0)
    a = "192.0.2.141"
    payload = _query(a, RESOLVER4, "mail.example.com", 1, 1)
    frames = v4_fragments(a, RESOLVER4, 0x1001, 17, payload, three_cuts(len(payload)))
    cap.add(t(), frames[0], "fragment")
    cap.add(t(), frames[1], "fragment")
    cap.add(t(), frames[2], "ok", (Query(a, 1, True),))
    payload = _query(a, RESOLVER4, "www.example.org", 15, 2)
    frames = v4_fragments(a, RESOLVER4, 0x1002, 17, payload, three_cuts(len(payload)))
    cap.add(t(), frames[2], "fragment")
    cap.add(t(), frames[0], "fragment")
    cap.add(t(), frames[1], "ok", (Query(a, 15, False),))
    return cap


def syn_tiny() -> Capture:
    cap = Capture(
        "frag_syn_tiny.pcap",
        1,
        "SYN to 445 in two IPv4 fragments, the first holding only 8 bytes of the TCP header "
        "(ports and sequence, no flags); reassembled, the SYN counts once",
    )
    t = Clock(0)
    a = "192.0.2.142"
    segment = bytes(
        (IP(src=a, dst=FILESERVER4) / TCP(sport=40142, dport=445, flags="S", seq=7))[TCP]
    )
    frames = v4_fragments(a, FILESERVER4, 0x2001, 6, segment, [(0, 8), (8, len(segment) - 8)])
    cap.add(t(), frames[0], "fragment")
    cap.add(t(), frames[1], "ok", (Syn(a, FILESERVER4, 445),))
    # the other order: the flags arrive before the ports
    frames = v4_fragments(a, "192.0.2.6", 0x2002, 6, segment, [(0, 8), (8, len(segment) - 8)])
    cap.add(t(), frames[1], "fragment")
    cap.add(t(), frames[0], "ok", (Syn(a, "192.0.2.6", 445),))
    return cap


def dns_v6() -> Capture:
    cap = Capture(
        "frag_dns_v6.pcap",
        1,
        "DNS AAAA query over UDP/IPv6 in 3 fragments (fragment header id 0x3001); counts once",
    )
    t = Clock(0)
    a = "2001:db8:0:1::143"
    payload = _query(a, RESOLVER6, "smtp.example.net", 28, 3)
    frames = v6_fragments(a, RESOLVER6, 0x3001, 17, payload, three_cuts(len(payload)))
    cap.add(t(), frames[0], "fragment")
    cap.add(t(), frames[1], "fragment")
    cap.add(t(), frames[2], "ok", (Query(a, 28, True),))
    return cap


def overlap() -> Capture:
    cap = Capture(
        "frag_overlap.pcap",
        1,
        "overlapping fragments, 'first' policy: a later fragment rewriting the query's first "
        "label (mail -> www1) loses; a second offset-0 fragment turning a SYN to 80 into one "
        "to 445 loses (no SYN counts); an exact duplicate changes nothing",
    )
    t = Clock(0)
    a = "192.0.2.144"
    payload = _query(a, RESOLVER4, "mail.example.com", 1, 4)
    frames = v4_fragments(a, RESOLVER4, 0x4001, 17, payload, three_cuts(len(payload)))
    # bytes 16..40 again, with "mail" (at payload byte 21) spelled "www1"
    forged = payload[:21] + b"www1" + payload[25:]
    cap.add(t(), frames[0], "fragment")
    cap.add(t(), frames[1], "fragment")
    cap.add(t(), v4_fragments(a, RESOLVER4, 0x4001, 17, forged, [(16, 24)])[0], "fragment")
    cap.add(t(), frames[2], "ok", (Query(a, 1, True),))
    b = "192.0.2.145"
    to_80 = bytes((IP(src=b, dst=FILESERVER4) / TCP(sport=40145, dport=80, flags="S"))[TCP])
    to_445 = bytes((IP(src=b, dst=FILESERVER4) / TCP(sport=40145, dport=445, flags="S"))[TCP])
    cap.add(t(), v4_fragments(b, FILESERVER4, 0x4002, 6, to_80, [(0, 8)])[0], "fragment")
    cap.add(t(), v4_fragments(b, FILESERVER4, 0x4002, 6, to_445, [(0, 8)])[0], "fragment")
    cap.add(t(), v4_fragments(b, FILESERVER4, 0x4002, 6, to_445, [(8, 12)])[0], "ignored")
    payload = _query(b, RESOLVER4, "www.example.com", 1, 5)
    frames = v4_fragments(b, RESOLVER4, 0x4003, 17, payload, three_cuts(len(payload)))
    cap.add(t(), frames[0], "fragment")
    cap.add(t(), frames[1], "fragment")
    cap.add(t(), frames[1], "fragment")
    cap.add(t(), frames[2], "ok", (Query(b, 1, False),))
    return cap


def timeout() -> Capture:
    cap = Capture(
        "frag_timeout.pcap",
        1,
        "a fragmented query never completed: its last fragment comes 31 s after the first "
        "(30 s timeout), so it does not count; a query completed 29 s after its first "
        "fragment counts (tshark 4.0 times nothing out: 2 queries there, 1 here)",
    )
    t = Clock(0)
    a = "192.0.2.146"
    payload = _query(a, RESOLVER4, "relay.example.com", 1, 6)
    frames = v4_fragments(a, RESOLVER4, 0x5001, 17, payload, three_cuts(len(payload)))
    start = t()
    cap.add(start, frames[0], "fragment")
    cap.add(start + 10 * SEC_NS, frames[1], "fragment")
    cap.add(start + 31 * SEC_NS, frames[2], "fragment")
    payload = _query(a, RESOLVER4, "www.example.com", 28, 7)
    frames = v4_fragments(a, RESOLVER4, 0x5002, 17, payload, three_cuts(len(payload)))
    start += 40 * SEC_NS
    cap.add(start, frames[0], "fragment")
    cap.add(start + SEC_NS, frames[1], "fragment")
    cap.add(start + 29 * SEC_NS, frames[2], "ok", (Query(a, 28, False),))
    return cap


def interleaved() -> Capture:
    cap = Capture(
        "frag_interleaved.pcap",
        1,
        "fragments of two sources interleaved, same IP id and destination: each datagram is "
        "reassembled from its own source's fragments",
    )
    t = Clock(0)
    a, b = "192.0.2.147", "198.51.100.147"
    pa = _query(a, RESOLVER4, "mx1.example.com", 15, 8)
    pb = _query(b, RESOLVER4, "www.example.net", 1, 8)
    fa = v4_fragments(a, RESOLVER4, 0x6001, 17, pa, three_cuts(len(pa)))
    fb = v4_fragments(b, RESOLVER4, 0x6001, 17, pb, three_cuts(len(pb)))
    cap.add(t(), fa[0], "fragment")
    cap.add(t(), fb[0], "fragment")
    cap.add(t(), fb[2], "fragment")
    cap.add(t(), fa[1], "fragment")
    cap.add(t(), fa[2], "ok", (Query(a, 15, True),))
    cap.add(t(), fb[1], "ok", (Query(b, 1, False),))
    return cap


FRAG_CASES: tuple[Callable[[], Capture], ...] = (
    dns_v4,
    syn_tiny,
    dns_v6,
    overlap,
    timeout,
    interleaved,
)
