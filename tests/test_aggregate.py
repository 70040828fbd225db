"""Classify and aggregate kernels against slow, obvious Python references."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import numpy as np
import numpy.typing as npt
import pytest

from wormwatch.aggregate import Aggregator
from wormwatch.classify import Classifier
from wormwatch.config import Config
from wormwatch.detect import evaluate
from wormwatch.kernels import aggregate as agg_kernels
from wormwatch.kernels import classify as cls_kernels
from wormwatch.kernels import counting as count_kernels
from wormwatch.kernels.counting import PEAK_KW_A, PEAK_KW_SHARE
from wormwatch.model import (
    C_A,
    C_AAAA,
    C_KW,
    C_KW_A,
    C_KW_NAMES_NEW,
    C_MX,
    C_MX_DOM_NEW,
    C_NAMES_NEW,
    C_OTHER,
    C_PTR,
    C_QUERIES,
    C_SYN135,
    C_SYN139,
    C_SYN445,
    C_SYN_DST_BIN,
    C_SYN_DST_NEW,
    KIND_DNS,
    KIND_SYN,
    N_COUNTERS,
    addr_words,
)
from wormwatch.tables import KeyTable

from testkit.events import Row, make_events

KEYWORDS = ("mail", "smtp", "mx", "ns", "gate", "relay")


def random_rows(seed: int, n: int) -> list[Row]:
    rnd = random.Random(seed)
    hosts = [f"192.0.2.{i}" for i in range(1, 30)] + [f"2001:db8::{i:x}" for i in range(1, 10)]
    targets = [f"198.51.100.{i}" for i in range(1, 60)]
    words = ["mail", "mx1", "smtp", "www", "ns", "gateway", "relay2", "cdn", "Mail", "nsa"]
    rows = []
    ts = 1_700_000_000_000_000
    for _ in range(n):
        # packet time mostly forward, sometimes backwards (ppa_blaster.pcap does that)
        ts += rnd.randint(-2_000_000, 9_000_000)
        src = rnd.choice(hosts)
        if rnd.random() < 0.3:
            rows.append(
                (ts, src, rnd.choice(targets), KIND_SYN, rnd.choice((135, 139, 445)), 0, b"")
            )
            continue
        label = rnd.choice(words).lower()
        name = f"{label}.example{rnd.randint(0, 40)}.com".encode() if rnd.random() > 0.05 else b""
        qtype = rnd.choice((1, 1, 1, 28, 15, 12, 16, 0))
        rows.append((ts, src, "192.0.2.53", KIND_DNS, 53, qtype, name))
    return rows


def reference(
    rows: list[Row], bin_s: int
) -> tuple[dict[str, list[int]], dict[tuple[str, int], list[int]]]:
    """Per-host totals and per-(host, bin) counters, the obvious way."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0] * N_COUNTERS)
    bins: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0] * N_COUNTERS)
    last_pair_bin: dict[tuple[str, str], int] = {}
    seen_names: dict[tuple[str, bytes], int] = {}
    seen_mx: set[tuple[str, bytes]] = set()
    qcol = {1: C_A, 28: C_AAAA, 15: C_MX, 12: C_PTR}
    pcol = {135: C_SYN135, 139: C_SYN139, 445: C_SYN445}
    for ts, src, dst, kind, dport, qtype, name in rows:
        b = ts // (bin_s * 1_000_000)
        cols = []
        if kind == KIND_SYN:
            cols.append(pcol[dport])
            key = (src, dst)
            if key not in last_pair_bin:
                cols += [C_SYN_DST_NEW, C_SYN_DST_BIN]
            elif last_pair_bin[key] != b:
                cols.append(C_SYN_DST_BIN)
            last_pair_bin[key] = b
        else:
            cols += [C_QUERIES, qcol.get(qtype, C_OTHER)]
            keyword = any(name.startswith(k.encode()) for k in KEYWORDS)
            if keyword:
                cols.append(C_KW)
                if qtype == 1:
                    cols.append(C_KW_A)
            if name:
                if (src, name) not in seen_names:
                    cols.append(C_NAMES_NEW)
                    if keyword:
                        cols.append(C_KW_NAMES_NEW)
                seen_names[(src, name)] = b
                if qtype == 15 and (src, name) not in seen_mx:
                    seen_mx.add((src, name))
                    cols.append(C_MX_DOM_NEW)
        for c in cols:
            totals[src][c] += 1
            bins[(src, b)][c] += 1
    return dict(totals), dict(bins)


