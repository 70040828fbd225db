"""The per-event log (``--events FILE``): one JSON line per counted event.

In: each decoded batch's :class:`~wormwatch.model.Events` (an event sink of the
pipeline: every DNS query, DNS answer and SYN to 135/139/445, in packet order). Out: JSON
lines through a :class:`~wormwatch.present.sinks.jsonl.JsonLinesWriter`, one ``write`` per
batch, like Zeek's dns.log; analysts use it to check a verdict and to diff wormwatch
against other tools. A DNS query::

    {"schema":1,"event_type":"event","timestamp":"2026-01-15T08:00:01.250000+00:00",
     "kind":"dns-query","src_ip":"192.0.2.7","src_port":33000,"dst_ip":"192.0.2.53",
     "dst_port":53,"qtype":15,"qtype_name":"MX","name":"example.com","status":"ok"}

(one line in the file). A SYN has ``"kind":"syn"`` and no ``qtype``, ``qtype_name``
or ``name``. A DNS answer (the dga-nx signal's input) is sent by the server
(``src_ip``, port 53) to the client it counts for (``dst_ip``)::

    {"schema":1,"event_type":"event","timestamp":"2026-01-15T08:00:01.262000+00:00",
     "kind":"dns-answer","src_ip":"192.0.2.53","src_port":53,"dst_ip":"192.0.2.7",
     "dst_port":33000,"qtype":1,"qtype_name":"A","name":"qxvkzt.example",
     "rcode":3,"rcode_name":"NXDOMAIN","nxdomain":true,"name_score":0.6,"status":"ok"}

``rcode_name`` is the IANA name (``RCODEn`` where none is assigned); ``name_score`` is
the name's score (:mod:`wormwatch.dganame`, 0..1, to three decimals as the aggregate
counts it), ``null`` when the answer has no question name.

``status`` is the packet's decode status (``ok``, or the first problem met in it, e.g.
``truncated`` for a query whose question was cut). ``qtype_name`` is the IANA mnemonic,
or ``TYPEn`` (RFC 3597). Names pass the evidence escaping rule
(:func:`wormwatch.text.name_text`): printable ASCII stays; anything else is escaped in
Python, which is rare, so the kernel formats almost every line alone.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from wormwatch.dganame import score_batch
from wormwatch.kernels.eventlog import LINE_MAX_FIXED, format_events, plain_names
from wormwatch.model import I64, KIND_ANSWER, STATUS_NAMES, U8, Events
from wormwatch.present.sinks.jsonl import JsonLinesWriter, json_string_body
from wormwatch.text import name_text

# IANA DNS resource record types (the ones with a mnemonic in common use)
QTYPE_MNEMONICS: Final = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 10: "NULL", 11: "WKS", 12: "PTR", 13: "HINFO",
    14: "MINFO", 15: "MX", 16: "TXT", 17: "RP", 18: "AFSDB", 24: "SIG", 25: "KEY",
    28: "AAAA", 29: "LOC", 33: "SRV", 35: "NAPTR", 36: "KX", 37: "CERT", 39: "DNAME",
    41: "OPT", 42: "APL", 43: "DS", 44: "SSHFP", 45: "IPSECKEY", 46: "RRSIG", 47: "NSEC",
    48: "DNSKEY", 49: "DHCID", 50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA", 53: "SMIMEA",
    55: "HIP", 59: "CDS", 60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD",
    64: "SVCB", 65: "HTTPS", 99: "SPF", 249: "TKEY", 250: "TSIG", 251: "IXFR",
    252: "AXFR", 253: "MAILB", 254: "MAILA", 255: "ANY", 256: "URI", 257: "CAA",
}  # fmt: skip
# DNS RCODEs (IANA "DNS RCODEs"; the header's 4 bits): RFC 1035, 2136, 8490
RCODE_NAMES: Final = (
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN",
    "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE", "DSOTYPENI", "RCODE12", "RCODE13",
    "RCODE14", "RCODE15",
)  # fmt: skip
SCORE_UNITS = 1000


def _table(texts: list[bytes]) -> tuple[U8, np.ndarray]:
    """Texts as one byte array and the cuts between them."""
    cuts = np.cumsum(np.array([0, *(len(t) for t in texts)], np.int64))
    return np.frombuffer(b"".join(texts) or b"\0", np.uint8), cuts


_QTYPE_TEXT, _QTYPE_CUTS = _table([name.encode() for name in QTYPE_MNEMONICS.values()])
_QTYPE_INDEX = np.full(65536, -1, np.int64)
_QTYPE_INDEX[list(QTYPE_MNEMONICS)] = np.arange(len(QTYPE_MNEMONICS))
_STATUS_TEXT, _STATUS_CUTS = _table([name.encode() for name in STATUS_NAMES])
_RCODE_TEXT, _RCODE_CUTS = _table([name.encode() for name in RCODE_NAMES])


def answer_scores(events: Events) -> I64:
    """Per event: an answer's name score in thousandths (-1: not an answer, or no name)."""
    n = events.n
    scorable = (events.kind[:n] == KIND_ANSWER) & (events.name_lens[:n] > 0)
    milli = np.full(n, -1, np.int64)
    if scorable.any():
        scored = score_batch(events.names, events.name_lens, n, scorable)
        milli[scorable] = np.rint(scored.scores[scorable] * SCORE_UNITS).astype(np.int64)
    return milli


class EventLog:
    """An event sink writing one JSON line per event, one write per batch.

    Args:
        writer: where the lines go (its file is opened, and reopened on rotation,
            by the writer).
    """

    def __init__(self, writer: JsonLinesWriter) -> None:
        self.writer = writer
        self._out: U8 = np.zeros(0, np.uint8)
        self._plain = np.zeros(0, np.bool_)

    @property
    def n_lines(self) -> int:
        """Lines written so far."""
        return self.writer.n_written

    def format(self, events: Events) -> memoryview:
        """The batch's lines (valid until the next call)."""
        n = events.n
        if self._plain.shape[0] < n:
            self._plain = np.zeros(n, np.bool_)
        n_other = plain_names(events.names, events.name_lens, n, self._plain)
        esc_index = np.full(n, -1, np.int64)
        texts: list[bytes] = []
        if n_other:
            rows = np.flatnonzero(~self._plain[:n])
            esc_index[rows] = np.arange(rows.shape[0])
            texts = [
                json_string_body(name_text(bytes(events.names[i, : events.name_lens[i]])))
                for i in rows.tolist()
            ]
        esc_text, esc_cuts = _table(texts)
        bound = n * LINE_MAX_FIXED + 2 * int(events.name_lens[:n].sum()) + esc_text.shape[0]
        if self._out.shape[0] < bound:
            self._out = np.zeros(max(bound, 2 * self._out.shape[0]), np.uint8)
        size = format_events(
            n, events.ts_us, events.src_hi, events.src_lo, events.dst_hi, events.dst_lo,
            events.kind, events.sport, events.dport, events.qtype, events.names,
            events.name_lens, events.status, events.rcode, answer_scores(events), esc_index,
            esc_text, esc_cuts, _QTYPE_INDEX, _QTYPE_TEXT, _QTYPE_CUTS, _RCODE_TEXT,
            _RCODE_CUTS, _STATUS_TEXT, _STATUS_CUTS, self._out,
        )  # fmt: skip
        return self._out[:size].data

    def write_events(self, events: Events) -> None:
        """Write one batch's events (the pipeline's event sink protocol)."""
        if events.n:
            self.writer.write_lines(self.format(events), events.n)
