"""Lesson 03-unsupervised-alignment: aligning two spaces from a free seed by self-learning.

A seed dictionary from identically spelt words (:func:`identical_strings_seed`), the
dictionary read off a mapped space by mutual CSLS neighbours (:func:`induce_dictionary`),
the loop that alternates the two (:func:`self_learning`) and its optimal-transport
refinement (:func:`wasserstein_procrustes`). The mapping itself comes from
:mod:`xlt_course.procrustes`, retrieval from :mod:`xlt_course.retrieval`.

Methods are reimplemented from the papers, not from any released code:

- Self-learning from a small seed: Artetxe, Labaka, Agirre (2017, 2018).
- Iterative Procrustes refinement with mutual CSLS pairs: Conneau et al. (2018), ICLR.
- Wasserstein-Procrustes: Grave, Joulin, Berthet (2019), "Unsupervised alignment of
  embeddings with Wasserstein Procrustes", AISTATS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xlt_course.arrays import as_matrix, unit_rows
from xlt_course.procrustes import MappingKind, WordVectors, fit_mapping
from xlt_course.retrieval import Method, translate_words


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
    X = as_matrix(X_mapped, "X_mapped")[:max_rank]
    Y = as_matrix(Y_tgt, "Y_tgt")[:max_rank]
    kk = min(k, X.shape[0], Y.shape[0])
    fwd = translate_words(X, Y, method=method, k=kk, topn=1, progress=False)[:, 0]
    src = np.arange(X.shape[0])
    if mutual:
        bwd = translate_words(Y, X, method=method, k=kk, topn=1, progress=False)[:, 0]
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
            (both sides mapped, see ``procrustes.whitened_mapping``).
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
            :func:`identical_strings_seed` or ``procrustes.pairs_to_indices``.
        config: settings (defaults: :class:`SelfLearningConfig`).
        evaluate: optional ``(W, W_tgt) -> float`` called each iteration (e.g. dev P@1),
            logged in the history only, never used to choose.

    Returns:
        :class:`SelfLearningResult`.

    Used in: lesson 03-unsupervised-alignment, exercise 3 (convergence).
    """
    cfg = config or SelfLearningConfig()
    X = as_matrix(X_src, "X_src")
    Y = as_matrix(Y_tgt, "Y_tgt")
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
    from tqdm.auto import tqdm

    iters = tqdm(
        range(1, cfg.n_iter + 1), desc="self-learning", leave=False, disable=not cfg.progress
    )
    for it in iters:
        t0 = time.perf_counter()
        W, W_tgt = fit_mapping(X[current[:, 0]], Y[current[:, 1]], cfg.mapping, cfg.reweight)
        Xm = X @ W
        Ym = Y if W_tgt is None else Y @ W_tgt
        induced = induce_dictionary(
            Xm, Ym, method=cfg.method, mutual=cfg.mutual, max_rank=cfg.max_rank, k=cfg.k
        )
        if len(induced):
            Xi = unit_rows(Xm[induced[:, 0]], "mapped sources")
            Yi = unit_rows(Ym[induced[:, 1]], "mapped targets")
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

    X = unit_rows(as_matrix(X_src, "X_src")[:n_words], "X_src").astype(np.float64)
    Y = unit_rows(as_matrix(Y_tgt, "Y_tgt")[:n_words], "Y_tgt").astype(np.float64)
    W = np.asarray(W0, dtype=np.float64)
    a = np.full(X.shape[0], 1.0 / X.shape[0])
    b = np.full(Y.shape[0], 1.0 / Y.shape[0])
    for _ in range(n_iter):
        cost = 1.0 - (X @ W) @ Y.T
        P = ot.sinkhorn(a, b, cost, reg, numItermax=sinkhorn_iters, stopThr=1e-7)
        U, _, Vt = np.linalg.svd(X.T @ P @ Y)
        W = U @ Vt
    return W.astype(np.float32)
