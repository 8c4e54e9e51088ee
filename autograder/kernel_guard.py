"""The grader's guard inside the grading kernel: undo monkeypatching, spot calls to the course.

The two ``_xltg_*`` functions run in the student's kernel, not here: the grading worker
sends them compiled (marshalled bytecode) as *user expressions* of an empty execute request
around every graded tests cell. IPython evaluates those directly: no input transformer, AST
transformer or pre/post-run hook a notebook installed sees them, nothing enters the history
or the line cache, and their answer comes back in the execute reply, not through printed
output a notebook could imitate. They bind no name in the notebook and import what they use
inside their bodies. The snapshot lives in ``sys.modules["_xltg_<nonce>"]`` (the nonce is
random per grading run); its digest stays with the worker, so a notebook that finds and
edits the snapshot is caught by the next check. The hidden tests travel the same way
(:func:`hidden_tests_expression`).

:func:`snapshot_expression` and :func:`check_expression` (worker side) build those
expressions; :func:`read_check` parses the check's answer.

What a notebook's code could still do, in the same process as the tests, is stated in the
README (grading, "what the guard cannot see"): the grader flags such code for review.
"""

from __future__ import annotations

import ast
import base64
import inspect
import json
import marshal

MARKER = "XLTG"
"""Prefix (followed by the nonce) of the line the check prints."""


def _xltg_snapshot(mods: list[str], nonce: str) -> str:
    """Save the modules ``mods`` and their attributes in ``sys.modules["_xltg_<nonce>"]``.

    Returns:
        A digest of the saved objects' identities, which :func:`_xltg_check` recomputes.
    """
    import importlib
    import sys
    import types

    snap = {}
    for m in mods:
        try:
            mod = importlib.import_module(m)
        except Exception:  # noqa: BLE001 - a module the kernel lacks is simply not guarded
            continue
        snap[m] = (mod, dict(mod.__dict__))
    holder = types.ModuleType("_xltg_" + nonce)
    holder.snap = snap
    # Opcodes that read a global, taken before any notebook code runs (dis can be patched).
    import dis

    holder.ops = (dis.opmap["LOAD_GLOBAL"], dis.opmap["LOAD_NAME"], dis.opmap["EXTENDED_ARG"])
    holder.shifted = sys.version_info >= (3, 11)  # LOAD_GLOBAL's arg is (index << 1) | flag
    sys.modules["_xltg_" + nonce] = holder
    # The worker keeps this digest: a snapshot edited by the notebook no longer matches it.
    return str(
        hash(tuple((m, id(mod), *map(id, saved.values())) for m, (mod, saved) in snap.items()))
    )


