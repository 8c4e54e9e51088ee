"""Pre-warmed kernels never carry anything from one student to the next.

Grading with one job, the same kernel server forks the kernels of two students in a row.
The first notebook leaves everything it can behind (files in every writable folder, an
unreadable folder, a background process, a System V shared memory segment, module
globals, an environment variable); the second looks for all of it and finds nothing.
"""

from __future__ import annotations

import json
import re

import nbformat
import pytest
from conftest import solution

from autograder import grading, notebooks, paths

LESSON = "00-setup"
LIMITS = grading.GradeLimits(notebook_timeout=400, cell_timeout=25, memory_mb=2500)

LEAVE = r"""
import builtins, ctypes, os, subprocess, sys, types
import numpy
import xlt_course
for folder in (".", "/tmp", "/dev/shm", os.path.expanduser("~")):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "left-by-a.txt"), "w") as f:
        f.write("answers")
os.makedirs("/tmp/locked/inner", exist_ok=True)
open("/tmp/locked/inner/x", "w").close()
os.chmod("/tmp/locked/inner", 0)
os.chmod("/tmp/locked", 0)
subprocess.Popen(
    ["sh", "-c", "while true; do echo x > /tmp/daemon-of-a; sleep 0.05; done"],
    start_new_session=True,
)
libc = ctypes.CDLL(None)
shm = libc.shmget(0x5A17, 4096, 0o1000 | 0o666)  # IPC_CREAT
numpy.left_by_a = 1
xlt_course.left_by_a = 1
builtins.left_by_a = 1
sys.modules["left_by_a"] = types.ModuleType("left_by_a")
os.environ["LEFT_BY_A"] = "1"
print("LEFT", shm)
"""

LOOK = r"""
import builtins, ctypes, json, os, sys, time
import numpy
import xlt_course
time.sleep(0.3)  # a surviving loop would have rewritten its file by now
found = [
    p
    for p in ("left-by-a.txt", "/tmp/left-by-a.txt", "/dev/shm/left-by-a.txt",
              os.path.expanduser("~/left-by-a.txt"), "/tmp/locked", "/tmp/daemon-of-a")
    if os.path.lexists(p)
]
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        continue
    if b"daemon-of-a" in cmd:
        found.append("process " + pid)
if ctypes.CDLL(None).shmget(0x5A17, 0, 0) >= 0:
    found.append("shm")
found += [n for n, o in (("numpy", numpy), ("xlt_course", xlt_course), ("builtins", builtins))
          if hasattr(o, "left_by_a")]
found += [n for n in ("left_by_a",) if n in sys.modules]
found += [n for n in ("LEFT_BY_A",) if n in os.environ]
print("LEAKCHECK" + json.dumps(found))
"""


def _notebook(extra: str) -> nbformat.NotebookNode:
    nb = notebooks.read_notebook(paths.lessons_dir() / LESSON / f"{LESSON}.ipynb")
    ref = notebooks.grade_cells(notebooks.read_notebook(solution(LESSON)))
    for gid, cell in notebooks.grade_cells(nb).items():
        if ref[gid].metadata["nbgrader"].get("solution"):
            cell.source = ref[gid].source
    nb.cells.append(nbformat.v4.new_code_cell(extra))
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory, built_data):
    base = tmp_path_factory.mktemp("prewarm")
    for student, extra in (("a_leaves", LEAVE), ("b_looks", LOOK)):
        dest = base / "subs" / student / LESSON / f"{LESSON}.ipynb"
        dest.parent.mkdir(parents=True)
        dest.write_text(notebooks.dumps(_notebook(extra)), encoding="utf-8")
    results = grading.grade(base / "subs", base / "out", jobs=1, limits=LIMITS, progress=False)
    return base / "out", {r.student: r for r in results}


def test_next_student_finds_nothing_of_the_previous(graded):
    out, r = graded
    page = (out / "feedback" / "a_leaves" / f"{LESSON}.html").read_text(encoding="utf-8")
    assert "LEFT" in page  # the first notebook did run its cell
    page = (out / "feedback" / "b_looks" / f"{LESSON}.html").read_text(encoding="utf-8")
    found = re.search(r"LEAKCHECK(\[.*?\])", page.replace("&quot;", '"'))
    assert found is not None, "the second notebook's check did not run"
    assert json.loads(found.group(1)) == []
    # both kernels came from the one kernel server, and both notebooks score full marks
    log = (out / ".work" / "jobs" / "_slots" / "worker-0" / "kernels.log").read_text()
    assert log.count("kernel-connection.json") >= 2
    assert [r[s].score for s in ("a_leaves", "b_looks")] == [r["a_leaves"].max_score] * 2


def test_without_prewarm_kernels_start_the_old_way(tmp_path, built_data):
    from dataclasses import replace

    dest = tmp_path / "subs" / "c" / LESSON / f"{LESSON}.ipynb"
    dest.parent.mkdir(parents=True)
    dest.write_text(notebooks.dumps(_notebook("print('plain')")), encoding="utf-8")
    out = tmp_path / "out"
    (res,) = grading.grade(
        tmp_path / "subs", out, jobs=1, limits=replace(LIMITS, prewarm=False), progress=False
    )
    assert res.score == res.max_score and not res.flags
    assert not (out / ".work" / "jobs" / "_slots").exists()
