"""Lesson 01-shared-space: the package module, and the exercises' tests catch mistakes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cells import run_test_cell, solution_namespace
from conftest import run_visible_checks, solution

from xlt_course import procrustes, shared_space

NB = solution("01-shared-space")
RNG = np.random.default_rng(123)


def _rotation(d: int, seed: int = 0) -> np.ndarray:
    Q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return Q


# --- babel concepts ------------------------------------------------------------------------


def test_babel_concepts_are_aligned_and_real():
    c = shared_space.babel_concepts(["en", "fr", "ru", "zh", "ja"])
    assert len(c) == 12 + 7 + len(shared_space.TERRITORIES) + len(shared_space.LANGUAGE_CODES)
    assert all(len(w) == len(c) for w in c.words.values())
    i = c.ids.index("month:January")
    assert (c.words["en"][i], c.words["fr"][i], c.words["ru"][i]) == (
        "January",
        "janvier",
        "январь",
    )
    j = c.ids.index("country:DE")
    assert (c.words["fr"][j], c.words["zh"][j]) == ("Allemagne", "德国")
    months = c.select(["month"])
    assert len(months) == 12 and set(months.categories) == {"month"}


def test_babel_concepts_survive_babel_alias_leak():
    """babel leaks one locale's stand-alone month names into others (python-babel#1234)."""
    from babel.dates import get_month_names

    get_month_names("wide", context="stand-alone", locale="zh")  # poison babel's cache
    c = shared_space.babel_concepts(["it", "pt", "fr"], categories=["month"])
    assert c.words["it"][0] == "gennaio"
    assert c.words["pt"][0] == "janeiro"
    assert c.words["fr"][0] == "janvier"


@pytest.mark.parametrize(
    ("langs", "cats"), [([], ["month"]), (["en"], []), (["en"], ["colour"]), (["xx-nope"], ["day"])]
)
def test_babel_concepts_bad_input(langs, cats):
    with pytest.raises(ValueError):
        shared_space.babel_concepts(langs, cats)


# --- distances, ratio, retrieval -----------------------------------------------------------


def test_pair_distances_match_a_loop():
    A, B = RNG.normal(size=(7, 4)), RNG.normal(size=(7, 4))

    def cosd(a, b):
        return 1 - a @ b / np.linalg.norm(a) / np.linalg.norm(b)

    trans = np.mean([cosd(A[i], B[i]) for i in range(7)])
    rand = np.mean([cosd(A[i], B[j]) for i in range(7) for j in range(7) if i != j])
    got = shared_space.pair_distances(A, B)
    assert np.allclose(got, (trans, rand))
    assert np.isclose(shared_space.distance_ratio(A, B), trans / rand)


def test_distance_ratio_properties():
    A = RNG.normal(size=(20, 8))
    assert shared_space.distance_ratio(A, A) == pytest.approx(0.0, abs=1e-12)
    # invariant to a common rotation and to row lengths
    B = A + 0.3 * RNG.normal(size=A.shape)
    Q = _rotation(8)
    r = shared_space.distance_ratio(A, B)
    assert shared_space.distance_ratio(A @ Q, (B @ Q) * 7.0) == pytest.approx(r)
    assert 0 < r < 1
    # independent vectors: about 1
    assert (
        0.8
        < shared_space.distance_ratio(RNG.normal(size=(300, 8)), RNG.normal(size=(300, 8)))
        < 1.2
    )


@pytest.mark.parametrize(
    ("A", "B"),
    [
        (np.ones((3, 2)), np.ones((4, 2))),
        (np.ones((1, 2)), np.ones((1, 2))),
        (np.array([[1.0, 0.0], [0.0, 0.0]]), np.ones((2, 2))),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), np.ones((2, 2))),
    ],
    ids=["shapes", "one-pair", "zero-row", "nan"],
)
def test_distance_ratio_bad_input(A, B):
    with pytest.raises(ValueError):
        shared_space.distance_ratio(A, B)


def test_distance_ratio_matrix_is_symmetric():
    V = {lang: RNG.normal(size=(10, 5)) for lang in ("en", "fr", "de")}
    R = shared_space.distance_ratio_matrix(V, ["en", "fr", "de"])
    assert R.shape == (3, 3) and np.isnan(np.diag(R)).all()
    assert np.allclose(R, R.T, equal_nan=True)
    assert R[0, 2] == pytest.approx(shared_space.distance_ratio(V["en"], V["de"]))


