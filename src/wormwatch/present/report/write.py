"""Offline report: a finished run as HTML, PNG figures and host summaries.

In: the :class:`~wormwatch.pipeline.RunResult` of a replay (host views,
final snapshot, network series and sync, aggregate limits; made by
:func:`wormwatch.runner.report` through the same pipeline as ``wormwatch
replay``) and the :class:`~wormwatch.config.Config`. Out, in one
directory: ``index.html`` (self-contained: inline CSS, figures by relative
file name), one PNG per figure (:mod:`.plots`) and ``hosts.jsonl`` (one
host record per host, ranked, then the network record; the same records as
``replay --summary``).

This module picks which hosts each figure shows and writes the files;
:mod:`.page` renders the page (:mod:`.sections` its figure sections) from
:mod:`.data`, :mod:`.plots` draws, and :mod:`.prefixes` computes the prefix
tables.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from wormwatch.botsync import merge_factor
from wormwatch.config import Config
from wormwatch.errors import WormwatchError
from wormwatch.model import C_A, C_KW_A, C_MX, C_NAMES_NEW, C_QUERIES, I64, HostState, HostView
from wormwatch.pipeline import RunResult
from wormwatch.present.report import plots
from wormwatch.present.report.data import FigureFile, PrefixTable, ReportData
from wormwatch.present.report.page import render_report
from wormwatch.present.report.prefixes import prefix_stats
from wormwatch.present.sinks.jsonl import JsonLinesWriter
from wormwatch.present.sinks.summary import write_summary_records
from wormwatch.text import iso_time_us

INDEX = "index.html"
HOSTS = "hosts.jsonl"
# Per-host figures and tables of one kind; the rest is in hosts.jsonl.
MAX_HOST_FIGURES = 10
# Lines in the query-rate figure (more do not stay readable).
MAX_RATE_LINES = 6
# Hosts shown in the prefix tables that are not flagged but query A records at
# a machine rate, mostly names with a few prefixes outside the keyword set:
# the place to spot a worm whose keywords are not configured.
MAX_MACHINE_RATE_HOSTS = 5
# What this module writes, so that a rerun into the same directory can remove
# the figures of the previous run (and nothing else).
FIGURE_RE = re.compile(r"^fig[1-5]-[a-z0-9-]+\.png$")


def write_report(result: RunResult, out_dir: Path, cfg: Config, *, files: Sequence[str]) -> Path:
    """Write the report of a finished run into ``out_dir``; return the index.html path.

    ``result`` is the run of ``files`` (:func:`wormwatch.runner.report` makes it
    with the same pipeline as ``wormwatch replay``); ``out_dir`` was made ready
    by :func:`prepare_dir` before the run. Files of an earlier report in it
    (``index.html``, ``hosts.jsonl`` and ``fig*.png`` of this naming scheme)
    are replaced; no other file is touched.

    Raises:
        WormwatchError: the run ended in an error, or ``out_dir`` cannot be written.
    """
    if result.error is not None:
        raise result.error
    limits = result.limits
    data = ReportData(
        files=list(files),
        cfg=cfg,
        result=result,
        bin_s=result.bin_s,
        network_sync=result.network_sync,
        agg_limits={}
        if limits is None
        else {
            "events of hosts past max_hosts": limits.events_dropped,
            "(host, bin) rows past max_host_bins": limits.rows_dropped,
            "distinct-set keys refused": limits.keys_refused,
            "distinct-set keys last seen before the window": limits.keys_dropped,
            "events of ignored networks": limits.events_ignored,
        },
    )
    # Every file is written into a folder of its own inside ``out_dir`` first and
    # moved into place only once all are: a full disk or an unwritable file
    # half-way leaves the earlier report as it was, not its page beside new figures.
    stage = _stage_dir(out_dir)
    try:
        _write_hosts(stage / HOSTS, data)
        _draw(data, stage, result.network_bins, result.network_counts)
        _write_text(stage / INDEX, render_report(data))
        _commit(stage, out_dir)
    except WormwatchError as err:
        # name the file where it was going, not the folder removed below
        raise WormwatchError(str(err).replace(str(stage), str(out_dir))) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out_dir / INDEX


# --- files --------------------------------------------------------------------------


def prepare_dir(out_dir: Path) -> None:
    """Create ``out_dir`` if needed and check that it can be written.

    Raises:
        WormwatchError: it cannot be created, or is not a writable directory.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WormwatchError(
            f"cannot write report to {out_dir}: it exists and is not a directory"
        ) from None
    except OSError as err:
        reason = err.strerror or str(err)
        raise WormwatchError(
            f"cannot create report directory {out_dir}: {reason}; choose another -o DIR"
        ) from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise WormwatchError(
            f"cannot write report to {out_dir}: permission denied; choose another -o DIR"
        )


