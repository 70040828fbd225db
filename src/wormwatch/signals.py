"""The four per-host signals, computed over one host's bins in the window.

In: a :class:`Window` (the host's bins and per-bin counters inside the
evaluation window), its :class:`~wormwatch.model.HostState` and the
:class:`~wormwatch.config.Config`. Out: per signal, None (did not fire) or
its strength (0..1) and JSON-serialisable evidence. :mod:`wormwatch.detect`
turns those into a score and verdicts; ``docs/DETECTION.md`` explains each.

Also the text helpers evidence needs: packet time as ISO 8601 and untrusted
name bytes as safe text. All numpy over bins; no per-packet work.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from wormwatch.config import Config
from wormwatch.model import (
    BOOL,
    C_A,
    C_KW_A,
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
    HostState,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# printable ASCII except the backslash, which is the escape character
_PLAIN = re.compile(rb"[\x20-\x5b\x5d-\x7e]*")
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def iso_time(ts_us: int) -> str:
    """Packet time in microseconds since the epoch -> ISO 8601 UTC with offset."""
    return (_EPOCH + timedelta(microseconds=int(ts_us))).isoformat(timespec="microseconds")


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if ch == "\\":
        return "\\\\"
    if 0xDC80 <= code <= 0xDCFF:
        # a byte that is not valid UTF-8 (surrogateescape put it here)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80 and (code < 0x20 or code == 0x7F):
        return f"\\x{code:02x}"
    if code >= 0x80 and unicodedata.category(ch) in _UNSAFE_CATEGORIES:
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return ch


def name_text(raw: bytes) -> str:
    """A DNS name from the wire as safe, unambiguous text.

    Valid UTF-8 is kept; a byte that is not valid UTF-8 becomes ``\\xNN``;
    ASCII control characters (NUL, ESC, DEL, ...) become ``\\xNN``; Unicode
    control, format (bidi overrides, zero-width), line/paragraph separator,
    private-use and unassigned code points become ``\\uNNNN``; the backslash
    itself becomes ``\\\\``. So the text holds no control character, and the
    original bytes can be recovered from it.
    """
    if _PLAIN.fullmatch(raw):
        return raw.decode("ascii")
    text = raw.decode("utf-8", errors="surrogateescape")
    return "".join(_escape_char(ch) for ch in text)


# --- signals ------------------------------------------------------------------


_SYN_COLS = [C_SYN135, C_SYN139, C_SYN445]
_N_SAMPLES = 5
_N_TOP_PREFIXES = 5
# A fired signal's strength (0..1) and its evidence, or None.
Result = tuple[float, dict[str, object]] | None
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


def _keyword_weight(prefixes: dict[bytes, int], cfg: Config) -> float:
    """Mean configured weight of the host's keyword queries (1.0 by default).

    Measured on the name-prefix counts (1..5 characters): hits of keywords
    longer than five characters cannot be counted there and are left out.
    """
    weights = cfg.keyword_weights
    if all(weights.get(k, 1.0) == 1.0 for k in cfg.keywords):
        return 1.0
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
    return {
        str(length): [
            [name_text(p), int(c)] for p, c in sorted(items, key=lambda pc: (-pc[1], pc[0]))[:n]
        ]
        for length, items in sorted(by_len.items())
    }


def keyword_storm(w: Window, st: HostState, cfg: Config) -> Result:
    """Mytob-like: many A queries of keyword names at a sustained machine rate."""
    ks = cfg.keyword_storm
    kw_a = w.col(C_KW_A)
    n_kw = int(kw_a.sum())
    if n_kw < ks.min_keyword_queries:
        return None
    a = w.col(C_A)
    active = a > 0
    n_active = int(active.sum())
    n_queries = int(w.col(C_QUERIES).sum())
    weight = _keyword_weight(st.prefixes, cfg)
    share = weight * n_kw / n_queries if n_queries else 0.0
    rate = w.per_min(n_kw, n_active)
    r2 = _r_squared(a[active], kw_a[active])
    distinct = int(st.totals[C_NAMES_NEW])
    fired = (
        n_active >= ks.min_active_bins
        and rate >= ks.min_rate_per_min
        and share >= ks.min_share
        and distinct >= ks.min_distinct_names
        and (ks.min_r2 <= 0.0 or (r2 is not None and r2 >= ks.min_r2))
    )
    if not fired:
        return None
    share_term = 1.0 if ks.min_share >= 1.0 else (share - ks.min_share) / (1.0 - ks.min_share)
    strength = (
        0.5 * _saturate(rate, ks.min_rate_per_min)
        + 0.25 * min(1.0, share_term)
        + 0.25 * (r2 if r2 is not None else 0.0)
    )
    evidence: dict[str, object] = {
        "queries": n_queries,
        "a_queries": int(a.sum()),
        "keyword_a_queries": n_kw,
        "ptr_queries": int(w.col(C_PTR).sum()),
        "mx_queries": int(w.col(C_MX).sum()),
        "keyword_share": round(share, 4),
        "keyword_weight": round(weight, 3),
        "a_per_min": round(w.per_min(int(a.sum()), n_active), 2),
        "keyword_a_per_min": round(rate, 2),
        "r2_keyword_a_vs_a": None if r2 is None else round(r2, 4),
        "distinct_names": distinct,
        **w.span(active),
        "top_prefixes": top_prefixes(st.prefixes),
        "sample_names": [name_text(n) for n in st.sample_names[:_N_SAMPLES]],
    }
    return strength, evidence


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
    active = mx > 0
    rate = w.per_min(n_mx, int(active.sum()))
    strength = 0.7 * _saturate(n_domains, mc.min_domains) + 0.3 * _saturate(n_mx, mc.min_mx_queries)
    evidence: dict[str, object] = {
        "mx_queries": n_mx,
        "mx_domains": n_domains,
        "mx_domains_total": int(st.totals[C_MX_DOM_NEW]),
        "mx_per_min": round(rate, 2),
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
    syns = w.series[:, _SYN_COLS]
    per_bin = syns.sum(axis=1)
    active = per_bin > 0
    n_syn = int(per_bin.sum())
    peak = int(np.argmax(new))
    evidence: dict[str, object] = {
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


def _dense(bins: I64, values: I64, lo: int, hi: int) -> npt.NDArray[np.float64]:
    out = np.zeros(hi - lo + 1, np.float64)
    keep = (bins >= lo) & (bins <= hi)
    out[bins[keep] - lo] = values[keep]
    return out


def _coarsen(bins: I64, values: list[I64], merge: int) -> tuple[I64, list[I64]]:
    """Sum per-bin values into bins ``merge`` times as wide."""
    if merge <= 1:
        return bins, values
    uniq, inverse = np.unique(bins // merge, return_inverse=True)
    n = uniq.shape[0]
    return uniq, [np.bincount(inverse, weights=v, minlength=n).astype(np.int64) for v in values]


def merge_factor(cfg: Config) -> int:
    """Aggregate bins per correlation bin (``sync_bin_s`` / ``bin_s``, at least 1)."""
    return max(1, round(cfg.bot_sync.sync_bin_s / cfg.bin_s))


def sync_evidence(
    bins: I64, mx: I64, syn: I64, *, merge: int, bin_s: int, min_active_bins: int
) -> dict[str, object] | None:
    """Pearson r of two per-bin series, summed into bins ``merge`` times as wide,
    over the span from the first to the last wide bin with either (gaps = 0)."""
    bins, (mx, syn) = _coarsen(bins, [mx, syn], merge)
    active = (mx > 0) | (syn > 0)
    n_active = int(active.sum())
    if n_active < min_active_bins:
        return None
    idx = np.flatnonzero(active)
    lo, hi = int(bins[idx[0]]), int(bins[idx[-1]])
    r = _pearson(_dense(bins, mx, lo, hi), _dense(bins, syn, lo, hi))
    return {
        "r": None if r is None else round(r, 4),
        "bins": hi - lo + 1,
        "active_bins": n_active,
        "series": {
            "start": iso_time(lo * merge * bin_s * 1_000_000),
            "bin_s": merge * bin_s,
            "offsets": (bins[idx] - lo).tolist(),
            "mx": mx[idx].tolist(),
            "syn": syn[idx].tolist(),
        },
    }


def bot_sync(w: Window, st: HostState, cfg: Config) -> Result:
    """The host's MX-query and SYN series rise and fall together."""
    bs = cfg.bot_sync
    mx = w.col(C_MX)
    syn = w.series[:, _SYN_COLS].sum(axis=1)
    if int(mx.sum()) < bs.min_mx_queries or int(syn.sum()) < bs.min_syns:
        return None
    if cfg.mx_client.skip_tunnels and tunnel_reason(st.sample_mx_names) is not None:
        return None
    merge = merge_factor(cfg)
    evidence = sync_evidence(
        w.bins, mx, syn, merge=merge, bin_s=w.bin_s, min_active_bins=bs.min_active_bins
    )
    if evidence is None:
        return None
    r = evidence["r"]
    if not isinstance(r, float) or r < bs.min_r:
        return None
    evidence = {"mx_queries": int(mx.sum()), "syns": int(syn.sum()), **evidence}
    return min(1.0, (r - bs.min_r) / (1.0 - bs.min_r)) if bs.min_r < 1.0 else 1.0, evidence
