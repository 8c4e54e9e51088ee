"""Lesson 02-procrustes: the package side, and exercises that accept correct variants only.

First the lesson's module (``xlt_course.procrustes``: preprocessing, mappings, dictionaries,
evaluation) and its end-to-end run (``xlt_course.bli``); the retrieval engine it uses is
tested in ``tests/test_retrieval.py``. Then every graded cell of the solution notebook is
run, visible and hidden parts together, against the reference solution, against independent
correct implementations (scipy, torch, pandas, the package itself), and against the
mistakes students make.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
from cells import run_test_cell, solution_namespace
from conftest import rotated_pair, solution

from xlt_course import bli, procrustes, retrieval
from xlt_course.errors import DataError

NB = solution("02-procrustes")


def _stub(*args, **kwargs):
    raise NotImplementedError()


# --- the package: preprocessing, mappings, dictionaries, evaluation -----------------------


def test_normalize_centres_then_unit_length():
    X = np.random.default_rng(0).normal(loc=3.0, size=(500, 8))
    Z = procrustes.normalize(X)
    assert Z.dtype == np.float32 and Z.shape == X.shape
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-5)
    # Centring happened before the scaling: the centred direction is preserved.
    C = X - X.mean(axis=0)
    np.testing.assert_allclose(Z, C / np.linalg.norm(C, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(procrustes.normalize(X, center=False, unit=False), X, rtol=1e-6)
    ucu = procrustes.preprocess(X, "unit_center_unit")
    np.testing.assert_allclose(np.linalg.norm(ucu, axis=1), 1.0, atol=1e-5)


def test_normalize_rejects_zero_rows_and_nan():
    X = np.ones((6, 3))
    X[[1, 4]] = 0.0
    with pytest.raises(ValueError, match="2 zero row"):
        procrustes.normalize(X)
    with pytest.raises(ValueError, match="zero after centring"):
        procrustes.normalize(np.ones((4, 3)))
    bad = np.ones((3, 2))
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        procrustes.normalize(bad)
    with pytest.raises(ValueError, match="2-D"):
        procrustes.normalize(np.ones(5))


def test_reduce_dim_keeps_the_leading_components():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 6)) * np.array([10, 5, 1, 0.1, 0.1, 0.1])
    Z = procrustes.reduce_dim(X, 2)
    assert Z.shape == (400, 2) and Z.dtype == np.float32
    # Two components carry almost all the variance.
    assert Z.var(axis=0).sum() / X.var(axis=0).sum() > 0.99
    with pytest.raises(ValueError, match="dim must be"):
        procrustes.reduce_dim(X, 7)


def test_procrustes_recovers_a_known_rotation_and_is_orthogonal():
    X, Y, W_true = rotated_pair()
    W = procrustes.procrustes(X, Y)
    assert W.shape == (20, 20) and W.dtype == np.float32
    assert procrustes.isometry_error(W) < 1e-4
    np.testing.assert_allclose(W, W_true, atol=0.01)
    ref, _ = scipy.linalg.orthogonal_procrustes(X, Y)
    np.testing.assert_allclose(W, ref, atol=1e-5)
    # Mapped sources retrieve their own translation.
    pred = retrieval.translate_words(X @ W, Y, method="nn", progress=False)[:, 0]
    assert (pred == np.arange(len(X))).mean() > 0.99


def test_least_squares_fits_a_general_map_that_is_not_orthogonal():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    A = rng.normal(size=(5, 7)).astype(np.float32)
    W = procrustes.least_squares(X, X @ A)
    assert W.shape == (5, 7)
    np.testing.assert_allclose(W, A, atol=1e-4)
    assert procrustes.isometry_error(W) > 1.0


def test_mapping_errors_name_the_shapes():
    X = np.ones((10, 4), np.float32)
    with pytest.raises(ValueError, match=r"\(10, 4\).*\(9, 4\)"):
        procrustes.procrustes(X, np.ones((9, 4)))
    with pytest.raises(ValueError, match="different dimensions"):
        procrustes.procrustes(X, np.ones((10, 5)))
    with pytest.raises(ValueError, match="at least 1"):
        procrustes.procrustes(np.ones((0, 4)), np.ones((0, 4)))
    bad = X.copy()
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        procrustes.procrustes(bad, X)


def test_whitened_mapping_handles_unequal_dimensions():
    rng = np.random.default_rng(3)
    n, d_src, d_tgt = 3000, 10, 30
    X = rng.normal(size=(n, d_src)).astype(np.float32)
    # The target space embeds a rotated, rescaled copy of the source plus unrelated dims.
    lift = np.linalg.qr(rng.normal(size=(d_tgt, d_src)))[0].T * rng.uniform(0.5, 2, (d_src, 1))
    Y = (X @ lift + 0.3 * rng.normal(size=(n, d_tgt))).astype(np.float32)
    train = np.arange(1000)
    W_src, W_tgt = procrustes.whitened_mapping(X[train], Y[train])
    assert W_src.shape == (d_src, d_src) and W_tgt.shape == (d_tgt, d_src)
    test = np.arange(1000, 3000)
    pred = retrieval.translate_words(X @ W_src, Y @ W_tgt, queries=test, progress=False)[:, 0]
    assert (pred == test).mean() > 0.9
    with pytest.raises(ValueError, match="dewhiten"):
        procrustes.whitened_mapping(X[train], Y[train], dewhiten="sideways")  # type: ignore[arg-type]


def test_isometry_error():
    assert procrustes.isometry_error(np.eye(3)) == pytest.approx(0.0)
    assert procrustes.isometry_error(2 * np.eye(3)) == pytest.approx(np.sqrt(27))


def _toy_spaces():
    X, Y, _ = rotated_pair(n=400, d=10, noise=0.01, seed=7)
    src = procrustes.WordSpace("en", [f"e{i}" for i in range(400)], X)
    tgt = procrustes.WordSpace("fr", [f"f{i}" for i in range(400)], Y)
    return src, tgt


def test_pairs_to_matrices_warns_with_the_count_of_dropped_pairs():
    src, tgt = _toy_spaces()
    pairs = [("e1", "f1"), ("e2", "f2"), ("nope", "f3"), ("e4", "absent"), ("e5", "f5")]
    with pytest.warns(
        procrustes.DroppedPairsWarning, match=r"dropped 2 of 5 .*1 with the source.*1"
    ):
        X, Y, kept = procrustes.pairs_to_matrices(pairs, src, tgt)
    assert X.shape == (3, 10) and Y.shape == (3, 10)
    assert kept == [("e1", "f1"), ("e2", "f2"), ("e5", "f5")]
    np.testing.assert_array_equal(X[2], src.vectors[5])
    with pytest.raises(ValueError, match="none of the 2"):
        procrustes.pairs_to_matrices([("x", "y"), ("e1", "q")], src, tgt)
    with pytest.raises(ValueError, match="none of the 0"):
        procrustes.pairs_to_matrices([], src, tgt)


def test_evaluate_bli_and_result_line():
    src, tgt = _toy_spaces()
    train = [(f"e{i}", f"f{i}") for i in range(200)]
    test = [(f"e{i}", f"f{i}") for i in range(200, 400)] + [("e201", "f0")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        X, Y, _ = procrustes.pairs_to_matrices(train, src, tgt)
    W = procrustes.procrustes(X, Y)
    assert procrustes.evaluate_bli(src, tgt, W, test, method="csls", k=5) == {1: 1.0, 5: 1.0}
    assert procrustes.evaluate_bli(src, tgt, np.eye(10), test, method="nn")[1] < 0.1
    r = bli.BLIResult("en", "fr", {"nn": {1: 0.3271, 5: 0.5}, "csls": {1: 0.35349, 5: 0.5436}},
                        n_queries=1500, n_test_pairs=2214)  # fmt: skip
    assert bli.format_bli_line(r) == "P@1 nn=0.327 csls=0.353 P@5 csls=0.544"
    with pytest.raises(KeyError, match="no P@10"):
        r.p("csls", 10)


def test_run_bli_en_fr_beats_the_plain_procrustes_baseline():
    try:
        result = bli.run_bli("en", "fr")
    except DataError as e:
        pytest.skip(f"offline data not built ({e}); run `xlt-course data build`")
    assert result.n_queries == 1500
    assert result.p("csls", 1) > 0.353, bli.format_bli_line(result)
    assert result.p("csls", 5) > result.p("csls", 1)


# --- exercise 1: procrustes ---------------------------------------------------------------


def _svd(M):
    return np.linalg.svd(M)


def _seed_convention(X, Y):
    # svd(Y^T X) = U S V^T gives W = V U^T: the same matrix as U V^T of svd(X^T Y).
    U, _, Vt = _svd(Y.T @ X)
    return Vt.T @ U.T


def _torch_procrustes(X, Y):
    torch = pytest.importorskip("torch")
    U, _, Vh = torch.linalg.svd(torch.as_tensor(X).T @ torch.as_tensor(Y))
    return U @ Vh


def _torch_float32_procrustes(X, Y):
    torch = pytest.importorskip("torch")
    t = torch.float32  # torch's default dtype: about 1e-4 off on a 60 x 60 problem
    U, _, Vh = torch.linalg.svd(torch.as_tensor(X, dtype=t).T @ torch.as_tensor(Y, dtype=t))
    return U @ Vh


def _polar(X, Y):
    import scipy.linalg

    # The orthogonal factor of the polar decomposition of X^T Y is the Procrustes solution.
    return scipy.linalg.polar(X.T @ Y)[0]


def test_ex1_reference_passes():
    ref = solution_namespace(NB, "ex1_procrustes")["procrustes"]
    run_test_cell(NB, "ex1_procrustes_tests", procrustes=ref)


@pytest.mark.parametrize(
    "variant",
    [
        lambda X, Y: __import__("scipy.linalg").linalg.orthogonal_procrustes(X, Y)[0],
        _torch_procrustes,
        _torch_float32_procrustes,
        _seed_convention,
        _polar,
        procrustes.procrustes,
    ],
    ids=["scipy", "torch", "torch-float32", "seed-convention", "polar", "package"],
)
def test_ex1_correct_variants_pass(variant):
    run_test_cell(NB, "ex1_procrustes_tests", procrustes=variant)


def _transposed(X, Y):
    U, _, Vt = _svd(X.T @ Y)
    return (U @ Vt).T


def _vt_not_v(X, Y):
    U, _, Vt = _svd(X.T @ Y)
    return U @ Vt.T  # treats numpy's third output as V


def _wrong_product(X, Y):
    U, _, Vt = _svd(Y.T @ X)  # the seed's matrix with the row-convention formula
    return U @ Vt


def _with_sigma(X, Y):
    U, s, Vt = _svd(X.T @ Y)
    return U @ np.diag(s) @ Vt


def _least_squares(X, Y):
    return np.linalg.lstsq(X, Y, rcond=None)[0]


def _rotation_only(X, Y):
    # Kabsch: forces det(W) = +1, wrong when the best orthogonal map is a reflection.
    U, _, Vt = _svd(X.T @ Y)
    D = np.eye(U.shape[0])
    D[-1, -1] = np.sign(np.linalg.det(U @ Vt))
    return U @ D @ Vt


def _normalises_inputs(X, Y):
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    Y = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    U, _, Vt = _svd(X.T @ Y)
    return U @ Vt


def _centres_in_place(X, Y):
    X -= X.mean(axis=0)
    Y -= Y.mean(axis=0)
    U, _, Vt = _svd(X.T @ Y)
    return U @ Vt


@pytest.mark.parametrize(
    "wrong",
    [
        _transposed,
        _vt_not_v,
        _wrong_product,
        _with_sigma,
        _least_squares,
        _rotation_only,
        _normalises_inputs,
        _centres_in_place,
    ],
    ids=[
        "transposed-W",
        "Vt-taken-for-V",
        "svd(YtX)-with-UVt",
        "keeps-sigma",
        "least-squares",
        "rotation-only",
        "normalises-inputs",
        "centres-in-place",
    ],
)
def test_ex1_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex1_procrustes_tests", procrustes=wrong)


def test_ex1_transposed_W_fails_visibly():
    """Students learn about the convention mix-up from the self-check, before grading."""
    with pytest.raises(AssertionError, match="does not reproduce Y"):
        run_test_cell(NB, "ex1_procrustes_tests", procrustes=_transposed)


def test_ex1_stub_gets_friendly_message():
    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex1_procrustes_tests", procrustes=_stub)


# --- exercise 2: csls_matrix ----------------------------------------------------------------


def _unit(A):
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def _topk_mean(S, k, axis):
    return np.sort(S, axis=axis).take(np.arange(-k, 0), axis=axis).mean(axis=axis)


def _csls_from(cos, r_T, r_S, *, a=2.0, s_T=-1.0, s_S=-1.0):
    return a * cos + s_T * r_T[:, None] + s_S * r_S[None, :]


def _csls_partition(X, Y, k=10):
    cos = _unit(X) @ _unit(Y).T
    n, m = cos.shape
    r_T = np.partition(cos, m - k, axis=1)[:, m - k :].mean(axis=1)
    r_S = np.partition(cos, n - k, axis=0)[n - k :, :].mean(axis=0)
    return 2 * cos - r_T[:, None] - r_S[None, :]


def _csls_torch(X, Y, k=10):
    torch = pytest.importorskip("torch")
    Xt = torch.nn.functional.normalize(torch.as_tensor(X, dtype=torch.float64), dim=1)
    Yt = torch.nn.functional.normalize(torch.as_tensor(Y, dtype=torch.float64), dim=1)
    cos = Xt @ Yt.T
    r_T = cos.topk(k, dim=1).values.mean(dim=1)
    r_S = cos.topk(k, dim=0).values.mean(dim=0)
    return 2 * cos - r_T[:, None] - r_S[None, :]


def test_ex2_reference_passes():
    ref = solution_namespace(NB, "ex2_csls")["csls_matrix"]
    run_test_cell(NB, "ex2_csls_tests", csls_matrix=ref)


@pytest.mark.parametrize(
    "variant",
    [lambda X, Y, k=10: retrieval.csls_scores(X, Y, k=k), _csls_partition, _csls_torch],
    ids=["package", "partition", "torch"],
)
def test_ex2_correct_variants_pass(variant):
    run_test_cell(NB, "ex2_csls_tests", csls_matrix=variant)


def _no_normalisation(X, Y, k=10):
    cos = X @ Y.T
    return _csls_from(cos, _topk_mean(cos, k, 1), _topk_mean(cos, k, 0))


def _r_S_in_target_space(X, Y, k=10):
    cos = _unit(X) @ _unit(Y).T
    YY = _unit(Y) @ _unit(Y).T  # neighbours of y among the targets (itself included)
    return _csls_from(cos, _topk_mean(cos, k, 1), _topk_mean(YY, k, 1))


def _r_T_in_source_space(X, Y, k=10):
    cos = _unit(X) @ _unit(Y).T
    XX = _unit(X) @ _unit(X).T
    return _csls_from(cos, _topk_mean(XX, k, 1), _topk_mean(cos, k, 0))


def _k_plus_one(X, Y, k=10):
    cos = _unit(X) @ _unit(Y).T
    return _csls_from(cos, _topk_mean(cos, k + 1, 1), _topk_mean(cos, k + 1, 0))


def _skips_self(X, Y, k=10):
    # takes k+1 neighbours and drops the best one, as if it were the word itself
    cos = _unit(X) @ _unit(Y).T
    r_T = np.sort(cos, axis=1)[:, -(k + 1) : -1].mean(axis=1)
    r_S = np.sort(cos, axis=0)[-(k + 1) : -1, :].mean(axis=0)
    return _csls_from(cos, r_T, r_S)


def _plus_penalties(X, Y, k=10):
    cos = _unit(X) @ _unit(Y).T
    return _csls_from(cos, _topk_mean(cos, k, 1), _topk_mean(cos, k, 0), s_T=1.0, s_S=1.0)


def _without_r_T(X, Y, k=10):
    cos = _unit(X) @ _unit(Y).T
    return 2 * cos - _topk_mean(cos, k, 0)[None, :]


def _without_factor_2(X, Y, k=10):
    cos = _unit(X) @ _unit(Y).T
    return _csls_from(cos, _topk_mean(cos, k, 1), _topk_mean(cos, k, 0), a=1.0)


def _ranking_score(X, Y, k=10):
    cos = _unit(X) @ _unit(Y).T
    return cos - 0.5 * _topk_mean(cos, k, 0)[None, :]


def _mean_of_all(X, Y, k=10):
    cos = _unit(X) @ _unit(Y).T
    return _csls_from(cos, cos.mean(axis=1), cos.mean(axis=0))


def _k_smallest(X, Y, k=10):
    cos = _unit(X) @ _unit(Y).T
    r_T = np.sort(cos, axis=1)[:, :k].mean(axis=1)
    r_S = np.sort(cos, axis=0)[:k, :].mean(axis=0)
    return _csls_from(cos, r_T, r_S)


def _ignores_k(X, Y, k=10):
    return _csls_partition(X, Y, k=min(10, X.shape[0], Y.shape[0]))


def _normalises_in_place(X, Y, k=10):
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    return _csls_partition(X, Y, k=k)


@pytest.mark.parametrize(
    "wrong",
    [
        _no_normalisation,
        _r_S_in_target_space,
        _r_T_in_source_space,
        _k_plus_one,
        _skips_self,
        _plus_penalties,
        _without_r_T,
        _without_factor_2,
        _ranking_score,
        _mean_of_all,
        _k_smallest,
        _ignores_k,
        _normalises_in_place,
    ],
    ids=[
        "no-normalisation",
        "r_S-in-target-space",
        "r_T-in-source-space",
        "k+1-neighbours",
        "skips-self",
        "plus-instead-of-minus",
        "2cos-minus-r_S-only",
        "no-factor-2",
        "ranking-score-cos-minus-half-r_S",
        "mean-over-all",
        "k-smallest",
        "ignores-k",
        "normalises-in-place",
    ],
)
def test_ex2_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex2_csls_tests", csls_matrix=wrong)


def test_ex2_stub_gets_friendly_message():
    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex2_csls_tests", csls_matrix=_stub)


# --- exercise 3: precision_at_k ---------------------------------------------------------------


def _golds_by_query(queries, gold_pairs):
    gold: dict[int, set[int]] = {}
    for s, t in np.asarray(gold_pairs).tolist():
        gold.setdefault(s, set()).add(t)
    return [gold[q] for q in np.asarray(queries).tolist()]


def _pak_package(predictions, queries, gold_pairs, k):
    return retrieval.precision_at_k(predictions, _golds_by_query(queries, gold_pairs), k)


def _pak_vectorised(predictions, queries, gold_pairs, k):
    P = np.asarray(predictions)[:, :k]
    row_of = {q: r for r, q in enumerate(np.asarray(queries).tolist())}
    gp = np.asarray(gold_pairs)
    rows = np.array([row_of[s] for s in gp[:, 0].tolist()])
    found = (P[rows] == gp[:, 1:2]).any(axis=1)  # per pair: is this gold in its query's top k?
    hit = np.zeros(len(P), dtype=bool)
    np.logical_or.at(hit, rows, found)
    return float(hit.mean())


def _pak_pandas(predictions, queries, gold_pairs, k):
    import pandas as pd

    top = pd.DataFrame(
        [(q, t) for q, row in zip(queries, predictions, strict=True) for t in row[:k]],
        columns=["src", "tgt"],
    )
    gold = pd.DataFrame(np.asarray(gold_pairs), columns=["src", "tgt"])
    hits = top.merge(gold, on=["src", "tgt"])["src"].nunique()
    return hits / len(queries)


def test_ex3_reference_passes():
    ref = solution_namespace(NB, "ex3_precision")["precision_at_k"]
    run_test_cell(NB, "ex3_precision_tests", precision_at_k=ref)


def test_ex3_float32_share_passes():
    torch = pytest.importorskip("torch")

    def float32(predictions, queries, gold_pairs, k):  # a share computed as a float32 tensor
        golds = _golds_by_query(queries, gold_pairs)
        rows = np.asarray(predictions)[:, :k].tolist()
        hits = [bool(g & set(row)) for g, row in zip(golds, rows, strict=True)]
        return torch.tensor(hits, dtype=torch.float32).mean()

    run_test_cell(NB, "ex3_precision_tests", precision_at_k=float32)


@pytest.mark.parametrize(
    "variant", [_pak_package, _pak_vectorised, _pak_pandas], ids=["package", "numpy", "pandas"]
)
def test_ex3_correct_variants_pass(variant):
    run_test_cell(NB, "ex3_precision_tests", precision_at_k=variant)


def _first_gold_only(predictions, queries, gold_pairs, k):
    first: dict[int, int] = {}
    for s, t in np.asarray(gold_pairs).tolist():
        first.setdefault(s, t)
    P = np.asarray(predictions)[:, :k]
    return float(np.mean([first[q] in row for q, row in zip(queries, P.tolist(), strict=True)]))


def _last_gold_only(predictions, queries, gold_pairs, k):
    last = dict(np.asarray(gold_pairs).tolist())
    P = np.asarray(predictions)[:, :k]
    return float(np.mean([last[q] in row for q, row in zip(queries, P.tolist(), strict=True)]))


def _per_pair(predictions, queries, gold_pairs, k):
    row_of = {q: r for r, q in enumerate(np.asarray(queries).tolist())}
    P = np.asarray(predictions)[:, :k]
    return float(np.mean([t in P[row_of[s]] for s, t in np.asarray(gold_pairs).tolist()]))


def _counts_every_gold(predictions, queries, gold_pairs, k):
    row_of = {q: r for r, q in enumerate(np.asarray(queries).tolist())}
    P = np.asarray(predictions)[:, :k]
    found = sum(t in P[row_of[s]] for s, t in np.asarray(gold_pairs).tolist())
    return found / len(queries)


def _hits_over_pairs(predictions, queries, gold_pairs, k):
    golds = _golds_by_query(queries, gold_pairs)
    P = np.asarray(predictions)[:, :k]
    hits = sum(bool(g & set(row)) for g, row in zip(golds, P.tolist(), strict=True))
    return hits / len(gold_pairs)


def _k_plus_one_candidates(predictions, queries, gold_pairs, k):
    P = np.asarray(predictions)
    return retrieval.precision_at_k(P, _golds_by_query(queries, gold_pairs), min(k + 1, P.shape[1]))


def _only_rank_k(predictions, queries, gold_pairs, k):
    golds = _golds_by_query(queries, gold_pairs)
    P = np.asarray(predictions)
    return float(np.mean([P[r, k - 1] in g for r, g in enumerate(golds)]))


def _rows_by_source_id(predictions, queries, gold_pairs, k):
    gold: dict[int, set[int]] = {}
    for s, t in np.asarray(gold_pairs).tolist():
        gold.setdefault(s, set()).add(t)
    P = np.asarray(predictions)[:, :k]
    return float(np.mean([bool(gold[q] & set(P[q].tolist())) for q in gold]))


def _sorted_queries(predictions, queries, gold_pairs, k):
    # assumes the rows of predictions follow the sorted source ids
    srcs = np.unique(np.asarray(gold_pairs)[:, 0])
    return _pak_package(predictions, srcs, gold_pairs, k)


@pytest.mark.parametrize(
    "wrong",
    [
        _first_gold_only,
        _last_gold_only,
        _per_pair,
        _counts_every_gold,
        _hits_over_pairs,
        _k_plus_one_candidates,
        _only_rank_k,
        _sorted_queries,
    ],
    ids=[
        "first-gold-only",
        "last-gold-only",
        "per-pair",
        "counts-every-gold",
        "divides-by-pairs",
        "k+1-candidates",
        "only-rank-k",
        "rows-in-sorted-order",
    ],
)
def test_ex3_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex3_precision_tests", precision_at_k=wrong)


def test_ex3_rows_indexed_by_source_id_fail():
    # Indexing predictions by the source id either crashes or scores the wrong rows.
    with pytest.raises((AssertionError, IndexError)):
        run_test_cell(NB, "ex3_precision_tests", precision_at_k=_rows_by_source_id)


def test_ex3_stub_gets_friendly_message():
    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex3_precision_tests", precision_at_k=_stub)
