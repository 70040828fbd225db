"""dga-nx in the cluster, against a real nats-server: two sensors (``replay
--publish``), one seeing the clients' queries and SMB scans, the other the DNS answers
they receive, and one central (``central --no-tui --duration``) raise the same dga-nx
alerts, with the same evidence numbers, and write the same host summaries (answer and
NXDOMAIN-domain counts, sample NXDOMAIN names) as one process replaying the union."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dpkt
import pytest

from testkit import dgahosts
from testkit.hoststates import scanner, write_pcap
from testkit.natsbroker import Broker, broker_pool
from testkit.natsrun import WORMWATCH, config, publish, run, stop, wait_consumed
from testkit.pcap import write_frames

DGA = "192.0.2.150"
DGA_SCANNER = "192.0.2.44"
BENIGN = "192.0.2.162"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with broker_pool(tmp_path) as pool:
        yield pool.start()


def union(path: Path) -> Path:
    """Two infected clients (one also scans SMB) and a person's typing mistakes."""
    scanning = dgahosts.dga_client("dictionary", addr=DGA_SCANNER, hours=1.0, seed=4)
    for t, dst, qtype, name, port in scanner(120, start=9.5).log:
        scanning.log.append((t, dst, qtype, name, port))
    clients = [dgahosts.dga_client("conficker-c", addr=DGA, hours=1.0), scanning]
    return write_pcap(path, [*clients, dgahosts.typing_mistakes(BENIGN)])


def split_answers(pcap: Path, out: Path) -> list[Path]:
    """The capture's DNS answers (source port 53) apart from everything else."""
    parts: list[list[tuple[int, bytes]]] = [[], []]
    with pcap.open("rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            parts[int(getattr(ip.data, "sport", 0) == 53)].append((round(ts * 1e6), bytes(buf)))
    paths = [out / "queries.pcap", out / "answers.pcap"]
    for path, records in zip(paths, parts, strict=True):
        write_frames(path, records)
    assert all(parts)
    return paths


def records(path: Path, kind: str) -> list[dict[str, object]]:
    """The ``kind`` records of a JSON-lines file, without which sensors saw the host."""
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("event_type") == kind:
            rec.pop("sensors", None)
            out.append(rec)
    return sorted(out, key=lambda r: (str(r["src_ip"]), str(r.get("timestamp"))))


def test_queries_at_one_sensor_answers_at_another_alert_as_one_process(
    broker: Broker, tmp_path: Path
) -> None:
    pcap = union(tmp_path / "union.pcap")
    one = run("replay", str(pcap), "--no-tui", "--summary", str(tmp_path / "one-s.jsonl"),
              "--alerts", str(tmp_path / "one-a.jsonl"))  # fmt: skip
    assert one.returncode == 0, one.stderr
    cfg = config(tmp_path / "c.toml", '[cluster]\nsplit_of_link = ["queries", "answers"]\n')
    parts = split_answers(pcap, tmp_path)
    sensors = [
        publish(broker.url, p, n, cfg) for p, n in zip(parts, ("queries", "answers"), strict=True)
    ]
    for s in sensors:
        _out, err = s.communicate(timeout=300)
        assert s.returncode == 0, err
    summary, alerts = tmp_path / "central-s.jsonl", tmp_path / "central-a.jsonl"
    # --duration bounds the run; it is stopped (and writes its summary) once it has
    # consumed every delta
    central = subprocess.Popen(
        [*WORMWATCH, "central", "--nats", broker.url, "--no-tui", "--duration", "600",
         "--config", str(cfg), "--summary", str(summary), "--alerts", str(alerts)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_consumed(broker.url, ["central-0-15"], [central])
    stop(central)
    want_alerts = records(tmp_path / "one-a.jsonl", "alert")
    assert records(alerts, "alert") == want_alerts
    want_hosts = records(tmp_path / "one-s.jsonl", "host")
    assert records(summary, "host") == want_hosts
    # what is being compared: dga-nx alerts with evidence for both infected clients
    fired = {str(a["src_ip"]) for a in want_alerts if "dga-nx" in a["verdicts"]}  # type: ignore[operator]
    assert fired == {DGA, DGA_SCANNER}
    by_host = {str(h["src_ip"]): h for h in want_hosts}
    assert by_host[DGA]["answers"]["nx_domains"] >= 200  # type: ignore[index]
    assert len(by_host[DGA]["sample_nx_names"]) == 5  # type: ignore[arg-type]
    assert "dga-nx" not in by_host[BENIGN]["verdicts"]  # type: ignore[operator]
