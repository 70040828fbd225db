"""The real decode path against the dpkt reference, on every capture we have.

Every sample pcap in pcaps/ and every real capture in ../shared/pcaps/real is
read by the real file source, decoded by the numba kernels and aggregated by
the pipeline; the per-packet statuses, the event list and the per-host counts
must equal what testkit/reference.py says, packet for packet.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wormwatch.config import load_config
from wormwatch.model import (
    C_A,
    C_AAAA,
    C_ANSWERS,
    C_KW,
    C_MX,
    C_NX,
    C_OTHER,
    C_PTR,
    C_QUERIES,
    C_SYN135,
    C_SYN139,
    C_SYN445,
    C_SYN_DST_NEW,
)
from wormwatch.pipeline import Pipeline
from wormwatch.source.pcapfile import open_replay

from testkit.events import decoder_events
from testkit.paths import REPO, real_captures
from testkit.reference import default_keyword, host_counts, reference_events

CAPTURES = sorted([*REPO.glob("pcaps/*.pcap"), *REPO.glob("pcaps/*.pcapng"), *real_captures()])


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def test_there_are_samples_to_compare() -> None:
    assert len(list(REPO.glob("pcaps/*.pcap*"))) >= 10


def test_there_are_real_captures_to_compare(real_pcaps: Path) -> None:
    assert len(list(real_pcaps.glob("*.pcap*"))) >= 30


@pytest.mark.parametrize("path", CAPTURES, ids=_id)
def test_decoder_equals_reference(path: Path) -> None:
    ref_statuses, ref_events = reference_events(path)
    statuses, events = decoder_events(path)
    assert len(statuses) == len(ref_statuses)
    mismatched = [
        (i, got, want)
        for i, (got, want) in enumerate(zip(statuses, ref_statuses, strict=True))
        if got != want
    ]
    assert mismatched == [], "packet index, decoder status, reference status"
    assert events == ref_events


@pytest.mark.parametrize("path", CAPTURES, ids=_id)
def test_pipeline_host_counts_equal_reference(path: Path) -> None:
    _statuses, ref_events = reference_events(path)
    want = host_counts(ref_events, default_keyword)
    pipeline = Pipeline(load_config(None), source_name=path.name)
    result = pipeline.run(open_replay([str(path)]))
    got = {}
    for view in result.hosts:
        t = view.state.totals
        got[view.state.addr] = {
            "queries": int(t[C_QUERIES]),
            "A": int(t[C_A]),
            "AAAA": int(t[C_AAAA]),
            "MX": int(t[C_MX]),
            "PTR": int(t[C_PTR]),
            "other": int(t[C_OTHER]),
            "keyword": int(t[C_KW]),
            "syn135": int(t[C_SYN135]),
            "syn139": int(t[C_SYN139]),
            "syn445": int(t[C_SYN445]),
            "syn_targets": int(t[C_SYN_DST_NEW]),
            "answers": int(t[C_ANSWERS]),
            "nxdomain": int(t[C_NX]),
            "first_seen_us": view.state.first_seen_us,
            "last_seen_us": view.state.last_seen_us,
        }
    assert got == want
    assert result.final.decode["packets"] == len(_statuses)
