"""What fanout workers could ship to the parent, per relevant packet: the raw filtered
frame (what they do) or a decoded event row; and what decoding costs.

    python -m scripts.bench.live --shipping
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from scripts.bench.sender import build_mix


def measure_shipping() -> None:
    """What fanout workers could ship to the parent, per relevant packet: the raw
    filtered frame (what they do) or a decoded event row; and what decoding costs."""
    import multiprocessing

    import numpy as np

    from wormwatch.decode import Decoder, warm_up
    from wormwatch.model import NAME_SLOT, Batch

    from testkit.reference import decode_frame

    frames = [f for f in build_mix()[0] if decode_frame(1, f, 0)[1]]
    sizes = np.array([len(f) for f in frames], np.int32)
    n = len(frames)
    offsets = np.concatenate(([0], np.cumsum(sizes[:-1]))).astype(np.int64)
    batch = Batch(
        np.frombuffer(b"".join(frames), np.uint8),
        np.zeros(n, np.int64),
        offsets,
        sizes,
        sizes.copy(),
        np.ones(n, np.int32),
    )
    warm_up()
    decoder = Decoder()
    raw_b = float(sizes.mean()) + 16
    # ts, 4 address words, kind, dport, qtype, name slot, name length
    event_b = 8 + 4 * 8 + 1 + 2 + 2 + NAME_SLOT + 4
    print(f"per relevant packet: raw frame + meta {raw_b:.0f} B, event row {event_b} B")
    for size in (256, n):
        part = Batch(
            batch.data,
            batch.ts_us[:size],
            batch.offsets[:size],
            batch.caplens[:size],
            batch.wirelens[:size],
            batch.linktypes[:size],
        )
        reps = max(1, 400_000 // size)
        start = time.perf_counter()
        for _ in range(reps):
            decoder.decode(part)
        spent = (time.perf_counter() - start) / (reps * size)
        print(f"decode, batches of {size}: {spent * 1e9:.0f} ns/packet")
    ctx = multiprocessing.get_context("fork")
    for label, per_packet in (("raw", raw_b), ("events", event_b)):
        reader, writer = ctx.Pipe(duplex=False)
        message, count = bytes(int(256 * per_packet)), 10_000
        proc = ctx.Process(target=_pipe_out, args=(writer, message, count))
        start = time.perf_counter()
        proc.start()
        writer.close()
        with contextlib.suppress(EOFError):
            while True:
                reader.recv_bytes()
        proc.join()
        spent = (time.perf_counter() - start) / (count * 256)
        print(f"pipe, {label} batches of 256: {spent * 1e9:.0f} ns/packet (wall, both ends)")


def _pipe_out(conn: Any, message: bytes, count: int) -> None:
    for _ in range(count):
        conn.send_bytes(message)
    conn.close()
