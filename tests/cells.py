"""Run one cell of a solution notebook in isolation: how tests prove that test cells catch mistakes.

Test-only helpers (``from cells import run_test_cell, solution_namespace``); grading never
uses them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autograder import notebooks


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
