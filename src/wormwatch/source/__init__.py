"""Sources: where batches of packets come from (files, standard input, interfaces).

Every source implements :class:`Source`; the pipeline cannot tell replay from
live capture. This package is the only place pcapy is imported.
"""

from __future__ import annotations

from typing import Protocol

from wormwatch.model import Batch, SourceStats


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
