"""Live-capture benchmark: how fast can wormwatch listen without the kernel dropping?

In two network namespaces joined by a veth pair (testkit/netns.py; documentation
addresses only), a sender replays a DNS+SYN-heavy frame mix at increasing rates
and wormwatch's whole pipeline (capture, decode, classify, aggregate, detect,
and with ``--tui`` the live table drawn to /dev/null) listens on the other end.
Per rate and worker count it reports: frames sent, received and dropped by the
kernel, what wormwatch counted, and the CPU time of the capture process (with
its fanout workers).

Sender: tcpreplay when installed; else a small C program using sendmmsg on a raw
AF_PACKET socket, compiled here when a C compiler exists; else a Python loop
(far slower: the table then shows the sender's limit, not wormwatch's).

    sudo .venv/bin/python -m scripts.bench.live --rates 100000,300000,450000 --workers 1,2

Root only. Each rate runs ``--seconds`` of traffic after the sensor is ready.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testkit import pcap
from testkit.netns import VethPair, veth_pair, wait_for_line, write_frames
from testkit.paths import python_m

# what wormwatch counts of the mix (dns_answers: absent before answers were counted)
EVENT_COUNTERS = ("dns_queries", "syns", "dns_answers")
SENDER_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* send_frames IFACE FILE RATE SECONDS: frames of FILE (u32 LE length + bytes),
   round robin, paced to RATE frames/s, for SECONDS; prints the number sent. */
static double now(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9;
}
int main(int argc, char **argv) {
    if (argc != 5) return 2;
    FILE *f = fopen(argv[2], "rb"); if (!f) return 3;
    static unsigned char buf[1 << 24]; size_t len = fread(buf, 1, sizeof buf, f); fclose(f);
    enum { MAXF = 65536, BURST = 64 };
    static struct iovec iov[MAXF]; int n = 0;
    for (size_t pos = 0; pos + 4 <= len && n < MAXF; n++) {
        uint32_t l; memcpy(&l, buf + pos, 4);
        iov[n].iov_base = buf + pos + 4; iov[n].iov_len = l; pos += 4 + l;
    }
    int s = socket(AF_PACKET, SOCK_RAW, 0); if (s < 0) return 4;
    int one = 1; setsockopt(s, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    struct sockaddr_ll a = {0}; a.sll_family = AF_PACKET; a.sll_ifindex = if_nametoindex(argv[1]);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) return 5;
    double rate = atof(argv[3]), secs = atof(argv[4]), t0 = now();
    struct mmsghdr m[BURST]; long sent = 0; int next = 0;
    for (;;) {
        double t = now() - t0; if (t >= secs) break;
        if (sent >= rate * t) continue;
        for (int i = 0; i < BURST; i++) {
            memset(&m[i], 0, sizeof m[i]);
            m[i].msg_hdr.msg_iov = &iov[next]; m[i].msg_hdr.msg_iovlen = 1;
            next = (next + 1) % n;
        }
        int r = sendmmsg(s, m, BURST, 0); if (r > 0) sent += r;
    }
    printf("%ld\n", sent); return 0;
}
"""


