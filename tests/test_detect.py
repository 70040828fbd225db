"""Detectors: each signal fires on its worm and stays quiet on its look-alike."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import random

import numpy as np
import pytest

from wormwatch import signals
from wormwatch.config import SIGNALS, Config, KeywordStormConfig
from wormwatch.detect import could_fire, evaluate, network_evidence, network_sync, tunnel_reason
from wormwatch.model import C_KW_A, C_QUERIES, QTYPE_MX, QTYPE_PTR
from wormwatch.signals import storm_could_fire, top_prefixes
from wormwatch.text import name_text

from testkit.hoststates import (
    STORM_PREFIXES,
    Host,
    at,
    bot,
    mass_mailer,
    scanner,
    spread,
    study_host,
)

CFG = Config()
NOW = at(23.99)


def test_study_host_is_a_keyword_storm() -> None:
    host, facts = study_host()
    state = host.state()
    assert int(state.totals[1]) == 32_721
    verdict = evaluate(state, CFG, now_us=at(18))
    assert verdict.verdicts == ("keyword-storm",)
    ev = verdict.evidence["keyword-storm"]
    assert isinstance(ev, dict)
    assert ev["a_queries"] == 32_721
    assert ev["ptr_queries"] == 7
    assert ev["mx_queries"] == 0
    assert ev["keyword_a_queries"] == facts["keyword_A"]
    assert ev["r2_keyword_a_vs_a"] > 0.99
    assert ev["keyword_share"] > 0.98
    assert ev["first_active"] == "2026-11-26T12:00:00.000000+00:00"
    assert ev["last_active"] == "2026-11-26T17:30:00.000000+00:00"
    assert ev["active_bins"] == 330
    assert 90 < ev["keyword_a_per_min"] < 110
    prefixes = ev["top_prefixes"]
    assert sorted(prefixes) == ["1", "2", "3", "4", "5"]
    assert prefixes["1"][0][0] == "m"
    assert prefixes["4"][0][0] == "mail"
    assert {p for p, _ in prefixes["5"]} >= {"smtp.", "relay", "mailh"}
    assert verdict.score >= 75
    json.dumps(verdict.evidence)


def test_webmail_forty_times_an_hour_is_not_a_storm() -> None:
    rng = np.random.default_rng(7)
    host = Host()
    times = spread(at(8), at(18), 400, rng)
    host.queries(times.tolist(), ["mail.example.edu"] * 400)
    other = spread(at(8), at(18), 300, rng)
    host.queries(other.tolist(), [f"site{i % 60}.example" for i in range(300)])
    assert evaluate(host.state(), CFG, now_us=NOW).verdicts == ()


def test_three_queries_of_mail_google_com_are_nothing() -> None:
    host = Host()
    host.queries([at(9), at(9.1), at(13)], ["mail.google.com"] * 3)
    verdict = evaluate(host.state(), CFG, now_us=NOW)
    assert (verdict.score, verdict.verdicts, verdict.evidence) == (0.0, (), {})


def test_monitoring_probe_of_one_mail_name_is_not_a_storm() -> None:
    """60 queries a minute all day, 100% keyword, but one name: not a worm."""
    host = Host()
    times = [at(0) + i * 1_000_000 for i in range(6 * 3600)]
    host.queries(times, ["smtp.example.net"] * len(times))
    assert evaluate(host.state(), CFG, now_us=at(6)).verdicts == ()


def test_storm_needs_a_sustained_rate_and_share() -> None:
    host, _ = study_host()
    state = host.state()
    slow = dataclasses.replace(CFG, keyword_storm=KeywordStormConfig(min_rate_per_min=200))
    assert evaluate(state, slow, now_us=at(18)).verdicts == ()
    # the same storm drowned in ordinary queries: the share falls below half
    # in every period, even where the storm's rate peaks (160/min against 240/min)
    rng = np.random.default_rng(2)
    ts = spread(at(12), at(17.5), 80_000, rng)
    host.queries(ts.tolist(), [f"www.site{i % 5000}.example" for i in range(80_000)])
    assert evaluate(host.state(), CFG, now_us=at(18)).verdicts == ()


def test_storm_evidence_is_the_latest_of_two_equal_periods() -> None:
    """A 4-minute storm at 10:08 between hours of heavy browsing (10:00-10:04 and
    10:16-10:24) holds in two 8-minute tiles, 10:04-10:12 and 10:08-10:16, and in
    no longer period: the evidence is the later tile."""
    host = Host()
    minute = 60_000_000

    def browse(start_min: int, n_min: int, per_min: int) -> None:
        for m in range(start_min, start_min + n_min):
            for i in range(per_min):
                host.query(at(10) + m * minute + i * 500_000, f"www.site{m}-{i}.example")

    host.query(at(10) - 20 * minute, "mail.early.example")
    browse(0, 4, 60)
    host.query(at(10) + 4 * minute, "mail.lone.example")
    browse(5, 1, 1)
    for m in range(8, 12):
        for i in range(30):
            host.query(at(10) + m * minute + i * 2_000_000, f"{STORM_PREFIXES[i % 9]}d{m}-{i}.test")
    browse(12, 2, 1)
    browse(16, 8, 60)
    verdict = evaluate(host.state(), CFG, now_us=NOW)
    assert verdict.verdicts == ("keyword-storm",)
    ev = verdict.evidence["keyword-storm"]
    assert isinstance(ev, dict)
    assert ev["period"] == {
        "start": "2026-11-26T10:08:00.000000+00:00",
        "end": "2026-11-26T10:16:00.000000+00:00",
        "bins": 8,
    }
    assert (ev["keyword_a_queries"], ev["queries"]) == (120, 122)


@pytest.mark.parametrize(("minutes", "verdicts"), [(4, ()), (5, ("keyword-storm",))])
def test_storm_needs_min_active_bins_minutes(minutes: int, verdicts: tuple[str, ...]) -> None:
    """30 keyword A queries a minute, each a new name: a storm once it lasts 5
    minutes (min_active_bins) and holds 100 queries, not in 4 minutes with 120."""
    host = Host()
    for i in range(minutes * 30):
        host.query(at(10) + i * 2_000_000, f"{STORM_PREFIXES[i % 9]}d{i}.example")
    assert evaluate(host.state(), CFG, now_us=NOW).verdicts == verdicts


def test_keyword_weights_scale_the_share() -> None:
    host, _ = study_host()
    zero = dict.fromkeys(CFG.keywords, 0.0)
    cfg = dataclasses.replace(CFG, keyword_weights=zero)
    assert evaluate(host.state(), cfg, now_us=at(18)).verdicts == ()
    half = dataclasses.replace(CFG, keyword_weights=dict.fromkeys(CFG.keywords, 0.6))
    ev = evaluate(host.state(), half, now_us=at(18)).evidence["keyword-storm"]
    assert isinstance(ev, dict)
    assert ev["keyword_weight"] == pytest.approx(0.6)


@pytest.mark.parametrize("seed", range(12))
def test_the_share_bound_only_skips_hosts_that_cannot_fire(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keyword-storm gives up early when even the best bin's keyword share is
    under ``min_share``; a period's share (a ratio of sums) can never beat it, so
    the verdicts are those of the full search, on hosts near the threshold."""
    rng = np.random.default_rng(seed)
    host = Host()
    n_kw = int(rng.integers(1500, 6000))
    host.queries(
        spread(at(10), at(12), n_kw, rng).tolist(), [f"mail{i}.example" for i in range(n_kw)]
    )
    n_other = int(n_kw * rng.uniform(0.4, 1.6))
    host.queries(
        spread(at(10), at(12), n_other, rng).tolist(), [f"www{i}.example" for i in range(n_other)]
    )
    weights = dict.fromkeys(CFG.keywords, float(rng.choice([1.0, 0.7, 1.4])))
    cfg = dataclasses.replace(CFG, keyword_weights=weights)
    state = host.state()
    bounded = evaluate(state, cfg, now_us=at(17.5))
    monkeypatch.setattr(signals, "_max_keyword_weight", lambda _cfg: float("inf"))
    full = evaluate(state, cfg, now_us=at(17.5))
    assert bounded.verdicts == full.verdicts
    assert bounded.score == full.score


