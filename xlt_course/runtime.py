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


ONLINE_VAR = "XLT_COURSE_ONLINE"
"""The opt-in to the Hugging Face hub outside Colab (``1``), or out of it on Colab (``0``)."""


def online_choice() -> bool | None:
    """Return the ``XLT_COURSE_ONLINE`` choice: True (``1``), False (``0``), None (unset).

    Raises:
        ValueError: any other value (the message lists the accepted ones).
    """
    value = os.environ.get(ONLINE_VAR, "").strip().lower()
    if value in {"", "auto"}:
        return None
    if value in {"1", "true", "yes"}:
        return True
    if value in {"0", "false", "no"}:
        return False
    raise ValueError(
        f"{ONLINE_VAR}={os.environ[ONLINE_VAR]!r}: use 1 to load models and datasets from the "
        "Hugging Face hub, 0 to stay offline, or leave it unset (online on Colab only)"
    )


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


def _set_hub_offline(offline: bool) -> None:
    """Set the hub's offline switches, also in huggingface_hub if it is already imported."""
    value = "1" if offline else "0"
    os.environ["HF_HUB_OFFLINE"] = value
    os.environ["TRANSFORMERS_OFFLINE"] = value
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; transformers asks it.
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = offline


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

    Offline is the default everywhere but Colab: it sets ``HF_HUB_OFFLINE=1`` so that
    nothing tries to reach a model hub. ``XLT_COURSE_ONLINE=1`` opts in to the hub on any
    machine with internet (a workstation, Kaggle), ``XLT_COURSE_ONLINE=0`` opts out on Colab.
    Grading (``XLT_COURSE_GRADING=1``) is always offline.

    Returns:
        A :class:`LessonEnv` describing the session.

    Raises:
        ValueError: ``XLT_COURSE_ONLINE`` has a value other than 1/0 (or unset).
    """
    choice = online_choice()
    if grading():
        offline = True
    elif choice is None:
        offline = not is_colab() or os.environ.get("HF_HUB_OFFLINE") == "1"
    else:
        offline = not choice
    _set_hub_offline(offline)
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
        mode = "online (Hugging Face hub)"
        if env.offline:
            mode = "offline" if env.grading else f"offline ({ONLINE_VAR}=1 for the hub)"
        size = ", smoke-size" if env.smoke else ""
        print(f"xlt-course ready: {where}, {mode}, device={env.device}, seed={seed}{size}")
    return env
