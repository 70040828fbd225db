"""Safe text: untrusted bytes from the network made fit for a terminal cell.

In: query names (bytes as sent, from :class:`~wormwatch.model.HostState`) and
other strings that may carry hostile characters (evidence values, file names).
Out: plain ``str`` with nothing a terminal or rich would act on, and
:class:`rich.text.Text` cells built from it. Every piece of network text passes
:func:`safe_text` before it becomes part of the screen.

What is escaped, and why:

* bytes that are not valid UTF-8 -> ``\\xNN`` (one per byte);
* C0 controls and DEL (ESC, BEL, CR, LF, TAB, ...) -> ``\\xNN``: ESC would start
  a terminal escape sequence, CR and LF would move the cursor;
* C1 controls (U+0080..U+009F; some terminals treat U+009B as CSI), Unicode
  format characters (bidi overrides, zero-width), line/paragraph separators,
  surrogates, private-use and unassigned code points -> ``\\uNNNN``;
* ``[`` and ``]`` -> ``\\x5b`` and ``\\x5d``. The presenters never parse safe
  text as rich markup (it only ever goes into a ``Text``), so this is a second
  wall: if someone does pass it to ``console.print`` or ``Text.from_markup``,
  there is no ``[`` left to open a tag such as ``[link=...]``;
* for ``bytes`` input, the backslash itself -> ``\\\\``, so the escaping is
  reversible and a name that spells ``\\x1b`` cannot pass for one that holds an
  ESC byte (the same rule as :func:`wormwatch.detect.name_text` for JSON).
  ``str`` input is taken as text some other stage already made (it may carry
  that stage's escapes), so its backslashes are kept as they are.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from rich.text import Text

ELLIPSIS: Final = "…"
# printable ASCII except the backslash and the square brackets
_PLAIN_BYTES: Final = re.compile(rb"[\x20-\x5a\x5e-\x7e]*")
_PLAIN_STR: Final = re.compile(r"[\x20-\x5a\x5c\x5e-\x7e]*")
_UNSAFE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_ESCAPE_RUN: Final = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|\\)")


def _escape_char(ch: str, *, escape_backslash: bool) -> str:
    code = ord(ch)
    if ch == "\\":
        return "\\\\" if escape_backslash else ch
    if ch in "[]":
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:
        # a byte that is not valid UTF-8: surrogateescape put it here
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if code >= 0x80 and unicodedata.category(ch) in _UNSAFE_CATEGORIES:
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return ch


def _truncate(text: str, max_len: int) -> str:
    """Cut ``text`` to at most ``max_len`` characters, ending in an ellipsis,
    without splitting an escape such as ``\\x1b`` in half."""
    if len(text) <= max_len:
        return text
    if max_len <= 0:
        return ""
    cut = max_len - 1
    for match in _ESCAPE_RUN.finditer(text, max(0, cut - 10), cut + 10):
        if match.start() < cut < match.end():
            cut = match.start()
            break
    return text[:cut] + ELLIPSIS


def safe_text(raw: bytes | str, *, max_len: int | None = None) -> str:
    """Untrusted bytes or text -> a string safe to show in a terminal.

    Args:
        raw: a name as captured (``bytes``, any content) or a string from
            another stage (``str``, possibly with escapes of its own).
        max_len: cut the result to this many characters, the last being an
            ellipsis; an escape is never cut in half.

    Returns:
        Text with no control, format or escape characters and no square
        brackets; see the module docstring for the exact rules.
    """
    if isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
        if _PLAIN_BYTES.fullmatch(data):
            text = data.decode("ascii")
        else:
            decoded = data.decode("utf-8", errors="surrogateescape")
            text = "".join(_escape_char(ch, escape_backslash=True) for ch in decoded)
    elif _PLAIN_STR.fullmatch(raw):
        text = raw
    else:
        # a str may hold lone surrogates from someone's surrogateescape: they
        # are category Cs and get escaped like any other unsafe code point
        text = "".join(_escape_char(ch, escape_backslash=False) for ch in raw)
    return text if max_len is None else _truncate(text, max_len)


def name_cell(raw: bytes | str, *, max_len: int | None = None, style: str = "") -> Text:
    """A table cell for an untrusted name: :func:`safe_text` in a ``Text``.

    The cell never wraps (a long name ends in an ellipsis at the column edge),
    and it is built as plain text, never parsed as markup.
    """
    return Text(
        safe_text(raw, max_len=max_len),
        style=style,
        no_wrap=True,
        overflow="ellipsis",
        end="",
    )
