"""Build and load the parallel "software topic" classification dataset.

Each item is one user-facing message of a Debian program (an English gettext ``msgid``) with
its human translations (the ``msgstr`` of the same message in other locales' ``.mo``
catalogues). The label is the program family the message comes from, e.g. ``database``
for PostgreSQL's tools or ``packages`` for apt and dpkg. Because every test item carries
human translations in eight languages, the same test set measures zero-shot cross-lingual
transfer from an English-trained classifier to each language.

The set is built by :func:`build_topics` from the ``.mo`` files under
``/usr/share/locale/<locale>/LC_MESSAGES/`` and committed in ``data/topics/`` with its own
manifest, because minimal images strip those catalogues. :func:`load_topics` and
:func:`load_parallel` read the committed files after checking their sha256.

Layout of ``data/topics/``: ``train.jsonl``, ``dev.jsonl``, ``test.jsonl`` (one item per
line, sorted by id: ``{"id", "label", "package", "catalogue", "text": {lang: str | null}}``,
``null`` marking a missing translation), ``labels.json``, ``sources.json`` (every catalogue
file read, its Debian package, version and licence), ``README.md`` and ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from xlt_course.data.manifest import Manifest, atomic_path, deb_version, sha256_file
from xlt_course.errors import DataError
from xlt_course.paths import data_dir

Split = Literal["train", "dev", "test"]
SPLITS: tuple[Split, ...] = ("train", "dev", "test")

#: ISO 639-1 code -> the gettext locale whose catalogues provide it.
LOCALES: dict[str, str] = {
    "fr": "fr",
    "de": "de",
    "es": "es",
    "it": "it",
    "ru": "ru",
    "zh": "zh_CN",
    "ja": "ja",
    "pt": "pt_BR",
}
#: Every language in the data, English (the msgids) first.
LANGUAGES: tuple[str, ...] = ("en", *LOCALES)

LOCALE_ROOT = Path("/usr/share/locale")
DPKG_INFO = Path("/var/lib/dpkg/info")
DOC_ROOT = Path("/usr/share/doc")

#: Items per class in the test and dev splits (both drawn from items translated in every
#: language) and the most English training items kept per class.
TEST_PER_CLASS = 150
DEV_PER_CLASS = 30
TRAIN_PER_CLASS = 450

FIX_COMMITTED = (
    "restore the committed copy with `git checkout -- data/topics` "
    "(or rebuild it with `xlt-course data topics` where the gettext catalogues are installed)"
)


@dataclass(frozen=True)
class Family:
    """One class of the dataset: a family of programs and the catalogues it is read from.

    Attributes:
        name: the label, e.g. ``"database"``.
        description: one line for the README.
        catalogues: ``.mo`` file names (without the locale folder); each must exist in every
            locale of :data:`LOCALES` so that test items can come from any of them.
        package_hint: the Debian package expected to own each catalogue, used only to
            suggest a fix when the file is missing (the real owner is read from dpkg).
    """

    name: str
    description: str
    catalogues: tuple[str, ...]
    package_hint: dict[str, str] = field(default_factory=dict)


def _pg(*names: str) -> tuple[str, ...]:
    return tuple(f"{n}-15.mo" for n in names)


FAMILIES: tuple[Family, ...] = (
    Family(
        "database",
        "PostgreSQL 15 server and client tools",
        _pg(
            "initdb",
            "pg_archivecleanup",
            "pg_config",
            "pg_controldata",
            "pg_ctl",
            "pg_resetwal",
            "pg_test_timing",
            "pgscripts",
            "plpgsql",
        ),
        {
            **dict.fromkeys(_pg("pg_config", "pgscripts"), "postgresql-client-15"),
            **dict.fromkeys(
                _pg(
                    "initdb",
                    "pg_archivecleanup",
                    "pg_controldata",
                    "pg_ctl",
                    "pg_resetwal",
                    "pg_test_timing",
                    "plpgsql",
                ),
                "postgresql-15",
            ),
        },
    ),
    Family(
        "security",
        "authentication, passwords and user accounts (PAM, shadow, adduser)",
        ("Linux-PAM.mo", "shadow.mo", "adduser.mo"),
        {"Linux-PAM.mo": "libpam-runtime", "shadow.mo": "login", "adduser.mo": "adduser"},
    ),
    Family(
        "files",
        "GNU file and text utilities",
        ("coreutils.mo", "diffutils.mo", "findutils.mo", "grep.mo", "sed.mo", "tar.mo"),
    ),
    Family(
        "gui",
        "GTK 2, GLib, GDK-Pixbuf, AT-SPI and desktop settings schemas",
        (
            "at-spi2-core.mo",
            "gdk-pixbuf.mo",
            "glib20.mo",
            "gsettings-desktop-schemas.mo",
            "gtk20-properties.mo",
            "gtk20.mo",
        ),
        {
            "at-spi2-core.mo": "at-spi2-common",
            "gdk-pixbuf.mo": "libgdk-pixbuf2.0-common",
            "glib20.mo": "libglib2.0-data",
            "gtk20-properties.mo": "libgtk2.0-common",
            "gtk20.mo": "libgtk2.0-common",
        },
    ),
    Family(
        "packages",
        "package management (apt, dpkg, PackageKit, AppStream)",
        (
            "PackageKit.mo",
            "appstream.mo",
            "apt.mo",
            "dpkg.mo",
            "libapt-pkg6.0.mo",
            "python-apt.mo",
            "software-properties.mo",
        ),
        {
            "PackageKit.mo": "packagekit",
            "python-apt.mo": "python-apt-common",
            "software-properties.mo": "software-properties-common",
        },
    ),
    Family(
        "i18n",
        "GNU gettext tools and runtime (translation catalogues, charsets)",
        ("gettext-runtime.mo", "gettext-tools.mo"),
        {"gettext-runtime.mo": "gettext-base", "gettext-tools.mo": "gettext"},
    ),
)
LABEL_NAMES: tuple[str, ...] = tuple(f.name for f in FAMILIES)


# --------------------------------------------------------------------------- .mo parsing


def read_mo(path: Path) -> dict[tuple[str | None, str], str]:
    """Read a compiled gettext catalogue into ``{(context, msgid): msgstr}``.

    Plural entries keep the singular msgid and the first translated form. The header entry
    is dropped. Unlike ``gettext.GNUTranslations`` this accepts catalogues whose header
    declares a legacy charset and never raises on undecodable bytes (they become U+FFFD).

    Args:
        path: a ``.mo`` file.

    Returns:
        A dict keyed by ``(msgctxt or None, msgid)``.

    Raises:
        DataError: the file is not a gettext catalogue or is truncated.
    """
    data = path.read_bytes()
    if len(data) < 20:
        raise DataError(f"{path} is too short to be a gettext .mo catalogue")
    magic = struct.unpack("<I", data[:4])[0]
    if magic == 0x950412DE:
        endian = "<"
    elif magic == 0xDE120495:
        endian = ">"
    else:
        raise DataError(f"{path} is not a gettext .mo catalogue (magic {magic:#x})")
    _, n, off_ids, off_strs = struct.unpack(endian + "4I", data[4:20])
    raw: list[tuple[bytes, bytes]] = []
    try:
        for i in range(n):
            id_len, id_off = struct.unpack_from(endian + "2I", data, off_ids + 8 * i)
            s_len, s_off = struct.unpack_from(endian + "2I", data, off_strs + 8 * i)
            if id_off + id_len > len(data) or s_off + s_len > len(data):
                raise struct.error("string past end of file")
            raw.append((data[id_off : id_off + id_len], data[s_off : s_off + s_len]))
    except struct.error as e:
        raise DataError(f"{path} is a truncated .mo catalogue ({e})") from e

    charset = "utf-8"
    for msgid, msgstr in raw:
        if msgid == b"":
            m = re.search(rb"charset=([-\w]+)", msgstr)
            if m and m.group(1).upper() != b"CHARSET":
                charset = m.group(1).decode("ascii")
    try:
        "".encode(charset)
    except LookupError:
        charset = "utf-8"

    out: dict[tuple[str | None, str], str] = {}
    for msgid, msgstr in raw:
        if msgid == b"":
            continue
        ctx: str | None = None
        if b"\x04" in msgid:
            c, msgid = msgid.split(b"\x04", 1)
            ctx = c.decode(charset, "replace")
        key = msgid.split(b"\x00")[0].decode(charset, "replace")
        out[(ctx, key)] = msgstr.split(b"\x00")[0].decode(charset, "replace")
    return out


# --------------------------------------------------------------------------- cleaning

# printf conversions (%s, %1$s, %-10lu, %.*s, %m), Python %(name)s and {name}/{0} fields.
_PLACEHOLDER = re.compile(
    r"%(?:\d+\$)?[-+#0']*(?:\*(?:\d+\$)?|\d+)?(?:\.(?:\*(?:\d+\$)?|\d+))?"
    r"(?:hh|h|ll|l|L|q|j|z|t|I64|I32)?[diouxXeEfFgGaAcCsSpnm]"
    r"|%\([^()\s]+\)[-+#0]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]"
    r"|\{[A-Za-z0-9_.]*(?:![rsa])?(?::[^{}]*)?\}"
)
_PLACEHOLDER_SPACED = re.compile(r"[ \t]?(?:" + _PLACEHOLDER.pattern + ")")
_TAG = re.compile(r"</?(?:b|i|u|tt|span|big|small|a|br|sub|sup|em|strong)\b[^<>]*>")
# Accelerators: "_File", "Save _As", "(_F)"/"(&F)" after CJK labels, "&File".
_ACCEL_PAREN = re.compile(r"\s?[(（][_&][^\W_][)）]")
_ACCEL = re.compile(r"(?<![\w&])[_&](?=[^\W_])")
# Quote or bracket pairs left empty once their placeholder is gone.
_EMPTY_PAIR = re.compile(
    r"''|\"\"|`'|‘’|“”|„“|‚‘|»«|«\s*»|‹\s*›|「」|『』|《》|【】|\(\s*\)|（）|\[\s*\]|<>"
)
_SPACE = re.compile(r"[\s\u00a0\u202f\u2009\u3000]+")
_SPACE_BEFORE = re.compile(r" +(?=[,)）]|\.(?: |$))")
# CJK scripts put no spaces between words: a space there is a removed placeholder's trace.
_CJK_SPACE = re.compile(r"(?<=[\u3000-\u9fff\uff00-\uffef]) (?=[\u3000-\u9fff\uff00-\uffef])")
_LEAD = re.compile(r"^[\s:：;；,，、.\-–—]+")
_TRAIL = re.compile(r"(?:[\s:：;；,，\-–—]|\.\.\.|…)+$")
_WORD = re.compile(r"[A-Za-z][A-Za-z']+")


def clean_message(text: str) -> str:
    """Turn a catalogue string into plain text the same way in every language.

    Placeholders (``%s``, ``%1$d``, ``%(name)s``, ``{0}``) are removed, not kept, so that
    they give no language-independent shortcut to a classifier; quote and bracket pairs
    they leave empty go with them. Keyboard accelerators (``_File``, ``(_F)``, ``&File``)
    and simple markup tags are removed, ``%%`` becomes ``%``, whitespace (no-break spaces
    included) collapses to single spaces, and leading/trailing ``:``, ``,``, dashes and
    ellipses are stripped.

    Args:
        text: a msgid or msgstr.

    Returns:
        The cleaned text (possibly empty).
    """
    # A placeholder takes the space before it along: "line %d: bad" -> "line: bad".
    t = _PLACEHOLDER_SPACED.sub("", text).replace("%%", "%")
    t = _TAG.sub("", t)
    t = _ACCEL_PAREN.sub("", t)
    t = _ACCEL.sub("", t)
    t = _SPACE.sub(" ", t)
    for _ in range(2):  # a pair can enclose another one: « '%s' »
        t = _EMPTY_PAIR.sub("", t)
    t = _SPACE.sub(" ", t)
    t = _SPACE_BEFORE.sub("", t)
    t = _CJK_SPACE.sub("", t)
    for _ in range(3):
        t = _TRAIL.sub("", _LEAD.sub("", t))
    return t.strip()


def is_sentence_like(msgid: str, cleaned: str) -> bool:
    """Return True when an English message reads as a short sentence or phrase.

    Kept: one line (help screens and option tables are multi-line or indented), not
    starting with ``-``, 12 to 200 characters once cleaned, at least three words of two
    or more letters, not a ``;``-separated keyword list, and letters making at least 70%
    of the non-space characters (which drops usage lines such as
    ``Usage: [OPTION]... [FILE]...`` and format-string soup).

    Args:
        msgid: the raw English msgid.
        cleaned: ``clean_message(msgid)``.
    """
    raw = msgid.strip("\n")
    if "\n" in raw or "\t" in raw or raw[:1].isspace() or raw.lstrip().startswith("-"):
        return False
    if not 12 <= len(cleaned) <= 200:
        return False
    if len(_WORD.findall(cleaned)) < 3 or re.search(r"\w;\w", cleaned):
        return False  # too few words, or a keyword list such as "app;application;tool"
    chars = cleaned.replace(" ", "")
    return sum(c.isalpha() for c in chars) >= 0.7 * len(chars)


def dedup_key(english: str) -> str:
    """Return the key under which English texts count as duplicates (case, punctuation)."""
    return " ".join(re.sub(r"[\W_]+", " ", english.casefold()).split())


def item_id(english: str) -> str:
    """Return the stable id of an item: ``"tp-"`` and 12 hex digits of its dedup key."""
    return "tp-" + hashlib.sha256(dedup_key(english).encode("utf-8")).hexdigest()[:12]


# --------------------------------------------------------------------------- provenance


def _dpkg_owners(paths: Iterable[Path]) -> dict[Path, str]:
    """Map files to the Debian package that lists them in ``/var/lib/dpkg/info/*.list``."""
    wanted = {str(p) for p in paths}
    owners: dict[Path, str] = {}
    if not DPKG_INFO.is_dir():
        return owners
    for lst in sorted(DPKG_INFO.glob("*.list")):
        package = lst.stem.split(":")[0]
        with open(lst, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.rstrip("\n")
                if line in wanted:
                    owners.setdefault(Path(line), package)
    return owners


_GNU = re.compile(
    r"GNU\s+(Lesser\s+|Library\s+)?General\s+Public\s+License.{0,200}?version\s+([\d.]+)"
    r"(.{0,80}?later)?",
    re.S | re.I,
)


def deb_licence(package: str) -> str:
    """Return the licence of a Debian package as its ``copyright`` file states it.

    Machine-readable (DEP-5) files give the ``License`` of the ``Files: *`` paragraph (the
    programs' licence, which their translations share), or the most common licence of the
    other paragraphs when that one is a documentation licence (GFDL). Free-form files give the GNU
    licences they mention, in order of first mention, marked ``(free-form)``.

    Args:
        package: a Debian package name.

    Returns:
        A short licence string, ``"unknown"`` when the file is absent.
    """
    path = DOC_ROOT / package / "copyright"
    if not path.exists():
        return "unknown (no /usr/share/doc copyright file)"
    text = path.read_text(encoding="utf-8", errors="replace")
    if text.startswith("Format:"):
        star = ""
        others: list[str] = []
        for para in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", para, re.M))
            lic = fields.get("License", "").strip()
            if "Files" not in fields or not lic:
                continue
            if fields["Files"].split() == ["*"]:
                star = star or lic
            else:
                others.append(lic)
        # Some packages (findutils) put their manual's GFDL under "Files: *": the programs'
        # licence is then the most common one of the other paragraphs.
        if star and not star.startswith("GFDL"):
            return star
        code = [lic for lic in others if not lic.startswith("GFDL")]
        if code:
            return Counter(code).most_common(1)[0][0]
        if star:
            return star
    found: list[str] = []
    for m in _GNU.finditer(text):
        kind = "LGPL" if m.group(1) else "GPL"
        name = f"{kind}-{m.group(2).rstrip('.')}{'+' if m.group(3) else ''}"
        if name not in found:
            found.append(name)
    return (", ".join(found) + " (free-form)") if found else "see copyright file (free-form)"


@dataclass(frozen=True)
class CatalogueSource:
    """One ``.mo`` file read by the builder and where it came from."""

    family: str
    catalogue: str
    lang: str
    locale: str
    path: str
    package: str
    version: str
    licence: str


def _check_catalogues(root: Path) -> list[tuple[Family, str, str, Path]]:
    """List every (family, catalogue, lang, path) needed, or raise naming the missing ones."""
    needed = [
        (fam, cat, lang, root / loc / "LC_MESSAGES" / cat)
        for fam in FAMILIES
        for cat in fam.catalogues
        for lang, loc in LOCALES.items()
    ]
    missing = [(fam, cat, p) for fam, cat, _, p in needed if not p.exists()]
    if missing:
        # dpkg still lists files that a path-exclude kept off the disk.
        std = {p: LOCALE_ROOT / p.relative_to(root) for _, _, p in missing}
        owners = _dpkg_owners(std.values())
        pkgs = sorted(
            {owners.get(std[p]) or fam.package_hint.get(cat, cat[:-3]) for fam, cat, p in missing}
        )
        shown = "\n  ".join(str(p) for _, _, p in missing[:12])
        more = f"\n  ... and {len(missing) - 12} more" if len(missing) > 12 else ""
        raise DataError(
            f"{len(missing)} gettext catalogue(s) needed for the topic dataset are missing:\n"
            f"  {shown}{more}\n"
            f"Install them with `sudo apt-get install --reinstall {' '.join(pkgs)}` "
            "(minimal images exclude /usr/share/locale: remove the `path-exclude` line for it "
            "under /etc/dpkg/dpkg.cfg.d/ first). The committed data/topics/ does not need them."
        )
    return needed


# --------------------------------------------------------------------------- building


@dataclass
class _Candidate:
    label: str
    catalogue: str
    package: str
    msgid: str
    context: str
    text: dict[str, str | None]

    @property
    def n_translated(self) -> int:
        return sum(v is not None for k, v in self.text.items() if k != "en")


def _collect(
    needed: list[tuple[Family, str, str, Path]], packages: dict[str, str]
) -> list[_Candidate]:
    """Read every catalogue and return one candidate per sentence-like (catalogue, msgid).

    Args:
        needed: (family, catalogue, lang, path) for every file to read.
        packages: catalogue file name -> the Debian package recorded for its items.
    """
    from tqdm.auto import tqdm

    by_cat: dict[tuple[str, str], dict[str, dict[tuple[str | None, str], str]]] = {}
    for fam, cat, lang, path in tqdm(needed, desc="reading .mo catalogues", leave=False):
        by_cat.setdefault((fam.name, cat), {})[lang] = read_mo(path)

    candidates: list[_Candidate] = []
    for (label, cat), per_lang in by_cat.items():
        package = packages[cat]
        keys = sorted(set().union(*per_lang.values()), key=lambda k: (k[1], k[0] or ""))
        for ctx, msgid in keys:
            en = clean_message(msgid)
            if not is_sentence_like(msgid, en):
                continue
            text: dict[str, str | None] = {"en": en}
            for lang in LOCALES:
                raw = per_lang[lang].get((ctx, msgid))
                tr = clean_message(raw) if raw else ""
                # An untranslated copy of the English is no translation.
                text[lang] = tr if tr and dedup_key(tr) != dedup_key(en) else None
            cand = _Candidate(label, cat, package, msgid, ctx or "", text)
            if cand.n_translated:
                candidates.append(cand)
    return candidates


def _deduplicate(candidates: list[_Candidate]) -> list[_Candidate]:
    """Keep one candidate per English text; drop texts that occur in two families."""
    groups: dict[str, list[_Candidate]] = {}
    for c in candidates:
        groups.setdefault(dedup_key(c.text["en"] or ""), []).append(c)
    kept = []
    for group in groups.values():
        if len({c.label for c in group}) > 1:
            continue  # ambiguous: the same sentence in two program families
        group.sort(key=lambda c: (-c.n_translated, c.catalogue, c.context, c.msgid))
        kept.append(group[0])
    return kept


def _split(items: list[_Candidate]) -> dict[Split, list[_Candidate]]:
    """Assign items to splits, per class, in the pseudo-random order of their ids.

    Test and dev take the first items translated in every language; train takes up to
    :data:`TRAIN_PER_CLASS` of the rest (any number of translations).
    """
    out: dict[Split, list[_Candidate]] = {s: [] for s in SPLITS}
    for label in LABEL_NAMES:
        pool = sorted(
            (c for c in items if c.label == label), key=lambda c: item_id(c.text["en"] or "")
        )
        full = [c for c in pool if c.n_translated == len(LOCALES)]
        if len(full) < TEST_PER_CLASS + DEV_PER_CLASS:
            raise DataError(
                f"class {label!r} has only {len(full)} fully translated items, fewer than "
                f"{TEST_PER_CLASS + DEV_PER_CLASS}: the installed catalogues differ from the "
                "ones this dataset was designed with (Debian 12)"
            )
        test = full[:TEST_PER_CLASS]
        dev = full[TEST_PER_CLASS : TEST_PER_CLASS + DEV_PER_CLASS]
        taken = {id(c) for c in test + dev}
        out["test"] += test
        out["dev"] += dev
        out["train"] += [c for c in pool if id(c) not in taken][:TRAIN_PER_CLASS]
    for s in SPLITS:
        out[s].sort(key=lambda c: item_id(c.text["en"] or ""))
    return out


def _jsonl(items: list[_Candidate]) -> str:
    lines = []
    for c in items:
        en = c.text["en"] or ""
        obj = {
            "id": item_id(en),
            "label": c.label,
            "package": c.package,
            "catalogue": c.catalogue,
            "text": {lang: c.text[lang] for lang in LANGUAGES},
        }
        lines.append(json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n")
    return "".join(lines)


def _write(path: Path, content: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(content.encode("utf-8"))
        tmp.chmod(0o644)  # mkstemp makes it private; these are shared, committed files


def _readme(
    splits: dict[Split, list[_Candidate]],
    sources: list[CatalogueSource],
    source_version: str,
) -> str:
    """Render README.md: how the set was built, counts, baseline and licences."""
    lines = [
        "# Software-topic dataset (parallel, 9 languages)",
        "",
        "Generated by `xlt_course.data.topics.build_topics` (`xlt-course data topics`);",
        "do not edit by hand: change the builder and rebuild. Every file is listed with its",
        "sha256 in `manifest.json` (source `deb:gettext-catalogues`, version "
        f"`{source_version}`, a hash of the catalogue files, packages and versions read).",
        "",
        "## What it is",
        "Each item is one user-facing message of a Debian program: the English gettext",
        "`msgid` and its human translations (`msgstr`) from the `.mo` catalogues under",
        "`/usr/share/locale/<locale>/LC_MESSAGES/`. The label is the program family:",
        "",
        "| label | programs | catalogues |",
        "|---|---|---|",
    ]
    for fam in FAMILIES:
        cats = ", ".join(f"`{c}`" for c in fam.catalogues)
        lines.append(f"| `{fam.name}` | {fam.description} | {cats} |")
    loc = ", ".join(f"`{lang}` <- `{loc}`" for lang, loc in LOCALES.items())
    lines += [
        "",
        f"Languages (ISO 639-1 code <- gettext locale): `en` <- msgid, {loc}.",
        "",
        "## How it was built",
        "- Only catalogues present in all eight locales are used, so that any item can be",
        "  a test item. Plural messages contribute their singular form and first translation.",
        "- Every text (English and translations) is cleaned the same way: printf/Python/brace",
        "  placeholders (`%s`, `%1$d`, `%(name)s`, `{0}`) are **removed** (they would give a",
        "  language-independent shortcut) together with the quote or bracket pairs they leave",
        "  empty; keyboard accelerators (`_File`, `(_F)`, `&File`) and simple markup tags are",
        "  removed; whitespace is collapsed; leading/trailing `:`, `,`, dashes and ellipses go.",
        "- Sentence-like items only: a one-line English msgid not starting with `-`, 12-200",
        "  characters once cleaned, at least three words of two or more letters, letters at",
        "  least 70% of the non-space characters.",
        "- A translation identical to the English (case and punctuation aside) counts as",
        "  missing (`null`).",
        "- Deduplicated by English text (case and punctuation aside): a text found in two",
        "  families is dropped as ambiguous; within a family the copy with the most",
        "  translations is kept.",
        "- Item id: `tp-` + 12 hex digits of the sha256 of the normalised English text.",
        f"- Per class, in id order: the first {TEST_PER_CLASS} items translated in all eight",
        f"  languages form `test`, the next {DEV_PER_CLASS} `dev`; `train` keeps up to",
        f"  {TRAIN_PER_CLASS} of the remaining items (English always, translations where they",
        "  exist). Files are sorted by id.",
        "",
        "## Counts",
        "",
        "| split | items | " + " | ".join(LANGUAGES) + " |",
        "|---|---|" + "---|" * len(LANGUAGES),
    ]
    for s in SPLITS:
        per = [sum(c.text[lang] is not None for c in splits[s]) for lang in LANGUAGES]
        lines.append(f"| {s} | {len(splits[s])} | " + " | ".join(map(str, per)) + " |")
    lines += ["", "| label | " + " | ".join(SPLITS) + " |", "|---|" + "---|" * len(SPLITS)]
    for label in LABEL_NAMES:
        per = [sum(c.label == label for c in splits[s]) for s in SPLITS]
        lines.append(f"| `{label}` | " + " | ".join(map(str, per)) + " |")
    test_counts = Counter(c.label for c in splits["test"])
    majority = max(test_counts.values()) / len(splits["test"])
    lines += [
        "",
        f"Majority-class baseline on test: {majority:.3f} (the classes are balanced there).",
        "",
        "## Sources and licences",
        "Each message keeps the licence of the program it belongs to (translations are",
        "distributed under the same terms). Licence = the `License` of the `Files: *`",
        "paragraph of `/usr/share/doc/<package>/copyright`, or the GNU licences a free-form",
        "copyright file mentions. Every catalogue file read, per locale, is in `sources.json`.",
        "",
        "| package | Debian version | licence | catalogues |",
        "|---|---|---|---|",
    ]
    by_pkg: dict[str, list[CatalogueSource]] = {}
    for src in sources:
        by_pkg.setdefault(src.package, []).append(src)
    for pkg in sorted(by_pkg):
        first = by_pkg[pkg][0]
        cats = ", ".join(sorted({f"`{s.catalogue}`" for s in by_pkg[pkg]}))
        lines.append(f"| `{pkg}` | {first.version} | {first.licence} | {cats} |")
    return "\n".join(lines) + "\n"


def build_topics(out_dir: Path | None = None, *, locale_root: Path | None = None) -> None:
    """Build the topic dataset from the installed gettext catalogues into ``out_dir``.

    The output is byte-identical on machines with the same Debian packages: no timestamps,
    sorted keys and lines. Every file is written atomically, then recorded in
    ``out_dir/manifest.json``.

    Args:
        out_dir: target folder (default ``data_dir() / "topics"``).
        locale_root: where the locale folders are (default ``/usr/share/locale``).

    Raises:
        DataError: catalogues are missing (the message names them and the
            ``apt-get install --reinstall`` that restores them) or too few items survive.
    """
    out = Path(out_dir) if out_dir is not None else data_dir() / "topics"
    root = Path(locale_root) if locale_root is not None else LOCALE_ROOT
    needed = _check_catalogues(root)
    owners = _dpkg_owners(p for *_, p in needed)
    # dpkg names files by their /usr/share/locale path; a custom root maps back onto it.
    owners = {root / p.relative_to(LOCALE_ROOT): pkg for p, pkg in owners.items()}
    unowned = [p for *_, p in needed if p not in owners]
    if unowned:
        raise DataError(
            f"dpkg lists no package owning {unowned[0]} (and {len(unowned) - 1} more): the "
            "topic set records each catalogue's Debian package and licence; reinstall the "
            "catalogues with apt-get instead of copying them"
        )
    versions: dict[str, str] = {}
    licences: dict[str, str] = {}
    sources: list[CatalogueSource] = []
    for fam, cat, lang, path in needed:
        pkg = owners[path]
        if pkg not in versions:
            versions[pkg] = deb_version(pkg)
            licences[pkg] = deb_licence(pkg)
        rel = f"{LOCALES[lang]}/LC_MESSAGES/{cat}"
        sources.append(
            CatalogueSource(
                fam.name, cat, lang, LOCALES[lang], rel, pkg, versions[pkg], licences[pkg]
            )
        )
    sources.sort(key=lambda s: s.path)
    listing = sorted((s.path, s.package, s.version) for s in sources)
    source_version = hashlib.sha256(json.dumps(listing).encode("utf-8")).hexdigest()[:12]

    # An item's package is its French catalogue's: on Debian every locale of a catalogue
    # ships in the same package (sources.json records each file's owner regardless).
    packages = {cat: owners[p] for _, cat, lang, p in needed if lang == "fr"}
    items = _deduplicate(_collect(needed, packages))
    splits = _split(items)

    files: dict[str, str] = {f"{s}.jsonl": _jsonl(splits[s]) for s in SPLITS}
    files["labels.json"] = (
        json.dumps(
            {
                "labels": list(LABEL_NAMES),
                "families": {
                    f.name: {"description": f.description, "catalogues": list(f.catalogues)}
                    for f in FAMILIES
                },
                "languages": {"en": "msgid", **LOCALES},
            },
            ensure_ascii=False,
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    files["sources.json"] = (
        json.dumps(
            {
                "source": "deb:gettext-catalogues",
                "version": source_version,
                "locale_root": str(LOCALE_ROOT),
                "catalogues": [vars(s) for s in sources],
            },
            ensure_ascii=False,
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    files["README.md"] = _readme(splits, sources, source_version)

    for name, content in files.items():
        _write(out / name, content)
    manifest = Manifest(out)
    manifest.entries = {}
    licence = (
        "each message under its program's free licence (GPL, LGPL, BSD, PostgreSQL): see README.md"
    )
    for name in sorted(files):
        key = "topics-" + name.split(".")[0].lower()
        manifest.make(key, name, "deb:gettext-catalogues", source_version, licence)


# --------------------------------------------------------------------------- loading


@dataclass
class TopicSplit:
    """One split of the topic dataset in one language.

    Attributes:
        lang: ISO 639-1 code of ``texts``.
        texts: the n messages.
        labels: (n,) int64 class indices into ``label_names``.
        label_names: the class names, index order.
        ids: the n item ids (shared across languages: the same id is the same message).
    """

    lang: str
    texts: list[str]
    labels: np.ndarray
    label_names: tuple[str, ...]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, keep: Sequence[int] | np.ndarray) -> TopicSplit:
        """Return the items at positions ``keep`` (in that order) as a new split.

        Args:
            keep: (k,) positions into this split.

        Returns:
            A :class:`TopicSplit` of k items with the same language and label names.
        """
        keep = [int(i) for i in keep]
        return TopicSplit(
            self.lang,
            [self.texts[i] for i in keep],
            self.labels[keep],
            self.label_names,
            [self.ids[i] for i in keep],
        )


def _topics_root(root: Path | None) -> Path:
    return Path(root) if root is not None else data_dir() / "topics"


def _verified(root: Path, name: str) -> Path:
    """Return ``root/name`` after checking it against ``root/manifest.json``."""
    manifest_file = root / "manifest.json"
    if not manifest_file.exists():
        raise DataError(f"{manifest_file} is missing: {FIX_COMMITTED}")
    manifest = Manifest(root)
    art = next((a for a in manifest.entries.values() if a.path == name), None)
    path = root / name
    if art is None:
        raise DataError(f"{manifest_file} does not list {name}: {FIX_COMMITTED}")
    if not path.exists():
        raise DataError(f"{path} is missing although {manifest_file} lists it: {FIX_COMMITTED}")
    digest = sha256_file(path)
    if digest != art.sha256:
        raise DataError(
            f"{path} does not match {manifest_file} (sha256 {digest[:12]}... instead of "
            f"{art.sha256[:12]}...): the file was edited or corrupted; {FIX_COMMITTED}"
        )
    return path


def _read_items(split: Split, root: Path | None) -> tuple[list[dict], tuple[str, ...]]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = _topics_root(root)
    labels = json.loads(_verified(folder, "labels.json").read_text(encoding="utf-8"))
    path = _verified(folder, f"{split}.jsonl")
    with open(path, encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    return items, tuple(labels["labels"])


def _check_lang(lang: str) -> None:
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {LANGUAGES}, got {lang!r}")


def available_languages() -> tuple[str, ...]:
    """Return the ISO 639-1 codes present in the dataset, English first."""
    return LANGUAGES


def load_topics(
    split: Split,
    lang: str = "en",
    *,
    require_translation: bool = True,
    root: Path | None = None,
) -> TopicSplit:
    """Load one split of the topic dataset in one language.

    Args:
        split: ``"train"``, ``"dev"`` or ``"test"``. Dev and test items have human
            translations in every language; train items only where the catalogues had one.
        lang: ISO 639-1 code, one of :func:`available_languages`.
        require_translation: True keeps only the items with a human translation in
            ``lang`` (for train, fewer than in English); False keeps every item and uses
            the English text where the translation is missing (check ``ids`` against
            another call to know which).
        root: dataset folder (default ``data_dir() / "topics"``); tests point it at a copy.

    Returns:
        A :class:`TopicSplit` of n items: ``texts`` (n strings), ``labels`` (n,) int64.

    Raises:
        DataError: a file is missing or does not match ``manifest.json``.
        ValueError: unknown split or language.

    Used in: the cross-lingual classification lessons.
    """
    _check_lang(lang)
    items, label_names = _read_items(split, root)
    index = {name: i for i, name in enumerate(label_names)}
    texts: list[str] = []
    labels: list[int] = []
    ids: list[str] = []
    for item in items:
        text = item["text"].get(lang)
        if text is None:
            if require_translation:
                continue
            text = item["text"]["en"]
        texts.append(text)
        labels.append(index[item["label"]])
        ids.append(item["id"])
    return TopicSplit(lang, texts, np.asarray(labels, dtype=np.int64), label_names, ids)


def load_parallel(
    split: Split, langs: Sequence[str], *, root: Path | None = None
) -> dict[str, list[str]]:
    """Return the texts of the items translated in every language of ``langs``, aligned.

    Args:
        split: ``"train"``, ``"dev"`` or ``"test"``.
        langs: ISO 639-1 codes, e.g. ``("en", "fr")``.
        root: dataset folder (default ``data_dir() / "topics"``).

    Returns:
        ``{lang: texts}``, all lists of the same length m, position i being the same item
        (in id order) in every language.

    Used in: the tokenizer-overlap and cross-lingual retrieval lessons.
    """
    if not langs:
        raise ValueError("langs must name at least one language, e.g. ('en', 'fr')")
    for lang in langs:
        _check_lang(lang)
    items, _ = _read_items(split, root)
    rows = [it for it in items if all(it["text"].get(lang) is not None for lang in langs)]
    return {lang: [it["text"][lang] for it in rows] for lang in langs}


def majority_baseline(split: Split = "test", *, root: Path | None = None) -> float:
    """Return the accuracy of always predicting the most frequent class of ``split``."""
    items, _ = _read_items(split, root)
    counts = Counter(it["label"] for it in items)
    return max(counts.values()) / len(items)
