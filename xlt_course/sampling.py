"""Lesson 05-multilingual-pretraining: how multilingual models sample their languages.

A multilingual corpus is very unbalanced: in CC-100, English has about 190 times the text of
Swahili. Sampling each training sequence's language in proportion to its corpus size would
show the model almost no Swahili, so mBERT and XLM-R sample language ``l`` with probability

    q_l = n_l^alpha / sum_k n_k^alpha        (equivalently p_l^alpha renormalised, p = n / sum n)

where ``n_l`` is the size of language l's corpus. ``alpha = 1`` keeps the natural proportions,
``alpha = 0`` samples every language equally often. mBERT used 0.7 (google-research/bert,
``multilingual.md``), XLM-R 0.3 (Conneau et al., ACL 2020, sections 3 and 5.1); XLM (Lample &
Conneau, NeurIPS 2019, section 3.1) used 0.5 to sample the sentences its BPE vocabulary is
learnt on. Figures and citations: :mod:`xlt_course.published`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from xlt_course import published

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: Size of the CC-100 text of the languages lesson 05 plots, in GiB (Conneau et al. 2020, ACL,
#: Appendix A, Table 6; sizes, not the table's token counts, which are not comparable across
#: scripts). ``zh`` is Simplified Chinese. All figures and citations: :mod:`xlt_course.published`.
CC100_GIB: dict[str, float] = {
    lang: published.CC100_GIB[lang]
    for lang in ("en", "ru", "ja", "de", "fr", "es", "pt", "zh", "it", "hi", "ur", "sw")
}

#: The exponents of the published models (sources: ``published.FIGURES["sampling_alpha_*"]``).
PUBLISHED_ALPHA: dict[str, float] = published.SAMPLING_ALPHA


def _as_counts(counts: Any) -> np.ndarray:
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size == 0:
        raise ValueError(
            f"counts must be a non-empty 1-D array of corpus sizes, got shape {n.shape}"
        )
    if not np.all(np.isfinite(n)) or np.any(n < 0):
        raise ValueError(f"counts must be finite and >= 0, got {n.tolist()}")
    if not np.any(n > 0):
        raise ValueError("counts are all zero: at least one language needs some text")
    return n


def language_probabilities(counts: Sequence[float] | np.ndarray, alpha: float) -> np.ndarray:
    """Return the probability of sampling each language, q_l ∝ n_l^alpha, summing to 1.

    A language with no text (n_l = 0) gets probability 0 for every alpha, alpha = 0 included.

    Args:
        counts: (L,) corpus size per language (tokens, sentences or bytes: only ratios
            matter), all >= 0 and not all 0.
        alpha: the sampling exponent, >= 0 (1: proportional, 0: uniform over languages).

    Returns:
        (L,) float64 probabilities.

    Used in: lesson 05-multilingual-pretraining, exercise 1.
    """
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
    n = _as_counts(counts)
    # Work with shares p = n / sum(n) so that huge counts (3e11 tokens) cannot overflow.
    p = n / n.sum()
    w = np.zeros_like(p)
    w[p > 0] = p[p > 0] ** alpha
    return w / w.sum()


def expected_tokens(
    counts: Sequence[float] | np.ndarray, alpha: float, budget: float
) -> np.ndarray:
    """Return how many of ``budget`` training tokens each language gets in expectation.

    Args:
        counts: (L,) corpus size per language, in tokens.
        alpha: the sampling exponent.
        budget: total number of tokens the model is trained on.

    Returns:
        (L,) expected tokens per language, ``budget * q``.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    return budget * language_probabilities(counts, alpha)


def epochs_per_language(
    counts: Sequence[float] | np.ndarray, alpha: float, budget: float
) -> np.ndarray:
    """Return how many times each language's corpus is seen when training on ``budget`` tokens.

    Small alpha moves budget to the small languages, which are then repeated many times
    (an overfitting risk), while the large ones are not even seen once.

    Args:
        counts: (L,) corpus size per language in tokens, all > 0.
        alpha: the sampling exponent.
        budget: total number of training tokens.

    Returns:
        (L,) passes over each language's corpus, ``budget * q / counts``.
    """
    n = _as_counts(counts)
    if np.any(n == 0):
        raise ValueError("every language needs text to count passes over it (a count is 0)")
    return expected_tokens(n, alpha, budget) / n


def sampling_table(
    sizes: Mapping[str, float], alphas: Sequence[float]
) -> dict[float, dict[str, float]]:
    """Return ``{alpha: {lang: q_l}}`` for languages with the given corpus sizes."""
    langs = list(sizes)
    counts = [sizes[lang] for lang in langs]
    return {
        a: dict(zip(langs, language_probabilities(counts, a).tolist(), strict=True)) for a in alphas
    }


def plot_sampling(
    sizes: Mapping[str, float],
    alphas: Sequence[float] = (1.0, 0.7, 0.5, 0.3, 0.0),
    *,
    ax: Axes | None = None,
    title: str = "",
) -> Axes:
    """Plot the sampling probability of each language for several alphas (log scale).

    Args:
        sizes: ``{lang: corpus size}``; languages are drawn largest first.
        alphas: exponents, one line each.
        ax: where to draw (a new figure when None).
        title: the axes title.

    Returns:
        The axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4))
    langs = sorted(sizes, key=lambda lang: -sizes[lang])
    x = np.arange(len(langs))
    for a, q in sampling_table({lang: sizes[lang] for lang in langs}, alphas).items():
        label = f"α = {a:g}" + "".join(
            f" ({m})" for m, pa in PUBLISHED_ALPHA.items() if np.isclose(pa, a)
        )
        ax.plot(x, [q[lang] for lang in langs], marker="o", label=label)
    ax.set_xticks(x, langs)
    ax.set_yscale("log")
    ax.set_ylabel("sampling probability q_l")
    ax.set_xlabel("language (largest corpus first)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return ax
