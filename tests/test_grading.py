"""The real nbgrader pipeline: lessons generate, submissions grade, bad input is flagged."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from conftest import solution

from xlt_course import cli, grading, notebooks, paths

LESSON = "00-setup"


def _submit(root, student, nb_path_or_text):
    dest = root / student / LESSON / f"{LESSON}.ipynb"
    dest.parent.mkdir(parents=True)
    if isinstance(nb_path_or_text, str):
        dest.write_text(nb_path_or_text, encoding="utf-8")
    else:
        shutil.copy(nb_path_or_text, dest)
    return dest


@pytest.fixture(scope="module")
def graded(tmp_path_factory, built_data):
    subs = tmp_path_factory.mktemp("submissions")
    _submit(subs, "ref", solution(LESSON))
    _submit(subs, "blank", paths.lessons_dir() / LESSON / f"{LESSON}.ipynb")
    # A plausible wrong answer: exercise 1 right, exercise 2 returns the smallest scores.
    nb = notebooks.read_notebook(paths.lessons_dir() / LESSON / f"{LESSON}.ipynb")
    cells = notebooks.grade_cells(nb)
    ref = notebooks.grade_cells(notebooks.read_notebook(solution(LESSON)))
    cells["ex1_cosine"].source = ref["ex1_cosine"].source
    cells["ex2_top_k"].source = cells["ex2_top_k"].source.replace(
        "raise NotImplementedError()", "return np.argsort(scores, axis=1)[:, :k]"
    )
    # ... and an attempt to cheat by editing the locked tests cell.
    cells["ex2_top_k_tests"].source = "pass"
    _submit(subs, "partial", notebooks.dumps(nb))
    _submit(subs, "broken", "{ this is not json")
    (subs / "absent" / LESSON).mkdir(parents=True)
    out = tmp_path_factory.mktemp("graded")
    results = grading.grade(subs, out, progress=False)
    return out, {r.student: r for r in results}


def test_reference_scores_full_marks(graded):
    _, r = graded
    assert r["ref"].max_score == 3
    assert r["ref"].score == r["ref"].max_score, r["ref"]
    assert not r["ref"].flags


def test_blank_lesson_scores_zero(graded):
    _, r = graded
    assert r["blank"].score == 0 and r["blank"].max_score == 3


def test_plausible_wrong_answer_scores_in_between(graded):
    _, r = graded
    assert r["partial"].score == 2, (
        "exercise 1 right (2 points), exercise 2 wrong despite the edited tests cell"
    )
    assert r["partial"].points["ex2_top_k_tests"] == (0.0, 1.0)


def test_broken_and_missing_notebooks_are_flagged_not_fatal(graded):
    _, r = graded
    assert r["broken"].score == 0 and "invalid notebook" in r["broken"].flags[0]
    assert r["absent"].score == 0 and r["absent"].flags == ["missing notebook"]


def test_grades_csv_and_feedback(graded):
    out, _ = graded
    rows = list(csv.DictReader((out / "grades.csv").read_text(encoding="utf-8").splitlines()))
    assert [row["student"] for row in rows] == ["absent", "blank", "broken", "partial", "ref"]
    assert rows[-1]["points"] == "ex1_cosine_tests=2/2;ex2_top_k_tests=1/1"
    html = (out / "feedback" / "ref" / f"{LESSON}.html").read_text(encoding="utf-8")
    assert "cosine_similarity_matrix" in html
    # Feedback shows the visible checks but never the hidden tests' source.
    for student in ("ref", "blank", "partial"):
        page = (out / "feedback" / student / f"{LESSON}.html").read_text(encoding="utf-8")
        assert "hidden tests ran here" in page
        assert "BEGIN HIDDEN TESTS" not in page and "_reference" not in page


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
