"""The detail panel of one host and the key help, for the live screen.

In: a :class:`~wormwatch.present.live.rows.HostRow` (its view holds the counters,
sample names, prefix counts and the verdict's evidence) and the snapshot's
clock. Out: lines of ``Text`` (one line each, never wrapped, so the panel's
height is known before drawing) and the panels around them. Every name and
every string of evidence passes :func:`~wormwatch.present.safe.safe_text`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
from rich.console import RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from wormwatch.dganx import mean_name_score
from wormwatch.model import (
    C_A,
    C_AAAA,
    C_ANSWERS,
    C_KW,
    C_KW_A,
    C_MX,
    C_NAMES_NEW,
    C_NX,
    C_NX_DOMS_NEW,
    C_NX_SCORE,
    C_OTHER,
    C_PTR,
    C_QUERIES,
    C_RCODE_ERR,
    C_SYN135,
    C_SYN139,
    C_SYN445,
    C_SYN_DST_NEW,
    Snapshot,
)
from wormwatch.present.live import fmt
from wormwatch.present.live.rows import HostRow, host_series, recent_bins
from wormwatch.present.safe import safe_text
from wormwatch.text import utc_time

N_SAMPLES: Final = 6
NAME_MAX: Final = 40
PREFIX_LENGTHS: Final = (1, 2, 3, 4, 5)
SERIES: Final = (
    ("DNS", (C_QUERIES,)),
    ("kw A", (C_KW_A,)),
    ("MX", (C_MX,)),
    ("SYN", (C_SYN135, C_SYN139, C_SYN445)),
    ("tgt+", (C_SYN_DST_NEW,)),
)
_ISO_TIME: Final = re.compile(r"\d{4}-\d\d-\d\dT(\d\d:\d\d:\d\d)(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?")
# evidence keys shown elsewhere in the panel, or too long for one line
_SKIP_EVIDENCE: Final = frozenset(
    {"sample_names", "sample_domains", "series", "top_prefixes", "with_smb_scan", "with_dga_nx"}
)


def _line(*parts: str | tuple[str, str]) -> Text:
    text = Text.assemble(*parts)
    text.no_wrap = True
    text.overflow = "ellipsis"
    text.end = ""
    return text


def _scalar(value: object) -> str | None:
    """Evidence value as short text, or None for a list or mapping."""
    if value is None:
        return fmt.DASH
    if isinstance(value, bool | int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        # evidence times are full ISO 8601; the panel's first line has the date
        iso = _ISO_TIME.fullmatch(value)
        return iso.group(1) if iso else safe_text(value, max_len=NAME_MAX)
    return None


def _evidence_line(name: str, evidence: Mapping[str, object]) -> Text:
    parts: list[str] = []
    for key, value in evidence.items():
        if key in _SKIP_EVIDENCE:
            continue
        text = _scalar(value)
        if text is None and isinstance(value, Mapping):
            inner = [f"{k}={_scalar(v)}" for k, v in value.items() if _scalar(v) is not None]
            text = "{" + " ".join(safe_text(i) for i in inner) + "}" if inner else None
        if text is not None:
            parts.append(f"{safe_text(key, max_len=24)}={text}")
    return _line((f"{safe_text(name, max_len=16)}: ", "bold"), " ".join(parts))


def _counts_lines(row: HostRow, snap: Snapshot) -> list[Text]:
    st = row.view.state
    t = np.asarray(st.totals, np.int64)
    n_q = int(t[C_QUERIES])
    kw = int(t[C_KW])
    share = f" ({fmt.percent(kw / n_q)})" if n_q else ""
    first, last = utc_time(st.first_seen_us), utc_time(st.last_seen_us)
    if first[:10] == last[:10]:
        last = last[11:]
    lines = [
        _line(
            ("seen ", "bold"),
            f"{first} .. {last} UTC (last {fmt.age(row.last_seen_ago_s)} ago)",
        ),
        _line(
            ("queries ", "bold"),
            f"{n_q:,}: A {t[C_A]:,}  AAAA {t[C_AAAA]:,}  MX {t[C_MX]:,}  PTR {t[C_PTR]:,}  "
            f"other {t[C_OTHER]:,}   keyword {kw:,}{share}   distinct names {t[C_NAMES_NEW]:,}",
        ),
        _line(
            ("SYN ", "bold"),
            f"135 {t[C_SYN135]:,}  139 {t[C_SYN139]:,}  445 {t[C_SYN445]:,}   "
            f"distinct targets {t[C_SYN_DST_NEW]:,}   MX/SYN sync r {fmt.signed_r(row.sync_r)}"
            f"   (bin {snap.bin_s} s)",
        ),
    ]
    if t[C_ANSWERS]:
        mean = mean_name_score(int(t[C_NX_SCORE]), int(t[C_NX_DOMS_NEW]))
        lines.append(
            _line(
                ("answers ", "bold"),
                f"{t[C_ANSWERS]:,}: NXDOMAIN {t[C_NX]:,}  other errors {t[C_RCODE_ERR]:,}   "
                f"NXDOMAIN domains {t[C_NX_DOMS_NEW]:,}  mean name score {mean:.2f}",
            )
        )
    return lines


def _names_lines(row: HostRow) -> list[Text]:
    st = row.view.state
    lines = []
    for label, names in (
        ("sample names", st.sample_names),
        ("MX names", st.sample_mx_names),
        ("NXDOMAIN names", st.sample_nx_names),
    ):
        if names:
            shown = "  ".join(safe_text(n, max_len=NAME_MAX) for n in names[:N_SAMPLES])
            lines.append(_line((f"{label} ", "bold"), shown))
    return lines


def _prefix_line(row: HostRow) -> Text | None:
    """The most common name prefix of each length 1..5, with its share of
    the host's queries (the study's figure 2)."""
    st = row.view.state
    n_q = int(np.asarray(st.totals)[C_QUERIES])
    if not st.prefixes or not n_q:
        return None
    parts = []
    for length in PREFIX_LENGTHS:
        same = [(n, p) for p, n in st.prefixes.items() if len(p) == length]
        if same:
            # most frequent; ties to the smallest prefix, so the line is stable
            n, prefix = min(same, key=lambda item: (-item[0], item[1]))
            parts.append(f"{safe_text(prefix)} {fmt.percent(n / n_q)}")
    return _line(("top prefixes ", "bold"), "  ".join(parts)) if parts else None


def _series_lines(row: HostRow, snap: Snapshot, width: int) -> list[Text]:
    st = row.view.state
    bins = np.asarray(st.bins, np.int64)
    series = host_series(row.view)
    if series.shape[0] == 0:
        return []
    bin_us = max(1, snap.bin_s) * 1_000_000
    now_bin = max(snap.now_us, st.last_seen_us) // bin_us
    # from the host's first bin to now, as much as fits
    n_bins = max(1, min(width - 20, now_bin - st.first_seen_us // bin_us + 1))
    lines = []
    for label, cols in SERIES:
        counts = recent_bins(bins, series, cols, now_bin=now_bin, n_bins=n_bins)
        peak = int(counts.max())
        lines.append(
            _line(
                (f"{label:>5} ", "bold"),
                (fmt.sparkline(counts.tolist(), n_bins), "cyan"),
                f" max {fmt.compact(peak)}",
            )
        )
    return lines


def detail_lines(row: HostRow, snapshot: Snapshot, *, width: int) -> list[Text]:
    """Everything the panel shows about one host, one ``Text`` per line."""
    lines = _counts_lines(row, snapshot)
    evidence = row.view.verdict.evidence
    parts = evidence.get("score_parts")
    if isinstance(parts, Mapping) and parts:
        lines.append(_evidence_line("score parts", parts))
    for name in row.verdicts:
        ev = evidence.get(name)
        if isinstance(ev, Mapping):
            lines.append(_evidence_line(name, ev))
    dga = evidence.get("dga-nx")
    if isinstance(dga, Mapping) and isinstance(dga.get("with_smb_scan"), str):
        # the combined reading of dga-nx and smb-scan, on a line of its own
        lines.append(_line(("reading: ", "bold"), safe_text(dga["with_smb_scan"])))
    lines.extend(_names_lines(row))
    prefix = _prefix_line(row)
    if prefix is not None:
        lines.append(prefix)
    lines.extend(_series_lines(row, snapshot, width))
    return lines


def detail_panel(row: HostRow, lines: Sequence[Text], *, width: int, height: int) -> Panel:
    """``lines`` in a box of exactly ``height`` lines titled with the host."""
    body = Text("\n", no_wrap=True, overflow="ellipsis", end="").join(lines[: max(0, height - 2)])
    verdicts = ", ".join(safe_text(v, max_len=16) for v in row.verdicts) or "no verdict"
    title = Text.assemble((row.addr, "bold"), f"  score {row.score:.0f}  {verdicts}")
    return Panel(body, title=title, title_align="left", width=width, height=height)


HELP_KEYS: Final = (
    ("q", "quit (the summary is written)"),
    ("p", "pause / resume the display (capture and detection go on)"),
    ("s", "next sort column (score, DNS/s, SYN, tgts, sync, seen)"),
    ("↑ ↓  PgUp PgDn", "select a host (Home, End: the first, the last)"),
    ("Enter", "detail panel of the selected host (Enter or Esc closes)"),
    ("/", "filter by address: prefix 10.1. or CIDR 10.1.0.0/16"),
    ("?", "this help (any key closes it)"),
)
HELP_COLUMNS: Final = (
    ("score", "0-100, from the signals that fired"),
    ("verdicts", "STORM=keyword-storm MX=mx-client SCAN=smb-scan SYNC=bot-sync DGA=dga-nx"),
    ("DNS/s", "DNS queries per second over the window"),
    ("A, MX", "A and MX queries since first seen"),
    ("kw%", "share of queries starting with a mail-server keyword"),
    ("SYN", "TCP SYNs to 135/139/445 (per port when wide enough)"),
    ("tgts, NX", "distinct SYN destinations; NXDOMAIN answers received"),
    ("sync", "correlation of the host's MX queries and SYNs per bin"),
    ("activity", "queries + SYNs per bin, newest on the right"),
    ("seen", "packet time since the host's last packet"),
)


def help_panel(*, width: int, height: int) -> RenderableType:
    """Keys and column meanings in a box of exactly ``height`` lines."""
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 1))
    table.add_column(style="bold", no_wrap=True, min_width=max(len(k) for k, _ in HELP_KEYS))
    table.add_column(no_wrap=True, overflow="ellipsis")
    for key, what in HELP_KEYS:
        table.add_row(key, what)
    table.add_row("", "")
    for key, what in HELP_COLUMNS:
        table.add_row(key, what)
    return Panel(table, title="keys and columns", title_align="left", width=width, height=height)
