"""A grader failure costs that submission, flagged; a messy but honest notebook costs nothing."""

from __future__ import annotations

import csv
import re

import nbformat
import pytest
from conftest import solution

from autograder import cli, grading, notebooks, paths

LESSON = "00-setup"


@pytest.mark.slow
def test_one_grader_failure_is_flagged_and_regraded_on_the_next_run(tmp_path, capsys, monkeypatch):
    subs = tmp_path / "subs"
    for student in ("alice", "bob"):
        dest = subs / student / LESSON / f"{LESSON}.ipynb"
        dest.parent.mkdir(parents=True)
        dest.write_bytes(solution(LESSON).read_bytes())
    real = grading.grade_one

    def fails_for_bob(student, *args, **kwargs):
        if student == "bob":
            # what CI met: CPython 3.11's AST race (python/cpython#106905), raised mid-grade
            raise SystemError("AST constructor recursion depth mismatch (before=36, after=31)")
        return real(student, *args, **kwargs)

    monkeypatch.setattr(grading, "grade_one", fails_for_bob)
    args = ["grade", str(subs), "--out", str(tmp_path / "out"), "--jobs", "2"]
    args += ["--cell-timeout", "60", "--unsafe-no-sandbox"]
    assert cli.main(args) == 3  # fails loudly ...
    captured = capsys.readouterr()
    assert "the grader failed on 1 submission" in captured.err
    assert f"flagged bob/{LESSON}: {grading.GRADER_ERROR_FLAG}; SystemError: AST" in captured.out
    with open(tmp_path / "out" / "grades.csv", encoding="utf-8") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert rows["alice"]["auto_points"] == rows["alice"]["auto_max"] != "0"  # ... loses nothing
    assert grading.GRADER_ERROR_FLAG in rows["bob"]["flags"]
    log = (tmp_path / "out" / ".work" / "jobs" / "errors.log").read_text(encoding="utf-8")
    assert "--- bob/00-setup" in log and "SystemError" in log
    # the next run regrades bob only (alice's grade is kept, not rerun)
    monkeypatch.setattr(grading, "grade_one", real)
    assert cli.main(args) == 0
    with open(tmp_path / "out" / "grades.csv", encoding="utf-8") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert rows["bob"]["auto_points"] == rows["bob"]["auto_max"] != "0"
    assert grading.GRADER_ERROR_FLAG not in rows["bob"]["flags"]


# --- messy but honest notebooks (audit 13): graded as they run in Jupyter --------------------

RELEASE = paths.lessons_dir() / LESSON / f"{LESSON}.ipynb"
CORRECT_TESTS = {"ex1_cosine_tests": (2.0, 2.0), "ex2_top_k_tests": (1.0, 1.0)}
STUB_PUT_BACK = "solution cell ex1_cosine deleted (the lesson's stub put back before the student's"


def _answered() -> nbformat.NotebookNode:
    """Return the released notebook with the model code answers (written answers left blank)."""
    nb = notebooks.read_notebook(RELEASE)
    ref = notebooks.grade_cells(notebooks.read_notebook(solution(LESSON)))
    for gid, cell in notebooks.grade_cells(nb).items():
        if cell.metadata["nbgrader"].get("solution") and cell.cell_type == "code":
            cell.source = "\n".join(ln for ln in ref[gid].source.splitlines() if "### " not in ln)
    return nb


def _at(nb, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if notebooks.cell_label(nb, i) == grade_id)


def _answer_without_metadata(how: str) -> nbformat.NotebookNode:
    """Return a correct notebook whose ex1 answer lost its nbgrader metadata (``how``)."""
    nb = _answered()
    i = _at(nb, "ex1_cosine")
    if how == "cleared":  # Edit > Clear cell metadata
        nb.cells[i].metadata = {}
    elif how == "retyped":  # the stub deleted, the answer typed in a new cell
        nb.cells[i] = nbformat.v4.new_code_cell(nb.cells[i].source)
    elif how == "merged":  # Shift+M with the lesson's code cell above (it keeps no metadata)
        above = max(j for j in range(i) if nb.cells[j].cell_type == "code")
        nb.cells[above].source += "\n\n" + nb.cells.pop(i).source
    elif how == "missing":  # really no answer
        del nb.cells[i]
    return nb


def _written_elsewhere() -> nbformat.NotebookNode:
    """Return a notebook whose q1 answer is in a new cell below, q2's in the question cell."""
    nb = _answered()
    i = _at(nb, "q1_answer")
    nb.cells.insert(i + 1, nbformat.v4.new_markdown_cell("My answer: the CPU and the cores."))
    nb.cells[_at(nb, "q2_answer") - 1].source += "\n\nAnswer: they share the same context."
    return nb


