"""Replay benchmark: wormwatch against tcpdump+BPF and the dpkt reference on one large file.

Place in the flow: drives the whole pipeline (source -> decode -> classify ->
aggregate -> detect -> summary) from outside, as an operator would, and in
process stage by stage, on a mixed pcap of about 2M packets that
``scripts/bulk.py`` generates at run time (cached in ``--out`` by its
parameters, never committed). Prints one table of packets/s and ratios, and
PASS/MISS for the targets of issue 12 (steady state >= 1.0x tcpdump+BPF, stretch
1.8x; whole process >= 0.8x; a 20,000-packet replay < 0.5 s with a warm cache; the
first run with an empty cache < 8 s; peak RSS no higher than before, 224 MB). Without
tcpdump the ratios are skipped with a message. Exits 0 either way: the targets are for
humans, not CI.

Usage: python -m scripts.bench.replay [--out DIR] [--packets N] [--span S] [--pcapng]
       [--repeat R]

``--span 3600`` spreads the packets over an hour of packet time: three times the bin
boundaries the judge works at, with the flagged hosts judged again at each.
"""

from __future__ import annotations

import argparse
import compileall
import gc
import importlib.util
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.bench import bulk
from scripts.bench.tools import (
    ChildRun,
    Row,
    bpf_filter,
    dpkt_as_summary,
    dpkt_count,
    run_child,
    tcpdump_row,
)
from scripts.bench.walk import walk_rows

TARGET_RATIO = 1.0
STRETCH_RATIO = 1.8
TARGET_WHOLE_RATIO = 0.8
TARGET_STARTUP_S = 0.5  # the whole 20,000-packet replay, warm cache
TARGET_FIRST_RUN_S = 8.0
TARGET_RSS_MB = 224.0  # measured before issue 12's work: not higher
TINY_PACKETS = 20_000


def wormwatch_cmd(*args: str) -> list[str]:
    """The installed console script beside this interpreter, else ``python -m wormwatch``."""
    script = Path(sys.executable).parent / "wormwatch"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "wormwatch", *args]


# --- wormwatch, whole process and start-up -----------------------------------------


def byte_compile() -> None:
    """Writes the package's bytecode, as ``pip install`` does for an installed package.

    An editable install writes it at the first import, unless PYTHONDONTWRITEBYTECODE
    is set: then every start compiles each of the package's modules from source again
    (~60 ms of the warm 20,000-packet replay here), which no installed copy does.
    """
    spec = importlib.util.find_spec("wormwatch")
    if spec is not None and spec.origin is not None:
        compileall.compile_dir(Path(spec.origin).parent, quiet=1)


def wait_for_second_process(claims: Path, timeout_s: float = 120.0) -> None:
    """Until the first run's second process (wormwatch.firstrun), which goes on
    compiling into the cache after the first one exits, has removed its claims folder
    under ``claims``: else it competes with the warm runs for the cores and writes into
    the cold cache after that is deleted (a ww-numba-cold-* folder left in /tmp)."""
    deadline = time.monotonic() + timeout_s
    while any(claims.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)


def startup(tiny: Path, runs: int) -> tuple[ChildRun, list[float], dict[str, float]]:
    """(cold run, warm seconds per run, baselines) of ``wormwatch replay`` on ``tiny``."""
    cmd = wormwatch_cmd("replay", str(tiny), "--no-tui", "--summary", os.devnull)
    with tempfile.TemporaryDirectory(prefix="ww-numba-cold-") as cold_dir:
        claims = Path(cold_dir) / "tmp"
        claims.mkdir()
        env = {**os.environ, "NUMBA_CACHE_DIR": cold_dir, "TMPDIR": str(claims)}
        cold = run_child(cmd, env=env)
        wait_for_second_process(claims)
    if cold.returncode != 0:
        print(f"cold start-up run failed ({cold.returncode}): {cold.stderr.strip()[-400:]}")
    run_child(cmd)  # fills the default cache if it was stale
    byte_compile()
    warm = [run_child(cmd).wall_s for _ in range(max(runs, 5))]
    baselines = {}
    for label, code in (
        ("python -c pass", "pass"),
        ("import numpy", "import numpy"),
        ("import numba", "import numba"),
        ("import wormwatch.runner", "import wormwatch.runner"),
        ("+ warm_up()", "import wormwatch.runner, wormwatch.warmup as w; w.warm_up()"),
    ):
        baselines[label] = min(run_child([sys.executable, "-c", code]).wall_s for _ in range(runs))
    return cold, warm, baselines


