"""Log rotation of JSON lines outputs: a reopen request moves the next line to a
new file; a reopen that fails keeps writing to the old file and says so once. A
summary path that cannot be written is said before the run.
(tests/scenarios/test_live_outputs.py runs the same through SIGHUP and the privilege drop.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wormwatch.control import ReopenRequests
from wormwatch.errors import WormwatchError
from wormwatch.outputs import Outputs
from wormwatch.present.sinks.jsonl import JsonLinesWriter


def _records(path: Path) -> list[int]:
    return [json.loads(line)["n"] for line in path.read_text().splitlines()]


def test_reopen_after_a_rename_writes_the_next_line_to_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    requests = ReopenRequests()
    writer = JsonLinesWriter(str(path), reopen=requests)
    for n in range(3):
        writer.write({"n": n})
    path.rename(tmp_path / "alerts.jsonl.1")
    writer.write({"n": 3})  # no request yet: still the renamed file
    requests.request()
    for n in range(4, 6):
        writer.write({"n": n})
    writer.close()
    assert _records(tmp_path / "alerts.jsonl.1") == [0, 1, 2, 3]
    assert _records(path) == [4, 5]


def test_a_reopen_that_fails_keeps_the_old_file_and_says_so_once(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    warnings: list[str] = []
    requests = ReopenRequests()
    writer = JsonLinesWriter(str(logs / "events.jsonl"), reopen=requests, warn=warnings.append)
    writer.write({"n": 0})
    logs.rename(tmp_path / "moved")  # the path's folder is gone: no new file can be made
    requests.request()
    writer.write({"n": 1})
    writer.write({"n": 2})
    writer.close()
    assert _records(tmp_path / "moved" / "events.jsonl") == [0, 1, 2]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"cannot reopen {logs / 'events.jsonl'} after SIGHUP (")
    assert warnings[0].endswith("still writing to the file it had open")


def _outputs(tmp_path: Path, summary: str) -> Outputs:
    return Outputs(
        alerts=str(tmp_path / "a.jsonl"),
        events=None,
        summary=summary,
        summary_every_s=None,
        user=None,
        is_live=False,
        reopen=ReopenRequests(),
    )


@pytest.mark.parametrize("kind", ["directory", "socket", "tmp directory"])
def test_a_summary_that_cannot_be_written_is_said_before_the_run(tmp_path: Path, kind: str) -> None:
    """A directory (or a socket) is refused when the outputs open, not after the run;
    a pipe and /dev/null are written in place (tests/test_runner.py)."""
    import socket

    path = tmp_path / "hosts.jsonl"
    if kind == "directory":
        path.mkdir()
    elif kind == "tmp directory":
        (tmp_path / "hosts.jsonl.tmp").mkdir()
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    with pytest.raises(WormwatchError) as err:
        _outputs(tmp_path, str(path))
    assert str(err.value).startswith(f"cannot write summary {path}: ")
    assert ("directory" if "directory" in kind else "not a regular file") in str(err.value)
    # refused before any other output was opened
    assert not (tmp_path / "a.jsonl").exists()
    outputs = _outputs(tmp_path, os.devnull)
    outputs.close()


def test_a_periodic_summary_that_cannot_be_renamed_is_said_once_and_tried_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rewrite that fails mid-run (here the summary's path became a folder) is
    one warning, not the end of the capture; the next rewrite tries again."""
    path = tmp_path / "hosts.jsonl"
    outputs = Outputs(
        alerts=None,
        events=None,
        summary=str(path),
        summary_every_s=60.0,
        user=None,
        is_live=False,
        reopen=ReopenRequests(),
    )
    summary = outputs.summary
    assert summary is not None
    path.mkdir()
    for _ in range(3):
        with summary.failures_said_once():
            writer = summary.open_for_rewrite()
            writer.write({"n": 0})
            summary.commit(writer)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"wormwatch: warning: cannot write summary {path}: renaming the new")
    path.rmdir()
    with summary.failures_said_once():
        writer = summary.open_for_rewrite()
        writer.write({"n": 1})
        summary.commit(writer)
    assert _records(path) == [1]
    outputs.close()


@pytest.mark.parametrize("option", ["alerts", "events"])
def test_a_stream_in_the_summarys_file_is_refused_before_the_run(
    tmp_path: Path, option: str
) -> None:
    """The summary is renamed over its file at the end: alerts or events written to the
    same file would vanish with a clean exit, so the run does not start."""
    paths = {"alerts": None, "events": None, option: str(tmp_path / "out.jsonl")}
    with pytest.raises(
        WormwatchError, match=f"--summary and --{option} name one file .* name two files"
    ):
        Outputs(
            **paths,
            summary=str(tmp_path / "." / "out.jsonl"),
            summary_every_s=None,
            user=None,
            is_live=False,
            reopen=ReopenRequests(),
        )
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="root opens the outputs for the user it drops to")
def test_root_does_not_follow_a_link_the_dropped_user_made(tmp_path: Path) -> None:
    """The user the sensor drops to may own the log folder (install -d -o wormwatch,
    LogsDirectory=): a link it leaves there must not make root's next start append
    alerts to a file of root's choosing (here a 0600 file standing for /etc/...)."""
    user = (65534, 65534)
    victim = tmp_path / "victim"
    victim.write_bytes(b"root only\n")
    victim.chmod(0o600)
    link = tmp_path / "alerts.jsonl"
    link.symlink_to(victim)
    os.lchown(link, *user)
    with pytest.raises(WormwatchError, match="symbolic link of uid 65534"):
        JsonLinesWriter(str(link), owner=user)
    assert victim.read_bytes() == b"root only\n"
    # a link root made is the operator's choice, and is followed
    os.lchown(link, 0, 0)
    with JsonLinesWriter(str(link), owner=user) as writer:
        writer.write({"n": 1})
    assert victim.read_bytes() == b'root only\n{"n":1}\n'
