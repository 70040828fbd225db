"""Bad capture files through the command line: clear messages, partial results kept.

Every case runs ``wormwatch replay ... --no-tui --summary S``: a few (and every
standard-input case) as ``python -m wormwatch`` in a subprocess, so a traceback, the
exit code and stderr are exactly what an operator sees; the others call
``wormwatch.cli.main`` in-process (the same code path, without paying numba's start-up
per case; an exception escaping ``main`` fails the test like a traceback would). A file that
cannot be read at all is one ``wormwatch: error:`` line and exit code 2; a file damaged
part way is one ``wormwatch: warning:`` line, exit code 0, and a summary with the hosts
of the packets before the damage. Standard input is fed through a real pipe
(``cat FILE | wormwatch replay -``).
"""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from wormwatch.cli import main

from testkit import frames
from testkit.pcap import block, epb, idb, option, pcap_file, shb

T0 = 1_700_000_000
N_PACKETS = 6
PCAP_HEADER = 24
RECORD_HEADER = 16


def host(i: int) -> str:
    return f"192.0.2.{10 + i}"


def query_ip(i: int) -> bytes:
    """IPv4 UDP DNS query for host.NN.example from host(i) to 198.51.100.53."""
    message = frames.dns(b"host.%02d.example" % i, ident=i)
    return frames.ipv4(frames.udp(message), src=host(i), dst="198.51.100.53", ident=1)


def query_frame(i: int) -> bytes:
    return frames.ether(query_ip(i))


RECORDS = [(T0 + i, 0, len(query_frame(i)), query_frame(i)) for i in range(N_PACKETS)]
GOOD = pcap_file(RECORDS)
RECORD_LEN = RECORD_HEADER + len(query_frame(0))
# cases run as a real process (the rest call cli.main in-process)
IN_SUBPROCESS = frozenset({"zero-length", "gzip", "inside-packet-bytes"})


def record_start(i: int) -> int:
    return PCAP_HEADER + i * RECORD_LEN


def wormwatch(*args: str, stdin: object = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wormwatch", *args],
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Outcome(NamedTuple):
    returncode: int
    stderr: str


def replay(
    path: Path | str, tmp_path: Path, capsys: pytest.CaptureFixture[str] | None = None
) -> tuple[Outcome, Path]:
    """Replay ``path`` with a summary: in-process when ``capsys`` is given, else a subprocess."""
    summary = tmp_path / "summary.jsonl"
    args = ("replay", str(path), "--no-tui", "--summary", str(summary))
    if capsys is None:
        done = wormwatch(*args)
        return Outcome(done.returncode, done.stderr), summary
    capsys.readouterr()
    code = main(list(args))
    return Outcome(code, capsys.readouterr().err), summary


def summary_hosts(summary: Path) -> list[str]:
    records = [json.loads(line) for line in summary.read_text().splitlines()]
    assert records[-1]["event_type"] == "network"
    return sorted(r["src_ip"] for r in records if r["event_type"] == "host")


def assert_one_line(stderr: str, kind: str, *phrases: str) -> str:
    """stderr is one ``wormwatch: {kind}:`` line holding every phrase; no traceback."""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"wormwatch: {kind}: "), stderr
    for phrase in phrases:
        assert phrase in lines[0], stderr
    return lines[0]


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- files that cannot be read at all -----------------------------------------------

FATAL = {
    "zero-length": (b"", "is empty"),
    "wrong-magic": (b"\x00\x11\x22\x33" + GOOD[4:], "not a pcap or pcapng file"),
    "pcap-header-cut": (GOOD[:10], "header truncated"),
    "pcapng-header-cut": (shb()[:20], "truncated"),
    "gzip": (gzip.compress(GOOD), "gunzip it first"),
    "text": (b"hello, this is not a capture\n", "not a pcap or pcapng file"),
}


@pytest.mark.parametrize("case", FATAL)
def test_unreadable_file_is_one_error_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, phrase = FATAL[case]
    path = write(tmp_path, f"{case}.pcap", data)
    result, summary = replay(path, tmp_path, None if case in IN_SUBPROCESS else capsys)
    assert result.returncode == 2
    assert_one_line(result.stderr, "error", str(path), phrase)
    assert not summary.exists()


def test_directory_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "captures").mkdir()
    result, _ = replay(tmp_path / "captures", tmp_path, capsys)
    assert result.returncode == 2
    assert_one_line(result.stderr, "error", "is a directory")


