"""Export and late work: LMS files re-import, the late policy keeps the raw score, bad input is one line."""

from __future__ import annotations

import csv

import pytest

from autograder import cli, export, late
from autograder.intake import Intake, Submission

GRADES = """\
student,lesson,auto_points,auto_max,manual_points,manual_pending,manual_max,total,max_total,points,flags
doejohn_12345,00-setup,3,3,0,0,0,3,3,ex1_cosine_tests=2/2;ex2_top_k_tests=1/1,
doejohn_12345,02-procrustes,4,5,0,0,0,4,5,ex1=4/5,
smithann_222,00-setup,2,3,0,0,0,2,3,ex1_cosine_tests=2/2;ex2_top_k_tests=0/1,
Zoë_Müller_77,00-setup,3,3,0,0,0,3,3,ex1_cosine_tests=2/2;ex2_top_k_tests=1/1,
stranger,00-setup,1,3,0,0,0,1,3,ex1_cosine_tests=1/2;ex2_top_k_tests=0/1,
"""
ROSTER = """\
student,name,lms_id,sis_id,login,section,email
doejohn_12345,"Doe, John",12345,S1,jdoe,A,jdoe@example.org
smithann_222,"Smith, Ann",222,S2,asmith,A,asmith@example.org
Zoë_Müller_77,Zoë Müller,77,S3,zmuller,B,zm@example.org
absent_1,"Absent, Al",999,S4,aal,B,al@example.org
"""


@pytest.fixture
def graded(tmp_path):
    out = tmp_path / "graded"
    out.mkdir()
    (out / "grades.csv").write_text(GRADES, encoding="utf-8")
    Intake(
        [
            Submission("doejohn_12345", "00-setup", "a", "canvas", "doejohn", "12345"),
            Submission(
                "smithann_222",
                "00-setup",
                "b",
                "canvas",
                "smithann",
                "222",
                True,
                "2026-01-17T10:00:00+00:00",
            ),  # fmt: skip
            Submission("Zoë_Müller_77", "00-setup", "c", "moodle", "Zoë Müller", "77", True),
        ]
    ).save(out / "intake.json")
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    return out


