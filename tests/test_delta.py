"""The delta API: per-bin exports of one capture's parts merge to the state
one aggregate reaches counting the whole capture (queries, SYNs and the DNS
answers dga-nx counts: NXDOMAIN names, registrable domains, their name scores
and samples). The merge's memory, and the exporter's, follow the aggregate's
window and limits while sensors stream for weeks (one-query spoofed sources bin
after bin, scanners that never stop), and what they forget changes no merged
result (evictions, late deltas within the window and past it, copies, a
central's re-read after a restart, bins opened again by late packets)."""

from __future__ import annotations

import dataclasses
import ipaddress
import random
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wormwatch.aggregate import Aggregator
from wormwatch.aggregate.export import (
    PARTS_PER_GENERATION,
    DeltaExporter,
    ExporterSizes,
    take_events,
)
from wormwatch.aggregate.merge import DeltaMerger
from wormwatch.config import Config
from wormwatch.delta import Delta, DeltaError, decode, encode, shard_of
from wormwatch.detect import evaluate
from wormwatch.kernels.counting import PEAK_KW_A, PEAK_KW_SHARE
from wormwatch.model import (
    C_ANSWERS,
    C_KW_A,
    C_KW_NAMES_NEW,
    C_MX_DOM_NEW,
    C_NAMES_NEW,
    C_NX_DOMS_NEW,
    C_NX_NAMES_NEW,
    C_NX_SCORE,
    C_QUERIES,
    C_SYN_DST_BIN,
    C_SYN_DST_NEW,
    KIND_ANSWER,
    KIND_DNS,
    KIND_SYN,
    Events,
    addr_words,
)

from testkit.deltas import BIN_S, CLASSIFIER, assert_same_state, export, merged
from testkit.events import Row, make_events

T0 = 1_700_000_000_000_000
HOSTS = [f"192.0.2.{i}" for i in range(1, 12)] + ["2001:db8::7", "2001:db8::8"]
TARGETS = [f"198.51.100.{i}" for i in range(1, 25)] + ["2001:db8:1::1"]
WORDS = ["mail", "mx1", "smtp", "www", "ns", "gateway", "relay2", "cdn", "nsa", "qq"]
RESOLVER = "192.0.2.53"
# registrable domains of the NXDOMAIN answers: several names share each one
NX_DOMAINS = ["qzxkvjwp.com", "bluehorse.net", "x9k2m7d1.co.uk", "aaaa.org", "kjhgf.info"]
NX_LABELS = ["", "www.", "mail.", "zq7."]


def _answer_name(rnd: random.Random) -> tuple[bytes, int, int]:
    """(name, qtype, rcode) of an answer: mostly NXDOMAIN for made-up names, some
    resolving, some other errors, reverse look-ups and search-domain expansions."""
    rcode = rnd.choice((3, 3, 3, 0, 0, 2))
    roll = rnd.random()
    if roll < 0.1:
        return b"7.2.0.192.in-addr.arpa", 12, rcode
    if roll < 0.2:
        return f"printer{rnd.randint(0, 3)}.campus.example".encode(), 1, rcode
    name = rnd.choice(NX_LABELS) + f"d{rnd.randint(0, 6)}" + rnd.choice(NX_DOMAINS)
    return name.encode(), rnd.choice((1, 1, 28, 15)), rcode


def capture(seed: int, n: int) -> Events:
    """``n`` events of a few hosts over several bins, packet time increasing:
    queries, SYNs and the DNS answers the hosts receive."""
    rnd = random.Random(seed)
    ev = Events.allocate(n, n)
    ts = T0
    for i in range(n):
        ts += rnd.randint(1, 7_000_000)
        ev.ts_us[i] = ts
        host = addr_words(rnd.choice(HOSTS))
        ev.src_hi[i], ev.src_lo[i] = host
        roll = rnd.random()
        if roll < 0.3:
            ev.dst_hi[i], ev.dst_lo[i] = addr_words(rnd.choice(TARGETS))
            ev.kind[i], ev.dport[i] = KIND_SYN, rnd.choice((135, 139, 445))
            continue
        if roll < 0.55:
            # an answer counts for the client it is sent to
            ev.src_hi[i], ev.src_lo[i] = addr_words(RESOLVER)
            ev.dst_hi[i], ev.dst_lo[i] = host
            name, qtype, rcode = _answer_name(rnd)
            ev.kind[i], ev.dport[i], ev.qtype[i], ev.rcode[i] = KIND_ANSWER, 1024, qtype, rcode
        else:
            ev.dst_hi[i], ev.dst_lo[i] = addr_words(RESOLVER)
            name = f"{rnd.choice(WORDS)}.ex{rnd.randint(0, 30)}.com".encode()
            ev.kind[i], ev.dport[i], ev.qtype[i] = KIND_DNS, 53, rnd.choice((1, 1, 28, 15, 12, 0))
        ev.names[i, : len(name)] = np.frombuffer(name, np.uint8)
        ev.name_lens[i] = len(name)
    return ev


