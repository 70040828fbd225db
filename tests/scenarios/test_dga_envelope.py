"""A pinned subset of the dga-nx behaviour sweep (testkit/dgasweep.py): what must fire,
how soon, what is out of reach by design, and the benign habits that must stay quiet."""

from __future__ import annotations

import pytest

from wormwatch.config import Config

from testkit import dgahosts
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


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_benign_habits_never_alert(name: str) -> None:
    assert judge(BENIGN[name](), CFG) == (False, None)
