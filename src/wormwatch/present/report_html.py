"""Report page: :class:`~wormwatch.present.report.ReportData` -> one self-contained HTML page.

In: the report's data (run result, chosen hosts, figure file names, prefix
tables). Out: the text of ``index.html``: inline CSS, no script, no external
asset; figures are ``<img>`` tags with relative file names.

Untrusted text: every piece of text that did not come from this module
(names, addresses, evidence values, file names, warnings) goes through
:func:`esc`: :func:`~wormwatch.present.safe.safe_text` (controls, invalid
UTF-8 and brackets become visible ``\\xNN`` escapes) and then
:func:`html.escape` (``<``, ``>``, ``&`` and both quotes), so nothing from a
capture can add markup. The findings table carries its numbers in
``data-value`` attributes and its cells in stable ``f-*`` classes, so tools
(and the tests) can read them back.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from wormwatch import __version__
from wormwatch.config import SIGNALS, Config
from wormwatch.model import STATUS_NAMES, HostView
from wormwatch.present.jsonl import host_record
from wormwatch.present.prefixes import MAX_PREFIX_LEN, PrefixCount
from wormwatch.present.safe import safe_text

if TYPE_CHECKING:
    from wormwatch.present.report import FigureFile, PrefixTable, ReportData

MAX_FINDINGS_ROWS = 200
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_N_SAMPLES = 3

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1100px;padding:0 1.2em 3em;color:#1b1f24;background:#fff}
h1{font-size:1.6em;margin:.8em 0 .2em}h2{font-size:1.25em;margin:1.8em 0 .4em;
border-bottom:1px solid #d0d7de;padding-bottom:.2em}h3{font-size:1.05em;margin:1.2em 0 .3em}
p.lead{color:#57606a;margin-top:0}.howto{color:#444;max-width:60em}
table{border-collapse:collapse;margin:.4em 0 1em}th,td{border:1px solid #d0d7de;
padding:.25em .55em;text-align:left;vertical-align:top}th{background:#f6f8fa}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto}
.verdict{display:inline-block;border-radius:.8em;padding:0 .55em;margin:0 .2em .1em 0;
font-size:.85em;background:#ffebe9;color:#82071e;border:1px solid #ff818266}
.none{background:#dafbe1;border:1px solid #4ac26b66;padding:.6em .9em}
.warn{background:#fff8c5;border:1px solid #d4a72c66;padding:.6em .9em}
td.p-keyword{background:#ddf4ff}td.p-partial{background:#f3f8fc}
td.p-other code{color:#953800;font-weight:600}
figure{margin:.6em 0 1.4em}figure img{max-width:100%;border:1px solid #d0d7de}
figcaption{color:#57606a;font-size:.92em}
.muted{color:#57606a}
"""


def esc(value: object) -> str:
    """Any value as HTML text that cannot carry markup (see the module docstring)."""
    raw = value if isinstance(value, str | bytes) else str(value)
    return html.escape(safe_text(raw), quote=True)


def _utc(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds / 3600:,.1f} h"


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _num(value: object, fmt: str = "") -> str:
    return format(value, fmt) if isinstance(value, int | float) else "n/a"


