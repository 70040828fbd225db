"""Sensor side glue: sees every batch the pipeline decodes and every snapshot
it shows, turns them into deltas and heartbeats for the publisher.

In: events (as an event sink of the pipeline) and snapshots (as a presenter).
Out: :class:`~wormwatch.delta.Delta` values closed bin by bin, handed to the
:class:`~wormwatch.cluster.publisher.Publisher`; at the end, whatever is still
open. The sensor's own aggregate, alerts and summaries are untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from wormwatch.aggregate.export import DeltaExporter, take_events
from wormwatch.classify import Classifier
from wormwatch.cluster.broker import check_settings, stderr_line
from wormwatch.cluster.publisher import Publisher
from wormwatch.cluster.settings import check_sensor_name
from wormwatch.config import Config
from wormwatch.errors import WormwatchError
from wormwatch.model import Events, Snapshot
from wormwatch.nets import NetMask, in_networks
from wormwatch.pipeline import RunResult


class ClusterSensor:
    """An event sink and presenter that publishes this sensor's deltas."""

    def __init__(
        self,
        cfg: Config,
        *,
        sensor: str,
        url: str | None = None,
        warn: Callable[[str], None] = stderr_line,
    ) -> None:
        cluster = cfg.cluster.with_url(url)
        self.sensor = sensor
        self.classifier = Classifier(cfg.keywords)
        self._ignore = [NetMask.of(n) for n in cfg.ignore]
        self.exporter = DeltaExporter(
            sensor=sensor,
            bin_s=cfg.bin_s,
            n_shards=cluster.shards,
            owned=cluster.networks,
            max_hosts=cfg.max_hosts,
            window_s=cfg.window_s,
        )
        self.publisher = Publisher(cluster, sensor=sensor, window_s=cfg.window_s, warn=warn)
        self.timeout_s = cluster.publish_timeout_s
        self.url = cluster.url
        self.publisher.start()

    # -- event sink -------------------------------------------------------------

    def write_events(self, events: Events) -> None:
        n = events.n
        if self._ignore:
            keep = ~in_networks(events.src_hi[:n], events.src_lo[:n], self._ignore)
            if not keep.all():
                events = take_events(events, np.nonzero(keep)[0])
        self.exporter.ingest(events, self.classifier.classify(events))
        self.publisher.submit(self.exporter.close_due())

    # -- presenter --------------------------------------------------------------

    def start(self) -> None:
        """Nothing to start: the publisher runs from construction."""

    def update(self, snapshot: Snapshot) -> None:
        if snapshot.is_live:
            # a quiet link still closes its bins (live packets carry wall-clock time)
            self.exporter.advance(int(time.time() * 1e6))
            self.publisher.submit(self.exporter.close_due())
        self.publisher.heartbeat(
            {
                "packets_per_s": round(snapshot.packets_per_s, 1),
                "kernel_dropped": snapshot.kernel_dropped,
                "packet_us": snapshot.now_us,
                "is_live": snapshot.is_live,
                "hosts": snapshot.hosts_tracked,
                "sensed_at": time.time(),
            }
        )

    def poll_quit(self) -> bool:
        return False

    def stop(self, final: Snapshot) -> None:
        self.update(final)

    def close(self) -> None:
        """Nothing: :meth:`finish` ends publishing (after the run's last batch)."""

    # -- the end ----------------------------------------------------------------

    def finish(self) -> int:
        """Publish the open bins and wait for the broker's acknowledgements
        (up to ``publish_timeout_s``); how many deltas were not acknowledged."""
        self.publisher.submit(self.exporter.close_all())
        return self.publisher.close(self.timeout_s)

    def finish_run(self, result: RunResult, *, is_live: bool) -> None:
        """:meth:`finish`, said in ``result``: a replay whose deltas did not
        all reach the broker ends with an error (exit 3), live with a warning."""
        missing = self.finish()
        counts = self.publisher.counts
        line = (
            f"cluster: {counts.acknowledged} deltas acknowledged by {self.url}"
            f" ({counts.duplicates} already there), {missing} not"
        )
        if missing and not is_live and result.error is None:
            result.error = WormwatchError(f"{line}: the broker did not confirm them", exit_code=3)
        elif missing:
            result.warnings.append(line)


def open_sensor(cfg: Config, *, url: str, name: str | None) -> ClusterSensor:
    """The sensor side of ``--publish URL [--sensor NAME]``."""
    sensor = check_sensor_name(name or cfg.cluster.sensor_name())
    check_settings(cfg.cluster.with_url(url))
    return ClusterSensor(cfg, sensor=sensor, url=url)
