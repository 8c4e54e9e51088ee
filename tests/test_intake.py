"""Submission intake: LMS names of every kind are taken in, odd ones reported, none fatal."""

from __future__ import annotations

import csv
import json
import zipfile

import pytest
from conftest import solution

from autograder import grading, intake, paths

LESSONS = grading.lesson_names()
LESSON = "00-setup"

# name inside the zip -> (student, late) expected; None: reported and skipped
MIXED = {
    f"doejohn_12345_67890_{LESSON}.ipynb": ("doejohn_12345", False),  # Canvas
    f"smithann_LATE_222_333_{LESSON}-1.ipynb": ("smithann_222", True),  # Canvas, late, resubmitted
    f"Zoë Müller_1234567_assignsubmission_file_{LESSON}.ipynb": ("Zoë_Müller_1234567", False),
    f"Jan Kowalski_77_assignsubmission_file_/{LESSON} (1).ipynb": ("Jan_Kowalski_77", False),
    f"s123_{LESSON}.ipynb": ("s123", False),  # nbgrader zip_collect default
    f"s124_late_{LESSON}.ipynb": ("s124", True),  # lowercase late marker
    f"HW0_jdoe_attempt_2026-01-15-23-59-02_{LESSON}.ipynb": ("jdoe", False),  # Blackboard
    f"classroom/{LESSON}-octo-cat/{LESSON}.ipynb": ("octo-cat", False),  # GitHub Classroom
    f"jane_doe/{LESSON}/{LESSON}.ipynb": ("jane_doe", False),  # underscore in a folder
    f"渡辺_{LESSON}.ipynb": ("渡辺", False),
    "homework.ipynb": None,
    "s125_99-no-such-lesson.ipynb": None,
    f"s126_{LESSON}.pdf": None,  # a PDF where the notebook was expected
    "parkle_1006_5006_report.pdf": None,  # Canvas: a student's only upload, no lesson in it
    "data/extra.csv": None,  # not named after a student: not reported
}


def _zip(path, names, data=b'{"cells": []}'):
    with zipfile.ZipFile(path, "w") as z:
        for n in names:
            z.writestr(n, data)
        z.writestr("__MACOSX/._junk.ipynb", b"x")
        z.writestr("readme.txt", b"not a notebook")
    return path


def test_mixed_zip_takes_every_matchable_name(tmp_path):
    taken = intake.collect(_zip(tmp_path / "lms.zip", MIXED), tmp_path / "out", LESSONS)
    got = {s.source: (s.student, s.late) for s in taken.submissions}
    want = {k: v for k, v in MIXED.items() if v is not None}
    assert got == want
    for student, _ in want.values():
        assert (tmp_path / "out" / student / LESSON / f"{LESSON}.ipynb").is_file()
    skipped = dict(taken.skipped)
    assert set(skipped) == {
        "homework.ipynb",
        "s125_99-no-such-lesson.ipynb",
        f"s126_{LESSON}.pdf",
        "parkle_1006_5006_report.pdf",
    }
    assert skipped[f"s126_{LESSON}.pdf"] == "not a notebook (.pdf): not graded"
    assert skipped["parkle_1006_5006_report.pdf"] == "not a notebook (.pdf): not graded"
    assert "matches no submission pattern" in skipped["homework.ipynb"]
    assert "'99-no-such-lesson' does not exist" in skipped["s125_99-no-such-lesson.ipynb"]
    jdoe = next(s for s in taken.submissions if s.student == "jdoe")
    assert jdoe.submitted_at == "2026-01-15T23:59:02+00:00"
    zoe = next(s for s in taken.submissions if s.lms_id == "1234567")
    assert (zoe.name, zoe.pattern) == ("Zoë Müller", "moodle")
    # intake.json round-trips, Unicode as is
    again = intake.Intake.load(tmp_path / "out" / "intake.json")
    assert again.submissions == sorted(taken.submissions, key=lambda s: (s.student, s.lesson))
    assert "Zoë Müller" in (tmp_path / "out" / "intake.json").read_text(encoding="utf-8")


