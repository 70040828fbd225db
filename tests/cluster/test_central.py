"""The central side without a broker: [cluster] settings, overlap warnings,
which sensors saw a host, heartbeats, the merged view."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import time
from pathlib import Path

import numpy as np
import pytest

from wormwatch.aggregate.export import DeltaExporter
from wormwatch.classify import Classifier
from wormwatch.cluster.central import AHEAD_S, REPORT_BINS, Central
from wormwatch.cluster.run import CentralOptions, run_central, snapshot, write_central_summary
from wormwatch.cluster.settings import ClusterConfig, check_sensor_name, parse_shards
from wormwatch.cluster.top import top_record
from wormwatch.cluster.view import merge_top
from wormwatch.config import Config, load_config
from wormwatch.delta import Delta, DeltaError, decode, encode
from wormwatch.errors import WormwatchError
from wormwatch.model import C_MX, KIND_DNS, KIND_SYN
from wormwatch.present.sinks.metric_families import MetricState, hosts
from wormwatch.tables import KeyTable

from testkit.events import Row, make_events

T0 = 1_700_000_040_000_000


def deltas(sensor: str, hosts: list[str]) -> list[Delta]:
    rows = []
    for k, host in enumerate(hosts):
        rows.append((T0 + k, host, "192.0.2.53", KIND_DNS, 53, 15, b"mx.example.com"))
        rows.append((T0 + k + 1, host, "198.51.100.9", KIND_SYN, 445, 0, b""))
    return run(sensor, rows)


def run(sensor: str, rows: list[Row]) -> list[Delta]:
    """The deltas one sensor run of ``rows`` publishes, its open bins closed at its end."""
    ev = make_events(rows)
    exporter = DeltaExporter(sensor=sensor, n_shards=4)
    exporter.ingest(ev, Classifier().classify(ev))
    return exporter.close_all()


def central(cluster: ClusterConfig) -> Central:
    return Central(Config(max_hosts=64, max_host_bins=256), cluster, clock=lambda: 1000.0)


def test_two_sensors_reporting_one_host_in_one_bin_are_warned_about() -> None:
    c = central(ClusterConfig(shards=4))
    for d in deltas("east", ["192.0.2.1", "192.0.2.2"]) + deltas("west", ["192.0.2.2"]):
        c.apply(d)
    assert c.n_overlaps == 1
    assert "east, west" in c.overlaps[0]
    assert "192.0.2.2" in c.overlaps[0]
    host = c.agg.find(0, 0xFFFF_C000_0202)
    assert host is not None
    assert c.sensors_of(host) == ["east", "west"]


def test_a_declared_split_of_one_link_is_not_an_overlap() -> None:
    c = central(ClusterConfig(shards=4, split_of_link=(("east", "west"),)))
    for d in deltas("east", ["192.0.2.2"]) + deltas("west", ["192.0.2.2"]):
        c.apply(d)
    assert c.n_overlaps == 0
    assert c.overlaps == []


def test_a_skewed_sensor_clock_is_flagged_in_the_view() -> None:
    c = central(ClusterConfig(shards=4))
    for d in deltas("east", ["192.0.2.1"]):
        c.apply(d)
    c.heartbeat({"sensor": "east", "wall": 1000.5, "packets_per_s": 10.0, "kernel_dropped": 3})
    c.heartbeat({"sensor": "west", "wall": 1300.0, "packets_per_s": 5.0})
    view = merge_top([top_record(c, "central-0-3", 0.5)])
    panel = {s["sensor"]: s for s in view.sensors}
    assert panel["east"]["kernel_dropped"] == 3
    assert not panel["east"]["clock_skewed"]
    assert panel["west"]["clock_skewed"]
    assert any("west" in w and "clock" in w for w in view.warnings)
    assert [h["src_ip"] for h in view.hosts] == ["192.0.2.1"]
    assert view.hosts[0]["sensors"] == ["east"]


def test_a_delta_ahead_of_the_central_s_clock_is_refused_and_its_sensor_flagged() -> None:
    """A delta whose packet time runs more than AHEAD_S past the central's wall clock
    (a sensor whose clock is a day ahead) is refused, naming the time; one within it,
    or behind the clock (a replay of an old capture), merges. The refused sensor shows
    SKEWED in the view, also without a heartbeat (a replay republished ahead), until a
    delta of it merges."""
    wall = [T0 / 1e6 - 86_400]
    c = Central(Config(max_hosts=64, max_host_bins=256), ClusterConfig(shards=4),
                clock=lambda: wall[0])  # fmt: skip
    ahead = deltas("west", ["192.0.2.1"])[0]
    kind, why = c.refusal(ahead) or ("", "")
    assert kind == "clock"
    assert "2023-11-14T22:14:00" in why
    assert "86,400 s ahead of this central's clock" in why
    view = merge_top([top_record(c, "central-0-3", 0.0)])
    assert [s["sensor"] for s in view.sensors if s["clock_skewed"]] == ["west"]
    assert view.warnings == ["sensor west: clock differs from packet time"]
    wall[0] = T0 / 1e6 - AHEAD_S + 61
    assert c.refusal(ahead) is None
    assert c.apply(ahead)
    assert not merge_top([top_record(c, "central-0-3", 0.0)]).warnings
    wall[0] = T0 / 1e6 + 10 * 365 * 86_400
    assert c.refusal(deltas("east", ["192.0.2.2"])[0]) is None


def test_a_sensor_with_another_shard_count_is_warned_about_in_the_view() -> None:
    """A host's shard is its hash modulo the shard count: a sensor configured with 8
    where the centrals have 4 sends some hosts to subjects no central reads (and the
    rest may pass every check). Its heartbeat says its count; the view warns until it
    agrees."""
    c = central(ClusterConfig(shards=4))
    c.heartbeat({"sensor": "east", "wall": 1000.0, "shards": 4})
    c.heartbeat({"sensor": "west", "wall": 1000.0, "shards": 8})
    (warning,) = merge_top([top_record(c, "central-0-3", 0.0)]).warnings
    assert warning.startswith("sensor west hashes hosts into 8 shards, this central 4")
    c.heartbeat({"sensor": "west", "wall": 1000.0, "shards": 4})
    assert merge_top([top_record(c, "central-0-3", 0.0)]).warnings == []


def test_more_sensors_than_a_host_s_sensor_set_holds_is_warned_about() -> None:
    c = central(ClusterConfig(shards=4))
    for k in range(64):
        c.apply(deltas(f"s{k}", ["192.0.2.1"])[0])
    assert merge_top([top_record(c, "central-0-3", 0.0)]).warnings == []
    c.apply(deltas("s64", ["192.0.2.2"])[0])
    (warning,) = merge_top([top_record(c, "central-0-3", 0.0)]).warnings
    assert warning.startswith("65 sensors, more than the 64")


def test_a_delta_applied_twice_changes_nothing() -> None:
    c = central(ClusterConfig(shards=4))
    ds = deltas("east", ["192.0.2.1", "192.0.2.9"])
    assert all(c.apply(d) for d in ds)
    totals = c.agg.totals().copy()
    assert not any(c.apply(d) for d in ds)
    assert np.array_equal(c.agg.totals(), totals)


def test_a_sensor_restarted_within_a_bin_adds_the_rest_of_the_bin() -> None:
    """Its first run published the open bin at its exit; the second run's part
    of that bin (the same sensor, shard, bin and part number) counts too."""
    rows: list[Row] = [
        (T0 + 1_000_000 * k, "192.0.2.1", "192.0.2.53", KIND_DNS, 53, 15, b"mx%d.example.com" % k)
        for k in range(30)
    ]
    c = central(ClusterConfig(shards=4))
    first, second = run("east", rows[:10]), run("east", rows[10:])
    assert all(c.apply(d) for d in first + second)
    assert not any(c.apply(d) for d in first + second)
    host = c.agg.find(0, 0xFFFF_C000_0201)
    assert host is not None
    assert c.agg.totals()[host, C_MX] == 30
    assert c.n_overlaps == 0


def test_cluster_section(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[cluster]\nurl = "tls://nats.example.net:4222"\nsensor = "uplink-a"\nshards = 8\n'
        'user = "u"\npassword = "p"\nnetworks = ["192.0.2.0/25"]\n'
        'split_of_link = ["a", "b"]\n'
    )
    cfg = load_config(str(path)).cluster
    assert cfg.shards == 8
    assert cfg.networks == (ipaddress.ip_network("192.0.2.0/25"),)
    assert cfg.split_group("b") == cfg.split_group("a") == 1
    assert cfg.split_group("c") == 0
    assert cfg.with_url("nats://127.0.0.1:1").url == "nats://127.0.0.1:1"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('sensor = "a.b"', "sensor name"),
        ('user = "u"', "user and password go together"),
        ("split_of_link = [1]", "split_of_link"),
        ("shards = 0", "shards"),
        ("port = 4222", 'unknown key "port"'),
    ],
)
def test_bad_cluster_settings_name_the_key(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[cluster]\n{body}\n")
    with pytest.raises(WormwatchError, match=message):
        load_config(str(path))


def test_shard_ranges() -> None:
    assert parse_shards("0-7", 16) == (0, 7)
    assert parse_shards("5", 16) == (5, 5)
    for bad in ("7-3", "0-16", "x", "-1"):
        with pytest.raises(WormwatchError, match="--shards"):
            parse_shards(bad, 16)


def test_the_view_escapes_what_comes_from_the_broker() -> None:
    from rich.console import Console

    from wormwatch.present.live.cluster import view_screen

    record = {
        "central": "central-0-15",
        "hosts": [{"src_ip": "192.0.2.1\x1b[31m", "score": 90.0, "verdicts": ["[bold]x"],
                   "queries": 5, "syns": 2, "sensors": ["east\x07"]}],
        "sensors": [{"sensor": "east\x07", "heartbeat_age_s": 1.0, "newest_bin": 28333334,
                     "bin_s": 60, "clock_skewed": False}],
        "overlaps": ["host \x1b]0;pwned\x07 twice"],
    }  # fmt: skip
    console = Console(width=200, record=True, force_terminal=False)
    console.print(view_screen(merge_top([record])))
    text = console.export_text()
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "192.0.2.1\\x1b\\x5b31m" in text
    assert "\\x5bbold\\x5dx" in text  # no rich markup from the wire
    assert "2023-11-14 22:15" in text  # the end of the sensor's newest bin, UTC


def test_the_view_shows_emoji_codes_and_odd_numbers_as_they_came() -> None:
    """Cells are plain text: rich read ":skull:" in a str cell as an emoji; a score
    that is no number sorts as 0 (it was a ValueError traceback)."""
    from rich.console import Console

    from wormwatch.present.live.cluster import view_screen

    hosts = [
        {"src_ip": "192.0.2.1", "score": "x", "verdicts": [":skull:"], "sensors": ["s1:skull:"]},
        {"src_ip": "192.0.2.2", "score": 10.0, "queries": "many", "sensors": ["s2"]},
    ]
    view = merge_top([{"central": "central-0-15", "hosts": hosts, "sensors": []}])
    assert [h["src_ip"] for h in view.hosts] == ["192.0.2.2", "192.0.2.1"]
    console = Console(width=200, record=True, force_terminal=False)
    console.print(view_screen(view))
    text = console.export_text()
    assert "s1:skull:" in text
    assert "\N{SKULL}" not in text


@pytest.mark.parametrize(
    "name", ["east\u202e", "s\x1b]8;;http://evil/\x07X", "\u3164\u3164", "a" * 65, ""]
)
def test_a_name_no_sensor_can_have_is_refused_at_the_central(name: str) -> None:
    """A sensor checks its own name; a central, which shows and writes names in
    alerts, summaries, metric labels and the view, checks what comes from the broker:
    a delta under such a name does not decode, a heartbeat is ignored."""
    c = central(ClusterConfig(shards=4))
    (delta,) = [d for d in deltas("east", ["192.0.2.1"]) if d.n_hosts]
    delta.ident = dataclasses.replace(delta.ident, sensor=name)
    with pytest.raises(DeltaError, match="sensor name"):
        decode(encode(delta))
    c.heartbeat({"sensor": name, "wall": 1000.0, "packets_per_s": 1.0})
    assert c.sensors == {}
    with pytest.raises(WormwatchError, match="1-64 ASCII letters"):
        check_sensor_name(name)


def _mailer_deltas(sensor: str, n: int, first: int = 0) -> list[Delta]:
    rows = [
        (
            T0 + first + k,
            "192.0.2.25",
            "192.0.2.53",
            KIND_DNS,
            53,
            15,
            f"d{first + k}.example".encode(),
        )
        for k in range(n)
    ]
    return run(sensor, rows)


def test_the_merged_view_is_as_current_as_a_sensors_table() -> None:
    """Deltas merged between two judgements (no bin boundary) show in the view:
    its verdict and evidence are those of the merged counts now, as a sensor's
    table re-scores before it draws, not the last judgement's."""
    c = central(ClusterConfig(shards=4))
    for d in _mailer_deltas("east", 12):
        c.apply(d)
    [alert] = c.judge()
    assert alert["evidence"]["mx-client"]["mx_queries"] == 12  # type: ignore[index]
    for d in _mailer_deltas("west", 30, first=100):
        c.apply(d)
    [(_, view)] = c.host_views()
    assert view.verdict.verdicts == ("mx-client",)
    evidence = view.verdict.evidence["mx-client"]
    assert (evidence["mx_queries"], evidence["mx_domains"]) == (42, 42)  # type: ignore[index]


