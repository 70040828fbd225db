"""A pinned subset of the behaviour sweep (``python -m scripts.sweep``), through the real pipeline.

One capture holds every case below (each its own host); it is replayed with the
default config, and each case's verdicts and first alerts (packet time) are
checked against the targets of issue 13: smb-scan and mx-client within one bin of
crossing their thresholds, keyword-storm within 5 minutes of its 100th keyword A
query whatever the host's history, bot-sync by the third synchronous burst; and
nothing for the benign look-alikes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit import profiles
from testkit.behaviours import MIN_US, Case, Outcome, judge

WORMS = {
    "storm-18-on-12-browsing-day": lambda a: profiles.keyword_storm(
        a, rate=18, browse_rate=12, history=True
    ),
    "storm-40-on-60-browsing-day": lambda a: profiles.keyword_storm(
        a, rate=40, browse_rate=24, history=True
    ),
    "mx-2-per-min-day": lambda a: profiles.mass_mailer(a, rate=2, history=True),
    "scan-1-per-min-day": lambda a: profiles.scanner(a, rate=1, history=True),
    "scan-300-per-min": lambda a: profiles.scanner(a, rate=300, history=False),
    "bot-10m-150s": lambda a: profiles.bot(a, period_min=10, burst_s=150, lag_min=0),
    "bot-7m-90s-lag-1m": lambda a: profiles.bot(a, period_min=7, burst_s=90, lag_min=1),
    "bot-2m-20s-jitter": lambda a: profiles.bot(
        a, period_min=2, burst_s=20, lag_min=0, jitter_s=30
    ),
    "bot-30m-600s-lag-3m": lambda a: profiles.bot(a, period_min=30, burst_s=600, lag_min=3),
    "bot-on-file-shares": lambda a: profiles.bot(
        a, period_min=10, burst_s=150, lag_min=1, baseline="file-shares"
    ),
}
BENIGN = (
    "heavy browsing 60/min",
    "file-server client",
    "backup server, 24 hosts",
    "admin dig mx, 2 domains x 5",
    "monitoring probe MX+SMB every 1 min",
    "monitoring probe MX+SMB every 5 min",
    "monitoring probe smtp A every 10 s",
)
# on time: minutes after the threshold crossing (bins for the counts)
TARGET_MIN = {"keyword-storm": 5.0, "mx-client": 1, "smb-scan": 1, "bot-sync": 1.0}


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Case, Outcome]]:
    cases = [build(f"172.16.9.{i + 1}") for i, build in enumerate(WORMS.values())]
    cases += [profiles.benign(f"172.16.10.{i + 1}", p) for i, p in enumerate(BENIGN)]
    alternating = profiles.bot("172.16.11.1", period_min=20, burst_s=300, lag_min=10)
    alternating.signal = None
    cases.append(alternating)
    outcomes = judge(cases, workdir=Path(tmp_path_factory.mktemp("envelope")))
    names = [*WORMS, *BENIGN, "alternating"]
    return {n: (c, outcomes[c.name]) for n, c in zip(names, cases, strict=True)}


@pytest.mark.parametrize("name", list(WORMS))
def test_worm_is_flagged_on_time(judged: dict[str, tuple[Case, Outcome]], name: str) -> None:
    case, out = judged[name]
    signal = str(case.signal)
    assert signal in out.verdicts
    first = out.first_us[signal]
    assert case.cross_us is not None
    if signal in ("mx-client", "smb-scan"):
        assert first // MIN_US - case.cross_us // MIN_US <= TARGET_MIN[signal]
    else:
        assert (first - case.cross_us) / MIN_US <= TARGET_MIN[signal]


@pytest.mark.parametrize("name", BENIGN)
def test_benign_profile_is_never_flagged(
    judged: dict[str, tuple[Case, Outcome]], name: str
) -> None:
    _, out = judged[name]
    assert out.first_us == {}


def test_alternating_mx_and_scan_is_not_bot_sync(
    judged: dict[str, tuple[Case, Outcome]],
) -> None:
    _, out = judged["alternating"]
    assert set(out.first_us) == {"mx-client", "smb-scan"}
