"""The central's consumer against a real nats-server: a busy central keeps its connection."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from wormwatch.cluster import consume
from wormwatch.cluster.broker import buckets, connect, ensure_streams
from wormwatch.cluster.central import Central
from wormwatch.cluster.consume import Consumer, _Item, fetch_batch
from wormwatch.cluster.settings import DELTA_SUBJECT, ClusterConfig
from wormwatch.config import Config

from testkit.natsbroker import Broker, BrokerPool, broker_pool

PARTS = 100
PART_BYTES = 900_000  # a busy bin's parts fill nearly the broker's 1 MiB max_payload


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[BrokerPool]:
    with broker_pool(tmp_path) as pool:
        yield pool


class _Busy(Consumer):
    """A consumer whose every batch takes a while, as a real central's merge of a
    busy bin does (the event loop reads nothing from the socket meanwhile); it
    notes what it received."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.seen: dict[int, int] = {}  # stream sequence -> times delivered

    def _decode(self, msgs: list[Msg]) -> list[_Item]:
        for msg in msgs:
            seq = int(msg.metadata.sequence.stream)
            self.seen[seq] = max(self.seen.get(seq, 0), int(msg.metadata.num_delivered or 1))
        time.sleep(0.5)  # the merge, holding the event loop
        return []


async def _publish_parts(cluster: ClusterConfig) -> None:
    nc = await connect(cluster, name="test-sensor")
    try:
        js = nc.jetstream()
        await ensure_streams(js, cluster, 3600)
        await buckets(js)
        body = bytes(PART_BYTES)  # not a valid delta: counted as bad, the bytes are what count
        for k in range(PARTS):
            await js.publish(f"{DELTA_SUBJECT}.0.{k % 8}", body)
    finally:
        await nc.close()


async def _consume(consumer: _Busy, cluster: ClusterConfig, within_s: float) -> None:
    """Run ``consumer``; once it is polling an empty stream, a sensor (its own thread
    and event loop) publishes the parts of a busy bin at once."""
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await asyncio.sleep(1.5)
    sensor = threading.Thread(target=asyncio.run, args=(_publish_parts(cluster),))
    sensor.start()
    deadline = time.monotonic() + within_s
    while len(consumer.seen) < PARTS and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.1)
    stop.set()
    await task
    sensor.join()


def test_a_busy_central_is_not_dropped_as_a_slow_consumer(brokers: BrokerPool) -> None:
    """~90 MB of parts published at once while the central polls: fetched at most
    24 MB at a time, every part arrives once, without a disconnect. Fetching 256 at a
    time let the broker push past its 64 MB max_pending while the central merged; the
    broker closed the connection and the parts in flight came again after the 30 s
    ack wait (the cluster benchmark's bins, ~30 s late)."""
    broker: Broker = brokers.start()
    cluster = ClusterConfig(url=broker.url, shards=16)
    consumer = _Busy(Central(Config(), cluster), (0, 15), on_alert=lambda _r: None,
                     on_round=lambda: None)  # fmt: skip
    asyncio.run(_consume(consumer, cluster, within_s=20.0))
    assert sorted(consumer.seen) == list(range(1, PARTS + 1))
    assert set(consumer.seen.values()) == {1}  # none delivered twice
    assert consumer.stats.errors == 0
    assert "Slow Consumer" not in broker.log.read_text()


def test_fetch_batch_keeps_a_fetch_within_its_byte_budget() -> None:
    assert fetch_batch(1 << 20) == consume.FETCH_BYTES // (1 << 20) == 24
    assert fetch_batch(64 << 20) == 1
    assert fetch_batch(4096) == consume.FETCH
    assert fetch_batch(0) == consume.FETCH
