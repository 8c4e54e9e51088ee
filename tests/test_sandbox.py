"""The grading sandbox attacked as a determined student would (issue 18), on lesson 00.

One batch holds a reference, a blank and a half-right submission next to one submission per
attack. Each attack fails (the exercise it tried to cheat scores as its answer deserves),
is flagged where the sandbox stopped it, and the batch finishes with every other grade
unchanged. Attacks write only inside the sandbox; the fork bomb is bounded (a few hundred
sleeping children, never an unbounded one).
"""

from __future__ import annotations

import os
import re
import sys

import nbformat
import pytest
from conftest import sandboxed_batch, solution

from autograder import cli, grading, notebooks, paths, sandbox

LESSON = "00-setup"
RELEASE = paths.lessons_dir() / LESSON / f"{LESSON}.ipynb"
LIMITS = grading.GradeLimits(notebook_timeout=400, cell_timeout=40, memory_mb=2500)
SECRET = "grader-secret-0b1f"  # in the grader's environment: must never reach a kernel

WRONG_TOP_K = "def top_k(scores, k):\n    return np.argsort(scores, axis=1)[:, :k]\n"

# Reads the instructor's notebook wherever a path leads to it, then defines the answer.
STEAL = """
import json, os
def _steal(path):
    cells = json.load(open(path))["cells"]
    src = [''.join(c["source"]) for c in cells
           if c["metadata"].get("nbgrader", {}).get("grade_id") == "ex1_cosine"][0]
    exec(src, globals())
"""

PROC_WALK = (
    STEAL
    + """
repo = {repo!r}
target = "/solutions/00-setup/00-setup.ipynb"
for pid in sorted(os.listdir("/proc"), key=lambda p: (not p.isdigit(), p)):
    if not pid.isdigit() or int(pid) == os.getpid():
        continue
    for link in ("cwd", "root"):
        base = f"/proc/{pid}/{link}"
        os.listdir(base)  # a process outside the sandbox: PermissionError or not there
        here = os.readlink(base)
        for cand in (base + repo + target, base + target, here + target):
            if os.path.exists(cand):
                _steal(cand)
if "cosine_similarity_matrix" not in globals():
    _steal(repo + target)  # FileNotFoundError: not in the sandbox
""".replace("{repo!r}", repr(str(paths.REPO_ROOT)))
)

SYMLINKS = (
    STEAL
    + """
repo = {repo!r}
os.symlink(repo + "/solutions", "solutions-link")
os.symlink(os.path.join(os.getcwd(), "..", "..", "..", "gradebook.db"), "gradebook-link")
_steal(os.path.realpath("solutions-link/00-setup/00-setup.ipynb"))
""".replace("{repo!r}", repr(str(paths.REPO_ROOT)))
)

ENV_AND_FDS = """
import os
seen = dict(os.environ)
fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass
print("ENV", sorted(seen.items()))  # a leaked secret would show in the feedback
print("FDS", fds)
leaks = [k for k in seen if k.startswith("XLT_" + "GRADER")]
opened = [p for p in fds.values() if p.startswith("/") and not p.startswith(("/dev/", "/tmp/"))]
assert not leaks and not opened, (leaks, opened)
for v in ("JPY_PARENT_PID", "JUPYTER_RUNTIME_DIR"):
    assert v not in seen, v
print(f"kernel uid={os.getuid()} gid={os.getgid()}")
"""


def _other_students(subs, out) -> str:
    return f"""
import pathlib
for base in ({str(subs)!r}, {str(out)!r}):
    for p in pathlib.Path(base).rglob("*.ipynb"):
        p.write_text("vandalised")
open({str(subs / "ref" / LESSON / (LESSON + ".ipynb"))!r}).read()
"""


def _gradebook(out) -> str:
    return f"""
import glob, os, sqlite3
here = os.getcwd()
books = glob.glob({str(out)!r} + "/.work/**/gradebook.db", recursive=True)
books.append(os.path.join(here, "..", "..", "..", "gradebook.db"))
for path in books:
    open(os.path.abspath(path), "r+b").close()
    db = sqlite3.connect("file:" + path + "?mode=rw", uri=True)
    db.execute("UPDATE grade SET manual_score = 1")
    db.commit()
"""


NETWORK = """
import socket
socket.create_connection(("1.1.1.1", 53), timeout=3)
"""

