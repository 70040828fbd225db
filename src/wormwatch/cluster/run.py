"""The ``central`` and ``view`` commands, assembled from their parts.

In: a :class:`~wormwatch.config.Config` and the parsed options. Out: alerts
and summaries written (``central``), the merged table printed (``view``),
an exit code. Broker problems arrive as one
:class:`~wormwatch.errors.WormwatchError` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass

from wormwatch.cluster.broker import check_settings
from wormwatch.cluster.central import TOP_HOSTS, Central
from wormwatch.cluster.consume import Consumer
from wormwatch.cluster.publisher import HEARTBEAT_S
from wormwatch.cluster.settings import parse_shards
from wormwatch.cluster.top import sensor_rows
from wormwatch.config import Config
from wormwatch.errors import WormwatchError
from wormwatch.model import HostView, Snapshot
from wormwatch.pipeline import Presenter
from wormwatch.present.sinks.jsonl import JsonLinesWriter, refuse_shared_paths
from wormwatch.present.sinks.metric_families import ClusterHealth
from wormwatch.present.sinks.metrics import MetricsServer, RecordCounter
from wormwatch.records import host_record, network_record
from wormwatch.warmup import warm_up

# a sensor is up while its heartbeats (every HEARTBEAT_S) keep coming
SENSOR_UP_S = 3 * HEARTBEAT_S


@dataclass(slots=True)
class CentralOptions:
    url: str | None = None
    shards: str | None = None
    alerts: str | None = None
    summary: str | None = None
    duration_s: float | None = None
    tui: bool = False
    metrics: tuple[str, int] | None = None


def snapshot(central: Central, name: str, *, is_finished: bool = False) -> Snapshot:
    """What the central process knows now, shaped as the sensor's snapshot."""
    agg = central.agg
    sensors = central.sensors.values()
    drops = [h.kernel_dropped for h in sensors if h.kernel_dropped is not None]
    r, _evidence = central.network()
    counts = agg.counts()
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
        hosts_dropped=counts.hosts_evicted,
        decode={},
        kernel_dropped=sum(drops) if drops else None,
        idle_s=None,
        network_sync_r=r,
        hosts=[view for _i, view in central.host_views(TOP_HOSTS)],
        bin_s=agg.bin_s,
        is_finished=is_finished,
        events_untracked=counts.events_dropped,
        keys_refused=counts.keys_refused,
        keys_dropped=counts.keys_dropped,
        flagged=central.judger.flagged_counts(),
        sensors=sensor_rows(central),
    )


def _check_summary(path: str, alerts: str | None) -> None:
    """Say before consuming, not at the end of a run of days, when the summary
    cannot be written where ``--summary`` names it, or would replace the alerts."""
    if path == "-":
        return
    refuse_shared_paths({"--alerts": alerts, "--summary": path}, ())
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise WormwatchError(f"cannot write summary {path}: it is a directory; name a file")
    if not os.path.isdir(directory):
        raise WormwatchError(f"cannot write summary {path}: directory {directory} does not exist")


def write_central_summary(path: str, central: Central, final: Snapshot) -> None:
    """Host records (with ``sensors``) then the network record, as JSON lines.

    A regular file is written beside its final name and renamed into place, as a
    sensor's summary is: it replaces the last run's (appending, a second run left
    two summaries in the file); ``-``, a pipe or ``/dev/null`` is written in place.
    """
    is_renamed = path != "-" and (not os.path.exists(path) or os.path.isfile(path))
    target = path + ".tmp" if is_renamed else path
    with contextlib.suppress(FileNotFoundError):
        if is_renamed:
            os.unlink(target)
    views = central.host_views()
    writer = JsonLinesWriter(target)
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
    if is_renamed:
        os.replace(target, path)


