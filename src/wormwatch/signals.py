"""Three of the five per-host signals (keyword-storm, mx-client, smb-scan) over one host's
bins in the window; bot-sync is :mod:`wormwatch.botsync`, dga-nx :mod:`wormwatch.dganx`.

In: a :class:`Window` (the host's bins and per-bin counters inside the evaluation
window), its :class:`~wormwatch.model.HostState` and the :class:`~wormwatch.config.Config`.
Out: per signal, None (did not fire) or its strength (0..1) and a function that builds
its JSON-serialisable evidence from the host's name-prefix counts (called only when an
alert or a presenter needs it). :mod:`wormwatch.detect` turns those into a score and
verdicts; ``docs/DETECTION.md`` explains each. All numpy over bins, no per-packet work;
packet time and names become text through :mod:`wormwatch.text`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from wormwatch.config import Config
from wormwatch.kernels.counting import PEAK_KW_A, PEAK_KW_SHARE
from wormwatch.model import (
    BOOL,
    C_A,
    C_KW_A,
    C_KW_NAMES_NEW,
    C_MX,
    C_MX_DOM_NEW,
    C_NAMES_NEW,
    C_PTR,
    C_QUERIES,
    C_SYN135,
    C_SYN139,
    C_SYN445,
    C_SYN_DST_NEW,
    I64,
    SYN_PORTS,
    Explain,
    HostState,
)
from wormwatch.periods import F64, Periods, build_periods
from wormwatch.text import iso_time, name_text, names_text

SYN_COLS = [C_SYN135, C_SYN139, C_SYN445]
_N_SAMPLES = 5
_N_TOP_PREFIXES = 5
# A fired signal's strength (0..1) and what builds its evidence when asked, or None.
Result = tuple[float, Explain] | None
# A label this long is encoded data, not a mail domain (RFC 1035 allows 63).
_TUNNEL_LABEL_LEN = 32
_TUNNEL_HEX_LEN = 16
_HEX = re.compile(rb"[0-9a-f]+")
# A signal's strength reaches 1 at this multiple of its threshold (log scale).
_SATURATION = 10.0


@dataclass(frozen=True, slots=True)
class Window:
    """The host's bins inside the evaluation window."""

    bins: I64
    series: I64
    bin_s: int
    # the evaluation window's first bin and the bin of the evaluation time
    first_bin: int = 0
    last_bin: int = -1

    def periods(self, starts: I64, *, margin: int = 0, last_bin: int | None = None) -> Periods:
        """Candidate periods from the first of ``starts`` (absolute bins, less
        ``margin`` quiet bins, inside the window) to ``last_bin`` (default: the
        evaluation bin); suffixes start at each of ``starts`` less ``margin``."""
        last = max(self.last_bin, int(self.bins[-1])) if last_bin is None else last_bin
        first = max(self.first_bin, int(starts[0]) - margin)
        return build_periods(
            self.bins, self.series, first_bin=first, last_bin=last, starts=starts - margin
        )

    def sub(self, p: Periods, j: int) -> Window:
        """Period ``j`` of ``p`` as a window of its own (dense bins)."""
        lo, hi = int(p.lo[j]), int(p.hi[j])
        bins = np.arange(p.first_bin + lo, p.first_bin + hi + 1, dtype=np.int64)
        return Window(bins, p.series[lo : hi + 1], self.bin_s, int(bins[0]), int(bins[-1]))

    def period(self) -> dict[str, object]:
        """This window's extent (``first_bin`` .. ``last_bin``), for a signal's evidence."""
        return {
            "start": self.bin_time(self.first_bin),
            "end": self.bin_time(self.last_bin + 1),
            "bins": self.last_bin - self.first_bin + 1,
        }

    def col(self, c: int) -> I64:
        return self.series[:, c]

    def per_min(self, count: float, n_bins: int) -> float:
        return count / (n_bins * self.bin_s / 60.0) if n_bins else 0.0

    def bin_time(self, b: int) -> str:
        return iso_time(b * self.bin_s * 1_000_000)

    def span(self, active: BOOL) -> dict[str, object]:
        idx = np.flatnonzero(active)
        return {
            "active_bins": int(idx.shape[0]),
            "first_active": self.bin_time(int(self.bins[idx[0]])),
            "last_active": self.bin_time(int(self.bins[idx[-1]]) + 1),
        }


def _saturate(value: float, threshold: float) -> float:
    """0 at the threshold, 1 at ``_SATURATION`` times it, log scale between."""
    if threshold <= 0:
        return 1.0
    ratio = value / threshold
    if ratio <= 1.0:
        return 0.0
    return min(1.0, math.log(ratio) / math.log(_SATURATION))


