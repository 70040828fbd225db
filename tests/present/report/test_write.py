"""wormwatch report: files, figures, findings numbers, escaping, errors, the CLI end to end.

The report is read back the way a tool would: index.html with html.parser (the findings
table's ``f-*`` cells and their ``data-value``), the PNGs by their IHDR chunk, hosts.jsonl
as JSON lines.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from wormwatch.config import Config, load_config
from wormwatch.errors import WormwatchError
from wormwatch.model import QTYPE_AAAA, QTYPE_MX, QTYPE_PTR, RCODE_NXDOMAIN
from wormwatch.pipeline import RunResult
from wormwatch.present.report import plots
from wormwatch.present.report.htmlkit import esc, figure
from wormwatch.present.report.page import config_toml
from wormwatch.present.report.plots import coarsen, keyword_fit
from wormwatch.present.report.prefixes import Relation, prefix_stats, relation
from wormwatch.runner import report
from wormwatch.source import Source

from testkit import frames
from testkit.hoststates import Host, at
from testkit.hoststates import write_pcap as write_hosts_pcap
from testkit.paths import REPO
from testkit.pcap import write_frames

DEMO = REPO / "pcaps" / "demo.pcap"
DEMO_CONFIG = REPO / "src" / "wormwatch" / "data" / "demo.toml"
# one host, no findings (a committed sample: the report tests need no real captures)
QUIET = REPO / "pcaps" / "dns_tcp.pcap"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# what the page may contain: no script, no event handler, nothing loaded from elsewhere
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "br", "b",
    "code", "pre", "span", "div", "ul", "li", "table", "thead", "tbody", "tr", "th", "td",
    "figure", "img", "figcaption",
}  # fmt: skip
ALLOWED_ATTRS = {"lang", "charset", "name", "content", "class", "id", "src", "alt", "loading"}


class Page(HTMLParser):
    """What the tests read from index.html."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attrs: set[str] = set()
        self.images: list[str] = []
        self.ids: set[str] = set()
        self.findings: list[dict[str, str]] = []
        self.captions: list[str] = []
        self.prefix_hosts: list[str] = []
        self.text: list[str] = []
        self._in_findings = False
        self._in_caption = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        self.attrs.update(a)
        if "id" in a:
            self.ids.add(a["id"])
        classes = a.get("class", "").split()
        if tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "table":
            self._in_findings = "findings" in classes
        elif tag == "tr" and self._in_findings:
            self.findings.append({})
        elif tag == "td" and self._in_findings and classes and classes[0].startswith("f-"):
            self.findings[-1][classes[0]] = a.get("data-value", "")
        elif tag == "figcaption":
            self._in_caption = True
            self.captions.append("")
        elif tag == "h3" and "prefix-host" in classes:
            self.prefix_hosts.append(a.get("data-host", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_findings = False
        elif tag == "figcaption":
            self._in_caption = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_caption:
            self.captions[-1] += data


def read_page(out: Path) -> Page:
    return Page((out / "index.html").read_text(encoding="utf-8"))


def read_records(out: Path) -> list[dict[str, object]]:
    lines = (out / "hosts.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "report"
    index = report(load_config(str(DEMO_CONFIG)), [str(DEMO)], out)
    assert index == out / "index.html"
    return out


@pytest.fixture(scope="module")
def quiet_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quiet")
    report(Config(), [str(QUIET)], out)
    return out


# --- files and figures ---------------------------------------------------------------------


@pytest.mark.parametrize("which", ["demo_report", "quiet_report"])
def test_html_references_exactly_the_pngs_beside_it(
    which: str, request: pytest.FixtureRequest
) -> None:
    out: Path = request.getfixturevalue(which)
    page = read_page(out)
    on_disk = {p.name for p in out.glob("*.png")}
    assert set(page.images) == on_disk
    assert len(page.images) == len(set(page.images))
    assert all("/" not in src and ":" not in src for src in page.images), "relative names only"
    assert (out / "hosts.jsonl").is_file()


@pytest.mark.parametrize("which", ["demo_report", "quiet_report"])
def test_pngs_are_valid_and_small(which: str, request: pytest.FixtureRequest) -> None:
    out: Path = request.getfixturevalue(which)
    pngs = sorted(out.glob("*.png"))
    assert pngs
    for path in pngs:
        width, height = png_size(path)
        assert 300 <= width <= 1200, (path.name, width)
        assert 250 <= height <= 900, (path.name, height)
        assert path.stat().st_size < 150_000, path.name


def test_demo_has_every_figure(demo_report: Path) -> None:
    names = {p.name for p in demo_report.glob("*.png")}
    # storm host: one keyword fit; bot: one host sync figure; plus rate and network figures
    assert names == {
        "fig1-query-rate.png",
        "fig3-keyword-fit-01.png",
        "fig4-sync-network.png",
        "fig4-sync-host-01.png",
    }
    page = read_page(demo_report)
    assert page.prefix_hosts[0] == "192.0.2.66"
    assert {"findings", "fig1", "fig2", "fig3", "fig4", "capture", "config"} <= page.ids


def test_page_is_self_contained(demo_report: Path) -> None:
    text = (demo_report / "index.html").read_text(encoding="utf-8")
    page = read_page(demo_report)
    assert page.tags <= ALLOWED_TAGS
    assert page.attrs <= ALLOWED_ATTRS | {"data-value", "data-host"}
    assert "http://" not in text
    assert "https://" not in text
    assert "<link" not in text


# --- numbers ---------------------------------------------------------------------------------


def test_findings_table_equals_host_summaries(demo_report: Path) -> None:
    page = read_page(demo_report)
    records = read_records(demo_report)
    hosts = [r for r in records if r["event_type"] == "host"]
    flagged = [r for r in hosts if r["verdicts"]]
    rows = [r for r in page.findings if r]
    assert len(rows) == len(flagged) == 4
    for row, rec in zip(rows, flagged, strict=True):
        queries, syn = rec["queries"], rec["syn"]
        assert isinstance(queries, dict)
        assert isinstance(syn, dict)
        assert row["f-host"] == rec["src_ip"]
        assert float(row["f-score"]) == rec["score"]
        assert row["f-verdicts"].split(",") == rec["verdicts"]
        assert int(row["f-queries"]) == queries["total"]
        assert int(row["f-a"]) == queries["A"]
        assert int(row["f-mx"]) == queries["MX"]
        assert int(row["f-keyword"]) == rec["keyword_queries"]
        assert int(row["f-syns"]) == sum(syn.values())
        assert int(row["f-syn-targets"]) == rec["syn_targets"]


def test_findings_are_the_story_hosts(demo_report: Path) -> None:
    rows = {r["f-host"]: r["f-verdicts"].split(",") for r in read_page(demo_report).findings if r}
    assert rows == {
        "192.0.2.66": ["keyword-storm"],
        "192.0.2.77": ["mx-client"],
        "192.0.2.88": ["smb-scan"],
        "192.0.2.99": ["mx-client", "smb-scan", "bot-sync"],
    }


def test_hosts_jsonl_is_every_host_then_the_network(demo_report: Path) -> None:
    records = read_records(demo_report)
    assert all(r["schema"] == 1 for r in records)
    assert [r["event_type"] for r in records[:-1]] == ["host"] * (len(records) - 1)
    network = records[-1]
    assert network["event_type"] == "network"
    assert network["hosts_tracked"] == len(records) - 1
    decode = network["decode"]
    assert isinstance(decode, dict)
    assert decode["packets"] == 13771
    scores = [float(r["score"]) for r in records[:-1]]  # type: ignore[arg-type]
    assert scores == sorted(scores, reverse=True)


def test_captions_quote_the_detector_numbers(demo_report: Path) -> None:
    records = {r.get("src_ip"): r for r in read_records(demo_report)}
    captions = read_page(demo_report).captions
    storm = records["192.0.2.66"]["evidence"]
    assert isinstance(storm, dict)
    r2 = storm["keyword-storm"]["r2_keyword_a_vs_a"]
    assert f"192.0.2.66 (keyword-storm): R\N{SUPERSCRIPT TWO} = {r2:.4f}" in captions
    bot = records["192.0.2.99"]["evidence"]
    assert isinstance(bot, dict)
    assert f"192.0.2.99 (bot-sync): r = {bot['bot-sync']['r']:.3f}" in captions
    network = records[None]["network_sync"]
    assert isinstance(network, dict)
    assert f"Network-wide: r = {network['r']:.3f}" in captions


def test_no_findings_report_says_so(quiet_report: Path) -> None:
    page = read_page(quiet_report)
    assert "no-findings" in page.ids
    assert not page.findings
    assert "No findings." in " ".join(page.text)
    records = read_records(quiet_report)
    assert [r["event_type"] for r in records] == ["host", "network"]
    assert records[0]["verdicts"] == []


# --- untrusted names -------------------------------------------------------------------------

HOSTILE = [
    b"mail<script>alert(1)</script>.example",
    b'mx"&amp;\x1b[31m.example',
    b"smtp\xff\xfe.example",
    b"<img src=x onerror=alert(1)>.example",
]
LOW_THRESHOLDS = """
[detect.keyword_storm]
min_keyword_queries = 5
min_rate_per_min = 1
min_distinct_names = 2
min_active_bins = 2
"""


def _queries_pcap(path: Path, src: str, names: list[bytes], gap_s: float) -> None:
    """A-queries from ``src``, one every ``gap_s`` seconds of packet time (scapy)."""
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    frames = []
    for i, name in enumerate(names):
        frame = (
            Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
            / IP(src=src, dst="198.51.100.53")
            / UDP(sport=40000 + i % 20000, dport=53)
            / DNS(id=i, rd=1, qd=DNSQR(qname=name, qtype="A"))
        )
        frame.time = 1_768_467_600 + gap_s * i
        frames.append(frame)
    wrpcap(str(path), frames)


def _hostile_pcap(path: Path) -> None:
    _queries_pcap(path, "192.0.2.66", [HOSTILE[i % len(HOSTILE)] for i in range(24)], 20.0)


def test_a_capture_with_nothing_counted_shows_no_1970_time(tmp_path: Path) -> None:
    # one packet of 2003 that is neither a DNS query or answer nor a SYN to 135/139/445
    frame = frames.ether(frames.ipv4(frames.udp(b"x" * 8, dport=80)))
    write_frames(tmp_path / "web.pcap", [(1_060_648_157_150_816, frame)])
    report(Config(), [str(tmp_path / "web.pcap")], tmp_path / "out")
    text = " ".join(read_page(tmp_path / "out").text)
    assert "1970" not in text
    assert "packet time none: no DNS query, DNS answer or SYN to 135/139/445 counted" in text


def test_dga_nx_evidence_is_one_line_of_numbers(tmp_path: Path) -> None:
    host = Host("192.0.2.80")
    for i in range(40):
        host.answer(at(12) + i * 1_000_000, f"zq{i:02d}xkvbpwjq.com", RCODE_NXDOMAIN)
    write_hosts_pcap(tmp_path / "dga.pcap", [host])
    report(Config(), [str(tmp_path / "dga.pcap")], tmp_path / "out")
    (row,) = [r for r in read_page(tmp_path / "out").findings if r]
    assert row["f-verdicts"] == "dga-nx"
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    evidence = page.split('class="f-evidence">', 1)[1].split("</td>", 1)[0]
    # the old cell was the evidence's JSON cut at 200 characters, mid-timestamp
    assert "{" not in evidence
    assert "40 NXDOMAIN of 40 answers (100.0%) for 40 domains, 40.0/min" in evidence
    assert "<code>zq00xkvbpwjq.com</code>" in evidence


def test_a_correlated_host_not_flagged_is_not_said_to_have_no_sync(tmp_path: Path) -> None:
    # MX queries and SYNs rise and fall together (r = 1), but always to the same 3
    # hosts and one domain: too few new peers for bot-sync
    host = Host("192.0.2.90")
    for minute in range(60):
        n = 6 if (minute // 9) % 2 == 0 else 1
        for i in range(n):
            ts = at(12 + minute / 60) + i * 1_000_000
            host.query(ts, "mx.example.com", qtype=QTYPE_MX).syn(ts + 1, f"203.0.113.{i % 3}")
    write_hosts_pcap(tmp_path / "sync.pcap", [host])
    report(Config(), [str(tmp_path / "sync.pcap")], tmp_path / "out")
    (caption,) = [c for c in read_page(tmp_path / "out").captions if "192.0.2.90" in c]
    assert caption.endswith("r = 1.000")
    assert "no sync" not in caption
    assert "not flagged bot-sync" in caption


def test_a_capture_longer_than_the_window_says_the_figures_show_its_end(tmp_path: Path) -> None:
    host = Host("192.0.2.95")
    for day in range(3):
        host.queries([at(24 * day + 12 + i / 60) for i in range(20)], ["www.example.com"] * 20)
    write_hosts_pcap(tmp_path / "days.pcap", [host])
    report(Config(), [str(tmp_path / "days.pcap")], tmp_path / "long")
    page = read_page(tmp_path / "long")
    assert "window-note" in page.ids
    assert "The capture spans 48.3 h, more than the detection window" in " ".join(page.text)
    report(Config(window_s=4 * 86400), [str(tmp_path / "days.pcap")], tmp_path / "wide")
    assert "window-note" not in read_page(tmp_path / "wide").ids


def test_a_host_flagged_then_cleared_is_not_reported_as_nothing_fired(tmp_path: Path) -> None:
    scanner, client = Host("192.0.2.60"), Host("192.0.2.61")
    for i in range(40):
        scanner.syn(at(12) + i, f"203.0.113.{i}")
    # a query two hours later: the scan has left the one-hour window by the end
    client.queries([at(14)], ["www.example.com"])
    write_hosts_pcap(tmp_path / "scan.pcap", [scanner, client])
    report(Config(window_s=3600), [str(tmp_path / "scan.pcap")], tmp_path / "out")
    page = read_page(tmp_path / "out")
    text = " ".join(page.text)
    assert not page.findings
    assert "no-findings" in page.ids
    # the old page said "No findings. None of the 2 hosts seen matched a signal"
    assert "None of the" not in text
    assert "No host is flagged at the end of the capture" in text
    assert "but 2 alerts were raised during it" in text


def test_findings_say_alerts_were_raised_for_hosts_cleared_before_the_end(tmp_path: Path) -> None:
    early, late = Host("192.0.2.60"), Host("192.0.2.61")
    for i in range(40):
        early.syn(at(12) + i, f"203.0.113.{i}")
        late.syn(at(14) + i, f"203.0.113.{i}")
    write_hosts_pcap(tmp_path / "scan.pcap", [early, late])
    report(Config(window_s=3600), [str(tmp_path / "scan.pcap")], tmp_path / "out")
    page = read_page(tmp_path / "out")
    # the early scanner was flagged, then cleared when its SYNs left the one-hour window
    assert [r["f-host"] for r in page.findings if r] == ["192.0.2.61"]
    # the old paragraph counted the flagged hosts only, with no word of the early scanner
    assert "3 alerts were raised during it" in " ".join(page.text)


def test_no_findings_with_a_full_host_table_does_not_count_hosts_seen(tmp_path: Path) -> None:
    clients = [Host(f"192.0.2.{i}") for i in range(1, 41)]
    for i, client in enumerate(clients):
        client.queries([at(12) + i * 1_000_000], ["www.example.com"])
    write_hosts_pcap(tmp_path / "clients.pcap", clients)
    report(Config(max_hosts=10), [str(tmp_path / "clients.pcap")], tmp_path / "out")
    network = read_records(tmp_path / "out")[-1]
    evicted, untracked = network["hosts_dropped"], network["events_untracked"]
    assert isinstance(evicted, int)
    assert isinstance(untracked, int)
    assert evicted + untracked > 0
    text = " ".join(read_page(tmp_path / "out").text)
    # the old page said "None of the 10 hosts seen" of a capture of 40 clients
    assert "hosts seen" not in text
    assert "None of the 10 hosts tracked at the end matched a signal" in text
    assert f"{evicted:,} hosts were evicted and {untracked:,} events" in text
    assert f"hosts evicted (past max_hosts) {evicted:,}" in text


def test_rate_figure_of_a_capture_whose_flagged_hosts_sent_no_dns(tmp_path: Path) -> None:
    scanner, client = Host("192.0.2.60"), Host("192.0.2.61")
    for i in range(40):
        scanner.syn(at(12) + i, f"203.0.113.{i}")
    client.queries([at(12) + i for i in range(5)], ["www.example.com"] * 5)
    write_hosts_pcap(tmp_path / "scan.pcap", [scanner, client])
    report(Config(), [str(tmp_path / "scan.pcap")], tmp_path / "out")
    page = read_page(tmp_path / "out")
    assert [r["f-host"] for r in page.findings if r] == ["192.0.2.60"]
    # the old caption said "(no host flagged)" over a findings table with the scanner
    assert page.captions[0] == (
        "DNS queries of the busiest hosts (no flagged host sent DNS queries)"
    )


def test_a_capture_without_a_or_mx_queries_draws_no_empty_rate_figure(tmp_path: Path) -> None:
    # the real zeek_ipv6-fragmented-dns.pcap is like this: its one client asks for other types
    v6, ptr = Host("192.0.2.62"), Host("192.0.2.63")
    times = [at(12) + i * 1_000_000 for i in range(30)]
    v6.queries(times, ["www.example.com"] * 30, QTYPE_AAAA)
    ptr.queries(times[:9], ["1.2.0.192.in-addr.arpa"] * 9, QTYPE_PTR)
    write_hosts_pcap(tmp_path / "aaaa.pcap", [v6, ptr])
    report(Config(), [str(tmp_path / "aaaa.pcap")], tmp_path / "out")
    page = read_page(tmp_path / "out")
    # the old report drew figure 1 with no line, on a time axis of 1970-01-01
    assert "fig1-query-rate.png" not in page.images
    assert not (tmp_path / "out" / "fig1-query-rate.png").exists()
    assert "No A or MX queries to draw" in " ".join(page.text)


def test_an_undefined_network_r_gives_both_reasons(tmp_path: Path) -> None:
    # a mass mailer over 20 minutes and no SYN: enough active bins, a constant SYN series
    mailer = Host("192.0.2.64")
    mailer.queries([at(12) + i * 10_000_000 for i in range(120)], ["example.com"] * 120, QTYPE_MX)
    write_hosts_pcap(tmp_path / "mx.pcap", [mailer])
    report(Config(), [str(tmp_path / "mx.pcap")], tmp_path / "out")
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    row = page.split("<th>network MX/SYN r</th><td>", 1)[1].split("</td>", 1)[0]
    # the old row gave one reason, "too few active bins", for 20 active bins
    assert row == "undefined (too few active bins, or a constant series)"


def test_a_mailer_with_keyword_queries_is_not_captioned_not_flagged(tmp_path: Path) -> None:
    # a mass mailer that also looks up 150 mail-server names, one a minute (no storm)
    mailer = Host("192.0.2.65")
    mailer.queries(
        [at(12) + i * 60_000_000 for i in range(150)], [f"mail{i}.example.com" for i in range(150)]
    )
    mailer.queries(
        [at(12) + i * 60_000_000 + 1 for i in range(40)],
        [f"example-{i % 20}.com" for i in range(40)],
        QTYPE_MX,
    )
    write_hosts_pcap(tmp_path / "mailer.pcap", [mailer])
    report(Config(), [str(tmp_path / "mailer.pcap")], tmp_path / "out")
    page = read_page(tmp_path / "out")
    (row,) = [r for r in page.findings if r]
    assert row["f-verdicts"] == "mx-client"
    fit_captions = [c for c in page.captions if "R\N{SUPERSCRIPT TWO}" in c]
    # the old caption called the host the findings table lists as flagged "not flagged"
    assert len(fit_captions) == 1
    assert fit_captions[0].startswith("192.0.2.65 (not flagged keyword-storm): R")


def test_hostile_names_are_escaped(tmp_path: Path) -> None:
    pcap = tmp_path / "hostile.pcap"
    _hostile_pcap(pcap)
    config = tmp_path / "low.toml"
    config.write_text(LOW_THRESHOLDS)
    out = tmp_path / "report"
    report(load_config(str(config)), [str(pcap)], out)
    raw = (out / "index.html").read_bytes()
    text = raw.decode("utf-8")  # valid UTF-8 although the names were not
    page = read_page(out)
    rows = [r for r in page.findings if r]
    assert [r["f-host"] for r in rows] == ["192.0.2.66"], "the names must reach the page"
    assert page.tags <= ALLOWED_TAGS
    assert not any(a.startswith("on") for a in page.attrs)
    assert b"\x1b" not in raw
    assert "<script" not in text.lower()
    assert "<img src=x" not in text
    assert "&lt;script&gt;" in text
    shown = " ".join(page.text)
    # the names as an analyst reads them: visible escapes, markup as text
    assert "mail<script>alert(1)</script>.example" in shown
    assert "\\xff\\xfe" in shown
    assert "\\x1b" in shown
    assert 'mx"&amp;' in shown
    assert page.prefix_hosts == ["192.0.2.66"]
    assert "mail<" in shown, "the prefix table shows the hostile prefix, escaped"


def test_text_in_an_attribute_cannot_close_it() -> None:
    """esc() is used inside attributes (an image's alt, a cell's data-value): a quote
    in the text stays in the attribute."""
    assert esc("say \"hi\" & 'bye'") == "say &quot;hi&quot; &amp; &#x27;bye&#x27;"
    html = figure("f.png", 'x" onerror="alert(1)', "caption")
    assert 'alt="x&quot; onerror=&quot;alert(1)"' in html


def test_unflagged_host_with_unknown_keywords_gets_a_prefix_table(tmp_path: Path) -> None:
    # 30 A-queries a minute for 10 minutes, names a worm might use but no keyword matches
    words = [b"post", b"postman", b"postfix"]
    names = [words[i % 3] + b".example%d.com" % i for i in range(300)]
    pcap = tmp_path / "post.pcap"
    _queries_pcap(pcap, "192.0.2.70", names, 2.0)
    out = tmp_path / "report"
    report(Config(), [str(pcap)], out)
    page = read_page(out)
    assert "no-findings" in page.ids
    assert page.prefix_hosts == ["192.0.2.70"]
    text = "".join(page.text)
    assert "Frequent prefixes outside the keyword set: post 300 (100.0%)" in text


# --- pieces ------------------------------------------------------------------------------------


def test_config_block_reads_back_as_the_same_config(tmp_path: Path) -> None:
    cfg = load_config(str(DEMO_CONFIG))
    cfg = replace(
        cfg,
        keywords=("mail", "post"),
        keyword_weights={"mail": 1.0, "post": 0.5},
        dga_nx=replace(cfg.dga_nx, min_nx=5, min_mean_score=0.55),
        reassembly=replace(cfg.reassembly, max_datagrams=64, timeout_s=5.0),
    )
    path = tmp_path / "again.toml"
    path.write_text(config_toml(cfg))
    again = load_config(str(path))
    assert replace(again, path=None) == replace(cfg, path=None)


def test_prefix_relation_follows_the_keyword_rule() -> None:
    words = [b"mail", b"mx"]
    assert relation(b"mail.", words) is Relation.KEYWORD
    assert relation(b"mx1.e", words) is Relation.KEYWORD
    assert relation(b"ma", words) is Relation.PARTIAL
    assert relation(b"m", words) is Relation.PARTIAL
    assert relation(b"m.exa", words) is Relation.OTHER
    assert relation(b"www", words) is Relation.OTHER


def test_prefix_candidates_name_an_unknown_keyword() -> None:
    host = Host("192.0.2.70")
    names = [f"{w}.example{i}.com" for i in range(60) for w in ("post", "postman", "postfix")]
    names += [f"mail.example{i}.com" for i in range(40)] + ["www.example.org"] * 5
    host.queries([at(12) + i for i in range(len(names))], names)
    stats = prefix_stats(host.state().prefixes, ("mail", "smtp", "mx"))
    assert stats.n_named == len(names)
    assert [(c.prefix, c.count) for c in stats.candidates] == [(b"post", 180)]
    top5 = stats.by_length[5]
    assert top5[0].prefix in {b"post.", b"postm", b"postf"}
    assert all(pc.count >= top5[-1].count for pc in top5)


def test_keyword_fit_of_a_worm_and_of_a_flat_host() -> None:
    worm = Host()
    for minute, n in enumerate([10, 20, 30, 40, 50]):
        worm.queries([at(12 + minute / 60)] * n, [f"mail{minute}-{i}.x" for i in range(n)])
        worm.query(at(12 + minute / 60), f"www{minute}.x")
    _x, _y, fit = keyword_fit(worm.state())
    assert fit.n_bins == 5
    assert fit.r2 == pytest.approx(1.0)
    # keyword A = A - 1 in every bin: a line of slope 1, intercept -1
    assert fit.slope == pytest.approx(1.0)
    assert fit.intercept == pytest.approx(-1.0)
    flat = Host()
    for minute in range(4):
        flat.query(at(12 + minute / 60), f"mail{minute}.x")
    _x, _y, fit = keyword_fit(flat.state())
    assert (fit.slope, fit.r2) == (None, 1.0)


def test_coarsen_sums_into_wide_bins() -> None:
    bins = np.array([10, 11, 14, 15, 21], np.int64)
    wide, mx, syn = coarsen(bins, np.array([1, 2, 3, 4, 5]), np.array([0, 1, 0, 1, 0]), 5)
    assert wide.tolist() == [2, 3, 4]
    assert mx.tolist() == [6, 4, 5]
    assert syn.tolist() == [1, 1, 0]


# --- errors and reruns ---------------------------------------------------------------------------


def test_errors_are_wormwatch_errors(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(WormwatchError, match="not a directory"):
        report(Config(), [str(DEMO)], a_file)
    with pytest.raises(WormwatchError, match="cannot create report directory"):
        report(Config(), [str(DEMO)], a_file / "below")
    with pytest.raises(WormwatchError, match=r"missing\.pcap"):
        report(Config(), [str(tmp_path / "missing.pcap")], tmp_path / "out")
    assert not (tmp_path / "out").exists(), "nothing is created for a capture that is not there"


@pytest.mark.parametrize("name", ["hosts.jsonl", "index.html"])
def test_an_output_file_that_is_a_directory_is_one_error(tmp_path: Path, name: str) -> None:
    (tmp_path / name).mkdir()
    with pytest.raises(WormwatchError, match=f"cannot write .*{name}: Is a directory"):
        report(Config(), [str(QUIET)], tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(WormwatchError, match="permission denied"):
        report(Config(), [str(DEMO)], locked)


def test_rerun_replaces_its_own_figures_only(tmp_path: Path, demo_report: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for png in demo_report.glob("*.png"):
        (out / png.name).write_bytes(png.read_bytes())
    (out / "notes.png").write_bytes(b"mine")
    report(Config(), [str(QUIET)], out)
    page = read_page(out)
    assert {p.name for p in out.glob("fig*.png")} == set(page.images)
    assert (out / "notes.png").read_bytes() == b"mine"


def test_a_write_that_fails_half_way_leaves_the_earlier_report(
    tmp_path: Path, demo_report: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for entry in demo_report.iterdir():
        (out / entry.name).write_bytes(entry.read_bytes())
    before = {entry.name: entry.read_bytes() for entry in out.iterdir()}

    def full_disk(_state: object, _bin_s: int, path: Path) -> None:
        raise WormwatchError(f"cannot write figure {path}: No space left on device")

    # a disk that fills up after hosts.jsonl and figure 1 of the new report
    monkeypatch.setattr(plots, "keyword_fit_figure", full_disk)
    with pytest.raises(WormwatchError) as err:
        report(Config(), [str(DEMO)], out)
    # the message names the file in DIR, not the folder it was written in first
    assert str(err.value) == (
        f"cannot write figure {out / 'fig3-keyword-fit-01.png'}: No space left on device"
    )
    # the old code had removed the figures, replaced hosts.jsonl and written the new
    # figure 1 beside the earlier index.html
    assert {entry.name: entry.read_bytes() for entry in out.iterdir()} == before


@pytest.mark.parametrize("is_ctrl_c", [True, False], ids=["ctrl-c", "sigterm"])
def test_a_stop_writes_no_report_and_exits_130(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    is_ctrl_c: bool,
) -> None:
    from wormwatch import runner
    from wormwatch.cli import main
    from wormwatch.control import Stop

    class CtrlC(runner.Pipeline):
        """A replay stopped by Ctrl-C or SIGTERM before its first batch."""

        def run(self, source: Source, **_: object) -> RunResult:
            stop = Stop()
            stop.request(interrupted=is_ctrl_c)
            return super().run(source, stop=stop)

    monkeypatch.setattr(runner, "Pipeline", CtrlC)
    out = tmp_path / "out"
    # the old code wrote the report of no packet at all and exited 0
    assert main(["report", str(DEMO), "-o", str(out)]) == 130
    assert capsys.readouterr().err == "wormwatch: interrupted\n"
    assert list(out.iterdir()) == []


# a report whose figures are drawn after a SIGTERM sent to itself (a stop that comes
# once the replay is over, while the report is written)
_TERM_WHILE_WRITING = """
import os, signal, sys
from wormwatch.present.report import write
real = write._draw
def draw(*args):
    os.kill(os.getpid(), signal.SIGTERM)
    real(*args)
write._draw = draw
from wormwatch.cli import main
sys.exit(main(["report", sys.argv[1], "-o", sys.argv[2]]))
"""


def test_a_sigterm_while_the_report_is_written_leaves_one_whole_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report(Config(), [str(QUIET)], out)
    done = subprocess.run(
        [sys.executable, "-c", _TERM_WHILE_WRITING, str(DEMO), str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    # the old code died of the signal (-15), the quiet report's index.html left
    # beside the demo's hosts.jsonl and no figure
    assert done.returncode == 130, done.stderr
    assert done.stderr.endswith("wormwatch: interrupted\n")
    page = read_page(out)
    assert {p.name for p in out.glob("fig*.png")} == set(page.images) != set()
    assert "192.0.2.99" in (out / "index.html").read_text()


def test_cli_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    done = subprocess.run(
        [sys.executable, "-m", "wormwatch", "report", str(DEMO), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"report written to {out / 'index.html'}"
    page = read_page(out)
    # without the demo config the mail server is flagged too
    assert "192.0.2.25" in {r["f-host"] for r in page.findings if r}


@pytest.mark.parametrize("where", ["closed pipe", "full device"])
def test_a_report_whose_stdout_is_gone_still_exits_0(tmp_path: Path, where: str) -> None:
    if where == "closed pipe":
        read_end, stdout = os.pipe()
        os.close(read_end)
    else:
        stdout = os.open("/dev/full", os.O_WRONLY)
    done = subprocess.run(
        [sys.executable, "-m", "wormwatch", "report", str(QUIET), "-o", str(tmp_path)],
        stdout=stdout, stderr=subprocess.PIPE, text=True, check=False, cwd=REPO, timeout=120,
    )  # fmt: skip
    os.close(stdout)
    # the old code printed a BrokenPipeError (or OSError: No space left) traceback, exit 1
    assert (done.returncode, done.stderr) == (0, "")
    assert (tmp_path / "index.html").is_file()


def test_cli_reports_a_missing_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from wormwatch.cli import main

    code = main(["report", str(tmp_path / "nope.pcap"), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("wormwatch: error: ")
    assert "nope.pcap" in err
    assert len(err.strip().splitlines()) == 1


def test_a_span_of_years_is_drawn_in_wider_bins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one file's clock unset (1970) merged with one of today: drawn bin by bin, the
    # report of these two packets ran for minutes and took gigabytes
    drawn: list[tuple[np.ndarray, np.ndarray]] = []
    monkeypatch.setattr(
        plots, "_step", lambda _ax, edges, values, **_: drawn.append((edges, values))
    )
    old, new = Host("192.0.2.70"), Host("192.0.2.71")
    old.query(1_000_000, "mx.example.com", qtype=15).answer(1_000_000, "qx.com", RCODE_NXDOMAIN)
    new.queries([at(12)] * 3, ["a.example.com"] * 3)
    new.answer(at(12), "kq.com", RCODE_NXDOMAIN).answer(at(12), "zx.com", RCODE_NXDOMAIN)
    lines = [plots.RateLine("old", old.state()), plots.RateLine("new", new.state())]
    plots.query_rate_figure(lines, 60, tmp_path / "rate.png", title="t")
    plots.nx_rate_figure(lines, 60, tmp_path / "nx.png", title="t")
    bins = np.array([5, at(12) // 180_000_000], np.int64)
    plots.sync_figure(
        bins, np.array([4, 0]), np.array([0, 6]), 180, tmp_path / "s.png", title="t", r=None
    )
    assert len(drawn) == 8
    for edges, values in drawn:
        assert len(values) <= 5001, "at most 5000 steps (and a partial one) a figure"
        assert edges[0] <= np.datetime64(0, "s")
        assert edges[-1] > np.datetime64(at(12) // 10**6, "s")
    # rates per minute, times the minutes of a drawn bin, give back every count
    minutes = [float((e[1] - e[0]) / np.timedelta64(60, "s")) for e, _v in drawn]
    totals = [float(v.sum()) * m for (_e, v), m in zip(drawn, minutes, strict=True)]
    # A and MX of the old host, of the new host; NXDOMAIN of each; MX and SYNs network-wide
    assert totals == pytest.approx([0, 1, 3, 0, 1, 2, 4, 6])


def test_a_capture_reaching_the_year_9999_is_drawn(tmp_path: Path) -> None:
    # a capture's times reach 9999-12-31T23:59:59.999999 (the walker holds them there):
    # the last bin's end, and the axis margin past it, made matplotlib raise
    # "dates must be between year 0001 and 9999" out of 'wormwatch report'
    from wormwatch.kernels.pcapwalk import MAX_TS_US

    last, now = Host("192.0.2.72"), Host("192.0.2.73")
    last.query(MAX_TS_US, "mx.example.com", qtype=15).answer(MAX_TS_US, "qx.com", RCODE_NXDOMAIN)
    now.queries([at(12)] * 3, ["a.example.com"] * 3).answer(at(12), "kq.com", RCODE_NXDOMAIN)
    for lines in ([plots.RateLine("last", last.state())], [
        plots.RateLine("last", last.state()), plots.RateLine("now", now.state())
    ]):  # fmt: skip
        plots.query_rate_figure(lines, 60, tmp_path / "rate.png", title="t")
        plots.nx_rate_figure(lines, 60, tmp_path / "nx.png", title="t")
    b = MAX_TS_US // 60_000_000
    plots.sync_figure(
        np.array([b - 1, b]), np.array([4, 0]), np.array([0, 6]), 60, tmp_path / "s.png",
        title="t", r=None,
    )  # fmt: skip
    assert all((tmp_path / name).stat().st_size > 0 for name in ("rate.png", "nx.png", "s.png"))
