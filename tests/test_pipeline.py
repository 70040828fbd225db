"""The pipeline on real files: the demo story found, one compiled signature per kernel."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from wormwatch.aggregate import Aggregator
from wormwatch.config import load_config
from wormwatch.errors import WormwatchError
from wormwatch.kernels import aggregate as agg_kernels
from wormwatch.kernels import classify as cls_kernels
from wormwatch.kernels import counting as count_kernels
from wormwatch.kernels import decode as dec_kernels
from wormwatch.model import C_QUERIES, C_SYN135, C_SYN445, Events, HostView, Snapshot
from wormwatch.pipeline import Pipeline, RunResult
from wormwatch.source.pcapfile import open_replay

from testkit.fakes import ScriptedSource
from testkit.frames import make_batch, syn
from testkit.hoststates import STORM_PREFIXES, Event, at, write_events
from testkit.paths import DEMO, DEMO_CONFIG


def test_demo_story_is_found() -> None:
    result = Pipeline(load_config(str(DEMO_CONFIG)), source_name="demo").run(
        open_replay([str(DEMO)])
    )
    flagged = {v.state.addr: set(v.verdict.verdicts) for v in result.hosts if v.verdict.verdicts}
    assert flagged == {
        "192.0.2.66": {"keyword-storm"},
        "192.0.2.77": {"mx-client"},
        "192.0.2.88": {"smb-scan"},
        "192.0.2.99": {"mx-client", "smb-scan", "bot-sync"},
    }
    assert result.hosts[0].state.addr == "192.0.2.99"


def test_every_host_is_read_out_only_when_asked_for() -> None:
    """A replay that writes no summary and no report never reads every host out
    (the final snapshot reads the top ones); asked for, they are read once."""
    pipe = Pipeline(load_config(str(DEMO_CONFIG)), source_name="demo")
    limits: list[int | None] = []
    host_views = pipe.host_views

    def counted(limit: int | None = None) -> list[HostView]:
        limits.append(limit)
        return host_views(limit)

    pipe.host_views = counted  # type: ignore[method-assign]
    result = pipe.run(open_replay([str(DEMO)]))
    assert None not in limits
    hosts = result.hosts
    assert result.hosts is hosts
    assert limits.count(None) == 1
    assert len(hosts) == pipe.agg.n_hosts
    assert [v.state.addr for v in hosts] == [v.state.addr for v in pipe.judge.host_views(pipe.agg)]


def test_kernels_compile_one_signature_each_after_a_replay() -> None:
    Pipeline(load_config(None), source_name="demo").run(open_replay([str(DEMO)]))
    kernels = [
        dec_kernels.decode_packets,
        cls_kernels.match_keywords,
        agg_kernels.table_upsert,
        count_kernels.flag_events,
        count_kernels.count_events,
        count_kernels.pick_samples,
        count_kernels.touch_hosts,
        count_kernels.count_answer_events,
    ]
    for kernel in kernels:
        assert len(kernel.signatures) == 1, (kernel, kernel.signatures)


class _Alerts:
    def __init__(self) -> None:
        self.records: list[dict[str, object]] = []

    def write(self, record: dict[str, object]) -> None:
        self.records.append(record)


def test_a_scan_that_returns_after_the_window_is_cleared_then_new(tmp_path: Path) -> None:
    # 400 new targets at one a second, nothing at all for two days (longer than the
    # one-day window), then 400 other targets in 40 s: the first scan left the window
    # in the silence, so the alerts say so before the second one is news
    def scan(start_h: float, net: int, step_us: int) -> list[Event]:
        return [
            (at(start_h) + i * step_us, "192.0.2.44", f"10.{net}.{i // 250}.{i % 250}", 0, b"", 445)
            for i in range(400)
        ]

    path = write_events(tmp_path / "t.pcap", scan(12, 1, 1_000_000) + scan(60, 2, 100_000))
    alerts = _Alerts()
    source = open_replay([str(path)])
    try:
        Pipeline(load_config(None), source_name="t", alerts=alerts).run(source)
    finally:
        source.close()
    reasons = [(r["reason"], r["verdicts"], r["timestamp"]) for r in alerts.records]
    assert reasons[-2:] == [
        ("cleared", [], "2026-11-28T12:00:00.000000+00:00"),
        ("new", ["smb-scan"], "2026-11-28T12:00:39.900000+00:00"),
    ]
    assert reasons[0][0] == "new"


class _FullDisk:
    """An event sink that fails as the event log does when its disk is full."""

    def write_events(self, events: Events) -> None:
        raise WormwatchError("cannot write to JSON lines output events.jsonl: no space left")


def test_a_failing_event_sink_still_leaves_its_batch_counted_per_host() -> None:
    """The run ends with the sink's error, and the hosts hold every query and SYN
    the decode counts hold: the summary and its alerts are not a batch short."""
    pipe = Pipeline(load_config(None), source_name="demo", event_sinks=[_FullDisk()])
    result = pipe.run(open_replay([str(DEMO)]))
    assert result.error is not None
    assert "no space left" in str(result.error)
    decode = result.final.decode
    assert decode["dns_queries"] + decode["syns"] > 0
    queries = sum(int(v.state.totals[C_QUERIES]) for v in result.hosts)
    syns = sum(int(v.state.totals[C_SYN135 : C_SYN445 + 1].sum()) for v in result.hosts)
    assert (queries, syns) == (decode["dns_queries"], decode["syns"])


def _replayed(tmp_path: Path, events: list[Event]) -> dict[str, tuple[str, ...]]:
    """Each host's verdicts after replaying ``events`` as a pcap with the default config."""
    source = open_replay([str(write_events(tmp_path / "t.pcap", events))])
    try:
        result = Pipeline(load_config(None), source_name="t").run(source)
    finally:
        source.close()
    return {v.state.addr: tuple(v.verdict.verdicts) for v in result.hosts}


