"""Shortcuts the fine-tuning engine takes on a CPU: the same model, less work per step.

Three kinds, each switched on only inside its context manager and undone on leaving it (a
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
- **Same arithmetic, fewer passes**: the trainable parameters and their gradients live in
  one buffer per AdamW group while training (:func:`flat_parameters`), so the optimiser
  step and gradient clipping run one kernel per group instead of one per tensor, and the
  linear layers' backward writes each weight gradient into the buffer instead of autograd
  adding a new tensor to a zeroed one; the trained parameters are the same bit
  for bit.

The first two are :func:`cpu_fast_paths`.

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


class _LinearIntoBuffer(torch.autograd.Function):
    """``F.linear`` whose backward writes the weight's gradient into its flat buffer.

    Autograd would return the (out, in) gradient ``grad.T @ x`` as a new tensor and then
    add it into the buffer view (``weight.grad``): one more pass over every weight, and a
    zeroed buffer each step. Here the product is written into the view directly (the
    first micro-batch of a step) or added to it (the others), with the same product
    autograd computes, and autograd gets no weight gradient to accumulate. Under autocast
    (``dtype``) the casts and the products are autocast's: inputs, weight and bias cast
    to ``dtype``, gradients cast back to each input's own dtype.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, flat, dtype):  # noqa: D102
        ctx.x_dtype, ctx.has_bias, ctx.flat = x.dtype, bias is not None, flat
        ctx.param = weight  # the leaf whose .grad is the buffer view (a cast copy is saved)
        ctx.bias_dtype = bias.dtype if bias is not None else None
        if dtype is not None:
            x, weight = x.to(dtype), weight.to(dtype)
            bias = bias.to(dtype) if bias is not None else None
        ctx.save_for_backward(x, weight)
        with torch.autocast(x.device.type, enabled=False):
            return torch.nn.functional.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x, weight = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = g2.mm(weight).view(*grad.shape[:-1], -1).to(ctx.x_dtype)
        ctx.flat._write_weight_grad(ctx.param, g2, x.reshape(-1, x.shape[-1]))
        grad_b = None
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g2.sum(0).to(ctx.bias_dtype)
        return grad_x, None, grad_b, None, None


def _linear_into_buffer(self: Any, x: torch.Tensor) -> torch.Tensor:
    """``nn.Linear.forward`` under :func:`flat_parameters`."""
    if not torch.is_grad_enabled():
        return torch.nn.functional.linear(x, self.weight, self.bias)
    device = x.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    return _LinearIntoBuffer.apply(x, self.weight, self.bias, self._xlt_flat, dtype)


