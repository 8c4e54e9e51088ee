"""Bilingual word-embedding alignment: Procrustes, CSLS retrieval, BLI evaluation, self-learning.

The one implementation the course uses for mapping a source embedding space onto a target
space and for reading translations off the mapped space (lessons 01-03, tests, the
``xlt-course bli`` command and ``benchmarks/bench_bli.py``).

Conventions: row vectors, ``X_src`` has shape (n, d) and ``Y_tgt`` (m, d); a mapping ``W``
is applied as ``X_src @ W``; ``k`` is the CSLS neighbourhood size; arrays are float32.

Methods are reimplemented from the papers, not from any released code:

- Orthogonal Procrustes for word translation: Xing et al. (2015), Smith et al. (2017).
- CSLS retrieval and Procrustes refinement: Conneau, Lample, Ranzato, Denoyer, Jégou (2018),
  "Word translation without parallel data", ICLR.
- Self-learning from a small seed and length normalisation plus centring: Artetxe, Labaka,
  Agirre (2017, 2018).
- Wasserstein-Procrustes: Grave, Joulin, Berthet (2019), "Unsupervised alignment of
  embeddings with Wasserstein Procrustes", AISTATS.

Retrieval never materialises the full (n, m) similarity matrix: it streams over blocks of
target rows, so memory is bounded by one (n, block) float32 block (see :func:`translate`).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Protocol

import numpy as np

Method = Literal["nn", "csls"]
DimReduce = Literal["pca", "none"]
Normalization = Literal["center_unit", "unit_center_unit", "unit", "none"]
MappingKind = Literal["whitened", "procrustes"]
Dewhiten = Literal["none", "src", "tgt", "both"]

#: Upper bound on the bytes of one block of similarity scores that retrieval holds at once.
BLOCK_BYTES = 256 * 2**20
#: Blocks of scores are sized to stay in the last-level cache when possible...
_CACHE_BYTES = 24 * 2**20
#: ...but keep at least this many columns, below which matrix products lose efficiency.
_MIN_BLOCK = 256
#: A slab of scores that one thread computes and reduces should fit in a core's L2 cache.
_L2_BYTES = 2**20
#: Rows of a block processed at once when subtracting r_S / 2 and taking the argmax.
_ROW_CHUNK = 1024
#: Below this many scores (n * m), retrieval runs its numpy passes in one thread.
_PARALLEL_MIN_SCORES = 20_000_000
#: Below this many scores (n * m), retrieval shows no progress bar.
_PROGRESS_MIN_SCORES = 200_000_000


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
# Validation helpers
# --------------------------------------------------------------------------------------------


def _as_matrix(X: Any, name: str) -> np.ndarray:
    """Return ``X`` as a 2-D float32 array, raising ValueError on bad shape or NaN/inf."""
    A = np.asarray(X)
    if A.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows are vectors), got shape {A.shape}")
    if A.dtype != np.float32:
        A = A.astype(np.float32)
    if not np.isfinite(A).all():
        bad = int((~np.isfinite(A)).any(axis=1).sum())
        raise ValueError(
            f"{name} has {bad} row(s) containing NaN or inf (shape {A.shape}): clean or drop them"
        )
    return A


def _check_k(k: int, n_rows: int, what: str) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > n_rows:
        raise ValueError(f"k={k} is larger than the number of {what} ({n_rows}): use k <= {n_rows}")


def _unit_rows(A: np.ndarray, name: str) -> np.ndarray:
    """Return a unit-length copy of the rows of ``A`` (float32); zero rows are an error."""
    norms = np.linalg.norm(A, axis=1)
    zero = int((norms == 0).sum())
    if zero:
        raise ValueError(
            f"{name} has {zero} zero row(s) (shape {A.shape}): their cosine is undefined; "
            "drop them before aligning"
        )
    if np.abs(norms - 1.0).max(initial=0.0) < 1e-5:
        return A
    return (A / norms[:, None]).astype(np.float32, copy=False)


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
    A = _as_matrix(X, "X").copy()
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
    A = _as_matrix(X, "X")
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
    A = _as_matrix(X, "X")
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
    X = _as_matrix(X_src, "X_src")
    Y = _as_matrix(Y_tgt, "Y_tgt")
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


def identical_strings_seed(
    src_emb: WordVectors, tgt_emb: WordVectors, max_rank: int | None = 20_000
) -> np.ndarray:
    """Build a seed dictionary from words spelt identically in both vocabularies.

    Numerals, names and loanwords are shared between English and French, which gives a
    free, noisy seed for self-learning (Artetxe et al. 2017, Smith et al. 2017).

    Args:
        src_emb, tgt_emb: embeddings with ``words`` in frequency order.
        max_rank: only the ``max_rank`` most frequent words of each side are considered
            (None: all).

    Returns:
        (p, 2) int64 pairs of (source row, target row).

    Used in: lesson 03-unsupervised-alignment, exercise 1.
    """
    src_words = list(src_emb.words)[:max_rank]
    tgt_ids: dict[str, int] = {}
    for j, w in enumerate(list(tgt_emb.words)[:max_rank]):
        tgt_ids.setdefault(w, j)
    pairs = [(i, tgt_ids[w]) for i, w in enumerate(src_words) if w in tgt_ids]
    seen: set[str] = set()
    unique = []
    for (i, j), w in zip(pairs, (src_words[i] for i, _ in pairs), strict=True):
        if w not in seen:
            seen.add(w)
            unique.append((i, j))
    return np.asarray(unique, dtype=np.int64).reshape(-1, 2)


# --------------------------------------------------------------------------------------------
# Streaming top-k retrieval
# --------------------------------------------------------------------------------------------


def _n_threads() -> int:
    """Return the CPU cores this process may use (at most 8)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def _block_rows(n_rows_scored: int, chunk_size: int) -> int:
    """Columns per streamed block of an (n_rows_scored, block) float32 score matrix.

    At most ``chunk_size`` and ``BLOCK_BYTES``; otherwise small enough for the block to stay
    in the last-level cache (the top-k gathers then hit cache), but at least
    ``_MIN_BLOCK`` columns so that each matrix product stays efficient.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    rows = max(1, n_rows_scored)
    cap = max(1, BLOCK_BYTES // (4 * rows))
    preferred = max(_MIN_BLOCK, _CACHE_BYTES // (4 * rows))
    return int(max(1, min(chunk_size, cap, preferred)))


def _groups(n: int, k: int) -> tuple[int, int] | None:
    """Return (g, G): n rows split into G strided groups of g, or None when n is small."""
    g = int(np.clip(math.isqrt(max(1, n // k)), 8, 256))
    G = n // g
    return None if G < 4 * k or n < 2048 else (g, G)


def _group_max(S: np.ndarray, G: int) -> np.ndarray:
    """Return (G, c) maxima of the strided row groups {b, b + G, ...} of S (G divides len(S))."""
    # A reduction over the leading axis, which numpy vectorises across contiguous slabs.
    return S.reshape(-1, G, S.shape[1]).max(axis=0)


def _topk_mean_axis0(S: np.ndarray, k: int, M: np.ndarray | None = None) -> np.ndarray:
    """Return the mean of the k largest values of each column of ``S``.

    Exact, without a full partition: the rows are split into G strided groups; only the k
    groups with the largest maxima can hold a top-k value (any element outside them is <=
    the k-th largest group maximum, and those k groups hold k elements at least that large),
    so a partition runs on k * g candidates per column.

    Args:
        S: (n, c) float32 scores (a view with unit column stride).
        k: 1 <= k <= n.
        M: the (G, c) maxima of the strided groups of the first g * G rows, g = n // G, if
            already computed (G >= k).

    Returns:
        (c,) float32 means.
    """
    n, c = S.shape
    if M is not None:
        G = M.shape[0]
        g = n // G
    else:
        shape = _groups(n, k)
        if shape is None:
            top = np.partition(S, n - k, axis=0)[n - k :]
            return top.mean(axis=0, dtype=np.float64).astype(np.float32)
        g, G = shape
        M = _group_max(S[: G * g], G)
    main = G * g
    top_groups = np.argpartition(np.ascontiguousarray(M.T), G - k, axis=1)[:, G - k :]
    cand = (top_groups[:, :, None] + G * np.arange(g)[None, None, :]).reshape(c, k * g)
    if main < n:
        cand = np.concatenate([cand, np.broadcast_to(np.arange(main, n), (c, n - main))], axis=1)
    if S.strides[1] != S.itemsize:
        S = np.ascontiguousarray(S)
    # A flat gather over the rows of S (a view into a wider buffer has a longer row stride).
    row_stride = S.strides[0] // S.itemsize
    flat_view = np.lib.stride_tricks.as_strided(
        S, shape=((n - 1) * row_stride + c,), strides=(S.itemsize,), writeable=False
    )
    vals = np.take(flat_view, cand * row_stride + np.arange(c)[:, None])
    L = vals.shape[1]
    top = np.partition(vals, L - k, axis=1)[:, L - k :]
    return top.mean(axis=1, dtype=np.float64).astype(np.float32)


class _RowTopT:
    """Running top-t (value, column) per row over column blocks streamed left to right.

    Ties go to the smaller column index, as ``np.argsort(-scores, kind="stable")`` would.
    """

    def __init__(self, n_rows: int, t: int) -> None:
        self.t = t
        self.vals = np.full((n_rows, t), -np.inf, dtype=np.float32)
        self.idx = np.full((n_rows, t), -1, dtype=np.int64)
        self.started = False

    def update_top1_rows(self, C: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> None:
        """Merge (t = 1) scores ``C`` (len(rows), c) of the given rows; ``cols`` are their ids.

        ``cols`` ascends, so argmax's first maximum is the lowest index; an equal score from
        another block replaces the current best only for a lower index.
        """
        am = C.argmax(axis=1)
        mv = C[np.arange(C.shape[0]), am]
        ids = cols[am]
        cur, cur_ids = self.vals[rows, 0], self.idx[rows, 0]
        better = (mv > cur) | ((mv == cur) & (ids < cur_ids))
        self.vals[rows[better], 0] = mv[better]
        self.idx[rows[better], 0] = ids[better]

    def update(self, C: np.ndarray, offset: int) -> None:
        """Merge block ``C`` (n_rows, c) whose column 0 is global column ``offset``."""
        n, c = C.shape
        if self.t == 1:
            am = C.argmax(axis=1)
            mv = C[np.arange(n), am]
            better = mv > self.vals[:, 0]
            self.vals[better, 0] = mv[better]
            self.idx[better, 0] = am[better] + offset
            return
        if not self.started:
            self.started = True
            if c >= self.t:
                # First block: exact top-t directly (a threshold of -inf would select all).
                pos = np.argpartition(-C, self.t - 1, axis=1)[:, : self.t]
                self.vals = np.take_along_axis(C, pos, axis=1).astype(np.float32)
                self.idx = pos.astype(np.int64) + offset
                return
        thresh = self.vals.min(axis=1)
        flat = np.flatnonzero(C > thresh[:, None])
        if flat.size == 0:
            return
        r, col = np.divmod(flat, c)
        v = C.ravel()[flat]
        rows_u = np.unique(r)
        t = self.t
        all_r = np.concatenate([np.repeat(rows_u, t), r])
        all_v = np.concatenate([self.vals[rows_u].ravel(), v])
        all_i = np.concatenate([self.idx[rows_u].ravel(), col.astype(np.int64) + offset])
        order = np.lexsort((all_i, -all_v, all_r))
        sr = all_r[order]
        start = np.searchsorted(sr, rows_u)
        rank = np.arange(sr.size) - np.repeat(start, np.diff(np.append(start, sr.size)))
        keep = rank < t
        self.vals[sr[keep], rank[keep]] = all_v[order][keep]
        self.idx[sr[keep], rank[keep]] = all_i[order][keep]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (values, indices), each (n_rows, t), sorted by decreasing value."""
        order = np.lexsort((self.idx, -self.vals), axis=1) if self.t > 1 else None
        if order is None:
            return self.vals, self.idx
        return np.take_along_axis(self.vals, order, axis=1), np.take_along_axis(
            self.idx, order, axis=1
        )


