"""Several capture files merged by packet time (``wormwatch.source.merge``).

The reference is the whole capture: a capture split into files (by protocol, by time,
at random) and merged again must give back its records in packet-time order, and the
sensor must say the same about it, byte for byte, as about the whole capture.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wormwatch.kernels.merge import merge_heads
from wormwatch.source import MapsAhead
from wormwatch.source.mapping import MAP_AHEAD_BYTES, MAP_STEP_BYTES
from wormwatch.source.merge import RUN, MergedReplay, warm_up
from wormwatch.source.pcapfile import open_replay

from testkit.paths import DEMO
from testkit.pcap import (
    ETH_HEADER,
    ETH_P_IP,
    LINKTYPE_ETHERNET,
    Record,
    dpkt_records,
    is_udp,
    pcap_header,
    present_pages,
    resident_file_kib,
    write_pcap,
    write_pcapng,
)


def read_all(paths: list[Path], batch: int = 4096, **kwargs: bool) -> list[tuple[int, bytes]]:
    """(ts_us, IP packet bytes) of every record the replay source hands out, in order."""
    source = open_replay([str(p) for p in paths], **kwargs)
    out = []
    while (b := source.read_batch(batch)) is not None:
        for i in range(b.n):
            data = bytes(b.data[b.offsets[i] : b.offsets[i] + b.caplens[i]])
            out.append((int(b.ts_us[i]), ip_part(int(b.linktypes[i]), data)))
    source.close()
    return out


def ip_part(linktype: int, data: bytes) -> bytes:
    """The bytes after the link header when it is plain Ethernet IPv4 (to compare raw-IP
    and Ethernet copies of one packet), else the whole frame."""
    if linktype == LINKTYPE_ETHERNET and struct.unpack_from("!H", data, 12)[0] == ETH_P_IP:
        return data[ETH_HEADER:]
    return data


def expected(parts: list[list[Record]]) -> list[tuple[int, bytes]]:
    """mergecap's order: the earliest next record, ties to the file named last."""
    keyed = [(r[0], -k, i, r) for k, part in enumerate(parts) for i, r in enumerate(part)]
    return [(r[0], ip_part(r[3], r[4])) for *_, r in sorted(keyed, key=lambda x: x[:3])]


@pytest.fixture(scope="module")
def demo() -> list[Record]:
    return dpkt_records(DEMO)


