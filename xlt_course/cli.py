"""The ``xlt-course`` command line: data, lessons, grading, the whole course, BLI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xlt_course.errors import XltCourseError


def _data(args: argparse.Namespace) -> int:
    from xlt_course.data import build

    if args.action == "build":
        timings = build.build_all(args.only, force=args.force)
        print("built: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    elif args.action == "topics":
        from xlt_course.data.topics import build_topics

        build_topics(Path(args.out) if args.out else None)
        print("topic dataset written")
    status = build.artefact_status()
    bad = {k: v for k, v in status.items() if not v[0]}
    for name, (ok, detail) in sorted(status.items()):
        print(f"{'ok ' if ok else 'BAD'} {name}: {detail}")
    return 1 if bad else 0


def _lessons(args: argparse.Namespace) -> int:
    from xlt_course import grading

    names = args.lesson or grading.lesson_names()
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


def _grade(args: argparse.Namespace) -> int:
    import time

    from xlt_course import grading

    started = time.time() - 1

    limits = grading.GradeLimits(
        notebook_timeout=args.timeout,
        cell_timeout=args.cell_timeout,
        memory_mb=args.memory_mb,
        include_hidden=args.include_hidden,
        sandbox=args.sandbox,
    )
    results = grading.grade(
        Path(args.submissions),
        Path(args.out),
        lessons=args.lesson,
        students=args.student,
        jobs=args.jobs,
        limits=limits,
        config=Path(args.config) if args.config else None,
    )
    from autograder import term_cli

    term_cli.print_intake(Path(args.out), started)
    print(f"graded {len(results)} submissions -> {Path(args.out) / 'grades.csv'}")
    print(f"score histograms -> {Path(args.out) / 'summary'}")
    flagged = [r for r in results if r.flags]
    for r in flagged:
        print(f"  flagged {r.student}/{r.lesson}: {'; '.join(r.flags)}")
    return 0


def _course(args: argparse.Namespace) -> int:
    from xlt_course import course

    runs = course.run_course(smoke=args.smoke, out=Path(args.out) if args.out else None)
    print(course.format_summary(runs))
    return 0 if all(r.executed for r in runs) else 1


def _env(args: argparse.Namespace) -> int:
    from xlt_course import setup

    checks = setup.environment_report()
    print(setup.format_report(checks))
    return 0 if all(c.ok for c in checks) else 1


def _bli(args: argparse.Namespace) -> int:
    from xlt_course import align

    result = align.run_bli(args.src, args.tgt)
    print(align.format_bli_line(result))
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from xlt_course import pretrain

    names = list(pretrain.CONFIGS) if args.config == ["all"] else args.config
    try:
        configs = [pretrain.get_config(name, smoke=args.smoke) for name in names]
    except ValueError as e:
        print(f"xlt-course: error: {e}", file=sys.stderr)
        return 2
    root = Path(args.root) if args.root else None
    for config in configs:
        path, cached = pretrain.load_or_pretrain(config, root=root, force=args.force)
        info = pretrain.read_info(path) or {}
        how = "cached" if cached else f"trained in {info['seconds']:.0f} s on {info['device']}"
        print(f"{config.name}: {how}, final MLM loss {info['loss'][-1]:.2f} -> {path}")
    return 0


def _translate(args: argparse.Namespace) -> int:
    from xlt_course.translate import main_translate

    return main_translate(args.rest)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``xlt-course``."""
    p = argparse.ArgumentParser(prog="xlt-course", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="build or verify the offline data")
    d.add_argument("action", choices=["build", "verify", "topics"])
    d.add_argument("--force", action="store_true", help="rebuild even when current")
    d.add_argument("--only", nargs="+", choices=["vectors", "dictionary", "encoder"])
    d.add_argument("--out", help="with `topics`: write the dataset here instead of data/topics")
    d.set_defaults(func=_data)

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
        "--sandbox",
        choices=["auto", "bwrap", "none"],
        default="auto",
        help="run kernels in bubblewrap, hiding solutions/ and other students' work "
        "(auto: when it works here)",
    )
    g.add_argument(
        "--config", help="term settings: submission name patterns (default autograder/term.toml)"
    )
    g.set_defaults(func=_grade)

    # the term's commands (validate, export, similarity): autograder/term_cli.py
    from autograder import term_cli

    term_cli.add_commands(sub)

    c = sub.add_parser("course", help="regenerate, execute and grade every lesson; print a summary")
    c.add_argument("--smoke", action="store_true", help="smoke-size settings (as the tests)")
    c.add_argument("--out", help="keep grading output here")
    c.set_defaults(func=_course)

    e = sub.add_parser("env", help="check the environment and every data artefact")
    e.set_defaults(func=_env)

    b = sub.add_parser("bli", help="supervised Procrustes BLI on the offline data")
    b.add_argument("--src", default="en")
    b.add_argument("--tgt", default="fr")
    b.set_defaults(func=_bli)

    pt = sub.add_parser("pretrain", help="pretrain a tiny bilingual BERT of lesson 05 (cached)")
    pt.add_argument(
        "config",
        nargs="+",
        help="predefined configs (base, fake, ...; all: every one) or JSON files",
    )
    pt.add_argument("--smoke", action="store_true", help="the smoke-size run (name-smoke)")
    pt.add_argument("--force", action="store_true", help="retrain even when cached")
    pt.add_argument(
        "--root", help="checkpoint folder (default: data/cache/05-multilingual-pretraining)"
    )
    pt.set_defaults(func=_pretrain)

    tr = sub.add_parser(
        "translate",
        help="translate lines of text offline (Apertium, dictionary) or with a hub model",
        add_help=False,
    )
    tr.add_argument("rest", nargs=argparse.REMAINDER, help="SRC TGT [FILE] [--system S]")
    tr.set_defaults(func=_translate)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; errors the course raises on purpose print without a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (XltCourseError, FileNotFoundError) as e:
        print(f"xlt-course: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
