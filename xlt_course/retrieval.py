"""Word retrieval: nearest neighbour (cosine) and CSLS, and precision@k of the retrieved lists.

Read the first section: :func:`nn_scores` and :func:`csls_scores` write the formulas out on
the full (n, m) score matrix, for small inputs and teaching. :func:`translate_words` ranks
the same scores for real vocabularies (200k x 200k) without ever holding the matrix; the
streaming engine behind it (last section) is tuned for caches and threads, and
``tests/test_retrieval.py`` checks that it returns what the formulas give.

Conventions: row vectors, ``X_src_mapped`` = ``X_src @ W`` has shape (n, d) and ``Y_tgt``
(m, d); ``k`` is the CSLS neighbourhood size; arrays are float32.

CSLS: Conneau, Lample, Ranzato, Denoyer, Jégou (2018), "Word translation without parallel
data", ICLR; reimplemented from the paper. Hubness: Radovanović et al. (2010).

Used in: lessons 01-shared-space, 02-procrustes, 03-unsupervised-alignment; ``xlt-course
bli`` and ``benchmarks/bench_bli.py`` through :mod:`xlt_course.bli`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Literal

import numpy as np

from xlt_course.arrays import as_matrix, check_k, unit_rows

Method = Literal["nn", "csls"]

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


# --------------------------------------------------------------------------------------------
# The formulas, on the full score matrix (small inputs)
# --------------------------------------------------------------------------------------------


def nn_scores(X_src_mapped: np.ndarray, Y_tgt: np.ndarray) -> np.ndarray:
    """Return the full (n, m) cosine matrix; for small examples and teaching only.

    Args:
        X_src_mapped: (n, d) mapped source vectors.
        Y_tgt: (m, d) target vectors.

    Returns:
        (n, m) float32 cosines.

    Used in: lesson 02-procrustes.
    """
    X = unit_rows(as_matrix(X_src_mapped, "X_src_mapped"), "X_src_mapped")
    Y = unit_rows(as_matrix(Y_tgt, "Y_tgt"), "Y_tgt")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X_src_mapped {X.shape} and Y_tgt {Y.shape} differ in dimension")
    if X.shape[0] * Y.shape[0] * 4 > BLOCK_BYTES:
        raise ValueError(
            f"nn_scores would materialise a {X.shape[0]} x {Y.shape[0]} matrix: use translate_words()"
        )
    return X @ Y.T


def csls_scores(X_src_mapped: np.ndarray, Y_tgt: np.ndarray, *, k: int = 10) -> np.ndarray:
    """Return the full (n, m) CSLS matrix 2 cos(x, y) - r_T(x) - r_S(y); small inputs only.

    CSLS (Conneau et al. 2018) penalises hubs: r_T(x) is the mean cosine of mapped source x
    to its k nearest targets, r_S(y) the mean cosine of target y to its k nearest mapped
    sources. This is the formula written out on the full matrix, the reference that
    :func:`translate_words` (which never holds the matrix) is tested against.

    Args:
        X_src_mapped: (n, d) mapped source vectors, ``X_src @ W``.
        Y_tgt: (m, d) target vectors.
        k: neighbourhood size, 1 <= k <= min(n, m).

    Returns:
        (n, m) float32.

    Used in: lesson 02-procrustes, exercise 2; lesson 03-unsupervised-alignment.
    """
    cos = nn_scores(X_src_mapped, Y_tgt)
    n, m = cos.shape
    check_k(k, m, "target rows (Y_tgt)")
    check_k(k, n, "source rows (X_src_mapped)")
    r_T = np.sort(cos, axis=1)[:, m - k :].mean(axis=1)  # (n,): each source's k nearest targets
    r_S = np.sort(cos, axis=0)[n - k :, :].mean(axis=0)  # (m,): each target's k nearest sources
    return 2.0 * cos - r_T[:, None] - r_S[None, :]


# --------------------------------------------------------------------------------------------
# Retrieval for real vocabularies (streamed, the full matrix never exists)
# --------------------------------------------------------------------------------------------


def translate_words(
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
    needs only r_S, which one streaming pass computes exactly alongside the ranking. The
    result is each row of :func:`csls_scores` (or :func:`nn_scores`) sorted, best first.

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


def translate_words_with_scores(
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
    """Like :func:`translate_words`, also returning the scores (cosine, or the full CSLS value).

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
    Qa = unit_rows(as_matrix(Q, "Q"), "Q")
    Ka = unit_rows(as_matrix(K, "K"), "K")
    if Qa.shape[1] != Ka.shape[1]:
        raise ValueError(f"Q {Qa.shape} and K {Ka.shape} must have the same dimension")
    check_k(k, Ka.shape[0], "rows of K")
    n, m = Qa.shape[0], Ka.shape[0]
    out = np.empty(n, dtype=np.float32)
    step = _block_rows(m, chunk_size)
    starts = range(0, n, step)
    for s in _progress(starts, len(starts), "kNN similarity", progress):
        S = Ka @ Qa[s : s + step].T
        out[s : s + step] = _topk_mean_axis0(S, k)
    return out


def k_occurrence(predictions: np.ndarray, n_targets: int | None = None) -> np.ndarray:
    """Count how often each target appears in the retrieved lists (hubness; Radovanović 2010).

    Args:
        predictions: (n, topn) target indices from :func:`translate_words`.
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


def gold_by_query(ids: np.ndarray) -> tuple[np.ndarray, list[set[int]]]:
    """Group (source row, target row) pairs by source: the queries and their gold sets.

    Args:
        ids: (p, 2) int pairs, e.g. from ``procrustes.pairs_to_indices``.

    Returns:
        queries: (q,) int64 unique source rows in first-seen order; golds: q sets of
        target rows, ready for :func:`precision_at_k`.
    """
    golds: dict[int, set[int]] = {}
    for i, j in ids.tolist():
        golds.setdefault(i, set()).add(j)
    queries = np.fromiter(golds.keys(), dtype=np.int64, count=len(golds))
    return queries, list(golds.values())


# --------------------------------------------------------------------------------------------
# The streaming engine (performance only: same rankings as the formulas above)
# --------------------------------------------------------------------------------------------


def _check_retrieval_args(
    X_src_mapped: np.ndarray,
    Y_tgt: np.ndarray,
    method: str,
    k: int,
    topn: int,
    queries: np.ndarray | Sequence[int] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    X = unit_rows(as_matrix(X_src_mapped, "X_src_mapped"), "X_src_mapped")
    Y = unit_rows(as_matrix(Y_tgt, "Y_tgt"), "Y_tgt")
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
        check_k(k, m, "target rows (Y_tgt)")
        check_k(k, n, "source rows (X_src_mapped)")
    return X, Y, q


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
            # argmax and a gather beat max() along rows this short
            row_max[r0:r1] = part[np.arange(r1 - r0), part.argmax(axis=1)]
            if r1 - r0 == G:
                M = part.copy() if M is None else np.maximum(M, part, out=M)
        return M

    def top1_rows(rows: np.ndarray, S: np.ndarray, half: np.ndarray, cols: np.ndarray) -> None:
        # rows: positions among the queries.
        src_rows = rows if queries is None else queries[rows]
        C = S[src_rows]
        best.update_top1_rows(np.subtract(C, half, out=C), cols, rows)

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
