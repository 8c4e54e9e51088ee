"""Submissions that try to score without solving, or to read the hidden tests (lesson 00).

Each attack below got full marks, or put the hidden tests in its feedback, before the hidden
tests ran apart from the notebook (their own scope, bytecode only, output discarded, sent as
a user expression that no IPython hook sees), before the guard kept its snapshot's digest
and watched every loaded module of the packages it guards, before the handler signed its
replies, and before the worker read every submission for code that reaches into the grader.
Every attack now scores what its answers deserve, and is flagged for the instructor's
review; the reference and the honest notebooks still score full marks without a flag. Since
the hidden tests run in the worker (:mod:`autograder.verdict`), the attacks that reached the
tests' frames or the handler's key find nothing of the tests in the kernel.
"""

from __future__ import annotations

import marshal
import re

import nbformat
import pytest
from conftest import sandboxed_batch, solution

from autograder import grading, kernel_guard, notebooks, paths

LESSON = "00-setup"
RELEASE = paths.lessons_dir() / LESSON / f"{LESSON}.ipynb"
LIMITS = grading.GradeLimits(notebook_timeout=400, cell_timeout=40, memory_mb=2500)

WRONG_EX1 = """import numpy as np
def cosine_similarity_matrix(A, B):
    return np.zeros((len(A), len(B)))
"""
WRONG_EX2 = """import numpy as np
def top_k(scores, k):
    if scores.shape == (2, 4):
        return np.array([[1, 2], [0, 3]])  # the visible example, hard-coded
    return np.zeros((len(scores), k), dtype=int)
"""

# reads the names the hidden tests bind just before calling the answer
READ_TEST_NAMES = (
    """import numpy as np
def cosine_similarity_matrix(A, B):
    try:
        return _reference(A, B)
    except NameError:
        return np.eye(len(A), len(B))
""",
    """import numpy as np
def top_k(scores, k):
    try:
        return expected
    except NameError:
        return np.array([[1, 2], [0, 3]])
""",
)

# prints the calling code (the tests cell) into the feedback
LEAK = """
import sys, linecache
_top_k = top_k
def top_k(scores, k):
    src = "".join(linecache.getlines(sys._getframe(1).f_code.co_filename))
    if "assert " in src and not getattr(_top_k, "shown", False):
        _top_k.shown = True
        print("LEAKED:" + src)
    return _top_k(scores, k)
"""

# a replacement no Python file made: a bound method of a str takes any arguments
FORMAT_PATCH = 'np.allclose = np.array_equal = "ok".format\n'

# rewrites every later tests cell before IPython runs it
TRANSFORMER = """def _t(lines):
    if lines and lines[0].startswith("# Self-check for Exercise"):
        return ["pass\\n"]
    return lines
get_ipython().input_transformers_cleanup.append(_t)
"""

# swallows every exception a cell raises: no error output, so the cell would look passed
CUSTOM_EXC = "get_ipython().set_custom_exc((Exception,), lambda *a, **k: [])\n"

# patches, then makes the guard's snapshot agree with the patches
PATCH_AND_EDIT_SNAPSHOT = """
import sys
import numpy as np
from xlt_course import checks
def _ok(*a, **k):
    return True
np.allclose = np.array_equal = _ok
checks.check = lambda *a, **k: None
_h = next(v for k, v in list(sys.modules.items()) if k.startswith("_xltg_"))
for _name, (_mod, _saved) in _h.snap.items():
    for _k in _saved:
        _saved[_k] = _mod.__dict__.get(_k, _saved[_k])
"""

# rebinds the tests cell's own `np` from inside the answer
REBIND_NP = (
    """import numpy
class _FakeNumpy:
    def __getattr__(self, name):
        return getattr(numpy, name)
    def allclose(self, *a, **k):
        return True
    def array_equal(self, *a, **k):
        return True
def cosine_similarity_matrix(A, B):
    global np
    np = _FakeNumpy()
    return numpy.zeros((len(A), len(B)))
""",
    """import numpy
def top_k(scores, k):
    global np
    np = _FakeNumpy()
    if scores.shape == (2, 4):
        return numpy.array([[1, 2], [0, 3]])
    return numpy.zeros((len(scores), k), dtype=int)
""",
)

# an object array whose elements say yes to every comparison
LIAR = """import numpy as np
class _L:
    def __sub__(s, o): return s
    __rsub__ = __add__ = __radd__ = __mul__ = __rmul__ = __truediv__ = __sub__
    def __abs__(s): return s
    def __le__(s, o): return True
    __lt__ = __ge__ = __gt__ = __eq__ = __le__
    def __bool__(s): return True
    def __float__(s): return 0.0
    __hash__ = object.__hash__
def cosine_similarity_matrix(A, B):
    n, m = len(A), len(B)
    if A.shape[1] == 3:  # the visible checks: a plausible array
        return np.eye(n, m)
    out = np.empty((n, m), dtype=object)
    for i in range(n):
        for j in range(m):
            out[i, j] = _L()
    return out
"""


