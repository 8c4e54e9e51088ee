"""Decide the hidden tests outside the student's kernel: the kernel only runs their functions.

A tests cell's hidden part runs in the grader's worker, never in the kernel. Its globals are
the real builtins, the lesson's imports (run here) and, for each function the exercise
defines, a stub: calling it sends the arguments to the kernel as plain data, the kernel's
handler (:mod:`autograder.kernel_guard`) calls the student's function there and sends its
return value back the same way, and the tests go on here with a fresh copy. No test's code,
constant, expected value or frame ever exists in the student's process, and nothing the
student's code does to numpy, torch, the course or the kernel can change how the tests
compare. What crosses is data only (:func:`_xltv_codec`): numbers, strings, bytes, lists,
tuples, dicts, sets, ranges, numpy arrays and scalars of numeric or text dtypes, numpy object
arrays of such data, numpy random generators (their state), pandas series and data frames
(labels and values), torch tensors and dtypes, and the course's own dataclasses
(``TopicSplit``); a returned generator, ``map``, ``zip`` or dict view travels as the items it
gives. The grader decodes a reply without running any of the student's code (no pickle, no
classes of theirs).

A tests cell whose hidden part must hand the student's code something that is not data (a
callable, an ``nn.Module``, a tensor whose gradient the tests read back) says so with
:data:`KERNEL_MARK` on a line of its hidden part; those cells run in the kernel as before,
with the guard's defences and limits (README, grading).
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import random
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable
from typing import Any

from autograder import pysource

KERNEL_MARK = "# verdict: in the kernel"
"""A line of a hidden part that starts with this keeps that cell's verdict in the kernel."""

MAX_PAYLOAD_CHARS = 200_000_000
"""Most characters of encoded arrays one call's arguments or return value may take."""

NOT_DATA = (
    "the grader can check only numbers, strings, bytes, lists, tuples, dicts, sets, numpy "
    "arrays and scalars, pandas series and data frames, and torch tensors"
)


HIDDEN_FILENAME = "<hidden tests>"
"""File name of the hidden tests' code: no source is registered under it, here or there."""


def hidden_tests_code(source: str, imports: list[str]) -> types.CodeType:
    """Compile a tests cell's hidden part into the code of a function of its own.

    ``imports`` (the lesson's import statements up to the tests cell) run first inside it.
    The names the tests bind (an expected value, a reference implementation) are then locals,
    never globals anyone else shares.

    Raises:
        SyntaxError: when ``source`` does not parse (the lesson's own bug).
    """
    body = [*pysource.parse("\n".join(imports)).body, *pysource.parse(source).body]
    fn = ast.FunctionDef(
        name="_xltg_hidden_tests",
        args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
        body=body or [ast.Pass()],
        decorator_list=[],
        returns=None,
    )
    module = ast.fix_missing_locations(ast.Module(body=[fn], type_ignores=[]))
    code = pysource.compile_code(module, HIDDEN_FILENAME)
    return next(c for c in code.co_consts if getattr(c, "co_name", None) == fn.name)


def reference_functions(hidden: str) -> set[str]:
    """Return the course functions a hidden part imports by name (``module.name``).

    ``from xlt_course.shared_space import distance_ratio as _reference`` gives
    ``xlt_course.shared_space.distance_ratio``: the exercise's own implementation, which no
    answer may call.
    """
    found: set[str] = set()
    try:
        tree = pysource.parse(hidden)
    except (SyntaxError, pysource.Unparseable):
        return found
    for node in ast.walk(tree):
        module = getattr(node, "module", None) or ""
        if isinstance(node, ast.ImportFrom) and module.split(".")[0] == "xlt_course":
            found.update(f"{module}.{a.name}" for a in node.names if a.name != "checks")
    return found


def kept_in_kernel(hidden: str) -> bool:
    """Return whether a hidden part asks to be run in the kernel (:data:`KERNEL_MARK`)."""
    return any(line.strip().startswith(KERNEL_MARK) for line in hidden.splitlines())


