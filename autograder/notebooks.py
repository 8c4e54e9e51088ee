"""Read, write and inspect the course notebooks (nbgrader cell metadata, the shared setup cell).

Solution notebooks are edited in JupyterLab with nbgrader's "Create Assignment" toolbar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from autograder import kernel_guard
from autograder.paths import REPO_ROOT

HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
HIDDEN_END = "### END HIDDEN TESTS"


def split_hidden(source: str) -> tuple[str, str, str]:
    """Split a tests cell's source around its hidden tests.

    Args:
        source: a cell's source.

    Returns:
        ``(head, hidden, tail)``: the visible code before :data:`HIDDEN_BEGIN`, the code
        between the markers, and the visible code after :data:`HIDDEN_END`. Without the
        markers, ``(source, "", "")``.
    """
    head, _, rest = source.partition(HIDDEN_BEGIN)
    hidden, _, tail = rest.partition(HIDDEN_END)
    return head, hidden, tail


@dataclass(frozen=True)
class RepositorySetting:
    """Where the course is published: ``[tool.xlt-course]`` of pyproject.toml.

    Attributes:
        repository: the GitHub URL, e.g. ``https://github.com/xlt-course/xlt-course``.
        ref: the branch, tag or commit that badges open and setup cells clone.
    """

    repository: str
    ref: str


def repository_setting(pyproject: Path | None = None) -> RepositorySetting:
    """Read ``[tool.xlt-course]`` (repository, ref) from pyproject.toml.

    Raises:
        ValueError: the table or a key is missing, or the URL is not a GitHub repository.
    """
    path = pyproject or REPO_ROOT / "pyproject.toml"
    text = path.read_text(encoding="utf-8")
    try:
        import tomllib

        table = tomllib.loads(text).get("tool", {}).get("xlt-course", {})
    except ImportError:  # Python 3.10: the two string keys of the table, read by hand
        body = text.partition("[tool.xlt-course]")[2].split("\n[", 1)[0]
        table = dict(re.findall(r'^(repository|ref)\s*=\s*"([^"]*)"', body, flags=re.M))
    missing = [k for k in ("repository", "ref") if not table.get(k)]
    if missing:
        raise ValueError(f"{path}: [tool.xlt-course] needs {' and '.join(missing)}")
    url = table["repository"].rstrip("/").removesuffix(".git")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise ValueError(
            f"{path}: [tool.xlt-course] repository must be https://github.com/OWNER/NAME "
            f"(Colab opens notebooks from GitHub), got {table['repository']!r}"
        )
    if not re.fullmatch(r"[\w./-]+", table["ref"]):
        raise ValueError(f"{path}: [tool.xlt-course] ref {table['ref']!r} is not a git ref")
    return RepositorySetting(url, table["ref"])


_SETUP_TEMPLATE = """\
# Setup: the same cell opens every lesson. On Colab it fetches and installs the course
# (a few minutes, once per runtime); on your machine it only checks the environment.
import sys

if "google.colab" in sys.modules:
    import subprocess

    install = subprocess.run(
        "test -f xlt-course/Makefile || (rm -rf xlt-course && git init -q xlt-course && cd xlt-course && "
        "git fetch -q --depth 1 {url} {ref} && git checkout -q FETCH_HEAD); "
        f"make -C xlt-course colab PYTHON={sys.executable}",
        shell=True,
        capture_output=True,
        text=True,
    )
    log = (install.stdout + install.stderr).splitlines()
    print("\\n".join(log[-15:]))
    if install.returncode != 0:
        steps = [line for line in log if line.startswith("==> step:")] or ["==> step: git fetch"]
        raise RuntimeError(
            f"course install failed at {steps[-1][10:]!r} (exit {install.returncode}; log above): "
            "run this cell again; if it fails again, open an issue at {url}/issues with the log"
        )
    sys.path.insert(0, "xlt-course")

try:
    from xlt_course.runtime import setup_lesson
except ModuleNotFoundError as e:
    if e.name != "xlt_course":
        raise
    raise ModuleNotFoundError(
        "this kernel cannot import the course: install it (`make course` in the repository), "
        "then choose that environment's kernel (Kernel > Change Kernel)"
    ) from None

