"""Merge headless grading results into the course's nbgrader gradebook, so formgrader shows them.

``xlt-course grade`` grades each submission in a scratch course of its own; this copies
each job's scores, comments and autograded notebook into the course that
``autograder/nbgrader_config.py`` describes (``autograder/gradebook.db`` and
``autograder/work/``), where formgrader (and manual grading) finds them. Merging again
updates the same rows; manual scores already given in formgrader are kept, unless the
student's notebook changed since the last merge (a resubmission graded into the same
output): then they were given to another answer, so they are cleared and reported.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder.grading import COURSE_ID
from xlt_course import paths
from xlt_course.data.manifest import sha256_file


@dataclass
class MergeReport:
    """What a merge did.

    Attributes:
        merged: ``(student, lesson)`` merged.
        skipped: one line per job not merged, and per notebook whose hand grading was
            cleared (or could not be checked) because the notebook changed.
        cleared: ``(student, lesson, notebook)`` whose manual scores and comments were
            cleared: the notebook differs from the one they were given to.
    """

    merged: list[tuple[str, str]]
    skipped: list[str]
    cleared: list[tuple[str, str, str]] = field(default_factory=list)


def course_root() -> Path:
    """Return the course root of ``autograder/nbgrader_config.py`` (the repository)."""
    return paths.REPO_ROOT


def open_gradebook(db: Path) -> Any:
    """Return nbgrader's ``Gradebook`` of the course at the SQLite file ``db`` (a context manager)."""
    from nbgrader.api import Gradebook

    # nbgrader's Gradebook shells out to `alembic`: this interpreter's
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    return Gradebook(f"sqlite:///{db}", COURSE_ID)


def same_file(a: Path, b: Path) -> bool | None:
    """Return whether two files hold the same bytes (None: one of them is missing)."""
    if not a.is_file() or not b.is_file():
        return None
    return sha256_file(a) == sha256_file(b)


def _hand_grading(snb: Any) -> list[str]:
    """Return what a grader gave by hand in a submitted notebook (``cell score`` / comment)."""
    given = [f"{g.name} {g.manual_score:g}" for g in snb.grades if g.manual_score is not None] + [
        f"{g.name} +{g.extra_credit:g} extra" for g in snb.grades if g.extra_credit
    ]
    given += [f"{c.name} comment" for c in snb.comments if c.manual_comment]
    return given


