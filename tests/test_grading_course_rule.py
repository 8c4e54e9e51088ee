"""The static rule that keeps ``xlt_course`` out of answer cells gives no false zero.

A solution cell may not use what the lesson's other cells bind from ``xlt_course`` (``mt``,
``_reference``, ...), but a name the cell binds itself is the student's own. For every lesson,
every exercise's reference answer is rewritten to bind, in every way Python can, a local
variable named like each name the lesson binds from ``xlt_course``: the rule flags nothing,
the rewritten answer still passes its tests, and the submission is not scored 0. Reading
such a name without binding it, or importing ``xlt_course``, is still flagged and scored 0.
One real grading run checks the same through the whole pipeline.
"""

from __future__ import annotations

import ast
import functools
import textwrap

import pytest
from cells import cell_source, run_test_cell
from conftest import LESSONS, solution

from autograder import grading, notebooks, paths

# How a cell can bind a name NAME: code put at the top of the answer's first function body
# ("module" and "global" forms also bind NAME at the cell's top level). Each form reads NAME
# afterwards, as a student's local variable would be used.
BINDINGS = {
    "assign": "NAME = 0\nassert NAME == 0\n",
    "augassign": "NAME = 1\nNAME += 1\nassert NAME == 2\n",
    "annotated": "NAME: int = 0\nassert NAME == 0\n",
    "tuple": "NAME, _unused = 0, 1\nassert NAME == 0\n",
    "parameter": "def _helper(NAME=0):\n    return NAME\nassert _helper() == 0\n",
    "lambda": "assert (lambda NAME: NAME)(0) == 0\n",
    "for": "for NAME in range(1):\n    assert NAME == 0\n",
    "comprehension": "assert [NAME for NAME in range(1)] == [0]\n",
    "dict-comprehension": "assert {NAME: NAME for NAME in range(1)} == {0: 0}\n",
    "generator": "assert sum(NAME for NAME in range(2)) == 1\n",
    "import": "import math as NAME\nassert NAME.pi > 3\n",
    "from-import": "from math import pi as NAME\nassert NAME > 3\n",
    "with": "import contextlib\nwith contextlib.nullcontext(0) as NAME:\n    assert NAME == 0\n",
    "except": "try:\n    raise ValueError(0)\nexcept ValueError as NAME:\n    assert NAME.args == (0,)\n",
    "walrus": "assert (NAME := 0) == 0 and NAME == 0\n",
    "def": "def NAME():\n    return 0\nassert NAME() == 0\n",
    "class": "class NAME:\n    value = 0\nassert NAME.value == 0\n",
    "closure": "NAME = 0\ndef _inner():\n    return NAME\nassert _inner() == 0\n",
    "nonlocal": "NAME = 0\ndef _bump():\n    nonlocal NAME\n    NAME += 1\n_bump()\nassert NAME == 1\n",
    "global": "global NAME\nNAME = 0\nassert NAME == 0\n",
    "module": "assert NAME == 0\n",  # with ``NAME = 0`` at the cell's top level
}

# Not a binding, not a use either: an attribute named like the lesson's alias (``s.translate``).
ATTRIBUTE = "import types\n_ns = types.SimpleNamespace(NAME=0)\nassert _ns.NAME == 0\n"

# Uses of the lesson's xlt_course names that must still score 0.
GENUINE = {
    "read in the function": ("", "assert NAME is not None\n"),
    "read before the cell binds it": ("_copy = NAME\nNAME = 0\n", ""),
    "lambda parameter elsewhere": ("", "assert (lambda NAME: NAME)(0) == 0 and NAME is not None\n"),
    "import": ("import xlt_course as NAME\n", ""),
}


@functools.cache
def _layout(lesson: str) -> grading.LessonLayout:
    return grading.lesson_layout(lesson, paths.lessons_dir() / lesson / f"{lesson}.ipynb")


