"""Central side: the merged aggregate of the shards this process owns, judged
with the sensor's own detectors.

In: decoded deltas (from :mod:`wormwatch.cluster.consume`) and heartbeats.
Out: alert records (today's schema plus ``sensors``), host views for the
table and the summary, the sensors panel, and overlap warnings.

Detection runs only on merged state, by the sensor's own
:class:`~wormwatch.judge.Judge`: after each round of applied deltas the hosts
they touched are judged again (a late delta re-judges its host).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wormwatch.aggregate import Aggregator
from wormwatch.aggregate.hosts import Renumbering
from wormwatch.aggregate.merge import DeltaMerger, _merge_into
from wormwatch.cluster.settings import ClusterConfig, field_number
from wormwatch.config import Config
from wormwatch.delta import Delta, is_sensor_name
from wormwatch.judge import Judge
from wormwatch.kernels.aggregate import MERGE_ADD
from wormwatch.model import I64, HostView
from wormwatch.tables import KeyTable
from wormwatch.text import iso_time

MAX_SENSORS = 64
TOP_HOSTS = 50
# the overlap check looks at the deltas of the newest bins this many (a late
# delta of an older bin is merged, not checked)
REPORT_BINS = 3
# a sensor whose heartbeat is this far from our clock is flagged
SKEW_S = 30.0
# a delta whose packet time is further than this past our wall clock is refused: a
# sensor whose clock runs ahead would move merged packet time on, and every other
# sensor's deltas would fall behind the window, judged by nothing
AHEAD_S = 300.0


@dataclass(slots=True)
class SensorHealth:
    """The latest heartbeat of one sensor, as the sensors panel shows it."""

    name: str
    packets_per_s: float = 0.0
    kernel_dropped: int | None = None
    packet_us: int = -1
    is_live: bool = False
    buffered: int = 0
    dropped: int = 0
    last_wall: float = 0.0
    skew_s: float = 0.0
    newest_bin: int = -1
    # how far its last refused delta ran ahead of our clock (0: none since one merged)
    ahead_s: float = 0.0

    def is_skewed(self) -> bool:
        """Its wall clock differs from ours, or (live) its packet time from its wall
        clock, or its last delta was refused as ahead of our clock."""
        if abs(self.skew_s) > SKEW_S or self.ahead_s > 0:
            return True
        return (
            self.is_live
            and self.packet_us > 0
            and abs(self.last_wall - self.packet_us / 1e6) > SKEW_S
        )


class Central:
    """Merged state, verdicts and sensors of one central process."""

    def __init__(
        self, cfg: Config, cluster: ClusterConfig, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.cfg = cfg
        self.cluster = cluster
        self.clock = clock
        # the sensor's judge, on merged state; an alert also names the sensors that saw it
        self.judger = Judge(cfg, annotate=self._name_sensors)
        self.agg = Aggregator(
            bin_s=cfg.bin_s,
            window_s=cfg.window_s,
            max_hosts=cfg.max_hosts,
            max_host_bins=cfg.max_host_bins,
            ignore=cfg.ignore,
            allowlisted=(*cfg.mail_servers, *cfg.resolvers),
            protect=self.judger.protected,
        )
        self.merger = DeltaMerger(self.agg)
        self.sensor_ids: dict[str, int] = {}
        self.seen_by = np.zeros(cfg.max_hosts, np.uint64)
        self.sensors: dict[str, SensorHealth] = {}
        # per bin, its (host, reporter) and (host) keys, of the newest bins only
        self._reports: dict[int, KeyTable] = {}
        self.overlaps: list[str] = []
        self.n_overlaps = 0
        # per sensor whose heartbeat names another [cluster] shards than ours, what to say
        self.shard_mismatches: dict[str, str] = {}
        self.started_wall = clock()

    # -- merging ---------------------------------------------------------------------

    def apply(self, delta: Delta) -> bool:
        """Merge one delta; False when its identity was applied before."""
        applied = self.merger.apply(delta)
        if applied is None:
            return False
        if applied.renumbering is not None:
            self._renumber(applied.renumbering)
        host = applied.hosts
        sensor = delta.ident.sensor
        bit = np.uint64(1) << np.uint64(self._sensor_id(sensor))
        ok = host[host >= 0]
        self.seen_by[ok] |= bit
        self._check_overlap(delta, ok)
        health = self.sensors.setdefault(sensor, SensorHealth(sensor))
        health.newest_bin = max(health.newest_bin, delta.ident.bin)
        health.ahead_s = 0.0
        return True

    def refusal(self, delta: Delta) -> tuple[str, str] | None:
        """Why ``delta`` is not to be merged, as (kind, what to say); None to merge it.

        ``bin_s``: its bins are of another length. ``clock``: its packet time runs
        more than :data:`AHEAD_S` past our wall clock (a sensor whose clock is
        wrong); merged, it would move packet time on and the window with it, and
        every other sensor's deltas would be counted in totals only. A replay of an
        old capture runs behind the wall clock and is never refused.
        """
        mismatch = self.merger.mismatch(delta)
        if mismatch is not None:
            return "bin_s", f"{mismatch}: give every sensor and central the same [aggregate] bin_s"
        latest_us = max(delta.seen_last_us, delta.ident.bin * delta.bin_s * 1_000_000)
        ahead_s = latest_us / 1e6 - self.clock()
        if ahead_s <= AHEAD_S:
            return None
        health = self.sensors.setdefault(delta.ident.sensor, SensorHealth(delta.ident.sensor))
        health.ahead_s = ahead_s
        return "clock", (
            f"its packet time {iso_time(latest_us)} is {ahead_s:,.0f} s ahead of this "
            f"central's clock, more than {AHEAD_S:.0f} s: set the sensor's clock right (NTP); "
            "its deltas would move the window on and the other sensors' would be judged by nothing"
        )

    def _sensor_id(self, sensor: str) -> int:
        sid = self.sensor_ids.get(sensor)
        if sid is None:
            sid = len(self.sensor_ids) % MAX_SENSORS
            self.sensor_ids[sensor] = sid
        return sid

    def _check_overlap(self, delta: Delta, host: I64) -> None:
        """Two sensors (not declared a split of one link) that report one host
        in one bin mirror the same packets: warn, naming the host."""
        n = int(host.shape[0])
        if n == 0:
            return
        sensor = delta.ident.sensor
        group = self.cluster.split_group(sensor)
        # a split of one link reports as one; any other sensor as itself
        reporter = group if group else MAX_SENSORS + 1 + self._sensor_id(sensor)
        reports = self._reports_of(delta.ident.bin)
        if reports is None:
            return
        bins = np.full(n, delta.ident.bin, np.uint64)
        who = np.full(n, reporter, np.uint64)
        first, _old, _ = _merge_into(reports, host, bins, who, np.ones(n, np.int64), MERGE_ADD)
        fresh = host[first == 1]
        if fresh.shape[0] == 0:
            return
        z = np.zeros(fresh.shape[0], np.uint64)
        b = np.full(fresh.shape[0], delta.ident.bin, np.uint64)
        count, _old, _ = _merge_into(
            reports, fresh, b, z, np.ones(fresh.shape[0], np.int64), MERGE_ADD
        )
        twice = fresh[count == 0]
        if twice.shape[0]:
            self.n_overlaps += int(twice.shape[0])
            addr = self.agg.host_states(twice[:1], with_prefixes=False)[0].addr
            others = sorted(set(self.sensors_of(int(twice[0]))) - {sensor})
            self.overlaps = [
                f"sensors {', '.join([*others, sensor])} report host {addr} in the same bin: "
                "give them disjoint [cluster] networks, or declare them split_of_link"
            ]

    def _reports_of(self, b: int) -> KeyTable | None:
        """Bin ``b``'s report keys, or None when it is older than the newest
        ``REPORT_BINS`` (a sensor that mirrors another's packets reports the same
        hosts bin after bin, so the newest bins tell; older tables go, and the
        check's memory stays that of a few bins however long the central runs)."""
        table = self._reports.get(b)
        if table is None:
            newest = max(b, max(self._reports, default=b))
            if b <= newest - REPORT_BINS:
                return None
            for old in [k for k in self._reports if k <= newest - REPORT_BINS]:
                del self._reports[old]
            table = self._reports[b] = KeyTable(self.cfg.max_host_bins)
        return table

    def sensors_of(self, host: int) -> list[str]:
        """Names of the sensors whose deltas carried ``host``."""
        mask = int(self.seen_by[host])
        return sorted(name for name, sid in self.sensor_ids.items() if mask >> sid & 1)

    def _name_sensors(self, host: int, record: dict[str, object]) -> None:
        record["sensors"] = self.sensors_of(host)

    def _renumber(self, renumbering: Renumbering) -> None:
        """Follow the aggregate's renumbering after an eviction."""
        self.judger.renumber(renumbering)
        self.seen_by = renumbering.follow_array(self.seen_by)
        for reports in self._reports.values():
            reports.remap(renumbering.mapping, host_is_value=False)

    # -- judging and reading out (the sensor's judge) ------------------------------

    @property
    def n_alerts(self) -> int:
        return self.judger.n_alerts

    def judge(self, *, all_hosts: bool = False) -> list[dict[str, object]]:
        """Judge the hosts merged into since the last call (every judged host with
        ``all_hosts``, at the end); their alert records."""
        if all_hosts:
            return self.judger.finish(self.agg)
        return self.judger.judge(self.agg)

    def host_views(self, limit: int | None = None) -> list[tuple[int, HostView]]:
        """(host id, view) ranked by score then activity, re-scored first (as a
        sensor's table is): deltas merged since the last judgement show, and a
        view's evidence is of the counts it shows."""
        self.judger.rescore(self.agg)
        ids = self.judger.ranked(self.agg, limit)
        views = self.judger.views_of(self.agg, ids)
        return list(zip(ids.tolist(), views, strict=True))

    def network(self) -> tuple[float | None, dict[str, object] | None]:
        """(network-wide sync r, its evidence) of the merged series."""
        return self.judger.network_sync(self.agg), self.judger.network_evidence(self.agg)

    def heartbeat(self, fields: dict[str, object]) -> None:
        """Take one sensor heartbeat (JSON fields as the publisher sends them)."""
        name = str(fields.get("sensor", ""))
        if not is_sensor_name(name):
            return  # as a delta from it would be: no sensor publishes such a name
        h = self.sensors.setdefault(name, SensorHealth(name))
        now = self.clock()
        h.packets_per_s = field_number(fields.get("packets_per_s"))
        dropped = fields.get("kernel_dropped")
        h.kernel_dropped = int(dropped) if isinstance(dropped, int) else None
        h.packet_us = int(field_number(fields.get("packet_us")))
        h.is_live = bool(fields.get("is_live"))
        h.buffered = int(field_number(fields.get("buffered")))
        h.dropped = int(field_number(fields.get("dropped")))
        h.skew_s = field_number(fields.get("wall")) - now
        h.last_wall = now
        shards = fields.get("shards")
        if isinstance(shards, int) and shards != self.cluster.shards:
            self.shard_mismatches[name] = (
                f"sensor {name} hashes hosts into {shards} shards, this central "
                f"{self.cluster.shards}: some of its hosts reach no central, or the wrong "
                "one; give every sensor and central the same [cluster] shards"
            )
        else:
            self.shard_mismatches.pop(name, None)

    def warnings(self) -> list[str]:
        """What the view should warn of: sensors that overlap, sensors whose
        shard count is not ours, more sensors than a host's sensor set tells apart."""
        out = [*self.overlaps, *self.shard_mismatches.values()]
        if len(self.sensor_ids) > MAX_SENSORS:
            out.append(
                f"{len(self.sensor_ids)} sensors, more than the {MAX_SENSORS} a host's "
                "sensors are told apart by: an alert's and a summary's sensors lists may "
                "name sensors that did not see the host, and overlaps may be missed"
            )
        return out
