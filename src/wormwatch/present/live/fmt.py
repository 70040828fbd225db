"""Number and time formatting for the live table: short, fixed-width strings.

In: plain numbers (rates, counts, seconds); packet time as text is
:func:`wormwatch.text.utc_time`.
Out: strings that fit narrow columns. No rich, no state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

SPARK_CHARS: Final = " ▁▂▃▄▅▆▇█"
BAR_EIGHTHS: Final = " ▏▎▍▌▋▊▉█"
DASH: Final = "-"


def compact(value: float) -> str:
    """A count or rate in at most 5 characters: ``7``, ``0.25``, ``4.2``, ``1234``,
    ``12.3k``, ``123k``, ``1.2M``."""
    v = abs(value)
    sign = "-" if value < 0 else ""
    if v < 1 and v != int(v):
        return f"{sign}{v:.2f}"
    if v < 10 and v != int(v):
        return f"{sign}{v:.1f}"
    if v < 10_000:
        return f"{sign}{v:.0f}"
    for limit, suffix in ((1e6, "k"), (1e9, "M"), (1e12, "G")):
        scaled = v / (limit / 1000)
        # compare as rounded: 99,960 is 100k, not 100.0k; 999,960 is 1.0M, not 1000k
        if round(scaled, 1) < 100:
            return f"{sign}{scaled:.1f}{suffix}"
        if round(scaled) < 1000:
            return f"{sign}{scaled:.0f}{suffix}"
    return f"{sign}{v:.1e}"


def grouped(value: int) -> str:
    """A count with thousands separators: ``32,721``."""
    return f"{value:,}"


def duration(seconds: float) -> str:
    """Elapsed time as ``M:SS`` or ``H:MM:SS`` (days as ``Nd HH:MM:SS``)."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}:{minutes:02d}:{secs:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def age(seconds: float) -> str:
    """How long ago, in at most 4 characters: ``0s``, ``42s``, ``12m``, ``3h``, ``9d``."""
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.0f}m"
    if s < 86_400:
        return f"{s / 3600:.0f}h"
    return f"{s / 86_400:.0f}d"


def signed_r(r: float | None) -> str:
    """A correlation as ``+0.93``, or a dash when there is none."""
    return DASH if r is None else f"{r:+.2f}"


def percent(share: float | None) -> str:
    """A fraction 0..1 as ``97%``, or a dash."""
    return DASH if share is None else f"{100 * share:.0f}%"


def percent_of(part: int, whole: int) -> str:
    """``part`` as a share of ``whole``, with enough digits to be non-zero
    when ``part`` is: ``12%``, ``0.4%``, ``0.002%``."""
    if whole <= 0:
        return DASH
    share = 100 * part / whole
    if share >= 10 or share == 0:
        return f"{share:.0f}%"
    return f"{share:.2g}%"


def sparkline(values: Sequence[int], width: int) -> str:
    """The last ``width`` values as block characters, scaled to their maximum;
    zero is a blank, any non-zero value at least the lowest block."""
    tail = list(values)[-width:] if width > 0 else []
    tail = [0] * (width - len(tail)) + tail
    top = max(tail, default=0)
    if top <= 0:
        return " " * width
    levels = len(SPARK_CHARS) - 1
    return "".join(
        SPARK_CHARS[0] if v <= 0 else SPARK_CHARS[max(1, round(levels * v / top))] for v in tail
    )


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of ``width`` cells filled to ``fraction`` (0..1), in eighths."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (BAR_EIGHTHS[part] if part else "")
    return text.ljust(width)


def middle_ellipsis(text: str, width: int) -> str:
    """Fit ``text`` in ``width`` characters, cutting the middle (the ends of
    an IPv6 address are the parts that tell hosts apart)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + text[len(text) - tail :]
