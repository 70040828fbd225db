"""Live capture over several cores: N handles in one PACKET_FANOUT group.

Place in the flow: inside the source stage. The kernel spreads one interface's
filtered packets over N capture handles by flow hash; one worker process per
handle reads ``next_batch`` and ships the raw filtered batch (header + meta +
packet bytes, one pipe message) to the parent, which hands it on as a
:class:`~wormwatch.model.Batch`. Decoding, aggregation and detection all stay in
the parent, so a host whose flows the kernel hashed onto different workers is
still one host with all its evidence, and the pipeline cannot tell fanout from
one handle.

Why raw batches and not decoded events (``scripts/bench/live.py --shipping``):
a relevant packet is ~90 bytes with its metadata, an event row 305 (its name
slot is 256 bytes), so a pipe moves a raw batch in about half the time
(66 vs 138 ns per packet here). Decoding in the workers would take 85-180 ns
per packet off the parent, but the parent is far from busy (a third of a core
at 550k relevant packets/s) and one decoder in one place keeps numba out of
the workers.

Lifecycle: the handles are opened (as root) by the parent; workers are forked
at the first ``read_batch``, so they inherit the user the parent dropped to.
Workers ignore SIGINT (the parent ends them in :meth:`FanoutCapture.close`) and
die with the parent (``PR_SET_PDEATHSIG``), so none is left orphaned.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import struct
import time

# Imported here, not lazily by Process.start(): workers are forked after the
# privilege drop, when the interpreter's own files may no longer be readable.
from multiprocessing import popen_fork  # noqa: F401
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Final

import pcapy

from wormwatch.errors import WormwatchError
from wormwatch.model import Batch
from wormwatch.source import SourceStats, WorkerStats
from wormwatch.source.handle import batch_from_buffers, kernel_stats, read_ready

# kind, linktype, kernel received, dropped, interface-dropped, packets; padded to 40 bytes.
_HEADER: Final = struct.Struct("=c3xIQQQI4x")
_BATCH: Final = b"B"
_STATS: Final = b"S"
_ERROR: Final = b"E"
_PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h
_STATS_EVERY_S: Final = 0.2
_JOIN_S: Final = 2.0


def _die_with_parent(parent_pid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    # The parent may have exited between fork and prctl.
    if os.getppid() != parent_pid:
        os._exit(0)


def _worker_main(
    handle: Any, conn: Connection, max_packets: int, timeout_s: float, iface: str, parent_pid: int
) -> None:
    """Read one fanout handle and ship every batch to the parent until told to stop."""
    stop = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_term)
    _die_with_parent(parent_pid)
    linktype = int(handle.datalink())
    last_stats = 0.0
    try:
        while True:
            data, meta = read_ready(handle, max_packets, timeout_s, iface)
            now = time.monotonic()
            n = len(meta) // 16
            if n == 0 and now - last_stats < _STATS_EVERY_S and not stop:
                continue
            last_stats = now
            counts = kernel_stats(handle)
            kind = _BATCH if n else _STATS
            conn.send_bytes(b"".join((_HEADER.pack(kind, linktype, *counts, n), meta, data)))
            if stop:
                return
    except WormwatchError as err:
        with contextlib.suppress(OSError):
            conn.send_bytes(_HEADER.pack(_ERROR, linktype, 0, 0, 0, 0) + str(err).encode())
    except (BrokenPipeError, ConnectionResetError):
        # The parent closed its end: nothing left to do.
        pass


class FanoutCapture:
    """N fanout handles read by N worker processes, merged here (a :class:`Source`)."""

    is_live = True

    def __init__(self, handles: list[Any], *, iface: str, timeout_ms: int) -> None:
        self.name = iface
        self._handles = handles
        self._timeout_s = timeout_ms / 1000.0
        group = os.getpid() & 0xFFFF
        try:
            for handle in handles:
                handle.set_fanout(group, pcapy.PACKET_FANOUT_HASH)
        except pcapy.PcapError as err:
            raise WormwatchError(
                f"cannot spread {iface} over workers (PACKET_FANOUT): {err}"
            ) from err
        self._procs: list[BaseProcess] = []
        self._conns: list[Connection] = []
        self._kernel = [(0, 0, 0)] * len(handles)
        self._turn = 0
        self._packets = 0
        self._bytes = 0
        self._is_closed = False

    def _start(self, max_packets: int) -> None:
        ctx = multiprocessing.get_context("fork")
        for i, handle in enumerate(self._handles):
            reader, writer = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_worker_main,
                args=(handle, writer, max_packets, self._timeout_s, self.name, os.getpid()),
                name=f"wormwatch-capture-{i}",
                daemon=True,
            )
            proc.start()
            writer.close()
            self._procs.append(proc)
            self._conns.append(reader)

    def read_batch(self, max_packets: int) -> Batch | None:
        """The next batch any worker shipped; empty after the read timeout.

        Raises:
            WormwatchError: a worker lost its interface or died.
        """
        if self._is_closed:
            return None
        if not self._procs:
            self._start(max_packets)
        ready = set(wait(self._conns, timeout=self._timeout_s))
        n_workers = len(self._conns)
        for step in range(n_workers):
            index = (self._turn + step) % n_workers
            if self._conns[index] not in ready:
                continue
            batch = self._receive(index)
            if batch is not None:
                self._turn = (index + 1) % n_workers
                return batch
        return Batch.empty()

    def _receive(self, index: int) -> Batch | None:
        try:
            message = self._conns[index].recv_bytes()
        except (EOFError, OSError) as err:
            raise WormwatchError(
                f"capture worker {index} on {self.name} {self._how_it_ended(index)}; "
                "the capture stopped (restart the sensor)"
            ) from err
        kind, linktype, received, dropped, if_dropped, n = _HEADER.unpack_from(message)
        if kind == _ERROR:
            raise WormwatchError(message[_HEADER.size :].decode(errors="replace"))
        self._kernel[index] = (received, dropped, if_dropped)
        if kind != _BATCH:
            return None
        view = memoryview(message)
        meta_end = _HEADER.size + 16 * n
        batch = batch_from_buffers(view[meta_end:], view[_HEADER.size : meta_end], linktype)
        self._packets += batch.n
        self._bytes += int(batch.caplens.sum())
        return batch

    def _how_it_ended(self, index: int) -> str:
        """A dead worker's end in words: the signal that killed it, or its exit status."""
        proc = self._procs[index]
        proc.join(_JOIN_S)
        code = proc.exitcode
        if code is None:
            return "stopped sending (its pipe closed)"
        if code >= 0:
            return f"exited with status {code}"
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (the kernel's out-of-memory killer?)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"

    def _drain(self, index: int, conn: Connection, deadline: float) -> None:
        """Read a stopping worker's last messages (up to EOF) for its final kernel counts."""
        while conn.poll(max(0.0, deadline - time.monotonic())):
            try:
                message = conn.recv_bytes()
            except (EOFError, OSError):
                return
            kind, _linktype, received, dropped, if_dropped, _n = _HEADER.unpack_from(message)
            if kind != _ERROR:
                self._kernel[index] = (received, dropped, if_dropped)

    def stats(self) -> SourceStats:
        """Packets handed out, and the kernel counts summed over all handles."""
        return SourceStats(
            packets=self._packets,
            bytes=self._bytes,
            kernel_received=sum(k[0] for k in self._kernel),
            kernel_dropped=sum(k[1] for k in self._kernel),
            interface_dropped=sum(k[2] for k in self._kernel),
            workers=tuple(
                WorkerStats(
                    # not started yet (before the first read) counts as alive
                    is_alive=not self._procs or self._procs[i].is_alive(),
                    kernel_received=k[0],
                    kernel_dropped=k[1],
                    interface_dropped=k[2],
                )
                for i, k in enumerate(self._kernel)
            ),
        )

    def close(self) -> None:
        """Stop the workers (SIGTERM; SIGKILL if one hangs), keep their final kernel
        counts, then close the handles. Batches still in flight are discarded. Idempotent."""
        if self._is_closed:
            return
        self._is_closed = True
        for proc in self._procs:
            proc.terminate()
        deadline = time.monotonic() + _JOIN_S
        for index, conn in enumerate(self._conns):
            self._drain(index, conn, deadline)
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self._conns:
            conn.close()
        # Only now: closing a handle tears down the ring a worker may still be reading.
        for handle in self._handles:
            handle.close()