def _reformatted() -> nbformat.NotebookNode:
    """Return a correct notebook saved with CRLF, trailing spaces and reformatted locked code."""
    import ast

    nb = _answered()
    for c in notebooks.grade_cells(nb).values():
        if c.metadata["nbgrader"].get("locked") and c.cell_type == "code":
            c.source = ast.unparse(ast.parse(c.source))  # format-on-save: same syntax tree
        c.source = "\r\n".join(line + "  " for line in c.source.split("\n"))
    return nb


def _reordered_with_helper() -> nbformat.NotebookNode:
    """Return a correct notebook with exercise 2 moved above exercise 1 and a helper between.

    As the student's notebook runs top to bottom: ex2's answer and tests, then the helper
    ``_unit``, then ex1's answer (which uses it) and tests.
    """
    nb = _answered()
    ex1, ex2 = _at(nb, "ex1_cosine"), _at(nb, "ex2_top_k")
    block2 = nb.cells[ex2 : _at(nb, "ex2_top_k_tests") + 1]
    for c in block2:
        nb.cells.remove(c)
    helper = nbformat.v4.new_code_cell(
        "import numpy as np\n\n\ndef _unit(X):\n    return X / np.linalg.norm(X, axis=1, keepdims=True)\n"
    )
    nb.cells[ex1:ex1] = [*block2, helper]
    notebooks.grade_cells(nb)[
        "ex1_cosine"
    ].source = "def cosine_similarity_matrix(A, B):\n    return _unit(A) @ _unit(B).T\n"
    return nb


def _prepare(nb, tmp_path, name="sub.ipynb", prefix=b""):
    path = tmp_path / name
    path.write_bytes(prefix + notebooks.dumps(nb).encode("utf-8"))
    return grading.prepare_submission(path, grading.lesson_layout(LESSON, RELEASE))


@pytest.mark.parametrize("how", ["cleared", "retyped", "merged"])
def test_an_answer_cell_without_metadata_runs_after_the_stub_put_back(tmp_path, how):
    p = _prepare(_answer_without_metadata(how), tmp_path)
    assert any(f.startswith(STUB_PUT_BACK) for f in p.flags), p.flags
    assert not any("graded blank" in f for f in p.flags)
    stub, tests = _at(p.nb, "ex1_cosine"), _at(p.nb, "ex1_cosine_tests")
    assert p.nb.cells[stub].source.startswith(grading.DELETED_STUB_NOTE)
    assert "raise NotImplementedError()" in p.nb.cells[stub].source
    own = [i for i, c in enumerate(p.nb.cells) if "np.linalg.norm" in c.source]
    assert own and stub < own[0] < tests  # the student's definition runs last, as in Jupyter
    # the lesson's cells that lead into the exercise stay before the stub (merged: the
    # student's cell with the answer is above the exercise's heading, and so is the stub)
    heading = next(i for i, c in enumerate(p.nb.cells) if c.source.startswith("## Exercise 1"))
    assert heading < stub if how != "merged" else stub < heading


def test_a_helper_of_a_reordered_notebook_stays_before_the_answer_using_it(tmp_path):
    # audit 13: graded in the lesson's order, the helper went with ex2's tests, after ex1
    p = _prepare(_reordered_with_helper(), tmp_path)
    assert "cells reordered (graded in the lesson's order)" in p.flags
    helper = next(i for i, c in enumerate(p.nb.cells) if "def _unit" in c.source)
    assert helper < _at(p.nb, "ex1_cosine") < _at(p.nb, "ex2_top_k")
    # a cell that computes something stays where it was attached
    nb = _reordered_with_helper()
    i = next(i for i, c in enumerate(nb.cells) if "def _unit" in c.source)
    nb.cells[i].source += "\nprint(_unit(np.eye(2)))\n"
    p = _prepare(nb, tmp_path)
    helper = next(i for i, c in enumerate(p.nb.cells) if "def _unit" in c.source)
    assert helper > _at(p.nb, "ex2_top_k_tests")