def _naive_p_at_k(Q, C, k):
    hits = 0
    for i, q in enumerate(Q):
        cos = [q @ c / np.linalg.norm(q) / np.linalg.norm(c) for c in C]
        hits += i in sorted(range(len(C)), key=lambda j: -cos[j])[:k]
    return hits / len(Q)


def test_retrieval_precision_with_a_hub():
    Q = RNG.normal(size=(30, 8))
    C = Q + 0.9 * RNG.normal(size=Q.shape)
    C[0] = 3 * Q.mean(axis=0)  # a hub: near many queries
    for k in (1, 3):
        assert shared_space.retrieval_precision(Q, C, k=k) == pytest.approx(_naive_p_at_k(Q, C, k))
    # the two directions differ: the hub steals queries only in the Q -> C direction
    assert shared_space.retrieval_precision(Q, C) != shared_space.retrieval_precision(C, Q)
    assert shared_space.retrieval_precision(Q, Q * 5) == 1.0
    assert shared_space.retrieval_precision(Q, C, k=30) == 1.0
    with pytest.raises(ValueError):
        shared_space.retrieval_precision(Q, C[:3])


def test_neighbour_agreement():
    X = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=float)
    assert shared_space.neighbour_agreement(X, ["a", "a", "b", "b"]) == 1.0
    assert shared_space.neighbour_agreement(X, ["a", "b", "a", "b"]) == 0.0
    with pytest.raises(ValueError):
        shared_space.neighbour_agreement(X, ["a"])


def test_center_by_language():
    V = {"en": RNG.normal(size=(6, 3)) + 5, "fr": RNG.normal(size=(4, 3)) - 2}
    out = shared_space.center_by_language(V)
    for lang, X in out.items():
        assert X.shape == V[lang].shape and X.dtype == np.float32
        assert np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
    # the mean is removed before normalising: the direction of (x - mean)
    d = V["en"][0] - V["en"].mean(0)
    assert np.allclose(out["en"][0], d / np.linalg.norm(d), atol=1e-5)


# --- PCA -----------------------------------------------------------------------------------


def test_pca_matches_covariance_eigenvectors_and_sklearn():
    X = RNG.normal(size=(80, 6)) * np.array([4, 3, 2, 1, 0.5, 0.1]) + 10
    P = shared_space.pca(X, 3)
    assert P.coords.shape == (80, 3) and P.axes.shape == (3, 6)
    assert np.allclose(P.axes @ P.axes.T, np.eye(3), atol=1e-10)
    evals = np.linalg.eigvalsh(np.cov(X.T, bias=True))[::-1]
    assert np.allclose(P.coords.var(axis=0), evals[:3])
    assert np.allclose(P.explained, evals[:3] / evals.sum())
    from sklearn.decomposition import PCA

    ref = PCA(3).fit_transform(X)
    for j in range(3):
        assert np.allclose(np.abs(P.coords[:, j]), np.abs(ref[:, j]), atol=1e-8)
    # the reduction in procrustes agrees up to signs
    red = procrustes.reduce_dim(X.astype(np.float32), 3)
    for j in range(3):
        assert np.allclose(np.abs(P.coords[:, j]), np.abs(red[:, j]), atol=1e-3)


def test_pca_rotates_also_at_full_dimension_and_is_deterministic():
    X = RNG.normal(size=(30, 4)) @ _rotation(4, 1) * 3
    P = shared_space.pca(X, 4)
    assert np.allclose(P.coords @ P.axes + P.mean, X)  # a rotation, nothing lost
    assert not np.allclose(P.coords, X - X.mean(0))
    again = shared_space.pca(X[::-1].copy(), 4)
    assert np.allclose(again.axes, P.axes)  # sign convention does not depend on row order
    for dim in (0, 5):
        with pytest.raises(ValueError):
            shared_space.pca(X, dim)


# --- structure correlation and unaligned retrieval -----------------------------------------


def test_structure_correlation():
    X = RNG.normal(size=(60, 10))
    Y = np.hstack([X @ _rotation(10, 2), RNG.normal(size=(60, 3)) * 0.01])  # rotated, 13d
    assert shared_space.structure_correlation(X, Y) > 0.99
    assert shared_space.structure_correlation(X, Y, method="spearman") > 0.99
    assert abs(shared_space.structure_correlation(X, Y[RNG.permutation(60)])) < 0.15
    with pytest.raises(ValueError):
        shared_space.structure_correlation(X, Y[:10])
    with pytest.raises(ValueError):
        shared_space.structure_correlation(X, Y, method="kendall")  # type: ignore[arg-type]


