"""The `xlt-course` command line: help, environment, data verification, clear errors."""

from __future__ import annotations

import subprocess
import sys

from xlt_course import cli


def test_help_lists_every_command():
    res = subprocess.run(
        [sys.executable, "-m", "autograder.cli", "--help"], capture_output=True, text=True
    )
    assert res.returncode == 0
    for command in ("data", "lessons", "grade", "course", "env", "bli"):
        assert command in res.stdout


def test_data_verify_passes_on_built_data(built_data, capsys):
    assert cli.main(["data", "verify"]) == 0
    out = capsys.readouterr().out
    assert "ok  vectors-en" in out and "ok  encoder-weights" in out and "BAD" not in out


def test_data_verify_names_a_corrupt_artefact(built_data, tmp_path, monkeypatch, capsys):
    import shutil

    from xlt_course.data.manifest import Manifest

    copy = tmp_path / "data"
    (copy / "build").mkdir(parents=True)
    shutil.copytree(built_data.parent / "topics", copy / "topics")
    manifest = Manifest(built_data)
    for name in ("vectors-fr",):
        art = manifest.entries[name]
        dest = copy / "build" / art.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(built_data / art.path, dest)
        dest.write_bytes(dest.read_bytes()[:-100])  # truncated
    shutil.copy(built_data / "manifest.json", copy / "build" / "manifest.json")
    monkeypatch.setenv("XLT_COURSE_DATA", str(copy))
    assert cli.main(["data", "verify"]) == 1
    out = capsys.readouterr().out
    assert "BAD vectors-fr" in out and "corrupt or truncated" in out and "--force" in out


def test_env_reports_everything_ok(built_data, capsys):
    assert cli.main(["env"]) == 0
    assert "MISSING" not in capsys.readouterr().out
