"""Lesson 06-zero-shot-transfer: the transfer gap, measured and published.

Fine-tune on English, evaluate in every language, and read the gap Δ(en → l) =
Acc(en) − Acc(l). The fine-tuning itself is the engine's (:func:`xlt_course.training.finetune`,
:func:`xlt_course.training.finetune_topics`); this module holds the lesson's own ideas: the
gap (:func:`transfer_gaps`) and the published zero-shot XNLI numbers it is compared with.

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import json
import os
import platform
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from xlt_course import paths, published
from xlt_course.data.manifest import atomic_path

if TYPE_CHECKING:  # importing the engine would import torch
    from xlt_course.training import CacheMode, FinetuneConfig, FinetuneResult

__all__ = [
    "DEV_COLUMNS",
    "XNLI_LANGUAGES",
    "XNLI_ZERO_SHOT",
    "DevSweep",
    "ZeroShotPlan",
    "dev_grid",
    "dev_record_path",
    "dev_sweep",
    "gap_table",
    "published_gaps",
    "record_dev_sweep",
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


# --------------------------------------------------------------------------- the dev sweep

#: The columns of a dev-sweep row: the last epoch's training loss, English dev accuracy (the
#: only one the choice may read) and the targets' mean dev accuracy (shown, never used).
DEV_COLUMNS = ("final training loss", "dev accuracy, en", "dev, mean of targets (not used)")

DevSource = Literal["trained", "cache", "recorded"]


def dev_grid(model: str = "offline", *, smoke: bool = False) -> dict[str, FinetuneConfig]:
    """Return lesson 06's fine-tuning candidates by name (test-split configs; the sweep uses dev).

    The first is the base setting (section 5 of the lesson explains every field); the others
    change the pooling, the encoder's learning rate and the head's own learning rate.

    Args:
        model: the encoder (``"offline"``, a hub id or a local folder).
        smoke: the test suite's size (32 training texts, 1 epoch, 2 languages, 32 items each).

    Returns:
        ``{name: FinetuneConfig}``, in the order the lesson prints them.

    Used in: lesson 06-zero-shot-transfer, section 5.
    """
    from xlt_course.training import FinetuneConfig

    base = FinetuneConfig(
        model=model,
        freeze="embeddings",
        pooling="mean",
        max_length=64,
        epochs=2,
        batch_size=32,
        learning_rate=1e-4,  # the encoder's layers
        head_learning_rate=1e-2,  # the new classification head
        seed=0,
    )
    if smoke:
        base = base.replace(
            max_train_examples=32, epochs=1, languages=("en", "fr"), max_eval_examples=32
        )
    return {
        "mean, lr 1e-4, head 1e-2": base,
        "mean, lr 2e-4, head 3e-3": base.replace(learning_rate=2e-4, head_learning_rate=3e-3),
        "mean, lr 1e-4, head 3e-3": base.replace(head_learning_rate=3e-3),
        "[CLS], lr 1e-4, head 3e-3": base.replace(pooling="cls", head_learning_rate=3e-3),
        "mean, lr 1e-4 for the head too": base.replace(head_learning_rate=None),
    }


@dataclass(frozen=True)
class DevSweep:
    """The dev-split results of every candidate, and where they came from.

    Attributes:
        rows: ``{candidate: {column: value}}`` with the columns of :data:`DEV_COLUMNS`.
        source: ``"trained"`` (computed by this call), ``"cache"`` (this machine's cached
            runs) or ``"recorded"`` (the course's record, :func:`dev_record_path`).
        seconds: training plus evaluation seconds of the candidates when they were computed.
        note: one line for the lesson's output.
    """

    rows: dict[str, dict[str, float]]
    source: DevSource
    seconds: float
    note: str


def dev_record_path() -> Path:
    """Return where ``xlt-course dev-sweep --record`` keeps the recorded sweep."""
    return paths.data_dir() / "recorded" / "06-dev-sweep.json"


def _dev_row(result: FinetuneResult) -> dict[str, float]:
    source = result.config.train_languages[0]
    targets = [a for lang, a in result.accuracy.items() if lang != source]
    return dict(
        zip(
            DEV_COLUMNS,
            (
                float(result.history[-1]["loss"]),
                float(result.accuracy[source]),
                float(sum(targets) / len(targets)) if targets else float("nan"),
            ),
            strict=True,
        )
    )


def _seconds(runs: Mapping[str, FinetuneResult]) -> float:
    return float(sum(r.stats["train_seconds"] + r.stats["eval_seconds"] for r in runs.values()))


def _on_dev(grid: Mapping[str, FinetuneConfig]) -> dict[str, FinetuneConfig]:
    """Return the sweep's runs: each candidate evaluated on the dev split."""
    return {name: c.replace(eval_split="dev") for name, c in grid.items()}


def _recipes(dev: Mapping[str, FinetuneConfig]) -> dict[str, str]:
    from xlt_course import training as tr

    return {name: tr.recipe_fingerprint(c, *tr.topic_splits(c)) for name, c in dev.items()}


def _read_record(dev: Mapping[str, FinetuneConfig], path: Path) -> DevSweep | None:
    """Return the recorded sweep if it holds every candidate of ``dev`` with the same recipe."""
    if not path.is_file():
        return None
    recipes = _recipes(dev)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        by_name = {c["name"]: c for c in record["candidates"]}
        machine, day = record["machine"], record["recorded_at"][:10]
        if any(name not in by_name or by_name[name]["recipe"] != recipes[name] for name in dev):
            return None  # other candidates, encoder or data: the record says nothing of them
        rows = {name: {k: float(by_name[name]["row"][k]) for k in DEV_COLUMNS} for name in dev}
        seconds = float(sum(by_name[name]["seconds"] for name in dev))
        where = f"{machine['cpu']} ({machine['cores']} cores, {machine['device']}, {machine['precision']})"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        warnings.warn(f"ignoring the unreadable dev-sweep record {path}: {e!r}", stacklevel=3)
        return None
    note = (
        f"recorded {day} by `xlt-course dev-sweep --record` on {where}: the same candidates, "
        f"encoder and data as here; training and evaluating them took {seconds:.0f} s there"
    )
    return DevSweep(rows, "recorded", seconds, note)


def dev_sweep(
    grid: Mapping[str, FinetuneConfig],
    *,
    train: bool = True,
    cache: CacheMode = "use",
    record: Path | None = None,
) -> DevSweep | None:
    """Return every candidate's dev-split row: from the cache, from the record, or trained now.

    In this order: this machine's cached dev runs when all are there; the course's record
    when ``train`` is False and it holds every candidate with the same recipe (config,
    encoder and data: :func:`xlt_course.training.recipe_fingerprint`); else every candidate
    is trained on English and evaluated on the dev split of its languages.

    Args:
        grid: candidates by name, as :func:`dev_grid` returns them (their ``eval_split`` is
            replaced by ``"dev"``).
        train: train the candidates even where the record has them.
        cache: the engine's cache mode; ``"only"`` (the grader) never trains and returns None
            when neither the cache nor the record has the candidates.
        record: the record file (None: :func:`dev_record_path`).

    Returns:
        A :class:`DevSweep`, or None (``cache="only"``, nothing cached or recorded).

    Used in: lesson 06-zero-shot-transfer, section 5.
    """
    from xlt_course import training as tr

    tr.check_choice("cache", cache, tr.CacheMode)
    if not grid:
        raise ValueError("grid must name at least one candidate")
    dev = _on_dev(grid)
    if cache in ("use", "only"):
        cached = {name: tr.finetune_topics(c, cache="only") for name, c in dev.items()}
        if all(r is not None for r in cached.values()):
            runs = {name: r for name, r in cached.items() if r is not None}
            note = "loaded from this machine's cache (the runs were trained here)"
            return DevSweep(
                {n: _dev_row(r) for n, r in runs.items()}, "cache", _seconds(runs), note
            )
    if not train:
        recorded = _read_record(dev, record or dev_record_path())
        if recorded is not None:
            return recorded
    if cache == "only":
        return None
    runs = {}
    for name, c in dev.items():
        run = tr.finetune_topics(c, cache=cache)
        assert run is not None  # only cache="only" returns None
        runs[name] = run
    note = f"trained here ({_seconds(runs):.0f} s of training and evaluation)"
    return DevSweep({n: _dev_row(r) for n, r in runs.items()}, "trained", _seconds(runs), note)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def record_dev_sweep(
    grid: Mapping[str, FinetuneConfig], path: Path | None = None, *, cache: CacheMode = "use"
) -> Path:
    """Train (or load from the cache) every candidate on dev and write the record.

    The record keeps, per candidate, its name, recipe fingerprint, config, row and seconds,
    and for the whole sweep the date, CPU, core count, device, precision and package
    versions. It is written whole or not at all.

    Args:
        grid: candidates by name (:func:`dev_grid`).
        path: the record file (None: :func:`dev_record_path`).
        cache: the engine's cache mode for the runs (``"refresh"`` retrains them).

    Returns:
        The record's path.

    Used in: ``xlt-course dev-sweep --record`` (lesson 06-zero-shot-transfer).
    """
    import torch
    import transformers

    import xlt_course
    from xlt_course import training as tr

    if cache == "only":
        raise ValueError(
            "recording trains what is missing: cache must be 'use', 'refresh' or 'off'"
        )
    dev = _on_dev(grid)
    recipes = _recipes(dev)
    candidates, devices, precisions = [], set(), set()
    for name, c in dev.items():
        run = tr.finetune_topics(c, cache=cache)
        assert run is not None
        devices.add(run.stats["device"])
        precisions.add(run.stats["precision"])
        candidates.append(
            {
                "name": name,
                "recipe": recipes[name],
                "config": c.to_dict(),
                "row": _dev_row(run),
                "seconds": round(run.stats["train_seconds"] + run.stats["eval_seconds"], 1),
            }
        )
    record = {
        "what": "lesson 06's dev sweep: each candidate fine-tuned on English, evaluated on dev",
        "written_by": "xlt-course dev-sweep --record",
        "recorded_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "device": "/".join(sorted(devices)),
            "precision": "/".join(sorted(precisions)),
        },
        "versions": {
            "xlt_course": xlt_course.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "candidates": candidates,
    }
    path = Path(path) if path is not None else dev_record_path()
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


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
