"""The live table's filter over every tracked host: the real pipeline and presenter,
keys typed, the screen's bytes read back; the finder's ranking and evictions."""

from __future__ import annotations

import io
import itertools
from dataclasses import replace

import numpy as np
import pyte
from rich.console import Console

from wormwatch.config import load_config
from wormwatch.finder import RETEST_S
from wormwatch.model import Batch, Snapshot
from wormwatch.pipeline import Pipeline
from wormwatch.present.live.keys import Key, KeyEvent
from wormwatch.present.live.tui import TuiPresenter

from testkit.fakes import ScriptedKeys, ScriptedSource
from testkit.frames import make_batch, syn

QUIET = "203.0.113.77"
T0_US = 1_767_225_600_000_000


def _busy_and_quiet(n_busy: int) -> list[Batch]:
    """``n_busy`` hosts with 2..n_busy+1 SYNs each, then the quiet host with one
    SYN (it ranks last); then one SYN a batch, so each loop is a refresh."""
    frames = [
        (1, syn(445, src=f"198.51.100.{h + 1}", dst=f"192.0.2.{k + 1}", sport=1000 + k))
        for h in range(n_busy)
        for k in range(h + 2)
    ]
    frames.append((1, syn(445, src=QUIET, dst="192.0.2.1")))
    first = make_batch(frames, ts_us=[T0_US + k for k in range(len(frames))])
    more = [
        make_batch([(1, syn(445, src="198.51.100.1", dst="192.0.2.9"))], ts_us=[T0_US + 10**6 + k])
        for k in range(6)
    ]
    return [first, *more]


def _run(batches: list[Batch], keys: list[list[KeyEvent]], max_hosts: int = 100_000) -> str:
    """The batches through the pipeline into the real presenter: every byte it wrote."""
    out = io.StringIO()
    console = Console(file=out, width=160, height=40, force_terminal=True, color_system=None)
    ticks = itertools.count()
    cfg = replace(load_config(None), max_hosts=max_hosts)
    with TuiPresenter(console=console, keys=ScriptedKeys(keys), refresh_per_s=4.0) as tui:
        pipe = Pipeline(
            cfg, source_name="t", presenter=tui, decode_ahead=False,
            clock=lambda: float(next(ticks)),
        )  # fmt: skip
        pipe.run(ScriptedSource(batches))
    return out.getvalue()


def _final_screen(text: str) -> str:
    """The screen as a terminal shows it before the presenter leaves it."""
    screen = pyte.Screen(160, 40)
    screen.set_mode(pyte.modes.LNM)  # "\n" is a new line, as the tty's onlcr makes it
    pyte.Stream(screen).feed(text[: text.rindex("\x1b[?1049l")])
    return "\n".join(screen.display)


def test_the_filter_finds_a_host_ranked_below_the_top_fifty_and_opens_its_detail() -> None:
    """The filter searched only the 50 hosts a snapshot carries: a host ranked
    51st or lower was "no host of the 50 highest-scored" although the sensor
    tracked it. Typed here through the presenter: the quiet host's row, its
    detail panel and a footer of one row of one."""
    typed: list[KeyEvent] = ["/", *QUIET, Key.ENTER]
    text = _run(_busy_and_quiet(60), [[], typed, [Key.ENTER]])
    final = _final_screen(text)
    assert "highest-scored" not in text
    assert f"▸{QUIET}" in final
    assert f"{QUIET}  score 0  no verdict" in final  # the detail panel's title
    assert "SYN 135 0  139 0  445 1" in final
    assert "hosts 1-1 of 1  sort score  filter 203.0.113.77" in final


def test_a_prefix_of_many_hosts_shows_the_best_fifty_and_counts_them_all() -> None:
    text = _run(_busy_and_quiet(60), [[], ["/", *"198.51.100.", Key.ENTER]])
    final = _final_screen(text)
    assert "of top 50 of 60 matching" in final
    # the busiest host first, the quiet one (not a match) nowhere
    assert "198.51.100.60" in final
    assert QUIET not in final


