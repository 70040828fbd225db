"""The live benchmark's traffic: a frame mix and a sender fast enough to flood a veth.

The mix (:func:`build_mix`) is what a campus uplink's relevant traffic looks like to
wormwatch: DNS queries, their answers (one answer per query, a third of them NXDOMAIN),
SYNs to 135/139/445 (some IPv6 and VLAN-tagged) and bulk TCP the filter drops. Each
frame carries the kind it is meant to be, so the benchmark knows exactly what any run
of frames should count as (:func:`expected`), and a test checks the kinds against the
dpkt reference decoder.

The sender (:class:`Sender`) hands the kernel a whole burst of pre-built frames per
system call: libc's ``sendmmsg`` through ctypes on a raw AF_PACKET socket (Python's
socket module has no sendmmsg), with the qdisc bypassed. Every frame, its iovec and
its message header are built once, so a burst costs one ctypes call; several sender
processes (``--senders``) spread the sending, and on a veth the receiving side's
kernel work too, over the cores. Run as a script it is one sender process:

    python -m scripts.bench.sender IFACE FRAMES_FILE RATE SECONDS START [LIMIT]
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from testkit.netns import read_frames

# kinds of frames in the mix; the first four are relevant (wormwatch counts them)
KINDS = ("query", "answer", "nxdomain", "syn", "other")
RELEVANT = frozenset(KINDS[:4])
# one cycle of the mix, 20 frames: 6 queries, their 6 answers (2 NXDOMAIN), 5 SYNs, 3 bulk
CYCLE = 20
SOL_PACKET, PACKET_QDISC_BYPASS = 263, 20
BURST = 128


def build_mix(n_frames: int = 4000) -> tuple[list[bytes], list[str]]:
    """The frames of the mix and the kind each one is meant to be.

    ``n_frames`` is rounded down to whole cycles of 20, so every prefix of whole
    cycles holds the mix's exact shares: 30% queries, 30% answers (10% NXDOMAIN),
    25% SYNs to 135/139/445 (one in five IPv6, one in five VLAN 10), 15% bulk TCP.
    """
    from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRSOA
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.packet import raw

    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    words = ("mail", "smtp", "mx", "www", "ns", "cdn", "relay", "api")
    qtypes = ("MX", "AAAA", "A", "A", "A", "A")
    frames: list[bytes] = []
    kinds: list[str] = []
    for cycle in range(n_frames // CYCLE):
        for slot in range(CYCLE):
            i = cycle * CYCLE + slot
            host = f"198.51.100.{10 + i % 200}"
            q = slot % 6  # the query an answer answers: same client, port, id, name
            client = f"198.51.100.{10 + (cycle * CYCLE + q) % 200}"
            name = f"{words[(cycle + q) % len(words)]}{cycle}-{q}.example{cycle % 13}.com"
            port = 1024 + (cycle * 6 + q) % 60000
            if slot < 6:
                query = DNS(id=port, rd=1, qd=DNSQR(qname=name, qtype=qtypes[q]))
                packet = eth / IP(src=client, dst="198.51.100.1") / UDP(sport=port, dport=53)
                frames.append(raw(packet / query))
                kinds.append("query")
            elif slot < 12:
                nx = slot >= 10
                if nx:
                    soa = DNSRRSOA(rrname=f"example{cycle % 13}.com", mname="ns.example.com")
                    answer = DNS(id=port, qr=1, ra=1, rcode=3, qd=DNSQR(qname=name), ns=soa)
                else:
                    rdata = "192.0.2.80" if qtypes[q] == "A" else "mx.example.com"
                    rtype = "A" if qtypes[q] == "A" else "MX"
                    if qtypes[q] == "AAAA":
                        rdata, rtype = "2001:db8::80", "AAAA"
                    record = DNSRR(rrname=name, type=rtype, rdata=rdata, ttl=300)
                    answer = DNS(id=port, qr=1, ra=1, qd=DNSQR(qname=name), an=record)
                packet = eth / IP(src="198.51.100.1", dst=client) / UDP(sport=53, dport=port)
                frames.append(raw(packet / answer))
                kinds.append("nxdomain" if nx else "answer")
            elif slot < 17:
                syn = TCP(sport=1024 + i % 60000, dport=(135, 139, 445)[i % 3], flags="S")
                dst = f"203.0.113.{i % 250 + 1}"
                if slot == 15:
                    v6 = IPv6(src=f"2001:db8::{i % 200 + 10:x}", dst="2001:db8::1")
                    frames.append(raw(eth / v6 / syn))
                elif slot == 16:
                    frames.append(raw(eth / Dot1Q(vlan=10) / IP(src=host, dst=dst) / syn))
                else:
                    frames.append(raw(eth / IP(src=host, dst=dst) / syn))
                kinds.append("syn")
            else:
                ack = TCP(sport=443, dport=1024 + i % 60000, flags="A") / (b"x" * 200)
                frames.append(raw(eth / IP(src="198.51.100.1", dst=host) / ack))
                kinds.append("other")
    return frames, kinds


def relevant_share(kinds: Sequence[str]) -> float:
    return sum(k in RELEVANT for k in kinds) / len(kinds)


def expected(kinds: Sequence[str], start: int, count: int) -> Counter[str]:
    """What ``count`` frames sent round robin from frame ``start`` are, by kind."""
    n = len(kinds)
    whole, rest = divmod(count, n)
    got = Counter(dict.fromkeys(KINDS, 0))
    for kind, per_cycle in Counter(kinds).items():
        got[kind] += per_cycle * whole
    for j in range(rest):
        got[kinds[(start + j) % n]] += 1
    return got


class _Iovec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


class _Msghdr(ctypes.Structure):
    _fields_ = (
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(_Iovec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    )


class _Mmsghdr(ctypes.Structure):
    _fields_ = (("hdr", _Msghdr), ("len", ctypes.c_uint))


class Sender:
    """Pre-built frames sent in bursts of ``BURST`` by one ``sendmmsg`` call each."""

    def __init__(self, iface: str, frames: Sequence[bytes]) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.sendmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
        self.n = len(frames)
        # frames, then the first BURST again: any start below n has BURST headers in a row
        ring = [*frames, *(frames[j % self.n] for j in range(BURST))]
        self._data = ctypes.create_string_buffer(b"".join(ring))
        self._iov = (_Iovec * len(ring))()
        self._msgs = (_Mmsghdr * len(ring))()
        base, pos = ctypes.addressof(self._data), 0
        for j, frame in enumerate(ring):
            self._iov[j].base, self._iov[j].len = base + pos, len(frame)
            self._msgs[j].hdr.iov = ctypes.pointer(self._iov[j])
            self._msgs[j].hdr.iovlen = 1
            pos += len(frame)
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self._sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        self._sock.bind((iface, 0))

    def send(
        self, rate: float, seconds: float, start: int = 0, limit: int = -1
    ) -> tuple[int, float]:
        """Frames from ``start`` on, round robin, paced to ``rate`` per second for
        ``seconds`` (or until ``limit`` frames when that is not negative).

        Returns:
            Frames the kernel took, and the seconds it took.
        """
        fd, sendmmsg = self._sock.fileno(), self._libc.sendmmsg
        base, size = ctypes.addressof(self._msgs), ctypes.sizeof(_Mmsghdr)
        sent, t0 = 0, time.monotonic()
        while (elapsed := time.monotonic() - t0) < seconds and sent != limit:
            due = sent / rate  # when the next burst is due
            if due > elapsed + 0.0005:
                time.sleep(due - elapsed)
                continue
            burst = BURST if limit < 0 else min(BURST, limit - sent)
            got = sendmmsg(fd, base + ((start + sent) % self.n) * size, burst, 0)
            if got < 0:
                err = ctypes.get_errno()
                if err not in (errno.EAGAIN, errno.ENOBUFS):  # a full queue: try again
                    raise OSError(err, os.strerror(err))
                continue
            sent += got
        return sent, time.monotonic() - t0

    def close(self) -> None:
        self._sock.close()


def main(argv: Sequence[str]) -> int:
    """IFACE FILE RATE SECONDS START [LIMIT]: send, then print frames sent and seconds."""
    iface, path, rate, seconds, start, *limit = argv
    sender = Sender(iface, read_frames(Path(path)))
    try:
        sent, elapsed = sender.send(
            float(rate), float(seconds), int(start), int(limit[0]) if limit else -1
        )
    finally:
        sender.close()
    print(sent, f"{elapsed:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
