"""Assembles one run from options: source, sinks, presenter, pipeline, summary.

In: a :class:`~wormwatch.config.Config` and :class:`RunOptions` (what the
CLI parsed). Out: a :class:`~wormwatch.pipeline.RunResult`, with alerts and
summaries written. Errors are :class:`~wormwatch.errors.WormwatchError`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

from wormwatch.config import Config
from wormwatch.control import RunSignals, Stop
from wormwatch.errors import WormwatchError
from wormwatch.model import HostView, Snapshot
from wormwatch.outputs import Outputs, SummaryFile
from wormwatch.pipeline import AlertSink, EventSink, Pipeline, Presenter, RunResult
from wormwatch.present.sinks.summary import write_summary_records
from wormwatch.present.sinks.text import load_lazy_parts, print_summary
from wormwatch.source import Source
from wormwatch.source.bounded import Bounded, NoPackets
from wormwatch.warmup import StepFn, warm_events, warm_up

if TYPE_CHECKING:
    from wormwatch.cluster.sensor import ClusterSensor
    from wormwatch.present.sinks.metrics import MetricsServer


@dataclass(slots=True)
class RunOptions:
    """What to run, as the CLI parsed it."""

    command: str
    files: list[str] = field(default_factory=list)
    interface: str | None = None
    alerts: str | None = None
    summary: str | None = None
    tui: bool = False
    speed: float | None = None
    duration_s: float | None = None
    bpf: str | None = None
    snaplen: int = 1600
    buffer_mb: int = 64
    promisc: bool = True
    workers: int = 1
    user: str | None = None
    summary_every_s: float | None = None
    events: str | None = None
    publish: str | None = None
    sensor: str | None = None
    concatenate: bool = False
    metrics: tuple[str, int] | None = None
    # told each warm-up step as the kernels load (the CLI shows a progress bar)
    on_step: StepFn | None = None


REFRESH_S = 0.25
_T = TypeVar("_T")
METRICS_REFRESH_S = 1.0


def _broken_off(stop: Stop, step: Callable[[], _T]) -> _T | None:
    """``step()`` unless a stop came first; a stop during it breaks it off (None then)
    and the run ends as every stopped run does: loading (on the first run, compiling:
    ~15 s) the kernels, and opening a replay, which waits for standard input's first
    bytes (a stop was noted and the wait went on until the writer closed the pipe)."""
    if stop.requested:
        return None
    try:
        with stop.breaking_off():
            return step()
    except KeyboardInterrupt:
        if not stop.requested:
            stop.request(interrupted=True)
        return None


def _load_before_drop(outputs: Outputs) -> None:
    """What a live run first uses after its privilege drop, loaded while the install
    is surely readable: the event log's kernels and rich's lazily imported parts."""
    if outputs.events is not None:
        outputs.events.format(warm_events())
    load_lazy_parts()


def _open_source(cfg: Config, opts: RunOptions) -> Source:
    if opts.command == "live":
        from wormwatch.source.live import open_capture  # noqa: PLC0415
        from wormwatch.source.privileges import drop_privileges  # noqa: PLC0415

        assert opts.interface is not None
        source = open_capture(
            opts.interface,
            bpf=opts.bpf,
            snaplen=opts.snaplen,
            buffer_mb=opts.buffer_mb,
            promisc=opts.promisc,
            workers=opts.workers,
        )
        drop_privileges(opts.user)
        if opts.duration_s is not None:
            return Bounded(source, opts.duration_s)
        return source
    from wormwatch.source.pcapfile import open_replay  # noqa: PLC0415

    # paced replays hand out every packet on its schedule; unpaced ones skip what the
    # decoder would surely ignore while the file is walked (the same counts, faster)
    source = open_replay(opts.files, concatenate=opts.concatenate, skip_ignored=opts.speed is None)
    if opts.speed is not None:
        from wormwatch.source.pacing import Paced  # noqa: PLC0415

        return Paced(source, opts.speed)
    return source


class _Presenters:
    """Several presenters behind one (the live table and the metrics endpoint)."""

    def __init__(self, parts: list[Presenter]) -> None:
        self.parts = parts

    def start(self) -> None:
        for part in self.parts:
            part.start()

    def update(self, snapshot: Snapshot) -> None:
        for part in self.parts:
            part.update(snapshot)

    def poll_quit(self) -> bool:
        return any(part.poll_quit() for part in self.parts)

    def stop(self, final: Snapshot) -> None:
        for part in self.parts:
            part.stop(final)

    def close(self) -> None:
        for part in self.parts:
            part.close()


def _presenter(
    opts: RunOptions, stop: Stop, metrics: MetricsServer | None, *extra: Presenter
) -> Presenter | None:
    parts: list[Presenter] = list(extra)
    if opts.tui:
        from wormwatch.present.live.tui import TuiPresenter  # noqa: PLC0415

        # a SIGTERM ends the demo's held final screen as q does
        hold = opts.command == "demo"
        parts.append(TuiPresenter(hold_at_end=hold, is_stopped=lambda: stop.requested))
    if metrics is not None:
        parts.append(metrics)
    if len(parts) <= 1:
        return parts[0] if parts else None
    return _Presenters(parts)


def _metrics(cfg: Config, opts: RunOptions, alerts: AlertSink | None) -> MetricsServer | None:
    """The ``--metrics`` endpoint, serving from now on; it counts what ``alerts`` gets."""
    if opts.metrics is None:
        return None
    from wormwatch.present.sinks.metrics import MetricsServer, RecordCounter  # noqa: PLC0415

    server = MetricsServer(
        opts.metrics,
        mode="live" if opts.command == "live" else "replay",
        limits=(
            ("wormwatch_hosts_max", "Size of the host table (max_hosts).", cfg.max_hosts),
            (
                "wormwatch_reassembly_slots",
                "Datagrams the fragment reassembly pool holds at most.",
                cfg.reassembly.max_datagrams,
            ),
        ),
    )
    server.records = RecordCounter(alerts.write if alerts is not None else None)
    print(f"wormwatch: metrics on {server.url}", file=sys.stderr)
    return server


def write_summary(
    out: SummaryFile,
    hosts: list[HostView],
    final: Snapshot,
    bin_s: int,
    network: dict[str, object] | None = None,
) -> None:
    """Host records (ranked) then one network record, as JSON lines. A regular file
    is written beside its name and renamed into place (no reader sees half of it);
    ``-``, a pipe, ``/dev/null`` in place (:class:`~wormwatch.outputs.SummaryFile`)."""
    writer = out.open_for_rewrite()
    try:
        write_summary_records(writer, hosts, final, bin_s, network)
    except BaseException:
        if writer is not out.kept:
            writer.close()
        raise
    out.commit(writer)


def _sinks(
    outputs: Outputs, metrics: MetricsServer | None
) -> tuple[AlertSink | None, list[EventSink]]:
    """Where alert records and each batch's events go."""
    alert_sink: AlertSink | None = outputs.alerts
    event_sinks: list[EventSink] = []
    events = outputs.events
    if events is not None:
        event_sinks.append(events)
    if metrics is not None:
        alert_sink = metrics.records
        event_sinks.append(metrics.tally)
        if events is not None:
            metrics.event_lines = lambda: events.n_lines
    return alert_sink, event_sinks


