"""One pcapy-ng capture handle: open it, read it, wrap what it returns.

Place in the flow: inside the source stage, below both ways of reading an interface:
:mod:`wormwatch.source.live` (one handle in this process) and
:mod:`wormwatch.source.fanout` (one handle per worker process). Both import these
helpers and neither imports the other's internals, so the two modules form no cycle.
"""

from __future__ import annotations

import errno
import select
from typing import Any, Final

import numpy as np
import pcapy

from wormwatch.errors import WormwatchError
from wormwatch.model import Batch
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
