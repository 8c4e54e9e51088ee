"""The grader's guard inside the grading kernel: undo monkeypatching, spot calls to the course.

The two ``_xltg_*`` functions run in the student's kernel, not here: the grading worker
sends their source (:func:`inspect.getsource`) as hidden executions around every graded
tests cell (not notebook cells, not in the kernel's history), calls them and deletes them
again. Their names are unlikely to collide with a student's; the ``nonce`` is random per
grading run, so a notebook cannot forge the guard's answer or find its snapshot by name.
They import what they use inside their bodies, since they are defined in the kernel's
namespace, where this module's imports do not exist.

:func:`snapshot_code` and :func:`check_code` (worker side) build those executions;
:func:`read_answer` parses the check's printed answer.
"""

from __future__ import annotations

import inspect
import json

MARKER = "XLTG"
"""Prefix (followed by the nonce) of the line the check prints."""


def _xltg_snapshot(mods: list[str], nonce: str) -> None:
    """Save the modules ``mods`` and their attributes in ``sys.modules["_xltg_<nonce>"]``."""
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
        inner = [x for x in (attr(o, "__func__"), attr(o, "__wrapped__")) if x is not None]
        verdict = written_here(o)
        if verdict is None:
            mods = (attr(o, "__module__"), attr(type(o), "__module__"))
            verdict = "__main__" in mods or bool(written_here(attr(type(o), "__call__")))
        return verdict or depth < 4 and any(from_notebook(x, depth + 1) for x in inner)

    def is_course_module(m: str) -> bool:
        return m == "xlt_course" or m.startswith("xlt_course.")

    changed = []
    for m, (mod, saved) in holder.snap.items():
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
    }


# Read once, when the worker imports this module: a checkout updated while a batch is
# graded must not send the kernel source that no longer matches these functions.
_SOURCE = {f.__name__: inspect.getsource(f) for f in (_xltg_snapshot, _xltg_check)}


def snapshot_code(nonce: str, mods: list[str]) -> str:
    """Return the hidden execution that takes the guard's snapshot of ``mods``."""
    return (
        _SOURCE["_xltg_snapshot"]
        + f"_xltg_snapshot({list(mods)!r}, {nonce!r})\ndel _xltg_snapshot\n"
    )


def check_code(nonce: str, fns: list[str], allowed: list[str]) -> str:
    """Return the hidden execution that runs the check and prints its answer on one line."""
    call = f"_xltg_check({list(fns)!r}, {list(allowed)!r}, {nonce!r}, globals())"
    return (
        _SOURCE["_xltg_check"]
        + f'print({MARKER + nonce!r} + __import__("json").dumps({call}))\n'
        + "del _xltg_check\n"
    )


def read_answer(stdout: str, nonce: str) -> dict | None:
    """Return the check's answer found in the hidden execution's ``stdout`` (None: none)."""
    marker = MARKER + nonce
    line = next((ln for ln in stdout.splitlines() if ln.startswith(marker)), None)
    return None if line is None else json.loads(line[len(marker) :])
