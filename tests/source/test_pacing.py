"""Paced replay with an injected clock: no real sleeps, exact wall-time budgets."""

from __future__ import annotations

import numpy as np
import pytest

from wormwatch.model import Batch
from wormwatch.source import SourceStats
from wormwatch.source.pacing import MAX_SPEED, Paced

from testkit.fakes import FakeClock, ScriptedSource

US = 1_000_000


STATS = SourceStats(packets=7)


def make_batch(ts_us: list[int] | np.ndarray) -> Batch:
    ts = np.asarray(ts_us, np.int64)
    n = ts.shape[0]
    return Batch(
        data=np.zeros(n * 4, np.uint8),
        ts_us=ts,
        offsets=np.arange(n, dtype=np.int64) * 4,
        caplens=np.full(n, 4, np.int32),
        wirelens=np.full(n, 4, np.int32),
        linktypes=np.ones(n, np.int32),
    )


def split(ts_us: np.ndarray, size: int) -> list[Batch]:
    return [make_batch(ts_us[i : i + size]) for i in range(0, len(ts_us), size)]


def drain(paced: Paced, clock: FakeClock, max_packets: int = 4096) -> list[tuple[float, Batch]]:
    """Read to the end as the pipeline does; (wall time, batch) of each non-empty read."""
    out = []
    for _ in range(1_000_000):
        batch = paced.read_batch(max_packets)
        if batch is None:
            return out
        if batch.n:
            out.append((clock.now, batch))
    raise AssertionError("the paced source never finished")


def released_ts(reads: list[tuple[float, Batch]]) -> np.ndarray:
    return np.concatenate([b.ts_us for _, b in reads])


def test_max_speed_passes_batches_through() -> None:
    batches = split(np.arange(10, dtype=np.int64) * US, 4)
    src = ScriptedSource(batches, stats=STATS)
    paced = Paced(src, None)
    assert [paced.read_batch(100) for _ in range(3)] == batches
    assert paced.read_batch(100) is None
    assert paced.name == "scripted.pcap"
    assert paced.stats().packets == 7
    paced.close()
    assert src.closed


def test_thirty_minutes_at_speed_60_play_in_thirty_seconds_smoothly() -> None:
    ts = (np.arange(1800, dtype=np.int64) + 1_700_000_000) * US  # one packet a second
    clock = FakeClock(100.0)
    paced = Paced(ScriptedSource(split(ts, 500), stats=STATS), 60.0, clock=clock, sleep=clock.sleep)
    start = clock.now
    reads = drain(paced, clock)
    assert np.array_equal(released_ts(reads), ts)
    # the last packet is due 1799 packet seconds / 60 after the first
    assert clock.now - start == pytest.approx(1799 / 60, abs=0.06)
    # smooth: no read releases more than one sleep's worth of packet time
    spans = [(int(b.ts_us[-1]) - int(b.ts_us[0])) / US for _, b in reads]
    assert max(spans) <= 60 * 0.05 + 1
    assert len(reads) > 500
    assert max(clock.sleeps) <= 0.05


def test_packets_are_released_when_due_not_before() -> None:
    ts = np.array([0, 1, 2, 3], np.int64) * US
    clock = FakeClock(100.0)
    paced = Paced(
        ScriptedSource([make_batch(ts)], stats=STATS), 2.0, clock=clock, sleep=clock.sleep
    )
    start = clock.now
    for _, batch in drain(paced, clock):
        for t in batch.ts_us:
            # packet second t is due at wall second t / 2
            assert clock.now - start >= t / US / 2 - 1e-9


def test_not_due_returns_an_empty_batch_after_a_bounded_sleep() -> None:
    clock = FakeClock(100.0)
    ts = np.array([0, 600 * US], np.int64)
    paced = Paced(
        ScriptedSource([make_batch(ts)], stats=STATS), 1.0, clock=clock, sleep=clock.sleep
    )
    assert paced.read_batch(10).n == 1
    empty = paced.read_batch(10)
    assert empty is not None
    assert empty.n == 0
    assert clock.sleeps == [pytest.approx(0.05)]