def _table(header: Iterable[str], rows: Iterable[Iterable[str]], *, cls: str = "") -> str:
    """A table whose header and cells are already HTML."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _figure(fig: FigureFile, alt: str, caption: str) -> str:
    return (
        f'<figure><img src="{esc(fig.name)}" alt="{esc(alt)}" loading="lazy">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _verdicts(verdicts: Iterable[str]) -> str:
    return "".join(f'<span class="verdict">{esc(v)}</span>' for v in verdicts)


# --- findings -----------------------------------------------------------------------------


def _samples(names: object) -> str:
    if not isinstance(names, list) or not names:
        return ""
    shown = ", ".join(f"<code>{esc(n)}</code>" for n in names[:_N_SAMPLES])
    return f"; e.g. {shown}"


def _evidence_text(name: str, ev: Mapping[str, object]) -> str:
    """One line of key evidence of a fired signal, as HTML."""
    if name == "keyword-storm":
        share = ev.get("keyword_share")
        share_text = f"{share:.1%}" if isinstance(share, float) else "n/a"
        return (
            f"{_int(ev.get('keyword_a_queries')):,} keyword A of {_int(ev.get('queries')):,} "
            f"queries ({share_text}), {_num(ev.get('keyword_a_per_min'))}/min, "
            f"R\N{SUPERSCRIPT TWO} {_num(ev.get('r2_keyword_a_vs_a'))}"
            + _samples(ev.get("sample_names"))
        )
    if name == "mx-client":
        return (
            f"{_int(ev.get('mx_queries')):,} MX queries for {_int(ev.get('mx_domains')):,} "
            f"domains, {_num(ev.get('mx_per_min'))}/min" + _samples(ev.get("sample_domains"))
        )
    if name == "smb-scan":
        syn = ev.get("syn")
        ports = (
            ", ".join(f"{esc(p)}: {_int(n):,}" for p, n in syn.items())
            if isinstance(syn, dict)
            else ""
        )
        return (
            f"{_int(ev.get('syns')):,} SYNs to {_int(ev.get('targets')):,} hosts ({ports}), "
            f"peak {_int(ev.get('peak_targets_per_bin')):,} new targets in one bin"
        )
    if name == "bot-sync":
        return (
            f"MX vs SYN r = {_num(ev.get('r'))} over {_int(ev.get('bins')):,} bins "
            f"({_int(ev.get('mx_queries')):,} MX, {_int(ev.get('syns')):,} SYNs)"
        )
    return esc(json.dumps(ev, default=str)[:200])


def _key_evidence(view: HostView) -> str:
    parts = []
    for name in view.verdict.verdicts:
        ev = view.verdict.evidence.get(name)
        if isinstance(ev, dict):
            parts.append(f"<b>{esc(name)}</b>: {_evidence_text(name, ev)}")
    return "<br>".join(parts)


_FINDING_COLUMNS = (
    ("host", "f-host"),
    ("score", "f-score"),
    ("verdicts", "f-verdicts"),
    ("queries", "f-queries"),
    ("A", "f-a"),
    ("MX", "f-mx"),
    ("keyword queries", "f-keyword"),
    ("SYNs 135/139/445", "f-syns"),
    ("SYN targets", "f-syn-targets"),
    ("key evidence (within the window)", "f-evidence"),
)


def _finding_row(view: HostView, bin_s: int) -> list[str]:
    rec = host_record(view, bin_s)
    queries = rec["queries"]
    syn = rec["syn"]
    assert isinstance(queries, dict)
    assert isinstance(syn, dict)
    values: list[object] = [
        rec["src_ip"],
        rec["score"],
        ",".join(view.verdict.verdicts),
        queries["total"],
        queries["A"],
        queries["MX"],
        rec["keyword_queries"],
        sum(_int(n) for n in syn.values()),
        rec["syn_targets"],
    ]
    cells = []
    for (_title, cls), value in zip(_FINDING_COLUMNS, values, strict=False):
        if cls == "f-verdicts":
            shown = _verdicts(view.verdict.verdicts)
        elif isinstance(value, float):
            shown = f"{value:.1f}"
        elif isinstance(value, int):
            shown = f"{value:,}"
        else:
            shown = esc(value)
        num = " num" if isinstance(value, int | float) else ""
        cells.append(f'<td class="{cls}{num}" data-value="{esc(value)}">{shown}</td>')
    cells.append(f'<td class="f-evidence">{_key_evidence(view)}</td>')
    return cells


def _findings(data: ReportData) -> str:
    flagged = data.flagged
    n_hosts = len(data.result.hosts)
    if not flagged:
        return (
            '<p class="none" id="no-findings"><b>No findings.</b> None of the '
            f"{n_hosts:,} hosts seen matched a signal ({', '.join(SIGNALS)}) with the "
            "configuration below.</p>"
        )
    shown = flagged[:MAX_FINDINGS_ROWS]
    more = len(flagged) - len(shown)
    note = f'<p class="muted">{more:,} more flagged hosts are in hosts.jsonl.</p>' if more else ""
    rows = [_finding_row(v, data.bin_s) for v in shown]
    header = [esc(title) for title, _ in _FINDING_COLUMNS]
    return (
        f'<p id="findings-count"><b>{len(flagged):,}</b> of {n_hosts:,} hosts flagged, '
        "highest score first. Counts are totals since each host was first seen; the "
        "evidence is computed over the detection window.</p>"
        + _table(header, rows, cls="findings")
        + note
    )


# --- figures --------------------------------------------------------------------------------


def _fig1(data: ReportData) -> str:
    if data.rate is None:
        return "<p>No DNS queries in this capture.</p>"
    who = "flagged hosts" if data.rate.is_flagged else "hosts that sent the most queries"
    return (
        '<p class="howto">Queries per minute of the '
        f"{who}, one colour per host, A-record queries above and MX queries below. A keyword "
        "storm is a flat, machine-steady band of hundreds of A queries a minute for hours; a "
        "person's browsing comes in short bursts; a mass mailer shows in the MX panel, where "
        "ordinary clients stay at zero.</p>"
        + _figure(data.rate, "DNS query rate over time", esc(data.rate.caption))
    )


def _prefix_cell(pc: PrefixCount | None) -> str:
    if pc is None:
        return "<td></td>"
    return (
        f'<td class="p-{pc.relation.value}"><code>{esc(pc.prefix)}</code> '
        f"{pc.count:,} <span class=muted>({pc.share:.1%})</span></td>"
    )


def _prefix_table(t: PrefixTable, bin_s: int) -> str:
    st = t.view.state
    if t.is_flagged:
        who = f"score {t.view.verdict.score:.1f}, {_verdicts(t.view.verdict.verdicts)}"
    else:
        who = "not flagged: A queries at a keyword-storm rate, mostly with the prefixes below"
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
        + _table(header, rows, cls="prefixes")
        + cand
    )


def _fig2(data: ReportData) -> str:
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
    return howto + "\n".join(_prefix_table(t, data.bin_s) for t in data.prefix_tables)


def _fig3(data: ReportData) -> str:
    howto = (
        '<p class="howto">One point per time bin with A queries: all A queries of the bin '
        "(x) against those whose name begins with a keyword (y). A worm working through a "
        "list of mail-server names puts its points on a straight line near the diagonal, with "
        "R\N{SUPERSCRIPT TWO} near 1 (0.999 in the study); a person's queries scatter near the "
        "x axis. Hosts that sent many keyword queries without being flagged follow the "
        "flagged ones.</p>"
    )
    if not data.fits:
        return howto + "<p>No host sent enough keyword A-queries to plot.</p>"
    parts = []
    for f in data.fits:
        status = "keyword-storm" if f.is_flagged else "not flagged"
        r2 = f.fit.r2 if f.fit is not None else None
        r2_text = "undefined" if r2 is None else f"{r2:.4f}"
        caption = f"{esc(f.host)} ({status}): R\N{SUPERSCRIPT TWO} = {r2_text}"
        parts.append(_figure(f, f"keyword A-queries against A-queries of {f.host}", caption))
    return howto + "\n".join(parts)


def _fig4(data: ReportData) -> str:
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
            _figure(data.network, "network-wide MX queries and SYNs", f"Network-wide: r = {r_text}")
        )
    for f in data.syncs:
        status = "bot-sync" if f.is_flagged else "not flagged: enough MX and SYNs, no sync"
        r_text = "undefined" if f.r is None else f"{f.r:.3f}"
        caption = f"{esc(f.host)} ({status}): r = {r_text}"
        parts.append(_figure(f, f"MX queries and SYNs of {f.host}", caption))
    return "\n".join(parts)


# --- capture statistics and configuration --------------------------------------------------


def _stats(data: ReportData) -> str:
    snap = data.result.final
    d = snap.decode
    n_packets = max(1, _int(d.get("packets")))
    span_s = max(0, snap.now_us - snap.start_us) / 1e6
    rows: list[tuple[str, str]] = [
        ("files", "<br>".join(f"<code>{esc(f)}</code>" for f in data.files)),
        ("packet time", f"{_utc(snap.start_us)} to {_utc(snap.now_us)} ({_duration(span_s)})"),
        ("packets", f"{_int(d.get('packets')):,} ({_int(d.get('bytes')):,} bytes)"),
    ]
    for name in STATUS_NAMES:
        count = _int(d.get(name))
        rows.append((f"decode: {name}", f"{count:,} ({count / n_packets:.1%})"))
    rows += [
        ("DNS queries", f"{_int(d.get('dns_queries')):,}"),
        ("SYNs to 135/139/445", f"{_int(d.get('syns')):,}"),
        ("hosts tracked", f"{snap.hosts_tracked:,}"),
        ("time bin", f"{data.bin_s} s"),
    ]
    rows += [(f"dropped: {k}", f"{v:,}") for k, v in data.agg_limits.items()]
    ns = data.network_sync
    r_text = "undefined (too few active bins)" if ns is None else _num(ns.get("r"))
    rows.append(("network MX/SYN r", r_text))
    body = "\n".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    table = f"<table class=stats><tbody>\n{body}\n</tbody></table>"
    if data.result.warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in data.result.warnings)
        warn = f'<div class="warn" id="warnings"><b>Warnings</b><ul>{items}</ul></div>'
    else:
        warn = '<p class="muted" id="warnings">No warnings while reading the captures.</p>'
    return table + warn


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def config_toml(cfg: Config) -> str:
    """The configuration as TOML that :func:`wormwatch.config.load_config` reads back."""
    sections: list[tuple[str, dict[str, object]]] = [
        ("aggregate", {
            "bin_s": cfg.bin_s, "window_s": cfg.window_s,
            "max_hosts": cfg.max_hosts, "max_host_bins": cfg.max_host_bins,
        }),
        ("keywords", {"words": list(cfg.keywords)}),
        ("keywords.weights", dict(cfg.keyword_weights)),
        ("allowlist", {
            "mail_servers": [str(n) for n in cfg.mail_servers],
            "resolvers": [str(n) for n in cfg.resolvers],
            "ignore": [str(n) for n in cfg.ignore],
        }),
        ("detect.keyword_storm", _fields(cfg.keyword_storm)),
        ("detect.mx_client", _fields(cfg.mx_client)),
        ("detect.smb_scan", _fields(cfg.smb_scan)),
        ("detect.bot_sync", _fields(cfg.bot_sync)),
        ("score", {"bands": list(cfg.score.bands), "hysteresis": cfg.score.hysteresis}),
        ("score.weights", dict(cfg.score.weights)),
    ]  # fmt: skip
    out = []
    for name, values in sections:
        out.append(f"[{name}]")
        out += [f"{_toml_key(k)} = {_toml(v)}" for k, v in values.items()]
        out.append("")
    return "\n".join(out)


def _config_block(cfg: Config) -> str:
    # The loader admits only numbers, CIDRs and keyword labels, so html.escape
    # suffices here (safe_text would show the newlines and brackets as escapes).
    return html.escape(config_toml(cfg), quote=True)


def _fields(obj: object) -> dict[str, object]:
    slots: tuple[str, ...] = getattr(obj, "__slots__", ())
    return {name: getattr(obj, name) for name in slots}


# --- the page ------------------------------------------------------------------------------


def render_report(data: ReportData) -> str:
    """The whole ``index.html``."""
    snap = data.result.final
    source = ", ".join(f"<code>{esc(f)}</code>" for f in data.files)
    cfg_from = esc(data.cfg.path) if data.cfg.path else "built-in defaults"
    body = f"""<h1>wormwatch report</h1>
<p class="lead">{source}<br>packet time {_utc(snap.start_us)} to {_utc(snap.now_us)}; \
{_int(snap.decode.get("packets")):,} packets; bins of {data.bin_s} s; config: {cfg_from}</p>
<h2 id="findings">Findings</h2>
{_findings(data)}
<h2 id="fig1">1. DNS query rate over time</h2>
{_fig1(data)}
<h2 id="fig2">2. Name prefixes of keyword-storm hosts</h2>
{_fig2(data)}
<h2 id="fig3">3. Keyword A-queries against all A-queries</h2>
{_fig3(data)}
<h2 id="fig4">4. MX queries and SYNs to 135/139/445</h2>
{_fig4(data)}
<h2 id="capture">Capture statistics</h2>
{_stats(data)}
<h2 id="config">Configuration</h2>
<p class="howto">The settings this report was made with, as a config file \
(<code>--config</code>) would hold them.</p>
<pre id="config-toml">{_config_block(data.cfg)}</pre>
<p class="muted">wormwatch {esc(__version__)}</p>
"""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wormwatch report</title>
<style>{_CSS}</style></head>
<body>
{body}</body></html>
"""
