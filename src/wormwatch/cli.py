"""Command line: the only place that knows argv, stderr and exit codes.

``wormwatch live|replay|demo|report|central|view``. Every problem the operator can fix
arrives here as a :class:`~wormwatch.errors.WormwatchError` and leaves as one
line on stderr; Ctrl-C ends a run with the summary written and exit 130.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from wormwatch import __version__, collector
from wormwatch.control import RunSignals
from wormwatch.errors import WormwatchError
from wormwatch.text import escape_text

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _say(kind: str, message: object) -> None:
    """One ``wormwatch: KIND:`` line on stderr. Messages name files, and a file name
    can hold any byte: control characters (ESC, CR, LF) are shown escaped."""
    print(f"wormwatch: {kind}: {escape_text(str(message))}", file=sys.stderr)


def _speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--speed takes a number or 'max', got {text!r}") from None
    if not 0 < value < math.inf:  # nan fails both
        raise argparse.ArgumentTypeError(
            f"--speed must be a positive finite number (or 'max'), got {text!r}"
        )
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    # nan and inf pass a `<= 0` test: a --duration of nan never ended the run
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _given(text: str) -> str:
    """A path or URL, which may not be empty: an unset shell variable (``--summary
    "$OUT"``) turned the option off without a word, and ``-o ""`` wrote the report
    into the current directory."""
    if not text:
        raise argparse.ArgumentTypeError("needs a value, got an empty string")
    return text


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", type=_given, metavar="F", help="TOML config (see examples/wormwatch.toml)"
    )
    p.add_argument("--alerts", type=_given, metavar="F", help="append alerts as JSON lines to F")
    p.add_argument(
        "--summary",
        type=_given,
        metavar="F",
        help="write host summaries as JSON lines to F ('-' = stdout)",
    )
    p.add_argument("--no-tui", action="store_true", help="no live table (also off without a tty)")


def _metrics_address(text: str) -> tuple[str, int]:
    from wormwatch.present.sinks.metrics import parse_address  # noqa: PLC0415 - keep --help fast

    try:
        return parse_address(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _sensor_outputs(p: argparse.ArgumentParser) -> None:
    """What ``live`` and ``replay`` take beyond the common options."""
    p.add_argument(
        "--events",
        type=_given,
        metavar="F",
        help="write one JSON line per DNS query, DNS answer and SYN counted to F ('-' = stdout)",
    )
    p.add_argument(
        "--metrics",
        type=_metrics_address,
        metavar="[ADDR:]PORT",
        help="serve Prometheus metrics at /metrics (address 127.0.0.1 unless given)",
    )
    p.add_argument(
        "--publish",
        type=_given,
        metavar="URL",
        help="also publish per-host deltas to NATS JetStream at URL (docs/CLUSTER.md)",
    )
    p.add_argument("--sensor", metavar="NAME", help="this sensor's name in the cluster")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wormwatch",
        description="Find bot-worm-infected hosts from DNS queries and SYNs to 135/139/445.",
    )
    parser.add_argument("--version", action="version", version=f"wormwatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    live = sub.add_parser("live", help="capture on an interface (mirror/SPAN port)")
    live.add_argument("-i", "--interface", required=True, metavar="IFACE")
    _common(live)
    _sensor_outputs(live)
    live.add_argument("--duration", type=_positive, metavar="S", help="stop after S seconds")
    live.add_argument("--bpf", metavar="FILTER", help="narrow the built-in capture filter")
    live.add_argument(
        "--snaplen", type=int, default=1600, help="bytes kept per packet (default 1600)"
    )
    live.add_argument(
        "--buffer-mb", type=int, default=64, help="kernel capture buffer, MiB (default 64)"
    )
    live.add_argument("--no-promisc", action="store_true", help="do not enter promiscuous mode")
    live.add_argument(
        "--workers", type=int, default=1, help="capture processes, PACKET_FANOUT (default 1)"
    )
    live.add_argument("--user", help="drop privileges to USER after opening (default: nobody)")
    live.add_argument(
        "--summary-every", type=_positive, metavar="S", help="rewrite --summary every S seconds"
    )

    replay = sub.add_parser("replay", help="replay pcap/pcapng files ('-' = stdin)")
    replay.add_argument("files", nargs="+", metavar="FILE")
    _concatenate(replay)
    replay.add_argument(
        "--speed",
        type=_speed,
        default=None,
        metavar="X|max",
        help="X times real time (default max: no pauses)",
    )
    _common(replay)
    _sensor_outputs(replay)

    demo = sub.add_parser("demo", help="replay the bundled sample capture into the live table")
    demo.add_argument(
        "--speed", type=_speed, default=60.0, metavar="X|max", help="X times real time (default 60)"
    )
    _common(demo)

    report = sub.add_parser("report", help="offline HTML report with plots")
    report.add_argument("files", nargs="+", metavar="FILE")
    _concatenate(report)
    report.add_argument("-o", "--output", type=_given, required=True, metavar="DIR")
    report.add_argument("--config", type=_given, metavar="F")
    _cluster_commands(sub)
    return parser


def _cluster_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    central = sub.add_parser(
        "central", help="merge the sensors' deltas from NATS JetStream, judge and alert"
    )
    central.add_argument(
        "--nats", type=_given, metavar="URL", help="broker URL (default: [cluster] url)"
    )
    central.add_argument("--shards", metavar="A-B", help="the shards this process owns (all)")
    _common(central)
    central.add_argument("--duration", type=_positive, metavar="S", help="stop after S seconds")
    central.add_argument(
        "--metrics",
        type=_metrics_address,
        metavar="[ADDR:]PORT",
        help="serve Prometheus metrics at /metrics (address 127.0.0.1 unless given)",
    )
    view = sub.add_parser("view", help="the ranked table merged across all central processes")
    view.add_argument(
        "--nats", type=_given, metavar="URL", help="broker URL (default: [cluster] url)"
    )
    view.add_argument(
        "--config", type=_given, metavar="F", help="TOML config ([cluster] credentials)"
    )
    view.add_argument("--watch", type=_positive, metavar="S", help="redraw every S seconds")


def _concatenate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concatenate",
        action="store_true",
        help="read the files one after the other (default: merged by packet time, as "
        "mergecap; with '-' among them, always one after the other)",
    )


def demo_capture() -> str:
    """Path of the bundled sample capture."""
    return str(resources.files("wormwatch") / "data" / "demo.pcap")


def console() -> int:
    """The ``wormwatch`` console script (and ``python -m wormwatch``): :func:`main` with
    the garbage collector held off while start-up builds what lives to the end
    (:mod:`wormwatch.collector`)."""
    collector.hold()
    # numpy's OpenBLAS starts a thread per core at import, which spins for ~0.1 s of
    # CPU (``import numpy``: 0.12 -> 0.06 s of CPU here), time taken from the reading
    # and compiling threads of a 2-core sensor; wormwatch's vector products are tiny
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        return main()
    finally:
        collector.freeze_for_exit()


def _conflict(args: argparse.Namespace) -> str | None:
    """An option that would do nothing without another (said, not ignored)."""
    if getattr(args, "sensor", None) and not getattr(args, "publish", None):
        return "--sensor names this sensor in the cluster: it needs --publish URL"
    if getattr(args, "summary_every", None) is not None and args.summary in (None, "-"):
        return "--summary-every rewrites the --summary file: it needs --summary F (not '-')"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    _tolerate_the_terminal()
    parser = build_parser()
    args = parser.parse_args(argv)
    conflict = _conflict(args)
    if conflict is not None:
        parser.error(conflict)
    # each command imports what it needs when it runs: ``--help`` and a mistyped
    # option answer without loading numpy or numba
    try:
        if args.command in ("central", "view"):
            return _cluster(args)
        if args.command == "report":
            from wormwatch.config import load_config  # noqa: PLC0415
            from wormwatch.runner import report  # noqa: PLC0415

            # the report loads its kernels as the replay needs them, no warm-up
            collector.release()
            cfg = load_config(args.config)
            out = report(cfg, args.files, Path(args.output), concatenate=args.concatenate)
            _tell(f"report written to {out}")
            return EXIT_OK
        return _run(args)
    except WormwatchError as err:
        _say("error", err)
        return err.exit_code
    except KeyboardInterrupt:
        print("wormwatch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RuntimeError as err:
        # numba's at the first kernel import: nowhere to keep compiled code (a user without a home)
        if not str(err).startswith("cannot cache function"):
            raise
        _say("error", _NO_KERNEL_CACHE)
        return EXIT_USAGE


_NO_KERNEL_CACHE = (
    "numba has nowhere to keep the compiled kernels: neither the installed package's "
    "folder nor this user's ~/.cache can be written; set NUMBA_CACHE_DIR to a folder "
    "this user may write (docs/LIVE.md)"
)


def _tell(line: str) -> None:
    """A line on stdout after the work is done: a closed pipe or a full device
    (``| head -0``, ``> /dev/full``) loses the line, not the exit code, and the
    interpreter's last flush is sent to /dev/null instead of printing a traceback."""
    try:
        print(line, flush=True)
    except OSError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _tolerate_the_terminal() -> None:
    """A terminal whose encoding cannot show a character (Latin-1, ASCII: the
    table's blocks, a file name's CJK) gets ``?`` in its place, one cell as the
    character would have been, not a UnicodeEncodeError traceback. Standard
    error already writes such characters as escapes; JSON on standard output
    is written as UTF-8 bytes, past this stream."""
    if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.errors == "strict":
        sys.stdout.reconfigure(errors="replace")


