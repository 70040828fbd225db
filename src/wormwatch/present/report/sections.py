"""The report's four figure sections: how to read each figure, then the figures.

In: :class:`~wormwatch.present.report.data.ReportData` (figure files drawn by
:mod:`wormwatch.present.report.plots`, prefix tables from
:mod:`wormwatch.present.report.prefixes`). Out: one HTML fragment per section, every
untrusted piece of text passed through :func:`~wormwatch.present.report.htmlkit.esc`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wormwatch.present.report.htmlkit import duration, esc, figure, table, verdict_badges
from wormwatch.present.report.prefixes import MAX_PREFIX_LEN, PrefixCount

if TYPE_CHECKING:
    from wormwatch.present.report.data import PrefixTable, ReportData


def window_note(data: ReportData) -> str:
    """A warning when the capture is longer than the window a host's bins are kept for."""
    snap, window_s = data.result.final, data.cfg.window_s
    span_s = (snap.now_us - snap.start_us) / 1e6
    if span_s <= window_s:
        return ""
    return (
        f'<p class="warn" id="window-note">The capture spans {duration(span_s)}, more than '
        f"the detection window (<code>window_s</code> = {duration(window_s)}): a host's bins "
        "older than the window are not kept, so the per-host figures show only its last "
        f"{duration(window_s)}, and they start there for hosts seen earlier. The findings "
        "table's counts are totals since each host was first seen.</p>"
    )


def rate_section(data: ReportData) -> str:
    """Figure 1: DNS query rate over time."""
    if data.rate is None:
        return (
            "<p>No A or MX queries to draw: none in this capture, or none in the detection "
            "window that ends at its last packet.</p>"
        )
    who = "flagged hosts" if data.rate.is_flagged else "hosts that sent the most queries"
    return (
        '<p class="howto">Queries per minute of the '
        f"{who}, one colour per host, A-record queries above and MX queries below. A keyword "
        "storm is a steady machine-rate band of tens to hundreds of A queries a minute; a "
        "person's browsing comes in short bursts; a mass mailer shows in the MX panel, where "
        "ordinary clients stay at zero.</p>"
        + figure(data.rate.name, "DNS query rate over time", esc(data.rate.caption))
    )


def _prefix_cell(pc: PrefixCount | None) -> str:
    if pc is None:
        return "<td></td>"
    return (
        f'<td class="p-{pc.relation.value}"><code>{esc(pc.prefix)}</code> '
        f"{pc.count:,} <span class=muted>({pc.share:.1%})</span></td>"
    )


def _host_prefix_table(t: PrefixTable) -> str:
    st = t.view.state
    if t.is_flagged:
        who = f"score {t.view.verdict.score:.1f}, {verdict_badges(t.view.verdict.verdicts)}"
    else:
        who = (
            "not flagged keyword-storm: A queries at a keyword-storm rate, mostly with the "
            "prefixes below"
        )
    n_rows = max((len(v) for v in t.stats.by_length.values()), default=0)
    columns = [t.stats.by_length[length] for length in range(1, MAX_PREFIX_LEN + 1)]
    rows = [
        [f"<td class=num>{i + 1}</td>"]
        + [_prefix_cell(col[i] if i < len(col) else None) for col in columns]
        for i in range(n_rows)
    ]
    header = ["rank"] + [f"length {n}" for n in range(1, MAX_PREFIX_LEN + 1)]
    if t.stats.candidates:
        shown = ", ".join(
            f"<code>{esc(c.prefix)}</code> {c.count:,} ({c.share:.1%})" for c in t.stats.candidates
        )
        cand = f"<p>Frequent prefixes outside the keyword set: {shown}</p>"
    else:
        cand = (
            '<p class="muted">No frequent prefix outside the keyword set: every prefix used by '
            "5% or more of the queries is a keyword or the start of one.</p>"
        )
    return (
        f'<h3 class="prefix-host" data-host="{esc(st.addr)}">{esc(st.addr)} '
        f'<span class="muted">({who})</span></h3>'
        f"<p class=muted>{t.stats.n_named:,} queries with a name.</p>"
        + table(header, rows, cls="prefixes")
        + cand
    )


