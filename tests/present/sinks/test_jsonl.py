"""JSON lines: host records keep the DESIGN.md keys, hostile names stay one parsable line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from wormwatch.control import ReopenRequests
from wormwatch.errors import WormwatchError
from wormwatch.model import (
    C_A,
    C_KW,
    C_MX,
    C_NAMES_NEW,
    C_PTR,
    C_QUERIES,
    C_SYN445,
    C_SYN_DST_NEW,
    N_COUNTERS,
    HostState,
    HostView,
    Snapshot,
    Verdict,
)
from wormwatch.present.sinks.jsonl import JsonLinesWriter, encode_line
from wormwatch.records import host_record, network_record
from wormwatch.text import iso_time, name_text

# (bytes on the wire, the text the record must hold), written out by hand
HOSTILE = [
    (b"\x1b[31mmail.example.com", "\\x1b[31mmail.example.com"),
    (b"mail\x00.example.com", "mail\\x00.example.com"),
    (b"[bold]smtp[/bold].example.com", "[bold]smtp[/bold].example.com"),
    (b"mx\xff\xfe.example.com", "mx\\xff\\xfe.example.com"),
    (b"a\\x41.example.com", "a\\\\x41.example.com"),
    (b"\xe2\x80\xaemoc.elpmaxe", "\\u202emoc.elpmaxe"),  # U+202E right-to-left override
    (b"line\xe2\x80\xa8break", "line\\u2028break"),  # U+2028
    # 255 bytes, every value but NUL: controls, DEL and every byte >= 0x80 (none of
    # them valid UTF-8 alone) as \xNN, the backslash doubled, the rest as it is
    (
        bytes(range(1, 256)),
        "".join(
            "\\\\" if b == 0x5C else chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}"
            for b in range(1, 256)
        ),
    ),
    ("café.example".encode(), "café.example"),
]


def make_state(names: list[bytes] | None = None) -> HostState:
    totals = np.zeros(N_COUNTERS, np.int64)
    totals[[C_QUERIES, C_A, C_PTR, C_MX, C_KW, C_NAMES_NEW]] = [20, 15, 2, 3, 12, 9]
    totals[[C_SYN445, C_SYN_DST_NEW]] = [7, 4]
    series = np.zeros((2, N_COUNTERS), np.int64)
    return HostState(
        addr="192.0.2.7",
        first_seen_us=1_700_000_000_000_000,
        last_seen_us=1_700_000_060_500_000,
        totals=totals,
        bins=np.array([28_333_333, 28_333_334], np.int64),
        series=series,
        sample_names=names if names is not None else [b"mail.example.com"],
    )


def test_iso_time_is_utc_with_offset() -> None:
    assert iso_time(0) == "1970-01-01T00:00:00.000000+00:00"
    assert iso_time(1_700_000_060_500_001) == "2023-11-14T22:14:20.500001+00:00"


def test_host_record_has_the_design_keys() -> None:
    view = HostView(make_state(), Verdict(score=42.04, verdicts=("smb-scan",), evidence={"x": 1}))
    rec = host_record(view, 60)
    assert rec["schema"] == 1
    assert rec["event_type"] == "host"
    assert rec["src_ip"] == "192.0.2.7"
    assert rec["first_seen"] == "2023-11-14T22:13:20.000000+00:00"
    assert rec["last_seen"] == "2023-11-14T22:14:20.500000+00:00"
    assert rec["queries"] == {"total": 20, "A": 15, "AAAA": 0, "MX": 3, "PTR": 2, "other": 0}
    assert rec["keyword_queries"] == 12
    assert rec["syn"] == {"135": 0, "139": 0, "445": 7}
    assert rec["syn_targets"] == 4
    assert rec["score"] == 42.0
    assert rec["verdicts"] == ["smb-scan"]
    assert rec["evidence"] == {"x": 1}
    assert rec["distinct_names"] == 9
    line = encode_line(rec)
    assert json.loads(line) == rec


def test_clean_host_has_no_evidence_key() -> None:
    rec = host_record(HostView(make_state(), Verdict()), 60)
    assert rec["verdicts"] == []
    assert rec["score"] == 0.0
    assert "evidence" not in rec


@pytest.mark.parametrize(("raw", "text"), HOSTILE)
def test_hostile_names_become_one_safe_line(raw: bytes, text: str) -> None:
    assert name_text(raw) == text
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F or 0x80 <= ord(c) < 0xA0 for c in text)
    assert "\u202e" not in text
    assert "\u2028" not in text
    rec = host_record(HostView(make_state([raw]), Verdict()), 60)
    line = encode_line(rec)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert len(line.decode("utf-8").splitlines()) == 1
    assert json.loads(line)["sample_names"] == [text]


def test_the_writer_escapes_what_splits_lines_in_any_string() -> None:
    """A string no escaping stage made (not a name) with U+0085, U+2028 and U+2029:
    still one line, and the same text read back."""
    record = {"note": "a\x85b\u2028c\u2029d"}
    line = encode_line(record)
    assert line == b'{"note":"a\\u0085b\\u2028c\\u2029d"}\n'
    assert len(line.decode("utf-8").splitlines()) == 1
    assert json.loads(line) == record


def test_name_text_rule() -> None:
    assert name_text(b"mail.example.com") == "mail.example.com"
    assert name_text(b"\x1b[31mx") == "\\x1b[31mx"
    assert name_text(b"a\x00b") == "a\\x00b"
    assert name_text(b"mx\xff") == "mx\\xff"
    assert name_text(b"a\\b") == "a\\\\b"
    assert name_text(b"[bold]") == "[bold]"
    assert name_text("café".encode()) == "café"
    assert name_text(b"\xe2\x80\xaeabc") == "\\u202eabc"
    # the escaping is reversible: a literal "\x41" is not the byte 0x41
    assert name_text(b"\\x41") != name_text(b"A")


def test_writer_appends_lines_and_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    with JsonLinesWriter(str(path)) as out:
        out.write({"schema": 1, "n": 1})
        # flushed as written: visible before close
        assert path.read_bytes() == b'{"schema":1,"n":1}\n'
    path.write_bytes(path.read_bytes() + b'{"schema":1,"n":')  # a writer died mid-line
    with JsonLinesWriter(str(path)) as out:
        out.write({"schema": 1, "n": 2, "r": float("nan"), "a": np.int64(3)})
        assert out.n_written == 1
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"schema": 1, "n": 1}
    assert lines[1] == '{"schema":1,"n":'
    assert json.loads(lines[2]) == {"schema": 1, "n": 2, "r": None, "a": 3}


def test_writer_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(WormwatchError, match="cannot open JSON lines output"):
        JsonLinesWriter(str(tmp_path / "no" / "such" / "dir.jsonl"))
    full = JsonLinesWriter("/dev/full")
    with pytest.raises(WormwatchError, match="no space left on device") as info:
        full.write({"schema": 1})
    assert "\n" not in str(info.value)
    full.close()
    full.close()
    with pytest.raises(WormwatchError, match="already closed"):
        full.write({"schema": 1})


def test_writer_closed_pipe(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    out = JsonLinesWriter(str(tmp_path / "x.jsonl"))
    os.dup2(write_fd, out._fd)
    os.close(write_fd)
    with pytest.raises(WormwatchError, match="closed the pipe"):
        out.write({"schema": 1})
    out.close()


def test_network_record() -> None:
    view = HostView(make_state(), Verdict(score=50.0, verdicts=("smb-scan", "mx-client")))
    snap = Snapshot(
        source="x.pcap", is_live=False, start_us=0, now_us=60_000_000, wall_elapsed_s=0.1,
        packets_per_s=0.0, dns_per_s=0.0, syn_per_s=0.0, hosts_tracked=3, hosts_dropped=0,
        decode={"packets": 10}, kernel_dropped=None, idle_s=None, network_sync_r=0.93,
        hosts=[view, HostView(make_state(), Verdict())],
    )  # fmt: skip
    rec = network_record(snap, network_sync={"r": 0.93, "bins": 12})
    assert rec["event_type"] == "network"
    assert rec["hosts_flagged"] == {"smb-scan": 1, "mx-client": 1}
    assert rec["network_sync"] == {"r": 0.93, "bins": 12}
    assert json.loads(encode_line(rec)) == rec


GOLDEN_HOST = (
    '{"schema":1,"event_type":"host","src_ip":"192.0.2.7",'
    '"first_seen":"2023-11-14T22:13:20.000000+00:00",'
    '"last_seen":"2023-11-14T22:14:20.500000+00:00",'
    '"queries":{"total":20,"A":15,"AAAA":0,"MX":3,"PTR":2,"other":0},'
    '"keyword_queries":12,"syn":{"135":0,"139":0,"445":7},"syn_targets":4,'
    '"score":0.0,"verdicts":[],"keyword_A":0,"distinct_names":9,"mx_domains":0,'
    '"bin_s":60,"active_bins":2,"sample_names":["\\\\x1b[31mmail.example.com"],'
    '"sample_mx_names":[],"answers":{"total":0,"nxdomain":0,"error":0,"nx_domains":0},'
    '"sample_nx_names":[]}\n'
)


def test_host_line_golden() -> None:
    """The exact bytes of one host line: a change here is a schema decision."""
    state = make_state([b"\x1b[31mmail.example.com"])
    assert encode_line(host_record(HostView(state, Verdict()), 60)).decode() == GOLDEN_HOST


def test_writer_to_standard_output(capfd: pytest.CaptureFixture[str]) -> None:
    with JsonLinesWriter("-") as out:
        out.write({"schema": 1, "name": name_text(b"\x1b]0;pwned\x07")})
    line = capfd.readouterr().out
    assert line == '{"schema":1,"name":"\\\\x1b]0;pwned\\\\x07"}\n'
    assert json.loads(line)["name"] == "\\x1b]0;pwned\\x07"


def test_standard_output_redirected_to_a_file_is_not_reopened_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--events - > events.jsonl`` and a SIGHUP: the lines after it still go to
    standard output, not to a new file named ``-`` in the working directory."""
    monkeypatch.chdir(tmp_path)
    redirected = tmp_path / "events.jsonl"
    saved = os.dup(1)
    try:
        fd = os.open(redirected, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.close(fd)
        reopen = ReopenRequests()
        with JsonLinesWriter("-", reopen=reopen) as out:
            out.write({"schema": 1, "n": 1})
            reopen.request()
            out.write({"schema": 1, "n": 2})
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    assert not (tmp_path / "-").exists()
    assert [json.loads(line)["n"] for line in redirected.read_text().splitlines()] == [1, 2]
