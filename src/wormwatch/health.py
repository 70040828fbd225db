"""Capture health: rates, idle time, the counters of every stage, one Snapshot.

source -> decode -> classify -> aggregate -> judge -> **(health)** -> present.

In: the source (its kernel counters, and whether it is live), the decoder's
counters, the aggregate's read-out, and what the judge ranks. Out: the
:class:`~wormwatch.model.Snapshot` the display and the summaries show, and the
``host-table-saturated`` sensor record when the aggregate's host table
overflows.

Rates and idle time are per second of packet time on a replay (so a replay
reads the same at any speed) and of wall time on a live capture: the source
says which it is (:attr:`~wormwatch.source.Source.is_live`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from wormwatch.aggregate import AggregateCounts, Aggregator
from wormwatch.model import DecodeStats, HostView, Snapshot
from wormwatch.records import sensor_record
from wormwatch.source import Source

# at most one host-table-saturated record per hour of packet time
SATURATION_REPEAT_US = 3600 * 1_000_000


def saturation_record(now_us: int, counts: AggregateCounts) -> dict[str, object]:
    """The ``sensor`` record saying the host table overflowed."""
    return sensor_record(
        now_us,
        "host-table-saturated",
        max_hosts=counts.max_hosts,
        hosts_tracked=counts.hosts_tracked,
        hosts_evicted=counts.hosts_evicted,
        events_dropped=counts.events_dropped,
    )


@dataclass(frozen=True, slots=True)
class Judged:
    """What the judge contributes to a snapshot."""

    hosts: list[HostView]
    network_sync_r: float | None
    flagged: dict[str, int]
    find_hosts: Callable[[str], tuple[list[HostView], int]] | None = None


class Health:
    """The run's health figures, measured between snapshots.

    Args:
        source_name: what the display calls the source.
        clock: wall clock, injectable for tests.
    """

    def __init__(self, source_name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.source_name = source_name
        self.clock = clock
        self._wall_start = clock()
        self._last_relevant_wall = -1.0
        self._last_relevant_us = -1
        self._rate_mark: tuple[float, int, int, int, int] | None = None
        self._rates = (0.0, 0.0, 0.0)
        self._saturation_reported_us = -1

    def saw_events(self, newest_us: int) -> None:
        """A batch with relevant events arrived (its last at ``newest_us``)."""
        self._last_relevant_wall = self.clock()
        self._last_relevant_us = newest_us

    def saturation(self, agg: Aggregator) -> dict[str, object] | None:
        """The sensor record when the host table first overflows, then at
        most one per hour of packet time while it keeps overflowing."""
        now_us, counts = agg.now_us, agg.counts()
        if counts.hosts_evicted == 0 and counts.events_dropped == 0:
            return None
        last = self._saturation_reported_us
        if last >= 0 and now_us - last < SATURATION_REPEAT_US:
            return None
        self._saturation_reported_us = now_us
        return saturation_record(now_us, counts)

    def _measure(self, wall: float, is_live: bool, st: DecodeStats, now_us: int) -> float | None:
        """Update the rates since the last snapshot; the idle seconds."""
        mark = (wall, st.packets, st.dns_queries, st.syns, now_us)
        if self._rate_mark is not None:
            w0, p0, d0, s0, t0 = self._rate_mark
            span = (now_us - t0) / 1e6 if not is_live else wall - w0
            if span > 0:
                self._rates = ((mark[1] - p0) / span, (mark[2] - d0) / span, (mark[3] - s0) / span)
        self._rate_mark = mark
        if is_live:
            return None if self._last_relevant_wall < 0 else wall - self._last_relevant_wall
        if self._last_relevant_us < 0:
            return None
        return max(0.0, (now_us - self._last_relevant_us) / 1e6)

    def snapshot(
        self,
        source: Source,
        decode: DecodeStats,
        agg: Aggregator,
        judged: Judged,
        *,
        is_finished: bool = False,
    ) -> Snapshot:
        """What the sensor knows now, for the display and the summary."""
        wall = self.clock()
        is_live = source.is_live
        idle = self._measure(wall, is_live, decode, agg.now_us)
        sstats = source.stats()
        counts = agg.counts()
        return Snapshot(
            source=self.source_name,
            is_live=is_live,
            start_us=max(agg.start_us, 0),
            now_us=max(agg.now_us, 0),
            wall_elapsed_s=wall - self._wall_start,
            packets_per_s=self._rates[0],
            dns_per_s=self._rates[1],
            syn_per_s=self._rates[2],
            hosts_tracked=counts.hosts_tracked,
            hosts_dropped=counts.hosts_evicted,
            events_untracked=counts.events_dropped,
            keys_refused=counts.keys_refused,
            keys_dropped=counts.keys_dropped,
            decode=decode.as_dict(),
            kernel_dropped=sstats.kernel_dropped,
            kernel_received=sstats.kernel_received,
            interface_dropped=sstats.interface_dropped,
            idle_s=idle,
            network_sync_r=judged.network_sync_r,
            hosts=judged.hosts,
            bin_s=agg.bin_s,
            is_finished=is_finished,
            flagged=judged.flagged,
            find_hosts=judged.find_hosts,
        )
