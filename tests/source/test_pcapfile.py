"""The replay source: capture files and standard input -> batches of packets.

Every real capture must give the records dpkt reads (timestamp, lengths, link type,
bytes); crafted files cover all four pcap magics, pcapng with several sections and
interfaces, the error messages and the warnings for damage met half-way.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wormwatch.errors import WormwatchError
from wormwatch.kernels.pcapwalk import MAX_TS_US, walk_pcap, walk_pcapng
from wormwatch.source import MapsAhead
from wormwatch.source.mapping import MAP_AHEAD_BYTES, MAP_STEP_BYTES
from wormwatch.source.pcapfile import (
    MAX_CAPLEN,
    ReplaySource,
    _MappedFile,
    open_replay,
    warm_up,
)
from wormwatch.text import iso_time, utc_time

from testkit.paths import PCAPS
from testkit.pcap import (
    BT_ISB,
    BT_NRB,
    Record,
    block,
    dpkt_pcapng_packets,
    dpkt_records,
    epb,
    idb,
    packet_block,
    pcap_file,
    present_pages,
    resident_file_kib,
    shb,
    spb,
    ticks_to_us,
    write_pcap,
)

# committed samples (classic little-endian microsecond pcap; pcapng with two interfaces):
# the crafted-file tests start from these, so they run without the real captures
SMALL = PCAPS / "dns_names.pcap"
MULTI = PCAPS / "multi_if.pcapng"


def read_all(source: ReplaySource, max_packets: int = 4096) -> list[Record]:
    """Every record the source hands out, checking each batch's invariants on the way."""
    out: list[Record] = []
    while (batch := source.read_batch(max_packets)) is not None:
        assert 1 <= batch.n <= max_packets
        assert batch.data.dtype == np.uint8
        assert not batch.data.flags.writeable
        for i in range(batch.n):
            start = int(batch.offsets[i])
            data = batch.data[start : start + int(batch.caplens[i])].tobytes()
            out.append(
                (
                    int(batch.ts_us[i]),
                    int(batch.caplens[i]),
                    int(batch.wirelens[i]),
                    int(batch.linktypes[i]),
                    data,
                )
            )
    return out


def replay(
    paths: list[Path | str], max_packets: int = 4096, *, concatenate: bool = False
) -> tuple[list[Record], list[str]]:
    source = open_replay([str(p) for p in paths], concatenate=concatenate)
    records = read_all(source, max_packets)
    warnings = source.stats().warnings
    source.close()
    return records, warnings


def test_real_capture_matches_dpkt(real_capture: Path) -> None:
    path = real_capture
    expected = dpkt_records(path)
    source = open_replay([str(path)])
    batch = source.read_batch(4096)
    assert batch is not None
    # the batch's bytes are the mapped file itself, not a copy
    assert batch.data.shape[0] == path.stat().st_size
    assert not batch.data.flags.owndata
    source.close()
    records, warnings = replay([path])
    assert records == expected
    assert warnings == []
    if path.suffix == ".pcapng":
        assert [r[4] for r in records] == dpkt_pcapng_packets(path)


def test_multi_interface_pcapng_uses_each_interface_resolution(real_pcaps: Path) -> None:
    # interface 0 counts nanoseconds, interface 1 microseconds (zeek's sample)
    records, _ = replay([real_pcaps / "zeek_pcapng-multi-interface.pcapng"])
    assert [r[0] for r in records] == [
        1767663089500330,
        1767663089514291,
        1767663437111897,
        1767663437126460,
        1767663437128303,
        1767663437140942,
    ]


def small_records() -> list[tuple[int, int, int, bytes]]:
    """(sec, usec, wirelen, bytes) of a small sample file, re-read by struct."""
    raw = SMALL.read_bytes()
    assert raw[:4] == b"\xd4\xc3\xb2\xa1"
    out = []
    pos = 24
    while pos < len(raw):
        sec, usec, caplen, wirelen = struct.unpack_from("<IIII", raw, pos)
        out.append((sec, usec, wirelen, raw[pos + 16 : pos + 16 + caplen]))
        pos += 16 + caplen
    return out


