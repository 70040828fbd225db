"""The keyword classifier: which keyword each DNS query's first label starts with."""

from __future__ import annotations

from wormwatch.classify import Classifier
from wormwatch.model import KIND_DNS, KIND_SYN

from testkit.events import make_events

KEYWORDS = ("mail", "smtp", "mx", "ns", "gate", "relay")


def test_classifier_matches_first_label_prefix() -> None:
    names = [b"mail.x.com", b"mx1.y", b"www.mail.com", b"gateway.z", b"n", b"ns", b"", b"relay"]
    rows = [(0, "192.0.2.1", "192.0.2.53", KIND_DNS, 53, 1, n) for n in names]
    rows.append((0, "192.0.2.1", "198.51.100.1", KIND_SYN, 445, 0, b""))
    ev = make_events(rows)
    got = Classifier(KEYWORDS).classify(ev).tolist()
    assert got == [0, 2, -1, 4, -1, 3, -1, 5, -1]