def _xltg_check(fns: list[str], allowed: list[str], nonce: str, namespace: dict) -> dict:
    """Restore what the notebook replaced since the snapshot; find uses of the course's code.

    Args:
        fns: names of the exercise's functions in ``namespace`` (the notebook's globals).
        allowed: ``xlt_course`` names the exercise's reference solution itself uses.
        nonce: the grading run's nonce (names the snapshot).
        namespace: the notebook's global namespace.

    Returns:
        ``{"tampered": True}`` when the snapshot is gone, else ``{"changed": [...],
        "refs": [...], "dynamic": [...]}``: the module attributes restored; how the
        exercise's functions reach an ``xlt_course`` function or module (other than
        ``xlt_course.checks``), directly, through a wrapper (``functools.partial``, a bound
        method, ``__wrapped__``), a container, a closure, a default argument or an object the
        notebook defined; and their run-time name lookups (``globals()``, ``eval``,
        ``__import__``, ``sys.modules``, ...), which no static reading can follow.
    """
    import functools
    import os
    import sys

    # ipykernel itself swaps these per execution (stdin forwarding, exit/quit helpers)
    ignored = ("get_ipython", "exit", "quit", "display", "input", "getpass")
    holder = sys.modules.get("_xltg_" + nonce)
    if holder is None:
        return {"tampered": True}
    snap = holder.snap
    digest = str(
        hash(tuple((m, id(mod), *map(id, saved.values())) for m, (mod, saved) in snap.items()))
    )

    def attr(o: object, name: str) -> object:
        try:  # an object's __getattr__ is the notebook's code: it may raise anything
            return getattr(o, name, None)
        except Exception:  # noqa: BLE001
            return None

    def written_here(f: object):
        # True: code the notebook wrote; False: a library's; None: not Python code.
        code = attr(f, "__code__")
        if code is None or not hasattr(code, "co_filename"):
            return None
        fn = code.co_filename
        if fn.startswith("<") or "ipykernel_" in fn or not os.path.exists(fn):
            return True
        # A library function runs in its own module's namespace; code compiled under a
        # library's file name by the notebook runs in the notebook's or a fresh one.
        glb = attr(f, "__globals__")
        name = glb.get("__name__") if isinstance(glb, dict) else None
        mod = sys.modules.get(name) if isinstance(name, str) else None
        return name == "__main__" or mod is None or attr(mod, "__dict__") is not glb

    def from_notebook(o: object, depth: int = 0) -> bool:
        # Libraries replace their own attributes (lazy modules, wrappers): only objects
        # made by the notebook's code count as monkeypatching (and are undone).
        if o is holder:  # deleted
            return True
        if type(o) is type(sys):
            return not getattr(o, "__file__", None)
        if isinstance(o, functools.partial):
            return True  # a library does not rebind its attributes to partials later on
        # Nor to a method bound to some object ("ok".format takes any arguments) or a slot
        # of another type (object.__ne__): no file to tell whose they are, so they count.
        owner = attr(o, "__self__")
        if type(o).__name__ in ("method-wrapper", "wrapper_descriptor", "method_descriptor",
                                "classmethod_descriptor"):  # fmt: skip
            return True
        bound = type(o).__name__ == "builtin_function_or_method" and owner is not None
        if bound and type(owner) is not type(sys):
            return True
        inner = [x for x in (attr(o, "__func__"), attr(o, "__wrapped__")) if x is not None]
        verdict = written_here(o)
        if verdict is None:
            mods = (attr(o, "__module__"), attr(type(o), "__module__"))
            verdict = "__main__" in mods or bool(written_here(attr(type(o), "__call__")))
        return verdict or depth < 4 and any(from_notebook(x, depth + 1) for x in inner)

    def is_course_module(m: str) -> bool:
        return m == "xlt_course" or m.startswith("xlt_course.")

    changed = []
    for m, (mod, saved) in snap.items():
        cur = sys.modules.get(m)
        if cur is not mod and (cur is None or from_notebook(cur)):
            changed.append(m)
            sys.modules[m] = mod
        # The course never rebinds its own attributes: any change there is the notebook's.
        strict = is_course_module(m)
        d = mod.__dict__
        for k, v in saved.items():
            if k.startswith("_") and k != "__import__" or k in ignored:
                continue
            new = d.get(k, holder)
            if new is not v and (strict or from_notebook(new)):
                changed.append(m + "." + k)
                d[k] = v

    def global_reads(c: object) -> set:
        # The names c reads as globals. Not c.co_names: it also holds attribute names, and
        # s.translate(...) is not a use of the lesson's translate module.
        load_global, load_name, extended = holder.ops
        raw, found, high = c.co_code, set(), 0
        for i in range(0, len(raw) - 1, 2):
            op, arg = raw[i], raw[i + 1] | high
            high = arg << 8 if op == extended else 0
            if op == load_global:
                found.add(c.co_names[arg >> 1 if holder.shifted else arg])
            elif op == load_name:
                found.add(c.co_names[arg])
        return found

    # Names that look other names up at run time: what they reach cannot be read statically.
    lookups = {"globals", "vars", "locals", "eval", "exec", "compile", "__import__"}
    refs, dynamic = [], []
    seen = set()

    def course_object(o: object) -> bool:
        mod = o.__name__ if type(o) is type(sys) else attr(o, "__module__")
        if not isinstance(mod, str) or not is_course_module(mod):
            return False
        if mod.startswith("xlt_course.checks"):
            return False
        return type(o) is type(sys) or callable(o) and hasattr(o, "__name__")

    def carried(o: object) -> list:
        # What a wrapper, a container or an object the notebook defined holds on to.
        out = []
        if isinstance(o, functools.partial):
            out += [o.func, *o.args, *o.keywords.values()]
        for a in ("__func__", "__self__", "__wrapped__"):
            x = attr(o, a)
            if x is not None and type(x) is not type(sys):
                out.append(x)
        if isinstance(o, (list, tuple, set, frozenset)):
            out += list(o)[:500]
        elif isinstance(o, dict):
            out += list(o.values())[:500]
        elif "__main__" in (attr(o, "__module__"), attr(type(o), "__module__")):
            # a class's own namespace; an instance's and its class's (not ``type``'s)
            owners = (o,) if isinstance(o, type) else (o, type(o))
            for ns in (attr(x, "__dict__") for x in owners):
                if isinstance(ns, dict) or type(ns).__name__ == "mappingproxy":
                    out += [v for k, v in list(ns.items())[:500] if not str(k).startswith("__")]
        return out

    def visit(fn_name: str, f: object, via: str, depth: int = 0) -> None:
        if id(f) in seen or depth > 8:
            return
        seen.add(id(f))
        if course_object(f):
            what = (attr(f, "__module__") or "") + "." + (attr(f, "__name__") or "?")
            refs.append(fn_name + (" is " if not via else " uses " + via + ", which is ") + what)
            return
        for x in carried(f):
            visit(fn_name, x, via or "an object it holds", depth + 1)
        code, glb = attr(f, "__code__"), attr(f, "__globals__")
        if code is None or glb is not namespace and written_here(f) is not True:
            return  # a library's function: its own globals are not the notebook's concern
        for cell in attr(f, "__closure__") or ():
            try:
                held = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            visit(fn_name, held, via or "a closure variable", depth + 1)
        kwd = attr(f, "__kwdefaults__") or {}
        for x in (*(attr(f, "__defaults__") or ()), *kwd.values()):
            visit(fn_name, x, via or "a default argument", depth + 1)
        if not isinstance(glb, dict):
            return
        stack = [code]
        while stack:
            c = stack.pop()
            stack.extend(x for x in c.co_consts if hasattr(x, "co_names"))
            reads = global_reads(c)
            for name in sorted(reads & lookups):
                dynamic.append(fn_name + " calls " + name)
            names = set(c.co_names)  # attributes and imported modules too, local or not
            if "sys" in names and "modules" in names:
                dynamic.append(fn_name + " reads sys.modules")
            for name in sorted(names & {"importlib", "builtins"}):
                dynamic.append(fn_name + " uses " + name)
            for name in sorted(reads):
                o = glb.get(name)
                if o is None or name in allowed:
                    continue
                if course_object(o):
                    refs.append(fn_name + " uses " + name)
                elif type(o) is not type(sys):
                    visit(fn_name, o, via or name, depth + 1)

    for name in fns:
        if name in namespace:
            visit(name, namespace[name], "")
    return {
        "changed": sorted(set(changed)),
        "refs": sorted(set(refs)),
        "dynamic": sorted(set(dynamic)),
        "digest": digest,
    }


