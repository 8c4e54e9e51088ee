"""The grading worker: runs nbgrader autograde on one prepared submission, bounded and guarded.

:func:`autograder.grading.grade` starts one worker process per (student, lesson) with
``python -m autograder.grading_worker ROOT``; ``ROOT/plan.json`` says what to run. The
worker is trusted code; the kernel it starts runs the student's notebook and is not:

- it runs in the sandbox of :mod:`autograder.sandbox` (its own namespaces, never as root,
  an allow-listed read-only file system, a clean environment, process and file caps);
  after every cell, a process tree grown past :data:`PROCESS_FLAG` is cut back and flagged;
- a cell that kills the kernel (``os._exit``, a segfault, the memory cap) gets an error
  output, and the remaining cells run in a restarted kernel after the earlier cells are
  replayed, so work before the crash still counts;
- each cell's output is capped (a 100 MB print becomes a note), so neither this process
  nor the feedback page grows with it;
- around every graded tests cell a guard (:mod:`autograder.kernel_guard`) restores the
  functions the tests rely on (``numpy``, ``xlt_course.checks``, builtins, ...) when the
  student's code replaced them, and checks that the exercise's functions do not call the
  course's own implementation;
- a tests cell's hidden part runs here, in this process, never in the kernel
  (:mod:`autograder.verdict`): the exercise's functions are stubs that send their arguments
  to the kernel as data, where the handler the guard installed before any cell ran calls
  the student's function and sends back its value as data. The tests' code, expected values
  and comparisons never exist in the student's process. A cell marked
  :data:`autograder.verdict.KERNEL_MARK` (its tests hand the student's code an object that
  is not data) runs in the kernel instead, as one function call sent as bytecode to the
  same handler (:func:`autograder.kernel_guard.hidden_tests_request`), with fresh globals.
  Either way the functions' printed output is discarded and only an exception is kept.

Everything the worker notices is printed as one JSON line (``flags``) for the parent.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import DeadKernelError
from nbgrader.preprocessors import Execute

from autograder import kernel_guard, notebooks, sandbox, verdict
from autograder.cell_skip import NOTE as SKIP_NOTE

OUTPUT_CAP_CHARS = 1_000_000
"""Characters of output one cell may keep; the rest is dropped with a note."""

PROCESS_FLAG = 32
"""Processes in a kernel's tree after a cell above which the extra ones are killed, flagged."""

SANDBOX_ERRORS = (
    "Permission denied",
    "Operation not permitted",
    "No space left on device",
    "File too large",
    "Resource temporarily unavailable",
    "Network is unreachable",
    "Too many open files",
    "cannot be imported while grading",
)
"""Error messages that mean the sandbox stopped something a cell tried (flagged)."""


def _kernel_chain(pid: int, tree: list[int]) -> set[int]:
    """Return the sandbox's own processes in ``tree``: the kernel and the processes above it."""
    parent: dict[int, int] = {}
    kernels = []
    for p in tree:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            cmdline = Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            continue
        parent[p] = int(stat.rpartition(")")[2].split()[1])
        if b"ipykernel_launcher" in cmdline:
            kernels.append(p)

    # the kernel is the ipykernel process nearest the top (its forks run the same command)
    def depth(p: int) -> int:
        d = 0
        while p in parent:
            p, d = parent[p], d + 1
        return d

    keep = {pid}
    if kernels:
        p = min(kernels, key=depth)
        while p in parent:
            keep.add(p)
            p = parent[p]
    else:  # not started yet: keep the tree
        keep.update(tree)
    return keep


