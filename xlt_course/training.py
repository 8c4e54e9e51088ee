"""The training engine of lessons 05-10: fine-tuning, linear probes, prompt tuning, MLM.

Lessons call these public names; a lesson module (:mod:`xlt_course.zero_shot_transfer`,
:mod:`xlt_course.pretrain`, ...) holds only that lesson's ideas and imports the engine.

- :func:`finetune` fine-tunes any ``AutoModelForSequenceClassification`` (the offline
  encoder, ``xlm-roberta-base`` on Colab, a local folder) on labelled texts in one or several
  languages and evaluates it on named evaluation sets (usually one per language), keeping
  the class probabilities of every evaluation item for ensembles (lessons 06-10).
- :func:`train_loop` is the one optimisation loop: every trainer of the course (full
  fine-tuning, the linear probe, prompt tuning, MLM pretraining and adaptation) calls it.
- :class:`Runtime` is the one mixed-precision helper (:func:`resolve_precision` picks the
  precision that fits the card), :func:`mask_tokens` the one MLM masker,
  :func:`pad_batch` / :func:`pool` / :func:`batched_forward` the one pad-and-pool path,
  :func:`make_optimizer` the one AdamW + linear warm-up/decay factory.

What the fine-tuning loop does, and why:

- **Dynamic padding with length-bucketed batches** (:func:`length_bucketed_batches`): texts
  are short and of very different lengths, so each batch is padded only to its own longest
  text, and batches are built from texts of similar length. This is most of the speed-up
  over padding every batch of a random shuffle.
- **Gradient accumulation**: an optimiser step sees ``batch_size * grad_accumulation``
  examples split into ``grad_accumulation`` forward passes; the loss is normalised by the
  step's example count, so accumulation gives the gradient of the big batch.
- **Mixed precision on CUDA**: ``precision="auto"`` trains in bf16 autocast where the GPU
  computes bf16 natively (compute capability 8.0 and newer), else fp16 autocast with a
  ``GradScaler`` (a T4 emulates bf16, slowly). On a CPU with native bf16 arithmetic
  (AVX-512 BF16 or AMX: recent Xeon and EPYC) it is bf16 autocast too, 1.3x faster per
  fine-tuning run of lesson 06 on 2 cores with accuracy within the seed spread; other CPUs
  and MPS stay fp32.
- **Freezing**: ``"embeddings"`` freezes the embedding layer (the 250k-row vocabulary matrix
  is most of the parameters of a small multilingual encoder); ``"encoder"`` is a linear
  probe: the encoder runs once in eval mode and only the classification head is trained on
  its pooled features (cached per text for the session: :func:`clear_feature_cache`).
- **Determinism**: with a seed, a CPU run is repeatable (same thread count): the head is
  initialised and dropout drawn from a forked torch RNG, batches from a numpy generator.
- **accelerate**: ``backend="accelerate"`` (or ``"auto"`` under ``accelerate launch`` /
  ``torchrun``) wraps the model, optimiser, scheduler and data loader in ``Accelerator()``,
  so the same call runs data-parallel on several GPUs without code changes.
- **Caching**: a run's metrics and probabilities are stored under
  ``paths.cache_dir()/finetune/<hash>/``, keyed by the config, the data and the model, so a
  lesson re-run (or the grader) loads them instead of retraining.

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from xlt_course import paths
from xlt_course.data.topics import TopicSplit

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "CACHE_VERSION",
    "HEAD_THREADS",
    "IGNORE_INDEX",
    "Backend",
    "CacheMode",
    "Device",
    "EncodedTexts",
    "FinetuneConfig",
    "FinetuneResult",
    "Freeze",
    "PairSplit",
    "Pooling",
    "Precision",
    "Runtime",
    "TokenSplit",
    "accuracy",
    "atomic_folder",
    "batched_forward",
    "check_choice",
    "check_positive_ints",
    "clear_feature_cache",
    "collate",
    "concat_splits",
    "cpu_bf16",
    "encode_split",
    "embed_sentences",
    "embed_texts",
    "entity_f1",
    "eval_arrays",
    "finetune",
    "finetune_topics",
    "fingerprint",
    "get_tokenizer",
    "head_threads",
    "length_bucketed_batches",
    "load_checkpoint",
    "load_result",
    "make_optimizer",
    "make_runtime",
    "mask_tokens",
    "model_fingerprint",
    "native_bf16",
    "pad_batch",
    "pool",
    "predict_proba",
    "quiet_transformers",
    "recipe_fingerprint",
    "read_eval_arrays",
    "resolve_device",
    "resolve_precision",
    "result_from_logits",
    "save_result",
    "split_fingerprint",
    "topic_splits",
    "torch_threads",
    "train_loop",
]

Precision = Literal["auto", "fp32", "bf16", "fp16"]
Pooling = Literal["cls", "mean"]
Freeze = Literal["none", "embeddings", "encoder"]
LabelSubwords = Literal["first", "every", "last"]
Backend = Literal["auto", "torch", "accelerate"]
Device = Literal["auto", "cpu", "cuda", "mps"]
CacheMode = Literal["use", "refresh", "off", "only"]
Split = Literal["train", "dev", "test"]

CACHE_VERSION = 1
"""Bump when a change to the loop changes results, so older cached runs are not reused."""

IGNORE_INDEX = -100
"""Label of padded rows (e.g. rows added to even out batches across processes)."""


# --------------------------------------------------------------------------- configuration


def check_positive_ints(config: Any, names: Sequence[str]) -> None:
    """Raise ValueError naming the first field of ``config`` in ``names`` that is not an int >= 1."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_choice(name: str, value: Any, choices: Any) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _as_languages(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ValueError(f"{name} must be a tuple of language codes such as ('en',), got {value!r}")
    langs = tuple(value)
    if not langs or not all(isinstance(x, str) and x for x in langs):
        raise ValueError(f"{name} must name at least one language code, got {value!r}")
    if len(set(langs)) != len(langs):
        raise ValueError(f"{name} lists a language twice: {langs}")
    return langs


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that decides a fine-tuning run (and its cache key).

    Attributes:
        model: ``"offline"`` (the built encoder), a local folder, or a hub id such as
            ``"xlm-roberta-base"``.
        train_languages: languages of the training set (:func:`finetune_topics` only).
        languages: evaluation languages (:func:`finetune_topics` only).
        eval_split: ``"test"`` for reported numbers, ``"dev"`` to choose hyper-parameters.
        epochs: passes over the training set.
        batch_size: examples per forward pass (micro-batch).
        grad_accumulation: micro-batches per optimiser step; the effective batch is
            ``batch_size * grad_accumulation``.
        eval_batch_size: examples per forward pass at evaluation.
        learning_rate: peak AdamW learning rate (after warm-up).
        head_learning_rate: peak learning rate of the classification head (None = the
            same); a new, randomly initialised head learns slowly at an encoder's rate.
        weight_decay: AdamW weight decay (never on biases and LayerNorm weights).
        warmup_ratio: share of the optimiser steps with a linear warm-up; then linear decay
            to 0.
        max_grad_norm: gradient clipping norm (0 disables clipping).
        max_length: tokens per text, longer texts are truncated.
        seed: seeds the head initialisation, dropout and the batch order.
        precision: ``"auto"`` = bf16 on CUDA GPUs that support it, else fp16 (with a
            GradScaler); bf16 on CPUs with native bf16, else fp32 (and on MPS); or force
            ``"fp32"``, ``"bf16"``, ``"fp16"``.
        pooling: ``"cls"`` = the model's own head on the first token (a checkpoint then
            predicts with a plain ``model(**batch)``); ``"mean"`` = mean of the last hidden
            states over real (non-padding) tokens, then the head.
        freeze: ``"none"``, ``"embeddings"`` (embedding layer frozen) or ``"encoder"``
            (linear probe: only the classification head is trained).
        bucket_batches: pool of ``bucket_batches`` batches whose texts are sorted by length
            before being cut into batches; 1 gives random batches (no bucketing).
        batch_parallel: keep examples that share an id (an item and its translations) in
            the same batch, e.g. for 1:1 mixing of English and translated training data.
        max_train_examples: train on a fixed random subset of this size (same subset for
            every seed); None uses everything.
        max_eval_examples: evaluate on this many items per evaluation set (the same item ids
            in every language); None uses everything.
        save_checkpoint: save model + tokenizer + this config in the cache folder.
        device: ``"auto"`` picks CUDA, then MPS, then CPU.
        backend: ``"torch"`` (plain loop), ``"accelerate"`` (``Accelerator()``), or
            ``"auto"`` = accelerate when started by ``accelerate launch``/``torchrun``.
        num_threads: torch CPU threads during the run (None keeps the current setting).
        progress: show tqdm progress bars.
        label_subwords: token tasks only: which sub-words of a word carry its tag in
            training (:func:`align_labels`): ``"first"`` (the standard), ``"every"``, or
            ``"last"``; predictions are read on the first sub-word (the last for ``"last"``).
        cpu_fast_paths: full fine-tuning on a CPU takes :mod:`xlt_course.fastpath`'s
            shortcuts (a ``[CLS]`` head's last layer computes position 0 only; dropout masks
            from 16 random bits; with the plain ``"torch"`` backend, parameters and
            gradients in one buffer per AdamW group): the same model, the same dropout
            distribution and the same optimiser arithmetic, less time a step (the linear
            probe never takes them).
    """

    model: str = "offline"
    train_languages: tuple[str, ...] = ("en",)
    languages: tuple[str, ...] = ("en", "fr", "de", "es", "it", "ru", "zh", "ja", "pt")
    eval_split: Split = "test"
    epochs: int = 2
    batch_size: int = 32
    grad_accumulation: int = 1
    eval_batch_size: int = 64
    learning_rate: float = 5e-5
    head_learning_rate: float | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_length: int = 64
    seed: int = 0
    precision: Precision = "auto"
    pooling: Pooling = "cls"
    freeze: Freeze = "embeddings"
    bucket_batches: int = 50
    batch_parallel: bool = False
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    save_checkpoint: bool = False
    device: Device = "auto"
    backend: Backend = "auto"
    num_threads: int | None = None
    progress: bool = True
    label_subwords: LabelSubwords = "first"
    cpu_fast_paths: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model must be a non-empty string, got {self.model!r}")
        object.__setattr__(
            self, "train_languages", _as_languages("train_languages", self.train_languages)
        )
        object.__setattr__(self, "languages", _as_languages("languages", self.languages))
        check_choice("eval_split", self.eval_split, Split)
        check_choice("precision", self.precision, Precision)
        check_choice("pooling", self.pooling, Pooling)
        check_choice("freeze", self.freeze, Freeze)
        check_choice("device", self.device, Device)
        check_choice("backend", self.backend, Backend)
        check_choice("label_subwords", self.label_subwords, LabelSubwords)
        check_positive_ints(self, ("epochs", "batch_size", "grad_accumulation", "eval_batch_size"))
        if not isinstance(self.bucket_batches, int) or self.bucket_batches < 1:
            raise ValueError(
                f"bucket_batches must be an integer >= 1 (1 = no bucketing), got {self.bucket_batches!r}"
            )
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < 1):
            raise ValueError(
                f"learning_rate must be in (0, 1), e.g. 5e-5, got {self.learning_rate!r}"
            )
        if self.head_learning_rate is not None and not (
            isinstance(self.head_learning_rate, (int, float)) and 0 < self.head_learning_rate < 1
        ):
            raise ValueError(
                f"head_learning_rate must be None or in (0, 1), got {self.head_learning_rate!r}"
            )
        if not (0 <= self.weight_decay < 1):
            raise ValueError(f"weight_decay must be in [0, 1), got {self.weight_decay!r}")
        if not (0 <= self.warmup_ratio < 1):
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.max_grad_norm < 0:
            raise ValueError(
                f"max_grad_norm must be >= 0 (0 = no clipping), got {self.max_grad_norm!r}"
            )
        if not isinstance(self.max_length, int) or self.max_length < 3:
            raise ValueError(
                f"max_length must be an integer >= 3 (room for <s>, a token, </s>), got {self.max_length!r}"
            )
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("max_train_examples", "max_eval_examples"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
        if self.num_threads is not None and (
            not isinstance(self.num_threads, int) or self.num_threads < 1
        ):
            raise ValueError(f"num_threads must be None or >= 1, got {self.num_threads!r}")

    def replace(self, **changes: Any) -> FinetuneConfig:
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-friendly dict (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FinetuneConfig:
        """Build a config from :meth:`to_dict`'s output, ignoring unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# Fields that do not change what a run computes, left out of the cache key.
