"""The host summary: every host record (ranked), then the network record.

In: the ranked :class:`~wormwatch.model.HostView` list and the final
:class:`~wormwatch.model.Snapshot` of a run (or of a periodic rewrite), the
bin width and the network-wide sync evidence. Out: the records, shaped by
:mod:`wormwatch.records`, written to one writer (``--summary`` through
:class:`~wormwatch.outputs.SummaryFile`, and the report's ``hosts.jsonl``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Protocol

from wormwatch.model import HostView, Snapshot
from wormwatch.records import host_record, network_record


class RecordWriter(Protocol):
    """Where records go (a :class:`~wormwatch.present.sinks.jsonl.JsonLinesWriter`)."""

    def write(self, record: Mapping[str, object]) -> None: ...


def write_summary_records(
    writer: RecordWriter,
    hosts: list[HostView],
    final: Snapshot,
    bin_s: int,
    network: Mapping[str, object] | None = None,
) -> None:
    """Host records (in the order given), then one network record over ``hosts``."""
    for view in hosts:
        writer.write(host_record(view, bin_s))
    writer.write(network_record(dataclasses.replace(final, hosts=hosts), network_sync=network))
