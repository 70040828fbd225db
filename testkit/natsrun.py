"""Sensors and central processes as the tests run them: child processes
(``python -m wormwatch``) against a :mod:`testkit.natsbroker` broker, and the
demo capture split over several sensors the way a packet broker would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dpkt
import nats
import nats.js.errors

from testkit.paths import DEMO
from testkit.pcap import write_frames

WORMWATCH = [sys.executable, "-m", "wormwatch"]
HALVES = ("0-7", "8-15")


def _records(path: Path) -> list[tuple[int, bytes]]:
    with path.open("rb") as f:
        return [(round(ts * 1e6), bytes(buf)) for ts, buf in dpkt.pcap.Reader(f)]


def flow_of(frame: bytes) -> int:
    """A packet broker's split: a hash of the 5-tuple (both directions alike)."""
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) or not hasattr(ip.data, "sport"):
        return 0
    ends = sorted([(bytes(ip.src), ip.data.sport), (bytes(ip.dst), ip.data.dport)])
    return zlib.crc32(repr(ends).encode())


def is_dns(frame: bytes) -> bool:
    ip = dpkt.ethernet.Ethernet(frame).data
    return hasattr(ip, "data") and 53 in (
        getattr(ip.data, "sport", 0),
        getattr(ip.data, "dport", 0),
    )


def split(tmp: Path, key: Callable[[bytes], int], n: int) -> list[Path]:
    """The demo capture split over ``n`` sensor pcaps by ``key`` of each frame."""
    parts: list[list[tuple[int, bytes]]] = [[] for _ in range(n)]
    for ts, frame in _records(DEMO):
        parts[key(frame) % n].append((ts, frame))
    paths = []
    for i, records in enumerate(parts):
        paths.append(tmp / f"part{i}.pcap")
        write_frames(paths[-1], records)
    return paths


def split_in_time(tmp: Path, n: int) -> list[Path]:
    """The demo capture cut into ``n`` consecutive pcaps of as many records each
    (consecutive captures of one sensor: the cuts fall inside bins)."""
    records = _records(DEMO)
    paths = []
    for i in range(n):
        paths.append(tmp / f"piece{i}.pcap")
        write_frames(paths[-1], records[i * len(records) // n : (i + 1) * len(records) // n])
    return paths


def shifted(pcap: Path, by_us: int) -> Path:
    """``pcap`` rewritten in place with every record ``by_us`` later (a sensor
    whose clock runs ahead, or a capture moved to the present)."""
    write_frames(pcap, [(ts + by_us, frame) for ts, frame in _records(pcap)])
    return pcap


def end_us(pcap: Path) -> int:
    """Packet time of the last record of ``pcap``."""
    return max(ts for ts, _frame in _records(pcap))


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    argv = [*WORMWATCH, *args]
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout)


def publish(url: str, pcap: Path, sensor: str, config: Path, *extra: str) -> subprocess.Popen[str]:
    args = ["replay", str(pcap), "--publish", url, "--sensor", sensor, "--no-tui", *extra]
    args += ["--config", str(config), "--summary", os.devnull]
    return subprocess.Popen(
        [*WORMWATCH, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def central(url: str, shards: str, out: Path, config: Path) -> subprocess.Popen[str]:
    args = ["central", "--nats", url, "--shards", shards, "--no-tui", "--config", str(config)]
    args += ["--summary", str(out / f"summary-{shards}.jsonl")]
    args += ["--alerts", str(out / f"alerts-{shards}.jsonl")]
    return subprocess.Popen(
        [*WORMWATCH, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


async def _consumed(url: str, names: list[str], auth: dict[str, Any]) -> bool:
    nc = await nats.connect(url, **auth)
    try:
        js = nc.jetstream()
        last = (await js.stream_info("WORMWATCH_DELTAS")).state.last_seq
        for name in names:
            info = await js.consumer_info("WORMWATCH_DELTAS", name)
            if info.num_pending or info.num_ack_pending or last == 0:
                return False
        return True
    except nats.js.errors.NotFoundError:
        return False
    finally:
        await nc.close()


def wait_consumed(
    url: str, names: list[str], procs: list[subprocess.Popen[str]], **auth: Any
) -> None:
    """Poll until the central consumers have nothing pending (or one died);
    ``auth``: nats.connect options for a broker that needs them."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for p in procs:
            assert p.poll() is None, p.stderr.read() if p.stderr else ""
        if asyncio.run(_consumed(url, names, auth)):
            return
        time.sleep(0.2)
    raise AssertionError("central processes did not consume everything within 120 s")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return err


def config(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def host_records(*paths: Path, drop_sensors: bool = True) -> dict[str, dict[str, object]]:
    out = {}
    for path in paths:
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("event_type") == "host":
                if drop_sensors:
                    rec.pop("sensors", None)
                out[str(rec["src_ip"])] = rec
    return out
