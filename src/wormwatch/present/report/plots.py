"""Report figures: per-bin counters drawn as small PNG files (matplotlib, Agg).

In: :class:`~wormwatch.model.HostState` series (per-bin counters of one host)
and the aggregate stage's network-wide per-bin series. Out: one PNG file per
call, written to the path given, and the numbers the figure shows (a fit, a
correlation) so the report's text can quote exactly what was drawn.

The study's figures 1, 3 and 4 live here (figure 2 is a table, see
:mod:`wormwatch.present.report.prefixes`). Figures are built on ``Figure`` objects
with the Agg canvas, never through pyplot's global state, so nothing stays
open between calls and no display is ever needed. Only addresses and numbers
are drawn: untrusted names never reach a plot (matplotlib would read ``$`` as
mathtext).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: a report is written on servers and in CI

import numpy as np
import numpy.typing as npt
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from wormwatch.errors import WormwatchError
from wormwatch.model import (
    C_A,
    C_KW_A,
    C_MX,
    C_NX,
    C_NX_DOMS_NEW,
    C_NX_SCORE,
    C_SYN135,
    C_SYN139,
    C_SYN445,
    I64,
    HostState,
)

DPI = 100
F64 = npt.NDArray[np.float64]
_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown")
_MX_COLOUR = "tab:blue"
_SYN_COLOUR = "tab:red"
# Two series share one y axis when their peaks are within this factor.
_SHARED_AXIS_RATIO = 2.0
_MIN_FIT_BINS = 3
# Steps drawn at most along a time axis (a figure is 850 pixels wide); a longer span
# is drawn in bins a whole multiple wider (its axis says how wide). Drawing a span of
# years bin by bin (one file's clock unset) took matplotlib many minutes and gigabytes.
MAX_DRAWN_BINS = 5000


@dataclass(frozen=True, slots=True)
class RateLine:
    """One host's line in the query-rate figure."""

    label: str
    state: HostState


@dataclass(frozen=True, slots=True)
class KeywordFit:
    """Least-squares line of keyword A-queries on all A-queries, per active bin.

    ``slope``/``intercept`` are None when all bins have the same number of
    A-queries (no line can be fitted); ``r2`` follows the detector's rule
    (1 when both series are constant, 0 when only one is, None under three
    bins).
    """

    n_bins: int
    slope: float | None
    intercept: float | None
    r2: float | None


# --- time axes ------------------------------------------------------------------


# the last second matplotlib can draw (a capture's times reach it: DECODING.md)
_LAST = np.datetime64("9999-12-31T23:59:59", "s")


def bin_times(lo: int, hi: int, bin_s: int) -> npt.NDArray[np.datetime64]:
    """Start times (UTC) of bins ``lo..hi`` inclusive, plus the end of the last bin
    (none after the last second a date axis can draw)."""
    starts = np.arange(lo, hi + 2, dtype=np.int64) * bin_s
    edges: npt.NDArray[np.datetime64] = np.minimum(starts.astype("datetime64[s]"), _LAST)
    return edges


def dense(bins: I64, values: npt.ArrayLike, lo: int, hi: int) -> F64:
    """Per-bin values over ``lo..hi``; a bin missing from ``bins`` counts zero, and
    values of a bin that ``bins`` holds more than once add up."""
    out = np.zeros(hi - lo + 1, np.float64)
    keep = (bins >= lo) & (bins <= hi)
    np.add.at(out, bins[keep] - lo, np.asarray(values, np.float64)[keep])
    return out


