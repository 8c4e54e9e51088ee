"""Grading across machines: ``xlt-course grade --shard K/N`` and ``xlt-course grade-merge``.

A batch too big for one machine is split by student: shard ``K`` of ``N`` (``K`` from 1)
grades every submission of the students with ``1 + sha256(student id) mod N == K`` (the
first 8 bytes of the digest, big-endian). The assignment depends on the student id alone,
so it is the same on every machine, whatever else was submitted, and all of one student's
lessons land in one shard. Each shard writes, besides its ``grades.csv`` and feedback, a
``shard.json`` naming what it graded: its index, the lesson releases (the solution
notebooks' sha256), the grader's version and limits, every student of the batch and its own.

:func:`merge` checks that the shards belong together and cover the batch exactly once, then
writes the same ``grades.csv`` (byte for byte) a single machine writes, the feedback pages,
``intake.json`` and the summary. Any inconsistency stops it with a message before it writes
anything; the shard folders are only read.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from xlt_course.errors import XltCourseError

SHARD_FILE = "shard.json"
"""The file naming what a shard graded, beside its ``grades.csv``."""

MERGED_FILE = "merged.json"
"""The file :func:`merge` leaves in its output folder (which shards it merged)."""

FORMAT = "xlt-course-shard/1"
"""Format tag of :data:`SHARD_FILE`."""

ASSIGNMENT = "1 + sha256(student id)[:8] mod N"
"""How students are assigned to shards (written into every shard file)."""


class ShardError(XltCourseError, ValueError):
    """Shards that cannot be merged, or a malformed ``--shard`` (nothing was written)."""


@dataclass(frozen=True)
class Shard:
    """One share of a grading batch: shard ``index`` (1..``count``) of ``count``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Return the shard ``"K/N"`` names (``1 <= K <= N``).

        Raises:
            ShardError: the text is not ``K/N`` with those bounds.
        """
        k, sep, n = text.partition("/")
        try:
            shard = cls(int(k), int(n))
        except ValueError:
            shard = None
        if not sep or shard is None or not 1 <= shard.index <= shard.count:
            raise ShardError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 2/4")
        return shard

    def owns(self, student: str) -> bool:
        """Return True when ``student``'s submissions belong to this shard."""
        return shard_of(student, self.count) == self.index

    def write_file(self, out: Path, **record: object) -> Path:
        """Write ``out/shard.json`` for this shard (see :func:`write_shard_file`)."""
        return write_shard_file(out, self, **record)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(student: str, count: int) -> int:
    """Return the shard (1..``count``) that grades ``student`` (see :data:`ASSIGNMENT`)."""
    digest = hashlib.sha256(student.encode("utf-8")).digest()
    return 1 + int.from_bytes(digest[:8], "big") % count


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_shard_file(
    out: Path,
    shard: Shard,
    *,
    releases: dict[str, str],
    grader: str,
    students: list[str],
    submissions: list[tuple[str, str]],
) -> Path:
    """Write ``out/shard.json`` for the ``grades.csv`` already in ``out``.

    Args:
        releases: lesson -> sha256 of its solution notebook (the lesson release graded).
        grader: the grader's version and limits (shards graded differently do not merge).
        students: every student of the batch (all shards).
        submissions: the ``(student, lesson)`` pairs of the batch (all shards).
    """
    mine = sorted(s for s in students if shard.owns(s))
    payload = {
        "format": FORMAT,
        "shard": shard.index,
        "of": shard.count,
        "assignment": ASSIGNMENT,
        "grader": grader,
        "releases": dict(sorted(releases.items())),
        "students": sorted(students),
        "mine": mine,
        "submissions": sorted([list(s) for s in submissions]),
        "grades_sha256": _sha256(out / "grades.csv"),
    }
    path = out / SHARD_FILE
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


@dataclass
class _Loaded:
    folder: Path
    meta: dict
    rows: list[list[str]]


_FIELDS = {
    "format": str,
    "shard": int,
    "of": int,
    "grader": str,
    "releases": dict,
    "students": list,
    "mine": list,
    "submissions": list,
    "grades_sha256": str,
}


