"""``xlt-course validate NOTEBOOK``: a student checks a notebook before submitting it.

The notebook is rebuilt in the lesson's structure exactly as the grader rebuilds it, then
run top to bottom as the grader runs it (``XLT_COURSE_GRADING=1``: training is skipped;
the grader's per-cell and per-notebook time limits and memory cap; an empty working
folder). Each
exercise's self-check result is printed; hidden tests are never run: every tests cell runs
as the student version of the lesson has it. The notebook is gradable when its structure
is intact (no graded cell deleted, edited, duplicated or moved), no answer uses the
course's own implementation, and every cell other than a self-check runs without error.
A failed self-check is reported but does not make the notebook ungradable (it is graded,
and scores what it scores).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder import grading, notebooks, paths

# The grader's limits (autograder/nbgrader_config.py, xlt-course grade's defaults).
CELL_TIMEOUT = 120
NOTEBOOK_TIMEOUT = 600.0
MEMORY_MB = 8192


@dataclass
class ExerciseCheck:
    """The self-check of one exercise, as the student's notebook ran it."""

    grade_id: str
    points: float
    ok: bool
    message: str


@dataclass
class Validation:
    """What ``xlt-course validate`` found in one notebook."""

    notebook: Path
    lesson: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checks: list[ExerciseCheck] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def gradable(self) -> bool:
        """True when the grader can grade the notebook as the student sees it."""
        return not self.problems


def guess_lesson(notebook: Path, lessons: list[str]) -> str | None:
    """Return the lesson a notebook belongs to: from its file name, else from its cell ids."""
    from autograder.intake import build_patterns

    m = build_patterns(lessons).file_re.search(notebook.name)
    if m:
        return next(x for x in lessons if x.lower() == m["lesson"].lower())
    overlaps = _cell_overlaps(notebook, lessons)
    best = max(overlaps, key=overlaps.get, default=None)
    return best if best is not None and overlaps[best] > 0 else None


def _cell_overlaps(notebook: Path, lessons: list[str]) -> dict[str, int]:
    """Return, per lesson, how many of its graded cell ids the notebook holds ({}: unreadable)."""
    try:
        ids = set(notebooks.grade_cells(notebooks.read_notebook(notebook)))
    except Exception:  # noqa: BLE001 - an unreadable file is reported by validate itself
        return {}
    out = {}
    for lesson in lessons:
        release = paths.lessons_dir() / lesson / f"{lesson}.ipynb"
        if release.exists():
            out[lesson] = len(ids & set(notebooks.grade_cells(notebooks.read_notebook(release))))
    return out


#: Modules the grader's rules keep out of graded answer cells although ordinary programs use
#: them: threads, processes and pickling can reach the grader's process state.
CONCURRENCY_MODULES = frozenset(
    {"threading", "_thread", "concurrent.futures", "multiprocessing", "pickle", "_pickle",
     "pickletools", "copyreg", "shelve", "dill", "cloudpickle"}
)  # fmt: skip
CONCURRENCY_FIX = (
    "the grader's rules do not allow threads, processes or pickling in graded answer "
    "cells (they can reach the grader's own process state, so your instructor is shown "
    "this for review): write plain single-process code without these modules"
)

_FIXES = (
    (
        "deleted (the lesson's stub put back",
        "copy the answer cell back from the lesson and write your answer in it (the grader "
        "puts the lesson's blank stub where it was and runs your own cells after it)",
    ),
    ("deleted (restored)", "copy the cell back from the lesson, unchanged"),
    ("edited (restored from the lesson)", "undo your edits to it (the grader uses the original)"),
    (
        "duplicated",
        "only the FIRST copy is graded: keep your answer in that one, then delete the other copy",
    ),
    (
        "reaches into the grader",
        "remove that code: no exercise needs it, and the grader flags it for your instructor's "
        "review",
    ),
    ("reordered", "move the cells back into the lesson's order"),
)
_WARN_ONLY = ("kernel", "nbformat", "unknown nbgrader cell")


def _concurrency_only(flag: str) -> list[str]:
    """Return the modules of a flag naming only :data:`CONCURRENCY_MODULES` ([]: more)."""
    inside = flag.partition("reaches into the grader (")[2].rpartition("): review by hand")[0]
    reasons = [r.strip() for r in inside.split(";") if r.strip()]
    mods = [r.removeprefix("imports ") for r in reasons if r.startswith("imports ")]
    return mods if len(mods) == len(reasons) and set(mods) <= CONCURRENCY_MODULES else []


