"""Lesson 09-prompts-and-code-switching: language-agnostic continuous prompts, code-switching.

Two ways to make one classifier serve many languages without touching most of the encoder:

- **Continuous prompts** (prompt tuning, Lester et al., 2021, EMNLP; the input-layer special
  case of prefix tuning, Li & Liang, 2021, ACL): ``m`` learnable vectors ``P`` (m, d) are
  prepended to the input embeddings of a *frozen* encoder, the attention mask is extended
  with ``m`` ones, and only ``P`` and a linear head are trained, on labelled data of several
  languages at once: min_P Σ_l E[L(f([P; x_l]), y)]. :class:`PromptClassifier` is the model,
  :func:`train_prompt` / :func:`prompt_topics` the training loop (bucketed batches, mixed
  precision and the training loop of :mod:`xlt_course.training`, cached on disk).
- **Code-switching augmentation** (CoSDA-ML, Qin et al., 2020, IJCAI): English training
  sentences get a fraction ``r`` of their dictionary words replaced by translations in other
  languages, the rest of the sentence kept. :func:`code_switch` is the augmenter,
  :func:`build_lexicons` the EN->FR (FreeDict + Apertium pivot) and EN->ES (Apertium
  eng-spa bidix) lexicons, :func:`split_lexicon` holds words out for a code-mixed test set.

Importing this module imports neither torch nor transformers; ``PromptClassifier`` is
created on first access (it subclasses ``torch.nn.Module``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from xlt_course import paths, published
from xlt_course import training as tr
from xlt_course.data.manifest import atomic_path
from xlt_course.data.topics import TopicSplit

if TYPE_CHECKING:
    import torch

__all__ = [
    "LESSON",
    "Lexicons",
    "PromptClassifier",  # noqa: F822 - created on first access (module __getattr__)
    "PromptConfig",
    "PromptResult",
    "XNLI_TRANSLATE_TRAIN_ALL_XLMR_BASE",
    "build_lexicons",
    "code_switch",
    "code_switch_split",
    "code_switch_text",
    "count_parameters",
    "eligible_positions",
    "eval_sets",
    "init_prompt",
    "parallel_train",
    "prepend_prompt",
    "prompt_topics",
    "split_lexicon",
    "train_prompt",
    "word_pieces",
]

LESSON = "09-prompts-and-code-switching"
CACHE_VERSION = 1

#: language -> English word -> its translations (non-empty lists, most frequent first).
Lexicons = dict[str, dict[str, list[str]]]

#: XNLI accuracy (%) of XLM-R Base fine-tuned on the English training set machine-translated
#: into all 15 XNLI languages ("translate-train-all"), with its citation in
#: :mod:`xlt_course.published`. Compare with ``published.XNLI_ZERO_SHOT["XLM-R Base"]``.
XNLI_TRANSLATE_TRAIN_ALL_XLMR_BASE = published.XNLI_TRANSLATE_TRAIN_ALL["XLM-R Base"]


def _cache_root() -> Path:
    return paths.cache_dir() / LESSON


# =========================================================================== prompts


def prepend_prompt(
    inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, prompt: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepend the same ``m`` prompt vectors to every sequence and extend its attention mask.

    Args:
        inputs_embeds: (B, T, d) input embeddings of the tokens.
        attention_mask: (B, T), 1 for real tokens, 0 for padding (any dtype).
        prompt: (m, d) prompt vectors (a parameter: gradients flow back to it).

    Returns:
        ``(embeds, mask)``: (B, m + T, d) with ``embeds[:, :m] = prompt`` and
        ``embeds[:, m:] = inputs_embeds``; (B, m + T) with ``m`` leading ones (every prompt
        position is attended to), in ``attention_mask``'s dtype and device.

    Used in: lesson 09-prompts-and-code-switching, exercise 1.
    """
    import torch

    if inputs_embeds.ndim != 3 or prompt.ndim != 2 or prompt.shape[1] != inputs_embeds.shape[2]:
        raise ValueError(
            f"inputs_embeds must be (B, T, d) and prompt (m, d), got {tuple(inputs_embeds.shape)} "
            f"and {tuple(prompt.shape)}"
        )
    if attention_mask.shape != inputs_embeds.shape[:2]:
        raise ValueError(
            f"attention_mask must be (B, T) = {tuple(inputs_embeds.shape[:2])}, "
            f"got {tuple(attention_mask.shape)}"
        )
    B, m = inputs_embeds.shape[0], prompt.shape[0]
    p = prompt.to(inputs_embeds.dtype).unsqueeze(0).expand(B, -1, -1)
    ones = torch.ones((B, m), dtype=attention_mask.dtype, device=attention_mask.device)
    return torch.cat([p, inputs_embeds], dim=1), torch.cat([ones, attention_mask], dim=1)


