"""Detect stage: per-host signals, score and verdicts from the aggregated counters.

In: one :class:`~wormwatch.model.HostState` (totals, per-bin counters of the
bins kept in the window, sample names, name-prefix counts) and the
:class:`~wormwatch.config.Config`. Out: a :class:`~wormwatch.model.Verdict`
(score 0-100, the signals that fired, JSON-serialisable evidence). Also the
network-wide MX/SYN correlation. ``docs/DETECTION.md`` explains every signal
and threshold.

Hosts are evaluated at bin boundaries, not per packet; everything here is
numpy over the host's bins.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# printable ASCII except the backslash, which is the escape character
_PLAIN = re.compile(rb"[\x20-\x5b\x5d-\x7e]*")
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def iso_time(ts_us: int) -> str:
    """Packet time in microseconds since the epoch -> ISO 8601 UTC with offset."""
    return (_EPOCH + timedelta(microseconds=int(ts_us))).isoformat(timespec="microseconds")


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if ch == "\\":
        return "\\\\"
    if 0xDC80 <= code <= 0xDCFF:
        # a byte that is not valid UTF-8 (surrogateescape put it here)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80 and (code < 0x20 or code == 0x7F):
        return f"\\x{code:02x}"
    if code >= 0x80 and unicodedata.category(ch) in _UNSAFE_CATEGORIES:
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return ch


def name_text(raw: bytes) -> str:
    """A DNS name from the wire as safe, unambiguous text.

    Valid UTF-8 is kept; a byte that is not valid UTF-8 becomes ``\\xNN``;
    ASCII control characters (NUL, ESC, DEL, ...) become ``\\xNN``; Unicode
    control, format (bidi overrides, zero-width), line/paragraph separator,
    private-use and unassigned code points become ``\\uNNNN``; the backslash
    itself becomes ``\\\\``. So the text holds no control character, and the
    original bytes can be recovered from it.
    """
    if _PLAIN.fullmatch(raw):
        return raw.decode("ascii")
    text = raw.decode("utf-8", errors="surrogateescape")
    return "".join(_escape_char(ch) for ch in text)
