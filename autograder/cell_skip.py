"""Which cells of a submission the grader may leave unexecuted (a static dependency proof).

Grading runs a notebook for its tests cells; most of a lesson's time goes into the author's
ungraded cells (data loading, demonstrations, plots) that no tests cell needs. A code cell is
*skippable* only when all of these hold:

- it has no nbgrader role (not a solution, tests, task or setup cell) and is not the first
  code cell;
- the student did not touch it: its source is byte-identical to the release notebook's cell
  it lines up with (same nbgrader cell before it, order-preserving match);
- it binds no name that a kept cell needs, computed as a fixed point over the whole notebook:
  the kept cells (setup, every nbgrader cell with the hidden tests as graded, every student
  cell and every edited author cell) need every notebook name they read (Python's scoping,
  :mod:`symtable`): at the top level unless the cell itself surely bound it first (on every
  path, before anything in the cell mentions it), and always when read in a function,
  lambda, generator or class body (read when called, whatever the cell bound); defaults,
  decorators, comprehensions, attribute bases, ``del`` and ``+=`` targets count. A candidate
  that binds a needed name (assignment, ``def``, ``class``, ``import``, loop, ``with``,
  ``except`` and walrus targets, ``global``, ``del``), anywhere in the notebook (a function
  defined early may read a global bound later), is kept and its reads are needed too. A
  name every cell binds by the same top-level import only (``import numpy as np``) is the
  same object whoever binds it: a candidate's copy of that import does not keep it while a
  kept cell has it;
- it does not visibly change state a kept cell may read: a needed name as the base of an
  attribute or item assignment or deletion, or of a method that changes its object
  (``append``, ``update``, torch's ``x.add_()`` ...); process-wide state through a module
  (``np.random.seed``, ``torch.set_*``, ``sys.path.append``, ``os.environ[...] = ...``,
  ``warnings.simplefilter`` outside ``catch_warnings``) or a bare ``set_seed(...)``.

Nothing is skipped in a notebook with a cell that does not parse as Python (magics, ``!``), a
star import, or a kept cell that reaches names dynamically (``globals``, ``eval``,
``sys.modules``, IPython's ``In``/``Out``/``_`` history, frame inspection, ...).

What remains unproven (stated in the README's instructor section): an unedited author cell
that changes shared state in a way the names do not show (a file a tests cell reads, an
object mutated by a function it is passed to, global random state consumed unseeded). The course-wide identity test
(tests/test_grading_skip.py) grades every lesson's reference, blank and wrong submissions
with skipping on and off and requires identical scores; the grader also regrades a notebook
with every cell when a kept cell raises ``NameError`` or the kernel dies.

Used in: grading (every lesson).
"""

from __future__ import annotations

import ast
import builtins
import difflib
from dataclasses import dataclass, field
from typing import Any

from autograder import pysource
from autograder.notebooks import SETUP_SOURCE

DYNAMIC_NAMES = frozenset(
    {
        "globals",
        "locals",
        "vars",
        "eval",
        "exec",
        "__import__",
        "get_ipython",
        "__builtins__",
        "builtins",
        "__main__",
        "__name__",
        "In",
        "Out",
        "_",
        "__",
        "___",
        "_i",
        "_ii",
        "_iii",
        "_ih",
        "_oh",
        "_dh",
        "display_pub",
    }
)
"""Names through which a cell can reach the notebook's namespace without naming the variable."""

DYNAMIC_ATTRIBUTES = frozenset(
    {
        "modules",
        "_getframe",
        "currentframe",
        "getouterframes",
        "getinnerframes",
        "f_globals",
        "f_locals",
        "f_back",
        "user_ns",
    }
)
"""Attributes that reach the namespace too (``sys.modules``, frame inspection)."""

MUTATING_METHODS = frozenset(
    {
        "append",
        "extend",
        "insert",
        "update",
        "pop",
        "popitem",
        "remove",
        "clear",
        "add",
        "discard",
        "sort",
        "reverse",
        "setdefault",
        "fill",
        "resize",
        "put",
        "itemset",
        "shuffle",
        "to",
        "train",
        "eval",
        "load_state_dict",
        "apply",
        "register_buffer",
        "register_parameter",
        "register_forward_hook",
        "register_forward_pre_hook",
        "set_params",
        "fit",
        "write",
    }
)
"""Method names that change their object in place (a call on a needed name keeps the cell)."""