def _pearson(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> float | None:
    """Pearson r, or None when either series is constant (r is undefined)."""
    dx = x - x.mean()
    dy = y - y.mean()
    sxx = float(dx @ dx)
    syy = float(dy @ dy)
    if sxx <= 0.0 or syy <= 0.0:
        return None
    return max(-1.0, min(1.0, float(dx @ dy) / math.sqrt(sxx * syy)))


def _r_squared(total: I64, part: I64) -> float | None:
    """R² of ``part`` regressed on ``total`` over the given bins.

    When both are constant, ``part`` is exactly proportional to ``total`` and
    R² is 1; when only one is constant the fit explains nothing (0).
    """
    if total.shape[0] < 3:
        return None
    x = total.astype(np.float64)
    y = part.astype(np.float64)
    r = _pearson(x, y)
    if r is None:
        return 1.0 if np.ptp(x) == 0 and np.ptp(y) == 0 else 0.0
    return r * r


def _max_keyword_weight(cfg: Config) -> float:
    """The largest weight :func:`_keyword_weight` can return (1.0 if none is counted)."""
    return max([1.0, *(cfg.keyword_weights.get(k, 1.0) for k in cfg.keywords)])


def weighs_keywords(cfg: Config) -> bool:
    """Whether a keyword storm's strength reads the host's name prefixes (some
    keyword weighs other than 1); otherwise only its evidence does."""
    return any(cfg.keyword_weights.get(k, 1.0) != 1.0 for k in cfg.keywords)


def _keyword_weight(prefixes: dict[bytes, int], cfg: Config) -> float:
    """Mean configured weight of the host's keyword queries (1.0 by default).

    Measured on the name-prefix counts (1..5 characters): hits of keywords
    longer than five characters cannot be counted there and are left out.
    """
    if not weighs_keywords(cfg):
        return 1.0
    weights = cfg.keyword_weights
    n_hits = 0
    weighted = 0.0
    for k in cfg.keywords:
        count = prefixes.get(k.encode(), 0) if len(k) <= 5 else 0
        n_hits += count
        weighted += count * weights.get(k, 1.0)
    return weighted / n_hits if n_hits else 1.0


def top_prefixes(prefixes: dict[bytes, int], n: int = _N_TOP_PREFIXES) -> dict[str, object]:
    """The ``n`` most asked name prefixes of each length 1..5 (the study's figure 2)."""
    by_len: dict[int, list[tuple[bytes, int]]] = {}
    for p, count in prefixes.items():
        by_len.setdefault(len(p), []).append((p, count))
    tops = {
        length: sorted(items, key=lambda pc: (-pc[1], pc[0]))[:n]
        for length, items in sorted(by_len.items())
    }
    # every prefix shown escaped in one pass (nearly all are plain ASCII)
    texts = iter(names_text([p for top in tops.values() for p, _ in top]))
    return {str(length): [[next(texts), int(c)] for _, c in top] for length, top in tops.items()}


def _r_squared_many(n: F64, sa: F64, sk: F64, saa: F64, skk: F64, sak: F64) -> F64:
    """R² per period from sums over its active bins (as :func:`_r_squared`; NaN below 3)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        vx = saa - sa * sa / n
        vy = skk - sk * sk / n
        r2 = (sak - sa * sk / n) ** 2 / (vx * vy)
    flat_x, flat_y = vx <= 1e-9, vy <= 1e-9
    r2 = np.where(flat_x & flat_y, 1.0, np.where(flat_x | flat_y, 0.0, r2))
    out: F64 = np.where(n >= 3, np.clip(r2, 0.0, 1.0), np.nan)
    return out


def _rate_floor(cfg: Config, bin_s: int) -> float:
    """Keyword A queries in one bin of ``bin_s`` seconds at the storm's minimum rate."""
    return cfg.keyword_storm.min_rate_per_min * bin_s / 60.0


def storm_could_fire(peaks: F64, cfg: Config, bin_s: int | None = None) -> BOOL:
    """Which hosts' peaks (rows of :meth:`~wormwatch.aggregate.Aggregator.peaks`,
    or a window's busiest bin and best share) pass the storm's one-bin floors:
    a bin with the rate's worth of keyword A queries, and a bin whose
    keyword-A share reaches ``min_share`` (times the largest keyword weight).
    :func:`keyword_storm` checks its window's bins here first; the peaks are
    since first seen, so they bound every window's bins: a host that fails
    here cannot storm now, and costs the judge no evaluation."""
    floor = _rate_floor(cfg, cfg.bin_s if bin_s is None else bin_s)
    busy = peaks[:, PEAK_KW_A] >= floor
    share = _max_keyword_weight(cfg) * peaks[:, PEAK_KW_SHARE]
    out: BOOL = busy & (share >= cfg.keyword_storm.min_share)
    return out


def _busiest_bins_could(kw_bins: I64, min_queries: int, min_per_bin: float) -> bool:
    """Whether some period could hold ``min_queries`` keyword A queries at
    ``min_per_bin`` per active bin, judged on the window's busiest bins.

    Every bin with keyword A queries is active, so a period's rate is at most
    the mean of its keyword bins, and its m keyword bins hold at most what
    the window's m busiest hold: if for no m those reach both floors, no
    period does (a slow, steady stream of keyword names over a day stops
    here, before any period is built). The rate's floor is lowered by a
    billionth, so that rounding never drops a period the full test keeps.
    """
    top = np.cumsum(np.sort(kw_bins[kw_bins > 0])[::-1], dtype=np.float64)
    floor = min_per_bin * (1.0 - 1e-9) * np.arange(1, top.shape[0] + 1)
    return bool(((top >= min_queries) & (top >= floor)).any())


def keyword_storm(w: Window, st: HostState, cfg: Config) -> Result:
    """Mytob-like: many A queries of keyword names at a sustained machine rate,
    judged over the longest candidate period where all thresholds hold."""
    ks = cfg.keyword_storm
    kw_bins = w.col(C_KW_A)
    if int(kw_bins.sum()) < ks.min_keyword_queries:
        return None
    # a mean of min_rate_per_min over a period's active bins needs one bin at
    # least that busy (a browsing user with webmail never gets past here), and a
    # period's keyword share is a ratio of sums, never above its best bin's: a
    # user whose every bin is mostly other names gets no further (no periods built)
    best_share = (kw_bins / np.maximum(w.col(C_QUERIES), 1)).max()
    if not storm_could_fire(np.array([[kw_bins.max(), best_share]], np.float64), cfg, w.bin_s)[0]:
        return None
    if not _busiest_bins_could(kw_bins, ks.min_keyword_queries, _rate_floor(cfg, w.bin_s)):
        return None
    # a storm period starts in a bin with keyword A queries
    p = w.periods(w.bins[w.col(C_KW_A) > 0])
    a = p.col(C_A).astype(np.float64)
    kw = p.col(C_KW_A).astype(np.float64)
    n_kw = p.sums(kw)
    n_active = p.sums(a > 0)
    weight = _keyword_weight(st.prefixes, cfg)
    share = weight * n_kw / np.maximum(p.sums(p.col(C_QUERIES)), 1.0)
    rate = n_kw / np.maximum(n_active, 1.0) / (w.bin_s / 60.0)
    ok = (
        (n_kw >= ks.min_keyword_queries)
        & (n_active >= ks.min_active_bins)
        & (rate >= ks.min_rate_per_min)
        & (share >= ks.min_share)
        & (p.sums(p.col(C_KW_NAMES_NEW)) >= ks.min_distinct_names)
    )
    if ks.min_r2 > 0.0 and ok.any():
        sums = [p.sums(v) for v in (a, kw, a * a, kw * kw, a * kw)]
        with np.errstate(invalid="ignore"):
            ok &= _r_squared_many(n_active, *sums) >= ks.min_r2
    if not ok.any():
        return None
    return _storm(w, w.sub(p, p.longest(ok)), st, cfg, weight)


def _storm(w: Window, pw: Window, st: HostState, cfg: Config, weight: float) -> Result:
    """Strength and evidence of a storm judged over the period ``pw`` of ``w``."""
    ks = cfg.keyword_storm
    a, kw_a = pw.col(C_A), pw.col(C_KW_A)
    active = a > 0
    n_active = int(active.sum())
    n_kw = int(kw_a.sum())
    n_queries = int(pw.col(C_QUERIES).sum())
    share = weight * n_kw / n_queries if n_queries else 0.0
    rate = pw.per_min(n_kw, n_active)
    r2 = _r_squared(a[active], kw_a[active])
    share_term = 1.0 if ks.min_share >= 1.0 else (share - ks.min_share) / (1.0 - ks.min_share)
    strength = (
        0.5 * _saturate(rate, ks.min_rate_per_min)
        + 0.25 * min(1.0, share_term)
        + 0.25 * (r2 if r2 is not None else 0.0)
    )
    return strength, lambda prefixes: {
        "queries": n_queries,
        "a_queries": int(a.sum()),
        "keyword_a_queries": n_kw,
        "ptr_queries": int(pw.col(C_PTR).sum()),
        "mx_queries": int(pw.col(C_MX).sum()),
        "keyword_share": round(share, 4),
        "keyword_weight": round(weight, 3),
        "a_per_min": round(pw.per_min(int(a.sum()), n_active), 2),
        "keyword_a_per_min": round(rate, 2),
        "r2_keyword_a_vs_a": None if r2 is None else round(r2, 4),
        "distinct_names": int(pw.col(C_NAMES_NEW).sum()),
        "distinct_keyword_names": int(pw.col(C_KW_NAMES_NEW).sum()),
        **pw.span(active),
        "period": pw.period(),
        "window": {
            "queries": int(w.col(C_QUERIES).sum()),
            "a_queries": int(w.col(C_A).sum()),
            "keyword_a_queries": int(w.col(C_KW_A).sum()),
            "distinct_names_total": int(st.totals[C_NAMES_NEW]),
        },
        "top_prefixes": top_prefixes(prefixes),
        "sample_names": names_text(st.sample_names[:_N_SAMPLES]),
    }


def _is_encoded(label: bytes) -> bool:
    return len(label) >= _TUNNEL_LABEL_LEN or (
        len(label) >= _TUNNEL_HEX_LEN and _HEX.fullmatch(label) is not None
    )


def tunnel_reason(mx_names: list[bytes]) -> str | None:
    """Why a host's sample MX names look like a DNS tunnel, not mail, or None.

    A mass mailer asks the MX of many mail domains; a tunnel (dnscat, iodine)
    encodes data in long labels, rotating qtypes (nDPI's dns_exfiltration.pcap:
    52 MX names like ``dnscat.546b03f5...``). A name looks encoded when one of
    its labels has 32+ bytes, or 16+ bytes of hex digits only; the host looks
    like a tunnel when most of its sample MX names (the first few it asked,
    at least 3) do.
    """
    if len(mx_names) < 3:
        return None
    n_encoded = sum(any(_is_encoded(lab) for lab in n.split(b".")) for n in mx_names)
    if 2 * n_encoded <= len(mx_names):
        return None
    return f"{n_encoded} of {len(mx_names)} sample MX names carry encoded-looking labels"


def mx_client(w: Window, st: HostState, cfg: Config) -> Result:
    """A client asking the MX of many domains itself: a mass mailer."""
    mc = cfg.mx_client
    mx = w.col(C_MX)
    n_mx = int(mx.sum())
    n_domains = int(w.col(C_MX_DOM_NEW).sum())
    if n_mx < mc.min_mx_queries or n_domains < mc.min_domains:
        return None
    if mc.skip_tunnels and tunnel_reason(st.sample_mx_names) is not None:
        return None
    strength = 0.7 * _saturate(n_domains, mc.min_domains) + 0.3 * _saturate(n_mx, mc.min_mx_queries)

    def evidence(_prefixes: dict[bytes, int]) -> dict[str, object]:
        active = mx > 0
        return {
            "mx_queries": n_mx,
            "mx_domains": n_domains,
            "mx_domains_total": int(st.totals[C_MX_DOM_NEW]),
            "mx_per_min": round(w.per_min(n_mx, int(active.sum())), 2),
            **w.span(active),
            "sample_domains": [name_text(n) for n in st.sample_mx_names[:_N_SAMPLES]],
        }

    return strength, evidence


def smb_scan(w: Window, st: HostState, cfg: Config) -> Result:
    """SYNs to 135/139/445 towards many new destinations within the window."""
    min_targets = cfg.smb_scan.min_targets
    new = w.col(C_SYN_DST_NEW)
    n_targets = int(new.sum())
    if n_targets < min_targets:
        return None

    def evidence(_prefixes: dict[bytes, int]) -> dict[str, object]:
        syns = w.series[:, SYN_COLS]
        per_bin = syns.sum(axis=1)
        active = per_bin > 0
        n_syn = int(per_bin.sum())
        peak = int(np.argmax(new))
        return {
            "syn": {str(p): int(syns[:, i].sum()) for i, p in enumerate(SYN_PORTS)},
            "syns": n_syn,
            "targets": n_targets,
            "targets_total": int(st.totals[C_SYN_DST_NEW]),
            "targets_per_min": round(w.per_min(n_targets, int(active.sum())), 2),
            "syns_per_target": round(n_syn / n_targets, 2),
            "peak_targets_per_bin": int(new[peak]),
            "peak_bin": w.bin_time(int(w.bins[peak])),
            **w.span(active),
        }

    return _saturate(n_targets, min_targets), evidence
