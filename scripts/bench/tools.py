"""Measuring helpers and the two references of the replay benchmark: tcpdump and dpkt.

Place in the flow: beside ``scripts/bench/replay.py``, which times wormwatch; this
module runs child processes with their own rusage (wall time, peak RSS), and
times the same file through ``tcpdump -r`` with the project's BPF filter and
through the project's dpkt reference decoder (``testkit.reference``) doing
wormwatch's counting (per source host: DNS queries by qtype, keyword queries,
SYNs without ACK per port 135/139/445).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.bench.bulk import as_book
from testkit.pcap import read_records
from testkit.reference import RefDecoder, host_counts

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
    cpu_s: float = 0.0  # user + system, the child and the children it waited for


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
    cpu = usage.ru_utime + usage.ru_stime
    return ChildRun(wall, usage.ru_maxrss / 1024, proc.returncode, text, cpu)


# --- the references ------------------------------------------------------------------


def bpf_filter() -> tuple[str, str]:
    """(filter text, where it came from)."""
    try:
        from wormwatch.source.bpf import default_filter
    except ImportError as err:
        return FALLBACK_FILTER, f"literal fallback (wormwatch.source.bpf: {err})"
    return default_filter(), "wormwatch.source.bpf.default_filter()"


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
    matched = sum(1 for _ in read_records(out))
    out.unlink()
    times = [
        run_child([tcpdump, "-r", str(path), "-w", os.devnull, expr]).wall_s for _ in range(repeat)
    ]
    row = Row("tcpdump -r FILE -w /dev/null BPF", n, min(times), f"passed {matched:,}")
    return row, f"filter: {origin}; tcpdump passed {matched:,} packets"


def dpkt_count(path: Path, limit: int) -> tuple[int, dict[str, dict[str, int]]]:
    """The project's dpkt reference decoder (testkit.reference, docs/DECODING.md line
    by line) over the first ``limit`` records: per source host, DNS queries by qtype
    (and keyword queries), SYNs without ACK per port 135/139/445, distinct targets."""
    ref = RefDecoder()
    events = []
    n = 0
    for ts_us, linktype, _wirelen, frame in read_records(path):
        if n == limit:
            break
        n += 1
        events.extend(ref.decode(linktype, frame, ts_us)[1])
    return n, host_counts(events)


def dpkt_as_summary(hosts: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    """Reference counts in the shape of the generator's per-host bookkeeping."""
    return {addr: as_book(counts) for addr, counts in hosts.items()}
