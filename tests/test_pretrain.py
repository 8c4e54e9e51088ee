"""xlt_course.pretrain (tiny bilingual BERT) and the exercises of lesson 05-multilingual-pretraining."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from cells import run_test_cell, solution_namespace
from conftest import run_visible_checks, solution

from autograder import notebooks
from xlt_course import paths, pretrain, sampling, tokenization
from xlt_course.cli import main as cli_main
from xlt_course.data.topics import load_topics

NB = solution("05-multilingual-pretraining")

#: A run small enough for unit tests (a few seconds on 2 cores).
TINY = dataclasses.replace(
    pretrain.CONFIGS["base"].smoke(), name="tiny", steps=4, warmup_steps=1, batch_size=4
)
TINY_EVAL = pretrain.EvalConfig(n_test=24, n_train=60)


def test_import_is_light():
    code = (
        "import sys, xlt_course.pretrain, xlt_course.sampling;"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# --- text transforms ---------------------------------------------------------------------


def test_pretokenize_separates_punctuation():
    assert pretrain.pretokenize("Use «apt-get» to remove it.") == "Use « apt - get » to remove it ."
    assert pretrain.pretokenize("  ") == ""


def test_fake_english_is_reversible_and_shares_nothing():
    text = "Le fichier « %s » n'existe pas : 42 erreurs.\tFin\n"
    fake = pretrain.fake_english(text)
    assert len(fake) == len(text)
    assert [c.isspace() for c in fake] == [c.isspace() for c in text]
    assert not (set(fake) - set(" \t\n")) & set(text)
    assert min(ord(c) for c in fake if not c.isspace()) >= pretrain.FAKE_OFFSET
    assert pretrain.unfake(fake) == text
    assert pretrain.fake_english(text) == fake
    assert pretrain.fake_english("") == ""
    with pytest.raises(ValueError):
        pretrain.fake_english("a", offset=0x10FFFF)
    with pytest.raises(ValueError):
        pretrain.fake_english("a", offset=0)


def test_anchor_words_and_anchors_only():
    anchors = pretrain.anchor_words(["the SELinux option, 2"], ["l'option SELinux : 2"])
    assert anchors == {"SELinux", "option", "2"}
    out = pretrain.keep_anchors_only("l'option SELinux", anchors)
    words = out.split()
    assert words[2:] == ["option", "SELinux"]
    assert pretrain.unfake(" ".join(words[:2])) == "l '"


# --- corpus ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpora():
    return {
        v: pretrain.build_corpus(dataclasses.replace(TINY, variant=v)) for v in pretrain.VARIANTS
    }


def test_corpus_is_disjoint_and_unbalanced(corpora):
    c = corpora["shared"]
    assert c.langs == ("en", "fr")
    assert not set(c.ids["en"]) & set(c.ids["fr"])
    assert len(c.texts["en"]) == len(c.ids["en"]) and len(c.texts["fr"]) == len(c.ids["fr"])
    words = c.words()
    assert 1.2 < words["en"] / words["fr"] < 3, words
    # the same split for every variant: only the writing of the second language changes
    assert corpora["fake"].ids == c.ids and corpora["anchors"].ids == c.ids
    assert corpora["fake"].texts["en"] == c.texts["en"]


def test_variants_control_what_is_shared(corpora):
    def chars(texts):
        return {ch for t in texts for ch in t if not ch.isspace()}

    shared, fake, anchors = corpora["shared"], corpora["fake"], corpora["anchors"]
    assert chars(shared.texts["fr"]) & chars(shared.texts["en"])
    assert not chars(fake.texts["fr"]) & chars(fake.texts["en"])
    fr_words = {w for t in anchors.texts["fr"] for w in t.split()}
    en_words = {w for t in anchors.texts["en"] for w in t.split()}
    assert fr_words & en_words == set(anchors.anchors) & fr_words
    assert len(anchors.anchors) > 50 and {".", ","} <= anchors.anchors
    test = ["Le fichier n'existe pas."]
    assert fake.prepare("fr", test) == [pretrain.fake_english(pretrain.pretokenize(test[0]))]
    assert anchors.prepare("en", test) == [pretrain.pretokenize(test[0])]
    with pytest.raises(ValueError):
        shared.prepare("de", test)


# --- tokenizer -------------------------------------------------------------------------


def test_tokenizer_vocabulary_is_the_shared_reproducible_one(corpora):
    """Lesson 05 uses lesson 04's WordPiece trainer, with its five special tokens first."""
    texts = corpora["shared"].texts["fr"]
    tok = pretrain.train_tokenizer(texts, 800)
    vocab = tokenization.wordpiece_vocab(texts, 800, special_tokens=pretrain.SPECIAL_TOKENS)
    assert tok.convert_ids_to_tokens(list(range(len(tok)))) == vocab
    assert vocab[:5] == list(pretrain.SPECIAL_TOKENS)


