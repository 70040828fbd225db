"""Replay of several capture files merged by packet time, as mergecap merges them.

paths given to ``wormwatch replay`` (two or more files) -> **this module** -> ``Batch``
objects in packet-time order -> decode stage.

Two taps of the same hour, or one link split into its UDP and its TCP packets, make files
whose times overlap. Read one after the other, packet time would jump back at every new
file; merged, the pipeline sees one stream as if one tap had seen everything.

Each file is walked in runs of records by its own walker (``wormwatch.source.pcapfile``),
and ``wormwatch.kernels.merge.merge_heads`` picks the earliest next record among the files
(ties to the file named last, as mergecap's): a streaming k-way merge over the files'
record indexes, whose memory is one run per file. The packet bytes are not copied: the
files are mapped side by side (``wormwatch.source.mapping``), so one batch can hold
packets of every file.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from wormwatch.kernels.merge import merge_heads
from wormwatch.model import I64, Batch, Records
from wormwatch.source import SourceStats
from wormwatch.source.mapping import MAP_AHEAD_BYTES, FileView, SplicedFiles, note_cut

# records read ahead per file: the merge's whole memory is files x RUN x 28 bytes
RUN = 4096


class Walked(Protocol):
    """One file's walker: its records in file order, a run at a time, until None.

    A batch's offsets count from the start of that file.
    """

    def read(self, max_packets: int) -> Batch | None: ...

    def map_ahead(self, span: int) -> tuple[int, int] | None: ...

    def close(self) -> None: ...


class MergedReplay:
    """Capture files merged by packet time into one stream of batches.

    Args:
        paths: two or more checked pcap/pcapng files (not standard input).
        open_walker: makes file k's walker over its view of the merged mapping.
        warnings: the list the walkers append their warnings to.

    Raises:
        WormwatchError: a file can no longer be opened or mapped.
    """

    is_live = False

    def __init__(
        self,
        paths: Sequence[str],
        open_walker: Callable[[int, FileView], Walked],
        warnings: list[str],
    ) -> None:
        # only merged replays need the merge kernel: loaded (or compiled) here, so that
        # the first batch is not spent on it
        warm_up()
        self._warnings = warnings
        self._splice = SplicedFiles(paths)
        # the walkers read the same mapping the batches point into: one set of pages
        self._parts = [open_walker(k, self._splice.view(k)) for k in range(len(paths))]
        k = len(paths)
        self._runs = _Runs(k)
        self._starts = np.array(self._splice.starts, np.int64)
        # per file: the offset below which no batch handed out from now on can point
        self._keep_from = np.zeros(k, np.int64)
        self._released = np.zeros(k, np.int64)
        self._next_map = 0  # the file map_ahead maps next
        self._packets = 0
        self._bytes = 0
        # packets the walkers left out as surely ignored, not yet handed on in a batch
        self._n_skipped = 0
        self._skipped_bytes = 0
        names = [os.path.basename(p) for p in paths]
        self.name = f"{names[0]} +{k - 1} more"

    def read_batch(self, max_packets: int) -> Batch | None:
        """The next 1 to ``max_packets`` packets in packet-time order, or None at the end.

        A batch also counts the packets the files' walkers left out since the last one
        (``n_skipped``; it may then hold no packet at all).
        """
        if max_packets < 1:
            raise ValueError(f"max_packets must be at least 1, not {max_packets}")
        self._release_behind()
        self._drop_cut()
        runs = self._runs
        out = _Merged(max_packets)
        n = 0
        # like a single file's batch, at most max_packets records walked, kept or not
        while n + self._n_skipped < max_packets:
            self._refill()
            room = max(max_packets - n - self._n_skipped, 1)
            got = merge_heads(
                runs.records.ts_us, runs.counts, runs.cursors, runs.is_finished,
                out.file[n : n + room], out.record[n : n + room],
            )  # fmt: skip
            # gathered now: a file's run may be refilled (overwritten) on the next turn
            out.gather(runs, self._starts, n, n + got)
            n += got
            if got == 0 and runs.is_drained():
                break
        if n == 0 and self._n_skipped == 0:
            return None
        batch = out.records.batch(self._splice.data, n, self._n_skipped, self._skipped_bytes)
        self._n_skipped = self._skipped_bytes = 0
        self._packets += n + batch.n_skipped
        self._bytes += int(batch.caplens.sum()) + batch.skipped_bytes
        return batch

    def _drop_cut(self) -> None:
        """Drops from the runs the records past the end of a file its writer cut during
        the replay (their pages are gone: touched, they raised SIGBUS); the file's walker
        then ends it with a warning at its next read."""
        runs = self._runs
        for k in range(len(self._parts)):
            size = None if runs.is_finished[k] else self._splice.shrunk_to(k)
            if size is None:
                continue
            lo, hi = int(runs.cursors[k]), int(runs.counts[k])
            ends = runs.records.offsets[k, lo:hi] + runs.records.caplens[k, lo:hi]
            runs.counts[k] = lo + int(np.searchsorted(np.maximum.accumulate(ends), size, "right"))
            note_cut(self._warnings, self._splice.paths[k], size)

    def _refill(self) -> None:
        """Reads the next run of every file whose run is used up."""
        runs = self._runs
        for k, part in enumerate(self._parts):
            while runs.cursors[k] >= runs.counts[k] and not runs.is_finished[k]:
                batch = part.read(RUN)
                if batch is None:
                    runs.is_finished[k] = True
                    runs.counts[k] = runs.cursors[k] = 0
                    part.close()
                    continue
                self._n_skipped += batch.n_skipped
                self._skipped_bytes += batch.skipped_bytes
                if batch.n:
                    runs.load(k, batch)

    def _release_behind(self) -> None:
        """Drops pages that no batch handed out from now on needs, per file.

        Records of a file leave in file order, so a file's next record bounds what this
        batch and every later one use; the previous batch (which the caller may still
        hold) is bounded by where the file stood when it was made.
        """
        runs = self._runs
        for k in range(len(self._parts)):
            upto = int(self._keep_from[k])
            if upto > self._released[k]:
                self._splice.release(k, int(self._released[k]), upto)
                self._released[k] = upto
            if runs.cursors[k] < runs.counts[k]:
                self._keep_from[k] = runs.records.offsets[k, runs.cursors[k]]
            elif runs.is_finished[k]:
                self._keep_from[k] = self._splice.sizes[k]
            elif runs.counts[k]:
                # the run is used up: what follows lies past its last record
                self._keep_from[k] = runs.records.offsets[k, runs.counts[k] - 1]

    def map_ahead(self) -> bool:
        """One step of :class:`~wormwatch.source.MapsAhead`: the files take turns, each
        mapped up to its share of ``MAP_AHEAD_BYTES`` past its walker. A step held up
        while the merge let that part of the file go is let go again here."""
        n = len(self._parts)
        span = MAP_AHEAD_BYTES // n
        for i in range(n):
            k = (self._next_map + i) % n
            got = self._parts[k].map_ahead(span)
            if got is not None:
                self._next_map = (k + 1) % n
                lo, hi = got
                released = int(self._released[k])
                if lo < released:
                    # from the page lo is in: mapped in whole
                    self._splice.release(k, lo - lo % mmap.PAGESIZE, min(hi, released))
                return True
        return False

    def stats(self) -> SourceStats:
        """Packets and captured bytes handed out so far, and the warnings met."""
        return SourceStats(packets=self._packets, bytes=self._bytes, warnings=list(self._warnings))

    def close(self) -> None:
        """Stops the replay; later reads return None."""
        for part in self._parts:
            part.close()
        self._runs.is_finished[:] = True
        self._runs.counts[:] = 0
        self._runs.cursors[:] = 0
        self._splice.close()


class _Runs:
    """One buffered run of walked records per file (the merge's only memory)."""

    def __init__(self, n_files: int) -> None:
        self.records = Records.allocate((n_files, RUN))
        self.counts: I64 = np.zeros(n_files, np.int64)
        self.cursors: I64 = np.zeros(n_files, np.int64)
        self.is_finished = np.zeros(n_files, np.bool_)

    def load(self, k: int, batch: Batch) -> None:
        n, rec = batch.n, self.records
        rec.ts_us[k, :n] = batch.ts_us
        rec.offsets[k, :n] = batch.offsets
        rec.caplens[k, :n] = batch.caplens
        rec.wirelens[k, :n] = batch.wirelens
        rec.linktypes[k, :n] = batch.linktypes
        self.counts[k] = n
        self.cursors[k] = 0

    def is_drained(self) -> bool:
        return bool(self.is_finished.all())


class _Merged:
    """The merged batch being made: which record of which file, and its fields."""

    def __init__(self, n: int) -> None:
        self.file: I64 = np.empty(n, np.int64)
        self.record: I64 = np.empty(n, np.int64)
        self.records = Records.allocate(n)

    def gather(self, runs: _Runs, starts: I64, lo: int, hi: int) -> None:
        f, r = self.file[lo:hi], self.record[lo:hi]
        out, run = self.records, runs.records
        out.ts_us[lo:hi] = run.ts_us[f, r]
        out.offsets[lo:hi] = starts[f] + run.offsets[f, r]
        out.caplens[lo:hi] = run.caplens[f, r]
        out.wirelens[lo:hi] = run.wirelens[f, r]
        out.linktypes[lo:hi] = run.linktypes[f, r]


def warm_up() -> None:
    """Compiles (or loads from numba's cache) the merge kernel with a replay's types."""
    runs = _Runs(1)
    runs.is_finished[:] = True
    out = np.empty(1, np.int64)
    merge_heads(runs.records.ts_us, runs.counts, runs.cursors, runs.is_finished, out, out.copy())