@pytest.mark.parametrize(
    ("is_big", "is_nano"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_all_four_pcap_magics(tmp_path: Path, is_big: bool, is_nano: bool) -> None:
    rows = small_records()
    if is_nano:
        # sub-microsecond digits must be cut off, not rounded
        rows = [(sec, usec * 1000 + 999, wirelen, data) for sec, usec, wirelen, data in rows]
    path = tmp_path / "variant.pcap"
    path.write_bytes(pcap_file(rows, linktype=1, is_big=is_big, is_nano=is_nano))
    records, warnings = replay([path], max_packets=5)
    assert records == replay([SMALL])[0]
    assert records == dpkt_records(path)
    assert warnings == []


def test_linktype_is_the_low_16_bits(tmp_path: Path) -> None:
    path = tmp_path / "fcs.pcap"
    # bit 28 says an FCS is present, bits 29-31 give its length in 16-bit words (4 bytes)
    path.write_bytes(pcap_file([(1, 2, 3, b"abc")], linktype=(2 << 29) | (1 << 28) | 101))
    assert replay([path])[0] == [(1_000_002, 3, 3, 101, b"abc")]


def crafted_pcapng() -> tuple[bytes, list[Record]]:
    """Two sections (little, then big endian), interfaces of different link types and
    resolutions, every packet block type, and blocks to skip; plus the expected records."""
    frames = [bytes([i]) * (20 + i) for i in range(10)]
    ns_ticks = 1_700_000_000_123_456_789  # interface 0: if_tsresol 9 (nanoseconds)
    b2_ticks = (1_700_000_001 << 20) | (1 << 19)  # interface 1: 2^-20 s, x.5 s
    us_ticks = 1_700_000_002_000_007  # section 2, interface 0: default microseconds
    offset_s = 3600  # interface 1: if_tsoffset one hour
    data = b"".join(
        [
            shb(),
            idb(1, tsresol=9),
            block(BT_NRB, b"\0\0\0\0"),
            epb(0, ns_ticks, frames[0], wirelen=1500),
            idb(101, tsresol=0x80 | 20, tsoffset_s=offset_s),
            epb(1, b2_ticks, frames[1]),
            spb(frames[2]),
            packet_block(1, b2_ticks + 1024, frames[3]),
            block(0x0000_7777, b"unknown"),
            block(BT_ISB, b"\0" * 12),
            epb(0, ns_ticks + 1000, frames[4]),
            block(0x0000_7778, b"unknown too"),
            shb(is_big=True),
            idb(113, is_big=True),
            epb(0, us_ticks, frames[5], is_big=True),
            spb(frames[6] + b"pad", wirelen=len(frames[6]), is_big=True),
            epb(0, us_ticks + 1, frames[7], is_big=True),
        ]
    )
    ts0 = ticks_to_us(ns_ticks, 9)
    ts1 = ticks_to_us(b2_ticks, 0x80 | 20) + offset_s * 1_000_000
    ts3 = ticks_to_us(b2_ticks + 1024, 0x80 | 20) + offset_s * 1_000_000
    expected = [
        (ts0, len(frames[0]), 1500, 1, frames[0]),
        (ts1, len(frames[1]), len(frames[1]), 101, frames[1]),
        (ts1, len(frames[2]), len(frames[2]), 1, frames[2]),  # SPB: interface 0, last ts
        (ts3, len(frames[3]), len(frames[3]), 101, frames[3]),
        (ts0 + 1, len(frames[4]), len(frames[4]), 1, frames[4]),
        (us_ticks, len(frames[5]), len(frames[5]), 113, frames[5]),
        (us_ticks, len(frames[6]), len(frames[6]), 113, frames[6]),
        (us_ticks + 1, len(frames[7]), len(frames[7]), 113, frames[7]),
    ]
    return data, expected


def test_pcapng_sections_interfaces_and_block_types(tmp_path: Path) -> None:
    data, expected = crafted_pcapng()
    assert expected[0][0] == 1_700_000_000_123_456
    assert expected[1][0] == 1_700_003_601_500_000
    path = tmp_path / "crafted.pcapng"
    path.write_bytes(data)
    assert dpkt_records(path) == expected
    for max_packets in (1, 2, 3, 7, 4096):
        records, warnings = replay([path], max_packets)
        assert records == expected, max_packets
        assert warnings == [f"file {path}: skipped 2 pcapng blocks of unknown type"]


@pytest.mark.parametrize("path", [SMALL, MULTI], ids=["pcap", "pcapng"])
def test_batch_size_does_not_change_the_records(path: Path) -> None:
    whole = replay([path], 4096)[0]
    assert whole
    assert replay([path], 1)[0] == whole
    assert replay([path], 7)[0] == whole


def test_map_ahead_maps_the_reader_s_next_pages_and_no_further(tmp_path: Path) -> None:
    """Another thread maps a file in ahead of its reader (``MapsAhead``, what the
    decode-ahead feed does while it waits): the pages become resident before the reader
    gets there, up to ``MAP_AHEAD_BYTES`` past it in ``MAP_STEP_BYTES`` steps, and the
    records read are the same."""
    n = 400_000  # 80 MB
    path = write_pcap(tmp_path / "one.pcap", [(i, 184, 184, 1, bytes(184)) for i in range(n)])
    source = ReplaySource([str(path)])
    assert isinstance(source, MapsAhead)
    assert not source.map_ahead()  # no file open yet
    ts: list[int] = []
    batch = source.read_batch(1000)
    assert batch is not None
    ts += batch.ts_us[: batch.n].tolist()
    before = resident_file_kib()
    steps = 0
    while source.map_ahead():
        steps += 1
    assert steps == MAP_AHEAD_BYTES // MAP_STEP_BYTES
    grown = resident_file_kib() - before
    assert MAP_AHEAD_BYTES // 1024 - 1024 <= grown <= MAP_AHEAD_BYTES // 1024 + 1024
    # the reader moves on: mapping goes on, up to the new limit
    while (batch := source.read_batch(4096)) is not None:
        ts += batch.ts_us[: batch.n].tolist()
        source.map_ahead()
    assert not source.map_ahead()  # finished
    assert ts == list(range(n))


def test_map_ahead_lets_go_what_it_mapped_behind_the_reader(tmp_path: Path) -> None:
    """The mapping thread held up in the middle of a step while the reader reads on and
    lets its pages go: the step's pages, behind the reader by then, are let go too
    (else they would stay mapped to the end of the file)."""
    n = 200_000  # 40 MB, 200 bytes a record
    path = write_pcap(tmp_path / "one.pcap", [(i, 184, 184, 1, bytes(184)) for i in range(n)])
    source = ReplaySource([str(path)])
    assert source.read_batch(1000) is not None
    part = source._current
    assert isinstance(part, _MappedFile)
    assert part._mapped is not None
    start = part.pos
    map_in = part._mapped.map_in

    def held_up(lo: int, hi: int) -> bool:
        # the reader reads ~12 MB on (letting the first ~8 MB go) before this step maps
        for _ in range(3):
            assert source.read_batch(20_000) is not None
        return map_in(lo, hi)

    part._mapped.map_in = held_up  # type: ignore[method-assign]
    assert source.map_ahead()
    assert part.pos > start + MAP_STEP_BYTES
    base = part._data.ctypes.data
    assert present_pages(base + start, MAP_STEP_BYTES - 4096) == 0


def test_several_files_in_order_one_file_per_batch(tmp_path: Path) -> None:
    crafted = tmp_path / "crafted.pcapng"
    crafted.write_bytes(crafted_pcapng()[0])
    paths = [SMALL, crafted, MULTI]
    source = open_replay([str(p) for p in paths], concatenate=True)
    assert source.name == "dns_names.pcap +2 more"
    sizes = set()
    n_packets = 0
    n_bytes = 0
    while (batch := source.read_batch(5)) is not None:
        sizes.add(batch.data.shape[0])
        n_packets += batch.n
        n_bytes += int(batch.caplens.sum())
    assert sizes == {p.stat().st_size for p in paths}
    stats = source.stats()
    assert (stats.packets, stats.bytes) == (n_packets, n_bytes)
    assert stats.kernel_dropped is None
    records = replay(paths, concatenate=True)[0]
    assert records == [r for p in paths for r in dpkt_records(p)]
    assert source.read_batch(5) is None


def test_name_of_a_single_file() -> None:
    assert open_replay([str(SMALL)]).name == "dns_names.pcap"


def expect_error(paths: list[str], *fragments: str) -> None:
    with pytest.raises(WormwatchError) as info:
        open_replay(paths)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_missing_file(tmp_path: Path) -> None:
    expect_error([str(SMALL), str(tmp_path / "nope.pcap")], "nope.pcap", "no such file")


def test_directory(tmp_path: Path) -> None:
    expect_error([str(tmp_path)], str(tmp_path), "is a directory", "name the capture files")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcap"
    path.write_bytes(b"")
    expect_error([str(path)], "empty.pcap", "empty (0 bytes)")


def test_not_a_capture_names_the_magic_seen(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_bytes(b"<!DOCTYPE html><html></html>")
    expect_error([str(path)], "page.html", "not a pcap or pcapng", "3c 21 44 4f", "tcpdump -w")


def test_gzipped_capture_says_gunzip(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + b"\0" * 30)
    expect_error([str(path)], "1f 8b 08 00", "gunzip")


ZSTD = b"\x28\xb5\x2f\xfd" + b"\0" * 30
XZ = b"\xfd7zXZ\x00" + b"\0" * 30


def test_other_compressed_captures_say_how_to_decompress(tmp_path: Path) -> None:
    for name, packed, hint in (("a.pcap.zst", ZSTD, "zstd-compressed: zstd -d it first"),
                               ("a.pcap.xz", XZ, "xz-compressed: unxz it first")):  # fmt: skip
        path = tmp_path / name
        path.write_bytes(packed)
        expect_error([str(path)], name, hint)


@pytest.mark.parametrize(
    ("packed", "hint"),
    [
        (b"\x1f\x8b\x08\x00" + b"\0" * 30, "it is gzip-compressed: pipe it through gunzip -c"),
        (ZSTD, "it is zstd-compressed: pipe it through zstd -d -c"),
    ],
    ids=["gzip", "zstd"],
)
def test_stdin_compressed_says_how_to_decompress(tmp_path: Path, packed: bytes, hint: str) -> None:
    path = tmp_path / "packed"
    path.write_bytes(packed)
    error = str(run_with_stdin(path, "-")["error"])
    assert error.startswith("standard input is not a readable pcap or pcapng capture")
    assert hint in error


def test_pcap_header_truncated(tmp_path: Path) -> None:
    path = tmp_path / "short.pcap"
    path.write_bytes(SMALL.read_bytes()[:10])
    expect_error([str(path)], "short.pcap", "header truncated (10 of 24 bytes)")


@pytest.mark.parametrize("size", [6, 20, 40])
def test_pcapng_header_truncated(tmp_path: Path, size: int) -> None:
    path = tmp_path / "short.pcapng"
    path.write_bytes(MULTI.read_bytes()[:size])
    expect_error([str(path)], "short.pcapng", "section header truncated")


def test_pcapng_bad_byte_order_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad.pcapng"
    data = bytearray(shb())
    data[8:12] = b"\x01\x02\x03\x04"
    path.write_bytes(bytes(data))
    expect_error([str(path)], "bad.pcapng", "byte-order magic 0x04030201")


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.pcap"
    path.write_bytes(SMALL.read_bytes())
    path.chmod(0)
    if os.geteuid() == 0:
        # root reads anything: make opening this one file fail as it would for a user
        real_open = open

        def deny(file: object, *args: object, **kwargs: object) -> object:
            if str(file) == str(path):
                raise PermissionError(errno.EACCES, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

        monkeypatch.setattr("builtins.open", deny)
    expect_error([str(path)], "secret.pcap", "permission denied")


def test_no_paths_and_stdin_twice() -> None:
    expect_error([], "no capture file given")
    expect_error(["-", "-"], "only once")


def test_max_packets_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        open_replay([str(SMALL)]).read_batch(0)


def test_truncated_last_record_keeps_the_packets_before(tmp_path: Path) -> None:
    raw = SMALL.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(raw[:-5])
    expected = dpkt_records(SMALL)
    last_start = len(raw) - 16 - expected[-1][1]
    records, warnings = replay([cut, SMALL], max_packets=4, concatenate=True)
    # the replay goes on with the next file
    assert records == expected[:-1] + expected
    assert warnings == [
        f"file {cut}: truncated record at byte {last_start} after {len(expected) - 1} "
        "packets; the packets before it were read"
    ]


def test_pcapng_truncated_block_keeps_the_packets_before(tmp_path: Path) -> None:
    data, expected = crafted_pcapng()
    path = tmp_path / "cut.pcapng"
    path.write_bytes(data[:-3])
    records, warnings = replay([path], max_packets=3)
    assert records == expected[:-1]
    assert warnings[0].startswith(f"file {path}: truncated record at byte ")
    assert "after 7 packets; the packets before it were read" in warnings[0]


def test_absurd_caplen_stops_the_file(tmp_path: Path) -> None:
    rows = small_records()[:3]
    path = tmp_path / "absurd.pcap"
    raw = bytearray(pcap_file(rows))
    third = 24 + sum(16 + len(r[3]) for r in rows[:2])
    struct.pack_into("<I", raw, third + 8, MAX_CAPLEN + 1)
    path.write_bytes(bytes(raw))
    records, warnings = replay([path])
    assert records == dpkt_records(SMALL)[:2]
    assert warnings == [
        f"file {path}: impossible record length at byte {third} after 2 packets "
        f"(caplen {MAX_CAPLEN + 1} is larger than {MAX_CAPLEN}); the packets before it "
        "were read, the rest of the file was skipped"
    ]


def test_caplen_of_exactly_256_kib_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.pcap"
    path.write_bytes(pcap_file([(0, 0, MAX_CAPLEN, b"\x5a" * MAX_CAPLEN)]))
    assert replay([path])[0] == [(0, MAX_CAPLEN, MAX_CAPLEN, 1, b"\x5a" * MAX_CAPLEN)]


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda b: struct.pack("<II", 6, 30) + b[8:], "block length 30"),  # not a multiple of 4
        (lambda b: struct.pack("<II", 6, 8) + b[8:], "block length 8"),  # below the minimum
        (lambda b: b[:-4] + struct.pack("<I", 4), "block length"),  # trailer disagrees
        (lambda b: b[:20] + struct.pack("<I", MAX_CAPLEN + 1) + b[24:], "caplen 262145"),
    ],
)
def test_pcapng_bad_block_lengths_stop_the_file(
    tmp_path: Path, damage: Callable[[bytes], bytes], fragment: str
) -> None:
    good = epb(0, 5, b"x" * 40)
    bad = damage(epb(0, 6, b"y" * 40))
    path = tmp_path / "bad.pcapng"
    path.write_bytes(shb() + idb(1) + good + bad + good)
    records, warnings = replay([path])
    assert records == [(5, 40, 40, 1, b"x" * 40)]
    at = len(shb() + idb(1) + good)
    assert len(warnings) == 1
    assert warnings[0].startswith(f"file {path}: impossible record length at byte {at} after 1")
    assert fragment in warnings[0]


def test_pcapng_packet_of_an_undescribed_interface(tmp_path: Path) -> None:
    path = tmp_path / "noif.pcapng"
    path.write_bytes(shb() + idb(1) + epb(0, 1, b"a" * 20) + epb(3, 2, b"b" * 20))
    records, warnings = replay([path])
    assert records == [(1, 20, 20, 1, b"a" * 20)]
    assert "names an interface that no interface description block described" in warnings[0]


def test_pcapng_interface_with_unusable_resolution(tmp_path: Path) -> None:
    path = tmp_path / "fine.pcapng"
    path.write_bytes(shb() + idb(1) + epb(0, 1, b"a" * 20) + idb(1, tsresol=0x80 | 100))
    records, warnings = replay([path])
    assert records == [(1, 20, 20, 1, b"a" * 20)]
    assert "if_tsresol 0xe4" in warnings[0]


STDIN_SCRIPT = """
import json, sys
from wormwatch.errors import WormwatchError
from wormwatch.source.pcapfile import open_replay
try:
    source = open_replay(sys.argv[1:])
except WormwatchError as err:
    print(json.dumps({"error": str(err)}))
    sys.exit(0)
rows = []
while (batch := source.read_batch(3)) is not None:
    for i in range(batch.n):
        start = int(batch.offsets[i])
        data = batch.data[start : start + int(batch.caplens[i])].tobytes()
        rows.append([int(batch.ts_us[i]), int(batch.caplens[i]), int(batch.wirelens[i]),
                     int(batch.linktypes[i]), data.hex()])
print(json.dumps({"name": source.name, "rows": rows, "warnings": source.stats().warnings}))
"""


def run_with_stdin(stdin: Path | int, *args: str) -> dict[str, object]:
    """Runs the script with a file's bytes piped to its standard input (or a given fd)."""
    piped = {"input": stdin.read_bytes()} if isinstance(stdin, Path) else {"stdin": stdin}
    done = subprocess.run(
        [sys.executable, "-c", STDIN_SCRIPT, *args],
        capture_output=True,
        check=True,
        timeout=120,
        **piped,  # type: ignore[arg-type]
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def as_json(records: list[Record]) -> list[list[object]]:
    return [[ts, cap, wire, link, data.hex()] for ts, cap, wire, link, data in records]


def test_stdin_reads_a_piped_capture() -> None:
    result = run_with_stdin(SMALL, "-", str(MULTI))
    assert result["name"] == "stdin +1 more"
    assert result["rows"] == as_json(dpkt_records(SMALL) + dpkt_records(MULTI))
    # a merge was asked for (no --concatenate) and cannot be done: said, not silent
    assert result["warnings"] == [
        "standard input cannot be merged by packet time: the inputs were read one after "
        "the other, in the order given (as with --concatenate); to merge, save standard "
        "input to a file first"
    ]


def test_stdin_alone_has_no_merge_warning() -> None:
    assert run_with_stdin(SMALL, "-")["warnings"] == []


IDLE_SCRIPT = """
import sys
from wormwatch.source.pcapfile import open_replay
source = open_replay(["-"])
packets = idle = 0
while (batch := source.read_batch(100)) is not None:
    packets += batch.n
    idle += batch.n == 0
print(packets, idle)
"""


@pytest.mark.parametrize("is_pcapng", [False, True], ids=["pcap", "pcapng"])
def test_silent_stdin_gives_empty_batches_instead_of_blocking(is_pcapng: bool) -> None:
    # a writer that stops for a while (tcpdump on a quiet link) must not block the read:
    # the decode-ahead thread could not see a stop (q, Ctrl-C) until its join timed out
    capture = (MULTI if is_pcapng else SMALL).read_bytes()
    n = len(dpkt_records(MULTI if is_pcapng else SMALL))
    with subprocess.Popen(
        [sys.executable, "-c", IDLE_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as child:
        assert child.stdin is not None
        child.stdin.write(capture)
        child.stdin.flush()
        time.sleep(1.0)  # the writer is silent; the reader hands out empty batches
        child.stdin.close()
        assert child.stdout is not None
        out = child.stdout.read()
        assert child.wait(timeout=60) == 0
    packets, idle = map(int, out.split())
    assert packets == n
    assert idle >= 2


def test_stdin_nanosecond_capture(tmp_path: Path) -> None:
    rows = [(sec, usec * 1000 + 999, wirelen, d) for sec, usec, wirelen, d in small_records()]
    path = tmp_path / "nano.pcap"
    path.write_bytes(pcap_file(rows, is_big=True, is_nano=True))
    assert run_with_stdin(path, "-")["rows"] == as_json(dpkt_records(path))


def test_stdin_that_is_not_a_capture(tmp_path: Path) -> None:
    path = tmp_path / "junk"
    path.write_bytes(b"this is not a capture at all, sorry")
    error = str(run_with_stdin(path, "-")["error"])
    assert error.startswith("standard input is not a readable pcap or pcapng capture")


def test_stdin_that_is_closed() -> None:
    # `wormwatch replay - <&-` ended in a traceback (OSError: Bad file descriptor)
    done = subprocess.run(
        [sys.executable, "-c", STDIN_SCRIPT, "-"],
        stdout=subprocess.PIPE,
        check=True,
        timeout=120,
        preexec_fn=lambda: os.close(0),
    )
    error = str(json.loads(done.stdout)["error"])
    assert error.startswith("standard input cannot be read (Bad file descriptor)")


def test_stdin_that_is_a_terminal() -> None:
    leader, follower = os.openpty()
    try:
        error = str(run_with_stdin(follower, "-")["error"])
    finally:
        os.close(leader)
        os.close(follower)
    assert error.startswith("standard input is a terminal, not a capture; pipe one in")


def test_each_walker_compiled_one_signature(tmp_path: Path) -> None:
    path = tmp_path / "crafted.pcapng"
    path.write_bytes(crafted_pcapng()[0])
    warm_up()
    replay([SMALL, path], 2)
    assert len(walk_pcap.signatures) == 1
    assert len(walk_pcapng.signatures) == 1


@settings(max_examples=300, deadline=None)
@given(
    is_pcapng=st.booleans(),
    cuts=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    keep=st.integers(1, 10_000),
)
def test_damaged_files_never_crash_the_walkers(
    is_pcapng: bool, cuts: list[tuple[int, int]], keep: int
) -> None:
    raw = bytearray(crafted_pcapng()[0] if is_pcapng else pcap_file(small_records()))
    # damage only after the first header, which is checked (and rejected) on opening
    for where, value in cuts:
        raw[28 + where % (len(raw) - 28)] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "damaged"
        path.write_bytes(bytes(raw[: 28 + keep]))
        try:
            source = open_replay([str(path)])
        except WormwatchError:
            return
        n_packets = 0
        while (batch := source.read_batch(3)) is not None:
            ends = batch.offsets + batch.caplens
            assert np.all(batch.offsets >= 0)
            assert np.all(batch.caplens >= 0)
            assert np.all(ends <= batch.data.shape[0])
            n_packets += batch.n
        assert len(source.stats().warnings) <= 2
        assert source.stats().packets == n_packets


def test_pcapng_times_past_the_year_9999_or_before_1970_are_held_in_range(
    tmp_path: Path,
) -> None:
    # 64-bit ticks reach far past what a date can name: 2^64 - 1 microseconds read as -1
    # (1969), 10^18 as the year 33658, and either stopped the summary with a traceback
    frame = b"\0" * 40
    ticks = [2**64 - 1, 2**63 - 1, 10**18, 1_700_000_000_000_000]
    path = tmp_path / "far.pcapng"
    path.write_bytes(
        b"".join(
            [
                shb(),
                idb(1),
                *(epb(0, t, frame) for t in ticks),
                idb(1, tsresol=0, tsoffset_s=-(10**12)),
                epb(1, 2**30, frame),
                idb(1, tsoffset_s=10**12),
                epb(2, 1, frame),
            ]
        )
    )
    records, warnings = replay([path])
    assert warnings == []
    assert [r[0] for r in records] == [*[MAX_TS_US] * 3, 1_700_000_000_000_000, 0, MAX_TS_US]
    assert utc_time(MAX_TS_US) == "9999-12-31 23:59:59"
    assert iso_time(MAX_TS_US) == "9999-12-31T23:59:59.999999+00:00"


def test_a_capture_held_at_1970_still_says_what_it_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the demo in a pcapng whose if_tsoffset puts it in 1962: every time reads as 0
    # (above), and the text summary said 'no DNS query or SYN to 135/139/445 seen'
    # beside its 3,044 queries
    from wormwatch.cli import main

    path = tmp_path / "1962.pcapng"
    frames = [epb(0, r[0], r[4]) for r in dpkt_records(PCAPS / "demo.pcap")]
    path.write_bytes(b"".join([shb(), idb(1, tsoffset_s=-2_000_000_000), *frames]))
    assert main(["replay", str(path), "--no-tui", "--summary", os.devnull]) == 0
    out = capsys.readouterr().out
    assert "no DNS query" not in out
    assert "1970-01-01 00:00:00 .. 1970-01-01 00:00:00 UTC" in out
