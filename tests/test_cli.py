"""The command line end to end: outputs, one-line errors, Ctrl-C, every command documented."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import wormwatch
from wormwatch.cli import _use_tui, build_parser, main

from testkit.paths import DEMO, DEMO_CONFIG, REPO


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
    # the network record spans the capture: its first and last event of any host
    network = records[-1]
    assert network["first_seen"] == min(h["first_seen"] for h in hosts)
    assert network["last_seen"] == max(h["last_seen"] for h in hosts) == network["timestamp"]
    assert network["first_seen"] < network["last_seen"]
    assert network["hosts_flagged"] == {
        "keyword-storm": 1, "mx-client": 2, "smb-scan": 2, "bot-sync": 1,
    }  # fmt: skip
    # the text summary counts each kind the run counted: queries, SYNs and answers
    decode = records[-1]["decode"]
    assert decode["dns_answers"] > 0
    for label, key in (("DNS queries", "dns_queries"), ("DNS answers", "dns_answers")):
        assert re.search(rf"{label} +{decode[key]:,}\n", out), label
    scanner = next(h for h in hosts if h["src_ip"] == "192.0.2.88")
    assert scanner["syn"] == {"135": 508, "139": 508, "445": 973}
    # the text summary's hosts table shows the same, in its column's order 135/139/445
    assert re.search(r"192\.0\.2\.88 .* 508/508/973 ", out)
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


@pytest.mark.parametrize("speed", ["inf", "nan", "1e999", "0"])
def test_a_speed_that_is_not_a_positive_finite_number_is_one_line(
    speed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # --speed inf and nan were taken, and the replay stopped with a traceback
    with pytest.raises(SystemExit) as exc:
        main(["replay", str(DEMO), "--no-tui", "--speed", speed])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"--speed must be a positive finite number (or 'max'), got '{speed}'" in err
    assert "Traceback" not in err


def test_a_summary_that_is_a_directory_is_one_line_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Said when the outputs open: nothing replayed, no alert file, no text summary
    (it was "Is a directory" after the whole replay; on live, after days)."""
    summary, alerts = tmp_path / "hosts", tmp_path / "alerts.jsonl"
    summary.mkdir()
    args = ["replay", str(DEMO), "--no-tui", "--summary", str(summary), "--alerts", str(alerts)]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert (
        err == f"wormwatch: error: cannot write summary {summary}: it is a directory; name a file\n"
    )
    assert out == ""
    assert not alerts.exists()


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
    # standard output is the alerts' JSON stream alone; the text summary is on stderr
    assert all(json.loads(line)["event_type"] == "alert" for line in out.splitlines())
    assert b"capture" in err


