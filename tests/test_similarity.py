"""Similarity report: renamed copies are caught, independent work and starter code are not."""

from __future__ import annotations

import html
import json

import pytest

from autograder import cli, notebooks, paths, similarity

LESSON = "00-setup"
RELEASE = paths.lessons_dir() / LESSON / f"{LESSON}.ipynb"

ORIGINAL = """import numpy as np


def cosine_similarity_matrix(A, B):
    # normalise the rows first
    A_unit = A / np.linalg.norm(A, axis=1, keepdims=True)
    B_unit = B / np.linalg.norm(B, axis=1, keepdims=True)
    sims = A_unit @ B_unit.T
    return sims
"""
# the same code with other names, comments, spacing and constants
RENAMED = '''import numpy as np


def cosine_similarity_matrix(X, Y):
    """My own work."""
    xn = X/np.linalg.norm(X, axis=-1, keepdims=True)   # rows
    yn = Y/np.linalg.norm(Y, axis=-1, keepdims=True)
    out = xn @ yn.T
    return out
'''
INDEPENDENT = """import numpy as np


def cosine_similarity_matrix(A, B):
    dots = A @ B.T
    na = np.sqrt((A * A).sum(axis=1))[:, None]
    nb = np.sqrt((B * B).sum(axis=1))[None, :]
    return dots / (na * nb)
"""


def test_normalise_ignores_names_literals_comments_and_docstrings():
    assert similarity.normalise(ORIGINAL) == similarity.normalise(RENAMED)
    assert similarity.normalise(ORIGINAL) != similarity.normalise(INDEPENDENT)
    assert similarity.normalise("def f(:\n") == []  # a syntax error compares as nothing


def test_an_f_string_is_a_literal_whose_fields_are_code():
    # an f-string anywhere in an answer made ast.unparse raise, which ended the whole report
    a = 'def f(x, w):\n    raise ValueError(f"bad {x!r:>{w}}: {len(x)} items")\n'
    b = 'def g(y, z):\n    raise ValueError(f"wrong {y!r:>{z}}, {len(y)}")\n'
    c = 'def g(y, z):\n    raise ValueError(f"wrong {z}, {len(y)}")\n'
    assert similarity.normalise(a) == similarity.normalise(b) != similarity.normalise(c)
    assert similarity.normalise(a)[1] == "  raise ValueError(<fstr>(v1, len(v1)))"


def _submit(folder, student, source):
    nb = notebooks.read_notebook(RELEASE)
    notebooks.grade_cells(nb)["ex1_cosine"].source = source
    path = folder / student / LESSON / f"{LESSON}.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(notebooks.dumps(nb), encoding="utf-8")


def test_report_pairs_copies_side_by_side_and_skips_starter_code(tmp_path, capsys):
    subs = tmp_path / "subs"
    _submit(subs, "ana", ORIGINAL)
    _submit(subs, "ben", RENAMED)
    _submit(subs, "chloé", INDEPENDENT)
    _submit(
        subs, "dan", notebooks.grade_cells(notebooks.read_notebook(RELEASE))["ex1_cosine"].source
    )
    _submit(
        subs, "eve", notebooks.grade_cells(notebooks.read_notebook(RELEASE))["ex1_cosine"].source
    )
    assert cli.main(["similarity", str(subs), "--out", str(tmp_path / "rep")]) == 0
    printed = capsys.readouterr().out
    assert "00-setup: ana / ben  100%" in printed and "1 pairs" in printed
    pairs = json.loads((tmp_path / "rep" / "similarity.json").read_text(encoding="utf-8"))
    # the two blank notebooks share only the starter code: not a pair
    assert [(p["a"], p["b"]) for p in pairs] == [("ana", "ben")]
    page = (tmp_path / "rep" / "similarity.html").read_text(encoding="utf-8")
    page = html.unescape(page).replace("\xa0", " ")
    assert "xn @ yn.T" in page and "A_unit @ B_unit.T" in page
    assert "never" in page.lower() or "not a verdict" in page


def test_threshold_is_checked(tmp_path):
    with pytest.raises(ValueError, match="threshold"):
        similarity.similarity_report(tmp_path, tmp_path / "r", threshold=1.5)


def test_a_grading_output_and_retyped_or_odd_cells_are_read(tmp_path, capsys):
    # audit 13: a grading output graded from a folder read as "0 pairs"; a cell whose
    # nbgrader metadata is null ended the report; an answer retyped in a new cell was unseen
    out = tmp_path / "OUT"
    (out / ".work" / "jobs").mkdir(parents=True)
    (out / "grades.csv").write_text("student,lesson\n", encoding="utf-8")
    graded = tmp_path / "graded"
    _submit(graded, "ana", ORIGINAL)
    _submit(graded, "ben", RENAMED)
    for student in ("ana", "ben"):
        job = out / ".work" / "jobs" / LESSON / student / "submitted" / student / LESSON
        job.mkdir(parents=True)
        (job / f"{LESSON}.ipynb").write_bytes(
            (graded / student / LESSON / f"{LESSON}.ipynb").read_bytes()
        )
    assert cli.main(["similarity", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert "00-setup: ana / ben  100%" in capsys.readouterr().out
    # an empty or wrong folder is an error, not "no pairs"
    assert cli.main(["similarity", str(tmp_path / "rep"), "--out", str(tmp_path / "r2")]) == 2
    assert "no submissions in" in capsys.readouterr().err
    # the answer retyped below a stub left as it was, beside a null nbgrader field
    nb = notebooks.read_notebook(RELEASE)
    stub = notebooks.grade_cells(nb)["ex1_cosine"]
    at = nb.cells.index(stub)
    nb.cells.insert(at + 1, notebooks.nbformat.v4.new_code_cell(RENAMED))
    nb.cells.insert(at + 2, notebooks.nbformat.v4.new_code_cell("x = 1"))
    nb.cells[at + 2].metadata["nbgrader"] = None
    path = tmp_path / "subs" / "cy" / LESSON / f"{LESSON}.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(notebooks.dumps(nb), encoding="utf-8")
    assert similarity.answer_cells(path)["ex1_cosine +1"] == RENAMED
    _submit(tmp_path / "subs", "ana", ORIGINAL)
    pairs = similarity.similarity_report(tmp_path / "subs", tmp_path / "r3", threshold=0.5)
    assert [(p.a, p.b) for p in pairs] == [("ana", "cy")]
