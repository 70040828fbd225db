"""The fifth signal, dga-nx: a host receiving a storm of NXDOMAIN answers for names that
look machine-made (Conficker-style domain generation), computed over its bins in the window.

In: a :class:`~wormwatch.signals.Window` of the host's per-bin counters (the answer
columns ``C_ANSWERS`` .. ``C_NX_SCORE`` the aggregate counts for the client an answer is
sent to), its :class:`~wormwatch.model.HostState` and the
:class:`~wormwatch.config.Config`. Out: None, or the signal's strength (0..1) and what
builds its evidence. :mod:`wormwatch.detect` scores it and adds the combined reading when the same
host also scans SMB. docs/DETECTION.md ("dga-nx") explains every threshold.
"""

from __future__ import annotations

import numpy as np

from wormwatch.config import Config
from wormwatch.model import (
    C_ANSWERS,
    C_NX,
    C_NX_DOMS_NEW,
    C_NX_NAMES_NEW,
    C_NX_SCORE,
    C_RCODE_ERR,
    HostState,
)
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
    """Many NXDOMAIN answers for many distinct, machine-made-looking domains."""
    dc = cfg.dga_nx
    nx = w.col(C_NX)
    n_nx = int(nx.sum())
    if n_nx < dc.min_nx:
        return None
    n_domains = int(w.col(C_NX_DOMS_NEW).sum())
    if n_domains < dc.min_domains:
        return None
    n_answers = int(w.col(C_ANSWERS).sum())
    share = n_nx / n_answers if n_answers else 0.0
    active = nx > 0
    rate = w.per_min(n_nx, int(active.sum()))
    mean_score = mean_name_score(int(w.col(C_NX_SCORE).sum()), n_domains)
    if share < dc.min_share or rate < dc.min_rate_per_min or mean_score < dc.min_mean_score:
        return None
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
        "error_answers": int(w.col(C_RCODE_ERR).sum()),
        "nx_domains": n_domains,
        "nx_domains_total": int(st.totals[C_NX_DOMS_NEW]),
        "nx_names": int(w.col(C_NX_NAMES_NEW).sum()),
        "nx_per_min": round(rate, 2),
        "peak_nx_per_bin": int(nx[peak]),
        "peak_bin": w.bin_time(int(w.bins[peak])),
        "mean_name_score": round(mean_score, 3),
        **w.span(active),
        "sample_names": [name_text(n) for n in st.sample_nx_names[:_N_SAMPLES]],
    }


def add_combined_reading(evidence: dict[str, dict[str, object]]) -> None:
    """When dga-nx and smb-scan both fired, say so in both evidences
    (``evidence`` maps each fired signal to its evidence)."""
    if SIGNAL in evidence and "smb-scan" in evidence:
        evidence[SIGNAL]["with_smb_scan"] = COMBINED_READING
        evidence["smb-scan"]["with_dga_nx"] = COMBINED_READING