def test_names_without_utf8_flag_are_repaired(tmp_path):
    archive = tmp_path / "win.zip"
    with zipfile.ZipFile(archive, "w") as z:
        info = zipfile.ZipInfo(f"Zoë_{LESSON}.ipynb")
        z.writestr(info, b"{}")
    # rewrite the member name as a Windows tool would: UTF-8 bytes, no UTF-8 flag
    raw = archive.read_bytes().replace(b"\x00\x08", b"\x00\x00")
    archive.write_bytes(raw)
    taken = intake.collect(archive, tmp_path / "out", LESSONS)
    assert [s.student for s in taken.submissions] == ["Zoë"]


def test_duplicates_keep_the_latest_and_report_the_other(tmp_path):
    src = tmp_path / "dl"
    for name, body in (
        (f"s1/{LESSON}/{LESSON}.ipynb", b"old"),
        (f"s1/{LESSON}/timestamp.txt", b"2026-01-10 10:00:00.000000 UTC"),
        (f"s1_{LESSON}-2.ipynb", b"new"),
    ):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(body)
    taken = intake.collect(src, tmp_path / "out", LESSONS)
    # the timestamped one is later than "no time" (the empty string sorts first)
    (kept,) = taken.submissions
    assert kept.submitted_at == "2026-01-10T10:00:00+00:00"
    assert (tmp_path / "out" / "s1" / LESSON / f"{LESSON}.ipynb").read_bytes() == b"old"
    assert "older copy of s1's 00-setup" in taken.skipped[0][1]
    assert (src / f"s1_{LESSON}-2.ipynb").read_bytes() == b"new"  # the download is untouched


def test_corrupt_zip_is_one_clear_error_and_writes_nothing(tmp_path):
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("earlier work")
    with pytest.raises(intake.IntakeError, match="not a readable zip file") as e:
        intake.collect(bad, dest, LESSONS)
    assert "\n" not in str(e.value)
    assert (dest / "keep.txt").read_text() == "earlier work"


def test_configured_patterns_come_first_and_nbgrader_groups_work(tmp_path):
    config = {
        "intake": {
            "patterns": [
                r"exam-(?P<student_id>\w+)-(?P<timestamp>\d{4}-\d\d-\d\dT[0-9:]+)-(?P<file_id>.+)"
            ],
            "defaults": ["flat"],
        }
    }
    archive = _zip(
        tmp_path / "x.zip",
        [
            f"exam-kim-2026-02-01T09:00:00-{LESSON}.ipynb",
            f"lee_{LESSON}.ipynb",
            f"a/b/{LESSON}.ipynb",
        ],
    )
    taken = intake.collect(archive, tmp_path / "out", LESSONS, config)
    kim, lee = sorted(taken.submissions, key=lambda s: s.student)
    assert (kim.student, kim.pattern, kim.submitted_at) == (
        "kim",
        "config-1",
        "2026-02-01T09:00:00+00:00",
    )
    assert lee.pattern == "flat"
    assert [n for n, _ in taken.skipped] == [f"a/b/{LESSON}.ipynb"]  # "folder" is switched off
    with pytest.raises(intake.IntakeError, match="not a valid regex"):
        intake.build_patterns(LESSONS, {"intake": {"patterns": ["(?P<student"]}})
    with pytest.raises(intake.IntakeError, match="unknown pattern 'canvass'"):
        intake.build_patterns(LESSONS, {"intake": {"defaults": ["canvass"]}})