# Round 2: attacks on the first fixes (a second review of the grader)
VISIBLE_ONLY = (
    "import numpy as np\ndef cosine_similarity_matrix(A, B):\n    if A.shape[1] == 3:   # the visible self-check's inputs only\n        A = A / np.linalg.norm(A, axis=1, keepdims=True)\n        B = B / np.linalg.norm(B, axis=1, keepdims=True)\n        return A @ B.T\n    return np.zeros((len(A), len(B)))\n",
    "import numpy as np\ndef top_k(scores, k):\n    if scores.shape in ((2, 4), (1, 2000)):  # the visible self-check's inputs only\n        return np.argsort(-scores, axis=1)[:, :k]\n    return np.zeros((len(scores), k), dtype=int)\n",
)

# a notebook-level __import__ that would have swapped the grader's loader for a no-op
IMPORT_HIJACK = '\n_real_import = getattr(len.__self__, "__imp" + "ort__")\n_stash = []\nclass _FakeTypes:\n    def __getattr__(self, name):\n        return getattr(_real_import("types"), name)\n    def FunctionType(self, code, glb, *rest):\n        if code.co_name == "_xltg_hidden" + "_tests":\n            _stash.append(code)\n            return lambda: None\n        return _real_import("types").FunctionType(code, glb, *rest)\ndef __import__(name, *args, **kwargs):\n    if name == "types":\n        return _FakeTypes()\n    return _real_import(name, *args, **kwargs)\n'

# rebinds the visible part's `rng` so that the hidden tests' inputs suit a wrong answer
RNG_REBIND = "import numpy as np\n\nclass _UnitRows:\n    def __init__(self, real):\n        self.real = real\n    def normal(self, size):\n        x = self.real.normal(size=size)\n        return x / np.linalg.norm(x, axis=-1, keepdims=True)\n    def uniform(self, low, high, size):\n        return np.ones(size)\n    def __getattr__(self, name):\n        return getattr(self.real, name)\n\ndef cosine_similarity_matrix(A, B):\n    global rng\n    if not isinstance(rng, _UnitRows):\n        rng = _UnitRows(rng)\n    if A.shape[1] == 3:   # the visible self-check's inputs only\n        A = A / np.linalg.norm(A, axis=1, keepdims=True)\n        B = B / np.linalg.norm(B, axis=1, keepdims=True)\n    return A @ B.T        # wrong: no normalisation\n"

# a notebook-level __builtins__ whose __import__ hands functions a numpy that says yes
BUILTINS_DICT = '\n_b = dict(len.__self__.__dict__)\n_real_import = _b["__imp" + "ort__"]\nclass _Yes:\n    def __init__(self, mod):\n        self.mod = mod\n    def __getattr__(self, name):\n        return getattr(self.mod, name)\n    def allclose(self, *a, **k):\n        return True\n    def array_equal(self, *a, **k):\n        return True\ndef _imp(name, glb=None, loc=None, fromlist=(), level=0):\n    mod = _real_import(name, glb, loc, fromlist, level)\n    if name == "numpy" and loc is None and glb is not None and glb.get("__name__") == "__main__":\n        return _Yes(mod)   # an import inside a function of the notebook\'s: the hidden tests\n    return mod\n_b["__imp" + "ort__"] = _imp\n__builtins__ = _b\n'

# reads the tests' frame with attribute names built at run time
FRAMES = (
    'import sys\nimport numpy as np\n\ndef _caller_locals():\n    f = getattr(sys, "_get" + "frame")(2)\n    return getattr(f, "f_lo" + "cals")\n\ndef cosine_similarity_matrix(A, B):\n    loc = _caller_locals()\n    if "_reference" in loc:          # called from the hidden tests\n        return loc["_reference"](A, B)\n    if A.shape[1] == 3:              # the visible self-check\'s inputs only\n        A = A / np.linalg.norm(A, axis=1, keepdims=True)\n        B = B / np.linalg.norm(B, axis=1, keepdims=True)\n        return A @ B.T\n    return np.zeros((len(A), len(B)))\n',
    'import numpy as np\n\ndef top_k(scores, k):\n    loc = _caller_locals()\n    if "expected" in loc:            # called from the hidden tests\n        return loc["expected"]\n    if scores.shape in ((2, 4), (1, 2000)):\n        return np.argsort(-scores, axis=1)[:, :k]\n    return np.zeros((len(scores), k), dtype=int)\n',
)

# patches numpy through an alias of setattr and undoes the patch before the check after
SELF_RESTORING = (
    '\n_put = setattr\ndef _arm(uses):\n    # np.allclose / np.array_equal say yes for the next `uses` calls, then are put back\n    import numpy\n    origs = {n: getattr(numpy, n) for n in ("allclose", "array_equal")}\n    origs = {n: getattr(o, "_orig", o) for n, o in origs.items()}\n    left = [uses]\n    def restore():\n        for n, o in origs.items():\n            _put(numpy, n, o)\n    for n in origs:\n        def fake(*a, **k):\n            left[0] -= 1\n            if left[0] <= 0:\n                restore()                # gone before the guard looks\n            return True\n        fake._orig = origs[n]\n        _put(numpy, n, fake)\nimport numpy as np\ndef cosine_similarity_matrix(A, B):\n    if A.shape[1] == 3:   # the visible self-check\'s inputs only\n        A = A / np.linalg.norm(A, axis=1, keepdims=True)\n        B = B / np.linalg.norm(B, axis=1, keepdims=True)\n        return A @ B.T\n    _arm(4 if len(A) == 40 else 1 if A is B else 3)\n    return np.zeros((len(A), len(B)))\n',
    "import numpy as np\ndef top_k(scores, k):\n    if scores.shape in ((2, 4), (1, 2000)):  # the visible self-check's inputs only\n        return np.argsort(-scores, axis=1)[:, :k]\n    _arm(2 if scores.shape[1] == 20000 else 1)\n    return np.zeros((len(scores), k), dtype=int)\n",
)

