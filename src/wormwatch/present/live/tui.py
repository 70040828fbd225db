"""The live terminal table: draws snapshots with rich, reads keys, never blocks.

In: :class:`~wormwatch.model.Snapshot` objects from the pipeline, at most a
few per wall second, and keys from the terminal. Out: the screen of
:func:`~wormwatch.present.live.table.build_screen` in the terminal's alternate
screen, redrawn at most ``refresh_per_s`` times a second and after each key.

The pipeline calls :meth:`TuiPresenter.start`, then :meth:`~TuiPresenter.update`
and :meth:`~TuiPresenter.poll_quit` from its loop, then
:meth:`~TuiPresenter.stop` with the final snapshot. Only ``stop`` may wait: with
``hold_at_end`` (for ``wormwatch demo``) the finished replay stays on screen
until the user presses ``q``. The terminal is restored in every case: use the
presenter as a context manager (or call :meth:`~TuiPresenter.close`) so an
exception also restores it; atexit and signal handlers cover the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import Final, Protocol

from rich.console import Console
from rich.live import Live

from wormwatch.model import Snapshot
from wormwatch.present.live.keys import KeyEvent
from wormwatch.present.live.rows import HostRow
from wormwatch.present.live.table import build_screen, found_rows
from wormwatch.present.live.terminal import TerminalInput
from wormwatch.present.live.view import ViewState, handle_key

RATE_SLACK: Final = 0.75
HOLD_POLL_S: Final = 0.25  # how often the held final screen checks for a resize
# leave the alternate screen, show the cursor: what Live.stop() writes, for the
# paths (signals, atexit) where Live itself cannot be trusted to run
_RESTORE_SCREEN: Final = "\x1b[?1049l\x1b[?25h"


class KeyReader(Protocol):
    """Where keys come from: a :class:`TerminalInput`, or a script in tests."""

    def open(self) -> None: ...

    def restore(self) -> None: ...

    def wait(self, timeout_s: float) -> bool: ...

    def read_keys(self) -> list[KeyEvent]: ...


class TuiPresenter:
    """The live table of top suspicious hosts.

    Args:
        console: where to draw (default: a console on standard output).
        refresh_per_s: most redraws per wall second from :meth:`update`.
        hold_at_end: keep the final screen of a finished replay until ``q``.
        keys: the key source (default: :class:`TerminalInput` on stdin).
        clock: wall clock in seconds, for the redraw rate limit.
        is_stopped: whether the run was asked to stop (SIGTERM), which ends the
            held final screen as ``q`` does.
    """

    def __init__(
        self,
        *,
        console: Console | None = None,
        refresh_per_s: float = 4.0,
        hold_at_end: bool = False,
        keys: KeyReader | None = None,
        clock: Callable[[], float] = time.monotonic,
        is_stopped: Callable[[], bool] = lambda: False,
    ) -> None:
        self.console = console if console is not None else Console()
        self.min_interval_s = 1.0 / refresh_per_s if refresh_per_s > 0 else 0.0
        self.hold_at_end = hold_at_end
        self.keys: KeyReader = (
            keys
            if keys is not None
            else TerminalInput(on_restore=self._restore_screen, on_resume=self._resume)
        )
        self.clock = clock
        self.is_stopped = is_stopped
        self.state = ViewState()
        self._live: Live | None = None
        self._shown: Snapshot | None = None
        self._latest: Snapshot | None = None
        self._last_draw = float("-inf")
        self._drawn_size: tuple[int, int] | None = None
        # the rows last drawn, and how many hosts passed the filter
        self._rows: tuple[list[HostRow], int | None] = ([], None)
        self.n_draws = 0

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> TuiPresenter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Enter the alternate screen and cbreak mode."""
        if self._live is not None:
            return
        self._live = Live(
            console=self.console,
            screen=True,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()
        self.keys.open()

    def close(self) -> None:
        """Leave the alternate screen and restore the terminal; idempotent."""
        live, self._live = self._live, None
        try:
            if live is not None:
                live.stop()
        finally:
            self.keys.restore()

    def _restore_screen(self) -> None:
        if self._live is not None and self.console.is_terminal:
            self.console.file.write(_RESTORE_SCREEN)
            self.console.file.flush()

    def _resume(self) -> None:
        if self._live is not None:
            self.console.set_alt_screen(True)
            self.console.show_cursor(False)
            # from a signal handler, maybe in the middle of an ingest: a filter
            # does not search the aggregate now, the rows last drawn are kept
            self._draw(is_refind=not self.state.filter)

    # -- the pipeline's calls ----------------------------------------------------------

    def update(self, snapshot: Snapshot) -> None:
        """Take a new snapshot; redraw unless paused or drawn very recently."""
        self._latest = snapshot
        if self.state.is_paused and self._shown is not None:
            # frozen, but a resized terminal gets the frozen screen redrawn
            if self.console.size != self._drawn_size:
                self._draw()
            return
        self._shown = snapshot
        # slack for the caller's timing jitter: a caller at exactly
        # refresh_per_s must not see every other update skipped
        if self.clock() - self._last_draw >= RATE_SLACK * self.min_interval_s:
            self._draw()

    def poll_quit(self) -> bool:
        """Apply the keys pressed since the last call; True once ``q`` was pressed."""
        self._apply(self.keys.read_keys())
        return self.state.is_quitting

    def stop(self, final: Snapshot) -> None:
        """Show ``final``; hold it until ``q`` when asked to; restore the terminal."""
        try:
            self.state = replace(self.state, is_paused=False)
            self._latest = self._shown = final
            if self._live is not None:
                self._draw()
                if self.hold_at_end and final.is_finished and not self.state.is_quitting:
                    self._hold()
        finally:
            self.close()

    def _hold(self) -> None:
        """Keep the final screen (keys still work) until ``q`` or Ctrl-C.

        Ctrl-C here means "I am done looking": it ends the hold like ``q``,
        so the run still writes its summary; so does a stop (SIGTERM), within
        ``HOLD_POLL_S``.
        """
        try:
            while not self.state.is_quitting and not self.is_stopped():
                has_input = self.keys.wait(HOLD_POLL_S)
                self._apply(self.keys.read_keys())
                if not has_input and self.console.size != self._drawn_size:
                    self._draw()
        except KeyboardInterrupt:
            self.state = replace(self.state, is_quitting=True)

    # -- keys and drawing --------------------------------------------------------------

    def _apply(self, keys: list[KeyEvent]) -> None:
        if not keys:
            return
        before = self.state
        for key in keys:
            self.state = handle_key(self.state, key)
        if before.is_paused and not self.state.is_paused and self._latest is not None:
            self._shown = self._latest
        if self.state != before and not self.state.is_quitting:
            self._draw()

    def _draw(self, *, is_refind: bool = True) -> None:
        if self._live is None or self._shown is None:
            return
        if is_refind:
            self._rows = found_rows(self._shown, self.state)
        rows, n_matched = self._rows
        self.state = replace(self.state, rows=tuple(r.addr for r in rows))
        width, height = self.console.size
        screen = build_screen(
            self._shown, width=width, height=height, state=self.state, rows=rows,
            n_matched=n_matched,
        )  # fmt: skip
        self._live.update(screen, refresh=True)
        self._last_draw = self.clock()
        self._drawn_size = (width, height)
        self.n_draws += 1
