"""EN-FR bilingual dictionaries: build them from Debian packages, split them, load them.

``xlt-course data build`` (step ``dictionary``) builds two artefacts from the same pairs:

- ``dict-en-fr``: ``dictionaries/en-fr.tsv``, EN source words, FR gold translations.
- ``dict-fr-en``: ``dictionaries/fr-en.tsv``, the same pairs the other way round, split by
  FR source words.

Each is a TSV with the header ``src tgt split origin`` (tab-separated), one row per pair and
origin, sorted by source-word frequency rank then target rank. ``origin`` is

- ``freedict``: single-word pairs of FreeDict ``eng-fra`` plus ``fra-eng`` reversed (Debian
  ``dict-freedict-eng-fra`` / ``dict-freedict-fra-eng``, GPL-2+);
- ``pivot``: EN->ES lemma pairs enumerated from Apertium's eng-spa bilingual transducer
  (``lt-print``), whose ES lemmas are translated to FR by ``apertium es-fr`` in one batch
  (Debian ``apertium-eng-spa``, ``apertium-fr-es``, GPL-2).

A pair that both sources give has two rows; :func:`load_dictionary` with ``origin="all"``
returns it once. Only pairs whose words both have vectors are kept (EN: the 200k GloVe
words of ``vectors-en``; FR: the 14,959 words of ``vectors-fr``).

The split follows MUSE (held-out source words, all their translations as gold): per
direction, the test set is 1,500 source words drawn without replacement (seed 0) from those
of frequency rank ``TEST_BAND = (5000, 20000)`` in their own vocabulary (GloVe rank for EN,
fr_core_news_md rank for FR, whose 14,959 words make the FR band 5000-14958); train is every
other source word, whatever its rank, in source-frequency order (slice it for a top-n
seed dictionary). No source word is in both
splits of one file. The two directions are split independently: a pair in the EN->FR test
set may appear reversed in the FR->EN train set (do not train on one direction and test on
the other).
"""

from __future__ import annotations

import csv
import gzip
import re
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np

from xlt_course import paths
from xlt_course.data import vectors as vectors_mod
from xlt_course.data.manifest import FIX_HINT, Manifest, atomic_path, deb_version, pypi_version
from xlt_course.errors import DataError, ResourceMissingError

Split = Literal["train", "test", "all"]
Origin = Literal["all", "freedict", "pivot"]
Lang = vectors_mod.Lang  # one definition: the dictionaries pair the languages of the vectors

DICTD_DIR = Path("/usr/share/dictd")
APERTIUM_BIDIX = Path("/usr/share/apertium/apertium-eng-spa/eng-spa.autobil.bin")
#: Debian packages the dictionaries come from (their versions go into the manifest)
DEB_PACKAGES = (
    "dict-freedict-eng-fra",
    "dict-freedict-fra-eng",
    "apertium",
    "apertium-eng-spa",
    "apertium-fr-es",
    "lttoolbox-dev",
)
LICENCE = "GPL-2+ (FreeDict); GPL-2 (Apertium eng-spa, fr-es)"
ARTEFACTS: dict[tuple[str, str], tuple[str, str]] = {
    ("en", "fr"): ("dict-en-fr", "dictionaries/en-fr.tsv"),
    ("fr", "en"): ("dict-fr-en", "dictionaries/fr-en.tsv"),
}
#: source-word frequency ranks [lo, hi) that the test words are drawn from
TEST_BAND = (5000, 20000)
N_TEST_WORDS = 1500
SEED = 0
#: Apertium POS tags of names that translate to themselves (people, organisations)
_NAME_TAGS = ("<np><ant>", "<np><cog>", "<np><al>")
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_HYPHENS = str.maketrans({"\u2010": "-", "\u2011": "-", "\u2019": "'"})
HEADER = ("src", "tgt", "split", "origin")


# ---------------------------------------------------------------------------------------------
# FreeDict


def dictd_b64(s: str) -> int:
    """Decode a dictd index number (base64 digits, most significant first)."""
    n = 0
    for c in s:
        n = n * 64 + _B64.index(c)
    return n


