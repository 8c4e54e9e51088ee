"""Lesson 04-subwords-and-anchors: xlt_course.tokenization, and its exercises catch mistakes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
from collections import Counter

import numpy as np
import pytest
from cells import run_test_cell, solution_namespace
from conftest import run_visible_checks, solution

from xlt_course import tokenization

NB = solution("04-subwords-and-anchors")
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_RE = re.compile(f"[{CJK}]")


# --------------------------------------------------------------------------- the module


def test_import_is_light():
    code = (
        "import sys, xlt_course.tokenization;"
        "bad = [m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules];"
        "assert not bad, bad"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and res.stderr == ""


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Open the file.", ["Open", "the", "file"]),
        ("l'élément d'accès", ["l", "élément", "d", "accès"]),
        ("GTK_TOOLBAR_BOTH v2.0", ["GTK", "TOOLBAR", "BOTH", "v2", "0"]),
        ("Datei-Manager «öffnen»", ["Datei", "Manager", "öffnen"]),
        ("Предполагать ли", ["Предполагать", "ли"]),
        ("如果为 TRUE，则3个", ["如", "果", "为", "TRUE", "则", "3", "个"]),
        ("このアクション・ツール", ["こ", "の", "ア", "ク", "シ", "ョ", "ン", "ツ", "ー", "ル"]),
        ("... !!", []),
    ],
)
def test_split_words(text, words):
    assert tokenization.split_words(text) == words


def test_fertility_is_a_ratio_of_totals():
    texts = ["Save", "Save the file now."]
    pieces = [["▁Sa", "ve"], ["▁Save", "▁the", "▁file", "▁now", "."]]
    assert tokenization.fertility(texts, pieces) == pytest.approx(6 / 5)
    assert tokenization.fertility(["数据库"], [["▁", "数据", "库"]]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="pieces"):
        tokenization.fertility(["a", "b"], [["▁a"]])
    with pytest.raises(ValueError, match="no word"):
        tokenization.fertility(["..."], [["."]])


def test_type_overlap_and_matrix():
    a = ["▁the"] * 3 + ["."] * 3
    b = [".", "▁le"]
    assert tokenization.type_overlap(a, b) == pytest.approx(1 / 3)
    assert tokenization.type_overlap([[*a[:3]], [*a[3:]]], [b]) == pytest.approx(
        1 / 3
    )  # nested lists
    assert tokenization.type_overlap([], []) == 0.0
    langs, M = tokenization.overlap_matrix({"x": a, "y": b, "z": ["▁le"]})
    assert langs == ["x", "y", "z"]
    assert np.allclose(M, M.T) and np.allclose(np.diag(M), 1.0)
    assert M[0, 2] == 0.0 and M[1, 2] == pytest.approx(0.5)
    # tokens, not types: the shared "." dominates
    assert tokenization.token_coverage(a, b) == pytest.approx(0.5)
    assert tokenization.token_coverage([], b) == 0.0


@pytest.mark.parametrize(
    ("piece", "category"),
    [
        ("▁", None),
        ("##", None),
        ("▁2", "digit"),
        ("v2", "digit"),
        ("##3", "digit"),
        (".", "punctuation"),
        ("▁(", "punctuation"),
        ("_", "punctuation"),
        ("▁JPEG", "latin"),
        ("##ing", "latin"),
        ("é", "latin"),
        ("▁Привет", "cyrillic"),
        ("数据", "han"),
        ("アクション", "kana"),
        ("の場合", "kana"),
        ("場合の", "han"),
        ("▁α", "other"),
        ("々", "other"),
    ],
)
def test_piece_category(piece, category):
    assert tokenization.piece_category(piece) == category


def test_shared_anchors_groups_and_orders():
    a = ["▁JPEG"] * 2 + ["▁0", ",", "▁", "▁le", "数据", "▁c"] + ["▁d"] * 2 + ["▁c"] * 9
    b = ["▁JPEG", "▁0", ",", ",", "▁", "▁the", "数据", "▁c"] + ["▁d"] * 8
    res = tokenization.shared_anchors(a, b)
    assert list(res) == list(tokenization.CATEGORIES)
    assert res["latin"] == ["▁d", "▁JPEG", "▁c"]  # min counts 2, 1, 1; ties by string
    assert res["digit"] == ["▁0"] and res["punctuation"] == [","] and res["han"] == ["数据"]
    assert res["cyrillic"] == res["kana"] == res["other"] == []


def test_parameter_breakdown_matches_reference_numbers():
    totals = {
        name: tokenization.parameter_breakdown(tokenization.published_config(name))
        for name in tokenization.PUBLISHED_MILLIONS
    }
    for name, millions in tokenization.PUBLISHED_MILLIONS.items():
        assert round(totals[name]["total"] / 1e6, 1) == millions, name
    xlmr = totals["xlm-roberta-base"]
    assert xlmr["word_embeddings"] == 250002 * 768
    assert xlmr["position_embeddings"] == 514 * 768 and xlmr["token_type_embeddings"] == 768
    assert xlmr["layers"] == totals["bert-base-multilingual-cased"]["layers"] == 85_054_464
    assert xlmr["mlm_head"] == 768 * 768 + 768 + 2 * 768 + 250002  # decoder weight is tied
    assert totals["xlm-roberta-large"]["total"] == 559_890_432
    parts = ("embeddings", "layers", "pooler")
    assert all(sum(c[k] for k in parts) == c["total"] for c in totals.values())


def test_published_config_rejects_unknown_names():
    with pytest.raises(ValueError, match="xlm-roberta-base"):
        tokenization.published_config("mbert")  # type: ignore[arg-type]


def test_sample_corpus_follows_alpha():
    texts = {"big": [f"b{i}" for i in range(900)], "small": [f"s{i}" for i in range(100)]}
    corpus, counts = tokenization.sample_corpus(texts, alpha=1.0, budget=500, seed=0)
    assert counts == {"big": 450, "small": 50} and len(corpus) == 500
    corpus, counts = tokenization.sample_corpus(texts, alpha=0.0, budget=501, seed=0)
    assert sum(counts.values()) == 501 and abs(counts["big"] - counts["small"]) <= 1
    # upsampling: the small language is repeated whole before sampling the rest
    small = Counter(s for s in corpus if s.startswith("s"))
    assert set(small.values()) <= {2, 3} and len(small) == 100
    again, _ = tokenization.sample_corpus(texts, alpha=0.0, budget=501, seed=0)
    assert again == corpus
    _, counts = tokenization.sample_corpus(texts, alpha=0.5, budget=400, seed=1)
    assert counts["big"] == pytest.approx(400 * 3 / 4, abs=1)  # sqrt(900) : sqrt(100) = 3 : 1


_CORPUS = [
    "Open the file and save the file",
    "Ouvrir le fichier et enregistrer le fichier",
    "Datei öffnen und speichern",
    "打开文件并保存文件",
    "ファイルを開いて保存します",
] * 20


@pytest.mark.parametrize(("kind", "marker"), [("wordpiece", "##"), ("unigram", "▁")])
def test_train_vocab(kind, marker):
    tok = tokenization.train_vocab(_CORPUS, kind, vocab_size=120)
    assert tok.get_vocab_size() <= 120
    pieces = tokenization.tokenize_corpus(tok, ["Open the file", "打开文件"])
    assert any(marker in p for sent in pieces for p in sent) or kind == "wordpiece"
    if kind == "wordpiece":  # mBERT's pre-tokenization isolates every Han character
        assert pieces[1] == ["打", "开", "文", "件"]
    with pytest.raises(ValueError, match="kind"):
        tokenization.train_vocab(_CORPUS, "bpe", 100)  # type: ignore[arg-type]


def test_wordpiece_vocab_merges_frequent_pairs_deterministically():
    texts = ["low low low lower newest newest widest"]
    special = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    vocab = tokenization.wordpiece_vocab(texts, 100, special_tokens=special, min_frequency=2)
    assert vocab[:5] == list(special)
    assert "low" in vocab and "newest" in vocab and "widest" not in vocab
    assert "##e" in vocab and len(vocab) == len(set(vocab))
    assert vocab == tokenization.wordpiece_vocab(
        list(texts), 100, special_tokens=special, min_frequency=2
    )
    assert len(tokenization.wordpiece_vocab(texts * 5, 20, min_frequency=1)) == 20
    assert tokenization.wordpiece_vocab(texts, 100)[0] == "[UNK]"
    with pytest.raises(ValueError, match="vocab_size"):
        tokenization.wordpiece_vocab(texts, 5)
    with pytest.raises(ValueError, match="repeat"):
        tokenization.wordpiece_vocab(texts, 100, special_tokens=("[UNK]", "[UNK]"))


def test_wordpiece_vocab_breaks_ties_alphabetically():
    # "ab", "cd" and "ef" all occur twice: merged in alphabetical order, whatever the input order
    for texts in (["ab cd ef ab cd ef"], ["ef cd ab ef cd ab"]):
        vocab = tokenization.wordpiece_vocab(texts, 100, special_tokens=(), min_frequency=2)
        assert vocab == ["##b", "##d", "##f", "a", "c", "e", "ab", "cd", "ef"]


def test_wordpiece_vocabulary_is_the_same_in_every_process():
    """``tokenizers``' own trainer broke ties in hash-table order, different in each process."""
    code = (
        "import sys, json; from xlt_course import tokenization as t; "
        "tok = t.train_vocab(json.loads(sys.argv[1]), 'wordpiece', 120); "
        "print(json.dumps(sorted(tok.get_vocab().items())))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code, json.dumps(_CORPUS)],
            capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in (1, 2)
    }  # fmt: skip
    assert len(runs) == 1


