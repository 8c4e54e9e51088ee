"""Read, write and inspect the course notebooks (nbgrader cell metadata, the shared setup cell).

Solution notebooks are edited in JupyterLab with nbgrader's "Create Assignment" toolbar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def colab_badge(lesson: str) -> str:
    """Return the markdown of the "Open in Colab" badge for ``lesson`` (e.g. ``02-procrustes``)."""
    repo = REPO_URL.removeprefix("https://github.com/")
    href = (
        f"https://colab.research.google.com/github/{repo}/blob/main/lessons/{lesson}/{lesson}.ipynb"
    )
    img = "https://colab.research.google.com/assets/colab-badge.svg"
    return f"[![Open In Colab]({img})]({href})"


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


def cell_label(nb: Any, index: int) -> str:
    """Name a cell for a flag or a message: its grade id, or its position after the last graded cell."""
    gid = nb.cells[index].get("metadata", {}).get("nbgrader", {}).get("grade_id")
    if gid:
        return gid
    before = [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in nb.cells[:index]]
    anchor = next((g for g in reversed(before) if g), None)
    return f"cell {index + 1}" + (f" (after {anchor})" if anchor else "")
