"""Standard input as part of a replay: a capture piped in (``tcpdump -w - | wormwatch replay -``).

bytes on file descriptor 0 -> **this module** -> ``Batch`` -> ``wormwatch.source.pcapfile``
chains it with the other files of the replay.

A pipe cannot be memory-mapped. A stream is read in chunks of a few MiB and indexed by the
same numba walkers as files (``kernels.pcapwalk.walk_pcap``, ``walk_pcapng``), skipping
what the decoder would surely call ignored as they do, so a stream cut inside a record
keeps every whole packet before the cut, with a warning, and a pcapng stream may mix link
types as a pcapng file may. (pcapy-ng's ``next_batch`` raised for the whole batch a cut
record falls in, dropping the packets before it, refused pcapng streams of several link
types, and read 256 packets at a time: that is why neither format goes through libpcap
here.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import stat
import time

import numpy as np

from wormwatch.errors import WormwatchError
from wormwatch.kernels.pcapwalk import (
    N_WALKED,
    W_BYTES,
    W_RECORDS,
    WALK_BAD_INTERFACE,
    WALK_BAD_LENGTH,
    WALK_END,
    WALK_FULL,
    walk_pcap,
)
from wormwatch.model import Batch, Records
from wormwatch.source.pcapng import SHB_MIN, PcapngWalk, read_section_header

STDIN_PATH = "-"
STDIN_NAME = "stdin"
# A record claiming more captured bytes than this is corrupt: libpcap's largest snaplen
# (MAXIMUM_SNAPLEN) is 262144.
MAX_CAPLEN = 256 * 1024
# classic pcap magic numbers as read little-endian -> (is_big, is_nano)
PCAP_MAGICS = {
    0xA1B2C3D4: (False, False),
    0xD4C3B2A1: (True, False),
    0xA1B23C4D: (False, True),
    0x4D3CB2A1: (True, True),
}
PCAPNG_MAGIC = 0x0A0D0D0A  # a Section Header Block's type, the same in either byte order
PCAP_FILE_HEADER = 24
# a pcapng block longer than this is corrupt (libpcap's limit, MAX_BLOCKSIZE): a stream
# does not buffer more than this waiting for the rest of one block
MAX_BLOCK_BYTES = 16 << 20
_CHUNK = 1 << 20
_FILL_BYTES = 8 << 20
# A fast writer (cat, tcpdump -r) keeps a 64 KiB pipe full but never ahead: after the
# first bytes, a fill waits this long for more before it hands out what it has, so that
# batches are not one pipe's worth of packets (1,700 batches for 2M packets, each paying
# the aggregate's fixed cost); a writer that trickles waits this much per batch at most.
_FILL_WAIT_S = 0.002
# ... and a fill hands out what it has this long after its first bytes in any case: a
# live capture piped in (tcpdump -w - | wormwatch replay -) that never pauses for 2 ms
# is not held back until 8 MiB have come (at 2 MB/s that took 4 s)
_FILL_BUDGET_S = 0.05
# A silent writer (tcpdump on a quiet link) is waited for this long at a time, so that a
# stop (q, Ctrl-C, SIGTERM) is not held up by a read that blocks: the decode-ahead thread
# sees it between waits (a blocked read held the exit up for its 5 s join timeout).
_IDLE_S = 0.1
# what the pipe is asked to hold (Linux F_SETPIPE_SZ; an unprivileged process may ask up
# to /proc/sys/fs/pipe-max-size, 1 MiB by default): fewer, larger reads
_PIPE_BYTES = 1 << 20


# compressed captures: (magic, format, the command that decompresses it)
_COMPRESSED = (
    (b"\x1f\x8b", "gzip", "gunzip"),
    (b"\x28\xb5\x2f\xfd", "zstd", "zstd -d"),
    (b"\x04\x22\x4d\x18", "lz4", "lz4 -d"),
    (b"\xfd7zXZ\x00", "xz", "unxz"),
    (b"BZh", "bzip2", "bunzip2"),
)


def compression(head: bytes) -> tuple[str, str] | None:
    """(format, command that decompresses it) when ``head`` starts a compressed file."""
    for magic, name, command in _COMPRESSED:
        if head.startswith(magic):
            return name, command
    return None


def _read_upto(fd: int, n: int) -> bytes:
    """Read ``n`` bytes unless the stream ends first."""
    parts: list[bytes] = []
    while n > 0:
        chunk = os.read(fd, n)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


class StdinPart:
    """Reads the capture on standard input, batch by batch.

    Opening reads the capture's file header (it blocks until the writer sends it), so a
    pipe that carries no capture fails here, before any packet of the replay is read.
    """

    def __init__(self, warnings: list[str], fd: int = 0, *, skip_ignored: bool = False) -> None:
        """Opens standard input as a capture.

        Args:
            warnings: the replay's warning list; problems met later are appended to it.
            fd: the file descriptor to read (standard input).
            skip_ignored: leave out of a classic pcap stream's batches the packets the
                decoder would surely call ``ignored``, as for files
                (``wormwatch.source.pcapfile.open_replay``).

        Raises:
            WormwatchError: standard input is a terminal, cannot be read, or does not
                carry a capture.
        """
        if os.isatty(fd):
            raise WormwatchError(
                "standard input is a terminal, not a capture; pipe one in "
                "(e.g. tcpdump -w - ... | wormwatch replay -) or give file names"
            )
        try:
            _ask_for_a_large_pipe(fd)
            head = _read_upto(fd, PCAP_FILE_HEADER)
        except OSError as err:  # closed (<&-), or a file opened write-only in its place
            raise WormwatchError(
                f"standard input cannot be read ({err.strerror}); pipe a capture into it "
                "(e.g. tcpdump -w - ... | wormwatch replay -) or give file names"
            ) from None
        magic = int.from_bytes(head[:4], "little") if len(head) >= 4 else -1
        self._part: _PcapStream | _PcapngStream
        if magic in PCAP_MAGICS:
            if len(head) < PCAP_FILE_HEADER:
                raise WormwatchError(
                    "standard input is not a readable pcap capture (it ends inside the "
                    f"file header: {len(head)} of {PCAP_FILE_HEADER} bytes); the capture is cut"
                )
            self._part = _PcapStream(fd, head, warnings, skip_ignored=skip_ignored)
        elif magic == PCAPNG_MAGIC:
            # checked as a file's is when it is opened, the whole header read (options
            # and all, up to a block's limit): a stream that is no pcapng, or is cut
            # inside its first section header, fails here
            head += _read_upto(fd, SHB_MIN - len(head))
            section = read_section_header(head, 0, 1 << 62)
            if not isinstance(section, str):
                head += _read_upto(fd, min(section[1], MAX_BLOCK_BYTES) - len(head))
                if len(head) < section[1] <= MAX_BLOCK_BYTES:
                    section = read_section_header(head, 0, len(head))
            if isinstance(section, str):
                raise WormwatchError(
                    f"standard input is not a readable pcapng capture ({section}); "
                    "pipe a capture written by tcpdump -w or Wireshark into it"
                )
            self._part = _PcapngStream(fd, head, warnings, skip_ignored=skip_ignored)
        else:
            seen = f"unknown format, first bytes {head[:4].hex(' ')}" if head else "it is empty"
            if packed := compression(head):
                seen = f"it is {packed[0]}-compressed: pipe it through {packed[1]} -c first"
            raise WormwatchError(
                f"standard input is not a readable pcap or pcapng capture ({seen}); "
                "pipe a capture written by tcpdump -w or Wireshark into it"
            )

    def read(self, max_packets: int) -> Batch | None:
        """The next up to ``max_packets`` packets, or None at the end of the stream."""
        return self._part.read(max_packets)

    def close(self) -> None:
        """Stops reading; later reads return None."""
        self._part.close()


def _fill(fd: int, rest: np.ndarray) -> tuple[np.ndarray, bool] | None:
    """``rest`` and what the pipe holds after it, and whether the stream ended: wait
    up to ``_IDLE_S`` for the first bytes (None if none came), then take more while
    more comes within ``_FILL_WAIT_S``, up to a few MiB or ``_FILL_BUDGET_S`` after the
    first bytes (big batches when the writer is fast, little waiting when it trickles,
    no holding back a steady live stream). Read straight into a new buffer (the
    batches handed out keep theirs)."""
    n_rest = rest.shape[0]
    buf = np.empty(n_rest + _FILL_BYTES + _CHUNK, np.uint8)
    buf[:n_rest] = rest
    view = memoryview(buf)  # type: ignore[arg-type]
    size = n_rest
    is_eof = False
    deadline = 0.0
    if not select.select([fd], [], [], _IDLE_S)[0]:
        return None
    while size - n_rest < _FILL_BYTES:
        got = os.readv(fd, [view[size : size + _CHUNK]])
        if not got:
            is_eof = True
            break
        size += got
        deadline = deadline or time.monotonic() + _FILL_BUDGET_S
        if time.monotonic() > deadline or not select.select([fd], [], [], _FILL_WAIT_S)[0]:
            break
    return _read_only(buf[:size]), is_eof


def _ask_for_a_large_pipe(fd: int) -> None:
    """Fewer, larger reads (``_PIPE_BYTES``) when standard input is a pipe."""
    if stat.S_ISFIFO(os.fstat(fd).st_mode):
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


def _read_only(data: np.ndarray) -> np.ndarray:
    """``data`` made read-only, as a mapped file's bytes: the walker is compiled for
    those (a writable array would compile it a second time)."""
    data.flags.writeable = False
    return data


class _PcapStream:
    """A classic pcap stream, indexed in chunks by the numba walker."""

    def __init__(
        self, fd: int, head: bytes, warnings: list[str], *, skip_ignored: bool = False
    ) -> None:
        self._fd = fd
        self._is_big, self._is_nano = PCAP_MAGICS[int.from_bytes(head[:4], "little")]
        raw_linktype = head[20:24]
        value = int.from_bytes(raw_linktype, "big" if self._is_big else "little")
        self._linktype = value & 0xFFFF  # the upper bits carry FCS information
        self._skip_as = self._linktype if skip_ignored else -1
        self._warnings = warnings
        # the bytes read and not yet walked (a view of the last fill's buffer)
        self._buf = _read_only(np.zeros(0, np.uint8))
        self._is_eof = False
        self._is_done = False
        self._n_packets = 0

    def read(self, max_packets: int) -> Batch | None:
        ts_us = np.empty(max_packets, np.int64)
        offsets = np.empty(max_packets, np.int64)
        caplens = np.empty(max_packets, np.int32)
        wirelens = np.empty(max_packets, np.int32)
        while not self._is_done:
            data = self._buf
            walked = np.zeros(N_WALKED, np.int64)
            n, pos, status = walk_pcap(
                data, 0, self._is_big, self._is_nano, MAX_CAPLEN, self._skip_as, max_packets,
                ts_us, offsets, caplens, wirelens, walked,
            )  # fmt: skip
            n_walked = int(walked[W_RECORDS])
            if status == WALK_BAD_LENGTH:
                self._stop(f"impossible record length after {self._n_packets + n_walked} packets")
            if n_walked:
                self._n_packets += n_walked
                # the batch keeps the old buffer alive; the rest (under one chunk) moves on
                self._buf = self._buf[pos:]
                kept_bytes = int(caplens[:n].sum(dtype=np.int64))
                return Batch(
                    data=data,
                    ts_us=ts_us[:n],
                    offsets=offsets[:n],
                    caplens=caplens[:n],
                    wirelens=wirelens[:n],
                    linktypes=np.full(n, self._linktype, np.int32),
                    n_skipped=n_walked - n,
                    skipped_bytes=int(walked[W_BYTES]) - kept_bytes,
                )
            if status == WALK_FULL or self._is_done:
                continue
            if self._is_eof:
                if status != WALK_END:
                    self._stop(f"truncated record after {self._n_packets} packets")
                self._is_done = True
                break
            filled = _fill(self._fd, self._buf)
            if filled is None:
                return Batch.empty()  # nothing came: the reader's thread may be stopped now
            self._buf, self._is_eof = filled
        return None

    def _stop(self, what: str) -> None:
        self._warnings.append(f"{STDIN_NAME}: {what}; the packets before it were read")
        self._is_done = True

    def close(self) -> None:
        self._is_done = True


class _PcapngStream:
    """A pcapng stream, indexed in chunks by the numba walker as pcapng files are; its
    Section Header and Interface Description Blocks are read in Python
    (``wormwatch.source.pcapng``), each once it is whole in the buffer."""

    def __init__(
        self, fd: int, head: bytes, warnings: list[str], *, skip_ignored: bool = False
    ) -> None:
        self._fd = fd
        self._warnings = warnings
        self._walk = PcapngWalk(max_caplen=MAX_CAPLEN, skip=skip_ignored)
        self._n_packets = 0
        self._buf = _read_only(np.frombuffer(head, np.uint8).copy())
        self._is_eof = False
        self._is_done = False

    def read(self, max_packets: int) -> Batch | None:
        out = Records.allocate(max_packets)
        while not self._is_done:
            data = self._buf
            walked = np.zeros(N_WALKED, np.int64)
            n, pos = self._walk_whole_blocks(data, max_packets, out, walked)
            n_walked = int(walked[W_RECORDS])
            self._n_packets += n_walked
            if n_walked:
                # the batch keeps this buffer alive; what is left moves on
                self._buf = data[pos:]
                kept_bytes = int(out.caplens[:n].sum(dtype=np.int64))
                return out.batch(data, n, n_walked - n, int(walked[W_BYTES]) - kept_bytes)
            self._buf = data[pos:]
            if self._is_done:
                break
            if self._is_eof:
                if self._buf.shape[0]:
                    self._stop(f"truncated block after {self._n_packets} packets")
                self._is_done = True
                break
            if self._buf.shape[0] >= MAX_BLOCK_BYTES:
                self._stop(f"a block longer than 16 MiB after {self._n_packets} packets")
                break
            filled = _fill(self._fd, self._buf)
            if filled is None:
                return Batch.empty()  # nothing came: the reader's thread may be stopped now
            self._buf, self._is_eof = filled
        return None

    def _walk_whole_blocks(
        self, data: np.ndarray, max_packets: int, out: Records, walked: np.ndarray
    ) -> tuple[int, int]:
        """Walks the buffer's whole blocks: (packets kept, position of the first block
        not walked). Stops early when a block runs past the buffer (more is read)."""
        view = memoryview(data)  # type: ignore[arg-type]
        n, pos, stop = self._walk.walk(data, view, 0, max_packets, out, walked)
        after = self._n_packets + int(walked[W_RECORDS])
        if stop == "section header truncated" and not self._is_eof:
            pass  # the rest of the block is still in the pipe
        elif isinstance(stop, str):
            self._stop(f"{stop} after {after} packets")
        elif stop == WALK_BAD_LENGTH:
            self._stop(f"impossible block length after {after} packets")
        elif stop == WALK_BAD_INTERFACE:
            self._stop(
                f"a packet block after {after} packets names an interface that no "
                "interface description block described"
            )
        return n, pos

    def _stop(self, what: str) -> None:
        self._warnings.append(f"{STDIN_NAME}: {what}; the packets before it were read")
        self._is_done = True

    def close(self) -> None:
        if self._walk.n_unknown:
            self._warnings.append(
                f"{STDIN_NAME}: skipped {self._walk.n_unknown} pcapng blocks of unknown type"
            )
            self._walk.n_unknown = 0
        self._is_done = True
