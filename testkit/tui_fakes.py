"""Scripted snapshots for the live-table tests: fixed hosts, fixed verdicts.

Built by hand from the model types only (no aggregator, no detector), so the
golden screens change when the table changes and for no other reason.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from wormwatch.model import (
    C_A,
    C_KW,
    C_KW_A,
    C_MX,
    C_MX_DOM_NEW,
    C_NAMES_NEW,
    C_PTR,
    C_QUERIES,
    C_SYN135,
    C_SYN139,
    C_SYN445,
    C_SYN_DST_BIN,
    C_SYN_DST_NEW,
    N_COUNTERS,
    HostState,
    HostView,
    Snapshot,
    Verdict,
)

BIN_S = 60
START_US = int(datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()) * 1_000_000
START_BIN = START_US // (BIN_S * 1_000_000)
HOSTILE_NAME = b"\x1b[31mmail\x07.[bold]evil[/bold].\xff\xfe.example"


def host(
    addr: str,
    per_bin: dict[int, list[int]],
    *,
    first_bin: int = 0,
    last_seen_s: float | None = None,
    names: tuple[bytes, ...] = (),
    mx_names: tuple[bytes, ...] = (),
) -> HostState:
    """A host whose counter ``col`` is ``per_bin[col][i]`` in bin ``first_bin + i``.

    Totals are the sums; bins where every counter is zero are left out, as the
    aggregator keeps only bins with events.
    """
    n = max(len(v) for v in per_bin.values())
    series = np.zeros((n, N_COUNTERS), np.int64)
    for col, values in per_bin.items():
        series[: len(values), col] = values
    active = series.any(axis=1)
    bins = np.arange(START_BIN + first_bin, START_BIN + first_bin + n, dtype=np.int64)[active]
    series = series[active]
    first_us = START_US + first_bin * BIN_S * 1_000_000
    if last_seen_s is None:
        last_seen_s = (first_bin + n) * BIN_S - 1
    prefixes: dict[bytes, int] = {}
    for name in names:
        for length in range(1, 6):
            prefixes[name[:length]] = prefixes.get(name[:length], 0) + 1
    scale = max(1, int(series[:, C_QUERIES].sum()) // max(1, len(names)))
    prefixes = {p: c * scale for p, c in prefixes.items()}
    return HostState(
        addr=addr,
        first_seen_us=first_us,
        last_seen_us=START_US + int(last_seen_s * 1_000_000),
        totals=series.sum(axis=0),
        bins=bins,
        series=series,
        sample_names=list(names),
        sample_mx_names=list(mx_names),
        prefixes=prefixes,
    )


def _storm() -> HostView:
    a = [0] * 5 + [96, 98, 97, 99, 98, 97, 99, 98, 96, 97, 98, 99, 97, 98, 96, 97, 99, 98, 97, 98]
    kw = [max(0, v - 1) for v in a]
    state = host(
        "192.0.2.66",
        {C_QUERIES: a, C_A: a, C_KW: kw, C_KW_A: kw, C_NAMES_NEW: [v // 3 for v in a]},
        names=(b"mail.example.com", b"smtp.example.net", b"mx1.example.org", b"mail1.example.com"),
    )
    verdict = Verdict(
        score=72.5,
        verdicts=("keyword-storm",),
        evidence={
            "score_parts": {"keyword-storm": 72.5},
            "keyword-storm": {
                "queries": 1949,
                "keyword_share": 0.99,
                "keyword_a_per_min": 96.5,
                "r2_keyword_a_vs_a": 0.9991,
                "first_active": "2026-11-27T12:05:00.000000+00:00",
                "sample_names": ["mail.example.com"],
            },
        },
    )
    return HostView(state, verdict)


def _bot() -> HostView:
    mx = [0, 0, 0, 0, 0, 0, 0, 0, 4, 12, 2, 0, 0, 9, 15, 3, 0, 0, 11, 14, 1, 0, 0, 8, 13]
    syn = [3 * v + (1 if v else 0) for v in mx]
    state = host(
        "198.51.100.23",
        {
            C_QUERIES: [v + 2 for v in mx],
            C_A: [2] * len(mx),
            C_MX: mx,
            C_MX_DOM_NEW: [v // 2 for v in mx],
            C_SYN445: syn,
            C_SYN139: [v // 10 for v in syn],
            C_SYN_DST_BIN: syn,
            C_SYN_DST_NEW: syn,
        },
        names=(b"www.example.com",),
        mx_names=(b"example.com", b"example.org", b"example.net"),
    )
    verdict = Verdict(
        score=96.0,
        verdicts=("mx-client", "smb-scan", "bot-sync"),
        evidence={
            "score_parts": {"mx-client": 20.0, "smb-scan": 38.0, "bot-sync": 38.0},
            "smb-scan": {"syn": {"135": 0, "139": 36, "445": 380}, "targets": 380},
            "bot-sync": {"r": 0.9874, "bins": 17, "active_bins": 12, "series": {"mx": [1]}},
        },
        sync_r=0.9874,
    )
    return HostView(state, verdict)


def _mailer() -> HostView:
    mx = [0, 3, 0, 0, 5, 0, 2, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 6, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]
    state = host(
        "192.0.2.7",
        {C_QUERIES: [v + 1 for v in mx], C_A: [1] * len(mx), C_MX: mx, C_MX_DOM_NEW: mx},
        mx_names=(b"example.com", b"example.org"),
        last_seen_s=1795.0,
    )
    return HostView(state, Verdict(45.0, ("mx-client",), {"score_parts": {"mx-client": 45.0}}))


def _scanner6() -> HostView:
    syn = [0] * 10 + [40, 55, 61, 58, 0, 0, 0, 0, 0, 0]
    state = host(
        "2001:db8:0:42::dead:beef",
        {C_SYN445: syn, C_SYN135: [v // 4 for v in syn], C_SYN_DST_NEW: syn},
        last_seen_s=14 * 60 - 5,
    )
    return HostView(state, Verdict(61.0, ("smb-scan",), {"score_parts": {"smb-scan": 61.0}}))


def _hostile() -> HostView:
    q = [0] * 20 + [3, 2, 4, 1, 2]
    state = host("203.0.113.9", {C_QUERIES: q, C_A: q, C_PTR: [0] * 25}, names=(HOSTILE_NAME,))
    return HostView(state, Verdict())


def _ordinary(i: int) -> HostView:
    q = [(i * 7 + b * 3) % 5 for b in range(30)]
    a = [v // 2 for v in q]
    names = (b"www.example.com", b"cdn.example.net")
    state = host(f"192.0.2.{100 + i}", {C_QUERIES: q, C_A: a}, names=names)
    return HostView(state, Verdict())


def snapshot(*, n_ordinary: int = 12, now_s: float = 30 * 60, **changes: object) -> Snapshot:
    """A replay 30 minutes into the capture, with one host of each kind."""
    hosts = [_bot(), _storm(), _scanner6(), _mailer(), _hostile()]
    hosts += [_ordinary(i) for i in range(n_ordinary)]
    snap = Snapshot(
        source="demo.pcap",
        is_live=False,
        start_us=START_US,
        now_us=START_US + int(now_s * 1_000_000),
        wall_elapsed_s=30.5,
        packets_per_s=812.4,
        dns_per_s=341.0,
        syn_per_s=27.25,
        hosts_tracked=len(hosts),
        hosts_dropped=0,
        decode={"packets": 64000, "ok": 60000, "ignored": 3990, "truncated": 7, "malformed": 3},
        kernel_dropped=None,
        idle_s=0.5,
        network_sync_r=0.9312,
        hosts=hosts,
        bin_s=BIN_S,
    )
    return replace(snap, **changes)  # type: ignore[arg-type]


def live_snapshot() -> Snapshot:
    """A live capture in trouble: kernel drops, a full host table, nothing arriving."""
    return snapshot(
        source="eth1",
        is_live=True,
        kernel_dropped=1234,
        kernel_received=2_000_000,
        interface_dropped=17,
        hosts_dropped=56789,
        events_untracked=4321,
        idle_s=42.0,
        network_sync_r=None,
        decode={"packets": 10, "ok": 10},
    )


def empty_snapshot() -> Snapshot:
    """Nothing relevant seen yet, ten seconds into a live capture."""
    return Snapshot(
        source="eth1",
        is_live=True,
        start_us=0,
        now_us=0,
        wall_elapsed_s=10.0,
        packets_per_s=0.0,
        dns_per_s=0.0,
        syn_per_s=0.0,
        hosts_tracked=0,
        hosts_dropped=0,
        decode={},
        kernel_dropped=0,
        idle_s=None,
        network_sync_r=None,
        hosts=[],
    )


def sequence(n: int = 8) -> list[Snapshot]:
    """Snapshots of a replay advancing one bin at a time."""
    return [snapshot(now_s=(22 + i) * 60.0, wall_elapsed_s=float(i)) for i in range(n)]
