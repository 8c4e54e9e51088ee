"""xlt_course.sampling: language sampling probabilities with exponent alpha."""

from __future__ import annotations

import numpy as np
import pytest

from xlt_course import sampling


def test_probabilities_limits_and_normalisation():
    n = np.array([300.8, 56.8, 1.6])
    assert np.allclose(sampling.language_probabilities(n, 1.0), n / n.sum())
    assert np.allclose(sampling.language_probabilities(n, 0.0), 1 / 3)
    for alpha in (0.0, 0.3, 0.5, 0.7, 1.0, 2.0):
        q = sampling.language_probabilities(n, alpha)
        assert q.shape == (3,) and np.isclose(q.sum(), 1.0)
        assert np.all(np.diff(q) <= 1e-15), "a bigger corpus never gets a smaller share"


def test_probabilities_match_formula_and_flatten_with_smaller_alpha():
    n = np.array([55_608e6, 9_780e6, 275e6])  # large counts must not overflow
    q = sampling.language_probabilities(n, 0.3)
    assert np.allclose(q, n**0.3 / (n**0.3).sum())
    p = n / n.sum()
    assert np.allclose(q, p**0.3 / (p**0.3).sum()), "p^alpha and n^alpha agree once renormalised"
    small = [sampling.language_probabilities(n, a)[-1] for a in (1.0, 0.7, 0.5, 0.3, 0.0)]
    assert np.all(np.diff(small) > 0), "the smallest language gains as alpha decreases"


def test_zero_count_language_is_never_sampled():
    q = sampling.language_probabilities([10, 0, 5], 0.0)
    assert q[1] == 0 and np.allclose(q, [0.5, 0, 0.5])


@pytest.mark.parametrize(
    ("counts", "alpha"),
    [([], 0.5), ([[1, 2]], 0.5), ([1, -1], 0.5), ([0, 0], 0.5), ([1, np.nan], 0.5), ([1, 2], -0.1)],
)
def test_bad_input_gets_a_clear_error(counts, alpha):
    with pytest.raises(ValueError):
        sampling.language_probabilities(counts, alpha)


def test_expected_tokens_and_epochs():
    n = np.array([1000.0, 10.0])
    tokens = sampling.expected_tokens(n, 0.0, 500)
    assert np.allclose(tokens, [250, 250])
    assert np.allclose(sampling.epochs_per_language(n, 0.0, 500), [0.25, 25.0])
    assert np.isclose(sampling.expected_tokens(n, 0.7, 1e6).sum(), 1e6)
    with pytest.raises(ValueError):
        sampling.epochs_per_language([1.0, 0.0], 0.5, 10)


def test_published_alphas_and_sizes():
    assert sampling.PUBLISHED_ALPHA == {"mBERT": 0.7, "XLM": 0.5, "XLM-R": 0.3}
    assert sampling.CC100_GIB["en"] == 300.8 and sampling.CC100_GIB["sw"] == 1.6
    table = sampling.sampling_table({"en": 300.8, "sw": 1.6}, (1.0, 0.3))
    assert set(table) == {1.0, 0.3} and np.isclose(sum(table[0.3].values()), 1.0)


def test_plot_sampling_draws_one_line_per_alpha():
    import matplotlib

    matplotlib.use("Agg")
    ax = sampling.plot_sampling(sampling.CC100_GIB, (1.0, 0.7, 0.3))
    assert len(ax.get_lines()) == 3
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "en"
    assert any("XLM-R" in t.get_text() for t in ax.get_legend().get_texts())
