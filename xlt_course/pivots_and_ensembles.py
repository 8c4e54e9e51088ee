"""Lesson 08-pivots-and-ensembles: multi-source ensembles, pivot translation, the decision table.

Two ways of using more than one language at once:

- **Multi-source ensembles.** The topic data is parallel: many training messages have a
  human translation in several languages. One classifier per source language is trained on
  the *same items* (:func:`common_item_ids`, :func:`restrict`, so sources differ in their
  language only) and their class probabilities are averaged on a target
  (:func:`ensemble_proba`). Models trained separately may list their classes in different
  orders, so every output is first put into one order (:func:`align_label_order`); rows
  are matched by item id (:func:`align_rows`), never by position.
- **Pivots.** When no MT system translates ``src`` directly into ``tgt``, a chain through a
  pivot language does (FR->ES->EN with Apertium). :func:`pivot_route` finds the shortest
  chain in a set of directed pairs, :func:`translate_along` runs it hop by hop through
  :func:`xlt_course.translate.translate` (each hop cached there).

:func:`paired_bootstrap` says whether two strategies evaluated on the same test items
differ by more than the noise of the test set, and :func:`decision_table` lays the measured
strategies side by side.

Importing this module imports neither torch nor transformers (nor pandas).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from xlt_course.data.topics import TopicSplit

if TYPE_CHECKING:
    import pandas as pd

    from xlt_course.training import CacheMode, FinetuneConfig, FinetuneResult

__all__ = [
    "Combine",
    "Kind",
    "align_label_order",
    "align_rows",
    "common_item_ids",
    "decision_table",
    "direct_pairs",
    "ensemble_proba",
    "paired_bootstrap",
    "pivot_route",
    "probe_config",
    "relabel",
    "restrict",
    "softmax",
    "source_runs",
    "translate_along",
    "translated_split",
]

Kind = Literal["probs", "logits"]
Combine = Literal["mean_prob", "mean_logprob"]


# --------------------------------------------------------------------------- ensembles


def softmax(logits: Any, axis: int = -1) -> np.ndarray:
    """Return the softmax of ``logits`` along ``axis``, without overflow for large logits.

    Args:
        logits: (n, C) scores (numpy, list or torch tensor).
        axis: the class axis.

    Returns:
        Float64 probabilities of the same shape, summing to 1 along ``axis``.
    """
    z = np.asarray(logits.detach().cpu() if hasattr(logits, "detach") else logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)  # exp of a large logit would overflow to inf
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def align_label_order(
    scores: Any, label_names: Sequence[str], target_names: Sequence[str]
) -> np.ndarray:
    """Reorder the class columns of ``scores`` from ``label_names`` into ``target_names``.

    Args:
        scores: (n, C) probabilities or logits whose column j is class ``label_names[j]``.
        label_names: the C class names of ``scores``, in its column order.
        target_names: the same C names in the order wanted.

    Returns:
        (n, C) array ``out`` with ``out[:, k]`` = the column of class ``target_names[k]``.

    Raises:
        ValueError: the two lists do not hold the same C distinct names, or ``scores`` does
            not have C columns.

    Used in: lesson 08-pivots-and-ensembles, exercise 1 (as the reference).
    """
    names, target = list(label_names), list(target_names)
    if len(set(names)) != len(names) or sorted(names) != sorted(target):
        raise ValueError(
            f"label_names {names} and target_names {target} must hold the same distinct "
            "class names (in any order)"
        )
    arr = np.asarray(scores)
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise ValueError(f"scores must be (n, {len(names)}), got shape {arr.shape}")
    column = {name: j for j, name in enumerate(names)}
    return arr[:, [column[name] for name in target]]


def ensemble_proba(
    outputs: Sequence[Any],
    label_names: Sequence[Sequence[str]],
    target_names: Sequence[str],
    *,
    kind: Kind = "probs",
    combine: Combine = "mean_prob",
    weights: Sequence[float] | None = None,
) -> np.ndarray:
    """Average the class probabilities of several classifiers on the same items.

    Each output is first put into the class order ``target_names``
    (:func:`align_label_order`); logits are turned into probabilities by a softmax.

    ``combine="mean_prob"`` averages probabilities (a mixture: every model has a bounded
    say, at most its weight, however confident it is). ``"mean_logprob"`` averages
    log-probabilities and renormalises (a normalised geometric mean, i.e. averaging
    logits: a very confident model can outvote the others).

    Args:
        outputs: M arrays (n, C), one per model, rows the same items in the same order.
        label_names: M lists, the class order of each output's columns.
        target_names: the C class names in the order of the result.
        kind: ``"probs"`` (rows sum to 1) or ``"logits"``.
        combine: ``"mean_prob"`` or ``"mean_logprob"``.
        weights: M non-negative model weights (None = equal), normalised to sum 1.

    Returns:
        (n, C) float64 probabilities in the order ``target_names``.

    Used in: lesson 08-pivots-and-ensembles, exercise 1 (as the reference).
    """
    if kind not in ("probs", "logits"):
        raise ValueError(f"kind must be 'probs' or 'logits', got {kind!r}")
    if combine not in ("mean_prob", "mean_logprob"):
        raise ValueError(f"combine must be 'mean_prob' or 'mean_logprob', got {combine!r}")
    if len(outputs) == 0 or len(outputs) != len(label_names):
        raise ValueError(
            f"give one label order per output: {len(outputs)} outputs, {len(label_names)} orders"
        )
    w = np.ones(len(outputs)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(outputs),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {len(outputs)} non-negative numbers, not all 0")
    w = w / w.sum()
    probs = []
    for out, names in zip(outputs, label_names, strict=True):
        arr = np.asarray(out.detach().cpu() if hasattr(out, "detach") else out, dtype=np.float64)
        p = softmax(arr) if kind == "logits" else arr
        probs.append(align_label_order(p, names, target_names))
    shapes = {p.shape for p in probs}
    if len(shapes) != 1:
        raise ValueError(f"outputs have different shapes {sorted(shapes)}: align their rows first")
    stack = np.stack(probs)  # (M, n, C)
    if combine == "mean_prob":
        return np.tensordot(w, stack, axes=1)
    logp = np.log(np.clip(stack, 1e-300, None))
    return softmax(np.tensordot(w, logp, axes=1))


def align_rows(scores: Any, ids: Sequence[str], target_ids: Sequence[str]) -> np.ndarray:
    """Reorder the rows of ``scores`` (row i = item ``ids[i]``) into ``target_ids`` order.

    Args:
        scores: (n, C) array.
        ids: the n item ids of its rows.
        target_ids: m item ids, each present in ``ids``.

    Returns:
        (m, C) array, row k for item ``target_ids[k]``.
    """
    where = {item: i for i, item in enumerate(ids)}
    missing = [t for t in target_ids if t not in where]
    if missing:
        raise ValueError(f"{len(missing)} target ids are not among the rows, e.g. {missing[0]!r}")
    return np.asarray(scores)[[where[t] for t in target_ids]]


def relabel(split: TopicSplit, label_names: Sequence[str]) -> TopicSplit:
    """Return ``split`` with its class indices rewritten for another class order.

    Args:
        split: a labelled split.
        label_names: the same class names in a new order.

    Returns:
        A :class:`TopicSplit` with the same texts whose ``labels`` index ``label_names``.
    """
    new = {name: k for k, name in enumerate(label_names)}
    if sorted(new) != sorted(split.label_names):
        raise ValueError(f"{list(label_names)} is not a reordering of {list(split.label_names)}")
    mapping = np.array([new[name] for name in split.label_names], dtype=np.int64)
    return TopicSplit(
        split.lang, list(split.texts), mapping[split.labels], tuple(label_names), list(split.ids)
    )


# --------------------------------------------------------------------------- size control


def common_item_ids(splits: Mapping[str, TopicSplit] | Iterable[TopicSplit]) -> list[str]:
    """Return the ids present in every split, in the order of the first split.

    Args:
        splits: TopicSplits (e.g. ``load_topics("train", l)`` for several ``l``; each holds
            only the items with a human translation in its language).

    Returns:
        The shared item ids.

    Used in: lesson 08-pivots-and-ensembles, exercise 2 (as the reference).
    """
    parts = list(splits.values()) if isinstance(splits, Mapping) else list(splits)
    if not parts:
        raise ValueError("give at least one split")
    shared = set(parts[0].ids)
    for s in parts[1:]:
        shared &= set(s.ids)
    return [i for i in parts[0].ids if i in shared]


def restrict(split: TopicSplit, ids: Sequence[str]) -> TopicSplit:
    """Return the items of ``split`` with the given ids, in the order of ``ids``.

    Args:
        split: a TopicSplit of n items.
        ids: m ids, each present in ``split``.

    Returns:
        A TopicSplit of m items (texts, labels and ids moved together).

    Used in: lesson 08-pivots-and-ensembles, exercise 2 (as the reference).
    """
    where = {item: i for i, item in enumerate(split.ids)}
    missing = [i for i in ids if i not in where]
    if missing:
        raise ValueError(
            f"{len(missing)} ids are not in the {split.lang} split, e.g. {missing[0]!r}: "
            "take the ids from common_item_ids"
        )
    rows = [where[i] for i in ids]
    return TopicSplit(
        split.lang,
        [split.texts[r] for r in rows],
        split.labels[rows].copy(),
        split.label_names,
        [split.ids[r] for r in rows],
    )


# --------------------------------------------------------------------------- statistics


def paired_bootstrap(
    correct_a: Any,
    correct_b: Any,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Estimate Acc(a) - Acc(b) on the same test items with a paired bootstrap interval.

    Both systems are scored on the same n items, so items are resampled together: an item
    that is hard for both moves both accuracies (Koehn, 2004, EMNLP, for MT metrics;
    Efron and Tibshirani, 1993, for the bootstrap). The course's one paired comparison
    (lesson 10 imports it): the difference is always a minus b, so put the system under
    test first and the baseline second (``paired_bootstrap(new, baseline)`` > 0: new wins).

    Args:
        correct_a: (n,) booleans, system a right on item i.
        correct_b: (n,) booleans for system b on the same items.
        n_boot: bootstrap resamples.
        seed: numpy seed of the resampling.
        level: coverage of the percentile interval.

    Returns:
        ``(difference, low, high)``: mean(correct_a) - mean(correct_b) and the percentile
        interval, in accuracy units (fractions for 0/1 inputs).

    Used in: lessons 08-pivots-and-ensembles and 10-transfer-gap-and-low-resource.
    """
    a = np.asarray(correct_a, dtype=np.float64)
    b = np.asarray(correct_b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(
            f"correct_a and correct_b must be (n,) of equal n, got {a.shape}, {b.shape}"
        )
    d = a - b
    idx = np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))
    means = d[idx].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(d.mean()), float(low), float(high)


