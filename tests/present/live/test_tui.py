"""The live table: golden screens at fixed widths, fitting, and the presenter
driven by scripted snapshots and keys (no terminal).

Regenerate the goldens after an intended change with
``WORMWATCH_UPDATE_GOLDEN=1 pytest tests/present/live/test_tui.py`` and review the diff.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import replace

import pytest
from rich.console import Console

from wormwatch.model import Snapshot
from wormwatch.present.live import fmt
from wormwatch.present.live.keys import Key, KeyEvent
from wormwatch.present.live.rows import HostRow, host_row
from wormwatch.present.live.table import build_screen, screen_rows
from wormwatch.present.live.tui import TuiPresenter
from wormwatch.present.live.view import ViewState

from testkit import paths
from testkit.fakes import FakeClock, ScriptedKeys
from testkit.tui_fakes import (
    empty_snapshot,
    live_snapshot,
    sequence,
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
@pytest.mark.parametrize("height", [8, 24, 50])
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


def test_filter_keeps_matching_hosts_only() -> None:
    rows = screen_rows(snapshot(), ViewState(filter="192.0.2.10"))
    assert rows
    assert all(r.addr.startswith("192.0.2.10") for r in rows)


# --- the presenter ------------------------------------------------------------------


def presenter(
    keys: ScriptedKeys[KeyEvent], *, hold: bool = False, clock: FakeClock | None = None
) -> tuple[TuiPresenter, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, width=120, height=30, force_terminal=True, color_system=None)
    tui = TuiPresenter(
        console=console, hold_at_end=hold, keys=keys, clock=clock or FakeClock(), refresh_per_s=4.0
    )
    return tui, out


def test_start_update_stop_uses_the_alternate_screen_and_restores() -> None:
    keys = ScriptedKeys()
    tui, out = presenter(keys)
    tui.start()
    for snap in sequence(3):
        tui.update(snap)
        assert not tui.poll_quit()
    tui.stop(snapshot(is_finished=True))
    text = out.getvalue()
    assert text.index("\x1b[?1049h") < text.index("198.51.100.23") < text.rindex("\x1b[?1049l")
    assert "replay finished" in text
    assert keys.opened == 1
    assert keys.restored >= 1


def test_updates_are_drawn_at_most_refresh_per_s() -> None:
    clock = FakeClock()
    tui, _ = presenter(ScriptedKeys(), clock=clock)
    tui.start()
    for snap in sequence(8):
        tui.update(snap)
    assert tui.n_draws == 1
    clock.now = 0.15
    tui.update(snapshot())
    assert tui.n_draws == 1
    clock.now = 0.24  # a caller at 4 per second, a little early, is still drawn
    tui.update(snapshot())
    assert tui.n_draws == 2
    tui.close()


def test_a_paused_screen_is_redrawn_when_the_terminal_is_resized() -> None:
    keys = ScriptedKeys([["p"]])
    tui, _ = presenter(keys)
    tui.start()
    tui.update(snapshot())
    tui.poll_quit()
    draws = tui.n_draws
    tui.update(snapshot())
    assert tui.n_draws == draws
    tui.console.size = (90, 20)  # type: ignore[assignment]
    tui.update(snapshot())
    assert tui.n_draws == draws + 1
    tui.close()


def test_q_makes_poll_quit_true_and_stop_does_not_hold() -> None:
    keys = ScriptedKeys([[Key.DOWN], ["q"]])
    tui, _ = presenter(keys, hold=True)
    tui.start()
    tui.update(snapshot())
    assert not tui.poll_quit()
    assert tui.state.selected == "198.51.100.23"
    assert tui.poll_quit()
    tui.stop(snapshot(is_finished=True))  # returns: the user already quit
    assert keys.restored >= 1


def test_pause_freezes_the_display_and_resume_shows_the_latest() -> None:
    clock = FakeClock()
    keys = ScriptedKeys([["p"], ["p"]])
    tui, out = presenter(keys, clock=clock)
    tui.start()
    first, *_, last = sequence(5)
    tui.update(first)
    tui.poll_quit()
    assert tui.state.is_paused
    clock.now = 10.0
    tui.update(last)
    assert "12:26:00" not in out.getvalue()  # the last snapshot was not drawn
    tui.poll_quit()
    assert not tui.state.is_paused
    assert "12:26:00" in out.getvalue()  # resumed on the latest snapshot
    tui.close()


def test_hold_at_end_keeps_the_final_screen_until_q() -> None:
    keys = ScriptedKeys([[], [Key.DOWN, Key.ENTER], [], ["q"]])
    tui, out = presenter(keys, hold=True)
    tui.start()
    tui.update(snapshot())
    tui.stop(snapshot(is_finished=True))
    assert keys.script == []  # every scripted read happened: it held until q
    assert tui.state.is_detail_open  # keys still worked on the held screen
    assert "198.51.100.23  score 96  mx-client, smb-scan, bot-sync" in out.getvalue()
    assert keys.restored >= 1


class InterruptingKeys(ScriptedKeys):
    def wait(self, timeout_s: float) -> bool:
        raise KeyboardInterrupt


def test_ctrl_c_ends_the_hold_like_q() -> None:
    keys = InterruptingKeys()
    tui, _ = presenter(keys, hold=True)
    tui.start()
    tui.stop(snapshot(is_finished=True))  # returns instead of raising
    assert tui.state.is_quitting
    assert keys.restored >= 1


def test_hold_only_for_a_finished_replay() -> None:
    keys = ScriptedKeys()
    tui, _ = presenter(keys, hold=True)
    tui.start()
    tui.stop(snapshot(is_finished=False))  # stopped early: no waiting
    assert keys.restored >= 1


def test_an_exception_inside_the_context_restores_the_terminal() -> None:
    keys = ScriptedKeys()
    tui, out = presenter(keys)

    def crash() -> None:
        with tui:
            tui.start()
            tui.update(snapshot())
            raise RuntimeError("pipeline crashed")

    with pytest.raises(RuntimeError, match="crashed"):
        crash()
    assert keys.restored >= 1
    assert "\x1b[?1049l" in out.getvalue()


def test_keys_redraw_the_current_snapshot_at_once() -> None:
    keys = ScriptedKeys([["s"]])
    tui, out = presenter(keys)
    tui.start()
    tui.update(replace(snapshot(), source="first.pcap"))
    before = tui.n_draws
    tui.poll_quit()
    assert tui.n_draws == before + 1
    assert "sort DNS q/s" in out.getvalue()
    tui.close()


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


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (0.25, "0.25"), (4.2, "4.2"), (7, "7"), (1234, "1234"), (12_345, "12.3k"),
     (123_456, "123k"), (1_234_567, "1.2M"), (-3, "-3")],
)  # fmt: skip
def test_compact(value: float, text: str) -> None:
    assert fmt.compact(value) == text
    assert len(fmt.compact(value)) <= 5


def test_sparkline_bar_ellipsis_age() -> None:
    assert fmt.sparkline([0, 1, 2, 4, 8], 5) == " ▁▂▄█"
    assert fmt.sparkline([5, 0, 9], 2) == " █"  # the newest values only
    assert fmt.sparkline([3], 4) == "   █"  # padded on the left (older bins)
    assert fmt.sparkline([0, 0], 3) == "   "
    assert fmt.bar(0.5, 4) == "██  "
    assert fmt.bar(1.5, 3) == "███"
    assert fmt.bar(1 / 16, 2) == "▏ "
    assert fmt.middle_ellipsis("2001:db8:0:42::dead:beef", 11) == "2001:…:beef"
    assert fmt.middle_ellipsis("10.0.0.1", 11) == "10.0.0.1"
    assert [fmt.age(s) for s in (0.4, 59, 61, 7200, 90_000)] == ["0s", "59s", "1m", "2h", "1d"]
    assert fmt.duration(3725) == "1:02:05"
    assert fmt.duration(65) == "1:05"


def test_host_row_numbers() -> None:
    snap = snapshot()
    rows = {r.addr: r for r in screen_rows(snap, ViewState())}
    bot = rows["198.51.100.23"]
    assert bot.sync_r == pytest.approx(0.9874)  # the detector's value (Verdict.sync_r)
    assert bot.syn == (0, 24, 287)
    assert bot.syn_targets == 287
    scanner = rows["2001:db8:0:42::dead:beef"]
    assert scanner.kw_share is None  # no queries at all
    assert scanner.dns_per_s == 0
    storm = rows["192.0.2.66"]
    assert storm.kw_share == pytest.approx(1932 / 1952)
    # 1952 queries over the 25 minutes from its first active bin to now
    assert storm.dns_per_s == pytest.approx(1952 / (25 * 60))
    assert storm.activity[-6:] == (0, 0, 0, 0, 0, 0)  # silent for the last 5 bins and now
    assert sum(storm.activity) == sum(storm.view.state.series[-18:, 0])
    # the row shows what the detector stored, never a number of its own
    mailer = rows["192.0.2.7"]
    assert mailer.sync_r is None
    judged = replace(snap.hosts[3], verdict=replace(snap.hosts[3].verdict, sync_r=-0.25))
    assert host_row(judged, snap).sync_r == -0.25


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