def test_canvas_export_reimports_one_row_per_student(graded, tmp_path, capsys):
    code = cli.main(
        ["export", str(graded), "--format", "canvas", "--roster", str(tmp_path / "roster.csv")]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "4 students" in printed
    assert "check before uploading" in printed
    assert "  stranger: graded but not in the roster" in printed
    with open(graded / "export" / "canvas.csv", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        assert reader.fieldnames == [*export.CANVAS_HEADER, "00-setup", "02-procrustes"]
    assert sorted(r["ID"] for r in rows) == ["12345", "222", "77", "999"]  # one row each
    by_id = {r["ID"]: r for r in rows}
    assert by_id["12345"]["Student"] == "Doe, John"
    assert by_id["12345"]["00-setup"] == "3" and by_id["12345"]["02-procrustes"] == "4"
    assert by_id["999"]["00-setup"] == ""  # no submission: blank, Canvas leaves it unchanged
    assert by_id["77"]["Student"] == "Zoë Müller"


def test_canvas_without_roster_uses_the_ids_in_canvas_names(graded):
    report = export.export(
        graded, "canvas", config={"export": {"canvas": {"assignments": {"00-setup": 501}}}}
    )
    with open(report.path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert "00-setup (501)" in rows[0]
    assert [r["ID"] for r in rows] == ["12345", "222"]
    assert any("Zoë_Müller_77: no Canvas ID" in p for p in report.problems)
    # a Canvas file told by its cells ("Copy of 00-setup.ipynb") carries the same id (audit 13)
    taken = Intake.load(graded / "intake.json")
    taken.submissions = [
        Submission(
            s.student, s.lesson, s.source, "canvas (lesson from its cells)", s.name, s.lms_id
        )
        if s.student == "doejohn_12345"
        else s
        for s in taken.submissions
    ]
    taken.save(graded / "intake.json")
    again = export.export(graded, "canvas")
    with open(again.path, encoding="utf-8") as f:
        assert [r["ID"] for r in csv.DictReader(f)] == ["12345", "222"]


def test_moodle_export_and_wide_table_with_late_policy(graded, tmp_path):
    roster = tmp_path / "roster.csv"
    over = {"policy": "per_day", "due": "2026-01-15", "per_day": 0.25, "floor": 0.5}
    report = export.export(graded, "moodle", roster=roster, late_override=over)
    with open(report.path, encoding="utf-8") as f:
        rows = {r["Email address"]: r for r in csv.DictReader(f)}
    assert list(next(iter(rows.values())))[:3] == export.MOODLE_HEADER
    # smithann submitted 2026-01-17T10:00Z, due 2026-01-15T23:59:59Z: 2 started days late
    assert rows["asmith@example.org"]["00-setup"] == "1"  # 2 * (1 - 0.5)
    wide = export.export(graded, "wide", roster=roster, late_override=over)
    with open(wide.path, encoding="utf-8") as f:
        table = {r["student"]: r for r in csv.DictReader(f)}
    ann = table["smithann_222"]
    assert (ann["00-setup"], ann["00-setup raw"], ann["00-setup max"]) == ("1", "2", "3")
    assert "late by 2 day(s)" in ann["00-setup late"]
    assert ann["00-setup ex2_top_k_tests"] == "0"
    # marked late by the LMS but no time: left blank and said, never the raw score as on time
    zoe = table["Zoë_Müller_77"]
    assert zoe["00-setup"] == "" and "no submission time" in zoe["00-setup late"]
    assert any(p.startswith("Zoë_Müller_77/00-setup: score left blank") for p in wide.problems)
    assert table["absent_1"]["00-setup late"] == "missing"
    assert table["doejohn_12345"]["total"] == "7"


def test_late_policy_arithmetic():
    due = late.parse_due("2026-03-01T12:00+01:00")
    assert due.isoformat() == "2026-03-01T11:00:00+00:00"
    pol = late.LatePolicy("per_day", {"*": due}, per_day=0.1, floor=0.7, grace_minutes=10)
    on_time = late.apply_late(pol, "x", 5, "2026-03-01T11:09:00+00:00", False)
    assert (on_time.late, on_time.score) == (False, 5)
    day1 = late.apply_late(pol, "x", 5, "2026-03-01T11:11:00+00:00", False)
    assert (day1.late, day1.days, day1.score) == (True, 1, 4.5)
    week = late.apply_late(pol, "x", 5, "2026-03-09T11:00:00+00:00", False)
    assert week.score == 3.5  # the floor: 70% of the raw score
    flag = late.LatePolicy("flag", {"*": due})
    assert late.apply_late(flag, "x", 5, "2026-03-05T00:00:00+00:00", False).score == 5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--format", "canvas", "--due", "15/01/2026"], "due date '15/01/2026' is not YYYY-MM-DD"),
        (["--format", "canvas", "--roster", "{dup}"], "'S1' appears twice (lines 2 and 3)"),
        (["--format", "wide", "--lesson", "99-nope"], "no grades for lesson '99-nope'"),
        (["--format", "canvas", "--roster", "{missing}"], "does not exist"),
    ],
)
def test_bad_input_is_one_clear_line_and_overwrites_nothing(
    graded, tmp_path, capsys, argv, message
):
    dup = tmp_path / "dup.csv"
    dup.write_text("student,sis_id\na,S1\nb,S1\n", encoding="utf-8")
    previous = graded / "export" / "canvas.csv"
    previous.parent.mkdir()
    previous.write_text("an earlier export\n", encoding="utf-8")
    argv = [a.format(dup=dup, missing=tmp_path / "nope.csv") for a in argv]
    assert cli.main(["export", str(graded), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert previous.read_text(encoding="utf-8") == "an earlier export\n"
    assert sorted(p.name for p in previous.parent.iterdir()) == ["canvas.csv"]


def test_unknown_format_is_refused(graded, capsys):
    with pytest.raises(SystemExit):
        cli.main(["export", str(graded), "--format", "blackboard"])
    assert "invalid choice: 'blackboard'" in capsys.readouterr().err
    with pytest.raises(export.ExportError, match="unknown export format 'xls'"):
        export.export(graded, "xls")


def test_example_term_config_is_valid():
    from autograder import grading, intake, term_config

    path = term_config.DEFAULT_FILE.with_name("term.example.toml")
    config = term_config.load_term_config(path)
    intake.build_patterns(grading.lesson_names(), config)
    assert late.policy_from_config(config).policy == "none"
    with pytest.raises(term_config.TermConfigError, match="does not exist"):
        term_config.load_term_config(path.with_name("nope.toml"))


def test_canvas_late_without_a_time_is_left_blank_and_reported(tmp_path, capsys):
    # Canvas's names say _LATE but carry no time: per_day cannot be computed for them
    out = tmp_path / "graded"
    out.mkdir()
    (out / "grades.csv").write_text(
        "student,lesson,auto_points,auto_max,manual_points,manual_pending,manual_max,total,"
        "max_total,points,flags\n"
        "doejohn_123,00-setup,3,3,0,0,0,3,3,ex1=3/3,\n"
        "roe_124,00-setup,3,3,0,0,0,3,3,ex1=3/3,\n",
        encoding="utf-8",
    )
    Intake(
        [
            Submission("doejohn_123", "00-setup", "a", "canvas", "doejohn", "123", True),
            Submission("roe_124", "00-setup", "b", "canvas", "roe", "124", False),
        ]
    ).save(out / "intake.json")
    late_args = ["--due", "2026-01-01", "--late-policy", "per_day", "--per-day", "0.5"]
    argv = ["export", str(out), "--format", "canvas", *late_args, "--floor", "0"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        "doejohn_123/00-setup: score left blank: the LMS marked it late but its file name "
        "carries no submission time" in printed
    )
    assert "--late-policy flag" in printed and "roe_124/00-setup" not in printed
    with open(out / "export" / "canvas.csv", encoding="utf-8") as f:
        scores = {r["ID"]: r["00-setup"] for r in csv.DictReader(f)}
    assert scores == {"123": "", "124": "3"}  # blank: Canvas keeps the cell for the instructor
    wide = export.export(out, "wide", late_override={"policy": "per_day", "due": "2026-01-01"})
    with open(wide.path, encoding="utf-8") as f:
        doe = next(r for r in csv.DictReader(f) if r["student"] == "doejohn_123")
    assert (doe["00-setup"], doe["00-setup raw"], doe["total"]) == ("", "3", "")
    assert "penalty unknown" in doe["00-setup late"]
    # a lesson without a due date under per_day is said, and flag sends the raw scores
    no_due = export.export(out, "canvas", late_override={"policy": "per_day"})
    assert any("00-setup has no due date" in p for p in no_due.problems)
    flag = export.export(out, "canvas", late_override={"policy": "flag", "due": "2026-01-01"})
    assert flag.problems == []
    with open(flag.path, encoding="utf-8") as f:
        assert [r["00-setup"] for r in csv.DictReader(f)] == ["3", "3"]


LESSON = "00-setup"
GRADES_PENDING = (
    "student,lesson,auto_points,auto_max,manual_points,manual_pending,manual_max,total,"
    f"max_total,points,flags\ndoejohn_123,{LESSON},2,2,0,4,4,2,6,ex1=2/2;q1_answer=pending/4,\n"
)


def _graded_job(out, student: str, answer: str) -> None:
    """Write the grading output of one submission (grades.csv, intake, its job's gradebook)."""
    from autograder.formgrader import open_gradebook

    out.mkdir(parents=True, exist_ok=True)
    (out / "grades.csv").write_text(GRADES_PENDING, encoding="utf-8")
    Intake([Submission(student, LESSON, "a", "canvas", "doejohn", "123")]).save(out / "intake.json")
    job = out / ".work" / "jobs" / LESSON / student
    for kind in ("submitted", "autograded"):
        nb = job / kind / student / LESSON / f"{LESSON}.ipynb"
        nb.parent.mkdir(parents=True, exist_ok=True)
        nb.write_text(answer, encoding="utf-8")
    (job / "gradebook.db").unlink(missing_ok=True)
    with open_gradebook(job / "gradebook.db") as gb:
        gb.add_assignment(LESSON)
        gb.add_notebook(LESSON, LESSON)
        gb.add_grade_cell("ex1", LESSON, LESSON, max_score=2, cell_type="code")
        gb.add_grade_cell("q1_answer", LESSON, LESSON, max_score=4, cell_type="markdown")
        gb.add_solution_cell("q1_answer", LESSON, LESSON)
        gb.add_student(student)
        gb.add_submission(LESSON, student)
        ex1 = gb.find_grade("ex1", LESSON, LESSON, student)
        ex1.auto_score, ex1.needs_manual_grade = 2.0, False  # q1_answer: pending
        gb.db.commit()


def _grade_by_hand(root, student: str, points: float) -> None:
    from autograder.formgrader import open_gradebook

    with open_gradebook(root / "autograder" / "gradebook.db") as gb:
        g = gb.find_grade("q1_answer", LESSON, LESSON, student)
        g.manual_score, g.needs_manual_grade = points, False
        gb.find_comment("q1_answer", LESSON, LESSON, student).manual_comment = "good answer"
        gb.db.commit()


def _hand_score(root, student: str) -> tuple[float | None, str | None]:
    from autograder.formgrader import open_gradebook

    with open_gradebook(root / "autograder" / "gradebook.db") as gb:
        g = gb.find_grade("q1_answer", LESSON, LESSON, student)
        c = gb.find_comment("q1_answer", LESSON, LESSON, student)
        return g.manual_score, c.manual_comment


@pytest.mark.filterwarnings("ignore:.*not in session")  # nbgrader's own
def test_remerging_a_resubmission_clears_its_hand_grading_and_says_so(tmp_path, capsys):
    from autograder import formgrader

    out, root = tmp_path / "graded", tmp_path / "course"
    _graded_job(out, "doejohn_123", '{"answer": "a careful essay"}')
    formgrader.merge_results(out, root)
    _grade_by_hand(root, "doejohn_123", 4.0)
    again = formgrader.merge_results(out, root)  # the same notebook: hand grading kept
    assert (again.cleared, again.skipped) == ([], [])
    assert _hand_score(root, "doejohn_123") == (4.0, "good answer")
    _graded_job(out, "doejohn_123", '{"answer": ""}')  # resubmitted, graded into the same out
    argv = ["export", str(out), "--format", "nbgrader", "--dest", str(root)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        "doejohn_123/00-setup: hand grading CLEARED (q1_answer 4, q1_answer comment): "
        "00-setup.ipynb changed" in printed
    )
    assert _hand_score(root, "doejohn_123") == (None, None)


@pytest.mark.filterwarnings("ignore:.*not in session")  # nbgrader's own
def test_a_submission_that_could_not_be_graded_is_said_when_merging(tmp_path):
    # audit 13: an empty or non-JSON notebook has no job gradebook and vanished unsaid
    from autograder import formgrader

    out, root = tmp_path / "graded", tmp_path / "course"
    _graded_job(out, "doejohn_123", '{"answer": "a careful essay"}')
    with open(out / "grades.csv", "a", encoding="utf-8") as f:
        f.write(f"roe_124,{LESSON},0,2,0,0,4,0,6,,empty file\n")
    report = formgrader.merge_results(out, root)
    assert report.merged == [("doejohn_123", LESSON)]
    assert report.skipped == [f"roe_124/{LESSON}: not in its gradebook (empty file)"]


@pytest.mark.filterwarnings("ignore:.*not in session")  # nbgrader's own
def test_export_counts_the_scores_given_in_formgrader(tmp_path):
    from autograder import formgrader

    out, root = tmp_path / "graded", tmp_path / "course"
    _graded_job(out, "doejohn_123", '{"answer": "a careful essay"}')
    # without the gradebook: the pending points are said, not silently counted 0
    alone = export.export(out, "canvas")
    assert alone.problems == [
        "doejohn_123/00-setup: exported with 4 of 6 points of written answers not graded "
        "yet, counted 0: grade them in formgrader, then export again with the course "
        "gradebook ([export] gradebook, README)"
    ]
    formgrader.merge_results(out, root)
    _grade_by_hand(root, "doejohn_123", 3.5)
    for report in (
        export.export(out, "canvas", gradebook=root),
        export.export(out, "canvas", config={"export": {"gradebook": str(root)}}),
    ):
        assert report.problems == []
        with open(report.path, encoding="utf-8") as f:
            assert [r[LESSON] for r in csv.DictReader(f)] == ["5.5"]  # 2 auto + 3.5 by hand
    wide = export.export(out, "wide", gradebook=root)
    with open(wide.path, encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    assert (row[LESSON], row[f"{LESSON} q1_answer"], row[f"{LESSON} max"]) == ("5.5", "3.5", "6")
    # a resubmission graded since, not yet merged: its hand grading is not the gradebook's
    _graded_job(out, "doejohn_123", '{"answer": ""}')
    stale = export.export(out, "canvas", gradebook=root)
    assert "the gradebook" in stale.problems[0] and "another submission" in stale.problems[0]
    with open(stale.path, encoding="utf-8") as f:
        assert [r[LESSON] for r in csv.DictReader(f)] == ["2"]
    with pytest.raises(export.ExportError, match="no course gradebook"):
        export.export(out, "canvas", gradebook=tmp_path / "nowhere")
