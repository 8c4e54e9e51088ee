"""The SWORD zText reader and the verse-aligned Bible artefacts (data build step ``bible``)."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import pytest

from xlt_course.data import bible
from xlt_course.data.manifest import Manifest
from xlt_course.errors import DataError


def write_module(folder: Path, testaments: dict[str, list[str]]) -> Path:
    """Write a zText module with one compressed block per testament."""
    folder.mkdir(parents=True)
    for t in ("ot", "nt"):
        slots = testaments.get(t, [])
        raw = b""
        index = b""
        for slot in slots:
            data = slot.encode("utf-8")
            index += struct.pack("<IIH", 0, len(raw), len(data))
            raw += data
        packed = zlib.compress(raw)
        (folder / f"{t}.bzz").write_bytes(packed)
        (folder / f"{t}.bzs").write_bytes(struct.pack("<III", 0, len(packed), len(raw)))
        (folder / f"{t}.bzv").write_bytes(index)
    return folder


HEAD = ["", "<milestone/>"]
BOOK = (
    '<div canonical="true" osisID="Gen" sID="g1" type="book"/> <title type="main">Genesis</title>'
)
CH1 = '<chapter n="1" osisID="Gen.1" sID="Gen.1"/>'
CH2 = '<chapter n="2" osisID="Gen.2" sID="Gen.2"/>'


def test_reader_counts_verses_from_chapter_markers_and_strips_markup(tmp_path):
    slots = HEAD + [
        BOOK,
        CH1,
        'In the <w lemma="strong:H7225">beginning</w> God.<note placement="foot">Heb. x</note>',
        "",  # an empty verse keeps its number
        'Third verse.  <chapter eID="Gen.1"/>',
        CH2,
        '<title canonical="true" type="psalm">A title.</title> Body. '
        '<div canonical="true" eID="g1" osisID="Gen" type="book"/>',
    ]
    folder = write_module(tmp_path / "mod", {"ot": slots})
    verses = bible.read_module(folder)
    assert verses == {
        "Gen.1.1": "In the beginning God.",
        "Gen.1.3": "Third verse.",
        "Gen.2.1": "A title. Body.",
    }


def test_missing_module_names_the_debian_package(tmp_path):
    with pytest.raises(DataError, match="sword-text-kjv"):
        bible.module_dir("engKJV2006eb", "sword-text-kjv", root=tmp_path)


def test_corrupt_block_is_a_clear_error(tmp_path):
    folder = write_module(tmp_path / "mod", {"ot": HEAD + [BOOK, CH1, "Some verse."]})
    data = bytearray((folder / "ot.bzz").read_bytes())
    data[2:6] = b"\x00\x00\x00\x00"
    (folder / "ot.bzz").write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt"):
        bible.read_module(folder)


def test_truncated_index_is_a_clear_error(tmp_path):
    folder = write_module(tmp_path / "mod", {"ot": HEAD + [BOOK, CH1, "Some verse."]})
    (folder / "ot.bzv").write_bytes((folder / "ot.bzv").read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated"):
        bible.read_module(folder)


@pytest.mark.skipif(not shutil.which("dpkg"), reason="needs Debian's package database")
def test_built_bibles_are_verse_aligned(tmp_path):
    try:
        for src in bible.SOURCES.values():
            bible.module_dir(src.module, src.package)
    except DataError as e:
        pytest.skip(str(e))
    manifest = Manifest(tmp_path)
    bible.build(manifest)
    en, es = bible.load_bible("en", tmp_path), bible.load_bible("es", tmp_path)
    # The King James Version has 31,102 verses; the first and last are where they belong.
    assert len(en) == 31102
    assert en["Gen.1.1"].startswith("In the beginning God created")
    assert "Ámen" in es["Rev.22.21"] or "Amén" in es["Rev.22.21"]
    pairs = bible.parallel_verses(tmp_path)
    assert len(pairs) > 31000
    assert all("<" not in t and "\t" not in t for _, a, b in pairs[:2000] for t in (a, b))
    art = manifest.entries["bible-en"]
    assert art.source == "deb:sword-text-kjv" and "public domain" in art.licence
    assert manifest.verify("bible-es")


def test_load_rejects_an_unknown_language():
    with pytest.raises(ValueError, match="no Bible"):
        bible.load_bible("fr")  # type: ignore[arg-type]