def run_central(cfg: Config, opts: CentralOptions, presenter: Presenter | None) -> Central:
    """Consume and judge until SIGTERM, Ctrl-C or ``duration_s``; write the
    summary. The finished state is returned (tests read it); after Ctrl-C,
    KeyboardInterrupt is raised once everything is written."""
    cluster = cfg.cluster.with_url(opts.url)
    shards = parse_shards(opts.shards, cluster.shards) if opts.shards else (0, cluster.shards - 1)
    check_settings(cluster)
    if opts.summary:
        _check_summary(opts.summary, opts.alerts)
    warm_up("central")
    central = Central(cfg, cluster)
    name = f"central shards {shards[0]}-{shards[1]} of {cluster.url}"
    alerts = JsonLinesWriter(opts.alerts) if opts.alerts else None
    metrics = _metrics(cfg, opts.metrics, alerts)
    # alerts go through the metrics' counter when there is one
    counter = metrics.records if metrics is not None else None
    write_alert = counter.write if counter else alerts.write if alerts else lambda _record: None
    shows: list[Presenter] = [p for p in (presenter, metrics) if p is not None]
    refresh = [0.0]
    stop = asyncio.Event()

    def on_round() -> None:
        # the live table's keys (q quits, as on a sensor; p, s, arrows, /, ?)
        if presenter is not None and presenter.poll_quit():
            stop.set()
        now = time.monotonic()
        if shows and now >= refresh[0]:
            refresh[0] = now + 0.5
            current = snapshot(central, name)
            for show in shows:
                show.update(current)

    consumer = Consumer(central, shards, on_alert=write_alert, on_round=on_round)
    if metrics is not None:
        metrics.watch_cluster(lambda: cluster_health(central, consumer))
    for show in shows:
        show.start()
    try:
        interrupted = asyncio.run(_consume(consumer, opts.duration_s, stop))
        for record in central.judge(all_hosts=True):
            write_alert(record)
    finally:
        if alerts is not None:
            alerts.close()
    final = snapshot(central, name, is_finished=True)
    for show in shows:
        show.stop(final)
        show.close()
    if opts.summary:
        write_central_summary(opts.summary, central, final)
    if interrupted:
        # alerts and summary are written: the CLI ends it as Ctrl-C ends a sensor (130)
        raise KeyboardInterrupt
    return central


def _metrics(
    cfg: Config, address: tuple[str, int] | None, alerts: JsonLinesWriter | None
) -> MetricsServer | None:
    """The central's ``--metrics`` endpoint: merged hosts, verdicts, alerts and the
    cluster's health (deltas applied, consumer lag, sensors' heartbeats)."""
    if address is None:
        return None
    server = MetricsServer(
        address,
        mode="central",
        limits=(("wormwatch_hosts_max", "Size of the host table (max_hosts).", cfg.max_hosts),),
    )
    server.records = RecordCounter(alerts.write if alerts is not None else None)
    print(f"wormwatch: metrics on {server.url}", file=sys.stderr)
    return server


def cluster_health(central: Central, consumer: Consumer) -> ClusterHealth:
    """What ``--metrics`` says of the multi-sensor mode, read at each scrape."""
    stats = consumer.stats
    beats = {h.name: h.last_wall for h in list(central.sensors.values()) if h.last_wall > 0}
    now = central.clock()
    return ClusterHealth(
        deltas_applied=stats.applied,
        deltas_pending=stats.pending,
        deltas_refused=dict(stats.refused),
        consumer_lag={f"shards {consumer.shards[0]}-{consumer.shards[1]}": stats.pending},
        heartbeats=beats,
        sensors_up=sum(1 for wall in beats.values() if now - wall <= SENSOR_UP_S),
    )


async def _consume(consumer: Consumer, duration_s: float | None, stop: asyncio.Event) -> bool:
    """Consume until ``stop``; whether Ctrl-C (SIGINT) was what stopped it."""
    loop = asyncio.get_running_loop()
    interrupted: list[bool] = []

    def on_sigint() -> None:
        interrupted.append(True)
        stop.set()

    for signum, handler in ((signal.SIGINT, on_sigint), (signal.SIGTERM, stop.set)):
        with contextlib.suppress(ValueError, RuntimeError):
            loop.add_signal_handler(signum, handler)
    if duration_s is not None:
        loop.call_later(duration_s, stop.set)
    await consumer.run(stop)
    return bool(interrupted)