_NOT_IN_KEY = ("progress", "num_threads", "backend", "device", "save_checkpoint")
# Fields added after runs were cached: at these values they stay out of the key, so the
# runs cached before the field existed keep their keys.
_KEY_DEFAULTS: dict[str, Any] = {"label_subwords": "first", "cpu_fast_paths": True}


# --------------------------------------------------------------------------- small pieces


def native_bf16() -> bool:
    """Return True when the current CUDA GPU computes in bf16 natively (compute capability 8+).

    ``torch.cuda.is_bf16_supported()`` alone also says yes on older GPUs (a T4, compute
    capability 7.5) that only emulate bf16, several times slower than their fp16.
    """
    import torch

    return bool(
        torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    )


def cpu_bf16() -> bool:
    """Return True when this CPU multiplies bf16 natively (AVX-512 BF16 or AMX tiles).

    Elsewhere (most laptops, many cloud CPUs) bf16 would be converted in software and run
    slower than fp32, so ``precision="auto"`` stays fp32 there.
    """
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(precision: Precision, device: str) -> Literal["fp32", "bf16", "fp16"]:
    """Return the precision a run uses on ``device``.

    Args:
        precision: the config's choice.
        device: ``"cpu"``, ``"cuda"``, ``"mps"`` (a ``torch.device`` string).

    Returns:
        ``"auto"`` resolved: bf16 on CUDA GPUs with native bf16 (:func:`native_bf16`), fp16
        (with a GradScaler) on the others; bf16 on CPUs with native bf16 (:func:`cpu_bf16`),
        fp32 on the others and on MPS; explicit choices are returned after checking the
        device can run them.

    Raises:
        ValueError: bf16 on a CUDA GPU without native bf16, or fp16/bf16 on MPS.

    Used in: every trainer of lessons 05-10 (through :class:`Runtime`).
    """
    check_choice("precision", precision, Precision)
    kind = str(device).split(":")[0]
    if kind == "cuda":
        bf16_ok = native_bf16()
        if precision == "auto":
            return "bf16" if bf16_ok else "fp16"
        if precision == "bf16" and not bf16_ok:
            raise ValueError(
                "this GPU has no native bf16 (it would be emulated, slowly): "
                "use precision='fp16' or 'auto'"
            )
        return precision
    if precision == "auto":
        return "bf16" if kind == "cpu" and cpu_bf16() else "fp32"
    if kind == "mps" and precision != "fp32":
        raise ValueError("mixed precision is not supported on MPS here: use precision='fp32'")
    return precision


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, method: Pooling) -> torch.Tensor:
    """Pool token states into one vector per text.

    Args:
        hidden: (batch, seq, hidden) last hidden states.
        attention_mask: (batch, seq), 1 for real tokens, 0 for padding.
        method: ``"cls"`` = the first position (``<s>``/``[CLS]``; the tokenizers here pad
            on the right); ``"mean"`` = mean over the real tokens only.

    Returns:
        (batch, hidden) pooled vectors, in ``hidden``'s dtype.

    Used in: lesson 06-zero-shot-transfer, exercise 2.
    """
    if method == "cls":
        return hidden[:, 0]
    if method == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
    raise ValueError(f"method must be 'cls' or 'mean', got {method!r}")


def accuracy(logits: Any, labels: Any, ignore_index: int = IGNORE_INDEX) -> float:
    """Return the share of rows whose highest logit is the gold label, skipping padded rows.

    Args:
        logits: (n, C) scores (numpy or torch).
        labels: (n,) gold class indices; rows labelled ``ignore_index`` are padding.
        ignore_index: label of rows to skip.

    Returns:
        Accuracy in [0, 1] over the rows whose label is not ``ignore_index`` (nan if none).

    Used in: lesson 06-zero-shot-transfer, exercise 3 (as the reference).
    """
    logits = np.asarray(logits.detach().float().cpu() if hasattr(logits, "detach") else logits)
    labels = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(
            f"logits must be (n, C) and labels (n,), got {logits.shape} and {labels.shape}"
        )
    real = labels != ignore_index
    if not real.any():
        return float("nan")
    return float((logits[real].argmax(axis=1) == labels[real]).mean())


def length_bucketed_batches(
    lengths: Sequence[int] | np.ndarray,
    batch_size: int,
    *,
    rng: np.random.Generator | None = None,
    bucket_batches: int = 50,
    groups: Sequence[Any] | None = None,
) -> list[list[int]]:
    """Cut example indices into batches of similar length.

    Training (``rng`` given): shuffle, take pools of ``bucket_batches * batch_size``
    examples, sort each pool by length, cut it into batches and shuffle the batch order, so
    batches are random from epoch to epoch but hold texts of similar length.
    Evaluation (``rng=None``): sort everything by decreasing length and cut.

    Args:
        lengths: (n,) token count of each example.
        batch_size: examples per batch (a group larger than this forms one batch).
        rng: numpy generator for training order; None for the deterministic eval order.
        bucket_batches: batches per sorted pool (1 = no sorting: random batches).
        groups: optional (n,) keys; examples with the same key always share a batch
            (e.g. an English item and its translation).

    Returns:
        A list of batches, each a list of indices; every index appears exactly once.
    """
    lengths = np.asarray(lengths)
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be 1-D, got shape {lengths.shape}")
    if batch_size < 1 or bucket_batches < 1:
        raise ValueError(
            f"batch_size and bucket_batches must be >= 1, got {batch_size}, {bucket_batches}"
        )
    n = len(lengths)
    if groups is None:
        units = [[i] for i in range(n)]
        unit_len = lengths.tolist()
    else:
        if len(groups) != n:
            raise ValueError(f"groups has {len(groups)} keys for {n} examples")
        by_key: dict[Any, list[int]] = {}
        for i, key in enumerate(groups):
            by_key.setdefault(key, []).append(i)
        units = list(by_key.values())
        unit_len = [max(lengths[i] for i in u) for u in units]
    # plain Python ints and lists from here: a probe's 100 epochs build 100 plans, and
    # numpy scalars made the plan cost a fifth of the head's training time
    unit_len = [int(x) for x in unit_len]
    unit_size = [len(u) for u in units]

    def pack(unit_ids: Sequence[int]) -> list[list[int]]:
        batches: list[list[int]] = []
        current: list[int] = []
        for u in unit_ids:
            if current and len(current) + unit_size[u] > batch_size:
                batches.append(current)
                current = []
            current.extend(units[u])
        if current:
            batches.append(current)
        return batches

    if rng is None:
        # Longest first: a memory problem shows up on the first batch, not the last.
        return pack(sorted(range(len(units)), key=lambda u: (-unit_len[u], u)))
    pool_size = batch_size * bucket_batches
    pools: list[list[int]] = []
    current: list[int] = []
    filled = 0
    for u in rng.permutation(len(units)).tolist():
        current.append(u)
        filled += unit_size[u]
        if filled >= pool_size:
            pools.append(current)
            current, filled = [], 0
    if current:
        pools.append(current)
    batches: list[list[int]] = []
    for chunk in pools:
        if bucket_batches > 1:
            chunk.sort(key=unit_len.__getitem__)  # stable: equal lengths keep their random order
        batches.extend(pack(chunk))
    return [batches[i] for i in rng.permutation(len(batches))]


# --------------------------------------------------------------------------- data


@dataclass
class PairSplit:
    """Labelled sentence pairs in one language (XNLI, PAWS-X): the pair form of a split.

    Attributes:
        lang: ISO 639-1 code.
        texts: the n first sentences (XNLI's premise, PAWS-X's sentence1).
        texts_b: the n second sentences (hypothesis, sentence2).
        labels: (n,) int64 class indices into ``label_names``.
        label_names: the class names, index order.
        ids: the n item ids.
    """

    lang: str
    texts: list[str]
    texts_b: list[str]
    labels: np.ndarray
    label_names: tuple[str, ...]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, keep: Sequence[int] | np.ndarray) -> PairSplit:
        """Return the pairs at positions ``keep`` (in that order)."""
        keep = [int(i) for i in keep]
        return PairSplit(self.lang, [self.texts[i] for i in keep],
                         [self.texts_b[i] for i in keep], self.labels[keep], self.label_names,
                         [self.ids[i] for i in keep])  # fmt: skip


@dataclass
class TokenSplit:
    """Sentences of words with one label per word (WikiANN NER, UD POS).

    Attributes:
        lang: ISO 639-1 code.
        words: n sentences, each a list of words (the datasets' ``tokens`` column).
        tags: n lists of class indices, one per word (``ner_tags``, ``upos``).
        label_names: the tag names, index order (e.g. ``O, B-PER, I-PER, ...``).
        ids: the n sentence ids.
    """

    lang: str
    words: list[list[str]]
    tags: list[list[int]]
    label_names: tuple[str, ...]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.words)

    @property
    def labels(self) -> np.ndarray:
        """Return every word's tag, (total words,) int64 (for range checks)."""
        return np.array([t for row in self.tags for t in row], dtype=np.int64)

    def select(self, keep: Sequence[int] | np.ndarray) -> TokenSplit:
        """Return the sentences at positions ``keep`` (in that order)."""
        keep = [int(i) for i in keep]
        return TokenSplit(self.lang, [self.words[i] for i in keep], [self.tags[i] for i in keep],
                          self.label_names, [self.ids[i] for i in keep])  # fmt: skip


AnySplit = TopicSplit | PairSplit | TokenSplit


