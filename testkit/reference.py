"""Slow, obvious reference decoder: docs/DECODING.md written out line by line.

Place in the data flow: it stands beside the numba decode stage, not in it.
A capture file goes in (:func:`read_records`), per-packet statuses and
:class:`RefEvent` rows come out (:func:`decode_frame` for one frame alone,
:class:`RefDecoder` for frames in order with IP fragment reassembly by
``reference_reassembly``, :func:`reference_events` for a file), and
:func:`host_counts` folds events into the per-host totals the aggregate stage
must reach. Tests compare the kernel with this, packet by packet.

dpkt parses the fixed IPv4, UDP and TCP headers (its field tables are the
point of using it). Everything where dpkt's behaviour differs from the rule book
is explicit code: the link layers (dpkt caps nothing and guesses 802.3/LLC),
the IPv4 total-length rule (dpkt reads ``len == 0`` as "to the end"), the IPv6
extension-header walk, TCP flags from 14 bytes, the DNS-over-TCP walk, and DNS
names (``dpkt.dns.unpack_name`` rejects forward pointers, counts the 255-byte
limit in wire bytes and decodes UTF-8).

Readings of the rule book where its text leaves a choice (each marked "Reading:"
below) are listed in the module-level comments next to the code they govern.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import dpkt

from wormwatch import model
from wormwatch.model import (
    KIND_ANSWER,
    KIND_DNS,
    KIND_SYN,
    ST_FRAGMENT,
    ST_IGNORED,
    ST_MALFORMED,
    ST_OK,
    ST_TRUNCATED,
    ST_UNSUPPORTED,
)

from testkit.pcap import read_records
from testkit.reference_dnstcp import Message, RefTcpFlows
from testkit.reference_reassembly import RefFragment, RefReassembler

__all__ = [
    "RefDecoder",
    "RefEvent",
    "answer_counts",
    "decode_frame",
    "default_keyword",
    "host_counts",
    "read_records",
    "reference_events",
]

ETH_VLAN_TAGS = (0x8100, 0x88A8, 0x9100)
ETH_PPPOE_SESSION = 0x8864
ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057
MAX_TAGS = 8
NULL_FAMILY_V4 = (2,)
NULL_FAMILY_V6 = (10, 24, 28, 30)
# IPv6 extension headers: 0 hop-by-hop, 43 routing, 60 destination options,
# 135 mobility use 8-octet units (RFC 8200 4.3, RFC 6275 6.1.1); 51 AH 4-octet (RFC 4302).
IP6_EXT_8 = (0, 43, 60, 135)
IP6_AH = 51
IP6_FRAG = 44
MAX_EXT_HEADERS = 16
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_GRE = 47
GRE_TEB = 0x6558
GRE_ERSPAN2 = 0x88BE
GRE_ERSPAN3 = 0x22EB
DNS_PORT = 53
MAX_POINTER_JUMPS = 128
KEYWORDS = (b"mail", b"smtp", b"mx", b"ns", b"gate", b"relay")


@dataclass(frozen=True)
class RefEvent:
    """One event as the reference sees it (mirrors a row of ``model.Events``)."""

    ts_us: int
    src: str
    dst: str
    kind: int
    dport: int
    qtype: int
    name: bytes
    rcode: int = 0


class PacketProblemError(Exception):
    """Stops the walk of one packet with a status (never leaves this module)."""

    def __init__(self, status: int) -> None:
        super().__init__(model.STATUS_NAMES[status])
        self.status = status


class FragmentError(PacketProblemError):
    """Stops the walk of a fragment: status ``fragment``, and what reassembly needs."""

    def __init__(self, fragment: RefFragment) -> None:
        super().__init__(ST_FRAGMENT)
        self.fragment = fragment


# --- link layer -------------------------------------------------------------


def _ethertype_payload(frame: bytes, pos: int, ethertype: int) -> tuple[int, int]:
    """Skip VLAN tags and PPPoE from ``pos``; return (IP version 4/6 or 0, offset)."""
    n_tags = 0
    while ethertype in ETH_VLAN_TAGS:
        n_tags += 1
        if n_tags > MAX_TAGS:
            raise PacketProblemError(ST_MALFORMED)
        if pos + 4 > len(frame):
            raise PacketProblemError(ST_TRUNCATED)
        ethertype = struct.unpack_from(">H", frame, pos + 2)[0]
        pos += 4
    if ethertype == ETH_PPPOE_SESSION:
        if pos + 8 > len(frame):
            raise PacketProblemError(ST_TRUNCATED)
        ppp = struct.unpack_from(">H", frame, pos + 6)[0]
        pos += 8
        return {PPP_IPV4: 4, PPP_IPV6: 6}.get(ppp, 0), pos
    return {ETH_IPV4: 4, ETH_IPV6: 6}.get(ethertype, 0), pos


def _need(frame: bytes, n: int) -> None:
    if len(frame) < n:
        raise PacketProblemError(ST_TRUNCATED)


def _link(linktype: int, frame: bytes) -> tuple[int, int]:
    """Return (IP version 4/6, or 0 for "not IP": ignored; offset of the IP header)."""
    if linktype == model.LINKTYPE_ETHERNET:
        _need(frame, 14)
        return _ethertype_payload(frame, 14, struct.unpack_from(">H", frame, 12)[0])
    if linktype == model.LINKTYPE_LINUX_SLL:
        _need(frame, 16)
        return _ethertype_payload(frame, 16, struct.unpack_from(">H", frame, 14)[0])
    if linktype == model.LINKTYPE_LINUX_SLL2:
        # Reading: SLL2's protocol is an ethertype, dispatched as for SLL (tags, PPPoE).
        _need(frame, 20)
        return _ethertype_payload(frame, 20, struct.unpack_from(">H", frame, 0)[0])
    if linktype in (model.LINKTYPE_RAW, model.LINKTYPE_RAW_OLD, model.LINKTYPE_RAW_BSD):
        _need(frame, 1)
        version = frame[0] >> 4
        if version not in (4, 6):
            raise PacketProblemError(ST_MALFORMED)
        return version, 0
    if linktype == model.LINKTYPE_IPV4:
        return 4, 0
    if linktype == model.LINKTYPE_IPV6:
        return 6, 0
    if linktype in (model.LINKTYPE_NULL, model.LINKTYPE_LOOP):
        _need(frame, 4)
        families = [struct.unpack_from(">I", frame, 0)[0]]
        if linktype == model.LINKTYPE_NULL:
            families.append(struct.unpack_from("<I", frame, 0)[0])
        if any(f in NULL_FAMILY_V4 for f in families):
            return 4, 4
        if any(f in NULL_FAMILY_V6 for f in families):
            return 6, 4
        return 0, 4
    raise PacketProblemError(ST_UNSUPPORTED)


# --- IP -------------------------------------------------------------------------


def _ipv4(buf: bytes) -> tuple[str, str, int, bytes, int]:
    """-> (source, destination, protocol, captured payload, payload length as sent)."""
    _need(buf, 20)
    if buf[0] >> 4 != 4 or buf[0] & 0x0F < 5:
        raise PacketProblemError(ST_MALFORMED)
    ip = dpkt.ip.IP(buf)
    header_len = ip.hl * 4
    if ip.len < header_len:
        raise PacketProblemError(ST_MALFORMED)
    # flags and offset (RFC 791): MF set or a non-zero offset (8-octet units) is a fragment
    field = struct.unpack_from(">H", buf, 6)[0]
    if field & 0x3FFF:
        raise FragmentError(
            RefFragment(4, ip.src, ip.dst, ip.id, ip.p, (field & 0x1FFF) * 8,
                        bool(field & 0x2000), buf[header_len : ip.len], ip.len - header_len)
        )  # fmt: skip
    # Reading: options running past the captured bytes are a truncated header.
    _need(buf, header_len)
    payload = buf[header_len : min(ip.len, len(buf))]
    protocol, sent = ip.p, ip.len - header_len
    if protocol == IP6_AH:
        # Reading: IPsec AH (transport mode) is walked as in IPv6, to what it protects.
        _need(payload, 2)
        length = (payload[1] + 2) * 4
        _need(payload, length)
        protocol, payload, sent = payload[0], payload[length:], sent - length
    src, dst = dpkt.utils.inet_to_str(ip.src), dpkt.utils.inet_to_str(ip.dst)
    return src, dst, protocol, payload, sent


def _ipv6(buf: bytes) -> tuple[str, str, int, bytes, int]:
    """-> (source, destination, protocol, captured payload, payload length as sent)."""
    _need(buf, 40)
    if buf[0] >> 4 != 6:
        raise PacketProblemError(ST_MALFORMED)
    payload_len = struct.unpack_from(">H", buf, 4)[0]
    # A payload length of 0 (jumbogram, RFC 2675) is read to the end of the capture.
    end = len(buf) if payload_len == 0 else min(40 + payload_len, len(buf))
    next_header, pos, n_ext = buf[6], 40, 0
    while next_header in (*IP6_EXT_8, IP6_AH, IP6_FRAG):
        n_ext += 1
        if n_ext > MAX_EXT_HEADERS:
            raise PacketProblemError(ST_MALFORMED)
        if next_header == IP6_FRAG:
            if pos + 8 > end:
                raise PacketProblemError(ST_TRUNCATED)
            field = struct.unpack_from(">H", buf, pos + 2)[0]
            # offset 0 with M clear is an atomic fragment (RFC 6946): decoded as is
            if field & 0xFFF9:
                ident = struct.unpack_from(">I", buf, pos + 4)[0]
                sent = 40 + payload_len
                raise FragmentError(
                    RefFragment(6, buf[8:24], buf[24:40], ident, buf[pos], field & 0xFFF8,
                                bool(field & 1), buf[pos + 8 : sent],
                                -1 if payload_len == 0 else sent - pos - 8)
                )  # fmt: skip
            length = 8
        else:
            if pos + 2 > end:
                raise PacketProblemError(ST_TRUNCATED)
            unit, extra = (4, 2) if next_header == IP6_AH else (8, 1)
            length = (buf[pos + 1] + extra) * unit
        # A header that ends past the payload is truncated where it is met, before any
        # header after it is looked at: 17 headers cut inside the 16th are truncated,
        # not "too many" (tshark: "Packet size limited during capture", at the 16th).
        if pos + length > end:
            raise PacketProblemError(ST_TRUNCATED)
        next_header = buf[pos]
        pos += length
    src = dpkt.utils.inet_to_str(buf[8:24])
    dst = dpkt.utils.inet_to_str(buf[24:40])
    sent = len(buf) if payload_len == 0 else 40 + payload_len
    return src, dst, next_header, buf[pos:end], sent - pos


# --- GRE (one level) -------------------------------------------------------


def _gre(payload: bytes) -> tuple[int, bytes]:
    """A GRE packet (the outer IP payload) -> (inner IP version, bytes from the inner IP
    header); version 0 means "not IP": ignored."""
    _need(payload, 4)
    flags, protocol = struct.unpack_from(">HH", payload, 0)
    # Version 1 (PPTP) and a routing list (R, RFC 1701) are not followed.
    if flags & 0x0007 or flags & 0x4000:
        raise PacketProblemError(ST_IGNORED)
    # C (checksum), K (key), S (sequence number): 4 bytes each; other bits not looked at
    pos = 4 + 4 * sum(1 for bit in (0x8000, 0x2000, 0x1000) if flags & bit)
    _need(payload, pos)
    if protocol in (ETH_IPV4, ETH_IPV6):
        return (4 if protocol == ETH_IPV4 else 6), payload[pos:]
    if protocol == GRE_ERSPAN2 and flags & 0x1000:
        # ERSPAN type II: 8-byte header of version 1 (type I, without S, has none)
        _need(payload, pos + 8)
        if payload[pos] >> 4 != 1:
            raise PacketProblemError(ST_IGNORED)
        pos += 8
    elif protocol == GRE_ERSPAN3:
        # ERSPAN type III: 12 bytes of version 2, frame type 0 (Ethernet); O set: 8 more
        _need(payload, pos + 12)
        field = struct.unpack_from(">H", payload, pos + 10)[0]
        if payload[pos] >> 4 != 2 or (field >> 10) & 0x1F:
            raise PacketProblemError(ST_IGNORED)
        pos += 12 + (8 if field & 1 else 0)
        _need(payload, pos)
    elif protocol not in (GRE_TEB, GRE_ERSPAN2):
        raise PacketProblemError(ST_IGNORED)
    frame = payload[pos:]
    _need(frame, 14)
    version, offset = _ethertype_payload(frame, 14, struct.unpack_from(">H", frame, 12)[0])
    return version, frame[offset:]


# --- DNS --------------------------------------------------------------------


def _read_name(msg: bytes, pos: int) -> tuple[bytes, int]:
    """Decode the name at ``pos``; return (name, offset after the name on the wire)."""
    labels: list[bytes] = []
    name_len = -1
    after = -1
    jumps = 0
    while True:
        if pos >= len(msg):
            raise PacketProblemError(ST_TRUNCATED)
        length = msg[pos]
        if length == 0:
            pos += 1
            break
        top = length & 0xC0
        if top == 0xC0:
            if pos + 2 > len(msg):
                raise PacketProblemError(ST_TRUNCATED)
            jumps += 1
            if jumps > MAX_POINTER_JUMPS:
                raise PacketProblemError(ST_MALFORMED)
            if after < 0:
                after = pos + 2
            pos = struct.unpack_from(">H", msg, pos)[0] & 0x3FFF
            continue
        if top != 0:
            raise PacketProblemError(ST_MALFORMED)
        if pos + 1 + length > len(msg):
            raise PacketProblemError(ST_TRUNCATED)
        name_len += 1 + length
        if name_len > model.NAME_MAX:
            raise PacketProblemError(ST_MALFORMED)
        labels.append(msg[pos + 1 : pos + 1 + length])
        pos += 1 + length
    name = b".".join(labels)
    lowered = bytes(b + 32 if 0x41 <= b <= 0x5A else b for b in name)
    return lowered, (after if after >= 0 else pos)


def _dns_message(msg: bytes, to_dns: bool, from_dns: bool) -> tuple[Message, int] | None:
    """A complete-header DNS message -> ((kind, qtype, name, rcode), status) if it is a
    query sent to port 53 or an answer sent from it, else None.

    ``status`` is ok, or the problem met while reading the first question.
    """
    flags, qdcount = struct.unpack_from(">HH", msg, 2)
    is_response = bool(flags & 0x8000)
    if (flags >> 11) & 0x0F != 0:
        return None
    if not is_response and to_dns:
        kind, rcode = KIND_DNS, 0
    elif is_response and from_dns:
        kind, rcode = KIND_ANSWER, flags & 0x0F
    else:
        return None
    if qdcount == 0:
        return (kind, 0, b"", rcode), ST_OK
    try:
        name, pos = _read_name(msg, 12)
        if pos + 2 > len(msg):
            raise PacketProblemError(ST_TRUNCATED)
    except PacketProblemError as problem:
        return (kind, 0, b"", rcode), problem.status
    return (kind, struct.unpack_from(">H", msg, pos)[0], name, rcode), ST_OK


def _first(status: int, new: int) -> int:
    """Status precedence: the first problem met stays."""
    return new if status == ST_OK else status


# --- transport and the whole frame --------------------------------------------


def _udp(payload: bytes) -> tuple[int, list[Message], int]:
    """Return (dport, events, status) of a UDP datagram."""
    _need(payload, 8)
    udp = dpkt.udp.UDP(payload[:8])
    if udp.ulen < 8:
        raise PacketProblemError(ST_MALFORMED)
    to_dns, from_dns = udp.dport == DNS_PORT, udp.sport == DNS_PORT
    if not (to_dns or from_dns):
        raise PacketProblemError(ST_IGNORED)
    # A UDP length of 8 is an empty datagram whatever follows (tcpdump dns-zlip-1).
    if udp.ulen == 8:
        raise PacketProblemError(ST_IGNORED)
    msg = payload[8 : udp.ulen]
    if len(msg) < 12:
        raise PacketProblemError(ST_TRUNCATED)
    query = _dns_message(msg, to_dns, from_dns)
    if query is None:
        raise PacketProblemError(ST_IGNORED)
    return udp.dport, [query[0]], query[1]


@dataclass(frozen=True)
class _Segment:
    """A TCP segment to or from port 53 with a payload: what the flow table needs."""

    sport: int
    dport: int
    seq: int
    payload: bytes
    sent: int  # payload bytes as sent (the capture may hold fewer)


def _tcp(payload: bytes, sent_len: int) -> tuple[int, _Segment | None, bool]:
    """Return (dport, the DNS segment or None, is_syn_event) of a TCP segment."""
    _need(payload, 14)
    dport = struct.unpack_from(">H", payload, 2)[0]
    flags = payload[13]
    if len(payload) >= 20 and payload[12] >> 4 < 5:
        raise PacketProblemError(ST_MALFORMED)
    if flags & 0x12 == 0x02 and dport in model.SYN_PORTS:
        return dport, None, True
    sport = struct.unpack_from(">H", payload, 0)[0]
    if DNS_PORT not in (dport, sport):
        raise PacketProblemError(ST_IGNORED)
    _need(payload, 20)
    tcp = dpkt.tcp.TCP(payload[:20])
    header_len = tcp.off * 4
    _need(payload, header_len)
    segment = payload[header_len:]
    if not segment:
        raise PacketProblemError(ST_IGNORED)
    # a SYN takes the first sequence number, its data (TCP Fast Open) the ones after it
    seq = (tcp.seq + (1 if flags & 0x02 else 0)) % (1 << 32)
    return dport, _Segment(sport, dport, seq, segment, sent_len - header_len), False


def decode_frame(linktype: int, frame: bytes, ts_us: int) -> tuple[int, list[RefEvent]]:
    """Decode one captured frame into (status, events) per docs/DECODING.md, alone:
    a fragment is status ``fragment`` (no reassembly), a DNS-over-TCP segment is read
    as the first of its flow (see :class:`RefDecoder`)."""
    status, events, _ = _decode(linktype, frame, ts_us, RefTcpFlows(max_flows=0))
    return status, events


def _decode(
    linktype: int, frame: bytes, ts_us: int, flows: RefTcpFlows
) -> tuple[int, list[RefEvent], RefFragment | None]:
    try:
        version, offset = _link(linktype, frame)
        if version == 0:
            return ST_IGNORED, [], None
        ip = _ipv4 if version == 4 else _ipv6
        src, dst, proto, payload, sent_len = ip(frame[offset:])
        if proto == PROTO_GRE:
            # Reading: one level; the inner packet is what the outer one's payload holds
            # (captured, within its length), and its addresses are the event's.
            version, inner = _gre(payload)
            if version == 0:
                return ST_IGNORED, [], None
            ip = _ipv4 if version == 4 else _ipv6
            src, dst, proto, payload, sent_len = ip(inner)
        if proto == PROTO_UDP:
            dport, queries, status = _udp(payload)
            is_syn = False
        elif proto == PROTO_TCP:
            dport, seg, is_syn = _tcp(payload, sent_len)
            queries, status = [], ST_OK
            if seg is not None:
                to_dns, from_dns = seg.dport == DNS_PORT, seg.sport == DNS_PORT
                queries, status = flows.segment(
                    (src, dst, seg.sport, seg.dport), seg.seq, seg.payload, seg.sent, ts_us,
                    lambda msg: _dns_message(msg, to_dns, from_dns),
                )  # fmt: skip
        else:
            return ST_IGNORED, [], None
    except FragmentError as fragment:
        return ST_FRAGMENT, [], fragment.fragment
    except PacketProblemError as problem:
        return problem.status, [], None
    if is_syn:
        return ST_OK, [RefEvent(ts_us, src, dst, KIND_SYN, dport, 0, b"")], None
    events = [RefEvent(ts_us, src, dst, k, dport, q, n, r) for k, q, n, r in queries]
    if status == ST_OK and not events:
        status = ST_IGNORED
    return status, events, None


class RefDecoder:
    """Frames in capture order -> (status, events), with fragment reassembly.

    A fragment that completes a datagram gets the status and events of the datagram
    (decoded as a raw IP packet, stamped with the fragment's time, its DNS-over-TCP
    segment read as the first of its flow); every other fragment is ``fragment`` with
    no events. DNS-over-TCP segments go through the flow table ``flows``.
    """

    def __init__(
        self, reassembler: RefReassembler | None = None, flows: RefTcpFlows | None = None
    ) -> None:
        self.reassembler = RefReassembler() if reassembler is None else reassembler
        self.flows = RefTcpFlows() if flows is None else flows

    def decode(self, linktype: int, frame: bytes, ts_us: int) -> tuple[int, list[RefEvent]]:
        status, events, fragment = _decode(linktype, frame, ts_us, self.flows)
        if fragment is None:
            return status, events
        datagram = self.reassembler.add(fragment, ts_us)
        if datagram is None:
            return ST_FRAGMENT, []
        # the datagram is decoded like any raw-IP frame; a fragment inside it stays one
        return decode_frame(model.LINKTYPE_RAW, datagram, ts_us)


def reference_events(
    path: str | Path, decoder: RefDecoder | None = None
) -> tuple[list[int], list[RefEvent]]:
    """Decode a whole capture: (status per packet, all events in packet order)."""
    decoder = RefDecoder() if decoder is None else decoder
    statuses: list[int] = []
    events: list[RefEvent] = []
    for ts_us, linktype, _, frame in read_records(path):
        status, packet_events = decoder.decode(linktype, frame, ts_us)
        statuses.append(status)
        events.extend(packet_events)
    return statuses, events


# --- per-host totals ------------------------------------------------------------


def default_keyword(name: bytes) -> bool:
    """The default keyword rule: the first label starts with a mail-server word."""
    first_label = name.split(b".", 1)[0].lower()
    return first_label.startswith(KEYWORDS)


QTYPE_COLUMNS = {model.QTYPE_A: "A", model.QTYPE_AAAA: "AAAA", model.QTYPE_MX: "MX"}
QTYPE_COLUMNS[model.QTYPE_PTR] = "PTR"
COUNT_KEYS = ("queries", "A", "AAAA", "MX", "PTR", "other", "keyword")
SYN_KEYS = ("syn135", "syn139", "syn445", "syn_targets")
# DNS answers a host received (it is their destination), and the NXDOMAIN ones
ANSWER_KEYS = ("answers", "nxdomain")


def host_counts(
    events: Iterable[RefEvent], keyword_fn: Callable[[bytes], bool] = default_keyword
) -> dict[str, dict[str, int]]:
    """Fold events into per-host totals: a query's or SYN's source, an answer's
    destination (the client it answers).

    Keys per host: ``queries A AAAA MX PTR other keyword syn135 syn139 syn445
    syn_targets answers nxdomain first_seen_us last_seen_us`` (``syn_targets`` =
    distinct SYN destinations; first/last seen over all of the host's events).
    """
    counts: dict[str, dict[str, int]] = {}
    targets: dict[str, set[str]] = {}
    for ev in events:
        addr = ev.dst if ev.kind == KIND_ANSWER else ev.src
        host = counts.get(addr)
        if host is None:
            host = dict.fromkeys((*COUNT_KEYS, *SYN_KEYS, *ANSWER_KEYS), 0)
            host["first_seen_us"] = host["last_seen_us"] = ev.ts_us
            counts[addr] = host
            targets[addr] = set()
        host["first_seen_us"] = min(host["first_seen_us"], ev.ts_us)
        host["last_seen_us"] = max(host["last_seen_us"], ev.ts_us)
        if ev.kind == KIND_ANSWER:
            host["answers"] += 1
            host["nxdomain"] += int(ev.rcode == model.RCODE_NXDOMAIN)
            continue
        if ev.kind == KIND_SYN:
            host[f"syn{ev.dport}"] += 1
            targets[ev.src].add(ev.dst)
            host["syn_targets"] = len(targets[ev.src])
            continue
        host["queries"] += 1
        host[QTYPE_COLUMNS.get(ev.qtype, "other")] += 1
        host["keyword"] += int(keyword_fn(ev.name))
    return counts


def answer_counts(events: Iterable[RefEvent]) -> dict[str, dict[str, int]]:
    """Per client (an answer's destination): DNS answers and NXDOMAIN answers received."""
    counts: dict[str, dict[str, int]] = {}
    for ev in events:
        if ev.kind != KIND_ANSWER:
            continue
        got = counts.setdefault(ev.dst, {"answers": 0, "nxdomain": 0})
        got["answers"] += 1
        got["nxdomain"] += int(ev.rcode == model.RCODE_NXDOMAIN)
    return counts
