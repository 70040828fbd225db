"""Time that goes backwards never loses a verdict (issue 15, item 2).

One hour of traffic split by protocol (DNS in one capture, SYNs in the
other), read one after the other: packet time jumps back an hour at the
second file. Every host must still get the verdicts and counts it gets from
the time-sorted single stream, in either order, and from one file whose
records are the two captures back to back.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from wormwatch.cli import main
from wormwatch.config import load_config
from wormwatch.pipeline import Pipeline, RunResult
from wormwatch.source.pcapfile import open_replay

from testkit.hoststates import Host, at, bot, mass_mailer, scanner, study_host, write_pcap

_PCAP_HEADER_LEN = 24


def _hosts() -> list[Host]:
    storm, _ = study_host("192.0.2.66")
    return [
        scanner(400, addr="192.0.2.44", start=12.2, hours=0.4),
        mass_mailer(60, addr="192.0.2.55", start=12.0, hours=1.0),
        bot(3, addr="192.0.2.77"),
        storm,
    ]


def _split(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(whole capture, its DNS queries, its SYNs), each in time order."""
    hosts = _hosts()
    dns, syn = [], []
    for host in hosts:
        part_dns, part_syn = Host(host.addr), Host(host.addr)
        part_dns.log = [ev for ev in host.log if ev[4] == 53]
        part_syn.log = [ev for ev in host.log if ev[4] != 53]
        dns.append(part_dns)
        syn.append(part_syn)
    return (
        write_pcap(tmp_path / "whole.pcap", hosts),
        write_pcap(tmp_path / "udp.pcap", dns),
        write_pcap(tmp_path / "tcp.pcap", syn),
    )


def _run(paths: list[Path]) -> RunResult:
    source = open_replay([str(p) for p in paths], concatenate=True)
    try:
        return Pipeline(load_config(None), source_name="t").run(source)
    finally:
        source.close()


def _verdicts(result: RunResult) -> dict[str, tuple[tuple[str, ...], float, list[int]]]:
    return {
        v.state.addr: (tuple(sorted(v.verdict.verdicts)), v.verdict.score, v.state.totals.tolist())
        for v in result.hosts
    }


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return _split(tmp_path_factory.mktemp("split"))


@pytest.fixture(scope="module")
def sorted_run(captures: tuple[Path, Path, Path]) -> RunResult:
    return _run([captures[0]])


def test_the_sorted_stream_flags_every_worm(sorted_run: RunResult) -> None:
    flagged = {a: v for a, (v, _, _) in _verdicts(sorted_run).items() if v}
    assert flagged == {
        "192.0.2.44": ("smb-scan",),
        "192.0.2.55": ("mx-client",),
        "192.0.2.66": ("keyword-storm",),
        "192.0.2.77": ("bot-sync", "mx-client", "smb-scan"),
    }


@pytest.mark.parametrize("order", ["udp-tcp", "tcp-udp"])
def test_files_read_one_after_the_other_keep_every_verdict(
    captures: tuple[Path, Path, Path], sorted_run: RunResult, order: str
) -> None:
    _whole, udp, tcp = captures
    paths = [udp, tcp] if order == "udp-tcp" else [tcp, udp]
    assert _verdicts(_run(paths)) == _verdicts(sorted_run)


def test_one_file_whose_time_goes_backwards_keeps_every_verdict(
    captures: tuple[Path, Path, Path], sorted_run: RunResult, tmp_path: Path
) -> None:
    _whole, udp, tcp = captures
    backwards = tmp_path / "backwards.pcap"
    backwards.write_bytes(udp.read_bytes() + tcp.read_bytes()[_PCAP_HEADER_LEN:])
    first_ts = struct.unpack_from("<I", tcp.read_bytes(), _PCAP_HEADER_LEN)[0]
    assert first_ts * 1_000_000 < at(13)  # the second half starts an hour back
    assert _verdicts(_run([backwards])) == _verdicts(sorted_run)


def test_late_evidence_still_alerts(captures: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _whole, udp, tcp = captures
    alerts = tmp_path / "alerts.jsonl"
    code = main(
        ["replay", str(udp), str(tcp), "--concatenate", "--no-tui", "--alerts", str(alerts),
         "--summary", str(tmp_path / "hosts.jsonl")]
    )  # fmt: skip
    assert code == 0
    records = [json.loads(line) for line in alerts.read_text().splitlines()]
    scans = [r for r in records if r["event_type"] == "alert" and r["src_ip"] == "192.0.2.44"]
    # the scanner's SYNs all come after the DNS file's last packet time: it is
    # judged at the end of the run, and the alert carries that packet time
    assert [r["verdicts"] for r in scans] == [["smb-scan"]]
    last_dns = max(json.loads(line)["last_seen"] for line in _summary_lines(tmp_path))
    assert scans[0]["timestamp"] == last_dns


def _summary_lines(tmp_path: Path) -> list[str]:
    return [
        line
        for line in (tmp_path / "hosts.jsonl").read_text().splitlines()
        if json.loads(line)["event_type"] == "host"
    ]
