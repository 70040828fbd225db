"""Numba kernels of the decode stage: raw frames of a batch -> event rows.

source -> ``Batch`` (one bytes buffer, per-packet offset/caplen/linktype/ts) -> **these
kernels** -> event columns (ts, source and destination address, kind, dport, qtype, name, rcode)
plus one status per packet -> ``wormwatch.decode`` wraps them into ``Events`` and
``DecodeStats``. An IP fragment also gets a row of F_* columns (where its data is, its
offset, id, ...) for the reassembly kernel (kernels/reassemble.py); the datagrams that
kernel completes come back here as a second, small batch of raw IP packets.

What a packet counts as is docs/DECODING.md; its layers are inlined from
kernels/layers.py (link, IP, UDP/TCP, addresses), kernels/gre.py (one level of GRE: the
inner packet goes through the same IP layers again) and kernels/dnsmsg.py (the DNS message),
and the packet walk that ties them together is here. The layers are ``inline="always"``
helpers: merged into the one compiled kernel, so no per-packet call passes an array.
The smallest readers (``layers._be16``) and the question reader (``dnsmsg._question``,
once per DNS message) are plain numba functions instead: numba translates and copies an
``inline="always"`` helper again at every call site, which cost ~0.6 s of the decoder's
3.6 s first compile; LLVM inlines the byte readers all the same, and the question
reader is one call per message (the decode kernel ~2% slower on the replay benchmark's
mix). Helpers return a status first; ``_GO`` means "nothing wrong yet, keep parsing".
The cache stamp of every kernel covers the whole package (kernels/cacheload.py), so an
edit to a layer reaches this kernel.
"""

# ruff: noqa: PLR1714
# (numba compiles chained == to plain compares; `in {...}` would build a set at run time)

from __future__ import annotations

import numpy as np
from numba import njit

from wormwatch.kernels.dnsmsg import _dns_events
from wormwatch.kernels.gre import _gre
from wormwatch.kernels.headers import (
    IP6_FRAG_ID_OFF,
    IP6_FRAG_LEN,
    IP6_FRAG_OFFLG_OFF,
    IP6_MF,
    IP6_OFFMASK,
    IP_FRAG_OFF,
    IP_ID_OFF,
    IP_MF_SHIFT,
    IP_OFFMASK,
    IP_PROTO_GRE,
    IP_PROTO_TCP,
    IP_PROTO_UDP,
    TCP_DPORT_OFF,
    TCP_FLAGS_OFF,
    TCP_SEQ_OFF,
    TCP_SPORT_OFF,
    TH_SYN,
)
from wormwatch.kernels.layers import (
    _ACT_SYN,
    _ACT_TCP_DNS,
    _GO,
    _be16,
    _be_word,
    _ipv4,
    _ipv6,
    _link,
    _put_addresses,
    _transport,
)
from wormwatch.model import (
    KIND_SYN,
    ST_FRAGMENT,
    ST_IGNORED,
    ST_OK,
)

# Free event rows the kernel keeps before each packet (a packet makes at most one event
# here; the messages of a DNS-over-TCP segment are counted by kernels/dnstcp.py), so it
# stops at a packet boundary.
MAX_EVENTS_PER_PACKET = 64

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
T_SEQ = 6  # sequence number of the payload's first byte (a SYN's own number is before it)
T_SPORT = 7  # TCP source port
T_SENT = 8  # end of the payload as sent (the capture may end before it)
T_DPORT = 9  # TCP destination port (one of the two ports is 53)
N_SEG_COLUMNS = 10

# decode_packets allocates nothing, so it is compiled without numba's runtime (NRT):
# with NRT, array reference counting around the inlined helpers cost ~80 ns per packet
# (measured on a batch of pure ACKs: 11M packets/s with NRT, 109M without).


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
    # a SYN takes the first sequence number, its data (TCP Fast Open) the ones after it
    seq = np.int64(_be_word(data, off + TCP_SEQ_OFF, 4))
    if data[off + TCP_FLAGS_OFF] & TH_SYN:
        seq = (seq + 1) & 0xFFFF_FFFF
    segs[n_seg, T_SEQ] = seq
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
            # one level of GRE (ERSPAN, Ethernet, IP): its inner packet is walked by the
            # same layers, at one call site each, and ends where the outer one does
            for level in range(2):
                if version == 4:
                    status, protocol, off, sent_end = _ipv4(data, ip, end)
                else:
                    status, protocol, off, sent_end = _ipv6(data, ip, end)
                if status != _GO or protocol != IP_PROTO_GRE or level == 1:
                    break
                end = min(end, sent_end)
                status, version, ip = _gre(data, off, end)
                if status != _GO:
                    break
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