def init_prompt(embedding_weight: torch.Tensor, m: int, seed: int = 0) -> torch.Tensor:
    """Return ``m`` distinct rows of an embedding matrix, drawn uniformly (seeded).

    Lester et al. (2021) found that initialising prompt vectors from vocabulary embeddings
    trains better than random vectors, which sit far from anything the encoder has seen.

    Args:
        embedding_weight: (V, d) input embedding matrix.
        m: number of prompt vectors.
        seed: seed of the draw (a private generator: the global RNG is not touched).

    Returns:
        (m, d) a detached copy (float32).
    """
    import torch

    if m < 1 or m > embedding_weight.shape[0]:
        raise ValueError(f"m must be in 1..{embedding_weight.shape[0]}, got {m}")
    g = torch.Generator().manual_seed(seed)
    rows = torch.randperm(embedding_weight.shape[0], generator=g)[:m]
    return embedding_weight.detach()[rows.to(embedding_weight.device)].float().clone()


def count_parameters(module: Any, trainable: bool = True) -> int:
    """Return the number of (trainable, or all) parameters of a torch module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


_CLASSES: dict[str, type] = {}


def _prompt_classifier_class() -> type:
    if "PromptClassifier" in _CLASSES:
        return _CLASSES["PromptClassifier"]
    import torch

    class PromptClassifier(torch.nn.Module):
        """A frozen encoder with ``m`` learnable input prompt vectors and a linear head.

        ``forward(input_ids, attention_mask)``: embed the tokens with the encoder's input
        embedding layer, prepend ``prompt`` (:func:`prepend_prompt`), run the encoder on
        ``inputs_embeds`` with the extended mask, drop the ``m`` prompt positions, mean-pool
        the real tokens' last hidden states, apply ``head``: (B, C) logits.

        Only ``prompt`` (m, d) and ``head`` (d -> C) are trainable; every encoder parameter
        has ``requires_grad=False``. The same code runs the offline encoder (a ``BertModel``)
        and ``xlm-roberta-base`` (the position embeddings are added inside the encoder, so
        the prompt occupies positions 0..m-1 and the tokens follow).

        Args:
            encoder: a bare transformers encoder (``AutoModel``), e.g. from
                :func:`xlt_course.models.load_encoder`.
            num_labels: C.
            n_prompt: m.
            init: (m, d) initial prompt; None draws m vocabulary rows (:func:`init_prompt`).
            seed: seed of the prompt draw and of the head initialisation.

        Used in: lesson 09-prompts-and-code-switching, exercise 2 (as the reference).
        """

        def __init__(
            self,
            encoder: Any,
            num_labels: int,
            n_prompt: int,
            *,
            init: torch.Tensor | None = None,
            seed: int = 0,
        ) -> None:
            super().__init__()
            if num_labels < 1 or n_prompt < 1:
                raise ValueError(
                    f"num_labels and n_prompt must be >= 1, got {num_labels}, {n_prompt}"
                )
            self.encoder = encoder
            for p in self.encoder.parameters():
                p.requires_grad_(False)
            d = encoder.config.hidden_size
            weight = encoder.get_input_embeddings().weight
            if init is None:
                init = init_prompt(weight, n_prompt, seed)
            if tuple(init.shape) != (n_prompt, d):
                raise ValueError(
                    f"init must be (n_prompt, d) = {(n_prompt, d)}, got {tuple(init.shape)}"
                )
            self.prompt = torch.nn.Parameter(init.detach().clone().to(weight.device, torch.float32))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.head = torch.nn.Linear(d, num_labels).to(weight.device)

        @property
        def n_prompt(self) -> int:
            return self.prompt.shape[0]

        def hidden_states(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor
        ) -> torch.Tensor:
            """Return the encoder's (B, m + T, d) last hidden states, prompt positions first."""
            embeds = self.encoder.get_input_embeddings()(input_ids)
            embeds, mask = prepend_prompt(embeds, attention_mask, self.prompt)
            return self.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state

        def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            """Return (B, d) mean-pooled states of the real tokens (prompt positions dropped)."""
            hidden = self.hidden_states(input_ids, attention_mask)[:, self.n_prompt :]
            return tr.pool(hidden, attention_mask, "mean")

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(input_ids, attention_mask).to(self.head.weight.dtype))

    _CLASSES["PromptClassifier"] = PromptClassifier
    return PromptClassifier


