"""Word retrieval: nearest neighbour (cosine) and CSLS, and precision@k of the retrieved lists.

Read the first section: :func:`nn_scores` and :func:`csls_scores` write the formulas out on
the full (n, m) score matrix, for small inputs and teaching. :func:`translate_words` ranks
the same scores for real vocabularies (200k x 200k) without ever holding the matrix: small
inputs go through the full matrix, large ones through one fused pass of compiled code
(:mod:`xlt_course.retrieval_kernel`) that reduces each cache-resident tile of products
along both axes, then an exact rescan of the few chunks of targets that can still win (last
section). ``tests/test_retrieval.py`` checks both against a float64 brute force.

Conventions: row vectors, ``X_src_mapped`` = ``X_src @ W`` has shape (n, d) and ``Y_tgt``
(m, d); ``k`` is the CSLS neighbourhood size; arrays are float32.

CSLS: Conneau, Lample, Ranzato, Denoyer, Jégou (2018), "Word translation without parallel
data", ICLR; reimplemented from the paper. Hubness: Radovanović et al. (2010).

Used in: lessons 01-shared-space, 02-procrustes, 03-unsupervised-alignment; ``xlt-course
bli`` and ``benchmarks/bench_bli.py`` through :mod:`xlt_course.bli`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np

from xlt_course.arrays import as_matrix, check_k, unit_rows

Method = Literal["nn", "csls"]

#: Upper bound on the bytes of the full score matrix that the teaching formulas build.
BLOCK_BYTES = 256 * 2**20
#: Up to this many scores (n * m) retrieval ranks on the full matrix (numpy); above, the
#: compiled fused pass of :mod:`xlt_course.retrieval_kernel` (never the full matrix).
_FUSED_MIN_SCORES = 16_000_000
#: Below this many scores (n * m), the fused pass runs in one thread.
_PARALLEL_MIN_SCORES = 20_000_000
#: Below this many scores (n * m), retrieval shows no progress bar.
_PROGRESS_MIN_SCORES = 200_000_000
#: Bounds are kept per chunk of targets: at least this many targets, at most this many chunks.
_MIN_CHUNK = 256
_MAX_CHUNKS = 64
#: The warm-up sample: every this-many-th source row, when there are at least the minimum.
_WARMUP_STEP = 32
_WARMUP_MIN_ROWS = 8192
#: Products summed in another order differ by a few float32 ulps; bounds allow for it.
_ROUNDING_SLACK = 1e-5


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
# Retrieval for real vocabularies (the full matrix never exists for large inputs)
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
    needs only r_S, which the same pass computes exactly alongside the ranking. The
    result is each row of :func:`csls_scores` (or :func:`nn_scores`) sorted, best first.

    Memory stays bounded: the full (n, m) matrix never exists for large inputs. The fused
    pass keeps, per query, one upper bound per chunk of targets (at most 64 float32) and,
    per thread, the k best cosines of each target.

    Args:
        X_src_mapped: (n, d) mapped source vectors, ``X_src @ W`` (unit-normalised here).
        Y_tgt: (m, d) target vectors (unit-normalised here).
        method: ``"nn"`` (cosine) or ``"csls"``.
        k: CSLS neighbourhood, 1 <= k <= min(n, m); unused for ``"nn"``.
        topn: candidates per query, 1 <= topn <= m.
        queries: indices of the rows of ``X_src_mapped`` to translate (default: all). CSLS
            still uses every row for r_S.
        chunk_size: target rows per tile of the fused pass (large inputs; at most 1,024).
        progress: show a tqdm bar (only for large inputs).

    Returns:
        (n_queries, topn) int64 target row indices, best first; equal float32 scores go to
        the lower index (two identical target vectors may still score an ulp apart).

    Raises:
        ValueError: dimensions differ, NaN or zero rows, k or topn out of range.

    Used in: lesson 02-procrustes, exercise 2; lesson 03-unsupervised-alignment.
    """
    X, Y, q = _check_retrieval_args(X_src_mapped, Y_tgt, method, k, topn, queries, chunk_size)
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
    X, Y, q = _check_retrieval_args(X_src_mapped, Y_tgt, method, k, topn, queries, chunk_size)
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
        chunk_size: rows of ``Q`` per tile of the fused pass (large inputs; at most 1,024).
        progress: show a tqdm bar (only for large inputs).

    Returns:
        (n,) float32.

    Used in: lesson 02-procrustes, exercise 2 (CSLS).
    """
    Qa = unit_rows(as_matrix(Q, "Q"), "Q")
    Ka = unit_rows(as_matrix(K, "K"), "K")
    if Qa.shape[1] != Ka.shape[1]:
        raise ValueError(f"Q {Qa.shape} and K {Ka.shape} must have the same dimension")
    check_k(k, Ka.shape[0], "rows of K")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n, m = Qa.shape[0], Ka.shape[0]
    if n * m <= _FUSED_MIN_SCORES:
        return _topk_mean_rows(Qa @ Ka.T, k)
    # The fused pass with K as the sources and Q as the targets: the top-k of each target.
    return _fused_topk_mean(Ka, Qa, k, chunk_size=chunk_size, progress=progress)


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
# The engine (performance only: same rankings as the formulas above)
# --------------------------------------------------------------------------------------------


def _check_retrieval_args(
    X_src_mapped: np.ndarray,
    Y_tgt: np.ndarray,
    method: str,
    k: int,
    topn: int,
    queries: np.ndarray | Sequence[int] | None,
    chunk_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
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


def _blas_single_thread() -> Any:
    """Return a context manager limiting BLAS to one thread, or None without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return None
    return ThreadpoolController().limit(limits=1, user_api="blas")


