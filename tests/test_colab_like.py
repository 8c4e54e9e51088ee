"""The Colab path, proven here: a fresh virtual environment seeded with what Colab pins
(its kernel stack and an installed torch), then `make colab-install` into it (what the
setup cell runs), then lesson 00 and training lesson 06 execute in it at smoke size.

The seeded venv is cached under data/cache/, keyed by the pins, the lesson set and the
Makefile; the install step itself runs every time. The data is not rebuilt: the lessons
read data/build through the editable install of this checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import solution

from autograder import notebooks
from autograder.paths import REPO_ROOT
from xlt_course import paths

pytestmark = [pytest.mark.colab, pytest.mark.slow]

#: Colab's kernel stack (what its runtime pins; upgrading it crashes Colab runtimes).
COLAB_PINS = ("ipykernel==6.17.1", "ipython==7.34.0", "notebook==6.5.7")
KEPT = ("torch", "ipykernel", "ipython", "notebook", "jupyter_client", "tornado")
TIMINGS: dict[str, float] = {}


def make_variable(name: str) -> str:
    for line in (REPO_ROOT / "Makefile").read_text().splitlines():
        if line.startswith(f"{name} :=") or line.startswith(f"{name} ?="):
            return line.split("=", 1)[1].strip()
    raise AssertionError(f"Makefile has no {name}")


def versions(python: Path) -> dict[str, str]:
    """Return ``{dist: version}`` of the KEPT distributions installed for ``python``."""
    code = (
        "import json, sys; from importlib import metadata as m\n"
        "out = {}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run(
        [str(python), "-c", code, *KEPT], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def clean_env() -> dict[str, str]:
    """The environment of a Colab user: no PYTHONPATH to this checkout, no venv of ours."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def colab_python() -> Path:
    """Return the python of a venv seeded like Colab (cached), after `make colab-install`."""
    torch_pin = make_variable("TORCH_PIN")
    key_text = "\n".join(
        [
            *COLAB_PINS,
            torch_pin,
            sys.version,
            (REPO_ROOT / "requirements" / "lesson.txt").read_text(),
            (REPO_ROOT / "Makefile").read_text(),
        ]
    )
    key = hashlib.sha256(key_text.encode()).hexdigest()[:12]
    root = paths.cache_dir() / f"colab-venv-{key}"
    python = root / "bin" / "python"
    env = clean_env()
    if not (root / ".seeded").is_file():
        shutil.rmtree(root, ignore_errors=True)
        t0 = time.perf_counter()
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(root)], check=True, env=env)
        # torch first and alone: Colab's is installed before anything of ours.
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, torch_pin], check=True, env=env)
        subprocess.run([*pip, *COLAB_PINS], check=True, env=env)
        (root / ".seeded").write_text(json.dumps(versions(python)))
        TIMINGS["seed venv"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    done = subprocess.run(
        ["make", "-C", str(REPO_ROOT), "colab-install", f"PYTHON={python}",
         f"COLAB_CONSTRAINTS={root / 'constraints.txt'}"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    TIMINGS["make colab-install"] = time.perf_counter() - t0
    assert done.returncode == 0, (
        f"make colab-install failed:\n{(done.stdout + done.stderr)[-4000:]}"
    )
    return python


def test_seeded_venv_has_colabs_pins_and_torch(colab_python):
    seeded = json.loads((colab_python.parent.parent / ".seeded").read_text())
    for pin in COLAB_PINS:
        name, version = pin.split("==")
        assert seeded[name] == version
    assert seeded["torch"].startswith(make_variable("TORCH_PIN").split("==")[1])


def test_colab_install_leaves_torch_and_the_kernel_stack_unchanged(colab_python):
    seeded = json.loads((colab_python.parent.parent / ".seeded").read_text())
    assert set(KEPT) <= set(seeded), f"the seeded venv lacks some of {KEPT}: {seeded}"
    assert versions(colab_python) == seeded


def test_colab_install_gives_a_working_course_without_instructor_or_dev_tools(colab_python):
    code = (
        "import importlib.util as u, xlt_course.runtime, transformers, torch\n"
        "print([m for m in ('nbgrader', 'jupyterlab', 'pytest', 'ruff') if u.find_spec(m)])"
    )
    done = subprocess.run(
        [str(colab_python), "-c", code], capture_output=True, text=True, env=clean_env(), cwd="/"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]", f"the lesson set pulled in {done.stdout.strip()}"


@pytest.mark.parametrize("lesson", ["00-setup", "06-zero-shot-transfer"])
def test_lesson_executes_in_the_colab_like_venv(
    lesson, colab_python, built_data, tmp_path, monkeypatch
):
    import nbclient

    spec = tmp_path / "jupyter" / "kernels" / "colab-like"
    spec.mkdir(parents=True)
    argv = [str(colab_python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "colab-like", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    work = tmp_path / lesson
    shutil.copytree(solution(lesson).parent, work, ignore=shutil.ignore_patterns(".*"))
    nb = notebooks.read_notebook(work / f"{lesson}.ipynb")
    # The built data is reused; the cache is empty, so the lesson trains here, in this venv.
    data = tmp_path / "data"
    data.mkdir()
    for entry in paths.data_dir().iterdir():
        if entry.name != "cache":
            (data / entry.name).symlink_to(entry.resolve())
    env = clean_env() | {
        "XLT_COURSE_SMOKE": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
        "XLT_COURSE_DATA": str(data),
    }
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="colab-like", resources={"metadata": {"path": str(work)}}
    )
    t0 = time.perf_counter()
    client.execute(env=env)
    TIMINGS[f"execute {lesson}"] = time.perf_counter() - t0
    first = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "xlt-course ready" in first
    if lesson == "00-setup":  # the environment report: nothing a student needs is missing
        assert "MISSING" not in first, first[-3000:]
    # the kernel ran the venv's python, with the kernel stack Colab pins
    probe = nbclient.NotebookClient(
        notebooks.nbformat.v4.new_notebook(
            cells=[
                notebooks.nbformat.v4.new_code_cell(
                    "import sys, IPython; print(sys.executable, IPython.__version__)"
                )
            ]
        ),
        kernel_name="colab-like",
        timeout=60,
    )
    out = probe.execute(env=env).cells[0].outputs[0]["text"].split()
    assert out == [str(colab_python), "7.34.0"]


def test_report_timings():
    """Print what the Colab-like check cost (seeding happens once per cache key)."""
    print("colab-like timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in TIMINGS.items()))
