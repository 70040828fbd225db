"""DNS answers on the wire: counted per client (the answer's destination), by the kernel,
the dpkt reference and tshark alike, on every capture that holds answers, over UDP and TCP.

tshark is the outside witness: per destination address, its count of DNS responses
(opcode QUERY, from port 53, UDP or TCP) and of those with RCODE 3 (NXDOMAIN) must equal
ours. The live tshark comparison skips when tshark is not installed (``apt-get install
tshark``); for the captures with answers over TCP its figures are also pinned here
(:data:`TSHARK_WITH_TCP`), so those are checked without it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from wormwatch.decode import Decoder
from wormwatch.model import KIND_ANSWER, RCODE_NXDOMAIN, addr_text
from wormwatch.source.pcapfile import open_replay

from testkit.paths import REAL_PCAPS as REAL
from testkit.reference import answer_counts, reference_events

# the real captures tshark sees DNS responses in (tcpdump_dns_fwdptr's is opcode 15,
# no answer to a QUERY)
WITH_ANSWERS = (
    "dpkt_truncated_dns.pcap", "id2t_sality_botnet.pcap", "ndpi_KakaoTalk_chat_sll.pcap",
    "ndpi_dns_exfiltration.pcap", "nf_evidence02.pcap", "suricata_dns-mx-queries.pcap",
    "suricata_dns-tcp-multirequest.pcap", "tcpdump_dns_fwdptr.pcap", "tcpdump_dns_tcp.pcap",
    "tcpdump_dns_udp_2_snaplen98.pcap", "zeek_dns-edns-ecs.pcap",
    "zeek_dns-loc-29-trunc_qinq.pcap", "zeek_dns-long-connection.pcap",
    "zeek_ipv6-fragmented-dns.pcap", "zeek_pcapng-multi-interface.pcapng", "zeek_smtp.pcap",
)  # fmt: skip
# an ICMP error quoting an answer is no answer on the wire (tshark dissects the quote)
TSHARK_FILTER = (
    "dns.flags.response == 1 && dns.flags.opcode == 0"
    " && (udp.srcport == 53 || tcp.srcport == 53) && !icmp && !icmpv6"
)
# The real captures with DNS answers over TCP (`tshark -Y 'tcp.srcport == 53 &&
# dns.flags.response == 1'` finds them), and tshark 4.0's answers and NXDOMAIN answers
# per client in each, UDP and TCP together (tshark_answers below): client -> (answers,
# NXDOMAIN). Over TCP: 20 NXDOMAIN in suricata_dns-tcp-multirequest, 1 in
# tcpdump_dns_tcp, 8 in zeek_dns-edns-ecs (4 to 192.168.120.22, 3 to
# 2003:de:2016:120::a08:53, 1 to 194.247.5.6).
TSHARK_WITH_TCP: dict[str, dict[str, tuple[int, int]]] = {
    "suricata_dns-tcp-multirequest.pcap": {"10.16.1.11": (20, 20)},
    "tcpdump_dns_tcp.pcap": {"192.168.1.11": (1, 0)},
    "zeek_dns-edns-ecs.pcap": {
        "172.217.40.76": (1, 0), "173.194.169.104": (1, 0), "192.168.120.22": (26, 0),
        "192.168.90.10": (2, 0), "194.247.5.6": (2, 0),
        "2001:470:1f0b:16b0:20c:29ff:fe7c:a4cb": (9, 0), "2003:de:2016:110::b15:22": (2, 0),
        "2003:de:2016:120::a08:53": (16, 0), "2a00:1450:400c:c00::106": (1, 0),
        "2a00:1450:4013:c05::10e": (1, 0), "74.125.47.13": (1, 0), "74.125.47.136": (1, 0),
        "74.125.73.76": (1, 0), "74.125.73.83": (1, 0),
    },
}  # fmt: skip


def kernel_answers(path: Path) -> dict[str, dict[str, int]]:
    """Answers and NXDOMAIN answers per client, as the real source and kernel count them."""
    source = open_replay([str(path)])
    decoder = Decoder(max_events=64)
    counts: dict[str, dict[str, int]] = {}
    while (batch := source.read_batch(101)) is not None:
        ev = decoder.decode(batch)
        for i in range(ev.n):
            if ev.kind[i] != KIND_ANSWER:
                continue
            client = addr_text(int(ev.dst_hi[i]), int(ev.dst_lo[i]))
            got = counts.setdefault(client, {"answers": 0, "nxdomain": 0})
            got["answers"] += 1
            got["nxdomain"] += int(ev.rcode[i] == RCODE_NXDOMAIN)
    source.close()
    assert decoder.stats.dns_answers == sum(c["answers"] for c in counts.values())
    return counts


def tshark_answers(path: Path) -> dict[str, dict[str, int]]:
    out = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-Y", TSHARK_FILTER, "-T", "fields",
         "-e", "ip.dst", "-e", "ipv6.dst", "-e", "dns.flags.rcode"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    counts: dict[str, Counter[str]] = {}
    for line in out.splitlines():
        v4, v6, rcodes = line.split("\t")
        client = v4 or v6
        got = counts.setdefault(client, Counter())
        # a frame lists one rcode per DNS message tshark found in it (TCP: several)
        for rcode in rcodes.split(","):
            got["answers"] += 1
            got["nxdomain"] += int(rcode == str(RCODE_NXDOMAIN))
    return {c: {"answers": v["answers"], "nxdomain": v["nxdomain"]} for c, v in counts.items()}


def _real(name: str) -> Path:
    path = REAL / name
    if not path.is_file():
        pytest.skip(f"real captures not found at {REAL}")
    return path


@pytest.mark.parametrize("name", WITH_ANSWERS)
def test_kernel_answers_equal_reference(name: str) -> None:
    path = _real(name)
    want = answer_counts(reference_events(path)[1])
    assert kernel_answers(path) == want
    assert want or name == "tcpdump_dns_fwdptr.pcap"


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("name", WITH_ANSWERS)
def test_answers_equal_tshark(name: str) -> None:
    path = _real(name)
    assert kernel_answers(path) == tshark_answers(path)


def _pinned(name: str) -> dict[str, dict[str, int]]:
    return {c: {"answers": a, "nxdomain": nx} for c, (a, nx) in TSHARK_WITH_TCP[name].items()}


@pytest.mark.parametrize("name", sorted(TSHARK_WITH_TCP))
def test_answers_over_tcp_equal_tsharks_pinned_counts(name: str) -> None:
    assert kernel_answers(_real(name)) == _pinned(name)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("name", sorted(TSHARK_WITH_TCP))
def test_pinned_counts_are_tsharks(name: str) -> None:
    assert tshark_answers(_real(name)) == _pinned(name)


def test_answers_are_not_queries() -> None:
    """An answer never counts as a query, and a query from port 53 to port 53 (a
    resolver asking another) still does."""
    path = _real("zeek_dns-edns-ecs.pcap")
    statuses, events = reference_events(path)
    kinds = Counter(e.kind for e in events)
    assert kinds[KIND_ANSWER] > 0
    assert all(e.dport != 53 or e.kind != KIND_ANSWER for e in events if e.dport != 53)
    assert len(statuses) > 0
