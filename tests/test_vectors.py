"""Tests of xlt_course.data.vectors: the real builders, the text parser and its errors."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_build_is_noop

from xlt_course import paths
from xlt_course.data import vectors
from xlt_course.data.manifest import Manifest
from xlt_course.data.vectors import Embeddings, load_vectors, save_vec
from xlt_course.errors import DataError


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    """Build the vectors into data/build (a no-op when current) and return its manifest."""
    m = Manifest(paths.build_dir())
    vectors.build(m)
    return m


@pytest.fixture(scope="module")
def en(manifest: Manifest) -> Embeddings:
    return load_vectors("en")


@pytest.fixture(scope="module")
def fr(manifest: Manifest) -> Embeddings:
    return load_vectors("fr")


@pytest.fixture
def data_copy(manifest: Manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point XLT_COURSE_DATA at a copy of the manifest and the French vectors; return its build."""
    build = tmp_path / "data" / "build"
    rel = manifest.entries["vectors-fr"].path
    (build / rel).parent.mkdir(parents=True)
    shutil.copy(manifest.folder / rel, build / rel)
    shutil.copy(manifest.file, build / "manifest.json")
    monkeypatch.setenv("XLT_COURSE_DATA", str(tmp_path / "data"))
    return build


def test_built_english(en: Embeddings) -> None:
    assert (len(en), en.dim) == (200_000, 50)
    assert en.vectors.dtype == np.float32
    assert en.words[:4] == ["the", ",", ".", "of"]  # GloVe rows are in frequency order
    assert len(set(en.words)) == len(en)
    assert en.word2id["king"] < en.word2id["monarch"]


def test_built_french_recovers_the_real_words(fr: Embeddings) -> None:
    assert fr.dim == 300 and 14_500 < len(fr) < 15_500
    assert fr.words[:3] == ["de", "la", "et"]
    assert all(vectors.is_clean_word(w) for w in fr.words)
    assert len(set(fr.words)) == len(fr)
    unit = fr.vectors / np.linalg.norm(fr.vectors, axis=1, keepdims=True)

    def neighbours(word: str) -> list[str]:
        sims = unit @ unit[fr.word2id[word]]
        return [fr.words[i] for i in np.argsort(-sims)[1:9]]

    # a wrong row->word recovery (e.g. keys sorted by hash) gives unrelated neighbours
    assert {"prince", "monarque", "souverain"} & set(neighbours("roi"))
    assert {"lyon", "marseille", "toulouse"} & set(neighbours("paris"))
    assert {"chien", "chaton", "chats"} & set(neighbours("chat"))


def test_second_build_is_a_noop(manifest: Manifest) -> None:
    assert_build_is_noop(vectors.build, manifest, ("vectors-en", "vectors-fr"))


def test_embeddings_helpers(en: Embeddings) -> None:
    top = en.top(1000)
    assert (len(top), top.dim) == (1000, 50) and top.words == en.words[:1000]
    assert top.word2id is top.word2id  # cached
    assert np.array_equal(top["the"], en.vectors[0])
    assert len(en.top(10**9)) == len(en)
    with pytest.raises(ValueError, match="n >= 1"):
        en.top(0)
    with pytest.raises(ValueError, match="shape"):
        Embeddings("en", ["a", "b"], np.zeros((3, 2), dtype=np.float32))
    assert len(load_vectors("en", max_words=500)) == 500


def test_vec_file_goes_through_the_real_parser(en: Embeddings, tmp_path: Path) -> None:
    small = en.top(2000)
    path = save_vec(small, tmp_path / "wiki.en.vec")
    assert path.read_text(encoding="utf-8").split("\n", 1)[0] == "2000 50"
    back = load_vectors(path)
    assert back.lang == "en" and back.words == small.words
    np.testing.assert_allclose(back.vectors, small.vectors, rtol=1e-5, atol=1e-6)
    assert load_vectors(str(path), max_words=10).words == small.words[:10]


