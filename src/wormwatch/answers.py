"""Aggregate stage, DNS answers: what the answers a client receives say, for dga-nx.

In: one batch's :class:`~wormwatch.model.Events`, per event the host it counts for (an
answer counts for the client it is sent to: :func:`host_words`), its bin row and bin,
and the aggregate's tables. Out: the answer counters added to the host totals and bin
rows (``C_ANSWERS``, ``C_NX`` / ``C_RCODE_ERR``, ``C_NX_NAMES_NEW``, ``C_NX_DOMS_NEW``,
and ``C_NX_SCORE``, the name scores of the new domains in thousandths), and which
answers named a registrable domain new to their host (for the sample names). The name
score is the numba kernel behind :func:`wormwatch.dganame.score_batch`, run on the
NXDOMAIN answers only.

An NXDOMAIN answer counts towards the distinct names and domains when its name has a
registrable domain under a listed public suffix and it is not a reverse look-up (PTR):
search-domain expansions under a private suffix (``x.campus.example``), single-label
names (a browser's probes) and ``in-addr.arpa`` names are counted as NXDOMAIN answers
but not as domains (docs/DETECTION.md, "dga-nx"). The registrable domain is read by
the list's ICANN section alone: random host names under a suffix of its private section
(``d1a2b3.cloudfront.net``, ``x7k.duckdns.org``) are one domain, the company's
(``cloudfront.net``), scored by its label, so an ad blocker's NXDOMAIN answers for
random CDN hosts are not a generator's many domains.
"""

from __future__ import annotations

import numpy as np

from wormwatch.dganame import Scored, score_batch
from wormwatch.kernels.counting import count_answer_events
from wormwatch.model import (
    BOOL,
    I32,
    I64,
    KIND_ANSWER,
    QTYPE_PTR,
    RCODE_NXDOMAIN,
    U64,
    Events,
)
from wormwatch.tables import KeyTable

# salts that keep NXDOMAIN names and domains apart from query names in one table
NX_NAME_SALT = 2
NX_DOMAIN_SALT = 3
# an NXDOMAIN answer's name score is counted in thousandths
SCORE_UNITS = 1000


def host_words(ev: Events) -> tuple[U64, U64, BOOL]:
    """Per event, the host it counts for: a query's or SYN's source, an answer's
    destination (the client it answers); and which events are answers."""
    n = ev.n
    is_answer = ev.kind[:n] == KIND_ANSWER
    hi = np.where(is_answer, ev.dst_hi[:n], ev.src_hi[:n])
    return hi, np.where(is_answer, ev.dst_lo[:n], ev.src_lo[:n]), is_answer


def count_answers(
    ev: Events,
    is_answer: BOOL,
    where: tuple[I64, I64, I64],
    tables: tuple[KeyTable, I64, I32],
    name_hash: U64,
    scored: Scored | None = None,
) -> tuple[BOOL, int]:
    """Count one batch's answers into the host ``totals`` and the bin ``rows`` (``tables``
    = distinct-name table, totals, rows); ``where`` is per event (host id, -1 = none; bin
    row; bin); ``name_hash`` per event the hash of its name, as the query names'; ``scored``
    the name scores of the batch's NXDOMAIN answers when they were computed before
    (:func:`wormwatch.classify.score_nx_answers`), else they are computed here.

    Returns:
        (which answers named an NXDOMAIN registrable domain new to their host, keys
        the distinct-name table refused).
    """
    host, row, bins = where
    names, totals, rows = tables
    n = ev.n
    is_answer = is_answer & (host >= 0)
    if not is_answer.any():
        return is_answer, 0
    rcode = ev.rcode[:n]
    is_nx = is_answer & (rcode == RCODE_NXDOMAIN)
    scorable = is_nx & (ev.name_lens[:n] > 0) & (ev.qtype[:n] != QTYPE_PTR)
    if scored is None:
        scored = score_batch(ev.names, ev.name_lens, n, scorable, private_suffixes=False)
    counted = scorable & (scored.listed == 1)
    # a name and a domain key per counted answer
    names.reserve(2 * int(np.count_nonzero(counted)))
    is_new = np.empty(n, np.bool_)
    answers = (is_answer, rcode, counted, name_hash, scored.reg_hashes, scored.scores)
    refused = count_answer_events(
        (host, row, bins), answers, n, (names.a, names.b, names.c, names.v, names.w, names.used),
        names.max_used, (NX_NAME_SALT, NX_DOMAIN_SALT, SCORE_UNITS), (totals, rows), is_new,
    )  # fmt: skip
    return is_new, int(refused)