def drawn_bins(lo: int, hi: int) -> tuple[int, int, int]:
    """``(k, lo // k, hi // k)``: bins ``lo..hi`` drawn ``k`` at a time, ``k`` the
    smallest that keeps the span within :data:`MAX_DRAWN_BINS` steps (1 for most)."""
    k = max(1, -(-(hi - lo + 1) // MAX_DRAWN_BINS))
    return k, lo // k, hi // k


def _step(ax: Axes, edges: npt.NDArray[np.datetime64], values: F64, **style: object) -> None:
    """Counts per bin as stairs, flat over each bin, dropping to zero at both ends
    (so a single bin reads as a bar, not a floating line)."""
    ax.stairs(values, edges, baseline=0.0, **style)  # type: ignore[arg-type]


def _floor_axis(ax: Axes, scale: float) -> None:
    """y from 0, and at least up to one event per bin, so an empty series reads as zero."""
    _bottom, top = ax.get_ylim()
    ax.set_ylim(0.0, max(top, scale * 1.05))


def _time_axis(ax: Axes, edges: npt.NDArray[np.datetime64], bin_s: int) -> None:
    """UTC date ticks; a single bin gets a bin of room either side to read as a bar."""
    if edges.shape[0] == 2:
        pad = np.timedelta64(bin_s, "s")
        ax.set_xlim(edges[0] - pad, min(edges[1] + pad, _LAST))
    elif edges[-1] >= _LAST:
        ax.set_xlim(edges[0], edges[-1])  # no margin past the year 9999
    # matplotlib's date helpers are not annotated
    locator = mdates.AutoDateLocator(tz=UTC, minticks=3, maxticks=8)  # type: ignore[no-untyped-call]
    formatter = mdates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(formatter)


def _lines_span(lines: Sequence[RateLine]) -> tuple[int, int, int]:
    """:func:`drawn_bins` of the bins of all ``lines``."""
    spans = [(int(ln.state.bins[0]), int(ln.state.bins[-1])) for ln in lines if ln.state.bins.size]
    lo = min((s[0] for s in spans), default=0)
    hi = max((s[1] for s in spans), default=0)
    return drawn_bins(lo, hi)


def _per_min(bin_s: int) -> float:
    return 60.0 / bin_s


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    try:
        fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
    except OSError as err:
        reason = err.strerror or str(err)
        raise WormwatchError(f"cannot write figure {path}: {reason}") from None


# --- figure 1: DNS query rate per host, A and MX apart ---------------------------


def query_rate_figure(lines: Sequence[RateLine], bin_s: int, path: Path, *, title: str) -> None:
    """The study's figure 1: A and MX queries per minute over time, one line per host.

    Two panels share the time axis: A-record queries above, MX queries below,
    each on its own scale (a keyword storm sends hundreds of A queries a
    minute, a mass mailer a few MX queries).
    """
    k, lo, hi = _lines_span(lines)
    bin_s *= k
    times = bin_times(lo, hi, bin_s)
    fig = Figure(figsize=(8.5, 5.2), layout="constrained")
    ax_a, ax_mx = fig.subplots(2, 1, sharex=True)
    scale = _per_min(bin_s)
    for i, ln in enumerate(lines):
        colour = _COLOURS[i % len(_COLOURS)]
        st = ln.state
        a = dense(st.bins // k, st.series[:, C_A], lo, hi)
        _step(ax_a, times, a * scale, color=colour, lw=1.2)
        _step(
            ax_mx,
            times,
            dense(st.bins // k, st.series[:, C_MX], lo, hi) * scale,
            color=colour,
            lw=1.2,
            label=ln.label,
        )
    ax_a.set_title("A-record queries", fontsize=10, loc="left")
    ax_mx.set_title("MX queries", fontsize=10, loc="left")
    for ax in (ax_a, ax_mx):
        ax.set_ylabel("queries / min")
        _floor_axis(ax, scale)
        ax.grid(alpha=0.3)
    ax_mx.set_xlabel(f"time (UTC), bins of {bin_s} s")
    _time_axis(ax_mx, times, bin_s)
    if lines:
        ax_mx.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    _save(fig, path)


# --- figure 3: keyword A-queries against all A-queries ----------------------------


def keyword_fit(state: HostState) -> tuple[F64, F64, KeywordFit]:
    """x = A-queries, y = keyword A-queries of each bin with any A-query, and their fit."""
    a = state.series[:, C_A].astype(np.float64)
    kw = state.series[:, C_KW_A].astype(np.float64)
    active = a > 0
    x, y = a[active], kw[active]
    n = int(x.shape[0])
    if n < _MIN_FIT_BINS:
        return x, y, KeywordFit(n, None, None, None)
    sx, sy = float(np.ptp(x)), float(np.ptp(y))
    if sx == 0.0:
        return x, y, KeywordFit(n, None, None, 1.0 if sy == 0.0 else 0.0)
    slope, intercept = (float(v) for v in np.polyfit(x, y, 1))
    if sy == 0.0:
        return x, y, KeywordFit(n, slope, intercept, 0.0)
    r = float(np.corrcoef(x, y)[0, 1])
    return x, y, KeywordFit(n, slope, intercept, r * r)


def _fit_text(fit: KeywordFit) -> str:
    r2 = "undefined (under 3 bins)" if fit.r2 is None else f"{fit.r2:.4f}"
    if fit.slope is None or fit.intercept is None:
        line = "no line (A-queries equal in every bin)"
    else:
        sign = "+" if fit.intercept >= 0 else "-"
        line = f"y = {fit.slope:.3f} x {sign} {abs(fit.intercept):.2f}"
    return f"fit: {line}\nR\N{SUPERSCRIPT TWO} = {r2},  n = {fit.n_bins} bins"


def keyword_fit_figure(state: HostState, bin_s: int, path: Path) -> KeywordFit:
    """The study's figure 3 for one host: per bin, keyword A-queries against all A-queries.

    Points on the dashed diagonal are bins where every A query was a keyword
    query; a worm's points lie on a straight line (R² near 1).
    """
    x, y, fit = keyword_fit(state)
    fig = Figure(figsize=(5.4, 4.3), layout="constrained")
    ax = fig.subplots()
    top = max(1.0, float(x.max()) if x.size else 1.0) * 1.05
    ax.plot([0, top], [0, top], ls="--", lw=0.8, color="grey", label="y = x (all A are keyword)")
    # bins with the same counts are one dot, its area growing with their number
    points, n_bins = np.unique(np.stack([x, y], axis=1), axis=0, return_counts=True)
    label = "bins (bigger dot: more bins)" if n_bins.size and n_bins.max() > 1 else "one bin"
    ax.scatter(
        points[:, 0], points[:, 1], s=np.minimum(14 * n_bins, 400), alpha=0.55,
        color="tab:blue", edgecolors="none", label=label, zorder=3,
    )  # fmt: skip
    if fit.slope is not None and fit.intercept is not None:
        xs = np.array([0.0, top])
        ax.plot(xs, fit.slope * xs + fit.intercept, color="tab:red", lw=1.4, label="fitted line")
    ax.text(
        0.03, 0.97, _fit_text(fit), transform=ax.transAxes, va="top", fontsize=9,
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.8"},
    )  # fmt: skip
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel(f"A-queries per {bin_s} s bin")
    ax.set_ylabel(f"keyword A-queries per {bin_s} s bin")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"{state.addr}: keyword vs all A-queries", fontsize=10)
    _save(fig, path)
    return fit


# --- figure 4: MX queries and SYNs to 135/139/445 over time ------------------------


def host_sync_series(state: HostState) -> tuple[I64, I64, I64]:
    """(bins, MX queries, SYNs to 135/139/445) of one host."""
    series = state.series.astype(np.int64, copy=False)
    return state.bins, series[:, C_MX], series[:, [C_SYN135, C_SYN139, C_SYN445]].sum(axis=1)


def coarsen(bins: I64, mx: I64, syn: I64, merge: int) -> tuple[I64, I64, I64]:
    """Sum per-bin counts into bins ``merge`` times as wide (the detector's sync bins)."""
    if merge <= 1 or bins.size == 0:
        return bins, mx, syn
    wide, inverse = np.unique(bins // merge, return_inverse=True)
    n = int(wide.shape[0])
    return (
        wide.astype(np.int64),
        np.bincount(inverse, weights=mx, minlength=n).astype(np.int64),
        np.bincount(inverse, weights=syn, minlength=n).astype(np.int64),
    )


def sync_figure(
    bins: I64,
    mx: I64,
    syn: I64,
    bin_s: int,
    path: Path,
    *,
    title: str,
    r: float | None,
) -> None:
    """The study's figure 4: MX queries and SYNs per minute on one time axis.

    ``bins`` are indices of bins of ``bin_s`` seconds: pass the detector's
    correlation bins (see :func:`coarsen`) so the lines show what ``r`` was
    computed from. When the two peaks differ by more than a factor of three, SYNs get their
    own (right-hand, red) axis so both shapes stay visible.
    """
    k, lo, hi = drawn_bins(*((int(bins[0]), int(bins[-1])) if bins.size else (0, 0)))
    bin_s *= k
    times = bin_times(lo, hi, bin_s)
    scale = _per_min(bin_s)
    mx_rate = dense(bins // k, mx, lo, hi) * scale
    syn_rate = dense(bins // k, syn, lo, hi) * scale
    fig = Figure(figsize=(8.5, 3.6), layout="constrained")
    ax = fig.subplots()
    _step(ax, times, mx_rate, color=_MX_COLOUR, lw=1.3, label="MX queries")
    peaks = (float(mx_rate.max(initial=0.0)), float(syn_rate.max(initial=0.0)))
    is_shared = min(peaks) > 0 and max(peaks) / min(peaks) <= _SHARED_AXIS_RATIO
    ax_syn = ax if is_shared else ax.twinx()
    _step(ax_syn, times, syn_rate, color=_SYN_COLOUR, lw=1.3, label="SYNs to 135/139/445")
    if is_shared:
        ax.set_ylabel("per min")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    else:
        ax.set_ylabel("MX queries / min", color=_MX_COLOUR)
        ax_syn.set_ylabel("SYNs to 135/139/445 / min", color=_SYN_COLOUR)
        ax.tick_params(axis="y", colors=_MX_COLOUR)
        ax_syn.tick_params(axis="y", colors=_SYN_COLOUR)
        _floor_axis(ax_syn, scale)
    _floor_axis(ax, scale)
    ax.grid(alpha=0.3)
    ax.set_xlabel(f"time (UTC), bins of {bin_s} s")
    _time_axis(ax, times, bin_s)
    r_text = "undefined (too few active bins, or a constant series)" if r is None else f"{r:.3f}"
    ax.set_title(f"{title}\nPearson r (MX vs SYN per bin) = {r_text}", fontsize=10)
    _save(fig, path)


# --- figure 5: NXDOMAIN answers of the dga-nx hosts, with their name scores -----------


def nx_rate_figure(lines: Sequence[RateLine], bin_s: int, path: Path, *, title: str) -> None:
    """NXDOMAIN answers per minute over time, one line per host (above), and the mean
    name score of the domains new in each bin (below, 0..1; a point per bin with one)."""
    k, lo, hi = _lines_span(lines)
    bin_s *= k
    times = bin_times(lo, hi, bin_s)
    fig = Figure(figsize=(8.5, 5.2), layout="constrained")
    ax_nx, ax_score = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    scale = _per_min(bin_s)
    for i, ln in enumerate(lines):
        colour = _COLOURS[i % len(_COLOURS)]
        st, bins = ln.state, ln.state.bins // k
        _step(ax_nx, times, dense(bins, st.series[:, C_NX], lo, hi) * scale, color=colour)
        domains = dense(bins, st.series[:, C_NX_DOMS_NEW], lo, hi)
        has = domains > 0
        # C_NX_SCORE is in thousandths of a name score
        mean = dense(bins, st.series[:, C_NX_SCORE], lo, hi)[has] / 1000.0 / domains[has]
        ax_score.plot(times[:-1][has], mean, ".", color=colour, label=ln.label)
    ax_nx.set_title("NXDOMAIN answers", fontsize=10, loc="left")
    ax_nx.set_ylabel("answers / min")
    _floor_axis(ax_nx, scale)
    ax_score.set_title("mean name score of the new NXDOMAIN domains", fontsize=10, loc="left")
    ax_score.set_ylabel("score")
    ax_score.set_ylim(0.0, 1.05)
    for ax in (ax_nx, ax_score):
        ax.grid(alpha=0.3)
    ax_score.set_xlabel(f"time (UTC), bins of {bin_s} s")
    _time_axis(ax_score, times, bin_s)
    if lines:
        ax_score.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    _save(fig, path)
