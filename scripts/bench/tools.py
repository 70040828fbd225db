"""Measuring helpers and the two references of the replay benchmark: tcpdump and dpkt.

Place in the flow: beside ``scripts/bench/replay.py``, which times wormwatch; this
module runs child processes with their own rusage (wall time, peak RSS), and
times the same file through ``tcpdump -r`` with the project's BPF filter and
through a plain dpkt loop doing wormwatch's counting (per source host: DNS
queries by qtype, keyword queries, SYNs without ACK per port 135/139/445).
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dpkt

KEYWORDS = ("mail", "smtp", "mx", "ns", "gate", "relay")  # wormwatch's default set
# Used when wormwatch.source.bpf is not importable: the same clauses, spelled out
# (DNS to 53 over UDP, TCP to 53 with payload, SYN without ACK to 135/139/445,
# IPv4 and IPv6, zero to two VLAN tags).
_CLAUSE = (
    "(udp dst port 53 or (ip and tcp dst port 53 and ip[2:2] - ((ip[0] & 0xf) << 2)"
    " - ((tcp[12] & 0xf0) >> 2) != 0) or (ip6 and tcp dst port 53 and ip6[4:2]"
    " - ((ip6[52] & 0xf0) >> 2) != 0) or (ip and tcp[tcpflags] & (tcp-syn|tcp-ack) =="
    " tcp-syn and (tcp dst port 135 or tcp dst port 139 or tcp dst port 445)) or (ip6"
    " and ip6[6] == 6 and ip6[53] & 0x12 == 0x02 and (tcp dst port 135 or tcp dst port 139"
    " or tcp dst port 445)))"
)
FALLBACK_FILTER = f"{_CLAUSE} or (vlan and ({_CLAUSE} or (vlan and {_CLAUSE})))"


@dataclass(slots=True)
class Row:
    """One line of the result table."""

    name: str
    packets: int
    seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else float("nan")


@dataclass(slots=True)
class ChildRun:
    """A finished child process: wall time, peak RSS, exit code, output."""

    wall_s: float
    max_rss_mb: float
    returncode: int
    stderr: str


def run_child(cmd: Sequence[str], env: dict[str, str] | None = None) -> ChildRun:
    """Runs ``cmd`` and measures it with ``wait4`` (this child's own rusage only)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
    # ru_maxrss is in kilobytes on Linux
    return ChildRun(wall, usage.ru_maxrss / 1024, proc.returncode, text)


# --- the references ------------------------------------------------------------------


def bpf_filter() -> tuple[str, str]:
    """(filter text, where it came from)."""
    try:
        from wormwatch.source.bpf import default_filter
    except ImportError as err:
        return FALLBACK_FILTER, f"literal fallback (wormwatch.source.bpf: {err})"
    return default_filter(), "wormwatch.source.bpf.default_filter()"


def count_pcap_records(path: Path) -> int:
    """Records in a little-endian microsecond pcap (what tcpdump -w writes here)."""
    data = path.read_bytes()
    pos, n = 24, 0
    while pos + 16 <= len(data):
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
        n += 1
    return n


def tcpdump_row(path: Path, n: int, repeat: int, tmp: Path) -> tuple[Row | None, str]:
    """tcpdump -r with the project's filter, timed; and how many packets it passed."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        return None, "tcpdump not installed: row skipped (apt-get install tcpdump)"
    expr, origin = bpf_filter()
    out = tmp / "tcpdump-matched.pcap"
    check = run_child([tcpdump, "-r", str(path), "-w", str(out), expr])
    if check.returncode != 0:
        return None, f"tcpdump failed: {check.stderr.strip()[-300:]}"
    matched = count_pcap_records(out)
    out.unlink()
    times = [
        run_child([tcpdump, "-r", str(path), "-w", os.devnull, expr]).wall_s for _ in range(repeat)
    ]
    row = Row("tcpdump -r FILE -w /dev/null BPF", n, min(times), f"passed {matched:,}")
    return row, f"filter: {origin}; tcpdump passed {matched:,} packets"


def _dns_queries(payload: bytes, is_tcp: bool) -> list[tuple[int, str]]:
    """(qtype, name) of each DNS query in a UDP payload or TCP segment (2-byte prefixes)."""
    messages = []
    if is_tcp:
        pos = 0
        while pos + 2 <= len(payload):
            size = struct.unpack_from("!H", payload, pos)[0]
            messages.append(payload[pos + 2 : pos + 2 + size])
            pos += 2 + size
    else:
        messages.append(payload)
    out = []
    for message in messages:
        try:
            dns = dpkt.dns.DNS(message)
        except (dpkt.UnpackError, IndexError, UnicodeDecodeError):
            continue
        if dns.qr == dpkt.dns.DNS_Q and dns.opcode == dpkt.dns.DNS_QUERY:
            out.append((dns.qd[0].type, dns.qd[0].name) if dns.qd else (0, ""))
    return out


def dpkt_count(path: Path, limit: int) -> tuple[int, dict[str, Counter[str]]]:
    """A plain dpkt loop doing the pipeline's counting: per source host, DNS queries
    by qtype (and keyword queries), SYNs without ACK per port 135/139/445."""
    qtype_names = {1: "A", 28: "AAAA", 15: "MX", 12: "PTR"}
    hosts: dict[str, Counter[str]] = defaultdict(Counter)
    n = 0
    with path.open("rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            if n == limit:
                break
            n += 1
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP):
                family = socket.AF_INET
            elif isinstance(ip, dpkt.ip6.IP6):
                family = socket.AF_INET6
            else:
                continue
            src = socket.inet_ntop(family, ip.src)
            l4 = ip.data
            is_tcp = isinstance(l4, dpkt.tcp.TCP)
            if not (is_tcp or isinstance(l4, dpkt.udp.UDP)):
                continue
            if is_tcp and l4.flags & dpkt.tcp.TH_SYN and not l4.flags & dpkt.tcp.TH_ACK:
                if l4.dport in (135, 139, 445):
                    hosts[src][str(l4.dport)] += 1
                    hosts[src]["target " + socket.inet_ntop(family, ip.dst)] = 1
                continue
            if l4.dport != 53 or not l4.data:
                continue
            for qtype, name in _dns_queries(bytes(l4.data), is_tcp):
                counts = hosts[src]
                counts["total"] += 1
                counts[qtype_names.get(qtype, "other")] += 1
                counts["keyword"] += name.lower().split(".", 1)[0].startswith(KEYWORDS)
    return n, hosts


def dpkt_as_summary(hosts: dict[str, Counter[str]]) -> dict[str, dict[str, Any]]:
    """dpkt counts in the shape of the generator's per-host bookkeeping."""
    out = {}
    for addr, c in hosts.items():
        out[addr] = {
            "queries": {k: c[k] for k in ("total", "A", "AAAA", "MX", "PTR", "other")},
            "keyword_queries": c["keyword"],
            "syn": {p: c[p] for p in ("135", "139", "445")},
            "syn_targets": sum(1 for k in c if k.startswith("target ")),
        }
    return out
