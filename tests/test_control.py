"""The run's signals (wormwatch.control) in this process: they only take note, a stop
breaks off the kernels' loading, the wind-down keeps Ctrl-C's way out.
(tests/test_runner.py sends them at each step of a real run.)"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from wormwatch.control import RunSignals, Stop
from wormwatch.outputs import Outputs


def _outputs(tmp_path: Path, signals: RunSignals) -> Outputs:
    return Outputs(
        alerts=str(tmp_path / "a.jsonl"),
        events=str(tmp_path / "e.jsonl"),
        summary=str(tmp_path / "s.jsonl"),
        summary_every_s=None,
        user=None,
        is_live=False,
        reopen=signals.reopen,
    )


def test_the_run_signals_only_take_note_while_installed(tmp_path: Path) -> None:
    """SIGHUP requests a reopen, SIGTERM then SIGINT a stop (the last says how);
    afterwards every handler is as it was."""
    before = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}
    signals = RunSignals()
    with signals.installed():
        os.kill(os.getpid(), signal.SIGHUP)
        outputs = _outputs(tmp_path, signals)
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            os.kill(os.getpid(), signal.SIGHUP)
            assert outputs.reopen.generation == 3
            os.kill(os.getpid(), signal.SIGTERM)
            assert signals.stop.requested
            assert not signals.stop.interrupted
            os.kill(os.getpid(), signal.SIGINT)
            assert signals.stop.interrupted
        finally:
            outputs.close()
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_stop_breaks_off_once_and_wind_down_keeps_ctrl_c(tmp_path: Path) -> None:
    """While the kernels load, a stop raises KeyboardInterrupt (once); after the loop,
    SIGTERM and a first Ctrl-C only take note, and a second Ctrl-C raises, as Python's
    own handler does."""
    signals = RunSignals()
    stop = signals.stop
    with signals.installed():
        with pytest.raises(KeyboardInterrupt), stop.breaking_off():
            os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested
        assert not stop.interrupted
        os.kill(os.getpid(), signal.SIGTERM)  # outside: a note, no raise
        stop.loop_ended()
        os.kill(os.getpid(), signal.SIGTERM)
        assert not stop.interrupted
        os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C: a note
        assert stop.interrupted
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


# a SIGTERM handled in the middle of some work, which then goes on
_WORK = "signal.raise_signal(signal.SIGTERM)\nfor _ in range(1000):\n    pass\n"


def _llvmlite_compiling() -> None:
    llvmlite: dict[str, object] = {"__name__": "llvmlite.binding.fake", "signal": signal}
    exec(compile(_WORK, "executionengine.py", "exec"), llvmlite)


def _numba_running_text() -> None:
    exec(_WORK, {"signal": signal})


@pytest.mark.parametrize("where", [_llvmlite_compiling, _numba_running_text])
def test_a_stop_breaks_off_only_where_it_is_safe(where: Callable[[], None]) -> None:
    """Not in llvmlite, which calls back from C as numba compiles (an exception there
    is dropped and leaves a half-made library: a RuntimeError traceback a step later),
    nor in code run from text (a KeyboardInterrupt out of it makes ``python -m`` end
    by SIGINT, exit -2, whatever follows): a live sensor stopped while compiling did
    both, one stop in 8 or so. It breaks off once out of there."""
    stop = Stop()
    with stop.handled(), stop.breaking_off():
        where()
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            time.sleep(10)
    assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL
    assert not stop.interrupted


def test_a_stop_as_the_loading_ends_leaves_no_alarm_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM whose handler ran just as breaking_off() ended (after it had turned
    the alarm off, before it stopped breaking off) found a frame where raising is
    unsafe and set the alarm again; SIGALRM's own action was back by then, and the
    process died of it (exit -14: a fresh clone's CI run, a stop during the first
    run's compile). The alarm now stays off."""
    stop = Stop()
    # a frame numba's exec of generated code would have: no KeyboardInterrupt there
    unsafe = eval(compile("sys._getframe()", "<string>", "eval"), {"sys": sys})
    real = signal.setitimer

    def setitimer(which: int, seconds: float, interval: float = 0.0) -> tuple[float, float]:
        got = real(which, seconds, interval)
        if seconds == 0:
            stop.on_signal(signal.SIGTERM, unsafe)  # the handler runs right here
        return got

    previous = signal.signal(signal.SIGALRM, lambda _signum, _frame: None)
    try:
        monkeypatch.setattr(signal, "setitimer", setitimer)
        with stop.breaking_off():
            pass
        monkeypatch.undo()
        left = signal.getitimer(signal.ITIMER_REAL)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert left == (0.0, 0.0)
    assert stop.requested
