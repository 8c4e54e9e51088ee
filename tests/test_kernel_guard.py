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


def _user_expression(expression: str, ns: dict) -> dict:
    """Evaluate ``expression`` in ``ns`` as IPython does a user expression; return its reply."""
    try:
        value = eval(expression, ns)
    except Exception as e:  # noqa: BLE001 - the reply carries it
        return {"status": "error", "ename": type(e).__name__, "evalue": str(e), "traceback": []}
    return {"status": "ok", "data": {"text/plain": repr(value)}}


def test_the_expressions_sent_to_the_kernel_run_and_leave_no_names():
    ns: dict = {"__name__": "__main__"}
    original = json.loads
    try:
        status, digest = kg.read_value(
            _user_expression(kg.snapshot_expression(NONCE, ["json"]), ns)
        )
        assert status == "ok" and isinstance(digest, str)
        _notebook_function("import json\njson.loads = lambda s: 42\n", ns)
        res = kg.read_check(_user_expression(kg.check_expression(NONCE, ["nothing"], []), ns))
        assert res == {"changed": ["json.loads"], "refs": [], "dynamic": [], "digest": digest}
        assert json.loads is original
        assert not [k for k in ns if "xltg" in k]
        assert kg.read_check({"status": "ok", "data": {"text/plain": "'not json'"}}) is None
        assert kg.read_check(None) is None
    finally:
        json.loads = original
        sys.modules.pop("_xltg_" + NONCE, None)


def test_an_edited_snapshot_changes_the_digest():
    ns: dict = {"__name__": "__main__"}
    original = json.loads
    try:
        _, digest = kg.read_value(_user_expression(kg.snapshot_expression(NONCE, ["json"]), ns))
        json.loads = lambda s: 42  # then make the snapshot agree, as a notebook could
        holder = sys.modules["_xltg_" + NONCE]
        holder.snap["json"][1]["loads"] = json.loads
        reply = _user_expression(kg.check_expression(NONCE, [], []), ns)
        json.loads = original  # read_check (here, not in a kernel) parses with it
        res = kg.read_check(reply)
        assert res["changed"] == [] and res["digest"] != digest
    finally:
        json.loads = original
        sys.modules.pop("_xltg_" + NONCE, None)


def test_bound_builtin_methods_and_slots_count_as_the_notebooks():
    import numpy as np

    for fake in ("ok".format, object.__ne__, str.format, (1).__eq__):
        with _guarded(["numpy"], np, "allclose"):
            np.allclose = fake
            assert kg._xltg_check([], [], NONCE, {})["changed"] == ["numpy.allclose"], fake
            assert np.allclose is not fake


def test_hidden_tests_run_in_their_own_scope_from_bytecode():
    import numpy

    ns: dict = {"__name__": "__main__", "np": "rebound by the notebook", "expected": None}
    hidden = "expected = np.arange(3)\nassert f(expected) == 3, 'f is wrong'\n"
    _notebook_function("def f(x):\n    return len(x)\n", ns)
    expr = kg.hidden_tests_expression(hidden, ["import numpy as np"])
    assert hidden not in expr and "expected" not in expr.split("b64decode")[0]
    assert kg.read_value(_user_expression(expr, ns)) == ("ok", None)
    assert ns["expected"] is None and ns["np"] == "rebound by the notebook"  # no global bound
    _notebook_function("def f(x):\n    return 0\n", ns)
    status, (ename, evalue, _) = kg.read_value(_user_expression(expr, ns))
    assert (status, ename, evalue) == ("error", "AssertionError", "f is wrong")
    assert numpy.__name__ == "numpy"


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


def test_check_restores_replacements_disguised_as_library_code():
    """A partial, or code compiled under a library's own file name, is still the notebook's."""
    ns: dict = {"__name__": "__main__"}
    with _guarded(["json"], json, "dumps") as original:
        _notebook_function(
            "import functools, json\njson.dumps = functools.partial(lambda *a, **k: 'x')\n", ns
        )
        assert kg._xltg_check([], [], NONCE, ns)["changed"] == ["json.dumps"]
        assert json.dumps is original
        fresh: dict = {"__name__": "json"}  # runs in a fresh namespace named like the library
        exec(compile("def dumps(*a, **k):\n    return 'x'\n", json.__file__, "exec"), fresh)
        json.dumps = fresh["dumps"]
        assert kg._xltg_check([], [], NONCE, ns)["changed"] == ["json.dumps"]
        assert json.dumps is original


def test_check_restores_any_change_to_the_course_modules():
    """The course never rebinds its own attributes, so even a library object put there is."""
    from xlt_course import procrustes

    with _guarded(["xlt_course.procrustes"], procrustes, "procrustes") as original:
        procrustes.procrustes = json.JSONEncoder
        assert kg._xltg_check([], [], NONCE, {})["changed"] == ["xlt_course.procrustes.procrustes"]
        assert procrustes.procrustes is original


def test_check_finds_the_course_behind_wrappers_containers_closures_and_defaults():
    import functools

    from xlt_course import retrieval

    cases = {
        "partial": "_impl = functools.partial(retrieval.csls_scores)\n"
        "def f(X, Y):\n    return _impl(X, Y)\n",
        "container": "_impls = [retrieval.csls_scores]\ndef f(X, Y):\n    return _impls[0](X, Y)\n",
        "closure": "def _make():\n    g = retrieval.csls_scores\n    return lambda X, Y: g(X, Y)\n"
        "f = _make()\n",
        "default": "def f(X, Y, _g=retrieval.csls_scores):\n    return _g(X, Y)\n",
        "class": "class _H:\n    g = staticmethod(retrieval.csls_scores)\n"
        "def f(X, Y):\n    return _H.g(X, Y)\n",
    }
    kg._xltg_snapshot([], NONCE)
    try:
        for case, source in cases.items():
            ns: dict = {"__name__": "__main__", "functools": functools, "retrieval": retrieval}
            _notebook_function(source, ns)
            refs = kg._xltg_check(["f"], [], NONCE, ns)["refs"]
            assert refs and all(r.startswith("f ") for r in refs), (case, refs)
        ns = {"__name__": "__main__", "functools": functools}
        _notebook_function("import numpy as np\ndef f(X, Y):\n    return np.dot(X, Y)\n", ns)
        assert kg._xltg_check(["f"], [], NONCE, ns)["refs"] == []
    finally:
        sys.modules.pop("_xltg_" + NONCE, None)


def test_check_reports_run_time_name_lookups():
    from xlt_course import translate

    ns: dict = {"__name__": "__main__", "mt": translate}
    _notebook_function(
        "def f(h, r):\n    return globals()['m' + 't'].sentence_chrf(h, r)\n"
        "def g(h, r):\n    import sys\n    return sys.modules['xlt_course.translate'](h, r)\n"
        "def ok(h, r):\n    return getattr(h, 'strip')() == r\n",
        ns,
    )
    kg._xltg_snapshot([], NONCE)
    try:
        res = kg._xltg_check(["f", "g", "ok"], [], NONCE, ns)
        assert res["refs"] == []  # nothing static to see ...
        # ... but the lookups are reported, with the module imported inside the function too
        assert res["dynamic"] == ["f calls globals", "g reads sys.modules"]
        _notebook_function(
            "import sys\ndef h(x):\n    return sys.modules['json']\n"
            "def i(x):\n    import importlib\n    return importlib.import_module(x)\n",
            ns,
        )
        assert kg._xltg_check(["h", "i"], [], NONCE, ns)["dynamic"] == [
            "h reads sys.modules",
            "i uses importlib",
        ]
    finally:
        sys.modules.pop("_xltg_" + NONCE, None)