def _progress(iterable: Iterable[Any], total: int, desc: str, enabled: bool) -> Iterable[Any]:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="block", leave=False)


def knn_mean_similarity(
    Q: np.ndarray, K: np.ndarray, k: int, *, chunk_size: int = 4096, progress: bool = False
) -> np.ndarray:
    """Mean cosine of each row of ``Q`` to its ``k`` nearest rows of ``K``.

    This is CSLS's hubness penalty: r_T(x) = knn_mean_similarity(X_src @ W, Y_tgt, k) and
    r_S(y) = knn_mean_similarity(Y_tgt, X_src @ W, k).

    Args:
        Q: (n, d) query vectors (normalised to unit length internally).
        K: (m, d) vectors to search, m >= k.
        k: neighbourhood size.
        chunk_size: queries scored per block (capped so a block stays under ``BLOCK_BYTES``).
        progress: show a tqdm bar over blocks.

    Returns:
        (n,) float32.

    Used in: lesson 02-procrustes, exercise 2 (CSLS).
    """
    Qa = _unit_rows(_as_matrix(Q, "Q"), "Q")
    Ka = _unit_rows(_as_matrix(K, "K"), "K")
    if Qa.shape[1] != Ka.shape[1]:
        raise ValueError(f"Q {Qa.shape} and K {Ka.shape} must have the same dimension")
    _check_k(k, Ka.shape[0], "rows of K")
    n, m = Qa.shape[0], Ka.shape[0]
    out = np.empty(n, dtype=np.float32)
    step = _block_rows(m, chunk_size)
    starts = range(0, n, step)
    for s in _progress(starts, len(starts), "kNN similarity", progress):
        S = Ka @ Qa[s : s + step].T
        out[s : s + step] = _topk_mean_axis0(S, k)
    return out


