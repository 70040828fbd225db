"""The central's own live table: the merged hosts and the sensors panel, drawn
from sensors publishing through a real nats-server.

The central runs in this process (the screen goes to a rich console on a
string, read back through a terminal emulator); the sensors are ``replay --publish`` child
processes, started once the central listens, so it hears their heartbeats.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dpkt
import nats
import nats.js.errors
import pyte
import pytest
from rich.console import Console

from wormwatch.cluster.run import CentralOptions, run_central
from wormwatch.config import load_config
from wormwatch.present.live.tui import TuiPresenter

from testkit.fakes import ScriptedKeys
from testkit.natsbroker import Broker, broker_pool
from testkit.natsrun import config, flow_of, publish, split, wait_consumed

WIDTH, HEIGHT = 140, 40
NAMES = ("east", "west")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with broker_pool(tmp_path) as pool:
        yield pool.start()


async def _has_consumer(url: str, name: str) -> bool:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().consumer_info("WORMWATCH_DELTAS", name)
        return True
    except nats.js.errors.NotFoundError:
        return False
    finally:
        await nc.close()


def _bin_end(pcap: Path, bin_s: int = 60) -> str:
    """The end of the bin of the capture's last packet, as the panel prints it."""
    with pcap.open("rb") as f:
        last = max(ts for ts, _buf in dpkt.pcap.Reader(f))
    end = (int(last) // bin_s + 1) * bin_s
    return datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%d %H:%M")


class _Sensors(threading.Thread):
    """Waits for the central's consumer, runs the sensors until the central
    has merged all they published, then stops the central (SIGTERM)."""

    def __init__(self, url: str, parts: list[Path], cfg: Path) -> None:
        super().__init__(daemon=True)
        self.url, self.parts, self.cfg = url, parts, cfg
        self.errors: list[str] = []
        self.is_listening = False

    def run(self) -> None:
        try:
            while not asyncio.run(_has_consumer(self.url, "central-0-15")):
                threading.Event().wait(0.1)
            self.is_listening = True
            # --speed: the sensors run for seconds, so heartbeats with rates arrive
            procs = [
                publish(self.url, part, name, self.cfg, "--speed", "200")
                for part, name in zip(self.parts, NAMES, strict=True)
            ]
            for p in procs:
                _out, err = p.communicate(timeout=300)
                if p.returncode != 0:
                    self.errors.append(err)
            wait_consumed(self.url, ["central-0-15"], [])
        except Exception as err:  # noqa: BLE001 - reported by the test, after the central stops
            self.errors.append(repr(err))
        finally:
            # the central installed its SIGTERM handler before creating its consumer
            # (without one, it stops at its --duration)
            if self.is_listening:
                os.kill(os.getpid(), signal.SIGTERM)


def test_central_table_shows_the_merged_hosts_and_each_sensor(
    broker: Broker, tmp_path: Path
) -> None:
    cfg_path = config(tmp_path / "c.toml", '[cluster]\nsplit_of_link = ["east", "west"]\n')
    parts = split(tmp_path, flow_of, 2)
    out = io.StringIO()
    console = Console(file=out, width=WIDTH, height=HEIGHT, force_terminal=True, color_system=None)
    tui = TuiPresenter(console=console, keys=ScriptedKeys())
    sensors = _Sensors(broker.url, parts, cfg_path)
    sensors.start()
    opts = CentralOptions(url=broker.url, duration_s=600.0)
    central = run_central(load_config(str(cfg_path)), opts, tui)
    sensors.join(60)
    assert not sensors.errors, sensors.errors
    # the final screen, as a terminal shows the bytes written
    screen = pyte.Screen(WIDTH, HEIGHT)
    screen.set_mode(pyte.modes.LNM)  # a tty turns each newline into CR LF
    pyte.Stream(screen).feed(out.getvalue())
    lines = [line.rstrip() for line in screen.display]
    text = "\n".join(lines)
    assert "192.0.2.99" in text  # the demo's bot, merged from both sensors
    head = next(i for i, line in enumerate(lines) if line.strip() == "sensors")
    header = lines[head + 2]
    for column in ("sensor", "packets/s", "kernel drops", "heartbeat", "lag", "newest bin"):
        assert column in header
    rows = {line.split("│")[1].strip(): line for line in lines[head + 4 : head + 6]}
    assert set(rows) == set(NAMES)
    for name, part in zip(NAMES, parts, strict=True):
        cells = [c.strip() for c in rows[name].split("│")[1:-1]]
        sensor, rate, drops, beat, lag, newest, buffered, clock = cells
        assert central.sensors[sensor].packets_per_s > 0
        assert rate == f"{central.sensors[sensor].packets_per_s:,.0f}"
        assert beat.endswith(" s ago")  # heard a heartbeat while it ran
        assert (drops, lag, buffered, clock) == ("-", "0 s", "0", "ok")
        assert newest == _bin_end(part)
    # the panel sits between the hosts and the footer
    assert "hosts 1-" in lines[-1]
    assert "replay finished" not in lines[-1]


def test_the_central_table_takes_keys_and_q_stops_it(broker: Broker, tmp_path: Path) -> None:
    """Keys reach the central's table as a sensor's: ``s`` sorts, ``q`` stops the
    central (summary written) without a signal."""
    out = io.StringIO()
    console = Console(file=out, width=WIDTH, height=HEIGHT, force_terminal=True, color_system=None)
    keys = ScriptedKeys([["s"], ["q"]])
    tui = TuiPresenter(console=console, keys=keys)
    summary = tmp_path / "summary.jsonl"
    opts = CentralOptions(url=broker.url, duration_s=600.0, summary=str(summary))
    run_central(load_config(None), opts, tui)
    assert keys.script == []
    records = [json.loads(line) for line in summary.read_text().splitlines()]
    assert [r["event_type"] for r in records] == ["network"]
    screen = pyte.Screen(WIDTH, HEIGHT)
    screen.set_mode(pyte.modes.LNM)
    pyte.Stream(screen).feed(out.getvalue())
    footer = screen.display[-1]
    assert " stopped " in footer
    assert "sort DNS q/s" in footer
