"""Lesson 10-transfer-gap-and-low-resource: where the gap comes from, what to do about it.

The one implementation the course uses for

- **the log-linear resource model** ``acc ≈ a + b·log(size)``: a closed-form least-squares
  fit reported in base-invariant terms (accuracy at size 1, change per tenfold size, fitted
  values, residuals, R²), the t-interval of the slope and a bootstrap over the points
  (:func:`fit_log_linear`, :func:`per_decade_interval`, :func:`bootstrap_per_decade`);
- **paired comparisons** of two systems on the same test items (:func:`paired_bootstrap`,
  lesson 08's, imported here: Acc(a) − Acc(b));
- **few-shot samples** that are stratified by class and never touch held-out items
  (:func:`few_shot_sample`);
- **the low-resource playbook** measured with a frozen encoder and a linear probe:
  sentence features cached on disk (:func:`cached_features`, computed by
  :func:`xlt_course.training.embed_texts`), a
  multinomial logistic-regression probe (:func:`fit_probe`), and adaptive pretraining by
  continued masked-language modelling on target-language text (:func:`adapt_mlm`).

Facts: per-language CC-100 sizes from Conneau et al. (2020, ACL, Appendix A, Table 6), see
:mod:`xlt_course.published`; masked-language modelling as in Devlin et al. (2019,
NAACL); task-adaptive pretraining after Gururangan et al. (2020, ACL); language-adaptive
pretraining for low-resource languages after Chau et al. (2020, Findings of EMNLP) and
Pfeiffer et al. (2020, EMNLP); few-shot target data on top of zero-shot transfer after
Lauscher et al. (2020, EMNLP).

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xlt_course import paths, published
from xlt_course import training as tr
from xlt_course.data.manifest import atomic_path
from xlt_course.pivots_and_ensembles import paired_bootstrap

__all__ = [
    "CC100_GIB",
    "CC100_SOURCE",
    "CC100_TOKENS_M",
    "FAMILY",
    "LESSON",
    "SCRIPT",
    "LogLinearFit",
    "MLMConfig",
    "MLMResult",
    "Probe",
    "adapt_mlm",
    "bootstrap_per_decade",
    "cached_features",
    "few_shot_sample",
    "fit_log_linear",
    "fit_probe",
    "paired_bootstrap",
    "per_decade_interval",
    "weakest_language",
]

LESSON = "10-transfer-gap-and-low-resource"

#: Citation of the CC-100 figures (Conneau et al. 2020, ACL, Appendix A, Table 6).
CC100_SOURCE = published.cite("cc100_gib")
#: Size of each language's CC-100 pretraining data in GiB (uncompressed text), the corpus
#: XLM-R was trained on. ``zh`` is Simplified Chinese. See :mod:`xlt_course.published`.
CC100_GIB: dict[str, float] = published.CC100_GIB
#: The same table's token counts in millions. Tokens of languages written without spaces
#: (zh, ja, th) are not comparable with the others' (ja 69.3 GiB but 530M tokens), so the
#: lesson fits on GiB.
CC100_TOKENS_M: dict[str, float] = published.CC100_TOKENS_M

#: Writing system of the course's and XNLI's languages.
SCRIPT: dict[str, str] = {
    "en": "Latin", "fr": "Latin", "de": "Latin", "es": "Latin", "it": "Latin", "pt": "Latin",
    "vi": "Latin", "tr": "Latin", "sw": "Latin", "ru": "Cyrillic", "bg": "Cyrillic",
    "el": "Greek", "ar": "Arabic", "ur": "Arabic", "hi": "Devanagari", "th": "Thai",
    "zh": "Han", "ja": "Kana + Han",
}  # fmt: skip
#: Language family (branch for Indo-European languages).
FAMILY: dict[str, str] = {
    "en": "IE: Germanic", "de": "IE: Germanic", "fr": "IE: Romance", "es": "IE: Romance",
    "it": "IE: Romance", "pt": "IE: Romance", "ru": "IE: Slavic", "bg": "IE: Slavic",
    "el": "IE: Hellenic", "hi": "IE: Indo-Aryan", "ur": "IE: Indo-Aryan", "tr": "Turkic",
    "ar": "Afro-Asiatic", "vi": "Austroasiatic", "th": "Kra-Dai", "sw": "Niger-Congo",
    "zh": "Sino-Tibetan", "ja": "Japonic",
}  # fmt: skip


# --------------------------------------------------------------------------- the log-linear fit


@dataclass(frozen=True)
class LogLinearFit:
    """A least-squares fit ``acc ≈ intercept + per_decade · log10(size)``.

    Every field is independent of the base of the logarithm used to compute it.

    Attributes:
        intercept: fitted accuracy at ``size = 1`` (in the unit of ``size``).
        per_decade: change of the fitted accuracy per tenfold increase of ``size``.
        fitted: (n,) fitted values at the data points.
        residuals: (n,) ``acc - fitted``.
        r2: coefficient of determination, ``1 - SS_res / SS_tot``.
        per_decade_se: standard error of ``per_decade`` (needs n >= 3; nan otherwise).
        n: number of points.
    """

    intercept: float
    per_decade: float
    fitted: np.ndarray
    residuals: np.ndarray
    r2: float
    per_decade_se: float
    n: int

    def predict(self, size: Any) -> np.ndarray:
        """Return the fitted accuracy at ``size`` (scalar or array, same unit as the fit)."""
        return self.intercept + self.per_decade * np.log10(np.asarray(size, dtype=float))


def _check_xy(size: Any, acc: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(size, dtype=float)
    y = np.asarray(acc, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(
            f"size and acc must be 1-D of the same length, got {x.shape} and {y.shape}"
        )
    if len(x) < 2:
        raise ValueError(f"a line needs at least 2 points, got {len(x)}")
    if np.any(~np.isfinite(x)) or np.any(x <= 0):
        raise ValueError("every size must be a positive finite number (its logarithm is taken)")
    if np.any(~np.isfinite(y)):
        raise ValueError("acc holds a nan or inf")
    if np.ptp(np.log10(x)) == 0:
        raise ValueError("all sizes are equal: the slope is undefined")
    return x, y


def fit_log_linear(
    size: Sequence[float] | np.ndarray, acc: Sequence[float] | np.ndarray
) -> LogLinearFit:
    """Fit ``acc ≈ a + b·log10(size)`` by ordinary least squares, in closed form.

    Args:
        size: (n,) positive resource sizes (e.g. GiB of pretraining text).
        acc: (n,) accuracies (any unit; the fit keeps it).

    Returns:
        A :class:`LogLinearFit`; ``per_decade`` is ``b``, ``intercept`` is ``a``.

    Used in: lesson 10-transfer-gap-and-low-resource, exercise 1 (as the reference).
    """
    x, y = _check_xy(size, acc)
    t = np.log10(x)
    tc = t - t.mean()
    b = float(tc @ (y - y.mean()) / (tc @ tc))
    a = float(y.mean() - b * t.mean())
    fitted = a + b * t
    res = y - fitted
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(res @ res) / ss_tot if ss_tot > 0 else float("nan")
    n = len(x)
    se = math.sqrt(float(res @ res) / (n - 2) / float(tc @ tc)) if n >= 3 else float("nan")
    return LogLinearFit(a, b, fitted, res, r2, se, n)


def per_decade_interval(
    size: Sequence[float] | np.ndarray, acc: Sequence[float] | np.ndarray, level: float = 0.95
) -> tuple[float, float]:
    """Return the t-interval of the per-decade slope of :func:`fit_log_linear`.

    ``b ± t_{n-2, (1+level)/2} · SE(b)`` with ``SE(b)² = Σ r_i² / (n-2) / Σ (t_i - t̄)²``,
    valid when the residuals are independent, normal and of equal variance.

    Args:
        size: (n,) positive sizes, n >= 3.
        acc: (n,) accuracies.
        level: coverage, in (0, 1).

    Returns:
        ``(low, high)`` in accuracy units per tenfold size.

    Used in: lesson 10-transfer-gap-and-low-resource, exercise 2 (as the reference).
    """
    from scipy import stats

    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    fit = fit_log_linear(size, acc)
    if fit.n < 3:
        raise ValueError("an interval needs at least 3 points (n - 2 degrees of freedom)")
    q = float(stats.t.ppf((1 + level) / 2, fit.n - 2))
    return fit.per_decade - q * fit.per_decade_se, fit.per_decade + q * fit.per_decade_se


def bootstrap_per_decade(
    size: Sequence[float] | np.ndarray,
    acc: Sequence[float] | np.ndarray,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """Refit the per-decade slope on ``n_boot`` resamples of the points (with replacement).

    Resamples whose sizes are all equal (no slope) are drawn again.

    Args:
        size: (n,) positive sizes.
        acc: (n,) accuracies.
        n_boot: number of resamples.
        seed: numpy generator seed.

    Returns:
        (n_boot,) per-decade slopes; their percentiles give a bootstrap interval.
    """
    x, y = _check_xy(size, acc)
    rng = np.random.default_rng(seed)
    t = np.log10(x)
    out = np.empty(n_boot)
    i = 0
    while i < n_boot:
        idx = rng.integers(0, len(x), len(x))
        tc = t[idx] - t[idx].mean()
        denom = tc @ tc
        if denom <= 1e-12:
            continue
        out[i] = tc @ (y[idx] - y[idx].mean()) / denom
        i += 1
    return out


def weakest_language(acc: Mapping[str, Sequence[float]], source: str = "en") -> str:
    """Return the target language with the lowest mean accuracy over runs.

    Args:
        acc: accuracy per language, one value per run (seeds, settings).
        source: the training language, left out.

    Returns:
        The language code with the lowest mean (ties: the first in ``acc``'s order).
    """
    means = {lang: float(np.mean(v)) for lang, v in acc.items() if lang != source}
    if not means:
        raise ValueError(f"acc has no language other than the source {source!r}")
    return min(means, key=lambda lang: means[lang])


# --------------------------------------------------------------------------- few-shot samples


def few_shot_sample(
    labels: Sequence[int] | np.ndarray,
    ids: Sequence[str],
    k: int,
    seed: int,
    exclude: Iterable[str] = (),
) -> np.ndarray:
    """Draw k examples, stratified by class, never one whose id is in ``exclude``.

    Every class gets ``k // C`` examples and ``k % C`` randomly chosen classes one more, so
    class counts differ by at most one (C = the number of distinct labels among the allowed
    examples). A class with too few allowed examples gives what it has and the rest is
    spread over the other classes.

    Args:
        labels: (n,) class of each candidate.
        ids: (n,) item id of each candidate (e.g. the topic dataset's ``tp-...`` ids).
        k: sample size, 1 <= k <= the number of allowed candidates.
        seed: numpy generator seed; the same seed gives the same sample.
        exclude: ids that must never be drawn (test items, items used elsewhere).

    Returns:
        (k,) int64 indices into ``labels``, distinct, sorted.

    Used in: lesson 10-transfer-gap-and-low-resource, exercise 3 (as the reference).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(ids) != len(labels):
        raise ValueError(
            f"labels and ids must have the same length, got {labels.shape} and {len(ids)}"
        )
    banned = set(exclude)
    allowed = np.array([i for i, item in enumerate(ids) if item not in banned], dtype=np.int64)
    if not isinstance(k, (int, np.integer)) or k < 1 or k > len(allowed):
        raise ValueError(
            f"k must be an integer in [1, {len(allowed)}] (allowed candidates), got {k!r}"
        )
    rng = np.random.default_rng(seed)
    classes = np.unique(labels[allowed])
    pools = {c: rng.permutation(allowed[labels[allowed] == c]) for c in classes}
    quota = {c: 0 for c in classes}
    remaining = int(k)
    # Round-robin in a random class order: counts end up within one of each other, and a
    # class that runs out simply stops receiving.
    while remaining:
        open_classes = [c for c in rng.permutation(classes) if quota[c] < len(pools[c])]
        for c in open_classes[:remaining]:
            quota[c] += 1
        remaining -= min(remaining, len(open_classes))
    picked = np.concatenate([pools[c][: quota[c]] for c in classes])
    return np.sort(picked).astype(np.int64)


# --------------------------------------------------------------------------- frozen-encoder probe


def lesson_cache() -> Path:
    """Return this lesson's cache folder, ``paths.cache_dir()/10-transfer-gap-and-low-resource``."""
    return paths.cache_dir() / LESSON


def cached_features(
    name: str,
    texts: Sequence[str],
    encoder_key: str,
    get_encoder: Any,
    *,
    batch_size: int = 64,
    max_length: int = 64,
    cache: tr.CacheMode = "use",
    progress: bool = True,
) -> np.ndarray | None:
    """Return mean-pooled encoder features (:func:`xlt_course.training.embed_texts`), loaded
    from or stored in the lesson cache.

    Args:
        name: a readable part of the file name (e.g. ``"base-ja-test"``).
        texts: n strings (part of the cache key).
        encoder_key: identifies the encoder's weights (e.g. a hash of an MLM run's config).
        get_encoder: a callable returning ``(model, tokenizer)``, called only on a miss.
        batch_size: texts per forward pass.
        max_length: truncation length (part of the cache key).
        cache: ``"use"`` loads the cached features or computes and stores them;
            ``"refresh"`` recomputes and overwrites; ``"off"`` neither reads nor writes;
            ``"only"`` loads or returns None (the grader never encodes), as in
            :func:`xlt_course.training.finetune`.
        progress: show a progress bar.

    Returns:
        (n, d) float32 features, or None (``cache="only"`` and nothing cached).
    """
    tr.check_choice("cache", cache, tr.CacheMode)
    key = tr.fingerprint([encoder_key, max_length, list(texts)])[:16]
    path = lesson_cache() / "features" / f"{name}-{key}.npy"
    if cache in ("use", "only") and path.is_file():
        return np.load(path)
    if cache == "only":
        return None
    model, tokenizer = get_encoder()
    feats = tr.embed_texts(
        model,
        tokenizer,
        texts,
        batch_size=batch_size,
        max_length=max_length,
        progress=progress,
        desc=name,
    )
    if cache == "off":
        return feats
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, feats)
    return feats


@dataclass
class Probe:
    """A multinomial logistic-regression head on standardised features.

    Attributes:
        mean: (d,) feature means of the training set.
        scale: (d,) feature standard deviations of the training set (zeros replaced by 1).
        W: (d, C) weights; ``b``: (C,) biases.
    """

    mean: np.ndarray
    scale: np.ndarray
    W: np.ndarray
    b: np.ndarray

    def logits(self, X: np.ndarray) -> np.ndarray:
        """Return (n, C) logits of features X (n, d)."""
        return ((np.asarray(X, dtype=np.float64) - self.mean) / self.scale) @ self.W + self.b

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Return (n,) predicted classes."""
        return self.logits(X).argmax(axis=1)


def fit_probe(
    X: np.ndarray,
    y: np.ndarray,
    *,
    l2: float = 1e-2,
    n_classes: int | None = None,
    max_iter: int = 500,
) -> Probe:
    """Fit a multinomial logistic regression by L-BFGS (convex: no seed, one optimum).

    Minimises ``mean_i CE(softmax(x̃_i W + b), y_i) + l2 · ||W||²`` with ``x̃`` the features
    standardised by the training mean and standard deviation.

    Args:
        X: (n, d) training features.
        y: (n,) classes in ``0..C-1``.
        l2: weight of the squared-norm penalty on W (not on b).
        n_classes: C (default: ``y.max() + 1``).
        max_iter: L-BFGS iterations.

    Returns:
        The fitted :class:`Probe`.
    """
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be (n, d) and y (n,), got {X.shape} and {y.shape}")
    C = int(n_classes if n_classes is not None else y.max() + 1)
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale == 0] = 1.0
    Z = (X - mean) / scale
    n, d = Z.shape
    Y = np.eye(C)[y]

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W = theta[: d * C].reshape(d, C)
        b = theta[d * C :]
        logp = log_softmax(Z @ W + b, axis=1)
        loss = -(Y * logp).sum() / n + l2 * (W * W).sum()
        G = (np.exp(logp) - Y) / n
        gW = Z.T @ G + 2 * l2 * W
        return float(loss), np.concatenate([gW.ravel(), G.sum(axis=0)])

    res = minimize(loss_grad, np.zeros(d * C + C), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter})  # fmt: skip
    return Probe(mean, scale, res.x[: d * C].reshape(d, C), res.x[d * C :])


# --------------------------------------------------------------------------- adaptive pretraining


@dataclass(frozen=True)
class MLMConfig:
    """Continued masked-language modelling of an encoder on target-language text.

    The model is loaded with ``AutoModelForMaskedLM`` (a BERT or an XLM-R architecture). The
    offline encoder (multilingual-e5-small) was saved without its MLM head, so it gets a new,
    random prediction head (a dense layer + LayerNorm, and an output bias; the output matrix
    is tied to the frozen word embeddings); a hub MLM such as ``xlm-roberta-base`` keeps its
    own. Training runs
    in two phases: ``head_steps`` with only the head trained (the encoder is unchanged: this
    gives the "no adaptation" MLM loss), then ``steps`` with the head and the top
    ``train_layers`` transformer layers trained.

    Attributes:
        head_steps: optimiser steps that train the new head only.
        steps: optimiser steps that train the head and the top layers.
        train_layers: transformer layers (from the top) trained in the second phase.
        batch_size: texts per step.
        learning_rate: AdamW learning rate of the transformer layers.
        head_learning_rate: AdamW learning rate of the new head.
        mask_prob: share of real tokens chosen for prediction (of which 80% become
            ``<mask>``, 10% a random token, 10% stay; Devlin et al. 2019).
        max_length: tokens per text.
        seed: masks, batch order and head initialisation.
    """

    head_steps: int = 60
    steps: int = 150
    train_layers: int = 4
    batch_size: int = 16
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3
    mask_prob: float = 0.15
    max_length: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("head_steps", "steps", "train_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}")
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob!r}")


@dataclass
class MLMResult:
    """What :func:`adapt_mlm` measured.

    Attributes:
        config: the run's settings.
        key: identifies the adapted weights (use it as ``encoder_key`` of cached features).
        loss_history: mean training MLM loss per block of 10 steps, both phases.
        eval_loss_head_only: masked-token cross-entropy on the held-out texts after the
            head-only phase (the unadapted encoder with a trained head).
        eval_loss_adapted: the same after the second phase.
        seconds: wall-clock training time.
        trainable_params: parameters trained in the second phase.
        model: the adapted bare encoder (``model.base_model``), None when loaded from the cache.
    """

    config: MLMConfig
    key: str
    loss_history: list[float]
    eval_loss_head_only: float
    eval_loss_adapted: float
    seconds: float
    trainable_params: int
    model: Any = field(default=None, repr=False)


def adapt_mlm(
    texts: Sequence[str],
    config: MLMConfig,
    *,
    eval_texts: Sequence[str] = (),
    model: str = "offline",
    cache: tr.CacheMode = "use",
    progress: bool = True,
) -> MLMResult | None:
    """Continue masked-language modelling of ``model`` on ``texts`` (adaptive pretraining).

    Args:
        texts: unlabelled target-language training texts.
        config: see :class:`MLMConfig`.
        eval_texts: held-out target-language texts for the before/after MLM loss (fixed masks).
        model: ``"offline"``, a folder or a hub id of a BERT- or XLM-R-style encoder.
        cache: where the run's measurements (not the weights) are kept in the lesson cache:
            ``"use"``, ``"refresh"``, ``"off"`` or ``"only"`` (load or return None: the
            grader never trains), as in :func:`xlt_course.training.finetune`.
        progress: show a progress bar.

    Returns:
        An :class:`MLMResult`; its ``model`` is the adapted encoder when trained now (None
        when loaded from the cache: features of the adapted encoder are cached separately
        under ``key``). None with ``cache="only"`` and nothing cached.
    """
    from xlt_course.models import resolve_model_id

    model_id = resolve_model_id(model)
    key = tr.fingerprint(
        {
            "config": asdict(config),
            "model": tr.model_fingerprint(model_id),
            "texts": list(texts),
            "eval": list(eval_texts),
        }  # fmt: skip
    )[:16]
    path = lesson_cache() / "mlm" / f"{key}.json"
    if cache in ("use", "only") and path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        data["config"] = MLMConfig(**data["config"])
        return MLMResult(**data)
    if cache == "only":
        return None
    result = _train_mlm(model_id, texts, eval_texts, config, key, progress)
    if cache != "off":
        data = {k: v for k, v in asdict(result).items() if k != "model"}
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return result


def _train_mlm(
    model_id, texts, eval_texts, config: MLMConfig, key: str, progress: bool
) -> MLMResult:
    import torch
    from transformers import AutoModelForMaskedLM

    if len(texts) == 0:
        raise ValueError("texts is empty: adaptive pretraining needs target-language text")
    tokenizer = tr.get_tokenizer(model_id)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        with tr.quiet_transformers():
            mlm = AutoModelForMaskedLM.from_pretrained(model_id)
    runtime = tr.Runtime(tr.resolve_device("auto"), "fp32")
    device = runtime.device
    mlm.to(device).train()
    for p in mlm.parameters():
        p.requires_grad_(False)
    encoder = mlm.base_model
    # the MLM head is the model's one other child (BERT's ``cls``, XLM-R's ``lm_head``); its
    # output matrix is tied to the word embeddings, which stay frozen
    (lm_head,) = [m for n, m in mlm.named_children() if n != mlm.base_model_prefix]
    tied = mlm.get_input_embeddings().weight
    head = [p for n, p in lm_head.named_parameters() if "decoder.weight" not in n and p is not tied]
    for p in head:
        p.requires_grad_(True)
    layers = encoder.encoder.layer
    top = [p for layer in layers[len(layers) - config.train_layers :] for p in layer.parameters()]

    def tokenize(rows: Sequence[str]):
        enc = tokenizer(list(rows), truncation=True, max_length=config.max_length,
                        return_special_tokens_mask=True)  # fmt: skip
        return enc["input_ids"], enc["special_tokens_mask"]

    ids_all, special_all = tokenize(texts)
    rng = np.random.default_rng(config.seed)
    pad_id = tr.pad_id_of(tokenizer)
    vocab = mlm.config.vocab_size

    def loss_on(rows: list[int], ids_src, special_src, gen: np.random.Generator):
        ids_t, real_t = tr.pad_batch([ids_src[i] for i in rows], pad_id)
        ids, real = ids_t.numpy(), real_t.numpy().astype(bool)
        maskable = real & ~tr.pad_batch([special_src[i] for i in rows], 1)[0].numpy().astype(bool)
        corrupted, chosen = tr.mask_tokens(ids, maskable, mask_id=tokenizer.mask_token_id,
                                           vocab_size=vocab, rng=gen, mask_prob=config.mask_prob)  # fmt: skip
        hidden = encoder(input_ids=torch.as_tensor(corrupted, device=device),
                         attention_mask=real_t.to(device)).last_hidden_state  # fmt: skip
        sel = torch.as_tensor(chosen, device=device)
        logits = lm_head(hidden[sel])
        return torch.nn.functional.cross_entropy(
            logits, torch.as_tensor(ids[chosen], device=device)
        ), int(chosen.sum())

    def eval_loss() -> float:
        if not eval_texts:
            return float("nan")
        e_ids, e_special = tokenize(eval_texts)
        gen = np.random.default_rng(12345)  # the same masks before and after
        total, count = 0.0, 0
        mlm.eval()
        with torch.inference_mode():
            for s in range(0, len(e_ids), 64):
                rows = list(range(s, min(s + 64, len(e_ids))))
                loss, m = loss_on(rows, e_ids, e_special, gen)
                total += loss.item() * m
                count += m
        mlm.train()
        return total / max(count, 1)

    def train_batch(rows) -> tuple[Any, float, int]:
        loss, _ = loss_on(rows.tolist(), ids_all, special_all, rng)
        return loss, loss.detach().item(), 1

    step_losses: list[float] = []
    t0 = time.perf_counter()

    def run_phase(n_steps: int, groups: list[dict]) -> None:
        if n_steps == 0:
            return
        optimizer, _ = tr.make_optimizer(groups, weight_decay=0.01)  # constant learning rates
        size = min(config.batch_size, len(ids_all))
        tr.train_loop(
            1, lambda e: ([rng.choice(len(ids_all), size=size, replace=False)] for _ in range(n_steps)),
            train_batch, optimizer, None, [p for g in groups for p in g["params"]],
            runtime=runtime, max_grad_norm=1.0, total_steps=n_steps, desc="MLM",
            progress=progress, step_losses=step_losses,
        )  # fmt: skip

    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        run_phase(config.head_steps, [{"params": head, "lr": config.head_learning_rate}])
        before = eval_loss()
        for p in top:
            p.requires_grad_(True)
        run_phase(
            config.steps,
            [
                {"params": head, "lr": config.head_learning_rate},
                {"params": top, "lr": config.learning_rate},
            ],  # fmt: skip
        )
        after = eval_loss()
    # mean training loss per block of 10 steps, both phases
    history = [float(np.mean(step_losses[i : i + 10])) for i in range(0, len(step_losses), 10)]
    encoder = encoder.eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    return MLMResult(
        config=config,
        key=key,
        loss_history=history,
        eval_loss_head_only=before,
        eval_loss_adapted=after,
        seconds=round(time.perf_counter() - t0, 1),
        trainable_params=sum(p.numel() for p in head) + sum(p.numel() for p in top),
        model=encoder,
    )
