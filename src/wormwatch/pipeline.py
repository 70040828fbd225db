"""The one loop that wires the stages, the same for live capture and replay.

source -> decode -> classify -> aggregate -> detect -> present. The loop reads
a batch, decodes it, classifies and aggregates its events, re-evaluates hosts
whenever packet time crosses a bin boundary, and hands a :class:`Snapshot` to
the presenter a few times per wall second. Only the CLI knows argv and exit
codes; this module knows neither.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from wormwatch.aggregate import Aggregator, Renumbering
from wormwatch.alerts import AlertTracker
from wormwatch.classify import Classifier
from wormwatch.config import Config
from wormwatch.decode import Decoder
from wormwatch.detect import could_fire, evaluate, iso_time, network_evidence, network_sync
from wormwatch.errors import WormwatchError
from wormwatch.feed import DecodeAheadFeed, DirectFeed, End
from wormwatch.model import (
    Batch,
    Events,
    HostView,
    Snapshot,
    Verdict,
)
from wormwatch.reassemble import Reassembler
from wormwatch.source import Source

BATCH_PACKETS = 16384
TOP_HOSTS = 50


def slice_events(ev: Events, lo: int, hi: int) -> Events:
    """Events ``lo:hi`` as views (no copy)."""
    return Events(
        n=hi - lo,
        ts_us=ev.ts_us[lo:hi],
        src_hi=ev.src_hi[lo:hi],
        src_lo=ev.src_lo[lo:hi],
        dst_hi=ev.dst_hi[lo:hi],
        dst_lo=ev.dst_lo[lo:hi],
        kind=ev.kind[lo:hi],
        dport=ev.dport[lo:hi],
        qtype=ev.qtype[lo:hi],
        names=ev.names[lo:hi],
        name_lens=ev.name_lens[lo:hi],
        sport=ev.sport[lo:hi],
        status=ev.status[lo:hi],
    )


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
    """What a finished run knows: the last snapshot, every host's view, why it ended."""

    final: Snapshot
    hosts: list[HostView]
    n_alerts: int
    interrupted: bool = False
    error: WormwatchError | None = None
    warnings: list[str] = field(default_factory=list)


class _Stop:
    """Set by SIGTERM/SIGINT handlers; checked once per batch."""

    def __init__(self) -> None:
        self.requested = False
        self.interrupted = False


@contextmanager
def _signals(stop: _Stop) -> Iterator[None]:
    def on_signal(signum: int, _frame: object) -> None:
        stop.requested = True
        stop.interrupted = signum == signal.SIGINT

    try:
        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: the caller owns signals
        yield
        return
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


