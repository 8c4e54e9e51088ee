"""The engine's CPU shortcuts: exact where they claim it, the same distribution where not."""

from __future__ import annotations

import contextlib

import pytest
import torch

from tests.tiny_models import tiny_config
from xlt_course import fastpath
from xlt_course import training as tr


def _classifier(arch: str, dropout: float = 0.0, seed: int = 0):
    from transformers import BertForSequenceClassification, XLMRobertaForSequenceClassification

    cls = BertForSequenceClassification if arch == "bert" else XLMRobertaForSequenceClassification
    torch.manual_seed(seed)
    config = tiny_config(arch, dropout=dropout, num_labels=3)
    config._attn_implementation = "sdpa"
    model = cls(config)
    return model, tr._make_classifier(model, "cls")


def _batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 60, (6, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # padded rows: the CLS query must not see them
    mask[4, 2:] = 0
    ids[mask == 0] = 0
    return ids, mask, torch.randint(0, 3, (6,), generator=g)


def _logits_and_grads(classifier, ids, mask, y):
    classifier.zero_grad()
    logits = classifier(ids, mask)
    torch.nn.functional.cross_entropy(logits, y).backward()
    grads = {n: p.grad.clone() for n, p in classifier.named_parameters() if p.grad is not None}
    return logits.detach(), grads


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
def test_cls_only_last_layer_gives_the_full_models_logits_and_gradients(arch):
    model, classifier = _classifier(arch)
    assert classifier.reads_first_position
    classifier.train()  # dropout 0: training mode, deterministic
    ids, mask, y = _batch()
    logits, grads = _logits_and_grads(classifier, ids, mask, y)
    with fastpath.cpu_fast_paths(model, cls_only=True) as on:
        assert on == {"dropout": False, "attention": True, "cls_only": True}
        fast_logits, fast_grads = _logits_and_grads(classifier, ids, mask, y)
    torch.testing.assert_close(fast_logits, logits, atol=1e-6, rtol=1e-5)
    assert fast_grads.keys() == grads.keys()
    for name, g in grads.items():
        torch.testing.assert_close(fast_grads[name], g, atol=1e-6, rtol=1e-4, msg=name)


def test_fast_paths_leave_the_model_as_they_found_it():
    model, classifier = _classifier("xlmr", dropout=0.1)
    keys = list(model.state_dict())
    ids, mask, _ = _batch()
    model.eval()
    with torch.no_grad():
        before = classifier(ids, mask)
    with fastpath.cpu_fast_paths(model, cls_only=True) as on:
        assert on == {"dropout": True, "attention": True, "cls_only": True}
        assert any(isinstance(m, fastpath.FastDropout) for m in model.modules())
    assert not any(isinstance(m, fastpath.FastDropout) for m in model.modules())
    assert model.config._attn_implementation == "sdpa"
    assert "forward" not in vars(model.base_model.encoder.layer[-1])
    assert list(model.state_dict()) == keys
    with torch.no_grad():
        torch.testing.assert_close(classifier(ids, mask), before)


def test_a_model_whose_head_reads_more_than_position_0_keeps_its_last_layer():
    from transformers import BertForTokenClassification, DistilBertConfig, DistilBertModel

    tokens = BertForTokenClassification(tiny_config("bert", num_labels=3))
    tokens.config.xlt_task = "tokens"
    assert not tr._make_classifier(tokens, "cls").reads_first_position
    other = DistilBertModel(DistilBertConfig(vocab_size=60, dim=16, n_layers=1, n_heads=2,
                                             hidden_dim=32))  # fmt: skip
    assert fastpath.cls_only_last_layer(other) is False
    with fastpath.cpu_fast_paths(other, cls_only=True) as on:
        assert not on["cls_only"]


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_fast_dropout_drops_each_element_independently_with_probability_p(p):
    torch.manual_seed(0)
    n = 400_000
    x = torch.ones(n, requires_grad=True)
    y = fastpath.fast_dropout(x, p)
    dropped = y == 0
    sd = (p * (1 - p) / n) ** 0.5
    assert abs(dropped.float().mean().item() - p) < 6 * sd
    torch.testing.assert_close(y[~dropped], torch.full_like(y[~dropped], 1 / (1 - p)))
    # the four 16-bit lanes of one 64-bit draw are independent of each other
    lanes = dropped.view(-1, 4).float()
    for a, b in [(0, 1), (1, 2), (2, 3), (0, 3)]:
        both = (lanes[:, a] * lanes[:, b]).mean().item()
        assert abs(both - p * p) < 6 * (p * p * (1 - p * p) / (n // 4)) ** 0.5
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # d(x * mask / (1-p)) / dx
    assert fastpath.fast_dropout(x, 0.0) is x


def test_fast_dropout_draws_from_the_seeded_generator():
    x = torch.randn(3, 50)
    torch.manual_seed(5)
    a = fastpath.fast_dropout(x, 0.3)
    torch.manual_seed(5)
    torch.testing.assert_close(fastpath.fast_dropout(x, 0.3), a)


@pytest.mark.parametrize("mask_kind", ["bool", "additive", "none"])
def test_attention_forward_is_dropout_on_the_softmax_probabilities(mask_kind):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g) for _ in range(3))
    keep = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    keep[1, ..., 3:] = False
    mask = {
        "bool": keep,
        "additive": torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min),
        "none": None,
    }[mask_kind]
    module = torch.nn.Module()
    out, _ = fastpath.attention_forward(module, q, k, v, mask, dropout=0.0, scaling=0.5)
    ref, _ = sdpa_attention_forward(module, q, k, v, mask, dropout=0.0, scaling=0.5)
    torch.testing.assert_close(out, ref)

    scores = (q @ k.transpose(-1, -2)) * 0.5
    if mask_kind != "none":
        scores = scores.masked_fill(~keep, float("-inf"))
    torch.manual_seed(7)
    want = (fastpath.fast_dropout(scores.softmax(-1), 0.25) @ v).transpose(1, 2)
    torch.manual_seed(7)
    out, _ = fastpath.attention_forward(module, q, k, v, mask, dropout=0.25, scaling=0.5)
    torch.testing.assert_close(out, want)
    assert out.shape == (2, 5, 3, 4)  # (batch, q_len, heads, head_dim), as transformers' SDPA


