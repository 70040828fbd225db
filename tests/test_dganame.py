"""The name score: kernel against the slow reference, public suffixes, and how well it
separates generated names (testkit/dgagen.py's families) from human-made ones.

Measured separation (ROC AUC of the score, generated vs. human names: the well-known
domains and typing mistakes of testkit/dgagen.py plus the names of the real captures that a
person or a program made for people) is asserted below with a margin; the numbers are in
docs/DETECTION.md ("dga-nx").
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from wormwatch.dganame import (
    fnv1a,
    load_model,
    registrable,
    score_batch,
    score_texts,
    suffix_table,
)
from wormwatch.kernels.dganame import (
    FT_LENGTH,
    FT_N_WORDS,
    SFX_EXCEPTION,
    SFX_PRIVATE,
    SFX_RULE,
    SFX_WILDCARD,
    score_names,
)

from testkit import dgagen
from testkit.paths import child_env
from testkit.reference import reference_events
from testkit.reference_dganame import score_name

REPO = Path(__file__).resolve().parents[1]
DAY = date(2026, 11, 30)
# machine-made names in the real captures: a dnscat tunnel and Sality's domains
MACHINE_MADE_REAL = (b"dnscat.", b"kjwre", b"kukutrustnet")


def auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Probability that a positive outscores a negative (ties count half)."""
    greater = (positives[:, None] > negatives[None, :]).mean()
    ties = (positives[:, None] == negatives[None, :]).mean()
    return float(greater + 0.5 * ties)


def real_human_names(real_pcaps: Path) -> list[bytes]:
    names = set()
    for path in sorted(real_pcaps.glob("*.pcap*")):
        for e in reference_events(path)[1]:
            if e.kind == 1 and e.name and not e.name.startswith(MACHINE_MADE_REAL):
                names.add(e.name)
    return sorted(names)


def human_scores(real_pcaps: Path) -> np.ndarray:
    texts = [*dgagen.HUMAN_DOMAINS, *dgagen.TYPOS]
    return np.r_[score_texts(texts).scores, score_texts(real_human_names(real_pcaps)).scores]


EDGE_NAMES = [
    "www.google.com", "mail.example.co.uk", "a.b.www.ck", "foo.bar.ck", "x.y.blogspot.com",
    "d111111abcdef8.cloudfront.net", "qwhjkasd", "campus.example", "kfjdsa.campus.example",
    "4.3.2.1.zen.spamhaus.org", "104.9.192.66.in-addr.arpa", "a..b.com", "trailing.dot.",
    "x" * 63 + ".com", "ab3k9zz1q.biz", "e3b0c44298fc1c149afbf4c8996fb924.info",
    "pleasantunderstand.net", "under_score-and-hyphen9.org", "com", "",
]  # fmt: skip


@pytest.mark.parametrize("with_private", [True, False])
def test_kernel_equals_reference(with_private: bool) -> None:
    names = [
        *EDGE_NAMES,
        *(n for fam in dgagen.FAMILIES.values() for n in fam(DAY, 40)),
        *dgagen.HUMAN_DOMAINS,
        *dgagen.TYPOS,
        *dgagen.browser_probes(1, 10),
        *dgagen.cdn_names(10),
        *dgagen.av_lookups(10),
    ]
    out = score_texts(names, private_suffixes=with_private)
    for i, name in enumerate(names):
        if not name:
            assert out.scores[i] == 0.0
            continue
        want_score, want_reg, want_ft, want_listed = score_name(name, with_private)
        assert int(out.reg_starts[i]) == want_reg, name
        assert bool(out.listed[i]) == want_listed, name
        np.testing.assert_allclose(out.features[i], want_ft, atol=1e-9, err_msg=name)
        assert out.scores[i] == pytest.approx(want_score, abs=1e-9), name


def _rule_flags(text: str) -> dict[int, int]:
    """The slow table: each rule's FNV-1a key (1 for 0) -> its flags, from the strings."""
    table: dict[int, int] = {}
    for rule in text.split():
        if rule.startswith("!"):
            bare, flag = rule[1:], SFX_EXCEPTION
        elif rule.startswith("*."):
            bare, flag = rule[2:], SFX_WILDCARD
        else:
            bare, flag = rule, SFX_RULE
        key = fnv1a(bare.encode("ascii")) or 1
        table[key] = table.get(key, 0) | flag
    return table