def _spaces(n: int = 300, d: int = 12):
    words = [f"w{i}" for i in range(n)]
    X = procrustes.normalize(RNG.normal(size=(n, d)))
    src = procrustes.WordSpace("en", words, X)
    return src, words, X


def test_unaligned_bli_identity_rotation_and_recovery():
    src, words, X = _spaces()
    Q = _rotation(X.shape[1], 3).astype(np.float32)
    tgt = procrustes.WordSpace("fr", [f"f{i}" for i in range(len(words))], X @ Q)
    test = [(f"w{i}", f"f{i}") for i in range(0, 300, 3)]
    assert shared_space.unaligned_bli(src, tgt, test)[1] < 0.05  # rotated: no mapping fails
    assert shared_space.unaligned_bli(src, tgt, test, W=Q)[1] == 1.0  # the right map recovers
    same = procrustes.WordSpace("fr", [f"f{i}" for i in range(len(words))], X)
    assert shared_space.unaligned_bli(src, same, test, ks=(1, 5)) == {1: 1.0, 5: 1.0}
    with pytest.raises(ValueError):
        shared_space.unaligned_bli(src, procrustes.WordSpace("fr", ["a"], np.ones((1, 3))), test)


def test_unaligned_bli_on_the_real_vectors(built_data):
    """The lesson's claim: no mapping gives (about) zero P@1 on the EN-FR test split."""
    from xlt_course.data.dictionary import load_dictionary
    from xlt_course.data.vectors import load_vectors

    cfg = procrustes.BLIConfig(src_vocab=20_000)
    S, T = procrustes.prepare_spaces(load_vectors("en", max_words=20_000), load_vectors("fr"), cfg,
                                src="en", tgt="fr")  # fmt: skip
    test = load_dictionary("en", "fr", split="test")
    assert shared_space.unaligned_bli(S, T, test)[1] < 0.005
    with pytest.warns(procrustes.DroppedPairsWarning):
        X, Y, _ = procrustes.pairs_to_matrices(load_dictionary("en", "fr", split="train"), S, T)
    assert shared_space.unaligned_bli(S, T, test, W=procrustes.procrustes(X, Y))[1] > 0.1


# --- the embedding cache -------------------------------------------------------------------


@pytest.fixture
def fake_encoder(monkeypatch):
    """Replace the encoder by a deterministic function of the text, counting what it embeds."""
    calls: list[list[str]] = []

    def fake(texts, name="offline", *, prefix="", pooling="mean", normalize=True, batch_size=32):
        calls.append(list(texts))
        out = np.array(
            [[len(prefix + t), sum(map(ord, prefix + t)) % 97 + 1, 1.0] for t in texts],
            dtype=np.float32,
        )
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    import xlt_course.training

    monkeypatch.setattr(xlt_course.training, "embed_sentences", fake)
    return calls


def test_embed_cached_reuses_vectors(tmp_path, fake_encoder):
    a = shared_space.embed_cached(["un", "deux", "un"], cache_dir=tmp_path)
    assert a.shape == (3, 3) and np.array_equal(a[0], a[2])
    assert fake_encoder == [["un", "deux"]]  # duplicates embedded once
    b = shared_space.embed_cached(["deux", "trois\nlignes", "un"], cache_dir=tmp_path)
    assert fake_encoder[-1] == ["trois\nlignes"]  # only the new text
    assert np.array_equal(b[0], a[1]) and np.array_equal(b[2], a[0])
    shared_space.embed_cached(["un"], cache_dir=tmp_path, prefix="query: ")
    assert fake_encoder[-1] == ["un"]  # another prefix is another cache
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert shared_space.embed_cached([], cache_dir=tmp_path).shape == (0, 3)
    with pytest.raises(ValueError):
        shared_space.embed_cached("un", cache_dir=tmp_path)  # type: ignore[arg-type]