class FlatParameters:
    """AdamW groups whose parameters and gradients are views into one buffer per group.

    Built by :func:`flat_parameters`. ``groups`` go to the optimiser (one flat
    ``nn.Parameter`` per group, its ``.grad`` the group's gradient buffer);
    :meth:`clip_grad_norm_` and :meth:`zero_grad` replace ``clip_grad_norm_(params)`` and
    ``optimizer.zero_grad()`` in the training step.
    """

    def __init__(
        self,
        groups: list[dict[str, Any]],
        model: torch.nn.Module | None = None,
    ) -> None:
        self.groups: list[dict[str, Any]] = []
        self.params: list[torch.nn.Parameter] = []  # one flat parameter per group
        self.owners: list[torch.nn.Parameter] = []  # the model's own, now views
        for group in groups:
            params = list(group["params"])
            if len({(p.dtype, p.device) for p in params}) != 1:
                raise ValueError("flat_parameters: a group mixes dtypes or devices")
            size = sum(p.numel() for p in params)
            data = torch.empty(size, dtype=params[0].dtype, device=params[0].device)
            grad = torch.zeros_like(data)
            offset = 0
            for p in params:  # one at a time: a parameter owning its storage frees it here
                n = p.numel()
                data[offset : offset + n].copy_(p.detach().reshape(-1))
                p.data = data[offset : offset + n].view_as(p)
                p.grad = grad[offset : offset + n].view_as(p)
                offset += n
            flat = torch.nn.Parameter(data)
            flat.grad = grad
            self.groups.append({**group, "params": [flat]})
            self.params.append(flat)
            self.owners.extend(params)
        mine = {id(p) for p in self.owners}
        if model is not None:  # clip_grad_norm_(model.parameters()) sums in this order
            self.owners = [p for p in model.parameters() if id(p) in mine]
        # nn.Linear layers whose backward writes the weight's gradient itself
        self.linears = [
            m
            for m in (model.modules() if model is not None else ())
            if type(m) is torch.nn.Linear and id(m.weight) in mine and "forward" not in vars(m)
        ]
        for m in self.linears:
            m._xlt_flat = self
            m.forward = types.MethodType(_linear_into_buffer, m)
        self._direct = {id(m.weight) for m in self.linears}
        self._fresh = set(self._direct)  # written (not added to) by their next backward
        self._accumulated = [p for p in self.owners if id(p) not in self._direct]

    def _write_weight_grad(self, weight: torch.Tensor, g2: torch.Tensor, x2: torch.Tensor):
        """Put (out, in) ``g2.T @ x2`` into ``weight.grad``: written if fresh, else added
        (a product in a lower precision is cast first, as autograd casts it)."""
        if id(weight) in self._fresh:
            self._fresh.discard(id(weight))
            if g2.dtype == weight.grad.dtype:
                torch.mm(g2.t(), x2, out=weight.grad)
            else:
                weight.grad.copy_(g2.t().mm(x2))
        else:
            weight.grad.add_(g2.t().mm(x2).to(weight.grad.dtype))

    def finish_backward(self) -> None:
        """Zero the gradient of a weight that no backward reached since :meth:`zero_grad`."""
        for p in self.owners:
            if id(p) in self._fresh:
                p.grad.zero_()
        self._fresh.clear()

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Scale the gradients so that their global L2 norm is at most ``max_norm``.

        The norm is taken tensor by tensor in the model's parameter order (without a
        model, the groups'), as ``torch.nn.utils.clip_grad_norm_`` takes it over the
        model's trainable parameters (the sum of squares rounds differently in another
        order), so the result is the same bit for bit; only the scaling runs on the flat
        buffers.

        Returns:
            The norm before clipping, a 0-dim tensor.
        """
        total = torch.nn.utils.get_total_norm([p.grad for p in self.owners])
        torch.nn.utils.clip_grads_with_norm_(self.params, max_norm, total)
        return total

    def zero_grad(self) -> None:
        """Zero the gradients in place (``set_to_none`` would detach the views).

        The weights of the :class:`torch.nn.Linear` layers are only marked: their next
        backward writes their gradient instead of adding to it.
        """
        if not self._direct:
            for p in self.params:
                p.grad.zero_()
            return
        for p in self._accumulated:
            p.grad.zero_()
        self._fresh = set(self._direct)

    def release(self) -> None:
        """Give every parameter its own storage back, with no gradient."""
        for m in self.linears:
            del m.forward, m._xlt_flat
        self.linears = []
        for p in self.owners:
            p.data = p.data.clone()
            p.grad = None


@contextlib.contextmanager
def flat_parameters(
    groups: list[dict[str, Any]],
    model: torch.nn.Module | None = None,
) -> Iterator[FlatParameters]:
    """Store each AdamW group's parameters and gradients in one buffer inside the block.

    Every parameter of a group becomes a view into one flat data buffer, and its ``.grad``
    a view into one flat gradient buffer, so the fused AdamW step and the scaling of
    gradient clipping each run one kernel per group instead of one per tensor. On 2 cores
    with ``OMP_WAIT_POLICY=PASSIVE``, the AdamW step over the offline encoder's 196
    trainable tensors (21.4M values) took 29 ms, and 13 ms over the flat buffers: each
    tensor's kernel paid for waking the second thread. Autograd would then add every new
    weight gradient into a zeroed buffer (a step of that encoder: 12 ms of additions, 8 ms
    of zeroing, most of the gain), so with ``model`` the linear layers write theirs in
    place. AdamW is element-wise, the clipping norm is summed in the same order as before
    and the written products are autograd's own, so the trained parameters are the same
    bit for bit (``tests/test_fastpath.py``).

    Args:
        groups: AdamW parameter groups (``{"params": [...], "lr": ..., ...}``); each
            group's parameters share one dtype and device.
        model: the model the parameters belong to: clipping then sums their norms in
            ``model.parameters()``' order, as ``clip_grad_norm_`` would, and its
            ``nn.Linear`` layers write
            their weight gradients straight into the buffer (the products autograd, and
            under autocast autocast, would compute), instead of autograd adding a new
            tensor into it.

    Yields:
        A :class:`FlatParameters`; on leaving, every parameter owns its storage again and
        its ``.grad`` is None.

    Used in: lessons 06 and 09-12, through :func:`xlt_course.training.finetune`.
    """
    flat = FlatParameters(groups, model)
    try:
        yield flat
    finally:
        flat.release()
