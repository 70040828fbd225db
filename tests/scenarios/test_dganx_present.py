"""dga-nx on the screen: the live table's NX column and combined SCAN+DGA label, the
detail panel's answers line, evidence and NXDOMAIN sample names (escaped)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.console import Console

from wormwatch.config import Config
from wormwatch.detect import evaluate
from wormwatch.model import HostView, Snapshot
from wormwatch.present.live.table import build_screen
from wormwatch.present.live.view import ViewState
from wormwatch.runner import report

from testkit import dgahosts
from testkit.hoststates import at, scanner, write_pcap
from testkit.tui_fakes import snapshot

HOSTILE_NX = b"\x1b[31mxjwq[bold]kepz.info"


def _conficker_view() -> HostView:
    host = dgahosts.dga_client("conficker-c", addr="192.0.2.44", hours=1.0)
    host.answer(at(9.5), HOSTILE_NX, 3)
    for t, dst, _qtype, _name, port in scanner(200).log:
        host.syn(t, dst, port)
    state = host.state()
    # the hostile name is a sample: first of the new NXDOMAIN domains
    state.sample_nx_names.insert(0, HOSTILE_NX)
    return HostView(state, evaluate(state, Config(), now_us=at(12)))


def _screen(snap: Snapshot, width: int, height: int, state: ViewState) -> str:
    console = Console(record=True, width=width, height=height, color_system=None)
    console.print(build_screen(snap, width=width, height=height, state=state))
    return console.export_text()


def test_table_shows_nx_and_the_combined_reading() -> None:
    view = _conficker_view()
    assert set(view.verdict.verdicts) == {"dga-nx", "smb-scan"}
    snap = snapshot(n_ordinary=3)
    snap = replace(snap, hosts=[view, *snap.hosts], now_us=at(12))
    text = _screen(snap, 160, 24, ViewState())
    header = next(line for line in text.splitlines() if line.startswith("host"))
    assert " NX " in header
    row = next(line for line in text.splitlines() if "192.0.2.44" in line)
    assert "SCAN+DGA" in row
    assert " 251 " in row  # NXDOMAIN answers: 250 generated names and the hostile one
    assert "\x1b" not in text


def test_detail_panel_shows_answers_evidence_and_escaped_samples() -> None:
    view = _conficker_view()
    snap = replace(snapshot(n_ordinary=0), hosts=[view], now_us=at(12))
    state = ViewState(selected="192.0.2.44", is_detail_open=True)
    text = _screen(snap, 160, 40, state)
    assert "answers 251: NXDOMAIN 251  other errors 0" in text
    assert "dga-nx: nx_answers=251 answers=251 nx_share=1" in text
    assert "reading: dga-nx and smb-scan together: the same host generates names" in text
    assert "NXDOMAIN names \\x1b\\x5b31mxjwq\\x5bbold\\x5dkepz.info" in text
    assert "\x1b" not in text


def test_report_draws_the_nxdomain_figure(tmp_path: Path) -> None:
    hosts = [dgahosts.dga_client("cryptolocker", hours=1.0), dgahosts.typing_mistakes()]
    pcap = write_pcap(tmp_path / "dga.pcap", hosts)
    index = report(Config(), [str(pcap)], tmp_path / "report")
    html = index.read_text()
    assert '<h2 id="fig5">5. NXDOMAIN answers of generated names</h2>' in html
    assert 'src="fig5-nxdomain-rate.png"' in html
    png = tmp_path / "report" / "fig5-nxdomain-rate.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "192.0.2.150 (dga-nx)" in html or "192.0.2.150" in html


def test_report_without_dga_says_so(tmp_path: Path) -> None:
    pcap = write_pcap(tmp_path / "typos.pcap", [dgahosts.typing_mistakes()])
    html = report(Config(), [str(pcap)], tmp_path / "report").read_text()
    assert "No host was flagged dga-nx." in html
    assert not (tmp_path / "report" / "fig5-nxdomain-rate.png").exists()
