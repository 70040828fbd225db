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
    now = central.clock()
    sensors = [
        {
            "sensor": h.name,
            "packets_per_s": h.packets_per_s,
            "kernel_dropped": h.kernel_dropped,
            "heartbeat_age_s": round(now - h.last_wall, 1) if h.last_wall else None,
            "newest_bin": h.newest_bin,
            "bin_s": central.agg.bin_s,
            "buffered": h.buffered,
            "dropped": h.dropped,
            "clock_skewed": h.is_skewed(),
        }
        for h in sorted(central.sensors.values(), key=lambda h: h.name)
    ]
    return {
        "central": key,
        "wall": time.time(),
        "hosts_tracked": central.agg.n_hosts,
        "lag_s": round(lag_s, 2),
        "alerts": central.n_alerts,
        "hosts": hosts,
        "sensors": sensors,
        "overlaps": list(central.overlaps),
        "n_overlaps": central.n_overlaps,
    }
