"""Build the name-score model tables shipped in ``src/wormwatch/data/``, deterministically.

Place in the data flow: before it. The ``dga-nx`` signal scores how machine-made a DNS
name looks (``wormwatch.kernels.dganame``); its tables come from two public lists:

* **English words**: SCOWL via Debian's ``wamerican`` package (``/usr/share/dict/words``,
  SCOWL size 50; permissive licence: "Permission to use, copy, modify, distribute and sell
  these word lists ... is hereby granted without fee", Kevin Atkinson, see
  ``/usr/share/doc/wamerican/copyright``). Chosen because it is installable offline with
  ``apt-get install wamerican`` and its licence allows shipping derived tables.
* **Domain labels and suffixes**: the Public Suffix List via Debian's ``publicsuffix``
  package (``/usr/share/publicsuffix/public_suffix_list.dat``, MPL-2.0, the same list the
  PyPI ``publicsuffixlist`` package bundles). Its rules give the suffix table, and their
  labels (``blogspot``, ``amazonaws``, ``herokuapp``, place names) the domain-name part of
  the character model.

Outputs (``--out``, default ``src/wormwatch/data``):

* ``dga_trigrams.npy``: uint8 ``(38, 38, 38)``, the cost ``-log2 P(c | a, b)`` of a
  character after two others, in 1/8 bit (alphabet: a-z, 0-9, ``-`` and other bytes, and
  a boundary symbol); an interpolated trigram/bigram/unigram model of the words and labels.
* ``dga_words.npy``: uint64 Bloom filter bits of the lower-case English words of 3 to 12
  letters (for spotting names glued from dictionary words, as Suppobox and Matsnu make).
* ``public_suffixes.txt``: the PSL's rules (ICANN and private sections), IDN rules in
  punycode (names travel as punycode on the wire), sorted, one per line.
* ``public_suffixes_private.txt``: those of them from the private section (a company's
  shared domains: ``cloudfront.net``, ``duckdns.org``), which dga-nx does not read as
  suffixes when it counts registrable domains.
* ``dga_model.json``: what it was built from (sha256 of each input) and the parameters.

Usage::

    python -m scripts.samples.dga_model                 # rewrite the package's tables
    python -m scripts.samples.dga_model --out DIR       # write them into DIR only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
WORDS = Path("/usr/share/dict/words")
PSL = Path("/usr/share/publicsuffix/public_suffix_list.dat")
# the kernel's alphabet: a-z 0..25, 0-9 26..35, '-' and any other byte 36, boundary 37
N_SYMBOLS = 38
BOUNDARY = 37
COST_UNITS = 8  # the table's cost unit: 1/8 bit
# interpolation weights of the trigram, bigram, unigram and uniform estimates
LAMBDAS = (0.70, 0.22, 0.07, 0.01)
BLOOM_BITS = 1 << 20
BLOOM_HASHES = 6
MIN_WORD, MAX_WORD = 3, 12
_WORD = re.compile(rf"[a-z]{{{MIN_WORD},{MAX_WORD}}}")
_LABEL = re.compile(r"[a-z0-9-]+")


def symbol(byte: int) -> int:
    """Byte -> symbol of the model's alphabet (the kernel's ``_symbol``)."""
    if 97 <= byte <= 122:
        return byte - 97
    if 65 <= byte <= 90:
        return byte - 65
    if 48 <= byte <= 57:
        return byte - 48 + 26
    return 36


def fnv1a(data: bytes) -> int:
    """FNV-1a 64 (the kernel's word hash)."""
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFF_FFFF_FFFF_FFFF
    return h


def bloom_positions(h: int) -> list[int]:
    """Bit positions of a hash: double hashing (Kirsch-Mitzenmacher), as the kernel does."""
    h1 = h & 0xFFFF_FFFF
    h2 = (h >> 32) | 1
    return [(h1 + k * h2) % BLOOM_BITS for k in range(BLOOM_HASHES)]


PRIVATE_BEGIN = "===BEGIN PRIVATE DOMAINS==="
PRIVATE_END = "===END PRIVATE DOMAINS==="


def private_section(text: str) -> str:
    """The PSL's private section (the lines between its BEGIN and END marker comments)."""
    start = text.index("\n", text.index(PRIVATE_BEGIN))
    return text[start : text.index(PRIVATE_END, start)]


def psl_rules(text: str) -> list[str]:
    """Rules of the PSL, lower-case, IDN labels as punycode; sorted and unique."""
    rules = set()
    for line in text.splitlines():
        rule = line.strip().split(" ")[0]
        if not rule or rule.startswith("//"):
            continue
        try:
            ascii_rule = ".".join(
                lab if lab in {"*", "!"} else lab.encode("idna").decode("ascii")
                for lab in rule.lower().split(".")
            )
        except UnicodeError:
            # a label Python's IDNA 2003 codec refuses: skipped (a handful of rules)
            continue
        rules.add(ascii_rule)
    return sorted(rules)


def corpus(words_text: str, rules: list[str]) -> tuple[list[str], list[str]]:
    """(English words for the Bloom filter, all strings the character model learns)."""
    words = sorted({w for w in words_text.split() if _WORD.fullmatch(w)})
    english = sorted({w.lower() for w in words_text.split() if w.isascii() and w.isalpha()})
    labels = sorted(
        {lab for r in rules for lab in r.lstrip("!*.").split(".") if _LABEL.fullmatch(lab)}
    )
    return words, english + labels


def trigram_costs(strings: list[str]) -> np.ndarray:
    """Interpolated model -> uint8 cost table in 1/8 bit."""
    counts = np.zeros((N_SYMBOLS, N_SYMBOLS, N_SYMBOLS), np.float64)
    for s in strings:
        seq = [BOUNDARY, BOUNDARY, *(symbol(b) for b in s.encode()), BOUNDARY]
        idx = np.array(seq, np.int64)
        np.add.at(counts, (idx[:-2], idx[1:-1], idx[2:]), 1.0)
    tri = counts / np.maximum(counts.sum(axis=2, keepdims=True), 1.0)
    bi_counts = counts.sum(axis=0)
    bi = bi_counts / np.maximum(bi_counts.sum(axis=1, keepdims=True), 1.0)
    uni = bi_counts.sum(axis=0) / bi_counts.sum()
    l3, l2, l1, l0 = LAMBDAS
    p = l3 * tri + l2 * bi[None, :, :] + l1 * uni[None, None, :] + l0 / N_SYMBOLS
    cost = np.rint(-np.log2(p) * COST_UNITS)
    return np.clip(cost, 0, 255).astype(np.uint8)


def bloom(words: list[str]) -> np.ndarray:
    bits = np.zeros(BLOOM_BITS // 64, np.uint64)
    for w in words:
        for pos in bloom_positions(fnv1a(w.encode())):
            bits[pos >> 6] |= np.uint64(1 << (pos & 63))
    return bits


def build(words_path: Path, psl_path: Path, out: Path) -> None:
    words_bytes = words_path.read_bytes()
    psl_bytes = psl_path.read_bytes()
    rules = psl_rules(psl_bytes.decode("utf-8"))
    words, strings = corpus(words_bytes.decode("utf-8", errors="replace"), rules)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "dga_trigrams.npy", trigram_costs(strings), allow_pickle=False)
    np.save(out / "dga_words.npy", bloom(words), allow_pickle=False)
    (out / "public_suffixes.txt").write_text("\n".join(rules) + "\n", encoding="ascii")
    private = psl_rules(private_section(psl_bytes.decode("utf-8")))
    (out / "public_suffixes_private.txt").write_text("\n".join(private) + "\n", encoding="ascii")
    meta = {
        "made_by": "scripts/samples/dga_model.py",
        "words": {
            "source": "SCOWL size 50 (Debian wamerican), /usr/share/dict/words",
            "sha256": hashlib.sha256(words_bytes).hexdigest(),
            "n_bloom_words": len(words),
        },
        "suffixes": {
            "source": "Public Suffix List (Debian publicsuffix), MPL-2.0",
            "sha256": hashlib.sha256(psl_bytes).hexdigest(),
            "n_rules": len(rules),
            "n_private_rules": len(private),
        },
        "n_model_strings": len(strings),
        "cost_units_per_bit": COST_UNITS,
        "lambdas": list(LAMBDAS),
        "bloom_bits": BLOOM_BITS,
        "bloom_hashes": BLOOM_HASHES,
        "word_lengths": [MIN_WORD, MAX_WORD],
    }
    (out / "dga_model.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="ascii")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "src" / "wormwatch" / "data")
    parser.add_argument("--words", type=Path, default=WORDS)
    parser.add_argument("--psl", type=Path, default=PSL)
    args = parser.parse_args()
    for path, package in ((args.words, "wamerican"), (args.psl, "publicsuffix")):
        if not path.is_file():
            print(f"{path} not found: apt-get install {package}", file=sys.stderr)
            return 2
    build(args.words, args.psl, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