@dataclass
class EncodedTexts:
    """Tokenized examples: token ids without padding, labels, and the items' ids.

    Attributes:
        input_ids: n lists of token ids (special tokens included, not padded).
        labels: (n,) int64 class indices (zeros where there are none).
        ids: the n item ids.
        token_labels: token classification only: n lists aligned with ``input_ids``, the
            word's tag on the first sub-word of each word, :data:`IGNORE_INDEX` elsewhere.
    """

    input_ids: list[list[int]]
    labels: np.ndarray
    ids: list[str]
    token_labels: list[list[int]] | None = None

    @property
    def lengths(self) -> np.ndarray:
        """Return the (n,) token count of each example."""
        return np.array([len(x) for x in self.input_ids], dtype=np.int64)

    @classmethod
    def from_ids(cls, input_ids: Sequence[Sequence[int]]) -> EncodedTexts:
        """Wrap unlabelled token-id lists (labels 0, ids "0".."n-1")."""
        rows = [list(r) for r in input_ids]
        return cls(rows, np.zeros(len(rows), dtype=np.int64), [str(i) for i in range(len(rows))])

    @classmethod
    def from_texts(cls, tokenizer: Any, texts: Sequence[str], max_length: int) -> EncodedTexts:
        """Tokenize unlabelled ``texts`` (truncated to ``max_length`` tokens)."""
        if isinstance(texts, str):
            raise ValueError("texts must be a list of strings (wrap one text in a list)")
        return cls.from_ids(
            tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
        )


def encode_split(
    tokenizer: Any, split: AnySplit, max_length: int, label_subwords: LabelSubwords = "first"
) -> EncodedTexts:
    """Tokenize a labelled split (truncated to ``max_length`` tokens, no padding).

    A :class:`PairSplit` is encoded as ``tokenizer(texts, texts_b)`` (``<s> A </s></s> B
    </s>`` for XLM-R; the longer sentence is truncated first). A :class:`TokenSplit` is
    encoded from its words (``is_split_into_words``): each word's tag goes on its first
    sub-word, :data:`IGNORE_INDEX` on the other sub-words and the special tokens.

    Used in: lessons 06-10, through :func:`finetune` and the prompt-tuning loop of lesson 09.
    """
    if isinstance(split, TokenSplit):
        return encode_words(tokenizer, split, max_length, label_subwords)
    if isinstance(split, PairSplit):
        ids = tokenizer(list(split.texts), list(split.texts_b), truncation="longest_first",
                        max_length=max_length)["input_ids"]  # fmt: skip
    else:
        ids = tokenizer(list(split.texts), truncation=True, max_length=max_length)["input_ids"]
    return EncodedTexts(ids, split.labels, list(split.ids))


def align_labels(
    word_ids: Sequence[int | None], word_tags: Sequence[int], scheme: LabelSubwords = "first"
) -> list[int]:
    """Give each token the tag of its word on the chosen sub-words, IGNORE_INDEX elsewhere.

    Args:
        word_ids: (T,) the word index of each token (``BatchEncoding.word_ids(i)``), None on
            special tokens; a word's sub-words are consecutive.
        word_tags: (n_words,) the tag of each word (a tag IGNORE_INDEX stays ignored).
        scheme: ``"first"`` labels a word's first sub-word (the standard), ``"last"`` its
            last, ``"every"`` all of them.

    Returns:
        (T,) token labels: the word's tag or :data:`IGNORE_INDEX` (special tokens, the other
        sub-words).

    Used in: lesson 11-token-transfer, exercise 1 (and every token task of the engine).
    """
    labels = []
    for t, word in enumerate(word_ids):
        if word is None:
            labels.append(IGNORE_INDEX)
            continue
        first = t == 0 or word_ids[t - 1] != word
        last = t == len(word_ids) - 1 or word_ids[t + 1] != word
        keep = scheme == "every" or (first if scheme == "first" else last)
        labels.append(int(word_tags[word]) if keep else IGNORE_INDEX)
    return labels


def encode_words(
    tokenizer: Any, split: TokenSplit, max_length: int, label_subwords: LabelSubwords = "first"
) -> EncodedTexts:
    """Tokenize pre-split words and align one tag per word with its sub-words.

    Args:
        tokenizer: a fast tokenizer (``word_ids`` needs one).
        split: n sentences of words with their tags (a tag IGNORE_INDEX: no label).
        max_length: tokens per sentence; words cut off by truncation get no label.
        label_subwords: which sub-words carry the tag (:func:`align_labels`).

    Returns:
        :class:`EncodedTexts` whose ``token_labels`` holds, per token, the tag of its word
        on the chosen sub-words (the first by default), :data:`IGNORE_INDEX` on the other
        pieces and special tokens.
    """
    enc = tokenizer([list(w) for w in split.words], is_split_into_words=True, truncation=True,
                    max_length=max_length)  # fmt: skip
    token_labels = [
        align_labels(enc.word_ids(row), tags, label_subwords) for row, tags in enumerate(split.tags)
    ]
    return EncodedTexts(enc["input_ids"], np.zeros(len(split), dtype=np.int64), list(split.ids),
                        token_labels)  # fmt: skip


def pad_id_of(tokenizer: Any) -> int:
    """Return the tokenizer's padding id (0 when it has none)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token-id lists on the right to the longest one.

    Args:
        seqs: b lists of token ids.
        pad_id: id written into the padding positions.

    Returns:
        ``(input_ids, attention_mask)``: two (b, T) int64 tensors, T the longest length; the
        mask is 1 on real tokens, 0 on padding (what :func:`pool` reads).
    """
    import torch

    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    if not len(lengths):
        raise ValueError("pad_batch needs at least one sequence")
    # one vectorised fill instead of two small tensor writes a row: lesson 05's pretraining
    # step (64 rows) spent 1.2 ms of its 39 ms in the per-row writes
    real = np.arange(lengths.max()) < lengths[:, None]
    ids = np.full(real.shape, pad_id, dtype=np.int64)
    ids[real] = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64,
                            count=int(lengths.sum()))  # fmt: skip
    return torch.from_numpy(ids), torch.from_numpy(real.astype(np.int64))


class _IndexDataset:
    """A map-style dataset of example indices (the collate function looks the tokens up)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class _PlanSampler:
    """Batch sampler that yields a precomputed list of batches for the current epoch."""

    batch_size = None  # variable-size batches: accelerate shards them without re-cutting
    drop_last = False

    def __init__(self, plan: list[list[list[int]]]) -> None:
        self.plan = plan
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.plan[self.epoch])

    def __len__(self) -> int:
        return len(self.plan[self.epoch])


def collate(encoded: EncodedTexts, pad_id: int, micro: int = 1):
    """Return a collate function: indices -> ``micro`` padded micro-batches (dicts of tensors).

    Each micro-batch holds ``input_ids``/``attention_mask`` (:func:`pad_batch`), ``labels``,
    ``index`` (the rows of ``encoded``) and ``n_step`` (examples in the whole optimiser step,
    which normalises the summed loss under gradient accumulation).
    """
    import torch

    def collate_fn(indices: list[int]) -> list[dict[str, torch.Tensor]]:
        parts = [p for p in np.array_split(np.asarray(indices), micro) if len(p)]
        tl = encoded.token_labels
        # token tasks: the loss is normalised by the labelled words of the whole step
        n_step = (
            len(indices)
            if tl is None
            else sum(sum(t != IGNORE_INDEX for t in tl[i]) for i in indices)
        )
        out = []
        for part in parts:
            ids, mask = pad_batch([encoded.input_ids[i] for i in part], pad_id)
            if tl is None:
                labels = torch.as_tensor(encoded.labels[part], dtype=torch.long)
            else:
                labels = torch.full(ids.shape, IGNORE_INDEX, dtype=torch.long)
                for row, i in enumerate(part):
                    labels[row, : len(tl[i])] = torch.as_tensor(tl[i], dtype=torch.long)
            out.append(
                {
                    "input_ids": ids,
                    "attention_mask": mask,
                    "labels": labels,
                    "index": torch.as_tensor(part, dtype=torch.long),
                    "n_step": torch.tensor(max(int(n_step), 1)),
                }
            )
        return out

    return collate_fn


def fingerprint(obj: Any) -> str:
    """Return the SHA-256 hex digest of ``obj``'s canonical JSON (a cache key)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def split_fingerprint(split: AnySplit) -> str:
    """Return :func:`fingerprint` of a split's texts, labels, ids and label names."""
    if isinstance(split, TokenSplit):
        return fingerprint(["tokens", split.words, split.tags, list(split.ids),
                            list(split.label_names)])  # fmt: skip
    if isinstance(split, PairSplit):
        return fingerprint(["pairs", split.texts, split.texts_b, split.labels.tolist(),
                            list(split.ids), list(split.label_names)])  # fmt: skip
    return fingerprint(
        [split.texts, split.labels.tolist(), list(split.ids), list(split.label_names)]
    )


def model_fingerprint(model_id: str) -> str:
    """Identify a model folder by its config and weight files (size + first/last MiB)."""
    folder = Path(model_id)
    if not folder.is_dir():
        return model_id
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.name == "config.json":
            h.update(f.read_bytes())
        elif f.suffix in (".safetensors", ".bin") and f.is_file():
            size = f.stat().st_size
            h.update(f"{f.name}:{size}".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
                fh.seek(max(0, size - (1 << 20)))
                h.update(fh.read(1 << 20))
    return h.hexdigest()


def concat_splits(splits: Sequence[AnySplit]) -> AnySplit:
    """Concatenate training splits of one kind that share one label order (ValueError otherwise)."""
    names = splits[0].label_names
    kind = type(splits[0])
    for s in splits:
        if type(s) is not kind:
            raise ValueError(f"cannot train on a mix of {kind.__name__} and {type(s).__name__}")
        if tuple(s.label_names) != tuple(names):
            raise ValueError(
                f"training splits disagree on label order: {s.label_names} vs {names}; "
                "map them to one order first"
            )
    lang = "+".join(s.lang for s in splits)
    if kind is TokenSplit:
        return TokenSplit(lang, [w for s in splits for w in s.words],
                          [t for s in splits for t in s.tags], tuple(names),
                          [i for s in splits for i in s.ids])  # fmt: skip
    if kind is PairSplit:
        return PairSplit(lang, [t for s in splits for t in s.texts],
                         [t for s in splits for t in s.texts_b],
                         np.concatenate([s.labels for s in splits]).astype(np.int64),
                         tuple(names), [i for s in splits for i in s.ids])  # fmt: skip
    return TopicSplit(
        "+".join(s.lang for s in splits),
        [t for s in splits for t in s.texts],
        np.concatenate([s.labels for s in splits]).astype(np.int64),
        tuple(names),
        [i for s in splits for i in s.ids],
    )


# --------------------------------------------------------------------------- model pieces


_TOKENIZERS: dict[str, Any] = {}


def get_tokenizer(name_or_path: str = "offline") -> PreTrainedTokenizerBase:
    """Return the tokenizer of a model, loading it once per session.

    Building XLM-R's 250,002-piece tokenizer takes seconds; fine-tuning runs and lessons
    share this copy (do not modify it).

    Args:
        name_or_path: ``"offline"``, a local folder or a hub id (see
            :func:`xlt_course.models.resolve_model_id`).
    """
    from xlt_course.models import load_tokenizer, resolve_model_id

    model_id = resolve_model_id(name_or_path)
    if model_id not in _TOKENIZERS:
        _TOKENIZERS[model_id] = load_tokenizer(model_id)
    return _TOKENIZERS[model_id]


def _head_kind(model: Any) -> Literal["linear", "roberta", "other"]:
    import torch

    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, torch.nn.Linear) and hasattr(model, "dropout"):
        return "linear"  # BERT family: pooler -> dropout -> Linear
    if classifier is not None and hasattr(classifier, "out_proj") and hasattr(classifier, "dense"):
        return "roberta"  # XLM-R family: head reads position 0 of its input sequence
    return "other"


