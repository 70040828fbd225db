"""Prometheus metrics (``--metrics``): scraped over HTTP from a running sensor.

The counts served at /metrics must equal the dpkt reference's (testkit/reference.py)
on sample and real captures, and the exposition must pass ``promtool check metrics``
where promtool is installed (Debian's ``prometheus`` package), and
prometheus_client's own parser everywhere.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from wormwatch.config import load_config
from wormwatch.errors import WormwatchError
from wormwatch.model import KIND_ANSWER, KIND_DNS, KIND_SYN, STATUS_NAMES
from wormwatch.pipeline import Pipeline
from wormwatch.present.sinks.metric_families import QTYPE_LABELS, ClusterHealth
from wormwatch.present.sinks.metrics import MetricsServer, RecordCounter, parse_address
from wormwatch.source.pcapfile import open_replay

from testkit.paths import REAL_PCAPS, REPO
from testkit.reference import reference_events

SAMPLES = [REPO / "pcaps" / name for name in ("demo.pcap", "dns_tcp.pcap", "frag_dns_v4.pcap")]
REAL_ONES = ["id2t_Win7_eternalblue_scan.pcap", "ndpi_dns_exfiltration.pcap", "ppa_blaster.pcap"]


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return str(response.read().decode())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as ``(name, sorted labels) -> value`` (prometheus_client's parser)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def by_label(values: dict, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: v for (n, labels), v in values.items() if n == name}


def check_exposition(text: str, tmp_path: Path) -> None:
    """promtool's linter when installed; the parser accepts it in any case."""
    families = list(text_string_to_metric_families(text))
    assert families
    for family in families:
        assert family.documentation, family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
    promtool = shutil.which("promtool")
    if promtool is not None:
        path = tmp_path / "metrics.txt"
        path.write_text(text)
        with path.open() as stdin:
            done = subprocess.run(
                [promtool, "check", "metrics"],
                check=False,
                stdin=stdin,
                capture_output=True,
                text=True,
            )
        assert done.returncode == 0, done.stdout + done.stderr


def _ids(path: Path) -> str:
    return path.name


def _captures() -> list[Path]:
    real = [REAL_PCAPS / name for name in REAL_ONES if (REAL_PCAPS / name).exists()]
    return [*SAMPLES, *real]


@pytest.mark.parametrize("path", _captures(), ids=_ids)
def test_scraped_counts_equal_the_reference(path: Path, tmp_path: Path) -> None:
    server = MetricsServer(("127.0.0.1", 0), mode="replay")
    server.records = RecordCounter(None)
    try:
        pipeline = Pipeline(
            load_config(None),
            source_name=path.name,
            presenter=server,
            alerts=server.records,
            event_sinks=[server.tally],
        )
        result = pipeline.run(open_replay([str(path)]))
        text = scrape(server.url)
    finally:
        server.close()
    check_exposition(text, tmp_path)
    values = samples(text)
    statuses, events = reference_events(path)
    assert values["wormwatch_packets_total", ()] == len(statuses)
    want_status = Counter(STATUS_NAMES[s] for s in statuses)
    got_status = by_label(values, "wormwatch_decoded_packets_total", "status")
    assert got_status == {name: want_status.get(name, 0) for name in STATUS_NAMES}
    kinds = {KIND_DNS: "dns-query", KIND_ANSWER: "dns-answer", KIND_SYN: "syn"}
    want_kinds = Counter(kinds[e.kind] for e in events)
    got_kinds = by_label(values, "wormwatch_events_total", "kind")
    assert got_kinds == {name: want_kinds.get(name, 0) for name in kinds.values()}
    want_qtypes = Counter(QTYPE_LABELS.get(e.qtype, "other") for e in events if e.kind == KIND_DNS)
    got_qtypes = by_label(values, "wormwatch_dns_queries_total", "qtype")
    assert {k: v for k, v in got_qtypes.items() if v} == dict(want_qtypes)
    want_ports = Counter(str(e.dport) for e in events if e.kind == KIND_SYN)
    got_ports = by_label(values, "wormwatch_syns_total", "port")
    assert {k: v for k, v in got_ports.items() if v} == dict(want_ports)
    assert values["wormwatch_hosts_tracked", ()] == result.final.hosts_tracked
    flagged = Counter(v for view in result.hosts for v in view.verdict.verdicts)
    assert by_label(values, "wormwatch_flagged_hosts", "verdict") == dict(flagged)
    assert values["wormwatch_alerts_total", ()] == result.n_alerts


def test_demo_flags_hosts_and_counts_alerts(tmp_path: Path) -> None:
    """The flagged-host gauge and the alert counter are not vacuous on the demo."""
    server = MetricsServer(("127.0.0.1", 0), mode="replay")
    server.records = RecordCounter(None)
    try:
        pipeline = Pipeline(
            load_config(str(REPO / "src" / "wormwatch" / "data" / "demo.toml")),
            source_name="demo",
            presenter=server,
            alerts=server.records,
            event_sinks=[server.tally],
        )
        result = pipeline.run(open_replay([str(REPO / "pcaps" / "demo.pcap")]))
        values = samples(scrape(server.url))
    finally:
        server.close()
    assert result.n_alerts > 0
    assert values["wormwatch_alerts_total", ()] == result.n_alerts
    flagged = by_label(values, "wormwatch_flagged_hosts", "verdict")
    assert flagged
    assert sum(flagged.values()) >= len([v for v in result.hosts if v.verdict.verdicts])