def test_tokenizer_segments_fake_text_like_real_text(corpora):
    real = pretrain.train_tokenizer(corpora["shared"].texts["fr"], 800)
    fake = pretrain.train_tokenizer(corpora["fake"].texts["fr"], 800)
    sentence = corpora["shared"].texts["fr"][0]
    pieces = real.tokenize(sentence)
    fake_pieces = fake.tokenize(pretrain.fake_english(sentence))
    assert len(pieces) == len(fake_pieces)
    assert [p.removeprefix("##") for p in pieces] == [
        pretrain.unfake(p.removeprefix("##")) for p in fake_pieces
    ]
    ids = real(sentence)["input_ids"]
    assert ids[0] == real.cls_token_id and ids[-1] == real.sep_token_id


def test_block_stream_packs_one_language():
    rng = np.random.default_rng(0)
    stream = pretrain.BlockStream([[5, 6, 7], [8, 9]], 6, cls_id=2, sep_id=3, rng=rng)
    blocks = [stream.next_block() for _ in range(6)]
    assert all(len(b) == 6 and b[0] == 2 and b[-1] == 3 for b in blocks)
    inner = [t for b in blocks for t in b[1:-1]]
    assert inner.count(3) >= 4 and set(inner) <= {3, 5, 6, 7, 8, 9}
    assert stream.passes >= 4
    with pytest.raises(ValueError):
        pretrain.BlockStream([], 6, 2, 3, rng)


# --- configs ---------------------------------------------------------------------------


def test_configs_cover_the_ablations():
    c = pretrain.CONFIGS
    assert {"base", "fake", "anchors", "depth1", "alpha1.0", "alpha0.3", "fake-en"} <= set(c)
    assert c["fake"].variant == "fake" and c["anchors"].variant == "anchors"
    assert c["depth1"].num_layers == 1 and c["base"].num_layers == 4
    assert {cfg.alpha for cfg in c.values()} >= {1.0, 0.7, 0.3}
    assert c["base"].alpha == sampling.PUBLISHED_ALPHA["mBERT"]
    assert (c["fake-en"].other, c["fake-en"].variant) == ("en", "fake")
    for cfg in c.values():  # every ablation changes one thing against the base
        diff = {k for k, v in cfg.to_dict().items() if v != c["base"].to_dict()[k] and k != "name"}
        assert len(diff) <= 1 or diff == {"other", "variant"}, (cfg.name, diff)
    smoke = c["base"].smoke()
    assert smoke.name == "base-smoke" and smoke.steps <= 50
    with pytest.raises(ValueError, match="Fake-English"):
        pretrain.PretrainConfig(other="en")


def test_fake_english_corpus_pairs_english_with_shifted_english():
    corpus = pretrain.build_corpus(pretrain.CONFIGS["fake-en"])
    assert corpus.langs == ("en", "en-fake") and corpus.other == "en"
    assert not set(corpus.ids["en"]) & set(corpus.ids["en-fake"])
    english = {pretrain.pretokenize(t) for t in load_topics("train", "en").texts}
    assert all(pretrain.unfake(t) in english for t in corpus.texts["en-fake"][:50])