def _xltv_codec(configs: bool) -> tuple[Any, Any]:
    """Return ``(encode, decode)``: plain data to and from a JSON- and signature-safe form.

    Shipped to the kernel as bytecode (so it imports what it needs inside). ``encode(value,
    refs)`` gives nested lists, dicts with string keys, ints, bools, strings and None only
    (floats as exact hex strings: the reply's signature covers no float); a value that is not
    data becomes ``{"t": "opaque", "type": name}``, and one of the objects in ``refs`` (by
    identity) becomes ``{"t": "ref", "i": index}``. ``decode(payload, refs)`` builds fresh
    objects and raises ``ValueError`` on anything malformed. With ``configs``, a transformers
    config travels too (the tests' arguments to the kernel, never a reply to the grader).
    """
    import base64
    import sys
    import time
    from collections import Counter
    from collections.abc import Iterator
    from decimal import Decimal
    from fractions import Fraction

    limit = [0, 0]  # bytes of array data, items
    VIEWS = {"dict_keys": "keys", "odict_keys": "keys", "dict_values": "values"}
    VIEWS |= {"odict_values": "values", "dict_items": "items", "odict_items": "items"}

    def b64(data: bytes) -> str:
        limit[0] += len(data)
        if limit[0] > 150_000_000:
            raise ValueError("more than 150 MB of array data in one value")
        return base64.b64encode(data).decode("ascii")

    def encode(value: object, refs: list | None = None, depth: int = 0) -> object:
        if depth == 0:
            limit[0] = limit[1] = 0
        if depth > 60:
            raise ValueError("nested more than 60 levels deep")
        limit[1] += 1
        if limit[1] > 10_000_000:
            raise ValueError("more than 10 million items in one value")
        for i, r in enumerate(refs or ()):
            if value is r and type(r) not in (bool, int, float, str, type(None)):
                return {"t": "ref", "i": i}
        kind = type(value)
        if value is None or kind is bool or kind is str or kind is int:
            return value
        # a subclass of a built-in type travels as that type (a namedtuple as a tuple, an
        # OrderedDict as a dict): its own methods stay in the kernel
        for base, plain in ((str, str.__str__), (int, int.__int__), (float, float.__float__)):
            if kind is not base and isinstance(value, base) and kind is not bool:
                return encode(plain(value), None, depth + 1)
        if kind is Counter:
            return {"t": "counter", "v": encode(dict(value), None, depth + 1)}
        for base in (list, tuple, dict, set, frozenset):
            if kind is not base and isinstance(value, base):
                items = dict.items(value) if base is dict else base.__iter__(value)
                return encode(dict(items) if base is dict else base(items), None, depth + 1)
        if kind is float:
            return {"t": "f", "v": float.hex(value)}
        if kind is complex:
            return {"t": "c", "v": [float.hex(value.real), float.hex(value.imag)]}
        if kind is bytes:
            return {"t": "bytes", "v": b64(value)}
        if kind in (list, tuple, set, frozenset):
            items = sorted(value, key=repr) if kind in (set, frozenset) else value
            return {"t": kind.__name__, "v": [encode(x, None, depth + 1) for x in items]}
        if kind is dict:
            return {
                "t": "dict",
                "k": [encode(k, None, depth + 1) for k in value],
                "v": [encode(v, None, depth + 1) for v in value.values()],
            }
        if kind is range:
            return {"t": "range", "v": [value.start, value.stop, value.step]}
        if isinstance(value, Fraction):
            # an exact number (the tests take any real number: float(x), x - y)
            exact = Fraction.as_integer_ratio(value)
            return {"t": "frac", "v": [int.__int__(exact[0]), int.__int__(exact[1])]}
        if isinstance(value, Decimal):
            return {"t": "dec", "v": Decimal.__str__(value)}
        native = getattr(kind, "__module__", None) in ("builtins", "itertools", "collections")
        if native and kind.__name__ in VIEWS:
            items = [encode(x, None, depth + 1) for x in value]
            return {"t": "view", "k": VIEWS[kind.__name__], "v": items}
        if native and kind.__name__ == "deque":
            return {"t": "list", "v": [encode(x, None, depth + 1) for x in value]}
        if native and isinstance(value, Iterator):
            # a generator, map or zip is read once here, as the tests would read it
            return {"t": "iter", "v": [encode(x, None, depth + 1) for x in value]}
        fields = getattr(kind, "__dataclass_fields__", None)
        module = getattr(kind, "__module__", "")
        if fields is not None and type(module) is str and module.split(".")[0] == "xlt_course":
            # one of the course's own records (a TopicSplit): its fields travel
            names = [k for k, f in fields.items() if getattr(f, "init", False)]
            return {
                "t": "dc",
                "m": module,
                "c": kind.__qualname__,
                "f": names,
                "v": [encode(getattr(value, k), None, depth + 1) for k in names],
            }
        np = sys.modules.get("numpy")
        torch = sys.modules.get("torch")
        if np is not None and isinstance(value, np.ndarray | np.generic):
            arr = np.asarray(value)
            if arr.dtype.kind in "biufcUS" and arr.dtype.fields is None and not arr.dtype.hasobject:
                data = np.ascontiguousarray(arr).tobytes()
                tag = "nd" if isinstance(value, np.ndarray) else "np"
                return {"t": tag, "d": arr.dtype.str, "s": list(arr.shape), "v": b64(data)}
            if (
                arr.dtype.kind in "OT"
                and arr.dtype.fields is None
                and isinstance(value, np.ndarray)
            ):
                # an array of Python objects or of numpy's variable-width strings: its items
                # travel as data, and it comes back an object array
                items = [encode(x, None, depth + 1) for x in arr.reshape(-1).tolist()]
                return {"t": "ndo", "s": list(arr.shape), "v": items}
        plain_dtype = np is not None and isinstance(value, np.dtype) and value.fields is None
        if plain_dtype and value.kind in "biufcUS":
            return {"t": "npdtype", "v": value.str}
        if np is not None and isinstance(value, type) and issubclass(value, np.generic):
            dt = np.dtype(value)
            if dt.kind in "biufcUS":
                return {"t": "nptype", "v": dt.str}
        if np is not None and type(value) is np.random.Generator:
            # its state and its seed sequence travel (rng.spawn() derives children from the
            # latter), and come back advanced by the draws and the spawns made with it
            bits = value.bit_generator
            seq = getattr(bits, "seed_seq", None)
            out = {"t": "rng", "v": encode(bits.state, None, depth + 1), "ss": None}
            if type(seq) is np.random.SeedSequence:
                entropy = seq.entropy
                entropy = entropy if type(entropy) is int else [int(x) for x in entropy]
                spec = [entropy, [int(x) for x in seq.spawn_key], seq.pool_size]
                out["ss"] = encode([*spec, seq.n_children_spawned], None, depth + 1)
            return out
        if torch is not None and isinstance(value, torch.dtype):
            return {"t": "tdtype", "v": str(value).removeprefix("torch.")}
        if torch is not None and isinstance(value, torch.Tensor):
            t = torch.Tensor.as_subclass(value.detach(), torch.Tensor)
            if t.layout == torch.strided and not t.is_quantized and t.device.type != "meta":
                t = t.cpu().contiguous()
                name = str(t.dtype).removeprefix("torch.")
                if t.dtype == torch.bfloat16:
                    t = t.view(torch.int16)
                arr = t.numpy()
                if arr.dtype.kind in "biufc":
                    out = {"t": "tensor", "d": name, "s": list(value.shape)}
                    out["v"] = b64(arr.tobytes())
                    out["grad"] = bool(value.requires_grad)
                    return out
        pd = sys.modules.get("pandas")
        if pd is not None and value is pd.NA:
            return {"t": "pdna"}
        if pd is not None and isinstance(value, pd.Index):
            items = encode(value.tolist(), None, depth + 1)
            return {"t": "pdindex", "v": items, "n": encode(value.name, None, depth + 1)}
        if pd is not None and isinstance(value, pd.api.extensions.ExtensionArray):
            # pandas' own arrays (strings backed by Arrow, categoricals, nullable integers)
            items = [encode(x, None, depth + 1) for x in value.tolist()]
            return {"t": "ndo", "s": [len(items)], "v": items}
        if pd is not None and isinstance(value, pd.Series | pd.DataFrame):
            # a table of data travels as its labels and its values, column by column
            cols = [value] if isinstance(value, pd.Series) else [value[c] for c in value.columns]
            return {
                "t": "series" if isinstance(value, pd.Series) else "frame",
                "i": encode(list(value.index), None, depth + 1),
                "n": encode(value.name if isinstance(value, pd.Series) else None, None, depth + 1),
                "c": encode([] if isinstance(value, pd.Series) else list(value.columns), None, 1),
                "v": [encode(c.tolist(), None, depth + 1) for c in cols],
            }
        if configs:
            transformers = sys.modules.get("transformers")
            if transformers is not None and isinstance(value, transformers.PretrainedConfig):
                cls = type(value).__name__
                if getattr(transformers, cls, None) is type(value):
                    return {"t": "hfconfig", "cls": cls, "v": encode(value.to_dict(), None, 1)}
        try:
            name = str(type.__getattribute__(kind, "__qualname__"))[:200]
        except Exception:  # noqa: BLE001 - the student's class may say anything
            name = "object"
        return {"t": "opaque", "type": name}

    def need(cond: object, what: str) -> None:
        if not cond:
            raise ValueError(f"malformed value from the kernel: {what}")

    def unb64(text: object, size: int) -> bytes:
        need(type(text) is str, "array data is not text")
        data = base64.b64decode(text, validate=True)
        need(len(data) == size, "array data of the wrong length")
        return data

    def shape_of(s: object) -> tuple:
        need(type(s) is list and len(s) <= 32, "bad shape")
        need(all(type(n) is int and 0 <= n < 2**40 for n in s), "bad shape")
        return tuple(s)

    def np_dtype(text: object) -> object:
        import numpy as np

        need(type(text) is str and len(text) <= 12, "bad dtype")
        dt = np.dtype(text)
        need(dt.kind in "biufcUS" and dt.fields is None and not dt.hasobject, "bad dtype")
        need(dt.subdtype is None, "bad dtype")
        return dt

    def tdtype(text: object) -> object:
        import torch

        names = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16")
        names += ("uint16", "uint32", "uint64")
        names += ("float32", "float64", "complex64", "complex128")
        need(text in names, "bad tensor dtype")
        dt = getattr(torch, text, None)
        need(isinstance(dt, torch.dtype), "bad tensor dtype")
        return dt

    budget = [0, None]  # items decoded so far, the deadline (time.monotonic) if any

    def hashed(items: list) -> list:
        # a set or dict of values that share one hash builds in quadratic time
        if len(items) > 1000 and len(set(map(hash, items))) < len(items) // 2:
            raise ValueError("malformed value from the kernel: too many equal hashes")
        return items

    def decode(p: object, refs: list | None = None, depth: int = 0) -> object:
        need(depth <= 60, "nested too deep")
        if depth == 0:
            budget[0] = 0
        budget[0] += 1
        need(budget[0] <= 10_000_000, "more than 10 million items")
        if budget[0] % 4096 == 0 and budget[1] is not None and time.monotonic() > budget[1]:
            raise TimeoutError("reading the value took past the cell's time limit")
        if p is None or type(p) in (bool, str, int):
            return p
        need(type(p) is dict and type(p.get("t")) is str, "not a tagged value")
        t, v = p["t"], p.get("v")
        if t == "f":
            need(type(v) is str, "bad float")
            return float.fromhex(v)
        if t == "c":
            need(type(v) is list and len(v) == 2 and all(type(x) is str for x in v), "bad complex")
            return complex(float.fromhex(v[0]), float.fromhex(v[1]))
        if t == "bytes":
            need(type(v) is str, "bad bytes")
            return base64.b64decode(v, validate=True)
        if t in ("list", "tuple", "set", "frozenset"):
            need(type(v) is list, "bad sequence")
            items = [decode(x, None, depth + 1) for x in v]
            if t in ("set", "frozenset"):
                items = hashed(items)
            return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[t](items)
        if t == "dict":
            k = p.get("k")
            need(type(k) is list and type(v) is list and len(k) == len(v), "bad dict")
            keys = hashed([decode(a, None, depth + 1) for a in k])
            return dict(zip(keys, [decode(b, None, depth + 1) for b in v], strict=True))
        if t == "iter":
            need(type(v) is list, "bad iterator")
            return iter([decode(x, None, depth + 1) for x in v])
        if t == "dc":
            m, c, names = p.get("m"), p.get("c"), p.get("f")
            need(
                type(m) is str and (m == "xlt_course" or m.startswith("xlt_course.")), "bad record"
            )
            need(type(c) is str and c.isidentifier() and m in sys.modules, "bad record")
            cls = getattr(sys.modules[m], c, None)
            need(isinstance(cls, type) and hasattr(cls, "__dataclass_fields__"), "bad record")
            need(type(names) is list and type(v) is list and len(names) == len(v), "bad record")
            init = [k for k, f in cls.__dataclass_fields__.items() if getattr(f, "init", False)]
            need(names == init, "bad record")
            return cls(**{k: decode(x, None, depth + 1) for k, x in zip(names, v, strict=True)})
        if t == "ref":
            i = p.get("i")
            need(refs is not None and type(i) is int and 0 <= i < len(refs), "bad reference")
            return refs[i]
        if t in ("nd", "np"):
            import numpy as np

            dt, shape = np_dtype(p.get("d")), shape_of(p.get("s"))
            need(t == "nd" or shape == (), "a scalar with a shape")
            n = 1
            for x in shape:
                n *= x
            arr = np.frombuffer(unb64(v, n * dt.itemsize), dtype=dt).reshape(shape).copy()
            return arr if t == "nd" else arr[()]
        if t == "ndo":
            import numpy as np

            shape = shape_of(p.get("s"))
            n = 1
            for x in shape:
                n *= x
            need(type(v) is list and len(v) == n, "bad object array")
            arr = np.empty(shape, dtype=object)
            flat = arr.reshape(-1)
            for i, x in enumerate(v):
                flat[i] = decode(x, None, depth + 1)
            return arr
        if t == "range":
            need(type(v) is list and len(v) == 3 and all(type(x) is int for x in v), "bad range")
            need(v[2] != 0, "bad range")
            # counted as its items: the tests may walk it
            try:
                size = len(range(*v))
            except OverflowError:
                size = 10**19
            budget[0] += size
            need(budget[0] <= 10_000_000, "more than 10 million items")
            return range(*v)
        if t == "frac":
            need(type(v) is list and len(v) == 2 and all(type(x) is int for x in v), "bad number")
            need(v[1] > 0 and max(abs(v[0]), v[1]).bit_length() <= 4096, "bad number")
            return Fraction(v[0], v[1])
        if t == "dec":
            need(type(v) is str and len(v) <= 1000, "bad number")
            try:
                number = Decimal(v)
            except ArithmeticError:
                number = None
            need(number is not None, "bad number")
            # int() or str() of 1e10000000 takes minutes: the digits and the exponent stay
            # within what Python converts quickly
            exponent = number.as_tuple().exponent
            need(type(exponent) is str or abs(exponent) <= 1000, "bad number")
            return number
        if t == "view":
            need(type(v) is list and p.get("k") in ("keys", "values", "items"), "bad view")
            items = [decode(x, None, depth + 1) for x in v]
            if p["k"] == "keys":
                return dict.fromkeys(hashed(items)).keys()
            if p["k"] == "values":
                return dict(enumerate(items)).values()
            need(all(type(x) is tuple and len(x) == 2 for x in items), "bad view")
            keys = hashed([x[0] for x in items])
            return dict(zip(keys, [x[1] for x in items], strict=True)).items()
        if t == "counter":
            inner = decode(v, None, depth + 1)
            need(type(inner) is dict, "bad counter")
            return Counter(inner)
        if t == "pdna":
            import pandas as pd

            return pd.NA
        if t == "pdindex":
            import pandas as pd

            items = decode(v, None, depth + 1)
            need(type(items) is list, "bad index")
            return pd.Index(items, name=decode(p.get("n"), None, depth + 1))
        if t == "rng":
            import numpy as np

            state = decode(v, None, depth + 1)
            need(type(state) is dict, "bad generator state")
            name = state.get("bit_generator")
            need(name in ("PCG64", "PCG64DXSM", "MT19937"), "bad generator")
            if name == "MT19937":
                inner = state.get("state")
                need(type(inner) is dict and type(inner.get("pos")) is int, "bad generator state")
                need(0 <= inner["pos"] <= 624, "bad generator state")
                key = inner.get("key")
                need(isinstance(key, np.ndarray) and key.shape == (624,), "bad generator state")
            seq = decode(p.get("ss"), None, depth + 1)
            if seq is None:
                bits = getattr(np.random, name)()
            else:
                need(type(seq) is list and len(seq) == 4, "bad seed sequence")
                entropy, key, pool, n = seq
                need(type(entropy) is int or type(entropy) is list, "bad seed sequence")
                need(
                    type(key) is list and type(pool) is int and type(n) is int, "bad seed sequence"
                )
                need(0 < pool <= 64 and 0 <= n < 2**32 and len(key) <= 64, "bad seed sequence")
                ss = np.random.SeedSequence(
                    entropy, spawn_key=key, pool_size=pool, n_children_spawned=n
                )
                bits = getattr(np.random, name)(ss)
            bits.state = state
            return np.random.Generator(bits)
        if t in ("series", "frame"):
            import pandas as pd

            index, name = decode(p.get("i"), None, depth + 1), decode(p.get("n"), None, depth + 1)
            columns = decode(p.get("c"), None, depth + 1)
            need(type(v) is list and type(index) is list and type(columns) is list, "bad table")
            cols = [decode(c, None, depth + 1) for c in v]
            need(all(type(c) is list and len(c) == len(index) for c in cols), "bad table")
            if t == "series":
                need(len(cols) == 1, "bad table")
                return pd.Series(cols[0], index=index, name=name)
            need(len(cols) == len(columns), "bad table")
            return pd.DataFrame(
                dict(zip(range(len(cols)), cols, strict=True)), index=index
            ).set_axis(columns, axis=1)
        if t == "npdtype":
            return np_dtype(v)
        if t == "nptype":
            return np_dtype(v).type
        if t == "tdtype":
            return tdtype(v)
        if t == "tensor":
            import numpy as np
            import torch

            dt, shape = tdtype(p.get("d")), shape_of(p.get("s"))
            need(type(p.get("grad")) is bool, "bad tensor")
            wire = torch.int16 if dt == torch.bfloat16 else dt
            npdt = torch.empty(0, dtype=wire).numpy().dtype
            n = 1
            for x in shape:
                n *= x
            arr = np.frombuffer(unb64(v, n * npdt.itemsize), dtype=npdt).reshape(shape).copy()
            out = torch.from_numpy(arr)
            if dt == torch.bfloat16:
                out = out.view(torch.bfloat16)
            if p["grad"] and out.is_floating_point():
                out.requires_grad_(True)
            return out
        if t == "hfconfig" and configs:
            import transformers

            cls = p.get("cls")
            need(type(cls) is str and cls.endswith("Config"), "bad config")
            kind = getattr(transformers, cls, None)
            need(isinstance(kind, type) and issubclass(kind, transformers.PretrainedConfig), "")
            return kind.from_dict(decode(v, None, depth + 1))
        if t == "opaque":
            return Opaque(str(p.get("type", "object"))[:200])
        raise ValueError(f"malformed value from the kernel: unknown tag {t[:40]!r}")

    class Opaque:
        """A value that could not travel: what it was, for the message."""

        def __init__(self, type_name: str) -> None:
            self.type_name = type_name

    decode.budget = budget
    return encode, decode


