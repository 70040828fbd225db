"""The README's commands, run through the installed ``wormwatch`` console script.

A replay of two taps (a pcap and a pcapng, the demo split in two) gives the summary
and alerts of the whole capture; ``--speed`` gives the same summary as an unpaced
replay; and hostile names reach a real terminal only as visible escapes, in the demo
and in a replay whose table shows them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from scripts.samples.demo import HOSTILE_NAMES
from testkit.frames import query
from testkit.paths import DEMO
from testkit.pcap import dpkt_records, is_udp, pcap_file, write_pcap, write_pcapng
from testkit.terminal import PtyApp, console_script


def wormwatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*console_script(), *args], capture_output=True, text=True, timeout=300, check=False
    )


def outputs(folder: Path, *args: str) -> tuple[list[dict[str, object]], str]:
    """``wormwatch replay ARGS --no-tui`` -> (summary records, alerts text)."""
    folder.mkdir()
    summary, alerts = folder / "hosts.jsonl", folder / "alerts.jsonl"
    done = wormwatch(
        "replay", *args, "--no-tui", "--summary", str(summary), "--alerts", str(alerts)
    )
    assert done.returncode == 0, done.stderr
    assert "capture" in done.stdout  # the text summary
    records = [json.loads(line) for line in summary.read_text().splitlines()]
    return records, alerts.read_text()


def as_taps(records: list[dict[str, object]]) -> list[dict[str, object]]:
    """Records without what two taps change: the source's name, and the bytes counted
    (the pcapng tap carries IPv4 frames as raw IP, 14 bytes shorter each)."""
    out = [{k: v for k, v in r.items() if k != "source"} for r in records]
    decode = out[-1]["decode"]
    assert isinstance(decode, dict)
    out[-1]["decode"] = {k: v for k, v in decode.items() if k != "bytes"}
    return out


@pytest.fixture(scope="module")
def unpaced(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, object]], str]:
    return outputs(tmp_path_factory.mktemp("readme") / "unpaced", str(DEMO))


def test_replay_of_a_pcap_and_a_pcapng_is_the_whole_capture(
    tmp_path: Path, unpaced: tuple[list[dict[str, object]], str]
) -> None:
    """``wormwatch replay tap1.pcap tap2.pcapng --summary ... --alerts ... --no-tui``."""
    demo = dpkt_records(DEMO)
    tap1 = write_pcap(tmp_path / "tap1.pcap", [r for r in demo if is_udp(r)])
    tap2 = write_pcapng(tmp_path / "tap2.pcapng", [r for r in demo if not is_udp(r)])
    records, alerts = outputs(tmp_path / "taps", str(tap1), str(tap2))
    assert records[-1]["source"] == "tap1.pcap +1 more"
    assert as_taps(records) == as_taps(unpaced[0])
    assert alerts == unpaced[1]
    assert alerts.count("\n") >= 4


def test_speed_gives_the_summary_of_an_unpaced_replay(
    tmp_path: Path, unpaced: tuple[list[dict[str, object]], str]
) -> None:
    """``wormwatch replay outbreak.pcap --speed 60``, faster: 30 min of packets in ~3 s."""
    records, alerts = outputs(tmp_path / "paced", str(DEMO), "--speed", "600")
    assert records == unpaced[0]
    assert alerts == unpaced[1]


def raw_labels() -> list[bytes]:
    """What must never reach a terminal as it is: each hostile name's first label
    (escape sequences, BEL, tab, rich markup)."""
    labels = [name.split(b".")[0] for name in HOSTILE_NAMES]
    assert all(any(b < 0x20 or b in b"[]" for b in label) for label in labels)
    return labels


def test_hostile_names_reach_the_terminal_only_escaped(tmp_path: Path) -> None:
    """``wormwatch replay capture.pcap`` (live table): each of four hosts asks one of the
    demo's hostile names first, so the table's sample column shows them all."""
    hosts = [f"192.0.2.{10 + i}" for i in range(len(HOSTILE_NAMES))]
    start_s = 1_768_467_600
    rows = [
        (start_s + t, 0, frame, frame)
        for t in range(8)
        for i, name in enumerate(HOSTILE_NAMES)
        for frame in [query(name if t == 0 else b"www.example.com", src=hosts[i])]
    ]
    capture = tmp_path / "hostile.pcap"
    capture.write_bytes(pcap_file([(s, us, len(f), f) for s, us, f, _ in rows]))
    app = PtyApp("replay", str(capture), "--speed", "4", cols=160, rows=30)
    try:
        screen = app.wait_for("the four hosts", lambda s: all(h in s for h in hosts))
        assert app.wait_exit() == 0
    finally:
        app.close()
    # shown, as visible escapes: ESC as \x1b, BEL as \x07, markup brackets as \x5b..\x5d
    assert "\\x1b\\x5b31mred" in screen
    assert "\\x1b\\x5d0;owned\\x07" in screen
    assert "\\x5bbold\\x5dboss" in screen
    assert "bell\\x07tab\\x09" in screen
    for label in raw_labels():
        assert label not in app.raw, label


def test_demo_never_writes_its_hostile_names_raw() -> None:
    """``wormwatch demo`` to its end: none of the capture's hostile labels in the byte
    stream (its table never shows them: the hostile client's samples are ordinary
    names, so the replay test above is the one that puts them on screen)."""
    app = PtyApp("demo", "--speed", "600")
    try:
        app.wait_for("the finished replay", lambda s: "replay finished" in s)
        app.send(b"q")
        assert app.wait_exit() == 0
    finally:
        app.close()
    for label in raw_labels():
        assert label not in app.raw, label
