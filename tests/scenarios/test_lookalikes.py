"""Scenarios that try to fool each detector, as host states and as replayed pcaps.

Each scenario host is built once (``hoststates.Host``), judged by
:func:`wormwatch.detect.evaluate` directly, and also written into one pcap
(struct-built frames, tens of thousands of packets in well under a second)
that goes through ``wormwatch replay --alerts --summary``: the real decoder,
classifier, aggregate stage, detectors, alert tracker and JSON lines writer.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from wormwatch.config import Config
from wormwatch.detect import evaluate
from wormwatch.model import C_SYN_DST_NEW, QTYPE_A, QTYPE_AAAA, QTYPE_MX

from testkit.hoststates import (
    STORM_PREFIXES,
    Host,
    at,
    bot,
    mass_mailer,
    scanner,
    spread,
    study_host,
    write_pcap,
)
from testkit.paths import PCAPS

MAIL_SERVER = "192.0.2.25"
CFG = Config(mail_servers=(ipaddress.ip_network(MAIL_SERVER),))
END = at(23.5)


def webmail_user() -> Host:
    """Opens webmail 40 times an hour for ten hours, and browses a little."""
    rng = np.random.default_rng(11)
    host = Host("192.0.2.21")
    host.queries(spread(at(8), at(18), 400, rng).tolist(), ["mail.example.edu"] * 400)
    names = [f"www.site{i % 80}.example" for i in range(600)]
    return host.queries(spread(at(8), at(18), 600, rng).tolist(), names)


def mail_google_three_times() -> Host:
    return Host("192.0.2.22").queries([at(9), at(9.2), at(15)], ["mail.google.com"] * 3)


def windows_client() -> Host:
    """SMB to its four file servers all day, with a retransmission of each SYN."""
    host = Host("192.0.2.23")
    servers = ["198.51.100.10", "198.51.100.11", "198.51.100.20", "198.51.100.30"]
    for i in range(1500):
        t = at(8) + i * 24_000_000
        host.syn(t, servers[i % 4], 445).syn(t + 1_000_000, servers[i % 4], 445)
        if i % 10 == 0:
            host.syn(t + 5, servers[i % 2], 139)
    return host


def nat_gateway(addr: str = "192.0.2.200") -> Host:
    """One address for ~200 ordinary clients: lots of everything, nothing odd."""
    rng = np.random.default_rng(13)
    host = Host(addr)
    popular = [f"www.site{i}.example" for i in range(2500)]
    popular += ["mail.google.com", "outlook.office365.com", "smtp.example.edu", "ns1.example.net"]
    weights = np.r_[np.full(2500, 1.0), np.full(4, 25.0)]
    pick = rng.choice(len(popular), 20_000, p=weights / weights.sum())
    times = spread(at(8), at(18), 20_000, rng)
    for t, k in zip(times.tolist(), pick.tolist(), strict=True):
        host.query(t, popular[k], QTYPE_AAAA if k % 3 == 0 else QTYPE_A)
    for i, t in enumerate(spread(at(9), at(17), 8, rng).tolist()):
        host.query(t, ["example.edu", "example.org"][i % 2], QTYPE_MX)  # mail autoconfig
    servers = [f"198.51.100.{10 + i}" for i in range(8)]
    for i, t in enumerate(spread(at(8), at(18), 3000, rng).tolist()):
        host.syn(t, servers[i % 8], 445).syn(t + 1_000_000, servers[i % 8], 445)
    return host


def slow_scanner() -> Host:
    """One new target every ten minutes for eight hours: 48 targets."""
    host = Host("192.0.2.31")
    for i in range(48):
        t = at(1) + i * 600_000_000
        dst = f"10.9.0.{i + 1}"
        host.syn(t, dst, 445).syn(t + 3_000_000, dst, 445)
    return host


def mail_server() -> Host:
    """The allowlisted mail server: an MX and an A query per delivery, all day."""
    rng = np.random.default_rng(17)
    host = Host(MAIL_SERVER)
    for i, t in enumerate(spread(at(7), at(19), 600, rng).tolist()):
        host.query(t, f"customer{i % 250}.example", QTYPE_MX)
        host.query(t + 20_000, f"mx{i % 3}.customer{i % 250}.example", QTYPE_A)
    return host


def nat_with_one_scanner() -> Host:
    """The same NAT gateway, one of whose clients scans 60 hosts over two hours."""
    host = nat_gateway("192.0.2.201")
    for i in range(60):
        host.syn(at(13) + i * 120_000_000, f"10.20.0.{i + 1}", 445)
    return host


def storm_with_busy_user() -> Host:
    """A Mytob storm at ~30 keyword A/min on a machine whose user browses hard."""
    rng = np.random.default_rng(19)
    host = Host("192.0.2.67")
    n_kw, n_user = 9000, 4500
    kw = [f"{STORM_PREFIXES[i % 9]}victim{i % 1500}.example" for i in range(n_kw)]
    host.queries(spread(at(9), at(14), n_kw, rng).tolist(), kw)
    user = [f"cdn{i % 400}.site{i % 97}.example" for i in range(n_user)]
    # the user is busy in bursts: heavy in some minutes, idle in others
    bursts = (
        at(9) + rng.integers(0, 30, n_user) * 600_000_000 + rng.integers(0, 120_000_000, n_user)
    )
    return host.queries(np.sort(bursts).tolist(), user)


def dnscat_tunnel() -> Host:
    """A dnscat-like tunnel: MX/TXT/CNAME queries of long encoded names."""
    rng = np.random.default_rng(9)
    host = Host("192.0.2.58")
    for i, t in enumerate(spread(at(8), at(8.5), 300, rng).tolist()):
        label = rng.bytes(24).hex().encode()
        host.query(t, b"dnscat." + label + b"." + label[:18], (QTYPE_MX, 16, 5)[i % 3])
    return host


# address -> (builder, expected verdicts)
SCENARIOS: dict[str, tuple[Callable[[], Host], tuple[str, ...]]] = {
    "192.0.2.66": (lambda: study_host("192.0.2.66")[0], ("keyword-storm",)),
    "192.0.2.21": (webmail_user, ()),
    "192.0.2.22": (mail_google_three_times, ()),
    "192.0.2.23": (windows_client, ()),
    "192.0.2.200": (nat_gateway, ()),
    "192.0.2.201": (nat_with_one_scanner, ("smb-scan",)),
    "192.0.2.67": (storm_with_busy_user, ("keyword-storm",)),
    "192.0.2.58": (dnscat_tunnel, ()),
    "192.0.2.31": (slow_scanner, ("smb-scan",)),
    "192.0.2.44": (lambda: scanner(400, addr="192.0.2.44"), ("smb-scan",)),
    "192.0.2.41": (lambda: bot(10, addr="192.0.2.41"), ("mx-client", "smb-scan")),
    "192.0.2.42": (lambda: bot(0, addr="192.0.2.42"), ("mx-client", "smb-scan", "bot-sync")),
    "192.0.2.43": (lambda: bot(2, addr="192.0.2.43"), ("mx-client", "smb-scan", "bot-sync")),
    MAIL_SERVER: (mail_server, ()),
    "192.0.2.55": (lambda: mass_mailer(120, addr="192.0.2.55"), ("mx-client",)),
}


@pytest.fixture(scope="module")
def hosts() -> dict[str, Host]:
    return {addr: build() for addr, (build, _) in SCENARIOS.items()}


@pytest.mark.parametrize("addr", list(SCENARIOS))
def test_scenario_host_state(hosts: dict[str, Host], addr: str) -> None:
    verdict = evaluate(hosts[addr].state(), CFG, now_us=END)
    assert verdict.verdicts == SCENARIOS[addr][1]
    assert (verdict.score > 0) == bool(verdict.verdicts)


def test_mail_server_is_flagged_without_its_allowlist_entry(hosts: dict[str, Host]) -> None:
    state = hosts[MAIL_SERVER].state()
    assert "mx-client" in evaluate(state, Config(), now_us=END).verdicts
    assert evaluate(state, CFG, now_us=END).verdicts == ()


def test_slow_scanner_decision(hosts: dict[str, Host]) -> None:
    """A scanner once it reaches min_targets new targets inside the window."""
    state = hosts["192.0.2.31"].state()
    assert evaluate(state, CFG, now_us=at(1 + 28 / 6)).verdicts == ()  # 29 targets so far
    assert evaluate(state, CFG, now_us=at(1 + 29 / 6)).verdicts == ("smb-scan",)
    six_hours = dataclasses.replace(CFG, window_s=6 * 3600)
    assert evaluate(state, six_hours, now_us=at(9)).verdicts == ("smb-scan",)  # 36 in 6 h
    four_hours = dataclasses.replace(CFG, window_s=4 * 3600)
    assert evaluate(state, four_hours, now_us=at(9)).verdicts == ()  # 24 in 4 h


# --- the same scenarios through the real pipeline ---------------------------------


@pytest.fixture(scope="module")
def replay(hosts: dict[str, Host], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from wormwatch.cli import main

    tmp = tmp_path_factory.mktemp("scenarios")
    pcap = write_pcap(tmp / "scenarios.pcap", hosts.values())
    config = tmp / "wormwatch.toml"
    config.write_text(f'[allowlist]\nmail_servers = ["{MAIL_SERVER}/32"]\n')
    alerts, summary = tmp / "alerts.jsonl", tmp / "summary.jsonl"
    argv = ["replay", str(pcap), "--config", str(config), "--no-tui"]
    rc = main([*argv, "--alerts", str(alerts), "--summary", str(summary)])
    assert rc == 0
    alert_lines = [json.loads(line) for line in alerts.read_text().splitlines()]
    records = [json.loads(line) for line in summary.read_text().splitlines()]
    return {
        "alerts": alert_lines,
        "hosts": {r["src_ip"]: r for r in records if r["event_type"] == "host"},
        "other": [r for r in records if r["event_type"] != "host"],
    }


def test_replay_gives_the_expected_verdicts(replay: dict[str, object]) -> None:
    hosts = replay["hosts"]
    assert isinstance(hosts, dict)
    assert set(hosts) == set(SCENARIOS)
    got = {addr: tuple(rec["verdicts"]) for addr, rec in hosts.items()}
    assert got == {addr: expected for addr, (_, expected) in SCENARIOS.items()}


def test_replay_counts_match_the_story(hosts: dict[str, Host], replay: dict[str, object]) -> None:
    """The synthetic builder and the real aggregate stage agree on every total."""
    records = replay["hosts"]
    assert isinstance(records, dict)
    for addr, host in hosts.items():
        t = host.state().totals.tolist()
        rec = records[addr]
        assert rec["queries"] == {
            "total": t[0], "A": t[1], "AAAA": t[2], "MX": t[3], "PTR": t[4], "other": t[5],
        }  # fmt: skip
        assert rec["keyword_queries"] == t[6]
        assert rec["syn"] == {"135": t[8], "139": t[9], "445": t[10]}
        assert rec["syn_targets"] == t[C_SYN_DST_NEW]


def test_replay_alerts(replay: dict[str, object]) -> None:
    alerts = replay["alerts"]
    assert isinstance(alerts, list)
    by_host: dict[str, list[dict[str, object]]] = {}
    for a in alerts:
        assert a["schema"] == 1
        assert a["event_type"] == "alert"
        assert str(a["timestamp"]).endswith("+00:00")
        by_host.setdefault(str(a["src_ip"]), []).append(a)
    flagged = {addr for addr, (_, expected) in SCENARIOS.items() if expected}
    assert set(by_host) == flagged
    for addr, items in by_host.items():
        assert items[0]["reason"] == "new"
        assert len(items) <= 4, (addr, [i["reason"] for i in items])
        assert tuple(items[-1]["verdicts"]) == SCENARIOS[addr][1]


MANIFEST = PCAPS / "MANIFEST.toml"


def story_captures() -> list[dict[str, object]]:
    if not MANIFEST.exists():
        return []
    doc = tomllib.loads(MANIFEST.read_text())
    return [c for c in doc.get("capture", []) if "verdicts" in c]


@pytest.mark.parametrize("capture", story_captures(), ids=lambda c: str(c["file"]))
def test_sample_capture_verdicts(capture: dict[str, object], tmp_path: Path) -> None:
    """Every story capture: exactly the manifest's verdicts, nobody else flagged.

    The manifest's mail server (192.0.2.25) is allowlisted, as its note says.
    """
    from wormwatch.cli import main

    config = tmp_path / "wormwatch.toml"
    config.write_text(f'[allowlist]\nmail_servers = ["{MAIL_SERVER}/32"]\n')
    summary = tmp_path / "summary.jsonl"
    pcap = MANIFEST.parent / str(capture["file"])
    argv = ["replay", str(pcap), "--config", str(config), "--no-tui", "--summary", str(summary)]
    assert main(argv) == 0
    records = [json.loads(line) for line in summary.read_text().splitlines()]
    got = {r["src_ip"]: r["verdicts"] for r in records if r["event_type"] == "host"}
    expected = capture["verdicts"]
    assert isinstance(expected, dict)
    assert {a: got.get(a, []) for a in expected} == expected
    assert {a: v for a, v in got.items() if v and a not in expected} == {}


def test_real_dnscat_tunnel_is_not_an_mx_client(tmp_path: Path, real_pcaps: Path) -> None:
    """nDPI's dns_exfiltration.pcap: 52 MX queries of encoded names, one host."""
    from wormwatch.cli import main

    tunnel = real_pcaps / "ndpi_dns_exfiltration.pcap"
    summary = tmp_path / "summary.jsonl"
    assert main(["replay", str(tunnel), "--no-tui", "--summary", str(summary)]) == 0
    hosts = [
        r for r in map(json.loads, summary.read_text().splitlines()) if r["event_type"] == "host"
    ]
    assert [(r["queries"]["MX"], r["verdicts"]) for r in hosts] == [(52, [])]