def _xltv_call(fn: Any, content: dict, to_wire: Any, from_wire: Any, describe: Any) -> dict:
    """Call the notebook's ``fn`` on a call request's arguments; return the reply (kernel side).

    Shipped to the kernel as bytecode with the kernel's codec (``to_wire`` without configs,
    ``from_wire`` with) and its ``describe`` of an exception. The reply holds the encoded
    return value (an argument returned travels as a reference to it) or the error with the
    names of its built-in classes, ``after``: the arguments the call changed in place, and
    ``course``: the functions of ``xlt_course`` the call entered from outside the course
    (watched with ``sys.setprofile`` while it runs).
    """
    import sys

    values = from_wire(content["values"])
    n, keys = content["n_args"], content["keys"]
    # the course's functions the call enters from outside the course, however it reached
    # them (a name built at run time, pickle): what no reading of the notebook can see
    course = sys.modules.get("xlt_course")
    root = (getattr(course, "__file__", None) or "").rpartition("/")[0] + "/"
    entered: list = []

    def watch(frame: Any, event: str, arg: Any) -> None:
        code = frame.f_code
        if event != "call" or root == "/" or not code.co_filename.startswith(root):
            return
        if code.co_name == "<module>":  # a course module imported, not a function called
            return
        back = frame.f_back
        if back is not None and back.f_code.co_filename.startswith(root):
            return
        name = str(frame.f_globals.get("__name__", "?")) + "." + code.co_qualname
        if name not in entered and len(entered) < 500:
            entered.append(name)

    threading = sys.modules.get("threading")
    before = sys.getprofile()
    before_threads = threading.getprofile() if threading is not None else None
    # watched while the function runs, in threads it starts, and while its value is
    # encoded (a class of the answer's may run code then)
    # (Python-level code runs about 4x slower watched: only where a reference is to be seen)
    watching = content.get("watch", True)
    if watching:
        sys.setprofile(watch)
    if watching and threading is not None:
        threading.setprofile(watch)
    try:
        try:
            if fn is None:
                raise NameError(f"name {content['name']!r} is not defined")
            result = fn(*values[:n], **dict(zip(keys, values[n:], strict=True)))
        except BaseException as e:  # noqa: BLE001 - an interrupt (a timeout) and exits too
            out = describe(e)
            try:
                out["bases"] = [c.__name__ for c in type(e).__mro__ if c.__module__ == "builtins"]
            except BaseException:  # noqa: BLE001 - the notebook's class may raise anything
                out["bases"] = []
        else:
            try:
                out = {"status": "ok", "value": to_wire(result, values)}
            except BaseException as e:  # noqa: BLE001 - a value too large, too deep
                out = describe(e)
                out["bases"] = []
    finally:
        sys.setprofile(before)
        if threading is not None:
            threading.setprofile(before_threads)
    after = []
    for i, v in enumerate(values):
        kind = type(v)
        mutable = kind in (list, dict, set) or hasattr(v, "__array_interface__")
        mutable = mutable or hasattr(kind, "__dataclass_fields__")
        if mutable or kind.__name__ in ("Tensor", "Parameter", "Generator"):
            try:
                now = to_wire(v)
            except BaseException:  # noqa: BLE001, S112
                continue
            if now != content["values"]["v"][i]:
                after.append([i, now])
    if after:
        out["after"] = after
    if entered:
        out["course"] = entered
    return out