def test_vocab_sweep_caches_and_never_trains_when_told(tmp_path, monkeypatch):
    train = {"en": _CORPUS[0::5], "fr": _CORPUS[1::5], "zh": _CORPUS[3::5]}
    heldout = {"en": ["Save the file"], "fr": ["Enregistrer le fichier"], "zh": ["保存文件"]}
    configs = [
        tokenization.VocabConfig("wordpiece", 80, 1.0, budget=30),
        tokenization.VocabConfig("unigram", 60, 0.0, 30),
    ]
    cache = tmp_path / "sweep.json"
    assert (
        tokenization.vocab_sweep(
            configs, train, heldout, pairs=[("en", "fr")], cache=cache, train=False
        )
        == []
    )
    rows = tokenization.vocab_sweep(
        configs, train, heldout, pairs=[("en", "fr")], cache=cache, progress=False
    )
    assert len(rows) == 2 and cache.exists()
    assert set(rows[0]["fertility"]) == {"en", "fr", "zh"} and "en-fr" in rows[0]["overlap"]
    assert rows[1]["counts"] == {"en": 10, "fr": 10, "zh": 10}
    again = tokenization.vocab_sweep(
        configs, train, heldout, pairs=[("en", "fr")], cache=cache, train=False
    )
    assert again == rows
    # rows written by another version of the training code are never read
    monkeypatch.setattr(tokenization, "VOCAB_SWEEP_VERSION", tokenization.VOCAB_SWEEP_VERSION + 1)
    assert (
        tokenization.vocab_sweep(
            configs, train, heldout, pairs=[("en", "fr")], cache=cache, train=False
        )
        == []
    )


