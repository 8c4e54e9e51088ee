"""The session setup every lesson's first cell runs, and what importing the package does."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from xlt_course import runtime


def test_import_has_no_visible_side_effects():
    code = (
        "import random, sys; state = random.getstate();"
        "import xlt_course, xlt_course.runtime, xlt_course.environment, xlt_course.checks, xlt_course.data.build, autograder.grading;"
        "assert random.getstate() == state, 'import seeded random';"
        "assert 'torch' not in sys.modules, 'import pulled in torch'"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and res.stderr == ""


def test_setup_lesson_seeds_and_reports(capsys, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    env = runtime.setup_lesson(seed=3)
    out = capsys.readouterr().out
    assert "xlt-course ready" in out and "offline" in out
    assert env.offline and env.smoke and env.device in ("cpu", "cuda", "mps")
    a = np.random.rand()
    runtime.setup_lesson(seed=3, quiet=True)
    assert np.random.rand() == a
