"""Fakes for the seams where the pipeline meets the outside: a source, keys, a clock, a sink.

Each is the smallest thing that honours the real protocol (``wormwatch.source.Source``,
the presenter's key reader, a ``time.monotonic``-like clock with its ``sleep``, an
alert sink) and records what was asked of it, so a test can check both sides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Generic, TypeVar

from wormwatch.model import Batch
from wormwatch.source import SourceStats

K = TypeVar("K")


class FakeClock:
    """A wall clock that moves only when someone sleeps (or a test sets ``now``)."""

    def __init__(self, start_s: float = 0.0) -> None:
        self.now = start_s
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedSource:
    """A :class:`~wormwatch.source.Source` that hands out the given batches, then None."""

    def __init__(
        self,
        batches: Sequence[Batch],
        *,
        name: str = "scripted.pcap",
        is_live: bool = False,
        stats: SourceStats | None = None,
    ) -> None:
        self.name = name
        self.is_live = is_live
        self.batches = list(batches)
        self.reads = 0
        self.closed = False
        self._stats = SourceStats() if stats is None else stats

    def read_batch(self, max_packets: int) -> Batch | None:
        self.reads += 1
        return self.batches.pop(0) if self.batches else None

    def stats(self) -> SourceStats:
        return self._stats

    def close(self) -> None:
        self.closed = True


class ScriptedKeys(Generic[K]):
    """Key batches handed out one per read; fails the test when it runs dry while
    the presenter still waits (instead of hanging)."""

    def __init__(self, script: Sequence[Sequence[K]] | None = None) -> None:
        self.script = [list(keys) for keys in script or []]
        self.opened = 0
        self.restored = 0

    def open(self) -> None:
        self.opened += 1

    def restore(self) -> None:
        self.restored += 1

    def wait(self, timeout_s: float) -> bool:
        if not self.script:
            raise AssertionError("the presenter waited for keys that never come")
        return bool(self.script[0])

    def read_keys(self) -> list[K]:
        return self.script.pop(0) if self.script else []


class RecordSink:
    """An alert/record sink that keeps what it is given."""

    def __init__(self) -> None:
        self.records: list[dict[str, object]] = []

    def write(self, record: Mapping[str, object]) -> None:
        self.records.append(dict(record))

    def of_type(self, event_type: str) -> list[dict[str, object]]:
        return [r for r in self.records if r.get("event_type") == event_type]
