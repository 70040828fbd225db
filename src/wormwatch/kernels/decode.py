"""Numba kernels of the decode stage: raw frames of a batch -> event rows.

source -> ``Batch`` (one bytes buffer, per-packet offset/caplen/linktype/ts) -> **these
kernels** -> event columns (ts, source and destination address, kind, dport, qtype, name)
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

from __future__ import annotations

import numpy as np
from numba import njit

from wormwatch.model import (
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
_MAX_TAGS = 8
_MAX_EXT_HEADERS = 16
_MAX_JUMPS = 128
_DNS_HEADER = 12

# transport actions handed from _transport to the kernel
_ACT_SYN = 1
_ACT_UDP_DNS = 2
_ACT_TCP_DNS = 3

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
    while ethertype == 0x8100 or ethertype == 0x88A8 or ethertype == 0x9100:
        if n_tags == _MAX_TAGS:
            return ST_MALFORMED, 0, off
        if end - off < 4:
            return ST_TRUNCATED, 0, off
        ethertype = _be16(data, off + 2)
        off += 4
        n_tags += 1
    if ethertype == 0x8864:
        # PPPoE session (RFC 2516): 6-byte header, then the 2-byte PPP protocol
        if end - off < 8:
            return ST_TRUNCATED, 0, off
        ppp = _be16(data, off + 6)
        off += 8
        if ppp == 0x0021:
            return _GO, 4, off
        if ppp == 0x0057:
            return _GO, 6, off
        return ST_IGNORED, 0, off
    if ethertype == 0x0800:
        return _GO, 4, off
    if ethertype == 0x86DD:
        return _GO, 6, off
    return ST_IGNORED, 0, off


@njit(cache=True, nogil=True, inline="always")
def _family(value):  # type: ignore[no-untyped-def]
    """BSD loopback address family -> IP version (0: not IP)."""
    if value == 2:
        return 4
    if value == 10 or value == 24 or value == 28 or value == 30:
        return 6
    return 0


@njit(cache=True, nogil=True, inline="always")
def _link(data, start, end, linktype):  # type: ignore[no-untyped-def]
    """Link header -> (status, ip version, offset of the IP header)."""
    size = end - start
    if linktype == LINKTYPE_ETHERNET:
        if size < 14:
            return ST_TRUNCATED, 0, start
        return _ethertype(data, start + 14, end, _be16(data, start + 12))
    if linktype == LINKTYPE_LINUX_SLL:
        if size < 16:
            return ST_TRUNCATED, 0, start
        return _ethertype(data, start + 16, end, _be16(data, start + 14))
    if linktype == LINKTYPE_LINUX_SLL2:
        if size < 20:
            return ST_TRUNCATED, 0, start
        return _ethertype(data, start + 20, end, _be16(data, start))
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
        if size < 4:
            return ST_TRUNCATED, 0, start
        big = np.int64(_be_word(data, start, 4))
        version = _family(big)
        if version == 0 and linktype == LINKTYPE_NULL:
            # NULL is in the writer's byte order: try it as little-endian too
            little = (
                (big >> 24) | ((big >> 8) & 0xFF00) | ((big & 0xFF00) << 8) | ((big & 0xFF) << 24)
            )
            version = _family(little)
        if version == 0:
            return ST_IGNORED, 0, start
        return _GO, version, start + 4
    return ST_UNSUPPORTED, 0, start


@njit(cache=True, nogil=True, inline="always")
def _ipv4(data, off, end):  # type: ignore[no-untyped-def]
    """IPv4 header -> (status, protocol, transport offset, end of the IP packet as sent)."""
    if end - off < 20:
        return ST_TRUNCATED, 0, off, off
    first = data[off]
    header_len = np.int64(first & 15) * 4
    total_len = _be16(data, off + 2)
    if first >> 4 != 4 or header_len < 20 or total_len < header_len:
        return ST_MALFORMED, 0, off, off
    # MF set or a non-zero offset: a fragment, handed to reassembly (kernels/reassemble.py)
    if _be16(data, off + 6) & 0x3FFF != 0:
        return ST_FRAGMENT, np.int64(data[off + 9]), off + header_len, off + total_len
    if end - off < header_len:
        return ST_TRUNCATED, 0, off, off
    return _GO, np.int64(data[off + 9]), off + header_len, off + total_len


@njit(cache=True, nogil=True, inline="always")
def _ipv6(data, off, end):  # type: ignore[no-untyped-def]
    """IPv6 header and extension headers -> (status, next header, transport offset, end of
    the IP packet as sent)."""
    if end - off < 40:
        return ST_TRUNCATED, 0, off, off
    if data[off] >> 4 != 6:
        return ST_MALFORMED, 0, off, off
    payload_len = _be16(data, off + 4)
    # payload length 0 is a jumbogram (RFC 2675): read to the end of the capture
    sent_end = end if payload_len == 0 else off + 40 + payload_len
    stop = min(end, sent_end)
    next_header = np.int64(data[off + 6])
    cur = off + 40
    for n_ext in range(_MAX_EXT_HEADERS + 1):
        if next_header == 6 or next_header == 17:
            return _GO, next_header, cur, sent_end
        is_frag = next_header == 44
        is_ah = next_header == 51
        is_8n = next_header == 0 or next_header == 43 or next_header == 60 or next_header == 135
        if not (is_frag or is_ah or is_8n):
            # 59 (no next header), ICMPv6 and everything else
            return ST_IGNORED, 0, cur, stop
        if n_ext == _MAX_EXT_HEADERS:
            return ST_MALFORMED, 0, cur, stop
        if stop - cur < (8 if is_frag else 2):
            return ST_TRUNCATED, 0, cur, stop
        if is_frag:
            size = np.int64(8)
        elif is_ah:
            # RFC 4302: payload length in 4-octet units, minus 2
            size = (np.int64(data[cur + 1]) + 2) * 4
        else:
            # hop-by-hop, routing, destination options, mobility: 8-octet units, minus 1
            size = (np.int64(data[cur + 1]) + 1) * 8
        if stop - cur < size:
            return ST_TRUNCATED, 0, cur, stop
        # offset or M set; offset 0 with M clear is an atomic fragment (RFC 6946): go on
        if is_frag and _be16(data, cur + 2) & 0xFFF9 != 0:
            # payload length 0 (jumbogram) cannot be fragmented: -1 makes it a bad fragment
            return ST_FRAGMENT, np.int64(data[cur]), cur, (-1 if payload_len == 0 else sent_end)
        next_header = np.int64(data[cur])
        cur += size
    return ST_MALFORMED, 0, cur, stop


@njit(cache=True, nogil=True, inline="always")
def _transport(data, protocol, off, stop):  # type: ignore[no-untyped-def]
    """UDP/TCP header up to ``stop`` (the end of the captured IP payload) -> (status,
    action, payload start, payload end, dport)."""
    size = stop - off
    if protocol == 17:
        if size < 8:
            return ST_TRUNCATED, 0, off, off, 0
        udp_len = _be16(data, off + 4)
        if udp_len < 8:
            return ST_MALFORMED, 0, off, off, 0
        dport = _be16(data, off + 2)
        # a UDP length of 8 is no payload, whatever follows (tcpdump's dns-zlip-1)
        if dport != 53 or udp_len == 8:
            return ST_IGNORED, 0, off, off, dport
        return _GO, _ACT_UDP_DNS, off + 8, min(stop, off + udp_len), dport
    if size < 14:
        return ST_TRUNCATED, 0, off, off, 0
    dport = _be16(data, off + 2)
    data_offset = np.int64(data[off + 12] >> 4) * 4
    if size >= 20 and data_offset < 20:
        return ST_MALFORMED, 0, off, off, dport
    # SYN set, ACK clear: the first packet of a connection attempt
    if data[off + 13] & 0x12 == 0x02 and (dport == 135 or dport == 139 or dport == 445):
        return _GO, _ACT_SYN, off, off, dport
    if dport != 53:
        return ST_IGNORED, 0, off, off, dport
    if size < 20:
        return ST_TRUNCATED, 0, off, off, dport
    if size < data_offset:
        return ST_TRUNCATED, 0, off, off, dport
    if size == data_offset:
        # no payload in the capture (DECODING.md: only a non-empty payload is looked at)
        return ST_IGNORED, 0, off, off, dport
    return _GO, _ACT_TCP_DNS, off + data_offset, stop, dport


@njit(cache=True, nogil=True, inline="always")
def _question(data, msg, bound, names, row):  # type: ignore[no-untyped-def]
    """First question of the DNS message at ``msg`` (header complete, QDCOUNT > 0).

    Writes the name into ``names[row]``; -> (status, qtype, name length).
    """
    pos = msg + _DNS_HEADER
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
        top = length & 0xC0
        if top == 0xC0:
            # RFC 1035 4.1.4: 14-bit offset from the start of the message
            if bound - pos < 2:
                return ST_TRUNCATED, 0, 0
            if n_jumps == _MAX_JUMPS:
                return ST_MALFORMED, 0, 0
            n_jumps += 1
            if qtype_pos < 0:
                qtype_pos = pos + 2
            pos = msg + (((length & 0x3F) << 8) | np.int64(data[pos + 1]))
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
            names[row, n] = 46
            n += 1
        # unsigned indices: numba then skips its negative-index fix-up, which made
        # this copy loop the slowest part of a query (105 -> 46 ns per query)
        first = np.uint64(pos + 1)
        out = np.uint64(n)
        slot = np.uint64(row)
        for k in range(np.uint64(length)):
            c = data[first + k]
            names[slot, out + k] = c + 32 if 65 <= c <= 90 else c
        n += length
        pos += 1 + length
    if qtype_pos < 0:
        qtype_pos = pos + 1
    if bound - qtype_pos < 2:
        return ST_TRUNCATED, 0, 0
    return _GO, _be16(data, qtype_pos), n


@njit(cache=True, nogil=True, inline="always")
def _put_addresses(data, ip, version, row, src_hi, src_lo, dst_hi, dst_lo):  # type: ignore[no-untyped-def]
    """Source and destination of the IP header at ``ip`` into event ``row``."""
    if version == 4:
        src_hi[row] = 0
        dst_hi[row] = 0
        src_lo[row] = np.uint64(V4_MAPPED_PREFIX) | _be_word(data, ip + 12, 4)
        dst_lo[row] = np.uint64(V4_MAPPED_PREFIX) | _be_word(data, ip + 16, 4)
    else:
        src_hi[row] = _be_word(data, ip + 8, 8)
        src_lo[row] = _be_word(data, ip + 16, 8)
        dst_hi[row] = _be_word(data, ip + 24, 8)
        dst_lo[row] = _be_word(data, ip + 32, 8)


@njit(cache=True, nogil=True, inline="always")
def _message(data, msg, bound, names, row, qtypes, name_lens):  # type: ignore[no-untyped-def]
    """DNS message at ``msg`` with a complete header -> (status, is a query event)."""
    # QR = 0 and opcode 0 (QUERY): the top five bits of the third byte
    if data[msg + 2] & 0xF8 != 0:
        return _GO, False
    status = _GO
    qtype = np.int64(0)
    n = np.int64(0)
    if _be16(data, msg + 4) != 0:
        status, qtype, n = _question(data, msg, bound, names, row)
    qtypes[row] = qtype
    name_lens[row] = n
    return status, True


@njit(cache=True, nogil=True, inline="always")
def _dns_events(data, action, start, stop, row, names, qtypes, name_lens):  # type: ignore[no-untyped-def]
    """UDP payload or TCP segment ``data[start:stop]`` -> (first problem or _GO, rows of
    query events)."""
    problem = _GO
    n_rows = 0
    pos = start
    for _ in range(MAX_EVENTS_PER_PACKET):
        if action == _ACT_TCP_DNS:
            # RFC 1035 4.2.2: each message is preceded by its 2-byte length
            if pos >= stop:
                break
            # the first problem met stays (DECODING.md), even when a later
            # message of the segment is cut or bad
            if stop - pos < 2:
                problem = ST_TRUNCATED if problem == _GO else problem
                break
            msg_len = _be16(data, pos)
            if msg_len < _DNS_HEADER:
                problem = ST_MALFORMED if problem == _GO else problem
                break
            msg = pos + 2
            bound = min(stop, msg + msg_len)
            pos = msg + msg_len
        else:
            msg = start
            bound = stop
        if bound - msg < _DNS_HEADER:
            problem = ST_TRUNCATED if problem == _GO else problem
            break
        status, is_query = _message(data, msg, bound, names, row + n_rows, qtypes, name_lens)
        if problem == _GO:
            problem = status
        if is_query:
            n_rows += 1
        if action == _ACT_UDP_DNS:
            break
    return problem, n_rows


@njit(cache=True, nogil=True, inline="always")
def _packet(data, start, end, linktype, row, names, qtypes, name_lens):  # type: ignore[no-untyped-def]
    """One packet -> (status, action, IP version, IP offset, dport, rows of events,
    protocol, offset, sent end). The last three are set for a fragment only: the IPv4
    protocol and payload offset, or the IPv6 fragment header's next header and offset;
    and the end of the IP packet as sent (-1: cannot be reassembled)."""
    status, version, ip = _link(data, start, end, linktype)
    if status != _GO:
        return status, 0, 0, ip, 0, 0, 0, 0, 0
    if version == 4:
        status, protocol, off, sent_end = _ipv4(data, ip, end)
    else:
        status, protocol, off, sent_end = _ipv6(data, ip, end)
    if status == ST_FRAGMENT:
        return status, 0, version, ip, 0, 0, protocol, off, sent_end
    if status != _GO:
        return status, 0, 0, ip, 0, 0, 0, 0, 0
    if protocol != 6 and protocol != 17:
        return ST_IGNORED, 0, 0, ip, 0, 0, 0, 0, 0
    # the IP length, not the capture, bounds the payload: Ethernet padding is no payload
    stop = min(end, sent_end)
    status, action, payload, stop, dport = _transport(data, protocol, off, stop)
    if status != _GO:
        return status, 0, 0, ip, 0, 0, 0, 0, 0
    if action == _ACT_SYN:
        qtypes[row] = 0
        name_lens[row] = 0
        return ST_OK, action, version, ip, dport, 1, 0, 0, 0
    problem, n_rows = _dns_events(data, action, payload, stop, row, names, qtypes, name_lens)
    if problem != _GO:
        return problem, action, version, ip, dport, n_rows, 0, 0, 0
    status = ST_OK if n_rows > 0 else ST_IGNORED
    return status, action, version, ip, dport, n_rows, 0, 0, 0


@njit(cache=True, nogil=True, inline="always")
def _put_fragment(data, frags, n_frag, p, row, end, version, ip, protocol, off, sent_end):  # type: ignore[no-untyped-def]
    """What reassembly needs of fragment packet ``p`` into ``frags[n_frag]`` (F_* columns)."""
    if version == 4:
        field = _be16(data, ip + 6)
        start = off
        offset = (field & 0x1FFF) * 8
        more = (field >> 13) & 1
        ident = _be16(data, ip + 4)
    else:
        field = _be16(data, off + 2)
        start = off + 8
        # RFC 8200 4.5: 13-bit offset in 8-octet units, then 2 reserved bits and M
        offset = field & 0xFFF8
        more = field & 1
        ident = np.int64(_be_word(data, off + 4, 4))
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


@njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
def decode_packets(  # type: ignore[no-untyped-def]
    data, offsets, caplens, linktypes, ts_us, first, n_events, statuses,
    ev_ts, src_hi, src_lo, dst_hi, dst_lo, kinds, dports, qtypes, names, name_lens,
    frags, n_frag,
):  # fmt: skip
    """Decode packets ``first..`` of a batch into event rows ``n_events..``.

    Writes ``statuses[p]`` per packet and the event columns per event; a fragment
    (status ``fragment``) also gets a row ``frags[n_frag]`` for the reassembly kernel
    (``frags`` holds a row per packet of the batch). Stops before a packet when fewer
    than MAX_EVENTS_PER_PACKET rows are free.

    Returns:
        (index of the first packet not decoded, event rows filled, fragment rows filled).
    """
    capacity = kinds.shape[0]
    p = first
    while p < offsets.shape[0] and capacity - n_events >= MAX_EVENTS_PER_PACKET:
        start = offsets[p]
        end = start + np.int64(caplens[p])
        status, action, version, ip, dport, n_rows, protocol, off, sent_end = _packet(
            data, start, end, linktypes[p], n_events, names, qtypes, name_lens
        )
        statuses[p] = status
        if status == ST_FRAGMENT:
            _put_fragment(
                data, frags, n_frag, p, n_events, end, version, ip, protocol, off, sent_end
            )
            n_frag += 1
        kind = KIND_SYN if action == _ACT_SYN else KIND_DNS
        for row in range(n_events, n_events + n_rows):
            ev_ts[row] = ts_us[p]
            kinds[row] = kind
            dports[row] = dport
            _put_addresses(data, ip, version, row, src_hi, src_lo, dst_hi, dst_lo)
        n_events += n_rows
        p += 1
    return p, n_events, n_frag
