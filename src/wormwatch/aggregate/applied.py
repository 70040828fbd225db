"""Which delta identities a merge has applied, kept for the bins of the window.

In: the identity of each delta a :class:`~wormwatch.aggregate.merge.DeltaMerger`
is about to merge, and the window's first bin as merged packet time moves on.
Out: whether a delta is a copy of one already applied.

The identities of a bin are kept while the bin is in the window: there, every
copy is told from a delta never seen. When a bin leaves the window its
identities go, and each (sensor, shard, part) keeps only the first and last
bin before the window it had a delta applied for (its span). A delta older
than the window is a copy when it falls in its sender's span: a sensor
publishes its bins in order, so a delta after the span (a site whose deltas
were held back for longer than the window) is new and merged into lifetime
totals, while a copy (a re-sent or re-read bin, or what a central's durable
consumer delivers again after its catch-up re-read the stream) is inside it.
A delta in a gap of the span cannot be told from a copy and is not merged.
Memory: the identities of the window's bins and one span per (sensor, shard,
part), whatever the length of the run.
"""

from __future__ import annotations

from wormwatch.delta import DeltaId, DeltaKey

# before every bin: nothing forgotten yet
NO_BIN = -(1 << 62)


class AppliedIds:
    """Delta identities applied: those of the window's bins, spans of the rest."""

    def __init__(self) -> None:
        # identities applied, by bin, of the bins from ``_horizon`` on
        self._by_bin: dict[int, set[DeltaKey]] = {}
        self._horizon = NO_BIN
        # (sensor, shard, part) -> (first, last) bin before the horizon applied
        self._spans: dict[tuple[str, int, int], tuple[int, int]] = {}
        # copies of identities kept (certain) and deltas in a span (maybe copies)
        self.n_duplicates = 0
        self.n_expired = 0

    @property
    def n_identities(self) -> int:
        return sum(len(ids) for ids in self._by_bin.values())

    @property
    def n_spans(self) -> int:
        return len(self._spans)

    def is_copy(self, key: DeltaKey) -> bool:
        """Whether ``key`` was applied before (older than the window: may have been)."""
        ident = key[0]
        if ident.bin >= self._horizon:
            if key in self._by_bin.get(ident.bin, ()):
                self.n_duplicates += 1
                return True
            return False
        span = self._spans.get((ident.sensor, ident.shard, ident.part))
        if span is not None and span[0] <= ident.bin <= span[1]:
            self.n_expired += 1
            return True
        return False

    def add(self, key: DeltaKey) -> None:
        """Remember ``key`` as applied."""
        ident = key[0]
        if ident.bin >= self._horizon:
            self._by_bin.setdefault(ident.bin, set()).add(key)
        else:
            self._widen_span(ident)

    def forget_before(self, oldest_bin: int) -> None:
        """Move the identities of bins before ``oldest_bin`` (the window's
        first) into their senders' spans."""
        if oldest_bin <= self._horizon:
            return
        self._horizon = oldest_bin
        for b in [b for b in self._by_bin if b < oldest_bin]:
            for ident, _digest in self._by_bin.pop(b):
                self._widen_span(ident)

    def _widen_span(self, ident: DeltaId) -> None:
        key = (ident.sensor, ident.shard, ident.part)
        first, last = self._spans.get(key, (ident.bin, ident.bin))
        self._spans[key] = (min(first, ident.bin), max(last, ident.bin))
