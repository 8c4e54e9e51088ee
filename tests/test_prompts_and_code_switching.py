"""Lesson 09-prompts-and-code-switching: prompt tuning, the code-switching augmenter, exercises.

The prompt model and its training loop run on tiny randomly initialised BERT and XLM-R
encoders saved to a temporary folder (the real local-folder code path, no mocks); the
offline encoder is exercised by the notebook test at smoke size. The exercises' hidden
tests are run against the reference solutions, correct variants and plausible mistakes.
"""

from __future__ import annotations

import functools
import json
import math
import random
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
from cells import run_test_cell, solution_namespace
from conftest import run_visible_checks, solution

from xlt_course import prompts_and_code_switching as pc
from xlt_course.data.topics import TopicSplit

NB = solution(pc.LESSON)
torch = pytest.importorskip("torch")

from tiny_models import LABELS, make_split, tiny_config, tiny_tokenizer  # noqa: E402


def _tiny_encoder(arch: str = "bert", vocab_size: int = 60, dropout: float = 0.0):
    from transformers import BertModel, XLMRobertaModel

    config = tiny_config(arch, vocab_size=vocab_size, dropout=dropout)
    torch.manual_seed(0)
    return (BertModel if arch == "bert" else XLMRobertaModel)(config).eval()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "bert"
    tok = tiny_tokenizer()
    _tiny_encoder("bert", vocab_size=len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(pc.paths, "cache_dir", lambda: tmp_path / "cache")


def test_import_does_not_pull_torch():
    code = (
        "import sys, xlt_course.prompts_and_code_switching as m; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules; "
        "assert 'PromptClassifier' in m.__all__"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# --------------------------------------------------------------------------- prompts


def test_prepend_prompt_shapes_values_and_gradient():
    X = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    P = torch.randn(2, 4, requires_grad=True)
    e, k = pc.prepend_prompt(X, mask, P)
    assert e.shape == (3, 7, 4) and k.shape == (3, 7) and k.dtype == mask.dtype
    assert torch.equal(e[:, 2:], X) and all(torch.equal(e[b, :2], P.detach()) for b in range(3))
    assert torch.equal(k[:, :2], torch.ones(3, 2, dtype=mask.dtype)) and torch.equal(k[:, 2:], mask)
    e.sum().backward()
    assert torch.equal(P.grad, torch.full_like(P, 3.0))
    with pytest.raises(ValueError, match="prompt"):
        pc.prepend_prompt(X, mask, torch.randn(2, 3))
    with pytest.raises(ValueError, match="attention_mask"):
        pc.prepend_prompt(X, mask[:, :4], P)


def test_init_prompt_draws_vocabulary_rows_without_touching_the_global_rng():
    W = torch.randn(50, 6)
    state = torch.get_rng_state()
    a, b, c = pc.init_prompt(W, 5, 0), pc.init_prompt(W, 5, 0), pc.init_prompt(W, 5, 1)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert all(bool((W - row).abs().sum(1).min() == 0) for row in a)
    assert len({tuple(r.tolist()) for r in a}) == 5  # distinct rows
    with pytest.raises(ValueError, match="m must"):
        pc.init_prompt(W, 0)


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
def test_prompt_classifier_trains_only_prompt_and_head(arch):
    enc = _tiny_encoder(arch)
    model = pc.PromptClassifier(enc, 3, 4)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"prompt", "head.weight", "head.bias"}
    assert pc.count_parameters(model) == 4 * 16 + 16 * 3 + 3
    assert (
        pc.count_parameters(model, trainable=False) == pc.count_parameters(enc, False) + 4 * 16 + 51
    )
    ids = torch.tensor([[2, 7, 8, 9, 3], [2, 11, 3, 0, 0]])
    mask = (ids != 0).long()
    logits = model(ids, mask)
    assert logits.shape == (2, 3)
    logits.sum().backward()
    assert model.prompt.grad is not None and model.prompt.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.parameters())
    # a text's logits do not depend on the padding it gets in a batch
    alone = model(ids[1:, :3], mask[1:, :3])
    assert torch.allclose(alone[0], logits[1], atol=1e-5)
    # the same seed gives the same prompt and head
    again = pc.PromptClassifier(enc, 3, 4)
    assert torch.equal(again.prompt, model.prompt) and torch.equal(
        again.head.weight, model.head.weight
    )


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
def test_prompt_classifier_matches_peft_prompt_tuning(arch):
    from peft import PromptTuningConfig, TaskType, get_peft_model

    enc = _tiny_encoder(arch)
    ours = pc.PromptClassifier(enc, 3, 5, seed=3).eval()
    ids = torch.tensor([[2, 7, 8, 9, 3], [2, 11, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        mine = ours.hidden_states(ids, mask)
    peft_model = get_peft_model(
        _tiny_encoder(arch),
        PromptTuningConfig(task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=5),
    ).eval()
    assert peft_model.get_nb_trainable_parameters()[0] == ours.prompt.numel()
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.copy_(ours.prompt)
        theirs = peft_model(input_ids=ids, attention_mask=mask).last_hidden_state
    real = torch.cat([torch.ones(2, 5, dtype=torch.bool), mask.bool()], 1)
    assert theirs.shape == mine.shape
    assert torch.allclose(mine[real], theirs[real], atol=1e-5)


def _cfg(model: str, **kw) -> pc.PromptConfig:
    base = dict(
        model=model, n_prompt=4, epochs=6, batch_size=8, learning_rate=0.1,
        head_learning_rate=0.05, warmup_ratio=0.0, device="cpu", num_threads=1, progress=False,
    )  # fmt: skip
    base.update(kw)
    return pc.PromptConfig(**base)


TRAIN = [make_split(64), make_split(64, "xx", seed=0)]
EVALS = {"en": make_split(40, seed=1), "xx": make_split(40, "xx", seed=1)}


def test_train_prompt_learns_is_deterministic_and_leaves_the_encoder_alone(tiny_folder):
    from transformers import AutoModel

    c = _cfg(tiny_folder)
    a = pc.train_prompt(c, TRAIN, EVALS, cache="off")
    b = pc.train_prompt(c, TRAIN, EVALS, cache="off")
    assert a.history == b.history
    for name in EVALS:
        assert np.array_equal(a.probs[name], b.probs[name])
        assert a.probs[name].shape == (40, 3) and np.allclose(a.probs[name].sum(1), 1, atol=1e-5)
        assert a.ids[name] == EVALS[name].ids
    warm = a.stats["head_warmup_loss"]
    assert len(warm) == 100 and warm[-1] < 0.8 * warm[0]  # the probe phase learns
    assert a.history[-1]["loss"] < a.history[0]["loss"]  # and the joint phase goes on
    assert a.accuracy["en"] > 0.5, a.accuracy  # chance is 1/3
    assert a.stats["trainable_params"] == 4 * 16 + 16 * 3 + 3
    assert a.stats["train_examples"] == 6 * 128
    assert a.prompt.shape == (4, 16)
    # the prompt moved away from its vocabulary initialisation; the encoder file is untouched
    enc = AutoModel.from_pretrained(tiny_folder)
    init = pc.init_prompt(enc.get_input_embeddings().weight, 4, 0).numpy()
    assert not np.allclose(a.prompt, init)
    other = pc.train_prompt(c.replace(seed=1), TRAIN, EVALS, cache="off")
    assert not np.array_equal(other.probs["en"], a.probs["en"])
    cold = pc.train_prompt(c.replace(head_warmup_epochs=0), TRAIN, EVALS, cache="off")
    assert cold.stats["head_warmup_loss"] == []
    assert cold.history[-1]["loss"] < 0.8 * cold.history[0]["loss"]


def test_train_prompt_cache_modes(tiny_folder):
    c = _cfg(tiny_folder, epochs=1)
    assert pc.train_prompt(c, TRAIN, EVALS, cache="only") is None
    first = pc.train_prompt(c, TRAIN, EVALS)
    assert not first.from_cache
    assert first.cache_path.parent == pc.paths.cache_dir() / pc.LESSON
    again = pc.train_prompt(c.replace(progress=True, num_threads=None), TRAIN, EVALS, cache="only")
    assert again.from_cache and again.config == c and again.accuracy == first.accuracy
    assert np.array_equal(again.prompt, first.prompt)
    for name in EVALS:
        assert np.array_equal(again.probs[name], first.probs[name])
    assert pc.train_prompt(c.replace(n_prompt=2), TRAIN, EVALS, cache="only") is None
    assert pc.train_prompt(c, TRAIN[:1], EVALS, cache="only") is None
    with pytest.raises(ValueError, match="cache"):
        pc.train_prompt(c, TRAIN, EVALS, cache="never")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_train_prompt_mixed_precision_paths_run(tiny_folder, precision):
    res = pc.train_prompt(
        _cfg(tiny_folder, epochs=1, precision=precision), TRAIN, EVALS, cache="off"
    )
    assert res.stats["precision"] == precision
    assert all(np.isfinite(p).all() for p in res.probs.values())


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(n_prompt=0), "n_prompt"),
        (dict(epochs=0), "epochs"),
        (dict(learning_rate=0), "learning_rate"),
        (dict(warmup_ratio=1.0), "warmup_ratio"),
        (dict(max_length=2), "max_length"),
        (dict(precision="fp8"), "precision"),
        (dict(device="tpu"), "device"),
    ],
)
def test_prompt_config_rejects_bad_values(change, match):
    with pytest.raises(ValueError, match=match):
        pc.PromptConfig(**change)


