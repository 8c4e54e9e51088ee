"""Tests of xlt_course.transfer_gap and of lesson 10's exercises (hidden tests proven here)."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import pytest
from cells import cell_source, run_test_cell, solution_namespace
from conftest import run_visible_checks, solution

from xlt_course import training
from xlt_course import transfer_gap as tg

NB = solution("10-transfer-gap-and-low-resource")


# --------------------------------------------------------------------------- module


def test_import_does_not_pull_torch():
    code = (
        "import sys, xlt_course.transfer_gap; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fit_matches_polyfit_and_is_base_free():
    rng = np.random.default_rng(0)
    size = 10 ** rng.uniform(0, 3, 12)
    acc = 60 + 4 * np.log10(size) + rng.normal(0, 2, 12)
    fit = tg.fit_log_linear(size, acc)
    b10, a10 = np.polyfit(np.log10(size), acc, 1)
    bln, aln = np.polyfit(np.log(size), acc, 1)
    assert fit.per_decade == pytest.approx(b10) == pytest.approx(bln * math.log(10))
    assert fit.intercept == pytest.approx(a10) == pytest.approx(aln)
    assert np.allclose(fit.fitted, aln + bln * np.log(size))
    assert np.allclose(fit.residuals, acc - fit.fitted)
    assert fit.r2 == pytest.approx(np.corrcoef(np.log(size), acc)[0, 1] ** 2)
    assert np.allclose(fit.predict(size), fit.fitted)
    # the unit of size moves the intercept only
    fit_mb = tg.fit_log_linear(size * 1024, acc)
    assert fit_mb.per_decade == pytest.approx(fit.per_decade)
    assert np.allclose(fit_mb.fitted, fit.fitted)


def test_interval_matches_scipy_linregress():
    from scipy import stats

    rng = np.random.default_rng(1)
    size = 10 ** rng.uniform(0, 2.5, 9)
    acc = 70 + 3 * np.log10(size) + rng.normal(0, 2, 9)
    lr = stats.linregress(np.log10(size), acc)
    assert tg.fit_log_linear(size, acc).per_decade_se == pytest.approx(lr.stderr)
    low, high = tg.per_decade_interval(size, acc)
    q = stats.t.ppf(0.975, 7)
    assert (low, high) == pytest.approx((lr.slope - q * lr.stderr, lr.slope + q * lr.stderr))
    with pytest.raises(ValueError, match="level"):
        tg.per_decade_interval(size, acc, level=95)


@pytest.mark.parametrize(
    "size, acc, match",
    [
        ([1.0], [2.0], "at least 2"),
        ([1, 0], [1, 2], "positive"),
        ([3, 3], [1, 2], "equal"),
        ([1, 2], [1, 2, 3], "same length"),
    ],  # fmt: skip
)
def test_fit_rejects_bad_input(size, acc, match):
    with pytest.raises(ValueError, match=match):
        tg.fit_log_linear(size, acc)


def test_bootstrap_is_seeded_and_centred():
    rng = np.random.default_rng(2)
    size = 10 ** rng.uniform(0, 3, 15)
    acc = 50 + 6 * np.log10(size) + rng.normal(0, 1, 15)
    a = tg.bootstrap_per_decade(size, acc, n_boot=500, seed=3)
    b = tg.bootstrap_per_decade(size, acc, n_boot=500, seed=3)
    assert np.array_equal(a, b) and a.shape == (500,)
    assert abs(np.median(a) - 6) < 1.0


def test_paired_bootstrap():
    rng = np.random.default_rng(4)
    a = rng.random(400) < 0.5
    b = a.copy()
    b[:40] = True  # b is right wherever a is, and on some more
    diff, lo, hi = tg.paired_bootstrap(b, a, n_boot=1000, seed=0)
    assert diff == pytest.approx((b.astype(float) - a).mean()), "Acc(first) - Acc(second)"
    assert 0 <= lo <= diff <= hi
    flipped = tg.paired_bootstrap(a, b, n_boot=1000, seed=0)
    assert flipped == pytest.approx((-diff, -hi, -lo))
    same = tg.paired_bootstrap(a, a, n_boot=200)
    assert same == (0.0, 0.0, 0.0)


def test_one_paired_bootstrap_for_lessons_08_and_10():
    from xlt_course import pivots_and_ensembles as pe

    assert tg.paired_bootstrap is pe.paired_bootstrap


def test_weakest_language():
    acc = {"en": [0.7, 0.7], "fr": [0.5, 0.52], "ja": [0.49, 0.51], "de": [0.6, 0.3]}
    assert tg.weakest_language(acc) == "de"
    with pytest.raises(ValueError):
        tg.weakest_language({"en": [1.0]})


@pytest.mark.parametrize("k", [1, 6, 10, 30, 100])
def test_few_shot_sample_properties(k):
    rng = np.random.default_rng(k)
    labels = rng.integers(0, 6, 400)
    ids = [f"tp-{i}" for i in range(400)]
    exclude = set(ids[::4])
    idx = tg.few_shot_sample(labels, ids, k, seed=7, exclude=exclude)
    assert len(idx) == k == len(set(idx.tolist()))
    assert not {ids[i] for i in idx} & exclude
    counts = np.bincount(labels[idx], minlength=6)
    assert counts.max() - counts.min() <= 1
    assert np.array_equal(idx, tg.few_shot_sample(labels, ids, k, seed=7, exclude=exclude))


def test_few_shot_sample_short_class_and_errors():
    labels = np.array([0] * 2 + [1] * 30 + [2] * 30)
    ids = [f"x{i}" for i in range(len(labels))]
    idx = tg.few_shot_sample(labels, ids, 20, seed=0)
    assert sorted(np.bincount(labels[idx]).tolist()) == [2, 9, 9]
    with pytest.raises(ValueError, match="k must be"):
        tg.few_shot_sample(labels, ids, 100, seed=0)
    with pytest.raises(ValueError, match="same length"):
        tg.few_shot_sample(labels, ids[:-1], 3, seed=0)


def test_probe_learns_separable_classes():
    rng = np.random.default_rng(5)
    centres = rng.normal(0, 3, (4, 10))
    y = rng.integers(0, 4, 300)
    X = centres[y] + rng.normal(0, 1, (300, 10))
    probe = tg.fit_probe(X, y, l2=1e-3)
    assert (probe.predict(X) == y).mean() > 0.95
    assert probe.logits(X).shape == (300, 4)
    # convex: the same data give the same probe
    assert np.allclose(tg.fit_probe(X, y, l2=1e-3).W, probe.W)


def test_mask_tokens_follows_bert_recipe():
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 1000, (200, 30))
    maskable = np.ones_like(ids, dtype=bool)
    maskable[:, 0] = maskable[:, -1] = False  # special tokens
    corrupted, chosen = training.mask_tokens(ids, maskable, mask_id=4, vocab_size=1000, rng=rng)
    assert not chosen[:, 0].any() and not chosen[:, -1].any()
    assert 0.12 < chosen.mean() / maskable.mean() < 0.18
    assert np.array_equal(corrupted[~chosen], ids[~chosen])
    share_mask = (corrupted[chosen] == 4).mean()
    assert 0.74 < share_mask < 0.86
    assert chosen.any(axis=1).all()  # at least one target per row


def test_adapt_mlm_runs_and_caches(tmp_path, monkeypatch, built_data):
    pytest.importorskip("torch")
    from xlt_course import paths

    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path)
    cfg = tg.MLMConfig(head_steps=1, steps=1, train_layers=1, batch_size=2, max_length=16)
    texts = ["ファイルを開けません", "パッケージが見つかりません", "パスワードを変更しました"]
    res = tg.adapt_mlm(texts, cfg, eval_texts=texts[:1], progress=False)
    assert res is not None and res.model is not None
    assert np.isfinite(res.eval_loss_head_only) and np.isfinite(res.eval_loss_adapted)
    again = tg.adapt_mlm(texts, cfg, eval_texts=texts[:1], progress=False)
    assert again.model is None and again.key == res.key
    assert again.eval_loss_adapted == pytest.approx(res.eval_loss_adapted)
    assert tg.adapt_mlm(texts, tg.MLMConfig(head_steps=1, steps=1, seed=1), cache="only") is None


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
def test_adapt_mlm_loads_any_masked_lm(tmp_path, monkeypatch, arch):
    """AutoModelForMaskedLM: a BERT (``cls`` head) and an XLM-R (``lm_head``) both adapt."""
    torch = pytest.importorskip("torch")
    from tiny_models import make_split, tiny_config, tiny_tokenizer
    from transformers import AutoModelForMaskedLM

    from xlt_course import paths

    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path / "cache")
    tok = tiny_tokenizer()
    tok.add_special_tokens({"mask_token": "[MASK]"})
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(tiny_config(arch, vocab_size=len(tok)))
    model.save_pretrained(tmp_path / arch)
    tok.save_pretrained(tmp_path / arch)
    texts = make_split(24).texts
    cfg = tg.MLMConfig(head_steps=2, steps=2, train_layers=1, batch_size=4, max_length=16)
    res = tg.adapt_mlm(texts, cfg, eval_texts=texts[:4], model=str(tmp_path / arch),
                       cache="off", progress=False)  # fmt: skip
    assert type(res.model).__name__ == ("BertModel" if arch == "bert" else "XLMRobertaModel")
    assert np.isfinite(res.eval_loss_adapted) and len(res.loss_history) == 1
    before = AutoModelForMaskedLM.from_pretrained(tmp_path / arch).base_model.state_dict()
    changed = {k for k, v in res.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".layer.1." in k for k in changed), "only the top layer trains"


# --------------------------------------------------------------------------- exercise 1


def _run_hidden_tests(grade_id, **functions):
    """Run only the hidden part of a tests cell: proves it catches what the visible part does."""
    source = cell_source(NB, grade_id).partition("### BEGIN HIDDEN TESTS")[2]
    exec(compile(source, f"{grade_id}:hidden", "exec"), {"__name__": "__tests__", **functions})


def _ref(grade_id, name):
    return solution_namespace(NB, grade_id)[name]


def _fit_polyfit_ln(size, acc):
    t = np.log(np.asarray(size, float))
    b, a = np.polyfit(t, acc, 1)
    fitted = a + b * t
    res = np.asarray(acc, float) - fitted
    y = np.asarray(acc, float)
    return {
        "a": a,
        "b": b,
        "fitted": fitted,
        "residuals": res,
        "r2": 1 - res @ res / ((y - y.mean()) ** 2).sum(),
    }


def _fit_lstsq_log2(size, acc):
    t = np.log2(np.asarray(size, float))
    A = np.column_stack([np.ones_like(t), t])
    (a, b), *_ = np.linalg.lstsq(A, np.asarray(acc, float), rcond=None)
    fitted = A @ np.array([a, b])
    res = np.asarray(acc, float) - fitted
    y = np.asarray(acc, float)
    r2 = 1 - (res**2).sum() / ((y - y.mean()) ** 2).sum()
    return {
        "a": float(a),
        "b": float(b),
        "fitted": list(fitted),
        "residuals": list(res),
        "r2": float(r2),
    }


def _fit_from_package(size, acc):
    f = tg.fit_log_linear(size, acc)
    return {
        "a": f.intercept,
        "b": f.per_decade,
        "fitted": f.fitted,
        "residuals": f.residuals,
        "r2": f.r2,
    }


def _fit_float32(size, acc):
    # float32 arithmetic throughout (the statement fixes no dtype)
    t = np.log10(np.asarray(size, dtype=np.float32))
    y = np.asarray(acc, dtype=np.float32)
    tc = t - t.mean()
    b = (tc @ (y - y.mean())) / (tc @ tc)
    a = y.mean() - b * t.mean()
    fitted = a + b * t
    res = y - fitted
    return {"a": a, "b": b, "fitted": fitted, "residuals": res,
            "r2": 1 - (res @ res) / ((y - y.mean()) @ (y - y.mean()))}  # fmt: skip


def _fit_torch(size, acc):
    # a natural torch answer: torch.as_tensor of a list of floats is float32
    torch = pytest.importorskip("torch")
    t = torch.log(torch.as_tensor(size))
    y = torch.as_tensor(acc)
    t = t.to(y.dtype)
    tc = t - t.mean()
    b = (tc * (y - y.mean())).sum() / (tc * tc).sum()
    a = y.mean() - b * t.mean()
    fitted = a + b * t
    r = y - fitted
    r2 = 1 - (r * r).sum() / ((y - y.mean()) ** 2).sum()
    return {"a": a.item(), "b": b.item(), "fitted": fitted, "residuals": r, "r2": r2.item()}


def test_ex1_reference_and_variants_pass():
    run_test_cell(NB, "ex1_fit_tests", fit_log_linear=_ref("ex1_fit", "fit_log_linear"))
    run_test_cell(NB, "ex1_fit_tests", fit_log_linear=_fit_polyfit_ln)  # natural log: accepted
    run_test_cell(NB, "ex1_fit_tests", fit_log_linear=_fit_lstsq_log2)  # base 2, lists: accepted
    run_test_cell(NB, "ex1_fit_tests", fit_log_linear=_fit_from_package)


@pytest.mark.parametrize("variant", [_fit_float32, _fit_torch], ids=["float32-numpy", "torch"])
def test_ex1_float32_variants_pass(variant):
    run_test_cell(NB, "ex1_fit_tests", fit_log_linear=variant)


def _wrong_fit(kind):
    def f(size, acc):
        out = _fit_polyfit_ln(size, acc)
        y = np.asarray(acc, float)
        if kind == "raw-size":
            x = np.asarray(size, float)
            b, a = np.polyfit(x, y, 1)
            fitted = a + b * x
            res = y - fitted
            return {
                "a": a,
                "b": b,
                "fitted": fitted,
                "residuals": res,
                "r2": 1 - res @ res / ((y - y.mean()) ** 2).sum(),
            }
        if kind == "residual-sign":
            out["residuals"] = -out["residuals"]
        elif kind == "r-not-r2":
            out["r2"] = math.sqrt(max(out["r2"], 0.0))
        elif kind == "ss-around-zero":
            res = out["residuals"]
            out["r2"] = 1 - res @ res / (y @ y)
        elif kind == "reversed":
            t = np.log(np.asarray(size, float))
            d, c = np.polyfit(y, t, 1)  # log(size) on acc, then inverted
            b, a = 1 / d, -c / d
            out.update(a=a, b=b, fitted=a + b * t, residuals=y - (a + b * t))
        elif kind == "ln-b-with-log10-fitted":
            out["b"] = out["b"] * 1.7  # a slope that belongs to no base
        elif kind == "no-intercept":
            t = np.log(np.asarray(size, float))
            b = float(t @ y / (t @ t))
            fitted = b * t
            res = y - fitted
            out.update(a=0.0, b=b, fitted=fitted, residuals=res,
                       r2=1 - res @ res / ((y - y.mean()) ** 2).sum())  # fmt: skip
        return out

    return f


@pytest.mark.parametrize(
    "kind",
    [
        "raw-size",
        "residual-sign",
        "r-not-r2",
        "ss-around-zero",
        "reversed",
        "ln-b-with-log10-fitted",
        "no-intercept",
    ],  # fmt: skip
)
def test_ex1_plausible_mistakes_fail(kind):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex1_fit_tests", fit_log_linear=_wrong_fit(kind))


def test_ex1_stub_gets_friendly_message():
    def fit_log_linear(size, acc):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex1_fit_tests", fit_log_linear=fit_log_linear)


def test_ex1_in_place_edit_fails():
    def fit_log_linear(size, acc):
        out = _fit_polyfit_ln(size, acc)
        if isinstance(size, np.ndarray):
            size *= 1.0001  # "normalises" the caller's array
        return out

    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex1_fit_tests", fit_log_linear=fit_log_linear)


# --------------------------------------------------------------------------- exercise 2


def _interval_linregress(size, acc, level=0.95):
    from scipy import stats

    lr = stats.linregress(np.log10(np.asarray(size, float)), np.asarray(acc, float))
    q = stats.t.ppf((1 + level) / 2, len(size) - 2)
    return (lr.slope - q * lr.stderr, lr.slope + q * lr.stderr)


def _interval_polyfit_cov(size, acc, level=0.95):
    from scipy import stats

    (b, _), cov = np.polyfit(np.log10(np.asarray(size, float)), np.asarray(acc, float), 1, cov=True)
    q = stats.t.ppf((1 + level) / 2, len(size) - 2)
    se = math.sqrt(cov[0, 0])
    return float(b - q * se), float(b + q * se)


def _interval_scipy_t_interval(size, acc, level=0.95):
    """SciPy's own t-interval: (nan, nan) on points exactly on a line, so never test one."""
    from scipy import stats

    lr = stats.linregress(np.log10(np.asarray(size, float)), np.asarray(acc, float))
    return stats.t.interval(level, len(size) - 2, loc=lr.slope, scale=lr.stderr)


