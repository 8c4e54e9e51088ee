"""How grades are reported: written answers are pending, not 0 (fast: no grading run).

The real pipeline is checked in ``test_grading.py`` (lesson 00's reference and blank).
"""

from __future__ import annotations

import csv

from autograder import grading


def _results() -> list[grading.SubmissionResult]:
    written = {"q1_answer": (None, 1.0), "q2_answer": (None, 2.0)}
    return [
        grading.SubmissionResult(
            "bob", "00-setup", 1.0, 3.0, {"ex1_tests": (0.0, 2.0), "ex2_tests": (1.0, 1.0)},
            ["a flag"], manual={"q1_answer": (0.0, 1.0), "q2_answer": (None, 2.0)},
        ),
        grading.SubmissionResult(
            "ann", "00-setup", 3.0, 3.0, {"ex1_tests": (2.0, 2.0), "ex2_tests": (1.0, 1.0)},
            manual=written,
        ),
    ]  # fmt: skip


def test_pending_answers_are_not_counted_as_zero():
    bob, ann = _results()
    assert (ann.manual_pending, ann.manual_points, ann.manual_max, ann.total) == (3, 0, 3, 3)
    # bob left question 1 unanswered (nbgrader scores that 0) and answered question 2
    assert (bob.manual_pending, bob.manual_points, bob.manual_max, bob.total) == (2, 0, 3, 1)


def test_grades_csv_columns_and_bytes(tmp_path):
    grading.write_grades_csv(_results(), tmp_path / "a.csv")
    grading.write_grades_csv(list(reversed(_results())), tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    rows = list(csv.DictReader((tmp_path / "a.csv").read_text(encoding="utf-8").splitlines()))
    assert list(rows[0]) == list(grading.GRADES_COLUMNS)
    ann, bob = rows
    assert ann["points"] == ("ex1_tests=2/2;ex2_tests=1/1;q1_answer=pending/1;q2_answer=pending/2")
    assert [ann[k] for k in ("auto_points", "auto_max", "manual_pending", "total")] == [
        "3",
        "3",
        "3",
        "3",
    ]
    assert (ann["manual_max"], ann["max_total"]) == ("3", "6")
    assert bob["points"] == "ex1_tests=0/2;ex2_tests=1/1;q1_answer=0/1;q2_answer=pending/2"
    assert (bob["manual_points"], bob["manual_pending"], bob["total"]) == ("0", "2", "1")
    assert bob["flags"] == "a flag"


def test_stored_results_keep_pending_answers(tmp_path):
    _, ann = _results()
    grading._save_result(ann, tmp_path / "ann.json", "key")
    key, loaded = grading._load_result(tmp_path / "ann.json")
    assert key == "key" and loaded.manual == ann.manual and loaded.points == ann.points


def test_feedback_page_says_pending(tmp_path):
    # The parts of nbgrader 0.9's feedback template that carry scores.
    page = (
        "<h4>00-setup (Score: 3.0 / 6.0)</h4>\n"
        '<li><a href="#ex1_tests">Test cell</a> (Score: 2.0 / 2.0)</li>\n'
        '<li><a href="#q1_answer">Written response</a> (Score: 0.0 / 1.0)</li>\n'
        '<li><a href="#q2_answer">Written response</a> (Score: 0.0 / 2.0)</li>\n'
        '<a name="q1_answer"></a><div class="panel-heading">'
        '<span class="nbgrader-label">Student\'s answer</span>  <span class="pull-right">\n'
        '      Score: 0.0 / 1.0 <a href="#top">(Top)</a>\n  </span></div>\n'
        '<a name="q2_answer"></a><div class="panel-heading">'
        '<span class="nbgrader-label">Student\'s answer</span>  <span class="pull-right">\n'
        '      Score: 0.0 / 2.0 <a href="#top">(Top)</a>\n  </span></div>\n'
    )
    html = tmp_path / "f.html"
    html.write_text(page, encoding="utf-8")
    bob, _ = _results()  # q1 unanswered (0), q2 pending
    grading.mark_pending(html, bob)
    text = html.read_text(encoding="utf-8")
    assert '<a href="#q1_answer">Written response</a> (Score: 0.0 / 1.0)' in text
    assert '<a href="#q2_answer">Written response</a> (Score: pending / 2.0)' in text
    assert "Score: 0.0 / 1.0 <a" in text and "Score: pending / 2.0 <a" in text
    assert "(Score: 3.0 / 6.0; 2 points of written answers pending" in text
    assert '<a href="#ex1_tests">Test cell</a> (Score: 2.0 / 2.0)' in text
