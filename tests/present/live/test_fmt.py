"""Number and bar formatting of the live table."""

from __future__ import annotations

import pytest

from wormwatch.present.live import fmt


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (0.25, "0.25"), (4.2, "4.2"), (7, "7"), (1234, "1234"), (12_345, "12.3k"),
     (123_456, "123k"), (1_234_567, "1.2M"), (-3, "-3"),
     # values that round up across a boundary: 5 characters, the next unit when needed
     (99_960, "100k"), (999_960, "1.0M"), (99_960_000, "100M"), (999_960_000, "1.0G")],
)  # fmt: skip
def test_compact(value: float, text: str) -> None:
    assert fmt.compact(value) == text
    assert len(fmt.compact(value)) <= 5


def test_sparkline_bar_ellipsis_age() -> None:
    assert fmt.sparkline([0, 1, 2, 4, 8], 5) == " ▁▂▄█"
    assert fmt.sparkline([5, 0, 9], 2) == " █"  # the newest values only
    assert fmt.sparkline([3], 4) == "   █"  # padded on the left (older bins)
    assert fmt.sparkline([0, 0], 3) == "   "
    assert fmt.bar(0.5, 4) == "██  "
    assert fmt.bar(1.5, 3) == "███"
    assert fmt.bar(1 / 16, 2) == "▏ "
    assert fmt.middle_ellipsis("2001:db8:0:42::dead:beef", 11) == "2001:…:beef"
    assert fmt.middle_ellipsis("10.0.0.1", 11) == "10.0.0.1"
    assert [fmt.age(s) for s in (0.4, 59, 61, 7200, 90_000)] == ["0s", "59s", "1m", "2h", "1d"]
    assert fmt.duration(3725) == "1:02:05"
    assert fmt.duration(65) == "1:05"
