"""dga-nx across sensors: a capture of DGA-infected and benign clients split over
sensors (a host's queries at one, the answers it receives at others, its SMB scan at a
third) exports deltas whose merge judges exactly as one aggregate of the whole capture:
the same host states, the same dga-nx verdicts and the same evidence numbers."""

from __future__ import annotations

import random

import numpy as np
import pytest

from wormwatch.aggregate import Aggregator
from wormwatch.aggregate.export import take_events
from wormwatch.config import Config
from wormwatch.delta import Delta
from wormwatch.detect import evaluate
from wormwatch.dganx import COMBINED_READING
from wormwatch.model import KIND_ANSWER, KIND_DNS, KIND_SYN, Events, addr_words

from testkit import dgagen, dgahosts
from testkit.deltas import CLASSIFIER, assert_same_state, export, merged
from testkit.hoststates import RESOLVER, Host, scanner

CFG = Config()
DGA = "192.0.2.150"
DGA_SCANNER = "192.0.2.44"
BENIGN = ("192.0.2.160", "192.0.2.161", "192.0.2.162", "192.0.2.165")


def hosts() -> list[Host]:
    """Two infected clients (one also scans SMB) and benign NXDOMAIN habits."""
    scanning = dgahosts.dga_client("dictionary", addr=DGA_SCANNER, hours=2.0, seed=4)
    for t, dst, qtype, name, port in scanner(120, start=9.5).log:
        scanning.log.append((t, dst, qtype, name, port))
    return [
        dgahosts.browse(dgahosts.dga_client("conficker-c", addr=DGA, hours=2.0), 8.0, 3.0, 60),
        scanning,
        dgahosts.browser_startups(BENIGN[0], n_startups=4),
        dgahosts.search_expansion(BENIGN[1]),
        dgahosts.typing_mistakes(BENIGN[2]),
        # random CDN names under the list's private section: one domain per suffix
        dgahosts.ad_blocked_browser(BENIGN[3], hours=2.0, cdn_suffixes=dgagen.CDN_SUFFIXES),
    ]


def events_of(clients: list[Host]) -> Events:
    """The clients' queries, SYNs and the answers they received, in packet-time order."""
    rows = [
        (t, 0, h.addr, dst, KIND_DNS if port == 53 else KIND_SYN, port, qtype, name, 0)
        for h in clients
        for t, dst, qtype, name, port in h.log
    ] + [
        (t, 1, RESOLVER, h.addr, KIND_ANSWER, 1024, qtype, name, rcode)
        for h in clients
        for t, name, qtype, rcode in h.answer_log
    ]
    rows.sort(key=lambda r: (r[0], r[1]))
    ev = Events.allocate(len(rows), len(rows))
    for i, (t, _o, src, dst, kind, port, qtype, name, rcode) in enumerate(rows):
        ev.ts_us[i] = t
        ev.src_hi[i], ev.src_lo[i] = addr_words(src)
        ev.dst_hi[i], ev.dst_lo[i] = addr_words(dst)
        ev.kind[i], ev.dport[i], ev.qtype[i], ev.rcode[i] = kind, port, qtype, rcode
        ev.names[i, : len(name)] = np.frombuffer(name, np.uint8)
        ev.name_lens[i] = len(name)
    return ev


@pytest.fixture(scope="module")
def capture() -> Events:
    return events_of(hosts())


def aggregate(ev: Events, batch: int = 500) -> Aggregator:
    agg = Aggregator(bin_s=CFG.bin_s, window_s=CFG.window_s, max_hosts=1000)
    for lo in range(0, ev.n, batch):
        part = take_events(ev, np.arange(lo, min(ev.n, lo + batch)))
        agg.ingest(part, CLASSIFIER.classify(part))
    return agg


def verdicts(agg: Aggregator) -> dict[str, tuple[float, tuple[str, ...], dict[str, object]]]:
    states = agg.host_states(range(agg.n_hosts))
    return {
        st.addr: (v.score, v.verdicts, v.evidence)
        for st in states
        for v in [evaluate(st, CFG, now_us=agg.now_us)]
    }


def split_merge(ev: Events, owner: np.ndarray, n_sensors: int) -> Aggregator:
    deltas: list[Delta] = []
    for s in range(n_sensors):
        deltas += export(take_events(ev, np.nonzero(owner == s)[0]), f"s{s}", batch=400)
    random.Random(n_sensors).shuffle(deltas)
    agg, _ = merged(deltas)
    return agg


def test_queries_answers_and_scans_at_three_sensors_judge_as_one(capture: Events) -> None:
    kind = capture.kind[: capture.n]
    # queries at sensor 0, SYNs at sensor 1, the answers at sensor 2
    owner = np.where(kind == KIND_DNS, 0, np.where(kind == KIND_SYN, 1, 2))
    got = split_merge(capture, owner, 3)
    want = aggregate(capture)
    assert_same_state(want, got)
    wanted, merged_verdicts = verdicts(want), verdicts(got)
    assert merged_verdicts == wanted
    # and it is the test it means to be: dga-nx fires, with evidence, on the infected only
    assert wanted[DGA][1] == ("dga-nx",)
    assert set(wanted[DGA_SCANNER][1]) == {"dga-nx", "smb-scan"}
    evidence = merged_verdicts[DGA_SCANNER][2]["dga-nx"]
    assert isinstance(evidence, dict)
    assert evidence["with_smb_scan"] == COMBINED_READING
    assert evidence["nx_domains"] >= 400
    assert evidence["mean_name_score"] > 0
    assert len(evidence["sample_names"]) == 5
    assert all("dga-nx" not in wanted[a][1] for a in BENIGN)


def test_answers_split_between_sensors_packet_by_packet_judge_as_one(capture: Events) -> None:
    """The answers reach two sensors in turns, packet by packet (a packet broker's
    split): a domain both see (a typing mistake, then ``www.`` of it) counts once, in
    its earliest bin, with one score and one sample."""
    kind = capture.kind[: capture.n]
    owner = np.where(kind == KIND_ANSWER, 1 + np.cumsum(kind == KIND_ANSWER) % 2, 0)
    got = split_merge(capture, owner, 3)
    want = aggregate(capture)
    assert_same_state(want, got)
    assert verdicts(got) == verdicts(want)


def test_random_splits_judge_as_one(capture: Events) -> None:
    rnd = np.random.default_rng(5)
    owner = rnd.integers(0, 3, capture.n)
    got = split_merge(capture, owner, 3)
    want = aggregate(capture)
    assert_same_state(want, got)
    assert verdicts(got) == verdicts(want)
