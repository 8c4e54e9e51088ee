"""The grading kernel's sandbox: namespaces, an unprivileged user, an allow-listed file system, caps.

A grading kernel runs a student's notebook; it starts behind the command prefix built here
(bubblewrap, ``setpriv``, ``prlimit``):

- its own PID, IPC, UTS, network and mount namespaces (and a user namespace when the grader
  is not root), with a fresh ``/proc`` that shows only the sandbox's processes, so no
  ``/proc/<pid>/{cwd,root}`` link leads out of it;
- never root: when the grader is root, the kernel drops to an unprivileged uid of its own
  (no capabilities, ``no_new_privs``); otherwise it keeps the grader's uid, without
  capabilities;
- a file system built from an allow-list, read-only: the system folders, the Python
  installation, the ``xlt_course`` package and the course data. Its writable folders (``/tmp``
  and the working folder) are private, size-limited tmpfs. The solutions, the submissions,
  the gradebooks, the git history and the home folders are not there at all; the grading
  package is replaced by one that refuses to import;
- a clean environment (an allow-list of variables), no inherited file descriptors;
- caps on processes (``RLIMIT_NPROC``), open files (``RLIMIT_NOFILE``) and file size
  (``RLIMIT_FSIZE``), besides the worker's memory cap and the time limits.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autograder import paths
from xlt_course import paths as course_paths
from xlt_course.errors import XltCourseError

MAX_PROCESSES = 256
"""Processes and threads a kernel may have at once (RLIMIT_NPROC of its own uid)."""

MAX_OPEN_FILES = 1024
"""Open file descriptors per kernel process (RLIMIT_NOFILE)."""

MAX_FILE_BYTES = 256 << 20
"""Largest file a kernel may write (RLIMIT_FSIZE)."""

TMPFS_BYTES = 256 << 20
"""Size of each writable folder of a kernel (``/tmp``, ``/dev/shm``, its working folder)."""

KERNEL_UID_BASE = 1_500_000_000
"""Kernels graded as root run as ``KERNEL_UID_BASE + n`` (no such user exists)."""

SYSTEM_FOLDERS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/sys")
"""Host folders every kernel sees read-only (programs, libraries, configuration)."""

ENV_PASSED = (
    "PATH",
    "PYTHONPATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "MPLBACKEND",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TOKENIZERS_PARALLELISM",
    "XLT_COURSE_",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
)
"""Environment variables a kernel inherits (a trailing ``_`` passes the prefix); no others."""

HIDDEN_PACKAGE_INIT = (
    'raise ImportError("autograder, the grading system, cannot be imported while grading")\n'
)
"""What ``import autograder`` finds inside the sandbox."""


@dataclass(frozen=True)
class KernelSandbox:
    """How one grading job's kernel is confined (written into the job's plan).

    Attributes:
        prefix: the command before the kernel's environment options (prlimit, bwrap, ...).
        env: variables the kernel gets (besides :data:`ENV_PASSED` ones from the worker).
        user: the command between bwrap and the kernel (``setpriv`` to drop root), or [].
        uid: the kernel's uid as seen from outside.
        ipc: the folder of the kernel's sockets (the one writable host folder it sees).
    """

    prefix: list[str]
    env: dict[str, str]
    user: list[str]
    uid: int
    ipc: Path


def _needed_paths(inside_sandbox: Sequence[Path] = ()) -> list[Path]:
    """Return the host paths a kernel must read: Python, the course package and its data.

    A ``sys.path`` entry that holds one of ``inside_sandbox`` (the sandbox's own ``/tmp``,
    the job's folders) is left out: binding it read-only would show the kernel that host
    folder (a script run from ``/tmp`` puts ``/tmp`` on ``sys.path``) and leave no place to
    make the job's folders in.
    """
    found = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)]
    found.append(Path(sys.executable).parent)
    found += [course_paths.PACKAGE_DIR, course_paths.data_dir()]
    found += [course_paths.build_dir(), course_paths.cache_dir()]
    repo = paths.REPO_ROOT.resolve()
    for entry in sys.path:
        p = Path(entry).resolve() if entry else None
        # The repository itself stays out (solutions/, tests/, .git): only its package
        # and data folders above are bound.
        if p is None or not p.is_dir() or p == repo or repo in p.parents:
            continue
        if any(_inside(q, [p]) for q in inside_sandbox):
            continue
        found.append(p)
    hf = os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface")
    if Path(hf).is_dir():
        found.append(Path(hf))
    return [Path(os.path.abspath(p)) for p in found if p.exists()]


class _Mounts:
    """bwrap's file-system options, creating each mount point's missing parents as 0755.

    (bwrap makes them 0700 when it runs as root, which the kernel's uid could not cross.)
    """

    def __init__(self, existing: list[Path], made: list[Path]) -> None:
        self.args: list[str] = []
        self.existing = list(existing)  # folders bound read-only: nothing is made inside
        self.made = set(made)  # folders already there

    def _parents(self, dest: Path) -> None:
        for a in reversed(dest.parents):
            if a in self.made or _inside(a, self.existing):
                continue
            self.args += ["--perms", "0755", "--dir", str(a)]
            self.made.add(a)

    def add(self, option: str, source: str | None, dest: Path, *before: str) -> None:
        """Add ``[*before, option, source, dest]`` (source omitted when None)."""
        self._parents(dest)
        self.args += [*before, option, *([source] if source is not None else []), str(dest)]
        self.made.add(dest)

    def read_only(self, dest: Path) -> None:
        """Record that ``dest`` is a read-only bind: nothing is created inside it."""
        self.existing.append(dest)


def _file_system(mounts: _Mounts, needed: list[Path]) -> list[Path]:
    """Show the ``needed`` paths (read-only) in the sandbox; return the folders bound.

    Each path is bound at its real location; a path reached through a symbolic link (a
    virtual environment linked into the checkout, ``data/build``) gets that link too.
    """
    system = [Path(f) for f in SYSTEM_FOLDERS]
    real = sorted({p.resolve() for p in needed}, key=lambda p: (len(p.parts), str(p)))
    bound: list[Path] = []
    for r in real:
        if _inside(r, system) or _inside(r, bound):
            continue
        mounts.add("--ro-bind", str(r), r)
        mounts.read_only(r)
        bound.append(r)
    links: list[Path] = []
    for p in needed:
        # the first symbolic link on the way to p, unless a bound folder already holds it
        q = Path(p.anchor)
        for part in p.parts[1:]:
            q = q / part
            if q.is_symlink():
                if not _inside(q.parent.resolve(), [*bound, *system]) and q not in links:
                    mounts.add("--symlink", os.readlink(q), q)
                    links.append(q)
                break
    return bound


class SandboxError(XltCourseError, OSError):
    """The grader cannot prepare a kernel's sandbox; the message says what to change."""


def _readable_copies(folders: list[Path]) -> list[tuple[Path, Path]]:
    """Return ``(copy, original)`` for the files in ``folders`` that other users cannot read.

    A root grader's kernel runs as another uid, so a course artefact written private (a
    checkpoint an older version saved 0600) would be unreadable to it. It gets a
    world-readable copy bound over the original: the kernel reads the course data, nothing
    else. The copies live in a root-only-writable folder, one per original path, and are
    refreshed when the original changes, so the folder never holds more than the private
    files themselves (the course writes none now: :func:`xlt_course.paths.share_files`).

    Raises:
        SandboxError: the copy cannot be made (a full disk, say); the message names the
            file and the ``chmod`` that makes copying unnecessary.
    """
    store = Path(tempfile.gettempdir()) / f"xlt-readable-{os.getuid()}"
    found: dict[Path, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for dirpath, _, files in os.walk(folder, followlinks=True):
            for name in files:
                f = Path(dirpath) / name
                try:
                    st = f.stat()
                except OSError:
                    continue
                if st.st_mode & stat.S_IROTH or not stat.S_ISREG(st.st_mode):
                    continue
                original = f.resolve()
                copy = store / hashlib.sha1(str(original).encode()).hexdigest()
                store.mkdir(mode=0o755, exist_ok=True)
                own = store.lstat()
                if own.st_uid != os.getuid() or own.st_mode & 0o022 or store.is_symlink():
                    raise SandboxError(f"{store} is not the grader's own folder: remove it")
                if not _same_version(copy, st):
                    _copy_readable(original, copy, st)
                found[original] = copy
    return [(copy, original) for original, copy in sorted(found.items())]


def _same_version(copy: Path, st: os.stat_result) -> bool:
    try:
        c = copy.lstat()
    except OSError:
        return False
    return stat.S_ISREG(c.st_mode) and (c.st_size, c.st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def _copy_readable(original: Path, copy: Path, st: os.stat_result) -> None:
    # a name of its own: grading threads of one process may copy at once
    fd, part = tempfile.mkstemp(dir=copy.parent, prefix=f"{copy.name}.", suffix=".part")
    os.close(fd)
    try:
        shutil.copyfile(original, part)
        os.chmod(part, 0o644)
        os.utime(part, ns=(st.st_atime_ns, st.st_mtime_ns))  # how the next batch knows it
        os.replace(part, copy)
    except OSError as e:
        Path(part).unlink(missing_ok=True)
        raise SandboxError(
            f"{original} is readable only by its owner, and the grading kernel (another "
            f"user) needs it; copying it to {copy.parent} failed ({e.strerror or e}). "
            f"Make it readable instead: chmod o+r '{original}'"
        ) from e


def _inside(p: Path, folders: list[Path]) -> bool:
    return any(p == f or f in p.parents for f in folders)


def kernel_uid(root: Path) -> int:
    """Return the uid a kernel of job ``root`` runs as when the grader is root."""
    digest = hashlib.sha1(str(root.resolve()).encode()).digest()
    return KERNEL_UID_BASE + int.from_bytes(digest[:4], "big") % 100_000


def ipc_dir(root: Path) -> Path:
    """Return the folder for the kernel's Unix sockets (short: paths are capped at 107 bytes)."""
    runtime = (root / "runtime").resolve()
    if len(str(runtime)) > 70:
        runtime = (
            Path(tempfile.gettempdir()) / f"xltk-{hashlib.sha1(bytes(runtime)).hexdigest()[:12]}"
        )
    return runtime


def kernel_sandbox(
    root: Path, kernel_cwd: Path, conn_dir: Path, hide: list[Path] = ()
) -> KernelSandbox:
    """Return how to start the kernel of the job ``root`` confined (see the module docstring).

    Args:
        root: the job's folder (its gradebook and notebooks stay outside the sandbox).
        kernel_cwd: the kernel's working folder (a private tmpfs at that path inside).
        conn_dir: the folder holding the kernel's connection file (read-only inside).
        hide: folders to hide should they lie inside a bound folder (submissions, output).
    """
    as_root = os.geteuid() == 0
    uid = kernel_uid(root) if as_root else os.getuid()
    ipc = ipc_dir(root)
    ipc.mkdir(parents=True, exist_ok=True)
    if as_root:
        # The kernel creates its sockets here; the worker locks the folder once it started.
        os.chmod(ipc, 0o1777)
    nproc = MAX_PROCESSES
    if not as_root:  # RLIMIT_NPROC counts every process of the uid: leave the grader's own
        nproc += _tasks_of(os.getuid())
    prefix = [
        "prlimit",
        f"--nproc={nproc}",
        f"--nofile={MAX_OPEN_FILES}",
        f"--fsize={MAX_FILE_BYTES}",
        "--",
        # bwrap ignores the SIGINT that interrupts a cell (the kernel has its own handler)
        "sh",
        "-c",
        'trap "" INT; exec "$@"',
        "sh",
        shutil.which("bwrap") or "bwrap",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-net",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--hostname",
        "grader",
    ]
    if not as_root:
        prefix.append("--unshare-user")
    for folder in SYSTEM_FOLDERS:
        p = Path(folder)
        if p.is_symlink():
            prefix += ["--symlink", os.readlink(p), folder]
        elif p.is_dir():
            prefix += ["--ro-bind", folder, folder]
    prefix += ["--dev", "/dev", "--proc", "/proc"]
    for size_dir in ("/tmp", "/dev/shm"):
        prefix += ["--size", str(TMPFS_BYTES), "--perms", "1777", "--tmpfs", size_dir]
    fixed = ["/", "/dev", "/proc", "/tmp", "/dev/shm"]
    mounts = _Mounts([Path(f) for f in SYSTEM_FOLDERS], [Path(f) for f in fixed])
    own = [Path(f) for f in fixed if f != "/"]
    own += [root.resolve(), kernel_cwd.resolve(), conn_dir.resolve(), ipc.resolve()]
    bound = _file_system(mounts, _needed_paths(own))
    if as_root:
        data = [course_paths.data_dir(), course_paths.build_dir(), course_paths.cache_dir()]
        for copy, original in _readable_copies(sorted({d.resolve() for d in data})):
            mounts.args += ["--ro-bind", str(copy), str(original)]
    for h in hide:
        h = h.resolve()
        if _inside(h, bound) and h.is_dir():
            mounts.args += ["--tmpfs", str(h)]
    stub = root / "hidden_package"
    stub.mkdir(exist_ok=True)
    (stub / "__init__.py").write_text(HIDDEN_PACKAGE_INIT, encoding="utf-8")
    mounts.add("--ro-bind", str(stub.resolve()), paths.PACKAGE_DIR)
    conn = conn_dir.resolve()
    mounts.add("--ro-bind", str(conn), conn)
    mounts.add("--bind", str(ipc), ipc)
    cwd = kernel_cwd.resolve()
    size = ["--size", str(TMPFS_BYTES), "--perms", "1777"]
    mounts.add("--tmpfs", None, cwd, *size)
    prefix += [*mounts.args, "--chdir", str(cwd)]
    env = {
        "HOME": "/tmp/home",
        "TMPDIR": "/tmp",
        "IPYTHONDIR": "/tmp/ipython",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "XDG_CACHE_HOME": "/tmp/cache",
        "XLT_COURSE_GRADING": "1",
    }
    user = []
    if as_root:
        user = [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]
    return KernelSandbox(prefix, env, user, uid, ipc)


def kernel_environment(env: dict[str, str], sandbox_env: dict[str, str]) -> list[str]:
    """Return bwrap's options that give the kernel a clean environment."""
    args = ["--clearenv"]
    for name, value in sorted(env.items()):
        if any(name == p or p.endswith("_") and name.startswith(p) for p in ENV_PASSED):
            args += ["--setenv", name, value]
    for name, value in sorted(sandbox_env.items()):
        args += ["--setenv", name, value]
    return args


def _tasks_of(uid: int) -> int:
    """Return how many tasks (threads) processes of ``uid`` have now."""
    n = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)]:
            n += int(fields.get("Threads", "1"))
    return n


def descendants(pid: int) -> list[int]:
    """Return the pids of every process below ``pid`` (the kernel's whole tree)."""
    if Path(f"/proc/{pid}/task/{pid}/children").exists():
        # walk the tree down: milliseconds, whatever else runs on the machine
        out, todo = [], [pid]
        while todo:
            p = todo.pop()
            for task in Path(f"/proc/{p}/task").glob("*"):
                try:
                    kids = [int(c) for c in (task / "children").read_text().split()]
                except (OSError, ValueError):
                    continue
                out += kids
                todo += kids
        return out
    children: dict[int, list[int]] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat_file.read_text()
        except OSError:
            continue
        ppid = int(text.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(stat_file.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


_STATUS: tuple[bool, str] | None = None


def sandbox_status() -> tuple[bool, str]:
    """Return whether a kernel can start sandboxed here, and why not (cached per process).

    Runs this interpreter in the real sandbox: it must import the kernel and the course,
    not as root.
    """
    global _STATUS
    if _STATUS is not None:
        return _STATUS
    missing = [exe for exe in ("bwrap", "prlimit", "setpriv") if shutil.which(exe) is None]
    if missing:
        _STATUS = (False, f"{', '.join(missing)} not found (apt install bubblewrap util-linux)")
        return _STATUS
    with tempfile.TemporaryDirectory(prefix="xlt-probe-") as tmp:
        root = Path(tmp)
        for d in ("cwd", "conn"):
            (root / d).mkdir()
        box = kernel_sandbox(root, root / "cwd", root / "conn")
        code = (
            "import os, ipykernel, xlt_course\n"
            "assert os.getuid() != 0, 'root'\n"
            "try:\n    import autograder\nexcept ImportError:\n    pass\n"
            "else:\n    raise SystemExit('the grading package is importable')\n"
            "print('sandbox-ok')\n"
        )
        cmd = [
            *box.prefix,
            *kernel_environment(dict(os.environ), box.env),
            "--",
            *box.user,
            sys.executable,
            "-c",
            code,
        ]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
        except subprocess.TimeoutExpired:
            res = subprocess.CompletedProcess(cmd, -9, "", "the probe timed out")
        finally:
            shutil.rmtree(box.ipc, ignore_errors=True)
    ok = res.returncode == 0 and "sandbox-ok" in res.stdout
    why = "" if ok else (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
    _STATUS = (ok, why)
    return _STATUS
