"""Report page: :class:`~wormwatch.present.report.data.ReportData` -> one self-contained HTML page.

In: the report's data (run result, chosen hosts, figure file names, prefix
tables). Out: the text of ``index.html``: inline CSS, no script, no external
asset; figures are ``<img>`` tags with relative file names.

Untrusted text: every piece of text that did not come from the report's own
code (names, addresses, evidence values, file names, warnings) goes through
:func:`~wormwatch.present.report.htmlkit.esc`, so nothing from a capture can add
markup. The figure sections are :mod:`.sections`. The findings table carries its numbers in
``data-value`` attributes and its cells in stable ``f-*`` classes, so tools
(and the tests) can read them back.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from wormwatch import __version__
from wormwatch.config import SIGNALS, Config
from wormwatch.model import STATUS_NAMES, HostView
from wormwatch.present.report.htmlkit import as_int, duration, esc, num, table, utc, verdict_badges
from wormwatch.present.report.sections import (
    fit_section,
    nx_section,
    prefix_section,
    rate_section,
    sync_section,
    window_note,
)
from wormwatch.records import host_record

if TYPE_CHECKING:
    from wormwatch.present.report.data import ReportData

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


# --- findings -----------------------------------------------------------------------------


def _samples(names: object) -> str:
    if not isinstance(names, list) or not names:
        return ""
    shown = ", ".join(f"<code>{esc(n)}</code>" for n in names[:_N_SAMPLES])
    return f"; e.g. {shown}"


def _top_prefixes(ev: Mapping[str, object], length: int) -> str:
    """The detector's most asked name prefixes of one length, e.g. ``mail 314``."""
    by_len = ev.get("top_prefixes")
    items = by_len.get(str(length)) if isinstance(by_len, dict) else None
    if not isinstance(items, list) or not items:
        return ""
    shown = ", ".join(
        f"<code>{esc(item[0])}</code> {as_int(item[1]):,}"
        for item in items[:_N_SAMPLES]
        if isinstance(item, list) and len(item) == 2
    )
    return f"; top prefixes {shown}"


def _keyword_names(names: object, keywords: tuple[str, ...]) -> list[str]:
    """Sample names whose first label starts with a keyword (the others say little)."""
    if not isinstance(names, list):
        return []
    return [
        n for n in names if isinstance(n, str) and n.split(".", 1)[0].lower().startswith(keywords)
    ]


def _evidence_text(name: str, ev: Mapping[str, object], cfg: Config) -> str:
    """One line of key evidence of a fired signal, as HTML."""
    if name == "keyword-storm":
        share = ev.get("keyword_share")
        share_text = f"{share:.1%}" if isinstance(share, float) else "n/a"
        return (
            f"{as_int(ev.get('keyword_a_queries')):,} keyword A of {as_int(ev.get('queries')):,} "
            f"queries ({share_text}), {num(ev.get('keyword_a_per_min'))}/min, "
            f"R\N{SUPERSCRIPT TWO} {num(ev.get('r2_keyword_a_vs_a'))}"
            + _top_prefixes(ev, 4)
            + _samples(_keyword_names(ev.get("sample_names"), cfg.keywords))
        )
    if name == "mx-client":
        return (
            f"{as_int(ev.get('mx_queries')):,} MX queries for {as_int(ev.get('mx_domains')):,} "
            f"domains, {num(ev.get('mx_per_min'))}/min" + _samples(ev.get("sample_domains"))
        )
    if name == "smb-scan":
        syn = ev.get("syn")
        ports = (
            ", ".join(f"{esc(p)}: {as_int(n):,}" for p, n in syn.items())
            if isinstance(syn, dict)
            else ""
        )
        return (
            f"{as_int(ev.get('syns')):,} SYNs to {as_int(ev.get('targets')):,} hosts ({ports}), "
            f"peak {as_int(ev.get('peak_targets_per_bin')):,} new targets in one bin"
        )
    if name == "bot-sync":
        return (
            f"MX vs SYN r = {num(ev.get('r'))} over {as_int(ev.get('bins')):,} bins "
            f"({as_int(ev.get('mx_queries')):,} MX, {as_int(ev.get('syns')):,} SYNs)"
        )
    if name == "dga-nx":
        share = ev.get("nx_share")
        share_text = f"{share:.1%}" if isinstance(share, int | float) else "n/a"
        return (
            f"{as_int(ev.get('nx_answers')):,} NXDOMAIN of {as_int(ev.get('answers')):,} answers "
            f"({share_text}) for {as_int(ev.get('nx_domains')):,} domains, "
            f"{num(ev.get('nx_per_min'))}/min, mean name score {num(ev.get('mean_name_score'))}"
            + _samples(ev.get("sample_names"))
        )
    return esc(json.dumps(ev, default=str)[:200])


def _key_evidence(view: HostView, cfg: Config) -> str:
    parts = []
    for name in view.verdict.verdicts:
        ev = view.verdict.evidence.get(name)
        if isinstance(ev, dict):
            parts.append(f"<b>{esc(name)}</b>: {_evidence_text(name, ev, cfg)}")
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


