"""Standard input as part of a replay: a capture piped in (``tcpdump -w - | wormwatch replay -``).

bytes on file descriptor 0 -> **this module** -> ``Batch`` -> ``wormwatch.source.pcapfile``
chains it with the other files of the replay.

A pipe cannot be memory-mapped. A classic pcap stream is read in chunks and indexed by the
same numba walker as files (``kernels.pcapwalk.walk_pcap``), so a stream cut inside a record
keeps every whole packet before the cut, with a warning. (pcapy-ng's ``next_batch`` raises
for the whole batch a cut record falls in, dropping the packets before it: that is why
classic pcap does not go through libpcap here.) A pcapng stream goes to pcapy-ng
(``open_offline``) through a pipe that first replays the bytes already read to tell the
format; libpcap accepts pcapng there when every interface has the same link type, and
reports no original length, so ``wirelens`` equals ``caplens`` for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import stat

import numpy as np
import pcapy

from wormwatch.errors import WormwatchError
from wormwatch.kernels.pcapwalk import (
    N_WALKED,
    W_BYTES,
    W_RECORDS,
    WALK_BAD_LENGTH,
    WALK_END,
    WALK_FULL,
    walk_pcap,
)
from wormwatch.model import Batch

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
# pcapng through libpcap: next_batch raises for a whole batch at a cut record, so small
# batches lose fewer packets there (and 256 was measured faster than 4096: DESIGN.md)
STDIN_BATCH = 256
_CHUNK = 1 << 20
_FILL_BYTES = 8 << 20
# A fast writer (cat, tcpdump -r) keeps a 64 KiB pipe full but never ahead: after the
# first bytes, a fill waits this long for more before it hands out what it has, so that
# batches are not one pipe's worth of packets (1,700 batches for 2M packets, each paying
# the aggregate's fixed cost); a writer that trickles waits this much per batch at most.
_FILL_WAIT_S = 0.002
# what the pipe is asked to hold (Linux F_SETPIPE_SZ; an unprivileged process may ask up
# to /proc/sys/fs/pipe-max-size, 1 MiB by default): fewer, larger reads
_PIPE_BYTES = 1 << 20
_META_FIELDS = 4  # next_batch's packed meta: native uint32 sec, usec, offset, caplen


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
            WormwatchError: standard input is a terminal or does not carry a capture.
        """
        if os.isatty(fd):
            raise WormwatchError(
                "standard input is a terminal, not a capture; pipe one in "
                "(e.g. tcpdump -w - ... | wormwatch replay -) or give file names"
            )
        head = _read_upto(fd, PCAP_FILE_HEADER)
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
            self._part = _PcapngStream(fd, head, warnings)
        else:
            seen = f"unknown format, first bytes {head[:4].hex(' ')}" if head else "it is empty"
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
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)

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
            self._fill()
        return None

    def _fill(self) -> None:
        """Append what the pipe holds: block for the first bytes, then take more while
        more comes within ``_FILL_WAIT_S``, up to a few MiB (big batches when the writer
        is fast, little waiting when it trickles). Read straight into a new buffer (the
        batches handed out keep theirs), after the bytes not walked yet."""
        rest = self._buf.shape[0]
        buf = np.empty(rest + _FILL_BYTES + _CHUNK, np.uint8)
        buf[:rest] = self._buf
        view = memoryview(buf)  # type: ignore[arg-type]
        size = rest
        while size - rest < _FILL_BYTES:
            got = os.readv(self._fd, [view[size : size + _CHUNK]])
            if not got:
                self._is_eof = True
                break
            size += got
            if not select.select([self._fd], [], [], _FILL_WAIT_S)[0]:
                break
        self._buf = _read_only(buf[:size])

    def _stop(self, what: str) -> None:
        self._warnings.append(f"{STDIN_NAME}: {what}; the packets before it were read")
        self._is_done = True

    def close(self) -> None:
        self._is_done = True


class _PcapngStream:
    """A pcapng stream, read by libpcap through a pipe that starts with ``head``.

    A child process feeds the pipe: libpcap blocks on it while holding the GIL, so
    a feeding thread in this process could never run.
    """

    def __init__(self, fd: int, head: bytes, warnings: list[str]) -> None:
        read_end, write_end = os.pipe()
        self._feeder = os.fork()
        if self._feeder == 0:  # the child: copy, then leave without cleanup handlers
            code = 0
            try:
                os.close(read_end)
                os.write(write_end, head)
                while chunk := os.read(fd, _CHUNK):
                    os.write(write_end, chunk)
            except OSError:
                code = 1  # the reader went away: nothing left to feed
            finally:
                os._exit(code)
        os.close(write_end)
        try:
            self._reader = pcapy.open_offline(f"/dev/fd/{read_end}")
        except pcapy.PcapError as err:
            self._reap()
            raise WormwatchError(
                f"standard input is not a readable pcapng capture ({err}); "
                "libpcap reads pcapng from a pipe only when all its interfaces have one "
                "link type: save it to a file and replay the file"
            ) from err
        finally:
            os.close(read_end)
        self._linktype = int(self._reader.datalink())
        self._warnings = warnings
        self._n_packets = 0
        self._is_done = False

    def _reap(self) -> None:
        if self._feeder > 0:
            with contextlib.suppress(ChildProcessError):
                os.kill(self._feeder, signal.SIGTERM)
                os.waitpid(self._feeder, 0)
            self._feeder = 0

    def read(self, max_packets: int) -> Batch | None:
        if self._is_done:
            return None
        try:
            raw, meta = self._reader.next_batch(min(max_packets, STDIN_BATCH))
        except pcapy.PcapError as err:
            self._warnings.append(
                f"{STDIN_NAME}: read error after {self._n_packets} packets ({err}); "
                "the packets before it were read"
            )
            self.close()
            return None
        if not meta:
            self.close()
            return None
        fields = np.frombuffer(meta, dtype=np.uint32).reshape(-1, _META_FIELDS)
        caplens = fields[:, 3].astype(np.int32)
        self._n_packets += fields.shape[0]
        return Batch(
            data=np.frombuffer(raw, dtype=np.uint8),
            ts_us=fields[:, 0].astype(np.int64) * 1_000_000 + fields[:, 1],
            offsets=fields[:, 2].astype(np.int64),
            caplens=caplens,
            wirelens=caplens.copy(),
            linktypes=np.full(fields.shape[0], self._linktype, dtype=np.int32),
        )

    def close(self) -> None:
        if not self._is_done:
            self._is_done = True
            self._reader.close()
            self._reap()
