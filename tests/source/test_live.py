"""Live capture on a real interface, in network namespaces made for the test (root only).

Frames crafted with scapy are sent on a raw socket from one end of a veth pair;
``open_capture`` runs on the other end in its own process (testkit/netns.py).
What the capture hands on must be exactly the relevant frames sent (the
reference decoder says which are relevant), byte for byte, tags included, with
one handle and with two fanout workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, raw
from scapy.utils import wrpcap

from wormwatch.errors import WormwatchError
from wormwatch.model import KIND_DNS, LINKTYPE_ETHERNET
from wormwatch.source.live import open_capture

from testkit.netns import CaptureRun, VethPair, can_use_netns, veth_pair, wait_while_running
from testkit.reference import decode_frame

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(can_use_netns() is not None, reason=str(can_use_netns())),
]

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
V4 = IP(src="198.51.100.1", dst="198.51.100.2")
V4_VLAN = IP(src="203.0.113.1", dst="203.0.113.2")
V6 = IPv6(src="2001:db8::1", dst="2001:db8::2")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[VethPair]:
    with veth_pair(tmp_path) as made:
        yield made


def _query(name: str, qtype: str = "A", sport: int = 33000) -> Packet:
    return UDP(sport=sport, dport=53) / DNS(
        id=sport & 0xFFFF, rd=1, qd=DNSQR(qname=name, qtype=qtype)
    )


def _tcp_query(name: str) -> Packet:
    body = raw(DNS(id=9, rd=1, qd=DNSQR(qname=name, qtype="MX")))
    return TCP(sport=40053, dport=53, flags="PA") / (len(body).to_bytes(2, "big") + body)


def traffic() -> list[bytes]:
    """A keyword storm, an MX client and a scanner over IPv4, IPv6, VLAN and QinQ,
    mixed with traffic the filter must drop."""
    frames: list[Packet] = []
    for i in range(40):
        frames.append(ETH / V4 / _query(f"mail{i}.example.com", sport=33000 + i))
        frames.append(ETH / V6 / _query(f"smtp{i}.example.net", "AAAA", sport=34000 + i))
        frames.append(ETH / Dot1Q(vlan=10) / V4_VLAN / _query(f"mx{i}.example.org", "MX"))
        frames.append(ETH / V4 / TCP(sport=41000 + i, dport=445, flags="S"))
        frames.append(ETH / V6 / TCP(sport=41000 + i, dport=135, flags="S"))
        frames.append(ETH / Dot1Q(vlan=10) / V4_VLAN / TCP(sport=42000 + i, dport=139, flags="S"))
        frames.append(ETH / Dot1AD(vlan=20) / Dot1Q(vlan=10) / V6 / TCP(dport=445, flags="S"))
        # what the filter must not pass: responses, SYN+ACK, SYN to 80, plain ACKs
        frames.append(ETH / V4 / UDP(sport=53, dport=33000 + i) / DNS(id=i, qr=1))
        frames.append(ETH / V4 / TCP(sport=445, dport=41000 + i, flags="SA"))
        frames.append(ETH / V6 / TCP(dport=80, flags="S"))
        frames.append(ETH / Dot1Q(vlan=10) / V4_VLAN / TCP(dport=445, flags="A"))
    frames.append(ETH / V4 / _tcp_query("mail.example.com"))
    frames.append(ETH / Dot1Q(vlan=10) / V6 / _tcp_query("relay.example.com"))
    return [raw(frame) for frame in frames]


def _relevant(frames: list[bytes]) -> list[bytes]:
    return [f for f in frames if decode_frame(LINKTYPE_ETHERNET, f, 0)[1]]


def _kinds(frames: list[bytes], linktype: int = LINKTYPE_ETHERNET) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for frame in frames:
        for event in decode_frame(linktype, frame, 0)[1]:
            kind = f"dns-{event.qtype}" if event.kind == KIND_DNS else f"syn-{event.dport}"
            kinds[f"{kind}-v{6 if ':' in event.src else 4}"] += 1
    return kinds


def _capture(pair: VethPair, frames: list[bytes], *options: str, iface: str = "") -> dict:
    run = CaptureRun(
        pair, iface or pair.capture_if, "--expect", str(len(_relevant(frames))), *options
    )
    run.wait_ready()
    pair.send(frames)
    return run.result()


def _link_down(pair: VethPair) -> None:
    subprocess.run(
        ["ip", "-n", pair.capture_ns, "link", "set", pair.capture_if, "down"], check=True
    )


def _captured(result: dict) -> list[tuple[int, bytes]]:
    assert "error" not in result, result.get("error")
    return [(linktype, bytes.fromhex(text)) for linktype, text in result["frames"]]


@pytest.mark.parametrize("workers", [1, 2])
def test_capture_passes_exactly_the_relevant_frames(pair: VethPair, workers: int) -> None:
    sent = traffic()
    result = _capture(pair, sent, "--workers", str(workers))
    captured = _captured(result)
    assert {linktype for linktype, _ in captured} == {LINKTYPE_ETHERNET}
    frames = [frame for _, frame in captured]
    wanted = _relevant(sent)
    # IPv6 control traffic of the veth itself (MLD reports carry a hop-by-hop
    # header, which the filter admits for the decoder) is ignored by the decoder.
    assert sorted(_relevant(frames)) == sorted(wanted)
    assert not set(frames) & (set(sent) - set(wanted)), "the filter passed an irrelevant frame"
    kinds = _kinds(frames)
    assert kinds == _kinds(wanted)
    assert kinds["syn-445-v6"] == 40
    assert kinds["dns-15-v4"] == 41
    assert result["kernel_received"] >= len(wanted)
    assert result["kernel_dropped"] == 0
    # The interface's own rx_dropped: here the QinQ frames no VLAN device accepted.
    assert isinstance(result["interface_dropped"], int)
    assert result["packets"] == len(frames)


def test_any_interface_uses_cooked_capture(pair: VethPair) -> None:
    sent = [f for f in traffic() if f[12:14] != b"\x81\x00" and f[12:14] != b"\x88\xa8"]
    result = _capture(pair, sent, iface="any")
    captured = _captured(result)
    linktypes = {linktype for linktype, _ in captured}
    assert linktypes
    assert linktypes <= {113, 276}
    relevant = [(lt, f) for lt, f in captured if decode_frame(lt, f, 0)[1]]
    kinds: Counter[str] = Counter()
    for linktype, frame in relevant:
        kinds += _kinds([frame], linktype)
    assert kinds == _kinds(_relevant(sent))


@pytest.mark.parametrize("workers", [1, 2])
def test_privileges_are_dropped_before_reading(pair: VethPair, workers: int) -> None:
    sent = traffic()[:22]
    result = _capture(pair, sent, "--user", "nobody", "--workers", str(workers))
    nobody = pwd.getpwnam("nobody").pw_uid
    assert result["user"] == "nobody"
    assert result["uid"] == nobody
    # fanout workers are forked at the first read, after the drop
    assert result["worker_uids"] == ([nobody] * workers if workers > 1 else [])
    assert sorted(_relevant([f for _, f in _captured(result)])) == sorted(_relevant(sent))


def test_unknown_user_is_one_clear_error(pair: VethPair) -> None:
    run = CaptureRun(pair, pair.capture_if, "--user", "no-such-user-ww")
    run.wait_ready()
    assert run.result()["error"].startswith("--user no-such-user-ww: no such user")


@pytest.mark.parametrize(
    ("sizes", "phrase"),
    [
        ({"buffer_mb": 2048}, "--buffer-mb 1 to 2047"),
        ({"snaplen": 300_000}, "--snaplen must be 96 to 262144"),
        ({"workers": 5000}, "--workers 5000: need 1 to 64"),
    ],
    ids=["ring-of-2-GiB", "snaplen", "workers"],
)
def test_sizes_libpcap_cannot_take_are_one_clear_error(sizes: dict[str, int], phrase: str) -> None:
    # refused before any interface is looked up (2 GiB gave an OverflowError traceback,
    # 5,000 workers a ring each until the kernel's out-of-memory killer came)
    with pytest.raises(WormwatchError) as err:
        open_capture("nope0", **sizes)  # type: ignore[arg-type]
    assert phrase in str(err.value)


def test_missing_interface_lists_the_available_ones(pair: VethPair) -> None:
    run = CaptureRun(pair, "nope0")
    run.wait_ready()
    error = run.result()["error"]
    assert error.startswith("no interface 'nope0'; available: ")
    assert pair.capture_if in error


def test_no_permission_says_what_to_do(pair: VethPair) -> None:
    run = CaptureRun(pair, pair.capture_if, "--drop-first")
    run.wait_ready()
    error = run.result()["error"]
    assert error.startswith(f"no permission to capture on {pair.capture_if}: run as root")
    assert "CAP_NET_RAW" in error
    assert "docs/LIVE.md" in error


def test_interface_that_is_down_cannot_be_opened(pair: VethPair) -> None:
    subprocess.run(
        ["ip", "-n", pair.capture_ns, "link", "set", pair.capture_if, "down"], check=True
    )
    run = CaptureRun(pair, pair.capture_if)
    run.wait_ready()
    assert run.result()["error"] == (
        f"interface {pair.capture_if} is down: bring it up (ip link set {pair.capture_if} up)"
    )


def test_filter_that_does_not_compile_is_one_clear_error(pair: VethPair) -> None:
    run = CaptureRun(pair, pair.capture_if, "--bpf", "port 53 and and")
    run.wait_ready()
    assert run.result()["error"].startswith("BPF filter does not compile: ")


def test_operator_filter_narrows_live_capture(pair: VethPair) -> None:
    sent = traffic()
    only = [f for f in _relevant(sent) if decode_frame(1, f, 0)[1][0].src == "198.51.100.1"]
    run = CaptureRun(
        pair, pair.capture_if, "--expect", str(len(only)), "--bpf", "src host 198.51.100.1"
    )
    run.wait_ready()
    pair.send(sent)
    frames = [f for _, f in _captured(run.result())]
    assert sorted(_relevant(frames)) == sorted(only)


@pytest.mark.parametrize("workers", [1, 2])
def test_interface_going_down_is_one_clear_error(pair: VethPair, workers: int) -> None:
    run = CaptureRun(pair, pair.capture_if, "--expect", "1", "--workers", str(workers))
    run.wait_ready()
    subprocess.run(
        ["ip", "-n", pair.capture_ns, "link", "set", pair.capture_if, "down"], check=True
    )
    error = run.result()["error"]
    assert f"capture on {pair.capture_if} stopped" in error
    assert "went down" in error


# --- end to end: `wormwatch live` against `wormwatch replay` of the same packets ----------

E2E_CONFIG = """
[aggregate]
bin_s = 60

