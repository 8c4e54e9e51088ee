"""Submission intake: turn an LMS download (a zip or a folder) into the grading layout.

Every ``*.ipynb`` in the download is matched against name patterns (Canvas, Moodle,
Blackboard / nbgrader ``zip_collect``, GitHub Classroom clones, plain ``STUDENT_NN-topic``
and ``STUDENT/NN-topic`` folders; more in ``autograder/term.toml``) and copied to
``DEST/STUDENT/NN-topic/NN-topic.ipynb``. A name that matches nothing, or names a lesson
that does not exist, is reported and skipped; it never stops the batch. Every notebook,
zip or file named like a submission that is not taken is reported with the reason (other
files, a readme or data, are not student work); only OS litter (``__MACOSX``,
``.ipynb_checkpoints``, ``.DS_Store``, ...) is dropped unsaid. A download from which
nothing can be taken stops with an error. The
LMS's late marker and the submission time (when the name or an nbgrader ``timestamp.txt``
has one) are kept in ``intake.json`` for the late policy and the export; a later batch
graded into the same output is merged into it (:func:`merge_saved`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
import shutil
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from xlt_course.errors import XltCourseError

MAX_NOTEBOOK_BYTES = 200 * 1024 * 1024
"""Largest notebook taken from a download (bigger members are reported, not unpacked)."""

# Building blocks of the patterns below (expanded by :func:`compile_pattern`):
#   {lesson}  the lesson id, one of the course's lessons (a named group ``lesson``)
#   {any}     any lesson id (no group), {prefix} a GitHub Classroom repository prefix
#   {copy}    a copy suffix the browser or the LMS added: " (1)", "(2)", "-1", "_2"
_COPY = r"(?P<copy>\s?\(\d+\)|[-_]\d+)?"
_NAME = r"[^\W_](?:[^\W_]|[.'-])*"  # a Canvas sortable name: letters of any script
_GH_USER = r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9]))*"

DEFAULT_PATTERNS: dict[str, str] = {
    # Canvas "Download Submissions": lastfirst[_LATE]_USERID_ATTACHMENTID_NN-topic.ipynb
    "canvas": rf"(?:.*/)?(?P<name>{_NAME})(?P<late>_late)?_(?P<uid>\d+)_(?P<attachment>\d+)_{{lesson}}{{copy}}\.ipynb",
    # Moodle "Download all submissions", flat or in folders:
    # Full Name_PARTICIPANT_assignsubmission_file_[/]NN-topic.ipynb
    "moodle": r"(?:.*/)?(?P<name>[^/_][^/]*?)_(?P<uid>\d+)_assignsubmission_file_"
    r"(?:/(?:[^/]+/)*)?{lesson}{copy}\.ipynb",
    # Blackboard, the example of nbgrader's zip_collect docs:
    # ASSIGNMENT_USER_attempt_YYYY-MM-DD-HH-MM-SS_NN-topic.ipynb
    "blackboard": r"(?:.*/)?[^/]*?_(?P<student>[^/_]+)_attempt_"
    r"(?P<time>\d{{4}}-\d\d-\d\d-\d\d-\d\d-\d\d)(?P<late>_late)?_{lesson}{copy}\.ipynb",
    # GitHub Classroom (`gh classroom clone student-repos`): PREFIX-USER/.../NN-topic.ipynb
    "github-classroom": rf"(?:.*/)?(?:{{any}}|{{prefix}})-(?P<student>{_GH_USER})/"
    r"(?:[^/]+/)*{lesson}{copy}\.ipynb",
    # nbgrader zip_collect's default and most exports: STUDENT_NN-topic.ipynb, STUDENT-NN-topic
    # (a late marker may stand before or after the lesson: s1_late_00-setup, s1_00-setup_late)
    "flat": r"(?:.*/)?(?P<student>[^/]+?)(?:[_-](?P<late>late))?[_-]{lesson}"
    r"(?P<late_after>[_-]late)?{copy}\.ipynb",
    # folders: STUDENT/NN-topic/NN-topic.ipynb or STUDENT/NN-topic.ipynb
    "folder": r"(?:.*/)?(?P<student>(?!{any}/)[^/]+)/(?:{any}/)?{lesson}{copy}\.ipynb",
}
"""Name patterns tried in this order (``re.fullmatch``, case-insensitive, on the path inside
the download with ``/`` separators). Groups: ``student`` (or ``name`` + ``uid``: the student
is ``name_uid``), ``lesson``, optional ``late`` (non-empty: the LMS marked it late),
``time`` (submission time), ``copy``, ``attachment`` (the LMS's number of the uploaded file). nbgrader ``named_regexp`` groups (``student_id``,
``timestamp``, ``file_id``) work too."""

LOOSE_PATTERNS = ("canvas", "moodle", "blackboard", "github-classroom", "folder")
"""Patterns whose student part is unambiguous whatever the file is called: a notebook
named otherwise (``doe_12_34_Untitled.ipynb``) is taken when its cells tell the lesson."""

LMS_PATTERNS = ("canvas", "moodle", "blackboard")
"""Patterns of LMS downloads, which name every upload after its student: any file so named
is that student's work, reported when it is not a notebook."""

