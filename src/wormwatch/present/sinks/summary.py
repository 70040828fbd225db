"""The host summary: every host record (ranked), then the network record.

In: the ranked :class:`~wormwatch.model.HostView` list and the final
:class:`~wormwatch.model.Snapshot` of a run (or of a periodic rewrite), the
bin width and the network-wide sync evidence. Out: the records, shaped by
:mod:`wormwatch.records`, written to one writer (``--summary`` through
:class:`~wormwatch.outputs.SummaryFile`, and the report's ``hosts.jsonl``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from json.encoder import encode_basestring
from typing import Protocol

from wormwatch.model import (
    C_A,
    C_AAAA,
    C_ANSWERS,
    C_KW,
    C_KW_A,
    C_MX,
    C_MX_DOM_NEW,
    C_NAMES_NEW,
    C_NX,
    C_NX_DOMS_NEW,
    C_OTHER,
    C_PTR,
    C_QUERIES,
    C_RCODE_ERR,
    C_SYN135,
    C_SYN139,
    C_SYN445,
    C_SYN_DST_NEW,
    SCHEMA,
    HostView,
    Snapshot,
)
from wormwatch.present.sinks.jsonl import encode_line, no_line_breaks
from wormwatch.records import host_record, network_record
from wormwatch.text import iso_time, names_text


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
        writer.write_lines(host_lines(chunk, bin_s), len(chunk))
    writer.write(network_record(dataclasses.replace(final, hosts=hosts), network_sync=network))


def host_lines(views: list[HostView], bin_s: int) -> bytes:
    """The host records of ``views``, one JSON line each, exactly as
    ``encode_line(host_record(view, bin_s))`` writes them.

    A host without a verdict (nearly every host) is formatted straight from its
    state, without the record dict and the JSON encoder (half the time);
    a flagged host, whose evidence is free-form, goes the general way. The
    tests hold the two equal byte for byte, odd names included.
    """
    text = "".join(
        _plain_host_line(v, bin_s) or encode_line(host_record(v, bin_s)).decode() for v in views
    )
    return no_line_breaks(text).encode("utf-8", errors="backslashreplace")


def _strings(items: list[str]) -> str:
    return "[" + ",".join(map(encode_basestring, items)) + "]"


def _plain_host_line(view: HostView, bin_s: int) -> str | None:
    """:func:`host_lines`' line of a host with no verdict and a finite score, else None."""
    score = round(float(view.verdict.score), 1)
    if view.verdict.verdicts or not math.isfinite(score):
        return None
    st = view.state
    t = st.totals.tolist()
    return (
        f'{{"schema":{SCHEMA},"event_type":"host","src_ip":{encode_basestring(st.addr)},'
        f'"first_seen":"{iso_time(st.first_seen_us)}","last_seen":"{iso_time(st.last_seen_us)}",'
        f'"queries":{{"total":{t[C_QUERIES]},"A":{t[C_A]},"AAAA":{t[C_AAAA]},"MX":{t[C_MX]},'
        f'"PTR":{t[C_PTR]},"other":{t[C_OTHER]}}},"keyword_queries":{t[C_KW]},'
        f'"syn":{{"135":{t[C_SYN135]},"139":{t[C_SYN139]},"445":{t[C_SYN445]}}},'
        f'"syn_targets":{t[C_SYN_DST_NEW]},"score":{score!r},"verdicts":[],'
        f'"keyword_A":{t[C_KW_A]},"distinct_names":{t[C_NAMES_NEW]},'
        f'"mx_domains":{t[C_MX_DOM_NEW]},"bin_s":{int(bin_s)},'
        f'"active_bins":{int(st.bins.shape[0])},'
        f'"sample_names":{_strings(names_text(st.sample_names))},'
        f'"sample_mx_names":{_strings(names_text(st.sample_mx_names))},'
        f'"answers":{{"total":{t[C_ANSWERS]},"nxdomain":{t[C_NX]},"error":{t[C_RCODE_ERR]},'
        f'"nx_domains":{t[C_NX_DOMS_NEW]}}},'
        f'"sample_nx_names":{_strings(names_text(st.sample_nx_names))}}}\n'
    )
