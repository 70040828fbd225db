"""Name score: how machine-made a DNS name looks, for whole batches of names.

In: names as the decoder writes them (a ``(n, NAME_SLOT)`` uint8 matrix and their
lengths) and a selection. Out: per name a score in 0..1, the offset of its registrable
domain (public suffix plus one label), and the features behind the score. The public
suffix is the Public Suffix List's, or its ICANN section's alone for dga-nx's domains
(``private_suffixes=False``: every ``*.cloudfront.net`` name is ``cloudfront.net``,
docs/DETECTION.md "dga-nx"). The packet work
is :func:`wormwatch.kernels.dganame.score_names`; this module loads the model tables
shipped in ``wormwatch/data`` (made by ``scripts/samples/dga_model.py`` from SCOWL's English
words and the Public Suffix List) and allocates the outputs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt

from wormwatch.kernels.dganame import (
    FT_BITS_PER_CHAR,
    FT_CONSONANT_RUN,
    FT_DIGIT_SHARE,
    FT_ENTROPY,
    FT_LENGTH,
    FT_N_WORDS,
    FT_VOWEL_SHARE,
    FT_WORD_COVER,
    N_FEATURES,
    SFX_PRIVATE,
    build_suffix_table,
    score_names,
)
from wormwatch.model import BOOL, I32, NAME_SLOT, U8, U64

FEATURE_NAMES = {
    FT_LENGTH: "length",
    FT_BITS_PER_CHAR: "bits_per_char",
    FT_DIGIT_SHARE: "digit_share",
    FT_VOWEL_SHARE: "vowel_share",
    FT_CONSONANT_RUN: "consonant_run",
    FT_ENTROPY: "entropy",
    FT_WORD_COVER: "word_cover",
    FT_N_WORDS: "n_words",
}
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


def fnv1a(data: bytes) -> int:
    """FNV-1a 64, the kernel's hash of suffix rules and words."""
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFF_FFFF_FFFF_FFFF
    return h


@dataclass(frozen=True, slots=True)
class Model:
    """The tables the kernel reads: trigram costs, word Bloom filter, suffix rules."""

    trigram: U8
    bloom: U64
    suffix_keys: U64
    suffix_flags: U8


def suffix_table(text: bytes, private: bytes = b"") -> tuple[U64, U8]:
    """PSL rules (``co.uk``, ``*.ck``, ``!www.ck``, whitespace between) -> the
    open-addressing (keys, flags) the kernel reads, at least four slots per rule
    (:func:`~wormwatch.kernels.dganame.build_suffix_table`; built in Python this took
    ~19 ms of every start that scores a name); the rules of ``private`` (the list's
    private section, each also in ``text``) are marked ``SFX_PRIVATE``."""
    data = np.frombuffer(text, np.uint8)
    is_rule = data > 32
    n_rules = int(np.count_nonzero(is_rule[1:] & ~is_rule[:-1])) + int(is_rule[:1].sum())
    size = 1
    while size < 4 * max(1, n_rules):
        size *= 2
    keys = np.zeros(size, np.uint64)
    flags = np.zeros(size, np.uint8)
    build_suffix_table(data, keys, flags, np.uint8(0))
    if private:
        build_suffix_table(np.frombuffer(private, np.uint8), keys, flags, np.uint8(SFX_PRIVATE))
    return keys, flags


@functools.cache
def load_model() -> Model:
    """The shipped model (loaded once per process)."""
    data = resources.files("wormwatch") / "data"
    with (data / "dga_trigrams.npy").open("rb") as f:
        trigram = np.load(f, allow_pickle=False)
    with (data / "dga_words.npy").open("rb") as f:
        bloom = np.load(f, allow_pickle=False)
    keys, flags = suffix_table(
        (data / "public_suffixes.txt").read_bytes(),
        (data / "public_suffixes_private.txt").read_bytes(),
    )
    return Model(np.ascontiguousarray(trigram), np.ascontiguousarray(bloom), keys, flags)


@dataclass(slots=True)
class Scored:
    """Per name: ``scores`` (0..1), ``reg_starts`` (offset of the registrable domain),
    ``listed`` (1: a registrable domain under a listed public suffix), ``reg_hashes``
    (FNV-1a of the registrable domain) and ``features`` (``(n, N_FEATURES)``, columns
    named by :data:`FEATURE_NAMES`)."""

    scores: F64
    reg_starts: I32
    listed: U8
    reg_hashes: U64
    features: F64

    @staticmethod
    def zeros(n: int) -> Scored:
        """``n`` names scored 0, in the arrays :func:`score_batch` fills."""
        return Scored(
            np.zeros(n, np.float64),
            np.zeros(n, np.int32),
            np.zeros(n, np.uint8),
            np.zeros(n, np.uint64),
            np.zeros((n, N_FEATURES)),
        )


def score_batch(
    names: U8,
    name_lens: I32,
    n: int,
    sel: BOOL | None = None,
    *,
    private_suffixes: bool = True,
) -> Scored:
    """Score names ``0..n`` of a decoder-style name matrix (``sel``: which; default all).
    With ``private_suffixes`` False the registrable domain (and so the scored label) is
    read by the list's ICANN section alone, as dga-nx counts domains."""
    model = load_model()
    mask = np.ones(n, np.bool_) if sel is None else np.ascontiguousarray(sel[:n], np.bool_)
    out = Scored.zeros(n)
    score_names(
        names, name_lens, mask, n, model.trigram, model.bloom, model.suffix_keys,
        model.suffix_flags, bool(private_suffixes), out.scores, out.reg_starts, out.listed,
        out.reg_hashes, out.features,
    )  # fmt: skip
    return out


def name_matrix(names: Sequence[bytes]) -> tuple[U8, I32]:
    """Names as bytes -> (matrix, lengths) as the decoder makes them (lower-cased ASCII,
    cut at ``NAME_SLOT`` bytes)."""
    matrix = np.zeros((len(names), NAME_SLOT), np.uint8)
    lens = np.zeros(len(names), np.int32)
    for i, raw in enumerate(names):
        b = raw.lower()[:NAME_SLOT]
        matrix[i, : len(b)] = np.frombuffer(b, np.uint8)
        lens[i] = len(b)
    return matrix, lens


def score_texts(names: Sequence[str | bytes], *, private_suffixes: bool = True) -> Scored:
    """Score names given as text or bytes (tests, evidence, reports)."""
    raw = [n.encode("utf-8", "surrogateescape") if isinstance(n, str) else n for n in names]
    matrix, lens = name_matrix(raw)
    return score_batch(matrix, lens, len(raw), private_suffixes=private_suffixes)


def registrable(name: bytes) -> bytes:
    """The registrable domain of one name (the whole name if it is a suffix or one label)."""
    out = score_texts([name])
    return name.lower()[int(out.reg_starts[0]) :]


def warm_up() -> None:
    """Compile (or load from cache) the kernel and load the tables."""
    score_texts(["www.example.co.uk"])
