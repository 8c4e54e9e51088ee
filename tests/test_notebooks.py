"""Every lesson: the solution/lesson pair is well formed, in sync, and executes end to end."""

from __future__ import annotations

import pytest
from conftest import LESSONS, solution

from autograder import course, grading, notebooks, paths


def test_there_are_lessons():
    assert "00-setup" in LESSONS
    assert len(LESSONS) >= 1


def test_lessons_mirror_solutions():
    released = sorted(p.name for p in paths.lessons_dir().iterdir() if p.is_dir())
    assert released == LESSONS, (
        "lessons/ and solutions/ hold different lessons: run `xlt-course lessons`"
    )


@pytest.mark.parametrize("lesson", LESSONS)
def test_solution_notebook_shape(lesson):
    nb = notebooks.read_notebook(solution(lesson))
    assert not notebooks.has_outputs(nb), f"{lesson}: commit notebooks without outputs"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source == notebooks.SETUP_SOURCE, (
        f"{lesson}: the first code cell must be the shared setup cell"
    )
    assert notebooks.colab_badge(lesson) in nb.cells[0].source, (
        f"{lesson}: the title cell needs its Colab badge"
    )
    cells = notebooks.grade_cells(nb)
    answers = [g for g, c in cells.items() if c.metadata["nbgrader"]["solution"]]
    tests = [g for g, c in cells.items() if c.metadata["nbgrader"]["grade"]]
    assert len(tests) >= 1 or lesson == "00-setup"
    for g in answers:
        assert f"{g}_tests" in tests, f"{lesson}: exercise {g} has no tests cell named {g}_tests"
        assert "### BEGIN SOLUTION" in cells[g].source
    for g in tests:
        src = cells[g].source
        assert "### BEGIN HIDDEN TESTS" in src, f"{lesson}: {g} has no hidden tests"
        assert "checks." in src.split("### BEGIN HIDDEN TESTS")[0], (
            f"{lesson}: {g} needs visible self-checks"
        )


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_has_no_solutions_or_hidden_tests(lesson):
    text = (paths.lessons_dir() / lesson / f"{lesson}.ipynb").read_text(encoding="utf-8")
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text, f"lessons/{lesson} contains {marker!r}: regenerate it"
    nb = notebooks.read_notebook(paths.lessons_dir() / lesson / f"{lesson}.ipynb")
    assert not notebooks.has_outputs(nb)


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_is_regenerated_from_solution(lesson):
    diff = grading.lesson_drift(lesson)
    assert diff == "", f"lessons/{lesson} differs from what solutions/ generates:\n{diff[:3000]}"


@pytest.mark.notebook
@pytest.mark.parametrize("lesson", LESSONS)
def test_solution_executes(lesson, built_data):
    seconds = course.execute_notebook(solution(lesson), smoke=True)
    assert seconds > 0
