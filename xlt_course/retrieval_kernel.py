"""The compiled inner loop of :mod:`xlt_course.retrieval` for large vocabularies (numba).

One pass over the cosines of all (source, target) pairs, computed tile by tile into a
(targets x sources) buffer that stays in a core's L2 cache, and reduced there while hot:

- **per target**: the k largest cosines seen so far (CSLS's r_S, exact at the end);
- **per source and chunk of targets**: an upper bound of max cos(x, y) - r_S(y) / 2 over the
  chunk, using the running r_S (a lower bound of the final one: the top-k of a subset).

Both reductions run along the tile's leading axis, which the compiler vectorises; the
per-target insertions are rare after the first rows. :func:`xlt_course.retrieval.translate_words`
then rescans, with the exact r_S, only the chunks whose bound can still win: the best chunk of
every row, then the few whose bound reaches the row's best (3% of the scores at 200k x 15k).

Imported only when retrieval meets a large input, so ``import xlt_course`` never loads numba.
The compiled code is cached on disk where numba can write (next to this file, or the user's
cache folder); where neither is writable it is compiled once per process instead.

Used in: lessons 01-shared-space, 02-procrustes, 03-unsupervised-alignment (through
:func:`xlt_course.retrieval.translate_words` and :func:`~xlt_course.retrieval.knn_mean_similarity`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Source rows per tile: the tile's (contiguous) second axis.
SLAB_ROWS = 128
#: Target rows per tile (at most): SLAB_ROWS x TILE_TARGETS float32 = 512 KB, inside a
#: core's L2 cache.
TILE_TARGETS = 1024
#: Below any cos(x, y) - r / 2 of unit vectors (>= -1.5) and any cosine: "nothing seen yet".
#: Finite on purpose: the vectorised loop is compiled assuming no infinities.
FLOOR = np.float32(-4.0)


def _jit(fastmath: bool | set[str] = False):  # noqa: ANN202 - a decorator factory
    """Compile without the GIL, cached on disk where some cache folder is writable."""

    def wrap(fn):  # noqa: ANN001, ANN202
        try:
            return njit(nogil=True, cache=True, fastmath=fastmath)(fn)
        except RuntimeError:  # numba found no writable cache folder: compile per process
            return njit(nogil=True, cache=False, fastmath=fastmath)(fn)

    return wrap


@_jit()
def _insert(top, top_rows, kth, top_sum, half, shared, j, v, r):  # pragma: no cover - compiled
    """Put cosine v of source row r into target j's top-k; refresh its k-th value and r_S/2."""
    k = top.shape[1]
    p = 0
    low = top[j, 0]
    for q in range(1, k):
        if top[j, q] < low:
            low = top[j, q]
            p = q
    top_sum[j] += np.float64(v) - np.float64(low)
    top[j, p] = v
    top_rows[j, p] = r
    low = top[j, 0]
    for q in range(1, k):
        if top[j, q] < low:
            low = top[j, q]
    kth[j] = low
    # While slots still hold FLOOR the mean is below the true r_S: still a lower bound.
    half[j] = np.float32(0.5) * np.float32(top_sum[j] / k)
    if half[j] > shared[j]:
        # Read by the other threads without a lock: any value they see is a valid lower bound.
        shared[j] = half[j]


@_jit(fastmath={"nnan", "nsz", "reassoc", "contract", "arcp"})
def _reduce_tile(tile, n_targets, first, chunk, shared, kth, acc, beats):  # pragma: no cover
    """Reduce a (targets, sources) tile along targets: chunk maxima and top-k candidates.

    acc[c, i] = max(acc[c, i], tile[j, i] - shared[first + j]) over the targets j of chunk c;
    beats[j] = how many sources of the tile beat target j's current k-th largest cosine.
    """
    n_src = tile.shape[1]
    for j in range(n_targets):
        t = tile[j]
        h = shared[first + j]
        low = kth[first + j]
        a = acc[(first + j) // chunk]
        count = 0
        for i in range(n_src):
            v = t[i]
            s = v - h
            if s > a[i]:
                a[i] = s
            count += v > low
        beats[j] = count


@_jit()
def sweep(
    X, Y_blocks, m, rows, counts, bound_row, chunk, top, top_rows, kth, top_sum, half, shared, bound
):  # pragma: no cover - compiled
    """Stream ``rows`` of ``X`` against every target, updating the top-k and the bounds.

    Args:
        X: (n, d) float32 unit source rows.
        Y_blocks: (n_blocks, h, d) float32 unit target rows in blocks of h (a tile's height),
            the last one zero-padded.
        m: the number of real targets.
        rows: (r,) int64 source rows to process, in order.
        counts: (n,) bool, whether a row counts towards the targets' top-k.
        bound_row: (n,) int64, the row of ``bound`` a source writes to, or -1 for none.
        chunk: targets per bound chunk.
        top, top_rows: (m, k) float32 / int64, this thread's top-k cosines of each target and
            the source rows they came from (FLOOR / -1 when empty).
        kth, top_sum, half: (m,) the k-th value, the float64 sum and half the mean of ``top``.
        shared: (m,) float32, the largest r_S / 2 lower bound any thread has seen.
        bound: (n_bound, n_chunks) float32, upper bounds of max cos - r_S / 2 per chunk.
    """
    d = X.shape[1]
    n_blocks, height = Y_blocks.shape[0], Y_blocks.shape[1]
    n_chunks = max(1, bound.shape[1])
    slab = np.zeros((d, SLAB_ROWS), dtype=np.float32)
    tile = np.empty((height, SLAB_ROWS), dtype=np.float32)
    acc = np.empty((n_chunks, SLAB_ROWS), dtype=np.float32)
    beats = np.empty(height, dtype=np.int64)
    n_rows = rows.shape[0]
    for s0 in range(0, n_rows, SLAB_ROWS):
        cnt = min(n_rows, s0 + SLAB_ROWS) - s0
        slab[:, :] = 0.0
        for i in range(cnt):
            slab[:, i] = X[rows[s0 + i], :]
        acc[:, :] = FLOOR
        for b in range(n_blocks):
            first = b * height
            n_targets = min(height, m - first)
            np.dot(Y_blocks[b], slab, tile)
            _reduce_tile(tile, n_targets, first, chunk, shared, kth, acc, beats)
            for j in range(n_targets):
                if beats[j] > 0:
                    jj = first + j
                    for i in range(cnt):
                        v = tile[j, i]
                        r = rows[s0 + i]
                        if v > kth[jj] and counts[r]:
                            _insert(top, top_rows, kth, top_sum, half, shared, jj, v, r)
        for i in range(cnt):
            q = bound_row[rows[s0 + i]]
            if q >= 0:
                for c in range(n_chunks):
                    bound[q, c] = acc[c, i]