def test_backward_jump_does_not_stall() -> None:
    # 10 s of packets, then the clock jumps back an hour, then 10 s more
    ts = np.concatenate([np.arange(11), np.arange(11) - 3600]).astype(np.int64) * US
    clock = FakeClock(100.0)
    paced = Paced(ScriptedSource(split(ts, 7), stats=STATS), 10.0, clock=clock, sleep=clock.sleep)
    start = clock.now
    reads = drain(paced, clock)
    assert np.array_equal(released_ts(reads), ts)
    # 20 s of forward gaps at 10x: 2 s of wall time, not 362 s
    assert clock.now - start == pytest.approx(2.0, abs=0.06)


def test_long_gap_waits_at_most_max_gap() -> None:
    ts = np.array([0, 1, 86_400, 86_401], np.int64) * US
    clock = FakeClock(100.0)
    paced = Paced(
        ScriptedSource([make_batch(ts)], stats=STATS),
        1.0,
        max_gap_s=2.0,
        clock=clock,
        sleep=clock.sleep,
    )
    start = clock.now
    assert len(released_ts(drain(paced, clock))) == 4
    assert clock.now - start == pytest.approx(1 + 2 + 1, abs=0.06)


def test_batches_are_split_by_max_packets_and_share_the_buffer() -> None:
    batch = make_batch(np.zeros(10, np.int64))
    batch.data[:] = np.arange(batch.data.shape[0])
    clock = FakeClock(100.0)
    src = ScriptedSource([batch], stats=STATS)
    paced = Paced(src, 5.0, clock=clock, sleep=clock.sleep)
    parts = [paced.read_batch(4) for _ in range(3)]
    assert [p.n for p in parts if p is not None] == [4, 4, 2]
    # one copy of the packets' bytes, shared by the slices: a capture file cut while
    # the batch is paced out cannot take them away (scenarios/test_cut_captures.py)
    assert parts[0] is not None
    assert all(p is not None and p.data is parts[0].data for p in parts)
    assert not np.shares_memory(parts[0].data, batch.data)
    got = [p.data[p.offsets[i] : p.offsets[i] + 4].tolist() for p in parts if p for i in range(p.n)]
    assert got == [list(range(4 * i, 4 * i + 4)) for i in range(10)]
    assert all(p is not None and np.shares_memory(p.ts_us, batch.ts_us) for p in parts)
    # the wrapped source was read once: its buffer was not replaced under the views
    assert src.reads == 1
    assert paced.read_batch(4) is None


def test_empty_batch_from_source_passes_through_and_none_ends() -> None:
    clock = FakeClock(100.0)
    src = ScriptedSource([Batch.empty(), make_batch([5 * US])], stats=STATS)
    paced = Paced(src, 3.0, clock=clock, sleep=clock.sleep)
    first = paced.read_batch(10)
    assert first is not None
    assert first.n == 0
    second = paced.read_batch(10)
    assert second is not None
    assert second.n == 1
    assert paced.read_batch(10) is None
    assert paced.read_batch(10) is None


def test_a_slow_consumer_does_not_get_the_whole_debt_at_once() -> None:
    ts = np.arange(600, dtype=np.int64) * US
    clock = FakeClock(100.0)
    paced = Paced(
        ScriptedSource([make_batch(ts)], stats=STATS), 10.0, clock=clock, sleep=clock.sleep
    )
    assert paced.read_batch(1000) is not None
    clock.now += 30.0  # the pipeline spent 30 s on the first batch (kernels compiling)
    burst = paced.read_batch(1000)
    assert burst is not None
    # at most max_lag_s (1 s) of packet time at 10x, plus the packet due now
    assert burst.n <= 11
    assert len(released_ts(drain(paced, clock))) == 600 - 1 - burst.n


def test_speed_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Paced(ScriptedSource([], stats=STATS), 0.0)


def test_a_speed_past_max_speed_is_max_speed() -> None:
    # --speed 1e308 made the longest gap infinite: OverflowError at the start
    ts = np.array([0, 1, 86_400], np.int64) * US
    clock = FakeClock(100.0)
    paced = Paced(
        ScriptedSource([make_batch(ts)], stats=STATS), 1e308, clock=clock, sleep=clock.sleep
    )
    assert paced.speed == MAX_SPEED
    assert released_ts(drain(paced, clock)).tolist() == ts.tolist()
