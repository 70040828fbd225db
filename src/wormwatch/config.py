"""Configuration: every threshold, the time bins, the keyword set, the allowlists.

In: an optional TOML file (``--config``), read with the standard library's
``tomllib``. Out: one frozen :class:`Config` that every stage reads; nothing
else in the package reads files or environment for settings.

The file's layout (``examples/wormwatch.toml`` documents every key and its default)::

    [aggregate]            bin_s, window_s, max_hosts, max_host_bins
    [reassembly]           max_datagrams, max_datagram_bytes, timeout_s
    [keywords]             words, weights
    [allowlist]            mail_servers, resolvers, ignore (CIDR lists)
    [detect.keyword_storm] min_keyword_queries, min_rate_per_min, min_share,
                           min_distinct_names, min_active_bins, min_r2
    [detect.mx_client]     min_mx_queries, min_domains, skip_tunnels
    [detect.smb_scan]      min_targets
    [detect.bot_sync]      min_r, min_active_bins, min_mx_queries, min_syns,
                           sync_bin_s, max_lag_s, min_bursts, min_sync_s, min_spread
    [detect.dga_nx]        min_nx, min_domains, min_share, min_rate_per_min,
                           min_mean_score
    [score]                weights, bands, hysteresis
    [cluster]              the multi-sensor mode's (:mod:`wormwatch.cluster.settings`)

Every key is optional. An unknown section or key, a value of the wrong type or
out of range, or a bad CIDR raises :class:`~wormwatch.errors.WormwatchError`
naming the file, the section and the key.
"""

from __future__ import annotations

import itertools
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from wormwatch.cluster.settings import ClusterConfig, read_cluster
from wormwatch.errors import WormwatchError
from wormwatch.nets import Network, contains
from wormwatch.tomltable import TableReader

AllowKind = Literal["mail_server", "resolver", "ignore"]
SIGNALS = ("keyword-storm", "mx-client", "smb-scan", "bot-sync", "dga-nx")
# The tables' limits: per-host arrays are sized for max_hosts at start (10M: ~0.3 GB
# before any packet); past these, a typo costs the machine's memory, not an error line.
MAX_HOSTS_LIMIT = 10_000_000
MAX_HOST_BINS_LIMIT = 100_000_000
# A bin of a day, a window of a year (times in microseconds stay inside int64), and
# fragment-pool slots of ~1.1 KB of tables each, allocated at the first fragment.
MAX_BIN_S, MAX_WINDOW_S, MAX_DATAGRAMS_LIMIT = 86_400, 365 * 86_400, 1_000_000
DEFAULT_KEYWORDS: tuple[str, ...] = ("mail", "smtp", "mx", "ns", "gate", "relay")
# A keyword is matched against the first label of a name (RFC 1035 2.3.4: a
# label is at most 63 octets).
_KEYWORD_RE = re.compile(r"^[a-z0-9_-]{1,63}$")


@dataclass(frozen=True, slots=True)
class KeywordStormConfig:
    """Thresholds of the keyword-storm signal; all must hold within the window."""

    min_keyword_queries: int = 100
    min_rate_per_min: float = 10.0
    min_share: float = 0.5
    min_distinct_names: int = 20
    min_active_bins: int = 5
    min_r2: float = 0.0


@dataclass(frozen=True, slots=True)
class MxClientConfig:
    """Thresholds of the mx-client signal."""

    min_mx_queries: int = 10
    min_domains: int = 5
    skip_tunnels: bool = True


@dataclass(frozen=True, slots=True)
class SmbScanConfig:
    """Threshold of the smb-scan signal: new distinct targets within the window."""

    min_targets: int = 30


@dataclass(frozen=True, slots=True)
class BotSyncConfig:
    """Thresholds of the bot-sync signal (per host and network-wide)."""

    min_r: float = 0.7
    min_active_bins: int = 3
    min_mx_queries: int = 10
    min_syns: int = 10
    sync_bin_s: int = 180
    max_lag_s: int = 180
    min_bursts: int = 3
    min_sync_s: int = 600
    min_spread: int = 10


