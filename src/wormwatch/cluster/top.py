"""What a central process tells the view: its top hosts, its sensors, its
overlap warnings, as one JSON-able record in the ``wormwatch_top`` bucket.

In: a :class:`~wormwatch.cluster.central.Central`. Out: plain dicts (the
view merges those of every central process and ranks them again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from wormwatch.cluster.broker import bucket
from wormwatch.cluster.central import TOP_HOSTS, Central
from wormwatch.cluster.settings import TOP_BUCKET, field_number
from wormwatch.errors import WormwatchError
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


def _shards(key: str) -> tuple[int, int] | None:
    """The shard range of a ``central-A-B`` key."""
    parts = key.split("-")
    try:
        return int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return None


async def _fresh(top: KeyValue, key: str, every_s: float) -> dict[str, int]:
    """The other central processes whose shard ranges meet ``key``'s and whose
    record is recent: their keys and record revisions."""
    mine = _shards(key)
    try:
        keys = await top.keys()
    except nats.js.errors.NoKeysError:
        return {}
    fresh: dict[str, int] = {}
    for other in keys:
        theirs = _shards(other)
        if mine is None or theirs is None or theirs[1] < mine[0] or theirs[0] > mine[1]:
            continue
        with contextlib.suppress(nats.js.errors.KeyNotFoundError, ValueError, AttributeError):
            entry = await top.get(other)
            wall = field_number(json.loads(entry.value or b"{}").get("wall"))
            if time.time() - wall <= 5 * every_s:
                fresh[other] = int(entry.revision or 0)
    return fresh


async def check_alone(js: JetStreamContext, key: str, every_s: float) -> None:
    """Refuse to start beside a running central process whose shards meet ours. One of
    the same range (``key``) shares our durable consumer's deltas, each merging about
    half of them, and both alert and summarise wrongly; one of an overlapping range
    judges and alerts the shared shards' hosts a second time. Nothing said so. One
    that runs puts its record every ``every_s``: a fresh record that changes again."""
    top = await bucket(js, TOP_BUCKET)
    fresh = await _fresh(top, key, every_s)
    if not fresh:
        return
    await asyncio.sleep(2 * every_s)
    for other, revision in sorted(fresh.items()):
        try:
            if int((await top.get(other)).revision or 0) == revision:
                continue
        except nats.js.errors.KeyNotFoundError:
            continue
        if other == key:
            raise WormwatchError(
                f"another central process is consuming the same shards ({key}): two would "
                "split its deltas between them and both be wrong; stop it, or give each its "
                "own --shards"
            )
        raise WormwatchError(
            f"central process {other} is consuming shards that overlap ours ({key}): their "
            "hosts would be judged and alerted twice; give each central disjoint --shards"
        )