def __getattr__(name: str) -> Any:
    if name == "PromptClassifier":
        return _prompt_classifier_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- data


def parallel_train(
    languages: Sequence[str], n_items: int | None = None, *, seed: int = 0
) -> list[TopicSplit]:
    """Return training splits of the same items in several languages (human translations).

    Args:
        languages: ISO 639-1 codes, e.g. ``("en", "fr", "de", "es")``.
        n_items: keep this many items (a seeded random choice among the items translated in
            every language); None keeps them all.
        seed: seed of the choice.

    Returns:
        One :class:`TopicSplit` per language, in ``languages``' order, all with the same ids
        in the same order (id order).
    """
    return _parallel(languages, n_items, "train", seed)


def eval_sets(
    languages: Sequence[str], n_items: int | None = None, *, split: str = "test", seed: int = 0
) -> dict[str, TopicSplit]:
    """Return the evaluation split in every language, restricted to the same ``n_items`` ids.

    Args:
        languages: ISO 639-1 codes.
        n_items: a seeded random choice of item ids (the same in every language); None
            keeps all (900 test items).
        split: ``"test"`` or ``"dev"``.
        seed: seed of the choice.

    Returns:
        ``{lang: TopicSplit}``, parallel (same ids, same order).
    """
    return dict(zip(languages, _parallel(languages, n_items, split, seed), strict=True))


def _parallel(
    languages: Sequence[str], n_items: int | None, split: str, seed: int
) -> list[TopicSplit]:
    from xlt_course.data.topics import load_topics

    splits = [load_topics(split, lang) for lang in languages]  # type: ignore[arg-type]
    common = sorted(set(splits[0].ids).intersection(*(s.ids for s in splits[1:])))
    if n_items is not None and n_items < len(common):
        common = sorted(
            np.random.default_rng(seed).choice(common, size=n_items, replace=False).tolist()
        )
    return [_select(s, common) for s in splits]


