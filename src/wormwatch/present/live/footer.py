"""The live screen's bottom lines: the footer of status and keys, and the line
shown in place of the host table when there are no rows.

In: a :class:`~wormwatch.model.Snapshot`, the :class:`~wormwatch.present.live.view.ViewState`
and what the table shows. Out: one ``Text`` each, cut to the width (never wrapped,
so the screen keeps its height). Pure; the golden screens of ``test_table`` pin them.
"""

from __future__ import annotations

from typing import Final

from rich.text import Text

from wormwatch.model import Snapshot
from wormwatch.present.live import fmt
from wormwatch.present.live.view import SORT_LABELS, ViewState
from wormwatch.present.safe import safe_text

HINTS: Final = "   q quit  p pause  s sort  ↑↓ select  ⏎ detail  / filter  ? help"
SHORT_HINTS: Final = "   q quit  p pause  s sort  ↑↓ ⏎ /  ? help"


def footer_line(
    snap: Snapshot,
    state: ViewState,
    shown: tuple[int, int],
    counts: tuple[int, int | None],
    width: int,
) -> Text:
    """Status (paused, finished, filter being typed) first, then key hints.
    ``counts``: the rows, and how many tracked hosts pass the filter (None when
    it searched only the snapshot's top hosts)."""
    line = Text(no_wrap=True, overflow="ellipsis")
    if state.filter_draft is not None:
        draft, room = state.filter_draft, max(2, width - len("filter: ") - 2)
        if len(draft) > room:
            # a narrow screen shows the end being typed, not the start
            draft = "…" + draft[len(draft) - room + 1 :]
        line.append(f"filter: {draft}", "bold reverse")
        line.append("▏ Enter apply  Esc cancel  (prefix 10.1. or CIDR 10.1.0.0/16)")
        line.truncate(width, overflow="ellipsis")
        return line
    if state.is_paused:
        line.append(" PAUSED ", "bold black on yellow")
        line.append(" ")
    if snap.is_finished:
        line.append(" replay finished " if not snap.is_live else " stopped ", "bold reverse")
        line.append(" ")
    lo, hi = shown
    n_rows, n_matched = counts
    of: int | str = n_rows
    if not state.filter and snap.hosts_tracked > len(snap.hosts):
        of = f"top {n_rows}"
    elif state.filter and n_matched is not None and n_matched > n_rows:
        of = f"top {n_rows} of {fmt.grouped(n_matched)} matching"
    rows_text = f"{lo + 1}-{hi} of {of}" if hi > lo else f"0 of {of}"
    line.append(f"hosts {rows_text}  sort {SORT_LABELS.get(state.sort, state.sort)}")
    if state.filter:
        line.append(f"  filter {safe_text(state.filter)}", "bold")
    hints = HINTS if line.cell_len + len(HINTS) <= width else SHORT_HINTS
    line.append(hints, "dim")
    line.truncate(width, overflow="ellipsis")
    return line


def empty_line(snap: Snapshot, state: ViewState, n_matched: int | None = None) -> Text:
    """One line, cut to the width: a wrapped one would push the footer off screen.
    ``n_matched`` is not None when the filter searched every tracked host."""
    line = Text(no_wrap=True, overflow="ellipsis")
    if state.filter and n_matched is not None and snap.hosts_tracked:
        where = f"no host of the {fmt.grouped(snap.hosts_tracked)} tracked"
        return line.append(f"{where} matches filter {safe_text(state.filter)}", "yellow")
    if snap.hosts and state.filter:
        where = "no host"
        if snap.hosts_tracked > len(snap.hosts):
            # the snapshot carries only the top hosts: the filter cannot see the rest
            where = (
                f"no host of the {len(snap.hosts)} highest-scored"
                f" ({fmt.grouped(snap.hosts_tracked)} tracked)"
            )
        return line.append(f"{where} matches filter {safe_text(state.filter)}", "yellow")
    return line.append("waiting for DNS queries and SYNs to 135/139/445 ...", "dim")