def build_frames(n_flows: int = 4096) -> tuple[list[bytes], float]:
    """The mix: 45% DNS queries, 25% SYNs to 135/139/445, 15% DNS answers (NXDOMAIN
    for a third of them), 15% irrelevant.

    Returns:
        The frames and the share of them wormwatch should count.
    """
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.packet import raw

    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    words = ("mail", "smtp", "mx", "www", "ns", "cdn", "relay", "api")
    frames: list[bytes] = []
    n_relevant = 0
    for i in range(n_flows):
        host = f"198.51.100.{10 + i % 200}"
        slot = i % 20
        if slot < 9:
            qtype = "MX" if slot == 0 else ("AAAA" if slot == 1 else "A")
            name = f"{words[i % len(words)]}{i}.example{i % 13}.com"
            query = UDP(sport=1024 + i, dport=53) / DNS(
                id=i & 0xFFFF, rd=1, qd=DNSQR(qname=name, qtype=qtype)
            )
            frames.append(raw(eth / IP(src=host, dst="198.51.100.1") / query))
            n_relevant += 1
        elif slot < 14:
            dst = f"203.0.113.{i % 250 + 1}"
            syn = TCP(sport=1024 + i, dport=(135, 139, 445)[i % 3], flags="S")
            if slot == 12:
                v6 = IPv6(src=f"2001:db8::{i % 200 + 10:x}", dst="2001:db8::1")
                packet = eth / v6 / syn
            elif slot == 13:
                packet = eth / Dot1Q(vlan=10) / IP(src=host, dst=dst) / syn
            else:
                packet = eth / IP(src=host, dst=dst) / syn
            frames.append(raw(packet))
            n_relevant += 1
        elif slot < 17:
            answer = UDP(sport=53, dport=1024 + i) / DNS(
                id=i & 0xFFFF, qr=1, rcode=3 if slot == 14 else 0, qd=DNSQR(qname="a.example")
            )
            frames.append(raw(eth / IP(src="198.51.100.1", dst=host) / answer))
            n_relevant += 1
        else:
            ack = TCP(sport=443, dport=1024 + i, flags="A") / (b"x" * 200)
            frames.append(raw(eth / IP(src="198.51.100.1", dst=host) / ack))
    return frames, n_relevant / len(frames)


def pick_sender(workdir: Path) -> tuple[str, Path | None]:
    if shutil.which("tcpreplay"):
        return "tcpreplay", None
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        source = workdir / "send_frames.c"
        source.write_text(SENDER_C)
        binary = workdir / "send_frames"
        subprocess.run([cc, "-O2", "-o", str(binary), str(source)], check=True)
        return "c-sendmmsg", binary
    return "python", None