def _stage_dir(out_dir: Path) -> Path:
    """A new, empty folder inside ``out_dir`` to write the report's files into."""
    try:
        return Path(tempfile.mkdtemp(prefix=".wormwatch-report-", dir=out_dir))
    except OSError as err:
        reason = err.strerror or str(err)
        raise WormwatchError(f"cannot write report to {out_dir}: {reason}") from None


def _commit(stage: Path, out_dir: Path) -> None:
    """Move the staged files over those of an earlier report; remove its other figures.

    Renames within one file system need no space; a name that is taken by a
    directory stops the command before anything is moved.
    """
    names = sorted(entry.name for entry in stage.iterdir())
    for name in names:
        if (out_dir / name).is_dir():
            raise WormwatchError(f"cannot write {out_dir / name}: Is a directory")
    try:
        for entry in out_dir.iterdir():
            if FIGURE_RE.match(entry.name) and entry.name not in names and entry.is_file():
                entry.unlink()
        # the page last: until it is replaced, the earlier page is whole
        for name in sorted(names, key=lambda n: n == INDEX):
            os.replace(stage / name, out_dir / name)
    except OSError as err:
        reason = err.strerror or str(err)
        raise WormwatchError(f"cannot write report to {out_dir}: {reason}") from None


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        reason = err.strerror or str(err)
        raise WormwatchError(f"cannot write {path}: {reason}") from None


def _write_hosts(path: Path, data: ReportData) -> None:
    """Host records (ranked), then the network record."""
    hosts = data.result.hosts
    with JsonLinesWriter(str(path)) as writer:
        write_summary_records(writer, hosts, data.result.final, data.bin_s, data.network_sync)


# --- which hosts each figure shows ----------------------------------------------------


def _sum(view: HostView, col: int) -> int:
    return int(view.state.series[:, col].sum())


def _is_machine_rate(view: HostView, cfg: Config) -> bool:
    """A-queries at a keyword-storm rate and volume, whatever the names."""
    ks = cfg.keyword_storm
    a = view.state.series[:, C_A]
    n_active = int((a > 0).sum())
    n_a = int(a.sum())
    return (
        n_a >= ks.min_keyword_queries
        and n_active >= ks.min_active_bins
        and n_a / (n_active * cfg.bin_s / 60.0) >= ks.min_rate_per_min
        and int(view.state.totals[C_NAMES_NEW]) >= ks.min_distinct_names
    )


def _storm_hosts(data: ReportData) -> list[tuple[HostView, bool]]:
    """Keyword-storm hosts, then hosts with as many keyword A-queries but not flagged."""
    hosts = data.result.hosts
    ks = data.cfg.keyword_storm
    flagged = [v for v in hosts if "keyword-storm" in v.verdict.verdicts]
    near = [
        v
        for v in hosts
        if "keyword-storm" not in v.verdict.verdicts and _sum(v, C_KW_A) >= ks.min_keyword_queries
    ]
    return [(v, True) for v in flagged] + [(v, False) for v in near]


def _sync_hosts(data: ReportData) -> list[tuple[HostView, bool]]:
    """Bot-sync hosts, then hosts with enough MX queries and SYNs but not flagged bot-sync."""
    bs = data.cfg.bot_sync
    flagged = [v for v in data.result.hosts if "bot-sync" in v.verdict.verdicts]
    near = []
    for v in data.result.hosts:
        _bins, mx, syn = plots.host_sync_series(v.state)
        if "bot-sync" not in v.verdict.verdicts and (
            int(mx.sum()) >= bs.min_mx_queries and int(syn.sum()) >= bs.min_syns
        ):
            near.append(v)
    return [(v, True) for v in flagged] + [(v, False) for v in near]


def _prefix_tables(data: ReportData) -> list[PrefixTable]:
    keywords = data.cfg.keywords
    tables = [
        PrefixTable(v, prefix_stats(v.state.prefixes, keywords), True)
        for v in data.result.hosts
        if "keyword-storm" in v.verdict.verdicts
    ][:MAX_HOST_FIGURES]
    machine = [
        v
        for v in data.result.hosts
        if "keyword-storm" not in v.verdict.verdicts and _is_machine_rate(v, data.cfg)
    ]
    machine.sort(key=lambda v: -_sum(v, C_A))
    extra = []
    for v in machine:
        stats = prefix_stats(v.state.prefixes, keywords)
        # as concentrated as a keyword storm would have to be, were they keywords
        if stats.candidates and stats.candidate_share >= data.cfg.keyword_storm.min_share:
            extra.append(PrefixTable(v, stats, False))
        if len(extra) == MAX_MACHINE_RATE_HOSTS:
            break
    return tables + extra


