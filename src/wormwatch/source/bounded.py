"""Sources that end before their packets do: after ``--duration``, or at once.

In: a :class:`~wormwatch.source.Source` and a wall-clock budget, or nothing (a run
stopped before its capture was opened). Out: the same batches until the budget is spent,
then the end (``None``); the stopped run's source ends at its first read.
"""

from __future__ import annotations

import time

from wormwatch.model import Batch
from wormwatch.source import Source, SourceStats


class Bounded:
    """Ends a source after ``duration_s`` of wall time (``--duration``)."""

    def __init__(self, inner: Source, duration_s: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.is_live = inner.is_live
        self.deadline = time.monotonic() + duration_s

    def read_batch(self, max_packets: int) -> Batch | None:
        if time.monotonic() >= self.deadline:
            return None
        return self.inner.read_batch(max_packets)

    def stats(self) -> SourceStats:
        return self.inner.stats()

    def close(self) -> None:
        self.inner.close()


class NoPackets:
    """The source of a run stopped before it began: it ends at once. ``is_live``: the
    run was a capture (its summary then spans the run's wall time, not 1970)."""

    def __init__(self, name: str, *, is_live: bool = False) -> None:
        self.name = name
        self.is_live = is_live

    def read_batch(self, max_packets: int) -> Batch | None:
        return None

    def stats(self) -> SourceStats:
        return SourceStats()

    def close(self) -> None:
        pass
