"""Public cross-lingual benchmarks through ``datasets``: XNLI, PAWS-X, WikiANN, UD POS.

Each benchmark is loaded per language, either from the Hugging Face hub by its id (only
with the online opt-in, ``XLT_COURSE_ONLINE=1`` and ``HF_HUB_OFFLINE`` unset) or from a
local folder in exactly the hub's schema: ``DATA/<config>/`` is a ``DatasetDict`` saved
with ``save_to_disk`` or the hub's parquet files (``train-*.parquet``,
``validation-*.parquet``, ``test-*.parquet``), ``<config>`` the hub's config name (``en``,
``fr``, ...; for UD POS the language code or the treebank, e.g. ``en_ewt``). The rows
become the training engine's splits (:class:`xlt_course.training.PairSplit`,
:class:`xlt_course.training.TokenSplit`), so :func:`xlt_course.training.finetune` learns
them with its one loop. Importing this module imports neither ``datasets`` nor torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from xlt_course.errors import XltCourseError

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "BenchmarkError",
    "Split",
    "TaskName",
    "hub_allowed",
    "load_benchmark",
    "load_language",
]

TaskName = Literal["xnli", "pawsx", "wikiann", "udpos"]
Split = Literal["train", "validation", "test"]

XNLI_LABELS = ("entailment", "neutral", "contradiction")
PAWSX_LABELS = ("0", "1")  # the hub's ClassLabel names: 1 = paraphrase
WIKIANN_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
# The hub's `universal_dependencies` ClassLabel order: the 17 UPOS tags plus "_" (no tag).
UD_UPOS_LABELS = (
    "NOUN", "PUNCT", "ADP", "NUM", "SYM", "SCONJ", "ADJ", "PART", "DET", "CCONJ", "PROPN",
    "PRON", "X", "_", "ADV", "INTJ", "VERB", "AUX",
)  # fmt: skip
# One treebank per language for UD POS (the XTREME choice where it has one).
UD_TREEBANKS = {
    "en": "en_ewt", "fr": "fr_gsd", "de": "de_gsd", "es": "es_gsd", "it": "it_isdt",
    "pt": "pt_bosque", "ru": "ru_syntagrus", "zh": "zh_gsd", "ja": "ja_gsd", "ar": "ar_padt",
    "hi": "hi_hdtb", "tr": "tr_imst", "nl": "nl_alpino", "ko": "ko_kaist", "fi": "fi_tdt",
}  # fmt: skip


class BenchmarkError(XltCourseError):
    """A benchmark cannot be loaded: missing folder, wrong columns, hub access off."""


@dataclass(frozen=True)
class Benchmark:
    """How one benchmark is stored on the hub and what the engine learns from it.

    Attributes:
        name: the ``--task`` name.
        hub_id: the ``datasets.load_dataset`` path.
        kind: ``"pairs"`` (sentence-pair classification) or ``"tokens"`` (one tag per word).
        columns: the text columns (two sentences, or the word list).
        label_column: the column holding the class (pairs) or the per-word tags (tokens).
        label_names: the hub's ClassLabel names, index order.
        metric: ``"accuracy"`` or ``"f1"`` (entity-level, seqeval) for the last line.
    """

    name: str
    hub_id: str
    kind: Literal["pairs", "tokens"]
    columns: tuple[str, ...]
    label_column: str
    label_names: tuple[str, ...]
    metric: Literal["accuracy", "f1"]

    def config(self, lang: str) -> str:
        """Return the hub config name of ``lang`` (UD: the treebank)."""
        if self.name == "udpos":
            return UD_TREEBANKS.get(lang, lang)
        return lang


BENCHMARKS: dict[str, Benchmark] = {
    "xnli": Benchmark("xnli", "facebook/xnli", "pairs", ("premise", "hypothesis"), "label",
                      XNLI_LABELS, "accuracy"),
    "pawsx": Benchmark("pawsx", "google-research-datasets/paws-x", "pairs",
                       ("sentence1", "sentence2"), "label", PAWSX_LABELS, "accuracy"),
    "wikiann": Benchmark("wikiann", "unimelb-nlp/wikiann", "tokens", ("tokens",), "ner_tags",
                         WIKIANN_LABELS, "f1"),
    "udpos": Benchmark("udpos", "universal_dependencies", "tokens", ("tokens",), "upos",
                       UD_UPOS_LABELS, "accuracy"),
}  # fmt: skip


def hub_allowed() -> bool:
    """Return True when the online opt-in is set and the hub is not switched off.

    ``XLT_COURSE_ONLINE=1`` opts in; ``HF_HUB_OFFLINE=1`` (what offline lessons set) wins.
    """
    return os.environ.get("XLT_COURSE_ONLINE") == "1" and os.environ.get("HF_HUB_OFFLINE") != "1"


def _benchmark(task: str) -> Benchmark:
    if task not in BENCHMARKS:
        raise BenchmarkError(f"unknown task {task!r}: choose one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[task]


def _language_folder(bench: Benchmark, data: Path, lang: str) -> Path:
    candidates = [data / lang, data / bench.config(lang)]
    for folder in candidates:
        if folder.is_dir():
            return folder
    found = sorted(p.name for p in data.iterdir() if p.is_dir()) if data.is_dir() else []
    if not data.is_dir():
        raise BenchmarkError(f"--data {data} is not a folder")
    raise BenchmarkError(
        f"{data} has no folder for language {lang!r} (expected {candidates[0]}"
        + (f" or {candidates[1]}" if candidates[1] != candidates[0] else "")
        + f"; found: {', '.join(found) or 'none'})"
    )


def _read_local(folder: Path, split: str):
    """Return one split of a language folder: ``save_to_disk`` output or parquet files."""
    import datasets

    if (folder / "dataset_dict.json").is_file():
        dd = datasets.load_from_disk(str(folder))
        if split not in dd:
            raise BenchmarkError(f"{folder} has no {split!r} split (it has {', '.join(dd)})")
        return dd[split]
    files = sorted(str(f) for f in folder.rglob(f"{split}*.parquet"))
    if not files:
        have = sorted({f.name.split("-")[0].split(".")[0] for f in folder.rglob("*.parquet")})
        raise BenchmarkError(
            f"{folder} holds neither a save_to_disk DatasetDict (dataset_dict.json) nor "
            f"{split}-*.parquet files (parquet splits found: {', '.join(have) or 'none'})"
        )
    return datasets.load_dataset("parquet", data_files={split: files}, split=split)


def _read_hub(bench: Benchmark, lang: str, split: str):
    import datasets

    if not hub_allowed():
        raise BenchmarkError(
            f"{bench.name} for {lang!r} needs the Hugging Face hub, which is off: set "
            "XLT_COURSE_ONLINE=1 (and no HF_HUB_OFFLINE=1) or pass --data DIR with one "
            "folder per language in the hub's schema"
        )
    # `universal_dependencies` is a loading script, which datasets 4+ no longer runs: read
    # the hub's own parquet conversion of it instead (same configs, columns and labels).
    extra = {"revision": "refs/convert/parquet"} if bench.name == "udpos" else {}
    try:
        return datasets.load_dataset(bench.hub_id, bench.config(lang), split=split, **extra)
    except Exception as e:  # network, unknown config, gated: one line saying which
        raise BenchmarkError(
            f"could not load {bench.hub_id} ({bench.config(lang)}, {split}) from the hub: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e


def _label_names(bench: Benchmark, ds: Any, origin: str) -> tuple[str, ...]:
    """The ClassLabel names stored with the data, checked against the hub's."""
    feature = ds.features[bench.label_column]
    inner = getattr(feature, "feature", None)  # Sequence(ClassLabel) / List(ClassLabel)
    names = getattr(inner if inner is not None else feature, "names", None)
    if names is not None and tuple(names) != bench.label_names:
        raise BenchmarkError(
            f"{origin}: column {bench.label_column!r} has label names {tuple(names)}, the hub's "
            f"{bench.name} has {bench.label_names}"
        )
    return bench.label_names


