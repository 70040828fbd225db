"""Prometheus metrics: the sensor's counts and health at ``/metrics`` (``--metrics``).

In: whole batches of events (:meth:`EventTally.write_events`, once per batch: DNS
queries by qtype, SYNs by port, batch lag), snapshots (the pipeline's presenter
hook, a few times per second), the source's stats, and what the alert sink counted.
Out: an HTTP endpoint served by ``prometheus_client`` in a daemon thread.

The main thread publishes one immutable
:class:`~wormwatch.present.sinks.metric_families.MetricState` per snapshot; a scrape only
reads the last one, so it never sees half an update and never touches the pipeline.
Nothing here runs per packet.

Other parts of the sensor add their own numbers with
:meth:`MetricsServer.watch_cluster` (the multi-sensor mode: deltas published and
applied, consumer lag, sensor heartbeats), read at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Final

import numpy as np
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from wormwatch import __version__
from wormwatch.errors import WormwatchError
from wormwatch.model import KIND_DNS, KIND_SYN, SYN_PORTS, Events, Snapshot
from wormwatch.present.sinks.metric_families import (
    QTYPE_LABELS,
    QTYPE_NAMES,
    ClusterHealth,
    MetricState,
    capture,
    cluster,
    hosts,
    traffic,
)
from wormwatch.source import Source

DEFAULT_ADDRESS: Final = "127.0.0.1"
_QTYPE_INDEX = np.full(65536, len(QTYPE_LABELS), np.uint8)
for _i, _qtype in enumerate(QTYPE_LABELS):
    _QTYPE_INDEX[_qtype] = _i
_PORT_INDEX = np.full(65536, len(SYN_PORTS), np.uint8)
for _i, _port in enumerate(SYN_PORTS):
    _PORT_INDEX[_port] = _i


def parse_address(text: str) -> tuple[str, int]:
    """``[ADDR:]PORT`` -> (address, port); ``127.0.0.1`` unless an address is given.

    IPv6 addresses go in brackets (``[::1]:9109``).

    Raises:
        ValueError: not a port, or a port outside 0..65535 (0: any free port).
    """
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host = DEFAULT_ADDRESS
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host or not host:
        raise ValueError(f"--metrics {text!r}: use [ADDR:]PORT, an IPv6 address in brackets")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"--metrics {text!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


class EventTally:
    """Counts of each batch's events that the decoder does not keep: DNS queries by
    qtype, SYNs by port, and how far behind the wall clock the newest packet was."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.qtypes = np.zeros(len(QTYPE_NAMES), np.int64)
        self.ports = np.zeros(len(SYN_PORTS) + 1, np.int64)
        self.lag_s: float | None = None
        self._clock = clock

    def write_events(self, events: Events) -> None:
        """Add one batch (vectorised: two bincounts)."""
        n = events.n
        if n == 0:
            return
        kinds = events.kind[:n]
        self.qtypes += np.bincount(
            _QTYPE_INDEX[events.qtype[:n][kinds == KIND_DNS]], minlength=self.qtypes.shape[0]
        )
        self.ports += np.bincount(
            _PORT_INDEX[events.dport[:n][kinds == KIND_SYN]], minlength=self.ports.shape[0]
        )
        self.lag_s = self._clock() - float(events.ts_us[n - 1]) / 1e6


class RecordCounter:
    """An alert sink that counts records by ``event_type`` and passes them on."""

    def __init__(self, inner: Callable[[dict[str, object]], None] | None) -> None:
        self.counts: dict[str, int] = {}
        self._inner = inner

    def write(self, record: dict[str, object]) -> None:
        kind = str(record.get("event_type", ""))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self._inner is not None:
            self._inner(record)


class _Collector:
    """Turns the last published state into metric families at scrape time."""

    def __init__(self, server: MetricsServer) -> None:
        self._server = server

    def collect(self) -> Iterator[Metric]:
        server = self._server
        state = server.state
        info = GaugeMetricFamily(
            "wormwatch_build_info", "wormwatch version and what it reads.",
            labels=["version", "mode"],
        )  # fmt: skip
        info.add_metric([__version__, server.mode], 1.0)
        yield info
        for name, doc, value in server.limits:
            yield GaugeMetricFamily(name, doc, value=value)
        snap = state.snapshot
        if snap is not None:
            yield from traffic(state, snap)
            yield from capture(state, snap)
            yield from hosts(state, snap)
        if server.cluster is not None:
            yield from cluster(server.cluster())


class MetricsServer:
    """``/metrics`` over HTTP, and the presenter that feeds it snapshots.

    Use as a :class:`~wormwatch.pipeline.Presenter` (``update`` publishes a
    snapshot), with :attr:`tally` among the pipeline's event sinks.

    Args:
        address: ``(host, port)``; port 0 picks a free port (see :attr:`port`).
        mode: ``live`` or ``replay`` (the ``wormwatch_build_info`` label).
        source: read for per-worker capture health at each snapshot.
        limits: ``(metric name, help, value)`` gauges that never change
            (table sizes from the config).

    Raises:
        WormwatchError: the address cannot be served (in use, not local, ...).
    """

    def __init__(
        self,
        address: tuple[str, int],
        *,
        mode: str,
        source: Source | None = None,
        limits: Iterable[tuple[str, str, float]] = (),
    ) -> None:
        self.mode = mode
        self.source = source
        self.limits = tuple(limits)
        self.tally = EventTally()
        self.records: RecordCounter | None = None
        self.event_lines: Callable[[], int] | None = None
        self.state = MetricState()
        self.cluster: Callable[[], ClusterHealth] | None = None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        registry.register(ProcessCollector(registry=None))
        host, port = address
        try:
            self._httpd, thread = start_http_server(port, addr=host, registry=registry)
        except OSError as err:
            shown = f"[{host}]" if ":" in host else host
            raise WormwatchError(
                f"cannot serve metrics on {shown}:{port}: {err.strerror or err}"
            ) from None
        self._thread: object | None = thread
        self.port = int(self._httpd.server_port)
        self.host = host

    @property
    def url(self) -> str:
        """Where to scrape, e.g. ``http://127.0.0.1:9109/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def watch_cluster(self, read: Callable[[], ClusterHealth]) -> None:
        """Report the multi-sensor mode's health: ``read`` is called at each scrape
        (in the HTTP thread), so it must return a consistent copy, quickly."""
        self.cluster = read

    # -- the Presenter protocol: the pipeline hands snapshots over ------------------

    def start(self) -> None:
        """Nothing to start: the HTTP server runs from construction."""

    def update(self, snapshot: Snapshot) -> None:
        """Publish ``snapshot`` (and the tallies of the batches so far) to scrapes."""
        tally = self.tally
        self.state = MetricState(
            snapshot=snapshot,
            source=self.source.stats() if self.source is not None else None,
            qtypes=tuple(int(x) for x in tally.qtypes),
            ports=tuple(int(x) for x in tally.ports),
            lag_s=tally.lag_s,
            records=dict(self.records.counts) if self.records is not None else {},
            event_lines=self.event_lines() if self.event_lines is not None else None,
        )

    def poll_quit(self) -> bool:
        return False

    def stop(self, final: Snapshot) -> None:
        """Publish the final snapshot; the server keeps serving until :meth:`close`."""
        self.update(final)

    def close(self) -> None:
        """Stop serving (idempotent)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread = None
