"""What the report page shows, gathered before it is rendered.

In: the finished run (:class:`~wormwatch.pipeline.RunResult`), the
configuration and the figure files :mod:`.write` drew. Out: plain
dataclasses that :mod:`.page` and :mod:`.sections` render. Kept apart from
the writer so the page modules import data, never the module that calls them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wormwatch.config import Config
from wormwatch.model import HostView
from wormwatch.pipeline import RunResult
from wormwatch.present.report.plots import KeywordFit
from wormwatch.present.report.prefixes import PrefixStats


@dataclass(frozen=True, slots=True)
class FigureFile:
    """One PNG of the report, with what the page says about it."""

    name: str
    caption: str
    host: str | None = None
    is_flagged: bool = True
    fit: KeywordFit | None = None
    r: float | None = None


@dataclass(frozen=True, slots=True)
class PrefixTable:
    """Figure 2 of one host."""

    view: HostView
    stats: PrefixStats
    is_flagged: bool


@dataclass(slots=True)
class ReportData:
    """Everything the page shows; built by :func:`write_report`."""

    files: list[str]
    cfg: Config
    result: RunResult
    bin_s: int
    network_sync: dict[str, object] | None
    agg_limits: dict[str, int]
    rate: FigureFile | None = None
    rate_hosts: list[HostView] = field(default_factory=list)
    prefix_tables: list[PrefixTable] = field(default_factory=list)
    fits: list[FigureFile] = field(default_factory=list)
    network: FigureFile | None = None
    syncs: list[FigureFile] = field(default_factory=list)
    nx_rate: FigureFile | None = None

    @property
    def flagged(self) -> list[HostView]:
        return [v for v in self.result.hosts if v.verdict.verdicts]