def _interval_float32(size, acc, level=0.95):
    from scipy import stats

    t = np.log10(np.asarray(size, dtype=np.float32))
    y = np.asarray(acc, dtype=np.float32)
    tc = t - t.mean()
    b = (tc @ (y - y.mean())) / (tc @ tc)
    r = y - (y.mean() + b * tc)
    se = np.sqrt((r @ r) / np.float32(len(t) - 2) / (tc @ tc))
    q = np.float32(stats.t.ppf((1 + level) / 2, len(t) - 2))
    return b - q * se, b + q * se


def _interval_torch(size, acc, level=0.95):
    torch = pytest.importorskip("torch")
    from scipy import stats

    t = torch.log10(torch.as_tensor(size, dtype=torch.float32))
    y = torch.as_tensor(acc, dtype=torch.float32)
    tc = t - t.mean()
    b = (tc * (y - y.mean())).sum() / (tc * tc).sum()
    r = y - (y.mean() + b * tc)
    se = torch.sqrt((r * r).sum() / (len(t) - 2) / (tc * tc).sum())
    q = float(stats.t.ppf((1 + level) / 2, len(t) - 2))
    return b - q * se, b + q * se  # 0-d float32 tensors


@pytest.mark.parametrize(
    "variant", [_interval_float32, _interval_torch], ids=["float32-numpy", "torch"]
)
def test_ex2_float32_variants_pass(variant):
    run_test_cell(NB, "ex2_interval_tests", slope_interval=variant)