def test_a_written_answer_beside_the_placeholder_waits_for_review(tmp_path):
    p = _prepare(_written_elsewhere(), tmp_path)
    assert p.review == ["q1_answer", "q2_answer"]
    assert (
        "q1_answer: answer cell unchanged, but the student wrote text below it: review by hand"
        in p.flags
    )
    assert (
        "q2_answer: answer cell unchanged, but the student wrote text above it: review by hand"
        in p.flags
    )
    # an unanswered question, an answer in its cell, and the lesson's own text: no flag
    nb = _answered()
    notebooks.grade_cells(nb)["q1_answer"].source = "The CPU."
    p = _prepare(nb, tmp_path)
    assert p.review == [] and not any("answer cell unchanged" in f for f in p.flags)


def test_locked_cells_compare_up_to_line_endings_whitespace_and_formatting(tmp_path):
    p = _prepare(_reformatted(), tmp_path)
    assert not any("locked cell" in f for f in p.flags), p.flags
    assert (
        notebooks.grade_cells(p.nb)["setup"].source
        == notebooks.grade_cells(notebooks.read_notebook(RELEASE))["setup"].source
    )
    nb = _reformatted()
    notebooks.grade_cells(nb)["ex2_top_k_tests"].source += "\r\nassert True\r\n"  # a real edit
    p = _prepare(nb, tmp_path)
    assert "locked cell ex2_top_k_tests edited (restored from the lesson)" in p.flags
    assert not any("locked cell setup" in f for f in p.flags)


def test_a_notebook_with_a_byte_order_mark_is_read(tmp_path):
    p = _prepare(_answered(), tmp_path, prefix=b"\xef\xbb\xbf")
    assert p.nb is not None and p.flags == []
    assert notebooks.grade_cells(notebooks.read_notebook(tmp_path / "sub.ipynb"))


def test_syntax_of_a_newer_python_is_named_in_the_flag(tmp_path):
    nb = _answered()
    cells = notebooks.grade_cells(nb)
    cells["ex1_cosine"].source = "type Matrix = np.ndarray\n" + cells["ex1_cosine"].source
    cells["ex2_top_k"].source += '\nprint(f"best: {", ".join(["a", "b"])}")\n'
    flags = _prepare(nb, tmp_path).flags
    py = grading.GRADER_PYTHON
    assert (
        f"ex1_cosine: SyntaxError under the grader's Python {py} (a `type X = ...` alias needs Python 3.12 or newer)"
        in flags
    )
    assert any(
        f.startswith(f"ex2_top_k: SyntaxError under the grader's Python {py} (an f-string")
        for f in flags
    )
    # an ordinary mistake says nothing about versions, unless the notebook ran on a newer one
    cells["ex1_cosine"].source = "def broken(:\n    pass\n"
    cells["ex2_top_k"].source = "x = 1\n"
    assert not any("SyntaxError" in f for f in _prepare(nb, tmp_path).flags)
    nb.metadata["language_info"] = {"name": "python", "version": "3.13.1"}
    assert (
        "ex1_cosine: SyntaxError under the grader's Python "
        + py
        + (" (the notebook last ran on Python 3.13.1, whose syntax may be newer)")
        in _prepare(nb, tmp_path).flags
    )


def test_script_in_a_students_text_is_removed_and_the_lessons_kept(tmp_path):
    nb = _answered()
    answer = 'Fine <b>yes</b> <img src="x" onerror="document.title=1"> <script>alert(1)</script>'
    notebooks.grade_cells(nb)["q1_answer"].source = answer
    nb.cells.append(
        nbformat.v4.new_markdown_cell("[click](javascript:alert(2)) <a onclick=x>a</a>")
    )
    p = _prepare(nb, tmp_path)
    q1 = notebooks.grade_cells(p.nb)["q1_answer"].source
    assert q1.startswith("Fine <b>yes</b> <img") and "onerror" not in q1 and "script" not in q1
    assert "javascript" not in p.nb.cells[-1].source and "onclick" not in p.nb.cells[-1].source
    assert "q1_answer: scripts or event handlers removed from its HTML" in p.flags
    release = notebooks.read_notebook(RELEASE)
    assert [c.source for c in p.nb.cells[:3]] == [c.source for c in release.cells[:3]]


SHOWS_SCRIPT = (
    "from IPython.display import HTML, Javascript, display\n"
    "display(HTML('<b>shown</b><img src=x onerror=\"document.title=2\">'))\n"
    "display(Javascript('document.title=3'))\n"
)


