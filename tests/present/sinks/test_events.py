"""The per-event log (``--events``): one JSON line per counted event.

Lines are formatted by a numba kernel; each must equal, byte for byte, the line
Python's json makes from the same fields (addresses by ``addr_text``, times by
``iso_time``, names by the evidence escaping rule). The events of a replay must be
the dpkt reference's (tests' RefDecoder), one line per event, and add up to the
summary's counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wormwatch.decode import Decoder
from wormwatch.dganame import score_texts
from wormwatch.model import (
    KIND_ANSWER,
    KIND_DNS,
    KIND_SYN,
    LINKTYPE_ETHERNET,
    RCODE_NXDOMAIN,
    STATUS_NAMES,
    Events,
    addr_text,
    addr_words,
)
from wormwatch.present.sinks.events import QTYPE_MNEMONICS, RCODE_NAMES, EventLog
from wormwatch.present.sinks.jsonl import encode_line
from wormwatch.source.pcapfile import open_replay
from wormwatch.text import iso_time, name_text

from testkit.paths import PCAPS, REAL_PCAPS
from testkit.pcap import read_records
from testkit.reference import PacketProblemError, RefDecoder, _ipv4, _ipv6, _link

SAMPLES = sorted(PCAPS.glob("*.pcap*"))
REAL = [REAL_PCAPS / n for n in ("ndpi_dns_exfiltration.pcap", "id2t_Win7_eternalblue_scan.pcap")]


class _Lines:
    """A stand-in writer that keeps what it was given."""

    def __init__(self) -> None:
        self.n_written = 0
        self.data = bytearray()

    def write_lines(self, lines: bytes | memoryview, n_lines: int) -> None:
        self.data += lines
        self.n_written += n_lines


def _log() -> tuple[EventLog, _Lines]:
    lines = _Lines()
    return EventLog(lines), lines  # type: ignore[arg-type]


KIND_TEXT = {KIND_DNS: "dns-query", KIND_SYN: "syn", KIND_ANSWER: "dns-answer"}


def python_line(ev: Events, i: int) -> bytes:
    """What the line must be, made field by field in Python."""
    record: dict[str, object] = {
        "schema": 1,
        "event_type": "event",
        "timestamp": iso_time(int(ev.ts_us[i])),
        "kind": KIND_TEXT[int(ev.kind[i])],
        "src_ip": addr_text(int(ev.src_hi[i]), int(ev.src_lo[i])),
        "src_port": int(ev.sport[i]),
        "dst_ip": addr_text(int(ev.dst_hi[i]), int(ev.dst_lo[i])),
        "dst_port": int(ev.dport[i]),
    }
    if ev.kind[i] != KIND_SYN:
        qtype = int(ev.qtype[i])
        record["qtype"] = qtype
        record["qtype_name"] = QTYPE_MNEMONICS.get(qtype, f"TYPE{qtype}")
        name = bytes(ev.names[i, : ev.name_lens[i]])
        record["name"] = name_text(name)
    if ev.kind[i] == KIND_ANSWER:
        rcode = int(ev.rcode[i])
        record["rcode"] = rcode
        record["rcode_name"] = RCODE_NAMES[rcode]
        record["nxdomain"] = rcode == RCODE_NXDOMAIN
        # the score in thousandths, as the aggregate adds it up
        record["name_score"] = round(score_texts([name]).scores[0] * 1000) / 1000 if name else None
    record["status"] = STATUS_NAMES[int(ev.status[i])]
    return encode_line(record)


@pytest.mark.parametrize("path", [*SAMPLES, *REAL], ids=lambda p: p.name)
def test_kernel_lines_equal_python_lines(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"real capture not found: {path}")
    log, lines = _log()
    source = open_replay([str(path)])
    decoder = Decoder()
    want = bytearray()
    while (batch := source.read_batch(1000)) is not None:
        ev = decoder.decode(batch)
        log.write_events(ev)
        for i in range(ev.n):
            want += python_line(ev, i)
    source.close()
    assert bytes(lines.data) == bytes(want)


def _events(rows: list[dict[str, object]]) -> Events:
    ev = Events.allocate(len(rows), len(rows))
    for i, row in enumerate(rows):
        for key, value in row.items():
            if key == "name":
                name = bytes(value)  # type: ignore[call-overload]
                ev.names[i, : len(name)] = np.frombuffer(name, np.uint8)
                ev.name_lens[i] = len(name)
            else:
                getattr(ev, key)[i] = value
    return ev


HOSTILE = [
    b"\x1b[31mred\x1b[0m.example",
    b'quote".example',
    b"back\\slash.example",
    b"[bold]markup[/bold].example",
    b"line\nbreak.example",
    "bücher.example".encode(),
    "sep\u2028arator.example".encode(),
    "bidi\u202eexample".encode(),
    b"\xff\xfe.invalid-utf8",
    b"nul\x00.example",
]


def test_hostile_names_are_escaped_one_line_each() -> None:
    rows: list[dict[str, object]] = [
        {"kind": KIND_DNS, "qtype": 1, "dport": 53, "sport": 1000 + i, "name": name,
         "src_lo": addr_words("192.0.2.7")[1], "dst_lo": addr_words("192.0.2.53")[1]}
        for i, name in enumerate(HOSTILE)
    ]  # fmt: skip
    ev = _events(rows)
    log, lines = _log()
    log.write_events(ev)
    text = bytes(lines.data).decode()
    assert text.count("\n") == len(HOSTILE)
    assert "\x1b" not in text
    assert "\u2028" not in text
    assert "\u202e" not in text
    got = [json.loads(line)["name"] for line in text.split("\n")[:-1]]
    assert got == [name_text(name) for name in HOSTILE]
    assert got[0] == "\\x1b[31mred\\x1b[0m.example"
    assert got[1] == 'quote".example'
    assert bytes(lines.data) == b"".join(python_line(ev, i) for i in range(ev.n))


ADDRESSES = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.sampled_from(["::", "::1", "1::", "2001:db8::", "1:0:0:1:0:0:0:1", "0:1:0:1:0:1:0:1"]),
)


@settings(max_examples=300, deadline=None)
@given(
    src=ADDRESSES,
    dst=ADDRESSES,
    ts_us=st.integers(0, 2**32 * 1_000_000),
    qtype=st.integers(0, 65535),
    status=st.integers(0, len(STATUS_NAMES) - 1),
    kind=st.sampled_from([KIND_DNS, KIND_SYN, KIND_ANSWER]),
    ports=st.tuples(st.integers(0, 65535), st.integers(0, 65535)),
    rcode=st.integers(0, 15),
    name=st.sampled_from([b"a.example", b"", b"qxvkztbwhe.example", b"www.google.com"]),
)
def test_any_address_time_and_qtype_formats_as_python_does(
    src: str, dst: str, ts_us: int, qtype: int, status: int, kind: int,
    ports: tuple[int, int], rcode: int, name: bytes,
) -> None:  # fmt: skip
    (src_hi, src_lo), (dst_hi, dst_lo) = addr_words(src), addr_words(dst)
    row: dict[str, object] = {
        "ts_us": ts_us, "src_hi": src_hi, "src_lo": src_lo, "dst_hi": dst_hi,
        "dst_lo": dst_lo, "kind": kind, "qtype": qtype, "status": status,
        "sport": ports[0], "dport": ports[1], "name": name, "rcode": rcode,
    }  # fmt: skip
    ev = _events([row])
    log, lines = _log()
    log.write_events(ev)
    assert bytes(lines.data) == python_line(ev, 0)


def _reference(path: Path) -> list[tuple[object, ...]]:
    """Every event as the dpkt reference decodes it, with its packet's status and,
    for a whole (unfragmented) packet, its source port."""
    decoder = RefDecoder()
    out = []
    for ts_us, linktype, _, frame in read_records(path):
        status, events = decoder.decode(linktype, frame, ts_us)
        sport: int | None = None
        if events and linktype == LINKTYPE_ETHERNET:
            version, offset = _link(linktype, frame)
            try:
                # (source, destination, protocol, payload, ...): the payload is 4th
                payload = (_ipv4 if version == 4 else _ipv6)(frame[offset:])[3]
                sport = int.from_bytes(payload[:2], "big")
            except PacketProblemError:
                sport = None  # a fragment that completed a datagram
        for e in events:
            kind = KIND_TEXT[e.kind]
            name = name_text(e.name) if e.kind != KIND_SYN else None
            out.append(
                (iso_time(e.ts_us), e.src, e.dst, kind, e.dport, name, STATUS_NAMES[status], sport)
            )
    return out


@pytest.mark.parametrize("path", [PCAPS / "demo.pcap", PCAPS / "dns_tcp.pcap", *REAL], ids=str)
def test_replay_events_equal_the_reference_and_the_summary(path: Path, tmp_path: Path) -> None:
    if not path.exists():
        pytest.skip(f"real capture not found: {path}")
    events, summary = tmp_path / "events.jsonl", tmp_path / "summary.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "wormwatch", "replay", str(path), "--no-tui",
         "--events", str(events), "--summary", str(summary)],
        check=False, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    want = _reference(path)
    assert len(lines) == len(want)
    for got, ref in zip(lines, want, strict=True):
        fields = ("timestamp", "src_ip", "dst_ip", "kind", "dst_port")
        assert tuple(got[k] for k in fields) == ref[:5]
        assert got.get("name") == ref[5]
        assert got["status"] == ref[6]
        if ref[7] is not None:
            assert got["src_port"] == ref[7]
    records = [json.loads(line) for line in summary.read_text().splitlines()]
    network = records[-1]
    kinds = Counter(line["kind"] for line in lines)
    assert kinds["dns-query"] == network["decode"]["dns_queries"]
    assert kinds["syn"] == network["decode"]["syns"]
    assert kinds["dns-answer"] == network["decode"]["dns_answers"]
    per_host = Counter(line["src_ip"] for line in lines if line["kind"] == "dns-query")
    answers = [line for line in lines if line["kind"] == "dns-answer"]
    per_client = Counter(line["dst_ip"] for line in answers)
    nx_per_client = Counter(line["dst_ip"] for line in answers if line["nxdomain"])
    for host in (r for r in records if r["event_type"] == "host"):
        assert host["queries"]["total"] == per_host[host["src_ip"]], host["src_ip"]
        assert host["answers"]["total"] == per_client[host["src_ip"]], host["src_ip"]
        assert host["answers"]["nxdomain"] == nx_per_client[host["src_ip"]], host["src_ip"]


def test_events_to_standard_output() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wormwatch", "replay", str(PCAPS / "dns_tcp.pcap"), "--no-tui",
         "--events", "-", "--summary", "/dev/null"],
        check=False, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"schema":1,"event')]
    assert len(lines) == len(_reference(PCAPS / "dns_tcp.pcap"))
    kinds = Counter(json.loads(line)["kind"] for line in lines)
    # dns_tcp.pcap: 4 answers over TCP (3 NXDOMAIN), the rest queries
    assert kinds == {"dns-query": len(lines) - 4, "dns-answer": 4}


def test_answer_lines_byte_for_byte() -> None:
    """One NXDOMAIN answer over IPv6, one NOERROR answer without a question, one with an
    unassigned RCODE: the exact bytes (an answer is from the server to the client)."""
    server, client = addr_words("2001:db8::53"), addr_words("192.0.2.7")
    base = {
        "ts_us": 1_768_464_001_262_000,
        "kind": KIND_ANSWER,
        "sport": 53,
        "dport": 33000,
        "src_hi": server[0],
        "src_lo": server[1],
        "dst_hi": client[0],
        "dst_lo": client[1],
    }
    rows: list[dict[str, object]] = [
        {**base, "qtype": 1, "rcode": 3, "name": b"qxvkztbwhe.example"},
        {**base, "qtype": 0, "rcode": 0, "name": b""},
        {**base, "qtype": 28, "rcode": 13, "name": b'q"uote.example', "status": 2},
    ]  # fmt: skip
    log, lines = _log()
    log.write_events(_events(rows))
    score = round(score_texts([b"qxvkztbwhe.example"]).scores[0] * 1000) / 1000
    assert score > 0.5
    head = (
        '{"schema":1,"event_type":"event","timestamp":"2026-01-15T08:00:01.262000+00:00",'
        '"kind":"dns-answer","src_ip":"2001:db8::53","src_port":53,"dst_ip":"192.0.2.7",'
        '"dst_port":33000,'
    )
    assert bytes(lines.data).decode().splitlines() == [
        head + '"qtype":1,"qtype_name":"A","name":"qxvkztbwhe.example","rcode":3,'
        f'"rcode_name":"NXDOMAIN","nxdomain":true,"name_score":{score},"status":"ok"}}',
        head + '"qtype":0,"qtype_name":"TYPE0","name":"","rcode":0,"rcode_name":"NOERROR",'
        '"nxdomain":false,"name_score":null,"status":"ok"}',
        head + '"qtype":28,"qtype_name":"AAAA","name":"q\\"uote.example","rcode":13,'
        f'"rcode_name":"RCODE13","nxdomain":false,"name_score":{QUOTE_SCORE},'
        f'"status":"{STATUS_NAMES[2]}"}}',
    ]
    assert json.loads(bytes(lines.data).splitlines()[0])["name_score"] == score


QUOTE_SCORE = round(score_texts([b'q"uote.example']).scores[0] * 1000) / 1000
