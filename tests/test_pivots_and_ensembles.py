"""Lesson 08-pivots-and-ensembles: ensembles, size control, pivot routes, and the exercises.

The package functions are tested on small synthetic inputs; ``source_runs`` runs the real
fine-tuning loop (``xlt_course.training``) on the tiny local-folder classifier of
``test_finetune``. Every exercise's hidden tests are shown to pass the reference and correct
variants and to fail plausible mistakes (ensembles averaging logits of different label orders, truncating instead of
matching items, undirected or non-shortest routes).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import deque

import numpy as np
import pytest
from cells import run_test_cell, solution_namespace
from conftest import solution

from xlt_course import pivots_and_ensembles as pe
from xlt_course.data.topics import TopicSplit

NB = solution("08-pivots-and-ensembles")


def _ref(grade_id, name):
    return solution_namespace(NB, grade_id)[name]


def _split(lang, ids, labels, names=("a", "b", "c")):
    return TopicSplit(
        lang, [f"{lang}:{i}" for i in ids], np.asarray(labels, dtype=np.int64), names, list(ids)
    )


# --------------------------------------------------------------------------- module


def test_import_is_light():
    code = (
        "import sys, xlt_course.pivots_and_ensembles; "
        "assert not {'torch', 'transformers', 'pandas'} & set(sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_softmax_is_stable_and_normalised():
    z = np.array([[1000.0, 999.0, -5.0], [0.0, 0.0, 0.0]])
    p = pe.softmax(z)
    assert np.isfinite(p).all() and np.allclose(p.sum(1), 1)
    assert np.allclose(p[1], 1 / 3)
    assert np.allclose(pe.softmax(z - 7.0), p)  # shift invariance


def test_align_label_order():
    scores = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    out = pe.align_label_order(scores, ["b", "c", "a"], ["a", "b", "c"])
    assert np.allclose(out, scores[:, [2, 0, 1]])
    # back and forth is the identity, for a 3-cycle (not its own inverse)
    back = pe.align_label_order(out, ["a", "b", "c"], ["b", "c", "a"])
    assert np.allclose(back, scores)
    with pytest.raises(ValueError, match="same distinct"):
        pe.align_label_order(scores, ["a", "b", "b"], ["a", "b", "c"])
    with pytest.raises(ValueError, match="same distinct"):
        pe.align_label_order(scores, ["a", "b", "d"], ["a", "b", "c"])
    with pytest.raises(ValueError, match="shape"):
        pe.align_label_order(scores[:, :2], ["a", "b", "c"], ["a", "b", "c"])


def test_ensemble_proba_means():
    rng = np.random.default_rng(0)
    names = ["x", "y", "z", "w"]
    z1, z2 = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    p1, p2 = pe.softmax(z1), pe.softmax(z2)
    perm = [2, 3, 1, 0]
    z2_perm = z2[:, perm]  # model 2 lists its classes as z, w, y, x
    order2 = [names[k] for k in perm]
    got = pe.ensemble_proba([z1, z2_perm], [names, order2], names, kind="logits")
    assert np.allclose(got, (p1 + p2) / 2)
    got_p = pe.ensemble_proba([p1, p2[:, perm]], [names, order2], names)
    assert np.allclose(got_p, got)
    geo = pe.ensemble_proba(
        [z1, z2_perm], [names, order2], names, kind="logits", combine="mean_logprob"
    )
    assert np.allclose(geo, pe.softmax((z1 + z2) / 2))
    w = pe.ensemble_proba([p1, p2], [names, names], names, weights=[3, 1])
    assert np.allclose(w, 0.75 * p1 + 0.25 * p2)
    # the result comes in target order
    out = pe.ensemble_proba([p1], [names], names[::-1])
    assert np.allclose(out, p1[:, ::-1])


def test_ensemble_proba_rejects_bad_input():
    p = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="one label order per output"):
        pe.ensemble_proba([p, p], [["a", "b", "c"]], ["a", "b", "c"])
    with pytest.raises(ValueError, match="weights"):
        pe.ensemble_proba([p], [["a", "b", "c"]], ["a", "b", "c"], weights=[-1])
    with pytest.raises(ValueError, match="different shapes"):
        pe.ensemble_proba([p, p[:1]], [["a", "b", "c"]] * 2, ["a", "b", "c"])
    with pytest.raises(ValueError, match="kind"):
        pe.ensemble_proba([p], [["a", "b", "c"]], ["a", "b", "c"], kind="scores")


def test_mean_of_probs_bounds_a_confident_model_and_logits_do_not():
    names = ["a", "b"]
    calm = np.array([[2.0, 0.0]] * 3)  # two models prefer a
    loud = np.array([[0.0, 50.0]])  # one over-confident model prefers b
    outs = [calm[:1], calm[:1], loud]
    assert pe.ensemble_proba(outs, [names] * 3, names, kind="logits").argmax() == 0
    geo = pe.ensemble_proba(outs, [names] * 3, names, kind="logits", combine="mean_logprob")
    assert geo.argmax() == 1


def test_align_rows_and_relabel():
    scores = np.arange(6.0).reshape(3, 2)
    assert np.array_equal(pe.align_rows(scores, ["i", "j", "k"], ["k", "i"]), scores[[2, 0]])
    with pytest.raises(ValueError, match="not among the rows"):
        pe.align_rows(scores, ["i", "j", "k"], ["q"])
    s = _split("en", ["i1", "i2", "i3"], [0, 2, 1])
    r = pe.relabel(s, ("c", "a", "b"))
    assert r.label_names == ("c", "a", "b")
    assert [r.label_names[k] for k in r.labels] == [s.label_names[k] for k in s.labels]
    with pytest.raises(ValueError, match="reordering"):
        pe.relabel(s, ("a", "b"))


def test_common_ids_and_restrict():
    en = _split("en", ["i1", "i2", "i3", "i4"], [0, 1, 2, 0])
    it = _split("it", ["i4", "i2", "i1"], [0, 1, 0])
    ids = pe.common_item_ids({"en": en, "it": it})
    assert ids == ["i1", "i2", "i4"]
    r = pe.restrict(it, ids)
    assert r.ids == ids and r.texts == ["it:i1", "it:i2", "it:i4"] and list(r.labels) == [0, 1, 0]
    assert it.ids == ["i4", "i2", "i1"]  # input untouched
    with pytest.raises(ValueError, match="common_item_ids"):
        pe.restrict(it, ["i3"])
    with pytest.raises(ValueError):
        pe.common_item_ids([])


def test_paired_bootstrap():
    rng = np.random.default_rng(1)
    a = rng.random(900) < 0.6
    d, lo, hi = pe.paired_bootstrap(a, a)
    assert d == lo == hi == 0.0
    b = a.copy()
    b[np.flatnonzero(a)[:90]] = False  # b loses 90 items: a - b = 0.1 exactly
    d, lo, hi = pe.paired_bootstrap(a, b, seed=3)
    assert d == pytest.approx(0.1) and lo < 0.1 < hi and lo > 0.07
    assert pe.paired_bootstrap(a, b, seed=3) == (d, lo, hi)
    with pytest.raises(ValueError):
        pe.paired_bootstrap(a, b[:-1])


APERTIUM = [("en", "es"), ("es", "en"), ("es", "fr"), ("fr", "es")]


def test_pivot_route():
    assert pe.pivot_route(APERTIUM, "fr", "en") == ["fr", "es", "en"]
    assert pe.pivot_route(APERTIUM, "en", "fr") == ["en", "es", "fr"]
    assert pe.pivot_route(APERTIUM, "en", "es") == ["en", "es"]
    assert pe.pivot_route(APERTIUM, "es", "es") == ["es"]
    with pytest.raises(ValueError, match="no chain"):
        pe.pivot_route([("en", "es"), ("es", "fr")], "fr", "en")
    # shortest, and alphabetical among equals
    pairs = [("a", "c"), ("a", "b"), ("b", "d"), ("c", "d"), ("a", "x"), ("x", "y"), ("y", "d")]
    assert pe.pivot_route(pairs, "a", "d") == ["a", "b", "d"]


def test_translate_along_and_translated_split():
    calls = []

    def fake(texts, src, tgt, system, progress=False):
        calls.append((src, tgt, system))
        return [f"{t}>{tgt}" for t in texts]

    out = pe.translate_along(["x", "y"], ["fr", "es", "en"], "apertium", translate_fn=fake)
    assert out == ["x>es>en", "y>es>en"]
    assert calls == [("fr", "es", "apertium"), ("es", "en", "apertium")]
    with pytest.raises(ValueError, match="two languages"):
        pe.translate_along(["x"], ["fr"], translate_fn=fake)
    s = _split("fr", ["i1", "i2"], [1, 2])
    t = pe.translated_split(s, out, "en")
    assert t.texts == out and t.ids == s.ids and list(t.labels) == [1, 2] and t.lang == "en"
    with pytest.raises(ValueError):
        pe.translated_split(s, out[:1], "en")


@pytest.mark.skipif(shutil.which("apertium") is None, reason="Apertium is not installed")
def test_direct_pairs_leave_out_builtin_pivots():
    pairs = pe.direct_pairs("apertium")
    assert ("en", "fr") not in pairs and ("fr", "en") not in pairs
    assert ("en", "es") in pairs and ("fr", "es") in pairs
    assert pe.pivot_route(pairs, "fr", "en") == ["fr", "es", "en"]


def test_decision_table():
    rows = [
        {"strategy": "zero-shot", "target": "es", "accuracy": 50.0, "MT hops": 0},
        {"strategy": "zero-shot", "target": "fr", "accuracy": 40.0, "MT hops": 0},
        {"strategy": "translate-test", "target": "es", "accuracy": 60.0, "MT hops": 1},
        {"strategy": "translate-test", "target": "fr", "accuracy": 50.0, "MT hops": 2},
    ]
    t = pe.decision_table(rows)
    assert list(t.index) == ["translate-test", "zero-shot"]
    assert t.loc["zero-shot", "mean"] == 45.0 and t.loc["translate-test", "MT hops"] == 1
    assert list(t.columns) == ["es", "fr", "mean", "MT hops"]
    with pytest.raises(ValueError, match="accuracy"):
        pe.decision_table([{"strategy": "x", "target": "es"}])


def test_probe_config_is_lesson_06s_probe():
    c = pe.probe_config()
    assert (c.freeze, c.pooling, c.max_length, c.epochs, c.learning_rate, c.batch_size) == (
        "encoder",
        "mean",
        64,
        100,
        0.1,
        32,
    )
    assert pe.probe_config(seed=3).seed == 3


def test_source_runs_train_one_model_per_source(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from test_finetune import _save_tiny, make_split

    from xlt_course import training as tr

    monkeypatch.setattr(tr.paths, "cache_dir", lambda: tmp_path / "cache")
    model = _save_tiny(tmp_path / "bert")
    train = {"en": make_split(48), "xx": make_split(48, "xx", seed=2)}
    evals = {"en": make_split(24, seed=1), "xx": make_split(24, "xx", seed=1)}
    cfg = pe.probe_config(model=model, epochs=5, device="cpu", num_threads=1, progress=False)
    runs = pe.source_runs(cfg, train, evals)
    assert set(runs) == {"en", "xx"}
    assert runs["en"].config == runs["xx"].config
    assert runs["en"].accuracy != runs["xx"].accuracy or not np.allclose(
        runs["en"].probs["en"], runs["xx"].probs["en"]
    )
    again = pe.source_runs(cfg, train, evals, cache="only")
    assert all(r.from_cache for r in again.values())
    ens = pe.ensemble_proba(
        [r.probs["xx"] for r in runs.values()], [r.label_names for r in runs.values()],
        runs["en"].label_names,
    )  # fmt: skip
    assert ens.shape == (24, 3) and np.allclose(ens.sum(1), 1, atol=1e-5)


# --------------------------------------------------------------------------- exercise 1


def test_ex1_reference_and_variants_pass():
    run_test_cell(
        NB, "ex1_controlled_tests", size_controlled=_ref("ex1_controlled", "size_controlled")
    )

    def with_package(splits):
        ids = pe.common_item_ids(splits)
        return {lang: pe.restrict(s, ids) for lang, s in splits.items()}

    def with_numpy(splits):
        first = next(iter(splits.values()))
        keep = np.ones(len(first.ids), dtype=bool)
        for s in splits.values():
            keep &= np.isin(np.array(first.ids), np.array(s.ids))
        order = np.array(first.ids)[keep]
        out = {}
        for lang, s in splits.items():
            pos = {item: i for i, item in enumerate(s.ids)}
            rows = np.array([pos[i] for i in order], dtype=int)
            out[lang] = TopicSplit(
                s.lang, [s.texts[r] for r in rows], s.labels[rows], s.label_names,
                [s.ids[r] for r in rows],
            )  # fmt: skip
        return out

    def with_pandas(splits):
        import pandas as pd

        frames = {
            lang: pd.DataFrame({"text": s.texts, "label": s.labels}, index=s.ids)
            for lang, s in splits.items()
        }
        first = next(iter(frames.values()))
        index = first.index
        for f in frames.values():
            index = index[index.isin(f.index)]
        return {
            lang: TopicSplit(
                splits[lang].lang,
                f.loc[index, "text"].tolist(),
                f.loc[index, "label"].to_numpy(),
                splits[lang].label_names,
                list(index),
            )  # fmt: skip
            for lang, f in frames.items()
        }

    for variant in (with_package, with_numpy, with_pandas):
        run_test_cell(NB, "ex1_controlled_tests", size_controlled=variant)


def _ids_array(splits):
    # ids (and texts) come back as numpy arrays: the statement does not fix their type
    out = _ref("ex1_controlled", "size_controlled")(splits)
    return {
        k: TopicSplit(s.lang, np.array(s.texts), s.labels, s.label_names, np.array(s.ids))
        for k, s in out.items()
    }


def _labels_list(splits):
    out = _ref("ex1_controlled", "size_controlled")(splits)
    return {
        k: TopicSplit(s.lang, s.texts, s.labels.tolist(), s.label_names, s.ids)
        for k, s in out.items()
    }


def _with_select(splits):
    first = next(iter(splits.values()))
    common = set.intersection(*(set(s.ids) for s in splits.values()))
    order = [i for i in first.ids if i in common]
    return {k: s.select([s.ids.index(i) for i in order]) for k, s in splits.items()}


@pytest.mark.parametrize(
    "correct", [_ids_array, _labels_list, _with_select], ids=["ids-array", "labels-list", "select"]
)
def test_ex1_correct_variants_pass(correct):
    run_test_cell(NB, "ex1_controlled_tests", size_controlled=correct)


def _truncate_to_smallest(splits):
    n = min(len(s.ids) for s in splits.values())
    return {lang: pe.restrict(s, s.ids[:n]) for lang, s in splits.items()}


def _own_order(splits):
    ids = set(pe.common_item_ids(splits))
    return {lang: pe.restrict(s, [i for i in s.ids if i in ids]) for lang, s in splits.items()}


def _sorted_ids(splits):
    ids = sorted(pe.common_item_ids(splits))
    return {lang: pe.restrict(s, ids) for lang, s in splits.items()}


def _labels_not_moved(splits):
    ids = pe.common_item_ids(splits)
    out = {}
    for lang, s in splits.items():
        r = pe.restrict(s, ids)
        out[lang] = TopicSplit(r.lang, r.texts, s.labels[: len(ids)], r.label_names, r.ids)
    return out


def _only_first_two(splits):
    keys = list(splits)
    ids = pe.common_item_ids([splits[k] for k in keys[:2]])
    return {lang: pe.restrict(s, [i for i in ids if i in s.ids]) for lang, s in splits.items()}


def _in_place(splits):
    ids = pe.common_item_ids(splits)
    for s in splits.values():
        r = pe.restrict(s, ids)
        s.texts[:], s.ids[:] = r.texts, r.ids
        s.labels = r.labels
    return splits


def _english_order(splits):
    base = splits.get("en", next(iter(splits.values())))  # English assumed to be the source
    common = set(pe.common_item_ids(splits))
    return {
        lang: pe.restrict(s, [i for i in base.ids if i in common]) for lang, s in splits.items()
    }


def _last_split_order(splits):
    """Orders the common ids by the LAST split: consistent across languages, but not the first's."""
    base = list(splits.values())[-1]
    common = set(pe.common_item_ids(splits))
    return {
        lang: pe.restrict(s, [i for i in base.ids if i in common]) for lang, s in splits.items()
    }


