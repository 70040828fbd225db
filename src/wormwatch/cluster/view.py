"""The view's data: every central process's top record, merged.

In: the ``wormwatch_top`` bucket (one record per central process, see
:mod:`wormwatch.cluster.top`). Out: :class:`MergedView`, hosts ranked by
score then activity across all processes, the sensors panel (the freshest
heartbeat of each sensor), and the warnings. Records come from the broker:
they are checked for shape here and escaped by the presenter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import nats.js.errors

from wormwatch.cluster.broker import JS_TIMEOUT_S, connect, describe
from wormwatch.cluster.settings import TOP_BUCKET, ClusterConfig, field_number
from wormwatch.errors import WormwatchError

# a central puts its record every 2 s: one this much older is from a central that stopped
CENTRAL_SILENT_S = 15.0


@dataclass(slots=True)
class MergedView:
    hosts: list[dict[str, Any]] = field(default_factory=list)
    sensors: list[dict[str, Any]] = field(default_factory=list)
    centrals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _activity(row: dict[str, Any]) -> float:
    return field_number(row.get("queries")) + field_number(row.get("syns"))


def merge_top(
    records: list[dict[str, Any]], limit: int = 50, *, now: float | None = None
) -> MergedView:
    """One ranking over the central processes' records (their shards are
    disjoint, so a host appears in one record only). A record is as of its
    ``wall``: its heartbeat ages are aged by the time since (a stopped central's
    record stays in the bucket, and its sensors showed "17 s ago" for ever)."""
    view = MergedView()
    now = time.time() if now is None else now
    sensors: dict[str, dict[str, Any]] = {}
    for rec in sorted(records, key=lambda r: str(r.get("central", ""))):
        central = str(rec.get("central", "?"))
        view.centrals.append(central)
        since = max(0.0, now - field_number(rec.get("wall"))) if "wall" in rec else 0.0
        if since > CENTRAL_SILENT_S:
            view.warnings.append(
                f"central {central}: no report for {since:.0f} s (stopped, or cut off from "
                "the broker?): its hosts and sensors are as they were then"
            )
        view.hosts.extend(h for h in rec.get("hosts", []) if isinstance(h, dict))
        for row in rec.get("sensors", []):
            if not isinstance(row, dict):
                continue
            s = dict(row)
            name = str(s.get("sensor", "?"))
            old = sensors.get(name)
            age = s.get("heartbeat_age_s")
            if isinstance(age, int | float) and not isinstance(age, bool):
                age = s["heartbeat_age_s"] = round(age + since, 1)
            if old is None or (age is not None and (old.get("heartbeat_age_s") or 1e18) > age):
                sensors[name] = s
        view.warnings.extend(str(w) for w in rec.get("overlaps", []))
    view.hosts.sort(key=lambda h: (-field_number(h.get("score")), -_activity(h)))
    del view.hosts[limit:]
    view.sensors = [sensors[k] for k in sorted(sensors)]
    for s in view.sensors:
        if s.get("clock_skewed"):
            view.warnings.append(f"sensor {s.get('sensor')}: clock differs from packet time")
    return view


async def read_top(cluster: ClusterConfig) -> list[dict[str, Any]]:
    """Every central process's latest record."""
    said: deque[str] = deque(maxlen=1)
    nc = await connect(cluster, name="wormwatch-view", on_error=said.append)
    try:
        js = nc.jetstream(timeout=JS_TIMEOUT_S)
        try:
            kv = await js.key_value(TOP_BUCKET)
        except nats.js.errors.BucketNotFoundError:
            return []
        out = []
        with contextlib.suppress(nats.js.errors.NoKeysError):
            for key in await kv.keys():
                entry = await kv.get(key)
                with contextlib.suppress(ValueError):
                    rec = json.loads(entry.value or b"{}")
                    if isinstance(rec, dict):
                        out.append(rec)
        return out
    except (nats.errors.Error, TimeoutError) as err:
        raise WormwatchError(describe(err, said)) from None
    finally:
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await nc.close()


def fetch_view(cluster: ClusterConfig) -> MergedView:
    return merge_top(asyncio.run(read_top(cluster)))
