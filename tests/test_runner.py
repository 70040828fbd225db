"""Assembling a run: signals from start-up to wind-down, summaries written in place or
atomically."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from wormwatch.cli import main

from testkit.paths import DEMO


def test_sigint_while_kernels_load_still_writes_the_summary(tmp_path: Path) -> None:
    """Ctrl-C before the first packet (numba compiling into an empty cache): exit
    130, a summary of nothing, the text summary, no traceback.

    Standard error is a terminal so that the CLI says when the kernels start
    loading; the signal follows that line, while the kernels compile (~15 s).
    """
    summary = tmp_path / "hosts.jsonl"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wormwatch", "replay", str(DEMO), "--no-tui",
         "--summary", str(summary)],
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")},
    )  # fmt: skip
    os.close(slave)
    seen = b""
    while b"loading packet kernels" not in seen:
        chunk = os.read(master, 1024)
        assert chunk, seen
        seen += chunk
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    err = seen + _drain(master)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    records = [json.loads(line) for line in summary.read_text().splitlines()]
    assert [r["event_type"] for r in records] == ["network"]
    assert records[0]["decode"]["packets"] == 0
    assert b"capture" in out


# The console script with one function of the run wrapped: it sends the process the
# signals named in argv[2] (comma-separated), then does its work. A signal that lands
# there was sent at a known step of the start-up or the wind-down, not after a sleep.
_SIGNALLED_AT = """
import importlib, os, signal, sys
where, names = sys.argv[1], sys.argv[2]
module_name, attr = where.rsplit(".", 1)
module = importlib.import_module(module_name)
original = getattr(module, attr)
def signalled(*args, **kwargs):
    for name in names.split(","):
        os.kill(os.getpid(), getattr(signal, name))
    return original(*args, **kwargs)