class Zygote:
    """The worker's handle on its kernel fork server (:mod:`autograder.zygote_server`).

    The server runs in a sandbox built exactly like a kernel's (the spec file written by
    :class:`autograder.grading._Worker`: prefix, environment, user, socket folder, working
    folder), imports the heavy libraries once, and forks one fresh kernel per submission,
    cleaning the sandbox before each (see its docstring). It is started when the worker
    starts, so its imports overlap the worker's own, and is never given notebook code.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        import subprocess

        self.spec = spec
        source = (Path(__file__).parent / "zygote_server.py").read_text(encoding="utf-8")
        env = sandbox.kernel_environment(dict(os.environ), spec["env"])
        # "ipykernel_launcher" in its command line: the kernels it forks are recognised
        cmd = [
            *spec["prefix"], *env, "--", *spec["user"], sys.executable, "-c", source,
            spec["cwd"], spec["ipc"], "ipykernel_launcher",
        ]  # fmt: skip
        self._set_ipc(writable=True)
        log = open(spec["log"], "ab")  # noqa: SIM115 - the server's and its kernels' output
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, close_fds=True
        )
        log.close()
        self.ready: bool | None = None
        self.error = ""
        self.host_pid: int | None = None

    def _set_ipc(self, writable: bool) -> None:
        if self.spec.get("uid") is not None and os.geteuid() == 0:
            os.chmod(self.spec["ipc"], 0o1777 if writable else 0o755)

    READY_SECONDS = 300.0
    """How long the server may take to import everything (a loaded machine) before it is dropped."""

    ANSWER_SECONDS = 30.0
    """How long one answer may take; a server that a kernel stopped (SIGSTOP) is dropped."""

    def request(self, **req: Any) -> dict[str, Any]:
        """Send one request; return the answer ({"error": ...} when the server is gone)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if self.ready is None:  # the first answer is the server's ready line
            first = self._read(self.READY_SECONDS)
            self.ready = bool(first.get("ready"))
            self.error = first.get("error", "")
        if not self.ready:
            return {"error": self.error or "the kernel server did not start"}
        try:
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.ready = False
            return {"error": "the kernel server exited"}
        answer = self._read(self.ANSWER_SECONDS)
        if "error" in answer and req.get("op") == "spawn":
            self.ready = False
        return answer

    def _read(self, timeout: float) -> dict[str, Any]:
        """Read one answer line; a server silent for ``timeout`` s is killed and dropped."""
        import select

        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        line, deadline = b"", time.monotonic() + timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.ready = False
                self.close()
                return {"error": f"the kernel server did not answer within {timeout:g} s"}
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                self.ready = False
                return {"error": "the kernel server exited"}
            line += chunk
        try:
            return json.loads(line)
        except ValueError:
            return {"error": f"the kernel server said {line[:200]!r}"}

    def usable(self) -> bool:
        """Return True while the server answers (a dead one sends kernels the old way)."""
        return self.proc.poll() is None and self.ready is not False

    def spawn(self, conn_text: str) -> ZygoteKernel | None:
        """Fork a fresh kernel for the connection ``conn_text``; None when the server failed."""
        if not self.usable():
            return None
        self._set_ipc(writable=True)
        answer = self.request(op="spawn", conn=conn_text)
        if "pid" not in answer:
            self.error = answer.get("error", "?")
            return None
        return ZygoteKernel(self, int(answer["pid"]))

    def kernel_host_pid(self, ns_pid: int) -> int | None:
        """Return the worker's pid of the kernel the server knows as ``ns_pid``."""
        for p in sandbox.descendants(self.proc.pid):
            try:
                status = Path(f"/proc/{p}/status").read_text()
            except OSError:
                continue
            line = next((ln for ln in status.splitlines() if ln.startswith("NSpid:")), "")
            if line.split()[-1:] == [str(ns_pid)] and len(line.split()) > 2:
                return p
        return None

    def close(self) -> None:
        """Stop the server and its kernel."""
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)


