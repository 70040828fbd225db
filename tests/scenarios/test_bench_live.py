"""The live benchmark's traffic: the mix says what its frames are, the sender sends what
it says it sent.

``scripts/bench/live.py`` judges a run by comparing what wormwatch counted with what
the frames sent hold (``scripts.bench.sender.expected``). Here (1) every frame of the
mix decodes in the dpkt reference to the kind the mix gives it, answers answering the
queries; (2) ``expected`` equals counting a round robin by hand; (3) on a veth pair
(root only) the sender sends exactly the frames it reports, from its start frame,
wrapping around the mix. No timing is asserted.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from wormwatch.model import KIND_ANSWER, KIND_DNS, KIND_SYN, RCODE_NXDOMAIN, ST_IGNORED

from scripts.bench.sender import CYCLE, KINDS, build_mix, expected, relevant_share
from testkit.netns import CaptureRun, can_use_netns, veth_pair, write_frames
from testkit.paths import python_m
from testkit.reference import decode_frame

N_FRAMES = 200


@pytest.fixture(scope="module")
def mix() -> tuple[list[bytes], list[str]]:
    return build_mix(N_FRAMES)


def _kind_of(frame: bytes) -> str:
    """The mix's name for what the reference decoder makes of ``frame``."""
    _status, events = decode_frame(1, frame, 0)
    if not events:
        return "other"
    (event,) = events
    if event.kind == KIND_ANSWER:
        return "nxdomain" if event.rcode == RCODE_NXDOMAIN else "answer"
    return {KIND_DNS: "query", KIND_SYN: "syn"}[event.kind]


def test_every_frame_decodes_to_its_kind(mix: tuple[list[bytes], list[str]]) -> None:
    frames, kinds = mix
    assert len(frames) == N_FRAMES
    assert [_kind_of(frame) for frame in frames] == kinds
    others = [f for f, kind in zip(frames, kinds, strict=True) if kind == "other"]
    assert {decode_frame(1, f, 0)[0] for f in others} == {ST_IGNORED}
    shares = Counter(kinds)
    assert shares == {"query": 60, "answer": 40, "nxdomain": 20, "syn": 50, "other": 30}
    assert relevant_share(kinds) == 0.85


def test_each_answer_answers_a_query_of_its_cycle(mix: tuple[list[bytes], list[str]]) -> None:
    frames, _kinds = mix
    for start in range(0, N_FRAMES, CYCLE):
        events = [decode_frame(1, f, 0)[1] for f in frames[start : start + CYCLE]]
        queries = {(ev.src, ev.name) for (ev,) in events[:6]}
        answers = {(ev.dst, ev.name) for (ev,) in events[6:12]}
        assert answers == queries
        assert len(queries) == 6


@pytest.mark.parametrize(
    ("start", "count"), [(0, 0), (0, 7), (13, 77), (20, 200), (47, 453), (180, 455)]
)
def test_expected_counts_a_round_robin(
    mix: tuple[list[bytes], list[str]], start: int, count: int
) -> None:
    _frames, kinds = mix
    by_hand = Counter(dict.fromkeys(KINDS, 0))
    by_hand.update(kinds[(start + j) % len(kinds)] for j in range(count))
    assert expected(kinds, start, count) == by_hand


@pytest.mark.live
@pytest.mark.skipif(can_use_netns() is not None, reason=str(can_use_netns()))
def test_the_sender_sends_what_it_reports(
    mix: tuple[list[bytes], list[str]], tmp_path: Path
) -> None:
    frames, kinds = mix
    start, limit = 47, 453  # from inside a cycle, wrapping around the 200 frames twice
    want = expected(kinds, start, limit)
    n_relevant = want["query"] + want["answer"] + want["nxdomain"] + want["syn"]
    frames_file = tmp_path / "frames.bin"
    write_frames(frames_file, frames)
    with veth_pair(tmp_path) as pair:
        capture = CaptureRun(pair, pair.capture_if, "--expect", str(n_relevant))
        capture.wait_ready()
        argv = [pair.sender_if, str(frames_file), "100000", "60", str(start), str(limit)]
        out = subprocess.run(
            pair.command(pair.sender_ns, python_m("scripts.bench.sender", *argv)),
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        got = capture.result()
    assert int(out.split()[0]) == limit
    assert got["kernel_dropped"] == 0
    # what the filter admitted (the kernel may add a stray IPv6 control frame)
    captured = Counter(_kind_of(bytes.fromhex(frame)) for _linktype, frame in got["frames"])
    del captured["other"], want["other"]
    assert captured == want