def _bin_deltas(sensor: str, b: int, hosts: list[str]) -> list[Delta]:
    rows = [
        (T0 + b * 60_000_000 + j, h, "192.0.2.53", KIND_DNS, 53, 1, b"x.example.com")
        for j, h in enumerate(hosts)
    ]
    ev = make_events(rows)
    exporter = DeltaExporter(sensor=sensor, n_shards=4)
    exporter.ingest(ev, Classifier().classify(ev))
    return exporter.close_all()


def test_overlaps_are_still_found_after_many_bins() -> None:
    """The overlap check keeps the newest bins' reports only: after 400 (host,
    bin) reports, more than its table's 256 keys, two sensors reporting one host
    are still warned about (the full table refused the keys, and said nothing)."""
    c = central(ClusterConfig(shards=4))
    hosts = [f"192.0.2.{i}" for i in range(1, 21)]
    for b in range(20):
        for d in _bin_deltas("east", b, hosts):
            c.apply(d)
    assert c.n_overlaps == 0
    assert len(c._reports) <= REPORT_BINS
    for d in _bin_deltas("east", 20, hosts[:1]) + _bin_deltas("west", 20, hosts[:1]):
        c.apply(d)
    assert c.n_overlaps == 1
    assert "192.0.2.1 " in c.overlaps[0]