def test_tokenize_corpus_loads_a_wordpiece_tokenizer_from_a_folder(tmp_path):
    """The Colab path (mBERT through load_tokenizer) tested offline with a local folder."""
    from transformers import BertTokenizerFast

    from xlt_course.models import load_tokenizer

    tok = tokenization.train_vocab(_CORPUS, "wordpiece", vocab_size=150)
    BertTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", do_lower_case=False, strip_accents=False
    ).save_pretrained(tmp_path)
    hf = load_tokenizer(str(tmp_path))
    texts = ["Open the file", "打开文件", "Datei speichern"]
    pieces = tokenization.tokenize_corpus(hf, texts)
    assert pieces == tokenization.tokenize_corpus(tok, texts)
    assert tokenization.fertility(texts, pieces) >= 1.0
    assert tokenization.shared_anchors(pieces[0], pieces[2])["punctuation"] == []


def test_offline_xlmr_tokenizer(built_data):
    from xlt_course.data.topics import load_parallel
    from xlt_course.models import load_tokenizer

    tok = load_tokenizer("offline")
    assert len(tok) == 250_002
    par = load_parallel("dev", ("en", "ru", "zh"))
    pieces = {lang: tokenization.tokenize_corpus(tok, texts[:60]) for lang, texts in par.items()}
    assert pieces["en"][0][0].startswith("▁")
    assert 1.0 < tokenization.fertility(par["en"][:60], pieces["en"]) < 2.0
    assert 0.4 < tokenization.fertility(par["zh"][:60], pieces["zh"]) < 1.2  # pieces per character
    anchors = tokenization.shared_anchors(*(sum(pieces[lang], []) for lang in ("en", "ru")))
    assert anchors["cyrillic"] == [] and anchors["punctuation"]


