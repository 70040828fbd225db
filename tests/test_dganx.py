"""The dga-nx signal: fires on NXDOMAIN storms of generated names (each family of
testkit/dgagen.py), says so together with smb-scan, and stays quiet on the benign habits
that also draw NXDOMAIN answers (docs/DETECTION.md, "dga-nx": what must not fire).

Synthetic host state comes from testkit's slow, obvious Host; the end-to-end test writes
the same hosts as a pcap and replays it through the real pipeline, whose aggregate must
count the answer columns exactly as that Host does.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np
import pytest

from wormwatch import dganx
from wormwatch.config import Config, DgaNxConfig, load_config
from wormwatch.detect import evaluate
from wormwatch.dganx import COMBINED_READING
from wormwatch.model import (
    C_ANSWERS,
    C_NX,
    C_NX_DOMS_NEW,
    C_NX_SCORE,
    C_RCODE_ERR,
    N_COUNTERS,
    HostState,
)
from wormwatch.pipeline import Pipeline
from wormwatch.signals import Window
from wormwatch.source.pcapfile import open_replay

from testkit import dgagen, dgahosts
from testkit.dgasweep import judge
from testkit.hoststates import at, mass_mailer, scanner, write_pcap

CFG = Config()
NOW = at(23.99)


def _verdict(host: dgahosts.Host, cfg: Config = CFG) -> tuple[tuple[str, ...], dict[str, object]]:
    v = evaluate(host.state(), cfg, now_us=NOW)
    return v.verdicts, v.evidence


@pytest.mark.parametrize("family", ["conficker-c", "cryptolocker", "hash", "dictionary"])
def test_fires_on_every_generator_family(family: str) -> None:
    verdicts, evidence = _verdict(dgahosts.dga_client(family))
    assert verdicts == ("dga-nx",)
    ev = evidence["dga-nx"]
    assert isinstance(ev, dict)
    assert ev["nx_answers"] == ev["answers"] == 1000
    assert ev["nx_share"] == 1.0
    assert 900 <= ev["nx_domains"] <= 1000
    assert ev["mean_name_score"] >= 0.6
    assert ev["nx_per_min"] >= 1.0
    assert len(ev["sample_names"]) == 5
    assert {"active_bins", "first_active", "last_active", "peak_nx_per_bin"} <= set(ev)


def test_evidence_and_score_of_a_conficker_like_host() -> None:
    host = dgahosts.browse(dgahosts.dga_client("conficker-c"), 8.0, 10.0, 100)
    v = evaluate(host.state(), CFG, now_us=NOW)
    ev = v.evidence["dga-nx"]
    assert isinstance(ev, dict)
    # judged over the period from its first NXDOMAIN answer (09:00) to now: the hour of
    # browsing before it is in the window's totals only
    assert ev["period"]["start"] == "2026-11-26T09:00:00.000000+00:00"
    assert ev["window"] == {"answers": 2000, "nx_answers": 1000, "nx_domains": 1000}
    assert ev["answers"] == 1892
    assert ev["nx_share"] == 0.5285
    assert ev["error_answers"] == 0
    assert 0.55 <= ev["mean_name_score"] <= 0.75
    # points between half and all of the weight, by strength
    assert 35.0 <= v.score <= 70.0
    assert v.evidence["score_parts"] == {"dga-nx": v.score}


def test_together_with_smb_scan_is_one_combined_reading() -> None:
    host = dgahosts.dga_client("conficker-c", addr="192.0.2.44")
    for t, dst, qtype, name, port in scanner(200).log:
        host.log.append((t, dst, qtype, name, port))
        host.syn(t, dst, port)
    verdicts, evidence = _verdict(host)
    assert set(verdicts) == {"dga-nx", "smb-scan"}
    assert evidence["dga-nx"]["with_smb_scan"] == COMBINED_READING  # type: ignore[index]
    assert evidence["smb-scan"]["with_dga_nx"] == COMBINED_READING  # type: ignore[index]


def test_the_combined_reading_stays_when_a_third_signal_fires() -> None:
    """Conficker scans SMB and, here, also looks up the MX of 200 domains: the
    combined reading is in both evidences all the same."""
    host = dgahosts.dga_client("conficker-c", addr="192.0.2.44")
    for t, dst, _qtype, _name, port in scanner(200).log:
        host.syn(t, dst, port)
    for t, _src, qtype, name, _port in mass_mailer(200).log:
        host.query(t, name, qtype)
    verdicts, evidence = _verdict(host)
    assert set(verdicts) == {"dga-nx", "smb-scan", "mx-client"}
    assert evidence["dga-nx"]["with_smb_scan"] == COMBINED_READING  # type: ignore[index]
    assert evidence["smb-scan"]["with_dga_nx"] == COMBINED_READING  # type: ignore[index]


def test_a_partly_resolving_generator_still_fires() -> None:
    verdicts, evidence = _verdict(dgahosts.dga_client("cryptolocker", share_resolving=0.3))
    assert verdicts == ("dga-nx",)
    assert 0.6 <= evidence["dga-nx"]["nx_share"] <= 0.8  # type: ignore[index]


@pytest.mark.parametrize(
    "make",
    [
        dgahosts.browser_startups,
        dgahosts.search_expansion,
        dgahosts.typing_mistakes,
        dgahosts.dead_cloud_name,
        dgahosts.av_lookups,
        dgahosts.dnsbl_mail_server,
        dgahosts.ad_blocked_browser,
    ],
    ids=lambda f: f.__name__,
)
def test_benign_nxdomain_habits_do_not_fire(make: object) -> None:
    host = make()  # type: ignore[operator]
    state = host.state()
    assert state.totals[C_NX] > 0, "the habit draws NXDOMAIN answers"
    assert evaluate(state, CFG, now_us=NOW).verdicts == ()


def test_allowlisted_mail_server_and_resolver_are_exempt() -> None:
    resolver = dgahosts.forwarding_resolver()
    assert "dga-nx" in _verdict(resolver)[0], "the storm it forwards would fire"
    mail = dgahosts.dnsbl_mail_server(spam_senders=True)
    assert "dga-nx" in _verdict(mail)[0], "spammers' made-up sender domains would fire"
    allow = Config(
        resolvers=(ipaddress.ip_network("198.51.100.53/32"),),
        mail_servers=(ipaddress.ip_network("192.0.2.25/32"),),
    )
    assert _verdict(resolver, allow)[0] == ()
    assert _verdict(mail, allow)[0] == ()


# the share is judged over candidate periods: 0.71 over the generator's hours, up to
# 0.88 in an 8-minute tile of this host (0.5 over the day), so 0.9 is out of its reach
@pytest.mark.parametrize(
    ("field", "value"),
    [("min_nx", 1001), ("min_domains", 1001), ("min_share", 0.9), ("min_mean_score", 0.99)],
)
def test_each_threshold_is_required(field: str, value: float) -> None:
    host = dgahosts.browse(dgahosts.dga_client("conficker-c"), 8.0, 10.0, 100)
    assert "dga-nx" in _verdict(host)[0]
    cfg = Config(dga_nx=DgaNxConfig(**{field: value}))  # type: ignore[arg-type]
    assert "dga-nx" not in _verdict(host, cfg)[0]


def test_a_share_of_exactly_min_share_fires() -> None:
    """Each minute for 20 minutes, 2 generated names draw NXDOMAIN and 18 ordinary
    names resolve: an NXDOMAIN share of exactly 0.1 (min_share) in every period."""
    host = dgahosts.Host("192.0.2.151")
    names = iter(dgagen.FAMILIES["conficker-c"](dgahosts.DAY, 40))
    for m in range(20):
        t0 = at(10) + m * 60_000_000
        for i in range(20):
            name, rcode = (next(names), 3) if i < 2 else (f"www.site{i}.example", 0)
            host.query(t0 + i * 1_000_000, name)
            host.answer(t0 + i * 1_000_000 + 20_000, name, rcode)
    verdicts, evidence = _verdict(host)
    assert verdicts == ("dga-nx",)
    assert (evidence["dga-nx"]["nx_share"], evidence["dga-nx"]["nx_answers"]) == (0.1, 40)  # type: ignore[index]


def test_nx_domains_total_counts_since_first_seen() -> None:
    """10 generated domains the evening before (outside the one-day window), then a
    storm: the evidence's nx_domains_total holds the 10, nx_domains does not."""
    host = dgahosts.dga_client("conficker-c")
    for i, name in enumerate(dgagen.FAMILIES["hash"](dgahosts.DAY, 10)):
        host.answer(at(-4) + i * 1_000_000, name, 3)
    verdicts, evidence = _verdict(host)
    assert verdicts == ("dga-nx",)
    ev = evidence["dga-nx"]
    assert isinstance(ev, dict)
    assert ev["nx_domains_total"] == ev["nx_domains"] + 10


