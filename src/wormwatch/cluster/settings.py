"""The ``[cluster]`` section of the config, and the names every process of a
cluster agrees on (stream, subjects, buckets).

In: the TOML table. Out: a :class:`ClusterConfig`. Nothing here talks to the
broker.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from wormwatch.delta import DEFAULT_SHARDS, is_sensor_name
from wormwatch.errors import WormwatchError
from wormwatch.nets import Network
from wormwatch.text import escape_text
from wormwatch.tomltable import TableReader

# JetStream names (docs/CLUSTER.md lists them for the operator's permissions)
DELTA_STREAM = "WORMWATCH_DELTAS"
ALERT_STREAM = "WORMWATCH_ALERTS"
CHECKPOINT_BUCKET = "wormwatch_checkpoints"
TOP_BUCKET = "wormwatch_top"
DELTA_SUBJECT = "wormwatch.delta"  # .<shard>.<sensor>
ALERT_SUBJECT = "wormwatch.alert"  # .<shard>
HEARTBEAT_SUBJECT = "wormwatch.heartbeat"  # .<sensor>
# every sensor publishes a delta per shard per bin, even an empty one
MAX_SHARDS = 1024


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """How this process finds the broker and what it is in the cluster."""

    url: str = "nats://127.0.0.1:4222"
    sensor: str = ""
    shards: int = DEFAULT_SHARDS
    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    networks: tuple[Network, ...] = ()
    split_of_link: tuple[tuple[str, ...], ...] = ()
    buffer_mb: int = 256
    publish_timeout_s: float = 120.0
    duplicate_window_s: float = 3600.0
    retention_s: float = 0.0  # 0: the aggregate's window

    def sensor_name(self) -> str:
        """The configured sensor name, or this machine's host name."""
        return self.sensor or socket.gethostname().split(".")[0] or "sensor"

    def with_url(self, url: str | None) -> ClusterConfig:
        """This config with the command line's URL, when one was given."""
        if not url:
            return self
        return ClusterConfig(**{**_fields(self), "url": url})

    def split_group(self, sensor: str) -> int:
        """Sensors declared a split of one link share a group; others are alone."""
        for k, group in enumerate(self.split_of_link):
            if sensor in group:
                return k + 1
        return 0


def _fields(cfg: ClusterConfig) -> dict[str, Any]:
    return {name: getattr(cfg, name) for name in cfg.__dataclass_fields__}


def field_number(value: object) -> float:
    """A count, score or time from a record another process sent (a heartbeat, a
    central's top record), or 0 for anything that is not a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0


def check_sensor_name(name: str) -> str:
    """A sensor name usable in a subject: ASCII letters, digits, '-' and '_'."""
    if not is_sensor_name(name):
        raise WormwatchError(
            f"sensor name {escape_text(name)!r} must be 1-64 ASCII letters, digits, '-' or "
            "'_' (it becomes part of NATS subjects; a central refuses other names)"
        )
    return name


def parse_shards(text: str, n_shards: int) -> tuple[int, int]:
    """``A-B`` (or ``A``) as an inclusive shard range within ``0..n_shards-1``."""
    lo_text, _, hi_text = text.partition("-")
    try:
        lo = int(lo_text)
        hi = int(hi_text) if hi_text else lo
    except ValueError:
        raise WormwatchError(f"--shards takes A-B (e.g. 0-7), got {text!r}") from None
    if not 0 <= lo <= hi < n_shards:
        raise WormwatchError(f"--shards {text}: must lie within 0-{n_shards - 1}")
    return lo, hi


def _string(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _groups(v: Any) -> tuple[tuple[str, ...], ...] | None:
    if not isinstance(v, list):
        return None
    if all(isinstance(x, str) for x in v):
        v = [v]
    if not all(isinstance(g, list) and all(isinstance(x, str) for x in g) for g in v):
        return None
    return tuple(tuple(g) for g in v)


def read_cluster(r: TableReader) -> ClusterConfig:
    """The ``[cluster]`` table (every key optional)."""
    d = ClusterConfig()
    opt = "must be a non-empty string"
    cfg = ClusterConfig(
        url=r.get("url", d.url, _string, opt),
        sensor=r.get("sensor", d.sensor, _string, opt),
        shards=r.positive_int("shards", d.shards, MAX_SHARDS),
        user=r.get("user", None, _string, opt),
        password=r.get("password", None, _string, opt),
        token=r.get("token", None, _string, opt),
        creds_file=r.get("creds_file", None, _string, opt),
        ca_file=r.get("ca_file", None, _string, opt),
        cert_file=r.get("cert_file", None, _string, opt),
        key_file=r.get("key_file", None, _string, opt),
        networks=r.networks("networks"),
        split_of_link=r.get(
            "split_of_link", (), _groups, "must be a list of sensor names (or of such lists)"
        ),
        buffer_mb=r.positive_int("buffer_mb", d.buffer_mb),
        publish_timeout_s=r.number("publish_timeout_s", d.publish_timeout_s, 0.0, 86400.0),
        duplicate_window_s=r.number("duplicate_window_s", d.duplicate_window_s, 1.0, 7 * 86400.0),
        retention_s=r.number("retention_s", 0.0, 0.0, 365 * 86400.0),
    )
    if cfg.sensor:
        check_sensor_name(cfg.sensor)
    if (cfg.user is None) != (cfg.password is None):
        raise r.fail("user", "and password go together", cfg.user or "(password only)")
    r.done()
    return cfg