GLOBAL_STATE_PREFIXES = (
    "set",
    "use_",
    "seed",
    "manual_seed",
    "filterwarnings",
    "simplefilter",
    "resetwarnings",
    "enable",
    "disable",
    "register",
    "reset",
    "chdir",
    "putenv",
    "shuffle",
    "append",
    "insert",
    "extend",
    "update",
    "pop",
    "clear",
    "remove",
)
"""Calls that change process-wide state when made on a module (``np.random.seed``,
``torch.set_num_threads``, ``warnings.simplefilter``, ``sys.path.append``, ``os.environ.update``).
"""

SEED_CALLS = frozenset(
    {"seed", "manual_seed", "manual_seed_all", "set_seed", "seed_everything", "set_random_seed"}
)
"""Bare-name calls that seed global random state (``from torch import manual_seed``)."""


def _in_place(method: str) -> bool:
    """Return True for a method that changes its object (``append``, torch's ``add_``)."""
    return method in MUTATING_METHODS or (method.endswith("_") and not method.startswith("_"))


def _global_state(method: str) -> bool:
    """Return True for a module function that changes process-wide state."""
    return method.startswith(GLOBAL_STATE_PREFIXES)


NOTE = "not run by the grader: not needed for any graded cell"
"""What a skipped cell shows in the feedback notebook instead of outputs."""


@dataclass(frozen=True)
class CellNames:
    """What one cell's source binds, loads and may change (over-approximated).

    Attributes:
        binds: names the cell may bind or delete, in any scope.
        loads: names the cell may read from the notebook's namespace as it was before the
            cell ran, in any scope (a name the cell surely binds before any statement
            mentions it is its own, not a load).
        changes: ``(name, how)`` for each object the cell may change in place: ``"="`` for an
            item or attribute assignment or deletion below ``name``, else the method called
            on it (``append``, ``add_``, or, on a module, ``set_option``, ``seed`` ...).
        seeds: the cell calls ``seed``, ``set_seed``, ``manual_seed`` ... by a bare name.
        dynamic: the cell may reach the namespace without naming a variable.
        star: the cell has a star import.
    """

    binds: frozenset[str]
    loads: frozenset[str]
    changes: frozenset[tuple[str, str]]
    seeds: bool
    dynamic: bool
    star: bool
    imports: frozenset[tuple[str, str, str]] = frozenset()


def _base_name(node: ast.AST) -> str | None:
    """Return the variable at the root of ``a.b[c].d`` (None for a call or a literal)."""
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Starred):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _targets(node: ast.AST) -> set[str]:
    """Return the variable names an assignment target binds (``a, (b, *c)`` -> a, b, c)."""
    return {
        n.id for n in ast.walk(node) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)
    }


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp)


def _eager(node: ast.AST, bound: set[str], out: set[str]) -> None:
    """Add to ``out`` the names expression ``node`` reads now that ``bound`` does not cover."""
    if isinstance(node, ast.Name):
        if isinstance(node.ctx, ast.Load | ast.Del) and node.id not in bound:
            out.add(node.id)
        return
    if isinstance(node, ast.Lambda):
        for d in [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]:
            _eager(d, bound, out)
        return  # the body runs later: counted by _deferred
    if isinstance(node, ast.GeneratorExp):
        _eager(node.generators[0].iter, bound, out)
        return
    if isinstance(node, _COMPREHENSIONS):
        inner = set(bound)
        for g in node.generators:
            _eager(g.iter, inner, out)
            inner |= _targets(g.target)
            for cond in g.ifs:
                _eager(cond, inner, out)
        for part in ("elt", "key", "value"):
            if getattr(node, part, None) is not None:
                _eager(getattr(node, part), inner, out)
        return
    if isinstance(node, ast.NamedExpr):
        _eager(node.value, bound, out)
        return
    for child in ast.iter_child_nodes(node):
        _eager(child, bound, out)


