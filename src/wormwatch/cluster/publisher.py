"""Sensor side: publishes deltas and heartbeats from a background thread.

In: encoded deltas from the capture thread (:meth:`Publisher.submit`, which
never blocks on the broker) and heartbeat fields. Out: JetStream messages on
``wormwatch.delta.<shard>.<sensor>`` with ``Nats-Msg-Id`` = the delta's
identity, and core messages on ``wormwatch.heartbeat.<sensor>``.

A delta leaves the buffer only when the broker acknowledged it (a duplicate
counts as acknowledged: it is there already). While the broker is away the
buffer keeps what was not acknowledged, up to ``buffer_mb``; past that the
oldest deltas are dropped, counted and said once.
"""

from __future__ import annotations

import asyncio

# asyncio's default executor (run_in_executor): imported now, as a live sensor
# drops its privileges after start and may no longer read the library folder
import concurrent.futures.thread  # noqa: F401
import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from wormwatch.cluster.broker import (
    JS_TIMEOUT_S,
    check_version,
    connect,
    connect_options,
    describe,
    ensure_streams,
)
from wormwatch.cluster.settings import DELTA_SUBJECT, HEARTBEAT_SUBJECT, ClusterConfig
from wormwatch.delta import Delta, encode
from wormwatch.errors import WormwatchError
from wormwatch.text import escape_text

BATCH = 256
ACK_TIMEOUT_S = 5.0
HEARTBEAT_S = 2.0


@dataclass(slots=True)
class _Item:
    subject: str
    msg_id: str
    payload: bytes


@dataclass(slots=True)
class PublishCounts:
    """What the publisher did so far (for heartbeats, metrics and the end line)."""

    submitted: int = 0
    acknowledged: int = 0
    duplicates: int = 0
    dropped: int = 0
    buffered: int = 0
    buffered_bytes: int = 0
    is_connected: bool = False


