"""Numba kernel of DNS over TCP: segments to and from port 53 -> the queries and
answers they complete.

``decode_packets`` (kernels/decode.py) gives every TCP segment to or from port 53 with
a payload a T_* row and no events; this kernel walks those rows in packet order with a
bounded per-flow table (flow = one direction of a connection: source address,
destination address, source and destination port) and writes an event for each DNS
message whose last byte arrives, read from the first bytes of the message it kept: a
query (QR = 0) in a stream to port 53, an answer (QR = 1) in a stream from port 53,
counted for the client it is sent to. The rule (docs/DECODING.md, "DNS over TCP"):

- the table remembers, per flow, the sequence number of the next unread byte
  (``expect``) and the message in progress: bytes seen (length prefix included) and
  its first ``BUF`` bytes;
- bytes before ``expect`` (a retransmission, the rest of a message already read) are
  not read again; a segment beyond ``expect`` (a gap) drops the message in progress
  and is read from its first byte, as is the first segment of a flow;
- a length below 12 loses the stream (``malformed``; the flow is forgotten);
- positions count the bytes as sent; bytes the capture cut off (snaplen) are seen
  but not kept, so a message whose header was not captured is ``truncated`` and not
  counted, and a length prefix cut loses the stream (``truncated``); a capture that
  ends between two messages loses the stream too, with no status of its own;
- every message a segment completes counts, however many: the kernel stops before a
  segment when fewer event rows are free than it could complete (``_rows_needed``: a
  message takes at least 14 bytes, its prefix and header), and the wrapper grows them;
- the table holds ``max_flows`` flows (``TcpFlows``); a new flow takes a free slot, else the least
  recently used one; a flow idle for ``timeout_us`` of packet time is forgotten (when
  it is next looked up). With ``keep`` false nothing is remembered between segments.
  Flows are found through a hash index and kept in use order in a linked list, so a
  segment costs the same with 1 flow or 1024 (a scan of every slot per segment made
  DNS over TCP a fifth of a replay's decode time).

The message reader (``_message``, kernels/dnsmsg.py) is the decode kernel's, inlined here;
the cache stamp of every kernel covers the whole package (kernels/cacheload.py), so a
change to it reaches this kernel too.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from wormwatch.kernels.decode import (
    T_DPORT,
    T_IP,
    T_PACKET,
    T_SENT,
    T_SEQ,
    T_SPORT,
    T_START,
    T_STOP,
    T_VERSION,
)
from wormwatch.kernels.dnsmsg import _message
from wormwatch.kernels.headers import (
    DNS_LEN,
    DNS_TCP_PREFIX,
    IP6_DST_OFF,
    IP6_SRC_OFF,
    IP_DST_OFF,
    IP_SRC_OFF,
)
from wormwatch.kernels.layers import _be16, _be_word, _side
from wormwatch.kernels.probing import unindex
from wormwatch.model import (
    ST_IGNORED,
    ST_MALFORMED,
    ST_OK,
    ST_TRUNCATED,
    V4_MAPPED_PREFIX,
)

# bytes kept of the message in progress, its length prefix included: a question
# (12-byte header, a name of at most 255 bytes, type and class) always fits
BUF = 512
# flow key columns (K_PORTS: source port << 16 | destination port, so the two
# directions of a connection are two flows)
K_SRC_HI, K_SRC_LO, K_DST_HI, K_DST_LO, K_PORTS = 0, 1, 2, 3, 4
N_KEY = 5
# per slot (links columns): the use order (previous, next slot) and the key's home
# position in the index; the table's state (head, tail, free slots)
L_PREV, L_NEXT, L_HOME = 0, 1, 2
S_HEAD, S_TAIL, S_FREE = 0, 1, 2
_MIX_START = 0x9E3779B97F4A7C15
_MIX_MUL = 0xFF51AFD7ED558CCD
PORT_BITS = 16
SEQ_MOD = 1 << 32
_GO = 255
# the fewest bytes a DNS message takes in a TCP stream: its length prefix and header
MIN_MESSAGE = DNS_TCP_PREFIX + DNS_LEN


@njit(cache=True, nogil=True, inline="always")
def _rows_needed(segs, i):  # type: ignore[no-untyped-def]
    """The most events segment row ``i`` can complete: the message in progress, then
    one per MIN_MESSAGE captured bytes (a message whose header was not captured makes
    none, and the stream is lost where the capture ends between two messages)."""
    return 1 + (segs[i, T_STOP] - segs[i, T_START]) // MIN_MESSAGE


@njit(cache=True, nogil=True, inline="always")
def _key(data, ip, version, sport, dport, key):  # type: ignore[no-untyped-def]
    if version == 4:
        key[K_SRC_HI] = 0
        key[K_SRC_LO] = np.uint64(V4_MAPPED_PREFIX) | _be_word(data, ip + IP_SRC_OFF, 4)
        key[K_DST_HI] = 0
        key[K_DST_LO] = np.uint64(V4_MAPPED_PREFIX) | _be_word(data, ip + IP_DST_OFF, 4)
    else:
        key[K_SRC_HI] = _be_word(data, ip + IP6_SRC_OFF, 8)
        key[K_SRC_LO] = _be_word(data, ip + IP6_SRC_OFF + 8, 8)
        key[K_DST_HI] = _be_word(data, ip + IP6_DST_OFF, 8)
        key[K_DST_LO] = _be_word(data, ip + IP6_DST_OFF + 8, 8)
    key[K_PORTS] = (np.uint64(sport) << np.uint64(PORT_BITS)) | np.uint64(dport)


@njit(cache=True, nogil=True, inline="always")
def _hash(key, mask):  # type: ignore[no-untyped-def]
    """Index position of a flow key (a multiply-xorshift mix of its words)."""
    h = np.uint64(_MIX_START)
    for k in range(N_KEY):
        h = (h ^ key[k]) * np.uint64(_MIX_MUL)
        h ^= h >> np.uint64(33)
    return np.int64(h & np.uint64(mask))


@njit(cache=True, nogil=True, inline="always")
def _find(index, keys, key, home):  # type: ignore[no-untyped-def]
    """-> the slot of the flow ``key`` (``home``: its home position), or -1. ``index``
    is open addressing with linear probing over slot numbers (-1 empty)."""
    mask = index.shape[0] - 1
    i = home
    while True:
        s = index[i]
        if s < 0:
            return s
        same = True
        for k in range(N_KEY):
            if keys[s, k] != key[k]:
                same = False
                break
        if same:
            return s
        i = (i + 1) & mask


@njit(cache=True, nogil=True, inline="always")
def _unlink(links, state, s):  # type: ignore[no-untyped-def]
    """Takes slot ``s`` out of the use order (a list, least recently used first)."""
    before, after = links[s, L_PREV], links[s, L_NEXT]
    if before >= 0:
        links[before, L_NEXT] = after
    else:
        state[S_HEAD] = after
    if after >= 0:
        links[after, L_PREV] = before
    else:
        state[S_TAIL] = before


@njit(cache=True, nogil=True, inline="always")
def _append(links, state, s):  # type: ignore[no-untyped-def]
    """Puts slot ``s`` last in the use order (the most recently used)."""
    tail = state[S_TAIL]
    links[s, L_PREV] = tail
    links[s, L_NEXT] = -1
    if tail >= 0:
        links[tail, L_NEXT] = s
    else:
        state[S_HEAD] = s
    state[S_TAIL] = s


@njit(cache=True, nogil=True)
def _forget(last_us, index, links, free, state, s):  # type: ignore[no-untyped-def]
    """Forgets the flow in slot ``s``: out of the index (later entries of its probe
    run shift back, so no tombstone is left), out of the use order, slot free."""
    unindex(index, s, links, L_HOME)
    _unlink(links, state, s)
    free[state[S_FREE]] = s
    state[S_FREE] += 1
    last_us[s] = -1


@njit(cache=True, nogil=True)
def _slot(keys, last_us, key, now, timeout_us, index, links, free, state):  # type: ignore[no-untyped-def]
    """-> (slot, is_new): the flow's slot (made the most recently used), else a new
    one for it: a free slot, else the least recently used flow's. A flow idle longer
    than ``timeout_us`` is forgotten when it is next looked up (testkit's reference
    table, an OrderedDict, does the same)."""
    mask = index.shape[0] - 1
    home = _hash(key, mask)
    s = _find(index, keys, key, home)
    if s >= 0:
        if now - last_us[s] <= timeout_us:
            _unlink(links, state, s)
            _append(links, state, s)
            return s, False
        _forget(last_us, index, links, free, state, s)
    if state[S_FREE] == 0:
        _forget(last_us, index, links, free, state, state[S_HEAD])
    state[S_FREE] -= 1
    s = free[state[S_FREE]]
    # element by element: a slice assignment compiles numba's shape-mismatch error
    # message (str of ints, joins), ~2 s of a first run's compile
    for k in range(N_KEY):
        keys[s, k] = key[k]
    at = home  # the key is in no slot now: the first empty position of its run
    while index[at] >= 0:
        at = (at + 1) & mask
    index[at] = s
    links[s, L_HOME] = home
    _append(links, state, s)
    return s, True


@njit(cache=True, nogil=True)
def tcp_dns(  # type: ignore[no-untyped-def]
    data, ts_us, segs, first, n_seg, statuses, keep, timeout_us,
    keys, last_us, expect, seen, kept, bufs, index, links, free, state,
    ev_packet, ev_ts, src_hi, src_lo, dst_hi, dst_lo, kinds, dports, qtypes, names,
    name_lens, sports, ev_statuses, rcodes, n_events,
):  # fmt: skip
    """Walk segment rows ``first..n_seg`` (kernels/decode.py T_* columns) through the
    flow table; write the status of each segment's packet and an event row (its packet
    ``ev_packet`` and the event columns) per DNS query or answer message completed.
    Stops before a segment when fewer event rows are free than it could complete
    (``_rows_needed``; the wrapper then doubles them).

    Returns:
        (index of the first segment row not walked, event rows filled).
    """
    key = np.zeros(N_KEY, np.uint64)
    capacity = qtypes.shape[0]
    i = first
    while i < n_seg and capacity - n_events >= _rows_needed(segs, i):
        p = segs[i, T_PACKET]
        now = ts_us[p]
        sport, dport = segs[i, T_SPORT], segs[i, T_DPORT]
        side = _side(dport, sport)
        _key(data, segs[i, T_IP], segs[i, T_VERSION], sport, dport, key)
        s, is_new = _slot(keys, last_us, key, now, timeout_us, index, links, free, state)
        seq = segs[i, T_SEQ]
        if is_new:
            expect[s] = seq
            seen[s] = 0
            kept[s] = 0
        last_us[s] = now
        statuses[p], n_rows, lost = _walk(
            data, segs[i, T_START], segs[i, T_STOP], segs[i, T_SENT], seq, s, side, expect,
            seen, kept, bufs, kinds, rcodes, names, qtypes, name_lens, n_events,
        )  # fmt: skip
        for row in range(n_events, n_events + n_rows):
            ev_packet[row] = p
            ev_ts[row] = now
            src_hi[row] = key[K_SRC_HI]
            src_lo[row] = key[K_SRC_LO]
            dst_hi[row] = key[K_DST_HI]
            dst_lo[row] = key[K_DST_LO]
            dports[row] = dport
            sports[row] = sport
            ev_statuses[row] = statuses[p]
        n_events += n_rows
        if lost or not keep:
            _forget(last_us, index, links, free, state, s)
        i += 1
    return i, n_events


# longer than 60 lines: a segment's messages are walked in one loop that keeps the flow's
# partial message in step with the sequence numbers. Called, not inlined: numba copies an
# inlined function's IR at the call site, and this one holds the DNS message parser
# (~0.35 s of a first run's compile); one call per TCP segment to port 53 costs little
@njit(cache=True, nogil=True)
def _walk(  # type: ignore[no-untyped-def]
    data, start, stop, sent, seq, s, side, expect, seen, kept, bufs, kinds, rcodes, names,
    qtypes, name_lens, row0,
):  # fmt: skip
    """One segment (captured ``data[start:stop]`` of ``start..sent``, ``side`` by its
    ports: _TO_DNS and/or _FROM_DNS) through flow slot ``s`` -> (status, event rows,
    stream lost)."""
    ahead = (expect[s] - seq) % SEQ_MOD
    if ahead >= SEQ_MOD // 2:
        # a gap: the message in progress cannot complete; read this segment afresh
        seen[s] = 0
        kept[s] = 0
        ahead = 0
    length = sent - start
    captured = stop - start
    if ahead >= length:
        return ST_IGNORED, 0, False
    buf0 = s * BUF
    status = _GO
    n_rows = 0
    pos = ahead
    while pos < length:
        if seen[s] == 0 and pos >= captured:
            # the capture ends between two messages: what follows is unknown
            status = ST_OK if n_rows > 0 and status == _GO else status
            return (ST_IGNORED if status == _GO else status), n_rows, True
        need = DNS_TCP_PREFIX
        if seen[s] >= DNS_TCP_PREFIX:
            need = DNS_TCP_PREFIX + _be16(bufs, buf0)
        take = min(need - seen[s], length - pos)
        if kept[s] == seen[s]:
            # kept while every byte so far was captured (a hole ends the copy)
            n_copy = min(take, BUF - kept[s], captured - pos)
            for k in range(max(0, n_copy)):
                bufs[buf0 + kept[s] + k] = data[start + pos + k]
            kept[s] += max(0, n_copy)
        seen[s] += take
        pos += take
        if seen[s] == DNS_TCP_PREFIX and kept[s] < DNS_TCP_PREFIX:
            return (ST_TRUNCATED if status == _GO else status), n_rows, True
        if seen[s] == DNS_TCP_PREFIX and _be16(bufs, buf0) < DNS_LEN:
            return (ST_MALFORMED if status == _GO else status), n_rows, True
        if seen[s] > DNS_TCP_PREFIX and seen[s] == need:
            msg = buf0 + DNS_TCP_PREFIX
            bound = buf0 + kept[s]
            seen[s] = 0
            kept[s] = 0
            if bound - msg < DNS_LEN:
                if status == _GO:
                    status = ST_TRUNCATED
                continue
            # a query to port 53 or an answer from it (kind and rcode set by _message)
            problem, is_event = _message(
                bufs, msg, bound, side, row0 + n_rows, kinds, rcodes, names, qtypes,
                name_lens,
            )  # fmt: skip
            if is_event:
                n_rows += 1
                if status == _GO:
                    status = problem
    expect[s] = (seq + pos) % SEQ_MOD
    if status == _GO:
        status = ST_OK if n_rows > 0 else ST_IGNORED
    return status, n_rows, False