# --------------------------------------------------------------------------- exercise 1


def _words_regex(text):  # a CJK character is a word when it is a letter or digit (not ・)
    return re.findall(f"[^\\W_{CJK}]+|[^\\W_]", text)


def _content(pieces):
    return sum(any(ch.isalnum() for ch in p) for sent in pieces for p in sent)


def _fertility_regex(texts, pieces):
    return _content(pieces) / sum(len(_words_regex(t)) for t in texts)


def _fertility_loop(texts, pieces):
    n_words = 0
    for text in texts:
        inside = False
        for ch in text:
            if ch.isalnum() and CJK_RE.match(ch):
                n_words += 1
                inside = False
            elif ch.isalnum():
                n_words += not inside
                inside = True
            else:
                inside = False
    return float(np.float64(_content(pieces)) / n_words)


def test_ex1_reference_and_variants_pass():
    run_test_cell(
        NB, "ex1_fertility_tests", fertility=solution_namespace(NB, "ex1_fertility")["fertility"]
    )
    for variant in (tokenization.fertility, _fertility_regex, _fertility_loop):
        run_test_cell(NB, "ex1_fertility_tests", fertility=variant)


def _split_words(texts, pieces):  # words at whitespace
    return _content(pieces) / sum(len(t.split()) for t in texts)


def _mean_of_ratios(texts, pieces):
    return float(
        np.mean([_content([p]) / len(_words_regex(t)) for t, p in zip(texts, pieces, strict=True)])
    )


def _all_pieces(texts, pieces):
    return sum(len(p) for p in pieces) / sum(len(_words_regex(t)) for t in texts)


def _no_cjk_rule(texts, pieces):
    return _content(pieces) / sum(len(re.findall(r"[^\W_]+", t)) for t in texts)


def _underscore_word(texts, pieces):
    words = sum(len(re.findall(f"[{CJK}]|[^\\W{CJK}]+", t)) for t in texts)
    return _content(pieces) / words


def _chars_as_words(texts, pieces):
    return _content(pieces) / sum(sum(ch.isalnum() for ch in t) for t in texts)


def _inverted(texts, pieces):
    return 1 / _fertility_regex(texts, pieces)


def _cjk_deleted(texts, pieces):  # CJK removed before finding runs: GTK库Qt becomes one word
    n = sum(len(CJK_RE.findall(t)) + len(re.findall(r"[^\W_]+", CJK_RE.sub("", t))) for t in texts)
    return _content(pieces) / n


def _cjk_punctuation_words(texts, pieces):  # ・ and ゠ match CJK but are no letters
    return _content(pieces) / sum(len(re.findall(f"[{CJK}]|[^\\W_{CJK}]+", t)) for t in texts)


def _letters_only(texts, pieces):  # pieces holding only digits are not counted
    n = sum(any(ch.isalpha() for ch in p) for sent in pieces for p in sent)
    return n / sum(len(_words_regex(t)) for t in texts)


@pytest.mark.parametrize(
    "wrong",
    [_split_words, _mean_of_ratios, _all_pieces, _no_cjk_rule, _underscore_word, _chars_as_words,
     _inverted, _letters_only, _cjk_deleted, _cjk_punctuation_words],
)  # fmt: skip
def test_ex1_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex1_fertility_tests", fertility=wrong)