def clean_term(term: str) -> str | None:
    """Return a dictionary term as one clean lowercase word, or None.

    Drops domain labels (``[cul] whisk`` -> ``whisk``) and parenthesised qualifiers
    (``ash (tree)`` -> ``ash``, ``(the) present`` -> ``present``); multi-word terms, terms
    with digits or punctuation, and partly bracketed words (``(bul)rush``) give None.

    Args:
        term: one comma-separated item of a definition line.
    """
    t = term.translate(_HYPHENS)
    t = re.sub(r"\[[^\]]*\]", " ", t)
    t = re.sub(r"(?:^|\s)\([^)]*\)(?=\s|$)", " ", t).strip().lower()
    if not t or " " in t:
        return None
    return t if vectors_mod.is_clean_word(t) else None


def parse_dictd_entry(entry: str) -> tuple[str, list[str]]:
    """Split a FreeDict entry into its headword and its translations.

    An entry is ``headword /ipa/ <pos>`` then one line per sense, ``N. a, b, c`` or
    ``a, b, c``; indented lines are usage examples and are skipped.

    Returns:
        (headword, items): the headword as written and every comma-separated item, raw.
    """
    lines = entry.rstrip("\n").split("\n")
    head = re.split(r" /| <", lines[0], maxsplit=1)[0].strip()
    items: list[str] = []
    for line in lines[1:]:
        if not line.strip() or line.startswith("  "):
            continue
        body = re.sub(r"^\s*\d+\.\s*", "", line)
        items.extend(x.strip() for x in body.split(","))
    return head, items


def read_freedict(pair: str, folder: Path = DICTD_DIR) -> list[tuple[str, list[str]]]:
    """Read every entry of a FreeDict dictd dictionary.

    Args:
        pair: ``"eng-fra"`` or ``"fra-eng"``.
        folder: where ``freedict-<pair>.index`` and ``.dict.dz`` are.

    Returns:
        (headword, raw translation items) per entry, in index order.
    """
    index = folder / f"freedict-{pair}.index"
    data_file = folder / f"freedict-{pair}.dict.dz"
    if not index.exists() or not data_file.exists():
        raise ResourceMissingError(
            f"{index} or {data_file} is missing: `sudo apt-get install dict-freedict-{pair}`"
        )
    with gzip.open(data_file) as f:  # dictzip is gzip with random-access headers
        data = f.read()
    out = []
    for lineno, line in enumerate(index.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) != 3:
            raise DataError(f"{index}:{lineno}: expected 'headword<TAB>offset<TAB>size'")
        if fields[0].startswith("00database"):
            continue
        start, size = dictd_b64(fields[1]), dictd_b64(fields[2])
        out.append(parse_dictd_entry(data[start : start + size].decode("utf-8")))
    return out


def freedict_pairs(folder: Path = DICTD_DIR) -> set[tuple[str, str]]:
    """Return the single-word (en, fr) pairs of FreeDict eng-fra and fra-eng (reversed)."""
    pairs: set[tuple[str, str]] = set()
    for pair, flip in (("eng-fra", False), ("fra-eng", True)):
        for head, items in read_freedict(pair, folder):
            h = clean_term(head)
            if h is None:
                continue
            for item in items:
                t = clean_term(item)
                if t is not None:
                    pairs.add((t, h) if flip else (h, t))
    return pairs


# ---------------------------------------------------------------------------------------------
# Apertium pivot


def _require(tool: str, package: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        raise ResourceMissingError(f"`{tool}` is not installed: `sudo apt-get install {package}`")
    return exe


def _back_edges(arcs: dict[int, list[tuple[int, str, str]]]) -> set[tuple[int, int]]:
    """Return the (from, to) arcs that close a cycle, found by an iterative DFS."""
    state: dict[int, int] = {}  # 1: on the DFS stack, 2: done
    back: set[tuple[int, int]] = set()
    for root in list(arcs):
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(arcs[root]))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                continue
            dst = nxt[0]
            if state.get(dst) == 1:
                back.add((node, dst))
            elif dst not in state:
                state[dst] = 1
                stack.append((dst, iter(arcs.get(dst, []))))
    return back