DEFAULT_PREFIXES = ("xlt-course",)
"""GitHub Classroom repository prefixes recognised besides the lesson ids."""


class IntakeError(XltCourseError, ValueError):
    """The download cannot be read at all (a corrupt zip, a missing folder, a bad pattern)."""


@dataclass(frozen=True)
class Submission:
    """One notebook taken from the download.

    Attributes:
        student: the student id used in ``grades.csv`` (folder-safe; Unicode letters kept).
        lesson: the lesson id (``NN-topic``).
        source: the notebook's path inside the download.
        pattern: the name of the pattern that matched.
        name: the student's name when the LMS puts it in the file name.
        lms_id: the LMS's user (Canvas) or participant (Moodle) id, when in the name.
        late: the LMS marked the submission late.
        submitted_at: the submission time, ISO 8601 in UTC ("" when unknown).
        copy: the copy / resubmission number from a ``(1)`` or ``-1`` suffix (0: none).
        attachment: the LMS's number of the uploaded file (Canvas: the second number), a
            later upload has a higher one ("" when the name has none).
        raw_student: the student part of the name before it was made folder-safe (two
            different ones that clean to the same id are told apart, never merged).
    """

    student: str
    lesson: str
    source: str
    pattern: str
    name: str = ""
    lms_id: str = ""
    late: bool = False
    submitted_at: str = ""
    copy: int = 0
    attachment: str = ""
    raw_student: str = ""


@dataclass
class Intake:
    """What intake found: the submissions taken, and every name skipped, with the reason.

    Attributes:
        submissions: the submissions taken (after :func:`merge_saved`, earlier batches' too).
        skipped: this batch's files not taken, with the reason.
        notes: this batch's files taken with a warning (a student id told apart from
            another's), with the reason.
        earlier: (student, lesson) of the submissions kept from earlier batches.
        earlier_skipped: what earlier batches skipped or noted (kept, never printed again).
    """

    submissions: list[Submission] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    earlier: list[tuple[str, str]] = field(default_factory=list)
    earlier_skipped: list[tuple[str, str]] = field(default_factory=list)

    def report_lines(self) -> list[str]:
        """Return one line per file of this batch skipped or taken with a warning."""
        return [f"skipped {name}: {why}" for name, why in self.skipped] + [
            f"note {name}: {why}" for name, why in self.notes
        ]

    def summary(self) -> str:
        """Return a one-line summary of this batch (taken, late, skipped, noted)."""
        before = set(self.earlier)
        batch = [s for s in self.submissions if _key(s) not in before]
        late = sum(s.late for s in batch)
        text = f"intake: {len(batch)} submissions ({late} marked late), {len(self.skipped)} skipped"
        if self.notes:
            text += f", {len(self.notes)} noted"
        if before:
            text += f"; {len(before)} from earlier batches kept"
        return text

    def save(self, path: Path) -> None:
        """Write ``intake.json`` (sorted, byte-stable)."""
        payload: dict[str, Any] = {
            "submissions": [asdict(s) for s in sorted(self.submissions, key=_key)],
            "skipped": [list(x) for x in sorted(self.skipped)],
        }
        # (only when present: an intake.json of one batch reads as before)
        for name in ("notes", "earlier", "earlier_skipped"):
            if getattr(self, name):
                payload[name] = [list(x) for x in sorted(set(getattr(self, name)))]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(payload, indent=1, ensure_ascii=False, sort_keys=True) + "\n",
            encoding="utf-8",
        )

    @classmethod
    def load(cls, path: Path) -> Intake:
        """Read an ``intake.json`` written by :meth:`save`."""
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            [Submission(**s) for s in d.get("submissions", [])],
            *([tuple(x) for x in d.get(k, [])] for k in ("skipped", "notes", "earlier")),
            [tuple(x) for x in d.get("earlier_skipped", [])],
        )