[detect.keyword_storm]
min_keyword_queries = 20
min_rate_per_min = 1.0
min_distinct_names = 10
min_active_bins = 1

[detect.mx_client]
min_mx_queries = 5
min_domains = 3

[detect.smb_scan]
min_targets = 10
"""
# What a host record says that depends on the order packets arrived in: with
# fanout, one host's flows reach the parent through different workers.
ORDER_DEPENDENT = ("sample_names", "sample_mx_names", "evidence")
FLAGGED = {"198.51.100.11", "198.51.100.12", "198.51.100.13", "2001:db8::13"}


def scenario() -> list[bytes]:
    """A keyword storm, an MX client, a scanner over IPv4 and IPv6 (some of it
    tagged), an ordinary client, and traffic the sensor must not count."""
    storm = IP(src="198.51.100.11", dst="198.51.100.53")
    mx_client = IP(src="198.51.100.12", dst="198.51.100.53")
    client = IP(src="198.51.100.14", dst="198.51.100.53")
    scanner6 = "2001:db8::13"
    words = ("mail", "smtp", "mx", "relay", "gate")
    frames: list[Packet] = []
    for i in range(60):
        tag = Dot1Q(vlan=10) if i % 3 == 0 else None
        query = storm / _query(f"{words[i % 5]}{i}.example{i % 7}.com", sport=20000 + i)
        frames.append(ETH / tag / query if tag else ETH / query)
    for i in range(12):
        frames.append(ETH / Dot1Q(vlan=10) / mx_client / _query(f"d{i % 4}.example", "MX"))
    for i in range(30):
        syn = TCP(sport=30000 + i, dport=445, flags="S")
        frames.append(ETH / IP(src="198.51.100.13", dst=f"198.51.100.{100 + i}") / syn)
        v6 = IPv6(src=scanner6, dst=f"2001:db8::1:{i:x}") / TCP(dport=139, flags="S")
        frames.append(ETH / Dot1AD(vlan=20) / Dot1Q(vlan=10) / v6 if i % 2 else ETH / v6)
    for i in range(5):
        frames.append(ETH / client / _query(f"www{i}.example.com", sport=40000 + i))
        answer = IP(src="198.51.100.53", dst="198.51.100.14") / UDP(sport=53) / DNS(qr=1)
        synack = IP(src="198.51.100.100", dst="198.51.100.13") / TCP(sport=445, flags="SA")
        frames += [ETH / answer, ETH / synack]
    return [raw(frame) for frame in frames]


def _summary(path: Path) -> tuple[dict[str, dict], dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    hosts = {rec["src_ip"]: rec for rec in lines if rec["event_type"] == "host"}
    (network,) = [rec for rec in lines if rec["event_type"] == "network"]
    return hosts, network


def _without(record: dict, keys: tuple[str, ...]) -> dict:
    return {key: value for key, value in record.items() if key not in keys}


def _wormwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "wormwatch", *args]


def _counted(path: Path) -> int:
    """Events the running sensor has counted, from its periodic summary (0 before the first)."""
    try:
        decode = _summary(path)[1]["decode"]
    except (FileNotFoundError, ValueError):
        return -1
    return int(decode["dns_queries"]) + int(decode["syns"]) + int(decode["dns_answers"])


@pytest.mark.parametrize("workers", [1, 2])
def test_wormwatch_live_agrees_with_replay(pair: VethPair, tmp_path: Path, workers: int) -> None:
    config = tmp_path / "wormwatch.toml"
    config.write_text(E2E_CONFIG)
    summary, alerts = tmp_path / "live.jsonl", tmp_path / "alerts.jsonl"
    sent = scenario()
    relevant = _relevant(sent)
    n_events = sum(len(decode_frame(LINKTYPE_ETHERNET, f, 0)[1]) for f in relevant)
    recorder = CaptureRun(
        pair, pair.capture_if, "--expect", str(len(relevant)), "--pcap", str(tmp_path / "rec.pcap")
    )
    recorder.wait_ready()
    options = ["--no-tui", "--duration", "120", "--config", str(config), "--summary", str(summary)]
    options += ["--alerts", str(alerts), "--summary-every", "0.1", "--workers", str(workers)]
    # root: this machine's interpreter lives under /root (mode 0700), which `nobody`
    # cannot import from; test_privileges_are_dropped_before_reading tests the drop.
    options += ["--user", "root"]
    live = subprocess.Popen(
        pair.command(pair.capture_ns, _wormwatch("live", "-i", pair.capture_if, *options)),
        stdout=subprocess.DEVNULL,
    )
    try:
        # Ready: the pipeline loop runs once it has written its first periodic summary.
        wait_while_running(live, lambda: _counted(summary) >= 0, 60)
        pair.send(sent)
        wait_while_running(live, lambda: _counted(summary) >= n_events, 60)
        live.send_signal(signal.SIGTERM)
        assert live.wait(30) == 0
    finally:
        if live.poll() is None:
            live.kill()
    assert "error" not in recorder.result()

    wirecopy = tmp_path / "sent.pcap"
    wrpcap(str(wirecopy), [Ether(frame) for frame in sent])
    replays = [
        subprocess.Popen(
            _wormwatch("replay", str(pcap), "--no-tui", "--config", str(config), "--summary", out),
            stdout=subprocess.DEVNULL,
        )
        for pcap, out in (
            (tmp_path / "rec.pcap", str(tmp_path / "replay-rec.jsonl")),
            (wirecopy, str(tmp_path / "replay-sent.jsonl")),
        )
    ]
    assert [replay.wait(120) for replay in replays] == [0, 0]
    live_hosts, live_net = _summary(summary)
    rec_hosts, _ = _summary(tmp_path / "replay-rec.jsonl")
    sent_hosts, _ = _summary(tmp_path / "replay-sent.jsonl")

    assert live_net["kernel_dropped"] == 0
    assert set(live_hosts) == {*FLAGGED, "198.51.100.14"}
    # Same packets with the kernel's timestamps: the same records. Each packet socket
    # stamps a frame itself, so the recorder's times are microseconds off the sensor's.
    stamped = (*ORDER_DEPENDENT, "first_seen", "last_seen")
    for addr, record in live_hosts.items():
        assert _without(record, stamped) == _without(rec_hosts[addr], stamped), addr
        for key in ("first_seen", "last_seen"):
            gap = datetime.fromisoformat(record[key]) - datetime.fromisoformat(rec_hosts[addr][key])
            assert abs(gap.total_seconds()) < 1.0, (addr, key)
    # The frames as sent (scapy's timestamps): the same counts and verdicts.
    counts = ("queries", "keyword_queries", "syn", "syn_targets", "verdicts", "distinct_names")
    for addr, record in live_hosts.items():
        assert {k: record[k] for k in counts} == {k: sent_hosts[addr][k] for k in counts}, addr
    assert live_hosts["198.51.100.11"]["verdicts"] == ["keyword-storm"]
    assert live_hosts["198.51.100.12"]["verdicts"] == ["mx-client"]
    assert live_hosts["198.51.100.13"]["verdicts"] == ["smb-scan"]
    assert live_hosts["2001:db8::13"]["verdicts"] == ["smb-scan"]
    assert live_hosts["198.51.100.14"]["verdicts"] == []
    flagged = {json.loads(line)["src_ip"] for line in alerts.read_text().splitlines()}
    assert flagged == FLAGGED


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(stat.parent.name))
    return kids


def _wait_for(is_done: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Bounded wait on a condition the test cannot be told about (process table)."""
    deadline = time.monotonic() + timeout_s
    while not is_done():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        select.select([], [], [], 0.02)


