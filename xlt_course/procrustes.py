"""Lesson 02-procrustes: supervised mapping of one word-embedding space onto another.

Preprocess both spaces (centre, unit length, PCA to one dimension), look the dictionary up
(:func:`pairs_to_indices`), fit the mapping (:func:`procrustes`, :func:`least_squares`,
:func:`whitened_mapping`) and evaluate it by bilingual lexicon induction
(:func:`evaluate_bli`). Retrieval (NN, CSLS) and precision@k are in
:mod:`xlt_course.retrieval`; the end-to-end run (``xlt-course bli``) in :mod:`xlt_course.bli`.

Conventions: row vectors, ``X_src`` has shape (n, d) and ``Y_tgt`` (m, d); a mapping ``W``
is applied as ``X_src @ W``; arrays are float32.

Methods are reimplemented from the papers, not from any released code:

- Orthogonal Procrustes for word translation: Xing et al. (2015), Smith et al. (2017);
  Procrustes refinement and CSLS: Conneau et al. (2018), "Word translation without parallel
  data", ICLR.
- Length normalisation plus centring, and the whitened, re-weighted mapping: Artetxe,
  Labaka, Agirre (2016, 2018).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from xlt_course.arrays import as_matrix
from xlt_course.retrieval import Method, gold_by_query, precision_at_k, translate_words

DimReduce = Literal["pca", "none"]
Normalization = Literal["center_unit", "unit_center_unit", "unit", "none"]
MappingKind = Literal["whitened", "procrustes"]
Dewhiten = Literal["none", "src", "tgt", "both"]


class WordVectors(Protocol):
    """What alignment needs from an embedding object (duck-typed, e.g. ``data.vectors.Embeddings``).

    Attributes:
        words: the vocabulary, row ``i`` of ``vectors`` is ``words[i]``; frequency order.
        vectors: (V, d) float32 matrix.
        word2id: word -> row index.
    """

    words: Sequence[str]
    vectors: np.ndarray
    word2id: Mapping[str, int]


@dataclass
class WordSpace:
    """A vocabulary and its vectors, e.g. after preprocessing; satisfies :class:`WordVectors`.

    Attributes:
        lang: ISO 639-1 code.
        words: the vocabulary (length V).
        vectors: (V, d) float32.
    """

    lang: str
    words: list[str]
    vectors: np.ndarray
    word2id: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.words) != self.vectors.shape[0]:
            raise ValueError(
                f"WordSpace: {len(self.words)} words but vectors has shape {self.vectors.shape}"
            )
        self.word2id = {}
        for i, w in enumerate(self.words):
            self.word2id.setdefault(w, i)


class DroppedPairsWarning(UserWarning):
    """Some dictionary pairs were dropped because a word is missing from a vocabulary."""


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------


def normalize(X: np.ndarray, *, center: bool = True, unit: bool = True) -> np.ndarray:
    """Centre the rows of ``X`` on their mean, then scale each row to unit length.

    Centring removes the common direction all word vectors share, so that cosine reflects
    meaning rather than frequency; unit length makes dot products cosines.

    Args:
        X: (n, d) word vectors.
        center: subtract the column mean (computed on ``X``).
        unit: divide each row by its Euclidean norm.

    Returns:
        (n, d) float32, a new array.

    Raises:
        ValueError: ``X`` is not 2-D, contains NaN/inf, or has rows of norm zero (before or
            after centring), naming how many.

    Used in: lessons 02-procrustes and 03-unsupervised-alignment.
    """
    A = as_matrix(X, "X").copy()
    if unit:
        zero = int((np.linalg.norm(A, axis=1) == 0).sum())
        if zero:
            raise ValueError(
                f"X has {zero} zero row(s) out of {A.shape[0]}: a zero vector has no "
                "direction; drop those words before normalising"
            )
    if center:
        A -= A.mean(axis=0, dtype=np.float64).astype(np.float32)
    if unit:
        norms = np.linalg.norm(A, axis=1)
        zero = int((norms == 0).sum())
        if zero:
            raise ValueError(
                f"{zero} row(s) of X are zero after centring (they equal the mean vector): "
                "drop them or use center=False"
            )
        A /= norms[:, None]
    return A


def preprocess(
    X: np.ndarray, normalization: Normalization = "center_unit", *, n_ref: int | None = None
) -> np.ndarray:
    """Apply a named normalisation recipe to word vectors.

    Args:
        X: (n, d) word vectors, frequency order.
        normalization: ``"center_unit"`` (centre, then unit length: the usual recipe),
            ``"unit_center_unit"`` (Artetxe et al. 2018: unit, centre, unit again, so that
            frequent long vectors do not dominate the mean), ``"unit"`` or ``"none"``.
        n_ref: take the mean from the first ``n_ref`` rows only (the frequent words) and
            subtract it from every row; None: all rows.

    Returns:
        (n, d) float32, a new array.

    Used in: lesson 02-procrustes.
    """
    if normalization not in ("center_unit", "unit_center_unit", "unit", "none"):
        raise ValueError(
            "normalization must be one of 'center_unit', 'unit_center_unit', 'unit', 'none'; "
            f"got {normalization!r}"
        )
    A = as_matrix(X, "X")
    if normalization == "none":
        return A.copy()
    if normalization == "unit_center_unit":
        A = normalize(A, center=False)
    if normalization == "unit":
        return normalize(A, center=False)
    if n_ref is None or n_ref >= A.shape[0]:
        return normalize(A)
    if n_ref < 1:
        raise ValueError(f"n_ref must be >= 1, got {n_ref}")
    centred = A - A[:n_ref].mean(axis=0, dtype=np.float64).astype(np.float32)
    return normalize(centred, center=False)


def reduce_dim(X: np.ndarray, dim: int, *, n_ref: int | None = None) -> np.ndarray:
    """Project ``X`` on its ``dim`` leading principal components (after centring).

    With ``dim == d`` nothing is lost by projecting, so ``X`` is returned unchanged (a copy).

    Args:
        X: (n, d) vectors.
        dim: target dimension, 1 <= dim <= d.
        n_ref: estimate the mean and the components on the first ``n_ref`` rows only.

    Returns:
        (n, dim) float32 coordinates on the principal axes.

    Used in: lesson 02-procrustes (GloVe EN is 50d, fastText FR 300d).
    """
    A = as_matrix(X, "X")
    if not 1 <= dim <= A.shape[1]:
        raise ValueError(f"dim must be in [1, {A.shape[1]}] for X of shape {A.shape}, got {dim}")
    if dim == A.shape[1]:
        # All components would only centre and rotate X, which the pipeline does itself
        # (centring, then an orthogonal map): keep the original coordinates.
        return A.copy()
    ref = A[:n_ref].astype(np.float64)
    mean = ref.mean(axis=0)
    # Eigen-decomposition of the d x d covariance: cheaper than an SVD of the n x d matrix.
    evals, evecs = np.linalg.eigh((ref - mean).T @ (ref - mean))
    axes = evecs[:, np.argsort(evals)[::-1][:dim]]
    return ((A.astype(np.float64) - mean) @ axes).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Mappings
# --------------------------------------------------------------------------------------------


def _check_pair_shapes(X_src: Any, Y_tgt: Any, *, same_dim: bool) -> tuple[np.ndarray, np.ndarray]:
    X = as_matrix(X_src, "X_src")
    Y = as_matrix(Y_tgt, "Y_tgt")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"X_src {X.shape} and Y_tgt {Y.shape} must have the same number of rows "
            "(row i of each is one dictionary pair)"
        )
    if X.shape[0] < 1:
        raise ValueError(f"need at least 1 dictionary pair, got X_src {X.shape}, Y_tgt {Y.shape}")
    if same_dim and X.shape[1] != Y.shape[1]:
        raise ValueError(
            f"X_src {X.shape} and Y_tgt {Y.shape} have different dimensions: an orthogonal "
            "map needs equal d; reduce the larger space first (e.g. reduce_dim(Y, "
            f"{min(X.shape[1], Y.shape[1])}))"
        )
    return X, Y


def procrustes(X_src: np.ndarray, Y_tgt: np.ndarray) -> np.ndarray:
    """Solve orthogonal Procrustes: the rotation W minimising ||X_src @ W - Y_tgt||_F.

    With U Σ Vᵀ = svd(X_srcᵀ Y_tgt), the solution is W = U Vᵀ (Schönemann 1966).

    Args:
        X_src: (p, d) source vectors of the p dictionary pairs.
        Y_tgt: (p, d) target vectors, row i translates row i of ``X_src``.

    Returns:
        W: (d, d) float32 orthogonal matrix.

    Raises:
        ValueError: row counts differ, dimensions differ, no rows, or NaN.

    Used in: lesson 02-procrustes, exercise 1; lesson 03-unsupervised-alignment.
    """
    X, Y = _check_pair_shapes(X_src, Y_tgt, same_dim=True)
    M = X.astype(np.float64).T @ Y.astype(np.float64)
    U, _, Vt = np.linalg.svd(M)
    return (U @ Vt).astype(np.float32)


def least_squares(X_src: np.ndarray, Y_tgt: np.ndarray) -> np.ndarray:
    """Fit an unconstrained linear map W minimising ||X_src @ W - Y_tgt||_F (Mikolov 2013).

    Args:
        X_src: (p, d_src) source vectors of the dictionary pairs.
        Y_tgt: (p, d_tgt) target vectors.

    Returns:
        W: (d_src, d_tgt) float32; not orthogonal in general (see :func:`isometry_error`).

    Used in: lesson 02-procrustes (least squares vs Procrustes).
    """
    X, Y = _check_pair_shapes(X_src, Y_tgt, same_dim=False)
    W, *_ = np.linalg.lstsq(X.astype(np.float64), Y.astype(np.float64), rcond=None)
    return W.astype(np.float32)


def isometry_error(W: np.ndarray) -> float:
    """Return ||WᵀW - I||_F: zero exactly when W is orthogonal (preserves cosines).

    Args:
        W: (d, d') mapping.

    Returns:
        The Frobenius norm as a float.

    Used in: lesson 02-procrustes.
    """
    A = np.asarray(W, dtype=np.float64)
    if A.ndim != 2:
        raise ValueError(f"W must be 2-D, got shape {A.shape}")
    return float(np.linalg.norm(A.T @ A - np.eye(A.shape[1])))


def _sqrt_and_inv_sqrt(C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return C^(1/2) and C^(-1/2) of a symmetric PSD matrix (tiny eigenvalues floored)."""
    evals, evecs = np.linalg.eigh(C)
    evals = np.maximum(evals, 1e-8 * max(float(evals.max()), 1e-30))
    return (evecs * np.sqrt(evals)) @ evecs.T, (evecs / np.sqrt(evals)) @ evecs.T


def whitened_mapping(
    X_src: np.ndarray,
    Y_tgt: np.ndarray,
    *,
    reweight: float = 1.0,
    dewhiten: Dewhiten = "none",
) -> tuple[np.ndarray, np.ndarray]:
    """Map both spaces into a shared space: whiten, rotate, re-weight (Artetxe et al. 2018).

    The multi-step framework of Artetxe, Labaka, Agirre (AAAI 2018), reimplemented from the
    paper: (1) whiten each side with its covariance on the dictionary rows,
    C_x^(-1/2) = (X_srcᵀ X_src)^(-1/2); (2) rotate both whitened sides with
    U Σ Vᵀ = svd((X_src C_x^(-1/2))ᵀ (Y_tgt C_y^(-1/2))); (3) re-weight each of the r = min(d_src,
    d_tgt) shared components by σ^reweight, so that directions on which the languages agree
    weigh more; (4) optionally de-whiten. Steps 1-2 alone are CCA; it handles d_src != d_tgt
    without PCA because the shared space keeps the r best-correlated directions.

    Args:
        X_src: (p, d_src) source vectors of the dictionary pairs (preprocessed).
        Y_tgt: (p, d_tgt) target vectors, row i translates row i; p >= max(d_src, d_tgt)
            for a well-conditioned whitening.
        reweight: exponent of the singular values applied to both sides (0: plain CCA).
        dewhiten: ``"none"``, ``"src"``, ``"tgt"`` or ``"both"``: multiply by the side's
            own covariance square root expressed in the shared basis.

    Returns:
        W_src: (d_src, r) float32 and W_tgt: (d_tgt, r) float32; compare ``X @ W_src`` with
        ``Y @ W_tgt``.

    Used in: lesson 02-procrustes (beyond Procrustes).
    """
    X, Y = _check_pair_shapes(X_src, Y_tgt, same_dim=False)
    if dewhiten not in ("none", "src", "tgt", "both"):
        raise ValueError(f"dewhiten must be 'none', 'src', 'tgt' or 'both', got {dewhiten!r}")
    Xd, Yd = X.astype(np.float64), Y.astype(np.float64)
    Sx, Wx = _sqrt_and_inv_sqrt(Xd.T @ Xd)
    Sy, Wy = _sqrt_and_inv_sqrt(Yd.T @ Yd)
    U, sigma, Vt = np.linalg.svd((Xd @ Wx).T @ (Yd @ Wy), full_matrices=False)
    V = Vt.T
    scale = sigma**reweight
    M_src = (Wx @ U) * scale
    M_tgt = (Wy @ V) * scale
    if dewhiten in ("src", "both"):
        M_src = M_src @ (U.T @ Sx @ U)
    if dewhiten in ("tgt", "both"):
        M_tgt = M_tgt @ (V.T @ Sy @ V)
    return M_src.astype(np.float32), M_tgt.astype(np.float32)


def fit_mapping(
    X_src: np.ndarray, Y_tgt: np.ndarray, mapping: MappingKind, reweight: float = 1.0
) -> tuple[np.ndarray, np.ndarray | None]:
    """Fit the mapping named by ``mapping`` on dictionary pairs.

    Args:
        X_src: (p, d_src) source vectors of the pairs.
        Y_tgt: (p, d_tgt) target vectors, row i translates row i.
        mapping: ``"procrustes"`` (one orthogonal W, d_src == d_tgt) or ``"whitened"``
            (both sides mapped, :func:`whitened_mapping`).
        reweight: singular-value exponent for ``"whitened"``.

    Returns:
        W: (d_src, r) and W_tgt: (d_tgt, r), or None for Procrustes (targets stay as they are).

    Used in: lessons 02-procrustes and 03-unsupervised-alignment (through ``bli`` and
    ``self_learning``).
    """
    if mapping == "procrustes":
        return procrustes(X_src, Y_tgt), None
    if mapping == "whitened":
        return whitened_mapping(X_src, Y_tgt, reweight=reweight)
    raise ValueError(f"mapping must be 'procrustes' or 'whitened', got {mapping!r}")


# --------------------------------------------------------------------------------------------
# Dictionaries
# --------------------------------------------------------------------------------------------


def pairs_to_indices(
    pairs: Iterable[tuple[str, str]], src_emb: WordVectors, tgt_emb: WordVectors
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Look dictionary word pairs up in two vocabularies, dropping (with a warning) the misses.

    Args:
        pairs: (source word, target word) pairs.
        src_emb, tgt_emb: objects with ``word2id`` (see :class:`WordVectors`).

    Returns:
        ids: (p, 2) int64, row = (source row, target row).
        kept: the p word pairs that were found, in input order.

    Raises:
        ValueError: no pair has both words in the vocabularies.

    Warns:
        DroppedPairsWarning: naming how many pairs were dropped and why.
    """
    s2i, t2i = src_emb.word2id, tgt_emb.word2id
    ids: list[tuple[int, int]] = []
    kept: list[tuple[str, str]] = []
    total = miss_src = miss_tgt = 0
    for s, t in pairs:
        total += 1
        i, j = s2i.get(s), t2i.get(t)
        miss_src += i is None
        miss_tgt += j is None
        if i is not None and j is not None:
            ids.append((i, j))
            kept.append((s, t))
    dropped = total - len(kept)
    if not kept:
        raise ValueError(
            f"none of the {total} dictionary pairs has both words in the vocabularies "
            f"({miss_src} source and {miss_tgt} target words missing): check the languages "
            "and that the words are lowercased like the embeddings"
        )
    if dropped:
        warnings.warn(
            f"dropped {dropped} of {total} dictionary pairs: {miss_src} with the source word "
            f"missing from the source vocabulary, {miss_tgt} with the target word missing "
            "from the target vocabulary",
            DroppedPairsWarning,
            stacklevel=2,
        )
    return np.asarray(ids, dtype=np.int64).reshape(-1, 2), kept


def pairs_to_matrices(
    pairs: Iterable[tuple[str, str]], src_emb: WordVectors, tgt_emb: WordVectors
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Stack the vectors of dictionary pairs into aligned matrices for fitting a map.

    Args:
        pairs: (source word, target word) pairs.
        src_emb, tgt_emb: embeddings with ``words``, ``vectors``, ``word2id``.

    Returns:
        X_src: (p, d_src) float32, row i is the source word of pair i.
        Y_tgt: (p, d_tgt) float32, row i is its translation.
        kept: the p pairs found in both vocabularies.

    Raises:
        ValueError: no pair is left.

    Warns:
        DroppedPairsWarning: with the count of pairs dropped because a word is missing.

    Used in: lessons 02-procrustes and 03-unsupervised-alignment.
    """
    ids, kept = pairs_to_indices(pairs, src_emb, tgt_emb)
    X = np.asarray(src_emb.vectors, dtype=np.float32)[ids[:, 0]]
    Y = np.asarray(tgt_emb.vectors, dtype=np.float32)[ids[:, 1]]
    return X, Y, kept


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def evaluate_bli(
    src_emb: WordVectors,
    tgt_emb: WordVectors,
    W: np.ndarray,
    test_pairs: Iterable[tuple[str, str]],
    *,
    method: Method = "csls",
    k: int = 10,
    ks: Sequence[int] = (1, 5),
    W_tgt: np.ndarray | None = None,
    progress: bool = False,
) -> dict[int, float]:
    """Translate each test source word with ``src_emb.vectors @ W`` and score P@k.

    All source rows are mapped (CSLS's r_S uses every one); only the test words are
    queried; a word with several gold translations counts once.

    Args:
        src_emb, tgt_emb: preprocessed embeddings (``words``, ``vectors``, ``word2id``).
        W: (d_src, d_tgt) mapping.
        test_pairs: (source word, target word) gold pairs.
        method: ``"nn"`` or ``"csls"``.
        k: CSLS neighbourhood.
        ks: cut-offs to report.
        W_tgt: (d_tgt, r) map of the target side when both sides are mapped (see
            :func:`whitened_mapping`); None: targets are used as they are.
        progress: show a bar during retrieval.

    Returns:
        {cut-off: precision}, e.g. ``{1: 0.36, 5: 0.55}``.

    Warns:
        DroppedPairsWarning: test pairs with a word outside the vocabularies.

    Used in: lesson 02-procrustes.
    """
    ids, _ = pairs_to_indices(test_pairs, src_emb, tgt_emb)
    queries, gold = gold_by_query(ids)
    Xm = as_matrix(src_emb.vectors, "src_emb.vectors") @ np.asarray(W, dtype=np.float32)
    Yt = as_matrix(tgt_emb.vectors, "tgt_emb.vectors")
    if W_tgt is not None:
        Yt = Yt @ np.asarray(W_tgt, dtype=np.float32)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive cut-offs, got {ks!r}")
    pred = translate_words(
        Xm,
        Yt,
        method=method,
        k=k,
        topn=max(ks),
        queries=queries,
        progress=progress,
    )
    return {int(c): precision_at_k(pred, gold, c) for c in ks}


# --------------------------------------------------------------------------------------------
# Preparing two spaces
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BLIConfig:
    """How :func:`xlt_course.bli.run_bli` and :func:`prepare_spaces` build the spaces and the mapping.

    The defaults are lesson 02's plain recipe (top 20k words, centre +
    normalise, PCA of the larger space to the smaller dimension, Procrustes);
    :meth:`recommended` is the course's best recipe, chosen on a dev split carved out of the
    train dictionary (never on the test split), and what :func:`xlt_course.bli.run_bli` uses by default.

    Attributes:
        src_vocab: retrieval vocabulary of the source side: its most frequent words (None:
            all). Centring and PCA statistics come from these words.
        tgt_vocab: the same for the target side.
        fit_vocab: train pairs are looked up among this many most frequent words of each
            side (rarer words add pairs and share the statistics above); None: the
            retrieval vocabularies.
        normalization: recipe applied to both spaces (see :func:`preprocess`).
        mapping: ``"procrustes"`` (one orthogonal W) or ``"whitened"`` (both sides mapped,
            :func:`whitened_mapping`).
        dim_reduce: ``"pca"`` reduces the larger space to the smaller dimension (then
            renormalises) when dimensions differ; ``"none"`` keeps them (``"whitened"``
            handles unequal dimensions itself).
        reweight: singular-value exponent for ``"whitened"``.
        refine_iters: self-learning iterations after the supervised fit (0: none): the
            train dictionary plus mutual CSLS pairs among the ``refine_max_rank`` most
            frequent words.
        refine_max_rank: see ``refine_iters``.
        k: CSLS neighbourhood for evaluation and refinement.
    """

    src_vocab: int | None = 20_000
    tgt_vocab: int | None = 20_000
    fit_vocab: int | None = None
    normalization: Normalization = "center_unit"
    mapping: MappingKind = "procrustes"
    dim_reduce: DimReduce = "pca"
    reweight: float = 1.0
    refine_iters: int = 0
    refine_max_rank: int = 10_000
    k: int = 10

    @classmethod
    def baseline(cls) -> BLIConfig:
        """Return the plain recipe (the defaults): PCA then Procrustes on top 20k."""
        return cls()

    @classmethod
    def recommended(cls) -> BLIConfig:
        """Return the best recipe found: train pairs from the top 200k, whitened mapping.

        Chosen on a 1,000-word dev split of the EN-FR train dictionary, both directions:
        fitting on the train pairs of the 200k most frequent words instead of 20k, and the
        whitened, singular-value re-weighted mapping (Artetxe et al. 2018) instead of PCA +
        Procrustes (PCA keeps FR's high-variance directions, not the ones shared with EN).
        """
        return cls(fit_vocab=200_000, mapping="whitened", dim_reduce="none", reweight=1.0)


def _head(n: int | None, total: int) -> int:
    return total if n is None else min(n, total)


def prepare_spaces(
    src_emb: WordVectors, tgt_emb: WordVectors, config: BLIConfig, *, src: str, tgt: str
) -> tuple[WordSpace, WordSpace]:
    """Truncate, normalise and (with ``dim_reduce="pca"``) PCA-reduce two embedding spaces.

    Args:
        src_emb, tgt_emb: raw embeddings (``words``, ``vectors``), frequency order.
        config: see :class:`BLIConfig`.
        src, tgt: language codes recorded on the spaces.

    Returns:
        Two :class:`WordSpace` objects holding each side's ``max(vocab, fit_vocab)`` most
        frequent words; statistics come from the first ``src_vocab`` / ``tgt_vocab`` rows.

    Raises:
        ValueError: Procrustes with unequal dimensions and ``dim_reduce="none"``.

    Used in: lesson 01-shared-space, lesson 02-procrustes.
    """
    spaces: list[list[Any]] = []
    for lang, emb, vocab in ((src, src_emb, config.src_vocab), (tgt, tgt_emb, config.tgt_vocab)):
        total = len(emb.words)
        n_ref = _head(vocab, total)
        n_keep = n_ref if config.fit_vocab is None else max(n_ref, _head(config.fit_vocab, total))
        V = as_matrix(np.asarray(emb.vectors)[:n_keep], f"{lang} vectors")
        vectors = preprocess(V, config.normalization, n_ref=n_ref)
        spaces.append([lang, list(emb.words)[:n_keep], vectors, n_ref])
    d_src, d_tgt = spaces[0][2].shape[1], spaces[1][2].shape[1]
    if d_src != d_tgt:
        if config.dim_reduce == "pca":
            d = min(d_src, d_tgt)
            for sp in spaces:
                if sp[2].shape[1] > d:
                    sp[2] = normalize(reduce_dim(sp[2], d, n_ref=sp[3]), center=False)
        elif config.mapping == "procrustes":
            raise ValueError(
                f"{src} vectors are {d_src}d and {tgt} vectors {d_tgt}d: Procrustes needs one "
                "dimension; use dim_reduce='pca' or mapping='whitened'"
            )
    return WordSpace(*spaces[0][:3]), WordSpace(*spaces[1][:3])