def read_saved(path: Path) -> Intake | None:
    """Return the ``intake.json`` an earlier batch wrote at ``path`` (None: there is none).

    Raises:
        IntakeError: it cannot be read (it is left as it is).
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return Intake.load(path)
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise IntakeError(
            f"{path} (from an earlier batch) is unreadable ({e}): move it aside to grade "
            "into this folder; nothing was graded"
        ) from e


def merge_saved(path: Path, batch: Intake) -> Intake:
    """Merge ``batch`` into the ``intake.json`` at ``path`` (if any) and write it there.

    An earlier batch's records stay (their late markers and LMS ids feed the export); a
    student's record for a lesson in ``batch`` replaces only that record.

    Returns:
        The merged :class:`Intake` (``earlier``: the records kept from earlier batches).

    Raises:
        IntakeError: the existing ``intake.json`` cannot be read (it is left as it is).
    """
    old = read_saved(path)
    if old is None:
        batch.save(path)
        return batch
    new_keys = {_key(s) for s in batch.submissions}
    kept = [s for s in old.submissions if _key(s) not in new_keys]
    merged = Intake(
        sorted([*kept, *batch.submissions], key=_key),
        list(batch.skipped),
        list(batch.notes),
        sorted({_key(s) for s in kept}),
        sorted({*old.earlier_skipped, *old.skipped, *old.notes}),
    )
    merged.save(path)
    return merged


def _key(s: Submission) -> tuple[str, str]:
    return (s.student, s.lesson)


# --- patterns ----------------------------------------------------------------------------


def compile_pattern(
    template: str,
    lessons: list[str],
    prefixes: tuple[str, ...] = (),
    any_lessons: list[str] | None = None,
) -> re.Pattern:
    """Expand ``{lesson}``/``{any}``/``{prefix}``/``{copy}`` in ``template`` and compile it.

    The first ``{lesson}`` becomes the group ``lesson``, later ones must repeat it.
    ``{any}`` stands for ``any_lessons`` (default: ``lessons``).

    Raises:
        IntakeError: the pattern is not a valid regular expression.
    """

    def alternatives(names: list[str]) -> str:
        return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) or "(?!)"

    alt = alternatives(lessons)
    any_alt = alternatives(lessons if any_lessons is None else any_lessons)
    pre = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True)) or "(?!)"
    first = [True]

    def lesson(_: re.Match) -> str:
        if first[0]:
            first[0] = False
            return f"(?P<lesson>{alt})"
        return "(?P=lesson)"

    text = re.sub(r"\{lesson\}", lesson, template)
    text = text.replace("{any}", f"(?:{any_alt})").replace("{prefix}", f"(?:{pre})")
    text = text.replace("{copy}", _COPY).replace("{{", "{").replace("}}", "}")
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error as e:
        raise IntakeError(f"submission pattern {template!r} is not a valid regex: {e}") from e


@dataclass
class Patterns:
    """Compiled name patterns for one set of lessons (see :data:`DEFAULT_PATTERNS`)."""

    lessons: list[str]
    named: list[tuple[str, re.Pattern]]
    # the same patterns accepting any ``NN-name`` as lesson, to say "no such lesson"
    generic: list[tuple[str, re.Pattern]]
    file_re: re.Pattern
    # the unambiguous patterns accepting any file name: the lesson is told from the cells
    loose: list[tuple[str, re.Pattern]] = field(default_factory=list)


def build_patterns(lessons: list[str], config: dict[str, Any] | None = None) -> Patterns:
    """Return the patterns: ``[intake] patterns`` of the config first, then the defaults.

    Config keys (``[intake]`` table): ``patterns`` (list of regexes, or a table name ->
    regex), ``defaults`` (names of default patterns to keep; default all),
    ``github_prefixes`` (repository prefixes of GitHub Classroom clones).
    """
    cfg = (config or {}).get("intake", {})
    extra = cfg.get("patterns", [])
    if isinstance(extra, dict):
        extra_items = list(extra.items())
    elif isinstance(extra, list):
        extra_items = [(f"config-{i + 1}", p) for i, p in enumerate(extra)]
    else:
        raise IntakeError("[intake] patterns must be a list of regexes or a table name -> regex")
    keep = cfg.get("defaults", list(DEFAULT_PATTERNS))
    unknown = [k for k in keep if k not in DEFAULT_PATTERNS]
    if unknown:
        raise IntakeError(
            f"[intake] defaults: unknown pattern {unknown[0]!r} (known: {', '.join(DEFAULT_PATTERNS)})"
        )
    prefixes = tuple(cfg.get("github_prefixes", DEFAULT_PREFIXES))
    templates = [*extra_items, *((k, DEFAULT_PATTERNS[k]) for k in DEFAULT_PATTERNS if k in keep)]
    named = [(k, compile_pattern(t, lessons, prefixes)) for k, t in templates]
    # the lesson group left open, {any} still the real lessons: a lesson folder must never
    # be read as the student (STUDENT/00-setup/Copy of 00-setup.ipynb), nor a GitHub
    # Classroom clone's lesson prefix as part of the user
    blank = [(k, compile_pattern(t, [], prefixes, any_lessons=lessons)) for k, t in templates]

    def any_lesson(rx: str, keep: tuple[str, ...] | None = None) -> list[tuple[str, re.Pattern]]:
        return [
            (k, re.compile(p.pattern.replace("(?P<lesson>(?!))", f"(?P<lesson>{rx})"), p.flags))
            for k, p in blank
            if keep is None or k in keep
        ]

    generic = any_lesson(r"\d\d-[^/]+?")
    loose = any_lesson(r"[^/]+?", LOOSE_PATTERNS)
    file_re = compile_pattern(r"{lesson}{copy}\.ipynb", lessons)
    return Patterns(list(lessons), named, generic, file_re, loose)


def safe_id(text: str) -> str:
    """Return ``text`` as a folder-safe student id: spaces to ``_``, Unicode letters kept."""
    text = unicodedata.normalize("NFC", text).strip()
    text = re.sub(r"\s+", "_", text)
    text = re.sub(r"[^\w.@+-]", "", text)
    return text.lstrip(".")


def parse_time(text: str) -> str:
    """Return a submission time as ISO 8601 in UTC ("" when it cannot be read).

    Accepts ISO 8601 (a time without offset is UTC), Blackboard's ``YYYY-MM-DD-HH-MM-SS``
    and nbgrader's ``timestamp.txt`` (``YYYY-MM-DD HH:MM:SS.ffffff UTC``).
    """
    t = text.strip().removesuffix("UTC").removesuffix("Z").strip()
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)", t)
    if m:
        t = "{}-{}-{}T{}:{}:{}".format(*m.groups())
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        return ""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat(timespec="seconds")


def _raw_key(raw: str) -> str:
    """Return the student part of a name as compared for conflicts (NFC, outer spaces off)."""
    return unicodedata.normalize("NFC", raw).strip()


def distinct_id(raw: str) -> str:
    """Return the folder-safe id of ``raw`` with a short hash of ``raw`` appended.

    Used when two different names clean to the same id (``a b`` and ``a_b``): the hash tells
    them apart and is the same for the same name in every batch.
    """
    digest = hashlib.sha256(_raw_key(raw).encode("utf-8")).hexdigest()[:6]
    return f"{safe_id(raw) or 'student'}-{digest}"


def _submission(name: str, g: dict[str, str], path: str, lesson: str) -> Submission | str:
    display = g.get("name", "")
    uid = g.get("uid", "")
    raw = g.get("student") or g.get("student_id") or (f"{display}_{uid}" if display else "")
    student = safe_id(raw)
    if not student:
        return f"pattern {name} matched but gave no student id"
    copy_n = int(re.sub(r"\D", "", g.get("copy") or "") or 0)
    late = any(g.get(k) for k in g if k.startswith("late"))
    when = g.get("time") or g.get("timestamp") or ""
    return Submission(
        student=student,
        lesson=lesson,
        source=path,
        pattern=name,
        name=display.strip(),
        lms_id=uid,
        late=late,
        submitted_at=parse_time(when) if when else "",
        copy=copy_n,
        attachment=g.get("attachment", ""),
        raw_student=_raw_key(raw),
    )


def match_name(
    path: str, patterns: Patterns, lesson_of: Callable[[], str | None] | None = None
) -> Submission | str:
    """Return the :class:`Submission` a notebook's path names, or why it names none.

    Args:
        path: the notebook's path inside the download (``/`` separators).
        patterns: from :func:`build_patterns`.
        lesson_of: returns the lesson the notebook's cells belong to (None: unknown); used
            when the name has a clear student part but no lesson id.
    """
    path = unicodedata.normalize("NFC", path)
    for name, rx in patterns.named:
        m = rx.fullmatch(path)
        if m is None:
            continue
        g = {k: v for k, v in m.groupdict().items() if v is not None}
        lesson = g.get("lesson")
        if lesson is None and "file_id" in g:  # an nbgrader named_regexp
            fm = patterns.file_re.fullmatch(g["file_id"])
            if fm is None:
                continue
            lesson, g["copy"] = fm["lesson"], fm["copy"]
        if lesson is None:
            continue
        lesson = next(x for x in patterns.lessons if x.lower() == lesson.lower())
        return _submission(name, g, path, lesson)
    unknown = None
    for _, rx in patterns.generic:
        m = rx.fullmatch(path)
        if m and m.groupdict().get("lesson"):
            unknown = (
                f"lesson {m['lesson']!r} does not exist (lessons: {', '.join(patterns.lessons)})"
            )
            break
    # a clear student part and a notebook whose cells tell the lesson: graded, whatever the
    # file is called (Colab's "Copy of 00-setup.ipynb", "00-setup-final.ipynb")
    for name, rx in patterns.loose:
        m = rx.fullmatch(path)
        if m is None or lesson_of is None:
            continue
        lesson = lesson_of()
        if lesson is None:
            return unknown or "the file name has no lesson id and its cells match no lesson"
        g = {k: v for k, v in m.groupdict().items() if v is not None}
        g.pop("copy", None)
        return _submission(f"{name} (lesson from its cells)", g, path, lesson)
    return (
        unknown or "the name matches no submission pattern (see [intake] in autograder/term.toml)"
    )


def lesson_from_cells(data: bytes, lessons: list[str]) -> str | None:
    """Return the lesson whose graded cell ids a notebook carries (None: none, or a tie)."""
    from autograder import paths

    try:
        nb = json.loads(data.decode("utf-8-sig"))  # a BOM: Notepad, PowerShell 5.1
        ids = {
            ((c.get("metadata") or {}).get("nbgrader") or {}).get("grade_id")
            for c in nb.get("cells", [])
            if isinstance(c, dict)
        } - {None}
    except (UnicodeDecodeError, ValueError, AttributeError):
        return None
    own = _lesson_ids(tuple(lessons), paths.lessons_dir())
    common = set.intersection(*own.values()) if own else set()
    scores = sorted(((len((ids - common) & v), k) for k, v in own.items()), reverse=True)
    if not scores or scores[0][0] == 0 or (len(scores) > 1 and scores[1][0] == scores[0][0]):
        return None
    return scores[0][1]


@functools.lru_cache(maxsize=4)
def _lesson_ids(lessons: tuple[str, ...], release: Path) -> dict[str, set[str]]:
    out = {}
    for lesson in lessons:
        nb_path = release / lesson / f"{lesson}.ipynb"
        if nb_path.is_file():
            cells = json.loads(nb_path.read_text(encoding="utf-8")).get("cells", [])
            out[lesson] = {
                c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in cells
            } - {None}
    return out


# --- reading downloads -------------------------------------------------------------------


def _zip_name(info: zipfile.ZipInfo) -> str:
    """Return a member's name, repairing UTF-8 names stored without the UTF-8 flag."""
    name = info.filename
    if not info.flag_bits & 0x800:
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            name = name.encode("cp437").decode("utf-8")
    return name.replace("\\", "/")  # some Windows tools store backslashes