@dataclass(frozen=True, slots=True)
class DgaNxConfig:
    """Thresholds of the dga-nx signal (NXDOMAIN storms of machine-made names)."""

    min_nx: int = 30
    min_domains: int = 20
    min_share: float = 0.1
    min_rate_per_min: float = 1.0
    min_mean_score: float = 0.4


@dataclass(frozen=True, slots=True)
class ScoreConfig:
    """How signals become a 0-100 score, and the score bands alerts follow.

    ``weights`` are the points a signal gives at full strength, keyed by
    signal name; ``bands`` are the ascending lower bounds of bands 1..n
    (band 0 starts at 0); ``hysteresis`` is how far (in points) a score must
    move past a band boundary before the band counts as changed.
    """

    weights: dict[str, float] = field(
        default_factory=lambda: {
            "keyword-storm": 80.0,
            "mx-client": 60.0,
            "smb-scan": 80.0,
            "bot-sync": 40.0,
            "dga-nx": 70.0,
        }
    )
    bands: tuple[float, ...] = (25.0, 50.0, 75.0)
    hysteresis: float = 2.0


@dataclass(frozen=True, slots=True)
class ReassemblyConfig:
    """IP fragment reassembly (docs/DECODING.md, Fragments)."""

    max_datagrams: int = 1024
    max_datagram_bytes: int = 65535
    timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Config:
    """All settings of one sensor run. Build it with :func:`load_config`."""

    bin_s: int = 60
    window_s: int = 86400
    max_hosts: int = 100_000
    max_host_bins: int = 1_000_000
    keywords: tuple[str, ...] = DEFAULT_KEYWORDS
    keyword_weights: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(DEFAULT_KEYWORDS, 1.0)
    )
    mail_servers: tuple[Network, ...] = ()
    resolvers: tuple[Network, ...] = ()
    ignore: tuple[Network, ...] = ()
    keyword_storm: KeywordStormConfig = field(default_factory=KeywordStormConfig)
    mx_client: MxClientConfig = field(default_factory=MxClientConfig)
    smb_scan: SmbScanConfig = field(default_factory=SmbScanConfig)
    bot_sync: BotSyncConfig = field(default_factory=BotSyncConfig)
    dga_nx: DgaNxConfig = field(default_factory=DgaNxConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    reassembly: ReassemblyConfig = field(default_factory=ReassemblyConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    path: str | None = None

    def is_allowlisted(self, addr: str, kind: AllowKind) -> bool:
        """Whether ``addr`` (IPv4 or IPv6 text) lies in the ``kind`` allowlist.

        Raises:
            ValueError: ``kind`` is not one of the three allowlists.
        """
        nets = {"mail_server": self.mail_servers, "resolver": self.resolvers}.get(kind)
        if nets is None:
            if kind != "ignore":
                raise ValueError(f"unknown allowlist {kind!r}")
            nets = self.ignore
        return bool(nets) and contains(nets, addr)


# --- loading ------------------------------------------------------------------

# Where each key lives, for the hint on a key put in the wrong section.
_ALLOWLISTS = ("mail_servers", "resolvers", "ignore")
_HOMES: dict[str, str] = {
    **dict.fromkeys(("bin_s", "window_s", "max_hosts", "max_host_bins"), "aggregate"),
    **dict.fromkeys(("words", "weights"), "keywords"),
    **dict.fromkeys(("mail_servers", "resolvers", "ignore"), "allowlist"),
    **dict.fromkeys(KeywordStormConfig.__dataclass_fields__, "detect.keyword_storm"),
    **dict.fromkeys(MxClientConfig.__dataclass_fields__, "detect.mx_client"),
    **dict.fromkeys(SmbScanConfig.__dataclass_fields__, "detect.smb_scan"),
    **dict.fromkeys(BotSyncConfig.__dataclass_fields__, "detect.bot_sync"),
    **dict.fromkeys(DgaNxConfig.__dataclass_fields__, "detect.dga_nx"),
    **dict.fromkeys(("bands", "hysteresis"), "score"),
}
# keys that exist in several sections: no single home to suggest
for _key in ("min_mx_queries", "min_active_bins", "weights", "min_domains", "min_rate_per_min"):
    _HOMES.pop(_key, None)


def _read_keywords(r: TableReader) -> tuple[tuple[str, ...], dict[str, float]]:
    def check_words(v: Any) -> tuple[str, ...] | None:
        if not isinstance(v, list) or not v:
            return None
        if not all(isinstance(w, str) and _KEYWORD_RE.match(w.lower()) for w in v):
            return None
        return tuple(dict.fromkeys(w.lower() for w in v))

    words = r.get(
        "words",
        DEFAULT_KEYWORDS,
        check_words,
        "must be a non-empty list of labels (letters, digits, '-', '_'; 1-63 characters)",
    )
    weights = r.sub("weights")
    out: dict[str, float] = {}
    for w in weights.table:
        if w.lower() not in words:
            raise weights.fail(w, "is not one of [keywords] words", w)
        out[w.lower()] = weights.number(w, 1.0, 0.0, 100.0)
    weights.done()
    return words, {w: out.get(w, 1.0) for w in words}


def _read_score(r: TableReader) -> ScoreConfig:
    default = ScoreConfig()
    wr = r.sub("weights")
    weights = dict(default.weights)
    for key in SIGNALS:
        weights[key] = wr.number(key, weights[key], 0.0, 100.0)
    wr.done()

    def check_bands(v: Any) -> tuple[float, ...] | None:
        if not isinstance(v, list) or not v:
            return None
        if not all(isinstance(b, int | float) and not isinstance(b, bool) for b in v):
            return None
        bands = tuple(float(b) for b in v)
        ok = all(0 < b < 100 for b in bands) and all(a < b for a, b in itertools.pairwise(bands))
        return bands if ok else None

    bands = r.get(
        "bands", default.bands, check_bands, "must be ascending numbers between 0 and 100"
    )
    hysteresis = r.number("hysteresis", default.hysteresis, 0.0, 25.0)
    return ScoreConfig(weights=weights, bands=bands, hysteresis=hysteresis)


def _build(path: str, doc: Mapping[str, Any]) -> Config:
    top = TableReader(path, "", doc, homes=_HOMES)
    bin_s, window_s, max_hosts, max_host_bins = _read_aggregate(top.sub("aggregate"))
    reassembly = _read_reassembly(top.sub("reassembly"))
    kw = top.sub("keywords")
    words, weights = _read_keywords(kw)
    kw.done()
    allow = top.sub("allowlist")
    mail_servers, resolvers, ignore = (allow.networks(key) for key in _ALLOWLISTS)
    allow.done()
    det = _read_detect(top.sub("detect"))
    sc = top.sub("score")
    score = _read_score(sc)
    sc.done()
    cluster = read_cluster(top.sub("cluster"))
    top.done()
    return Config(
        bin_s=bin_s,
        window_s=window_s,
        max_hosts=max_hosts,
        max_host_bins=max_host_bins,
        keywords=words,
        keyword_weights=weights,
        mail_servers=mail_servers,
        resolvers=resolvers,
        ignore=ignore,
        keyword_storm=det.keyword_storm,
        mx_client=det.mx_client,
        smb_scan=det.smb_scan,
        bot_sync=det.bot_sync,
        dga_nx=det.dga_nx,
        score=score,
        reassembly=reassembly,
        cluster=cluster,
        path=path,
    )


def _read_aggregate(agg: TableReader) -> tuple[int, int, int, int]:
    """``[aggregate]``: bin width, window and the table limits."""
    bin_s = agg.positive_int("bin_s", 60, MAX_BIN_S)
    window_s = agg.positive_int("window_s", 86400, MAX_WINDOW_S)
    if window_s < bin_s:
        raise agg.fail("window_s", f"must be at least bin_s ({bin_s})", window_s)
    limits = (
        agg.positive_int("max_hosts", 100_000, MAX_HOSTS_LIMIT),
        agg.positive_int("max_host_bins", 1_000_000, MAX_HOST_BINS_LIMIT),
    )
    agg.done()
    return bin_s, window_s, *limits


def _read_reassembly(frag: TableReader) -> ReassemblyConfig:
    """``[reassembly]``: the IP fragment pool."""
    reassembly = ReassemblyConfig(
        max_datagrams=frag.positive_int("max_datagrams", 1024, MAX_DATAGRAMS_LIMIT),
        max_datagram_bytes=frag.positive_int("max_datagram_bytes", 65535),
        timeout_s=frag.number("timeout_s", 30.0, 0.001, 3600.0),
    )
    if reassembly.max_datagram_bytes > 65535:
        raise frag.fail(
            "max_datagram_bytes", "must be at most 65535", reassembly.max_datagram_bytes
        )
    frag.done()
    return reassembly


class _Detectors(NamedTuple):
    keyword_storm: KeywordStormConfig
    mx_client: MxClientConfig
    smb_scan: SmbScanConfig
    bot_sync: BotSyncConfig
    dga_nx: DgaNxConfig


def _read_detect(det: TableReader) -> _Detectors:
    """``[detect.*]``: each detector's thresholds."""
    ks = det.sub("keyword_storm")
    mx = det.sub("mx_client")
    smb = det.sub("smb_scan")
    bs = det.sub("bot_sync")
    dn = det.sub("dga_nx")
    out = _Detectors(
        keyword_storm=KeywordStormConfig(
            min_keyword_queries=ks.positive_int("min_keyword_queries", 100),
            min_rate_per_min=ks.number("min_rate_per_min", 10.0, 0.0, math.inf),
            min_share=ks.number("min_share", 0.5, 0.0, 1.0),
            min_distinct_names=ks.positive_int("min_distinct_names", 20),
            min_active_bins=ks.positive_int("min_active_bins", 5),
            min_r2=ks.number("min_r2", 0.0, 0.0, 1.0),
        ),
        mx_client=MxClientConfig(
            min_mx_queries=mx.positive_int("min_mx_queries", 10),
            min_domains=mx.positive_int("min_domains", 5),
            skip_tunnels=mx.boolean("skip_tunnels", True),
        ),
        smb_scan=SmbScanConfig(min_targets=smb.positive_int("min_targets", 30)),
        bot_sync=_read_bot_sync(bs),
        dga_nx=DgaNxConfig(
            min_nx=dn.positive_int("min_nx", 30),
            min_domains=dn.positive_int("min_domains", 20),
            min_share=dn.number("min_share", 0.1, 0.0, 1.0),
            min_rate_per_min=dn.number("min_rate_per_min", 1.0, 0.0, math.inf),
            min_mean_score=dn.number("min_mean_score", 0.4, 0.0, 1.0),
        ),
    )
    for section in (ks, mx, smb, bs, dn, det):
        section.done()
    return out


def _read_bot_sync(bs: TableReader) -> BotSyncConfig:
    """``[detect.bot_sync]``, whose correlation needs at least three active bins."""
    bot_sync = BotSyncConfig(
        min_r=bs.number("min_r", 0.7, -1.0, 1.0),
        min_active_bins=bs.positive_int("min_active_bins", 3),
        min_mx_queries=bs.positive_int("min_mx_queries", 10),
        min_syns=bs.positive_int("min_syns", 10),
        sync_bin_s=bs.positive_int("sync_bin_s", 180),
        max_lag_s=int(bs.number("max_lag_s", 180, 0, 3600)),
        min_bursts=bs.positive_int("min_bursts", 3),
        min_sync_s=bs.positive_int("min_sync_s", 600),
        min_spread=int(bs.number("min_spread", 10, 0, math.inf)),
    )
    if bot_sync.min_active_bins < 3:
        raise bs.fail("min_active_bins", "must be at least 3", bot_sync.min_active_bins)
    return bot_sync


def load_config(path: str | None) -> Config:
    """Read the TOML config at ``path``; ``None`` gives the documented defaults.

    Raises:
        WormwatchError: the file cannot be read, is not TOML, or holds an
            unknown key or a bad value (the message names the key).
    """
    if path is None:
        return Config()
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as err:
        reason = err.strerror or str(err)
        raise WormwatchError(
            f"config {path}: cannot read it ({reason}); check the --config path"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise WormwatchError(f"config {path}: not valid TOML: {err}") from None
    return _build(path, doc)