def _make_classifier(model: Any, pooling: Pooling):
    """Wrap a sequence-classification model so that forward returns logits with ``pooling``."""
    import torch

    kind = _head_kind(model)

    class SequenceClassifier(torch.nn.Module):
        """forward(input_ids, attention_mask) -> (batch, C) logits; not saved, only ``model`` is."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            # only position 0 of the last layer reaches the logits (fastpath.cpu_fast_paths)
            self.reads_first_position = pooling == "cls" and kind != "other"

        def features(self, input_ids, attention_mask):
            out = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask)
            if pooling == "mean":
                return pool(out.last_hidden_state, attention_mask, "mean")
            pooled = getattr(out, "pooler_output", None)
            if kind == "linear" and pooled is not None:
                return pooled
            return out.last_hidden_state[:, 0]

        def head(self, features):
            if kind == "linear":
                return self.model.classifier(self.model.dropout(features))
            return self.model.classifier(features[:, None, :])

        def forward(self, input_ids, attention_mask):
            if pooling == "cls" and kind == "other":
                return self.model(input_ids=input_ids, attention_mask=attention_mask).logits
            features = self.features(input_ids, attention_mask)
            # the head in fp32 under bf16/fp16 autocast too: as the linear probe trains and
            # evaluates it on its cached features, so a reloaded probe predicts what its run
            # stored (a 6 x 384 product costs nothing)
            with torch.autocast(features.device.type, enabled=False):
                return self.head(features.float())

    if getattr(model.config, "xlt_task", None) == "tokens":

        class TokenClassifier(torch.nn.Module):
            """forward(input_ids, attention_mask) -> (batch, seq, C) logits, one per token."""

            def __init__(self) -> None:
                super().__init__()
                self.model = model
                self.reads_first_position = False

            def forward(self, input_ids, attention_mask):
                return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

        return TokenClassifier()
    if kind == "other" and pooling == "mean":
        raise ValueError(
            f"pooling='mean' needs a BERT- or RoBERTa-style head (mBERT, XLM-R, the offline "
            f"encoder); {type(model).__name__} has another head: use pooling='cls'"
        )
    return SequenceClassifier()


def _freeze(model: Any, freeze: Freeze, pooling: Pooling) -> None:
    """Switch off gradients of the frozen parts (and of a BERT pooler that mean pooling skips:
    a parameter without gradient would also stop DistributedDataParallel)."""
    base = model.base_model
    frozen = []
    if freeze == "encoder":
        frozen.append(base)
    elif freeze == "embeddings":
        frozen.append(base.embeddings)
    if pooling == "mean" and getattr(base, "pooler", None) is not None:
        frozen.append(base.pooler)
    for module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)


def _param_groups(model: Any, config: FinetuneConfig) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and LayerNorm; the head's own learning rate."""
    head = getattr(model, "classifier", None)
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    head_lr = config.head_learning_rate or config.learning_rate
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        groups.setdefault((id(p) in head_ids, no_decay), []).append(p)
    return [
        {
            "params": params,
            "lr": head_lr if is_head else config.learning_rate,
            "weight_decay": 0.0 if no_decay else config.weight_decay,
        }
        for (is_head, no_decay), params in sorted(groups.items())
    ]


# --------------------------------------------------------------------------- runtimes


def _launched_distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or any(
        k.startswith("ACCELERATE_") and k != "ACCELERATE_USE_CPU" for k in os.environ
    )


class Runtime:
    """The mixed-precision helper: device placement, autocast and the GradScaler, one process.

    ``precision`` is a resolved one (:func:`resolve_precision`): ``"bf16"`` autocasts to
    bf16 (fp32's exponent range: no loss scaling), ``"fp16"`` autocasts to fp16 and scales
    the loss with a ``GradScaler`` (skipping a step whose gradients overflowed), ``"fp32"``
    does neither. Every trainer of the course goes through one, via :func:`train_loop`.

    Args:
        device: a torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    """

    is_main = True
    num_processes = 1

    def __init__(self, device: str, precision: str) -> None:
        import torch

        self.device = torch.device(device)
        self.precision = precision
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "fp16" else None

    def prepare(self, module=None, optimizer=None, scheduler=None, loader=None):
        module = module.to(self.device) if module is not None else None
        return module, optimizer, scheduler, loader

    def autocast(self):
        import torch

        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device) for k, v in batch.items()}

    def backward(self, loss) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def no_sync(self, module, skip: bool):
        return contextlib.nullcontext()

    def step(self, optimizer, scheduler, params, max_grad_norm: float) -> None:
        import torch

        from xlt_course.fastpath import FlatParameters

        flat = isinstance(params, FlatParameters)
        if flat:
            params.finish_backward()
        if self.scaler:
            self.scaler.unscale_(optimizer)
        if max_grad_norm > 0:
            if flat:
                params.clip_grad_norm_(max_grad_norm)
            else:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        if self.scaler:
            scale = self.scaler.get_scale()
            self.scaler.step(optimizer)
            self.scaler.update()
            skipped = self.scaler.get_scale() < scale  # inf/nan gradients: step skipped
        else:
            optimizer.step()
            skipped = False
        if not skipped and scheduler is not None:
            scheduler.step()
        if flat:
            params.zero_grad()
        else:
            optimizer.zero_grad(set_to_none=True)

    def gather(self, obj: Any) -> list[Any]:
        return [obj]

    def unwrap(self, module):
        return module

    def wait(self) -> None:
        pass


class _AccelerateRuntime(Runtime):
    """``accelerate.Accelerator``: the same loop single-process, multi-GPU or on CPU."""

    def __init__(self, device: str, precision: str) -> None:
        from accelerate import Accelerator

        mixed = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]
        try:
            self.acc = Accelerator(mixed_precision=mixed, cpu=device == "cpu")
        except ValueError as e:
            raise ValueError(
                f"accelerate was already set up in this process with another precision ({e}); "
                "restart the kernel or keep one precision per process"
            ) from e
        self.device = self.acc.device
        self.precision = precision
        self.is_main = self.acc.is_main_process
        self.num_processes = self.acc.num_processes

    def prepare(self, module=None, optimizer=None, scheduler=None, loader=None):
        objs = [o for o in (module, optimizer, scheduler, loader) if o is not None]
        prepared = iter(self.acc.prepare(*objs))
        return tuple(
            next(prepared) if o is not None else None
            for o in (module, optimizer, scheduler, loader)
        )

    def autocast(self):
        return self.acc.autocast()

    def to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device) for k, v in batch.items()}

    def backward(self, loss) -> None:
        self.acc.backward(loss)

    def no_sync(self, module, skip: bool):
        return self.acc.no_sync(module) if skip else contextlib.nullcontext()

    def step(self, optimizer, scheduler, params, max_grad_norm: float) -> None:
        if max_grad_norm > 0:
            self.acc.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        if not self.acc.optimizer_step_was_skipped and scheduler is not None:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    def gather(self, obj: Any) -> list[Any]:
        if self.num_processes == 1:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])

    def unwrap(self, module):
        return self.acc.unwrap_model(module)

    def wait(self) -> None:
        self.acc.wait_for_everyone()


def resolve_device(device: Device) -> str:
    """Return ``device``, with ``"auto"`` resolved to CUDA, then MPS, then CPU."""
    from xlt_course.runtime import default_device

    return default_device() if device == "auto" else device


def make_runtime(device: Device | str = "auto", precision: Precision = "auto") -> Runtime:
    """Return the single-process :class:`Runtime` for ``device`` at the precision that fits it."""
    dev = resolve_device(device)  # type: ignore[arg-type]
    return Runtime(dev, resolve_precision(precision, dev))


# --------------------------------------------------------------------------- results


@dataclass
class FinetuneResult:
    """What a fine-tuning run measured.

    Attributes:
        config: the run's configuration.
        accuracy: accuracy in [0, 1] per evaluation set name (usually a language code).
        probs: per evaluation set, (n, C) float32 class probabilities, rows in ``ids`` order.
        labels: per evaluation set, (n,) int64 gold labels.
        ids: per evaluation set, the n item ids (parallel sets share them).
        label_names: the C class names, column order of ``probs``.
        stats: timings and counts: ``train_seconds``, ``eval_seconds`` (wall clock),
            ``train_cpu_seconds``, ``eval_cpu_seconds`` (CPU time of all threads, less
            sensitive to other programs on a shared machine), ``train_examples``
            (examples seen, all epochs), ``train_tokens`` (real tokens seen),
            ``train_padded_tokens`` (tokens including padding), ``trainable_params``,
            ``total_params``, ``device``, ``precision``, ``backend``.
        history: one dict per epoch: mean training loss and the last learning rate.
        checkpoint: folder of the saved model (``from_pretrained``-loadable) or None.
        cache_path: the cache folder of this run, or None (``cache="off"``).
        from_cache: True when the results were loaded instead of computed.
        f1: entity-level F1 per evaluation set (NER: BIO tags, :func:`entity_f1`); empty
            for other tasks. For token tasks ``accuracy``, ``probs``, ``labels`` and ``ids``
            are per word (id ``"<sentence id>/<word index>"``).
    """

    config: FinetuneConfig
    accuracy: dict[str, float]
    probs: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    ids: dict[str, list[str]]
    label_names: tuple[str, ...]
    stats: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None
    cache_path: Path | None = None
    from_cache: bool = False
    f1: dict[str, float] = field(default_factory=dict)

    def predictions(self, name: str) -> np.ndarray:
        """Return the (n,) predicted class indices on evaluation set ``name``."""
        return self.probs[name].argmax(axis=1)


