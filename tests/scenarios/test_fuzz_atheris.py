"""A short coverage-guided fuzz run of the decode stage as part of the suite.

Runs ``scripts/fuzz/decode.py --runs N --seed 1`` (atheris, kernels as plain Python for
coverage) in a subprocess, on single frames and on streams of frames with fragment
reassembly (``--streams``): it must end with no crash (an exception or an output out of
bounds, which libFuzzer saves as ``crash-*``) and no new disagreement with the dpkt
reference (``findings 0``; the corpus's known status-precedence finding is counted
apart). The long run is the same script with ``--seconds``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.paths import child_env

pytest.importorskip("atheris", reason="atheris (PyPI wheel) is not installed")

RUNS = 2000


@pytest.mark.parametrize("mode", [[], ["--streams"]], ids=["frames", "streams"])
def test_short_atheris_run_finds_no_crash_and_no_new_disagreement(
    mode: list[str], tmp_path: Path
) -> None:
    args = [*mode, "--runs", str(RUNS), "--seed", "1", "--workdir", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "-m", "scripts.fuzz.decode", *args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    done = re.search(r"DONE inputs (\d+)  inputs/s \d+  findings (\d+)  known (\d+)", output)
    assert done, output[-3000:]
    assert int(done.group(1)) == RUNS
    findings = tmp_path / "findings.jsonl"
    assert int(done.group(2)) == 0, findings.read_text() if findings.exists() else output
    assert result.returncode == 0, output[-3000:]
    assert not list(tmp_path.glob("crash-*"))
    # the coverage instrumentation saw the kernels' branches
    cov = re.search(r"INITED cov: (\d+)", output)
    assert cov, output[-3000:]
    assert int(cov.group(1)) > 100
