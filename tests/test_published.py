"""Published figures carry their citation, and nothing in the project points outside it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from xlt_course import published, sampling, transfer_gap, zero_shot_transfer

ROOT = Path(__file__).resolve().parents[1]


def _numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    else:
        yield value


@pytest.mark.parametrize("name", sorted(published.FIGURES))
def test_every_figure_has_a_full_citation(name):
    fig = published.FIGURES[name]
    c = fig.citation
    assert c.authors and c.title and c.venue and c.location, name
    assert 2010 <= c.year <= 2030, name
    assert fig.description and fig.unit, name
    assert all(isinstance(x, (int, float)) for x in _numbers(fig.value)), name
    line = published.cite(name)
    assert c.authors in line and str(c.year) in line and c.location in line


def test_second_hand_figures_say_so():
    assert "second-hand" in published.cite("muse_bli_p1")
    assert "second-hand" not in published.cite("xnli_zero_shot")


def test_misquotes_name_their_origin():
    assert "multilingual.md" in published.FIGURES["parameters_mbert_readme"].note
    assert "Table 7" in published.FIGURES["parameters_xlmr_base"].note
    assert "BPE vocabulary" in published.FIGURES["sampling_alpha_xlm"].note


def test_xnli_rows_are_complete_and_match_the_paper_averages():
    # Table 1's "Avg" column: the mean of the 15 languages, to the table's rounding.
    averages = {"mBERT": 66.3, "XLM-R Base": 76.2, "XLM-R Large": 80.9}
    for model, row in published.XNLI_ZERO_SHOT.items():
        assert len(row) == 15
        assert sum(row.values()) / 15 == pytest.approx(averages[model], abs=0.051), model
    for model, avg in {"XLM-R Base": 79.1, "XLM-R Large": 83.6}.items():
        row = published.XNLI_TRANSLATE_TRAIN_ALL[model]
        assert sum(row.values()) / 15 == pytest.approx(avg, abs=0.051), model


def test_modules_reuse_the_published_figures():
    assert zero_shot_transfer.XNLI_ZERO_SHOT is published.XNLI_ZERO_SHOT
    assert transfer_gap.CC100_GIB is published.CC100_GIB
    assert sampling.PUBLISHED_ALPHA is published.SAMPLING_ALPHA
    assert all(published.CC100_GIB[lang] == v for lang, v in sampling.CC100_GIB.items())


def test_unknown_figure_names_the_known_ones():
    with pytest.raises(KeyError, match="xnli_zero_shot"):
        published.figure("xnli")


# --------------------------------------------------------------------------- no outside paths

#: Names of files and folders that exist only outside the project, and absolute paths (split
#: so that this file does not match itself).
_OUTSIDE = re.compile(
    "|".join(
        [
            r"REFERENCE_" + r"NUMBERS",
            r"RESOURCES\.md",
            r"\.\./shared",
            r"(?<![\w.])shared" + "/",
            r"(?<![\w.])/work" + r"/",
            r"(?<![\w.])/home" + "/",
            "/Users" + "/",
            r"course " + r"outline",
            r"seed/[\w-]+\.txt",
        ]
    )
)
_SCANNED = ["solutions", "lessons", "xlt_course", "tests", "autograder", "benchmarks"]
_SUFFIXES = {".py", ".ipynb", ".md", ".txt", ".toml", ".cfg", ".yml", ".yaml", ".json"}


def _project_files():
    for top in ("README.md", "CONTRIBUTING.md", "Makefile", "pyproject.toml"):
        if (ROOT / top).exists():
            yield ROOT / top
    for folder in _SCANNED:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in _SUFFIXES and "__pycache__" not in path.parts:
                yield path


def test_no_file_names_a_path_outside_the_project():
    found = []
    for path in _project_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in _OUTSIDE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            found.append(f"{path.relative_to(ROOT)}:{line}: {m.group(0)!r}")
    assert not found, "paths or documents outside the project:\n" + "\n".join(found)


def _published_numbers() -> set[float]:
    values = set()
    for fig in published.FIGURES.values():
        values.update(float(x) for x in _numbers(fig.value))
    for table in (published.XNLI_ZERO_SHOT, published.XNLI_TRANSLATE_TRAIN_ALL):
        values.update(round(sum(row.values()) / len(row), 1) for row in table.values())
    return values


def test_published_rows_in_lesson_tables_match_the_published_module():
    # A markdown table row naming a published model quotes published figures: each number in
    # it must be one that xlt_course.published holds (catches typos and stale copies; it checks
    # membership, not that the number sits in the right row).
    systems = re.compile(r"XLM-R Base|XLM-R Large|mBERT|RoBERTa")
    number = re.compile(r"(?<![\w.,])\d+\.\d+(?![\w.])")
    allowed = _published_numbers()
    bad = []
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        for i, cell in enumerate(nb["cells"]):
            if cell["cell_type"] != "markdown":
                continue
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("|") and systems.search(line):
                    wrong = [x for x in number.findall(line) if float(x) not in allowed]
                    if wrong:
                        bad.append(f"{path.name} cell {i}: {wrong} in {line!r}")
    assert not bad, "figures not in xlt_course.published:\n" + "\n".join(bad)
