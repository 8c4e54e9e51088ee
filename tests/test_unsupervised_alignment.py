"""Lesson 03-unsupervised-alignment: its exercises' tests catch mistakes, its claims hold.

For each exercise: the reference solution passes its tests cell, correct variants pass, and
the plausible mistakes fail. The lesson's claims about ``xlt_course.unsupervised_alignment`` (a small correct
seed grows into the full mapping, a random seed does not; the loop's own signals tell them
apart) are checked on a synthetic problem whose answer is known.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from cells import run_test_cell, solution_namespace
from conftest import rotated_pair, run_visible_checks, solution

from xlt_course import procrustes, retrieval, unsupervised_alignment

NB = solution("03-unsupervised-alignment")


def _stub(*args, **kwargs):
    raise NotImplementedError()


# --- exercise 1: identical_seed -----------------------------------------------------------


def _seed_reference():
    return solution_namespace(NB, "ex1_identical_seed")["identical_seed"]


def _seed_dict(src, tgt, max_rank):
    first = {}
    for j, w in enumerate(list(tgt)[:max_rank]):
        first.setdefault(w, j)
    out, done = [], set()
    for i, w in enumerate(list(src)[:max_rank]):
        if w in first and w not in done:
            done.add(w)
            out.append([i, first[w]])
    return np.array(out, dtype=int).reshape(-1, 2)


def _seed_intersect1d(src, tgt, max_rank):
    s = np.asarray(list(src)[:max_rank], dtype=object).astype(str)
    t = np.asarray(list(tgt)[:max_rank], dtype=object).astype(str)
    # intersect1d reports the first occurrence of each common value in either array.
    _, i, j = np.intersect1d(s, t, return_indices=True)
    return np.stack([i, j], axis=1).astype(np.int64).reshape(-1, 2)


def _seed_pandas(src, tgt, max_rank):
    import pandas as pd

    a = pd.DataFrame({"w": list(src)[:max_rank]}).reset_index().drop_duplicates("w")
    b = pd.DataFrame({"w": list(tgt)[:max_rank]}).reset_index().drop_duplicates("w")
    m = a.merge(b, on="w", suffixes=("_s", "_t"))
    return m[["index_s", "index_t"]].to_numpy(dtype=np.int64).reshape(-1, 2)


def _seed_package(src, tgt, max_rank):
    return unsupervised_alignment.identical_strings_seed(
        SimpleNamespace(words=list(src)), SimpleNamespace(words=list(tgt)), max_rank
    )


def test_ex1_reference_passes():
    run_test_cell(NB, "ex1_identical_seed_tests", identical_seed=_seed_reference())


@pytest.mark.parametrize(
    "variant",
    [_seed_dict, _seed_intersect1d, _seed_pandas, _seed_package],
    ids=["dict", "intersect1d", "pandas-merge", "align"],
)
def test_ex1_correct_variants_pass(variant):
    run_test_cell(NB, "ex1_identical_seed_tests", identical_seed=variant)


def _no_rank_limit(src, tgt, max_rank):
    return _seed_dict(src, tgt, None)


def _rank_src_only(src, tgt, max_rank):
    return _seed_dict(list(src)[:max_rank], tgt, None)


def _rank_tgt_only(src, tgt, max_rank):
    return _seed_dict(src, list(tgt)[:max_rank], None)


def _rank_off_by_one(src, tgt, max_rank):
    return _seed_dict(src, tgt, None if max_rank is None else max_rank + 1)


def _first_pairs_not_first_words(src, tgt, max_rank):
    return _seed_dict(src, tgt, None)[:max_rank]


def _lowercased(src, tgt, max_rank):
    return _seed_dict([w.lower() for w in src], [w.lower() for w in tgt], max_rank)


def _last_occurrence(src, tgt, max_rank):
    row = {w: j for j, w in enumerate(list(tgt)[:max_rank])}  # keeps the LAST row of a word
    out = {}
    for i, w in enumerate(list(src)[:max_rank]):
        if w in row:
            out[w] = (i, row[w])
    return np.array(list(out.values()), dtype=int).reshape(-1, 2)


def _swapped(src, tgt, max_rank):
    return _seed_dict(src, tgt, max_rank)[:, ::-1]


def _keeps_unshared(src, tgt, max_rank):
    first = {}
    for j, w in enumerate(list(tgt)[:max_rank]):
        first.setdefault(w, j)
    return np.array(
        [[i, first.get(w, -1)] for i, w in enumerate(list(src)[:max_rank])], dtype=int
    ).reshape(-1, 2)


def _duplicate_pairs(src, tgt, max_rank):
    first = {}
    for j, w in enumerate(list(tgt)[:max_rank]):
        first.setdefault(w, j)
    return np.array(
        [[i, first[w]] for i, w in enumerate(list(src)[:max_rank]) if w in first], dtype=int
    ).reshape(-1, 2)


def _words_not_rows(src, tgt, max_rank):
    return np.array([[w, w] for w in list(src)[:max_rank] if w in list(tgt)[:max_rank]])


def _flat_when_empty(src, tgt, max_rank):
    p = _seed_dict(src, tgt, max_rank)
    return p if len(p) else np.array([], dtype=int)


def _positions_in_intersection(src, tgt, max_rank):
    shared = sorted(set(list(src)[:max_rank]) & set(list(tgt)[:max_rank]))
    return np.array([[k, k] for k in range(len(shared))], dtype=int).reshape(-1, 2)


@pytest.mark.parametrize(
    "wrong",
    [
        _no_rank_limit,
        _rank_src_only,
        _rank_tgt_only,
        _rank_off_by_one,
        _first_pairs_not_first_words,
        _lowercased,
        _last_occurrence,
        _swapped,
        _keeps_unshared,
        _duplicate_pairs,
        _words_not_rows,
        _flat_when_empty,
        _positions_in_intersection,
    ],
    ids=[
        "no-rank-limit",
        "rank-src-only",
        "rank-tgt-only",
        "rank-off-by-one",
        "first-pairs",
        "lowercased",
        "last-occurrence",
        "swapped-columns",
        "keeps-unshared",
        "duplicate-pairs",
        "words",
        "flat-empty",
        "intersection-positions",
    ],
)
def test_ex1_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex1_identical_seed_tests", identical_seed=wrong)


def test_ex1_case_folding_gets_the_case_hint():

    with pytest.raises(AssertionError, match="differ only in case"):
        run_visible_checks(NB, "ex1_identical_seed_tests", identical_seed=_lowercased)


def test_ex1_stub_gets_friendly_message():
    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex1_identical_seed_tests", identical_seed=_stub)


def test_ex1_reference_matches_package_on_real_vocabularies(built_data):
    from xlt_course.data.vectors import load_vectors

    en, fr = load_vectors("en"), load_vectors("fr")
    mine = _seed_reference()(en.words, fr.words, 20_000)
    ref = unsupervised_alignment.identical_strings_seed(en, fr, max_rank=20_000)
    assert len(ref) > 1_000
    assert set(map(tuple, mine.tolist())) == set(map(tuple, ref.tolist()))


# --- exercise 2: mutual_nn_pairs ----------------------------------------------------------


def _mutual_reference():
    return solution_namespace(NB, "ex2_mutual_nn")["mutual_nn_pairs"]


def _mutual_loops(scores):
    S = np.asarray(scores)
    out = []
    for i in range(S.shape[0]):
        j = int(np.argmax(S[i]))
        if int(np.argmax(S[:, j])) == i:
            out.append((i, j))
    return np.array(out, dtype=int).reshape(-1, 2)


def _mutual_mask(scores):
    S = np.asarray(scores)
    mask = (S == S.max(axis=1, keepdims=True)) & (S == S.max(axis=0, keepdims=True))
    return np.argwhere(mask)


def _mutual_torch(scores):
    torch = pytest.importorskip("torch")
    S = torch.as_tensor(np.asarray(scores))
    fwd, bwd = S.argmax(dim=1), S.argmax(dim=0)
    rows = torch.arange(S.shape[0])
    keep = bwd[fwd] == rows
    return torch.stack([rows[keep], fwd[keep]], dim=1)


def _mutual_by_targets(scores):
    S = np.asarray(scores)
    fwd, bwd = S.argmax(axis=1), S.argmax(axis=0)
    cols = np.arange(S.shape[1])
    keep = fwd[bwd] == cols  # loop over targets instead: same set, ordered by target
    return np.stack([bwd[keep], cols[keep]], axis=1)


def test_ex2_reference_passes():
    run_test_cell(NB, "ex2_mutual_nn_tests", mutual_nn_pairs=_mutual_reference())


@pytest.mark.parametrize(
    "variant",
    [_mutual_loops, _mutual_mask, _mutual_torch, _mutual_by_targets],
    ids=["loops", "mask", "torch", "by-targets"],
)
def test_ex2_correct_variants_pass(variant):
    run_test_cell(NB, "ex2_mutual_nn_tests", mutual_nn_pairs=variant)


def _forward_only(scores):
    S = np.asarray(scores)
    return np.stack([np.arange(S.shape[0]), S.argmax(axis=1)], axis=1)


def _backward_only(scores):
    S = np.asarray(scores)
    return np.stack([S.argmax(axis=0), np.arange(S.shape[1])], axis=1)


def _axes_swapped(scores):
    S = np.asarray(scores)
    fwd, bwd = S.argmax(axis=0), S.argmax(axis=1)  # roles of the two axes confused
    n = min(len(fwd), len(bwd))
    rows = np.arange(n)
    keep = bwd[np.minimum(fwd[:n], len(bwd) - 1)] == rows
    return np.stack([rows[keep], fwd[:n][keep]], axis=1)


def _swapped_columns(scores):
    return _mutual_loops(scores)[:, ::-1]


def _argmin(scores):
    return _mutual_loops(-np.asarray(scores))


def _top2_mutual(scores):
    S = np.asarray(scores)
    k = min(2, S.shape[0], S.shape[1])
    fwd = np.argsort(-S, axis=1)[:, :k]
    bwd = np.argsort(-S, axis=0)[:k, :]
    out = [(i, j) for i in range(S.shape[0]) for j in fwd[i] if i in bwd[:, j]]
    return np.array(out, dtype=int).reshape(-1, 2)


def _wrong_mutual_check(scores):
    S = np.asarray(scores)
    fwd, bwd = S.argmax(axis=1), S.argmax(axis=0)
    rows = np.arange(S.shape[0])
    keep = bwd[fwd] == fwd  # compares a row index with a column index
    return np.stack([rows[keep], fwd[keep]], axis=1)


@pytest.mark.parametrize(
    "wrong",
    [
        _forward_only,
        _backward_only,
        _axes_swapped,
        _swapped_columns,
        _argmin,
        _top2_mutual,
        _wrong_mutual_check,
    ],
    ids=["forward-only", "backward-only", "axes-swapped", "swapped", "argmin", "top2", "check"],
)
def test_ex2_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex2_mutual_nn_tests", mutual_nn_pairs=wrong)


def test_ex2_stub_gets_friendly_message():
    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex2_mutual_nn_tests", mutual_nn_pairs=_stub)


def test_ex2_reference_matches_package_csls_induction():
    rng = np.random.default_rng(0)
    X = procrustes.normalize(rng.normal(size=(300, 12)))
    Y = procrustes.normalize(rng.normal(size=(250, 12)))
    want = unsupervised_alignment.induce_dictionary(
        X, Y, method="csls", mutual=True, max_rank=200, k=10
    )
    got = _mutual_reference()(retrieval.csls_scores(X[:200], Y[:200], k=10))
    assert set(map(tuple, got.tolist())) == set(map(tuple, want.tolist()))


# --- exercise 3: dictionary_change --------------------------------------------------------


def _change_reference():
    return solution_namespace(NB, "ex3_dictionary_change")["dictionary_change"]


def _change_numpy(a, b):
    a = np.unique(np.asarray(a, dtype=np.int64).reshape(-1, 2), axis=0)
    b = np.unique(np.asarray(b, dtype=np.int64).reshape(-1, 2), axis=0)
    both = np.concatenate([a, b])
    union = len(np.unique(both, axis=0)) if len(both) else 0
    inter = len(a) + len(b) - union
    return 0.0 if union == 0 else float(1 - inter / union)


def _change_pandas(a, b):
    import pandas as pd

    A = pd.DataFrame(np.asarray(a).reshape(-1, 2), columns=["s", "t"]).drop_duplicates()
    B = pd.DataFrame(np.asarray(b).reshape(-1, 2), columns=["s", "t"]).drop_duplicates()
    inter = len(A.merge(B))
    union = len(A) + len(B) - inter
    return 0.0 if union == 0 else 1.0 - inter / union


def _change_frozenset(a, b):
    A = frozenset((int(i), int(j)) for i, j in np.asarray(a).reshape(-1, 2))
    B = frozenset((int(i), int(j)) for i, j in np.asarray(b).reshape(-1, 2))
    return np.float64(len(A ^ B) / len(A | B)) if A | B else np.float64(0.0)


def test_ex3_reference_passes():
    run_test_cell(NB, "ex3_dictionary_change_tests", dictionary_change=_change_reference())


def _change_int_when_empty(a, b):
    A, B = _sets(a, b)
    return 0 if not A | B else 1 - len(A & B) / len(A | B)  # the int 0: the same number


def _change_float32(a, b):
    A, B = _sets(a, b)
    return np.float32(0.0) if not A | B else np.float32(1.0) - np.float32(len(A & B) / len(A | B))


@pytest.mark.parametrize(
    "variant",
    [_change_numpy, _change_pandas, _change_frozenset, _change_int_when_empty, _change_float32],
    ids=["numpy", "pandas", "symmetric-difference", "int-zero-when-empty", "float32"],
)
def test_ex3_correct_variants_pass(variant):
    run_test_cell(NB, "ex3_dictionary_change_tests", dictionary_change=variant)


def _sets(a, b):
    A = set(map(tuple, np.asarray(a).reshape(-1, 2).tolist()))
    B = set(map(tuple, np.asarray(b).reshape(-1, 2).tolist()))
    return A, B


def _sources_only(a, b):
    A = set(np.asarray(a).reshape(-1, 2)[:, 0].tolist())
    B = set(np.asarray(b).reshape(-1, 2)[:, 0].tolist())
    return 0.0 if not A | B else 1.0 - len(A & B) / len(A | B)


def _over_new(a, b):
    A, B = _sets(a, b)
    return 0.0 if not B else 1.0 - len(A & B) / len(B)


def _over_prev(a, b):
    A, B = _sets(a, b)
    return 0.0 if not A else 1.0 - len(A & B) / len(A)


def _jaccard_not_change(a, b):
    A, B = _sets(a, b)
    return 1.0 if not A | B else len(A & B) / len(A | B)


def _rowwise(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.mean(np.any(a != b, axis=1)))


def _lists_with_duplicates(a, b):
    A = list(map(tuple, np.asarray(a).reshape(-1, 2).tolist()))
    B = list(map(tuple, np.asarray(b).reshape(-1, 2).tolist()))
    inter = sum(p in B for p in A)
    union = len(A) + len(B) - inter
    return 0.0 if union == 0 else 1.0 - inter / union


def _flattened(a, b):
    A = set(np.asarray(a).ravel().tolist())
    B = set(np.asarray(b).ravel().tolist())
    return 0.0 if not A | B else 1.0 - len(A & B) / len(A | B)


def _empty_is_one(a, b):
    A, B = _sets(a, b)
    return 1.0 if not A | B else 1.0 - len(A & B) / len(A | B)


def _pair_code(base):
    """Encodes the pair (i, j) as the integer i * base + j: collides once j >= base."""

    def change(a, b):
        A = set((np.asarray(a).reshape(-1, 2) @ [base, 1]).tolist())
        B = set((np.asarray(b).reshape(-1, 2) @ [base, 1]).tolist())
        return 0.0 if not A | B else 1.0 - len(A & B) / len(A | B)

    return change


def _concatenated_digits(a, b):
    """Writes the pair (i, j) as the string f"{i}{j}": (1, 23) and (12, 3) collide."""
    A = {f"{i}{j}" for i, j in np.asarray(a).reshape(-1, 2).tolist()}
    B = {f"{i}{j}" for i, j in np.asarray(b).reshape(-1, 2).tolist()}
    return 0.0 if not A | B else 1.0 - len(A & B) / len(A | B)


def _pair_code_transposed(a, b):
    A = set((np.asarray(a).reshape(-1, 2) @ [1, 20_000]).tolist())
    B = set((np.asarray(b).reshape(-1, 2) @ [1, 20_000]).tolist())
    return 0.0 if not A | B else 1.0 - len(A & B) / len(A | B)


@pytest.mark.parametrize(
    "wrong",
    [
        _sources_only,
        _over_new,
        _over_prev,
        _jaccard_not_change,
        _rowwise,
        _lists_with_duplicates,
        _flattened,
        _empty_is_one,
        _pair_code(10),
        _pair_code(1000),
        _pair_code(20_000),
        _pair_code_transposed,
        _concatenated_digits,
    ],
    ids=[
        "sources-only",
        "over-new",
        "over-prev",
        "jaccard",
        "row-wise",
        "duplicates",
        "flattened",
        "empty-is-one",
        "pair-code-10",
        "pair-code-1000",
        "pair-code-20000",
        "pair-code-transposed",
        "concatenated-digits",
    ],
)
def test_ex3_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex3_dictionary_change_tests", dictionary_change=wrong)


def _divides_by_zero_when_empty(a, b):
    A, B = _sets(a, b)
    return 1.0 - len(A & B) / len(A | B)


@pytest.mark.parametrize("wrong", [_empty_is_one, _divides_by_zero_when_empty])
def test_ex3_empty_case_is_caught_by_the_visible_checks(wrong):

    with pytest.raises((AssertionError, ZeroDivisionError)):
        run_visible_checks(NB, "ex3_dictionary_change_tests", dictionary_change=wrong)


def test_ex3_stub_gets_friendly_message():
    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex3_dictionary_change_tests", dictionary_change=_stub)


# --- the package: seed, induction, self-learning, Wasserstein-Procrustes -----------------


def test_identical_strings_seed():
    src = procrustes.WordSpace("en", ["the", "paris", "2010", "dog"], np.eye(4, dtype=np.float32))
    tgt = procrustes.WordSpace("fr", ["le", "2010", "paris", "chien"], np.eye(4, dtype=np.float32))
    np.testing.assert_array_equal(
        unsupervised_alignment.identical_strings_seed(src, tgt), [[1, 2], [2, 1]]
    )
    np.testing.assert_array_equal(
        unsupervised_alignment.identical_strings_seed(src, tgt, max_rank=2), np.empty((0, 2))
    )


def test_induce_dictionary_and_self_learning_from_a_small_seed():
    X, Y, W_true = rotated_pair(n=1500, d=16, noise=0.15, seed=11)
    X, Y = procrustes.normalize(X), procrustes.normalize(Y)
    ind = unsupervised_alignment.induce_dictionary(X @ W_true, Y, max_rank=1000)
    assert ind.shape[1] == 2 and (ind[:, 0] == ind[:, 1]).mean() > 0.95
    assert ind[:, 0].max() < 1000
    seed = np.stack([np.arange(40), np.arange(40)], axis=1)
    cfg = unsupervised_alignment.SelfLearningConfig(
        n_iter=6, max_rank=1500, keep_seed=False, progress=False
    )
    seen: list[float] = []

    def p_at_1(W: np.ndarray, W_tgt: np.ndarray | None) -> float:
        pred = retrieval.translate_words(X @ W, Y, queries=np.arange(1000, 1500), progress=False)[
            :, 0
        ]
        seen.append(float((pred == np.arange(1000, 1500)).mean()))
        return seen[-1]

    res = unsupervised_alignment.self_learning(X, Y, seed, cfg, evaluate=p_at_1)
    assert 1 <= len(res.history) <= 6 and res.history[0].n_pairs == 40
    assert res.history[-1].n_induced > 1000
    assert [h.metric for h in res.history] == seen and seen[-1] > 0.95
    assert res.converged or len(res.history) == 6
    assert procrustes.isometry_error(res.W) < 1e-4 and res.W_tgt is None
    with pytest.raises(ValueError, match="empty"):
        unsupervised_alignment.self_learning(X, Y, np.empty((0, 2)), cfg)


def test_wasserstein_procrustes_refines_a_perturbed_map():
    pytest.importorskip("ot")
    X, Y, W_true = rotated_pair(n=600, d=8, noise=0.02, seed=13)
    X, Y = procrustes.normalize(X, center=False), procrustes.normalize(Y, center=False)
    W0 = procrustes.procrustes(X[:15], Y[:15] + 0.2 * np.random.default_rng(0).normal(size=(15, 8)))
    W = unsupervised_alignment.wasserstein_procrustes(X, Y, W0, n_iter=5, n_words=600, reg=0.05)
    assert procrustes.isometry_error(W) < 1e-4
    assert np.linalg.norm(W - W_true) < np.linalg.norm(W0 - W_true)


# --- the lesson's claims, on a synthetic problem with a known answer ----------------------


def _rotated_pair(n: int = 1_500, d: int = 20, noise: float = 0.08, seed: int = 0):
    """Source vectors, their rotated and noisy copies in shuffled order, and the answer."""
    rng = np.random.default_rng(seed)
    X = procrustes.normalize(rng.normal(size=(n, d)), center=False)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    perm = rng.permutation(n)  # target row perm[i] translates source row i
    Y = np.empty_like(X)
    Y[perm] = X @ Q + noise * rng.normal(size=(n, d))
    return X, procrustes.normalize(Y, center=False), perm


def _accuracy(X, Y, W, perm):
    pred = retrieval.translate_words(X @ W, Y, method="csls", k=10, progress=False)[:, 0]
    return float(np.mean(pred == perm))


def _config(**kw):
    return unsupervised_alignment.SelfLearningConfig(
        n_iter=8, max_rank=None, keep_seed=False, tol=0.05, progress=False, **kw
    )


def test_small_correct_seed_grows_into_the_mapping():
    X, Y, perm = _rotated_pair()
    rng = np.random.default_rng(1)
    src = rng.choice(len(X), 30, replace=False)  # 30 pairs in 20 dimensions
    seed = np.stack([src, perm[src]], axis=1)
    W_seed = procrustes.procrustes(X[seed[:, 0]], Y[seed[:, 1]])
    res = unsupervised_alignment.self_learning(X, Y, seed, _config())
    assert _accuracy(X, Y, res.W, perm) > 0.9
    assert _accuracy(X, Y, res.W, perm) >= _accuracy(X, Y, W_seed, perm)
    assert res.converged and res.history[-1].changed < 0.05


def test_random_seed_fails_and_the_loop_can_tell():
    X, Y, perm = _rotated_pair()
    rng = np.random.default_rng(2)
    good = rng.choice(len(X), 30, replace=False)
    ok = unsupervised_alignment.self_learning(X, Y, np.stack([good, perm[good]], axis=1), _config())
    bad_seed = np.stack([rng.choice(len(X), 300, replace=False)] * 2, axis=1)
    bad_seed[:, 1] = rng.permutation(bad_seed[:, 1])
    bad = unsupervised_alignment.self_learning(X, Y, bad_seed, _config())
    assert _accuracy(X, Y, bad.W, perm) < 0.05
    # The unsupervised signals of the lesson's section 6: a lower objective and a dictionary
    # that keeps changing.
    assert bad.history[-1].objective < ok.history[-1].objective - 0.1
    assert bad.history[-1].changed > ok.history[-1].changed


def test_too_few_pairs_leave_directions_undetermined():
    X, Y, perm = _rotated_pair(noise=0.0)
    src = np.arange(5)  # 5 pairs in 20 dimensions: a 15-dimensional complement is free
    W = procrustes.procrustes(X[src], Y[perm[src]])
    M = X[src].T @ Y[perm[src]]
    assert np.linalg.matrix_rank(M) == 5
    assert _accuracy(X, Y, W, perm) < 0.5
