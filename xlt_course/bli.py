"""Bilingual lexicon induction end to end: load, prepare, fit, (refine,) evaluate.

The pipeline behind ``xlt-course bli`` (``benchmarks/bench_bli.py`` times its retrieval
step on the same spaces), built from lesson 02's mapping (:mod:`xlt_course.procrustes`),
lesson 03's self-learning (:mod:`xlt_course.unsupervised_alignment`, when
``BLIConfig.refine_iters > 0``) and :mod:`xlt_course.retrieval`.

Used in: lesson 02-procrustes; ``xlt-course bli``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from xlt_course.procrustes import (
    BLIConfig,
    DimReduce,
    DroppedPairsWarning,
    MappingKind,
    WordSpace,
    WordVectors,
    fit_mapping,
    pairs_to_indices,
    prepare_spaces,
)
from xlt_course.retrieval import Method, gold_by_query, precision_at_k, translate_words
from xlt_course.unsupervised_alignment import SelfLearningConfig, self_learning


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
    n_src = len(S.words) if cfg.src_vocab is None else min(cfg.src_vocab, len(S.words))
    n_tgt = len(T.words) if cfg.tgt_vocab is None else min(cfg.tgt_vocab, len(T.words))
    S_eval = WordSpace(src, S.words[:n_src], S.vectors[:n_src])
    T_eval = WordSpace(tgt, T.words[:n_tgt], T.vectors[:n_tgt])
    with warnings.catch_warnings():
        # Pairs outside the vocabularies are expected here; n_queries reports the coverage.
        warnings.simplefilter("ignore", DroppedPairsWarning)
        train_ids, _ = pairs_to_indices(train_pairs, S, T)
        test_ids, _ = pairs_to_indices(test_pairs, S_eval, T_eval)
    W, W_tgt = fit_mapping(
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
    queries, gold = gold_by_query(test_ids)
    Xm = S_eval.vectors @ W
    Ym = T_eval.vectors if W_tgt is None else T_eval.vectors @ W_tgt
    precision: dict[str, dict[int, float]] = {}
    for m in ("nn", "csls"):
        pred = translate_words(
            Xm, Ym, method=m, k=cfg.k, topn=5, queries=queries, progress=progress
        )
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