def test_config_validation_and_json(tmp_path):
    with pytest.raises(ValueError):
        pretrain.PretrainConfig(variant="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        pretrain.PretrainConfig(name="a/b")
    with pytest.raises(ValueError):
        pretrain.PretrainConfig(hidden_size=100, num_heads=3)
    with pytest.raises(ValueError):
        pretrain.PretrainConfig.from_dict({"layers": 3})
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"num_layers": 2, "variant": "fake"}))
    cfg = pretrain.get_config(str(path))
    assert cfg.name == "mine" and cfg.num_layers == 2 and cfg.variant == "fake"
    assert pretrain.get_config("depth1", smoke=True).name == "depth1-smoke"
    with pytest.raises(ValueError, match="unknown pretraining config"):
        pretrain.get_config("nope")
    with pytest.raises(FileNotFoundError):
        pretrain.get_config(str(tmp_path / "missing.json"))


# --- training, caching, evaluation -----------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    path, cached = pretrain.load_or_pretrain(TINY, root=root, progress=False)
    assert not cached
    return root, path


def test_pretrain_saves_a_complete_seeded_checkpoint(tiny_checkpoint, tmp_path):
    root, path = tiny_checkpoint
    assert path == root / "tiny"
    assert {"config.json", "tokenizer.json", "pretrain.json"} <= {p.name for p in path.iterdir()}
    info = pretrain.read_info(path)
    assert info["config"] == TINY.to_dict() and len(info["loss"]) == TINY.steps
    assert set(info["tokens"]) == {"en", "fr"} and np.isclose(sum(info["q"].values()), 1, atol=1e-5)
    q = sampling.language_probabilities([info["tokens"]["en"], info["tokens"]["fr"]], TINY.alpha)
    assert np.allclose([info["q"]["en"], info["q"]["fr"]], q, atol=1e-5)
    assert sum(info["sampled_tokens"].values()) == TINY.steps * TINY.batch_size * (
        TINY.block_size - 2
    )
    again = pretrain.pretrain(TINY, tmp_path / "again", progress=False)
    assert pretrain.read_info(again)["loss"] == info["loss"], "same seed, same run"
    assert not [p for p in root.iterdir() if p.name.startswith(".")], "temporary folder left"


def test_pretraining_picks_its_precision_from_the_card(monkeypatch):
    torch = pytest.importorskip("torch")
    from test_finetune import _fake_gpu

    from xlt_course import training

    assert training.make_runtime("cpu").precision == "fp32"
    _fake_gpu(monkeypatch, 7)
    assert training.make_runtime("cuda").precision == "fp16"
    _fake_gpu(monkeypatch, 8)
    assert training.make_runtime("cuda").precision == "bf16"
    del torch


def test_training_loop_runs_under_autocast_and_loss_scaling(monkeypatch, tmp_path):
    """The CUDA code path (autocast + a live GradScaler), exercised on CPU with fp16."""
    torch = pytest.importorskip("torch")
    from xlt_course import training

    used = []

    def cpu_mixed(device, precision="auto"):
        used.append(device)
        return training.Runtime("cpu", "fp16")  # fp16 autocast + a live GradScaler, on CPU

    monkeypatch.setattr(training, "make_runtime", cpu_mixed)
    path = pretrain.pretrain(TINY, tmp_path / "bf16", device="cpu", progress=False)
    info = pretrain.read_info(path)
    assert used == ["cpu"] and len(info["loss"]) == TINY.steps
    assert all(np.isfinite(info["loss"])) and info["loss"][0] > 5
    model, _ = pretrain.load_checkpoint(path)
    assert {p.dtype for p in model.parameters()} == {torch.float32}, "weights stay fp32"


def test_load_or_pretrain_uses_the_cache_only_for_the_same_config(tiny_checkpoint):
    root, path = tiny_checkpoint
    assert pretrain.is_cached(TINY, root)
    assert pretrain.load_or_pretrain(TINY, root=root, progress=False) == (path, True)
    changed = dataclasses.replace(TINY, seed=1)
    assert not pretrain.is_cached(changed, root)
    model, tokenizer = pretrain.load_checkpoint(path)
    assert model.config.num_hidden_layers == TINY.num_layers and len(tokenizer) > 100
    with pytest.raises(FileNotFoundError, match="xlt-course pretrain"):
        pretrain.load_checkpoint(root / "missing")