class ZygoteKernel:
    """A forked kernel seen as a ``subprocess.Popen`` by jupyter_client's provisioner."""

    stdin = stdout = stderr = None

    def __init__(self, zygote: Zygote, ns_pid: int) -> None:
        self.zygote = zygote
        self.ns_pid = ns_pid
        self.pid = zygote.kernel_host_pid(ns_pid) or -1
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            answer = self.zygote.request(op="poll")
            status = answer.get("status", -9 if "error" in answer else None)
            self.returncode = status
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import subprocess

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("kernel", timeout)
            time.sleep(0.05)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            self.zygote.request(op="signal", sig=int(sig))

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager that starts the kernel behind a command prefix (bubblewrap).

    With ``ipc`` set, the kernel talks to this process over Unix sockets with that path
    prefix, so the sandbox can take the network away from it entirely.
    """

    prefix: list[str] = []
    env: dict[str, str] = {}
    user: list[str] = []
    uid: int | None = None
    ipc: str = ""
    kernel_log: str = ""
    zygote: Zygote | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.ipc:
            self.transport = "ipc"
            self.ip = self.ipc

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        """Return the kernel's command line behind :attr:`prefix`, with a clean environment."""
        cmd = super().format_kernel_cmd(extra_arguments)
        if not self.prefix:
            return cmd
        env = sandbox.kernel_environment(dict(os.environ), self.env)
        return [*self.prefix, *env, "--", *self.user, *cmd]

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        """Launch the kernel with its own output in the job's folder, not the worker's log.

        (The kernel keeps its original stderr open: the worker's log would be writable by it.)
        """
        zygote = self.zygote
        GuardedExecute.timing["launch_start"] = time.perf_counter()
        if zygote is not None and zygote.usable():
            proc = zygote.spawn(Path(self.connection_file).read_text(encoding="utf-8"))
            if proc is not None:
                prov = self.provisioner
                prov.process, prov.pid, prov.pgid = proc, proc.pid, None
                self._reconcile_connection_info(prov.connection_info)
                GuardedExecute.timing["launched"] = time.perf_counter()
                return None
            sys.stderr.write(f"kernel server failed ({zygote.error}): a kernel of its own\n")
            # the kernel reads its connection file through the sandbox's one read-only bind
            conn = Path(zygote.spec["conn"]) / Path(self.connection_file).name
            shutil.copyfile(self.connection_file, conn)
            if self.uid is not None and os.geteuid() == 0:
                os.chown(conn, self.uid, self.uid)
            kernel_cmd = [str(conn) if a == self.connection_file else a for a in kernel_cmd]
        if not self.kernel_log:
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        with open(self.kernel_log, "ab") as log:
            kw["stdout"] = kw["stderr"] = log
            return await super()._async_launch_kernel(kernel_cmd, **kw)

    def write_connection_file(self, **kwargs: Any) -> None:
        """Write the connection file, readable by the kernel's own (unprivileged) user."""
        super().write_connection_file(**kwargs)
        if self.uid is not None and os.geteuid() == 0:
            os.chown(self.connection_file, self.uid, self.uid)

    def set_ipc_writable(self, writable: bool) -> None:
        """Let the kernel create its sockets, or (once it has) nothing more in its one host folder."""
        if self.zygote is not None and self.zygote.usable():
            self.zygote._set_ipc(writable)
        elif self.ipc and self.uid is not None and os.geteuid() == 0:
            os.chmod(Path(self.ipc).parent, 0o1777 if writable else 0o755)

    def kernel_pid(self) -> int | None:
        """Return the pid of the kernel's launched process (the sandbox's outer process)."""
        proc = getattr(getattr(self, "provisioner", None), "process", None)
        return getattr(proc, "pid", None)


