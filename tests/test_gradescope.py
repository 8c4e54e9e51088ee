"""Gradescope: results.json follows the spec, hidden-test scores keep their visibility."""

from __future__ import annotations

import json
import zipfile

from autograder import cli, gradescope, grading, validate

LESSON = "00-setup"


def _result(flags=()):
    return grading.SubmissionResult(
        "student",
        LESSON,
        2.0,
        3.0,
        {"ex1_cosine_tests": (2.0, 2.0), "ex2_top_k_tests": (0.0, 1.0)},
        list(flags),
    )


def test_results_json_scores_each_exercise_and_hides_hidden_test_scores():
    checks = [
        validate.ExerciseCheck("ex1_cosine_tests", 2, True, "self-check passes"),
        validate.ExerciseCheck("ex2_top_k_tests", 1, False, "Row 0's two best columns ..."),
    ]
    res = gradescope.results_json(_result(), checks, visibility="after_published", seconds=12.3)
    assert "score" not in res  # Gradescope sums the tests
    assert res["execution_time"] == 12 and res["stdout_visibility"] == "hidden"
    scored = [t for t in res["tests"] if t["max_score"] > 0]
    assert [(t["score"], t["max_score"], t["visibility"]) for t in scored] == [
        (2.0, 2.0, "after_published"),
        (0.0, 1.0, "after_published"),
    ]
    assert sum(t["max_score"] for t in res["tests"]) == 3.0
    visible = [t for t in res["tests"] if t["visibility"] == "visible"]
    assert all(t["max_score"] == 0 for t in visible)
    assert "Row 0's two best columns" in visible[1]["output"]
    for t in res["tests"]:
        assert set(t) <= {"name", "number", "score", "max_score", "status", "visibility", "output"}
        assert t["status"] in ("passed", "failed")
        assert "HIDDEN" not in t["output"] and "_reference" not in t["output"]
    json.dumps(res)  # serialisable


def test_run_always_writes_results_json(tmp_path, monkeypatch):
    empty = tmp_path / "submission"
    empty.mkdir()
    res = gradescope.run(empty, tmp_path / "results" / "results.json")
    assert res["score"] == 0.0 and "no .ipynb" in res["output"]
    assert json.loads((tmp_path / "results" / "results.json").read_text()) == res
    # with a notebook: graded by the grader, self-checks by validate (both stubbed here)
    (empty / "my_00-setup.ipynb").write_text("{}", encoding="utf-8")
    monkeypatch.setattr(grading, "grade", lambda *a, **k: [_result(["cells reordered"])])
    monkeypatch.setattr(
        validate, "validate", lambda nb, lesson: validate.Validation(nb, lesson, checks=[])
    )
    res = gradescope.run(empty, tmp_path / "r2.json")
    notebook = next(t for t in res["tests"] if t["name"] == "notebook")
    assert notebook["output"] == "cells reordered"
    # two uploads (audit 13: the first in sorted order, an old blank copy, was graded
    # unsaid): the one named like the lesson is graded and the student told; else refused
    graded = []
    monkeypatch.setattr(
        grading,
        "grade",
        lambda subs, *a, **k: (
            graded.extend(p.read_text() for p in subs.rglob("*.ipynb")) or [_result()]
        ),
    )
    (empty / "my_00-setup.ipynb").unlink()
    (empty / f"{LESSON}.ipynb").write_text('{"v": "mine"}', encoding="utf-8")
    (empty / f"{LESSON} (1).ipynb").write_text('{"v": "old"}', encoding="utf-8")
    res = gradescope.run(empty, tmp_path / "r3.json", lesson=LESSON)
    assert graded == ['{"v": "mine"}']
    notebook = next(t for t in res["tests"] if t["name"] == "notebook")
    assert (
        notebook["output"]
        == f"Graded {LESSON}.ipynb; also uploaded, not graded: {LESSON} (1).ipynb."
    )
    (empty / f"{LESSON}.ipynb").rename(empty / f"{LESSON} (2).ipynb")
    res = gradescope.run(empty, tmp_path / "r4.json", lesson=LESSON)
    assert res["score"] == 0.0 and "2 notebooks were uploaded" in res["output"]


def test_bundle_has_the_gradescope_entry_points(tmp_path, capsys):
    dest = tmp_path / "gs.zip"
    argv = ["export", str(tmp_path), "--format", "gradescope", "--dest", str(dest)]
    assert cli.main([*argv, "--lesson", LESSON]) == 0
    assert "Gradescope autograder bundle" in capsys.readouterr().out
    with zipfile.ZipFile(dest) as z:
        names = set(z.namelist())
        assert {"setup.sh", "run_autograder", "gradescope.json"} <= names
        assert "autograder/gradescope.py" in names or "pyproject.toml" in names
        assert (z.getinfo("run_autograder").external_attr >> 16) & 0o111
        assert "/autograder/results/results.json" in z.read("run_autograder").decode()
        assert json.loads(z.read("gradescope.json")) == {
            "lesson": LESSON,
            "visibility": "after_published",
        }
        assert not any(n.startswith((".git/", ".venv/", "data/build/")) for n in names)
