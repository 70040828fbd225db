"""Paced replay: any source, released so packet time runs at X times wall time.

In: a :class:`~wormwatch.source.Source` (usually a pcap file) and a speed.
Out: the same packets as batches, each batch holding only the packets that are
due by now, so ``wormwatch replay --speed 60`` plays a 30-minute capture in
30 seconds, smoothly, instead of in one jump. Detection uses packet time only,
so the answer does not depend on the speed.

Pacing follows a *virtual* packet clock: the running sum of the gaps between
consecutive packets, where a gap that goes backwards (timestamps out of order,
files concatenated out of order) counts as zero and a gap longer than
``max_gap_s`` of wall time (a quiet night in a week-long capture, a bogus
timestamp) counts as ``max_gap_s``. Neither can stall the replay.

When the consumer falls more than ``max_lag_s`` behind the schedule (a slow
first batch while kernels load), the schedule slides rather than releasing
the whole debt in one jump.

A call never sleeps longer than ``max_sleep_s``: when nothing is due yet it
returns an empty batch, as a live source does on a timeout, so the pipeline
keeps redrawing and reading keys.

Batches returned are views into the wrapped source's batch (no copy); the
wrapped source is only read again once every packet of its last batch has
been released, so those views stay valid for as long as a source's batch is
documented to.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from wormwatch.model import Batch
from wormwatch.source import Source, SourceStats

US_PER_S = 1_000_000
# a faster speed is taken as this one (a day of packets in ~0.1 us): speed * US_PER_S
# and the schedule's arithmetic stay finite
MAX_SPEED = 1e12


def _slice(batch: Batch, start: int, stop: int) -> Batch:
    return Batch(
        batch.data,
        batch.ts_us[start:stop],
        batch.offsets[start:stop],
        batch.caplens[start:stop],
        batch.wirelens[start:stop],
        batch.linktypes[start:stop],
    )


def _detached(batch: Batch) -> Batch:
    """``batch`` with its packets' bytes copied out of the source's buffer.

    A paced batch is handed out slice by slice over seconds or minutes; a capture file
    cut meanwhile (tcpdump restarted onto it) took the mapped pages of the slices still
    to come with it, and decoding them raised SIGBUS. Pacing is slow by design, so the
    copy costs nothing that shows.
    """
    caplens = batch.caplens.astype(np.int64)
    ends = np.cumsum(caplens)
    starts = ends - caplens
    index = np.repeat(batch.offsets - starts, caplens) + np.arange(int(ends[-1]))
    data = batch.data[index]
    data.flags.writeable = False  # as a mapped file's: the kernels are compiled for it
    return Batch(data, batch.ts_us, starts, batch.caplens, batch.wirelens, batch.linktypes)


class Paced:
    """Wrap ``source`` so packet time advances at ``speed`` times wall time.

    Args:
        source: any source.
        speed: packet seconds per wall second; None passes batches through as
            fast as they come.
        max_sleep_s: the longest one :meth:`read_batch` call sleeps.
        max_gap_s: the longest wall-time wait for one gap between packets.
        max_lag_s: how far (wall seconds) the replay may fall behind its
            schedule; beyond that the schedule moves instead of releasing a
            burst of overdue packets at once.
        clock: wall clock in seconds (injectable for tests).
        sleep: sleep function (injectable for tests).
    """

    # a replay at wall-clock speed is still a replay: rates in packet time
    is_live = False

    def __init__(
        self,
        source: Source,
        speed: float | None,
        *,
        max_sleep_s: float = 0.05,
        max_gap_s: float = 5.0,
        max_lag_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be positive or None, got {speed!r}")
        self.source = source
        self.name = source.name
        self.speed = speed if speed is None else min(speed, MAX_SPEED)
        self.max_sleep_s = max_sleep_s
        self.max_gap_us = int(max_gap_s * (self.speed or 1.0) * US_PER_S)
        self.max_lag_s = max_lag_s
        self.clock = clock
        self.sleep = sleep
        self._pending: Batch | None = None
        self._virtual: np.ndarray = np.zeros(0, np.int64)
        self._cursor = 0
        self._is_finished = False
        self._last_ts_us: int | None = None
        self._last_virtual_us = 0
        self._wall_start = 0.0  # wall clock at the first packet

    # -- Source ---------------------------------------------------------------------

    def stats(self) -> SourceStats:
        return self.source.stats()

    def close(self) -> None:
        self.source.close()

    def read_batch(self, max_packets: int) -> Batch | None:
        """The packets due by now (at most ``max_packets``); an empty batch
        when none is due yet; None when the source is finished."""
        speed = self.speed
        if speed is None:
            return self.source.read_batch(max_packets)
        if not self._has_pending():
            if self._is_finished:
                return None
            batch = self.source.read_batch(max_packets)
            if batch is None:
                self._is_finished = True
                return None
            if batch.n == 0:
                return batch
            self._take(_detached(batch))
        assert self._pending is not None  # for mypy: _has_pending() or _take()
        return self._release(self._pending, max_packets, speed)

    # -- pacing -------------------------------------------------------------------------

    def _has_pending(self) -> bool:
        return self._pending is not None and self._cursor < self._pending.n

    def _take(self, batch: Batch) -> None:
        """Keep ``batch`` and compute each packet's virtual time."""
        ts = batch.ts_us.astype(np.int64, copy=False)
        prev = ts[0] if self._last_ts_us is None else self._last_ts_us
        gaps = np.diff(ts, prepend=prev)
        np.clip(gaps, 0, self.max_gap_us, out=gaps)
        self._virtual = self._last_virtual_us + np.cumsum(gaps)
        self._last_ts_us = int(ts[-1])
        self._last_virtual_us = int(self._virtual[-1])
        if self._pending is None:
            self._wall_start = self.clock()
        self._pending = batch
        self._cursor = 0

    def _due_virtual_us(self, speed: float) -> float:
        return (self.clock() - self._wall_start) * speed * US_PER_S

    def _release(self, pending: Batch, max_packets: int, speed: float) -> Batch:
        start = self._cursor
        remaining = self._virtual[start:]
        lag_s = (self._due_virtual_us(speed) - remaining[0]) / (speed * US_PER_S)
        if lag_s > self.max_lag_s:
            # the consumer fell behind (a slow first batch, a busy machine):
            # forgive the debt beyond max_lag_s instead of releasing it at once
            self._wall_start += lag_s - self.max_lag_s
        n_due = int(np.searchsorted(remaining, self._due_virtual_us(speed), side="right"))
        if n_due == 0:
            wait_s = (remaining[0] - self._due_virtual_us(speed)) / (speed * US_PER_S)
            if wait_s > self.max_sleep_s:
                self.sleep(self.max_sleep_s)
                return Batch.empty()
            self.sleep(max(0.0, wait_s))
            # the next packet is due now (even if float rounding says a hair later)
            n_due = max(1, int(np.searchsorted(remaining, self._due_virtual_us(speed), "right")))
        stop = start + min(n_due, max(1, max_packets))
        self._cursor = stop
        return _slice(pending, start, stop)
