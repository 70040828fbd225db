"""The ``view`` command's screen: the merged ranking and the sensors panel.

In: a :class:`~wormwatch.cluster.view.MergedView` (records from the broker,
so every string is escaped here). Out: rich renderables, printed once or
redrawn every few seconds.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from wormwatch.cluster.settings import ClusterConfig
from wormwatch.cluster.view import MergedView, fetch_view
from wormwatch.errors import WormwatchError
from wormwatch.present.live.sensors import num, sensors_table
from wormwatch.present.safe import name_cell, safe_text

_TEXT_COLUMNS = ("host", "verdicts", "sensors")


def hosts_table(view: MergedView) -> Table:
    table = Table(title="wormwatch: hosts across all central processes", expand=False)
    for col in ("host", "score", "verdicts", "queries", "MX", "SYNs", "targets", "sensors"):
        # a narrow terminal shortens the text columns (their cells end in "…"), not
        # the numbers: at 80 columns a score of 100.0 read "…" and MX nothing
        table.add_column(col, no_wrap=col not in _TEXT_COLUMNS)
    for h in view.hosts:
        table.add_row(
            name_cell(str(h.get("src_ip", "?")), max_len=39),
            # Text cells: a str cell is read for markup and emoji codes (":skull:")
            name_cell(str(h.get("score", 0))),
            name_cell(" ".join(str(v) for v in h.get("verdicts", [])), max_len=40),
            num(h.get("queries")),
            num(h.get("mx")),
            num(h.get("syns")),
            num(h.get("syn_targets")),
            name_cell(",".join(str(s) for s in h.get("sensors", [])), max_len=40),
        )
    return table


def view_screen(view: MergedView) -> Group:
    parts: list[Any] = [hosts_table(view), sensors_table(view.sensors)]
    if not view.centrals:
        parts.append(Text("no central process has reported yet"))
    for warning in view.warnings:
        parts.append(Text("warning: " + safe_text(warning), style="yellow"))
    return Group(*parts)


def show_view(
    cluster: ClusterConfig, *, watch_s: float | None, console: Console | None = None
) -> None:
    """Print the merged view once, or redraw it every ``watch_s`` seconds."""
    # a file or pipe gets the whole table: at rich's default 80 columns a score of
    # 100.0 read "1…" and the MX column was empty
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    shown = False
    while True:
        try:
            screen: Any = view_screen(fetch_view(cluster))
        except WormwatchError as err:
            # the first try's error is the exit; a watch outlives a broker restart
            # (it ended at the first refused connection)
            if not shown or watch_s is None:
                raise
            screen = Text(f"{err} (trying again every {watch_s:g} s)", style="red")
        shown = True
        if watch_s is None:
            console.print(screen)
            return
        console.clear()
        console.print(screen)
        time.sleep(watch_s)
