"""Generate student lessons and autograde submissions headless with nbgrader.

Design: every (student, lesson) submission is graded in a scratch nbgrader course of its
own, holding a copy of the lesson's gradebook template and nothing else, so jobs cannot
corrupt each other's gradebook, and the solution notebook is not in the course the
kernel runs in. Scores are read back from each job's gradebook and merged into
``grades.csv`` in a fixed order, so output does not depend on scheduling.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlt_course import notebooks, paths

CONFIG_FILE = paths.REPO_ROOT / "autograder" / "nbgrader_config.py"


class GradingError(RuntimeError):
    """nbgrader failed on the course's own notebooks (not a student's fault)."""


def lesson_names(source: Path | None = None) -> list[str]:
    """Return the lesson ids (``NN-topic``) that have a solution notebook, sorted."""
    source = source or paths.solutions_dir()
    return sorted(
        p.name for p in source.iterdir() if p.is_dir() and (p / f"{p.name}.ipynb").exists()
    )


def _write_course(root: Path, *, source: str = "source", release: str = "release") -> None:
    """Write a scratch course config that loads the course's config and redirects folders."""
    root.mkdir(parents=True, exist_ok=True)
    text = (
        "c = get_config()  # noqa: F821\n"
        f"load_subconfig({str(CONFIG_FILE)!r})  # noqa: F821\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        f"c.CourseDirectory.source_directory = {source!r}\n"
        f"c.CourseDirectory.release_directory = {release!r}\n"
        "c.CourseDirectory.submitted_directory = 'submitted'\n"
        "c.CourseDirectory.autograded_directory = 'autograded'\n"
        "c.CourseDirectory.feedback_directory = 'feedback'\n"
        f"c.CourseDirectory.db_url = {'sqlite:///' + str(root / 'gradebook.db')!r}\n"
    )
    (root / "nbgrader_config.py").write_text(text, encoding="utf-8")