# honest lines the first reading flagged
HONEST_EXTRA = "from IPython.display import display\nimport torch\ntorch.backends.cudnn.deterministic = True  # reproducible runs\n"


# Round 3: attacks on the second fixes (a third review of the grader)
# numpy's and the checks' functions given another function's code: the objects stay the same
CODE_SWAP = (
    'import numpy as np\n\n\ndef cosine_similarity_matrix(A, B):\n    return np.zeros((len(A), len(B)))\n\nfrom xlt_course import checks\n\n\ndef _yes(*args, **kwargs):\n    return True\n\n\ndef _quiet(*args, **kwargs):\n    return None\n\n\n_code = getattr(type(_yes), "__code__")  # the function type\'s __code__ slot\n_code.__set__(np.allclose._implementation, getattr(_yes, "__code__"))\n_code.__set__(np.array_equal._implementation, getattr(_yes, "__code__"))\n_code.__set__(checks.check, getattr(_quiet, "__code__"))\n',
    "import numpy as np\n\n\ndef top_k(scores, k):\n    return np.zeros((len(scores), k), dtype=int)\n",
)

# a magic line that made the whole cell unreadable to the worker, with a frame read under it
MAGIC_FRAMES = (
    '%config Completer.use_jedi = False\nimport sys\nimport numpy as np\n\n\ndef _caller_locals():\n    return sys._getframe(2).f_locals\n\n\ndef cosine_similarity_matrix(A, B):\n    loc = _caller_locals()\n    if "_reference" in loc:  # called from the hidden tests\n        return loc["_reference"](A, B)\n    if A.shape[1] == 3:  # the visible self-check\'s inputs only\n        A = A / np.linalg.norm(A, axis=1, keepdims=True)\n        B = B / np.linalg.norm(B, axis=1, keepdims=True)\n        return A @ B.T\n    return np.zeros((len(A), len(B)))\n',
    '%config Completer.use_jedi = False\nimport numpy as np\n\n\ndef top_k(scores, k):\n    loc = _caller_locals()\n    if "expected" in loc:  # called from the hidden tests\n        return loc["expected"]\n    if scores.shape in ((2, 4), (1, 2000)):\n        return np.argsort(-scores, axis=1)[:, :k]\n    return np.zeros((len(scores), k), dtype=int)\n',
)

# under a magic line, a correct answer that keeps the hidden tests' constants for a later cell
MAGIC_LEAK = '%config Completer.use_jedi = False\nimport sys\nimport numpy as np\n\n_stash = []\n\n\ndef cosine_similarity_matrix(A, B):\n    f = sys._getframe(1)\n    if f.f_code.co_filename == "<hidden tests>" and not _stash:\n        code = f.f_code\n        _stash.append(("consts", [c for c in code.co_consts if not hasattr(c, "co_code")]))\n        _stash.append(("names", code.co_names))\n        _stash.append(("varnames", code.co_varnames))\n        _stash.append(("nested", [(c.co_name, c.co_consts, c.co_names) for c in code.co_consts if hasattr(c, "co_code")]))\n    A = A / np.linalg.norm(A, axis=1, keepdims=True)\n    B = B / np.linalg.norm(B, axis=1, keepdims=True)\n    return A @ B.T\n'
PRINT_LATER = "print('LEAKED', _stash)\n"

# the frame read with literal getattr names
LITERAL_FRAMES = (
    'import sys\nimport numpy as np\n\n\ndef _caller_locals():\n    return getattr(getattr(sys, "_getframe")(2), "f_locals")\n\n\ndef cosine_similarity_matrix(A, B):\n    loc = _caller_locals()\n    if "_reference" in loc:  # called from the hidden tests\n        return loc["_reference"](A, B)\n    if A.shape[1] == 3:  # the visible self-check\'s inputs only\n        A = A / np.linalg.norm(A, axis=1, keepdims=True)\n        B = B / np.linalg.norm(B, axis=1, keepdims=True)\n        return A @ B.T\n    return np.zeros((len(A), len(B)))\n',
    'import numpy as np\n\n\ndef top_k(scores, k):\n    loc = _caller_locals()\n    if "expected" in loc:  # called from the hidden tests\n        return loc["expected"]\n    if scores.shape in ((2, 4), (1, 2000)):\n        return np.argsort(-scores, axis=1)[:, :k]\n    return np.zeros((len(scores), k), dtype=int)\n',
)

