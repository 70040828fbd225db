"""The host summary's lines: the fast path writes what the general one would, byte for byte."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping

import numpy as np

from wormwatch.model import N_COUNTERS, HostState, HostView, Snapshot, Verdict
from wormwatch.present.sinks import summary
from wormwatch.present.sinks.jsonl import encode_line
from wormwatch.records import host_record

# names off the wire that JSON or the terminal must not take as they are
ODD_NAMES = [
    b"mail.example.com",
    b'quo"te.example.com',
    b"back\\slash.example.com",
    b"\x1b[31mred",
    b"nul\x00byte",
    b"\xff\xfe.example.com",
    "café.example.com".encode(),
    "line\u2028break".encode(),
    b"c1\xc2\x85next",
    "\U0001f600.example.com".encode(),
    b"[bold]x[/bold]",
    b"tab\there",
    b"",
]
ADDRS = ["192.0.2.7", "2001:db8::1", "198.51.100.255", "::ffff:203.0.113.9"]


def _view(rng: random.Random, verdict: Verdict) -> HostView:
    n_bins = rng.randrange(0, 6)
    state = HostState(
        addr=rng.choice(ADDRS),
        # before the epoch too: packet time is whatever the capture says
        first_seen_us=rng.randrange(-(10**12), 10**15),
        last_seen_us=rng.randrange(0, 4 * 10**15),
        totals=np.array([rng.randrange(0, 10**12) for _ in range(N_COUNTERS)], np.int64),
        bins=np.arange(n_bins, dtype=np.int64),
        series=np.zeros((n_bins, N_COUNTERS), np.int32),
        sample_names=rng.sample(ODD_NAMES, rng.randrange(0, 6)),
        sample_mx_names=rng.sample(ODD_NAMES, rng.randrange(0, 4)),
        sample_nx_names=rng.sample(ODD_NAMES, rng.randrange(0, 4)),
    )
    return HostView(state, verdict)


VERDICTS = [
    Verdict(),
    Verdict(score=0.04),
    Verdict(score=-0.0),
    Verdict(score=37.25),
    Verdict(score=float("nan")),
    Verdict(score=float("inf")),
    Verdict(score=71.0, verdicts=("mx-client",), evidence={"mx-client": {"r": float("nan")}}),
    Verdict(score=55.5, verdicts=("smb-scan", "bot-sync"), evidence={"names": [b"\x1b"]}),
]


def test_host_lines_equal_the_general_encoding_byte_for_byte() -> None:
    rng = random.Random(12)
    views = [_view(rng, rng.choice(VERDICTS)) for _ in range(600)]
    for bin_s in (60, np.int64(300)):
        want = b"".join(encode_line(host_record(v, int(bin_s))) for v in views)
        got = summary.host_lines(views, int(bin_s))
        assert got == want
        assert [json.loads(line)["src_ip"] for line in got.splitlines()] == [
            v.state.addr for v in views
        ]


def test_hosts_without_a_verdict_take_the_fast_path() -> None:
    rng = random.Random(3)
    plain = _view(rng, Verdict(score=2.5))
    assert summary._plain_host_line(plain, 60) is not None
    for verdict in (Verdict(score=float("nan")), VERDICTS[6]):
        assert summary._plain_host_line(HostView(plain.state, verdict), 60) is None


class _Lines:
    """A record writer that keeps the lines written."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def write(self, record: Mapping[str, object]) -> None:
        self.lines.append(encode_line(record))

    def write_lines(self, lines: bytes | memoryview, n_lines: int) -> None:
        got = bytes(lines).splitlines(keepends=True)
        assert len(got) == n_lines
        self.lines.extend(got)


def test_a_summary_of_many_hosts_writes_each_host_once() -> None:
    # 1,100 hosts: more than two of the writes the records are grouped into
    rng = random.Random(5)
    views = [_view(rng, Verdict(score=float(i % 7))) for i in range(1100)]
    for i, view in enumerate(views):
        view.state.addr = f"10.0.{i // 256}.{i % 256}"
    snap = Snapshot(
        source="x.pcap", is_live=False, start_us=0, now_us=60_000_000, wall_elapsed_s=0.1,
        packets_per_s=0.0, dns_per_s=0.0, syn_per_s=0.0, hosts_tracked=1100, hosts_dropped=0,
        decode={}, kernel_dropped=None, idle_s=None, network_sync_r=None, hosts=[],
    )  # fmt: skip
    out = _Lines()
    summary.write_summary_records(out, views, snap, 60)
    records = [json.loads(line) for line in out.lines]
    assert [r["src_ip"] for r in records[:-1]] == [v.state.addr for v in views]
    assert records[-1]["event_type"] == "network"
