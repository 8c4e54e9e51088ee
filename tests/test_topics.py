"""Tests for the committed topic dataset and its builder (xlt_course.data.topics)."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from xlt_course.data import topics
from xlt_course.data.topics import (
    LABEL_NAMES,
    build_topics,
    clean_message,
    dedup_key,
    load_parallel,
    load_topics,
    majority_baseline,
    read_mo,
)
from xlt_course.errors import DataError
from xlt_course.paths import data_dir

ROOT = data_dir() / "topics"
TEST_LANGS = topics.available_languages()


def _catalogues_present() -> str | None:
    """Return why a rebuild cannot run here, or None when it can."""
    try:
        topics._check_catalogues(topics.LOCALE_ROOT)
    except DataError as e:
        return str(e).splitlines()[0]
    return None


def test_available_languages() -> None:
    assert TEST_LANGS[0] == "en"
    assert set(TEST_LANGS) == {"en", "fr", "de", "es", "it", "ru", "zh", "ja", "pt"}


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_load_english_split(split: str) -> None:
    s = load_topics(split, "en")
    assert len(s) == len(s.ids) == s.labels.shape[0] > 0
    assert s.labels.dtype == np.int64
    assert s.label_names == LABEL_NAMES
    assert s.labels.min() >= 0 and s.labels.max() < len(s.label_names)
    assert len(set(s.ids)) == len(s.ids)
    assert all(isinstance(t, str) and t.strip() for t in s.texts)


def test_test_split_is_parallel_in_every_language() -> None:
    en = load_topics("test", "en")
    assert len(en) >= 600
    assert set(np.bincount(en.labels)) == {len(en) // len(LABEL_NAMES)}  # balanced
    for lang in TEST_LANGS[1:]:
        other = load_topics("test", lang)
        assert other.ids == en.ids, lang
        assert np.array_equal(other.labels, en.labels), lang
        assert other.texts != en.texts, lang
    par = load_parallel("test", TEST_LANGS)
    assert all(len(v) == len(en) for v in par.values())
    assert par["en"] == en.texts


def test_train_translations_optional() -> None:
    en = load_topics("train", "en")
    fr = load_topics("train", "fr")
    assert 0 < len(fr) <= len(en)
    assert set(fr.ids) <= set(en.ids)
    filled = load_topics("train", "ja", require_translation=False)
    assert filled.ids == en.ids
    ja = load_topics("train", "ja")
    missing = [i for i, id_ in enumerate(en.ids) if id_ not in set(ja.ids)]
    assert missing, "some train items should lack a Japanese translation"
    assert all(filled.texts[i] == en.texts[i] for i in missing)
    pair = load_parallel("train", ["en", "ja"])
    assert len(pair["en"]) == len(pair["ja"]) == len(ja)


def test_no_english_text_in_two_splits() -> None:
    keys = {s: {dedup_key(t) for t in load_topics(s, "en").texts} for s in ("train", "dev", "test")}
    assert not keys["train"] & keys["test"]
    assert not keys["train"] & keys["dev"]
    assert not keys["dev"] & keys["test"]


def test_majority_baseline() -> None:
    labels = load_topics("test").labels
    assert majority_baseline("test") == pytest.approx(np.bincount(labels).max() / len(labels))
    assert majority_baseline("test") < 0.25


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="lang"):
        load_topics("test", "xx")
    with pytest.raises(ValueError, match="split"):
        load_topics("validation")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="langs"):
        load_parallel("test", [])


def test_corrupted_copy_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "topics"
    shutil.copytree(ROOT, copy)
    load_topics("test", "fr", root=copy)  # intact copy loads
    path = copy / "test.jsonl"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"test\.jsonl.*git checkout"):
        load_topics("test", "fr", root=copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(DataError, match="manifest.json is missing"):
        load_topics("train", root=copy)


def test_missing_catalogues_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"apt-get install --reinstall .*postgresql-15") as exc:
        build_topics(tmp_path / "out", locale_root=tmp_path / "no-locales")
    assert "initdb-15.mo" in str(exc.value)
    assert not (tmp_path / "out").exists()


def test_clean_message() -> None:
    assert clean_message("cannot open %s: %s\n") == "cannot open"
    assert clean_message("file %s, line %d: bad") == "file, line: bad"
    assert clean_message("impossible d'ouvrir « %s » : %s") == "impossible d'ouvrir"
    assert clean_message("Save _As…") == "Save As"
    assert clean_message("ファイル(_F)") == "ファイル"
    assert clean_message("目录 %s 不存在") == "目录不存在"
    assert clean_message("%1$s of %2$lu items, 100%% done") == "of items, 100% done"
    assert clean_message("Remove '%(name)s' from {0}?") == "Remove from?"


def _write_mo(path: Path, entries: dict[bytes, bytes]) -> None:
    """Write a minimal little-endian .mo file (keys sorted, as msgfmt does)."""
    keys = sorted(entries)
    n = len(keys)
    off_ids, off_strs = 28, 28 + 8 * n
    blob_start = 28 + 16 * n
    ids_table, strs_table, blob = b"", b"", b""
    for table_is_ids in (True, False):
        for k in keys:
            s = k if table_is_ids else entries[k]
            entry = struct.pack("<2I", len(s), blob_start + len(blob))
            blob += s + b"\x00"
            if table_is_ids:
                ids_table += entry
            else:
                strs_table += entry
    header = struct.pack("<7I", 0x950412DE, 0, n, off_ids, off_strs, 0, 0)
    path.write_bytes(header + ids_table + strs_table + blob)


def test_read_mo_context_plural_charset(tmp_path: Path) -> None:
    path = tmp_path / "x.mo"
    _write_mo(
        path,
        {
            b"": b"Content-Type: text/plain; charset=ISO-8859-1\n",
            b"Open file": "Ouvrir le fichier".encode("latin-1"),
            b"menu\x04Open": "Ouvrir à".encode("latin-1"),
            b"%d file\x00%d files": "%d fichier créé\x00%d fichiers créés".encode("latin-1"),
        },
    )
    cat = read_mo(path)
    assert cat[(None, "Open file")] == "Ouvrir le fichier"
    assert cat[("menu", "Open")] == "Ouvrir à"  # latin-1 decoded, context kept apart
    assert cat[(None, "%d file")] == "%d fichier créé"  # plural: singular and first form
    assert (None, "") not in cat
    (tmp_path / "bad.mo").write_bytes(b"not a catalogue at all")
    with pytest.raises(DataError, match="bad.mo"):
        read_mo(tmp_path / "bad.mo")


def test_rebuild_is_byte_identical(tmp_path: Path) -> None:
    reason = _catalogues_present()
    if reason:
        pytest.skip(f"gettext catalogues not installed here ({reason})")
    out = tmp_path / "topics"
    build_topics(out)
    committed = json.loads((ROOT / "sources.json").read_text(encoding="utf-8"))["version"]
    rebuilt = json.loads((out / "sources.json").read_text(encoding="utf-8"))["version"]
    if committed != rebuilt:
        pytest.skip(
            f"installed catalogues differ from the committed build's ({rebuilt} != {committed})"
        )
    names = sorted(p.name for p in ROOT.iterdir())
    assert sorted(p.name for p in out.iterdir()) == names
    for name in names:
        assert (out / name).read_bytes() == (ROOT / name).read_bytes(), name
