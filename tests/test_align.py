"""Alignment: Procrustes, streaming CSLS retrieval, evaluation, self-learning, the BLI pipeline."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg

from xlt_course import align
from xlt_course.errors import DataError


def _rotation(d: int, seed: int = 0) -> np.ndarray:
    Q, R = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return (Q * np.sign(np.diag(R))).astype(np.float32)


def _rotated_pair(n: int = 2000, d: int = 20, noise: float = 0.05, seed: int = 0):
    """Return (X, Y, W_true) with Y = X W_true + noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    W = _rotation(d, seed + 1)
    Y = (X @ W + noise * rng.normal(size=(n, d))).astype(np.float32)
    return X, Y, W


def _brute(X, Y, *, method, k, topn, queries=None):
    """Full-matrix reference in float64: (indices best first, ties to lower index; scores)."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Yn = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    S = Xn.astype(np.float64) @ Yn.astype(np.float64).T
    if method == "csls":
        rT = np.sort(S, axis=1)[:, -k:].mean(axis=1)
        rS = np.sort(S, axis=0)[-k:].mean(axis=0)
        S = 2 * S - rT[:, None] - rS[None, :]
    if queries is not None:
        S = S[queries]
    idx = np.argsort(-S, axis=1, kind="stable")[:, :topn]
    return idx, np.take_along_axis(S, idx, axis=1)


# --- preprocessing --------------------------------------------------------------------------


def test_normalize_centres_then_unit_length():
    X = np.random.default_rng(0).normal(loc=3.0, size=(500, 8))
    Z = align.normalize(X)
    assert Z.dtype == np.float32 and Z.shape == X.shape
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-5)
    # Centring happened before the scaling: the centred direction is preserved.
    C = X - X.mean(axis=0)
    np.testing.assert_allclose(Z, C / np.linalg.norm(C, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(align.normalize(X, center=False, unit=False), X, rtol=1e-6)
    ucu = align.preprocess(X, "unit_center_unit")
    np.testing.assert_allclose(np.linalg.norm(ucu, axis=1), 1.0, atol=1e-5)


def test_normalize_rejects_zero_rows_and_nan():
    X = np.ones((6, 3))
    X[[1, 4]] = 0.0
    with pytest.raises(ValueError, match="2 zero row"):
        align.normalize(X)
    with pytest.raises(ValueError, match="zero after centring"):
        align.normalize(np.ones((4, 3)))
    bad = np.ones((3, 2))
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        align.normalize(bad)
    with pytest.raises(ValueError, match="2-D"):
        align.normalize(np.ones(5))


def test_reduce_dim_keeps_the_leading_components():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 6)) * np.array([10, 5, 1, 0.1, 0.1, 0.1])
    Z = align.reduce_dim(X, 2)
    assert Z.shape == (400, 2) and Z.dtype == np.float32
    # Two components carry almost all the variance.
    assert Z.var(axis=0).sum() / X.var(axis=0).sum() > 0.99
    with pytest.raises(ValueError, match="dim must be"):
        align.reduce_dim(X, 7)


# --- mappings -------------------------------------------------------------------------------


def test_procrustes_recovers_a_known_rotation_and_is_orthogonal():
    X, Y, W_true = _rotated_pair()
    W = align.procrustes(X, Y)
    assert W.shape == (20, 20) and W.dtype == np.float32
    assert align.isometry_error(W) < 1e-4
    np.testing.assert_allclose(W, W_true, atol=0.01)
    ref, _ = scipy.linalg.orthogonal_procrustes(X, Y)
    np.testing.assert_allclose(W, ref, atol=1e-5)
    # Mapped sources retrieve their own translation.
    pred = align.translate(X @ W, Y, method="nn", progress=False)[:, 0]
    assert (pred == np.arange(len(X))).mean() > 0.99


def test_least_squares_fits_a_general_map_that_is_not_orthogonal():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    A = rng.normal(size=(5, 7)).astype(np.float32)
    W = align.least_squares(X, X @ A)
    assert W.shape == (5, 7)
    np.testing.assert_allclose(W, A, atol=1e-4)
    assert align.isometry_error(W) > 1.0


def test_mapping_errors_name_the_shapes():
    X = np.ones((10, 4), np.float32)
    with pytest.raises(ValueError, match=r"\(10, 4\).*\(9, 4\)"):
        align.procrustes(X, np.ones((9, 4)))
    with pytest.raises(ValueError, match="different dimensions"):
        align.procrustes(X, np.ones((10, 5)))
    with pytest.raises(ValueError, match="at least 1"):
        align.procrustes(np.ones((0, 4)), np.ones((0, 4)))
    bad = X.copy()
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        align.procrustes(bad, X)


def test_whitened_mapping_handles_unequal_dimensions():
    rng = np.random.default_rng(3)
    n, d_src, d_tgt = 3000, 10, 30
    X = rng.normal(size=(n, d_src)).astype(np.float32)
    # The target space embeds a rotated, rescaled copy of the source plus unrelated dims.
    lift = np.linalg.qr(rng.normal(size=(d_tgt, d_src)))[0].T * rng.uniform(0.5, 2, (d_src, 1))
    Y = (X @ lift + 0.3 * rng.normal(size=(n, d_tgt))).astype(np.float32)
    train = np.arange(1000)
    W_src, W_tgt = align.whitened_mapping(X[train], Y[train])
    assert W_src.shape == (d_src, d_src) and W_tgt.shape == (d_tgt, d_src)
    test = np.arange(1000, 3000)
    pred = align.translate(X @ W_src, Y @ W_tgt, queries=test, progress=False)[:, 0]
    assert (pred == test).mean() > 0.9
    with pytest.raises(ValueError, match="dewhiten"):
        align.whitened_mapping(X[train], Y[train], dewhiten="sideways")  # type: ignore[arg-type]


# --- retrieval ------------------------------------------------------------------------------


def test_csls_hand_computed_example():
    s = np.sqrt(0.5)
    X = np.array([[1, 0], [0, 1]], np.float32)  # mapped sources at 0 and 90 degrees
    Y = np.array([[1, 0], [s, s], [0, 1]], np.float32)  # targets at 0, 45, 90 degrees
    # k = 2: r_T(x1) = (1 + s) / 2; r_S(y1) = (1 + 0) / 2, r_S(y2) = s, r_S(y3) = 1 / 2.
    rT = (1 + s) / 2
    expected_row0 = [2 * 1 - rT - 0.5, 2 * s - rT - s, 2 * 0 - rT - 0.5]
    C = align.csls_scores(X, Y, k=2)
    np.testing.assert_allclose(C[0], expected_row0, atol=1e-6)
    np.testing.assert_allclose(C[0], [0.6464466, -0.1464466, -1.3535534], atol=1e-6)
    np.testing.assert_allclose(C[1], C[0][::-1], atol=1e-6)  # mirror symmetry
    idx, scores = align.translate_with_scores(X, Y, k=2, topn=3, progress=False)
    np.testing.assert_array_equal(idx, [[0, 1, 2], [2, 1, 0]])
    np.testing.assert_allclose(scores[0], expected_row0, atol=1e-6)
    np.testing.assert_allclose(align.knn_mean_similarity(Y, X, 2), [0.5, s, 0.5], atol=1e-6)


def test_csls_demotes_a_hub():
    # Target 0 is close to everything (a hub); NN sends every source to it, CSLS does not.
    rng = np.random.default_rng(4)
    Y = rng.normal(size=(50, 16)).astype(np.float32)
    Y[0] = Y[1:].mean(axis=0) * 6
    X = Y[1:] + 0.9 * rng.normal(size=(49, 16)).astype(np.float32) + Y[0] * 0.5
    nn = align.translate(X, Y, method="nn", progress=False)[:, 0]
    cs = align.translate(X, Y, method="csls", k=5, progress=False)[:, 0]
    hub_nn = align.k_occurrence(nn[:, None], 50)[0]
    hub_cs = align.k_occurrence(cs[:, None], 50)[0]
    assert hub_cs < hub_nn
    assert (cs == np.arange(1, 50)).mean() > (nn == np.arange(1, 50)).mean()


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 4096])
@pytest.mark.parametrize("method", ["nn", "csls"])
def test_streaming_retrieval_equals_brute_force(chunk_size, method):
    rng = np.random.default_rng(5)
    # n >= 2048 so r_S takes the grouped top-k path; m odd so blocks are ragged.
    X = rng.normal(size=(2500, 12)).astype(np.float32)
    Y = rng.normal(size=(301, 12)).astype(np.float32)
    queries = rng.choice(2500, size=200, replace=False)
    for topn, q in [(1, None), (5, None), (5, queries)]:
        ref_idx, ref_scores = _brute(X, Y, method=method, k=10, topn=topn, queries=q)
        idx, scores = align.translate_with_scores(
            X, Y, method=method, k=10, topn=topn, queries=q, chunk_size=chunk_size, progress=False
        )
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
        assert idx.dtype == np.int64 and idx.shape == (len(ref_idx), topn)


def test_threaded_slab_retrieval_equals_brute_force(monkeypatch):
    # Force the threaded, slab-wise path on inputs small enough for a brute-force reference.
    monkeypatch.setattr(align, "_PARALLEL_MIN_SCORES", 0)
    rng = np.random.default_rng(8)
    X = rng.normal(size=(6000, 10)).astype(np.float32)
    Y = rng.normal(size=(210, 10)).astype(np.float32)
    queries = rng.choice(6000, size=500, replace=False)
    for topn, q, chunk in [(1, None, 64), (1, queries, 4096), (3, queries, 37)]:
        ref_idx, _ = _brute(X, Y, method="csls", k=10, topn=topn, queries=q)
        idx = align.translate(X, Y, k=10, topn=topn, queries=q, chunk_size=chunk, progress=False)
        np.testing.assert_array_equal(idx, ref_idx)


@pytest.mark.parametrize("n", [50, 5000, 20011])
def test_knn_mean_similarity_equals_brute_force(n):
    rng = np.random.default_rng(n)
    Q = rng.normal(size=(97, 8)).astype(np.float32)
    K = rng.normal(size=(n, 8)).astype(np.float32)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    Kn = K / np.linalg.norm(K, axis=1, keepdims=True)
    ref = np.sort(Qn @ Kn.T, axis=1)[:, -10:].mean(axis=1)
    for chunk in (13, 4096):
        got = align.knn_mean_similarity(Q, K, 10, chunk_size=chunk)
        np.testing.assert_allclose(got, ref, atol=1e-6)


def test_retrieval_argument_errors():
    X = np.ones((5, 3), np.float32) + np.eye(5, 3, dtype=np.float32)
    with pytest.raises(ValueError, match="same dimension"):
        align.translate(X, np.ones((4, 2)), progress=False)
    with pytest.raises(ValueError, match="k=10 is larger"):
        align.translate(X, X, k=10, progress=False)
    with pytest.raises(ValueError, match="topn"):
        align.translate(X, X, k=2, topn=6, progress=False)
    with pytest.raises(ValueError, match="method"):
        align.translate(X, X, method="cosine", progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zero row"):
        align.translate(np.zeros((2, 3)), X, method="nn", progress=False)
    with pytest.raises(ValueError, match="queries"):
        align.translate(X, X, k=2, queries=[7], progress=False)


def test_k_occurrence_and_isometry_error():
    counts = align.k_occurrence(np.array([[0, 1], [0, 2], [0, 1]]), n_targets=4)
    np.testing.assert_array_equal(counts, [3, 2, 1, 0])
    assert align.isometry_error(np.eye(3)) == pytest.approx(0.0)
    assert align.isometry_error(2 * np.eye(3)) == pytest.approx(np.sqrt(27))


# --- evaluation -----------------------------------------------------------------------------


def test_precision_at_k_counts_queries_with_several_golds_once():
    pred = np.array([[3, 1, 2], [0, 4, 1], [2, 2, 2]])
    gold = [{1, 3}, {9}, {5, 2}]  # query 0 has both golds in its top 2: still one hit
    assert align.precision_at_k(pred, gold, 1) == pytest.approx(2 / 3)
    assert align.precision_at_k(pred, gold, 3) == pytest.approx(2 / 3)
    assert align.precision_at_k(pred, {1: {4}}, 1) == 0.0
    assert align.precision_at_k(pred, {1: {4}}, 2) == 1.0
    with pytest.raises(ValueError, match="k must be"):
        align.precision_at_k(pred, gold, 4)
    with pytest.raises(ValueError, match="3 rows"):
        align.precision_at_k(pred, gold[:2], 1)


def _toy_spaces():
    X, Y, _ = _rotated_pair(n=400, d=10, noise=0.01, seed=7)
    src = align.WordSpace("en", [f"e{i}" for i in range(400)], X)
    tgt = align.WordSpace("fr", [f"f{i}" for i in range(400)], Y)
    return src, tgt


def test_pairs_to_matrices_warns_with_the_count_of_dropped_pairs():
    src, tgt = _toy_spaces()
    pairs = [("e1", "f1"), ("e2", "f2"), ("nope", "f3"), ("e4", "absent"), ("e5", "f5")]
    with pytest.warns(align.DroppedPairsWarning, match=r"dropped 2 of 5 .*1 with the source.*1"):
        X, Y, kept = align.pairs_to_matrices(pairs, src, tgt)
    assert X.shape == (3, 10) and Y.shape == (3, 10)
    assert kept == [("e1", "f1"), ("e2", "f2"), ("e5", "f5")]
    np.testing.assert_array_equal(X[2], src.vectors[5])
    with pytest.raises(ValueError, match="none of the 2"):
        align.pairs_to_matrices([("x", "y"), ("e1", "q")], src, tgt)
    with pytest.raises(ValueError, match="none of the 0"):
        align.pairs_to_matrices([], src, tgt)


def test_evaluate_bli_and_result_line():
    src, tgt = _toy_spaces()
    train = [(f"e{i}", f"f{i}") for i in range(200)]
    test = [(f"e{i}", f"f{i}") for i in range(200, 400)] + [("e201", "f0")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        X, Y, _ = align.pairs_to_matrices(train, src, tgt)
    W = align.procrustes(X, Y)
    assert align.evaluate_bli(src, tgt, W, test, method="csls", k=5) == {1: 1.0, 5: 1.0}
    assert align.evaluate_bli(src, tgt, np.eye(10), test, method="nn")[1] < 0.1
    r = align.BLIResult("en", "fr", {"nn": {1: 0.3271, 5: 0.5}, "csls": {1: 0.35349, 5: 0.5436}},
                        n_queries=1500, n_test_pairs=2214)  # fmt: skip
    assert align.format_bli_line(r) == "P@1 nn=0.327 csls=0.353 P@5 csls=0.544"
    with pytest.raises(KeyError, match="no P@10"):
        r.p("csls", 10)


# --- self-learning --------------------------------------------------------------------------


def test_identical_strings_seed():
    src = align.WordSpace("en", ["the", "paris", "2010", "dog"], np.eye(4, dtype=np.float32))
    tgt = align.WordSpace("fr", ["le", "2010", "paris", "chien"], np.eye(4, dtype=np.float32))
    np.testing.assert_array_equal(align.identical_strings_seed(src, tgt), [[1, 2], [2, 1]])
    np.testing.assert_array_equal(
        align.identical_strings_seed(src, tgt, max_rank=2), np.empty((0, 2))
    )


def test_induce_dictionary_and_self_learning_from_a_small_seed():
    X, Y, W_true = _rotated_pair(n=1500, d=16, noise=0.15, seed=11)
    X, Y = align.normalize(X), align.normalize(Y)
    ind = align.induce_dictionary(X @ W_true, Y, max_rank=1000)
    assert ind.shape[1] == 2 and (ind[:, 0] == ind[:, 1]).mean() > 0.95
    assert ind[:, 0].max() < 1000
    seed = np.stack([np.arange(40), np.arange(40)], axis=1)
    cfg = align.SelfLearningConfig(n_iter=6, max_rank=1500, keep_seed=False, progress=False)
    seen: list[float] = []

    def p_at_1(W: np.ndarray, W_tgt: np.ndarray | None) -> float:
        pred = align.translate(X @ W, Y, queries=np.arange(1000, 1500), progress=False)[:, 0]
        seen.append(float((pred == np.arange(1000, 1500)).mean()))
        return seen[-1]

    res = align.self_learning(X, Y, seed, cfg, evaluate=p_at_1)
    assert 1 <= len(res.history) <= 6 and res.history[0].n_pairs == 40
    assert res.history[-1].n_induced > 1000
    assert [h.metric for h in res.history] == seen and seen[-1] > 0.95
    assert res.converged or len(res.history) == 6
    assert align.isometry_error(res.W) < 1e-4 and res.W_tgt is None
    with pytest.raises(ValueError, match="empty"):
        align.self_learning(X, Y, np.empty((0, 2)), cfg)


def test_wasserstein_procrustes_refines_a_perturbed_map():
    pytest.importorskip("ot")
    X, Y, W_true = _rotated_pair(n=600, d=8, noise=0.02, seed=13)
    X, Y = align.normalize(X, center=False), align.normalize(Y, center=False)
    W0 = align.procrustes(X[:15], Y[:15] + 0.2 * np.random.default_rng(0).normal(size=(15, 8)))
    W = align.wasserstein_procrustes(X, Y, W0, n_iter=5, n_words=600, reg=0.05)
    assert align.isometry_error(W) < 1e-4
    assert np.linalg.norm(W - W_true) < np.linalg.norm(W0 - W_true)


# --- the pipeline on the offline data -------------------------------------------------------


def test_run_bli_en_fr_beats_the_resources_baseline():
    try:
        result = align.run_bli("en", "fr")
    except DataError as e:
        pytest.skip(f"offline data not built ({e}); run `xlt-course data build`")
    assert result.n_queries == 1500
    assert result.p("csls", 1) > 0.353, align.format_bli_line(result)
    assert result.p("csls", 5) > result.p("csls", 1)
