"""The session setup every lesson's first cell runs, and what importing the package does."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

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


@pytest.fixture
def hub_switches(monkeypatch):
    """Let a test change the hub's offline switches; restore them (env and module) after it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.delenv("XLT_COURSE_ONLINE", raising=False)
    monkeypatch.delenv("XLT_COURSE_GRADING", raising=False)
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", constants.HF_HUB_OFFLINE)
    return constants


def test_offline_is_the_default_outside_colab(hub_switches, monkeypatch, capsys):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    env = runtime.setup_lesson()
    assert env.offline and os.environ["HF_HUB_OFFLINE"] == "1"
    assert "XLT_COURSE_ONLINE=1 for the hub" in capsys.readouterr().out


def test_xlt_course_online_opts_in_to_the_hub_anywhere(hub_switches, monkeypatch, capsys):
    monkeypatch.setenv("XLT_COURSE_ONLINE", "1")
    env = runtime.setup_lesson()
    assert not env.offline and not env.colab
    assert os.environ["HF_HUB_OFFLINE"] == "0" and os.environ["TRANSFORMERS_OFFLINE"] == "0"
    assert hub_switches.HF_HUB_OFFLINE is False  # what transformers asks, read at import
    assert "online (Hugging Face hub)" in capsys.readouterr().out


def test_xlt_course_online_0_and_grading_stay_offline(hub_switches, monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", object())
    monkeypatch.setenv("XLT_COURSE_ONLINE", "0")
    assert runtime.setup_lesson(quiet=True).offline
    monkeypatch.setenv("XLT_COURSE_ONLINE", "1")
    monkeypatch.setenv("XLT_COURSE_GRADING", "1")
    assert runtime.setup_lesson(quiet=True).offline and os.environ["HF_HUB_OFFLINE"] == "1"


def test_a_bad_xlt_course_online_value_is_a_clear_error(hub_switches, monkeypatch):
    monkeypatch.setenv("XLT_COURSE_ONLINE", "maybe")
    with pytest.raises(ValueError, match="use 1 to load models and datasets"):
        runtime.setup_lesson(quiet=True)
