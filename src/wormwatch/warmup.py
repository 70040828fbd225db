"""Start-up: compile (or load from numba's cache) every kernel a command runs.

Called once, before the source is opened: the first batch of a live capture is then
not spent compiling, and a replay's timing is the steady state from its first packet.
Each step warms one stage's kernels on a tiny input of the exact array types the
pipeline passes, so no kernel compiles a second signature later (tests/test_warmup.py
replays a capture after ``warm_up`` and checks that nothing new was compiled).

On the very first run numba compiles and caches the kernels (seconds per step); later
runs load them from the cache (a fraction of a second). The first step is small and
tells which case this is: when it had to compile, a second process compiles the
DNS-over-TCP flow and reassembly kernels into the same cache while this one compiles
the walkers, the decoder and the aggregate, and this one then loads them: the two cores
share the first run. ``on_step`` lets the caller show progress.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence

import numpy as np

from wormwatch import collector
from wormwatch.aggregate import Aggregator
from wormwatch.classify import Classifier
from wormwatch.decode import warm_up as warm_decode
from wormwatch.dganame import warm_up as warm_names
from wormwatch.dnstcp import TcpFlows
from wormwatch.kernels.classify import match_keywords
from wormwatch.kernels.decode import (
    N_SEG_COLUMNS,
    T_SENT,
    T_SEQ,
    T_SPORT,
    T_START,
    T_STOP,
    T_VERSION,
)
from wormwatch.model import KIND_ANSWER, RCODE_NXDOMAIN, Events
from wormwatch.reassemble import warm_up as warm_reassembly
from wormwatch.tables import MIN_CAPACITY, KeyTable

# (step name, steps done, steps in all), called before each step and once at the end
StepFn = Callable[[str, int, int], None]

_FILE_COMMANDS = ("replay", "demo", "report")
_CLASSIFY = "keyword matcher"
_WALKERS = "record walkers"
_DECODER = "decoder"
_TCP = "DNS-over-TCP flows"
_REASSEMBLY = "reassembly"
_AGGREGATE = "aggregate"
_DELTAS = "delta merge"
# compiled by the second process on a first run (about as long as the rest)
_IN_CHILD = (_TCP, _REASSEMBLY)


def step_names(command: str) -> list[str]:
    """The warm-up steps ``command`` runs, in order (what a progress display lists)."""
    walk = [_WALKERS] if command in _FILE_COMMANDS else []
    merge = [_DELTAS] if command == "central" else []
    return [_CLASSIFY, *walk, _DECODER, _AGGREGATE, *merge, _TCP, _REASSEMBLY]


def _warm_walkers() -> None:
    from wormwatch.source.pcapfile import warm_up as warm_walkers  # noqa: PLC0415

    warm_walkers()


def _warm_tcp_flows() -> None:
    """The DNS-over-TCP flow kernel alone, on one segment row of a query over TCP, with
    the array types the decoder passes."""
    segment = bytes.fromhex(
        "4500003d00000000400600000a0000010a000002"  # IPv4, 61 bytes, TCP
        "d432003500000001000000005018000000000000"  # to 53, seq 1
        "00130001010000010000000000000161" "0000010001"  # length 19, a query for "a"
    )  # fmt: skip
    data = np.frombuffer(segment, np.uint8)
    ts_us = np.zeros(1, np.int64)
    ts_us.flags.writeable = False
    segs = np.zeros((1, N_SEG_COLUMNS), np.int64)
    segs[0, T_VERSION] = 4
    segs[0, T_START] = 40
    segs[0, T_STOP] = segs[0, T_SENT] = len(segment)
    segs[0, T_SEQ] = 1
    segs[0, T_SPORT] = 0xD432
    TcpFlows().feed(data, ts_us, segs, np.zeros(1, np.uint8))


def _warm_aggregate(events: Events) -> None:
    keyword_idx = Classifier().classify(events)
    agg = Aggregator(max_hosts=16, max_host_bins=16, max_keys=64)
    agg.ingest(events, keyword_idx)
    # the same events as NXDOMAIN answers: the answers' counters (dga-nx)
    answers = events.owned()
    answers.kind[:] = KIND_ANSWER
    answers.rcode[:] = RCODE_NXDOMAIN
    agg.ingest(answers, keyword_idx)
    # the name score of NXDOMAIN answers (dga-nx), run by the aggregate on answers
    warm_names()
    # a table that grows (a long run, an eviction) rehashes with the remap kernel
    KeyTable(MIN_CAPACITY).reserve(MIN_CAPACITY)


def _warm_deltas(events: Events) -> None:
    """The delta merge of ``central``: export the warm-up events and merge them."""
    from wormwatch.aggregate.export import DeltaExporter  # noqa: PLC0415
    from wormwatch.aggregate.merge import DeltaMerger  # noqa: PLC0415
    from wormwatch.delta import decode, encode  # noqa: PLC0415

    exporter = DeltaExporter(sensor="warm-up", max_hosts=16)
    exporter.ingest(events, Classifier().classify(events))
    merger = DeltaMerger(Aggregator(max_hosts=16, max_host_bins=16, max_keys=64))
    for delta in exporter.close_all():
        merger.apply(decode(encode(delta)))


def _run_step(name: str, events: Events) -> Events:
    """Runs one step; -> the events to warm the later steps with."""
    if name == _CLASSIFY:
        Classifier().classify(events)
    elif name == _WALKERS:
        _warm_walkers()
    elif name == _DECODER:
        return warm_decode(fragments=False, tcp=False)
    elif name == _TCP:
        _warm_tcp_flows()
    elif name == _REASSEMBLY:
        warm_reassembly()
    elif name == _AGGREGATE:
        _warm_aggregate(events)
    else:
        _warm_deltas(events)
    return events


def compile_steps(names: Sequence[str]) -> None:
    """Runs warm-up steps in order (what the second process of a first run does)."""
    events = Events.allocate(1, n=1)
    for name in names:
        events = _run_step(name, events)


def _has_compiled() -> bool:
    """Whether the first step compiled its kernel instead of loading it (a first run)."""
    stats = getattr(match_keywords, "stats", None)
    return stats is not None and sum(stats.cache_misses.values()) > 0


def _start_child(names: Sequence[str]) -> subprocess.Popen[bytes]:
    # its own session: a Ctrl-C at the terminal reaches only this process, which
    # then ends the child (see warm_up); it writes nothing
    return subprocess.Popen(
        [sys.executable, "-c", "import sys, wormwatch.warmup as w; w.compile_steps(sys.argv[1:])",
         *names],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip


def warm_up(
    command: str = "replay", *, on_step: StepFn | None = None, parallel: bool = True
) -> None:
    """Compile or load every kernel ``command`` (live, replay, demo, report) needs.

    Args:
        command: the CLI command; only file commands need the record walkers.
        on_step: told each step's name before it runs, and ``("", n, n)`` at the end.
        parallel: on a first run, compile part of the kernels in a second process.
    """
    names = step_names(command)
    events = Events.allocate(1, n=1)
    child: subprocess.Popen[bytes] | None = None
    try:
        for i, name in enumerate(names):
            if on_step is not None:
                on_step(name, i, len(names))
            if child is not None and name in _IN_CHILD:
                # compiled over there meanwhile: now a cache load here (or, had the
                # child failed, a compile here)
                child.wait()
            events = _run_step(name, events)
            if name == _CLASSIFY and parallel and _has_compiled():
                child = _start_child([n for n in names if n in _IN_CHILD])
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        # the kernels are ready: start-up is over (a no-op unless the console held it)
        collector.release()
    if on_step is not None:
        on_step("", len(names), len(names))