def load_language(
    task: str,
    lang: str,
    split: Split = "test",
    *,
    data: str | Path | None = None,
    max_examples: int | None = None,
):
    """Load one language's split of a benchmark as an engine split.

    Args:
        task: ``"xnli"``, ``"pawsx"``, ``"wikiann"`` or ``"udpos"``.
        lang: ISO 639-1 code (the hub config name; UD maps it to a treebank).
        split: ``"train"``, ``"validation"`` or ``"test"``.
        data: a folder with one sub-folder per language in the hub's schema; None loads
            from the hub (online opt-in only, :func:`hub_allowed`).
        max_examples: keep the first k rows (None: all).

    Returns:
        A :class:`~xlt_course.training.PairSplit` (XNLI, PAWS-X; rows labelled -1 dropped)
        or :class:`~xlt_course.training.TokenSplit` (WikiANN, UD POS).

    Raises:
        BenchmarkError: unknown task, missing language folder or split, missing columns,
            other label names, hub access off.

    Used in: ``xlt-course finetune``.
    """
    from xlt_course.training import PairSplit, TokenSplit

    bench = _benchmark(task)
    if data is not None:
        folder = _language_folder(bench, Path(data), lang)
        ds = _read_local(folder, split)
        origin = str(folder)
    else:
        ds = _read_hub(bench, lang, split)
        origin = f"{bench.hub_id}/{bench.config(lang)}"
    needed = (*bench.columns, bench.label_column)
    missing = [c for c in needed if c not in ds.column_names]
    if missing:
        raise BenchmarkError(
            f"{origin} ({split}) lacks the column(s) {', '.join(missing)} of the hub's "
            f"{bench.name} schema (it has {', '.join(ds.column_names)}; needs {', '.join(needed)})"
        )
    names = _label_names(bench, ds, origin)
    if max_examples is not None:
        ds = ds.select(range(min(max_examples, len(ds))))
    ids = [str(i) for i in range(len(ds))]
    n = len(names)
    if bench.kind == "pairs":
        labels = np.asarray(ds[bench.label_column], dtype=np.int64)
        keep = np.flatnonzero(labels >= 0)  # PAWS-X marks missing labels with -1
        a, b = ds[bench.columns[0]], ds[bench.columns[1]]
        if len(labels) and labels.max() >= n:
            raise BenchmarkError(f"{origin}: labels outside 0..{n - 1}")
        return PairSplit(lang, [a[i] for i in keep], [b[i] for i in keep], labels[keep],
                         names, [ids[i] for i in keep])  # fmt: skip
    words = [list(w) for w in ds[bench.columns[0]]]
    tags = [[int(t) for t in row] for row in ds[bench.label_column]]
    for i, (w, t) in enumerate(zip(words, tags, strict=True)):
        if len(w) != len(t):
            raise BenchmarkError(f"{origin}: row {i} has {len(w)} tokens but {len(t)} tags")
        if any(x < 0 or x >= n for x in t):
            raise BenchmarkError(f"{origin}: row {i} has tags outside 0..{n - 1}")
    keep = [i for i, w in enumerate(words) if w]
    return TokenSplit(lang, [words[i] for i in keep], [tags[i] for i in keep], names,
                      [ids[i] for i in keep])  # fmt: skip


def load_benchmark(
    task: str,
    langs: list[str] | tuple[str, ...],
    split: Split = "test",
    *,
    data: str | Path | None = None,
    max_examples: int | None = None,
) -> dict[str, Any]:
    """Return ``{lang: split}`` for every language of ``langs`` (see :func:`load_language`)."""
    return {
        lang: load_language(task, lang, split, data=data, max_examples=max_examples)
        for lang in langs
    }