@pytest.mark.slow
def test_grading_a_mixed_zip_end_to_end(tmp_path, capsys, monkeypatch):
    """One real grading run (lesson 00): every matchable notebook graded, the rest reported."""
    from autograder import cli

    ref = solution(LESSON).read_bytes()
    blank = (paths.lessons_dir() / LESSON / f"{LESSON}.ipynb").read_bytes()
    archive = tmp_path / "canvas-moodle-nbgrader.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"doejohn_LATE_12345_67890_{LESSON}.ipynb", ref)
        z.writestr(f"Zoë Müller_1234567_assignsubmission_file_{LESSON}.ipynb", blank)
        z.writestr(f"s123_{LESSON}.ipynb", ref)
        z.writestr("Untitled.ipynb", ref)
    out = tmp_path / "graded"
    # (the sandbox is tests/test_grading.py's business; here it is intake that is tested)
    args = ["--jobs", "2", "--cell-timeout", "60", "--unsafe-no-sandbox"]
    monkeypatch.chdir(tmp_path)  # a relative --out works too
    code = cli.main(["grade", archive.name, "--out", "graded", *args])
    assert code == 0
    printed = capsys.readouterr().out
    assert "intake: 3 submissions (1 marked late), 1 skipped" in printed
    assert "skipped Untitled.ipynb: the name matches no submission pattern" in printed
    with open(out / "grades.csv", encoding="utf-8") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"doejohn_12345", "Zoë_Müller_1234567", "s123"}
    assert rows["doejohn_12345"]["auto_points"] == rows["doejohn_12345"]["auto_max"] != "0"
    assert rows["s123"]["auto_points"] == rows["s123"]["auto_max"]
    assert rows["Zoë_Müller_1234567"]["auto_points"] == "0"
    taken = json.loads((out / "intake.json").read_text(encoding="utf-8"))
    late = {s["student"]: s["late"] for s in taken["submissions"]}
    assert late == {"doejohn_12345": True, "Zoë_Müller_1234567": False, "s123": False}
    assert (out / "feedback" / "Zoë_Müller_1234567" / f"{LESSON}.html").exists()
    # the same output exports to Canvas (ids from Canvas's names; the others reported) ...
    assert cli.main(["export", "graded", "--format", "canvas"]) == 0
    printed = capsys.readouterr().out
    assert "1 students" in printed and "Zoë_Müller_1234567: no Canvas ID" in printed
    with open(out / "export" / "canvas.csv", encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["ID"], row[LESSON]) == ("12345", "3")
    # ... and merges into a course gradebook, where formgrader finds it
    from nbgrader.api import Gradebook

    assert cli.main(["export", "graded", "--format", "nbgrader", "--dest", "course"]) == 0
    assert "merged 3 submissions" in capsys.readouterr().out
    db = tmp_path / "course" / "autograder" / "gradebook.db"
    with Gradebook(f"sqlite:///{db}", "xlt-course") as gb:
        scores = {s.student.id: s.score for s in gb.assignment_submissions(LESSON)}
    assert scores == {"doejohn_12345": 3.0, "Zoë_Müller_1234567": 0.0, "s123": 3.0}
    autograded = tmp_path / "course" / "autograder" / "work" / "autograded"
    assert (autograded / "s123" / LESSON / f"{LESSON}.ipynb").exists()


def test_folder_in_grading_layout_keeps_nbgrader_timestamps(tmp_path):
    nb = tmp_path / "subs" / "s1" / LESSON / f"{LESSON}.ipynb"
    nb.parent.mkdir(parents=True)
    nb.write_text("{}")
    (nb.parent / "timestamp.txt").write_text("2026-01-15 22:00:00.5 UTC")
    taken = intake.folder_records(grading.find_submissions(tmp_path / "subs"))
    (s1,) = taken.submissions
    assert (s1.student, s1.lesson, s1.submitted_at) == ("s1", LESSON, "2026-01-15T22:00:00+00:00")


def test_grade_on_a_corrupt_zip_is_one_line(tmp_path, capsys):
    from autograder import cli

    bad = tmp_path / "download.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    assert cli.main(["grade", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "download.zip is not a readable zip file" in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_a_notebook_named_otherwise_is_told_by_its_cells(tmp_path):
    release = (paths.lessons_dir() / "02-procrustes" / "02-procrustes.ipynb").read_bytes()
    archive = tmp_path / "canvas.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("doejane_99_100_Untitled.ipynb", release)  # Canvas, renamed by the student
        z.writestr("doejack_98_101_Untitled.ipynb", b'{"cells": []}')
        z.writestr("Kim Lee_5_assignsubmission_file_\\my work.ipynb", release)  # backslash
    taken = intake.collect(archive, tmp_path / "out", LESSONS)
    got = {(s.student, s.lesson, s.pattern) for s in taken.submissions}
    assert got == {
        ("doejane_99", "02-procrustes", "canvas (lesson from its cells)"),
        ("Kim_Lee_5", "02-procrustes", "moodle (lesson from its cells)"),
    }
    assert taken.skipped == [
        (
            "doejack_98_101_Untitled.ipynb",
            "the file name has no lesson id and its cells match no lesson",
        )
    ]


