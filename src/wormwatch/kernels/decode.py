"""Numba kernels of the decode stage: raw frames of a batch -> event rows.

source -> ``Batch`` (one bytes buffer, per-packet offset/caplen/linktype/ts) -> **these
kernels** -> event columns (ts, source and destination address, kind, dport, qtype, name, rcode)
plus one status per packet -> ``wormwatch.decode`` wraps them into ``Events`` and
``DecodeStats``. An IP fragment also gets a row of F_* columns (where its data is, its
offset, id, ...) for the reassembly kernel (kernels/reassemble.py); the datagrams that
kernel completes come back here as a second, small batch of raw IP packets.

What a packet counts as is docs/DECODING.md; the layers below follow its sections in
order. The data array is passed only to ``inline="always"`` helpers: they are merged into
the one compiled kernel, so no per-packet call passes an array.
Helpers return a status first; ``_GO`` means "nothing wrong yet, keep parsing".
"""

# ruff: noqa: PLR1714, SIM109
# (numba compiles chained == to plain compares; `in {...}` would build a set at run time)

# over 400 lines: the layers of one packet are kernels that call each other, and numba
# invalidates its cache per file, so they share this file (STYLE.md, Kernels)
from __future__ import annotations

import numpy as np
from numba import njit

from wormwatch.kernels.headers import (
    AF_INET,
    AF_INET6_BSD,
    AF_INET6_DARWIN,
    AF_INET6_FREEBSD,
    AF_INET6_LINUX,
    ASCII_CASE_BIT,
    ASCII_DOT,
    ASCII_UPPER_A,
    ASCII_UPPER_Z,
    DNS_FLAGS_OFF,
    DNS_LABEL_KIND,
    DNS_LABEL_POINTER,
    DNS_LEN,
    DNS_MAX_JUMPS,
    DNS_POINTER_HIGH,
    DNS_QDCOUNT_OFF,
    DNS_QR,
    DNS_QR_OPCODE,
    DNS_QTYPE_LEN,
    DNS_RCODE,
    DNS_RCODE_OFF,
    ETH_LEN,
    ETH_P_8021AD,
    ETH_P_8021Q,
    ETH_P_IP,
    ETH_P_IPV6,
    ETH_P_PPP_SES,
    ETH_P_QINQ1,
    ETH_TYPE_OFF,
    EXT_LEN_OFF,
    EXT_NXT_OFF,
    IP6_DST_OFF,
    IP6_FRAG_ID_OFF,
    IP6_FRAG_LEN,
    IP6_FRAG_OFFLG_OFF,
    IP6_HALF_LEN,
    IP6_LEN,
    IP6_MF,
    IP6_NXT_OFF,
    IP6_OFFMASK,
    IP6_PLEN_OFF,
    IP6_SRC_OFF,
    IP_ADDR_LEN,
    IP_DST_OFF,
    IP_FRAG_OFF,
    IP_ID_OFF,
    IP_LEN_MIN,
    IP_MF,
    IP_MF_SHIFT,
    IP_OFFMASK,
    IP_PROTO_AH,
    IP_PROTO_DSTOPTS,
    IP_PROTO_FRAGMENT,
    IP_PROTO_HOPOPTS,
    IP_PROTO_MOBILITY,
    IP_PROTO_OFF,
    IP_PROTO_ROUTING,
    IP_PROTO_TCP,
    IP_PROTO_UDP,
    IP_SRC_OFF,
    IP_TOTAL_LEN_OFF,
    LOOP_LEN,
    MAX_EXT_HEADERS,
    MAX_VLAN_TAGS,
    PORT_DNS,
    PORT_MSRPC,
    PORT_NETBIOS_SSN,
    PORT_SMB,
    PPP_IP,
    PPP_IPV6,
    PPPOE_LEN,
    PPPOE_PPP_OFF,
    SLL2_LEN,
    SLL2_PROTO_OFF,
    SLL_LEN,
    SLL_PROTO_OFF,
    TCP_DOFF_OFF,
    TCP_DPORT_OFF,
    TCP_FLAGS_END,
    TCP_FLAGS_OFF,
    TCP_LEN_MIN,
    TCP_SEQ_OFF,
    TCP_SPORT_OFF,
    TH_ACK,
    TH_SYN,
    UDP_DPORT_OFF,
    UDP_LEN,
    UDP_SPORT_OFF,
    UDP_ULEN_OFF,
    VLAN_LEN,
    VLAN_TYPE_OFF,
)
from wormwatch.model import (
    KIND_ANSWER,
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
    LINKTYPE_RAW_OLD,
    NAME_MAX,
    ST_FRAGMENT,
    ST_IGNORED,
    ST_MALFORMED,
    ST_OK,
    ST_TRUNCATED,
    ST_UNSUPPORTED,
    V4_MAPPED_PREFIX,
)

