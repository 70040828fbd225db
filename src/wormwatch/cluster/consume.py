"""Central side: consumes the deltas of its shards from JetStream, judges,
writes and publishes alerts, checkpoints, and publishes its top hosts.

In: the ``WORMWATCH_DELTAS`` stream (a durable pull consumer per shard range) and
sensor heartbeats. Out: alert records (file and ``wormwatch.alert.<shard>``), the
top hosts in ``wormwatch_top``, a checkpoint in ``wormwatch_checkpoints``.

A restarted process first reads again every retained delta of its shards
(the merge skips identities it already has), judging silently up to the
checkpoint: alerts it wrote before are not written again, alerts it had not
written yet are. Then the durable consumer carries on where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.kv import KeyValue

from wormwatch.cluster.broker import (
    FETCH,
    JS_TIMEOUT_S,
    buckets,
    check_version,
    connect,
    describe,
    durable_pull,
    fetch_batch,
    pending_bytes,
    stderr_line,
)
from wormwatch.cluster.central import Central
from wormwatch.cluster.settings import (
    ALERT_SUBJECT,
    DELTA_STREAM,
    DELTA_SUBJECT,
    HEARTBEAT_SUBJECT,
)
from wormwatch.cluster.top import check_alone, top_record
from wormwatch.delta import Delta, DeltaError, decode
from wormwatch.errors import WormwatchError
from wormwatch.records import alert_key
from wormwatch.text import escape_text

FETCH_WAIT_S = 0.5
# a catch-up that receives nothing for this long goes on without the rest, saying so
CATCH_UP_STALL_S = 30.0
TOP_EVERY_S = 2.0
# why a delta is acknowledged without being merged: not a delta the central can
# decode, bins of another length than the central's (``[aggregate] bin_s``), or
# packet time too far ahead of the central's clock (``Central.refusal``)
REFUSALS = ("malformed", "bin_s", "clock")
_Sub = JetStreamContext.PullSubscription


@dataclass(frozen=True, slots=True)
class _Item:
    delta: Delta
    seq: int  # stream sequence
    stored_s: float  # when the broker stored it (wall clock)

    def order(self) -> tuple[int, int]:
        return self.delta.ident.bin, self.seq


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What was judged (its alerts written): every delta up to stream
    sequence ``seq``, and those up to ``upto`` whose bin is at most ``bin``
    (a catch-up judges in bin order, not in stream order)."""

    seq: int = 0
    upto: int = 0
    bin: int = -1

    def covers(self, item: _Item) -> bool:
        return item.seq <= self.seq or (item.seq <= self.upto and item.delta.ident.bin <= self.bin)


@dataclass(slots=True)
class ConsumeStats:
    """What the consumer did (the sensors panel and metrics read it)."""

    applied: int = 0
    duplicates: int = 0
    # deltas acknowledged and never merged, by why (:data:`REFUSALS`)
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REFUSALS, 0))
    rows: int = 0
    pending: int = 0
    lag_s: float = 0.0
    checkpoint: Checkpoint = Checkpoint()
    errors: int = 0