def test_mean_pool_and_retrieval():
    hidden = np.arange(2 * 3 * 2, dtype=float).reshape(2, 3, 2)
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    assert np.allclose(pretrain.mean_pool(hidden, mask), [[1, 2], [6, 7]])
    with pytest.raises(ValueError):
        pretrain.mean_pool(hidden, np.zeros((2, 3)))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 8))
    assert pretrain.retrieval_p_at_1(X, 3 * X) == 1.0
    assert pretrain.retrieval_p_at_1(X, X[::-1]) <= 0.1
    with pytest.raises(ValueError):
        pretrain.retrieval_p_at_1(X, X[:10])


def test_evaluate_reports_retrieval_and_transfer(tiny_checkpoint):
    _, path = tiny_checkpoint
    corpus = pretrain.build_corpus(TINY)
    result = pretrain.evaluate(path, corpus, TINY_EVAL)
    assert len(result["p1_layers"]) == TINY.num_layers + 1 and result["n_test"] == 24
    for key in ("p1", "p1_centered", "acc_en", "acc_other", "acc_other_centered"):
        assert 0 <= result[key] <= 1
    _, tokenizer = pretrain.load_checkpoint(path)
    control = pretrain.evaluate(None, corpus, TINY_EVAL, config=TINY, tokenizer=tokenizer)
    assert control.keys() == result.keys()
    tuned = pretrain.evaluate(
        path, corpus, dataclasses.replace(TINY_EVAL, mode="finetune", epochs=1)
    )
    assert 0 <= tuned["acc_other"] <= 1 and np.isnan(tuned["acc_other_centered"])