def prefix_section(data: ReportData) -> str:
    """Figure 2: name-prefix tables of keyword-storm (and machine-rate) hosts."""
    howto = (
        '<p class="howto">For each keyword-storm host, the most frequent first 1 to 5 characters '
        "of its query names, with how many queries begin with them (the share is of the host's "
        'named queries). <span class="legend">Blue cells</span> begin with a configured keyword; '
        "pale cells are the start of one; <b>brown</b> prefixes are outside the keyword set. A "
        "worm's keywords stand out as a few prefixes that hold most of its queries; frequent "
        "prefixes outside the set (listed under each table) are candidates for new keywords. "
        "Hosts that query A records at a storm rate without configured keywords follow the "
        "flagged ones, because that is what an unknown worm looks like.</p>"
    )
    if not data.prefix_tables:
        return howto + "<p>No keyword-storm host, and no host querying A records at that rate.</p>"
    return howto + "\n".join(_host_prefix_table(t) for t in data.prefix_tables)


def fit_section(data: ReportData) -> str:
    """Figure 3: keyword A-queries against all A-queries, per host."""
    howto = (
        '<p class="howto">One point per time bin with A queries: all A queries of the bin '
        "(x) against those whose name begins with a keyword (y). A worm working through a "
        "list of mail-server names puts its points on a straight line near the diagonal, with "
        "R\N{SUPERSCRIPT TWO} near 1 (0.999 in the study); a person's queries scatter near the "
        "x axis. Hosts that sent many keyword queries without being flagged keyword-storm "
        "follow the flagged ones.</p>"
    )
    if not data.fits:
        return howto + "<p>No host sent enough keyword A-queries to plot.</p>"
    parts = []
    for f in data.fits:
        # not flagged keyword-storm; it may be flagged for another signal
        status = "keyword-storm" if f.is_flagged else "not flagged keyword-storm"
        r2 = f.fit.r2 if f.fit is not None else None
        r2_text = "undefined" if r2 is None else f"{r2:.4f}"
        caption = f"{esc(f.host)} ({status}): R\N{SUPERSCRIPT TWO} = {r2_text}"
        parts.append(figure(f.name, f"keyword A-queries against A-queries of {f.host}", caption))
    return howto + "\n".join(parts)


def sync_section(data: ReportData) -> str:
    """Figure 4: MX queries and SYNs over time, network-wide and per host."""
    howto = (
        '<p class="howto">MX queries (blue) and SYNs to ports 135, 139 and 445 (red) per '
        "minute over time, with their Pearson correlation over the bins. A bot worm mails and "
        "scans from the same command, so the two curves rise and fall together (r near 1); "
        "unrelated mailers and scanners give r near 0. When one series is much larger it gets "
        "its own axis on the right.</p>"
    )
    parts = [howto]
    if data.network is None:
        parts.append("<p>No MX queries and no SYNs to 135/139/445 from non-allowlisted hosts.</p>")
    else:
        r_text = "undefined" if data.network.r is None else f"{data.network.r:.3f}"
        parts.append(
            figure(
                data.network.name, "network-wide MX queries and SYNs", f"Network-wide: r = {r_text}"
            )
        )
    for f in data.syncs:
        # not flagged: r below bot_sync.min_r, or too few bursts or new peers
        status = "bot-sync" if f.is_flagged else "enough MX and SYNs, not flagged bot-sync"
        r_text = "undefined" if f.r is None else f"{f.r:.3f}"
        caption = f"{esc(f.host)} ({status}): r = {r_text}"
        parts.append(figure(f.name, f"MX queries and SYNs of {f.host}", caption))
    return "\n".join(parts)


def nx_section(data: ReportData) -> str:
    """Figure 5: NXDOMAIN answers of the dga-nx hosts over time, with their name scores."""
    if data.nx_rate is None:
        return "<p>No host was flagged dga-nx.</p>"
    return (
        '<p class="howto">NXDOMAIN answers per minute each dga-nx host received (above) and '
        "the mean name score of the domains new to it in each minute (below; 0 = looks "
        "typed by a person, 1 = looks machine-made). A domain generator shows as a sustained "
        "or bursty stream of answers for new, high-scoring names; a device retrying one "
        "dead name has a stream but no new domains.</p>"
        + figure(data.nx_rate.name, "NXDOMAIN rate over time", esc(data.nx_rate.caption))
    )
