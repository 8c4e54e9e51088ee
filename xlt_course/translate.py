"""Lesson 07-translate-train-test: machine translation behind one function, and its quality.

:func:`translate` sends a list of texts through one of three kinds of system:

- ``"apertium"``: the rule-based Apertium engine of the Debian packages ``apertium-eng-spa``
  and ``apertium-fr-es`` (offline, GPL-2). EN<->ES and FR<->ES are direct modes; EN<->FR
  goes through Spanish (``eng-spa`` then ``es-fr``, ``fr-es`` then ``spa-eng``), and each
  hop is cached on its own.
- ``"dictionary"``: a word-by-word translator built from the course lexicons
  (:mod:`xlt_course.data.dictionary`): EN<->FR from the built FreeDict + pivot dictionaries,
  EN<->ES from Apertium's eng-spa / spa-eng bilingual transducers. Each word is replaced by
  one translation of its lowercase form (or of the form without a plural ``s``); unknown
  words are kept as they are and counted.
- a Hugging Face seq2seq model: a hub id (``"Helsinki-NLP/opus-mt-en-fr"``,
  ``"facebook/nllb-200-distilled-600M"``) or a local folder, loaded with
  ``AutoModelForSeq2SeqLM`` + ``AutoTokenizer``; ``{src}``/``{tgt}`` in the name are filled
  in (``"Helsinki-NLP/opus-mt-{src}-{tgt}"``). NLLB and M2M-100 get their language codes;
  a multi-target Marian model gets its ``>>fr<<`` prefix. Batched, length-sorted, on the
  GPU when there is one.

Every translation is cached on disk in ``paths.cache_dir()/translate/translations.sqlite``,
keyed by (system, version, src, tgt, text), so a lesson re-run, another lesson or the
grader never translates the same text twice; the version is the Debian package
versions for Apertium, the lexicon versions for the dictionary, and the weights for a
model folder.

Apertium batching: many texts go through one ``apertium`` process, separated by blank
lines. A blank line ends a paragraph in Apertium's text format, so its tagger and transfer
rules never join two texts; with ``-f line`` or a bare newline they do (``The house is
big`` / ``red car`` comes out as ``La casa es coche`` / ``rojo grande``). Newlines inside a
text are turned into spaces first, so the separator cannot occur inside one.

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from xlt_course import paths
from xlt_course.data.manifest import atomic_path
from xlt_course.errors import DataError, ResourceMissingError

__all__ = [
    "APERTIUM_BATCH",
    "APERTIUM_ROUTES",
    "DICTIONARY_PAIRS",
    "MODEL_BATCH",
    "NLLB_CODES",
    "TranslationRun",
    "available_pairs",
    "bleu",
    "chrf",
    "clear_model_cache",
    "dictionary_lexicon",
    "main_translate",
    "mixed_batches",
    "sentence_chrf",
    "system_version",
    "translate",
    "translate_run",
    "translate_split",
    "translate_test_proba",
]

#: Apertium modes per (src, tgt): one mode, or two through Spanish.
APERTIUM_ROUTES: dict[tuple[str, str], tuple[str, ...]] = {
    ("en", "es"): ("eng-spa",),
    ("es", "en"): ("spa-eng",),
    ("es", "fr"): ("es-fr",),
    ("fr", "es"): ("fr-es",),
    ("en", "fr"): ("eng-spa", "es-fr"),
    ("fr", "en"): ("fr-es", "spa-eng"),
}
#: language of each Apertium mode's output, to name the intermediate hop of a pivot
_MODE_PAIR = {
    "eng-spa": ("en", "es"),
    "spa-eng": ("es", "en"),
    "es-fr": ("es", "fr"),
    "fr-es": ("fr", "es"),
}
_APERTIUM_DEBS = ("apertium", "lttoolbox", "apertium-eng-spa", "apertium-fr-es")
APT_HINT = (
    "run `make apt` (as root), or `sudo apt-get install apertium apertium-eng-spa apertium-fr-es`"
)

#: (src, tgt) pairs of the word-by-word translator. FR<->ES is left out: Apertium's fr-es
#: bilingual transducer has too many paths to enumerate as a word list.
DICTIONARY_PAIRS: tuple[tuple[str, str], ...] = (
    ("en", "fr"),
    ("fr", "en"),
    ("en", "es"),
    ("es", "en"),
)
_BIDIX = {
    ("en", "es"): Path("/usr/share/apertium/apertium-eng-spa/eng-spa.autobil.bin"),
    ("es", "en"): Path("/usr/share/apertium/apertium-eng-spa/spa-eng.autobil.bin"),
}

#: FLORES-200 codes NLLB uses for the course languages.
NLLB_CODES: dict[str, str] = {
    "en": "eng_Latn", "fr": "fra_Latn", "es": "spa_Latn", "de": "deu_Latn", "it": "ita_Latn",
    "pt": "por_Latn", "ru": "rus_Cyrl", "zh": "zho_Hans", "ja": "jpn_Jpan",
}  # fmt: skip

#: default texts per Apertium process and per ``generate`` call
APERTIUM_BATCH = 500
MODEL_BATCH = 64

System = str
"""``"apertium"``, ``"dictionary"``, or a Hugging Face model id / local folder."""
Builtin = Literal["apertium", "dictionary"]

_WORD = re.compile(r"\w+(?:[-']\w+)*", re.UNICODE)
#: Apertium marks: *unknown word, #generation error, @transfer error (before a word)
_MARK = re.compile(r"(?<![\w*#@])[*#@](?=\w)")


@dataclass
class TranslationRun:
    """The translations of one :func:`translate_run` call, and what they cost.

    Attributes:
        texts: the n translations, in input order.
        system: the system asked for; ``version`` identifies its data or weights.
        src, tgt: ISO 639-1 codes.
        route: the steps taken, e.g. ``("eng-spa", "es-fr")`` for Apertium EN->FR.
        n_texts: n.
        n_chars: characters of the n source texts.
        n_words: words of the n source texts.
        new_chars: source characters actually sent to a system in this call (cache misses,
            summed over the hops of a pivot).
        calls: system invocations made in this call (Apertium processes, ``generate``
            batches, lexicon look-up passes); 0 when everything came from the cache.
        seconds: wall-clock seconds of those invocations.
        cache_hits: texts (summed over hops) found in the cache.
        unknown: words the system did not know (Apertium's ``*`` marks, missed dictionary
            look-ups, summed over hops); None for neural models, which always produce output.
    """

    texts: list[str]
    system: str
    version: str
    src: str
    tgt: str
    route: tuple[str, ...]
    n_texts: int
    n_chars: int
    n_words: int
    new_chars: int = 0
    calls: int = 0
    seconds: float = 0.0
    cache_hits: int = 0
    unknown: int | None = 0
    hops: list[TranslationRun] = field(default_factory=list, repr=False)

    @property
    def coverage(self) -> float | None:
        """Share of source words the system knew (first hop), or None for neural models."""
        first = self.hops[0] if self.hops else self
        if first.unknown is None or first.n_words == 0:
            return None
        return 1.0 - first.unknown / first.n_words


# --------------------------------------------------------------------------- helpers


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings (wrap one text in a list)")
    out = list(texts)
    bad = [i for i, t in enumerate(out) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"texts must be strings; item {bad[0]} is {type(out[bad[0]]).__name__}")
    return out


def _clean(text: str) -> str:
    """Collapse every run of whitespace (newlines included) into one space."""
    return " ".join(text.split())


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _is_model(system: str) -> bool:
    return system not in ("apertium", "dictionary")


def _model_name(system: str, src: str, tgt: str) -> str:
    return system.replace("{src}", src).replace("{tgt}", tgt)


def available_pairs(system: System = "apertium") -> list[tuple[str, str]]:
    """Return the (src, tgt) pairs a system translates.

    Args:
        system: ``"apertium"`` (the pairs whose modes are installed), ``"dictionary"``, or a
            model. For a model the answer is a claim, not a check: NLLB/M2M-100 names give
            every pair of :data:`NLLB_CODES`; a ``{src}``/``{tgt}`` template gives the same
            (whether the hub has that pair is known only when it is loaded); a Marian
            ``...-xx-yy`` name gives ``(xx, yy)``.

    Returns:
        Sorted (src, tgt) ISO 639-1 pairs.
    """
    if system == "apertium":
        modes = _apertium_modes()
        return sorted(p for p, route in APERTIUM_ROUTES.items() if all(m in modes for m in route))
    if system == "dictionary":
        return sorted(DICTIONARY_PAIRS)
    low = system.lower()
    if "{src}" in system or "nllb" in low or "m2m" in low:
        return sorted((a, b) for a in NLLB_CODES for b in NLLB_CODES if a != b)
    m = re.search(r"-([a-z]{2})-([a-z]{2})/?$", low)
    return [(m.group(1), m.group(2))] if m else []


# --------------------------------------------------------------------------- Apertium


def _apertium_exe() -> str:
    exe = shutil.which("apertium")
    if exe is None:
        raise ResourceMissingError(f"the `apertium` command is not installed: {APT_HINT}")
    return exe


@lru_cache(maxsize=1)
def _apertium_modes() -> frozenset[str]:
    res = subprocess.run([_apertium_exe(), "-l"], capture_output=True, text=True, check=False)
    return frozenset(res.stdout.split())


def _apertium_version() -> str:
    from xlt_course.data.manifest import deb_version

    try:
        return ";".join(f"{p}={deb_version(p)}" for p in _APERTIUM_DEBS)
    except DataError as e:
        raise ResourceMissingError(f"{e}; {APT_HINT}") from e


def _apertium_batch(texts: list[str], mode: str) -> tuple[list[str], list[int]]:
    """Translate non-empty one-line texts with one ``apertium`` process.

    Returns:
        (translations with Apertium's marks removed, unknown-word count per text).
    """
    exe = _apertium_exe()
    payload = "".join(t + "\n\n" for t in texts)
    res = subprocess.run([exe, mode], input=payload, capture_output=True, text=True, check=False)
    parts = res.stdout.split("\n\n")
    if parts and parts[-1].strip() == "":
        parts.pop()
    if res.returncode != 0 or len(parts) != len(texts):
        raise DataError(
            f"`apertium {mode}` returned {len(parts)} texts for {len(texts)} "
            f"(exit {res.returncode}: {res.stderr.strip()[:300]}): "
            f"check `echo 'The house is big.' | apertium {mode}`; {APT_HINT}"
        )
    out, unknown = [], []
    for p in parts:
        p = p.strip("\n")
        unknown.append(len(re.findall(r"(?<![\w*#@])\*(?=\w)", p)))
        out.append(_MARK.sub("", p).strip())
    return out, unknown


# --------------------------------------------------------------------------- dictionary


def _dictionary_version(src: str, tgt: str) -> str:
    from xlt_course.data.manifest import Manifest, deb_version

    if (src, tgt) in _BIDIX:
        return f"bidix:{_BIDIX[(src, tgt)].name}:apertium-eng-spa={deb_version('apertium-eng-spa')}"
    from xlt_course.data.dictionary import ARTEFACTS

    name = ARTEFACTS[(src, tgt)][0]
    entry = Manifest(paths.build_dir()).entries.get(name)
    if entry is None:
        raise DataError(f"the {name} dictionary is not built: run `xlt-course data build`")
    return f"{name}:{entry.sha256[:16]}"


_LEXICONS: dict[tuple[str, str], dict[str, str]] = {}


def dictionary_lexicon(src: str, tgt: str) -> dict[str, str]:
    """Return the word -> translation table of the word-by-word translator.

    EN<->FR: the built course dictionaries (``load_dictionary(src, tgt, "all")``, FreeDict
    plus the Apertium pivot), whose pairs come in source-then-target frequency order: a word
    gets its most frequent translation. EN<->ES: the lemma pairs of Apertium's bilingual
    transducer (:func:`xlt_course.data.dictionary.bidix_pairs`), which carry no frequency:
    a word gets the alphabetically first translation. Cached in memory and on disk.

    Args:
        src, tgt: a pair of :data:`DICTIONARY_PAIRS`.

    Returns:
        {lowercase source word: lowercase target word}.
    """
    key = (src, tgt)
    if key not in DICTIONARY_PAIRS:
        raise ValueError(
            f"the dictionary translator has no {src}->{tgt} lexicon: choose one of "
            f"{list(DICTIONARY_PAIRS)} (or system='apertium')"
        )
    if key in _LEXICONS:
        return _LEXICONS[key]
    version = _dictionary_version(src, tgt)
    digest = hashlib.sha256(version.encode()).hexdigest()[:16]
    file = paths.cache_dir() / "translate" / f"lexicon-{src}-{tgt}-{digest}.json"
    if file.is_file():
        table = json.loads(file.read_text(encoding="utf-8"))
    else:
        from xlt_course.data import dictionary as dmod

        table = {}
        if key in _BIDIX:
            if shutil.which("lt-print") is None:
                raise ResourceMissingError(f"`lt-print` is not installed: {APT_HINT}")
            pairs = dmod.bidix_pairs(_BIDIX[key])  # sorted: the first is alphabetical
        else:
            pairs = dmod.load_dictionary(src, tgt, "all")  # frequency order
        for s, t in pairs:
            table.setdefault(s, t)
        with atomic_path(file) as tmp:
            tmp.write_text(json.dumps(table, ensure_ascii=False), encoding="utf-8")
    _LEXICONS[key] = table
    return table


def _lookup(word: str, table: dict[str, str]) -> str | None:
    low = word.lower()
    for form in (
        low,
        low[:-1] if low.endswith("s") else None,
        low[:-2] if low.endswith("es") else None,
    ):
        if form and form in table:
            t = table[form]
            if word[:1].isupper():
                t = t[:1].upper() + t[1:]
            return t
    return None


def _dictionary_batch(texts: list[str], table: dict[str, str]) -> tuple[list[str], list[int]]:
    out, unknown = [], []
    for text in texts:
        missed = 0

        def repl(m: re.Match[str]) -> str:
            nonlocal missed
            t = _lookup(m.group(0), table)
            if t is None:
                missed += 1
                return m.group(0)
            return t

        out.append(_WORD.sub(repl, text))
        unknown.append(missed)
    return out, unknown


# --------------------------------------------------------------------------- neural models

_MODELS: dict[str, tuple[Any, Any]] = {}


def clear_model_cache() -> None:
    """Forget the seq2seq models loaded in this session."""
    _MODELS.clear()


def _load_seq2seq(name: str) -> tuple[Any, Any]:
    if name not in _MODELS:
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        from xlt_course.runtime import default_device
        from xlt_course.training import quiet_transformers, resolve_precision

        device = default_device()
        kwargs: dict[str, Any] = {}
        if device == "cuda":  # half-precision weights: bf16 where the GPU has it natively
            half = resolve_precision("auto", device)
            kwargs["dtype"] = torch.bfloat16 if half == "bf16" else torch.float16

        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
            with quiet_transformers():
                model = AutoModelForSeq2SeqLM.from_pretrained(name, **kwargs)
        except OSError as e:
            raise DataError(
                f"cannot load the translation model {name!r} ({str(e).splitlines()[0][:200]}): "
                "give a local folder with a seq2seq model, or a hub id on a machine with internet "
                "(e.g. 'Helsinki-NLP/opus-mt-{src}-{tgt}' or 'facebook/nllb-200-distilled-600M')"
            ) from e
        model.to(device).eval()
        _MODELS[name] = (tokenizer, model)
    return _MODELS[name]


def _model_version(name: str) -> str:
    from xlt_course.training import model_fingerprint

    return f"hf:{model_fingerprint(name)}:greedy"


def _lang_setup(tokenizer: Any, model: Any, src: str, tgt: str) -> tuple[str, dict[str, Any]]:
    """Return (text prefix, generate kwargs) that select the languages of a multilingual model."""
    vocab = tokenizer.get_vocab()
    for codes in (NLLB_CODES, {lang: f"__{lang}__" for lang in NLLB_CODES}):
        if codes[tgt] in vocab or f"__{codes[tgt]}__" in vocab:  # NLLB / M2M-100
            if hasattr(tokenizer, "src_lang"):
                tokenizer.src_lang = codes[src] if codes is NLLB_CODES else src
            token = codes[tgt] if codes[tgt] in vocab else f"__{codes[tgt]}__"
            return "", {"forced_bos_token_id": vocab[token]}
    if f">>{tgt}<<" in vocab:  # multi-target Marian
        return f">>{tgt}<< ", {}
    return "", {}


def _model_batch(
    texts: list[str], name: str, src: str, tgt: str, batch_size: int, progress: bool
) -> tuple[list[str], int]:
    import torch
    from tqdm.auto import tqdm

    tokenizer, model = _load_seq2seq(name)
    prefix, gen_kwargs = _lang_setup(tokenizer, model, src, tgt)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # less padding per batch
    out: list[str] = [""] * len(texts)
    device = next(model.parameters()).device
    calls = 0
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc=f"translating {src}->{tgt}", unit="batch", disable=not progress):
        idx = order[start : start + batch_size]
        enc = tokenizer(
            [prefix + texts[i] for i in idx],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=512,
        ).to(device)
        max_new = int(enc["input_ids"].shape[1] * 1.5) + 10
        with torch.inference_mode():
            gen = model.generate(
                **enc, max_new_tokens=max_new, num_beams=1, do_sample=False, **gen_kwargs
            )
        calls += 1
        for i, t in zip(idx, tokenizer.batch_decode(gen, skip_special_tokens=True), strict=True):
            out[i] = t.strip()
    return out, calls


# --------------------------------------------------------------------------- cache


class _Cache:
    """A sqlite table of translations: safe for several processes, one row per text."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=60)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS tr (key TEXT PRIMARY KEY, system TEXT, version TEXT,"
            " src TEXT, tgt TEXT, text TEXT, translation TEXT, unknown INTEGER)"
        )

    @staticmethod
    def key(system: str, version: str, src: str, tgt: str, text: str) -> str:
        from xlt_course.training import fingerprint

        return fingerprint([system, version, src, tgt, text])

    def get(self, keys: list[str]) -> dict[str, tuple[str, int | None]]:
        found: dict[str, tuple[str, int | None]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key, translation, unknown FROM tr WHERE key IN ({','.join('?' * len(chunk))})"
            found.update({k: (t, u) for k, t, u in self.db.execute(q, chunk)})
        return found

    def put(self, rows: list[tuple]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO tr VALUES (?,?,?,?,?,?,?,?)", rows)

    def close(self) -> None:
        self.db.close()


def _cache_file() -> Path:
    return paths.cache_dir() / "translate" / "translations.sqlite"


# --------------------------------------------------------------------------- translate


def system_version(system: System, src: str, tgt: str) -> str:
    """Return the string that identifies a system's data or weights in the cache key."""
    if system == "apertium":
        return _apertium_version()
    if system == "dictionary":
        return _dictionary_version(src, tgt)
    return _model_version(_model_name(system, src, tgt))


def _one_hop(
    texts: list[str],
    src: str,
    tgt: str,
    system: str,
    step: str,
    translate_fn: Callable[[list[str]], tuple[list[str], list[int] | None, int]],
    version: str,
    cache: bool,
    batch_size: int,
    progress: bool,
) -> TranslationRun:
    """Translate unique uncached texts with ``translate_fn`` in batches; fill in from the cache."""
    from tqdm.auto import tqdm

    cleaned = [_clean(t) for t in texts]
    unique = list(dict.fromkeys(t for t in cleaned if t))
    store = _Cache(_cache_file()) if cache else None
    keys = {t: _Cache.key(system, version, src, tgt, t) for t in unique}
    done: dict[str, tuple[str, int | None]] = {}
    if store is not None:
        got = store.get(list(keys.values()))
        done = {t: got[k] for t, k in keys.items() if k in got}
    todo = [t for t in unique if t not in done]
    run = TranslationRun(
        [], system, version, src, tgt, (step,), len(texts),
        sum(len(t) for t in texts), sum(len(_words(t)) for t in cleaned),
        new_chars=sum(len(t) for t in todo), cache_hits=len(done),
        unknown=None if _is_model(system) else 0,
    )  # fmt: skip
    try:
        if todo:
            t0 = time.perf_counter()
            if _is_model(system):
                outs, unk, run.calls = translate_fn(todo)
                rows_unknown: list[int | None] = [None] * len(todo)
            else:
                outs, rows_unknown = [], []
                starts = range(0, len(todo), batch_size)
                for i in tqdm(starts, desc=f"{step} {src}->{tgt}", unit="batch",
                              disable=not progress or len(starts) < 2):  # fmt: skip
                    o, unk, _ = translate_fn(todo[i : i + batch_size])
                    outs += o
                    rows_unknown += unk if unk is not None else [None] * len(o)
                    run.calls += 1
            run.seconds = time.perf_counter() - t0
            new = dict(zip(todo, zip(outs, rows_unknown, strict=True), strict=True))
            done.update(new)
            if store is not None:
                store.put(
                    [(keys[t], system, version, src, tgt, t, o, u) for t, (o, u) in new.items()]
                )
    finally:
        if store is not None:
            store.close()
    run.texts = [done[t][0] if t else "" for t in cleaned]
    if run.unknown is not None:
        run.unknown = sum(done[t][1] or 0 for t in cleaned if t)
    return run


def translate_run(
    texts: Sequence[str],
    src: str,
    tgt: str,
    system: System = "apertium",
    *,
    cache: bool = True,
    batch_size: int | None = None,
    progress: bool = True,
) -> TranslationRun:
    """Translate ``texts`` and report what it cost (see :func:`translate` for the arguments).

    Returns:
        A :class:`TranslationRun`: the translations in ``.texts`` plus calls, characters,
        seconds, cache hits and unknown words; a pivot keeps each hop in ``.hops``.

    Used in: lesson 07-translate-train-test (costs and MT quality).
    """
    texts = _check_texts(texts)
    if batch_size is None:
        batch_size = APERTIUM_BATCH if system in ("apertium", "dictionary") else MODEL_BATCH
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be None or an integer >= 1, got {batch_size!r}")
    if src == tgt:
        raise ValueError(f"src and tgt are both {src!r}: nothing to translate")
    if system == "apertium":
        route = APERTIUM_ROUTES.get((src, tgt))
        if route is None:
            raise ValueError(
                f"Apertium has no {src}->{tgt} route here: choose one of {sorted(APERTIUM_ROUTES)} "
                "(German, Italian, Russian, Chinese, Japanese and Portuguese need a neural model, "
                "e.g. system='Helsinki-NLP/opus-mt-{src}-{tgt}' on Colab)"
            )
        missing = [m for m in route if m not in _apertium_modes()]
        if missing:
            raise ResourceMissingError(
                f"the Apertium mode(s) {missing} are not installed: {APT_HINT}"
            )
        version = _apertium_version()
        hops: list[TranslationRun] = []
        current = texts
        for mode in route:
            a, b = _MODE_PAIR[mode]

            def fn(batch: list[str], mode: str = mode) -> tuple[list[str], list[int], int]:
                o, u = _apertium_batch(batch, mode)
                return o, u, 1

            hop = _one_hop(current, a, b, system, mode, fn, version, cache, batch_size, progress)
            hops.append(hop)
            current = hop.texts
        if len(hops) == 1:
            return hops[0]
        first = hops[0]
        return TranslationRun(
            current, system, version, src, tgt, route, len(texts), first.n_chars, first.n_words,
            new_chars=sum(h.new_chars for h in hops), calls=sum(h.calls for h in hops),
            seconds=sum(h.seconds for h in hops), cache_hits=sum(h.cache_hits for h in hops),
            unknown=sum(h.unknown or 0 for h in hops), hops=hops,
        )  # fmt: skip
    if system == "dictionary":
        table = dictionary_lexicon(src, tgt)

        def fn_d(batch: list[str]) -> tuple[list[str], list[int], int]:
            o, u = _dictionary_batch(batch, table)
            return o, u, 1

        version = _dictionary_version(src, tgt)
        return _one_hop(
            texts, src, tgt, system, "lexicon", fn_d, version, cache, batch_size, progress
        )
    if not isinstance(system, str) or not system:
        raise ValueError(f"system must be 'apertium', 'dictionary' or a model name, got {system!r}")
    name = _model_name(system, src, tgt)
    if src not in NLLB_CODES or tgt not in NLLB_CODES:
        raise ValueError(f"src and tgt must be among {sorted(NLLB_CODES)}, got {src!r}, {tgt!r}")

    def fn_m(batch: list[str]) -> tuple[list[str], None, int]:
        o, calls = _model_batch(batch, name, src, tgt, batch_size, progress)
        return o, None, calls

    run = _one_hop(
        texts, src, tgt, name, "generate", fn_m, _model_version(name), cache, batch_size, progress
    )
    run.system = system
    return run


def translate(
    texts: Sequence[str],
    src: str,
    tgt: str,
    system: System = "apertium",
    *,
    cache: bool = True,
    batch_size: int | None = None,
    progress: bool = True,
) -> list[str]:
    """Translate ``texts`` from ``src`` to ``tgt``.

    Whitespace runs (newlines included) become single spaces; empty texts stay empty;
    duplicates are translated once.

    Args:
        texts: n strings.
        src, tgt: ISO 639-1 codes (see :func:`available_pairs`).
        system: ``"apertium"`` (offline rule-based MT: EN<->ES, FR<->ES, EN<->FR through
            ES), ``"dictionary"`` (word-by-word from the course lexicons), or a Hugging Face
            seq2seq model id / local folder (Marian, NLLB, M2M-100; ``{src}``/``{tgt}`` are
            filled in).
        cache: read and write the on-disk cache ``paths.cache_dir()/translate/``.
        batch_size: texts per Apertium process or per ``generate`` call; None picks
            :data:`APERTIUM_BATCH` (starting the Apertium pipeline costs about 0.3-0.8 s, so
            small batches are slow) or :data:`MODEL_BATCH`.
        progress: show tqdm progress bars.

    Returns:
        The n translations, in input order.

    Raises:
        ValueError: an unknown pair or bad arguments (the message lists the pairs).
        ResourceMissingError: Apertium or a language pair is not installed (run ``make apt``).

    Used in: lessons 07-translate-train-test and 08-pivots-and-ensembles.
    """
    return translate_run(
        texts, src, tgt, system, cache=cache, batch_size=batch_size, progress=progress
    ).texts


# --------------------------------------------------------------------------- lesson helpers


def translate_split(split: Any, tgt: str, system: System = "apertium", **kwargs: Any) -> Any:
    """Machine-translate a labelled topic split, keeping its labels and item ids.

    Args:
        split: a :class:`xlt_course.data.topics.TopicSplit` in ``split.lang``.
        tgt: target language.
        system: see :func:`translate`.
        **kwargs: passed to :func:`translate` (``cache``, ``batch_size``, ``progress``).

    Returns:
        A ``TopicSplit`` of language ``tgt`` with the n translations, the same labels and the
        same ids, so ``finetune(..., batch_parallel=True)`` puts an item and its translation
        in the same batch.

    Used in: lessons 07-translate-train-test (translate-train and translate-test) and
    08-pivots-and-ensembles.
    """
    from xlt_course.data.topics import TopicSplit

    texts = translate(split.texts, split.lang, tgt, system, **kwargs)
    return TopicSplit(tgt, texts, split.labels.copy(), tuple(split.label_names), list(split.ids))


def mixed_batches(n_pairs: int, batch_size: int, rng: Any) -> list[list[int]]:
    """Cut an English set and its translation into shuffled batches mixed 1:1 by item.

    Rows ``0..n_pairs-1`` are the English items, row ``n_pairs + i`` is the translation of
    item ``i``. Every batch holds ``batch_size // 2`` items together with their translations
    (the last batch may hold fewer), so each batch is half English, half translated, and an
    item never meets its translation in another batch.

    Args:
        n_pairs: number of English items (= translated items).
        batch_size: rows per batch, even and >= 2.
        rng: a ``numpy.random.Generator`` for the item order.

    Returns:
        Batches of row indices; every row of ``0..2*n_pairs-1`` appears exactly once.

    Used in: lesson 07-translate-train-test, exercise 1 (as the reference).
    """
    if batch_size < 2 or batch_size % 2:
        raise ValueError(f"batch_size must be even and >= 2, got {batch_size}")
    order = rng.permutation(n_pairs)
    half = batch_size // 2
    return [
        [int(i) for i in chunk] + [int(i) + n_pairs for i in chunk]
        for chunk in (order[s : s + half] for s in range(0, n_pairs, half))
    ]


def translate_test_proba(
    texts: Sequence[str],
    translate_fn: Callable[[list[str]], list[str]],
    predict_fn: Callable[[list[str]], Any],
) -> Any:
    """Translate-test: translate each distinct text once, classify the translations.

    Args:
        texts: n target-language texts (may repeat).
        translate_fn: list of m texts -> list of m English translations (called once).
        predict_fn: list of k English texts -> (k, C) class probabilities (called once).

    Returns:
        (n, C) numpy probabilities, row i for ``texts[i]``.

    Used in: lesson 07-translate-train-test, exercise 2 (as the reference).
    """
    import numpy as np

    texts = _check_texts(texts)
    unique = list(dict.fromkeys(texts))
    english = list(translate_fn(unique))
    if len(english) != len(unique):
        raise ValueError(f"translate_fn returned {len(english)} texts for {len(unique)}")
    probs = np.asarray(predict_fn(english))
    row = {t: i for i, t in enumerate(unique)}
    return probs[[row[t] for t in texts]]


# --------------------------------------------------------------------------- MT quality


def _char_ngrams(text: str, n: int) -> Counter[str]:
    s = "".join(text.split())
    return Counter(s[i : i + n] for i in range(len(s) - n + 1))


def _fbeta(p: float, r: float, beta: float) -> float:
    b2 = beta * beta
    return 0.0 if p + r == 0 else (1 + b2) * p * r / (b2 * p + r)


def sentence_chrf(hypothesis: str, reference: str, n: int = 6, beta: float = 2.0) -> float:
    """Return the chrF score (0-100) of one hypothesis against one reference.

    Character n-grams of orders 1..n, whitespace removed; per order, precision = matched /
    hypothesis n-grams and recall = matched / reference n-grams, with matches clipped
    (``min`` of the two counts); chrP and chrR are their means over the orders where both
    strings have n-grams, and chrF = (1 + β²) chrP chrR / (β² chrP + chrR), so β = 2 weighs
    recall twice as much as precision (Popović, 2015, "chrF: character n-gram F-score for
    automatic MT evaluation", WMT). 0 when no order can be compared.

    Used in: lesson 07-translate-train-test, exercise 3 (as the reference).
    """
    if n < 1 or beta <= 0:
        raise ValueError(f"n must be >= 1 and beta > 0, got {n}, {beta}")
    ps, rs = [], []
    for k in range(1, n + 1):
        h, r = _char_ngrams(hypothesis, k), _char_ngrams(reference, k)
        if not h or not r:
            continue
        match = sum((h & r).values())
        ps.append(match / sum(h.values()))
        rs.append(match / sum(r.values()))
    if not ps:
        return 0.0
    return 100.0 * _fbeta(sum(ps) / len(ps), sum(rs) / len(rs), beta)


def chrf(
    hypotheses: Sequence[str], references: Sequence[str], n: int = 6, beta: float = 2.0
) -> float:
    """Return corpus chrF (0-100) with sacreBLEU (Post, 2018, WMT), one reference per text.

    Same definition as :func:`sentence_chrf`, except that matched, hypothesis and reference
    n-gram counts of each order are summed over all sentence pairs before the precisions and
    recalls are taken, so long sentences weigh more.

    Args:
        hypotheses, references: m strings each, aligned.
    """
    from sacrebleu.metrics import CHRF

    _check_aligned(hypotheses, references)
    metric = CHRF(char_order=n, word_order=0, beta=beta)
    return float(metric.corpus_score(list(hypotheses), [list(references)]).score)


def bleu(hypotheses: Sequence[str], references: Sequence[str], max_n: int = 4) -> float:
    """Return corpus BLEU (0-100) with sacreBLEU's defaults (13a tokenizer, cased, exp smoothing).

    Clipped n-gram precisions of orders 1..max_n summed over the corpus, their geometric mean
    times the brevity penalty min(1, exp(1 - r/c)) (Papineni et al., 2002, ACL; Post, 2018, WMT
    for why scores are only comparable with the same tokenizer and settings).

    Args:
        hypotheses, references: m strings each, aligned.
    """
    from sacrebleu.metrics import BLEU

    _check_aligned(hypotheses, references)
    metric = BLEU(max_ngram_order=max_n)
    return float(metric.corpus_score(list(hypotheses), [list(references)]).score)


def _check_aligned(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")


# --------------------------------------------------------------------------- command line


def main_translate(argv: Sequence[str] | None = None) -> int:
    """Translate lines of text: ``xlt-course translate SRC TGT [--system S] [FILE]``.

    Reads one text per line from FILE (or standard input), writes one translation per line
    to standard output and a cost summary to standard error.
    """
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="xlt-course translate", description=main_translate.__doc__)
    p.add_argument("src", help="source language, e.g. en")
    p.add_argument("tgt", help="target language, e.g. fr")
    p.add_argument("file", nargs="?", help="text file, one text per line (default: stdin)")
    p.add_argument(
        "--system", default="apertium", help="apertium, dictionary, or a model id/folder"
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--batch-size", type=int, default=None)
    args = p.parse_args(argv)
    if args.file:
        lines = Path(args.file).read_text(encoding="utf-8").splitlines()
    else:
        lines = sys.stdin.read().splitlines()
    try:
        run = translate_run(
            lines,
            args.src,
            args.tgt,
            args.system,
            cache=not args.no_cache,
            batch_size=args.batch_size,
            progress=sys.stderr.isatty(),
        )
    except ValueError as e:
        print(f"xlt-course translate: error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write("".join(t + "\n" for t in run.texts))
    cov = "n/a" if run.coverage is None else f"{run.coverage:.1%}"
    print(
        f"{run.n_texts} texts, {run.n_chars} characters, route {' -> '.join(run.route)}: "
        f"{run.calls} calls, {run.cache_hits} cached, {run.seconds:.2f} s, coverage {cov}",
        file=sys.stderr,
    )
    return 0