def _cluster(args: argparse.Namespace) -> int:
    from wormwatch.config import load_config  # noqa: PLC0415

    cfg = load_config(args.config)
    if args.command == "view":
        from wormwatch.present.live.cluster import show_view  # noqa: PLC0415

        collector.release()
        show_view(cfg.cluster.with_url(args.nats), watch_s=args.watch)
        return EXIT_OK
    from wormwatch.cluster.run import CentralOptions, run_central  # noqa: PLC0415

    presenter = None
    if _use_tui(args):
        from wormwatch.present.live.tui import TuiPresenter  # noqa: PLC0415

        presenter = TuiPresenter()
    opts = CentralOptions(
        url=args.nats,
        shards=args.shards,
        alerts=args.alerts,
        summary=args.summary,
        duration_s=args.duration,
        metrics=args.metrics,
    )
    run_central(cfg, opts, presenter)
    return EXIT_OK


def _use_tui(args: argparse.Namespace) -> bool:
    # a JSON stream on standard output ('-') keeps it to JSON lines only, on a
    # terminal too: the table's screen and cursor codes went around the records
    streams = (getattr(args, name, None) for name in ("alerts", "summary", "events"))
    if args.no_tui or "-" in streams:
        return False
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


def _run(args: argparse.Namespace) -> int:
    """``live``, ``replay`` and ``demo``, with their signals handled from before the
    slow imports to the end: SIGTERM and Ctrl-C stop the run, during start-up and
    wind-down too, and SIGHUP reopens its files (:mod:`wormwatch.control`)."""
    with RunSignals().installed() as signals:
        return _run_handled(args, signals)


