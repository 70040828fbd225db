"""The walkers' relevance test never skips a packet the decoder would count.

``open_replay(..., skip_ignored=True)`` leaves out of the batches the frames that
``kernels.prefilter.is_ignored`` calls irrelevant; the decoder counts them as ``ignored``.
That is only right if the decoder would have said ``ignored`` (no event, no problem, no
fragment) for every one of them: checked frame by frame on every sample and real capture,
the fuzz corpus and mutated frames, and replay by replay (events, statuses, byte counts),
for classic pcap and for pcapng (every packet block type, link types per interface),
from files and from standard input (a real pipe).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wormwatch.decode import Decoder
from wormwatch.kernels.pcapwalk import N_WALKED, W_BYTES, W_RECORDS, WALK_END, walk_pcap
from wormwatch.model import LINKTYPE_ETHERNET, ST_IGNORED
from wormwatch.source.pcapfile import open_replay
from wormwatch.source.stdin import MAX_CAPLEN

from testkit.decode_compare import FUZZ, Frame, capture_frames, corpus, kernel_decode_many
from testkit.paths import DEMO, PCAPS, REAL_PCAPS
from testkit.pcap import (
    Record,
    dpkt_records,
    epb,
    idb,
    is_udp,
    packet_block,
    pcap_file,
    shb,
    spb,
    write_pcap,
    write_pcapng,
)


def _kept(frames: list[bytes], linktype: int) -> list[bool]:
    """Per frame: did the walker keep it (as one pcap of ``linktype``)?"""
    raw = pcap_file([(0, i, len(f), f) for i, f in enumerate(frames)], linktype=linktype)
    data = np.frombuffer(raw, np.uint8)
    n = len(frames)
    # room for one more: the walk then ends at the end of the data, not on full outputs
    out = [np.empty(n + 1, np.int64), np.empty(n + 1, np.int64), np.empty(n + 1, np.int32)]
    wirelens = np.empty(n + 1, np.int32)
    walked = np.zeros(N_WALKED, np.int64)
    kept, _, status = walk_pcap(
        data, 24, False, False, MAX_CAPLEN, linktype, n + 1, *out, wirelens, walked
    )
    assert status == WALK_END
    assert walked[W_RECORDS] == n
    assert walked[W_BYTES] == sum(len(f) for f in frames)
    frame_index = out[0][:kept]  # the timestamps are the frame indices
    is_kept = [False] * n
    for i in frame_index.tolist():
        is_kept[i] = True
    return is_kept


def _skipped_but_counted(frames: list[Frame]) -> list[str]:
    """Frames the walker skips although the decoder gives them events or another status."""
    problems = []
    by_link: dict[int, list[Frame]] = {}
    for frame in frames:
        by_link.setdefault(frame.linktype, []).append(frame)
    for linktype, group in by_link.items():
        datas = [f.data for f in group]
        kept = _kept(datas, linktype)
        decoded = kernel_decode_many([(linktype, d) for d in datas])
        for frame, is_kept, (status, rows) in zip(group, kept, decoded, strict=True):
            if not is_kept and (status != ST_IGNORED or rows):
                problems.append(f"{frame.origin}: {frame.data.hex()} status {status} {rows}")
    return problems


def test_no_capture_frame_that_counts_is_skipped() -> None:
    frames = list(capture_frames())
    assert _skipped_but_counted(frames) == []
    # the test bites: the bulk of the Ethernet frames is skipped
    ethernet = [f.data for f in frames if f.linktype == LINKTYPE_ETHERNET]
    assert sum(not k for k in _kept(ethernet, LINKTYPE_ETHERNET)) > len(ethernet) // 4


def test_no_corpus_frame_that_counts_is_skipped() -> None:
    frames = [Frame(e["linktype"], bytes.fromhex(e["hex"]), e["name"]) for e in corpus()]
    # the corpus is mostly raw IP: read every frame as Ethernet too (a 14-byte header)
    header = bytes(12) + b"\x08\x00"
    as_ethernet = [Frame(LINKTYPE_ETHERNET, header + f.data, f.origin) for f in frames]
    assert _skipped_but_counted(frames + as_ethernet) == []


_ETHERNET_SEEDS = tuple(f for f in capture_frames() if f.linktype == LINKTYPE_ETHERNET)


@st.composite
def _mutated(draw: st.DrawFn) -> Frame:
    seed: Frame = draw(st.sampled_from(_ETHERNET_SEEDS))
    data = bytearray(seed.data)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        op = draw(st.sampled_from(("flip", "set", "cut")))
        if op == "cut":
            del data[pos:]
        elif data:
            data[pos] = (
                data[pos] ^ (1 << draw(st.integers(0, 7)))
                if op == "flip"
                else draw(st.integers(0, 255))
            )
    return Frame(LINKTYPE_ETHERNET, bytes(data), seed.origin)


@FUZZ
@given(st.lists(_mutated(), min_size=1, max_size=16))
def test_no_mutated_frame_that_counts_is_skipped(frames: list[Frame]) -> None:
    assert _skipped_but_counted(frames) == []


def _replay(*paths: Path, skip: bool) -> tuple[dict[str, int], list[tuple[object, ...]], int]:
    """(decode stats, every event, source packets) of one replay through the decoder."""
    source = open_replay([str(p) for p in paths], skip_ignored=skip)
    decoder = Decoder()
    rows: list[tuple[object, ...]] = []
    while (batch := source.read_batch(1000)) is not None:
        ev = decoder.decode(batch)
        for i in range(ev.n):
            rows.append(
                (
                    int(ev.ts_us[i]), int(ev.src_hi[i]), int(ev.src_lo[i]), int(ev.dst_hi[i]),
                    int(ev.dst_lo[i]), int(ev.kind[i]), int(ev.dport[i]), int(ev.sport[i]),
                    int(ev.qtype[i]), int(ev.status[i]), bytes(ev.names[i, : ev.name_lens[i]]),
                )
            )  # fmt: skip
    packets = source.stats().packets
    source.close()
    return decoder.stats.as_dict(), rows, packets


def _captures() -> list[Path]:
    paths = sorted(PCAPS.glob("*.pcap")) + sorted(PCAPS.glob("*.pcapng"))
    if REAL_PCAPS.is_dir():
        paths += sorted(REAL_PCAPS.glob("*.pcap")) + sorted(REAL_PCAPS.glob("*.pcapng"))
    return paths


@pytest.mark.parametrize("path", _captures(), ids=lambda p: p.name)
def test_replay_with_skipping_equals_replay_without(path: Path) -> None:
    stats, rows, packets = _replay(path, skip=False)
    assert _replay(path, skip=True) == (stats, rows, packets)
    assert packets == stats["packets"]


def test_merged_replay_with_skipping_equals_replay_without(tmp_path: Path) -> None:
    # two taps of the demo (UDP, and the rest) merged by packet time: the walkers leave
    # out the bulk of both, and the merged batches carry their counts on
    records = dpkt_records(DEMO)
    udp = write_pcap(tmp_path / "udp.pcap", [r for r in records if is_udp(r)])
    rest = write_pcap(tmp_path / "rest.pcap", [r for r in records if not is_udp(r)])
    stats, rows, packets = _replay(udp, rest, skip=False)
    assert _replay(udp, rest, skip=True) == (stats, rows, packets)
    assert packets == len(records)
    # the walkers did leave packets out, and never more than the decoder calls ignored
    source = open_replay([str(udp), str(rest)], skip_ignored=True)
    n_skipped = 0
    while (batch := source.read_batch(1000)) is not None:
        n_skipped += batch.n_skipped
    source.close()
    assert 0 < n_skipped <= stats["ignored"]


def _block_kinds(path: Path, records: list[Record]) -> Path:
    """The records as pcapng, one interface of their link type, the packet block types
    taking turns: Enhanced, obsolete Packet, Simple (no timestamp: the one before it)."""
    blocks = [shb(), idb(records[0][3] if records else 1)]
    for i, (ts, _, wire, _, data) in enumerate(records):
        kind = i % 3
        if kind == 0:
            blocks.append(epb(0, ts, data, wirelen=wire))
        elif kind == 1:
            blocks.append(packet_block(0, ts, data))
        else:
            blocks.append(spb(data, wirelen=max(wire, len(data))))
    path.write_bytes(b"".join(blocks))
    return path


@pytest.mark.parametrize(
    "path", [p for p in _captures() if p.suffix == ".pcap"], ids=lambda p: p.name
)
def test_pcapng_replay_with_skipping_equals_replay_without(path: Path, tmp_path: Path) -> None:
    """Each capture rewritten as pcapng twice (Ethernet and raw IP interfaces mixed;
    every packet block type in turn, a Simple Packet Block's timestamp being that of the
    block before it, skipped or not): skipping changes nothing, and the walkers skip."""
    records = dpkt_records(path)
    for copy in (
        write_pcapng(tmp_path / "mixed.pcapng", records)
        if records and records[0][3] == 1
        else None,
        _block_kinds(tmp_path / "kinds.pcapng", records),
    ):
        if copy is None:
            continue
        stats, rows, packets = _replay(copy, skip=False)
        assert _replay(copy, skip=True) == (stats, rows, packets)
        assert packets == stats["packets"] == len(records)


def test_pcapng_walker_skips_what_the_pcap_walker_skips(tmp_path: Path) -> None:
    """The demo as pcapng: the walker leaves out the frames the pcap walker leaves out
    (same counts, same bytes), and the replays agree with the pcap's."""
    records = dpkt_records(DEMO)
    copy = _block_kinds(tmp_path / "demo.pcapng", records)

    def skipped(p: Path) -> tuple[int, int, int]:
        source = open_replay([str(p)], skip_ignored=True)
        n = n_skipped = skipped_bytes = 0
        while (batch := source.read_batch(1000)) is not None:
            n += batch.n
            n_skipped += batch.n_skipped
            skipped_bytes += batch.skipped_bytes
        assert source.stats().bytes == sum(len(r[4]) for r in records)
        source.close()
        return n, n_skipped, skipped_bytes

    assert skipped(copy) == skipped(DEMO)
    assert skipped(DEMO)[1] > len(records) // 4
    stats, _, packets = _replay(DEMO, skip=True)
    assert _replay(copy, skip=True)[0] == stats
    assert packets == len(records)