def test_ex1_stub_gets_friendly_message():
    def stub(texts, pieces):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex1_fertility_tests", fertility=stub)


# --------------------------------------------------------------------------- exercise 2


def _overlap_numpy(a, b):
    union = np.union1d(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
    inter = np.intersect1d(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
    return len(inter) / len(union) if len(union) else 0.0


def _overlap_scipy(a, b):
    from scipy.spatial.distance import jaccard

    types = sorted(set(a) | set(b))
    if not types:
        return 0.0
    u = np.array([t in set(a) for t in types])
    v = np.array([t in set(b) for t in types])
    return 1.0 - jaccard(u, v)


def test_ex2_reference_and_variants_pass():
    ref = solution_namespace(NB, "ex2_overlap")["type_overlap"]
    for variant in (ref, tokenization.type_overlap, _overlap_numpy, _overlap_scipy):
        run_test_cell(NB, "ex2_overlap_tests", type_overlap=variant)


def _multiset(a, b):
    ca, cb = Counter(a), Counter(b)
    union = sum((ca | cb).values())
    return sum((ca & cb).values()) / union if union else 0.0


def _shared_tokens(a, b):
    sa, sb = set(a), set(b)
    n = len(a) + len(b)
    return (sum(p in sb for p in a) + sum(p in sa for p in b)) / n if n else 0.0


def _containment(a, b):
    sa = set(a)
    return len(sa & set(b)) / len(sa) if sa else 0.0


def _dice(a, b):
    sa, sb = set(a), set(b)
    return 2 * len(sa & sb) / (len(sa) + len(sb)) if sa or sb else 0.0


def _no_subtraction(a, b):
    sa, sb = set(a), set(b)
    return len(sa & sb) / (len(sa) + len(sb)) if sa or sb else 0.0


def _strip_marker(a, b):
    return tokenization.type_overlap([p.lstrip("▁") for p in a], [p.lstrip("▁") for p in b])


def _lowercase(a, b):
    return tokenization.type_overlap([p.lower() for p in a], [p.lower() for p in b])


def _count(a, b):
    return float(len(set(a) & set(b)))


@pytest.mark.parametrize(
    "wrong",
    [
        _multiset,
        _shared_tokens,
        _containment,
        _dice,
        _no_subtraction,
        _strip_marker,
        _lowercase,
        _count,
    ],
)
def test_ex2_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex2_overlap_tests", type_overlap=wrong)


# --------------------------------------------------------------------------- exercise 3

_CATS = ("digit", "punctuation", "latin", "cyrillic", "han", "kana", "other")
_SCRIPT_PREFIX = (("LATIN", "latin"), ("CYRILLIC", "cyrillic"), ("CJK", "han"),
                  ("HIRAGANA", "kana"), ("KATAKANA", "kana"))  # fmt: skip


def _category(
    piece,
    *,
    strip=("▁", "##"),
    digits_first=True,
    lstrip=False,
    numeric=False,
    first_char=False,
    name_test="first-word",
    digit=str.isdigit,
    two_markers=False,
):
    body = piece
    for marker in strip:
        if body.startswith(marker):
            body = body[len(marker) :]
            break
    if lstrip:  # strips every leading ▁ and #, not one marker
        body = piece.lstrip("▁#")
    if two_markers:  # strips ## and then ▁: "##▁" becomes empty
        body = piece.removeprefix("##").removeprefix("▁")
    if not body:
        return None
    has_digit = any(ch.isnumeric() if numeric else digit(ch) for ch in body)
    letters = [ch for ch in body if ch.isalpha()]
    if first_char and letters:  # the script of the first character, even if it is no letter
        letters = [body[0]]
    if digits_first and has_digit:
        return "digit"
    if not letters:
        return "digit" if has_digit else "punctuation"
    name = unicodedata.name(letters[0], "")
    test = {
        "first-word": lambda prefix: name.startswith(prefix + " "),
        "prefix": name.startswith,  # KATAKANA-HIRAGANA PROLONGED SOUND MARK (ー) becomes kana
        "contains": lambda prefix: prefix in name,  # so does HALFWIDTH KATAKANA LETTER A (ｱ)
    }[name_test]
    return next((cat for prefix, cat in _SCRIPT_PREFIX if test(prefix)), "other")


def _anchors(a, b, *, key="min", types=True, union=False, all_keys=True, **category_kw):
    ca, cb = Counter(a), Counter(b)
    shared = (ca.keys() | cb.keys()) if union else (ca.keys() & cb.keys())
    items = list(shared) if types else [p for p in a if p in shared]
    out = {c: [] for c in _CATS}
    for piece in items:
        cat = _category(piece, **category_kw)
        if cat is not None:
            out[cat].append(piece)
    score = {
        "min": lambda p: min(ca[p], cb[p]),
        "sum": lambda p: ca[p] + cb[p],
        "a": lambda p: ca[p],
    }[key]
    for cat in out:
        out[cat].sort(key=lambda p: (-score(p), p))
    return out if all_keys else {c: v for c, v in out.items() if v}


def _anchors_sorted_set(a, b):
    """A correct variant: sorted() over a set, one stable sort per key."""
    ca, cb = Counter(a), Counter(b)
    out = {c: [] for c in _CATS}
    for piece in sorted(set(a) & set(b)):
        cat = _category(piece)
        if cat:
            out[cat].append(piece)
    return {c: sorted(v, key=lambda p: min(ca[p], cb[p]), reverse=True) for c, v in out.items()}


def _anchors_isdecimal(a, b):
    """Finds digits with str.isdecimal, so ² and ① are no digits."""
    return _anchors(a, b, digit=str.isdecimal)


def _anchors_regex_digit(a, b):
    r"""Finds digits with re's \d, so ² and ① are no digits."""
    return _anchors(a, b, digit=lambda ch: re.match(r"\d", ch) is not None)


def _anchors_two_markers(a, b):
    """Removes ## and then ▁, two markers: '##▁' becomes empty and is dropped."""
    return _anchors(a, b, two_markers=True)


def test_ex3_reference_and_variants_pass():
    ref = solution_namespace(NB, "ex3_anchors")["shared_anchors"]
    for variant in (ref, tokenization.shared_anchors, _anchors, _anchors_sorted_set):
        run_test_cell(NB, "ex3_anchors_tests", shared_anchors=variant)


@pytest.mark.parametrize(
    "wrong",
    [
        lambda a, b: _anchors(a, b, strip=()),  # keeps the bare marker as punctuation
        lambda a, b: _anchors(a, b, strip=("▁",)),  # forgets WordPiece's ##
        lambda a, b: _anchors(a, b, types=False),  # tokens, not types
        lambda a, b: _anchors(a, b, key="a"),  # ranks by A's count only
        lambda a, b: _anchors(a, b, key="sum"),  # ranks by the total count
        lambda a, b: _anchors(a, b, digits_first=False),  # v2 counted as Latin
        lambda a, b: _anchors(a, b, all_keys=False),  # drops empty categories
        lambda a, b: _anchors(a, b, union=True),  # pieces of either language
        lambda a, b: _anchors(a, b, lstrip=True),  # piece.lstrip("▁#")
        lambda a, b: _anchors(a, b, numeric=True),  # str.isnumeric: CJK numerals become digits
        lambda a, b: _anchors(a, b, first_char=True),  # script of "(" in "(a"
        lambda a, b: _anchors(a, b, name_test="prefix"),  # name.startswith("KATAKANA")
        lambda a, b: _anchors(a, b, name_test="contains"),  # "KATAKANA" in name
        _anchors_isdecimal,
        _anchors_regex_digit,
        _anchors_two_markers,
    ],
    ids=["marker", "hash-marker", "tokens", "count-a", "count-sum", "letters-first", "keys",
         "union", "lstrip", "isnumeric", "first-char", "name-prefix", "name-contains",
         "isdecimal", "regex-digit", "two-markers"],
)  # fmt: skip
def test_ex3_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex3_anchors_tests", shared_anchors=wrong)


@pytest.mark.parametrize(
    ("kw", "hint"),
    [({"lstrip": True}, "ONE marker"), ({"numeric": True}, "isnumeric"),
     ({"first_char": True}, "first LETTER")],
    ids=["lstrip", "isnumeric", "first-char"],
)  # fmt: skip
def test_ex3_visible_checks_name_the_rule_that_is_broken(kw, hint):

    with pytest.raises(AssertionError, match=hint):
        run_visible_checks(
            NB, "ex3_anchors_tests", shared_anchors=lambda a, b: _anchors(a, b, **kw)
        )


# --------------------------------------------------------------------------- exercise 4


def _formula(config, *, pos=True, norms=True, biases=True, pooler_in_total=True, tied=True,
             heads=False, ffn=None, positions=None, types=None, out_bias=True):  # fmt: skip
    V, H, L = config.vocab_size, config.hidden_size, config.num_hidden_layers
    F = ffn(H) if ffn else config.intermediate_size
    P = positions if positions is not None else config.max_position_embeddings
    Ty = types if types is not None else config.type_vocab_size
    b = 1 if biases else 0
    ln = 2 * H if norms else 0
    emb = (V + ((P + Ty) if pos else 0)) * H + ln
    attn = 4 * (H * H + b * H) * (config.num_attention_heads if heads else 1) + ln
    ff = (H * F + b * F) + (F * H + b * H) + ln
    layers = L * (attn + ff)
    pooler = H * H + b * H
    mlm = (H * H + b * H) + ln + (V if out_bias else 0) + (0 if tied else V * H)
    total = emb + layers + (pooler if pooler_in_total else 0)
    return {"embeddings": emb, "layers": layers, "pooler": pooler, "total": total, "mlm_head": mlm}


def _meta_count(config):
    """A correct variant: build the models on the meta device and group parameters by name."""
    import torch
    from transformers import AutoModel, AutoModelForMaskedLM

    with torch.device("meta"):
        model = AutoModel.from_config(config)
        mlm = AutoModelForMaskedLM.from_config(config)
    groups = Counter()
    for name, p in model.named_parameters():
        groups[
            {"embeddings": "embeddings", "encoder": "layers", "pooler": "pooler"}[
                name.split(".")[0]
            ]
        ] += p.numel()
    total = sum(groups.values())
    mlm_total = sum(p.numel() for p in mlm.parameters())
    return {**groups, "total": total, "mlm_head": mlm_total - (total - groups["pooler"])}


def _accelerate_count(config):
    from accelerate import init_empty_weights
    from transformers import AutoModel

    with init_empty_weights():
        model = AutoModel.from_config(config)
    counts = {"embeddings": 0, "layers": 0, "pooler": 0}
    for name, p in model.named_parameters():
        counts[
            {"embeddings": "embeddings", "encoder": "layers", "pooler": "pooler"}[
                name.split(".")[0]
            ]
        ] += p.numel()
    H, V = config.hidden_size, config.vocab_size
    return {**counts, "total": sum(counts.values()), "mlm_head": np.int64(H * H + 3 * H + V)}


def test_ex4_reference_and_variants_pass():
    ref = solution_namespace(NB, "ex4_params")["count_parameters"]
    for variant in (ref, _formula, _meta_count, _accelerate_count):
        run_test_cell(NB, "ex4_params_tests", count_parameters=variant)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pos": False},  # forgets position and token-type embeddings
        {"norms": False},  # forgets the LayerNorms
        {"biases": False},  # forgets the biases
        {"pooler_in_total": False},  # leaves the pooler out of the total
        {"tied": False},  # counts the tied decoder matrix again
        {"heads": True},  # multiplies the attention projections by the number of heads
        {"ffn": lambda H: 4 * H},  # assumes intermediate = 4 H
        {"positions": 512},  # assumes BERT's 512 positions (XLM-R has 514)
        {"types": 2},  # assumes two token types (XLM-R has one)
        {"out_bias": False},  # forgets the decoder's own bias
    ],
    ids=["no-pos-type", "no-layernorm", "no-bias", "no-pooler", "untied", "heads", "ffn-4h",
         "pos-512", "types-2", "no-out-bias"],
)  # fmt: skip
def test_ex4_plausible_mistakes_fail(kwargs):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex4_params_tests", count_parameters=lambda c: _formula(c, **kwargs))
