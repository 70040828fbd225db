"""Start-up of the ``wormwatch`` command: what it imports, and the collector around it.

Each case runs the console script's own function in a fresh interpreter (the test
process has long imported everything) and reports what it saw as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from testkit.paths import DEMO

# Runs ``wormwatch ARGS``; then reports the modules imported, the collector's state
# during the pipeline's run, and the exit code.
_PROBE = """
import gc, json, sys
seen = []
if sys.argv[1] == "watch":
    import wormwatch.pipeline as P
    _run = P.Pipeline.run
    def run(self, *args, **kwargs):
        seen.append(gc.isenabled())
        return _run(self, *args, **kwargs)
    P.Pipeline.run = run
from wormwatch.cli import console
sys.argv = ["wormwatch", *sys.argv[2:]]
try:
    code = console()
except SystemExit as stop:
    code = stop.code
print(json.dumps({"modules": sorted(sys.modules), "collecting": seen, "code": code}),
      file=sys.stderr)
"""

# heavy packages a replay of a pcap file without options never uses
_NOT_FOR_A_REPLAY = ("matplotlib", "nats", "prometheus_client", "scapy", "dpkt", "hypothesis")


def _probe(*args: str, watch: bool = True) -> dict[str, object]:
    """``watch``: note the collector's state as the pipeline starts (imports the pipeline
    before the command does)."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, "watch" if watch else "-", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "120"},
        check=False,
    )
    result: dict[str, object] = json.loads(done.stderr.strip().splitlines()[-1])
    return result


def _roots(modules: object) -> set[str]:
    assert isinstance(modules, list)
    return {name.split(".")[0] for name in modules}


def test_help_imports_neither_numpy_nor_numba() -> None:
    result = _probe("replay", "--help", watch=False)
    assert result["code"] == 0
    roots = _roots(result["modules"])
    assert "wormwatch" in roots
    assert not roots & {"numpy", "numba", "rich", "llvmlite"}


def test_a_replay_imports_only_what_it_uses_and_collects_garbage_while_it_runs() -> None:
    result = _probe("replay", str(DEMO), "--no-tui", "--summary", os.devnull)
    assert result["code"] == 0
    # the pipeline ran once, with the collector back on after start-up held it off
    assert result["collecting"] == [True]
    roots = _roots(result["modules"])
    assert "numba" in roots
    assert not roots & set(_NOT_FOR_A_REPLAY), roots & set(_NOT_FOR_A_REPLAY)
    # the event log's line kernels only with --events
    assert "wormwatch.kernels.eventlog" not in result["modules"]