def test_a_lesson_folder_is_never_the_student(tmp_path):
    # audit 13: Colab's download name inside STUDENT/NN-topic/ made every student "00-setup"
    # (the class collapsed into one row, the others skipped as duplicates)
    release = (paths.lessons_dir() / LESSON / f"{LESSON}.ipynb").read_bytes()
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for student in ("alice", "bob", "carol"):
            z.writestr(f"subs/{student}/{LESSON}/Copy of {LESSON}.ipynb", release)
        z.writestr(f"dave/{LESSON}/{LESSON}-final.ipynb", release)
        z.writestr(f"{LESSON}-jdoe/Copy of {LESSON}.ipynb", release)  # GitHub Classroom
        z.writestr("erin/05-no-such/05-no-such.ipynb", b'{"cells": []}')
        z.writestr(f"frank/{LESSON}/{LESSON}.ipynb.txt", release)  # saved by a browser
        z.writestr(f"gina_71_72_{LESSON}.ipynb.json", release)  # Canvas, saved as .json
    taken = intake.collect(archive, tmp_path / "out", LESSONS)
    got = sorted((s.student, s.lesson) for s in taken.submissions)
    assert got == [
        (s, LESSON) for s in ("alice", "bob", "carol", "dave", "frank", "gina_71", "jdoe")
    ]
    gina = next(s for s in taken.submissions if s.student == "gina_71")
    assert gina.source == f"gina_71_72_{LESSON}.ipynb.json" and gina.lms_id == "71"
    assert dict(taken.skipped) == {
        "erin/05-no-such/05-no-such.ipynb": f"lesson '05-no-such' does not exist (lessons: {', '.join(LESSONS)})"
    }
    assert f"frank/{LESSON}/{LESSON}.ipynb.txt" in dict(taken.notes)


def _layout(root, files):
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)
    return root


def _intake_only(download, out):
    """Run ``grading.grade``'s intake with no student selected (nothing is graded)."""
    limits = grading.GradeLimits(sandbox="none")
    grading.grade(download, out, students=[], jobs=1, limits=limits, progress=False)
    return intake.Intake.load(out / "intake.json")


def test_names_that_clean_to_one_id_stay_two_students(tmp_path):
    names = [f"{n}_{LESSON}.ipynb" for n in ("a b", "a_b", "o'brien", "obrien", "li,wei", "liwei")]
    archive = tmp_path / "collide.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for n in names:
            z.writestr(n, n.encode())  # each notebook its own bytes
    taken = intake.collect(archive, tmp_path / "out", LESSONS)
    assert taken.skipped == []  # no one's work is an "older copy" of another's
    by_source = {s.source: s.student for s in taken.submissions}
    assert len(set(by_source.values())) == 6
    assert by_source[f"a_b_{LESSON}.ipynb"] == "a_b"  # the name that is already the id keeps it
    assert by_source[f"a b_{LESSON}.ipynb"] == intake.distinct_id("a b") != "a_b"
    for source, student in by_source.items():
        assert (tmp_path / "out" / student / LESSON / f"{LESSON}.ipynb").read_bytes() == (
            source.encode()
        )
    notes = dict(taken.notes)
    assert set(notes) == {
        f"a b_{LESSON}.ipynb",
        f"o'brien_{LESSON}.ipynb",
        f"li,wei_{LESSON}.ipynb",
    }
    assert "belongs to 'a_b'" in notes[f"a b_{LESSON}.ipynb"]
    # a later batch: the id stays with the name that had it, whichever name comes now
    later = tmp_path / "later.zip"
    with zipfile.ZipFile(later, "w") as z:
        z.writestr(f"a_b_{LESSON}.ipynb", b"x")
    alone = intake.collect(later, tmp_path / "out2", LESSONS, earlier=taken)
    assert [s.student for s in alone.submissions] == ["a_b"]
    solo = intake.collect(
        later,
        tmp_path / "out3",
        LESSONS,
        earlier=intake.collect(
            _zip(tmp_path / "first.zip", [f"a b_{LESSON}.ipynb"]), tmp_path / "out4", LESSONS
        ),
    )
    assert [s.student for s in solo.submissions] == [intake.distinct_id("a_b")]