def send(
    pair: VethPair,
    kind: str,
    binary: Path | None,
    frames_file: Path,
    pcap: Path,
    rate: int,
    seconds: float,
) -> int:
    """Run the sender in the sender namespace; return frames sent."""
    if kind == "tcpreplay":
        loops = max(1, int(rate * seconds) // 4096 + 1)
        argv = [
            "tcpreplay",
            "-i",
            pair.sender_if,
            "--pps",
            str(rate),
            "--loop",
            str(loops),
            "--duration",
            str(int(seconds)),
            str(pcap),
        ]
        out = subprocess.run(
            pair.command(pair.sender_ns, argv), check=True, capture_output=True, text=True
        ).stdout
        for line in out.splitlines():
            if "Actual:" in line:
                return int(line.split()[1])
        return -1
    if kind == "c-sendmmsg" and binary is not None:
        argv = [str(binary), pair.sender_if, str(frames_file), str(rate), str(seconds)]
    else:
        argv = python_m(
            "scripts.bench.live", "_send", pair.sender_if, str(frames_file), str(rate), str(seconds)
        )
    out = subprocess.run(
        pair.command(pair.sender_ns, argv), check=True, capture_output=True, text=True
    ).stdout
    return int(out.split()[-1])


def _python_send(iface: str, path: Path, rate: float, seconds: float) -> None:
    import socket

    from testkit.netns import read_frames

    frames = read_frames(path)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((iface, 0))
        sent, start = 0, time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            if sent >= rate * elapsed:
                continue
            for frame in frames[sent % len(frames) : sent % len(frames) + 64]:
                sock.send(frame)
                sent += 1
    print(sent)


def measure_shipping() -> None:
    """What fanout workers could ship to the parent, per relevant packet: the raw
    filtered frame (what they do) or a decoded event row; and what decoding costs."""
    import multiprocessing

    import numpy as np

    from wormwatch.decode import Decoder, warm_up
    from wormwatch.model import NAME_SLOT, Batch

    from testkit.reference import decode_frame

    frames = [f for f in build_frames()[0] if decode_frame(1, f, 0)[1]]
    sizes = np.array([len(f) for f in frames], np.int32)
    n = len(frames)
    offsets = np.concatenate(([0], np.cumsum(sizes[:-1]))).astype(np.int64)
    batch = Batch(
        np.frombuffer(b"".join(frames), np.uint8),
        np.zeros(n, np.int64),
        offsets,
        sizes,
        sizes.copy(),
        np.ones(n, np.int32),
    )
    warm_up()
    decoder = Decoder()
    raw_b = float(sizes.mean()) + 16
    # ts, 4 address words, kind, dport, qtype, name slot, name length
    event_b = 8 + 4 * 8 + 1 + 2 + 2 + NAME_SLOT + 4
    print(f"per relevant packet: raw frame + meta {raw_b:.0f} B, event row {event_b} B")
    for size in (256, n):
        part = Batch(
            batch.data,
            batch.ts_us[:size],
            batch.offsets[:size],
            batch.caplens[:size],
            batch.wirelens[:size],
            batch.linktypes[:size],
        )
        reps = max(1, 400_000 // size)
        start = time.perf_counter()
        for _ in range(reps):
            decoder.decode(part)
        spent = (time.perf_counter() - start) / (reps * size)
        print(f"decode, batches of {size}: {spent * 1e9:.0f} ns/packet")
    ctx = multiprocessing.get_context("fork")
    for label, per_packet in (("raw", raw_b), ("events", event_b)):
        reader, writer = ctx.Pipe(duplex=False)
        message, count = bytes(int(256 * per_packet)), 10_000
        proc = ctx.Process(target=_pipe_out, args=(writer, message, count))
        start = time.perf_counter()
        proc.start()
        writer.close()
        with contextlib.suppress(EOFError):
            while True:
                reader.recv_bytes()
        proc.join()
        spent = (time.perf_counter() - start) / (count * 256)
        print(f"pipe, {label} batches of 256: {spent * 1e9:.0f} ns/packet (wall, both ends)")


def _pipe_out(conn: Any, message: bytes, count: int) -> None:
    for _ in range(count):
        conn.send_bytes(message)
    conn.close()


class _UntilDrained:
    """Ends the source at the first empty read after SIGUSR1 (the sender finished)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.is_stopping = inner, inner.name, False
        self.is_live = True
        signal.signal(signal.SIGUSR1, self._stop)

    def _stop(self, _signum: int, _frame: object) -> None:
        self.is_stopping = True

    def read_batch(self, max_packets: int) -> Any:
        batch = self.inner.read_batch(max_packets)
        if batch is not None and batch.n == 0 and self.is_stopping:
            return None
        return batch

    def stats(self) -> Any:
        return self.inner.stats()

    def close(self) -> None:
        self.inner.close()


def _capture(iface: str, workers: int, tui: bool) -> None:
    """Inside the capture namespace: the whole pipeline on ``iface``; JSON on stdout."""
    from wormwatch.config import load_config
    from wormwatch.decode import warm_up
    from wormwatch.pipeline import Pipeline
    from wormwatch.source.live import open_capture

    warm_up()
    presenter = None
    if tui:
        from rich.console import Console

        from wormwatch.present.live.tui import TuiPresenter

        class _NoKeys:
            def open(self) -> None: ...
            def restore(self) -> None: ...
            def wait(self, timeout_s: float) -> bool:
                return False

            def read_keys(self) -> list[Any]:
                return []

        screen = Console(file=open(os.devnull, "w"), force_terminal=True, width=140, height=40)  # noqa: SIM115
        presenter = TuiPresenter(console=screen, keys=_NoKeys())
    source = _UntilDrained(open_capture(iface, workers=workers))
    pipeline = Pipeline(load_config(None), source_name=iface, presenter=presenter)
    print("ready", flush=True)
    try:
        result = pipeline.run(source)
    finally:
        source.close()
    stats = source.stats()
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    print(
        json.dumps(
            {
                "kernel_received": stats.kernel_received,
                "kernel_dropped": stats.kernel_dropped,
                "packets": result.final.decode["packets"],
                "events": sum(result.final.decode.get(k, 0) for k in EVENT_COUNTERS),
                "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
                "error": str(result.error) if result.error else None,
            }
        ),
        flush=True,
    )


def run_one(
    pair: VethPair,
    sender: tuple[str, Path | None],
    files: tuple[Path, Path],
    rate: int,
    seconds: float,
    workers: int,
    tui: bool,
) -> dict[str, Any]:
    argv = python_m("scripts.bench.live", "_capture", pair.capture_if, str(workers))
    argv += ["--tui"] if tui else []
    proc = subprocess.Popen(pair.command(pair.capture_ns, argv), stdout=subprocess.PIPE, text=True)
    try:
        wait_for_line(proc, "ready", 60)
        cpu_before = _cpu_s(proc.pid)
        n_sent = send(pair, sender[0], sender[1], files[0], files[1], rate, seconds)
        proc.send_signal(signal.SIGUSR1)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result.update(rate=rate, workers=workers, sent=n_sent)
    result["cpu_s"] -= cpu_before
    return result


def _cpu_s(pid: int) -> float:
    """CPU seconds ``pid`` has used so far (start-up, before traffic)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# title, width, value of a result row
COLUMNS: tuple[tuple[str, int, Callable[[dict[str, Any]], str]], ...] = (
    ("workers", 7, lambda r: str(r["workers"])),
    ("rate/s", 8, lambda r: str(r["rate"])),
    ("relevant/s", 10, lambda r: str(r["relevant_rate"])),
    ("sent", 9, lambda r: str(r["sent"])),
    ("sent/s", 8, lambda r: f"{r['sent'] / r['seconds']:.0f}"),
    ("kernel rx", 9, lambda r: str(r["kernel_received"])),
    ("k.drop", 7, lambda r: str(r["kernel_dropped"])),
    ("counted", 9, lambda r: str(r["packets"])),
    ("events", 9, lambda r: str(r["events"])),
    ("cpu s", 6, lambda r: f"{r['cpu_s']:.2f}"),
    ("cpu %", 6, lambda r: f"{100 * r['cpu_s'] / r['seconds']:.1f}"),
)


def _row_text(row: dict[str, Any]) -> str:
    text = " ".join(f"{value(row):>{width}}" for _, width, value in COLUMNS)
    return text + (f"  error: {row['error']}" if row["error"] else "")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_capture":
        _capture(argv[1], int(argv[2]), "--tui" in argv)
        return 0
    if argv and argv[0] == "_send":
        _python_send(argv[1], Path(argv[2]), float(argv[3]), float(argv[4]))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rates",
        default="100000,200000,300000,430000,600000",
        help="frames/s sent, comma-separated",
    )
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0, help="traffic per rate")
    parser.add_argument("--tui", action="store_true", help="draw the live table (to /dev/null)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument(
        "--shipping", action="store_true", help="only measure raw-frame vs event shipping"
    )
    args = parser.parse_args(argv)
    if args.shipping:
        measure_shipping()
        return 0
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, raw sockets)")
    frames, share = build_frames()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, veth_pair(Path(tmp)) as pair:
        work = Path(tmp)
        files = (work / "frames.bin", work / "frames.pcap")
        write_frames(files[0], frames)
        pcap.write_frames(files[1], [(i, f) for i, f in enumerate(frames)])
        sender = pick_sender(work)
        display = "on" if args.tui else "off"
        print(f"sender: {sender[0]}; relevant share of the mix: {share:.2f}; ", end="")
        print(f"{args.seconds:g} s per rate; display {display}")
        print(" ".join(f"{title:>{width}}" for title, width, _ in COLUMNS))
        for workers in (int(w) for w in args.workers.split(",")):
            for rate in (int(r) for r in args.rates.split(",")):
                row = run_one(pair, sender, files, rate, args.seconds, workers, args.tui)
                row.update(relevant_rate=int(rate * share), seconds=args.seconds)
                rows.append(row)
                print(_row_text(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
