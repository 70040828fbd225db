"""Safe text: untrusted bytes from the network made fit for a terminal cell.

In: query names (bytes as sent, from :class:`~wormwatch.model.HostState`) and
other strings that may carry hostile characters (evidence values, file names).
Out: plain ``str`` with nothing a terminal or rich would act on, and
:class:`rich.text.Text` cells built from it. Every piece of network text passes
:func:`safe_text` before it becomes part of the screen.

The escaping rule is :func:`wormwatch.text.escape_text`, the one the JSON
lines and the report use too, with the square brackets escaped as well
(``[`` -> ``\\x5b``, ``]`` -> ``\\x5d``): the presenters never parse safe text
as rich markup (it only ever goes into a ``Text``), so this is a second wall:
if someone does pass it to ``console.print`` or ``Text.from_markup``, there
is no ``[`` left to open a tag such as ``[link=...]``. This module adds what
only a terminal cell needs: cutting to a width without splitting an escape,
and the :class:`rich.text.Text` cell.
"""

from __future__ import annotations

import re
from typing import Final

from rich.text import Text

from wormwatch.text import escape_text

ELLIPSIS: Final = "…"
# one character of safe text: an escape, or any other single character
_PIECE: Final = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|\\)|.", re.DOTALL)


def _truncate(text: str, max_len: int) -> str:
    """Cut ``text`` to at most ``max_len`` characters, ending in an ellipsis,
    without splitting an escape such as ``\\x1b`` in half."""
    if len(text) <= max_len:
        return text
    if max_len <= 0:
        return ""
    cut = max_len - 1
    # read from the start: a window could begin inside an escaped backslash ("\\\\")
    for match in _PIECE.finditer(text):
        if match.end() > cut:
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
    text = escape_text(raw, brackets=True)
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