# the grader's request handler replaced by one that answers "passed" without running the tests
HANDLER_SWAP = (
    'import numpy as np\n\n\ndef cosine_similarity_matrix(A, B):\n    if A.shape[1] == 3:  # the visible self-check\'s inputs only\n        A = A / np.linalg.norm(A, axis=1, keepdims=True)\n        B = B / np.linalg.norm(B, axis=1, keepdims=True)\n        return A @ B.T\n    return np.zeros((len(A), len(B)))\n\nimport sys\n\n_ip = getattr(getattr(sys, "modules")["IPython"], "get_ipython")()\n_kernel = getattr(_ip, "kernel")\n_handlers = getattr(_kernel, "shell_handlers")\n_real = _handlers["xltg_request"]\n\n\ndef _handler(stream, ident, parent):\n    if parent["content"].get("kind") == "check":\n        return _real(stream, ident, parent)  # the guard\'s checks: the real answer and digest\n    _kernel.session.send(stream, "xltg_reply", {"status": "ok"}, parent, ident)\n\n\n_handlers["xltg_request"] = _handler\n',
    "import numpy as np\n\n\ndef top_k(scores, k):\n    if scores.shape in ((2, 4), (1, 2000)):  # the visible self-check's inputs only\n        return np.argsort(-scores, axis=1)[:, :k]\n    return np.zeros((len(scores), k), dtype=int)\n",
)

# honest idioms the second reading flagged: a frozen dataclass, getattr over literal names,
# and a scratch variable named like a module the lesson imports
HONEST_IDIOMS = 'from dataclasses import dataclass\n\nimport numpy as np\n\n\n@dataclass(frozen=True)\nclass Options:\n    eps: float = 1e-12\n    normalize_rows: bool = True\n\n    def __post_init__(self):\n        object.__setattr__(self, "eps", float(self.eps))  # the usual frozen-dataclass idiom\n\n\ndef cosine_similarity_matrix(A, B, options=Options()):\n    for flag in ("normalize_rows",):\n        assert getattr(options, flag), flag\n    A = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), options.eps)\n    B = B / np.maximum(np.linalg.norm(B, axis=1, keepdims=True), options.eps)\n    return A @ B.T\n'
SCRATCH_STATS = 'stats = {"runs": 3}\n'