def test_missing_file_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result, _ = replay(tmp_path / "nope.pcap", tmp_path, capsys)
    assert result.returncode == 2
    assert_one_line(result.stderr, "error", "no such file")


def test_header_only_is_an_empty_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result, summary = replay(write(tmp_path, "empty.pcap", GOOD[:PCAP_HEADER]), tmp_path, capsys)
    assert result.returncode == 0
    assert "Traceback" not in result.stderr
    assert summary_hosts(summary) == []
    network = json.loads(summary.read_text().splitlines()[-1])
    assert network["decode"]["packets"] == 0


# --- files damaged part way: the packets before the damage are kept -----------------

# cut offsets -> packets complete before the cut
CUTS = {
    "inside-record-header": (record_start(2) + 7, 2),
    "inside-packet-bytes": (record_start(3) + RECORD_HEADER + 20, 3),
    "one-byte-short": (record_start(N_PACKETS) - 1, N_PACKETS - 1),
}


@pytest.mark.parametrize("case", CUTS)
def test_truncated_file_keeps_the_packets_before_the_cut(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut, n_before = CUTS[case]
    path = write(tmp_path, "cut.pcap", GOOD[:cut])
    result, summary = replay(path, tmp_path, None if case in IN_SUBPROCESS else capsys)
    assert result.returncode == 0
    assert_one_line(result.stderr, "warning", "truncated", f"after {n_before} packets")
    assert summary_hosts(summary) == sorted(host(i) for i in range(n_before))


def test_absurd_record_length_keeps_the_packets_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = struct.pack("<IIII", T0, 0, 0x7FFF_FFFF, 0x7FFF_FFFF)
    data = GOOD[: record_start(3)] + bad + GOOD[record_start(3) + RECORD_HEADER :]
    result, summary = replay(write(tmp_path, "absurd.pcap", data), tmp_path, capsys)
    assert result.returncode == 0
    assert_one_line(result.stderr, "warning", "impossible record length", "after 3 packets")
    assert summary_hosts(summary) == [host(0), host(1), host(2)]


def test_pcapng_unknown_blocks_are_skipped_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = (
        shb()
        + idb(1)
        + block(0x0BAD, b"unknown block type")
        + epb(0, T0 * 10**6, query_frame(1))
        + block(0x8000_0001, b"a local-use block")
        + epb(0, (T0 + 1) * 10**6, query_frame(2))
    )
    result, summary = replay(write(tmp_path, "unknown.pcapng", data), tmp_path, capsys)
    assert result.returncode == 0
    assert_one_line(result.stderr, "warning", "unknown type")
    assert summary_hosts(summary) == [host(1), host(2)]


def pcapng_three_link_types() -> bytes:
    """One section, interfaces Ethernet, raw IP and Linux SLL, one query on each."""
    sll = b"\x00\x00\x00\x01\x00\x06" + b"\x02" * 8 + b"\x08\x00"
    return (
        shb()
        + idb(1)
        + idb(101)
        + idb(113)
        + epb(0, T0 * 10**6, query_frame(1))
        + epb(1, (T0 + 1) * 10**6, query_ip(2))
        + epb(2, (T0 + 2) * 10**6, sll + query_ip(3))
    )


def test_pcapng_interfaces_of_different_link_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "multi.pcapng", pcapng_three_link_types())
    result, summary = replay(path, tmp_path, capsys)
    assert result.returncode == 0
    assert result.stderr == ""
    assert summary_hosts(summary) == [host(1), host(2), host(3)]


# --- standard input through a pipe ------------------------------------------------------


