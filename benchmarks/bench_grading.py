"""Benchmark: `xlt-course grade --jobs J` against plain serial nbgrader, same submissions.

Creates N submissions for every lesson (cycling correct, wrong and blank), then grades them
twice in this one run:

1. plain nbgrader, serially, as an instructor would without this course's tooling:
   ``nbgrader generate_assignment`` + ``nbgrader autograde`` + ``nbgrader generate_feedback``
   per lesson, in one scratch course, with the course's ``autograder/nbgrader_config.py``;
2. ``xlt-course grade SUBMISSIONS --out OUT --jobs J`` (which also generates the lessons'
   gradebooks, sandboxes the kernels, guards the tests and writes feedback and a summary).

Prints both wall times, their ratio, where the time of one notebook goes (worker, kernel
start, cells, feedback), the start time of a bare Python kernel measured on its own, and
whether every per-exercise score is identical, ending with ``ratio=R identical=yes|no``.

    .venv/bin/python benchmarks/bench_grading.py --n 6 --jobs 2          # the real run
    .venv/bin/python benchmarks/bench_grading.py --n 1 --lessons 00-setup  # a smoke run
    .venv/bin/python benchmarks/bench_grading.py --n 3 --all-cells        # no cell skipping

Our side skips the unedited author cells no graded cell needs (autograder/cell_skip.py);
it prints how many cells it skipped and ran per lesson.

Both sides set ``XLT_COURSE_GRADING=1`` (lessons skip training while graded).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder import grading, notebooks, paths

KINDS = ("correct", "wrong", "blank")


def _solution_cells(lesson: str) -> dict[str, str]:
    nb = notebooks.read_notebook(paths.solutions_dir() / lesson / f"{lesson}.ipynb")
    return {
        gid: c.source
        for gid, c in notebooks.grade_cells(nb).items()
        if c.metadata["nbgrader"].get("solution")
    }


def _wrong(source: str) -> str:
    """Replace each solution region with a plausible wrong body: ``return None``."""
    pattern = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION\n?", re.S | re.M)
    return pattern.sub(lambda m: f"{m.group(1)}return None  # wrong\n", source)


def make_submissions(root: Path, lessons: list[str], n: int) -> dict[tuple[str, str], str]:
    """Write ``root/STUDENT/LESSON/LESSON.ipynb``; return ``{(student, lesson): kind}``."""
    kinds = {}
    for lesson in lessons:
        release = paths.lessons_dir() / lesson / f"{lesson}.ipynb"
        solutions = _solution_cells(lesson)
        for i in range(n):
            student, kind = f"s{i:03d}", KINDS[i % len(KINDS)]
            nb = notebooks.read_notebook(release)
            for gid, cell in notebooks.grade_cells(nb).items():
                if gid in solutions and kind != "blank":
                    src = solutions[gid]
                    cell.source = src if kind == "correct" else _wrong(src)
            dest = root / student / lesson / f"{lesson}.ipynb"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(notebooks.dumps(nb), encoding="utf-8")
            kinds[(student, lesson)] = kind
    return kinds


def _env() -> dict[str, str]:
    env = dict(os.environ, XLT_COURSE_GRADING="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def plain_nbgrader(subs: Path, course: Path, lessons: list[str]) -> tuple[dict, dict]:
    """Grade with plain serial nbgrader; return ``({(student, lesson): points}, seconds)``."""
    from nbgrader.api import Gradebook

    grading._write_course(course)
    seconds = {"generate": 0.0, "autograde": 0.0, "feedback": 0.0}
    for lesson in lessons:
        shutil.copytree(paths.solutions_dir() / lesson, course / "source" / lesson)
        for student_dir in sorted(subs.iterdir()):
            if (student_dir / lesson).is_dir():
                shutil.copytree(
                    student_dir / lesson, course / "submitted" / student_dir.name / lesson
                )
    for step, args in (
        ("generate", ["generate_assignment", "--force"]),
        ("autograde", ["autograde", "--force"]),
        ("feedback", ["generate_feedback", "--force"]),
    ):
        for lesson in lessons:
            t = time.perf_counter()
            res = subprocess.run(
                [sys.executable, "-m", "nbgrader", *args, lesson, "--log-level=WARN"],
                cwd=course,
                env=_env(),
                capture_output=True,
                text=True,
                check=False,
            )
            seconds[step] += time.perf_counter() - t
            if res.returncode != 0:
                sys.exit(f"plain nbgrader {args[0]} {lesson} failed:\n{res.stderr[-2000:]}")
    points = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "xlt-course") as gb:
        for lesson in lessons:
            for sub in gb.assignment_submissions(lesson):
                nb = gb.find_submission_notebook(lesson, lesson, sub.student.id)
                points[(sub.student.id, lesson)] = {
                    g.name: float(g.score or 0.0) for g in nb.grades
                }
    return points, seconds


def ours(
    subs: Path, out: Path, jobs: int, all_cells: bool = False
) -> tuple[dict, float, list[dict]]:
    """Grade with ``xlt-course grade``; return points, wall seconds and per-job records."""
    t = time.perf_counter()
    res = subprocess.run(
        [str(Path(sys.executable).parent / "xlt-course"), "grade", str(subs), "--out", str(out)]
        + ["--jobs", str(jobs)]
        + (["--all-cells"] if all_cells else []),
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t
    if res.returncode != 0:
        sys.exit(f"xlt-course grade failed:\n{res.stderr[-2000:]}")
    points, timings = {}, []
    for path in sorted((out / ".work" / "jobs").glob("*/*.json")):
        d = json.loads(path.read_text(encoding="utf-8"))
        points[(d["student"], d["lesson"])] = {k: v[0] for k, v in d["points"].items()}
        # written answers: plain nbgrader scores a pending one 0 (ours: None, pending)
        points[(d["student"], d["lesson"])].update(
            {k: v[0] or 0.0 for k, v in d.get("manual", {}).items()}
        )
        timings.append({"lesson": d["lesson"], **d.get("seconds", {})})
    return points, wall, timings


def print_skipped(timings: list[dict]) -> None:
    """Print, per lesson, the code cells the grader skipped and ran (mean per notebook)."""
    by: dict[str, list[dict]] = {}
    for t in timings:
        by.setdefault(t["lesson"], []).append(t)
    print("cells per notebook (skipped / run; regraded with every cell):")
    for lesson, ts in sorted(by.items()):
        skipped = statistics.mean(t.get("cells_skipped", 0.0) for t in ts)
        kept = statistics.mean(t.get("cells_kept", 0.0) for t in ts)
        again = sum(1 for t in ts if t.get("regraded_all_cells"))
        cells = statistics.mean(t.get("cells", 0.0) for t in ts)
        print(
            f"  {lesson}: {skipped:.0f} skipped / {kept:.0f} run; {again} of {len(ts)} "
            f"regraded; cells {cells:.2f} s"
        )


def bare_kernel_start(repeats: int = 3) -> float:
    """Return the median seconds to start a python3 kernel and run an empty cell."""
    from jupyter_client.manager import start_new_kernel

    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        km, kc = start_new_kernel(kernel_name="python3", stderr=subprocess.DEVNULL)
        kc.execute_interactive("pass", timeout=60)
        times.append(time.perf_counter() - t)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the comparison."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=6, help="submissions per lesson (default 6)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--lessons", nargs="+", help="default: every lesson")
    p.add_argument("--keep", help="keep the submissions and outputs in this folder")
    p.add_argument(
        "--all-cells", action="store_true", help="grade with every cell run (no skipping)"
    )
    args = p.parse_args(argv)
    lessons = args.lessons or grading.lesson_names()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="xlt-bench-grade-"))
    if base.exists():
        shutil.rmtree(base)
    try:
        kinds = make_submissions(base / "submissions", lessons, args.n)
        n = len(kinds)
        print(f"{n} submissions ({args.n} per lesson x {len(lessons)} lessons: {', '.join(KINDS)})")
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        plain_points, plain_s = plain_nbgrader(base / "submissions", base / "plain", lessons)
        plain_wall = sum(plain_s.values())
        print(
            f"plain nbgrader, serial: {plain_wall:.1f} s (generate_assignment "
            f"{plain_s['generate']:.1f}, autograde {plain_s['autograde']:.1f}, "
            f"generate_feedback {plain_s['feedback']:.1f}); {plain_s['autograde'] / n:.2f} s "
            "per notebook autograded"
        )
        our_points, our_wall, timings = ours(
            base / "submissions", base / "ours", args.jobs, args.all_cells
        )
        flag = " --all-cells" if args.all_cells else ""
        print(
            f"xlt-course grade --jobs {args.jobs}{flag}: {our_wall:.1f} s (everything, one command)"
        )
        if timings:
            keys = {k for t in timings for k in t if k != "lesson"}
            mean = {k: statistics.mean(t.get(k, 0.0) for t in timings) for k in keys}
            print(
                "  per notebook (mean, inside the worker): "
                + ", ".join(
                    f"{k} {mean[k]:.2f} s"
                    for k in (
                        "prepare",
                        "kernel_start",
                        "before_launch",
                        "spawn",
                        "until_ready",
                        "cells",
                        "feedback",
                    )
                    if k in mean
                )
                + f"; whole job {mean.get('job', 0):.2f} s"
            )
            print_skipped(timings)
        print(f"bare python3 kernel start + empty cell (median of 3): {bare_kernel_start():.2f} s")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        diffs = [
            (k, plain_points.get(k), our_points.get(k))
            for k in sorted(set(plain_points) | set(our_points))
            if plain_points.get(k) != our_points.get(k)
        ]
        for k, a, b in diffs[:10]:
            print(f"  DIFFERENT {k} ({kinds.get(k)}): plain {a} vs ours {b}")
        ratio = plain_wall / our_wall
        print(f"ratio={ratio:.2f} identical={'no' if diffs else 'yes'}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