# standard input through a real pipe: (decode stats, events, packets, batches, skipped)
STDIN_REPLAY = """
import json, sys
import wormwatch.source.stdin as stdin
from wormwatch.decode import Decoder
from wormwatch.source.pcapfile import open_replay
# a generous wait for more bytes (and time for them): the batches do not depend on this
# machine's load
stdin._FILL_WAIT_S, stdin._FILL_BUDGET_S = float(sys.argv[1]), float(sys.argv[2])
source = open_replay(["-"], skip_ignored=True)
decoder = Decoder()
rows, n_batches, n_skipped = [], 0, 0
while (batch := source.read_batch(16384)) is not None:
    n_batches += 1
    n_skipped += batch.n_skipped
    ev = decoder.decode(batch)
    for i in range(ev.n):
        rows.append([int(ev.ts_us[i]), int(ev.src_hi[i]), int(ev.src_lo[i]), int(ev.dst_hi[i]),
                     int(ev.dst_lo[i]), int(ev.kind[i]), int(ev.dport[i]), int(ev.sport[i]),
                     int(ev.qtype[i]), int(ev.status[i]),
                     bytes(ev.names[i, : ev.name_lens[i]]).hex()])
print(json.dumps([decoder.stats.as_dict(), rows, source.stats().packets, n_batches, n_skipped]))
"""


