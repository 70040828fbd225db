"""The judge: which hosts it evaluates, what it keeps across evictions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from wormwatch import judge as judge_mod
from wormwatch.aggregate import Aggregator
from wormwatch.classify import Classifier
from wormwatch.config import load_config
from wormwatch.detect import evaluate
from wormwatch.judge import Judge
from wormwatch.model import KIND_DNS, KIND_SYN, HostState, Verdict, addr_words

from testkit.events import Row, make_events

MIN_US = 60_000_000


def _syns(t_us: int, src: str, n_targets: int, first: int = 0) -> list[Row]:
    return [
        (t_us + i, src, f"198.51.100.{first + i}", KIND_SYN, 445, 0, b"") for i in range(n_targets)
    ]


def _ingest(agg: Aggregator, judge: Judge, rows: list[Row]) -> None:
    ev = make_events(rows)
    renumbering = agg.ingest(ev, Classifier().classify(ev))
    if renumbering is not None:
        judge.renumber(renumbering)


@pytest.fixture
def looked_at(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Addresses the judge evaluates, in order (every host passes the pre-filter)."""
    seen: list[str] = []

    def fake_evaluate(state: HostState, cfg: object, *, now_us: int, **_: object) -> Verdict:
        seen.append(state.addr)
        return Verdict()

    monkeypatch.setattr(judge_mod, "evaluate", fake_evaluate)
    monkeypatch.setattr(
        judge_mod, "could_fire", lambda totals, cfg: np.ones((len(totals), 1), np.bool_)
    )
    return seen


def test_late_events_are_judged_once_at_the_next_evaluation(looked_at: list[str]) -> None:
    judge = Judge(load_config(None))
    agg = Aggregator(protect=judge.protected)
    _ingest(agg, judge, _syns(10 * MIN_US, "192.0.2.1", 3) + _syns(10 * MIN_US, "192.0.2.2", 3))
    assert judge.judge(agg) == []
    assert sorted(looked_at) == ["192.0.2.1", "192.0.2.2"]
    looked_at.clear()
    # three batches of evidence from five minutes in the past, for one host
    for k in range(3):
        _ingest(agg, judge, _syns(5 * MIN_US, "192.0.2.2", 2, first=10 * k))
    assert agg.now_us < 11 * MIN_US
    judge.judge(agg)
    assert looked_at == ["192.0.2.2"]
    looked_at.clear()
    judge.judge(agg)
    assert looked_at == []


def test_a_display_rescore_does_not_hide_hosts_from_the_next_judgement(
    looked_at: list[str],
) -> None:
    judge = Judge(load_config(None))
    agg = Aggregator(protect=judge.protected)
    _ingest(agg, judge, _syns(10 * MIN_US, "192.0.2.1", 3))
    judge.rescore(agg)
    judge.rescore(agg)
    judge.judge(agg)
    assert looked_at == ["192.0.2.1", "192.0.2.1"]


def test_a_flagged_host_keeps_its_verdict_and_alert_across_evictions() -> None:
    cfg = dataclasses.replace(load_config(None), max_hosts=8)
    judge = Judge(cfg)
    agg = Aggregator(max_hosts=8, protect=judge.protected)
    scanner = "192.0.2.66"
    _ingest(agg, judge, _syns(MIN_US, scanner, cfg.smb_scan.min_targets + 20))
    alerts = judge.judge(agg)
    assert [(a["src_ip"], a["verdicts"]) for a in alerts] == [(scanner, ["smb-scan"])]
    # noise from 40 one-packet sources turns the 8-slot table over several times
    for k in range(5):
        noise = [(2 * MIN_US + k, f"203.0.113.{8 * k + j}", "198.51.100.1", KIND_SYN, 445, 0, b"")
                 for j in range(8)]  # fmt: skip
        _ingest(agg, judge, noise)
    assert agg.counts().hosts_evicted > 0
    # the scanner's verdict followed its new id: no second "new" alert
    assert judge.judge(agg) == []
    views = {v.state.addr: v.verdict.verdicts for v in judge.host_views(agg)}
    assert views[scanner] == ("smb-scan",)
    assert judge.tracker.n_tracked == 1


def test_only_hosts_the_keyword_storm_could_fire_on_get_their_name_prefixes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Prefixes serve the keyword storm alone: a mass mailer (names, but no keyword
    A queries) is judged without them, and the storm host's verdict is that of a
    full read-out."""
    cfg = load_config(None)
    judge = Judge(cfg)
    agg = Aggregator(protect=judge.protected)
    storm, mailer = "192.0.2.10", "192.0.2.25"
    rows = [(MIN_US + i * 3_000_000, storm, "198.51.100.53", KIND_DNS, 53, 1,
             f"{('mail', 'smtp', 'relay')[i % 3]}{i}.example.com".encode())
            for i in range(300)]  # fmt: skip
    rows += [(MIN_US + i * 1_000_000, mailer, "198.51.100.53", KIND_DNS, 53, 15,
              f"example{i}.net".encode())
             for i in range(40)]  # fmt: skip
    _ingest(agg, judge, rows)
    seen: dict[str, tuple[bool, Verdict]] = {}

    def spy(state: HostState, cfg: object, *, now_us: int, **kw: object) -> Verdict:
        verdict = evaluate(state, load_config(None), now_us=now_us, **kw)  # type: ignore[arg-type]
        seen[state.addr] = (bool(state.prefixes), verdict)
        return verdict

    monkeypatch.setattr(judge_mod, "evaluate", spy)
    judge.judge(agg)
    assert {addr: had for addr, (had, _) in seen.items()} == {storm: True, mailer: False}
    assert seen[storm][1].verdicts == ("keyword-storm",)
    assert seen[mailer][1].verdicts == ("mx-client",)
    ids = [agg.find(*addr_words(a)) for a in (storm, mailer)]
    full = agg.host_states(ids)  # type: ignore[arg-type]
    assert full[1].prefixes  # the mailer has prefixes: the judge did not read them
    for state in full:
        assert evaluate(state, cfg, now_us=agg.now_us) == seen[state.addr][1]
