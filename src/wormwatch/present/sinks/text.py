"""Plain end-of-run summary: top hosts and capture statistics as a text table.

In: the final :class:`~wormwatch.model.Snapshot` and the ranked host views.
Out: a rich renderable (printed by the CLI), no colours needed to read it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from wormwatch.errors import WormwatchError
from wormwatch.model import (
    C_A,
    C_AAAA,
    C_KW,
    C_MX,
    C_PTR,
    C_QUERIES,
    C_SYN135,
    C_SYN139,
    C_SYN445,
    C_SYN_DST_NEW,
    HostView,
    Snapshot,
)
from wormwatch.present.safe import safe_text
from wormwatch.text import utc_time


def stats_table(snapshot: Snapshot, warnings: Sequence[str] = ()) -> Table:
    """Capture statistics: packets, events, decode statuses, time span."""
    t = Table(title="capture", show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    d = snapshot.decode
    span_s = max(0, snapshot.now_us - snapshot.start_us) / 1e6
    rows = [
        ("source", safe_text(snapshot.source)),
        (
            "packet time",
            f"{utc_time(snapshot.start_us)} .. {utc_time(snapshot.now_us)} UTC"
            # counted events, not the clock: a pcapng time before 1970 reads as 0
            if any(d.get(k, 0) for k in ("dns_queries", "syns", "dns_answers"))
            else "no DNS query or SYN to 135/139/445 seen",
        ),
        ("span", f"{span_s:,.1f} s"),
        ("packets", f"{d.get('packets', 0):,}"),
        ("DNS queries", f"{d.get('dns_queries', 0):,}"),
        ("SYNs to 135/139/445", f"{d.get('syns', 0):,}"),
        ("DNS answers", f"{d.get('dns_answers', 0):,}"),
        (
            "decode",
            "  ".join(
                f"{k} {d.get(k, 0):,}"
                for k in ("ok", "ignored", "truncated", "malformed", "unsupported", "fragment")
            ),
        ),
        ("hosts tracked", f"{snapshot.hosts_tracked:,}"),
    ]
    frags = {k[5:]: v for k, v in d.items() if k.startswith("frag_") and v}
    if frags:
        rows.append(("IP fragments", "  ".join(f"{k} {v:,}" for k, v in frags.items())))
    if snapshot.hosts_dropped:
        rows.append(("hosts evicted", f"{snapshot.hosts_dropped:,} (host table was full)"))
    if snapshot.events_untracked:
        rows.append(("events of untracked hosts", f"{snapshot.events_untracked:,} (no room)"))
    if snapshot.keys_refused:
        rows.append(("distinct-set keys refused", f"{snapshot.keys_refused:,} (tables full)"))
    if snapshot.kernel_dropped is not None:
        rows.append(("kernel received", f"{snapshot.kernel_received or 0:,}"))
        rows.append(("kernel drops", f"{snapshot.kernel_dropped:,}"))
        rows.append(("interface drops", f"{snapshot.interface_dropped or 0:,}"))
    r = snapshot.network_sync_r
    rows.append(("network MX/SYN correlation", "n/a" if r is None else f"{r:+.2f}"))
    for key, value in rows:
        t.add_row(key, Text(value))
    for w in warnings:
        t.add_row("warning", Text(safe_text(w)))
    return t


# (name, justify), in the order shown
_HOST_COLUMNS = (
    ("host", "left"), ("score", "right"), ("verdicts", "left"), ("queries", "right"),
    ("A", "right"), ("AAAA", "right"), ("MX", "right"), ("PTR", "right"), ("kw", "right"),
    ("SYN 135/139/445", "right"), ("targets", "right"),
)  # fmt: skip
# what a terminal too narrow for the whole table leaves out first (the --summary
# file has every count): never the address, score, verdicts, MX, SYNs or targets
_LEFT_OUT_FIRST = ("PTR", "AAAA", "A", "kw", "queries")


def hosts_table(hosts: Sequence[HostView], *, limit: int = 20, width: int | None = None) -> Table:
    """Top hosts by score: the counts an analyst looks at first. Narrower than the
    whole table (``width``), it leaves out the columns of :data:`_LEFT_OUT_FIRST`
    one by one, and says so, rather than cut addresses and counts short."""
    left_out: list[str] = []
    t = _hosts_table(hosts, limit, left_out)
    if width is not None:
        # measured unbounded: a console's own width caps what it measures
        measure = Console(width=1 << 16).measure
        for name in _LEFT_OUT_FIRST:
            if measure(t).maximum <= width:
                break
            left_out.append(name)
            t = _hosts_table(hosts, limit, left_out)
    return t


def _hosts_table(hosts: Sequence[HostView], limit: int, left_out: list[str]) -> Table:
    caption = f"narrow terminal: {', '.join(left_out)} left out" if left_out else None
    t = Table(title=f"top {min(limit, len(hosts))} hosts", header_style="bold", caption=caption)
    shown = [name not in left_out for name, _ in _HOST_COLUMNS]
    for (name, justify), is_shown in zip(_HOST_COLUMNS, shown, strict=True):
        if is_shown:
            # the address and the counts whole; the verdicts wrap
            t.add_column(name, justify=justify, no_wrap=name != "verdicts")  # type: ignore[arg-type]
    for view in hosts[:limit]:
        tot = view.state.totals
        cells: tuple[str | Text, ...] = (
            Text(safe_text(view.state.addr)),
            f"{view.verdict.score:.0f}",
            Text(", ".join(view.verdict.verdicts) or "-"),
            f"{tot[C_QUERIES]:,}",
            f"{tot[C_A]:,}",
            f"{tot[C_AAAA]:,}",
            f"{tot[C_MX]:,}",
            f"{tot[C_PTR]:,}",
            f"{tot[C_KW]:,}",
            f"{tot[C_SYN135]}/{tot[C_SYN139]}/{tot[C_SYN445]}",
            f"{tot[C_SYN_DST_NEW]:,}",
        )
        t.add_row(*(cell for cell, is_shown in zip(cells, shown, strict=True) if is_shown))
    return t


def summary(
    snapshot: Snapshot,
    hosts: Sequence[HostView],
    warnings: Sequence[str] = (),
    width: int | None = None,
) -> RenderableType:
    """The whole end-of-run text: statistics, then the top hosts (``width``: as
    :func:`hosts_table`)."""
    return Group(stats_table(snapshot, warnings), Text(""), hosts_table(hosts, width=width))


def print_summary(
    snapshot: Snapshot,
    hosts: Sequence[HostView],
    warnings: Sequence[str] = (),
    *,
    file: TextIO,
) -> None:
    """Print :func:`summary` as plain text (colours only on a terminal).

    Raises:
        WormwatchError: ``file`` refused it (a full disk; ``> /dev/full``).
    """
    # A file or pipe gets the whole table, not 80 columns of ellipses.
    width = None if file.isatty() else 160
    try:
        console = Console(file=file, highlight=False, width=width)
        console.print(summary(snapshot, hosts, warnings, width=console.width))
    except OSError as err:
        where = {"<stdout>": "standard output", "<stderr>": "standard error"}.get(
            getattr(file, "name", ""), "its file"
        )
        raise WormwatchError(f"cannot write the text summary to {where}: {err.strerror}") from None


def load_lazy_parts() -> None:
    """Render a marked-up table once, unseen: rich imports some of its parts (emoji
    codes) at the first markup it renders, and a live run prints its summary after
    the privilege drop, when the dropped user may not be able to read the install."""
    table = Table("[bold]host[/bold]")
    table.add_row(":warning: [red]x[/red]")
    Console(file=io.StringIO(), width=40).print(table)
