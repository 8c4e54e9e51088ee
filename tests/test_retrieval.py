"""The retrieval engine: the streamed NN / CSLS rankings equal the formulas on the full matrix.

Lesson 02 reads :func:`xlt_course.retrieval.csls_scores`; the course ranks with the streaming
engine behind :func:`xlt_course.retrieval.translate_words`. These tests hold the two to the
same answers on random data, and to a float64 brute force.
"""

from __future__ import annotations

import numpy as np
import pytest

from xlt_course import retrieval


@pytest.fixture(params=["full", "fused"])
def engine(request, monkeypatch):
    """Run a test on both engines: the full matrix (small inputs) and the fused pass (large).

    "fused" lowers the size thresholds so that small inputs, which a brute force can check,
    take the compiled pass with its threads, warm-up sample and rescans.
    """
    if request.param == "fused":
        monkeypatch.setattr(retrieval, "_FUSED_MIN_SCORES", 0)
        monkeypatch.setattr(retrieval, "_PARALLEL_MIN_SCORES", 0)
        monkeypatch.setattr(retrieval, "_WARMUP_MIN_ROWS", 64)
    return request.param


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


def test_csls_scores_is_the_formula_on_the_full_matrix():
    rng = np.random.default_rng(21)
    X = rng.normal(size=(40, 6)) * rng.uniform(0.1, 5.0, size=(40, 1))
    Y = rng.normal(size=(55, 6))
    idx, ref = _brute(X, Y, method="csls", k=7, topn=55)  # every column, best first
    got = retrieval.csls_scores(X, Y, k=7)
    assert got.shape == (40, 55) and got.dtype == np.float32
    np.testing.assert_allclose(np.take_along_axis(got, idx, axis=1), ref, atol=1e-5)


@pytest.mark.parametrize("n, m, k", [(5, 7, 1), (60, 30, 10), (300, 500, 10), (2500, 301, 10)])
def test_engine_equals_the_readable_csls_on_random_data(n, m, k, engine):
    rng = np.random.default_rng(n + m)
    X = rng.normal(size=(n, 16)).astype(np.float32)
    Y = rng.normal(size=(m, 16)).astype(np.float32)
    C = retrieval.csls_scores(X, Y, k=k)
    cos = retrieval.nn_scores(X, Y)
    # The engine's penalties are the readable ones.
    np.testing.assert_allclose(
        retrieval.knn_mean_similarity(X, Y, k), np.sort(cos, axis=1)[:, -k:].mean(1), atol=1e-6
    )
    np.testing.assert_allclose(
        retrieval.knn_mean_similarity(Y, X, k), np.sort(cos, axis=0)[-k:].mean(0), atol=1e-6
    )
    topn = min(5, m)
    idx, scores = retrieval.translate_words_with_scores(X, Y, k=k, topn=topn, progress=False)
    np.testing.assert_allclose(scores, np.take_along_axis(C, idx, axis=1), atol=1e-5)
    # Best first: nothing outside the top-n scores higher than what was returned (ties aside).
    np.testing.assert_allclose(scores, -np.sort(-C, axis=1)[:, :topn], atol=1e-5)
    nn_idx = retrieval.translate_words(X, Y, method="nn", topn=topn, progress=False)
    np.testing.assert_allclose(
        np.take_along_axis(cos, nn_idx, axis=1), -np.sort(-cos, axis=1)[:, :topn], atol=1e-6
    )


def test_csls_hand_computed_example():
    s = np.sqrt(0.5)
    X = np.array([[1, 0], [0, 1]], np.float32)  # mapped sources at 0 and 90 degrees
    Y = np.array([[1, 0], [s, s], [0, 1]], np.float32)  # targets at 0, 45, 90 degrees
    # k = 2: r_T(x1) = (1 + s) / 2; r_S(y1) = (1 + 0) / 2, r_S(y2) = s, r_S(y3) = 1 / 2.
    rT = (1 + s) / 2
    expected_row0 = [2 * 1 - rT - 0.5, 2 * s - rT - s, 2 * 0 - rT - 0.5]
    C = retrieval.csls_scores(X, Y, k=2)
    np.testing.assert_allclose(C[0], expected_row0, atol=1e-6)
    np.testing.assert_allclose(C[0], [0.6464466, -0.1464466, -1.3535534], atol=1e-6)
    np.testing.assert_allclose(C[1], C[0][::-1], atol=1e-6)  # mirror symmetry
    idx, scores = retrieval.translate_words_with_scores(X, Y, k=2, topn=3, progress=False)
    np.testing.assert_array_equal(idx, [[0, 1, 2], [2, 1, 0]])
    np.testing.assert_allclose(scores[0], expected_row0, atol=1e-6)
    np.testing.assert_allclose(retrieval.knn_mean_similarity(Y, X, 2), [0.5, s, 0.5], atol=1e-6)


