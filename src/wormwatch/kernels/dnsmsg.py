"""The DNS message reader of the decode kernels: a message's header and first question ->
a query or answer event (kind, qtype, name, RCODE).

Inlined into ``decode_packets`` (kernels/decode.py) for UDP and into the flow kernel
(kernels/dnstcp.py) for the messages of a TCP stream. The rules are docs/DECODING.md,
"DNS query" and "DNS answer".
"""

# (numba compiles chained == to plain compares; `in {...}` would build a set at run time)

from __future__ import annotations

import numpy as np
from numba import njit

from wormwatch.kernels.headers import (
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
)
from wormwatch.kernels.layers import _FROM_DNS, _GO, _TO_DNS, _be16
from wormwatch.model import (
    KIND_ANSWER,
    KIND_DNS,
    NAME_MAX,
    ST_MALFORMED,
    ST_TRUNCATED,
)


# Called, not inlined: a copy at each of its call sites in the decoder and the
# DNS-over-TCP flows cost ~0.4 s of first compile each (see kernels/decode.py).
@njit(cache=True, nogil=True)
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
