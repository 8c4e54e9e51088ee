"""Run one cell of a solution notebook in isolation: how tests prove that test cells catch mistakes.

Test-only helpers (``from cells import run_test_cell, solution_namespace``); grading never
uses them. A tests cell whose hidden tests run in the grader's worker gets each function
through the same wire as when graded (:mod:`autograder.verdict`): its arguments and return
value are encoded and decoded by the kernel's and the worker's own code, so a correct variant
that returns something the wire refuses fails here too.
"""

from __future__ import annotations

import builtins
import functools
import types
from pathlib import Path
from typing import Any

from autograder import notebooks, verdict

_TO_WIRE = verdict._xltv_codec(False)[0]  # the kernel's side
_FROM_WIRE = verdict._xltv_codec(True)[1]


def _describe(e: BaseException) -> dict:
    return {"status": "error", "ename": type(e).__name__, "evalue": str(e), "traceback": []}


def kernel_call(fn: Any, name: str, payload: dict) -> dict:
    """Return the kernel's reply to a call of ``fn`` (the handler's own code, run here)."""
    return verdict._xltv_call(fn, {"name": name, **payload}, _TO_WIRE, _FROM_WIRE, _describe)


@functools.cache
def _hidden_imports(lesson: str) -> dict[str, list[str]]:
    from autograder import grading, paths

    release = paths.lessons_dir() / lesson / f"{lesson}.ipynb"
    return grading.lesson_layout(lesson, release).hidden_imports


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
    source = cell_source(nb_path, grade_id)
    head, hidden, tail = notebooks.split_hidden(source)
    name = f"{nb_path.name}:{grade_id}"
    ns: dict[str, Any] = {"__name__": "__tests__", **functions}
    if not hidden or verdict.kept_in_kernel(hidden):
        exec(compile(source, name, "exec"), ns)
        return
    # as graded: the visible part in the kernel, with the functions themselves; the hidden
    # part as the worker runs it (its own globals, the lesson's imports), each function
    # called through the wire
    exec(compile(head + tail, name, "exec"), ns)
    lesson = nb_path.stem
    imports = _hidden_imports(lesson).get(grade_id, [])
    fns = {k: f for k, f in functions.items() if isinstance(f, types.FunctionType)}
    out = verdict.run_hidden_tests(
        hidden, imports, list(fns), lambda k, payload, _deadline: kernel_call(fns[k], k, payload)
    )
    if out is not None:
        kind = getattr(builtins, out["ename"], None)
        if isinstance(kind, type) and issubclass(kind, BaseException):
            raise kind(out["evalue"])
        raise AssertionError(f"{out['ename']}: {out['evalue']}")
