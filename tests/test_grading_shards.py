"""Grading across machines: ``grade --shard K/N`` shares, ``grade-merge`` joins them.

A handful of tiny lesson 00-setup submissions (two real notebooks, two unreadable files)
are graded once on "one machine" and once as two shards; the merge must write the same
grades.csv byte for byte, and refuse shards that do not belong together.
"""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import solution

from autograder import cli, grading, notebooks, paths, shards

LESSON = "00-setup"
LIMITS = grading.GradeLimits(notebook_timeout=400, cell_timeout=25, memory_mb=2500)
# shard_of(s, 2): alice 2, bob 1, carol 1, dave 2
STUDENTS = ("alice", "bob", "carol", "dave")


def _submissions(root):
    release = notebooks.read_notebook(paths.lessons_dir() / LESSON / f"{LESSON}.ipynb")
    ref = notebooks.grade_cells(notebooks.read_notebook(solution(LESSON)))
    correct = notebooks.read_notebook(paths.lessons_dir() / LESSON / f"{LESSON}.ipynb")
    for gid, cell in notebooks.grade_cells(correct).items():
        if ref[gid].metadata["nbgrader"].get("solution"):
            cell.source = ref[gid].source
    content = {
        "alice": notebooks.dumps(correct),
        "bob": notebooks.dumps(release),
        "carol": "",
        "dave": "{not json",
    }
    for student, text in content.items():
        dest = root / student / LESSON / f"{LESSON}.ipynb"
        dest.parent.mkdir(parents=True)
        dest.write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def graded(tmp_path_factory, built_data):
    base = tmp_path_factory.mktemp("shards")
    subs = _submissions(base / "subs")
    grading.grade(subs, base / "single", jobs=2, limits=LIMITS, progress=False)
    for k in (1, 2):
        grading.grade(
            subs, base / f"shard{k}", jobs=1, limits=LIMITS, progress=False,
            shard=shards.Shard(k, 2),
        )  # fmt: skip
    return base


def test_assignment_is_stable_and_covers_everyone():
    assert [shards.shard_of(s, 2) for s in STUDENTS] == [2, 1, 1, 2]
    for n in (1, 3, 7):
        owners = [[k for k in range(1, n + 1) if shards.Shard(k, n).owns(s)] for s in STUDENTS]
        assert all(len(o) == 1 for o in owners)
    assert shards.Shard.parse("2/4") == shards.Shard(2, 4)
    for bad in ("0/2", "3/2", "2", "a/b", "1/0", ""):
        with pytest.raises(shards.ShardError, match="K/N"):
            shards.Shard.parse(bad)


def test_each_shard_grades_its_students_only(graded):
    for k, mine in ((1, {"bob", "carol"}), (2, {"alice", "dave"})):
        rows = (graded / f"shard{k}" / "grades.csv").read_text(encoding="utf-8").splitlines()
        assert {r.split(",")[0] for r in rows[1:]} == mine
        meta = json.loads((graded / f"shard{k}" / shards.SHARD_FILE).read_text())
        assert (meta["shard"], meta["of"], meta["mine"]) == (k, 2, sorted(mine))
        assert meta["students"] == sorted(STUDENTS)
    assert not (graded / "shard1" / ".work" / "jobs" / LESSON / "alice.json").exists()


def test_merge_is_byte_identical_to_one_machine(graded, tmp_path):
    out = tmp_path / "merged"
    code = cli.main(
        ["grade-merge", str(graded / "shard2"), str(graded / "shard1"), "--out", str(out)]
    )
    assert code == 0
    single = (graded / "single" / "grades.csv").read_bytes()
    assert (out / "grades.csv").read_bytes() == single
    assert b"alice,00-setup" in single and b"missing" not in single.split(b"carol")[0]
    # Feedback is copied byte for byte from the shard that graded the student. It is not
    # compared with the one-machine run's: that is a second execution of the notebook, and a
    # kernel may split one print into two stream outputs, which the HTML shows.
    for student in ("alice", "bob"):
        name = f"{LESSON}.html"
        copies = [
            g / "feedback" / student / name
            for g in (graded / "shard1", graded / "shard2")
            if (g / "feedback" / student / name).exists()
        ]
        assert len(copies) == 1, copies
        assert (out / "feedback" / student / name).read_bytes() == copies[0].read_bytes()
        assert (graded / "single" / "feedback" / student / name).exists()
    assert (out / "intake.json").read_bytes() == (graded / "single" / "intake.json").read_bytes()
    assert (out / "summary" / f"scores-{LESSON}.png").exists()
    # merging again replaces the earlier merge
    assert shards.merge([graded / "shard1", graded / "shard2"], out) == out / "grades.csv"


def _copy(src, dest):
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".work"))
    return dest


def _edit_meta(folder, **change):
    path = folder / shards.SHARD_FILE
    meta = json.loads(path.read_text())
    meta.update(change)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "missing shard 2/2"),
        ("twice", "shards overlap: .* are both shard 1/2"),
        ("release", "different lesson releases"),
        ("malformed", "malformed: not JSON"),
        ("no_shard_file", "is not a shard"),
        ("truncated_grades", "changed after its shard was graded"),
        ("other_n", "different number of shards"),
        ("overlap_rows", "who belongs to shard 1/2"),
    ],
)
def test_bad_shards_are_refused_and_nothing_is_written(graded, tmp_path, case, message):
    one, two = (
        _copy(graded / "shard1", tmp_path / "one"),
        _copy(graded / "shard2", tmp_path / "two"),
    )
    folders = [one, two]
    if case == "missing":
        folders = [one]
    elif case == "twice":
        folders = [one, _copy(one, tmp_path / "again")]
    elif case == "release":
        meta = json.loads((two / shards.SHARD_FILE).read_text())
        _edit_meta(two, releases={k: "0" * 64 for k in meta["releases"]})
    elif case == "malformed":
        (two / shards.SHARD_FILE).write_text('{"shard": 2, "of"')
    elif case == "no_shard_file":
        (two / shards.SHARD_FILE).unlink()
    elif case == "truncated_grades":
        text = (two / "grades.csv").read_text()
        (two / "grades.csv").write_text(text[: len(text) // 2])
    elif case == "other_n":
        _edit_meta(two, of=3)
    elif case == "overlap_rows":
        # a row of shard 1's student in shard 2's file, its checksum updated to match
        rows = (one / "grades.csv").read_text().splitlines()
        (two / "grades.csv").write_text(
            "\n".join([*(two / "grades.csv").read_text().splitlines(), rows[1]]) + "\n"
        )
        mine = json.loads((two / shards.SHARD_FILE).read_text())["mine"]
        _edit_meta(
            two,
            mine=[*mine, rows[1].split(",")[0]],
            grades_sha256=shards._sha256(two / "grades.csv"),
        )
    before = {p: p.read_bytes() for f in (one, two) for p in sorted(f.rglob("*")) if p.is_file()}
    out = tmp_path / "merged"
    with pytest.raises(shards.ShardError, match=message):
        shards.merge(folders, out)
    assert not out.exists()
    assert {p: p.read_bytes() for p in before} == before  # the shards are untouched
    # the command line says the same, without a traceback
    assert cli.main(["grade-merge", *map(str, folders), "--out", str(out)]) == 2


def test_merge_will_not_overwrite_other_files(graded, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(shards.ShardError, match="not an earlier merge"):
        shards.merge([graded / "shard1", graded / "shard2"], out)
    assert (out / "notes.txt").read_text() == "mine"
