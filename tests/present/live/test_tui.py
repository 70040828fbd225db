"""The presenter driven by scripted snapshots, keys and a fake clock (no terminal)."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from rich.console import Console

from wormwatch.present.live.keys import Key, KeyEvent
from wormwatch.present.live.tui import TuiPresenter

from testkit.fakes import FakeClock, ScriptedKeys
from testkit.tui_fakes import (
    sequence,
    snapshot,
)


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
