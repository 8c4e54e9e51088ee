"""Merge headless grading results into the course's nbgrader gradebook, so formgrader shows them.

``xlt-course grade`` grades each submission in a scratch course of its own; this copies
each job's scores, comments and autograded notebook into the course that
``autograder/nbgrader_config.py`` describes (``autograder/gradebook.db`` and
``autograder/work/``), where formgrader (and manual grading) finds them. Merging again
updates the same rows; manual scores already given in formgrader are kept.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from autograder.grading import COURSE_ID
from xlt_course import paths


@dataclass
class MergeReport:
    """What a merge did."""

    merged: list[tuple[str, str]]
    skipped: list[str]


def course_root() -> Path:
    """Return the course root of ``autograder/nbgrader_config.py`` (the repository)."""
    return paths.REPO_ROOT


def merge_results(out: Path, root: Path | None = None) -> MergeReport:
    """Copy every graded job under ``out/.work/jobs`` into the course gradebook at ``root``.

    Args:
        out: the folder ``xlt-course grade`` wrote.
        root: the course root (default: the repository; gradebook ``autograder/gradebook.db``,
            notebooks under ``autograder/work/``).

    Returns:
        A :class:`MergeReport`: ``(student, lesson)`` merged, and jobs that had no gradebook.
    """
    from nbgrader.api import Gradebook, MissingEntry

    # nbgrader's Gradebook shells out to `alembic`: this interpreter's
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    root = Path(root) if root else course_root()
    jobs = Path(out) / ".work" / "jobs"
    if not jobs.is_dir():
        raise FileNotFoundError(f"{jobs} does not exist: run `xlt-course grade ... --out {out}`")
    db = root / "autograder" / "gradebook.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    work = root / "autograder" / "work"
    report = MergeReport([], [])
    with warnings.catch_warnings(), Gradebook(f"sqlite:///{db}", COURSE_ID) as gb:
        # nbgrader's own session handling warns on every submission it reads; harmless
        warnings.filterwarnings("ignore", message=".*not in session.*")
        for job_db in sorted(jobs.glob("*/*/gradebook.db")):
            job = job_db.parent
            lesson, student = job.parent.name, job.name
            graded = job / "autograded" / student / lesson
            if not graded.is_dir():
                report.skipped.append(f"{student}/{lesson}: not autograded (see grades.csv flags)")
                continue
            with Gradebook(f"sqlite:///{job_db}", COURSE_ID) as jb:
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
    return report