encode = _xltv_codec(configs=True)[0]  # the tests' arguments may hold a transformers config
_, decode_reply = _xltv_codec(configs=False)


class Stop(BaseException):
    """Ends the hidden tests from a stub; not an ``Exception``, so no test can catch it."""

    def __init__(self, output: dict | None = None, cause: BaseException | None = None) -> None:
        super().__init__(output)
        self.output, self.cause = output, cause


def _first_opaque(value: object, depth: int = 0) -> str | None:
    """Return the type named by the first value of an encoded payload that is not data."""
    if type(value) is not dict or depth > 60:
        return None
    tag, items = value.get("t"), value.get("v")
    if tag == "opaque":
        return str(value.get("type"))[:200]
    if tag == "dict" and type(value.get("k")) is list and type(items) is list:
        items = [*value["k"], *items]
    elif tag in ("series", "frame", "pdindex", "counter"):
        # labels, name and columns too; a table's values are a list of columns
        values = items if type(items) is list else [items]
        items = [value.get("i"), value.get("n"), value.get("c"), *values]
    elif tag not in ("list", "tuple", "set", "frozenset", "iter", "dc", "ndo", "view"):
        return None
    for x in items if type(items) is list else ():
        found = _first_opaque(x, depth + 1)
        if found:
            return found
    return None