_GO = 255
# A TCP segment yields at most this many events (DECODING.md, "TCP"); the kernel stops
# before a packet when fewer free event rows are left, so it stops at a packet boundary.
MAX_EVENTS_PER_PACKET = 64

# transport actions handed from _transport to the kernel
_ACT_SYN = 1
_ACT_UDP_DNS = 2
_ACT_TCP_DNS = 3
# which side of a DNS exchange a UDP datagram or TCP segment is (ports), handed with it
_TO_DNS = 1  # destination port 53: its QUERY messages are query events
_FROM_DNS = 2  # source port 53: its answers (QR=1, opcode QUERY) are answer events

# columns of a fragment row (decode_packets writes them, kernels/reassemble.py reads them)
F_PACKET = 0  # packet index in the batch
F_ROW = 1  # event row the packet's events would start at
F_VERSION = 2  # 4 or 6
F_IP = 3  # offset of the IP header in the batch's data
F_START = 4  # offset of the fragment's data (after the IPv4 header / IPv6 fragment header)
F_SENT_END = 5  # end of the IP packet as sent (-1: not reassemblable, an IPv6 jumbogram)
F_CAP_END = 6  # end of what was captured of it
F_OFFSET = 7  # fragment offset in bytes
F_MORE = 8  # 1: more fragments follow (IPv4 MF, IPv6 M)
F_IDENT = 9  # IPv4 16-bit / IPv6 32-bit identification
F_PROTO = 10  # IPv4 protocol / IPv6 fragment header next header
N_FRAG_COLUMNS = 11

# columns of a DNS-over-TCP segment row (decode_packets writes them, kernels/dnstcp.py
# reads them)
T_PACKET = 0  # packet index in the batch
T_ROW = 1  # event row the packet's events would start at
T_VERSION = 2  # 4 or 6
T_IP = 3  # offset of the IP header in the batch's data
T_START = 4  # offset of the TCP payload
T_STOP = 5  # end of the payload: captured, and within the IP length
T_SEQ = 6  # TCP sequence number of the payload's first byte
T_SPORT = 7  # TCP source port
T_SENT = 8  # end of the payload as sent (the capture may end before it)
T_DPORT = 9  # TCP destination port (one of the two ports is 53)
N_SEG_COLUMNS = 10

# decode_packets allocates nothing, so it is compiled without numba's runtime (NRT):
# with NRT, array reference counting around the inlined helpers cost ~80 ns per packet
# (measured on a batch of pure ACKs: 11M packets/s with NRT, 109M without).


@njit(cache=True, nogil=True, inline="always")
def _be16(data, i):  # type: ignore[no-untyped-def]
    return (np.int64(data[i]) << 8) | np.int64(data[i + 1])


@njit(cache=True, nogil=True, inline="always")
def _be_word(data, i, n_bytes):  # type: ignore[no-untyped-def]
    value = np.uint64(0)
    for k in range(n_bytes):
        value = (value << np.uint64(8)) | np.uint64(data[i + k])
    return value


@njit(cache=True, nogil=True, inline="always")
def _ethertype(data, off, end, ethertype):  # type: ignore[no-untyped-def]
    """Ethertype dispatch after an Ethernet/SLL/SLL2 header -> (status, ip version, offset)."""
    n_tags = 0
    # 802.1Q, 802.1ad and the old QinQ 0x9100: 2 bytes TCI, then the next ethertype
    while ethertype == ETH_P_8021Q or ethertype == ETH_P_8021AD or ethertype == ETH_P_QINQ1:
        if n_tags == MAX_VLAN_TAGS:
            return ST_MALFORMED, 0, off
        if end - off < VLAN_LEN:
            return ST_TRUNCATED, 0, off
        ethertype = _be16(data, off + VLAN_TYPE_OFF)
        off += VLAN_LEN
        n_tags += 1
    if ethertype == ETH_P_PPP_SES:
        # PPPoE session (RFC 2516): 6-byte header, then the 2-byte PPP protocol
        if end - off < PPPOE_LEN:
            return ST_TRUNCATED, 0, off
        ppp = _be16(data, off + PPPOE_PPP_OFF)
        off += PPPOE_LEN
        if ppp == PPP_IP:
            return _GO, 4, off
        if ppp == PPP_IPV6:
            return _GO, 6, off
        return ST_IGNORED, 0, off
    if ethertype == ETH_P_IP:
        return _GO, 4, off
    if ethertype == ETH_P_IPV6:
        return _GO, 6, off
    return ST_IGNORED, 0, off


