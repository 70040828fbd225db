"""Outputs of `wormwatch live` across the privilege drop, log rotation and metrics
(root only, in network namespaces made for the test).

As the operator in issue #14 does it: root makes a folder (mode 755) and runs the
sensor, which drops to ``nobody`` once the capture is open. Files are opened before
the drop and keep working; a periodic summary that ``nobody`` could not rename into
place stops the run before anything is captured, with one line that says why and
what to do. SIGHUP after a rename (logrotate) moves the next records to a new file,
losing none. /metrics, scraped over HTTP inside the namespace, counts exactly what
the dpkt reference counts in the frames sent.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import raw

from wormwatch.model import KIND_DNS, LINKTYPE_ETHERNET

from testkit.netns import VethPair, can_use_netns, veth_pair, wait_while_running
from testkit.paths import REPO
from testkit.reference import decode_frame

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(can_use_netns() is not None, reason=str(can_use_netns())),
]

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
METRICS_PORT = 9109
_SCRAPE = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[VethPair]:
    with veth_pair(tmp_path) as made:
        yield made


@pytest.fixture
def base() -> Iterator[Path]:
    """A folder every user can traverse (pytest's own tmp_path is root's, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="wormwatch-outputs-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def traffic(first: int, count: int) -> list[bytes]:
    """DNS queries of several types and SYNs to 135/139/445 from three hosts."""
    frames = []
    for i in range(first, first + count):
        host = f"198.51.100.{11 + i % 3}"
        qtype = ("A", "MX", "AAAA", "TXT")[i % 4]
        query = UDP(sport=20000 + i, dport=53) / DNS(id=i, qd=DNSQR(qname=f"mail{i}.example"))
        query[DNSQR].qtype = qtype
        frames.append(raw(ETH / IP(src=host, dst="198.51.100.53") / query))
        syn = TCP(sport=30000 + i, dport=(135, 139, 445)[i % 3], flags="S")
        frames.append(raw(ETH / IP(src=host, dst=f"198.51.100.{100 + i % 50}") / syn))
    return frames


def _events(frames: list[bytes]) -> list:
    return [e for f in frames for e in decode_frame(LINKTYPE_ETHERNET, f, 0)[1]]


def _start(
    pair: VethPair, *options: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "wormwatch", "live", "-i", pair.capture_if, "--no-tui"]
    return subprocess.Popen(
        pair.command(pair.capture_ns, [*argv, "--duration", "120", *options]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _scrape(pair: VethPair) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
    done = subprocess.run(
        pair.command(pair.capture_ns, [sys.executable, "-c", _SCRAPE, url]),
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(done.stdout)
        for s in family.samples
    }


def _counted(pair: VethPair) -> int:
    """Events the running sensor has counted, by its metrics (-1 before its loop runs)."""
    values = _scrape(pair)
    if ("wormwatch_packets_total", ()) not in values:
        return -1
    return int(sum(v for (n, _), v in values.items() if n == "wormwatch_events_total"))


def _by(values: dict, name: str, label: str) -> dict[str, float]:
    """Non-zero samples of ``name`` by ``label``."""
    return {dict(k)[label]: v for (n, k), v in values.items() if n == name and v}


def _lines(*paths: Path) -> list[dict]:
    out = []
    for path in paths:
        for line in path.read_text().splitlines():
            out.append(json.loads(line))
    return out


def _uid(pid: int) -> int:
    """Effective uid of ``pid`` (``ip netns exec`` execs the sensor in its place)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Uid:\s+\d+\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]


def _run_with_rotation(
    pair: VethPair,
    proc: subprocess.Popen[str],
    first: list[bytes],
    second: list[bytes],
    rotate: Callable[[], None],
) -> tuple[dict, str]:
    """Send ``first``, ``rotate()`` and SIGHUP, send ``second``; once all is counted,
    scrape the metrics and stop the sensor. Returns the metrics and its stderr."""
    try:
        wait_while_running(proc, lambda: _counted(pair) >= 0, 60, "the sensor's loop")
        pair.send(first)
        wait_while_running(
            proc, lambda: _counted(pair) >= len(_events(first)), 60, "the first half"
        )
        rotate()
        proc.send_signal(signal.SIGHUP)
        pair.send(second)
        n_all = len(_events(first + second))
        wait_while_running(proc, lambda: _counted(pair) >= n_all, 60, "the second half")
        values = _scrape(pair)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return values, stderr


def test_periodic_summary_nobody_cannot_rename_stops_before_capturing(
    pair: VethPair, base: Path
) -> None:
    srv = base / "srv"
    srv.mkdir(mode=0o755)
    os.chmod(srv, 0o755)
    summary = srv / "hosts.jsonl"
    proc = _start(
        pair, "--summary", str(summary), "--summary-every", "60", "--metrics", str(METRICS_PORT)
    )
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2
    (line,) = stderr.splitlines()
    assert line.startswith(f"wormwatch: error: --summary-every rewrites {summary} by renaming")
    assert "user nobody (the sensor drops to it after opening the capture) cannot" in line
    assert f"into {srv}, but" in line
    assert "--user" in line
    assert f"install -d -o nobody {srv}" in line
    assert "LogsDirectory=" in line
    # nothing was started: no metrics endpoint, no file
    assert list(srv.iterdir()) == []


def test_a_summary_in_a_sticky_folder_owned_by_root(pair: VethPair, base: Path) -> None:
    """A 1777 folder (as /tmp) holding root's hosts.jsonl: nobody may create files
    there but not rename over root's. A periodic summary stops before capturing,
    with one line; one written at the end goes through a descriptor kept from
    before the drop (it was a PermissionError traceback at the end, and with
    --summary-every the sensor died at its first rewrite)."""
    srv = base / "sticky"
    srv.mkdir()
    os.chmod(srv, 0o1777)
    summary = srv / "hosts.jsonl"
    summary.write_text('{"old": 1}\n')
    proc = _start(pair, "--summary", str(summary), "--summary-every", "60")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2
    (line,) = stderr.splitlines()
    assert f"{srv} is sticky and {summary} belongs to another user" in line
    assert sorted(p.name for p in srv.iterdir()) == ["hosts.jsonl"]
    proc = _start(pair, "--summary", str(summary), "--duration", "2")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert stderr == ""
    assert summary.stat().st_uid == 0
    assert summary.read_text().splitlines()[-1].startswith('{"schema":1,"event_type":"network"')


@pytest.mark.parametrize("names", [("SIGHUP", "SIGTERM"), ("SIGTERM",)])
def test_signals_while_the_sensor_starts_end_it_cleanly(
    pair: VethPair, base: Path, names: tuple[str, ...]
) -> None:
    """A service reloaded (SIGHUP) and stopped just after it started: the signals come
    once its outputs are open, while it compiles its kernels into an empty cache
    (seconds). It ends as a sensor stopped in its loop does: exit 0, its summary
    written, nothing captured. It died of the signal (exit -1 or -15, no summary),
    which systemd counts as clean for SIGHUP: no restart."""
    nobody = pwd.getpwnam("nobody")
    srv = base / "logs"
    srv.mkdir()
    os.chown(srv, nobody.pw_uid, nobody.pw_gid)
    alerts, summary = srv / "alerts.jsonl", srv / "hosts.jsonl"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(base / "numba")}
    proc = _start(pair, "--alerts", str(alerts), "--summary", str(summary), env=env)
    try:
        wait_while_running(proc, alerts.exists, 60, "the outputs to open")
        for name in names:
            proc.send_signal(getattr(signal, name))
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert stderr == ""
    (network,) = _lines(summary)
    assert network["event_type"] == "network"
    assert network["decode"]["packets"] == 0
    assert alerts.read_text() == ""


def test_outputs_survive_the_drop_and_rotate(pair: VethPair, base: Path) -> None:
    """Root-owned 755 folder: alerts, events and a summary written once at the end
    all work as nobody (descriptors kept); SIGHUP after logrotate's rename and
    ``create`` moves the next events to the new file; /metrics counts exactly."""
    srv = base / "srv"
    srv.mkdir()
    os.chmod(srv, 0o755)
    events, alerts, summary = srv / "events.jsonl", srv / "alerts.jsonl", srv / "hosts.jsonl"
    proc = _start(
        pair, "--events", str(events), "--alerts", str(alerts), "--summary", str(summary),
        "--metrics", str(METRICS_PORT),
    )  # fmt: skip
    nobody = pwd.getpwnam("nobody")
    first, second = traffic(0, 60), traffic(60, 60)
    want = _events(first + second)

    def logrotate() -> None:
        assert _uid(proc.pid) == nobody.pw_uid
        # logrotate: rename, then `create 0644 nobody nogroup`, then postrotate's SIGHUP
        events.rename(srv / "events.jsonl.1")
        events.touch()
        os.chown(events, nobody.pw_uid, nobody.pw_gid)

    values, stderr = _run_with_rotation(pair, proc, first, second, logrotate)
    assert proc.returncode == 0, stderr
    for path in (events, srv / "events.jsonl.1", alerts, summary):
        assert path.stat().st_uid == nobody.pw_uid, path
    old, new = _lines(srv / "events.jsonl.1"), _lines(events)
    assert len(old) == len(_events(first))
    assert len(new) == len(_events(second))
    assert [e["src_port"] for e in old + new] == [
        20000 + i if k == 0 else 30000 + i for i in range(120) for k in (0, 1)
    ]
    hosts = {r["src_ip"]: r for r in _lines(summary) if r["event_type"] == "host"}
    assert sum(h["queries"]["total"] for h in hosts.values()) == 120
    # metrics: exactly the reference's counts, no drops
    names = {1: "A", 15: "MX", 28: "AAAA", 16: "TXT"}
    qtypes = Counter(names[e.qtype] for e in want if e.kind == KIND_DNS)
    ports = Counter(str(e.dport) for e in want if e.kind != KIND_DNS)
    assert _by(values, "wormwatch_dns_queries_total", "qtype") == qtypes
    assert _by(values, "wormwatch_syns_total", "port") == ports
    assert values["wormwatch_kernel_dropped_packets_total", ()] == 0
    assert values["wormwatch_kernel_received_packets_total", ()] >= len(first + second)
    assert values["wormwatch_hosts_tracked", ()] == 3
    assert values["wormwatch_event_log_lines_total", ()] == len(want)
    assert 0 <= values["wormwatch_batch_lag_seconds", ()] < 60


def test_rotation_in_a_folder_nobody_owns(pair: VethPair, base: Path) -> None:
    """LogsDirectory=-style folder: the periodic summary works, and after a rename
    and SIGHUP the sensor (as nobody) creates the new events file; two fanout
    workers report their health."""
    nobody = pwd.getpwnam("nobody")
    srv = base / "logs"
    srv.mkdir()
    os.chown(srv, nobody.pw_uid, nobody.pw_gid)
    events, summary = srv / "events.jsonl", srv / "hosts.jsonl"
    proc = _start(
        pair, "--events", str(events), "--summary", str(summary), "--summary-every", "0.2",
        "--metrics", str(METRICS_PORT), "--workers", "2",
    )  # fmt: skip
    first, second = traffic(0, 30), traffic(30, 30)
    values, stderr = _run_with_rotation(
        pair, proc, first, second, lambda: events.rename(srv / "events.jsonl.1")
    )
    assert proc.returncode == 0, stderr
    assert "warning" not in stderr
    assert events.stat().st_uid == nobody.pw_uid
    assert len(_lines(srv / "events.jsonl.1")) == len(_events(first))
    assert len(_lines(events)) == len(_events(second))
    assert summary.stat().st_uid == nobody.pw_uid
    assert not (srv / "hosts.jsonl.tmp").exists()
    assert _by(values, "wormwatch_worker_up", "worker") == {"0": 1.0, "1": 1.0}
    per_worker = _by(values, "wormwatch_worker_kernel_received_packets_total", "worker")
    assert sum(per_worker.values()) == values["wormwatch_kernel_received_packets_total", ()]
    assert sum(per_worker.values()) >= len(first + second)


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate not installed")
def test_logrotate_with_the_shipped_directives(pair: VethPair, base: Path) -> None:
    """logrotate itself, with contrib/logrotate's directives (create, postrotate
    SIGHUP), on a running sensor that dropped to nobody: nothing lost."""
    srv = base / "log"
    srv.mkdir()
    os.chmod(srv, 0o755)
    events, alerts = srv / "events.jsonl", srv / "alerts.jsonl"
    proc = _start(
        pair, "--events", str(events), "--alerts", str(alerts), "--metrics", str(METRICS_PORT)
    )  # fmt: skip
    shipped = (REPO / "contrib" / "logrotate" / "wormwatch").read_text()
    config = base / "logrotate.conf"
    config.write_text(
        shipped.replace("/var/log/wormwatch", str(srv))
        .replace("create 0640 wormwatch wormwatch", "create 0640 nobody nogroup")
        .replace("systemctl reload wormwatch.service", f"kill -HUP {proc.pid}")
    )

    def logrotate() -> None:
        done = subprocess.run(
            ["logrotate", "-f", "-s", str(base / "state"), str(config)],
            check=False, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    first, second = traffic(0, 40), traffic(40, 40)
    _, stderr = _run_with_rotation(pair, proc, first, second, logrotate)
    assert proc.returncode == 0, stderr
    assert len(_lines(srv / "events.jsonl.1")) == len(_events(first))
    assert len(_lines(events)) == len(_events(second))
    assert events.stat().st_uid == pwd.getpwnam("nobody").pw_uid
