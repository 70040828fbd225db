"""Reference DNS over TCP: docs/DECODING.md "DNS over TCP" written out plainly.

Per flow (one direction of a connection: source address, destination address, source
port, destination port; one of the ports is 53) it remembers where the next unread
byte of the stream is (``expect``, a TCP sequence number) and the message in
progress: how many of its bytes were seen (the 2-byte length prefix included) and
the first ``BUF`` of them. A message counts when its last byte arrives, in the
segment that completes it, and is read from those first bytes. Bytes before
``expect`` (retransmissions, the rest of a message already read) are not read again;
after a gap (a segment beyond ``expect``), the message in progress is dropped and
the segment is read from its first byte. The table holds at most ``max_flows`` flows
(the least recently used goes first) and forgets a flow idle for ``timeout_us``.
``max_flows = 0`` keeps nothing: every segment is read as the first of its flow.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from wormwatch.model import ST_IGNORED, ST_MALFORMED, ST_OK, ST_TRUNCATED

# bytes kept of the message in progress, its length prefix included
BUF = 512
DNS_HEADER = 12
SEQ_MOD = 1 << 32

# one DNS event of a message: (kind, qtype, name, rcode)
Message = tuple[int, int, bytes, int]
# parse a complete-header message -> (event, status), or None when it is neither a
# query to port 53 nor an answer from it
MessageReader = Callable[[bytes], "tuple[Message, int] | None"]
FlowKey = tuple[str, str, int, int]


@dataclass
class _Flow:
    expect: int
    last_us: int
    seen: int = 0
    buf: bytearray = field(default_factory=bytearray)


def _first(status: int, new: int) -> int:
    return new if status == ST_OK else status


class RefTcpFlows:
    """The bounded flow table and the walk over one segment's bytes."""

    def __init__(self, *, max_flows: int = 1024, timeout_us: int = 120_000_000) -> None:
        self.max_flows = max_flows
        self.timeout_us = timeout_us
        self.flows: OrderedDict[FlowKey, _Flow] = OrderedDict()

    def _flow(self, key: FlowKey, seq: int, ts_us: int) -> _Flow:
        flow = self.flows.get(key)
        if flow is not None and ts_us - flow.last_us > self.timeout_us:
            del self.flows[key]
            flow = None
        if flow is None:
            flow = _Flow(expect=seq, last_us=ts_us)
            if self.max_flows > 0:
                if len(self.flows) >= self.max_flows:
                    self.flows.popitem(last=False)
                self.flows[key] = flow
        else:
            self.flows.move_to_end(key)
            flow.last_us = ts_us
        return flow

    def segment(
        self, key: FlowKey, seq: int, payload: bytes, sent: int, ts_us: int, read: MessageReader
    ) -> tuple[list[tuple[int, bytes]], int]:
        """One segment (``payload``: what was captured of its ``sent`` bytes) ->
        (the queries and answers it completes, status)."""
        flow = self._flow(key, seq, ts_us)
        ahead = (flow.expect - seq) % SEQ_MOD
        if ahead >= SEQ_MOD // 2:
            # a gap: the message in progress cannot complete; start afresh here
            flow.seen, flow.buf, ahead = 0, bytearray(), 0
        if ahead >= sent:
            return [], ST_IGNORED
        queries: list[Message] = []
        status = ST_OK
        pos = ahead
        while pos < sent:
            if flow.seen == 0 and pos >= len(payload):
                # the capture ends between two messages: what follows is unknown
                self.flows.pop(key, None)
                break
            need = 2 if flow.seen < 2 else 2 + struct.unpack_from(">H", flow.buf)[0]
            take = min(need - flow.seen, sent - pos)
            if len(flow.buf) == flow.seen:
                # kept while every byte so far was captured (a hole ends the copy)
                flow.buf += payload[pos : pos + min(take, BUF - len(flow.buf))]
            flow.seen += take
            pos += take
            if flow.seen == 2 and len(flow.buf) < 2:
                # the capture cut the length prefix: the stream is lost
                self.flows.pop(key, None)
                return queries, _first(status, ST_TRUNCATED)
            if flow.seen == 2 and struct.unpack_from(">H", flow.buf)[0] < DNS_HEADER:
                # a length that cannot hold a header: the stream is lost
                self.flows.pop(key, None)
                return queries, _first(status, ST_MALFORMED)
            if flow.seen > 2 and flow.seen == need:
                msg = bytes(flow.buf[2:])
                flow.seen, flow.buf = 0, bytearray()
                query = read(msg) if len(msg) >= DNS_HEADER else None
                if len(msg) < DNS_HEADER:
                    status = _first(status, ST_TRUNCATED)
                elif query is not None:
                    queries.append(query[0])
                    status = _first(status, query[1])
        flow.expect = (seq + pos) % SEQ_MOD  # (a forgotten flow: no matter)
        if not queries and status == ST_OK:
            status = ST_IGNORED
        return queries, status