def test_replay_reproduces_the_study_figures(replay: dict[str, object]) -> None:
    hosts = replay["hosts"]
    assert isinstance(hosts, dict)
    rec = hosts["192.0.2.66"]
    assert rec["queries"]["A"] == 32_721
    assert rec["queries"]["PTR"] == 7
    assert rec["queries"]["MX"] == 0
    assert rec["first_seen"].startswith("2026-11-26T12:00")
    assert rec["last_seen"].startswith("2026-11-26T17:29")
    ev = rec["evidence"]["keyword-storm"]
    assert ev["r2_keyword_a_vs_a"] > 0.99
    assert ev["keyword_share"] > 0.98
    assert (ev["first_active"], ev["last_active"]) == (
        "2026-11-26T12:00:00.000000+00:00",
        "2026-11-26T17:30:00.000000+00:00",
    )
    # the study's figure 2: name prefixes of length 1 to 5
    prefixes = ev["top_prefixes"]
    assert sorted(prefixes) == ["1", "2", "3", "4", "5"]
    assert [p for p, _ in prefixes["1"][:1]] == ["m"]
    assert [p for p, _ in prefixes["4"][:1]] == ["mail"]
    assert {p for p, _ in prefixes["5"]} >= {"smtp.", "relay", "mailh"}
    assert all(len(p) == int(k) for k, items in prefixes.items() for p, _ in items)