def _structure(v: Validation, flags: list[str], lesson: str) -> None:
    where = f"lessons/{lesson}/{lesson}.ipynb"
    for flag in flags:
        if flag.startswith(_WARN_ONLY) or "scripts or event handlers removed" in flag:
            v.warnings.append(flag)
            continue
        if ": scored 0, solution uses xlt_course" in flag or "SyntaxError under the" in flag:
            continue  # reported with the fix: from Prepared.zero, or when the cell runs
        if ": answer cell unchanged, but the student wrote text " in flag:
            gid, _, rest = flag.partition(": answer cell unchanged, but the student wrote text ")
            v.problems.append(
                f"{gid}: the answer cell still says YOUR ANSWER HERE, and your text is in "
                f"another cell ({rest.partition(':')[0]}): write your answer in the answer "
                "cell itself (replace YOUR ANSWER HERE), not in a cell of your own or in the "
                "question"
            )
            continue
        mods = _concurrency_only(flag) if "reaches into the grader" in flag else []
        if mods:
            cell = flag.partition(": reaches into the grader")[0]
            v.problems.append(f"{cell} imports {', '.join(mods)}: {CONCURRENCY_FIX}")
            continue
        fix = next((f for key, f in _FIXES if key in flag), None)
        if fix is None:
            v.problems.append(f"{flag}: re-download {where} and copy your answers into it")
        else:
            v.problems.append(f"{flag}: {fix} (see {where})")


def _error_of(cell: Any) -> dict | None:
    return next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)