def test_parallel_train_and_eval_sets_share_items():
    splits = pc.parallel_train(("en", "fr", "de"), 50, seed=0)
    assert [s.lang for s in splits] == ["en", "fr", "de"]
    assert all(s.ids == splits[0].ids for s in splits) and len(splits[0]) == 50
    assert all(np.array_equal(s.labels, splits[0].labels) for s in splits)
    assert splits[0].texts != splits[1].texts
    assert pc.parallel_train(("en", "fr"), 50, seed=0)[0].ids != pc.parallel_train(("en", "fr"), 50, seed=1)[0].ids  # fmt: skip
    ev = pc.eval_sets(("en", "ja"), 30)
    assert list(ev) == ["en", "ja"] and ev["en"].ids == ev["ja"].ids and len(ev["ja"]) == 30
    assert len(pc.eval_sets(("en",), None, split="dev")["en"]) == 180


# --------------------------------------------------------------------------- code-switching

LEX = {
    "fr": {"open": ["ouvrir"], "file": ["fichier", "dossier"], "user": ["utilisateur"]},
    "es": {"file": ["archivo"], "disk": ["disco"]},
}


def test_word_pieces_round_trip():
    for text in ["Cannot open file “x.txt”: 3 errors", "", "  -- ", "déjà-vu naïve Größe"]:
        pieces = pc.word_pieces(text)
        assert "".join(pieces) == text
        assert len(pieces) % 2 == 1
        assert all(pc._WORD.fullmatch(w) for w in pieces[1::2])
    assert pc.word_pieces("Cannot open file.") == ["", "Cannot", " ", "open", " ", "file", "."]