def _nbgrader(root: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` inside the scratch course ``root``."""
    env = dict(os.environ)
    # The grading kernel must not reach a hub: everything it needs is local.
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env["XLT_COURSE_GRADING"] = "1"
    # nbgrader shells out to `alembic` and starts kernels by name: use this interpreter's.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass(frozen=True)
class GradeLimits:
    """Limits that keep one submission from hurting the batch.

    Attributes:
        notebook_timeout: wall-clock seconds for grading one notebook (kernel included).
        cell_timeout: seconds one cell may run before it is interrupted.
        memory_mb: address-space cap of the grading process and its kernel (0: none).
        include_hidden: show hidden tests' source and tracebacks in feedback (instructors).
    """

    notebook_timeout: float = 600.0
    cell_timeout: int = 120
    memory_mb: int = 8192
    include_hidden: bool = False


def _limit_memory(memory_mb: int) -> None:  # runs in the child, before exec
    if memory_mb > 0:
        import resource

        cap = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _run_worker(root: Path, lesson: str, student: str, limits: GradeLimits) -> tuple[int, str, str]:
    """Autograde and generate feedback for one job in a fresh process group.

    The process group (worker and kernel) is killed when the notebook's wall-clock limit
    passes, so an infinite loop or a hung kernel cannot outlive its job.

    Returns:
        ``(returncode, stdout, stderr)``; returncode is -9 after a timeout.
    """
    import signal

    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env["XLT_COURSE_GRADING"] = "1"
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    cmd = [
        sys.executable,
        "-m",
        "xlt_course.grading",
        str(root),
        lesson,
        student,
        str(limits.cell_timeout),
        "1" if limits.include_hidden else "0",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: _limit_memory(limits.memory_mb),  # noqa: PLW1509 - no threads in child
    )
    try:
        out, err = proc.communicate(timeout=limits.notebook_timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return -9, out, err


HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
HIDDEN_END = "### END HIDDEN TESTS"


def strip_hidden_tests(nb: Any) -> int:
    """Remove hidden tests and their tracebacks from an autograded notebook, in place.

    Each tests cell keeps its visible part; its hidden part becomes one comment line, and
    an error it raised is reduced to the exception's name and message (the short hint
    written in the test), since a traceback would quote the hidden code.

    Returns:
        How many cells were changed.
    """
    changed = 0
    for c in nb.cells:
        meta = c.get("metadata", {}).get("nbgrader", {})
        if c.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        if HIDDEN_BEGIN in c.source:
            head, _, rest = c.source.partition(HIDDEN_BEGIN)
            _, _, tail = rest.partition(HIDDEN_END)
            c.source = head + "# (hidden tests ran here when your notebook was graded)" + tail
            changed += 1
        for out in c.get("outputs", []):
            if out.get("output_type") == "error":
                hint = str(out.get("evalue") or "").strip() or "a hidden test failed"
                out["traceback"] = [f"{out.get('ename', 'Error')}: {hint}"]
    return changed


def _worker_main(
    root: str, lesson: str, student: str, cell_timeout: str = "120", include_hidden: str = "0"
) -> int:
    """Entry point of :func:`_run_worker`: prints one JSON status line."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=root).load_config()
    config.Execute.timeout = int(cell_timeout)
    api = NbGraderAPI(config=config)
    status: dict[str, Any] = {"autograde": False, "feedback": False}
    res = api.autograde(lesson, student, force=True, create=True)
    status["autograde"] = bool(res.get("success"))
    if not status["autograde"]:
        status["error"] = (res.get("error") or res.get("log") or "")[-2000:]
    else:
        if include_hidden != "1":
            graded = Path(root) / "autograded" / student / lesson / f"{lesson}.ipynb"
            nb = notebooks.read_notebook(graded)
            strip_hidden_tests(nb)
            graded.write_text(notebooks.dumps(nb), encoding="utf-8")
        fb = api.generate_feedback(lesson, student, force=True)
        status["feedback"] = bool(fb.get("success"))
    print(json.dumps(status))
    return 0


def generate_lesson(lesson: str, dest: Path, *, scratch: Path | None = None) -> Path:
    """Generate the student notebook of ``lesson`` into ``dest/lesson/`` with nbgrader.

    Also leaves the lesson's gradebook template at ``scratch/gradebook.db`` when
    ``scratch`` is given (grading copies it into each job).

    Returns:
        The path of the generated notebook.
    """
    src = paths.solutions_dir() / lesson
    if not (src / f"{lesson}.ipynb").exists():
        raise GradingError(f"no solution notebook {src / (lesson + '.ipynb')}")
    own_tmp = scratch is None
    root = Path(tempfile.mkdtemp(prefix="xlt-gen-")) if own_tmp else scratch
    try:
        _write_course(root)
        if (root / "source" / lesson).exists():
            shutil.rmtree(root / "source" / lesson)
        shutil.copytree(src, root / "source" / lesson, ignore=shutil.ignore_patterns(".*"))
        res = _nbgrader(root, "generate_assignment", lesson, "--force", "--log-level=WARN")
        if res.returncode != 0:
            raise GradingError(
                f"nbgrader generate_assignment {lesson} failed:\n{res.stderr[-3000:]}"
            )
        out = dest / lesson
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(root / "release" / lesson, out)
        nb_path = out / f"{lesson}.ipynb"
        # nbgrader writes nbformat's default layout; rewrite it in the course's stable layout.
        nb = notebooks.read_notebook(nb_path)
        nb_path.write_text(notebooks.dumps(nb), encoding="utf-8")
        return nb_path
    finally:
        if own_tmp:
            shutil.rmtree(root, ignore_errors=True)


def generate_lessons(lessons: list[str] | None = None, dest: Path | None = None) -> list[Path]:
    """Regenerate student notebooks from ``solutions/`` into ``lessons/`` (or ``dest``)."""
    dest = dest or paths.lessons_dir()
    return [generate_lesson(name, dest) for name in (lessons or lesson_names())]


def lesson_drift(lesson: str) -> str:
    """Return a unified diff between the committed lesson and a fresh generation ('' if none)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate_lesson(lesson, Path(tmp))
        committed = paths.lessons_dir() / lesson / f"{lesson}.ipynb"
        if not committed.exists():
            return f"{committed} is missing: run `xlt-course lessons`"
        a = committed.read_text(encoding="utf-8").splitlines()
        b = fresh.read_text(encoding="utf-8").splitlines()
        return "\n".join(difflib.unified_diff(a, b, str(committed), "regenerated", lineterm=""))


# --- grading ---------------------------------------------------------------------------


@dataclass
class SubmissionResult:
    """The grade of one student's notebook for one lesson."""

    student: str
    lesson: str
    score: float
    max_score: float
    points: dict[str, tuple[float, float]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    feedback: Path | None = None


def _read_scores(root: Path, lesson: str, student: str) -> tuple[float, float, dict]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", "xlt-course") as gb:
        sub = gb.find_submission_notebook(lesson, lesson, student)
        points = {
            g.name: (float(g.score or 0.0), float(g.max_score or 0.0))
            for g in sorted(sub.grades, key=lambda g: g.name)
        }
        return float(sub.score or 0.0), float(sub.max_score or 0.0), points


def _template_max(template: Path, lesson: str) -> tuple[float, dict]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{template}", "xlt-course") as gb:
        nb = gb.find_notebook(lesson, lesson)
        cells = {
            c.name: (0.0, float(c.max_score)) for c in sorted(nb.grade_cells, key=lambda c: c.name)
        }
        return float(nb.max_score), cells


def _job_key(notebook: Path, template: Path, limits: GradeLimits) -> str:
    """Return what a cached result must match: the submission, the lesson and the limits."""
    from xlt_course.data.manifest import sha256_file

    sub = sha256_file(notebook) if notebook.is_file() else "missing"
    return f"{sub}:{sha256_file(template)}:{limits}"


def _save_result(result: SubmissionResult, path: Path, key: str) -> None:
    payload = {
        "key": key,
        "student": result.student,
        "lesson": result.lesson,
        "score": result.score,
        "max_score": result.max_score,
        "points": {k: list(v) for k, v in result.points.items()},
        "flags": result.flags,
        "feedback": str(result.feedback) if result.feedback else None,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True), encoding="utf-8")


def _load_result(path: Path) -> tuple[str, SubmissionResult] | None:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        r = SubmissionResult(
            d["student"],
            d["lesson"],
            float(d["score"]),
            float(d["max_score"]),
            {k: (float(v[0]), float(v[1])) for k, v in d["points"].items()},
            list(d["flags"]),
            Path(d["feedback"]) if d["feedback"] else None,
        )
        return d["key"], r
    except (OSError, ValueError, KeyError, TypeError):
        return None


def grade_one(
    student: str,
    lesson: str,
    notebook: Path,
    template: Path,
    work: Path,
    limits: GradeLimits | None = None,
) -> SubmissionResult:
    """Autograde one submitted notebook in its own scratch course and generate feedback.

    The result is stored in ``work/LESSON/STUDENT.json``; grading the same submission again
    with the same lesson and limits returns it without running anything (resumable batches).
    """
    limits = limits or GradeLimits()
    record = work / lesson / f"{student}.json"
    key = _job_key(notebook, template, limits)
    cached = _load_result(record) if record.exists() else None
    if cached is not None and cached[0] == key:
        return cached[1]
    result = _grade_fresh(student, lesson, notebook, template, work, limits)
    _save_result(result, record, key)
    return result


def _grade_fresh(
    student: str, lesson: str, notebook: Path, template: Path, work: Path, limits: GradeLimits
) -> SubmissionResult:
    max_score, zero_points = _template_max(template, lesson)
    result = SubmissionResult(student, lesson, 0.0, max_score, dict(zero_points))
    if not notebook.exists():
        result.flags.append("missing notebook")
        return result
    try:
        notebooks.read_notebook(notebook)
    except ValueError as e:
        result.flags.append(f"invalid notebook: {str(e).splitlines()[0][:200]}")
        return result
    root = work / lesson / student
    if root.exists():
        shutil.rmtree(root)
    _write_course(root)
    shutil.copy(template, root / "gradebook.db")
    (root / "source" / lesson).mkdir(parents=True)
    sub_dir = root / "submitted" / student / lesson
    sub_dir.mkdir(parents=True)
    shutil.copy(notebook, sub_dir / f"{lesson}.ipynb")
    code, stdout, stderr = _run_worker(root, lesson, student, limits)
    if code == -9:
        result.flags.append(f"grading exceeded {limits.notebook_timeout:g} s and was stopped")
        return result
    status = {}
    if stdout.strip():
        with contextlib.suppress(ValueError):
            status = json.loads(stdout.strip().splitlines()[-1])
    if code != 0 or not status.get("autograde"):
        last = (status.get("error") or stderr or "?").strip().splitlines() or ["?"]
        result.flags.append("autograde error: " + last[-1][:200])
        return result
    result.score, result.max_score, result.points = _read_scores(root, lesson, student)
    html = root / "feedback" / student / lesson / f"{lesson}.html"
    if status.get("feedback") and html.exists():
        result.feedback = html
    else:
        result.flags.append("feedback not generated")
    return result


def find_submissions(submissions: Path) -> list[tuple[str, str, Path]]:
    """List ``(student, lesson, notebook)`` from ``SUBMISSIONS/STUDENT/NN-topic/NN-topic.ipynb``.

    A lesson folder without its notebook is listed too (it grades as "missing notebook").
    """
    if not submissions.is_dir():
        raise FileNotFoundError(f"submissions folder {submissions} does not exist")
    known = set(lesson_names())
    found = []
    for student_dir in sorted(p for p in submissions.iterdir() if p.is_dir()):
        for lesson_dir in sorted(p for p in student_dir.iterdir() if p.is_dir()):
            if lesson_dir.name in known:
                found.append(
                    (student_dir.name, lesson_dir.name, lesson_dir / f"{lesson_dir.name}.ipynb")
                )
    return found


def write_grades_csv(results: list[SubmissionResult], path: Path) -> None:
    """Write ``grades.csv``: one row per (student, lesson), sorted, byte-stable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["student", "lesson", "score", "max_score", "points", "flags"])
        for r in sorted(results, key=lambda r: (r.student, r.lesson)):
            pts = ";".join(f"{k}={s:g}/{m:g}" for k, (s, m) in sorted(r.points.items()))
            w.writerow(
                [r.student, r.lesson, f"{r.score:g}", f"{r.max_score:g}", pts, "; ".join(r.flags)]
            )


def grade(
    submissions: Path,
    out: Path,
    *,
    lessons: list[str] | None = None,
    students: list[str] | None = None,
    jobs: int | None = None,
    limits: GradeLimits | None = None,
    progress: bool = True,
) -> list[SubmissionResult]:
    """Autograde every submission under ``submissions`` and write grades and feedback to ``out``.

    Jobs run in parallel (``jobs``, default: the number of cores), each in its own
    scratch course, and results are merged in sorted order, so ``grades.csv`` is the same
    whatever the scheduling. Writes ``out/grades.csv`` and
    ``out/feedback/STUDENT/NN-topic.html``.

    Returns:
        One :class:`SubmissionResult` per (student, lesson), sorted.
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from tqdm.auto import tqdm

    todo = [
        j
        for j in find_submissions(Path(submissions))
        if (lessons is None or j[1] in lessons) and (students is None or j[0] in students)
    ]
    out = Path(out)
    work = out / ".work"
    templates: dict[str, Path] = {}
    from xlt_course.data.manifest import sha256_file

    for lesson in sorted({j[1] for j in todo}):
        scratch = work / "_templates" / lesson
        src_hash = sha256_file(paths.solutions_dir() / lesson / f"{lesson}.ipynb")
        stamp = scratch / "solution.sha256"
        if not (
            stamp.exists() and stamp.read_text() == src_hash and (scratch / "gradebook.db").exists()
        ):
            if scratch.exists():
                shutil.rmtree(scratch)
            generate_lesson(lesson, work / "_release", scratch=scratch)
            stamp.write_text(src_hash)
        templates[lesson] = scratch / "gradebook.db"
    results = []
    n_jobs = max(1, jobs or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        futures = [
            pool.submit(grade_one, student, lesson, nb, templates[lesson], work / "jobs", limits)
            for student, lesson, nb in todo
        ]
        for fut in tqdm(
            as_completed(futures), total=len(futures), desc="grading", disable=not progress
        ):
            results.append(fut.result())
    for r in results:
        if r.feedback is not None:
            dest = out / "feedback" / r.student / f"{r.lesson}.html"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(r.feedback, dest)
            r.feedback = dest
    results.sort(key=lambda r: (r.student, r.lesson))
    # grades.csv covers every submission graded into this folder so far, not only this run
    # (so `--student X` regrades X and keeps the others).
    everything = {(r.student, r.lesson): r for r in _all_results(work / "jobs")}
    everything.update({(r.student, r.lesson): r for r in results})
    write_grades_csv(list(everything.values()), out / "grades.csv")
    return results


def _all_results(jobs_dir: Path) -> list[SubmissionResult]:
    found = []
    for path in sorted(jobs_dir.glob("*/*.json")):
        loaded = _load_result(path)
        if loaded is not None:
            found.append(loaded[1])
    return found


# --- proving that test cells catch mistakes -------------------------------------------


def cell_source(nb_path: Path, grade_id: str) -> str:
    """Return the source of the cell ``grade_id`` in a (solution) notebook."""
    cells = notebooks.grade_cells(notebooks.read_notebook(nb_path))
    if grade_id not in cells:
        raise KeyError(f"{nb_path} has no cell with grade_id {grade_id!r} (has: {sorted(cells)})")
    return cells[grade_id].source


def solution_namespace(nb_path: Path, grade_id: str) -> dict[str, Any]:
    """Execute the solution cell ``grade_id`` alone and return the names it defines."""
    ns: dict[str, Any] = {"__name__": "__solution__"}
    exec(compile(cell_source(nb_path, grade_id), f"{nb_path.name}:{grade_id}", "exec"), ns)
    return ns


def run_test_cell(nb_path: Path, grade_id: str, **functions: Any) -> None:
    """Run the tests cell ``grade_id`` (visible and hidden parts) against ``functions``.

    Raises:
        AssertionError: a test in the cell fails (as it would when graded).
    """
    ns: dict[str, Any] = {"__name__": "__tests__", **functions}
    exec(compile(cell_source(nb_path, grade_id), f"{nb_path.name}:{grade_id}", "exec"), ns)


if __name__ == "__main__":
    sys.exit(_worker_main(*sys.argv[1:6]))
