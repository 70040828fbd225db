"""Outputs under stress, through the command line: a full disk, a closed pipe, a bad config.

``python -m wormwatch replay pcaps/demo.pcap`` (13,771 packets, ~8 KB of alerts) in a
subprocess, its outputs pointed at places that fail: ``/dev/full``, a pipe whose reader
has gone, a 4 KiB tmpfs (mounted in the test when run as root). What must hold: one
``wormwatch: error:`` line, a non-zero exit, no traceback, and no half-written JSON line
left behind. Config mistakes of every kind are rejected with the key named.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from wormwatch.cli import main

from testkit.paths import PCAPS

DEMO = PCAPS / "demo.pcap"
SMALL = PCAPS / "dns_names.pcap"
PIPE_PAGE = 4096  # the smallest pipe Linux makes (F_SETPIPE_SZ rounds up to a page)


def wormwatch(*args: str, stdout: object = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wormwatch", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_error_line(stderr: str, *phrases: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("wormwatch: error: "), stderr
    for phrase in phrases:
        assert phrase in lines[0], stderr


def assert_whole_lines(path: Path) -> list[dict[str, object]]:
    """Every line of a JSON lines file parses, and the file ends with a newline."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), f"{path} ends in a partial line: {raw[-80:]!r}"
    return [json.loads(line) for line in raw.decode("utf-8").splitlines()]


# --- full disk ------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_alerts_to_a_full_device_is_one_error_line(tmp_path: Path) -> None:
    summary = tmp_path / "summary.jsonl"
    result = wormwatch(
        "replay", str(DEMO), "--no-tui", "--alerts", "/dev/full", "--summary", str(summary)
    )
    assert result.returncode == 2
    assert_one_error_line(result.stderr, "/dev/full", "no space left on device")


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 KiB tmpfs (one page), mounted for the test and unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_alerts_on_a_disk_that_fills_up_fail_with_one_line(tiny_fs: Path, tmp_path: Path) -> None:
    alerts = tiny_fs / "alerts.jsonl"
    result = wormwatch(
        "replay", str(DEMO), "--no-tui", "--alerts", str(alerts), "--summary", "/dev/null"
    )
    assert result.returncode == 2
    assert_one_error_line(result.stderr, str(alerts), "no space left on device")
    assert alerts.stat().st_size > 0


def test_alerts_on_a_disk_that_fills_up_leave_no_half_line(tiny_fs: Path) -> None:
    alerts = tiny_fs / "alerts.jsonl"
    result = wormwatch(
        "replay", str(DEMO), "--no-tui", "--alerts", str(alerts), "--summary", "/dev/null"
    )
    assert result.returncode == 2
    records = assert_whole_lines(alerts)
    assert records
    assert all(r["event_type"] == "alert" for r in records)


# --- closed pipes -----------------------------------------------------------------------


def run_into_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """Run with standard output a pipe whose read end is already closed."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return wormwatch(*args, stdout=write_end)
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "outputs",
    [("--summary", "-"), ("--alerts", "-"), ("--alerts", "-", "--summary", "-")],
    ids=["summary", "alerts", "both"],
)
def test_json_lines_into_a_closed_pipe_is_one_error_line(outputs: tuple[str, ...]) -> None:
    result = run_into_closed_pipe("replay", str(DEMO), "--no-tui", *outputs)
    assert result.returncode == 2
    assert_one_error_line(result.stderr, "the reader closed the pipe")


def test_text_summary_into_a_closed_pipe_has_no_traceback() -> None:
    result = run_into_closed_pipe("replay", str(DEMO), "--no-tui")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) <= 1


def test_summary_piped_into_head_ends_cleanly() -> None:
    """``wormwatch replay demo.pcap --summary - | head -1``.

    The pipe holds one page (F_SETPIPE_SZ), far less than the ~18 KB summary, so
    ``head`` always exits while the sensor still has lines to write: the sensor meets
    the closed pipe every time and must end with one error line and exit 2.
    """
    with subprocess.Popen(
        [sys.executable, "-m", "wormwatch", "replay", str(DEMO), "--no-tui", "--summary", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as sensor:
        assert sensor.stdout is not None
        assert sensor.stderr is not None
        # set while the sensor is still starting: it writes only after the replay
        fcntl.fcntl(sensor.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_PAGE)
        head = subprocess.run(
            ["head", "-1"], stdin=sensor.stdout, capture_output=True, check=True, timeout=120
        )
        sensor.stdout.close()
        stderr = sensor.stderr.read().decode()
        code = sensor.wait(timeout=120)
    first = json.loads(head.stdout)
    assert first["event_type"] == "host"
    assert code == 2
    assert_one_error_line(stderr, "the reader closed the pipe")


# --- config mistakes --------------------------------------------------------------------

CONFIG_MISTAKES = {
    "unknown-section": ("[bogus]\nx = 1\n", '"bogus"'),
    "unknown-key": ("[aggregate]\nbin_secs = 60\n", '[aggregate] unknown key "bin_secs"'),
    "key-outside-section": ("bin_s = 60\n", "bin_s belongs in [aggregate]"),
    "wrong-type": ('[aggregate]\nbin_s = "sixty"\n', "[aggregate] bin_s"),
    "out-of-range": ("[detect.keyword_storm]\nmin_share = 1.5\n", "min_share"),
    "negative": ("[aggregate]\nmax_hosts = -5\n", "[aggregate] max_hosts"),
    "bad-cidr": ('[allowlist]\nresolvers = ["192.0.2.300/24"]\n', "[allowlist] resolvers"),
    "cidr-not-a-list": ('[allowlist]\nignore = "10.0.0.0/8"\n', "[allowlist] ignore"),
    "bands-descending": ("[score]\nbands = [90, 10]\n", "[score] bands"),
    "bad-keyword": ('[keywords]\nwords = ["MAIL!"]\n', "[keywords] words"),
    "bad-toml": ("[aggregate\nbin_s = 60\n", "not valid TOML"),
    "not-utf8": ("\udcff\udcfe[aggregate]\n", "not valid TOML"),
    "hostile-key": ('"\\u001b]0;pwned\\u0007" = 1\n', "unknown key"),
}


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wormwatch.toml"
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    return path


@pytest.mark.parametrize("case", CONFIG_MISTAKES)
def test_config_mistake_is_rejected_with_the_key_named(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, phrase = CONFIG_MISTAKES[case]
    config = write_config(tmp_path, text)
    code = main(["replay", str(SMALL), "--no-tui", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2
    assert_one_error_line(err, f"config {config}", phrase)
    # a hostile key or value is echoed escaped: no control character reaches the terminal
    assert not any(ord(c) < 0x20 for c in err.rstrip("\n"))


def test_config_with_every_mistake_is_rejected_by_the_process(tmp_path: Path) -> None:
    # one table per section (TOML allows no repeated table): mistakes of several kinds
    config = write_config(
        tmp_path,
        "[bogus]\nx = 1\n"
        '[aggregate]\nbin_secs = 60\nbin_s = "sixty"\nmax_hosts = -5\n'
        '[allowlist]\nresolvers = ["192.0.2.300/24"]\n',
    )
    result = wormwatch("replay", str(SMALL), "--no-tui", "--config", str(config))
    assert result.returncode == 2
    assert_one_error_line(result.stderr, f"config {config}")
    line = result.stderr.strip()
    assert any(key in line for key in ("bogus", "bin_secs", "bin_s", "max_hosts", "resolvers"))
