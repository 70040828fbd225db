"""Captures that overlap in time: what the sensor says must not depend on how the packets
of one capture were spread over files, nor on time going backwards.

The reference is the whole demo capture. Its packets are split as two taps would split
them (UDP in one file, everything else in another) and replayed merged (in either order),
concatenated (time jumps back at the second file), as one file whose time goes back, and
with the small reorderings of multi-queue capture cards.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wormwatch.cli import main

from testkit.paths import DEMO
from testkit.pcap import Record, dpkt_records, is_udp, write_pcap, write_pcapng

Hosts = list[dict[str, object]]


def replay_outputs(tmp_path: Path, name: str, *args: str) -> tuple[Hosts, list[dict[str, object]]]:
    summary, alerts = tmp_path / f"{name}.summary", tmp_path / f"{name}.alerts"
    code = main(["replay", *args, "--no-tui", "--summary", str(summary), "--alerts", str(alerts)])
    assert code == 0
    hosts = [json.loads(line) for line in summary.read_text().splitlines()]
    assert hosts[-1]["event_type"] == "network"
    return hosts[:-1], [json.loads(line) for line in alerts.read_text().splitlines()]


@pytest.fixture(scope="module")
def demo() -> list[Record]:
    return dpkt_records(DEMO)


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> tuple[Hosts, list[dict[str, object]]]:
    hosts, alerts = replay_outputs(tmp_path_factory.mktemp("whole"), "whole", str(DEMO))
    verdicts = {v for h in hosts for v in h["verdicts"]}  # type: ignore[attr-defined]
    assert {"smb-scan", "keyword-storm", "mx-client", "bot-sync"} <= verdicts
    return hosts, alerts


@pytest.fixture(scope="module")
def taps(demo: list[Record], tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """UDP in a microsecond pcap; the rest in a nanosecond pcapng mixing link types."""
    folder = tmp_path_factory.mktemp("taps")
    udp = write_pcap(folder / "udp.pcap", [r for r in demo if is_udp(r)])
    rest = write_pcapng(folder / "rest.pcapng", [r for r in demo if not is_udp(r)])
    return [str(udp), str(rest)]


def judged(hosts: Hosts) -> dict[object, tuple[object, ...]]:
    """Per host what the sensor concluded: counts, targets, score, verdicts."""
    keys = ("queries", "keyword_queries", "syn", "syn_targets", "score", "verdicts")
    return {h["src_ip"]: tuple(h[k] for k in keys) for h in hosts}


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_merged_taps_say_what_the_whole_capture_says(
    taps: list[str],
    whole: tuple[Hosts, list[dict[str, object]]],
    tmp_path: Path,
    order: tuple[int, int],
) -> None:
    hosts, alerts = replay_outputs(tmp_path, "merged", *(taps[k] for k in order))
    # merged by packet time, the taps are the capture: byte for byte the same records
    assert hosts == whole[0]
    assert alerts == whole[1]


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_concatenated_taps_lose_no_verdict(
    taps: list[str],
    whole: tuple[Hosts, list[dict[str, object]]],
    tmp_path: Path,
    order: tuple[int, int],
) -> None:
    files = [taps[k] for k in order]
    hosts, alerts = replay_outputs(tmp_path, "concatenated", "--concatenate", *files)
    assert judged(hosts) == judged(whole[0])
    # every host alerted on in the whole capture is alerted on, with its final verdicts
    final = {a["src_ip"]: a["verdicts"] for a in alerts if a["event_type"] == "alert"}
    expected = {a["src_ip"]: a["verdicts"] for a in whole[1] if a["event_type"] == "alert"}
    assert final == expected


def test_one_file_whose_time_goes_back_loses_no_verdict(
    demo: list[Record], whole: tuple[Hosts, list[dict[str, object]]], tmp_path: Path
) -> None:
    # what `mergecap -a udp.pcap tcp.pcap` writes: one file, time jumps back an hour's worth
    path = write_pcap(
        tmp_path / "backwards.pcap",
        [r for r in demo if is_udp(r)] + [r for r in demo if not is_udp(r)],
    )
    hosts, _ = replay_outputs(tmp_path, "backwards", str(path))
    assert judged(hosts) == judged(whole[0])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_small_reorderings_change_nothing(
    demo: list[Record],
    whole: tuple[Hosts, list[dict[str, object]]],
    tmp_path: Path,
    seed: int,
) -> None:
    # multi-queue capture cards hand over neighbouring packets out of order: swap about
    # a third of the neighbours that are at most 3 ms apart
    rng = np.random.default_rng(seed)
    records = list(demo)
    n_swapped = 0
    i = 0
    while i < len(records) - 1:
        if records[i + 1][0] - records[i][0] <= 3000 and rng.random() < 0.3:
            records[i], records[i + 1] = records[i + 1], records[i]
            n_swapped += 1
            i += 1
        i += 1
    assert n_swapped > 500
    path = write_pcap(tmp_path / "reordered.pcap", records)
    hosts, alerts = replay_outputs(tmp_path, "reordered", str(path))
    assert hosts == whole[0]
    assert alerts == whole[1]


def test_report_merges_the_taps_too(taps: list[str], tmp_path: Path) -> None:
    whole, merged = tmp_path / "whole", tmp_path / "merged"
    assert main(["report", str(DEMO), "-o", str(whole)]) == 0
    assert main(["report", *taps[::-1], "-o", str(merged)]) == 0
    hosts = [json.loads(line) for line in (merged / "hosts.jsonl").read_text().splitlines()]
    assert any(h.get("verdicts") for h in hosts)
    assert hosts[:-1] == [
        json.loads(line) for line in (whole / "hosts.jsonl").read_text().splitlines()[:-1]
    ]