def test_code_switch_reference_rules():
    toks = ["Cannot", "open", "File", "on", "disk", "for", "user", "root"]
    assert pc.eligible_positions(toks, LEX) == [1, 2, 4, 6]
    for r, k in [(0.0, 0), (0.1, 0), (0.125, 1), (0.25, 1), (0.5, 2), (0.625, 3), (1.0, 4)]:
        for seed in range(20):
            out = pc.code_switch(toks, LEX, r, seed)
            assert sum(a != b for a, b in zip(out, toks, strict=True)) == k
            assert out == pc.code_switch(toks, LEX, r, seed)
            assert all(out[i] == toks[i] for i in (0, 3, 5, 7))
    with pytest.raises(ValueError, match="r must"):
        pc.code_switch(toks, LEX, 1.5, 0)
    state = random.getstate()
    pc.code_switch(toks, LEX, 0.5, 0)
    assert random.getstate() == state
    assert math.floor(0.5 * 5 + 0.5) == 3 and round(0.5 * 5) == 2  # why the rule is spelled out


def test_code_switch_text_and_split():
    text = "Cannot open file: disk full"
    out = pc.code_switch_text(text, LEX, 1.0, 0)
    assert out.startswith("Cannot ") and ": " in out and out.endswith(" full")
    assert "open" not in out and "disk" not in out
    split = TopicSplit("en", [text, "user file", "nothing here"], np.array([0, 1, 2]), LABELS, ["a", "b", "c"])  # fmt: skip
    cs = pc.code_switch_split(split, LEX, 1.0, seed=0)
    assert cs.lang == "en+cs" and cs.ids == split.ids and np.array_equal(cs.labels, split.labels)
    assert cs.texts[2] == "nothing here" and cs.texts[0] != text
    # an item is switched the same way whatever else is in the split
    part = TopicSplit("en", split.texts[1:], split.labels[1:], LABELS, split.ids[1:])
    assert pc.code_switch_split(part, LEX, 0.5, seed=4).texts == pc.code_switch_split(split, LEX, 0.5, seed=4).texts[1:]  # fmt: skip


def test_split_lexicon_is_a_partition_by_english_word():
    lex = {
        "fr": {w: [w + "_fr"] for w in "abcdefghij"},
        "es": {w: [w + "_es"] for w in "efghijklmn"},
    }
    aug, held = pc.split_lexicon(lex, 0.5, seed=0)
    words_a = {w for x in aug.values() for w in x}
    words_h = {w for x in held.values() for w in x}
    assert not words_a & words_h and words_a | words_h == set("abcdefghijklmn")
    assert len(words_h) == 7
    for lang in lex:
        assert {**aug[lang], **held[lang]} == lex[lang]
    assert pc.split_lexicon(lex, 0.5, seed=0) == (aug, held)
    assert pc.split_lexicon(lex, 0.5, seed=1) != (aug, held)


def test_build_lexicons(built_data):
    lex = pc.build_lexicons(("fr", "es"))
    assert set(lex) == {"fr", "es"} and len(lex["fr"]) > 5000 and len(lex["es"]) > 10000
    for entries in lex.values():
        for word, ts in entries.items():
            assert 1 <= len(ts) <= 3 and word not in ts
            assert pc._WORD.fullmatch(word) and all(pc._WORD.fullmatch(t) for t in ts)
    assert lex["fr"]["user"] == ["utilisateur"] and "archivo" in lex["es"]["file"]
    assert pc.build_lexicons(("fr", "es")) == lex  # from the cache file
    with pytest.raises(ValueError, match="languages"):
        pc.build_lexicons(("de",))


