"""One warm_up() compiles every kernel a command runs: a replay after it compiles nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wormwatch.warmup import step_names

REPO = Path(__file__).resolve().parents[1]
PCAPS = REPO / "pcaps"

# Run in a fresh interpreter: the test process has compiled kernels for other tests.
# (every script below starts with the kernels' modules)
_MODULES = """
import importlib, json, pkgutil, sys
from numba.core.registry import CPUDispatcher
import wormwatch.kernels

MODULES = [
    importlib.import_module(f"wormwatch.kernels.{info.name}")
    for info in pkgutil.iter_modules(wormwatch.kernels.__path__)
]
"""

_PROBE = (
    _MODULES
    + """
from wormwatch.config import load_config
from wormwatch.pipeline import Pipeline
from wormwatch.source.pcapfile import open_replay
from wormwatch.warmup import warm_up

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
)


def _json_of(code: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """What ``code``, run in a fresh interpreter with ``args``, prints as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
        env=env,
    )
    return json.loads(done.stdout)


def _probe(command: str, captures: list[Path]) -> dict[str, object]:
    result: dict[str, object] = _json_of(_PROBE, command, *map(str, captures))
    return result


def _probe_with_a_warm_cache(command: str, captures: list[Path]) -> dict[str, object]:
    """:func:`_probe`, on a numba cache that holds every kernel. A kernel missing
    from the cache (a fresh checkout, or a kernel's source edited since it was
    cached) makes the probe a first run, whose warm-up leaves the aggregate's
    kernels to a second process and loads them at their first use; by the end of
    that run every kernel it ran is in the cache, so the probe runs once more."""
    result = _probe(command, captures)
    warm = result["warm"]
    assert isinstance(warm, dict)
    if warm["wormwatch.kernels.counting.count_events"] == 0:
        result = _probe(command, captures)
    return result


# what every replay runs: walkers, decode, reassembly, classify, aggregate
REPLAY_KERNELS = (
    "pcapwalk.walk_pcap", "pcapwalk.walk_pcapng", "decode.decode_packets",
    "dnstcp.tcp_dns", "reassemble.reassemble", "classify.match_keywords", "aggregate.table_upsert",
    "counting.flag_events", "counting.count_events", "counting.touch_hosts",
    "counting.count_answer_events", "aggregate.table_remap", "counting.pick_samples",
    "dganame.score_names", "dganame.build_suffix_table",
)  # fmt: skip
# left to their first use by the file commands
DEFERRED = (
    "pcapwalk.walk_pcapng", "dnstcp.tcp_dns", "reassemble.reassemble", "dganame.score_names",
    "dganame.build_suffix_table",
)  # fmt: skip
# pcapng, fragments, DNS over TCP: every deferred kernel runs
CAPTURES = [
    PCAPS / "demo.pcap", PCAPS / "multi_if.pcapng", PCAPS / "frag_dns_v4.pcap",
    PCAPS / "dns_tcp.pcap",
]  # fmt: skip


def test_replay_loads_the_deferred_kernels_at_first_use_and_every_kernel_has_one_signature() -> (
    None
):
    result = _probe_with_a_warm_cache("replay", CAPTURES)
    warm, run = result["warm"], result["run"]
    assert isinstance(warm, dict)
    assert isinstance(run, dict)
    assert {name: warm[f"wormwatch.kernels.{name}"] for name in REPLAY_KERNELS} == {
        name: 0 if name in DEFERRED else 1 for name in REPLAY_KERNELS
    }
    assert max(warm.values()) == 1, warm
    # the replay loaded the deferred ones and nothing else, each with one signature
    assert {name: run[f"wormwatch.kernels.{name}"] for name in REPLAY_KERNELS} == dict.fromkeys(
        REPLAY_KERNELS, 1
    )
    # (the helpers a kernel calls, _named, get a signature only when it compiles)
    new = {k: v for k, v in run.items() if v != warm[k] and not k.split(".")[-1].startswith("_")}
    assert {k.removeprefix("wormwatch.kernels.") for k in new} == set(DEFERRED), new


def test_live_warms_every_kernel_it_runs_and_reports_each_step_then_the_end() -> None:
    result = _probe("live", CAPTURES)
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
    # past the walkers (files only), packets of every kind compiled nothing new
    run = result["run"]
    assert isinstance(run, dict)
    assert {k: v for k, v in run.items() if k not in walkers} == {
        k: v for k, v in warm.items() if k not in walkers
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
import json, sys
from wormwatch.kernels.aggregate import table_upsert
from wormwatch.kernels.decode import decode_packets
from wormwatch.kernels.dnstcp import tcp_dns
from wormwatch.kernels.reassemble import reassemble
from wormwatch.warmup import compile_steps, warm_up

def counts():
    return {
        k.__name__: [sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values())]
        for k in (decode_packets, table_upsert, tcp_dns, reassemble)
    }

warm_up(sys.argv[1])
after_warm_up = counts()
# what a packet over TCP does first in a replay, then its first aggregation
compile_steps(["DNS-over-TCP flows", "aggregate"])
print(json.dumps({"warm": after_warm_up, "first use": counts()}))
"""


def _first_run(command: str, cache: Path) -> dict[str, dict[str, list[int]]]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    result: dict[str, dict[str, list[int]]] = _json_of(_FIRST_RUN, command, env=env)
    return result


def test_live_first_run_compiles_in_two_processes(tmp_path: Path) -> None:
    """With an empty cache, the second process compiles the aggregate (its first step)
    and this one loads it (a hit), while it compiles the decoder and the reassembly
    itself (misses). The flow kernel, the second process's last step, compiles once in
    whichever process gets to it first."""
    result = _first_run("live", tmp_path / "numba")
    warm = result["warm"]
    assert {name: warm[name] for name in ("decode_packets", "table_upsert", "reassemble")} == {
        "decode_packets": [0, 1],
        "table_upsert": [1, 0],
        "reassemble": [0, 1],
    }
    assert sorted(warm["tcp_dns"]) == [0, 1]
    assert result["first use"] == warm


def test_replay_first_run_compiles_a_deferred_kernel_here_when_the_other_has_not_begun_it(
    tmp_path: Path,
) -> None:
    """A replay's first run compiles the aggregate over there and the decoder here; the
    flow kernel is neither compiled nor loaded before its first use. Then it compiles
    once, in whichever process claims it first: usually this one (a miss), the second
    process being busy with the name score, its next step; on a loaded machine the
    second process may get there first (then a hit here). Which process claims a step
    is tested without the race in tests/test_firstrun.py.

    The aggregate is not waited for before the first packet either (the first batch is
    read and decoded meanwhile): it is loaded at its first use, compiled over there
    (the second process claims it right after the walker, ~1.5 s before this one is
    through the decoder)."""
    result = _first_run("replay", tmp_path / "numba")
    assert result["warm"] == {
        "decode_packets": [0, 1],
        "table_upsert": [0, 0],
        "tcp_dns": [0, 0],
        "reassemble": [0, 0],
    }
    first_use = result["first use"]
    assert sorted(first_use["tcp_dns"]) == [0, 1]
    assert first_use["table_upsert"] == [1, 0]


_LIGHT = """
import json, os, pickle, sys
import numba
import numpy as np
from numba.core.runtime.nrt import rtsys
from wormwatch.warmup import warm_up
from wormwatch.kernels.cacheload import is_cached
from wormwatch.kernels.decode import decode_packets

kept = os.path.join(decode_packets._cache._cache_path, f"nrt-{numba.__version__}.nbo")
if sys.argv[1] == "spoil":
    with open(kept, "wb") as f:
        f.write(b"not a pickle")
warm_up("replay")
# neither numba's registries nor the modules of the helpers compiled into the kernels
light = "numba.np.linalg" not in sys.modules and "numba.np.arrayobj" not in sys.modules

@numba.njit
def twice(x):
    # allocates and frees: the NRT (as loaded, or compiled) serves a new compile too
    a = np.zeros(3, np.int64)
    a[1] = 2 * x
    return a[1]

def is_kept():
    with open(kept, "rb") as f:
        return len(pickle.load(f)) == 2

print(json.dumps({
    "light": light, "cached": is_cached(decode_packets), "compiled": int(twice(21)),
    "nrt kept": is_kept(), "nrt": rtsys.library.get_pointer_to_function("NRT_incref") > 0,
}))
"""


def _light(how: str) -> dict[str, object]:
    result: dict[str, object] = _json_of(_LIGHT, how)
    return result


def test_a_warm_start_loads_without_numbas_whole_set_up_and_can_still_compile() -> None:
    subprocess.run([sys.executable, "-c", "from wormwatch.warmup import warm_up; warm_up()"],
                   check=True, timeout=900)  # fmt: skip
    # the cache loads skipped numba's registries of every feature (linear algebra ...)
    # and importing the modules of the helpers inside the kernels (array allocation ...),
    # and the NRT's machine code came from the cache; a compile afterwards sets up the rest
    # itself, and links against that NRT; a spoiled copy of the NRT compiles it again
    # and is replaced
    expected = {"light": True, "cached": True, "compiled": 42, "nrt kept": True, "nrt": True}
    assert _light("keep") == expected
    assert _light("spoil") == expected
    assert _light("keep") == expected


def test_is_cached_tells_a_first_run(tmp_path: Path) -> None:
    probe = "from wormwatch.kernels.cacheload import is_cached\n"
    probe += "from wormwatch.kernels.classify import match_keywords as k\nprint(is_cached(k))"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
        env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)},
    )
    assert done.stdout.strip() == "False"


