"""A spoofed-source flood (SYNs, and queries for names never seen before): bounded
tables, eviction, what did not fit counted, saturation reported, and the real
scanner hidden in the flood still found."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from wormwatch.aggregate import Aggregator
from wormwatch.cli import main
from wormwatch.config import load_config
from wormwatch.model import C_NAMES_NEW, C_SYN_DST_NEW
from wormwatch.pipeline import Pipeline, RunResult
from wormwatch.source.pcapfile import open_replay

from testkit.events import make_events
from testkit.fakes import RecordSink
from testkit.flood import SCANNER, write_flood
from testkit.paths import DEMO


def held_bytes(obj: object, seen: set[int] | None = None) -> int:
    """Bytes of every numpy array reachable from ``obj``'s attributes (its tables)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(held_bytes(v, seen) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(held_bytes(v, seen) for v in obj)
    attrs = getattr(obj, "__dict__", None)
    slots = [getattr(obj, n) for n in getattr(type(obj), "__slots__", ()) if hasattr(obj, n)]
    return sum(held_bytes(v, seen) for v in [*(attrs or {}).values(), *slots])


def flood_run(pcap: Path, max_hosts: int) -> tuple[Pipeline, RunResult, RecordSink]:
    cfg = dataclasses.replace(load_config(None), max_hosts=max_hosts)
    sink = RecordSink()
    pipeline = Pipeline(cfg, source_name="flood", alerts=sink)
    return pipeline, pipeline.run(open_replay([str(pcap)])), sink


def test_flood_keeps_the_limit_and_finds_the_scanner(tmp_path: Path) -> None:
    pcap = tmp_path / "flood.pcap"
    facts = write_flood(pcap, n_sources=60_000, n_targets=300, n_queries=20_000)
    pipeline, result, sink = flood_run(pcap, max_hosts=2_000)

    assert result.final.decode["syns"] == facts["syns"]
    assert result.final.decode["dns_queries"] == facts["queries"] == 20_000
    counts = pipeline.agg.counts()
    assert counts.hosts_tracked == 2_000
    # every source beyond the limit was either evicted again or never admitted
    assert counts.hosts_evicted + counts.events_dropped >= facts["sources"] - 2_000
    assert counts.hosts_evicted >= 2_000
    # nothing else overflowed: no (host, bin) row, no distinct key refused
    assert (counts.rows_dropped, counts.keys_refused, counts.events_ignored) == (0, 0, 0)
    # the tables are sized by the hosts tracked, not by the 60,001 that came and went:
    # the same limit with 2,000 well-behaved sources holds at least half as much
    calm = tmp_path / "calm.pcap"
    write_flood(calm, n_sources=1_999, n_targets=300, n_queries=700)
    calm_pipeline, _, _ = flood_run(calm, max_hosts=2_000)
    assert calm_pipeline.agg.counts().hosts_tracked == 2_000
    assert held_bytes(pipeline.agg) <= 2 * held_bytes(calm_pipeline.agg)
    assert result.final.hosts_dropped == counts.hosts_evicted
    top = result.hosts[0]
    assert top.state.addr == SCANNER
    assert top.verdict.verdicts == ("smb-scan",)
    # every one of its targets counted, although the table turned over ~30 times
    assert int(top.state.totals[C_SYN_DST_NEW]) == 300
    sensor = [r for r in sink.records if r["event_type"] == "sensor"]
    assert len(sensor) == 1
    assert sensor[0]["condition"] == "host-table-saturated"
    alerts = [r for r in sink.records if r["event_type"] == "alert"]
    assert [a["src_ip"] for a in alerts] == [SCANNER]


def test_flagged_hosts_are_never_evicted_for_noise() -> None:
    scores = np.zeros(8)
    agg = Aggregator(max_hosts=8, protect=lambda n: scores[:n] > 0)
    from wormwatch.classify import Classifier
    from wormwatch.model import KIND_SYN

    rows = [(i, f"192.0.2.{i + 1}", "198.51.100.1", KIND_SYN, 445, 0, b"") for i in range(8)]
    ev = make_events(rows)
    agg.ingest(ev, Classifier().classify(ev))
    scores[[1, 5]] = 50.0  # two flagged hosts
    flagged = {"192.0.2.2", "192.0.2.6"}
    for k in range(5):
        noise = [
            (100 + k, f"203.0.113.{10 * k + j}", "198.51.100.1", KIND_SYN, 445, 0, b"")
            for j in range(6)
        ]
        ev = make_events(noise)
        before = {s.addr for s in agg.host_states(range(agg.n_hosts))}
        renumbering = agg.ingest(ev, Classifier().classify(ev))
        now = {s.addr for s in agg.host_states(range(agg.n_hosts))}
        assert flagged <= now
        if renumbering is not None:
            # follow the renumbering, as the judge does
            scores[:] = renumbering.follow_array(scores)
            assert renumbering.n_evicted == int(np.count_nonzero(renumbering.mapping < 0))
        assert agg.n_hosts <= 8
        del before
    assert agg.counts().hosts_evicted > 0


def test_flood_through_the_cli_reports_saturation(tmp_path: Path) -> None:
    pcap = tmp_path / "flood.pcap"
    write_flood(pcap, n_sources=5_000, n_targets=100)
    config = tmp_path / "small.toml"
    config.write_text("[aggregate]\nmax_hosts = 500\n")
    summary = tmp_path / "hosts.jsonl"
    alerts = tmp_path / "alerts.jsonl"
    code = main(
        ["replay", str(pcap), "--no-tui", "--config", str(config),
         "--summary", str(summary), "--alerts", str(alerts)]
    )  # fmt: skip
    assert code == 0
    records = [json.loads(line) for line in summary.read_text().splitlines()]
    network = records[-1]
    assert network["event_type"] == "network"
    assert network["hosts_dropped"] + network["events_untracked"] >= 4_500
    assert sum(r["event_type"] == "host" for r in records) <= 500
    kinds = [json.loads(line)["event_type"] for line in alerts.read_text().splitlines()]
    assert "sensor" in kinds


def test_full_tables_refuse_and_count_what_did_not_fit() -> None:
    """Distinct sets capped at ``max_keys``, rows at ``max_host_bins``: the rest is
    refused and counted, never grown into."""
    from wormwatch.classify import Classifier
    from wormwatch.model import KIND_DNS, KIND_SYN

    agg = Aggregator(max_hosts=4, max_host_bins=10, max_keys=100)
    t0 = 1_700_000_000_000_000
    # a scanner: 300 distinct targets, one a minute (300 bins); a client: 300 new
    # names within one second (one bin)
    rows = [
        (t0 + i * 60_000_000, "192.0.2.9", f"198.51.100.{i}" if i < 250 else f"203.0.113.{i - 250}",
         KIND_SYN, 445, 0, b"")
        for i in range(300)
    ] + [
        (t0 + i * 1000, "192.0.2.10", "192.0.2.53", KIND_DNS, 53, 1, b"n%d.example.com" % i)
        for i in range(300)
    ]  # fmt: skip
    ev = make_events(rows)
    agg.ingest(ev, Classifier().classify(ev))
    scanner, client = agg.host_states(range(agg.n_hosts))
    assert (scanner.addr, client.addr) == ("192.0.2.9", "192.0.2.10")
    # 100 distinct targets and 100 distinct names kept, the rest refused (each of
    # the 300 names also brings new prefixes, refused alike past 100)
    assert int(scanner.totals[C_SYN_DST_NEW]) == 100
    assert int(client.totals[C_NAMES_NEW]) == 100
    counts = agg.counts()
    assert counts.keys_refused == 3 * 200
    # rows: the scanner's first 10 minutes fill the table (nothing is old enough to
    # prune in a day's window): its 290 later events and all 300 of the client's
    assert counts.rows_dropped == 290 + 300
    assert counts.hosts_tracked == 2


def test_the_saturation_record_comes_in_the_bin_the_table_overflowed() -> None:
    """The demo with room for 5 hosts overflows in its first minute; the sensor record
    was checked once per batch, so it came after every alert, stamped 09:29:44 (the
    batch's newest packet), not when the table filled."""
    _, _, sink = flood_run(DEMO, max_hosts=5)
    kinds = [r["event_type"] for r in sink.records]
    assert kinds.count("sensor") == 1
    sensor = sink.records[kinds.index("sensor")]
    assert str(sensor["timestamp"]) < "2026-01-15T09:01:00"
    assert kinds.index("sensor") < kinds.index("alert")
