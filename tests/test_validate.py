"""`xlt-course validate`: the reference passes; broken notebooks fail with what to fix."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import solution

from autograder import cli, grading, notebooks, paths, validate

LESSON = "00-setup"
RELEASE = paths.lessons_dir() / LESSON / f"{LESSON}.ipynb"


def _answered():
    """Return the student notebook with the reference answers (no hidden tests in it)."""
    nb = notebooks.read_notebook(RELEASE)
    ref = notebooks.grade_cells(notebooks.read_notebook(solution(LESSON)))
    for gid, cell in notebooks.grade_cells(nb).items():
        if cell.metadata["nbgrader"].get("solution"):
            lines = ref[gid].source.splitlines()
            cell.source = "\n".join(ln for ln in lines if "### " not in ln)
    return nb


def _write(tmp_path, nb, name=f"{LESSON}.ipynb"):
    path = tmp_path / name
    path.write_text(notebooks.dumps(nb), encoding="utf-8")
    return path


@pytest.mark.notebook
def test_reference_solution_is_gradable(capsys):
    assert cli.main(["validate", str(solution(LESSON))]) == 0
    out = capsys.readouterr().out
    assert "✓ ex1_cosine_tests (2 points): self-check passes" in out
    assert "✓ ex2_top_k_tests (1 point): self-check passes" in out
    assert "GRADABLE: yes" in out
    assert notebooks.HIDDEN_BEGIN not in out and "_reference" not in out


@pytest.mark.notebook
def test_deleted_test_cell_fails_and_says_what_to_fix(tmp_path, capsys):
    nb = _answered()
    nb.cells = [
        c
        for c in nb.cells
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") != "ex2_top_k_tests"
    ]
    # the file name says nothing: the lesson is recognised from the cells
    path = _write(tmp_path, nb, "my homework (1).ipynb")
    assert cli.main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "lesson 00-setup" in out
    assert (
        "locked cell ex2_top_k_tests deleted (restored): copy the cell back from the lesson" in out
    )
    assert "GRADABLE: no" in out


@pytest.mark.notebook
def test_answer_cell_that_raises_fails_and_says_what_to_fix(tmp_path, capsys):
    nb = _answered()
    cells = notebooks.grade_cells(nb)
    cells["ex2_top_k"].source += "\nundefined_helper()\n"
    path = _write(tmp_path, nb)
    before = path.read_bytes()
    assert cli.main(["validate", str(path)]) == 1
    assert path.read_bytes() == before  # validate never writes the student's notebook
    out = capsys.readouterr().out
    assert "answer cell ex2_top_k raises NameError: name 'undefined_helper' is not defined" in out
    assert "runs from top to bottom" in out
    assert "✓ ex1_cosine_tests" in out  # the other exercise is still checked
    assert "GRADABLE: no" in out


def test_forbidden_import_and_unreadable_file_are_not_gradable(tmp_path, monkeypatch):
    monkeypatch.setattr(validate, "_execute", lambda *a, **k: True)  # structure only
    nb = _answered()
    notebooks.grade_cells(nb)[
        "ex1_cosine"
    ].source = "from xlt_course.retrieval import nn_scores as cosine_similarity_matrix\n"
    v = validate.validate(_write(tmp_path, nb))
    assert not v.gradable
    assert any("ex1_cosine_tests" in p and "write the exercise yourself" in p for p in v.problems)
    broken = tmp_path / f"x-{LESSON}.ipynb"
    broken.write_text("{not json", encoding="utf-8")
    v = validate.validate(broken)
    assert not v.gradable and "not JSON" in v.problems[0]


@pytest.mark.notebook
def test_an_own_cell_that_binds_the_course_implementation_is_not_gradable(tmp_path, capsys):
    """The grader's run-time guard zeroes it; validate runs the same guard and says so."""
    nb = _answered()
    at = next(
        i
        for i, c in enumerate(nb.cells)
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "ex1_cosine"
    )
    nb.cells.insert(
        at + 1,
        notebooks.nbformat.v4.new_code_cell(
            "from xlt_course import retrieval\ncosine_similarity_matrix = retrieval.nn_scores\n"
        ),
    )
    path = _write(tmp_path, nb)
    assert cli.main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "✗ ex1_cosine_tests (2 points): self-check passes, but the grader scores it 0" in out
    assert "ex1_cosine_tests: the exercise calls xlt_course's own implementation" in out
    assert "✓ ex2_top_k_tests" in out  # the other exercise is untouched
    assert "GRADABLE: no" in out


def test_a_folder_a_zip_and_an_unknown_notebook_say_what_to_give(tmp_path, capsys):
    assert cli.main(["validate", str(tmp_path)]) == 2
    assert "is a folder: give the notebook file" in capsys.readouterr().err
    bad = tmp_path / "homework.zip"
    bad.write_bytes(b"PK\x03\x04garbage")
    assert cli.main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "homework.zip is not a Jupyter notebook" in err and "save it from Jupyter" in err
    plain = tmp_path / "homework.ipynb"
    plain.write_text(notebooks.dumps(notebooks.nbformat.v4.new_notebook()), encoding="utf-8")
    assert cli.main(["validate", str(plain)]) == 2
    assert "cannot tell which lesson homework.ipynb is" in capsys.readouterr().err


