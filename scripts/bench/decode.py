"""Benchmark of the decode stage: packets/s of the numba kernel and of the wrapper.

Builds a mixed Ethernet batch at run time (struct/numpy, no scapy): mostly bulk TCP
(pure ACKs and full-size data segments), ~20% DNS queries over UDP, some SYNs to 445,
with IPv4 and IPv6 and some 802.1Q tags. Compilation is measured apart from the steady
state.

Usage: python -m scripts.bench.decode [--packets N] [--repeat R]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from wormwatch.decode import Decoder, warm_up
from wormwatch.kernels.decode import N_FRAG_COLUMNS, N_SEG_COLUMNS, decode_packets
from wormwatch.model import LINKTYPE_ETHERNET, Batch

from testkit.frames import (
    ETH_P_IP,
    ETH_P_IPV6,
    IP_PROTO_TCP,
    IP_PROTO_UDP,
    TCP_SYN,
    dns,
    ether,
    ipv4,
    ipv6,
    make_batch,
    tcp,
    udp,
)

V6_SRC, V6_DST = "2001:db8::1", "2001:db8::35"
WORDS = (b"mail", b"smtp", b"www", b"Example", b"cdn")


def _ip(payload: bytes, proto: int, *, v6: bool, host: int) -> bytes:
    if v6:
        return ipv6(payload, proto, src=V6_SRC, dst=V6_DST)
    src = f"10.{(host >> 16) & 255}.{(host >> 8) & 255}.{host & 255}"
    return ipv4(payload, proto, src=src, dst="192.0.2.53", frag=0x4000, ident=0)


def _dns_query(i: int) -> bytes:
    name = b"%s.host%d.com" % (WORDS[i % 5], i % 997)
    return udp(dns(name, ident=i & 0xFFFF), sport=40000 + i % 1000)


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
            ip = _ip(_dns_query(i), IP_PROTO_UDP, v6=v6, host=i % 5000)
        else:
            dport, flags, payload = (
                (445, TCP_SYN, b"") if roll < 0.25 else (443, 0x18, bulk) if roll < 0.40
                else (443, 0x10, b"")
            )  # fmt: skip
            segment = tcp(payload, dport=dport, sport=50000, flags=flags)
            ip = _ip(segment, IP_PROTO_TCP, v6=v6, host=i % 5000)
        ethertype = ETH_P_IPV6 if v6 else ETH_P_IP
        frames.append((LINKTYPE_ETHERNET, ether(ip, ethertype, tags=(0x8100,) if vlan else ())))
    return make_batch(frames, ts_us=np.arange(n_packets, dtype=np.int64) * 10)


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
            ev.kind, ev.dport, ev.qtype, ev.names, ev.name_lens, ev.sport, ev.status, ev.rcode,
            frags, 0, segs, 0,
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
