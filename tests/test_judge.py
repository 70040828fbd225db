"""The judge: which hosts it evaluates, what it keeps across evictions."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from wormwatch import judge as judge_mod
from wormwatch import signals
from wormwatch.aggregate import Aggregator
from wormwatch.classify import Classifier
from wormwatch.config import SIGNALS, load_config
from wormwatch.detect import evaluate
from wormwatch.judge import Judge
from wormwatch.model import C_KW_A, KIND_DNS, KIND_SYN, HostState, Verdict, addr_words

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

    def could_fire(totals: np.ndarray, _cfg: object, _peaks: object) -> np.ndarray:
        return np.ones((len(totals), len(SIGNALS)), np.bool_)

    monkeypatch.setattr(judge_mod, "could_fire", could_fire)
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


def test_a_verdict_worth_no_points_is_kept_across_evictions_by_its_alert() -> None:
    # [score.weights] smb-scan = 0: a scanner is flagged (and alerted) with score 0;
    # busier hosts than it then turn the 8-slot table over: it stays, with its verdict
    cfg = dataclasses.replace(load_config(None), max_hosts=8)
    weights = {**cfg.score.weights, "smb-scan": 0.0}
    cfg = dataclasses.replace(cfg, score=dataclasses.replace(cfg.score, weights=weights))
    judge = Judge(cfg)
    agg = Aggregator(max_hosts=8, protect=judge.protected)
    scanner = "192.0.2.66"
    _ingest(agg, judge, _syns(MIN_US, scanner, cfg.smb_scan.min_targets))
    alerts = judge.judge(agg)
    assert [(a["src_ip"], a["verdicts"], a["score"]) for a in alerts] == [
        (scanner, ["smb-scan"], 0.0)
    ]
    for k in range(5):
        busy = [(2 * MIN_US + k * 1000 + i, f"203.0.113.{8 * k + j}", "198.51.100.53",
                 KIND_DNS, 53, 1, f"www{i}.example.com".encode())
                for j in range(8) for i in range(40)]  # fmt: skip
        _ingest(agg, judge, busy)
    assert agg.counts().hosts_evicted > 0
    assert judge.judge(agg) == []
    views = {v.state.addr: v.verdict.verdicts for v in judge.host_views(agg)}
    assert views[scanner] == ("smb-scan",)


def _storm_and_mailer(agg: Aggregator, judge: Judge) -> tuple[str, str]:
    storm, mailer = "192.0.2.10", "192.0.2.25"
    rows = [(MIN_US + i * 3_000_000, storm, "198.51.100.53", KIND_DNS, 53, 1,
             f"{('mail', 'smtp', 'relay')[i % 3]}{i}.example.com".encode())
            for i in range(300)]  # fmt: skip
    rows += [(MIN_US + i * 1_000_000, mailer, "198.51.100.53", KIND_DNS, 53, 15,
              f"example{i}.net".encode())
             for i in range(40)]  # fmt: skip
    _ingest(agg, judge, rows)
    return storm, mailer


def _spy(monkeypatch: pytest.MonkeyPatch, cfg: object) -> dict[str, tuple[bool, Verdict]]:
    """(read with prefixes?, verdict) of each host the judge evaluates."""
    seen: dict[str, tuple[bool, Verdict]] = {}

    def spy(state: HostState, _cfg: object, *, now_us: int, **kw: object) -> Verdict:
        verdict = evaluate(state, cfg, now_us=now_us, **kw)  # type: ignore[arg-type]
        seen[state.addr] = (bool(state.prefixes), verdict)
        return verdict

    monkeypatch.setattr(judge_mod, "evaluate", spy)
    return seen


def test_name_prefixes_are_read_for_the_alerts_evidence_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Prefixes serve the keyword storm's evidence alone (with every keyword
    weighing 1): no host is judged with them, yet the storm's alert, the one
    judge call that makes no alert, and the views all carry the evidence of a
    full read-out, top prefixes included."""
    cfg = load_config(None)
    judge = Judge(cfg)
    agg = Aggregator(protect=judge.protected)
    storm, mailer = _storm_and_mailer(agg, judge)
    seen = _spy(monkeypatch, cfg)
    alerts = judge.judge(agg)
    assert {addr: had for addr, (had, _) in seen.items()} == {storm: False, mailer: False}
    ids = [agg.find(*addr_words(a)) for a in (storm, mailer)]
    full = {st.addr: st for st in agg.host_states(ids)}  # type: ignore[arg-type]
    assert full[storm].prefixes
    assert full[mailer].prefixes
    expect = {a: evaluate(st, cfg, now_us=agg.now_us) for a, st in full.items()}
    assert expect[storm].verdicts == ("keyword-storm",)
    assert expect[mailer].verdicts == ("mx-client",)
    assert {a["src_ip"]: a["evidence"] for a in alerts} == {
        a: v.evidence for a, v in expect.items()
    }
    assert expect[storm].evidence["keyword-storm"]["top_prefixes"]  # type: ignore[index]
    # judged again: nothing is news, nothing built; the views still explain
    seen.clear()
    assert judge.judge(agg) == []
    assert all(v.explain is not None and not v.evidence for _, v in seen.values())
    views = {v.state.addr: v.verdict for v in judge.host_views(agg)}
    assert views == expect
    assert [views[a].evidence for a in (storm, mailer)] == [
        expect[a].evidence for a in (storm, mailer)
    ]