def aggregate(
    ev: Events,
    batch: int = 50,
    allowlisted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
) -> Aggregator:
    agg = Aggregator(
        bin_s=BIN_S, max_hosts=1000, max_host_bins=10_000, max_keys=100_000, allowlisted=allowlisted
    )
    for lo in range(0, ev.n, batch):
        part = take_events(ev, np.arange(lo, min(ev.n, lo + batch)))
        agg.ingest(part, CLASSIFIER.classify(part))
    return agg


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_sensors=st.integers(1, 4),
    order_seed=st.integers(0, 10_000),
)
def test_random_splits_merge_to_the_whole(seed: int, n_sensors: int, order_seed: int) -> None:
    ev = capture(seed, 400)
    rnd = random.Random(seed + 1)
    owner = np.array([rnd.randrange(n_sensors) for _ in range(ev.n)])
    deltas: list[Delta] = []
    for s in range(n_sensors):
        deltas += export(take_events(ev, np.nonzero(owner == s)[0]), f"s{s}")
    # any arrival order: late bins of one sensor after later bins of another
    random.Random(order_seed).shuffle(deltas)
    agg, _merger = merged(deltas)
    whole = aggregate(ev)
    assert_same_state(whole, agg)
    _assert_peaks_bound_the_rows(agg)
    _assert_peaks_bound_the_rows(whole)


def _assert_peaks_bound_the_rows(agg: Aggregator) -> None:
    """Each host's peaks: its most keyword A queries in one bin row, and a
    keyword-A share at least that of each row (a merge sees a row's share only
    between deltas, a sensor after each query; each is at least the final)."""
    peaks = agg.peaks()
    for h, state in enumerate(agg.host_states(range(agg.n_hosts), with_prefixes=False)):
        kw_a, queries = state.series[:, C_KW_A], state.series[:, C_QUERIES]
        assert peaks[h, PEAK_KW_A] == kw_a.max(initial=0)
        assert peaks[h, PEAK_KW_SHARE] >= (kw_a / np.maximum(queries, 1)).max(initial=0.0)


def test_capture_a_then_b_equals_merging_both_exports() -> None:
    ev = capture(7, 600)
    half = ev.n // 2
    a, b = take_events(ev, np.arange(half)), take_events(ev, np.arange(half, ev.n))
    agg, _ = merged(export(a, "a") + export(b, "b"))
    assert_same_state(aggregate(ev), agg)


def test_allowlisted_hosts_stay_out_of_the_merged_network_series() -> None:
    """A central whose config allowlists a mail server (an IPv4 and an IPv6 host
    here) leaves their MX queries and SYNs out of the network-wide series, as
    one sensor counting the whole capture with that allowlist does."""
    ev = capture(5, 400)
    servers = [ipaddress.ip_network("192.0.2.3/32"), ipaddress.ip_network("2001:db8::7/128")]
    agg, _ = merged(export(ev, "s0"), allowlisted=servers)
    whole = aggregate(ev, allowlisted=servers)
    assert_same_state(whole, agg)
    everyone = aggregate(ev)
    left_out = everyone.network_series()[1].sum(axis=0) - agg.network_series()[1].sum(axis=0)
    assert left_out.min() > 0  # queries, MX queries and SYNs of the two servers


def test_the_same_export_twice_counts_once() -> None:
    ev = capture(3, 300)
    deltas = export(ev, "s0")
    again = export(ev, "s0")  # a restarted sensor re-reading its capture
    assert [d.key for d in again] == [d.key for d in deltas]
    assert [d.msg_id for d in again] == [d.msg_id for d in deltas]
    agg, merger = merged(deltas + again + deltas[:3])
    assert merger.n_duplicates == len(again) + 3
    assert_same_state(aggregate(ev), agg)


def test_a_copy_off_the_wire_is_the_same_delta() -> None:
    """What the broker redelivers, or a restarted central reads again from the
    stream, has the identity and message id the sensor gave it."""
    deltas = export(capture(9, 200), "s0")
    copies = [decode(encode(d)) for d in deltas]
    assert [d.key for d in copies] == [d.key for d in deltas]
    assert [d.msg_id for d in copies] == [d.msg_id for d in deltas]
    agg, merger = merged(deltas + copies)
    assert merger.n_duplicates == len(copies)
    assert_same_state(merged(deltas)[0], agg)


def test_a_sensor_restarted_within_a_bin_counts_all_of_it() -> None:
    """Two runs under one sensor name, the second starting in the bin the first
    ended in (a restart, or consecutive captures replayed one by one): the first
    run's last bin and the second's first have the same (sensor, shard, bin,
    part), but are different deltas; merged, they count what one run counts."""
    ev = capture(21, 400)
    cut = ev.n // 2
    bins = ev.ts_us[: ev.n] // (BIN_S * 1_000_000)
    assert bins[cut - 1] == bins[cut]
    first, second = take_events(ev, np.arange(cut)), take_events(ev, np.arange(cut, ev.n))
    a, b = export(first, "s0"), export(second, "s0")
    assert {d.ident for d in a} & {d.ident for d in b}
    assert not {d.msg_id for d in a} & {d.msg_id for d in b}
    agg, merger = merged(a + b)
    assert merger.n_duplicates == 0
    assert_same_state(aggregate(ev), agg)


def test_dns_at_one_sensor_and_syns_at_another() -> None:
    ev = capture(11, 500)
    dns = np.nonzero(ev.kind[: ev.n] != KIND_SYN)[0]
    syn = np.nonzero(ev.kind[: ev.n] == KIND_SYN)[0]
    agg, _ = merged(export(take_events(ev, syn), "syn") + export(take_events(ev, dns), "dns"))
    assert_same_state(aggregate(ev), agg)


