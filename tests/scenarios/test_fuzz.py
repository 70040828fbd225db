"""Property tests of the decode stage (JIT on): hostile frames never crash it, its output
stays in bounds, and it agrees with the dpkt reference on every frame.

Frames come from three places: mutations (bit flips, byte sets, inserts, deletes, cuts,
another link type) of every relevant frame of the sample and real captures and of the
corpus in ``fuzz_corpus/frames.json``; frames built layer by layer with random fields
(so that random bytes get past the link and IP headers); and plain random bytes. Each
example is decoded in one batch through ``wormwatch.decode.Decoder`` twice, with
different bytes after every frame: a kernel that read past a frame's caplen would see
the difference. Any disagreement with ``reference.decode_frame`` fails with the hex
frame; add such a frame to the corpus. These comparisons decode without reassembly
(each frame alone, as ``decode_frame`` does); streams of fragments are compared with the
reference's reassembler in ``test_fuzz_fragments.py``.

``WORMWATCH_FUZZ_EXAMPLES`` raises the number of examples for a longer local run.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wormwatch.decode import Decoder
from wormwatch.model import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
)

from testkit.decode_compare import (
    FUZZ,
    FUZZ_LINKTYPES,
    N_EXAMPLES,
    Frame,
    corpus,
    difference,
    kernel_decode_many,
    relevant_frames,
)

# one decoder for every example: its buffers are reused and grown, as in a real run
DECODER = Decoder(max_events=64, reassemble=False)
SEEDS = relevant_frames()


def check_frames(frames: list[tuple[int, bytes]]) -> None:
    """Decode ``frames`` as one batch (two fillers) and compare each with the reference."""
    zero = kernel_decode_many(frames, filler=0x00, decoder=DECODER)
    ones = kernel_decode_many(frames, filler=0xFF, decoder=DECODER)
    for (linktype, frame), a, b in zip(frames, zero, ones, strict=True):
        assert a == b, f"read past caplen: linktype {linktype} frame {frame.hex()}"
        diff = difference(linktype, frame, a)
        assert diff is None, diff


# --- the corpus --------------------------------------------------------------------


def _corpus_params() -> list[object]:
    params: list[object] = []
    for entry in corpus():
        marks = []
        if "finding" in entry:
            marks.append(pytest.mark.xfail(strict=True, reason=entry["finding"]))
        params.append(pytest.param(entry, id=entry["name"], marks=marks))
    return params


@pytest.mark.parametrize("entry", _corpus_params())
def test_corpus_frame_agrees_with_reference(entry: dict[str, object]) -> None:
    frame = bytes.fromhex(str(entry["hex"]))
    linktype = int(str(entry["linktype"]))
    kernel = kernel_decode_many([(linktype, frame)], decoder=DECODER)[0]
    assert difference(linktype, frame, kernel) is None


def test_corpus_as_one_batch_decodes_like_one_by_one() -> None:
    frames = [(int(e["linktype"]), bytes.fromhex(e["hex"])) for e in corpus()]
    together = kernel_decode_many(frames, decoder=DECODER)
    assert together == [kernel_decode_many([f], decoder=DECODER)[0] for f in frames]


# --- mutated real frames -------------------------------------------------------------

_OPS = st.sampled_from(("flip", "set", "insert", "delete", "cut"))


@st.composite
def mutated_frames(draw: st.DrawFn) -> tuple[int, bytes]:
    """A seed frame with 1-4 random edits; sometimes read as another link type."""
    seed: Frame = draw(st.sampled_from(SEEDS))
    data = bytearray(seed.data)
    for op in draw(st.lists(_OPS, min_size=1, max_size=4)):
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "cut":
            del data[pos:]
    is_other_link = draw(st.integers(0, 9)) == 0
    linktype = draw(st.sampled_from(FUZZ_LINKTYPES)) if is_other_link else seed.linktype
    return linktype, bytes(data)


@FUZZ
@given(st.lists(mutated_frames(), min_size=1, max_size=8))
def test_mutated_capture_frames_agree_with_reference(frames: list[tuple[int, bytes]]) -> None:
    check_frames(frames)


# --- frames built layer by layer with random fields ----------------------------------

_ETHERTYPES = st.sampled_from((0x0800, 0x86DD, 0x8100, 0x88A8, 0x9100, 0x8864, 0x0806))


@st.composite
def _link_header(draw: st.DrawFn, linktype: int, version: int) -> bytes:
    ethertype = 0x0800 if version == 4 else 0x86DD
    if draw(st.integers(0, 4)) == 0:
        ethertype = draw(_ETHERTYPES)
    tags = b"".join(
        struct.pack("!HH", draw(st.sampled_from((0x8100, 0x88A8, 0x9100))), 1)
        for _ in range(draw(st.integers(0, 2)) if draw(st.booleans()) else 0)
    )
    inner = struct.pack("!H", ethertype)
    if linktype == LINKTYPE_ETHERNET:
        return b"\x02" * 12 + (tags + inner if tags else inner)
    if linktype == LINKTYPE_LINUX_SLL:
        return b"\x00" * 14 + inner
    if linktype == LINKTYPE_LINUX_SLL2:
        return inner + b"\x00" * 18
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        family = 2 if version == 4 else draw(st.sampled_from((10, 24, 28, 30)))
        order = draw(st.sampled_from(("<I", ">I"))) if linktype == LINKTYPE_NULL else ">I"
        return struct.pack(order, family)
    return b""


def _labels(draw: st.DrawFn) -> bytes:
    """A question name: mostly labels, sometimes pointers or odd length bytes."""
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            parts.append(struct.pack("!H", 0xC000 | draw(st.integers(0, 40))))
            break
        if kind == 1:
            parts.append(bytes((draw(st.integers(64, 255)),)))
            break
        label = draw(st.binary(min_size=1, max_size=70))
        parts.append(bytes((min(len(label), 63),)) + label[:63])
    return b"".join(parts) + b"\x00"


@st.composite
def _dns_message(draw: st.DrawFn) -> bytes:
    flags = (
        draw(st.sampled_from((0x0100, 0x0000, 0x8180, 0x2800)))
        if draw(st.booleans())
        else draw(st.integers(0, 0xFFFF))
    )
    qdcount = draw(st.sampled_from((1, 1, 1, 0, 2)))
    header = struct.pack("!HHHHHH", draw(st.integers(0, 0xFFFF)), flags, qdcount, 0, 0, 0)
    tail = struct.pack("!HH", draw(st.sampled_from((1, 15, 28, 12, 0, 255, 65535))), 1)
    message = header + _labels(draw) + tail
    cut = draw(st.integers(0, len(message) + 4))
    return message[:cut] if cut < len(message) else message


@st.composite
def _transport(draw: st.DrawFn, protocol: int) -> bytes:
    dport = draw(st.sampled_from((53, 53, 53, 135, 139, 445, 80)))
    if protocol == 17:
        payload = draw(_dns_message())
        length = 8 + len(payload)
        if draw(st.integers(0, 4)) == 0:
            length = draw(st.integers(0, 0xFFFF))
        return struct.pack("!HHHH", 5353, dport, length, 0) + payload
    flags = draw(st.sampled_from((0x02, 0x12, 0x18, 0x10, 0x03)))
    doff = draw(st.sampled_from((5, 5, 5, 6, 4, 15)))
    header = struct.pack("!HHIIBBHHH", 4444, dport, 1, 0, doff << 4, flags, 512, 0, 0)
    header += b"\x01" * (max(doff, 5) * 4 - 20)
    messages = draw(st.lists(_dns_message(), max_size=3))
    segment = b""
    for message in messages:
        length = len(message) if draw(st.integers(0, 3)) else draw(st.integers(0, 300))
        segment += struct.pack("!H", length) + message
    return header + segment + draw(st.binary(max_size=3))


@st.composite
def built_frames(draw: st.DrawFn) -> tuple[int, bytes]:
    """A frame whose link, IP and transport headers are mostly right and partly random."""
    linktype = draw(st.sampled_from(FUZZ_LINKTYPES))
    version = 4 if linktype == LINKTYPE_IPV4 else 6 if linktype == LINKTYPE_IPV6 else 0
    version = version or draw(st.sampled_from((4, 6)))
    protocol = draw(st.sampled_from((17, 6, 17, 6, 1, 58)))
    payload = draw(_transport(protocol)) if protocol in (6, 17) else draw(st.binary(max_size=30))
    if version == 4:
        ihl = draw(st.sampled_from((5, 5, 5, 6, 4, 15)))
        options = b"\x01" * (max(ihl, 5) * 4 - 20)
        total = 20 + len(options) + len(payload)
        if draw(st.integers(0, 4)) == 0:
            total = draw(st.integers(0, 0xFFFF))
        frag = draw(st.sampled_from((0, 0, 0, 0x2000, 0x0001)))
        ip = struct.pack("!BBHHHBBH", 0x40 | ihl, 0, total, 1, frag, 64, protocol, 0)
        ip += bytes((192, 0, 2, 7, 198, 51, 100, 53)) + options + payload
    else:
        plen = len(payload) if draw(st.integers(0, 4)) else draw(st.integers(0, 0xFFFF))
        next_header = protocol
        extensions = b""
        for _ in range(draw(st.integers(0, 3)) if draw(st.booleans()) else 0):
            ext = draw(st.sampled_from((0, 43, 60, 44, 51, 135)))
            body = struct.pack("!BBHI", next_header, 0, draw(st.sampled_from((0, 1, 8))), 7)
            extensions = body + extensions
            next_header = ext
        addrs = bytes(15) + b"\x07" + b"\x20\x01\x0d\xb8" + bytes(11) + b"\x35"
        ip = struct.pack("!IHBB", 0x60000000, (plen + len(extensions)) & 0xFFFF, next_header, 64)
        ip += addrs + extensions + payload
    frame = draw(_link_header(linktype, version)) + ip
    cut = draw(st.integers(0, len(frame) + 1))
    return linktype, frame[:cut] if cut < len(frame) and draw(st.booleans()) else frame


@FUZZ
@given(st.lists(built_frames(), min_size=1, max_size=8))
def test_built_frames_agree_with_reference(frames: list[tuple[int, bytes]]) -> None:
    check_frames(frames)


@FUZZ
@given(
    st.lists(
        st.tuples(st.sampled_from(FUZZ_LINKTYPES), st.binary(max_size=120)), min_size=1, max_size=8
    )
)
def test_random_bytes_agree_with_reference(frames: list[tuple[int, bytes]]) -> None:
    check_frames(frames)


@settings(max_examples=max(5, N_EXAMPLES // 30), deadline=None)
@given(st.lists(mutated_frames(), min_size=60, max_size=120))
def test_large_batches_grow_the_buffers_and_lose_no_event(frames: list[tuple[int, bytes]]) -> None:
    # a fresh decoder with the smallest buffers: the batch must make it grow
    together = kernel_decode_many(frames, decoder=Decoder(max_events=64, reassemble=False))
    assert together == [kernel_decode_many([f], decoder=DECODER)[0] for f in frames]
