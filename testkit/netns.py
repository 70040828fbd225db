"""Network namespaces for live-capture tests and benchmarks (root only).

:func:`veth_pair` makes two namespaces joined by a veth pair, with
documentation addresses only inside them (198.51.100.1/24 and 2001:db8::1/64 on
the sender side, .2 and ::2 on the capture side, and a VLAN 10 subinterface with
203.0.113.1/2 on each side where the kernel has 802.1Q support), and deletes
them on exit, whatever happened. :func:`host_veth` keeps the capture end in
this namespace instead (no address on it), for a sensor that also talks to a
service on this host's loopback.

Run as a script inside a namespace (``ip netns exec NS python -m testkit.netns``),
it is the other half of a test:

- ``send IFACE FILE``: send the frames of FILE (u32 length + bytes each) on a raw
  AF_PACKET socket, as they are (tags included);
- ``capture IFACE --out F --expect N ...``: open wormwatch's live capture,
  print ``ready`` on standard output, read until N relevant packets (per the
  reference decoder) have arrived and the link is quiet again, then write the
  captured frames and kernel stats as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit import pcap
from testkit.paths import python_m

_COUNTER = itertools.count()
SENDER_V4, CAPTURE_V4 = "198.51.100.1", "198.51.100.2"
SENDER_V6, CAPTURE_V6 = "2001:db8::1", "2001:db8::2"
VLAN_ID = 10
SENDER_VLAN_V4, CAPTURE_VLAN_V4 = "203.0.113.1", "203.0.113.2"


def can_use_netns() -> str | None:
    """None when namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "live capture tests need root (network namespaces, AF_PACKET sockets)"
    if shutil.which("ip") is None:
        return "live capture tests need iproute2's `ip`"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class VethPair:
    """Two namespaces and the veth between them; ``*_if`` live in ``*_ns``."""

    sender_ns: str
    capture_ns: str
    sender_if: str
    capture_if: str
    workdir: Path
    vlan_ifs: list[str] = field(default_factory=list)

    def command(self, ns: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside namespace ``ns``."""
        return ["ip", "netns", "exec", ns, *argv]

    def helper(self, ns: str, *args: str) -> list[str]:
        """This module run (``python -m testkit.netns``) inside ``ns``, same interpreter."""
        return self.command(ns, python_m("testkit.netns", *args))

    def mac(self, ns: str, iface: str) -> str:
        out = subprocess.run(
            ["ip", "-n", ns, "-j", "link", "show", iface], check=True, capture_output=True
        )
        return str(json.loads(out.stdout)[0]["address"])

    def send(self, frames: Sequence[bytes], *, timeout_s: float = 60.0) -> None:
        """Send ``frames`` from the sender side, in order; returns when all are sent."""
        path = self.workdir / f"frames-{next(_COUNTER)}.bin"
        write_frames(path, frames)
        subprocess.run(
            self.helper(self.sender_ns, "send", self.sender_if, str(path)),
            check=True,
            timeout=timeout_s,
        )


def wait_while_running(
    proc: subprocess.Popen[Any], is_done: Callable[[], bool], timeout_s: float, what: str = ""
) -> None:
    """Wait for ``is_done`` while ``proc`` runs; the tick is a bounded wait on the process.

    Raises:
        AssertionError: ``proc`` exited first, or ``timeout_s`` passed.
    """
    deadline = time.monotonic() + timeout_s
    while not is_done():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s} s waiting on {proc.args} {what}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.05)
            raise AssertionError(f"{proc.args} exited early with {proc.returncode} {what}")


def wait_for_line(proc: subprocess.Popen[str], expected: str, timeout_s: float) -> None:
    """Block until ``proc`` prints ``expected`` (a readiness signal), at most ``timeout_s``.

    Raises:
        RuntimeError: the process ended, printed something else, or timed out.
    """
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            raise RuntimeError(f"no {expected!r} from {proc.args} within {timeout_s} s")
    line = proc.stdout.readline().strip()
    if line != expected:
        raise RuntimeError(f"{proc.args} printed {line!r} (exit {proc.poll()}), not {expected!r}")


class CaptureRun:
    """The ``capture`` helper running in the capture namespace."""

    def __init__(self, pair: VethPair, iface: str, *options: str, session: bool = False) -> None:
        self.out = pair.workdir / f"capture-{next(_COUNTER)}.json"
        argv = pair.helper(pair.capture_ns, "capture", iface, "--out", str(self.out), *options)
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, text=True, start_new_session=session
        )

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Return once the capture is open (or raise when it failed to open)."""
        try:
            wait_for_line(self.proc, "ready", timeout_s)
        except RuntimeError:
            self.proc.wait(timeout_s)
            if self.out.exists() and "error" in self.result():
                return
            raise

    def result(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """The helper's JSON once it has finished."""
        self.proc.wait(timeout_s)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return dict(json.loads(self.out.read_text()))


def _kill_namespace_processes(ns: str) -> None:
    """End processes still running in ``ns`` (ours: the test's helpers)."""
    out = subprocess.run(["ip", "netns", "pids", ns], check=False, capture_output=True, text=True)
    for pid in out.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            continue


@contextmanager
def veth_pair(workdir: Path) -> Iterator[VethPair]:
    """Create the namespaces; delete them on exit even when the body fails."""
    tag = f"{os.getpid() % 100000}x{next(_COUNTER)}"
    pair = VethPair(f"wwS{tag}", f"wwC{tag}", f"wS{tag}", f"wC{tag}", workdir)
    made: list[str] = []
    try:
        for ns in (pair.sender_ns, pair.capture_ns):
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("link", "add", pair.sender_if, "netns", pair.sender_ns, "type", "veth",
            "peer", "name", pair.capture_if, "netns", pair.capture_ns)  # fmt: skip
        for ns, iface, v4, v6, vlan_v4 in (
            (pair.sender_ns, pair.sender_if, SENDER_V4, SENDER_V6, SENDER_VLAN_V4),
            (pair.capture_ns, pair.capture_if, CAPTURE_V4, CAPTURE_V6, CAPTURE_VLAN_V4),
        ):
            vlan_if = f"{iface}.{VLAN_ID}"
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{v4}/24", "dev", iface)
            _ip("-n", ns, "addr", "add", f"{v6}/64", "dev", iface, "nodad")
            _ip("-n", ns, "link", "set", iface, "up")
            # Kernels without CONFIG_VLAN_8021Q (this CI's) cannot make the subinterface;
            # tagged frames still arrive, and the receive path still strips their tag.
            try:
                _ip("-n", ns, "link", "add", "link", iface, "name", vlan_if, "type", "vlan",
                    "id", str(VLAN_ID))  # fmt: skip
            except subprocess.CalledProcessError:
                continue
            pair.vlan_ifs.append(vlan_if)
            _ip("-n", ns, "addr", "add", f"{vlan_v4}/24", "dev", vlan_if)
            _ip("-n", ns, "link", "set", vlan_if, "up")
        yield pair
    finally:
        for ns in made:
            _kill_namespace_processes(ns)
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


@contextmanager
def host_veth(workdir: Path) -> Iterator[VethPair]:
    """A sender namespace whose veth peer stays in this (the host's) namespace,
    up and without any address, for a capture that must also reach services
    on the host's loopback (a broker). ``capture_ns`` is empty: capture
    commands run here. Deleting the namespace deletes both ends."""
    tag = f"{os.getpid() % 100000}x{next(_COUNTER)}"
    pair = VethPair(f"wwS{tag}", "", f"wS{tag}", f"wH{tag}", workdir)
    made = False
    try:
        _ip("netns", "add", pair.sender_ns)
        made = True
        _ip("link", "add", pair.capture_if, "type", "veth",
            "peer", "name", pair.sender_if, "netns", pair.sender_ns)  # fmt: skip
        # no IPv6 autoconfiguration on the host end: nothing of the host's own
        # leaves or arrives there but what the test sends
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv6/conf/{pair.capture_if}/disable_ipv6").write_text("1")
        _ip("link", "set", pair.capture_if, "up")
        _ip("-n", pair.sender_ns, "link", "set", "lo", "up")
        _ip("-n", pair.sender_ns, "addr", "add", f"{SENDER_V4}/24", "dev", pair.sender_if)
        _ip("-n", pair.sender_ns, "link", "set", pair.sender_if, "up")
        yield pair
    finally:
        if made:
            _kill_namespace_processes(pair.sender_ns)
            subprocess.run(["ip", "netns", "del", pair.sender_ns], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", pair.capture_if], check=False, capture_output=True)


def write_frames(path: Path, frames: Sequence[bytes]) -> None:
    """FILE format of ``send``: u32 little-endian length, then the frame."""
    with path.open("wb") as out:
        for frame in frames:
            out.write(struct.pack("<I", len(frame)))
            out.write(frame)


def read_frames(path: Path) -> list[bytes]:
    data = path.read_bytes()
    frames, pos = [], 0
    while pos < len(data):
        (size,) = struct.unpack_from("<I", data, pos)
        frames.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return frames


def _send(iface: str, path: Path) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((iface, 0))
        for frame in read_frames(path):
            sock.send(frame)


def _children_uids(pid: int) -> list[int]:
    """Real uids of ``pid``'s child processes (fanout workers)."""
    uids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != pid:
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, IndexError):
            continue
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        uids.append(int(uid_line.split()[1]))
    return uids


def _capture(args: argparse.Namespace) -> dict[str, object]:
    from wormwatch.errors import WormwatchError
    from wormwatch.source.live import open_capture
    from wormwatch.source.privileges import drop_privileges

    from testkit.reference import decode_frame

    try:
        if args.drop_first:
            drop_privileges("nobody")
        source = open_capture(args.iface, bpf=args.bpf, workers=args.workers)
    except WormwatchError as err:
        return {"error": str(err)}
    try:
        print("ready", flush=True)
        dropped_to = drop_privileges(args.user) if args.user else None
        frames: list[tuple[int, str]] = []
        records: list[tuple[int, bytes]] = []
        worker_uids: list[int] = []
        n_relevant = 0
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            batch = source.read_batch(256)
            if batch is None:
                break
            if batch.n == 0 and n_relevant >= args.expect:
                break
            if not worker_uids:
                worker_uids = _children_uids(os.getpid())
            for i in range(batch.n):
                start = int(batch.offsets[i])
                frame = bytes(batch.data[start : start + int(batch.caplens[i])])
                linktype = int(batch.linktypes[i])
                frames.append((linktype, frame.hex()))
                records.append((int(batch.ts_us[i]), frame))
                n_relevant += bool(decode_frame(linktype, frame, 0)[1])
    except WormwatchError as err:
        return {"error": str(err)}
    finally:
        source.close()
    stats = source.stats()
    if args.pcap:
        pcap.write_frames(Path(args.pcap), records, linktype=frames[0][0] if frames else 1)
    return {
        "frames": frames,
        "uid": os.getuid(),
        "worker_uids": worker_uids,
        "user": dropped_to,
        "packets": stats.packets,
        "kernel_received": stats.kernel_received,
        "kernel_dropped": stats.kernel_dropped,
        "interface_dropped": stats.interface_dropped,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    send = sub.add_parser("send")
    send.add_argument("iface")
    send.add_argument("path", type=Path)
    capture = sub.add_parser("capture")
    capture.add_argument("iface")
    capture.add_argument("--out", required=True)
    capture.add_argument("--expect", type=int, default=0)
    capture.add_argument("--workers", type=int, default=1)
    capture.add_argument("--bpf")
    capture.add_argument("--user")
    capture.add_argument("--pcap", help="also write what was captured, with timestamps")
    capture.add_argument("--drop-first", action="store_true", help="open as nobody (must fail)")
    capture.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args(argv)
    if args.command == "send":
        _send(args.iface, args.path)
        return 0
    # Opened before the capture may drop root: the test's directory is root's.
    with Path(args.out).open("w") as out:
        json.dump(_capture(args), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