def test_script_in_outputs_is_removed_from_the_feedback(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={
                "text/plain": "<HTML>",
                "text/html": ['<b>shown</b><img src=x onerror="t()">', "<script>t()</script>"],
                "application/javascript": "t()",
            },
        )
    ]
    nb.cells.append(cell)
    grading.sanitize_feedback_outputs(nb, {})
    assert cell.outputs[0].data == {"text/plain": "<HTML>", "text/html": "<b>shown</b><img src=x >"}
    grading._write_course(tmp_path)  # every grading job's course runs it before its feedback
    config = (tmp_path / "nbgrader_config.py").read_text(encoding="utf-8")
    assert "'autograder.grading.sanitize_feedback_outputs'" in config


def test_folder_student_ids_are_unicode_nfc(tmp_path):
    nfd = "zoe\u0308"
    nb = tmp_path / nfd / LESSON / f"{LESSON}.ipynb"
    nb.parent.mkdir(parents=True)
    nb.write_text("{}", encoding="utf-8")
    assert grading.find_submissions(tmp_path) == [("zo\u00eb", LESSON, nb)]


@pytest.mark.slow
def test_messy_notebooks_grade_as_they_run_in_jupyter(tmp_path, built_data):
    subs = tmp_path / "subs"

    def submit(student, nb, prefix=b""):
        dest = subs / student / LESSON / f"{LESSON}.ipynb"
        dest.parent.mkdir(parents=True)
        dest.write_bytes(prefix + notebooks.dumps(nb).encode("utf-8"))

    for how in ("cleared", "retyped", "merged", "missing"):
        submit(how, _answer_without_metadata(how))
    submit("elsewhere", _written_elsewhere())
    submit("reformatted", _reformatted())
    submit("bom", _answered(), b"\xef\xbb\xbf")
    submit("reordered", _reordered_with_helper())
    nb = _answered()
    notebooks.grade_cells(nb)[
        "q1_answer"
    ].source = 'The CPU. <img src="x" onerror="document.title=1"><script>alert(1)</script>'
    nb.cells.append(nbformat.v4.new_code_cell(SHOWS_SCRIPT))
    submit("zoe\u0308", nb)  # a macOS (NFD) folder name, HTML in an answer and in outputs
    limits = grading.GradeLimits(notebook_timeout=400, cell_timeout=25, memory_mb=2500)
    out = tmp_path / "out"
    results = {
        r.student: r for r in grading.grade(subs, out, jobs=4, limits=limits, progress=False)
    }
    for how in ("cleared", "retyped", "merged"):
        assert results[how].points == CORRECT_TESTS, (how, results[how].flags)
        assert any(f.startswith(STUB_PUT_BACK) for f in results[how].flags)
    missing = results["missing"]
    assert missing.points["ex1_cosine_tests"] == (0.0, 2.0)
    assert any(f.startswith(STUB_PUT_BACK) for f in missing.flags)
    page = missing.feedback.read_text(encoding="utf-8")
    assert "The answer cell was deleted from the submission" in page
    assert "not implemented yet" in page  # the hint still says what to write
    elsewhere = results["elsewhere"]
    assert elsewhere.manual == {
        "q1_answer": (None, 1.0),
        "q2_answer": (None, 2.0),
        "q3_answer": (0.0, 1.0),
    }
    assert elsewhere.manual_pending == 3.0
    # and formgrader lists them as needing a grade once merged (nbgrader had scored them 0)
    from nbgrader.api import Gradebook

    job_db = out / ".work" / "jobs" / LESSON / "elsewhere" / "gradebook.db"
    with Gradebook(f"sqlite:///{job_db}", grading.COURSE_ID) as gb:
        q1 = gb.find_grade("q1_answer", LESSON, LESSON, "elsewhere")
        assert q1.needs_manual_grade and q1.auto_score is None
    for student in ("reformatted", "bom", "reordered"):
        assert results[student].points == CORRECT_TESTS, results[student].flags
        assert not any("locked" in f or "invalid" in f for f in results[student].flags)
    zoe = results["zo\u00eb"]
    assert zoe.points == CORRECT_TESTS
    page = (out / "feedback" / "zo\u00eb" / f"{LESSON}.html").read_text(encoding="utf-8")
    # the answer's and the outputs' HTML render without their scripts (the code shows, escaped)
    assert "The CPU." in page and "<b>shown</b><img" in page and "alert(1)" not in page
    assert re.search(r"<img[^>]*onerror", page) is None
    assert page.count("document.title=3") == 1  # in the cell's code, not as a script
    assert "Setup: how this course works" in page  # the lesson's own text still renders
    with open(out / "grades.csv", encoding="utf-8") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert "zo\u00eb" in rows and rows["elsewhere"]["manual_pending"] == "3"