def test_the_switch_is_not_part_of_the_cache_key_unless_it_is_off(tmp_path):
    from tests.tiny_models import make_split

    train, test = make_split(20), make_split(10, seed=1)
    on = tr.FinetuneConfig()
    assert "cpu_fast_paths" not in tr._key_parts(on, "m", train, {"en": test})["config"]
    off = tr._key_parts(on.replace(cpu_fast_paths=False), "m", train, {"en": test})
    assert off["config"]["cpu_fast_paths"] is False


def _train_steps(flat: bool, steps: int = 6, accumulation: int = 1, precision: str = "fp32"):
    """Train the tiny XLM-R classifier through the engine's own step; return its parameters."""
    model, classifier = _classifier("xlmr", dropout=0.1, seed=3)
    cfg = tr.FinetuneConfig(weight_decay=0.01, head_learning_rate=3e-3)
    groups = tr._param_groups(model, cfg)
    runtime = tr.Runtime("cpu", precision)
    g = torch.Generator().manual_seed(5)
    torch.manual_seed(11)  # dropout's stream
    classifier.train()
    order = [p for p in model.parameters() if p.requires_grad]  # clip_grad_norm_'s order
    flat_ctx = fastpath.flat_parameters(groups, model=model)
    with flat_ctx if flat else contextlib.nullcontext(order) as params:
        opt, sched = tr.make_optimizer(
            params.groups if flat else groups, lr=1e-2, total_steps=steps, warmup_steps=2
        )
        for _ in range(steps):
            for _ in range(accumulation):
                ids = torch.randint(4, 60, (5, 7), generator=g)
                y = torch.randint(0, 3, (5,), generator=g)
                with runtime.autocast():
                    logits = classifier(ids, torch.ones_like(ids))
                loss = torch.nn.functional.cross_entropy(logits.float(), y)
                runtime.backward(loss)
            # max norm 0.05: every step clips
            runtime.step(opt, sched, params, 0.05)
    return model


