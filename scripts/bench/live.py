"""Live-capture benchmark: how fast can wormwatch listen without the kernel dropping?

In two network namespaces joined by a veth pair (testkit/netns.py; documentation
addresses only), sender processes replay a frame mix (scripts/bench/sender.py: DNS
queries and their answers, a third NXDOMAIN, SYNs to 135/139/445, bulk TCP) at each
offered rate, and wormwatch's whole pipeline (capture, decode, classify, aggregate,
detect, and with ``--tui`` the live table drawn to /dev/null) listens on the other end.
Per rate and worker count it reports the offered and the achieved send rate, what the
filter admitted (kernel rx), drops in the capture ring (PACKET_STATISTICS via pcap) and
before it (the veth pair's counters, the kernel's backlog), what wormwatch counted
against what the frames sent hold, and the CPU of the capture process (with its fanout
workers) per 100k relevant packets/s.

A row whose sender fell short of the offered rate (below 97%) is marked ``SENDER``:
it measures the sender on this machine, not the capture. On a veth the receiving
side's kernel work (filter included) runs on the sending CPU, so the senders compete
with the sensor for the same cores.

    sudo .venv/bin/python -m scripts.bench.live --rates 353000 --workers 1,2 --tui

Root only. Each rate runs ``--seconds`` of traffic after the sensor is ready.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.bench import baseline_tree
from scripts.bench.sender import CYCLE, RELEVANT, build_mix, expected, relevant_share
from testkit.netns import VethPair, veth_pair, wait_for_line, write_frames
from testkit.paths import REPO, python_m

# what wormwatch counts of the mix (dns_answers: absent before answers were counted)
EVENT_COUNTERS = ("dns_queries", "syns", "dns_answers")
# a row is the sender's limit, not the capture's, below this share of the offered rate
SENDER_SHORT = 0.97
# The sensor and each sender run in a session of their own, as a service would: with
# autogroup scheduling a shared machine gives each session, not each process, a fair
# share, so inside this script's session they would all share one session's share.
SESSION: dict[str, Any] = {"start_new_session": True}


class _UntilDrained:
    """Ends the source at the first empty read after SIGUSR1 (the sender finished)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.is_stopping = inner, inner.name, False
        self.is_live = True
        signal.signal(signal.SIGUSR1, self._stop)

    def _stop(self, _signum: int, _frame: object) -> None:
        self.is_stopping = True

    def read_batch(self, max_packets: int) -> Any:
        batch = self.inner.read_batch(max_packets)
        if batch is not None and batch.n == 0 and self.is_stopping:
            return None
        return batch

    def stats(self) -> Any:
        return self.inner.stats()

    def close(self) -> None:
        self.inner.close()


def _capture(iface: str, workers: int, tui: bool) -> None:
    """Inside the capture namespace: the whole pipeline on ``iface``; JSON on stdout."""
    from wormwatch.config import load_config
    from wormwatch.pipeline import Pipeline
    from wormwatch.source.live import open_capture
    from wormwatch.warmup import warm_up

    warm_up("live")  # every kernel the live pipeline runs, as `wormwatch live` does
    presenter = None
    if tui:
        from rich.console import Console

        from wormwatch.present.live.tui import TuiPresenter

        class _NoKeys:
            def open(self) -> None: ...
            def restore(self) -> None: ...
            def wait(self, timeout_s: float) -> bool:
                return False

            def read_keys(self) -> list[Any]:
                return []

        screen = Console(file=open(os.devnull, "w"), force_terminal=True, width=140, height=40)  # noqa: SIM115
        presenter = TuiPresenter(console=screen, keys=_NoKeys())
    source = _UntilDrained(open_capture(iface, workers=workers))
    pipeline = Pipeline(load_config(None), source_name=iface, presenter=presenter)
    print("ready", flush=True)
    try:
        result = pipeline.run(source)
    finally:
        source.close()
    stats = source.stats()
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    print(
        json.dumps(
            {
                "kernel_received": stats.kernel_received,
                "kernel_dropped": stats.kernel_dropped,
                "pcap_if_dropped": stats.interface_dropped,
                "packets": result.final.decode["packets"],
                "events": sum(result.final.decode.get(k, 0) for k in EVENT_COUNTERS),
                "counted": {k: result.final.decode.get(k, 0) for k in EVENT_COUNTERS},
                "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
                "error": str(result.error) if result.error else None,
            }
        ),
        flush=True,
    )