def test_a_folder_mixing_the_grading_layout_with_other_names_goes_through_intake(tmp_path):
    subs = _layout(
        tmp_path / "subs",
        {
            f"s1/{LESSON}/{LESSON}.ipynb": b"{}",
            f"s2/{LESSON}/{LESSON} (1).ipynb": b"{}",
            f"s4/{LESSON}.ipynb": b"{}",
            f"doejohn_123_456_{LESSON}.ipynb": b"{}",
            "s3/99-nope/99-nope.ipynb": b"{}",
            f"s5/{LESSON}/.ipynb_checkpoints/{LESSON}-checkpoint.ipynb": b"{}",
        },
    )
    assert not grading.in_grading_layout(subs)
    taken = _intake_only(subs, tmp_path / "out")
    assert {s.student for s in taken.submissions} == {"s1", "s2", "s4", "doejohn_123"}
    (nope,) = taken.skipped
    assert nope[0] == "s3/99-nope/99-nope.ipynb" and "'99-nope' does not exist" in nope[1]
    unpacked = tmp_path / "out" / ".work" / "intake"
    assert (unpacked / "s2" / LESSON / f"{LESSON}.ipynb").is_file()
    # a folder purely in the grading layout (litter aside) is graded as it is
    pure = _layout(
        tmp_path / "pure",
        {
            f"s1/{LESSON}/{LESSON}.ipynb": b"{}",
            f"s1/{LESSON}/timestamp.txt": b"2026-01-15 22:00:00 UTC",
            f"s1/{LESSON}/.ipynb_checkpoints/{LESSON}-checkpoint.ipynb": b"{}",
        },
    )
    assert grading.in_grading_layout(pure)


def test_a_second_batch_is_merged_into_intake_json(tmp_path):
    out = tmp_path / "out"
    first = tmp_path / "bb1.zip"
    with zipfile.ZipFile(first, "w") as z:
        z.writestr(f"doejohn_LATE_123_456_{LESSON}.ipynb", b"{}")
        z.writestr(f"roeann_124_457_{LESSON}.ipynb", b"{}")
    _intake_only(first, out)
    second = tmp_path / "bb2.zip"
    with zipfile.ZipFile(second, "w") as z:
        z.writestr(f"roeann_LATE_124_458_{LESSON}.ipynb", b"{}")  # resubmitted, late
        z.writestr(f"kimlee_125_459_{LESSON}.ipynb", b"{}")
        z.writestr("notes.pdf.ipynb", b"{}")
    taken = _intake_only(second, out)
    got = {s.student: (s.late, s.lms_id, s.attachment) for s in taken.submissions}
    assert got == {
        "doejohn_123": (True, "123", "456"),  # the first batch's record is kept
        "roeann_124": (True, "124", "458"),  # replaced by the resubmission only
        "kimlee_125": (False, "125", "459"),
    }
    assert taken.earlier == [("doejohn_123", LESSON)]
    assert [n for n, _ in taken.skipped] == ["notes.pdf.ipynb"]  # this batch's report
    assert taken.summary().startswith("intake: 2 submissions (1 marked late), 1 skipped")
    assert "1 from earlier batches kept" in taken.summary()
    # the first download graded again: roeann's resubmission (upload 458) is not undone by
    # her older upload 457, and the report says why
    again = _intake_only(first, out)
    roe = next(s for s in again.submissions if s.student == "roeann_124")
    assert roe.attachment == "458"
    why = dict(again.skipped)[f"roeann_124_457_{LESSON}.ipynb"]
    assert "older than roeann_LATE_124_458" in why and "LMS upload number" in why
    assert "doejohn_123" in {s.student for s in again.submissions}
    # an intake.json that cannot be read stops the batch and stays as it is
    (out / "intake.json").write_text("{not json")
    with pytest.raises(intake.IntakeError, match="from an earlier batch.*unreadable"):
        _intake_only(second, out)
    assert (out / "intake.json").read_text() == "{not json"


