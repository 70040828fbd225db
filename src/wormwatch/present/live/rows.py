"""Host rows: the numbers one line of the live table shows, from a host view.

In: a :class:`~wormwatch.model.HostView` (counters and verdict) and the
:class:`~wormwatch.model.Snapshot` it came in (packet-time clock, bin width).
Out: a :class:`HostRow` of plain numbers, ready to sort and format. Pure and
free of rich, so sorting and filtering are tested without rendering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wormwatch.model import (
    C_A,
    C_KW,
    C_MX,
    C_NX,
    C_QUERIES,
    C_SYN135,
    C_SYN139,
    C_SYN445,
    C_SYN_DST_NEW,
    N_COUNTERS,
    HostView,
    Snapshot,
)

SPARK_BINS = 24  # most recent bins kept for the activity sparkline
ACTIVITY_COLS = (C_QUERIES, C_SYN135, C_SYN139, C_SYN445)


# eq=False: rows hold numpy arrays (via view), compared by identity
@dataclass(frozen=True, slots=True, eq=False)
class HostRow:
    """One host's line of the table, as numbers.

    ``dns_per_s`` is the mean query rate over the bins kept in the window;
    ``kw_share`` the fraction of all its queries that the keyword classifier
    marked (None without queries); ``sync_r`` the Pearson correlation of its
    per-bin MX queries and SYNs as the detector measured it (``Verdict.sync_r``);
    ``activity`` its queries plus SYNs in each of the last bins, oldest first,
    the newest being the bin of ``snapshot.now_us``.
    """

    addr: str
    score: float
    verdicts: tuple[str, ...]
    dns_per_s: float
    n_a: int
    n_mx: int
    kw_share: float | None
    syn: tuple[int, int, int]
    syn_targets: int
    n_nx: int
    sync_r: float | None
    activity: tuple[int, ...]
    last_seen_ago_s: float
    sample: bytes | None
    view: HostView

    @property
    def n_syn(self) -> int:
        return sum(self.syn)


def host_series(view: HostView) -> np.ndarray:
    """The host's per-bin counters as a (bins, N_COUNTERS) int64 array."""
    return np.asarray(view.state.series, np.int64).reshape(-1, N_COUNTERS)


def recent_bins(
    bins: np.ndarray, series: np.ndarray, cols: Sequence[int], *, now_bin: int, n_bins: int
) -> np.ndarray:
    """Sum of counter columns ``cols`` in each of the ``n_bins`` bins ending
    at ``now_bin`` (oldest first), zero where the host had no bin."""
    counts = np.zeros(n_bins, np.int64)
    if n_bins <= 0 or series.shape[0] == 0:
        return counts
    per_bin = series[:, list(cols)].sum(axis=1)
    pos = bins - (now_bin - n_bins + 1)
    keep = (pos >= 0) & (pos < n_bins)
    np.add.at(counts, pos[keep], per_bin[keep])
    return counts


def host_row(view: HostView, snapshot: Snapshot) -> HostRow:
    """Derive the table's numbers for one host."""
    st = view.state
    totals = np.asarray(st.totals, np.int64)
    bins = np.asarray(st.bins, np.int64)
    series = host_series(view)
    bin_us = max(1, snapshot.bin_s) * 1_000_000
    now_us = max(snapshot.now_us, st.last_seen_us)
    window_start_us = int(bins[0]) * bin_us if bins.shape[0] else st.first_seen_us
    span_s = max(1.0, (now_us - max(window_start_us, st.first_seen_us)) / 1e6)
    n_queries = int(totals[C_QUERIES])
    sample = st.sample_names[0] if st.sample_names else None
    if sample is None and st.sample_mx_names:
        sample = st.sample_mx_names[0]
    return HostRow(
        addr=st.addr,
        score=float(view.verdict.score),
        verdicts=tuple(view.verdict.verdicts),
        dns_per_s=int(series[:, C_QUERIES].sum()) / span_s,
        n_a=int(totals[C_A]),
        n_mx=int(totals[C_MX]),
        kw_share=int(totals[C_KW]) / n_queries if n_queries else None,
        syn=(int(totals[C_SYN135]), int(totals[C_SYN139]), int(totals[C_SYN445])),
        syn_targets=int(totals[C_SYN_DST_NEW]),
        n_nx=int(totals[C_NX]),
        sync_r=view.verdict.sync_r,
        activity=tuple(
            int(c)
            for c in recent_bins(
                bins, series, ACTIVITY_COLS, now_bin=now_us // bin_us, n_bins=SPARK_BINS
            )
        ),
        last_seen_ago_s=max(0.0, (snapshot.now_us - st.last_seen_us) / 1e6),
        sample=sample,
        view=view,
    )