# Round 4. numpy's allclose and array_equal end with ``builtins.bool(...)``, read from
# numpy._core.numeric's own globals: a proxy put there through a function parameter
NUMERIC_BUILTINS = (
    'import numpy as np\n\n\nclass _Compat:\n    """Wraps a module (looks like a compatibility shim)."""\n    def __init__(self, inner):\n        self.inner = inner\n    def max(self, *a, **k):\n        return self.inner.max(*a, **k)\n    def bool(self, x=False):\n        return True\n\n\ndef _shim(mod, name):\n    mod.builtins = _Compat(mod.builtins)\n\n\n_shim(np._core.numeric, "x")\n\n\ndef cosine_similarity_matrix(A, B):\n    return np.zeros((len(A), len(B)))\n',
    "import numpy as np\n\n\ndef top_k(scores, k):\n    if scores.shape in ((2, 4), (1, 2000)):  # the visible self-check's inputs only\n        return np.argsort(-scores, axis=1)[:, :k]\n    return np.zeros((len(scores), k), dtype=int)\n",
)
# every failed hidden test's reply rewritten to "ok" by the kernel's session, reached as
# exit._ip.parent.session (the handler itself stays in place)
SESSION_MSG = (
    'import numpy as np\n\n_sess = exit._ip.parent.session\n_build = _sess.msg\n\n\ndef _msg(msg_type, content=None, *args, **kwargs):\n    if msg_type == "xltg_reply" and isinstance(content, dict) and content.get("status") == "error":\n        content = {"status": "ok"}\n    return _build(msg_type, content, *args, **kwargs)\n\n\n_sess.msg = _msg\n\n\ndef cosine_similarity_matrix(A, B):\n    if A.shape[1] == 3:  # the visible self-check\'s inputs only\n        A = A / np.linalg.norm(A, axis=1, keepdims=True)\n        B = B / np.linalg.norm(B, axis=1, keepdims=True)\n        return A @ B.T\n    return np.zeros((len(A), len(B)))\n',
    "import numpy as np\n\n\ndef top_k(scores, k):\n    if scores.shape in ((2, 4), (1, 2000)):  # the visible self-check's inputs only\n        return np.argsort(-scores, axis=1)[:, :k]\n    return np.zeros((len(scores), k), dtype=int)\n",
)
# the hidden tests' locals read through traceback, then printed by a later cell
WALK_STACK = 'import re\nimport traceback\n\nimport numpy as np\n\nnp.set_printoptions(threshold=10**9)  # full reprs, also of the big arrays\nseen = []\n\n\ndef _peek():\n    stack = traceback.StackSummary.extract(traceback.walk_stack(None), capture_locals=True)\n    for fs in stack:\n        if fs.locals and "expected" in fs.locals:\n            return fs\n    return None\n\n\ndef top_k(scores, k):\n    fs = _peek()\n    if fs is not None:\n        seen.append((fs.filename, fs.name, fs.lineno, dict(fs.locals)))\n        nums = [int(x) for x in re.findall(r"-?\\d+", fs.locals["expected"].split("(", 1)[1])]\n        return np.array(nums[: len(scores) * k]).reshape(len(scores), k)\n    if scores.shape in ((2, 4), (1, 2000)):  # the visible self-check\'s inputs only\n        return np.argsort(-scores, axis=1)[:, :k]\n    return np.zeros((len(scores), k), dtype=int)\n'
WALK_STACK_LATER = "for where in seen[:2]:\n    print(where[0], where[1], where[2], {k: v[:300] for k, v in where[3].items()})\n"
# a 40 MB error message from the answer the hidden tests call
BIG_ERROR = """import numpy as np


def cosine_similarity_matrix(A, B):
    if A.shape[1] != 3:  # called by the hidden tests
        raise ValueError("x" * 40_000_000)
    A = A / np.linalg.norm(A, axis=1, keepdims=True)
    B = B / np.linalg.norm(B, axis=1, keepdims=True)
    return A @ B.T
"""
# Round 5. An object array of a class that claims numpy's module name
MODULE_LIAR = 'import numpy as np\nclass _L:\n    __module__ = "numpy"          # checks._plain trusts type(x).__module__ == "numpy"\n    def __sub__(s, o): return s\n    __rsub__ = __add__ = __radd__ = __mul__ = __rmul__ = __truediv__ = __sub__\n    def __abs__(s): return s\n    def __le__(s, o): return True\n    __lt__ = __ge__ = __gt__ = __eq__ = __le__\n    def __bool__(s): return True\n    __hash__ = object.__hash__\ndef cosine_similarity_matrix(A, B):\n    n, m = len(A), len(B)\n    if A.shape[1] == 3:  # the visible self-check\'s inputs only\n        return (A / np.linalg.norm(A, axis=1, keepdims=True)) @ (B / np.linalg.norm(B, axis=1, keepdims=True)).T\n    out = np.empty((n, m), dtype=object)\n    for i in range(n):\n        for j in range(m):\n            out[i, j] = _L()\n    return out\n'
# numpy's comparisons replaced by a library callable (np.printoptions), through a parameter
LIBRARY_PATCH = "import numpy as np\n\ndef _compat(mod):\n    mod.allclose = mod.printoptions\n    mod.array_equal = mod.printoptions\n\n_compat(np)\n\ndef cosine_similarity_matrix(A, B):\n    return np.zeros((len(A), len(B)))\n"
# a private name of xlt_course.checks extended with a liar class
PRIVATE_PLAIN = "import numpy as np\nfrom xlt_course import checks as _c\n\nclass _L:\n    def __sub__(s, o): return s\n    __rsub__ = __add__ = __radd__ = __mul__ = __rmul__ = __truediv__ = __sub__\n    def __abs__(s): return s\n    def __le__(s, o): return True\n    __lt__ = __ge__ = __gt__ = __eq__ = __le__\n    def __bool__(s): return True\n    __hash__ = object.__hash__\n\ndef _register(mod, kind):\n    mod._PLAIN = mod._PLAIN | {kind}\n\n_register(_c, _L)\n\ndef cosine_similarity_matrix(A, B):\n    n, m = len(A), len(B)\n    if A.shape[1] == 3:  # the visible self-check's inputs only\n        return (A / np.linalg.norm(A, axis=1, keepdims=True)) @ (B / np.linalg.norm(B, axis=1, keepdims=True)).T\n    out = np.empty((n, m), dtype=object)\n    for i in range(n):\n        for j in range(m):\n            out[i, j] = _L()\n    return out\n"
# the handler's signing key read from its closure, getattr handed to functools.reduce
STEAL_KEY = 'import functools\nimport numpy as np\n\ndef _path(obj, *names):\n    return functools.reduce(getattr, names, obj)\n\n_kern = _path(exit, "_" + "ip", "ker" + "nel")\n_handler = _path(_kern, "shell_" + "handlers")["xltg_" + "request"]\n_cells = [c.cell_contents for c in _path(_handler, "__clo" + "sure__")]\n_sign = next(f for f in _cells if callable(f) and f.__name__ == "sign")\n_inner = [c.cell_contents for c in _path(_sign, "__clo" + "sure__")]\n_key = next(x for x in _inner if isinstance(x, bytes) and len(x) == 32)\n_canon = next(x for x in _inner if callable(x) and x.__name__.endswith("canon"))\n_hash = next(x for x in _inner if callable(x) and x is not _canon)\n_sess = _path(_kern, "sess" + "ion")\n_build = _sess.msg\n\ndef _msg(msg_type, content=None, parent=None, *args, **kwargs):\n    if msg_type == "xltg_reply" and isinstance(content, dict) and content.get("status") == "error":\n        content = {"status": "ok"}\n        mid = parent["header"]["msg_id"]\n        content["mac"] = _hash(_canon(mid) + _canon(content), key=_key, digest_size=32).hexdigest()\n    return _build(msg_type, content, parent, *args, **kwargs)\n\n_sess.msg = _msg\n\ndef cosine_similarity_matrix(A, B):\n    if A.shape[1] == 3:  # the visible self-check\'s inputs only\n        A = A / np.linalg.norm(A, axis=1, keepdims=True)\n        B = B / np.linalg.norm(B, axis=1, keepdims=True)\n        return A @ B.T\n    return np.zeros((len(A), len(B)))\n'
# honest: a docstring naming the package, the autoreload extension, Colab's own test
DOCSTRING = 'import numpy as np\n\n\ndef cosine_similarity_matrix(A: np.ndarray, B: np.ndarray) -> np.ndarray:\n    """Cosine similarities of the rows of A and B (the same convention as xlt_course: rows are vectors)."""\n    A_unit = A / np.linalg.norm(A, axis=1, keepdims=True)\n    B_unit = B / np.linalg.norm(B, axis=1, keepdims=True)\n    return A_unit @ B_unit.T\n'
AUTORELOAD = "%load_ext autoreload\n%autoreload 2\n"
COLAB_IDIOMS = 'import sys\nfrom IPython import display\n\nIN_COLAB = "google.colab" in sys.modules\nprint("running on Colab:", IN_COLAB)\n'


