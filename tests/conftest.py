"""Shared test settings: offline, smoke-size lessons, helpers to find notebooks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The suite runs offline and executes lessons at their documented smoke size.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["XLT_COURSE_SMOKE"] = "1"
# Idle OpenMP threads spin for a while by default; on a 2-core CI runner that steals the
# cores from the notebook kernels the suite starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from xlt_course import grading, paths  # noqa: E402

LESSONS = grading.lesson_names()


def solution(lesson: str) -> Path:
    """Return the solution notebook of ``lesson``."""
    return paths.solutions_dir() / lesson / f"{lesson}.ipynb"


def run_visible_checks(nb_path: Path, grade_id: str, **functions) -> None:
    """Run only the visible self-checks of the tests cell ``grade_id`` (what a student sees)."""
    source = grading.cell_source(nb_path, grade_id).partition("### BEGIN HIDDEN TESTS")[0]
    exec(
        compile(source, f"{nb_path.name}:{grade_id}:visible", "exec"),
        {"__name__": "__tests__", **functions},
    )


@pytest.fixture(scope="session")
def built_data() -> Path:
    """Return the build folder, skipping nothing: the suite needs `xlt-course data build`."""
    from xlt_course.data.build import artefact_status

    bad = {k: v[1] for k, v in artefact_status().items() if not v[0]}
    if bad:
        pytest.fail(f"offline data is not built or is corrupt ({bad}): run `make data`")
    return paths.build_dir()


def assert_build_is_noop(build, manifest, names: tuple[str, ...]) -> None:
    """Run ``build(manifest)`` again and check that it rewrote none of the ``names`` artefacts."""
    files = [manifest.folder / manifest.entries[n].path for n in names]
    before = [f.stat().st_mtime_ns for f in files]
    build(manifest)
    assert [f.stat().st_mtime_ns for f in files] == before, "a second build rewrote artefacts"
