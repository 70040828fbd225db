"""Name-prefix statistics of one host: the study's figure 2, as data for a table.

In: a host's ``prefixes`` (every prefix of length 1..5 of its query names,
with how many queries start with it; from the aggregate stage) and the
configured keywords. Out: the most frequent prefixes of each length, each
marked by how it relates to the keyword set, and the frequent prefixes the
keyword set does not explain: the candidates for a new worm's keywords.

A name counts as a keyword query when its first label starts with a keyword
(see :mod:`wormwatch.classify`). So a prefix *is* a keyword prefix when it
starts with a keyword (every name with it is a keyword query), *leads to* a
keyword when it is the start of one (``ma`` of ``mail``), and is *other*
otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

MAX_PREFIX_LEN = 5
# A prefix outside the keyword set is a candidate when this share of the
# host's queries starts with it ...
CANDIDATE_MIN_SHARE = 0.05
# ... and at least this many queries do.
CANDIDATE_MIN_COUNT = 10
# One character says little about a word (ordinary names start with every letter).
CANDIDATE_MIN_LEN = 2
# A shorter prefix is left out of the candidates when one longer candidate
# accounts for this share of its queries (``p``, ``po``, ``pos`` all follow
# from ``post``).
_EXPLAINED_SHARE = 0.9


class Relation(StrEnum):
    """How a prefix relates to the configured keyword set."""

    KEYWORD = "keyword"  # starts with a keyword: every name with it is a keyword query
    PARTIAL = "partial"  # the start of a keyword, also of other words
    OTHER = "other"  # no keyword starts or ends here


@dataclass(frozen=True, slots=True)
class PrefixCount:
    """One prefix, how many of the host's queries start with it, and its share."""

    prefix: bytes
    count: int
    share: float
    relation: Relation


@dataclass(frozen=True, slots=True)
class PrefixStats:
    """The prefix table of one host.

    ``by_length[L]`` are the ``top`` most frequent prefixes of length ``L``
    (1..5), most frequent first; ``candidates`` are the frequent prefixes
    outside the keyword set, most frequent first, none the start of another
    (so their shares add up); ``n_named`` is the number of queries with a
    readable name (the shares' denominator).
    """

    n_named: int
    by_length: dict[int, list[PrefixCount]]
    candidates: list[PrefixCount]

    @property
    def candidate_share(self) -> float:
        """Share of the named queries that begin with a candidate."""
        return sum(c.share for c in self.candidates)


def relation(prefix: bytes, keywords: Sequence[bytes]) -> Relation:
    """How ``prefix`` (a name's first bytes, lower case) relates to ``keywords``."""
    first_label = prefix.split(b".", 1)[0]
    has_dot = len(first_label) < len(prefix)
    if any(first_label.startswith(k) for k in keywords):
        return Relation.KEYWORD
    if not has_dot and any(k.startswith(prefix) for k in keywords):
        return Relation.PARTIAL
    return Relation.OTHER


def _candidates(counts: list[PrefixCount]) -> list[PrefixCount]:
    """Frequent OTHER prefixes, each reduced to the label it begins, without repeats."""
    by_label: dict[bytes, PrefixCount] = {}
    for pc in counts:
        label = pc.prefix.split(b".", 1)[0]
        if len(label) >= CANDIDATE_MIN_LEN and (
            label not in by_label or pc.count > by_label[label].count
        ):
            by_label[label] = PrefixCount(label, pc.count, pc.share, pc.relation)
    labels = sorted(by_label.values(), key=lambda pc: (-len(pc.prefix), -pc.count, pc.prefix))
    kept: list[PrefixCount] = []
    for pc in labels:
        # a longer kept candidate explains this one: keep the longer, more specific word
        if any(
            k.prefix.startswith(pc.prefix) and k.count >= _EXPLAINED_SHARE * pc.count for k in kept
        ):
            continue
        kept.append(pc)
    # a kept word that starts with another kept word adds nothing to a keyword set
    kept = [
        pc
        for pc in kept
        if not any(o.prefix != pc.prefix and pc.prefix.startswith(o.prefix) for o in kept)
    ]
    return sorted(kept, key=lambda pc: (-pc.count, pc.prefix))


def prefix_stats(
    prefixes: Mapping[bytes, int],
    keywords: Sequence[str],
    *,
    top: int = 8,
    min_share: float = CANDIDATE_MIN_SHARE,
    min_count: int = CANDIDATE_MIN_COUNT,
) -> PrefixStats:
    """Top prefixes per length and the candidate new keywords of one host."""
    words = [k.encode("ascii").lower() for k in keywords]
    n_named = sum(c for p, c in prefixes.items() if len(p) == 1)
    rows = [
        PrefixCount(p, int(c), c / n_named if n_named else 0.0, relation(p, words))
        for p, c in prefixes.items()
        if 1 <= len(p) <= MAX_PREFIX_LEN
    ]
    rows.sort(key=lambda pc: (-pc.count, pc.prefix))
    by_length = {
        length: [pc for pc in rows if len(pc.prefix) == length][:top]
        for length in range(1, MAX_PREFIX_LEN + 1)
    }
    frequent = [
        pc
        for pc in rows
        if pc.relation is Relation.OTHER and pc.count >= min_count and pc.share >= min_share
    ]
    return PrefixStats(n_named=n_named, by_length=by_length, candidates=_candidates(frequent))