# --------------------------------------------------------------------------- pivots


def pivot_route(pairs: Iterable[tuple[str, str]], src: str, tgt: str) -> list[str]:
    """Return a shortest chain of languages from ``src`` to ``tgt`` along directed MT pairs.

    Breadth-first search: a direct pair gives ``[src, tgt]``, one pivot ``[src, p, tgt]``.
    A pair ``(a, b)`` translates a into b only (MT systems are directional). Among routes of
    the same length, the one whose languages come first alphabetically is returned.

    Args:
        pairs: (from, to) ISO 639-1 pairs a system translates directly.
        src: language of the texts.
        tgt: language wanted.

    Returns:
        The languages visited, ``src`` first and ``tgt`` last (``[src]`` when equal).

    Raises:
        ValueError: no chain of pairs leads from ``src`` to ``tgt``.

    Used in: lesson 08-pivots-and-ensembles, exercise 3 (as the reference).
    """
    graph: dict[str, set[str]] = {}
    for a, b in pairs:
        graph.setdefault(a, set()).add(b)
    previous: dict[str, str | None] = {src: None}
    queue = deque([src])
    while queue:
        lang = queue.popleft()
        if lang == tgt:
            route = [lang]
            while previous[route[-1]] is not None:
                route.append(previous[route[-1]])  # type: ignore[arg-type]
            return route[::-1]
        for nxt in sorted(graph.get(lang, ())):
            if nxt not in previous:
                previous[nxt] = lang
                queue.append(nxt)
    raise ValueError(f"no chain of translation pairs leads from {src!r} to {tgt!r}")