def test_queries_at_one_sensor_and_their_answers_at_two_others() -> None:
    ev = capture(17, 800)
    kind = ev.kind[: ev.n]
    answers = np.nonzero(kind == KIND_ANSWER)[0]
    parts = [np.nonzero(kind != KIND_ANSWER)[0], answers[::2], answers[1::2]]
    deltas = [d for k, idx in enumerate(parts) for d in export(take_events(ev, idx), f"s{k}")]
    agg, _ = merged(deltas[::-1])
    want = aggregate(ev)
    assert_same_state(want, agg)
    t = want.totals()
    # the capture holds what is being tested: NXDOMAIN names and domains, scored
    assert t[:, C_ANSWERS].sum() > 100
    assert (t[:, C_NX_NAMES_NEW] > t[:, C_NX_DOMS_NEW]).any()
    assert t[:, C_NX_SCORE].sum() > 0
    assert any(st.sample_nx_names for st in want.host_states(range(want.n_hosts)))


def test_owned_networks_leave_out_the_rest() -> None:
    import ipaddress

    ev = capture(5, 300)
    exporter = DeltaExporter(sensor="s", bin_s=BIN_S, owned=[ipaddress.ip_network("192.0.2.0/29")])
    exporter.ingest(ev, CLASSIFIER.classify(ev))
    deltas = exporter.close_all()
    addrs = {(int(h), int(lo)) for d in deltas for h, lo in zip(d.hi, d.lo, strict=True)}
    assert addrs
    assert all(h == 0 and lo & 0xFF < 8 for h, lo in addrs)
    assert exporter.events_not_owned > 0


