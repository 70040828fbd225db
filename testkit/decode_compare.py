"""The numba decoder and the dpkt reference, side by side on single frames (fuzzing helpers).

Place in the data flow: beside the decode stage, like ``reference``. A frame (link type +
bytes) goes in; out come the kernel's (status, events) through the real wrapper
(``wormwatch.decode.Decoder``), the reference's (status, events) from
``reference.decode_frame``, the invariant violations of the kernel's output, and the
difference of the two. ``tests/scenarios/test_fuzz.py`` (hypothesis, JIT on) and
``scripts/fuzz/decode.py`` (atheris, JIT off) share this module, and the seed frames:
every record of the sample captures in ``pcaps/`` and of the real captures beside the
repository (``testkit.paths.REAL_PCAPS``), plus the corpus in ``tests/fuzz_corpus/frames.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings

from wormwatch.decode import Decoder
from wormwatch.kernels.decode import MAX_EVENTS_PER_PACKET
from wormwatch.model import (
    KIND_ANSWER,
    KIND_DNS,
    KIND_SYN,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    LINKTYPE_RAW_BSD,
    LINKTYPE_RAW_OLD,
    N_STATUS,
    NAME_MAX,
    ST_IGNORED,
    ST_MALFORMED,
    ST_OK,
    ST_TRUNCATED,
    SYN_PORTS,
    Events,
    addr_words,
)

from testkit.frames import make_batch
from testkit.paths import PCAPS, REAL_PCAPS, REPO
from testkit.reference import decode_frame, read_records

# a TCP segment's payload, and the fewest bytes a DNS message takes in it
MAX_TCP_PAYLOAD = 65535
DNS_TCP_MESSAGE_MIN = 14
SAMPLES = PCAPS
REAL = REAL_PCAPS
CORPUS = REPO / "tests" / "fuzz_corpus" / "frames.json"
SUPPORTED_LINKTYPES = (
    LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW_OLD, LINKTYPE_RAW_BSD, LINKTYPE_RAW,
    LINKTYPE_LOOP, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2,
)  # fmt: skip
# one link type nobody decodes (LINKTYPE_USER0): every frame of it is "unsupported"
UNSUPPORTED_LINKTYPE = 147
FUZZ_LINKTYPES = (*SUPPORTED_LINKTYPES, UNSUPPORTED_LINKTYPE)
# bytes after each frame in the batch buffer; decoding with two different fillers
# must give the same answer, or the kernel read past the frame's caplen
FILLER_LEN = 8

# hypothesis settings of the fuzz properties; WORMWATCH_FUZZ_EXAMPLES for a longer run
N_EXAMPLES = int(os.environ.get("WORMWATCH_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=N_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# one event as both sides are compared: (kind, src words, dst words, dport, qtype, name,
# rcode)
Row = tuple[int, tuple[int, int], tuple[int, int], int, int, bytes, int]
Decoded = tuple[int, list[Row]]


@dataclass(frozen=True)
class Frame:
    """One captured frame and where it came from."""

    linktype: int
    data: bytes
    origin: str


def kernel_decode_many(
    frames: list[tuple[int, bytes]], *, filler: int = 0, decoder: Decoder | None = None
) -> list[Decoded]:
    """Decode frames as one batch (each followed by ``filler`` bytes) with the real wrapper.

    Pass decoders made with ``reassemble=False``: fragments then stay ``fragment``, as
    the per-frame reference says (reassembly is compared in tests/test_reassemble.py).
    """
    batch = make_batch(frames, gap=bytes((filler,)) * FILLER_LEN)
    dec = (
        decoder
        if decoder is not None
        else Decoder(max_events=MAX_EVENTS_PER_PACKET, reassemble=False)
    )
    ev = dec.decode(batch)
    statuses = [int(s) for s in dec.last_status]
    problems = invariant_problems(ev, statuses)
    assert not problems, problems
    out: list[Decoded] = [(s, []) for s in statuses]
    for i in range(ev.n):
        out[int(ev.ts_us[i])][1].append(event_row(ev, i))
    return out


def event_row(ev: Events, i: int) -> Row:
    """Event ``i`` of the decoder's columns as a comparable row (addresses as words)."""
    return (
        int(ev.kind[i]),
        (int(ev.src_hi[i]), int(ev.src_lo[i])),
        (int(ev.dst_hi[i]), int(ev.dst_lo[i])),
        int(ev.dport[i]),
        int(ev.qtype[i]),
        bytes(ev.names[i, : ev.name_lens[i]]),
        int(ev.rcode[i]),
    )