def test_the_busiest_bins_bound_only_skips_hosts_that_cannot_fire(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """keyword-storm gives up before building periods when no number of the
    window's busiest keyword bins holds both the query floor and the rate (a
    period's rate is at most the mean of its keyword bins). On hosts near the
    rate, steady streams of 2-13 keyword names a minute with a few bursts,
    the verdicts and scores are those of the full search; the bound skips
    some hosts, and some of those it lets through fire and some do not. The
    judge's bound on a host's peaks holds for every host that fires."""
    calls: list[bool] = []
    real = signals._busiest_bins_could

    def spy(*args: object) -> bool:
        calls.append(real(*args))  # type: ignore[arg-type]
        return calls[-1]

    seen = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        minutes = int(rng.integers(15, 240))
        n = int(rng.uniform(2, 13) * minutes)
        times = spread(at(10), at(10) + minutes * 60_000_000, n, rng).tolist()
        for _ in range(int(rng.integers(0, 4))):
            burst = rng.integers(0, 60_000_000, int(rng.integers(8, 25)))
            times += (int(rng.choice(times)) + np.sort(burst)).tolist()
        host = Host().queries(times, [f"smtp{i}.example" for i in range(len(times))])
        state = host.state()
        now = at(10) + (minutes + int(rng.integers(0, 90))) * 60_000_000
        with monkeypatch.context() as m:
            m.setattr(signals, "_busiest_bins_could", spy)
            bounded = evaluate(state, CFG, now_us=now)
        with monkeypatch.context() as m:
            m.setattr(signals, "_busiest_bins_could", lambda *_: True)
            full = evaluate(state, CFG, now_us=now)
        assert (bounded.verdicts, bounded.score) == (full.verdicts, full.score)
        # the judge's pre-filter on the host's peaks (here: of its rows) agrees
        kw_a, queries = state.series[:, C_KW_A], state.series[:, C_QUERIES]
        peaks = np.array([[kw_a.max(), (kw_a / np.maximum(queries, 1)).max()]])
        assert storm_could_fire(peaks, CFG)[0] or not full.verdicts
        seen.add((calls[-1], bool(full.verdicts)) if calls else (None, bool(full.verdicts)))
        calls.clear()
    assert seen >= {(False, False), (True, True), (True, False)}


def test_min_r2_can_be_required() -> None:
    # a steady storm (30 keyword A a minute) under a user browsing in bursts
    rng = np.random.default_rng(4)
    host = Host()
    for m in range(120):
        t0 = at(12 + m / 60)
        host.queries(
            (t0 + np.sort(rng.integers(0, 60_000_000, 30))).tolist(),
            [f"mail.d{m}-{i}.example" for i in range(30)],
        )
        n_web = int(rng.choice([0, 5, 60]))
        host.queries(
            (t0 + np.sort(rng.integers(0, 60_000_000, n_web))).tolist(),
            [f"www.s{m}-{i}.example" for i in range(n_web)],
        )
    assert evaluate(host.state(), CFG, now_us=at(14)).verdicts == ("keyword-storm",)
    strict = dataclasses.replace(CFG, keyword_storm=KeywordStormConfig(min_r2=0.9))
    assert evaluate(host.state(), strict, now_us=at(14)).verdicts == ()


def test_mx_client_both_ways() -> None:
    verdict = evaluate(mass_mailer(200).state(), CFG, now_us=NOW)
    assert verdict.verdicts == ("mx-client",)
    ev = verdict.evidence["mx-client"]
    assert isinstance(ev, dict)
    assert (ev["mx_queries"], ev["mx_domains"]) == (200, 200)
    assert ev["sample_domains"][0] == "victim0.example"
    # a mail client doing autoconfig: a few MX queries of its own domain
    host = Host()
    host.queries([at(9) + i * 10_000_000 for i in range(12)], ["example.edu"] * 12, QTYPE_MX)
    assert evaluate(host.state(), CFG, now_us=NOW).verdicts == ()


def test_mx_client_counts_domains_not_queries() -> None:
    """24 MX queries, four of each of 6 domains: 6 domains in the window and in all."""
    host = Host()
    for i in range(24):
        host.query(at(9) + i * 5_000_000, f"victim{i % 6}.example", QTYPE_MX)
    verdict = evaluate(host.state(), CFG, now_us=NOW)
    assert verdict.verdicts == ("mx-client",)
    ev = verdict.evidence["mx-client"]
    assert isinstance(ev, dict)
    assert (ev["mx_queries"], ev["mx_domains"], ev["mx_domains_total"]) == (24, 6, 6)


def test_mx_client_sample_domains_are_escaped() -> None:
    """A mass mailer's MX names carry an ESC sequence and a byte that is not UTF-8:
    the evidence shows them as \\xNN, never the raw bytes."""
    host = Host()
    for i in range(12):
        host.query(at(9) + i * 5_000_000, b"v\x1b[2J\xff%d.example" % i, QTYPE_MX)
    verdict = evaluate(host.state(), CFG, now_us=NOW)
    assert verdict.verdicts == ("mx-client",)
    ev = verdict.evidence["mx-client"]
    assert isinstance(ev, dict)
    assert ev["sample_domains"][0] == "v\\x1b[2J\\xff0.example"


def dnscat(addr: str = "192.0.2.58") -> Host:
    """A dnscat tunnel: rotating MX/TXT/CNAME queries of long encoded names."""
    rng = np.random.default_rng(9)
    host = Host(addr)
    for i, t in enumerate(spread(at(8), at(8.05), 150, rng).tolist()):
        label = rng.bytes(30).hex().encode()
        host.query(t, b"dnscat." + label + b"." + label[:20], (QTYPE_MX, 16, 5)[i % 3])
    return host


def test_dns_tunnel_over_mx_is_not_a_mass_mailer() -> None:
    state = dnscat().state()
    assert int(state.totals[3]) == 50
    assert evaluate(state, CFG, now_us=NOW).verdicts == ()
    no_guard = dataclasses.replace(
        CFG, mx_client=dataclasses.replace(CFG.mx_client, skip_tunnels=False)
    )
    assert evaluate(state, no_guard, now_us=NOW).verdicts == ("mx-client",)


@pytest.mark.parametrize(
    ("names", "is_tunnel"),
    [
        ([b"victim1.example", b"foo.example.org", b"bar.test"], False),
        ([b"a.example", b"b.example"], False),  # too few samples to judge
        ([b"x" * 40 + b".t.example", b"y" * 40 + b".t.example", b"ok.example"], True),
        ([b"dnscat.c4f901f500471cd6", b"dnscat.1f8b01f500bb58df", b"a.example"], True),
        ([b"dnscat.a1", b"dnscat.b2", b"dnscat.c3"], False),  # short labels: judged as mail
        ([b"example.com", b"example.org", b"example.net"], False),
        ([b"deadbeefcafe.example", b"mail.example.org", b"a" * 31 + b".example"], False),
        # a label of exactly 32 bytes is encoded; two of four names is not "most"
        ([b"x" * 32 + b".t.example", b"y" * 32 + b".t.example", b"ok.example"], True),
        ([b"dnscat.c4f901f500471cd6", b"dnscat.1f8b01f500bb58df", b"a.test", b"b.test"], False),
    ],
)
def test_tunnel_reason(names: list[bytes], is_tunnel: bool) -> None:
    assert (tunnel_reason(names) is not None) == is_tunnel


def test_allowlisted_mail_server_and_resolver_are_not_mx_clients() -> None:
    state = mass_mailer(500).state()
    net = (ipaddress.ip_network(f"{state.addr}/32"),)
    for cfg in (
        dataclasses.replace(CFG, mail_servers=net),
        dataclasses.replace(CFG, resolvers=net),
    ):
        assert evaluate(state, cfg, now_us=NOW).verdicts == ()
    assert evaluate(state, dataclasses.replace(CFG, ignore=net), now_us=NOW) == evaluate(
        Host().state(), CFG, now_us=NOW
    )


def test_allowlisted_mail_server_is_still_an_smb_scanner() -> None:
    state = scanner(100).state()
    cfg = dataclasses.replace(CFG, mail_servers=(ipaddress.ip_network(state.addr),))
    assert evaluate(state, cfg, now_us=NOW).verdicts == ("smb-scan",)


def test_smb_scan_both_ways() -> None:
    verdict = evaluate(scanner(500).state(), CFG, now_us=NOW)
    assert verdict.verdicts == ("smb-scan",)
    ev = verdict.evidence["smb-scan"]
    assert isinstance(ev, dict)
    assert ev["targets"] == 500
    assert ev["syn"] == {"135": 0, "139": 500, "445": 1000}
    assert ev["syns_per_target"] == 3.0
    assert ev["targets_per_min"] > 30
    assert evaluate(scanner(29).state(), CFG, now_us=NOW).verdicts == ()
    assert evaluate(scanner(30).state(), CFG, now_us=NOW).verdicts == ("smb-scan",)


def test_smb_scan_peak_is_the_bin_with_most_new_targets() -> None:
    """The peak is the minute with the most new targets (30 at 10:05), not the one
    with the most SYNs (40 retransmissions to one target at 10:00)."""
    host = Host()
    for i in range(40):
        host.syn(at(10) + i * 1_000_000, "10.0.0.1", 445)
    for i in range(30):
        host.syn(at(10) + 300_000_000 + i * 1_000_000, f"10.0.1.{i + 1}", 445)
    verdict = evaluate(host.state(), CFG, now_us=NOW)
    assert verdict.verdicts == ("smb-scan",)
    ev = verdict.evidence["smb-scan"]
    assert isinstance(ev, dict)
    assert (ev["peak_targets_per_bin"], ev["peak_bin"]) == (30, "2026-11-26T10:05:00.000000+00:00")


def test_windows_client_with_its_file_servers_is_not_a_scan() -> None:
    host = Host()
    servers = ["198.51.100.10", "198.51.100.11", "198.51.100.20", "198.51.100.30"]
    for i in range(3000):
        t = at(8) + i * 12_000_000
        host.syn(t, servers[i % 4], 445)
        host.syn(t + 1_000_000, servers[i % 4], 445)  # retransmission
        host.syn(t + 5, servers[i % 2], 139)
    verdict = evaluate(host.state(), CFG, now_us=NOW)
    assert verdict.verdicts == ()


def test_slow_scanner_counts_within_the_window() -> None:
    """One new target every 10 minutes: a scanner once it reaches 30 in the window."""
    host = Host()
    for i in range(40):
        host.syn(at(1) + i * 600_000_000, f"10.0.0.{i + 1}", 445)
    state = host.state()
    assert evaluate(state, CFG, now_us=at(1 + 28 * 10 / 60)).verdicts == ()  # 29 targets
    verdict = evaluate(state, CFG, now_us=at(8))
    assert verdict.verdicts == ("smb-scan",)
    ev = verdict.evidence["smb-scan"]
    assert isinstance(ev, dict)
    assert ev["targets_per_min"] == 1.0
    assert ev["peak_targets_per_bin"] == 1
    # a day later, the scan has left the 24 h window
    assert evaluate(state, CFG, now_us=at(8 + 24)).verdicts == ()
    # a one-hour window never holds 30 of them
    hour = dataclasses.replace(CFG, window_s=3600)
    assert evaluate(state, hour, now_us=at(8)).verdicts == ()


def test_scan_evidence_tells_the_window_from_the_run() -> None:
    """40 targets, one every 10 minutes, judged in a 5-hour window: 30 of them
    in the window (the scan), 40 since the host was first seen."""
    host = Host()
    for i in range(40):
        host.syn(at(1) + i * 600_000_000, f"10.0.0.{i + 1}", 445)
    five_hours = dataclasses.replace(CFG, window_s=5 * 3600)
    verdict = evaluate(host.state(), five_hours, now_us=at(7.5) + 1)
    assert verdict.verdicts == ("smb-scan",)
    ev = verdict.evidence["smb-scan"]
    assert isinstance(ev, dict)
    assert (ev["targets"], ev["targets_total"], ev["syns"]) == (30, 40, 30)


def test_the_window_holds_exactly_its_last_window_s_of_bins() -> None:
    """31 targets: two in the first two minutes, then one every 10 minutes. The
    window is the last 1440 minutes: 31 targets while the first minute is its
    oldest, 30 a minute later (still a scan), 29 a minute after that (not)."""
    host = Host()
    times = [at(1), at(1) + 60_000_000] + [at(1) + i * 600_000_000 for i in range(1, 30)]
    for i, t in enumerate(times):
        host.syn(t, f"10.0.0.{i + 1}", 445)
    state = host.state()
    first_bin = at(1) // 60_000_000
    last_us = (first_bin + 1440) * 60_000_000 - 1  # the end of the 1440th minute
    for now_us, targets in ((last_us, 31), (last_us + 1, 30)):
        verdict = evaluate(state, CFG, now_us=now_us)
        assert verdict.verdicts == ("smb-scan",)
        ev = verdict.evidence["smb-scan"]
        assert isinstance(ev, dict)
        assert ev["targets"] == targets
    assert evaluate(state, CFG, now_us=last_us + 60_000_001).verdicts == ()


def test_bot_sync_in_phase_fires() -> None:
    verdict = evaluate(bot(0).state(), CFG, now_us=NOW)
    assert verdict.verdicts == ("mx-client", "smb-scan", "bot-sync")
    ev = verdict.evidence["bot-sync"]
    assert isinstance(ev, dict)
    assert ev["r"] > 0.9
    assert ev["lag_s"] == 0
    assert ev["sync_bursts"] == 8
    assert ev["mx_queries"] == 2 * (25 + 35 + 45 + 55)
    # judged from a few quiet minutes before the first burst to a few after the last
    period = ev["period"]
    assert isinstance(period, dict)
    assert period["start"].startswith("2026-11-26T09:54:00")  # type: ignore[union-attr]
    assert period["end"].startswith("2026-11-26T13:38:00")  # type: ignore[union-attr]
    assert ev["bins"] == period["bins"]
    assert ev["active_bins"] == 12  # the longer SYN bursts spill into the next minute
    series = ev["series"]
    assert isinstance(series, dict)
    assert sum(series["mx"]) == ev["mx_queries"]
    assert sum(series["syn"]) == ev["syns"] == ev["mx_queries"] + 8 * 5
    assert len(series["offsets"]) == ev["active_bins"]
    assert verdict.score == 100.0


@pytest.mark.parametrize("lag_min", [1, 2, 3])
def test_bot_sync_tolerates_a_short_lag(lag_min: int) -> None:
    assert "bot-sync" in evaluate(bot(lag_min).state(), CFG, now_us=NOW).verdicts


@pytest.mark.parametrize("lag_min", [5, 10, 15])
def test_bot_sync_out_of_phase_does_not_fire(lag_min: int) -> None:
    verdict = evaluate(bot(lag_min).state(), CFG, now_us=NOW)
    assert verdict.verdicts == ("mx-client", "smb-scan")
    assert "bot-sync" not in verdict.evidence
    # without a lag search and a moving sum, even a one-minute lag is out of phase
    exact = dataclasses.replace(CFG.bot_sync, sync_bin_s=60, max_lag_s=0)
    fine = dataclasses.replace(CFG, bot_sync=exact)
    assert "bot-sync" not in evaluate(bot(1).state(), fine, now_us=NOW).verdicts


def _lagged_bot(bin_s: int, lag_s: int, offset_s: int) -> Host:
    """12 bursts 10 minutes apart, each 10 MX queries in 20 s from ``offset_s``
    after 10:00 and 20 SYNs in 20 s from ``lag_s`` later."""
    host, rng, k = Host("192.0.2.9", bin_s=bin_s), np.random.default_rng(1), 0
    for b in range(12):
        t0 = at(10) + (offset_s + 600 * b) * 1_000_000
        for t in np.sort(rng.integers(t0, t0 + 20_000_000, 10)).tolist():
            host.query(t, f"victim{k}.example", QTYPE_MX)
            k += 1
        s0 = t0 + lag_s * 1_000_000
        for t in np.sort(rng.integers(s0, s0 + 20_000_000, 20)).tolist():
            host.syn(t, f"10.9.{k % 250}.{k // 250}")
            k += 1
    return host


@pytest.mark.parametrize(
    ("bin_s", "lag_s", "offset_s"), [(300, 60, 250), (300, 180, 120), (120, 180, 60)]
)
def test_bot_sync_searches_lags_up_to_max_lag_s_in_wider_bins(
    bin_s: int, lag_s: int, offset_s: int
) -> None:
    """A lag within max_lag_s (180 s) carries a burst's SYNs over a bin boundary
    when the burst starts late in its bin: in 300 s bins that is one bin of lag,
    in 120 s bins two (the search rounded 180/300 down to none, 180/120 to one)."""
    cfg = Config(bin_s=bin_s)
    verdict = evaluate(_lagged_bot(bin_s, lag_s, offset_s).state(), cfg, now_us=at(12.5))
    assert "bot-sync" in verdict.verdicts
    ev = verdict.evidence["bot-sync"]
    assert isinstance(ev, dict)
    assert 0 < ev["lag_s"] <= -(-lag_s // bin_s) * bin_s  # type: ignore[operator]


def _narrow_bot(n_domains: int, n_targets: int, names: list[bytes] | None = None) -> Host:
    """8 synchronised bursts of MX queries and SYNs, every 30 minutes from 10:00,
    cycling over ``n_domains`` MX names (or ``names``) and ``n_targets`` targets."""
    mx = names or [f"d{i}.example".encode() for i in range(n_domains)]
    host = Host("192.0.2.77")
    for b in range(8):
        start = at(10) + b * 1_800_000_000
        n = 25 + 10 * (b % 4)
        for j in range(n):
            host.query(start + j * 1_000_000, mx[j % len(mx)], QTYPE_MX)
            host.syn(start + 20_000_000 + j * 1_000_000, f"10.1.0.{j % n_targets}", 445)
    return host


@pytest.mark.parametrize(("n_domains", "n_targets", "fires"), [(5, 5, True), (5, 4, False)])
def test_bot_sync_needs_min_spread_domains_and_targets(
    n_domains: int, n_targets: int, fires: bool
) -> None:
    """min_spread is 10: 5 MX domains and 5 targets are enough, 5 and 4 are not."""
    verdict = evaluate(_narrow_bot(n_domains, n_targets).state(), CFG, now_us=NOW)
    assert ("bot-sync" in verdict.verdicts) == fires


def test_dns_tunnel_with_synchronised_syns_is_not_a_bot() -> None:
    """The same bursts, but every MX name carries a long hex label (a tunnel):
    neither mx-client nor bot-sync, unless the tunnel guard is turned off."""
    names = [b"c4f901f500471cd6%04d.t%d.example" % (i, i) for i in range(40)]
    state = _narrow_bot(0, 20, names).state()
    assert evaluate(state, CFG, now_us=NOW).verdicts == ()
    no_guard = dataclasses.replace(
        CFG, mx_client=dataclasses.replace(CFG.mx_client, skip_tunnels=False)
    )
    assert "bot-sync" in evaluate(state, no_guard, now_us=NOW).verdicts


def test_bot_sync_needs_enough_bins() -> None:
    verdict = evaluate(bot(0, n_bursts=2).state(), CFG, now_us=NOW)
    assert "bot-sync" not in verdict.verdicts


def test_score_is_monotone_explained_and_capped() -> None:
    scores = [evaluate(scanner(n).state(), CFG, now_us=NOW).score for n in (30, 60, 150, 300, 1000)]
    assert scores == sorted(scores)
    assert scores[0] == 40.0
    assert scores[-1] == 80.0
    for host in (scanner(100), mass_mailer(40), bot(0), study_host()[0]):
        v = evaluate(host.state(), CFG, now_us=NOW)
        parts = v.evidence["score_parts"]
        assert isinstance(parts, dict)
        assert list(parts) == list(v.verdicts)
        assert v.score == pytest.approx(min(100.0, sum(parts.values())), abs=0.11)
        assert 0 < v.score <= 100
    # two signals score more than either alone
    both = evaluate(bot(10).state(), CFG, now_us=NOW)
    assert both.score > max(both.evidence["score_parts"].values())  # type: ignore[union-attr]


def test_ptr_only_host_and_empty_state() -> None:
    host = Host()
    host.queries(
        [at(1) + i for i in range(500)], [f"{i}.in-addr.arpa" for i in range(500)], QTYPE_PTR
    )
    assert evaluate(host.state(), CFG, now_us=NOW).verdicts == ()
    # a host with nothing counted is judged too: nothing, zero, no evidence
    empty = evaluate(Host().state(), CFG, now_us=NOW)
    assert (empty.verdicts, empty.score, empty.evidence) == ((), 0.0, {})


def test_network_sync() -> None:
    mx = np.array([0, 5, 0, 9, 0, 7, 0, 3, 0, 8])
    assert network_sync(mx, mx * 3 + 1) == pytest.approx(1.0)
    assert network_sync(mx, np.roll(mx, 1)) < 0
    assert network_sync(mx[:4], mx[:4]) is None  # too few active bins
    assert network_sync(mx, np.full(10, 4)) is None  # constant: r undefined
    # sparse bins: gaps count as zero
    bins = np.array([100, 101, 110, 111, 120, 121, 130])
    m = np.array([9, 8, 7, 9, 8, 6, 5])
    r = network_sync(m, m, bins=bins)
    assert r == pytest.approx(1.0)
    one_min = dataclasses.replace(CFG, bot_sync=dataclasses.replace(CFG.bot_sync, sync_bin_s=60))
    ev = network_evidence(bins, m, np.array([0, 0, 5, 5, 0, 0, 1]), one_min)
    assert ev is not None
    assert ev["bins"] == 31
    assert ev["is_synchronised"] is False
    json.dumps(ev)
    # default lags and resolutions: the series stay in aggregate bins
    wide = np.arange(100, 160)
    mx_w = (wide % 10 < 3).astype(np.int64) * 4
    assert network_sync(mx_w, mx_w + 1, bins=wide, cfg=CFG) == pytest.approx(1.0)
    ev = network_evidence(wide, mx_w, mx_w, CFG)
    assert ev is not None
    assert ev["series"]["bin_s"] == 60  # type: ignore[index]


def test_network_sync_at_exactly_min_r_is_synchronised() -> None:
    """The summary's network_sync.is_synchronised holds at r = min_r, as a host's
    bot-sync fires at it, and not just below it."""
    mx = np.array([0, 5, 0, 9, 0, 7, 0, 3, 0, 8, 2, 6])
    syn = np.array([1, 4, 0, 9, 2, 3, 0, 6, 1, 8, 0, 2])
    exact = dataclasses.replace(
        CFG, bin_s=1, bot_sync=dataclasses.replace(CFG.bot_sync, sync_bin_s=1, max_lag_s=0)
    )
    ev = network_evidence(np.arange(12), mx, syn, exact)
    assert ev is not None
    r = ev["r"]
    assert isinstance(r, float)
    assert 0.5 < r < 0.95
    for min_r, synchronised in ((r, True), (r + 0.0001, False)):
        cfg = dataclasses.replace(exact, bot_sync=dataclasses.replace(exact.bot_sync, min_r=min_r))
        ev = network_evidence(np.arange(12), mx, syn, cfg)
        assert ev is not None
        assert ev["is_synchronised"] is synchronised


def test_network_evidence_over_a_long_idle_span_is_that_of_the_dense_series() -> None:
    # idle bins count as zero pairs: r is that of the series laid out bin by bin
    rng = np.random.default_rng(5)
    bins = np.sort(rng.choice(np.arange(100, 3000), 80, replace=False))
    mx = rng.integers(0, 6, 80) * (rng.random(80) < 0.7)
    syn = mx * 2 + rng.integers(0, 3, 80) * (rng.random(80) < 0.5)
    span = np.arange(int(bins[0]), int(bins[-1]) + 1)
    mx_dense, syn_dense = np.zeros(span.shape[0], np.int64), np.zeros(span.shape[0], np.int64)
    mx_dense[bins - bins[0]], syn_dense[bins - bins[0]] = mx, syn
    assert network_evidence(bins, mx, syn, CFG) == network_evidence(span, mx_dense, syn_dense, CFG)
    # one record of 1970 in a capture of 2026 (or of 2106, the end of 32-bit seconds):
    # the span of ~10^9 bins is not laid out (it took 6 GB and 100 s at 3 * 10^7 bins)
    far = np.concatenate([[0], bins + 2**32 // 60 * 16])
    ev = network_evidence(far, np.concatenate([[1], mx]), np.concatenate([[0], syn]), CFG)
    assert ev is not None
    assert ev["bins"] == int(far[1:][(mx > 0) | (syn > 0)][-1]) + 1
    assert ev["active_bins"] == 1 + int(((mx > 0) | (syn > 0)).sum())


def test_could_fire_is_the_prefilter() -> None:
    hosts = [scanner(100), mass_mailer(40), bot(0), study_host()[0], Host(), dnscat()]
    totals = np.stack([h.state().totals for h in hosts])
    maybe = could_fire(totals, CFG)
    assert maybe.shape == (6, 5)
    assert maybe.tolist() == [
        [False, False, True, False, False],
        [False, True, False, False, False],
        [False, True, True, True, False],
        [True, False, False, False, False],
        [False, False, False, False, False],
        [False, True, False, False, False],
    ]
    # nothing fires where the pre-filter says it cannot
    for host, row in zip(hosts, maybe.tolist(), strict=True):
        fired = set(evaluate(host.state(), CFG, now_us=NOW).verdicts)
        assert fired <= {name for name, ok in zip(SIGNALS, row, strict=True) if ok}


def test_the_detector_stores_each_hosts_sync_r() -> None:
    """Verdict.sync_r: bot-sync's r when it fired, else the same sync rule over the
    window; None for a host whose counts cannot make bot-sync fire."""
    fired = evaluate(bot(0).state(), CFG, now_us=NOW)
    ev = fired.evidence["bot-sync"]
    assert isinstance(ev, dict)
    assert fired.sync_r == ev["r"]
    out_of_phase = evaluate(bot(10).state(), CFG, now_us=NOW)
    assert "bot-sync" not in out_of_phase.verdicts
    assert isinstance(out_of_phase.sync_r, float)
    assert out_of_phase.sync_r < CFG.bot_sync.min_r
    scan_only = evaluate(scanner(40).state(), CFG, now_us=NOW)
    assert scan_only.verdicts == ("smb-scan",)
    assert scan_only.sync_r is None


def test_top_prefixes_rank_by_count_then_bytes_and_escape_every_prefix() -> None:
    rng = random.Random(9)
    alphabet = [b"m", b"a", b"i", b"l", b"\x1b", b"\xff", b"[", b"\\", b'"', b"\xc2\x85"]
    for _ in range(50):
        prefixes: dict[bytes, int] = {}
        for _ in range(rng.randrange(0, 60)):
            p = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 4)))[:5]
            prefixes[p] = rng.randrange(1, 5)
        by_len: dict[int, list[tuple[bytes, int]]] = {}
        for p, c in prefixes.items():
            by_len.setdefault(len(p), []).append((p, c))
        want = {
            str(n): [
                [name_text(p), c] for p, c in sorted(items, key=lambda pc: (-pc[1], pc[0]))[:5]
            ]
            for n, items in sorted(by_len.items())
        }
        assert top_prefixes(prefixes) == want