@contextmanager
def _workers(rows: int, m: int, desc: str, progress: bool) -> Iterator[tuple[int, Any, Any]]:
    """Yield (threads, pool or None, tqdm bar or None) for a fused pass over rows x m scores.

    BLAS is limited to one thread meanwhile: each of our threads runs products on its own
    tile, and a multi-threaded BLAS under them would oversubscribe the cores.
    """
    workers = _n_threads() if rows * m >= _PARALLEL_MIN_SCORES else 1
    limit = _blas_single_thread()
    if limit is None:
        workers = 1
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    bar = None
    if progress and rows * m >= _PROGRESS_MIN_SCORES:
        from tqdm.auto import tqdm

        bar = tqdm(total=rows, desc=desc, unit="row", leave=False)
    try:
        yield workers, pool, bar
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.shutdown()
        if limit is not None:
            limit.__exit__(None, None, None)


def _top_rows(S: np.ndarray, topn: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the (values, columns) of the ``topn`` largest entries of each row, best first.

    Equal values go to the lower column, as ``np.argsort(-S, kind="stable")`` would.
    """
    if topn == 1:
        am = S.argmax(axis=1)  # the first maximum: the lowest column
        return S[np.arange(S.shape[0]), am][:, None], am[:, None].astype(np.int64)
    c = S.shape[1]
    t = min(topn, c)
    # Keep every entry tied with the t-th largest, so that the lowest columns can win ties.
    kth = np.partition(S, c - t, axis=1)[:, c - t]
    rows, cols = np.nonzero(S >= kth[:, None])
    vals = S[rows, cols]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    start = np.searchsorted(rows, np.arange(S.shape[0]))
    rank = np.arange(rows.size) - start[rows]
    keep = rank < t
    out_v = np.full((S.shape[0], topn), -np.inf, dtype=np.float32)
    out_i = np.full((S.shape[0], topn), -1, dtype=np.int64)
    out_v[rows[keep], rank[keep]] = vals[keep]
    out_i[rows[keep], rank[keep]] = cols[keep]
    return out_v, out_i


def _merge_top(
    best_v: np.ndarray, best_i: np.ndarray, rows: np.ndarray, vals: np.ndarray, idx: np.ndarray
) -> None:
    """Merge candidates (vals, idx), each (len(rows), t), into the running top-n of ``rows``."""
    topn = best_v.shape[1]
    all_v = np.concatenate([best_v[rows], vals], axis=1)
    all_i = np.concatenate([best_i[rows], idx], axis=1)
    key = np.where(all_i < 0, np.iinfo(np.int64).max, all_i)  # empty slots lose every tie
    order = np.lexsort((key, -all_v), axis=1)[:, :topn]
    best_v[rows] = np.take_along_axis(all_v, order, axis=1)
    best_i[rows] = np.take_along_axis(all_i, order, axis=1)


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
    """Return (indices, scores, r_S), scores = cos (NN) or cos - r_S / 2 (CSLS), best first.

    The query's own penalty r_T(x) is a constant for its row, so it does not change the
    ranking and is not needed here. Small inputs are ranked on the full score matrix; large
    ones by the fused pass of :mod:`xlt_course.retrieval_kernel` and a rescan of the chunks
    of targets whose bound can still win, so the full matrix never exists.
    """
    n, m = X.shape[0], Y.shape[0]
    # CSLS needs every source for r_S; NN only the queries.
    scored = n if method == "csls" or queries is None else queries.size
    if scored * m <= _FUSED_MIN_SCORES:  # the full matrix
        rS = None
        if method == "csls":
            S = X @ Y.T
            rS = _topk_mean_rows(S.T, k)
            if queries is not None:
                S = S[queries]
            S -= 0.5 * rS
        else:
            S = (X if queries is None else X[queries]) @ Y.T
        vals, idx = _top_rows(S, topn)
        return idx, vals, rS
    uq, inverse = (None, None) if queries is None else np.unique(queries, return_inverse=True)
    idx, vals, rS = _retrieve_fused(
        X, Y, method=method, k=k, topn=topn, rows=uq, chunk_size=chunk_size, progress=progress
    )
    if inverse is not None:
        idx, vals = idx[inverse], vals[inverse]
    return idx, vals, rS


def _topk_mean_rows(S: np.ndarray, k: int) -> np.ndarray:
    """Return the mean of the k largest values of each row of ``S`` (float64 sum, float32)."""
    c = S.shape[1]
    top = np.partition(S, c - k, axis=1)[:, c - k :]
    return (top.sum(axis=1, dtype=np.float64) / k).astype(np.float32)


class _Sweep:
    """Run :func:`xlt_course.retrieval_kernel.sweep` over all source rows in threads.

    Each thread keeps its own top-k of every target (merged at the end) and shares its
    running lower bound of r_S / 2 with the others, which tightens everyone's bounds.
    """

    def __init__(self, X: np.ndarray, Y: np.ndarray, k: int, *, csls: bool, height: int) -> None:
        from xlt_course import retrieval_kernel as kern

        self.kern = kern
        self.X, self.k, self.csls = X, k, csls
        self.m, d = Y.shape
        n_blocks = -(-self.m // height)
        blocks = np.zeros((n_blocks * height, d), dtype=np.float32)
        blocks[: self.m] = Y
        self.Y_blocks = blocks.reshape(n_blocks, height, d)
        # Without CSLS: no top-k (a k-th value above every cosine) and r_S / 2 = 0.
        self.shared = np.full(self.m, kern.FLOOR / 2 if csls else 0.0, dtype=np.float32)

    def empty_state(self) -> list[np.ndarray]:
        kern, m, k = self.kern, self.m, self.k
        return [
            np.full((m, k), kern.FLOOR, dtype=np.float32),
            np.full((m, k), -1, dtype=np.int64),
            np.full(m, kern.FLOOR if self.csls else 2.0, dtype=np.float32),
            np.full(m, k * float(kern.FLOOR), dtype=np.float64),
            self.shared.copy(),
        ]

    def run(
        self,
        parts: list[np.ndarray],
        states: list[list[np.ndarray]],
        counts: np.ndarray,
        bound_row: np.ndarray,
        chunk: int,
        bound: np.ndarray,
        pool: ThreadPoolExecutor | None,
        bar: Any,
    ) -> None:
        """Sweep ``parts[t]`` with ``states[t]`` on thread t, in batches for the progress bar."""
        batch = 64 * self.kern.SLAB_ROWS

        def work(t: int) -> None:
            rows, st = parts[t], states[t]
            for a in range(0, rows.size, batch):
                part = rows[a : a + batch]
                self._sweep(part, counts, bound_row, chunk, st, bound)
                if bar is not None:
                    bar.update(part.size)

        if pool is None:
            for t in range(len(parts)):
                work(t)
        else:
            list(pool.map(work, range(len(parts))))

    def _sweep(self, rows, counts, bound_row, chunk, st, bound) -> None:  # noqa: ANN001
        top, top_rows, kth, top_sum, half = st
        self.kern.sweep(
            self.X, self.Y_blocks, self.m, rows, counts, bound_row, chunk,
            top, top_rows, kth, top_sum, half, self.shared, bound,
        )  # fmt: skip

    def topk_mean(self, states: list[list[np.ndarray]]) -> np.ndarray:
        """Return the exact mean of the k largest cosines of every target, (m,) float32."""
        return (self.merge(states)[3] / self.k).astype(np.float32)

    def merge(self, states: list[list[np.ndarray]]) -> list[np.ndarray]:
        """Return one state holding the exact top-k of every target over all the states.

        A source row may sit in several states (the warm-up sample is copied to each thread):
        it is counted once.
        """
        k = self.k
        vals = np.concatenate([s[0] for s in states], axis=1)
        rows = np.concatenate([s[1] for s in states], axis=1)
        order = np.argsort(rows, axis=1, kind="stable")
        rows = np.take_along_axis(rows, order, axis=1)
        vals = np.take_along_axis(vals, order, axis=1)
        dup = np.zeros(rows.shape, dtype=bool)
        dup[:, 1:] = (rows[:, 1:] == rows[:, :-1]) & (rows[:, 1:] >= 0)
        vals[dup] = self.kern.FLOOR
        rows[dup] = -1
        pos = np.argpartition(-vals, k - 1, axis=1)[:, :k]
        top = np.ascontiguousarray(np.take_along_axis(vals, pos, axis=1))
        top_rows = np.ascontiguousarray(np.take_along_axis(rows, pos, axis=1))
        top_sum = top.sum(axis=1, dtype=np.float64)
        half = (0.5 * (top_sum / k).astype(np.float32)).astype(np.float32)
        return [top, top_rows, top.min(axis=1), top_sum, half]


def _retrieve_fused(
    X: np.ndarray,
    Y: np.ndarray,
    *,
    method: Method,
    k: int,
    topn: int,
    rows: np.ndarray | None,
    chunk_size: int,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`_retrieve` for large inputs: one fused pass, then exact rescans of a few chunks.

    ``rows``: the sorted unique query rows (None: all). Returns results for those rows.
    """
    from xlt_course import retrieval_kernel as kern

    n, m = X.shape[0], Y.shape[0]
    csls = method == "csls"
    q = np.arange(n) if rows is None else rows
    nq = q.size
    # Bounds per chunk of targets: at most _MAX_CHUNKS per query keeps them to 256 B a row.
    chunk = max(_MIN_CHUNK, -(-m // _MAX_CHUNKS))
    n_chunks = -(-m // chunk)
    bound = np.full((nq, n_chunks), kern.FLOOR, dtype=np.float32)
    bound_row = np.full(n, -1, dtype=np.int64)
    bound_row[q] = np.arange(nq)
    counts = np.full(n, csls)
    sweeper = _Sweep(X, Y, k, csls=csls, height=min(kern.TILE_TARGETS, chunk_size))
    # CSLS scores every source for r_S; NN only the queries.
    todo = np.arange(n) if csls else q
    with _workers(todo.size, m, f"{method.upper()} retrieval", progress) as (workers, pool, bar):
        base = sweeper.empty_state()
        if csls and n >= _WARMUP_MIN_ROWS:
            # A strided sample first (top-k only) gives every thread a tight r_S bound from
            # its first row on: at 200k x 15k it cuts the rescans by a quarter for 3% more
            # products.
            sample = np.arange(0, n, _WARMUP_STEP)
            parts = [p for p in np.array_split(sample, workers) if p.size]
            states = [sweeper.empty_state() for _ in parts]
            no_bound = np.full(n, -1, dtype=np.int64)
            sweeper.run(parts, states, counts, no_bound, chunk, bound[:0], pool, None)
            base = sweeper.merge(states)
            counts[sample] = False
        slab = kern.SLAB_ROWS
        parts = [todo[(np.arange(todo.size) // slab) % workers == t] for t in range(workers)]
        states = [[a.copy() for a in base] for _ in parts]
        sweeper.run(parts, states, counts, bound_row, chunk, bound, pool, bar)
        rS = sweeper.topk_mean(states) if csls else None
        half = np.zeros(m, dtype=np.float32) if rS is None else 0.5 * rS
        best_v, best_i = _rescan(X, Y, q, bound, chunk, half, topn, pool)
    return best_i, best_v, rS


def _fused_topk_mean(
    X: np.ndarray, Y: np.ndarray, k: int, *, chunk_size: int, progress: bool
) -> np.ndarray:
    """Return the mean of the k largest cosines of each row of Y with the rows of X (fused)."""
    from xlt_course import retrieval_kernel as kern

    n, m = X.shape[0], Y.shape[0]
    sweeper = _Sweep(X, Y, k, csls=True, height=min(kern.TILE_TARGETS, chunk_size))
    with _workers(n, m, "kNN similarity", progress) as (workers, pool, bar):
        rows = np.arange(n)
        parts = [rows[(rows // kern.SLAB_ROWS) % workers == t] for t in range(workers)]
        states = [sweeper.empty_state() for _ in parts]
        no_bound = np.full(n, -1, dtype=np.int64)
        bound = np.empty((0, 1), dtype=np.float32)
        sweeper.run(parts, states, np.ones(n, dtype=bool), no_bound, m, bound, pool, bar)
    return sweeper.topk_mean(states)


def _rescan(
    X: np.ndarray,
    Y: np.ndarray,
    q: np.ndarray,
    bound: np.ndarray,
    chunk: int,
    half: np.ndarray,
    topn: int,
    pool: ThreadPoolExecutor | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the exact top-n of cos - half for each query row, reading few chunks again.

    First each row's chunk with the highest bound; then every chunk whose bound reaches the
    row's n-th best score so far (minus a float32 rounding slack, as the bound's products were
    summed in another order). A chunk below that cannot hold a better score.
    """
    from xlt_course import retrieval_kernel as kern

    nq, m = q.size, Y.shape[0]
    best_v = np.full((nq, topn), -np.inf, dtype=np.float32)
    best_i = np.full((nq, topn), -1, dtype=np.int64)
    rows = np.arange(nq)
    first = bound.argmax(axis=1)
    for round_ in range(2):
        if round_ == 0:
            r, c = rows, first
            bound[r, c] = kern.FLOOR
        else:
            need = bound >= (best_v[:, topn - 1] - _ROUNDING_SLACK)[:, None]
            need &= bound > kern.FLOOR
            r, c = np.nonzero(need)
        order = np.argsort(c, kind="stable")
        r, c = r[order], c[order]
        edges = np.searchsorted(c, np.arange(bound.shape[1] + 1))
        groups = [(ch, r[edges[ch] : edges[ch + 1]]) for ch in np.flatnonzero(np.diff(edges))]

        def score(group: tuple[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            ch, rr = group
            j0, j1 = ch * chunk, min(m, (ch + 1) * chunk)
            S = X[q[rr]] @ Y[j0:j1].T
            S -= half[j0:j1]
            vals, idx = _top_rows(S, topn)
            return rr, vals, np.where(idx >= 0, idx + j0, -1)

        results = map(score, groups) if pool is None else pool.map(score, groups)
        for rr, vals, idx in results:  # merged here, one group at a time: rows repeat
            _merge_top(best_v, best_i, rr, vals, idx)
    return best_v, best_i