@pytest.mark.parametrize(
    "text",
    [
        (REPO / "src" / "wormwatch" / "data" / "public_suffixes.txt").read_text("ascii"),
        "",
        "uk\nco.uk\r\n*.ck\t!www.ck \n\n  ck\n*",
    ],
)
def test_suffix_table_holds_each_rule_once_with_its_flags(text: str) -> None:
    keys, flags = suffix_table(text.encode("ascii"))
    expected = _rule_flags(text)
    assert len(keys) & (len(keys) - 1) == 0
    assert len(keys) >= 4 * max(1, len(text.split()))
    held = {int(k): int(f) for k, f in zip(keys, flags, strict=True) if k != 0}
    assert held == expected
    # every key sits in its probe chain: found from its home slot before an empty one
    mask = len(keys) - 1
    for key in expected:
        pos = (key ^ (key >> 29)) & mask
        while int(keys[pos]) != key:
            assert keys[pos] != 0
            pos = (pos + 1) & mask


@pytest.mark.parametrize(
    ("name", "domain", "is_listed"),
    [
        (b"www.example.co.uk", b"example.co.uk", 1),
        (b"a.b.www.ck", b"www.ck", 1),  # !www.ck is an exception to *.ck
        (b"foo.bar.ck", b"foo.bar.ck", 1),  # *.ck: bar.ck is a suffix
        (b"x.y.blogspot.com", b"y.blogspot.com", 1),  # private section
        (b"kfjdsa.campus.example", b"campus.example", 0),  # default rule "*"
        (b"printer.corp.local", b"corp.local", 0),
        (b"qwhjkasd", b"qwhjkasd", 0),  # a single label
        (b"co.uk", b"co.uk", 0),  # a suffix alone
        (b"WWW.Example.COM", b"example.com", 1),
    ],
)
def test_registrable_domain(name: bytes, domain: bytes, is_listed: int) -> None:
    assert registrable(name) == domain
    out = score_texts([name])
    assert int(out.listed[0]) == is_listed
    assert int(out.reg_hashes[0]) == fnv1a(domain)


@pytest.mark.parametrize(
    ("name", "domain", "is_listed"),
    [
        # the private section's rules are no suffixes here: the company's domain is
        (b"d111111abcdef8.cloudfront.net", b"cloudfront.net", 1),
        (b"x.y.blogspot.com", b"blogspot.com", 1),
        (b"qx7kz2.duckdns.org", b"duckdns.org", 1),
        (b"a.b.c.compute-1.amazonaws.com", b"amazonaws.com", 1),  # *.compute-1.amazonaws.com
        (b"cloudfront.net", b"cloudfront.net", 1),  # a private suffix alone is a domain
        (b"www.xjwqkepzrt.co.uk", b"xjwqkepzrt.co.uk", 1),  # ICANN rules as before
        (b"a.b.www.ck", b"www.ck", 1),
        (b"kfjdsa.campus.example", b"campus.example", 0),
    ],
)
def test_registrable_domain_by_the_icann_section(
    name: bytes, domain: bytes, is_listed: int
) -> None:
    out = score_texts([name], private_suffixes=False)
    assert name.lower()[int(out.reg_starts[0]) :] == domain
    assert int(out.listed[0]) == is_listed
    assert int(out.reg_hashes[0]) == fnv1a(domain)
    # a company's shared domain scores 0 (cloudfront.net's own label would read as
    # two glued words, 0.75); one under an ICANN rule is scored as before
    if domain in {b"cloudfront.net", b"blogspot.com", b"duckdns.org", b"amazonaws.com"}:
        assert out.scores[0] == 0.0
    else:
        assert out.scores[0] == score_texts([name]).scores[0]


def test_private_rules_are_marked_in_the_suffix_table() -> None:
    model = load_model()
    data = REPO / "src" / "wormwatch" / "data"
    private = set((data / "public_suffixes_private.txt").read_text("ascii").split())
    assert {"cloudfront.net", "duckdns.org", "ddns.net", "herokuapp.com"} <= private
    assert private <= set((data / "public_suffixes.txt").read_text("ascii").split())
    held = dict(zip(model.suffix_keys.tolist(), model.suffix_flags.tolist(), strict=True))
    n_marked = sum(1 for f in held.values() if f & SFX_PRIVATE)
    assert n_marked == len({r.lstrip("!").removeprefix("*.") for r in private})
    assert not held[fnv1a(b"co.uk")] & SFX_PRIVATE
    assert held[fnv1a(b"cloudfront.net")] & SFX_PRIVATE