def test_the_text_summary_shows_a_file_name_as_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a capture whose name holds rich markup and an escape sequence: the summary's
    # source line shows them as visible text, not as bold type or a cleared screen
    path = tmp_path / "[bold]x\x1b[2J.pcap"
    path.write_bytes(DEMO.read_bytes())
    assert main(["replay", str(path), "--no-tui"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\\x5bbold\\x5dx\\x1b\\x5b2J.pcap" in out


def test_every_command_is_documented_in_the_readme() -> None:
    import argparse

    from wormwatch.cli import build_parser

    readme = (REPO / "README.md").read_text()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"live", "replay", "demo", "report", "central", "view"}
    for command in sub.choices:
        assert f"wormwatch {command}" in readme, command


def test_the_console_script_starts_numpy_without_blas_threads() -> None:
    """numpy's OpenBLAS would start a spinning thread per core at import; the console
    script asks for none (the process keeps its one thread), unless the user set it."""
    code = (
        "import os, sys\n"
        "from wormwatch import cli\n"
        "def main():\n"
        "    import numpy\n"
        "    print(len(os.listdir('/proc/self/task')), os.environ['OPENBLAS_NUM_THREADS'])\n"
        "    return 0\n"
        "cli.main = main\n"
        "sys.exit(cli.console())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    got = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert got.stdout.split() == ["1", "1"]
    env["OPENBLAS_NUM_THREADS"] = "2"
    got = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert got.stdout.split()[1] == "2"


@pytest.mark.parametrize(
    "args",
    [
        ["replay", str(DEMO), "--speed", "nan"],
        ["replay", str(DEMO), "--speed", "inf"],
        ["live", "-i", "eth9", "--duration", "nan"],
        ["live", "-i", "eth9", "--summary-every", "inf"],
        ["central", "--duration", "nan"],
        ["view", "--watch", "nan"],
    ],
)
def test_numbers_that_are_not_finite_are_usage_errors(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--speed nan and inf were tracebacks from the pacing; a --duration of nan
    passed the `<= 0` test and never ended the run."""
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "must be a positive" in err or "expected a positive number" in err
    assert "Traceback" not in err


def test_an_output_that_would_destroy_another_or_an_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--alerts x --summary x lost every alert (the summary was renamed over them),
    and --summary CAPTURE replaced the capture replayed."""
    shared = tmp_path / "out.jsonl"
    assert (
        main(["replay", str(DEMO), "--no-tui", "--alerts", str(shared), "--summary", str(shared)])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err == (
        f"wormwatch: error: --summary and --alerts name one file ({shared}): the summary "
        "would replace what --alerts wrote; name two files"
    )
    assert not shared.exists()
    capture = tmp_path / "capture.pcap"
    capture.write_bytes(DEMO.read_bytes())
    assert main(["replay", str(capture), "--no-tui", "--summary", str(capture)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"wormwatch: error: --summary {capture} is also an input; name another file"
    )
    assert capture.read_bytes() == DEMO.read_bytes()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["replay", str(DEMO), "--sensor", "s0"], "--sensor names this sensor in the cluster"),
        (["live", "-i", "eth9", "--summary-every", "60"], "--summary-every rewrites the --summary"),
        (["live", "-i", "eth9", "--summary", "-", "--summary-every", "60"], "it needs --summary F"),
    ],
)
def test_an_option_that_would_do_nothing_is_a_usage_error(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--sensor without --publish and --summary-every without a summary file were
    ignored without a word: the operator believed the sensor published, or rewrote."""
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert needle in capsys.readouterr().err


def test_help_states_what_the_options_do_and_their_defaults() -> None:
    """--events' help said 'one JSON line per DNS query and SYN' while DNS answers are
    logged too; the capture options' help gave no defaults (docs/LIVE.md does)."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("live", "replay"):
        events = commands.choices[name]._option_string_actions["--events"]
        assert "DNS query, DNS answer and SYN" in str(events.help)
    for name, option in [
        ("live", "--snaplen"), ("live", "--buffer-mb"), ("live", "--workers"), ("demo", "--speed")
    ]:  # fmt: skip
        action = commands.choices[name]._option_string_actions[option]
        assert str(action.help).endswith(f"(default {action.default:g})"), (name, option)


@pytest.mark.parametrize(
    "args",
    [
        ["replay", str(DEMO), "--summary", ""],
        ["replay", str(DEMO), "--alerts", ""],
        ["replay", str(DEMO), "--events", ""],
        ["replay", str(DEMO), "--publish", ""],
        ["report", str(DEMO), "-o", ""],
        ["central", "--nats", ""],
    ],
)
def test_an_empty_path_or_url_is_a_usage_error(
    args: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An empty --summary, --alerts or --events (an unset shell variable) turned the
    output off and the run exited 0; -o "" wrote the report into the current directory."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([*args, "--no-tui"] if args[0] != "report" else args)
    assert info.value.code == 2
    assert "needs a value, got an empty string" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stream", ["alerts", "summary", "events"])
def test_a_json_stream_on_a_terminal_turns_the_table_off(
    stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: with '-', standard output carries JSON lines only. On a terminal the
    live table was drawn too: its alternate-screen and cursor codes went around the
    alert records (replay demo.pcap --alerts - under `script`)."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("TERM", "xterm")
    args = build_parser().parse_args(["replay", str(DEMO), f"--{stream}", "-"])
    assert not _use_tui(args)
    assert _use_tui(build_parser().parse_args(["replay", str(DEMO)]))


def test_a_terminal_that_cannot_show_a_character_gets_no_traceback(tmp_path: Path) -> None:
    """A Latin-1 terminal and a capture named in CJK: the text summary (which
    names the capture) ended in a UnicodeEncodeError traceback, exit 1."""
    capture = tmp_path / "中é.pcap"
    capture.write_bytes(DEMO.read_bytes())
    got = subprocess.run(
        [sys.executable, "-m", "wormwatch", "replay", str(capture), "--no-tui"],
        check=False,
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "latin-1"},
        timeout=300,
    )
    assert got.returncode == 0, got.stderr
    assert b"Traceback" not in got.stderr
    # the summary is there, the character it could not show is a '?'
    assert "?é.pcap".encode("latin-1") in got.stdout
    assert b"192.0.2.99" in got.stdout


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_text_summary_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    """``replay F > /dev/full`` (a full disk under standard output): the text
    summary ended in an OSError traceback, exit 1. Now one line, exit 2, and the
    summary file written before it is whole."""
    summary = tmp_path / "summary.jsonl"
    with open("/dev/full", "w") as full:
        got = subprocess.run(
            [sys.executable, "-m", "wormwatch", "replay", str(DEMO), "--no-tui",
             "--summary", str(summary)],
            check=False, stdout=full, stderr=subprocess.PIPE, timeout=300,
        )  # fmt: skip
    assert got.returncode == 2, got.stderr
    assert got.stderr.decode().splitlines() == [
        "wormwatch: error: cannot write the text summary to standard output: "
        "No space left on device"
    ]
    assert summary.read_text().splitlines()[-1].startswith('{"schema":1,"event_type":"network"')


def _read_only_copy_of_the_package(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(
        Path(wormwatch.__file__).parent,
        src / "wormwatch",
        ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"),
    )
    home = tmp_path / "home"
    home.mkdir()
    for path in [src, home, *src.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    return src


def test_nowhere_to_keep_the_kernels_is_one_line(tmp_path: Path) -> None:
    """An install the user cannot write and no writable home (a system account running
    a root-owned venv, docs/LIVE.md "With capabilities"): numba's RuntimeError came out
    as a traceback at the first kernel import."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        # root writes anywhere; without its capabilities it obeys the modes as a user does
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv to run without root's capabilities")
        prefix = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
    src = _read_only_copy_of_the_package(tmp_path)
    unset = ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(src))
    try:
        got = subprocess.run(
            [*prefix, sys.executable, "-m", "wormwatch", "replay", str(DEMO), "--no-tui"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        for path in [tmp_path, *tmp_path.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    assert "Traceback" not in got.stderr
    assert got.stderr.startswith("wormwatch: error: numba has nowhere to keep the compiled")
    assert "NUMBA_CACHE_DIR" in got.stderr
    assert got.stderr.count("\n") == 1
    assert got.returncode == 2
