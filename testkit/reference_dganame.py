"""A slow, obvious name score in plain Python, to check the numba kernel against.

Same model tables (``wormwatch.dganame.load_model``), same rules as
``wormwatch.kernels.dganame`` and docs/DETECTION.md ("dga-nx"), written for reading:
the public suffix by the PSL algorithm over the rule strings, the word cover by
recursion over every split.
"""

from __future__ import annotations

import functools
import math
from importlib import resources

from wormwatch.dganame import fnv1a, load_model
from wormwatch.kernels import dganame as k


@functools.cache
def _rules(with_private: bool = True) -> frozenset[str]:
    data = resources.files("wormwatch") / "data"
    rules = frozenset((data / "public_suffixes.txt").read_text("ascii").split())
    if with_private:
        return rules
    return rules - frozenset((data / "public_suffixes_private.txt").read_text("ascii").split())


@functools.cache
def _private_keys() -> frozenset[str]:
    """The private section's rules without ``!`` / ``*.`` (what the kernel hashes)."""
    text = (resources.files("wormwatch") / "data" / "public_suffixes_private.txt").read_text()
    return frozenset(r.lstrip("!").removeprefix("*.") for r in text.split())


def suffix_labels(labels: list[str], with_private: bool = True) -> tuple[int, bool]:
    """PSL: exceptions win, then the longest matching rule; the default rule is ``*``;
    the private section's rules only ``with_private``.
    -> (labels in the suffix, whether a listed rule matched)."""
    rules = _rules(with_private)
    best, is_listed = 1, False
    for n in range(1, len(labels) + 1):
        tail = ".".join(labels[-n:])
        if "!" + tail in rules:
            return n - 1, True
        if tail in rules:
            best, is_listed = max(best, n), True
        if n < len(labels) and "*." + tail in rules:
            best, is_listed = max(best, n + 1), True
    return best, is_listed


def _is_word(text: str) -> bool:
    if not k.MIN_WORD <= len(text) <= k.MAX_WORD:
        return False
    bloom = load_model().bloom
    h = fnv1a(text.encode("latin-1"))
    h1, h2 = h & 0xFFFFFFFF, (h >> 32) | 1
    n_bits = bloom.shape[0] * 64
    for i in range(k.BLOOM_HASHES):
        pos = (h1 + i * h2) % (1 << 64) % n_bits
        if not int(bloom[pos >> 6]) >> (pos & 63) & 1:
            return False
    return True


def word_cover(label: str) -> tuple[int, int]:
    """(most characters covered by non-overlapping words, fewest words doing so)."""

    @functools.cache
    def best(end: int) -> tuple[int, int]:
        if end == 0:
            return 0, 0
        covered, words = best(end - 1)
        for size in range(k.MIN_WORD, min(k.MAX_WORD, end) + 1):
            if _is_word(label[end - size : end]):
                c, w = best(end - size)
                if c + size > covered or (c + size == covered and w + 1 < words):
                    covered, words = c + size, w + 1
        return covered, words

    return best(len(label))


def _symbol(ch: str) -> int:
    if "a" <= ch <= "z":
        return ord(ch) - 97
    if "0" <= ch <= "9":
        return ord(ch) - 48 + k.SYM_DIGIT0
    return k.SYM_OTHER


def features(label: str) -> list[float]:
    """The FT_* features of one label."""
    trigram = load_model().trigram
    seq = [k.SYM_BOUNDARY, k.SYM_BOUNDARY, *map(_symbol, label), k.SYM_BOUNDARY]
    cost = sum(int(trigram[seq[i], seq[i + 1], seq[i + 2]]) for i in range(len(seq) - 2))
    letters = [c for c in label if "a" <= c <= "z"]
    vowels = [c for c in letters if c in "aeiouy"]
    longest = run = 0
    for c in label:
        run = run + 1 if "a" <= c <= "z" and c not in "aeiouy" else 0
        longest = max(longest, run)
    counts: dict[int, int] = {}
    for c in label:
        counts[_symbol(c)] = counts.get(_symbol(c), 0) + 1
    entropy = -sum(v / len(label) * math.log2(v / len(label)) for v in counts.values())
    covered, n_words = word_cover(label)
    return [
        len(label),
        cost / k.COST_UNITS / (len(label) + 1),
        sum(c.isdigit() for c in label) / len(label),
        len(vowels) / len(letters) if letters else 0.0,
        longest,
        entropy,
        covered / len(label),
        n_words,
    ]


def score(label: str, ft: list[float]) -> float:
    """The kernel's three readings; the score is the strongest."""
    n = ft[k.FT_LENGTH]
    improbable = min(
        1.0, max(0.0, (ft[k.FT_BITS_PER_CHAR] - k.BPC_HUMAN) / (k.BPC_RANDOM - k.BPC_HUMAN))
    )
    mixed = 1.0 if 0.15 <= ft[k.FT_DIGIT_SHARE] <= 0.85 else 0.0
    runs = min(1.0, max(0.0, (ft[k.FT_CONSONANT_RUN] - 3.0) / 3.0))
    trust = min(1.0, max(0.0, (n - 3.0) / (k.FULL_LENGTH - 3.0)))
    random = trust * min(1.0, 0.85 * improbable + 0.15 * max(mixed, runs) + 0.15 * mixed * runs)
    is_hex = all(c in "0123456789abcdef" for c in label)
    hashed = 1.0 if is_hex and n >= k.HEX_MIN_LENGTH and 0 < ft[k.FT_DIGIT_SHARE] < 1 else 0.0
    glued = 0.0
    if n >= k.GLUED_MIN_LENGTH and ft[k.FT_N_WORDS] >= 2 and ft[k.FT_WORD_COVER] >= 1.0:
        glued = k.GLUED_SCORE
    return max(random, hashed, glued)


def score_name(name: str, with_private: bool = True) -> tuple[float, int, list[float], bool]:
    """(score, offset of the registrable domain, features, whether that domain is under a
    listed public suffix) of one lower-case name; the suffix by the ICANN section alone
    unless ``with_private``."""
    labels = name.split(".")
    n_suffix, is_listed = suffix_labels(labels, with_private)
    # read by the ICANN section, a name under a private-section rule is under a
    # company's shared domain, which scores 0
    on_private = not with_private and any(
        ".".join(labels[-n:]) in _private_keys() for n in range(1, len(labels) + 1)
    )
    has_domain = len(labels) > n_suffix
    idx = len(labels) - n_suffix - 1 if has_domain else 0
    reg_start = sum(len(lab) + 1 for lab in labels[:idx]) if has_domain else 0
    label = labels[idx]
    listed = has_domain and is_listed
    if not 0 < len(label) <= 64 or on_private:
        return 0.0, reg_start, [0.0] * k.N_FEATURES, listed
    ft = features(label)
    return score(label, ft), reg_start, ft, listed
