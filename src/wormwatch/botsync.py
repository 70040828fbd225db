"""The bot-sync signal: a host's MX queries and SYN scans rise and fall together.

In: a :class:`~wormwatch.signals.Window` of one host, its
:class:`~wormwatch.model.HostState` and the config. Out: None or the
signal's strength and evidence, as the other signals in
:mod:`wormwatch.signals`. The correlation itself (lags, resolutions,
candidate periods) is :mod:`wormwatch.sync`; ``docs/DETECTION.md`` explains
the thresholds.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from wormwatch.config import Config
from wormwatch.model import C_MX, C_MX_DOM_NEW, C_SYN445, C_SYN_DST_NEW, N_COUNTERS, HostState
from wormwatch.signals import SYN_COLS, Result, Window, tunnel_reason
from wormwatch.sync import Grid, best_sync, network_fit


def merge_factor(cfg: Config) -> int:
    """Aggregate bins per plotted sync bin (``sync_bin_s`` / ``bin_s``, at least 1)."""
    return max(1, round(cfg.bot_sync.sync_bin_s / cfg.bin_s))


def sync_series(w: Window) -> dict[str, object]:
    """The window's bins with an MX query or a SYN: offsets from its first bin, both counts."""
    mx = w.col(C_MX)
    syn = w.series[:, SYN_COLS].sum(axis=1)
    idx = np.flatnonzero((mx > 0) | (syn > 0))
    first = int(w.bins[0])
    return {
        "start": w.bin_time(first),
        "bin_s": w.bin_s,
        "offsets": (w.bins[idx] - first).tolist(),
        "mx": mx[idx].tolist(),
        "syn": syn[idx].tolist(),
    }


def bot_sync(w: Window, st: HostState, cfg: Config) -> Result:
    """The host's MX-query and SYN series rise and fall together (within a
    lag of ``max_lag_s``), over the longest candidate period where it holds."""
    bs = cfg.bot_sync
    syn = w.series[:, SYN_COLS].sum(axis=1)
    if int(w.col(C_MX).sum()) < bs.min_mx_queries or int(syn.sum()) < bs.min_syns:
        return None
    if int(w.col(C_MX_DOM_NEW).sum() + w.col(C_SYN_DST_NEW).sum()) < bs.min_spread:
        return None
    if cfg.mx_client.skip_tunnels and tunnel_reason(st.sample_mx_names) is not None:
        return None
    grid = Grid.of(bs, w.bin_s)
    # Periods start a few quiet bins before an MX bin (the burst rises from
    # them) and end a few bins after the last MX or SYN (or now).
    margin = int(grid.lags[-1]) + max(grid.widths)
    busy = w.bins[(w.col(C_MX) > 0) | (syn > 0)]
    last = min(max(w.last_bin, int(w.bins[-1])), int(busy[-1]) + margin)
    p = w.periods(w.bins[w.col(C_MX) > 0], margin=margin, last_bin=last)
    mx_p = p.col(C_MX).astype(np.float64)
    syn_p = p.series[:, SYN_COLS].sum(axis=1).astype(np.float64)
    spread = (p.col(C_MX_DOM_NEW) + p.col(C_SYN_DST_NEW)).astype(np.float64)
    fit = best_sync(p, mx_p, syn_p, spread, bs, w.bin_s)
    if fit is None:
        return None
    pw = w.sub(p, fit.period)
    strength = min(1.0, (fit.r - bs.min_r) / (1.0 - bs.min_r)) if bs.min_r < 1.0 else 1.0
    return strength, lambda _prefixes: {
        "mx_queries": int(pw.col(C_MX).sum()),
        "syns": int(pw.series[:, SYN_COLS].sum()),
        "r": round(fit.r, 4),
        "lag_s": fit.lag_bins * w.bin_s,
        "resolution_s": fit.width_bins * w.bin_s,
        "sync_bursts": fit.bursts,
        "sync_s": fit.sync_bins * w.bin_s,
        "bins": int(pw.bins.shape[0]),
        "active_bins": int(((pw.col(C_MX) > 0) | (pw.series[:, SYN_COLS].sum(axis=1) > 0)).sum()),
        "period": pw.period(),
        "series": sync_series(pw),
    }


def sync_evidence(
    bins: npt.ArrayLike, mx_series: npt.ArrayLike, syn_series: npt.ArrayLike, cfg: Config
) -> dict[str, object] | None:
    """Sync evidence over the whole span of two aligned per-bin series (the
    network-wide record, the report's figures): the best r over the lags and
    resolutions, both series; None with too few active bins or r undefined.

    ``bins`` are bin indices (``cfg.bin_s``), ascending, possibly with gaps,
    which count as zero.
    """
    b = np.asarray(bins, np.int64)
    mx = np.asarray(mx_series, np.int64)
    syn = np.asarray(syn_series, np.int64)
    active = (mx > 0) | (syn > 0)
    if not active.any():
        return None
    idx = np.flatnonzero(active)
    busy = b[idx]
    lo, hi = int(busy[0]), int(busy[-1])
    # Idle bins count as zero pairs: a long idle stretch adds only to the number of
    # bins, so it is cut to the few bins a lag or a moving sum reaches into, and r is
    # that of the whole span; the span itself is never laid out (one record of 1970 in
    # a 2026 capture once made a dense array of 30 million bins: 6 GB, 100 s).
    grid = Grid.of(cfg.bot_sync, cfg.bin_s)
    reach = 2 * (int(grid.lags[-1]) + max(grid.widths))
    at = np.concatenate([[0], np.cumsum(np.minimum(np.diff(busy) - 1, reach) + 1)])
    packed_mx = np.zeros(int(at[-1]) + 1, np.float64)
    packed_syn = np.zeros(int(at[-1]) + 1, np.float64)
    packed_mx[at] = mx[idx]
    packed_syn[at] = syn[idx]
    series = np.zeros((busy.shape[0], N_COUNTERS), np.int64)
    series[:, C_MX] = mx[idx]
    series[:, C_SYN445] = syn[idx]
    w = Window(busy, series, cfg.bin_s, lo, hi)
    fit = network_fit(packed_mx, packed_syn, cfg.bot_sync, cfg.bin_s, n_bins=hi - lo + 1)
    if fit is None:
        return None
    r, width, lag = fit
    return {
        "r": round(r, 4),
        "lag_s": lag * cfg.bin_s,
        "resolution_s": width * cfg.bin_s,
        "bins": hi - lo + 1,
        "active_bins": int(idx.shape[0]),
        "series": sync_series(w),
    }