@pytest.mark.parametrize(
    "wrong",
    [_truncate_to_smallest, _own_order, _sorted_ids, _labels_not_moved, _only_first_two, _in_place,
     _english_order, _last_split_order],
    ids=["truncate", "own-order", "sorted-ids", "labels-not-moved", "first-two", "in-place",
         "english-order", "last-split-order"],
)  # fmt: skip
def test_ex1_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex1_controlled_tests", size_controlled=wrong)


def test_ex1_last_split_order_is_told_to_follow_the_first_split():
    with pytest.raises(AssertionError, match="FIRST split of the dict") as error:
        run_test_cell(NB, "ex1_controlled_tests", size_controlled=_last_split_order)
    assert "Move texts and labels" not in str(error.value)


def test_ex1_stub_gets_friendly_message():
    def size_controlled(splits):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex1_controlled_tests", size_controlled=size_controlled)


# --------------------------------------------------------------------------- exercise 2


def test_ex2_reference_and_variants_pass():
    run_test_cell(NB, "ex2_ensemble_tests", ensemble_proba=_ref("ex2_ensemble", "ensemble_proba"))

    def with_package(logits, label_orders, target_order):
        return pe.ensemble_proba(logits, label_orders, target_order, kind="logits")

    def with_scipy(logits, label_orders, target_order):
        from scipy.special import softmax

        probs = []
        for z, names in zip(logits, label_orders, strict=True):
            col = {n: j for j, n in enumerate(names)}
            probs.append(softmax(z, axis=1)[:, [col[n] for n in target_order]])
        return np.mean(probs, axis=0)

    def with_torch(logits, label_orders, target_order):
        import torch

        total = None
        for z, names in zip(logits, label_orders, strict=True):
            p = torch.softmax(torch.as_tensor(z, dtype=torch.float64), dim=-1)
            perm = torch.tensor([list(names).index(n) for n in target_order])
            p = p.index_select(1, perm)
            total = p if total is None else total + p
        return total / len(logits)

    def with_logsumexp(logits, label_orders, target_order):
        from scipy.special import logsumexp

        out = np.zeros((np.shape(logits[0])[0], len(target_order)))
        for z, names in zip(logits, label_orders, strict=True):
            z = np.asarray(z, dtype=np.float64)
            p = np.exp(z - logsumexp(z, axis=1, keepdims=True))
            for k, name in enumerate(target_order):
                out[:, k] += p[:, list(names).index(name)]
        return out / len(logits)

    def with_torch_float32(logits, label_orders, target_order):
        import torch

        out = 0.0
        for z, names in zip(logits, label_orders, strict=True):
            p = torch.softmax(torch.from_numpy(np.asarray(z)).float(), dim=1).numpy()
            out = out + p[:, [list(names).index(n) for n in target_order]]
        return out / len(logits)

    for variant in (with_package, with_scipy, with_torch, with_logsumexp, with_torch_float32):
        run_test_cell(NB, "ex2_ensemble_tests", ensemble_proba=variant)