def _rate_hosts(data: ReportData) -> list[HostView]:
    """Flagged hosts with DNS queries, else the hosts that sent the most queries.

    Only hosts with A or MX queries in their kept bins: the figure draws those
    two (a host of AAAA or PTR queries only would be an empty chart, dated 1970
    when no host has a line).
    """
    with_dns = [
        v
        for v in data.result.hosts
        if int(v.state.totals[C_QUERIES]) > 0 and v.state.series[:, [C_A, C_MX]].sum() > 0
    ]
    flagged = [v for v in with_dns if v.verdict.verdicts]
    if flagged:
        return flagged[:MAX_RATE_LINES]
    with_dns.sort(key=lambda v: -int(v.state.totals[C_QUERIES]))
    return with_dns[:MAX_RATE_LINES]


# --- drawing ----------------------------------------------------------------------------


def _draw(data: ReportData, out_dir: Path, bins: I64, counts: I64) -> None:
    bin_s = data.bin_s
    merge = merge_factor(data.cfg)
    data.rate_hosts = _rate_hosts(data)
    if data.rate_hosts:
        is_flagged = bool(data.rate_hosts[0].verdict.verdicts)
        if is_flagged:
            title = "DNS queries of the flagged hosts"
        elif data.flagged:
            title = "DNS queries of the busiest hosts (no flagged host sent DNS queries)"
        else:
            title = "DNS queries of the busiest hosts (no host flagged)"
        lines = [plots.RateLine(_label(v), v.state) for v in data.rate_hosts]
        name = "fig1-query-rate.png"
        plots.query_rate_figure(lines, bin_s, out_dir / name, title=title)
        data.rate = FigureFile(name, title, is_flagged=is_flagged)
    data.prefix_tables = _prefix_tables(data)
    for i, (view, is_flagged) in enumerate(_storm_hosts(data)[:MAX_HOST_FIGURES], 1):
        name = f"fig3-keyword-fit-{i:02d}.png"
        fit = plots.keyword_fit_figure(_judged_bins(view, bin_s), bin_s, out_dir / name)
        data.fits.append(FigureFile(name, view.state.addr, view.state.addr, is_flagged, fit=fit))
    if bins.size and (counts[:, 1].sum() > 0 or counts[:, 2].sum() > 0):
        r = data.network_sync.get("r") if data.network_sync else None
        r_value = r if isinstance(r, float) else None
        name = "fig4-sync-network.png"
        title = "Network-wide: MX queries and SYNs to 135/139/445 (allowlisted hosts excluded)"
        wide, mx, syn = plots.coarsen(bins, counts[:, 1], counts[:, 2], merge)
        plots.sync_figure(wide, mx, syn, bin_s * merge, out_dir / name, title=title, r=r_value)
        data.network = FigureFile(name, title, r=r_value)
    for i, (view, is_flagged) in enumerate(_sync_hosts(data)[:MAX_HOST_FIGURES], 1):
        name = f"fig4-sync-host-{i:02d}.png"
        wide, mx, syn = plots.coarsen(*plots.host_sync_series(view.state), merge)
        r_host = view.verdict.sync_r
        title = f"{view.state.addr}: MX queries and SYNs to 135/139/445"
        plots.sync_figure(wide, mx, syn, bin_s * merge, out_dir / name, title=title, r=r_host)
        data.syncs.append(FigureFile(name, title, view.state.addr, is_flagged, r=r_host))
    dga = [v for v in data.flagged if "dga-nx" in v.verdict.verdicts][:MAX_RATE_LINES]
    if dga:
        title = "NXDOMAIN answers of the dga-nx hosts, with their name scores"
        lines = [plots.RateLine(_label(v), v.state) for v in dga]
        plots.nx_rate_figure(lines, bin_s, out_dir / "fig5-nxdomain-rate.png", title=title)
        data.nx_rate = FigureFile("fig5-nxdomain-rate.png", title)


def _judged_bins(view: HostView, bin_s: int) -> HostState:
    """The host's bins inside the period its keyword storm was judged on, else all."""
    ev = view.verdict.evidence.get("keyword-storm")
    period = ev.get("period") if isinstance(ev, dict) else None
    if not isinstance(period, dict):
        return view.state
    bin_us = bin_s * 1_000_000
    lo, hi = (iso_time_us(str(period[k])) // bin_us for k in ("start", "end"))
    keep = (view.state.bins >= lo) & (view.state.bins < hi)
    return dataclasses.replace(
        view.state, bins=view.state.bins[keep], series=view.state.series[keep]
    )


def _label(view: HostView) -> str:
    verdicts = ", ".join(view.verdict.verdicts)
    return f"{view.state.addr} ({verdicts})" if verdicts else view.state.addr