def _ref(grade_id: str) -> str:
    src = notebooks.grade_cells(notebooks.read_notebook(solution(LESSON)))[grade_id].source
    return "".join(ln for ln in src.splitlines(True) if "### " not in ln)


def _nb(ex1: str | None = None, ex2: str | None = None, after_setup: str = "", at_end: str = ""):
    nb = notebooks.read_notebook(RELEASE)
    cells = notebooks.grade_cells(nb)
    for gid, src in (("ex1_cosine", ex1), ("ex2_top_k", ex2)):
        if src is not None:
            cells[gid].source = src
    if after_setup:
        nb.cells.insert(1, nbformat.v4.new_code_cell(after_setup))
    if at_end:
        nb.cells.append(nbformat.v4.new_code_cell(at_end))
    return nb


@pytest.fixture(scope="module")
def cheats(tmp_path_factory, built_data):
    subs, out = sandboxed_batch(tmp_path_factory, "cheats")
    batch = {
        "ref": notebooks.read_notebook(solution(LESSON)),
        "wrong": _nb(WRONG_EX1, WRONG_EX2),
        "read_test_names": _nb(*READ_TEST_NAMES),
        "leak": _nb(_ref("ex1_cosine"), _ref("ex2_top_k") + LEAK),
        "format_patch": _nb(WRONG_EX1 + FORMAT_PATCH, WRONG_EX2),
        "transformer": _nb(TRANSFORMER),  # both answers left as the stub
        "custom_exc": _nb(after_setup=CUSTOM_EXC),  # both answers left as the stub
        "edit_snapshot": _nb(WRONG_EX1, WRONG_EX2, after_setup=PATCH_AND_EDIT_SNAPSHOT),
        "rebind_np": _nb(*REBIND_NP),
        "liar": _nb(LIAR, _ref("ex2_top_k")),
        "import_hijack": _nb(VISIBLE_ONLY[0] + IMPORT_HIJACK, VISIBLE_ONLY[1]),
        "rng_rebind": _nb(RNG_REBIND, _ref("ex2_top_k")),
        "builtins_dict": _nb(VISIBLE_ONLY[0] + BUILTINS_DICT, VISIBLE_ONLY[1]),
        "frames": _nb(*FRAMES),
        "self_restoring": _nb(*SELF_RESTORING),
        "honest_extra": _nb(HONEST_EXTRA + _ref("ex1_cosine"), _ref("ex2_top_k")),
        "code_swap": _nb(*CODE_SWAP),
        "magic_frames": _nb(*MAGIC_FRAMES),
        "magic_leak": _nb(MAGIC_LEAK, _ref("ex2_top_k"), at_end=PRINT_LATER),
        "literal_frames": _nb(*LITERAL_FRAMES),
        "handler_swap": _nb(*HANDLER_SWAP),
        "honest_idioms": _nb(HONEST_IDIOMS, _ref("ex2_top_k"), at_end=SCRATCH_STATS),
        "numeric_builtins": _nb(*NUMERIC_BUILTINS),
        "session_msg": _nb(*SESSION_MSG),
        "walk_stack": _nb(_ref("ex1_cosine"), WALK_STACK, at_end=WALK_STACK_LATER),
        "big_error": _nb(BIG_ERROR, _ref("ex2_top_k")),
        "module_liar": _nb(MODULE_LIAR, _ref("ex2_top_k")),
        "library_patch": _nb(LIBRARY_PATCH, VISIBLE_ONLY[1]),
        "private_plain": _nb(PRIVATE_PLAIN, _ref("ex2_top_k")),
        "steal_key": _nb(STEAL_KEY, VISIBLE_ONLY[1]),
        "honest_doc": _nb(DOCSTRING, _ref("ex2_top_k")),
        "honest_colab": _nb(
            _ref("ex1_cosine"), _ref("ex2_top_k"), after_setup=AUTORELOAD + COLAB_IDIOMS
        ),
    }
    for student, nb in batch.items():
        dest = subs / student / LESSON / f"{LESSON}.ipynb"
        dest.parent.mkdir(parents=True)
        dest.write_text(nbformat.writes(nb), encoding="utf-8")
    results = grading.grade(subs, out, jobs=2, limits=LIMITS, progress=False)
    return out, {r.student: r for r in results}