def _block(stmts: list[ast.stmt], bound: set[str], out: set[str]) -> set[str]:
    """Walk statements in order; return the names surely bound after them (reads into ``out``).

    A name counts as bound at a point only when every path to it binds the name: a branch
    or a loop body that may not run binds nothing for what follows.
    """
    bound = set(bound)
    for st in stmts:
        if isinstance(st, ast.Import | ast.ImportFrom):
            bound |= {a.asname or a.name.split(".")[0] for a in st.names if a.name != "*"}
        elif isinstance(st, ast.FunctionDef | ast.AsyncFunctionDef):
            for d in [*st.decorator_list, *st.args.defaults, *st.args.kw_defaults]:
                if d is not None:
                    _eager(d, bound, out)
            for arg in [*st.args.posonlyargs, *st.args.args, *st.args.kwonlyargs]:
                if arg.annotation is not None:
                    _eager(arg.annotation, bound, out)
            if st.returns is not None:
                _eager(st.returns, bound, out)
            bound.add(st.name)
        elif isinstance(st, ast.ClassDef):
            for d in [*st.decorator_list, *st.bases, *(k.value for k in st.keywords)]:
                _eager(d, bound, out)
            bound.add(st.name)  # its body's reads are counted by _deferred
        elif isinstance(st, ast.Assign | ast.AnnAssign):
            if st.value is not None:
                _eager(st.value, bound, out)
            targets = st.targets if isinstance(st, ast.Assign) else [st.target]
            for t in targets:
                if not isinstance(t, ast.Name | ast.Tuple | ast.List | ast.Starred):
                    _eager(t, bound, out)  # x.a = ... and x[i] = ... read x
                elif st.value is not None:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Attribute | ast.Subscript):
                            _eager(n, bound, out)
                    bound |= _targets(t)
        elif isinstance(st, ast.AugAssign):
            _eager(st.value, bound, out)
            base = _base_name(st.target)
            if base and base not in bound:
                out.add(base)
            _eager(st.target, bound, out)
        elif isinstance(st, ast.If | ast.While):
            _eager(st.test, bound, out)
            a = _block(st.body, bound, out)
            b = _block(st.orelse, bound, out)
            if isinstance(st, ast.If):
                bound |= a & b
        elif isinstance(st, ast.For | ast.AsyncFor):
            _eager(st.iter, bound, out)
            _block(st.body, bound | _targets(st.target), out)
            _block(st.orelse, bound, out)
        elif isinstance(st, ast.With | ast.AsyncWith):
            inner = set(bound)
            for item in st.items:
                _eager(item.context_expr, inner, out)
                if item.optional_vars is not None:
                    inner |= _targets(item.optional_vars)
            bound = _block(st.body, inner, out)
        elif isinstance(st, ast.Try | getattr(ast, "TryStar", ast.Try)):
            _block(st.body, bound, out)
            for h in st.handlers:
                if h.type is not None:
                    _eager(h.type, bound, out)
                _block(h.body, bound | ({h.name} if h.name else set()), out)
            _block(st.orelse, bound, out)
            _block(st.finalbody, bound, out)
        elif isinstance(st, ast.Delete):
            for t in st.targets:
                _eager(t, bound, out)
                bound -= _targets(t)
        else:  # expressions, return, raise, assert, global, match, ...
            _eager(st, bound, out)
    return bound


def _deferred(source: str) -> set[str]:
    """Return the notebook names read by code that runs later: function, lambda, class bodies.

    Such a read sees the namespace as it is when the code is called, which later cells may
    have changed: it always counts, whatever the cell itself bound.
    """
    reads: set[str] = set()
    # (a comprehension at the top level, or in one, runs at once: _block counts its reads)
    todo = [(t, True) for t in pysource.symbol_table(source).get_children()]
    while todo:
        t, eager = todo.pop()
        eager = eager and t.get_name() in ("listcomp", "setcomp", "dictcomp")
        todo.extend((c, eager) for c in t.get_children())
        if not eager:
            reads |= {s.get_name() for s in t.get_symbols() if s.is_global() and s.is_referenced()}
    return reads


def global_symbols(source: str, *, declared_reads: bool = True) -> tuple[set[str], set[str]]:
    """Return the names ``source`` binds and reads in the notebook's namespace (any scope).

    Python's own scoping (:mod:`symtable`): a function's parameters and locals, a
    comprehension's variables and a closure's cells are not the notebook's.

    Args:
        source: a cell's Python source (raises SyntaxError if it does not parse).
        declared_reads: count a name a nested scope declares ``global`` as read even when
            it is only assigned there.

    Used in: grading (which cells a grade needs; which names a solution cell reads).
    """
    top = pysource.symbol_table(source)
    binds, reads = set(), set()
    for s in top.get_symbols():
        if s.is_assigned() or s.is_imported() or s.is_namespace():
            binds.add(s.get_name())
        if s.is_referenced():
            reads.add(s.get_name())
    todo = list(top.get_children())
    while todo:
        t = todo.pop()
        todo.extend(t.get_children())
        for s in t.get_symbols():
            if not s.is_global():
                continue
            if s.is_declared_global() and (s.is_assigned() or s.is_imported() or s.is_namespace()):
                binds.add(s.get_name())
            if s.is_referenced() or (declared_reads and s.is_declared_global()):
                reads.add(s.get_name())
    return binds, reads


