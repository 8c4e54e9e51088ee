"""Similarity report: pairs of students whose answer cells share unusually much code.

Each answer (solution) cell is normalised before comparison: parsed to an AST (comments
and formatting vanish), docstrings dropped, every name the cell binds (variables,
parameters, functions) renamed in order of appearance (``v0``, ``v1``...; library names
such as ``np.argsort`` kept), and every literal replaced by its type. Each statement
becomes one normalised line; lines of the provided starter code (the lesson's stub) are
removed. Two students' similarity in a lesson is the Jaccard index of their multisets of
normalised lines over all answer cells; pairs at or above the threshold are reported with
their answers side by side.

The report is evidence for a conversation, never a penalty: nothing here changes a grade.
"""

from __future__ import annotations

import ast
import copy
import difflib
import html
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder import notebooks, pysource


def _bound_names(tree: ast.AST) -> list[str]:
    """Return the names a cell binds, in order of first appearance."""
    order: dict[str, None] = {}
    # (import aliases are library names, kept like ``np``)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            order.setdefault(node.id)
        elif isinstance(node, ast.arg):
            order.setdefault(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            order.setdefault(node.name)
    return list(order)


class _Canon(ast.NodeTransformer):
    def __init__(self, names: list[str]) -> None:
        self.map = {n: f"v{i}" for i, n in enumerate(names)}

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self.map.get(node.id, node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self.map.get(node.arg, node.arg)
        node.annotation = None
        return node

    def _def(self, node: Any) -> ast.AST:
        node.name = self.map.get(node.name, node.name)
        body = node.body
        first = body[0].value if body and isinstance(body[0], ast.Expr) else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):  # a docstring
            node.body = body[1:] or [ast.Pass()]
        if hasattr(node, "returns"):
            node.returns = None
        self.generic_visit(node)
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _def

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        return ast.Name(id=f"<{type(node.value).__name__}>", ctx=ast.Load())

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        # an f-string is a literal too, but its fields are code: keep them, canonicalised
        # (a name standing in for its text parts is more than ast.unparse can print)
        fields = [self.visit(v.value) for v in node.values if isinstance(v, ast.FormattedValue)]
        return ast.Call(func=ast.Name(id="<fstr>", ctx=ast.Load()), args=fields, keywords=[])

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        if isinstance(node.operand, ast.Constant):  # -1 is a literal like 1
            return self.visit_Constant(node.operand)
        self.generic_visit(node)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        self.generic_visit(node)
        if node.value is None:
            return ast.Pass()
        return ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno)


def _lines(stmts: list[ast.stmt], depth: int = 0) -> list[str]:
    """Return one normalised line per statement (compound statements: their header)."""
    out = []
    for s in stmts:
        bodies = [f for f in ("body", "orelse", "finalbody", "handlers") if getattr(s, f, None)]
        if not bodies or isinstance(s, ast.Expr):
            out.append("  " * depth + ast.unparse(s))
            continue
        head = copy.copy(s)
        for f in bodies:
            setattr(head, f, [ast.Pass()] if f != "handlers" else [])
        header = ast.unparse(head).splitlines()[0]
        out.append("  " * depth + header)
        for f in bodies:
            if f in ("orelse", "finalbody"):
                out.append("  " * depth + ("else" if f == "orelse" else "finally"))
            for child in getattr(s, f):
                if isinstance(child, ast.ExceptHandler):
                    typ = ast.unparse(child.type) if child.type else ""
                    out.append("  " * depth + f"except {typ}")
                    out += _lines(child.body, depth + 1)
                else:
                    out += _lines([child], depth + 1)
    return out


