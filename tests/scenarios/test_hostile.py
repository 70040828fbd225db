"""Hostile names and values end to end: capture -> decode -> ... -> JSON lines, the text
summary, the live table and the HTML report, all escaped and valid.

A capture crafted with scapy (in ``tmp_path``) carries query names with control bytes,
terminal escape sequences (``ESC [31m``, ``ESC ]0;title BEL``), rich markup (``[bold
red]``, ``[link=...]``), invalid UTF-8, HTML (``<script>``, an ``onerror`` attribute),
``"`` and ``&``, Unicode line separators and C1 controls, names of the maximum 255 bytes,
and odd qtypes (0, 255, 65535). Two hosts are flagged with those names as their evidence
(a keyword storm and an MX client), so the names reach alerts, summaries, the detail
panel and the report. Each output is then checked by a parser, not by eye.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from wormwatch.config import load_config
from wormwatch.model import Snapshot
from wormwatch.pipeline import Pipeline, RunResult
from wormwatch.present.live.table import build_screen
from wormwatch.present.live.view import ViewState
from wormwatch.source.pcapfile import open_replay

T0 = 1_767_000_000.0
STORM, MAILER, ODD = "192.0.2.66", "192.0.2.77", "192.0.2.88"
RESOLVER = "198.51.100.53"
# one label each (no dots inside); every one is something a presenter could act on
HOSTILE_LABELS = [
    b"\x1b[31mred\x1b[0m",
    b"\x1b]0;title\x07",
    b"[bold red]x[/]",
    b"[link=http://x]click[/link]",
    b"bad\xff\xfe\xc3(utf8",
    b"<script>alert(1)</script>",
    b"<img src=x onerror=alert(2)>",
    b'q"uote&amp;',
    b"ctl\x00\x01\r\n\x7f",
    "sep\u2028c1\u009b31m".encode(),
    b"back\\x1bslash",
]
# the maximum name: 4 labels of 63 bytes (255 with the dots), hostile bytes inside
MAX_NAME_LABELS = [(b"\x1b[2J<b>" + bytes([i]) * 63)[:63] for i in (0x07, 0x9B, 0xFF, 0x41)]
ODD_QTYPES = (0, 255, 65535)
# what must never appear: C0 controls but the line end, DEL, C1 controls
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def encode_name(labels: list[bytes]) -> bytes:
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


def query(src: str, ts: float, labels: list[bytes], qtype: int) -> Ether:
    dns = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    dns += encode_name(labels) + struct.pack("!HH", qtype, 1)
    pkt = Ether() / IP(src=src, dst=RESOLVER) / UDP(sport=40000, dport=53) / Raw(dns)
    pkt.time = ts
    return pkt


def storm_labels(i: int) -> list[bytes]:
    """A keyword name (first label starts with "mail") carrying a hostile label."""
    return [b"mail%d" % i + HOSTILE_LABELS[i % len(HOSTILE_LABELS)][:50], b"example"]


def hostile_packets() -> list[Ether]:
    packets = []
    # keyword storm: 25 A queries a minute for 8 minutes, hostile names first
    for i in range(200):
        packets.append(query(STORM, T0 + i * 2.4, storm_labels(i), 1))
    # mass mailer: MX queries for 40 hostile mail domains; the evidence keeps the first
    # five names of each host, so the mailer starts where the storm's samples end
    for i in range(40):
        label = HOSTILE_LABELS[(i + 5) % len(HOSTILE_LABELS)]
        domain = [label[:28] + b"%d" % i, b"example"]
        packets.append(query(MAILER, T0 + 5 + i * 12, domain, 15))
    # odd qtypes and the longest names
    for i, qtype in enumerate(ODD_QTYPES):
        packets.append(query(ODD, T0 + 7 + i, MAX_NAME_LABELS, qtype))
        packets.append(query(ODD, T0 + 9 + i, [HOSTILE_LABELS[i]], qtype))
    packets.sort(key=lambda p: float(p.time))
    return packets


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "hostile.pcap"
    wrpcap(str(path), hostile_packets())
    return path


def wormwatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wormwatch", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="surrogateescape",
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def replayed(capture: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """``wormwatch replay hostile.pcap --alerts A --summary S`` in a subprocess."""
    out = tmp_path_factory.mktemp("replay")
    alerts, summary = out / "alerts.jsonl", out / "summary.jsonl"
    result = wormwatch(
        "replay", str(capture), "--no-tui", "--alerts", str(alerts), "--summary", str(summary)
    )
    assert result.returncode == 0, result.stderr
    return {"alerts": alerts.read_bytes(), "summary": summary.read_bytes(), "text": result.stdout}


def json_lines(raw: bytes) -> list[dict[str, object]]:
    """Every line parses as JSON and holds no raw control character."""
    text = raw.decode("utf-8")
    assert text.endswith("\n")
    records = []
    for line in text.splitlines():
        assert not CONTROL.search(line), line
        # U+2028/2029 and U+0085 split lines in some readers: escaped by the writer
        assert not re.search("[\u2028\u2029\x85]", line), line
        records.append(json.loads(line))
    return records


def strings_in(obj: object) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in (*strings_in(k), *strings_in(v))]
    if isinstance(obj, list):
        return [s for v in obj for s in strings_in(v)]
    return []


def test_the_capture_decodes_every_hostile_query(capture: Path) -> None:
    result = Pipeline(load_config(None), source_name=capture.name).run(open_replay([str(capture)]))
    assert result.final.decode["dns_queries"] == len(hostile_packets())
    assert result.final.decode["malformed"] == result.final.decode["truncated"] == 0


def test_alerts_are_valid_json_lines_with_hostile_evidence_escaped(
    replayed: dict[str, bytes],
) -> None:
    records = json_lines(replayed["alerts"])
    flagged = {r["src_ip"]: r for r in records}
    assert "keyword-storm" in flagged[STORM]["verdicts"]
    assert "mx-client" in flagged[MAILER]["verdicts"]
    texts = {s for r in records for s in strings_in(r)}
    # the names are there, escaped: visible, reversible, inert
    assert "mail0\\x1b[31mred\\x1b[0m.example" in texts
    assert "mail1\\x1b]0;title\\x07.example" in texts
    assert "mail4bad\\xff\\xfe\\xc3(utf8.example" in texts
    assert "<script>alert(1)</script>0.example" in texts
    assert 'q"uote&amp;2.example' in texts
    assert not any("\x1b" in s or "\x07" in s or "\x00" in s for s in texts)


def test_summary_lines_are_valid_json_with_odd_qtypes_counted(
    replayed: dict[str, bytes],
) -> None:
    records = json_lines(replayed["summary"])
    hosts = {r["src_ip"]: r for r in records if r["event_type"] == "host"}
    odd = hosts[ODD]
    assert odd["queries"]["total"] == 2 * len(ODD_QTYPES)
    assert odd["queries"]["other"] == 2 * len(ODD_QTYPES)
    samples = [s for r in hosts.values() for s in r["sample_names"]]
    # the 255-byte name, lower-cased (A -> a) and escaped, whole
    longest = [s for s in samples if s.startswith("\\x1b[2j<b>\\x07")]
    assert len(longest) == 1
    assert longest[0].endswith(".\\x1b[2j<b>" + "a" * 56)
    assert not any(CONTROL.search(s) for s in samples)


def test_text_summary_has_no_control_byte(replayed: dict[str, object]) -> None:
    text = str(replayed["text"])
    assert STORM in text
    assert not CONTROL.search(text), repr(CONTROL.search(text))


# --- the live table --------------------------------------------------------------------


@pytest.fixture(scope="module")
def final(capture: Path) -> Snapshot:
    result: RunResult = Pipeline(load_config(None), source_name=capture.name).run(
        open_replay([str(capture)])
    )
    return replace(result.final, hosts=result.hosts)


def render(snap: Snapshot, state: ViewState, *, colour: bool) -> str:
    console = Console(
        record=True,
        width=160,
        height=60,
        force_terminal=colour,
        color_system="256" if colour else None,
    )
    console.print(build_screen(snap, width=160, height=60, state=state))
    out = console.export_text(styles=colour)
    # rich's own colours are SGR sequences; anything else from ESC on is injected
    return re.sub(r"\x1b\[[0-9;]*m", "", out) if colour else out


@pytest.mark.parametrize("addr", [STORM, MAILER, ODD])
@pytest.mark.parametrize("colour", [False, True], ids=["plain", "colour"])
def test_live_table_with_detail_shows_names_escaped(
    final: Snapshot, addr: str, *, colour: bool
) -> None:
    screen = render(final, ViewState(selected=addr, is_detail_open=True), colour=colour)
    assert addr in screen
    assert "\x1b" not in screen
    assert not CONTROL.search(screen.replace("\n", "")), repr(screen)
    # rich markup in a name is text, not style: the brackets survive as escapes
    assert "[bold red]" not in screen
    assert "[link=" not in screen


def test_live_table_detail_shows_the_sample_names_escaped(final: Snapshot) -> None:
    storm = render(final, ViewState(selected=STORM, is_detail_open=True), colour=False)
    assert (
        "mail0\\x1b\\x5b31mred\\x1b\\x5b0m.example  mail1\\x1b\\x5d0;title\\x07.example  "
        "mail2\\x5bbold red\\x5dx\\x5b/\\x5d.example"
    ) in storm
    mailer = render(final, ViewState(selected=MAILER, is_detail_open=True), colour=False)
    assert "<img src=x onerror=alert(2)>1.example" in mailer
    assert 'q"uote&amp;2.example  ctl\\x00\\x01\\x0d\\x0a\\x7f3.example' in mailer


# --- the HTML report ---------------------------------------------------------------------


class _Elements(HTMLParser):
    """Every start tag of a page with its attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def report(capture: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    result = wormwatch("report", str(capture), "-o", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_report_has_no_injected_markup(report: Path) -> None:
    html = (report / "index.html").read_text(encoding="utf-8")
    page = _Elements()
    page.feed(html)
    page.close()
    names = {tag for tag, _ in page.tags}
    assert "script" not in names
    attributes = {name for _, attrs in page.tags for name in attrs}
    assert not {"onerror", "onload", "onclick"} & attributes
    # the only images are the report's own figures
    images = [attrs.get("src") for tag, attrs in page.tags if tag == "img"]
    assert images
    assert all(src and re.fullmatch(r"fig[1-4]-[a-z0-9-]+\.png", src) for src in images)
    assert not CONTROL.search(html.replace("\n", ""))
    # the names are on the page, as text
    text = "".join(page.text)
    assert "<script>alert(1)</script>0.example" in text
    assert "<img src=x onerror=alert(2)>1.example" in text
    assert "[bold red]" not in text
    assert "\x1b" not in text


def test_report_host_lines_are_valid_json(report: Path) -> None:
    records = json_lines((report / "hosts.jsonl").read_bytes())
    assert {STORM, MAILER, ODD} <= {r.get("src_ip") for r in records}