def test_a_mass_mailer_is_flagged_at_exactly_min_domains(tmp_path: Path) -> None:
    # 12 MX queries (min_mx_queries is 10) over 5 domains (min_domains is 5) is a mass
    # mailer; over 4 domains it is not
    def mailer(n_domains: int) -> list[Event]:
        return [
            (at(9) + i * 5_000_000, "192.0.2.55", "198.51.100.53", 15,
             f"victim{i % n_domains}.example".encode(), 53)
            for i in range(12)
        ]  # fmt: skip

    assert _replayed(tmp_path, mailer(5))["192.0.2.55"] == ("mx-client",)
    assert _replayed(tmp_path, mailer(4))["192.0.2.55"] == ()


def test_hosts_of_equal_score_rank_most_active_first(tmp_path: Path) -> None:
    # three hosts, none flagged, asking 1, 5 and 3 ordinary names: the summary (and
    # the report's hosts.jsonl) lists them by activity, the busiest first
    events = [
        (at(9) + i * 1_000_000 + k * 100_000, f"192.0.2.{k}", "198.51.100.53", 1,
         f"www.site{i}.example".encode(), 53)
        for k, n in ((1, 1), (2, 5), (3, 3))
        for i in range(n)
    ]  # fmt: skip
    source = open_replay([str(write_events(tmp_path / "t.pcap", sorted(events)))])
    try:
        result = Pipeline(load_config(None), source_name="t").run(source)
    finally:
        source.close()
    assert [v.state.addr for v in result.hosts] == ["192.0.2.2", "192.0.2.3", "192.0.2.1"]


def test_every_storm_in_the_summary_shows_its_top_prefixes(tmp_path: Path) -> None:
    # 55 keyword storms, more than the 50 top hosts whose name prefixes are read
    # anyway, each judged again after its alert (one more query half an hour later):
    # each flagged host's evidence and state still hold its name prefixes (the
    # detail view's "top prefixes" line)
    events = [
        (at(9) + j * 2_000_000 + k * 1000, f"192.0.2.{k + 1}", "198.51.100.53", 1,
         f"{STORM_PREFIXES[j % 9]}d{k}-{j}.test".encode(), 53)
        for k in range(55)
        for j in range(151)
    ]  # fmt: skip
    events[150::151] = [(at(9.5) + k, *e[1:]) for k, e in enumerate(events[150::151])]
    source = open_replay([str(write_events(tmp_path / "t.pcap", sorted(events)))])
    try:
        result = Pipeline(load_config(None), source_name="t").run(source)
    finally:
        source.close()
    storms = [v for v in result.hosts if v.verdict.verdicts == ("keyword-storm",)]
    assert len(storms) == 55
    for view in storms:
        ev = view.verdict.evidence["keyword-storm"]
        assert isinstance(ev, dict)
        assert ev["top_prefixes"]["4"][0] == ["mail", 51], view.state.addr
        assert view.state.prefixes[b"mail"] == 51, view.state.addr


class _Snapshots:
    """A presenter that keeps what it is shown."""

    def __init__(self) -> None:
        self.shown: list[Snapshot] = []

    def start(self) -> None: ...
    def update(self, snapshot: Snapshot) -> None:
        self.shown.append(snapshot)

    def poll_quit(self) -> bool:
        return False

    def stop(self, final: Snapshot) -> None: ...
    def close(self) -> None: ...


