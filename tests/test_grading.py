"""The real nbgrader pipeline: lessons generate, submissions grade, hostile input is contained.

One batch of submissions of lesson 00-setup (the fastest lesson) is graded once, in
parallel, and many tests read its result: every hostile or broken case is graded as
intended, flagged, and leaves the other students' grades alone.
"""

from __future__ import annotations

import copy
import csv
import json
import shutil

import nbformat
import pytest
from conftest import solution

from autograder import cli, grading, notebooks, paths

LESSON = "00-setup"
RELEASE = paths.lessons_dir() / LESSON / f"{LESSON}.ipynb"
# Generous per-cell limit: the setup cell imports torch, slow on a loaded CI machine.
LIMITS = grading.GradeLimits(notebook_timeout=400, cell_timeout=25, memory_mb=2500)

WRONG_TOP_K = "def top_k(scores, k):\n    return np.argsort(scores, axis=1)[:, :k]\n"
WRONG_COSINE = "def cosine_similarity_matrix(A, B):\n    return A @ B.T\n"


def _ref_sources() -> dict[str, str]:
    cells = notebooks.grade_cells(notebooks.read_notebook(solution(LESSON)))
    return {gid: cells[gid].source for gid in ("ex1_cosine", "ex2_top_k")}


def _student_nb(ex1: str | None = "ref", ex2: str | None = "ref") -> nbformat.NotebookNode:
    """Return the student notebook with exercise sources: "ref", None (blank) or code."""
    nb = notebooks.read_notebook(RELEASE)
    cells = notebooks.grade_cells(nb)
    ref = _ref_sources()
    for gid, src in (("ex1_cosine", ex1), ("ex2_top_k", ex2)):
        if src == "ref":
            cells[gid].source = ref[gid]
        elif src is not None:
            cells[gid].source = "import numpy as np\n" + src
    return nb


def _index(nb, grade_id: str) -> int:
    return next(
        i
        for i, c in enumerate(nb.cells)
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id
    )


def _insert_after(nb, grade_id: str, source: str):
    nb.cells.insert(_index(nb, grade_id) + 1, nbformat.v4.new_code_cell(source))
    return nb


def _submit(root, student, content):
    dest = root / student / LESSON / f"{LESSON}.ipynb"
    dest.parent.mkdir(parents=True)
    if isinstance(content, nbformat.NotebookNode):
        content = nbformat.writes(content)
    if isinstance(content, bytes):
        dest.write_bytes(content)
    else:
        dest.write_text(content, encoding="utf-8")
    return dest