def test_ex2_hidden_message_does_not_give_the_interval():
    with pytest.raises(AssertionError) as err:
        run_test_cell(NB, "ex2_interval_tests", slope_interval=_wrong_interval("n-not-n-2"))
    assert re.fullmatch(r"wrong interval \(n=\d+, level=[\d.]+\)", str(err.value))


def test_ex2_reference_and_variants_pass():
    run_test_cell(NB, "ex2_interval_tests", slope_interval=_ref("ex2_interval", "slope_interval"))
    run_test_cell(NB, "ex2_interval_tests", slope_interval=_interval_linregress)
    run_test_cell(NB, "ex2_interval_tests", slope_interval=_interval_polyfit_cov)
    run_test_cell(NB, "ex2_interval_tests", slope_interval=_interval_scipy_t_interval)
    run_test_cell(
        NB,
        "ex2_interval_tests",
        slope_interval=lambda s, a, level=0.95: tg.per_decade_interval(s, a, level),
    )
    for container in (list, np.array):  # the same two numbers in another container
        run_test_cell(
            NB,
            "ex2_interval_tests",
            slope_interval=lambda s, a, level=0.95, c=container: c(
                _interval_linregress(s, a, level)
            ),
        )


def _wrong_interval(kind):
    def f(size, acc, level=0.95):
        from scipy import stats

        x = np.asarray(size, float)
        t = np.log(x) if kind == "natural-log" else np.log10(x)
        y = np.asarray(acc, float)
        n = len(t)
        tc = t - t.mean()
        b = tc @ (y - y.mean()) / (tc @ tc)
        r = y - (y.mean() + b * tc)
        dof = n if kind == "n-not-n-2" else n - 2
        var = (r @ r) / dof / (tc @ tc)
        se = var if kind == "no-sqrt" else math.sqrt(var)
        if kind == "z-not-t":
            q = stats.norm.ppf((1 + level) / 2)
        elif kind == "ignores-level":
            q = stats.t.ppf(0.975, n - 2)
        elif kind == "one-sided":
            q = stats.t.ppf(level, n - 2)
        else:
            q = stats.t.ppf((1 + level) / 2, n - 2)
        return float(b - q * se), float(b + q * se)

    return f