def test_a_kernels_cache_stamp_covers_every_kernel_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel compiles in helpers from the other kernel files (layers, DNS message,
    probing): an edit to any of them must make every kernel's cache entry stale."""
    from numba.core import caching

    from wormwatch.kernels import cacheload

    kernels = tmp_path / "kernels"
    kernels.mkdir()
    for name in ("decode.py", "layers.py"):
        (kernels / name).write_text("x = 1\n")
    (tmp_path / "other.py").write_text("y = 1\n")
    monkeypatch.setattr(cacheload, "_KERNELS", str(kernels))
    cacheload._kernels_stamp.cache_clear()
    locator = caching._SourceFileBackedLocatorMixin()

    def stamp(path: Path) -> object:
        locator._py_file = str(path)  # type: ignore[attr-defined]
        cacheload._kernels_stamp.cache_clear()
        return locator.get_source_stamp()

    before, other = stamp(kernels / "decode.py"), stamp(tmp_path / "other.py")
    os.utime(kernels / "layers.py", ns=(1, 1))
    assert stamp(kernels / "decode.py") != before
    assert stamp(tmp_path / "other.py") == other
    cacheload._kernels_stamp.cache_clear()


_STEP_KERNELS = (
    _MODULES
    + """
from wormwatch.warmup import _FIRST_USE_KERNELS, compile_steps

def kernels():
    return {
        f"{m.__name__}:{name}"
        for m in MODULES
        for name, obj in vars(m).items()
        if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == m.__name__
        and not name.startswith("_") and obj.signatures
    }

compile_steps(["keyword matcher"])  # the aggregate's warm-up classifies its events first
before = kernels()
compile_steps(["aggregate"])
print(json.dumps({
    "made": sorted(kernels() - before),
    "listed": sorted(f"{m}:{k}" for m, k in _FIRST_USE_KERNELS["aggregate"]),
}))
"""
)


def test_a_step_waited_for_at_first_use_lists_every_kernel_it_makes() -> None:
    """A first run waits for the aggregate at the first call of any of its kernels: so
    every kernel its warm-up step loads (or compiles) must be listed, or that one would
    compile a second time here."""
    result = _json_of(_STEP_KERNELS)
    assert result["made"] == result["listed"]
