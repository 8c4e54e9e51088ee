"""The layout rules CONTRIBUTING.md states: every test file has a lesson marker or is infrastructure."""

from __future__ import annotations

from pathlib import Path

from conftest import INFRASTRUCTURE_TEST_FILES, LESSON_OF_TEST_FILE, LESSONS

TESTS = Path(__file__).parent


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


def _import_graph() -> dict[str, set[str]]:
    """Return module -> the xlt_course modules it imports (at the top or inside functions)."""
    import ast

    root = TESTS.parent / "xlt_course"
    modules = {}
    for path in root.rglob("*.py"):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xlt_course"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    deps.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("xlt_course.")}
        graph[name] = {d for d in deps if d in modules and d not in (name, "xlt_course")}
    return graph


def test_the_package_import_graph_has_no_cycle():
    graph = _import_graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module) :]))
        if module in done:
            return
        for dep in sorted(graph[module]):
            visit(dep, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_alignment_modules_are_layered():
    # Lower layers never import higher ones: the retrieval engine knows nothing of lessons.
    layers = ["arrays", "retrieval", "procrustes", "unsupervised_alignment", "bli"]
    graph = _import_graph()
    for i, low in enumerate(layers):
        higher = {f"xlt_course.{m}" for m in layers[i + 1 :]}
        assert not graph[f"xlt_course.{low}"] & higher, f"xlt_course.{low} imports a higher layer"
