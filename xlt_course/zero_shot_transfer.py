"""Lesson 06-zero-shot-transfer: the transfer gap, measured and published.

Fine-tune on English, evaluate in every language, and read the gap Δ(en → l) =
Acc(en) − Acc(l). The fine-tuning itself is the engine's (:func:`xlt_course.training.finetune`,
:func:`xlt_course.training.finetune_topics`); this module holds the lesson's own ideas: the
gap (:func:`transfer_gaps`) and the published zero-shot XNLI numbers it is compared with.

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from xlt_course import published

if TYPE_CHECKING:  # importing the engine would import torch
    from xlt_course.training import FinetuneConfig, FinetuneResult

__all__ = [
    "XNLI_LANGUAGES",
    "XNLI_ZERO_SHOT",
    "ZeroShotPlan",
    "gap_table",
    "published_gaps",
    "run_zero_shot",
    "transfer_gaps",
    "xnli_plan",
]

#: Zero-shot XNLI accuracy (%), fine-tuned on English MultiNLI only (Conneau et al. 2020, ACL,
#: Table 1): the lesson's published figures, cited in :mod:`xlt_course.published`.
#: XNLI is natural-language inference, not topic classification: compare gaps, not accuracies.
XNLI_ZERO_SHOT = published.XNLI_ZERO_SHOT
#: The 15 XNLI languages, in the column order of the XLM-R paper's Table 1.
XNLI_LANGUAGES: tuple[str, ...] = tuple(XNLI_ZERO_SHOT["XLM-R Base"])


def transfer_gaps(acc: Mapping[str, float], source: str = "en") -> dict[str, float]:
    """Return the transfer gap Δ(source → l) = Acc(source) − Acc(l) for every other language.

    Args:
        acc: accuracy per language code (any unit; gaps come out in the same unit).
        source: the language the model was trained on.

    Returns:
        ``{l: acc[source] - acc[l]}`` for every ``l`` in ``acc`` other than ``source``, in
        ``acc``'s order; a positive gap means the target language is worse.

    Used in: lesson 06-zero-shot-transfer, exercise 1 (as the reference).
    """
    if source not in acc:
        raise ValueError(f"source {source!r} is not among the languages {list(acc)}")
    return {lang: float(acc[source]) - float(a) for lang, a in acc.items() if lang != source}


def published_gaps(model: str = "XLM-R Base", source: str = "en") -> dict[str, float]:
    """Return the zero-shot XNLI gaps (accuracy points) of a model in :data:`XNLI_ZERO_SHOT`."""
    if model not in XNLI_ZERO_SHOT:
        raise ValueError(f"model must be one of {sorted(XNLI_ZERO_SHOT)}, got {model!r}")
    return transfer_gaps(XNLI_ZERO_SHOT[model], source)


# --------------------------------------------------------------------------- XNLI, Colab


@dataclass(frozen=True)
class ZeroShotPlan:
    """What the lesson's XNLI section runs here: XNLI with a hub model, or the offline stand-in.

    Attributes:
        task: ``"xnli"`` (English MultiNLI training pairs, the 15 XNLI test sets) or
            ``"topics"`` (the course's topic data, the offline stand-in).
        config: the engine's settings for the run.
        data: a local folder in the hub's XNLI schema, or None (the hub; topics: unused).
        note: one line saying what runs and why, for the lesson's output.
    """

    task: Literal["xnli", "topics"]
    config: FinetuneConfig
    data: str | None
    note: str


def xnli_plan(
    model: str = "xlm-roberta-base",
    *,
    offline: FinetuneConfig,
    data: str | Path | None = None,
    smoke: bool = False,
    max_train_examples: int | None = None,
) -> ZeroShotPlan:
    """Decide what the XNLI section runs: XNLI with ``model``, or the offline stand-in.

    ``model`` runs on XNLI where the data can be had; otherwise the offline encoder runs on
    the topic data (the run ``offline`` describes) and the plan's note says so.

    XNLI comes from the hub (``facebook/xnli``: Colab, or ``XLT_COURSE_ONLINE=1`` on a
    machine with internet) or from ``data``, a folder with one sub-folder per language in
    the hub's schema (:mod:`xlt_course.benchmarks`). The XNLI recipe follows the XLM-R
    paper's fine-tuning: every parameter trained, the model's own [CLS] head, 128 tokens.

    Args:
        model: a hub id (``"xlm-roberta-base"``...) or a local model folder.
        offline: the topic-data run to fall back on (the lesson's main configuration, so
            the fallback reuses its cached run).
        data: a local hub-schema XNLI folder (None: the hub).
        smoke: the test suite's size (64 training pairs, 32 test pairs per language).
        max_train_examples: English training pairs to use (None: all 392,702).

    Returns:
        A :class:`ZeroShotPlan`.

    Used in: lesson 06-zero-shot-transfer, section 10.
    """
    from xlt_course import benchmarks
    from xlt_course.models import MODEL_CHOICES

    is_hub_id = model in MODEL_CHOICES and model != "offline"
    hub = benchmarks.hub_allowed()
    if model == "offline" or (data is None and not hub) or (is_hub_id and not hub):
        why = (
            "the offline encoder was asked for"
            if model == "offline"
            else "no hub access (Colab, or XLT_COURSE_ONLINE=1 with internet) and no local XNLI folder"
            if data is None and not hub
            else f"{model!r} needs the hub (Colab, or XLT_COURSE_ONLINE=1 with internet)"
        )
        note = (
            f"OFFLINE STAND-IN, not XNLI: {why}, so these cells run the offline encoder "
            f"({offline.model!r}) on the course's topic data (section 5's run); the paper's "
            "column is XNLI, a different task: compare the pattern of the gaps only"
        )
        return ZeroShotPlan("topics", offline, None, note)
    languages, missing = XNLI_LANGUAGES, ()
    if data is not None:  # a local folder may hold some of the languages only
        have = {p.name for p in Path(data).expanduser().iterdir() if p.is_dir()}
        if "en" not in have:
            raise ValueError(f"XNLI_DATA={str(data)!r} has no 'en' folder to train on")
        languages = tuple(lang for lang in XNLI_LANGUAGES if lang in have)
        missing = tuple(lang for lang in XNLI_LANGUAGES if lang not in have)
    config = offline.replace(
        model=model,
        train_languages=("en",),
        languages=languages,
        freeze="none",
        pooling="cls",
        max_length=128,
        epochs=2,
        batch_size=32,
        learning_rate=2e-5,
        head_learning_rate=None,
        warmup_ratio=0.1,
        precision="auto",
        max_train_examples=max_train_examples,
        max_eval_examples=None,
        save_checkpoint=False,
    )
    if smoke:
        config = config.replace(
            epochs=1, batch_size=16, learning_rate=1e-4, max_train_examples=64, max_eval_examples=32
        )
    source = f"the local folder {data}" if data is not None else "the hub (facebook/xnli)"
    note = (
        f"XNLI zero-shot: {model} fine-tuned on English MultiNLI pairs from {source}, "
        + (
            f"tested on the {len(languages)} XNLI languages it has (missing: {', '.join(missing)})"
            if missing
            else f"tested on all {len(XNLI_LANGUAGES)} XNLI languages"
        )
        + (" (smoke size)" if smoke else "")
    )
    return ZeroShotPlan("xnli", config, None if data is None else str(data), note)


def run_zero_shot(plan: ZeroShotPlan, *, cache: str = "use") -> FinetuneResult | None:
    """Fine-tune and evaluate what ``plan`` says, through the course's engine.

    Args:
        plan: from :func:`xnli_plan`.
        cache: the engine's cache mode (``"only"`` while grading: None when nothing cached).

    Returns:
        The engine's :class:`~xlt_course.training.FinetuneResult` (accuracy per language).

    Used in: lesson 06-zero-shot-transfer, section 10.
    """
    from xlt_course import training as tr

    if plan.task == "topics":
        return tr.finetune_topics(plan.config, cache=cache)
    from xlt_course import benchmarks

    cfg = plan.config
    train = benchmarks.load_language(
        "xnli", "en", "train", data=plan.data, max_examples=cfg.max_train_examples
    )
    evals = benchmarks.load_benchmark(
        "xnli", cfg.languages, "test", data=plan.data, max_examples=cfg.max_eval_examples
    )
    return tr.finetune(cfg, train, evals, cache=cache)


def gap_table(accuracy: Mapping[str, float], model: str = "XLM-R Base") -> Any:
    """Return our accuracy and gap per language beside the published zero-shot XNLI ones.

    Args:
        accuracy: ``{language: accuracy}`` as a fraction, English included.
        model: the published row of :data:`XNLI_ZERO_SHOT` (Conneau et al. 2020, Table 1).

    Returns:
        A pandas DataFrame indexed by our languages (English first) with columns
        ``accuracy %``, ``Δ(en→l)``, ``paper accuracy %``, ``paper Δ(en→l)`` (points; the
        paper's columns are NaN for a language XNLI does not have).

    Used in: lesson 06-zero-shot-transfer, section 10.
    """
    import pandas as pd

    ours = {lang: 100 * float(a) for lang, a in accuracy.items()}
    paper = XNLI_ZERO_SHOT.get(model)
    if paper is None:
        raise ValueError(f"model must be one of {sorted(XNLI_ZERO_SHOT)}, got {model!r}")
    table = pd.DataFrame(
        {
            "accuracy %": pd.Series(ours),
            "Δ(en→l)": pd.Series({"en": 0.0, **transfer_gaps(ours)}),
            "paper accuracy %": pd.Series(paper),
            "paper Δ(en→l)": pd.Series({"en": 0.0, **transfer_gaps(paper)}),
        }
    )
    return table.loc[list(ours)]