@contextlib.contextmanager
def atomic_folder(folder: Path) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``folder``; on success it replaces ``folder``.

    A run's cache folder is complete or absent, never half written (an interrupted run
    leaves nothing that a later run would load).
    """
    tmp = folder.parent / f".{folder.name}.{os.getpid()}.part"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_result(
    result: FinetuneResult,
    folder: Path,
    config: Mapping[str, Any],
    cache_version: int,
    arrays: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write ``metrics.json`` and ``probs.npz`` of a run into ``folder`` (see :func:`load_result`).

    Args:
        result: the run (a :class:`FinetuneResult` or a subclass).
        folder: an existing folder, e.g. from :func:`atomic_folder`.
        config: the run's config as a JSON-ready dict.
        cache_version: the version of the code that computed it.
        arrays: more arrays to store beside the evaluation outputs (e.g. a trained prompt).
    """
    metrics = {
        "cache_version": cache_version,
        "config": dict(config),
        "accuracy": result.accuracy,
        "f1": result.f1,
        "label_names": list(result.label_names),
        "stats": result.stats,
        "history": result.history,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    np.savez_compressed(folder / "probs.npz", **eval_arrays(result), **(arrays or {}))


def load_result(
    folder: Path,
    make_config: Callable[[dict[str, Any]], Any],
    result_type: type[FinetuneResult],
    *,
    arrays: Sequence[str] = (),
    **fields: Any,
) -> Any:
    """Load a run written by :func:`save_result` as ``result_type`` (marked ``from_cache``).

    Args:
        folder: the run's cache folder.
        make_config: builds the config object from its stored dict.
        result_type: :class:`FinetuneResult` or a subclass.
        arrays: names of the extra arrays to read into the field of the same name (None
            when absent).
        fields: more fields of ``result_type`` (e.g. ``checkpoint``).
    """
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    with np.load(folder / "probs.npz") as z:
        probs, labels, ids = read_eval_arrays(z)
        extra = {name: z[name] if name in z.files else None for name in arrays}
    return result_type(
        config=make_config(metrics["config"]),
        accuracy={k: float(v) for k, v in metrics["accuracy"].items()},
        probs=probs,
        labels=labels,
        ids=ids,
        label_names=tuple(metrics["label_names"]),
        stats=metrics["stats"],
        history=metrics["history"],
        f1={k: float(v) for k, v in metrics.get("f1", {}).items()},
        cache_path=folder,
        from_cache=True,
        **extra,
        **fields,
    )


def eval_arrays(result: FinetuneResult) -> dict[str, np.ndarray]:
    """Return the evaluation outputs of ``result`` as named arrays for ``np.savez``."""
    arrays: dict[str, np.ndarray] = {"names": np.array(list(result.probs), dtype=str)}
    for i, name in enumerate(result.probs):
        arrays[f"probs_{i}"] = result.probs[name].astype(np.float32)
        arrays[f"labels_{i}"] = result.labels[name].astype(np.int64)
        arrays[f"ids_{i}"] = np.array(result.ids[name], dtype=str)
    return arrays


def read_eval_arrays(z: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """Return (probs, labels, ids) per evaluation set from arrays written by :func:`eval_arrays`."""
    probs, labels, ids = {}, {}, {}
    for i, name in enumerate(z["names"].tolist()):
        probs[name] = z[f"probs_{i}"]
        labels[name] = z[f"labels_{i}"]
        ids[name] = z[f"ids_{i}"].tolist()
    return probs, labels, ids


def result_from_logits(
    result_type: type[FinetuneResult],
    config: Any,
    logits: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    ids: Mapping[str, list],
    label_names: Sequence[str],
    stats: dict[str, Any],
    history: list[dict[str, float]],
    **fields: Any,
) -> Any:
    """Build a run's result (probabilities, accuracy, gold labels, ids) from its logits.

    Args:
        result_type: :class:`FinetuneResult` or a subclass.
        config: the run's config.
        logits: ``{name: (n, C) logits}`` per evaluation set.
        labels: ``{name: (n,) gold label ids}``, same names.
        ids: ``{name: n item ids}``, same names.
        label_names: the C class names.
        stats, history: what the run measured.
        fields: more fields of ``result_type`` (e.g. a trained prompt).
    """
    import torch

    probs = {
        name: torch.softmax(torch.as_tensor(lg, dtype=torch.float32), dim=-1).numpy()
        for name, lg in logits.items()
    }
    return result_type(
        config=config,
        accuracy={name: accuracy(logits[name], labels[name]) for name in logits},
        probs=probs,
        labels={name: np.asarray(labels[name]).copy() for name in logits},
        ids={name: list(ids[name]) for name in logits},
        label_names=tuple(label_names),
        stats=stats,
        history=history,
        **fields,
    )


def _load_result(folder: Path) -> FinetuneResult:
    ckpt = folder / "checkpoint"
    return load_result(
        folder,
        FinetuneConfig.from_dict,
        FinetuneResult,
        checkpoint=ckpt if (ckpt / "config.json").is_file() else None,
    )


def _key_parts(config: FinetuneConfig, model_id: str, train: AnySplit, evals) -> dict[str, Any]:
    cfg = {
        k: v
        for k, v in config.to_dict().items()
        if k not in _NOT_IN_KEY and not (k in _KEY_DEFAULTS and v == _KEY_DEFAULTS[k])
    }
    return {
        "version": CACHE_VERSION,
        "config": cfg,
        "model": model_fingerprint(model_id),
        "train": split_fingerprint(train),
        "evals": {name: split_fingerprint(s) for name, s in evals.items()},
    }


def _cache_key(
    config: FinetuneConfig, model_id: str, train: AnySplit, evals, device, precision
) -> str:
    parts = _key_parts(config, model_id, train, evals)
    parts.update(device=str(device).split(":")[0], precision=precision)
    return fingerprint(parts)[:20]


def recipe_fingerprint(
    config: FinetuneConfig, train: AnySplit | Sequence[AnySplit], evals: Mapping[str, AnySplit]
) -> str:
    """Return the fingerprint of what decides a run but the hardware: config, model and data.

    The cache key adds the device and the resolved precision to it: two runs with one recipe
    differ only in their arithmetic (bf16 or fp32, CPU or GPU). The config's ``precision``
    field stays in the recipe (``"auto"`` is one recipe on every machine).

    Args:
        config: the run's settings.
        train: its training split(s), as given to :func:`finetune`.
        evals: its evaluation sets by name.

    Returns:
        A 64-character hex digest.

    Used in: lesson 06-zero-shot-transfer (the recorded dev sweep).
    """
    from xlt_course.models import resolve_model_id

    splits = [train] if isinstance(train, (TopicSplit, PairSplit, TokenSplit)) else list(train)
    return fingerprint(
        _key_parts(config, resolve_model_id(config.model), concat_splits(splits), evals)
    )


# --------------------------------------------------------------------------- the loop


def finetune(
    config: FinetuneConfig,
    train: AnySplit | Sequence[AnySplit],
    evals: Mapping[str, AnySplit],
    *,
    cache: CacheMode = "use",
) -> FinetuneResult | None:
    """Fine-tune ``config.model`` on ``train`` and evaluate it on every set of ``evals``.

    Args:
        config: the run's settings (its ``languages``/``train_languages`` are not used here).
        train: labelled training texts (:class:`TopicSplit`), sentence pairs
            (:class:`PairSplit`: XNLI, PAWS-X) or tagged words (:class:`TokenSplit`: NER, POS;
            a token-classification head, tags on first sub-words); several splits (e.g.
            English and machine-translated Spanish) are concatenated, and with ``config.batch_parallel`` examples sharing an
            id go into the same batch.
        evals: evaluation sets by name, e.g. ``{"en": ..., "fr": ...}``; their labels use
            the training label order.
        cache: ``"use"`` loads a cached run or computes and stores it; ``"refresh"``
            recomputes and overwrites; ``"off"`` neither reads nor writes; ``"only"`` loads
            a cached run or returns None (the grader never trains).

    Returns:
        A :class:`FinetuneResult` (None only with ``cache="only"`` and nothing cached).

    Used in: lessons 06-zero-shot-transfer, 07-translate-train-test, 08-pivots-and-ensembles.
    """
    check_choice("cache", cache, CacheMode)
    kinds = (TopicSplit, PairSplit, TokenSplit)
    splits = [train] if isinstance(train, kinds) else list(train)
    if not splits or not all(isinstance(s, kinds) for s in splits):
        raise ValueError(
            "train must be a TopicSplit, PairSplit or TokenSplit, or a non-empty list of them"
        )
    train_split = concat_splits(splits)
    if not evals:
        raise ValueError("evals must name at least one evaluation set, e.g. {'en': test_en}")
    label_names = tuple(train_split.label_names)
    for name, s in evals.items():
        if type(s) is not type(train_split):
            raise ValueError(
                f"evaluation set {name!r} is a {type(s).__name__}, training a "
                f"{type(train_split).__name__}"
            )
        if tuple(s.label_names) != label_names:
            raise ValueError(
                f"evaluation set {name!r} has label order {s.label_names}, training has {label_names}"
            )
    n_labels = len(label_names)
    for name, s in [("train", train_split), *evals.items()]:
        labels = s.labels
        if isinstance(s, TokenSplit):  # a word tagged IGNORE_INDEX is simply not learned
            labels = labels[labels != IGNORE_INDEX]
        if len(s) == 0 or len(labels) == 0:
            raise ValueError(f"{name} is empty")
        if labels.min() < 0 or labels.max() >= n_labels:
            raise ValueError(f"{name} has labels outside 0..{n_labels - 1}")

    if config.max_train_examples is not None and config.max_train_examples < len(train_split):
        # A fixed subset (generator 0), so runs that differ only in seed see the same data.
        keep = np.sort(
            np.random.default_rng(0).permutation(len(train_split))[: config.max_train_examples]
        )
        train_split = train_split.select(keep)
    if config.max_eval_examples is not None:
        evals = _eval_subset(evals, config.max_eval_examples)
    if isinstance(train_split, TokenSplit) and config.freeze == "encoder":
        raise ValueError("freeze='encoder' (a linear probe) is for sentence tasks; "
                         "token tasks fine-tune: use freeze='embeddings' or 'none'")  # fmt: skip

    from xlt_course.models import resolve_model_id

    model_id = resolve_model_id(config.model)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    folder = None
    if cache != "off":
        key = _cache_key(config, model_id, train_split, evals, device, precision)
        folder = paths.cache_dir() / "finetune" / key
        done = (folder / "metrics.json").is_file() and (folder / "probs.npz").is_file()
        if done and config.save_checkpoint:
            done = (folder / "checkpoint" / "config.json").is_file()
        if done and cache in ("use", "only"):
            return _load_result(folder)
        if cache == "only":
            return None

    result = _run(config, model_id, train_split, dict(evals), device, precision, folder)
    return result


def _eval_subset(evals: Mapping[str, AnySplit], k: int) -> dict[str, AnySplit]:
    """Keep the same k item ids in every evaluation set (a fixed random choice)."""
    first = next(iter(evals.values()))
    chosen = set(np.random.default_rng(0).permutation(first.ids).tolist()[:k])
    out = {}
    for name, s in evals.items():
        keep = [i for i, item in enumerate(s.ids) if item in chosen] or list(range(min(k, len(s))))
        out[name] = s.select(keep)
    return out


def _run(
    config: FinetuneConfig,
    model_id: str,
    train: AnySplit,
    evals: dict[str, AnySplit],
    device: str,
    precision: str,
    folder: Path | None,
) -> FinetuneResult:
    import torch
    from tqdm.auto import tqdm

    backend = config.backend
    if backend == "auto":
        backend = "accelerate" if _launched_distributed() else "torch"
    cuda_devices = list(range(torch.cuda.device_count())) if device.startswith("cuda") else []
    with torch_threads(config.num_threads), torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(config.seed)
        runtime: Runtime = (
            _AccelerateRuntime(device, precision)
            if backend == "accelerate"
            else Runtime(device, precision)
        )
        t_load = time.perf_counter()
        tokenizer = get_tokenizer(model_id)
        model = _load_model(model_id, train.label_names,
                            tokens=isinstance(train, TokenSplit))  # fmt: skip
        load_seconds = time.perf_counter() - t_load

        enc_train = encode_split(tokenizer, train, config.max_length, config.label_subwords)
        read_on = "last" if config.label_subwords == "last" else "first"
        enc_evals = {
            name: encode_split(tokenizer, s, config.max_length, read_on)
            for name, s in evals.items()
        }
        pad_id = pad_id_of(tokenizer)
        _freeze(model, config.freeze, config.pooling)
        classifier = _make_classifier(model, config.pooling)
        stats: dict[str, Any] = {
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total_params": sum(p.numel() for p in model.parameters()),
            "device": str(runtime.device),
            "precision": precision,
            "backend": backend,
            "load_seconds": round(load_seconds, 2),
        }
        if config.freeze == "encoder":
            history, train_stats, logits = _train_probe(
                config,
                classifier,
                runtime,
                enc_train,
                enc_evals,
                pad_id,
                model_fingerprint(model_id),
            )
        else:
            from xlt_course import fastpath

            # not for the probe: its encoder runs once per text, its head on cached features
            fast = (
                fastpath.cpu_fast_paths(model, cls_only=classifier.reads_first_position)
                if config.cpu_fast_paths and device == "cpu"
                else contextlib.nullcontext({})
            )
            # one buffer per AdamW group: only the plain runtime steps the optimiser itself
            flat = bool(config.cpu_fast_paths and device == "cpu" and backend == "torch")
            with fast as switched:
                history, train_stats, logits = _train_full(
                    config, classifier, runtime, enc_train, enc_evals, pad_id, flat=flat
                )
            switched = {**switched, "flat_parameters": flat}
            train_stats["cpu_fast_paths"] = sorted(k for k, on in switched.items() if on)
        stats.update(train_stats)

    labels = {name: e.labels.copy() for name, e in enc_evals.items()}
    ids = {name: list(e.ids) for name, e in enc_evals.items()}
    f1: dict[str, float] = {}
    if isinstance(train, TokenSplit):
        for name, enc in enc_evals.items():
            logits[name], labels[name], ids[name] = _word_level(enc, logits[name])
        if any(n.startswith("B-") for n in train.label_names):
            f1 = {name: entity_f1(labels[name], logits[name].argmax(axis=1), ids[name],
                                  train.label_names) for name in evals}  # fmt: skip
    result = result_from_logits(
        FinetuneResult,
        config,
        logits,
        labels,
        ids,
        tuple(train.label_names),
        stats,
        history,
        f1=f1,
    )
    if folder is not None and runtime.is_main:
        with atomic_folder(folder) as tmp:
            if config.save_checkpoint:
                _save_checkpoint(classifier.model, tokenizer, config, tmp / "checkpoint")
            save_result(result, tmp, config.to_dict(), CACHE_VERSION)
        result = dataclasses.replace(
            result,
            cache_path=folder,
            checkpoint=folder / "checkpoint" if config.save_checkpoint else None,
        )
        if config.progress:
            tqdm.write(f"cached in {folder}")
    runtime.wait()
    return result


def _load_model(model_id: str, label_names: Sequence[str], *, tokens: bool = False):
    """Load the encoder with a new head (the same call as ``models.load_classifier``, which
    would also rebuild the tokenizer: seconds for XLM-R's 250k pieces, cached here instead).
    ``tokens`` loads ``AutoModelForTokenClassification`` (one prediction per token)."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    auto = AutoModelForTokenClassification if tokens else AutoModelForSequenceClassification
    with quiet_transformers():
        model = auto.from_pretrained(
            model_id,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
            # a classifier checkpoint with another label count gets a new head of this task's
            ignore_mismatched_sizes=True,
        )
    model.config.xlt_task = "tokens" if tokens else "sequence"
    return model


def _word_level(enc: EncodedTexts, rows: list[np.ndarray]):
    """Return (logits (N, C), labels (N,), ids) of the N labelled words (first sub-words)."""
    logits, labels, ids = [], [], []
    for i, (row, tags) in enumerate(zip(rows, enc.token_labels, strict=True)):
        keep = [t for t, tag in enumerate(tags) if tag != IGNORE_INDEX]
        logits.append(row[keep])
        labels.extend(tags[t] for t in keep)
        ids.extend(f"{enc.ids[i]}/{k}" for k in range(len(keep)))
    C = rows[0].shape[1] if rows else 0
    stacked = np.concatenate(logits) if logits else np.zeros((0, C), np.float32)
    return stacked.astype(np.float32), np.asarray(labels, dtype=np.int64), ids


def entity_f1(
    labels: Sequence[int] | np.ndarray,
    predictions: Sequence[int] | np.ndarray,
    ids: Sequence[str],
    label_names: Sequence[str],
) -> float:
    """Return entity-level F1 (seqeval, CoNLL style) of per-word BIO tags.

    Args:
        labels: (N,) gold tag indices of every evaluated word.
        predictions: (N,) predicted tag indices.
        ids: the N word ids ``"<sentence id>/<word index>"`` (sentences are rebuilt from them).
        label_names: tag names (``O``, ``B-PER``, ``I-PER``, ...).

    Returns:
        Micro-averaged F1 in [0, 1] over entities: an entity counts only when its type and
        both boundaries are right (0 when there are no gold and no predicted entities).

    Used in: ``xlt-course finetune --task wikiann``.
    """
    from seqeval.metrics import f1_score

    gold: dict[str, list[str]] = {}
    pred: dict[str, list[str]] = {}
    for y, p, item in zip(labels, predictions, ids, strict=True):
        sentence = item.rsplit("/", 1)[0]
        gold.setdefault(sentence, []).append(label_names[int(y)])
        pred.setdefault(sentence, []).append(label_names[int(p)])
    return float(f1_score(list(gold.values()), [pred[k] for k in gold], zero_division=0))


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load report and weight-loading bars (the new head is expected)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def linear_schedule(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Return the learning-rate factor of step ``step``: linear warm-up, then linear decay to 0.

    The schedule of transformers' ``get_linear_schedule_with_warmup`` (the Trainer's default).
    """

    def f(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return f


def make_optimizer(
    params: Any,
    *,
    lr: float | None = None,
    total_steps: int | None = None,
    warmup_steps: int = 0,
    **adamw: Any,
) -> tuple[torch.optim.Optimizer, Any]:
    """Return AdamW and its linear warm-up/decay schedule (the one optimiser of the course).

    Args:
        params: parameters, or AdamW parameter groups (each may set its own ``lr`` and
            ``weight_decay``).
        lr: default learning rate of the groups (None keeps AdamW's default).
        total_steps: optimiser steps of the run; None gives no schedule (constant rate).
        warmup_steps: steps of linear warm-up before the linear decay.
        **adamw: more AdamW arguments (``weight_decay``, ``betas``); ``fused`` defaults to
            True where every parameter is a floating tensor on a CPU or CUDA device.

    Returns:
        ``(optimizer, scheduler)``; ``scheduler`` is None without ``total_steps``.
    """
    import torch

    groups = [dict(g, params=list(g["params"])) if isinstance(g, dict) else g for g in params]
    tensors = [t for g in groups for t in (g["params"] if isinstance(g, dict) else [g])]
    # one fused kernel per group instead of a Python loop over the tensors, the same update
    # up to rounding: one epoch of benchmarks/bench_finetune.py trained in 41.8 s instead
    # of 53.8 s on 2 CPU cores (Trainer's default since torch 2.8 is the fused one too)
    fused = bool(tensors) and all(
        t.device.type in ("cpu", "cuda") and t.is_floating_point() for t in tensors
    )
    adamw.setdefault("fused", fused or None)
    optimizer = torch.optim.AdamW(groups, **({} if lr is None else {"lr": lr}), **adamw)
    if total_steps is None:
        return optimizer, None
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_schedule(total_steps, warmup_steps)
    )
    return optimizer, scheduler


def train_loop(
    epochs: int,
    steps: Callable[[int], Iterable[Sequence[Any]]],
    loss_fn: Callable[[Any], tuple[torch.Tensor, float, int]],
    optimizer: Any,
    scheduler: Any,
    params: Sequence[Any],
    *,
    runtime: Runtime,
    max_grad_norm: float = 1.0,
    module: Any = None,
    total_steps: int | None = None,
    desc: str = "training",
    progress: bool = False,
    step_losses: list[float] | None = None,
) -> list[dict[str, float]]:
    """Run optimiser steps over micro-batches: the one training loop of lessons 05-10.

    Every step is a sequence of micro-batches: each gives ``loss_fn(micro_batch) ->
    (loss, loss_sum, count)``; ``loss`` (already normalised, e.g. summed over the micro-batch
    and divided by the examples of the whole step) is back-propagated through ``runtime``
    (autocast is ``loss_fn``'s to open, loss scaling the runtime's), then one optimiser step
    with gradient clipping and a scheduler step. ``loss_sum / count`` over an epoch is its
    logged loss.

    Args:
        epochs: passes.
        steps: ``steps(epoch)`` returns that epoch's steps (called at the epoch's start, so
            a sampler can be re-seeded and random draws stay in the order they were made).
        loss_fn: micro-batch -> (loss tensor to back-propagate, summed loss as a float,
            examples (or tokens) it covers).
        optimizer, scheduler: from :func:`make_optimizer` (scheduler may be None).
        params: the trainable parameters (clipped together), or a
            :class:`~xlt_course.fastpath.FlatParameters` (clipped and zeroed on its flat
            buffers; the runtime then never sets gradients to None).
        runtime: the :class:`Runtime` (device, mixed precision, accelerate).
        max_grad_norm: clipping norm (0 = no clipping).
        module: the model, when the runtime must skip gradient synchronisation between
            micro-batches (accelerate, several processes).
        total_steps: length of the progress bar.
        desc: the bar's label.
        progress: show a tqdm bar.
        step_losses: when given, each step's ``loss_sum / count`` is appended to it.

    Returns:
        One dict per epoch: ``epoch`` (1-based), mean ``loss``, and the last ``lr`` of the
        first parameter group.

    Used in: lessons 05 (MLM pretraining, zero-shot fine-tuning), 06-08 (:func:`finetune`,
    full and linear probe), 09 (prompt tuning, its head warm-up) and 10 (adaptive MLM).
    """
    from tqdm.auto import tqdm

    history: list[dict[str, float]] = []
    bar = tqdm(total=total_steps, desc=desc, unit="step",
               disable=not (progress and runtime.is_main))  # fmt: skip
    for epoch in range(epochs):
        loss_sum, n_sum = 0.0, 0
        for micro_batches in steps(epoch):
            step_sum, step_n = 0.0, 0
            for j, mb in enumerate(micro_batches):
                with runtime.no_sync(
                    module, skip=module is not None and j < len(micro_batches) - 1
                ):
                    loss, value, count = loss_fn(mb)
                    runtime.backward(loss)
                step_sum += value
                step_n += count
            runtime.step(optimizer, scheduler, params, max_grad_norm)
            loss_sum += step_sum
            n_sum += step_n
            if step_losses is not None:
                step_losses.append(step_sum / max(step_n, 1))
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / max(n_sum, 1):.3f}")
        lr = float(optimizer.param_groups[0]["lr"]) if scheduler is None else None
        history.append(
            {
                "epoch": epoch + 1,
                "loss": loss_sum / max(n_sum, 1),
                "lr": float(scheduler.get_last_lr()[0]) if scheduler is not None else lr,
            }
        )
    bar.close()
    return history


def _epoch_plan(config: FinetuneConfig, enc_train: EncodedTexts) -> list[list[list[int]]]:
    """Return the optimiser-step batches of every epoch (length-bucketed, seeded)."""
    rng = np.random.default_rng(config.seed)
    step_size = config.batch_size * config.grad_accumulation
    groups = enc_train.ids if config.batch_parallel else None
    return [
        length_bucketed_batches(
            enc_train.lengths,
            step_size,
            rng=rng,
            bucket_batches=config.bucket_batches,
            groups=groups,
        )
        for _ in range(config.epochs)
    ]


def _optimizer(model: Any, config: FinetuneConfig, plan: list[list[list[int]]], flat=None):
    """Return (AdamW, linear warmup/decay schedule, trainable parameters) for ``plan``;
    with ``flat`` (a :class:`~xlt_course.fastpath.FlatParameters`), AdamW steps its flat
    buffers and the parameters returned are ``flat`` itself."""
    total_steps = sum(len(p) for p in plan)
    optimizer, scheduler = make_optimizer(
        _param_groups(model, config) if flat is None else flat.groups,
        lr=config.learning_rate,
        total_steps=total_steps,
        warmup_steps=math.ceil(config.warmup_ratio * total_steps),
    )
    if flat is not None:
        return optimizer, scheduler, flat
    return optimizer, scheduler, [p for p in model.parameters() if p.requires_grad]


def _train_full(
    config, classifier, runtime, enc_train: EncodedTexts, enc_evals, pad_id, flat: bool = False
):
    """Fine-tune with the encoder in the graph; return (history, stats, eval logits).
    ``flat`` keeps the trainable parameters in one buffer per AdamW group while training
    (:func:`xlt_course.fastpath.flat_parameters`; the same parameters bit for bit)."""
    import torch
    from torch.utils.data import DataLoader

    from xlt_course import fastpath

    plan = _epoch_plan(config, enc_train)
    sampler = _PlanSampler(plan)
    loader = DataLoader(
        _IndexDataset(len(enc_train.labels)),
        batch_sampler=sampler,
        collate_fn=collate(enc_train, pad_id, config.grad_accumulation),
        generator=_private_generator(),
    )
    model = classifier.model
    total_steps = sum(len(p) for p in plan)
    flat_ctx = (
        fastpath.flat_parameters(_param_groups(model, config), model=model)
        if flat
        else contextlib.nullcontext(None)
    )
    counts = {"seen": 0, "tokens": 0, "padded": 0}

    def steps(epoch: int):
        sampler.set_epoch(epoch)
        return loader

    def loss_fn(mb):
        mb = runtime.to_device(mb)
        n_step = int(mb["n_step"])
        with runtime.autocast():
            logits = classifier(mb["input_ids"], mb["attention_mask"])
        labels = mb["labels"]
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
            reduction="sum", ignore_index=IGNORE_INDEX,
        )  # fmt: skip
        counts["tokens"] += int(mb["attention_mask"].sum())
        counts["padded"] += int(mb["attention_mask"].numel())
        counts["seen"] += len(labels)
        return loss / n_step, float(loss.detach()), int((labels != IGNORE_INDEX).sum())

    t0, c0 = time.perf_counter(), time.process_time()
    classifier.train()
    with flat_ctx as flat_params:
        optimizer, scheduler, params = _optimizer(model, config, plan, flat_params)
        classifier, optimizer, scheduler, loader = runtime.prepare(
            classifier, optimizer, scheduler, loader
        )
        history = train_loop(
            config.epochs, steps, loss_fn, optimizer, scheduler, params,
            runtime=runtime, max_grad_norm=config.max_grad_norm, module=classifier,
            total_steps=total_steps // runtime.num_processes, desc="fine-tuning",
            progress=config.progress,
        )  # fmt: skip
    train_seconds, train_cpu = time.perf_counter() - t0, time.process_time() - c0

    t1, c1 = time.perf_counter(), time.process_time()
    classifier.eval()
    logits = {
        name: batched_forward(
            classifier,
            enc,
            pad_id,
            config.eval_batch_size,
            runtime,
            desc=f"evaluating {name}",
            progress=config.progress,
            ragged=enc.token_labels is not None,
        )  # fmt: skip
        for name, enc in enc_evals.items()
    }
    stats = {
        "train_seconds": round(train_seconds, 2),
        "eval_seconds": round(time.perf_counter() - t1, 2),
        "train_cpu_seconds": round(train_cpu, 2),
        "eval_cpu_seconds": round(time.process_time() - c1, 2),
        "train_examples": counts["seen"],
        "train_tokens": counts["tokens"],
        "train_padded_tokens": counts["padded"],
        "optimizer_steps": total_steps,
    }
    return history, stats, logits


