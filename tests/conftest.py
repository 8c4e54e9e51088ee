"""Shared test settings: offline, smoke-size lessons, helpers to find notebooks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

# The suite runs offline and executes lessons at their documented smoke size.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["XLT_COURSE_SMOKE"] = "1"
# Idle OpenMP threads spin for a while by default; on a 2-core CI runner that steals the
# cores from the notebook kernels the suite starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from cells import cell_source  # noqa: E402

from autograder import grading  # noqa: E402
from autograder.paths import solutions_dir  # noqa: E402
from xlt_course import paths  # noqa: E402

LESSONS = grading.lesson_names()

#: The lesson each test file belongs to: ``pytest -m lessonNN`` runs it (CONTRIBUTING.md has
#: the lesson -> module -> test -> marker table). tests/test_notebooks.py is marked per test
#: from the lesson in its parametrised id.
LESSON_OF_TEST_FILE = {
    "test_environment.py": "00",
    "test_runtime.py": "00",
    "test_shared_space.py": "01",
    "test_procrustes.py": "02",
    "test_retrieval.py": "02",
    "test_unsupervised_alignment.py": "03",
    "test_tokenization.py": "04",
    "test_sampling.py": "05",
    "test_pretrain.py": "05",
    "test_finetune.py": "06",
    "test_fastpath.py": "06",
    "test_translate.py": "07",
    "test_pivots_and_ensembles.py": "08",
    "test_prompts_and_code_switching.py": "09",
    "test_transfer_gap.py": "10",
    "test_token_transfer.py": "11",
    "test_llm_prompting.py": "12",
}
#: Test files of no single lesson: the data build, models, published figures, the grading
#: system (grading, intake, export, similarity, validate), the command line.
INFRASTRUCTURE_TEST_FILES = {
    "test_benchmarks.py",
    "test_bible.py",
    "test_cheating.py",
    "test_cli.py",
    "test_colab_like.py",
    "test_course.py",
    "test_dictionary.py",
    "test_export.py",
    "test_gradescope.py",
    "test_grades_report.py",
    "test_grading.py",
    "test_grading_course_rule.py",
    "test_grading_errors.py",
    "test_grading_prewarm.py",
    "test_grading_skip.py",
    "test_grading_shards.py",
    "test_install_sets.py",
    "test_intake.py",
    "test_kernel_guard.py",
    "test_layout.py",
    "test_models.py",
    "test_pysource.py",
    "test_notebooks.py",
    "test_published.py",
    "test_sandbox.py",
    "test_similarity.py",
    "test_topics.py",
    "test_validate.py",
    "test_vectors.py",
    "test_verdict.py",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test of a lesson with ``lessonNN`` (registered in pyproject.toml)."""
    for item in items:
        lesson = LESSON_OF_TEST_FILE.get(item.path.name)
        callspec = getattr(item, "callspec", None)
        if lesson is None and callspec is not None:
            param = callspec.params.get("lesson")
            if isinstance(param, str) and param[:2].isdigit():
                lesson = param[:2]
        if lesson is not None:
            item.add_marker(getattr(pytest.mark, f"lesson{lesson}"))


def solution(lesson: str) -> Path:
    """Return the solution notebook of ``lesson``."""
    return solutions_dir() / lesson / f"{lesson}.ipynb"


@pytest.fixture(autouse=True)
def _dev_null_stays_a_device():
    """Fail the test that turns /dev/null into a regular file (a root process that saves to
    it by renaming a file can): every sandboxed kernel the grader starts after it fails."""
    yield
    if os.path.exists("/dev/null") and not stat.S_ISCHR(os.stat("/dev/null").st_mode):
        pytest.fail("this test replaced /dev/null with a regular file; restore the device "
                    "(mknod -m 666 /dev/null c 1 3) and write to tmp_path instead")  # fmt: skip


@pytest.fixture(scope="session")
def built_data() -> Path:
    """Return the build folder, skipping nothing: the suite needs `xlt-course data build`."""
    from xlt_course.data.build import artefact_status

    bad = {k: v[1] for k, v in artefact_status().items() if not v[0]}
    if bad:
        pytest.fail(f"offline data is not built or is corrupt ({bad}): run `make data`")
    return paths.build_dir()


def sandboxed_batch(tmp_path_factory, name: str) -> tuple[Path, Path]:
    """Return (submissions, graded) folders for a grading batch; fail if no sandbox works here."""
    from autograder import sandbox

    ok, why = sandbox.sandbox_status()
    assert ok, f"the grading sandbox does not work here: {why}"
    base = tmp_path_factory.mktemp(name)
    return base / "submissions", base / "graded"


def assert_build_is_noop(build, manifest, names: tuple[str, ...]) -> None:
    """Run ``build(manifest)`` again and check that it rewrote none of the ``names`` artefacts."""
    files = [manifest.folder / manifest.entries[n].path for n in names]
    before = [f.stat().st_mtime_ns for f in files]
    build(manifest)
    assert [f.stat().st_mtime_ns for f in files] == before, "a second build rewrote artefacts"


def rotation(d: int, seed: int = 0) -> np.ndarray:
    """Return a random (d, d) float32 rotation (orthogonal, from a QR decomposition)."""
    Q, R = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return (Q * np.sign(np.diag(R))).astype(np.float32)


def rotated_pair(n: int = 2000, d: int = 20, noise: float = 0.05, seed: int = 0):
    """Return (X, Y, W_true), (n, d) each and (d, d), with Y = X W_true + noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    W = rotation(d, seed + 1)
    Y = (X @ W + noise * rng.normal(size=(n, d))).astype(np.float32)
    return X, Y, W


def run_visible_checks(nb_path: Path, grade_id: str, **functions) -> None:
    """Run only the visible self-checks of the tests cell ``grade_id`` (what a student sees)."""
    source = cell_source(nb_path, grade_id).partition("### BEGIN HIDDEN TESTS")[0]
    exec(
        compile(source, f"{nb_path.name}:{grade_id}:visible", "exec"),
        {"__name__": "__tests__", **functions},
    )
