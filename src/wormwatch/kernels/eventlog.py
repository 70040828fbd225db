"""Event log kernels: a batch of event columns -> JSON lines, in one buffer.

In: the decoder's event columns (``wormwatch.model.Events``), a per-row flag saying
whether a name is plain ASCII, the JSON text of the few names that are not (made in
Python by the evidence escaping rule), an answer's name score in thousandths, and
tables of qtype, RCODE and status names as byte arrays. Out: UTF-8 JSON lines written
into a caller's byte buffer; the count of bytes.

Field order and spelling are those of ``wormwatch.present.sinks.events`` (its docstring
shows a line). Addresses print as Python's ``ipaddress`` does (RFC 5952, lower-case
hex, the first longest run of two or more zero groups as ``::``), IPv4-mapped ones
as a dotted quad; times as ``datetime.isoformat(timespec="microseconds")`` in UTC; a
name score of ``m`` thousandths as Python's ``json`` writes ``m / 1000``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from wormwatch.model import KIND_ANSWER, KIND_SYN, SCHEMA

_V4_MAPPED_HI_WORD = 0xFFFF  # lo >> 32 of ::ffff:a.b.c.d
_US_PER_DAY = 86_400_000_000
_QUOTE = 0x22
_BACKSLASH = 0x5C
_PRINTABLE_FIRST = 0x20
_PRINTABLE_LAST = 0x7E
_SCORE_UNITS = 1000
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_UTC = np.frombuffer(b"+00:00", np.uint8)
# the fixed text of a line, in the order it is written (one table, cut by _CUTS)
_PIECES = (
    b'{"schema":%d,"event_type":"event","timestamp":"' % SCHEMA,
    b'","kind":"dns-query","src_ip":"',
    b'","kind":"syn","src_ip":"',
    b'","src_port":',
    b',"dst_ip":"',
    b'","dst_port":',
    b',"qtype":',
    b',"qtype_name":"',
    b'","name":"',
    b'","status":"',
    b',"status":"',
    b'"}\n',
    b"TYPE",
    b'","kind":"dns-answer","src_ip":"',
    b'","rcode":',
    b',"rcode_name":"',
    b'","nxdomain":',
    b"true",
    b"false",
    b',"name_score":',
    b"null",
)
_TEXT = np.frombuffer(b"".join(_PIECES), np.uint8)
_CUTS = np.cumsum(np.array([0, *(len(p) for p in _PIECES)], np.int64))
(_HEAD, _DNS, _SYN, _SPORT, _DST, _DPORT, _QTYPE, _QNAME, _NAME, _STATUS_DNS, _STATUS_SYN,
 _END, _TYPE, _ANSWER, _RCODE, _RCODE_NAME, _NX, _TRUE, _FALSE, _SCORE, _NULL,
 ) = range(len(_PIECES))  # fmt: skip
_RCODE_NXDOMAIN = 3
# bytes of a line besides its name: the longest addresses, numbers and names
LINE_MAX_FIXED = int(_CUTS[-1]) + 2 * 39 + 26 + 32 + 2 * 5 + 5 + 16


@njit(cache=True, nogil=True)
def plain_names(names, name_lens, n, plain):  # type: ignore[no-untyped-def]
    """``plain[i]`` = name ``i`` is printable ASCII without a backslash (the evidence
    rule leaves it as it is). Returns how many are not."""
    n_other = 0
    for i in range(n):
        is_plain = True
        for j in range(name_lens[i]):
            c = names[i, j]
            if c < _PRINTABLE_FIRST or c > _PRINTABLE_LAST or c == _BACKSLASH:
                is_plain = False
                break
        plain[i] = is_plain
        n_other += 0 if is_plain else 1
    return n_other


@njit(cache=True, nogil=True, inline="always")
def _put(out, pos, table, offsets, index):  # type: ignore[no-untyped-def]
    for k in range(offsets[index], offsets[index + 1]):
        out[pos] = table[k]
        pos += 1
    return pos


@njit(cache=True, nogil=True, inline="always")
def _put_uint(out, pos, value):  # type: ignore[no-untyped-def]
    """Decimal digits of ``value`` (>= 0)."""
    n_digits = 1
    rest = value // 10
    while rest > 0:
        n_digits += 1
        rest //= 10
    for k in range(n_digits - 1, -1, -1):
        out[pos + k] = 0x30 + value % 10
        value //= 10
    return pos + n_digits


@njit(cache=True, nogil=True, inline="always")
def _put_fixed(out, pos, value, width):  # type: ignore[no-untyped-def]
    """``value`` as exactly ``width`` decimal digits (zero-padded)."""
    for k in range(width - 1, -1, -1):
        out[pos + k] = 0x30 + value % 10
        value //= 10
    return pos + width


@njit(cache=True, nogil=True)
def _put_time(out, pos, ts_us):  # type: ignore[no-untyped-def]
    """``YYYY-MM-DDTHH:MM:SS.ffffff+00:00`` (days -> civil date: H. Hinnant's algorithm)."""
    days = ts_us // _US_PER_DAY
    rest = ts_us - days * _US_PER_DAY
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    pos = _put_fixed(out, pos, year, 4)
    out[pos] = 0x2D
    pos = _put_fixed(out, pos + 1, month, 2)
    out[pos] = 0x2D
    pos = _put_fixed(out, pos + 1, day, 2)
    out[pos] = 0x54  # T
    secs = rest // 1_000_000
    pos = _put_fixed(out, pos + 1, secs // 3600, 2)
    out[pos] = 0x3A
    pos = _put_fixed(out, pos + 1, secs // 60 % 60, 2)
    out[pos] = 0x3A
    pos = _put_fixed(out, pos + 1, secs % 60, 2)
    out[pos] = 0x2E
    pos = _put_fixed(out, pos + 1, rest % 1_000_000, 6)
    for c in _UTC:
        out[pos] = c
        pos += 1
    return pos


@njit(cache=True, nogil=True, inline="always")
def _group(hi, lo, k):  # type: ignore[no-untyped-def]
    """16-bit group ``k`` (0..7) of the address ``hi:lo``."""
    word = hi if k < 4 else lo
    return np.int64((word >> np.uint64(48 - 16 * (k % 4))) & np.uint64(0xFFFF))


@njit(cache=True, nogil=True)
def _put_addr(out, pos, hi, lo):  # type: ignore[no-untyped-def]
    """An address as ``wormwatch.model.addr_text`` prints it."""
    if hi == 0 and (lo >> np.uint64(32)) == _V4_MAPPED_HI_WORD:
        for shift in (24, 16, 8, 0):
            pos = _put_uint(out, pos, np.int64((lo >> np.uint64(shift)) & np.uint64(255)))
            if shift:
                out[pos] = 0x2E
                pos += 1
        return pos
    # the first longest run of zero groups, compressed when it is two or longer
    best, best_len, run = -1, 1, 0
    for k in range(8):
        run = run + 1 if _group(hi, lo, k) == 0 else 0
        if run > best_len:
            best, best_len = k - run + 1, run
    k, is_first = 0, True
    while k < 8:
        if k == best:
            out[pos], out[pos + 1] = 0x3A, 0x3A
            pos += 2
            k += best_len
            is_first = True
            continue
        if not is_first:
            out[pos] = 0x3A
            pos += 1
        value, n_digits = _group(hi, lo, k), 1
        while n_digits < 4 and value >> (4 * n_digits):
            n_digits += 1
        for d in range(n_digits - 1, -1, -1):
            out[pos] = _HEX[(value >> (4 * d)) & 15]
            pos += 1
        is_first = False
        k += 1
    return pos


@njit(cache=True, nogil=True, inline="always")
def _put_name(out, pos, names, row, length, esc_index, esc_text, esc_cuts):  # type: ignore[no-untyped-def]
    """The name as JSON string content: a plain name with ``"`` escaped, else the
    text Python escaped for it."""
    k = esc_index[row]
    if k >= 0:
        return _put(out, pos, esc_text, esc_cuts, k)
    for j in range(length):
        c = names[row, j]
        if c == _QUOTE:
            out[pos] = _BACKSLASH
            pos += 1
        out[pos] = c
        pos += 1
    return pos


@njit(cache=True, nogil=True, inline="always")
def _put_score(out, pos, milli):  # type: ignore[no-untyped-def]
    """``milli / 1000`` as Python's json writes it (``0.87``, ``1.0``); -1: ``null``."""
    if milli < 0:
        return _put(out, pos, _TEXT, _CUTS, _NULL)
    pos = _put_uint(out, pos, milli // _SCORE_UNITS)
    out[pos] = 0x2E
    fraction = milli % _SCORE_UNITS
    if fraction == 0:
        out[pos + 1] = 0x30
        return pos + 2
    n_digits = 3
    while fraction % 10 == 0:
        fraction //= 10
        n_digits -= 1
    return _put_fixed(out, pos + 1, fraction, n_digits)


@njit(cache=True, nogil=True, inline="always")
def _put_question(out, pos, qtype, qtype_index, qtype_text, qtype_cuts):  # type: ignore[no-untyped-def]
    """``,"qtype":N,"qtype_name":"MX","name":"`` (the name follows)."""
    pos = _put(out, pos, _TEXT, _CUTS, _QTYPE)
    pos = _put_uint(out, pos, qtype)
    pos = _put(out, pos, _TEXT, _CUTS, _QNAME)
    if qtype_index[qtype] >= 0:
        pos = _put(out, pos, qtype_text, qtype_cuts, qtype_index[qtype])
    else:
        pos = _put(out, pos, _TEXT, _CUTS, _TYPE)
        pos = _put_uint(out, pos, qtype)
    return _put(out, pos, _TEXT, _CUTS, _NAME)


@njit(cache=True, nogil=True, inline="always")
def _put_rcode(out, pos, rcode, milli, rcode_text, rcode_cuts):  # type: ignore[no-untyped-def]
    """An answer's ``","rcode":3,"rcode_name":"NXDOMAIN","nxdomain":true,
    "name_score":0.87`` (closing its name)."""
    pos = _put(out, pos, _TEXT, _CUTS, _RCODE)
    pos = _put_uint(out, pos, rcode)
    pos = _put(out, pos, _TEXT, _CUTS, _RCODE_NAME)
    pos = _put(out, pos, rcode_text, rcode_cuts, rcode)
    pos = _put(out, pos, _TEXT, _CUTS, _NX)
    pos = _put(out, pos, _TEXT, _CUTS, _TRUE if rcode == _RCODE_NXDOMAIN else _FALSE)
    pos = _put(out, pos, _TEXT, _CUTS, _SCORE)
    return _put_score(out, pos, milli)


@njit(cache=True, nogil=True)
def format_events(  # type: ignore[no-untyped-def]
    n, ts_us, src_hi, src_lo, dst_hi, dst_lo, kinds, sports, dports, qtypes, names,
    name_lens, statuses, rcodes, score_milli, esc_index, esc_text, esc_cuts, qtype_index,
    qtype_text, qtype_cuts, rcode_text, rcode_cuts, status_text, status_cuts, out,
):  # fmt: skip
    """Rows ``0..n`` as JSON lines into ``out`` (sized by the caller: ``LINE_MAX_FIXED``
    per row, twice each plain name and the escaped texts). Returns the bytes written.

    ``esc_index[i]`` is -1 for a plain name, else the index of its text in
    ``esc_text`` (cut by ``esc_cuts``); ``qtype_index[q]`` is -1 for a qtype without
    a mnemonic (written ``TYPEq``, RFC 3597), else the index into ``qtype_text``;
    ``rcode_text`` holds the 16 RCODE names; ``score_milli[i]`` is an answer's name
    score in thousandths (-1: none, written ``null``).
    """
    pos = 0
    for i in range(n):
        pos = _put(out, pos, _TEXT, _CUTS, _HEAD)
        pos = _put_time(out, pos, ts_us[i])
        kind = kinds[i]
        piece = _SYN if kind == KIND_SYN else (_ANSWER if kind == KIND_ANSWER else _DNS)
        pos = _put(out, pos, _TEXT, _CUTS, piece)
        pos = _put_addr(out, pos, src_hi[i], src_lo[i])
        pos = _put(out, pos, _TEXT, _CUTS, _SPORT)
        pos = _put_uint(out, pos, np.int64(sports[i]))
        pos = _put(out, pos, _TEXT, _CUTS, _DST)
        pos = _put_addr(out, pos, dst_hi[i], dst_lo[i])
        pos = _put(out, pos, _TEXT, _CUTS, _DPORT)
        pos = _put_uint(out, pos, np.int64(dports[i]))
        if kind == KIND_SYN:
            pos = _put(out, pos, _TEXT, _CUTS, _STATUS_SYN)
        else:
            qtype = np.int64(qtypes[i])
            pos = _put_question(out, pos, qtype, qtype_index, qtype_text, qtype_cuts)
            pos = _put_name(out, pos, names, i, name_lens[i], esc_index, esc_text, esc_cuts)
            if kind == KIND_ANSWER:
                rcode = np.int64(rcodes[i])
                pos = _put_rcode(out, pos, rcode, score_milli[i], rcode_text, rcode_cuts)
                pos = _put(out, pos, _TEXT, _CUTS, _STATUS_SYN)
            else:
                pos = _put(out, pos, _TEXT, _CUTS, _STATUS_DNS)
        pos = _put(out, pos, status_text, status_cuts, np.int64(statuses[i]))
        pos = _put(out, pos, _TEXT, _CUTS, _END)
    return pos
