"""Numba kernel of the name score: DNS names of a batch -> how machine-made each looks.

In: names as the decoder writes them (``names[i, :name_lens[i]]``, lower-case ASCII,
labels joined by ``.``), a selection mask, and the model tables that
``wormwatch.dganame`` loads (character trigram costs, a Bloom filter of English words,
a hash table of public-suffix rules, those of the list's private section marked). Out, per
selected name: a score in 0..1, where its registrable domain starts, whether its suffix is a
listed one, the registrable domain's hash, and the features the score was made from
(columns ``FT_*``). The private section's rules (``cloudfront.net``, ``duckdns.org``: a
company's shared domain) count as suffixes unless the caller says otherwise: dga-nx reads
registrable domains by the ICANN section alone (docs/DETECTION.md, "dga-nx").

The scored label is the registrable one: the label left of the public suffix
(``xjwqkepz`` in ``www.xjwqkepz.co.uk``), where domain generators put their randomness;
a name that is only a suffix or a single label is scored by its leftmost label.
docs/DETECTION.md ("dga-nx") explains the features and the score.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# the model's alphabet (scripts/samples/dga_model.py): a-z 0..25, 0-9 26..35, other 36
SYM_DIGIT0 = 26
SYM_OTHER = 36
SYM_BOUNDARY = 37
COST_UNITS = 8.0  # trigram costs are in 1/8 bit
BLOOM_HASHES = 6
MIN_WORD = 3
MAX_WORD = 12
MAX_SUFFIX_LABELS = 6  # the longest PSL rule has 5 labels
MAX_LABELS = 128  # a 255-byte name has at most 128 labels

# suffix rule flags (a key is the FNV-1a hash of the rule's text without "*." or "!")
SFX_RULE = 1  # "co.uk": a suffix
SFX_WILDCARD = 2  # "*.ck": any one label under it is a suffix
SFX_EXCEPTION = 4  # "!www.ck": not a suffix, although a wildcard says so
SFX_PRIVATE = 8  # the rule is in the list's private section (no key is in both sections)

# feature columns
FT_LENGTH = 0  # bytes of the scored label
FT_BITS_PER_CHAR = 1  # mean trigram cost, bits per character (end of label included)
FT_DIGIT_SHARE = 2
FT_VOWEL_SHARE = 3  # a e i o u y among the letters
FT_CONSONANT_RUN = 4  # longest run of consonants
FT_ENTROPY = 5  # Shannon entropy of the label's characters, bits
FT_WORD_COVER = 6  # share of the label covered by English words of 3-12 letters
FT_N_WORDS = 7  # words in that cover
N_FEATURES = 8

# score: bits per character between these map to 0..1 (English words and real domains sit
# near 3.5 bits/char under the model, random letters near 6; tests/test_dganame.py)
BPC_HUMAN = 4.0
BPC_RANDOM = 5.6
# a label shorter than this cannot say much; the randomness term reaches full weight here
FULL_LENGTH = 8
HEX_MIN_LENGTH = 16  # hash-like: hex digits only, both digits and letters, this long
GLUED_MIN_LENGTH = 10  # dictionary-glued: covered by 2+ words, this long
GLUED_SCORE = 0.75


@njit(cache=True, nogil=True, inline="always")
def _symbol(c):  # type: ignore[no-untyped-def]
    if 97 <= c <= 122:
        return np.int64(c - 97)
    if 48 <= c <= 57:
        return np.int64(c - 48 + SYM_DIGIT0)
    return np.int64(SYM_OTHER)


@njit(cache=True, nogil=True, inline="always")
def _is_vowel(c):  # type: ignore[no-untyped-def]
    return c == 97 or c == 101 or c == 105 or c == 111 or c == 117 or c == 121  # noqa: PLR1714


@njit(cache=True, nogil=True, inline="always")
def _fnv_step(h, c):  # type: ignore[no-untyped-def]
    return (h ^ np.uint64(c)) * np.uint64(0x100000001B3)


@njit(cache=True, nogil=True, inline="always")
def _in_bloom(bloom, h):  # type: ignore[no-untyped-def]
    n_bits = np.uint64(bloom.shape[0] * 64)
    h1 = h & np.uint64(0xFFFFFFFF)
    h2 = (h >> np.uint64(32)) | np.uint64(1)
    for k in range(BLOOM_HASHES):
        pos = (h1 + np.uint64(k) * h2) % n_bits
        if bloom[pos >> np.uint64(6)] & (np.uint64(1) << (pos & np.uint64(63))) == 0:
            return False
    return True


@njit(cache=True, nogil=True, inline="always")
def _suffix_flags(keys, flags, h):  # type: ignore[no-untyped-def]
    """Flags of the rule whose hash is ``h`` (0: no rule). Open addressing, 0 = empty."""
    mask = np.uint64(keys.shape[0] - 1)
    pos = (h ^ (h >> np.uint64(29))) & mask
    while keys[pos] != 0:
        if keys[pos] == h:
            return flags[pos]
        pos = (pos + np.uint64(1)) & mask
    return np.uint8(0)


@njit(cache=True, nogil=True)
def build_suffix_table(text, keys, flags, extra):  # type: ignore[no-untyped-def]
    """Insert every rule of ``text`` (PSL rules as ASCII, one per whitespace-separated
    token: ``co.uk``, ``*.ck``, ``!www.ck``) into the open-addressing table ``keys``
    (zeros, a power of two long) and ``flags``: the key is the FNV-1a hash of the rule
    without ``*.`` / ``!`` (1 where that is 0); ``extra`` is or-ed into each rule's flags
    (``SFX_PRIVATE``). Returns the number of rules."""
    mask = np.uint64(keys.shape[0] - 1)
    n_rules = 0
    i = 0
    n = text.shape[0]
    while i < n:
        if text[i] <= 32:
            i += 1
            continue
        flag = SFX_RULE
        if text[i] == 33:  # "!"
            flag = SFX_EXCEPTION
            i += 1
        elif text[i] == 42 and i + 1 < n and text[i + 1] == 46:  # "*."
            flag = SFX_WILDCARD
            i += 2
        h = np.uint64(0xCBF29CE484222325)
        while i < n and text[i] > 32:
            h = _fnv_step(h, text[i])
            i += 1
        if h == 0:
            h = np.uint64(1)
        pos = (h ^ (h >> np.uint64(29))) & mask
        while keys[pos] != 0 and keys[pos] != h:
            pos = (pos + np.uint64(1)) & mask
        keys[pos] = h
        flags[pos] |= flag | extra
        n_rules += 1
    return n_rules


@njit(cache=True, nogil=True)
def _suffix_labels(name, length, starts, n_labels, keys, flags, with_private):  # type: ignore[no-untyped-def]
    """How many rightmost labels form the public suffix (PSL algorithm; default rule ``*``),
    whether a listed rule (not the default) said so, and whether a rule of the private
    section was passed over (they count only ``with_private``)."""
    n_suffix = 1
    is_listed = False
    passed_private = False
    for k in range(1, min(n_labels, MAX_SUFFIX_LABELS) + 1):
        h = np.uint64(0xCBF29CE484222325)
        for j in range(starts[n_labels - k], length):
            h = _fnv_step(h, name[j])
        f = _suffix_flags(keys, flags, h)
        if f & SFX_PRIVATE and not with_private:
            passed_private = True
            continue
        if f & SFX_EXCEPTION:
            # an exception wins over every other rule: its parent is the suffix
            return k - 1, True, passed_private
        if f & SFX_RULE:
            n_suffix = max(n_suffix, k)
            is_listed = True
        if f & SFX_WILDCARD and k < n_labels:
            n_suffix = max(n_suffix, k + 1)
            is_listed = True
    return n_suffix, is_listed, passed_private


@njit(cache=True, nogil=True)
def _word_cover(name, lo, hi, bloom, best, words):  # type: ignore[no-untyped-def]
    """Most bytes of ``name[lo:hi]`` covered by non-overlapping English words, and the
    words in that cover (dynamic programming over end positions; fewer words win ties)."""
    n = hi - lo
    best[0] = 0
    words[0] = 0
    for end in range(1, n + 1):
        best[end] = best[end - 1]
        words[end] = words[end - 1]
        for size in range(MIN_WORD, min(MAX_WORD, end) + 1):
            h = np.uint64(0xCBF29CE484222325)
            for j in range(lo + end - size, lo + end):
                h = _fnv_step(h, name[j])
            covered = best[end - size] + size
            better = covered > best[end] or (
                covered == best[end] and words[end - size] + 1 < words[end]
            )
            if better and _in_bloom(bloom, h):
                best[end] = covered
                words[end] = words[end - size] + 1
    return best[n], words[n]


@njit(cache=True, nogil=True)
def _label_features(name, lo, hi, trigram, bloom, best, words, hist, out):  # type: ignore[no-untyped-def]
    """Features of ``name[lo:hi]`` into ``out`` (FT_* columns)."""
    n = hi - lo
    cost = 0.0
    a = SYM_BOUNDARY
    b = SYM_BOUNDARY
    n_digits = 0
    n_letters = 0
    n_vowels = 0
    run = 0
    longest = 0
    hist[:] = 0
    for j in range(lo, hi):
        c = name[j]
        s = _symbol(c)
        hist[s] += 1
        cost += trigram[a, b, s]
        a, b = b, s
        if s >= SYM_DIGIT0:
            n_digits += s < SYM_OTHER
            run = 0
            continue
        n_letters += 1
        if _is_vowel(c):
            n_vowels += 1
            run = 0
        else:
            run += 1
            longest = max(longest, run)
    cost += trigram[a, b, SYM_BOUNDARY]
    entropy = 0.0
    for s in range(SYM_BOUNDARY):
        if hist[s] > 0:
            p = hist[s] / n
            entropy -= p * np.log2(p)
    covered, n_words = _word_cover(name, lo, hi, bloom, best, words)
    out[FT_LENGTH] = n
    out[FT_BITS_PER_CHAR] = cost / COST_UNITS / (n + 1)
    out[FT_DIGIT_SHARE] = n_digits / n
    out[FT_VOWEL_SHARE] = n_vowels / n_letters if n_letters else 0.0
    out[FT_CONSONANT_RUN] = longest
    out[FT_ENTROPY] = entropy
    out[FT_WORD_COVER] = covered / n
    out[FT_N_WORDS] = n_words


@njit(cache=True, nogil=True)
def _score(name, lo, hi, ft):  # type: ignore[no-untyped-def]
    """Score 0..1 from a label's features: the strongest of three readings."""
    n = ft[FT_LENGTH]
    # random characters: the model finds the label improbable, digits mixed in, long
    # consonant runs; trusted in proportion to the length
    improbable = min(1.0, max(0.0, (ft[FT_BITS_PER_CHAR] - BPC_HUMAN) / (BPC_RANDOM - BPC_HUMAN)))
    share = ft[FT_DIGIT_SHARE]
    mixed = 1.0 if 0.15 <= share <= 0.85 else 0.0
    runs = min(1.0, max(0.0, (ft[FT_CONSONANT_RUN] - 3.0) / 3.0))
    trust = min(1.0, max(0.0, (n - 3.0) / (FULL_LENGTH - 3.0)))
    random = trust * min(1.0, 0.85 * improbable + 0.15 * max(mixed, runs) + 0.15 * mixed * runs)
    # hash-like: a long run of hex digits with both digits and letters (md5/sha names)
    is_hex = n >= HEX_MIN_LENGTH and 0.0 < share < 1.0
    for j in range(lo, hi):
        c = name[j]
        if not (48 <= c <= 57 or 97 <= c <= 102):
            is_hex = False
            break
    hashed = 1.0 if is_hex else 0.0
    # dictionary-glued (Suppobox, Matsnu): long, fully covered by two or more words, and
    # no digits or hyphens; a human name glued from words resolves, so this reading
    # matters only among names that do not exist
    glued = 0.0
    if n >= GLUED_MIN_LENGTH and ft[FT_N_WORDS] >= 2 and ft[FT_WORD_COVER] >= 1.0:
        glued = GLUED_SCORE
    return max(random, hashed, glued)