def _limit(memory_mb: int) -> None:  # runs in the kernel's process, before exec
    import resource

    if memory_mb > 0:
        cap = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _execute(
    nb: Any,
    kernel: str,
    cell_timeout: int,
    notebook_timeout: float,
    memory_mb: int = 0,
    layout: grading.LessonLayout | None = None,
    course_refs: dict[str, list[str]] | None = None,
) -> bool:
    """Run ``nb`` in place as the grader does; return False when the notebook ran out of time.

    With ``layout``, the grader's guard runs too (:mod:`autograder.kernel_guard`): before each
    tests cell, how the exercise's functions reach ``xlt_course`` is recorded in
    ``course_refs`` (tests grade id -> what they reach), which the grader scores 0.
    """
    import nbclient
    from nbclient.exceptions import DeadKernelError

    from autograder import kernel_guard

    nonce = secrets.token_hex(8)

    class Client(nbclient.NotebookClient):
        deadline = time.monotonic() + notebook_timeout
        out_of_time = False
        snapped = False
        current: int | None = None

        async def async_execute_cell(self, cell, cell_index, *args, **kwargs):  # noqa: ANN001, ANN201, D102
            if time.monotonic() > self.deadline:
                self.out_of_time = True
                return cell
            self.current = cell_index
            if layout is not None and cell.cell_type == "code":
                if not self.snapped:
                    self.snapped = True
                    await notebooks.eval_expression(
                        self, kernel_guard.install_expression(nonce, layout.watch_modules)
                    )
                meta = cell.get("metadata", {}).get("nbgrader", {})
                gid = meta.get("grade_id")
                if meta.get("grade") and not meta.get("solution") and gid:
                    content = kernel_guard.check_request(
                        nonce,
                        layout.exercise_functions.get(gid, []),
                        sorted(layout.allowed.get(gid, set())),
                    )
                    res = kernel_guard.read_check(await notebooks.request(self, content))
                    if res and res.get("refs") and course_refs is not None:
                        course_refs[gid] = list(res["refs"])
            return await super().async_execute_cell(cell, cell_index, *args, **kwargs)

    env = {
        "XLT_COURSE_GRADING": "1",
        "MPLBACKEND": "Agg",
    }
    defaults = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    saved = {k: os.environ.get(k) for k in [*env, *defaults]}
    os.environ.update(env)
    for k, val in defaults.items():
        os.environ.setdefault(k, val)
    work = Path(tempfile.mkdtemp(prefix="xlt-validate-"))
    try:
        client = Client(
            nb,
            timeout=cell_timeout,
            kernel_name=kernel,
            allow_errors=True,
            interrupt_on_timeout=True,
            error_on_timeout={
                "ename": "CellTimeoutError",
                "evalue": f"the cell ran more than {cell_timeout} s",
                "traceback": [],
            },
            resources={"metadata": {"path": str(work)}},
            # the kernel's own notices (ipykernel's "running over TCP without encryption" on a
            # private loopback kernel) are not the student's business; errors still show
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
        try:
            client.execute(preexec_fn=lambda: _limit(memory_mb))
        except DeadKernelError:
            # the grader restarts the kernel and goes on; here the cell that killed it is named
            i = client.current
            if i is not None:
                nb.cells[i].setdefault("outputs", []).append(
                    notebooks.nbformat.v4.new_output(
                        "error",
                        ename="KernelDied",
                        evalue="the kernel stopped while running this cell (os._exit, a "
                        "crash or the memory limit)",
                        traceback=[],
                    )
                )
        return not client.out_of_time
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old


def validate(
    notebook: Path,
    lesson: str | None = None,
    *,
    cell_timeout: int = CELL_TIMEOUT,
    notebook_timeout: float = NOTEBOOK_TIMEOUT,
    memory_mb: int = MEMORY_MB,
) -> Validation:
    """Check that ``notebook`` is gradable and run its self-checks as the grader would.

    Args:
        notebook: the student's notebook.
        lesson: its lesson id (default: from the file name, else from its cells).
        cell_timeout: seconds one cell may run (the grader's default).
        notebook_timeout: seconds the whole notebook may run (the grader's default).
        memory_mb: the kernel's address-space cap (the grader's default; 0: none).

    Returns:
        A :class:`Validation`; ``.gradable`` is False when something must be fixed, and
        each problem says what to fix.

    Raises:
        FileNotFoundError: the notebook does not exist.
        ValueError: the lesson is unknown or cannot be told.
    """
    notebook = Path(notebook)
    if notebook.is_dir():
        raise ValueError(
            f"{notebook} is a folder: give the notebook file, e.g. "
            "lessons/02-procrustes/02-procrustes.ipynb"
        )
    if not notebook.is_file():
        raise FileNotFoundError(f"{notebook} does not exist")
    lessons = grading.lesson_names(paths.lessons_dir())
    lesson = lesson or guess_lesson(notebook, lessons)
    if lesson is None:
        try:
            notebooks.read_notebook(notebook)
        except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
            why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
            raise ValueError(
                f"{notebook.name} is not a Jupyter notebook ({why}): save it from Jupyter "
                "(File > Save) as an .ipynb file"
            ) from None
        raise ValueError(
            f"cannot tell which lesson {notebook.name} is: name the file after its lesson "
            "(e.g. 02-procrustes.ipynb) or pass --lesson"
        )
    if lesson not in lessons:
        raise ValueError(f"lesson {lesson!r} does not exist (lessons: {', '.join(lessons)})")
    release = paths.lessons_dir() / lesson / f"{lesson}.ipynb"
    layout = grading.lesson_layout(lesson, release)
    v = Validation(notebook, lesson)
    overlaps = _cell_overlaps(notebook, lessons)
    cells_say = max(overlaps, key=overlaps.get, default=lesson)
    if overlaps.get(cells_say, 0) > overlaps.get(lesson, 0):
        v.problems.append(
            f"its cells are lesson {cells_say}'s, not {lesson}'s, which the grader takes from "
            f"the file name: submit the {lesson} notebook, or name this one {cells_say}.ipynb"
        )
    t0 = time.perf_counter()
    prepared = grading.prepare_submission(notebook, layout)
    if prepared.nb is None:
        v.problems += [
            f"{f}: save the notebook from Jupyter again, or re-download "
            f"lessons/{lesson}/{lesson}.ipynb and copy your answers into it"
            for f in prepared.flags
        ]
        return v
    _structure(v, prepared.flags, lesson)
    for tests_id, why in sorted(prepared.zero.items()):
        v.problems.append(
            f"{tests_id}: {why}: write the exercise yourself (only xlt_course.checks may be used)"
        )
    nb = prepared.nb
    # Self-checks run as the student version has them: never the hidden tests.
    template = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in layout.cells
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    }
    for c in nb.cells:
        meta = c.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            c.source = template.get(meta["grade_id"], c.source)
            head, _, tail = notebooks.split_hidden(c.source)
            c.source = head + tail
    course_refs: dict[str, list[str]] = {}
    finished = _execute(
        nb, layout.kernel, cell_timeout, notebook_timeout, memory_mb, layout, course_refs
    )
    for tests_id, refs in sorted(course_refs.items()):
        if tests_id not in prepared.zero:  # reported above already
            v.problems.append(
                f"{tests_id}: the exercise calls xlt_course's own implementation "
                f"({'; '.join(refs[:3])}), which scores 0 when graded: write the exercise "
                "yourself (only xlt_course.checks may be used)"
            )
    v.seconds = round(time.perf_counter() - t0, 1)
    if not finished:
        v.problems.append(
            f"the notebook ran more than {notebook_timeout:g} s (the grader's limit): "
            "long training must not run while graded (see xlt_course.runtime.grading())"
        )
    version = (nb.metadata.get("language_info") or {}).get("version")
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        meta = c.get("metadata", {}).get("nbgrader", {})
        err = _error_of(c)
        label = notebooks.cell_label(nb, i)
        if meta.get("grade") and not meta.get("solution"):
            if err is None and label in course_refs:
                msg = "self-check passes, but the grader scores it 0 (see below)"
                v.checks.append(ExerciseCheck(label, float(meta.get("points", 0)), False, msg))
            elif err is None and not c.get("execution_count"):
                msg = "did not run: the notebook stopped before it (see below)"
                v.checks.append(ExerciseCheck(label, float(meta.get("points", 0)), False, msg))
            elif err is None:
                msg = "self-check passes"
                v.checks.append(ExerciseCheck(label, float(meta.get("points", 0)), True, msg))
            else:
                hint = str(err.get("evalue") or "").strip() or err.get("ename", "error")
                if err.get("ename") == "NameError":
                    hint += " (run the exercise's answer cell; did you rename the function?)"
                v.checks.append(
                    ExerciseCheck(label, float(meta.get("points", 0)), False, f"{hint}")
                )
            continue
        if err is None:
            continue
        ename, evalue = err.get("ename", "Error"), str(err.get("evalue") or "").strip()
        if ename in ("CellTimeoutError", "KeyboardInterrupt"):
            fix = (
                f"it ran more than {cell_timeout} s (the grader's limit per cell): make it "
                "faster, or skip long work when xlt_course.runtime.grading() is True"
            )
        elif ename == "StdinNotImplementedError":
            fix = "remove the input() call: the grader cannot type an answer"
        elif ename == "MemoryError":
            fix = f"it needs more memory than the grader allows ({memory_mb} MB): use less"
        elif ename == "NotImplementedError":
            fix = (
                "an exercise is not written yet: replace its `raise NotImplementedError()` "
                "with your answer"
            )
        elif ename == "SyntaxError" and (newer := grading.newer_syntax(c.source, evalue, version)):
            fix = (
                f"the grader runs Python {grading.GRADER_PYTHON}, and {newer}: rewrite it "
                f"for Python {grading.GRADER_PYTHON}"
            )
        else:
            fix = "fix it so that the notebook runs from top to bottom (Kernel > Restart & Run All)"
        what = "answer cell " if meta.get("solution") else ""
        why = f"{ename}: {evalue[:200]}" if evalue else ename
        v.problems.append(f"{what}{label} raises {why}; {fix}")
    return v


def format_validation(v: Validation) -> str:
    """Return the report ``xlt-course validate`` prints."""
    lines = [
        f"{v.notebook}: lesson {v.lesson}, run as the grader runs it "
        f"(training skipped, {CELL_TIMEOUT} s per cell) in {v.seconds:g} s"
    ]
    for c in v.checks:
        mark = "✓" if c.ok else "✗"
        unit = "point" if c.points == 1 else "points"
        lines.append(f"  {mark} {c.grade_id} ({c.points:g} {unit}): {c.message}")
    for w in v.warnings:
        lines.append(f"  note: {w}")
    if v.problems:
        lines.append("To fix before you submit:")
        lines += [f"  - {p}" for p in v.problems]
    lines.append(
        "GRADABLE: yes. Hidden tests run when it is graded: passing the self-checks is "
        "necessary, not sufficient."
        if v.gradable
        else "GRADABLE: no (fix the problems above and run validate again)."
    )
    return "\n".join(lines)