# writes a file to standard output 2,000 bytes at a time, a millisecond apart: a live
# capture piped in that never pauses long enough for a fill to stop waiting
TRICKLE = """
import sys, time
data = open(sys.argv[1], "rb").read()
for i in range(0, len(data), 2000):
    sys.stdout.buffer.write(data[i : i + 2000])
    sys.stdout.buffer.flush()
    time.sleep(0.001)
"""


def _replay_piped(
    path: Path, wait_s: float = 0.2, budget_s: float = 30.0, *, trickle: bool = False
) -> tuple[object, ...]:
    writer = [sys.executable, "-c", TRICKLE, str(path)] if trickle else ["cat", str(path)]
    with subprocess.Popen(writer, stdout=subprocess.PIPE) as cat:
        done = subprocess.run(
            [sys.executable, "-c", STDIN_REPLAY, str(wait_s), str(budget_s)],
            stdin=cat.stdout,
            capture_output=True,
            check=True,
            timeout=300,
        )
    return tuple(json.loads(done.stdout))


def _stdin_captures() -> list[Path]:
    names = [
        "honeynet_attack-trace.pcap",
        "tcpdump_802.1ad_QinQ.pcap",
        "zeek_ipv6-fragmented-dns.pcap",
        "zeek_pcapng-multi-interface.pcapng",
    ]
    return [
        DEMO,
        PCAPS / "multi_if.pcapng",
        *(REAL_PCAPS / n for n in names if (REAL_PCAPS / n).exists()),
    ]