def cell_names(source: str) -> CellNames | None:
    """Return what ``source`` binds, loads and changes; None when it does not parse as Python."""
    try:
        tree = pysource.parse(source)
        binds, loads = global_symbols(source)
    except SyntaxError:
        return None
    changes: set[tuple[str, str]] = set()
    seeds = dynamic = star = False
    scoped = set()  # inside `with warnings.catch_warnings():` (warning filters undone after)
    for n in ast.walk(tree):
        if isinstance(n, ast.With | ast.AsyncWith) and any(
            isinstance(it.context_expr, ast.Call)
            and isinstance(it.context_expr.func, ast.Attribute)
            and it.context_expr.func.attr == "catch_warnings"
            for it in n.items
        ):
            scoped |= {id(c) for st in n.body for c in ast.walk(st)}
    for n in ast.walk(tree):
        if isinstance(n, ast.alias):
            if n.name == "*":
                star = True
            if n.name.split(".")[0] in DYNAMIC_NAMES:
                dynamic = True
        elif isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] in DYNAMIC_NAMES:
            dynamic = True
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Del):
            loads.add(n.id)  # del x needs x
        elif isinstance(n, ast.AugAssign):
            base = _base_name(n.target)
            if base:
                loads.add(base)  # x += 1 reads x
                changes.add((base, "="))
        elif isinstance(n, ast.Attribute):
            if n.attr in DYNAMIC_ATTRIBUTES or (
                n.attr in ("stack", "trace") and _base_name(n) == "inspect"
            ):
                dynamic = True
            if not isinstance(n.ctx, ast.Load):
                base = _base_name(n)
                if base:
                    changes.add((base, "="))
        elif isinstance(n, ast.Subscript) and not isinstance(n.ctx, ast.Load):
            base = _base_name(n)
            if base:
                changes.add((base, "="))
        elif isinstance(n, ast.Call):
            func = n.func
            if isinstance(func, ast.Name) and func.id in SEED_CALLS:
                seeds = True
            display_only = (
                isinstance(func, ast.Attribute)
                and func.attr == "set_option"
                and n.args
                and isinstance(n.args[0], ast.Constant)
                and str(n.args[0].value).startswith("display.")
            )  # pandas' display settings change how tables print, nothing a test reads
            if isinstance(func, ast.Attribute) and not display_only:
                base = _base_name(func.value)
                if base == "warnings" and id(n) in scoped:
                    continue
                if base and (_in_place(func.attr) or _global_state(func.attr)):
                    changes.add((base, func.attr))
    free: set[str] = set()
    _block(tree.body, set(), free)
    free |= _deferred(source)
    # (a local or a comprehension variable of the same name is over-counted: safe)
    changes = {c for c in changes if c[0] in binds | loads}
    dynamic = dynamic or bool(free & DYNAMIC_NAMES)
    imports = set()
    for st in tree.body:
        if isinstance(st, ast.Import):
            imports |= {
                (a.asname or a.name.split(".")[0], a.name if a.asname else a.name.split(".")[0], "")
                for a in st.names
            }
        elif isinstance(st, ast.ImportFrom):
            mod = "." * st.level + (st.module or "")
            imports |= {(a.asname or a.name, mod, a.name) for a in st.names}
    return CellNames(
        frozenset(binds),
        frozenset(free),
        frozenset(changes),
        seeds,
        dynamic,
        star,
        frozenset(imports),
    )


@dataclass
class SkipPlan:
    """The cells of one notebook the grader leaves unexecuted.

    Attributes:
        skip: indices (in the notebook) of the code cells not sent to the kernel.
        kept: how many code cells run.
        reason: why nothing is skipped ("" when the analysis allowed skipping).
    """

    skip: list[int] = field(default_factory=list)
    kept: int = 0
    reason: str = ""
    why_kept: dict[int, str] = field(default_factory=dict)


def _nbgrader(cell: Any) -> dict:
    return cell.get("metadata", {}).get("nbgrader") or {}


def _groups(cells: list[Any]) -> list[tuple[str | None, list[int]]]:
    """Return the plain code cells grouped by the nbgrader cell before them, in order."""
    groups: list[tuple[str | None, list[int]]] = [(None, [])]
    for i, c in enumerate(cells):
        gid = _nbgrader(c).get("grade_id")
        if gid:
            groups.append((gid, []))
        elif c.get("cell_type") == "code":
            groups[-1][1].append(i)
    return groups