def _rewrite(source: str, name: str, in_function: str, at_top: str = "") -> str:
    """Put ``in_function`` at the top of the first function's body and ``at_top`` after imports."""
    tree = ast.parse(source)
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))
    body = fn.body
    has_doc = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    first = body[1] if has_doc and len(body) > 1 else body[0]
    lines = source.splitlines(keepends=True)
    indent = " " * first.col_offset
    lines.insert(first.lineno - 1, textwrap.indent(in_function.replace("NAME", name), indent))
    if at_top:
        imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        after = imports[-1].end_lineno if imports else 0
        lines.insert(after, at_top.replace("NAME", name))
    return "".join(lines)


def _exercises(lesson: str) -> list[tuple[str, str, str]]:
    """Return (tests grade id, solution grade id, reference source) of every exercise."""
    layout = _layout(lesson)
    nb = solution(lesson)
    return [
        (tests_id, sol, cell_source(nb, sol))
        for tests_id, sols in layout.solutions_of.items()
        for sol in sols
    ]


def _names(lesson: str) -> list[str]:
    return sorted(_layout(lesson).course_names | {"xlt_course"})


@pytest.mark.parametrize("lesson", LESSONS)
def test_local_names_like_the_lessons_course_names_are_not_flagged(lesson):
    layout = _layout(lesson)
    assert layout.course_names, "every lesson binds something from xlt_course"
    for tests_id, sol, ref in _exercises(lesson):
        allowed = layout.allowed.get(tests_id, set())
        assert grading.forbidden_course_use(ref, layout.course_names, allowed) == [], sol
        for name in _names(lesson):
            for form, code in {**BINDINGS, "attribute": ATTRIBUTE}.items():
                top = "NAME = 0\n" if form == "module" else ""
                src = _rewrite(ref, name, code, top)
                compile(src, f"{sol}-{form}", "exec")
                flagged = grading.forbidden_course_use(src, layout.course_names, allowed)
                assert flagged == [], (lesson, sol, name, form, flagged, src)


@pytest.mark.parametrize("lesson", LESSONS)
def test_genuine_uses_of_the_lessons_course_names_are_flagged(lesson):
    layout = _layout(lesson)
    for tests_id, sol, ref in _exercises(lesson):
        allowed = layout.allowed.get(tests_id, set())
        for name in sorted(set(_names(lesson)) - allowed):
            for form, (top, inside) in GENUINE.items():
                src = _rewrite(ref, name, inside, top)
                compile(src, f"{sol}-{form}", "exec")
                flagged = grading.forbidden_course_use(src, layout.course_names, allowed)
                want = f"imports {name}" if form == "import" else f"uses {name}"
                assert want in flagged, (lesson, sol, name, form, flagged, src)


def _all_local_variant(lesson: str, tests_id: str, sol: str, ref: str) -> str:
    """Rewrite ``ref`` to bind every course name of the lesson locally, cycling the forms."""
    used = ast.dump(ast.parse(ref))
    src = ref
    forms = [f for f in BINDINGS if f not in ("module", "global")]
    names = [n for n in _names(lesson) if f"'{n}'" not in used]  # names the answer itself uses
    for i, name in enumerate(names):
        src = _rewrite(src, name, BINDINGS[forms[i % len(forms)]] + ATTRIBUTE)
    return src


def _submission(lesson: str, rewrite) -> notebooks.nbformat.NotebookNode:
    """Return the lesson's release notebook with every answer cell set to ``rewrite(...)``."""
    nb = notebooks.read_notebook(paths.lessons_dir() / lesson / f"{lesson}.ipynb")
    cells = notebooks.grade_cells(nb)
    for tests_id, sol, ref in _exercises(lesson):
        cells[sol].source = rewrite(lesson, tests_id, sol, ref)
    return nb


@pytest.mark.parametrize("lesson", LESSONS)
def test_answers_with_local_course_names_pass_their_tests_and_are_not_zeroed(lesson, tmp_path):
    layout = _layout(lesson)
    nb = _submission(lesson, _all_local_variant)
    path = tmp_path / f"{lesson}.ipynb"
    path.write_text(notebooks.dumps(nb), encoding="utf-8")
    prepared = grading.prepare_submission(path, layout)
    assert prepared.zero == {} and prepared.flags == [], (prepared.zero, prepared.flags)
    # ... and each rewritten answer still passes the exercise's visible and hidden tests.
    nb_path = solution(lesson)
    cells = notebooks.grade_cells(nb)
    for tests_id, sols in layout.solutions_of.items():
        ns: dict = {"__name__": "__solution__"}
        for sol in sols:
            exec(compile(cells[sol].source, f"{lesson}:{sol}", "exec"), ns)  # noqa: S102
        fns = {f: ns[f] for f in layout.exercise_functions[tests_id]}
        run_test_cell(nb_path, tests_id, **fns)