def test_cluster_health_is_served(tmp_path: Path) -> None:
    server = MetricsServer(("127.0.0.1", 0), mode="live")
    health = ClusterHealth(
        deltas_published=7,
        deltas_applied=5,
        deltas_pending=2,
        deltas_refused={"malformed": 1, "bin_s": 4},
        consumer_lag={"shards-0-7": 3},
        heartbeats={"north": 1_700_000_000.0},
        sensors_up=1,
    )
    server.watch_cluster(lambda: health)
    try:
        text = scrape(server.url)
    finally:
        server.close()
    check_exposition(text, tmp_path)
    values = samples(text)
    assert values["wormwatch_cluster_deltas_published_total", ()] == 7
    assert values["wormwatch_cluster_deltas_applied_total", ()] == 5
    assert values["wormwatch_cluster_deltas_pending", ()] == 2
    assert values["wormwatch_cluster_deltas_refused_total", (("reason", "bin_s"),)] == 4
    assert values["wormwatch_cluster_deltas_refused_total", (("reason", "malformed"),)] == 1
    assert values["wormwatch_cluster_consumer_lag_messages", (("consumer", "shards-0-7"),)] == 3
    sensor = (("sensor", "north"),)
    assert values["wormwatch_cluster_sensor_heartbeat_timestamp_seconds", sensor] == 1.7e9
    assert values["wormwatch_cluster_sensors_up", ()] == 1


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("9109", ("127.0.0.1", 9109)),
        ("0.0.0.0:9109", ("0.0.0.0", 9109)),
        ("[::1]:9109", ("::1", 9109)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_metrics_address(text: str, want: tuple[str, int]) -> None:
    assert parse_address(text) == want


@pytest.mark.parametrize("text", ["", "x", "::1:9109", "1.2.3.4:70000", ":9109", "9109:"])
def test_bad_metrics_address_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--metrics"):
        parse_address(text)


def test_port_in_use_is_one_clear_error() -> None:
    first = MetricsServer(("127.0.0.1", 0), mode="replay")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "wormwatch", "replay", str(SAMPLES[0]), "--no-tui",
             "--metrics", f"127.0.0.1:{first.port}"],
            check=False, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        first.close()
    assert done.returncode != 0
    assert f"wormwatch: error: cannot serve metrics on 127.0.0.1:{first.port}: " in done.stderr
    assert "Traceback" not in done.stderr


def test_port_in_use_on_ipv6_is_said_as_it_is_given() -> None:
    """``--metrics [::]:PORT`` taken: the line names ``[::]:PORT``, not ``:::PORT``."""
    try:
        taken = socket.socket(socket.AF_INET6)
        taken.bind(("::", 0))
    except OSError:
        pytest.skip("no IPv6 here")
    try:
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(WormwatchError) as info:
            MetricsServer(("::", port), mode="replay")
    finally:
        taken.close()
    assert str(info.value).startswith(f"cannot serve metrics on [::]:{port}: ")


def test_a_running_replay_is_scraped_over_http(tmp_path: Path) -> None:
    """The console entry point serves /metrics while it replays (paced by --speed)."""
    summary = tmp_path / "summary.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wormwatch", "replay", str(SAMPLES[0]), "--no-tui",
         "--speed", "300", "--metrics", "0", "--summary", str(summary)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"metrics on (http://\S+)", line)
        assert match, line
        seen: list[float] = []
        while proc.poll() is None and len(seen) < 3:
            with contextlib.suppress(OSError):
                text = scrape(match.group(1))
                packets = samples(text).get(("wormwatch_packets_total", ()))
                if packets:
                    seen.append(packets)
                    check_exposition(text, tmp_path)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.5)
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert seen, "no scrape answered with packet counts while the replay ran"
    assert seen == sorted(seen)
    network = [line for line in summary.read_text().splitlines() if '"network"' in line]
    assert seen[-1] <= int(re.search(r'"packets":(\d+)', network[0]).group(1))  # type: ignore[union-attr]


PROMETHEUS_DOCS = REPO / "docs" / "prometheus"


@pytest.mark.parametrize(
    "check",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "wormwatch-alerts.yml"],
        ["test", "rules", "wormwatch-alerts.test.yml"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_documented_scrape_config_and_alert_rules(check: list[str]) -> None:
    """The scrape config and alert rules in docs/ load, and the rules fire as their
    unit tests say (drops rising, nothing relevant for 5 minutes, a sensor down)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    done = subprocess.run(
        [promtool, *check], cwd=PROMETHEUS_DOCS, check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
