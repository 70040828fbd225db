"""The one loop that wires the stages, the same for live capture and replay.

source -> feed (decode, classify) -> aggregate -> judge -> present. The loop
reads a decoded batch from the feed, aggregates its events, asks the judge to
judge hosts whenever packet time crosses a bin boundary and writes the alerts,
and hands a :class:`Snapshot` (assembled by :mod:`wormwatch.health`) to the
presenter a few times per wall second. It knows nothing of live capture versus
replay: the source describes itself. Only the CLI knows argv and exit codes;
this module knows neither.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from wormwatch.aggregate import AggregateCounts, Aggregator
from wormwatch.classify import Classifier, score_nx_answers, score_rows
from wormwatch.config import Config
from wormwatch.control import Stop
from wormwatch.decode import Decoder
from wormwatch.dganame import Scored
from wormwatch.errors import WormwatchError
from wormwatch.feed import Decoded, End, Feed, open_feed
from wormwatch.finder import HostFinder
from wormwatch.health import Health, Judged
from wormwatch.judge import TOP_HOSTS, Judge
from wormwatch.model import I64, Batch, DecodeStats, Events, HostView, Snapshot
from wormwatch.reassemble import Reassembler
from wormwatch.source import Source

BATCH_PACKETS = 16384


class Presenter(Protocol):
    """What the pipeline needs of a display (the live table, or nothing)."""

    def start(self) -> None: ...

    def update(self, snapshot: Snapshot) -> None: ...

    def poll_quit(self) -> bool: ...

    def stop(self, final: Snapshot) -> None: ...

    def close(self) -> None: ...


class AlertSink(Protocol):
    def write(self, record: dict[str, object]) -> None: ...


class EventSink(Protocol):
    """Sees every decoded batch's events (``[:n]`` valid) once, in packet order,
    before they are aggregated: the ``--events`` log, the metrics' tallies."""

    def write_events(self, events: Events) -> None: ...


@dataclass(slots=True)
class RunResult:
    """What a finished run knows: the last snapshot, every host's view, why it ended.

    Also what the summary and the report read from it: the bin width, the
    network-wide series (bins and per-bin queries, MX and SYN counts of the
    clients) with its sync evidence, and how full the aggregate got.
    """

    final: Snapshot
    # every host's view, read out when first asked for (:attr:`hosts`)
    read_hosts: Callable[[], list[HostView]]
    n_alerts: int
    interrupted: bool = False
    error: WormwatchError | None = None
    warnings: list[str] = field(default_factory=list)
    bin_s: int = 60
    network_bins: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    network_counts: I64 = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    network_sync: dict[str, object] | None = None
    limits: AggregateCounts | None = None
    _hosts: list[HostView] | None = None

    @property
    def hosts(self) -> list[HostView]:
        """Every host's view, ranked: read out of the aggregate at the first call.

        Only the summary and the report read every host (~0.05 s for 5,000 hosts, in
        Python per host); a replay that writes neither does not pay for it.
        """
        if self._hosts is None:
            self._hosts = self.read_hosts()
        return self._hosts


class _Ticks:
    """When the display refreshes and the periodic summary is due (wall time)."""

    def __init__(self, now: float, refresh_s: float, every_s: float | None) -> None:
        self.refresh_s = refresh_s
        self.every_s = every_s or 0.0
        self.next_refresh = now
        self.next_every = now + every_s if every_s else float("inf")

    def is_refresh_due(self, now: float) -> bool:
        if now < self.next_refresh:
            return False
        self.next_refresh = now + self.refresh_s
        return True

    def is_every_due(self, now: float) -> bool:
        if now < self.next_every:
            return False
        self.next_every = now + self.every_s
        return True


