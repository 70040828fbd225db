"""End to end: ``wormwatch demo`` in a real pseudo-terminal.

The installed console script gets a pty as its terminal (stdin, stdout, stderr);
its output goes through pyte, a VT100 emulator, so the test reads the screen a
person would see (``testkit.terminal``). It waits for the top hosts, checks the
bundled capture's story (storm, mass mailer, scanner, bot) with their verdicts,
presses keys, quits with ``q`` and checks a clean exit: status 0, alternate screen
left, terminal modes back.
"""

from __future__ import annotations

import re
import signal
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testkit.paths import DEMO
from testkit.terminal import PtyApp

ALT_ON, ALT_OFF = b"\x1b[?1049h", b"\x1b[?1049l"
STORY = {
    "192.0.2.66": ("STORM",),
    "192.0.2.77": ("MX",),
    "192.0.2.88": ("SCAN",),
    "192.0.2.99": ("MX", "SCAN", "SYNC"),
}


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


def test_sigterm_ends_the_held_final_screen_as_q_does(
    app_factory: Callable[..., PtyApp],
) -> None:
    """The held screen is the run's wind-down: SIGTERM there ends it cleanly, summary
    written (it killed the process, exit -15)."""
    app = app_factory("demo", "--speed", "600")
    app.wait_for("the finished replay", lambda s: "replay finished" in s)
    app.proc.send_signal(signal.SIGTERM)
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


def test_the_harness_reads_all_a_child_wrote_before_it_exited() -> None:
    """A child that leaves more than one read's worth (64 KiB) in the pty when it exits,
    as the demo does when its last screens queue up on a loaded machine: all of it is
    read (a single read after the exit lost the tail, the restored terminal with it,
    which made the Ctrl-C test above fail now and then)."""
    app = PtyApp(argv=[sys.executable, "-c", "import os; os.write(1, b'x' * 90000 + b'END')"])
    try:
        time.sleep(1.0)  # not reading meanwhile: the pty's buffer fills, the child waits
        assert app.wait_exit() == 0
        assert app.raw.endswith(b"END"), len(app.raw)
    finally:
        app.close()


@pytest.mark.parametrize("end", ["q", "SIGTERM"])
def test_a_log_rotation_leaves_the_table_and_its_ending_as_they_were(
    app_factory: Callable[..., PtyApp], tmp_path: Path, end: str
) -> None:
    """SIGHUP with the table on (logrotate's postrotate) reopens the output files
    and nothing else: the table goes on, q and SIGTERM still end the run cleanly
    with its summary (SIGTERM killed it without one, q was not read)."""
    alerts, summary = tmp_path / "alerts.jsonl", tmp_path / "hosts.jsonl"
    app = app_factory(
        "replay", str(DEMO), "--speed", "1", "--alerts", str(alerts), "--summary", str(summary)
    )
    app.wait_for("the first hosts", lambda s: host_line(s, "192.0.2.66") != "")
    app.proc.send_signal(signal.SIGHUP)
    app.pump(1.0)
    if end == "q":
        app.send(b"q")
    else:
        app.proc.send_signal(signal.SIGTERM)
    check_clean_exit(app)
    records = summary.read_text()
    assert '"src_ip":"192.0.2.66"' in records
    assert records.splitlines()[-1].startswith('{"schema":1,"event_type":"network"')
