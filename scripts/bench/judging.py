"""Judging at scale: an outbreak of flagged hosts, judged at every bin boundary
and at every display refresh.

``--scanners`` hosts each reach 2 new SMB targets every 5 minutes of packet
time for ``--hours`` (so each is flagged smb-scan for the whole run), then go
quiet for ``--quiet-hours`` (flagged still: their activity stays in the day's
window) while one other host's queries move packet time on, fed to an
:class:`~wormwatch.aggregate.Aggregator` and a :class:`~wormwatch.judge.Judge`
the way the pipeline does: judged at each bin boundary before the new bin's
first events count. Prints the time of judging at the boundaries (also per
flagged host and boundary) and of a display refresh (``Judge.rescore``, four a
second with the live table) in the last bin, with one new event between
refreshes. Building the events is not timed.

With ``--baseline DIR`` (a worktree of another commit) the same runs in turn
with ``DIR/src`` first on the path, A B A B, and the medians' ratios are
printed. Each measurement runs in a child process of its own.

    python -m scripts.bench.judging --scanners 200 --hours 6
    python -m scripts.bench.judging --scanners 1000 --hours 1 --baseline ../wt/old
    python -m scripts.bench.judging --scanners 200 --hours 2 --quiet-hours 6
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from wormwatch.aggregate import Aggregator
from wormwatch.classify import Classifier
from wormwatch.config import load_config
from wormwatch.judge import Judge
from wormwatch.model import KIND_SYN

from scripts.bench import baseline_tree
from testkit.events import Row, make_events
from testkit.paths import REPO, child_env

T0_US = 1_700_000_000_000_000
MIN_US = 60_000_000
N_REFRESHES = 40


def _scanner(h: int) -> str:
    return f"2001:db8:1::{h + 1:x}"


def _target(k: int) -> str:
    return f"2001:db8:2::{k + 1:x}"


def measure(n_scanners: int, hours: float, quiet_hours: float = 0.0) -> dict[str, float]:
    """Judging times of ``n_scanners`` flagged scanners over ``hours``, and
    ``quiet_hours`` after them."""
    cfg = load_config(None)
    judge = Judge(cfg)
    agg = Aggregator(protect=judge.protected, max_hosts=max(100_000, 2 * n_scanners))
    classifier = Classifier()

    def ingest(rows: list[Row]) -> None:
        ev = make_events(rows)
        agg.ingest(ev, classifier.classify(ev))

    active = int(hours * 60)
    minutes = active + int(quiet_hours * 60)
    judging = 0.0
    for m in range(minutes):
        t = T0_US + m * MIN_US
        if m < active and m % 5 == 0:
            k = m // 5
            rows = [(t + h, _scanner(h), _target(2 * k + j), KIND_SYN, 445, 0, b"")
                    for h in range(n_scanners) for j in range(2)]  # fmt: skip
        else:
            rows = [(t, "192.0.2.1", "198.51.100.1", KIND_SYN, 445, 0, b"")]
        start = time.perf_counter()
        judge.judge(agg)
        judging += time.perf_counter() - start
        ingest(rows)
    flagged = judge.flagged_counts().get("smb-scan", 0)
    refreshing = 0.0
    for i in range(N_REFRESHES):
        ingest([(agg.now_us + 1 + i, "192.0.2.9", "198.51.100.9", KIND_SYN, 445, 0, b"")])
        start = time.perf_counter()
        judge.rescore(agg)
        refreshing += time.perf_counter() - start
    return {
        "flagged": flagged,
        "boundaries": minutes,
        "judging_s": judging,
        "per_host_boundary_us": judging / max(1, minutes * n_scanners) * 1e6,
        "refresh_ms": refreshing / N_REFRESHES * 1e3,
    }


def _child(n_scanners: int, hours: float, quiet: float, src: Path | None) -> dict[str, float]:
    env = child_env()
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), str(REPO)])
    out = subprocess.run(
        [sys.executable, "-m", "scripts.bench.judging", "--child",
         "--scanners", str(n_scanners), "--hours", str(hours), "--quiet-hours", str(quiet)],
        check=True, capture_output=True, text=True, env=env, cwd=REPO,
    ).stdout  # fmt: skip
    result: dict[str, float] = json.loads(out)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scanners", type=int, default=200)
    p.add_argument("--hours", type=float, default=6.0)
    p.add_argument("--quiet-hours", type=float, default=0.0)
    p.add_argument(
        "--baseline", type=baseline_tree, default=None, help="worktree of another commit"
    )
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args.scanners, args.hours, args.quiet_hours)))
        return 0
    trees: list[tuple[str, Path | None]] = [("this", None)]
    if args.baseline is not None:
        trees.append((str(args.baseline), args.baseline.resolve() / "src"))
    print(f"{args.scanners} scanners, {args.hours} h of packet time and {args.quiet_hours} h "
          "quiet, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    print(f"{'code':<24} {'flagged':>7} {'judging s':>10} {'us/host/boundary':>17} "
          f"{'refresh ms':>11}")  # fmt: skip
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in trees}
    for _ in range(args.repeat):
        for name, src in trees:
            r = _child(args.scanners, args.hours, args.quiet_hours, src)
            runs[name].append(r)
            print(f"{name:<24} {r['flagged']:>7.0f} {r['judging_s']:>10.3f} "
                  f"{r['per_host_boundary_us']:>17.1f} {r['refresh_ms']:>11.2f}")  # fmt: skip
    if args.baseline is not None:
        base = str(args.baseline)
        for key in ("judging_s", "refresh_ms"):
            this = statistics.median(r[key] for r in runs["this"])
            other = statistics.median(r[key] for r in runs[base])
            print(f"{key}: this / baseline, medians: {this / other:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
