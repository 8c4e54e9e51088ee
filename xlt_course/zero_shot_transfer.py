"""Lesson 06-zero-shot-transfer: the transfer gap, measured and published.

Fine-tune on English, evaluate in every language, and read the gap Δ(en → l) =
Acc(en) − Acc(l). The fine-tuning itself is the engine's (:func:`xlt_course.training.finetune`,
:func:`xlt_course.training.finetune_topics`); this module holds the lesson's own ideas: the
gap (:func:`transfer_gaps`) and the published zero-shot XNLI numbers it is compared with.

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

from collections.abc import Mapping

from xlt_course import published

__all__ = ["XNLI_ZERO_SHOT", "published_gaps", "transfer_gaps"]

#: Zero-shot XNLI accuracy (%), fine-tuned on English MultiNLI only (Conneau et al. 2020, ACL,
#: Table 1): the lesson's published figures, cited in :mod:`xlt_course.published`.
#: XNLI is natural-language inference, not topic classification: compare gaps, not accuracies.
XNLI_ZERO_SHOT = published.XNLI_ZERO_SHOT


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
