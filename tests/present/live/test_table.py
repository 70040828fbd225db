"""The live table: golden screens at fixed widths, fitting, escaping, sorting, filtering.

Regenerate the goldens after an intended change with
``WORMWATCH_UPDATE_GOLDEN=1 pytest tests/present/live/test_table.py`` and review the diff.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable
from dataclasses import replace

import pytest
from rich.console import Console

from wormwatch.model import Snapshot
from wormwatch.present.live.rows import HostRow
from wormwatch.present.live.table import build_screen, screen_rows
from wormwatch.present.live.view import ViewState

from testkit import paths
from testkit.tui_fakes import (
    empty_snapshot,
    live_snapshot,
    snapshot,
)

GOLDEN = paths.GOLDEN / "tui"
UPDATE = os.environ.get("WORMWATCH_UPDATE_GOLDEN") == "1"


def render(snap: Snapshot, width: int, height: int, state: ViewState | None = None) -> str:
    console = Console(
        record=True, width=width, height=height, force_terminal=False, color_system=None
    )
    screen = build_screen(snap, width=width, height=height, state=state or ViewState())
    console.print(screen)
    return console.export_text()


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden {path}: run with WORMWATCH_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


SELECT_STORM = ViewState(selected="192.0.2.66", is_detail_open=True)


HOSTILE = ViewState(filter="203.0.113.0/24", selected="203.0.113.9", is_detail_open=True)


CASES = {
    "replay_80x24.txt": (snapshot, 80, 24, ViewState()),
    "replay_120x32.txt": (snapshot, 120, 32, ViewState()),
    "replay_160x30.txt": (snapshot, 160, 30, ViewState()),
    "detail_80x30.txt": (snapshot, 80, 30, SELECT_STORM),
    "detail_120x34.txt": (snapshot, 120, 34, SELECT_STORM),
    "hostile_160x24.txt": (snapshot, 160, 24, HOSTILE),
    "live_trouble_120x20.txt": (live_snapshot, 120, 20, ViewState(is_paused=True, sort="dns")),
    "empty_80x12.txt": (empty_snapshot, 80, 12, ViewState()),
    "help_80x24.txt": (snapshot, 80, 24, ViewState(is_help_open=True)),
    "filter_typing_80x12.txt": (snapshot, 80, 12, ViewState(filter_draft="192.0.2.1")),
    "sorted_targets_120x16.txt": (snapshot, 120, 16, ViewState(sort="targets")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_screen(name: str) -> None:
    make, width, height, state = CASES[name]
    check_golden(name, render(make(), width, height, state))


@pytest.mark.parametrize("width", [40, 60, 80, 100, 120, 160, 220])
@pytest.mark.parametrize("height", [3, 4, 8, 24, 50])
@pytest.mark.parametrize("state", [ViewState(), SELECT_STORM, ViewState(is_help_open=True)])
def test_screen_fills_exactly_the_terminal(width: int, height: int, state: ViewState) -> None:
    lines = render(snapshot(), width, height, state).splitlines()
    assert len(lines) == height
    assert max(len(line) for line in lines) <= width


def test_eighty_columns_keep_the_essential_columns() -> None:
    text = render(snapshot(), 80, 24)
    header = next(line for line in text.splitlines() if line.startswith("host"))
    for column in ("score", "verdicts", "DNS/s", "SYN", "tgts"):
        assert column in header
    bot = next(line for line in text.splitlines() if "198.51.100.23" in line)
    assert "MX SCAN SYNC" in bot
    # an IPv6 address too long for the column keeps both ends
    assert "2001:db8:…dead:beef" in text


def test_rows_are_cut_to_the_height_and_the_footer_says_so() -> None:
    text = render(snapshot(n_ordinary=40), 120, 15)
    lines = text.splitlines()
    assert sum("192.0.2.1" in line for line in lines) < 40
    assert "hosts 1-" in lines[-1]
    assert "of 45" in lines[-1]


def test_selection_scrolls_into_view() -> None:
    snap = snapshot(n_ordinary=40)
    last = screen_rows(snap, ViewState())[-1].addr
    text = render(snap, 120, 15, ViewState(selected=last))
    assert f"▸{last}" in text
    assert "198.51.100.23" not in text  # the top scrolled away


def test_hostile_name_is_shown_escaped() -> None:
    text = render(snapshot(), 160, 24, HOSTILE)
    # ESC, BEL and the brackets as visible escapes, cut to the column (40) with an ellipsis
    assert "\\x1b\\x5b31mmail\\x07.\\x5bbold\\x5devil…" in text
    assert "\x1b" not in text
    assert "\x07" not in text


def test_hostile_name_on_a_colour_terminal_has_only_rich_escapes() -> None:
    console = Console(record=True, width=160, height=24, force_terminal=True, color_system="256")
    console.print(build_screen(snapshot(), width=160, height=24, state=HOSTILE))
    out = console.export_text(styles=True)
    assert "\x1b[" in out  # rich did style the screen
    # every ESC starts one of rich's SGR sequences; the name's own ESC is text
    assert "\x1b" not in re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert "\x1b[31mmail" not in out
    assert "\x07" not in out
    assert "\\x1b\\x5b31mmail" in out


def test_sorting_by_targets_puts_the_scanners_first() -> None:
    rows = screen_rows(snapshot(), ViewState(sort="targets"))
    assert [r.addr for r in rows[:2]] == ["198.51.100.23", "2001:db8:0:42::dead:beef"]


def test_sorting_by_last_seen_puts_the_most_recent_first() -> None:
    rows = screen_rows(snapshot(), ViewState(sort="last_seen"))
    ago = [r.last_seen_ago_s for r in rows]
    assert ago == sorted(ago)
    assert ago[0] < ago[-1]


def test_sorting_by_sync_puts_hosts_without_r_below_a_negative_r() -> None:
    snap = snapshot()
    anti = snap.hosts[3]
    snap.hosts[3] = replace(anti, verdict=replace(anti.verdict, sync_r=-0.25))
    rows = screen_rows(snap, ViewState(sort="sync"))
    r = [row.sync_r for row in rows]
    assert r[0] == pytest.approx(0.9874)
    assert r[1] == -0.25
    assert all(x is None for x in r[2:])


def test_filter_keeps_matching_hosts_only() -> None:
    rows = screen_rows(snapshot(), ViewState(filter="192.0.2.10"))
    assert rows
    assert all(r.addr.startswith("192.0.2.10") for r in rows)


def test_a_filter_missing_the_top_hosts_says_it_searched_only_those() -> None:
    """The snapshot carries the top hosts only: a tracked host outside them is
    not "no host", and the footer says the count is a top list."""
    snap = replace(snapshot(), hosts_tracked=413)
    shown = len(snap.hosts)
    text = render(snap, 120, 12, ViewState(filter="198.51.100.7"))
    assert "no host matches" not in text
    said = f"no host of the {shown} highest-scored (413 tracked) matches filter 198.51.100.7"
    assert said in text
    assert f"of top {shown}" in render(snap, 120, 12, ViewState())


@pytest.mark.parametrize(
    ("make", "state"),
    [(empty_snapshot, ViewState()), (snapshot, ViewState(filter="2001:db8:ffff::/48"))],
)
def test_the_no_rows_line_does_not_wrap_the_footer_off_a_narrow_screen(
    make: Callable[[], Snapshot], state: ViewState
) -> None:
    for width in (40, 60):
        lines = render(make(), width, 10, state).rstrip("\n").split("\n")
        assert len(lines) == 10
        assert lines[-1].startswith("hosts 0 of 0")  # the footer, last


# --- the presenter ------------------------------------------------------------------


def test_hostile_names_of_the_sample_pcap_are_shown_escaped() -> None:
    """dns_names.pcap through the real pipeline, its host's detail on a colour terminal."""
    from wormwatch.config import load_config
    from wormwatch.pipeline import Pipeline
    from wormwatch.source.pcapfile import open_replay

    pcap = paths.PCAPS / "dns_names.pcap"
    result = Pipeline(load_config(None), source_name=pcap.name).run(open_replay([str(pcap)]))
    final = replace(result.final, hosts=result.hosts)
    addr = "192.0.2.201"
    assert b"\x1b[31mred\x1b[0m.example" in result.hosts[0].state.sample_names
    console = Console(record=True, width=200, height=40, force_terminal=True, color_system="256")
    state = ViewState(selected=addr, is_detail_open=True)
    console.print(build_screen(final, width=200, height=40, state=state))
    out = console.export_text(styles=True)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert "\\x1b\\x5b31mred\\x1b\\x5b0m.example" in plain
    assert "\\x01\\x02ctl\\x7f.example" in plain
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", plain)


