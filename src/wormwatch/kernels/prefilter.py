"""The walkers' relevance test: would the decoder surely call this frame ``ignored``?

pcap and pcapng walkers (``kernels.pcapwalk``) -> **this kernel**, per record, on the
record's bytes where they lie -> skip it (counted, nothing written) or index it for the
decode stage. It looks at what tcpdump's BPF filter looks at, and no more; whatever is
cut, bad or unusual is left to the decoder, so that whatever it counts or reports still
reaches it (``tests/kernels/test_pcapwalk.py`` checks frame by frame that no skipped
frame is one the decoder counts).
"""

# ruff: noqa: PLR1714, SIM109
# (numba compiles chained == to plain compares; `in {...}` would build a set at run time)

from __future__ import annotations

import numpy as np
from numba import njit

from wormwatch.kernels.headers import (
    ETH_LEN,
    ETH_P_8021AD,
    ETH_P_8021Q,
    ETH_P_IP,
    ETH_P_IPV6,
    ETH_P_PPP_SES,
    ETH_P_QINQ1,
    ETH_TYPE_OFF,
    IP6_LEN,
    IP6_NXT_OFF,
    IP6_PLEN_OFF,
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
    IP_TOTAL_LEN_OFF,
    MAX_VLAN_TAGS,
    PORT_DNS,
    PORT_MSRPC,
    PORT_NETBIOS_SSN,
    PORT_SMB,
    TCP_DOFF_OFF,
    TCP_DPORT_OFF,
    TCP_FLAGS_END,
    TCP_FLAGS_OFF,
    TCP_LEN_MIN,
    TH_ACK,
    TH_SYN,
    UDP_DPORT_OFF,
    UDP_LEN,
    UDP_ULEN_OFF,
    VLAN_LEN,
    VLAN_TYPE_OFF,
)
from wormwatch.model import LINKTYPE_ETHERNET

# the source port of UDP and TCP
_SPORT_OFF = 0


@njit(cache=True, nogil=True)
def _be16(data, i):  # type: ignore[no-untyped-def]
    """Big-endian 16-bit field at ``data[i:i+2]``, as int64."""
    return (np.int64(data[i]) << 8) | np.int64(data[i + 1])


# longer than 60 lines: one pass over the headers, as BPF does, without per-layer calls.
# Called, not inlined by numba: both walkers call it, and numba would copy its IR into
# each (compiles 1.13 -> 0.97 s and 1.53 -> 1.36 s of CPU); LLVM inlines it all the same
# (the walk's speed is unchanged).
@njit(cache=True, nogil=True)
def is_ignored(data, start, end, linktype):  # type: ignore[no-untyped-def]
    """True when the decoder would surely call this frame ``ignored`` (DECODING.md).

    What tcpdump's BPF filter looks at, and no more: link type, ethertype through VLAN
    tags, IP version, header lengths and fragment bits, the protocol, the ports and the
    TCP flags. False means "decode it": DNS on port 53 either way (queries, answers),
    a SYN to 135/139/445, and every frame whose headers are cut, bad or unusual
    (fragments, IPv6 extension headers, GRE, PPPoE, other link types), so that whatever the
    decoder counts or reports still reaches it.
    """
    if linktype != LINKTYPE_ETHERNET or end - start < ETH_LEN:
        return False
    off = start + ETH_LEN
    ethertype = _be16(data, start + ETH_TYPE_OFF)
    n_tags = 0
    while ethertype == ETH_P_8021Q or ethertype == ETH_P_8021AD or ethertype == ETH_P_QINQ1:
        if n_tags == MAX_VLAN_TAGS or end - off < VLAN_LEN:
            return False
        ethertype = _be16(data, off + VLAN_TYPE_OFF)
        off += VLAN_LEN
        n_tags += 1
    if ethertype == ETH_P_IP:
        if end - off < IP_LEN_MIN:
            return False
        header_len = np.int64(data[off] & 15) * 4
        total_len = _be16(data, off + IP_TOTAL_LEN_OFF)
        if data[off] >> 4 != 4 or header_len < IP_LEN_MIN or total_len < header_len:
            return False
        if end - off < header_len or _be16(data, off + IP_FRAG_OFF) & (IP_MF | IP_OFFMASK):
            return False
        protocol = np.int64(data[off + IP_PROTO_OFF])
        stop = min(end, off + total_len)
        off += header_len
    elif ethertype == ETH_P_IPV6:
        if end - off < IP6_LEN or data[off] >> 4 != 6:
            return False
        payload_len = _be16(data, off + IP6_PLEN_OFF)
        # payload length 0 is a jumbogram (RFC 2675): up to the end of the capture
        stop = end if payload_len == 0 else min(end, off + IP6_LEN + payload_len)
        protocol = np.int64(data[off + IP6_NXT_OFF])
        off += IP6_LEN
        if protocol != IP_PROTO_TCP and protocol != IP_PROTO_UDP:
            # no next header, ICMPv6, ...: ignored; an extension header or GRE: decode it
            return not (
                protocol == IP_PROTO_HOPOPTS
                or protocol == IP_PROTO_ROUTING
                or protocol == IP_PROTO_FRAGMENT
                or protocol == IP_PROTO_AH
                or protocol == IP_PROTO_DSTOPTS
                or protocol == IP_PROTO_MOBILITY
                or protocol == IP_PROTO_GRE
            )
    else:
        return ethertype != ETH_P_PPP_SES
    if protocol != IP_PROTO_TCP and protocol != IP_PROTO_UDP:
        # an IPv4 AH header: decode it (the protocol it protects follows it); GRE too
        # (a remote mirror's tunnel: the packet inside it)
        return protocol != IP_PROTO_AH and protocol != IP_PROTO_GRE
    size = stop - off
    if size < (UDP_LEN if protocol == IP_PROTO_UDP else TCP_FLAGS_END):
        return False
    sport = _be16(data, off + _SPORT_OFF)
    dport = _be16(data, off + (UDP_DPORT_OFF if protocol == IP_PROTO_UDP else TCP_DPORT_OFF))
    if sport == PORT_DNS or dport == PORT_DNS:
        return False
    if protocol == IP_PROTO_UDP:
        return _be16(data, off + UDP_ULEN_OFF) >= UDP_LEN
    if size >= TCP_LEN_MIN and np.int64(data[off + TCP_DOFF_OFF] >> 4) * 4 < TCP_LEN_MIN:
        return False
    is_syn = data[off + TCP_FLAGS_OFF] & (TH_SYN | TH_ACK) == TH_SYN
    return not (is_syn and (dport == PORT_MSRPC or dport == PORT_NETBIOS_SSN or dport == PORT_SMB))
