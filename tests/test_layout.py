"""The layout rules CONTRIBUTING.md states: every test file has a lesson marker or is infrastructure."""

from __future__ import annotations

from pathlib import Path

from conftest import INFRASTRUCTURE_TEST_FILES, LESSON_OF_TEST_FILE, LESSONS

TESTS = Path(__file__).parent


def test_every_test_file_belongs_to_a_lesson_or_to_the_infrastructure():
    files = {p.name for p in TESTS.glob("test_*.py")}
    unknown = files - set(LESSON_OF_TEST_FILE) - INFRASTRUCTURE_TEST_FILES
    assert not unknown, (
        f"add {sorted(unknown)} to LESSON_OF_TEST_FILE or INFRASTRUCTURE_TEST_FILES in "
        "tests/conftest.py, and to the table in CONTRIBUTING.md"
    )
    gone = (set(LESSON_OF_TEST_FILE) | INFRASTRUCTURE_TEST_FILES) - files
    assert not gone, f"tests/conftest.py names test files that do not exist: {sorted(gone)}"


def test_every_lesson_has_a_marker_and_a_test_file():
    lessons = {name[:2] for name in LESSONS}
    assert lessons == set(LESSON_OF_TEST_FILE.values())
