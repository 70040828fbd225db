"""The committed sample captures: made by the generator, described by the manifest.

Three independent things must agree: the bytes in pcaps/ (what we ship), the
generator in scripts/ (regenerated here into a temp dir, byte for byte), and the
manifest's counts (the generator's own bookkeeping), checked against the dpkt
reference decoder.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from wormwatch.model import KIND_DNS, KIND_SYN, STATUS_NAMES

from testkit.paths import PCAPS, REPO, child_env
from testkit.reference import (
    default_keyword,
    host_counts,
    read_records,
    reference_events,
)

MANIFEST: dict[str, Any] = tomllib.loads((PCAPS / "MANIFEST.toml").read_text())
CAPTURES = {cap["file"]: cap for cap in MANIFEST["capture"]}
DOC_NETS = [
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
]


def _sample_files() -> list[str]:
    return sorted(p.name for p in PCAPS.iterdir() if p.name != "MANIFEST.toml")


def test_regenerating_gives_the_committed_bytes(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "scripts.samples.make", "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        env=child_env(),
    )
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted([*_sample_files(), "MANIFEST.toml"])
    for name in made:
        assert (tmp_path / name).read_bytes() == (PCAPS / name).read_bytes(), name


def test_package_demo_is_the_sample_demo() -> None:
    packaged = REPO / "src" / "wormwatch" / "data" / "demo.pcap"
    assert packaged.read_bytes() == (PCAPS / "demo.pcap").read_bytes()


def test_manifest_lists_every_file() -> None:
    assert sorted(CAPTURES) == _sample_files()
    assert len(CAPTURES) == len(MANIFEST["capture"])


def test_samples_are_small_and_demo_is_biggest() -> None:
    sizes = {name: (PCAPS / name).stat().st_size for name in _sample_files()}
    assert sum(sizes.values()) <= 3_200_000
    assert max(sizes, key=lambda name: sizes[name]) == "demo.pcap"


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_reference_decode_matches_manifest(name: str) -> None:
    cap = CAPTURES[name]
    statuses, events = reference_events(PCAPS / name)
    assert len(statuses) == cap["packets"]
    got_status = Counter(STATUS_NAMES[s] for s in statuses)
    assert {k: got_status.get(k, 0) for k in cap["status"]} == cap["status"]
    assert sum(cap["status"].values()) == cap["packets"]
    assert host_counts(events, default_keyword) == cap.get("expect", {})
    linktypes = {linktype for _, linktype, _, _ in read_records(PCAPS / name)}
    assert linktypes == set(cap["linktypes"])
    assert cap["linktype"] == cap["linktypes"][0]


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_samples_use_documentation_addresses_only(name: str) -> None:
    _, events = reference_events(PCAPS / name)
    for address in {e.src for e in events} | {e.dst for e in events}:
        assert any(ipaddress.ip_address(address) in net for net in DOC_NETS), address
    for host in CAPTURES[name].get("verdicts", {}):
        assert any(ipaddress.ip_address(host) in net for net in DOC_NETS), host


def test_demo_tells_its_story() -> None:
    """The demo's shape, as the brief for it states (not the detectors' thresholds)."""
    cap = CAPTURES["demo.pcap"]
    statuses, events = reference_events(PCAPS / "demo.pcap")
    times = [ts for ts, _, _, _ in read_records(PCAPS / "demo.pcap")]
    assert 29 * 60 <= (max(times) - min(times)) / 1e6 <= 30 * 60
    dns_events = sum(e.kind == KIND_DNS for e in events)
    # Queries plus their responses are still a minority of the packets.
    assert 2 * dns_events < len(statuses) / 2
    expect, verdicts = cap["expect"], cap["verdicts"]
    storm = expect["192.0.2.66"]
    assert storm["MX"] == 0
    assert storm["A"] >= 0.99 * storm["queries"]
    assert storm["keyword"] >= 0.9 * storm["queries"]
    assert expect["192.0.2.88"]["syn_targets"] >= 500
    assert expect["192.0.2.77"]["MX"] >= 200
    assert verdicts["192.0.2.99"] == ["mx-client", "smb-scan", "bot-sync"]
    ordinary = [h for h, v in verdicts.items() if not v and h not in ("192.0.2.25", "192.0.2.53")]
    assert len(ordinary) == 20
    syns = Counter(e.dport for e in events if e.kind == KIND_SYN)
    assert set(syns) == {135, 139, 445}
    names = {e.name for e in events if e.kind == KIND_DNS}
    assert any(b"\x1b[" in n for n in names)
    assert any(b"[bold]" in n for n in names)
