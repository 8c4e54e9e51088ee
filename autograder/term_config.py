"""The term's settings: submission name patterns, due dates and late policy, LMS columns.

They live in one optional TOML file, ``autograder/term.toml`` (or ``--config FILE``); every
setting has a default, so a course without the file works. See ``autograder/term.toml``
for the commented example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xlt_course.errors import XltCourseError

DEFAULT_FILE = Path(__file__).resolve().parent / "term.toml"


class TermConfigError(XltCourseError, ValueError):
    """The term's configuration file is unreadable or holds a wrong value."""


def load_term_config(path: Path | None = None) -> dict[str, Any]:
    """Return the term's settings from ``path`` (default ``autograder/term.toml``; {} if absent).

    Raises:
        TermConfigError: the file named explicitly is missing, or is not valid TOML.
    """
    explicit = path is not None
    path = Path(path) if path is not None else DEFAULT_FILE
    if not path.is_file():
        if explicit:
            raise TermConfigError(f"term config {path} does not exist")
        return {}
    try:
        import tomllib
    except ModuleNotFoundError as e:  # Python 3.10
        raise TermConfigError(f"reading {path} needs Python 3.11 (tomllib)") from e
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise TermConfigError(f"{path} is not valid TOML: {e}") from e