LITTER_DIRS = frozenset({"__MACOSX", ".ipynb_checkpoints", ".git", ".svn", ".Trash", ".Trashes"})
"""Folders of OS, editor or version-control litter, dropped from a download unreported."""

LITTER_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", ".gitignore", ".gitkeep"})
"""Files of OS or editor litter, dropped from a download unreported (``._*`` too)."""


def is_litter(path: str) -> bool:
    """Return whether ``path`` is OS / editor litter, dropped unreported."""
    *dirs, name = PurePosixPath(path).parts or ("",)
    return (
        any(d in LITTER_DIRS for d in dirs)
        or name in LITTER_FILES
        or name.startswith("._")  # macOS AppleDouble
    )


def unsafe_reason(path: str) -> str:
    """Return why a member's path is not taken although it may be a submission ("": taken)."""
    parts = PurePosixPath(path).parts
    if path.startswith("/") or (parts and re.fullmatch(r"[A-Za-z]:", parts[0])):
        return "an absolute path in the zip: not taken (rename it inside the download)"
    if ".." in parts:
        return "its path leaves the download (..): not taken (a crafted zip?)"
    hidden = next((p for p in parts if p.startswith(".")), None)
    if hidden is not None:
        return f"in or named as a hidden file ({hidden!r}): not taken; rename it to grade it"
    return ""