def _select(split: TopicSplit, ids: Sequence[str]) -> TopicSplit:
    where = {item: i for i, item in enumerate(split.ids)}
    rows = [where[i] for i in ids]
    return TopicSplit(
        split.lang, [split.texts[i] for i in rows], split.labels[rows], split.label_names, list(ids)
    )


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class PromptConfig:
    """Everything that decides a prompt-tuning run (and its cache key).

    Attributes:
        model: ``"offline"``, a local folder or a hub id such as ``"xlm-roberta-base"``.
        n_prompt: m, the number of prompt vectors.
        epochs: passes over the (multilingual) training set.
        batch_size: examples per optimiser step.
        learning_rate: peak AdamW learning rate of the prompt vectors.
        head_learning_rate: peak AdamW learning rate of the head (joint phase).
        head_warmup_epochs: first train the head alone, on the frozen features the model
            computes with its initial prompt (a linear probe, cheap: one forward pass over
            the training set), for this many epochs; 0 skips it. A new head needs hundreds
            of steps that prompt tuning on a CPU cannot afford; "linear probe, then tune"
            follows Kumar et al. (2022, ICLR).
        head_warmup_lr: the probe's peak learning rate.
        weight_decay: AdamW weight decay of the head's weight (never on the prompt).
        warmup_ratio: share of the steps with a linear warm-up, then linear decay to 0.
        max_grad_norm: gradient clipping norm (0 = none).
        max_length: tokens per text (before the prompt).
        seed: prompt draw, head initialisation, batch order.
        precision: as :func:`xlt_course.training.resolve_precision` (bf16/fp16 autocast on
            CUDA, fp32 on CPU).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``.
        eval_batch_size: examples per forward pass at evaluation.
        num_threads: torch CPU threads during the run (None keeps the setting).
        progress: tqdm bars.
    """

    model: str = "offline"
    n_prompt: int = 8
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 3e-2
    head_learning_rate: float = 1e-2
    head_warmup_epochs: int = 100
    head_warmup_lr: float = 0.1
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_length: int = 64
    seed: int = 0
    precision: tr.Precision = "auto"
    device: tr.Device = "auto"
    eval_batch_size: int = 64
    num_threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        tr.check_positive_ints(self, ("n_prompt", "epochs", "batch_size", "eval_batch_size"))
        if not isinstance(self.head_warmup_epochs, int) or self.head_warmup_epochs < 0:
            raise ValueError(
                f"head_warmup_epochs must be an integer >= 0, got {self.head_warmup_epochs!r}"
            )
        for name in ("learning_rate", "head_learning_rate", "head_warmup_lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < 10):
                raise ValueError(f"{name} must be in (0, 10), e.g. 3e-2, got {value!r}")
        if not (0 <= self.warmup_ratio < 1):
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if not isinstance(self.max_length, int) or self.max_length < 3:
            raise ValueError(f"max_length must be an integer >= 3, got {self.max_length!r}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise ValueError(f"device must be auto, cpu, cuda or mps, got {self.device!r}")

    def replace(self, **changes: Any) -> PromptConfig:
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


_NOT_IN_KEY = ("progress", "num_threads", "device", "eval_batch_size")


@dataclass
class PromptResult(tr.FinetuneResult):
    """What a prompt-tuning run measured: a :class:`xlt_course.training.FinetuneResult`
    (accuracy, probs, labels, ids, label_names, stats, history, cache_path, from_cache;
    ``checkpoint`` stays None) with the prompt-tuning settings and the trained prompt.

    Attributes:
        config: the run's settings.
        prompt: (m, d) the trained prompt vectors.
    """

    config: PromptConfig  # type: ignore[assignment]
    prompt: np.ndarray | None = None


def train_prompt(
    config: PromptConfig,
    train: TopicSplit | Sequence[TopicSplit],
    evals: Mapping[str, TopicSplit],
    *,
    cache: tr.CacheMode = "use",
) -> PromptResult | None:
    """Train prompt vectors and a head on a frozen encoder; evaluate on every set of ``evals``.

    Several training splits (e.g. the same items in four languages) are concatenated and
    shuffled together: one prompt for every language, min_P Σ_l E[L(f([P; x_l]), y)].

    Args:
        config: the run's settings.
        train: labelled training splits (same label order).
        evals: evaluation sets by name (usually language codes).
        cache: ``"use"``, ``"refresh"``, ``"off"`` or ``"only"`` (load or return None: the
            grader never trains), as in :func:`xlt_course.training.finetune`.

    Returns:
        A :class:`PromptResult` (None only with ``cache="only"`` and nothing cached).

    Used in: lesson 09-prompts-and-code-switching.
    """
    tr.check_choice("cache", cache, tr.CacheMode)
    splits = [train] if isinstance(train, TopicSplit) else list(train)
    if not splits:
        raise ValueError("train must be a TopicSplit or a non-empty list of them")
    train_split = tr.concat_splits(splits)
    if not evals:
        raise ValueError("evals must name at least one evaluation set")
    for name, s in evals.items():
        if tuple(s.label_names) != tuple(train_split.label_names):
            raise ValueError(f"evaluation set {name!r} has another label order than training")

    from xlt_course.models import resolve_model_id

    model_id = resolve_model_id(config.model)
    device = tr.resolve_device(config.device)
    precision = tr.resolve_precision(config.precision, device)
    folder = None
    if cache != "off":
        cfg = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_IN_KEY}
        key = tr.fingerprint(
            {
                "version": CACHE_VERSION,
                "config": cfg,
                "device": device.split(":")[0],
                "precision": precision,
                "model": tr.model_fingerprint(model_id),
                "train": tr.split_fingerprint(train_split),
                "evals": {n: tr.split_fingerprint(s) for n, s in evals.items()},
            }
        )[:20]
        folder = _cache_root() / f"prompt-{key}"
        if (folder / "metrics.json").is_file() and cache in ("use", "only"):
            return _load_prompt_result(folder)
        if cache == "only":
            return None
    result = _run_prompt(config, model_id, train_split, dict(evals), device, precision)
    if folder is not None:
        _save_prompt_result(result, folder)
        result.cache_path = folder
    return result


def prompt_topics(
    config: PromptConfig,
    train_languages: Sequence[str],
    eval_languages: Sequence[str],
    *,
    n_train_items: int | None = None,
    n_eval_items: int | None = None,
    cache: tr.CacheMode = "use",
) -> PromptResult | None:
    """Prompt-tune on the same topic training items in ``train_languages``, test everywhere.

    Args:
        config: the run's settings.
        train_languages: languages of the (parallel) training data.
        eval_languages: test languages.
        n_train_items: items per training language (:func:`parallel_train`).
        n_eval_items: test items per language (:func:`eval_sets`).
        cache: see :func:`train_prompt`.

    Used in: lesson 09-prompts-and-code-switching.
    """
    train = parallel_train(train_languages, n_train_items)
    evals = eval_sets(eval_languages, n_eval_items)
    return train_prompt(config, train, evals, cache=cache)


def _run_prompt(config, model_id, train: TopicSplit, evals, device, precision) -> PromptResult:
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModel

    with tr.torch_threads(config.num_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        runtime = tr.Runtime(device, precision)
        tokenizer = tr.get_tokenizer(model_id)
        with tr.quiet_transformers():
            encoder = AutoModel.from_pretrained(model_id)
        encoder.to(runtime.device).eval()  # frozen: a fixed function, no dropout
        model = _prompt_classifier_class()(
            encoder, len(train.label_names), config.n_prompt, seed=config.seed
        )

        enc_train = tr.encode_split(tokenizer, train, config.max_length)
        enc_evals = {n: tr.encode_split(tokenizer, s, config.max_length) for n, s in evals.items()}
        pad_id = tr.pad_id_of(tokenizer)
        history, stats = _train_loop(config, model, runtime, enc_train, pad_id)
        t1, c1 = time.perf_counter(), time.process_time()
        model.eval()  # the encoder is frozen; the head has no dropout
        logits = {
            name: tr.batched_forward(model, enc, pad_id, config.eval_batch_size, runtime,
                                     desc=f"evaluating {name}", progress=config.progress)
            for name, enc in enc_evals.items()
        }  # fmt: skip
        stats.update(
            eval_seconds=round(time.perf_counter() - t1, 2),
            eval_cpu_seconds=round(time.process_time() - c1, 2),
            trainable_params=count_parameters(model),
            total_params=count_parameters(model, trainable=False),
            device=str(runtime.device),
            precision=precision,
        )
        prompt = model.prompt.detach().float().cpu().numpy()
    del tqdm
    labels = {name: e.labels for name, e in enc_evals.items()}
    ids = {name: e.ids for name, e in enc_evals.items()}
    return tr.result_from_logits(
        PromptResult, config, logits, labels, ids, train.label_names, stats, history, prompt=prompt
    )


def _train_loop(config: PromptConfig, model, runtime, enc: tr.EncodedTexts, pad_id: int):
    import torch

    rng = np.random.default_rng(config.seed)
    plan = [
        tr.length_bucketed_batches(enc.lengths, config.batch_size, rng=rng)
        for _ in range(config.epochs)
    ]
    collate = tr.collate(enc, pad_id)
    groups = [
        {"params": [model.prompt], "lr": config.learning_rate, "weight_decay": 0.0},
        {"params": [model.head.weight], "lr": config.head_learning_rate,
         "weight_decay": config.weight_decay},
        {"params": [model.head.bias], "lr": config.head_learning_rate, "weight_decay": 0.0},
    ]  # fmt: skip
    total = sum(len(p) for p in plan)
    optimizer, scheduler = tr.make_optimizer(
        groups, total_steps=total, warmup_steps=math.ceil(config.warmup_ratio * total)
    )
    params = [model.prompt, model.head.weight, model.head.bias]
    t0, c0 = time.perf_counter(), time.process_time()
    warmup = _warm_up_head(config, model, runtime, enc, pad_id) if config.head_warmup_epochs else []

    def loss_fn(mb):
        mb = runtime.to_device(mb)
        with runtime.autocast():
            logits = model(mb["input_ids"], mb["attention_mask"])
        loss = torch.nn.functional.cross_entropy(logits.float(), mb["labels"])
        return loss, float(loss.detach()) * len(mb["labels"]), len(mb["labels"])

    history = tr.train_loop(
        config.epochs, lambda e: (collate(batch) for batch in plan[e]), loss_fn, optimizer,
        scheduler, params, runtime=runtime, max_grad_norm=config.max_grad_norm,
        total_steps=total, desc="prompt tuning", progress=config.progress,
    )  # fmt: skip
    stats = {
        "train_seconds": round(time.perf_counter() - t0, 2),
        "train_cpu_seconds": round(time.process_time() - c0, 2),
        "train_examples": len(enc.labels) * config.epochs,
        "optimizer_steps": total,
        "head_warmup_loss": warmup,
    }
    return history, stats


def _warm_up_head(config: PromptConfig, model, runtime, enc: tr.EncodedTexts, pad_id: int):
    """Train the head alone on the features of the initial prompt; return the loss per epoch."""
    import torch

    X = torch.as_tensor(
        tr.batched_forward(model.features, enc, pad_id, config.eval_batch_size, runtime),
        device=runtime.device,
    )
    y = torch.as_tensor(enc.labels, dtype=torch.long, device=runtime.device)
    n_batches = math.ceil(len(y) / config.batch_size)
    steps = config.head_warmup_epochs * n_batches
    optimizer, scheduler = tr.make_optimizer(
        model.head.parameters(), lr=config.head_warmup_lr, weight_decay=0.0,
        total_steps=steps, warmup_steps=math.ceil(config.warmup_ratio * steps),
    )  # fmt: skip
    rng = np.random.default_rng(config.seed + 1)

    def loss_fn(part):
        idx = torch.as_tensor(part, device=runtime.device)
        loss = torch.nn.functional.cross_entropy(model.head(X[idx]), y[idx])
        return loss, float(loss.detach()) * len(part), len(part)

    with tr.head_threads():
        history = tr.train_loop(
            config.head_warmup_epochs,
            lambda e: ([part] for part in np.array_split(rng.permutation(len(y)), n_batches)),
            loss_fn, optimizer, scheduler, list(model.head.parameters()),
            runtime=tr.Runtime(str(runtime.device), "fp32"),  # fp32 features, a linear head
            max_grad_norm=0.0,
        )  # fmt: skip
    return [round(h["loss"], 4) for h in history]


def _save_prompt_result(result: PromptResult, folder: Path) -> None:
    arrays = {} if result.prompt is None else {"prompt": result.prompt}
    with tr.atomic_folder(folder) as tmp:
        config = dataclasses.asdict(result.config)
        tr.save_result(result, tmp, config, CACHE_VERSION, arrays)


def _load_prompt_result(folder: Path) -> PromptResult:
    return tr.load_result(folder, lambda c: PromptConfig(**c), PromptResult, arrays=("prompt",))


# =========================================================================== code-switching

_WORD = re.compile(r"[^\W\d_]+")


def word_pieces(text: str) -> list[str]:
    """Split a text into alternating non-word and word pieces, so that ``"".join`` gives it back.

    A word is a maximal run of letters (``[^\\W\\d_]+``); everything else (spaces,
    punctuation, digits) forms the pieces between words, which no lexicon translates.

    Returns:
        The pieces, e.g. ``"Cannot open file."`` -> ``["", "Cannot", " ", "open", " ", "file", "."]``.
    """
    pieces: list[str] = []
    last = 0
    for m in _WORD.finditer(text):
        pieces.append(text[last : m.start()])
        pieces.append(m.group())
        last = m.end()
    pieces.append(text[last:])
    return pieces


def eligible_positions(
    tokens: Sequence[str], lexicons: Mapping[str, Mapping[str, Sequence[str]]]
) -> list[int]:
    """Return the positions of the tokens whose lowercase form has an entry in some lexicon."""
    return [i for i, t in enumerate(tokens) if any(t.lower() in lex for lex in lexicons.values())]


def code_switch(
    tokens: Sequence[str],
    lexicons: Mapping[str, Mapping[str, Sequence[str]]],
    r: float,
    seed: int,
) -> list[str]:
    """Replace a fraction ``r`` of the eligible tokens by dictionary translations.

    A token is *eligible* when ``token.lower()`` is a key of at least one lexicon. Exactly
    k = ⌊r·n + ½⌋ of the n eligible tokens (``r`` of the eligible tokens, rounded half up)
    are chosen uniformly at random without replacement; each chosen token is replaced by a
    translation: a language drawn uniformly among those whose lexicon has the word, then a
    translation drawn uniformly from its list. Every other token is kept as it is.

    Args:
        tokens: the sentence as a list of tokens (words and, e.g., punctuation pieces).
        lexicons: ``{lang: {english word (lowercase): [translations]}}``, lists non-empty.
        r: fraction of the eligible tokens to replace, in [0, 1].
        seed: seeds a private ``random.Random``: the same call gives the same output, and
            the global random state is not touched.

    Returns:
        A new list of the same length (``tokens`` is not modified).

    Used in: lesson 09-prompts-and-code-switching, exercise 3 (as the reference).
    """
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"r must be in [0, 1], got {r!r}")
    eligible = eligible_positions(tokens, lexicons)
    k = math.floor(r * len(eligible) + 0.5)
    rng = random.Random(seed)
    out = list(tokens)
    for i in sorted(rng.sample(eligible, k)):
        word = tokens[i].lower()
        langs = [lang for lang in sorted(lexicons) if word in lexicons[lang]]
        out[i] = rng.choice(list(lexicons[rng.choice(langs)][word]))
    return out


def code_switch_text(
    text: str, lexicons: Mapping[str, Mapping[str, Sequence[str]]], r: float, seed: int
) -> str:
    """Return ``text`` with a fraction ``r`` of its dictionary words switched (:func:`code_switch`
    on :func:`word_pieces`; spaces and punctuation are kept)."""
    return "".join(code_switch(word_pieces(text), lexicons, r, seed))


def _item_seed(seed: int, item: str) -> int:
    return int(np.random.SeedSequence([seed, *item.encode()]).generate_state(1)[0])


def code_switch_split(
    split: TopicSplit, lexicons: Mapping[str, Mapping[str, Sequence[str]]], r: float, seed: int = 0
) -> TopicSplit:
    """Return a copy of ``split`` whose texts are code-switched at rate ``r``.

    Each item gets its own seed derived from ``seed`` and its id, so an item is switched the
    same way whatever else is in the split.

    Args:
        split: English texts (labels and ids are kept).
        lexicons: see :func:`code_switch`.
        r: fraction of each text's eligible words to switch.
        seed: augmentation seed.

    Returns:
        A :class:`TopicSplit` with ``lang`` ``"en+cs"``.

    Used in: lesson 09-prompts-and-code-switching.
    """
    texts = [
        code_switch_text(t, lexicons, r, _item_seed(seed, i))
        for t, i in zip(split.texts, split.ids, strict=True)
    ]
    return TopicSplit(
        f"{split.lang}+cs", texts, split.labels.copy(), split.label_names, list(split.ids)
    )


def _rank_by_frequency(words: Sequence[str], lang: str) -> list[str]:
    from wordfreq import zipf_frequency

    unique = list(dict.fromkeys(words))
    return sorted(unique, key=lambda w: (-zipf_frequency(w, lang), w))


def build_lexicons(
    languages: Sequence[Literal["fr", "es"]] = ("fr", "es"),
    *,
    max_translations: int = 3,
    cache: bool = True,
) -> Lexicons:
    """Return English -> {French, Spanish} word lexicons for code-switching.

    - ``fr``: the course's EN-FR dictionary (FreeDict ``eng-fra``/``fra-eng`` and the Apertium
      EN->ES->FR pivot; :func:`xlt_course.data.dictionary.load_dictionary`, both splits).
    - ``es``: the single-word lemma pairs of Apertium's eng-spa bilingual dictionary
      (:func:`xlt_course.data.dictionary.bidix_pairs`, a few seconds; cached).

    Pairs whose translation equals the English word are dropped (switching them changes
    nothing), and each word keeps its ``max_translations`` most frequent translations in
    the target language (``wordfreq`` Zipf frequency), so rare senses ("file" -> "lime")
    are less likely.

    Args:
        languages: which lexicons.
        max_translations: translations kept per word.
        cache: keep the result as JSON under ``cache_dir()/09-prompts-and-code-switching/``.

    Returns:
        ``{lang: {english word: [translations, most frequent first]}}``.

    Used in: lesson 09-prompts-and-code-switching.
    """
    from xlt_course.data import dictionary

    for lang in languages:
        if lang not in ("fr", "es"):
            raise ValueError(f"languages must be among ('fr', 'es'), got {lang!r}")
    if max_translations < 1:
        raise ValueError(f"max_translations must be >= 1, got {max_translations}")
    file = _cache_root() / f"lexicons-{'-'.join(languages)}-{max_translations}.json"
    if cache and file.is_file():
        return json.loads(file.read_text(encoding="utf-8"))
    out: Lexicons = {}
    for lang in languages:
        if lang == "fr":
            pairs = dictionary.load_dictionary("en", "fr", "all")
        else:
            pairs = dictionary.bidix_pairs(dictionary.APERTIUM_BIDIX)
        by_word: dict[str, list[str]] = {}
        for en, tgt in pairs:
            if en != tgt and _WORD.fullmatch(en) and _WORD.fullmatch(tgt):
                by_word.setdefault(en, []).append(tgt)
        out[lang] = {
            en: _rank_by_frequency(ts, lang)[:max_translations]
            for en, ts in sorted(by_word.items())
        }
    if cache:
        with atomic_path(file) as tmp:
            tmp.write_text(json.dumps(out, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def split_lexicon(
    lexicons: Mapping[str, Mapping[str, Sequence[str]]], held_out: float = 0.5, *, seed: int = 0
) -> tuple[Lexicons, Lexicons]:
    """Split lexicons by English word into augmentation and held-out parts.

    Every English word with an entry in any lexicon goes, with all its translations in
    every language, to the held-out part with probability ``held_out`` (a seeded random
    choice of ``round(held_out * n)`` words), otherwise to the augmentation part. Training
    data switched with the augmentation part never shows a held-out word's translations,
    so a code-mixed test set built from the held-out part measures generalisation, not
    memorised word pairs.

    Returns:
        ``(augment, held)``, each ``{lang: {word: translations}}``, with disjoint words.
    """
    if not 0 <= held_out <= 1:
        raise ValueError(f"held_out must be in [0, 1], got {held_out}")
    words = sorted({w for lex in lexicons.values() for w in lex})
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(words)[: round(held_out * len(words))].tolist())
    augment = {
        lang: {w: list(t) for w, t in lex.items() if w not in held}
        for lang, lex in lexicons.items()
    }
    heldout = {
        lang: {w: list(t) for w, t in lex.items() if w in held} for lang, lex in lexicons.items()
    }
    return augment, heldout
