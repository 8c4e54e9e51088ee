"""Submission intake: turn an LMS download (a zip or a folder) into the grading layout.

Every ``*.ipynb`` in the download is matched against name patterns (Canvas, Moodle,
Blackboard / nbgrader ``zip_collect``, GitHub Classroom clones, plain ``STUDENT_NN-topic``
and ``STUDENT/NN-topic`` folders; more in ``autograder/term.toml``) and copied to
``DEST/STUDENT/NN-topic/NN-topic.ipynb``. A name that matches nothing, or names a lesson
that does not exist, is reported and skipped; it never stops the batch. The LMS's late
marker and the submission time (when the name or an nbgrader ``timestamp.txt`` has one)
are kept in ``intake.json`` for the late policy and the export.
"""

from __future__ import annotations

import contextlib
import functools
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
    "canvas": rf"(?:.*/)?(?P<name>{_NAME})(?P<late>_late)?_(?P<uid>\d+)_\d+_{{lesson}}{{copy}}\.ipynb",
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
``time`` (submission time), ``copy``. nbgrader ``named_regexp`` groups (``student_id``,
``timestamp``, ``file_id``) work too."""

LOOSE_PATTERNS = ("canvas", "moodle", "blackboard", "github-classroom", "folder")
"""Patterns whose student part is unambiguous whatever the file is called: a notebook
named otherwise (``doe_12_34_Untitled.ipynb``) is taken when its cells tell the lesson."""

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


@dataclass
class Intake:
    """What intake found: the submissions taken, and every name skipped, with the reason."""

    submissions: list[Submission] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def report_lines(self) -> list[str]:
        """Return one line per skipped file (empty when every notebook was taken)."""
        return [f"skipped {name}: {why}" for name, why in self.skipped]

    def summary(self) -> str:
        """Return a one-line summary (taken, late, skipped)."""
        late = sum(s.late for s in self.submissions)
        return (
            f"intake: {len(self.submissions)} submissions "
            f"({late} marked late), {len(self.skipped)} skipped"
        )

    def save(self, path: Path) -> None:
        """Write ``intake.json`` (sorted, byte-stable)."""
        payload = {
            "submissions": [asdict(s) for s in sorted(self.submissions, key=_key)],
            "skipped": [list(x) for x in sorted(self.skipped)],
        }
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
            [tuple(x) for x in d.get("skipped", [])],
        )


def _key(s: Submission) -> tuple[str, str]:
    return (s.student, s.lesson)


# --- patterns ----------------------------------------------------------------------------


def compile_pattern(
    template: str, lessons: list[str], prefixes: tuple[str, ...] = ()
) -> re.Pattern:
    """Expand ``{lesson}``/``{any}``/``{prefix}``/``{copy}`` in ``template`` and compile it.

    The first ``{lesson}`` becomes the group ``lesson``, later ones must repeat it.

    Raises:
        IntakeError: the pattern is not a valid regular expression.
    """
    alt = "|".join(re.escape(n) for n in sorted(lessons, key=len, reverse=True)) or "(?!)"
    pre = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True)) or "(?!)"
    first = [True]

    def lesson(_: re.Match) -> str:
        if first[0]:
            first[0] = False
            return f"(?P<lesson>{alt})"
        return "(?P=lesson)"

    text = re.sub(r"\{lesson\}", lesson, template)
    text = text.replace("{any}", f"(?:{alt})").replace("{prefix}", f"(?:{pre})")
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
    blank = [(k, compile_pattern(t, [], prefixes)) for k, t in templates]

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
    for _, rx in patterns.generic:
        m = rx.fullmatch(path)
        if m and m.groupdict().get("lesson"):
            return f"lesson {m['lesson']!r} does not exist (lessons: {', '.join(patterns.lessons)})"
    for name, rx in patterns.loose:
        m = rx.fullmatch(path)
        if m is None or lesson_of is None:
            continue
        lesson = lesson_of()
        if lesson is None:
            return "the file name has no lesson id and its cells match no lesson"
        g = {k: v for k, v in m.groupdict().items() if v is not None}
        g.pop("copy", None)
        return _submission(f"{name} (lesson from its cells)", g, path, lesson)
    return "the name matches no submission pattern (see [intake] in autograder/term.toml)"


def lesson_from_cells(data: bytes, lessons: list[str]) -> str | None:
    """Return the lesson whose graded cell ids a notebook carries (None: none, or a tie)."""
    from autograder import paths

    try:
        nb = json.loads(data.decode("utf-8"))
        ids = {
            c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
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


def _ignored(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _members(download: Path) -> list[tuple[str, Any]]:
    """Return ``(path, opener)`` for every file of a zip or folder, sorted by path."""
    if download.is_dir():
        return sorted(
            (p.relative_to(download).as_posix(), p)
            for p in download.rglob("*")
            if p.is_file() and not _ignored(p.relative_to(download).as_posix())
        )
    if not download.exists():
        raise IntakeError(f"{download} does not exist")
    try:
        z = zipfile.ZipFile(download)
        infos = z.infolist()
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise IntakeError(f"{download} is not a readable zip file ({e}); nothing was graded") from e
    return sorted(
        (_zip_name(i), (z, i)) for i in infos if not i.is_dir() and not _ignored(_zip_name(i))
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


def collect(
    download: Path,
    dest: Path,
    lessons: list[str],
    config: dict[str, Any] | None = None,
) -> Intake:
    """Copy every matchable notebook of ``download`` to ``dest/STUDENT/LESSON/LESSON.ipynb``.

    ``download`` is a zip or a folder. ``dest`` is rebuilt from scratch (it is derived
    data); nothing in ``download`` is modified. Two notebooks for the same student and
    lesson: the later submission time wins, then the higher copy number, then the later
    name; the other is reported as skipped.

    Returns:
        The :class:`Intake` (also written to ``dest/intake.json``).

    Raises:
        IntakeError: the download is missing or not a readable zip (nothing is written).
    """
    download = Path(download)
    patterns = build_patterns(lessons, config)
    members = _members(download)
    by_path = dict(members)
    intake = Intake()
    chosen: dict[tuple[str, str], tuple[Submission, bytes]] = {}
    for path, opener in members:
        if not path.lower().endswith(".ipynb"):
            # a file named like a submission but of another kind (a PDF, a .py, a zip)
            stem, dot, ext = path.rpartition(".")
            named = dot and "/" not in ext and ext.lower() != "txt"
            if named and isinstance(match_name(stem + ".ipynb", patterns), Submission):
                intake.skipped.append((path, f"not a notebook (.{ext}): not graded"))
            continue
        try:
            data = _read(opener)
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            intake.skipped.append((path, f"unreadable in the download ({e})"))
            continue
        found = match_name(path, patterns, lambda d=data: lesson_from_cells(d, lessons))
        if isinstance(found, str):
            intake.skipped.append((path, found))
            continue
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
        key = _key(found)
        if key in chosen:
            old = chosen[key][0]
            rank_new = (found.submitted_at, found.copy, found.source)
            rank_old = (old.submitted_at, old.copy, old.source)
            keep, drop = (found, old) if rank_new > rank_old else (old, found)
            intake.skipped.append(
                (drop.source, f"an older copy of {key[0]}'s {key[1]} (graded: {keep.source})")
            )
            if keep is found:
                chosen[key] = (found, data)
            continue
        chosen[key] = (found, data)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for (student, lesson), (sub, data) in sorted(chosen.items()):
        target = dest / student / lesson / f"{lesson}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        intake.submissions.append(sub)
    intake.skipped.sort()
    intake.save(dest / "intake.json")
    return intake


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