def bidix_pairs(
    bin_file: Path = APERTIUM_BIDIX, max_paths: int = 1_000_000
) -> list[tuple[str, str]]:
    """Enumerate the single-word lemma pairs of an Apertium bilingual transducer.

    ``lt-print`` dumps the transducer in AT&T format; every path from state 0 to a final
    state of the main section whose input starts with a letter is one entry
    ``lemma<tags>:lemma<tags>``. Arcs that close a cycle belong to regular expressions
    (numbers), not to word entries, and are not followed. Names of people and organisations (``np``
    ``ant``/``cog``/``al``) and multi-word lemmas are dropped.

    Args:
        bin_file: e.g. ``eng-spa.autobil.bin`` (the EN->ES direction).
        max_paths: guard against a transducer that is not a word list.

    Returns:
        Sorted unique (source lemma, target lemma) pairs, lowercase.
    """
    if not bin_file.exists():
        raise ResourceMissingError(
            f"{bin_file} is missing: `sudo apt-get install apertium-eng-spa`"
        )
    exe = _require("lt-print", "lttoolbox-dev")
    att = subprocess.run([exe, str(bin_file)], capture_output=True, text=True, check=False)
    if att.returncode != 0:
        raise DataError(f"`lt-print {bin_file}` failed: {att.stderr.strip()[:300]}")
    # lt-print separates sections with "--"; the first is the main section (the word
    # entries), the others are regular expressions (centuries, "any word").
    main = att.stdout.split("\n--\n", 1)[0]
    arcs: dict[int, list[tuple[int, str, str]]] = defaultdict(list)
    finals: set[int] = set()
    for line in main.splitlines():
        f = line.split("\t")
        if len(f) >= 4:
            arcs[int(f[0])].append((int(f[1]), f[2], f[3]))
        elif f[0]:
            finals.add(int(f[0]))
    back = _back_edges(arcs)
    pairs: set[tuple[str, str]] = set()
    n_paths = 0
    stack = [(d, a, b) for d, a, b in arcs.get(0, []) if a.isalpha() and (0, d) not in back]
    while stack:
        node, inp, out = stack.pop()
        if node in finals:
            n_paths += 1
            if n_paths > max_paths:
                raise DataError(f"{bin_file} has more than {max_paths} entries: is it a bidix?")
            src, tgt = inp.replace("ε", ""), out.replace("ε", "")
            if "<" in src and "<" in tgt and not src[src.index("<") :].startswith(_NAME_TAGS):
                s, t = src[: src.index("<")].lower(), tgt[: tgt.index("<")].lower()
                if vectors_mod.is_clean_word(s) and vectors_mod.is_clean_word(t):
                    pairs.add((s, t))
        stack.extend(
            (d, inp + a, out + b) for d, a, b in arcs.get(node, []) if (node, d) not in back
        )
    return sorted(pairs)


def apertium_translate(words: list[str], pair: str = "es-fr") -> list[str | None]:
    """Translate words with Apertium in one batch; None where no single known word comes out.

    Each word is sent as its own one-word sentence (``word .``): on bare lines Apertium's
    tagger and transfer rules work across the newlines (``grande\\ncasa`` gives
    ``grande\\nmarie``, "casa" read as a verb agreeing with "grande"). Unknown words
    (marked ``*``) and generation failures (``#``, ``@``) give None.

    Args:
        words: (n,) source words.
        pair: an installed Apertium mode, e.g. ``"es-fr"``.

    Returns:
        (n,) lowercase single-word translations or None.
    """
    exe = _require("apertium", "apertium")
    text = "".join(f"{w} .\n" for w in words)
    res = subprocess.run([exe, pair], input=text, capture_output=True, text=True, check=False)
    out = res.stdout.split("\n")
    if out and out[-1] == "":
        out.pop()
    if res.returncode != 0 or len(out) != len(words):
        raise DataError(
            f"`apertium {pair}` returned {len(out)} lines for {len(words)} words "
            f"(exit {res.returncode}: {res.stderr.strip()[:300]}): "
            f"check `echo casa . | apertium {pair}`"
        )
    result: list[str | None] = []
    for line in out:
        t = re.sub(r"\s*\.\s*$", "", line).strip()
        bad = not t or any(c in t for c in "*#@") or " " in t
        result.append(None if bad else clean_term(t))
    return result