FORK_BOMB = """
import subprocess
children = []
for _ in range(400):  # bounded: a few hundred sleeping children, never unbounded
    children.append(subprocess.Popen(["sleep", "120"]))
"""

DISK_FILLER = """
import json, os, ipykernel.connect
chunk = b"x" * (1 << 20)
for where in ("filler.bin", "/tmp/filler.bin"):
    try:
        with open(where, "wb") as f:
            for _ in range(2048):  # 2 GB if nothing stops it
                f.write(chunk)
    except OSError as e:
        print(where, "stopped:", e)
# the one host folder the kernel sees (its sockets): write-protected once the kernel started
ipc = json.load(open(ipykernel.connect.get_connection_file()))["ip"]
with open(os.path.join(os.path.dirname(ipc), "filler.bin"), "wb") as f:
    f.write(chunk)
"""

ROOT_CHECK = "import os\nassert os.getuid() != 0 and os.geteuid() != 0, 'the kernel runs as root'\n"


def _ref(grade_id: str) -> str:
    """Return the reference answer as a student would write it (no solution markers)."""
    src = notebooks.grade_cells(notebooks.read_notebook(solution(LESSON)))[grade_id].source
    return "".join(ln for ln in src.splitlines(True) if "### " not in ln)


def _student_nb(ex1: str = "ref", ex2: str = "ref") -> nbformat.NotebookNode:
    nb = notebooks.read_notebook(RELEASE)
    cells = notebooks.grade_cells(nb)
    for gid, src in (("ex1_cosine", ex1), ("ex2_top_k", ex2)):
        cells[gid].source = _ref(gid) if src == "ref" else src
    return nb


def _with_cell(nb, after: str, source: str):
    i = next(
        i
        for i, c in enumerate(nb.cells)
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == after
    )
    nb.cells.insert(i + 1, nbformat.v4.new_code_cell(source))
    return nb


def _submit(subs, student, nb) -> None:
    dest = subs / student / LESSON / f"{LESSON}.ipynb"
    dest.parent.mkdir(parents=True)
    dest.write_text(nbformat.writes(nb), encoding="utf-8")


@pytest.fixture(scope="module")
def attacked(tmp_path_factory, built_data):
    subs, out = sandboxed_batch(tmp_path_factory, "attacks")
    subs.mkdir()
    _submit(subs, "ref", notebooks.read_notebook(solution(LESSON)))
    _submit(subs, "blank", notebooks.read_notebook(RELEASE))
    _submit(subs, "partial", _student_nb(ex2="import numpy as np\n" + WRONG_TOP_K))
    # ex1 is left blank in the stealing attacks: it scores only if the theft works
    _submit(subs, "procwalk", _student_nb(ex1=PROC_WALK))
    _submit(subs, "symlinks", _student_nb(ex1=SYMLINKS))
    _submit(subs, "envfds", _student_nb(ex1=ENV_AND_FDS + _ref("ex1_cosine")))
    _submit(
        subs, "others", _with_cell(_student_nb(), "ex1_cosine_tests", _other_students(subs, out))
    )
    _submit(subs, "gradebook", _with_cell(_student_nb(ex2=""), "ex1_cosine_tests", _gradebook(out)))
    _submit(subs, "network", _with_cell(_student_nb(), "ex1_cosine_tests", NETWORK))
    _submit(subs, "forkbomb", _with_cell(_student_nb(), "ex1_cosine_tests", FORK_BOMB))
    _submit(subs, "diskfiller", _with_cell(_student_nb(), "ex1_cosine_tests", DISK_FILLER))
    _submit(subs, "notroot", _student_nb(ex1=ROOT_CHECK + _ref("ex1_cosine")))
    os.environ["XLT_GRADER_SECRET"] = SECRET
    try:
        results = grading.grade(subs, out, jobs=2, limits=LIMITS, progress=False)
    finally:
        del os.environ["XLT_GRADER_SECRET"]
    return subs, out, {r.student: r for r in results}


def _page(out, student: str) -> str:
    return (out / "feedback" / student / f"{LESSON}.html").read_text(encoding="utf-8")


def _flags(r) -> str:
    return " | ".join(r.flags)


