"""Detection on recent behaviour: the cases of issue 13, judged bin by bin.

Each host is evaluated at every bin boundary, as the pipeline does, and the
test pins when each signal first fires (packet time) against when the
behaviour began or crossed its volume threshold.
"""

from __future__ import annotations

import numpy as np

from wormwatch.config import Config
from wormwatch.detect import evaluate
from wormwatch.model import QTYPE_MX

from testkit.hoststates import STORM_PREFIXES, Host, at

CFG = Config()
MIN_US = 60_000_000


def first_fired(host: Host, signal: str, start_us: int, end_us: int) -> int | None:
    """Packet time of the first bin-boundary evaluation where ``signal`` fires."""
    state = host.state()
    for b in range(start_us // MIN_US, end_us // MIN_US + 1):
        now = (b + 1) * MIN_US - 1
        if signal in evaluate(state, CFG, now_us=now).verdicts:
            return now
    return None


def browse(host: Host, start_us: int, end_us: int, per_min: float, seed: int) -> None:
    """A user's own queries: ordinary names, now and then a webmail lookup."""
    rng = np.random.default_rng(seed)
    n = int(per_min * (end_us - start_us) / MIN_US)
    ts = np.sort(rng.integers(start_us, end_us, n))
    pick = rng.integers(0, 400, n)
    names = ["mail.google.com" if p == 0 else f"www.site{p}.example" for p in pick.tolist()]
    host.queries(ts.tolist(), names)


def bursts(
    host: Host, start_us: int, *, period_s: int, burst_s: int, lag_s: int, n: int, seed: int
) -> list[int]:
    """MX queries (20 a minute) and SYNs (60 a minute) in bursts of ``burst_s``
    every ``period_s``; the SYN burst starts ``lag_s`` after the MX burst.
    Returns each burst's start."""
    rng = np.random.default_rng(seed)
    starts = []
    k = 0
    for b in range(n):
        t0 = start_us + b * period_s * 1_000_000
        starts.append(t0)
        for t in np.sort(rng.integers(t0, t0 + burst_s * 1_000_000, burst_s // 3)).tolist():
            host.query(t, f"victim{k}.example", QTYPE_MX)
            k += 1
        s0 = t0 + lag_s * 1_000_000
        for t in np.sort(rng.integers(s0, s0 + burst_s * 1_000_000, burst_s)).tolist():
            host.syn(t, f"10.9.{k % 250}.{rng.integers(1, 255)}", 445)
            k += 1
    return starts


def test_bursty_bot_is_synchronous_by_its_third_burst() -> None:
    # 150 s bursts every 10 minutes, not aligned to the minute
    host = Host("192.0.2.80")
    start = at(10) + 37_000_000
    starts = bursts(host, start, period_s=600, burst_s=150, lag_s=0, n=8, seed=1)
    fired = first_fired(host, "bot-sync", start, at(12))
    assert fired is not None
    assert fired <= starts[2] + 150_000_000 + MIN_US
    verdict = evaluate(host.state(), CFG, now_us=at(12))
    ev = verdict.evidence["bot-sync"]
    assert isinstance(ev, dict)
    assert ev["r"] >= 0.9
    assert ev["sync_bursts"] == 8


def test_scan_a_minute_after_mx_every_seven_minutes_is_synchronous() -> None:
    host = Host("192.0.2.81")
    start = at(10) + 13_000_000
    starts = bursts(host, start, period_s=420, burst_s=90, lag_s=60, n=10, seed=2)
    fired = first_fired(host, "bot-sync", start, at(12))
    assert fired is not None
    assert fired <= starts[2] + (60 + 90) * 1_000_000 + MIN_US
    ev = evaluate(host.state(), CFG, now_us=at(12)).evidence["bot-sync"]
    assert isinstance(ev, dict)
    assert ev["lag_s"] in (60, 120)


def test_alternating_mx_bursts_and_scans_are_not_synchronous() -> None:
    # MX for 5 minutes, scans 10 minutes later, every 20 minutes
    host = Host("192.0.2.82")
    bursts(host, at(10), period_s=1200, burst_s=300, lag_s=600, n=12, seed=3)
    assert first_fired(host, "bot-sync", at(10), at(14.5)) is None
    assert evaluate(host.state(), CFG, now_us=at(14.5)).verdicts == ("mx-client", "smb-scan")


def test_monitoring_probe_checking_mx_and_smb_together_is_not_a_bot() -> None:
    # every 5 minutes: the MX of one domain and SYNs to the same three servers
    host = Host("192.0.2.83")
    for i in range(12 * 20):
        t = at(8) + i * 300_000_000
        host.query(t, "example.org", QTYPE_MX)
        for s in range(3):
            host.syn(t + 1_000_000, f"198.51.100.{10 + s}", 445)
    assert evaluate(host.state(), CFG, now_us=at(23)).verdicts == ()


def test_storm_on_a_browsing_pc_with_a_day_of_history() -> None:
    # 12 queries a minute from the day before; a storm of 18 keyword A a minute at 10:00
    host = Host("192.0.2.84")
    browse(host, at(-14), at(12), per_min=12, seed=4)
    rng = np.random.default_rng(5)
    storm_start = at(10) + 21_000_000
    ts = np.sort(rng.integers(storm_start, at(12), 18 * 120 - 18 // 3)).tolist()
    pre = rng.integers(0, len(STORM_PREFIXES), len(ts)).tolist()
    host.queries(ts, [f"{STORM_PREFIXES[p]}d{i}.example" for i, p in enumerate(pre)])
    hundredth = ts[99]
    # the day of browsing alone is nothing
    assert evaluate(host.state(), CFG, now_us=at(9.99)).verdicts == ()
    fired = first_fired(host, "keyword-storm", storm_start, at(12))
    assert fired is not None
    assert fired - hundredth <= 5 * MIN_US
    ev = evaluate(host.state(), CFG, now_us=at(12)).evidence["keyword-storm"]
    assert isinstance(ev, dict)
    # judged over the storm, reported with the day's totals
    assert ev["keyword_share"] > 0.5
    window = ev["window"]
    assert isinstance(window, dict)
    assert window["queries"] > 12 * 60 * 24


def test_scan_and_mass_mail_after_a_day_of_history_fire_within_a_bin() -> None:
    host = Host("192.0.2.85")
    browse(host, at(-14), at(12), per_min=12, seed=6)
    for i in range(3000):  # the user's own file servers, all day
        host.syn(at(-14) + i * 30_000_000, f"198.51.100.{i % 4}", 445)
    rng = np.random.default_rng(7)
    scan_ts = np.sort(rng.integers(at(10), at(11), 90)).tolist()
    for i, t in enumerate(scan_ts):
        host.syn(t, f"10.7.0.{i}", 445)
    mx_ts = np.sort(rng.integers(at(10.5), at(11), 20)).tolist()
    for i, t in enumerate(mx_ts):
        host.query(t, f"victim{i}.example", QTYPE_MX)
    # the 30th new target (after the four file servers) and the 10th MX query
    scan_fired = first_fired(host, "smb-scan", at(10), at(11))
    mx_fired = first_fired(host, "mx-client", at(10), at(11))
    assert scan_fired is not None
    assert mx_fired is not None
    assert scan_fired // MIN_US == scan_ts[29] // MIN_US
    assert mx_fired // MIN_US == mx_ts[9] // MIN_US


def test_one_name_probe_on_a_host_that_also_browses_is_not_a_storm() -> None:
    # smtp.example.net asked every second for 8 hours, on a host that also looks up
    # 10 names of its own an hour: share ~1, rate 60/min, but one keyword name
    host = Host("192.0.2.86")
    host.queries([at(8) + i * 1_000_000 for i in range(8 * 3600)], ["smtp.example.net"] * 28_800)
    host.queries(
        [at(8) + i * 360_000_000 for i in range(80)], [f"www.s{i}.example" for i in range(80)]
    )
    assert first_fired(host, "keyword-storm", at(8), at(16)) is None
    # the same with 20 keyword names in rotation is a storm
    host = Host("192.0.2.87")
    host.queries(
        [at(8) + i * 1_000_000 for i in range(3600)],
        [f"smtp{i % 20}.example.net" for i in range(3600)],
    )
    assert first_fired(host, "keyword-storm", at(8), at(9)) is not None
