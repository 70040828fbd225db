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
import errno
import select
from typing import Any, Final

import numpy as np
import pcapy

from wormwatch.errors import WormwatchError
from wormwatch.model import Batch, SourceStats
from wormwatch.source import Source
from wormwatch.source.bpf import compile_filter, filter_for

# pcapy-ng's next_batch meta: four native-endian uint32 per packet.
META_DTYPE: Final = np.dtype(
    [("sec", "=u4"), ("usec", "=u4"), ("offset", "=u4"), ("caplen", "=u4")]
)
_LIVE_LINK_DOC: Final = "docs/LIVE.md"
# pcap_activate status codes (pcap/pcap.h)
_PCAP_ERROR: Final = -1
_PCAP_ERROR_NO_SUCH_DEVICE: Final = -5
_PCAP_ERROR_PROMISC_PERM_DENIED: Final = -11
_PCAP_ERROR_PERM_DENIED: Final = -8
_PCAP_ERROR_IFACE_NOT_UP: Final = -9


def batch_from_buffers(data: Any, meta: Any, linktype: int) -> Batch:
    """Wrap ``next_batch`` output (or the same bytes shipped by a worker) without copying.

    Args:
        data: packet bytes (anything exposing the buffer protocol).
        meta: 16-byte records (sec, usec, offset, caplen), native endian.
        linktype: the handle's ``datalink()``.

    Returns:
        A batch whose ``data`` is a read-only view of ``data``.
    """
    records = np.frombuffer(meta, META_DTYPE)
    n = records.shape[0]
    if n == 0:
        return Batch.empty()
    ts_us = records["sec"].astype(np.int64) * 1_000_000 + records["usec"]
    caplens = records["caplen"].astype(np.int32)
    return Batch(
        data=np.frombuffer(data, np.uint8),
        ts_us=ts_us,
        offsets=records["offset"].astype(np.int64),
        caplens=caplens,
        # libpcap's next_batch meta has no wire length; the decoder does not need it.
        wirelens=caplens.copy(),
        linktypes=np.full(n, linktype, np.int32),
    )


def _available() -> str:
    try:
        names = [str(name) for name in pcapy.findalldevs()]
    except pcapy.PcapError:
        return "(could not list interfaces)"
    return ", ".join(names) if names else "(none visible)"


def _open_error(iface: str, status: int, detail: str) -> WormwatchError:
    """One line for a failed ``pcap_activate`` (its status codes: pcap/pcap.h)."""
    if status in (_PCAP_ERROR_PERM_DENIED, _PCAP_ERROR_PROMISC_PERM_DENIED) or (
        "permission" in detail.lower() or "not permitted" in detail.lower()
    ):
        return WormwatchError(
            f"no permission to capture on {iface}: run as root, or grant "
            f"CAP_NET_RAW and CAP_NET_ADMIN (see {_LIVE_LINK_DOC})"
        )
    if status == _PCAP_ERROR_NO_SUCH_DEVICE or "no such device" in detail.lower():
        return WormwatchError(f"no interface {iface!r}; available: {_available()}")
    if status == _PCAP_ERROR_IFACE_NOT_UP:
        return WormwatchError(f"interface {iface} is down: bring it up (ip link set {iface} up)")
    return WormwatchError(f"cannot capture on {iface}: {detail or f'libpcap status {status}'}")


def open_handle(
    iface: str, *, bpf: str | None, snaplen: int, buffer_mb: int, promisc: bool, timeout_ms: int
) -> Any:
    """Create, activate and filter one pcapy-ng handle (non-blocking).

    Returns:
        The activated pcapy handle with the filter installed.

    Raises:
        WormwatchError: missing interface, no permission, interface down, or a
            filter that does not compile.
    """
    try:
        handle = pcapy.create(iface)
        handle.set_snaplen(snaplen)
        handle.set_promisc(1 if promisc else 0)
        handle.set_timeout(timeout_ms)
        handle.set_buffer_size(buffer_mb * 1024 * 1024)
        # pcapy-ng returns pcap_activate's status instead of raising on failure.
        status = handle.activate()
    except pcapy.PcapError as err:
        raise _open_error(iface, _PCAP_ERROR, str(err)) from err
    try:
        if isinstance(status, int) and status < 0:
            raise _open_error(iface, status, "")
        _install_filter(handle, iface, bpf, snaplen)
    except WormwatchError:
        handle.close()
        raise
    return handle


def _install_filter(handle: Any, iface: str, bpf: str | None, snaplen: int) -> None:
    linktype = int(handle.datalink())
    if linktype < 0:
        raise _open_error(iface, linktype, "")
    expression = filter_for(linktype, bpf)
    # Compile apart first, so a bad --bpf is reported as libpcap words it.
    compile_filter(expression, linktype=linktype, snaplen=snaplen)
    try:
        handle.setfilter(expression)
        handle.setnonblock(1)
    except pcapy.PcapError as err:
        raise WormwatchError(f"cannot install the capture filter on {iface}: {err}") from err


def read_ready(handle: Any, max_packets: int, timeout_s: float, iface: str) -> tuple[Any, Any]:
    """One non-blocking ``next_batch``; when empty, wait up to ``timeout_s`` and retry once.

    Raises:
        WormwatchError: the interface went down or the socket failed.
    """
    try:
        data, meta = handle.next_batch(max_packets)
        if len(meta) == 0:
            select.select([handle.getfd()], [], [], timeout_s)
            data, meta = handle.next_batch(max_packets)
    except pcapy.PcapError as err:
        raise WormwatchError(
            f"capture on {iface} stopped: {err} (check `ip link show {iface}`, then restart)"
        ) from err
    except OSError as err:
        if err.errno == errno.EINTR:
            return b"", b""
        raise WormwatchError(f"capture on {iface} stopped: {err}") from err
    return data, meta


def kernel_stats(handle: Any) -> tuple[int, int, int]:
    """(received, dropped, interface-dropped) since the handle was opened."""
    received, dropped, if_dropped = handle.stats()
    return int(received), int(dropped), int(if_dropped)


class LiveCapture:
    """One pcapy-ng handle on one interface, read in this process (a :class:`Source`)."""

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
    if workers < 1:
        raise WormwatchError(f"--workers {workers}: need at least 1")
    if snaplen < 96 or buffer_mb < 1 or timeout_ms < 1:
        raise WormwatchError("--snaplen must be >= 96, --buffer-mb >= 1 and the timeout >= 1 ms")

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