def _outputs(opts: RunOptions, signals: RunSignals, config_path: str | None) -> Outputs:
    return Outputs(
        alerts=opts.alerts,
        events=opts.events,
        summary=opts.summary,
        summary_every_s=opts.summary_every_s,
        user=opts.user,
        is_live=opts.command == "live",
        reopen=signals.reopen,
        inputs=[*opts.files, *([config_path] if config_path else [])],
    )


def run(cfg: Config, opts: RunOptions, signals: RunSignals) -> RunResult:
    """Run live capture or replay to the end; write alerts and summaries.

    Every output is opened and checked first (:class:`~wormwatch.outputs.Outputs`):
    nothing is captured before each is known to work. ``signals`` are the caller's,
    installed from before this call to after it; a stop asked for before the loop
    skips the rest of the start-up (:mod:`wormwatch.control`).
    """
    stop = signals.stop
    outputs = _outputs(opts, signals, cfg.path)
    metrics = None
    try:
        _broken_off(stop, lambda: warm_up(opts.command, on_step=opts.on_step))
        # Everything that imports modules comes before the capture is opened
        # and privileges are dropped: the dropped user may not be able to read
        # the interpreter's library directory.
        metrics = _metrics(cfg, opts, outputs.alerts)
        publisher = _cluster_sensor(cfg, opts)
        extra = [publisher] if publisher is not None else []
        presenter = _presenter(opts, stop, metrics, *extra)
        alert_sink, event_sinks = _sinks(outputs, metrics)
        if publisher is not None:
            event_sinks.insert(0, publisher)
            if metrics is not None:
                _watch_publisher(metrics, publisher)
        if opts.command == "live":
            _load_before_drop(outputs)
        source = _source_unless_stopped(cfg, opts, stop)
        if metrics is not None:
            metrics.source = source
        try:
            pipeline = Pipeline(
                cfg,
                source_name=source.name,
                alerts=alert_sink,
                presenter=presenter,
                event_sinks=event_sinks,
                # metrics alone need no 4 Hz snapshots: scrapes come every 15 s or so
                refresh_s=METRICS_REFRESH_S if presenter is metrics else REFRESH_S,
                shows_network_sync=presenter is not metrics,
            )
            result = pipeline.run(
                source, stop=stop, every_s=opts.summary_every_s, on_every=_periodic(opts, outputs)
            )
            if publisher is not None:
                publisher.finish_run(result, is_live=source.is_live)
            if outputs.summary is not None:
                _write_result(outputs.summary, result)
        finally:
            source.close()
            if presenter is not None:
                # the terminal comes back whatever happened in the run
                presenter.close()
    finally:
        outputs.close()
        if metrics is not None:
            metrics.close()
    _say_text(opts, result)
    return result


