"""A capture file cut by its writer while a replay has it mapped (tcpdump restarted, or
rotating with -G, onto the same name): the replay ends that file with a warning.

Touching a mapped page past a file's new end raises SIGBUS, which killed the whole replay
(exit 135, no summary); so every case runs in a child process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.pcap import pcap_file

N_RECORDS = 3000
RECORD_BYTES = 200  # 16-byte header + 184 bytes of frame
CUT_AT = 100_000  # whole records before it: (CUT_AT - 24) // RECORD_BYTES
KEPT = (CUT_AT - 24) // RECORD_BYTES

SCRIPT = f"""
import json, sys
from wormwatch.source.pacing import Paced
from wormwatch.source.pcapfile import open_replay
mode, cut, *paths = sys.argv[1:]
source = open_replay(paths)
ticks = iter(range(10**9))
if mode == "paced":
    source = Paced(source, 1.0, clock=lambda: next(ticks) / 20, sleep=lambda s: None)
n = 0
touched = 0
size = 10 if mode != "paced" else 4000
while (batch := source.read_batch(size)) is not None:
    if n and cut != "done":
        with open(cut, "r+b") as file:
            file.truncate({CUT_AT})
        cut = "done"
    for i in range(batch.n):
        start = int(batch.offsets[i])
        touched += int(batch.data[start : start + int(batch.caplens[i])].sum())
    n += batch.n
print(json.dumps({{"packets": n, "warnings": source.stats().warnings}}))
"""


def _capture(path: Path) -> Path:
    frame = bytes(range(184))
    rows = [(1_000 + i // 1000, (i % 1000) * 1000, len(frame), frame) for i in range(N_RECORDS)]
    path.write_bytes(pcap_file(rows))
    assert path.stat().st_size == 24 + N_RECORDS * RECORD_BYTES
    return path


def _run(mode: str, cut: Path, *paths: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, str(cut), *map(str, paths)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr.decode()[-500:]}"
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("is_merged", [False, True], ids=["alone", "merged"])
def test_file_cut_during_the_replay_ends_with_a_warning(tmp_path: Path, is_merged: bool) -> None:
    cut = _capture(tmp_path / "cut.pcap")
    others = [_capture(tmp_path / "whole.pcap")] if is_merged else []
    result = _run("plain", cut, cut, *others)
    assert result["packets"] == KEPT + len(others) * N_RECORDS
    warnings = [str(w) for w in result["warnings"]]  # type: ignore[attr-defined]
    assert any(
        w.startswith(f"file {cut}: cut to {CUT_AT} bytes during the replay") for w in warnings
    ), warnings


def test_paced_batch_survives_its_file_being_cut(tmp_path: Path) -> None:
    # the paced batch was read whole before the cut: its packets are all still there
    cut = _capture(tmp_path / "cut.pcap")
    assert _run("paced", cut, cut)["packets"] == N_RECORDS
