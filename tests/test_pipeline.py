"""The pipeline and CLI end to end on real files: determinism, outputs, errors."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from wormwatch.cli import main
from wormwatch.config import load_config
from wormwatch.kernels import aggregate as agg_kernels
from wormwatch.kernels import classify as cls_kernels
from wormwatch.kernels import decode as dec_kernels
from wormwatch.pipeline import Pipeline
from wormwatch.source.pcapfile import open_replay

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "pcaps" / "demo.pcap"
DEMO_CONFIG = REPO / "src" / "wormwatch" / "data" / "demo.toml"


def test_demo_story_is_found() -> None:
    result = Pipeline(load_config(str(DEMO_CONFIG)), source_name="demo").run(
        open_replay([str(DEMO)])
    )
    flagged = {v.state.addr: set(v.verdict.verdicts) for v in result.hosts if v.verdict.verdicts}
    assert flagged == {
        "192.0.2.66": {"keyword-storm"},
        "192.0.2.77": {"mx-client"},
        "192.0.2.88": {"smb-scan"},
        "192.0.2.99": {"mx-client", "smb-scan", "bot-sync"},
    }
    assert result.hosts[0].state.addr == "192.0.2.99"


def test_kernels_compile_one_signature_each_after_a_replay() -> None:
    Pipeline(load_config(None), source_name="demo").run(open_replay([str(DEMO)]))
    kernels = [
        dec_kernels.decode_packets,
        cls_kernels.match_keywords,
        agg_kernels.table_upsert,
        agg_kernels.hash_names,
        agg_kernels.pack_prefixes,
        agg_kernels.touch_hosts,
        agg_kernels.add_counters,
    ]
    for kernel in kernels:
        assert len(kernel.signatures) == 1, (kernel, kernel.signatures)


def test_replay_writes_summary_and_alerts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = tmp_path / "hosts.jsonl"
    alerts = tmp_path / "alerts.jsonl"
    code = main(
        [
            "replay", str(DEMO), "--no-tui", "--config", str(DEMO_CONFIG),
            "--summary", str(summary), "--alerts", str(alerts),
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "192.0.2.99" in out
    assert "mx-client, smb-scan, bot-sync" in out
    records = [json.loads(line) for line in summary.read_text().splitlines()]
    hosts = [r for r in records if r["event_type"] == "host"]
    assert records[-1]["event_type"] == "network"
    assert all(r["schema"] == 1 for r in records)
    assert len(hosts) == 25
    scanner = next(h for h in hosts if h["src_ip"] == "192.0.2.88")
    assert scanner["syn"] == {"135": 508, "139": 508, "445": 973}
    assert scanner["syn_targets"] == 508
    assert scanner["verdicts"] == ["smb-scan"]
    raised = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert {(a["src_ip"], tuple(a["verdicts"])) for a in raised} == {
        ("192.0.2.66", ("keyword-storm",)),
        ("192.0.2.77", ("mx-client",)),
        ("192.0.2.88", ("smb-scan",)),
        ("192.0.2.99", ("mx-client", "smb-scan")),
        ("192.0.2.99", ("mx-client", "smb-scan", "bot-sync")),
    }
    for alert in raised:
        assert alert["event_type"] == "alert"
        assert alert["schema"] == 1
        assert "+00:00" in alert["timestamp"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["replay", "/nonexistent/x.pcap"], "/nonexistent/x.pcap"),
        (["replay", str(DEMO), "--config", "/nonexistent.toml"], "/nonexistent.toml"),
        (["replay", str(DEMO), "--summary", "/nonexistent/dir/s.jsonl"], "does not exist"),
    ],
)
def test_errors_are_one_line(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wormwatch: error: ")
    assert needle in err
    assert "\n" not in err
    assert "Traceback" not in err


def test_not_a_pcap_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello, this is not a capture\n")
    assert main(["replay", str(bogus)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wormwatch: error: ")
    assert "\n" not in err


DEMO_PACKETS = 13_771


def test_sigint_ends_cleanly_with_summary(tmp_path: Path) -> None:
    """Ctrl-C during a paced replay: exit 130, summary and alerts written.

    The signal is sent once the first alert has reached standard output (the
    replay is then surely under way, ~4 s in at 60x), not after a fixed sleep.
    """
    summary = tmp_path / "hosts.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "wormwatch", "replay", str(DEMO), "--speed", "60",
            "--no-tui", "--alerts", "-", "--summary", str(summary),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert json.loads(first)["event_type"] == "alert", err
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    records = [json.loads(line) for line in summary.read_text().splitlines()]
    network = records[-1]
    assert network["event_type"] == "network"
    # stopped part way: fewer packets than the whole capture, more than none
    assert 0 < network["decode"]["packets"] < DEMO_PACKETS
    assert b"capture" in out


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


def test_every_command_is_documented_in_the_readme() -> None:
    import argparse

    from wormwatch.cli import build_parser

    readme = (REPO / "README.md").read_text()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"live", "replay", "demo", "report", "central", "view"}
    for command in sub.choices:
        assert f"wormwatch {command}" in readme, command
