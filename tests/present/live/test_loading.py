"""The kernel-loading progress bar: says why the screen waits, shows each step, goes away."""

from __future__ import annotations

import io

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
