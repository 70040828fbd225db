"""Standard input as part of a replay: a capture piped in (``tcpdump -w - | wormwatch replay -``).

bytes on file descriptor 0 -> pcapy-ng (``open_offline("-")``, ``next_batch``) -> **this
module** -> ``Batch`` wrapping pcapy-ng's buffer without copying the packet bytes ->
``wormwatch.source.pcapfile`` chains it with the other files of the replay.

A pipe cannot be memory-mapped, so libpcap reads it; it accepts pcap and pcapng (pcapng only
when every interface has the same link type). libpcap reports no original length through
``next_batch``, so ``wirelens`` equals ``caplens`` here.
"""

from __future__ import annotations

import os

import numpy as np
import pcapy

from wormwatch.errors import WormwatchError
from wormwatch.model import Batch

STDIN_PATH = "-"
STDIN_NAME = "stdin"
# next_batch raises for a whole batch when the stream is cut inside a record,
# so small batches lose fewer packets there (and 256 was measured faster
# than 4096 here anyway: DESIGN.md)
STDIN_BATCH = 256
# next_batch's packed meta: four native uint32 per packet (sec, usec, offset, caplen)
_META_FIELDS = 4


class StdinPart:
    """Reads the capture on standard input, batch by batch, through pcapy-ng.

    Opening reads the capture's file header (it blocks until the writer sends it), so a
    pipe that carries no capture fails here, before any packet of the replay is read.
    """

    def __init__(self, warnings: list[str]) -> None:
        """Opens standard input as a capture.

        Args:
            warnings: the replay's warning list; problems met later are appended to it.

        Raises:
            WormwatchError: standard input is a terminal or does not carry a capture.
        """
        if os.isatty(0):
            raise WormwatchError(
                "standard input is a terminal, not a capture; pipe one in "
                "(e.g. tcpdump -w - ... | wormwatch replay -) or give file names"
            )
        try:
            self._reader = pcapy.open_offline(STDIN_PATH)
        except pcapy.PcapError as err:
            raise WormwatchError(
                f"standard input is not a readable pcap or pcapng capture ({err}); "
                "pipe a capture written by tcpdump -w or Wireshark into it"
            ) from err
        self._linktype = int(self._reader.datalink())
        self._warnings = warnings
        self._n_packets = 0
        self._is_done = False

    def read(self, max_packets: int) -> Batch | None:
        """The next up to ``max_packets`` packets, or None at the end of the stream."""
        if self._is_done:
            return None
        try:
            raw, meta = self._reader.next_batch(min(max_packets, STDIN_BATCH))
        except pcapy.PcapError as err:
            self._warnings.append(
                f"{STDIN_NAME}: read error after {self._n_packets} packets ({err}); "
                "the packets before it were read"
            )
            self.close()
            return None
        if not meta:
            self.close()
            return None
        fields = np.frombuffer(meta, dtype=np.uint32).reshape(-1, _META_FIELDS)
        ts_us = fields[:, 0].astype(np.int64) * 1_000_000 + fields[:, 1]
        caplens = fields[:, 3].astype(np.int32)
        self._n_packets += fields.shape[0]
        return Batch(
            data=np.frombuffer(raw, dtype=np.uint8),
            ts_us=ts_us,
            offsets=fields[:, 2].astype(np.int64),
            caplens=caplens,
            wirelens=caplens.copy(),
            linktypes=np.full(fields.shape[0], self._linktype, dtype=np.int32),
        )

    def close(self) -> None:
        """Stops reading; later reads return None."""
        if not self._is_done:
            self._is_done = True
            self._reader.close()
