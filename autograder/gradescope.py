"""Gradescope: an autograder bundle whose ``run_autograder`` grades with this course's grader.

``xlt-course export --format gradescope`` writes ``gradescope.zip``: ``setup.sh`` (run once
when Gradescope builds the image: ``make install data``), ``run_autograder`` (run per
submission) and the course's source. ``run_autograder`` calls
``python -m autograder.gradescope``, which grades the submitted notebook exactly as
``xlt-course grade`` does and writes Gradescope's ``/autograder/results/results.json``:

- one test per exercise with its points; its score depends on the hidden tests, so it has
  the bundle's hidden-test visibility (default ``after_published``: students see it when
  you publish grades), and its output never quotes a hidden test;
- one zero-point, always visible test per exercise with the self-check result (what the
  student can already see in the notebook), and one with the submission's flags.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Literal

from xlt_course import paths

Visibility = Literal["hidden", "after_due_date", "after_published", "visible"]

SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make python3 python3-venv python3-pip
cd /autograder/source
make install data
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this for every submission; it always leaves results/results.json.
cd /autograder/source
export OMP_WAIT_POLICY=PASSIVE
exec .venv/bin/python -m autograder.gradescope \\
  --submission /autograder/submission --results /autograder/results/results.json
"""


def results_json(
    result: Any,
    checks: list[Any] | None = None,
    *,
    visibility: Visibility = "after_published",
    seconds: float | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Return Gradescope's ``results.json`` for one graded notebook.

    Args:
        result: the :class:`~autograder.grading.SubmissionResult` (points per tests cell).
        checks: the self-check results of :func:`autograder.validate.validate` (optional).
        visibility: when students see the scores the hidden tests decide.
        seconds: the grading time (``execution_time``).
        notes: lines for the student about the upload (which notebook was graded).

    Returns:
        The JSON object (no top-level ``score``: Gradescope sums the tests).
    """
    tests: list[dict[str, Any]] = []
    for i, (gid, (score, max_score)) in enumerate(sorted(result.points.items()), start=1):
        tests.append(
            {
                "name": f"{gid} (self-check and hidden tests)",
                "number": f"{i}",
                "score": score,
                "max_score": max_score,
                "status": "passed" if score >= max_score else "failed",
                "visibility": visibility,
                "output": (
                    "All tests pass."
                    if score >= max_score
                    else "Some tests fail: the self-check results below say what is wrong "
                    "where a self-check can tell."
                ),
            }
        )
    for i, c in enumerate(checks or [], start=1):
        tests.append(
            {
                "name": f"{c.grade_id}: self-check",
                "number": f"0.{i}",
                "score": 0.0,
                "max_score": 0.0,
                "status": "passed" if c.ok else "failed",
                "visibility": "visible",
                "output": c.message,
            }
        )
    tests.append(
        {
            "name": "notebook",
            "number": "0",
            "score": 0.0,
            "max_score": 0.0,
            "status": "failed" if result.flags else "passed",
            "visibility": "visible",
            "output": "\n".join([*(notes or []), *result.flags])
            or "The notebook was graded as submitted.",
        }
    )
    payload: dict[str, Any] = {
        "output": f"{result.lesson}: graded by the xlt-course autograder.",
        "stdout_visibility": "hidden",
        "tests": tests,
    }
    if seconds is not None:
        payload["execution_time"] = round(seconds)
    return payload


def _failure(message: str) -> dict[str, Any]:
    return {
        "score": 0.0,
        "output": f"The submission could not be graded: {message}",
        "stdout_visibility": "hidden",
        "tests": [],
    }


def run(
    submission: Path,
    results: Path,
    *,
    lesson: str | None = None,
    visibility: Visibility | None = None,
    self_checks: bool = True,
) -> dict[str, Any]:
    """Grade the notebook in ``submission`` and write ``results`` (always, even on failure).

    The lesson and visibility default to ``gradescope.json`` in the bundle, else the lesson
    is told from the notebook's name or cells.
    """
    from autograder import grading, validate

    settings_file = paths.REPO_ROOT / "gradescope.json"
    settings = json.loads(settings_file.read_text()) if settings_file.exists() else {}
    lesson = lesson or settings.get("lesson")
    visibility = visibility or settings.get("visibility", "after_published")
    t0 = time.perf_counter()
    try:
        found = sorted(
            p for p in Path(submission).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
        )
        lessons = grading.lesson_names()
        if lesson is not None:
            named = [p for p in found if lesson in p.name]
            found = named or found
        notes: list[str] = []
        refusal = None
        if len(found) > 1:
            # a second upload (an older download, "00-setup (1).ipynb"): grade the one named
            # exactly like the lesson, else refuse to guess
            exact = [p for p in found if lesson is not None and p.name == f"{lesson}.ipynb"]
            if len(exact) == 1:
                others = ", ".join(p.name for p in found if p != exact[0])
                notes.append(f"Graded {exact[0].name}; also uploaded, not graded: {others}.")
                found = exact
            else:
                refusal = (
                    f"{len(found)} notebooks were uploaded ({', '.join(p.name for p in found)}):"
                    f" upload only your lesson notebook, named {lesson or 'NN-topic'}.ipynb"
                )
        if refusal is not None:
            payload = _failure(refusal)
        elif not found:
            payload = _failure("no .ipynb file was submitted")
        else:
            nb = found[0]
            lesson = lesson or validate.guess_lesson(nb, lessons)
            if lesson not in lessons:
                payload = _failure(f"cannot tell which lesson {nb.name} is")
            else:
                with tempfile.TemporaryDirectory(prefix="xlt-gs-") as tmp:
                    subs = Path(tmp) / "subs" / "student" / lesson / f"{lesson}.ipynb"
                    subs.parent.mkdir(parents=True)
                    shutil.copy(nb, subs)
                    (result,) = grading.grade(
                        Path(tmp) / "subs", Path(tmp) / "out", lessons=[lesson], jobs=1,
                        progress=False,
                    )  # fmt: skip
                    checks = validate.validate(nb, lesson).checks if self_checks else None
                payload = results_json(
                    result, checks, visibility=visibility, seconds=time.perf_counter() - t0,
                    notes=notes,
                )  # fmt: skip
    except Exception as e:  # noqa: BLE001 - Gradescope must always get a results.json
        payload = _failure(f"{type(e).__name__}: {e}")
    results = Path(results)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return payload


def _source_files() -> list[Path]:
    """Return the course's files for the bundle: git's tracked files, else a filtered walk."""
    root = paths.REPO_ROOT
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True
        ).stdout
        files = [root / p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "build", "cache", "__pycache__", "wip", "out"}
        files = [
            p for p in root.rglob("*") if p.is_file() and not skip & set(p.relative_to(root).parts)
        ]
    return sorted(p for p in files if p.is_file())


def write_bundle(
    dest: Path, *, lesson: str | None = None, visibility: Visibility = "after_published"
) -> Path:
    """Write the Gradescope autograder zip to ``dest``; return its path.

    Args:
        dest: the zip to write (replaced only once the new one is complete).
        lesson: the lesson this Gradescope assignment grades (default: told from each
            submitted notebook).
        visibility: when students see the scores the hidden tests decide.
    """
    from autograder import grading

    if lesson is not None and lesson not in grading.lesson_names():
        raise ValueError(f"lesson {lesson!r} does not exist")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = 0o755 << 16
                z.writestr(info, text)
            settings = {"lesson": lesson, "visibility": visibility}
            z.writestr("gradescope.json", json.dumps(settings, indent=1) + "\n")
            for f in _source_files():
                rel = f.relative_to(paths.REPO_ROOT).as_posix()
                if rel not in ("setup.sh", "run_autograder", "gradescope.json"):
                    z.write(f, rel)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``run_autograder`` (``python -m autograder.gradescope``)."""
    p = argparse.ArgumentParser(prog="python -m autograder.gradescope")
    p.add_argument("--submission", default="/autograder/submission")
    p.add_argument("--results", default="/autograder/results/results.json")
    p.add_argument("--lesson")
    args = p.parse_args(argv)
    payload = run(Path(args.submission), Path(args.results), lesson=args.lesson)
    print(json.dumps({k: v for k, v in payload.items() if k != "tests"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