class Pipeline:
    """Stages and state of one run.

    Args:
        cfg: the loaded configuration.
        source_name: what the display calls the source.
        decode_ahead: unless the source is live, read and decode in a second
            thread while this one aggregates (both cores; the same results).
        alerts: where alert (and sensor) records go, or None.
        presenter: the live display, or None.
        event_sinks: called with each batch's events (whole batches).
        clock: wall clock, injectable for tests.
        shows_network_sync: whether the presenter's snapshots carry the
            network-wide r (the live table's header does; the metrics do not,
            and it costs time in proportion to the run's bins).
    """

    def __init__(
        self,
        cfg: Config,
        *,
        source_name: str,
        alerts: AlertSink | None = None,
        presenter: Presenter | None = None,
        event_sinks: Sequence[EventSink] = (),
        clock: Callable[[], float] = time.monotonic,
        refresh_s: float = 0.25,
        decode_ahead: bool = True,
        shows_network_sync: bool = True,
    ) -> None:
        self.cfg = cfg
        self.shows_network_sync = shows_network_sync
        # the live table's network-wide r: (bin mark, next wall time, value)
        self._shown_r: tuple[int, float, float | None] = (-1, 0.0, None)
        self.decoder = Decoder(
            reassembler=Reassembler(
                max_datagrams=cfg.reassembly.max_datagrams,
                max_datagram_bytes=cfg.reassembly.max_datagram_bytes,
                timeout_s=cfg.reassembly.timeout_s,
            )
        )
        self.classifier = Classifier(cfg.keywords)
        self.judge = Judge(cfg)
        self.agg = Aggregator(
            bin_s=cfg.bin_s,
            window_s=cfg.window_s,
            max_hosts=cfg.max_hosts,
            max_host_bins=cfg.max_host_bins,
            ignore=cfg.ignore,
            allowlisted=(*cfg.mail_servers, *cfg.resolvers),
            # a flagged host is never evicted in favour of noise
            protect=self.judge.protected,
        )
        # the live table's filter, over every tracked host
        self.finder = HostFinder(self.agg, self.judge, clock)
        self.health = Health(source_name, clock)
        self.alerts = alerts
        self.presenter = presenter
        self.event_sinks = tuple(event_sinks)
        self.clock = clock
        self.refresh_s = refresh_s
        self.decode_ahead = decode_ahead
        self._judged_bin = -1
        self._feed: Feed | None = None

    @property
    def n_alerts(self) -> int:
        """Alerts emitted so far."""
        return self.judge.n_alerts

    # -- the loop ---------------------------------------------------------------

    def run(
        self,
        source: Source,
        *,
        stop: Stop | None = None,
        every_s: float | None = None,
        on_every: Callable[[Pipeline, Snapshot], None] | None = None,
    ) -> RunResult:
        """Read ``source`` to the end (or until stopped) and return the result.

        ``stop`` is the caller's, whose signal handlers set it from before the run to
        after it (:mod:`wormwatch.control`); without one, SIGTERM and SIGINT stop the
        loop and are as they were after it. ``on_every`` is called with a fresh
        snapshot every ``every_s`` wall seconds (``--summary-every``).
        """
        is_own = stop is None
        stop = Stop() if stop is None else stop
        error: WormwatchError | None = None
        is_exhausted = False  # the source ended (not q, Ctrl-C or an error)
        ticks = _Ticks(self.clock(), self.refresh_s, every_s)
        if self.presenter is not None:
            self.presenter.start()
        feed = open_feed(
            source, self._decode, BATCH_PACKETS, decode_ahead=self.decode_ahead,
            stats=lambda: self.decoder.stats,
        )  # fmt: skip
        self._feed = feed
        with stop.handled() if is_own else nullcontext():
            try:
                is_exhausted = self._loop(source, feed, stop, ticks, on_every)
            except KeyboardInterrupt:
                stop.interrupted = True
            except WormwatchError as err:
                error = err
            finally:
                feed.close()
        stop.loop_ended()
        self._write(self.judge.finish(self.agg))
        final = self.snapshot(source, is_finished=is_exhausted)
        network_bins, network_counts = self.agg.network_series()
        if self.presenter is not None:
            self.presenter.stop(final)
        return RunResult(
            final=final,
            read_hosts=self.host_views,
            n_alerts=self.n_alerts,
            interrupted=stop.interrupted,
            error=error,
            warnings=list(source.stats().warnings),
            bin_s=self.agg.bin_s,
            network_bins=network_bins,
            network_counts=network_counts,
            network_sync=self.network_evidence(),
            limits=self.agg.counts(),
        )

    def _loop(
        self,
        source: Source,
        feed: Feed,
        stop: Stop,
        ticks: _Ticks,
        on_every: Callable[[Pipeline, Snapshot], None] | None,
    ) -> bool:
        """Batches until the source ends (True) or a stop or quit (False)."""
        while not stop.requested:
            item = feed.next(self.refresh_s)
            if isinstance(item, End):
                return True
            if item is not None:
                self._aggregate(*item)
            now = self.clock()
            if self.presenter is not None and ticks.is_refresh_due(now):
                self.judge.rescore(self.agg)
                self.presenter.update(
                    self.snapshot(source, with_network_sync=self.shows_network_sync, shown=True)
                )
                if self.presenter.poll_quit():
                    return False
            if on_every is not None and ticks.is_every_due(now):
                self.judge.rescore(self.agg)
                on_every(self, self.snapshot(source))
        return False

    def _decode(self, batch: Batch) -> Decoded | None:
        """Decode and classify one batch, and score its NXDOMAIN answers' names
        (in the decode-ahead thread on replay)."""
        events = self.decoder.decode(batch)
        if events.n == 0:
            return None
        return events, self.classifier.classify(events), score_nx_answers(events)

    def _aggregate(
        self, events: Events, keyword_idx: npt.NDArray[np.int16], scored: Scored | None
    ) -> None:
        """Count one batch's events, judging hosts at every bin boundary."""
        self.health.saw_events(int(events.ts_us[events.n - 1]))
        # Hosts are judged when packet time enters a new bin, before the new
        # bin's first event counts: alerts then do not depend on batch sizes
        # or replay speed, only on the packets.
        bins = np.maximum.accumulate(events.ts_us[: events.n] // self.agg.bin_us)
        cuts = np.flatnonzero(np.diff(bins)) + 1
        lo = 0
        for hi in [*cuts.tolist(), events.n]:
            if int(bins[lo]) > self._judged_bin >= 0:
                self._write(self.judge.judge(self.agg))
                if int(bins[lo]) > self._judged_bin + 1:
                    # bins went by without a packet, and left the window unjudged:
                    # judged again at this packet's time, before it counts
                    self.agg.advance(int(events.ts_us[lo]))
                    self._write(self.judge.judge(self.agg))
            renumbering = self.agg.ingest(
                events.rows(lo, hi), keyword_idx[lo:hi], score_rows(scored, lo, hi)
            )
            if renumbering is not None:
                self.judge.renumber(renumbering)
                self.finder.renumber(renumbering)
            # per bin, as the alerts: a batch can span many minutes of packet time
            record = self.health.saturation(self.agg)
            if record is not None:
                self._write([record])
            self._judged_bin = max(self._judged_bin, int(bins[hi - 1]))
            lo = hi
        # After counting: a sink that fails (the event log's disk full) ends the run,
        # and the summary then still holds the batch the decode counts already hold.
        for sink in self.event_sinks:
            sink.write_events(events)

    def _write(self, records: list[dict[str, object]]) -> None:
        if self.alerts is not None:
            for record in records:
                self.alerts.write(record)

    # -- read out ---------------------------------------------------------------

    def host_views(self, limit: int | None = None) -> list[HostView]:
        """Hosts ranked by score (then activity), with their verdicts."""
        return self.judge.host_views(self.agg, limit)

    def network_evidence(self) -> dict[str, object] | None:
        """The network-wide sync with its series, for the summary record."""
        return self.judge.network_evidence(self.agg)

    def _network_r(self) -> float | None:
        """The network-wide r for the live table. It is over every bin of the run, so
        its cost grows with the run (60 s bins: 6 ms a week in, 0.5 s a year in; 1 s
        bins: 1.4 s a day in): at four refreshes a second, more than a core. It is
        computed again once a bin of packet time, and no sooner than ten times its
        last cost."""
        mark, next_s, r = self._shown_r
        now = self.clock()
        new_mark = 1 + self.agg.now_us // self.agg.bin_us
        if new_mark != mark and now >= next_s:
            r = self.judge.network_sync(self.agg)
            done = self.clock()
            self._shown_r = (new_mark, done + 10 * (done - now), r)
        return r

    def snapshot(
        self,
        source: Source,
        *,
        is_finished: bool = False,
        with_network_sync: bool = True,
        shown: bool = False,
    ) -> Snapshot:
        """What the sensor knows now, for the display and the summary; the
        network-wide r (None without ``with_network_sync``) is over every bin of the
        run. ``shown``: for the live table's refresh, which may show an older r."""
        r = None
        if with_network_sync:
            r = self._network_r() if shown else self.judge.network_sync(self.agg)
        judged = Judged(
            hosts=self.host_views(TOP_HOSTS),
            network_sync_r=r,
            flagged=self.judge.flagged_counts(),
            find_hosts=self.finder.find,
        )
        return self.health.snapshot(
            source, self.decode_stats(), self.agg, judged, is_finished=is_finished
        )

    def decode_stats(self) -> DecodeStats:
        """The decode totals of the batches counted so far. A replay decodes a few
        batches ahead in its own thread; a run stopped meanwhile leaves those out,
        so its packet and event counts are the ones its hosts hold."""
        counted = None if self._feed is None else self._feed.counted()
        return self.decoder.stats if counted is None else counted
