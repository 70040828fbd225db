"""Feeds: how decoded batches reach the pipeline's aggregate stage.

In: a :class:`~wormwatch.source.Source` and a decode function (batch ->
events and keyword indices). Out: decoded items, in packet order, via
``next(timeout_s)``; :data:`END` when the source is finished.

:func:`open_feed` picks the feed from what the source says it is.
:class:`DirectFeed` decodes in the caller's thread. :class:`DecodeAheadFeed`
reads and decodes in a second thread while the caller aggregates the batch
before: the walker and decode kernels release the GIL (``nogil=True``), so
replay uses both cores. Order is kept (one FIFO queue), so the results are
those of the direct feed, packet for packet.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable
from typing import Final

import numpy as np
import numpy.typing as npt

from wormwatch.dganame import Scored
from wormwatch.model import Batch, DecodeStats, Events
from wormwatch.source import MapsAhead, Source

# events, their keyword indices, the name scores of their NXDOMAIN answers
Decoded = tuple[Events, npt.NDArray[np.int16], Scored | None]
DecodeFn = Callable[[Batch], Decoded | None]


class End:
    """The source is finished."""


END: Final = End()


class DirectFeed:
    """Read and decode in the caller's thread (live capture, tests)."""

    def __init__(self, source: Source, decode: DecodeFn, batch_packets: int) -> None:
        self.source = source
        self.decode = decode
        self.batch_packets = batch_packets

    def next(self, timeout_s: float) -> Decoded | End | None:
        """The next decoded batch; None when it held nothing relevant."""
        del timeout_s  # the source's own read timeout bounds the wait
        batch = self.source.read_batch(self.batch_packets)
        if batch is None:
            return END
        # a batch of only skipped packets still counts them
        return self.decode(batch) if batch.n or batch.n_skipped else None

    def counted(self) -> DecodeStats | None:
        """None: the decoder's own totals are those of the batches handed out."""
        return None

    def close(self) -> None:
        """Nothing to stop."""


# a decoded batch (or None: nothing relevant; or the end) and the decoder's totals after it
_Item = tuple[Decoded | End | None, DecodeStats]


def _copied(stats: DecodeStats) -> DecodeStats:
    """A copy the decoder's next batch leaves alone."""
    return dataclasses.replace(stats, status=list(stats.status), fragments=dict(stats.fragments))


def _owned(events: Events, keyword_idx: npt.NDArray[np.int16], scored: Scored | None) -> Decoded:
    """Copies of the valid rows: the decoder and classifier reuse their buffers
    (the scores are new arrays each batch)."""
    return events.owned(), keyword_idx[: events.n].copy(), scored


class DecodeAheadFeed:
    """Read and decode in a worker thread, a few batches ahead (replay).

    An error in the worker (a capture that cannot be read further) is
    raised again by :meth:`next` in the caller's thread. Each item carries the
    decoder's totals as of its batch (:meth:`counted`), so that a run stopped with
    batches decoded ahead reports the packets it counted, not those it read.
    """

    def __init__(
        self,
        source: Source,
        decode: DecodeFn,
        batch_packets: int,
        *,
        depth: int = 3,
        stats: Callable[[], DecodeStats] = DecodeStats,
    ) -> None:
        self._direct = DirectFeed(source, decode, batch_packets)
        self._map_ahead = source.map_ahead if isinstance(source, MapsAhead) else None
        self._stats = stats
        self._counted = DecodeStats()
        self._queue: queue.Queue[_Item | BaseException] = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="wormwatch-decode", daemon=True)
        self._thread.start()

    def _put(self, item: _Item | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
            except queue.Full:
                continue
            return True
        return False

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._direct.next(0.0)
                totals = _copied(self._stats())
                if isinstance(item, End):
                    self._put((END, totals))
                    return
                if not self._put((None if item is None else _owned(*item), totals)):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            self._put(err)

    def next(self, timeout_s: float) -> Decoded | End | None:
        """The next decoded batch; None if none came within ``timeout_s``.

        While none is ready, the reader's next pages are mapped in from here
        (:class:`~wormwatch.source.MapsAhead`), so that its thread does not stop
        to fault them in.
        """
        if self._map_ahead is not None:
            while self._queue.empty() and self._map_ahead():
                pass
        try:
            item = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            # raised again here, with the worker's traceback
            raise item
        decoded, self._counted = item
        return decoded

    def counted(self) -> DecodeStats:
        """The decoder's totals as of the last batch :meth:`next` handed out."""
        return self._counted

    def close(self) -> None:
        """Stop the worker and wait for it."""
        self._stop.set()
        self._thread.join(timeout=5.0)


Feed = DirectFeed | DecodeAheadFeed


def open_feed(
    source: Source,
    decode: DecodeFn,
    batch_packets: int,
    *,
    decode_ahead: bool,
    stats: Callable[[], DecodeStats] = DecodeStats,
) -> Feed:
    """The feed for ``source``: decode-ahead for a replay (unless turned off),
    direct for a live capture, whose reads return at the capture's timeout.
    ``stats``: the decoder's running totals, read after each batch it decodes."""
    if source.is_live or not decode_ahead:
        return DirectFeed(source, decode, batch_packets)
    return DecodeAheadFeed(source, decode, batch_packets, stats=stats)