def _softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _no_alignment(logits, label_orders, target_order):
    return np.mean([_softmax(z) for z in logits], axis=0)


def _inverse_permutation(logits, label_orders, target_order):
    # indexes with the position of each model class in the target order: the inverse map
    return np.mean(
        [_softmax(z)[:, [list(target_order).index(n) for n in names]]
         for z, names in zip(logits, label_orders, strict=True)],
        axis=0,
    )  # fmt: skip


def _mean_of_logits(logits, label_orders, target_order):
    aligned = [
        np.asarray(z)[:, [list(names).index(n) for n in target_order]]
        for z, names in zip(logits, label_orders, strict=True)
    ]
    return _softmax(np.mean(aligned, axis=0))


def _naive_softmax(logits, label_orders, target_order):
    out = []
    for z, names in zip(logits, label_orders, strict=True):
        e = np.exp(np.asarray(z, dtype=np.float64))
        out.append((e / e.sum(1, keepdims=True))[:, [list(names).index(n) for n in target_order]])
    return np.mean(out, axis=0)


def _softmax_wrong_axis(logits, label_orders, target_order):
    out = []
    for z, names in zip(logits, label_orders, strict=True):
        z = np.asarray(z, dtype=np.float64)
        e = np.exp(z - z.max(axis=0, keepdims=True))
        out.append((e / e.sum(0, keepdims=True))[:, [list(names).index(n) for n in target_order]])
    return np.mean(out, axis=0)