@pytest.mark.parametrize(
    ("members", "said"),
    [
        ({}, "it is empty"),
        ({"__MACOSX/._x.ipynb": b"x"}, "it is empty"),
        ({"readme.txt": b"x"}, "no notebook among its 1 files"),
        ("nested", f"it holds s1_{LESSON}.ipynb, s2_{LESSON}.ipynb"),
    ],
)
def test_a_download_with_nothing_to_take_is_an_error(tmp_path, members, said):
    archive = tmp_path / "dl.zip"
    if members == "nested":
        inner = _zip(tmp_path / "inner.zip", [f"s1_{LESSON}.ipynb", f"s2_{LESSON}.ipynb"])
        members = {"submissions.zip": inner.read_bytes()}
    with zipfile.ZipFile(archive, "w") as z:
        for n, body in members.items():
            z.writestr(n, body)
    dest = tmp_path / "out"
    with pytest.raises(intake.IntakeError, match="no submission could be taken") as e:
        intake.collect(archive, dest, LESSONS)
    assert said in str(e.value) and "\n" not in str(e.value)
    assert not dest.exists()


def test_hidden_and_escaping_paths_are_reported_litter_is_not(tmp_path):
    archive = _zip(
        tmp_path / "trav.zip",
        [
            f"s1_{LESSON}.ipynb",
            f".anna/{LESSON}.ipynb",
            f"../evil/{LESSON}.ipynb",
            f"/abs/s9/{LESSON}.ipynb",
            f"s2/.ipynb_checkpoints/{LESSON}-checkpoint.ipynb",
            f"._s1_{LESSON}.ipynb",
            ".DS_Store",
        ],
    )
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("inner.zip", b"PK\x03\x04 broken")
    taken = intake.collect(archive, tmp_path / "out", LESSONS)
    assert [s.student for s in taken.submissions] == ["s1"]
    skipped = dict(taken.skipped)
    assert set(skipped) == {
        f".anna/{LESSON}.ipynb",
        f"../evil/{LESSON}.ipynb",
        f"/abs/s9/{LESSON}.ipynb",
        "inner.zip",
    }
    assert "hidden" in skipped[f".anna/{LESSON}.ipynb"]
    assert "leaves the download" in skipped[f"../evil/{LESSON}.ipynb"]
    assert "absolute path" in skipped[f"/abs/s9/{LESSON}.ipynb"]
    assert "zip inside the download, unreadable" in skipped["inner.zip"]
    assert not (tmp_path / "out" / "evil").exists()


def test_duplicates_compare_upload_numbers_as_numbers_and_say_when_undecidable(tmp_path):
    src = _layout(
        tmp_path / "dl",
        {
            f"doejohn_123_99_{LESSON}.ipynb": b"first",
            f"doejohn_123_100_{LESSON}.ipynb": b"second",
            f"s2/{LESSON}.ipynb": b"folder",
            f"s2_{LESSON}.ipynb": b"flat",
        },
    )
    taken = intake.collect(src, tmp_path / "out", LESSONS)
    kept = {s.student: s.source for s in taken.submissions}
    assert kept["doejohn_123"] == f"doejohn_123_100_{LESSON}.ipynb"  # 100 is after 99
    skipped = dict(taken.skipped)
    assert (
        "older copy of doejohn_123's 00-setup by LMS upload number"
        in (skipped[f"doejohn_123_99_{LESSON}.ipynb"])
    )
    (undecided,) = [(n, w) for n, w in taken.skipped if n.startswith("s2")]
    assert undecided[1].startswith("AMBIGUOUS") and "older" not in undecided[1]
    assert {undecided[0], kept["s2"]} == {f"s2/{LESSON}.ipynb", f"s2_{LESSON}.ipynb"}
    assert f"(graded: {kept['s2']})" in undecided[1]
