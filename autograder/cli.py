"""The ``xlt-course`` command line: the student commands plus the instructor's.

One entry point for both audiences: ``xlt-course`` runs :func:`main` here, which adds the
instructor commands (``lessons``, ``grade``, ``course``) to the student commands of
:mod:`xlt_course.cli` (``data``, ``env``, ``bli``, ``pretrain``, ``translate``). The grading
code is imported only when an instructor command runs, so ``xlt-course data build`` never
loads nbgrader. ``python -m xlt_course.cli`` has the student commands alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xlt_course import cli as student_cli


def _lessons(args: argparse.Namespace) -> int:
    from autograder import grading, notebooks, paths

    names = args.lesson or grading.lesson_names()
    setting = notebooks.repository_setting()
    for n in names:
        path = paths.solutions_dir() / n / f"{n}.ipynb"
        if not args.check and notebooks.sync_repository_setting(path, setting):
            print(
                f"updated the badge and setup cell of {path} ({setting.repository} @ {setting.ref})"
            )
    if args.check:
        drift = {n: grading.lesson_drift(n) for n in names}
        for n, d in drift.items():
            print(
                f"{n}: {'up to date' if not d else 'DIFFERS from solutions/ (run xlt-course lessons)'}"
            )
        return 1 if any(drift.values()) else 0
    for path in grading.generate_lessons(names):
        print(f"generated {path}")
    return 0


UNSANDBOXED_BANNER = (
    "\n" + "!" * 78 + "\n"
    "!! UNSANDBOXED: students' notebooks ran with no isolation (--unsafe-no-sandbox).\n"
    "!! They could read the solutions, other students' work and the gradebook, and\n"
    "!! every grade in grades.csv is flagged UNSANDBOXED.\n" + "!" * 78
)


def _grade(args: argparse.Namespace) -> int:
    import time

    from autograder import grading, term_cli

    started = time.time() - 1
    limits = grading.GradeLimits(
        notebook_timeout=args.timeout,
        cell_timeout=args.cell_timeout,
        memory_mb=args.memory_mb,
        include_hidden=args.include_hidden,
        sandbox="none" if args.unsafe_no_sandbox else "bwrap",
        skip_cells=not args.all_cells,
    )
    shard = None
    if args.shard:
        from autograder.shards import Shard

        shard = Shard.parse(args.shard)
    if args.unsafe_no_sandbox:
        print(UNSANDBOXED_BANNER, file=sys.stderr)
    results = grading.grade(
        Path(args.submissions),
        Path(args.out),
        lessons=args.lesson,
        students=args.student,
        jobs=args.jobs,
        limits=limits,
        config=Path(args.config) if args.config else None,
        shard=shard,
    )
    term_cli.print_intake(Path(args.out), started)
    reused = sum(r.reused for r in results)
    unchanged = f" ({reused} unchanged since the last run: grades reused)" if reused else ""
    print(f"graded {len(results)} submissions{unchanged} -> {Path(args.out) / 'grades.csv'}")
    if shard is not None:
        print(
            f"shard {shard}: merge every shard with `xlt-course grade-merge SHARD_DIRS... --out DIR`"
        )
    print(f"score histograms -> {Path(args.out) / 'summary'}")
    flagged = [r for r in results if r.flags]
    for r in flagged:
        print(f"  flagged {r.student}/{r.lesson}: {'; '.join(r.flags)}")
    if args.unsafe_no_sandbox:
        print(UNSANDBOXED_BANNER, file=sys.stderr)
    failed = [r for r in results if grading.GRADER_ERROR_FLAG in r.flags]
    if failed:
        print(
            f"error: the grader failed on {len(failed)} submission(s), listed with GRADER ERROR "
            "above (scored 0 in grades.csv for now). Run the same command again: graded "
            "submissions are kept and only these are regraded.",
            file=sys.stderr,
        )
        return 3
    return 0


def _grade_merge(args: argparse.Namespace) -> int:
    from autograder import shards

    grades = shards.merge([Path(d) for d in args.shards], Path(args.out))
    print(f"merged {len(args.shards)} shards -> {grades}")
    return 0


def _course(args: argparse.Namespace) -> int:
    from autograder import course

    runs = course.run_course(
        smoke=args.smoke, out=Path(args.out) if args.out else None, lessons=args.lesson or None
    )
    print(course.format_summary(runs))
    table = course.record_times(runs, smoke=args.smoke)
    print(f"\nseconds per lesson, {'smoke' if args.smoke else 'full'} size (cold: computed and "
          f"cached its results; cached: ran from data/cache), kept in data/cache/{course.TIMES_FILE}:")  # fmt: skip
    print(course.format_times(table, [r.lesson for r in runs]))
    return 0 if all(r.executed for r in runs) else 1


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``xlt-course`` (every command)."""
    p = argparse.ArgumentParser(prog="xlt-course", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    student_cli.add_commands(sub)
    add_commands(sub)
    return p


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the instructor's commands: lessons, grade, course, and the term's (autograder/term_cli.py)."""
    le = sub.add_parser("lessons", help="regenerate lessons/ from solutions/ with nbgrader")
    le.add_argument("lesson", nargs="*", help="lesson ids (default: all)")
    le.add_argument("--check", action="store_true", help="only report lessons that drifted")
    le.set_defaults(func=_lessons)

    g = sub.add_parser(
        "grade", help="autograde SUBMISSIONS/STUDENT/NN-topic/NN-topic.ipynb or an LMS zip"
    )
    g.add_argument("submissions", help="a folder of submissions or an LMS zip of notebooks")
    g.add_argument("--out", required=True)
    g.add_argument("--lesson", nargs="+", help="only these lessons")
    g.add_argument("--student", nargs="+", help="only these students (regrade one)")
    g.add_argument("--jobs", type=int, default=None, help="parallel jobs (default: cores)")
    g.add_argument("--timeout", type=float, default=600, help="wall-clock seconds per notebook")
    g.add_argument("--cell-timeout", type=int, default=120, help="seconds per cell")
    g.add_argument(
        "--include-hidden",
        action="store_true",
        help="instructors only: show hidden tests and full tracebacks in the feedback",
    )
    g.add_argument("--memory-mb", type=int, default=8192, help="memory cap per notebook (0: none)")
    g.add_argument(
        "--all-cells",
        action="store_true",
        help="run every cell of every notebook (default: skip unedited author cells that no "
        "graded cell needs, proven statically; see the README's instructor section)",
    )
    g.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="run students' notebooks with no isolation (they can read the solutions and "
        "other students' work); every grade is flagged UNSANDBOXED. Without it, grading "
        "stops where the sandbox does not work",
    )
    g.add_argument(
        "--config", help="term settings: submission name patterns (default autograder/term.toml)"
    )
    g.add_argument(
        "--shard",
        metavar="K/N",
        help="grade only shard K of N (K from 1): the students with 1 + sha256(student id) "
        "mod N == K; merge the shards' --out folders with `xlt-course grade-merge`",
    )
    g.set_defaults(func=_grade)

    m = sub.add_parser(
        "grade-merge", help="merge the --out folders of `grade --shard K/N` into one grades.csv"
    )
    m.add_argument("shards", nargs="+", help="the shards' --out folders (every K of N once)")
    m.add_argument("--out", required=True, help="a new folder for the merged grades")
    m.set_defaults(func=_grade_merge)

    c = sub.add_parser("course", help="regenerate, execute and grade every lesson; print a summary")
    c.add_argument("lesson", nargs="*", help="lesson ids (default: all)")
    c.add_argument("--smoke", action="store_true", help="smoke-size settings (as the tests)")
    c.add_argument("--out", help="keep grading output here")
    c.set_defaults(func=_course)

    from autograder import term_cli  # validate, export, similarity

    term_cli.add_commands(sub)


def main(argv: list[str] | None = None) -> int:
    """Run ``xlt-course``; errors the course raises on purpose print without a traceback."""
    return student_cli.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
