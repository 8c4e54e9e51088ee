"""Export grades to an LMS gradebook (Canvas, Moodle), a wide table, or a Gradescope bundle.

Reads the grading output (``OUT/grades.csv``, and ``OUT/intake.json`` when the submissions
came from an LMS download), applies the late policy (raw scores are kept in the wide
table) and maps students to LMS ids with an optional roster CSV:

``student`` (the id in grades.csv, required), ``name``, ``lms_id`` (Canvas user id),
``sis_id`` (Canvas SIS User ID, Moodle ID number), ``login`` (SIS Login ID),
``section``, ``email``.

Students graded but absent from the roster, and students the format cannot identify, are
reported (one line each) and left out of LMS files; nothing is written when an input is
malformed. So is a score the late policy cannot compute (``per_day``, a submission the LMS
marked late without a submission time or due date): its cell is left blank, never the raw
score as if on time. Written answers still pending are reported per submission; scores
given by hand in formgrader count when ``gradebook`` (``[export] gradebook``) names the
course the results were merged into (``xlt-course export OUT --format nbgrader``).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from autograder import late as late_mod
from xlt_course.errors import XltCourseError

ExportFormat = Literal["canvas", "moodle", "wide", "gradescope"]
FORMATS: tuple[str, ...] = ("canvas", "moodle", "wide", "gradescope")

CANVAS_HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
"""The identity columns of a Canvas gradebook CSV (assignment columns follow)."""
MOODLE_HEADER = ["Full name", "Email address", "ID number"]
"""Identity columns of the Moodle grade import (map "Email address" or "ID number")."""
ROSTER_COLUMNS = ("student", "name", "lms_id", "sis_id", "login", "section", "email")


class ExportError(XltCourseError, ValueError):
    """An export input (grades, roster, format, late settings) is malformed."""


@dataclass
class Grade:
    """One (student, lesson) row of ``grades.csv`` with its late-policy outcome."""

    student: str
    lesson: str
    raw: float
    max_score: float
    points: dict[str, tuple[float, float]]
    flags: str
    score: float | None = 0.0
    """The reported score; None when the late policy cannot compute it (left blank)."""
    late: late_mod.LateResult | None = None
    pending: float = 0.0
    """Points of written answers awaiting the instructor (counted 0 in ``raw``)."""


@dataclass
class ExportReport:
    """What an export wrote and what it could not place."""

    path: Path
    rows: int
    problems: list[str] = field(default_factory=list)


def read_grades(out: Path) -> list[Grade]:
    """Read ``OUT/grades.csv`` (long format, one row per student and lesson).

    The score exported is ``total`` of ``max_total``: the autograded points plus the written
    answers already graded; answers still pending count nothing until the instructor grades
    them (``manual_pending`` says how many points wait).

    Raises:
        ExportError: the file is missing or lacks a required column.
    """
    path = Path(out) / "grades.csv"
    if not path.is_file():
        raise ExportError(f"{path} does not exist: run `xlt-course grade ... --out {out}` first")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"student", "lesson", "total", "max_total"} - set(reader.fieldnames or [])
        if missing:
            raise ExportError(f"{path} lacks the column(s) {', '.join(sorted(missing))}")
        grades = []
        for row in reader:
            points = {}
            for part in filter(None, (row.get("points") or "").split(";")):
                name, _, frac = part.partition("=")
                s, _, m = frac.partition("/")
                try:
                    points[name] = (float(s), float(m))
                except ValueError:
                    continue
            try:
                raw, mx = float(row["total"]), float(row["max_total"])
            except ValueError as e:
                raise ExportError(f"{path}: {row['student']}/{row['lesson']}: {e}") from e
            try:
                pending = float(row.get("manual_pending") or 0)
            except ValueError:
                pending = 0.0
            grades.append(
                Grade(
                    row["student"],
                    row["lesson"],
                    raw,
                    mx,
                    points,
                    row.get("flags") or "",
                    pending=pending,
                )
            )
    return grades


def read_roster(path: Path) -> dict[str, dict[str, str]]:
    """Read a roster CSV: ``student`` -> its row (see the module docstring for columns).

    Raises:
        ExportError: the file is missing, has no ``student`` column, or lists a student or
            an LMS id twice.
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"roster {path} does not exist")
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if "student" not in (reader.fieldnames or []):
            raise ExportError(
                f"roster {path} has no 'student' column (columns: {', '.join(ROSTER_COLUMNS)})"
            )
        roster: dict[str, dict[str, str]] = {}
        seen: dict[tuple[str, str], int] = {}
        for line, row in enumerate(reader, start=2):
            row = {k: (v or "").strip() for k, v in row.items() if k}
            sid = row["student"]
            if not sid:
                raise ExportError(f"roster {path} line {line}: empty student id")
            for col in ("student", "lms_id", "sis_id", "email"):
                value = row.get(col, "")
                if not value:
                    continue
                if (col, value) in seen:
                    raise ExportError(
                        f"roster {path}: {col} {value!r} appears twice "
                        f"(lines {seen[(col, value)]} and {line}); keep one"
                    )
                seen[(col, value)] = line
            roster[sid] = row
    return roster