@njit(cache=True, nogil=True)
def score_names(  # type: ignore[no-untyped-def]
    names, name_lens, sel, n, trigram, bloom, sfx_keys, sfx_flags, with_private, scores,
    reg_starts, listed, reg_hashes, features,
):  # fmt: skip
    """Score names ``0..n`` where ``sel`` is set (others: all outputs 0). Without
    ``with_private`` the suffix is the ICANN section's: a name under a private-section
    rule has the company's domain (``d1a2.cloudfront.net``: ``cloudfront.net``), scored 0.

    ``reg_starts[i]`` is the offset of the registrable domain in ``names[i]`` (public
    suffix plus one label; 0 when the name is a suffix or a single label);
    ``listed[i]`` is 1 when the name has a registrable domain under a suffix the list
    names (not the default rule: ``corp.local``, a single label, a search-domain
    expansion under a private suffix are 0); ``reg_hashes[i]`` the FNV-1a hash of
    the registrable domain. Returns the number of names scored.
    """
    starts = np.zeros(MAX_LABELS + 1, np.int64)
    best = np.zeros(64 + 1, np.int64)
    words = np.zeros(64 + 1, np.int64)
    hist = np.zeros(SYM_BOUNDARY, np.int64)
    n_scored = 0
    for i in range(n):
        scores[i] = 0.0
        reg_starts[i] = 0
        listed[i] = 0
        reg_hashes[i] = 0
        features[i, :] = 0.0
        length = name_lens[i]
        if not sel[i] or length == 0:
            continue
        name = names[i]
        # not a literal 1: numba would compile _suffix_labels once for Literal[int](1) too
        n_labels = np.int64(1)
        starts[0] = 0
        for j in range(length):
            if name[j] == 46 and n_labels < MAX_LABELS:
                starts[n_labels] = j + 1
                n_labels += 1
        n_suffix, is_listed, on_private = _suffix_labels(
            name, length, starts, n_labels, sfx_keys, sfx_flags, with_private
        )
        has_domain = n_labels > n_suffix
        label = n_labels - n_suffix - 1 if has_domain else 0
        lo = starts[label]
        hi = starts[label + 1] - 1 if label + 1 < n_labels else length
        reg_starts[i] = lo if has_domain else 0
        listed[i] = 1 if has_domain and is_listed else 0
        h = np.uint64(0xCBF29CE484222325)
        for j in range(reg_starts[i], length):
            h = _fnv_step(h, name[j])
        reg_hashes[i] = h
        # an empty label (a name with ".." or a trailing dot) or one over 63 bytes
        # (not a DNS label): nothing to score; nor a company's shared domain read by
        # the ICANN section (cloudfront.net): the list names it, no generator made it
        if hi - lo <= 0 or hi - lo > 64 or on_private:
            continue
        _label_features(name, lo, hi, trigram, bloom, best, words, hist, features[i])
        scores[i] = _score(name, lo, hi, features[i])
        n_scored += 1
    return n_scored
