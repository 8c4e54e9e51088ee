"""Benchmark CSLS word translation: xlt_course.retrieval.translate_words vs a full-matrix version vs GEMM.

Task: translate every one of n source words (CSLS, k = 10, P@1 ranking, i.e. top-1) against
the target vocabulary. Cases n = 20,000 and n = 200,000 source words.

Data: the real offline vectors when built (``xlt-course data build``): the n most frequent
GloVe EN words and the 14,959 fastText FR words, mapped into their shared 50-d space by
the course's recommended pipeline (``procrustes.BLIConfig.recommended()``), so the target is
the real FR vocabulary in both cases. Without the build, random unit vectors of the same
shapes (documented in the output).

Four computations per case. Their timings alternate in one subprocess (gemm, ours, faiss,
naive, gemm, ...; the best of ``--repeats`` rounds each), so that load drifting on a shared machine
hits all three alike; peak memory is measured by running each computation once more in a
subprocess of its own (peak RSS from /proc VmHWM, which includes the interpreter and the
inputs, and the tracemalloc peak of numpy's allocations):

- ``ours``: ``retrieval.translate_words(X, Y, method="csls", k=10, topn=1)``: the fused
  compiled pass (``xlt_course/retrieval_kernel.py``) plus its exact rescans. Its code is
  compiled (or loaded from numba's disk cache) by a first call on 2,048 rows before any
  timing; that call's seconds are printed apart (``ours_first_s``).
- ``naive``: the straightforward full-matrix numpy version below (materialises the n x m
  similarity matrix, partitions it along both axes, forms the CSLS matrix, argmax). It needs
  about three n x m float32 matrices; if that does not fit in the memory available, it is
  not run at that size (the output says so) and is measured at the largest size that fits,
  its time at the larger size being extrapolated linearly in n (its cost is linear in n for a
  fixed target vocabulary).
- ``faiss``: the peer a user would pick, faiss-cpu's exact ``IndexFlatIP`` on the unit
  vectors: one k-NN search gives r_S, one more exact search of [x, 1] against
  [y, -r_S(y) / 2] gives the CSLS argmax (:func:`faiss_csls_top1`). faiss-cpu is in the
  development set (``requirements/dev.txt``), not a lesson dependency; without it the output
  says so and ``vs_faiss=nan``.
- ``gemm``: only the unavoidable matrix products, Q = X @ Y_blockᵀ over all target blocks
  in float32 into a preallocated (n, block) buffer (each cosine computed once), the fastest
  of several block sizes. Each block of products is written to memory, as ``ours`` does.
- ``gemm_tiled``: the same products into one (rows, cols) tile per thread that stays in
  the core's cache (:func:`gemm_tiled`), the fastest of a few tile shapes: no product ever
  reaches memory, so this is the stricter lower bound for any exact method (on a 2-core
  EPYC it measured about 10% under ``gemm``).

Usage: ``python benchmarks/bench_bli.py [--sizes 20000 200000] [--repeats 3]``. The last line
is ``vs_naive=R1 vs_gemm=R2 vs_faiss=R3 peak_mb=M vs_gemm_tiled=R4`` for the largest size:
R1 = naive time / ours, R2 = ours / matrix-product time (``gemm``), R3 = faiss time / ours,
M = peak resident memory of the process running ours (interpreter and inputs included),
R4 = ours / cache-resident matrix-product time (``gemm_tiled``, the stricter bound).
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
#: (rows, columns) of the cache-resident tiles of :func:`gemm_tiled`, about 0.5-1 MB each.
GEMM_TILES = ((512, 256), (1024, 256), (2048, 256))


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


def faiss_csls_top1(X: np.ndarray, Y: np.ndarray, k: int = K) -> np.ndarray:
    """Return the CSLS top-1 target of every row of X with faiss exact search (the peer).

    What a user who knows faiss would write: ``IndexFlatIP`` (exact inner product) on the
    unit vectors gives r_S(y), the mean cosine of each target to its k nearest sources; the
    CSLS argmax is then one more exact search, of [x, 1] against [y, -r_S(y) / 2], whose
    inner product is cos(x, y) - r_S(y) / 2 (r_T(x) is constant along a query's row, so the
    ranking does not need it).

    Args:
        X: (n, d) unit-length mapped source vectors.
        Y: (m, d) unit-length target vectors.
        k: CSLS neighbourhood.

    Returns:
        (n,) int64 target indices.
    """
    import faiss

    src = faiss.IndexFlatIP(X.shape[1])
    src.add(X)
    sims, _ = src.search(Y, k)
    r_S = sims.mean(axis=1, dtype=np.float64).astype(np.float32)
    tgt = faiss.IndexFlatIP(X.shape[1] + 1)
    tgt.add(np.ascontiguousarray(np.hstack([Y, -0.5 * r_S[:, None]]), dtype=np.float32))
    ones = np.ones((X.shape[0], 1), dtype=np.float32)
    _, idx = tgt.search(np.ascontiguousarray(np.hstack([X, ones])), 1)
    return idx[:, 0].astype(np.int64)


def faiss_available() -> str | None:
    """Return faiss's version, or None when faiss-cpu is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return str(faiss.__version__)