def direct_pairs(system: str = "apertium") -> list[tuple[str, str]]:
    """Return the pairs a system translates in one step (Apertium: its installed modes).

    ``xlt_course.translate.available_pairs("apertium")`` also lists EN<->FR, which Apertium
    reaches only through Spanish; this function leaves such built-in pivots out.
    """
    from xlt_course import translate as mt

    pairs = mt.available_pairs(system)
    if system == "apertium":
        return [p for p in pairs if len(mt.APERTIUM_ROUTES[p]) == 1]
    return pairs


def translate_along(
    texts: Sequence[str],
    route: Sequence[str],
    system: str = "apertium",
    *,
    translate_fn: Callable[..., list[str]] | None = None,
    progress: bool = False,
) -> list[str]:
    """Translate ``texts`` hop by hop along ``route`` (e.g. ``["fr", "es", "en"]``).

    Args:
        texts: n strings in ``route[0]``.
        route: languages, at least two; each consecutive pair is one call.
        system: the MT system of every hop (see :func:`xlt_course.translate.translate`).
        translate_fn: replaces :func:`xlt_course.translate.translate` (tests).
        progress: progress bars of the MT calls.

    Returns:
        The n texts in ``route[-1]``.
    """
    if len(route) < 2:
        raise ValueError(f"route must name at least two languages, got {list(route)}")
    if translate_fn is None:
        from xlt_course.translate import translate as translate_fn
    out = list(texts)
    for a, b in zip(route[:-1], route[1:], strict=True):
        out = list(translate_fn(out, a, b, system, progress=progress))
    return out