class Publisher:
    """A background thread with its own asyncio loop for nats-py.

    Args:
        cfg: the ``[cluster]`` settings (URL, credentials, TLS, buffer bound).
        sensor: this sensor's name.
        window_s: the aggregate's window (the streams keep that much).
        warn: called with one line when something the operator should know
            happens (refused credentials, broker away, buffer bound hit).
    """

    def __init__(
        self, cfg: ClusterConfig, *, sensor: str, window_s: int, warn: Callable[[str], None]
    ) -> None:
        self.cfg = cfg
        self.sensor = sensor
        self.window_s = window_s
        self.warn = warn
        self.counts = PublishCounts()
        self._queue: deque[_Item] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._deadline = float("inf")
        self._heartbeat: dict[str, object] = {}
        self._said: set[str] = set()
        self._is_stopping = False
        self._limit = cfg.buffer_mb * 1024 * 1024
        # TLS and creds files are read now, before a live sensor drops its privileges
        self._options = connect_options(cfg, name=f"wormwatch-sensor-{sensor}")
        self._thread = threading.Thread(target=self._run, name="wormwatch-publish", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- the capture thread's side ----------------------------------------------

    def submit(self, deltas: list[Delta]) -> None:
        """Queue deltas for publishing (never waits for the broker)."""
        if not deltas:
            return
        items = [
            _Item(f"{DELTA_SUBJECT}.{d.ident.shard}.{self.sensor}", d.msg_id, encode(d))
            for d in deltas
        ]
        with self._lock:
            for item in items:
                self._queue.append(item)
                self.counts.buffered_bytes += len(item.payload)
            self.counts.submitted += len(items)
            while self.counts.buffered_bytes > self._limit and self._queue:
                gone = self._queue.popleft()
                self.counts.buffered_bytes -= len(gone.payload)
                self.counts.dropped += 1
            self.counts.buffered = len(self._queue)
        if self.counts.dropped:
            self._say_once(
                "bound",
                f"publish buffer full ({self.cfg.buffer_mb} MiB): dropping the oldest "
                "unpublished deltas (counted as dropped; raise [cluster] buffer_mb)",
            )
        self._wake.set()

    def heartbeat(self, fields: dict[str, object]) -> None:
        """The latest sensor health, sent every few seconds."""
        with self._lock:
            self._heartbeat = dict(fields)

    def close(self, timeout_s: float) -> int:
        """Publish what is buffered for up to ``timeout_s``; how many deltas
        were not acknowledged (still buffered, or dropped)."""
        self._deadline = time.monotonic() + timeout_s
        self._closing.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s + 5.0)
        with self._lock:
            return len(self._queue) + self.counts.dropped

    def _say_once(self, key: str, line: str) -> None:
        if key not in self._said:
            self._said.add(key)
            self.warn(line)

    # -- the publishing thread ---------------------------------------------------

    def _run(self) -> None:
        asyncio.run(self._main())

    def _done(self) -> bool:
        if not self._closing.is_set():
            return False
        with self._lock:
            empty = not self._queue
        return empty or time.monotonic() >= self._deadline

    async def _main(self) -> None:
        nc: Client | None = None
        while not self._done():
            try:
                nc = await self._connect()
            except WormwatchError as err:
                self._say_once(f"connect:{err}", f"{err}; sensing locally, deltas kept for later")
                await self._idle(5.0)
                continue
            break
        if nc is None:
            return
        js = nc.jetstream(timeout=JS_TIMEOUT_S)
        beat = asyncio.create_task(self._beat(nc))
        try:
            while not self._done():
                await self._publish_some(js)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            self._is_stopping = True
            # a client still reconnecting to a broker that is gone ends with the
            # transport's OSError (a traceback from the publishing thread)
            with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
                await nc.close()

    async def _connect(self) -> Client:
        def on_state(up: bool) -> None:
            self.counts.is_connected = up
            if not up and not self._is_stopping:
                self._say_once("down", "lost the broker; sensing locally, will catch up")

        nc = await connect(
            self.cfg,
            name=self._options["name"],
            on_error=lambda line: self._say_once(f"error:{line}", line),
            on_state=on_state,
            options=self._options,
        )
        check_version(nc)
        with contextlib.suppress(WormwatchError):
            # a sensor without the right to create streams uses the central's
            await ensure_streams(nc.jetstream(timeout=JS_TIMEOUT_S), self.cfg, self.window_s)
        self.counts.is_connected = True
        return nc

    async def _idle(self, seconds: float) -> None:
        """Wait for new work, closing, or ``seconds``."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._wake.wait, seconds)
        self._wake.clear()

    async def _publish_some(self, js: JetStreamContext) -> None:
        with self._lock:
            batch = [self._queue[i] for i in range(min(BATCH, len(self._queue)))]
        if not batch:
            await self._idle(HEARTBEAT_S)
            return
        results = await asyncio.gather(
            *(self._publish_one(js, item) for item in batch), return_exceptions=True
        )
        acked = {id(item) for item, ok in zip(batch, results, strict=True) if ok is True}
        with self._lock:
            # in order: an acknowledged delta behind a failed one is sent again
            # later (the broker drops the copy by its message id)
            while self._queue and id(self._queue[0]) in acked:
                gone = self._queue.popleft()
                self.counts.buffered_bytes -= len(gone.payload)
                self.counts.acknowledged += 1
            self.counts.buffered = len(self._queue)
        if len(acked) < len(batch):
            if any(isinstance(r, nats.js.errors.NoStreamResponseError) for r in results):
                await self._stream_again(js)
            await asyncio.sleep(0.5)

    async def _stream_again(self, js: JetStreamContext) -> None:
        """No stream took our deltas: a broker back without its store. They were
        refused until the sensor restarted (a replay exited 3, saying nothing why)."""
        self._say_once("nostream", "the broker has no delta stream (restarted without "
                       "its store?): creating it again")  # fmt: skip
        with contextlib.suppress(WormwatchError):
            await ensure_streams(js, self.cfg, self.window_s)

    async def _publish_one(self, js: JetStreamContext, item: _Item) -> bool:
        try:
            ack = await js.publish(
                item.subject,
                item.payload,
                timeout=ACK_TIMEOUT_S,
                headers={"Nats-Msg-Id": item.msg_id},
            )
        except nats.errors.MaxPayloadError:
            # one host with more distinct names in a bin than a message holds
            self.counts.dropped += 1
            self._say_once("payload", "a delta exceeds the broker's max_payload: dropped "
                           "(counted); raise max_payload in the server config")  # fmt: skip
            return True
        except nats.js.errors.NoStreamResponseError:
            raise  # for _publish_some: no stream took it
        except nats.js.errors.APIError as err:
            # the stream refused it (its limits, a full store): said nowhere before,
            # a replay exited 3 with "the broker did not confirm them" and no why
            self._say_once(f"api:{err.description}", f"the broker refused a delta "
                           f"({escape_text(str(err.description))}); kept for later")  # fmt: skip
            return False
        except (nats.errors.Error, TimeoutError) as err:
            line = describe(err)
            if "credentials" in line or "permission" in line.lower():
                self._say_once(f"pub:{line}", line)
            return False
        if ack.duplicate:
            self.counts.duplicates += 1
        return True

    async def _beat(self, nc: Client) -> None:
        subject = f"{HEARTBEAT_SUBJECT}.{self.sensor}"
        while True:
            with self._lock:
                fields = dict(self._heartbeat)
                counts = {
                    "buffered": self.counts.buffered,
                    "published": self.counts.acknowledged,
                    "dropped": self.counts.dropped,
                }
            # its shard count: a central with another one would never see some hosts
            fields.update(counts, sensor=self.sensor, wall=time.time(), shards=self.cfg.shards)
            with contextlib.suppress(nats.errors.Error):
                await nc.publish(subject, json.dumps(fields).encode())
            await asyncio.sleep(HEARTBEAT_S)