def _faiss_threads() -> int:
    import faiss

    return int(faiss.omp_get_max_threads())


def gemm_only(X: np.ndarray, Y: np.ndarray, block: int) -> None:
    """Compute every cosine once, X @ Y_blockᵀ for all target blocks, into one buffer."""
    buf = np.empty((X.shape[0], min(block, Y.shape[0])), dtype=np.float32)
    for s in range(0, Y.shape[0], block):
        Yb = Y[s : s + block]
        np.matmul(X, Yb.T, out=buf[:, : Yb.shape[0]])


def gemm_tiled(X: np.ndarray, Y: np.ndarray, rows: int, cols: int, threads: int) -> None:
    """Compute every cosine once into a (rows, cols) tile per thread that stays in cache.

    The stricter lower bound: no score leaves the core's cache, so unlike :func:`gemm_only`
    it pays no memory traffic for the products. Each thread takes every ``threads``-th slab
    of ``rows`` source rows with a single-threaded BLAS (as ``translate_words`` does).
    """
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    YT = [np.ascontiguousarray(Y[s : s + cols].T) for s in range(0, Y.shape[0], cols)]

    def work(first: int) -> None:
        tile = np.empty((rows, cols), dtype=np.float32)
        for r in range(first * rows, X.shape[0], threads * rows):
            A = X[r : r + rows]
            for Yb in YT:
                np.matmul(A, Yb, out=tile[: A.shape[0], : Yb.shape[1]])

    with threadpool_limits(1, "blas"), ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))


# --------------------------------------------------------------------------------------------
# Workers: timings in one process, memory in one process per computation
# --------------------------------------------------------------------------------------------


