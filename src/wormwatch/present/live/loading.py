"""The progress bar shown on a terminal while the packet kernels load.

In: the warm-up's steps (:func:`wormwatch.warmup.warm_up`: step name, steps done,
steps in all). Out: one line on standard error that says why the screen waits, then a
transient progress bar. On the very first run numba compiles the kernels (seconds per
step); later runs load them from its cache and the bar is gone almost at once.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class LoadingBar:
    """``step`` is the warm-up's ``on_step``; ``close`` ends the bar (idempotent)."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console if console is not None else Console(stderr=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def step(self, name: str, done: int, total: int) -> None:
        """Show step ``name`` (``""`` at the end, which closes the bar)."""
        if not name:
            self.close()
            return
        if self._progress is None:
            self._console.print(
                "wormwatch: loading packet kernels (the first run compiles them)",
                markup=False,
                highlight=False,
            )
            progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            with _stops_held():
                progress.start()
                self._progress = progress
            self._task = self._progress.add_task("", total=total)
        assert self._task is not None  # set with the progress above
        self._progress.update(self._task, completed=done, description=f"kernels: {name}")

    def close(self) -> None:
        """Remove the bar from the terminal."""
        if self._progress is not None:
            with _stops_held():
                self._progress.stop()
                self._progress = None


@contextmanager
def _stops_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM land before or after, never inside (while the kernels load
    either raises: :mod:`wormwatch.control`): a rich Live interrupted halfway through
    starting cannot be stopped (its render hook was never pushed), and the run would
    end in a traceback instead of its summary. One that comes meanwhile is delivered
    when this ends."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