ENV = setup_lesson()"""


def setup_source(setting: RepositorySetting | None = None) -> str:
    """Return the first code cell of every lesson, for ``setting`` (default: pyproject's)."""
    s = setting or repository_setting()
    return _SETUP_TEMPLATE.replace("{url}", s.repository).replace("{ref}", s.ref)


# The first code cell of every lesson, byte for byte (tests check it).
SETUP_SOURCE = setup_source()

_BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")


def colab_badge(lesson: str, setting: RepositorySetting | None = None) -> str:
    """Return the markdown of the "Open in Colab" badge for ``lesson`` (e.g. ``02-procrustes``)."""
    s = setting or repository_setting()
    repo = s.repository.removeprefix("https://github.com/")
    href = f"https://colab.research.google.com/github/{repo}/blob/{s.ref}/lessons/{lesson}/{lesson}.ipynb"
    img = "https://colab.research.google.com/assets/colab-badge.svg"
    return f"[![Open In Colab]({img})]({href})"


def sync_repository_setting(path: Path, setting: RepositorySetting | None = None) -> bool:
    """Rewrite a solution notebook's badge and setup cell from the repository setting.

    Args:
        path: ``solutions/NN-topic/NN-topic.ipynb``; its title cell must hold a badge.
        setting: default: pyproject.toml's ``[tool.xlt-course]``.

    Returns:
        True when the file changed.

    Raises:
        ValueError: the notebook has no badge in its first cell or no code cell.
    """
    setting = setting or repository_setting()
    nb = read_notebook(path)
    title = nb.cells[0]
    if not _BADGE.search(title.source):
        raise ValueError(f"{path}: its first cell has no Open In Colab badge to update")
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code:
        raise ValueError(f"{path}: no code cell, so no setup cell to update")
    lesson = path.stem
    title.source = _BADGE.sub(lambda _: colab_badge(lesson, setting), title.source, count=1)
    code[0].source = setup_source(setting)
    text = dumps(nb)
    if text == path.read_text(encoding="utf-8"):
        return False
    path.write_text(text, encoding="utf-8")
    return True


def dumps(nb: nbformat.NotebookNode) -> str:
    """Return the course's stable text layout of a notebook (nbformat's, newline-terminated)."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read a notebook (any nbformat 4 minor version), raising ValueError naming the file.

    A UTF-8 byte-order mark (Windows Notepad, PowerShell 5.1) is no error.
    """
    try:
        return nbformat.reads(Path(path).read_bytes().decode("utf-8-sig"), as_version=4)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - nbformat raises many types for bad input
        raise ValueError(f"{path} is not a readable Jupyter notebook: {e}") from e


def grade_cells(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """Return ``{grade_id: cell}`` for every nbgrader cell of ``nb``."""
    out = {}
    for c in nb.cells:
        meta = c.get("metadata", {}).get("nbgrader")
        if meta and meta.get("grade_id"):
            out[meta["grade_id"]] = c
    return out


def has_outputs(nb: nbformat.NotebookNode) -> bool:
    """Return True when any code cell carries outputs or an execution count."""
    return any(
        c.cell_type == "code" and (c.get("outputs") or c.get("execution_count")) for c in nb.cells
    )


def cell_label(nb: Any, index: int) -> str:
    """Name a cell for a flag or a message: its grade id, or its position after the last graded cell."""
    gid = nb.cells[index].get("metadata", {}).get("nbgrader", {}).get("grade_id")
    if gid:
        return gid
    before = [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in nb.cells[:index]]
    anchor = next((g for g in reversed(before) if g), None)
    return f"cell {index + 1}" + (f" (after {anchor})" if anchor else "")


async def request(client: Any, content: dict, key: str | None = None) -> dict | None:
    """Send the grader's ``xltg_request`` to ``client``'s kernel; return the reply's content.

    The kernel answers it with the handler :func:`autograder.kernel_guard._xltg_install`
    registered (None when no reply came within the client's timeout: the kernel was
    interrupted). With the handler's signing ``key``, a reply whose signature does not hold
    comes back as ``{"status": "forged"}`` (:func:`autograder.kernel_guard.verify_reply`).

    Raises:
        nbclient.exceptions.DeadKernelError: when the kernel died meanwhile.
    """
    msg = client.kc.session.msg("xltg_request", content)
    client.kc.shell_channel.send(msg)
    msg_id = msg["header"]["msg_id"]
    reply = await client.async_wait_for_reply(msg_id)
    return kernel_guard.verify_reply(key, msg_id, None if reply is None else reply.get("content"))


async def eval_expression(client: Any, expression: str) -> dict | None:
    """Evaluate ``expression`` in ``client``'s kernel, bypassing the notebook's IPython hooks.

    Sent as the only user expression of an empty, silent execute request: IPython evaluates
    it with ``eval`` in the notebook's namespace, so no input or AST transformer, pre/post-run
    event or custom exception handler a notebook installed touches it, nothing is stored in
    the history, and its value comes back in the reply (its printed output is discarded).

    Args:
        client: an ``nbclient.NotebookClient`` with a started kernel.
        expression: one Python expression.

    Returns:
        The reply's entry for the expression (``status``, then ``data`` or ``ename``,
        ``evalue``, ``traceback``), or None when no reply came within the client's timeout
        (the kernel was interrupted).

    Raises:
        nbclient.exceptions.DeadKernelError: when the kernel died meanwhile.
    """
    msg_id = client.kc.execute(
        "", silent=True, store_history=False, user_expressions={"x": expression}, allow_stdin=False
    )
    reply = await client.async_wait_for_reply(msg_id)
    if reply is None:
        return None
    return reply.get("content", {}).get("user_expressions", {}).get("x")
