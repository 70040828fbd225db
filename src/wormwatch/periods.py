"""Candidate periods: the stretches of a host's recent bins a signal is judged on.

In: one host's per-bin counters inside the evaluation window (sparse bins)
and the evaluation bin. Out: the same counters as a dense array from the
host's first bin in the window to the evaluation bin, a set of candidate
periods over it, and per-period sums of any per-bin quantity (prefix sums, so
a few thousand periods cost a few numpy operations).

Why: a share or a rate taken over the whole one-day window waits until the
behaviour outweighs the host's whole past (a keyword storm on a PC with a day
of browsing would wait hours). Judging it over the period in which the
behaviour is active does not. The candidate periods are

- every suffix ``[s, now]``: whatever bin the behaviour began in, one period
  starts exactly there, so a fresh behaviour is judged on itself alone;
- tiles of 8, 16, 32, ... bins, starting every half tile (aligned to absolute
  bin numbers): a behaviour that stopped, followed by hours of ordinary
  traffic, is still inside one of them for as long as it is in the window.

A signal fires when its thresholds hold over some candidate period; its
evidence describes the longest such period (``docs/DETECTION.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from wormwatch.model import I64

F64 = npt.NDArray[np.float64]
# Shortest tile, in bins; tiles double up to the length of the dense span.
_MIN_TILE_BINS = 8


@dataclass(frozen=True, slots=True)
class Periods:
    """Candidate periods over a dense run of bins.

    ``series[i]`` are the counters of bin ``first_bin + i`` (zeros where the
    host sent nothing); period ``j`` covers dense rows ``lo[j]..hi[j]``
    inclusive.
    """

    first_bin: int
    series: I64
    lo: I64
    hi: I64

    @property
    def n_bins(self) -> I64:
        return self.hi - self.lo + 1

    def sums(self, values: npt.ArrayLike) -> F64:
        """Per-period sums of per-bin ``values`` (last axis = bins)."""
        v = np.asarray(values, np.float64)
        c = np.cumsum(v, axis=-1)
        # sum over lo..hi = c[hi] - c[lo - 1]; np.take is ~10x faster than c[..., idx]
        before = np.take(c, np.maximum(self.lo - 1, 0), axis=-1)
        before[..., self.lo == 0] = 0.0
        out: F64 = np.take(c, self.hi, axis=-1) - before
        return out

    def col(self, c: int) -> I64:
        return self.series[:, c]

    def subset(self, keep: npt.NDArray[np.bool_]) -> Periods:
        """The periods where ``keep`` holds (same bins)."""
        return Periods(self.first_bin, self.series, self.lo[keep], self.hi[keep])

    def longest(self, ok: npt.NDArray[np.bool_]) -> int:
        """Index of the longest period where ``ok`` holds (the latest of equals)."""
        length = np.where(ok, self.n_bins, -1)
        best = np.flatnonzero(length == length.max())
        return int(best[np.argmax(self.hi[best])])


def dense(bins: I64, series: I64, first_bin: int, last_bin: int) -> I64:
    """Rows of ``series`` (at ``bins``) spread over ``first_bin..last_bin``."""
    out = np.zeros((last_bin - first_bin + 1, series.shape[1]), np.int64)
    keep = (bins >= first_bin) & (bins <= last_bin)
    out[bins[keep] - first_bin] = series[keep]
    return out


def candidate_periods(n: int, first_bin: int, starts: I64 | None = None) -> tuple[I64, I64]:
    """The suffixes of ``0..n-1`` starting at ``starts`` (default: every bin;
    0 always), and half-overlapping tiles of 8, 16, ... bins."""
    suffix = np.arange(n, dtype=np.int64) if starts is None else np.union1d(starts, [0])
    los = [suffix]
    his = [np.full(suffix.shape[0], n - 1, np.int64)]
    tile = _MIN_TILE_BINS
    while tile < n:
        step = tile // 2
        # absolute alignment: the same tiles at every evaluation
        start = -(first_bin % step)
        lo = np.arange(start, n - 1, step, dtype=np.int64)
        hi = np.minimum(lo + tile - 1, n - 1)
        lo = np.maximum(lo, 0)
        keep = hi < n - 1  # those reaching the end are suffixes already
        los.append(lo[keep])
        his.append(hi[keep])
        tile *= 2
    return np.concatenate(los), np.concatenate(his)


def build_periods(
    bins: I64, series: I64, *, first_bin: int, last_bin: int, starts: I64 | None = None
) -> Periods:
    """Candidate periods over ``first_bin..last_bin`` (the host's ``bins`` and
    ``series`` rows spread over it); suffixes start at the absolute bins
    ``starts`` (default: at every bin). A suffix may start at an idle bin
    only to no purpose for a ratio (the same sums as from the next busy bin),
    so signals pass the bins their activity starts in."""
    d = dense(bins, series, first_bin, last_bin)
    at = None if starts is None else np.clip(starts - first_bin, 0, d.shape[0] - 1)
    lo, hi = candidate_periods(d.shape[0], first_bin, at)
    return Periods(first_bin, d, lo, hi)
