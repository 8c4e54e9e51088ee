"""Build and inspect the course notebooks (nbgrader cell metadata, the shared setup cell).

Solution notebooks are edited in JupyterLab with nbgrader's "Create Assignment" toolbar or
written with the cell builders below; both give the same metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import nbformat

REPO_URL = "https://github.com/xlt-course/xlt-course"

# The first code cell of every lesson, byte for byte (tests check it).
SETUP_SOURCE = """\
# Setup: the same cell opens every lesson. On Colab it fetches and installs the course
# (a few minutes, once per runtime); on your machine it only checks the environment.
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run(
        "test -d xlt-course || git clone -q --depth 1 {url} xlt-course; "
        "make -C xlt-course colab",
        shell=True,
        check=True,
    )
    sys.path.insert(0, "xlt-course")

from xlt_course.runtime import setup_lesson

ENV = setup_lesson()""".replace("{url}", REPO_URL)

CellKind = Literal["markdown", "code", "setup", "solution", "tests", "readonly"]


def colab_badge(lesson: str) -> str:
    """Return the markdown of the "Open in Colab" badge for ``lesson`` (e.g. ``02-procrustes``)."""
    repo = REPO_URL.removeprefix("https://github.com/")
    href = (
        f"https://colab.research.google.com/github/{repo}/blob/main/lessons/{lesson}/{lesson}.ipynb"
    )
    img = "https://colab.research.google.com/assets/colab-badge.svg"
    return f"[![Open In Colab]({img})]({href})"


def _meta(grade_id: str, *, grade: bool, solution: bool, locked: bool, points: float = 0) -> dict:
    meta: dict[str, Any] = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


def cell(kind: CellKind, source: str, grade_id: str | None = None, points: float = 0):
    """Return a notebook cell of ``kind`` with the right nbgrader metadata.

    Args:
        kind: ``markdown``/``code`` plain cells; ``setup`` the locked shared setup cell;
            ``solution`` an autograded-answer cell; ``tests`` an autograded-tests cell worth
            ``points``; ``readonly`` a locked code cell.
        source: the cell's text (ignored for ``setup``).
        grade_id: nbgrader's unique cell id (required for solution/tests/readonly).
        points: points for a ``tests`` cell.
    """
    if kind == "markdown":
        return nbformat.v4.new_markdown_cell(source)
    if kind == "code":
        return nbformat.v4.new_code_cell(source)
    if kind == "setup":
        return nbformat.v4.new_code_cell(
            SETUP_SOURCE, metadata=_meta("setup", grade=False, solution=False, locked=True)
        )
    if grade_id is None:
        raise ValueError(f"a {kind!r} cell needs a grade_id")
    if kind == "solution":
        meta = _meta(grade_id, grade=False, solution=True, locked=False)
    elif kind == "tests":
        if points <= 0:
            raise ValueError(f"tests cell {grade_id!r} needs points > 0")
        meta = _meta(grade_id, grade=True, solution=False, locked=True, points=points)
    elif kind == "readonly":
        meta = _meta(grade_id, grade=False, solution=False, locked=True)
    else:
        raise ValueError(f"unknown cell kind {kind!r}")
    return nbformat.v4.new_code_cell(source, metadata=meta)


def new_notebook(cells: list) -> nbformat.NotebookNode:
    """Return a Python 3 notebook holding ``cells``, without outputs."""
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    return nb


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> None:
    """Write ``nb`` with stripped outputs and stable cell ids (lesson-local, deterministic)."""
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i:03d}"
        if c.cell_type == "code":
            c["outputs"] = []
            c["execution_count"] = None
    nbformat.validate(nb)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(nb), encoding="utf-8")


def dumps(nb: nbformat.NotebookNode) -> str:
    """Return the course's stable text layout of a notebook (nbformat's, newline-terminated)."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read a notebook (any nbformat 4 minor version), raising ValueError naming the file."""
    try:
        return nbformat.read(str(path), as_version=4)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - nbformat raises many types for bad input
        raise ValueError(f"{path} is not a readable Jupyter notebook: {e}") from e


def grade_cells(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """Return ``{grade_id: cell}`` for every nbgrader cell of ``nb``."""
    out = {}
    for c in nb.cells:
        meta = c.get("metadata", {}).get("nbgrader")
        if meta and meta.get("grade_id"):
            out[meta["grade_id"]] = c
    return out


def has_outputs(nb: nbformat.NotebookNode) -> bool:
    """Return True when any code cell carries outputs or an execution count."""
    return any(
        c.cell_type == "code" and (c.get("outputs") or c.get("execution_count")) for c in nb.cells
    )
