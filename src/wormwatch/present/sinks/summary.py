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
from wormwatch.present.sinks.jsonl import encode_line
from wormwatch.records import host_record, network_record


class RecordWriter(Protocol):
    """Where records go (a :class:`~wormwatch.present.sinks.jsonl.JsonLinesWriter`)."""

    def write(self, record: Mapping[str, object]) -> None: ...

    def write_lines(self, lines: bytes | memoryview, n_lines: int) -> None: ...


# host records per write: one system call for many lines, a bounded buffer for 100,000
_CHUNK = 512


def write_summary_records(
    writer: RecordWriter,
    hosts: list[HostView],
    final: Snapshot,
    bin_s: int,
    network: Mapping[str, object] | None = None,
) -> None:
    """Host records (in the order given), then one network record over ``hosts``."""
    for lo in range(0, len(hosts), _CHUNK):
        chunk = hosts[lo : lo + _CHUNK]
        writer.write_lines(b"".join(encode_line(host_record(v, bin_s)) for v in chunk), len(chunk))
    writer.write(network_record(dataclasses.replace(final, hosts=hosts), network_sync=network))
