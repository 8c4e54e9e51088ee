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
    # locked, so a student's edit to it is not what the grader runs (and nbgrader's
    # release marks it read-only in the lesson)
    setup_meta = code[0].metadata.get("nbgrader", {})
    assert setup_meta.get("grade_id") == "setup" and setup_meta.get("locked"), (
        f"{lesson}: the setup cell must be nbgrader's locked cell 'setup'"
    )
    assert notebooks.colab_badge(lesson) in nb.cells[0].source, (
        f"{lesson}: the title cell needs its Colab badge"
    )
    cells = notebooks.grade_cells(nb)
    written = [g for g, c in cells.items() if c.cell_type == "markdown"]
    cells = {g: c for g, c in cells.items() if c.cell_type == "code"}
    answers = [g for g, c in cells.items() if c.metadata["nbgrader"]["solution"]]
    tests = [g for g, c in cells.items() if c.metadata["nbgrader"]["grade"]]
    assert written, f"{lesson}: the closing questions need answer cells"
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
def test_every_question_has_a_graded_answer_cell_and_a_model_answer(lesson):
    """Each closing question is followed by a manually graded markdown answer cell, whose
    model answer is in the solution only: the lesson shows nbgrader's blank stub."""
    nb = notebooks.read_notebook(solution(lesson))
    head = max(i for i, c in enumerate(nb.cells) if "## Questions" in c.source)
    closing = nb.cells[head + 1 :]
    questions, answers = closing[0::2], closing[1::2]
    assert questions and len(questions) == len(answers), f"{lesson}: question/answer cells"
    release = notebooks.read_notebook(paths.lessons_dir() / lesson / f"{lesson}.ipynb")
    released = notebooks.grade_cells(release)
    lesson_text = "\n".join(c.source for c in release.cells)
    for k, (q, a) in enumerate(zip(questions, answers, strict=True), start=1):
        meta = a.metadata.get("nbgrader", {})
        assert q.source.startswith(f"**Question {k}**") and "nbgrader" not in q.metadata
        assert a.cell_type == "markdown" and meta["grade_id"] == f"q{k}_answer", (lesson, k)
        assert meta["solution"] and meta["grade"] and meta["points"] > 0, (lesson, k)
        assert a.source.startswith("*Model answer.*") and len(a.source) > 80, (lesson, k)
        assert released[meta["grade_id"]].source == "YOUR ANSWER HERE", (lesson, k)
        # no sentence of the model answer reaches the student's notebook
        for line in a.source.splitlines()[1:]:
            assert len(line) < 45 or line not in lesson_text, (lesson, k, line)


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
