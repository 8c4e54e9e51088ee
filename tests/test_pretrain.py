"""xlt_course.pretrain (Dufter & Schütze's English + Fake-English BERTs) and lesson 05's exercises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cells import run_test_cell, solution_namespace
from conftest import run_visible_checks, solution

from autograder import notebooks
from xlt_course import pretrain, sampling, training
from xlt_course import training as tr
from xlt_course.cli import main as cli_main

NB = solution("05-multilingual-pretraining")


def test_import_is_light():
    code = (
        "import sys, xlt_course.pretrain, xlt_course.sampling;"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# --- ids, configs, masking ------------------------------------------------------------------


def test_fake_token_ids_shares_only_the_special_tokens():
    ids = np.array([[2, 10, 5, 3, 0]])
    assert pretrain.fake_token_ids(ids, 100).tolist() == [[2, 110, 105, 3, 0]]
    assert pretrain.fake_token_ids(ids, 100, shared_special=False).tolist() == [
        [102, 110, 105, 103, 100]
    ]
    assert ids.tolist() == [[2, 10, 5, 3, 0]], "input unchanged"


def test_settings_change_one_knob_each():
    base = pretrain.STANDARD.to_dict()
    for name in pretrain.SETTINGS:
        cfg = pretrain.get_config(name).to_dict()
        changed = {k for k in base if base[k] != cfg[k]} - {"name"}
        assert changed == {k for k, v in pretrain.SETTINGS[name].items() if base[k] != v}, name
    assert set(pretrain.EMERGENCE_LINE) <= set(pretrain.SETTINGS)
    with pytest.raises(ValueError, match="unknown setting"):
        pretrain.get_config("bogus")
    with pytest.raises(ValueError, match="pair"):
        pretrain.PretrainConfig(pair="en-fr")
    with pytest.raises(ValueError, match="fake must be True"):
        pretrain.PretrainConfig(fake=False)
    with pytest.raises(ValueError, match="steps"):
        pretrain.PretrainConfig(steps=-1)


def test_run_key_is_a_fingerprint_of_the_whole_config():
    a = pretrain.get_config("standard", seed=0)
    assert pretrain.run_key(a) == pretrain.run_key(pretrain.get_config("standard", seed=0))
    assert pretrain.run_key(a) != pretrain.run_key(a.replace(seed=1))
    assert pretrain.run_key(a) != pretrain.run_key(a.replace(learning_rate=1e-3))


def test_mask_tokens_random_prob_zero_never_draws_random_ids():
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 1000, size=(200, 100))
    maskable = np.ones(ids.shape, dtype=bool)
    out, chosen = tr.mask_tokens(
        ids, maskable, mask_id=4, vocab_size=1000, rng=rng, random_prob=0.0
    )
    c = out[chosen]
    assert np.all((c == 4) | (c == ids[chosen]))
    assert 0.75 < np.mean(c == 4) < 0.85
    out, chosen = tr.mask_tokens(ids, maskable, mask_id=4, vocab_size=1000, rng=rng)
    changed = np.mean((out[chosen] != 4) & (out[chosen] != ids[chosen]))
    assert 0.08 < changed < 0.12, "the default stays BERT's 80/10/10"
    with pytest.raises(ValueError, match="random_prob"):
        tr.mask_tokens(ids, maskable, mask_id=4, vocab_size=1000, rng=rng, random_prob=0.5)


def test_centred_retrieval_and_rotation_control():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 16))
    Y = X + 0.05 * rng.normal(size=X.shape) + 3.0  # a language offset: removed by centring
    assert pretrain.centred_p_at_1(X, Y) == 1.0
    Q = pretrain.random_rotation(16, seed=0)
    assert np.allclose(Q @ Q.T, np.eye(16), atol=1e-10)
    assert pretrain.centred_p_at_1(X, Y @ Q) < 0.1, "a rotated copy shares no space"


def test_word_translation_finds_identical_twins_and_not_random_ones():
    rng = np.random.default_rng(1)
    E = rng.normal(size=(20, 8))
    twins = np.concatenate([E, E + 0.01 * rng.normal(size=E.shape)])
    ids = np.arange(5, 20)
    assert pretrain.word_translation_p_at_1(twins, 20, ids) == 1.0
    unrelated = np.concatenate([E, rng.normal(size=E.shape)])
    assert pretrain.word_translation_p_at_1(unrelated, 20, ids) < 0.5


# --- corpora --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("vocab")


def _corpus(setting, cache):
    return pretrain.build_corpus(pretrain.get_config(setting, smoke=True), cache=cache)


def test_standard_corpus_is_english_and_its_fake_twin(built_data, cache):
    c = _corpus("standard", cache)
    cfg = pretrain.get_config("standard", smoke=True)
    V = cfg.vocab_size
    assert c.total_vocab == 2 * V and len(c.eval_refs) == cfg.n_eval
    for en, fake in zip(c.eval_en, c.eval_other, strict=True):
        assert pretrain.fake_token_ids(np.array(en), V).tolist() == fake
    en_ids = {i for ids, lang in c.train if lang == 0 for i in ids}
    fake_ids = {i for ids, lang in c.train if lang == 1 for i in ids}
    assert en_ids & fake_ids <= {pretrain.CLS, pretrain.SEP}
    assert max(len(ids) for ids, _ in c.train) <= cfg.max_length


def test_held_out_verses_are_never_trained_on(built_data, cache):
    refs = [f"Gen.1.{i}" for i in range(1, 400)]
    held, rest = pretrain.split_refs(refs, 50)
    assert len(held) == 50 and not set(held) & set(rest) and len(held) + len(rest) == len(refs)
    assert held == pretrain.split_refs(refs, 50)[0], "the same verses for every run"
    c = _corpus("standard", cache)
    train = {tuple(ids) for ids, lang in c.train if lang == 0}
    assert sum(tuple(e) in train for e in c.eval_en) <= 2  # only verses repeated verbatim


def test_ablation_corpora(built_data, cache):
    V = pretrain.get_config("standard", smoke=True).vocab_size
    sep = _corpus("special_separate", cache)
    assert sep.eval_other[0][0] == pretrain.CLS + V and sep.eval_other[0][-1] == pretrain.SEP + V
    inv, std = _corpus("inverted", cache), _corpus("standard", cache)
    assert inv.eval_en == std.eval_en and inv.eval_other != std.eval_other
    nonpar = _corpus("nonparallel", cache)
    n_en = sum(lang == 0 for _, lang in nonpar.train)
    n_std = sum(lang == 0 for _, lang in std.train)
    assert abs(2 * n_en - n_std) <= 1, "each language sees half the verses"
    real, fake = _corpus("real_en_es", cache), _corpus("fake_es", cache)
    shared = {i for ids, lang in real.train if lang == 0 for i in ids} & {
        i for ids, lang in real.train if lang == 1 for i in ids
    }
    assert len(shared) > 50, "a shared vocabulary: English and Spanish share pieces"
    shared_fake = {i for ids, lang in fake.train if lang == 0 for i in ids} & {
        i for ids, lang in fake.train if lang == 1 for i in ids
    }
    assert shared_fake <= {pretrain.CLS, pretrain.SEP, pretrain.UNK}


def test_curse_corpus_has_one_id_shift_per_language(built_data, cache):
    cfg = pretrain.get_config("fake_langs_3", smoke=True)
    assert cfg.n_fake == 3 and cfg.n_langs == 4
    V = cfg.vocab_size
    c = pretrain.build_corpus(cfg, cache=cache)
    assert c.total_vocab == 4 * V
    langs = [lang for _, lang in c.train]
    assert [langs.count(j) for j in range(4)] == [langs.count(0)] * 4, "every language sees all"
    evals = c.eval_langs()
    assert len(evals) == 4
    for j, seqs in enumerate(evals):
        for en, other in zip(evals[0], seqs, strict=True):
            assert pretrain.fake_token_ids(np.array(en), j * V).tolist() == other
    ids_of = [{i for ids, lang in c.train if lang == j for i in ids} for j in range(4)]
    for j in range(1, 4):
        assert ids_of[0] & ids_of[j] <= {pretrain.CLS, pretrain.SEP}, "no shared piece"
        assert min(ids_of[j] - {pretrain.CLS, pretrain.SEP}) >= j * V
    sep = pretrain.build_corpus(cfg.replace(shared_special=False), cache=cache)
    assert sep.eval_langs()[3][0][0] == pretrain.CLS + 3 * V


def test_curse_settings_and_validation():
    for k in (1, 3, 7):
        cfg = pretrain.get_config(f"fake_langs_{k}")
        assert cfg.n_fake == k and cfg.steps == 2000
        changed = {f for f, v in cfg.to_dict().items() if v != pretrain.STANDARD.to_dict()[f]}
        assert changed <= {"name", "n_fake", "steps"}
    assert pretrain.get_config("fake_langs_3", steps=7).steps == 7
    assert pretrain.get_config("untrained", steps=7).steps == 0
    with pytest.raises(ValueError, match="n_fake"):
        pretrain.PretrainConfig(n_fake=0)
    with pytest.raises(ValueError, match="n_fake"):
        pretrain.PretrainConfig(pair="en-es", fake=True, n_fake=2)
    # the field came after D&S's runs were cached: one fake language keeps the old key
    std = pretrain.get_config("standard")
    assert pretrain.run_key(std) != pretrain.run_key(std.replace(n_fake=2))
    assert "overparam" in pretrain.SETTINGS and "overparam" not in pretrain.DEFAULT_REPORT


def test_curse_run_reports_every_language(built_data, tmp_path, cache):
    cfg = pretrain.get_config("fake_langs_3", smoke=True).replace(steps=3)
    r = pretrain.run(cfg, root=tmp_path, progress=False)
    assert len(r.mlm_loss) == 4 and all(np.isfinite(r.mlm_loss))
    assert len(r.retrieval_langs) == 3
    assert np.isclose(np.mean(r.retrieval_langs), r.retrieval_best)
    assert r.arrays()["embeddings"].shape == (4 * cfg.vocab_size, cfg.hidden_size)
    sep = pretrain.run(cfg.replace(shared_positions=False), root=tmp_path, progress=False)
    assert len(sep.mlm_loss) == 4


def test_masking_uses_each_languages_own_mask_token():
    cfg = pretrain.get_config("fake_langs_3", smoke=True).replace(shared_special=False)
    V = cfg.vocab_size
    ids = np.array([[pretrain.CLS + j * V, *range(10 + j * V, 40 + j * V), pretrain.SEP + j * V]
                    for j in range(4)])  # fmt: skip
    out, chosen = pretrain._mask_batch(ids, np.arange(4), cfg, 4 * V, np.random.default_rng(0))
    for j in range(4):
        assert not chosen[j, [0, -1]].any(), "a language's own specials are never targets"
        masked = out[j][chosen[j] & (out[j] != ids[j])]
        assert pretrain.MASK + j * V in masked


def test_train_parallel_caches_every_run(built_data, tmp_path):
    configs = [
        pretrain.get_config(s, smoke=True).replace(steps=2) for s in ("standard", "inverted")
    ]
    # the longer run is started first; the folders still come back in the configs' order
    configs.insert(1, pretrain.get_config("fake_langs_3", smoke=True).replace(steps=3))
    assert pretrain.run_cost(configs[1]) > pretrain.run_cost(configs[0])
    folders = pretrain.train_parallel(configs, jobs=2, root=tmp_path)
    assert [f.name for f in folders] == [pretrain.run_key(c) for c in configs]
    assert all(pretrain.load_run(c, tmp_path) is not None for c in configs)
    with pytest.raises(ValueError, match="jobs"):
        pretrain.train_parallel(configs, jobs=0)


def test_corpus_fields_are_everything_build_corpus_reads(built_data, cache):
    """A report worker reuses a corpus for every config with the same CORPUS_FIELDS."""
    read: set[str] = set()

    class Recording:
        def __init__(self, config):
            self._config = config

        def __getattr__(self, name):
            read.add(name)
            return getattr(self._config, name)

    for setting in ("standard", "real_en_es", "fake_langs_3", "inverted", "nonparallel"):
        pretrain.build_corpus(Recording(pretrain.get_config(setting, smoke=True)), cache=cache)
    assert read - {"n_langs"} <= set(pretrain.CORPUS_FIELDS), read
    assert "n_fake" in pretrain.CORPUS_FIELDS  # n_langs is derived from it


def test_a_worker_reusing_its_corpus_trains_the_same_runs(built_data, tmp_path):
    configs = [pretrain.get_config("standard", smoke=True, seed=s).replace(steps=3) for s in (0, 1)]
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    pretrain._worker_corpus.clear()
    try:  # a worker's own function, run here (it sets torch to one thread)
        reused = [Path(pretrain._run_single_threaded(c, tmp_path / "reused")) for c in configs]
    finally:
        torch.set_num_threads(threads)
    assert len(pretrain._worker_corpus) == 1
    pretrain._worker_corpus.clear()
    with training.torch_threads(1):  # the worker's thread count: the same arithmetic
        fresh = [pretrain.run(c, root=tmp_path / "fresh", progress=False) for c in configs]
    for folder, r in zip(reused, fresh, strict=True):
        a, b = dict(np.load(folder / "arrays.npz")), r.arrays()
        assert all(np.array_equal(a[k], b[k]) for k in b)
    pretrain._worker_corpus.clear()


# --- training, caching, report ----------------------------------------------------------------


def test_run_trains_evaluates_and_caches(built_data, tmp_path, cache):
    cfg = pretrain.get_config("positions_separate", smoke=True).replace(steps=5)
    corpus = pretrain.build_corpus(cfg, cache=cache)
    r = pretrain.run(cfg, root=tmp_path, corpus=corpus, progress=False)
    assert not r.from_cache and len(r.losses) == 5 and len(r.retrieval) == cfg.num_layers + 1
    assert 0 <= r.retrieval_best <= 1 and r.word_translation is not None
    arrays = r.arrays()
    assert arrays["vectors_en"].shape == (cfg.num_layers + 1, cfg.n_eval, cfg.hidden_size)
    assert arrays["embeddings"].shape == (2 * cfg.vocab_size, cfg.hidden_size)
    again = pretrain.run(cfg, root=tmp_path, corpus=corpus, progress=False)
    assert again.from_cache and again.retrieval == r.retrieval
    untrained = pretrain.run(cfg.replace(steps=0), root=tmp_path, corpus=corpus, progress=False)
    assert untrained.losses == []


def test_training_is_seeded(built_data, tmp_path, cache):
    cfg = pretrain.get_config("standard", smoke=True).replace(steps=3)
    corpus = pretrain.build_corpus(cfg, cache=cache)
    a = pretrain.train_model(cfg, corpus, progress=False)[1]
    b = pretrain.train_model(cfg, corpus, progress=False)[1]
    assert a == b


def test_cli_report_ends_with_the_emergence_line(built_data, tmp_path, capsys):
    args = ["pretrain", "report", "--smoke", "--seeds", "0", "--steps", "3", "--root", str(tmp_path),
            "--settings", "standard", "untrained"]  # fmt: skip
    assert cli_main(args) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("emergence standard=") and "untrained=" in last
    assert "positions_separate=nan" in last, "settings not measured read nan"
    assert cli_main([*args[:-3], "--no-train", "--settings", "standard", "special_separate"]) == 0
    out = capsys.readouterr().out
    assert "not yet measured" in out
    assert cli_main([*args[:-3], "--no-train", "--settings", "overparam"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert not last.startswith("emergence ") and "none of them" in last, last
    assert cli_main(["pretrain", "report", "--settings", "bogus"]) == 2
    assert cli_main(["pretrain", "report", "--jobs", "0", "--settings", "standard"]) == 2


def test_cli_report_jobs_and_curse_rows(built_data, tmp_path, capsys):
    args = ["pretrain", "report", "--smoke", "--seeds", "0", "--steps", "2", "--root", str(tmp_path),
            "--jobs", "2", "--settings", "standard", "fake_langs_3"]  # fmt: skip
    assert cli_main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("emergence standard=") and "standard=nan" not in out[-1]
    assert any("MLM loss per language" in line and len(line.split(":")[-1].split()) == 4
               for line in out)  # fmt: skip


def test_emergence_line_format():
    rows = [
        {"setting": "standard", "retrieval": 0.61234},
        {"setting": "untrained", "retrieval": None},
    ]
    line = pretrain.emergence_line(rows)
    assert line.split()[:3] == ["emergence", "standard=0.612", "untrained=nan"]


def test_lesson_trains_only_outside_grading():
    """Under the autograder (ENV.grading) the lesson must never train a model."""
    nb = notebooks.read_notebook(NB)
    training = ("pretrain.run(", "report_table(", "train_model(")
    for c in notebooks.grade_cells(nb).values():
        assert not any(t in c.source for t in training), "a graded cell trains"
    for c in nb.cells:
        if c.cell_type == "code" and any(t in c.source for t in training):
            assert "ENV.grading" in c.source, c.source[:80]


def test_lesson_states_no_size_myth():
    text = json.dumps(json.loads(NB.read_text(encoding="utf-8"))["cells"])
    assert "orders of magnitude larger" not in text
    assert "Dufter" in text and "K et al." in text


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


# --- exercise 2: fake_token_ids ---------------------------------------------------------------


def test_ex2_reference_and_variants_pass():
    ref = solution_namespace(NB, "ex2_fake_ids")["fake_token_ids"]
    run_test_cell(NB, "ex2_fake_ids_tests", fake_token_ids=ref)
    run_test_cell(NB, "ex2_fake_ids_tests", fake_token_ids=pretrain.fake_token_ids)

    def with_copy(ids, vocab_size, shared_special=True):
        out = np.array(ids, copy=True)
        move = out >= 5 if shared_special else np.ones(out.shape, dtype=bool)
        out[move] += vocab_size
        return out

    def as_list(ids, vocab_size, shared_special=True):
        flat = [i if (shared_special and i < 5) else i + vocab_size for i in np.ravel(ids)]
        return np.array(flat, dtype=np.asarray(ids).dtype).reshape(np.shape(ids))

    def with_torch(ids, vocab_size, shared_special=True):
        import torch

        t = torch.as_tensor(ids)
        keep = (t < 5) & shared_special
        return torch.where(keep, t, t + vocab_size).numpy()

    for fn in (with_copy, as_list, with_torch):
        run_test_cell(NB, "ex2_fake_ids_tests", fake_token_ids=fn)


def _in_place_shift(ids, vocab_size, shared_special=True):
    ids[ids >= (5 if shared_special else 0)] += vocab_size
    return ids


@pytest.mark.parametrize(
    "wrong",
    [
        lambda x, v, shared_special=True: np.asarray(x) + v,  # specials always shifted
        lambda x, v, shared_special=True: np.where(
            np.asarray(x) < 5, x, np.asarray(x) + v
        ),  # flag ignored
        lambda x, v, shared_special=True: np.where(
            (np.asarray(x) <= 5) & shared_special, x, np.asarray(x) + v
        ),
        lambda x, v, shared_special=True: np.where(
            (np.asarray(x) < 4) & shared_special, x, np.asarray(x) + v
        ),
        lambda x, v, shared_special=True: np.where(
            (np.asarray(x) < 5) & shared_special, x, np.asarray(x) + 2048
        ),
        lambda x, v, shared_special=True: np.where(
            (np.asarray(x) < 5) & shared_special, x, np.asarray(x) + v - 1
        ),
        lambda x, v, shared_special=True: np.where(
            (np.asarray(x) < 5) & shared_special, x, np.asarray(x) + 2 * v
        ),
        _in_place_shift,
    ],
    ids=[
        "always-shift",
        "flag-ignored",
        "boundary-5",
        "boundary-3",
        "hard-coded",
        "v-1",
        "2v",
        "in-place",
    ],
)
def test_ex2_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex2_fake_ids_tests", fake_token_ids=wrong)


def test_ex2_flag_ignored_is_named_by_the_visible_checks():
    with pytest.raises(AssertionError, match="shared_special=False"):
        run_visible_checks(
            NB, "ex2_fake_ids_tests",
            fake_token_ids=lambda x, v, shared_special=True: np.where(np.asarray(x) < 5, x, np.asarray(x) + v),
        )  # fmt: skip


# --- exercise 3: bert_corrupt -------------------------------------------------------------------


def _engine(ids, chosen, *, mask_id, vocab_size, rng, random_prob=0.1):
    out = np.array(ids, copy=True)
    u = rng.random(out.shape)
    out[chosen & (u < 0.8)] = mask_id
    rand = chosen & (u >= 0.8) & (u < 0.8 + random_prob)
    out[rand] = rng.integers(0, vocab_size, int(rand.sum()))
    return out


def test_ex3_reference_and_variants_pass():
    ref = solution_namespace(NB, "ex3_masking")["bert_corrupt"]
    run_test_cell(NB, "ex3_masking_tests", bert_corrupt=ref)
    run_test_cell(NB, "ex3_masking_tests", bert_corrupt=_engine)

    def choice_based(ids, chosen, *, mask_id, vocab_size, rng, random_prob=0.1):
        out = ids.copy()
        action = rng.choice(3, size=ids.shape, p=[0.8, random_prob, 0.2 - random_prob])
        out[chosen & (action == 0)] = mask_id
        rnd = rng.integers(0, vocab_size, size=ids.shape)
        out[chosen & (action == 1)] = rnd[chosen & (action == 1)]
        return out

    def random_first(ids, chosen, *, mask_id, vocab_size, rng, random_prob=0.1):
        out = ids.copy()
        u = rng.random(ids.shape)
        rand = chosen & (u < random_prob)
        out[rand] = rng.integers(0, vocab_size, size=ids.shape)[rand]
        out[chosen & (u >= random_prob) & (u < random_prob + 0.8)] = mask_id
        return out

    def loop(ids, chosen, *, mask_id, vocab_size, rng, random_prob=0.1):
        out = [row[:] for row in ids.tolist()]
        for i, j in zip(*np.nonzero(chosen), strict=True):
            u = rng.random()
            if u < 0.8:
                out[i][j] = mask_id
            elif u < 0.8 + random_prob:
                out[i][j] = int(rng.integers(vocab_size))
        return np.array(out)

    def choice_ids_int32(ids, chosen, *, mask_id, vocab_size, rng, random_prob=0.1):
        out = np.asarray(ids).astype(np.int32)
        rand = chosen & (rng.random(out.shape) < random_prob)
        out[rand] = rng.choice(vocab_size, size=int(rand.sum()))
        u = rng.random(out.shape) * (1 - random_prob)  # the mask share of the rest: 0.8 overall
        out[chosen & ~rand & (u < 0.8)] = mask_id
        return out

    for fn in (choice_based, random_first, loop, choice_ids_int32):
        run_test_cell(NB, "ex3_masking_tests", bert_corrupt=fn)


def _everywhere(ids, chosen, *, mask_id, vocab_size, rng, random_prob=0.1):
    return _engine(ids, np.ones_like(chosen), mask_id=mask_id, vocab_size=vocab_size, rng=rng,
                   random_prob=random_prob)  # fmt: skip


def _all_mask(ids, chosen, *, mask_id, vocab_size, rng, random_prob=0.1):
    out = ids.copy()
    out[chosen] = mask_id
    return out


def _no_keep(ids, chosen, *, mask_id, vocab_size, rng, random_prob=0.1):
    return _engine(ids, chosen, mask_id=mask_id, vocab_size=vocab_size, rng=rng, random_prob=0.2)


def _ignores_random_prob(ids, chosen, *, mask_id, vocab_size, rng, random_prob=0.1):
    return _engine(ids, chosen, mask_id=mask_id, vocab_size=vocab_size, rng=rng)


def _fixed_random_id(ids, chosen, *, mask_id, vocab_size, rng, random_prob=0.1):
    out = _engine(ids, chosen, mask_id=mask_id, vocab_size=vocab_size, rng=rng, random_prob=0.0)
    u = rng.random(ids.shape)
    out[chosen & (out != mask_id) & (u < 0.5)] = 0
    return out


def _corrupt_in_place(ids, chosen, *, mask_id, vocab_size, rng, random_prob=0.1):
    out = _engine(
        ids, chosen, mask_id=mask_id, vocab_size=vocab_size, rng=rng, random_prob=random_prob
    )
    ids[...] = out
    return ids


def _own_rng(ids, chosen, *, mask_id, vocab_size, rng, random_prob=0.1):
    return _engine(ids, chosen, mask_id=mask_id, vocab_size=vocab_size,
                   rng=np.random.default_rng(), random_prob=random_prob)  # fmt: skip


def _random_from_mask_range(ids, chosen, *, mask_id, vocab_size, rng, random_prob=0.1):
    out = _engine(ids, chosen, mask_id=mask_id, vocab_size=vocab_size, rng=rng, random_prob=0.0)
    u = rng.random(ids.shape)
    rand = chosen & (out != mask_id) & (u < random_prob / 0.2)
    out[rand] = rng.integers(0, 50, int(rand.sum()))  # a few ids only
    return out


def _random_ids_from(lo, hi_off):
    def bert_corrupt(ids, chosen, *, mask_id, vocab_size, rng, random_prob=0.1):
        out = np.array(ids, copy=True)
        u = rng.random(out.shape)
        out[chosen & (u < 0.8)] = mask_id
        rand = chosen & (u >= 0.8) & (u < 0.8 + random_prob)
        out[rand] = rng.integers(lo, vocab_size + hi_off, int(rand.sum()))
        return out

    return bert_corrupt


def _one_draw_per_row(ids, chosen, *, mask_id, vocab_size, rng, random_prob=0.1):
    out = np.array(ids, copy=True)
    u = rng.random(out.shape[0])[:, None] * np.ones(out.shape)  # a whole row masked/random/kept
    out[chosen & (u < 0.8)] = mask_id
    rand = chosen & (u >= 0.8) & (u < 0.8 + random_prob)
    out[rand] = rng.integers(0, vocab_size, int(rand.sum()))
    return out


def _random_share_of_unmasked(ids, chosen, *, mask_id, vocab_size, rng, random_prob=0.1):
    out = np.array(ids, copy=True)
    masked = chosen & (rng.random(out.shape) < 0.8)
    out[masked] = mask_id
    rand = chosen & ~masked & (rng.random(out.shape) < random_prob)  # 2% instead of 10%
    out[rand] = rng.integers(0, vocab_size, int(rand.sum()))
    return out


@pytest.mark.parametrize(
    "wrong",
    [_everywhere, _all_mask, _no_keep, _ignores_random_prob, _fixed_random_id, _corrupt_in_place,
     _own_rng, _random_from_mask_range, _random_ids_from(0, -1), _random_ids_from(5, 0),
     _one_draw_per_row, _random_share_of_unmasked],
    ids=["everywhere", "all-mask", "no-keep", "ignores-random-prob", "fixed-id", "in-place",
         "own-rng", "narrow-random", "never-last-id", "never-special-ids", "one-draw-per-row",
         "random-share-of-unmasked"],
)  # fmt: skip
def test_ex3_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex3_masking_tests", bert_corrupt=wrong)


def test_ex3_all_mask_is_named_by_the_visible_checks():
    with pytest.raises(AssertionError, match="80%"):
        run_visible_checks(NB, "ex3_masking_tests", bert_corrupt=_all_mask)
