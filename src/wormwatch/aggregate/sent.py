"""Sensor side of the delta API: which sample names each host's deltas carried
already, so that a later bin does not send them again.

In: the hosts whose sample names a closed bin's cell took, with the bin. Out:
per host and kind, the set of names sent (the exporter sends a name only when
it is not in it, and at most the sample count in all).

Not sending a name again saves bytes and the central's work, and changes no
merged result: the central keeps each host's earliest sighting of each name
(:mod:`~wormwatch.aggregate.merge`), and a name sent again from a later bin is
sighted later there (bins close in packet-time order; a bin opened again by
late packets is the exception). So the memory is bounded rather than exact: a
host's names go once it has taken no sample for a window of packet time, and
the least recently seen host's go while more than ``max_hosts`` hosts are kept
(the sensor's aggregate holds as many). A host seen again after that sends that
bin's names again, once. If the central evicted the host meanwhile, these are
the names it gets back, as one aggregate's returning host gets those of its new
events (a name sent once and kept for good was never sent again).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Host:
    # the newest bin the host took samples in
    last_bin: int
    # per sample salt: the names sent (NXDOMAIN samples: their registrable domains)
    names: dict[int, set[bytes]] = field(default_factory=dict)


class SentNames:
    """Sample names sent per host, of the hosts seen lately.

    Args:
        max_hosts: hosts kept at most (the least recently seen go first).
    """

    def __init__(self, *, max_hosts: int) -> None:
        self.max_hosts = max_hosts
        # (address words) -> what was sent for it, least recently seen first
        self._hosts: OrderedDict[tuple[int, int], _Host] = OrderedDict()

    @property
    def n_hosts(self) -> int:
        return len(self._hosts)

    def of(self, addr: tuple[int, int], salt: int, b: int) -> set[bytes]:
        """The names of kind ``salt`` sent for ``addr``, which took samples in
        bin ``b`` (it is then the most recently seen, unless ``b`` is older
        than a bin it was seen in: a bin opened again)."""
        host = self._hosts.get(addr)
        if host is None:
            host = self._hosts[addr] = _Host(b)
            if len(self._hosts) > self.max_hosts:
                self._hosts.popitem(last=False)
        elif b >= host.last_bin:
            host.last_bin = b
            self._hosts.move_to_end(addr)
        return host.names.setdefault(salt, set())

    def forget_before(self, oldest_bin: int) -> None:
        """Forget the hosts last seen before ``oldest_bin``, least recently seen
        first (one seen only in a bin opened again may stay behind a newer one
        until that goes, or ``max_hosts`` pushes it out)."""
        hosts = self._hosts
        while hosts:
            addr, host = next(iter(hosts.items()))
            if host.last_bin >= oldest_bin:
                return
            del hosts[addr]
