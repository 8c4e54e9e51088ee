"""Lesson 06-zero-shot-transfer: the transfer gap, measured and published.

Fine-tune on English, evaluate in every language, and read the gap Δ(en → l) =
Acc(en) − Acc(l). The fine-tuning itself is the engine's (:func:`xlt_course.training.finetune`,
:func:`xlt_course.training.finetune_topics`); this module holds the lesson's own ideas: the
gap (:func:`transfer_gaps`) and the published zero-shot XNLI numbers it is compared with.

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["XNLI_ZERO_SHOT", "published_gaps", "transfer_gaps"]

#: Zero-shot XNLI accuracy (%) from Conneau et al. (2020), "Unsupervised cross-lingual
#: representation learning at scale", ACL, Table 1 (fine-tuned on English MultiNLI only).
#: XNLI is natural-language inference, not topic classification: compare gaps, not accuracies.
XNLI_ZERO_SHOT: dict[str, dict[str, float]] = {
    "mBERT": {
        "en": 82.1, "fr": 73.8, "es": 74.3, "de": 71.1, "el": 66.4, "bg": 68.9, "ru": 69.0,
        "tr": 61.6, "ar": 64.9, "vi": 69.5, "th": 55.8, "zh": 69.3, "hi": 60.0, "sw": 50.4,
        "ur": 58.0,
    },
    "XLM-R Base": {
        "en": 85.8, "fr": 79.7, "es": 80.7, "de": 78.7, "el": 77.5, "bg": 79.6, "ru": 78.1,
        "tr": 74.2, "ar": 73.8, "vi": 76.5, "th": 74.6, "zh": 76.7, "hi": 72.4, "sw": 66.5,
        "ur": 68.3,
    },
    "XLM-R Large": {
        "en": 89.1, "fr": 84.1, "es": 85.1, "de": 83.9, "el": 82.9, "bg": 84.0, "ru": 81.2,
        "tr": 79.6, "ar": 79.8, "vi": 80.8, "th": 78.1, "zh": 80.2, "hi": 76.9, "sw": 73.9,
        "ur": 73.8,
    },
}  # fmt: skip


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
