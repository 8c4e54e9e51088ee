"""Install sets and publishing: the Makefile, requirements/, environment.yml and binder/ agree,
and every notebook's Colab badge and setup cell come from pyproject's repository setting."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import LESSONS, solution

from autograder import notebooks
from autograder.paths import REPO_ROOT

KEPT_BY_COLAB = {"torch", "ipykernel", "ipython", "notebook", "jupyter_client", "tornado"}


def make_variable(name: str) -> str:
    """Return the value of ``NAME := value`` in the Makefile."""
    text = (REPO_ROOT / "Makefile").read_text()
    m = re.search(rf"^{name} :?= (.*)$", text, flags=re.M)
    assert m, f"Makefile has no {name}"
    return m.group(1).strip()


def requirement_names(path: Path) -> list[str]:
    """Return the distribution names a requirements file lists (following -r)."""
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names += requirement_names(path.parent / line[3:].strip())
        elif line:
            names.append(re.split(r"[<>=!~\[; ]", line)[0].lower().replace("_", "-"))
    return names


def test_requirements_txt_is_the_three_sets_and_nothing_else():
    sets = {
        s: requirement_names(REPO_ROOT / "requirements" / f"{s}.txt")
        for s in ("lesson", "instructor", "dev")
    }
    everything = requirement_names(REPO_ROOT / "requirements.txt")
    assert sorted(everything) == sorted(sum(sets.values(), []))
    assert len(set(everything)) == len(everything), "a package is listed in two sets"


def test_lesson_set_leaves_colabs_kernel_stack_and_tools_alone():
    lesson = set(requirement_names(REPO_ROOT / "requirements" / "lesson.txt"))
    forbidden = {n.replace("_", "-") for n in KEPT_BY_COLAB} | {
        "nbgrader", "jupyterlab", "pytest", "ruff", "jupyter-client", "nbclient", "nbconvert",
    }  # fmt: skip
    assert not lesson & forbidden
    assert set(make_variable("COLAB_KEEP").split()) == KEPT_BY_COLAB


def test_colab_install_uses_only_the_lesson_set_under_installed_pins():
    text = (REPO_ROOT / "Makefile").read_text()
    recipe = text.split("\ncolab-install:", 1)[1].split("\n\n", 1)[0]
    assert "-c $(COLAB_CONSTRAINTS) -r requirements/lesson.txt" in recipe
    assert "requirements.txt" not in recipe.replace("requirements/lesson.txt", "")
    assert "installed_pins.py $(COLAB_KEEP)" in recipe


def test_environment_yml_installs_the_makefiles_sets():
    text = (REPO_ROOT / "environment.yml").read_text()
    assert f"- {make_variable('TORCH_PIN')}" in text
    assert "- -r requirements.txt" in text
    for pkg in make_variable("NO_DEPS_PACKAGES").split():
        assert f"- {pkg}" in text, f"environment.yml lacks {pkg} (the encoder build needs it)"


def test_binder_files_match_the_makefile():
    apt = (REPO_ROOT / "binder" / "apt.txt").read_text().split()
    assert apt == make_variable("APT_PACKAGES").split()
    post = (REPO_ROOT / "binder" / "postBuild").read_text()
    assert f"pip install --no-cache-dir {make_variable('TORCH_PIN')}" in post
    assert "pip install --no-cache-dir -r requirements.txt" in post
    for pkg in make_variable("NO_DEPS_PACKAGES").split():
        assert f"--no-deps {pkg}" in post
    assert (REPO_ROOT / "binder" / "postBuild").stat().st_mode & 0o111, "postBuild not executable"


def test_installed_pins_prints_only_installed_distributions(tmp_path):
    import subprocess
    import sys
    from importlib import metadata

    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "requirements" / "installed_pins.py"), "numpy", "no-such-dist-xyz"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out.split() == [f"numpy=={metadata.version('numpy')}"]


@pytest.mark.parametrize("lesson", LESSONS)
def test_badge_and_setup_cell_match_the_repository_setting(lesson):
    setting = notebooks.repository_setting()
    nb = notebooks.read_notebook(solution(lesson))
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source == notebooks.setup_source(setting), f"{lesson}: run `xlt-course lessons`"
    assert setting.repository in code[0].source and f" {setting.ref} " in code[0].source
    badge = notebooks.colab_badge(lesson, setting)
    assert f"/blob/{setting.ref}/lessons/{lesson}/{lesson}.ipynb" in badge
    assert badge in nb.cells[0].source, f"{lesson}: run `xlt-course lessons`"


def test_changing_the_setting_rewrites_badge_and_setup_cell_only(tmp_path):
    src = solution(LESSONS[0])
    copy = tmp_path / src.name
    shutil.copyfile(src, copy)
    assert not notebooks.sync_repository_setting(copy), "the committed notebook is out of date"
    fork = notebooks.RepositorySetting("https://github.com/someone/fork", "v1.2")
    assert notebooks.sync_repository_setting(copy, fork)
    before, after = src.read_text().splitlines(), copy.read_text().splitlines()
    changed = [b for a, b in zip(before, after, strict=True) if a != b]
    assert changed and all("someone/fork" in line or "checksum" in line for line in changed)
    assert "git fetch -q --depth 1 https://github.com/someone/fork v1.2" in copy.read_text()


@pytest.mark.parametrize(
    "table, message",
    [
        ("", "needs repository and ref"),
        (
            'repository = "https://gitlab.com/a/b"\nref = "main"',
            "must be https://github.com/OWNER/NAME",
        ),
        ('repository = "https://github.com/a/b"\nref = "main; rm -rf /"', "is not a git ref"),
    ],
)
def test_a_bad_repository_setting_is_a_clear_error(tmp_path, table, message):
    (tmp_path / "pyproject.toml").write_text(
        f"[project]\nname = 'x'\n\n[tool.xlt-course]\n{table}\n"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        notebooks.repository_setting(tmp_path / "pyproject.toml")


def run_colab_setup_cell(monkeypatch, returncode: int, log: str) -> list[str]:
    """Run the setup cell's Colab branch with `make` faked; return the shell command it ran."""
    import subprocess
    import sys
    import types

    ran = []

    def fake_run(cmd, **kwargs):
        ran.append(cmd)
        assert kwargs.get("capture_output") and kwargs.get("text"), "the log must be captured"
        return subprocess.CompletedProcess(cmd, returncode, stdout=log, stderr="")

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(
        notebooks.SETUP_SOURCE.split("try:\n    from xlt_course.runtime")[0],
        {"__name__": "__main__"},
    )
    return ran


def test_setup_cell_on_colab_prints_the_log_tail_and_names_the_failed_step(monkeypatch, capsys):
    log = "\n".join(
        [*(f"line {i}" for i in range(40)), "==> step: pip install the lesson set", "ERROR: boom"]
    )
    with pytest.raises(RuntimeError) as err:
        run_colab_setup_cell(monkeypatch, 2, log)
    out = capsys.readouterr().out
    assert "ERROR: boom" in out and "line 39" in out and "line 10\n" not in out
    message = str(err.value)
    assert "'pip install the lesson set'" in message and "exit 2" in message
    assert "run this cell again" in message and "/issues" in message


def test_setup_cell_on_colab_installs_with_colabs_python_from_the_setting(monkeypatch, capsys):
    import sys

    ran = run_colab_setup_cell(monkeypatch, 0, "==> step: offline data build\nbuilt: ok")
    setting = notebooks.repository_setting()
    assert f"{setting.repository} {setting.ref}" in ran[0]
    assert f"make -C xlt-course colab PYTHON={sys.executable}" in ran[0]
    assert "built: ok" in capsys.readouterr().out
