"""The kernel fork server that runs INSIDE a grading sandbox (standard library only at the top).

:mod:`autograder.grading_worker` starts it with ``python -c <this file's text>`` behind the
same sandbox prefix a grading kernel gets (bubblewrap, ``setpriv``, ``prlimit``; the
``autograder`` package is not importable in there). It imports the heavy libraries the
lessons use (:data:`PRELOAD` names them) once, takes no notebook code itself, and then, per
request, forks ONE kernel for ONE submission:

- before every fork it removes whatever the previous kernel left: it kills every other
  process of the sandbox (``kill(-1, SIGKILL)``, atomic in the kernel), waits until none
  is left, deletes everything in the writable folders (``/tmp``, ``/dev/shm``, the
  working folder, the socket folder, entries added to ``/dev``) and the System V IPC
  objects of the sandbox's IPC namespace;
- it is not dumpable (``PR_SET_DUMPABLE 0``): a kernel cannot ptrace it or read or write its
  memory through ``/proc``; a kernel's own memory is a copy-on-write copy that never flows
  back. It refuses to start when the preloaded libraries mapped shared writable memory or
  started threads (either would be shared with, or break, the forked kernels);
- the control pipe to the worker is closed in the kernel before any notebook code runs.

Protocol: one JSON object a line on stdin, one answer a line on stdout.
``{"op": "spawn", "conn": TEXT}`` -> ``{"pid": PID}``; ``{"op": "poll"}`` -> ``{"status":
CODE|null}``; ``{"op": "signal", "sig": N}``; ``{"op": "kill"}`` (kill and clean up).
"""

import contextlib
import ctypes
import importlib
import json
import os
import signal
import stat
import sys
import time

PRELOAD = (
    "numpy",
    "numpy.linalg",
    "scipy.linalg",
    "pandas",
    "matplotlib",
    "matplotlib.pyplot",
    "torch",
    "torch.nn.functional",
    "transformers",
    "transformers:AutoConfig,AutoModel,AutoTokenizer",
    "IPython",
    "ipykernel.kernelapp",
    "xlt_course",
    "xlt_course.runtime",
    "xlt_course.checks",
    "xlt_course.environment",
    "xlt_course.data.vectors",
    "xlt_course.data.dictionary",
    "xlt_course.data.topics",
    "xlt_course.models",
)
"""Modules imported before any kernel forks (``module:names`` also reads those attributes)."""

WRITABLE = ("/tmp", "/dev/shm")
"""Writable folders of the sandbox besides the working folder and the socket folder."""


def _preload(names):
    for name in names:
        mod, _, attrs = name.partition(":")
        try:
            m = importlib.import_module(mod)
            for a in filter(None, attrs.split(",")):
                getattr(m, a)
        except Exception as e:  # noqa: BLE001 - a missing library is imported by the lesson
            print(f"zygote: not preloaded {name}: {type(e).__name__}: {e}", file=sys.stderr)


def _threads():
    """Return the Python threads (native pools of OpenBLAS and jemalloc have fork handlers)."""
    import threading

    return threading.active_count()


def _shared_writable():
    with open("/proc/self/maps") as f:
        maps = [ln.split() for ln in f]
    return [" ".join(m[1:]) for m in maps if m[1][1] == "w" and m[1][3] == "s"]


def _others():
    """Return the pids of this sandbox other than its init (1) and this server, zombies aside."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (1, me):
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            found.append(int(entry))
    return found


def _empty(folder, mode=0o700):
    """Delete everything inside ``folder`` (making each entry deletable first); chmod it ``mode``."""
    with contextlib.suppress(OSError):
        os.chmod(folder, mode)
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for name in entries:
        _remove(os.path.join(folder, name))


def _remove(path):
    """Delete ``path``: a folder (not a link to one) with everything in it, else the entry."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    if stat.S_ISDIR(st.st_mode):
        _empty(path)
        with contextlib.suppress(OSError):
            os.rmdir(path)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _remove_sysv_ipc():
    libc = ctypes.CDLL(None, use_errno=True)
    for kind, call in (("shm", "shmctl"), ("msg", "msgctl"), ("sem", "semctl")):
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                ids = [int(ln.split()[1]) for ln in list(f)[1:] if ln.split()]
        except OSError:
            continue
        for i in ids:
            if kind == "sem":
                libc.semctl(i, 0, 0)  # IPC_RMID
            else:
                getattr(libc, call)(i, 0, None)


