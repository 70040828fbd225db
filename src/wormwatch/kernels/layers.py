"""The lower layers of a packet for the decode kernel: link, IPv4, IPv6 (extension
headers), UDP and TCP, and the addresses of an event.

Inlined into ``decode_packets`` (kernels/decode.py), which walks a batch packet by packet;
DNS over TCP (kernels/dnstcp.py) reads the same ports. What each layer accepts is
docs/DECODING.md, section by section. Helpers return a status first; ``_GO`` means
"nothing wrong yet, keep parsing". A change here reaches every kernel built from these
helpers: the cache stamp covers the whole package (kernels/cacheload.py).
"""

# ruff: noqa: PLR1714, SIM109
# (numba compiles chained == to plain compares; `in {...}` would build a set at run time)

from __future__ import annotations

import numpy as np
from numba import njit

from wormwatch.kernels.headers import (
    AF_INET,
    AF_INET6_BSD,
    AF_INET6_DARWIN,
    AF_INET6_FREEBSD,
    AF_INET6_LINUX,
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
    IP_LEN_MIN,
    IP_MF,
    IP_OFFMASK,
    IP_PROTO_AH,
    IP_PROTO_DSTOPTS,
    IP_PROTO_FRAGMENT,
    IP_PROTO_GRE,
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
    ST_TRUNCATED,
    ST_UNSUPPORTED,
    V4_MAPPED_PREFIX,
)

_GO = 255

# transport actions handed from _transport to the kernel
_ACT_SYN = 1
_ACT_UDP_DNS = 2
_ACT_TCP_DNS = 3
# which side of a DNS exchange a UDP datagram or TCP segment is (ports), handed with it
_TO_DNS = 1  # destination port 53: its QUERY messages are query events
_FROM_DNS = 2  # source port 53: its answers (QR=1, opcode QUERY) are answer events


# Compiled once and inlined by LLVM, not by numba (which would copy it at each of its ~20
# call sites): see kernels/decode.py. _family and _side too.
@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
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
    if linktype == LINKTYPE_RAW or linktype == LINKTYPE_RAW_OLD or linktype == LINKTYPE_RAW_BSD:
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
    cur = off + header_len
    if protocol == IP_PROTO_AH:
        # IPsec AH in transport mode (RFC 4302): the protocol it protects follows it
        stop = min(end, off + total_len)
        if stop - cur < EXT_LEN_OFF + 1:
            return ST_TRUNCATED, 0, off, off
        size = (np.int64(data[cur + EXT_LEN_OFF]) + 2) * 4
        if stop - cur < size:
            return ST_TRUNCATED, 0, off, off
        protocol = np.int64(data[cur + EXT_NXT_OFF])
        cur += size
    return _GO, protocol, cur, off + total_len


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
        # GRE: the decoder follows one level of it (kernels/gre.py)
        if (
            next_header == IP_PROTO_TCP
            or next_header == IP_PROTO_UDP
            or next_header == IP_PROTO_GRE
        ):
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


@njit(cache=True, nogil=True)
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