def _load(data: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.ascontiguousarray(np.load(data / "X.npy")[:n]), np.load(data / "Y.npy")


def _ours(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    from xlt_course import retrieval

    return retrieval.translate_words(X, Y, method="csls", k=K, topn=1, progress=False)[:, 0]


def _time_worker(n: int, data: Path, repeats: int, with_naive: bool) -> dict:
    """Alternate gemm / ours / naive ``repeats`` times; the minimum of each is robust to load
    that drifts during the run, which separate processes one after the other are not."""
    X, Y = _load(data, n)
    kinds_all = ("gemm", "gemm_tiled", "ours", "faiss", "naive")
    times: dict[str, list[float]] = {kind: [] for kind in kinds_all}
    cpu: dict[str, list[float]] = {kind: [] for kind in kinds_all}
    blocks: list[int] = []
    tiles: list[tuple[int, int]] = []
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    preds: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    _ours(X[:2048], Y)  # compile, or load the compiled code from numba's cache
    first_s = time.perf_counter() - t0
    for _ in range(repeats):
        best = None
        for block in GEMM_BLOCKS:
            t0, c0 = time.perf_counter(), time.process_time()
            gemm_only(X, Y, block)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if best is None or dt < best[0]:
                best = (dt, dc, block)
        assert best is not None
        times["gemm"].append(best[0])
        cpu["gemm"].append(best[1])
        blocks.append(best[2])
        best_t = None
        for rows, cols in GEMM_TILES:
            t0, c0 = time.perf_counter(), time.process_time()
            gemm_tiled(X, Y, rows, cols, threads)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if best_t is None or dt < best_t[0]:
                best_t = (dt, dc, (rows, cols))
        assert best_t is not None
        times["gemm_tiled"].append(best_t[0])
        cpu["gemm_tiled"].append(best_t[1])
        tiles.append(best_t[2])
        kinds = [("ours", _ours)]
        kinds += [("faiss", faiss_csls_top1)] if faiss_available() else []
        kinds += [("naive", naive_csls_top1)] if with_naive else []
        for kind, fn in kinds:
            t0, c0 = time.perf_counter(), time.process_time()
            preds[kind] = fn(X, Y)
            times[kind].append(time.perf_counter() - t0)
            cpu[kind].append(time.process_time() - c0)
    out: dict = {"n": n, "m": int(Y.shape[0]), "gemm_block": blocks[int(np.argmin(times["gemm"]))]}
    out["gemm_tile"] = list(tiles[int(np.argmin(times["gemm_tiled"]))])
    out["ours_first_s"] = first_s
    for kind in times:
        if times[kind]:
            out[kind] = {"best_s": min(times[kind]), "times": times[kind], "cpu_s": min(cpu[kind])}
    if with_naive:
        out["agreement"] = float(np.mean(preds["ours"] == preds["naive"]))
    if "faiss" in preds:
        out["agreement_faiss"] = float(np.mean(preds["ours"] == preds["faiss"]))
    return out


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    /proc's VmHWM starts afresh with the process image; ru_maxrss (the fallback) is inherited
    across fork and exec on Linux, so it would report the parent's peak when that is larger.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _mem_worker(kind: str, n: int, data: Path) -> dict:
    """Run one computation once; report the process's peak RSS and numpy's traced peak."""
    X, Y = _load(data, n)
    base_mb = _peak_rss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        _ours(X, Y) if kind == "ours" else naive_csls_top1(X, Y)
    except MemoryError as e:
        return {"kind": kind, "n": n, "error": f"MemoryError: {e}"}
    seconds = time.perf_counter() - t0
    _, traced = tracemalloc.get_traced_memory()
    return {
        "kind": kind,
        "n": n,
        "seconds": seconds,
        "maxrss_mb": _peak_rss_mb(),
        "inputs_mb": base_mb,
        "traced_peak_mb": traced / 2**20,
    }


def _worker(kind: str, n: int, data: Path, repeats: int, limit: int | None) -> dict:
    if limit:
        # A cap on the address space turns an over-estimate of free memory into a
        # MemoryError here instead of the kernel's OOM killer choosing a process.
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if kind in ("time", "time+naive"):
        return _time_worker(n, data, repeats, with_naive=kind == "time+naive")
    return _mem_worker(kind, n, data)


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

    from xlt_course import procrustes

    try:
        from xlt_course.data.dictionary import load_dictionary
        from xlt_course.data.vectors import load_vectors

        en, fr = load_vectors("en"), load_vectors("fr")
        train = load_dictionary("en", "fr", split="train")
    except Exception as e:  # noqa: BLE001 - any failure means: no built data, go synthetic
        rng = np.random.default_rng(0)
        X = procrustes.normalize(rng.normal(size=(n_max, 50)), center=False)
        Y = procrustes.normalize(rng.normal(size=(14_959, 50)), center=False)
        desc = f"synthetic unit Gaussian vectors (offline data not built: {type(e).__name__})"
    else:
        from dataclasses import replace

        cfg = replace(procrustes.BLIConfig.recommended(), fit_vocab=max(n_max, 200_000))
        S, T = procrustes.prepare_spaces(en, fr, cfg, src="en", tgt="fr")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", procrustes.DroppedPairsWarning)
            ids, _ = procrustes.pairs_to_indices(train, S, T)
        W_src, W_tgt = procrustes.whitened_mapping(S.vectors[ids[:, 0]], T.vectors[ids[:, 1]])
        X = procrustes.normalize(S.vectors[:n_max] @ W_src, center=False)
        Y = procrustes.normalize(T.vectors[: cfg.tgt_vocab] @ W_tgt, center=False)
        desc = (
            f"real vectors: top {X.shape[0]} GloVe EN words and {Y.shape[0]} fastText FR "
            f"words in their shared {X.shape[1]}-d space (recommended pipeline)"
        )
    np.save(folder / "X.npy", X.astype(np.float32))
    np.save(folder / "Y.npy", Y.astype(np.float32))
    return desc


def _naive_bytes(n: int, m: int) -> int:
    """Memory the naive version needs: about three (n, m) float32 matrices, plus 1 GiB."""
    return 3 * n * m * 4 + 2**30


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
    p.add_argument(
        "--naive-max",
        type=int,
        default=None,
        help="run the full-matrix version at most at this n (default: the largest n that fits)",
    )
    p.add_argument(
        "--worker", choices=["time", "time+naive", "ours", "naive"], help=argparse.SUPPRESS
    )
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
        faiss_version = faiss_available()
        if faiss_version is None:
            print(
                "faiss: NOT INSTALLED, so the faiss peer is not measured and vs_faiss=nan "
                "(install the development set: pip install -r requirements/dev.txt)"
            )
        else:
            print(f"faiss: faiss-cpu {faiss_version}, {_faiss_threads()} threads")
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
              f"numpy {np.__version__}; best of {args.repeats} alternating runs per timing")  # fmt: skip

        def naive_fits(n: int) -> bool:
            if args.naive_max is not None and n > args.naive_max:
                return False
            return _naive_bytes(n, m) < 0.8 * _available_bytes()

        results = []
        for n in sizes:
            fits = naive_fits(n)
            limit = _naive_bytes(n, m) + 4 * 2**30 if fits else None
            timing = _run_worker("time+naive" if fits else "time", n, data, args.repeats, limit)
            mem = _run_worker("ours", n, data, 1, None)
            naive_mem = _run_worker("naive", n, data, 1, limit) if fits else None
            results.append((n, fits, timing, mem, naive_mem))
            print(f"n={n}: {json.dumps(timing)}", flush=True)  # raw figures, as they come

        # Where the naive version did not fit, time it at the largest size that does.
        ref = None
        if not all(fits for _, fits, *_ in results):
            n_try = max(n for n, *_ in results)
            while n_try >= 1000 and not naive_fits(n_try):
                n_try //= 2
            if n_try >= 1000:
                limit = _naive_bytes(n_try, m) + 4 * 2**30
                ref = _run_worker("time+naive", n_try, data, args.repeats, limit)
                ref_mem = _run_worker("naive", n_try, data, 1, limit)
                if "error" in ref:
                    ref = None
                else:
                    ref["naive_mb"] = ref_mem.get("maxrss_mb", float("nan"))

        print(f"\n{'n':>8} {'m':>6} | {'ours s':>7} {'gemm s':>7} {'naive s':>8} | "
              f"{'ours/gemm':>9} {'naive/ours':>10} | {'ours MB':>7} {'naive MB':>8}")  # fmt: skip
        summary = None
        for n, fits, timing, mem, naive_mem in results:
            if "error" in timing or "error" in mem:
                print(f"{n:>8} failed: {timing.get('error') or mem.get('error')}")
                continue
            t_ours, t_gemm = timing["ours"]["best_s"], timing["gemm"]["best_s"]
            if fits:
                t_naive = timing["naive"]["best_s"]
                naive_mb = (
                    f"{naive_mem['maxrss_mb']:>8.0f}" if "maxrss_mb" in naive_mem else "       -"
                )
                note = f"naive measured; its top-1 agrees with ours on {timing['agreement']:.2%}"
            elif ref is not None:
                t_naive = ref["naive"]["best_s"] * n / ref["n"]
                naive_mb = f"{'-':>8}"
                note = (
                    f"naive NOT RUN at n={n} (--naive-max {args.naive_max}; it needs "
                    f"~{_naive_bytes(n, m) / 2**30:.0f} GiB, {_available_bytes() / 2**30:.0f} GiB "
                    "available); its time here is "
                    f"extrapolated linearly in n from n={ref['n']} (naive {ref['naive']['best_s']:.2f}"
                    f" s, {ref['naive_mb']:.0f} MB; ours {ref['ours']['best_s']:.2f} s there: "
                    f"measured naive/ours = {ref['naive']['best_s'] / ref['ours']['best_s']:.2f})"
                )
            else:
                t_naive, naive_mb, note = float("nan"), f"{'-':>8}", "naive not measured"
            r1, r2 = t_naive / t_ours, t_ours / t_gemm
            t_faiss = timing["faiss"]["best_s"] if "faiss" in timing else float("nan")
            r3 = t_faiss / t_ours
            print(
                f"{n:>8} {m:>6} | {t_ours:>7.2f} {t_gemm:>7.2f} {t_naive:>8.2f} | "
                f"{r2:>9.2f} {r1:>10.2f} | {mem['maxrss_mb']:>7.0f} {naive_mb}"
            )
            gflops = 2 * n * m * 50 / t_gemm / 1e9
            print(f"{'':>8} {note}")
            if "faiss" in timing:
                print(f"{'':>8} faiss (IndexFlatIP r_S + augmented exact top-1 search): "
                      f"{t_faiss:.2f} s, faiss/ours = {r3:.2f}; its top-1 agrees with ours on "
                      f"{timing['agreement_faiss']:.2%}")  # fmt: skip
            print(f"{'':>8} gemm: block {timing['gemm_block']}, {gflops:.0f} GFLOP/s; ours: all "
                  f"times {[round(t, 2) for t in timing['ours']['times']]} after a first call of "
                  f"{timing['ours_first_s']:.2f} s (compile or load), CPU {timing['ours']['cpu_s']:.2f} s "
                  f"(gemm CPU {timing['gemm']['cpu_s']:.2f} s), numpy peak {mem['traced_peak_mb']:.0f} MB, "
                  f"inputs+interpreter {mem['inputs_mb']:.0f} MB")  # fmt: skip
            t_tiled = timing["gemm_tiled"]["best_s"]
            r4 = t_ours / t_tiled
            print(f"{'':>8} gemm into cache-resident tiles {timing['gemm_tile']} (the stricter "
                  f"bound: no product reaches memory): {t_tiled:.2f} s, CPU "
                  f"{timing['gemm_tiled']['cpu_s']:.2f} s, ours/tiled = {r4:.2f}")  # fmt: skip
            summary = (r1, r2, r3, mem["maxrss_mb"], r4)
            cpu_o, cpu_g = timing["ours"]["cpu_s"], timing["gemm"]["cpu_s"]
            cpu_f = timing["faiss"]["cpu_s"] if "faiss" in timing else float("nan")
            # On a machine shared with other jobs the wall times mostly measure the others;
            # the CPU seconds of all threads are the work each method does.
            cpu_t = timing["gemm_tiled"]["cpu_s"]
            cpu_line = (
                f"cpu: ours/gemm={cpu_o / cpu_g:.2f} ours/gemm_tiled={cpu_o / cpu_t:.2f} "
                f"faiss/ours={cpu_f / cpu_o:.2f} (CPU seconds of all threads, best round: ours "
                f"{cpu_o:.2f}, gemm {cpu_g:.2f}, gemm_tiled {cpu_t:.2f}, faiss {cpu_f:.2f})"
            )
            print(f"{'':>8} {cpu_line}")
        if summary is None:
            return 1
        print(f"load average at end {os.getloadavg()[0]:.1f}")
        print(cpu_line)
        print(
            f"vs_naive={summary[0]:.2f} vs_gemm={summary[1]:.2f} vs_faiss={summary[2]:.2f} "
            f"peak_mb={summary[3]:.0f} vs_gemm_tiled={summary[4]:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
