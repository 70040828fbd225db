"""Small HTML pieces for the report page: escaping, tables, figures, numbers.

In: values of any origin. Out: HTML fragments (``str``). :func:`esc` is the
one door for text that did not come from the report's own code: it applies
:func:`~wormwatch.present.safe.safe_text` (controls, invalid UTF-8 and
brackets become visible ``\\xNN`` escapes) and then :func:`html.escape`
(``<``, ``>``, ``&`` and both quotes), so nothing from a capture can add markup.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from wormwatch.present.safe import safe_text
from wormwatch.text import utc_time


def esc(value: object) -> str:
    """Any value as HTML text that cannot carry markup (see the module docstring)."""
    raw = value if isinstance(value, str | bytes) else str(value)
    return html.escape(safe_text(raw), quote=True)


def utc(ts_us: int) -> str:
    """Packet time as ``YYYY-MM-DD HH:MM:SS UTC``."""
    return f"{utc_time(ts_us)} UTC"


def duration(seconds: float) -> str:
    """A time span in the unit that reads best (s, min, h)."""
    if seconds < 120:
        return f"{seconds:,.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds / 3600:,.1f} h"


def as_int(value: object) -> int:
    """An evidence value as an int (0 when it is not a number)."""
    return int(value) if isinstance(value, int | float) else 0


def num(value: object, fmt: str = "") -> str:
    """An evidence value formatted, or ``n/a`` when it is not a number."""
    return format(value, fmt) if isinstance(value, int | float) else "n/a"


def table(header: Iterable[str], rows: Iterable[Iterable[str]], *, cls: str = "") -> str:
    """A table whose header and cells are already HTML."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def figure(name: str, alt: str, caption: str) -> str:
    """An image by relative file name; ``caption`` is already HTML."""
    return (
        f'<figure><img src="{esc(name)}" alt="{esc(alt)}" loading="lazy">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def verdict_badges(verdicts: Iterable[str]) -> str:
    """Signal names as badges."""
    return "".join(f'<span class="verdict">{esc(v)}</span>' for v in verdicts)
