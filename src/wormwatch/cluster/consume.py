"""Central side: consumes the deltas of its shards from JetStream, judges,
writes and publishes alerts, checkpoints, and publishes its top hosts.

In: the ``WORMWATCH_DELTAS`` stream (a durable pull consumer per shard
range) and sensor heartbeats. Out: alert records (file and
``wormwatch.alert.<shard>``), the top hosts in the ``wormwatch_top`` bucket,
a checkpoint in ``wormwatch_checkpoints``.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.kv import KeyValue

from wormwatch.cluster.broker import buckets, check_version, connect, describe, ensure_streams
from wormwatch.cluster.central import Central
from wormwatch.cluster.settings import (
    ALERT_SUBJECT,
    DELTA_STREAM,
    DELTA_SUBJECT,
    HEARTBEAT_SUBJECT,
)
from wormwatch.cluster.top import top_record
from wormwatch.delta import DeltaError, decode
from wormwatch.errors import WormwatchError

FETCH = 256
FETCH_WAIT_S = 0.5
TOP_EVERY_S = 2.0


@dataclass(slots=True)
class ConsumeStats:
    """What the consumer did (the sensors panel and metrics read it)."""

    applied: int = 0
    duplicates: int = 0
    bad: int = 0
    rows: int = 0
    pending: int = 0
    lag_s: float = 0.0
    checkpoint_seq: int = 0


class Consumer:
    """One central process's connection to the broker.

    Args:
        central: the merged state and judge.
        shards: the inclusive shard range this process owns.
        on_alert: called with each alert record (the alerts file).
        on_round: called after each round of applied deltas (the display).
    """

    def __init__(
        self,
        central: Central,
        shards: tuple[int, int],
        *,
        on_alert: Callable[[dict[str, object]], None],
        on_round: Callable[[], None],
    ) -> None:
        self.central = central
        self.shards = shards
        self.key = f"central-{shards[0]}-{shards[1]}"
        self.on_alert = on_alert
        self.on_round = on_round
        self.stats = ConsumeStats()
        self._subjects = [f"{DELTA_SUBJECT}.{s}.*" for s in range(shards[0], shards[1] + 1)]
        self._last_seq = 0
        self._newest_bin = -1
        self._is_replaying = False
        self._kv: KeyValue | None = None
        self._top: KeyValue | None = None
        self._js: JetStreamContext | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Set up, catch up, then consume until ``stop`` is set."""
        cluster = self.central.cluster
        nc = await connect(cluster, name=f"wormwatch-{self.key}")
        try:
            check_version(nc)
            js = self._js = nc.jetstream()
            await ensure_streams(js, cluster, self.central.cfg.window_s)
            self._kv, self._top = await buckets(js)
            await nc.subscribe(f"{HEARTBEAT_SUBJECT}.*", cb=self._on_heartbeat)
            sub = await js.pull_subscribe_bind(durable=await self._durable(js), stream=DELTA_STREAM)
            await self._catch_up(js, await self._checkpoint())
            await self._loop(sub, stop)
        except (nats.errors.Error, TimeoutError) as err:
            raise WormwatchError(describe(err)) from None
        finally:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await self._publish_top()
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await nc.close()

    async def _durable(self, js: JetStreamContext) -> str:
        config = ConsumerConfig(
            durable_name=self.key,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.ALL,
            filter_subjects=self._subjects,
            max_ack_pending=4 * FETCH,
            ack_wait=60.0,
        )
        try:
            await js.consumer_info(DELTA_STREAM, self.key)
        except nats.js.errors.NotFoundError:
            await js.add_consumer(DELTA_STREAM, config)
        return self.key

    async def _checkpoint(self) -> int:
        assert self._kv is not None
        try:
            entry = await self._kv.get(self.key)
        except nats.js.errors.KeyNotFoundError:
            return 0
        try:
            return int(json.loads(entry.value or b"{}").get("seq", 0))
        except (ValueError, AttributeError):
            return 0

    async def _catch_up(self, js: JetStreamContext, checkpoint: int) -> None:
        """Read every retained delta again; alerts up to ``checkpoint`` were written."""
        self.stats.checkpoint_seq = checkpoint
        self._is_replaying = checkpoint > 0
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE,
            filter_subjects=self._subjects,
            inactive_threshold=60.0,
        )
        sub = await js.pull_subscribe("", stream=DELTA_STREAM, config=config)
        try:
            while True:
                msgs = await self._fetch(sub)
                if not msgs:
                    break
                await self._apply(msgs)
                info = await sub.consumer_info()
                if info.num_pending == 0:
                    break
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        await self._judge(silent=self._is_replaying)
        self._is_replaying = False

    async def _loop(self, sub: JetStreamContext.PullSubscription, stop: asyncio.Event) -> None:
        next_top = 0.0
        while not stop.is_set():
            msgs = await self._fetch(sub)
            if msgs:
                await self._apply(msgs)
                await self._judge()
                await msgs[-1].ack()
                self.stats.pending = int(msgs[-1].metadata.num_pending or 0)
            if time.monotonic() >= next_top:
                next_top = time.monotonic() + TOP_EVERY_S
                await self._publish_top()
            self.on_round()

    async def _fetch(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        try:
            return list(await sub.fetch(FETCH, timeout=FETCH_WAIT_S))
        except nats.errors.TimeoutError:
            return []

    @staticmethod
    def _seq(msg: Msg) -> int:
        return int(msg.metadata.sequence.stream)

    async def _apply(self, msgs: list[Msg]) -> None:
        """Merge deltas; hosts are judged whenever merged packet time enters a
        new bin, before the new bin counts (as the sensor judges). Up to the
        checkpoint, judging is silent: those alerts were written before."""
        for msg in msgs:
            is_old = self._seq(msg) <= self.stats.checkpoint_seq
            if self._is_replaying and not is_old:
                await self._judge(silent=True)
                self._is_replaying = False
            silent = self._is_replaying
            try:
                delta = decode(msg.data)
            except DeltaError:
                self.stats.bad += 1
                continue
            if self._newest_bin >= 0 and delta.ident.bin > self._newest_bin:
                await self._judge(silent=silent)
            self._newest_bin = max(self._newest_bin, delta.ident.bin)
            if self.central.apply(delta):
                self.stats.applied += 1
                self.stats.rows += delta.n_hosts
            else:
                self.stats.duplicates += 1
            self._last_seq = max(self._last_seq, self._seq(msg))
            self.stats.lag_s = max(0.0, time.time() - msg.metadata.timestamp.timestamp())

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
            msg_id = f"{self.key}/{record.get('src_ip')}/{record.get('timestamp')}"
            await _quiet(
                self._js.publish(f"{ALERT_SUBJECT}.{shard}", body, headers={"Nats-Msg-Id": msg_id})
            )
        if self._last_seq > self.stats.checkpoint_seq:
            self.stats.checkpoint_seq = self._last_seq
            await self._kv.put(self.key, json.dumps({"seq": self._last_seq}).encode())

    async def _publish_top(self) -> None:
        if self._top is None:
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
