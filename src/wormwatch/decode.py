"""Decode stage: a :class:`~wormwatch.model.Batch` of raw frames -> :class:`Events`.

source -> Batch -> **Decoder.decode** -> Events (DNS queries, DNS answers, SYNs to 135/139/445)
-> classify. The numba kernel in :mod:`wormwatch.kernels.decode` does the packet work
(rules: docs/DECODING.md); this wrapper owns the reusable buffers, grows them when a
batch holds more events than they fit, and keeps the running :class:`DecodeStats`.
IP fragments go to a :class:`~wormwatch.reassemble.Reassembler`; the datagrams they
complete are decoded by the same kernel in a second pass over a small raw-IP side batch,
and their events are spliced in at the completing fragment.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from wormwatch.dnstcp import TcpFlows
from wormwatch.kernels.decode import (
    F_PACKET,
    F_ROW,
    MAX_EVENTS_PER_PACKET,
    N_FRAG_COLUMNS,
    N_SEG_COLUMNS,
    T_PACKET,
    T_ROW,
    decode_packets,
)
from wormwatch.model import (
    EVENT_COLUMNS,
    I64,
    KIND_ANSWER,
    KIND_DNS,
    KIND_SYN,
    LINKTYPE_RAW,
    N_STATUS,
    ST_IGNORED,
    U8,
    Batch,
    DecodeStats,
    Events,
)
from wormwatch.reassemble import Completed, Reassembler


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
    return Events.allocate(capacity)


class Decoder:
    """Turns batches into events, reusing its buffers between calls.

    Args:
        max_events: initial event capacity. A batch with more events grows the
            buffers (they stay grown); no event is ever dropped.
        reassembler: the fragment pool (default: a :class:`Reassembler` with its
            defaults); state persists across batches.
        reassemble: False leaves every fragment a ``fragment`` with no events and reads
            every DNS-over-TCP segment as the first of its flow, so that each packet's
            status depends on that packet alone (the per-frame fuzz comparison with
            ``testkit/reference.py``'s ``decode_frame`` needs this).
    """

    def __init__(
        self,
        *,
        max_events: int = 65536,
        reassembler: Reassembler | None = None,
        reassemble: bool = True,
    ) -> None:
        self._events = _event_buffers(max(max_events, MAX_EVENTS_PER_PACKET))
        self._status: U8 = np.zeros(0, np.uint8)
        self._frags: I64 = np.zeros((0, N_FRAG_COLUMNS), np.int64)
        self._segs: I64 = np.zeros((0, N_SEG_COLUMNS), np.int64)
        self._tcp = TcpFlows(keep=reassemble)
        self._n_last = 0
        self._stats = DecodeStats()
        self._reassembler = Reassembler() if reassembler is None else reassembler
        self._is_reassembling = reassemble
        # the second pass (datagrams completed by fragments) has buffers of its own
        self._side: Decoder | None = None

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
        _check(batch)
        data = _frozen(batch.data, np.uint8)
        ts_us = _frozen(batch.ts_us, np.int64)
        ev, n_frag, n_seg = self._first_pass(batch, data, ts_us)
        if n_seg > 0:
            ev = self._splice_tcp(data, ts_us, n_seg, n_frag, ev)
        if n_frag > 0 and self._is_reassembling:
            completed = self._reassembler.feed(data, ts_us, self._frags[:n_frag])
            if completed is not None:
                ev = self._splice(completed, ts_us, ev)
        self._n_last = batch.n
        self._count(batch, ev, n_frag)
        return ev

    def _first_pass(self, batch: Batch, data: U8, ts_us: I64) -> tuple[Events, int, int]:
        n_packets = batch.n
        if self._status.shape[0] < n_packets:
            self._status = np.zeros(n_packets, np.uint8)
            self._frags = np.zeros((n_packets, N_FRAG_COLUMNS), np.int64)
            self._segs = np.zeros((n_packets, N_SEG_COLUMNS), np.int64)
        offsets = _frozen(batch.offsets, np.int64)
        caplens = _frozen(batch.caplens, np.int32)
        linktypes = _frozen(batch.linktypes, np.int32)
        ev = self._events
        first, n_events, n_frag, n_seg = 0, 0, 0, 0
        while True:
            first, n_events, n_frag, n_seg = decode_packets(
                data, offsets, caplens, linktypes, ts_us,
                first, n_events, self._status,
                ev.ts_us, ev.src_hi, ev.src_lo, ev.dst_hi, ev.dst_lo,
                ev.kind, ev.dport, ev.qtype, ev.names, ev.name_lens, ev.sport, ev.status, ev.rcode,
                self._frags, n_frag, self._segs, n_seg,
            )  # fmt: skip
            if first >= n_packets:
                break
            ev = self._grow(n_events, 2 * ev.kind.shape[0])
        ev.n = n_events
        return ev, n_frag, n_seg

    def _splice_tcp(self, data: U8, ts_us: I64, n_seg: int, n_frag: int, ev: Events) -> Events:
        """Walk the DNS-over-TCP segments through the flow table and insert the events
        of the messages they complete at their packets; fragment rows that come after
        them move along."""
        segs = self._segs[:n_seg]
        side, packet = self._tcp.feed(data, ts_us, segs, self._status)
        if side.n == 0:
            return ev
        at = segs[np.searchsorted(segs[:, T_PACKET], packet), T_ROW]
        if n_frag > 0:
            # (row, packet) orders the packets that start at the same event row
            n = self._status.shape[0] + 1
            frags = self._frags[:n_frag]
            frag_keys = frags[:, F_ROW] * n + frags[:, F_PACKET]
            frags[:, F_ROW] += np.searchsorted(at * n + packet, frag_keys)
        return self._insert(ev, at, side)

    def _insert(self, ev: Events, at: I64, side: Events) -> Events:
        """``side``'s events into ``ev``, each before the main event at its row in
        ``at`` (ascending; np.insert semantics)."""
        n_main, n_side = ev.n, side.n
        total = n_main + n_side
        if total > ev.kind.shape[0]:
            ev = self._grow(n_main, max(total, 2 * ev.kind.shape[0]))
        main_to = np.arange(n_main) + np.searchsorted(at, np.arange(n_main), side="right")
        side_to = at + np.arange(n_side)
        for name, _, _ in EVENT_COLUMNS:
            column = getattr(ev, name)
            column[main_to] = column[:n_main].copy()
            column[side_to] = getattr(side, name)[:n_side]
        ev.n = total
        return ev

    def _splice(self, completed: Completed, ts_us: I64, ev: Events) -> Events:
        """Decode the completed datagrams and insert their events at their completing
        fragments (vectorised: one pass per batch, whatever the number of datagrams)."""
        if self._side is None:
            # the side pass never reassembles: its fragments (nested) stay fragments
            self._side = Decoder(max_events=MAX_EVENTS_PER_PACKET, reassemble=False)
        side = self._side
        side_batch = completed.batch
        side_data = _frozen(side_batch.data, np.uint8)
        side_ts = _frozen(side_batch.ts_us, np.int64)
        side_ev, _, n_seg = side._first_pass(side_batch, side_data, side_ts)
        if n_seg > 0:
            # a DNS-over-TCP segment in fragments is read as the first of its flow
            side_ev = side._splice_tcp(side_data, side_ts, n_seg, 0, side_ev)
        frag_rows = self._frags[completed.rows]
        packets = frag_rows[:, F_PACKET]
        self._status[packets] = side._status[: completed.batch.n]
        n_side = side_ev.n
        if n_side == 0:
            return ev
        # the side batch's timestamps are datagram indices (see Reassembler.feed)
        datagram = side_ev.ts_us[:n_side].copy()
        side_ev.ts_us[:n_side] = ts_us[packets[datagram]]
        return self._insert(ev, frag_rows[datagram, F_ROW], side_ev)

    def _grow(self, n_filled: int, capacity: int) -> Events:
        old = self._events
        new = _event_buffers(capacity)
        for name, _, _ in EVENT_COLUMNS:
            getattr(new, name)[:n_filled] = getattr(old, name)[:n_filled]
        self._events = new
        return new

    def _count(self, batch: Batch, ev: Events, n_frag: int) -> None:
        stats = self._stats
        stats.packets += batch.n + batch.n_skipped
        stats.bytes += int(batch.caplens.sum(dtype=np.int64)) + batch.skipped_bytes
        counts = np.bincount(self.last_status, minlength=N_STATUS)
        # the packets the source's walker left out are ones decoded as ignored
        counts[ST_IGNORED] += batch.n_skipped
        for i in range(N_STATUS):
            stats.status[i] += int(counts[i])
        kinds = np.bincount(ev.kind[: ev.n], minlength=KIND_ANSWER + 1)
        stats.dns_queries += int(kinds[KIND_DNS])
        stats.syns += int(kinds[KIND_SYN])
        stats.dns_answers += int(kinds[KIND_ANSWER])
        # the pool changes only when fragments arrive (timeouts are checked then too)
        if n_frag > 0 or not stats.fragments:
            stats.fragments = self._reassembler.counters()


def warm_up(*, fragments: bool = True, tcp: bool = True) -> Events:
    """Compile (or load from cache) the kernels: the decoder's on a query packet, the
    reassembler's (``fragments``) on the same query split into two fragments, the
    DNS-over-TCP flow kernel's (``tcp``) on the same query over TCP.

    Returns:
        The three query events decoded (the whole packet, the reassembled one, the TCP
        one), for warming the stages after this one.
    """
    # one raw IPv4 UDP packet to port 53 with a one-question DNS query for "a"
    packet = bytes.fromhex(
        "4500002f00000000401100000a0000010a000002"  # IPv4, 47 bytes, UDP
        "d4310035001b00000001"  # UDP to 53, 27 bytes; DNS id 1
        "0100000100000000000001610000010001"  # RD, QDCOUNT 1, "a" A IN
    )
    # the same datagram as two fragments: bytes 0..16 (MF set), then 16..27 at offset 2
    first = bytes.fromhex("4500002400002000401100000a0000010a000002") + packet[20:36]
    last = bytes.fromhex("4500001f00000002401100000a0000010a000002") + packet[36:]
    # the same query over TCP: IPv4, 61 bytes; TCP to 53, seq 1; length 19, the query
    over_tcp = (
        bytes.fromhex("4500003d00000000400600000a0000010a000002")
        + bytes.fromhex("d432003500000001000000005018000000000000")
        + bytes.fromhex("00130001")
        + packet[30:]
    )
    frames = (packet, *((first, last) if fragments else ()), *((over_tcp,) if tcp else ()))
    lengths = np.array([len(f) for f in frames], np.int32)
    batch = Batch(
        data=np.frombuffer(b"".join(frames), np.uint8),
        ts_us=np.zeros(len(frames), np.int64),
        offsets=np.concatenate(([0], np.cumsum(lengths[:-1]))).astype(np.int64),
        caplens=lengths,
        wirelens=lengths.copy(),
        linktypes=np.full(len(frames), LINKTYPE_RAW, np.int32),
    )
    decoder = Decoder(max_events=MAX_EVENTS_PER_PACKET)
    return decoder.decode(batch)
