"""The fifth signal, dga-nx: a host receiving a storm of NXDOMAIN answers for names that
look machine-made (Conficker-style domain generation), judged over candidate periods of its
bins in the window (:mod:`wormwatch.periods`): a day of ordinary browsing before the storm
does not dilute its NXDOMAIN share.

In: a :class:`~wormwatch.signals.Window` of the host's per-bin counters (the answer
columns ``C_ANSWERS`` .. ``C_NX_SCORE`` the aggregate counts for the client an answer is
sent to), its :class:`~wormwatch.model.HostState` and the
:class:`~wormwatch.config.Config`. Out: None, or the signal's strength (0..1) and what
builds its evidence. :mod:`wormwatch.detect` scores it and adds the combined reading when the same
host also scans SMB. docs/DETECTION.md ("dga-nx") explains every threshold.
"""

from __future__ import annotations

import numpy as np

from wormwatch.config import Config, DgaNxConfig
from wormwatch.model import (
    BOOL,
    C_ANSWERS,
    C_NX,
    C_NX_DOMS_NEW,
    C_NX_NAMES_NEW,
    C_NX_SCORE,
    C_RCODE_ERR,
    I64,
    HostState,
)
from wormwatch.periods import F64
from wormwatch.signals import Result, Window, _saturate
from wormwatch.text import name_text

SIGNAL = "dga-nx"
_N_SAMPLES = 5
# C_NX_SCORE holds name scores in thousandths
_SCORE_UNITS = 1000.0
COMBINED_READING = (
    "dga-nx and smb-scan together: the same host generates names and scans SMB, as Conficker does"
)


def mean_name_score(score_milli: int, n_domains: int) -> float:
    """Mean name score of the new NXDOMAIN domains (0 when there are none)."""
    return score_milli / _SCORE_UNITS / n_domains if n_domains else 0.0


def dga_nx(w: Window, st: HostState, cfg: Config) -> Result:
    """Many NXDOMAIN answers for many distinct, machine-made-looking domains, judged
    over the longest candidate period where all thresholds hold."""
    dc = cfg.dga_nx
    nx = w.col(C_NX)
    # a period's counts are at most the window's: a host short of them stops here
    if int(nx.sum()) < dc.min_nx or int(w.col(C_NX_DOMS_NEW).sum()) < dc.min_domains:
        return None
    if not nx.any():  # only with min_nx = 0
        return None
    # a storm period starts in a bin with NXDOMAIN answers; the longest runs from the
    # first of them to now, and when it holds (as a storm that fires usually does) no
    # other period need be built
    i = int(np.argmax(nx > 0))
    tail = Window(
        w.bins[i:], w.series[i:], w.bin_s, int(w.bins[i]), max(w.last_bin, int(w.bins[-1]))
    )
    if _holds(_sums(tail.series), dc, w.bin_s)[0]:
        return _storm(w, tail, st, dc)
    if not _bins_could(w, dc):
        return None
    p = w.periods(w.bins[nx > 0])
    ok = _holds(p.sums(_per_bin(p.series)), dc, w.bin_s)
    if not ok.any():
        return None
    return _storm(w, w.sub(p, p.longest(ok)), st, dc)


def _per_bin(series: I64) -> F64:
    """The per-bin quantities a period's thresholds read, one row each: NXDOMAIN answers,
    new NXDOMAIN domains, answers, active bins (with NXDOMAIN answers), name scores."""
    nx = series[:, C_NX]
    cols = [nx, series[:, C_NX_DOMS_NEW], series[:, C_ANSWERS], nx > 0, series[:, C_NX_SCORE]]
    return np.stack(cols).astype(np.float64)


def _sums(series: I64) -> F64:
    """``_per_bin``'s rows of ``series`` summed (one period, as a column)."""
    c = series[:, [C_NX, C_NX_DOMS_NEW, C_ANSWERS, C_NX_SCORE]].sum(axis=0)
    n_active = np.count_nonzero(series[:, C_NX])
    return np.array([[c[0]], [c[1]], [c[2]], [n_active], [c[3]]], np.float64)


def _holds(sums: F64, dc: DgaNxConfig, bin_s: int) -> BOOL:
    """Per period (columns of ``_per_bin``'s rows summed), whether every threshold holds."""
    n_nx, n_domains, n_answers, n_active, score = sums
    share = n_nx / np.maximum(n_answers, 1.0)
    rate = n_nx / np.maximum(n_active, 1.0) / (bin_s / 60.0)
    mean_score = score / _SCORE_UNITS / np.maximum(n_domains, 1.0)
    ok: BOOL = (
        (n_nx >= dc.min_nx)
        & (n_domains >= dc.min_domains)
        & (share >= dc.min_share)
        & (rate >= dc.min_rate_per_min)
        & (mean_score >= dc.min_mean_score)
    )
    return ok