def _members(download: Path) -> list[tuple[str, Any]]:
    """Return ``(path, opener)`` for every file of a zip or folder but litter, sorted by path."""
    if download.is_dir():
        return sorted(
            (p.relative_to(download).as_posix(), p)
            for p in download.rglob("*")
            if p.is_file() and not is_litter(p.relative_to(download).as_posix())
        )
    if not download.exists():
        raise IntakeError(f"{download} does not exist")
    try:
        z = zipfile.ZipFile(download)
        infos = z.infolist()
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise IntakeError(f"{download} is not a readable zip file ({e}); nothing was graded") from e
    return sorted(
        (_zip_name(i), (z, i)) for i in infos if not i.is_dir() and not is_litter(_zip_name(i))
    )


def _read(opener: Any) -> bytes:
    if isinstance(opener, Path):
        if opener.stat().st_size > MAX_NOTEBOOK_BYTES:
            raise ValueError(f"larger than {MAX_NOTEBOOK_BYTES >> 20} MB")
        return opener.read_bytes()
    z, info = opener
    if info.file_size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"larger than {MAX_NOTEBOOK_BYTES >> 20} MB")
    return z.read(info)


def _inner_zip(opener: Any) -> str:
    """Return why a zip inside the download is not taken, naming what it holds."""
    try:
        data = _read(opener)
        import io

        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            names = [n for n in inner.namelist() if not n.endswith("/") and not is_litter(n)]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        return f"a zip inside the download, unreadable ({e}): not opened"
    if not names:
        return "an empty zip inside the download: not opened"
    shown = ", ".join(names[:5]) + (f", ... ({len(names)} files)" if len(names) > 5 else "")
    return f"a zip inside the download, not opened (it holds {shown}): unzip it and grade that"