def _intake_records(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    path = Path(out) / "intake.json"
    if not path.is_file():
        return {}
    from autograder.intake import Intake

    try:
        taken = Intake.load(path)
    except (OSError, ValueError, TypeError) as e:
        raise ExportError(f"{path} is unreadable ({e})") from e
    return {(s.student, s.lesson): s.__dict__ for s in taken.submissions}


def apply_gradebook(out: Path, root: Path, grades: list[Grade]) -> list[str]:
    """Replace each grade by the course gradebook's, hand-given scores included, in place.

    A grade is taken from the gradebook only when the notebook merged there is the one
    graded in ``out`` (same bytes as ``out/.work/jobs``'s copy); otherwise it keeps
    ``grades.csv``'s score and a problem line says why.

    Args:
        out: the grading output folder.
        root: the course root ``xlt-course export OUT --format nbgrader`` merged into
            (gradebook ``autograder/gradebook.db``, notebooks under ``autograder/work/``).
        grades: the grades read from ``out/grades.csv``.

    Returns:
        One problem line per grade the gradebook could not give.

    Raises:
        ExportError: the gradebook does not exist.
    """
    from nbgrader.api import MissingEntry

    from autograder.formgrader import open_gradebook, same_file

    db = Path(root) / "autograder" / "gradebook.db"
    if not db.is_file():
        raise ExportError(
            f"no course gradebook {db}: merge first (xlt-course export {out} --format nbgrader "
            f"--dest {root})"
        )
    problems = []
    with open_gradebook(db) as gb:
        for g in grades:
            where = f"{g.student}/{g.lesson}"
            name = f"{g.lesson}.ipynb"
            job_copy = Path(out) / ".work" / "jobs" / g.lesson / g.student / "submitted"
            job_copy = job_copy / where / name
            same = same_file(
                job_copy, Path(root) / "autograder" / "work" / "submitted" / where / name
            )
            try:
                sub = gb.find_submission_notebook(g.lesson, g.lesson, g.student)
            except MissingEntry:
                same = None
            if not same and not job_copy.is_file():
                problems.append(
                    f"{where}: exported from grades.csv: no notebook of it was graded (see its "
                    "flags in grades.csv), so the gradebook has no hand-given scores for it"
                )
                continue
            if not same:
                why = "another submission" if same is False else "no copy of it to compare"
                problems.append(
                    f"{where}: hand-given scores: the gradebook {db} has {why}; exported from "
                    f"grades.csv (merge {out} into it again: --format nbgrader --dest {root})"
                )
                continue
            written = {c.name for c in sub.notebook.solution_cells}
            raw = pending = top = 0.0
            for c in sub.grades:
                mx = float(c.max_score or 0.0)
                top += mx
                if c.name in written and c.needs_manual_grade and c.manual_score is None:
                    pending += mx
                    g.points.pop(c.name, None)
                    continue
                raw += float(c.score or 0.0)
                g.points[c.name] = (float(c.score or 0.0), mx)
            g.raw, g.max_score, g.pending = raw, top, pending
    return problems


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


def export(
    out: Path,
    fmt: str,
    *,
    roster: Path | None = None,
    dest: Path | None = None,
    lessons: list[str] | None = None,
    config: dict[str, Any] | None = None,
    late_override: dict[str, Any] | None = None,
    gradebook: Path | None = None,
) -> ExportReport:
    """Write the grades of the grading output ``out`` in format ``fmt``.

    Args:
        out: the folder ``xlt-course grade`` wrote (``grades.csv``, ``intake.json``).
        fmt: ``canvas``, ``moodle`` or ``wide`` (``gradescope``: see :func:`gradescope_bundle`).
        roster: CSV mapping students to LMS ids (optional for ``wide``, and for ``canvas``
            when the submissions came from a Canvas zip, whose names carry the user id).
        dest: the file to write (default ``out/export/FORMAT.csv``).
        lessons: only these lessons (default: every lesson graded).
        config: the term config (``[late]``, ``[export.canvas] assignments``).
        late_override: late settings from the command line (policy, due, per_day, floor).
        gradebook: the course root the results were merged into for formgrader, whose hand-
            given scores then count (default ``[export] gradebook`` of the config; none:
            ``grades.csv`` alone, written answers still pending reported).

    Returns:
        An :class:`ExportReport`: the file, its student rows, and the problems found.

    Raises:
        ExportError, LateError: a malformed input; nothing is written.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r} (formats: {', '.join(FORMATS)})")
    if fmt == "gradescope":
        raise ExportError("the gradescope format is a bundle: use gradescope_bundle()")
    config = config or {}
    policy = late_mod.policy_from_config(config, **(late_override or {}))
    grades = read_grades(out)
    known_lessons = sorted({g.lesson for g in grades})
    if lessons:
        unknown = [x for x in lessons if x not in known_lessons]
        if unknown:
            raise ExportError(
                f"no grades for lesson {unknown[0]!r} in {out} (graded: {', '.join(known_lessons)})"
            )
        grades = [g for g in grades if g.lesson in lessons]
    cols = lessons or known_lessons
    records = _intake_records(out)
    problems: list[str] = []
    gradebook = gradebook or (config.get("export", {}) or {}).get("gradebook")
    if gradebook:
        problems += apply_gradebook(out, Path(gradebook), grades)
    if policy.policy == "per_day":
        for x in cols:
            if policy.due_of(x) is None:
                problems.append(
                    f"late penalties of {x}: per_day policy but {x} has no due date "
                    "(--due, or [late.due] in term.toml): no submission of it is penalised"
                )
    for g in grades:
        rec = records.get((g.student, g.lesson), {})
        g.late = late_mod.apply_late(
            policy, g.lesson, g.raw, rec.get("submitted_at", ""), bool(rec.get("late"))
        )
        g.score = None if g.late.unknown else g.late.score
        if g.late.unknown:
            # Canvas names carry no time: the raw score would pass as on time
            why = (
                f"{g.lesson} has no due date"
                if policy.due_of(g.lesson) is None
                else "its file name carries no submission time"
            )
            problems.append(
                f"{g.student}/{g.lesson}: score left blank: the LMS marked it late but {why}, "
                f"so the per_day penalty cannot be computed (raw {g.raw:g} of "
                f"{g.max_score:g}); enter it by hand, or export with --late-policy flag to "
                "send raw scores"
            )
        if g.pending:
            problems.append(
                f"{g.student}/{g.lesson}: exported with {g.pending:g} of {g.max_score:g} points "
                "of written answers not graded yet, counted 0: grade them in formgrader, then "
                "export again with the course gradebook ([export] gradebook, README)"
            )
    people = read_roster(roster) if roster else {}
    by_student: dict[str, dict[str, Grade]] = {}
    for g in grades:
        by_student.setdefault(g.student, {})[g.lesson] = g
    if roster:
        for s in sorted(set(by_student) - set(people)):
            problems.append(f"{s}: graded but not in the roster {roster}")
    # identity from the roster, else from the LMS names intake saw
    ident: dict[str, dict[str, str]] = {}
    for s in sorted(set(by_student) | set(people)):
        row = dict(people.get(s, {}))
        for (student, _), rec in sorted(records.items()):
            if student == s:
                row.setdefault("name", rec.get("name", ""))
                # "canvas" or "canvas (lesson from its cells)": the same LMS name
                kind = str(rec.get("pattern", "")).split(" ")[0]
                if kind == "canvas":
                    row.setdefault("lms_id", rec.get("lms_id", ""))
                if kind == "moodle":
                    row.setdefault("moodle_participant", rec.get("lms_id", ""))
        ident[s] = {k: v for k, v in row.items() if v}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    rows = 0
    if fmt == "canvas":
        ids = (config.get("export", {}).get("canvas", {}) or {}).get("assignments", {})
        w.writerow(CANVAS_HEADER + [f"{x} ({ids[x]})" if x in ids else x for x in cols])
        for s, who in ident.items():
            if s not in people and roster:
                continue
            if not (who.get("lms_id") or who.get("sis_id") or who.get("login")):
                problems.append(f"{s}: no Canvas ID, SIS User ID or SIS Login ID (add to roster)")
                continue
            mine = by_student.get(s, {})
            w.writerow(
                [
                    who.get("name", s),
                    who.get("lms_id", ""),
                    who.get("sis_id", ""),
                    who.get("login", ""),
                    who.get("section", ""),
                    *(_fmt(mine[x].score) if x in mine else "" for x in cols),
                ]
            )
            rows += 1
    elif fmt == "moodle":
        w.writerow(MOODLE_HEADER + cols)
        for s, who in ident.items():
            if s not in people and roster:
                continue
            if not (who.get("email") or who.get("sis_id")):
                problems.append(f"{s}: no email or ID number for Moodle (add to roster)")
                continue
            mine = by_student.get(s, {})
            w.writerow(
                [
                    who.get("name", s),
                    who.get("email", ""),
                    who.get("sis_id", ""),
                    *(_fmt(mine[x].score) if x in mine else "" for x in cols),
                ]
            )
            rows += 1
    else:  # wide
        exercises = {
            x: sorted({k for g in grades if g.lesson == x for k in g.points}) for x in cols
        }
        head = ["student", "name", "lms_id"]
        for x in cols:
            head += [x, f"{x} raw", f"{x} max", f"{x} late"]
            head += [f"{x} {e}" for e in exercises[x]]
        head += ["total", "total raw", "total max"]
        w.writerow(head)
        for s, who in ident.items():
            mine = by_student.get(s, {})
            line = [s, who.get("name", ""), who.get("lms_id", "")]
            for x in cols:
                g = mine.get(x)
                if g is None:
                    line += ["", "", "", "missing"] + [""] * len(exercises[x])
                    continue
                note = g.late.note if g.late and (g.late.late or g.late.note) else ""
                line += [_fmt(g.score), _fmt(g.raw), _fmt(g.max_score), note]
                line += [_fmt(g.points[e][0]) if e in g.points else "" for e in exercises[x]]
            known = [g.score for g in mine.values()]
            line += [
                "" if None in known else _fmt(sum(s or 0.0 for s in known)),
                _fmt(sum(g.raw for g in mine.values())),
                _fmt(sum(g.max_score for g in mine.values())),
            ]
            w.writerow(line)
            rows += 1
    dest = Path(dest) if dest else Path(out) / "export" / f"{fmt}.csv"
    _write_atomic(dest, buf.getvalue())
    return ExportReport(dest, rows, problems)