def _bins_could(w: Window, dc: DgaNxConfig) -> bool:
    """Whether the window's bins leave any period a chance. A period's share and rate
    (a mean over its active bins) are ratios of sums, never above its best bin's; its
    mean name score, over at least ``min_domains`` new domains, is at most that of the
    window's ``min_domains`` best-scored ones (each counted at its bin's mean). So a
    host whose every bin is mostly resolving answers or a trickle of NXDOMAIN, or whose
    few new domains look human (typing mistakes), builds no periods. The floors are
    lowered by a billionth, so that rounding never drops a period the full test keeps."""
    lower = 1.0 - 1e-9
    nx = w.col(C_NX).astype(np.float64)
    best_share = (nx / np.maximum(w.col(C_ANSWERS), 1)).max()
    return bool(
        best_share >= dc.min_share * lower
        and w.per_min(float(nx.max()), 1) >= dc.min_rate_per_min * lower
        and _best_mean_score(w, max(1, dc.min_domains)) >= dc.min_mean_score * lower
    )


def _best_mean_score(w: Window, k: int) -> float:
    """Mean name score of the window's ``k`` best-scored new domains (fewer: 0)."""
    doms = w.col(C_NX_DOMS_NEW)
    has = doms > 0
    d = doms[has].astype(np.float64)
    mean = w.col(C_NX_SCORE)[has] / _SCORE_UNITS / d
    order = np.argsort(-mean, kind="stable")
    d, mean = d[order], mean[order]
    upto = np.cumsum(d)
    i = int(np.searchsorted(upto, k))
    if i >= d.shape[0]:
        return 0.0
    # the bins before i whole, then bin i's mean for the domains still missing
    before = float(upto[i] - d[i])
    return (float((d[:i] * mean[:i]).sum()) + (k - before) * float(mean[i])) / k


def _storm(w: Window, pw: Window, st: HostState, dc: DgaNxConfig) -> Result:
    """Strength and evidence of an NXDOMAIN storm judged over the period ``pw`` of ``w``."""
    nx = pw.col(C_NX)
    n_nx = int(nx.sum())
    n_domains = int(pw.col(C_NX_DOMS_NEW).sum())
    n_answers = int(pw.col(C_ANSWERS).sum())
    share = n_nx / n_answers if n_answers else 0.0
    active = nx > 0
    rate = pw.per_min(n_nx, int(active.sum()))
    mean_score = mean_name_score(int(pw.col(C_NX_SCORE).sum()), n_domains)
    score_term = (mean_score - dc.min_mean_score) / max(1e-9, 1.0 - dc.min_mean_score)
    strength = (
        0.5 * _saturate(n_domains, dc.min_domains)
        + 0.25 * _saturate(rate, dc.min_rate_per_min)
        + 0.25 * min(1.0, max(0.0, score_term))
    )
    peak = int(np.argmax(nx))
    return strength, lambda _prefixes: {
        "nx_answers": n_nx,
        "answers": n_answers,
        "nx_share": round(share, 4),
        "error_answers": int(pw.col(C_RCODE_ERR).sum()),
        "nx_domains": n_domains,
        "nx_domains_total": int(st.totals[C_NX_DOMS_NEW]),
        "nx_names": int(pw.col(C_NX_NAMES_NEW).sum()),
        "nx_per_min": round(rate, 2),
        "peak_nx_per_bin": int(nx[peak]),
        "peak_bin": pw.bin_time(int(pw.bins[peak])),
        "mean_name_score": round(mean_score, 3),
        **pw.span(active),
        "period": pw.period(),
        "window": {
            "answers": int(w.col(C_ANSWERS).sum()),
            "nx_answers": int(w.col(C_NX).sum()),
            "nx_domains": int(w.col(C_NX_DOMS_NEW).sum()),
        },
        "sample_names": [name_text(n) for n in st.sample_nx_names[:_N_SAMPLES]],
    }


def add_combined_reading(evidence: dict[str, dict[str, object]]) -> None:
    """When dga-nx and smb-scan both fired, say so in both evidences
    (``evidence`` maps each fired signal to its evidence)."""
    if SIGNAL in evidence and "smb-scan" in evidence:
        evidence[SIGNAL]["with_smb_scan"] = COMBINED_READING
        evidence["smb-scan"]["with_dga_nx"] = COMBINED_READING