def _run_handled(args: argparse.Namespace, signals: RunSignals) -> int:
    from wormwatch.runner import RunOptions, run  # noqa: PLC0415 - keep --help fast

    # numba compiles the packet kernels on the very first run (seconds), then loads
    # them from its cache: on a terminal, a progress bar says why the screen waits
    bar = None
    if sys.stderr.isatty():
        from wormwatch.present.live.loading import LoadingBar  # noqa: PLC0415

        bar = LoadingBar()

    from wormwatch.config import load_config  # noqa: PLC0415

    config_path = args.config
    if args.command == "demo" and config_path is None:
        config_path = str(resources.files("wormwatch") / "data" / "demo.toml")
    cfg = load_config(config_path)
    files = [demo_capture()] if args.command == "demo" else getattr(args, "files", [])
    opts = RunOptions(
        command=args.command,
        files=files,
        interface=getattr(args, "interface", None),
        alerts=args.alerts,
        summary=args.summary,
        tui=_use_tui(args),
        speed=getattr(args, "speed", None),
        duration_s=getattr(args, "duration", None),
        bpf=getattr(args, "bpf", None),
        snaplen=getattr(args, "snaplen", 1600),
        buffer_mb=getattr(args, "buffer_mb", 64),
        promisc=not getattr(args, "no_promisc", False),
        workers=getattr(args, "workers", 1),
        user=getattr(args, "user", None),
        summary_every_s=getattr(args, "summary_every", None),
        concatenate=getattr(args, "concatenate", False),
        metrics=getattr(args, "metrics", None),
        on_step=bar.step if bar is not None else None,
        events=getattr(args, "events", None),
        publish=getattr(args, "publish", None),
        sensor=getattr(args, "sensor", None),
    )
    try:
        result = run(cfg, opts, signals)
    finally:
        if bar is not None:
            bar.close()
    for warning in result.warnings:
        _say("warning", warning)
    if result.error is not None:
        _say("error", result.error)
        return result.error.exit_code
    # a Ctrl-C in the wind-down was noted, and the summary still written
    if result.interrupted or signals.stop.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK
