"""Every record carries the one schema number, with its keys in contract order."""

from __future__ import annotations

import json
import re

from wormwatch.model import Snapshot, Verdict
from wormwatch.present.sinks.jsonl import encode_line
from wormwatch.records import SCHEMA, alert_record, network_record, sensor_record


def test_alert_record_keys() -> None:
    verdict = Verdict(score=61.04, verdicts=("smb-scan",), evidence={"smb-scan": {"targets": 40}})
    rec = alert_record(
        "192.0.2.9", verdict, 60_000_000, reason="new", band=2,
        previous_verdicts=None, previous_score=None,
    )  # fmt: skip
    assert rec == {
        "schema": SCHEMA,
        "timestamp": "1970-01-01T00:01:00.000000+00:00",
        "event_type": "alert",
        "src_ip": "192.0.2.9",
        "score": 61.0,
        "verdicts": ["smb-scan"],
        "evidence": {"smb-scan": {"targets": 40}},
        "reason": "new",
        "band": 2,
        "previous_verdicts": [],
        "previous_score": None,
    }
    assert list(rec)[:3] == ["schema", "timestamp", "event_type"]


def test_sensor_record_keys() -> None:
    rec = sensor_record(0, "host-table-saturated", max_hosts=10, hosts_tracked=10)
    assert list(rec) == [
        "schema", "timestamp", "event_type", "condition", "max_hosts", "hosts_tracked",
    ]  # fmt: skip
    assert rec["schema"] == SCHEMA == 1


def test_network_record_source_is_escaped() -> None:
    """The source is the capture's file name, which can hold any byte: a C1 CSI, a
    bidi override and an invalid byte (surrogateescape) are escaped like a name."""
    snap = Snapshot(
        source="a\x9b31m\u202egnp\udcff.pcap +1 more", is_live=False, start_us=0, now_us=0,
        wall_elapsed_s=0.0, packets_per_s=0.0, dns_per_s=0.0, syn_per_s=0.0, hosts_tracked=0,
        hosts_dropped=0, decode={}, kernel_dropped=None, idle_s=None, network_sync_r=None, hosts=[],
    )  # fmt: skip
    line = encode_line(network_record(snap)).decode("utf-8")
    assert json.loads(line)["source"] == "a\\u009b31m\\u202egnp\\xff.pcap +1 more"
    assert not re.search("[\x80-\x9f\u202e]", line)


def _quiet(*, is_live: bool) -> Snapshot:
    return Snapshot(
        source="eth1", is_live=is_live, start_us=0, now_us=0, wall_elapsed_s=90.0,
        packets_per_s=0.0, dns_per_s=0.0, syn_per_s=0.0, hosts_tracked=0, hosts_dropped=0,
        decode={}, kernel_dropped=0, idle_s=None, network_sync_r=None, hosts=[],
    )  # fmt: skip


def test_a_live_record_with_nothing_counted_is_stamped_now_not_1970() -> None:
    """A quiet mirror port: the network record (and every --summary-every rewrite)
    said 1970-01-01, where a SIEM files it. It now spans the run's wall time."""
    rec = network_record(_quiet(is_live=True), wall_s=1_767_225_600.0)  # 2026-01-01
    assert rec["timestamp"] == rec["last_seen"] == "2026-01-01T00:00:00.000000+00:00"
    assert rec["first_seen"] == "2025-12-31T23:58:30.000000+00:00"
    # a replay's times are the capture's: with nothing counted there are none
    assert network_record(_quiet(is_live=False))["first_seen"].startswith("1970-01-01")