@pytest.mark.parametrize(("accumulation", "precision"), [(1, "fp32"), (2, "fp32"), (2, "bf16")])
def test_flat_parameters_train_the_same_parameters_bit_for_bit(
    accumulation, precision, monkeypatch
):
    written = []
    write = fastpath.FlatParameters._write_weight_grad
    monkeypatch.setattr(
        fastpath.FlatParameters,
        "_write_weight_grad",
        lambda self, w, g, x: written.append(id(w)) or write(self, w, g, x),
    )
    plain = _train_steps(False, accumulation=accumulation, precision=precision).state_dict()
    flat = _train_steps(True, accumulation=accumulation, precision=precision).state_dict()
    assert plain.keys() == flat.keys()
    moved = 0
    fresh = _classifier("xlmr", dropout=0.1, seed=3)[0].state_dict()
    for name, value in plain.items():
        assert torch.equal(flat[name], value), name
        moved += not torch.equal(value, fresh[name])
    assert moved > 20  # the steps did train (embeddings, encoder and head)
    # every linear layer wrote its weight's gradient itself, each micro-batch of each step
    # (under bf16 autocast too: the encoder's products in bf16, the head's in fp32)
    model = _classifier("xlmr")[0]
    linears = [m for m in model.modules() if type(m) is torch.nn.Linear]
    assert len(written) == 6 * accumulation * len(linears)


def test_a_linear_layer_that_no_backward_reached_gets_a_zero_gradient():
    model, classifier = _classifier("bert")
    groups = tr._param_groups(model, tr.FinetuneConfig())
    ids, mask, y = _batch()
    pooler = model.bert.pooler.dense
    with fastpath.flat_parameters(groups, model=model) as flat:
        assert "forward" in vars(pooler) and len(flat.linears) > 4
        torch.nn.functional.cross_entropy(classifier(ids, mask), y).backward()
        flat.finish_backward()
        assert pooler.weight.grad.any()
        flat.zero_grad()
        # a step whose loss does not reach the pooler: its old gradient must not survive
        classifier(ids, mask)  # noqa: B018 (the forward alone)
        model.bert.embeddings.word_embeddings.weight.sum().backward()
        flat.finish_backward()
        assert not pooler.weight.grad.any()
    assert "forward" not in vars(pooler) and not hasattr(pooler, "_xlt_flat")


def test_flat_parameters_share_one_buffer_inside_and_give_it_back_on_leaving(tmp_path):
    from safetensors.torch import load_file, save_file

    model, classifier = _classifier("bert")
    groups = tr._param_groups(model, tr.FinetuneConfig())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids, mask, y = _batch()
    with fastpath.flat_parameters(groups) as flat:
        assert len(flat.params) == len(groups) and len(flat.owners) == len(before)
        for group, p in zip(groups, flat.params, strict=True):
            assert p.numel() == sum(q.numel() for q in group["params"])
            for q in group["params"]:  # a view into the group's buffers
                assert q.untyped_storage().data_ptr() == p.untyped_storage().data_ptr()
                assert q.grad.untyped_storage().data_ptr() == p.grad.untyped_storage().data_ptr()
        torch.nn.functional.cross_entropy(classifier(ids, mask), y).backward()
        assert all(p.grad.abs().sum() > 0 for p in flat.params)  # backward filled the buffers
        total = flat.clip_grad_norm_(1e-3)
        assert total > 1e-3
        assert torch.nn.utils.get_total_norm([p.grad for p in flat.params]) <= 1e-3 * 1.001
        flat.zero_grad()
        assert all(p.grad is not None and not p.grad.any() for p in flat.owners)
    ptrs = set()
    for name, p in model.named_parameters():
        assert p.grad is None and torch.equal(p.detach(), before[name]), name
        assert p.untyped_storage().nbytes() == p.numel() * p.element_size(), name
        ptrs.add(p.untyped_storage().data_ptr())
    assert len(ptrs) == len(before)  # each parameter owns its storage again
    save_file({n: p.detach() for n, p in model.named_parameters()}, tmp_path / "m.safetensors")
    saved = load_file(tmp_path / "m.safetensors")
    assert all(torch.equal(saved[n], before[n]) for n in before)


def test_flat_parameters_refuse_a_group_that_mixes_dtypes():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    with (
        pytest.raises(ValueError, match="mixes dtypes"),
        fastpath.flat_parameters([{"params": [a, b]}]),
    ):
        pass