def unedited_author_cells(cells: list[Any], release_cells: list[Any]) -> set[int]:
    """Return the indices of plain code cells byte-identical to the release cell they line up with.

    Cells line up when they follow the same nbgrader cell and match in order (a longest
    common subsequence of sources): a student's copy of an author cell, an author cell moved
    past another nbgrader cell or edited in any way is the student's own.
    """
    release = {gid: [release_cells[i].source for i in idx] for gid, idx in _groups(release_cells)}
    same: set[int] = set()
    for gid, idx in _groups(cells):
        theirs = release.get(gid, [])
        ours = [cells[i].source for i in idx]
        matcher = difflib.SequenceMatcher(None, ours, theirs, autojunk=False)
        for block in matcher.get_matching_blocks():
            same.update(idx[block.a + k] for k in range(block.size))
    return same


def plan_skips(
    cells: list[Any], release_cells: list[Any], graded_sources: dict[str, list[str]]
) -> SkipPlan:
    """Return which code cells of a prepared submission need not run for its grades.

    Args:
        cells: the submission's cells as the grader runs them (nbgrader cells in the lesson's
            order with the lesson's metadata, the student's own cells after them).
        release_cells: the release notebook's cells (what the student was given).
        graded_sources: grade id -> the texts nbgrader may run for that cell (the hidden
            tests restored), besides the submitted text.

    Returns:
        A :class:`SkipPlan`; ``skip`` is empty when anything defeats the analysis.
    """
    code = [i for i, c in enumerate(cells) if c.get("cell_type") == "code" and c.source.strip()]
    if not code:
        return SkipPlan([], 0, "no code cells")
    author = unedited_author_cells(cells, release_cells)
    names: dict[int, list[CellNames]] = {}
    for i in code:
        texts = [cells[i].source, *graded_sources.get(_nbgrader(cells[i]).get("grade_id"), [])]
        parsed = [cell_names(t) for t in texts]
        if any(p is None for p in parsed):
            return SkipPlan([], len(code), f"cell {i} is not plain Python (magic or shell)")
        if any(p.star for p in parsed):
            return SkipPlan([], len(code), f"cell {i} has a star import")
        names[i] = parsed  # type: ignore[assignment]
    candidates = {
        i
        for i in code
        if i in author
        and not _nbgrader(cells[i])
        and i != code[0]
        and "setup_lesson" not in cells[i].source
    }
    kept = [i for i in code if i not in candidates]
    # A name every cell binds only by one same import (``import numpy as np`` everywhere) is
    # the same object whichever of those cells ran: a skipped one changes nothing while a
    # kept one binds it (none before a read would be a NameError: the fallback regrades).
    forms: dict[str, set[tuple[str, str, str]]] = {}
    other: set[str] = set()
    for i in code:
        for p in names[i]:
            imported = {f[0] for f in p.imports}
            for f in p.imports:
                forms.setdefault(f[0], set()).add(f)
            other |= p.binds - imported
            # an import inside a branch or a function is not the top-level form
            other |= {n for n in p.binds & imported if sum(1 for f in p.imports if f[0] == n) != 1}
    stable = {n for n, f in forms.items() if len(f) == 1 and n not in other}
    # whole modules (import numpy as np): calling their functions changes no notebook name,
    # but some change process-wide state (seeds, settings, sys.path, os.environ)
    modules = {n for n in stable if next(iter(forms[n]))[2] == ""}
    bound_somewhere = set().union(*(p.binds for i in code for p in names[i]))
    builtin = set(dir(builtins)) - bound_somewhere
    why: dict[int, str] = {}
    needed: set[str] = set()
    for i in kept:
        for p in names[i]:
            needed |= p.loads
    changed = True
    while changed:
        changed = False
        for i in sorted(candidates):
            p = names[i][0]
            kept_binds = set().union(*(q.binds for k in kept for q in names[k]))
            state = p.seeds or any(
                b in modules and (how == "=" or _global_state(how)) for b, how in p.changes
            )
            mutated = {
                b for b, how in p.changes if b not in modules and (how == "=" or _in_place(how))
            }
            touched = ((p.binds - (stable & kept_binds)) | (mutated - builtin)) & needed
            if state or touched:
                hit = sorted(touched)
                why[i] = (
                    "changes process-wide state" if state else "binds or changes " + ", ".join(hit)
                )
                candidates.discard(i)
                kept.append(i)
                needed |= p.loads
                changed = True
    for i in kept:
        # the setup cell's own ``sys.modules`` lookup is the author's, restored by nbgrader
        trusted = _nbgrader(cells[i]).get("grade_id") == "setup" and _nbgrader(cells[i]).get(
            "locked"
        )
        if (
            not trusted
            and cells[i].source.strip() != SETUP_SOURCE.strip()
            and any(p.dynamic for p in names[i])
        ):
            return SkipPlan([], len(code), f"cell {i} reaches names dynamically")
    return SkipPlan(sorted(candidates), len(code) - len(candidates), "", why)