def test_csls_demotes_a_hub():
    # Target 0 is close to everything (a hub); NN sends every source to it, CSLS does not.
    rng = np.random.default_rng(4)
    Y = rng.normal(size=(50, 16)).astype(np.float32)
    Y[0] = Y[1:].mean(axis=0) * 6
    X = Y[1:] + 0.9 * rng.normal(size=(49, 16)).astype(np.float32) + Y[0] * 0.5
    nn = retrieval.translate_words(X, Y, method="nn", progress=False)[:, 0]
    cs = retrieval.translate_words(X, Y, method="csls", k=5, progress=False)[:, 0]
    hub_nn = retrieval.k_occurrence(nn[:, None], 50)[0]
    hub_cs = retrieval.k_occurrence(cs[:, None], 50)[0]
    assert hub_cs < hub_nn
    assert (cs == np.arange(1, 50)).mean() > (nn == np.arange(1, 50)).mean()


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 4096])
@pytest.mark.parametrize("method", ["nn", "csls"])
def test_streaming_retrieval_equals_brute_force(chunk_size, method, engine):
    rng = np.random.default_rng(5)
    # m odd so that the tiles and chunks of targets are ragged.
    X = rng.normal(size=(2500, 12)).astype(np.float32)
    Y = rng.normal(size=(301, 12)).astype(np.float32)
    queries = rng.choice(2500, size=200, replace=False)
    for topn, q in [(1, None), (5, None), (5, queries)]:
        ref_idx, ref_scores = _brute(X, Y, method=method, k=10, topn=topn, queries=q)
        idx, scores = retrieval.translate_words_with_scores(
            X, Y, method=method, k=10, topn=topn, queries=q, chunk_size=chunk_size, progress=False
        )
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
        assert idx.dtype == np.int64 and idx.shape == (len(ref_idx), topn)


def test_fused_retrieval_with_many_chunks_equals_brute_force(monkeypatch):
    # More targets than _MIN_CHUNK * _MAX_CHUNKS: chunks wider than the minimum; queries
    # repeat and come unsorted.
    monkeypatch.setattr(retrieval, "_FUSED_MIN_SCORES", 0)
    monkeypatch.setattr(retrieval, "_MIN_CHUNK", 8)
    monkeypatch.setattr(retrieval, "_MAX_CHUNKS", 16)
    rng = np.random.default_rng(8)
    X = rng.normal(size=(3000, 10)).astype(np.float32)
    Y = rng.normal(size=(1210, 10)).astype(np.float32)
    queries = np.concatenate([rng.choice(3000, size=500, replace=False), [7, 7, 2999, 0]])
    for method in ("csls", "nn"):
        for topn, q, chunk in [(1, None, 64), (1, queries, 4096), (3, queries, 37)]:
            ref_idx, _ = _brute(X, Y, method=method, k=10, topn=topn, queries=q)
            idx = retrieval.translate_words(
                X, Y, method=method, k=10, topn=topn, queries=q, chunk_size=chunk, progress=False
            )
            np.testing.assert_array_equal(idx, ref_idx)


def test_ties_go_to_the_lower_target_on_both_engines(engine):
    # Duplicated targets score exactly the same: the lower index must win, and the
    # duplicate follows it in a top-n list.
    rng = np.random.default_rng(3)
    Y = rng.normal(size=(400, 8)).astype(np.float32)
    Y[250] = Y[17]
    Y[399] = Y[17]
    X = np.vstack([Y[17] + 0.01 * rng.normal(size=8), rng.normal(size=(300, 8))]).astype(np.float32)
    for method in ("nn", "csls"):
        idx = retrieval.translate_words(X, Y, method=method, k=5, topn=3, progress=False)
        np.testing.assert_array_equal(idx[0], [17, 250, 399])


def test_the_fused_pass_is_compiled_only_when_needed():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from xlt_course import retrieval\n"
        "X = np.random.default_rng(0).normal(size=(50, 4))\n"
        "retrieval.translate_words(X, X, k=3, progress=False)\n"
        "assert 'numba' not in sys.modules, 'small inputs loaded numba'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("n", [50, 5000, 20011])