def test_a_filter_matching_no_tracked_host_says_all_were_searched() -> None:
    text = _run(_busy_and_quiet(3), [[], ["/", *"2001:db8:", Key.ENTER]])
    assert "no host of the 4 tracked matches filter 2001:db8:" in text


class _Finding:
    """A presenter that asks each snapshot's finder for ``text``, and the
    pipeline's whole ranking for the same hosts."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pipe: Pipeline | None = None
        self.found: list[tuple[list[str], int]] = []
        self.expected: list[tuple[list[str], int]] = []

    def start(self) -> None: ...
    def update(self, snapshot: Snapshot) -> None:
        assert snapshot.find_hosts is not None
        assert self.pipe is not None
        views, n = snapshot.find_hosts(self.text)
        self.found.append(([v.state.addr for v in views], n))
        every = [v.state.addr for v in self.pipe.host_views()]
        matching = [addr for addr in every if addr.startswith(self.text)]
        self.expected.append((matching[:50], len(matching)))

    def poll_quit(self) -> bool:
        return False

    def stop(self, final: Snapshot) -> None:
        self.update(final)

    def close(self) -> None: ...


def test_the_finder_ranks_as_the_judge_and_follows_evictions() -> None:
    """A host table of 40 and 90 hosts coming in batches: later batches evict
    hosts the finder has tested. At every refresh its answer is the pipeline's
    whole ranking cut to the matching hosts."""
    frames = [
        (1, syn(445, src=f"198.51.100.{h + 1}", dst=f"192.0.2.{k + 1}", sport=1000 + k))
        for h in range(60)
        for k in range(1 + h % 7)
    ]
    frames += [(1, syn(445, src=f"203.0.113.{h + 1}")) for h in range(30)]
    order = np.random.default_rng(5).permutation(len(frames))
    frames = [frames[k] for k in order]
    batches = [
        make_batch(frames[k : k + 25], ts_us=[T0_US + j for j in range(k, len(frames[: k + 25]))])
        for k in range(0, len(frames), 25)
    ]
    shown = _Finding("198.51.100.")
    ticks = itertools.count()
    pipe = Pipeline(
        replace(load_config(None), max_hosts=40), source_name="t", presenter=shown,
        decode_ahead=False, clock=lambda: RETEST_S * next(ticks),
    )  # fmt: skip
    shown.pipe = pipe
    pipe.run(ScriptedSource(batches))
    assert pipe.agg.counts().hosts_evicted > 0
    assert len(shown.found) == len(batches) + 1
    assert shown.found == shown.expected


def test_hosts_that_arrive_later_are_searched_at_most_every_retest_s() -> None:
    """A new filter text searches every tracked host at once; hosts that arrive
    after it are searched on the first call ``RETEST_S`` wall seconds later."""
    now = [0.0]
    pipe = Pipeline(load_config(None), source_name="t", decode_ahead=False, clock=lambda: now[0])

    def found() -> tuple[list[str], int]:
        views, n = pipe.finder.find("198.51.100.")
        return [v.state.addr for v in views], n

    first, second = (make_batch([(1, syn(src=f"198.51.100.{h}"))], ts_us=[T0_US]) for h in (1, 2))
    pipe.run(ScriptedSource([first]))
    assert found() == (["198.51.100.1"], 1)
    pipe.run(ScriptedSource([second]))
    now[0] = RETEST_S - 0.1
    assert found() == (["198.51.100.1"], 1)
    now[0] = RETEST_S
    assert found() == (["198.51.100.1", "198.51.100.2"], 2)
    # a new text searches every host at once, whenever it comes
    views, n = pipe.finder.find("198.51.100.2")
    assert ([v.state.addr for v in views], n) == (["198.51.100.2"], 1)
