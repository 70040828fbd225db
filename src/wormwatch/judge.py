"""Judging: which hosts to look at, their scores and verdicts, and the alerts.

source -> decode -> classify -> aggregate -> **judge** -> present.

In: the aggregate, through its read-out API, whenever the loop asks (at a bin
boundary of packet time, at a display refresh, at the end of the run). Out:
alert records (via :class:`~wormwatch.alerts.AlertTracker`), and for the
presenters each host's :class:`~wormwatch.model.Verdict` and the ranking.

Everything here is keyed by the one host id the aggregate assigns; when the
aggregate evicts hosts it hands back a
:class:`~wormwatch.aggregate.Renumbering` that :meth:`Judge.renumber`
applies. The judge tells the aggregate which hosts must never be evicted
(:meth:`Judge.protected`, given to the aggregate when it is built).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from wormwatch.aggregate import Aggregator, Renumbering
from wormwatch.alerts import AlertTracker
from wormwatch.config import SIGNALS, Config
from wormwatch.detect import could_fire, evaluate, network_evidence, network_sync
from wormwatch.model import BOOL, I64, HostState, HostView, Verdict
from wormwatch.signals import weighs_keywords

# hosts whose full state (name prefixes included) a ranking reads out
TOP_HOSTS = 50
# could_fire's column of the one signal that reads a host's name prefixes
_KEYWORD_STORM = SIGNALS.index("keyword-storm")
# could_fire's columns of the signals that are sums over the window's bins (and
# samples): their verdict cannot change while no event comes and no bin leaves
_WINDOW_SUMS = [SIGNALS.index("mx-client"), SIGNALS.index("smb-scan")]
_NO_BIN = np.iinfo(np.int64).max

Alert = dict[str, object]
# adds to an alert record what only the caller knows of host id (the sensors that saw it)
Annotate = Callable[[int, Alert], None]


class Judge:
    """Scores, verdicts and alerts of every host the aggregate tracks.

    Three calls judge, each over the hosts the aggregate touched since the
    same call last ran (whatever the packet time of their new events: a
    second capture that starts an hour back, a late delta), plus every host
    holding a verdict (so a verdict clears once its activity leaves the
    window): for the alerts, the verdict the tracker last saw, so that the
    alerts do not depend on how often a display refreshes. A host is judged
    once per call however many events it got:

    - :meth:`judge` at each bin boundary of packet time: verdicts, and the
      alerts for those that are news; a flagged host that only mx-client or
      smb-scan could flag, without new events and with none of its bins
      gone from the window since its last look, keeps its verdict (the same
      sums give the same verdict and score);
    - :meth:`rescore` for a display refresh: verdicts only, no alerts; a
      flagged host without new events that was judged in the current bin of
      packet time keeps its verdict (its window has not moved: the same
      verdict and score, its evidence as of that look);
    - :meth:`finish` at the end of the run: :meth:`judge` over every host
      ever judged, so the summary holds final verdicts.
    """

    def __init__(self, cfg: Config, *, annotate: Annotate | None = None) -> None:
        self.cfg = cfg
        self._annotate = annotate
        self.tracker = AlertTracker(cfg.score)
        self.n_alerts = 0
        self._scores = np.zeros(cfg.max_hosts, np.float64)
        # 1 + the bin of packet time of each host's last look (0: never looked at)
        self._looked_bin = np.zeros(cfg.max_hosts, np.int64)
        # the first bin of each host's rows in the window at its last judge(), and
        # whether only signals that sum the window's bins could fire for it then
        self._first_bin = np.full(cfg.max_hosts, _NO_BIN, np.int64)
        self._sums_only = np.zeros(cfg.max_hosts, np.bool_)
        self._verdicts: dict[int, Verdict] = {}
        # the aggregate's marks at the last judge() and at the last look of any kind
        self._alert_mark = -1
        self._display_mark = -1

    # -- what the aggregate asks, and what it reports -----------------------------

    def protected(self, n_hosts: int) -> BOOL:
        """Which of hosts ``0 .. n_hosts - 1`` must not be evicted: those with
        a score, and those whose alert has not been cleared."""
        keep = self._scores[:n_hosts] > 0
        keep[self.tracker.tracked()] = True
        return keep

    def renumber(self, renumbering: Renumbering) -> None:
        """Follow the aggregate's host ids after it evicted hosts."""
        self._scores = renumbering.follow_array(self._scores)
        self._looked_bin = renumbering.follow_array(self._looked_bin)
        # an id that follows no host gets 0: a bin long gone, so looked at again
        self._first_bin = renumbering.follow_array(self._first_bin)
        self._sums_only = renumbering.follow_array(self._sums_only)
        self._verdicts = renumbering.follow(self._verdicts)
        self.tracker.renumber(renumbering)

    # -- judging --------------------------------------------------------------------

    def judge(self, agg: Aggregator) -> list[Alert]:
        """Judge the hosts with new evidence; the alerts that are news."""
        ids = self._candidates(agg, self._alert_mark, self.tracker.tracked(), idle_kept=True)
        return self._look(agg, ids, alert=True)

    def rescore(self, agg: Aggregator) -> None:
        """Re-score the hosts with new evidence since the last look (a display
        refresh): no alerts, the next :meth:`judge` still sees them."""
        shown = np.array([i for i, v in self._verdicts.items() if v.verdicts], np.int64)
        self._look(
            agg, self._candidates(agg, self._display_mark, shown, moved_only=True), alert=False
        )

    def finish(self, agg: Aggregator) -> list[Alert]:
        """The end of the run: judge every host ever judged and the new ones."""
        ids = np.union1d(
            self._candidates(agg, self._alert_mark, self.tracker.tracked()),
            np.array(list(self._verdicts), np.int64),
        )
        return self._look(agg, ids.astype(np.int64), alert=True)

    def _candidates(
        self,
        agg: Aggregator,
        mark: int,
        flagged: I64,
        *,
        moved_only: bool = False,
        idle_kept: bool = False,
    ) -> I64:
        """Hosts worth a full evaluation now.

        Those touched since the aggregate's ``mark``, through a vectorised
        pre-filter (:func:`wormwatch.detect.could_fire`): a host whose totals
        and peaks cannot reach any detector's thresholds keeps score 0 without a
        Python-level look; plus every host of ``flagged`` (those holding an
        alerted verdict for :meth:`judge`, a shown one for :meth:`rescore`; with
        ``moved_only``, those last looked at in an earlier bin of packet time:
        an untouched host's window moves only at a bin boundary; with
        ``idle_kept``, not those :meth:`_idle` finds).
        """
        touched = agg.touched_since(mark)
        maybe = could_fire(agg.totals()[touched], self.cfg, agg.peaks()[touched]).any(axis=1)
        ids = touched[maybe]
        if moved_only and flagged.shape[0]:
            flagged = flagged[self._looked_bin[flagged] != _bin_mark(agg)]
        if idle_kept and flagged.shape[0]:
            flagged = flagged[~self._idle(agg, flagged, touched)]
        if flagged.shape[0]:
            ids = np.union1d(ids, flagged)
        return ids.astype(np.int64)

    def _idle(self, agg: Aggregator, flagged: I64, touched: I64) -> BOOL:
        """Which ``flagged`` hosts keep their verdict without a look: none of
        them is among ``touched`` (the hosts with events since the last
        :meth:`judge`, which looks at every such host, so none since its own
        last look), none of its bins has left the window since that look, and
        only signals that sum the window's bins could fire for it at that look
        (its totals and peaks have not changed since). "That look" is the last
        that passed its verdict through the alert tracker: a display refresh
        in between may have seen the window move, and told the tracker nothing."""
        is_touched = np.zeros(agg.n_hosts, np.bool_)
        is_touched[touched] = True
        idle: BOOL = (
            ~is_touched[flagged]
            & (self._first_bin[flagged] >= agg.oldest_bin())
            & self._sums_only[flagged]
        )
        return idle

    def _look(self, agg: Aggregator, ids: I64, *, alert: bool) -> list[Alert]:
        """Evaluate hosts ``ids`` at the aggregate's packet time; with
        ``alert``, pass the verdicts through the alert tracker."""
        now_us, mark = agg.now_us, agg.mark()
        if now_us < 0:
            return []
        maybe = could_fire(agg.totals()[ids], self.cfg, agg.peaks()[ids])
        # name prefixes serve the keyword storm only, and its score only with
        # configured keyword weights: otherwise they are read for its evidence,
        # which is built only for the verdicts that make an alert
        weighs = maybe[:, _KEYWORD_STORM] if weighs_keywords(self.cfg) else False
        states = agg.host_states(ids, with_prefixes=weighs)
        if alert:
            others = maybe.copy()
            others[:, _WINDOW_SUMS] = False
            self._sums_only[ids] = ~others.any(axis=1)
        news: list[tuple[int, HostState, Verdict]] = []
        for state, idx, could in zip(states, ids.tolist(), maybe, strict=True):
            verdict = evaluate(state, self.cfg, now_us=now_us, could=could, explain=False)
            self._scores[idx] = verdict.score
            self._verdicts[idx] = verdict
            if alert:
                self._first_bin[idx] = state.bins[0] if state.bins.shape[0] else _NO_BIN
                if self.tracker.is_news(idx, verdict):
                    news.append((idx, state, verdict))
        self._looked_bin[ids] = _bin_mark(agg)
        alerts = self._alerts(agg, news, now_us) if alert else []
        if alert:
            self._alert_mark = mark
            self.n_alerts += len(alerts)
        self._display_mark = mark
        return alerts

    def _alerts(
        self, agg: Aggregator, news: list[tuple[int, HostState, Verdict]], now_us: int
    ) -> list[Alert]:
        """The alert records of the verdicts that are news, evidence built."""
        storms = [i for i, st, v in news if "keyword-storm" in v.verdicts and not st.prefixes]
        prefixes = agg.prefixes_of(np.array(storms, np.int64)) if storms else {}
        alerts: list[Alert] = []
        for idx, state, verdict in news:
            explained = verdict.explained(prefixes.get(idx, state.prefixes))
            self._verdicts[idx] = explained
            record = self.tracker.update(idx, state.addr, explained, now_us)
            if record is not None:
                if self._annotate is not None:
                    self._annotate(idx, record)
                alerts.append(record)
        return alerts

    # -- read out -------------------------------------------------------------------

    def host_views(self, agg: Aggregator, limit: int | None = None) -> list[HostView]:
        """Hosts ranked by score (then activity), with their verdicts.

        Name-prefix statistics (a Python dict per host) are read out only for
        the top hosts and the flagged ones: nobody reads them for the rest,
        and building them for 100,000 hosts costs seconds.
        """
        return self.views_of(agg, self.ranked(agg, limit))

    def ranked(self, agg: Aggregator, limit: int | None = None, *, among: I64 | None = None) -> I64:
        """Host ids by score, then activity (the first ``limit``); of the ids
        ``among`` only (ascending) when given, in the order of the whole ranking."""
        if among is None:
            order = np.lexsort((-agg.activity(), -self._scores[: agg.n_hosts]))
        else:
            # lexsort is stable: ties stay in id order, as in the whole ranking
            order = among[np.lexsort((-agg.activity()[among], -self._scores[among]))]
        return (order if limit is None else order[:limit]).astype(np.int64)

    def views_of(self, agg: Aggregator, ids: I64) -> list[HostView]:
        """Hosts ``ids`` with their verdicts (prefixes for the first and flagged)."""
        states = agg.host_states(ids, with_prefixes=False)
        flagged = {i for i, v in self._verdicts.items() if v.verdicts}
        want = [k for k, i in enumerate(ids.tolist()) if k < TOP_HOSTS or i in flagged]
        if want:
            full = agg.host_states(ids[want])
            for k, state in zip(want, full, strict=True):
                states[k] = state
        return [
            HostView(state, self._explained(idx, state))
            for state, idx in zip(states, ids.tolist(), strict=True)
        ]

    def _explained(self, idx: int, state: HostState) -> Verdict:
        """Host ``idx``'s verdict with its evidence (built once, from the
        evaluation that gave the verdict, with the prefixes of ``state``)."""
        verdict = self._verdicts.get(idx)
        if verdict is None:
            return Verdict()
        if verdict.explain is not None:
            self._verdicts[idx] = verdict = verdict.explained(state.prefixes)
        return verdict

    def flagged_counts(self) -> dict[str, int]:
        """How many judged hosts hold each verdict."""
        flagged: dict[str, int] = {}
        for verdict in self._verdicts.values():
            for name in verdict.verdicts:
                flagged[name] = flagged.get(name, 0) + 1
        return flagged

    def network_sync(self, agg: Aggregator) -> float | None:
        """Pearson r of all clients' MX queries against all their SYNs."""
        bins, series = agg.network_series()
        if series.shape[0] == 0:
            return None
        return network_sync(series[:, 1], series[:, 2], bins=bins, cfg=self.cfg)

    def network_evidence(self, agg: Aggregator) -> dict[str, object] | None:
        """The network-wide sync with its series, for the summary record."""
        bins, series = agg.network_series()
        if series.shape[0] == 0:
            return None
        return network_evidence(bins, series[:, 1], series[:, 2], self.cfg)


def _bin_mark(agg: Aggregator) -> int:
    """1 + the bin of the aggregate's newest packet time (0 marks never)."""
    return 1 + agg.now_us // agg.bin_us