setattr(module, attr, signalled)
from wormwatch.cli import console
sys.argv = ["wormwatch", *sys.argv[3:]]
raise SystemExit(console())
"""
# hosts in the demo capture's summary (the default config)
DEMO_HOSTS = 25


@pytest.mark.parametrize(
    ("where", "names", "code", "is_whole"),
    [
        # before the outputs open (the runner and numba are imported by then)
        ("wormwatch.config.load_config", "SIGHUP,SIGTERM", 0, False),
        # while the kernels load: a stop breaks it off
        ("wormwatch.runner.warm_up", "SIGHUP,SIGTERM", 0, False),
        ("wormwatch.runner.warm_up", "SIGHUP", 0, True),
        # as the source opens: the loop counts nothing
        ("wormwatch.runner._open_source", "SIGTERM", 0, False),
        ("wormwatch.runner._open_source", "SIGINT", 130, False),
        # wind-down: SIGTERM (and SIGHUP) change nothing, the summary is whole
        ("wormwatch.runner._write_result", "SIGTERM,SIGHUP", 0, True),
    ],
)
def test_signals_in_start_up_and_wind_down_end_the_run_cleanly(
    tmp_path: Path, where: str, names: str, code: int, is_whole: bool
) -> None:
    """SIGHUP and SIGTERM killed a run outside its loop (exit -1 or -15, no summary;
    a service reloaded while it started died): now SIGHUP only asks for a reopen and
    a stop asked for during start-up ends the run as a stop in its loop does."""
    summary, alerts = tmp_path / "hosts.jsonl", tmp_path / "alerts.jsonl"
    args = [str(DEMO), "--no-tui", "--summary", str(summary), "--alerts", str(alerts)]
    done = subprocess.run(
        [sys.executable, "-c", _SIGNALLED_AT, where, names, "replay", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == code, done.stderr
    assert done.stderr == ""
    records = [json.loads(line) for line in summary.read_text().splitlines()]
    assert records[-1]["event_type"] == "network"
    # the whole capture's hosts, or none (a replay decodes ahead of its loop)
    assert len(records) == (DEMO_HOSTS + 1 if is_whole else 1)
    assert "capture" in done.stdout


@pytest.mark.parametrize(("name", "code"), [("SIGINT", 130), ("SIGTERM", 0)])
def test_stop_while_standard_input_is_silent_ends_the_run(
    tmp_path: Path, name: str, code: int
) -> None:
    """``replay -`` waits for its capture's first bytes as it opens (tcpdump -w - holds
    its header until its buffer fills). A stop there was noted and the wait went on
    until the writer closed the pipe: here, never. Now the stop breaks the wait off."""
    summary = tmp_path / "hosts.jsonl"
    where = "wormwatch.source.stdin._read_upto"
    args = ["replay", "-", "--no-tui", "--summary", str(summary)]
    # from a file: a stop is not raised in code run from a string (numba's, control.py)
    script = tmp_path / "signalled.py"
    script.write_text(_SIGNALLED_AT)
    with subprocess.Popen(
        [sys.executable, str(script), where, name, *args],
        stdin=subprocess.PIPE,  # held open and silent
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as proc:
        try:
            assert proc.wait(timeout=60) == code
        finally:
            proc.kill()
        assert proc.stderr is not None
        assert proc.stderr.read() == b""
    records = [json.loads(line) for line in summary.read_text().splitlines()]
    assert [r["event_type"] for r in records] == ["network"]


def test_report_stopped_while_standard_input_is_silent_writes_nothing(tmp_path: Path) -> None:
    """``report -`` waited on as ``replay -`` did (above): the stop breaks it off too."""
    script = tmp_path / "signalled.py"
    script.write_text(_SIGNALLED_AT)
    out_dir = tmp_path / "report"
    where = "wormwatch.source.stdin._read_upto"
    with subprocess.Popen(
        [sys.executable, str(script), where, "SIGINT", "report", "-", "-o", str(out_dir)],
        stdin=subprocess.PIPE,  # held open and silent
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as proc:
        try:
            assert proc.wait(timeout=60) == 130
        finally:
            proc.kill()
        assert proc.stderr is not None
        assert proc.stderr.read() == b"wormwatch: interrupted\n"
    assert not out_dir.exists()


@pytest.mark.parametrize(("names", "is_whole"), [("SIGINT", True), ("SIGINT,SIGINT", False)])
def test_ctrl_c_in_wind_down_keeps_the_summary_and_a_second_gets_out_at_once(
    tmp_path: Path, names: str, is_whole: bool
) -> None:
    """A first Ctrl-C after the loop (a replay that ended by itself, writing a large
    summary) is noted: the summary is whole, exit 130 (it raised there, and the run
    ended without its summary). A second one still gets out at once."""
    summary = tmp_path / "hosts.jsonl"
    args = ["replay", str(DEMO), "--no-tui", "--summary", str(summary)]
    where = "wormwatch.runner._write_result"
    done = subprocess.run(
        [sys.executable, "-c", _SIGNALLED_AT, where, names, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 130
    if is_whole:
        assert done.stderr == ""
        assert len(summary.read_text().splitlines()) == DEMO_HOSTS + 1
    else:
        assert done.stderr == "wormwatch: interrupted\n"
        assert not summary.exists()


def _drain(fd: int) -> bytes:
    """What is left to read on a pty master whose other side is closed."""
    out = b""
    try:
        while chunk := os.read(fd, 1024):
            out += chunk
    except OSError:  # EIO: the slave side is gone
        pass
    finally:
        os.close(fd)
    return out


def test_summary_to_a_fifo_is_written_in_place(tmp_path: Path) -> None:
    """A special file (a pipe, /dev/null) is written to, never replaced."""
    import stat
    import threading

    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    assert main(["replay", str(DEMO), "--no-tui", "--summary", str(fifo)]) == 0
    reader.join(timeout=30)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    lines = got[0].decode().splitlines()
    assert json.loads(lines[-1])["event_type"] == "network"


def test_a_capture_stopped_while_it_starts_spans_its_wall_time(tmp_path: Path) -> None:
    """`systemctl stop` while a first run compiles: the summary of nothing had a network
    record of 1970-01-01 (the source was taken for a file's), which a SIEM files there;
    a live record before anything is counted spans the run's wall time (README)."""
    summary = tmp_path / "hosts.jsonl"
    # no such interface: were the stop missed, the run would end in an error, capturing
    # nothing on this machine
    args = ["live", "-i", "ww-none0", "--no-tui", "--summary", str(summary)]
    before = time.time()
    done = subprocess.run(
        [sys.executable, "-c", _SIGNALLED_AT, "wormwatch.runner.warm_up", "SIGTERM", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    after = time.time()
    assert done.returncode == 0, done.stderr
    (network,) = [json.loads(line) for line in summary.read_text().splitlines()]
    assert network["event_type"] == "network"
    assert network["source"] == "ww-none0"
    for key in ("first_seen", "last_seen", "timestamp"):
        seen = datetime.fromisoformat(network[key]).timestamp()
        assert before - 1 <= seen <= after + 1, (key, network[key])
