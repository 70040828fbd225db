"""Peak memory against the number of spoofed sources, and whether the scanner
hidden in the flood is still found.

For each flood size it writes a pcap (testkit/flood.py: one SYN per
spoofed source, IPv4 and IPv6, plus one scanner reaching 400 targets), runs
``wormwatch replay --no-tui --summary`` on it in a child process, and prints
the child's peak RSS, wall time, hosts tracked/evicted and the scanner's
verdict. The host limit is the default (100,000) unless ``--max-hosts``.

    python -m scripts.bench.flood                 # 100k, 1M, 5M sources
    python -m scripts.bench.flood --sizes 100000  # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testkit.flood import SCANNER
from testkit.paths import child_env


def run_child(args: list[str]) -> tuple[int, float, int]:
    """Run a command; return (exit code, wall seconds, peak RSS in MiB)."""
    start = time.perf_counter()
    # stderr to the terminal: a pipe nobody reads would block a child that says much
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, usage.ru_maxrss // 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    p.add_argument("--max-hosts", type=int, default=None)
    p.add_argument(
        "--keep", action="store_true", help="keep the work directory (pcaps and summaries)"
    )
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="wormwatch-flood-"))
    try:
        run_sizes(workdir, args.sizes, args.max_hosts, args.keep)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def run_sizes(workdir: Path, sizes: list[int], max_hosts: int | None, keep: bool) -> None:
    """One row per flood size, every file under ``workdir``."""
    config = workdir / "config.toml"
    config.write_text(f"[aggregate]\nmax_hosts = {max_hosts}\n" if max_hosts else "")
    print(f"{'sources':>10} {'packets':>10} {'wall s':>7} {'pkt/s':>10} {'peak RSS MiB':>13} "
          f"{'tracked':>8} {'evicted':>9} {'untracked':>10}  scanner")  # fmt: skip
    for n in sizes:
        pcap = workdir / f"flood-{n}.pcap"
        # generate in a child: a child forked from a big parent would report the
        # parent's pages in its own peak RSS
        out = subprocess.run(
            [sys.executable, "-m", "testkit.flood", str(pcap),
             "--sources", str(n), "--targets", "400"],
            check=True, capture_output=True, text=True, env=child_env(),
        ).stdout  # fmt: skip
        facts = {"packets": int(out.split("'packets': ")[1].split(",")[0])}
        summary = workdir / f"hosts-{n}.jsonl"
        cmd = [
            sys.executable, "-m", "wormwatch", "replay", str(pcap), "--no-tui",
            "--config", str(config), "--summary", str(summary),
        ]  # fmt: skip
        code, wall, rss = run_child(cmd)
        # Read the summary line by line, keeping two records: a child forked
        # from a big parent starts with the parent's pages, and Linux keeps
        # that high-water mark across exec in the child's peak RSS.
        network: dict[str, object] = {}
        scanner = None
        if code == 0:
            with summary.open() as f:
                for line in f:
                    record = json.loads(line)
                    if record.get("src_ip") == SCANNER:
                        scanner = record
                    network = record
        verdict = (
            f"{','.join(scanner['verdicts']) or 'not flagged'}, {scanner['syn_targets']} targets"
            if scanner
            else "LOST"
        )
        print(
            f"{n:>10,} {facts['packets']:>10,} {wall:>7.1f} {facts['packets'] / wall:>10,.0f} "
            f"{rss:>13,} {network.get('hosts_tracked', 0):>8,} "
            f"{network.get('hosts_dropped', 0):>9,} "
            f"{network.get('events_untracked', 0):>10,}  {verdict}"
        )
        if not keep:
            pcap.unlink()


if __name__ == "__main__":
    raise SystemExit(main())