def remote_exception(reply: dict) -> BaseException:
    """Return the exception to raise in the tests for the student's function's error reply.

    The nearest built-in class of the student's exception (``bases``, nearest first) is
    raised with its message, so ``except ValueError`` in the tests catches a subclass of
    ``ValueError`` the student defined, as it would in the kernel. A student's exception that
    is not an ``Exception`` (``SystemExit``, an interrupt) ends the tests.
    """
    ename, evalue = str(reply.get("ename", "Exception")), str(reply.get("evalue", ""))
    remote_tb = [str(x) for x in reply.get("traceback", [])][:200]
    for base in reply.get("bases", []):
        cls = getattr(builtins, str(base), None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                e = cls(evalue)
            except Exception:  # noqa: BLE001, S112 - a class that takes other arguments
                continue
            e.remote_traceback = remote_tb
            e.remote_ename = ename
            return e
    out = {"status": "error", "ename": ename, "evalue": evalue, "traceback": remote_tb}
    return Stop(out)


def write_back(original: object, changed: object) -> None:
    """Copy what the student's function did to an argument in place into the tests' own.

    Only what the tests could observe changing: arrays and tensors of the same shape, lists,
    dicts, sets, the course's dataclasses (field by field) and a numpy ``Generator``'s state
    (advanced by the draws made with it).
    """
    np = sys.modules.get("numpy")
    torch = sys.modules.get("torch")
    if np is not None and isinstance(original, np.ndarray) and isinstance(changed, np.ndarray):
        if original.shape == changed.shape and original.flags.writeable:
            with contextlib.suppress(TypeError, ValueError):
                np.copyto(original, changed, casting="unsafe")
    elif torch is not None and isinstance(original, torch.Tensor):
        if isinstance(changed, torch.Tensor) and original.shape == changed.shape:
            with torch.no_grad(), contextlib.suppress(RuntimeError):
                original.copy_(changed)
    elif np is not None and type(original) is np.random.Generator:
        if type(changed) is np.random.Generator:
            mine = getattr(original.bit_generator, "seed_seq", None)
            theirs = getattr(changed.bit_generator, "seed_seq", None)
            spawned = getattr(theirs, "n_children_spawned", 0) - getattr(
                mine, "n_children_spawned", 0
            )
            if type(mine) is np.random.SeedSequence and 0 < spawned <= 10_000:
                mine.spawn(spawned)  # its count of children is read-only: spawn as many
            original.bit_generator.state = changed.bit_generator.state
    elif hasattr(type(original), "__dataclass_fields__") and type(changed) is type(original):
        for k in type(original).__dataclass_fields__:
            mine, theirs = getattr(original, k, None), getattr(changed, k, None)
            if type(mine) in (list, dict, set) or hasattr(mine, "shape"):
                write_back(mine, theirs)
            else:
                setattr(original, k, theirs)
    elif type(original) is list and isinstance(changed, list):
        original[:] = changed
    elif type(original) in (dict, set) and type(changed) is type(original):
        original.clear()
        original.update(changed)


def call_payload(args: tuple, kwargs: dict) -> tuple[list, dict]:
    """Return the encoded arguments of a call (the tests' side).

    Raises:
        TypeError: an argument is not data (the lesson must mark its cell
            :data:`KERNEL_MARK`): a grader error, never the student's fault.
    """
    values = [*args, *kwargs.values()]
    payload = encode(values)
    bad = _first_opaque(payload)
    if bad is not None:
        raise TypeError(
            f"the hidden tests pass a {bad} to the student's function, which cannot be sent "
            f"to the kernel: mark the tests cell with {KERNEL_MARK!r}"
        )
    return values, {"values": payload, "n_args": len(args), "keys": list(kwargs)}


def read_return(
    name: str, reply: dict, values: list, deadline: float | None = None, write: bool = True
) -> object:
    """Return the student's function's value from a call's reply (the tests' side).

    Arguments the function changed in place are changed the same way in the tests' copies
    first (``write``); without ``write`` the tests' copies stay as they were, and a changed
    argument the function returns comes back as its changed copy. A value that is not data
    raises ``TypeError`` naming its type; one that takes past ``deadline``
    (``time.monotonic``) to read raises ``TimeoutError``.
    """
    decode_reply.budget[1] = deadline
    values = list(values)
    for item in reply.get("after", []) or []:
        ok = type(item) is list and len(item) == 2 and type(item[0]) is int
        if ok and 0 <= item[0] < len(values):
            if write:
                write_back(values[item[0]], decode_reply(item[1]))
            else:
                values[item[0]] = decode_reply(item[1])
    if reply.get("status") != "ok":
        raise remote_exception(reply)
    bad = _first_opaque(reply.get("value"))
    if bad is not None:
        raise TypeError(f"{name} returned a {bad}: {NOT_DATA}")
    return decode_reply(reply.get("value"), values)


def _reseed() -> None:
    # tests that draw from a library's global generator get the same draws for every student
    random.seed(0)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(0)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(0)


class _Alarm:
    """End the hidden tests' own code with :class:`Stop` once ``deadline`` has passed.

    A value small on the wire can still be slow to test (a loop over it); without this the
    cell ran on until the whole notebook's limit, and the notebook got no score at all. A
    ``SIGALRM`` timer, so only in the main thread (elsewhere nothing changes). It is paused
    while a stub waits on the kernel: ``send`` keeps its own deadline there, and an
    exception raised inside the kernel client's I/O could leave a message half read. A
    timer that was already running (a test runner's) is put back when the tests end.
    """

    def __init__(self, deadline: float | None, output: dict) -> None:
        self.deadline, self.output = deadline, output
        self.on = False
        self.usable = deadline is not None and threading.current_thread() is threading.main_thread()

    def _fire(self, signum: int, frame: object) -> None:
        if self.on:
            self.on = False
            raise Stop(self.output)

    def _arm(self) -> None:
        left = self.deadline - time.monotonic()  # type: ignore[operator]
        if left <= 0:
            raise Stop(self.output)
        self.on = True
        signal.setitimer(signal.ITIMER_REAL, left)

    def __enter__(self) -> _Alarm:
        if self.usable:
            self.started = time.monotonic()
            self.before = signal.signal(signal.SIGALRM, self._fire)
            self.outer = signal.setitimer(signal.ITIMER_REAL, 0)
            self._arm()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.usable:
            return
        self.on = False  # first: a signal arriving from here on is ignored
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.before)
        remaining, interval = self.outer
        if remaining > 0:
            elapsed = time.monotonic() - self.started
            signal.setitimer(signal.ITIMER_REAL, max(remaining - elapsed, 1e-3), interval)

    @contextlib.contextmanager
    def paused(self) -> Any:
        """Stop the timer while the block runs (a call waiting on the kernel)."""
        if not self.usable or not self.on:
            yield
            return
        self.on = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        yield  # a Stop from the call (its own timeout, a dead kernel) passes on unchanged
        self._arm()


