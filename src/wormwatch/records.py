"""Output records: the JSON-lines objects the sensor writes, shaped in one place.

In: what the stages know (a host's :class:`~wormwatch.model.HostView`, a
:class:`~wormwatch.model.Verdict` with the alert tracker's decision, the
aggregate's table counters, the final :class:`~wormwatch.model.Snapshot`).
Out: plain dicts in the DESIGN.md schema, every one with ``"schema": SCHEMA``
(:data:`wormwatch.model.SCHEMA`);
the JSON-lines writer (:mod:`wormwatch.present.sinks.jsonl`) only encodes and
writes them. The records are a contract: keys are only ever added. Formatted
elsewhere, for speed: the event log's lines (``--events``,
:mod:`wormwatch.kernels.eventlog`), and the host record of a host without a verdict
(:func:`wormwatch.present.sinks.summary.host_lines`, the same bytes as here).

* ``alert``  -- a host's verdict set or score band changed (:func:`alert_record`);
* ``sensor`` -- a condition of the sensor itself, e.g. the host table is full
  (:func:`sensor_record`);
* ``host``   -- one host's summary (:func:`host_record`);
* ``network``-- the end-of-run record after the hosts (:func:`network_record`).

Untrusted names pass :func:`wormwatch.text.names_text` here, before they enter
a record; packet time becomes ISO 8601 with :func:`wormwatch.text.iso_time`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

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
    Verdict,
)
from wormwatch.text import escape_text, iso_time, names_text

# SCHEMA is defined in model (the event log's kernel writes it too) and shown here
__all__ = [
    "SCHEMA",
    "alert_key",
    "alert_record",
    "host_record",
    "network_record",
    "sensor_record",
]


def alert_record(
    addr: str,
    verdict: Verdict,
    ts_us: int,
    *,
    reason: str,
    band: int,
    previous_verdicts: tuple[str, ...] | None,
    previous_score: float | None,
) -> dict[str, object]:
    """An ``alert``: ``addr``'s verdict at packet time ``ts_us``, and why it is news.

    ``reason`` is ``new``, ``verdicts-changed``, ``band-changed`` or
    ``cleared``; the previous verdicts and score are None for a new host.
    """
    return {
        "schema": SCHEMA,
        "timestamp": iso_time(ts_us),
        "event_type": "alert",
        "src_ip": addr,
        "score": round(float(verdict.score), 1),
        "verdicts": list(verdict.verdicts),
        "evidence": verdict.evidence,
        "reason": reason,
        "band": band,
        "previous_verdicts": [] if previous_verdicts is None else list(previous_verdicts),
        "previous_score": None if previous_score is None else round(previous_score, 1),
    }


def alert_key(record: Mapping[str, object]) -> str:
    """What tells an alert from another of the same host: its packet time, reason,
    band and verdicts (``10.0.0.7/2023-11-14T22:14:59.000000+00:00/new/1/smb-scan``).

    An alert judged again from the same deltas (a central restarted before its
    checkpoint) has the same key, even where its score, evidence or sensors differ
    (deltas merged in another order), so those are not in it.
    """
    verdicts = record.get("verdicts")
    names = "+".join(map(str, verdicts)) if isinstance(verdicts, list) else ""
    fields = (record.get("src_ip"), record.get("timestamp"), record.get("reason"))
    return "/".join(map(str, (*fields, record.get("band"), names)))


def sensor_record(ts_us: int, condition: str, **details: object) -> dict[str, object]:
    """A ``sensor`` record: a condition of the sensor itself, with its numbers.

    The one condition today is ``host-table-saturated`` (details:
    ``max_hosts``, ``hosts_tracked``, ``hosts_evicted``, ``events_dropped``).
    """
    return {
        "schema": SCHEMA,
        "timestamp": iso_time(ts_us),
        "event_type": "sensor",
        "condition": condition,
        **details,
    }


def host_record(view: HostView, bin_s: int) -> dict[str, object]:
    """The DESIGN.md host summary of one host, with a few extra keys.

    Extra keys (beyond DESIGN.md): ``keyword_A``, ``distinct_names``,
    ``mx_domains``, ``active_bins`` (bins of ``bin_s`` seconds with any event,
    within the window), ``sample_names``, ``sample_mx_names``, ``answers`` (DNS
    answers the host received: ``total``, ``nxdomain``, ``error`` (other error
    RCODEs), ``nx_domains`` (distinct NXDOMAIN registrable domains)),
    ``sample_nx_names`` and, for a flagged host, ``evidence``.

    The summary writes hosts without a verdict through a twin of this that skips
    the dict (:func:`wormwatch.present.sinks.summary.host_lines`): a key added
    here goes there too (a test holds the two equal byte for byte).
    """
    st = view.state
    t = st.totals.tolist()
    record: dict[str, object] = {
        "schema": SCHEMA,
        "event_type": "host",
        "src_ip": st.addr,
        "first_seen": iso_time(st.first_seen_us),
        "last_seen": iso_time(st.last_seen_us),
        "queries": {
            "total": t[C_QUERIES],
            "A": t[C_A],
            "AAAA": t[C_AAAA],
            "MX": t[C_MX],
            "PTR": t[C_PTR],
            "other": t[C_OTHER],
        },
        "keyword_queries": t[C_KW],
        "syn": {"135": t[C_SYN135], "139": t[C_SYN139], "445": t[C_SYN445]},
        "syn_targets": t[C_SYN_DST_NEW],
        "score": round(float(view.verdict.score), 1),
        "verdicts": list(view.verdict.verdicts),
        "keyword_A": t[C_KW_A],
        "distinct_names": t[C_NAMES_NEW],
        "mx_domains": t[C_MX_DOM_NEW],
        "bin_s": int(bin_s),
        "active_bins": int(st.bins.shape[0]),
        "sample_names": names_text(st.sample_names),
        "sample_mx_names": names_text(st.sample_mx_names),
        "answers": {
            "total": t[C_ANSWERS],
            "nxdomain": t[C_NX],
            "error": t[C_RCODE_ERR],
            "nx_domains": t[C_NX_DOMS_NEW],
        },
        "sample_nx_names": names_text(st.sample_nx_names),
    }
    if view.verdict.verdicts:
        record["evidence"] = view.verdict.evidence
    return record


def network_record(
    snap: Snapshot,
    *,
    network_sync: Mapping[str, object] | None = None,
    wall_s: float | None = None,
) -> dict[str, object]:
    """The end-of-run ``network`` record: what was seen, decode health, sync.

    ``snap.hosts`` are the hosts whose verdicts are counted in
    ``hosts_flagged``; ``network_sync`` is
    :func:`wormwatch.detect.network_evidence`'s output (or None when there
    was nothing to correlate). A live record before anything was counted spans
    the run's wall time (``wall_s``, default now), not 1970.
    """
    flagged: dict[str, int] = {}
    for view in snap.hosts:
        for name in view.verdict.verdicts:
            flagged[name] = flagged.get(name, 0) + 1
    start_us, now_us = snap.start_us, snap.now_us
    if snap.is_live and now_us <= 0:
        # a quiet mirror port: a SIEM would file the record (and each --summary-every
        # rewrite) under 1970-01-01
        now_us = int((time.time() if wall_s is None else wall_s) * 1_000_000)
        start_us = now_us - int(snap.wall_elapsed_s * 1_000_000)
    return {
        "schema": SCHEMA,
        "event_type": "network",
        "timestamp": iso_time(now_us),
        "source": escape_text(snap.source),
        "first_seen": iso_time(start_us),
        "last_seen": iso_time(now_us),
        "hosts_tracked": snap.hosts_tracked,
        "hosts_dropped": snap.hosts_dropped,
        "events_untracked": snap.events_untracked,
        "hosts_flagged": flagged,
        "decode": dict(snap.decode),
        "kernel_received": snap.kernel_received,
        "kernel_dropped": snap.kernel_dropped,
        "interface_dropped": snap.interface_dropped,
        "network_sync_r": snap.network_sync_r,
        "network_sync": dict(network_sync) if network_sync is not None else None,
    }
