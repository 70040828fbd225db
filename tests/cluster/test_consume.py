"""The central's consumer: against a real nats-server, a busy central keeps its
connection; without one (fake messages, subscription and JetStream), what it does
with deltas it cannot merge."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nats.errors
import pytest
from nats.aio.msg import Msg

from wormwatch.cluster import consume
from wormwatch.cluster.broker import (
    FETCH,
    FETCH_BYTES,
    buckets,
    connect,
    ensure_streams,
    fetch_batch,
)
from wormwatch.cluster.central import Central
from wormwatch.cluster.consume import Consumer, _Item
from wormwatch.cluster.settings import DELTA_STREAM, DELTA_SUBJECT, ClusterConfig
from wormwatch.config import Config
from wormwatch.delta import Delta, DeltaId, encode
from wormwatch.model import KIND_SYN
from wormwatch.records import alert_key

from testkit.deltas import export
from testkit.events import make_events
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


async def _publish_parts(cluster: ClusterConfig, n: int = PARTS, shard: int = 0) -> None:
    nc = await connect(cluster, name="test-sensor")
    try:
        js = nc.jetstream()
        await ensure_streams(js, cluster, 3600)
        await buckets(js)
        body = bytes(PART_BYTES)  # not a valid delta (refused): the bytes are what count
        for k in range(n):
            await js.publish(f"{DELTA_SUBJECT}.{shard}.{k % 8}", body)
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


class _CatchUpOnly(Consumer):
    """A consumer that notes the stream sequences its catch-up reads, and stops there."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.read: set[int] = set()

    def _decode(self, msgs: list[Msg]) -> list[_Item]:
        self.read.update(int(m.metadata.sequence.stream) for m in msgs)
        return []

    async def _loop(self, sub: object, stop: asyncio.Event) -> None:
        return


def _catch_up_only(cluster: ClusterConfig, warnings: list[str]) -> _CatchUpOnly:
    """A central of shards 0-7 that catches up and stops."""
    consumer = _CatchUpOnly(Central(Config(), cluster), (0, 7), on_alert=lambda _r: None,
                            on_round=lambda: None, warn=warnings.append)  # fmt: skip
    asyncio.run(consumer.run(asyncio.Event()))
    return consumer


