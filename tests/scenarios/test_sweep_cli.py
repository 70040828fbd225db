"""``python -m scripts.sweep --only ...``: the report of a subset of families, and a
family name it does not know (no pipeline run: the outcomes are made up)."""

from __future__ import annotations

import pytest

from scripts.sweep import __main__ as sweep
from testkit import profiles
from testkit.behaviours import Outcome


def test_a_subset_without_the_benign_family_is_reported() -> None:
    """``--only alternating`` (or ``bot-sync alternating``) has negatives but no benign
    family: the summary counts the alternating bots for bot-sync only."""
    case = profiles.bot("172.16.11.1", period_min=20, burst_s=300, lag_min=10)
    case.signal = None
    lines = sweep.report({"alternating": [case]}, {case.name: Outcome((), {})})
    assert "| bot-sync | 0 | 0 (0%) | — | — | 0 of 0 | 0 of 1 |" in lines
    assert "| keyword-storm | 0 | 0 (0%) | — | — | 0 of 0 | 0 of 0 |" in lines


def test_an_unknown_family_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sweep.grid, "everything", lambda: {"nat": [], "benign": []})
    with pytest.raises(SystemExit) as exc:
        sweep.main(["--only", "dga"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no such family: dga (families: nat, benign)" in err


def test_the_alternating_family_alone_gets_its_table() -> None:
    """``--only alternating`` runs those bots; their 'fired' table was printed only
    when the bot-sync family ran too."""
    case = profiles.bot("172.16.11.1", period_min=20, burst_s=300, lag_min=10)
    case.signal = None
    outcome = Outcome((), {"mx-client": 1, "smb-scan": 2})
    lines = sweep.report({"alternating": [case]}, {case.name: outcome})
    assert f"| {case.name} | mx-client, smb-scan |" in lines