# --------------------------------------------------------------------------- exercise 1


def _ref(grade_id, name):
    return solution_namespace(NB, grade_id)[name]


def test_ex1_reference_and_variants_pass():
    run_test_cell(NB, "ex1_prepend_tests", prepend_prompt=_ref("ex1_prepend", "prepend_prompt"))
    run_test_cell(NB, "ex1_prepend_tests", prepend_prompt=pc.prepend_prompt)

    def with_repeat(inputs_embeds, attention_mask, prompt):
        B = inputs_embeds.shape[0]
        p = prompt.repeat(B, 1).view(B, *prompt.shape)
        ones = attention_mask.new_ones((B, prompt.shape[0]))
        return torch.cat((p, inputs_embeds), 1), torch.cat((ones, attention_mask), 1)

    def with_pad(inputs_embeds, attention_mask, prompt):
        B, T, d = inputs_embeds.shape
        m = prompt.shape[0]
        embeds = torch.nn.functional.pad(inputs_embeds, (0, 0, m, 0)) + torch.nn.functional.pad(
            prompt[None].expand(B, m, d), (0, 0, 0, T)
        )
        mask = torch.nn.functional.pad(attention_mask, (m, 0), value=1)
        return embeds, mask

    def with_to_device(inputs_embeds, attention_mask, prompt):
        B, m = inputs_embeds.shape[0], prompt.shape[0]
        ones = torch.ones(B, m).to(attention_mask)  # built on the CPU, then moved and cast
        return torch.cat([prompt.expand(B, -1, -1), inputs_embeds], 1), torch.cat(
            [ones, attention_mask], 1
        )

    def with_ones_like(inputs_embeds, attention_mask, prompt):
        B, m = inputs_embeds.shape[0], prompt.shape[0]
        ones = torch.ones_like(attention_mask[:, :1]).expand(B, m)
        embeds = torch.stack([torch.cat([prompt, x]) for x in inputs_embeds])
        return embeds, torch.cat([ones, attention_mask], 1)

    def checks_the_mask_values(inputs_embeds, attention_mask, prompt):
        # reads values (cannot run on meta tensors): the device check must not judge it
        if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
            raise ValueError("attention_mask holds values other than 0 and 1")
        return with_repeat(inputs_embeds, attention_mask, prompt)

    run_test_cell(NB, "ex1_prepend_tests", prepend_prompt=with_repeat)
    run_test_cell(NB, "ex1_prepend_tests", prepend_prompt=checks_the_mask_values)
    run_test_cell(NB, "ex1_prepend_tests", prepend_prompt=with_pad)
    run_test_cell(NB, "ex1_prepend_tests", prepend_prompt=with_to_device)
    run_test_cell(NB, "ex1_prepend_tests", prepend_prompt=with_ones_like)


def _not_extended(inputs_embeds, attention_mask, prompt):
    B = inputs_embeds.shape[0]
    return torch.cat([prompt.expand(B, -1, -1), inputs_embeds], 1), attention_mask


def _zeros(inputs_embeds, attention_mask, prompt):
    B, m = inputs_embeds.shape[0], prompt.shape[0]
    z = torch.zeros((B, m), dtype=attention_mask.dtype)
    return torch.cat([prompt.expand(B, -1, -1), inputs_embeds], 1), torch.cat(
        [z, attention_mask], 1
    )


def _suffix(inputs_embeds, attention_mask, prompt):
    B, m = inputs_embeds.shape[0], prompt.shape[0]
    ones = torch.ones((B, m), dtype=attention_mask.dtype)
    return torch.cat([inputs_embeds, prompt.expand(B, -1, -1)], 1), torch.cat(
        [attention_mask, ones], 1
    )


def _mask_after(inputs_embeds, attention_mask, prompt):
    B, m = inputs_embeds.shape[0], prompt.shape[0]
    ones = torch.ones((B, m), dtype=attention_mask.dtype)
    return torch.cat([prompt.expand(B, -1, -1), inputs_embeds], 1), torch.cat(
        [attention_mask, ones], 1
    )


def _batch_axis(inputs_embeds, attention_mask, prompt):
    m = prompt.shape[0]
    ones = torch.ones((m, attention_mask.shape[1]), dtype=attention_mask.dtype)
    p = prompt[:, None, :].expand(m, inputs_embeds.shape[1], -1)
    return torch.cat([p, inputs_embeds], 0), torch.cat([ones, attention_mask], 0)


def _detached(inputs_embeds, attention_mask, prompt):
    return pc.prepend_prompt(inputs_embeds, attention_mask, prompt.detach())


def _long_mask(inputs_embeds, attention_mask, prompt):
    e, k = pc.prepend_prompt(inputs_embeds, attention_mask.long(), prompt)
    return e, k


def _first_row_only(inputs_embeds, attention_mask, prompt):
    e, k = pc.prepend_prompt(inputs_embeds, attention_mask, prompt)
    e = e.clone()
    e[1:, : prompt.shape[0]] = 0
    return e, k


