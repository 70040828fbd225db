"""Parser-case samples: one small capture per link layer or header oddity.

Place in the data flow: input to the decode stage's tests. Each function returns a
:class:`.capture.Capture` whose frames were built with scapy (or by hand where the
case is a broken header scapy would repair) and whose bookkeeping says what each
frame must count as. Hostile DNS names are in ``scripts/samples/names.py``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE, PPPoED
from scapy.packet import Packet, Raw

from scripts.samples.capture import (
    MS_NS,
    SEC_NS,
    T0_NS,
    Capture,
    Query,
    Syn,
    ether,
    l3,
    null,
    sll,
    sll2,
)

RESOLVER4 = "192.0.2.53"
RESOLVER6 = "2001:db8:0:1::53"
FILESERVER4 = "192.0.2.5"
FILESERVER6 = "2001:db8:0:1::5"


def dns_udp(src: str, dst: str, name: str | bytes, qtype: int, qid: int) -> Packet:
    """An IP/UDP/DNS query from ``src`` (source port derived from the query id)."""
    dns = DNS(id=qid, rd=1, qd=DNSQR(qname=name, qtype=qtype))
    return l3(src, dst) / UDP(sport=20000 + qid, dport=53) / dns


def syn(src: str, dst: str, port: int, seq: int, *, flags: str = "S") -> Packet:
    """An IP/TCP segment (a SYN unless ``flags`` says otherwise)."""
    return l3(src, dst) / TCP(sport=40000 + seq % 20000, dport=port, flags=flags, seq=seq)


class Clock:
    """Packet time for a parser case: start at T0 plus an offset, step 10 ms."""

    def __init__(self, start_s: int) -> None:
        self.ts_ns = T0_NS + start_s * SEC_NS

    def __call__(self) -> int:
        self.ts_ns += 10 * MS_NS
        return self.ts_ns


def vlan() -> Capture:
    cap = Capture(
        "vlan.pcap", 1, "802.1Q-tagged DNS (IPv4, IPv6) and SYN; untagged query; tagged ARP"
    )
    t = Clock(0)
    a, b, c = "192.0.2.31", "192.0.2.32", "2001:db8:0:1::31"
    tag = (Dot1Q(vlan=10, prio=3),)
    cap.add(
        t(),
        ether(dns_udp(a, RESOLVER4, "www.example.com", 1, 1), tags=tag),
        "ok",
        (Query(a, 1, False),),
    )
    cap.add(t(), ether(syn(a, FILESERVER4, 445, 1), tags=tag), "ok", (Syn(a, FILESERVER4, 445),))
    cap.add(
        t(), ether(dns_udp(b, RESOLVER4, "static.example.net", 28, 2)), "ok", (Query(b, 28, False),)
    )
    cap.add(
        t(),
        ether(dns_udp(c, RESOLVER6, "example.org", 15, 3), tags=tag),
        "ok",
        (Query(c, 15, False),),
    )
    arp = (
        Ether(src="02:00:00:00:00:31", dst="ff:ff:ff:ff:ff:ff")
        / Dot1Q(vlan=10)
        / ARP(psrc=a, pdst=RESOLVER4)
    )
    cap.add(t(), bytes(arp), "ignored")
    return cap


def qinq() -> Capture:
    cap = Capture(
        "qinq.pcap",
        1,
        "802.1ad+802.1Q, 0x9100+0x8100, three tags; nine tags is malformed "
        "(tshark 4.0 decodes nine tags: 3 A queries there, 2 here)",
    )
    t = Clock(0)
    a = "192.0.2.41"
    outer = (Dot1AD(vlan=100), Dot1Q(vlan=10))
    cap.add(
        t(),
        ether(dns_udp(a, RESOLVER4, "mail.example.net", 1, 1), tags=outer),
        "ok",
        (Query(a, 1, True),),
    )
    cap.add(t(), ether(syn(a, FILESERVER4, 139, 2), tags=outer), "ok", (Syn(a, FILESERVER4, 139),))
    old_style = (
        Ether(src="02:00:00:00:00:41", dst="02:00:00:00:00:05", type=0x9100)
        / Dot1Q(vlan=20)
        / Dot1Q(vlan=10)
    )
    cap.add(t(), bytes(old_style / syn(a, FILESERVER4, 135, 3)), "ok", (Syn(a, FILESERVER4, 135),))
    three = (Dot1AD(vlan=100), Dot1Q(vlan=10), Dot1Q(vlan=11))
    cap.add(
        t(),
        ether(dns_udp(a, RESOLVER4, "example.com", 1, 4), tags=three),
        "ok",
        (Query(a, 1, False),),
    )
    nine = tuple(Dot1Q(vlan=v) for v in range(1, 10))
    cap.add(t(), ether(dns_udp(a, RESOLVER4, "example.com", 1, 5), tags=nine), "malformed")
    eight = tuple(Dot1Q(vlan=v) for v in range(1, 9))
    cap.add(t(), ether(syn(a, FILESERVER4, 445, 6), tags=eight), "ok", (Syn(a, FILESERVER4, 445),))
    return cap


def pppoe() -> Capture:
    cap = Capture(
        "pppoe.pcap", 1, "PPPoE session: IPv4 DNS, IPv6 SYN, LCP ignored; PPPoE discovery ignored"
    )
    t = Clock(0)
    a4, a6 = "192.0.2.51", "2001:db8:0:1::51"
    session = Ether(src="02:00:00:00:00:51", dst="02:00:00:00:00:01") / PPPoE(sessionid=0x1234)
    query = dns_udp(a4, RESOLVER4, "www.example.org", 1, 1)
    cap.add(t(), bytes(session / PPP(proto=0x0021) / query), "ok", (Query(a4, 1, False),))
    cap.add(
        t(),
        bytes(session / PPP(proto=0x0057) / syn(a6, FILESERVER6, 445, 2)),
        "ok",
        (Syn(a6, FILESERVER6, 445),),
    )
    cap.add(
        t(),
        bytes(session / PPP(proto=0xC021) / Raw(b"\x09\x01\x00\x08\x00\x00\x00\x01")),
        "ignored",
    )
    padi = Ether(src="02:00:00:00:00:51", dst="ff:ff:ff:ff:ff:ff") / PPPoED(code=0x09)
    cap.add(t(), bytes(padi), "ignored")
    return cap


def ipv6_ext() -> Capture:
    cap = Capture(
        "ipv6_ext.pcap",
        1,
        "IPv6 extension headers: hop-by-hop, routing, dest options, AH, fragment; 17 headers "
        "is malformed (tshark 4.0 walks all 17: 4 AAAA there, 3 here)",
    )
    t = Clock(0)
    a = "2001:db8:0:1::61"
    base = IPv6(src=a, dst=RESOLVER6)
    udp = UDP(sport=20001, dport=53) / DNS(id=1, qd=DNSQR(qname="www.example.com", qtype=28))
    chain = base / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / udp
    cap.add(t(), ether(chain), "ok", (Query(a, 28, False),))
    frag0 = (
        IPv6(src=a, dst=FILESERVER6)
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrFragment(id=7, offset=0, m=0)
    )
    cap.add(
        t(),
        ether(frag0 / TCP(sport=40001, dport=445, flags="S")),
        "ok",
        (Syn(a, FILESERVER6, 445),),
    )
    first = base / IPv6ExtHdrFragment(id=8, offset=0, m=1) / udp
    cap.add(t(), ether(first), "fragment")
    # bytes 32..56 overlap the first fragment's 41 ("first" policy keeps those) and
    # complete the datagram: the query counts here
    later = base / IPv6ExtHdrFragment(id=8, nh=17, offset=4, m=0) / Raw(b"\x00" * 24)
    cap.add(t(), ether(later), "ok", (Query(a, 28, False),))
    routed = IPv6(src=a, dst=FILESERVER6) / IPv6ExtHdrRouting(addresses=[]) / IPv6ExtHdrDestOpt()
    cap.add(
        t(),
        ether(routed / TCP(sport=40002, dport=139, flags="S")),
        "ok",
        (Syn(a, FILESERVER6, 139),),
    )
    # AH (RFC 4302): next header, length in 4-octet units minus 2, SPI, sequence, 12-byte ICV.
    ah = struct.pack(">BBHII", 17, 4, 0, 0x100, 1) + b"\x00" * 12
    cap.add(
        t(),
        ether(IPv6(src=a, dst=RESOLVER6, nh=51) / Raw(ah + bytes(udp))),
        "ok",
        (Query(a, 28, False),),
    )
    seventeen = IPv6(src=a, dst=RESOLVER6)
    for _ in range(17):
        seventeen = seventeen / IPv6ExtHdrDestOpt()
    cap.add(t(), ether(seventeen / udp), "malformed")
    cap.add(t(), ether(IPv6(src=a, dst=RESOLVER6, nh=59) / Raw(b"\x00" * 8)), "ignored")
    return cap


def cooked() -> list[Capture]:
    caps = []
    one = Capture(
        "sll.pcap", 113, "Linux cooked v1: DNS, SYN, a 0x8100 tag after the header, ARP ignored"
    )
    t = Clock(0)
    a = "192.0.2.71"
    one.add(t(), sll(dns_udp(a, RESOLVER4, "api.example.com", 1, 1)), "ok", (Query(a, 1, False),))
    one.add(t(), sll(syn(a, FILESERVER4, 445, 2), packet_type=4), "ok", (Syn(a, FILESERVER4, 445),))
    tagged = sll(dns_udp(a, RESOLVER4, "ns1.example.com", 1, 3))
    tagged = tagged[:14] + b"\x81\x00" + struct.pack(">HH", 10, 0x0800) + tagged[16:]
    one.add(t(), tagged, "ok", (Query(a, 1, True),))
    arp = bytes(ARP(psrc=a, pdst=RESOLVER4))
    one.add(t(), struct.pack(">HHH8sH", 1, 1, 6, b"\x02" * 8, 0x0806) + arp, "ignored")
    caps.append(one)
    two = Capture(
        "sll2.pcap",
        276,
        "Linux cooked v2 carrying DNS over IPv4 and IPv6 and a SYN (no real one exists)",
    )
    t = Clock(0)
    b6 = "2001:db8:0:1::72"
    two.add(t(), sll2(dns_udp(a, RESOLVER4, "mx2.example.org", 1, 1)), "ok", (Query(a, 1, True),))
    two.add(
        t(), sll2(dns_udp(b6, RESOLVER6, "www.example.org", 28, 2)), "ok", (Query(b6, 28, False),)
    )
    two.add(t(), sll2(syn(a, FILESERVER4, 445, 3)), "ok", (Syn(a, FILESERVER4, 445),))
    two.add(t(), sll2(IP(src=a, dst=RESOLVER4) / ICMP()), "ignored")
    caps.append(two)
    return caps


def raw_ip() -> list[Capture]:
    a4, a6 = "192.0.2.81", "2001:db8:0:1::81"
    q4 = dns_udp(a4, RESOLVER4, "cdn.example.net", 1, 1)
    s6 = syn(a6, FILESERVER6, 445, 2)
    caps = []
    for linktype in (101, 12):
        cap = Capture(
            f"raw{linktype}.pcap", linktype, "raw IP by version nibble; version 5 is malformed"
        )
        t = Clock(0)
        cap.add(t(), bytes(q4), "ok", (Query(a4, 1, False),))
        cap.add(t(), bytes(s6), "ok", (Syn(a6, FILESERVER6, 445),))
        cap.add(t(), b"\x50" + bytes(q4)[1:], "malformed")
        caps.append(cap)
    v4 = Capture("raw228.pcap", 228, "LINKTYPE_IPV4")
    t = Clock(0)
    v4.add(t(), bytes(q4), "ok", (Query(a4, 1, False),))
    v4.add(t(), bytes(syn(a4, FILESERVER4, 135, 3)), "ok", (Syn(a4, FILESERVER4, 135),))
    v6 = Capture("raw229.pcap", 229, "LINKTYPE_IPV6")
    t = Clock(0)
    v6.add(
        t(), bytes(dns_udp(a6, RESOLVER6, "www.example.com", 28, 4)), "ok", (Query(a6, 28, False),)
    )
    v6.add(t(), bytes(s6), "ok", (Syn(a6, FILESERVER6, 445),))
    return [*caps, v4, v6]


def loopback() -> list[Capture]:
    a4, a6 = "192.0.2.91", "2001:db8:0:1::91"
    bsd = Capture(
        "null.pcap",
        0,
        "BSD NULL: family 2 (both byte orders), IPv6 families 10/24/28/30, family 7 ignored "
        "(tshark 4.0 does not take 10 as IPv6: 3 SYNs to 445 there, 4 here)",
    )
    t = Clock(0)
    bsd.add(
        t(), null(dns_udp(a4, RESOLVER4, "www.example.com", 1, 1), 2), "ok", (Query(a4, 1, False),)
    )
    bsd.add(
        t(),
        null(dns_udp(a4, RESOLVER4, "smtp.example.com", 1, 2), 2, endian=">"),
        "ok",
        (Query(a4, 1, True),),
    )
    for i, family in enumerate((10, 24, 28, 30)):
        bsd.add(
            t(), null(syn(a6, FILESERVER6, 445, 3 + i), family), "ok", (Syn(a6, FILESERVER6, 445),)
        )
    bsd.add(t(), null(dns_udp(a4, RESOLVER4, "www.example.com", 1, 9), 7), "ignored")
    loop = Capture("loop.pcap", 108, "OpenBSD LOOP: family in network byte order only")
    t = Clock(0)
    loop.add(
        t(),
        null(dns_udp(a4, RESOLVER4, "example.net", 15, 1), 2, endian=">"),
        "ok",
        (Query(a4, 15, False),),
    )
    loop.add(
        t(), null(syn(a6, FILESERVER6, 139, 2), 24, endian=">"), "ok", (Syn(a6, FILESERVER6, 139),)
    )
    loop.add(t(), null(dns_udp(a4, RESOLVER4, "example.net", 1, 3), 2, endian="<"), "ignored")
    return [bsd, loop]


def file_formats() -> list[Capture]:
    a4, a6 = "192.0.2.95", "2001:db8:0:1::95"
    multi = Capture(
        "multi_if.pcapng",
        1,
        "pcapng: Ethernet (us) and raw IP (ns) interfaces interleaved",
        fmt="pcapng",
    )
    multi.interfaces = [(1, 6, "eth0"), (101, 9, "tun0")]
    for i in range(3):
        ts = T0_NS + i * SEC_NS
        multi.add(
            ts, ether(dns_udp(a4, RESOLVER4, "www.example.com", 1, i)), "ok", (Query(a4, 1, False),)
        )
        raw = bytes(syn(a6, FILESERVER6, 445, 10 + i))
        multi.add(ts + 123_456_789, raw, "ok", (Syn(a6, FILESERVER6, 445),), interface=1)
    nano = Capture(
        "nanosecond.pcap",
        1,
        "nanosecond pcap magic; timestamps floor to microseconds",
        is_nano=True,
    )
    be = Capture("bigendian.pcap", 1, "big-endian pcap header and records", endian=">")
    for cap in (nano, be):
        cap.add(
            T0_NS + 999_999_999,
            ether(dns_udp(a4, RESOLVER4, "relay.example.org", 1, 1)),
            "ok",
            (Query(a4, 1, True),),
        )
        cap.add(
            T0_NS + SEC_NS + 1_500,
            ether(syn(a4, FILESERVER4, 445, 2)),
            "ok",
            (Syn(a4, FILESERVER4, 445),),
        )
    odd = Capture("unsupported.pcap", 147, "link type 147 (USER0) is not decoded")
    odd.add(T0_NS, ether(dns_udp(a4, RESOLVER4, "www.example.com", 1, 1)), "unsupported")
    return [multi, nano, be, odd]


CASES: tuple[Callable[[], Capture | list[Capture]], ...] = (
    vlan,
    qinq,
    pppoe,
    ipv6_ext,
    cooked,
    raw_ip,
    loopback,
    file_formats,
)
