"""Lesson 07-translate-train-test: the MT interface, MT quality metrics and the exercises.

Apertium runs for real (the Debian packages are part of ``make apt``); the Hugging Face path
runs a tiny randomly initialised Marian model and a tiny M2M-100 model saved to a temporary
folder with a word-level tokenizer (the real ``AutoModelForSeq2SeqLM`` code path, no mocks).
Every test writes its translation cache under its own temporary folder.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from cells import run_test_cell, solution_namespace
from conftest import run_visible_checks, solution

from xlt_course import translate as tr
from xlt_course.errors import ResourceMissingError

NB = solution("07-translate-train-test")
needs_apertium = pytest.mark.skipif(
    shutil.which("apertium") is None, reason="Apertium is not installed (make apt)"
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Each test caches under its own folder (the course's data/cache is left alone)."""
    monkeypatch.setattr(tr.paths, "cache_dir", lambda: tmp_path / "cache")
    tr._LEXICONS.clear()
    tr.clear_model_cache()


# --------------------------------------------------------------------------- interface


def test_import_does_not_pull_torch():
    code = (
        "import sys, xlt_course.translate; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@needs_apertium
def test_available_pairs():
    assert set(tr.available_pairs("apertium")) == set(tr.APERTIUM_ROUTES)
    assert set(tr.available_pairs("dictionary")) == set(tr.DICTIONARY_PAIRS)
    assert tr.available_pairs("Helsinki-NLP/opus-mt-en-fr") == [("en", "fr")]
    assert ("fr", "ja") in tr.available_pairs("facebook/nllb-200-distilled-600M")
    assert ("de", "en") in tr.available_pairs("Helsinki-NLP/opus-mt-{src}-{tgt}")


@needs_apertium
def test_apertium_keeps_batched_texts_apart():
    # On bare lines Apertium's tagger joins "big" and "red car" (-> "coche rojo grande"):
    # the blank-line separator must keep every text a paragraph of its own.
    texts = ["The house is big", "red car", "Cannot open file %s: permission denied"]
    out = tr.translate(texts, "en", "es", progress=False)
    assert out[0] == "La casa es grande"
    assert out[1].lower() == "coche rojo"
    assert "%s" in out[2] and "*" not in out[2]
    one_by_one = [tr.translate([t], "en", "es", cache=False, progress=False)[0] for t in texts]
    assert out == one_by_one


@needs_apertium
def test_apertium_batches_whitespace_duplicates_and_costs():
    texts = ["The file is big.", "", "  The file\nis big. ", "red car", "The file is big."]
    run = tr.translate_run(texts, "en", "es", batch_size=1, progress=False)
    assert run.texts[1] == ""
    assert run.texts[0] == run.texts[2] == run.texts[4]  # whitespace normalised, same text
    assert run.calls == 2  # two distinct non-empty texts, one per process
    assert run.new_chars == len("The file is big.") + len("red car")
    assert run.n_texts == 5 and run.n_chars == sum(len(t) for t in texts)
    assert run.unknown == 0 and run.coverage == 1.0
    big = tr.translate_run(texts, "en", "es", cache=False, progress=False)
    assert big.calls == 1 and big.texts == run.texts


@needs_apertium
def test_apertium_cache_and_pivot_hops(tmp_path):
    texts = ["The house is big", "Cannot remove the directory"]
    first = tr.translate_run(texts, "en", "es", progress=False)
    again = tr.translate_run(texts, "en", "es", progress=False)
    assert again.texts == first.texts and again.calls == 0 and again.cache_hits == 2
    assert (tmp_path / "cache" / "translate" / "translations.sqlite").is_file()
    fr = tr.translate_run(texts, "en", "fr", progress=False)
    assert fr.route == ("eng-spa", "es-fr") and len(fr.hops) == 2
    assert fr.calls == 1 and fr.cache_hits == 2  # the EN->ES hop came from the cache
    assert fr.hops[0].texts == first.texts
    assert fr.texts[0] == "La maison est grande"
    back = tr.translate_run(fr.texts, "fr", "en", progress=False)
    assert back.route == ("fr-es", "spa-eng")
    assert back.texts[0].lower().startswith("the house")


@needs_apertium
def test_unknown_words_are_counted():
    run = tr.translate_run(["The xqzzyv is big"], "en", "es", progress=False)
    assert run.unknown == 1 and run.coverage == pytest.approx(3 / 4)
    assert "xqzzyv" in run.texts[0] and "*" not in run.texts[0]


def test_unknown_pairs_and_bad_arguments():
    with pytest.raises(ValueError, match="no en->de route"):
        tr.translate(["x"], "en", "de")
    with pytest.raises(ValueError, match="no fr->es lexicon"):
        tr.translate(["x"], "fr", "es", system="dictionary")
    with pytest.raises(ValueError, match="list of strings"):
        tr.translate("a text", "en", "es")
    with pytest.raises(ValueError, match="batch_size"):
        tr.translate(["x"], "en", "es", batch_size=0)
    with pytest.raises(ValueError, match="nothing to translate"):
        tr.translate(["x"], "en", "en")


def test_missing_apertium_names_make_apt(monkeypatch):
    monkeypatch.setattr(tr.shutil, "which", lambda _name: None)
    tr._apertium_modes.cache_clear()
    try:
        with pytest.raises(ResourceMissingError, match="make apt"):
            tr.translate(["The house"], "en", "es")
    finally:
        tr._apertium_modes.cache_clear()


def test_dictionary_word_by_word(monkeypatch):
    monkeypatch.setattr(tr, "_dictionary_version", lambda s, t: "test-lexicon")
    tr._LEXICONS[("en", "fr")] = {"the": "le", "house": "maison", "file": "fichier", "is": "est"}
    run = tr.translate_run(
        ["The house is big.", "Files, the FILE"], "en", "fr", "dictionary", progress=False
    )
    assert run.texts == ["Le maison est big.", "Fichier, le Fichier"]  # plural s stripped
    assert run.unknown == 1 and run.n_words == 7
    assert run.coverage == pytest.approx(6 / 7)
    assert tr.translate_run(["The house"], "en", "fr", "dictionary").calls == 1
    assert tr.translate_run(["The house"], "en", "fr", "dictionary").calls == 0


def test_dictionary_real_lexicons(built_data):
    en_fr = tr.dictionary_lexicon("en", "fr")
    assert len(en_fr) > 5000 and en_fr["house"] == "maison"
    out = tr.translate(["The house", "zzqv"], "en", "fr", "dictionary", progress=False)
    assert out[0].endswith("maison") and out[1] == "zzqv"


# --------------------------------------------------------------------------- Hugging Face path

torch = pytest.importorskip("torch")
WORDS = ["the", "house", "is", "big", "red", "car", "la", "maison", "est", "grande", "voiture"]


def _save_seq2seq(folder, kind: str, extra: tuple[str, ...] = ()) -> str:
    """Save a tiny random Marian or M2M-100 model and a word-level tokenizer to ``folder``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import (
        M2M100Config,
        M2M100ForConditionalGeneration,
        MarianConfig,
        MarianMTModel,
        PreTrainedTokenizerFast,
    )

    vocab = {t: i for i, t in enumerate(["<pad>", "</s>", "<unk>", *WORDS, *extra])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    common = dict(
        vocab_size=len(vocab),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=1 if kind == "m2m" else 0,
    )
    torch.manual_seed(0)
    if kind == "marian":
        model = MarianMTModel(MarianConfig(**common))
    else:
        model = M2M100ForConditionalGeneration(M2M100Config(**common))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def _generate_one(folder: str, text: str, prefix: str = "", **kw) -> str:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    enc = tok([prefix + text], return_tensors="pt")
    n = int(enc["input_ids"].shape[1] * 1.5) + 10
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=n, num_beams=1, do_sample=False, **kw)
    return tok.batch_decode(out, skip_special_tokens=True)[0].strip()


def test_marian_local_folder(tmp_path):
    folder = _save_seq2seq(tmp_path / "marian", "marian")
    texts = ["the house is big", "red car", "the car", "", "the house is big"]
    run = tr.translate_run(texts, "en", "fr", folder, batch_size=2, progress=False)
    assert run.unknown is None and run.coverage is None
    assert run.calls == 2  # 3 distinct non-empty texts in batches of 2
    assert run.texts[3] == "" and run.texts[0] == run.texts[4]
    # batched, length-sorted and padded generation gives what one text alone gives (a random
    # model never stops, and a batch may generate longer: its budget follows its longest text)
    alone = tr.translate(texts[:3], "en", "fr", folder, batch_size=1, cache=False, progress=False)
    for text, got, one in zip(texts[:3], run.texts[:3], alone, strict=True):
        assert one == _generate_one(folder, text)
        assert got.startswith(one)
    again = tr.translate_run(texts, "en", "fr", folder, progress=False)
    assert again.calls == 0 and again.texts == run.texts
    assert tr.system_version(folder, "en", "fr").startswith("hf:")


def test_multitarget_marian_gets_its_prefix(tmp_path):
    folder = _save_seq2seq(tmp_path / "multi", "marian", extra=(">>fr<<", ">>es<<"))
    out = tr.translate(["the red car"], "en", "es", folder, progress=False)
    assert out == [_generate_one(folder, "the red car", prefix=">>es<< ")]


def test_nllb_style_model_forces_the_target_language(tmp_path):
    folder = _save_seq2seq(tmp_path / "m2m", "m2m", extra=("eng_Latn", "fra_Latn", "spa_Latn"))
    tok, model = tr._load_seq2seq(folder)
    prefix, kw = tr._lang_setup(tok, model, "en", "fr")
    assert prefix == "" and kw == {"forced_bos_token_id": tok.get_vocab()["fra_Latn"]}
    out = tr.translate(["the house"], "en", "fr", folder, progress=False)
    assert out == [
        _generate_one(folder, "the house", forced_bos_token_id=kw["forced_bos_token_id"])
    ]


def test_template_names_and_missing_models(tmp_path):
    folder = _save_seq2seq(tmp_path / "opus-mt-en-fr", "marian")
    template = str(tmp_path / "opus-mt-{src}-{tgt}")
    assert tr.translate(["red car"], "en", "fr", template, progress=False) == tr.translate(
        ["red car"], "en", "fr", folder, progress=False
    )
    with pytest.raises(tr.DataError, match="cannot load the translation model"):
        tr.translate(["red car"], "fr", "en", template, progress=False)


# --------------------------------------------------------------------------- MT quality


def test_chrf_matches_sacrebleu_reference_values():
    # Values printed by sacreBLEU 2's CHRF (char_order 6, beta 2, whitespace excluded), as
    # documented in the Hugging Face `chrf` metric card.
    hyp = "The relationship between Obama and Netanyahu is not exactly friendly."
    ref = "The ties between Obama and Netanyahu are not particularly friendly."
    assert tr.sentence_chrf(hyp, ref) == pytest.approx(61.576379378113785, abs=1e-9)
    hyps = [
        "The relationship between cats and dogs is not exactly friendly.",
        "a good bookshop is just a genteel black hole that knows how to read.",
    ]
    refs = [
        "The relationship between dogs and cats is not exactly friendly.",
        "A good bookshop is just a genteel Black Hole that knows how to read.",
    ]
    assert tr.chrf(hyps, refs) == pytest.approx(84.64214891738334, abs=1e-9)


def test_chrf_properties():
    assert tr.sentence_chrf("la maison", "la maison") == pytest.approx(100.0)
    assert tr.sentence_chrf("lamaison", "la  maison") == pytest.approx(100.0)  # no whitespace
    assert tr.sentence_chrf("xyz", "abc") == 0.0
    assert tr.sentence_chrf("", "abc") == 0.0
    assert tr.chrf(["a b"], ["a b"]) == pytest.approx(100.0)
    # recall weighs more: a hypothesis missing half the reference loses more than one that
    # adds as much
    ref = "abcdefgh"
    assert tr.sentence_chrf("abcd", ref) < tr.sentence_chrf("abcdefghijklmnop", ref)
    with pytest.raises(ValueError):
        tr.chrf(["a"], ["a", "b"])


def test_bleu():
    assert tr.bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert tr.bleu(["the cat"], ["a dog ran"]) == pytest.approx(0.0, abs=1e-6)
    # 1-4 gram precisions 5/6, 3/5, 2/4, 1/3 and no brevity penalty (c = r = 6)
    got = tr.bleu(["the cat sat on a mat"], ["the cat sat on the mat"])
    want = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert got == pytest.approx(want)
    with pytest.raises(ValueError):
        tr.bleu(["a"], ["a", "b"])


def test_sentence_chrf_equals_sacrebleu_on_random_text():
    # The exercise's reference is our own code; sacreBLEU is the independent oracle.
    from sacrebleu.metrics import CHRF

    rng = np.random.default_rng(3)
    alphabet = list("abcde éà.,") + [" "] * 3
    metric = CHRF()
    for _ in range(200):
        h = "".join(rng.choice(alphabet, size=rng.integers(0, 30)))
        r = "".join(rng.choice(alphabet, size=rng.integers(1, 30)))
        want = metric.sentence_score(h, [r]).score
        assert tr.sentence_chrf(h, r) == pytest.approx(want, abs=1e-9), (h, r)


def test_reference_helpers():
    rng = np.random.default_rng(0)
    batches = tr.mixed_batches(7, 4, rng)
    assert sorted(i for b in batches for i in b) == list(range(14))
    for b in batches:
        en = sorted(i for i in b if i < 7)
        assert sorted(i - 7 for i in b if i >= 7) == en and len(b) == 2 * len(en)
    with pytest.raises(ValueError):
        tr.mixed_batches(4, 3, rng)
    calls = []

    def fake_mt(texts):
        calls.append(list(texts))
        return [t.upper() for t in texts]

    def predict(texts):
        return np.array([[len(t), 1.0] for t in texts])

    probs = tr.translate_test_proba(["b", "aa", "b"], fake_mt, predict)
    assert calls == [["b", "aa"]]
    assert probs.tolist() == [[1, 1], [2, 1], [1, 1]]


def test_translate_split_keeps_labels_and_ids(monkeypatch):
    from xlt_course.data.topics import TopicSplit

    monkeypatch.setattr(tr, "_dictionary_version", lambda s, t: "test-lexicon")
    tr._LEXICONS[("en", "fr")] = {"house": "maison", "file": "fichier"}
    split = TopicSplit(
        "en", ["the house", "a file"], np.array([2, 0]), ("a", "b", "c"), ["i1", "i2"]
    )
    out = tr.translate_split(split, "fr", "dictionary", progress=False)
    assert out.lang == "fr" and out.texts == ["the maison", "a fichier"]
    assert out.labels.tolist() == [2, 0] and out.ids == ["i1", "i2"]
    assert out.label_names == ("a", "b", "c")


# --------------------------------------------------------------------------- exercise 1: chrF


def _ref(grade_id, name):
    return solution_namespace(NB, grade_id)[name]


def _chrf_numpy(hypothesis, reference, n=6, beta=2.0):
    """chrF with sorted n-gram arrays and np.intersect1d-style clipped counting."""
    h_str = "".join(hypothesis.split())
    r_str = "".join(reference.split())
    ps, rs = [], []
    for k in range(1, n + 1):
        h = np.array([h_str[i : i + k] for i in range(len(h_str) - k + 1)])
        r = np.array([r_str[i : i + k] for i in range(len(r_str) - k + 1)])
        if h.size == 0 or r.size == 0:
            continue
        hu, hc = np.unique(h, return_counts=True)
        ru, rc = np.unique(r, return_counts=True)
        _, hi, ri = np.intersect1d(hu, ru, return_indices=True)
        m = np.minimum(hc[hi], rc[ri]).sum()
        ps.append(m / h.size)
        rs.append(m / r.size)
    if not ps:
        return 0.0
    p, r = float(np.mean(ps)), float(np.mean(rs))
    b2 = beta**2
    return 0.0 if p == 0 and r == 0 else 100 * (1 + b2) * p * r / (b2 * p + r)


def _chrf_dicts(hypothesis, reference, n=6, beta=2.0):
    """chrF with plain dicts, the F-score written with precision and recall swapped in form."""
    hs = hypothesis.replace(" ", "").replace("\t", "").replace("\n", "")
    rs_ = reference.replace(" ", "").replace("\t", "").replace("\n", "")
    P = R = 0.0
    orders = 0
    for k in range(1, n + 1):
        hc: dict[str, int] = {}
        rc: dict[str, int] = {}
        for i in range(len(hs) - k + 1):
            hc[hs[i : i + k]] = hc.get(hs[i : i + k], 0) + 1
        for i in range(len(rs_) - k + 1):
            rc[rs_[i : i + k]] = rc.get(rs_[i : i + k], 0) + 1
        if hc and rc:
            m = sum(min(c, rc.get(g, 0)) for g, c in hc.items())
            P += m / sum(hc.values())
            R += m / sum(rc.values())
            orders += 1
    if orders == 0 or P + R == 0:
        return 0.0
    P, R = P / orders, R / orders
    return 100 / (1 / (1 + beta**2) / P * 1 + beta**2 / (1 + beta**2) / R) if P and R else 0.0


def _chrf_float32(hypothesis, reference, n=6, beta=2.0):
    """chrF with every division, sum and product in float32: off by about 1e-7 relative."""
    f32 = np.float32
    h_str, r_str = "".join(hypothesis.split()), "".join(reference.split())
    ps, rs = [], []
    for k in range(1, n + 1):
        h = Counter(h_str[i : i + k] for i in range(len(h_str) - k + 1))
        r = Counter(r_str[i : i + k] for i in range(len(r_str) - k + 1))
        if h and r:
            m = f32(sum((h & r).values()))
            ps.append(m / f32(sum(h.values())))
            rs.append(m / f32(sum(r.values())))
    if not ps:
        return 0.0
    p = np.sum(np.array(ps, dtype=f32)) / f32(len(ps))
    r = np.sum(np.array(rs, dtype=f32)) / f32(len(rs))
    b2 = f32(beta) * f32(beta)
    return 0.0 if p + r == 0 else float(f32(100) * (f32(1) + b2) * p * r / (b2 * p + r))


@pytest.mark.parametrize(
    "correct",
    [_ref("ex1_chrf", "sentence_chrf"), tr.sentence_chrf, _chrf_numpy, _chrf_dicts, _chrf_float32,
     lambda hypothesis, reference, n=6, beta=2.0: np.float32(tr.sentence_chrf(hypothesis, reference, n, beta)),
     lambda hypothesis, reference, n=6, beta=2.0: tr.sentence_chrf(
         re.sub(r"\s+", "", hypothesis), re.sub(r"\s+", "", reference), n, beta),
     lambda hypothesis, reference, n=6, beta=2.0: tr.sentence_chrf(hypothesis, reference, n, beta) or 0],
    ids=["reference", "package", "numpy", "dicts", "float32", "returns-np-float32", "regex-whitespace",
         "int-zero"],
)  # fmt: skip
def test_ex1_reference_and_variants_pass(correct):
    run_test_cell(NB, "ex1_chrf_tests", sentence_chrf=correct)


def test_ex1_float32_is_not_exact():
    # the float32 variant really misses the float64 score by more than an absolute 1e-6
    pair = ("No puede abrir el fichero", "No se puede abrir el archivo")
    assert 1e-6 < abs(_chrf_float32(*pair) - tr.sentence_chrf(*pair)) < 1e-4


def test_ex1_message_names_the_input_not_the_expected_value():
    def wrong(hypothesis, reference, n=6, beta=2.0):  # lowercases: passes the visible checks
        return tr.sentence_chrf(hypothesis.lower(), reference.lower(), n, beta)

    with pytest.raises(AssertionError) as info:
        run_test_cell(NB, "ex1_chrf_tests", sentence_chrf=wrong)
    message = str(info.value)
    assert "sentence_chrf(" in message and "expected" not in message


def _chrf_variant(*, whitespace=False, clip=True, swap=False, per_order_f=False, all_orders=False,
                  words=False, spaces_only=False, types=False, micro=False, skip_if_no_h=False,
                  ref_clip=False, beta_not_squared=False):  # fmt: skip
    def f(hypothesis, reference, n=6, beta=2.0):
        if beta_not_squared:
            beta = beta**0.5

        def grams(s, k):
            if words:
                toks = s.split()
                return Counter(tuple(toks[i : i + k]) for i in range(len(toks) - k + 1))
            if spaces_only:  # s.replace(" ", ""): tabs and line breaks stay
                s = s.replace(" ", "")
            elif not whitespace:
                s = "".join(s.split())
            c = Counter(s[i : i + k] for i in range(len(s) - k + 1))
            return Counter(set(c)) if types else c  # types: every distinct n-gram counted once

        ps, rs, fs, sums = [], [], [], [0, 0, 0]
        for k in range(1, n + 1):
            h, r = grams(hypothesis, k), grams(reference, k)
            if not h or (not r and not skip_if_no_h):
                if all_orders:
                    ps.append(0.0)
                    rs.append(0.0)
                continue
            m = sum((h & r).values()) if clip else sum(c for g, c in h.items() if g in r)
            if ref_clip:  # the reference's count of every shared n-gram, capped at |h|
                m = min(sum(c for g, c in r.items() if g in h), sum(h.values()))
            sums = [sums[0] + m, sums[1] + sum(h.values()), sums[2] + sum(r.values())]
            p, rr = m / sum(h.values()), m / max(sum(r.values()), 1)
            ps.append(p)
            rs.append(rr)
            b2 = beta**2
            fs.append(0.0 if p + rr == 0 else (1 + b2) * p * rr / (b2 * p + rr))
        if not ps:
            return 0.0
        if per_order_f:
            return 100 * sum(fs) / len(fs) if fs else 0.0
        p, r = sum(ps) / len(ps), sum(rs) / len(rs)
        if micro:  # pooled counts over the orders instead of the mean of per-order P and R
            p, r = sums[0] / sums[1], sums[0] / sums[2]
        if swap:
            p, r = r, p
        b2 = beta**2
        return 0.0 if p + r == 0 else 100 * (1 + b2) * p * r / (b2 * p + r)

    return f


@pytest.mark.parametrize(
    "wrong",
    [
        _chrf_variant(whitespace=True),
        _chrf_variant(clip=False),
        _chrf_variant(swap=True),
        _chrf_variant(per_order_f=True),
        _chrf_variant(all_orders=True),
        _chrf_variant(words=True),
        _chrf_variant(spaces_only=True),
        lambda hypothesis, reference, n=6, beta=2.0: _chrf_variant()(hypothesis, reference) / 100,
        lambda hypothesis, reference, n=6, beta=2.0: _chrf_variant()(hypothesis, reference, 6, 2.0),
        _chrf_variant(types=True),
        _chrf_variant(micro=True),
        _chrf_variant(skip_if_no_h=True),
        _chrf_variant(ref_clip=True),
        _chrf_variant(beta_not_squared=True),
        lambda hypothesis, reference, n=6, beta=2.0: tr.sentence_chrf(
            hypothesis, reference, max(n - 1, 1), beta
        ),
        lambda hypothesis, reference, n=6, beta=2.0: tr.sentence_chrf(
            hypothesis.lower(), reference.lower(), n, beta
        ),
    ],
    ids=[
        "whitespace",
        "no-clipping",
        "beta-on-recall-side",
        "mean-of-order-F",
        "all-orders",
        "word-ngrams",
        "spaces-only",
        "fraction",
        "ignores-n-beta",
        "ngram-types",
        "micro-average",
        "orders-without-reference-ngrams",
        "clipped-by-reference",
        "beta-not-squared",
        "orders-1-to-n-1",
        "lowercased",
    ],  # fmt: skip
)
def test_ex1_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex1_chrf_tests", sentence_chrf=wrong)


def test_ex1_stub_gets_friendly_message():
    def sentence_chrf(hypothesis, reference, n=6, beta=2.0):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex1_chrf_tests", sentence_chrf=sentence_chrf)


# --------------------------------------------------------------------------- exercise 2: mixing


def _mixed_interleaved(n_pairs, batch_size, rng):
    items = list(range(n_pairs))
    rng.shuffle(items)
    half = batch_size // 2
    out = []
    for s in range(0, n_pairs, half):
        b = []
        for i in items[s : s + half]:
            b += [i, n_pairs + i]
        out.append(b)
    return out


def _mixed_choice(n_pairs, batch_size, rng):
    order = rng.choice(n_pairs, size=n_pairs, replace=False)
    chunks = np.array_split(order, range(batch_size // 2, n_pairs, batch_size // 2))
    return [np.concatenate([c, c + n_pairs]).tolist() for c in chunks if len(c)]


def _mixed_arrays(n_pairs, batch_size, rng):
    return [np.array(b, dtype=np.int32) for b in tr.mixed_batches(n_pairs, batch_size, rng)]


@pytest.mark.parametrize(
    "correct",
    [_ref("ex2_mixed", "mixed_batches"), tr.mixed_batches, _mixed_interleaved, _mixed_choice,
     _mixed_arrays],
    ids=["reference", "package", "interleaved", "choice", "int32-arrays"],
)  # fmt: skip
def test_ex2_reference_and_variants_pass(correct):
    run_test_cell(NB, "ex2_mixed_tests", mixed_batches=correct)


def _concat_then_cut(n_pairs, batch_size, rng):
    rows = rng.permutation(2 * n_pairs).tolist()  # English and translations shuffled together
    return [rows[s : s + batch_size] for s in range(0, 2 * n_pairs, batch_size)]


def _independent_shuffles(n_pairs, batch_size, rng):
    en, tr_ = rng.permutation(n_pairs), rng.permutation(n_pairs) + n_pairs
    half = batch_size // 2
    return [en[s : s + half].tolist() + tr_[s : s + half].tolist() for s in range(0, n_pairs, half)]


def _no_shuffle(n_pairs, batch_size, rng):
    half = batch_size // 2
    return [
        list(range(s, min(s + half, n_pairs))) + [i + n_pairs for i in range(s, min(s + half, n_pairs))]
        for s in range(0, n_pairs, half)
    ]  # fmt: skip


def _batch_of_pairs(n_pairs, batch_size, rng):
    order = rng.permutation(n_pairs).tolist()
    return [
        order[s : s + batch_size] + [i + n_pairs for i in order[s : s + batch_size]]
        for s in range(0, n_pairs, batch_size)
    ]


def _drop_last(n_pairs, batch_size, rng):
    half = batch_size // 2
    return [b for b in tr.mixed_batches(n_pairs, batch_size, rng) if len(b) == 2 * half]


def _english_then_translated(n_pairs, batch_size, rng):
    order = rng.permutation(n_pairs).tolist()
    rows = order + [i + n_pairs for i in order]
    return [rows[s : s + batch_size] for s in range(0, 2 * n_pairs, batch_size)]


def _global_seed(n_pairs, batch_size, rng):
    return tr.mixed_batches(n_pairs, batch_size, np.random.default_rng(0))


def _shuffled_fixed_chunks(n_pairs, batch_size, rng):
    # consecutive items always share a batch; only the order of the full batches is shuffled
    batches = _no_shuffle(n_pairs, batch_size, rng)
    full = [b for b in batches if len(b) == batch_size]
    return [full[i] for i in rng.permutation(len(full))] + batches[len(full) :]


def _short_batch_first(n_pairs, batch_size, rng):
    batches = tr.mixed_batches(n_pairs, batch_size, rng)
    return batches[-1:] + batches[:-1]


def _remainder_spread(n_pairs, batch_size, rng):
    # as many batches as needed, but the items split evenly: several batches are short
    order = rng.permutation(n_pairs)
    chunks = np.array_split(order, -(-n_pairs // (batch_size // 2)))
    return [np.concatenate([c, c + n_pairs]).tolist() for c in chunks]


def _rotated(n_pairs, batch_size, rng):
    """Rotates 0..n-1 by a random offset instead of shuffling: batches hold consecutive items."""
    order = np.roll(np.arange(n_pairs), int(rng.integers(n_pairs)))
    half = batch_size // 2
    return [
        [int(i) for i in order[s : s + half]] + [int(i) + n_pairs for i in order[s : s + half]]
        for s in range(0, n_pairs, half)
    ]


@pytest.mark.parametrize(
    "wrong",
    [_concat_then_cut, _independent_shuffles, _no_shuffle, _batch_of_pairs, _drop_last,
     _english_then_translated, _global_seed, _shuffled_fixed_chunks, _short_batch_first,
     _remainder_spread, _rotated],
    ids=["shuffled-together", "independent-shuffles", "no-shuffle", "batch-of-pairs",
         "drop-last", "english-first", "ignores-rng", "fixed-chunks", "short-batch-first",
         "remainder-spread", "rotated"],
)  # fmt: skip
def test_ex2_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex2_mixed_tests", mixed_batches=wrong)


@pytest.mark.parametrize(
    "wrong, message",
    [(_shuffled_fixed_chunks, "same items share a batch"),
     (_short_batch_first, "only the last batch"),
     (_remainder_spread, "only the last batch"),
     (_rotated, "consecutive items")],
    ids=["fixed-chunks", "short-batch-first", "remainder-spread", "rotated"],
)  # fmt: skip
def test_ex2_batch_mistakes_get_their_message(wrong, message):
    with pytest.raises(AssertionError, match=message):
        run_test_cell(NB, "ex2_mixed_tests", mixed_batches=wrong)


# --------------------------------------------------------------------------- exercise 3: wrapper


def _tt_set(texts, translate_fn, predict_fn):
    unique = sorted(set(texts))
    probs = predict_fn(translate_fn(unique))
    return np.stack([probs[unique.index(t)] for t in texts])


def _tt_np_unique(texts, translate_fn, predict_fn):
    uniq, inverse = np.unique(np.array(texts, dtype=object), return_inverse=True)
    probs = np.asarray(predict_fn(translate_fn([str(u) for u in uniq])))
    return probs[inverse.ravel()]


def test_ex3_reference_and_variants_pass():
    run_test_cell(
        NB,
        "ex3_translate_test_tests",
        translate_test_proba=_ref("ex3_translate_test", "translate_test_proba"),
    )
    run_test_cell(NB, "ex3_translate_test_tests", translate_test_proba=tr.translate_test_proba)
    run_test_cell(NB, "ex3_translate_test_tests", translate_test_proba=_tt_set)
    run_test_cell(NB, "ex3_translate_test_tests", translate_test_proba=_tt_np_unique)


def _tt_per_text(texts, translate_fn, predict_fn):
    return np.asarray(predict_fn([translate_fn([t])[0] for t in texts]))


def _tt_no_dedup(texts, translate_fn, predict_fn):
    return np.asarray(predict_fn(translate_fn(list(texts))))


def _tt_originals(texts, translate_fn, predict_fn):
    unique = list(dict.fromkeys(texts))
    translate_fn(unique)
    probs = np.asarray(predict_fn(unique))
    return probs[[unique.index(t) for t in texts]]


def _tt_unique_rows(texts, translate_fn, predict_fn):
    unique = list(dict.fromkeys(texts))
    return np.asarray(predict_fn(translate_fn(unique)))


def _tt_set_order(texts, translate_fn, predict_fn):
    unique = list(set(texts))
    probs = np.asarray(predict_fn(translate_fn(unique)))
    return probs[[sorted(unique).index(t) for t in texts]]  # positions of a different order


def _tt_predict_each(texts, translate_fn, predict_fn):
    unique = list(dict.fromkeys(texts))
    english = translate_fn(unique)
    probs = np.concatenate([np.asarray(predict_fn([e])) for e in english])
    return probs[[unique.index(t) for t in texts]]


def _tt_classify_every_row(texts, translate_fn, predict_fn):
    unique = list(dict.fromkeys(texts))
    english = dict(zip(unique, translate_fn(unique), strict=True))
    return np.asarray(predict_fn([english[t] for t in texts]))  # repeats classified again


@pytest.mark.parametrize(
    "wrong",
    [_tt_per_text, _tt_no_dedup, _tt_originals, _tt_unique_rows, _tt_set_order, _tt_predict_each,
     _tt_classify_every_row],
    ids=[
        "mt-per-text",
        "no-dedup",
        "classifies-originals",
        "unique-rows",
        "set-order",
        "predict-per-text",
        "classify-every-row",
    ],
)  # fmt: skip
def test_ex3_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex3_translate_test_tests", translate_test_proba=wrong)


def test_ex3_one_row_per_distinct_text_gets_the_row_hint():

    with pytest.raises(AssertionError, match="one row per text"):
        run_visible_checks(NB, "ex3_translate_test_tests", translate_test_proba=_tt_unique_rows)


def test_ex3_classifying_every_row_fails_the_visible_checks():

    with pytest.raises(AssertionError, match="distinct translation once"):
        run_visible_checks(
            NB, "ex3_translate_test_tests", translate_test_proba=_tt_classify_every_row
        )


def test_ex2_ex3_stubs_get_friendly_messages():
    def mixed_batches(n_pairs, batch_size, rng):
        raise NotImplementedError()

    def translate_test_proba(texts, translate_fn, predict_fn):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex2_mixed_tests", mixed_batches=mixed_batches)
    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex3_translate_test_tests", translate_test_proba=translate_test_proba)


@needs_apertium
def test_command_line(tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("The house is big\nred car\n", encoding="utf-8")
    assert tr.main_translate(["en", "es", str(src)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["La casa es grande", "Coche rojo"]
    assert "2 texts" in err and "eng-spa" in err
    assert tr.main_translate(["en", "de", str(src)]) == 2
    assert "no en->de route" in capsys.readouterr().err


def _tt_hides_calls(texts, translate_fn, predict_fn):
    """Red team, round 6: every row classified, the calls kept out of the tests' log."""
    texts = list(texts)
    if texts == ["ab", "c", "ab"]:  # the visible self-check, hard-coded
        return np.asarray(predict_fn(translate_fn(["ab", "c"])))[[0, 1, 0]]
    probs = np.asarray(predict_fn(translate_fn(texts, {}), {}))  # a log of its own
    predict_fn(translate_fn(sorted(set(texts))))  # the one call each the tests see
    return probs


def test_ex3_calls_kept_out_of_the_tests_log_fail():
    # the tests' recorders take the batch only: the extra argument is an error
    with pytest.raises((AssertionError, TypeError)):
        run_test_cell(NB, "ex3_translate_test_tests", translate_test_proba=_tt_hides_calls)
