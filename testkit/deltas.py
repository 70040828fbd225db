"""Delta API test helpers: a capture's events exported as one sensor's deltas (bins
closed as packet time passes), deltas merged into a fresh aggregate through the wire
format, and the check that two aggregates hold the same host state."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wormwatch.aggregate import Aggregator
from wormwatch.aggregate.export import DeltaExporter, take_events
from wormwatch.aggregate.merge import DeltaMerger
from wormwatch.classify import Classifier
from wormwatch.delta import Delta, decode, encode
from wormwatch.model import Events, addr_words

BIN_S = 60
CLASSIFIER = Classifier(("mail", "smtp", "mx", "ns", "gate", "relay"))


def export(
    ev: Events, sensor: str, *, batch: int = 37, n_shards: int = 4, **limits: int
) -> list[Delta]:
    """A sensor's deltas of ``ev`` (``limits``: the exporter's keyword arguments
    beyond these): bins closed as packet time passes, the rest at the end."""
    exporter = DeltaExporter(sensor=sensor, bin_s=BIN_S, n_shards=n_shards, max_rows=3, **limits)
    out: list[Delta] = []
    for lo in range(0, ev.n, batch):
        part = take_events(ev, np.arange(lo, min(ev.n, lo + batch)))
        exporter.ingest(part, CLASSIFIER.classify(part))
        out.extend(exporter.close_due())
    return out + exporter.close_all()


def assert_same_state(
    want: Aggregator, got: Aggregator, *, addrs: Sequence[str] | None = None
) -> None:
    """Every host of ``want`` (or those of ``addrs``, when evictions made the
    rest differ) is in ``got`` with the same state, samples included; the
    network-wide series are the same."""
    if addrs is None:
        assert got.n_hosts == want.n_hosts
        ids = list(range(want.n_hosts))
    else:
        in_want = [want.find(*addr_words(a)) for a in addrs]
        ids = [h for h in in_want if h is not None]
        assert len(ids) == len(addrs)
    found = [got.find(*want.address(h)) for h in ids]
    got_ids = [h for h in found if h is not None]
    assert len(got_ids) == len(ids)
    for a, b in zip(want.host_states(ids), got.host_states(got_ids), strict=True):
        assert b.addr == a.addr
        assert (b.first_seen_us, b.last_seen_us) == (a.first_seen_us, a.last_seen_us)
        np.testing.assert_array_equal(b.totals, a.totals, err_msg=a.addr)
        np.testing.assert_array_equal(b.bins, a.bins, err_msg=a.addr)
        np.testing.assert_array_equal(b.series, a.series, err_msg=a.addr)
        assert b.sample_names == a.sample_names, a.addr
        assert b.sample_mx_names == a.sample_mx_names, a.addr
        assert b.sample_nx_names == a.sample_nx_names, a.addr
        assert b.prefixes == a.prefixes, a.addr
    for x, y in zip(want.network_series(), got.network_series(), strict=True):
        np.testing.assert_array_equal(x, y)


def merged(deltas: list[Delta], **limits: int) -> tuple[Aggregator, DeltaMerger]:
    """A fresh aggregate (``limits``: its keyword arguments beyond the defaults
    here) with ``deltas`` merged in, each through encode and decode."""
    kw = {"max_hosts": 1000, "max_host_bins": 10_000, "max_keys": 100_000, **limits}
    agg = Aggregator(bin_s=BIN_S, **kw)
    merger = DeltaMerger(agg)
    for d in deltas:
        merger.apply(decode(encode(d)))
    return agg, merger