def test_cli_pretrain_writes_the_checkpoint(tmp_path, capsys):
    config = tmp_path / "cli-tiny.json"
    config.write_text(json.dumps({**TINY.to_dict(), "name": "cli-tiny", "steps": 2}))
    assert cli_main(["pretrain", str(config), "--root", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "cli-tiny" in out and (tmp_path / "out" / "cli-tiny" / "pretrain.json").exists()
    assert cli_main(["pretrain", str(config), "--root", str(tmp_path / "out")]) == 0
    assert "cached" in capsys.readouterr().out
    assert cli_main(["pretrain", "nope"]) == 2


def test_cli_checkpoint_is_the_one_the_lesson_loads(tmp_path, monkeypatch, capsys):
    """`xlt-course pretrain NAME` writes where the lesson's load_or_pretrain looks, bit for bit."""
    torch = pytest.importorskip("torch")
    data = tmp_path / "data"
    data.mkdir()
    (data / "topics").symlink_to(paths.data_dir() / "topics", target_is_directory=True)
    monkeypatch.setenv("XLT_COURSE_DATA", str(data))
    config = tmp_path / "lesson-tiny.json"
    config.write_text(json.dumps({**TINY.to_dict(), "name": "lesson-tiny"}))
    assert cli_main(["pretrain", str(config)]) == 0
    cfg = pretrain.get_config(str(config))
    where = paths.cache_dir() / pretrain.LESSON / "lesson-tiny"
    assert f"-> {where}" in capsys.readouterr().out
    # the call the notebook makes: found in the cache, not retrained
    assert pretrain.load_or_pretrain(cfg, progress=False) == (where, True)
    # and the same weights as training it in the lesson would give
    fresh = pretrain.pretrain(cfg, tmp_path / "in-lesson", progress=False)
    cli_model, cli_tok = pretrain.load_checkpoint(where)
    lesson_model, lesson_tok = pretrain.load_checkpoint(fresh)
    assert cli_tok.get_vocab() == lesson_tok.get_vocab()
    cli_state, lesson_state = cli_model.state_dict(), lesson_model.state_dict()
    assert cli_state.keys() == lesson_state.keys()
    assert all(torch.equal(cli_state[k], lesson_state[k]) for k in cli_state)


def test_lesson_trains_only_outside_grading():
    """Under the autograder (ENV.grading) the lesson must never train a model."""
    nb = notebooks.read_notebook(NB)
    training = ("load_or_pretrain(", "pretrain.pretrain(", "finetune_zero_shot(", ".fit(")
    graded = notebooks.grade_cells(nb).values()
    for c in graded:
        assert not any(t in c.source for t in training), "a graded cell trains"
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    trains = [src for src in code if any(t in src for t in training)]
    assert len(trains) == 1, "the lesson trains in exactly one cell"
    (src,) = trains
    before, _, after = src.partition("if ENV.grading:")
    assert after and not any(t in before for t in training)
    guarded, _, rest = after.partition("\nelse:")
    assert rest and not any(t in guarded for t in training), "training is skipped under grading"
    # every later cell that uses the checkpoints runs only when they were loaded
    later = code[code.index(src) + 1 :]
    for s in later:
        if "checkpoints[" in s or "infos[" in s or "results[" in s:
            lines = [
                line
                for line in s.splitlines()
                if line.strip() and not line.startswith(("#", "import ", "from ", "results = {}"))
            ]
            assert lines[0].startswith(("if checkpoints:", "if infos:", "if results:")), s[:80]


# --- exercise 1: language_probabilities -------------------------------------------------


def test_ex1_reference_and_variants_pass():
    ref = solution_namespace(NB, "ex1_sampling")["language_probabilities"]
    run_test_cell(NB, "ex1_sampling_tests", language_probabilities=ref)
    run_test_cell(NB, "ex1_sampling_tests", language_probabilities=sampling.language_probabilities)
    scipy_special = pytest.importorskip("scipy.special")
    run_test_cell(
        NB,
        "ex1_sampling_tests",
        language_probabilities=lambda n, a: scipy_special.softmax(a * np.log(n)),
    )
    torch = pytest.importorskip("torch")
    run_test_cell(
        NB,
        "ex1_sampling_tests",
        language_probabilities=lambda n, a: torch.softmax(
            a * torch.log(torch.as_tensor(n, dtype=torch.float64)), 0
        ),
    )
    run_test_cell(  # float32 through log and softmax: about 1e-6 off at alpha = 2, still correct
        NB,
        "ex1_sampling_tests",
        language_probabilities=lambda n, a: torch.softmax(
            a * torch.log(torch.as_tensor(n, dtype=torch.float32)), 0
        ),
    )
    run_test_cell(  # n^alpha directly: equal to p^alpha once renormalised
        NB,
        "ex1_sampling_tests",
        language_probabilities=lambda n, a: (
            np.asarray(n, float) ** a / (np.asarray(n, float) ** a).sum()
        ),
    )


def _in_place(counts, alpha):
    counts /= counts.sum()
    counts **= alpha
    return counts / counts.sum()


@pytest.mark.parametrize(
    "wrong",
    [
        lambda n, a: n**a,  # not renormalised
        lambda n, a: (n / n.sum()) ** a,  # alpha on probabilities, not renormalised
        lambda n, a: a * n / n.sum() + (1 - a) / len(n),  # interpolation with uniform
        lambda n, a: (n / n.sum()) ** (1 / a) / ((n / n.sum()) ** (1 / a)).sum(),  # 1/alpha
        lambda n, a: np.exp(a * n) / np.exp(a * n).sum(),  # softmax of counts
        lambda n, a: np.sort(n**a / (n**a).sum())[::-1],  # loses the order
        lambda n, a: n**a / (n**a).max(),  # normalised by the max
        _in_place,
    ],
    ids=[
        "no-renorm",
        "p-no-renorm",
        "interpolate",
        "inverse",
        "softmax",
        "sorted",
        "max",
        "in-place",
    ],
)
def test_ex1_plausible_mistakes_fail(wrong):
    with (
        pytest.raises((AssertionError, ZeroDivisionError, FloatingPointError)),
        np.errstate(all="ignore"),
    ):
        run_test_cell(NB, "ex1_sampling_tests", language_probabilities=wrong)


def test_ex1_uniform_mixing_fails_the_visible_checks():

    with pytest.raises(AssertionError, match="mixing with the uniform"):
        run_visible_checks(
            NB,
            "ex1_sampling_tests",
            language_probabilities=lambda n, a: a * n / n.sum() + (1 - a) / len(n),
        )


def test_ex1_stub_gets_friendly_message():
    def stub(counts, alpha):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex1_sampling_tests", language_probabilities=stub)


def test_ex1_in_place_gets_the_in_place_hint():

    with pytest.raises(AssertionError, match="changed the array"):
        run_visible_checks(NB, "ex1_sampling_tests", language_probabilities=_in_place)


@pytest.mark.parametrize(
    "wrong",
    [
        lambda h, m: (h * m[:, :, None]).sum(1) / h.shape[1],  # divided by T
        lambda h, m: (h * m[:, :, None]).mean(1),  # zeros averaged in
    ],
    ids=["div-T", "mean-of-masked"],
)
def test_ex3_dividing_by_T_fails_the_visible_checks(wrong):

    with pytest.raises(AssertionError, match="second row"):
        run_visible_checks(NB, "ex3_mean_pool_tests", mean_pool=wrong)


# --- exercise 2: fake_english -----------------------------------------------------------


def test_ex2_reference_and_variants_pass():
    ref = solution_namespace(NB, "ex2_fake_english")["fake_english"]
    run_test_cell(NB, "ex2_fake_english_tests", fake_english=ref)
    run_test_cell(NB, "ex2_fake_english_tests", fake_english=pretrain.fake_english)

    def with_regex(text, offset=200_000):
        import re

        return re.sub(r"\S", lambda m: chr(ord(m.group()) + offset), text)

    def with_translate(text, offset=200_000):
        table = {ord(c): chr(ord(c) + offset) for c in set(text) if not c.isspace()}
        return text.translate(table)

    run_test_cell(NB, "ex2_fake_english_tests", fake_english=with_regex)
    run_test_cell(NB, "ex2_fake_english_tests", fake_english=with_translate)


def _letters_only(text, offset=200_000):
    return "".join(chr(ord(c) + offset) if c.isalpha() else c for c in text)


def _spaces_too(text, offset=200_000):
    return "".join(chr(ord(c) + offset) for c in text)


def _rot13(text, offset=200_000):
    import codecs

    return codecs.encode(text, "rot13")


def _split_join(text, offset=200_000):
    return " ".join("".join(chr(ord(c) + offset) for c in w) for w in text.split())


def _fixed_offset(text, offset=200_000):
    return "".join(c if c.isspace() else chr(ord(c) + 200_000) for c in text)


def _space_only(text, offset=200_000):
    return "".join(c if c == " " else chr(ord(c) + offset) for c in text)


def _ascii_only(text, offset=200_000):
    return "".join(chr(ord(c) + offset) if c.isascii() and not c.isspace() else c for c in text)


@pytest.mark.parametrize(
    "wrong",
    [_letters_only, _spaces_too, _rot13, _split_join, _fixed_offset, _space_only, _ascii_only],
    ids=["letters-only", "spaces-too", "rot13", "split-join", "ignores-offset", "tabs", "ascii"],
)
def test_ex2_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex2_fake_english_tests", fake_english=wrong)


def _pool_in_place(h, m):
    h *= m[:, :, None]  # zeroes the caller's padded states
    return h.sum(1) / m.sum(1, keepdims=True)


# --- exercise 3: mean_pool --------------------------------------------------------------


def test_ex3_reference_and_variants_pass():
    ref = solution_namespace(NB, "ex3_mean_pool")["mean_pool"]
    run_test_cell(NB, "ex3_mean_pool_tests", mean_pool=ref)
    run_test_cell(NB, "ex3_mean_pool_tests", mean_pool=pretrain.mean_pool)
    run_test_cell(
        NB,
        "ex3_mean_pool_tests",
        mean_pool=lambda h, m: np.einsum("nth,nt->nh", h, m) / m.sum(1, keepdims=True),
    )
    run_test_cell(
        NB,
        "ex3_mean_pool_tests",
        mean_pool=lambda h, m: (
            np.ma.array(h, mask=np.broadcast_to(~m.astype(bool)[:, :, None], h.shape))
            .mean(1)
            .filled()
        ),
    )
    torch = pytest.importorskip("torch")

    def with_torch(h, m):
        h = torch.as_tensor(h)
        m = torch.as_tensor(m).unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1)

    run_test_cell(NB, "ex3_mean_pool_tests", mean_pool=with_torch)


@pytest.mark.parametrize(
    "wrong",
    [
        lambda h, m: h.mean(1),  # padding averaged in
        lambda h, m: (h * m[:, :, None]).sum(1) / h.shape[1],  # divided by T
        lambda h, m: (h * m[:, :, None]).sum(1),  # not divided
        lambda h, m: (h * m[:, :, None]).sum(1) / m.sum(),  # divided by the batch's total
        lambda h, m: (h * m[:, :, None]).mean(1),  # zeros averaged in
        lambda h, m: h[:, : int(m.sum(1).min())].mean(1),  # shortest length for all
        _pool_in_place,
    ],
    ids=["plain-mean", "div-T", "sum", "div-total", "mean-of-masked", "min-length", "in-place"],
)
def test_ex3_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex3_mean_pool_tests", mean_pool=wrong)


# --- exercise 4: retrieval_p_at_1 -------------------------------------------------------


def test_ex4_reference_and_variants_pass():
    ref = solution_namespace(NB, "ex4_retrieval")["retrieval_p_at_1"]
    run_test_cell(NB, "ex4_retrieval_tests", retrieval_p_at_1=ref)
    run_test_cell(NB, "ex4_retrieval_tests", retrieval_p_at_1=pretrain.retrieval_p_at_1)
    from sklearn.metrics.pairwise import cosine_similarity

    run_test_cell(
        NB,
        "ex4_retrieval_tests",
        retrieval_p_at_1=lambda X, Y: (
            cosine_similarity(X, Y).argmax(1) == np.arange(len(X))
        ).mean(),
    )

    def unit_euclidean(X, Y):  # on unit vectors, the nearest in L2 is the nearest in cosine
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        Y = Y / np.linalg.norm(Y, axis=1, keepdims=True)
        d = ((X[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
        return float(np.mean(d.argmin(1) == np.arange(len(X))))

    run_test_cell(NB, "ex4_retrieval_tests", retrieval_p_at_1=unit_euclidean)
    torch = pytest.importorskip("torch")

    def with_torch(X, Y):
        S = torch.nn.functional.normalize(torch.as_tensor(X), dim=1) @ (
            torch.nn.functional.normalize(torch.as_tensor(Y), dim=1).T
        )
        return (S.argmax(1) == torch.arange(len(X))).float().mean()

    run_test_cell(NB, "ex4_retrieval_tests", retrieval_p_at_1=with_torch)


def _euclidean(X, Y):
    d = ((X[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
    return float(np.mean(d.argmin(1) == np.arange(len(X))))


def _axis0(X, Y):
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    Y = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    return float(np.mean((X @ Y.T).argmax(0) == np.arange(len(X))))


def _count(X, Y):
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    Y = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    return int(np.sum((X @ Y.T).argmax(1) == np.arange(len(X))))


def _retrieval_in_place(X, Y):
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    return float(np.mean((X @ Y.T).argmax(1) == np.arange(len(X))))


def _only_src_normalised(X, Y):
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    return float(np.mean((X @ Y.T).argmax(1) == np.arange(len(X))))


@pytest.mark.parametrize(
    "wrong",
    [
        lambda X, Y: float(np.mean((X @ Y.T).argmax(1) == np.arange(len(X)))),  # dot product
        _euclidean,
        _axis0,
        _count,
        _only_src_normalised,
        lambda X, Y: float(np.mean((X @ Y.T).argmin(1) == np.arange(len(X)))),  # argmin
        _retrieval_in_place,
    ],
    ids=["dot", "euclidean", "axis0", "count", "src-normalised", "argmin", "in-place"],
)
def test_ex4_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex4_retrieval_tests", retrieval_p_at_1=wrong)