def _rank(s: Submission) -> tuple[str, int, int]:
    """Return what orders two copies of one submission: time, copy number, LMS file number."""
    return (s.submitted_at, s.copy, int(s.attachment) if s.attachment.isdigit() else -1)


def _pick(old: Submission, new: Submission) -> tuple[Submission, Submission, str]:
    """Return ``(kept, dropped, why)`` for two notebooks of one student and lesson."""
    # a time beats no time (nbgrader's timestamp.txt), then the copy number, then the LMS's
    # number of the upload (as a number: 100 is after 99)
    for i, what in enumerate(("submission time", "copy number", "LMS upload number")):
        a, b = _rank(old)[i], _rank(new)[i]
        if a != b:
            keep, drop = (new, old) if b > a else (old, new)
            return keep, drop, f"an older copy of {keep.student}'s {keep.lesson} by {what}"
    # nothing tells them apart: take one by name (the same whatever the order of the
    # download) and say that the choice was not decided by the submissions
    keep, drop = (new, old) if new.source > old.source else (old, new)
    why = (
        f"AMBIGUOUS: a second notebook for {keep.student}'s {keep.lesson}, and neither a "
        "submission time, a copy number nor an LMS upload number tells which is later; "
        "check which one the student meant"
    )
    return keep, drop, why


