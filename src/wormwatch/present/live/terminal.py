"""The keyboard side of the terminal: cbreak mode, non-blocking reads, restore.

In: the terminal on standard input (or any tty file descriptor). Out: key
events (via :class:`~wormwatch.present.live.keys.KeyDecoder`). :class:`TerminalInput`
puts the terminal in cbreak mode (keys arrive one by one, unechoed; Ctrl-C
still sends SIGINT) and always puts it back: on leaving the ``with`` block
(exceptions included), before an uncaught exception's traceback is printed,
at interpreter exit, on SIGTERM and SIGHUP when nobody else handles them (their
default action ends the process; a handler of the run's, such as SIGHUP reopening
the log files, is called and the table goes on), and on Ctrl-Z (SIGTSTP). An
``on_restore`` callback lets the screen side (leaving the alternate screen,
showing the cursor) ride on the same guarantees.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import sys
import termios
import tty
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, Final

from wormwatch.present.live.keys import KeyDecoder, KeyEvent

READ_CHUNK: Final = 1024
# signals whose default action ends or stops the process with the terminal raw
_FATAL_SIGNALS: Final = (signal.SIGTERM, signal.SIGHUP)
_Handler = Callable[[int, FrameType | None], object] | int | None


class TerminalInput:
    """Keys from a terminal in cbreak mode, read without blocking.

    Args:
        fd: the terminal's file descriptor. By default standard input, or,
            when standard input is not a terminal (``wormwatch replay -``
            reads the capture from it), the controlling terminal
            ``tty_path``. Without a terminal nothing is changed and no key
            ever arrives.
        tty_path: the controlling terminal, opened when standard input is not one.
        on_restore: called (once per restore) before the terminal modes are
            put back, e.g. to leave the alternate screen; it must not raise.
        on_resume: called after a Ctrl-Z suspension ends and cbreak mode is
            back, e.g. to re-enter the alternate screen and redraw.
    """

    def __init__(
        self,
        fd: int | None = None,
        *,
        tty_path: str = "/dev/tty",
        on_restore: Callable[[], None] | None = None,
        on_resume: Callable[[], None] | None = None,
    ) -> None:
        self.fd = -1
        self._requested_fd = fd
        self.tty_path = tty_path
        self._is_fd_owned = False
        self.on_restore = on_restore
        self.on_resume = on_resume
        self.decoder = KeyDecoder()
        self._saved: list[Any] | None = None
        self._old_handlers: dict[int, _Handler] = {}
        self._old_excepthook = sys.excepthook
        self._is_active = False

    @property
    def is_active(self) -> bool:
        """Whether the terminal is in cbreak mode under this object."""
        return self._is_active

    def __enter__(self) -> TerminalInput:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.restore()

    def open(self) -> None:
        """Enter cbreak mode and arm every restore path."""
        if self._is_active:
            return
        fd = self._find_terminal()
        if fd is None:
            return
        self.fd = fd
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd, termios.TCSANOW)
        self._is_active = True
        atexit.register(self.restore)
        # an uncaught exception: restore before its traceback is printed, or
        # the traceback lands in the alternate screen and vanishes with it
        self._old_excepthook = sys.excepthook
        sys.excepthook = self._excepthook
        for signum in (*_FATAL_SIGNALS, signal.SIGTSTP):
            try:
                self._old_handlers[signum] = signal.signal(signum, self._on_signal)
            except ValueError:
                # not the main thread: the with block and atexit still restore
                break

    def _find_terminal(self) -> int | None:
        if self._requested_fd is not None:
            return self._requested_fd if os.isatty(self._requested_fd) else None
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, ValueError, OSError):
            # no standard input at all, or a replaced one without a descriptor
            fd = -1
        if fd >= 0 and os.isatty(fd):
            return fd
        try:
            fd = os.open(self.tty_path, os.O_RDWR | os.O_NOCTTY)
        except OSError:
            return None
        if not os.isatty(fd):
            os.close(fd)
            return None
        self._is_fd_owned = True
        return fd

    def restore(self) -> None:
        """Put the terminal back as it was; safe to call any number of times."""
        if not self._is_active:
            return
        self._is_active = False
        atexit.unregister(self.restore)
        if sys.excepthook == self._excepthook:
            sys.excepthook = self._old_excepthook
        for signum, handler in self._old_handlers.items():
            try:
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
            except ValueError:
                break
        self._old_handlers.clear()
        self._reset_modes()

    def _reset_modes(self) -> None:
        if self.on_restore is not None:
            self.on_restore()
        if self._saved is not None:
            # termios.error: the terminal is gone (hang-up), nothing to restore
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self.fd, termios.TCSAFLUSH, self._saved)
        if self._is_fd_owned and not self._is_active:
            self._is_fd_owned = False
            with contextlib.suppress(OSError):
                os.close(self.fd)

    def _excepthook(
        self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        hook = self._old_excepthook
        self.restore()
        hook(exc_type, exc, tb)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGTSTP:
            self._suspend()
            return
        old = self._old_handlers.get(signum, signal.SIG_DFL)
        if callable(old):
            # someone handles it and the process goes on (SIGHUP reopening the
            # log files after a rotation): so does the table, with every other
            # handler left in place (restoring them all here put SIGTERM back to
            # its default action mid-run, and stopped the keys)
            old(signum, frame)
        elif old != signal.SIG_IGN:
            # let the default action (termination) happen, now that the
            # terminal is sane again
            self.restore()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def _suspend(self) -> None:
        """Ctrl-Z: restore the terminal, stop, and on SIGCONT take it back."""
        self._reset_modes()
        handler = signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)
        # execution continues here after `fg`
        signal.signal(signal.SIGTSTP, handler)
        if self._is_active:
            tty.setcbreak(self.fd, termios.TCSANOW)
            if self.on_resume is not None:
                self.on_resume()

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for input; True when some is ready."""
        if not self._is_active:
            return False
        try:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout_s))
        except InterruptedError:
            return False
        return bool(ready)

    def read_keys(self) -> list[KeyEvent]:
        """Every key pressed since the last call; never blocks."""
        if not self._is_active:
            return []
        data = b""
        while self.wait(0.0):
            try:
                chunk = os.read(self.fd, READ_CHUNK)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        if data:
            return self.decoder.feed(data)
        # nothing new: an escape sequence still incomplete was a lone Esc
        return self.decoder.flush()