def _not_gradable(tmp_path, nb_or_path, capsys) -> str:
    """Run ``xlt-course validate`` on a notebook or its path; check it says no; return its output."""
    path = nb_or_path if isinstance(nb_or_path, Path) else _write(tmp_path, nb_or_path)
    assert cli.main(["validate", str(path)]) == 1
    return capsys.readouterr().out


def test_unknown_lesson_is_one_line(tmp_path, capsys):
    path = _write(tmp_path, _answered())
    assert cli.main(["validate", str(path), "--lesson", "99-nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "lesson '99-nope' does not exist" in err and "\n" not in err


@pytest.mark.notebook
def test_a_cell_that_kills_the_kernel_is_named_not_a_traceback(tmp_path, capsys):
    nb = _answered()
    cell = notebooks.grade_cells(nb)["ex2_top_k"]
    cell.source = "import os\nos._exit(0)\n" + cell.source
    out = _not_gradable(tmp_path, nb, capsys)
    assert "answer cell ex2_top_k raises KernelDied" in out
    assert "✗ ex2_top_k_tests (1 point): did not run" in out
    assert "GRADABLE: no" in out


@pytest.mark.notebook
def test_duplicated_answer_and_grader_access_say_what_to_do(tmp_path, capsys):
    nb = _answered()
    i = next(
        i
        for i, c in enumerate(nb.cells)
        if c.metadata.get("nbgrader", {}).get("grade_id") == "ex1_cosine"
    )
    copy = notebooks.nbformat.from_dict(notebooks.nbformat.v4.new_code_cell(nb.cells[i].source))
    copy.metadata = dict(nb.cells[i].metadata)
    nb.cells.insert(i + 1, copy)
    nb.cells.insert(
        1, notebooks.nbformat.v4.new_code_cell("import sys\nframe = sys._getframe(0)\n")
    )
    out = _not_gradable(tmp_path, nb, capsys)
    assert "only the FIRST copy is graded: keep your answer in that one" in out
    assert "reaches into the grader (uses ._getframe)" in out and "remove that code" in out


@pytest.mark.notebook
def test_a_notebook_named_after_another_lesson_says_so(tmp_path, capsys):
    path = _write(tmp_path, _answered(), "02-procrustes.ipynb")
    assert cli.main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "its cells are lesson 00-setup's, not 02-procrustes's" in out


@pytest.mark.notebook
def test_an_answer_written_elsewhere_and_parallel_code_say_what_the_rules_are(tmp_path, capsys):
    nb = _answered()
    cells = notebooks.grade_cells(nb)
    cells["q1_answer"].source = "YOUR ANSWER HERE"  # the placeholder, as released
    i = next(i for i, c in enumerate(nb.cells) if c is cells["q1_answer"])
    nb.cells.insert(i + 1, notebooks.nbformat.v4.new_markdown_cell("My answer: the CPU."))
    cells["ex2_top_k"].source = "import threading\n" + cells["ex2_top_k"].source
    out = _not_gradable(tmp_path, nb, capsys)
    assert "q1_answer: the answer cell still says YOUR ANSWER HERE, and your text is in " in out
    assert "another cell (below it): write your answer in the answer cell itself" in out
    assert "ex2_top_k imports threading: the grader's rules do not allow threads" in out
    assert "write plain single-process code" in out and "remove that code" not in out


@pytest.mark.notebook
def test_syntax_of_a_newer_python_names_the_graders_version(tmp_path, capsys):
    nb = _answered()
    cell = notebooks.grade_cells(nb)["ex1_cosine"]
    cell.source = "type Matrix = np.ndarray\n" + cell.source
    nb.metadata["language_info"] = {"name": "python", "version": "3.12.3"}
    path = _write(tmp_path, nb)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # and a BOM (Windows Notepad)
    out = _not_gradable(tmp_path, path, capsys)
    assert "answer cell ex1_cosine raises SyntaxError" in out
    assert (
        f"the grader runs Python {grading.GRADER_PYTHON}, and a `type X = ...` alias needs "
        "Python 3.12 or newer" in out
    )
    assert "not JSON" not in out and "✓ ex2_top_k_tests" in out


def test_formatting_of_locked_cells_is_no_edit(tmp_path, monkeypatch):
    monkeypatch.setattr(validate, "_execute", lambda *a, **k: True)  # structure only
    nb = _answered()
    for c in notebooks.grade_cells(nb).values():
        if c.metadata["nbgrader"].get("locked"):  # format-on-save, then CRLF and trailing spaces
            c.source = "\r\n".join(
                f"{line} " for line in ast.unparse(ast.parse(c.source)).split("\n")
            )
    v = validate.validate(_write(tmp_path, nb))
    assert not any("locked cell" in p for p in v.problems), v.problems
