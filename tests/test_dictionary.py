"""Tests of xlt_course.data.dictionary: parsing, the real build, the splits, data quality."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_build_is_noop

from xlt_course import paths
from xlt_course.data import dictionary, vectors
from xlt_course.data.dictionary import load_dictionary, load_dictionary_file
from xlt_course.data.manifest import Manifest
from xlt_course.errors import DataError


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    """Build vectors and dictionaries into data/build (no-ops when current)."""
    m = Manifest(paths.build_dir())
    dictionary.build(m)
    return m


# ---------------------------------------------------------------------------------------------
# parsing


def test_dictd_offsets() -> None:
    assert dictionary.dictd_b64("A") == 0
    assert dictionary.dictd_b64("B") == 1
    assert dictionary.dictd_b64("BA") == 64
    assert dictionary.dictd_b64("c/") == 28 * 64 + 63


def test_parse_entry_and_clean_terms() -> None:
    head, items = dictionary.parse_dictd_entry(
        "abaque /abak/ <n, masc>\n1. abacus, ball-frame\n2.  [cul] whisk, (kind) regards\n"
        '      "Il faut faire"\n'
    )
    assert head == "abaque"
    assert items == ["abacus", "ball-frame", "[cul] whisk", "(kind) regards"]
    assert [dictionary.clean_term(t) for t in items] == ["abacus", "ball-frame", "whisk", "regards"]
    assert dictionary.clean_term("chou\u2010fleur") == "chou-fleur"
    assert dictionary.clean_term("ash (tree)") == "ash"
    assert dictionary.clean_term("ABC") == "abc"
    for bad in ("(bul)rush", "quelques uns", "se douter de", "is ... ?", "24", ""):
        assert dictionary.clean_term(bad) is None, bad


def test_freedict_pairs_are_clean_single_words() -> None:
    pairs = dictionary.freedict_pairs()
    assert 13_000 < len(pairs) < 15_000
    assert {("house", "maison"), ("armpit", "aisselle"), ("cauliflower", "chou-fleur")} <= pairs
    assert all(vectors.is_clean_word(e) and vectors.is_clean_word(f) for e, f in pairs)


def test_apertium_translates_each_word_on_its_own() -> None:
    # on bare lines "grande\ncasa" comes out as "grande\nmarie": the words interact
    assert dictionary.apertium_translate(["grande", "casa", "zzqx", "perro"]) == [
        "grand",
        "maison",
        None,
        "chien",
    ]


# ---------------------------------------------------------------------------------------------
# the built dictionaries


def test_second_build_is_a_noop(manifest: Manifest) -> None:
    assert_build_is_noop(dictionary.build, manifest, ("dict-en-fr", "dict-fr-en"))
    art = manifest.entries["dict-en-fr"]
    assert "dict-freedict-eng-fra=" in art.version and "GPL-2" in art.licence


@pytest.mark.parametrize(("src", "tgt"), [("en", "fr"), ("fr", "en")])
def test_splits(manifest: Manifest, src: str, tgt: str) -> None:
    rank = {lang: vectors.load_vectors(lang).word2id for lang in ("en", "fr")}
    train = load_dictionary(src, tgt, "train")  # type: ignore[arg-type]
    test = load_dictionary(src, tgt, "test")  # type: ignore[arg-type]
    every = load_dictionary(src, tgt, "all")  # type: ignore[arg-type]
    train_src, test_src = {s for s, _ in train}, {s for s, _ in test}
    assert len(test_src) == dictionary.N_TEST_WORDS
    assert not train_src & test_src
    assert set(train) | set(test) == set(every) and len(train) + len(test) == len(every)
    lo, hi = dictionary.TEST_BAND
    assert all(lo <= rank[src][s] < hi for s in test_src)
    assert all(s in rank[src] and t in rank[tgt] for s, t in every)
    assert len(every) == len(set(every))
    ranks = [rank[src][s] for s, _ in every]
    assert ranks == sorted(ranks)  # source-frequency order


def test_sizes_and_origins(manifest: Manifest) -> None:
    freedict = set(load_dictionary("en", "fr", "all", origin="freedict"))
    pivot = set(load_dictionary("en", "fr", "all", origin="pivot"))
    every = set(load_dictionary("en", "fr", "all"))
    assert len(freedict) > 8000 and len(pivot) > 6000
    assert every == freedict | pivot
    assert {("king", "roi"), ("dog", "chien")} <= every
    back = {(e, f) for f, e in load_dictionary("fr", "en", "all")}
    assert back == every  # the two files hold the same pairs, split separately


def test_procrustes_on_the_built_data_beats_the_floor(manifest: Manifest) -> None:
    """Plain orthogonal Procrustes EN->FR: P@1 (nearest neighbour) on the test split > 0.25."""
    en = vectors.load_vectors("en", max_words=50_000)
    fr = vectors.load_vectors("fr")

    def centre_normalise(m: np.ndarray) -> np.ndarray:
        m = m / np.linalg.norm(m, axis=1, keepdims=True)
        m = m - m.mean(axis=0)
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    x_src = centre_normalise(en.vectors.astype(np.float64))
    y_tgt = centre_normalise(fr.vectors.astype(np.float64))
    # PCA FR 300d -> 50d from the (300, 300) covariance: an SVD of the (15k, 300) matrix is
    # ten times slower on a busy 2-core machine
    _, eigvecs = np.linalg.eigh(y_tgt.T @ y_tgt)
    y_tgt = y_tgt @ eigvecs[:, ::-1][:, : en.dim]
    y_tgt /= np.linalg.norm(y_tgt, axis=1, keepdims=True)

    train = [(s, t) for s, t in load_dictionary("en", "fr", "train") if s in en.word2id]
    a = x_src[[en.word2id[s] for s, _ in train]]
    b = y_tgt[[fr.word2id[t] for _, t in train]]
    u, _, vt = np.linalg.svd(a.T @ b)
    w = u @ vt

    gold: dict[str, set[int]] = {}
    for s, t in load_dictionary("en", "fr", "test"):
        gold.setdefault(s, set()).add(fr.word2id[t])
    queries = sorted(gold, key=en.word2id.__getitem__)
    pred = ((x_src[[en.word2id[s] for s in queries]] @ w) @ y_tgt.T).argmax(axis=1)
    p_at_1 = float(np.mean([p in gold[s] for p, s in zip(pred, queries, strict=True)]))
    print(f"Procrustes EN->FR P@1 NN on {len(queries)} test words: {p_at_1:.3f}")
    assert p_at_1 > 0.25
    identity = (x_src[[en.word2id[s] for s in queries]] @ y_tgt.T).argmax(axis=1)
    assert np.mean([p in gold[s] for p, s in zip(identity, queries, strict=True)]) < 0.05


# ---------------------------------------------------------------------------------------------
# errors


def test_load_dictionary_errors(
    manifest: Manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="no built dictionary for en->de"):
        load_dictionary("en", "de")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="split"):
        load_dictionary("en", "fr", "dev")  # type: ignore[arg-type]
    build = tmp_path / "data" / "build"
    rel = manifest.entries["dict-en-fr"].path
    (build / rel).parent.mkdir(parents=True)
    shutil.copy(manifest.folder / rel, build / rel)
    shutil.copy(manifest.file, build / "manifest.json")
    monkeypatch.setenv("XLT_COURSE_DATA", str(tmp_path / "data"))
    assert load_dictionary("en", "fr", "test")  # the copy is intact
    with open(build / rel, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(DataError, match="corrupt or truncated") as err:
        load_dictionary("en", "fr")
    assert str(build / rel) in str(err.value) and "--force" in str(err.value)
    with pytest.raises(DataError, match="is missing although"):
        load_dictionary("fr", "en")


def test_load_dictionary_file(tmp_path: Path) -> None:
    good = tmp_path / "en-fr.5000-6500.txt"
    good.write_text("cat chat\ncat chatte\n\ndog\tchien\ncat chat\n", encoding="utf-8")
    assert load_dictionary_file(good) == [("cat", "chat"), ("cat", "chatte"), ("dog", "chien")]
    bad = tmp_path / "bad.txt"
    bad.write_text("cat chat\nthree words here\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.txt:2: expected 'source_word target_word'"):
        load_dictionary_file(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no word pairs"):
        load_dictionary_file(empty)
    with pytest.raises(DataError, match="does not exist"):
        load_dictionary_file(tmp_path / "missing.txt")