def _slab_rows(n: int, c: int, k: int) -> int | None:
    """Rows per slab of an (n, c) block: one slab of scores fits in a core's L2 cache.

    Returns G, the number of strided row groups of :func:`_topk_mean_axis0` (a slab is one
    row of every group), or None when n is too small for slabs to pay.
    """
    G = int(np.clip(_L2_BYTES // (4 * c), 8 * k, 65_536))
    if n < 2048 or n // G < 2:
        return None
    # Rebalance so that the n - g * G leftover rows (candidates of every column) are < g.
    return n // (n // G)


def _blas_single_thread() -> Any:
    """Return a context manager limiting BLAS to one thread, or None without threadpoolctl.

    Our own threads each run a product on their slab; a multi-threaded BLAS under them
    would oversubscribe the cores.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return None
    return ThreadpoolController().limit(limits=1, user_api="blas")


def _retrieve(
    X: np.ndarray,
    Y: np.ndarray,
    *,
    method: Method,
    k: int,
    topn: int,
    queries: np.ndarray | None,
    chunk_size: int,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Stream over target blocks; return (indices, scores, r_S) with scores = cos or cos - r_S/2.

    One pass computes everything for CSLS: the block S = X @ Y_blockᵀ covers all mapped
    sources, so r_S of the block's targets is exact at once and the block's CSLS scores can be
    merged into each query's running top-n. The query's own penalty r_T(x) is a constant
    for its row, so it does not change the ranking and is not needed here.

    The block is computed in slabs of rows that fit in a core's L2 cache, one thread per
    core, each reducing its slab while it is hot: row maxima, and the group maxima that make
    r_S cheap (:func:`_topk_mean_axis0`). For top-1 a row can only improve on its running
    best b if max_j S_ij - min_j r_S(j) / 2 >= b, so only the rows passing this bound are
    read again (a third of them on the EN-FR data, fewer as the blocks go by).
    """
    m = Y.shape[0]
    Xq = X if queries is None else X[queries]
    nq = Xq.shape[0]
    best = _RowTopT(nq, topn)
    rS = np.empty(m, dtype=np.float32) if method == "csls" else None
    A = X if rS is not None else Xq
    n_rows = A.shape[0]
    step = _block_rows(n_rows, chunk_size)
    # One preallocated block: a fresh 100+ MB array per block would cost page faults.
    buf = np.empty((n_rows, min(step, m)), dtype=np.float32)
    row_max = np.empty(n_rows, dtype=np.float32)
    starts = range(0, m, step)
    show = progress and n_rows * m >= _PROGRESS_MIN_SCORES
    G = _slab_rows(n_rows, buf.shape[1], k) if rS is not None else None
    workers = _n_threads() if n_rows * m >= _PARALLEL_MIN_SCORES and G is not None else 1
    # Created just before the loop: the limit applies from creation until __exit__ below.
    limit = _blas_single_thread() if workers > 1 else None
    if limit is None:
        workers = 1
    pool = ThreadPoolExecutor(workers) if workers > 1 else None

    def run(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        # numpy and BLAS release the GIL, so the threads run on all cores.
        return [fn(i) for i in items] if pool is None else list(pool.map(fn, items))

    slabs: list[list[tuple[int, int]]] = []
    if G is not None:
        g = n_rows // G
        bounds = [(a * G, (a + 1) * G) for a in range(g)]
        if g * G < n_rows:
            bounds.append((g * G, n_rows))
        slabs = [bounds[i::workers] for i in range(workers)]

    def product(my_slabs: list[tuple[int, int]], S: np.ndarray, YbT: np.ndarray) -> Any:
        M = None
        for r0, r1 in my_slabs:
            part = S[r0:r1]
            np.matmul(A[r0:r1], YbT, out=part)
            part.max(axis=1, out=row_max[r0:r1])
            if r1 - r0 == G:
                M = part.copy() if M is None else np.maximum(M, part, out=M)
        return M

    def top1_rows(rows: np.ndarray, S: np.ndarray, half: np.ndarray, cols: np.ndarray) -> None:
        # rows: positions among the queries.
        src_rows = rows if queries is None else queries[rows]
        best.update_top1_rows(S[src_rows] - half, cols, rows)

    try:
        for s in _progress(starts, len(starts), f"{method.upper()} retrieval", show):
            YbT = np.ascontiguousarray(Y[s : s + step].T)
            w = YbT.shape[1]
            cols = np.arange(s, s + w)
            S = buf[:, :w]
            if rS is None:
                np.matmul(A, YbT, out=S)
                if topn == 1:
                    for r0 in range(0, nq, _ROW_CHUNK):
                        rows = np.arange(r0, min(r0 + _ROW_CHUNK, nq))
                        best.update_top1_rows(S[rows], cols, rows)
                else:
                    best.update(S, s)
                continue
            M = None
            if G is None:
                np.matmul(A, YbT, out=S)
                S.max(axis=1, out=row_max)
            else:
                for P in run(partial(product, S=S, YbT=YbT), slabs):
                    if P is not None:
                        M = P if M is None else np.maximum(M, P, out=M)
            col_parts = [p for p in np.array_split(np.arange(w), workers) if p.size]

            def topk_part(
                c: np.ndarray, S: np.ndarray = S, M: np.ndarray | None = M, cols: np.ndarray = cols
            ) -> None:
                a, b = int(c[0]), int(c[-1]) + 1
                rS[cols[a:b]] = _topk_mean_axis0(S[:, a:b], k, None if M is None else M[:, a:b])

            run(topk_part, col_parts)
            half = 0.5 * rS[cols]
            if topn == 1:
                bound = row_max if queries is None else row_max[queries]
                need = np.flatnonzero(bound - half.min() >= best.vals[:, 0])
                chunks = [need[i : i + _ROW_CHUNK] for i in range(0, need.size, _ROW_CHUNK)]
                run(partial(top1_rows, S=S, half=half, cols=cols), chunks)
            else:
                C = S if queries is None else S[queries]
                C -= half
                best.update(C, s)
    finally:
        if pool is not None:
            pool.shutdown()
        if limit is not None:
            limit.__exit__(None, None, None)
    vals, idx = best.result()
    return idx, vals, rS


def _check_retrieval_args(
    X_src_mapped: np.ndarray,
    Y_tgt: np.ndarray,
    method: str,
    k: int,
    topn: int,
    queries: np.ndarray | Sequence[int] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    X = _unit_rows(_as_matrix(X_src_mapped, "X_src_mapped"), "X_src_mapped")
    Y = _unit_rows(_as_matrix(Y_tgt, "Y_tgt"), "Y_tgt")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(
            f"X_src_mapped {X.shape} and Y_tgt {Y.shape} must have the same dimension "
            "(apply the mapping W first)"
        )
    if method not in ("nn", "csls"):
        raise ValueError(f"method must be 'nn' or 'csls', got {method!r}")
    n, m = X.shape[0], Y.shape[0]
    if not isinstance(topn, (int, np.integer)) or not 1 <= topn <= m:
        raise ValueError(f"topn must be in [1, {m}] (the number of targets), got {topn!r}")
    q: np.ndarray | None = None
    if queries is not None:
        q = np.asarray(queries, dtype=np.int64).reshape(-1)
        if q.size and (q.min() < 0 or q.max() >= n):
            raise ValueError(f"queries must index rows of X_src_mapped (0..{n - 1})")
    if method == "csls":
        _check_k(k, m, "target rows (Y_tgt)")
        _check_k(k, n, "source rows (X_src_mapped)")
    return X, Y, q


def translate(
    X_src_mapped: np.ndarray,
    Y_tgt: np.ndarray,
    *,
    method: Method = "csls",
    k: int = 10,
    topn: int = 1,
    queries: np.ndarray | Sequence[int] | None = None,
    chunk_size: int = 4096,
    progress: bool = True,
) -> np.ndarray:
    """Return the ``topn`` best target rows for each query by NN (cosine) or CSLS.

    CSLS(x, y) = 2 cos(x, y) - r_T(x) - r_S(y), where r_T(x) is the mean cosine of the mapped
    source x to its k nearest targets and r_S(y) the mean cosine of target y to its k nearest
    mapped sources, over ALL rows of ``X_src_mapped`` (Conneau et al. 2018). It demotes hubs,
    targets that are near everything. r_T(x) is constant along a query's row, so the ranking
    needs only r_S, which one streaming pass computes exactly alongside the ranking.

    Memory stays bounded: target rows are streamed in blocks and the largest array is one
    (n, block) float32 block of at most ``BLOCK_BYTES``; the full (n, m) matrix never exists.

    Args:
        X_src_mapped: (n, d) mapped source vectors, ``X_src @ W`` (unit-normalised here).
        Y_tgt: (m, d) target vectors (unit-normalised here).
        method: ``"nn"`` (cosine) or ``"csls"``.
        k: CSLS neighbourhood, 1 <= k <= min(n, m); unused for ``"nn"``.
        topn: candidates per query, 1 <= topn <= m.
        queries: indices of the rows of ``X_src_mapped`` to translate (default: all). CSLS
            still uses every row for r_S.
        chunk_size: target rows per block (capped by ``BLOCK_BYTES``).
        progress: show a tqdm bar (only for large inputs).

    Returns:
        (n_queries, topn) int64 target row indices, best first; equal float32 scores go to
        the lower index (two identical target vectors may still score an ulp apart).

    Raises:
        ValueError: dimensions differ, NaN or zero rows, k or topn out of range.

    Used in: lesson 02-procrustes, exercise 2; lesson 03-unsupervised-alignment.
    """
    X, Y, q = _check_retrieval_args(X_src_mapped, Y_tgt, method, k, topn, queries)
    idx, _, _ = _retrieve(
        X, Y, method=method, k=k, topn=topn, queries=q, chunk_size=chunk_size, progress=progress
    )
    return idx


def translate_with_scores(
    X_src_mapped: np.ndarray,
    Y_tgt: np.ndarray,
    *,
    method: Method = "csls",
    k: int = 10,
    topn: int = 1,
    queries: np.ndarray | Sequence[int] | None = None,
    chunk_size: int = 4096,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`translate`, also returning the scores (cosine, or the full CSLS value).

    The full CSLS value needs r_T of the queries: one more pass over (n_queries, m).

    Returns:
        indices: (n_queries, topn) int64; scores: (n_queries, topn) float32.
    """
    X, Y, q = _check_retrieval_args(X_src_mapped, Y_tgt, method, k, topn, queries)
    idx, vals, _ = _retrieve(
        X, Y, method=method, k=k, topn=topn, queries=q, chunk_size=chunk_size, progress=progress
    )
    if method == "csls":
        Xq = X if q is None else X[q]
        rT = knn_mean_similarity(Xq, Y, k, chunk_size=chunk_size)
        vals = 2.0 * vals - rT[:, None]
    return idx, vals.astype(np.float32)


def nn_scores(X_src_mapped: np.ndarray, Y_tgt: np.ndarray) -> np.ndarray:
    """Return the full (n, m) cosine matrix; for small examples and teaching only.

    Args:
        X_src_mapped: (n, d) mapped source vectors.
        Y_tgt: (m, d) target vectors.

    Returns:
        (n, m) float32 cosines.

    Used in: lesson 02-procrustes.
    """
    X = _unit_rows(_as_matrix(X_src_mapped, "X_src_mapped"), "X_src_mapped")
    Y = _unit_rows(_as_matrix(Y_tgt, "Y_tgt"), "Y_tgt")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X_src_mapped {X.shape} and Y_tgt {Y.shape} differ in dimension")
    if X.shape[0] * Y.shape[0] * 4 > BLOCK_BYTES:
        raise ValueError(
            f"nn_scores would materialise a {X.shape[0]} x {Y.shape[0]} matrix: use translate()"
        )
    return X @ Y.T


def csls_scores(X_src_mapped: np.ndarray, Y_tgt: np.ndarray, *, k: int = 10) -> np.ndarray:
    """Return the full (n, m) CSLS matrix 2 cos(x, y) - r_T(x) - r_S(y); small inputs only.

    Args:
        X_src_mapped: (n, d) mapped source vectors.
        Y_tgt: (m, d) target vectors.
        k: neighbourhood size.

    Returns:
        (n, m) float32.

    Used in: lesson 02-procrustes, exercise 2.
    """
    cos = nn_scores(X_src_mapped, Y_tgt)
    _check_k(k, cos.shape[1], "target rows (Y_tgt)")
    _check_k(k, cos.shape[0], "source rows (X_src_mapped)")
    rT = knn_mean_similarity(X_src_mapped, Y_tgt, k)
    rS = knn_mean_similarity(Y_tgt, X_src_mapped, k)
    return 2.0 * cos - rT[:, None] - rS[None, :]


def k_occurrence(predictions: np.ndarray, n_targets: int | None = None) -> np.ndarray:
    """Count how often each target appears in the retrieved lists (hubness; Radovanović 2010).

    Args:
        predictions: (n, topn) target indices from :func:`translate`.
        n_targets: length of the result (default: max index + 1).

    Returns:
        (n_targets,) int64 counts; a heavy right tail means hubs.

    Used in: lesson 02-procrustes (hubness).
    """
    P = np.asarray(predictions)
    if P.ndim != 2:
        raise ValueError(f"predictions must be (n, topn), got shape {P.shape}")
    flat = P.ravel().astype(np.int64)
    if flat.size and flat.min() < 0:
        raise ValueError("predictions contain negative indices")
    return np.bincount(flat, minlength=n_targets or 0)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def precision_at_k(
    predictions: np.ndarray,
    gold: Sequence[Collection[int]] | Mapping[int, Collection[int]],
    k: int,
) -> float:
    """Fraction of queries with ANY gold translation among their top ``k`` predictions.

    A query with several gold translations counts once (correct if any one is retrieved).

    Args:
        predictions: (n, topn) target indices, best first, topn >= k.
        gold: either a sequence of n sets (gold target indices of row i), or a mapping
            row -> set for the rows to score (other rows are ignored).
        k: cut-off, 1 <= k <= topn.

    Returns:
        Precision in [0, 1].

    Used in: lesson 02-procrustes, exercise 3.
    """
    P = np.asarray(predictions)
    if P.ndim != 2:
        raise ValueError(f"predictions must be (n, topn), got shape {P.shape}")
    if not 1 <= k <= P.shape[1]:
        raise ValueError(f"k must be in [1, {P.shape[1]}] (predictions has topn={P.shape[1]})")
    if isinstance(gold, Mapping):
        items = list(gold.items())
    else:
        if len(gold) != P.shape[0]:
            raise ValueError(f"gold has {len(gold)} entries but predictions has {P.shape[0]} rows")
        items = list(enumerate(gold))
    if not items:
        raise ValueError("gold is empty: nothing to evaluate")
    hits = 0
    for row, golds in items:
        g = set(int(x) for x in golds)
        if any(int(p) in g for p in P[row, :k]):
            hits += 1
    return hits / len(items)


@dataclass
class BLIResult:
    """Precision of bilingual lexicon induction for one language pair.

    Attributes:
        src, tgt: ISO 639-1 codes.
        precision: method -> {cut-off k: P@k}, e.g. ``{"csls": {1: 0.36, 5: 0.55}}``.
        n_queries: source words evaluated (test words found in both vocabularies).
        n_test_pairs: test pairs before the vocabulary lookup.
        k: CSLS neighbourhood.
        seconds: wall time of the whole pipeline.
        settings: how the spaces were built and mapped (for the record).
    """

    src: str
    tgt: str
    precision: dict[str, dict[int, float]]
    n_queries: int
    n_test_pairs: int
    k: int = 10
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def p(self, method: Method, at: int = 1) -> float:
        """Return P@``at`` for ``method``, raising KeyError with what exists otherwise."""
        try:
            return self.precision[method][at]
        except KeyError as e:
            raise KeyError(f"no P@{at} for {method!r}: this result has {self.precision!r}") from e


def format_bli_line(result: BLIResult) -> str:
    """Return ``P@1 nn=0.xxx csls=0.xxx P@5 csls=0.xxx`` for the CLI.

    Args:
        result: with NN P@1 and CSLS P@1 and P@5.

    Returns:
        One line, three decimals.
    """
    return (
        f"P@1 nn={result.p('nn', 1):.3f} csls={result.p('csls', 1):.3f} "
        f"P@5 csls={result.p('csls', 5):.3f}"
    )


def _gold_by_query(ids: np.ndarray) -> tuple[np.ndarray, list[set[int]]]:
    """Group (src, tgt) index pairs by source: unique sources in first-seen order, gold sets."""
    golds: dict[int, set[int]] = {}
    for i, j in ids.tolist():
        golds.setdefault(i, set()).add(j)
    queries = np.fromiter(golds.keys(), dtype=np.int64, count=len(golds))
    return queries, list(golds.values())


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
    queries, gold = _gold_by_query(ids)
    Xm = _as_matrix(src_emb.vectors, "src_emb.vectors") @ np.asarray(W, dtype=np.float32)
    Yt = _as_matrix(tgt_emb.vectors, "tgt_emb.vectors")
    if W_tgt is not None:
        Yt = Yt @ np.asarray(W_tgt, dtype=np.float32)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive cut-offs, got {ks!r}")
    pred = translate(
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
# Self-learning
# --------------------------------------------------------------------------------------------


def induce_dictionary(
    X_mapped: np.ndarray,
    Y_tgt: np.ndarray,
    *,
    method: Method = "csls",
    mutual: bool = True,
    max_rank: int | None = 15_000,
    k: int = 10,
) -> np.ndarray:
    """Read a dictionary off a mapped space: each frequent source word and its best target.

    Args:
        X_mapped: (n, d) mapped source vectors, rows in frequency order.
        Y_tgt: (m, d) target vectors, rows in frequency order.
        method: retrieval criterion, ``"nn"`` or ``"csls"``.
        mutual: keep only pairs that are each other's best match in both directions
            (precise, fewer pairs); otherwise the source->target best matches.
        max_rank: restrict both sides to their ``max_rank`` most frequent rows (rare words
            have noisy vectors); None for all.
        k: CSLS neighbourhood.

    Returns:
        (p, 2) int64 pairs (source row, target row), sorted by source row.

    Used in: lesson 03-unsupervised-alignment, exercise 2.
    """
    X = _as_matrix(X_mapped, "X_mapped")[:max_rank]
    Y = _as_matrix(Y_tgt, "Y_tgt")[:max_rank]
    kk = min(k, X.shape[0], Y.shape[0])
    fwd = translate(X, Y, method=method, k=kk, topn=1, progress=False)[:, 0]
    src = np.arange(X.shape[0])
    if mutual:
        bwd = translate(Y, X, method=method, k=kk, topn=1, progress=False)[:, 0]
        keep = bwd[fwd] == src
        src, fwd = src[keep], fwd[keep]
    return np.stack([src, fwd], axis=1).astype(np.int64)


@dataclass(frozen=True)
class SelfLearningConfig:
    """Settings of iterative refinement (Artetxe et al. 2017; Conneau et al. 2018).

    Attributes:
        n_iter: maximum number of iterations.
        method: criterion for inducing the dictionary, ``"csls"`` or ``"nn"``.
        k: CSLS neighbourhood.
        max_rank: only the most frequent ``max_rank`` words of each side are matched.
        mutual: keep only mutual best matches.
        keep_seed: fit on the seed pairs plus the induced ones (supervised refinement);
            False fits on the induced pairs alone (unsupervised refinement).
        mapping: ``"procrustes"`` (one orthogonal W, equal dimensions) or ``"whitened"``
            (both sides mapped, see :func:`whitened_mapping`).
        reweight: re-weighting exponent for ``"whitened"``.
        tol: stop when the fraction of dictionary pairs that changed (1 - Jaccard) falls
            below this.
        patience: stop after this many iterations without a better objective.
        progress: show a tqdm bar over iterations.
    """

    n_iter: int = 10
    method: Method = "csls"
    k: int = 10
    max_rank: int | None = 15_000
    mutual: bool = True
    keep_seed: bool = True
    mapping: MappingKind = "procrustes"
    reweight: float = 1.0
    tol: float = 0.01
    patience: int = 2
    progress: bool = True


@dataclass(frozen=True)
class SelfLearningStep:
    """One iteration of self-learning.

    Attributes:
        iteration: 1-based.
        n_pairs: pairs the mapping of this iteration was fitted on.
        n_induced: pairs induced by this iteration's mapping.
        changed: fraction of the dictionary that changed (1 - Jaccard with the previous one).
        objective: mean cosine between mapped sources and their induced translations
            (Conneau et al.'s unsupervised model-selection criterion).
        seconds: wall time of the iteration.
        metric: value of the optional ``evaluate`` callback (e.g. dev P@1), else None.
    """

    iteration: int
    n_pairs: int
    n_induced: int
    changed: float
    objective: float
    seconds: float
    metric: float | None = None


@dataclass
class SelfLearningResult:
    """Outcome of :func:`self_learning`.

    Attributes:
        W: (d_src, r) source mapping of the best iteration (by objective).
        W_tgt: (d_tgt, r) target mapping for ``mapping="whitened"``, None for Procrustes.
        dictionary: (p, 2) int64 (source row, target row) pairs ``W`` was fitted on.
        history: one :class:`SelfLearningStep` per iteration.
        converged: True when the stopping rule fired before ``n_iter``.
    """

    W: np.ndarray
    W_tgt: np.ndarray | None
    dictionary: np.ndarray
    history: list[SelfLearningStep]
    converged: bool


def _pair_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return set(map(tuple, pairs.tolist()))


def _fit_maps(
    X: np.ndarray, Y: np.ndarray, mapping: MappingKind, reweight: float
) -> tuple[np.ndarray, np.ndarray | None]:
    if mapping == "procrustes":
        return procrustes(X, Y), None
    if mapping == "whitened":
        return whitened_mapping(X, Y, reweight=reweight)
    raise ValueError(f"mapping must be 'procrustes' or 'whitened', got {mapping!r}")


def self_learning(
    X_src: np.ndarray,
    Y_tgt: np.ndarray,
    seed_pairs: np.ndarray,
    config: SelfLearningConfig | None = None,
    *,
    evaluate: Callable[[np.ndarray, np.ndarray | None], float] | None = None,
) -> SelfLearningResult:
    """Alternate fitting a mapping on a dictionary and re-inducing the dictionary from it.

    Each iteration fits W on the current pairs (Procrustes by default), induces mutual CSLS
    translations among the frequent words, and keeps those (plus the seed when
    ``keep_seed``) as the next dictionary. It stops when the dictionary stops changing
    (< ``tol``) or the objective (mean cosine of induced pairs) has not improved for
    ``patience`` iterations, and returns the mapping with the best objective.

    Args:
        X_src: (n, d_src) preprocessed source vectors, frequency order.
        Y_tgt: (m, d_tgt) preprocessed target vectors, frequency order.
        seed_pairs: (p, 2) int (source row, target row) pairs, e.g. from
            :func:`identical_strings_seed` or :func:`pairs_to_indices`.
        config: settings (defaults: :class:`SelfLearningConfig`).
        evaluate: optional ``(W, W_tgt) -> float`` called each iteration (e.g. dev P@1),
            logged in the history only, never used to choose.

    Returns:
        :class:`SelfLearningResult`.

    Used in: lesson 03-unsupervised-alignment, exercise 3 (convergence).
    """
    cfg = config or SelfLearningConfig()
    X = _as_matrix(X_src, "X_src")
    Y = _as_matrix(Y_tgt, "Y_tgt")
    seed = np.asarray(seed_pairs, dtype=np.int64).reshape(-1, 2)
    if seed.shape[0] == 0:
        raise ValueError("seed_pairs is empty: self-learning needs at least one pair to start")
    if seed.min() < 0 or seed[:, 0].max() >= X.shape[0] or seed[:, 1].max() >= Y.shape[0]:
        raise ValueError(
            f"seed_pairs index outside X_src {X.shape} or Y_tgt {Y.shape}: pass row indices"
        )
    if cfg.n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {cfg.n_iter}")
    seed_set = _pair_set(seed)
    current = seed
    history: list[SelfLearningStep] = []
    best: tuple[float, np.ndarray, np.ndarray | None, np.ndarray] | None = None
    stale = 0
    converged = False
    prev_set = seed_set
    iters = _progress(range(1, cfg.n_iter + 1), cfg.n_iter, "self-learning", cfg.progress)
    for it in iters:
        t0 = time.perf_counter()
        W, W_tgt = _fit_maps(X[current[:, 0]], Y[current[:, 1]], cfg.mapping, cfg.reweight)
        Xm = X @ W
        Ym = Y if W_tgt is None else Y @ W_tgt
        induced = induce_dictionary(
            Xm, Ym, method=cfg.method, mutual=cfg.mutual, max_rank=cfg.max_rank, k=cfg.k
        )
        if len(induced):
            Xi = _unit_rows(Xm[induced[:, 0]], "mapped sources")
            Yi = _unit_rows(Ym[induced[:, 1]], "mapped targets")
            objective = float(np.einsum("ij,ij->i", Xi, Yi).mean())
        else:
            objective = 0.0
        new_set = _pair_set(induced) | (seed_set if cfg.keep_seed else set())
        union = len(new_set | prev_set)
        changed = 1.0 - len(new_set & prev_set) / union if union else 0.0
        metric = float(evaluate(W, W_tgt)) if evaluate is not None else None
        history.append(
            SelfLearningStep(
                iteration=it,
                n_pairs=int(current.shape[0]),
                n_induced=int(induced.shape[0]),
                changed=changed,
                objective=objective,
                seconds=time.perf_counter() - t0,
                metric=metric,
            )
        )
        if best is None or objective > best[0] + 1e-6:
            best, stale = (objective, W, W_tgt, current), 0
        else:
            stale += 1
        if changed < cfg.tol or stale >= cfg.patience or not new_set:
            converged = True
            break
        current = np.asarray(sorted(new_set), dtype=np.int64).reshape(-1, 2)
        prev_set = new_set
    assert best is not None
    return SelfLearningResult(
        W=best[1], W_tgt=best[2], dictionary=best[3], history=history, converged=converged
    )


def wasserstein_procrustes(
    X_src: np.ndarray,
    Y_tgt: np.ndarray,
    W0: np.ndarray,
    *,
    n_iter: int = 5,
    n_words: int = 5_000,
    reg: float = 0.05,
    sinkhorn_iters: int = 1000,
) -> np.ndarray:
    """Refine W by alternating an entropic optimal-transport matching and Procrustes.

    Grave et al. (2019): with W fixed, the best soft matching P between the mapped frequent
    source words and the frequent target words is an optimal-transport plan for the cost
    -cos(xW, y) (solved with Sinkhorn, POT's ``ot.sinkhorn``); with P fixed, the best W is
    Procrustes on svd(Xᵀ P Y). Uses the ``n_words`` most frequent rows of each side.

    Args:
        X_src: (n, d) preprocessed source vectors, frequency order.
        Y_tgt: (m, d) preprocessed target vectors, frequency order.
        W0: (d, d) initial orthogonal map (e.g. supervised Procrustes).
        n_iter: alternations.
        n_words: rows per side entering the transport problem.
        reg: entropic regularisation of Sinkhorn (on costs in [0, 2]); smaller is sharper
            but slower to converge.
        sinkhorn_iters: maximum Sinkhorn iterations per alternation.

    Returns:
        (d, d) float32 orthogonal W.

    Used in: lesson 03-unsupervised-alignment (optional extension).
    """
    import ot  # POT; imported here because only this refinement needs it

    X = _unit_rows(_as_matrix(X_src, "X_src")[:n_words], "X_src").astype(np.float64)
    Y = _unit_rows(_as_matrix(Y_tgt, "Y_tgt")[:n_words], "Y_tgt").astype(np.float64)
    W = np.asarray(W0, dtype=np.float64)
    a = np.full(X.shape[0], 1.0 / X.shape[0])
    b = np.full(Y.shape[0], 1.0 / Y.shape[0])
    for _ in range(n_iter):
        cost = 1.0 - (X @ W) @ Y.T
        P = ot.sinkhorn(a, b, cost, reg, numItermax=sinkhorn_iters, stopThr=1e-7)
        U, _, Vt = np.linalg.svd(X.T @ P @ Y)
        W = U @ Vt
    return W.astype(np.float32)


# --------------------------------------------------------------------------------------------
# End-to-end pipeline
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BLIConfig:
    """How :func:`run_bli` and :func:`prepare_spaces` build the spaces and the mapping.

    The defaults are the plain recipe of lesson 02 (top 20k words, centre +
    normalise, PCA of the larger space to the smaller dimension, Procrustes);
    :meth:`recommended` is the course's best recipe, chosen on a dev split carved out of the
    train dictionary (never on the test split), and what :func:`run_bli` uses by default.

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
        """Return lesson 02's baseline recipe (the defaults): PCA then Procrustes on top 20k."""
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
        V = _as_matrix(np.asarray(emb.vectors)[:n_keep], f"{lang} vectors")
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


def run_bli(
    src: str,
    tgt: str,
    *,
    method: Method = "csls",
    k: int | None = None,
    dim_reduce: DimReduce | None = None,
    mapping: MappingKind | None = None,
    config: BLIConfig | None = None,
    progress: bool = False,
) -> BLIResult:
    """Align ``src`` with ``tgt`` using the train dictionary and report test P@1 / P@5.

    Pipeline: load the offline vectors and dictionary (``xlt-course data build``), keep the
    frequent words, centre and normalise, fit the mapping on the train pairs (optionally
    refine by self-learning, inducing pairs with ``method``), then evaluate NN and CSLS
    retrieval of the test source words against the target vocabulary.

    Args:
        src, tgt: ISO 639-1 codes, e.g. ``"en"``, ``"fr"``.
        method: criterion for inducing refinement pairs (NN and CSLS are both evaluated).
        k: CSLS neighbourhood; None keeps ``config.k`` (10 in both recipes).
        dim_reduce: see :class:`BLIConfig`; None keeps ``config.dim_reduce``.
        mapping: see :class:`BLIConfig`; None keeps ``config.mapping``.
        config: settings (default: :meth:`BLIConfig.recommended`; the plain Procrustes
            recipe is ``BLIConfig()``).
        progress: show progress bars.

    Returns:
        :class:`BLIResult` with ``precision["nn"]`` and ``precision["csls"]`` at 1 and 5.

    Raises:
        xlt_course.errors.DataError: the vectors or dictionary are not built (the message
            says to run ``xlt-course data build``).

    Used in: lesson 02-procrustes; ``xlt-course bli``.
    """
    from dataclasses import replace

    from xlt_course.data.dictionary import load_dictionary
    from xlt_course.data.vectors import load_vectors

    t0 = time.perf_counter()
    cfg = config or BLIConfig.recommended()
    if k is not None:
        cfg = replace(cfg, k=k)
    if dim_reduce is not None:
        cfg = replace(cfg, dim_reduce=dim_reduce)
    if mapping is not None:
        cfg = replace(cfg, mapping=mapping)
    src_raw, tgt_raw = load_vectors(src), load_vectors(tgt)
    train = load_dictionary(src, tgt, split="train")  # type: ignore[arg-type]
    test = load_dictionary(src, tgt, split="test")  # type: ignore[arg-type]
    return align_and_evaluate(
        src_raw, tgt_raw, train, test, src=src, tgt=tgt, method=method, config=cfg,
        progress=progress, t0=t0,
    )  # fmt: skip


def align_and_evaluate(
    src_emb: WordVectors,
    tgt_emb: WordVectors,
    train_pairs: Sequence[tuple[str, str]],
    test_pairs: Sequence[tuple[str, str]],
    *,
    src: str,
    tgt: str,
    method: Method = "csls",
    config: BLIConfig | None = None,
    progress: bool = False,
    t0: float | None = None,
) -> BLIResult:
    """Run the supervised BLI pipeline on given embeddings and dictionaries (see :func:`run_bli`).

    Args:
        src_emb, tgt_emb: raw embeddings, frequency order.
        train_pairs, test_pairs: (source word, target word) pairs.
        src, tgt: language codes.
        method: criterion for inducing refinement pairs.
        config: pipeline settings (default: :meth:`BLIConfig.recommended`).
        progress: show progress bars.
        t0: start time to report (default: now).

    Returns:
        :class:`BLIResult`; ``n_queries`` counts the test source words with at least one
        gold translation inside both retrieval vocabularies.
    """
    t0 = time.perf_counter() if t0 is None else t0
    cfg = config or BLIConfig.recommended()
    S, T = prepare_spaces(src_emb, tgt_emb, cfg, src=src, tgt=tgt)
    n_src = _head(cfg.src_vocab, len(S.words))
    n_tgt = _head(cfg.tgt_vocab, len(T.words))
    S_eval = WordSpace(src, S.words[:n_src], S.vectors[:n_src])
    T_eval = WordSpace(tgt, T.words[:n_tgt], T.vectors[:n_tgt])
    with warnings.catch_warnings():
        # Pairs outside the vocabularies are expected here; n_queries reports the coverage.
        warnings.simplefilter("ignore", DroppedPairsWarning)
        train_ids, _ = pairs_to_indices(train_pairs, S, T)
        test_ids, _ = pairs_to_indices(test_pairs, S_eval, T_eval)
    W, W_tgt = _fit_maps(
        S.vectors[train_ids[:, 0]], T.vectors[train_ids[:, 1]], cfg.mapping, cfg.reweight
    )
    if cfg.refine_iters > 0:
        sl = self_learning(
            S.vectors,
            T.vectors,
            train_ids,
            SelfLearningConfig(
                n_iter=cfg.refine_iters,
                method=method,
                k=cfg.k,
                max_rank=cfg.refine_max_rank,
                keep_seed=True,
                mapping=cfg.mapping,
                reweight=cfg.reweight,
                progress=progress,
            ),
        )
        W, W_tgt = sl.W, sl.W_tgt
    queries, gold = _gold_by_query(test_ids)
    Xm = S_eval.vectors @ W
    Ym = T_eval.vectors if W_tgt is None else T_eval.vectors @ W_tgt
    precision: dict[str, dict[int, float]] = {}
    for m in ("nn", "csls"):
        pred = translate(Xm, Ym, method=m, k=cfg.k, topn=5, queries=queries, progress=progress)
        precision[m] = {c: precision_at_k(pred, gold, c) for c in (1, 5)}
    return BLIResult(
        src=src,
        tgt=tgt,
        precision=precision,
        n_queries=int(queries.size),
        n_test_pairs=len(test_pairs),
        k=cfg.k,
        seconds=time.perf_counter() - t0,
        settings={
            "src_vocab": n_src,
            "tgt_vocab": n_tgt,
            "fit_vocab": cfg.fit_vocab,
            "dim": int(Xm.shape[1]),
            "normalization": cfg.normalization,
            "mapping": cfg.mapping,
            "reweight": cfg.reweight if cfg.mapping == "whitened" else None,
            "dim_reduce": cfg.dim_reduce,
            "refine_iters": cfg.refine_iters,
            "train_pairs": int(train_ids.shape[0]),
        },
    )
