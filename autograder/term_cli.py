"""The term's commands of ``xlt-course``: validate, export, similarity (and grade's intake report).

:func:`add_commands` adds them to the ``xlt-course`` parser; their modules are imported only
when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def print_intake(out: Path, since: float) -> None:
    """Print what intake took and skipped, when ``xlt-course grade`` wrote ``out/intake.json``."""
    from autograder.intake import Intake

    taken = Path(out) / "intake.json"
    if not taken.exists() or taken.stat().st_mtime < since:
        return
    intake = Intake.load(taken)
    if intake.skipped or intake.notes or any(s.pattern != "folder" for s in intake.submissions):
        print(intake.summary() + f" -> {taken}")
        for line in intake.report_lines():
            print(f"  {line}")


def _export(args: argparse.Namespace) -> int:
    from autograder import term_config

    config = term_config.load_term_config(Path(args.config) if args.config else None)
    if args.format == "gradescope":
        from autograder import gradescope

        path = gradescope.write_bundle(
            Path(args.dest) if args.dest else Path(args.out) / "export" / "gradescope.zip",
            lesson=args.lesson[0] if args.lesson else None,
            visibility=args.hidden_visibility,
        )
        print(f"Gradescope autograder bundle -> {path}")
        return 0
    if args.format == "nbgrader":
        from autograder import formgrader

        report = formgrader.merge_results(Path(args.out), Path(args.dest) if args.dest else None)
        print(f"merged {len(report.merged)} submissions into the course gradebook (formgrader)")
        for line in report.skipped:
            print(f"  not merged: {line}")
        return 0
    from autograder import export

    late = {
        "policy": args.late_policy,
        "due": args.due,
        "per_day": args.per_day,
        "floor": args.floor,
    }
    report = export.export(
        Path(args.out),
        args.format,
        roster=Path(args.roster) if args.roster else None,
        dest=Path(args.dest) if args.dest else None,
        lessons=args.lesson,
        config=config,
        late_override=late,
        gradebook=Path(args.gradebook) if args.gradebook else None,
    )
    print(f"{report.rows} students -> {report.path}")
    if report.problems:
        print(f"check before uploading ({len(report.problems)}):")
    for line in report.problems:
        print(f"  {line}")
    return 0


def _similarity(args: argparse.Namespace) -> int:
    from autograder import similarity

    try:
        pairs = similarity.similarity_report(
            Path(args.submissions), Path(args.out), lessons=args.lesson, threshold=args.threshold
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"xlt-course: error: {e}", file=sys.stderr)
        return 2
    for p in pairs:
        print(f"{p.lesson}: {p.a} / {p.b}  {p.similarity:.0%} ({p.shared} shared lines)")
    print(
        f"{len(pairs)} pairs at or above {args.threshold:.0%} -> {Path(args.out) / 'similarity.html'}"
    )
    return 0


def _validate(args: argparse.Namespace) -> int:
    from autograder import validate

    try:
        result = validate.validate(Path(args.notebook), args.lesson)
    except ValueError as e:
        print(f"xlt-course: error: {e}", file=sys.stderr)
        return 2
    print(validate.format_validation(result))
    return 0 if result.gradable else 1


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add validate, export and similarity to the ``xlt-course`` parser."""
    va = sub.add_parser(
        "validate",
        help="students: check a notebook before submitting (self-checks, gradable or not)",
    )
    va.add_argument(
        "notebook", help="your notebook, e.g. lessons/02-procrustes/02-procrustes.ipynb"
    )
    va.add_argument("--lesson", help="its lesson id (default: from the file name)")
    va.set_defaults(func=_validate)

    ex = sub.add_parser(
        "export", help="grades to a Canvas/Moodle gradebook CSV, a wide table, or Gradescope"
    )
    ex.add_argument("out", help="the grading output folder (holds grades.csv)")
    ex.add_argument(
        "--format",
        required=True,
        choices=["canvas", "moodle", "wide", "gradescope", "nbgrader"],
        help="nbgrader: merge into the course gradebook, so that formgrader shows the results",
    )
    ex.add_argument("--roster", help="CSV: student,name,lms_id,sis_id,login,section,email")
    ex.add_argument(
        "--gradebook",
        help="the course folder the results were merged into (`--format nbgrader`): its "
        "hand-given scores count (default: [export] gradebook of the term config)",
    )
    ex.add_argument(
        "--dest", help="file to write (default OUT/export/FORMAT.csv; nbgrader: course root)"
    )
    ex.add_argument("--lesson", nargs="+", help="only these lessons")
    ex.add_argument("--config", help="term settings (default autograder/term.toml)")
    ex.add_argument("--due", help="due date of every lesson: YYYY-MM-DD[THH:MM][+HH:MM]")
    ex.add_argument("--late-policy", choices=["none", "flag", "per_day"])
    ex.add_argument("--per-day", type=float, help="fraction of the score taken per day late")
    ex.add_argument("--floor", type=float, help="fraction of the score a late submission keeps")
    ex.add_argument(
        "--hidden-visibility",
        default="after_published",
        choices=["hidden", "after_due_date", "after_published"],
        help="gradescope: when students see the scores that hidden tests decide",
    )
    ex.set_defaults(func=_export)

    si = sub.add_parser(
        "similarity", help="pairs of students with unusually similar answers (never a penalty)"
    )
    si.add_argument(
        "submissions", help="SUBMISSIONS/STUDENT/NN-topic/NN-topic.ipynb, or a grading output"
    )
    si.add_argument("--out", required=True, help="folder for similarity.html and .json")
    si.add_argument("--lesson", nargs="+", help="only these lessons")
    si.add_argument("--threshold", type=float, default=0.8, help="Jaccard index to report")
    si.set_defaults(func=_similarity)
