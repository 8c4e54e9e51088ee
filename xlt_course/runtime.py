"""The session every lesson runs in: its first cell calls :func:`setup_lesson`.

The same setup cell opens every lesson (``from xlt_course.runtime import setup_lesson``);
it seeds, picks the device and the offline mode, and tells the lesson whether to run its
smoke size (:func:`smoke`, the test suite) or to skip training (:func:`grading`, while
grading). Training code asks :func:`default_device` for its device.

Used in: every lesson's setup cell; the training modules.
"""

from __future__ import annotations

import os
import platform
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from xlt_course import paths

Device = Literal["cuda", "mps", "cpu"]


def smoke() -> bool:
    """Return True when lessons should run their smoke-size setting (``XLT_COURSE_SMOKE=1``).

    The test suite sets it so that every solution notebook executes within CI's budget;
    ``make course`` runs the full settings.
    """
    return os.environ.get("XLT_COURSE_SMOKE", "").lower() in {"1", "true", "yes"}


def grading() -> bool:
    """Return True inside the grader, where lessons must skip training and plotting work."""
    return os.environ.get("XLT_COURSE_GRADING", "") == "1"


def is_colab() -> bool:
    """Return True when running in Google Colab."""
    return "google.colab" in sys.modules


def default_device() -> Device:
    """Return the best available torch device name (cuda, then mps, then cpu)."""
    try:
        import torch
    except ImportError:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (if installed) torch for reproducible lessons."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)


@dataclass(frozen=True)
class LessonEnv:
    """What a lesson needs to know about where it runs."""

    colab: bool
    offline: bool
    device: Device
    smoke: bool
    grading: bool
    seed: int
    data_dir: Path


def setup_lesson(seed: int = 0, *, quiet: bool = False) -> LessonEnv:
    """Seed everything, pick the device, choose offline mode, and print a one-line summary.

    Offline (the default everywhere but Colab) sets ``HF_HUB_OFFLINE=1`` so that nothing
    tries to reach a model hub; on Colab the hub is used for the real models.

    Returns:
        A :class:`LessonEnv` describing the session.
    """
    offline = not is_colab() or os.environ.get("HF_HUB_OFFLINE") == "1"
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    seed_everything(seed)
    env = LessonEnv(
        colab=is_colab(),
        offline=offline,
        device=default_device(),
        smoke=smoke(),
        grading=grading(),
        seed=seed,
        data_dir=paths.data_dir(),
    )
    if not quiet:
        where = "Colab" if env.colab else platform.node() or "local"
        mode = "offline" if env.offline else "online (Hugging Face hub)"
        size = ", smoke-size" if env.smoke else ""
        print(f"xlt-course ready: {where}, {mode}, device={env.device}, seed={seed}{size}")
    return env