@pytest.mark.parametrize(
    "kind", ["natural-log", "n-not-n-2", "no-sqrt", "z-not-t", "ignores-level", "one-sided"]
)
def test_ex2_plausible_mistakes_fail(kind):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex2_interval_tests", slope_interval=_wrong_interval(kind))


def test_ex2_visible_check_catches_natural_log_on_noisy_points():
    with pytest.raises(AssertionError, match="log10 unit"):
        run_visible_checks(NB, "ex2_interval_tests", slope_interval=_wrong_interval("natural-log"))


# --------------------------------------------------------------------------- exercise 3


def _sample_shuffle_round_robin(labels, ids, k, seed, exclude=()):
    # another correct strategy: shuffle all allowed items once, then fill classes round-robin
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    allowed = [i for i in rng.permutation(len(labels)) if ids[i] not in set(exclude)]
    if k > len(allowed):
        raise ValueError("k too large")
    by_class: dict[int, list[int]] = {}
    for i in allowed:
        by_class.setdefault(int(labels[i]), []).append(int(i))
    out: list[int] = []
    level = 0
    while len(out) < k:
        order = [c for c in rng.permutation(sorted(by_class)) if len(by_class[c]) > level]
        for c in order[: k - len(out)]:
            out.append(by_class[c][level])
        level += 1
    return np.array(out)


