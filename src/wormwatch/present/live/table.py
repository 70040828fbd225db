"""The live screen: capture health, the top suspicious hosts, a footer of keys.

In: a :class:`~wormwatch.model.Snapshot`, the terminal size and the
:class:`~wormwatch.present.live.view.ViewState`. Out: one rich renderable that fits
``width`` x ``height`` exactly (rows are cut to the height, columns are dropped
in order of importance to fit the width). Pure: the same inputs draw the same
screen, which the golden tests in ``tests/golden/tui/`` pin down.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from rich.console import Group, RenderableType
from rich.text import Text

from wormwatch.model import STATUS_NAMES, Snapshot
from wormwatch.present.live import fmt
from wormwatch.present.live.detail import detail_lines, detail_panel, help_panel
from wormwatch.present.live.footer import empty_line, footer_line
from wormwatch.present.live.rows import HostRow, host_row
from wormwatch.present.live.sensors import sensors_panel
from wormwatch.present.live.view import ViewState, order_rows
from wormwatch.present.safe import name_cell, safe_text
from wormwatch.text import utc_time

IDLE_WARN_S: Final = 5.0  # "no relevant traffic" shows after this many seconds
DETAIL_MIN_BODY: Final = 6  # lines below the header needed to show the detail panel
GAP: Final = 2  # cells between columns (padding 1 on each side)
VERDICT_LABELS: Final = {
    "keyword-storm": ("STORM", "bold magenta"),
    "mx-client": ("MX", "bold yellow"),
    "smb-scan": ("SCAN", "bold red"),
    "bot-sync": ("SYNC", "bold cyan"),
    "dga-nx": ("DGA", "bold green"),
}
# dga-nx and smb-scan on one host: one label, the combined (Conficker-like) reading
COMBINED_LABEL: Final = ("SCAN+DGA", "bold red")
_DECODE_PROBLEMS: Final = tuple(s for s in STATUS_NAMES if s not in ("ok", "ignored"))


@dataclass(frozen=True, slots=True)
class _Ctx:
    selected: str | None
    host_w: int
    bar_w: int
    spark_w: int
    sample_w: int
    is_syn_split: bool


@dataclass(frozen=True, slots=True)
class _Column:
    key: str
    header: str
    width: int
    justify: str = "right"


def found_rows(snapshot: Snapshot, state: ViewState) -> tuple[list[HostRow], int | None]:
    """The host rows the screen shows, ordered and filtered, and how many hosts
    pass the filter: a filter searches every tracked host when the snapshot can
    (``find_hosts``), else its top hosts only (the count is then None)."""
    views, n_matched = snapshot.hosts, None
    if state.filter and snapshot.find_hosts is not None:
        views, n_matched = snapshot.find_hosts(state.filter)
    return order_rows([host_row(v, snapshot) for v in views], state), n_matched


def screen_rows(snapshot: Snapshot, state: ViewState) -> list[HostRow]:
    """The host rows of ``snapshot`` as the screen orders and filters them."""
    return found_rows(snapshot, state)[0]


# --- header -------------------------------------------------------------------


def _pack(items: Sequence[Text], width: int) -> list[Text]:
    """Lay out ``items`` left to right, two spaces apart, starting a new line
    when the next one would not fit; every line is cut at ``width``."""
    lines: list[Text] = []
    line = Text(no_wrap=True, overflow="ellipsis")
    for item in items:
        if line.cell_len and line.cell_len + 2 + item.cell_len > width:
            lines.append(line)
            line = Text(no_wrap=True, overflow="ellipsis")
        if line.cell_len:
            line.append("  ")
        line.append_text(item)
    if line.cell_len:
        lines.append(line)
    return lines


def _identity(snap: Snapshot) -> list[Text]:
    mode = "live" if snap.is_live else "replay"
    source = safe_text(snap.source, max_len=40)
    title = Text.assemble(("wormwatch", "bold"), f" {mode} ", (source, "bold"))
    clock = Text("packet time -")
    if snap.now_us:
        elapsed = fmt.duration((snap.now_us - snap.start_us) / 1e6)
        clock = Text(f"packet time {utc_time(snap.now_us)} UTC +{elapsed}")
    return [title, clock, Text(f"wall {fmt.duration(snap.wall_elapsed_s)}")]


def _unlisted_flagged(snap: Snapshot) -> int:
    """At least how many flagged hosts are not among the snapshot's (top) hosts:
    per verdict, hosts holding it minus listed hosts holding it."""
    listed: dict[str, int] = {}
    for view in snap.hosts:
        for name in view.verdict.verdicts:
            listed[name] = listed.get(name, 0) + 1
    return max((n - listed.get(name, 0) for name, n in snap.flagged.items()), default=0)


def _rates(snap: Snapshot) -> list[Text]:
    items = [
        Text(f"{fmt.compact(snap.packets_per_s)} pkt/s"),
        Text(f"{fmt.compact(snap.dns_per_s)} DNS q/s"),
        Text(f"{fmt.compact(snap.syn_per_s)} SYN/s"),
        Text(f"hosts {fmt.grouped(snap.hosts_tracked)}"),
    ]
    if snap.hosts_dropped:
        items.append(
            Text(f"host table full: {fmt.grouped(snap.hosts_dropped)} evicted", "bold yellow")
        )
    if snap.events_untracked:
        items.append(Text(f"{fmt.grouped(snap.events_untracked)} events untracked", "bold yellow"))
    unlisted = _unlisted_flagged(snap)
    if unlisted:
        items.append(Text(f"{fmt.grouped(unlisted)}+ flagged hosts not listed", "bold red"))
    r = snap.network_sync_r
    items.append(Text(f"network MX/SYN r {fmt.signed_r(r)}", "" if r is None else "bold"))
    return items


def _health(snap: Snapshot) -> list[Text]:
    items: list[Text] = []
    if snap.is_live or snap.kernel_dropped is not None:
        dropped = snap.kernel_dropped or 0
        text = f"kernel drops {fmt.grouped(dropped)}"
        if dropped and snap.kernel_received:
            # libpcap's received count (Linux tp_packets) already includes the drops
            text += f" ({fmt.percent_of(dropped, max(snap.kernel_received, dropped))})"
        items.append(Text(text, "bold red" if dropped else "dim"))
    if snap.interface_dropped:
        items.append(Text(f"interface drops {fmt.grouped(snap.interface_dropped)}", "bold red"))
    problems = [(s, snap.decode.get(s, 0)) for s in _DECODE_PROBLEMS]
    problems = [(s, n) for s, n in problems if n]
    if problems:
        text = ", ".join(f"{s} {fmt.grouped(n)}" for s, n in problems)
        items.append(Text(f"decode problems: {text}", "yellow"))
    idle = snap.idle_s
    if idle is None and snap.wall_elapsed_s >= IDLE_WARN_S and not snap.is_finished:
        items.append(Text("no relevant traffic yet", "bold yellow reverse"))
    elif idle is not None and idle >= IDLE_WARN_S:
        span = f"{idle:.0f} s" if idle < 120 else fmt.duration(idle)
        items.append(Text(f"no relevant traffic for {span}", "bold yellow reverse"))
    return items


def header_lines(snap: Snapshot, width: int) -> list[Text]:
    """Source, clocks, rates and hosts; then health warnings on their own line."""
    return _pack(_identity(snap) + _rates(snap), width) + _pack(_health(snap), width)


# --- host table -----------------------------------------------------------------


def _verdict_text(verdicts: Sequence[str]) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    is_combined = "dga-nx" in verdicts and "smb-scan" in verdicts
    for name in verdicts:
        if is_combined and name in ("dga-nx", "smb-scan"):
            if name == "dga-nx":
                continue
            label, style = COMBINED_LABEL
        else:
            label, style = VERDICT_LABELS.get(name, (safe_text(name, max_len=8), "bold"))
        if text.cell_len:
            text.append(" ")
        text.append(label, style)
    return text


def _score_text(score: float, bar_w: int) -> Text:
    style = "bold red" if score >= 70 else "yellow" if score >= 40 else "green" if score else "dim"
    return Text.assemble(f"{score:3.0f} ", (fmt.bar(score / 100, bar_w), style))


def _syn_text(row: HostRow, ctx: _Ctx) -> str:
    if ctx.is_syn_split:
        return "/".join(fmt.compact(n) for n in row.syn)
    return fmt.compact(row.n_syn)


_CELLS: Final[dict[str, Callable[[HostRow, _Ctx], Text | str]]] = {
    "host": lambda r, c: Text(
        ("▸" if r.addr == c.selected else " ") + fmt.middle_ellipsis(r.addr, c.host_w - 1),
        "bold" if r.score else "",
    ),
    "score": lambda r, c: _score_text(r.score, c.bar_w),
    "verdicts": lambda r, c: _verdict_text(r.verdicts),
    "dns": lambda r, c: fmt.compact(r.dns_per_s),
    "a": lambda r, c: fmt.compact(r.n_a),
    "mx": lambda r, c: fmt.compact(r.n_mx),
    "kw": lambda r, c: fmt.percent(r.kw_share),
    "syn": _syn_text,
    "targets": lambda r, c: fmt.compact(r.syn_targets),
    "nx": lambda r, c: fmt.compact(r.n_nx),
    "sync": lambda r, c: fmt.signed_r(r.sync_r),
    "activity": lambda r, c: Text(fmt.sparkline(r.activity, c.spark_w), "cyan"),
    "seen": lambda r, c: fmt.age(r.last_seen_ago_s),
    "sample": lambda r, c: name_cell(r.sample, max_len=c.sample_w) if r.sample else "",
}
# display order, left to right
_ORDER: Final = (
    "host", "score", "verdicts", "dns", "a", "mx", "kw", "syn", "targets", "nx", "sync",
    "activity", "seen", "sample",
)  # fmt: skip
WIDE: Final = 120  # screens at least this wide show whole IPv6 addresses
SAMPLE_MIN: Final = 16  # narrowest sample-name column worth showing
SAMPLE_WIDE: Final = 40  # a sample-name column wider than this gives room to the sparkline
SPARK_MAX: Final = 24


def _fit(rows: Sequence[HostRow], width: int) -> tuple[list[_Column], _Ctx]:
    """Choose the columns that fit ``width``: the most important first, then
    wider variants (longer score bar, SYNs per port, longer sparkline), then
    a sample query name in whatever room is left."""
    # an IPv6 address may take 40 cells on a wide screen, 20 on a narrow one
    host_w = min(max([16, *(len(r.addr) + 1 for r in rows)]), 40 if width >= WIDE else 20)
    verdict_w = max([8, *(_verdict_text(r.verdicts).cell_len for r in rows)])
    cols = {
        "host": _Column("host", "host", host_w, "left"),
        "score": _Column("score", "score", 9, "left"),
        "verdicts": _Column("verdicts", "verdicts", verdict_w, "left"),
        "dns": _Column("dns", "DNS/s", 5),
        "syn": _Column("syn", "SYN", 5),
        "targets": _Column("targets", "tgts", 5),
        "seen": _Column("seen", "seen", 4),
        "mx": _Column("mx", "MX", 5),
        "kw": _Column("kw", "kw%", 4),
        "sync": _Column("sync", "sync", 5),
        "activity": _Column("activity", "activity", 12, "left"),
        "a": _Column("a", "A", 6),
    }
    if any(r.n_nx for r in rows):
        # NXDOMAIN answers (dga-nx): only when some host received one
        cols["nx"] = _Column("nx", "NX", 5)
    chosen: dict[str, _Column] = {}
    used = -GAP
    for key, col in cols.items():
        if used + GAP + col.width <= width:
            chosen[key] = col
            used += GAP + col.width
    for key, wider in (
        ("score", _Column("score", "score", 14, "left")),
        ("syn", _Column("syn", "SYN 135/139/445", 17)),
    ):
        if key in chosen and used + wider.width - chosen[key].width <= width:
            used += wider.width - chosen[key].width
            chosen[key] = wider
    sample_w = width - used - GAP
    if len(chosen) == len(cols) and sample_w >= SAMPLE_MIN and any(r.sample for r in rows):
        # room beyond a long name goes to a longer sparkline
        extra = max(0, min(SPARK_MAX - chosen["activity"].width, sample_w - SAMPLE_WIDE))
        chosen["activity"] = _Column(
            "activity", "activity", chosen["activity"].width + extra, "left"
        )
        sample_w -= extra
        chosen["sample"] = _Column("sample", "sample query", sample_w, "left")
    ctx = _Ctx(
        selected=None,
        host_w=host_w,
        bar_w=chosen["score"].width - 4 if "score" in chosen else 5,
        spark_w=chosen["activity"].width if "activity" in chosen else 0,
        sample_w=max(0, sample_w),
        is_syn_split="syn" in chosen and chosen["syn"].width > 5,
    )
    return [chosen[k] for k in _ORDER if k in chosen], ctx


def _window(n_rows: int, n_fit: int, selected_idx: int | None) -> tuple[int, int]:
    """First and last+1 row index to show so the selection stays visible."""
    if n_rows <= n_fit or selected_idx is None or selected_idx < n_fit:
        return 0, min(n_rows, n_fit)
    start = min(selected_idx - n_fit + 1, n_rows - n_fit)
    return start, start + n_fit


def _cell(content: Text | str, width: int, justify: str) -> Text:
    """``content`` cut (with an ellipsis) or padded to exactly ``width`` cells."""
    text = content.copy() if isinstance(content, Text) else Text(content)
    text.truncate(width, overflow="ellipsis")
    pad = " " * (width - text.cell_len)
    return Text.assemble(pad, text) if justify == "right" else Text.assemble(text, pad)


def _line(cells: Sequence[Text], style: str = "") -> Text:
    line = Text(" " * GAP, no_wrap=True, overflow="ellipsis").join(cells)
    if style:
        line.stylize(style)
    return line


def host_table(
    rows: Sequence[HostRow], *, width: int, n_fit: int, selected: str | None
) -> tuple[list[Text], tuple[int, int]]:
    """The top-hosts table for ``rows``: a header line, then at most ``n_fit``
    rows, keeping the selected one in view. Returns the lines and the shown
    index range.

    Rows are laid out here, one ``Text`` per line with every cell cut or
    padded to its column, rather than by a rich ``Table``: the table is
    redrawn several times a second, and this is several times cheaper.
    """
    columns, ctx = _fit(rows, width)
    ctx = _Ctx(selected, ctx.host_w, ctx.bar_w, ctx.spark_w, ctx.sample_w, ctx.is_syn_split)
    lines = [_line([_cell(c.header, c.width, c.justify) for c in columns], "bold")]
    addrs = [r.addr for r in rows]
    idx = addrs.index(selected) if selected in addrs else None
    lo, hi = _window(len(rows), max(0, n_fit), idx)
    for row in rows[lo:hi]:
        cells = [_cell(_CELLS[c.key](row, ctx), c.width, c.justify) for c in columns]
        lines.append(_line(cells, "reverse" if row.addr == selected else ""))
    return lines, (lo, hi)


# --- the whole screen ---------------------------------------------------------


def build_screen(
    snapshot: Snapshot,
    *,
    width: int,
    height: int,
    state: ViewState,
    rows: Sequence[HostRow] | None = None,
    n_matched: int | None = None,
) -> RenderableType:
    """The whole screen for one snapshot, ``height`` lines of ``width`` cells.

    Header (source, clocks, rates, health), then the host table (or the key
    help), then the detail panel of the selected host when open, then a
    central's sensors panel, then one footer line. Rows beyond the height
    are left out (the footer says how many there are); columns that do not
    fit the width are dropped.
    ``rows`` and ``n_matched`` are :func:`found_rows` of the snapshot when the
    caller already has them (the presenter, which keeps their order for the keys).
    """
    # on a tiny terminal the header gives way: the table's header line, one
    # row and the footer are kept
    header = header_lines(snapshot, width)[: max(1, height - 3)]
    if rows is None:
        rows, n_matched = found_rows(snapshot, state)
    body_h = max(1, height - len(header) - 1)
    # a central's sensors panel, between the hosts and the footer
    panel, panel_h = sensors_panel(snapshot.sensors, max_h=body_h // 2)
    body_h -= panel_h
    parts: list[RenderableType] = [*header]
    shown = (0, 0)
    if state.is_help_open and body_h < 2:
        # a box takes two lines at least: it would push the footer off the screen
        parts.append(Text("help: too little room; any key closes it", "dim", no_wrap=True))
    elif state.is_help_open:
        parts.append(help_panel(width=width, height=body_h))
    else:
        selected = next((r for r in rows if r.addr == state.selected), None)
        detail_h = 0
        detail: RenderableType | None = None
        if state.is_detail_open and selected is not None and body_h >= DETAIL_MIN_BODY:
            lines = detail_lines(selected, snapshot, width=width - 4)
            detail_h = min(len(lines) + 2, max(3, body_h // 2))
            detail = detail_panel(selected, lines, width=width, height=detail_h)
        n_fit = body_h - detail_h - 1
        if rows:
            table, shown = host_table(rows, width=width, n_fit=n_fit, selected=state.selected)
            parts.extend(table)
        else:
            parts.append(empty_line(snapshot, state, n_matched))
        used = (shown[1] - shown[0] + 1) if rows else 1
        parts.extend(Text("") for _ in range(max(0, body_h - detail_h - used)))
        if detail is not None:
            parts.append(detail)
    if panel is not None:
        parts.append(panel)
    parts.append(footer_line(snapshot, state, shown, (len(rows), n_matched), width))
    return Group(*parts)