def replay_piped(path: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``cat path | python -m wormwatch replay - --summary S``."""
    summary = tmp_path / "stdin-summary.jsonl"
    with subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE) as cat:
        result = wormwatch("replay", "-", "--no-tui", "--summary", str(summary), stdin=cat.stdout)
        assert cat.stdout is not None
        cat.stdout.close()
    return result, summary


def test_stdin_pipe_reads_like_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "good.pcap", GOOD)
    result, summary = replay_piped(path, tmp_path)
    assert result.returncode == 0
    assert result.stderr == ""
    assert summary_hosts(summary) == [host(i) for i in range(N_PACKETS)]


def test_stdin_pipe_reads_pcapng(tmp_path: Path) -> None:
    data = shb() + idb(1) + b"".join(epb(0, (T0 + i) * 10**6, query_frame(i)) for i in range(3))
    result, summary = replay_piped(write(tmp_path, "good.pcapng", data), tmp_path)
    assert result.returncode == 0
    assert summary_hosts(summary) == [host(0), host(1), host(2)]


_SHB_WITH_OPTIONS = shb(options=option(4, b"Dumpcap (Wireshark) 4.2.2") + option(0, b""))


def _pcapng_of_unknown_byte_order() -> bytes:
    data = bytearray(shb() + idb(1) + epb(0, T0 * 10**6, query_frame(0)))
    data[8:12] = b"\x11\x22\x33\x44"
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (b"", "standard input is not a readable"),
        (b"\x00\x11\x22\x33" + GOOD[4:], "unknown"),
        (shb()[:20], "not a readable pcapng capture (section header truncated)"),
        # cut after the header's first 28 bytes, inside the options dumpcap writes
        (_SHB_WITH_OPTIONS[:40], "not a readable pcapng capture (section header truncated)"),
        (_pcapng_of_unknown_byte_order(), "pcapng capture (section header with an unknown byte"),
    ],
    ids=[
        "empty",
        "wrong-magic",
        "pcapng-cut-in-its-header",
        "pcapng-cut-in-its-header-options",
        "pcapng-of-unknown-byte-order",
    ],
)
def test_stdin_that_is_no_capture_is_one_error_line(
    data: bytes, phrase: str, tmp_path: Path
) -> None:
    result, summary = replay_piped(write(tmp_path, "bad.pcap", data), tmp_path)
    assert result.returncode == 2
    assert_one_line(result.stderr, "error", phrase)
    assert not summary.exists()


def test_stdin_pcapng_of_mixed_link_types_reads_like_the_file(tmp_path: Path) -> None:
    # libpcap refused such a stream; the walker reads it as it reads the file
    result, summary = replay_piped(
        write(tmp_path, "multi.pcapng", pcapng_three_link_types()), tmp_path
    )
    assert result.returncode == 0
    assert result.stderr == ""
    assert summary_hosts(summary) == [host(1), host(2), host(3)]


def test_stdin_pcapng_cut_keeps_every_packet_before_the_cut(tmp_path: Path) -> None:
    # libpcap lost the whole batch (up to 256 packets) that a cut block fell in
    blocks = [epb(0, (T0 + i) * 10**6, query_frame(i)) for i in range(N_PACKETS)]
    data = shb() + idb(1) + b"".join(blocks)
    cut = len(data) - len(blocks[-1]) + 20
    result, summary = replay_piped(write(tmp_path, "cut.pcapng", data[:cut]), tmp_path)
    assert result.returncode == 0
    assert_one_line(result.stderr, "warning", "stdin", f"truncated block after {N_PACKETS - 1}")
    assert summary_hosts(summary) == [host(i) for i in range(N_PACKETS - 1)]


def test_stdin_truncated_capture_keeps_the_packets_before_the_cut(tmp_path: Path) -> None:
    cut = record_start(3) + RECORD_HEADER + 20
    result, summary = replay_piped(write(tmp_path, "cut.pcap", GOOD[:cut]), tmp_path)
    assert result.returncode == 0
    assert_one_line(result.stderr, "warning", "stdin", "truncated record after 3 packets")
    assert summary_hosts(summary) == [host(0), host(1), host(2)]


# --- file names are bytes too: a name from an unpacked archive can hold anything -------

HOSTILE_NAME = "x\x1b]0;title\x07\x1b[2J\r\nwormwatch: error: forged\x9b1m.pcap"


def test_a_hostile_file_name_is_shown_escaped_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A control character in a file name (ESC, BEL, CR, LF, a C1 CSI) reaches stderr
    escaped: the error stays one line and writes no escape sequence to the terminal."""
    result, _ = replay(tmp_path / HOSTILE_NAME, tmp_path, capsys)
    assert result.returncode == 2
    line = assert_one_line(result.stderr, "error", "no such file")
    assert "x\\x1b]0;title\\x07\\x1b[2J\\x0d\\x0awormwatch: error: forged\\u009b1m.pcap" in line
    cut = write(tmp_path, HOSTILE_NAME, GOOD[: record_start(2) + 7])
    result, _ = replay(cut, tmp_path, capsys)
    assert result.returncode == 0
    line = assert_one_line(result.stderr, "warning", "truncated", "after 2 packets")
    assert not any(ch in line for ch in "\x1b\x07\r\x9b")
