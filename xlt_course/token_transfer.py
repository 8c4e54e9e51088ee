"""Cross-lingual transfer for token-level tasks: label alignment, word alignment, projection.

The pieces of lesson 11 that the training engine does not already hold:

- :func:`~xlt_course.training.align_labels` (in the engine, re-exported here): a word's tag
  on its first sub-word (or every / the last, for the comparison);
- :func:`word_vectors` and :func:`mutual_argmax_align`: the SimAlign "Argmax" word aligner
  (Jalili Sabet et al., 2020, Findings of EMNLP, "SimAlign: High quality word alignments
  without parallel training data using static and contextualized embeddings"): embed both
  sentences with the multilingual encoder, average each word's sub-word vectors, and align
  word i to word j when each is the other's most similar word;
- :func:`project_labels`: carry tags from a tagged sentence to its translation through an
  alignment (translate-train for token tasks);
- :func:`per_tag_accuracy`, :func:`confusion`, :func:`majority_tag_accuracy`,
  :func:`word_identity_accuracy`, :func:`sentence_bootstrap`: evaluation and baselines;
- :func:`subword_overlap`, :func:`uriel_distance`: what a language shares with English.

Importing this module imports neither torch nor transformers.

Used in: lesson 11-token-transfer.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from xlt_course.training import IGNORE_INDEX, LabelSubwords, TokenSplit, align_labels

__all__ = [
    "BENCHMARK_LANGUAGES",
    "IGNORE_INDEX",
    "LabelSubwords",
    "ZeroShotRun",
    "TokenBenchmarkPlan",
    "align_labels",
    "benchmark_plan",
    "benchmark_table",
    "confusion",
    "few_shot_config",
    "majority_tag_accuracy",
    "mutual_argmax_align",
    "per_tag_accuracy",
    "project_labels",
    "run_benchmark",
    "sentence_bootstrap",
    "split_words",
    "subword_overlap",
    "uriel_distance",
    "word_identity_accuracy",
    "word_vectors",
    "zero_shot_config",
]

#: The lesson's evaluation languages: English (silver, in-language), Spanish and French
#: (silver), Turkish (gold).
LANGS = ("en", "es", "fr", "tr")


# --------------------------------------------------------------------------- word alignment


def word_vectors(
    sentences: Sequence[Sequence[str]],
    *,
    model: str = "offline",
    layer: int = 8,
    batch_size: int = 32,
    max_length: int = 128,
    progress: bool = False,
    cache: bool = True,
) -> list[np.ndarray]:
    """Embed each word of pre-split sentences: the mean of its sub-words' hidden states.

    Args:
        sentences: n sentences, each a list of words.
        model: ``"offline"``, a local folder or a hub id (the course's encoder by default).
        layer: hidden layer to read (0 = embeddings); SimAlign reads a middle layer (8 of
            mBERT's 12), where representations are the most cross-lingual.
        batch_size: sentences per forward pass.
        max_length: tokens per sentence; words cut off get a zero vector.
        progress: show a tqdm bar.
        cache: keep the vectors in ``data/cache/word-vectors/`` (keyed by the sentences, the
            model's weights, ``layer`` and ``max_length``) and reuse them.

    Returns:
        n arrays of shape (n_words_i, d), float32, rows L2-normalised (zero rows stay zero).
    """
    from xlt_course import paths
    from xlt_course.models import resolve_model_id
    from xlt_course.training import fingerprint, model_fingerprint

    model_id = resolve_model_id(model)
    file = None
    if cache:
        words = [[str(w) for w in ws] for ws in sentences]
        key = fingerprint([words, model_fingerprint(model_id), layer, max_length])[:20]
        file = paths.cache_dir() / "word-vectors" / f"{key}.npz"
        if file.is_file():
            with np.load(file) as z:
                offsets = z["offsets"]
                return [z["vectors"][a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    out = _word_vectors(sentences, model_id, layer, batch_size, max_length, progress)
    if file is not None:
        import os

        file.parent.mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + [len(v) for v in out])
        tmp = file.with_name(f".{file.stem}.{os.getpid()}.npz")
        dim = out[0].shape[1] if out else 0
        stacked = np.concatenate(out) if out else np.zeros((0, dim), np.float32)
        np.savez(tmp, vectors=stacked, offsets=offsets)
        os.replace(tmp, file)  # atomic: a reader never sees half a file
    return out


def _word_vectors(sentences, model_id: str, layer: int, batch_size: int, max_length: int,
                  progress: bool) -> list[np.ndarray]:  # fmt: skip
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModel

    from xlt_course.training import get_tokenizer, quiet_transformers

    tokenizer = get_tokenizer(model_id)
    with quiet_transformers():
        encoder = AutoModel.from_pretrained(model_id).eval()
    out: list[np.ndarray] = []
    starts = range(0, len(sentences), batch_size)
    for s in tqdm(starts, desc="word vectors", disable=not progress):
        chunk = [list(w) for w in sentences[s : s + batch_size]]
        enc = tokenizer(chunk, is_split_into_words=True, truncation=True,
                        max_length=max_length, padding=True, return_tensors="pt")  # fmt: skip
        with torch.inference_mode():
            hidden = encoder(**enc, output_hidden_states=True).hidden_states[layer]
        hidden = hidden.float().numpy()
        for row, words in enumerate(chunk):
            ids = np.array([-1 if w is None else w for w in enc.word_ids(row)])
            vecs = np.zeros((len(words), hidden.shape[-1]), dtype=np.float32)
            for w in range(len(words)):
                mask = ids == w
                if mask.any():
                    vecs[w] = hidden[row][mask].mean(axis=0)
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            out.append(vecs / np.where(norms > 0, norms, 1.0))
    return out


def mutual_argmax_align(sim: Any) -> list[tuple[int, int]]:
    """Align source word i with target word j when each is the other's best match.

    Args:
        sim: (m, n) similarity of the m source words (rows) and the n target words
            (columns), e.g. cosine similarities of :func:`word_vectors`.

    Returns:
        The pairs ``(i, j)`` with ``j = argmax sim[i, :]`` and ``i = argmax sim[:, j]``,
        sorted by i: a one-to-one, partial alignment (a word with no mutual best match stays
        unaligned). Ties go to the lowest index (numpy's argmax). Empty when m or n is 0.

    Used in: lesson 11-token-transfer, exercise 2.
    """
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2:
        raise ValueError(f"sim must be a (m, n) matrix, got shape {sim.shape}")
    if 0 in sim.shape:
        return []
    best_j = sim.argmax(axis=1)
    best_i = sim.argmax(axis=0)
    return [(i, int(j)) for i, j in enumerate(best_j) if best_i[j] == i]


def project_labels(
    src_tags: Sequence[int], alignment: Sequence[tuple[int, int]], n_tgt: int
) -> list[int]:
    """Carry word tags from a source sentence to its translation through a word alignment.

    Args:
        src_tags: (m,) the tag of each source word.
        alignment: pairs ``(i, j)``: source word i is aligned to target word j (any number
            of pairs per word).
        n_tgt: number of target words n.

    Returns:
        (n,) tags: a target word aligned to one source word takes its tag; aligned to
        several, the most frequent of their tags (a tie: the tag of the lowest source index
        among the tied tags); unaligned, :data:`IGNORE_INDEX` (the engine does not learn
        from it, rather than learn a guess).

    Used in: lesson 11-token-transfer, exercise 3.
    """
    sources: list[list[int]] = [[] for _ in range(n_tgt)]
    for i, j in alignment:
        if not (0 <= i < len(src_tags) and 0 <= j < n_tgt):
            raise ValueError(f"alignment pair {(i, j)} is outside {len(src_tags)} x {n_tgt} words")
        sources[j].append(i)
    out = []
    for aligned in sources:
        if not aligned:
            out.append(IGNORE_INDEX)
            continue
        counts = Counter(int(src_tags[i]) for i in aligned)
        top = max(counts.values())
        out.append(next(int(src_tags[i]) for i in sorted(aligned) if counts[src_tags[i]] == top))
    return out


_WORD = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")


def split_words(text: str) -> list[str]:
    """Split a machine translation into words and punctuation marks (a simple tokenizer)."""
    return _WORD.findall(text)


# --------------------------------------------------------------------------- evaluation


def per_tag_accuracy(
    gold: Sequence[int], pred: Sequence[int], label_names: Sequence[str]
) -> dict[str, float]:
    """Return the accuracy on the words of each gold tag (the tag's recall).

    Args:
        gold: (N,) gold tag ids of N words.
        pred: (N,) predicted tag ids.
        label_names: the C tag names, index order.

    Returns:
        ``{tag: share of the words with this gold tag that were predicted correctly}`` for
        every tag that occurs in ``gold``, in ``label_names`` order (tags absent from gold
        are left out: their accuracy is undefined, not 0).

    Used in: lesson 11-token-transfer, exercise 4.
    """
    g = np.asarray(gold)
    p = np.asarray(pred)
    if g.shape != p.shape or g.ndim != 1:
        raise ValueError(f"gold and pred must be (N,) of equal N, got {g.shape}, {p.shape}")
    return {
        name: float((p[g == c] == c).mean()) for c, name in enumerate(label_names) if (g == c).any()
    }


def confusion(gold: Sequence[int], pred: Sequence[int], n_labels: int) -> np.ndarray:
    """Return the (C, C) count matrix: row = gold tag, column = predicted tag."""
    m = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(m, (np.asarray(gold, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return m


def majority_tag_accuracy(train: TokenSplit, test: TokenSplit) -> tuple[str, float]:
    """Tag every test word with the training set's most frequent tag.

    Returns:
        ``(tag, accuracy on test)``.
    """
    counts = np.bincount(train.labels[train.labels >= 0], minlength=len(train.label_names))
    tag = int(counts.argmax())
    return train.label_names[tag], float((test.labels == tag).mean())


def word_identity_accuracy(train: TokenSplit, test: TokenSplit) -> float:
    """Tag each test word with its most frequent training tag (lower-cased), else the majority tag.

    Across languages this measures what shared strings alone carry over (punctuation,
    numbers, names): a transfer method has to beat it to show it transfers more than that.
    """
    by_word: dict[str, Counter[int]] = {}
    for words, tags in zip(train.words, train.tags, strict=True):
        for w, t in zip(words, tags, strict=True):
            if t >= 0:
                by_word.setdefault(w.lower(), Counter())[int(t)] += 1
    fallback = int(np.bincount(train.labels[train.labels >= 0]).argmax())
    pred = [
        by_word[w.lower()].most_common(1)[0][0] if w.lower() in by_word else fallback
        for words in test.words
        for w in words
    ]
    return float((np.asarray(pred) == test.labels).mean())


def sentence_bootstrap(
    correct: Any, sentence: Sequence[str], *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Estimate a word accuracy with a percentile interval that resamples whole sentences.

    The words of one sentence are not independent (one hard sentence makes several
    errors), so sentences are the resampling unit (a cluster bootstrap): resampling words
    would give a too narrow interval.

    Args:
        correct: (N,) booleans, word k predicted right.
        sentence: (N,) the sentence id of each word.
        n_boot: bootstrap resamples.
        seed: numpy seed of the resampling.
        level: coverage of the interval.

    Returns:
        ``(accuracy, low, high)``.
    """
    c = np.asarray(correct, dtype=np.float64)
    _, group = np.unique(np.asarray(sentence), return_inverse=True)
    if c.ndim != 1 or len(group) != len(c) or len(c) == 0:
        raise ValueError("correct and sentence must be (N,) of equal, non-zero N")
    right = np.bincount(group, weights=c)
    size = np.bincount(group).astype(np.float64)
    idx = np.random.default_rng(seed).integers(0, len(size), size=(n_boot, len(size)))
    accs = right[idx].sum(axis=1) / size[idx].sum(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(accs, [tail, 100 - tail])
    return float(c.mean()), float(low), float(high)


def word_sentences(ids: Sequence[str]) -> list[str]:
    """Return the sentence id of each word id ``"<sentence id>/<word index>"`` of a token run."""
    return [i.rsplit("/", 1)[0] for i in ids]


# --------------------------------------------------------------------------- languages


def subword_overlap(tokenizer: Any, source: TokenSplit, target: TokenSplit) -> float:
    """Return the share of the target's sub-word tokens that also occur in the source.

    Args:
        tokenizer: the encoder's tokenizer.
        source: the training sentences (English).
        target: the evaluation sentences of one language.

    Returns:
        A fraction in [0, 1] (token occurrences, special tokens left out).
    """

    def pieces(split: TokenSplit) -> list[int]:
        enc = tokenizer([list(w) for w in split.words], is_split_into_words=True)
        return [t for row in enc["input_ids"] for t in row if t not in tokenizer.all_special_ids]

    seen = set(pieces(source))
    tgt = pieces(target)
    return sum(t in seen for t in tgt) / max(len(tgt), 1)


#: ISO 639-1 -> the ISO 639-3 codes URIEL uses.
URIEL_CODES = {"en": "eng", "es": "spa", "fr": "fra", "tr": "tur", "de": "deu", "ru": "rus",
               "zh": "zho", "ja": "jpn", "ar": "ara", "hi": "hin", "it": "ita", "pt": "por"}  # fmt: skip


def uriel_distance(a: str, b: str, prefix: str = "S_") -> float:
    """Return the cosine distance of two languages' URIEL syntax features (lang2vec's ``syntax_knn``).

    Read from the data file of the PyPI package ``lang2vec`` (``feature_predictions.npz``:
    WALS, SSWL and Ethnologue syntax features, gaps filled by k-NN predictions; Littell et
    al., 2017, EACL, "URIEL and lang2vec"), without importing the package (its module needs
    ``pkg_resources``).

    Args:
        a, b: ISO 639-1 codes (:data:`URIEL_CODES`).
        prefix: feature family, ``"S_"`` (syntax).

    Returns:
        1 - cosine similarity of the two feature vectors, in [0, 2].
    """
    from importlib import metadata

    from xlt_course.errors import DataError

    try:
        dist = metadata.distribution("lang2vec")
    except metadata.PackageNotFoundError as e:
        raise DataError(
            "the PyPI package lang2vec is not installed: `pip install lang2vec==1.1.2`"
        ) from e
    path = Path(str(dist.locate_file("lang2vec/data/feature_predictions.npz")))
    if not path.is_file():
        raise DataError(f"{path} is missing: reinstall lang2vec==1.1.2")
    with np.load(path, allow_pickle=True) as z:
        langs = list(z["langs"])
        feats = [str(f) for f in z["feats"]]
        sources = [str(s) for s in z["sources"]]
        cols = [k for k, f in enumerate(feats) if f.startswith(prefix)]
        src = sources.index("predicted")
        vecs = []
        for code in (a, b):
            iso3 = URIEL_CODES.get(code, code)
            if iso3 not in langs:
                raise ValueError(f"URIEL has no language {code!r} ({iso3})")
            vecs.append(np.asarray(z["data"][langs.index(iso3), cols, src], dtype=np.float64))
    u, v = vecs
    return float(1 - u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


# --------------------------------------------------------------------------- the runs


@dataclass(frozen=True)
class ZeroShotRun:
    """The sizes of the lesson's zero-shot run (``xlt-course finetune --task udpos-offline``).

    The command and lesson 11 use the same sizes and settings, so either finds the other's
    cached run.

    Attributes:
        train_sentences: English silver training sentences (the first ones of the split).
        eval_sentences: test sentences per language (the first ones; None: all).
    """

    train_sentences: int = 300
    eval_sentences: int | None = 200


def zero_shot_config(smoke: bool = False, **changes: Any):
    """Return the fine-tuning settings of the lesson's POS runs (a FinetuneConfig).

    Full fine-tuning of the transformer (embeddings frozen, as in lessons 06-10), 2 epochs,
    learning rate 1e-4 for the encoder and 1e-2 for the new token head (at the encoder's
    rate the head never learns the rare tags ADJ, ADV, NUM in 2 epochs: their accuracy
    stayed 0.00 even in English); ``smoke`` makes it a seconds-long run.
    """
    from xlt_course.training import FinetuneConfig

    base: dict[str, Any] = dict(model="offline", train_languages=("en",), languages=LANGS,
                                freeze="embeddings", epochs=2, batch_size=16,
                                learning_rate=1e-4, head_learning_rate=1e-2,
                                max_length=96)  # fmt: skip
    if smoke:
        base.update(epochs=1, max_length=64)
    return FinetuneConfig(**{**base, **changes})


def few_shot_config(zero_shot: Any, k: int, *, min_steps: int = 20):
    """Return the settings that continue fine-tuning the zero-shot model on k target sentences.

    Few-shot transfer as in Lauscher et al. (2020, EMNLP, "From Zero to Hero"): the model
    fine-tuned on English goes on training on k labelled target-language sentences only,
    which costs k sentences per epoch instead of retraining on English plus k. A few
    sentences make few optimiser steps, so the epochs grow until the run makes at least
    ``min_steps`` steps; the head, trained already, takes the encoder's learning rate.

    Args:
        zero_shot: the zero-shot run (a FinetuneResult saved with ``save_checkpoint=True``).
        k: target-language training sentences.
        min_steps: the fewest optimiser steps of a run.

    Returns:
        A FinetuneConfig whose ``model`` is the zero-shot checkpoint.

    Used in: lesson 11-token-transfer, section 5.
    """
    import math

    if zero_shot.checkpoint is None:
        raise ValueError("the zero-shot run has no checkpoint: train it with save_checkpoint=True")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    cfg = zero_shot.config
    epochs = max(cfg.epochs, math.ceil(min_steps * cfg.batch_size / k))
    return cfg.replace(model=str(zero_shot.checkpoint), epochs=epochs, head_learning_rate=None,
                       save_checkpoint=False)  # fmt: skip


def load_zero_shot_data(run: ZeroShotRun, smoke: bool = False):
    """Return ``(train, evals)``: English silver training sentences and the test sets of :data:`LANGS`."""
    from xlt_course.data.pos import load_pos

    n_train = 32 if smoke else run.train_sentences
    n_eval = 16 if smoke else run.eval_sentences
    train = load_pos("en", "train", max_sentences=n_train)
    evals = {lang: load_pos(lang, "test", max_sentences=n_eval) for lang in LANGS}  # type: ignore[arg-type]
    return train, evals


def baselines(train: TokenSplit, test: TokenSplit) -> dict[str, float]:
    """Return the majority-tag and word-identity accuracies on ``test`` learned from ``train``."""
    tag, majority = majority_tag_accuracy(train, test)
    return {f"majority tag ({tag})": majority, "word identity": word_identity_accuracy(train, test)}


def accuracy_line(accuracy: Mapping[str, float]) -> str:
    """Return ``accuracy en=A es=B fr=C tr=D`` (the last line of the command)."""
    return "accuracy " + " ".join(f"{lang}={accuracy[lang]:.3f}" for lang in accuracy)


# --------------------------------------------------------------------------- WikiANN, UD-POS (Colab)

#: The languages of the Colab section: English (training), two near languages, the lesson's
#: Turkish, and four other scripts and families (all in WikiANN and in one UD treebank each).
BENCHMARK_LANGUAGES: tuple[str, ...] = ("en", "es", "fr", "de", "tr", "ru", "ar", "hi", "zh")


@dataclass(frozen=True)
class TokenBenchmarkPlan:
    """What the lesson's Colab section runs: WikiANN or UD-POS with a hub model, or the stand-in.

    Attributes:
        task: ``"wikiann"`` (PAN-X NER, entity-level span F1), ``"udpos"`` (UD POS, word
            accuracy) or ``"offline"`` (the lesson's offline POS run, the stand-in).
        config: the engine's settings for the run (a FinetuneConfig).
        data: a local folder in the hub's schema, or None (the hub; offline: unused).
        metric: ``"f1"`` (WikiANN) or ``"accuracy"`` (UD-POS and the stand-in).
        note: one line saying what runs and why, for the lesson's output.
    """

    task: Literal["wikiann", "udpos", "offline"]
    config: Any
    data: str | None
    metric: Literal["f1", "accuracy"]
    note: str


def _languages_in(folder: Path, task: str, langs: Sequence[str]) -> tuple[str, ...]:
    """The languages of ``langs`` that a local hub-schema folder holds (by code or UD treebank)."""
    from xlt_course.benchmarks import BENCHMARKS

    bench = BENCHMARKS[task]
    have = {p.name for p in folder.iterdir() if p.is_dir()}
    return tuple(lang for lang in langs if lang in have or bench.config(lang) in have)


def benchmark_plan(
    task: Literal["wikiann", "udpos"],
    model: str = "xlm-roberta-base",
    *,
    offline: Any,
    data: str | Path | None = None,
    smoke: bool = False,
    max_train_examples: int | None = None,
    languages: Sequence[str] = BENCHMARK_LANGUAGES,
) -> TokenBenchmarkPlan:
    """Decide what the Colab section runs: ``task`` with ``model``, or the offline stand-in.

    ``model`` is fine-tuned on the English training split of WikiANN (``unimelb-nlp/wikiann``,
    20,000 sentences) or UD-POS (English EWT) and tested zero-shot on ``languages``, where
    the data can be had: from the hub (Colab, or ``XLT_COURSE_ONLINE=1`` with internet) or
    from ``data``, a folder with one sub-folder per language in the hub's exact schema
    (:mod:`xlt_course.benchmarks`). Otherwise the plan is the lesson's offline POS run
    (``offline``, cached by section 2) and its note says so.

    Args:
        task: ``"wikiann"`` or ``"udpos"``.
        model: a hub id (``"xlm-roberta-base"``, ``"bert-base-multilingual-cased"``) or a
            local model folder; ``"offline"`` asks for the stand-in.
        offline: the lesson's offline POS configuration (a FinetuneConfig).
        data: a local hub-schema folder (None: the hub).
        smoke: the test suite's size (64 training sentences, 32 test sentences per language).
        max_train_examples: English training sentences (None: all).
        languages: the evaluation languages (English first).

    Returns:
        A :class:`TokenBenchmarkPlan`.

    Used in: lesson 11-token-transfer, section 7.
    """
    from xlt_course import benchmarks
    from xlt_course.models import MODEL_CHOICES

    if task not in ("wikiann", "udpos"):
        raise ValueError(f"task must be 'wikiann' or 'udpos', got {task!r}")
    bench = benchmarks.BENCHMARKS[task]
    hub = benchmarks.hub_allowed()
    is_hub_id = model in MODEL_CHOICES and model != "offline"
    if model == "offline" or (data is None and not hub) or (is_hub_id and not hub):
        why = (
            "the offline encoder was asked for"
            if model == "offline"
            else f"no hub access (Colab, or XLT_COURSE_ONLINE=1 with internet) and no local "
            f"{bench.name} folder"
            if data is None and not hub
            else f"{model!r} needs the hub (Colab, or XLT_COURSE_ONLINE=1 with internet)"
        )
        note = (
            f"OFFLINE STAND-IN, not {'WikiANN' if task == 'wikiann' else 'UD-POS'}: {why}, so "
            f"these cells show the offline encoder ({offline.model!r}) on the lesson's POS data "
            "(section 2's run, word accuracy, silver en/es/fr and gold tr), not "
            + ("NER span F1" if task == "wikiann" else "UD treebanks")
        )
        return TokenBenchmarkPlan("offline", offline, None, "accuracy", note)
    langs, missing = tuple(languages), ()
    if data is not None:
        folder = Path(data).expanduser()
        if not folder.is_dir():
            raise ValueError(f"data={str(data)!r} is not a folder")
        langs = _languages_in(folder, task, languages)
        if "en" not in langs:
            raise ValueError(f"data={str(data)!r} has no 'en' folder to train on")
        missing = tuple(lang for lang in languages if lang not in langs)
    config = offline.replace(
        model=model, train_languages=("en",), languages=langs, freeze="none",
        max_length=128, epochs=2, batch_size=32, learning_rate=2e-5,
        head_learning_rate=None, warmup_ratio=0.1, precision="auto", label_subwords="first",
        max_train_examples=max_train_examples, max_eval_examples=None, save_checkpoint=False,
    )  # fmt: skip
    if smoke:
        config = config.replace(
            epochs=1, batch_size=16, learning_rate=1e-4, max_train_examples=64, max_eval_examples=32
        )
    source = f"the local folder {data}" if data is not None else f"the hub ({bench.hub_id})"
    what = "WikiANN (PAN-X) NER, entity-level span F1" if task == "wikiann" else "UD-POS accuracy"
    note = (
        f"{what}: {model} fine-tuned on English from {source}, tested zero-shot on "
        + ", ".join(langs)
        + (f" (missing there: {', '.join(missing)})" if missing else "")
        + (" (smoke size)" if smoke else "")
    )
    return TokenBenchmarkPlan(task, config, None if data is None else str(data), bench.metric, note)


def run_benchmark(plan: TokenBenchmarkPlan, offline_data: tuple[Any, Any], *, cache: str = "use"):
    """Fine-tune and evaluate what ``plan`` says, through the course's engine.

    Args:
        plan: from :func:`benchmark_plan`.
        offline_data: ``(train, evals)`` of the lesson's offline POS run (the stand-in's data).
        cache: the engine's cache mode (``"only"`` while grading: None when nothing cached).

    Returns:
        The engine's FinetuneResult (``accuracy`` per language; ``f1`` per language for NER).

    Used in: lesson 11-token-transfer, section 7.
    """
    from xlt_course import training as tr

    if plan.task == "offline":
        train, evals = offline_data
        return tr.finetune(plan.config, train, evals, cache=cache)
    from xlt_course import benchmarks

    cfg = plan.config
    train = benchmarks.load_language(
        plan.task, "en", "train", data=plan.data, max_examples=cfg.max_train_examples
    )
    evals = benchmarks.load_benchmark(
        plan.task, cfg.languages, "test", data=plan.data, max_examples=cfg.max_eval_examples
    )
    return tr.finetune(cfg, train, evals, cache=cache)


def benchmark_table(
    scores: Mapping[str, float], published: Mapping[str, float] | None = None
) -> Any:
    """Return our score and gap to English per language, beside published scores if given.

    Args:
        scores: ``{language: score}`` as a fraction (span F1 or accuracy), English included.
        published: ``{language: score in %}`` from a paper (None: no paper columns).

    Returns:
        A pandas DataFrame indexed by our languages with columns ``score %`` and
        ``gap to en`` (points), plus ``paper %`` and ``paper gap to en`` when ``published``
        is given (NaN for a language the paper lacks).

    Used in: lesson 11-token-transfer, section 7.
    """
    import pandas as pd

    if "en" not in scores:
        raise ValueError(f"scores need English to measure the gap, got {list(scores)}")
    ours = {lang: 100 * float(s) for lang, s in scores.items()}
    cols = {"score %": ours, "gap to en": {k: ours["en"] - v for k, v in ours.items()}}
    if published is not None:
        paper = {k: float(v) for k, v in published.items()}
        cols["paper %"] = paper
        if "en" in paper:
            cols["paper gap to en"] = {k: paper["en"] - v for k, v in paper.items()}
    table = pd.DataFrame({name: pd.Series(col, dtype=float) for name, col in cols.items()})
    return table.loc[list(ours)]