def _finding_row(view: HostView, cfg: Config) -> list[str]:
    rec = host_record(view, cfg.bin_s)
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
        sum(as_int(n) for n in syn.values()),
        rec["syn_targets"],
    ]
    cells = []
    for (_title, cls), value in zip(_FINDING_COLUMNS, values, strict=False):
        if cls == "f-verdicts":
            shown = verdict_badges(view.verdict.verdicts)
        elif isinstance(value, float):
            shown = f"{value:.1f}"
        elif isinstance(value, int):
            shown = f"{value:,}"
        else:
            shown = esc(value)
        num = " num" if isinstance(value, int | float) else ""
        cells.append(f'<td class="{cls}{num}" data-value="{esc(value)}">{shown}</td>')
    cells.append(f'<td class="f-evidence">{_key_evidence(view, cfg)}</td>')
    return cells


def _findings(data: ReportData) -> str:
    flagged = data.flagged
    n_hosts = len(data.result.hosts)
    if not flagged and data.result.n_alerts:
        # flagged on the way, cleared by the end: the page must not say nothing fired
        return (
            '<p class="warn" id="no-findings"><b>No host is flagged at the end of the '
            f"capture</b>, but {data.result.n_alerts:,} alerts were raised during it: hosts "
            "matched a signal and were cleared before the end, when their evidence left the "
            f"detection window (<code>window_s</code> = {duration(data.cfg.window_s)}) or no "
            "longer met a threshold. <code>wormwatch replay --alerts F</code> with the same "
            "captures lists them; the figures below show the hosts as they were at the end.</p>"
        )
    if not flagged:
        snap = data.result.final
        full = (
            f" The host table was full: {snap.hosts_dropped:,} hosts were evicted and "
            f"{snap.events_untracked:,} events of hosts past <code>max_hosts</code> were not "
            "counted."
            if snap.hosts_dropped or snap.events_untracked
            else ""
        )
        return (
            '<p class="none" id="no-findings"><b>No findings.</b> None of the '
            f"{n_hosts:,} hosts tracked at the end matched a signal ({', '.join(SIGNALS)}) "
            f"with the configuration below.{full}</p>"
        )
    shown = flagged[:MAX_FINDINGS_ROWS]
    more = len(flagged) - len(shown)
    note = f'<p class="muted">{more:,} more flagged hosts are in hosts.jsonl.</p>' if more else ""
    rows = [_finding_row(v, data.cfg) for v in shown]
    header = [esc(title) for title, _ in _FINDING_COLUMNS]
    return (
        f'<p id="findings-count"><b>{len(flagged):,}</b> of {n_hosts:,} hosts flagged, '
        "highest score first. Counts are totals since each host was first seen; the "
        "evidence is computed over the detection window; the verdicts are those at the end "
        f"of the capture. {data.result.n_alerts:,} alerts were raised during it (each change "
        "of a host's verdicts or score band, hosts cleared before the end among them): "
        "<code>wormwatch replay --alerts F</code> with the same captures lists them.</p>"
        + table(header, rows, cls="findings")
        + note
    )


# --- capture statistics and configuration --------------------------------------------------


def _packet_time(data: ReportData) -> str:
    """The packet-time span of what was counted, or that nothing was."""
    snap = data.result.final
    counted = sum(as_int(snap.decode.get(k)) for k in ("dns_queries", "dns_answers", "syns"))
    if not counted:
        # no event set the clock: its 0 is no packet's time
        return "none: no DNS query, DNS answer or SYN to 135/139/445 counted"
    span_s = max(0, snap.now_us - snap.start_us) / 1e6
    return f"{utc(snap.start_us)} to {utc(snap.now_us)} ({duration(span_s)})"


def _stats(data: ReportData) -> str:
    snap = data.result.final
    d = snap.decode
    n_packets = max(1, as_int(d.get("packets")))
    rows: list[tuple[str, str]] = [
        ("files", "<br>".join(f"<code>{esc(f)}</code>" for f in data.files)),
        ("packet time", _packet_time(data)),
        ("packets", f"{as_int(d.get('packets')):,} ({as_int(d.get('bytes')):,} bytes)"),
    ]
    for name in STATUS_NAMES:
        count = as_int(d.get(name))
        rows.append((f"decode: {name}", f"{count:,} ({count / n_packets:.1%})"))
    rows += [
        ("DNS queries", f"{as_int(d.get('dns_queries')):,}"),
        ("SYNs to 135/139/445", f"{as_int(d.get('syns')):,}"),
        ("hosts tracked", f"{snap.hosts_tracked:,}"),
        ("hosts evicted (past max_hosts)", f"{snap.hosts_dropped:,}"),
        ("time bin", f"{data.bin_s} s"),
    ]
    rows += [(f"dropped: {k}", f"{v:,}") for k, v in data.agg_limits.items()]
    ns = data.network_sync
    undefined = "undefined (too few active bins, or a constant series)"
    r_text = undefined if ns is None else num(ns.get("r"))
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
        ("reassembly", _fields(cfg.reassembly)),
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
        ("detect.dga_nx", _fields(cfg.dga_nx)),
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
<p class="lead">{source}<br>packet time {_packet_time(data)}; \
{as_int(snap.decode.get("packets")):,} packets; bins of {data.bin_s} s; config: {cfg_from}</p>
<h2 id="findings">Findings</h2>
{_findings(data)}
{window_note(data)}
<h2 id="fig1">1. DNS query rate over time</h2>
{rate_section(data)}
<h2 id="fig2">2. Name prefixes of keyword-storm hosts</h2>
{prefix_section(data)}
<h2 id="fig3">3. Keyword A-queries against all A-queries</h2>
{fit_section(data)}
<h2 id="fig4">4. MX queries and SYNs to 135/139/445</h2>
{sync_section(data)}
<h2 id="fig5">5. NXDOMAIN answers of generated names</h2>
{nx_section(data)}
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