@njit(cache=True, nogil=True, inline="always")
def _family(value):  # type: ignore[no-untyped-def]
    """BSD loopback address family -> IP version (0: not IP)."""
    if value == AF_INET:
        return 4
    if (
        value == AF_INET6_LINUX
        or value == AF_INET6_BSD
        or value == AF_INET6_FREEBSD
        or value == AF_INET6_DARWIN
    ):
        return 6
    return 0


@njit(cache=True, nogil=True, inline="always")
def _link(data, start, end, linktype):  # type: ignore[no-untyped-def]
    """Link header -> (status, ip version, offset of the IP header)."""
    size = end - start
    # Ethernet and the cooked captures end in an ethertype; one dispatch serves all
    # three (numba copies an inlined helper at every call site)
    header_len = 0
    type_off = 0
    if linktype == LINKTYPE_ETHERNET:
        header_len, type_off = ETH_LEN, ETH_TYPE_OFF
    elif linktype == LINKTYPE_LINUX_SLL:
        header_len, type_off = SLL_LEN, SLL_PROTO_OFF
    elif linktype == LINKTYPE_LINUX_SLL2:
        header_len, type_off = SLL2_LEN, SLL2_PROTO_OFF
    if header_len > 0:
        if size < header_len:
            return ST_TRUNCATED, 0, start
        return _ethertype(data, start + header_len, end, _be16(data, start + type_off))
    if linktype == LINKTYPE_RAW or linktype == LINKTYPE_RAW_OLD:
        if size < 1:
            return ST_TRUNCATED, 0, start
        version = np.int64(data[start] >> 4)
        if version == 4 or version == 6:
            return _GO, version, start
        return ST_MALFORMED, 0, start
    if linktype == LINKTYPE_IPV4:
        return _GO, 4, start
    if linktype == LINKTYPE_IPV6:
        return _GO, 6, start
    if linktype == LINKTYPE_NULL or linktype == LINKTYPE_LOOP:
        if size < LOOP_LEN:
            return ST_TRUNCATED, 0, start
        big = np.int64(_be_word(data, start, LOOP_LEN))
        version = _family(big)
        if version == 0 and linktype == LINKTYPE_NULL:
            # NULL is in the writer's byte order: try it as little-endian too
            little = (
                (big >> 24) | ((big >> 8) & 0xFF00) | ((big & 0xFF00) << 8) | ((big & 0xFF) << 24)
            )
            version = _family(little)
        if version == 0:
            return ST_IGNORED, 0, start
        return _GO, version, start + LOOP_LEN
    return ST_UNSUPPORTED, 0, start


@njit(cache=True, nogil=True, inline="always")
def _ipv4(data, off, end):  # type: ignore[no-untyped-def]
    """IPv4 header -> (status, protocol, transport offset, end of the IP packet as sent)."""
    if end - off < IP_LEN_MIN:
        return ST_TRUNCATED, 0, off, off
    first = data[off]
    # version in the high nibble, header length in 4-octet units in the low one
    header_len = np.int64(first & 15) * 4
    total_len = _be16(data, off + IP_TOTAL_LEN_OFF)
    if first >> 4 != 4 or header_len < IP_LEN_MIN or total_len < header_len:
        return ST_MALFORMED, 0, off, off
    protocol = np.int64(data[off + IP_PROTO_OFF])
    # MF set or a non-zero offset: a fragment, handed to reassembly (kernels/reassemble.py)
    if _be16(data, off + IP_FRAG_OFF) & (IP_MF | IP_OFFMASK) != 0:
        return ST_FRAGMENT, protocol, off + header_len, off + total_len
    if end - off < header_len:
        return ST_TRUNCATED, 0, off, off
    return _GO, protocol, off + header_len, off + total_len