def normalise(source: str) -> list[str]:
    """Return the normalised lines of a cell's code (``[]`` if it does not parse).

    A cell too deeply nested to canonicalise is compared line by line as typed.

    Args:
        source: the cell's Python source (IPython magics and shell lines are dropped).

    Returns:
        One string per statement, names and literals canonicalised.
    """
    code = "\n".join(ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!")))
    try:
        tree = pysource.parse(code)
    except SyntaxError:
        return []
    try:
        tree = _Canon(_bound_names(tree)).visit(tree)
        ast.fix_missing_locations(tree)
        return _lines(tree.body)
    except (RecursionError, ValueError):
        # an expression too deep for the recursive visitors, or a tree ast.unparse cannot
        # print: compare the cell as typed rather than fail the whole report
        return [" ".join(ln.split()) for ln in code.splitlines() if ln.strip()]


def answer_cells(nb_path: Path) -> dict[str, str]:
    """Return ``grade_id -> source`` of a notebook's answer (solution) cells ({} if unreadable).

    The student's own code cells that follow an answer cell (before the next nbgrader cell),
    and a second copy of it, count as part of that answer, under ``"{grade_id} +1"``,
    ``"+2"``...: the grader runs them with it, and an answer retyped in a new cell lives
    there. Each is its own entry, since names are canonicalised cell by cell.
    """
    try:
        nb = notebooks.read_notebook(nb_path)
    except Exception:  # noqa: BLE001 - a broken submission has nothing to compare
        return {}
    out: dict[str, str] = {}
    current: str | None = None
    for c in nb.cells:
        meta = (c.get("metadata") or {}).get("nbgrader") or {}  # null in some editors' saves
        if not isinstance(meta, dict):
            meta = {}
        if meta.get("grade_id") or meta.get("locked"):
            current = None
        if c.get("cell_type") != "code" or not isinstance(c.get("source"), str):
            continue
        if meta.get("solution") and meta.get("grade_id"):
            current = str(meta["grade_id"])
            if current not in out:
                out[current] = c.source
                continue
        if current is not None and (not meta or meta.get("grade_id") == current):
            n = sum(k.startswith(f"{current} +") for k in out) + 1
            out[f"{current} +{n}"] = c.source
    return out


@dataclass
class Pair:
    """Two students' answers to one lesson and how much normalised code they share."""

    lesson: str
    a: str
    b: str
    similarity: float
    shared: int
    cells: dict[str, tuple[str, str]] = field(default_factory=dict)


def compare_lesson(
    lesson: str,
    answers: dict[str, dict[str, str]],
    starter: dict[str, str],
    *,
    threshold: float = 0.8,
    min_lines: int = 4,
) -> list[Pair]:
    """Return the pairs of students whose answers to ``lesson`` are at least ``threshold`` alike.

    Args:
        lesson: the lesson id.
        answers: student -> (grade_id -> answer cell source).
        starter: grade_id -> the source the lesson hands out (its lines are ignored).
        threshold: Jaccard index of normalised lines at or above which a pair is reported.
        min_lines: students with fewer normalised lines of their own are skipped (a
            one-line answer is the same for everyone).

    Returns:
        The pairs, most similar first.
    """
    given = Counter(line for src in starter.values() for line in normalise(src))
    bags: dict[str, Counter] = {}
    for student, cells in answers.items():
        bag = Counter(line for src in cells.values() for line in normalise(src)) - given
        if sum(bag.values()) >= min_lines:
            bags[student] = bag
    students = sorted(bags)
    pairs = []
    for i, a in enumerate(students):
        for b in students[i + 1 :]:
            inter = sum((bags[a] & bags[b]).values())
            union = sum((bags[a] | bags[b]).values())
            sim = inter / union if union else 0.0
            if sim >= threshold:
                cells = {
                    g: (answers[a].get(g, ""), answers[b].get(g, ""))
                    for g in sorted(set(answers[a]) | set(answers[b]))
                }
                pairs.append(Pair(lesson, a, b, round(sim, 3), inter, cells))
    pairs.sort(key=lambda p: (-p.similarity, p.a, p.b))
    return pairs


def submitted_notebooks(folder: Path) -> list[tuple[str, str, Path]]:
    """Return ``(student, lesson, notebook)`` of every submission in ``folder``.

    ``folder`` is ``STUDENT/NN-topic/NN-topic.ipynb`` submissions, or the ``--out`` folder of
    ``xlt-course grade``: its notebooks as graded (rebuilt in the lesson's structure), else
    the LMS download's notebooks as taken in.

    Raises:
        FileNotFoundError: no submission in it (a wrong folder must not read as "no pairs").
    """
    jobs, taken = folder / ".work" / "jobs", folder / ".work" / "intake"
    graded_output = (folder / "grades.csv").is_file()
    found: list[tuple[str, str, Path]] = []
    if graded_output and jobs.is_dir():
        # .work/jobs/LESSON/STUDENT/submitted/STUDENT/LESSON/LESSON.ipynb
        for nb in sorted(jobs.glob("*/*/submitted/*/*/*.ipynb")):
            found.append((nb.parent.parent.name, nb.parent.name, nb))
    else:
        root = taken if graded_output and taken.is_dir() else folder
        for nb in sorted(root.glob("*/*/*.ipynb")):
            found.append((nb.parent.parent.name, nb.parent.name, nb))
    found = [(s, lesson, nb) for s, lesson, nb in found if nb.stem == lesson]
    if not found:
        raise FileNotFoundError(
            f"no submissions in {folder}: expected STUDENT/NN-topic/NN-topic.ipynb, or the "
            "--out folder of xlt-course grade"
        )
    return found


def similarity_report(
    submissions: Path,
    dest: Path,
    *,
    lessons: list[str] | None = None,
    threshold: float = 0.8,
    min_lines: int = 4,
    release: Path | None = None,
) -> list[Pair]:
    """Compare every pair of students per lesson; write ``dest/similarity.html`` and ``.json``.

    Args:
        submissions: ``STUDENT/NN-topic/NN-topic.ipynb``, or a grading output folder
            (:func:`submitted_notebooks`).
        dest: the folder to write the report to.
        lessons: only these lessons (default: every lesson submitted).
        threshold: see :func:`compare_lesson`.
        min_lines: see :func:`compare_lesson`.
        release: the folder of the student notebooks handed out (default ``lessons/``),
            whose answer cells are the starter code.

    Returns:
        Every reported pair, by lesson then similarity.
    """
    from autograder import paths

    if not 0 < threshold <= 1:
        raise ValueError(f"threshold {threshold} is not in (0, 1]")
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise FileNotFoundError(f"submissions folder {submissions} does not exist")
    release = release or paths.lessons_dir()
    by_lesson: dict[str, dict[str, dict[str, str]]] = {}
    for student, lesson, nb in submitted_notebooks(submissions):
        if not lessons or lesson in lessons:
            by_lesson.setdefault(lesson, {})[student] = answer_cells(nb)
    pairs: list[Pair] = []
    for lesson, answers in sorted(by_lesson.items()):
        starter = answer_cells(release / lesson / f"{lesson}.ipynb")
        pairs += compare_lesson(lesson, answers, starter, threshold=threshold, min_lines=min_lines)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    payload = [
        {"lesson": p.lesson, "a": p.a, "b": p.b, "similarity": p.similarity, "shared": p.shared}
        for p in pairs
    ]
    (dest / "similarity.json").write_text(
        json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (dest / "similarity.html").write_text(
        _html(pairs, threshold, {k: len(v) for k, v in by_lesson.items()}), encoding="utf-8"
    )
    return pairs


def _html(pairs: list[Pair], threshold: float, counts: dict[str, int]) -> str:
    differ = difflib.HtmlDiff(wrapcolumn=70)
    parts = [
        "<!doctype html><meta charset='utf-8'><title>Similarity report</title>",
        "<style>body{font-family:sans-serif}table.diff{font-family:monospace;font-size:12px}"
        ".diff_add{background:#fdd}.diff_chg{background:#ffa}.diff_sub{background:#fdd}</style>",
        "<h1>Similarity report</h1>",
        f"<p>Pairs whose normalised answer code (names and literals canonicalised, comments "
        f"and starter code ignored) is at least {threshold:.0%} alike. Unhighlighted lines are "
        "shared. This is evidence to look at, not a verdict: short exercises have few "
        "ways to be written, and nothing here changes a grade.</p>",
        "<ul>"
        + "".join(
            f"<li>{html.escape(k)}: {n} submissions, {sum(p.lesson == k for p in pairs)} pairs</li>"
            for k, n in sorted(counts.items())
        )
        + "</ul>",
    ]
    for p in pairs:
        parts.append(
            f"<h2>{html.escape(p.lesson)}: {html.escape(p.a)} / {html.escape(p.b)} "
            f"({p.similarity:.0%}, {p.shared} shared lines)</h2>"
        )
        for gid, (a, b) in p.cells.items():
            parts.append(f"<h3>{html.escape(gid)}</h3>")
            parts.append(differ.make_table(a.splitlines(), b.splitlines(), p.a, p.b, context=False))
    return "\n".join(parts) + "\n"