def _sum_not_mean(logits, label_orders, target_order):
    return pe.ensemble_proba(logits, label_orders, target_order, kind="logits") * len(logits)


def _majority_vote(logits, label_orders, target_order):
    p = pe.ensemble_proba(logits, label_orders, target_order, kind="logits")
    return np.eye(p.shape[1])[p.argmax(1)]


def _in_place_softmax(logits, label_orders, target_order):
    for z in logits:
        z -= z.max(axis=1, keepdims=True)
    return pe.ensemble_proba(logits, label_orders, target_order, kind="logits")


@pytest.mark.parametrize(
    "wrong",
    [
        _no_alignment,
        _inverse_permutation,
        _mean_of_logits,
        _naive_softmax,
        _softmax_wrong_axis,
        _sum_not_mean,
        _majority_vote,
        _in_place_softmax,
    ],
    ids=[
        "no-alignment",
        "inverse-permutation",
        "mean-of-logits",
        "overflowing-softmax",
        "softmax-axis0",
        "sum",
        "one-hot-argmax",
        "in-place",
    ],
)
def test_ex2_plausible_mistakes_fail(wrong):
    with np.errstate(all="ignore"), pytest.raises(AssertionError):
        run_test_cell(NB, "ex2_ensemble_tests", ensemble_proba=wrong)