class GuardedExecute(Execute):
    """nbgrader's Execute with crash recovery, an output cap and the monkeypatch guard.

    Class attributes are set by :func:`main` before nbgrader instantiates it (one notebook
    per process).
    """

    plan: dict[str, Any] = {}
    events: list[str] = []
    zero: dict[str, str] = {}
    _digest: str | None = None  # the guard's snapshot digest, from the install
    _key: str | None = None  # the handler's signing key (hex), from the install
    _replaced: dict[str, list[str]] = {}  # grade id -> module attributes the tests saw move

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)

    # --- output cap ---------------------------------------------------------------------
    def output(self, outs, msg, display_id, cell_index):  # noqa: ANN001, D102 - nbclient hook
        content = msg.get("content", {})
        size = len(content.get("text", "")) + sum(
            len(v) if isinstance(v, str) else 64 for v in content.get("data", {}).values()
        )
        size += sum(len(line) for line in content.get("traceback", []))
        used = self._used.get(cell_index, 0)
        self._used[cell_index] = used + size
        if used + size > OUTPUT_CAP_CHARS:
            if used <= OUTPUT_CAP_CHARS:
                note = notebooks.nbformat.v4.new_output(
                    "stream",
                    name="stderr",
                    text=f"\n[output truncated by the grader: more than {OUTPUT_CAP_CHARS:,} "
                    "characters]\n",
                )
                outs.append(note)
            return None
        return super().output(outs, msg, display_id, cell_index)

    # --- the guard and the hidden tests: through the handler installed before any cell ---
    def _run(self, coro_fn, arg):  # noqa: ANN001, ANN202
        from jupyter_core.utils import run_sync

        return run_sync(coro_fn)(self, arg)

    def _snapshot(self) -> None:
        """Install the guard and its handler (before any notebook code runs in this kernel).

        Raises:
            RuntimeError: the kernel did not install it, twice: a grader failure (no
                notebook code has run yet), reported as an autograde error, never a 0.
        """
        code = kernel_guard.install_expression(self.plan["nonce"], self.plan["watch_modules"])
        for _ in range(2):  # a kernel starved of CPU may miss the reply's deadline once
            status, value = kernel_guard.read_value(self._run(notebooks.eval_expression, code))
            if status == "ok" and isinstance(value, tuple) and len(value) == 2:
                self._digest, self._key = value
                return
        raise RuntimeError(f"the grader's guard could not be installed in the kernel: {value}")

    def _request(self, content: dict, grade_id: str) -> dict | None:
        """Send ``content`` to the handler; return its reply (None: none came in time).

        A reply whose signature does not hold (``{"status": "forged"}``) scores ``grade_id``
        0 and is flagged.
        """
        from jupyter_core.utils import run_sync

        reply = {"status": "forged"}  # the install failed: no reply can be trusted
        if self._key is not None:
            reply = run_sync(notebooks.request)(self, content, self._key)
        if reply is not None and reply.get("status") == "forged":
            self.events.append(f"{grade_id}: the grader's reply was altered in the kernel")
            self.zero.setdefault(grade_id, "the grader's integrity check was tampered with")
        return reply

    def _guard(self, grade_id: str, index: int, when: str) -> None:
        fns = self.plan["exercise_functions"].get(grade_id, [])
        allowed = self.plan.get("allowed_course_names", {}).get(grade_id, [])
        content = kernel_guard.check_request(self.plan["nonce"], fns, allowed)
        reply = self._request(content, grade_id)
        if reply is not None and reply.get("status") == "forged":
            return
        res = kernel_guard.read_check(reply)
        if res is None:
            self.events.append(f"{grade_id}: the grader's guard did not answer (tampered with?)")
            self.zero.setdefault(grade_id, "the grader's integrity check was tampered with")
            return
        if res.get("tampered") or res.get("digest") != self._digest:
            self.events.append(f"{grade_id}: the grader's guard was removed or edited")
            self.zero.setdefault(grade_id, "the grader's integrity check was tampered with")
            return
        if res["changed"]:
            names = ", ".join(res["changed"][:6]) + (" ..." if len(res["changed"]) > 6 else "")
            if when == "before":
                self.events.append(f"monkeypatching: {names} replaced before {grade_id} (restored)")
            else:
                self.events.append(f"monkeypatching: {names} replaced while {grade_id} ran")
                self.zero.setdefault(grade_id, f"the code under test replaced {names}")
        # Run-time name lookups (globals(), eval, sys.modules, ...) can reach the course in
        # ways no reading of the code can follow: flagged for the instructor's review, not
        # scored 0, since a correct answer may use them too.
        if res.get("dynamic") and when == "before" and grade_id not in self.zero:
            what = "; ".join(res["dynamic"][:3])
            self.events.append(f"{grade_id}: looks names up at run time ({what}): review by hand")
        # (an exercise the static check already scored 0 is not reported twice)
        if res["refs"] and when == "before" and grade_id not in self.zero:
            what = "; ".join(res["refs"][:3])
            self.events.append(f"{grade_id}: calls the course's implementation ({what})")
            self.zero.setdefault(
                grade_id, f"the exercise calls xlt_course's own implementation ({what})"
            )

    def _hidden_tests(self, grade_id: str, source: str) -> dict | None:
        """Run a tests cell's hidden part; return the error output it earned (None: passed).

        It runs here (:func:`autograder.verdict.run_hidden_tests`): the kernel only runs the
        exercise's functions on the data the tests send and returns data. A cell marked
        :data:`autograder.verdict.KERNEL_MARK` runs in the kernel instead
        (:meth:`_hidden_tests_in_kernel`). Nothing the student's functions print is kept;
        an exception's type, message and traceback are (no line of the hidden tests is in it).
        """
        imports = self.plan.get("hidden_imports", {}).get(grade_id, [])
        names = self.plan["exercise_functions"].get(grade_id, [])
        if grade_id in self.plan.get("kernel_verdict", ()):
            return self._hidden_tests_in_kernel(grade_id, source, imports, names)
        seconds = float(self.plan.get("cell_timeout") or 600)
        entered: list[str] = []  # course functions the calls entered (the kernel's watch)
        own = verdict.reference_functions(source)  # the course functions no answer may call

        def send(name: str, payload: dict, deadline: float | None) -> dict:
            content = kernel_guard.call_request(self.plan["nonce"], name, payload, bool(own))
            left = (deadline or time.monotonic() + seconds) - time.monotonic()
            if left <= 0:
                raise verdict.Stop(self._timeout_output())
            saved, self.timeout = self.timeout, max(1, int(left + 0.999))
            try:
                reply = self._request(content, grade_id)
            except DeadKernelError as e:
                raise verdict.Stop(cause=e) from e
            finally:
                self.timeout = saved
            if reply is None:
                raise verdict.Stop(self._timeout_output())
            if reply.get("status") == "forged":
                raise verdict.Stop(self._forged_output())
            course = reply.get("course")
            if isinstance(course, list):
                entered.extend(str(x)[:200] for x in course[:500] if str(x) not in entered)
            return reply

        try:
            out = verdict.run_hidden_tests(source, imports, names, send, seconds)
        except SyntaxError as e:  # the lesson's own bug, not the student's
            return self._grader_error(f"hidden tests do not parse: {e}")
        except verdict.Stop as stop:
            if stop.cause is not None:
                raise stop.cause from None
            out = stop.output
        called = [f for f in entered if f in own or f.rpartition(".")[0] in own]
        if called:
            # the exercise's own implementation, reached at run time (by a name the
            # reading of the notebook cannot see: pickle, pkgutil, getattr on a string)
            what = ", ".join(called[:3])
            self.events.append(f"{grade_id}: calls the course's implementation ({what})")
            self.zero.setdefault(
                grade_id, f"the exercise calls xlt_course's own implementation ({what})"
            )
        if out is None:
            return None
        return notebooks.nbformat.v4.new_output(
            "error", ename=out["ename"], evalue=out["evalue"], traceback=out["traceback"]
        )

    def _grader_error(self, text: str) -> Any:
        return notebooks.nbformat.v4.new_output(
            "error", **verdict.error_output("GraderError", text)
        )

    def _forged_output(self) -> dict:
        return verdict.error_output("GraderError", "the hidden tests' reply was altered")

    def _timeout_output(self) -> dict:
        text = f"the hidden tests ran more than {self.plan.get('cell_timeout')} s"
        return verdict.error_output("CellTimeoutError", text)

    def _hidden_tests_in_kernel(
        self, grade_id: str, source: str, imports: list[str], names: list[str]
    ) -> dict | None:
        """Run a hidden part in the kernel, as one call through the guard's handler."""
        try:
            content = kernel_guard.hidden_tests_request(self.plan["nonce"], source, imports, names)
        except SyntaxError as e:  # the lesson's own bug, not the student's
            return self._grader_error(f"hidden tests do not parse: {e}")
        reply = self._request(content, grade_id)
        if reply is not None and reply.get("status") == "forged":
            return notebooks.nbformat.v4.new_output("error", **self._forged_output())
        if reply is None:
            return notebooks.nbformat.v4.new_output("error", **self._timeout_output())
        if reply.get("replaced"):
            self._replaced[grade_id] = [str(x) for x in reply["replaced"]][:20]
        if reply.get("status") == "ok":
            return None
        ename, evalue = str(reply.get("ename", "Error")), str(reply.get("evalue", ""))
        tb = [str(x) for x in reply.get("traceback", [])] or [f"{ename}: {evalue}"]
        return notebooks.nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=tb)

    # --- crash recovery -------------------------------------------------------------------
    def _restart(self, index: int) -> None:
        """Start a fresh kernel, take the guard snapshot, replay the cells that ran before."""
        from jupyter_core.utils import run_sync

        async def restart() -> None:
            await self._async_cleanup_kernel()
            self.km = self.create_kernel_manager()
            self.km.set_ipc_writable(True)
            await self.async_start_new_kernel()
            await self.async_start_new_kernel_client()
            self.km.set_ipc_writable(False)

        run_sync(restart)()
        self._snapshot()
        for i in self._ran:
            orig, count = self.nb.cells[i], self.code_cells_executed
            try:
                self.execute_cell(copy.deepcopy(orig), i, store_history=False)
            except DeadKernelError:
                run_sync(restart)()
                self._snapshot()
            finally:
                self.nb.cells[i] = orig
                self.code_cells_executed = count
                self._used.pop(i, None)

    timing: dict[str, float] = {}

    def preprocess(self, nb, resources=None, km=None):  # noqa: ANN001, D102 - nbconvert API
        self.timing["execute_start"] = time.perf_counter()
        self._used: dict[int, int] = {}
        self._ran: list[int] = []
        self._replaced = {}
        self._snapped = False
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):  # noqa: ANN001, D102 - nbconvert API
        if cell.cell_type != "code" or not cell.source.strip():
            return cell, resources
        if cell.get("id") in self.plan.get("skip_cells", ()):
            # proven unneeded by autograder.cell_skip: never sent to the kernel
            cell.outputs = [
                notebooks.nbformat.v4.new_output("stream", name="stdout", text=f"[{SKIP_NOTE}]\n")
            ]
            cell.execution_count = None
            return cell, resources
        if not self._snapped:
            # the kernel is up (started and answered kernel_info) when the first cell comes
            self.timing.setdefault("kernel_ready", time.perf_counter())
            self.km.set_ipc_writable(False)
            self._snapshot()
            self._snapped = True
        meta = cell.metadata.get("nbgrader", {})
        tests = meta.get("grade") and not meta.get("solution") and meta.get("grade_id")
        if tests:
            self._guard(tests, index, "before")
        full, hidden = cell.source, None
        if tests and notebooks.HIDDEN_BEGIN in full:
            # the visible part runs as the cell; the hidden part apart, in a scope of its own
            head, hidden, tail = notebooks.split_hidden(full)
            cell.source = head + tail
        try:
            try:
                cell, resources = super().preprocess_cell(cell, resources, index)
            finally:
                cell.source = full
                self.nb.cells[index].source = full
            if hidden is not None and not any(
                o.get("output_type") == "error" for o in cell.get("outputs", [])
            ):
                err = self._hidden_tests(tests, hidden)
                if err is not None:
                    cell.outputs.append(err)
            self._ran.append(index)
        except DeadKernelError:
            label = notebooks.cell_label(self.nb, index)
            cell.outputs.append(
                notebooks.nbformat.v4.new_output(
                    "error",
                    ename="KernelDied",
                    evalue="the kernel stopped while running this cell (os._exit, a crash or "
                    "the memory limit); the cells after it ran in a restarted kernel",
                    traceback=["KernelDied: the kernel stopped while running this cell"],
                )
            )
            self.nb.cells[index] = cell
            self.events.append(f"kernel died in {label} (restarted; later cells still graded)")
            self._restart(index)
        self._reap(index)
        if tests:
            self._guard(tests, index, "after")
            moved = self._replaced.pop(tests, [])
            if moved and tests not in self.zero:
                # library objects moved under other names while the tests ran (the check
                # after the cell scores 0 for what the notebook's code made itself)
                names = ", ".join(moved[:6]) + (" ..." if len(moved) > 6 else "")
                self.events.append(
                    f"{tests}: {names} changed while the hidden tests ran: review by hand"
                )
        return cell, resources

    def _reap(self, index: int) -> None:
        """Kill the processes a cell left behind when there are many (a fork bomb), flag it."""
        pid = self.km.kernel_pid() if self.km is not None else None
        if pid is None:
            return
        tree = sandbox.descendants(pid)
        if len(tree) <= PROCESS_FLAG:
            return
        if isinstance(getattr(self.km.provisioner, "process", None), ZygoteKernel):
            keep = {pid}  # a forked kernel's tree is its own: the server is above it
        else:
            keep = _kernel_chain(pid, tree)
        extra = [p for p in tree if p not in keep]
        for p in extra:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
        self.events.append(
            f"{notebooks.cell_label(self.nb, index)} started {len(tree)} processes "
            f"(cap {sandbox.MAX_PROCESSES}; {len(extra)} killed, kernel restarted)"
        )
        # A kernel that ran into its process cap may be broken (threads it could not start),
        # and its killed children count against the cap until it collects them: the later
        # cells run in a fresh kernel, after the earlier cells but this one are replayed.
        if index in self._ran:
            self._ran.remove(index)
        self._restart(index)


