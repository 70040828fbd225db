"""``wormwatch live --publish`` on a real interface: a sensor captures crafted
scan traffic on a veth, publishes its deltas to a real nats-server on this
host's loopback, and a central alerts on the scanner, naming the sensor.

The sender lives in a network namespace (documentation addresses only); the
veth's other end stays in this namespace, without an address, so the sensor
captures it and reaches the broker on 127.0.0.1 (root only).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import raw

from testkit.natsbroker import Broker, broker_pool, free_port
from testkit.natsrun import WORMWATCH, config, stop, wait_consumed
from testkit.netns import VethPair, can_use_netns, host_veth, wait_while_running

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(can_use_netns() is not None, reason=str(can_use_netns())),
]

SCANNER = "198.51.100.66"
N_TARGETS = 120  # distinct targets of SYNs to 445, well over smb_scan.min_targets


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[VethPair]:
    with host_veth(tmp_path) as made:
        yield made


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with broker_pool(tmp_path / "nats") as pool:
        yield pool.start()


def scan_frames() -> list[bytes]:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return [
        raw(eth / IP(src=SCANNER, dst=f"203.0.113.{1 + i}") / TCP(sport=40000 + i, dport=445,
                                                                   flags="S"))
        for i in range(N_TARGETS)
    ]  # fmt: skip


def syns_counted(port: int) -> int:
    """SYNs the running sensor has counted (-1 before its capture loop runs)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            text = page.read().decode()
    except OSError:
        return -1
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    if not any(s.name == "wormwatch_packets_total" for s in samples):
        return -1
    return int(sum(s.value for s in samples if s.name == "wormwatch_syns_total"))


def test_a_live_sensor_publishes_and_the_central_alerts_naming_it(
    pair: VethPair, broker: Broker, tmp_path: Path
) -> None:
    cfg = config(tmp_path / "c.toml", "[cluster]\n")
    metrics = free_port()
    local_alerts = tmp_path / "local-alerts.jsonl"
    sensor = subprocess.Popen(
        [*WORMWATCH, "live", "-i", pair.capture_if, "--no-tui", "--duration", "300",
         "--publish", broker.url, "--sensor", "s1", "--config", str(cfg),
         "--metrics", str(metrics), "--alerts", str(local_alerts)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_while_running(sensor, lambda: syns_counted(metrics) >= 0, 120, "its metrics")
        pair.send(scan_frames())
        wait_while_running(sensor, lambda: syns_counted(metrics) >= N_TARGETS, 60, "the SYNs")
        # SIGTERM: the sensor publishes its open bins and waits for the acknowledgements
        err = stop(sensor)
    finally:
        if sensor.poll() is None:
            sensor.kill()
    # (a sensor says "N deltas acknowledged ..., M not" only when some were not)
    assert "deltas acknowledged" not in err, err
    local = [json.loads(line) for line in local_alerts.read_text().splitlines()]
    assert any(r.get("src_ip") == SCANNER for r in local), local
    alerts = tmp_path / "alerts.jsonl"
    central = subprocess.Popen(
        [*WORMWATCH, "central", "--nats", broker.url, "--no-tui", "--duration", "300",
         "--config", str(cfg), "--alerts", str(alerts)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_consumed(broker.url, ["central-0-15"], [central])
    stop(central)
    records = [json.loads(line) for line in alerts.read_text().splitlines()]
    scanner = [r for r in records if r.get("src_ip") == SCANNER]
    assert scanner, records
    assert all(r["sensors"] == ["s1"] for r in scanner)
    assert any("smb-scan" in r["verdicts"] for r in scanner)
    assert all(r["src_ip"] == SCANNER for r in records)  # nothing but what was sent
