"""Generate student lessons and autograde submissions headless with nbgrader.

Design: every (student, lesson) submission is graded in a scratch nbgrader course of its
own, holding a copy of the lesson's gradebook template and nothing else, so jobs cannot
corrupt each other's gradebook, and the solution notebook is not in the course the
kernel runs in. Scores are read back from each job's gradebook and merged into
``grades.csv`` in a fixed order, so output does not depend on scheduling.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import difflib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from autograder import notebooks, paths, pysource, sandbox, verdict
from xlt_course.errors import XltCourseError

CONFIG_FILE = paths.CONFIG_FILE


class GradingError(XltCourseError, RuntimeError):
    """nbgrader failed on the course's own notebooks (not a student's fault)."""


def lesson_names(source: Path | None = None) -> list[str]:
    """Return the lesson ids (``NN-topic``) that have a solution notebook, sorted."""
    source = source or paths.solutions_dir()
    return sorted(
        p.name for p in source.iterdir() if p.is_dir() and (p / f"{p.name}.ipynb").exists()
    )


def _write_course(root: Path, *, source: str = "source", release: str = "release") -> None:
    """Write a scratch course config that loads the course's config and redirects folders."""
    root.mkdir(parents=True, exist_ok=True)
    text = (
        "c = get_config()  # noqa: F821\n"
        f"load_subconfig({str(CONFIG_FILE)!r})  # noqa: F821\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        f"c.CourseDirectory.source_directory = {source!r}\n"
        f"c.CourseDirectory.release_directory = {release!r}\n"
        "c.CourseDirectory.submitted_directory = 'submitted'\n"
        "c.CourseDirectory.autograded_directory = 'autograded'\n"
        "c.CourseDirectory.feedback_directory = 'feedback'\n"
        f"c.CourseDirectory.db_url = {'sqlite:///' + str(root / 'gradebook.db')!r}\n"
        # feedback pages: what the notebook's code displayed runs no script there
        "c.HTMLExporter.preprocessors = ['autograder.grading.sanitize_feedback_outputs']\n"
    )
    (root / "nbgrader_config.py").write_text(text, encoding="utf-8")


COURSE_ID = "xlt-course"
"""nbgrader's course id of every gradebook the grader writes (as ``nbgrader_config.py`` sets)."""


