"""Microbenchmark: the numba pcap walker vs pcapy-ng's next_batch on the same file.

Builds a pcap of ~1M records (random lengths 60-200 bytes) in a temporary directory, reads
it once to get it into the page cache and compile the kernels, then reports records/s
(best of several runs) for:

- ``walk_pcap`` alone over the memory-mapped file (preallocated outputs);
- the replay source (``open_replay(...).read_batch(n)``, the pipeline's path);
- pcapy-ng ``open_offline`` + ``next_batch(n)`` (bytes only, no numpy wrapping).

Usage: ``python -m scripts.bench.walk [--records N] [--batch N] [--repeat N]``
"""

from __future__ import annotations

import argparse
import mmap
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pcapy

from wormwatch.kernels.pcapwalk import N_WALKED, PCAP_FILE_HEADER, W_RECORDS, walk_pcap
from wormwatch.source.pcapfile import MAX_CAPLEN, open_replay

from scripts.bench.tools import Row
from testkit.pcap import LINKTYPE_ETHERNET, pcap_header


def build_pcap(path: Path, n_records: int, seed: int = 1) -> int:
    """Writes a little-endian microsecond pcap of ``n_records`` records; returns its size."""
    rng = np.random.default_rng(seed)
    caplens = rng.integers(60, 201, n_records).astype(np.uint32)
    sizes = 16 + caplens.astype(np.int64)
    starts = PCAP_FILE_HEADER + np.concatenate(([0], np.cumsum(sizes)[:-1]))
    buf = np.zeros(PCAP_FILE_HEADER + int(sizes.sum()), dtype=np.uint8)
    buf[:PCAP_FILE_HEADER] = np.frombuffer(pcap_header(LINKTYPE_ETHERNET), np.uint8)
    words = np.stack(
        [
            (1_700_000_000 + np.arange(n_records) // 1000).astype(np.uint32),
            (np.arange(n_records) % 1000 * 1000).astype(np.uint32),
            caplens,
            caplens,
        ],
        axis=1,
    ).view(np.uint8)
    for k in range(16):
        buf[starts + k] = words[:, k]
    buf.tofile(path)
    return buf.shape[0]


def walk_only(path: Path, batch: int) -> int:
    with path.open("rb") as file:
        mm = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    data = np.frombuffer(mm, dtype=np.uint8)
    ts_us = np.empty(batch, np.int64)
    offsets = np.empty(batch, np.int64)
    caplens = np.empty(batch, np.int32)
    wirelens = np.empty(batch, np.int32)
    pos = PCAP_FILE_HEADER
    total = 0
    while True:
        n, pos, status = walk_pcap(
            data, pos, False, False, MAX_CAPLEN, -1, batch,
            ts_us, offsets, caplens, wirelens, np.zeros(N_WALKED, np.int64),
        )  # fmt: skip
        total += n
        if status != 0:
            return total


def replay_source(path: Path, batch: int) -> int:
    source = open_replay([str(path)])
    total = 0
    while (got := source.read_batch(batch)) is not None:
        total += got.n
    source.close()
    return total


def pcapy_batches(path: Path, batch: int) -> int:
    reader = pcapy.open_offline(str(path))
    total = 0
    while True:
        _, meta = reader.next_batch(batch)
        if not meta:
            return total
        total += len(meta) // 16


def best_rate(run: Callable[[Path, int], int], path: Path, batch: int, repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        n = run(path, batch)
        best = max(best, n / (time.perf_counter() - start))
    return best


def walk_rows(path: Path) -> list[Row]:
    """The pcap walker alone: on a fresh mapping (pages mapped as it goes) and on the
    same mapping again, keeping every record or skipping what the decoder would ignore."""
    out = [np.empty(16384, t) for t in (np.int64, np.int64, np.int32, np.int32)]
    # loaded from numba's cache before the clock starts
    head = np.frombuffer(path.read_bytes()[:4096], np.uint8)
    walk_pcap(
        head, PCAP_FILE_HEADER, False, False, MAX_CAPLEN, -1, 1, *out, np.zeros(N_WALKED, np.int64)
    )
    rows = []
    for linktype, kept in ((-1, "every record"), (1, "skipping ignored")):
        with path.open("rb") as file:
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        data = np.frombuffer(mapped, np.uint8)
        for mapping in ("fresh mapping", "mapped again"):
            walked = np.zeros(N_WALKED, np.int64)
            pos, status, t = PCAP_FILE_HEADER, 0, time.perf_counter()
            while status == 0:
                _, pos, status = walk_pcap(
                    data, pos, False, False, MAX_CAPLEN, linktype, 16384, *out, walked
                )
            n = int(walked[W_RECORDS])
            rows.append(Row(f"  walk only, {kept}, {mapping}", n, time.perf_counter() - t))
        del data
        mapped.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[256, 4096])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.pcap"
        size = build_pcap(path, args.records)
        print(f"{args.records} records, {size / 1e6:.1f} MB, page-cached after a warm-up")
        for run in (walk_only, replay_source, pcapy_batches):
            assert run(path, 4096) == args.records  # warm-up: page cache, numba compile
        for batch in args.batch:
            for label, run in (
                ("walk_pcap kernel alone", walk_only),
                ("replay source read_batch", replay_source),
                ("pcapy-ng next_batch", pcapy_batches),
            ):
                rate = best_rate(run, path, batch, args.repeat)
                print(f"batch {batch:5d}  {label:26s} {rate / 1e6:7.2f} M records/s")


if __name__ == "__main__":
    main()
