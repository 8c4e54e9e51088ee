"""Parsing submissions from the grader's threads: no spurious SystemError, no crash on deep code."""

from __future__ import annotations

import ast
import re
import sys
import threading

import pytest

from autograder import cell_skip, grading, notebooks, paths, pysource, similarity

LESSON = "02-procrustes"
# Left-deep `a+a+...`: the AST is as deep as the chain is long.
DEEP_OK = "def f(a):\n    return " + "+".join(["a"] * 2000) + "\n"  # the parser takes it
TOO_DEEP = "import xlt_course\nx = " + "+".join(["1"] * 4000) + "\n"  # the parser gives up


class _Finalised:
    def __del__(self):
        sum(range(20))  # Python code in a finalizer: a point where threads switch


def _parse_in_threads(parse, source: str, threads: int = 4, rounds: int = 60) -> list[str]:
    errors: list[str] = []

    def work():
        for _ in range(rounds):
            try:
                parse(source)
            except SystemError as e:
                errors.append(str(e))
            garbage = [_Finalised() for _ in range(30)]
            for g in garbage:
                g.me = g  # cycles: the collector runs the finalizers in the middle of a parse

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        pool = [threading.Thread(target=work) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    finally:
        sys.setswitchinterval(old)
    return errors


def test_parses_from_many_threads_never_fail_spuriously():
    source = (paths.PACKAGE_DIR / "similarity.py").read_text(encoding="utf-8")
    assert _parse_in_threads(pysource.parse, source) == []
    assert _parse_in_threads(pysource.symbol_table, source) == []


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="CPython 3.12 fixed the shared counter")
def test_the_race_is_real_without_the_lock():
    """The control: plain ``ast.parse`` from the same threads fails (python/cpython#106905)."""
    source = (paths.PACKAGE_DIR / "similarity.py").read_text(encoding="utf-8")
    errors = _parse_in_threads(ast.parse, source)
    if not errors:  # a race: shown here in every run, but no machine owes it to us
        pytest.skip("the race did not show in this run")
    assert "recursion depth mismatch" in errors[0]


def test_every_parse_in_the_grader_takes_the_lock():
    for path in sorted(paths.PACKAGE_DIR.glob("*.py")):
        if path.name == "pysource.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\bast\.parse\(|\bsymtable\.symtable\(|(?<![.\w])compile\(", text), (
            path
        )


def test_not_python_and_too_deep_are_told_apart():
    with pytest.raises(SyntaxError) as e:
        pysource.parse("def f(:\n")
    assert not isinstance(e.value, pysource.Unparseable)
    with pytest.raises(SyntaxError) as e:
        pysource.parse("x = 1\0")
    assert not isinstance(e.value, pysource.Unparseable)
    with pytest.raises(pysource.Unparseable):
        pysource.parse(TOO_DEEP)
    with pytest.raises(pysource.Unparseable):
        pysource.symbol_table(TOO_DEEP)


def test_deep_code_is_handled_everywhere_the_grader_reads_it():
    # parseable but deeper than Python's own recursion limit for the visitors
    assert grading.forbidden_course_use(DEEP_OK, {"mt"}) == []
    assert cell_skip.cell_names(DEEP_OK) is not None
    assert len(similarity.normalise(DEEP_OK)) == 2  # compared as typed, not a crash
    # too deep for the parser: the kernel may still run it (after sys.setrecursionlimit)
    assert grading.forbidden_course_use(TOO_DEEP, {"mt"}) == [grading.UNCHECKABLE]
    assert cell_skip.cell_names(TOO_DEEP) is None  # nothing is skipped in that notebook
    assert similarity.normalise(TOO_DEEP) == []


def test_a_solution_too_deep_to_check_scores_zero_with_a_reason(tmp_path):
    layout = grading.lesson_layout(LESSON, paths.lessons_dir() / LESSON / f"{LESSON}.ipynb")
    nb = notebooks.read_notebook(paths.lessons_dir() / LESSON / f"{LESSON}.ipynb")
    tests_id, (sol, *_) = next(iter(layout.solutions_of.items()))
    notebooks.grade_cells(nb)[sol].source += "\n" + TOO_DEEP
    path = tmp_path / f"{LESSON}.ipynb"
    path.write_text(notebooks.dumps(nb), encoding="utf-8")
    prepared = grading.prepare_submission(path, layout)
    assert list(prepared.zero) == [tests_id]
    assert "nested too deeply" in prepared.zero[tests_id]
    assert f"{tests_id}: scored 0, solution {grading.UNCHECKABLE}" in prepared.flags