def _hostile_submissions(subs):
    """Write one submission per case; return nothing (the tests know the names)."""
    ref = _ref_sources()
    _submit(subs, "ref", solution(LESSON).read_text(encoding="utf-8"))
    _submit(subs, "blank", RELEASE.read_text(encoding="utf-8"))
    nb = _student_nb(ex2=WRONG_TOP_K)
    notebooks.grade_cells(nb)["ex2_top_k_tests"].source = "pass"  # edits a locked tests cell
    _submit(subs, "partial", nb)
    _submit(subs, "broken", "{ this is not json")
    (subs / "absent" / LESSON).mkdir(parents=True)
    _submit(subs, "empty", b"")
    _submit(subs, "nbformat5", json.dumps({"nbformat": 5, "nbformat_minor": 0, "cells": []}))
    v3 = nbformat.convert(_student_nb(), 3)
    _submit(subs, "nbformat3", nbformat.writes(v3, version=3))
    # An infinite loop in the second exercise: the first still counts.
    _submit(subs, "loop", _student_nb(ex2="while True:\n    pass\n"))
    # A memory bomb grows until the cap stops it (address space, so no real RAM is used).
    bomb = "bomb = []\nwhile True:\n    bomb.append(np.empty(10**8))\n"
    _submit(subs, "membomb", _student_nb(ex2=bomb + ref["ex2_top_k"]))
    _submit(subs, "sysexit", _student_nb(ex1=ref["ex1_cosine"] + "\nimport sys\nsys.exit(1)\n"))
    # os._exit in a cell of its own: the kernel restarts, earlier cells are replayed.
    _submit(
        subs, "osexit", _insert_after(_student_nb(), "ex1_cosine_tests", "import os\nos._exit(0)")
    )
    # A segfault before the second function is defined: that exercise scores 0.
    crash = "import ctypes\nctypes.string_at(0)\n"
    _submit(subs, "crash", _student_nb(ex2=crash + ref["ex2_top_k"]))
    big = _insert_after(_student_nb(), "ex1_cosine_tests", 'print("x" * 100_000_000)')
    _submit(subs, "bigoutput", big)
    nb = _student_nb()
    del nb.cells[_index(nb, "ex2_top_k_tests")]
    del nb.cells[_index(nb, "setup")]
    _submit(subs, "deleted", nb)
    nb = _student_nb()
    ex1, ex1_tests = _index(nb, "ex1_cosine"), _index(nb, "ex1_cosine_tests")
    nb.cells[ex1], nb.cells[ex1_tests] = nb.cells[ex1_tests], nb.cells[ex1]
    nb.cells.append(nb.cells.pop(_index(nb, "ex2_top_k")))
    _submit(subs, "reordered", nb)
    nb = _student_nb()
    twin = copy.deepcopy(nb.cells[_index(nb, "ex1_cosine")])
    twin["id"] = "twin"
    nb.cells.insert(_index(nb, "ex1_cosine") + 1, twin)
    tests = copy.deepcopy(nb.cells[_index(nb, "ex2_top_k_tests")])
    tests.source, tests["id"] = "pass", "twin-tests"
    nb.cells.append(tests)
    _submit(subs, "duplicated", nb)
    nb = _student_nb()
    nb.metadata["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
    _submit(subs, "kernelname", nb)
    # A wrong cosine that silences the visible checks and the hidden comparison.
    patch = (
        WRONG_COSINE + "from xlt_course import checks\n"
        "checks.check = lambda *a, **k: None\n"
        "np.allclose = lambda *a, **k: True\n"
    )
    _submit(subs, "monkeypatch", _student_nb(ex1=patch))
    during = (
        "def top_k(scores, k):\n"
        "    np.array_equal = lambda *a, **k: True\n"
        "    return np.argsort(scores, axis=1)[:, :k]\n"
    )
    _submit(subs, "patchduring", _student_nb(ex2=during))
    # Calling the course's implementation: plainly (static check) and through a module
    # imported under an innocent name in another cell (runtime check).
    ex1 = "from xlt_course.retrieval import nn_scores\n\ndef cosine_similarity_matrix(A, B):\n"
    ex1 += "    return nn_scores(A, B)\n"
    ex2 = ref["ex2_top_k"].replace('"""\n', '"""\n    assert helper is not None\n', 1)
    nb = _student_nb(ex1=ex1, ex2=ex2)
    sneaky = 'helper = __import__("importlib").import_module("xlt_" + "course.retrieval")'
    _submit(subs, "refimpl", _insert_after(nb, "ex1_cosine_tests", sneaky))
    # Reading the instructor's notebook (to copy the answer) and writing into another
    # student's job: neither path is reachable from the grading kernel.
    sol = str(solution(LESSON))
    other = subs.parent / "graded"
    steal = (
        "import json, pathlib\n"
        f"_nb = json.loads(pathlib.Path({sol!r}).read_text())\n"
        "_src = [''.join(c['source']) for c in _nb['cells']\n"
        "        if c['metadata'].get('nbgrader', {}).get('grade_id') == 'ex1_cosine'][0]\n"
        "exec(_src.replace('### BEGIN SOLUTION', '').replace('### END SOLUTION', ''))\n"
    )
    vandal = (
        "import pathlib\n"
        f"for p in pathlib.Path({str(other)!r}).rglob('*'):\n"
        "    if p.is_file():\n"
        "        p.write_text('vandalised')\n"
    )
    nb = _insert_after(_student_nb(ex1=steal), "ex1_cosine_tests", vandal)
    _submit(subs, "readsolutions", nb)
    # Importing the grader (to read its code or call it): the kernel cannot.
    _submit(
        subs, "importgrader", _student_nb(ex1="import autograder.grading\n" + ref["ex1_cosine"])
    )


@pytest.fixture(scope="module")
def graded(tmp_path_factory, built_data):
    base = tmp_path_factory.mktemp("batch")
    subs = base / "submissions"
    subs.mkdir()
    _hostile_submissions(subs)
    out = base / "graded"
    results = grading.grade(subs, out, jobs=2, limits=LIMITS, progress=False)
    return out, {r.student: r for r in results}


def _flags(r) -> str:
    return " | ".join(r.flags)


def test_reference_scores_full_marks_despite_hostile_neighbours(graded):
    _, r = graded
    assert r["ref"].max_score == 3
    assert r["ref"].score == 3, r["ref"]
    assert not r["ref"].flags


def test_blank_lesson_scores_zero(graded):
    _, r = graded
    assert r["blank"].score == 0 and r["blank"].max_score == 3


def test_edited_tests_cell_is_restored_and_flagged(graded):
    _, r = graded
    assert r["partial"].score == 2, "exercise 1 right, exercise 2 wrong despite the edit"
    assert r["partial"].points["ex2_top_k_tests"] == (0.0, 1.0)
    assert "locked cell ex2_top_k_tests edited" in _flags(r["partial"])


@pytest.mark.parametrize(
    ("student", "flag"),
    [
        ("broken", "invalid notebook: not JSON"),
        ("absent", "missing notebook"),
        ("empty", "empty file"),
        ("nbformat5", "nbformat 5 is not a Jupyter notebook version"),
    ],
)
def test_unreadable_submissions_score_zero_with_reason(graded, student, flag):
    out, r = graded
    assert r[student].score == 0 and r[student].max_score == 3
    assert flag in _flags(r[student])
    # the student gets a page saying why, too
    page = (out / "feedback" / student / f"{LESSON}.html").read_text(encoding="utf-8")
    assert "could not be graded" in page and "0 / 3" in page


@pytest.mark.parametrize(
    ("student", "score", "flag"),
    [
        ("nbformat3", 3, "nbformat 3 notebook converted to nbformat 4"),
        ("loop", 2, "ex2_top_k stopped at the per-cell time limit"),
        ("membomb", 2, "ex2_top_k ran out of memory"),
        ("sysexit", 3, "ex1_cosine called sys.exit"),
        ("osexit", 3, "kernel died in cell"),
        ("crash", 2, "kernel died in ex2_top_k"),
        ("bigoutput", 3, "output truncated"),
        ("deleted", 3, "locked cell ex2_top_k_tests deleted (restored)"),
        ("reordered", 3, "cells reordered"),
        ("duplicated", 3, "cell ex1_cosine duplicated"),
        ("kernelname", 3, "kernel 'ir' replaced by 'python3'"),
        ("monkeypatch", 1, "monkeypatching: numpy.allclose, xlt_course.checks.check replaced"),
        ("patchduring", 2, "numpy.array_equal replaced while ex2_top_k_tests ran"),
    ],
)
def test_hostile_submission_graded_as_intended_and_flagged(graded, student, score, flag):
    _, r = graded
    assert r[student].score == score, (student, r[student])
    assert flag in _flags(r[student]), r[student].flags


def test_patch_during_tests_zeroes_only_that_exercise(graded):
    _, r = graded
    # The patch happens when top_k is called, so only exercise 2's tests saw it.
    assert r["patchduring"].points == {
        "ex1_cosine_tests": (2.0, 2.0),
        "ex2_top_k_tests": (0.0, 1.0),
    }


def test_course_implementation_scores_zero(graded):
    _, r = graded
    res = r["refimpl"]
    assert res.points == {"ex1_cosine_tests": (0.0, 2.0), "ex2_top_k_tests": (0.0, 1.0)}
    assert "ex1_cosine_tests: scored 0, solution uses xlt_course (imports nn_scores)" in _flags(res)
    assert "ex2_top_k_tests: calls the course's implementation (top_k uses helper)" in _flags(res)


def test_static_check_allows_checks_and_forbids_the_rest():
    names = {"_reference", "load_vectors"}
    assert grading.forbidden_course_use("from xlt_course import checks\nx = 1", names) == []
    assert grading.forbidden_course_use("import xlt_course.checks as c", names) == []
    assert grading.forbidden_course_use("def f(x):\n    return _reference(x)", names) == [
        "uses _reference"
    ]
    assert grading.forbidden_course_use("import xlt_course.procrustes", set()) == [
        "imports xlt_course"
    ]
    assert grading.forbidden_course_use("m = __import__('xlt_course.procrustes')", set()) == [
        "names the xlt_course package in a string"
    ]
    # prose naming the package (a docstring, a comment string) is not a use of it
    doc = 'def f(A):\n    """Rows are vectors, as in xlt_course: see lesson 01."""\n    return A\n'
    assert grading.forbidden_course_use(doc, set()) == []
    assert grading.forbidden_course_use("x = ' xlt_course '", set()) == [
        "names the xlt_course package in a string"
    ]


def test_lesson_layout_knows_hidden_reference_names():
    layout = grading.lesson_layout(
        "01-shared-space", paths.lessons_dir() / "01-shared-space" / "01-shared-space.ipynb"
    )
    assert "_reference" in layout.course_names
    assert layout.solutions_of["ex1_distance_ratio_tests"] == ["ex1_distance_ratio"]


def test_solutions_and_other_jobs_are_unreachable_from_the_kernel(graded):
    out, r = graded
    assert r["readsolutions"].points["ex1_cosine_tests"] == (0.0, 2.0)
    assert r["readsolutions"].points["ex2_top_k_tests"] == (1.0, 1.0)
    page = (out / "feedback" / "readsolutions" / f"{LESSON}.html").read_text(encoding="utf-8")
    assert "FileNotFoundError" in page
    # The vandal could only write into its own job's folders.
    own = out / ".work" / "jobs" / LESSON / "readsolutions"
    written = [
        p for p in out.rglob("*") if p.is_file() and own not in p.parents and p.stat().st_size == 10
    ]
    assert not [p for p in written if p.read_bytes() == b"vandalised"]


def test_grading_package_cannot_be_imported_by_the_kernel(graded):
    out, r = graded
    assert r["importgrader"].points == {
        "ex1_cosine_tests": (0.0, 2.0),
        "ex2_top_k_tests": (1.0, 1.0),
    }
    page = (out / "feedback" / "importgrader" / f"{LESSON}.html").read_text(encoding="utf-8")
    assert "cannot be imported while grading" in page


def _written_answers() -> dict[str, tuple[int, str]]:
    """Return {grade id: (points, model answer)} of the lesson's written-answer cells."""
    cells = notebooks.grade_cells(notebooks.read_notebook(solution(LESSON)))
    return {
        g: (c.metadata["nbgrader"]["points"], c.source)
        for g, c in cells.items()
        if c.cell_type == "markdown"
    }


def test_grades_csv_and_feedback(graded):
    out, r = graded
    rows = list(csv.DictReader((out / "grades.csv").read_text(encoding="utf-8").splitlines()))
    assert [row["student"] for row in rows] == sorted(r)
    assert list(rows[0]) == list(grading.GRADES_COLUMNS)
    written = _written_answers()
    manual_max = sum(p for p, _ in written.values())
    assert written and manual_max > 0
    # The reference's written answers wait for the instructor: pending, not 0.
    ref_row = next(row for row in rows if row["student"] == "ref")
    pending = ";".join(f"{g}=pending/{p:g}" for g, (p, _) in sorted(written.items()))
    assert ref_row["points"] == "ex1_cosine_tests=2/2;ex2_top_k_tests=1/1;" + pending
    assert (ref_row["auto_points"], ref_row["auto_max"], ref_row["total"]) == ("3", "3", "3")
    assert ref_row["manual_pending"] == ref_row["manual_max"] == f"{manual_max:g}"
    assert ref_row["manual_points"] == "0" and ref_row["max_total"] == f"{3 + manual_max:g}"
    # A blank notebook answered nothing: its written answers score 0, none is pending.
    blank = next(row for row in rows if row["student"] == "blank")
    assert (blank["auto_points"], blank["manual_pending"], blank["total"]) == ("0", "0", "0")
    assert blank["manual_max"] == f"{manual_max:g}" and "q1_answer=0/" in blank["points"]
    html = (out / "feedback" / "ref" / f"{LESSON}.html").read_text(encoding="utf-8")
    assert "cosine_similarity_matrix" in html
    assert "Written response</a> (Score: pending /" in html
    assert f"{manual_max:g} points of written answers pending" in html
    # A student's feedback never shows the model answers (only the reference submitted them).
    for student in ("blank", "partial", "monkeypatch"):
        page = (out / "feedback" / student / f"{LESSON}.html").read_text(encoding="utf-8")
        for _, model in written.values():
            assert model.splitlines()[1] not in page, student
    # Feedback shows the visible checks but never the hidden tests' source.
    for student in ("ref", "blank", "partial", "crash", "monkeypatch"):
        page = (out / "feedback" / student / f"{LESSON}.html").read_text(encoding="utf-8")
        assert "hidden tests ran here" in page
        assert "BEGIN HIDDEN TESTS" not in page and "_reference" not in page
    # A 100 MB print does not reach the feedback page.
    assert (out / "feedback" / "bigoutput" / f"{LESSON}.html").stat().st_size < 2_000_000
    # The grader's own guard code never shows.
    assert "xltg" not in (out / "feedback" / "monkeypatch" / f"{LESSON}.html").read_text()


def test_summary_histogram_written(graded):
    out, _ = graded
    png = out / "summary" / f"scores-{LESSON}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_grades_are_byte_identical_serial_and_parallel(graded, tmp_path):
    """Regrade a subset (crash recovery and the guard included) with 1 and 2 jobs."""
    out, _ = graded
    subs = tmp_path / "subs"
    for student in ("ref", "partial", "osexit", "monkeypatch"):
        shutil.copytree(out.parent / "submissions" / student, subs / student)
    a = grading.grade(subs, tmp_path / "serial", jobs=1, limits=LIMITS, progress=False)
    b = grading.grade(subs, tmp_path / "parallel", jobs=2, limits=LIMITS, progress=False)
    assert [(x.student, x.score, x.flags) for x in a] == [(x.student, x.score, x.flags) for x in b]
    serial = (tmp_path / "serial" / "grades.csv").read_bytes()
    assert serial == (tmp_path / "parallel" / "grades.csv").read_bytes()
    # ... and the same lines as in the big parallel batch.
    batch = (out / "grades.csv").read_text(encoding="utf-8").splitlines()
    assert set(serial.decode().splitlines()[1:]) <= set(batch)
    # Re-running is resumable: nothing is regraded, the same grades.csv is written.
    records = sorted((tmp_path / "serial" / ".work" / "jobs").glob("*/*.json"))
    stamps = [p.stat().st_mtime_ns for p in records]
    again = grading.grade(subs, tmp_path / "serial", jobs=2, limits=LIMITS, progress=False)
    assert [p.stat().st_mtime_ns for p in records] == stamps
    assert [(x.student, x.points) for x in again] == [(x.student, x.points) for x in a]
    assert all(x.reused for x in again) and not any(x.reused for x in a)  # said by `grade`
    assert (tmp_path / "serial" / "grades.csv").read_bytes() == serial


def test_strip_hidden_tests_keeps_hint_drops_traceback():
    nb = notebooks.read_notebook(solution(LESSON))
    cell = notebooks.grade_cells(nb)["ex1_cosine_tests"]
    cell.outputs = [
        {
            "output_type": "error",
            "ename": "AssertionError",
            "evalue": "values differ",
            "traceback": ["secret line"],
        }
    ]
    assert grading.strip_hidden_tests(nb) == 2
    assert "_reference" not in cell.source and "checks.passed" in cell.source
    assert cell.outputs[0]["traceback"] == ["AssertionError: values differ"]


def test_cli_grade_reports_missing_folder(tmp_path, capsys):
    assert cli.main(["grade", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_generated_lesson_keeps_nbgrader_metadata(tmp_path):
    nb_path = grading.generate_lesson(LESSON, tmp_path)
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    ids = [c["metadata"].get("nbgrader", {}).get("grade_id") for c in nb["cells"]]
    assert {"ex1_cosine", "ex1_cosine_tests", "ex2_top_k", "ex2_top_k_tests"} <= set(ids)


# (every lesson's reference and blank: tests/test_grading_skip.py, with skipping on and off)


def test_a_rerun_never_replaces_a_feedback_page_edited_after_review(tmp_path):
    """A stored result leaves the page alone; a regraded one goes beside an edited page."""
    out, work = tmp_path / "out", tmp_path / "work"
    work.mkdir()

    def run(student: str, page: str) -> grading.SubmissionResult:
        src = work / f"{student}.html"
        src.write_text(page, encoding="utf-8")
        r = grading.SubmissionResult(student, LESSON, 1.0, 3.0, feedback=src)
        grading._copy_feedback([r], out)
        return r

    pages = out / "feedback"
    run("s1", "graded v1")
    run("s2", "graded v1")
    assert (pages / "s1" / f"{LESSON}.html").read_text() == "graded v1"
    (pages / "s1" / f"{LESSON}.html").write_text("graded v1 + instructor's comment")
    # the same result again (from the cache): nothing is copied, nothing is said
    again = run("s1", "graded v1")
    assert again.flags == [] and again.feedback == pages / "s1" / f"{LESSON}.html"
    assert (pages / "s1" / f"{LESSON}.html").read_text() == "graded v1 + instructor's comment"
    # regraded (a resubmission): the edited page stays, the new one goes beside it, said
    regraded = run("s1", "graded v2")
    assert (pages / "s1" / f"{LESSON}.html").read_text() == "graded v1 + instructor's comment"
    assert (pages / "s1" / f"{LESSON}.regraded.html").read_text() == "graded v2"
    (flag,) = regraded.flags
    assert flag.startswith(grading.FEEDBACK_KEPT_FLAG) and f"{LESSON}.regraded.html" in flag
    # a page nobody edited is replaced by the regraded one
    assert run("s2", "graded v2").flags == []
    assert (pages / "s2" / f"{LESSON}.html").read_text() == "graded v2"
