"""Alerts: one per change of verdict set or score band, never one per evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wormwatch.aggregate import Renumbering
from wormwatch.alerts import AlertTracker
from wormwatch.config import ScoreConfig
from wormwatch.model import Verdict
from wormwatch.present.sinks.jsonl import encode_line

T0 = 1_764_115_200_000_000  # 2025-11-26T00:00:00Z


def v(score: float, *names: str) -> Verdict:
    return Verdict(score=score, verdicts=names, evidence={n: {"x": 1} for n in names})


def test_clean_host_never_alerts() -> None:
    tracker = AlertTracker()
    for i in range(100):
        assert tracker.update(1, "192.0.2.1", Verdict(), T0 + i) is None
    assert tracker.n_tracked == 0


def test_first_verdict_alerts_once_in_the_design_schema() -> None:
    tracker = AlertTracker()
    rec = tracker.update(9, "192.0.2.9", v(62.5, "smb-scan"), T0 + 60_000_123)
    assert rec is not None
    assert rec["schema"] == 1
    assert rec["event_type"] == "alert"
    assert rec["timestamp"] == "2025-11-26T00:01:00.000123+00:00"
    assert rec["src_ip"] == "192.0.2.9"
    assert rec["score"] == 62.5
    assert rec["verdicts"] == ["smb-scan"]
    assert rec["evidence"] == {"smb-scan": {"x": 1}}
    assert rec["reason"] == "new"
    assert rec["band"] == 2
    assert json.loads(encode_line(rec)) == rec
    # the same verdict and band at every later evaluation: silence
    for i in range(1, 50):
        assert tracker.update(9, "192.0.2.9", v(62.5 + i * 0.2, "smb-scan"), T0 + i) is None


def test_verdict_set_change_and_clear() -> None:
    tracker = AlertTracker()
    assert tracker.update(0, "h", v(40.4, "mx-client"), T0) is not None
    rec = tracker.update(0, "h", v(45, "mx-client", "smb-scan"), T0 + 1)
    assert rec is not None
    assert rec["reason"] == "verdicts-changed"
    assert rec["previous_verdicts"] == ["mx-client"]
    assert rec["previous_score"] == 40.4
    # order of names is not a change
    assert tracker.update(0, "h", v(46, "smb-scan", "mx-client"), T0 + 2) is None
    rec = tracker.update(0, "h", Verdict(), T0 + 3)
    assert rec is not None
    assert (rec["reason"], rec["verdicts"], rec["score"]) == ("cleared", [], 0.0)
    assert tracker.n_tracked == 0
    rec = tracker.update(0, "h", v(40, "mx-client"), T0 + 4)
    assert rec is not None
    assert rec["reason"] == "new"


@pytest.mark.parametrize(
    ("scores", "n_alerts"),
    [
        ([30, 60], 2),  # band 1 -> band 2
        ([30, 49, 40, 30], 1),  # stays in band 1
        ([30, 50.5, 49.5, 51, 49], 1),  # hovering at 50: hysteresis keeps band 1
        ([30, 52, 49, 47], 3),  # up past 52, then down past 48
        ([30, 52, 48], 3),  # down by exactly the hysteresis: band 1 again
        ([30, 48, 52], 2),  # up by exactly the hysteresis: band 2
        ([30, 80, 26], 3),
    ],
)
def test_band_changes_with_hysteresis(scores: list[float], n_alerts: int) -> None:
    tracker = AlertTracker()
    alerts = [tracker.update(0, "h", v(s, "smb-scan"), T0 + i) for i, s in enumerate(scores)]
    assert sum(a is not None for a in alerts) == n_alerts
    assert all(a is None or a["reason"] in {"new", "band-changed"} for a in alerts)


def test_configured_bands() -> None:
    tracker = AlertTracker(ScoreConfig(bands=(10.0, 90.0), hysteresis=0.0))
    assert [tracker.band(s) for s in (0, 9.9, 10, 89, 90, 100)] == [0, 0, 1, 1, 2, 2]
    assert tracker.update(0, "h", v(20, "bot-sync"), T0) is not None
    assert tracker.update(0, "h", v(85, "bot-sync"), T0 + 1) is None
    rec = tracker.update(0, "h", v(95, "bot-sync"), T0 + 2)
    assert rec is not None
    assert rec["band"] == 2


def test_hosts_are_independent_and_evicted_ones_forgotten() -> None:
    tracker = AlertTracker()
    assert tracker.update(1, "a", v(30, "smb-scan"), T0) is not None
    assert tracker.update(2, "b", v(30, "smb-scan"), T0) is not None
    assert tracker.update(1, "a", v(30, "smb-scan"), T0 + 1) is None
    # host "a" (id 1) evicted, "b" (id 2) renumbered to 0
    tracker.renumber(Renumbering(np.array([-1, -1, 0]), 2))
    assert tracker.update(0, "b", v(30, "smb-scan"), T0 + 1) is None
    assert tracker.update(1, "a", v(30, "smb-scan"), T0 + 2) is not None
    assert tracker.n_tracked == 2
