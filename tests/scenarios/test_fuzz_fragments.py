"""Property tests of fragment reassembly (JIT on): streams of hostile fragments decode
like the reference's reassembler, counters included.

Fragments of 1-5 datagrams (8-byte aligned cuts; overlaps that carry other bytes, so the
"first" policy decides; duplicates; lost pieces; cut captures; identifications shared
between datagrams), interleaved in any order, spread over up to 4 batches with the
reassembly state carried across them, packets 1 us or 10 s apart (so the 30 s timeout
drops datagrams), both pools holding only 4 datagrams (so eviction happens). Every
packet's status and events, and the ``frag_*`` counters, must equal those of
``reference.RefDecoder``. ``WORMWATCH_FUZZ_EXAMPLES`` raises the number of examples.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import replace

import numpy as np
from hypothesis import event, given
from hypothesis import strategies as st

from wormwatch.decode import Decoder
from wormwatch.model import LINKTYPE_RAW, Batch, Events, addr_words
from wormwatch.reassemble import Reassembler

from testkit.decode_compare import FUZZ, Decoded, Row, event_row, invariant_problems
from testkit.reference import RefDecoder
from testkit.reference_reassembly import RefReassembler

SMALL_POOL = 4  # datagrams held at once: streams of 1-5 datagrams also evict


def _datagram_payload(draw: st.DrawFn) -> tuple[int, bytes]:
    """(protocol, IP payload) of a datagram worth fragmenting."""
    kind = draw(st.sampled_from(("udp-dns", "tcp-syn", "tcp-dns")))
    names = draw(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=5))
    labels = b"".join(bytes((len(n),)) + n for n in names) + b"\x00"
    message = struct.pack("!HHHHHH", 9, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x0f\x00\x01"
    if kind == "udp-dns":
        return 17, struct.pack("!HHHH", 5353, 53, 8 + len(message), 0) + message
    dport, flags = (445, 0x02) if kind == "tcp-syn" else (53, 0x18)
    header = struct.pack("!HHIIBBHHH", 4444, dport, 1, 0, 5 << 4, flags, 512, 0, 0)
    body = struct.pack("!H", len(message)) + message if kind == "tcp-dns" else b""
    return 6, header + body


@st.composite
def _fragments(draw: st.DrawFn, version: int, ident: int, src: int) -> list[bytes]:
    """One datagram cut into fragments (raw IP frames): 8-byte aligned cuts, sometimes
    an overlap with other bytes, a duplicate, a lost piece, a cut capture."""
    protocol, payload = _datagram_payload(draw)
    size = len(payload)
    cuts = sorted({8 * draw(st.integers(1, max(1, (size - 1) // 8))) for _ in range(3)})
    edges = [0, *(c for c in cuts if c < size), size]
    pieces = []
    for lo, hi in itertools.pairwise(edges):
        end = min(size, hi + 8 * draw(st.integers(0, 2))) if draw(st.integers(0, 3)) == 0 else hi
        data = payload[lo:end]
        if end > hi and draw(st.booleans()):
            # overlapping bytes that differ: the "first" policy decides who wins
            data = payload[lo:hi] + bytes(b ^ 0x55 for b in payload[hi:end])
        pieces.append((lo, end < size or hi < size, data))
    if draw(st.integers(0, 4)) == 0:
        pieces.append(pieces[draw(st.integers(0, len(pieces) - 1))])
    if len(pieces) > 1 and draw(st.integers(0, 5)) == 0:
        del pieces[draw(st.integers(0, len(pieces) - 1))]
    frames = []
    addrs4 = bytes((192, 0, 2, src, 198, 51, 100, 53))
    addrs6 = bytes(15) + bytes((src,)) + b"\x20\x01\x0d\xb8" + bytes(11) + b"\x35"
    for lo, more, data in pieces:
        if version == 4:
            field = (0x2000 if more else 0) | (lo // 8)
            header = struct.pack(
                "!BBHHHBBH", 0x45, 0, 20 + len(data), ident, field, 64, protocol, 0
            )
            frame = header + addrs4 + data
        else:
            frag = struct.pack("!BBHI", protocol, 0, (lo // 8) << 3 | int(more), ident)
            frame = struct.pack("!IHBB", 0x60000000, 8 + len(data), 44, 64) + addrs6 + frag + data
        if draw(st.integers(0, 9)) == 0:
            frame = frame[: draw(st.integers(0, len(frame)))]
        frames.append(frame)
    return frames


@st.composite
def fragment_streams(draw: st.DrawFn) -> list[bytes]:
    """Fragments of 1-5 datagrams (some sharing an identification), interleaved."""
    frames: list[bytes] = []
    for _ in range(draw(st.integers(1, 5))):
        version = draw(st.sampled_from((4, 6)))
        ident = draw(st.sampled_from((7, 7, 8, 0x12345)))
        frames += draw(
            _fragments(version, ident & (0xFFFF if version == 4 else -1), draw(st.integers(1, 3)))
        )
    return draw(st.permutations(frames))


def _stream_rows(ev: Events, lo: int, hi: int) -> list[Row]:
    return [event_row(ev, i) for i in range(lo, hi)]


@FUZZ
@given(fragment_streams(), st.sampled_from((1, 10_000_000)), st.integers(1, 4))
def test_fragment_streams_reassemble_like_the_reference(
    frames: list[bytes], step_us: int, n_batches: int
) -> None:
    """Fragments decoded in ``n_batches`` batches (state carried across them), packets
    ``step_us`` apart (10 s apart, the 30 s timeout drops datagrams), both pools small."""
    decoder = Decoder(max_events=64, reassembler=Reassembler(max_datagrams=SMALL_POOL))
    reference = RefDecoder(RefReassembler(max_datagrams=SMALL_POOL))
    size = -(-len(frames) // n_batches)
    got: list[Decoded] = []
    for first in range(0, len(frames), size):
        chunk = frames[first : first + size]
        caplens = np.array([len(f) for f in chunk], np.int32)
        offsets = np.zeros(len(chunk), np.int64)
        offsets[1:] = np.cumsum(caplens[:-1], dtype=np.int64)
        batch = Batch(
            data=np.frombuffer(b"".join(chunk) + b"\xff", np.uint8),
            ts_us=(np.arange(first, first + len(chunk), dtype=np.int64) + 1) * step_us,
            offsets=offsets,
            caplens=caplens,
            wirelens=caplens.copy(),
            linktypes=np.full(len(chunk), LINKTYPE_RAW, np.int32),
        )
        ev = decoder.decode(batch)
        statuses = [int(s) for s in decoder.last_status]
        assert not invariant_problems_at(ev, statuses, first, step_us)
        packets = ev.ts_us[: ev.n] // step_us - 1 - first
        for p, status in enumerate(statuses):
            rows = np.flatnonzero(packets == p)
            lo, hi = (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, 0)
            got.append((status, _stream_rows(ev, lo, hi)))
    for i, frame in enumerate(frames):
        status, events = reference.decode(LINKTYPE_RAW, frame, (i + 1) * step_us)
        want = (
            status,
            [
                (e.kind, addr_words(e.src), addr_words(e.dst), e.dport, e.qtype, e.name, e.rcode)
                for e in events
            ],
        )
        assert got[i] == want, f"packet {i} of {[f.hex() for f in frames]}"
    counters = reference.reassembler.counters
    event(
        f"reassembled {min(counters['reassembled'], 2)}, overlapping {counters['overlapping'] > 0}"
    )
    assert decoder.stats.fragments["reassembled"] == counters["reassembled"]
    for name in ("timed_out", "evicted", "overlapping", "bad"):
        assert decoder.stats.fragments[name] == reference.reassembler.counters[name], name


def invariant_problems_at(ev: Events, statuses: list[int], first: int, step_us: int) -> list[str]:
    """:func:`invariant_problems` for a batch whose packets are stamped ``step_us`` apart."""
    shifted = replace(ev, ts_us=ev.ts_us[: ev.n] // step_us - 1 - first)
    return invariant_problems(shifted, statuses)