def _cell_flags(nb: Any) -> list[str]:
    """Return flags read from an executed notebook's error outputs (timeouts, exits, memory)."""
    flags: list[str] = []
    # an error naming a folder the sandbox hides: the cell went looking for it
    hidden = GuardedExecute.plan.get("hidden_paths", [])
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        label = notebooks.cell_label(nb, i)
        for out in c.get("outputs", []):
            if out.get("output_type") == "error":
                ename = out.get("ename", "")
                if ename in ("CellTimeoutError", "KeyboardInterrupt"):
                    flags.append(f"{label} stopped at the per-cell time limit")
                elif ename == "MemoryError":
                    flags.append(f"{label} ran out of memory (memory cap)")
                elif ename == "SystemExit":
                    flags.append(f"{label} called sys.exit (ignored)")
                text = f"{ename}: {out.get('evalue', '')}"
                if any(e in text for e in SANDBOX_ERRORS) or any(h in text for h in hidden):
                    flags.append(f"{label} was stopped by the sandbox ({text[:120]})")
            elif out.get("output_type") == "stream" and "output truncated by the grader" in str(
                out.get("text", "")
            ):
                flags.append(f"{label} output truncated (over {OUTPUT_CAP_CHARS:,} characters)")
    return list(dict.fromkeys(flags))


