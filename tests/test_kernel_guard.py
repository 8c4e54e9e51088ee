"""The kernel-side guard (autograder.kernel_guard), run here as the grading kernel runs it."""

from __future__ import annotations

import contextlib
import io
import json
import sys

from autograder import kernel_guard as kg

NONCE = "0123abcd"


def _notebook_function(source: str, ns: dict) -> None:
    """Define functions as a notebook cell does (code from a file that does not exist)."""
    exec(compile(source, "/tmp/ipykernel_1/123.py", "exec"), ns)


def _run_in_kernel(code: str, ns: dict) -> str:
    """Execute ``code`` in the namespace ``ns`` as a hidden execution; return its stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<hidden>", "exec"), ns)
    return out.getvalue()


def test_check_restores_what_the_notebook_replaced():
    ns: dict = {"__name__": "__main__"}
    kg._xltg_snapshot(["json"], NONCE)
    original = json.dumps
    try:
        _notebook_function("import json\njson.dumps = lambda *a, **k: 'fake'\n", ns)
        assert json.dumps is not original
        res = kg._xltg_check([], [], NONCE, ns)
        assert res == {"changed": ["json.dumps"], "refs": []}
        assert json.dumps is original
        assert kg._xltg_check([], [], NONCE, ns)["changed"] == []  # nothing left to undo
    finally:
        json.dumps = original
        sys.modules.pop("_xltg_" + NONCE, None)


def test_check_leaves_libraries_own_replacements_alone():
    kg._xltg_snapshot(["json"], NONCE)
    original = json.dumps
    try:
        json.dumps = json.JSONEncoder  # an object from a real file: the library's own doing
        assert kg._xltg_check([], [], NONCE, {})["changed"] == []
    finally:
        json.dumps = original
        sys.modules.pop("_xltg_" + NONCE, None)


def test_check_answers_tampered_when_the_snapshot_is_gone():
    sys.modules.pop("_xltg_" + NONCE, None)
    assert kg._xltg_check(["f"], [], NONCE, {}) == {"tampered": True}


def test_check_finds_calls_to_the_course_through_any_name():
    from xlt_course import checks, sampling

    ns: dict = {"__name__": "__main__", "helper": sampling, "checks": checks}
    _notebook_function(
        "def inner(p):\n    return helper.language_probabilities(p)\n"
        "def f(p):\n    checks.check(True, 'ok')\n    return inner(p)\n"
        "def g(p):\n    return p\n",
        ns,
    )
    kg._xltg_snapshot([], NONCE)
    try:
        assert kg._xltg_check(["f", "g"], [], NONCE, ns)["refs"] == ["f uses helper"]
        # a name the reference solution itself uses is allowed
        assert kg._xltg_check(["f"], ["helper"], NONCE, ns)["refs"] == []
        ns["f"] = sampling.language_probabilities
        refs = kg._xltg_check(["f"], [], NONCE, ns)["refs"]
        assert refs == ["f is xlt_course.sampling.language_probabilities"]
    finally:
        sys.modules.pop("_xltg_" + NONCE, None)


def test_the_code_sent_to_the_kernel_runs_and_leaves_no_names():
    ns: dict = {"__name__": "__main__"}
    original = json.loads
    try:
        assert _run_in_kernel(kg.snapshot_code(NONCE, ["json"]), ns) == ""
        _notebook_function("import json\njson.loads = lambda s: 42\n", ns)
        text = _run_in_kernel(kg.check_code(NONCE, ["nothing"], []), ns)
        assert kg.read_answer(text, NONCE) == {"changed": ["json.loads"], "refs": []}
        assert json.loads is original
        assert not [k for k in ns if "xltg" in k]
        assert kg.read_answer("some output\n", NONCE) is None
    finally:
        json.loads = original
        sys.modules.pop("_xltg_" + NONCE, None)


def test_an_attribute_named_like_a_course_module_is_not_a_use():
    from xlt_course import sampling

    ns: dict = {"__name__": "__main__", "sampling": sampling}
    _notebook_function("def f(obj):\n    return obj.sampling(1)\n", ns)
    kg._xltg_snapshot([], NONCE)
    try:
        assert kg._xltg_check(["f"], [], NONCE, ns)["refs"] == []
        _notebook_function("def g(p):\n    return sampling.language_probabilities(p, 1)\n", ns)
        assert kg._xltg_check(["g"], [], NONCE, ns)["refs"] == ["g uses sampling"]
    finally:
        sys.modules.pop("_xltg_" + NONCE, None)
