"""Slow, obvious IP fragment reassembly for the reference decoder (tests only).

Place in the data flow: the twin of ``wormwatch.reassemble`` and its kernel. The
reference decoder hands every fragment it meets (a :class:`RefFragment`) to
:meth:`RefReassembler.add`; when the fragment completes a datagram, out comes the
datagram as a raw IP packet (a fresh IPv4 or IPv6 header and the payload), which the
reference then decodes like any raw-IP frame. docs/DECODING.md, "Fragments", written
out with a dict of datagrams, each a dict of byte offset -> byte value.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = ["RefFragment", "RefReassembler"]

MAX_V4_PAYLOAD = 65535 - 20
MAX_V6_PAYLOAD = 65535
MAX_PIECES = 64


@dataclass(frozen=True)
class RefFragment:
    """One fragment as the IP layer saw it.

    ``src``/``dst`` are the raw address bytes (4 or 16); ``payload`` is what was
    captured of the fragment's data; ``declared`` is its length as the IP header says
    (-1: an IPv6 jumbogram, which cannot be fragmented).
    """

    version: int
    src: bytes
    dst: bytes
    ident: int
    proto: int
    offset: int
    more: bool
    payload: bytes
    declared: int


@dataclass
class _Datagram:
    first_ts_us: int
    seq: int
    n_frags: int = 0
    total: int | None = None
    proto: int | None = None
    held: dict[int, int] = field(default_factory=dict)


def _runs(positions: set[int]) -> int:
    """How many maximal runs of consecutive offsets ``positions`` holds."""
    return sum(1 for p in positions if p - 1 not in positions)


def datagram_packet(
    version: int, src: bytes, dst: bytes, ident: int, proto: int, payload: bytes
) -> bytes:
    """The completed datagram as a raw IP packet (fresh minimal header)."""
    if version == 4:
        header = struct.pack(">BBHHHBBH", 0x45, 0, 20 + len(payload), ident, 0, 64, proto, 0)
        return header + src + dst + payload
    return struct.pack(">IHBB", 0x6000_0000, len(payload), proto, 64) + src + dst + payload


class RefReassembler:
    """A pool of at most ``max_datagrams`` datagrams; "first" overlap policy."""

    def __init__(
        self,
        *,
        max_datagrams: int = 1024,
        max_datagram_bytes: int = 65535,
        timeout_us: int = 30_000_000,
    ) -> None:
        self.max_datagrams = max_datagrams
        self.max_datagram_bytes = max_datagram_bytes
        self.timeout_us = timeout_us
        self.pool: dict[tuple[int, bytes, bytes, int, int], _Datagram] = {}
        self.next_seq = 0
        self.counters = dict.fromkeys(
            ("reassembled", "timed_out", "evicted", "overlapping", "bad"), 0
        )

    def add(self, frag: RefFragment, ts_us: int) -> bytes | None:
        """Store one fragment; return the datagram it completes as a raw IP packet."""
        for key, dgram in list(self.pool.items()):
            if ts_us - dgram.first_ts_us > self.timeout_us:
                del self.pool[key]
                self.counters["timed_out"] += dgram.n_frags
        lo = frag.offset
        hi = lo + frag.declared
        limit = MAX_V4_PAYLOAD if frag.version == 4 else MAX_V6_PAYLOAD
        if (
            frag.declared < 0
            or len(frag.payload) < frag.declared
            or hi > min(limit, self.max_datagram_bytes)
        ):
            self.counters["bad"] += 1
            return None
        key = (
            frag.version,
            frag.src,
            frag.dst,
            frag.ident,
            frag.proto if frag.version == 4 else -1,
        )
        dgram = self.pool.get(key)
        span = set(range(lo, hi))
        if dgram is not None:
            held = set(dgram.held)
            held_hi = max(held) + 1 if held else 0
            if (
                (
                    dgram.total is not None
                    and (hi > dgram.total or (not frag.more and hi != dgram.total))
                )
                or (not frag.more and hi < held_hi)
                or (span and _runs(held | span) > MAX_PIECES)
            ):
                self.counters["bad"] += 1
                return None
        else:
            if len(self.pool) >= self.max_datagrams:
                oldest = min(self.pool, key=lambda k: (self.pool[k].first_ts_us, self.pool[k].seq))
                self.counters["evicted"] += self.pool.pop(oldest).n_frags
            dgram = _Datagram(first_ts_us=ts_us, seq=self.next_seq)
            self.next_seq += 1
            self.pool[key] = dgram
        if span & set(dgram.held):
            self.counters["overlapping"] += 1
        for pos in span:
            # "first" policy: a byte already held keeps its value
            dgram.held.setdefault(pos, frag.payload[pos - lo])
        dgram.n_frags += 1
        if not frag.more:
            dgram.total = hi
        if lo == 0 and dgram.proto is None:
            dgram.proto = frag.proto
        if dgram.total and len(dgram.held) == dgram.total:
            del self.pool[key]
            self.counters["reassembled"] += 1
            payload = bytes(dgram.held[i] for i in range(dgram.total))
            assert dgram.proto is not None
            return datagram_packet(
                frag.version, frag.src, frag.dst, frag.ident, dgram.proto, payload
            )
        return None
