"""The kernel-loading progress bar: says why the screen waits, shows each step, goes away."""

from __future__ import annotations

import io
import os
import signal

import pytest
from rich.console import Console

from wormwatch.present.live.loading import LoadingBar
from wormwatch.warmup import step_names


def test_bar_names_each_step_then_leaves_nothing_running() -> None:
    out = io.StringIO()
    bar = LoadingBar(Console(file=out, force_terminal=True, width=100))
    names = step_names("replay")
    for i, name in enumerate(names):
        bar.step(name, i, len(names))
        assert bar._progress is not None
        bar._progress.refresh()
    bar.step("", len(names), len(names))
    text = out.getvalue()
    assert text.startswith("wormwatch: loading packet kernels (the first run compiles them)\n")
    for name in names:
        assert f"kernels: {name}" in text
    assert bar._progress is None
    bar.close()  # a second close (the CLI's, after an interrupt) is harmless


def test_ctrl_c_while_the_bar_starts_leaves_it_closable(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ctrl-C lands while rich is starting the bar (the first run's warm-up is seconds
    # long, and the user presses it right after the loading line)
    set_live = Console.set_live

    def interrupted(self: Console, live: object) -> bool:
        done = set_live(self, live)  # type: ignore[arg-type]
        os.kill(os.getpid(), signal.SIGINT)
        return done

    monkeypatch.setattr(Console, "set_live", interrupted)
    bar = LoadingBar(Console(file=io.StringIO(), force_terminal=True, width=100))
    with pytest.raises(KeyboardInterrupt):
        bar.step("record walkers", 0, 3)
    monkeypatch.undo()
    bar.close()  # what the CLI does after the interrupt: no traceback
    assert bar._progress is None