def _mask_on_cpu(inputs_embeds, attention_mask, prompt):
    """Builds the prompt's ones without device=: breaks as soon as the batch is on a GPU."""
    B, m = inputs_embeds.shape[0], prompt.shape[0]
    ones = torch.ones((B, m), dtype=attention_mask.dtype)
    return torch.cat([prompt.expand(B, -1, -1), inputs_embeds], 1), torch.cat(
        [ones, attention_mask], 1
    )


@pytest.mark.parametrize(
    "wrong",
    [_not_extended, _zeros, _suffix, _mask_after, _batch_axis, _detached, _long_mask, _first_row_only,
     _mask_on_cpu],
    ids=["mask-not-extended", "mask-zeros", "suffix", "mask-after", "batch-axis", "detached",
         "mask-dtype", "prompt-on-first-row", "mask-on-cpu"],
)  # fmt: skip
def test_ex1_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex1_prepend_tests", prepend_prompt=wrong)


def test_ex1_mask_on_cpu_gets_the_device_message():
    with pytest.raises(AssertionError, match="attention_mask's device"):
        run_test_cell(NB, "ex1_prepend_tests", prepend_prompt=_mask_on_cpu)


def test_ex1_stub_gets_friendly_message():
    def prepend_prompt(inputs_embeds, attention_mask, prompt):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex1_prepend_tests", prepend_prompt=prepend_prompt)


# --------------------------------------------------------------------------- exercise 2


def test_ex2_reference_and_variants_pass():
    run_test_cell(NB, "ex2_prompt_module_tests", PromptClassifier=_ref("ex2_prompt_module", "PromptClassifier"))  # fmt: skip
    run_test_cell(NB, "ex2_prompt_module_tests", PromptClassifier=pc.PromptClassifier)

    class WithEinsumAndFirstRows(torch.nn.Module):
        def __init__(self, encoder, num_labels, n_prompt):
            super().__init__()
            self.encoder = encoder.requires_grad_(False)
            self.prompt = torch.nn.Parameter(encoder.embeddings.word_embeddings.weight[:n_prompt].detach().clone())  # fmt: skip
            self.head = torch.nn.Linear(encoder.config.hidden_size, num_labels)

        def forward(self, input_ids, attention_mask):
            x = self.encoder.embeddings.word_embeddings(input_ids)
            x, mask = pc.prepend_prompt(x, attention_mask, self.prompt)
            h = self.encoder(inputs_embeds=x, attention_mask=mask)[0][:, self.prompt.shape[0] :]
            a = attention_mask.float()
            return self.head(torch.einsum("btd,bt->bd", h, a) / a.sum(1, keepdim=True))

    run_test_cell(NB, "ex2_prompt_module_tests", PromptClassifier=WithEinsumAndFirstRows)
    run_test_cell(NB, "ex2_prompt_module_tests", PromptClassifier=_RealTokensByRow)


class _Base(torch.nn.Module):
    """A correct model whose pieces the mistakes below override."""

    freeze = True

    def __init__(self, encoder, num_labels, n_prompt):
        super().__init__()
        self.encoder = encoder
        if self.freeze:
            for p in encoder.parameters():
                p.requires_grad_(False)
        self.prompt = torch.nn.Parameter(self.init(encoder, n_prompt))
        self.head = torch.nn.Linear(encoder.config.hidden_size, num_labels)

    def init(self, encoder, n_prompt):
        return encoder.get_input_embeddings().weight.detach()[:n_prompt].clone()

    def extend(self, x, mask):
        return pc.prepend_prompt(x, mask, self.prompt)

    def pool(self, hidden, mask):
        hidden = hidden[:, self.prompt.shape[0] :]
        w = mask.unsqueeze(-1).float()
        return (hidden * w).sum(1) / w.sum(1)

    def forward(self, input_ids, attention_mask):
        x = self.encoder.get_input_embeddings()(input_ids)
        x, mask = self.extend(x, attention_mask)
        hidden = self.encoder(inputs_embeds=x, attention_mask=mask).last_hidden_state
        return self.head(self.pool(hidden, attention_mask))


class _RealTokensByRow(_Base):
    """Correct: averages each row's positions where the mask is 1, wherever they are."""

    def pool(self, hidden, mask):
        hidden = hidden[:, self.prompt.shape[0] :]
        return torch.stack([h[k.bool()].mean(0) for h, k in zip(hidden, mask, strict=True)])


class _LengthSlice(_Base):
    """Averages the first mask.sum() positions: right only when the batch is right-padded."""

    def pool(self, hidden, mask):
        hidden = hidden[:, self.prompt.shape[0] :]
        return torch.stack([h[: int(n)].mean(0) for h, n in zip(hidden, mask.sum(1), strict=True)])


class _NotFrozen(_Base):
    freeze = False