@njit(cache=True, nogil=True, inline="always")
def _ipv6(data, off, end):  # type: ignore[no-untyped-def]
    """IPv6 header and extension headers -> (status, next header, transport offset, end of
    the IP packet as sent)."""
    if end - off < IP6_LEN:
        return ST_TRUNCATED, 0, off, off
    if data[off] >> 4 != 6:
        return ST_MALFORMED, 0, off, off
    payload_len = _be16(data, off + IP6_PLEN_OFF)
    # payload length 0 is a jumbogram (RFC 2675): read to the end of the capture
    sent_end = end if payload_len == 0 else off + IP6_LEN + payload_len
    stop = min(end, sent_end)
    next_header = np.int64(data[off + IP6_NXT_OFF])
    cur = off + IP6_LEN
    for n_ext in range(MAX_EXT_HEADERS + 1):
        if next_header == IP_PROTO_TCP or next_header == IP_PROTO_UDP:
            return _GO, next_header, cur, sent_end
        is_frag = next_header == IP_PROTO_FRAGMENT
        is_ah = next_header == IP_PROTO_AH
        is_8n = (
            next_header == IP_PROTO_HOPOPTS
            or next_header == IP_PROTO_ROUTING
            or next_header == IP_PROTO_DSTOPTS
            or next_header == IP_PROTO_MOBILITY
        )
        if not (is_frag or is_ah or is_8n):
            # 59 (no next header), ICMPv6 and everything else
            return ST_IGNORED, 0, cur, stop
        if n_ext == MAX_EXT_HEADERS:
            return ST_MALFORMED, 0, cur, stop
        if stop - cur < (IP6_FRAG_LEN if is_frag else EXT_LEN_OFF + 1):
            return ST_TRUNCATED, 0, cur, stop
        if is_frag:
            size = np.int64(IP6_FRAG_LEN)
        elif is_ah:
            # RFC 4302: payload length in 4-octet units, minus 2
            size = (np.int64(data[cur + EXT_LEN_OFF]) + 2) * 4
        else:
            # hop-by-hop, routing, destination options, mobility: 8-octet units, minus 1
            size = (np.int64(data[cur + EXT_LEN_OFF]) + 1) * 8
        if stop - cur < size:
            return ST_TRUNCATED, 0, cur, stop
        # offset or M set; offset 0 with M clear is an atomic fragment (RFC 6946): go on
        if is_frag and _be16(data, cur + IP6_FRAG_OFFLG_OFF) & (IP6_OFFMASK | IP6_MF) != 0:
            # payload length 0 (jumbogram) cannot be fragmented: -1 makes it a bad fragment
            protocol = np.int64(data[cur + EXT_NXT_OFF])
            return ST_FRAGMENT, protocol, cur, (-1 if payload_len == 0 else sent_end)
        next_header = np.int64(data[cur + EXT_NXT_OFF])
        cur += size
    return ST_MALFORMED, 0, cur, stop


@njit(cache=True, nogil=True, inline="always")
def _side(dport, sport):  # type: ignore[no-untyped-def]
    """_TO_DNS and/or _FROM_DNS by the ports (0: not DNS)."""
    return (_TO_DNS if dport == PORT_DNS else 0) | (_FROM_DNS if sport == PORT_DNS else 0)


