"""The dga-nx behaviour sweep: detection rate, false positives and time to first alert.

Runs testkit/dgasweep.py's grid (generator family x names per hour x share of names that
resolve x steady or one 2-minute burst an hour, each on a machine whose user also browses
120 resolving names an hour, 4 hours) and the benign NXDOMAIN habits, judged by the real
detector at every bin boundary, and prints per (names per hour, share resolving, bursts)
the detection rate over the families and the median minutes from the first NXDOMAIN
answer to the first alert, then each benign habit's outcome.

    .venv/bin/python -m scripts.bench.dga_sweep [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import defaultdict
from pathlib import Path

from testkit.dgasweep import Outcome, median_minutes, run


def _table(outcomes: list[Outcome]) -> list[str]:
    groups: dict[tuple[object, ...], list[Outcome]] = defaultdict(list)
    for o in outcomes:
        if o.is_worm:
            key = (o.params["per_hour"], o.params["resolving"], o.params["burst_s"])
            groups[key].append(o)
    lines = ["names/h  resolving  bursts     detected  median min to alert"]
    for (per_hour, resolving, burst), group in sorted(groups.items()):  # type: ignore[type-var]
        n_fired = sum(o.fired for o in group)
        minutes = median_minutes(group)
        shown = "-" if minutes is None else f"{minutes:.0f}"
        shape = "2 min/h" if burst else "steady"
        detected = f"{n_fired:>3}/{len(group):<3}"
        lines.append(f"{per_hour:>7}  {resolving:>9.0%}  {shape:<8}  {detected}  {shown:>19}")
    benign = [o for o in outcomes if not o.is_worm]
    n_fp = sum(o.fired for o in benign)
    lines.append(f"benign habits flagged: {n_fp}/{len(benign)}")
    lines += [f"  {o.name}: {'FLAGGED' if o.fired else 'quiet'}" for o in benign]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write every outcome as JSON lines")
    args = parser.parse_args(argv)
    outcomes = run()
    print("\n".join(_table(outcomes)))
    if args.json:
        args.json.write_text(
            "".join(json.dumps(dataclasses.asdict(o)) + "\n" for o in outcomes), encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