class _RandomInit(_Base):
    def init(self, encoder, n_prompt):
        return torch.randn(n_prompt, encoder.config.hidden_size)


class _MaskNotExtended(_Base):
    def extend(self, x, mask):
        e, _ = pc.prepend_prompt(x, mask, self.prompt)
        return e, mask


class _MaskZeros(_Base):
    def extend(self, x, mask):
        e, k = pc.prepend_prompt(x, mask, self.prompt)
        k = k.clone()
        k[:, : self.prompt.shape[0]] = 0
        return e, k


class _Suffix(_Base):
    def extend(self, x, mask):
        B = x.shape[0]
        ones = torch.ones((B, self.prompt.shape[0]), dtype=mask.dtype)
        return torch.cat([x, self.prompt.expand(B, -1, -1)], 1), torch.cat([mask, ones], 1)

    def pool(self, hidden, mask):
        hidden = hidden[:, : mask.shape[1]]
        w = mask.unsqueeze(-1).float()
        return (hidden * w).sum(1) / w.sum(1)


class _PoolWithPrompt(_Base):
    def pool(self, hidden, mask):
        full = torch.cat([torch.ones(mask.shape[0], self.prompt.shape[0]), mask.float()], 1)
        w = full.unsqueeze(-1)
        return (hidden * w).sum(1) / w.sum(1)


class _PoolOverPadding(_Base):
    def pool(self, hidden, mask):
        return hidden[:, self.prompt.shape[0] :].mean(1)


class _FirstPosition(_Base):
    def pool(self, hidden, mask):
        return hidden[:, 0]


class _ClsAfterPrompt(_Base):
    def pool(self, hidden, mask):
        return hidden[:, self.prompt.shape[0]]


class _SharedMemory(_Base):
    def init(self, encoder, n_prompt):
        return encoder.get_input_embeddings().weight[:n_prompt]  # a view: trains the embeddings


class _ExtraTrainable(_Base):
    def __init__(self, encoder, num_labels, n_prompt):
        super().__init__(encoder, num_labels, n_prompt)
        self.encoder.get_input_embeddings().weight.requires_grad_(True)


@pytest.mark.parametrize(
    "wrong",
    [_NotFrozen, _RandomInit, _MaskNotExtended, _MaskZeros, _Suffix, _PoolWithPrompt,
     _PoolOverPadding, _FirstPosition, _ClsAfterPrompt, _ExtraTrainable, _SharedMemory,
     _LengthSlice],
)  # fmt: skip
def test_ex2_plausible_mistakes_fail(wrong):
    # a crash (e.g. a mask that does not fit the input) fails the graded cell just as well
    with pytest.raises((AssertionError, RuntimeError, ValueError, IndexError)):
        run_test_cell(NB, "ex2_prompt_module_tests", PromptClassifier=wrong)


def test_ex2_length_slice_gets_the_left_padding_message():
    with pytest.raises(AssertionError, match="left-padded"):
        run_test_cell(NB, "ex2_prompt_module_tests", PromptClassifier=_LengthSlice)


def test_ex2_correct_base_passes():
    run_test_cell(NB, "ex2_prompt_module_tests", PromptClassifier=_Base)


def test_ex2_shared_memory_fails_the_visible_checks():

    with pytest.raises(AssertionError, match="shares memory"):
        run_visible_checks(NB, "ex2_prompt_module_tests", PromptClassifier=_SharedMemory)


def test_ex2_statement_never_leads_to_an_xlt_course_import():
    # The grader scores an answer that uses xlt_course's implementation 0 (issue 16).
    cells = json.loads(NB.read_text(encoding="utf-8"))["cells"]
    text = " ".join(" ".join("".join(c["source"]).split()) for c in cells)
    assert "import `prepend_prompt` from `xlt_course" not in text
    assert "Do not import anything from `xlt_course` in this cell" in text


# --------------------------------------------------------------------------- exercise 3


def test_ex3_reference_and_variants_pass():
    run_test_cell(NB, "ex3_code_switch_tests", code_switch=_ref("ex3_code_switch", "code_switch"))
    run_test_cell(NB, "ex3_code_switch_tests", code_switch=pc.code_switch)

    def with_numpy(tokens, lexicons, r, seed):
        rng = np.random.default_rng(seed)
        eligible = [
            i for i, t in enumerate(tokens) if any(t.lower() in x for x in lexicons.values())
        ]
        k = int(r * len(eligible) + 0.5)
        out = list(tokens)
        for i in rng.permutation(eligible)[:k]:
            w = tokens[int(i)].lower()
            langs = sorted(lang for lang, x in lexicons.items() if w in x)
            options = lexicons[langs[rng.integers(len(langs))]][w]
            out[int(i)] = options[rng.integers(len(options))]
        return out

    def with_shuffle(tokens, lexicons, r, seed):
        rng = random.Random(seed)
        eligible = [
            i for i, t in enumerate(tokens) if any(t.lower() in x for x in lexicons.values())
        ]
        rng.shuffle(eligible)
        chosen = eligible[: math.floor(r * len(eligible) + 0.5)]
        out = tokens.copy()
        for i in sorted(chosen):
            w = tokens[i].lower()
            lang = rng.choice([lang for lang in lexicons if w in lexicons[lang]])
            out[i] = rng.choice(lexicons[lang][w])
        return out

    run_test_cell(NB, "ex3_code_switch_tests", code_switch=with_numpy)
    run_test_cell(NB, "ex3_code_switch_tests", code_switch=with_shuffle)