def collect(
    download: Path,
    dest: Path,
    lessons: list[str],
    config: dict[str, Any] | None = None,
    earlier: Intake | None = None,
) -> Intake:
    """Copy every matchable notebook of ``download`` to ``dest/STUDENT/LESSON/LESSON.ipynb``.

    ``download`` is a zip or a folder. ``dest`` is rebuilt from scratch (it is derived
    data); nothing in ``download`` is modified. Two notebooks for the same student and
    lesson: the later submission time wins (a time beats none), then the higher copy
    number, then the higher LMS upload number; when none of these separates them, the later
    name is taken and both are reported as ambiguous. Two different names that make the
    same folder-safe id (``a b`` and ``a_b``) are two students: the one whose name is
    already that id (or that had it in ``earlier``) keeps it, the other gets
    :func:`distinct_id`, and both are noted.

    Args:
        download: the zip or folder.
        dest: where the grading layout is written.
        lessons: the lesson ids.
        config: the term's config (``[intake]``, see :func:`build_patterns`).
        earlier: the intake of earlier batches graded into the same output (ids it gave
            keep their owner).

    Returns:
        The :class:`Intake` (also written to ``dest/intake.json``).

    Raises:
        IntakeError: the download is missing, not a readable zip, or holds nothing that
            can be taken (nothing is written).
    """
    download = Path(download)
    patterns = build_patterns(lessons, config)
    members = _members(download)
    by_path = dict(members)
    intake = Intake()
    found_all: list[tuple[Submission, bytes]] = []
    for path, opener in members:
        stem, dot, ext = path.rpartition(".")
        ext = ext.lower() if dot and "/" not in ext else ""
        named = path  # the name the patterns read
        if ext in ("txt", "json") and stem.lower().endswith(".ipynb"):
            # a browser or an LMS saved the notebook as NN-topic.ipynb.txt / .ipynb.json
            named, ext = stem, "ipynb"
            intake.notes.append((path, f"saved as .{path.rpartition('.')[2]}: read as a notebook"))
            stem = stem[: -len(".ipynb")]
        # a notebook, a zip, or a file named like a submission but of another kind (a PDF,
        # a .py), with or without the lesson in its name (an LMS names every upload
        # after its student); other files (a readme, data) are not student work
        as_notebook = stem + ".ipynb"
        candidate = ext in ("ipynb", "zip") or (
            ext not in ("", "txt")
            and (
                isinstance(match_name(as_notebook, patterns), Submission)
                or any(rx.fullmatch(as_notebook) for k, rx in patterns.loose if k in LMS_PATTERNS)
            )
        )
        if not candidate:
            continue
        unsafe = unsafe_reason(path)
        if unsafe:
            intake.skipped.append((path, unsafe))
        elif ext == "zip":
            intake.skipped.append((path, _inner_zip(opener)))
        elif ext != "ipynb":
            intake.skipped.append((path, f"not a notebook (.{ext}): not graded"))
        if unsafe or ext != "ipynb":
            continue
        try:
            data = _read(opener)
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            intake.skipped.append((path, f"unreadable in the download ({e})"))
            continue
        found = match_name(named, patterns, lambda d=data: lesson_from_cells(d, lessons))
        if isinstance(found, str):
            intake.skipped.append((path, found))
            continue
        if named != path:
            found = Submission(**{**asdict(found), "source": path})
        if not found.submitted_at:
            stamp = PurePosixPath(path).parent / "timestamp.txt"
            opener_ts = by_path.get(str(stamp) if str(stamp) != "." else "timestamp.txt")
            if opener_ts is not None:
                try:
                    when = parse_time(_read(opener_ts).decode("utf-8", "replace"))
                except (OSError, ValueError, zipfile.BadZipFile):
                    when = ""
                if when:
                    found = Submission(**{**asdict(found), "submitted_at": when})
        found_all.append((found, data))
    found_all = _tell_apart(found_all, earlier, intake)
    chosen: dict[tuple[str, str], tuple[Submission, bytes]] = {}
    for found, data in found_all:
        key = _key(found)
        if key in chosen:
            keep, drop, why = _pick(chosen[key][0], found)
            intake.skipped.append((drop.source, f"{why} (graded: {keep.source})"))
            if keep is found:
                chosen[key] = (found, data)
            continue
        chosen[key] = (found, data)
    # an older download graded again must not undo a resubmission graded since
    graded_before = {_key(s): s for s in (earlier.submissions if earlier else [])}
    for key, (found, _) in list(chosen.items()):
        before = graded_before.get(key)
        if before is None or before.source == found.source:
            continue
        keep, _, why = _pick(before, found)
        if keep is before and not why.startswith("AMBIGUOUS"):
            intake.skipped.append(
                (
                    found.source,
                    f"older than {before.source}, graded in an earlier batch into this folder "
                    "(by " + why.rsplit(" by ", 1)[-1] + "): not graded again",
                )
            )
            del chosen[key]
    if not chosen:
        # an empty zip, a zip of zips, a folder of something else: grading nothing and
        # saying "graded 0" would hide it
        what = "; ".join(f"{n}: {w}" for n, w in intake.skipped[:3]) or (
            f"it holds no notebook among its {len(members)} files" if members else "it is empty"
        )
        more = f" (and {len(intake.skipped) - 3} more)" if len(intake.skipped) > 3 else ""
        raise IntakeError(
            f"{download}: no submission could be taken ({what}{more}); nothing was graded"
        )
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for (student, lesson), (sub, data) in sorted(chosen.items()):
        target = dest / student / lesson / f"{lesson}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        intake.submissions.append(sub)
    intake.skipped.sort()
    intake.notes.sort()
    intake.save(dest / "intake.json")
    return intake


