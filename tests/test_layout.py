"""The layout rules: every test file has a lesson marker or is infrastructure (CONTRIBUTING.md);
the import rule: ``autograder`` may import ``xlt_course``, never the reverse; no cycles.

Read statically (AST), so a lazy import inside a function counts as much as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import INFRASTRUCTURE_TEST_FILES, LESSON_OF_TEST_FILE, LESSONS

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).parent
PACKAGES = ("xlt_course", "autograder")
NOT_MODULES = {"autograder.nbgrader_config"}  # read by nbgrader as a config file


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = _module_name(path)
            if name not in NOT_MODULES:
                found[name] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Return the project modules that ``name`` (at ``path``) imports, lazily or not."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, base] if base else pkg)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            # the longest project module the import names (``from x import y``: x.y or x)
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def test_xlt_course_never_imports_autograder():
    bad = {
        name: sorted(t for t in deps if t.split(".")[0] == "autograder")
        for name, deps in _graph().items()
        if name.split(".")[0] == "xlt_course"
    }
    assert not {k: v for k, v in bad.items() if v}, bad
    # ... nor names it (no importlib strings, no paths into the grader)
    named = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "xlt_course").rglob("*.py")
        if "autograder" in p.read_text(encoding="utf-8")
        or "solutions_dir" in p.read_text(encoding="utf-8")
    ]
    assert not named, named


def test_import_graph_has_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                cycle = [*stack[stack.index(m) :], m]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_the_graph_sees_the_imports():
    # guards the test itself: the known edges must be found
    graph = _graph()
    assert "xlt_course.errors" in graph["autograder.grading"]
    assert "autograder.grading" in graph["autograder.course"]
    assert "autograder.kernel_guard" in graph["autograder.grading_worker"]


def test_every_test_file_belongs_to_a_lesson_or_to_the_infrastructure():
    files = {p.name for p in TESTS.glob("test_*.py")}
    unknown = files - set(LESSON_OF_TEST_FILE) - INFRASTRUCTURE_TEST_FILES
    assert not unknown, (
        f"add {sorted(unknown)} to LESSON_OF_TEST_FILE or INFRASTRUCTURE_TEST_FILES in "
        "tests/conftest.py, and to the table in CONTRIBUTING.md"
    )
    gone = (set(LESSON_OF_TEST_FILE) | INFRASTRUCTURE_TEST_FILES) - files
    assert not gone, f"tests/conftest.py names test files that do not exist: {sorted(gone)}"


def test_every_lesson_has_a_marker_and_a_test_file():
    lessons = {name[:2] for name in LESSONS}
    assert lessons == set(LESSON_OF_TEST_FILE.values())


def test_alignment_modules_are_layered():
    # Lower layers never import higher ones: the retrieval engine knows nothing of lessons.
    layers = ["arrays", "retrieval", "procrustes", "unsupervised_alignment", "bli"]
    graph = _graph()
    for i, low in enumerate(layers):
        higher = {f"xlt_course.{m}" for m in layers[i + 1 :]}
        assert not graph[f"xlt_course.{low}"] & higher, f"xlt_course.{low} imports a higher layer"