def read_summary(path: Path) -> dict[str, dict[str, Any]]:
    """Host records of a ``--summary`` file, by source address."""
    hosts = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("event_type") == "host":
            hosts[rec["src_ip"]] = rec
    return hosts


def compare_summary(summary: dict[str, dict[str, Any]], book: dict[str, Any]) -> list[str]:
    """Differences between the replay's host counts and the generator's bookkeeping."""
    problems = []
    expected = book["hosts"]
    for addr in sorted(set(expected) ^ set(summary)):
        side = "only in the summary" if addr in summary else "missing from the summary"
        problems.append(f"{addr} {side}")
    for addr in sorted(set(expected) & set(summary)):
        got = {key: summary[addr][key] for key in expected[addr]}
        if got != expected[addr]:
            problems.append(f"{addr}: summary {got} != generator {expected[addr]}")
    return problems


# --- wormwatch in process ---------------------------------------------------------


def tcpdump_once(path: Path) -> Callable[[], tuple[int, float]] | None:
    """One timed ``tcpdump -r FILE -w /dev/null BPF`` as a child process (None without
    tcpdump), for the rounds of :func:`stage_rates`."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        return None
    argv = [tcpdump, "-r", str(path), "-w", os.devnull, bpf_filter()[0]]

    def once() -> tuple[int, float]:
        return 0, run_child(argv).wall_s

    return once


def stage_rates(path: Path, repeat: int) -> tuple[list[Row], str, list[tuple[float, float]]]:
    """Steady-state rows: the whole pipeline in process, then stages cut short; and
    (steady state, tcpdump) seconds of each round, tcpdump run in the same rounds."""
    from wormwatch.config import load_config
    from wormwatch.pipeline import BATCH_PACKETS, Pipeline
    from wormwatch.source.pcapfile import open_replay
    from wormwatch.warmup import warm_up

    t0 = time.perf_counter()
    warm_up("replay")
    note = f"warm_up() in this process: {time.perf_counter() - t0:.2f} s"
    # what start-up built lives to the end: out of the collector's sight, as the
    # console script puts it (wormwatch.collector)
    gc.freeze()
    cfg = load_config(None)

    readouts: list[tuple[int, float]] = []

    def full() -> tuple[int, float]:
        pipe = Pipeline(cfg, source_name=path.name)
        source = open_replay([str(path)], skip_ignored=True)
        t = time.perf_counter()
        result = pipe.run(source)
        elapsed = time.perf_counter() - t
        source.close()
        # the end-of-run read-out of every host (for --summary) scales with hosts,
        # not packets: timed once more here, so it can be told apart
        t = time.perf_counter()
        n_hosts = len(pipe.host_views())
        readouts.append((n_hosts, time.perf_counter() - t))
        return int(result.final.decode["packets"]), elapsed

    def upto(depth: int) -> Callable[[], tuple[int, float]]:
        def loop() -> tuple[int, float]:
            pipe = Pipeline(cfg, source_name=path.name)
            source = open_replay([str(path)], skip_ignored=True)
            n = 0
            t = time.perf_counter()
            while (batch := source.read_batch(BATCH_PACKETS)) is not None:
                n += batch.n + batch.n_skipped
                if depth >= 1:
                    events = pipe.decoder.decode(batch)
                if depth >= 2:
                    keyword_idx = pipe.classifier.classify(events)
                if depth >= 3:
                    pipe.agg.ingest(events, keyword_idx)
            elapsed = time.perf_counter() - t
            source.close()
            return n, elapsed

        return loop

    labels = ("source walk only", "+ decode", "+ classify", "+ aggregate (no detect)")
    runs: list[Callable[[], tuple[int, float]]] = [full, *(upto(d) for d in range(len(labels)))]
    tcpdump = tcpdump_once(path)
    if tcpdump is not None:
        runs.append(tcpdump)
    # Interleaved, best of at least 5: on a shared 2-core box a burst of other work
    # then slows one run of every stage rather than every run of one stage; tcpdump
    # runs in the same rounds, so each round gives a ratio of its own.
    results: list[list[tuple[int, float]]] = [[] for _ in runs]
    for _ in range(max(repeat, 5)):
        for fn, out in zip(runs, results, strict=True):
            out.append(fn())
    pairs = [(a[1], b[1]) for a, b in zip(results[0], results[-1], strict=True)]
    if tcpdump is not None:
        results.pop()
        runs.pop()
    best = [min(out, key=lambda r: r[1]) for out in results]
    names = ["wormwatch steady state (Pipeline.run)", *(f"  stages: {x}" for x in labels)]
    n_hosts, readout_s = min(readouts, key=lambda r: r[1])
    note += (
        f"\nPipeline.run reads out the top hosts only; every host's view (the summary's, "
        f"--summary) is read when asked for: all {n_hosts:,} hosts {readout_s:.2f} s, "
        "not in the steady state"
    )
    rows = [Row(name, *result) for name, result in zip(names, best, strict=True)]
    return rows, note, pairs if tcpdump is not None else []


def stage_breakdown(rows: list[Row]) -> list[str]:
    """ns per packet added by each stage, from the cumulative stage rows.

    The stage rows run in one thread; Pipeline.run reads and decodes in a second one
    while it aggregates, so its last difference is detect and the run loop less that
    overlap, and negative whenever the overlap saves more than they cost.
    """
    by = {r.name.strip(): r for r in rows}
    order = [
        ("source walk", None, "stages: source walk only"),
        ("decode", "stages: source walk only", "stages: + decode"),
        ("classify", "stages: + decode", "stages: + classify"),
        ("aggregate", "stages: + classify", "stages: + aggregate (no detect)"),
        ("detect + loop - overlap", "stages: + aggregate (no detect)",
         "wormwatch steady state (Pipeline.run)"),
    ]  # fmt: skip
    lines = []
    for label, before, after in order:
        cost = by[after].seconds - (by[before].seconds if before else 0.0)
        share = cost / by["wormwatch steady state (Pipeline.run)"].seconds
        ns = cost * 1e9 / max(by[after].packets, 1)
        noise = ""
        if cost < 0:
            last = after == order[-1][2]
            noise = (
                "  ("
                + ("the decode-ahead thread saved more" if last else "below the run-to-run noise")
                + ")"
            )
        lines.append(f"  {label:<23} {ns:7.1f} ns/packet {share:6.0%}{noise}")
    return lines


def profile_run(path: Path, top: int = 15) -> None:
    """cProfile of one in-process ``Pipeline.run``, the functions with most own time."""
    import cProfile
    import pstats

    from wormwatch.config import load_config
    from wormwatch.pipeline import Pipeline
    from wormwatch.source.pcapfile import open_replay

    pipe = Pipeline(load_config(None), source_name=path.name)
    source = open_replay([str(path)])
    profiler = cProfile.Profile()
    profiler.runcall(pipe.run, source)
    source.close()
    print(f"\ncProfile of Pipeline.run, top {top} by own time:")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(top)


def machine() -> str:
    """CPU count, versions and load: numbers from a loaded 2-core box are noisy."""
    import numba
    import numpy

    load = os.getloadavg()[0]
    warn = "  (other work is running: expect noise)" if load > 0.5 else ""
    return (
        f"cpus {os.cpu_count()}, python {sys.version.split()[0]}, numpy {numpy.__version__},"
        f" numba {numba.__version__}, load average {load:.2f}{warn}"
    )


# --- measure and report ------------------------------------------------------------


@dataclass(slots=True)
class Results:
    """Everything one benchmark run measured."""

    rows: list[Row]
    stage_rows: list[Row]
    tcpdump: Row | None
    dpkt: Row
    cold: ChildRun
    warm_s: list[float]
    baselines: dict[str, float]
    peak_rss_mb: float
    summary_problems: list[str]
    notes: list[str]
    # (steady state, tcpdump) seconds of each interleaved round
    pairs: list[tuple[float, float]]


def measure(path: Path, tiny: Path, book: dict[str, Any], args: argparse.Namespace) -> Results:
    """Runs every measurement of the table on ``path`` (and start-up on ``tiny``)."""
    n, repeat = book["packets"], args.repeat
    # the first cat also brings the file into the page cache for everything after it
    cat_s = min(run_child(["cat", str(path)]).wall_s for _ in range(repeat + 1))
    print(f"start-up (pcap of {TINY_PACKETS:,} packets) ...", flush=True)
    cold, warm, baselines = startup(tiny, repeat)
    print("whole process ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="ww-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        summary = tmp / "summary.jsonl"
        cmd = wormwatch_cmd("replay", str(path), "--summary", str(summary), "--no-tui")
        whole = [run_child(cmd) for _ in range(repeat)]
        failed = [r for r in whole if r.returncode != 0]
        if failed:
            raise SystemExit(
                f"wormwatch replay failed ({failed[0].returncode}): {failed[0].stderr}"
            )
        problems = compare_summary(read_summary(summary), book)
        print("in process, stage by stage ...", flush=True)
        stage_rows, warm_note, pairs = stage_rates(path, repeat)
        if path.suffix == ".pcap":
            stage_rows += walk_rows(path)  # the walker alone, on a fresh and a used mapping
        print("tcpdump ...", flush=True)
        tcpdump, tcpdump_note = tcpdump_row(path, n, repeat, tmp)
    print("dpkt ...", flush=True)
    t = time.perf_counter()
    n_dpkt, dpkt_hosts = dpkt_count(path, args.dpkt_packets)
    label = f"dpkt reference decoder (first {n_dpkt:,}, extrapolated)"
    dpkt_row = Row(label, n_dpkt, time.perf_counter() - t)
    notes = [warm_note, tcpdump_note]
    if n_dpkt == n:
        dpkt_problems = compare_summary(dpkt_as_summary(dpkt_hosts), book)
        notes.append(f"dpkt reference vs generator bookkeeping: {len(dpkt_problems)} hosts differ")
    # the median run: a run that has to compile kernels (someone just edited one) peaks
    # far higher (measured: 534 MB cold against 293 MB warm), and that is compile
    # cost, not replay cost; every run is shown
    peak_rss = sorted(r.max_rss_mb for r in whole)[len(whole) // 2]
    each = "/".join(f"{r.max_rss_mb:.0f}" for r in whole)
    best = min(r.wall_s for r in whole)
    rows = [
        Row("wormwatch replay (whole process)", n, best, f"peak RSS {each} MB"),
        *stage_rows,
        Row("cat FILE > /dev/null", n, cat_s),
        *([tcpdump] if tcpdump else []),
        dpkt_row,
    ]
    return Results(rows, stage_rows, tcpdump, dpkt_row, cold, warm, baselines, peak_rss,
                   problems, notes, pairs)  # fmt: skip


def print_table(res: Results) -> None:
    """The table of rates and ratios."""
    head = f"{'measurement':<40} {'packets':>10} {'seconds':>8} {'packets/s':>11}"
    print(f"\n{head} {'/tcpdump':>8} {'/dpkt':>7}  note")
    for row in res.rows:
        vs_tcpdump = f"{row.rate / res.tcpdump.rate:8.2f}" if res.tcpdump else f"{'n/a':>8}"
        print(
            f"{row.name:<40} {row.packets:>10,} {row.seconds:>8.3f} {row.rate:>11,.0f}"
            f" {vs_tcpdump} {row.rate / res.dpkt.rate:>7.1f}  {row.note}"
        )


def verdict(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "MISS")


def report(res: Results, n_hosts: int) -> None:
    """Table, stage costs, start-up, correctness check and the targets."""
    print_table(res)
    print("\nwhere the steady-state time goes (differences of the cumulative stage rows):")
    print("\n".join(stage_breakdown(res.stage_rows)))
    warm_s = sorted(res.warm_s)[len(res.warm_s) // 2]
    runs = ", ".join(f"{w:.2f}" for w in res.warm_s)
    cold = res.cold
    print(f"\nwormwatch replay of {TINY_PACKETS:,} packets, whole process:")
    print(f"  empty numba cache (first run): {cold.wall_s:.2f} s wall, {cold.cpu_s:.2f} s CPU")
    print(f"  warm cache: {warm_s:.2f} s (median of {runs})")
    print("  baselines: " + ", ".join(f"{k} {v:.2f} s" for k, v in res.baselines.items()))
    for note in res.notes:
        print(note)
    equal = n_hosts - len(res.summary_problems)
    print(f"--summary vs generator bookkeeping: {equal:,} of {n_hosts:,} hosts equal")
    for problem in res.summary_problems[:5]:
        print("  " + problem)
    tcpdump = res.tcpdump
    print("\ntargets (issue 12):")
    if tcpdump is None:
        print("  n/a  the ratios to tcpdump: tcpdump is not installed (apt-get install tcpdump)")
    else:
        # judged on the rounds that ran both (a burst of other work then slows both
        # sides of a pair); the best of each, timed apart, is the table's ratio
        ratios = sorted(t / w for w, t in res.pairs) or [res.stage_rows[0].rate / tcpdump.rate]
        steady = ratios[len(ratios) // 2]
        stretch = verdict(steady >= STRETCH_RATIO)
        ok = steady >= TARGET_RATIO
        each = ", ".join(f"{r:.2f}" for r in ratios)
        print(
            f"  {verdict(ok)} steady state / tcpdump+BPF >= {TARGET_RATIO}: {steady:.2f}"
            f" (median of {len(ratios)} rounds that ran both: {each})"
        )
        print(f"       (stretch >= {STRETCH_RATIO}: {stretch})")
        whole = res.rows[0].rate / tcpdump.rate
        ok = whole >= TARGET_WHOLE_RATIO
        print(f"  {verdict(ok)} whole process / tcpdump+BPF >= {TARGET_WHOLE_RATIO}: {whole:.2f}")
    ok = warm_s < TARGET_STARTUP_S
    print(
        f"  {verdict(ok)} {TINY_PACKETS:,}-packet replay, warm cache < {TARGET_STARTUP_S} s:"
        f" {warm_s:.2f} s"
    )
    ok = cold.wall_s < TARGET_FIRST_RUN_S
    print(
        f"  {verdict(ok)} first run, empty cache < {TARGET_FIRST_RUN_S} s: {cold.wall_s:.2f} s"
        f" ({cold.cpu_s:.2f} s CPU, without the second process once the first has ended)"
    )
    ok = res.peak_rss_mb <= TARGET_RSS_MB
    shown = f"{res.peak_rss_mb:.0f} MB (median run)"
    print(
        f"  {verdict(ok)} peak RSS of the whole-process replay <= {TARGET_RSS_MB:.0f} MB: {shown}"
    )
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  (this benchmark process itself peaked at {self_rss:.0f} MB; not a target)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = Path(tempfile.gettempdir()) / "wormwatch-bench"
    parser.add_argument("--out", type=Path, default=default_out, help="cache of generated pcaps")
    parser.add_argument("--packets", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--span",
        type=float,
        default=1200.0,
        help="seconds of packet time the capture spans (more bin boundaries to judge at)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    parser.add_argument(
        "--pcapng",
        action="store_true",
        help="replay a pcapng copy of the capture (tcpdump reads the same copy)",
    )
    parser.add_argument(
        "--dpkt-packets", type=int, default=200_000, help="read by the dpkt reference"
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile one Pipeline.run")
    args = parser.parse_args()
    print(f"command: {' '.join(sys.argv)}\n{machine()}")
    t0 = time.perf_counter()
    path, book, fresh = bulk.cached(
        args.out, n_packets=args.packets, seed=args.seed, span_s=args.span
    )
    if args.pcapng:
        path = bulk.as_pcapng(path)
    how = f"generated in {time.perf_counter() - t0:.1f} s" if fresh else "cached"
    print(f"file: {path} ({how})\n{bulk.describe(book)}\n")
    tiny, _, _ = bulk.cached(args.out, n_packets=TINY_PACKETS, seed=args.seed)
    report(measure(path, tiny, book, args), len(book["hosts"]))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    if args.profile:
        profile_run(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