def _eligible(tokens, lexicons):
    return [i for i, t in enumerate(tokens) if any(t.lower() in x for x in lexicons.values())]


def _sorted_positions(tokens, lexicons, r, seed):
    eligible = _eligible(tokens, lexicons)
    k = math.floor(r * len(eligible) + 0.5)
    rng = np.random.default_rng(seed)
    out = list(tokens)
    for i in sorted(rng.choice(eligible, size=k, replace=False).tolist() if k else []):
        w = tokens[i].lower()
        langs = [lang for lang in lexicons if w in lexicons[lang]]
        options = lexicons[langs[rng.integers(len(langs))]][w]
        out[i] = options[rng.integers(len(options))]
    return out


def _decimal_round(tokens, lexicons, r, seed):
    eligible = _eligible(tokens, lexicons)
    k = int((Decimal(str(r)) * len(eligible)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    rng = random.Random(seed)
    out = list(tokens)
    for i in rng.sample(eligible, k):
        w = tokens[i].lower()
        out[i] = rng.choice(lexicons[rng.choice([x for x in lexicons if w in lexicons[x]])][w])
    return out


@pytest.mark.parametrize(
    "correct", [_sorted_positions, _decimal_round], ids=["numpy-sorted-positions", "decimal-round"]
)
def test_ex3_correct_variants_pass(correct):
    run_test_cell(NB, "ex3_code_switch_tests", code_switch=correct)


def _switch(tokens, lexicons, rng, k_of, pick_positions=None, pool=False, lower=True):
    key = (lambda t: t.lower()) if lower else (lambda t: t)
    eligible = [i for i, t in enumerate(tokens) if any(key(t) in x for x in lexicons.values())]
    k = k_of(len(eligible), len(tokens))
    chosen = pick_positions(eligible, k) if pick_positions else rng.sample(eligible, k)
    out = list(tokens)
    for i in chosen:
        w = key(tokens[i])
        if pool:
            out[i] = rng.choice([t for x in lexicons.values() for t in x.get(w, [])])
        else:
            lang = rng.choice([lang for lang in lexicons if w in lexicons[lang]])
            out[i] = rng.choice(lexicons[lang][w])
    return out


MISTAKES = {
    "r-over-all-tokens": lambda t, lx, r, s: _switch(
        t, lx, random.Random(s), lambda n, total: min(n, math.floor(r * total + 0.5))
    ),
    "bankers-round": lambda t, lx, r, s: _switch(t, lx, random.Random(s), lambda n, _: round(r * n)),
    "floor": lambda t, lx, r, s: _switch(t, lx, random.Random(s), lambda n, _: int(r * n)),
    "ceil": lambda t, lx, r, s: _switch(t, lx, random.Random(s), lambda n, _: math.ceil(r * n)),
    "unseeded": lambda t, lx, r, s: _switch(
        t, lx, random.Random(), lambda n, _: math.floor(r * n + 0.5)
    ),
    "global-random": lambda t, lx, r, s: _switch(
        t, lx, random, lambda n, _: math.floor(r * n + 0.5)
    ),
    "first-k": lambda t, lx, r, s: _switch(
        t, lx, random.Random(s), lambda n, _: math.floor(r * n + 0.5),
        pick_positions=lambda e, k: e[:k],
    ),
    "pooled-translations": lambda t, lx, r, s: _switch(
        t, lx, random.Random(s), lambda n, _: math.floor(r * n + 0.5), pool=True
    ),
    "case-sensitive": lambda t, lx, r, s: _switch(
        t, lx, random.Random(s), lambda n, _: math.floor(r * n + 0.5), lower=False
    ),
}  # fmt: skip


def _bernoulli(tokens, lexicons, r, seed):
    rng = random.Random(seed)
    out = list(tokens)
    for i, t in enumerate(tokens):
        w = t.lower()
        langs = [lang for lang in lexicons if w in lexicons[lang]]
        if langs and rng.random() < r:
            out[i] = rng.choice(lexicons[rng.choice(langs)][w])
    return out


def _global_seeded(tokens, lexicons, r, seed):
    random.seed(seed)
    return _switch(tokens, lexicons, random, lambda n, _: math.floor(r * n + 0.5))


def _touches_unknown(tokens, lexicons, r, seed):
    # positions drawn among all tokens, an unknown word replaced by a random translation
    rng = random.Random(seed)
    eligible = [i for i, t in enumerate(tokens) if any(t.lower() in x for x in lexicons.values())]
    k = math.floor(r * len(eligible) + 0.5)
    out = list(tokens)
    everything = [t for x in lexicons.values() for ts in x.values() for t in ts]
    for i in rng.sample(range(len(tokens)), min(k, len(tokens))):
        w = tokens[i].lower()
        langs = [lang for lang in lexicons if w in lexicons[lang]]
        out[i] = rng.choice(lexicons[rng.choice(langs)][w]) if langs else rng.choice(everything)
    return out


def _in_place_switch(tokens, lexicons, r, seed):
    out = pc.code_switch(tokens, lexicons, r, seed)
    tokens[:] = out
    return tokens


def _same_everywhere(tokens, lexicons, r, seed):
    # seeds the generator with a constant: deterministic but ignores the seed
    return pc.code_switch(tokens, lexicons, r, 0)


def _per_word_type(tokens, lexicons, r, seed, *, keep_translation=True):
    # draws once per distinct word and reuses the draw at its later occurrences
    eligible = _eligible(tokens, lexicons)
    rng = random.Random(seed)
    out, lang_of, word_of = list(tokens), {}, {}
    for i in rng.sample(eligible, math.floor(r * len(eligible) + 0.5)):
        w = tokens[i].lower()
        if w not in lang_of:
            lang_of[w] = rng.choice([lang for lang in lexicons if w in lexicons[lang]])
            word_of[w] = rng.choice(lexicons[lang_of[w]][w])
        out[i] = word_of[w] if keep_translation else rng.choice(lexicons[lang_of[w]][w])
    return out


def _shuffles_lexicon(tokens, lexicons, r, seed):
    # shuffles the caller's translation lists in place, then takes the first one
    eligible = _eligible(tokens, lexicons)
    rng = random.Random(seed)
    out = list(tokens)
    for i in rng.sample(eligible, math.floor(r * len(eligible) + 0.5)):
        w = tokens[i].lower()
        options = lexicons[rng.choice([lang for lang in lexicons if w in lexicons[lang]])][w]
        rng.shuffle(options)
        out[i] = options[0]
    return out


def _strips_punctuation(tokens, lexicons, r, seed):
    """Looks up token.strip(punctuation).lower(): makes "a," eligible, against rule 1."""
    import string

    def key(t):
        return t.strip(string.punctuation + " ").lower()

    rng = random.Random(seed)
    eligible = [i for i, t in enumerate(tokens) if any(key(t) in x for x in lexicons.values())]
    out = list(tokens)
    for i in rng.sample(eligible, math.floor(r * len(eligible) + 0.5)):
        w = key(tokens[i])
        out[i] = rng.choice(lexicons[rng.choice([x for x in lexicons if w in lexicons[x]])][w])
    return out


@pytest.mark.parametrize(
    "wrong, message",
    [(_per_word_type, "repeated word"),
     (functools.partial(_per_word_type, keep_translation=False), "repeated word"),
     (_shuffles_lexicon, "lexicons")],
    ids=["per-type-translation", "per-type-language", "shuffles-lexicon"],
)  # fmt: skip
def test_ex3_new_mistakes_get_their_message(wrong, message):
    with pytest.raises(AssertionError, match=message):
        run_test_cell(NB, "ex3_code_switch_tests", code_switch=wrong)


@pytest.mark.parametrize(
    "wrong",
    [*MISTAKES.values(), _bernoulli, _global_seeded, _touches_unknown, _in_place_switch, _same_everywhere,
     _per_word_type, functools.partial(_per_word_type, keep_translation=False), _shuffles_lexicon,
     _strips_punctuation],
    ids=[*MISTAKES, "bernoulli", "global-seed", "touches-unknown", "in-place", "ignores-seed",
         "per-type-translation", "per-type-language", "shuffles-lexicon", "strips-punctuation"],
)  # fmt: skip
def test_ex3_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex3_code_switch_tests", code_switch=wrong)


def test_ex2_hidden_prompt_gets_the_mask_hint():

    with pytest.raises(AssertionError, match="hides it"):
        run_visible_checks(NB, "ex2_prompt_module_tests", PromptClassifier=_MaskZeros)


def test_ex3_ignoring_the_seed_gets_the_seed_hint():

    def same_everywhere(tokens, lexicons, r, seed):
        return _same_everywhere(tokens, lexicons, r, seed)

    with pytest.raises(AssertionError, match="seed your private generator"):
        run_visible_checks(NB, "ex3_code_switch_tests", code_switch=same_everywhere)


def test_ex3_pooled_translations_fail_the_visible_checks():

    with pytest.raises(AssertionError, match="language first"):
        run_visible_checks(NB, "ex3_code_switch_tests", code_switch=MISTAKES["pooled-translations"])


def test_ex3_stub_gets_friendly_message():
    def code_switch(tokens, lexicons, r, seed):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex3_code_switch_tests", code_switch=code_switch)