@njit(cache=True, nogil=True, inline="always")
def _transport(data, protocol, off, stop):  # type: ignore[no-untyped-def]
    """UDP/TCP header up to ``stop`` (the end of the captured IP payload) -> (status,
    action, payload start, payload end, dport, side: _TO_DNS | _FROM_DNS bits)."""
    size = stop - off
    if protocol == IP_PROTO_UDP:
        if size < UDP_LEN:
            return ST_TRUNCATED, 0, off, off, 0, 0
        udp_len = _be16(data, off + UDP_ULEN_OFF)
        if udp_len < UDP_LEN:
            return ST_MALFORMED, 0, off, off, 0, 0
        dport = _be16(data, off + UDP_DPORT_OFF)
        side = _side(dport, _be16(data, off + UDP_SPORT_OFF))
        # a UDP length of 8 is no payload, whatever follows (tcpdump's dns-zlip-1)
        if side == 0 or udp_len == UDP_LEN:
            return ST_IGNORED, 0, off, off, dport, 0
        return _GO, _ACT_UDP_DNS, off + UDP_LEN, min(stop, off + udp_len), dport, side
    if size < TCP_FLAGS_END:
        return ST_TRUNCATED, 0, off, off, 0, 0
    dport = _be16(data, off + TCP_DPORT_OFF)
    data_offset = np.int64(data[off + TCP_DOFF_OFF] >> 4) * 4
    if size >= TCP_LEN_MIN and data_offset < TCP_LEN_MIN:
        return ST_MALFORMED, 0, off, off, dport, 0
    # SYN set, ACK clear: the first packet of a connection attempt
    is_syn = data[off + TCP_FLAGS_OFF] & (TH_SYN | TH_ACK) == TH_SYN
    if is_syn and (dport == PORT_MSRPC or dport == PORT_NETBIOS_SSN or dport == PORT_SMB):
        return _GO, _ACT_SYN, off, off, dport, 0
    # DNS over TCP: queries to port 53, answers from it (DECODING.md)
    side = _side(dport, _be16(data, off + TCP_SPORT_OFF))
    if side == 0:
        return ST_IGNORED, 0, off, off, dport, 0
    if size < TCP_LEN_MIN:
        return ST_TRUNCATED, 0, off, off, dport, 0
    if size < data_offset:
        return ST_TRUNCATED, 0, off, off, dport, 0
    if size == data_offset:
        # no payload in the capture (DECODING.md: only a non-empty payload is looked at)
        return ST_IGNORED, 0, off, off, dport, 0
    return _GO, _ACT_TCP_DNS, off + data_offset, stop, dport, side


@njit(cache=True, nogil=True, inline="always")
def _question(data, msg, bound, names, row):  # type: ignore[no-untyped-def]
    """First question of the DNS message at ``msg`` (header complete, QDCOUNT > 0).

    Writes the name into ``names[row]``; -> (status, qtype, name length).
    """
    pos = msg + DNS_LEN
    # where the qtype is: after the first pointer, or after the terminating 0
    qtype_pos = np.int64(-1)
    n_jumps = 0
    n = np.int64(0)
    while True:
        if pos >= bound:
            return ST_TRUNCATED, 0, 0
        length = np.int64(data[pos])
        if length == 0:
            break
        top = length & DNS_LABEL_KIND
        if top == DNS_LABEL_POINTER:
            # RFC 1035 4.1.4: 14-bit offset from the start of the message
            if bound - pos < 2:
                return ST_TRUNCATED, 0, 0
            if n_jumps == DNS_MAX_JUMPS:
                return ST_MALFORMED, 0, 0
            n_jumps += 1
            if qtype_pos < 0:
                qtype_pos = pos + 2
            pos = msg + (((length & DNS_POINTER_HIGH) << 8) | np.int64(data[pos + 1]))
            continue
        if top != 0:
            # 01 (RFC 6891 extended label) and 10 (reserved)
            return ST_MALFORMED, 0, 0
        if bound - pos - 1 < length:
            return ST_TRUNCATED, 0, 0
        # labels plus dots; RFC 1035 2.3.4 allows 255 octets on the wire
        if n + (1 if n > 0 else 0) + length > NAME_MAX:
            return ST_MALFORMED, 0, 0
        if n > 0:
            names[row, n] = ASCII_DOT
            n += 1
        # unsigned indices: numba then skips its negative-index fix-up, which made
        # this copy loop the slowest part of a query (105 -> 46 ns per query)
        first = np.uint64(pos + 1)
        out = np.uint64(n)
        slot = np.uint64(row)
        for k in range(np.uint64(length)):
            c = data[first + k]
            is_upper = ASCII_UPPER_A <= c <= ASCII_UPPER_Z
            names[slot, out + k] = c + ASCII_CASE_BIT if is_upper else c
        n += length
        pos += 1 + length
    if qtype_pos < 0:
        qtype_pos = pos + 1
    if bound - qtype_pos < DNS_QTYPE_LEN:
        return ST_TRUNCATED, 0, 0
    return _GO, _be16(data, qtype_pos), n


