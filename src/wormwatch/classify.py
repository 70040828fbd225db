"""Classify stage: mark the queries whose first label begins with a keyword.

In: :class:`~wormwatch.model.Events` from the decoder. Out: an int16 array,
per event the index of the matching keyword in the configured set, or -1; and
the name scores of the batch's NXDOMAIN answers (:func:`score_nx_answers`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

import numpy as np
import numpy.typing as npt

from wormwatch.config import DEFAULT_KEYWORDS
from wormwatch.dganame import Scored, score_batch
from wormwatch.errors import WormwatchError
from wormwatch.kernels.classify import match_keywords
from wormwatch.model import KIND_ANSWER, NAME_MAX, QTYPE_PTR, RCODE_NXDOMAIN, Events


def score_nx_answers(events: Events) -> Scored | None:
    """The name scores of a batch's NXDOMAIN answers (other events score 0), or
    None when it holds no answer.

    The aggregate's answer counting (dga-nx) needs them and they depend on the
    names alone, so a replay's decode-ahead thread computes them beside the
    keyword matches instead of the aggregating thread. Which answers count is
    the aggregate's to say: a score of one that does not is never read. Their
    registrable domains are read by the Public Suffix List's ICANN section alone,
    as the aggregate counts them (:mod:`wormwatch.answers`).
    """
    n = events.n
    kind = events.kind[:n]
    if not (kind == KIND_ANSWER).any():
        return None
    scorable = (
        (kind == KIND_ANSWER)
        & (events.rcode[:n] == RCODE_NXDOMAIN)
        & (events.name_lens[:n] > 0)
        & (events.qtype[:n] != QTYPE_PTR)
    )
    return score_batch(events.names, events.name_lens, n, scorable, private_suffixes=False)


def score_rows(scored: Scored | None, lo: int, hi: int) -> Scored | None:
    """The scores of events ``lo:hi`` (views), as :meth:`Events.rows` cuts events."""
    if scored is None:
        return None
    return Scored(*(getattr(scored, f.name)[lo:hi] for f in fields(Scored)))


class Classifier:
    """Matches every query name of a batch against the keyword set at once."""

    def __init__(self, keywords: Sequence[str] = DEFAULT_KEYWORDS) -> None:
        words = [w.lower() for w in keywords]
        for w in words:
            if not w or "." in w or len(w) > NAME_MAX or not w.isascii():
                raise WormwatchError(f"keyword {w!r} must be 1-255 ASCII characters without a dot")
        self.keywords: tuple[str, ...] = tuple(words)
        width = max((len(w) for w in words), default=1)
        self._kw_bytes = np.zeros((len(words), width), np.uint8)
        self._kw_lens = np.zeros(len(words), np.int32)
        for i, w in enumerate(words):
            self._kw_bytes[i, : len(w)] = np.frombuffer(w.encode(), np.uint8)
            self._kw_lens[i] = len(w)
        self._out = np.empty(0, np.int16)

    def classify(self, events: Events) -> npt.NDArray[np.int16]:
        """Return the keyword index per event (``[:events.n]``), -1 for none."""
        if self._out.shape[0] < events.n:
            self._out = np.empty(max(events.n, 1024), np.int16)
        match_keywords(
            events.kind,
            events.names,
            events.name_lens,
            events.n,
            self._kw_bytes,
            self._kw_lens,
            self._out,
        )
        return self._out[: events.n]
