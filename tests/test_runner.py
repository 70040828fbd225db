"""Assembling a run: Ctrl-C before the first packet, summaries written in place or atomically."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

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
