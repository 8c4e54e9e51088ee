"""``make course``'s timing report: cold and cached seconds per lesson, on a stub lesson set.

The stub lesson is a real notebook executed by a real kernel (no mocks): its first run
computes a result and writes it to the course cache (cold), the second reads it back
(cached). The full course is never run here (hours).
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from autograder import course

STUB = "99-stub"
CELL = """\
from xlt_course import paths
f = paths.cache_dir() / "stub" / "result.txt"
if not f.exists():
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text("computed")
print(f.read_text())
"""


@pytest.fixture
def stub_course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A solutions folder with one stub lesson; the course data (and cache) under tmp_path."""
    monkeypatch.setenv("XLT_COURSE_DATA", str(tmp_path / "data"))
    source = tmp_path / "solutions"
    (source / STUB).mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, source / STUB / f"{STUB}.ipynb")
    return source


def test_first_run_is_cold_second_is_cached_and_both_are_reported(stub_course: Path) -> None:
    first = course.execute_lesson(STUB, smoke=True, source=stub_course)
    assert first.executed and first.cold, first.error
    table = course.record_times([first], smoke=True)
    assert set(table[STUB]) == {"cold_s", "cold_at"}
    second = course.execute_lesson(STUB, smoke=True, source=stub_course)
    assert second.executed and not second.cold, second.error
    table = course.record_times([second], smoke=True)
    assert table[STUB]["cold_s"] == round(first.seconds, 2)
    assert table[STUB]["cached_s"] == round(second.seconds, 2)

    times_file = stub_course.parent / "data" / "cache" / course.TIMES_FILE
    assert json.loads(times_file.read_text())["smoke"] == table  # machine-readable record
    report = course.format_times(table, [STUB])
    row = next(line for line in report.splitlines() if line.startswith(STUB))
    assert f"{table[STUB]['cold_s']:.1f}" in row and f"{table[STUB]['cached_s']:.1f}" in row
    assert "ok" in row  # a stub is far under 5 min cold and 60 s cached


def test_a_failed_lesson_is_reported_and_records_no_time(stub_course: Path) -> None:
    nb_path = stub_course / STUB / f"{STUB}.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('stub failure')"))
    nbformat.write(nb, nb_path)
    run = course.execute_lesson(STUB, smoke=True, source=stub_course)
    assert not run.executed and "stub failure" in run.error
    table = course.record_times([run], smoke=True)
    assert STUB not in table
    assert "-" in course.format_times(table, [STUB]).splitlines()[-1]
    assert "FAILED" in course.format_summary([run])


def test_over_target_is_flagged() -> None:
    table = {"05-x": {"cold_s": 361.0, "cached_s": 75.0}, "06-y": {"cold_s": 120.0}}
    rows = course.format_times(table, ["05-x", "06-y"]).splitlines()[2:]
    assert rows[0].count("OVER") == 2
    assert "OVER" not in rows[1] and "ok" in rows[1]


def test_a_lesson_with_its_own_budget_is_judged_by_it() -> None:
    table = {"11-token-transfer": {"cold_s": 329.3, "cached_s": 27.1}, "06-y": {"cold_s": 329.3}}
    rows = course.format_times(table, ["11-token-transfer", "06-y"]).splitlines()[2:]
    assert "OVER" not in rows[0] and "480 / 180" in rows[0]  # issue 12: 8 min cold, 3 cached
    assert "OVER" in rows[1] and "300 / 60" in rows[1]


def test_execute_notebook_talks_to_its_kernel_over_unix_sockets(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """On Linux the kernel listens on Unix sockets in a private folder, not TCP on localhost
    (another user of a shared machine could connect to it; ipykernel warns about it)."""
    if course.os.name != "posix":
        pytest.skip("Unix sockets: POSIX only")
    nb = course.paths.solutions_dir() / "00-setup" / "00-setup.ipynb"
    course.execute_notebook(nb, smoke=True)
    err = capfd.readouterr().err
    assert "over TCP" not in err and "Parent appears to have exited" not in err, err