def invariant_problems(ev: object, statuses: list[int]) -> list[str]:
    """What is out of bounds in a decoder's output (empty when all is well).

    Bounds: statuses are known codes; events are at most one per 14 bytes of a TCP
    segment's payload (at most 65535 bytes), in packet order; kinds are DNS or SYN; a
    name is at most 255 bytes; a SYN has port 135/139/445, qtype 0 and no name; a query
    has port 53; an ok packet has an event, an ignored/unsupported/fragment packet has
    none.
    """
    problems: list[str] = []
    n = int(ev.n)  # type: ignore[attr-defined]
    if any(not 0 <= s < N_STATUS for s in statuses):
        problems.append(f"unknown status in {statuses}")
    if not 0 <= n <= (1 + MAX_TCP_PAYLOAD // DNS_TCP_MESSAGE_MIN) * len(statuses):
        problems.append(f"{n} events for {len(statuses)} packets")
        return problems
    packets = ev.ts_us[:n]  # type: ignore[attr-defined]
    if n and (np.any(np.diff(packets) < 0) or packets.min() < 0 or packets.max() >= len(statuses)):
        problems.append("events out of packet order")
        return problems
    per_packet = np.bincount(packets, minlength=len(statuses))
    for i in range(n):
        kind = int(ev.kind[i])  # type: ignore[attr-defined]
        length = int(ev.name_lens[i])  # type: ignore[attr-defined]
        port = int(ev.dport[i])  # type: ignore[attr-defined]
        if kind not in (KIND_DNS, KIND_SYN, KIND_ANSWER) or not 0 <= length <= NAME_MAX:
            problems.append(f"event {i}: kind {kind}, name length {length}")
        elif kind == KIND_SYN and (port not in SYN_PORTS or length or ev.qtype[i]):  # type: ignore[attr-defined]
            problems.append(f"event {i}: SYN to {port} with a name or qtype")
        elif kind == KIND_DNS and port != 53:
            problems.append(f"event {i}: DNS query to port {port}")
    for p, status in enumerate(statuses):
        if status == ST_OK and per_packet[p] == 0:
            problems.append(f"packet {p}: ok without an event")
        if status not in (ST_OK, ST_TRUNCATED, ST_MALFORMED) and per_packet[p] > 0:
            problems.append(f"packet {p}: status {status} with {per_packet[p]} events")
    return problems


def reference_decode(linktype: int, frame: bytes) -> Decoded:
    """The reference's answer in the kernel's terms (addresses as the model's two words:
    an IPv6 source ``::ffff:a.b.c.d`` is the same key as IPv4 ``a.b.c.d``)."""
    status, events = decode_frame(linktype, frame, 0)
    rows: list[Row] = [
        (e.kind, addr_words(e.src), addr_words(e.dst), e.dport, e.qtype, e.name, e.rcode)
        for e in events
    ]
    return status, rows


def difference(linktype: int, frame: bytes, kernel: Decoded) -> str | None:
    """None when the kernel agrees with the reference on ``frame``, else a report."""
    ref = reference_decode(linktype, frame)
    if ref == kernel:
        return None
    return (
        f"linktype {linktype} frame {frame.hex()}: kernel status {kernel[0]} "
        f"{len(kernel[1])} events, reference status {ref[0]} {len(ref[1])} events; "
        f"kernel {kernel[1][:3]} reference {ref[1][:3]}"
    )


@cache
def capture_frames(*, max_len: int = 1600) -> tuple[Frame, ...]:
    """Every distinct frame of the sample and real captures (up to ``max_len`` bytes)."""
    paths = sorted(SAMPLES.glob("*.pcap*"))
    if REAL.is_dir():
        paths += sorted(REAL.glob("*.pcap*"))
    seen: set[tuple[int, bytes]] = set()
    frames: list[Frame] = []
    for path in paths:
        for _, linktype, _, data in read_records(path):
            if (linktype, data) in seen or len(data) > max_len:
                continue
            seen.add((linktype, data))
            frames.append(Frame(linktype, data, path.name))
    return tuple(frames)


@cache
def relevant_frames() -> tuple[Frame, ...]:
    """Capture frames the reference does not simply ignore (queries, SYNs, problems),
    plus the corpus: the seeds worth mutating."""
    frames = [f for f in capture_frames() if reference_decode(f.linktype, f.data)[0] != ST_IGNORED]
    frames += [Frame(e["linktype"], bytes.fromhex(e["hex"]), e["name"]) for e in corpus()]
    return tuple(frames)


@cache
def corpus() -> tuple[dict[str, Any], ...]:
    """The entries of ``fuzz_corpus/frames.json`` (name, linktype, hex, note[, finding])."""
    entries = json.loads(CORPUS.read_text(encoding="utf-8"))
    return tuple(entries)
