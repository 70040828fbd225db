"""Event columns for tests: built from plain rows, or read through the real decode path.

:func:`make_events` turns ``(ts_us, src, dst, kind, dport, qtype, name)`` rows into
the decoder's :class:`~wormwatch.model.Events` columns, for classify/aggregate tests
that start after decoding. :func:`decoder_events` reads a capture with the real file
source and kernels and returns what they saw in the reference decoder's shape, so the
two can be compared with ``==``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wormwatch.decode import Decoder
from wormwatch.model import Events, addr_text, addr_words
from wormwatch.source.pcapfile import open_replay

from testkit.reference import RefEvent

# (ts_us, src, dst, kind, dport, qtype, name)
Row = tuple[int, str, str, int, int, int, bytes]


def make_events(rows: list[Row]) -> Events:
    """The event columns holding ``rows``, in order."""
    n = len(rows)
    ev = Events.allocate(n, n)
    for i, (ts, src, dst, kind, dport, qtype, name) in enumerate(rows):
        ev.ts_us[i] = ts
        ev.src_hi[i], ev.src_lo[i] = addr_words(src)
        ev.dst_hi[i], ev.dst_lo[i] = addr_words(dst)
        ev.kind[i], ev.dport[i], ev.qtype[i] = kind, dport, qtype
        ev.names[i, : len(name)] = np.frombuffer(name, np.uint8)
        ev.name_lens[i] = len(name)
    return ev


def decoder_events(path: Path, batch_packets: int = 97) -> tuple[list[int], list[RefEvent]]:
    """Statuses and events as the real source + kernels produce them."""
    source = open_replay([str(path)])
    decoder = Decoder(max_events=64)
    statuses: list[int] = []
    events: list[RefEvent] = []
    while (batch := source.read_batch(batch_packets)) is not None:
        ev = decoder.decode(batch)
        statuses.extend(decoder.last_status[: batch.n].tolist())
        for i in range(ev.n):
            events.append(
                RefEvent(
                    ts_us=int(ev.ts_us[i]),
                    src=addr_text(int(ev.src_hi[i]), int(ev.src_lo[i])),
                    dst=addr_text(int(ev.dst_hi[i]), int(ev.dst_lo[i])),
                    kind=int(ev.kind[i]),
                    dport=int(ev.dport[i]),
                    qtype=int(ev.qtype[i]),
                    name=bytes(ev.names[i, : ev.name_lens[i]]),
                    rcode=int(ev.rcode[i]),
                )
            )
    source.close()
    return statuses, events