def _tell_apart(
    found: list[tuple[Submission, bytes]], earlier: Intake | None, intake: Intake
) -> list[tuple[Submission, bytes]]:
    """Give different names that clean to one id distinct ids, noting each one changed.

    The id stays with the name that had it in an earlier batch, else with the name that is
    already that id; every other name gets :func:`distinct_id`.
    """
    owner = {
        s.student: s.raw_student for s in (earlier.submissions if earlier else []) if s.raw_student
    }
    names: dict[str, set[str]] = {}
    for s, _ in found:
        names.setdefault(s.student, set()).add(s.raw_student)
    out = []
    for s, data in found:
        raws = names[s.student] | ({owner[s.student]} if s.student in owner else set())
        if len(raws) > 1:
            holder = owner.get(s.student) or (s.student if s.student in raws else None)
            if s.raw_student != holder:
                new = distinct_id(s.raw_student)
                others = ", ".join(repr(r) for r in sorted(raws - {s.raw_student}))
                intake.notes.append(
                    (
                        s.source,
                        f"student {s.raw_student!r} graded as {new}: the id {s.student} "
                        f"belongs to {others} (different names, kept apart)",
                    )
                )
                s = Submission(**{**asdict(s), "student": new})
        out.append((s, data))
    return out


def folder_records(found: list[tuple[str, str, Path]]) -> Intake:
    """Return the :class:`Intake` of a folder already in the grading layout.

    ``found`` is :func:`autograder.grading.find_submissions`'s list; a ``timestamp.txt``
    beside a notebook (nbgrader's ``submitted/`` layout) gives its submission time.
    """
    taken = Intake()
    for student, lesson, nb in found:
        stamp = nb.parent / "timestamp.txt"
        when = ""
        if stamp.is_file():
            with contextlib.suppress(OSError):
                when = parse_time(stamp.read_text(encoding="utf-8", errors="replace"))
        taken.submissions.append(
            Submission(
                student, lesson, f"{student}/{lesson}/{nb.name}", "folder", submitted_at=when
            )
        )
    return taken
