"""Benchmark CSLS word translation: xlt_course.align.translate vs a full-matrix version vs GEMM.

Task: translate every one of n source words (CSLS, k = 10, P@1 ranking, i.e. top-1) against
the target vocabulary. Cases n = 20,000 and n = 200,000 source words.

Data: the real offline vectors when built (``xlt-course data build``): the n most frequent
GloVe EN words and the 14,959 fastText FR words, mapped into their shared 50-d space by
the course's recommended pipeline (``align.BLIConfig.recommended()``), so the target is
the real FR vocabulary in both cases. Without the build, random unit vectors of the same
shapes (documented in the output).

Three timings per case, each in its own subprocess so that peak memory (ru_maxrss, and the
tracemalloc peak of numpy allocations) belongs to that computation alone:

- ``ours``: ``align.translate(X, Y, method="csls", k=10, topn=1)``, streaming.
- ``naive``: the straightforward full-matrix numpy version below (materialises the n x m
  similarity matrix, partitions it along both axes, forms the CSLS matrix, argmax). It needs
  about three n x m float32 matrices; if that does not fit in the memory available, it is
  not run at that size (the output says so) and is measured at the largest size that fits,
  its time at the larger size being extrapolated linearly in n (its cost is linear in n for a
  fixed target vocabulary).
- ``gemm``: only the unavoidable matrix products, Q = X @ Y_blockᵀ over all target blocks
  in float32 into a preallocated buffer (each cosine computed once), the fastest of several
  block sizes. This is a lower bound for any exact method.

Usage: ``python benchmarks/bench_bli.py [--sizes 20000 200000] [--repeats 3]``. The last line
is ``vs_naive=R1 vs_gemm=R2 peak_mb=M`` for the largest size: R1 = naive time / ours,
R2 = ours / matrix-product time, M = peak resident memory of the process running ours.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

K = 10
GEMM_BLOCKS = (256, 512, 1024, 2048)


def naive_csls_top1(X: np.ndarray, Y: np.ndarray, k: int = K) -> np.ndarray:
    """Return the CSLS top-1 target of every row of X with the full (n, m) matrix (baseline).

    Args:
        X: (n, d) unit-length mapped source vectors.
        Y: (m, d) unit-length target vectors.
        k: CSLS neighbourhood.

    Returns:
        (n,) int64 target indices.
    """
    S = X @ Y.T
    r_tgt = np.partition(S, S.shape[1] - k, axis=1)[:, -k:].mean(axis=1)
    r_src = np.partition(S, S.shape[0] - k, axis=0)[-k:].mean(axis=0)
    return np.argmax(2 * S - r_tgt[:, None] - r_src[None, :], axis=1)


def gemm_only(X: np.ndarray, Y: np.ndarray, block: int) -> None:
    """Compute every cosine once, X @ Y_blockᵀ for all target blocks, into one buffer."""
    buf = np.empty((X.shape[0], min(block, Y.shape[0])), dtype=np.float32)
    for s in range(0, Y.shape[0], block):
        Yb = Y[s : s + block]
        np.matmul(X, Yb.T, out=buf[:, : Yb.shape[0]])


# --------------------------------------------------------------------------------------------
# Worker: one computation, one process
# --------------------------------------------------------------------------------------------


def _worker(kind: str, n: int, data: Path, repeats: int, limit_bytes: int | None) -> dict:
    if limit_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    X = np.load(data / "X.npy")[:n].copy()
    Y = np.load(data / "Y.npy")
    from xlt_course import align

    times: list[float] = []
    cpu: list[float] = []
    extra: dict = {}
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            if kind == "ours":
                pred = align.translate(X, Y, method="csls", k=K, topn=1, progress=False)[:, 0]
            elif kind == "naive":
                pred = naive_csls_top1(X, Y)
            elif kind == "gemm":
                best = None
                for block in GEMM_BLOCKS:
                    t1 = time.perf_counter()
                    gemm_only(X, Y, block)
                    dt = time.perf_counter() - t1
                    if best is None or dt < best[0]:
                        best = (dt, block)
                assert best is not None
                times.append(best[0])
                cpu.append((time.process_time() - c0) * best[0] / (time.perf_counter() - t0))
                extra["block"] = best[1]
                continue
            else:
                raise ValueError(kind)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    except MemoryError as e:
        return {"kind": kind, "n": n, "error": f"MemoryError: {e}"}
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if kind in ("ours", "naive"):
        np.save(data / f"pred_{kind}_{n}.npy", pred)
    return {
        "kind": kind,
        "n": n,
        "m": int(Y.shape[0]),
        "times": times,
        "best_s": min(times),
        "cpu_s": min(cpu),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "traced_peak_mb": traced_peak / 2**20,
        **extra,
    }


def _run_worker(kind: str, n: int, data: Path, repeats: int, limit: int | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--n", str(n), "--data", str(data)]
    cmd += ["--repeats", str(repeats)] + (["--limit", str(limit)] if limit else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"kind": kind, "n": n, "error": (out.stderr or out.stdout).strip()[-400:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Parent: data, cases, report
# --------------------------------------------------------------------------------------------


def _prepare_data(n_max: int, folder: Path) -> str:
    """Write X (n_max, 50) and Y (m, 50) unit-length float32 to ``folder``; describe them."""
    import warnings

    from xlt_course import align

    try:
        from xlt_course.data.dictionary import load_dictionary
        from xlt_course.data.vectors import load_vectors

        en, fr = load_vectors("en"), load_vectors("fr")
        train = load_dictionary("en", "fr", split="train")
    except Exception as e:  # noqa: BLE001 - any failure means: no built data, go synthetic
        rng = np.random.default_rng(0)
        X = align.normalize(rng.normal(size=(n_max, 50)), center=False)
        Y = align.normalize(rng.normal(size=(14_959, 50)), center=False)
        desc = f"synthetic unit Gaussian vectors (offline data not built: {type(e).__name__})"
    else:
        from dataclasses import replace

        cfg = replace(align.BLIConfig.recommended(), fit_vocab=max(n_max, 200_000))
        S, T = align.prepare_spaces(en, fr, cfg, src="en", tgt="fr")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", align.DroppedPairsWarning)
            ids, _ = align.pairs_to_indices(train, S, T)
        W_src, W_tgt = align.whitened_mapping(S.vectors[ids[:, 0]], T.vectors[ids[:, 1]])
        X = align.normalize(S.vectors[:n_max] @ W_src, center=False)
        Y = align.normalize(T.vectors[: cfg.tgt_vocab] @ W_tgt, center=False)
        desc = (
            f"real vectors: top {X.shape[0]} GloVe EN words and {Y.shape[0]} fastText FR "
            f"words in their shared {X.shape[1]}-d space (recommended pipeline)"
        )
    np.save(folder / "X.npy", X.astype(np.float32))
    np.save(folder / "Y.npy", Y.astype(np.float32))
    return desc


def _available_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table and the summary line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--worker", choices=["ours", "naive", "gemm"], help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.n, args.data, args.repeats, args.limit)))
        return 0

    sizes = sorted(args.sizes)
    with tempfile.TemporaryDirectory(prefix="bench_bli_") as tmp:
        data = Path(tmp)
        desc = _prepare_data(sizes[-1], data)
        m = int(np.load(data / "Y.npy", mmap_mode="r").shape[0])
        print(f"data: {desc}")
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
              f"numpy {np.__version__}; best of {args.repeats} runs per timing")  # fmt: skip
        rows = []
        naive_ref: dict | None = None
        for n in sizes:
            ours = _run_worker("ours", n, data, args.repeats, None)
            gemm = _run_worker("gemm", n, data, args.repeats, None)
            need = 3 * n * m * 4 + 2**30
            avail = _available_bytes()
            naive: dict
            if need < 0.8 * avail:
                naive = _run_worker("naive", n, data, args.repeats, need + 4 * 2**30)
            else:
                naive = {"error": f"needs ~{need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB free"}
            if "error" not in naive:
                same = np.mean(
                    np.load(data / f"pred_ours_{n}.npy") == np.load(data / f"pred_naive_{n}.npy")
                )
                naive["agreement"] = float(same)
                naive_ref = naive
            rows.append((n, ours, gemm, naive))

        # The naive version at the largest size that fitted, for sizes where it did not.
        for n, _ours, _gemm, naive in rows:
            if "error" in naive and naive_ref is None:
                n_try = n // 2
                while n_try >= 1000 and 3 * n_try * m * 4 + 2**30 >= 0.8 * _available_bytes():
                    n_try //= 2
                if n_try >= 1000:
                    r = _run_worker("naive", n_try, data, args.repeats, 3 * n_try * m * 16)
                    if "error" not in r:
                        naive_ref = r

        print(f"\n{'n':>8} {'m':>6} | {'ours s':>8} {'gemm s':>8} {'naive s':>9} | "
              f"{'ours/gemm':>9} {'naive/ours':>10} | {'ours MB':>8} {'naive MB':>9}")  # fmt: skip
        summary = None
        for n, ours, gemm, naive in rows:
            if "error" in ours or "error" in gemm:
                print(f"{n:>8} failed: {ours.get('error') or gemm.get('error')}")
                continue
            r2 = ours["best_s"] / gemm["best_s"]
            if "error" not in naive:
                t_naive, note = naive["best_s"], f"measured, agreement {naive['agreement']:.4f}"
                naive_mb = f"{naive['maxrss_mb']:>9.0f}"
            elif naive_ref is not None:
                t_naive = naive_ref["best_s"] * n / naive_ref["n"]
                note = (f"NOT RUN at n={n} ({naive['error']}); extrapolated from "
                        f"n={naive_ref['n']}: {naive_ref['best_s']:.2f} s, "
                        f"{naive_ref['maxrss_mb']:.0f} MB")  # fmt: skip
                naive_mb = f"{'-':>9}"
            else:
                t_naive, note, naive_mb = float("nan"), naive["error"], f"{'-':>9}"
            r1 = t_naive / ours["best_s"]
            print(
                f"{n:>8} {ours['m']:>6} | {ours['best_s']:>8.2f} {gemm['best_s']:>8.2f} "
                f"{t_naive:>9.2f} | {r2:>9.2f} {r1:>10.2f} | {ours['maxrss_mb']:>8.0f} {naive_mb}"
            )
            print(f"{'':>8} naive: {note}; gemm block {gemm['block']}, "
                  f"{2 * n * m * 50 / gemm['best_s'] / 1e9:.0f} GFLOP/s; ours tracemalloc peak "
                  f"{ours['traced_peak_mb']:.0f} MB")  # fmt: skip
            summary = (r1, r2, ours["maxrss_mb"])
        if summary is None:
            return 1
        print(f"vs_naive={summary[0]:.2f} vs_gemm={summary[1]:.2f} peak_mb={summary[2]:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
