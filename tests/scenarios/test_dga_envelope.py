"""A pinned subset of the dga-nx behaviour sweep (testkit/dgasweep.py): what must fire,
how soon, what is out of reach by design, and the benign habits that must stay quiet; then
a few of the same behaviours replayed as packets through the real pipeline, as the
replayed sweep (``python -m scripts.sweep``) does."""

from __future__ import annotations

from pathlib import Path

import pytest

from wormwatch.config import Config

from testkit import dgahosts, profiles
from testkit.behaviours import MIN_US, Case, Outcome
from testkit.behaviours import judge as judge_replay
from testkit.dgasweep import BENIGN, judge

CFG = Config()


def _worm(family: str, per_hour: float, **kw: float) -> dgahosts.Host:
    host = dgahosts.dga_client(family, names_per_hour=per_hour, hours=4.0, **kw)
    return dgahosts.browse(host, 8.0, 6.0, 120)


@pytest.mark.parametrize("family", ["conficker-c", "cryptolocker", "hash", "dictionary"])
def test_a_steady_generator_is_flagged_within_the_hour(family: str) -> None:
    fired, minutes = judge(_worm(family, 100), CFG)
    assert fired
    assert minutes is not None
    assert minutes <= 30


def test_a_burst_is_flagged_at_the_burst() -> None:
    fired, minutes = judge(_worm("conficker-c", 30, burst_s=120.0), CFG)
    assert fired
    assert minutes is not None
    assert minutes <= 5


def test_half_resolving_names_delay_but_do_not_hide_a_generator() -> None:
    fired, minutes = judge(_worm("cryptolocker", 100, share_resolving=0.5), CFG)
    assert fired
    assert minutes is not None
    assert 30 < minutes <= 60


def test_ten_names_an_hour_on_a_busy_machine_is_out_of_reach() -> None:
    # 40 NXDOMAIN among 760 answers: the share stays under min_share (docs/DETECTION.md)
    assert judge(_worm("conficker-c", 10), CFG) == (False, None)


@pytest.mark.parametrize("per_hour", [100, 500])
def test_a_day_of_browsing_before_does_not_delay_the_alert(per_hour: float) -> None:
    # the share is judged from the generator's first NXDOMAIN answer, not over the day
    # (before: 21 / 189 minutes at 100 names an hour, 4 / 38 at 500)
    minutes = []
    for history_h in (1.0, 23.0):
        host = dgahosts.dga_client("conficker-c", names_per_hour=per_hour, start=0.0)
        dgahosts.browse(host, -history_h, history_h + 4.0, 120)
        fired, m = judge(host, CFG)
        assert fired
        assert m is not None
        minutes.append(m)
    assert abs(minutes[1] - minutes[0]) <= 2 * CFG.bin_s / 60


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_benign_habits_never_alert(name: str) -> None:
    assert judge(BENIGN[name](), CFG) == (False, None)


# --- the same behaviours replayed as one capture through the real pipeline -------------
# (python -m scripts.sweep, the dga-nx family: frames, decoder, aggregate, detector, alerts)

# name -> (family, names per hour, share resolving, burst seconds, scans SMB)
REPLAYED = {
    "conficker-100-steady-smb": ("conficker-c", 100, 0.0, 0.0, True),
    "hash-500-burst": ("hash", 500, 0.5, 120.0, False),
    "dictionary-30-steady": ("dictionary", 30, 0.0, 0.0, False),
    "cryptolocker-10-steady-smb": ("cryptolocker", 10, 0.0, 0.0, True),
}


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Case, Outcome]]:
    cases = [
        profiles.dga_worm(
            f"172.16.20.{i + 1}",
            family=family,
            per_hour=rate,
            resolving=share,
            burst_s=burst,
            smb=smb,
        )
        for i, (family, rate, share, burst, smb) in enumerate(REPLAYED.values())
    ]
    cases += [profiles.dga_habit(f"172.16.21.{i + 1}", h) for i, h in enumerate(BENIGN)]
    outcomes = judge_replay(cases, workdir=Path(tmp_path_factory.mktemp("dga")))
    names = [*REPLAYED, *BENIGN]
    return {n: (c, outcomes[c.name]) for n, c in zip(names, cases, strict=True)}


@pytest.mark.parametrize(
    "name", ["conficker-100-steady-smb", "hash-500-burst", "dictionary-30-steady"]
)
def test_replayed_generator_is_flagged_within_a_bin_of_its_30th_nxdomain(
    replayed: dict[str, tuple[Case, Outcome]], name: str
) -> None:
    case, out = replayed[name]
    assert "dga-nx" in out.verdicts
    assert case.cross_us is not None
    assert 0 <= out.first_us["dga-nx"] // MIN_US - case.cross_us // MIN_US <= 1


def test_replayed_generator_that_scans_is_flagged_for_both(
    replayed: dict[str, tuple[Case, Outcome]],
) -> None:
    _, out = replayed["conficker-100-steady-smb"]
    assert {"dga-nx", "smb-scan"} <= set(out.verdicts)


def test_replayed_slow_generator_is_out_of_reach_but_its_scan_is_not(
    replayed: dict[str, tuple[Case, Outcome]],
) -> None:
    _, out = replayed["cryptolocker-10-steady-smb"]
    assert out.verdicts == ("smb-scan",)


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_replayed_benign_habits_never_alert(
    replayed: dict[str, tuple[Case, Outcome]], name: str
) -> None:
    assert replayed[name][1].first_us == {}
