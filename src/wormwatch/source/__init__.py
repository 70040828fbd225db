"""Sources: where batches of packets come from (files, standard input, interfaces).

Every source implements :class:`Source`; the pipeline cannot tell replay from
live capture. This package is the only place pcapy is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from wormwatch.model import Batch


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """One capture worker's health (``--workers N``): alive, and its handle's kernel counts."""

    is_alive: bool
    kernel_received: int
    kernel_dropped: int
    interface_dropped: int


@dataclass(slots=True)
class SourceStats:
    """What a source knows about its own health.

    Kernel counters are None for files. ``warnings`` are one-line messages
    (a truncated last record, a skipped unknown block) for the operator.
    """

    packets: int = 0
    bytes: int = 0
    kernel_received: int | None = None
    kernel_dropped: int | None = None
    interface_dropped: int | None = None
    warnings: list[str] = field(default_factory=list)
    # live capture with fanout workers: one entry per worker, in handle order
    workers: tuple[WorkerStats, ...] = ()


class Source(Protocol):
    """One interface for live capture and replay.

    ``read_batch`` returns None when the source is finished, an empty batch
    (``n == 0``) on a timeout with nothing captured, else up to ``max_packets``
    packets. ``name`` is what the display shows (interface or file names).
    ``is_live`` says whether packets arrive in wall-clock time (a capture:
    rates and idle time are measured on the wall clock, reads return at a
    timeout) or are read from a recording (rates in packet time).
    """

    name: str
    is_live: bool

    def read_batch(self, max_packets: int) -> Batch | None: ...

    def stats(self) -> SourceStats: ...

    def close(self) -> None: ...


@runtime_checkable
class MapsAhead(Protocol):
    """A source whose next bytes another thread can map in ahead of the reader.

    ``map_ahead`` maps one more step of the file ahead of the reader into the
    process, so the reader's thread takes no page faults there; False when
    nothing is left to map that far ahead. Called while the caller would
    otherwise wait for the reader (``wormwatch.feed.DecodeAheadFeed``).
    """

    def map_ahead(self) -> bool: ...