@njit(cache=True, nogil=True, inline="always")
def _put_addresses(data, ip, version, row, src_hi, src_lo, dst_hi, dst_lo):  # type: ignore[no-untyped-def]
    """Source and destination of the IP header at ``ip`` into event ``row``."""
    if version == 4:
        src_hi[row] = 0
        dst_hi[row] = 0
        src_lo[row] = np.uint64(V4_MAPPED_PREFIX) | _be_word(data, ip + IP_SRC_OFF, IP_ADDR_LEN)
        dst_lo[row] = np.uint64(V4_MAPPED_PREFIX) | _be_word(data, ip + IP_DST_OFF, IP_ADDR_LEN)
    else:
        half = IP6_HALF_LEN
        src_hi[row] = _be_word(data, ip + IP6_SRC_OFF, half)
        src_lo[row] = _be_word(data, ip + IP6_SRC_OFF + half, half)
        dst_hi[row] = _be_word(data, ip + IP6_DST_OFF, half)
        dst_lo[row] = _be_word(data, ip + IP6_DST_OFF + half, half)


@njit(cache=True, nogil=True, inline="always")
def _message(data, msg, bound, side, row, kinds, rcodes, names, qtypes, name_lens):  # type: ignore[no-untyped-def]
    """DNS message at ``msg`` with a complete header -> (status, is an event): a query
    (QR = 0, opcode QUERY) sent to port 53, or an answer (QR = 1, opcode QUERY) sent
    from port 53, with the first question's qtype and name, and an answer's RCODE."""
    qr_opcode = data[msg + DNS_FLAGS_OFF] & DNS_QR_OPCODE
    if qr_opcode == 0 and side & _TO_DNS:
        kinds[row] = KIND_DNS
        rcodes[row] = 0
    elif qr_opcode == DNS_QR and side & _FROM_DNS:
        kinds[row] = KIND_ANSWER
        rcodes[row] = data[msg + DNS_RCODE_OFF] & DNS_RCODE
    else:
        return _GO, False
    status = _GO
    qtype = np.int64(0)
    n = np.int64(0)
    if _be16(data, msg + DNS_QDCOUNT_OFF) != 0:
        status, qtype, n = _question(data, msg, bound, names, row)
    qtypes[row] = qtype
    name_lens[row] = n
    return status, True


@njit(cache=True, nogil=True, inline="always")
def _dns_events(data, side, start, stop, row, kinds, rcodes, names, qtypes, name_lens):  # type: ignore[no-untyped-def]
    """UDP payload ``data[start:stop]`` -> (first problem or _GO, rows of query and
    answer events). DNS over TCP is read by the flow-table kernel (kernels/dnstcp.py)."""
    if stop - start < DNS_LEN:
        return ST_TRUNCATED, 0
    status, is_event = _message(
        data, start, stop, side, row, kinds, rcodes, names, qtypes, name_lens
    )
    return status, 1 if is_event else 0


@njit(cache=True, nogil=True, inline="always")
def _put_fragment(data, frags, n_frag, p, row, end, version, ip, protocol, off, sent_end):  # type: ignore[no-untyped-def]
    """What reassembly needs of fragment packet ``p`` into ``frags[n_frag]`` (F_* columns)."""
    if version == 4:
        field = _be16(data, ip + IP_FRAG_OFF)
        start = off
        offset = (field & IP_OFFMASK) * 8
        more = (field >> IP_MF_SHIFT) & 1
        ident = _be16(data, ip + IP_ID_OFF)
    else:
        field = _be16(data, off + IP6_FRAG_OFFLG_OFF)
        start = off + IP6_FRAG_LEN
        # RFC 8200 4.5: 13-bit offset in 8-octet units, then 2 reserved bits and M
        offset = field & IP6_OFFMASK
        more = field & IP6_MF
        ident = np.int64(_be_word(data, off + IP6_FRAG_ID_OFF, 4))
    frags[n_frag, F_PACKET] = p
    frags[n_frag, F_ROW] = row
    frags[n_frag, F_VERSION] = version
    frags[n_frag, F_IP] = ip
    frags[n_frag, F_START] = start
    frags[n_frag, F_SENT_END] = sent_end
    frags[n_frag, F_CAP_END] = min(end, sent_end)
    frags[n_frag, F_OFFSET] = offset
    frags[n_frag, F_MORE] = more
    frags[n_frag, F_IDENT] = ident
    frags[n_frag, F_PROTO] = protocol


