"""The grader's guard inside the grading kernel: undo monkeypatching, spot calls to the course.

The ``_xltg_*`` functions run in the student's kernel, not here. Before any notebook cell
runs, the worker sends :func:`_xltg_install` (marshalled bytecode, as the one user expression
of an empty execute request): it takes the snapshot (:func:`_xltg_snapshot`) and registers a
handler for the grader's own ``xltg_request`` messages. Every later check
(:func:`_xltg_check`), every call of a student's function for the hidden tests that run in
the worker (:mod:`autograder.verdict`) and the hidden part of the few tests cells that run
in the kernel go through that handler, which holds the real ``builtins``, ``marshal`` and
``types`` it captured: no input transformer, AST transformer, run hook or custom exception
handler a notebook installs sees them, no name the notebook binds (``__import__``,
``globals``, ``__builtins__``) reaches them, nothing enters the history or the line cache,
and answers come back in signed ``xltg_reply`` messages, not in printed output a notebook
could imitate. The snapshot lives in ``sys.modules["_xltg_<nonce>"]`` (random per grading
run) and its digest stays with the worker, so a notebook that finds and edits the snapshot
is caught by the next check.

:func:`install_expression`, :func:`check_request`, :func:`call_request` and
:func:`hidden_tests_request` (worker side) build what is sent; :func:`read_check` parses the
check's answer.

What a notebook's code could still do, in the same process as the guard, is stated in the
README (grading, the sandbox's threat model): the grader flags such code for review.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import inspect
import marshal

from autograder import pysource, verdict


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
    # Every loaded module of the packages the tests compute with, not just the ones named:
    # numpy's ``allclose`` reads ``builtins`` and ``isclose`` from ``numpy._core.numeric``.
    packages = {m.split(".")[0] for m in mods} & {"numpy", "torch", "xlt_course", "scipy"}
    for m, mod in sorted(sys.modules.items()):
        if m not in snap and type(mod) is type(sys) and m.split(".")[0] in packages:
            snap[m] = (mod, dict(mod.__dict__))
    holder = types.ModuleType("_xltg_" + nonce)
    holder.snap = snap
    # Opcodes that read a global, taken before any notebook code runs (dis can be patched).
    import dis

    holder.ops = (dis.opmap["LOAD_GLOBAL"], dis.opmap["LOAD_NAME"], dis.opmap["EXTENDED_ARG"])
    holder.shifted = sys.version_info >= (3, 11)  # LOAD_GLOBAL's arg is (index << 1) | flag
    # an attribute read right after a name's: ``sys.modules``, not ``self.encoder.modules()``
    holder.attr_ops = (dis.opmap["LOAD_ATTR"], dis.opmap.get("LOAD_METHOD", -1))
    holder.attr_shifted = sys.version_info >= (3, 12)  # LOAD_ATTR's arg is (index << 1) | flag
    holder.load_fast = dis.opmap["LOAD_FAST"]
    # The functions' code too: swapping ``f.__code__`` keeps every object the same.
    codes = []
    for m, (_mod, saved) in snap.items():
        for k, v in saved.items():
            try:  # numpy's dispatchers keep the Python function in ``_implementation``
                impl = getattr(v, "_implementation", None)
            except Exception:  # noqa: BLE001 - a lazy attribute may raise anything
                impl = None
            for f in (v, impl):
                if type(f) is types.FunctionType:
                    codes.append((f"{m}.{k}", f, f.__code__, f.__defaults__, f.__kwdefaults__))
    holder.codes = codes
    sys.modules["_xltg_" + nonce] = holder
    # The worker keeps this digest: a snapshot edited by the notebook no longer matches it.
    return str(
        hash(
            (
                tuple((m, id(mod), *map(id, saved.values())) for m, (mod, saved) in snap.items()),
                tuple(id(c[2]) for c in codes),
            )
        )
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
    codes = getattr(holder, "codes", [])
    digest = str(
        hash(
            (
                tuple((m, id(mod), *map(id, saved.values())) for m, (mod, saved) in snap.items()),
                tuple(id(c[2]) for c in codes),
            )
        )
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
        # (a library may drop a submodule from sys.modules; its importers keep the object)
        if cur is not mod and (cur is None and "." not in m or from_notebook(cur)):
            changed.append(m)
            sys.modules[m] = mod
        # The course never rebinds its public attributes: any change there is the notebook's.
        # Private ones (``_dtype_cannot_hold_nan``, a cache) count when the notebook made them.
        strict = is_course_module(m)
        d = mod.__dict__
        for k, v in saved.items():
            dunder = k.startswith("__") and k not in ("__import__", "__getattr__")
            if dunder or k in ignored:
                continue
            new = d.get(k, holder)
            if new is not v and (strict and not k.startswith("_") or from_notebook(new)):
                changed.append(m + "." + k)
                d[k] = v

    for name, f, code, defaults, kwdefaults in codes:
        if (
            f.__code__ is not code
            or f.__defaults__ is not defaults
            or (f.__kwdefaults__ is not kwdefaults)
        ):
            f.__code__, f.__defaults__, f.__kwdefaults__ = code, defaults, kwdefaults
            changed.append(name + ".__code__")

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

    def reads_sys_modules(c: object) -> bool:
        # a ``sys`` (global or local) whose next instruction reads the attribute ``modules``
        load_global, load_name, extended = holder.ops
        attr_ops = holder.attr_ops
        raw, high, after_sys = c.co_code, 0, False
        for i in range(0, len(raw) - 1, 2):
            op, arg = raw[i], raw[i + 1] | high
            high = arg << 8 if op == extended else 0
            if op == extended or op == 0:  # EXTENDED_ARG and the CACHE entries in between
                continue
            if op == load_global:
                after_sys = c.co_names[arg >> 1 if holder.shifted else arg] == "sys"
            elif op == load_name:
                after_sys = c.co_names[arg] == "sys"
            elif op == holder.load_fast:
                after_sys = arg < len(c.co_varnames) and c.co_varnames[arg] == "sys"
            else:
                if after_sys and op in attr_ops:
                    index = arg >> 1 if holder.attr_shifted else arg
                    if index < len(c.co_names) and c.co_names[index] == "modules":
                        return True
                after_sys = False
        return False

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
            if "sys" in names and "modules" in names and reads_sys_modules(c):
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


def _xltg_canon(value: object) -> bytes:
    """Return the bytes a reply's content is signed over (the same on both sides of the wire).

    Plain data only, as JSON carries it: a tuple reads as a list, anything else as ``?``
    (which then fails the worker's check). In the kernel it runs with a copy of the builtins
    taken before any notebook code, so a notebook that replaces ``builtins.sorted`` or
    ``type`` cannot steer it.
    """
    kind = type(value)
    if value is None or kind is bool:
        return b"N" if value is None else b"T" if value else b"F"
    if issubclass(kind, str):
        data = str.encode(value, "utf-8", "surrogatepass")
        return b"S" + str.encode(str(len(data)), "ascii") + b":" + data
    if kind is int:
        return b"I" + str.encode(int.__repr__(value), "ascii") + b";"
    if kind is list or kind is tuple:
        parts = [_xltg_canon(x) for x in value]
        return b"L" + str.encode(str(len(parts)), "ascii") + b":" + b"".join(parts)
    if kind is dict:
        keys = sorted(k for k in value if type(k) is str)
        if len(keys) != len(value):
            return b"?"
        parts = [_xltg_canon(k) + _xltg_canon(value[k]) for k in keys]
        return b"D" + str.encode(str(len(parts)), "ascii") + b":" + b"".join(parts)
    return b"?"


def reply_mac(key: bytes, msg_id: str, content: dict) -> str:
    """Return the signature of a reply's ``content`` (without ``mac``) to request ``msg_id``.

    The handler signs every reply with a key made in the kernel before any notebook code ran,
    and known otherwise only to the worker: a notebook that edits replies on their way out
    (the kernel's session, its sockets) cannot sign what it forged, nor replay one answer
    for another request.
    """
    body = {k: v for k, v in content.items() if k != "mac"}
    data = _xltg_canon(msg_id) + _xltg_canon(body)
    return hashlib.blake2b(data, key=key, digest_size=32).hexdigest()


def _xltg_install(
    mods: list[str],
    nonce: str,
    snapshot: bytes,
    check: bytes,
    canon: bytes,
    codec: bytes,
    call: bytes,
) -> tuple[str, str]:
    """Take the snapshot, then register the grader's request handler in the kernel.

    Runs once, before any notebook code, so every object it keeps is the real one: the
    handler answers ``xltg_request`` messages (a check, or a tests cell's hidden part) with
    ``xltg_reply`` messages, running code with the real ``builtins`` module, never a name the
    notebook could rebind (``__import__``, ``globals``, ``__builtins__``).

    Every reply carries ``mac`` (:func:`reply_mac`), keyed with random bytes made here.

    Args:
        mods: the modules to guard.
        nonce: the grading run's nonce.
        snapshot, check, canon, codec, call: :func:`_xltg_snapshot`, :func:`_xltg_check`,
            :func:`_xltg_canon`, :func:`autograder.verdict._xltv_codec` and
            :func:`autograder.verdict._xltv_call`, marshalled.

    Returns:
        The snapshot's digest and the signing key (hex).
    """
    import builtins
    import hashlib
    import marshal
    import os
    import sys
    import traceback
    import types

    from IPython import get_ipython

    shell = get_ipython()
    kernel, user_ns = shell.kernel, shell.user_ns
    send = kernel.session.send
    make = types.FunctionType
    loads = marshal.loads
    real = {"__builtins__": builtins}
    take_snapshot = make(loads(snapshot), dict(real))
    run_check = make(loads(check), dict(real))
    # the signing path holds its own copy of the builtins, the hash type and its key
    frozen = dict(vars(builtins))
    canon_globals = {"__builtins__": frozen}
    canon_fn = make(loads(canon), canon_globals)
    canon_globals["_xltg_canon"] = canon_fn  # it calls itself for nested values
    blake2b, key = hashlib.blake2b, os.urandom(32)
    # values out as data only; arguments in may be a transformers config too
    to_wire = make(loads(codec), dict(real))(False)[0]
    from_wire = make(loads(codec), dict(real))(True)[1]
    run_call = make(loads(call), dict(real))
    cap = 100_000  # characters of an error's message or traceback sent back

    def sign(msg_id: str, out: dict) -> None:
        out["mac"] = blake2b(canon_fn(msg_id) + canon_fn(out), key=key, digest_size=32).hexdigest()

    def describe(e: BaseException) -> dict:
        # the exception may be the notebook's: its __str__ may raise or lie, never crash here
        try:
            ename, evalue = str(type(e).__name__)[:cap], str(e)[:cap]
            if type(ename) is not str or type(evalue) is not str:
                raise TypeError("not a string")
        except BaseException:  # noqa: BLE001
            ename, evalue = "Exception", "(an exception that cannot be shown)"
        try:
            tb, left = [], cap
            for line in traceback.format_exception(e):
                if type(line) is not str or left <= 0:
                    break
                tb.append(line[:left])
                left -= len(line)
        except BaseException:  # noqa: BLE001
            tb = [f"{ename}: {evalue}"]
        return {"status": "error", "ename": ename, "evalue": evalue, "traceback": tb}

    saved_state = []  # (snapshot, codes), kept here once taken: what the hidden tests run on
    # names ipykernel itself rebinds on every execution (stdin forwarding, exit helpers)
    rebound = ("get_ipython", "exit", "quit", "display", "input", "getpass")
    kept_dunders = ("__import__", "__getattr__", "__build_class__")

    # a library's own state, set lazily on first use (a flag, a cache filled from None):
    # put back, the library would only set it again
    state = (type(None), bool, int, float, complex, str, bytes)

    def wraps(new: object, old: object) -> bool:
        # a library decorating its own function later on (torch._dynamo wraps
        # torch.manual_seed when it is first imported)
        for _ in range(4):
            try:
                new = new.__dict__.get("__wrapped__") if hasattr(new, "__dict__") else None
            except Exception:  # noqa: BLE001 - the notebook's object may raise anything
                return False
            if new is None:
                return False
            if new is old:
                return True
        return False

    def pristine(restore: bool) -> list:
        # every attribute of the guarded modules that is not the snapshot's (put back): any
        # change in the course's own modules; elsewhere a public object replaced, not a
        # library's private state or its own wrapper around the same function
        snap, codes = saved_state[0]
        moved = []
        for m, (mod, saved) in snap.items():
            d = mod.__dict__
            course = m == "xlt_course" or m.startswith("xlt_course.")
            for k, v in saved.items():
                if k.startswith("__") and k not in kept_dunders or k in rebound:
                    continue
                if not course and (type(v) in state or k[:1] == "_" and k not in kept_dunders):
                    continue
                new = d.get(k, snap)
                if new is not v and (course or not wraps(new, v)):
                    moved.append(m + "." + k)
                    if restore:
                        d[k] = v
        for name, f, code, defaults, kwdefaults in codes:
            swapped = f.__code__ is not code or f.__defaults__ is not defaults
            if swapped or f.__kwdefaults__ is not kwdefaults:
                moved.append(name + ".__code__")
                if restore:
                    f.__code__, f.__defaults__, f.__kwdefaults__ = code, defaults, kwdefaults
        return moved

    def handle(stream, ident, parent):  # noqa: ANN001, ANN202 - ipykernel's handler API
        content = parent.get("content", {})
        try:
            if content.get("nonce") != nonce:
                raise PermissionError("not the grader's request")
            if kernel.shell_handlers.get("xltg_request") is not handle:
                # the notebook put its own handler in front of this one
                out = {"status": "ok", "value": {"tampered": True}}
                if content.get("kind") != "check":
                    out = {"status": "error", "ename": "GraderError", "evalue": "tampered"}
                    out["traceback"] = ["GraderError: the grader's handler was replaced"]
            elif content.get("kind") == "call":
                fn = user_ns.get(content["name"])
                out = run_call(fn, content, to_wire, from_wire, describe)
            elif content.get("kind") == "check":
                value = run_check(content["fns"], content["allowed"], nonce, user_ns)
                out = {"status": "ok", "value": value}
            else:
                # the hidden tests see the exercise's functions and the real builtins only,
                # and the libraries as they were before any notebook code ran
                pristine(True)
                glb = dict(real, __name__="__xltg_hidden__")
                for name in content["names"]:
                    if name in user_ns:
                        glb[name] = user_ns[name]
                failure = None
                try:
                    make(loads(content["code"].encode("latin-1")), glb)()
                except BaseException as e:  # noqa: BLE001 - a timeout and exits too
                    failure = describe(e)
                out = failure or {"status": "ok"}
                moved = pristine(False)  # the guard's check after the cell decides on them
                if moved:
                    out["replaced"] = moved[:20]
        except BaseException as e:  # noqa: BLE001 - KeyboardInterrupt (a timeout) and exits too
            out = describe(e)
        try:
            sign(parent["header"]["msg_id"], out)
        except BaseException as e:  # noqa: BLE001 - a value the notebook made that will not sign
            out = {"status": "error", "ename": "GraderError", "evalue": "unsigned reply"}
            out["traceback"] = [f"GraderError: {type(e).__name__}"]
        # the request itself (the hidden tests' code) does not travel with the reply
        send(stream, "xltg_reply", out, {"header": parent["header"]}, ident)

    kernel.shell_handlers["xltg_request"] = handle
    digest = take_snapshot(mods, nonce)
    holder = sys.modules["_xltg_" + nonce]
    saved_state.append((holder.snap, holder.codes))
    return digest, key.hex()


# Compiled once, when the worker imports this module: a checkout updated while a batch is
# graded must not send the kernel code that no longer matches these functions.
_CODE = {
    f.__name__: marshal.dumps(
        next(
            c
            for c in pysource.compile_code(inspect.getsource(f), "<grader>").co_consts
            if getattr(c, "co_name", None) == f.__name__
        )
    )
    for f in (
        _xltg_snapshot,
        _xltg_check,
        _xltg_install,
        _xltg_canon,
        verdict._xltv_codec,
        verdict._xltv_call,
    )
}


def install_expression(nonce: str, mods: list[str]) -> str:
    """Return the expression that installs the guard (value: the snapshot's digest).

    Evaluated as a user expression before any notebook code runs, so the names it uses are
    still the real ones; everything after goes through the handler it registers.
    """
    blob = base64.b64encode(_CODE["_xltg_install"]).decode("ascii")
    args = (
        list(mods),
        nonce,
        *(
            _CODE[f]
            for f in ("_xltg_snapshot", "_xltg_check", "_xltg_canon", "_xltv_codec", "_xltv_call")
        ),
    )
    return (
        '__import__("types").FunctionType(__import__("marshal").loads('
        f'__import__("base64").b64decode({blob!r})), {{"__builtins__": __import__("builtins")}})'
        f"(*{args!r})"
    )


def check_request(nonce: str, fns: list[str], allowed: list[str]) -> dict:
    """Return the content of the request that runs the check (reply value: its answer)."""
    return {"nonce": nonce, "kind": "check", "fns": list(fns), "allowed": list(allowed)}


def hidden_tests_request(nonce: str, source: str, imports: list[str], names: list[str]) -> dict:
    """Return the content of the request that runs hidden tests in the kernel, as one call.

    Only for a tests cell marked :data:`autograder.verdict.KERNEL_MARK`; every other cell's
    hidden part runs in the worker (:func:`autograder.verdict.run_hidden_tests`). The tests
    run in a function of their own (:func:`autograder.verdict.hidden_tests_code`), with fresh
    globals holding only ``names`` (the exercise's functions, taken from the notebook) and the
    real builtins. The kernel receives bytecode, not the tests' text.

    Raises:
        SyntaxError: when ``source`` does not parse (the lesson's own bug).
    """
    fcode = verdict.hidden_tests_code(source, imports)
    return {
        "nonce": nonce,
        "kind": "hidden",
        "code": marshal.dumps(fcode).decode("latin-1"),
        "names": list(names),
    }


def call_request(nonce: str, name: str, payload: dict, watch: bool = True) -> dict:
    """Return the content of the request that calls the notebook's ``name`` on ``payload``.

    ``payload`` is :func:`autograder.verdict.call_payload`'s; the reply carries the encoded
    return value (or the error), and the arguments the function changed in place. ``watch``:
    record the course functions the call enters (only worth its cost where the hidden tests
    import a reference implementation from the course).
    """
    return {"nonce": nonce, "kind": "call", "name": name, "watch": watch, **payload}


def global_reads(code: object) -> set[str]:
    """Return the global names ``code`` and the functions inside it read (builtins included)."""
    import dis

    found: set[str] = set()
    todo = [code]
    while todo:
        c = todo.pop()
        found |= {
            i.argval for i in dis.get_instructions(c) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")
        }
        todo += [k for k in c.co_consts if hasattr(k, "co_code")]
    return found


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


def verify_reply(key: str | None, msg_id: str, content: dict | None) -> dict | None:
    """Return ``content`` when its ``mac`` is the handler's signature, else a forged marker.

    Args:
        key: the signing key the install expression returned (hex); None: not checked.
        msg_id: the request's message id.
        content: the reply's content (None: no reply came).

    Returns:
        ``content``; None when no reply came; ``{"status": "forged"}`` when the signature is
        missing or wrong (the notebook altered the reply on its way out).
    """
    if content is None or key is None:
        return content
    mac = content.get("mac")
    good = reply_mac(bytes.fromhex(key), msg_id, content)
    if not isinstance(mac, str) or not hmac.compare_digest(mac, good):
        return {"status": "forged"}
    return content


def read_check(reply: dict | None) -> dict | None:
    """Return the check's answer from its request's reply content (None: no usable answer)."""
    if not reply or reply.get("status") != "ok" or not isinstance(reply.get("value"), dict):
        return None
    return reply["value"]
