"""Benchmark of the decode stage: packets/s of the numba kernel and of the wrapper.

Builds a mixed Ethernet batch at run time (struct/numpy, no scapy): mostly bulk TCP
(pure ACKs and full-size data segments), ~20% DNS queries over UDP, some SYNs to 445,
with IPv4 and IPv6 and some 802.1Q tags. Compilation is measured apart from the steady
state.

Usage: python -m scripts.bench.decode [--packets N] [--repeat R]
"""

from __future__ import annotations

import argparse
import struct
import time

import numpy as np

from wormwatch.decode import Decoder, warm_up
from wormwatch.kernels.decode import N_FRAG_COLUMNS, N_SEG_COLUMNS, decode_packets
from wormwatch.model import LINKTYPE_ETHERNET, Batch

MAC = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02"
V6_SRC = bytes.fromhex("20010db8000000000000000000000001")
V6_DST = bytes.fromhex("20010db8000000000000000000000035")


def _ip(payload: bytes, proto: int, *, v6: bool, host: int) -> bytes:
    if v6:
        return struct.pack("!IHBB", 0x60000000, len(payload), proto, 64) + V6_SRC + V6_DST + payload
    src = struct.pack("!4B", 10, (host >> 16) & 255, (host >> 8) & 255, host & 255)
    header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0)
    return header + src + bytes((192, 0, 2, 53)) + payload


def _ether(ip: bytes, *, v6: bool, vlan: bool) -> bytes:
    ethertype = struct.pack("!H", 0x86DD if v6 else 0x0800)
    tag = b"\x81\x00\x00\x0a" if vlan else b""
    return MAC + tag + ethertype + ip


def _tcp(dport: int, flags: int, payload: bytes) -> bytes:
    return struct.pack("!HHIIBBHHH", 50000, dport, 1, 0, 0x50, flags, 65535, 0, 0) + payload


def _dns_query(i: int) -> bytes:
    words = (b"mail", b"smtp", b"www", b"Example", b"cdn")
    name = b"".join(bytes((len(w),)) + w for w in (words[i % 5], b"host%d" % (i % 997), b"com"))
    message = (
        struct.pack("!HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0) + name + b"\x00\x00\x01\x00\x01"
    )
    return struct.pack("!HHHH", 40000 + i % 1000, 53, 8 + len(message), 0) + message


def build_batch(n_packets: int, seed: int = 1) -> Batch:
    """A deterministic mixed batch of ``n_packets`` Ethernet frames."""
    rng = np.random.default_rng(seed)
    bulk = bytes(1460)
    frames = []
    for i in range(n_packets):
        roll = rng.random()
        v6 = rng.random() < 0.2
        vlan = rng.random() < 0.1
        if roll < 0.20:
            ip = _ip(_dns_query(i), 17, v6=v6, host=i % 5000)
        elif roll < 0.25:
            ip = _ip(_tcp(445, 0x02, b""), 6, v6=v6, host=i % 5000)
        elif roll < 0.40:
            ip = _ip(_tcp(443, 0x18, bulk), 6, v6=v6, host=i % 5000)
        else:
            ip = _ip(_tcp(443, 0x10, b""), 6, v6=v6, host=i % 5000)
        frames.append(_ether(ip, v6=v6, vlan=vlan))
    caplens = np.array([len(f) for f in frames], np.int32)
    offsets = np.zeros(n_packets, np.int64)
    offsets[1:] = np.cumsum(caplens[:-1], dtype=np.int64)
    return Batch(
        data=np.frombuffer(b"".join(frames), np.uint8),
        ts_us=np.arange(n_packets, dtype=np.int64) * 10,
        offsets=offsets,
        caplens=caplens,
        wirelens=caplens.copy(),
        linktypes=np.full(n_packets, LINKTYPE_ETHERNET, np.int32),
    )


def _bench_kernel(batch: Batch, repeat: int) -> float:
    decoder = Decoder(max_events=batch.n + 64)
    ev = decoder.decode(batch)
    status = np.zeros(batch.n, np.uint8)
    frags = np.zeros((batch.n, N_FRAG_COLUMNS), np.int64)
    segs = np.zeros((batch.n, N_SEG_COLUMNS), np.int64)
    data = batch.data
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        decode_packets(
            data, batch.offsets, batch.caplens, batch.linktypes, batch.ts_us, 0, 0, status,
            ev.ts_us, ev.src_hi, ev.src_lo, ev.dst_hi, ev.dst_lo,
            ev.kind, ev.dport, ev.qtype, ev.names, ev.name_lens, ev.sport, ev.status, frags, 0,
            segs, 0,
        )  # fmt: skip
        best = min(best, time.perf_counter() - t0)
    return batch.n / best


def _bench_wrapper(batch: Batch, repeat: int, batch_size: int) -> float:
    decoder = Decoder()
    slices = []
    for lo in range(0, batch.n, batch_size):
        hi = min(lo + batch_size, batch.n)
        slices.append(
            Batch(
                batch.data,
                batch.ts_us[lo:hi],
                batch.offsets[lo:hi],
                batch.caplens[lo:hi],
                batch.wirelens[lo:hi],
                batch.linktypes[lo:hi],
            )
        )
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for part in slices:
            decoder.decode(part)
        best = min(best, time.perf_counter() - t0)
    return batch.n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    t0 = time.perf_counter()
    warm_up()
    print(f"warm_up (compile or cache load): {time.perf_counter() - t0:.2f} s")
    batch = build_batch(args.packets)
    print(f"batch: {batch.n} packets, {batch.data.nbytes / 1e6:.1f} MB")
    # the kernel sees read-only arrays, as the wrapper hands it (one compiled signature)
    for name in ("offsets", "caplens", "linktypes", "ts_us"):
        getattr(batch, name).flags.writeable = False
    print(f"kernel alone: {_bench_kernel(batch, args.repeat) / 1e6:.2f} M packets/s")
    for size in (4096, 65536):
        rate = _bench_wrapper(batch, args.repeat, size)
        print(f"Decoder.decode, batches of {size}: {rate / 1e6:.2f} M packets/s")
    decoder = Decoder()
    decoder.decode(batch)
    print("stats:", decoder.stats.as_dict())


if __name__ == "__main__":
    main()