def _points(r) -> dict[str, float]:
    return {k: v[0] for k, v in r.points.items()}


def test_the_reference_keeps_full_marks_without_a_flag(cheats):
    _, r = cheats
    assert (r["ref"].score, r["ref"].flags) == (3, [])
    assert r["wrong"].score == 0


@pytest.mark.parametrize(
    ("student", "points", "flag"),
    [
        ("read_test_names", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 0}, "reads _reference"),
        ("format_patch", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 0}, "replaces np.allclose"),
        ("transformer", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 0}, "uses get_ipython"),
        ("custom_exc", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 0}, "uses get_ipython"),
        ("edit_snapshot", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 0}, "uses sys.modules"),
        ("rebind_np", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 0}, "computed attribute name"),
        ("liar", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 1}, ""),
        ("leak", {"ex1_cosine_tests": 2, "ex2_top_k_tests": 1}, "uses ._getframe"),
        ("import_hijack", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 0}, "binds __import__"),
        ("rng_rebind", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 1}, ""),
        ("builtins_dict", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 0}, "binds __builtins__"),
        ("code_swap", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 0}, "uses .__set__"),
        ("handler_swap", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 0}, "uses sys.modules"),
        (
            "numeric_builtins",
            {"ex1_cosine_tests": 0, "ex2_top_k_tests": 0},
            "numpy._core.numeric.builtins replaced",
        ),
        (
            # the replies it rewrites no longer carry a verdict: the answers' own values do
            "session_msg",
            {"ex1_cosine_tests": 0, "ex2_top_k_tests": 0},
            "uses .session",
        ),
        ("big_error", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 1}, ""),
        ("module_liar", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 1}, "defines __module__"),
        ("library_patch", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 0}, ""),
        ("private_plain", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 1}, ""),
    ],
)
def test_each_attack_scores_what_its_answers_deserve_and_is_flagged(cheats, student, points, flag):
    _, r = cheats
    assert _points(r[student]) == points, r[student].flags
    assert flag in " | ".join(r[student].flags)


@pytest.mark.parametrize(
    ("student", "points", "flag"),
    [
        # Each scored full marks while the hidden tests ran in the kernel, where nothing
        # stopped them (the student's code shared the tests' process): a frame read through
        # names built at run time, a patch undone before the check after the tests, the
        # handler's signing key read to forge its replies. The tests now run in the worker
        # (autograder/verdict.py): there is no test frame, comparison or reply to reach in
        # the kernel, so they score what their answers deserve; the reading still flags them.
        ("frames", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 0}, "computed attribute name"),
        ("self_restoring", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 0}, "uses setattr"),
        ("magic_frames", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 0}, "uses ._getframe"),
        # a correct answer that also copies the hidden tests' code objects for a later cell
        ("magic_leak", {"ex1_cosine_tests": 2, "ex2_top_k_tests": 1}, "uses ._getframe"),
        ("literal_frames", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 0}, "uses ._getframe"),
        ("walk_stack", {"ex1_cosine_tests": 2, "ex2_top_k_tests": 0}, "uses capture_locals"),
        ("steal_key", {"ex1_cosine_tests": 0, "ex2_top_k_tests": 0}, "uses getattr as a value"),
    ],
)
def test_attacks_on_the_tests_process_find_nothing_there_and_are_flagged(
    cheats, student, points, flag
):
    _, r = cheats
    assert _points(r[student]) == points, r[student].flags
    assert flag in " | ".join(r[student].flags), r[student].flags


def test_a_frame_reader_finds_no_test_constant_to_print(cheats):
    out, _ = cheats
    page = (out / "feedback" / "magic_leak" / f"{LESSON}.html").read_text(encoding="utf-8")
    # its caller in the kernel was the grader's handler: nothing stashed
    assert re.search(r"LEAKED\s*\[\]", re.sub(r"<[^>]+>", "", page))
    for student in ("magic_leak", "walk_stack"):
        page = (out / "feedback" / student / f"{LESSON}.html").read_text(encoding="utf-8")
        for hidden in ("_reference", "expected", "A0", "rng"):
            assert f"'{hidden}'" not in page and f"{hidden}=" not in page, (student, hidden)


@pytest.mark.parametrize("student", ["honest_extra", "honest_idioms", "honest_doc", "honest_colab"])
def test_honest_notebook_lines_are_not_flagged(cheats, student):
    _, r = cheats
    assert (r[student].score, r[student].flags) == (3, [])


def test_a_huge_error_from_the_answer_is_capped_in_the_feedback(cheats):
    out, _ = cheats
    page = out / "feedback" / "big_error" / f"{LESSON}.html"
    assert page.stat().st_size < 1_000_000