class Server:
    """Fork kernels one at a time in a cleaned sandbox (see the module docstring)."""

    def __init__(self, cwd, ipc, ctl_in, ctl_out):
        self.cwd, self.ipc = cwd, ipc
        self.ctl_in, self.ctl_out = ctl_in, ctl_out
        self.pid = None
        self.status = None
        self.dev = set(os.listdir("/dev"))
        # the folders' own modes, restored should a kernel change them
        self.modes = {f: stat.S_IMODE(os.stat(f).st_mode) for f in (*WRITABLE, cwd, ipc)}

    def clean(self):
        """Kill every other process of the sandbox and empty its writable folders."""
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(-1, signal.SIGKILL)
            self._reap()
            if not _others():
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes {_others()} survive SIGKILL")
            time.sleep(0.01)
        for folder in (*WRITABLE, self.cwd, self.ipc):
            _empty(folder, self.modes[folder])
        for name in set(os.listdir("/dev")) - self.dev:
            _remove(os.path.join("/dev", name))
        _remove_sysv_ipc()

    def _reap(self):
        while True:
            try:
                pid, code = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.status = os.waitstatus_to_exitcode(code)

    def spawn(self, conn_text):
        self.clean()
        conn = os.path.join("/tmp", "kernel-connection.json")
        with open(conn, "w") as f:
            f.write(conn_text)
        self.status = None
        pid = os.fork()
        if pid == 0:  # the kernel: nothing of the server's channel stays open
            try:
                os.setsid()
                os.close(self.ctl_in)
                os.close(self.ctl_out)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(2, 1)
                os.chdir(self.cwd)
                sys.path[0] = self.cwd  # as `python -m ipykernel_launcher` run in cwd
                sys.argv = ["ipykernel_launcher", "-f", conn]
                from ipykernel import kernelapp

                kernelapp.launch_new_instance()
            finally:
                os._exit(0)
        self.pid = pid
        return {"pid": pid}

    def handle(self, req):
        op = req.get("op")
        if op == "spawn":
            return self.spawn(req["conn"])
        if op == "poll":
            self._reap()
            if self.pid is None:
                return {"status": 0}
            return {"status": self.status}
        if op == "signal":
            sig = int(req["sig"])
            if sig == signal.SIGKILL:
                return self.handle({"op": "kill"})
            if self.pid is not None and self.status is None:
                try:
                    os.killpg(self.pid, sig)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.kill(self.pid, sig)
            return {}
        if op == "kill":
            self.clean()
            if self.pid is not None and self.status is None:
                self.status = -9
            return {"status": self.status}
        return {"error": f"unknown op {op!r}"}


def main():
    cwd, ipc = sys.argv[1], sys.argv[2]
    ctl_in, ctl_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)  # a library that prints goes to the log, not into the protocol
    os.chdir(cwd)
    sys.path[0] = cwd
    _preload(PRELOAD)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
    out = os.fdopen(ctl_out, "w", buffering=1)
    problems = []
    if _threads() != 1:
        problems.append(f"{_threads()} Python threads after preloading (fork needs one)")
    shared = _shared_writable()
    if shared:
        problems.append(f"shared writable memory after preloading: {shared[:3]}")
    if problems:
        out.write(json.dumps({"error": "; ".join(problems)}) + "\n")
        return 1
    server = Server(cwd, ipc, ctl_in, ctl_out)
    server.clean()
    out.write(json.dumps({"ready": True}) + "\n")
    for line in os.fdopen(ctl_in, "r"):
        try:
            answer = server.handle(json.loads(line))
        except Exception as e:  # noqa: BLE001 - the worker decides what a failure means
            answer = {"error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(answer) + "\n")
    server.clean()
    return 0


if __name__ == "__main__":
    sys.exit(main())
