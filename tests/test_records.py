"""Every record carries the one schema number, with its keys in contract order."""

from __future__ import annotations

from wormwatch.model import Verdict
from wormwatch.records import SCHEMA, alert_record, sensor_record


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
