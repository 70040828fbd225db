"""The sensors panel of the multi-sensor mode, shared by ``central`` and ``view``.

In: one row per sensor, as plain dicts (the keys of
:func:`wormwatch.cluster.top.sensor_rows`; in ``view`` they came from the
broker, so every string is escaped here). Out: a rich ``Table``: each
sensor's packets/s, kernel drops, last heartbeat, lag, newest bin merged,
deltas buffered and whether its clock is off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from rich.table import Table
from rich.text import Text

from wormwatch.present.safe import name_cell

COLUMNS: Final = (
    "sensor",
    "packets/s",
    "kernel drops",
    "heartbeat",
    "lag",
    "newest bin",
    "buffered",
    "clock",
)
# lines a panel takes besides its rows: title, top rule, header, header rule, bottom rule
FRAME_LINES: Final = 5


def num(value: Any) -> str:
    """An integer with thousands separators; '-' for anything else."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "-"


def _seconds(value: Any, suffix: str = "") -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    return f"{value:.0f} s{suffix}"


def _bin_time(newest_bin: Any, bin_s: Any) -> str:
    """The end of a sensor's newest bin merged, in UTC (packet time)."""
    if not isinstance(newest_bin, int) or newest_bin < 0 or not isinstance(bin_s, int):
        return "-"
    end = datetime.fromtimestamp((newest_bin + 1) * bin_s, UTC)
    return end.strftime("%Y-%m-%d %H:%M")


def sensors_table(rows: Sequence[Mapping[str, Any]], *, title: str = "sensors") -> Table:
    """One line per sensor, in the order given."""
    # one line whatever the width: the panel's height is counted with one title line
    title_line = Text(title, "table.title", no_wrap=True, overflow="ellipsis")
    table = Table(title=title_line, expand=False)
    for col in COLUMNS:
        table.add_column(col, no_wrap=True)
    for s in rows:
        beat = _seconds(s.get("heartbeat_age_s"), " ago")
        table.add_row(
            name_cell(str(s.get("sensor", "?")), max_len=32),
            f"{_float(s.get('packets_per_s')):,.0f}",
            num(s.get("kernel_dropped")),
            name_cell(beat if beat != "-" else "none"),
            _seconds(s.get("lag_s")),
            _bin_time(s.get("newest_bin"), s.get("bin_s")),
            num(s.get("buffered")),
            Text("SKEWED", style="bold red") if s.get("clock_skewed") else Text("ok"),
        )
    return table


def sensors_panel(rows: Sequence[Mapping[str, Any]], *, max_h: int) -> tuple[Table | None, int]:
    """The panel cut to ``max_h`` lines (the title says how many are left
    out) and the lines it takes; (None, 0) without sensors or room."""
    fit = max_h - FRAME_LINES
    if not rows or fit < 1:
        return None, 0
    shown = rows[:fit]
    title = "sensors" if len(shown) == len(rows) else f"sensors ({len(shown)} of {len(rows)})"
    return sensors_table(shown, title=title), len(shown) + FRAME_LINES


def _float(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0
