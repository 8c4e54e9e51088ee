"""Build every offline artefact into ``data/build/`` and report what is there.

Steps run in order (the dictionary split needs the English frequency ranks of the vectors).
Each step is idempotent: a second build finds its manifest entries current and returns.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Literal

from xlt_course import paths
from xlt_course.data.manifest import Manifest
from xlt_course.errors import DataError

Step = Literal["vectors", "dictionary", "encoder", "bible", "pos", "llm"]
STEPS: dict[Step, str] = {
    "vectors": "xlt_course.data.vectors",
    "dictionary": "xlt_course.data.dictionary",
    "encoder": "xlt_course.models",
    "bible": "xlt_course.data.bible",
    "pos": "xlt_course.data.pos",
    "llm": "xlt_course.llm_prompting",
}


def build_all(
    only: list[Step] | None = None, *, force: bool = False, folder: Path | None = None
) -> dict[str, float]:
    """Run the build steps (all, or ``only``) and return seconds per step."""
    from tqdm.auto import tqdm

    manifest = Manifest(folder or paths.build_dir())
    timings = {}
    steps = [s for s in STEPS if only is None or s in only]
    for step in tqdm(steps, desc="data build", unit="step"):
        t0 = time.perf_counter()
        importlib.import_module(STEPS[step]).build(manifest, force=force)
        timings[step] = time.perf_counter() - t0
    return timings


def artefact_status(folder: Path | None = None) -> dict[str, tuple[bool, str]]:
    """Verify every recorded artefact (sha256) and the committed topic dataset.

    Returns:
        ``{name: (ok, detail)}`` where detail is the source and version or the error.
    """
    out: dict[str, tuple[bool, str]] = {}
    for label, man_dir in (
        ("build", folder or paths.build_dir()),
        ("topics", paths.data_dir() / "topics"),
    ):
        try:
            manifest = Manifest(man_dir)
        except DataError as e:
            out[label] = (False, str(e))
            continue
        if not manifest.entries:
            out[label] = (False, f"nothing built in {man_dir}")
        for name, art in sorted(manifest.entries.items()):
            try:
                manifest.verify(name)
                out[name] = (True, f"{art.source} {art.version}")
            except DataError as e:
                out[name] = (False, str(e))
    return out