@njit(cache=True, nogil=True, inline="always")
def _put_segment(segs, n_seg, p, row, version, ip, off, payload, stop, sent_end, data):  # type: ignore[no-untyped-def]
    """The T_* row of a TCP segment to or from port 53 whose payload is
    ``data[payload:stop]``."""
    segs[n_seg, T_PACKET] = p
    segs[n_seg, T_ROW] = row
    segs[n_seg, T_VERSION] = version
    segs[n_seg, T_IP] = ip
    segs[n_seg, T_START] = payload
    segs[n_seg, T_STOP] = stop
    segs[n_seg, T_SEQ] = np.int64(_be_word(data, off + TCP_SEQ_OFF, 4))
    segs[n_seg, T_SPORT] = _be16(data, off + TCP_SPORT_OFF)
    segs[n_seg, T_SENT] = max(stop, sent_end)
    segs[n_seg, T_DPORT] = _be16(data, off + TCP_DPORT_OFF)


# longer than 60 lines: the per-packet layers are called here, not from one helper
# (see the comment in its loop)
@njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
def decode_packets(  # type: ignore[no-untyped-def]
    data, offsets, caplens, linktypes, ts_us, first, n_events, statuses,
    ev_ts, src_hi, src_lo, dst_hi, dst_lo, kinds, dports, qtypes, names, name_lens,
    sports, ev_statuses, rcodes, frags, n_frag, segs, n_seg,
):  # fmt: skip
    """Decode packets ``first..`` of a batch into event rows ``n_events..``.

    Writes ``statuses[p]`` per packet and the event columns per event (an event's
    status is its packet's, the first problem met in it); a fragment
    (status ``fragment``) also gets a row ``frags[n_frag]`` for the reassembly kernel
    (``frags`` holds a row per packet of the batch), and a TCP segment to or from port
    53 with a payload a row ``segs[n_seg]`` for the DNS-over-TCP flow kernel (no events here).
    Stops before a packet when fewer than MAX_EVENTS_PER_PACKET rows are free.

    Returns:
        (index of the first packet not decoded, event rows filled, fragment rows filled,
        segment rows filled).
    """
    capacity = kinds.shape[0]
    p = first
    # The layers are called here, not from a per-packet helper: numba copies an
    # inlined helper's whole IR at each call, and that copy was half the compile time.
    while p < offsets.shape[0] and capacity - n_events >= MAX_EVENTS_PER_PACKET:
        start = offsets[p]
        end = start + np.int64(caplens[p])
        action, dport, n_rows, off = 0, 0, 0, 0
        status, version, ip = _link(data, start, end, linktypes[p])
        if status == _GO:
            if version == 4:
                status, protocol, off, sent_end = _ipv4(data, ip, end)
            else:
                status, protocol, off, sent_end = _ipv6(data, ip, end)
            if status == ST_FRAGMENT:
                _put_fragment(
                    data, frags, n_frag, p, n_events, end, version, ip, protocol, off, sent_end
                )
                n_frag += 1
            elif status == _GO and protocol != IP_PROTO_TCP and protocol != IP_PROTO_UDP:
                status = ST_IGNORED
            elif status == _GO:
                # the IP length, not the capture, bounds the payload: Ethernet padding
                # is no payload
                stop = min(end, sent_end)
                status, action, payload, stop, dport, side = _transport(data, protocol, off, stop)
                if status == _GO and action == _ACT_SYN:
                    kinds[n_events] = KIND_SYN
                    rcodes[n_events] = 0
                    qtypes[n_events] = 0
                    name_lens[n_events] = 0
                    status, n_rows = ST_OK, 1
                elif status == _GO and action == _ACT_TCP_DNS:
                    # read by the flow-table pass (kernels/dnstcp.py), which sets the
                    # status and writes the events of the messages it completes
                    _put_segment(
                        segs, n_seg, p, n_events, version, ip, off, payload, stop, sent_end, data
                    )
                    n_seg += 1
                    status = ST_IGNORED
                elif status == _GO:
                    status, n_rows = _dns_events(
                        data, side, payload, stop, n_events,
                        kinds, rcodes, names, qtypes, name_lens,
                    )  # fmt: skip
                    if status == _GO:
                        status = ST_OK if n_rows > 0 else ST_IGNORED
        statuses[p] = status
        # UDP and TCP both start with the source port
        sport = _be16(data, off + TCP_SPORT_OFF) if n_rows > 0 else 0
        for row in range(n_events, n_events + n_rows):
            ev_ts[row] = ts_us[p]
            dports[row] = dport
            sports[row] = sport
            ev_statuses[row] = status
            _put_addresses(data, ip, version, row, src_hi, src_lo, dst_hi, dst_lo)
        n_events += n_rows
        p += 1
    return p, n_events, n_frag, n_seg