def test_glove_txt_without_header(tmp_path: Path) -> None:
    path = tmp_path / "glove.txt"
    path.write_text("the 0.1 0.2 0.3\nof -1 2 3e-2\nnew york 1 1 1\n", encoding="utf-8")
    emb = load_vectors(path, lang="en")
    assert emb.words == ["the", "of", "new york"] and emb.dim == 3 and emb.lang == "en"
    np.testing.assert_allclose(emb.vectors[1], [-1, 2, 0.03], rtol=1e-6)


GOOD = "3 3\nun 0.1 0.2 0.3\ndeux 0.4 0.5 0.6\ntrois 0.7 0.8 0.9\n"


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        (GOOD.replace("0.4 0.5", "nan 0.5"), ":3", "NaN or inf"),
        (GOOD.replace("0.4 0.5", "inf 0.5"), ":3", "NaN or inf"),
        (GOOD.replace("0.4 0.5 0.6", "0 0 0"), ":3", "all zeros"),
        (GOOD.replace("0.4 0.5 0.6", "0.4 0.5"), ":3", "expected a word and 3 numbers"),
        (GOOD.replace("0.4 0.5 0.6", "0.4 0.5 0.6 0.7"), ":3", "expected a word and 3 numbers"),
        (GOOD.replace("0.4 0.5 0.6", "0.4 x 0.6"), ":3", "expected a word and 3 numbers"),
        (GOOD.replace("trois", "un"), ":4", "duplicate word 'un'"),
        (GOOD[: GOOD.index("0.8")], ":4", "expected a word and 3 numbers"),  # cut mid-line
        (GOOD[: GOOD.index("trois")], "", "announces 3 words but 2"),  # cut after a line
        ("", "", "is empty"),
        ("3 3\n", "", "announces 3 words but 0"),
        ("0 3\n", "", "no word vectors"),
    ],
)
def test_bad_vec_files_raise_data_error(tmp_path: Path, text: str, where: str, what: str) -> None:
    path = tmp_path / "bad.vec"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=what) as err:
        load_vectors(path)
    assert f"{path}{where}" in str(err.value)


def test_truncated_artefact_raises_data_error(data_copy: Path) -> None:
    target = next((data_copy / "vectors").iterdir())
    with open(target, "r+b") as f:
        f.truncate(target.stat().st_size // 2)
    with pytest.raises(DataError, match="corrupt or truncated") as err:
        load_vectors("fr")
    assert str(target) in str(err.value) and "--force" in str(err.value)


def test_checksum_mismatch_raises_data_error(data_copy: Path) -> None:
    target = next((data_copy / "vectors").iterdir())
    with open(target, "r+b") as f:
        f.seek(-100, 2)
        byte = f.read(1)
        f.seek(-100, 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(DataError, match="sha256") as err:
        load_vectors("fr")
    assert str(target) in str(err.value) and "xlt-course data build" in str(err.value)


def test_missing_artefact_and_unknown_sources(data_copy: Path) -> None:
    with pytest.raises(DataError, match="is missing although"):
        load_vectors("en")  # the copy holds only the French vectors' file
    with pytest.raises(DataError, match="no built vectors for 'de'"):
        load_vectors("de")
    with pytest.raises(DataError, match="does not exist"):
        load_vectors(data_copy / "nope.vec")
    with pytest.raises(ValueError, match="max_words"):
        load_vectors("fr", max_words=0)


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serve a folder over HTTP on localhost; yield (base URL, folder)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_url_is_downloaded_once_then_parsed(
    en: Embeddings,
    http_server: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XLT_COURSE_DATA", str(tmp_path / "data"))
    base, root = http_server
    save_vec(en.top(300), root / "wiki.en.vec")
    emb = load_vectors(f"{base}/wiki.en.vec")
    assert emb.words == en.words[:300] and emb.lang == "en"
    cached = tmp_path / "data" / "cache" / "downloads" / "wiki.en.vec"
    assert cached.exists()
    (root / "wiki.en.vec").unlink()  # a second load must not touch the network
    assert load_vectors(f"{base}/wiki.en.vec", max_words=5).words == en.words[:5]
    with pytest.raises(DataError, match="cannot download"):
        load_vectors(f"{base}/missing.vec")
