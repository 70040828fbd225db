"""MX/SYN synchronisation: the correlation behind bot-sync, per host and network-wide.

In: per-bin MX-query and SYN counts at the aggregate's bin resolution
(``bin_s``) and the candidate periods of :mod:`wormwatch.periods`. Out: for
each period, the best Pearson r of the two series over lags ``-L..+L`` bins
and two resolutions (the bins themselves, and a moving sum over
``sync_bin_s``), and how much synchronous activity the period holds
(co-active bins and bursts); then the evidence of the chosen period.

Why a lag and a moving sum: a bot's SYN burst often starts a minute or two
after its MX burst, and bursts shorter than a bin straddle bin boundaries by
chance. Fixed wide bins (the first version summed into 5-minute bins) cut
150-second bursts at arbitrary places and lost r; searching the lag at the
bin resolution, with a moving sum for jitter, does not. A lag is searched
only up to ``max_lag_s``: MX bursts and scans that alternate further apart
are out of phase, not synchronous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from wormwatch.config import BotSyncConfig
from wormwatch.model import I64
from wormwatch.periods import F64, Periods

BOOL2 = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Grid:
    """Lags (bins, positive = SYNs after MX) and resolutions (moving-sum widths, bins)."""

    lags: I64
    widths: tuple[int, ...]

    @staticmethod
    def of(cfg: BotSyncConfig, bin_s: int) -> Grid:
        # whole bins, rounded up: a lag of max_lag_s can carry a burst's SYNs into
        # the bin after the next bin boundary (180 s in 300 s bins: one bin, not none)
        max_lag = max(0, -(-cfg.max_lag_s // bin_s))
        width = max(1, round(cfg.sync_bin_s / bin_s))
        return Grid(np.arange(-max_lag, max_lag + 1, dtype=np.int64), tuple(sorted({1, width})))


def _moving_sum(v: F64, width: int) -> F64:
    """Trailing moving sum over ``width`` bins (the bins themselves for 1)."""
    if width <= 1:
        return v
    c = np.concatenate([[0.0], np.cumsum(v)])
    idx = np.arange(1, v.shape[0] + 1)
    out: F64 = c[idx] - c[np.maximum(idx - width, 0)]
    return out


def _shifted(v: F64, lags: I64) -> F64:
    """Rows ``v[t + lag]`` for each lag (zero outside), shape ``(n_lags, n)``."""
    n = v.shape[0]
    pad = int(np.abs(lags).max()) if lags.shape[0] else 0
    padded = np.concatenate([np.zeros(pad), v, np.zeros(pad)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, n)
    out: F64 = windows[lags + pad]
    return out


def correlations(p: Periods, mx: F64, syn: F64, grid: Grid, n_bins: int | None = None) -> F64:
    """Pearson r per (resolution, lag, period); NaN where either series is constant.
    ``n_bins``: the periods' length when idle bins were left out of the series."""
    out = np.full((len(grid.widths), grid.lags.shape[0], p.lo.shape[0]), np.nan)
    n = p.n_bins.astype(np.float64) if n_bins is None else np.full(p.lo.shape[0], float(n_bins))
    for i, width in enumerate(grid.widths):
        x = _moving_sum(mx, width)
        y = _shifted(_moving_sum(syn, width), grid.lags)
        sx, sxx = p.sums(x), p.sums(x * x)
        sy, syy, sxy = p.sums(y), p.sums(y * y), p.sums(x * y)
        vx = sxx - sx * sx / n
        vy = syy - sy * sy / n
        cov = sxy - sx * sy / n
        with np.errstate(invalid="ignore", divide="ignore"):
            r = cov / np.sqrt(vx * vy)
        r[(vx <= 1e-9) | (vy <= 1e-9)] = np.nan
        out[i] = np.clip(r, -1.0, 1.0)
    return out


