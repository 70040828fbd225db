"""The live-capture BPF filter admits exactly what the decoder counts (plus DNS-port traffic).

The oracle is the slow reference decoder (testkit/reference.py, docs/DECODING.md):
a packet is relevant when it produces at least one event. The filter must admit
every relevant packet (or live capture would count less than a replay), and
whatever else it admits must be DNS-port traffic or an IPv6 packet with an
extension header, which the decoder then ignores.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_Router_Alert
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, CookedLinux, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.packet import Packet, raw

from wormwatch.errors import WormwatchError
from wormwatch.model import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_RAW
from wormwatch.source import bpf

from testkit.reference import decode_frame, read_records

DLT_RAW = 12  # libpcap's DLT for LINKTYPE_RAW (101) on Linux
# What the filter may admit beyond relevant packets, at any tag depth.
_PORT53 = "(udp port 53 or tcp port 53)"
_EXT6 = "(ip6 and (ip6[6] == 0 or ip6[6] == 43 or ip6[6] == 44 or ip6[6] == 51 or ip6[6] == 60))"
# IPv4 fragments of TCP/UDP are admitted whole: the decoder reassembles them
_FRAG4 = "(ip and ip[6:2] & 0x3fff != 0)"
_EXTRA = f"({_PORT53} or {_EXT6} or {_FRAG4})"
_EXTRA_ETH = f"{_EXTRA} or (vlan and ({_EXTRA} or (vlan and {_EXTRA}))) or ether[12:2] == 0x8864"


def _dlt(linktype: int) -> int:
    return DLT_RAW if linktype == LINKTYPE_RAW else linktype


def _admits(linktype: int, expression: str, frame: bytes) -> bool:
    program = bpf.compile_filter(expression, linktype=_dlt(linktype), snaplen=65535)
    return bool(program.filter(frame))


def _relevant(linktype: int, frame: bytes) -> bool:
    _status, events = decode_frame(linktype, frame, 0)
    return bool(events)


def test_filter_admits_every_relevant_packet_of_real_captures(real_capture: Path) -> None:
    path = real_capture
    programs: dict[int, tuple[object, object]] = {}
    n_relevant = n_admitted = 0
    for _ts, linktype, _wirelen, frame in read_records(path):
        if linktype not in programs:
            dlt = _dlt(linktype)
            extra = _EXTRA_ETH if linktype == LINKTYPE_ETHERNET else _EXTRA
            programs[linktype] = (
                bpf.compile_filter(bpf.filter_for(dlt), linktype=dlt, snaplen=65535),
                bpf.compile_filter(extra, linktype=dlt, snaplen=65535),
            )
        wanted, allowed_extra = programs[linktype]
        is_admitted = bool(wanted.filter(frame))  # type: ignore[attr-defined]
        is_relevant = _relevant(linktype, frame)
        n_relevant += is_relevant
        n_admitted += is_admitted
        assert is_admitted or not is_relevant, "a relevant packet was filtered out"
        if is_admitted and not is_relevant:
            assert allowed_extra.filter(frame), "admitted a packet not to or from port 53"  # type: ignore[attr-defined]
    assert n_admitted >= n_relevant


def _dns_query(name: str = "mail.example.com", qtype: str = "A") -> Packet:
    return DNS(id=7, rd=1, qd=DNSQR(qname=name, qtype=qtype))


def _dns_tcp(query: Packet) -> bytes:
    body = raw(query)
    return len(body).to_bytes(2, "big") + body


V4 = IP(src="198.51.100.1", dst="198.51.100.2")
V6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
SYN_445 = TCP(sport=40000, dport=445, flags="S")

# name -> (frame on Ethernet, should the filter admit it)
CRAFTED: dict[str, tuple[Packet, bool]] = {
    "udp-query": (ETH / V4 / UDP(sport=5353, dport=53) / _dns_query(), True),
    "udp-query-ip-options": (
        ETH
        / IP(src="198.51.100.1", dst="198.51.100.2", options=[IPOption_Router_Alert()])
        / UDP(sport=5353, dport=53)
        / _dns_query(),
        True,
    ),
    "udp-query-vlan": (ETH / Dot1Q(vlan=10) / V4 / UDP(dport=53) / _dns_query(), True),
    "udp-query-qinq": (
        ETH / Dot1AD(vlan=20) / Dot1Q(vlan=10) / V4 / UDP(dport=53) / _dns_query(),
        True,
    ),
    "udp-query-v6": (ETH / V6 / UDP(dport=53) / _dns_query(qtype="MX"), True),
    "udp-query-v6-vlan": (ETH / Dot1Q(vlan=10) / V6 / UDP(dport=53) / _dns_query(), True),
    "udp-query-v6-hop-by-hop": (
        ETH / V6 / IPv6ExtHdrHopByHop() / UDP(dport=53) / _dns_query(),
        True,
    ),
    "udp-response": (
        ETH
        / V4
        / UDP(sport=53, dport=5353)
        / DNS(id=7, qr=1, qd=DNSQR(qname="mail.example.com"), an=DNSRR(rrname="mail.example.com")),
        True,
    ),
    "udp-nxdomain-v6-qinq": (
        ETH
        / Dot1AD(vlan=20)
        / Dot1Q(vlan=10)
        / V6
        / UDP(sport=53, dport=40001)
        / DNS(id=7, qr=1, rcode=3, qd=DNSQR(qname="xjwqkepz.info")),
        True,
    ),
    "tcp-query": (
        ETH / V4 / TCP(sport=40001, dport=53, flags="PA") / _dns_tcp(_dns_query()),
        True,
    ),
    "tcp-query-v6-vlan": (
        ETH / Dot1Q(vlan=10) / V6 / TCP(sport=40001, dport=53, flags="PA") / _dns_tcp(_dns_query()),
        True,
    ),
    "tcp-syn-to-53": (ETH / V4 / TCP(sport=40001, dport=53, flags="S"), False),
    "tcp-syn-to-53-v6": (ETH / V6 / TCP(sport=40001, dport=53, flags="S"), False),
    "tcp-response": (
        ETH
        / V4
        / TCP(sport=53, dport=40001, flags="PA")
        / _dns_tcp(DNS(id=7, qr=1, qd=DNSQR(qname="a.example"))),
        True,
    ),
    "tcp-response-v6-vlan": (
        ETH
        / Dot1Q(vlan=10)
        / V6
        / TCP(sport=53, dport=40001, flags="PA")
        / _dns_tcp(DNS(id=7, qr=1, rcode=3, qd=DNSQR(qname="a.example"))),
        True,
    ),
    "tcp-syn-ack-from-53": (ETH / V4 / TCP(sport=53, dport=40001, flags="SA"), False),
    "syn-445": (ETH / V4 / SYN_445, True),
    "syn-135-vlan": (ETH / Dot1Q(vlan=10) / V4 / TCP(dport=135, flags="S"), True),
    "syn-139-qinq": (
        ETH / Dot1AD(vlan=20) / Dot1Q(vlan=10) / V4 / TCP(dport=139, flags="S"),
        True,
    ),
    "syn-445-v6": (ETH / V6 / SYN_445, True),
    "syn-445-v6-qinq": (ETH / Dot1AD(vlan=20) / Dot1Q(vlan=10) / V6 / SYN_445, True),
    "syn-ecn-445": (ETH / V4 / TCP(dport=445, flags="SEC"), True),
    "synack-445": (ETH / V4 / TCP(sport=445, dport=40000, flags="SA"), False),
    "synack-to-445-v6": (ETH / V6 / TCP(dport=445, flags="SA"), False),
    "ack-445": (ETH / V4 / TCP(dport=445, flags="A"), False),
    "syn-80": (ETH / V4 / TCP(dport=80, flags="S"), False),
    "syn-80-v6-vlan": (ETH / Dot1Q(vlan=10) / V6 / TCP(dport=80, flags="S"), False),
    "pppoe-query": (ETH / PPPoE() / PPP(proto=0x0021) / V4 / UDP(dport=53) / _dns_query(), True),
    "pppoe-syn-v6": (ETH / PPPoE() / PPP(proto=0x0057) / V6 / TCP(dport=135, flags="S"), True),
    "pppoe-udp-54": (
        ETH / PPPoE() / PPP(proto=0x0021) / V4 / UDP(sport=5000, dport=54) / (b"x" * 20),
        False,
    ),
    "pppoe-udp-answer": (
        ETH / PPPoE() / PPP(proto=0x0021) / V4 / UDP(sport=53, dport=5000) / DNS(id=1, qr=1),
        True,
    ),
    "pppoe-udp-answer-v6": (
        ETH / PPPoE() / PPP(proto=0x0057) / V6 / UDP(sport=53, dport=5000) / DNS(id=1, qr=1),
        True,
    ),
    "icmp": (ETH / V4 / ICMP(), False),
    "arp": (ETH / ARP(psrc="198.51.100.1", pdst="198.51.100.2"), False),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_filter_on_crafted_frames(name: str) -> None:
    packet, expected = CRAFTED[name]
    frame = raw(packet)
    assert _relevant(LINKTYPE_ETHERNET, frame) == expected, "test frame does not say what it means"
    assert _admits(LINKTYPE_ETHERNET, bpf.default_filter(), frame) == expected


@pytest.mark.parametrize("tagged", [False, True], ids=["untagged", "vlan"])
def test_every_ipv4_fragment_is_admitted_for_reassembly(tagged: bool) -> None:
    """A later fragment has no ports: the filter cannot tell a query's from
    another's, so it admits every IPv4 fragment of TCP or UDP (and the decoder
    reassembles them; docs/DECODING.md)."""
    link = ETH / Dot1Q(vlan=10) if tagged else ETH
    later = link / IP(src="198.51.100.1", dst="198.51.100.2", proto=17, frag=100) / raw(b"x" * 40)
    first = link / IP(src="198.51.100.1", dst="198.51.100.2", proto=6, flags="MF") / raw(b"y" * 8)
    icmp = link / IP(src="198.51.100.1", dst="198.51.100.2", proto=1, frag=100) / raw(b"z" * 8)
    text = bpf.default_filter()
    assert _admits(LINKTYPE_ETHERNET, text, raw(later))
    assert _admits(LINKTYPE_ETHERNET, text, raw(first))
    assert not _admits(LINKTYPE_ETHERNET, text, raw(icmp))


def test_cooked_capture_filter_has_no_vlan_clauses() -> None:
    query = CookedLinux(pkttype=0, lladdrtype=1, proto=0x0800) / V4 / UDP(dport=53) / _dns_query()
    response = CookedLinux(pkttype=0, lladdrtype=1, proto=0x0800) / V4 / UDP(sport=53, dport=9)
    other = CookedLinux(pkttype=0, lladdrtype=1, proto=0x0800) / V4 / UDP(sport=5000, dport=9)
    text = bpf.filter_for(LINKTYPE_LINUX_SLL)
    assert "vlan" not in text
    assert _admits(LINKTYPE_LINUX_SLL, text, raw(query))
    assert _admits(LINKTYPE_LINUX_SLL, text, raw(response / DNS(id=1, qr=1)))
    assert not _admits(LINKTYPE_LINUX_SLL, text, raw(other / _dns_query()))


def test_operator_filter_narrows_at_every_tag_depth() -> None:
    text = bpf.combine("src host 198.51.100.1")
    ours = V4 / UDP(dport=53) / _dns_query()
    theirs = IP(src="198.51.100.9", dst="198.51.100.2") / UDP(dport=53) / _dns_query()
    for tags in ((), (Dot1Q(vlan=10),), (Dot1AD(vlan=20), Dot1Q(vlan=10))):
        head = ETH
        for tag in tags:
            head = head / tag
        assert _admits(LINKTYPE_ETHERNET, text, raw(head / ours)), tags
        assert not _admits(LINKTYPE_ETHERNET, text, raw(head / theirs)), tags


def test_combine_without_operator_filter_is_the_default() -> None:
    assert bpf.combine(None) == bpf.default_filter()
    assert bpf.combine("  ") == bpf.default_filter()


def test_operator_filter_with_vlan_is_refused() -> None:
    with pytest.raises(WormwatchError, match="vlan"):
        bpf.combine("vlan 100")


def test_filter_that_does_not_compile_shows_libpcap_message() -> None:
    with pytest.raises(WormwatchError, match=r"BPF filter does not compile: .*syntax error"):
        bpf.compile_filter(bpf.combine("port 53 and and"), linktype=LINKTYPE_ETHERNET)