def translated_split(split: TopicSplit, texts: Sequence[str], lang: str) -> TopicSplit:
    """Return ``split`` with its texts replaced by their translations (labels and ids kept).

    Args:
        split: the n original items.
        texts: their n translations.
        lang: a name for the new texts' language, e.g. ``"fr←en"``.
    """
    if len(texts) != len(split):
        raise ValueError(f"{len(texts)} translations for {len(split)} items")
    return TopicSplit(lang, list(texts), split.labels.copy(), split.label_names, list(split.ids))


# --------------------------------------------------------------------------- runs


def probe_config(**changes: Any) -> FinetuneConfig:
    """Return the lesson's linear-probe configuration (lesson 06's probe), with ``changes``.

    Frozen offline encoder, mean pooling, 64 tokens, only the 2,310-parameter head trained:
    100 epochs at learning rate 0.1, batch 32 (chosen on the English dev split in lesson 06).
    The encoder runs once per text; the head trains in seconds on its features.
    """
    from xlt_course.training import FinetuneConfig

    base: dict[str, Any] = dict(
        model="offline",
        freeze="encoder",
        pooling="mean",
        max_length=64,
        epochs=100,
        batch_size=32,
        learning_rate=1e-1,
        head_learning_rate=None,
        seed=0,
    )
    base.update(changes)
    return FinetuneConfig(**base)


def source_runs(
    config: FinetuneConfig,
    train: Mapping[str, TopicSplit],
    evals: Mapping[str, TopicSplit],
    *,
    cache: CacheMode = "use",
) -> dict[str, FinetuneResult | None]:
    """Train one classifier per training set and evaluate each on every set of ``evals``.

    Args:
        config: the run settings (shared by every source).
        train: training split per name (usually per source language).
        evals: evaluation sets by name.
        cache: see :func:`xlt_course.training.finetune` (``"only"`` never trains).

    Returns:
        ``{name: FinetuneResult}`` (None where ``cache="only"`` found nothing).
    """
    from tqdm.auto import tqdm

    from xlt_course.training import finetune

    out: dict[str, FinetuneResult | None] = {}
    for name, split in tqdm(train.items(), desc="sources", disable=not config.progress):
        out[name] = finetune(config.replace(progress=False), split, evals, cache=cache)
    return out


def decision_table(
    rows: Sequence[Mapping[str, Any]], *, index: Sequence[str] = ("strategy",)
) -> pd.DataFrame:
    """Lay measured strategies side by side, best accuracy first.

    Args:
        rows: one dict per (strategy, target) with at least ``"strategy"``, ``"target"``,
            ``"accuracy"`` and any cost columns (``"MT calls per request"``, ...).
        index: the columns that name a row.

    Returns:
        A DataFrame, one row per strategy, one accuracy column per target plus the mean
        over targets, then the cost columns (taken from each strategy's first row),
        sorted by the mean accuracy.
    """
    import pandas as pd

    df = pd.DataFrame(list(rows))
    for col in ("strategy", "target", "accuracy"):
        if col not in df:
            raise ValueError(f"every row needs a {col!r} entry; got columns {list(df.columns)}")
    acc = df.pivot_table(index=list(index), columns="target", values="accuracy", sort=False)
    acc["mean"] = acc.mean(axis=1)
    extra = [c for c in df.columns if c not in ("target", "accuracy", *index)]
    if extra:
        costs = df.groupby(list(index), sort=False)[extra].first()
        acc = acc.join(costs)
    return acc.sort_values("mean", ascending=False)