def coactive(mx: F64, syn: F64, lags: I64) -> BOOL2:
    """Per lag and bin: MX in the bin and a SYN within one bin of ``bin + lag``."""
    near = syn + np.concatenate([[0.0], syn[:-1]]) + np.concatenate([syn[1:], [0.0]])
    both: BOOL2 = (mx > 0)[None, :] & (_shifted(near, lags) > 0)
    return both


def sync_activity(p: Periods, both: BOOL2) -> tuple[F64, F64]:
    """Per (lag, period): co-active bins, and bursts (runs of co-active bins)."""
    starts = both.copy()
    starts[:, 1:] &= ~both[:, :-1]
    bursts = p.sums(starts)
    # a run that began before the period starts it with a burst of its own
    lo = p.lo
    carried = both[:, lo] & ~starts[:, lo]
    return p.sums(both), bursts + carried


@dataclass(frozen=True, slots=True)
class Fit:
    """Where bot-sync holds: a period, its best resolution and lag, and its activity."""

    period: int
    width_bins: int
    lag_bins: int
    r: float
    sync_bins: int
    bursts: int


def best_sync(
    p: Periods, mx: F64, syn: F64, spread: F64, cfg: BotSyncConfig, bin_s: int
) -> Fit | None:
    """The longest period (then the best r) where bot-sync holds, or None.

    Per period: enough MX queries, SYNs, active bins and new peers (MX domains
    plus SYN destinations); per lag: enough synchronous bursts or minutes; per
    resolution and lag: r at least ``min_r``.
    """
    grid = Grid.of(cfg, bin_s)
    per_period = (
        (p.sums(mx) >= cfg.min_mx_queries)
        & (p.sums(syn) >= cfg.min_syns)
        & (p.sums((mx > 0) | (syn > 0)) >= cfg.min_active_bins)
        & (p.sums(spread) >= cfg.min_spread)
    )
    if not per_period.any():
        return None
    # the costly part (every lag and resolution) only where the counts suffice
    kept = np.flatnonzero(per_period)
    p = p.subset(per_period)
    sync_bins, bursts = sync_activity(p, coactive(mx, syn, grid.lags))
    per_lag = (bursts >= cfg.min_bursts) | (sync_bins * bin_s >= cfg.min_sync_s)
    r = correlations(p, mx, syn, grid)
    with np.errstate(invalid="ignore"):
        ok = (r >= cfg.min_r) & per_lag[None, :, :]
    if not ok.any():
        return None
    j = p.longest(np.asarray(ok.any(axis=(0, 1))))
    r_j = np.where(ok[:, :, j], r[:, :, j], -np.inf)
    i, k = np.unravel_index(int(np.argmax(r_j)), r_j.shape)
    return Fit(
        period=int(kept[j]),
        width_bins=grid.widths[int(i)],
        lag_bins=int(grid.lags[int(k)]),
        r=float(r[i, k, j]),
        sync_bins=int(sync_bins[k, j]),
        bursts=int(bursts[k, j]),
    )


def network_fit(
    mx: F64, syn: F64, cfg: BotSyncConfig, bin_s: int, *, n_bins: int | None = None
) -> tuple[float, int, int] | None:
    """Best r over the whole span (r, resolution in bins, lag in bins), or None
    when fewer than ``min_active_bins`` bins are active or r is undefined.
    ``n_bins``: the span's length, when runs of idle bins were shortened in
    ``mx`` and ``syn`` (each still longer than a lag and a moving sum reach)."""
    if int(((mx > 0) | (syn > 0)).sum()) < cfg.min_active_bins:
        return None
    n = mx.shape[0]
    p = Periods(0, np.zeros((n, 0), np.int64), np.array([0]), np.array([n - 1]))
    grid = Grid.of(cfg, bin_s)
    r = correlations(p, mx, syn, grid, n_bins)[:, :, 0]
    if np.isnan(r).all():
        return None
    i, k = np.unravel_index(int(np.nanargmax(r)), r.shape)
    return float(r[i, k]), grid.widths[int(i)], int(grid.lags[int(k)])
