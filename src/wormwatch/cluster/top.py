"""What a central process tells the view: its top hosts, its sensors, its
overlap warnings, as one JSON-able record in the ``wormwatch_top`` bucket.

In: a :class:`~wormwatch.cluster.central.Central`. Out: plain dicts (the
view merges those of every central process and ranks them again).
"""

from __future__ import annotations

import time

from wormwatch.cluster.central import TOP_HOSTS, Central
from wormwatch.model import (
    C_MX,
    C_QUERIES,
    C_SYN135,
    C_SYN139,
    C_SYN445,
    C_SYN_DST_NEW,
)


def top_record(central: Central, key: str, lag_s: float) -> dict[str, object]:
    """This process's top hosts (ranked), sensors panel and warnings."""
    hosts = []
    for host, view in central.host_views(TOP_HOSTS):
        t = view.state.totals
        hosts.append(
            {
                "src_ip": view.state.addr,
                "score": round(float(view.verdict.score), 1),
                "verdicts": list(view.verdict.verdicts),
                "queries": int(t[C_QUERIES]),
                "mx": int(t[C_MX]),
                "syns": int(t[C_SYN135] + t[C_SYN139] + t[C_SYN445]),
                "syn_targets": int(t[C_SYN_DST_NEW]),
                "last_seen_us": int(view.state.last_seen_us),
                "sensors": central.sensors_of(host),
            }
        )
    return {
        "central": key,
        "wall": time.time(),
        "hosts_tracked": central.agg.n_hosts,
        "lag_s": round(lag_s, 2),
        "alerts": central.n_alerts,
        "hosts": hosts,
        "sensors": sensor_rows(central),
        "overlaps": central.warnings(),
        "n_overlaps": central.n_overlaps,
    }


def sensor_rows(central: Central) -> list[dict[str, object]]:
    """One row of the sensors panel per sensor, by name.

    ``lag_s`` is how far the sensor's packet time (its last heartbeat) runs
    ahead of the end of the newest bin merged from it: 0 while the central
    keeps up; None before both are known.
    """
    now = central.clock()
    bin_s = central.agg.bin_s
    rows: list[dict[str, object]] = []
    for h in sorted(central.sensors.values(), key=lambda h: h.name):
        lag = None
        if h.packet_us > 0 and h.newest_bin >= 0:
            lag = round(max(0.0, h.packet_us / 1e6 - (h.newest_bin + 1) * bin_s), 1)
        rows.append(
            {
                "sensor": h.name,
                "packets_per_s": h.packets_per_s,
                "kernel_dropped": h.kernel_dropped,
                "heartbeat_age_s": round(now - h.last_wall, 1) if h.last_wall else None,
                "lag_s": lag,
                "newest_bin": h.newest_bin,
                "bin_s": bin_s,
                "buffered": h.buffered,
                "dropped": h.dropped,
                "clock_skewed": h.is_skewed(),
            }
        )
    return rows