class Pipeline:
    """Stages and state of one run.

    Args:
        cfg: the loaded configuration.
        source_name: what the display calls the source.
        is_live: live capture (wall-clock idle warnings, kernel drops).
        decode_ahead: on replay, read and decode in a second thread while
            this one aggregates (both cores; the same results).
        alerts: where alert records go, or None.
        presenter: the live display, or None.
        event_sinks: called with each batch's events (whole batches).
        clock: wall clock, injectable for tests.
    """

    def __init__(
        self,
        cfg: Config,
        *,
        source_name: str,
        is_live: bool = False,
        alerts: AlertSink | None = None,
        presenter: Presenter | None = None,
        event_sinks: Sequence[EventSink] = (),
        clock: Callable[[], float] = time.monotonic,
        refresh_s: float = 0.25,
        decode_ahead: bool = True,
    ) -> None:
        self.cfg = cfg
        self.source_name = source_name
        self.is_live = is_live
        self.decoder = Decoder(
            reassembler=Reassembler(
                max_datagrams=cfg.reassembly.max_datagrams,
                max_datagram_bytes=cfg.reassembly.max_datagram_bytes,
                timeout_s=cfg.reassembly.timeout_s,
            )
        )
        self.classifier = Classifier(cfg.keywords)
        self.agg = Aggregator(
            bin_s=cfg.bin_s,
            window_s=cfg.window_s,
            max_hosts=cfg.max_hosts,
            max_host_bins=cfg.max_host_bins,
            ignore=cfg.ignore,
            allowlisted=(*cfg.mail_servers, *cfg.resolvers),
            # a flagged host is never evicted in favour of noise
            protect=lambda n: self.scores[:n] > 0,
        )
        self.scores = np.zeros(cfg.max_hosts, np.float64)
        self.verdicts: dict[int, Verdict] = {}
        self._saturation_reported_us = -1
        self.tracker = AlertTracker(cfg.score)
        self.alerts = alerts
        self.n_alerts = 0
        self.presenter = presenter
        self.event_sinks = tuple(event_sinks)
        self.clock = clock
        self.refresh_s = refresh_s
        self.decode_ahead = decode_ahead
        self._alert_bin = -1
        self._alert_mark_us = -1
        self._display_mark_us = -1
        self._wall_start = clock()
        self._last_relevant_wall = -1.0
        self._last_relevant_us = -1
        self._rate_mark: tuple[float, int, int, int, int] | None = None
        self._rates = (0.0, 0.0, 0.0)

    # -- the loop ---------------------------------------------------------------

    def run(
        self,
        source: Source,
        *,
        every_s: float | None = None,
        on_every: Callable[[Pipeline, Snapshot], None] | None = None,
    ) -> RunResult:
        """Read ``source`` to the end (or until stopped) and return the result.

        ``on_every`` is called with a fresh snapshot every ``every_s`` wall
        seconds (``--summary-every``).
        """
        stop = _Stop()
        error: WormwatchError | None = None
        is_exhausted = False  # the source ended (not q, Ctrl-C or an error)
        next_refresh = self.clock()
        next_every = next_refresh + every_s if every_s else float("inf")
        if self.presenter is not None:
            self.presenter.start()
        feed: DirectFeed | DecodeAheadFeed
        if self.is_live or not self.decode_ahead:
            feed = DirectFeed(source, self._decode, BATCH_PACKETS)
        else:
            feed = DecodeAheadFeed(source, self._decode, BATCH_PACKETS)
        with _signals(stop):
            try:
                while not stop.requested:
                    item = feed.next(self.refresh_s)
                    if isinstance(item, End):
                        is_exhausted = True
                        break
                    if item is not None:
                        self._aggregate(*item)
                    now = self.clock()
                    if self.presenter is not None and now >= next_refresh:
                        next_refresh = now + self.refresh_s
                        self._evaluate(self._display_mark_us, emit=False)
                        self.presenter.update(self.snapshot(source))
                        if self.presenter.poll_quit():
                            break
                    if on_every is not None and now >= next_every:
                        next_every = now + (every_s or 0.0)
                        self._evaluate(self._display_mark_us, emit=False)
                        on_every(self, self.snapshot(source))
            except KeyboardInterrupt:
                stop.interrupted = True
            except WormwatchError as err:
                error = err
            finally:
                feed.close()
        self._evaluate(self._alert_mark_us, emit=True, all_hosts=True)
        final = self.snapshot(source, is_finished=is_exhausted)
        if self.presenter is not None:
            self.presenter.stop(final)
        return RunResult(
            final=final,
            hosts=self.host_views(),
            n_alerts=self.n_alerts,
            interrupted=stop.interrupted,
            error=error,
            warnings=list(source.stats().warnings),
        )

    def _decode(self, batch: Batch) -> tuple[Events, npt.NDArray[np.int16]] | None:
        """Decode and classify one batch (in the decode-ahead thread on replay)."""
        events = self.decoder.decode(batch)
        if events.n == 0:
            return None
        return events, self.classifier.classify(events)

    def _aggregate(self, events: Events, keyword_idx: npt.NDArray[np.int16]) -> None:
        """Count one batch's events, judging hosts at every bin boundary."""
        self._last_relevant_wall = self.clock()
        self._last_relevant_us = int(events.ts_us[events.n - 1])
        for sink in self.event_sinks:
            sink.write_events(events)
        # Hosts are judged when packet time enters a new bin, before the new
        # bin's first event counts: alerts then do not depend on batch sizes
        # or replay speed, only on the packets.
        bins = np.maximum.accumulate(events.ts_us[: events.n] // self.agg.bin_us)
        cuts = np.flatnonzero(np.diff(bins)) + 1
        lo = 0
        for hi in [*cuts.tolist(), events.n]:
            if int(bins[lo]) > self._alert_bin >= 0:
                self._evaluate(self._alert_mark_us, emit=True)
            renumbering = self.agg.ingest(slice_events(events, lo, hi), keyword_idx[lo:hi])
            if renumbering is not None:
                self._renumber(renumbering)
            self._alert_bin = max(self._alert_bin, int(bins[hi - 1]))
            lo = hi
        self._report_saturation()

    def _renumber(self, renumbering: Renumbering) -> None:
        """Follow the aggregate's renumbering after it evicted hosts."""
        self.scores = renumbering.follow_array(self.scores)
        self.verdicts = renumbering.follow(self.verdicts)

    def _report_saturation(self) -> None:
        """One sensor record when the host table first overflows, then at
        most one per hour of packet time while it keeps overflowing."""
        now_us, counts = self.agg.now_us, self.agg.counts()
        if counts.hosts_evicted == 0 and counts.events_dropped == 0:
            return
        if self._saturation_reported_us >= 0 and now_us - self._saturation_reported_us < 3600e6:
            return
        self._saturation_reported_us = now_us
        record: dict[str, object] = {
            "schema": 1,
            "timestamp": iso_time(now_us),
            "event_type": "sensor",
            "condition": "host-table-saturated",
            "max_hosts": counts.max_hosts,
            "hosts_tracked": counts.hosts_tracked,
            "hosts_evicted": counts.hosts_evicted,
            "events_dropped": counts.events_dropped,
        }
        if self.alerts is not None:
            self.alerts.write(record)

    # -- detection --------------------------------------------------------------

    def _candidates(self, since_us: int) -> npt.NDArray[np.int64]:
        """Hosts worth a full evaluation now.

        A vectorised pre-filter (:func:`wormwatch.detect.could_fire`): a host
        whose totals cannot reach any detector's thresholds keeps score 0
        without a Python-level look. Of the rest, those with events since
        ``since_us``, plus every host that holds a verdict (so a verdict can
        clear once the activity leaves the window).
        """
        maybe = could_fire(self.agg.totals(), self.cfg).any(axis=1)
        dirty = self.agg.last_seen_us() >= since_us
        ids = np.nonzero(maybe & dirty)[0]
        flagged = [i for i, v in self.verdicts.items() if v.verdicts]
        if flagged:
            ids = np.union1d(ids, np.array(flagged, np.int64))
        return ids.astype(np.int64)

    def _evaluate(self, since_us: int, *, emit: bool, all_hosts: bool = False) -> None:
        """Re-score hosts with events since ``since_us``.

        With ``emit`` (bin boundaries and the end of the run) the verdicts
        also go through the alert tracker; display refreshes only re-score.
        """
        now_us = self.agg.now_us
        if now_us < 0:
            return
        ids = self._candidates(since_us)
        if all_hosts:
            ids = np.union1d(ids, np.array(list(self.verdicts), np.int64)).astype(np.int64)
        for state, idx in zip(self.agg.host_states(ids), ids.tolist(), strict=True):
            verdict = evaluate(state, self.cfg, now_us=now_us)
            self.scores[idx] = verdict.score
            self.verdicts[idx] = verdict
            if not emit:
                continue
            record = self.tracker.update(state.addr, verdict, now_us)
            if record is not None:
                self.n_alerts += 1
                if self.alerts is not None:
                    self.alerts.write(record)
        if emit:
            self._alert_mark_us = now_us
        self._display_mark_us = now_us

    # -- read out ---------------------------------------------------------------

    def _ranked(self, limit: int | None) -> np.ndarray:
        n = self.agg.n_hosts
        order = np.lexsort((-self.agg.activity(), -self.scores[:n]))
        return order if limit is None else order[:limit]

    def host_views(self, limit: int | None = None) -> list[HostView]:
        """Hosts ranked by score (then activity), with their verdicts.

        Name-prefix statistics (a Python dict per host) are read out only for
        the top hosts and the flagged ones: nobody reads them for the rest,
        and building them for 100,000 hosts costs seconds.
        """
        ids = self._ranked(limit)
        states = self.agg.host_states(ids, with_prefixes=False)
        flagged = {i for i, v in self.verdicts.items() if v.verdicts}
        want = [k for k, i in enumerate(ids.tolist()) if k < TOP_HOSTS or i in flagged]
        if want:
            full = self.agg.host_states(ids[want])
            for k, state in zip(want, full, strict=True):
                states[k] = state
        return [
            HostView(state, self.verdicts.get(idx, Verdict()))
            for state, idx in zip(states, ids.tolist(), strict=True)
        ]

    def network_sync(self) -> float | None:
        """Pearson r of all clients' MX queries against all their SYNs."""
        bins, series = self.agg.network_series()
        if series.shape[0] == 0:
            return None
        return network_sync(series[:, 1], series[:, 2], bins=bins, cfg=self.cfg)

    def network_evidence(self) -> dict[str, object] | None:
        """The network-wide sync with its series, for the summary record."""
        bins, series = self.agg.network_series()
        if series.shape[0] == 0:
            return None
        return network_evidence(bins, series[:, 1], series[:, 2], self.cfg)

    def snapshot(self, source: Source, *, is_finished: bool = False) -> Snapshot:
        """What the sensor knows now, for the display and the summary."""
        wall = self.clock()
        st = self.decoder.stats
        mark = (wall, st.packets, st.dns_queries, st.syns, self.agg.now_us)
        if self._rate_mark is not None:
            w0, p0, d0, s0, t0 = self._rate_mark
            span = (mark[4] - t0) / 1e6 if not self.is_live else wall - w0
            if span > 0:
                self._rates = ((mark[1] - p0) / span, (mark[2] - d0) / span, (mark[3] - s0) / span)
        self._rate_mark = mark
        if self.is_live:
            idle = None if self._last_relevant_wall < 0 else wall - self._last_relevant_wall
        else:
            idle = (
                None
                if self._last_relevant_us < 0
                else max(0.0, (self.agg.now_us - self._last_relevant_us) / 1e6)
            )
        sstats = source.stats()
        flagged: dict[str, int] = {}
        for verdict in self.verdicts.values():
            for name in verdict.verdicts:
                flagged[name] = flagged.get(name, 0) + 1
        counts = self.agg.counts()
        return Snapshot(
            source=self.source_name,
            is_live=self.is_live,
            start_us=max(self.agg.start_us, 0),
            now_us=max(self.agg.now_us, 0),
            wall_elapsed_s=wall - self._wall_start,
            packets_per_s=self._rates[0],
            dns_per_s=self._rates[1],
            syn_per_s=self._rates[2],
            hosts_tracked=counts.hosts_tracked,
            hosts_dropped=counts.hosts_evicted,
            events_untracked=counts.events_dropped,
            decode=st.as_dict(),
            kernel_dropped=sstats.kernel_dropped,
            kernel_received=sstats.kernel_received,
            interface_dropped=sstats.interface_dropped,
            idle_s=idle,
            network_sync_r=self.network_sync(),
            hosts=self.host_views(TOP_HOSTS),
            bin_s=self.agg.bin_s,
            is_finished=is_finished,
            flagged=flagged,
        )
