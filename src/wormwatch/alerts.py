"""Alerts: decide when a host's verdict is news, and shape the alert record.

In: a host (its id in the aggregate, and its address for the record), its
:class:`~wormwatch.model.Verdict` from :func:`wormwatch.detect.evaluate` and
the packet time of the evaluation.
Out: an alert record (:func:`wormwatch.records.alert_record`), or None. The
JSON lines sink (:mod:`wormwatch.present.sinks.jsonl`) writes it.

An alert is news, not a heartbeat: one when a host first gets a verdict, one
when its verdict set changes (including back to none: ``reason`` "cleared"),
one when its score moves to another band. Hosts are evaluated at bin
boundaries (and once more at the packet that ends a silence of whole bins), so
a host gets at most one alert per bin, two in a bin that ends such a silence,
and never one per packet. Memory: only hosts that currently hold a verdict are
tracked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wormwatch.aggregate import Renumbering
from wormwatch.config import ScoreConfig
from wormwatch.model import I64, Verdict
from wormwatch.records import alert_record


@dataclass(slots=True)
class _Seen:
    verdicts: tuple[str, ...]
    band: int
    score: float


class AlertTracker:
    """Remembers the last alerted state of each flagged host, by host id.

    Args:
        score: the score bands and hysteresis (``cfg.score``); defaults to
            bands starting at 25, 50 and 75 with 2 points of hysteresis.
    """

    def __init__(self, score: ScoreConfig | None = None) -> None:
        cfg = score if score is not None else ScoreConfig()
        self.bands = cfg.bands
        self.hysteresis = cfg.hysteresis
        self._seen: dict[int, _Seen] = {}

    @property
    def n_tracked(self) -> int:
        """Hosts currently holding a verdict."""
        return len(self._seen)

    def tracked(self) -> I64:
        """The ids of the hosts currently holding an alerted verdict."""
        return np.fromiter(self._seen, np.int64, len(self._seen))

    def band(self, score: float, previous: int | None = None) -> int:
        """The band of ``score`` (0 = below the first bound).

        With ``previous``, the band only changes once the score is at least
        ``hysteresis`` points past the boundary it crossed.
        """
        raw = sum(1 for bound in self.bands if score >= bound)
        if previous is None:
            return raw
        h = self.hysteresis
        while raw > previous and score < self.bands[raw - 1] + h:
            raw -= 1
        while raw < previous and score > self.bands[raw] - h:
            raw += 1
        return raw

    def is_news(self, host: int, verdict: Verdict) -> bool:
        """Whether :meth:`update` would make an alert of this verdict (the judge
        builds a verdict's evidence only then)."""
        return self._change(host, verdict) is not None

    def update(
        self, host: int, addr: str, verdict: Verdict, ts_us: int
    ) -> dict[str, object] | None:
        """The alert for this evaluation of ``host`` (address ``addr``), or
        None when nothing changed."""
        change = self._change(host, verdict)
        if change is None:
            return None
        reason, band = change
        prev = self._seen.get(host)
        if reason == "cleared":
            del self._seen[host]
        else:
            self._seen[host] = _Seen(tuple(verdict.verdicts), band, verdict.score)
        return self._record(addr, verdict, ts_us, reason, band, prev)

    def _change(self, host: int, verdict: Verdict) -> tuple[str, int] | None:
        """(reason, band) of the alert this verdict makes of ``host``, or None."""
        prev = self._seen.get(host)
        names = verdict.verdicts
        if prev is None:
            return ("new", self.band(verdict.score)) if names else None
        if not names:
            return "cleared", self.band(verdict.score)
        band = self.band(verdict.score, prev.band)
        if set(names) != set(prev.verdicts):
            return "verdicts-changed", band
        if band != prev.band:
            return "band-changed", band
        return None

    def renumber(self, renumbering: Renumbering) -> None:
        """Follow the aggregate's new host ids; an evicted host is forgotten
        (its next verdict is new)."""
        self._seen = renumbering.follow(self._seen)

    def _record(
        self,
        addr: str,
        verdict: Verdict,
        ts_us: int,
        reason: str,
        band: int,
        prev: _Seen | None,
    ) -> dict[str, object]:
        return alert_record(
            addr,
            verdict,
            ts_us,
            reason=reason,
            band=band,
            previous_verdicts=None if prev is None else prev.verdicts,
            previous_score=None if prev is None else prev.score,
        )
