"""English and Spanish Bible text, verse-aligned, read from Debian's SWORD modules.

``xlt-course data build`` (step ``bible``) reads two public-domain translations that Debian
packages as SWORD zText modules and writes one TSV per language:

- ``bible-en``: ``bible/en-kjv.tsv``, the King James Version (Debian ``sword-text-kjv``);
- ``bible-es``: ``bible/es-rv1909.tsv``, the Reina-Valera 1909 (Debian ``sword-text-sparv``).

Each TSV has the header ``ref text``: ``ref`` is the OSIS reference (``Gen.1.1``), ``text``
the verse with its markup removed (Strong's-number tags are dropped, their words kept;
translators' notes and headings are dropped with their content, canonical psalm titles
kept). Both modules use the KJV
versification, so one ``ref`` names the same verse in both: :func:`parallel_verses` pairs
them (about 31,100 pairs). Empty verses are not written.

A zText module is three files per testament (``ot``/``nt``): ``.bzs`` lists the compressed
blocks (offset, compressed size, raw size: three little-endian uint32), ``.bzv`` has one
entry per verse slot (block, offset in the raw block: uint32 each, size: uint16), and
``.bzz`` holds the zlib-compressed blocks. Verse slots follow the versification: a module
heading, a testament heading, then per book a book heading and per chapter a chapter
heading followed by the chapter's verses. The reader below is written from that description;
it needs no libsword.

Used in: lesson 05-multilingual-pretraining, lesson 11-token-transfer.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from xlt_course import paths
from xlt_course.data.manifest import FIX_HINT, Manifest, atomic_path, deb_version
from xlt_course.errors import DataError

BibleLang = Literal["en", "es"]

SWORD_ROOT = Path("/usr/share/sword")


@dataclass(frozen=True)
class BibleSource:
    """One SWORD module and the artefact built from it."""

    package: str
    module: str
    artefact: str
    path: str
    licence: str


SOURCES: dict[BibleLang, BibleSource] = {
    "en": BibleSource(
        package="sword-text-kjv",
        module="engKJV2006eb",
        artefact="bible-en",
        path="bible/en-kjv.tsv",
        licence="public domain (King James Version; Crown patent in the UK); packaging GPL-2+",
    ),
    "es": BibleSource(
        package="sword-text-sparv",
        module="spaRV1909eb",
        artefact="bible-es",
        path="bible/es-rv1909.tsv",
        licence="public domain (Reina-Valera 1909); packaging GPL-2+",
    ),
}

_BLOCK = struct.Struct("<III")
_VERSE = struct.Struct("<IIH")
# Markup whose content is not verse text; canonical psalm titles are kept because the
# Spanish module has them as plain text of the psalm's first verse.
_DROP_WITH_CONTENT = re.compile(
    r'<note\b[^>]*>.*?</note>|<title\b(?![^>]*canonical="true")[^>]*>.*?</title>', re.S
)
_TAG = re.compile(r"<[^>]+>")
# Start markers only: the end markers (``eID=``) carry the same osisID at a verse's end.
_BOOK = re.compile(r'<div\b(?=[^>]*\bsID=)(?=[^>]*\btype="book")[^>]*\bosisID="([^".]+)"')
_CHAPTER = re.compile(r'<chapter\b(?=[^>]*\bsID=)[^>]*\bosisID="([^"]+\.\d+)"')


def module_dir(module: str, package: str, root: Path = SWORD_ROOT) -> Path:
    """Return the data folder of a zText module, or raise a DataError naming its package."""
    folder = root / "modules" / "texts" / "ztext" / module
    missing = [
        f"{t}.{ext}"
        for t in ("ot", "nt")
        for ext in ("bzs", "bzv", "bzz")
        if not (folder / f"{t}.{ext}").is_file()
    ]
    if missing:
        raise DataError(
            f"the SWORD module {module} is missing or incomplete in {folder} "
            f"(no {', '.join(missing)}): install the Debian package {package} "
            f"(`sudo apt-get install {package}`, or `make course` as root)"
        )
    return folder


def read_slots(folder: Path, testament: Literal["ot", "nt"]) -> list[str]:
    """Return the raw OSIS markup of every verse slot of one testament, in order.

    Args:
        folder: the module's data folder (holds ``ot.bzs``, ``ot.bzv``, ``ot.bzz``, ...).
        testament: ``"ot"`` or ``"nt"``.

    Returns:
        One string per slot (headings included), ``""`` for an empty slot.

    Raises:
        DataError: a file is truncated or a block does not decompress.
    """
    bzs, bzv, bzz = ((folder / f"{testament}.{ext}").read_bytes() for ext in ("bzs", "bzv", "bzz"))
    if len(bzs) % _BLOCK.size or len(bzv) % _VERSE.size:
        raise DataError(f"{folder}/{testament}.bzs or .bzv has a truncated index: reinstall it")
    blocks = [_BLOCK.unpack_from(bzs, i) for i in range(0, len(bzs), _BLOCK.size)]
    raw: dict[int, bytes] = {}
    slots = []
    for i in range(0, len(bzv), _VERSE.size):
        block, offset, size = _VERSE.unpack_from(bzv, i)
        if size == 0:
            slots.append("")
            continue
        if block not in raw:
            if block >= len(blocks):
                raise DataError(
                    f"{folder}/{testament}.bzv points past the last block: reinstall it"
                )
            start, csize, _ = blocks[block]
            try:
                raw[block] = zlib.decompress(bzz[start : start + csize])
            except zlib.error as e:
                raise DataError(f"{folder}/{testament}.bzz block {block} is corrupt ({e})") from e
        slots.append(raw[block][offset : offset + size].decode("utf-8", errors="replace"))
    return slots


def plain_text(markup: str) -> str:
    """Strip OSIS markup from one verse: drop notes and headings, keep the words."""
    text = _TAG.sub("", _DROP_WITH_CONTENT.sub("", markup))
    return " ".join(text.split())


def read_module(folder: Path) -> dict[str, str]:
    """Read every non-empty verse of a zText module.

    Args:
        folder: the module's data folder.

    Returns:
        ``{ref: text}`` in canonical order, ``ref`` like ``"Gen.1.1"``.
    """
    verses: dict[str, str] = {}
    for testament in ("ot", "nt"):
        chapter: str | None = None
        verse = 0
        for slot in read_slots(folder, testament):
            if _BOOK.search(slot):
                chapter = None
                continue
            if m := _CHAPTER.search(slot):
                chapter, verse = m.group(1), 0
                continue
            if chapter is None:
                continue  # module and testament headings
            verse += 1
            if text := plain_text(slot):
                verses[f"{chapter}.{verse}"] = text
    if not verses:
        raise DataError(f"{folder} holds no verses: reinstall its Debian package")
    return verses


def build(manifest: Manifest, force: bool = False) -> None:
    """Build ``bible-en`` and ``bible-es`` into ``manifest.folder`` unless current.

    Args:
        manifest: the build manifest (its folder receives ``bible/``).
        force: rebuild even when the manifest says the artefacts are current.
    """
    for src in SOURCES.values():
        version = deb_version(src.package)
        if not force and manifest.is_current(src.artefact, version):
            continue
        verses = read_module(module_dir(src.module, src.package))
        final = manifest.folder / src.path
        lines = ["ref\ttext"] + [f"{ref}\t{text}" for ref, text in verses.items()]
        with atomic_path(final) as tmp:
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        manifest.make(src.artefact, src.path, f"deb:{src.package}", version, src.licence)


def load_bible(lang: BibleLang, folder: Path | None = None) -> dict[str, str]:
    """Load one built Bible as ``{ref: text}`` in canonical order.

    Args:
        lang: ``"en"`` (King James Version) or ``"es"`` (Reina-Valera 1909).
        folder: the build folder (default: ``data/build``).

    Returns:
        About 31,100 verses, ``ref`` like ``"Gen.1.1"``.
    """
    if lang not in SOURCES:
        raise ValueError(f"no Bible for {lang!r}: choose one of {sorted(SOURCES)}")
    manifest = Manifest(folder or paths.build_dir())
    path = manifest.verify(SOURCES[lang].artefact)
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
    if not rows or rows[0] != ["ref", "text"] or any(len(r) != 2 for r in rows[1:]):
        raise DataError(f"{path} is not a `ref<TAB>text` table: {FIX_HINT} --force")
    return dict(rows[1:])


def parallel_verses(folder: Path | None = None) -> list[tuple[str, str, str]]:
    """Return ``(ref, en, es)`` for every verse present in both Bibles, in canonical order."""
    en, es = load_bible("en", folder), load_bible("es", folder)
    return [(ref, text, es[ref]) for ref, text in en.items() if ref in es]
