"""Decode stage: a :class:`~wormwatch.model.Batch` of raw frames -> :class:`Events`.

source -> Batch -> **Decoder.decode** -> Events (DNS queries and SYNs to 135/139/445)
-> classify. The numba kernel in :mod:`wormwatch.kernels.decode` does the packet work
(rules: docs/DECODING.md); this wrapper owns the reusable buffers, grows them when a
batch holds more events than they fit, and keeps the running :class:`DecodeStats`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from wormwatch.kernels.decode import MAX_EVENTS_PER_PACKET, decode_packets
from wormwatch.model import (
    KIND_DNS,
    KIND_SYN,
    LINKTYPE_RAW,
    N_STATUS,
    NAME_SLOT,
    U8,
    Batch,
    DecodeStats,
    Events,
)


def _frozen(values: npt.NDArray[Any], dtype: type[np.generic]) -> npt.NDArray[Any]:
    """A contiguous read-only view: the kernel then sees one array type whatever the
    source made (a writable array, or a read-only ``np.frombuffer`` / mmap view), so it
    compiles exactly one signature."""
    view = np.ascontiguousarray(values, dtype).view()
    view.flags.writeable = False
    return view


def _check(batch: Batch) -> None:
    """The kernel trusts offsets and caplens; a packet outside ``data`` would make it
    read outside the buffer, so check them once per batch (vectorised)."""
    n = batch.n
    lengths = {len(a) for a in (batch.offsets, batch.caplens, batch.wirelens, batch.linktypes)}
    if lengths != {n}:
        raise ValueError(f"batch arrays disagree in length: {n} timestamps, {sorted(lengths)}")
    if n == 0:
        return
    ends = batch.offsets.astype(np.int64) + batch.caplens
    if batch.offsets.min() < 0 or batch.caplens.min() < 0 or ends.max() > batch.data.shape[0]:
        raise ValueError("batch has a packet outside its data buffer")


def _event_buffers(capacity: int) -> Events:
    return Events(
        n=0,
        ts_us=np.zeros(capacity, np.int64),
        src_hi=np.zeros(capacity, np.uint64),
        src_lo=np.zeros(capacity, np.uint64),
        dst_hi=np.zeros(capacity, np.uint64),
        dst_lo=np.zeros(capacity, np.uint64),
        kind=np.zeros(capacity, np.uint8),
        dport=np.zeros(capacity, np.uint16),
        qtype=np.zeros(capacity, np.uint16),
        names=np.zeros((capacity, NAME_SLOT), np.uint8),
        name_lens=np.zeros(capacity, np.int32),
    )


class Decoder:
    """Turns batches into events, reusing its buffers between calls.

    Args:
        max_events: initial event capacity. A batch with more events grows the
            buffers (they stay grown); no event is ever dropped.
    """

    def __init__(self, *, max_events: int = 65536) -> None:
        self._events = _event_buffers(max(max_events, MAX_EVENTS_PER_PACKET))
        self._status: U8 = np.zeros(0, np.uint8)
        self._n_last = 0
        self._stats = DecodeStats()

    @property
    def stats(self) -> DecodeStats:
        """Running totals over every batch decoded so far (``bytes``: captured bytes)."""
        return self._stats

    @property
    def last_status(self) -> U8:
        """Per-packet status (``wormwatch.model.ST_*``) of the last batch; a view of a
        reused buffer, valid until the next call."""
        return self._status[: self._n_last]

    def decode(self, batch: Batch) -> Events:
        """Decode one batch.

        Returns:
            The batch's events, in packet order; valid until the next call.

        Raises:
            ValueError: the batch's arrays disagree (a bug in the source): a packet
                outside ``data``, or per-packet arrays of different lengths.
        """
        n_packets = batch.n
        _check(batch)
        if self._status.shape[0] < n_packets:
            self._status = np.zeros(n_packets, np.uint8)
        data = _frozen(batch.data, np.uint8)
        offsets = _frozen(batch.offsets, np.int64)
        caplens = _frozen(batch.caplens, np.int32)
        linktypes = _frozen(batch.linktypes, np.int32)
        ts_us = _frozen(batch.ts_us, np.int64)
        ev = self._events
        first, n_events = 0, 0
        while True:
            first, n_events = decode_packets(
                data, offsets, caplens, linktypes, ts_us,
                first, n_events, self._status,
                ev.ts_us, ev.src_hi, ev.src_lo, ev.dst_hi, ev.dst_lo,
                ev.kind, ev.dport, ev.qtype, ev.names, ev.name_lens,
            )  # fmt: skip
            if first >= n_packets:
                break
            ev = self._grow(n_events)
        ev.n = n_events
        self._n_last = n_packets
        self._count(batch, ev)
        return ev

    def _grow(self, n_filled: int) -> Events:
        old = self._events
        new = _event_buffers(2 * old.kind.shape[0])
        for name in ("ts_us", "src_hi", "src_lo", "dst_hi", "dst_lo", "kind", "dport", "qtype"):
            getattr(new, name)[:n_filled] = getattr(old, name)[:n_filled]
        new.names[:n_filled] = old.names[:n_filled]
        new.name_lens[:n_filled] = old.name_lens[:n_filled]
        self._events = new
        return new

    def _count(self, batch: Batch, ev: Events) -> None:
        stats = self._stats
        stats.packets += batch.n
        stats.bytes += int(batch.caplens.sum(dtype=np.int64))
        counts = np.bincount(self.last_status, minlength=N_STATUS)
        for i in range(N_STATUS):
            stats.status[i] += int(counts[i])
        kinds = np.bincount(ev.kind[: ev.n], minlength=KIND_SYN + 1)
        stats.dns_queries += int(kinds[KIND_DNS])
        stats.syns += int(kinds[KIND_SYN])


def warm_up() -> None:
    """Compile (or load from cache) the kernels on a one-packet batch."""
    # one raw IPv4 UDP packet to port 53 with a one-question DNS query for "a"
    packet = bytes.fromhex(
        "4500002f00000000401100000a0000010a000002"  # IPv4, 47 bytes, UDP
        "d4310035001b00000001"  # UDP to 53, 27 bytes; DNS id 1
        "0100000100000000000001610000010001"  # RD, QDCOUNT 1, "a" A IN
    )
    batch = Batch(
        data=np.frombuffer(packet, np.uint8),
        ts_us=np.zeros(1, np.int64),
        offsets=np.zeros(1, np.int64),
        caplens=np.array([len(packet)], np.int32),
        wirelens=np.array([len(packet)], np.int32),
        linktypes=np.array([LINKTYPE_RAW], np.int32),
    )
    Decoder(max_events=MAX_EVENTS_PER_PACKET).decode(batch)