def pivot_pairs() -> tuple[set[tuple[str, str]], int]:
    """Return the (en, fr) pairs of the EN->ES->FR pivot and the number of EN-ES pairs."""
    en_es = bidix_pairs(APERTIUM_BIDIX)
    es_words = sorted({es for _, es in en_es})
    es2fr = dict(zip(es_words, apertium_translate(es_words, "es-fr"), strict=True))
    pairs = {(en, fr) for en, es in en_es if (fr := es2fr[es]) is not None}
    return pairs, len(en_es)


# ---------------------------------------------------------------------------------------------
# splitting and building


def split_by_source(
    pairs: Iterable[tuple[str, str]],
    rank: dict[str, int],
    *,
    band: tuple[int, int] = TEST_BAND,
    n_test: int = N_TEST_WORDS,
    seed: int = SEED,
) -> set[str]:
    """Choose the held-out test source words, MUSE-style.

    Args:
        pairs: (src, tgt) pairs; every src must be in ``rank``.
        rank: source word -> frequency rank (0 = most frequent).
        band: ranks [lo, hi) the test words are drawn from.
        n_test: how many source words to hold out.
        seed: seed of the draw (without replacement), so the split is reproducible.

    Returns:
        The ``n_test`` test source words; every other source word is train.
    """
    lo, hi = band
    candidates = sorted({s for s, _ in pairs if lo <= rank[s] < hi}, key=rank.__getitem__)
    if len(candidates) < n_test:
        raise DataError(
            f"only {len(candidates)} source words of rank {lo}-{hi} have translations, "
            f"fewer than the {n_test} test words: widen TEST_BAND in {__file__}"
        )
    picked = np.random.default_rng(seed).choice(len(candidates), size=n_test, replace=False)
    return {candidates[i] for i in picked}


def _version() -> str:
    """Return the versions of every package the dictionaries depend on, as one string."""
    debs = [f"{p}={deb_version(p)}" for p in DEB_PACKAGES]
    pypi = [f"{d}={pypi_version(d)}" for d in (vectors_mod.EN_DIST, vectors_mod.FR_DIST)]
    return ";".join(debs + pypi)


def build(manifest: Manifest, force: bool = False) -> None:
    """Build ``dict-en-fr`` and ``dict-fr-en`` into ``manifest.folder`` unless current.

    Builds the vectors first when they are missing (their vocabularies filter the pairs and
    their row order ranks the source words).

    Args:
        manifest: the build manifest (its folder receives ``dictionaries/``).
        force: rebuild even when the manifest says the artefacts are current.
    """
    from tqdm.auto import tqdm

    version = _version()
    names = [ARTEFACTS[k][0] for k in ARTEFACTS]
    if not force and all(manifest.is_current(n, version) for n in names):
        return
    vectors_mod.build(manifest)
    with tqdm(total=5, desc="dictionaries en-fr", unit="step") as bar:
        en = vectors_mod.load_built(manifest, "en")
        fr = vectors_mod.load_built(manifest, "fr")
        ranks = {"en": en.word2id, "fr": fr.word2id}
        bar.update()
        by_origin = {"freedict": freedict_pairs()}
        bar.update()
        by_origin["pivot"], _ = pivot_pairs()
        bar.update()
        kept = {
            origin: {(e, f) for e, f in pairs if e in ranks["en"] and f in ranks["fr"]}
            for origin, pairs in by_origin.items()
        }
        bar.update()
        for (src, tgt), (name, rel) in ARTEFACTS.items():
            flip = src == "fr"
            rows = [
                ((f, e) if flip else (e, f), origin)
                for origin, pairs in kept.items()
                for e, f in pairs
            ]
            test = split_by_source([p for p, _ in rows], ranks[src])
            rows.sort(key=lambda r: (ranks[src][r[0][0]], ranks[tgt][r[0][1]], r[1]))
            with (
                atomic_path(manifest.folder / rel) as tmp,
                open(tmp, "w", encoding="utf-8", newline="") as f,
            ):
                w = csv.writer(f, delimiter="\t", lineterminator="\n")
                w.writerow(HEADER)
                for (s, t), origin in rows:
                    w.writerow((s, t, "test" if s in test else "train", origin))
            manifest.make(name, rel, "deb:" + "+deb:".join(DEB_PACKAGES[:5]), version, LICENCE)
        bar.update()


