"""Start-up: compile (or load from numba's cache) every kernel a command runs.

Called once, before the source is opened: the first batch of a live capture is then
not spent compiling, and a replay's timing is the steady state from its first packet.
Each step warms one stage's kernels on a tiny input of the exact array types the
pipeline passes, so no kernel compiles a second signature later (tests/test_warmup.py
replays a capture after ``warm_up`` and checks that nothing new was compiled).

On the very first run numba compiles and caches the kernels (seconds per step); later
runs load them from the cache. ``on_step`` lets the caller show progress.
"""

from __future__ import annotations

from collections.abc import Callable

from wormwatch.aggregate import Aggregator
from wormwatch.classify import Classifier
from wormwatch.decode import warm_up as warm_decode
from wormwatch.model import Events
from wormwatch.tables import MIN_CAPACITY, KeyTable

# (step name, steps done, steps in all), called before each step and once at the end
StepFn = Callable[[str, int, int], None]

_FILE_COMMANDS = ("replay", "demo", "report")


def _warm_walkers() -> None:
    from wormwatch.source.pcapfile import warm_up as warm_walkers  # noqa: PLC0415

    warm_walkers()


def _warm_stages(events: Events) -> None:
    """classify and aggregate, on the events the decoder's warm-up produced."""
    keyword_idx = Classifier().classify(events)
    Aggregator(max_hosts=16, max_host_bins=16, max_keys=64).ingest(events, keyword_idx)
    # a table that grows (a long run, an eviction) rehashes with the remap kernel
    KeyTable(MIN_CAPACITY).reserve(MIN_CAPACITY)


def _warm_deltas(events: Events) -> None:
    """The delta merge of ``central``: export the warm-up events and merge them."""
    from wormwatch.delta import decode, encode  # noqa: PLC0415
    from wormwatch.export import DeltaExporter  # noqa: PLC0415
    from wormwatch.merge import DeltaMerger  # noqa: PLC0415

    exporter = DeltaExporter(sensor="warm-up", max_hosts=16)
    exporter.ingest(events, Classifier().classify(events))
    merger = DeltaMerger(Aggregator(max_hosts=16, max_host_bins=16, max_keys=64))
    for delta in exporter.close_all():
        merger.apply(decode(encode(delta)))


_WALKERS = "record walkers"
_DECODER = "decoder and reassembly"
_STAGES = "classify and aggregate"
_DELTAS = "delta merge"


def step_names(command: str) -> list[str]:
    """The warm-up steps ``command`` runs, in order (what a progress display lists)."""
    walk = [_WALKERS] if command in _FILE_COMMANDS else []
    merge = [_DELTAS] if command == "central" else []
    return [*walk, _DECODER, _STAGES, *merge]


def warm_up(command: str = "replay", *, on_step: StepFn | None = None) -> None:
    """Compile or load every kernel ``command`` (live, replay, demo, report) needs.

    Args:
        command: the CLI command; only file commands need the record walkers.
        on_step: told each step's name before it runs, and ``("", n, n)`` at the end.
    """
    names = step_names(command)
    events = Events.allocate(0)
    for i, name in enumerate(names):
        if on_step is not None:
            on_step(name, i, len(names))
        if name == _WALKERS:
            _warm_walkers()
        elif name == _DECODER:
            events = warm_decode()
        elif name == _STAGES:
            _warm_stages(events)
        else:
            _warm_deltas(events)
    if on_step is not None:
        on_step("", len(names), len(names))
