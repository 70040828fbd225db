"""Worm and benign behaviours as packets, judged by the real pipeline.

A :class:`Case` is one host (one source address) with a behaviour: a worm
(keyword storm, mass mailer, SMB scanner, bursty bot, domain generator), possibly diluted by
its user's own traffic before and during the infection or hidden behind a
NAT of other users, or a benign profile that looks like one (heavy browsing,
NAT gateways, file-server clients, backup servers, admins running
``dig mx``, monitoring probes). Many cases share one capture (each host is
judged alone), written with struct-built frames (``hoststates.write_events``; the DNS
answers a host receives, for dga-nx, come from the resolver)
and replayed through :class:`wormwatch.pipeline.Pipeline`: the real decoder,
classifier, aggregate stage, detectors and alert tracker. :func:`judge`
returns, per case, the verdicts at the end and the packet time each signal
first appeared in an alert.

Used by the behaviour sweep (``python -m scripts.sweep``, the tables in
docs/DETECTION.md) and by its pinned subset in ``tests/scenarios``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from wormwatch.config import Config
from wormwatch.model import QTYPE_A, QTYPE_MX
from wormwatch.pipeline import Pipeline
from wormwatch.source.pcapfile import open_replay

from testkit.hoststates import RESOLVER, STORM_PREFIXES, Answer, Event, Host, at, write_events

MIN_US = 60_000_000
# The infection starts at midnight of the test day; history is the day before.
T0 = at(0)
DAY_US = 24 * 60 * MIN_US


@dataclass
class Case:
    """One host's behaviour, and what the detectors should say about it.

    ``signal`` is the signal a worm should raise (None: benign, nothing
    should fire); ``start_us`` is when the malicious behaviour began and
    ``cross_us`` when it crossed the signal's volume threshold (or, for
    bot-sync, ended its third burst): the targets are measured from them.
    """

    name: str
    addr: str
    signal: str | None
    params: dict[str, object] = field(default_factory=dict)
    start_us: int = T0
    cross_us: int | None = None
    events: list[Event] = field(default_factory=list)
    seed: int = 0
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def times(self, start_us: int, end_us: int, per_min: float) -> list[int]:
        """Poisson arrivals at ``per_min`` in ``[start_us, end_us)``, sorted."""
        n = int(self.rng.poisson(max(0.0, per_min) * (end_us - start_us) / MIN_US))
        ts: list[int] = np.sort(self.rng.integers(start_us, end_us, n)).tolist()
        return ts

    def queries(self, ts: Iterable[int], names: Iterable[str], qtype: int = QTYPE_A) -> None:
        self.events.extend(
            (t, self.addr, RESOLVER, qtype, n.encode(), 53) for t, n in zip(ts, names, strict=True)
        )

    def syns(self, ts: Iterable[int], dsts: Iterable[str], port: int = 445) -> None:
        self.events.extend((t, self.addr, d, 0, b"", port) for t, d in zip(ts, dsts, strict=True))

    def add_host(self, host: Host) -> None:
        """What a testkit Host sent and received (its queries, SYNs and DNS answers)."""
        self.events.extend((t, self.addr, dst, q, n, port) for t, dst, q, n, port in host.log)
        self.answers.extend((t, self.addr, n, q, rcode) for t, n, q, rcode in host.answer_log)


# --- what people and worms send -----------------------------------------------------


def browse(
    case: Case, start_us: int, end_us: int, per_min: float, *, webmail: float = 0.02
) -> None:
    """Ordinary names from a few hundred sites; ``webmail`` of them ``mail.google.com``."""
    ts = case.times(start_us, end_us, per_min)
    pick = case.rng.integers(0, 400, len(ts)).tolist()
    is_mail = (case.rng.random(len(ts)) < webmail).tolist()
    case.queries(
        ts,
        [
            "mail.google.com" if m else f"www.site{p}.example"
            for p, m in zip(pick, is_mail, strict=True)
        ],
    )


def storm(case: Case, start_us: int, end_us: int, per_min: float) -> list[int]:
    """Keyword A queries of mail-server names of many domains (Mytob-like)."""
    ts = case.times(start_us, end_us, per_min)
    pre = case.rng.integers(0, len(STORM_PREFIXES), len(ts)).tolist()
    dom = case.rng.integers(0, 5000, len(ts)).tolist()
    case.queries(ts, [f"{STORM_PREFIXES[p]}dom{d}.example" for p, d in zip(pre, dom, strict=True)])
    return ts


def mass_mail(case: Case, ts: list[int]) -> None:
    """MX queries of a new domain each (a mass mailer's harvested addresses)."""
    base = len(case.events)
    case.queries(ts, [f"victim{base + i}.example" for i in range(len(ts))], QTYPE_MX)


def scan(case: Case, ts: list[int], *, retransmit: bool = True) -> None:
    """SYNs to 445 of a new target each (one retransmission 3 s later)."""
    base = len(case.events)
    dsts = [
        f"10.{(base + i) // 65536 % 256}.{(base + i) // 256 % 256}.{(base + i) % 256}"
        for i in range(len(ts))
    ]
    case.syns(ts, dsts)
    if retransmit:
        case.syns([t + 3_000_000 for t in ts], dsts)


def file_shares(case: Case, start_us: int, end_us: int, per_min: float, n_servers: int = 4) -> None:
    """SYNs to the same few file servers and domain controllers all along."""
    ts = case.times(start_us, end_us, per_min)
    pick = case.rng.integers(0, n_servers, len(ts)).tolist()
    case.syns(ts, [f"198.51.100.{10 + p}" for p in pick])


def bursts(
    case: Case,
    start_us: int,
    end_us: int,
    *,
    period_s: float,
    burst_s: float,
    lag_s: float,
    jitter_s: float = 0.0,
    mx_per_min: float = 20.0,
    syn_per_min: float = 60.0,
) -> list[int]:
    """A bot's command loop: MX queries in bursts of ``burst_s`` every
    ``period_s``, its scan starting ``lag_s`` (± ``jitter_s``) after each
    MX burst. Returns when each burst (MX and SYN) ended."""
    ends = []
    t = start_us
    while t < end_us:
        b_us = int(burst_s * 1e6)
        mass_mail(case, case.times(t, t + b_us, mx_per_min))
        s0 = t + int((lag_s + case.rng.uniform(-jitter_s, jitter_s)) * 1e6)
        scan(
            case,
            case.times(max(s0, start_us), max(s0, start_us) + b_us, syn_per_min),
            retransmit=False,
        )
        ends.append(max(t, s0) + b_us)
        t += int(period_s * 1e6)
    return ends


def nth(ts: list[int], n: int) -> int | None:
    """The time of the ``n``-th event (1-based), or None."""
    return ts[n - 1] if len(ts) >= n else None


# --- judging ------------------------------------------------------------------------


class _Alerts:
    def __init__(self) -> None:
        self.records: list[dict[str, object]] = []

    def write(self, record: dict[str, object]) -> None:
        self.records.append(record)


@dataclass(frozen=True)
class Outcome:
    """What the pipeline said about one case: verdicts at the end, and the
    packet time each signal first appeared in one of its alerts."""

    verdicts: tuple[str, ...]
    first_us: dict[str, int]

    def delay_min(self, case: Case, signal: str, *, since: str = "start") -> float | None:
        """Minutes from the case's start (or threshold crossing) to the first alert."""
        t = self.first_us.get(signal)
        ref = case.start_us if since == "start" else case.cross_us
        return None if t is None or ref is None else (t - ref) / MIN_US


def _iso_us(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1e6)


def judge(
    cases: list[Case], cfg: Config | None = None, workdir: Path | None = None
) -> dict[str, Outcome]:
    """Replay all ``cases`` (distinct addresses) as one capture; per case name, the outcome."""
    by_addr = {c.addr: c for c in cases}
    if len(by_addr) != len(cases):
        raise ValueError("every case needs its own address")
    events = sorted(ev for c in cases for ev in c.events)
    answers = [a for c in cases for a in c.answers]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = write_events(Path(tmp) / "behaviours.pcap", events, answers)
        sink = _Alerts()
        pipe = Pipeline(cfg or Config(), source_name=str(path), alerts=sink, decode_ahead=False)
        result = pipe.run(open_replay([str(path)]))
    first: dict[str, dict[str, int]] = {c.addr: {} for c in cases}
    for rec in sink.records:
        if rec.get("event_type") != "alert":
            continue
        seen = first.setdefault(str(rec["src_ip"]), {})
        for v in rec.get("verdicts", []):  # type: ignore[attr-defined]
            seen.setdefault(str(v), _iso_us(str(rec["timestamp"])))
    final = {view.state.addr: view.verdict.verdicts for view in result.hosts}
    return {c.name: Outcome(tuple(final.get(c.addr, ())), first[c.addr]) for c in cases}