# ---------------------------------------------------------------------------------------------
# loading


def _read_tsv(path: Path) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, line in enumerate(f, start=1):
            fields = tuple(line.rstrip("\n").split("\t"))
            if lineno == 1:
                if fields != HEADER:
                    raise DataError(f"{path}:1: expected the header {HEADER}: {FIX_HINT} --force")
                continue
            if (
                len(fields) != 4
                or fields[2] not in ("train", "test")
                or fields[3]
                not in (
                    "freedict",
                    "pivot",
                )
            ):
                raise DataError(
                    f"{path}:{lineno}: malformed row {line.rstrip()!r}: {FIX_HINT} --force"
                )
            rows.append(fields)  # type: ignore[arg-type]
    return rows


def load_dictionary(
    src: Lang,
    tgt: Lang,
    split: Split = "train",
    *,
    origin: Origin = "all",
) -> list[tuple[str, str]]:
    """Load built (src, tgt) word pairs, in source-word frequency order.

    Args:
        src: source language, ``"en"`` or ``"fr"``.
        tgt: target language, the other one.
        split: ``"train"``, ``"test"`` (1,500 held-out source words, all their gold
            translations) or ``"all"``.
        origin: ``"freedict"``, ``"pivot"`` (Apertium EN->ES->FR) or ``"all"`` (their union,
            each pair once).

    Returns:
        Unique (src word, tgt word) pairs, sorted by source rank then target rank.

    Used in: lesson 01-shared-space.
    """
    key = (src, tgt)
    if key not in ARTEFACTS:
        raise ValueError(f"no built dictionary for {src}->{tgt}: choose one of {list(ARTEFACTS)}")
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if origin not in ("all", "freedict", "pivot"):
        raise ValueError(f"origin must be 'all', 'freedict' or 'pivot', got {origin!r}")
    path = Manifest(paths.build_dir()).verify(ARTEFACTS[key][0])
    out: dict[tuple[str, str], None] = {}
    for s, t, sp, orig in _read_tsv(path):
        if (split == "all" or sp == split) and (origin == "all" or orig == origin):
            out.setdefault((s, t))
    if not out:
        raise DataError(f"{path} has no {split} pairs of origin {origin}: {FIX_HINT} --force")
    return list(out)


def load_dictionary_file(path_or_url: str | Path) -> list[tuple[str, str]]:
    """Load a MUSE-format dictionary: one ``src tgt`` pair per line (space or tab).

    Args:
        path_or_url: a local file, or an http(s) URL (downloaded once to
            ``data/cache/downloads/``), e.g. MUSE's ``en-fr.5000-6500.txt``.

    Returns:
        Unique (src, tgt) pairs in file order.

    Raises:
        DataError: the file is missing, a line is not two words (names file:line), or it
            holds no pair.
    """
    src = str(path_or_url)
    path = vectors_mod.download(src) if src.startswith(("http://", "https://")) else Path(src)
    if not path.is_file():
        raise DataError(f"{path} does not exist: pass a MUSE-format dictionary file or URL")
    out: dict[tuple[str, str], None] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2:
                    raise DataError(
                        f"{path}:{lineno}: expected 'source_word target_word', got "
                        f"{line.rstrip()[:80]!r}"
                    )
                out.setdefault((fields[0], fields[1]))
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e})") from e
    if not out:
        raise DataError(f"{path} holds no word pairs: is it the right file?")
    return list(out)


__all__ = [
    "apertium_translate",
    "bidix_pairs",
    "build",
    "clean_term",
    "freedict_pairs",
    "load_dictionary",
    "load_dictionary_file",
    "parse_dictd_entry",
    "pivot_pairs",
    "read_freedict",
    "split_by_source",
]