def merge_results(out: Path, root: Path | None = None) -> MergeReport:
    """Copy every graded job under ``out/.work/jobs`` into the course gradebook at ``root``.

    Args:
        out: the folder ``xlt-course grade`` wrote.
        root: the course root (default: the repository; gradebook ``autograder/gradebook.db``,
            notebooks under ``autograder/work/``).

    Returns:
        A :class:`MergeReport`: ``(student, lesson)`` merged, jobs that had no gradebook, and
        notebooks whose hand grading was cleared because the student's notebook changed
        since the last merge (its bytes differ from the copy under ``autograder/work/``).
    """
    from nbgrader.api import MissingEntry

    root = Path(root) if root else course_root()
    jobs = Path(out) / ".work" / "jobs"
    if not jobs.is_dir():
        raise FileNotFoundError(f"{jobs} does not exist: run `xlt-course grade ... --out {out}`")
    db = root / "autograder" / "gradebook.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    work = root / "autograder" / "work"
    report = MergeReport([], [])
    with warnings.catch_warnings(), open_gradebook(db) as gb:
        # nbgrader's own session handling warns on every submission it reads; harmless
        warnings.filterwarnings("ignore", message=".*not in session.*")
        for job_db in sorted(jobs.glob("*/*/gradebook.db")):
            job = job_db.parent
            lesson, student = job.parent.name, job.name
            graded = job / "autograded" / student / lesson
            if not graded.is_dir():
                report.skipped.append(f"{student}/{lesson}: not autograded (see grades.csv flags)")
                continue
            with open_gradebook(job_db) as jb:
                try:
                    a = jb.find_assignment(lesson)
                    sub = jb.find_submission(lesson, student)
                except MissingEntry:
                    report.skipped.append(f"{student}/{lesson}: no submission in its gradebook")
                    continue
                gb.update_or_create_assignment(lesson, duedate=a.duedate)
                for nb in a.notebooks:
                    gb.update_or_create_notebook(nb.name, lesson)
                    for c in nb.grade_cells:
                        gb.update_or_create_grade_cell(
                            c.name, nb.name, lesson, max_score=c.max_score, cell_type=c.cell_type
                        )
                    for c in nb.solution_cells:
                        gb.update_or_create_solution_cell(c.name, nb.name, lesson)
                    for c in nb.task_cells:
                        gb.update_or_create_task_cell(
                            c.name, nb.name, lesson, max_score=c.max_score, cell_type=c.cell_type
                        )
                    for c in nb.source_cells:
                        gb.update_or_create_source_cell(
                            c.name,
                            nb.name,
                            lesson,
                            cell_type=c.cell_type,
                            locked=c.locked,
                            source=c.source,
                            checksum=c.checksum,
                        )
                gb.update_or_create_student(student)
                gb.update_or_create_submission(lesson, student, timestamp=sub.timestamp)
                for snb in sub.notebooks:
                    # hand grading belongs to the notebook it was given to: the copy the last
                    # merge left under work/submitted; a resubmission graded since must not
                    # inherit it (an empty answer kept 4/4 hand-given points)
                    mine_nb = gb.find_submission_notebook(snb.name, lesson, student)
                    given = _hand_grading(mine_nb)
                    name = f"{snb.name}.ipynb"
                    same = same_file(
                        job / "submitted" / student / lesson / name,
                        work / "submitted" / student / lesson / name,
                    )
                    if given and same is False:
                        for g in mine_nb.grades:
                            g.manual_score, g.extra_credit = None, None
                        for c in mine_nb.comments:
                            c.manual_comment = None
                        report.cleared.append((student, lesson, snb.name))
                        report.skipped.append(
                            f"{student}/{lesson}: hand grading CLEARED ({', '.join(given)}): "
                            f"{name} changed since it was graded by hand; grade it again in "
                            "formgrader"
                        )
                    elif given and same is None:
                        report.skipped.append(
                            f"{student}/{lesson}: hand grading kept ({', '.join(given)}) but "
                            f"not checked: no earlier copy of {name} under {work / 'submitted'} "
                            "to compare; check in formgrader that it fits this submission"
                        )
                    for g in snb.grades:
                        mine = gb.find_grade(g.name, snb.name, lesson, student)
                        mine.auto_score = g.auto_score
                        if mine.manual_score is None:  # keep what a grader gave by hand
                            mine.manual_score = g.manual_score
                            mine.needs_manual_grade = g.needs_manual_grade
                    for c in snb.comments:
                        mine = gb.find_comment(c.name, snb.name, lesson, student)
                        mine.auto_comment = c.auto_comment
                        if mine.manual_comment is None:
                            mine.manual_comment = c.manual_comment
                gb.db.commit()
            for kind in ("submitted", "autograded", "feedback"):
                src = job / kind / student / lesson
                if src.is_dir():
                    dest = work / kind / student / lesson
                    if dest.exists():
                        shutil.rmtree(dest)
                    shutil.copytree(src, dest)
            report.merged.append((student, lesson))
    # a notebook that could not be graded at all (empty, not JSON) has a row in grades.csv
    # but no job gradebook: say so, or the student silently does not exist in formgrader
    merged = {(s, lesson) for s, lesson in report.merged}
    said = {line.split(":")[0] for line in report.skipped}
    rows = Path(out) / "grades.csv"
    if rows.is_file():
        with open(rows, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                key = (row.get("student", ""), row.get("lesson", ""))
                if key not in merged and f"{key[0]}/{key[1]}" not in said:
                    why = (row.get("flags") or "no notebook could be graded").split(";")[0]
                    report.skipped.append(f"{key[0]}/{key[1]}: not in its gradebook ({why})")
    return report
