"""Run the whole course end to end: regenerate, execute, grade, summarise (``make course``)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from autograder import grading, notebooks, paths


@dataclass
class LessonRun:
    """What ``make course`` measured for one lesson."""

    lesson: str
    executed: bool
    seconds: float
    reference: str
    blank: str
    error: str = ""


def execute_notebook(path: Path, *, timeout: int = 1200, smoke: bool = False) -> float:
    """Execute a notebook in a scratch copy of its folder; return the seconds it took.

    The committed notebook is never modified (it stays without outputs).

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised; the message names it.
    """
    import nbclient

    nb = notebooks.read_notebook(path)
    env_before = os.environ.get("XLT_COURSE_SMOKE")
    if smoke:
        os.environ["XLT_COURSE_SMOKE"] = "1"
    try:
        with tempfile.TemporaryDirectory(prefix="xlt-exec-") as tmp:
            work = Path(tmp) / path.parent.name
            shutil.copytree(path.parent, work, ignore=shutil.ignore_patterns(".*"))
            client = nbclient.NotebookClient(
                nb,
                timeout=timeout,
                kernel_name="python3",
                resources={"metadata": {"path": str(work)}},
            )
            t0 = time.perf_counter()
            client.execute()
            return time.perf_counter() - t0
    finally:
        if smoke:
            if env_before is None:
                os.environ.pop("XLT_COURSE_SMOKE", None)
            else:
                os.environ["XLT_COURSE_SMOKE"] = env_before


def grade_reference_and_blank(
    lessons: list[str], out: Path
) -> dict[tuple[str, str], grading.SubmissionResult]:
    """Grade each lesson's reference solution and blank student notebook through the pipeline.

    Returns:
        ``{(student, lesson): result}`` with students ``reference`` and ``blank``.
    """
    subs = out / "submissions"
    for lesson in lessons:
        for student, src in (
            ("reference", paths.solutions_dir() / lesson / f"{lesson}.ipynb"),
            ("blank", paths.lessons_dir() / lesson / f"{lesson}.ipynb"),
        ):
            dest = subs / student / lesson / f"{lesson}.ipynb"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
    results = grading.grade(subs, out / "graded", lessons=lessons)
    return {(r.student, r.lesson): r for r in results}


def run_course(*, smoke: bool = False, out: Path | None = None) -> list[LessonRun]:
    """Regenerate lessons, execute every solution, grade references and blanks, and report."""
    from tqdm.auto import tqdm

    lessons = grading.lesson_names()
    grading.generate_lessons(lessons)
    runs = []
    for lesson in tqdm(lessons, desc="executing solutions"):
        nb = paths.solutions_dir() / lesson / f"{lesson}.ipynb"
        try:
            secs = execute_notebook(nb, smoke=smoke)
            runs.append(LessonRun(lesson, True, secs, "", ""))
        except Exception as e:  # noqa: BLE001 - reported in the table, the run goes on
            runs.append(
                LessonRun(lesson, False, 0.0, "", "", error=str(e).strip().splitlines()[-1][:200])
            )
    out = out or Path(tempfile.mkdtemp(prefix="xlt-course-"))
    graded = grade_reference_and_blank(lessons, out)
    for run in runs:
        ref, blank = graded[("reference", run.lesson)], graded[("blank", run.lesson)]
        run.reference = f"{ref.score:g}/{ref.max_score:g}"
        run.blank = f"{blank.score:g}/{blank.max_score:g}"
    return runs


def format_summary(runs: list[LessonRun]) -> str:
    """Return the summary table ``make course`` prints."""
    head = f"{'lesson':<34} {'executed':<9} {'seconds':>8}  {'reference':>10}  {'blank':>8}"
    lines = [head, "-" * len(head)]
    for r in runs:
        lines.append(
            f"{r.lesson:<34} {'OK' if r.executed else 'FAILED':<9} {r.seconds:>8.1f}  "
            f"{r.reference:>10}  {r.blank:>8}" + (f"  ({r.error})" if r.error else "")
        )
    return "\n".join(lines)
