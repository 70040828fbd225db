"""The benchmark's input generator, checked end to end on a small file.

``scripts/bench/bulk.py`` writes the file ``scripts/bench/replay.py``
measures and keeps its own bookkeeping of what every source host sent. Here a
5,000-packet file must (1) decode in the slow dpkt reference to exactly that
bookkeeping, so the generator says what it wrote, and (2) come out of
``wormwatch replay --summary`` with the same per-host counts, so the benchmark
times a pipeline that counts right. No timing is asserted.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from wormwatch.cli import main
from wormwatch.model import ST_IGNORED, ST_OK

from scripts.bench import bulk, judging
from testkit.reference import host_counts, reference_events

N_PACKETS = 5000
SCANNER, STORM4, STORM6, MX_HOST = (
    "203.0.113.66",
    "198.51.100.10",
    "2001:db8:bad::66",
    "198.51.100.20",
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("bench") / "bulk.pcap"
    book = bulk.generate(path, n_packets=N_PACKETS, seed=7, span_s=600.0)
    assert json.loads(path.with_suffix(".json").read_text()) == book
    return path, book


def test_file_holds_every_population(generated: tuple[Path, dict[str, Any]]) -> None:
    _path, book = generated
    assert book["packets"] == N_PACKETS
    assert book["dns_tcp_two_message_segments"] > 0
    assert book["vlan_frames"]["1q"] > 0
    assert book["vlan_frames"]["qinq"] > 0
    assert book["ipv6_frames"] > 0
    hosts = book["hosts"]
    assert all(hosts[SCANNER]["syn"][port] > 0 for port in ("135", "139", "445"))
    assert hosts[SCANNER]["syn_targets"] > 1
    for storm in (STORM4, STORM6):
        assert hosts[storm]["keyword_queries"] > 0.9 * hosts[storm]["queries"]["total"] > 0
    assert hosts[MX_HOST]["queries"]["MX"] > 0
    assert any(
        ":" in addr and rec["queries"]["total"] for addr, rec in hosts.items() if addr != STORM6
    )


def test_bookkeeping_equals_the_reference_decoder(generated: tuple[Path, dict[str, Any]]) -> None:
    path, book = generated
    statuses, events = reference_events(path)
    by_status = Counter(statuses)
    assert by_status[ST_OK] == book["status"]["ok"]
    assert by_status[ST_IGNORED] == book["status"]["ignored"]
    assert len(statuses) == N_PACKETS
    ref = {addr: bulk.as_book(counts) for addr, counts in host_counts(events).items()}
    assert ref == book["hosts"]


def test_replay_summary_counts_what_the_generator_wrote(
    generated: tuple[Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, book = generated
    summary = tmp_path / "summary.jsonl"
    assert main(["replay", str(path), "--summary", str(summary), "--no-tui"]) == 0
    capsys.readouterr()
    records = [json.loads(line) for line in summary.read_text().splitlines()]
    got = {
        rec["src_ip"]: {
            key: rec[key] for key in ("queries", "keyword_queries", "syn", "syn_targets")
        }
        for rec in records
        if rec["event_type"] == "host"
    }
    for addr in (SCANNER, STORM4, STORM6, MX_HOST):
        assert got[addr] == book["hosts"][addr], addr
    assert got == book["hosts"]


def test_the_judging_benchmark_flags_every_scanner_it_times() -> None:
    """``scripts/bench/judging.py`` times judging an outbreak: every scanner it
    makes must be flagged, or it would time hosts the judge skips."""
    result = judging.measure(20, 2.0)
    assert result["flagged"] == 20
    assert result["boundaries"] == 120
    assert result["judging_s"] > 0


def test_the_flood_benchmark_leaves_no_files_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its work directory (pcaps, summaries of up to ~100,000 hosts each, the config)
    is removed at the end unless ``--keep``; the scanner is still found."""
    from scripts.bench import flood

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["flood", "--sizes", "300"])
    assert flood.main() == 0
    assert "smb-scan, 400 targets" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_the_stage_breakdown_does_not_call_the_decode_ahead_overlap_noise() -> None:
    """The stage rows run in one thread, Pipeline.run in two: the last difference is
    systematically negative when the overlap outweighs detect (measured: 0.350 s for
    Pipeline.run against 0.477 s for the stages up to aggregate), which is not noise."""
    from scripts.bench.replay import stage_breakdown
    from scripts.bench.tools import Row

    names_s = (
        ("wormwatch steady state (Pipeline.run)", 0.350),
        ("  stages: source walk only", 0.209),
        ("  stages: + decode", 0.289),
        ("  stages: + classify", 0.284),
        ("  stages: + aggregate (no detect)", 0.477),
    )
    lines = stage_breakdown([Row(name, 2_000_000, s) for name, s in names_s])
    assert "classify" in lines[2]
    assert "noise" in lines[2]
    assert "detect" in lines[4]
    assert "noise" not in lines[4]
    assert "decode-ahead thread" in lines[4]


@pytest.mark.parametrize("module", ["judging", "live"])
def test_a_baseline_that_is_not_a_checkout_is_one_error_line(
    module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--baseline DIR`` without DIR/src/wormwatch used to run the installed wormwatch
    as the baseline and print its ratios as if they were the other commit's."""
    import importlib

    bench = importlib.import_module(f"scripts.bench.{module}")
    argv = [module, "--baseline", str(tmp_path / "missing"), "--repeat", "1"]
    if module == "judging":
        argv += ["--scanners", "1", "--hours", "0.1"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        bench.main()
    assert exc.value.code == 2
    assert "not a wormwatch checkout" in capsys.readouterr().err


def test_the_decode_benchmark_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m scripts.bench.decode`` calls the kernel directly, with every column
    the kernel takes (it once lagged one behind and stopped with a TypeError)."""
    from scripts.bench import decode

    monkeypatch.setattr(sys, "argv", ["decode", "--packets", "2000", "--repeat", "1"])
    decode.main()
    out = capsys.readouterr().out
    assert "kernel alone:" in out
    assert "'packets': 2000" in out


def test_the_cold_start_up_run_leaves_no_cache_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first run's second process compiles on after the first has exited; the
    benchmark waits for it, so its empty cache is really deleted (it used to come back
    as a ww-numba-cold-* folder, written after the delete) and the warm runs after it
    do not share the cores with it."""
    from scripts.bench import replay

    tiny = tmp_path / "tiny.pcap"
    bulk.generate(tiny, n_packets=2000, seed=7, span_s=60.0)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    cold, warm, _ = replay.startup(tiny, 1)
    assert cold.returncode == 0
    assert len(warm) == 5
    assert list(scratch.iterdir()) == []
