"""Metric families of the sensor, built from one published :class:`MetricState`.

In: a :class:`MetricState` (a snapshot, source stats and per-batch tallies, as
:mod:`wormwatch.present.sinks.metrics` published them) or a :class:`ClusterHealth`.
Out: ``prometheus_client`` metric families, named per Prometheus conventions
(``wormwatch_*``, counters ending in ``_total``, units in the name).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from wormwatch.model import STATUS_NAMES, SYN_PORTS, Snapshot
from wormwatch.source import SourceStats

# qtypes with a label of their own (RFC 1035, 3596, 2782, 9460); the rest are "other"
QTYPE_LABELS: Final = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT",
    28: "AAAA", 33: "SRV", 64: "SVCB", 65: "HTTPS", 255: "ANY",
}  # fmt: skip
QTYPE_NAMES: Final = (*QTYPE_LABELS.values(), "other")


@dataclass(frozen=True, slots=True)
class ClusterHealth:
    """What the multi-sensor mode reports (:meth:`MetricsServer.watch_cluster`).

    ``consumer_lag`` maps a consumer (or shard) to the messages it has not yet
    applied; ``deltas_refused`` maps why to the deltas a central acknowledged
    without merging them; ``heartbeats`` maps a sensor name to the wall time
    (seconds since the epoch) of its last heartbeat; ``sensors_up`` counts the
    sensors whose last heartbeat is recent, as the central process judges it.
    """

    deltas_published: int = 0
    deltas_applied: int = 0
    deltas_pending: int = 0
    deltas_refused: Mapping[str, int] = field(default_factory=dict)
    consumer_lag: Mapping[str, int] = field(default_factory=dict)
    heartbeats: Mapping[str, float] = field(default_factory=dict)
    sensors_up: int | None = None


@dataclass(frozen=True, slots=True)
class MetricState:
    snapshot: Snapshot | None = None
    source: SourceStats | None = None
    qtypes: tuple[int, ...] = (0,) * len(QTYPE_NAMES)
    ports: tuple[int, ...] = (0,) * (len(SYN_PORTS) + 1)
    lag_s: float | None = None
    records: Mapping[str, int] = field(default_factory=dict)
    event_lines: int | None = None


def _counter(name: str, doc: str, value: float | None) -> Iterator[Metric]:
    if value is not None:
        yield CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float | None) -> Iterator[Metric]:
    if value is not None:
        yield GaugeMetricFamily(name, doc, value=value)


def _labelled(
    family: CounterMetricFamily | GaugeMetricFamily, pairs: Iterable[tuple[str, float]]
) -> Metric:
    for label, value in pairs:
        family.add_metric([label], value)
    return family


def traffic(state: MetricState, snap: Snapshot) -> Iterator[Metric]:
    decode = snap.decode
    yield from _counter(
        "wormwatch_packets", "Packets read from the source (after the capture filter).",
        decode.get("packets", 0),
    )  # fmt: skip
    yield from _counter(
        "wormwatch_captured_bytes", "Captured bytes of the packets read.", decode.get("bytes", 0)
    )
    status = CounterMetricFamily(
        "wormwatch_decoded_packets", "Packets by decode status.", labels=["status"]
    )
    yield _labelled(status, ((name, decode.get(name, 0)) for name in STATUS_NAMES))
    kinds = CounterMetricFamily(
        "wormwatch_events",
        "Counted events: DNS queries, DNS answers and SYNs to 135/139/445.",
        labels=["kind"],
    )
    pairs = (
        ("dns-query", decode.get("dns_queries", 0)),
        ("dns-answer", decode.get("dns_answers", 0)),
        ("syn", decode.get("syns", 0)),
    )
    yield _labelled(kinds, pairs)
    qtypes = CounterMetricFamily(
        "wormwatch_dns_queries", "DNS queries by the first question's type.", labels=["qtype"]
    )
    yield _labelled(qtypes, zip(QTYPE_NAMES, state.qtypes, strict=True))
    ports = CounterMetricFamily(
        "wormwatch_syns", "TCP SYNs without ACK by destination port.", labels=["port"]
    )
    yield _labelled(ports, zip((str(p) for p in SYN_PORTS), state.ports, strict=False))


def capture(state: MetricState, snap: Snapshot) -> Iterator[Metric]:
    yield from _counter(
        "wormwatch_kernel_received_packets",
        "Packets the kernel's capture filter admitted (live capture).",
        snap.kernel_received,
    )
    yield from _counter(
        "wormwatch_kernel_dropped_packets",
        "Packets the kernel dropped because the sensor did not read them in time.",
        snap.kernel_dropped,
    )
    yield from _counter(
        "wormwatch_interface_dropped_packets",
        "Packets the interface dropped before the capture saw them.",
        snap.interface_dropped,
    )
    yield from _gauge(
        "wormwatch_batch_lag_seconds",
        "Wall clock minus the newest packet's time when its batch was counted (live).",
        state.lag_s if snap.is_live else None,
    )
    yield from _gauge(
        "wormwatch_idle_seconds",
        "Seconds since the last DNS query or SYN was counted (packet time on replay).",
        snap.idle_s,
    )
    yield from _gauge(
        "wormwatch_last_packet_timestamp_seconds",
        "Packet time of the newest counted event, seconds since the epoch.",
        snap.now_us / 1e6 if snap.now_us > 0 else None,
    )
    workers = state.source.workers if state.source is not None else ()
    if workers:
        up = GaugeMetricFamily("wormwatch_worker_up", "Capture worker alive.", labels=["worker"])
        yield _labelled(up, ((str(i), float(w.is_alive)) for i, w in enumerate(workers)))
        for name, doc, attr in (
            ("received", "Packets the kernel admitted, per capture worker.", "kernel_received"),
            ("dropped", "Packets the kernel dropped, per capture worker.", "kernel_dropped"),
        ):
            family = CounterMetricFamily(
                f"wormwatch_worker_kernel_{name}_packets", doc, labels=["worker"]
            )
            yield _labelled(family, ((str(i), getattr(w, attr)) for i, w in enumerate(workers)))


def hosts(state: MetricState, snap: Snapshot) -> Iterator[Metric]:
    yield from _gauge("wormwatch_hosts_tracked", "Source hosts tracked now.", snap.hosts_tracked)
    yield from _counter(
        "wormwatch_host_evictions",
        "Hosts evicted from a full host table.",
        snap.hosts_dropped,
    )
    yield from _counter(
        "wormwatch_untracked_events",
        "Events of new hosts refused because the host table was full.",
        snap.events_untracked,
    )
    yield from _counter(
        "wormwatch_distinct_keys_refused",
        "Distinct-set keys (SYN targets, names, name prefixes) refused by a full table.",
        snap.keys_refused,
    )
    yield from _counter(
        "wormwatch_distinct_keys_dropped",
        "Distinct-set keys last seen before the window, dropped from a table about to fill.",
        snap.keys_dropped,
    )
    flagged = GaugeMetricFamily(
        "wormwatch_flagged_hosts", "Hosts that hold a verdict now.", labels=["verdict"]
    )
    yield _labelled(flagged, sorted(snap.flagged.items()))
    yield from _counter(
        "wormwatch_alerts", "Alerts raised (written to --alerts when given).",
        state.records.get("alert", 0),
    )  # fmt: skip
    yield from _counter(
        "wormwatch_event_log_lines", "Lines written to the --events log.", state.event_lines
    )
    frag = {k[5:]: v for k, v in snap.decode.items() if k.startswith("frag_")}
    if frag:
        yield from _gauge(
            "wormwatch_reassembly_pending_datagrams",
            "IP datagrams waiting for fragments in the reassembly pool.",
            frag.get("pending"),
        )
        yield from _counter(
            "wormwatch_reassembled_datagrams",
            "IP datagrams completed by reassembly.",
            frag.get("reassembled"),
        )
        outcomes = CounterMetricFamily(
            "wormwatch_reassembly_fragments", "Fragments given up, by why.", labels=["outcome"]
        )
        names = ("timed_out", "evicted", "overlapping", "bad")
        yield _labelled(outcomes, ((name, frag.get(name, 0)) for name in names))


def cluster(health: ClusterHealth) -> Iterator[Metric]:
    yield from _counter(
        "wormwatch_cluster_deltas_published",
        "Per-host deltas published to the broker and acknowledged.",
        health.deltas_published,
    )
    yield from _counter(
        "wormwatch_cluster_deltas_applied",
        "Per-host deltas merged into this process's aggregate.",
        health.deltas_applied,
    )
    yield from _gauge(
        "wormwatch_cluster_deltas_pending",
        "Deltas kept for publishing while the broker cannot take them.",
        health.deltas_pending,
    )
    if health.deltas_refused:
        refused = CounterMetricFamily(
            "wormwatch_cluster_deltas_refused",
            "Deltas acknowledged and not merged, by why (malformed; bin_s: bins of "
            "another length).",
            labels=["reason"],
        )
        yield _labelled(refused, sorted(health.deltas_refused.items()))
    lag = GaugeMetricFamily(
        "wormwatch_cluster_consumer_lag_messages",
        "Messages a durable consumer has not applied yet.",
        labels=["consumer"],
    )
    yield _labelled(lag, sorted(health.consumer_lag.items()))
    beats = GaugeMetricFamily(
        "wormwatch_cluster_sensor_heartbeat_timestamp_seconds",
        "Wall time of each sensor's last heartbeat, seconds since the epoch.",
        labels=["sensor"],
    )
    yield _labelled(beats, sorted(health.heartbeats.items()))
    yield from _gauge(
        "wormwatch_cluster_sensors_up", "Sensors whose heartbeat is recent.", health.sensors_up
    )
