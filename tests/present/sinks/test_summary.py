"""The host summary's lines: the fast path writes what the general one would, byte for byte."""

from __future__ import annotations

import json
import random

import numpy as np

from wormwatch.model import N_COUNTERS, HostState, HostView, Verdict
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