def _nbgrader(root: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` inside the scratch course ``root``."""
    env = dict(os.environ)
    # The grading kernel must not reach a hub: everything it needs is local.
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env["XLT_COURSE_GRADING"] = "1"
    # nbgrader shells out to `alembic` and starts kernels by name: use this interpreter's.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass(frozen=True)
class GradeLimits:
    """Limits that keep one submission from hurting the batch.

    Attributes:
        notebook_timeout: wall-clock seconds for grading one notebook (kernel included).
        cell_timeout: seconds one cell may run before it is interrupted.
        memory_mb: address-space cap of the grading process and its kernel (0: none).
        include_hidden: show hidden tests' source and tracebacks in feedback (instructors).
        prewarm: fork each kernel from a pre-warmed kernel server in the sandbox
            (:mod:`autograder.zygote_server`; one fresh kernel per submission), instead of
            starting a new interpreter per submission.
        sandbox: run kernels in the sandbox (``"bwrap"``: grading stops with an error where
            it does not work), or unconfined (``"none"``: every grade is flagged UNSANDBOXED;
            the command line asks for ``--unsafe-no-sandbox``).
        skip_cells: leave unexecuted the unedited author cells no graded cell needs
            (:mod:`autograder.cell_skip`; a notebook where a kept cell then raises
            ``NameError`` or the kernel dies is graded again with every cell). False (the
            command line's ``--all-cells``): every cell runs.
    """

    notebook_timeout: float = 600.0
    cell_timeout: int = 120
    memory_mb: int = 8192
    include_hidden: bool = False
    sandbox: Literal["bwrap", "none"] = "bwrap"
    prewarm: bool = True
    skip_cells: bool = True


MAX_FILE_BYTES = 1 << 30
"""Largest file a grading worker or kernel may write (a notebook cannot fill the disk)."""


def _limit_memory(memory_mb: int) -> None:  # runs in the child, before exec
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
    if memory_mb > 0:
        cap = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


class _Worker:
    """A long-lived grading worker process (``python -m autograder.grading_worker``).

    Each thread of :func:`grade` keeps one, so the ~2.5 s of CPU that importing nbgrader
    and nbconvert costs is paid once per thread, not once per notebook. Jobs go in on
    stdin (one job folder a line), statuses come back on stdout. The worker runs in its
    own process group under the memory cap; when a job passes its wall-clock limit the
    whole group (worker and kernel) is killed and the next job starts a fresh worker.
    """

    def __init__(
        self,
        limits: GradeLimits,
        log: Path,
        threads: int = 1,
        slot: Path | None = None,
        hide: tuple[Path, ...] = (),
    ) -> None:
        self.limits = limits
        self.log = log
        self.threads = threads
        self.proc: subprocess.Popen | None = None
        self.slot = slot  # with a slot: kernels come from a pre-warmed kernel server
        self.hide = hide
        self.box: sandbox.KernelSandbox | None = None

    def _zygote_spec(self) -> Path:
        """Build the sandbox of this worker's kernel server; return its spec file.

        It is the sandbox of a grading kernel (:func:`autograder.sandbox.kernel_sandbox`)
        for the worker's slot folder: no job's files are in it, only a private working
        folder and socket folder that the server empties before every kernel.
        """
        assert self.slot is not None
        if self.slot.exists():
            shutil.rmtree(self.slot)
        for d in ("cwd", "conn", "runtime"):
            (self.slot / d).mkdir(parents=True)
        box = sandbox.kernel_sandbox(
            self.slot, self.slot / "cwd", self.slot / "conn", list(self.hide)
        )
        for f in box.ipc.iterdir():
            if f.is_dir() and not f.is_symlink():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink(missing_ok=True)
        self.box = box
        spec = {
            "prefix": box.prefix,
            "env": box.env,
            "user": box.user,
            "uid": box.uid if os.geteuid() == 0 else None,
            "ipc": str(box.ipc),
            "cwd": str((self.slot / "cwd").resolve()),
            "conn": str((self.slot / "conn").resolve()),
            "log": str((self.slot / "kernels.log").resolve()),
        }
        path = self.slot / "zygote.json"
        path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
        return path

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        env["XLT_COURSE_GRADING"] = "1"
        env["MPLBACKEND"] = "Agg"
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        # `python -m autograder.grading_worker` must find this checkout's grader, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (env.get("PYTHONPATH", ""), str(paths.REPO_ROOT)) if p
        )
        # Kernels grading side by side share the cores: each gets its share of math threads
        # (torch, BLAS), and idle OpenMP threads sleep instead of spinning.
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env.setdefault(var, str(self.threads))
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        memory_mb = self.limits.memory_mb
        serve = ["--serve"]
        if self.slot is not None:
            serve += ["--zygote", str(self._zygote_spec().resolve())]
        with open(self.log, "ab") as err:
            return subprocess.Popen(
                [sys.executable, "-m", "autograder.grading_worker", *serve],
                cwd=self.log.parent,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
                preexec_fn=lambda: _limit_memory(memory_mb),  # noqa: PLW1509 - no threads
            )

    def run(self, root: Path) -> tuple[int, dict]:
        """Grade the prepared job ``root``; return ``(code, status)``, code -9 on timeout."""
        import select
        import signal

        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(f"{root}\n".encode())
            proc.stdin.flush()
        except BrokenPipeError:
            self.proc = None
            return 1, {"error": "the grading worker exited"}
        deadline = time.monotonic() + self.limits.notebook_timeout
        fd = proc.stdout.fileno()
        buf = b""
        while True:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                self.close(signal.SIGKILL)
                return -9, {}
            chunk = os.read(fd, 1 << 16)
            if not chunk:  # the worker died (memory cap, a crash)
                self.close(signal.SIGKILL)
                return 1, {"error": f"the grading worker died (see {self.log})"}
            buf += chunk
            for line in buf.split(b"\n")[:-1]:
                if line.startswith(b"XLTJOB "):
                    return 0, json.loads(line[7:])
                if line == b"XLTAGAIN":
                    # graded again with every cell (autograder.cell_skip): that run, the one
                    # that counts, gets the whole limit, as with --all-cells
                    deadline = time.monotonic() + self.limits.notebook_timeout
            buf = buf.rsplit(b"\n", 1)[-1] if b"\n" in buf else buf

    def close(self, sig: int | None = None) -> None:
        """Stop the worker (and, with ``sig``, its whole process group at once)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        else:
            with contextlib.suppress(BrokenPipeError, OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait()


def strip_hidden_tests(nb: Any) -> int:
    """Remove hidden tests and their tracebacks from an autograded notebook, in place.

    Each tests cell keeps its visible part; its hidden part becomes one comment line, and
    an error it raised is reduced to the exception's name and message (the short hint
    written in the test), since a traceback would quote the hidden code.

    Returns:
        How many cells were changed.
    """
    changed = 0
    for c in nb.cells:
        meta = c.get("metadata", {}).get("nbgrader", {})
        if c.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        if notebooks.HIDDEN_BEGIN in c.source:
            head, _, tail = notebooks.split_hidden(c.source)
            c.source = head + "# (hidden tests ran here when your notebook was graded)" + tail
            changed += 1
        for out in c.get("outputs", []):
            if out.get("output_type") == "error":
                hint = str(out.get("evalue") or "").strip() or "a hidden test failed"
                out["traceback"] = [f"{out.get('ename', 'Error')}: {hint}"]
    return changed


def _empty_gradebook() -> Path | None:
    """Return an empty course gradebook to start each scratch course from (None if unwritable).

    nbgrader stamps every new gradebook with its alembic revision by running ``alembic
    heads`` in a subprocess: 2.8 s of a lesson's 3.2 s of ``generate_assignment`` on two
    cores. A gradebook that already has its tables skips that, so one empty gradebook, made
    by nbgrader itself once per nbgrader version, is copied into each scratch course.
    """
    from importlib.metadata import version

    from xlt_course import paths as course_paths

    seed = (
        course_paths.cache_dir() / "grading" / f"empty-gradebook-nbgrader-{version('nbgrader')}.db"
    )
    if seed.exists():
        return seed
    try:
        seed.parent.mkdir(parents=True, exist_ok=True)
        tmp = seed.with_name(f"{seed.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.unlink(missing_ok=True)
        code = (
            "import sys; from nbgrader.api import Gradebook; "
            "Gradebook('sqlite:///' + sys.argv[1], course_id=sys.argv[2]).close()"
        )
        env = dict(os.environ)
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        subprocess.run(
            [sys.executable, "-c", code, str(tmp), COURSE_ID],
            env=env, capture_output=True, check=True, timeout=300,
        )  # fmt: skip
        os.replace(tmp, seed)  # atomic: a concurrent maker wins or loses whole
    except (OSError, subprocess.SubprocessError):
        return None  # nbgrader makes the gradebook itself, only slower
    return seed


def generate_lesson(lesson: str, dest: Path, *, scratch: Path | None = None) -> Path:
    """Generate the student notebook of ``lesson`` into ``dest/lesson/`` with nbgrader.

    Also leaves the lesson's gradebook template at ``scratch/gradebook.db`` when
    ``scratch`` is given (grading copies it into each job).

    Returns:
        The path of the generated notebook.
    """
    src = paths.solutions_dir() / lesson
    if not (src / f"{lesson}.ipynb").exists():
        raise GradingError(f"no solution notebook {src / (lesson + '.ipynb')}")
    own_tmp = scratch is None
    root = Path(tempfile.mkdtemp(prefix="xlt-gen-")) if own_tmp else scratch
    try:
        _write_course(root)
        if (root / "source" / lesson).exists():
            shutil.rmtree(root / "source" / lesson)
        shutil.copytree(src, root / "source" / lesson, ignore=shutil.ignore_patterns(".*"))
        seed = _empty_gradebook()
        if seed is not None and not (root / "gradebook.db").exists():
            shutil.copyfile(seed, root / "gradebook.db")
        res = _nbgrader(root, "generate_assignment", lesson, "--force", "--log-level=WARN")
        if res.returncode != 0:
            raise GradingError(
                f"nbgrader generate_assignment {lesson} failed:\n{res.stderr[-3000:]}"
            )
        out = dest / lesson
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(root / "release" / lesson, out)
        nb_path = out / f"{lesson}.ipynb"
        # nbgrader writes nbformat's default layout; rewrite it in the course's stable layout.
        nb = notebooks.read_notebook(nb_path)
        nb_path.write_text(notebooks.dumps(nb), encoding="utf-8")
        return nb_path
    finally:
        if own_tmp:
            shutil.rmtree(root, ignore_errors=True)


def generate_lessons(lessons: list[str] | None = None, dest: Path | None = None) -> list[Path]:
    """Regenerate student notebooks from ``solutions/`` into ``lessons/`` (or ``dest``)."""
    dest = dest or paths.lessons_dir()
    return [generate_lesson(name, dest) for name in (lessons or lesson_names())]


def lesson_drift(lesson: str) -> str:
    """Return a unified diff between the committed lesson and a fresh generation ('' if none)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate_lesson(lesson, Path(tmp))
        committed = paths.lessons_dir() / lesson / f"{lesson}.ipynb"
        if not committed.exists():
            return f"{committed} is missing: run `xlt-course lessons`"
        a = committed.read_text(encoding="utf-8").splitlines()
        b = fresh.read_text(encoding="utf-8").splitlines()
        return "\n".join(difflib.unified_diff(a, b, str(committed), "regenerated", lineterm=""))


# --- preparing a submission -------------------------------------------------------------

ALLOWED_COURSE_MODULES = ("xlt_course.checks",)
"""The only part of ``xlt_course`` a solution cell may use (the self-check helpers).

No reference solution imports ``xlt_course``: every exercise re-implements something the
package also implements (lesson 02's ``procrustes`` is ``xlt_course.procrustes.procrustes``), and
the test cells import those implementations as ``_reference``. Forbidding the whole package
in solution cells, rather than a per-exercise list of function names, cannot go stale when a
lesson or a module changes."""


@dataclass
class LessonLayout:
    """What grading needs to know about one lesson's notebook (from solutions/ and lessons/).

    Attributes:
        cells: the release notebook's cells (student version), in order.
        order: grade ids of the nbgrader cells, in order.
        solutions_of: tests grade id -> the solution grade ids it tests (those since the
            previous tests cell).
        exercise_functions: tests grade id -> names the reference solution cells define.
        course_names: names that any cell of the lesson binds from ``xlt_course`` (other
            than ``checks``), e.g. ``_reference`` in hidden tests.
        watch_modules: modules the tests rely on, guarded against monkeypatching.
        kernel: the lesson's kernelspec name.
        locked_sources: grade id -> the texts a locked cell may have (release and source).
        allowed: tests grade id -> ``xlt_course`` names its reference solution itself uses
            (a data type such as ``TopicSplit``), which the student may use too.
        graded_sources: grade id -> the source notebook's text of that cell (what nbgrader
            runs for a locked cell: the hidden tests restored).
        hidden_imports: tests grade id -> the import statements of the lesson's own code
            cells up to that tests cell, which its hidden tests run first in their own scope.
        module_aliases: names the lesson's cells bind to modules by importing (``np``).
        test_names: names only hidden tests bind, other than by importing (``expected``,
            ``_reference``): no student sees them, and the hidden tests keep them local.
        kernel_verdict: tests grade ids whose hidden part runs in the kernel
            (:data:`autograder.verdict.KERNEL_MARK`); every other one runs in the worker.
    """

    cells: list[Any]
    order: list[str]
    solutions_of: dict[str, list[str]]
    exercise_functions: dict[str, list[str]]
    course_names: set[str]
    watch_modules: list[str]
    kernel: str
    locked_sources: dict[str, set[str]] = field(default_factory=dict)
    allowed: dict[str, set[str]] = field(default_factory=dict)
    graded_sources: dict[str, list[str]] = field(default_factory=dict)
    hidden_imports: dict[str, list[str]] = field(default_factory=dict)
    module_aliases: set[str] = field(default_factory=set)
    test_names: set[str] = field(default_factory=set)
    kernel_verdict: set[str] = field(default_factory=set)


def _nbgrader_meta(cell: Any) -> dict:
    return cell.get("metadata", {}).get("nbgrader") or {}


def _is_course(module: str) -> bool:
    return module == "xlt_course" or module.startswith("xlt_course.")


def _course_bindings(source: str) -> set[str]:
    """Return the names ``source`` binds by importing from ``xlt_course`` (checks excepted)."""
    import ast

    try:
        tree = pysource.parse(source)
    except SyntaxError:
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _is_course(a.name) and a.name not in ALLOWED_COURSE_MODULES:
                    names.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and _is_course(node.module or ""):
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if node.module not in ALLOWED_COURSE_MODULES and full not in ALLOWED_COURSE_MODULES:
                    names.add(a.asname or a.name)
    return names


def _imported_modules(source: str) -> set[str]:
    import ast

    mods: set[str] = set()
    with contextlib.suppress(SyntaxError):
        for node in ast.walk(pysource.parse(source)):
            if isinstance(node, ast.Import):
                mods.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                mods.add(node.module)
                mods.update(f"{node.module}.{a.name}" for a in node.names if a.name != "*")
    return mods


def lesson_layout(lesson: str, release_nb: Path) -> LessonLayout:
    """Return the :class:`LessonLayout` of ``lesson`` from its release and source notebooks."""
    import ast

    release = notebooks.read_notebook(release_nb)
    source = notebooks.read_notebook(paths.solutions_dir() / lesson / f"{lesson}.ipynb")
    order, solutions_of, functions = [], {}, {}
    pending: list[str] = []
    pending_fns: list[str] = []
    course_names: set[str] = set()
    watch = {"builtins", "math"}
    for c in source.cells:
        if c.cell_type != "code":
            continue
        course_names |= _course_bindings(c.source)
        meta = _nbgrader_meta(c)
        if meta.get("solution"):
            pending.append(meta["grade_id"])
            with contextlib.suppress(SyntaxError):
                tree = pysource.parse(c.source)
                pending_fns += [
                    n.name
                    for n in tree.body
                    if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                ]
        elif meta.get("grade"):
            solutions_of[meta["grade_id"]] = pending
            functions[meta["grade_id"]] = pending_fns
            pending, pending_fns = [], []
            watch |= _imported_modules(c.source)
    if "numpy" in watch:
        watch |= {"numpy.linalg", "numpy.random"}
    if "torch" in watch:
        watch |= {"torch.nn.functional"}
    for c in release.cells:
        meta = _nbgrader_meta(c)
        if meta.get("grade_id"):
            order.append(meta["grade_id"])
    uses: dict[str, set[str]] = {}
    for c in source.cells:
        meta = _nbgrader_meta(c)
        if c.cell_type == "code" and meta.get("solution"):
            uses[meta["grade_id"]] = _course_bindings(c.source) | _names_used(
                c.source, course_names
            )
    allowed = {
        t: set().union(*(uses.get(s, set()) for s in sols)) for t, sols in solutions_of.items()
    }
    kernel = release.metadata.get("kernelspec", {}).get("name", "python3")
    locked: dict[str, set[str]] = {}
    for c in [*release.cells, *source.cells]:
        meta = _nbgrader_meta(c)
        if meta.get("locked") and meta.get("grade_id"):
            locked.setdefault(meta["grade_id"], set()).add(c.source.strip())
    graded_sources: dict[str, list[str]] = {}
    for c in source.cells:
        meta = _nbgrader_meta(c)
        if c.cell_type == "code" and meta.get("grade_id"):
            graded_sources.setdefault(meta["grade_id"], []).append(c.source)
    module_aliases: set[str] = set()
    bound_by_tests: set[str] = set()
    bound_elsewhere: set[str] = set()
    for c in source.cells:
        if c.cell_type != "code":
            continue
        module_aliases |= _import_bindings(c.source, modules_only=True)
        head, hidden, tail = notebooks.split_hidden(c.source)
        with contextlib.suppress(SyntaxError, pysource.Unparseable):
            bound_elsewhere.update(_bound_anywhere(pysource.parse(head + "\n" + tail)))
            bound_elsewhere.update(_import_bindings(hidden))
            bound_by_tests.update(_bound_anywhere(pysource.parse(hidden)))
    hidden_imports: dict[str, list[str]] = {}
    kernel_verdict: set[str] = set()
    imports: list[str] = []
    for c in source.cells:
        meta = _nbgrader_meta(c)
        if c.cell_type != "code" or meta.get("solution"):
            continue
        imports += [i for i in _top_level_imports(c.source) if i not in imports]
        if meta.get("grade") and meta.get("grade_id"):
            hidden_imports[meta["grade_id"]] = list(imports)
            if verdict.kept_in_kernel(notebooks.split_hidden(c.source)[1]):
                kernel_verdict.add(meta["grade_id"])
    return LessonLayout(
        list(release.cells),
        order,
        solutions_of,
        functions,
        course_names,
        sorted(watch),
        kernel,
        locked,
        allowed,
        graded_sources,
        hidden_imports,
        module_aliases,
        bound_by_tests - bound_elsewhere,
        kernel_verdict,
    )


def _top_level_imports(source: str) -> list[str]:
    """Return the top-level import statements of ``source``, one line each (no ``*``)."""
    import ast

    try:
        tree = pysource.parse(source)
    except SyntaxError:
        return []
    return [
        ast.unparse(n)
        for n in tree.body
        if isinstance(n, ast.Import)
        or isinstance(n, ast.ImportFrom)
        and n.module != "__future__"
        and not any(a.name == "*" for a in n.names)
    ]


def _is_module(package: str, name: str) -> bool:
    """Return True when ``name`` is a submodule of ``package`` (found on disk, not imported).

    ``importlib.util.find_spec("torch.nn")`` would import torch into the grader for this.
    """
    import importlib.util

    top, _, rest = package.partition(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError, AttributeError):
        return False
    locations = list(spec.submodule_search_locations or []) if spec else []
    for part in [p for p in rest.split(".") if p]:  # down the package's own folders
        locations = [str(Path(loc) / part) for loc in locations if (Path(loc) / part).is_dir()]
    return any(
        (Path(loc) / name).is_dir()
        or any(f.suffix in (".py", ".so") for f in Path(loc).glob(f"{name}.*"))
        for loc in locations
    )


def _import_bindings(source: str, *, modules_only: bool = False) -> set[str]:
    """Return the names ``source``'s import statements bind (with ``modules_only``: to modules).

    ``from a import b`` binds a module only when ``a.b`` is one (it is imported to find out;
    the lesson's own imports, never a submission's).
    """
    import ast

    names: set[str] = set()
    with contextlib.suppress(SyntaxError):
        for n in ast.walk(pysource.parse(source)):
            if isinstance(n, ast.Import):
                names.update(a.asname or a.name.split(".")[0] for a in n.names)
            elif isinstance(n, ast.ImportFrom) and not n.level:
                for a in n.names:
                    if a.name == "*":
                        continue
                    if modules_only and not _is_module(n.module, a.name):
                        continue
                    names.add(a.asname or a.name)
    return names


#: Modules that reach into the interpreter running the tests (frames, the garbage collector,
#: compiled code, IPython itself) or fetch any object by a name built at run time (pickle's
#: loads, pkgutil's resolve_name: the course's implementation without naming it): no
#: exercise needs them.
INTERPRETER_MODULES = frozenset(
    {"gc", "ctypes", "inspect", "linecache", "marshal", "dis", "builtins", "importlib",
     "IPython", "ipykernel", "code", "codeop", "sys.monitoring", "pickle", "_pickle",
     "pickletools", "copyreg", "shelve", "dill", "cloudpickle", "pkgutil", "runpy",
     "zipimport", "pydoc", "logging.config", "threading", "_thread", "concurrent.futures",
     "multiprocessing"}
)  # fmt: skip
#: Attributes of frames, code and the IPython shell that lead to the tests' code or state.
INTERPRETER_ATTRIBUTES = frozenset(
    {"_getframe", "currentframe", "f_back", "f_locals", "f_globals", "f_code", "f_builtins",
     "tb_frame", "gi_frame", "cr_frame", "ag_frame", "settrace", "setprofile", "__globals__",
     "__code__", "__closure__", "co_consts", "co_code", "__builtins__", "__subclasses__",
     "input_transformers_cleanup", "input_transformers_post", "ast_transformers",
     "set_custom_exc", "display_formatter", "user_ns", "user_global_ns", "excepthook",
     "displayhook", "events", "__dict__", "__self__", "__base__", "__bases__", "__mro__",
     "shell_handlers", "kernel", "f_lineno", "attrgetter", "methodcaller", "__getattribute__",
     "__setattr__", "__delattr__", "__set__", "__get__", "_implementation", "__defaults__",
     "__kwdefaults__", "walk_stack", "walk_tb", "extract_stack", "extract_tb", "StackSummary",
     "FrameSummary", "format_stack", "print_stack", "_current_frames", "__traceback__",
     "_ip", "session", "shell", "pub_thread", "iopub_socket", "shell_stream", "send_multipart",
     "comm_manager", "getprofile", "gettrace", "get_field", "Formatter", "locate",
     "importfile", "resolve_name"}
)  # fmt: skip
#: Names that look up other names, or the IPython shell and its history, at run time.
INTERPRETER_NAMES = frozenset(
    {"get_ipython", "__builtins__", "globals", "vars", "locals", "eval", "exec", "compile",
     "__import__", "breakpoint", "_ih", "_oh", "_i", "_ii", "_iii", "In", "Out", "_dh",
     "setattr", "delattr"}
)  # fmt: skip
#: Strings that name the interpreter's inner parts (``getattr(sys, "_getframe")``).
INTERPRETER_STRINGS = frozenset(
    {"_getframe", "currentframe", "f_locals", "f_globals", "f_back", "f_code", "__code__",
     "__globals__", "__builtins__", "__import__", "shell_handlers", "user_ns", "get_ipython",
     "__self__", "_implementation", "__set__", "co_consts", "co_code", "settrace",
     "setprofile", "__subclasses__", "__dict__"}
)  # fmt: skip
#: Cell magics whose body is Python the grader reads too; any other runs what it cannot read.
PYTHON_CELL_MAGICS = frozenset({"capture", "time", "timeit"})
HARMLESS_CELL_MAGICS = frozenset({"html", "markdown", "latex", "svg", "javascript", "js"})
#: Line magics that run or load code the grader cannot read.
CODE_LINE_MAGICS = frozenset(
    {"run", "load", "loadpy", "load_ext", "reload_ext", "macro", "recall", "rerun", "edit"}
)
#: IPython's own extensions a notebook may load (``%load_ext autoreload``).
HARMLESS_EXTENSIONS = frozenset({"autoreload"})
#: Class members that make an object answer for numpy or torch (a tensor whose
#: ``torch.allclose`` says True) or pass for another class. No exercise needs one.
LIBRARY_PROTOCOLS = frozenset(
    {"__torch_function__", "__torch_dispatch__", "__array_function__", "__array_ufunc__",
     "__array_priority__", "__module__", "__instancecheck__", "__subclasscheck__",
     "__class__"}
)  # fmt: skip
#: Names a notebook must not bind: the interpreter looks them up for everyone's code.
INTERPRETER_BINDINGS = frozenset({"__import__", "__builtins__", "__build_class__"})
#: Library settings a notebook may assign (``torch.backends.cudnn.deterministic = True``).
SETTING_PREFIXES = ("torch.backends.", "pd.options.", "pandas.options.", "plt.rcParams")


def interpreter_access(
    source: str, module_aliases: set[str], test_names: set[str], bound: set[str] = frozenset()
) -> list[str]:
    """Return what a student's cell does that reaches past its own code to the grader's.

    Read on the worker's side, before the kernel starts, so nothing the notebook runs can
    hide it: imports of :data:`INTERPRETER_MODULES`, the frame and shell attributes of
    :data:`INTERPRETER_ATTRIBUTES`, the run-time lookups of :data:`INTERPRETER_NAMES` and
    ``sys.modules``; assignments to (or ``setattr``/``delattr`` on) an attribute of a module
    (``np.allclose = ...``); ``getattr`` with a name built at run time, or with a literal
    name from the lists above; strings naming them; magics that run code it cannot read
    (IPython's own rewriting of magic lines is read, so ``%matplotlib`` hides nothing); and
    reads of names that only the lesson's hidden tests bind (``expected``), unless the
    notebook binds them somewhere itself (``bound``). None is needed by an exercise; each is
    flagged for the instructor's review, not scored.

    Used in: every submission of every lesson (grading).
    """
    import ast

    source = pysource.python_source(source)
    try:
        tree = pysource.parse(source)
    except pysource.Unparseable:
        return ["is too deep for the grader to read"]
    except SyntaxError:
        return []  # the kernel cannot run it either: the cell's SyntaxError is its grade
    found: set[str] = set()

    def root(node: Any) -> str | None:
        while isinstance(node, ast.Attribute | ast.Subscript):
            node = node.value
        return node.id if isinstance(node, ast.Name) else None

    def text(node: Any) -> str | None:
        return (
            node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None
        )

    # names a ``for`` loop takes from a literal tuple or list of strings: known, not computed
    literal_loops: dict[str, list[str]] = {}
    magic_calls: set[int] = set()  # get_ipython() calls IPython wrote for a magic line
    allowed_setattr: set[int] = set()  # object.__setattr__(self, ...) in a frozen dataclass
    membership: set[int] = set()  # sys.modules in `"name" in sys.modules`
    called: set[int] = set()  # names in call position: getattr(x, "a") is read as x.a
    for n in ast.walk(tree):
        if isinstance(n, ast.Call):
            called.add(id(n.func))
        if isinstance(n, ast.For) and isinstance(n.target, ast.Name):
            items = n.iter.elts if isinstance(n.iter, ast.Tuple | ast.List) else None
            if items is not None and all(text(x) is not None for x in items):
                literal_loops.setdefault(n.target.id, []).extend(text(x) for x in items)
        if (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and isinstance(n.func.value, ast.Call)
            and isinstance(n.func.value.func, ast.Name)
            and n.func.value.func.id == "get_ipython"
            and n.func.attr in ("run_line_magic", "run_cell_magic", "system", "getoutput")
        ):
            magic_calls.add(id(n.func.value.func))
            name = text(n.args[0]) if n.args else None
            arg = text(n.args[1]) if len(n.args) > 1 else None
            harmless = name == "load_ext" and (arg or "").strip() in HARMLESS_EXTENSIONS
            if n.func.attr == "run_line_magic" and name in CODE_LINE_MAGICS and not harmless:
                found.add(f"runs %{name}")
            elif n.func.attr == "run_cell_magic" and name is not None:
                body = text(n.args[2]) if len(n.args) > 2 else None
                if name in PYTHON_CELL_MAGICS and body is not None:
                    found |= set(interpreter_access(body, module_aliases, test_names, bound))
                elif name not in HARMLESS_CELL_MAGICS:
                    found.add(f"runs %%{name}")
        if (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr == "__setattr__"
            and isinstance(n.func.value, ast.Name)
            and n.func.value.id == "object"
            and n.args
            and isinstance(n.args[0], ast.Name)
            and n.args[0].id == "self"
        ):
            allowed_setattr.add(id(n.func))
        if (  # "google.colab" in sys.modules: the setup cell's own test, reads nothing
            isinstance(n, ast.Compare)
            and text(n.left) is not None
            and len(n.ops) == 1
            and isinstance(n.ops[0], ast.In | ast.NotIn)
            and isinstance(n.comparators[0], ast.Attribute)
            and n.comparators[0].attr == "modules"
            and root(n.comparators[0]) == "sys"
        ):
            membership.add(id(n.comparators[0]))
    aliases = module_aliases | _import_bindings(source, modules_only=True)

    def attribute(name: str, base: Any, store: bool, shown: str, node: Any = None) -> None:
        if name in INTERPRETER_ATTRIBUTES:
            found.add(f"uses .{name}")
        if name == "modules" and root(base) == "sys" and id(node) not in membership:
            found.add("uses sys.modules")
        if store and root(base) in aliases and not shown.startswith(SETTING_PREFIXES):
            found.add(f"replaces {shown}")

    for n in ast.walk(tree):
        if isinstance(n, ast.Import | ast.ImportFrom):
            mods = [a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""]
            for m in mods:
                hit = next(
                    (x for x in INTERPRETER_MODULES if m == x or m.startswith(x + ".")), None
                )
                display_only = isinstance(n, ast.ImportFrom) and all(
                    a.name == "display" for a in n.names
                )
                if (
                    hit
                    and not m.startswith("IPython.display")
                    and not (m == "IPython" and display_only)
                ):
                    found.add(f"imports {hit}")
        elif isinstance(n, ast.Attribute):
            if id(n) not in allowed_setattr:
                store = isinstance(n.ctx, ast.Store | ast.Del)
                attribute(n.attr, n.value, store, ast.unparse(n), n)
        elif (
            isinstance(n, ast.Name)
            and isinstance(n.ctx, ast.Load)
            and id(n) not in called
            and n.id in ("getattr", "hasattr", "setattr", "delattr", "exit", "quit")
        ):
            # getattr handed to reduce/map walks attributes no reading can name; IPython's
            # exit helper holds the shell
            found.add(f"uses {n.id} as a value")
        elif isinstance(n, ast.ClassDef):
            for item in n.body:
                names = [item.name] if isinstance(item, ast.FunctionDef) else []
                if isinstance(item, ast.Assign | ast.AnnAssign):
                    targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                    names = [t.id for t in targets if isinstance(t, ast.Name)]
                for name in names:
                    if name in LIBRARY_PROTOCOLS:
                        found.add(f"defines {name}")
        elif isinstance(n, ast.keyword) and n.arg == "capture_locals":
            found.add("uses capture_locals")  # traceback's copy of every frame's variables
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
            fn = n.func.id
            if fn in ("getattr", "hasattr", "setattr", "delattr") and len(n.args) > 1:
                obj, key = n.args[0], n.args[1]
                names = [text(key)] if text(key) is not None else None
                if names is None and isinstance(key, ast.Name) and key.id in literal_loops:
                    names = literal_loops[key.id]
                if names is None:
                    # an attribute name built at run time: no reading of the code can say which
                    found.add(f"uses {fn} with a computed attribute name")
                else:
                    store = fn in ("setattr", "delattr")
                    for name in names:
                        attribute(name, obj, store, f"{ast.unparse(obj)}.{name}")
                if fn in ("setattr", "delattr") and root(obj) in aliases:
                    found.add(f"replaces an attribute of {root(obj)} ({fn})")
        elif (
            isinstance(n, ast.Name)
            and n.id in INTERPRETER_BINDINGS
            and isinstance(n.ctx, ast.Store | ast.Del)
        ):
            found.add(f"binds {n.id}")
        elif isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and (
            n.name in INTERPRETER_BINDINGS
        ):
            found.add(f"binds {n.name}")
        elif text(n) in INTERPRETER_STRINGS:
            found.add(f"names {text(n)} in a string")
    unbound = _unbound_names(source)
    magic_only = all(
        id(x) in magic_calls
        for x in ast.walk(tree)
        if isinstance(x, ast.Name) and x.id == "get_ipython"
    )
    if magic_only:
        unbound.discard("get_ipython")
    for name in sorted(unbound & (INTERPRETER_NAMES | test_names) - bound):
        found.add(
            f"reads {name}, which only the tests define" if name in test_names else f"uses {name}"
        )
    return sorted(found)


def _names_used(source: str, names: set[str]) -> set[str]:
    """Return the ``names`` that ``source`` reads without binding them itself."""
    return _unbound_names(source) & names


def _bound_anywhere(node: Any) -> set[str]:
    """Return every name ``node`` or anything inside it binds, in any scope (over-approximated)."""
    import ast

    bound = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            bound.add(n.id)
        elif isinstance(n, ast.alias):
            bound.add(n.asname or n.name.split(".")[0])
        elif isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(n.name)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
        elif isinstance(n, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and n.name:
            bound.add(n.name)
        elif isinstance(n, ast.MatchMapping) and n.rest:
            bound.add(n.rest)
    return bound


def _eager_loads(node: Any) -> set[str]:
    """Return the names ``node`` reads when it runs (function and generator bodies run later)."""
    import ast

    found, todo = set(), [node]
    while todo:
        n = todo.pop()
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            # decorators and defaults run now, the body when called
            todo += [*getattr(n, "decorator_list", []), *n.args.defaults]
            todo += [d for d in n.args.kw_defaults if d is not None]
            continue
        if isinstance(n, ast.GeneratorExp):
            todo.append(n.generators[0].iter)  # the only part a generator runs at once
            continue
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            found.add(n.id)
        todo.extend(ast.iter_child_nodes(n))
    return found


def _unbound_names(source: str) -> set[str]:
    """Return the names ``source`` reads that it does not bind itself (Python's scoping rules).

    A name is bound by the cell when it is assigned, imported, defined, a parameter, a loop,
    comprehension, ``with``/``except`` or walrus target in the scope it is read in, an
    enclosing function's, or the cell's top level (``global`` included). A top-level read in
    a statement before the first statement that binds the name also counts as unbound: it
    reads whatever the name meant before the cell ran. A cell that does not parse binds and
    reads nothing.
    """
    from autograder.cell_skip import global_symbols

    try:
        tree = pysource.parse(source)
        # to_module: names read that resolve to the cell's top level
        module_bound, to_module = global_symbols(source, declared_reads=False)
    except SyntaxError:
        return set()
    unbound = to_module - module_bound
    first_binding: dict[str, int] = {}
    for i, stmt in enumerate(tree.body):
        for name in _bound_anywhere(stmt):
            first_binding.setdefault(name, i)
    for i, stmt in enumerate(tree.body):
        unbound |= {n for n in _eager_loads(stmt) if first_binding.get(n, i) > i}
    return unbound


UNCHECKABLE = "is nested too deeply for the grader to check it for xlt_course use"
"""Why a solution cell the parser gives up on scores 0 (the kernel could still run it)."""


COURSE_MODULE_PATH = re.compile(r"xlt_course(\.[A-Za-z_]\w*)*")


def forbidden_course_use(
    source: str, course_names: set[str], allowed: set[str] = frozenset()
) -> list[str]:
    """Return why a solution cell's ``source`` uses ``xlt_course`` beyond its checks ([] if not).

    Flags imports of ``xlt_course`` (except :data:`ALLOWED_COURSE_MODULES`), reads of names
    that other cells bind from it (``course_names``, e.g. a hidden test's ``_reference`` or a
    module alias such as ``mt``) which the cell does not bind itself (a local variable, a
    parameter or an import of another module named ``mt`` is the student's own), and strings
    naming the package (``importlib.import_module("xlt_course.procrustes")``). Names in
    ``allowed`` (those the exercise's reference solution itself uses, e.g. a data type) pass.

    Used in: every exercise of every lesson (grading).
    """
    import ast

    source = pysource.python_source(source)  # a magic line must not hide the rest
    try:
        tree = pysource.parse(source)
    except pysource.Unparseable:
        return [UNCHECKABLE]  # the kernel may run what the grader cannot read
    except SyntaxError:
        return []
    found = set()
    for name in sorted(_course_bindings(source) - allowed):
        found.add(f"imports {name}")
    for name in _unbound_names(source) & ({*course_names, "xlt_course"} - allowed):
        found.add(f"uses {name}")
    for node in ast.walk(tree):
        # a module path (import_module("xlt_course.procrustes")), not prose in a docstring
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and COURSE_MODULE_PATH.fullmatch(node.value.strip())
            and not node.value.strip().startswith("xlt_course.checks")
        ):
            found.add("names the xlt_course package in a string")
    return sorted(found)


@dataclass
class Prepared:
    """A submission made gradable: the canonical notebook, flags, and exercises scored 0.

    ``review`` lists written answers left unchanged while the student wrote text in another
    cell: they wait for the instructor (pending), never a final 0.
    """

    nb: Any | None
    flags: list[str] = field(default_factory=list)
    zero: dict[str, str] = field(default_factory=dict)
    review: list[str] = field(default_factory=list)


DELETED_STUB_NOTE = (
    "# The answer cell was deleted from the submission: the lesson's stub stands in its place."
)
"""First line of the stub put back for a deleted code answer cell (the feedback shows it)."""


def normalised_text(source: str) -> str:
    """Return ``source`` with ``\\n`` line endings, no trailing whitespace and no blank ends."""
    lines = source.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip()


def _parse_cell(source: str) -> Any | None:
    """Return the AST of a code cell as IPython runs it (magics rewritten); None: no parse."""
    try:
        return pysource.parse(pysource.python_source(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError, pysource.Unparseable):
        return None


def _code_shape(source: str) -> str | None:
    """Return the ``ast.dump`` of a code cell's source, positions left out (None: no parse)."""
    import ast

    tree = _parse_cell(normalised_text(source))
    return None if tree is None else ast.dump(tree)


def same_locked_source(source: str, originals: set[str] | tuple, *, code: bool) -> bool:
    """Return whether a locked cell's ``source`` is one of ``originals``, up to formatting.

    Line endings and trailing whitespace never count (CRLF, an editor's trailing spaces);
    in a code cell, a reformatting that leaves the same syntax tree (ruff or black run by a
    format-on-save) does not count either. Any other change does.
    """
    text = normalised_text(source)
    if any(text == normalised_text(o) for o in originals):
        return True
    if not code:
        return False
    shape = _code_shape(source)
    return shape is not None and any(shape == _code_shape(o) for o in originals)


#: Syntax that Python 3.12 accepts and 3.11 rejects (PEP 695 aliases and generics).
_NEWER_SYNTAX = (
    (re.compile(r"^[ \t]*type[ \t]+[A-Za-z_]\w*[ \t]*(\[[^\]\n]*\])?[ \t]*=", re.M),
     "a `type X = ...` alias"),
    (re.compile(r"^[ \t]*(async[ \t]+)?def[ \t]+\w+[ \t]*\[", re.M), "a generic `def f[T](...)`"),
    (re.compile(r"^[ \t]*class[ \t]+\w+[ \t]*\[", re.M), "a generic `class C[T]`"),
)  # fmt: skip


def newer_syntax(source: str, message: str, version: Any = None) -> str | None:
    """Return why a cell that fails to parse here may be valid in a newer Python (None: no sign).

    Args:
        source: the cell's source.
        message: the SyntaxError's message.
        version: the notebook's ``metadata.language_info.version`` (where it last ran).

    Returns:
        e.g. "a `type X = ...` alias needs Python 3.12 or newer", or None when nothing says
        that the syntax is newer than the grader's Python.
    """
    if sys.version_info >= (3, 12):
        return None  # the grader reads every syntax the signs below point to
    for pattern, what in _NEWER_SYNTAX:
        if pattern.search(source):
            return f"{what} needs Python 3.12 or newer"
    if message.startswith("f-string"):
        return (  # or a plain mistake in it: say both
            "an f-string this Python cannot read: if the cell runs where you wrote it, it "
            "reuses its quotes, or holds a backslash or a comment, inside {...}, which needs "
            "Python 3.12 or newer"
        )
    m = re.match(r"(\d+)\.(\d+)", str(version or ""))
    if m and (int(m[1]), int(m[2])) > sys.version_info[:2]:
        return f"the notebook last ran on Python {version}, whose syntax may be newer"
    return None


GRADER_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
"""The grader's (and its kernels') Python version, as messages name it."""

#: HTML in a student's text that runs code when a page shows it: script-like elements (with
#: their content), ``on*=`` event handlers and ``javascript:`` URLs.
_ACTIVE_ELEMENTS = re.compile(
    r"<\s*(script|style|iframe|frame|frameset|object|embed|applet|base|meta|link|form)\b"
    r"[^>]*>(.*?<\s*/\s*\1\s*>)?|<\s*/\s*(script|style|iframe|object|embed|applet|form)\s*>",
    re.I | re.S,
)
_TAG = re.compile(r"<\s*[A-Za-z][^<>]*>", re.S)
_EVENT_ATTRIBUTE = re.compile(r"""[\s/"']on[a-z]+\s*=\s*("[^"]*"|'[^']*'|[^\s>]*)""", re.I)
_SCRIPT_URL = re.compile(r"(?:java|vb)script\s*:", re.I)
_SCRIPT_LINK = re.compile(r"(\]\(\s*<?)\s*(?:java|vb)script\s*:", re.I)


def strip_active_html(source: str) -> str:
    """Return a student's markdown ``source`` without the HTML that would run as script.

    Removes script-like elements, event-handler attributes and ``javascript:`` URLs (in tags
    and in markdown links); prose, markdown and harmless HTML (``<b>``, ``<img src>``) stay.
    """
    out = _ACTIVE_ELEMENTS.sub("", source)

    def clean_tag(m: re.Match) -> str:
        tag = _EVENT_ATTRIBUTE.sub(lambda a: a[0][0], m[0])
        return _SCRIPT_URL.sub("", tag)

    out = _TAG.sub(clean_tag, out)
    return _SCRIPT_LINK.sub(r"\1#", out)


#: Output types a feedback page would run as script (widgets need their JavaScript too).
ACTIVE_OUTPUTS = ("application/javascript", "application/vnd.jupyter.widget-view+json")


def sanitize_feedback_outputs(nb: Any, resources: Any) -> tuple[Any, Any]:
    """Remove what would run as script from the outputs of ``nb`` (nbconvert preprocessor).

    The feedback page shows what the student's code displayed: JavaScript and widget
    outputs are dropped (their text form stays), and HTML, SVG and markdown outputs lose
    script-like elements and event handlers (:func:`strip_active_html`).

    Returns:
        ``(nb, resources)``, as nbconvert's preprocessors do.
    """
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data")
            if not data:
                continue
            for kind in ACTIVE_OUTPUTS:
                data.pop(kind, None)
            for kind in ("text/html", "image/svg+xml", "text/markdown"):
                value = data.get(kind)
                if isinstance(value, list):
                    value = "".join(value)
                if isinstance(value, str):
                    data[kind] = strip_active_html(value)
    return nb, resources


def _definitions_only(source: str) -> set[str]:
    """Return the names a cell of only imports, functions and classes binds (else none)."""
    import ast

    tree = _parse_cell(source)
    if tree is None:
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"}
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            return set()  # it computes something: running it earlier could change what
    return names


def _names_read(source: str) -> set[str]:
    """Return the names a cell's code reads (none if it does not parse)."""
    import ast

    tree = _parse_cell(source)
    return set() if tree is None else {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def _definitions_before_use(cells: list[Any], origin: dict[int, int]) -> list[Any]:
    """Return ``cells`` with the student's definition cells moved before the answers using them.

    A reordered notebook is graded in the lesson's order, and the student's own cells go
    with the graded cell they followed. A cell of the student's that only defines functions
    or imports (a helper) and that an answer *below it in the student's notebook* uses may
    then land after that answer's tests: it moves to just before the first such answer, so
    the answer finds it as it did in Jupyter. Nothing else moves.

    Args:
        cells: the rebuilt notebook's cells, in the lesson's order.
        origin: ``id(cell)`` -> the cell's index in the submission (graded and own cells).
    """
    out = list(cells)
    for cell in list(out):
        since = origin.get(id(cell))
        if since is None or cell.get("cell_type") != "code" or _nbgrader_meta(cell):
            continue
        names = _definitions_only(cell.source)
        if not names:
            continue
        here = next(i for i, c in enumerate(out) if c is cell)
        users = [
            i
            for i, c in enumerate(out[:here])
            if _nbgrader_meta(c).get("solution")
            and origin.get(id(c), -1) > since
            and names & _names_read(c.source)
        ]
        if users:
            out.insert(users[0], out.pop(here))
    return out


def prepare_submission(notebook: Path, layout: LessonLayout) -> Prepared:
    """Read a submitted notebook and rebuild it in the lesson's structure.

    - a missing, empty, non-JSON or non-notebook file is not graded (``nb`` is None);
      nbformat 3 (and older) is converted to 4;
    - every nbgrader cell is put back in the lesson's order with the lesson's metadata: a
      deleted cell comes back from the lesson (a deleted solution as the blank stub, placed
      before the student's own cells that took its place, so that their code still runs
      after it as in Jupyter), an edited locked cell is restored (line endings, trailing
      whitespace and code reformatting are no edit), a duplicate keeps its first copy
      graded (later copies of a solution run as ordinary cells after it, as they would in
      Jupyter);
    - the student's own cells follow the nbgrader cell they followed (in a reordered
      notebook, a cell of theirs that only defines functions or imports moves before an
      answer that used it below it: :func:`_definitions_before_use`);
    - a written answer left as the lesson's placeholder, with the student's text in a cell
      beside it, is flagged and waits for the instructor (``review``);
    - HTML that would run as script is removed from the student's text (feedback pages);
    - the kernel is the lesson's;
    - a solution cell that uses ``xlt_course`` beyond ``checks`` scores 0 for its tests.

    Returns:
        A :class:`Prepared` with the notebook to grade and the flags, in a stable order.
    """
    import nbformat

    p = Prepared(None)
    if not notebook.is_file():
        p.flags.append("missing notebook")
        return p
    raw = notebook.read_bytes()
    if not raw.strip():
        p.flags.append("empty file")
        return p
    try:
        data = json.loads(raw.decode("utf-8-sig"))  # a BOM: Notepad, PowerShell 5.1
    except (UnicodeDecodeError, ValueError) as e:
        p.flags.append(f"invalid notebook: not JSON ({str(e).splitlines()[0][:120]})")
        return p
    major = data.get("nbformat") if isinstance(data, dict) else None
    if not isinstance(major, int) or not 1 <= major <= 4:
        p.flags.append(f"invalid notebook: nbformat {major!r} is not a Jupyter notebook version")
        return p
    try:
        with warnings.catch_warnings():  # e.g. duplicate cell ids: fixed below
            warnings.simplefilter("ignore")
            nb = nbformat.reads(raw.decode("utf-8-sig"), as_version=4)
        if major != 4:
            p.flags.append(f"nbformat {major} notebook converted to nbformat 4")
    except Exception as e:  # noqa: BLE001 - nbformat raises many types for bad input
        p.flags.append(f"invalid notebook: {str(e).splitlines()[0][:160]}")
        return p
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel is not None and kernel != layout.kernel:
        p.flags.append(f"kernel {kernel!r} replaced by {layout.kernel!r}")
    template = {_nbgrader_meta(c)["grade_id"]: c for c in layout.cells if _nbgrader_meta(c)}
    lesson_text = {normalised_text(c.source) for c in layout.cells}
    # the lesson's plain cells between each graded cell and the graded cell before it
    lead_in: dict[str, set[str]] = {}
    plain_run: set[str] = set()
    for t in layout.cells:
        gid = _nbgrader_meta(t).get("grade_id")
        if gid:
            lead_in[gid], plain_run = plain_run, set()
        else:
            plain_run.add(normalised_text(t.source))
    known: dict[str, Any] = {}
    at: dict[str, int] = {}  # where each graded cell stood in the submission
    origin: dict[int, int] = {}  # id() of a rebuilt cell -> its index in the submission
    above: dict[str, Any] = {}  # the cell right above each graded cell, as submitted
    attached: dict[str | None, list[Any]] = {None: []}
    anchor: str | None = None
    seen_order: list[str] = []
    for i, c in enumerate(nb.cells):
        gid = _nbgrader_meta(c).get("grade_id")
        if gid in template and gid not in known:
            known[gid] = c
            at[gid] = i
            above[gid] = nb.cells[i - 1] if i else None
            seen_order.append(gid)
            anchor = gid
            attached.setdefault(gid, [])
            continue
        if gid in template:
            p.flags.append(f"cell {gid} duplicated (first copy graded)")
            if _nbgrader_meta(template[gid]).get("locked"):
                continue
        elif gid:
            p.flags.append(f"unknown nbgrader cell {gid!r} graded as an ordinary cell")
        plain = copy.deepcopy(c)
        plain.get("metadata", {}).pop("nbgrader", None)
        origin[id(plain)] = i
        attached.setdefault(anchor, []).append(plain)
    reordered = seen_order != [g for g in layout.order if g in known]
    if reordered:
        p.flags.append("cells reordered (graded in the lesson's order)")

    def own_text(cell: Any) -> bool:
        """Return whether ``cell`` holds text the student wrote (not the lesson's)."""
        return (
            cell is not None
            and cell.get("cell_type") in ("markdown", "raw")
            and bool(cell.get("source", "").strip())
            and normalised_text(cell.source) not in lesson_text
        )

    cells = list(attached[None])
    mark = 0  # where the previous graded cell's attached cells start
    for gid in layout.order:
        t = template[gid]
        meta = _nbgrader_meta(t)
        c = known.get(gid)
        if c is None and meta.get("solution"):
            # The student's own cells attached to the previous graded cell may hold the
            # answer (retyped in a new cell, metadata cleared, merged into the cell above):
            # the stub goes before them, after the lesson's cells that lead into it, so
            # their definition wins as it does when the notebook runs top to bottom.
            p.flags.append(
                f"solution cell {gid} deleted (the lesson's stub put back before the "
                "student's own cells)"
            )
            c = copy.deepcopy(t)
            if c.cell_type == "code":
                c.source = f"{DELETED_STUB_NOTE}\n{c.source}"
            c.metadata = copy.deepcopy(t.metadata)
            pos = mark
            while pos < len(cells) and normalised_text(cells[pos].source) in lead_in[gid]:
                pos += 1
            cells.insert(pos, c)
            mark = pos + 1
            continue
        if c is None:
            p.flags.append(f"locked cell {gid} deleted (restored)")
            c = copy.deepcopy(t)
        else:
            c = copy.deepcopy(c)
            origin[id(c)] = at[gid]
            if meta.get("locked"):
                if not same_locked_source(
                    c.source, layout.locked_sources.get(gid, ()), code=t.cell_type == "code"
                ):
                    p.flags.append(f"locked cell {gid} edited (restored from the lesson)")
                c.source = t.source
            c.cell_type = t.cell_type
            if c.cell_type == "code":
                c.setdefault("outputs", [])
                c.setdefault("execution_count", None)
            else:
                c.pop("outputs", None)
                c.pop("execution_count", None)
        c.metadata = copy.deepcopy(t.metadata)
        cells.append(c)
        mark = len(cells)
        cells.extend(attached.get(gid, []))
    for gid in layout.order:
        t = template[gid]
        meta = _nbgrader_meta(t)
        c = known.get(gid)
        if not (meta.get("solution") and meta.get("grade")) or c is None:
            continue
        if normalised_text(c.source) == normalised_text(t.source):
            below = any(own_text(x) for x in attached.get(gid, []))
            over = own_text(above.get(gid))
            if below or over:
                where = " and ".join(w for w, b in (("above", over), ("below", below)) if b)
                p.flags.append(
                    f"{gid}: answer cell unchanged, but the student wrote text {where} it: "
                    "review by hand"
                )
                p.review.append(gid)
    if reordered:
        cells = _definitions_before_use(cells, origin)
    nb.cells = cells
    for i, c in enumerate(cells):
        # the feedback page shows the student's text as HTML: nothing in it may run there
        if c.cell_type == "markdown" and (_nbgrader_meta(c).get("solution") or own_text(c)):
            clean = strip_active_html(c.source)
            if clean != c.source:
                where = notebooks.cell_label(nb, i)
                p.flags.append(f"{where}: scripts or event handlers removed from its HTML")
                c.source = clean
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": layout.kernel,
    }
    for tests_id, sols in layout.solutions_of.items():
        reasons = []
        for sid in sols:
            c = known.get(sid)
            if c is not None:
                reasons += forbidden_course_use(
                    c.source, layout.course_names, layout.allowed.get(tests_id, set())
                )
        if UNCHECKABLE in reasons:
            p.zero[tests_id] = f"the solution {UNCHECKABLE}; simplify the expression"
            p.flags.append(f"{tests_id}: scored 0, solution {UNCHECKABLE}")
        elif reasons:
            why = "; ".join(sorted(set(reasons)))
            p.zero[tests_id] = f"the solution uses xlt_course's own implementation ({why})"
            p.flags.append(f"{tests_id}: scored 0, solution uses xlt_course ({why})")
    # the lesson's own cells (its plain code cells have no nbgrader role to tell them by)
    lesson_code = {c.source.strip() for c in layout.cells if c.cell_type == "code"}
    own = set()
    for c in nb.cells:
        with contextlib.suppress(SyntaxError, pysource.Unparseable):
            if c.cell_type == "code":
                own |= _bound_anywhere(pysource.parse(c.source))
    for i, c in enumerate(nb.cells):
        meta = _nbgrader_meta(c)
        if (
            c.cell_type != "code"
            or meta.get("locked")
            or meta.get("grade")
            and not meta.get("solution")
            or not meta.get("solution")
            and c.source.strip() in lesson_code
        ):
            continue  # the lesson's own cells
        what = interpreter_access(c.source, layout.module_aliases, layout.test_names, own)
        if what:
            where = meta.get("grade_id") or notebooks.cell_label(nb, i)
            p.flags.append(
                f"{where}: reaches into the grader ({'; '.join(what[:6])}): review by hand"
            )
    version = (nb.metadata.get("language_info") or {}).get("version")
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code" or c.source.strip() in lesson_code:
            continue
        try:
            pysource.parse(pysource.python_source(c.source))
        except SyntaxError as e:
            why = newer_syntax(c.source, str(e.msg or ""), version)
            if why:
                where = _nbgrader_meta(c).get("grade_id") or notebooks.cell_label(nb, i)
                p.flags.append(
                    f"{where}: SyntaxError under the grader's Python {GRADER_PYTHON} ({why})"
                )
        except (ValueError, RecursionError, MemoryError, pysource.Unparseable):
            pass  # flagged above when it matters (an answer the grader cannot check)
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i:03d}"
    p.nb = nb
    return p


GRADER_ERROR_FLAG = "GRADER ERROR (not the student's doing): not graded, regrade this submission"
"""First flag of a submission the grader itself failed on; it is not cached, so a rerun regrades it."""


def _grader_error(
    student: str, lesson: str, context: LessonContext, error: Exception, log: Path
) -> SubmissionResult:
    """Return the placeholder result of a submission the grader failed on, the traceback logged."""
    import traceback

    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as f:
        f.write(f"--- {student}/{lesson}\n{traceback.format_exc()}\n")
    max_score, points, manual = _template_max(context.template, lesson)
    why = f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"
    flags = [GRADER_ERROR_FLAG, f"{why} (traceback in {log})"]
    return SubmissionResult(
        student, lesson, 0.0, max_score, dict(points), flags, manual=dict(manual)
    )


UNSANDBOXED_FLAG = "UNSANDBOXED: graded without the sandbox (--unsafe-no-sandbox)"
"""First flag of every grade made with ``sandbox="none"``."""


def require_sandbox() -> None:
    """Raise :class:`GradingError` saying why when grading kernels cannot be sandboxed here."""
    ok, why = sandbox.sandbox_status()
    if not ok:
        raise GradingError(
            f"the grading sandbox does not work here ({why}). Install bubblewrap "
            "(`apt install bubblewrap`; a non-root grader also needs user namespaces), or "
            "grade with no isolation at all with --unsafe-no-sandbox (every grade is flagged)"
        )


# --- grading ---------------------------------------------------------------------------


@dataclass
class SubmissionResult:
    """The grade of one student's notebook for one lesson.

    Attributes:
        score: the autograded points (the exercises' tests cells).
        max_score: the most autograded points.
        points: tests grade id -> (points, max points).
        manual: written-answer grade id -> (points, max points), points None while the
            answer waits for the instructor (pending); an unanswered question scores 0.
    """

    student: str
    lesson: str
    score: float
    max_score: float
    points: dict[str, tuple[float, float]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    feedback: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    manual: dict[str, tuple[float | None, float]] = field(default_factory=dict)
    reused: bool = field(default=False, compare=False)  # this run took the cached grade

    @property
    def manual_points(self) -> float:
        """Return the points of the written answers already scored."""
        return sum(s for s, _ in self.manual.values() if s is not None)

    @property
    def manual_pending(self) -> float:
        """Return the most points the written answers awaiting the instructor can add."""
        return sum(m for s, m in self.manual.values() if s is None)

    @property
    def manual_max(self) -> float:
        """Return the most points of the written answers."""
        return sum(m for _, m in self.manual.values())

    @property
    def total(self) -> float:
        """Return the points known so far: autograded plus written answers already scored."""
        return self.score + self.manual_points


def _await_review(root: Path, lesson: str, student: str, gids: list[str]) -> None:
    """Mark written answers as waiting for the instructor in the job's gradebook.

    nbgrader scores an answer cell left as the placeholder 0; where the student wrote the
    answer in another cell (:attr:`Prepared.review`) it must wait for a person instead, in
    ``grades.csv`` and in formgrader (which lists it as needing a grade once merged).
    """
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", COURSE_ID) as gb:
        for gid in gids:
            try:
                g = gb.find_grade(gid, lesson, lesson, student)
            except MissingEntry:
                continue
            g.auto_score, g.needs_manual_grade = None, True
        gb.db.commit()


def _read_scores(root: Path, lesson: str, student: str) -> tuple[float, float, dict, dict]:
    """Return the autograded ``(score, max_score, points)`` and the written answers' points.

    A graded cell that is also a solution cell is a written answer, scored by the instructor:
    it is pending (points None) unless nbgrader already scored it (0 when left unanswered).
    """
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", COURSE_ID) as gb:
        sub = gb.find_submission_notebook(lesson, lesson, student)
        written = {c.name for c in sub.notebook.solution_cells}
        points, manual = {}, {}
        for g in sorted(sub.grades, key=lambda g: g.name):
            top = float(g.max_score or 0.0)
            if g.name not in written:
                points[g.name] = (float(g.score or 0.0), top)
            elif g.needs_manual_grade and g.manual_score is None:
                manual[g.name] = (None, top)
            else:
                manual[g.name] = (float(g.score or 0.0), top)
        score = sum(s for s, _ in points.values())
        return score, sum(m for _, m in points.values()), points, manual


def _template_max(template: Path, lesson: str) -> tuple[float, dict, dict]:
    """Return the most autograded points, and zero points for every tests and answer cell."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{template}", COURSE_ID) as gb:
        nb = gb.find_notebook(lesson, lesson)
        written = {c.name for c in nb.solution_cells}
        cells = {
            c.name: (0.0, float(c.max_score)) for c in sorted(nb.grade_cells, key=lambda c: c.name)
        }
        points = {k: v for k, v in cells.items() if k not in written}
        manual = {k: v for k, v in cells.items() if k in written}
        return sum(m for _, m in points.values()), points, manual


GRADER_VERSION = 6
"""Bumped when grading changes what a submission scores (stored results are then redone)."""


def _job_key(notebook: Path, template: Path, limits: GradeLimits) -> str:
    """Return what a cached result must match: grader, submission, lesson and limits."""
    from xlt_course.data.manifest import sha256_file

    sub = sha256_file(notebook) if notebook.is_file() else "missing"
    return f"v{GRADER_VERSION}:{sub}:{sha256_file(template)}:{limits}"


def _save_result(result: SubmissionResult, path: Path, key: str) -> None:
    payload = {
        "key": key,
        "student": result.student,
        "lesson": result.lesson,
        "score": result.score,
        "max_score": result.max_score,
        "points": {k: list(v) for k, v in result.points.items()},
        "manual": {k: list(v) for k, v in result.manual.items()},
        "flags": result.flags,
        "feedback": str(result.feedback) if result.feedback else None,
        "seconds": result.seconds,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True), encoding="utf-8")


def _load_result(path: Path) -> tuple[str, SubmissionResult] | None:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        r = SubmissionResult(
            d["student"],
            d["lesson"],
            float(d["score"]),
            float(d["max_score"]),
            {k: (float(v[0]), float(v[1])) for k, v in d["points"].items()},
            list(d["flags"]),
            Path(d["feedback"]) if d["feedback"] else None,
            dict(d.get("seconds", {})),
            {
                k: (None if v[0] is None else float(v[0]), float(v[1]))
                for k, v in d.get("manual", {}).items()
            },
        )
        return d["key"], r
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class LessonContext:
    """Per-lesson grading inputs: the gradebook template and the notebook layout."""

    template: Path
    layout: LessonLayout


def grade_one(
    student: str,
    lesson: str,
    notebook: Path,
    context: LessonContext,
    work: Path,
    limits: GradeLimits | None = None,
    hide: tuple[Path, ...] = (),
    worker: _Worker | None = None,
) -> SubmissionResult:
    """Autograde one submitted notebook in its own scratch course and generate feedback.

    The result is stored in ``work/LESSON/STUDENT.json``; grading the same submission again
    with the same lesson and limits returns it without running anything (resumable batches).
    ``hide`` lists folders the kernel must not see (besides the solutions and git history).
    """
    limits = limits or GradeLimits()
    record = work / lesson / f"{student}.json"
    key = _job_key(notebook, context.template, limits)
    cached = _load_result(record) if record.exists() else None
    if cached is not None and cached[0] == key:
        cached[1].reused = True
        return cached[1]
    own = worker is None
    worker = worker or _Worker(limits, work / "worker.log")
    try:
        result = _grade_fresh(student, lesson, notebook, context, work, limits, hide, worker)
    finally:
        if own:
            worker.close()
    _save_result(result, record, key)
    return result


def _write_unreadable_page(root: Path, result: SubmissionResult, reasons: list[str]) -> Path:
    """Write, in the job folder ``root``, the feedback page of a file that is no notebook.

    Returns:
        The page (``root/feedback/STUDENT/LESSON/LESSON.html``, as nbgrader places them).
    """
    import html

    if root.exists():
        shutil.rmtree(root)  # an earlier grade's job folder
    page = root / "feedback" / result.student / result.lesson / f"{result.lesson}.html"
    page.parent.mkdir(parents=True)
    items = "".join(f"<li>{html.escape(r)}</li>" for r in reasons) or "<li>unreadable</li>"
    page.write_text(
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(result.lesson)}: feedback</title></head><body>"
        f"<h1>{html.escape(result.lesson)}</h1>"
        "<p>Your submission could not be graded: the file is not a notebook this lesson "
        "can read.</p>"
        f"<ul>{items}</ul>"
        f"<p>Score: 0 / {result.max_score:g}. Open the lesson's notebook in Jupyter, run "
        "<code>xlt-course validate</code> on it, and submit that <code>.ipynb</code> file "
        "again (ask your instructor whether a resubmission is still possible).</p>"
        "</body></html>\n",
        encoding="utf-8",
    )
    return page


def _grade_fresh(
    student: str,
    lesson: str,
    notebook: Path,
    context: LessonContext,
    work: Path,
    limits: GradeLimits,
    hide: tuple[Path, ...],
    worker: _Worker,
) -> SubmissionResult:
    import secrets

    max_score, zero_points, zero_manual = _template_max(context.template, lesson)
    result = SubmissionResult(
        student, lesson, 0.0, max_score, dict(zero_points), manual=dict(zero_manual)
    )
    prepared = prepare_submission(notebook, context.layout)
    result.flags += prepared.flags
    root = work / lesson / student
    if prepared.nb is None:
        # the student still gets a page: why nothing could be graded
        result.feedback = _write_unreadable_page(root, result, prepared.flags)
        return result
    if root.exists():
        shutil.rmtree(root)
    _write_course(root)
    shutil.copy(context.template, root / "gradebook.db")
    (root / "source" / lesson).mkdir(parents=True)
    sub_dir = root / "submitted" / student / lesson
    sub_dir.mkdir(parents=True)
    (sub_dir / f"{lesson}.ipynb").write_text(notebooks.dumps(prepared.nb), encoding="utf-8")
    kernel_cwd = root / "autograded" / student / lesson
    for d in (kernel_cwd, root / "runtime", root / "kernel_home"):
        d.mkdir(parents=True, exist_ok=True)
    use_bwrap = limits.sandbox == "bwrap"
    if use_bwrap:
        require_sandbox()
        if worker.slot is not None and (worker.proc is None or worker.proc.poll() is not None):
            worker.proc = worker._start()  # builds the slot's sandbox (worker.box)
        box = worker.box
        if box is None:
            box = sandbox.kernel_sandbox(root, kernel_cwd, root / "kernel_home", list(hide))
    else:
        result.flags.insert(0, UNSANDBOXED_FLAG)
    layout = context.layout
    skip: list[str] = []
    if limits.skip_cells:
        from autograder import cell_skip

        cells = prepared.nb.cells
        sp = cell_skip.plan_skips(cells, layout.cells, layout.graded_sources)
        skip = [cells[i]["id"] for i in sp.skip]
        result.seconds["cells_skipped"] = float(len(sp.skip))
        result.seconds["cells_kept"] = float(sp.kept)
    plan = {
        "lesson": lesson,
        "student": student,
        "cell_timeout": limits.cell_timeout,
        "include_hidden": limits.include_hidden,
        "nonce": secrets.token_hex(8),
        "watch_modules": layout.watch_modules,
        "exercise_functions": layout.exercise_functions,
        "solutions_of": layout.solutions_of,
        "allowed_course_names": {k: sorted(v) for k, v in layout.allowed.items()},
        "hidden_imports": layout.hidden_imports,
        "kernel_verdict": sorted(layout.kernel_verdict),
        "zero": prepared.zero,
        "skip_cells": skip,
        "kernel_prefix": box.prefix if use_bwrap else [],
        "kernel_env": box.env if use_bwrap else {},
        "kernel_user": box.user if use_bwrap else [],
        "kernel_uid": box.uid if use_bwrap else None,
        "ipc": str(box.ipc / "kernel") if use_bwrap else "",
        # what a notebook looking for answers or other students' work would name
        "hidden_paths": [
            str(p)
            for p in (paths.solutions_dir(), paths.PACKAGE_DIR, paths.REPO_ROOT / "tests", *hide)
        ]
        + [str(root.resolve().parent.parent)],
    }
    (root / "plan.json").write_text(json.dumps(plan, indent=1), encoding="utf-8")
    t0 = time.perf_counter()
    code, status = worker.run(root)
    result.seconds["job"] = round(time.perf_counter() - t0, 3)
    if use_bwrap and box is not worker.box and box.ipc != (root / "runtime").resolve():
        shutil.rmtree(box.ipc, ignore_errors=True)
    if code == -9:
        result.flags.append(f"grading exceeded {limits.notebook_timeout:g} s and was stopped")
        return result
    if code != 0 or not status.get("autograde"):
        last = (status.get("error") or "?").strip().splitlines() or ["?"]
        result.flags.append("autograde error: " + last[-1][:200])
        return result
    result.flags += [f for f in status.get("flags", []) if f not in result.flags]
    result.seconds.update(status.get("timing", {}))
    if status.get("regraded_all_cells"):
        result.seconds["cells_skipped"] = 0.0
        result.seconds["regraded_all_cells"] = 1.0
    if prepared.review:
        _await_review(root, lesson, student, prepared.review)
    result.score, result.max_score, result.points, result.manual = _read_scores(
        root, lesson, student
    )
    html = root / "feedback" / student / lesson / f"{lesson}.html"
    if status.get("feedback") and html.exists():
        mark_pending(html, result)
        result.feedback = html
    else:
        result.flags.append("feedback not generated")
    return result


def mark_pending(html: Path, result: SubmissionResult) -> None:
    """Show the written answers awaiting the instructor as pending in a feedback page, not as 0.

    nbgrader prints a pending answer's score as 0 and counts it in the page's total; the
    page then says "pending" for it and how many points are still to be graded.
    """
    import re

    pending = sorted(g for g, (s, _) in result.manual.items() if s is None)
    if not pending:
        return
    text = html.read_text(encoding="utf-8")
    for gid in pending:
        g = re.escape(gid)
        text = re.sub(
            rf'(<a href="#{g}">Written response</a> \(Score: )[0-9.]+', r"\1pending", text
        )
        text = re.sub(
            rf'(<a name="{g}"></a>.*?Score: )[0-9.]+', r"\1pending", text, count=1, flags=re.S
        )
    note = f"; {result.manual_pending:g} points of written answers pending the instructor's grading"
    text = re.sub(r"(<h4>[^<]*\(Score: [0-9.]+ / [0-9.]+)\)", rf"\1{note})", text, count=1)
    html.write_text(text, encoding="utf-8")


def find_submissions(submissions: Path) -> list[tuple[str, str, Path]]:
    """List ``(student, lesson, notebook)`` from ``SUBMISSIONS/STUDENT/NN-topic/NN-topic.ipynb``.

    A lesson folder without its notebook is listed too (it grades as "missing notebook").
    The student id is the folder's name in Unicode NFC, as intake writes ids (macOS and its
    zips name folders in NFD: ``zoe`` + a combining diaeresis).
    """
    import unicodedata

    if not submissions.is_dir():
        raise FileNotFoundError(f"submissions folder {submissions} does not exist")
    known = set(lesson_names())
    found = []
    for student_dir in sorted(p for p in submissions.iterdir() if p.is_dir()):
        for lesson_dir in sorted(p for p in student_dir.iterdir() if p.is_dir()):
            if lesson_dir.name in known:
                student = unicodedata.normalize("NFC", student_dir.name)
                found.append((student, lesson_dir.name, lesson_dir / f"{lesson_dir.name}.ipynb"))
    return found


def in_grading_layout(submissions: Path) -> bool:
    """Return whether every notebook under ``submissions`` is ``STUDENT/NN-topic/NN-topic.ipynb``.

    A folder that mixes that layout with other names (``STUDENT/NN-topic.ipynb``, a copy
    suffix, a lesson that does not exist) goes through intake instead, which takes or
    reports every notebook; graded as the layout, the others would vanish unsaid.
    OS litter (``.ipynb_checkpoints``, ``__MACOSX``) does not count.
    """
    from autograder import intake

    if not submissions.is_dir():
        return False
    listed = find_submissions(submissions)
    expected = {nb for _, _, nb in listed}
    for nb in submissions.rglob("*.ipynb"):
        rel = nb.relative_to(submissions).as_posix()
        if intake.is_litter(rel):
            continue
        if nb not in expected or intake.unsafe_reason(rel):  # a hidden folder: intake says so
            return False
    return bool(listed)


GRADES_COLUMNS = (
    "student",
    "lesson",
    "auto_points",
    "auto_max",
    "manual_points",
    "manual_pending",
    "manual_max",
    "total",
    "max_total",
    "points",
    "flags",
)
"""Columns of ``grades.csv``. ``auto_*``: the exercises, graded by their tests.
``manual_points``: written answers already scored (an unanswered question scores 0);
``manual_pending``: the points of written answers awaiting the instructor (not counted as 0);
``total``: ``auto_points + manual_points``, the points known so far, out of ``max_total``.
``points``: per graded cell, ``grade_id=points/max`` (``pending/max`` for a pending answer)."""


def write_grades_csv(results: list[SubmissionResult], path: Path) -> None:
    """Write ``grades.csv`` (:data:`GRADES_COLUMNS`): one row per (student, lesson), sorted, byte-stable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(GRADES_COLUMNS)
        for r in sorted(results, key=lambda r: (r.student, r.lesson)):
            cells = {**r.points, **r.manual}
            pts = ";".join(
                f"{k}={'pending' if s is None else format(s, 'g')}/{m:g}"
                for k, (s, m) in sorted(cells.items())
            )
            numbers = (r.score, r.max_score, r.manual_points, r.manual_pending, r.manual_max)
            w.writerow(
                [
                    r.student,
                    r.lesson,
                    *(f"{x:g}" for x in numbers),
                    f"{r.total:g}",
                    f"{r.max_score + r.manual_max:g}",
                    pts,
                    "; ".join(r.flags),
                ]
            )


def grade(
    submissions: Path,
    out: Path,
    *,
    lessons: list[str] | None = None,
    students: list[str] | None = None,
    jobs: int | None = None,
    limits: GradeLimits | None = None,
    progress: bool = True,
    config: Path | None = None,
    shard: Any = None,
) -> list[SubmissionResult]:
    """Autograde every submission under ``submissions`` and write grades and feedback to ``out``.

    ``submissions`` is a folder ``STUDENT/NN-topic/NN-topic.ipynb``, or an LMS zip or folder
    in another layout, taken in by :func:`autograder.intake.collect` (name patterns from
    ``config``, default ``autograder/term.toml``; what it took and skipped goes to
    ``out/intake.json``). Jobs run in parallel (``jobs``, default: the cores), each in its own
    scratch course, and results are merged in sorted order, so ``grades.csv`` is the same
    whatever the scheduling. Writes ``out/grades.csv`` and
    ``out/feedback/STUDENT/NN-topic.html``. With ``shard`` (an
    :class:`autograder.shards.Shard`), only that shard's students are graded, and
    ``out/shard.json`` says what the shard holds, for :func:`autograder.shards.merge`.

    Returns:
        One :class:`SubmissionResult` per (student, lesson), sorted.
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from tqdm.auto import tqdm

    limits = limits or GradeLimits()
    if limits.sandbox == "bwrap":
        require_sandbox()  # before any work: grading never falls back to unconfined kernels
    out = Path(out).absolute()  # nbgrader resolves a relative course root against itself
    submissions = download = Path(submissions)
    from autograder import intake

    # intake.json keeps earlier batches graded into this folder (their late markers and LMS
    # ids feed the export, as their rows stay in grades.csv); read before anything is written
    saved = out / "intake.json"
    earlier = intake.read_saved(saved)
    if (submissions.is_file() and submissions.suffix.lower() == ".zip") or (
        submissions.is_dir() and not in_grading_layout(submissions)
    ):
        # an LMS download (zip, or a folder not purely in the grading layout): see intake.py
        from autograder import term_config

        unpacked = out / ".work" / "intake"
        taken = intake.collect(
            submissions,
            unpacked,
            lesson_names(),
            term_config.load_term_config(config),
            earlier=earlier,
        )
        intake.merge_saved(saved, taken)
        submissions = unpacked
    elif submissions.is_dir():
        intake.merge_saved(saved, intake.folder_records(find_submissions(submissions)))
    if students is not None:
        import unicodedata

        students = [unicodedata.normalize("NFC", s) for s in students]
    batch = [
        j
        for j in find_submissions(submissions)
        if (lessons is None or j[1] in lessons) and (students is None or j[0] in students)
    ]
    todo = [j for j in batch if shard is None or shard.owns(j[0])]
    work = out / ".work"
    # The kernels see neither the submissions nor the grading output (other students' work).
    hide = (Path(submissions).resolve(), out.resolve())
    if download.is_dir() and download.resolve() != hide[0]:
        hide += (download.resolve(),)  # the LMS download itself (a zip file is not hidden yet)
    n_jobs = max(1, jobs or os.cpu_count() or 1)
    results = []
    idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
    threads = max(1, (os.cpu_count() or 1) // n_jobs)
    slots = work / "jobs" / "_slots"
    workers = [
        _Worker(
            limits,
            work / "jobs" / f"worker-{i}.log",
            threads,
            slot=slots / f"worker-{i}" if limits.sandbox == "bwrap" and limits.prewarm else None,
            hide=hide,
        )
        for i in range(n_jobs)
    ]
    for w in workers:
        w.proc = w._start()  # now: the kernel servers import while the lessons are prepared
    for w in workers:
        idle.put(w)
    # Each lesson's template is prepared once, in the background; a lesson's submissions are
    # graded as soon as its own template is ready (lesson by lesson, so grading starts early).
    prep = ThreadPoolExecutor(max_workers=n_jobs)
    contexts = {n: prep.submit(_lesson_context, n, work) for n in sorted({j[1] for j in todo})}

    def job(student: str, lesson: str, nb: Path) -> SubmissionResult:
        context = contexts[lesson].result()  # a lesson that cannot be prepared stops the batch
        w = idle.get()
        try:
            return grade_one(student, lesson, nb, context, work / "jobs", limits, hide, w)
        except Exception as e:  # a grader bug costs one submission, never the batch
            return _grader_error(student, lesson, context, e, work / "jobs" / "errors.log")
        finally:
            idle.put(w)

    pool = ThreadPoolExecutor(max_workers=n_jobs)
    try:
        futures = [pool.submit(job, *j) for j in sorted(todo, key=lambda j: (j[1], j[0]))]
        for fut in tqdm(
            as_completed(futures),
            total=len(futures),
            desc="grading",
            unit="notebook",
            disable=not progress,
        ):
            results.append(fut.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        prep.shutdown(wait=True, cancel_futures=True)
        with ThreadPoolExecutor(max_workers=len(workers)) as closing:
            list(closing.map(lambda w: w.close(), workers))
    _copy_feedback(results, out)
    results.sort(key=lambda r: (r.student, r.lesson))
    # grades.csv covers every submission graded into this folder so far, not only this run
    # (so `--student X` regrades X and keeps the others).
    everything = {(r.student, r.lesson): r for r in _all_results(work / "jobs")}
    everything.update({(r.student, r.lesson): r for r in results})
    if shard is not None:  # a folder graded as another shard before keeps that out
        everything = {k: r for k, r in everything.items() if shard.owns(k[0])}
    write_grades_csv(list(everything.values()), out / "grades.csv")
    write_summary(list(everything.values()), out)
    if shard is not None:
        _write_shard_file(out, shard, batch, limits)
    return results


FEEDBACK_KEPT_FLAG = "feedback page changed since it was written: kept"
"""Starts the flag of a result whose page in ``OUT/feedback`` was edited (it is kept)."""


def _copy_feedback(results: list[SubmissionResult], out: Path) -> None:
    """Copy each result's feedback page to ``out/feedback/STUDENT/NN-topic.html``.

    A page is written only when it is new (a result graded or regraded since the last copy,
    or no page there yet). A page on disk that differs from the last copy (edited after
    review) is never replaced: the new page goes beside it as ``NN-topic.regraded.html``
    and the result is flagged. What was copied is kept in ``out/.work/feedback.json``
    (page -> checksum of the copy).
    """
    from xlt_course.data.manifest import sha256_file

    ledger = out / ".work" / "feedback.json"
    try:
        copied = json.loads(ledger.read_text(encoding="utf-8")) if ledger.is_file() else {}
    except (OSError, ValueError):
        copied = {}
    for r in results:
        if r.feedback is None or not Path(r.feedback).is_file():
            continue
        dest = out / "feedback" / r.student / f"{r.lesson}.html"
        name = dest.relative_to(out).as_posix()
        new = sha256_file(r.feedback)
        if dest.is_file():
            on_disk = sha256_file(dest)
            if copied.get(name) == new or on_disk == new:
                # nothing new (a stored result): the page there stays, edited or not
                copied[name] = new
                r.feedback = dest
                continue
            if copied.get(name) != on_disk:  # edited since the last copy (or never copied)
                beside = dest.with_name(f"{r.lesson}.regraded.html")
                shutil.copy(r.feedback, beside)
                copied[name] = new
                r.flags.append(
                    f"{FEEDBACK_KEPT_FLAG}; the regraded page is {beside.relative_to(out)}"
                )
                r.feedback = beside
                continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(r.feedback, dest)
        copied[name] = new
        r.feedback = dest
    ledger.parent.mkdir(parents=True, exist_ok=True)
    ledger.write_text(json.dumps(copied, indent=1, sort_keys=True), encoding="utf-8")


def _write_shard_file(out: Path, shard: Any, batch: list, limits: GradeLimits) -> None:
    """Write ``out/shard.json``: what this shard of ``batch`` graded, for the merge."""
    from xlt_course.data.manifest import sha256_file

    names = sorted({lesson for _, lesson, _ in batch})
    releases = {n: sha256_file(paths.solutions_dir() / n / f"{n}.ipynb") for n in names}
    shard.write_file(  # (autograder.shards imports this module, not the reverse)
        out,
        releases=releases,
        grader=f"v{GRADER_VERSION}:{limits}",
        students=sorted({student for student, _, _ in batch}),
        submissions=sorted({(student, lesson) for student, lesson, _ in batch}),
    )


def _lesson_context(lesson: str, work: Path) -> LessonContext:
    """Return the lesson's gradebook template and layout, regenerated when solutions/ changed."""
    from xlt_course.data.manifest import sha256_file

    scratch = work / "_templates" / lesson
    release = work / "_release" / lesson
    src_hash = sha256_file(paths.solutions_dir() / lesson / f"{lesson}.ipynb")
    stamp = scratch / "solution.sha256"
    fresh = stamp.exists() and stamp.read_text() == src_hash and (scratch / "gradebook.db").exists()
    if not fresh or not (release / f"{lesson}.ipynb").exists():
        if scratch.exists():
            shutil.rmtree(scratch)
        generate_lesson(lesson, work / "_release", scratch=scratch)
        stamp.write_text(src_hash)
    return LessonContext(
        scratch / "gradebook.db", lesson_layout(lesson, release / f"{lesson}.ipynb")
    )


def _all_results(jobs_dir: Path) -> list[SubmissionResult]:
    found = []
    for path in sorted(jobs_dir.glob("*/*.json")):
        loaded = _load_result(path)
        if loaded is not None:
            found.append(loaded[1])
    return found


# --- The summary ------------------------------------------------------------------------


def write_summary(results: list[SubmissionResult], out: Path) -> list[Path]:
    """Plot a score histogram per lesson into ``out/summary/scores-NN-topic.png``.

    Returns:
        The written image paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    folder = out / "summary"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for lesson in sorted({r.lesson for r in results}):
        rows = [r for r in results if r.lesson == lesson]
        max_score = max(r.max_score for r in rows) or 1.0
        flagged = sum(bool(r.flags) for r in rows)
        fig, ax = plt.subplots(figsize=(5, 3))
        bins = [x - 0.5 for x in range(int(max_score) + 2)] if max_score <= 20 else 20
        ax.hist([r.score for r in rows], bins=bins, color="#4477aa", edgecolor="white")
        if max_score <= 20:
            ax.set_xticks(range(int(max_score) + 1))
        ax.set_xlabel(f"autograded score (of {max_score:g})")
        ax.set_ylabel("submissions")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{lesson}: {len(rows)} submissions, {flagged} flagged")
        fig.tight_layout()
        path = folder / f"scores-{lesson}.png"
        fig.savefig(path, dpi=100, metadata={"Software": None})
        plt.close(fig)
        written.append(path)
    return written