# --- formatting and row numbers ----------------------------------------------------


def test_build_screen_draws_the_rows_it_is_given() -> None:
    """The presenter computes the rows once per draw and hands them over."""
    snap = snapshot()
    rows = screen_rows(snap, ViewState())
    given = render_rows(snap, rows[:1])
    assert rows[0].addr in given
    assert rows[1].addr not in given
    assert given != render_rows(snap, None)


def render_rows(snap: Snapshot, rows: list[HostRow] | None) -> str:
    console = Console(file=io.StringIO(), width=160, height=30, color_system=None)
    console.print(build_screen(snap, width=160, height=30, state=ViewState(), rows=rows))
    out = console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


def test_flagged_hosts_beyond_the_top_list_are_counted_in_the_header() -> None:
    """The table lists the top hosts only; when more hosts hold a verdict than it
    lists, the header says how many at least are not listed."""
    snap = snapshot()
    scans = sum("smb-scan" in v.verdict.verdicts for v in snap.hosts)
    assert "not listed" not in render(replace(snap, flagged={"smb-scan": scans}), 160, 12)
    more = replace(snap, hosts_tracked=413, flagged={"smb-scan": scans + 10, "mx-client": 1})
    assert "10+ flagged hosts not listed" in render(more, 160, 12)


def test_a_long_filter_being_typed_shows_its_end_on_a_narrow_screen() -> None:
    draft = "2001:db8:ffff:ffff:ffff:ffff:ffff:1030/128"
    footer = render(snapshot(), 40, 10, ViewState(filter_draft=draft)).rstrip("\n").split("\n")[-1]
    assert footer.startswith("filter: …")
    assert "1030/128▏" in footer
    wide = render(snapshot(), 120, 10, ViewState(filter_draft=draft))
    assert f"filter: {draft}▏" in wide
