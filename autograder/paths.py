"""Where the instructor's notebooks live: nbgrader's source and release folders."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
CONFIG_FILE = PACKAGE_DIR / "nbgrader_config.py"
"""The course's nbgrader configuration (also used by ``nbgrader`` run by hand)."""


def solutions_dir() -> Path:
    """Return nbgrader's source folder (instructor notebooks)."""
    return REPO_ROOT / "solutions"


def lessons_dir() -> Path:
    """Return nbgrader's release folder (student notebooks, generated)."""
    return REPO_ROOT / "lessons"