def _needs_every_cell(root: Path, lesson: str, student: str, res: dict) -> bool:
    """Return True when a notebook graded with cells skipped must be graded with all of them.

    That is when autograding failed, the kernel died, or any output mentions ``NameError``
    (a name a skipped cell would have bound; a student's own ``NameError`` only costs the
    second run).
    """
    if not res.get("success"):
        return True
    if any("kernel died" in e for e in GuardedExecute.events):
        return True
    graded = root / "autograded" / student / lesson / f"{lesson}.ipynb"
    try:
        nb = notebooks.read_notebook(graded)
    except Exception:  # noqa: BLE001 - unreadable: grade again
        return True
    for c in nb.cells:
        for out in c.get("outputs", []) if c.cell_type == "code" else []:
            if "NameError" in json.dumps(out):
                return True
    return False


def _apply_zero(root: Path, lesson: str, student: str, zero: dict[str, str]) -> None:
    """Set the manual score of the tests cells in ``zero`` to 0 with the reason as comment."""
    from nbgrader.api import Gradebook, MissingEntry

    from autograder.grading import COURSE_ID

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", COURSE_ID) as gb:
        for grade_id, reason in sorted(zero.items()):
            try:
                grade = gb.find_grade(grade_id, lesson, lesson, student)
            except MissingEntry:
                continue
            grade.manual_score = 0.0
            grade.needs_manual_grade = False
            for sol in GuardedExecute.plan.get("solutions_of", {}).get(grade_id, []):
                try:
                    comment = gb.find_comment(sol, lesson, lesson, student)
                except MissingEntry:
                    continue
                comment.manual_comment = f"Scored 0 by the grader: {reason}."
        gb.db.commit()