def test_stdin_pcapng_replay_with_skipping_equals_the_file_without(tmp_path: Path) -> None:
    """The demo as pcapng (Enhanced, Packet and Simple Packet Blocks in turn) through a
    pipe: as the pcap file, with the bulk left out by the walker."""
    copy = _block_kinds(tmp_path / "demo.pcapng", dpkt_records(DEMO))
    stats, rows, packets = _replay(copy, skip=False)
    got_stats, got_rows, got_packets, _, n_skipped = _replay_piped(copy)
    assert (got_stats, got_packets) == (stats, packets)
    assert got_rows == [[*r[:-1], r[-1].hex()] for r in rows]  # type: ignore[union-attr]
    assert n_skipped > packets // 4


@pytest.mark.parametrize("path", _stdin_captures(), ids=lambda p: p.name)
def test_stdin_replay_with_skipping_equals_the_file_without(path: Path) -> None:
    stats, rows, packets = _replay(path, skip=False)
    got_stats, got_rows, got_packets, _, n_skipped = _replay_piped(path)
    assert (got_stats, got_packets) == (stats, packets)
    as_lists = [[*r[:-1], r[-1].hex()] for r in rows]  # type: ignore[union-attr]
    assert got_rows == as_lists
    assert n_skipped <= stats["ignored"]
    if path == DEMO:
        assert n_skipped > packets // 4


def test_a_fast_writer_fills_large_batches(tmp_path: Path) -> None:
    """cat keeps the pipe full but never ahead of the reader: a batch still waits for
    a few MiB, so nearly every batch holds the 16,384 packets asked for (not one pipe's
    worth: ~20 MB of packets used to come in ~300 batches)."""
    records = dpkt_records(DEMO)
    step = records[-1][0] - records[0][0] + 1
    many = [(ts + k * step, *rest) for k in range(10) for ts, *rest in records]
    path = write_pcap(tmp_path / "ten.pcap", many)  # type: ignore[arg-type]
    assert path.stat().st_size > 16 << 20
    _, _, packets, n_batches, _ = _replay_piped(path)
    assert packets == len(many)
    assert n_batches <= -(-packets // 16384) + 3


def test_a_steady_trickle_is_not_held_back() -> None:
    """A writer that never pauses for a fill's wait (here 0.2 s) still gets its packets
    handed on in batches every ~50 ms, not once 8 MiB have come: the demo's 1.9 MB over
    ~1 s come in many batches (they came in one)."""
    _, _, packets, n_batches, _ = _replay_piped(DEMO, budget_s=0.05, trickle=True)
    assert packets == len(dpkt_records(DEMO))
    assert n_batches >= 5