def send_parallel(
    pair: VethPair, frames_file: Path, n_frames: int, rate: int, seconds: float, senders: int
) -> list[tuple[int, int, float]]:
    """``senders`` processes in the sender namespace, each at ``rate / senders`` from its
    own whole cycle of the mix; (start frame, frames sent, seconds) of each."""
    starts = [(j * (n_frames // CYCLE) // senders) * CYCLE for j in range(senders)]
    argv = [pair.sender_if, str(frames_file), str(rate / senders), str(seconds)]
    procs = [
        subprocess.Popen(
            pair.command(pair.sender_ns, python_m("scripts.bench.sender", *argv, str(start))),
            stdout=subprocess.PIPE,
            text=True,
            **SESSION,
        )
        for start in starts
    ]
    results = []
    for start, proc in zip(starts, procs, strict=True):
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"sender {proc.args} failed with {proc.returncode}")
        sent, elapsed = out.split()
        results.append((start, int(sent), float(elapsed)))
    return results


def link_drops(pair: VethPair) -> dict[str, int]:
    """Drops before the capture ring: the veth pair's counters on both sides and the
    kernel's input backlog (/proc/net/softnet_stat, all CPUs, machine-wide)."""
    drops = {}
    for ns, iface, key in (
        (pair.sender_ns, pair.sender_if, "tx"),
        (pair.capture_ns, pair.capture_if, "rx"),
    ):
        out = subprocess.run(
            ["ip", "-n", ns, "-s", "-j", "link", "show", iface],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        stats = json.loads(out)[0]["stats64"]
        drops[f"veth_{key}_dropped"] = int(stats[key]["dropped"])
    drops["backlog_dropped"] = sum(
        int(line.split()[1], 16) for line in Path("/proc/net/softnet_stat").read_text().splitlines()
    )
    return drops


@dataclass(frozen=True)
class Bench:
    """What every run shares: the veth pair, the mix, the traffic's length and shape."""

    pair: VethPair
    frames_file: Path
    kinds: list[str]
    seconds: float
    senders: int
    tui: bool


def capture_argv(bench: Bench, workers: int, baseline: Path | None) -> list[str]:
    """The capture process: this checkout's wormwatch, or ``baseline``'s (its ``src``
    first on the path, so only the package under test differs, not the bench)."""
    argv = python_m("scripts.bench.live", "_capture", bench.pair.capture_if, str(workers))
    argv += ["--tui"] if bench.tui else []
    if baseline is not None:
        argv[1] = f"PYTHONPATH={baseline.resolve() / 'src'}{os.pathsep}{REPO}"
    return bench.pair.command(bench.pair.capture_ns, argv)


def run_one(bench: Bench, rate: int, workers: int, baseline: Path | None = None) -> dict[str, Any]:
    pair, frames_file, kinds, seconds = bench.pair, bench.frames_file, bench.kinds, bench.seconds
    proc = subprocess.Popen(
        capture_argv(bench, workers, baseline), stdout=subprocess.PIPE, text=True, **SESSION
    )
    try:
        wait_for_line(proc, "ready", 60)
        cpu_before, drops_before = _cpu_s(proc.pid), link_drops(pair)
        sent = send_parallel(pair, frames_file, len(kinds), rate, seconds, bench.senders)
        proc.send_signal(signal.SIGUSR1)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    drops = {k: v - drops_before[k] for k, v in link_drops(pair).items()}
    sent_kinds = sum((expected(kinds, start, n) for start, n, _ in sent), start=Counter())
    n_sent = sum(n for _, n, _ in sent)
    result.update(
        drops,
        rate=rate,
        relevant_rate=int(rate * relevant_share(kinds)),
        workers=workers,
        senders=bench.senders,
        seconds=seconds,
        code=str(baseline or "this"),
        sent=n_sent,
        sent_rate=sum(n / elapsed for _, n, elapsed in sent),
        sent_relevant=sum(sent_kinds[k] for k in RELEVANT),
        sent_kinds=dict(sent_kinds),
    )
    result["cpu_s"] -= cpu_before
    result["sender_limited"] = result["sent_rate"] < SENDER_SHORT * rate
    result["link_dropped"] = sum(drops.values())
    # CPU per relevant packet (µs) x 10 = % of one core per 100k relevant packets/s
    result["cpu_per_100k"] = 1e7 * result["cpu_s"] / max(1, result["kernel_received"])
    return result


def _cpu_s(pid: int) -> float:
    """CPU seconds ``pid`` and its finished children have used so far (start-up, before
    traffic; on a first run the warm-up compiles in a child)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


# title, width, value of a result row
COLUMNS: tuple[tuple[str, int, Callable[[dict[str, Any]], str]], ...] = (
    ("workers", 7, lambda r: str(r["workers"])),
    ("offered/s", 9, lambda r: str(r["rate"])),
    ("sent/s", 8, lambda r: f"{r['sent_rate']:.0f}"),
    ("limit", 6, lambda r: "SENDER" if r["sender_limited"] else "-"),
    ("relevant/s", 10, lambda r: f"{r['kernel_received'] / r['seconds']:.0f}"),
    ("sent rel.", 9, lambda r: str(r["sent_relevant"])),
    ("kernel rx", 9, lambda r: str(r["kernel_received"])),
    ("k.drop", 7, lambda r: str(r["kernel_dropped"])),
    ("link drop", 9, lambda r: str(r["link_dropped"])),
    ("counted", 9, lambda r: str(r["events"])),
    ("cpu %", 6, lambda r: f"{100 * r['cpu_s'] / r['seconds']:.1f}"),
    ("%/100k/s", 8, lambda r: f"{r['cpu_per_100k']:.1f}"),
)


def _row_text(row: dict[str, Any]) -> str:
    text = " ".join(f"{value(row):>{width}}" for _, width, value in COLUMNS)
    return text + (f"  error: {row['error']}" if row["error"] else "")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rates", default="117000,235000,353000,470000", help="frames/s offered, comma-separated"
    )
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument(
        "--senders",
        type=int,
        default=4,
        help="sender processes, each in a session of its own (4 reach 353k frames/s here "
        "with the machine loaded by others; 1 reaches ~180k)",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="traffic per rate")
    parser.add_argument("--tui", action="store_true", help="draw the live table (to /dev/null)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument(
        "--baseline",
        type=baseline_tree,
        help="another checkout (e.g. a git worktree of an older commit): each run of its "
        "wormwatch is followed by one of this checkout's, same traffic; prints the ratios",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per rate (--baseline: pairs)")
    parser.add_argument(
        "--shipping", action="store_true", help="only measure raw-frame vs event shipping"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_capture":
        _capture(argv[1], int(argv[2]), "--tui" in argv)
        return 0
    parser = _parser()
    args = parser.parse_args(argv)
    if args.shipping:
        from scripts.bench.shipping import measure_shipping

        measure_shipping()
        return 0
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, raw sockets)")
    frames, kinds = build_mix()
    codes = [args.baseline, None] if args.baseline else [None]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, veth_pair(Path(tmp)) as pair:
        bench = Bench(pair, Path(tmp) / "frames.bin", kinds, args.seconds, args.senders, args.tui)
        write_frames(bench.frames_file, frames)
        print(f"{args.senders} sendmmsg sender(s); relevant share of the mix: ", end="")
        print(f"{relevant_share(kinds):.2f}; {args.seconds:g} s per rate; ", end="")
        print(f"display {'on' if args.tui else 'off'}; load average {_loadavg()}")
        print(" ".join(f"{title:>{width}}" for title, width, _ in COLUMNS), "  code")
        for workers in (int(w) for w in args.workers.split(",")):
            for rate in (int(r) for r in args.rates.split(",")):
                for _ in range(args.repeat):
                    for code in codes:
                        rows.append(run_one(bench, rate, workers, code))
                        print(_row_text(rows[-1]), f"  {rows[-1]['code']}", flush=True)
    _verdicts(rows)
    if args.baseline:
        _ratios(rows)
    print(f"load average after: {_loadavg()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def _ratios(rows: list[dict[str, Any]]) -> None:
    """Per worker count and rate: this checkout's CPU per 100k relevant packets/s over the
    baseline's, run by run (each baseline run is paired with the run after it)."""
    for i in range(0, len(rows) - 1, 2):
        base, this = rows[i], rows[i + 1]
        base["ratio"] = this["cpu_per_100k"] / max(1e-9, base["cpu_per_100k"])
    groups: dict[tuple[int, int], list[float]] = {}
    for row in rows:
        if "ratio" in row:
            groups.setdefault((row["workers"], row["rate"]), []).append(row["ratio"])
    for (workers, rate), ratios in groups.items():
        print(
            f"{workers} worker(s) at {rate} offered: CPU per relevant packet, this / baseline, "
            f"median of {len(ratios)} pairs {statistics.median(ratios):.2f} "
            f"(pairs: {', '.join(f'{r:.2f}' for r in ratios)})"
        )


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _verdicts(rows: list[dict[str, Any]]) -> None:
    """Say which rows measure the sender, and where counts fell short."""
    for row in rows:
        where = f"{row['workers']} worker(s) at {row['rate']} offered"
        if row["sender_limited"]:
            print(
                f"{where}: the SENDER was the limit ({row['sent_rate']:.0f}/s sent, "
                f"{row['sent_rate'] / row['rate']:.0%} of offered): this row does not "
                "show the capture's limit"
            )
        lost = row["sent_relevant"] - row["events"]
        if lost:
            print(
                f"{where}: counted {row['events']} relevant of {row['sent_relevant']} sent "
                f"({lost} missing: kernel ring {row['kernel_dropped']}, before the ring "
                f"{row['link_dropped']})"
            )


if __name__ == "__main__":
    sys.exit(main())