def test_ex2_stub_gets_friendly_message():
    def ensemble_proba(logits, label_orders, target_order):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex2_ensemble_tests", ensemble_proba=ensemble_proba)


# --------------------------------------------------------------------------- exercise 3


def test_ex3_reference_and_variants_pass():
    run_test_cell(NB, "ex3_route_tests", pivot_route=_ref("ex3_route", "pivot_route"))
    run_test_cell(NB, "ex3_route_tests", pivot_route=pe.pivot_route)

    def with_paths(pairs, src, tgt):
        frontier = [[src]]
        seen = {src}
        while frontier:
            for path in frontier:
                if path[-1] == tgt:
                    return path
            nxt = []
            for path in frontier:
                for a, b in pairs:
                    if a == path[-1] and b not in seen:
                        seen.add(b)
                        nxt.append([*path, b])
            frontier = nxt
        raise ValueError("unreachable")

    def with_networkx_like_dijkstra(pairs, src, tgt):
        import heapq

        dist, prev, heap = {src: 0}, {}, [(0, src)]
        while heap:
            d, u = heapq.heappop(heap)
            for a, b in pairs:
                if a == u and d + 1 < dist.get(b, 1 << 30):
                    dist[b], prev[b] = d + 1, u
                    heapq.heappush(heap, (d + 1, b))
        if tgt not in dist:
            raise ValueError("unreachable")
        route = [tgt]
        while route[-1] != src:
            route.append(prev[route[-1]])
        return route[::-1]

    def reverse_search(pairs, src, tgt):
        # breadth-first from the target along reversed edges: another shortest route
        nxt = {tgt: None}
        queue = deque([tgt])
        while queue:
            v = queue.popleft()
            if v == src:
                route = [v]
                while nxt[route[-1]] is not None:
                    route.append(nxt[route[-1]])
                return route
            for a, b in reversed(list(pairs)):
                if b == v and a not in nxt:
                    nxt[a] = v
                    queue.append(a)
        raise ValueError("unreachable")

    for variant in (with_paths, with_networkx_like_dijkstra, reverse_search):
        run_test_cell(NB, "ex3_route_tests", pivot_route=variant)


