"""The ``central`` and ``view`` commands, assembled from their parts.

In: a :class:`~wormwatch.config.Config` and the parsed options. Out: alerts
and summaries written (``central``), the merged table printed (``view``),
an exit code. Broker problems arrive as one
:class:`~wormwatch.errors.WormwatchError` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass

from wormwatch.cluster.central import TOP_HOSTS, Central
from wormwatch.cluster.consume import Consumer
from wormwatch.cluster.settings import parse_shards
from wormwatch.config import Config
from wormwatch.model import HostView, Snapshot
from wormwatch.pipeline import Presenter
from wormwatch.present.sinks.jsonl import JsonLinesWriter
from wormwatch.records import host_record, network_record
from wormwatch.warmup import warm_up


@dataclass(slots=True)
class CentralOptions:
    url: str | None = None
    shards: str | None = None
    alerts: str | None = None
    summary: str | None = None
    duration_s: float | None = None
    tui: bool = False


def snapshot(central: Central, name: str, *, is_finished: bool = False) -> Snapshot:
    """What the central process knows now, shaped as the sensor's snapshot."""
    agg = central.agg
    sensors = central.sensors.values()
    drops = [h.kernel_dropped for h in sensors if h.kernel_dropped is not None]
    r, _evidence = central.network()
    return Snapshot(
        source=name,
        is_live=True,
        start_us=max(agg.start_us, 0),
        now_us=max(agg.now_us, 0),
        wall_elapsed_s=central.clock() - central.started_wall,
        packets_per_s=sum(h.packets_per_s for h in sensors),
        dns_per_s=0.0,
        syn_per_s=0.0,
        hosts_tracked=agg.n_hosts,
        hosts_dropped=agg.counts().hosts_evicted,
        decode={},
        kernel_dropped=sum(drops) if drops else None,
        idle_s=None,
        network_sync_r=r,
        hosts=[view for _i, view in central.host_views(TOP_HOSTS)],
        bin_s=agg.bin_s,
        is_finished=is_finished,
        events_untracked=agg.counts().events_dropped,
    )


def write_central_summary(path: str, central: Central, final: Snapshot) -> None:
    """Host records (with ``sensors``) then the network record, as JSON lines."""
    views = central.host_views()
    writer = JsonLinesWriter(path)
    try:
        for host, view in views:
            record = host_record(view, central.agg.bin_s)
            record["sensors"] = central.sensors_of(host)
            writer.write(record)
        hosts: list[HostView] = [v for _h, v in views]
        final.hosts = hosts
        writer.write(network_record(final, network_sync=central.network()[1]))
    finally:
        writer.close()


def run_central(cfg: Config, opts: CentralOptions, presenter: Presenter | None) -> Central:
    """Consume and judge until SIGTERM, Ctrl-C or ``duration_s``; write the
    summary. The finished state is returned (tests read it)."""
    cluster = cfg.cluster.with_url(opts.url)
    shards = parse_shards(opts.shards, cluster.shards) if opts.shards else (0, cluster.shards - 1)
    warm_up("central")
    central = Central(cfg, cluster)
    name = f"central shards {shards[0]}-{shards[1]} of {cluster.url}"
    alerts = JsonLinesWriter(opts.alerts) if opts.alerts else None
    refresh = [0.0]

    def on_round() -> None:
        now = time.monotonic()
        if presenter is not None and now >= refresh[0]:
            refresh[0] = now + 0.5
            presenter.update(snapshot(central, name))

    consumer = Consumer(
        central,
        shards,
        on_alert=alerts.write if alerts is not None else lambda _r: None,
        on_round=on_round,
    )
    if presenter is not None:
        presenter.start()
    try:
        asyncio.run(_consume(consumer, opts.duration_s))
        for record in central.judge(all_hosts=True):
            if alerts is not None:
                alerts.write(record)
    finally:
        if alerts is not None:
            alerts.close()
    final = snapshot(central, name, is_finished=True)
    if presenter is not None:
        presenter.stop(final)
        presenter.close()
    if opts.summary:
        write_central_summary(opts.summary, central, final)
    return central


async def _consume(consumer: Consumer, duration_s: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    if duration_s is not None:
        loop.call_later(duration_s, stop.set)
    await consumer.run(stop)