def test_keyword_weights_make_the_storm_read_its_prefixes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a keyword weighing other than 1 the storm's score depends on the
    prefixes: the hosts it could fire on are judged with them, the others not."""
    cfg = dataclasses.replace(load_config(None), keyword_weights={"mail": 0.5, "smtp": 2.0})
    judge = Judge(cfg)
    agg = Aggregator(protect=judge.protected)
    storm, mailer = _storm_and_mailer(agg, judge)
    seen = _spy(monkeypatch, cfg)
    alerts = judge.judge(agg)
    assert {addr: had for addr, (had, _) in seen.items()} == {storm: True, mailer: False}
    ids = [agg.find(*addr_words(a)) for a in (storm, mailer)]
    for state in agg.host_states(ids):  # type: ignore[arg-type]
        full = evaluate(state, cfg, now_us=agg.now_us)
        assert seen[state.addr][1].score == full.score
        assert [a["evidence"] for a in alerts if a["src_ip"] == state.addr] == [full.evidence]


def test_a_slow_keyword_stream_costs_no_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over 100 keyword A queries, never 10 in one minute: no window's bins can
    make a storm, and the judge does not evaluate the host (its peaks say so);
    the storm host, and the slow host once it bursts, are evaluated."""
    cfg = load_config(None)
    judge = Judge(cfg)
    agg = Aggregator(protect=judge.protected)
    storm, _mailer = _storm_and_mailer(agg, judge)
    slow = "192.0.2.40"
    _ingest(agg, judge, [(MIN_US + i * 7_000_000, slow, "198.51.100.53", KIND_DNS, 53, 1,
                          b"smtp%d.example.com" % i) for i in range(150)])  # fmt: skip
    h = agg.find(*addr_words(slow))
    assert h is not None
    assert agg.totals()[h, C_KW_A] == 150
    seen = _spy(monkeypatch, cfg)
    judge.judge(agg)
    assert storm in seen
    assert slow not in seen
    # and it would not have stormed
    (state,) = agg.host_states([h])
    assert "keyword-storm" not in evaluate(state, cfg, now_us=agg.now_us).verdicts
    # ten in one minute: now its peaks could make a storm, and it is evaluated
    t = agg.now_us
    _ingest(agg, judge, [(t + i, slow, "198.51.100.53", KIND_DNS, 53, 1, b"mail%d.example" % i)
                         for i in range(10)])  # fmt: skip
    judge.judge(agg)
    assert slow in seen


