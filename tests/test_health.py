"""Capture health: rates and idle time in packet time on a replay, wall time live;
the host-table-saturated record once, then at most hourly."""

from __future__ import annotations

import pytest

from wormwatch.aggregate import Aggregator
from wormwatch.classify import Classifier
from wormwatch.health import Health, Judged
from wormwatch.model import KIND_SYN, DecodeStats
from wormwatch.present.sinks.metric_families import MetricState, hosts

from testkit.events import make_events
from testkit.fakes import FakeClock, ScriptedSource

MIN_US = 60_000_000
NOTHING_JUDGED = Judged(hosts=[], network_sync_r=None, flagged={})


def _ingest(agg: Aggregator, t_us: int, srcs: list[str]) -> None:
    ev = make_events([(t_us, s, "198.51.100.1", KIND_SYN, 445, 0, b"") for s in srcs])
    agg.ingest(ev, Classifier().classify(ev))


@pytest.mark.parametrize("is_live", [False, True])
def test_rates_and_idle_time_follow_the_sources_clock(is_live: bool) -> None:
    clock = FakeClock(100.0)
    health = Health("x", clock)
    source = ScriptedSource([], is_live=is_live)
    agg = Aggregator()
    stats = DecodeStats()
    _ingest(agg, 10 * MIN_US, ["192.0.2.1"])
    health.saw_events(10 * MIN_US)
    health.snapshot(source, stats, agg, NOTHING_JUDGED)
    # two packet-time minutes and 4 wall seconds later, 1200 more packets
    stats.packets += 1200
    clock.now += 4.0
    _ingest(agg, 12 * MIN_US, ["192.0.2.1"])
    snap = health.snapshot(source, stats, agg, NOTHING_JUDGED)
    assert snap.is_live is is_live
    assert snap.packets_per_s == (300.0 if is_live else 10.0)
    # nothing relevant since the first batch: 4 wall s live, 120 packet s on a replay
    assert snap.idle_s == (4.0 if is_live else 120.0)
    assert snap.wall_elapsed_s == 4.0


def test_saturation_is_reported_once_then_hourly() -> None:
    health = Health("x", FakeClock())
    agg = Aggregator(max_hosts=4)
    _ingest(agg, MIN_US, [f"192.0.2.{i}" for i in range(1, 5)])
    assert health.saturation(agg) is None
    _ingest(agg, 2 * MIN_US, ["203.0.113.1", "203.0.113.2"])
    record = health.saturation(agg)
    assert record is not None
    assert (record["event_type"], record["condition"]) == ("sensor", "host-table-saturated")
    assert record["max_hosts"] == 4
    assert record["hosts_evicted"] == agg.counts().hosts_evicted > 0
    _ingest(agg, 30 * MIN_US, ["203.0.113.3", "203.0.113.4"])
    assert health.saturation(agg) is None
    _ingest(agg, 63 * MIN_US, ["203.0.113.5", "203.0.113.6"])
    assert health.saturation(agg) is not None


def test_the_snapshot_carries_the_distinct_sets_refused_and_dropped_keys() -> None:
    # the counters a central had and showed nowhere; a sensor's reach the metrics too
    agg = Aggregator(bin_s=60, window_s=120, max_keys=8)
    scan = [(i, "192.0.2.1", f"198.51.100.{i}", KIND_SYN, 445, 0, b"") for i in range(12)]
    later = [
        (10 * MIN_US + i, "192.0.2.2", f"203.0.113.{i}", KIND_SYN, 445, 0, b"") for i in range(3)
    ]
    for rows in (scan, later):
        ev = make_events(rows)
        agg.ingest(ev, Classifier().classify(ev))
    snap = Health("x", FakeClock(0.0)).snapshot(
        ScriptedSource([]), DecodeStats(), agg, NOTHING_JUDGED
    )
    # 8 of the scanner's 12 targets fit; 10 minutes later (window 2) they went
    assert (snap.keys_refused, snap.keys_dropped) == (4, 8)
    served = {m.name: m.samples[0].value for m in hosts(MetricState(), snap) if m.samples}
    assert served["wormwatch_distinct_keys_refused"] == 4
    assert served["wormwatch_distinct_keys_dropped"] == 8
