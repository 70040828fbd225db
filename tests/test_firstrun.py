"""The claims that split a first run's compiling between two processes: each step once."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from wormwatch.firstrun import Claims, compile_claimed


def test_a_step_is_claimed_once_and_by_anyone_once_the_claims_are_gone(tmp_path: Path) -> None:
    claims = Claims(str(tmp_path / "claims"))
    (tmp_path / "claims").mkdir()
    assert claims.take("decoder")
    assert not claims.take("decoder")
    assert claims.take("aggregate")
    claims.remove()
    assert not (tmp_path / "claims").exists()
    # the second process has ended: whatever it took is in the cache, a "compile" loads it
    assert claims.take("decoder")


def test_the_second_process_passes_over_the_steps_claimed_here_and_reports_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "claims"
    folder.mkdir()
    here = Claims(str(folder))
    assert here.take("name score")
    ran: list[str] = []
    steps = {name: (lambda name=name: ran.append(name)) for name in ("a", "name score", "b")}
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    compile_claimed(Claims(str(folder)), ["a", "name score", "b"], steps)
    assert ran == ["a", "b"]
    assert out.getvalue().splitlines() == ["a", "b"]
    # done: the claims are removed
    assert not folder.exists()


def test_the_second_process_fills_the_cache_on_after_the_first_has_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError

    folder = tmp_path / "claims"
    folder.mkdir()
    ran: list[str] = []
    steps = {name: (lambda name=name: ran.append(name)) for name in ("a", "b")}
    monkeypatch.setattr("sys.stdout", Closed())
    compile_claimed(Claims(str(folder)), ["a", "b"], steps)
    assert ran == ["a", "b"]