@pytest.mark.parametrize("lesson", LESSONS)
def test_answers_that_use_the_course_are_zeroed(lesson, tmp_path):
    layout = _layout(lesson)

    def genuine(lesson, tests_id, sol, ref):
        allowed = layout.allowed.get(tests_id, set())
        name = sorted(layout.course_names - allowed)[0]
        return _rewrite(ref, name, GENUINE["read in the function"][1])

    path = tmp_path / f"{lesson}.ipynb"
    path.write_text(notebooks.dumps(_submission(lesson, genuine)), encoding="utf-8")
    prepared = grading.prepare_submission(path, layout)
    assert set(prepared.zero) == set(layout.solutions_of), prepared.zero


def test_rule_follows_python_scoping():
    names = {"mt", "_reference"}
    rule = grading.forbidden_course_use
    assert rule("def f(x):\n    mt = x\n    return mt", names) == []
    assert rule("mt = {}\ndef f(x):\n    return mt.get(x)", names) == []
    assert rule("def f(x):\n    return mt.translate(x)", names) == ["uses mt"]
    # A class body does not enclose its methods; a lambda's parameter is local to the lambda.
    assert rule("class C:\n    mt = 1\n    def f(self):\n        return mt", names) == ["uses mt"]
    assert rule("def f(x):\n    return (lambda mt: mt)(x), mt", names) == ["uses mt"]
    # Read at the top level before the cell binds it: the lesson's ``mt``.
    assert rule("y = mt.translate\nmt = None", names) == ["uses mt"]
    assert rule("g = [mt for _ in range(2)]\nmt = 1", names) == ["uses mt"]
    # A generator's body runs when consumed, a function's body when called: after the binding.
    assert rule("g = (mt for _ in range(2))\nmt = 1", names) == []
    assert rule("def f():\n    return mt\nmt = 1", names) == []
    assert rule("import xlt_course.translate as mt\ndef f():\n    return mt", names) == [
        "imports mt"
    ]
    assert rule("def f(mt):\n    return _reference(mt)", names) == ["uses _reference"]


LESSON_E2E = "07-translate-train-test"


def test_local_alias_grades_full_through_the_pipeline(tmp_path, built_data):
    """Lesson 07 binds ``mt`` and ``ft``: answers with locals of those names grade normally.

    The answers also read attributes named like every alias (``_ns.mt``), which the run-time
    guard must not take for the lesson's modules.
    """
    subs = tmp_path / "subs"
    for student, rewrite in (
        ("localnames", _all_local_variant),
        ("uses_mt", lambda lesson, t, s, ref: _rewrite(ref, "mt", "assert mt is not None\n")),
    ):
        dest = subs / student / LESSON_E2E / f"{LESSON_E2E}.ipynb"
        dest.parent.mkdir(parents=True)
        dest.write_text(notebooks.dumps(_submission(LESSON_E2E, rewrite)), encoding="utf-8")
    # This checks the xlt_course rule; confinement is test_sandbox.py's business.
    limits = grading.GradeLimits(notebook_timeout=600, cell_timeout=300, memory_mb=6000)
    results = grading.grade(subs, tmp_path / "out", jobs=2, limits=limits, progress=False)
    r = {x.student: x for x in results}
    tests_ids = set(_layout(LESSON_E2E).solutions_of)
    local = r["localnames"]
    assert not local.flags, local.flags
    assert all(local.points[t][0] == local.points[t][1] > 0 for t in tests_ids), local.points
    bad = r["uses_mt"]
    assert all(bad.points[t][0] == 0 for t in tests_ids), bad.points
    assert "scored 0, solution uses xlt_course (uses mt)" in " | ".join(bad.flags)
