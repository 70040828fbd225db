"""View state of the live table and what each key does to it.

In: the current :class:`ViewState` and one key event (from
:mod:`wormwatch.present.live.keys`); host rows (from :mod:`wormwatch.present.live.rows`)
to order. Out: the next state; the rows to show, filtered and sorted. Pure:
the state is a frozen dataclass and :func:`handle_key` returns a new one, so
every transition is tested without a terminal.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final

from wormwatch.nets import AddressFilter
from wormwatch.present.live.keys import Key, KeyEvent
from wormwatch.present.live.rows import HostRow

# sort columns in the order `s` cycles through them, with the header label
SORT_KEYS: Final = ("score", "dns", "syn", "targets", "sync", "last_seen")
SORT_LABELS: Final = {
    "score": "score",
    "dns": "DNS q/s",
    "syn": "SYNs",
    "targets": "SYN targets",
    "sync": "sync r",
    "last_seen": "last seen",
}
FILTER_CHARS: Final = frozenset("0123456789abcdefABCDEF.:/")
FILTER_MAX: Final = 43  # the longest IPv6 address plus "/128"
PAGE_ROWS: Final = 10


@dataclass(frozen=True, slots=True)
class ViewState:
    """What the operator has chosen to see.

    Attributes:
        sort: one of :data:`SORT_KEYS`; rows are shown in descending order.
        selected: address of the selected host, kept across refreshes even
            when its rank changes; None for no selection.
        rows: addresses of the rows in display order as last drawn (set by
            the presenter), so the arrow keys know their neighbours.
        filter: applied address filter: a text prefix (``10.1.``) or a CIDR
            network (``10.1.0.0/16``); empty shows every host.
        filter_draft: the filter being typed after ``/``; None when not typing.
        is_paused: the display keeps its frozen snapshot (the capture goes on).
        is_help_open: the key help replaces the host table.
        is_detail_open: the detail panel of the selected host is shown.
        is_quitting: the user pressed ``q``.
    """

    sort: str = "score"
    selected: str | None = None
    rows: tuple[str, ...] = ()
    filter: str = ""
    filter_draft: str | None = None
    is_paused: bool = False
    is_help_open: bool = False
    is_detail_open: bool = False
    is_quitting: bool = False


def _edit_filter(state: ViewState, draft: str, key: KeyEvent) -> ViewState:
    if key == Key.ENTER:
        return replace(state, filter=draft.strip(), filter_draft=None)
    if key == Key.ESCAPE:
        return replace(state, filter_draft=None)
    if key == Key.BACKSPACE:
        return replace(state, filter_draft=draft[:-1])
    if len(key) == 1 and key in FILTER_CHARS and len(draft) < FILTER_MAX:
        return replace(state, filter_draft=draft + key)
    return state


def _move(state: ViewState, step: int) -> ViewState:
    if not state.rows:
        return replace(state, selected=None)
    if state.selected in state.rows:
        i = state.rows.index(state.selected) + step
    else:
        # nothing selected yet: moving down starts above the first row (Down
        # selects it, End the last), moving up at the first row
        i = step - 1 if step > 0 else 0
    i = max(0, min(len(state.rows) - 1, i))
    return replace(state, selected=state.rows[i])


_MOVES: Final = {
    Key.UP: -1,
    Key.DOWN: 1,
    Key.PAGE_UP: -PAGE_ROWS,
    Key.PAGE_DOWN: PAGE_ROWS,
    Key.HOME: -(1 << 30),
    Key.END: 1 << 30,
}


def handle_key(state: ViewState, key: KeyEvent) -> ViewState:
    """The state after ``key``.

    ``q`` quit, ``p`` pause/resume, ``s`` next sort column, arrows (and page
    up/down, home/end) move the selection, Enter toggles the detail panel,
    ``/`` starts typing an address filter (Enter applies, Esc cancels), ``?``
    toggles the help, Esc closes help or detail. While typing a filter, keys
    edit the filter text only.
    """
    if state.filter_draft is not None:
        return _edit_filter(state, state.filter_draft, key)
    if key == "q":
        return replace(state, is_quitting=True)
    if state.is_help_open:
        # any other key just closes the help
        return replace(state, is_help_open=False)
    if key == "?":
        return replace(state, is_help_open=True)
    if key == "p":
        return replace(state, is_paused=not state.is_paused)
    if key == "s":
        nxt = (SORT_KEYS.index(state.sort) + 1) % len(SORT_KEYS) if state.sort in SORT_KEYS else 0
        return replace(state, sort=SORT_KEYS[nxt])
    if key == "/":
        return replace(state, filter_draft=state.filter)
    if key in _MOVES:
        return _move(state, _MOVES[Key(key)])
    if key == Key.ENTER:
        if state.is_detail_open and state.selected in state.rows:
            return replace(state, is_detail_open=False)
        # (a panel whose host left the rows is not on screen: Enter opens one)
        if state.selected not in state.rows:
            state = _move(state, 0)
        return replace(state, is_detail_open=state.selected is not None)
    if key == Key.ESCAPE:
        return replace(state, is_detail_open=False)
    return state


def matches_filter(addr: str, text: str) -> bool:
    """Whether ``addr`` passes the filter ``text``: the rule of
    :class:`~wormwatch.nets.AddressFilter` (empty passes everything)."""
    return not text or AddressFilter.of(text).matches(addr)


_SORT_FUNCS: Final[dict[str, Callable[[HostRow], float]]] = {
    "score": lambda r: r.score,
    "dns": lambda r: r.dns_per_s,
    "syn": lambda r: float(r.n_syn),
    "targets": lambda r: float(r.syn_targets),
    "sync": lambda r: -2.0 if r.sync_r is None else r.sync_r,
    "last_seen": lambda r: -r.last_seen_ago_s,
}


def _addr_key(addr: str) -> tuple[int, int, str]:
    """Addresses in numeric order (IPv4 first), anything unparsable last."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return (7, 0, addr)
    return (ip.version, int(ip), "")


def order_rows(rows: Sequence[HostRow], state: ViewState) -> list[HostRow]:
    """The rows to show: those passing the filter, in the chosen sort order
    (descending; ties by score, then by address in numeric order)."""
    key = _SORT_FUNCS.get(state.sort, _SORT_FUNCS["score"])
    kept = [r for r in rows if matches_filter(r.addr, state.filter)]
    kept.sort(key=lambda r: _addr_key(r.addr))
    kept.sort(key=lambda r: (key(r), r.score), reverse=True)
    return kept