def run_hidden_tests(
    source: str,
    imports: list[str],
    names: list[str],
    send: Callable[[str, dict, float | None], dict],
    seconds: float | None = None,
) -> dict | None:
    """Run a tests cell's hidden part here, its exercise's functions called through ``send``.

    Each of ``names`` is bound to a stub that encodes its arguments (:func:`call_payload`),
    gets the kernel's reply from ``send(name, payload)`` and reads it (:func:`read_return`).
    When the tests pass and a call changed its arguments in place, they run a second time
    with nothing written back: a verdict must not depend on what the answer did to its
    inputs (an answer that rewrote them into a trivial case, and returned that case's
    answer, passed tests that compute their expected value after the call).

    Args:
        source: the hidden part.
        imports: the lesson's import statements up to the tests cell (run first, here).
        names: the exercise's function names.
        send: ``send(name, payload, deadline)`` asks the kernel to call a function
            (:func:`autograder.kernel_guard.call_request`) and returns the reply; raises
            :class:`Stop` when the grading of the cell must end (a timeout, a forged reply, a
            dead kernel).
        seconds: the time each run of the tests has (each gets the whole of it: an answer
            that draws from its generator argument is not given half the time); the tests'
            own code is stopped there too (:class:`_Alarm`), with a ``CellTimeoutError``.

    Returns:
        None when the tests pass, else the error output (``ename``, ``evalue``, ``traceback``)
        the cell earns: no line of the hidden tests is in it.

    Raises:
        Stop: from ``send``, with the output to record or the exception to re-raise.
        SyntaxError: the hidden tests do not parse (the lesson's own bug).
    """
    code = hidden_tests_code(source, imports)
    changed = [False]

    def run(write: bool) -> dict | None:
        glb: dict[str, Any] = {"__builtins__": builtins, "__name__": "__xltg_hidden__"}
        deadline = None if seconds is None else time.monotonic() + seconds
        alarm = _Alarm(deadline, error_output(
            "CellTimeoutError", f"the hidden tests ran more than {seconds or 0:g} s"
        ))  # fmt: skip
        for name in names:

            def stub(*args: object, _name: str = name, **kwargs: object) -> object:
                values, payload = call_payload(args, kwargs)
                with alarm.paused():
                    reply = send(_name, payload, deadline)
                changed[0] = changed[0] or bool(reply.get("after"))
                try:
                    return read_return(_name, reply, values, deadline, write)
                except TimeoutError as e:
                    text = f"{e} (a value returned by {_name})"
                    raise Stop(error_output("CellTimeoutError", text)) from None

            stub.__name__ = stub.__qualname__ = name
            glb[name] = stub
        _reseed()
        try:
            with alarm:
                types.FunctionType(code, glb)()
        except Stop:
            raise
        except BaseException as e:  # noqa: BLE001 - an exit or interrupt from the tests too
            return describe(e)
        return None

    out = run(write=True)
    if out is None and changed[0]:
        out = run(write=False)
    return out


def error_output(ename: str, text: str) -> dict:
    """Return the error output of a cell the grader ended (a timeout, an altered reply)."""
    return {"ename": ename, "evalue": text, "traceback": [f"{ename}: {text}"]}


def describe(e: BaseException) -> dict:
    """Return the error output of a failed hidden test: its type, message and where it failed.

    The traceback holds the hidden tests' line numbers (no text: there is no source for
    them) and, for an error of the student's function, the kernel's traceback of that call.
    """
    ename = getattr(e, "remote_ename", None) or type(e).__name__
    evalue = str(e)[:100_000]
    tb = ["Traceback (most recent call last):\n"]
    for frame in traceback.extract_tb(e.__traceback__):
        if frame.filename == HIDDEN_FILENAME:
            tb.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n')
    remote = getattr(e, "remote_traceback", None)
    if remote:
        tb += ["The student's function failed in the kernel:\n", *remote]
    else:
        tb.append(f"{ename}: {evalue}")
    return {"status": "error", "ename": ename, "evalue": evalue, "traceback": tb}
