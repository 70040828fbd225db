"""Start-up: compile (or load from numba's cache) the kernels a command runs.

Called once, before the source is opened, so that the first batch is not spent
compiling. Each step warms one stage's kernels on a tiny input of the exact array types
the pipeline passes, so no kernel compiles a second signature later
(tests/test_warmup.py replays captures after ``warm_up`` and checks just that).

Live capture and ``central`` warm every kernel they may run: a first use later must
not stall a capture. The file commands warm what every file needs and leave the
NXDOMAIN name score, the pcapng walker, the DNS-over-TCP flows and the reassembly to
their first use: a cache load then costs a few milliseconds, in the batch that needs it.

A first run (numba's cache has no decoder for this source yet) compiles for seconds per
step: then a second process compiles into the same cache while this one compiles its
own steps, and each step compiles once, in whichever process claims it first
(:mod:`wormwatch.firstrun`): the two cores share the first run. For the file commands the
second process goes on to the deferred kernels after the run has started; a first use
of one of them waits for it if it has started that one, and compiles it here if not.
The aggregate's kernels, compiled over there, are waited for at their first use too
(``Plan.late``): meanwhile the first batch is read and decoded here, and asks for the
deferred kernel it needs while the other process is still on the aggregate.
``on_step`` lets the caller show
progress.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wormwatch import collector
from wormwatch.aggregate import Aggregator
from wormwatch.classify import Classifier, score_nx_answers
from wormwatch.decode import warm_up as warm_decode
from wormwatch.dganame import Scored
from wormwatch.dganame import warm_up as warm_names
from wormwatch.firstrun import Claims, SecondProcess, compile_claimed
from wormwatch.kernels.cacheload import is_cached
from wormwatch.kernels.classify import match_keywords
from wormwatch.model import (
    KIND_ANSWER,
    KIND_DNS,
    KIND_SYN,
    QTYPE_A,
    QTYPE_MX,
    RCODE_NXDOMAIN,
    Events,
    addr_words,
)
from wormwatch.tables import MIN_CAPACITY, KeyTable

# (step name, steps done, steps in all), called before each step and once at the end
StepFn = Callable[[str, int, int], None]

_CLASSIFY = "keyword matcher"
_WALKERS = "record walkers"
_DECODER = "decoder"
_TCP = "DNS-over-TCP flows"
_REASSEMBLY = "reassembly"
_AGGREGATE = "aggregate"
_GROWTH = "table growth"
_NAMES = "name score"
_DELTAS = "delta merge"
_PCAPNG = "pcapng walker"


@dataclass(frozen=True, slots=True)
class Plan:
    """A command's steps. ``here`` then ``there`` then ``after`` run before the first
    packet, in that order; on a first run a second process takes ``there`` (then
    ``deferred``) in order while this one compiles ``here``, and each step compiles in
    the process that claims it first. ``deferred`` load at first use."""

    here: tuple[str, ...]
    there: tuple[str, ...]
    after: tuple[str, ...] = ()
    deferred: tuple[str, ...] = ()
    # steps of ``there`` that a first run waits for at their first use, not before the
    # first packet (the file's first batch is read and decoded meanwhile)
    late: tuple[str, ...] = ()

    @property
    def up_front(self) -> list[str]:
        return [*self.here, *self.there, *self.after]


# Here the decoder and the tables' rehash (~3 s of compiling), there the walker (classic
# pcap) and the aggregate's kernels (~3.7 s, but that process starts ~0.3 s later and this
# one waits for them only after its own); the second process then goes on
# with the name score (most captures have answers) and the DNS-over-TCP flows, and this
# one takes whichever of those its first batch needs and that one has not started.
# Live capture adds the flows to the one side and reassembly to the other.
_FILES = Plan(
    here=(_CLASSIFY, _DECODER, _GROWTH),
    there=(_WALKERS, _AGGREGATE),
    deferred=(_NAMES, _TCP, _REASSEMBLY, _PCAPNG),
    late=(_AGGREGATE,),
)
_LIVE = Plan(here=(_CLASSIFY, _DECODER, _REASSEMBLY), there=(_AGGREGATE, _NAMES, _GROWTH, _TCP))
# the delta merge runs the aggregate's kernels too: after those are loaded
_CENTRAL = Plan(here=_LIVE.here, there=_LIVE.there, after=(_DELTAS,))


def plan(command: str) -> Plan:
    """The warm-up of ``command`` (live, replay, demo, report, central)."""
    if command in ("replay", "demo", "report"):
        return _FILES
    return _CENTRAL if command == "central" else _LIVE


def step_names(command: str) -> list[str]:
    """The steps ``command`` runs before its first packet, in order (what a progress
    display lists)."""
    return plan(command).up_front


def _warm_walkers(*, pcap: bool = True, pcapng: bool = False) -> None:
    from wormwatch.source.pcapfile import warm_up as warm_walkers  # noqa: PLC0415

    warm_walkers(pcap=pcap, pcapng=pcapng)


def _warm_tcp_flows() -> None:
    """The DNS-over-TCP flow kernel alone, on one segment row of a query over TCP, with
    the array types the decoder passes."""
    from wormwatch.dnstcp import TcpFlows  # noqa: PLC0415
    from wormwatch.kernels.decode import (  # noqa: PLC0415
        N_SEG_COLUMNS,
        T_SENT,
        T_SEQ,
        T_SPORT,
        T_START,
        T_STOP,
        T_VERSION,
    )

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


def _warm_reassembly() -> None:
    from wormwatch.reassemble import warm_up as warm_reassembly  # noqa: PLC0415

    warm_reassembly()


def warm_events() -> Events:
    """One event of each kind from one client: a keyword query, an MX query, a SYN to
    445 and an NXDOMAIN answer, so that warming the aggregate runs each of its paths."""
    rows = (
        (KIND_DNS, QTYPE_A, 53, 0, b"mail.example.com"),
        (KIND_DNS, QTYPE_MX, 53, 0, b"example.com"),
        (KIND_SYN, 0, 445, 0, b""),
        (KIND_ANSWER, QTYPE_A, 0, RCODE_NXDOMAIN, b"qzxkvwj.example.com"),
    )
    events = Events.allocate(len(rows), n=len(rows))
    client = addr_words("192.0.2.1")
    server = addr_words("192.0.2.53")
    for i, (kind, qtype, dport, rcode, name) in enumerate(rows):
        src, dst = (server, client) if kind == KIND_ANSWER else (client, server)
        events.ts_us[i] = 1_000_000 * (i + 1)
        events.src_hi[i], events.src_lo[i] = src
        events.dst_hi[i], events.dst_lo[i] = dst
        events.kind[i], events.qtype[i], events.dport[i], events.rcode[i] = (
            kind, qtype, dport, rcode,
        )  # fmt: skip
        events.names[i, : len(name)] = np.frombuffer(name, np.uint8)
        events.name_lens[i] = len(name)
    return events


def _warm_aggregate() -> None:
    events = warm_events()
    # as the pipeline does, with the answers' name scores beside the keyword matches;
    # scored 0 here: the name score is a step of its own
    Aggregator(max_hosts=16, max_host_bins=16, max_keys=64).ingest(
        events, Classifier().classify(events), Scored.zeros(events.n)
    )


def _warm_names() -> None:
    # the NXDOMAIN answers' name scores, as the pipeline computes them
    score_nx_answers(warm_events())
    # as text too (evidence, reports)
    warm_names()


def _warm_growth() -> None:
    # a table that grows (a long run, an eviction) rehashes with the remap kernel
    KeyTable(MIN_CAPACITY).reserve(MIN_CAPACITY)


def _warm_deltas() -> None:
    """The delta merge of ``central``: export the warm-up events and merge them."""
    from wormwatch.aggregate.export import DeltaExporter  # noqa: PLC0415
    from wormwatch.aggregate.merge import DeltaMerger  # noqa: PLC0415
    from wormwatch.delta import decode, encode  # noqa: PLC0415

    events = warm_events()
    exporter = DeltaExporter(sensor="warm-up", max_hosts=16)
    exporter.ingest(events, Classifier().classify(events))
    merger = DeltaMerger(Aggregator(max_hosts=16, max_host_bins=16, max_keys=64))
    for delta in exporter.close_all():
        merger.apply(decode(encode(delta)))


_STEPS: dict[str, Callable[[], Any]] = {
    _CLASSIFY: lambda: Classifier().classify(warm_events()),
    _WALKERS: _warm_walkers,
    _PCAPNG: lambda: _warm_walkers(pcap=False, pcapng=True),
    _DECODER: lambda: warm_decode(fragments=False, tcp=False),
    _TCP: _warm_tcp_flows,
    _REASSEMBLY: _warm_reassembly,
    _AGGREGATE: _warm_aggregate,
    _NAMES: _warm_names,
    _GROWTH: _warm_growth,
    _DELTAS: _warm_deltas,
}


def compile_steps(names: Sequence[str]) -> None:
    """Runs warm-up steps in order."""
    for name in names:
        _STEPS[name]()


# the kernels each step waited for at first use makes: (module, name)
_FIRST_USE_KERNELS = {
    _NAMES: (("wormwatch.kernels.dganame", "score_names"),),
    _TCP: (("wormwatch.kernels.dnstcp", "tcp_dns"),),
    _REASSEMBLY: (("wormwatch.kernels.reassemble", "reassemble"),),
    _PCAPNG: (("wormwatch.kernels.pcapwalk", "walk_pcapng"),),
    _AGGREGATE: (
        ("wormwatch.kernels.aggregate", "table_upsert"),
        ("wormwatch.kernels.counting", "touch_hosts"),
        ("wormwatch.kernels.counting", "flag_events"),
        ("wormwatch.kernels.counting", "count_events"),
        ("wormwatch.kernels.counting", "pick_samples"),
        ("wormwatch.kernels.counting", "count_answer_events"),
    ),
}


def _has_compiled() -> bool:
    """Whether the first step compiled its kernel instead of loading it (a first run)."""
    stats = getattr(match_keywords, "stats", None)
    return stats is not None and sum(stats.cache_misses.values()) > 0


def _is_first_run() -> bool | None:
    """Whether the decoder (the longest compile) is missing from numba's cache, known
    before anything compiles; None when only loading can tell."""
    from wormwatch.kernels.decode import decode_packets  # noqa: PLC0415

    cached = is_cached(decode_packets)
    return None if cached is None else not cached


def warm_up(
    command: str = "replay", *, on_step: StepFn | None = None, parallel: bool = True
) -> None:
    """Compile or load the kernels ``command`` (live, replay, demo, report, central)
    runs before its first packet (:func:`plan`).

    Args:
        command: the CLI command.
        on_step: told each step's name before it runs, and ``("", n, n)`` at the end.
        parallel: on a first run, compile part of the kernels in a second process.
    """
    steps = plan(command)
    names = steps.up_front
    second: SecondProcess | None = None
    is_first = _is_first_run()
    try:
        for i, name in enumerate(names):
            if is_first or (is_first is None and i == 1 and _has_compiled()):
                is_first = False
                # a first run: compiling makes garbage worth collecting
                collector.release()
                if parallel:
                    second = SecondProcess([*steps.there, *steps.deferred])
            if on_step is not None:
                on_step(name, i, len(names))
            if second is not None and name in steps.there:
                if name == steps.there[0]:
                    # what the other has not begun compiles here before any waiting
                    second.take_unclaimed(steps.there, _STEPS)
                if name in steps.late:
                    second.at_first_use(name, _FIRST_USE_KERNELS[name], _STEPS[name])
                else:
                    # compiled over there meanwhile: a cache load here
                    second.run_step(name, _STEPS[name])
            else:
                _STEPS[name]()
        if second is not None:
            for name in steps.deferred:
                second.at_first_use(name, _FIRST_USE_KERNELS[name], _STEPS[name])
    except BaseException:
        if second is not None:
            second.stop()
        raise
    finally:
        # the kernels are ready: start-up is over (a no-op unless the console held it)
        collector.release()
    if on_step is not None:
        on_step("", len(names), len(names))


if __name__ == "__main__":
    # the second process of a first run: python -m wormwatch.warmup CLAIMS STEP...
    compile_claimed(Claims(sys.argv[1]), sys.argv[2:], _STEPS)