def test_a_central_summary_replaces_the_last_one(tmp_path: Path) -> None:
    """It appended: a central run a second time left two summaries in the file (52
    lines and two network records for the demo capture's 25 hosts), where a
    sensor's --summary is replaced at each run."""
    c = central(ClusterConfig(shards=4))
    for d in deltas("east", ["192.0.2.1", "192.0.2.2"]):
        c.apply(d)
    path = tmp_path / "hosts.jsonl"
    for _ in range(2):
        write_central_summary(str(path), c, snapshot(c, "central", is_finished=True))
    kinds = [json.loads(line)["event_type"] for line in path.read_text().splitlines()]
    assert kinds == ["host", "host", "network"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts.jsonl"]


@pytest.mark.parametrize("where", ["missing/hosts.jsonl", "."])
def test_a_central_summary_that_cannot_be_written_is_said_before_the_run(
    tmp_path: Path, where: str
) -> None:
    """It was said after the run ended (--duration, or Ctrl-C after days), by the
    writer opening it; the broker is not even asked (the URL is a closed port)."""
    opts = CentralOptions(url="nats://127.0.0.1:1", summary=str(tmp_path / where))
    with pytest.raises(WormwatchError, match=r"^cannot write summary .*(does not exist|directory)"):
        run_central(Config(), opts, None)


def test_a_central_summary_on_the_alerts_file_is_said_before_the_run(tmp_path: Path) -> None:
    """The summary was renamed over the alerts file at the end: every alert lost."""
    shared = str(tmp_path / "out.jsonl")
    opts = CentralOptions(url="nats://127.0.0.1:1", summary=shared, alerts=shared)
    with pytest.raises(WormwatchError, match=r"^--summary and --alerts name one file"):
        run_central(Config(), opts, None)


def test_a_stopped_central_s_record_is_shown_as_old_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A central that stopped leaves its last record in the bucket: the view showed
    its sensors' heartbeat ages as they were when it was put, for ever, and
    nothing said the central had stopped reporting."""
    c = central(ClusterConfig(shards=4))
    c.heartbeat({"sensor": "east", "wall": 1000.0, "packets_per_s": 10.0})
    c.clock = lambda: 1017.0
    record = top_record(c, "central-0-3", 0.0)
    assert record["sensors"][0]["heartbeat_age_s"] == 17.0  # type: ignore[index]
    put = float(record["wall"])  # type: ignore[arg-type]
    monkeypatch.setattr(time, "time", lambda: put + 1)
    fresh = merge_top([record])
    assert fresh.sensors[0]["heartbeat_age_s"] == 18.0
    assert fresh.warnings == []
    monkeypatch.setattr(time, "time", lambda: put + 600)
    stale = merge_top([record])
    assert stale.sensors[0]["heartbeat_age_s"] == 617.0
    (warning,) = stale.warnings
    assert warning.startswith("central central-0-3: no report for 600 s")


def test_a_watching_view_outlives_a_broker_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    """`view --watch` ended (exit 2) at the first refused connection of a broker
    being restarted; it now says so on the screen and tries again. A first
    connection that fails is still the exit."""
    import io

    from rich.console import Console

    from wormwatch.cluster.view import MergedView
    from wormwatch.present.live import cluster as screen

    answers: list[object] = [MergedView(), WormwatchError("cannot reach the broker (x)"),
                             MergedView(), KeyboardInterrupt()]  # fmt: skip

    def fetch(_cluster: ClusterConfig) -> MergedView:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, MergedView)
        return answer

    monkeypatch.setattr(screen, "fetch_view", fetch)
    monkeypatch.setattr(screen.time, "sleep", lambda _s: None)
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        screen.show_view(ClusterConfig(), watch_s=5, console=Console(file=out, width=120))
    assert "cannot reach the broker (x) (trying again every 5 s)" in out.getvalue()
    assert answers == []
    answers[:] = [WormwatchError("cannot reach the broker (y)")]
    with pytest.raises(WormwatchError, match=r"\(y\)"):
        screen.show_view(ClusterConfig(), watch_s=5, console=Console(file=out, width=120))


def test_a_central_shows_the_keys_its_full_tables_refused_and_dropped() -> None:
    # DeltaMerger counted them apart, and the central's snapshot read the aggregate's
    # counts: 0 refused, in no metric, whatever its tables refused or dropped
    c = central(ClusterConfig(shards=4))
    c.agg._pairs = KeyTable(8)
    c.agg._pairs.keep_latest()
    day_us = 86_400_000_000
    scan = [(T0 + i, "192.0.2.1", f"198.51.100.{i}", KIND_SYN, 445, 0, b"") for i in range(12)]
    later = [(T0 + 2 * day_us + i, "192.0.2.2", f"203.0.113.{i}", KIND_SYN, 445, 0, b"")
             for i in range(3)]  # fmt: skip
    for d in run("east", scan) + run("east", later):
        c.apply(d)
    assert c.agg.counts().keys_refused == 4
    snap = snapshot(c, "central")
    # 8 of the scanner's 12 targets fit; two days later (past the window) they went
    assert (snap.keys_refused, snap.keys_dropped) == (4, 8)
    served = {m.name: m.samples[0].value for m in hosts(MetricState(), snap) if m.samples}
    assert served["wormwatch_distinct_keys_refused"] == 4
    assert served["wormwatch_distinct_keys_dropped"] == 8


def test_the_view_into_a_file_or_pipe_shows_whole_numbers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wormwatch view > file` (or a pipe) was drawn 80 columns wide: the score 100.0
    came out as "1…", 1,989 SYNs as "1…" and the MX column empty."""
    from wormwatch.present.live import cluster as screen

    hosts = [{"src_ip": "192.0.2.99", "score": 100.0, "verdicts": ["mx-client", "smb-scan",
              "bot-sync"], "queries": 1376, "mx": 114, "syns": 1989, "syn_targets": 508,
              "sensors": ["backfill"]}]  # fmt: skip
    view = merge_top([{"central": "central-0-15", "hosts": hosts, "sensors": []}])
    monkeypatch.setattr(screen, "fetch_view", lambda _cluster: view)
    monkeypatch.delenv("COLUMNS", raising=False)
    screen.show_view(ClusterConfig(), watch_s=None)
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "192.0.2.99" in line]
    assert len(rows) == 1, out
    row = rows[0]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells == ["192.0.2.99", "100.0", "mx-client smb-scan bot-sync", "1,376", "114",
                     "1,989", "508", "backfill"]  # fmt: skip


def test_the_view_on_an_80_column_terminal_keeps_the_numbers_whole() -> None:
    """At 80 columns every column was cut alike: the score read "…", MX was empty."""
    from rich.console import Console

    from wormwatch.present.live.cluster import view_screen

    hosts = [{"src_ip": "2001:db8:0:1::a1", "score": 100.0, "verdicts": ["mx-client",
              "smb-scan", "bot-sync"], "queries": 1376, "mx": 114, "syns": 1989,
              "syn_targets": 508, "sensors": ["backfill", "uplink-a"]}]  # fmt: skip
    view = merge_top([{"central": "central-0-15", "hosts": hosts, "sensors": []}])
    console = Console(width=80, record=True, force_terminal=False)
    console.print(view_screen(view))
    lines = console.export_text().splitlines()
    row = next(line for line in lines if "2001:db8" in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[1] == "100.0"
    assert cells[3:7] == ["1,376", "114", "1,989", "508"]
    assert max(len(line) for line in lines) <= 80