def serve(zygote_spec: Path | None = None) -> int:
    """Grade the job folders read from stdin, one a line; print ``XLTJOB {status}`` for each.

    With ``zygote_spec``, kernels are forked by a :class:`Zygote` started now (pre-warmed
    while the worker imports nbgrader and waits for its first job).
    """
    if zygote_spec is not None:
        spec = json.loads(zygote_spec.read_text(encoding="utf-8"))
        SandboxedKernelManager.zygote = Zygote(spec)
    for line in sys.stdin:
        root = line.strip()
        if not root:
            continue
        try:
            status = run_job(Path(root))
        except Exception as e:  # noqa: BLE001 - one job's failure must not end the worker
            status = {"autograde": False, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write("XLTJOB " + json.dumps(status) + "\n")
        sys.stdout.flush()
    return 0


def _job_environment(root: Path) -> None:
    """Point everything the kernel may write (IPython, matplotlib, temp files) into the job."""
    home = root / "kernel_home"
    os.environ["JUPYTER_RUNTIME_DIR"] = str(root / "runtime")
    os.environ["IPYTHONDIR"] = str(home / "ipython")
    os.environ["MPLCONFIGDIR"] = str(home / "matplotlib")
    os.environ["TMPDIR"] = str(home)
    # tempfile caches the first TMPDIR it saw; jupyter_client writes the kernel's
    # connection file there, which must be this job's folder (the sandbox hides the others).
    tempfile.tempdir = str(home)


def main(root_arg: str) -> int:
    """Grade one job folder (for debugging: ``python -m autograder.grading_worker ROOT``)."""
    print("XLTJOB " + json.dumps(run_job(Path(root_arg))))
    return 0


def run_job(root: Path) -> dict[str, Any]:
    """Autograde ``ROOT/submitted/STUDENT/LESSON`` as ``ROOT/plan.json`` says.

    Returns:
        The status: ``autograde``/``feedback`` success, ``flags``, ``timing``, ``error``.
    """
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.apps import NbGraderAPI
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        IgnorePattern,
        LimitOutput,
        SaveAutoGrades,
    )
    from traitlets.config.loader import PyFileConfigLoader

    from autograder.grading import strip_hidden_tests

    plan = json.loads((root / "plan.json").read_text(encoding="utf-8"))
    lesson, student = plan["lesson"], plan["student"]
    _job_environment(root)
    GuardedExecute.plan = plan
    GuardedExecute.events = []
    GuardedExecute.timing = {}
    GuardedExecute.zero = dict(plan.get("zero", {}))
    SandboxedKernelManager.prefix = list(plan.get("kernel_prefix", []))
    SandboxedKernelManager.env = dict(plan.get("kernel_env", {}))
    SandboxedKernelManager.user = list(plan.get("kernel_user", []))
    SandboxedKernelManager.uid = plan.get("kernel_uid")
    SandboxedKernelManager.ipc = plan.get("ipc", "")
    zygote = SandboxedKernelManager.zygote
    if zygote is not None and zygote.usable():
        SandboxedKernelManager.ipc = zygote.spec["ipc"] + "/kernel"
        SandboxedKernelManager.uid = zygote.spec.get("uid")
    SandboxedKernelManager.kernel_log = str(root / "kernel.log")
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    config.Execute.timeout = int(plan["cell_timeout"])
    config.Autograde.autograde_preprocessors = [
        GuardedExecute,
        IgnorePattern,
        ClearMetadataPreprocessor,
        LimitOutput,
        SaveAutoGrades,
        AssignLatePenalties,
        CheckCellMetadata,
    ]
    api = NbGraderAPI(config=config)
    status: dict[str, Any] = {"autograde": False, "feedback": False, "flags": []}
    t0 = time.perf_counter()
    if plan.get("skip_cells"):
        shutil.copyfile(root / "gradebook.db", root / "gradebook.before.db")
    res = api.autograde(lesson, student, force=True, create=True)
    if plan.get("skip_cells") and _needs_every_cell(root, lesson, student, res):
        # a kept cell missed a name (or the kernel died): grade as if nothing were skipped
        shutil.copyfile(root / "gradebook.before.db", root / "gradebook.db")
        plan["skip_cells"] = []
        GuardedExecute.events = []
        GuardedExecute.zero = dict(plan.get("zero", {}))
        GuardedExecute.timing = {}
        status["regraded_all_cells"] = True
        sys.stdout.write("XLTAGAIN\n")  # the parent restarts the notebook's clock
        sys.stdout.flush()
        res = api.autograde(lesson, student, force=True, create=True)
    t_autograde = time.perf_counter()
    status["autograde"] = bool(res.get("success"))
    if not status["autograde"]:
        status["error"] = (res.get("error") or res.get("log") or "")[-2000:]
    else:
        graded = root / "autograded" / student / lesson / f"{lesson}.ipynb"
        nb = notebooks.read_notebook(graded)
        status["flags"] = list(dict.fromkeys(GuardedExecute.events + _cell_flags(nb)))
        if GuardedExecute.zero:
            _apply_zero(root, lesson, student, GuardedExecute.zero)
        if not plan.get("include_hidden"):
            strip_hidden_tests(nb)
        graded.write_text(notebooks.dumps(nb), encoding="utf-8")
        fb = api.generate_feedback(lesson, student, force=True)
        status["feedback"] = bool(fb.get("success"))
    t = GuardedExecute.timing
    if "kernel_ready" in t:
        # seconds: before execution (nbgrader's sanitising), kernel start, running the
        # cells (and shutting the kernel down), feedback
        status["timing"] = {
            "prepare": round(t["execute_start"] - t0, 3),
            "kernel_start": round(t["kernel_ready"] - t["execute_start"], 3),
            # kernel_start's parts: jupyter_client before the launch, the fork server's
            # answer (clean-up and fork), the kernel's own start up to its first reply
            **(
                {
                    "before_launch": round(t["launch_start"] - t["execute_start"], 3),
                    "spawn": round(t["launched"] - t["launch_start"], 3),
                    "until_ready": round(t["kernel_ready"] - t["launched"], 3),
                }
                if "launched" in t
                else {}
            ),
            "cells": round(t_autograde - t["kernel_ready"], 3),
            "feedback": round(time.perf_counter() - t_autograde, 3),
        }
    return status


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        sys.exit(serve(Path(sys.argv[3]) if sys.argv[2:3] == ["--zygote"] else None))
    sys.exit(main(sys.argv[1]))
