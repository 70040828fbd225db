"""The keyword classifier: which keyword each DNS query's first label starts with."""

from __future__ import annotations

import ipaddress

import numpy as np

from wormwatch.aggregate import Aggregator
from wormwatch.classify import Classifier, score_nx_answers
from wormwatch.model import (
    C_NX_SCORE,
    KIND_ANSWER,
    KIND_DNS,
    KIND_SYN,
    QTYPE_A,
    QTYPE_PTR,
    RCODE_NXDOMAIN,
)

from testkit.events import make_events

KEYWORDS = ("mail", "smtp", "mx", "ns", "gate", "relay")


def test_classifier_matches_first_label_prefix() -> None:
    names = [b"mail.x.com", b"mx1.y", b"www.mail.com", b"gateway.z", b"n", b"ns", b"", b"relay"]
    rows = [(0, "192.0.2.1", "192.0.2.53", KIND_DNS, 53, 1, n) for n in names]
    rows.append((0, "192.0.2.1", "198.51.100.1", KIND_SYN, 445, 0, b""))
    ev = make_events(rows)
    got = Classifier(KEYWORDS).classify(ev).tolist()
    assert got == [0, 2, -1, 4, -1, 3, -1, 5, -1]


def test_nx_answer_scores_computed_ahead_count_as_the_aggregates_own() -> None:
    """The decode-ahead thread's scores of NXDOMAIN answers (some for an ignored
    client, which the aggregate never reads) give the same host states as the
    aggregate scoring the answers itself."""
    rng = np.random.default_rng(7)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", np.uint8)
    rows = []
    for i in range(600):
        name = bytes(rng.choice(letters, 12)) + (b".com", b".net", b".campus.example")[i % 3]
        client = ("192.0.2.7", "192.0.2.8", "10.1.2.3")[i % 5 % 3]
        qtype = QTYPE_PTR if i % 7 == 0 else QTYPE_A
        rows.append((i * 1_000_000, "198.51.100.53", client, KIND_ANSWER, 40000, qtype, name))
    ignore = [ipaddress.ip_network("10.0.0.0/8")]
    ahead, own = Aggregator(ignore=ignore), Aggregator(ignore=ignore)
    classifier = Classifier()
    for lo in range(0, len(rows), 128):
        events = make_events(rows[lo : lo + 128])
        events.rcode[: events.n] = np.where(np.arange(events.n) % 4 == 0, 0, RCODE_NXDOMAIN)
        keyword_idx = classifier.classify(events).copy()
        ahead.ingest(events, keyword_idx, score_nx_answers(events))
        own.ingest(events, keyword_idx)
    assert ahead.n_hosts == own.n_hosts == 2
    assert np.array_equal(ahead.totals(), own.totals())
    assert int(ahead.totals()[:, C_NX_SCORE].min()) > 0
    ids = np.arange(ahead.n_hosts)
    for a, b in zip(ahead.host_states(ids), own.host_states(ids), strict=True):
        assert np.array_equal(a.series, b.series)
        assert a.sample_nx_names == b.sample_nx_names