def _private_generator():
    """A generator for DataLoader's per-iteration base seed, which would otherwise be drawn
    from the global torch RNG and make dropout depend on how many loaders ran before."""
    import torch

    return torch.Generator().manual_seed(0)


def batched_forward(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    enc: EncodedTexts,
    pad_id: int,
    batch_size: int,
    runtime: Runtime,
    *,
    desc: str = "encoding",
    progress: bool = False,
    ragged: bool = False,
) -> np.ndarray | list[np.ndarray]:
    """Run ``fn(input_ids, attention_mask)`` over padded, length-sorted batches; no gradients.

    The one pad-and-run path of the course: texts sorted by length (longest first), cut
    into batches, padded per batch (:func:`pad_batch`), run under the runtime's autocast
    and ``torch.inference_mode``; rows are put back in ``enc``'s order. Under accelerate
    with several processes the batches are sharded and the outputs gathered.

    Args:
        fn: (b, T) ids and mask -> (b, k) outputs (logits, pooled features: :func:`pool`).
        enc: the tokenized texts.
        pad_id: the tokenizer's padding id.
        batch_size: texts per forward pass.
        runtime: device and precision.
        desc: the progress bar's label.
        progress: show a tqdm bar.
        ragged: ``fn`` returns (b, T, k) per-token outputs: return n arrays (T_i, k), each
            cut to its text's real tokens.

    Returns:
        (n, k) float32 outputs in the order of ``enc`` (a list of n (T_i, k) with ``ragged``).

    Used in: lessons 06-10 (evaluation, linear-probe features, cached sentence features).
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    loader = DataLoader(
        _IndexDataset(len(enc.labels)),
        batch_sampler=_PlanSampler([length_bucketed_batches(enc.lengths, batch_size)]),
        collate_fn=collate(enc, pad_id, 1),
        generator=_private_generator(),
    )
    if runtime.num_processes > 1:
        loader = runtime.prepare(loader=loader)[3]
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    with torch.inference_mode():
        for (mb,) in tqdm(loader, desc=desc, unit="batch", leave=False,
                          disable=not (progress and runtime.is_main)):  # fmt: skip
            mb = runtime.to_device(mb)
            with runtime.autocast():
                out = fn(mb["input_ids"], mb["attention_mask"])
            if ragged:
                lengths = mb["attention_mask"].sum(dim=1).tolist()
                rows = out.float().cpu().numpy()
                values = [rows[r, : lengths[r]] for r in range(len(lengths))]
                parts.append((mb["index"].cpu().numpy(), values))
                continue
            parts.append((mb["index"].cpu().numpy(), out.float().cpu().numpy()))
    if ragged:
        ordered: list[Any] = [None] * len(enc.labels)
        for rank_parts in runtime.gather(parts):
            for index, values in rank_parts:
                for i, v in zip(index.tolist(), values, strict=True):
                    ordered[i] = v
        return ordered
    result: np.ndarray | None = None
    for rank_parts in runtime.gather(parts):
        for index, values in rank_parts:
            if result is None:
                result = np.zeros((len(enc.labels), values.shape[1]), dtype=np.float32)
            result[index] = values  # scatter by index: batch order and duplicates do not matter
    if result is None:
        raise ValueError("batched_forward needs at least one text")
    return result


def embed_texts(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    pooling: Pooling = "mean",
    normalize: bool = False,
    batch_size: int = 64,
    max_length: int = 64,
    progress: bool = True,
    desc: str = "encoding",
) -> np.ndarray:
    """Return (n, d) pooled last hidden states of a (frozen) encoder.

    Texts are sorted by length so batches carry little padding (:func:`batched_forward`);
    ``"mean"`` pools the real tokens only (:func:`pool`, lesson 06's probe).

    Args:
        model: a ``transformers`` encoder (``AutoModel``) returning ``last_hidden_state``.
        tokenizer: its tokenizer.
        texts: n strings.
        pooling: ``"mean"`` or ``"cls"``.
        normalize: L2-normalise each row, so dot products are cosines.
        batch_size: texts per forward pass.
        max_length: truncation length (lesson 06 uses 64).
        progress: show a progress bar.
        desc: the bar's label.

    Returns:
        (n, d) float32 features in the order of ``texts`` (the model's mode is restored).

    Used in: lessons 01 (:func:`embed_sentences`) and 10 (cached probe features).
    """
    import torch

    texts = list(texts)
    if not texts:
        return np.zeros((0, int(model.config.hidden_size)), dtype=np.float32)
    device = str(next(model.parameters()).device)
    was_training = model.training
    model.eval()

    def embed(input_ids, attention_mask):
        states = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = pool(states.float(), attention_mask, pooling)
        return torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled

    out = batched_forward(embed, EncodedTexts.from_texts(tokenizer, texts, max_length),
                          pad_id_of(tokenizer), batch_size, Runtime(device, "fp32"), desc=desc,
                          progress=progress)  # fmt: skip
    model.train(was_training)
    return out


def embed_sentences(
    texts: list[str],
    name_or_path: str = "offline",
    *,
    batch_size: int = 32,
    pooling: Pooling = "mean",
    normalize: bool = True,
    prefix: str = "",
    max_length: int = 128,
    device: str | None = None,
) -> np.ndarray:
    """Embed sentences with an encoder, pooling its last hidden states.

    Sentences are batched by token length (less padding, :func:`batched_forward`); the
    loaded model is cached per (name, device) for the rest of the session
    (:func:`xlt_course.models.get_encoder`).

    Args:
        texts: n sentences.
        name_or_path: see :func:`xlt_course.models.resolve_model_id`.
        batch_size: sentences per forward pass.
        pooling: ``"mean"`` over non-padding tokens (E5's recipe) or ``"cls"`` (first token).
        normalize: L2-normalise each row, so dot products are cosines.
        prefix: prepended to every text; E5 expects ``"query: "`` or ``"passage: "``.
        max_length: tokens per sentence, longer ones are truncated.
        device: None picks :func:`xlt_course.setup.default_device`.

    Returns:
        (n, hidden) float32 embeddings in the order of ``texts``.

    Used in: lesson 01-shared-space (through :mod:`xlt_course.shared_space`).
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a list of strings (wrap a single sentence in a list)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    check_choice("pooling", pooling, Pooling)
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2 (room for <s> and </s>), got {max_length}")
    from xlt_course.models import get_encoder

    tokenizer, model = get_encoder(name_or_path, device or resolve_device("auto"))
    return embed_texts(model, tokenizer, [prefix + t for t in texts], pooling=pooling,
                       normalize=normalize, batch_size=batch_size, max_length=max_length,
                       progress=len(texts) > batch_size, desc="embedding")  # fmt: skip


_FEATURES: OrderedDict[str, dict[tuple[int, ...], Any]] = OrderedDict()
_FEATURES_MAX_ROWS = 200_000

#: torch threads while a linear head trains on cached features or predicts from them. Its
#: tensors hold a few thousand numbers, and on two threads each op paid more for waking the
#: second OpenMP thread than it computed (a 32 x 6 log-softmax: 68 us on two threads with
#: OMP_WAIT_POLICY=PASSIVE, 4 us on one); one thread gives the same results bit for bit
#: (tests/test_finetune.py) and trained a 100-epoch lesson-07 probe in 4.0 s instead of 8.6 s.
HEAD_THREADS = 1


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block on ``n`` torch CPU threads (None: as they are), then restore the count.

    Used in: every fine-tuning run (``FinetuneConfig.num_threads``), lesson 09's prompt runs
    and :func:`head_threads`.
    """
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def head_threads() -> contextlib.AbstractContextManager[None]:
    """Return a context that runs its block on :data:`HEAD_THREADS` torch CPU threads.

    For the training and prediction of a linear head on features computed before (the
    encoder's forward passes keep every thread).

    Used in: lessons 06-08 and 10 (linear probes, through :func:`finetune`) and 09 (the
    prompt's head warm-up).
    """
    return torch_threads(HEAD_THREADS)


def clear_feature_cache() -> None:
    """Forget the frozen-encoder features that linear-probe runs share within a session."""
    _FEATURES.clear()


def _train_probe(
    config, classifier, runtime, enc_train: EncodedTexts, enc_evals, pad_id, model_key
):
    """Linear probe: pool the frozen encoder's features once, train the head on them.

    The features depend on the pretrained encoder, the pooling and the tokens only, so they
    are kept in memory this session per distinct text (token ids): runs that differ in seed
    or head hyper-parameters, or that share texts (English + translated training sets,
    the same evaluation sets), encode each text once.
    """
    import torch

    classifier = classifier.to(runtime.device)

    def features(enc: EncodedTexts, desc: str) -> torch.Tensor:
        space = fingerprint([model_key, config.pooling, runtime.precision])
        rows = _FEATURES.setdefault(space, {})
        _FEATURES.move_to_end(space)
        keys = [tuple(ids) for ids in enc.input_ids]
        todo = list(dict.fromkeys(k for k in keys if k not in rows))
        if todo:
            classifier.eval()
            F = batched_forward(classifier.features, EncodedTexts.from_ids([list(k) for k in todo]),
                                pad_id, config.eval_batch_size, runtime,
                                desc=f"encoding {desc}", progress=config.progress)  # fmt: skip
            for key, vec in zip(todo, torch.from_numpy(F), strict=True):
                rows[key] = vec
        while len(_FEATURES) > 1 and sum(map(len, _FEATURES.values())) > _FEATURES_MAX_ROWS:
            _FEATURES.popitem(last=False)
        return torch.stack([rows[k] for k in keys])

    t0, c0 = time.perf_counter(), time.process_time()
    X = features(enc_train, "train").to(runtime.device)
    y = torch.as_tensor(enc_train.labels, dtype=torch.long, device=runtime.device)
    plan = _epoch_plan(config, enc_train)
    model = classifier.model
    optimizer, scheduler, params = _optimizer(model, config, plan)
    total_steps = sum(len(p) for p in plan)

    def steps(epoch: int):
        for batch in plan[epoch]:
            idx = torch.as_tensor(batch, device=runtime.device)
            yield [(part, len(batch)) for part in torch.tensor_split(idx, config.grad_accumulation)
                   if len(part)]  # fmt: skip

    def loss_fn(mb):
        part, n_step = mb
        loss = torch.nn.functional.cross_entropy(
            classifier.head(X[part]).float(), y[part], reduction="sum"
        )
        return loss / n_step, float(loss.detach()), len(part)

    model.train()
    # the features are fp32 already: the head trains without autocast or loss scaling
    with head_threads():
        history = train_loop(
            config.epochs, steps, loss_fn, optimizer, scheduler, params,
            runtime=Runtime(str(runtime.device), "fp32"), max_grad_norm=config.max_grad_norm,
        )  # fmt: skip
    train_seconds, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    t1, c1 = time.perf_counter(), time.process_time()
    model.eval()
    F_evals = {name: features(enc, name).to(runtime.device) for name, enc in enc_evals.items()}
    with head_threads(), torch.inference_mode():
        logits = {name: classifier.head(F).float().cpu().numpy() for name, F in F_evals.items()}
    lengths = enc_train.lengths
    stats = {
        "train_seconds": round(train_seconds, 2),
        "eval_seconds": round(time.perf_counter() - t1, 2),
        "train_cpu_seconds": round(train_cpu, 2),
        "eval_cpu_seconds": round(time.process_time() - c1, 2),
        "train_examples": len(y) * config.epochs,
        "train_tokens": int(lengths.sum()),  # the encoder sees each text once
        "train_padded_tokens": None,
        "optimizer_steps": total_steps,
    }
    return history, stats, logits


# --------------------------------------------------------------------------- masked language modelling


def mask_tokens(
    input_ids: np.ndarray,
    maskable: np.ndarray,
    *,
    mask_id: int,
    vocab_size: int,
    rng: np.random.Generator,
    mask_prob: float = 0.15,
    random_prob: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Choose MLM targets and corrupt the input (Devlin et al. 2019): the course's one masker.

    Args:
        input_ids: (batch, seq) token ids.
        maskable: (batch, seq) bool, True for real non-special tokens.
        mask_id: id of ``<mask>``/``[MASK]``.
        vocab_size: size of the vocabulary (random replacements are drawn from it).
        rng: numpy generator.
        mask_prob: share of maskable tokens chosen (at least one per row with a maskable token).
        random_prob: share of the chosen positions replaced by a random id (BERT: 0.1); the
            rest of the 20% that are not ``[MASK]`` stay unchanged (0.0: 80% ``[MASK]``, 20%
            kept, Dufter & Schütze's "no random replacement").

    Returns:
        ``(corrupted_ids, targets)``: (batch, seq) ids with 80% of the chosen positions set to
        ``mask_id``, 10% to a random id and 10% unchanged; (batch, seq) bool of the chosen
        positions.

    Used in: lessons 05-multilingual-pretraining and 10-transfer-gap-and-low-resource.
    """
    ids = np.array(input_ids, copy=True)
    maskable = np.asarray(maskable, dtype=bool)
    chosen = (rng.random(ids.shape) < mask_prob) & maskable
    for r in np.flatnonzero(~chosen.any(axis=1) & maskable.any(axis=1)):
        chosen[r, rng.choice(np.flatnonzero(maskable[r]))] = True
    u = rng.random(ids.shape)
    ids[chosen & (u < 0.8)] = mask_id
    if not 0.0 <= random_prob <= 0.2:
        raise ValueError(f"random_prob must be in [0, 0.2], got {random_prob}")
    rand = chosen & (u >= 0.8) & (u < 0.8 + random_prob)
    ids[rand] = rng.integers(0, vocab_size, int(rand.sum()))
    return ids, chosen


# --------------------------------------------------------------------------- checkpoints


FINETUNE_CONFIG_FILE = "finetune_config.json"


def _save_checkpoint(model, tokenizer, config: FinetuneConfig, folder: Path) -> None:
    model.config.xlt_pooling = config.pooling
    with quiet_transformers():
        model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / FINETUNE_CONFIG_FILE).write_text(
        json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8"
    )
    paths.share_files(folder)


def load_checkpoint(
    folder: str | Path, *, device: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, FinetuneConfig]:
    """Reload a saved run with ``from_pretrained``.

    Args:
        folder: a run's ``checkpoint`` folder (``FinetuneResult.checkpoint``).
        device: None picks :func:`xlt_course.runtime.default_device`.

    Returns:
        ``(model, tokenizer, config)``: ``AutoModelForSequenceClassification`` (eval mode;
        ``AutoModelForTokenClassification`` for a token task's run) and
        ``AutoTokenizer`` loaded from the folder, and the run's :class:`FinetuneConfig`. The
        course's one convention for checkpoints: model first, then tokenizer, then extras
        (:func:`xlt_course.pretrain.load_checkpoint` returns ``(model, tokenizer)``).
    """
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    folder = Path(folder)
    cfg_file = folder / FINETUNE_CONFIG_FILE
    if not cfg_file.is_file():
        raise ValueError(f"{folder} is not a fine-tuning checkpoint: {cfg_file.name} is missing")
    config = FinetuneConfig.from_dict(json.loads(cfg_file.read_text(encoding="utf-8")))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokens = getattr(AutoConfig.from_pretrained(folder), "xlt_task", None) == "tokens"
    auto = AutoModelForTokenClassification if tokens else AutoModelForSequenceClassification
    with quiet_transformers():
        model = auto.from_pretrained(folder)
    model.to(device or resolve_device("auto")).eval()
    return model, tokenizer, config


def predict_proba(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    pooling: Pooling = "cls",
    max_length: int = 64,
    batch_size: int = 64,
    precision: Precision = "auto",
    progress: bool = False,
) -> np.ndarray:
    """Return (n, C) class probabilities of a sequence-classification model on ``texts``.

    Args:
        model: e.g. from :func:`load_checkpoint`.
        tokenizer: its tokenizer.
        texts: n strings.
        pooling: the pooling the model was trained with (``config.pooling``).
        max_length: truncation length used in training.
        batch_size: texts per forward pass (length-sorted, padded per batch).
        precision: autocast precision on the model's device; the run's
            ``config.precision`` reproduces its stored probabilities.
        progress: show a progress bar.

    Returns:
        (n, C) float32 probabilities, rows in the order of ``texts``.
    """
    import torch

    device = str(next(model.parameters()).device)
    runtime = Runtime(device, resolve_precision(precision, device))
    enc = EncodedTexts.from_texts(tokenizer, texts, max_length)
    classifier = _make_classifier(model, pooling).eval()
    logits = batched_forward(classifier, enc, pad_id_of(tokenizer), batch_size, runtime,
                             desc="evaluating texts", progress=progress)  # fmt: skip
    return torch.softmax(torch.as_tensor(logits), dim=-1).numpy()


# --------------------------------------------------------------------------- topic data


def finetune_topics(config: FinetuneConfig, *, cache: CacheMode = "use") -> FinetuneResult | None:
    """Fine-tune on the topic dataset's train split and evaluate on ``config.languages``.

    Training uses ``load_topics("train", l)`` for every ``l`` in ``config.train_languages``
    (only items with a human translation in ``l``); evaluation uses ``config.eval_split``
    in every language of ``config.languages`` (parallel: the same items everywhere).

    Args:
        config: the run's settings.
        cache: see :func:`finetune`.

    Returns:
        A :class:`FinetuneResult` with one evaluation set per language code.

    Used in: lesson 06-zero-shot-transfer.
    """
    train, evals = topic_splits(config)
    return finetune(config, train, evals, cache=cache)


def topic_splits(config: FinetuneConfig) -> tuple[list[TopicSplit], dict[str, TopicSplit]]:
    """Return the topic splits a run of ``config`` trains on and evaluates on.

    Returns:
        ``([train split per train language], {language: eval split})``, as
        :func:`finetune_topics` passes them to :func:`finetune`.
    """
    from xlt_course.data.topics import load_topics

    train = [load_topics("train", lang) for lang in config.train_languages]
    evals = {lang: load_topics(config.eval_split, lang) for lang in config.languages}
    return train, evals
