"""The sensors panel of the multi-sensor mode: on the central's live screen it
sits between the hosts and the footer and never takes more than half the body."""

from __future__ import annotations

from rich.console import Console

from wormwatch.model import Snapshot
from wormwatch.present.live.sensors import sensors_table
from wormwatch.present.live.table import build_screen
from wormwatch.present.live.view import ViewState

from testkit.tui_fakes import snapshot


def _with_sensors(n: int) -> Snapshot:
    rows = [
        {"sensor": f"s{i}", "packets_per_s": 1200.4, "kernel_dropped": 3, "heartbeat_age_s": 1.2,
         "lag_s": 0.0, "newest_bin": 29474490, "bin_s": 60, "buffered": 0,
         "clock_skewed": i == 1}
        for i in range(n)
    ]  # fmt: skip
    snap = snapshot()
    snap.sensors = rows
    return snap


def _render(snap: Snapshot, height: int, width: int = 120) -> list[str]:
    console = Console(record=True, width=width, height=height, color_system=None)
    console.print(build_screen(snap, width=width, height=height, state=ViewState()))
    return console.export_text().splitlines()


def test_the_sensors_panel_takes_at_most_half_the_body() -> None:
    lines = _render(_with_sensors(3), 30)
    assert len(lines) == 30
    text = "\n".join(lines)
    assert next(line for line in lines if "SKEWED" in line).startswith("│ s1 ")
    assert "1,200" in text
    assert "2026-01-15 09:31" in text
    assert lines[-1].startswith("hosts ")  # the footer stays last
    many = _render(_with_sensors(40), 30)
    assert len(many) == 30
    title = next(line for line in many if "sensors (" in line)
    shown = int(title.split("(")[1].split()[0])
    assert 0 < shown < 40
    assert f"s{shown - 1} " in "\n".join(many)
    assert f"s{shown} " not in "\n".join(many)
    # no panel without sensors: the sensor's own table is unchanged
    assert "sensors" not in "\n".join(_render(snapshot(), 30))


def test_a_narrow_screen_keeps_the_panel_title_on_one_line() -> None:
    """The panel's height is counted with a one-line title; at 15 columns or less
    "sensors (2 of 3)" wrapped, and the screen was a line taller than the terminal."""
    for width in range(8, 24):
        lines = _render(_with_sensors(3), 24, width)
        assert len(lines) == 24, width
        assert lines[-1].startswith("hosts "), width


def test_untrusted_sensor_names_and_missing_fields() -> None:
    console = Console(record=True, width=120, color_system=None)
    console.print(sensors_table([{"sensor": "evil\x1b[31m[bold]x"}, {}]))
    text = console.export_text()
    assert "\x1b" not in text
    assert "[bold]" not in text
    assert "none" in text  # no heartbeat yet