def _say_text(opts: RunOptions, result: RunResult) -> None:
    """The text summary at the end: on standard output, or on standard error when
    that carries alerts or events (a JSON stream, | jq), unless the run failed then
    (its one line says it); none when the host summary goes to standard output."""
    is_json = "-" in (opts.alerts, opts.events)
    if opts.summary != "-" and not (is_json and result.error is not None):
        _print_text(result, sys.stderr if is_json else sys.stdout)


def _source_unless_stopped(cfg: Config, opts: RunOptions, stop: Stop) -> Source:
    """The run's source; after a stop asked for by now, none: no capture, no
    privilege drop, and the summary of nothing."""
    if opts.command == "live":  # not broken off half-way through a privilege drop
        source = None if stop.requested else _open_source(cfg, opts)
    else:
        source = _broken_off(stop, lambda: _open_source(cfg, opts))
    if source is not None:
        return source
    return NoPackets(opts.interface or ", ".join(opts.files), is_live=opts.command == "live")


def _write_result(out: SummaryFile, result: RunResult) -> None:
    """The end-of-run summary, from the finished run."""
    write_summary(out, result.hosts, result.final, result.bin_s, result.network_sync)


def _cluster_sensor(cfg: Config, opts: RunOptions) -> ClusterSensor | None:
    """The delta publisher of ``--publish`` (docs/CLUSTER.md)."""
    if opts.publish is None:
        return None
    from wormwatch.cluster.sensor import open_sensor  # noqa: PLC0415

    return open_sensor(cfg, url=opts.publish, name=opts.sensor)


def report(cfg: Config, files: Sequence[str], out_dir: Path, *, concatenate: bool = False) -> Path:
    """Replay ``files`` and write the report of the finished run into ``out_dir``.

    The same pipeline as ``wormwatch replay`` runs the files; the report
    (:func:`wormwatch.present.report.write.write_report`) only reads its
    :class:`~wormwatch.pipeline.RunResult`. Every capture is checked (missing,
    not a capture) before anything is created, and ``out_dir`` before the
    replay starts. Returns the path of ``index.html``.

    Raises:
        KeyboardInterrupt: Ctrl-C or SIGTERM stopped the replay; nothing was written.
            One that comes while the report is written lets it finish first, so
            ``out_dir`` never holds half of one report and half of another; a
            second Ctrl-C then gets out at once (:mod:`wormwatch.control`).
    """
    from wormwatch.present.report.write import prepare_dir, write_report  # noqa: PLC0415
    from wormwatch.source.pcapfile import open_replay  # noqa: PLC0415

    stop = Stop()
    with stop.handled():
        with stop.breaking_off():  # a stop ends the wait for standard input's capture
            source = open_replay(list(files), concatenate=concatenate)
        try:
            prepare_dir(out_dir)
            result = Pipeline(cfg, source_name=source.name).run(source, stop=stop)
        finally:
            source.close()
        if result.interrupted or (result.error is None and not result.final.is_finished):
            # Ctrl-C or SIGTERM: no report of part of the captures (nor over an earlier one)
            raise KeyboardInterrupt
        index = write_report(result, out_dir, cfg, files=files)
    if stop.requested:
        raise KeyboardInterrupt
    return index


def _watch_publisher(metrics: MetricsServer, sensor: ClusterSensor) -> None:
    """Deltas published (acknowledged) and kept for later, on /metrics."""
    from wormwatch.present.sinks.metric_families import ClusterHealth  # noqa: PLC0415

    counts = sensor.publisher.counts
    metrics.watch_cluster(
        lambda: ClusterHealth(deltas_published=counts.acknowledged, deltas_pending=counts.buffered)
    )


def _periodic(opts: RunOptions, outputs: Outputs) -> Callable[[Pipeline, Snapshot], None] | None:
    summary = outputs.summary
    if not (opts.summary_every_s and summary is not None and summary.path != "-"):
        return None

    def rewrite(pipeline: Pipeline, snapshot: Snapshot) -> None:
        with summary.failures_said_once():
            views, network = pipeline.host_views(), pipeline.network_evidence()
            write_summary(summary, views, snapshot, pipeline.agg.bin_s, network)

    return rewrite


def _print_text(result: RunResult, file: TextIO) -> None:
    try:
        print_summary(result.final, result.hosts, result.warnings, file=file)
    except SystemExit:
        # rich ends the process when stdout is a closed pipe; when the run already
        # failed (an output into that same pipe), its one error line says more
        if result.error is None:
            raise
    except WormwatchError as err:  # the files are written: one line, not a traceback
        result.error = result.error or err
