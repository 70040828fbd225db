"""One warm_up() compiles every kernel a command runs: a replay after it compiles nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wormwatch.warmup import step_names

REPO = Path(__file__).resolve().parents[1]
PCAPS = REPO / "pcaps"

# Run in a fresh interpreter: the test process has compiled kernels for other tests.
_PROBE = """
import importlib, json, pkgutil, sys
from numba.core.registry import CPUDispatcher
import wormwatch.kernels
from wormwatch.config import load_config
from wormwatch.pipeline import Pipeline
from wormwatch.source.pcapfile import open_replay
from wormwatch.warmup import warm_up

MODULES = [
    importlib.import_module(f"wormwatch.kernels.{info.name}")
    for info in pkgutil.iter_modules(wormwatch.kernels.__path__)
]

def signatures():
    return {
        f"{m.__name__}.{name}": len(obj.signatures)
        for m in MODULES
        for name, obj in vars(m).items()
        if isinstance(obj, CPUDispatcher) and obj.targetoptions.get("inline") != "always"
    }

steps = []
warm_up(sys.argv[1], on_step=lambda name, i, n: steps.append([name, i, n]))
after_warm_up = signatures()
Pipeline(load_config(None), source_name="probe").run(open_replay(sys.argv[2:], concatenate=True))
print(json.dumps({"steps": steps, "warm": after_warm_up, "run": signatures()}))
"""


def _probe(command: str, captures: list[Path]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, command, *map(str, captures)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


# what every replay runs: walkers, decode, reassembly, classify, aggregate
REPLAY_KERNELS = (
    "pcapwalk.walk_pcap", "pcapwalk.walk_pcapng", "decode.decode_packets",
    "dnstcp.tcp_dns", "reassemble.reassemble", "classify.match_keywords", "aggregate.table_upsert",
    "aggregate.flag_events", "aggregate.count_events",
    "aggregate.touch_hosts",
    "aggregate.count_answer_events", "aggregate.table_remap", "aggregate.pick_samples",
)  # fmt: skip


def test_replay_after_warm_up_compiles_nothing_and_every_kernel_has_one_signature() -> None:
    captures = [PCAPS / "demo.pcap", PCAPS / "multi_if.pcapng", PCAPS / "frag_dns_v4.pcap"]
    result = _probe("replay", captures)
    warm = result["warm"]
    assert isinstance(warm, dict)
    assert {name: warm[f"wormwatch.kernels.{name}"] for name in REPLAY_KERNELS} == dict.fromkeys(
        REPLAY_KERNELS, 1
    )
    assert max(warm.values()) == 1, warm
    assert result["run"] == warm


def test_warm_up_reports_each_step_then_the_end() -> None:
    result = _probe("live", [PCAPS / "demo.pcap"])
    names = step_names("live")
    assert "record walkers" not in names
    n = len(names)
    assert result["steps"] == [[name, i, n] for i, name in enumerate(names)] + [["", n, n]]
    warm = result["warm"]
    assert isinstance(warm, dict)
    walkers = {k: v for k, v in warm.items() if ".pcapwalk." in k}
    assert set(walkers.values()) == {0}
    others = {k.removeprefix("wormwatch.kernels."): v for k, v in warm.items() if k not in walkers}
    assert {k: v for k, v in others.items() if k in REPLAY_KERNELS} == {
        k: 1 for k in REPLAY_KERNELS if not k.startswith("pcapwalk.")
    }


def test_central_warms_the_delta_merge() -> None:
    result = _probe("central", [PCAPS / "frag_dns_v4.pcap"])
    assert "delta merge" in step_names("central")
    assert "record walkers" not in step_names("central")
    warm = result["warm"]
    assert isinstance(warm, dict)
    assert warm["wormwatch.kernels.aggregate.table_merge"] == 1


@pytest.mark.parametrize("command", ["replay", "demo", "report"])
def test_file_commands_warm_the_record_walkers(command: str) -> None:
    assert "record walkers" in step_names(command)


_FIRST_RUN = """
import json
from wormwatch.kernels.decode import decode_packets
from wormwatch.kernels.dnstcp import tcp_dns
from wormwatch.kernels.reassemble import reassemble
from wormwatch.warmup import warm_up

warm_up("live")
print(json.dumps({
    k.__name__: [sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values())]
    for k in (decode_packets, tcp_dns, reassemble)
}))
"""


def test_first_run_compiles_in_two_processes(tmp_path: Path) -> None:
    """With an empty cache, the second process compiles the flow and reassembly kernels
    and this one loads them (hits), while it compiles the decoder itself (a miss)."""
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_RUN],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
        env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")},
    )
    assert json.loads(done.stdout) == {
        "decode_packets": [0, 1],
        "tcp_dns": [1, 0],
        "reassemble": [1, 0],
    }
