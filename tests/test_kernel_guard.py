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


@contextlib.contextmanager
def _guarded(mods: list[str], module: object = None, name: str = ""):
    """Take the guard's snapshot of ``mods``; on leaving, put ``module.name`` back and drop it."""
    kg._xltg_snapshot(mods, NONCE)
    original = getattr(module, name) if module is not None else None
    try:
        yield original
    finally:
        if module is not None:
            setattr(module, name, original)
        sys.modules.pop("_xltg_" + NONCE, None)


def test_check_restores_what_the_notebook_replaced():
    ns: dict = {"__name__": "__main__"}
    with _guarded(["json"], json, "dumps") as original:
        _notebook_function("import json\njson.dumps = lambda *a, **k: 'fake'\n", ns)
        assert json.dumps is not original
        res = kg._xltg_check([], [], NONCE, ns)
        assert {k: v for k, v in res.items() if k != "digest"} == {
            "changed": ["json.dumps"],
            "refs": [],
            "dynamic": [],
        }
        assert json.dumps is original
        assert kg._xltg_check([], [], NONCE, ns)["changed"] == []  # nothing left to undo


def test_check_leaves_libraries_own_replacements_alone():
    with _guarded(["json"], json, "dumps"):
        json.dumps = json.JSONEncoder  # an object from a real file: the library's own doing
        assert kg._xltg_check([], [], NONCE, {})["changed"] == []


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


def test_an_edited_snapshot_changes_the_digest():
    original = json.loads
    try:
        digest = kg._xltg_snapshot(["json"], NONCE)
        json.loads = lambda s: 42  # then make the snapshot agree, as a notebook could
        holder = sys.modules["_xltg_" + NONCE]
        holder.snap["json"][1]["loads"] = json.loads
        res = kg._xltg_check([], [], NONCE, {})
        assert res["changed"] == [] and res["digest"] != digest
    finally:
        json.loads = original
        sys.modules.pop("_xltg_" + NONCE, None)


def test_the_check_request_and_its_answer():
    content = kg.check_request(NONCE, ["f"], ["g"])
    assert content == {"nonce": NONCE, "kind": "check", "fns": ["f"], "allowed": ["g"]}
    answer = {"changed": [], "refs": [], "dynamic": [], "digest": "1"}
    assert kg.read_check({"status": "ok", "value": answer}) == answer
    assert kg.read_check({"status": "error", "ename": "X"}) is None
    assert kg.read_check(None) is None


def test_bound_builtin_methods_and_slots_count_as_the_notebooks():
    import numpy as np

    for fake in ("ok".format, object.__ne__, str.format, (1).__eq__):
        with _guarded(["numpy"], np, "allclose"):
            np.allclose = fake
            assert kg._xltg_check([], [], NONCE, {})["changed"] == ["numpy.allclose"], fake
            assert np.allclose is not fake


def _hidden_function(content: dict, **names):
    """Build the hidden tests' function as the kernel's handler does (real builtins only)."""
    import builtins
    import marshal
    import types

    code = marshal.loads(content["code"].encode("latin-1"))
    return types.FunctionType(code, {"__builtins__": builtins, **names})


def test_hidden_tests_run_in_their_own_scope_from_bytecode():
    hidden = "expected = np.arange(3)\nassert f(expected) == 3, 'f is wrong'\n"
    content = kg.hidden_tests_request(NONCE, hidden, ["import numpy as np"], ["f"])
    assert content["names"] == ["f"] and "expected = " not in json.dumps(content)
    import builtins

    assert kg.global_reads(marshal_code(content)) - set(dir(builtins)) == {"f"}
    ns: dict = {}
    _notebook_function("def f(x):\n    return len(x)\n", ns)
    _hidden_function(content, f=ns["f"])()  # passes: no notebook global but f is needed
    _notebook_function("def f(x):\n    return 0\n", ns)
    try:
        _hidden_function(content, f=ns["f"])()
    except AssertionError as e:
        assert str(e) == "f is wrong"
    else:
        raise AssertionError("the hidden test passed a wrong f")


def marshal_code(content: dict):
    import marshal

    return marshal.loads(content["code"].encode("latin-1"))


def test_sys_modules_is_told_from_a_method_named_modules():
    """``sys.maxsize`` next to ``self.encoder.modules()`` is not a read of ``sys.modules``."""
    ns: dict = {"__name__": "__main__"}
    _notebook_function(
        "import sys\n"
        "def honest(m):\n    return sys.maxsize, list(m.modules())\n"
        "def looks_up(m):\n    return sys.modules['numpy']\n"
        "def local(m):\n    import sys\n    return sys.modules.get('numpy')\n",
        ns,
    )
    with _guarded(["json"]):
        for name, dynamic in [
            ("honest", []),
            ("looks_up", ["looks_up reads sys.modules"]),
            ("local", ["local reads sys.modules"]),
        ]:
            assert kg._xltg_check([name], [], NONCE, ns)["dynamic"] == dynamic, name