def test_bins_of_other_networks_traffic_alone_close_as_packet_time_passes() -> None:
    """Packet time moves on with every event, owned or not: bins that saw only
    other networks' traffic close (they stayed open to the end of the replay,
    a cell each, ~2 MB a bin)."""
    import ipaddress

    exporter = DeltaExporter(sensor="s", bin_s=BIN_S, owned=[ipaddress.ip_network("10.1.0.0/16")])
    closed = []
    for b in range(6):
        t = T0 + b * BIN_S * 1_000_000
        part = make_events(
            [(t + j, "10.2.0.5", RESOLVER, KIND_DNS, 53, 1, b"x.example") for j in range(3)]
        )
        exporter.ingest(part, CLASSIFIER.classify(part))
        closed += exporter.close_due()
    assert len(exporter.cells) <= 2
    assert {d.ident.bin for d in closed} >= {T0 // (BIN_S * 1_000_000) + b for b in range(4)}
    assert exporter.events_not_owned == 18


def test_shard_is_stable_and_spread() -> None:
    his = np.zeros(4096, np.uint64)
    los = np.arange(4096, dtype=np.uint64) | np.uint64(0xFFFF_0000_0000)
    shards = shard_of(his, los, 16)
    assert np.array_equal(shards, shard_of(his.copy(), los.copy(), 16))
    counts = np.bincount(shards, minlength=16)
    assert counts.min() > 150
    # fixed values: every sensor and every central must agree, across versions too
    words = [addr_words(a) for a in ("192.0.2.1", "2001:db8::1", "203.0.113.9")]
    his, los = (np.array(w, np.uint64) for w in zip(*words, strict=True))
    assert shard_of(his, los, 16).tolist() == [2, 6, 0]


@pytest.mark.parametrize("cut", [0, 3, 10, 30, -1])
def test_truncated_deltas_are_refused(cut: int) -> None:
    data = encode(export(capture(1, 100), "s")[0])
    with pytest.raises(DeltaError):
        decode(data[:cut] if cut >= 0 else data + b"x")


@pytest.mark.parametrize(
    ("change", "message"),
    [({"bin": -5}, "before the epoch"), ({"bin_s": 0}, "bins are 0 s long")],
)
def test_a_delta_outside_packet_time_is_refused(change: dict[str, int], message: str) -> None:
    """Decodable, but no bin of packet time: refused where it is decoded (a central
    merging a negative bin raised OverflowError)."""
    d = export(capture(1, 100), "s")[0]
    ident = dataclasses.replace(d.ident, bin=change.get("bin", d.ident.bin))
    bad = dataclasses.replace(d, ident=ident, bin_s=change.get("bin_s", d.bin_s))
    with pytest.raises(DeltaError, match=message):
        decode(encode(bad))


@pytest.mark.parametrize("col", ["target_host", "name_host", "prefix_host", "sample_host"])
def test_a_delta_referring_past_its_hosts_is_refused(col: str) -> None:
    """A host reference equal to the number of hosts carried (one past the last)
    is refused where the delta is decoded, not merged into another host's row."""
    d = next(d for d in export(capture(1, 100), "s") if getattr(d, col).shape[0])
    refs = getattr(d, col).copy()
    refs[-1] = d.n_hosts
    with pytest.raises(DeltaError, match="refers to a host it does not carry"):
        decode(encode(dataclasses.replace(d, **{col: refs})))


def test_merge_kernel_compiled_one_signature() -> None:
    from wormwatch.kernels import aggregate as agg_kernels

    test_capture_a_then_b_equals_merging_both_exports()
    assert len(agg_kernels.table_merge.signatures) == 1


def test_parts_fit_the_brokers_message_size_and_still_merge_exactly() -> None:
    ev = capture(13, 600)
    exporter = DeltaExporter(sensor="s", bin_s=BIN_S, n_shards=2, max_bytes=600)
    exporter.ingest(ev, CLASSIFIER.classify(ev))
    deltas = exporter.close_all()
    assert all(len(encode(d)) == d.nbytes() for d in deltas)
    assert all(d.nbytes() <= 600 or d.n_hosts == 1 for d in deltas)
    assert max(d.ident.part for d in deltas) > 0
    agg, _ = merged(deltas)
    assert_same_state(aggregate(ev), agg)


def test_a_bin_with_more_hosts_than_a_cell_holds_keeps_its_samples_times() -> None:
    """A flood of one-query sources in one bin makes the cell evict hosts; the
    samples' first-seen times follow their hosts (the export raised ValueError)."""
    rows = [
        (T0 + 1000 * k + j, f"192.0.2.{k}", RESOLVER, KIND_DNS, 53, 1, f"b{k}-{j}.example".encode())
        for k in range(40)
        for j in range(5)
    ]
    rows += [
        (T0 + 100_000 + k, f"203.0.113.{k}", RESOLVER, KIND_DNS, 53, 1, f"o{k}.example".encode())
        for k in range(100)
    ]
    rows.sort()
    first_us = {name: t for t, *_, name in reversed(rows)}
    exporter = DeltaExporter(sensor="s", bin_s=BIN_S, n_shards=4, max_hosts=64)
    for lo in range(0, len(rows), 16):
        part = make_events(rows[lo : lo + 16])
        exporter.ingest(part, CLASSIFIER.classify(part))
    assert sum(c.agg.counts().hosts_evicted for c in exporter.cells.values()) > 0
    deltas = exporter.close_all()
    samples = [
        (name, t)
        for d in deltas
        for name, t in zip(d.sample_names(), d.sample_us.tolist(), strict=True)
    ]
    assert len(samples) >= 60
    assert all(t == first_us[name] for name, t in samples)


def test_a_quiet_live_link_still_closes_its_bins() -> None:
    ev = take_events(capture(2, 40), np.arange(3))
    exporter = DeltaExporter(sensor="s", bin_s=BIN_S, n_shards=2)
    exporter.ingest(ev, CLASSIFIER.classify(ev))
    assert exporter.close_due() == []
    last_bin = int(ev.ts_us[: ev.n].max()) // (BIN_S * 1_000_000)
    exporter.advance((last_bin + 1) * BIN_S * 1_000_000 + 2_000_000)
    closed = exporter.close_due()
    assert {d.ident.bin for d in closed} == set((ev.ts_us[: ev.n] // (BIN_S * 1_000_000)).tolist())
    assert exporter.cells == {}


def as_version_1(d: Delta) -> bytes:
    """``d`` as a sensor before version 2 sent it: no domains table, no sample
    domain offsets (the columns version 2 appended)."""
    data = encode(d)
    tail = 4 * 4 + sum(
        int(a.nbytes) for a in (d.domain_host, d.domain_hash, d.domain_score, d.sample_reg)
    )
    return b"WWD1" + data[4 : len(data) - tail]


def test_version_1_deltas_still_merge() -> None:
    ev = capture(19, 500)
    queries_and_syns = take_events(ev, np.nonzero(ev.kind[: ev.n] != KIND_ANSWER)[0])
    old = [decode(as_version_1(d)) for d in export(queries_and_syns, "old")]
    assert all(d.domain_host.shape[0] == 0 for d in old)
    agg, _ = merged(old)
    assert_same_state(aggregate(queries_and_syns), agg)
    # with answers: the counts and NXDOMAIN names merge, the domains are not in it
    agg, _ = merged([decode(as_version_1(d)) for d in export(ev, "old")])
    want = aggregate(ev)
    ids = [agg.find(*want.address(h)) for h in range(want.n_hosts)]
    cols = [C_ANSWERS, C_NX_NAMES_NEW]
    np.testing.assert_array_equal(agg.totals()[ids][:, cols], want.totals()[:, cols])
    assert agg.totals()[:, C_NX_DOMS_NEW].sum() == 0


def test_version_2_deltas_count_every_new_name_as_a_keyword_name() -> None:
    # a sensor before WWD3 sends no keyword names (salt 4): keyword-storm then counts
    # every new name, as it did before; all else merges as from a new sensor
    ev = capture(23, 600)
    want = aggregate(ev)
    agg = Aggregator(bin_s=BIN_S, max_hosts=1000, max_host_bins=10_000, max_keys=100_000)
    merger = DeltaMerger(agg)
    for d in export(ev, "old"):
        k = d.name_salt != 4
        old = dataclasses.replace(
            d, name_host=d.name_host[k], name_hash=d.name_hash[k], name_salt=d.name_salt[k]
        )
        merger.apply(decode(b"WWD2" + encode(old)[4:]))
    ids = [agg.find(*want.address(h)) for h in range(want.n_hosts)]
    got = agg.totals()[ids]
    np.testing.assert_array_equal(got[:, C_KW_NAMES_NEW], want.totals()[:, C_NAMES_NEW])
    assert 0 < want.totals()[:, C_KW_NAMES_NEW].sum() < want.totals()[:, C_NAMES_NEW].sum()
    others = [c for c in range(want.totals().shape[1]) if c != C_KW_NAMES_NEW]
    np.testing.assert_array_equal(got[:, others], want.totals()[:, others])
    # the same deltas as sent now merge to the one aggregate
    assert_same_state(want, merged(export(ev, "new"))[0])


# -- memory: bounded by the aggregate's limits however long the run, exact within the window


T_BIN0 = 1_700_000_040_000_000  # a bin start
BIN_US = BIN_S * 1_000_000
WINDOW_BINS = 10
MAX_HOSTS = 64
# the streams' window: 5 bins
STREAM_WINDOW_BINS = 5
LIMITS = {"window_s": WINDOW_BINS * BIN_S, "max_hosts": MAX_HOSTS}
SCANNERS = ["10.9.0.1", "10.9.0.2", "10.9.0.3", "10.9.0.4"]
SCAN_TARGETS = [f"198.51.100.{i}" for i in range(1, 26)]


def _spoofed(b: int, n: int, t: int) -> list[Row]:
    """``n`` one-query sources of bin ``b``, each address new."""
    return [
        (t + j, f"10.{100 + b // 250}.{b % 250}.{j}", RESOLVER, KIND_DNS, 53, 1, b"q%d.ex" % j)
        for j in range(n)
    ]  # fmt: skip


def _scans(b: int, t: int, hosts: list[str]) -> list[Row]:
    """SMB SYNs of ``hosts`` to the same 25 targets, every bin."""
    return [
        (t + 10 * k + i, host, target, KIND_SYN, 445, 0, b"")
        for k, host in enumerate(hosts)
        for i, target in enumerate(SCAN_TARGETS)
    ]


def _applied(merger: DeltaMerger, deltas: list[Delta]) -> None:
    for d in deltas:
        merger.apply(decode(encode(d)))


def _stream(n_bins: int, per_bin: int, max_keys: int) -> tuple[DeltaMerger, dict[str, int]]:
    """The scanners at one sensor, ``per_bin`` new one-query sources a bin at
    another, merged bin after bin; the merger, and the most it held of each kind."""
    agg = Aggregator(
        bin_s=BIN_S,
        window_s=STREAM_WINDOW_BINS * BIN_S,
        max_hosts=MAX_HOSTS,
        max_host_bins=4096,
        max_keys=max_keys,
    )
    merger = DeltaMerger(agg)
    flood = DeltaExporter(sensor="edge", n_shards=4)
    scans = DeltaExporter(sensor="core", n_shards=4)
    most = {"n_identities": 0, "n_sample_lists": 0, "n_bin_targets": 0}
    for b in range(n_bins):
        t = T_BIN0 + b * BIN_US
        for exporter, rows in ((flood, _spoofed(b, per_bin, t)), (scans, _scans(b, t, SCANNERS))):
            ev = make_events(rows)
            exporter.ingest(ev, CLASSIFIER.classify(ev))
        _applied(merger, flood.close_due() + scans.close_due())
        sizes = merger.sizes()
        most = {name: max(n, getattr(sizes, name)) for name, n in most.items()}
    return merger, most


def test_merge_memory_stays_bounded_while_spoofed_sources_stream_in() -> None:
    merger, most = _stream(60, 200, 100_000)
    assert merger.agg.counts().hosts_evicted > 10 * MAX_HOSTS
    # sample times of tracked hosts only (was one list per address ever seen: 7,431 here)
    assert most["n_sample_lists"] <= MAX_HOSTS
    # identities of the window's bins, 2 sensors x 4 shards x 1 part a bin (was 8 a bin
    # ever: 464), and one span per (sensor, shard, part) for the bins before
    assert most["n_identities"] <= (STREAM_WINDOW_BINS + 1) * 2 * 4
    assert merger.sizes().n_spans == 2 * 4
    # (host, bin, target) keys of the window's bins (100 a bin), with room for as many
    # again before the next prune: under 4 windows' worth (was 100 a bin ever: 5,800)
    window_keys = (STREAM_WINDOW_BINS + 1) * len(SCANNERS) * len(SCAN_TARGETS)
    assert most["n_bin_targets"] <= 4 * window_keys


def test_per_bin_targets_still_count_after_a_run_of_more_keys_than_the_table_holds() -> None:
    # 4 scanners x 25 targets a bin: 4,000 (host, bin, target) keys in 40 bins, 1,000 fit
    merger, _most = _stream(40, 0, 1000)
    assert merger.agg.counts().keys_refused == 0
    agg = merger.agg
    for state in agg.host_states(range(agg.n_hosts), with_prefixes=False):
        # every bin of the window still counts its 25 distinct targets (was 0 from
        # the 10th bin on, the table full)
        assert (state.series[:, C_SYN_DST_BIN] == len(SCAN_TARGETS)).all(), state.addr


def _capture(n_bins: int) -> dict[str, list[Row]]:
    """Per sensor, a capture of ``n_bins`` bins: at "edge" a 40-source flood a bin,
    two busy hosts, and a host with one query in bin 0 (evicted by the flood) that
    comes back in the last bin with another name and that one again; at "core" two
    scanners; at "site" (whose deltas all arrive late) a mail-sending scanner."""
    rows: dict[str, list[Row]] = {"edge": [], "core": [], "site": []}
    for b in range(n_bins):
        t = T_BIN0 + b * BIN_US
        edge = rows["edge"]
        edge += _spoofed(b, 40, t + 1000)
        for k, host in enumerate(("10.1.0.1", "10.1.0.2")):
            edge += [
                (t + 2000 + 40 * i + k, host, RESOLVER, KIND_DNS, 53, 1, b"www.n%d.ex" % (i % 7))
                for i in range(8)
            ]  # fmt: skip
        if b in (0, n_bins - 1):
            names = [b"first.example"] if b == 0 else [b"second.example", b"first.example"]
            edge += [
                (t + 5000 + i, "10.1.0.9", RESOLVER, KIND_DNS, 53, 1, name)
                for i, name in enumerate(names)
            ]  # fmt: skip
        rows["core"] += _scans(b, t + 3000, SCANNERS[:2])
        rows["site"] += _scans(b, t + 4000, ["172.16.0.5"])
        rows["site"] += [
            (t + 4500 + i, "172.16.0.5", RESOLVER, KIND_DNS, 53, 15, b"mx%d.d%d.example" % (i, b))
            for i in range(3)
        ]  # fmt: skip
    return rows


def _whole(rows: dict[str, list[Row]], **limits: int) -> Aggregator:
    """One aggregate (``limits``: its keyword arguments beyond the defaults here)
    counting every sensor's events in time order."""
    agg = Aggregator(bin_s=BIN_S, **{"max_host_bins": 10_000, "max_keys": 100_000, **limits})
    ev = make_events(sorted(row for sensor_rows in rows.values() for row in sensor_rows))
    # batches of a few events: a flood's new hosts always find room, as a shard's few
    # in a delta do in the merge
    for lo in range(0, ev.n, 8):
        part = take_events(ev, np.arange(lo, min(ev.n, lo + 8)))
        agg.ingest(part, CLASSIFIER.classify(part))
    return agg


def test_merge_equals_one_aggregate_with_evictions_and_late_deltas() -> None:
    n_bins = 16
    rows = _capture(n_bins)
    # the sensors forget what they sent a host that took no samples for a window
    window = {"window_s": LIMITS["window_s"]}
    out = {sensor: export(make_events(r), sensor, **window) for sensor, r in rows.items()}
    # "core" bins 3-4 arrive after bin 9 (late, within the window); all of "site" after
    # bin 15 (bins 0-5 then older than the window: lifetime totals only)
    late = [d for d in out["core"] if d.ident.bin in (3, 4)]
    late_ids = {d.ident for d in late}
    on_time = sorted(
        (d for d in out["edge"] + out["core"] if d.ident not in late_ids),
        key=lambda d: d.ident.bin,
    )
    split = next(k for k, d in enumerate(on_time) if d.ident.bin > 9)
    order = on_time[:split] + late + on_time[split:] + out["site"]
    agg, merger = merged(order, **LIMITS)
    # every delta was new: the late site's bins before the window were merged too
    assert merger.n_duplicates == merger.applied.n_expired == 0
    whole = _whole(rows, **LIMITS)
    assert whole.counts().events_dropped == agg.counts().events_dropped == 0
    assert whole.counts().hosts_evicted > 0
    assert agg.counts().hosts_evicted > 0
    keep = ["10.1.0.1", "10.1.0.2", "10.1.0.9", *SCANNERS[:2], "172.16.0.5"]
    # the returning host's samples are those of its new events, "first.example" among
    # them (the sensor, which had sent it 15 bins before and kept that for good, did
    # not send it again)
    assert_same_state(whole, agg, addrs=keep)
    assert merger.sizes().n_sample_lists <= MAX_HOSTS
    # every copy again (a sensor re-reading its capture), after the window moved on:
    # those of bins before the window are in their senders' spans
    _applied(merger, order)
    assert merger.n_duplicates + merger.applied.n_expired == len(order)
    assert merger.applied.n_expired > 0
    assert_same_state(whole, agg, addrs=keep)
    # a restarted central: every retained delta in bin order, then what its durable
    # consumer had not acknowledged comes again (the site's, bins 0-5 before the window)
    again, restarted = merged(sorted(order, key=lambda d: d.ident.bin), **LIMITS)
    _applied(restarted, out["site"])
    assert restarted.n_duplicates + restarted.applied.n_expired == len(out["site"])
    assert restarted.applied.n_expired > 0
    assert_same_state(whole, again, addrs=keep)


# -- the sensor's memory: bounded by its window and limits however long the run


def _steady_and_spoofed(n_bins: int) -> list[list[Row]]:
    """Per bin: 200 new one-query sources, two hosts asking 7 names again and again,
    and a host asking one name in bin 0 and that again with another in bin 30."""
    per_bin = []
    for b in range(n_bins):
        t = T_BIN0 + b * BIN_US
        rows = _spoofed(b, 200, t + 1000)
        for k, host in enumerate(("10.1.0.1", "10.1.0.2")):
            rows += [
                (t + 2000 + 40 * i + k, host, RESOLVER, KIND_DNS, 53, 1, b"www.n%d.ex" % (i % 7))
                for i in range(8)
            ]  # fmt: skip
        names = {0: [b"first.example"], 30: [b"second.example", b"first.example"]}
        rows += [
            (t + 5000 + i, "10.1.0.9", RESOLVER, KIND_DNS, 53, 1, name)
            for i, name in enumerate(names.get(b, []))
        ]  # fmt: skip
        per_bin.append(rows)
    return per_bin


def _exported(
    exporter: DeltaExporter, per_bin: list[list[Row]]
) -> tuple[list[Delta], ExporterSizes]:
    """The bins through ``exporter`` one after the other, closed as packet time
    passes; the deltas, and the most the exporter kept of each kind."""
    deltas: list[Delta] = []
    most = ExporterSizes(0, 0)
    for rows in per_bin:
        ev = make_events(rows)
        exporter.ingest(ev, CLASSIFIER.classify(ev))
        deltas += exporter.close_due()
        sizes = exporter.sizes()
        most = ExporterSizes(
            max(most.n_sent_hosts, sizes.n_sent_hosts), max(most.n_generations, sizes.n_generations)
        )
    return deltas + exporter.close_all(), most


@pytest.mark.parametrize("max_hosts", [100_000, 256])
def test_export_memory_stays_bounded_while_spoofed_sources_stream_in(max_hosts: int) -> None:
    n_bins, window_s = 40, STREAM_WINDOW_BINS * BIN_S
    per_bin = _steady_and_spoofed(n_bins)
    exporter = DeltaExporter(sensor="edge", n_shards=4, max_hosts=max_hosts, window_s=window_s)
    deltas, most = _exported(exporter, per_bin)
    # sent names of the hosts with samples in the window's bins (203 a bin at most),
    # at most max_hosts (was one set per host and kind ever: 7,603 by the last bin)
    assert most.n_sent_hosts <= min(max_hosts, STREAM_WINDOW_BINS * 203)
    # closes counted for the window's bins (was one per bin closed: 38)
    assert most.n_generations <= STREAM_WINDOW_BINS
    # a host seen every bin still sends its names once (5 of its 7), not every bin
    sent = dict.fromkeys(("10.1.0.1", "10.1.0.2", "10.1.0.9"), 0)
    by_words = {addr_words(addr): addr for addr in sent}
    for d in deltas:
        for row in d.sample_host.tolist():
            addr = by_words.get((int(d.hi[row]), int(d.lo[row])))
            if addr is not None:
                sent[addr] += 1
    assert sent["10.1.0.1"] == sent["10.1.0.2"] == 5
    # the quiet host's name again in bin 30 (forgotten after a window): the merge
    # keeps its first sighting, and the state is one aggregate's of all the events
    assert sent["10.1.0.9"] == 3
    limits = {"window_s": window_s, "max_hosts": 10_000}
    agg, merger = merged(deltas, **limits)
    whole = _whole({"edge": [row for rows in per_bin for row in rows]}, **limits)
    assert whole.counts().hosts_evicted == agg.counts().hosts_evicted == 0
    assert merger.n_duplicates == 0
    assert_same_state(whole, agg)


def test_a_bin_opened_again_never_reuses_a_part_number() -> None:
    """Late SYNs open closed bins again, 3 bins late (in the sensor's 3-bin window)
    and 6 bins late (before it, its closes forgotten; bin 3 the second time): their
    parts go on after every earlier part of the bin, so no id comes twice in the
    run, and merged they count what one aggregate counts."""
    window_bins, n_bins = 3, 12
    exporter = DeltaExporter(sensor="s", n_shards=2, window_s=window_bins * BIN_S)
    arrivals: list[Row] = []
    deltas: list[Delta] = []
    for b in range(n_bins):
        t = T_BIN0 + b * BIN_US
        rows = [(t + 1000, "10.1.0.1", RESOLVER, KIND_DNS, 53, 1, b"www.n%d.ex" % b)]
        if b in (6, 9, 11):
            rows += [
                (t - late * BIN_US + 2000, f"10.2.{late}.{b}", TARGETS[0], KIND_SYN, 445, 0, b"")
                for late in (3, 6)
            ]  # fmt: skip
        arrivals += rows
        ev = make_events(rows)
        exporter.ingest(ev, CLASSIFIER.classify(ev))
        deltas += exporter.close_due()
        # (was one per bin closed: 10 by the last bin)
        assert exporter.sizes().n_generations <= window_bins + 1
    deltas += exporter.close_all()
    bin0 = T_BIN0 // BIN_US
    reopened = {d.ident.bin - bin0 for d in deltas if d.ident.part >= PARTS_PER_GENERATION}
    assert reopened == {0, 3, 5, 6, 8}
    assert len({d.ident for d in deltas}) == len(deltas)
    limits = {"window_s": 20 * BIN_S}
    agg, merger = merged(deltas, **limits)
    assert merger.n_duplicates == merger.applied.n_expired == 0
    assert_same_state(_whole({"s": arrivals}, **limits), agg)


# -- full distinct-set tables: the merge drops the keys last seen before the window

BUSY, MAILER, SCANNER = "10.1.0.1", "10.1.0.2", "10.1.0.3"


def _busy_then_new(n_bins: int) -> list[list[Row]]:
    """Per bin: a busy host's one name and one SMB target again; three bins before
    the last also its 100 other names and 100 other targets (more than 64-key tables
    hold); in the last bin a mass mailer's MX queries for 25 domains and a scanner's
    40 targets."""
    per_bin = []
    for b in range(n_bins):
        t = T_BIN0 + b * BIN_US
        rows: list[Row] = [
            (t + 1, BUSY, RESOLVER, KIND_DNS, 53, 1, b"keep.example"),
            (t + 2, BUSY, "198.51.100.200", KIND_SYN, 445, 0, b""),
        ]
        if b == n_bins - 3:
            rows += [
                (t + 10 + i, BUSY, RESOLVER, KIND_DNS, 53, 1, b"n%d.example" % i)
                for i in range(100)
            ]
            rows += [
                (t + 200 + i, BUSY, f"203.0.113.{i}", KIND_SYN, 445, 0, b"") for i in range(100)
            ]
        if b == n_bins - 1:
            rows += [
                (t + 10 + i, MAILER, RESOLVER, KIND_DNS, 53, 15, b"d%d.example" % i)
                for i in range(25)
            ]
            rows += [
                (t + 200 + i, SCANNER, f"198.51.100.{i}", KIND_SYN, 445, 0, b"") for i in range(40)
            ]
        per_bin.append(rows)
    return per_bin


def test_a_central_whose_key_tables_filled_still_flags_new_scanners_and_mailers() -> None:
    # 64-key tables filled by the busy host: a full table refused every new key, so
    # past the window the mailer's 25 MX domains and the scanner's 40 targets counted
    # 0 as new and neither was flagged (the central was blind until restarted)
    n_bins, window_s = 12, 2 * BIN_S
    per_bin = _busy_then_new(n_bins)
    exporter = DeltaExporter(sensor="edge", n_shards=4, window_s=window_s)
    deltas, _most = _exported(exporter, per_bin)
    limits = {"window_s": window_s, "max_keys": 64}
    agg, _merger = merged(deltas, **limits)
    assert agg.counts().keys_dropped > 0
    ids = [agg.find(*addr_words(a)) for a in (BUSY, MAILER, SCANNER)]
    busy, mailer, scanner = agg.host_states(ids, with_prefixes=False)
    assert int(mailer.totals[C_MX_DOM_NEW]) == 25
    assert int(scanner.totals[C_SYN_DST_NEW]) == 40
    now = T_BIN0 + n_bins * BIN_US
    assert evaluate(mailer, Config(), now_us=now).verdicts == ("mx-client",)
    assert evaluate(scanner, Config(), now_us=now).verdicts == ("smb-scan",)
    # the busy host's name and target, seen in every bin since bin 0, stay known: the
    # tables drop by the latest bin a key was seen in (by the first, both came back as
    # new in the window)
    assert (busy.bins - T_BIN0 // BIN_US).tolist() == [n_bins - 2, n_bins - 1]
    assert not busy.series[:, [C_NAMES_NEW, C_SYN_DST_NEW]].any()
    # as one aggregate counting every event finds them
    whole = _whole({"edge": [row for rows in per_bin for row in rows]}, **limits)
    assert_same_state(whole, agg, addrs=[MAILER, SCANNER])


STORMER = "10.1.0.4"


def test_a_central_whose_prefix_table_filled_still_counts_a_later_storms_prefixes() -> None:
    # the merged name-prefix table was never pruned: filled by the busy host's 64
    # prefixes, it refused the storm's prefixes, so the storm had no top prefixes and no
    # keyword weight (mail weighs 2 here: its share 0.4 reads 0.8, and it fires)
    n_bins, window_s = 14, 7 * BIN_S
    per_bin = []
    for b in range(n_bins):
        t = T_BIN0 + b * BIN_US
        rows: list[Row] = [(t + 1, BUSY, RESOLVER, KIND_DNS, 53, 1, b"keep.example")]
        if b == 0:
            rows += [
                (t + 10 + i, BUSY, RESOLVER, KIND_DNS, 53, 1, b"n%d.example" % i) for i in range(63)
            ]
        if b >= n_bins - 6:
            rows += [
                (t + 200 + i, STORMER, RESOLVER, KIND_DNS, 53, 1, b"mail%d.example" % (20 * b + i))
                for i in range(20)
            ]
            rows += [
                (t + 300 + i, STORMER, RESOLVER, KIND_DNS, 53, 1, b"www.example") for i in range(30)
            ]
        per_bin.append(rows)
    exporter = DeltaExporter(sensor="edge", n_shards=4, window_s=window_s)
    deltas, _most = _exported(exporter, per_bin)
    limits = {"window_s": window_s, "max_keys": 64}
    agg, _merger = merged(deltas, **limits)
    assert agg.counts().keys_dropped > 0
    busy, storm = agg.host_states([agg.find(*addr_words(a)) for a in (BUSY, STORMER)])
    assert storm.prefixes[b"mail"] == 120
    # the busy host's prefix asked in every bin stays, with its count since bin 0
    assert busy.prefixes[b"keep."] == n_bins
    assert b"n0.ex" not in busy.prefixes
    cfg = Config(keyword_weights={"mail": 2.0})
    assert evaluate(storm, cfg, now_us=T_BIN0 + n_bins * BIN_US).verdicts == ("keyword-storm",)
    # as one aggregate counting every event finds them (the prefixes only: the storm's
    # 120 names overfill the 64-key names table, which a sensor and a central fill in
    # another order)
    whole = _whole({"edge": [row for rows in per_bin for row in rows]}, **limits)
    (whole_storm,) = whole.host_states([whole.find(*addr_words(STORMER))])
    assert whole_storm.prefixes == storm.prefixes