def test_the_batch_finishes_and_honest_grades_are_unchanged(attacked):
    subs, out, r = attacked
    assert len(r) == 12
    assert (r["ref"].score, r["ref"].flags) == (3, [])
    assert (r["blank"].score, r["partial"].score) == (0, 2)
    # nothing a kernel wrote reached another student's files or grade
    for p in subs.rglob("*.ipynb"):
        assert p.read_text(encoding="utf-8") != "vandalised", p
    ref_page = _page(out, "ref")
    assert "vandalised" not in ref_page and "cosine_similarity_matrix" in ref_page


def test_proc_walk_finds_no_solution(attacked):
    _, out, r = attacked
    assert r["procwalk"].points == {"ex1_cosine_tests": (0.0, 2.0), "ex2_top_k_tests": (1.0, 1.0)}
    assert "ex1_cosine was stopped by the sandbox" in _flags(r["procwalk"])
    page = _page(out, "procwalk")
    assert "BEGIN SOLUTION" not in page and "BEGIN HIDDEN TESTS" not in page


def test_planted_symlinks_lead_nowhere(attacked):
    _, out, r = attacked
    assert r["symlinks"].points["ex1_cosine_tests"] == (0.0, 2.0)
    assert "ex1_cosine was stopped by the sandbox" in _flags(r["symlinks"])
    # the links lived in the kernel's private working folder: none is left on the host
    assert not [p for p in out.rglob("*-link")]


def test_environment_and_file_descriptors_carry_nothing(attacked):
    _, out, r = attacked
    assert r["envfds"].score == 3, r["envfds"]
    page = _page(out, "envfds")
    assert SECRET not in page and "XLT_GRADER_SECRET" not in page
    assert "FDS" in page  # the probe ran and printed what it saw


def test_other_students_folders_are_out_of_reach(attacked):
    _, _, r = attacked
    assert r["others"].score == 3
    assert "was stopped by the sandbox" in _flags(r["others"])


def test_gradebook_is_out_of_reach(attacked):
    _, _, r = attacked
    assert r["gradebook"].points == {"ex1_cosine_tests": (2.0, 2.0), "ex2_top_k_tests": (0.0, 1.0)}
    assert "was stopped by the sandbox" in _flags(r["gradebook"])


def test_no_network(attacked):
    _, _, r = attacked
    assert r["network"].score == 3
    assert "Network is unreachable" in _flags(r["network"])


def test_fork_bomb_stops_at_the_cap(attacked):
    _, _, r = attacked
    assert r["forkbomb"].score == 3, r["forkbomb"]
    flags = _flags(r["forkbomb"])
    assert "Resource temporarily unavailable" in flags
    assert f"(cap {sandbox.MAX_PROCESSES};" in flags and "kernel restarted" in flags
    assert "kernel died" not in flags


def test_disk_filler_stops_at_the_cap(attacked):
    _, out, r = attacked
    assert r["diskfiller"].score == 3, r["diskfiller"]
    assert "was stopped by the sandbox" in _flags(r["diskfiller"])
    page = _page(out, "diskfiller")
    assert "stopped:" in page  # both writable folders are capped
    assert not [p for p in out.rglob("filler.bin")]


def test_kernels_never_run_as_root(attacked):
    _, out, r = attacked
    assert r["notroot"].score == 3, r["notroot"]
    uid = int(re.search(r"kernel uid=(\d+)", _page(out, "envfds"))[1])
    assert uid != 0
    if os.geteuid() == 0:
        assert uid >= sandbox.KERNEL_UID_BASE


def test_no_silent_fallback_without_a_sandbox(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "_STATUS", (False, "bwrap: no user namespaces"))
    subs = tmp_path / "subs"
    _submit(subs, "s1", notebooks.read_notebook(RELEASE))
    with pytest.raises(grading.GradingError, match="--unsafe-no-sandbox"):
        grading.grade(subs, tmp_path / "out", limits=LIMITS, progress=False)
    assert not (tmp_path / "out" / "grades.csv").exists()
    code = cli.main(["grade", str(subs), "--out", str(tmp_path / "out")])
    assert code == 2 and "bwrap: no user namespaces" in capsys.readouterr().err


def test_unsandboxed_grading_says_so_loudly(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "_STATUS", (False, "bwrap: no user namespaces"))
    subs = tmp_path / "subs"
    _submit(subs, "s1", notebooks.read_notebook(RELEASE))
    out = tmp_path / "out"
    code = cli.main(["grade", str(subs), "--out", str(out), "--unsafe-no-sandbox"])
    assert code == 0
    assert "UNSANDBOXED" in capsys.readouterr().err
    assert "UNSANDBOXED" in (out / "grades.csv").read_text(encoding="utf-8")


