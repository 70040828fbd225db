"""Key decoding: bytes read from a terminal in cbreak mode -> key events.

In: raw bytes from standard input (a read may end in the middle of an escape
sequence). Out: key events, each either a :class:`Key` (a named key such as an
arrow) or a one-character ``str`` (a typed character). Pure: no terminal is
needed, so the tests feed bytes.

Sequences understood (xterm, VT100 and Linux console spellings): ``ESC [ A``
and ``ESC O A`` (up), ``B`` (down), ``ESC [ 5 ~`` / ``6 ~`` (page up/down),
``ESC [ H`` / ``F`` and ``ESC [ 1 ~`` / ``4 ~`` (home/end). Other escape
sequences (function keys, modified arrows, mouse reports) are consumed and
dropped, never seen as typed characters.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

ESC: Final = 0x1B
_CSI_FINAL_MIN: Final = 0x40  # ECMA-48 5.4: a CSI sequence ends on 0x40..0x7E
_CSI_FINAL_MAX: Final = 0x7E


class Key(StrEnum):
    """Named keys; typed characters travel as one-character strings."""

    UP = "<up>"
    DOWN = "<down>"
    PAGE_UP = "<pageup>"
    PAGE_DOWN = "<pagedown>"
    HOME = "<home>"
    END = "<end>"
    ENTER = "<enter>"
    ESCAPE = "<esc>"
    BACKSPACE = "<backspace>"
    TAB = "<tab>"


KeyEvent = Key | str

_CONTROL: Final[dict[int, Key]] = {
    0x0D: Key.ENTER,  # CR: Enter in cbreak mode (ICRNL may turn it into LF)
    0x0A: Key.ENTER,
    0x7F: Key.BACKSPACE,  # DEL: what most terminals send for Backspace
    0x08: Key.BACKSPACE,
    0x09: Key.TAB,
}
# final byte (and parameter for "~" sequences) of CSI and SS3 sequences
_FINAL: Final[dict[str, Key]] = {
    "A": Key.UP,
    "B": Key.DOWN,
    "H": Key.HOME,
    "F": Key.END,
}
_TILDE: Final[dict[str, Key]] = {
    "1": Key.HOME,
    "7": Key.HOME,
    "4": Key.END,
    "8": Key.END,
    "5": Key.PAGE_UP,
    "6": Key.PAGE_DOWN,
}


def _parse_escape(data: bytes, start: int) -> tuple[KeyEvent | None, int] | None:
    """Parse the escape sequence at ``data[start]`` (an ESC byte).

    Returns (event or None for an unknown sequence, index after it), or None
    when the sequence is not complete yet.
    """
    if start + 1 >= len(data):
        return None
    intro = data[start + 1]
    if intro == ord("O"):
        # SS3: one final byte (arrows in application cursor mode, F1-F4)
        if start + 2 >= len(data):
            return None
        return _FINAL.get(chr(data[start + 2])), start + 3
    if intro != ord("["):
        # ESC followed by something else: Alt+key, or a lone Esc then a key
        return Key.ESCAPE, start + 1
    end = start + 2
    while end < len(data) and not _CSI_FINAL_MIN <= data[end] <= _CSI_FINAL_MAX:
        end += 1
    if end >= len(data):
        return None
    params = data[start + 2 : end].decode("ascii", errors="replace")
    final = chr(data[end])
    if final == "~":
        return _TILDE.get(params), end + 1
    if params and final in "AB":
        # a modified arrow (ESC [ 1 ; 5 A): treat as the plain arrow
        return _FINAL.get(final), end + 1
    return (_FINAL.get(final) if not params else None), end + 1


class KeyDecoder:
    """Turns a stream of terminal bytes into key events.

    Keeps an incomplete escape sequence between calls to :meth:`feed`; when
    no more bytes come, :meth:`flush` turns what is pending into a lone
    Escape key (the user pressed Esc, not an arrow).
    """

    def __init__(self) -> None:
        self._pending = b""

    @property
    def has_pending(self) -> bool:
        """Whether an incomplete escape sequence waits for more bytes."""
        return bool(self._pending)

    def feed(self, data: bytes) -> list[KeyEvent]:
        """Decode ``data`` (plus anything pending) into key events."""
        buf = self._pending + data
        self._pending = b""
        events: list[KeyEvent] = []
        i = 0
        while i < len(buf):
            byte = buf[i]
            if byte == ESC:
                parsed = _parse_escape(buf, i)
                if parsed is None:
                    self._pending = buf[i:]
                    break
                event, i = parsed
                if event is not None:
                    events.append(event)
                continue
            if byte in _CONTROL:
                events.append(_CONTROL[byte])
            elif 0x20 <= byte < 0x7F:
                events.append(chr(byte))
            # other control bytes and non-ASCII input are ignored: no key uses them
            i += 1
        return events

    def flush(self) -> list[KeyEvent]:
        """Resolve a pending incomplete sequence: a lone Esc (its tail is dropped)."""
        if not self._pending:
            return []
        self._pending = b""
        return [Key.ESCAPE]


def decode_keys(data: bytes) -> list[KeyEvent]:
    """Decode one complete read: a trailing lone ESC counts as the Esc key."""
    decoder = KeyDecoder()
    return decoder.feed(data) + decoder.flush()
