"""A child process on a real pseudo-terminal, and the screen a person would see.

The child gets a pty as its terminal (stdin, stdout, stderr) of a fixed size; what it
writes is kept raw (``raw``, to check which bytes reached the terminal) and fed through
pyte, a VT100 emulator (``text()``, the screen). By default the child is the installed
``wormwatch`` console script, as the README runs it.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pyte

COLS, ROWS = 120, 40
TIMEOUT_S = 90.0  # generous: a cold numba cache compiles the kernels first


def console_script() -> list[str]:
    """argv of the installed ``wormwatch`` command (beside this interpreter)."""
    return [str(Path(sys.executable).parent / "wormwatch")]


class PtyApp:
    """``argv`` (default: the console script) with ``args`` on a ``cols`` x ``rows`` pty."""

    def __init__(
        self,
        *args: str,
        argv: Sequence[str] | None = None,
        cols: int = COLS,
        rows: int = ROWS,
    ) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.modes_before = termios.tcgetattr(self.slave)
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
        env["TERM"] = "xterm-256color"
        self.proc = subprocess.Popen(
            [*(argv if argv is not None else console_script()), *args],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env=env,
            start_new_session=True,
        )
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()

    def pump(self, timeout_s: float) -> None:
        """Read what the child wrote within ``timeout_s`` into the screen."""
        ready, _, _ = select.select([self.master], [], [], timeout_s)
        if ready:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            self.raw += data
            self.stream.feed(data)

    def drain(self, quiet_s: float = 0.2) -> None:
        """Read until the child's output has been quiet for ``quiet_s``: everything it
        wrote before exiting (one read takes at most 64 KiB, and a child that redraws a
        full screen several times just before it exits leaves more than that queued)."""
        while True:
            before = len(self.raw)
            self.pump(quiet_s)
            if len(self.raw) == before:
                return

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def wait_for(self, what: str, predicate: Callable[[str], bool]) -> str:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            self.pump(0.1)
            if predicate(self.text()):
                return self.text()
            if self.proc.poll() is not None:
                self.drain()
                break
        raise AssertionError(f"timed out waiting for {what}; screen:\n{self.text()}")

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait_exit(self) -> int:
        deadline = time.monotonic() + TIMEOUT_S
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.pump(0.1)
        self.drain()
        assert self.proc.returncode is not None, f"did not exit; screen:\n{self.text()}"
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)