def test_kernel_environment_is_an_allow_list():
    env = {
        "PATH": "/usr/bin",
        "AWS_SECRET_ACCESS_KEY": "x",
        "XLT_COURSE_SMOKE": "1",
        "OMP_NUM_THREADS": "1",
    }
    args = sandbox.kernel_environment(env, {"HOME": "/tmp/home"})
    assert args[0] == "--clearenv"
    pairs = dict(zip(args[2::3], args[3::3], strict=True))
    assert pairs == {
        "PATH": "/usr/bin",
        "XLT_COURSE_SMOKE": "1",
        "OMP_NUM_THREADS": "1",
        "HOME": "/tmp/home",
    }


def test_the_sandbox_binds_neither_the_repository_nor_the_job(tmp_path):
    root = tmp_path / "job"
    (root / "cwd").mkdir(parents=True)
    (root / "conn").mkdir()
    box = sandbox.kernel_sandbox(root, root / "cwd", root / "conn")
    binds = [box.prefix[i + 1] for i, a in enumerate(box.prefix) if a in ("--ro-bind", "--bind")]
    repo = paths.REPO_ROOT.resolve()
    for src in binds:
        src = os.path.realpath(src)
        assert src != str(repo), "the whole repository is bound"
        assert not src.startswith(str(paths.solutions_dir())), src
    assert str(root / "gradebook.db") not in " ".join(box.prefix)
    if os.geteuid() == 0:
        assert box.user[0] == "setpriv" and box.uid >= sandbox.KERNEL_UID_BASE
    else:
        assert "--unshare-user" in box.prefix


def test_a_script_run_from_tmp_does_not_bind_the_hosts_tmp(tmp_path, monkeypatch):
    """``python /tmp/x.py`` puts /tmp on sys.path: binding it hid the job's folders (all 0)."""
    root = tmp_path / "job"
    (root / "cwd").mkdir(parents=True)
    (root / "conn").mkdir()
    script_dir = tmp_path  # holds the job, as a script beside its --out folder would
    monkeypatch.setattr(sys, "path", ["/tmp", str(script_dir), *sys.path])
    box = sandbox.kernel_sandbox(root, root / "cwd", root / "conn")
    binds = [box.prefix[i + 2] for i, a in enumerate(box.prefix) if a in ("--ro-bind", "--bind")]
    for dest in binds:
        assert dest != "/tmp" and not (root / "cwd").is_relative_to(dest), dest
    # what it must still read is bound
    assert str(paths.PACKAGE_DIR.parent / "xlt_course") in " ".join(box.prefix)


def _private_files(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    data = tmp_path / "data"
    (data / "run").mkdir(parents=True)
    private = data / "run" / "model.safetensors"
    private.write_bytes(b"weights v1")
    private.chmod(0o600)
    (data / "run" / "config.json").write_text("{}")  # 0644: needs no copy
    return data, private


def test_a_private_course_file_gets_one_readable_copy_per_path(tmp_path, monkeypatch):
    """A copy per file version filled the CI's disk (3 GB of checkpoints a batch, never freed)."""
    data, private = _private_files(tmp_path, monkeypatch)
    [(copy, original)] = sandbox._readable_copies([data])
    assert original == private.resolve() and copy.read_bytes() == b"weights v1"
    assert copy.stat().st_mode & 0o777 == 0o644
    inode = copy.stat().st_ino
    assert sandbox._readable_copies([data]) == [(copy, original)]
    assert copy.stat().st_ino == inode  # the next batch reuses it
    private.write_bytes(b"weights v2, retrained")
    os.utime(private, ns=(1, 2))
    assert sandbox._readable_copies([data]) == [(copy, original)]
    assert copy.read_bytes() == b"weights v2, retrained"
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # the old version is gone


def test_a_copy_that_cannot_be_made_says_which_file_and_how_to_fix_it(tmp_path, monkeypatch):
    data, private = _private_files(tmp_path, monkeypatch)

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sandbox.shutil, "copyfile", disk_full)
    with pytest.raises(sandbox.SandboxError) as e:
        sandbox._readable_copies([data])
    msg = str(e.value)
    assert str(private) in msg and "No space left on device" in msg
    assert f"chmod o+r '{private}'" in msg
    assert list((tmp_path / "tmp").rglob("*.part")) == []  # nothing half-written is left
