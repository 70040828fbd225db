"""Live capture on an interface: pcapy-ng handle -> :class:`~wormwatch.model.Batch`.

Place in the flow: the first stage. An interface (a mirror/SPAN port) goes in;
batches of the frames the kernel's BPF filter admitted come out, exactly as a
replay hands them to the decoder. One handle is read in this process; with
``workers > 1`` the handles are spread over worker processes
(:mod:`wormwatch.source.fanout`) behind the same :class:`Source` interface.

The handle is non-blocking: a blocking ``next_batch`` on an idle link never
returns (DESIGN.md), so an empty read waits on the socket with ``select`` for at
most the read timeout and the caller gets an empty batch when nothing came.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pcapy

from wormwatch.errors import WormwatchError
from wormwatch.model import Batch
from wormwatch.source import Source, SourceStats
from wormwatch.source.handle import batch_from_buffers, kernel_stats, open_handle, read_ready

MAX_SNAPLEN = 262_144  # libpcap's own largest snapshot length
MAX_BUFFER_MB = 2047  # a ring of 2 GiB overflows the C int libpcap takes
MAX_WORKERS = 64  # processes in one fanout group, each with its own ring


class LiveCapture:
    """One pcapy-ng handle on one interface, read in this process (a :class:`Source`)."""

    is_live = True

    def __init__(self, handle: Any, *, iface: str, timeout_ms: int) -> None:
        self.name = iface
        self.linktype = int(handle.datalink())
        self._handle: Any = handle
        self._timeout_s = timeout_ms / 1000.0
        self._packets = 0
        self._bytes = 0
        self._last_kernel: tuple[int, int, int] | None = None

    def read_batch(self, max_packets: int) -> Batch | None:
        """Up to ``max_packets`` frames; an empty batch after the read timeout.

        Raises:
            WormwatchError: the interface went down or the capture failed.
        """
        if self._handle is None:
            return None
        data, meta = read_ready(self._handle, max_packets, self._timeout_s, self.name)
        batch = batch_from_buffers(data, meta, self.linktype)
        self._packets += batch.n
        self._bytes += int(batch.caplens.sum())
        return batch

    def stats(self) -> SourceStats:
        """Packets handed out, and the kernel's counts (the last ones after close)."""
        if self._handle is not None:
            # The socket may be gone (interface removed): keep the last counts we had.
            with contextlib.suppress(pcapy.PcapError):
                self._last_kernel = kernel_stats(self._handle)
        received, dropped, if_dropped = self._last_kernel or (None, None, None)
        return SourceStats(
            packets=self._packets,
            bytes=self._bytes,
            kernel_received=received,
            kernel_dropped=dropped,
            interface_dropped=if_dropped,
        )

    def close(self) -> None:
        """Close the handle (idempotent); stats() keeps the last kernel counts."""
        if self._handle is None:
            return
        self.stats()
        self._handle.close()
        self._handle = None


def _check_sizes(*, snaplen: int, buffer_mb: int, timeout_ms: int, workers: int) -> None:
    """One error line for a size libpcap or the machine cannot take."""
    if not 1 <= workers <= MAX_WORKERS:
        raise WormwatchError(
            f"--workers {workers}: need 1 to {MAX_WORKERS} (each has its own ring)"
        )
    if not (96 <= snaplen <= MAX_SNAPLEN and 1 <= buffer_mb <= MAX_BUFFER_MB and timeout_ms >= 1):
        raise WormwatchError(
            f"--snaplen must be 96 to {MAX_SNAPLEN}, --buffer-mb 1 to {MAX_BUFFER_MB} "
            "(libpcap takes the ring's size in bytes as a C int) and the timeout >= 1 ms"
        )


def open_capture(
    iface: str,
    *,
    bpf: str | None = None,
    snaplen: int = 1600,
    buffer_mb: int = 64,
    promisc: bool = True,
    timeout_ms: int = 100,
    workers: int = 1,
) -> Source:
    """Open live capture on ``iface`` with the built-in filter (narrowed by ``bpf``).

    Call as root or with CAP_NET_RAW/CAP_NET_ADMIN; drop privileges afterwards
    (:func:`wormwatch.source.privileges.drop_privileges`), before the first read.

    Args:
        iface: interface name, or ``any`` (Linux cooked capture).
        bpf: the operator's filter, and-ed with the built-in one.
        snaplen: bytes kept per packet (1600 holds any DNS query over UDP).
        buffer_mb: kernel ring size per handle, for bursts.
        promisc: promiscuous mode (a mirror port needs it).
        timeout_ms: longest wait of one ``read_batch`` on an idle link.
        workers: handles in one PACKET_FANOUT group, each read by its own process.

    Returns:
        A :class:`Source` whose ``name`` is ``iface``.

    Raises:
        WormwatchError: bad arguments, missing interface, no permission, a filter
            that does not compile.
    """
    _check_sizes(snaplen=snaplen, buffer_mb=buffer_mb, timeout_ms=timeout_ms, workers=workers)

    def one_handle() -> Any:
        return open_handle(
            iface,
            bpf=bpf,
            snaplen=snaplen,
            buffer_mb=buffer_mb,
            promisc=promisc,
            timeout_ms=timeout_ms,
        )

    if workers == 1:
        return LiveCapture(one_handle(), iface=iface, timeout_ms=timeout_ms)
    # Imported here: fanout pulls in multiprocessing, which one-handle capture never needs.
    from wormwatch.source.fanout import FanoutCapture  # noqa: PLC0415

    handles: list[Any] = []
    try:
        for _ in range(workers):
            handles.append(one_handle())
        return FanoutCapture(handles, iface=iface, timeout_ms=timeout_ms)
    except WormwatchError:
        for handle in handles:
            handle.close()
        raise
