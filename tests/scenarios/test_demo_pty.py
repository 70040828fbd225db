"""End to end: ``wormwatch demo`` in a real pseudo-terminal.

The child gets a pty as its terminal (stdin, stdout, stderr); its output goes
through pyte, a VT100 emulator, so the test reads the screen a person would
see. It waits for the top hosts, checks the bundled capture's story (storm,
mass mailer, scanner, bot) with their verdicts, presses keys, quits with ``q``
and checks a clean exit: status 0, alternate screen left, terminal modes back.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator

import pytest

pyte = pytest.importorskip("pyte")

COLS, ROWS = 120, 40
ALT_ON, ALT_OFF = b"\x1b[?1049h", b"\x1b[?1049l"
TIMEOUT_S = 90.0  # generous: a cold numba cache compiles the kernels first
STORY = {
    "192.0.2.66": ("STORM",),
    "192.0.2.77": ("MX",),
    "192.0.2.88": ("SCAN",),
    "192.0.2.99": ("MX", "SCAN", "SYNC"),
}


class PtyApp:
    """A child process on a pseudo-terminal, and the screen it draws."""

    def __init__(self, *args: str) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.modes_before = termios.tcgetattr(self.slave)
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
        env["TERM"] = "xterm-256color"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wormwatch", *args],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env=env,
            start_new_session=True,
        )
        self.screen = pyte.Screen(COLS, ROWS)
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

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def wait_for(self, what: str, predicate: Callable[[str], bool]) -> str:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            self.pump(0.1)
            if predicate(self.text()):
                return self.text()
            if self.proc.poll() is not None:
                self.pump(0.1)
                break
        raise AssertionError(f"timed out waiting for {what}; screen:\n{self.text()}")

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait_exit(self) -> int:
        deadline = time.monotonic() + TIMEOUT_S
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.pump(0.1)
        self.pump(0.2)
        assert self.proc.returncode is not None, f"did not exit; screen:\n{self.text()}"
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def app_factory() -> Iterator[Callable[..., PtyApp]]:
    apps: list[PtyApp] = []

    def start(*args: str) -> PtyApp:
        app = PtyApp(*args)
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.close()


def host_line(screen: str, addr: str) -> str:
    """The table row of ``addr`` (the address then a space, not a prefix of another)."""
    pattern = re.compile(rf"^[ ▸]{re.escape(addr)} ")
    return next((line for line in screen.splitlines() if pattern.match(line)), "")


def story_shown(screen: str) -> bool:
    return all(
        all(label in host_line(screen, addr).split() for label in labels)
        for addr, labels in STORY.items()
    )


def check_clean_exit(app: PtyApp) -> None:
    assert app.wait_exit() == 0, app.raw[-2000:].decode(errors="replace")
    # the alternate screen was entered, and left after the last time it was entered
    assert app.raw.rfind(ALT_OFF) > app.raw.rfind(ALT_ON) >= 0
    # cbreak mode undone: the terminal echoes and reads lines again
    assert termios.tcgetattr(app.slave) == app.modes_before


def test_demo_tells_the_story_and_quits_cleanly(app_factory: Callable[..., PtyApp]) -> None:
    # a fast replay of the bundled capture, held at the end until q
    app = app_factory("demo", "--speed", "600")
    screen = app.wait_for("the finished replay", lambda s: "replay finished" in s)
    assert story_shown(screen), screen
    ranked = [line.split()[0].lstrip("▸") for line in screen.splitlines()[3:8]]
    assert set(ranked[:4]) == set(STORY), screen
    # the allowlisted mail server is listed but not flagged
    assert host_line(screen, "192.0.2.25").split()[1] == "0"
    # keys work in the real terminal: select the top row, open its detail panel
    app.send(b"\x1b[B")
    app.send(b"\r")
    top = ranked[0]
    detail = app.wait_for("the detail panel", lambda s: "distinct targets" in s)
    title = next(line for line in detail.splitlines() if f"─ {top}  score" in line)
    labels = {"STORM": "keyword-storm", "MX": "mx-client", "SCAN": "smb-scan", "SYNC": "bot-sync"}
    assert all(labels[v] in title for v in STORY[top]), detail
    assert f"▸{top} " in detail
    assert app.proc.poll() is None  # still holding the final screen
    app.send(b"q")
    check_clean_exit(app)


def test_demo_quits_mid_replay(app_factory: Callable[..., PtyApp]) -> None:
    """The demo as the README runs it: q in the middle of the story ends it at once."""
    app = app_factory("demo")
    app.wait_for("the first hosts", lambda s: host_line(s, "192.0.2.66") != "")
    assert "replay finished" not in app.text()
    app.send(b"q")
    check_clean_exit(app)


def test_ctrl_c_mid_replay_exits_130_without_holding(app_factory: Callable[..., PtyApp]) -> None:
    """SIGINT (what Ctrl-C sends) ends the run at once: no held final screen,
    exit status 130, the terminal restored."""
    app = app_factory("demo")
    app.wait_for("the first hosts", lambda s: host_line(s, "192.0.2.66") != "")
    app.proc.send_signal(signal.SIGINT)
    assert app.wait_exit() == 130
    assert b"replay finished" not in app.raw
    assert app.raw.rfind(ALT_OFF) > app.raw.rfind(ALT_ON) >= 0
    assert termios.tcgetattr(app.slave) == app.modes_before
