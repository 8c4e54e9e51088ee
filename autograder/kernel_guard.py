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
        "refs": [...]}``: the module attributes restored, and how the exercise's functions
        reach an ``xlt_course`` function or module (other than ``xlt_course.checks``).
    """
    import os
    import sys

    # ipykernel itself swaps these per execution (stdin forwarding, exit/quit helpers)
    ignored = ("get_ipython", "exit", "quit", "display", "input", "getpass")
    holder = sys.modules.get("_xltg_" + nonce)
    if holder is None:
        return {"tampered": True}

    def from_notebook(o: object) -> bool:
        # Libraries replace their own attributes (lazy modules, wrappers): only objects
        # made by the notebook's code count as monkeypatching (and are undone).
        if o is holder:  # deleted
            return True
        if type(o) is type(sys):
            return not getattr(o, "__file__", None)
        f = getattr(o, "__func__", o)
        code = getattr(f, "__code__", None)
        if code is not None:
            fn = code.co_filename
            return fn.startswith("<") or "ipykernel_" in fn or not os.path.exists(fn)
        return "__main__" in (getattr(o, "__module__", None), getattr(type(o), "__module__", None))

    changed = []
    for m, (mod, saved) in holder.snap.items():
        cur = sys.modules.get(m)
        if cur is not mod and (cur is None or from_notebook(cur)):
            changed.append(m)
            sys.modules[m] = mod
        d = mod.__dict__
        for k, v in saved.items():
            if k.startswith("_") and k != "__import__" or k in ignored:
                continue
            new = d.get(k, holder)
            if new is not v and from_notebook(new):
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

    refs = []
    seen = set()

    def course_object(o: object) -> bool:
        mod = o.__name__ if type(o) is type(sys) else getattr(o, "__module__", None)
        if not isinstance(mod, str) or not (mod == "xlt_course" or mod.startswith("xlt_course.")):
            return False
        if mod.startswith("xlt_course.checks"):
            return False
        return type(o) is type(sys) or callable(o) and hasattr(o, "__name__")

    def visit(fn_name: str, f: object) -> None:
        if id(f) in seen:
            return
        seen.add(id(f))
        if course_object(f):
            what = getattr(f, "__module__", "") + "." + getattr(f, "__name__", "?")
            refs.append(fn_name + " is " + what)
            return
        code = getattr(f, "__code__", None)
        glb = getattr(f, "__globals__", None)
        if code is None or glb is None:
            return
        stack = [code]
        while stack:
            c = stack.pop()
            stack.extend(x for x in c.co_consts if hasattr(x, "co_names"))
            for name in sorted(global_reads(c)):
                o = glb.get(name)
                if o is None or name in allowed:
                    continue
                if course_object(o):
                    refs.append(fn_name + " uses " + name)
                elif getattr(o, "__globals__", None) is glb and getattr(o, "__code__", None):
                    visit(fn_name, o)

    for name in fns:
        if name in namespace:
            visit(name, namespace[name])
    return {"changed": sorted(set(changed)), "refs": sorted(set(refs))}


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
