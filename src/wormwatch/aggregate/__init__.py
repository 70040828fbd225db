"""Aggregate stage: per source host and time bin counters, bounded in memory.

source -> decode -> classify -> **aggregate** -> detect -> present.

In: decoded, classified events, one batch at a time
(:meth:`Aggregator.ingest`). Out, through a read-out API only: host states,
totals, the hosts touched since a mark, network-wide series and counts of what
did not fit; and a :class:`Renumbering` when hosts were evicted. Rooms:

- :mod:`.aggregator` the state and the ingest, and the read-out API;
- :mod:`.hosts` the host table (one id per address) and eviction;
- :mod:`.bins` the per-(host, bin) counter rows;
- :mod:`.columns` the ingest's per-batch column work (distinct sets, samples, series);
- :mod:`.readout` whole host states read out of the tables;
- :mod:`.export` and :mod:`.merge` the mergeable delta API: a bin's per-host state
  exported as a :class:`~wormwatch.delta.Delta`, and deltas merged into an aggregate
  (the multi-sensor mode's seam; they reach into the tables, so they live here);
- :mod:`.cell` the aggregate of one open bin that the export reads its delta from;
- :mod:`.sent` which sample names the export sent per host, kept for the recent hosts;
- :mod:`.applied` which delta identities a merge applied, kept for the window's bins.
"""

from wormwatch.aggregate.aggregator import AggregateCounts, Aggregator
from wormwatch.aggregate.hosts import Protect, Renumbering

__all__ = ["AggregateCounts", "Aggregator", "Protect", "Renumbering"]
