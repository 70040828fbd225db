"""The operator's signals to a sensor run, from start-up to its last line.

In: SIGTERM and SIGINT (Ctrl-C), which ask the run to stop, and SIGHUP (logrotate's
``postrotate``, ``systemctl reload``), which asks it to reopen its files. Out: flags
the run reads between two steps of its own: a :class:`Stop` (the pipeline's loop checks
it once per batch, start-up between its steps) and :class:`ReopenRequests` (every
writer reopens its file before its next write after one). A handler only takes note,
so no signal lands half-way through a write or a privilege drop.

The CLI installs them (:meth:`RunSignals.installed`) before it imports numpy and numba,
and keeps them to the end: no signal meets its default action anywhere in a run (that
ended a sensor told to reload or stop while it loaded its kernels, and a SIGHUP death
counts as a clean exit to systemd). What a stop does depends on when it comes:

- start-up: the run skips what is left of it (kernels, capture) and ends as a run
  stopped in its loop does, summary written: exit 0 after SIGTERM, 130 after Ctrl-C;
- while the kernels load (:meth:`Stop.breaking_off`): the same, and the signal also
  raises :class:`KeyboardInterrupt` there (where it is safe), to break off a
  first run's ~15 s of compiling, which checks no flag;
- the loop: it ends after the batch at hand;
- wind-down (:meth:`Stop.loop_ended`: final judging, the summary): SIGTERM and a first
  Ctrl-C are noted and the wind-down goes on (a run that ended by itself and is then
  interrupted still writes its whole summary, exit 130); a second Ctrl-C raises
  :class:`KeyboardInterrupt`, as Python's own handler does, and gets out at once,
  summary or not.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

Handler = Callable[[int, FrameType | None], None]
# how often a stop that came where raising is unsafe tries again to break off
AGAIN_S = 0.01
# what signal.signal returns: a handler, SIG_DFL or SIG_IGN, or None (not set from Python)
_Previous = Callable[[int, FrameType | None], Any] | int | None


class ReopenRequests:
    """Log rotation's signal: writers that share this reopen their file by its path
    before their next write once it moves on.

    The signal handler only counts (:meth:`request`); the reopening happens between
    two whole writes, so no line is torn or lost. A request before a writer exists
    changes nothing for it.
    """

    def __init__(self) -> None:
        self.generation = 0

    def request(self) -> None:
        self.generation += 1


class Stop:
    """A stop asked for by SIGTERM or SIGINT (:meth:`on_signal`), read by the run."""

    def __init__(self) -> None:
        self.requested = False
        # by Ctrl-C (exit 130), not SIGTERM; the last signal says
        self.interrupted = False
        self._is_breaking = False
        self._is_over = False

    def request(self, *, interrupted: bool) -> None:
        """Ask for a stop (by Ctrl-C when ``interrupted``)."""
        self.requested = True
        self.interrupted = interrupted

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """The SIGTERM and SIGINT handler (see the module docstring for when)."""
        if self._is_over:
            if signum == signal.SIGINT:
                if self.interrupted:  # the second Ctrl-C
                    raise KeyboardInterrupt
                self.interrupted = True
            self.requested = True
            return
        self.request(interrupted=signum == signal.SIGINT)
        self._break_off(frame)

    def _break_off(self, frame: FrameType | None) -> None:
        if not self._is_breaking:
            return
        if _is_unsafe_to_raise(frame):
            signal.setitimer(signal.ITIMER_REAL, AGAIN_S)
            return
        self._is_breaking = False
        raise KeyboardInterrupt

    @contextmanager
    def breaking_off(self) -> Iterator[None]:
        """In the block, a stop also raises :class:`KeyboardInterrupt` (once), where
        that is safe (SIGALRM tries again every ``AGAIN_S`` until it is)."""
        self._is_breaking = True
        with _installed({signal.SIGALRM: lambda _signum, frame: self._break_off(frame)}):
            try:
                yield
            finally:
                # in this order: a handler that runs in between (a SIGTERM or an
                # alarm already delivered) no longer sets the timer again, and no
                # timer is left when SIGALRM's own action (the end of the process)
                # is back; the other way round one could, and the process died of
                # SIGALRM (exit -14) after a stop during a first run's compile
                self._is_breaking = False
                signal.setitimer(signal.ITIMER_REAL, 0)

    def loop_ended(self) -> None:
        """The run's loop is over: from now on the wind-down's rules hold."""
        self._is_over = True

    @contextmanager
    def handled(self) -> Iterator[None]:
        """SIGTERM and SIGINT handled by :meth:`on_signal` in the block, as they were
        after it (a pipeline run outside the CLI: ``report``, tests)."""
        with _installed({signal.SIGINT: self.on_signal, signal.SIGTERM: self.on_signal}):
            yield


class RunSignals:
    """What a sensor run is asked by signal: its :class:`Stop` and its reopens."""

    def __init__(self) -> None:
        self.stop = Stop()
        self.reopen = ReopenRequests()

    def _on_hangup(self, _signum: int, _frame: FrameType | None) -> None:
        self.reopen.request()

    @contextmanager
    def installed(self) -> Iterator[RunSignals]:
        """SIGTERM, SIGINT and SIGHUP handled in the block, as they were after it."""
        handlers: dict[int, Handler] = {
            signal.SIGINT: self.stop.on_signal,
            signal.SIGTERM: self.stop.on_signal,
            signal.SIGHUP: self._on_hangup,
        }
        with _installed(handlers):
            yield self


def _is_unsafe_to_raise(frame: FrameType | None) -> bool:
    """Whether a KeyboardInterrupt raised in ``frame`` would do harm as numba compiles.

    - llvmlite calls back from C (its object cache): raised in a callback, the
      exception is printed and dropped, and the library being made is left half
      made (a RuntimeError traceback a step later; one stop in 8 or so);
    - numba runs code it wrote as text (``exec`` of a string): a KeyboardInterrupt
      that leaves one marks it unhandled for good, and ``python -m`` then ends by
      SIGINT (exit -2, even after a clean run; CPython's ``run_eval_code_obj``).
    """
    while frame is not None:
        name = str(frame.f_globals.get("__name__", ""))
        if name.startswith("llvmlite") or frame.f_code.co_filename == "<string>":
            return True
        frame = frame.f_back
    return False


@contextmanager
def _installed(handlers: dict[int, Handler]) -> Iterator[None]:
    old: dict[int, _Previous] = {}
    try:
        for signum, handler in handlers.items():
            old[signum] = signal.signal(signum, handler)
    except ValueError:
        # not the main thread: the caller owns signals
        pass
    try:
        yield
    finally:
        for signum, previous in old.items():
            # None: a handler not set from Python, which Python cannot set back either
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