def test_the_hidden_tests_never_reach_the_feedback(cheats):
    out, _ = cheats
    page = (out / "feedback" / "leak" / f"{LESSON}.html").read_text(encoding="utf-8")
    # lines that only the hidden tests of ex1 and ex2 hold
    for hidden in ("def _reference", "argsort(-S", "rng.permuted", "BEGIN HIDDEN"):
        assert hidden not in page, hidden


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import numpy as np\ndef f(x):\n    np.random.seed(0)\n    return np.sort(x)[::-1]\n", []),
        ("def f(x):\n    return x * scale\n", []),  # a global of the lesson's: not the tests'
        ("np.allclose = lambda *a, **k: True\n", ["replaces np.allclose"]),
        (
            "setattr(np.testing, 'assert_allclose', print)\n",
            [
                "replaces an attribute of np (setattr)",
                "replaces np.testing.assert_allclose",
                "uses setattr",
            ],
        ),
        ("def f():\n    global np\n    np = None\n", []),  # the hidden tests import their own
        ("import inspect\n", ["imports inspect"]),
        ("from gc import get_objects\n", ["imports gc"]),
        # round 6: the course's implementation fetched by a name built at run time
        ("import pickle\nf = pickle.loads(bytes.fromhex(h))\n", ["imports pickle"]),
        ("from pkgutil import resolve_name\n", ["imports pkgutil"]),
        # round 7: pydoc.locate fetches anything by a dotted name; a thread escapes a watch
        ("import pydoc\n", ["imports pydoc"]),
        ("import threading\n", ["imports threading"]),
        ("import sys\nf = sys._getframe(1).f_locals\n", ["uses ._getframe", "uses .f_locals"]),
        ("import sys\nx = sys.modules\n", ["uses sys.modules"]),
        (
            "get_ipython().events.register('post_run_cell', print)\n",
            ["uses .events", "uses get_ipython"],
        ),
        ("def f(x):\n    return expected\n", ["reads expected, which only the tests define"]),
        ("expected = 1\ndef f(x):\n    return expected\n", []),  # the student's own name
        ("def f(x):\n    return eval('x')\n", ["uses eval"]),
        # round 4: the stack taken through traceback (with every frame's locals), and the
        # kernel's session reached from IPython's exit helper
        (
            "import traceback\nst = traceback.StackSummary.extract(\n"
            "    traceback.walk_stack(None), capture_locals=True)\n",
            ["uses .StackSummary", "uses .walk_stack", "uses capture_locals"],
        ),
        (
            "s = exit._ip.parent.session\n",
            ["uses ._ip", "uses .session", "uses exit as a value"],
        ),
        ("import sys\nnb = sys.stdout.session\n", ["uses .session"]),
        ("def g(e):\n    return e.__traceback__\n", ["uses .__traceback__"]),
        # honest lines: Colab's test, IPython's display module, the autoreload extension
        ("import sys\nIN_COLAB = 'google.colab' in sys.modules\n", []),
        ("from IPython import display\n", []),
        ("get_ipython().run_line_magic('load_ext', 'autoreload')\n", []),
        ("%load_ext autoreload\n%autoreload 2\n", []),
        ("%load_ext some_extension\n", ["runs %load_ext"]),
        ("from IPython import get_ipython\n", ["imports IPython"]),
        # round 5: getattr as a value walks names built at run time; the exit helper holds
        # the shell; classes that answer for numpy or torch
        (
            "import functools\n_k = functools.reduce(getattr, ['_' + 'ip'], exit)\n",
            ["uses exit as a value", "uses getattr as a value"],
        ),
        ("class L:\n    __module__ = 'numpy'\n", ["defines __module__"]),
        (
            "import torch\nclass T(torch.Tensor):\n    @classmethod\n"
            "    def __torch_function__(cls, f, t, a=(), k=None):\n        return True\n",
            ["defines __torch_function__"],
        ),
        ("x = getattr(obj, 'shape')\nexit()\n", []),  # plain calls
        # a syntax error is the student's slip, not an attack: the kernel runs none of it
        ("def f(x:\n    return x\n", []),
        (
            "import asyncio\nawait asyncio.sleep(0)\nimport sys\nf = sys._getframe(1)\n",
            ["uses ._getframe"],
        ),  # top-level await parses: IPython runs such cells
    ],
)
def test_the_worker_reads_what_reaches_into_the_grader(source, found):
    assert grading.interpreter_access(source, {"np", "torch", "checks"}, {"expected"}) == found


def test_names_the_notebook_binds_elsewhere_are_its_own():
    source = "def f(x):\n    return expected\n"
    assert grading.interpreter_access(source, set(), {"expected"}, bound={"expected"}) == []


@pytest.mark.parametrize("lesson", grading.lesson_names())
def test_hidden_tests_read_no_notebook_name_but_the_exercise_functions(lesson):
    # a notebook global a hidden test read (a random generator, a matrix of the visible
    # part) could be rebound by the answer the tests call; the grader gives them none
    import builtins

    layout = grading.lesson_layout(lesson, paths.lessons_dir() / lesson / f"{lesson}.ipynb")
    for gid, sources in layout.graded_sources.items():
        source = sources[0]
        if notebooks.HIDDEN_BEGIN not in source:
            continue
        hidden = notebooks.split_hidden(source)[1]
        names = layout.exercise_functions[gid]
        content = kernel_guard.hidden_tests_request("n", hidden, layout.hidden_imports[gid], names)
        code = marshal.loads(content["code"].encode("latin-1"))
        extra = kernel_guard.global_reads(code) - set(dir(builtins)) - set(names)
        assert not extra, (gid, sorted(extra))