def test_embed_cached_rebuilds_a_corrupt_cache(tmp_path, fake_encoder):
    shared_space.embed_cached(["a", "b"], cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(b"not a zip file")
    out = shared_space.embed_cached(["a"], cache_dir=tmp_path)
    assert out.shape == (1, 3) and fake_encoder[-1] == ["a"]
    with np.load(path) as z:
        assert json.loads(z["texts"].tobytes().decode()) == ["a"]


# --- plotting ------------------------------------------------------------------------------


def test_plot_concepts_draws_one_point_per_row():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["janvier", "январь", "一月", "w"]
    ax = shared_space.plot_concepts(
        RNG.normal(size=(4, 2)), ["c:a", "c:a", "c:b", "c:b"], ["fr", "ru", "zh", "en"],
        labels=labels, title="t",
    )  # fmt: skip
    drawable = [t for t in labels if shared_space._renderable(t)]
    assert {"janvier", "январь", "w"} <= set(drawable)  # DejaVu Sans has Latin and Cyrillic
    assert len(ax.collections) == 4 and ax.get_title() == "t"
    assert [t.get_text() for t in ax.texts] == drawable  # labels without glyphs are left out
    plt.close("all")
    with pytest.raises(ValueError):
        shared_space.plot_concepts(np.zeros((3, 3)), ["a"] * 3, ["en"] * 3)


# --- exercise 1: distance_ratio ------------------------------------------------------------


def _ratio_reference():
    return solution_namespace(NB, "ex1_distance_ratio")["distance_ratio"]


def test_ex1_reference_passes():
    run_test_cell(NB, "ex1_distance_ratio_tests", distance_ratio=_ratio_reference())


def _ratio_from_masks(A, B):
    from scipy.spatial.distance import cdist

    D = cdist(A, B, metric="cosine")
    off = ~np.eye(len(A), dtype=bool)
    return D[~off].mean() / D[off].mean()


def _ratio_torch(A, B):
    import torch

    a = torch.nn.functional.normalize(torch.as_tensor(A, dtype=torch.float64), dim=1)
    b = torch.nn.functional.normalize(torch.as_tensor(B, dtype=torch.float64), dim=1)
    D = 1 - a @ b.T
    n = D.shape[0]
    return (D.diagonal().mean() / ((D.sum() - D.diagonal().sum()) / (n * n - n))).item()


@pytest.mark.parametrize(
    "variant",
    [_ratio_from_masks, _ratio_torch, lambda A, B: shared_space.distance_ratio(A, B)],
    ids=["scipy-cdist", "torch", "package"],
)
def test_ex1_correct_variants_pass(variant):
    run_test_cell(NB, "ex1_distance_ratio_tests", distance_ratio=variant)


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _with_diagonal(A, B):
    D = 1 - _unit(A) @ _unit(B).T
    return np.trace(D) / len(D) / D.mean()  # the random mean includes the translations


def _euclidean(A, B):
    D = np.linalg.norm(A[:, None] - B[None], axis=-1)
    n = len(D)
    return np.trace(D) / n / ((D.sum() - np.trace(D)) / (n * (n - 1)))


def _euclidean_unit(A, B):
    return _euclidean(_unit(A), _unit(B))


def _similarity_ratio(A, B):
    S = _unit(A) @ _unit(B).T
    n = len(S)
    return np.trace(S) / n / ((S.sum() - np.trace(S)) / (n * (n - 1)))


def _inverted(A, B):
    return 1.0 / _ratio_reference()(A, B)


def _within_language(A, B):
    D = 1 - _unit(A) @ _unit(A).T  # random pairs taken inside language 1
    n = len(D)
    trans = np.mean(1 - np.sum(_unit(A) * _unit(B), axis=1))
    return trans / ((D.sum() - np.trace(D)) / (n * (n - 1)))


def _in_place(A, B):
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    B /= np.linalg.norm(B, axis=1, keepdims=True)
    return _ratio_reference()(A, B)


@pytest.mark.parametrize(
    "wrong",
    [
        _with_diagonal,
        _euclidean,
        _euclidean_unit,
        _similarity_ratio,
        _inverted,
        _within_language,
        _in_place,
        lambda A, B: _ratio_reference()(A, A),  # ignores B
    ],
    ids=[
        "diag-in-random",
        "euclidean",
        "euclidean-unit",
        "similarity",
        "inverted",
        "within",
        "in-place",
        "ignores-B",
    ],  # fmt: skip
)
def test_ex1_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex1_distance_ratio_tests", distance_ratio=wrong)


def test_ex1_stub_gets_friendly_message():
    def stub(A, B):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex1_distance_ratio_tests", distance_ratio=stub)


# --- exercise 2: pca_2d --------------------------------------------------------------------


def test_ex2_reference_passes():
    run_test_cell(NB, "ex2_pca_2d_tests", pca_2d=solution_namespace(NB, "ex2_pca_2d")["pca_2d"])


def _pca_sklearn(X):
    from sklearn.decomposition import PCA

    return PCA(n_components=2).fit_transform(X)


def _pca_eigh(X):
    Xc = X - X.mean(0)
    evals, evecs = np.linalg.eigh(Xc.T @ Xc)
    return Xc @ evecs[:, ::-1][:, :2]


def _pca_u_sigma(X):
    U, s, _ = np.linalg.svd(X - X.mean(0), full_matrices=False)
    return U[:, :2] * s[:2]


def _pca_torch_float32(X):
    import torch

    t = torch.as_tensor(X, dtype=torch.float32)
    t = t - t.mean(0)
    _, _, Vh = torch.linalg.svd(t, full_matrices=False)
    return t @ Vh[:2].T


def _pca_torch(X):
    import torch

    t = torch.as_tensor(X, dtype=torch.float64)
    t = t - t.mean(0)
    _, _, Vh = torch.linalg.svd(t, full_matrices=False)
    return t @ Vh[:2].T


@pytest.mark.parametrize(
    "variant",
    [_pca_sklearn, _pca_eigh, _pca_u_sigma, _pca_torch, _pca_torch_float32,
     lambda X: -shared_space.pca(X, 2).coords],
    ids=["sklearn", "eigh", "U-sigma", "torch", "torch-float32", "package-flipped"],
)  # fmt: skip
def test_ex2_correct_variants_pass(variant):
    run_test_cell(NB, "ex2_pca_2d_tests", pca_2d=variant)


def _no_centring(X):
    _, _, Vt = np.linalg.svd(X, full_matrices=False)
    return X @ Vt[:2].T


def _centre_after_svd(X):
    _, _, Vt = np.linalg.svd(X, full_matrices=False)  # axes of the uncentred data
    return (X - X.mean(0)) @ Vt[:2].T


def _centre_rows(X):
    Xc = X - X.mean(axis=1, keepdims=True)
    _, _, Vt = np.linalg.svd(Xc, full_matrices=False)
    return Xc @ Vt[:2].T


def _columns_of_vt(X):
    Xc = X - X.mean(0)
    _, _, Vt = np.linalg.svd(Xc, full_matrices=False)
    return Xc @ Vt[:, :2]


def _u_unscaled(X):
    U, _, _ = np.linalg.svd(X - X.mean(0), full_matrices=False)
    return U[:, :2]


def _smallest_axes(X):
    Xc = X - X.mean(0)
    _, _, Vt = np.linalg.svd(Xc, full_matrices=False)
    return Xc @ Vt[-2:][::-1].T


def _axes_swapped(X):
    return _pca_u_sigma(X)[:, ::-1]


def _in_place_centring(X):
    X -= X.mean(0)
    _, _, Vt = np.linalg.svd(X, full_matrices=False)
    return X @ Vt[:2].T


def _eig_unsorted(X):
    Xc = X - X.mean(0)
    _, evecs = np.linalg.eig(Xc.T @ Xc)  # general eig: its eigenvalues come in no set order
    return Xc @ evecs[:, :2].real


def _standardised(X):
    Xs = (X - X.mean(0)) / X.std(0)  # PCA of the correlation matrix: a different projection
    _, _, Vt = np.linalg.svd(Xs, full_matrices=False)
    return Xs @ Vt[:2].T


@pytest.mark.parametrize(
    "wrong",
    [
        _no_centring,
        _centre_after_svd,
        _centre_rows,
        _columns_of_vt,
        _u_unscaled,
        _smallest_axes,
        _axes_swapped,
        _in_place_centring,
        _standardised,
        _eig_unsorted,
    ],
    ids=[
        "no-centring",
        "centre-after-svd",
        "centre-rows",
        "Vt-columns",
        "U-unscaled",
        "smallest",
        "swapped",
        "in-place",
        "standardised",
        "eig-unsorted",
    ],  # fmt: skip
)
def test_ex2_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex2_pca_2d_tests", pca_2d=wrong)


def test_ex2_centring_after_the_svd_gets_the_centring_hint():

    # The axes of the uncentred data then fail the variance-order check too; the hint must say
    # what is wrong (where the data is centred), not send the student to the axis order.
    with pytest.raises(AssertionError, match="centre before the SVD"):
        run_visible_checks(NB, "ex2_pca_2d_tests", pca_2d=_centre_after_svd)


@pytest.mark.parametrize("wrong", [_u_unscaled, _standardised], ids=["U-unscaled", "standardised"])
def test_ex2_variance_hint_mentions_units(wrong):

    with pytest.raises(AssertionError, match="data's units"):
        run_visible_checks(NB, "ex2_pca_2d_tests", pca_2d=wrong)


def test_ex2_stub_gets_friendly_message():
    def stub(X):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex2_pca_2d_tests", pca_2d=stub)


# --- exercise 3: retrieval_p_at_1 ----------------------------------------------------------


def _p1_reference():
    return solution_namespace(NB, "ex3_retrieval")["retrieval_p_at_1"]


def test_ex3_reference_passes():
    run_test_cell(NB, "ex3_retrieval_tests", retrieval_p_at_1=_p1_reference())


def _p1_sklearn(Q, C):
    from sklearn.metrics.pairwise import cosine_similarity

    return float((cosine_similarity(Q, C).argmax(1) == np.arange(len(Q))).mean())


def _p1_torch(Q, C):
    import torch

    S = torch.nn.functional.cosine_similarity(
        torch.as_tensor(Q)[:, None, :], torch.as_tensor(C)[None, :, :], dim=-1
    )
    return (S.argmax(dim=1) == torch.arange(len(Q))).double().mean()


def _p1_package(Q, C):
    return shared_space.retrieval_precision(Q, C)


@pytest.mark.parametrize(
    "variant", [_p1_sklearn, _p1_torch, _p1_package], ids=["sklearn", "torch", "package"]
)
def test_ex3_correct_variants_pass(variant):
    run_test_cell(NB, "ex3_retrieval_tests", retrieval_p_at_1=variant)


def _p1_axis0(Q, C):
    S = _unit(Q) @ _unit(C).T
    return float((S.argmax(axis=0) == np.arange(len(Q))).mean())


def _p1_dot(Q, C):
    return float(((Q @ C.T).argmax(axis=1) == np.arange(len(Q))).mean())


def _p1_only_queries_normalised(Q, C):
    return float(((_unit(Q) @ C.T).argmax(axis=1) == np.arange(len(Q))).mean())


def _p1_count(Q, C):
    return float(((_unit(Q) @ _unit(C).T).argmax(axis=1) == np.arange(len(Q))).sum())


def _p1_argmin(Q, C):
    S = _unit(Q) @ _unit(C).T
    return float((S.argmin(axis=1) == np.arange(len(Q))).mean())


def _p1_euclidean(Q, C):
    D = np.linalg.norm(Q[:, None] - C[None], axis=-1)
    return float((D.argmin(axis=1) == np.arange(len(Q))).mean())


def _p1_top5(Q, C):
    S = _unit(Q) @ _unit(C).T
    top = np.argsort(-S, axis=1)[:, :5]
    return float((top == np.arange(len(Q))[:, None]).any(axis=1).mean())


@pytest.mark.parametrize(
    "wrong",
    [_p1_axis0, _p1_dot, _p1_only_queries_normalised, _p1_count, _p1_argmin, _p1_euclidean,
     _p1_top5],
    ids=["axis0", "dot", "only-Q-unit", "count", "argmin", "euclidean", "top5"],
)  # fmt: skip
def test_ex3_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex3_retrieval_tests", retrieval_p_at_1=wrong)


def test_ex3_stub_gets_friendly_message():
    def stub(Q, C):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex3_retrieval_tests", retrieval_p_at_1=stub)


def test_embed_parallel_splits_one_call(tmp_path, fake_encoder):
    out = shared_space.embed_parallel(
        {"en": ["one", "two"], "fr": ["un"], "de": []}, cache_dir=tmp_path
    )
    assert [k for k in out] == ["en", "fr", "de"]
    assert out["en"].shape == (2, 3) and out["fr"].shape == (1, 3) and out["de"].shape == (0, 3)
    assert fake_encoder == [["one", "two", "un"]]  # a single encoder call
    assert np.array_equal(out["fr"][0], shared_space.embed_cached(["un"], cache_dir=tmp_path)[0])