# Compiled once, when the worker imports this module: a checkout updated while a batch is
# graded must not send the kernel code that no longer matches these functions.
def _function_blob(source: str, name: str, filename: str) -> str:
    """Return function ``name`` of ``source`` compiled, marshalled and base64-encoded."""
    code = compile(source, filename, "exec")
    fcode = next(c for c in code.co_consts if getattr(c, "co_name", None) == name)
    return base64.b64encode(marshal.dumps(fcode)).decode("ascii")


_BLOB = {
    f.__name__: _function_blob(inspect.getsource(f), f.__name__, "<grader>")
    for f in (_xltg_snapshot, _xltg_check)
}

# Builds a function in the notebook's globals from its marshalled code: it binds no name
# there, and no source text of it reaches the kernel (nor IPython's line cache).
_LOADER = (
    '__import__("types").FunctionType(__import__("marshal").loads('
    '__import__("base64").b64decode({blob!r})), globals())'
)


def snapshot_expression(nonce: str, mods: list[str]) -> str:
    """Return the expression that takes the guard's snapshot of ``mods`` (value: its digest)."""
    return _LOADER.format(blob=_BLOB["_xltg_snapshot"]) + f"({list(mods)!r}, {nonce!r})"


def check_expression(nonce: str, fns: list[str], allowed: list[str]) -> str:
    """Return the expression that runs the check (value: its answer as JSON text)."""
    call = f"({list(fns)!r}, {list(allowed)!r}, {nonce!r}, globals())"
    return f'__import__("json").dumps({_LOADER.format(blob=_BLOB["_xltg_check"])}{call})'


HIDDEN_FILENAME = "<hidden tests>"
"""File name of the hidden tests' code in the kernel: no source is registered under it."""


def hidden_tests_expression(source: str, imports: list[str]) -> str:
    """Return the expression that runs hidden tests as one function call (value: None).

    The tests run in a function of their own, so the names they bind (an expected value, a
    reference implementation) are its locals, never the notebook's globals that a student's
    function could read; ``imports`` (the lesson's import statements up to the tests cell) run
    first inside it, so a module alias the student rebound in the notebook (``np``) does not
    reach them. The kernel receives bytecode, not the tests' text.

    Args:
        source: the hidden tests (between the BEGIN/END HIDDEN TESTS markers).
        imports: import statements, each one line of Python.

    Raises:
        SyntaxError: when ``source`` does not parse (the lesson's own bug).
    """
    body = [*ast.parse("\n".join(imports)).body, *ast.parse(source).body] or [ast.Pass()]
    fn = ast.FunctionDef(
        name="_xltg_hidden_tests",
        args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
        body=body,
        decorator_list=[],
        returns=None,
    )
    module = ast.fix_missing_locations(ast.Module(body=[fn], type_ignores=[]))
    code = compile(module, HIDDEN_FILENAME, "exec")
    fcode = next(c for c in code.co_consts if getattr(c, "co_name", None) == fn.name)
    blob = base64.b64encode(marshal.dumps(fcode)).decode("ascii")
    return _LOADER.format(blob=blob) + "()"


def read_value(reply: dict | None) -> tuple[str, object]:
    """Return ``("ok", value)`` or ``("error", (ename, evalue, traceback))`` of an expression.

    Args:
        reply: one entry of an execute reply's ``user_expressions`` (None: no reply).
    """
    if not reply:
        return "error", ("NoReply", "the kernel did not answer", [])
    if reply.get("status") != "ok":
        return "error", (
            reply.get("ename", ""),
            reply.get("evalue", ""),
            reply.get("traceback", []),
        )
    text = reply.get("data", {}).get("text/plain", "None")
    try:
        return "ok", ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return "error", ("BadReply", text[:200], [])


def read_check(reply: dict | None) -> dict | None:
    """Return the check's answer from its expression's reply (None: no usable answer)."""
    status, value = read_value(reply)
    if status != "ok" or not isinstance(value, str):
        return None
    try:
        res = json.loads(value)
    except ValueError:
        return None
    return res if isinstance(res, dict) else None