@pytest.fixture(scope="module")
def split_by_protocol(demo: list[Record], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The demo split as two taps would see it: UDP in a microsecond pcap, the rest in a
    nanosecond pcapng whose IPv4 frames are raw IP."""
    folder = tmp_path_factory.mktemp("split")
    udp = write_pcap(folder / "udp.pcap", [r for r in demo if is_udp(r)])
    rest = write_pcapng(folder / "rest.pcapng", [r for r in demo if not is_udp(r)])
    return [udp, rest]


def test_split_by_protocol_merges_back_in_packet_time(
    demo: list[Record], split_by_protocol: list[Path]
) -> None:
    udp, rest = split_by_protocol
    parts = [[r for r in demo if is_udp(r)], [r for r in demo if not is_udp(r)]]
    assert parts[0]
    assert parts[1]
    assert read_all([udp, rest]) == expected(parts)
    assert read_all([rest, udp], batch=333) == expected(parts[::-1])
    # one after the other, time jumps back at the second file
    concatenated = read_all([udp, rest], concatenate=True)
    assert concatenated == [(r[0], ip_part(r[3], r[4])) for r in parts[0] + parts[1]]


def test_files_that_do_not_overlap_merge_as_they_concatenate(
    demo: list[Record], tmp_path: Path
) -> None:
    half = len(demo) // 2
    first = write_pcap(tmp_path / "a.pcap", demo[:half])
    second = write_pcap(tmp_path / "b.pcap", demo[half:], is_nano=True)
    merged = read_all([second, first], batch=1000)
    assert merged == read_all([first, second], concatenate=True)
    assert merged == [(r[0], ip_part(r[3], r[4])) for r in demo]


def test_time_going_back_inside_a_file_keeps_that_file_s_order(tmp_path: Path) -> None:
    frames = [bytes([k]) * 60 for k in range(6)]
    # file a goes back in time (30 after 50); mergecap keeps a file's own order
    a = write_pcap(
        tmp_path / "a.pcap", [(t, 60, 60, 1, frames[k]) for k, t in enumerate([10, 50, 30])]
    )
    b = write_pcap(
        tmp_path / "b.pcap", [(t, 60, 60, 1, frames[3 + k]) for k, t in enumerate([20, 40, 60])]
    )
    got = read_all([a, b], batch=2)
    assert [ts for ts, _ in got] == [10, 20, 40, 50, 30, 60]
    assert [data[0] for _, data in got] == [0, 3, 4, 1, 2, 5]


def test_ties_go_to_the_file_named_last_as_mergecap_s_do(tmp_path: Path) -> None:
    # mergecap 4.0 on the same two files: b0 b1 a0 a1 b2 a2 b3 a3
    times = [100, 100, 101, 102]
    a = write_pcap(
        tmp_path / "a.pcap", [(t, 60, 60, 1, bytes([k]) * 60) for k, t in enumerate(times)]
    )
    b = write_pcap(
        tmp_path / "b.pcap", [(t, 60, 60, 1, bytes([4 + k]) * 60) for k, t in enumerate(times)]
    )
    got = [data[0] for _, data in read_all([a, b], batch=3)]
    assert got == [4, 5, 0, 1, 6, 2, 7, 3]
    assert [data[0] for _, data in read_all([b, a])] == [0, 1, 4, 5, 2, 6, 3, 7]


@settings(max_examples=25, deadline=None)
@given(
    n_files=st.integers(2, 4),
    seed=st.integers(0, 2**32 - 1),
    batch=st.integers(1, 700),
)
def test_random_splits_merge_back_to_the_capture(
    demo: list[Record],
    tmp_path_factory: pytest.TempPathFactory,
    n_files: int,
    seed: int,
    batch: int,
) -> None:
    rng = np.random.default_rng(seed)
    records = demo[:1500]
    owner = rng.integers(0, n_files, len(records))
    parts = [[r for r, o in zip(records, owner, strict=True) if o == k] for k in range(n_files)]
    folder = tmp_path_factory.mktemp("random")
    paths = []
    for k in range(n_files):
        parts[k] = parts[k] or records[:1]  # every file holds something
        part = parts[k]
        if k % 2:
            paths.append(write_pcapng(folder / f"{k}.pcapng", part))
        else:
            paths.append(write_pcap(folder / f"{k}.pcap", part, is_nano=k == 2))
    assert read_all(paths, batch=batch) == expected(parts)


def test_a_damaged_file_keeps_its_packets_and_the_others_go_on(
    demo: list[Record], tmp_path: Path
) -> None:
    a = write_pcap(tmp_path / "a.pcap", demo[:300:2])
    b = write_pcap(tmp_path / "b.pcap", demo[1:300:2])
    raw = a.read_bytes()
    a.write_bytes(raw[: len(raw) - 20])  # the last record is cut short
    source = open_replay([str(a), str(b)])
    n = 0
    while (batch := source.read_batch(64)) is not None:
        assert np.all(np.diff(batch.ts_us) >= 0)
        n += batch.n
    warnings = source.stats().warnings
    source.close()
    assert n == 149 + 150
    assert len(warnings) == 1
    assert "truncated record" in warnings[0]
    assert "a.pcap" in warnings[0]


def test_several_files_are_merged_unless_concatenated() -> None:
    # (standard input is never merged: tests/source/test_pcapfile.py reads "-" and a file in order)
    concatenated = open_replay([str(DEMO), str(DEMO)], concatenate=True)
    assert not isinstance(concatenated, MergedReplay)
    concatenated.close()
    merged = open_replay([str(DEMO), str(DEMO)])
    assert isinstance(merged, MergedReplay)
    assert merged.name == "demo.pcap +1 more"
    merged.close()


def test_merge_kernel_stops_for_a_run_that_must_be_refilled() -> None:
    ts = np.array([[1, 5, 0], [2, 3, 4]], np.int64)
    counts = np.array([2, 3], np.int64)
    cursors = np.zeros(2, np.int64)
    finished = np.array([False, True])
    out_file = np.empty(10, np.int64)
    out_record = np.empty(10, np.int64)
    n = merge_heads(ts, counts, cursors, finished, out_file, out_record)
    # file 0's run ends after ts 5: its next record (not read yet) could be earlier than
    # anything left, so the kernel stops there
    assert n == 5
    assert out_file[:n].tolist() == [0, 1, 1, 1, 0]
    assert out_record[:n].tolist() == [0, 0, 1, 2, 1]
    assert merge_heads(ts, counts, cursors, finished, out_file, out_record) == 0
    finished[0] = True
    assert merge_heads(ts, counts, cursors, finished, out_file, out_record) == 0


def test_merge_kernel_compiled_one_signature(split_by_protocol: list[Path]) -> None:
    warm_up()
    read_all(split_by_protocol)
    assert len(merge_heads.signatures) == 1


def alternating(tmp_path: Path, n: int) -> list[str]:
    """Two files of ``n`` 200-byte records each whose packets alternate in time (the
    worst interleaving for the merge), with the kernels' libraries loaded first (they
    are mapped files too, counted in resident memory)."""
    read_all([DEMO, DEMO])
    return [
        str(
            write_pcap(
                tmp_path / f"{k}.pcap", [(2 * i + k, 184, 184, 1, bytes(184)) for i in range(n)]
            )
        )
        for k in range(2)
    ]


def read_watching_resident(
    paths: list[str], batch: int, *, map_ahead: bool = False
) -> tuple[int, int]:
    """Replays ``paths`` (merged when several), touching every packet: (packets read,
    KiB of file pages the process held at most beyond what it held at the start).
    With ``map_ahead``, maps as far ahead as it goes after every batch (as the
    decode-ahead feed's other thread does while it waits)."""
    read_all([DEMO, DEMO])  # the kernels' libraries are mapped files too: load them first
    source = open_replay(paths)
    before = resident_file_kib()
    peak = before
    n_read = 0
    while (got := source.read_batch(batch)) is not None:
        assert not got.data[got.offsets + 100].any()  # touch every packet
        n_read += got.n
        while map_ahead and isinstance(source, MapsAhead) and source.map_ahead():
            pass
        peak = max(peak, resident_file_kib())
    source.close()
    return n_read, peak - before


def test_map_ahead_maps_each_file_its_share(tmp_path: Path) -> None:
    """A merged replay maps its files in ahead of their walkers in turns, each up to its
    share of ``MAP_AHEAD_BYTES``; the merge reads the same packets in the same order."""
    n = 200_000  # 40 MB a file
    source = open_replay(alternating(tmp_path, n))
    assert isinstance(source, MergedReplay)
    first = source.read_batch(100)
    assert first is not None
    before = resident_file_kib()
    steps = 0
    while source.map_ahead():
        steps += 1
    assert steps == 2 * (MAP_AHEAD_BYTES // 2 // MAP_STEP_BYTES)
    grown = resident_file_kib() - before
    assert MAP_AHEAD_BYTES // 1024 - 2048 <= grown <= MAP_AHEAD_BYTES // 1024 + 2048
    ts = first.ts_us[: first.n].tolist()
    while (batch := source.read_batch(4096)) is not None:
        ts += batch.ts_us[: batch.n].tolist()
        source.map_ahead()
    assert ts == list(range(2 * n))
    assert not source.map_ahead()


def test_map_ahead_lets_go_what_it_mapped_behind_the_merge(tmp_path: Path) -> None:
    """A step held up while the merge reads on and lets that part of the file go: its
    pages are let go too (else they would stay mapped to the end of the replay)."""
    n = 100_000  # 20 MB a file
    source = open_replay(alternating(tmp_path, n))
    assert isinstance(source, MergedReplay)
    assert source.read_batch(100) is not None
    part = source._parts[0]
    start = part.pos
    view = part._mapped
    assert view is not None
    map_in = view.map_in

    def held_up(lo: int, hi: int) -> bool:
        # the merge reads ~16 MB of each file on before this step maps
        for _ in range(8):
            assert source.read_batch(20_000) is not None
        return map_in(lo, hi)

    view.map_in = held_up  # type: ignore[method-assign]
    assert source.map_ahead()
    assert int(source._released[0]) > start + MAP_STEP_BYTES
    assert present_pages(part._data.ctypes.data + start, MAP_STEP_BYTES - 4096) == 0


@pytest.mark.parametrize("batch", [RUN, 4 * RUN])
def test_resident_memory_stays_flat_while_merging(tmp_path: Path, batch: int) -> None:
    n = 300_000  # 60 MB a file
    paths = alternating(tmp_path, n)
    n_read, grown = read_watching_resident(paths, batch)
    assert n_read == 2 * n
    # pages behind the merge are let go: what stays resident is a few runs per file,
    # not the 120 MB read
    assert grown < 30_000
    # and with the files mapped in ahead, at most that much more
    n_read, grown = read_watching_resident(paths, batch, map_ahead=True)
    assert n_read == 2 * n
    assert grown < 30_000 + MAP_AHEAD_BYTES // 1024


def test_resident_memory_stays_flat_reading_one_file(tmp_path: Path) -> None:
    """A file replayed alone: pages behind the reader go at each read (one batch's span
    stays), through ``madvise`` outside the GIL."""
    frame = bytes(184)
    n = 400_000
    path = write_pcap(tmp_path / "one.pcap", [(i, 184, 184, 1, frame) for i in range(n)])
    n_read, grown = read_watching_resident([str(path)], RUN)
    assert n_read == n
    # 80 MB read; a batch of RUN records spans well under 10 MB
    assert grown < 20_000


_READ_UNDER_A_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
from wormwatch.source.pcapfile import open_replay
source = open_replay(sys.argv[1:])
n = 0
while (batch := source.read_batch(4096)) is not None:
    n += batch.n
source.close()
print(n)
"""


def test_more_files_than_the_open_file_limit_merge(demo: list[Record], tmp_path: Path) -> None:
    """120 files under a limit of 64 descriptors: each is opened, mapped and closed in
    turn (all were opened at once: "Too many open files", blamed on a moved file)."""
    paths = [
        str(write_pcap(tmp_path / f"{k:03d}.pcap", demo[5 * k : 5 * k + 5])) for k in range(120)
    ]
    done = subprocess.run(
        [sys.executable, "-c", _READ_UNDER_A_LIMIT, *paths],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == 600


def test_files_larger_together_than_memory_merge(tmp_path: Path) -> None:
    """The merge reserved its range of addresses as writable shared memory, counted
    against memory: two 16 GB captures on a 23 GB machine failed with "OSError: [Errno
    12] Cannot allocate memory" (a traceback). Two sparse files of 1 TiB each (far more
    than any test machine's memory; on disk a few KB) now open, and their first records
    are read."""
    paths = []
    for name in ("a.pcap", "b.pcap"):
        path = tmp_path / name
        with path.open("wb") as file:
            file.write(pcap_header())
            file.truncate(1 << 40)  # a hole: records of zeros, 16 bytes each
        paths.append(str(path))
    source = open_replay(paths)
    try:
        batch = source.read_batch(8)
        assert batch is not None
        assert batch.n == 8
        assert batch.data.shape[0] >= 2 << 40
    finally:
        source.close()