def test_a_presenter_that_shows_no_network_sync_costs_no_network_sync() -> None:
    """The network-wide r is taken over every bin of the run, so computing it for
    each refresh made a long headless run with --metrics (which never shows it)
    slower with every bin: once a second, 0.1 s at a week of 5 s bins. Such a
    presenter's snapshots leave it out; the final snapshot still has it."""
    # a SYN a minute, five a batch: 40 bins
    minutes = [k * 60_000_000 for k in range(40)]
    pipe, shown, calls, result = _network_syncs_counted(minutes, shows_network_sync=False)
    assert len(shown.shown) >= 8
    assert all(s.network_sync_r is None for s in shown.shown)
    assert len(calls) == 1
    assert result.final.network_sync_r == pipe.judge.network_sync(pipe.agg)


def _network_syncs_counted(
    times: list[int], *, shows_network_sync: bool = True
) -> tuple[Pipeline, _Snapshots, list[int], RunResult]:
    """40 SYNs at ``times``, five a batch, each loop a refresh: the pipeline, what
    its presenter was shown, its network_sync calls and the result."""
    frames = [(1, syn(445, dst=f"198.51.100.{k + 1}", sport=1000 + k)) for k in range(40)]
    batches = [make_batch(frames[k : k + 5], ts_us=times[k : k + 5]) for k in range(0, 40, 5)]
    ticks = itertools.count()
    shown = _Snapshots()
    pipe = Pipeline(
        load_config(None), source_name="s", presenter=shown, decode_ahead=False,
        clock=lambda: float(next(ticks)), shows_network_sync=shows_network_sync,
    )  # fmt: skip
    calls: list[int] = []
    network_sync = pipe.judge.network_sync

    def counted(agg: Aggregator) -> float | None:
        calls.append(agg.n_hosts)
        return network_sync(agg)

    pipe.judge.network_sync = counted  # type: ignore[method-assign]
    result = pipe.run(ScriptedSource(batches))
    pipe.judge.network_sync = network_sync  # type: ignore[method-assign]
    return pipe, shown, calls, result


def test_the_live_table_takes_the_network_sync_once_a_bin() -> None:
    """The network-wide r is over every bin of the run (0.5 s a year into a sensor
    of 60 s bins): at four refreshes a second the live table spent more than a core
    on it. A refresh now reuses it within a bin of packet time; the final snapshot
    takes it afresh."""
    # 40 SYNs in two minutes: eight refreshes over two bins
    times = [(k // 20) * 60_000_000 + k for k in range(40)]
    pipe, shown, calls, result = _network_syncs_counted(times)
    assert len(shown.shown) >= 8
    # at most once for each of the two bins, and once for the final snapshot
    assert 2 <= len(calls) <= 3
    assert result.final.network_sync_r == pipe.judge.network_sync(pipe.agg)


class _QuitsOnceDecodedAhead(_Snapshots):
    """Quits at the first refresh, once the replay's decode-ahead thread has
    decoded ``packets`` (every batch its queue holds, and one more in hand)."""

    def __init__(self, packets: int) -> None:
        super().__init__()
        self.packets = packets
        self.pipe: Pipeline | None = None

    def poll_quit(self) -> bool:
        assert self.pipe is not None
        deadline = time.monotonic() + 10.0
        while self.pipe.decoder.stats.packets < self.packets and time.monotonic() < deadline:
            time.sleep(0.002)
        return True


def test_a_replay_stopped_with_batches_decoded_ahead_counts_what_it_counted() -> None:
    """A replay decodes up to four batches ahead of the one it counts. Quit (q, Ctrl-C)
    meanwhile, its summary's decode totals took in those batches too: 25 SYNs read
    and decoded, 5 counted in the hosts. They now are the counted batches' totals."""
    frames = [(1, syn(445, dst=f"198.51.100.{k + 1}", sport=1000 + k)) for k in range(50)]
    batches = [make_batch(frames[k : k + 5], ts_us=list(range(k, k + 5))) for k in range(0, 50, 5)]
    quits = _QuitsOnceDecodedAhead(packets=25)
    pipe = Pipeline(load_config(None), source_name="s", presenter=quits)
    quits.pipe = pipe
    result = pipe.run(ScriptedSource(batches))
    assert pipe.decoder.stats.syns == 25  # read and decoded
    syns = sum(int(v.state.totals[C_SYN445]) for v in result.hosts)
    assert syns == 5
    assert result.final.decode["syns"] == 5
    assert result.final.decode["packets"] == 5
    assert result.final.decode["ok"] == 5
