"""Replay source: capture files (pcap, pcapng) and standard input, read in order as one stream.

paths given to ``wormwatch replay`` -> **this module** -> ``Batch`` objects -> decode stage.

Files are memory-mapped and indexed in place by the numba walkers of
``wormwatch.kernels.pcapwalk``: a batch's ``data`` is a read-only ``uint8`` view of the
mapped file (nothing is copied), ``offsets``/``caplens`` index into it. A batch never spans
two files. ``-`` reads standard input through pcapy-ng (``wormwatch.source.stdin``).

Every path is checked when the replay is opened (missing, unreadable, a directory, empty,
not a capture, header cut short: one ``WormwatchError`` that says what to do). A problem met
after that (a last record cut short, an impossible length) ends that file with a one-line
warning in ``stats().warnings``; the packets before it are kept and the replay goes on
with the next file.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from wormwatch.errors import WormwatchError
from wormwatch.kernels.pcapwalk import (
    N_WALKED,
    PCAP_FILE_HEADER,
    PCAP_RECORD_HEADER,
    W_BYTES,
    W_RECORDS,
    WALK_BAD_INTERFACE,
    WALK_BAD_LENGTH,
    WALK_END,
    WALK_FULL,
    WALK_TRUNCATED,
    walk_pcap,
    walk_pcapng,
)
from wormwatch.model import U8, Batch, Records
from wormwatch.source import Source, SourceStats
from wormwatch.source.fileheader import Header, check_file
from wormwatch.source.mapping import MAP_AHEAD_BYTES, MAP_STEP_BYTES, FileMapping, Mapped, note_cut
from wormwatch.source.merge import MergedReplay
from wormwatch.source.pcapng import Bytes, PcapngSections, PcapngWalk
from wormwatch.source.stdin import MAX_CAPLEN, STDIN_NAME, STDIN_PATH, StdinPart


def open_replay(
    paths: Sequence[str], *, concatenate: bool = False, skip_ignored: bool = False
) -> Source:
    """Opens capture files (and ``-`` for standard input) to be read as one stream.

    Several files are merged by packet time, as mergecap merges them
    (``wormwatch.source.merge``); with ``concatenate`` they are read one after the other.
    Standard input is a stream that cannot be read ahead, so a replay that includes it
    is always read in the order given.

    Args:
        paths: pcap or pcapng files; ``-`` (at most once) reads standard input.
        concatenate: read the files one after the other instead of merging them.
        skip_ignored: leave out of the batches the packets of the files (pcap and
            pcapng) and of a classic pcap stream on standard input that the decoder
            would surely call ``ignored``, counting them in
            ``n_skipped`` (``kernels.pcapwalk``): the walkers test them while they read,
            so they cost no decoding and no per-packet writes.

    Returns:
        A source implementing ``wormwatch.source.Source``.

    Raises:
        WormwatchError: no path was given, or a path is missing, unreadable, a directory,
            empty, not a capture, or its header is cut short.
    """
    if len(paths) > 1 and not concatenate and STDIN_PATH not in paths:
        headers = [check_file(path) for path in paths]
        warnings: list[str] = []
        return MergedReplay(
            [h.path for h in headers],
            lambda k, view: open_part(headers[k], warnings, skip_ignored=skip_ignored, mapped=view),
            warnings,
        )
    source = ReplaySource(paths, skip_ignored=skip_ignored)
    if len(paths) > 1 and not concatenate:
        # said, not silently done: packet time jumps back where a file's times overlap
        # stdin's, and detection then differs from the merge that was asked for
        source.warn(
            "standard input cannot be merged by packet time: the inputs were read one "
            "after the other, in the order given (as with --concatenate); to merge, "
            "save standard input to a file first"
        )
    return source


def warm_up(*, pcap: bool = True, pcapng: bool = True) -> None:
    """Compiles (or loads from numba's cache) the walkers of classic pcap files and
    standard input (``pcap``) and of pcapng files (``pcapng``) with the argument types a
    replay uses, so that the first batch is not spent compiling."""
    out = Records.allocate(1)
    record = np.frombuffer(bytes(PCAP_RECORD_HEADER), dtype=np.uint8)
    if pcap:
        walk_pcap(
            record, 0, False, False, MAX_CAPLEN, -1, 1,
            out.ts_us, out.offsets, out.caplens, out.wirelens, np.zeros(N_WALKED, np.int64),
        )  # fmt: skip
    if not pcapng:
        return
    s = PcapngSections()
    walk_pcapng(
        record[:0], 0, False, MAX_CAPLEN, s.linktypes, s.muls, s.divs, s.offsets_us, 0,
        True, 1, out.ts_us, out.offsets, out.caplens, out.wirelens, out.linktypes,
        np.zeros(N_WALKED, np.int64),
    )  # fmt: skip


class ReplaySource:
    """Capture files and standard input, read in order as one stream of batches.

    Every file is checked on opening; each is mapped only while it is being read.
    """

    is_live = False

    def __init__(self, paths: Sequence[str], *, skip_ignored: bool = False) -> None:
        """See :func:`open_replay`."""
        self._skip_ignored = skip_ignored
        paths = list(paths)
        if not paths:
            raise WormwatchError("no capture file given; name one or more pcap/pcapng files")
        if paths.count(STDIN_PATH) > 1:
            raise WormwatchError("standard input (-) can be given only once")
        self._warnings: list[str] = []
        self._packets = 0
        self._bytes = 0
        # checked first, so that a bad path fails before standard input is waited for
        headers = {path: check_file(path) for path in paths if path != STDIN_PATH}
        self._pending: list[Header | StdinPart] = [
            StdinPart(self._warnings, skip_ignored=skip_ignored)
            if path == STDIN_PATH
            else headers[path]
            for path in paths
        ]
        self._pending.reverse()
        self._current: _Part | None = None
        names = [STDIN_NAME if p == STDIN_PATH else os.path.basename(p) for p in paths]
        self.name = names[0] if len(names) == 1 else f"{names[0]} +{len(names) - 1} more"

    def read_batch(self, max_packets: int) -> Batch | None:
        """The next 1 to ``max_packets`` packets of one file, or None when all are read.

        Raises:
            WormwatchError: a file checked at opening can no longer be opened or mapped.
        """
        if max_packets < 1:
            raise ValueError(f"max_packets must be at least 1, not {max_packets}")
        while True:
            if self._current is None:
                if not self._pending:
                    return None
                item = self._pending.pop()
                self._current = (
                    open_part(item, self._warnings, skip_ignored=self._skip_ignored)
                    if isinstance(item, Header)
                    else item
                )
            batch = self._current.read(max_packets)
            # standard input's empty batch: nothing came for a while (it has not ended)
            is_idle = batch is not None and isinstance(self._current, StdinPart)
            if batch is not None and (batch.n > 0 or batch.n_skipped > 0 or is_idle):
                self._packets += batch.n + batch.n_skipped
                self._bytes += int(batch.caplens.sum()) + batch.skipped_bytes
                return batch
            self._current.close()
            self._current = None

    def warn(self, text: str) -> None:
        """Adds a one-line warning for the operator (``stats().warnings``)."""
        self._warnings.append(text)

    def map_ahead(self) -> bool:
        """One step of :class:`~wormwatch.source.MapsAhead` for the file being read
        (standard input cannot be read ahead)."""
        part = self._current
        return isinstance(part, _MappedFile) and part.map_ahead() is not None

    def stats(self) -> SourceStats:
        """Packets and captured bytes handed out so far, and the warnings met."""
        return SourceStats(packets=self._packets, bytes=self._bytes, warnings=list(self._warnings))

    def close(self) -> None:
        """Stops the replay; later reads return None."""
        if self._current is not None:
            self._current.close()
            self._current = None
        for item in self._pending:
            if isinstance(item, StdinPart):
                item.close()
        self._pending.clear()


class _Part(Protocol):
    """One file (or standard input) of a replay: batches until None."""

    def read(self, max_packets: int) -> Batch | None: ...

    def close(self) -> None: ...


def open_part(
    header: Header, warnings: list[str], *, skip_ignored: bool = False, mapped: Mapped | None = None
) -> _MappedFile:
    """A walker over one checked file (mapped here unless ``mapped`` is given)."""
    if header.is_pcapng:
        return _PcapngPart(header, warnings, skip_ignored=skip_ignored, mapped=mapped)
    return _PcapPart(header, warnings, skip_ignored=skip_ignored, mapped=mapped)


class _MappedFile:
    """A mapped capture file; subclasses walk its records from ``pos``.

    Args:
        header: what checking the file found.
        warnings: where problems met while reading go.
        mapped: the file's bytes when they are mapped already (a merged replay maps all
            its files side by side, ``wormwatch.source.mapping``); else it is mapped here.
    """

    def __init__(self, header: Header, warnings: list[str], mapped: Mapped | None) -> None:
        self._path = header.path
        self._warnings = warnings
        self._mapped: Mapped | None = FileMapping(header.path) if mapped is None else mapped
        self._buffer: Bytes = self._mapped.buffer
        self._data: U8 = self._mapped.data
        self._size = int(self._data.shape[0])
        self._n_packets = 0
        self._released = 0
        self._mapped_to = 0  # map_ahead got this far (it runs in the caller's thread)
        self._can_map = True
        self.pos = 0

    def map_ahead(self, span: int = MAP_AHEAD_BYTES) -> tuple[int, int] | None:
        """Maps up to ``MAP_STEP_BYTES`` in, from where mapping or reading got to, no
        further than ``span`` bytes past the reader; the byte range it mapped, or None
        when it has nothing to map (or cannot). The reader's walk then finds
        those pages mapped instead of faulting them in one ~80 KB run at a time (on the
        replay benchmark's mix, ~0.06 s of the decoding thread's ~0.4 s, moved to a thread
        that would otherwise wait for it). Pages it maps and the reader passes meanwhile
        are let go with the rest; those it maps after the reader has already let that
        part go (this thread held up) it lets go itself."""
        mapped, pos = self._mapped, self.pos
        lo = max(self._mapped_to, pos)
        hi = min(self._size, pos + span, lo + MAP_STEP_BYTES)
        if mapped is None or not self._can_map or hi <= lo:
            return None
        self._can_map = mapped.map_in(lo, hi)
        self._mapped_to = hi
        released = self._released
        if lo < released:
            # from the page lo is in: map_in mapped it whole
            mapped.release(lo - lo % mmap.PAGESIZE, min(hi, released))
        return (lo, hi) if self._can_map else None

    def _release_behind(self) -> None:
        """Unmaps the pages walked so far, so resident memory holds one batch's span.

        The caller has decoded the previous batch by now (its events are copies), and
        a caller that still reads it loses nothing: the pages stay in the page cache,
        and a touch faults them back in unchanged. With irrelevant packets skipped a
        batch spans ~4x its packets' bytes, so keeping the previous batch mapped
        doubled the file's share of resident memory.
        """
        self._check_cut()
        if self._mapped is not None and self.pos > self._released:
            self._mapped.release(self._released, self.pos)
            self._released = self.pos - self.pos % mmap.PAGESIZE

    def _check_cut(self) -> None:
        """Ends the walk where the file now ends if its writer cut it during the replay."""
        size = None if self._mapped is None else self._mapped.shrunk_to()
        if size is not None and size < self._size:
            note_cut(self._warnings, self._path, size)
            self._size, self._data = size, self._data[:size]

    def _stop(self, status: int) -> None:
        """Ends this file, with a warning unless it ended cleanly."""
        where = f"at byte {self.pos} after {self._n_packets} packets"
        kept = "the packets before it were read"
        if status == WALK_TRUNCATED:
            self._warn(f"truncated record {where}; {kept}")
        elif status == WALK_BAD_LENGTH:
            self._warn(
                f"impossible record length {where} ({self._describe_bad_length()}); "
                f"{kept}, the rest of the file was skipped"
            )
        elif status == WALK_BAD_INTERFACE:
            self._warn(
                f"packet block {where} names an interface that no interface description "
                f"block described; {kept}, the rest of the file was skipped"
            )
        self.close()

    def _warn(self, text: str) -> None:
        self._warnings.append(f"file {self._path}: {text}")

    def read(self, max_packets: int) -> Batch | None:
        """The next batch of this file's records, or None at its end."""
        raise NotImplementedError

    def _describe_bad_length(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        """Lets go of the mapping (batches still using it keep it alive)."""
        self._mapped = None
        self._buffer = b""
        self._data = np.zeros(0, dtype=np.uint8)


class _PcapPart(_MappedFile):
    """A classic pcap file (any of the four magic numbers)."""

    def __init__(
        self, header: Header, warnings: list[str], *, skip_ignored: bool, mapped: Mapped | None
    ) -> None:
        super().__init__(header, warnings, mapped)
        self._is_big = header.is_big
        self._is_nano = header.is_nano
        self._linktype = header.linktype
        self._skip_as = header.linktype if skip_ignored else -1
        self.pos = PCAP_FILE_HEADER

    def read(self, max_packets: int) -> Batch | None:
        """Walks up to ``max_packets`` records (fewer packets when some are skipped)."""
        if self._mapped is None:
            return None
        self._release_behind()
        out = Records.allocate(max_packets)
        walked = np.zeros(N_WALKED, np.int64)
        n, self.pos, status = walk_pcap(
            self._data, self.pos, self._is_big, self._is_nano, MAX_CAPLEN, self._skip_as,
            max_packets, out.ts_us, out.offsets, out.caplens, out.wirelens, walked,
        )  # fmt: skip
        self._n_packets += int(walked[W_RECORDS])
        out.linktypes[:n] = self._linktype
        kept_bytes = int(out.caplens[:n].sum(dtype=np.int64))
        batch = out.batch(
            self._data, n, int(walked[W_RECORDS]) - n, int(walked[W_BYTES]) - kept_bytes
        )
        if status != WALK_FULL:
            self._stop(status)
        return batch

    def _describe_bad_length(self) -> str:
        caplen = self._data[self.pos + 8 : self.pos + 12].tobytes()
        value = int.from_bytes(caplen, "big" if self._is_big else "little")
        return f"caplen {value} is larger than {MAX_CAPLEN}"


class _PcapngPart(_MappedFile):
    """A pcapng file: sections, interfaces and packet blocks."""

    def __init__(
        self, header: Header, warnings: list[str], *, skip_ignored: bool, mapped: Mapped | None
    ) -> None:
        super().__init__(header, warnings, mapped)
        self._walk = PcapngWalk(max_caplen=MAX_CAPLEN, skip=skip_ignored)

    def read(self, max_packets: int) -> Batch | None:
        """Walks up to ``max_packets`` packet blocks (fewer packets when some are skipped)."""
        if self._mapped is None:
            return None
        self._release_behind()
        data = self._data
        out = Records.allocate(max_packets)
        walked = np.zeros(N_WALKED, np.int64)
        n, self.pos, stop = self._walk.walk(data, self._buffer, self.pos, max_packets, out, walked)
        self._n_packets += int(walked[W_RECORDS])
        if isinstance(stop, str):
            self._warn(
                f"{stop} at byte {self.pos} after {self._n_packets} packets; "
                "the packets before it were read, the rest of the file was skipped"
            )
            self._stop(WALK_END)
        elif stop != WALK_FULL:
            self._stop(stop)
        kept_bytes = int(out.caplens[:n].sum(dtype=np.int64))
        return out.batch(data, n, int(walked[W_RECORDS]) - n, int(walked[W_BYTES]) - kept_bytes)

    def _describe_bad_length(self) -> str:
        if self._mapped is None:
            return "file already closed"
        return self._walk.sections.describe_block(self._buffer, self.pos, self._size)

    def close(self) -> None:
        if self._walk.n_unknown:
            self._warn(f"skipped {self._walk.n_unknown} pcapng blocks of unknown type")
            self._walk.n_unknown = 0
        super().close()
