"""One level of GRE for the decode kernel: a remote mirror port's tunnel.

A switch that mirrors to a remote sensor wraps each frame in GRE: Cisco ERSPAN (types I,
II and III, then the Ethernet frame), transparent Ethernet bridging, or plain IPv4/IPv6.
``_gre`` reads the GRE header (RFC 2784, RFC 2890) at the outer IP payload and returns
what ``layers._link`` returns for a frame: (status, IP version, offset of the inner IP
header), so that kernels/decode.py walks the inner packet by the same layers as an outer
one. docs/DECODING.md, "GRE", is the rule book; inlined into ``decode_packets`` like the
other layers (one call site).
"""

# ruff: noqa: PLR1714
# (numba compiles chained == to plain compares; `in {...}` would build a set at run time)

from __future__ import annotations

from numba import njit

from wormwatch.kernels.headers import (
    ERSPAN2_LEN,
    ERSPAN2_VER,
    ERSPAN3_FLAGS_OFF,
    ERSPAN3_FT,
    ERSPAN3_LEN,
    ERSPAN3_O,
    ERSPAN3_PLATFORM_LEN,
    ERSPAN3_VER,
    ERSPAN_VER_SHIFT,
    ETH_LEN,
    ETH_P_ERSPAN2,
    ETH_P_ERSPAN3,
    ETH_P_IP,
    ETH_P_IPV6,
    ETH_P_TEB,
    ETH_TYPE_OFF,
    GRE_C,
    GRE_K,
    GRE_LEN,
    GRE_OPT_LEN,
    GRE_PROTO_OFF,
    GRE_R,
    GRE_S,
    GRE_VERSION,
)
from wormwatch.kernels.layers import _GO, _be16, _ethertype
from wormwatch.model import ST_IGNORED, ST_TRUNCATED


@njit(cache=True, nogil=True, inline="always")
def _gre(data, off, end):  # type: ignore[no-untyped-def]
    """GRE header at ``off``, its payload up to ``end`` (the outer IP payload's end) ->
    (status, inner IP version, offset of the inner IP header)."""
    if end - off < GRE_LEN:
        return ST_TRUNCATED, 0, off
    flags = _be16(data, off)
    protocol = _be16(data, off + GRE_PROTO_OFF)
    # version 1 is PPTP's enhanced GRE; a routing list (RFC 1701) is not walked
    if flags & GRE_VERSION != 0 or flags & GRE_R != 0:
        return ST_IGNORED, 0, off
    # checksum, key and sequence number: 4 bytes each, in that order
    cur = off + GRE_LEN
    if flags & GRE_C != 0:
        cur += GRE_OPT_LEN
    if flags & GRE_K != 0:
        cur += GRE_OPT_LEN
    if flags & GRE_S != 0:
        cur += GRE_OPT_LEN
    if end < cur:
        return ST_TRUNCATED, 0, off
    if protocol == ETH_P_IP:
        return _GO, 4, cur
    if protocol == ETH_P_IPV6:
        return _GO, 6, cur
    if protocol == ETH_P_ERSPAN2 and flags & GRE_S != 0:
        # type II (type I has no sequence number and no header: the frame follows GRE)
        if end - cur < ERSPAN2_LEN:
            return ST_TRUNCATED, 0, off
        if data[cur] >> ERSPAN_VER_SHIFT != ERSPAN2_VER:
            return ST_IGNORED, 0, off
        cur += ERSPAN2_LEN
    elif protocol == ETH_P_ERSPAN3:
        if end - cur < ERSPAN3_LEN:
            return ST_TRUNCATED, 0, off
        field = _be16(data, cur + ERSPAN3_FLAGS_OFF)
        if data[cur] >> ERSPAN_VER_SHIFT != ERSPAN3_VER or field & ERSPAN3_FT != 0:
            return ST_IGNORED, 0, off
        cur += ERSPAN3_LEN + (ERSPAN3_PLATFORM_LEN if field & ERSPAN3_O != 0 else 0)
        if end < cur:
            return ST_TRUNCATED, 0, off
    elif protocol != ETH_P_TEB and protocol != ETH_P_ERSPAN2:
        return ST_IGNORED, 0, off
    # an Ethernet frame, read as one on the wire (tags, PPPoE)
    if end - cur < ETH_LEN:
        return ST_TRUNCATED, 0, off
    return _ethertype(data, cur + ETH_LEN, end, _be16(data, cur + ETH_TYPE_OFF))
