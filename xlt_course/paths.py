"""Where the course keeps its data, its built artefacts and its caches.

Layout (relative to the repository root, overridable with ``XLT_COURSE_DATA``):

- ``data/topics/``: the committed topic-classification dataset and its manifest.
- ``data/build/``: artefacts that ``xlt-course data build`` makes from installed packages
  (word vectors, dictionaries, the offline encoder), with ``data/build/manifest.json``.
- ``data/cache/``: results of expensive lesson steps (checkpoints, translations).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent


def data_dir() -> Path:
    """Return the course data folder (``$XLT_COURSE_DATA`` or ``<repo>/data``)."""
    env = os.environ.get("XLT_COURSE_DATA")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "data"


def build_dir() -> Path:
    """Return the folder that ``xlt-course data build`` writes to."""
    return data_dir() / "build"


def cache_dir() -> Path:
    """Return the folder where lessons cache expensive results."""
    return data_dir() / "cache"


def share_files(folder: Path) -> None:
    """Make the regular files directly in ``folder`` readable by every user (mode 0644).

    ``save_pretrained`` writes ``model.safetensors`` 0600; course artefacts are ordinary
    readable files, because a root grader runs each student's kernel as another user.

    Args:
        folder: a saved model or tokenizer folder.

    Used by the fine-tuning engine, the encoder build and the LLM build (lessons 04-12).
    """
    for f in Path(folder).iterdir():
        if f.is_file() and not f.is_symlink():
            f.chmod(0o644)