def reference_peaks(rows: list[Row], bin_s: int) -> dict[str, tuple[int, float]]:
    """Per host: the most keyword A queries in one bin, and the highest
    keyword-A share of a bin's queries right after each keyword A query."""
    counts: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    peaks: dict[str, tuple[int, float]] = {}
    for ts, src, _dst, kind, _dport, qtype, name in rows:
        if kind != KIND_DNS:
            continue
        c = counts[(src, ts // (bin_s * 1_000_000))]
        c[0] += 1
        if qtype == 1 and any(name.startswith(k.encode()) for k in KEYWORDS):
            c[1] += 1
            kw, share = peaks.get(src, (0, 0.0))
            peaks[src] = (max(kw, c[1]), max(share, c[1] / c[0]))
    return peaks


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_aggregate_matches_reference(seed: int) -> None:
    rows = random_rows(seed, 3000)
    agg = Aggregator(bin_s=60, window_s=10**9, n_samples=3)
    classifier = Classifier(KEYWORDS)
    # several batches, so state carries across calls
    for lo in range(0, len(rows), 700):
        ev = make_events(rows[lo : lo + 700])
        agg.ingest(ev, classifier.classify(ev))
    want_totals, want_bins = reference(rows, 60)
    states = agg.host_states(range(agg.n_hosts))
    assert {s.addr: s.totals.tolist() for s in states} == want_totals
    got_bins = {
        (s.addr, int(b)): row.tolist()
        for s in states
        for b, row in zip(s.bins, s.series, strict=True)
    }
    assert got_bins == want_bins
    want_peaks = reference_peaks(rows, 60)
    peaks = agg.peaks()
    got_peaks = {
        s.addr: (int(peaks[h, PEAK_KW_A]), float(peaks[h, PEAK_KW_SHARE]))
        for h, s in enumerate(states)
    }
    assert got_peaks == {s.addr: want_peaks.get(s.addr, (0, 0.0)) for s in states}
    for s in states:
        mine = [r for r in rows if r[1] == s.addr]
        assert s.first_seen_us == min(r[0] for r in mine)
        assert s.last_seen_us == max(r[0] for r in mine)
        names = [r[6] for r in mine if r[3] == KIND_DNS and r[6]]
        assert s.sample_names == list(dict.fromkeys(names))[:3]
        want_prefixes = Counter(n[:k] for n in names for k in range(1, 6) if len(n) >= k)
        assert s.prefixes == dict(want_prefixes)


def test_host_states_read_prefixes_only_for_the_hosts_a_mask_picks() -> None:
    rows = random_rows(4, 600)
    agg = Aggregator(bin_s=60, window_s=10**9)
    ev = make_events(rows)
    agg.ingest(ev, Classifier(KEYWORDS).classify(ev))
    ids = np.arange(agg.n_hosts, dtype=np.int64)
    full = agg.host_states(ids)
    pick = ids % 2 == 0
    picked = agg.host_states(ids, with_prefixes=pick)
    assert any(s.prefixes for s in full)
    for s_full, s_picked, wanted in zip(full, picked, pick.tolist(), strict=True):
        assert s_picked.prefixes == (s_full.prefixes if wanted else {})
        assert s_picked.totals.tolist() == s_full.totals.tolist()
        assert s_picked.series.tolist() == s_full.series.tolist()
    assert all(not s.prefixes for s in agg.host_states(ids, with_prefixes=False))


def test_peaks_follow_their_hosts_through_an_eviction() -> None:
    """A keyword host keeps its peaks under its new id when a flood of new
    hosts evicts others; the hosts that take the freed ids start from none."""
    storm = [(i * 1_000_000, "192.0.2.7", "192.0.2.53", KIND_DNS, 53, 1, b"mail%d.example" % i)
             for i in range(12)]  # fmt: skip
    quiet = [(20_000_000 + i, f"192.0.2.{100 + i}", "192.0.2.53", KIND_DNS, 53, 1, b"a.b")
             for i in range(3)]  # fmt: skip
    agg = Aggregator(max_hosts=4)
    for rows in (quiet, storm):
        ev = make_events(rows)
        agg.ingest(ev, Classifier(KEYWORDS).classify(ev))
    flood = [(30_000_000 + i, f"198.51.100.{i}", "192.0.2.53", KIND_DNS, 53, 1, b"a.b")
             for i in range(6)]  # fmt: skip
    ev = make_events(flood)
    assert agg.ingest(ev, Classifier(KEYWORDS).classify(ev)) is not None
    h = agg.find(*addr_words("192.0.2.7"))
    assert h is not None
    assert agg.peaks()[h].tolist() == [12.0, 1.0]
    others = np.arange(agg.n_hosts) != h
    assert not agg.peaks()[others].any()


def test_host_limit_drops_and_counts() -> None:
    rows = [(i, f"192.0.2.{i % 10 + 1}", "192.0.2.53", KIND_DNS, 53, 1, b"a.b") for i in range(100)]
    agg = Aggregator(max_hosts=4)
    ev = make_events(rows)
    agg.ingest(ev, Classifier().classify(ev))
    assert agg.n_hosts == 4
    assert agg.counts().events_dropped == 60
    assert int(agg.totals()[:, C_QUERIES].sum()) == 40


def test_window_prunes_old_bins_but_keeps_totals() -> None:
    # 3 rows of (host, bin) capacity, 2-bin window: old bins go, totals stay
    rows = [(b * 60_000_000, "192.0.2.1", "192.0.2.53", KIND_DNS, 53, 1, b"x.y") for b in range(6)]
    agg = Aggregator(bin_s=60, window_s=120, max_host_bins=3)
    for r in rows:
        ev = make_events([r])
        agg.ingest(ev, Classifier().classify(ev))
    (state,) = agg.host_states([0])
    assert state.bins.tolist() == [4, 5]
    assert int(state.totals[C_QUERIES]) == 6
    assert agg.counts().rows_dropped == 0


def test_full_key_tables_drop_keys_last_seen_before_the_window() -> None:
    # a busy day fills the distinct-set tables; a day later a mass mailer's MX
    # domains and a scanner's targets must still count as new (they were refused,
    # so neither was ever flagged again on a long-running sensor)
    agg = Aggregator(bin_s=60, window_s=120, max_keys=64)
    old = [(i, "192.0.2.1", "192.0.2.53", KIND_DNS, 53, 1, b"n%d.example" % i) for i in range(100)]
    old += [(i, "192.0.2.1", f"198.51.100.{i}", KIND_SYN, 445, 0, b"") for i in range(100)]
    late = 10 * 60_000_000
    new = [(late + i, "192.0.2.2", "192.0.2.53", KIND_DNS, 53, 15, b"v%d.x" % i) for i in range(10)]
    new += [(late + i, "192.0.2.3", f"203.0.113.{i}", KIND_SYN, 445, 0, b"") for i in range(30)]
    for rows in (old, new):
        ev = make_events(rows)
        agg.ingest(ev, Classifier().classify(ev))
    mailer, scanner = agg.host_states([1, 2], with_prefixes=False)
    assert int(mailer.totals[C_MX_DOM_NEW]) == 10
    assert int(scanner.totals[C_SYN_DST_NEW]) == 30


def test_a_row_table_full_of_the_window_drops_its_oldest_bins_not_new_evidence() -> None:
    # a flagged host's 8 bins, then another's 40 fill a 32-row table inside a day's
    # window; a scanner starting after that got no rows at all (its 30 targets never
    # reached a verdict until the old rows left the window, a day later)

    def protect(n_hosts: int) -> npt.NDArray[np.bool_]:
        return np.arange(n_hosts) == 0

    agg = Aggregator(bin_s=60, window_s=86400, max_host_bins=32, protect=protect)
    for b in range(48):
        src = "192.0.2.5" if b < 8 else "192.0.2.1"
        ev = make_events([(b * 60_000_000, src, "192.0.2.53", KIND_DNS, 53, 1, b"x.y")])
        agg.ingest(ev, Classifier().classify(ev))
    scan = [
        (48 * 60_000_000 + i, "192.0.2.9", f"203.0.113.{i}", KIND_SYN, 445, 0, b"")
        for i in range(30)
    ]
    ev = make_events(scan)
    agg.ingest(ev, Classifier().classify(ev))
    kept, browser, scanner = agg.host_states([0, 1, 2], with_prefixes=False)
    assert scanner.bins.tolist() == [48]
    assert int(scanner.series.reshape(-1, N_COUNTERS)[:, C_SYN_DST_NEW].sum()) == 30
    # the flagged host keeps every bin; the other its newest, without a gap, and its totals
    assert kept.bins.tolist() == list(range(8))
    newest = browser.bins.tolist()
    assert newest == list(range(newest[0], 48))
    assert len(newest) >= 16
    assert int(browser.totals[C_QUERIES]) == 40
    assert agg.counts().rows_dropped >= 40 - len(newest)


def _storm_rows(start_us: int, host: str) -> list[Row]:
    """Six minutes of a keyword storm at a share of 0.4: per minute 20 A queries of
    distinct mail names and 30 of one other name."""
    rows: list[Row] = []
    for m in range(6):
        t = start_us + m * 60_000_000
        rows += [(t + i, host, "192.0.2.53", KIND_DNS, 53, 1, b"mail%d.example" % (20 * m + i))
                 for i in range(20)]  # fmt: skip
        rows += [(t + 100 + i, host, "192.0.2.53", KIND_DNS, 53, 1, b"www.example")
                 for i in range(30)]  # fmt: skip
    return rows


def test_a_full_prefix_table_drops_keys_last_seen_before_the_window() -> None:
    # the name-prefix table was never pruned: once full it refused every new (host,
    # prefix), so a keyword storm that began later had no prefix counts, no top
    # prefixes in its evidence, and no keyword weight (with mail weighing 2, this
    # storm's share 0.4 reads 0.8 and fires; without its prefixes it did not)
    agg = Aggregator(bin_s=60, window_s=600, max_keys=64)
    old = [(i, "192.0.2.1", "192.0.2.53", KIND_DNS, 53, 1, b"n%d.example" % i) for i in range(100)]
    late = 30 * 60_000_000
    for rows in (old, _storm_rows(late, "192.0.2.2")):
        ev = make_events(rows)
        agg.ingest(ev, Classifier().classify(ev))
    (storm,) = agg.host_states([1])
    alone = Aggregator(bin_s=60, window_s=600, max_keys=64)
    ev = make_events(_storm_rows(late, "192.0.2.2"))
    alone.ingest(ev, Classifier().classify(ev))
    assert storm.prefixes[b"mail"] == 120
    assert storm.prefixes == alone.host_states([0])[0].prefixes
    cfg = Config(keyword_weights={"mail": 2.0})
    verdict = evaluate(storm, cfg, now_us=late + 6 * 60_000_000)
    assert verdict.verdicts == ("keyword-storm",)
    evidence = verdict.evidence["keyword-storm"]
    assert isinstance(evidence, dict)
    assert evidence["keyword_weight"] == 2.0
    tops = evidence["top_prefixes"]
    assert isinstance(tops, dict)
    assert ["mail", 120] in tops["4"]
    # the keys of the host that filled the table, last seen before the window, went
    assert agg.prefixes_of(np.array([0], np.int64)) == {}


def test_rows_outside_the_window_go_as_packet_time_moves_on() -> None:
    # not only when the row table is full: every read-out scans the rows, and a year of
    # one query a minute held 525,600 of them (judging slowed as they grew)
    agg = Aggregator(bin_s=60, window_s=180)
    for b in range(100):
        ev = make_events([(b * 60_000_000, "192.0.2.1", "192.0.2.53", KIND_DNS, 53, 1, b"x.y")])
        agg.ingest(ev, Classifier().classify(ev))
    assert agg._bins.n_rows <= 2 * agg.window_bins
    (state,) = agg.host_states([0])
    assert state.bins.tolist() == [97, 98, 99]
    assert int(state.totals[C_QUERIES]) == 100
    assert agg.counts().rows_dropped == 0


def test_ignored_networks_are_not_tracked() -> None:
    import ipaddress

    rows = [
        (0, "192.0.2.1", "192.0.2.53", KIND_DNS, 53, 15, b"x.y"),
        (0, "203.0.113.9", "192.0.2.53", KIND_DNS, 53, 15, b"x.y"),
    ]
    agg = Aggregator(ignore=[ipaddress.ip_network("203.0.113.0/24")])
    ev = make_events(rows)
    agg.ingest(ev, Classifier().classify(ev))
    assert [s.addr for s in agg.host_states(range(agg.n_hosts))] == ["192.0.2.1"]
    assert agg.counts().events_ignored == 1


def test_network_series_leaves_out_allowlisted_hosts() -> None:
    import ipaddress

    rows = [
        (0, "192.0.2.25", "192.0.2.53", KIND_DNS, 53, 15, b"example.org"),
        (0, "192.0.2.7", "192.0.2.53", KIND_DNS, 53, 15, b"example.org"),
        (61_000_000, "192.0.2.7", "198.51.100.1", KIND_SYN, 445, 0, b""),
    ]
    agg = Aggregator(allowlisted=[ipaddress.ip_network("192.0.2.25/32")])
    ev = make_events(rows)
    agg.ingest(ev, Classifier().classify(ev))
    bins, series = agg.network_series()
    assert bins.tolist() == [0, 1]
    assert series.tolist() == [[1, 1, 0], [0, 0, 1]]


def test_network_series_of_a_batch_whose_times_are_years_apart() -> None:
    # one record stamped 1970 and one of the year 9999 (a pcapng's 64-bit time) in the
    # same batch as one of 2026: the series counts the bins present, not a column per
    # bin of the span between them (4 * 10^9 bins: the old code asked for 31 GiB)
    last = 253_402_300_799_999_999
    rows = [
        (1_700_000_000_000_000, "192.0.2.7", "192.0.2.53", KIND_DNS, 53, 15, b"example.org"),
        (0, "192.0.2.7", "198.51.100.1", KIND_SYN, 445, 0, b""),
        (last, "192.0.2.8", "192.0.2.53", KIND_DNS, 53, 1, b"example.org"),
    ]
    agg = Aggregator()
    ev = make_events(rows)
    agg.ingest(ev, Classifier().classify(ev))
    bins, series = agg.network_series()
    assert bins.tolist() == [0, 1_700_000_000_000_000 // 60_000_000, last // 60_000_000]
    assert series.tolist() == [[0, 0, 1], [1, 1, 0], [1, 0, 0]]


def test_touched_since_a_mark_whatever_the_packet_time() -> None:
    agg = Aggregator(bin_s=60)
    dns = (KIND_DNS, 53, 1, b"a.example")
    first = make_events([(600_000_000, "192.0.2.1", "192.0.2.53", *dns),
                         (600_000_000, "192.0.2.2", "192.0.2.53", *dns)])  # fmt: skip
    agg.ingest(first, Classifier().classify(first))
    mark = agg.mark()
    assert agg.touched_since(mark).tolist() == []
    # an event five minutes older than anything seen: host 1 is touched all the same
    late = make_events([(300_000_000, "192.0.2.2", "192.0.2.53", *dns)])
    agg.ingest(late, Classifier().classify(late))
    assert agg.touched_since(mark).tolist() == [1]
    assert agg.now_us == 600_000_000
    assert agg.first_seen_us().tolist() == [600_000_000, 300_000_000]


def test_first_and_last_seen_before_the_epoch() -> None:
    # a pcapng interface with a negative if_tsoffset puts packets before 1970
    agg = Aggregator()
    dns = (KIND_DNS, 53, 1, b"a.example")
    ev = make_events([(-315_000_000_000_000, "192.0.2.1", "192.0.2.53", *dns),
                      (-314_000_000_000_000, "192.0.2.1", "192.0.2.53", *dns),
                      (-300_000_000_000_000, "192.0.2.2", "192.0.2.53", *dns)])  # fmt: skip
    agg.ingest(ev, Classifier().classify(ev))
    assert agg.first_seen_us().tolist() == [-315_000_000_000_000, -300_000_000_000_000]
    # the old last times were -1 (1969-12-31T23:59:59.999999 in the summaries)
    assert agg.last_seen_us().tolist() == [-314_000_000_000_000, -300_000_000_000_000]


def test_read_out_arrays_are_read_only() -> None:
    agg = Aggregator()
    ev = make_events([(0, "192.0.2.1", "198.51.100.1", KIND_SYN, 445, 0, b"")])
    agg.ingest(ev, Classifier().classify(ev))
    for view in (agg.totals(), agg.last_seen_us(), *agg.address_words()):
        with pytest.raises(ValueError, match="read-only"):
            view[0] = 0
    assert int(agg.activity()[0]) == 1


def test_kernels_compiled_one_signature_each() -> None:
    test_aggregate_matches_reference(1)
    for kernel in (
        agg_kernels.table_upsert,
        count_kernels.flag_events,
        count_kernels.count_events,
        count_kernels.pick_samples,
        count_kernels.touch_hosts,
        cls_kernels.match_keywords,
    ):
        assert len(kernel.signatures) == 1, kernel


def test_a_key_table_grows_to_at_most_seven_tenths_full_and_keeps_every_key() -> None:
    """Batches of new keys: each batch finds every key it inserted, no key is refused
    below ``max_used``, the load stays <= 7/10 (and <= 1/2 of the size limit, so
    probes always end)."""
    table = KeyTable(max_used=5_000)
    rng = np.random.default_rng(3)
    inserted = 0
    while inserted < 6_000:
        n = int(rng.integers(1, 700))
        a = np.arange(inserted, inserted + n, dtype=np.int64)
        b = rng.integers(0, 1 << 62, n).astype(np.uint64)
        c = np.zeros(n, np.uint64)
        ids = np.empty(n, np.int64)
        sel = np.ones(n, np.bool_)
        refused = table.upsert(a, b, c, sel, a, agg_kernels.MODE_ID, ids)
        assert refused == max(0, inserted + n - 5_000) - max(0, inserted - 5_000)
        used = int(table.used[0])
        assert 10 * used <= 7 * table.capacity or table.capacity == table.limit
        assert 2 * used <= table.limit
        again = np.empty(n, np.int64)
        table.upsert(a, b, c, sel, a, agg_kernels.MODE_ID, again)
        assert again.tolist() == ids.tolist()
        inserted += n
    # 5,000 keys at most 7/10 full: 8,192 slots, not the 16,384 a half-full rule needs
    assert table.capacity == 8_192


def test_the_run_starts_at_its_oldest_event_whatever_the_order() -> None:
    """`replay --concatenate demo.pcap vlan.pcap` counted vlan.pcap's events of 09:00:00
    after demo's of 09:00:02-09:29, and its network record, text summary and report
    said the capture began at 09:00:02 (the first batch's oldest event)."""
    agg = Aggregator(bin_s=60)
    dns = (KIND_DNS, 53, 1, b"a.example")
    later = make_events([(602_000_000, "192.0.2.1", "192.0.2.53", *dns),
                         (2_384_000_000, "192.0.2.1", "192.0.2.53", *dns)])  # fmt: skip
    agg.ingest(later, Classifier().classify(later))
    assert agg.start_us == 602_000_000
    older = make_events([(600_010_000, "192.0.2.2", "192.0.2.53", *dns)])
    agg.ingest(older, Classifier().classify(older))
    assert agg.start_us == 600_010_000
    assert agg.now_us == 2_384_000_000
    assert min(agg.first_seen_us().tolist()) == agg.start_us