@pytest.mark.parametrize("how", ["kill-parent", "ctrl-c"])
def test_fanout_workers_never_outlive_the_sensor(pair: VethPair, how: str) -> None:
    run = CaptureRun(pair, pair.capture_if, "--expect", "1", "--workers", "2", session=True)
    run.wait_ready()
    _wait_for(lambda: len(_children(run.proc.pid)) == 2, "two capture workers")
    workers = _children(run.proc.pid)
    if how == "kill-parent":
        run.proc.kill()
    else:
        # What a terminal does on Ctrl-C: SIGINT to the whole foreground process group.
        os.killpg(run.proc.pid, signal.SIGINT)
    run.proc.wait(30)
    _wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), "workers to exit")


def test_wormwatch_live_writes_its_summary_when_the_link_goes_down(
    pair: VethPair, tmp_path: Path
) -> None:
    summary = tmp_path / "live.jsonl"
    options = ["--no-tui", "--duration", "120", "--summary", str(summary), "--summary-every", "0.1"]
    live = subprocess.Popen(
        pair.command(
            pair.capture_ns,
            _wormwatch("live", "-i", pair.capture_if, *options, "--user", "root"),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_while_running(live, lambda: _counted(summary) >= 0, 60)
        # the first 30 frames of the scenario: keyword-storm queries of one host
        pair.send(scenario()[:30])
        wait_while_running(live, lambda: _counted(summary) >= 30, 60)
        _link_down(pair)
        _, stderr = live.communicate(timeout=30)
    finally:
        if live.poll() is None:
            live.kill()
    assert live.returncode != 0
    assert f"error: capture on {pair.capture_if} stopped: The interface went down" in stderr
    hosts, network = _summary(summary)
    assert hosts["198.51.100.11"]["queries"]["total"] == 30
    assert network["decode"]["dns_queries"] == 30


def test_a_killed_fanout_worker_is_one_line_naming_the_signal(
    pair: VethPair, tmp_path: Path
) -> None:
    """A worker killed (the out-of-memory killer's SIGKILL) ends the run with one line
    that says how it ended, not a Python exception's repr; the summary is written."""
    summary = tmp_path / "live.jsonl"
    options = ["--no-tui", "--duration", "120", "--workers", "2", "--user", "root"]
    live = subprocess.Popen(
        pair.command(
            pair.capture_ns,
            _wormwatch("live", "-i", pair.capture_if, *options, "--summary", str(summary)),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_while_running(live, lambda: len(_children(live.pid)) == 2, 60, "two workers")
        os.kill(min(_children(live.pid)), signal.SIGKILL)
        _, stderr = live.communicate(timeout=30)
    finally:
        if live.poll() is None:
            live.kill()
    assert live.returncode == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert f"on {pair.capture_if} was killed by SIGKILL" in lines[0]
    assert "Error" not in lines[0]
    assert _summary(summary)[1]["event_type"] == "network"
