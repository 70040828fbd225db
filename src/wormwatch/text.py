"""Text the sensor writes: packet time as text, untrusted bytes as safe text.

In: packet time (microseconds since the epoch) and query names as captured
(``bytes``, any content) or strings another stage made. Out: ``str`` for
JSON lines, the terminal and the HTML report alike. Detect (evidence),
the records (:mod:`wormwatch.records`) and every presenter use these, so a
timestamp or an escaped name reads the same everywhere.

The one escaping rule (:func:`escape_text`):

* bytes that are not valid UTF-8 -> ``\\xNN`` (one per byte);
* C0 controls and DEL (ESC, BEL, CR, LF, TAB, ...) -> ``\\xNN``: ESC would start
  a terminal escape sequence, CR and LF would move the cursor or split a line;
* C1 controls (U+0080..U+009F; some terminals treat U+009B as CSI), Unicode
  format characters (bidi overrides, zero-width), line/paragraph separators,
  surrogates, private-use and unassigned code points, and what can make one name
  look like another: spaces other than ASCII's, combining marks (U+0336 strikes a
  name through), and the letters that draw as nothing (Hangul fillers, the braille
  blank) -> ``\\uNNNN``;
* for ``bytes`` input, the backslash itself -> ``\\\\``, so the escaping is
  reversible and a name that spells ``\\x1b`` cannot pass for one that holds an
  ESC byte. ``str`` input is text some other stage already made (it may carry
  that stage's escapes), so its backslashes are kept as they are;
* with ``brackets`` (the terminal's rule, :func:`wormwatch.present.safe.safe_text`),
  ``[`` and ``]`` -> ``\\x5b`` and ``\\x5d`` as well.

Stdlib only; no stage logic.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Final

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_UNSAFE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs", "Mn", "Me"})
# letters and symbols that draw as nothing: the Hangul fillers, the braille blank
_INVISIBLE: Final = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# Text that needs no escaping, by whether brackets are escaped: printable
# ASCII except the backslash (bytes only) and the square brackets (terminal).
_PLAIN_BYTES: Final = {
    False: re.compile(rb"[\x20-\x5b\x5d-\x7e]*"),
    True: re.compile(rb"[\x20-\x5a\x5e-\x7e]*"),
}
_PLAIN_STR: Final = {
    False: re.compile(r"[\x20-\x7e]*"),
    True: re.compile(r"[\x20-\x5a\x5c\x5e-\x7e]*"),
}


_DAY_US: Final = 86_400 * 1_000_000


@functools.lru_cache(maxsize=256)
def _day_text(day: int) -> str:
    """Day ``day`` since the epoch as ISO 8601 text (``2026-11-30``)."""
    return (_EPOCH + timedelta(days=day)).date().isoformat()


def iso_time(ts_us: int) -> str:
    """Packet time in microseconds since the epoch -> ISO 8601 UTC with offset,
    as ``datetime.isoformat(timespec="microseconds")`` writes it.

    The date comes from a small cache of days (a summary's times fall on a few),
    the time of day from integer arithmetic: a third of ``datetime``'s cost, and
    a summary writes two per host.
    """
    day, of_day = divmod(int(ts_us), _DAY_US)
    seconds, us = divmod(of_day, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{_day_text(day)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{us:06d}+00:00"


def iso_time_us(text: str) -> int:
    """Inverse of :func:`iso_time`: ISO 8601 text (with offset) -> microseconds since the epoch."""
    return (datetime.fromisoformat(text) - _EPOCH) // timedelta(microseconds=1)


def utc_time(ts_us: int, *, with_date: bool = True) -> str:
    """Packet time as UTC wall-clock text: ``2026-11-27 12:05:00`` (or ``12:05:00``)."""
    when = _EPOCH + timedelta(microseconds=int(ts_us))  # exact: no float rounding
    return when.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def _escape_char(ch: str, *, backslash: bool, brackets: bool) -> str:
    code = ord(ch)
    if ch == "\\":
        return "\\\\" if backslash else ch
    if brackets and ch in "[]":
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:
        # a byte that is not valid UTF-8 (surrogateescape put it here)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if code >= 0x80 and (ch in _INVISIBLE or unicodedata.category(ch) in _UNSAFE_CATEGORIES):
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return ch


def escape_text(raw: bytes | str, *, brackets: bool = False) -> str:
    """Untrusted bytes (or another stage's text) -> safe, unambiguous text.

    Args:
        raw: a name as captured (``bytes``, any content) or a string from
            another stage (``str``, possibly with escapes of its own).
        brackets: also escape ``[`` and ``]`` (the terminal's second wall
            against rich markup).

    Returns:
        Text with no control, format or unassigned character; see the module
        docstring for the exact rule.
    """
    if isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
        if _PLAIN_BYTES[brackets].fullmatch(data):
            return data.decode("ascii")
        text = data.decode("utf-8", errors="surrogateescape")
        return "".join(_escape_char(ch, backslash=True, brackets=brackets) for ch in text)
    if _PLAIN_STR[brackets].fullmatch(raw):
        return raw
    # a str may hold lone surrogates from someone's surrogateescape: they are
    # category Cs and get escaped like any other unsafe code point
    return "".join(_escape_char(ch, backslash=False, brackets=brackets) for ch in raw)


def names_text(raws: list[bytes]) -> list[str]:
    """:func:`name_text` of each name; plain ASCII names (nearly all) in one pass."""
    if not raws:
        return []
    joined = b"".join(raws)
    if not _PLAIN_BYTES[False].fullmatch(joined):
        return [escape_text(raw) for raw in raws]
    text = joined.decode("ascii")
    out = []
    pos = 0
    for raw in raws:
        out.append(text[pos : pos + len(raw)])
        pos += len(raw)
    return out


def name_text(raw: bytes) -> str:
    """A DNS name from the wire as safe, unambiguous text (:func:`escape_text`).

    Valid UTF-8 is kept; invalid bytes, control and format characters become
    ``\\xNN``/``\\uNNNN``; the backslash becomes ``\\\\``. So the text holds no
    control character, and the original bytes can be recovered from it.
    """
    return escape_text(raw)
