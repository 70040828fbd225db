"""Detect stage: per-host signals, score and verdicts from the aggregated counters.

In: one :class:`~wormwatch.model.HostState` (totals, per-bin counters of the
bins kept in the window, sample names, name-prefix counts) and the
:class:`~wormwatch.config.Config`. Out: a :class:`~wormwatch.model.Verdict`
(score 0-100, the signals that fired, JSON-serialisable evidence). Also the
network-wide MX/SYN correlation. The signals themselves are in
:mod:`wormwatch.signals`; ``docs/DETECTION.md`` explains every signal and
threshold.

Hosts are evaluated at bin boundaries, not per packet; everything here is
numpy over the host's bins.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from wormwatch.botsync import bot_sync, sync_evidence
from wormwatch.config import SIGNALS, BotSyncConfig, Config
from wormwatch.dganx import add_combined_reading, dga_nx
from wormwatch.model import (
    C_KW_A,
    C_MX,
    C_MX_DOM_NEW,
    C_NX,
    C_NX_DOMS_NEW,
    C_SYN135,
    C_SYN139,
    C_SYN445,
    C_SYN_DST_NEW,
    N_COUNTERS,
    Explain,
    HostState,
    Verdict,
)
from wormwatch.signals import (
    SYN_COLS,
    Window,
    keyword_storm,
    mx_client,
    smb_scan,
    storm_could_fire,
    top_prefixes,
    tunnel_reason,
)
from wormwatch.text import iso_time

__all__ = [
    "could_fire",
    "evaluate",
    "network_evidence",
    "network_sync",
    "top_prefixes",
    "tunnel_reason",
]


def network_sync(
    mx_series: npt.ArrayLike,
    syn_series: npt.ArrayLike,
    *,
    bins: npt.ArrayLike | None = None,
    cfg: Config | None = None,
) -> float | None:
    """Best Pearson r of network-wide MX queries against SYNs to 135/139/445.

    ``mx_series`` and ``syn_series`` are aligned per-bin counts (bins of
    ``cfg.bin_s``); ``bins`` are their bin indices, ascending, possibly with
    gaps, which count as zero (default: consecutive). With ``cfg``, r is the
    best over the lags and resolutions of ``[detect.bot_sync]``, as for a
    host; without it, the bins are compared as given, without lag, and at
    least 6 must be active. None when too few bins are active or r is
    undefined.
    """
    exact = BotSyncConfig(sync_bin_s=1, max_lag_s=0, min_active_bins=6)
    ev = network_evidence(
        np.arange(np.shape(mx_series)[0]) if bins is None else bins,
        mx_series,
        syn_series,
        cfg if cfg is not None else Config(bot_sync=exact, bin_s=1),
    )
    r = None if ev is None else ev["r"]
    return r if isinstance(r, float) else None


def network_evidence(
    bins: npt.ArrayLike, mx_series: npt.ArrayLike, syn_series: npt.ArrayLike, cfg: Config
) -> dict[str, object] | None:
    """Network-wide sync evidence for the summary record: r, lag, both series."""
    evidence = sync_evidence(bins, mx_series, syn_series, cfg)
    if evidence is None:
        return None
    r = evidence["r"]
    return {
        "is_synchronised": isinstance(r, float) and r >= cfg.bot_sync.min_r,
        "mx_queries": int(np.asarray(mx_series).sum()),
        "syns": int(np.asarray(syn_series).sum()),
        **evidence,
    }


_SIGNAL_FUNCS = {
    "keyword-storm": keyword_storm,
    "mx-client": mx_client,
    "smb-scan": smb_scan,
    "bot-sync": bot_sync,
    "dga-nx": dga_nx,
}
# Mail servers and resolvers look up MX and mail-like names for a living, and receive
# NXDOMAIN answers for whatever names their senders and clients made up.
_SERVER_EXEMPT = frozenset({"keyword-storm", "mx-client", "bot-sync", "dga-nx"})


def could_fire(
    totals: npt.NDArray[np.int64], cfg: Config, peaks: npt.NDArray[np.float64] | None = None
) -> npt.NDArray[np.bool_]:
    """Per signal, which hosts' totals (and ``peaks``, when given) could reach
    its thresholds.

    ``totals`` is ``(n_hosts, N_COUNTERS)`` (or one host's row), ``peaks`` the
    same hosts' rows of :meth:`~wormwatch.aggregate.Aggregator.peaks`; the
    result is ``(n_hosts, len(SIGNALS))`` booleans, columns in ``SIGNALS``
    order. Totals since first seen bound every window sum, and peaks every
    window's busiest bin, so a host with no True here scores 0 and needs no
    :func:`evaluate` (the judge's pre-filter).
    """
    t = np.asarray(totals, np.int64).reshape(-1, N_COUNTERS)
    n_syn = t[:, C_SYN135] + t[:, C_SYN139] + t[:, C_SYN445]
    storm = t[:, C_KW_A] >= cfg.keyword_storm.min_keyword_queries
    if peaks is not None:
        storm &= storm_could_fire(peaks, cfg)
    return np.stack(
        [
            storm,
            (t[:, C_MX] >= cfg.mx_client.min_mx_queries)
            & (t[:, C_MX_DOM_NEW] >= cfg.mx_client.min_domains),
            t[:, C_SYN_DST_NEW] >= cfg.smb_scan.min_targets,
            (t[:, C_MX] >= cfg.bot_sync.min_mx_queries) & (n_syn >= cfg.bot_sync.min_syns),
            (t[:, C_NX] >= cfg.dga_nx.min_nx) & (t[:, C_NX_DOMS_NEW] >= cfg.dga_nx.min_domains),
        ],
        axis=1,
    )


def _window(st: HostState, cfg: Config, now_us: int) -> Window:
    bin_us = cfg.bin_s * 1_000_000
    newest = now_us // bin_us
    oldest = newest - max(1, cfg.window_s // cfg.bin_s) + 1
    bins, series = st.bins, st.series.reshape(-1, N_COUNTERS)
    # the aggregate reads out the window's bins only: usually every bin is kept
    if bins.shape[0] and (bins[0] < oldest or bins[-1] > newest):
        keep = (bins >= oldest) & (bins <= newest)
        bins, series = bins[keep], series[keep]
    return Window(bins, series.astype(np.int64, copy=False), cfg.bin_s, oldest, newest)


def evaluate(
    state: HostState,
    cfg: Config,
    *,
    now_us: int,
    could: npt.NDArray[np.bool_] | None = None,
    explain: bool = True,
) -> Verdict:
    """Score one host over the bins of the window ending at ``now_us``.

    Each signal that fires gives between half and all of its configured
    weight (``cfg.score.weights``), by its strength; the score is their sum,
    capped at 100. Evidence holds, per fired signal, what it was computed
    from, and ``score_parts`` the points each gave. ``could`` is the host's
    row of :func:`could_fire` when the caller has it already. Without
    ``explain`` the verdict's evidence is left to
    :meth:`~wormwatch.model.Verdict.explained` (built from this evaluation
    when asked); ``state.prefixes`` is then read only for a keyword storm's
    configured keyword weights.
    """
    maybe = could_fire(state.totals, cfg)[0] if could is None else could
    names = [name for name, ok in zip(SIGNALS, maybe.tolist(), strict=True) if ok]
    if not names or (cfg.ignore and cfg.is_allowlisted(state.addr, "ignore")):
        return Verdict()
    is_server = cfg.is_allowlisted(state.addr, "mail_server") or cfg.is_allowlisted(
        state.addr, "resolver"
    )
    w = _window(state, cfg, now_us)
    if w.bins.shape[0] == 0:
        return Verdict()
    fired: dict[str, tuple[float, Explain]] = {}
    for name in names:
        if is_server and name in _SERVER_EXEMPT:
            continue
        result = _SIGNAL_FUNCS[name](w, state, cfg)
        if result is not None:
            fired[name] = result
    sync_r = _sync_r(w, cfg, fired.get("bot-sync")) if "bot-sync" in names else None
    if not fired:
        return Verdict(sync_r=sync_r)
    parts = {
        name: round(cfg.score.weights[name] * (0.5 + 0.5 * max(0.0, min(1.0, s))), 1)
        for name, (s, _) in fired.items()
    }

    def build(prefixes: dict[bytes, int]) -> dict[str, object]:
        by_signal = {name: ev(prefixes) for name, (_, ev) in fired.items()}
        add_combined_reading(by_signal)
        window = {"start": w.bin_time(int(w.bins[0])), "end": iso_time(now_us), "bin_s": cfg.bin_s}
        return {"window": window, "score_parts": parts, **by_signal}

    score = round(min(100.0, sum(parts.values())), 1)
    verdict = Verdict(score=score, verdicts=tuple(fired), sync_r=sync_r, explain=build)
    return verdict.explained(state.prefixes) if explain else verdict


def _sync_r(w: Window, cfg: Config, fired: tuple[float, Explain] | None) -> float | None:
    """The host's MX/SYN correlation: bot-sync's r when it fired, else the
    network-wide rule (:func:`~wormwatch.botsync.sync_evidence`) over the
    window's series, so the live table and the report show the detector's
    number for every host that could be a bot, flagged or not."""
    if fired is not None:
        evidence: dict[str, object] | None = fired[1]({})
    else:
        syn = w.series[:, SYN_COLS].sum(axis=1)
        evidence = sync_evidence(w.bins, w.col(C_MX), syn, cfg)
    r = None if evidence is None else evidence.get("r")
    return r if isinstance(r, float) else None