def test_unselected_and_empty_names_score_nothing() -> None:
    model = load_model()
    names = np.zeros((3, 256), np.uint8)
    names[0, :8] = np.frombuffer(b"qwhjkasd", np.uint8)
    names[1, :8] = np.frombuffer(b"qwhjkasd", np.uint8)
    lens = np.array([8, 8, 0], np.int32)
    scores = np.full(3, 7.0)
    reg = np.full(3, 7, np.int32)
    listed = np.full(3, 7, np.uint8)
    hashes = np.full(3, 7, np.uint64)
    features = np.full((3, 8), 7.0)
    sel = np.array([True, False, True])
    n = score_names(
        names, lens, sel, 3, model.trigram, model.bloom, model.suffix_keys,
        model.suffix_flags, True, scores, reg, listed, hashes, features,
    )  # fmt: skip
    assert n == 1
    assert scores[0] > 0.9
    assert scores[1:].tolist() == [0.0, 0.0]
    assert listed.tolist() == [0, 0, 0]  # a single label has no listed suffix
    assert hashes[1:].tolist() == [0, 0]
    assert features[1:].sum() == 0.0
    assert features[0, FT_LENGTH] == 8


@pytest.mark.parametrize(
    ("family", "min_auc", "min_mean"),
    [
        # 4-5 letter Conficker names are too short to judge (a third of the family)
        ("conficker-c", 0.88, 0.55),
        ("cryptolocker", 0.97, 0.85),
        ("hash", 0.99, 0.95),
        # glued English words: only the word cover tells them apart
        ("dictionary", 0.88, 0.65),
    ],
)
def test_score_separates_generated_from_human_names(
    family: str, min_auc: float, min_mean: float, real_pcaps: Path
) -> None:
    generated = score_texts(dgagen.FAMILIES[family](DAY, 2000)).scores
    human = human_scores(real_pcaps)
    assert auc(generated, human) >= min_auc
    assert generated.mean() >= min_mean
    assert np.median(human) < 0.2


def test_human_names_rarely_score_high(real_pcaps: Path) -> None:
    human = human_scores(real_pcaps)
    assert (human >= 0.5).mean() <= 0.15
    assert score_texts(dgagen.TYPOS).scores.max() < 0.5


def test_machine_made_names_in_real_captures_score_high() -> None:
    sality = [b"kjwre77638dfqwieuoi.info", b"www.kjwre9fqwieluoi.info"]
    assert score_texts(sality).scores.min() >= 0.8


def test_long_glued_name_is_read_as_words() -> None:
    out = score_texts(["pleasantunderstand.net", "xjwqkepzrtvbnmlk.net"])
    assert out.features[0, FT_N_WORDS] == 2
    assert 0.7 <= out.scores[0] < 0.8
    assert out.scores[1] >= 0.95


def test_batch_with_selection_compiles_one_signature() -> None:
    names, lens = np.zeros((4, 256), np.uint8), np.full(4, 3, np.int32)
    names[:, :3] = ord("a")
    score_batch(names, lens, 4, np.array([True, False, True, True]))
    score_texts(["example.org"])
    assert len(score_names.signatures) == 1


def test_model_tables_match_the_script(tmp_path: Path) -> None:
    """Regenerate the tables from the same inputs; skip when those are not installed."""
    meta = json.loads((REPO / "src/wormwatch/data/dga_model.json").read_text())
    inputs = {
        Path("/usr/share/dict/words"): meta["words"]["sha256"],
        Path("/usr/share/publicsuffix/public_suffix_list.dat"): meta["suffixes"]["sha256"],
    }
    for path, digest in inputs.items():
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            pytest.skip(f"{path} missing or not the version the tables were made from")
    subprocess.run(
        [sys.executable, "-m", "scripts.samples.dga_model", "--out", str(tmp_path)],
        check=True,
        env=child_env(),
    )
    for f in (
        "dga_trigrams.npy",
        "dga_words.npy",
        "public_suffixes.txt",
        "public_suffixes_private.txt",
        "dga_model.json",
    ):
        assert (tmp_path / f).read_bytes() == (REPO / "src/wormwatch/data" / f).read_bytes(), f