class Consumer:
    """One central process's connection to the broker.

    Args:
        central: the merged state and judge.
        shards: the inclusive shard range this process owns.
        on_alert: called with each alert record (the alerts file).
        on_round: called after each round of applied deltas (the display).
        warn: says a problem of the cluster, once (stderr).
    """

    def __init__(
        self,
        central: Central,
        shards: tuple[int, int],
        *,
        on_alert: Callable[[dict[str, object]], None],
        on_round: Callable[[], None],
        warn: Callable[[str], None] = stderr_line,
    ) -> None:
        self.central = central
        self.shards = shards
        self.key = f"central-{shards[0]}-{shards[1]}"
        self.on_alert = on_alert
        self.on_round = on_round
        self.warn = warn
        self.stats = ConsumeStats()
        self._said: set[tuple[str, str]] = set()
        self._heard: deque[str] = deque(maxlen=1)  # the broker's last error (a refusal)
        self._subjects = [f"{DELTA_SUBJECT}.{s}.*" for s in range(shards[0], shards[1] + 1)]
        self._last_seq = 0
        self._newest_bin = -1
        self._sorted: tuple[int, int] | None = None
        self._kv: KeyValue | None = None
        self._top: KeyValue | None = None
        self._js: JetStreamContext | None = None
        self._nc: Client | None = None
        self._pending_bytes = 0
        self._batch = FETCH

    async def run(self, stop: asyncio.Event) -> None:
        """Set up, catch up, then consume until ``stop`` is set."""
        name, said = f"wormwatch-{self.key}", self._heard
        nc = self._nc = await connect(self.central.cluster, name=name, on_error=said.append)
        try:
            check_version(nc)
            js = self._js = nc.jetstream(timeout=JS_TIMEOUT_S)
            self._batch = fetch_batch(int(nc.max_payload))
            self._pending_bytes = pending_bytes(nc, self._batch)
            await check_alone(js, self.key, TOP_EVERY_S)
            sub, _created = await self._bind(js)
            await nc.subscribe(f"{HEARTBEAT_SUBJECT}.*", cb=self._on_heartbeat)
            await self._catch_up(js, await self._checkpoint())
            await self._loop(sub, stop)
        except (nats.errors.Error, TimeoutError) as err:
            raise WormwatchError(describe(err, said)) from None
        finally:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await self._publish_top()
            # a client still reconnecting to a broker that is away ends with the
            # transport's OSError (a traceback, and no summary written)
            with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
                await nc.close()

    async def _bind(self, js: JetStreamContext) -> tuple[_Sub, bool]:
        """Streams, buckets and our durable consumer (created when missing), bound."""
        sub, created = await durable_pull(
            js, self.central.cluster, self.central.cfg.window_s,
            key=self.key, subjects=self._subjects, pending_bytes_limit=self._pending_bytes,
            said=self._heard,
        )  # fmt: skip
        self._kv, self._top = await buckets(js)
        return sub, created

    async def _checkpoint(self) -> Checkpoint:
        assert self._kv is not None
        try:
            entry = await self._kv.get(self.key)
            fields = json.loads(entry.value or b"{}")
            return Checkpoint(int(fields["seq"]), int(fields["upto"]), int(fields["bin"]))
        except nats.js.errors.KeyNotFoundError:
            return Checkpoint()
        except (ValueError, KeyError, TypeError):
            return Checkpoint()

    async def _save(self, checkpoint: Checkpoint) -> None:
        assert self._kv is not None
        self.stats.checkpoint = checkpoint
        body = {"seq": checkpoint.seq, "upto": checkpoint.upto, "bin": checkpoint.bin}
        await self._kv.put(self.key, json.dumps(body).encode())

    async def _catch_up(self, js: JetStreamContext, checkpoint: Checkpoint) -> None:
        """Read every retained delta again, in bin order (as one sensor would
        have counted them); alerts of what ``checkpoint`` covers were written."""
        self.stats.checkpoint = checkpoint
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE,
            filter_subjects=self._subjects,
            inactive_threshold=60.0,
        )
        last_seq = (await js.stream_info(DELTA_STREAM)).state.last_seq
        sub = await js.pull_subscribe(
            "", stream=DELTA_STREAM, config=config, pending_bytes_limit=self._pending_bytes
        )
        try:
            retained = await self._read_retained(sub, last_seq)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        old = sorted((i for i in retained if checkpoint.covers(i)), key=_Item.order)
        new = sorted((i for i in retained if not checkpoint.covers(i)), key=_Item.order)
        await self._apply(old, silent=True)
        await self._judge(silent=True)
        self._sorted = (checkpoint.seq, max((i.seq for i in retained), default=0))
        await self._apply(new)
        await self._judge()
        self._sorted = None
        await self._save(Checkpoint(self._last_seq, self._last_seq, -1))

    async def _read_retained(self, sub: _Sub, last_seq: int) -> list[_Item]:
        """Every delta of our shards up to stream sequence ``last_seq`` (the stream's last
        when the catch-up began), and any after it that came along.

        An empty fetch is no end: a fetch gives up after :data:`FETCH_WAIT_S`, but
        what the broker sent for it still arrives (for the next fetch), and is never
        sent again (no acknowledgements here). The end is a message at or past
        ``last_seq``, or one after which the broker had nothing more of our shards.
        """
        retained: list[_Item] = []
        is_done = (await sub.consumer_info()).num_pending == 0
        seen = 0
        give_up = time.monotonic() + CATCH_UP_STALL_S
        while not is_done:
            msgs = await self._fetch(sub)
            retained.extend(self._decode(msgs))
            if msgs:
                seen = max(seen, *(int(m.metadata.sequence.stream) for m in msgs))
                is_done = seen >= last_seq or any(m.metadata.num_pending == 0 for m in msgs)
                give_up = time.monotonic() + CATCH_UP_STALL_S
            elif time.monotonic() >= give_up:
                self.warn(
                    f"catch-up: nothing came for {CATCH_UP_STALL_S:.0f} s, read up to stream "
                    f"sequence {seen} of {last_seq}; going on without the rest (deltas this "
                    "central consumed before it restarted and did not read again are missing)"
                )
                break
        return retained

    async def _loop(self, sub: JetStreamContext.PullSubscription, stop: asyncio.Event) -> None:
        next_top = 0.0
        while not stop.is_set():
            try:
                msgs = await self._fetch(sub)
                if msgs:
                    await self._apply(self._decode(msgs))
                    await self._judge()
                    await asyncio.gather(*(m.ack() for m in msgs))
                    self.stats.pending = int(msgs[-1].metadata.num_pending or 0)
                if time.monotonic() >= next_top:
                    next_top = time.monotonic() + TOP_EVERY_S
                    await self._publish_top()
            except nats.js.errors.ServiceUnavailableError:
                # no one answers for our consumer: a broker back without its store?
                self.stats.errors += 1
                with contextlib.suppress(nats.errors.Error, TimeoutError, WormwatchError):
                    sub = await self._rebind(sub)
                await asyncio.sleep(1.0)
            except (nats.errors.Error, TimeoutError):
                # the broker is away or slow: what was not acknowledged comes
                # again (the merge skips what it has), so wait and go on
                self.stats.errors += 1
                await asyncio.sleep(1.0)
            self.on_round()

    async def _rebind(self, old: _Sub) -> _Sub:
        assert self._js is not None
        sub, created = await self._bind(self._js)
        with contextlib.suppress(nats.errors.Error):
            await old.unsubscribe()
        if created:
            # its stream sequences start again at 1: the old ones mean nothing now
            self._last_seq = 0
            await self._save(Checkpoint())
            self.warn(
                f"the broker had lost consumer {self.key} (restarted without its store?): "
                "created it again; deltas it held before are gone, new ones are merged"
            )
        return sub

    async def _fetch(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        try:
            return list(await sub.fetch(self._batch, timeout=FETCH_WAIT_S))
        except TimeoutError:
            # nats-py 2.16 ends a fetch with its own TimeoutError, or with asyncio's
            # when its no-wait probe was answered at the deadline
            return []

    def _decode(self, msgs: list[Msg]) -> list[_Item]:
        """The deltas of ``msgs`` this central can merge. The others are refused:
        counted, said once per sensor and kind, acknowledged with the rest and
        never merged (a catch-up that reads them again refuses them again)."""
        items = []
        for msg in msgs:
            try:
                delta = decode(msg.data)
            except DeltaError as err:
                # the sensor's name as it published (the subject's last token)
                self._refuse(msg.subject.rpartition(".")[2], "malformed", str(err))
                continue
            refusal = self.central.refusal(delta)
            if refusal is not None:
                self._refuse(delta.ident.sensor, *refusal)
                continue
            seq = int(msg.metadata.sequence.stream)
            items.append(_Item(delta, seq, msg.metadata.timestamp.timestamp()))
        return items

    def _refuse(self, sensor: str, kind: str, why: str) -> None:
        self.stats.refused[kind] += 1
        if (sensor, kind) not in self._said:
            self._said.add((sensor, kind))
            self.warn(
                f"sensor {escape_text(sensor[:64])}: a delta is not merged ({why}); "
                f"such deltas are skipped, counted as refused ({kind})"
            )

    async def _apply(self, items: list[_Item], *, silent: bool = False) -> None:
        """Merge deltas; hosts are judged whenever merged packet time enters a
        new bin, before the new bin counts (as the sensor judges)."""
        for item in items:
            delta = item.delta
            if self._newest_bin >= 0 and delta.ident.bin > self._newest_bin:
                await self._judge(silent=silent)
                if delta.ident.bin > self._newest_bin + 1:
                    # whole bins went by without a packet: judged again at the time
                    # that ends the silence, before it counts (as the sensor does)
                    self.central.agg.advance(delta.seen_first_us)
                    await self._judge(silent=silent)
            self._newest_bin = max(self._newest_bin, delta.ident.bin)
            if self.central.apply(delta):
                self.stats.applied += 1
                self.stats.rows += delta.n_hosts
            else:
                self.stats.duplicates += 1
            self._last_seq = max(self._last_seq, item.seq)
            self.stats.lag_s = max(0.0, time.time() - item.stored_s)

    async def _judge(self, *, silent: bool = False) -> None:
        """Judge what the applied deltas touched; write, publish, checkpoint.
        ``silent``: the records were written before a restart."""
        assert self._js is not None
        assert self._kv is not None
        shard = self.shards[0]
        records = self.central.judge()
        if silent:
            return
        for record in records:
            self.on_alert(record)
            body = json.dumps(record, sort_keys=True).encode()
            # the alert stream drops a second copy of one alert (rewritten after a
            # restart), and only that: two alerts of one host can share a packet time
            msg_id = f"{self.key}/{alert_key(record)}"
            await _quiet(
                self._js.publish(f"{ALERT_SUBJECT}.{shard}", body, headers={"Nats-Msg-Id": msg_id})
            )
        if self._sorted is not None:
            # in a catch-up: every bin up to the newest applied one is judged
            # (saved once it covers at least what the last checkpoint did)
            seq, upto = self._sorted
            if self._newest_bin >= self.stats.checkpoint.bin:
                await self._save(Checkpoint(seq, upto, self._newest_bin))
        elif self._last_seq > self.stats.checkpoint.seq:
            await self._save(Checkpoint(self._last_seq, self._last_seq, -1))

    async def _publish_top(self) -> None:
        # while the broker is away a put waits out JS_TIMEOUT_S (20 s): the loop
        # stopped hearing SIGTERM, and the process ended 40 s after it
        if self._top is None or self._nc is None or not self._nc.is_connected:
            return
        record = top_record(self.central, self.key, self.stats.lag_s)
        await self._top.put(self.key, json.dumps(record).encode())

    async def _on_heartbeat(self, msg: Msg) -> None:
        with contextlib.suppress(ValueError, TypeError):
            fields = json.loads(msg.data)
            if isinstance(fields, dict):
                self.central.heartbeat(fields)


async def _quiet(call: Awaitable[object]) -> None:
    """An alert that cannot be published still went to the file: never stop for it."""
    with contextlib.suppress(nats.errors.Error, TimeoutError):
        await call