def test_knn_mean_similarity_equals_brute_force(n, engine):
    rng = np.random.default_rng(n)
    Q = rng.normal(size=(97, 8)).astype(np.float32)
    K = rng.normal(size=(n, 8)).astype(np.float32)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    Kn = K / np.linalg.norm(K, axis=1, keepdims=True)
    ref = np.sort(Qn @ Kn.T, axis=1)[:, -10:].mean(axis=1)
    for chunk in (13, 4096):
        got = retrieval.knn_mean_similarity(Q, K, 10, chunk_size=chunk)
        np.testing.assert_allclose(got, ref, atol=1e-6)


def test_retrieval_argument_errors():
    X = np.ones((5, 3), np.float32) + np.eye(5, 3, dtype=np.float32)
    with pytest.raises(ValueError, match="same dimension"):
        retrieval.translate_words(X, np.ones((4, 2)), progress=False)
    with pytest.raises(ValueError, match="k=10 is larger"):
        retrieval.translate_words(X, X, k=10, progress=False)
    with pytest.raises(ValueError, match="topn"):
        retrieval.translate_words(X, X, k=2, topn=6, progress=False)
    with pytest.raises(ValueError, match="method"):
        retrieval.translate_words(X, X, method="cosine", progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zero row"):
        retrieval.translate_words(np.zeros((2, 3)), X, method="nn", progress=False)
    with pytest.raises(ValueError, match="queries"):
        retrieval.translate_words(X, X, k=2, queries=[7], progress=False)


def test_k_occurrence_counts_each_target():
    counts = retrieval.k_occurrence(np.array([[0, 1], [0, 2], [0, 1]]), n_targets=4)
    np.testing.assert_array_equal(counts, [3, 2, 1, 0])


def test_precision_at_k_counts_queries_with_several_golds_once():
    pred = np.array([[3, 1, 2], [0, 4, 1], [2, 2, 2]])
    gold = [{1, 3}, {9}, {5, 2}]  # query 0 has both golds in its top 2: still one hit
    assert retrieval.precision_at_k(pred, gold, 1) == pytest.approx(2 / 3)
    assert retrieval.precision_at_k(pred, gold, 3) == pytest.approx(2 / 3)
    assert retrieval.precision_at_k(pred, {1: {4}}, 1) == 0.0
    assert retrieval.precision_at_k(pred, {1: {4}}, 2) == 1.0
    with pytest.raises(ValueError, match="k must be"):
        retrieval.precision_at_k(pred, gold, 4)
    with pytest.raises(ValueError, match="3 rows"):
        retrieval.precision_at_k(pred, gold[:2], 1)


def test_gold_by_query_groups_pairs_by_source_in_first_seen_order():
    queries, golds = retrieval.gold_by_query(np.array([[5, 1], [2, 0], [5, 3], [2, 0]]))
    np.testing.assert_array_equal(queries, [5, 2])
    assert queries.dtype == np.int64 and golds == [{1, 3}, {0}]


def test_benchmark_peers_find_the_readable_csls_top1():
    """bench_bli.py's faiss peer and full-matrix baseline compute the same CSLS as the course."""
    import importlib.util
    from pathlib import Path

    from xlt_course.arrays import unit_rows

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_bli.py"
    spec = importlib.util.spec_from_file_location("bench_bli", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = np.random.default_rng(5)
    X = unit_rows(rng.normal(size=(400, 16)).astype(np.float32), "X")
    Y = unit_rows(rng.normal(size=(300, 16)).astype(np.float32), "Y")
    ref = retrieval.csls_scores(X, Y, k=10).argmax(axis=1)
    np.testing.assert_array_equal(bench.naive_csls_top1(X, Y, 10), ref)
    ours = retrieval.translate_words(X, Y, k=10, progress=False)[:, 0]
    np.testing.assert_array_equal(ours, ref)
    # The two matrix-product bounds run on ragged edges (400 rows, 300 columns).
    bench.gemm_only(X, Y, 128)
    bench.gemm_tiled(X, Y, 64, 128, 2)
    if bench.faiss_available() is None:
        pytest.skip("faiss-cpu (requirements/dev.txt) is not installed: the faiss peer is untested")
    np.testing.assert_array_equal(bench.faiss_csls_top1(X, Y, 10), ref)