def _undirected(pairs, src, tgt):
    both = list(pairs) + [(b, a) for a, b in pairs]
    return pe.pivot_route(both, src, tgt)


def _depth_first(pairs, src, tgt):
    def dfs(v, seen):
        if v == tgt:
            return [v]
        for a, b in pairs:
            if a == v and b not in seen:
                rest = dfs(b, seen | {b})
                if rest is not None:
                    return [v, *rest]
        return None

    route = dfs(src, {src})
    if route is None:
        raise ValueError("unreachable")
    return route


def _returns_none(pairs, src, tgt):
    try:
        return pe.pivot_route(pairs, src, tgt)
    except ValueError:
        return None


def _pivots_only(pairs, src, tgt):
    return pe.pivot_route(pairs, src, tgt)[1:-1] or pe.pivot_route(pairs, src, tgt)


def _always_through_spanish(pairs, src, tgt):
    if src == tgt:
        return [src]
    if (src, "es") in pairs and ("es", tgt) in pairs and "es" not in (src, tgt):
        return [src, "es", tgt]
    return pe.pivot_route(pairs, src, tgt)


def _same_language_empty(pairs, src, tgt):
    return [] if src == tgt else pe.pivot_route(pairs, src, tgt)


@pytest.mark.parametrize(
    "wrong",
    [
        _undirected,
        _depth_first,
        _returns_none,
        _pivots_only,
        _always_through_spanish,
        _same_language_empty,
    ],
    ids=["undirected", "depth-first", "none-not-raise", "pivots-only", "always-es", "same-empty"],
)
def test_ex3_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex3_route_tests", pivot_route=wrong)


def test_ex3_stub_gets_friendly_message():
    def pivot_route(pairs, src, tgt):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex3_route_tests", pivot_route=pivot_route)
