"""The end-of-run text summary's host table on terminals of every width."""

from __future__ import annotations

import io
from functools import cache

from rich.console import Console

from wormwatch.config import load_config
from wormwatch.pipeline import Pipeline, RunResult
from wormwatch.present.sinks.text import summary
from wormwatch.source.pcapfile import open_replay

from testkit.paths import DEMO, DEMO_CONFIG


@cache
def _demo() -> RunResult:
    return Pipeline(load_config(str(DEMO_CONFIG)), source_name="demo").run(open_replay([str(DEMO)]))


def _screen(width: int) -> str:
    result = _demo()
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(
        summary(result.final, result.hosts, width=width)
    )
    return out.getvalue()


def _rows(text: str) -> dict[str, list[str]]:
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines()]
    return {row[0]: row for row in cells if row and row[0].startswith("192.0.2.")}


def test_a_narrow_terminal_leaves_out_columns_not_addresses_or_counts() -> None:
    """The table needs ~133 columns. At 80 every column was squeezed: addresses read
    "192.0.2.…" and SYN counts "508/…". The least-read counts now go first, said
    in a caption, and the rest stay whole."""
    text = _screen(80)
    assert max(map(len, text.splitlines())) <= 80
    rows = _rows(text)
    assert rows["192.0.2.88"] == ["192.0.2.88", "80", "smb-scan", "0", "508/508/973", "508"]
    assert rows["192.0.2.77"] == ["192.0.2.77", "60", "mx-client", "246", "0/0/0", "0"]
    assert "…" not in text
    assert "narrow terminal: PTR, AAAA, A, kw, queries left out" in " ".join(text.split())


def test_a_wide_terminal_shows_every_column() -> None:
    text = _screen(160)
    assert "left out" not in text
    rows = _rows(text)
    # host, score, verdicts, queries, A, AAAA, MX, PTR, kw, SYN 135/139/445, targets
    assert rows["192.0.2.66"] == [
        "192.0.2.66", "75", "keyword-storm", "1,376", "1,371", "0", "0", "5", "1,312", "0/0/0", "0",
    ]  # fmt: skip