def test_ex3_reference_and_variants_pass():
    run_test_cell(NB, "ex3_fewshot_tests", few_shot_sample=_ref("ex3_fewshot", "few_shot_sample"))
    run_test_cell(NB, "ex3_fewshot_tests", few_shot_sample=tg.few_shot_sample)
    run_test_cell(NB, "ex3_fewshot_tests", few_shot_sample=_sample_shuffle_round_robin)


def _wrong_sample(kind):
    def f(labels, ids, k, seed, exclude=()):
        labels = np.asarray(labels)
        rng = np.random.default_rng(seed)
        if kind == "leaks-test":
            return tg.few_shot_sample(labels, ids, k, seed)
        allowed = np.array([i for i, x in enumerate(ids) if x not in set(exclude)])
        if k > len(allowed):
            raise ValueError("k too large")
        if kind == "unstratified":
            return rng.choice(allowed, size=k, replace=False)
        if kind == "with-replacement":
            return rng.choice(allowed, size=k, replace=True)
        if kind == "ignores-seed":
            return tg.few_shot_sample(labels, ids, k, 0, exclude)
        if kind == "k-per-class":
            classes = np.unique(labels[allowed])
            return np.concatenate(
                [rng.permutation(allowed[labels[allowed] == c])[:k] for c in classes]
            )
        if kind == "returns-ids":
            return np.array([ids[i] for i in tg.few_shot_sample(labels, ids, k, seed, exclude)])
        if kind == "floor-only":  # k // C per class, the remainder dropped or filled at random
            classes = np.unique(labels[allowed])
            per = k // len(classes)
            base = np.concatenate(
                [rng.permutation(allowed[labels[allowed] == c])[:per] for c in classes]
            )
            rest = rng.choice(np.setdiff1d(allowed, base), size=k - len(base), replace=False)
            return np.concatenate([base, rest])
        if kind == "short-class-short":  # a short class gives what it has; nobody fills the gap
            classes = rng.permutation(np.unique(labels[allowed]))
            base, extra = divmod(k, len(classes))
            return np.concatenate(
                [
                    rng.permutation(allowed[labels[allowed] == c])[: base + (j < extra)]
                    for j, c in enumerate(classes)
                ]
            )
        raise AssertionError(kind)

    return f


