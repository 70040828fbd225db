"""The ``view`` command's screen: the merged ranking and the sensors panel.

In: a :class:`~wormwatch.cluster.view.MergedView` (records from the broker,
so every string is escaped here). Out: rich renderables, printed once or
redrawn every few seconds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from wormwatch.cluster.settings import ClusterConfig
from wormwatch.cluster.view import MergedView, fetch_view
from wormwatch.present.safe import name_cell, safe_text


def _num(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "-"


def _bin_time(newest_bin: Any, bin_s: Any) -> str:
    """The end of a sensor's newest bin merged, in UTC (packet time)."""
    if not isinstance(newest_bin, int) or newest_bin < 0 or not isinstance(bin_s, int):
        return "-"
    end = datetime.fromtimestamp((newest_bin + 1) * bin_s, UTC)
    return end.strftime("%Y-%m-%d %H:%M")


def hosts_table(view: MergedView) -> Table:
    table = Table(title="wormwatch: hosts across all central processes", expand=False)
    for col in ("host", "score", "verdicts", "queries", "MX", "SYNs", "targets", "sensors"):
        table.add_column(col, no_wrap=True)
    for h in view.hosts:
        table.add_row(
            name_cell(str(h.get("src_ip", "?")), max_len=39),
            safe_text(str(h.get("score", 0))),
            safe_text(" ".join(str(v) for v in h.get("verdicts", [])), max_len=40),
            _num(h.get("queries")),
            _num(h.get("mx")),
            _num(h.get("syns")),
            _num(h.get("syn_targets")),
            safe_text(",".join(str(s) for s in h.get("sensors", [])), max_len=40),
        )
    return table


def sensors_table(view: MergedView) -> Table:
    table = Table(title="sensors", expand=False)
    for col in (
        "sensor",
        "packets/s",
        "kernel drops",
        "heartbeat",
        "newest bin",
        "buffered",
        "clock",
    ):
        table.add_column(col, no_wrap=True)
    for s in view.sensors:
        age = s.get("heartbeat_age_s")
        table.add_row(
            name_cell(str(s.get("sensor", "?")), max_len=32),
            safe_text(f"{float(s.get('packets_per_s') or 0):,.0f}"),
            _num(s.get("kernel_dropped")),
            safe_text(f"{age:.0f} s ago" if isinstance(age, int | float) else "none"),
            _bin_time(s.get("newest_bin"), s.get("bin_s")),
            _num(s.get("buffered")),
            Text("SKEWED", style="bold red") if s.get("clock_skewed") else Text("ok"),
        )
    return table


def view_screen(view: MergedView) -> Group:
    parts: list[Any] = [hosts_table(view), sensors_table(view)]
    if not view.centrals:
        parts.append(Text("no central process has reported yet"))
    for warning in view.warnings:
        parts.append(Text("warning: " + safe_text(warning), style="yellow"))
    return Group(*parts)


def show_view(
    cluster: ClusterConfig, *, watch_s: float | None, console: Console | None = None
) -> None:
    """Print the merged view once, or redraw it every ``watch_s`` seconds."""
    console = console or Console()
    while True:
        screen = view_screen(fetch_view(cluster))
        if watch_s is None:
            console.print(screen)
            return
        console.clear()
        console.print(screen)
        time.sleep(watch_s)
