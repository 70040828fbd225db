"""Live capture on a real interface, in network namespaces made for the test (root only).

Frames crafted with scapy are sent on a raw socket from one end of a veth pair;
``open_capture`` runs on the other end in its own process (tests/netns.py).
What the capture hands on must be exactly the relevant frames sent (the
reference decoder says which are relevant), byte for byte, tags included, with
one handle and with two fanout workers.
"""

from __future__ import annotations

import pwd
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, raw

from wormwatch.model import KIND_DNS, LINKTYPE_ETHERNET

from netns import CaptureRun, VethPair, can_use_netns, veth_pair
from reference import decode_frame

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


def test_privileges_are_dropped_before_reading(pair: VethPair) -> None:
    sent = traffic()[:22]
    result = _capture(pair, sent, "--user", "nobody")
    assert result["user"] == "nobody"
    assert result["uid"] == pwd.getpwnam("nobody").pw_uid
    assert sorted(_relevant([f for _, f in _captured(result)])) == sorted(_relevant(sent))


def test_unknown_user_is_one_clear_error(pair: VethPair) -> None:
    run = CaptureRun(pair, pair.capture_if, "--user", "no-such-user-ww")
    run.wait_ready()
    assert run.result()["error"].startswith("--user no-such-user-ww: no such user")


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