def _refuses_k_equal_allowed(labels, ids, k, seed, exclude=()):
    # off by one: k equal to the number of allowed candidates is legal
    if k >= len([x for x in ids if x not in set(exclude)]):
        raise ValueError("k too large")
    return tg.few_shot_sample(labels, ids, k, seed, exclude)


def test_ex3_k_equal_to_allowed_must_not_raise():
    with pytest.raises(AssertionError, match="take them all"):
        run_visible_checks(NB, "ex3_fewshot_tests", few_shot_sample=_refuses_k_equal_allowed)
    with pytest.raises(AssertionError, match="takes them all"):
        _run_hidden_tests("ex3_fewshot_tests", few_shot_sample=_refuses_k_equal_allowed)


def _no_value_error(labels, ids, k, seed, exclude=()):
    allowed = [i for i, x in enumerate(ids) if x not in set(exclude)]
    if k > len(allowed):
        return np.array(allowed)  # silently fewer than k
    return tg.few_shot_sample(labels, ids, k, seed, exclude)


@pytest.mark.parametrize(
    "kind",
    [
        "leaks-test",
        "unstratified",
        "with-replacement",
        "ignores-seed",
        "k-per-class",
        "returns-ids",
        "floor-only",
        "short-class-short",
    ],
)
def test_ex3_plausible_mistakes_fail(kind):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex3_fewshot_tests", few_shot_sample=_wrong_sample(kind))


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [(_wrong_sample("short-class-short"), "only 2 candidates"), (_no_value_error, "ValueError")],
    ids=["short-class", "no-value-error"],
)
def test_ex3_short_class_and_value_error_rules_are_visible(wrong, hint):

    with pytest.raises(AssertionError, match=hint):
        run_visible_checks(NB, "ex3_fewshot_tests", few_shot_sample=wrong)


def test_ex3_k_per_class_gets_the_sample_size_hint():

    with pytest.raises(AssertionError, match="not a number per class"):
        run_visible_checks(NB, "ex3_fewshot_tests", few_shot_sample=_wrong_sample("k-per-class"))
