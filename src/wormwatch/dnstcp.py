"""DNS over TCP: the flow table that turns TCP segments to port 53 into queries.

decode (``decode_packets`` marks each TCP segment to port 53 with a T_* row) ->
**TcpFlows.feed** -> the events of the DNS messages those segments complete, each at
its segment's packet, spliced into the batch's events by the decoder. The table
(bounded, packet-time timeout, least recently used evicted) lives here across
batches; the walk is the numba kernel in :mod:`wormwatch.kernels.dnstcp`, the rule
docs/DECODING.md "DNS over TCP".
"""

from __future__ import annotations

import numpy as np

from wormwatch.kernels.decode import MAX_EVENTS_PER_PACKET
from wormwatch.kernels.dnstcp import BUF, N_KEY, S_FREE, S_HEAD, S_TAIL, tcp_dns
from wormwatch.model import EVENT_COLUMNS, I64, U8, Events

MAX_FLOWS = 1024
TIMEOUT_S = 120.0


class TcpFlows:
    """The per-flow state of DNS over TCP.

    Args:
        max_flows: flows remembered at once (the least recently used goes first).
        timeout_s: a flow idle this long (packet time) is forgotten.
        keep: False remembers nothing between segments: each is read as the first of
            its flow (the per-frame comparison with the reference needs this).
    """

    def __init__(
        self, *, max_flows: int = MAX_FLOWS, timeout_s: float = TIMEOUT_S, keep: bool = True
    ) -> None:
        n = max(1, max_flows)
        self.keep = keep
        self.timeout_us = round(timeout_s * 1e6)
        self.keys = np.zeros((n, N_KEY), np.uint64)
        self.last_us = np.full(n, -1, np.int64)
        self.expect = np.zeros(n, np.int64)
        self.seen = np.zeros(n, np.int64)
        self.kept = np.zeros(n, np.int64)
        self.bufs = np.zeros(n * BUF, np.uint8)
        # the hash index (slot numbers, -1 empty; at most a quarter full), per slot the
        # use order (previous, next slot) and home position, the free slots and (head,
        # tail, free count)
        self.index = np.full(1 << (4 * n - 1).bit_length(), -1, np.int64)
        self.links = np.full((n, 3), -1, np.int64)
        self.free = np.arange(n - 1, -1, -1, dtype=np.int64)
        self.state = np.zeros(3, np.int64)
        self.state[S_HEAD] = self.state[S_TAIL] = -1
        self.state[S_FREE] = n
        self._side = Events.allocate(MAX_EVENTS_PER_PACKET)
        self._packet: I64 = np.zeros(MAX_EVENTS_PER_PACKET, np.int64)

    def feed(self, data: U8, ts_us: I64, segs: I64, statuses: U8) -> tuple[Events, I64]:
        """Walk one batch's segment rows; set their packets' statuses.

        Returns:
            The events of the completed queries (valid until the next call) and each
            one's packet index.
        """
        first, n = 0, 0
        while True:
            side = self._side
            first, n = tcp_dns(
                data, ts_us, segs, first, segs.shape[0], statuses, self.keep, self.timeout_us,
                self.keys, self.last_us, self.expect, self.seen, self.kept, self.bufs,
                self.index, self.links, self.free, self.state, self._packet,
                side.ts_us, side.src_hi, side.src_lo, side.dst_hi, side.dst_lo, side.kind,
                side.dport, side.qtype, side.names, side.name_lens, side.sport, side.status,
                side.rcode, n,
            )  # fmt: skip
            if first >= segs.shape[0]:
                break
            self._grow(n, 2 * side.qtype.shape[0])
        side = self._side
        side.n = n
        return side, self._packet[:n]

    def _grow(self, n_filled: int, capacity: int) -> None:
        new = Events.allocate(capacity)
        packet = np.zeros(capacity, np.int64)
        packet[:n_filled] = self._packet[:n_filled]
        for name, _, _ in EVENT_COLUMNS:
            getattr(new, name)[:n_filled] = getattr(self._side, name)[:n_filled]
        self._side, self._packet = new, packet


__all__ = ["TcpFlows"]
