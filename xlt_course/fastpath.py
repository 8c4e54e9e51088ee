"""Shortcuts the fine-tuning engine takes on a CPU: the same model, less work per step.

Two kinds, both switched on only inside :func:`cpu_fast_paths` and undone on leaving it (a
saved checkpoint is the plain model):

- **Exact**: with a ``[CLS]`` head, the last encoder layer computes its queries, attention
  output and feed-forward block for position 0 only (the head reads nothing else); keys and
  values still cover every position. The logits are those of the full model up to float
  rounding (:func:`cls_only_last_layer`).
- **Same distribution**: dropout draws its keep-mask from 16 random bits per element
  (:func:`fast_dropout`) instead of ``torch.bernoulli`` (forward and backward of a
  (32, 28, 384) tensor on 2 cores: 1.2 ms against ``F.dropout``'s 2.7 ms); each element is
  still dropped independently, with probability ``p`` rounded to a multiple of 1/65,536.
  Attention-probability dropout goes through the same draw (:func:`attention_forward`).

Measured in ``benchmarks/bench_finetune.py`` (the per-step figures are in
``benchmarks/README.md``). Used by :func:`xlt_course.training.finetune` (the full
fine-tuning of lessons 06 and 09-12; never the linear probe).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import torch

ATTENTION = "xlt_cpu_sdpa"  # the attention implementation registered with transformers


def fast_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Zero each element of ``x`` with probability ``p`` and scale the rest by 1 / (1 - p).

    The keep-mask compares 16-bit integers from torch's generator with a threshold, four
    per 64-bit draw, so ``p`` is effectively ``round(p * 65536) / 65536``.

    Args:
        x: any shape, floating point, on a CPU.
        p: drop probability in [0, 1).

    Returns:
        Tensor shaped like ``x``; gradients flow through the kept elements, scaled.

    Used in: lessons 06 and 09-12, through :func:`xlt_course.training.finetune`.
    """
    if p <= 0:
        return x
    n = x.numel()
    bits = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64)
    # int16 lanes are uniform on [-32768, 32767]: keep where lane >= threshold
    lanes = bits.view(torch.int16)[:n].view(x.shape)
    keep = lanes >= round(p * 65536) - 32768
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))


class FastDropout(torch.nn.Dropout):
    """``nn.Dropout`` that draws its mask with :func:`fast_dropout` on a CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        return fast_dropout(x, self.p)


def attention_forward(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Scaled dot-product attention whose probability dropout is :func:`fast_dropout`.

    Without dropout, or off a CPU, this is transformers' own SDPA path.

    Args:
        module: the attention module (unused beyond SDPA's needs).
        query: (batch, heads, q_len, head_dim).
        key, value: (batch, heads, kv_len, head_dim).
        attention_mask: SDPA's mask, (batch, 1, q_len or 1, kv_len), boolean (True =
            attend) or additive float; None = attend everywhere.
        dropout: attention-probability dropout.
        scaling: score scale (default 1 / sqrt(head_dim)).

    Returns:
        ((batch, q_len, heads, head_dim) output, None): the layout of transformers' SDPA.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if dropout == 0 or query.device.type != "cpu":
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1)
    out = torch.matmul(fast_dropout(probs, dropout), value)
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION, attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)


def _cls_layer_forward(
    self: Any, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
    *args: Any, **kwargs: Any,
) -> torch.Tensor:  # fmt: skip
    """A BERT/RoBERTa layer's forward for position 0 only: (batch, seq, d) -> (batch, 1, d)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    sa = self.attention.self
    b, t, _ = hidden_states.shape
    first = hidden_states[:, :1]
    q = sa.query(first).view(b, 1, -1, sa.attention_head_size).transpose(1, 2)
    k = sa.key(hidden_states).view(b, t, -1, sa.attention_head_size).transpose(1, 2)
    v = sa.value(hidden_states).view(b, t, -1, sa.attention_head_size).transpose(1, 2)
    if attention_mask is not None and attention_mask.dim() == 4 and attention_mask.shape[-2] > 1:
        attention_mask = attention_mask[:, :, :1]  # the query row of position 0
    attend = ALL_ATTENTION_FUNCTIONS.get_interface(sa.config._attn_implementation, None)
    out, _ = attend(
        sa, q, k, v, attention_mask,
        dropout=sa.dropout.p if sa.training else 0.0, scaling=sa.scaling,
    )  # fmt: skip
    return self.feed_forward_chunk(self.attention.output(out.reshape(b, 1, -1), first))


def _encoder_layers(model: Any) -> Any:
    """Return ``model``'s list of encoder layers, or None where it has none."""
    return getattr(getattr(model.base_model, "encoder", None), "layer", None)


def _bert_like_layer(layer: Any) -> bool:
    sa = getattr(getattr(layer, "attention", None), "self", None)
    return (
        sa is not None
        and all(hasattr(sa, n) for n in ("query", "key", "value", "attention_head_size"))
        and hasattr(layer.attention, "output")
        and hasattr(layer, "feed_forward_chunk")
        and not getattr(layer, "is_decoder", False)
    )


def cls_only_last_layer(model: Any) -> bool:
    """Make the last encoder layer of ``model`` compute position 0 only; return whether it did.

    Only for BERT-style layers (BERT, RoBERTa, XLM-R, the offline encoder); other
    architectures are left alone (False). :func:`cpu_fast_paths` undoes it.

    Args:
        model: a ``PreTrainedModel`` whose ``base_model.encoder.layer`` is a layer list.

    Returns:
        True when the last layer was switched.
    """
    layers = _encoder_layers(model)
    if not layers or not _bert_like_layer(layers[-1]):
        return False
    layers[-1].forward = types.MethodType(_cls_layer_forward, layers[-1])
    return True


@contextlib.contextmanager
def cpu_fast_paths(model: Any, *, cls_only: bool) -> Iterator[dict[str, bool]]:
    """Switch on the CPU shortcuts for ``model`` inside the block; restore it on leaving.

    Args:
        model: a transformers model on a CPU.
        cls_only: the caller reads position 0 of the last hidden states only (a ``[CLS]``
            head), so the last layer may skip the other positions.

    Yields:
        What was switched on: ``{"dropout": ..., "attention": ..., "cls_only": ...}``.
    """
    saved_dropout = []
    for module in model.modules():
        for name, child in module.named_children():
            if type(child) is torch.nn.Dropout and child.p > 0:
                fast = FastDropout(child.p, child.inplace)
                fast.train(child.training)
                saved_dropout.append((module, name, child))
                setattr(module, name, fast)
    old_attention = model.config._attn_implementation
    swap_attention = old_attention == "sdpa"
    if swap_attention:
        _register()
        model.config._attn_implementation = ATTENTION
    layers = _encoder_layers(model)
    switched = cls_only and cls_only_last_layer(model)
    try:
        yield {"dropout": bool(saved_dropout), "attention": swap_attention, "cls_only": switched}
    finally:
        for module, name, child in saved_dropout:
            setattr(module, name, child)
        if swap_attention:
            model.config._attn_implementation = old_attention
        if switched:
            del layers[-1].forward