def test_a_catch_up_reads_what_is_still_on_its_way(
    brokers: BrokerPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fetch that gives up before the broker's messages arrive (a fetch wait of
    5 ms stands in for a slow link): they arrive for the next fetch, and the
    catch-up reads on until the broker has no more of its shards (the stream's last
    message is another shard's). It stopped at the first empty fetch and
    unsubscribed, losing what was on its way: 0 of 40 read."""
    monkeypatch.setattr(consume, "FETCH_WAIT_S", 0.005)
    monkeypatch.setattr(consume, "CATCH_UP_STALL_S", 5.0)
    broker = brokers.start()
    cluster = ClusterConfig(url=broker.url, shards=16)
    asyncio.run(_publish_parts(cluster, 40))
    asyncio.run(_publish_parts(cluster, 1, shard=15))
    warnings: list[str] = []
    consumer = _catch_up_only(cluster, warnings)
    assert sorted(consumer.read) == list(range(1, 41))
    assert warnings == []


def test_a_catch_up_that_receives_nothing_goes_on_and_says_so(
    brokers: BrokerPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consume, "CATCH_UP_STALL_S", 0.3)
    monkeypatch.setattr(_CatchUpOnly, "_fetch", _fetch_nothing)
    broker = brokers.start()
    cluster = ClusterConfig(url=broker.url, shards=16)
    asyncio.run(_publish_parts(cluster, 1))
    warnings: list[str] = []
    _catch_up_only(cluster, warnings)
    assert len(warnings) == 1
    assert "catch-up: nothing came for 0 s, read up to stream sequence 0 of 1" in warnings[0]


async def _fetch_nothing(_self: Consumer, _sub: object) -> list[Msg]:
    return []


def test_fetch_batch_keeps_a_fetch_within_its_byte_budget() -> None:
    assert fetch_batch(1 << 20) == FETCH_BYTES // (1 << 20) == 24
    assert fetch_batch(64 << 20) == 1
    assert fetch_batch(4096) == FETCH
    assert fetch_batch(0) == FETCH


# -- without a broker ---------------------------------------------------------------

T0 = 1_700_000_040_000_000  # a bin start (60 s bins)


class _Client:
    """What a message's ack publishes to."""

    def __init__(self) -> None:
        self.acked: list[str] = []

    async def publish(self, subject: str, *_args: object, **_kwargs: object) -> None:
        self.acked.append(subject)


class _JetStream:
    """Takes the alerts the central publishes, with their headers."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []

    async def publish(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        self.published.append((subject, body, headers))


class _Bucket:
    async def put(self, _key: str, _value: bytes) -> int:
        return 0


class _Subscription:
    """Hands out one round of messages per fetch, then nothing."""

    def __init__(self, rounds: list[list[Msg]]) -> None:
        self.rounds = rounds

    async def fetch(self, _batch: int, timeout: float) -> list[Msg]:
        if not self.rounds:
            raise nats.errors.TimeoutError
        return self.rounds.pop(0)


def _messages(client: _Client, payloads: list[tuple[str, bytes]]) -> list[Msg]:
    """``(sensor, payload)`` as the broker delivers them (stream sequences from 1)."""
    return [
        Msg(
            client,  # type: ignore[arg-type]
            subject=f"{DELTA_SUBJECT}.0.{sensor}",
            reply=f"$JS.ACK.{DELTA_STREAM}.central-0-3.1.{seq}.{seq}.{T0 * 1000}.0",
            data=data,
        )
        for seq, (sensor, data) in enumerate(payloads, start=1)
    ]


class _Rig:
    """A consumer of all 4 shards (sensors a and b split one link) on fake JetStream
    objects, with what it warns and alerts."""

    def __init__(self) -> None:
        cluster = ClusterConfig(shards=4, split_of_link=(("a", "b"),))
        # the wall clock a day past the deltas' packet time (a replay's; none is ahead)
        wall_s = T0 / 1e6 + 86_400
        central = Central(Config(max_hosts=64, max_host_bins=256), cluster, clock=lambda: wall_s)
        self.warnings: list[str] = []
        self.alerts: list[dict[str, object]] = []
        self.js = _JetStream()
        self.consumer = Consumer(central, (0, 3), on_alert=self.alerts.append,
                                 on_round=self._round, warn=self.warnings.append)  # fmt: skip
        self.consumer._js, self.consumer._kv = self.js, _Bucket()  # type: ignore[assignment]
        self._stop = asyncio.Event()
        self._rounds_left = 0

    def _round(self) -> None:
        self._rounds_left -= 1
        if self._rounds_left <= 0:
            self._stop.set()

    def run(self, rounds: list[list[Msg]]) -> None:
        """The consumer's loop over these fetches, one round each."""
        self._rounds_left = len(rounds)
        self._stop.clear()
        sub = _Subscription(rounds)
        asyncio.run(self.consumer._loop(sub, self._stop))  # type: ignore[arg-type]


def _scan(sensor: str, first: int, n: int, last_us: int) -> list[Delta]:
    """A host's SMB scan of ``n`` targets in one bin, seen by ``sensor``, whose
    last packet of the bin (another host's) is at ``last_us``."""
    rows = [(T0 + 1000 * k, "10.0.0.7", f"198.51.{(first + k) // 250}.{(first + k) % 250}",
             KIND_SYN, 445, 0, b"") for k in range(n)]  # fmt: skip
    rows.append((last_us, "10.0.0.99", "198.51.200.1", KIND_SYN, 80, 0, b""))
    return export(make_events(rows), sensor, n_shards=4)


def test_deltas_the_central_cannot_merge_are_refused_said_once_and_acknowledged() -> None:
    """A sensor with another [aggregate] bin_s, a bin before the epoch and bytes that
    are no delta: counted and skipped, one line per sensor and kind, every message
    acknowledged (the old code raised ValueError or OverflowError out of the loop,
    unacknowledged, and again on every restart's catch-up)."""
    good = [d for d in _scan("a", 0, 5, T0 + 2_000_000) if d.n_hosts]
    d = good[0]
    other_bins = [dataclasses.replace(d, ident=DeltaId("c", d.ident.shard, d.ident.bin, part),
                                      bin_s=30) for part in (0, 1)]  # fmt: skip
    before_epoch = dataclasses.replace(d, ident=DeltaId("e", d.ident.shard, -5, 0))
    client = _Client()
    msgs = _messages(client, [
        *(("a", encode(x)) for x in good), *(("c", encode(x)) for x in other_bins),
        ("e", encode(before_epoch)), ("junk", b"not a delta"),
    ])  # fmt: skip
    rig = _Rig()
    rig.run([msgs])
    assert client.acked == [m.reply for m in msgs]
    assert rig.consumer.stats.applied == len(good)
    assert rig.consumer.stats.refused == {"malformed": 2, "bin_s": 2, "clock": 0}
    warnings = rig.warnings
    assert len(warnings) == 3
    assert warnings[0].startswith("sensor c: ")
    assert "its bins are 30 s, this aggregate's 60 s" in warnings[0]
    assert warnings[1].startswith("sensor e: ")
    assert "before the epoch" in warnings[1]
    assert warnings[2].startswith("sensor junk: ")
    assert "bad magic" in warnings[2]


def test_two_alerts_at_one_packet_time_have_their_own_message_ids() -> None:
    """Two sensors splitting one link report a scanner's bin in two rounds: a ``new``
    alert, then a ``band-changed`` one at the same merged packet time. Their
    Nats-Msg-Ids were both ``key/src_ip/timestamp``, and the alert stream dropped the
    second as a copy of the first."""
    client = _Client()
    first = _messages(client, [("a", encode(d)) for d in _scan("a", 0, 40, T0 + 59_000_000)])
    more = _messages(client, [("b", encode(d)) for d in _scan("b", 40, 200, T0 + 58_000_000)])
    rig = _Rig()
    rig.run([first, more])
    assert [(r["reason"], r["timestamp"]) for r in rig.alerts] == [
        ("new", "2023-11-14T22:14:59.000000+00:00"),
        ("band-changed", "2023-11-14T22:14:59.000000+00:00"),
    ]
    ids = [headers["Nats-Msg-Id"] for _subject, _body, headers in rig.js.published]
    assert len(set(ids)) == 2
    assert ids[0] == "central-0-3/10.0.0.7/2023-11-14T22:14:59.000000+00:00/new/1/smb-scan"


def test_an_alert_judged_again_keeps_its_message_id() -> None:
    """What may differ when a restarted central writes an alert again (deltas merged
    in another order: its score, evidence and sensors) is not in its id."""
    rig = _Rig()
    client = _Client()
    rig.run([_messages(client, [("a", encode(d)) for d in _scan("a", 0, 40, T0 + 1000)])])
    (record,) = rig.alerts
    again = {**record, "score": 47.5, "evidence": {}, "sensors": ["a", "b"]}
    assert alert_key(again) == alert_key(record)
    assert alert_key({**record, "band": 2}) != alert_key(record)


def test_a_sensor_ahead_of_the_central_s_clock_does_not_blind_it_to_the_others() -> None:
    """Sensor z's clock runs two days ahead of the central's (a day past the rig's
    packet time); its deltas come first. They are refused (counted, said once naming
    z) and sensor a's scanner is still judged: before, z's delta moved merged packet
    time on two days and a's deltas, older than the window, alerted nothing."""
    client = _Client()
    day_us = 86_400_000_000
    z = [dataclasses.replace(d, ident=dataclasses.replace(d.ident, bin=d.ident.bin + 2 * 1440),
                             seen_first_us=d.seen_first_us + 2 * day_us,
                             seen_last_us=d.seen_last_us + 2 * day_us)
         for d in _scan("z", 0, 5, T0 + 1000)]  # fmt: skip
    rig = _Rig()
    rig.run([_messages(client, [("z", encode(d)) for d in z])])
    rig.run([_messages(client, [("a", encode(d)) for d in _scan("a", 0, 40, T0 + 1000)])])
    assert [r["src_ip"] for r in rig.alerts] == ["10.0.0.7"]
    assert rig.consumer.stats.refused["clock"] == len(z)
    (warning,) = rig.warnings
    assert warning.startswith("sensor z: a delta is not merged (its packet time 2023-11-16T22:")
    assert "86,4" in warning


class _LateSubscription:
    """Ends a fetch as nats-py does when its no-wait probe is answered at the deadline."""

    async def fetch(self, _batch: int, timeout: float) -> list[Msg]:
        raise TimeoutError  # asyncio.TimeoutError is this one since Python 3.11


def test_a_fetch_that_ends_with_asyncios_timeout_is_an_empty_one() -> None:
    """It raised out of the catch-up, and the central exited with "cannot reach the
    broker (TimeoutError)" (a catch-up with 5 ms fetches, 1 run in 3 or so)."""
    consumer = _Rig().consumer
    assert asyncio.run(consumer._fetch(_LateSubscription())) == []  # type: ignore[arg-type]