def _load(folder: Path) -> _Loaded:
    from autograder.grading import GRADES_COLUMNS

    if not folder.is_dir():
        raise ShardError(f"shard folder {folder} does not exist")
    path = folder / SHARD_FILE
    if not path.is_file():
        raise ShardError(
            f"{folder} is not a shard: it has no {SHARD_FILE} (grade it with "
            "`xlt-course grade ... --shard K/N`)"
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ShardError(f"{path} is malformed: not JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ShardError(f"{path} is malformed: not a JSON object")
    for key, kind in _FIELDS.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise ShardError(f"{path} is malformed: {key!r} missing or not a {kind.__name__}")
    if meta["format"] != FORMAT:
        raise ShardError(f"{path}: format {meta['format']!r}, this grader reads {FORMAT!r}")
    if not 1 <= meta["shard"] <= meta["of"]:
        raise ShardError(f"{path} is malformed: shard {meta['shard']} of {meta['of']}")
    grades = folder / "grades.csv"
    if not grades.is_file():
        raise ShardError(f"{folder} has no grades.csv (did its grading finish?)")
    if _sha256(grades) != meta["grades_sha256"]:
        raise ShardError(
            f"{grades} changed after its shard was graded (sha256 differs from {SHARD_FILE}): "
            "grade the shard again"
        )
    with open(grades, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(rows[0]) != GRADES_COLUMNS:
        raise ShardError(f"{grades} is malformed: its header is not {','.join(GRADES_COLUMNS)}")
    body = rows[1:]
    for row in body:
        if len(row) != len(GRADES_COLUMNS):
            raise ShardError(f"{grades} is malformed: a row has {len(row)} fields")
    return _Loaded(folder, meta, body)


def _check_rows(s: _Loaded) -> None:
    """Raise when a shard's grades.csv holds a student of another shard."""
    meta, grades, mine = s.meta, s.folder / "grades.csv", set(s.meta["mine"])
    for row in s.rows:
        if row[0] not in mine or shard_of(row[0], meta["of"]) != meta["shard"]:
            raise ShardError(
                f"{grades} has a row of student {row[0]!r}, who belongs to shard "
                f"{shard_of(row[0], meta['of'])}/{meta['of']}, not {meta['shard']}: was the "
                "folder reused for another shard?"
            )


def check(folders: list[Path]) -> list[_Loaded]:
    """Load the shard folders and check they form one whole batch; return them by index.

    Raises:
        ShardError: a folder is no shard or is malformed, the shards differ in lesson
            releases, grader, batch or ``N``, a shard is missing or given twice, or two
            shards graded the same submission.
    """
    if not folders:
        raise ShardError("no shard folders given")
    loaded = [_load(Path(f)) for f in folders]
    first = loaded[0]
    for s in loaded[1:]:
        for key, what in (
            ("of", "a different number of shards"),
            ("releases", "different lesson releases (solution notebooks changed in between)"),
            ("grader", "a different grader version or limits"),
            ("students", "a different batch of students"),
            ("submissions", "a different batch of submissions"),
        ):
            if s.meta[key] != first.meta[key]:
                raise ShardError(
                    f"{s.folder} and {first.folder} were graded with {what}: shards of one "
                    "batch must be graded from the same submissions and course checkout"
                )
    n = first.meta["of"]
    by_index: dict[int, _Loaded] = {}
    for s in loaded:
        k = s.meta["shard"]
        if k in by_index:
            raise ShardError(
                f"shards overlap: {by_index[k].folder} and {s.folder} are both shard {k}/{n}"
            )
        by_index[k] = s
    missing = [k for k in range(1, n + 1) if k not in by_index]
    if missing:
        raise ShardError(
            f"missing shard{'s' if len(missing) > 1 else ''} "
            + ", ".join(f"{k}/{n}" for k in missing)
            + ": merge needs every shard"
        )
    seen: dict[tuple[str, str], Path] = {}
    for s in loaded:
        _check_rows(s)
        for row in s.rows:
            key = (row[0], row[1])
            if key in seen:
                raise ShardError(f"shards overlap: {seen[key]} and {s.folder} both grade {key}")
            seen[key] = s.folder
    expected = {tuple(x) for x in first.meta["submissions"]}
    absent = sorted(expected - set(seen))
    if absent:
        raise ShardError(
            f"{len(absent)} submission(s) of the batch are in no shard's grades.csv, e.g. "
            f"{absent[0]}: did a shard stop early? grade it again"
        )
    return [by_index[k] for k in sorted(by_index)]


def merge(folders: list[Path], out: Path) -> Path:
    """Merge shard folders into ``out``: ``grades.csv``, feedback, ``intake.json``, summary.

    ``out/grades.csv`` is byte-identical to the one a single machine writes for the batch.
    Nothing is written when the shards do not merge; an existing ``out`` is replaced only
    when it is an earlier merge (it holds :data:`MERGED_FILE`).

    Returns:
        The path of the merged ``grades.csv``.

    Raises:
        ShardError: see :func:`check`; or ``out`` is a shard or holds other files.
    """
    from autograder import grading

    shards = check([Path(f) for f in folders])
    out = Path(out).absolute()
    for s in shards:
        if out.resolve() == s.folder.resolve():
            raise ShardError(f"--out {out} is one of the shards: merge into a new folder")
    if out.exists() and any(out.iterdir()) and not (out / MERGED_FILE).is_file():
        raise ShardError(f"--out {out} exists and is not an earlier merge: choose a new folder")
    intakes = {
        (s.folder / "intake.json").read_bytes()
        for s in shards
        if (s.folder / "intake.json").is_file()
    }
    if len(intakes) > 1:
        raise ShardError("the shards took in different submissions (their intake.json differ)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.merging-", dir=out.parent))
    try:
        rows = sorted((row for s in shards for row in s.rows), key=lambda r: (r[0], r[1]))
        with open(tmp / "grades.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(grading.GRADES_COLUMNS)
            w.writerows(rows)
        for s in shards:
            for row in s.rows:
                page = s.folder / "feedback" / row[0] / f"{row[1]}.html"
                if page.is_file():
                    dest = tmp / "feedback" / row[0] / page.name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(page, dest)
        if intakes:
            (tmp / "intake.json").write_bytes(intakes.pop())
        grading.write_summary([_summary_row(r) for r in rows], tmp)
        (tmp / MERGED_FILE).write_text(
            json.dumps(
                {"shards": [str(s.folder.resolve()) for s in shards], "of": len(shards)},
                indent=1,
            )
            + "\n",
            encoding="utf-8",
        )
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "grades.csv"


def _summary_row(row: list[str]):  # noqa: ANN202 - a SubmissionResult for the histograms
    from autograder.grading import GRADES_COLUMNS, SubmissionResult

    d = dict(zip(GRADES_COLUMNS, row, strict=True))
    flags = [d["flags"]] if d["flags"] else []
    return SubmissionResult(
        d["student"], d["lesson"], float(d["auto_points"]), float(d["auto_max"]), flags=flags
    )
