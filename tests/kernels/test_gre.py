"""One level of GRE (docs/DECODING.md, "GRE"): a remote mirror port's tunnel.

Frames are built with scapy's GRE and ERSPAN layers: queries, answers, SYNs to 445 and a
DNS-over-TCP flow inside ERSPAN II (and type I), ERSPAN III (with and without its platform
sub-header), GRE/Ethernet and GRE/IP, in IPv4 and IPv6, with and without GRE's checksum,
key and sequence number. The kernel is compared with the dpkt reference frame by frame
and cut at every byte, and the whole file through the real source (the walker's
relevance test included) with what tshark 4.0 shows for it.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE, Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

from wormwatch.decode import Decoder
from wormwatch.kernels.prefilter import is_ignored
from wormwatch.model import (
    KIND_ANSWER,
    KIND_DNS,
    KIND_SYN,
    LINKTYPE_ETHERNET,
    ST_IGNORED,
    ST_OK,
    ST_TRUNCATED,
)

from testkit.decode_compare import kernel_decode_many, reference_decode
from testkit.events import decoder_events
from testkit.frames import ipv4_fragments
from testkit.reference import decode_frame, reference_events

OUTER4 = IP(src="198.51.100.1", dst="198.51.100.2")
OUTER6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
CLIENT, SERVER, VICTIM = "192.0.2.10", "192.0.2.53", "192.0.2.99"
CLIENT6, SERVER6 = "2001:db8:1::10", "2001:db8:1::53"


def _query(name: str = "mail.example") -> Packet:
    return IP(src=CLIENT, dst=SERVER) / UDP(sport=3333, dport=53) / DNS(qd=DNSQR(qname=name))


def _answer() -> Packet:
    dns = DNS(id=1, qr=1, rcode=3, qd=DNSQR(qname="gone.example", qtype="MX"))
    return IP(src=SERVER, dst=CLIENT) / UDP(sport=53, dport=3333) / dns


def _syn() -> Packet:
    return IP(src=CLIENT, dst=VICTIM) / TCP(sport=4444, dport=445, flags="S")


def _query6() -> Packet:
    dns = DNS(qd=DNSQR(qname="x.example", qtype="AAAA"))
    return IPv6(src=CLIENT6, dst=SERVER6) / UDP(sport=3333, dport=53) / dns


INNER = {"query": _query, "answer": _answer, "syn": _syn, "query6": _query6}
# what each inner packet counts as: (kind, source, destination)
EXPECTED = {
    "query": (KIND_DNS, CLIENT, SERVER),
    "answer": (KIND_ANSWER, SERVER, CLIENT),
    "syn": (KIND_SYN, CLIENT, VICTIM),
    "query6": (KIND_DNS, CLIENT6, SERVER6),
}


def _eth(ip: Packet) -> Packet:
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip


def _tunnels(ip: Packet) -> dict[str, Packet]:
    """``ip`` in each kind of tunnel (GRE header and what follows it)."""
    eth = _eth(ip)
    ethertype = 0x0800 if ip.version == 4 else 0x86DD
    return {
        "erspan2": GRE(proto=0x88BE, seqnum_present=1, sequence_number=7)
        / ERSPAN_II(session_id=3)
        / eth,
        "erspan1": GRE(proto=0x88BE) / eth,
        "erspan3": GRE(proto=0x22EB) / ERSPAN_III(session_id=3) / eth,
        "erspan3_platform": GRE(proto=0x22EB, seqnum_present=1)
        / ERSPAN_III(session_id=3, o=1)
        / ERSPAN_PlatformSpecific()
        / eth,
        "teb_key": GRE(proto=0x6558, key_present=1, key=9) / eth,
        "ip": GRE(proto=ethertype) / ip,
        "ip_cks": GRE(proto=ethertype, chksum_present=1, key_present=1, seqnum_present=1) / ip,
    }


def _framed(inner: Packet) -> dict[str, bytes]:
    """``inner`` in every tunnel, in an IPv4 and an IPv6 outer packet on Ethernet."""
    out = {}
    for tunnel, gre in _tunnels(inner).items():
        for outer_name, outer in (("v4", OUTER4), ("v6", OUTER6)):
            out[f"{tunnel}-{outer_name}"] = bytes(_eth(outer.copy() / gre.copy()))
    return out


CASES = [
    (f"{what}-{where}", what, frame)
    for what, make in INNER.items()
    for where, frame in _framed(make()).items()
]


def _kernel(frame: bytes) -> tuple[int, list[tuple[object, ...]]]:
    return kernel_decode_many([(LINKTYPE_ETHERNET, frame)])[0]


@pytest.mark.parametrize(("case", "what", "frame"), CASES, ids=[c[0] for c in CASES])
def test_the_packet_inside_counts_with_its_own_addresses(
    case: str, what: str, frame: bytes
) -> None:
    status, rows = _kernel(frame)
    assert (status, rows) == reference_decode(LINKTYPE_ETHERNET, frame), case
    kind, src, dst = EXPECTED[what]
    ref_status, ref_events = decode_frame(LINKTYPE_ETHERNET, frame, 0)
    assert status == ST_OK
    assert [(e.kind, e.src, e.dst) for e in ref_events] == [(kind, src, dst)]
    assert ref_status == ST_OK
    data = np.frombuffer(frame, np.uint8)
    assert not is_ignored(data, 0, len(data), LINKTYPE_ETHERNET)


CUT_CASES = [c for c in CASES if c[1] in ("query", "syn") and c[0].endswith("v4")]
CUT_CASES += [c for c in CASES if c[0] in ("query6-erspan3_platform-v6", "query-ip_cks-v6")]


@pytest.mark.parametrize(("case", "what", "frame"), CUT_CASES, ids=[c[0] for c in CUT_CASES])
def test_cut_at_every_byte_agrees_with_the_reference(case: str, what: str, frame: bytes) -> None:
    """A capture cut anywhere (snaplen): the outer IP's length says more than was
    captured, so every header the cut reaches is truncated, in kernel and reference."""
    cuts = [frame[:n] for n in range(len(frame))]
    kernel = kernel_decode_many([(LINKTYPE_ETHERNET, f) for f in cuts])
    for cut, got in zip(cuts, kernel, strict=True):
        assert got == reference_decode(LINKTYPE_ETHERNET, cut), (case, len(cut))
    # from the GRE header on, a cut is truncated (never ignored), but past the
    # question's qtype (the qclass is not needed)
    outer_end = 14 + (20 if case.endswith("v4") else 40)
    statuses = [s for s, _ in kernel[outer_end:]]
    whole = statuses.index(ST_OK) if ST_OK in statuses else len(statuses)
    assert set(statuses[:whole]) == {ST_TRUNCATED}, case
    assert set(statuses[whole:]) <= {ST_OK}, case


def _ignored_frames() -> dict[str, bytes]:
    q = _query()
    eth = _eth(q)
    gre_in_gre = IP(src="192.0.2.20", dst="192.0.2.21") / GRE(proto=0x0800) / q
    erspan3_ft_ip = GRE(proto=0x22EB) / ERSPAN_III(ft=2) / q
    frames = {
        "version 1 (PPTP)": GRE(proto=0x0800, version=1) / q,
        "routing (RFC 1701)": GRE(proto=0x0800, routing_present=1) / q,
        "a second GRE": GRE(proto=0x0800) / gre_in_gre,
        "ERSPAN II header of version 2": GRE(proto=0x88BE, seqnum_present=1)
        / ERSPAN_II(ver=2)
        / eth,
        "ERSPAN III header of version 1": GRE(proto=0x22EB) / ERSPAN_III(ver=1) / eth,
        "ERSPAN III frame type 2": erspan3_ft_ip,
        "another protocol (ARP)": GRE(proto=0x0806) / Raw(b"\x00" * 28),
        "Ethernet of ARP": GRE(proto=0x6558) / Ether(type=0x0806) / Raw(b"\x00" * 28),
    }
    return {k: bytes(_eth(OUTER4.copy() / v)) for k, v in frames.items()}


@pytest.mark.parametrize("name", list(_ignored_frames()))
def test_what_is_not_followed_is_ignored(name: str) -> None:
    """tshark 4.0 shows no query in these either, but for the second GRE (it follows
    every level; we follow one) and version 1 carrying IP (RFC 2784: version 0 only;
    PPTP's version 1 carries PPP, 0x880B, which tshark does not count either)."""
    frame = _ignored_frames()[name]
    assert _kernel(frame) == (ST_IGNORED, [])
    assert reference_decode(LINKTYPE_ETHERNET, frame) == (ST_IGNORED, [])


def test_reserved_bits_are_not_looked_at() -> None:
    """Recursion control, strict source route and the flags GRE reserves: tshark 4.0
    decodes the payload whatever they say, and so do we."""
    for gre in (
        GRE(proto=0x0800, recursion_control=3),
        GRE(proto=0x0800, strict_route_source=1),
        GRE(proto=0x0800, flags=3),
    ):
        frame = bytes(_eth(OUTER4.copy() / gre / _query()))
        assert _kernel(frame) == reference_decode(LINKTYPE_ETHERNET, frame)
        assert _kernel(frame)[0] == ST_OK


def _tcp_flow() -> list[bytes]:
    """A DNS-over-TCP query split across two segments, then a SYN to 445 whose IPv4
    datagram is cut in two fragments, all in ERSPAN II: the flow and the fragment
    pool work on the inner packets; then a GRE/IP query in two outer fragments."""
    msg = bytes(DNS(qd=DNSQR(qname="relay.example", qtype="MX")))
    stream = struct.pack("!H", len(msg)) + msg
    head = IP(src=CLIENT, dst=SERVER) / TCP(sport=5555, dport=53, flags="PA", seq=1000)
    first = head / Raw(stream[:9])
    second = head.copy()
    second[TCP].seq = 1009
    syn = IP(src=CLIENT, dst=VICTIM, id=77, flags="MF") / TCP(sport=4444, dport=445, flags="S")
    raw_syn = bytes(syn)
    frag1 = IP(raw_syn[:20] + raw_syn[20:28])
    frag1.len = 28
    frag2 = IP(raw_syn[:20] + raw_syn[28:])
    frag2.flags, frag2.frag, frag2.len = 0, 1, 20 + len(raw_syn) - 28
    inner = [first, second / Raw(stream[9:]), frag1, frag2]
    gre = GRE(proto=0x88BE, seqnum_present=1) / ERSPAN_II()
    tunnelled = [bytes(_eth(OUTER4.copy() / gre.copy() / _eth(p))) for p in inner]
    # and a tunnel whose outer datagram was fragmented: reassembled, then followed
    whole = bytes(_eth(OUTER4.copy() / GRE(proto=0x0800) / _query("ns1.example")))
    return tunnelled + ipv4_fragments(whole, 16)


def test_a_tunnel_capture_matches_the_reference_and_tshark(tmp_path: Path) -> None:
    """Every case above in one file, read through the real source (the walker's
    relevance test hands GRE frames on), against the reference and tshark 4.0.

    tshark 4.0 on this file (``-Y 'dns.flags.response == 0'``, ``dns.flags.response
    == 1 && dns.flags.rcode == 3``, ``tcp.flags.syn == 1 && tcp.flags.ack == 0 &&
    tcp.dstport == 445``, its reassembly on): 30 queries, 14 answers (NXDOMAIN) and 15
    SYNs, at the same packets, with the inner addresses as those of the innermost
    layer."""
    frames = [frame for _, _, frame in CASES] + _tcp_flow()
    path = tmp_path / "gre.pcap"
    wrpcap(str(path), [Ether(f) for f in frames])
    statuses, events = decoder_events(path)
    assert (statuses, events) == reference_events(path)
    kinds = [e.kind for e in events]
    counts = (kinds.count(KIND_DNS), kinds.count(KIND_ANSWER), kinds.count(KIND_SYN))
    assert counts == (30, 14, 15)
    assert [i for i, s in enumerate(statuses) if s == ST_OK] == [*range(56), 57, 59, 61]
    assert events[-3].name == b"relay.example"
    assert (events[-2].src, events[-2].dst, events[-2].dport) == (CLIENT, VICTIM, 445)
    assert (events[-1].src, events[-1].name) == (CLIENT, b"ns1.example")


def test_a_packet_cut_inside_the_tunnel_is_decoded_alone() -> None:
    """Batched with other packets, the inner packet ends where the outer one does:
    bytes after a short outer IP length (Ethernet padding) are no payload."""
    frame = bytes(_eth(OUTER4.copy() / GRE(proto=0x0800) / _query()))
    short = bytearray(frame)
    struct.pack_into("!H", short, 16, 20 + 4 + 20)  # outer length: GRE and the inner IP
    decoder = Decoder(max_events=64, reassemble=False)
    got = kernel_decode_many([(LINKTYPE_ETHERNET, bytes(short))], decoder=decoder)[0]
    assert got == reference_decode(LINKTYPE_ETHERNET, bytes(short))
    assert got[0] == ST_TRUNCATED