@pytest.mark.parametrize(("score_milli", "fires"), [(400, True), (399, False)])
def test_a_mean_name_score_of_exactly_min_mean_score_fires(score_milli: int, fires: bool) -> None:
    """20 minutes of 2 NXDOMAIN answers for 2 new domains each, whose names score
    0.400 (min_mean_score) on average: a storm; 0.399: not."""
    s = np.zeros((20, N_COUNTERS), np.int64)
    s[:, C_NX] = s[:, C_ANSWERS] = s[:, C_NX_DOMS_NEW] = 2
    s[:, C_NX_SCORE] = 2 * score_milli
    bins = np.arange(at(10) // 60_000_000, at(10) // 60_000_000 + 20, dtype=np.int64)
    state = HostState("192.0.2.152", at(10), at(10.33), s.sum(axis=0), bins, s)
    assert (evaluate(state, CFG, now_us=NOW).verdicts == ("dga-nx",)) == fires


def test_rate_threshold_is_per_active_minute() -> None:
    slow = dgahosts.dga_client("conficker-c", names_per_hour=30, hours=12)
    assert _verdict(slow)[0] == ("dga-nx",)
    cfg = Config(dga_nx=DgaNxConfig(min_rate_per_min=1.5))
    assert _verdict(slow, cfg)[0] == ()


def test_config_reads_the_section(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[detect.dga_nx]\nmin_nx = 7\nmin_mean_score = 0.5\n[score.weights]\n"
                    '"dga-nx" = 50\n')  # fmt: skip
    cfg = load_config(str(path))
    assert cfg.dga_nx == DgaNxConfig(min_nx=7, min_mean_score=0.5)
    assert cfg.score.weights["dga-nx"] == 50.0


def test_pipeline_counts_answers_as_the_slow_host_does(tmp_path: Path) -> None:
    hosts = [
        dgahosts.browse(dgahosts.dga_client("dictionary", hours=2.0), 8.0, 2.0, 50),
        dgahosts.typing_mistakes(),
        dgahosts.dead_cloud_name(),
        dgahosts.ad_blocked_browser(hours=2.0),
    ]
    pcap = write_pcap(tmp_path / "dga.pcap", hosts)
    result = Pipeline(load_config(None), source_name=pcap.name).run(open_replay([str(pcap)]))
    got = {view.state.addr: view for view in result.hosts}
    for host in hosts:
        want = host.state()
        view = got[host.addr]
        cols = [C_ANSWERS, C_NX, C_RCODE_ERR, *range(C_NX + 2, N_COUNTERS)]
        np.testing.assert_array_equal(view.state.totals[cols], want.totals[cols])
        assert view.state.totals[C_NX_SCORE] == want.totals[C_NX_SCORE]
        assert view.state.sample_nx_names == want.sample_nx_names
    assert got["192.0.2.150"].verdict.verdicts == ("dga-nx",)
    assert got["192.0.2.162"].verdict.verdicts == ()
    assert got["192.0.2.163"].verdict.verdicts == ()
    assert got["192.0.2.165"].verdict.verdicts == ()


def test_random_cdn_names_count_as_their_company_domain() -> None:
    """An ad blocker's NXDOMAIN answers for random hosts under four suffixes of the
    Public Suffix List's private section count as four domains scored 0, beside the
    tracker domains it blocks: the host never reaches dga-nx (counted by the full
    list, each random name was a domain of its own scoring about 0.9, and the same
    host fired after 22 minutes)."""
    host = dgahosts.ad_blocked_browser(cdn_suffixes=dgagen.CDN_SUFFIXES)
    blocked = [name.decode() for _t, name, _q, rcode in host.answer_log if rcode == 3]
    cdn = [n for n in blocked if n.endswith(dgagen.CDN_SUFFIXES)]
    trackers = {n.split(".", 1)[1] for n in blocked if n not in cdn}
    assert len(cdn) > 80
    state = host.state()
    assert state.totals[C_NX_DOMS_NEW] == len(trackers) + len(dgagen.CDN_SUFFIXES)
    assert evaluate(state, CFG, now_us=NOW).verdicts == ()
    assert judge(host, CFG) == (False, None)


@pytest.mark.parametrize("suffixes", [("duckdns.org",), dgagen.DDNS_SUFFIXES])
def test_a_generator_under_dynamic_dns_suffixes_is_out_of_reach(suffixes: tuple[str, ...]) -> None:
    """The price: a generator whose names all sit under suffixes of the list's private
    section (dynamic DNS here) counts one domain per suffix, scored 0 (docs/DETECTION.md)."""
    host = dgahosts.Host("192.0.2.170")
    for i, name in enumerate(dgagen.ddns_generated(dgahosts.DAY, 1000, suffixes)):
        host.query(at(9) + i * 14_000_000, name)
        host.answer(at(9) + i * 14_000_000 + 20_000, name, 3)
    state = host.state()
    assert state.totals[C_NX] == 1000
    assert state.totals[C_NX_DOMS_NEW] == len(suffixes)
    assert state.totals[C_NX_SCORE] == 0
    assert evaluate(state, CFG, now_us=NOW).verdicts == ()


def _random_windows(n: int, seed: int = 5) -> list[Window]:
    """Windows of random per-bin answer counters, many near dga-nx's thresholds."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        nb = int(rng.integers(20, 200))
        bins = np.sort(rng.choice(np.arange(1000, 1300), nb, replace=False)).astype(np.int64)
        s = np.zeros((nb, N_COUNTERS), np.int64)
        s[:, C_NX] = rng.poisson(rng.uniform(0.2, 2.0), nb)
        s[:, C_ANSWERS] = s[:, C_NX] + rng.poisson(rng.uniform(0.5, 12.0), nb)
        s[:, C_NX_DOMS_NEW] = rng.binomial(s[:, C_NX], rng.uniform(0.3, 1.0))
        s[:, C_NX_SCORE] = np.round(s[:, C_NX_DOMS_NEW] * 1000 * rng.uniform(0.1, 0.7, nb))
        out.append(Window(bins, s, 60, 1000, 1300))
    return out


def _judged(wins: list[Window], state: HostState) -> list[tuple[float, object] | None]:
    out = []
    for w in wins:
        r = dganx.dga_nx(w, state, CFG)
        out.append(None if r is None else (r[0], r[1](state.prefixes)))
    return out


def test_the_shortcuts_change_no_verdict_and_no_evidence(monkeypatch: pytest.MonkeyPatch) -> None:
    # the bins check (no period can hold) and the whole span from the first NXDOMAIN
    # answer tried first (the longest period) against the full period search
    state = dgahosts.typing_mistakes().state()
    wins = _random_windows(600)
    fast = _judged(wins, state)
    stopped = [not dganx._bins_could(w, CFG.dga_nx) for w in wins]
    monkeypatch.setattr(dganx, "_bins_could", lambda _w, _dc: True)
    monkeypatch.setattr(dganx, "_sums", lambda _s: np.zeros((5, 1)))
    assert _judged(wins, state) == fast
    # both outcomes and the early stop are exercised
    assert 100 < sum(r is not None for r in fast) < 500
    assert sum(stopped) > 50