def test_a_display_refresh_looks_again_at_a_flagged_host_only_when_its_window_moved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Display refreshes come four times a second; a flagged host without new
    events keeps the verdict of its last look until packet time enters a new
    bin (then its window may have lost a bin, and it is looked at again)."""
    cfg = load_config(None)
    judge = Judge(cfg)
    agg = Aggregator(protect=judge.protected)
    storm, mailer = _storm_and_mailer(agg, judge)
    judge.judge(agg)
    seen = _spy(monkeypatch, cfg)
    judge.rescore(agg)
    assert seen == {}
    # new events of the mailer later in the same bin: only it is looked at
    t = agg.now_us
    _ingest(agg, judge, [(t + 1, mailer, "198.51.100.53", KIND_DNS, 53, 15, b"more.example")])
    judge.rescore(agg)
    assert list(seen) == [mailer]
    seen.clear()
    judge.rescore(agg)
    assert seen == {}
    # packet time enters the next bin (another host's query): both are looked at
    bin_end = (agg.now_us // MIN_US + 1) * MIN_US
    _ingest(agg, judge, [(bin_end, "192.0.2.99", "198.51.100.53", KIND_DNS, 53, 1, b"a.example")])
    judge.rescore(agg)
    assert sorted(seen) == sorted([storm, mailer])
    for addr in (storm, mailer):
        (state,) = agg.host_states([agg.find(*addr_words(addr))])  # type: ignore[list-item]
        assert seen[addr][1] == evaluate(state, cfg, now_us=agg.now_us, explain=False)


def _keyword_traffic(seed: int) -> dict[int, list[Row]]:
    """Six hours of 24 hosts' A queries by minute: keyword names at 0.5 to 30 a
    minute (near the storm's 10), now and then a burst, with ordinary names
    mixed in at shares around the storm's one half."""
    rnd = random.Random(seed)
    by_minute: dict[int, list[Row]] = {}
    for h in range(24):
        src = f"192.0.2.{h + 1}"
        rate = rnd.choice([0.5, 2.0, 6.0, 9.0, 11.0, 14.0, 30.0])
        share = rnd.choice([0.3, 0.6, 0.9, 1.0])
        start = rnd.randrange(300)
        for m in range(start, min(360, start + rnd.randrange(10, 240))):
            n_kw = int(rate) + (rnd.random() < rate - int(rate))
            if rnd.random() < 0.03:
                n_kw += rnd.randrange(10, 40)
            names = [b"mail%d.example" % rnd.randrange(10**6) for _ in range(n_kw)]
            names += [b"www%d.example" % rnd.randrange(10**6)
                      for _ in range(round(n_kw * (1 - share) / share))]  # fmt: skip
            by_minute.setdefault(m, []).extend(
                (m * MIN_US + rnd.randrange(MIN_US), src, "198.51.100.53", KIND_DNS, 53, 1, name)
                for name in names
            )
    return by_minute


def _alerts_by_minute(by_minute: dict[int, list[Row]]) -> tuple[list[object], int]:
    """Every alert of judging at each minute's boundary, and the evaluations."""
    cfg = load_config(None)
    judge = Judge(cfg)
    agg = Aggregator(protect=judge.protected)
    n_evaluations = 0
    real = judge_mod.evaluate

    def counted(*args: object, **kwargs: object) -> Verdict:
        nonlocal n_evaluations
        n_evaluations += 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    judge_mod.evaluate = counted  # type: ignore[assignment]
    try:
        alerts: list[object] = []
        for m in sorted(by_minute):
            alerts += judge.judge(agg)
            _ingest(agg, judge, sorted(by_minute[m]))
        alerts += judge.finish(agg)
    finally:
        judge_mod.evaluate = real
    return alerts, n_evaluations


@pytest.mark.parametrize("seed", [1, 2])
def test_the_storm_bounds_change_no_alert(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The judge's pre-filter on each host's peaks and keyword-storm's
    busiest-bins bound only skip hosts that cannot storm: six hours of keyword
    traffic near the thresholds, judged at every minute, give the same alerts
    (storms among them) with the bounds and without, with fewer evaluations."""
    by_minute = _keyword_traffic(seed)
    bounded, n_bounded = _alerts_by_minute(by_minute)
    real = judge_mod.could_fire
    monkeypatch.setattr(judge_mod, "could_fire", lambda totals, cfg, peaks: real(totals, cfg))
    monkeypatch.setattr(signals, "_busiest_bins_could", lambda *_: True)
    full, n_full = _alerts_by_minute(by_minute)
    assert bounded == full
    assert any("keyword-storm" in a["verdicts"] for a in full)  # type: ignore[index,operator]
    assert n_bounded < n_full


def _outbreak_then_quiet() -> dict[int, list[Row]]:
    """Three hours by minute: two scanners, a mass mailer that stops and comes
    back, a keyword storm, a host that both scans and mails, and a quiet host
    whose queries move packet time on; every flagged host goes quiet in time
    for its activity to leave a one-hour window before the end."""
    rnd = random.Random(5)
    by_minute: dict[int, list[Row]] = {m: [] for m in range(180)}
    n_targets = 0

    def syns(m: int, src: str, n: int) -> None:
        nonlocal n_targets
        for _ in range(n):
            n_targets += 1
            t = m * MIN_US + rnd.randrange(MIN_US)
            by_minute[m].append((t, src, f"2001:db8:2::{n_targets:x}", KIND_SYN, 445, 0, b""))

    def queries(m: int, src: str, n: int, qtype: int, name: str) -> None:
        for _ in range(n):
            t = m * MIN_US + rnd.randrange(MIN_US)
            named = (name % rnd.randrange(10**6)).encode()
            by_minute[m].append((t, src, "198.51.100.53", KIND_DNS, 53, qtype, named))

    for m in range(180):
        queries(m, "192.0.2.1", 2, 1, "www%d.example")
        if 10 <= m < 40:
            syns(m, "192.0.2.10", 3)
        if 50 <= m < 70:
            syns(m, "192.0.2.11", 4)
        if 20 <= m < 35 or 90 <= m < 100:
            queries(m, "192.0.2.20", 4, 15, "mx%d.example")
        if 30 <= m < 60:
            queries(m, "192.0.2.30", 30, 1, "mail%d.example")
        if 40 <= m < 55:
            syns(m, "192.0.2.40", 3)
            queries(m, "192.0.2.40", 3, 15, "d%d.example")
    return by_minute


def _judged_by_minute(
    monkeypatch: pytest.MonkeyPatch, cfg: object, *, refresh: bool = False
) -> tuple[list[object], int]:
    """The alerts of :func:`_outbreak_then_quiet` judged at every minute (with
    ``refresh``, a display refresh after each minute's events too), and how
    many hosts the judge() calls evaluated."""
    by_minute = _outbreak_then_quiet()
    judge = Judge(cfg)  # type: ignore[arg-type]
    agg = Aggregator(protect=judge.protected, window_s=cfg.window_s)  # type: ignore[attr-defined]
    seen = _spy(monkeypatch, cfg)
    n = 0
    alerts: list[object] = []
    for m in sorted(by_minute):
        alerts += judge.judge(agg)
        n += len(seen)
        seen.clear()
        _ingest(agg, judge, sorted(by_minute[m]))
        if refresh:
            judge.rescore(agg)
            seen.clear()
    alerts += judge.finish(agg)
    return alerts, n


def _look_at_every_flagged_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Judge, "_idle", lambda _self, _agg, flagged, _touched: flagged < 0)


def test_idle_flagged_hosts_keep_their_verdicts_and_alerts_come_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Judging at each boundary passes over a flagged host that only mx-client or
    smb-scan could flag while it sends nothing and no bin of it leaves the
    window: three hours of an outbreak going quiet in a one-hour window give the
    same alerts (new ones, band changes, and each verdict cleared as its
    activity leaves the window) as looking at every flagged host, with fewer
    evaluations."""
    cfg = dataclasses.replace(load_config(None), window_s=3600)
    kept, n_kept = _judged_by_minute(monkeypatch, cfg)
    _look_at_every_flagged_host(monkeypatch)
    full, n_full = _judged_by_minute(monkeypatch, cfg)
    assert kept == full
    reasons = {(a["src_ip"], a["reason"]) for a in full}  # type: ignore[index]
    assert {("192.0.2.10", "cleared"), ("192.0.2.11", "cleared"), ("192.0.2.20", "cleared"),
            ("192.0.2.30", "cleared")} <= reasons  # fmt: skip
    assert n_kept < n_full


def test_display_refreshes_change_no_alert(monkeypatch: pytest.MonkeyPatch) -> None:
    """A display refresh after every minute's events (as a live table or
    ``--summary-every`` makes) leaves the alerts as they are without one: a
    refresh that sees a window move must not make the next judgement pass over
    the host (its band change and clearing came late or never), nor a refresh
    that clears a verdict hide the clearing from it (it came only at the end)."""
    cfg = dataclasses.replace(load_config(None), window_s=3600)
    alone, _ = _judged_by_minute(monkeypatch, cfg)
    assert sum(a["reason"] == "band-changed" for a in alone) >= 3  # type: ignore[index]
    refreshed, _ = _judged_by_minute(monkeypatch, cfg, refresh=True)
    assert refreshed == alone
    _look_at_every_flagged_host(monkeypatch)
    assert _judged_by_minute(monkeypatch, cfg, refresh=True)[0] == alone
