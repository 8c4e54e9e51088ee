"""Lesson 05-multilingual-pretraining: a tiny bilingual BERT trained from scratch, and what emerges.

The recipe is mBERT's at toy scale: a masked language model (MLM) trained on monolingual text
of two languages, English and ``other`` (French by default), with one shared WordPiece
vocabulary and no parallel signal: the English and the French sentences come from different
items of the topic dataset (:mod:`xlt_course.data.topics`), so no sentence is ever seen with
its translation. Afterwards we measure what emerged on the held-out, human-parallel test split:

- cross-lingual retrieval: does the mean-pooled hidden state of an English sentence have its
  French translation as nearest neighbour among 900 candidates (P@1)?
- zero-shot transfer: train a topic classifier on English (a linear probe on the frozen
  sentence vectors, or fine-tuning), test it on the French test sentences.

An untrained model with the same vocabulary is the control: identical pieces share their
(random) embeddings, so it already "retrieves" part of the translations.

Ablations in the spirit of K et al. (ICLR 2020), each a :class:`PretrainConfig` in
:data:`CONFIGS`: the second language shifted by 200,000 code points, into ranges no text of
the corpus uses, so that it shares no character, hence no subword, with English
(``variant="fake"``); only whole words that occur identically in both corpora kept
(``variant="anchors"``); 1 layer instead of 4; the language sampling exponent alpha
(:mod:`xlt_course.sampling`); and the limiting case of the Fake test, English paired with
Fake-English made from other English sentences (``other="en"``).

``xlt-course pretrain CONFIG`` trains the same checkpoints outside the notebook, into
``paths.cache_dir() / "05-multilingual-pretraining" / CONFIG``; the lesson loads them from
there when they exist. Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from xlt_course import paths, published, tokenization
from xlt_course import training as tr
from xlt_course.errors import DataError
from xlt_course.sampling import language_probabilities

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

LESSON = "05-multilingual-pretraining"

Variant = Literal["shared", "fake", "anchors"]
VARIANTS: tuple[Variant, ...] = ("shared", "fake", "anchors")

#: The shift K et al. (ICLR 2020) used to create Fake-English (``published.FAKE_ENGLISH_OFFSET``,
#: read second-hand). Every character the dataset uses (at most U+FFFF)
#: lands in planes 3-4 (Latin letters in CJK Unified Ideographs Extension G, rare ideographs
#: no text of the corpus uses; some shifted characters are unassigned), a valid code point.
FAKE_OFFSET = published.FAKE_ENGLISH_OFFSET

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

#: Recorded in ``pretrain.json``; a checkpoint written by another version of the training
#: code is retrained (2: the course's own masker, :func:`xlt_course.training.mask_tokens`).
PRETRAIN_VERSION = 2

_WORD = re.compile(r"\w+|[^\w\s]")


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines one pretraining run (and so its checkpoint).

    Attributes:
        name: the checkpoint folder name under ``cache_dir()/05-multilingual-pretraining``.
        other: the second language (ISO 639-1), English being the first. ``"en"`` with
            ``variant="fake"`` is the limiting case: English and Fake-English, each
            from different items.
        variant: ``"shared"`` (plain text), ``"fake"`` (the second language shifted by
            ``offset`` code points: no shared character or subword), ``"anchors"`` (shifted
            except the words that occur identically in both corpora).
        alpha: language-sampling exponent, q_l ∝ n_l^alpha over the corpora's token counts.
        num_layers, hidden_size, num_heads, intermediate_size: the BERT encoder.
        vocab_size: WordPiece vocabulary size (an upper bound: training stops earlier when
            no pair occurs ``min_frequency`` times).
        min_frequency: fewest occurrences of a pair for WordPiece to merge it.
        block_size: tokens per training sequence ([CLS] and [SEP] included); sentences of a
            language are concatenated and cut into blocks, so each sequence is one language.
        other_share: share of the items translated in both languages whose ``other`` text
            goes into the corpus; the English text of all remaining items does, so English
            has two to three times the second language's tokens and no item is in both.
        steps, batch_size, learning_rate, warmup_steps, weight_decay, mlm_probability:
            optimisation (AdamW, linear warm-up then linear decay, BERT's 15% masking).
        dropout: dropout of the hidden states and attention (0: the runs are too short to
            overfit much, and dropout slows them down).
        seed: seeds the corpus split, the initialisation, the sampling and the masking.
        offset: the Unicode shift of the ``fake`` and ``anchors`` variants.
    """

    name: str = "base"
    other: str = "fr"
    variant: Variant = "shared"
    alpha: float = 0.7
    num_layers: int = 4
    hidden_size: int = 128
    num_heads: int = 4
    intermediate_size: int = 256
    vocab_size: int = 2000
    min_frequency: int = 2
    block_size: int = 32
    other_share: float = 0.25
    steps: int = 600
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 60
    weight_decay: float = 0.01
    mlm_probability: float = 0.15
    dropout: float = 0.0
    seed: int = 0
    offset: int = FAKE_OFFSET

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if not re.fullmatch(r"[A-Za-z0-9._-]+", self.name):
            raise ValueError(f"name {self.name!r} must be a folder name: letters, digits, . _ -")
        if self.other == "en" and self.variant != "fake":
            raise ValueError("other='en' needs variant='fake' (English and Fake-English)")
        if not 0 < self.other_share < 1:
            raise ValueError(f"other_share must be in (0, 1), got {self.other_share}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be a multiple of num_heads {self.num_heads}"
            )
        if self.block_size < 4 or self.steps < 1 or self.batch_size < 1:
            raise ValueError("block_size >= 4, steps >= 1 and batch_size >= 1 are required")

    def smoke(self) -> PretrainConfig:
        """Return the smoke-size version (a few dozen steps, a smaller model), named ``*-smoke``."""
        return dataclasses.replace(
            self,
            name=f"{self.name}-smoke",
            steps=20,
            warmup_steps=4,
            batch_size=16,
            vocab_size=1000,
            hidden_size=64,
            num_heads=2,
            intermediate_size=128,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainConfig:
        """Build a config from a dict, naming unknown keys in the error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown PretrainConfig fields {unknown}; known: {sorted(known)}")
        return cls(**data)


_BASE = PretrainConfig()

#: The runs of the lesson: the mBERT-like base and one ablation each.
CONFIGS: dict[str, PretrainConfig] = {
    c.name: c
    for c in (
        _BASE,
        dataclasses.replace(_BASE, name="fake", variant="fake"),
        dataclasses.replace(_BASE, name="anchors", variant="anchors"),
        dataclasses.replace(_BASE, name="depth1", num_layers=1),
        dataclasses.replace(_BASE, name="alpha1.0", alpha=1.0),
        dataclasses.replace(_BASE, name="alpha0.3", alpha=0.3),
        dataclasses.replace(_BASE, name="fake-en", other="en", variant="fake"),
    )
}


def get_config(spec: str, *, smoke: bool = False) -> PretrainConfig:
    """Return a predefined config by name, or one read from a JSON file.

    Args:
        spec: a key of :data:`CONFIGS` or the path of a JSON object of
            :class:`PretrainConfig` fields (missing fields take the defaults; a missing
            ``name`` is the file's stem).
        smoke: return the config's smoke-size version.
    """
    if spec in CONFIGS:
        config = CONFIGS[spec]
    elif spec.endswith(".json") or Path(spec).is_file():
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object of PretrainConfig fields")
        data.setdefault("name", path.stem)
        config = PretrainConfig.from_dict(data)
    else:
        raise ValueError(
            f"unknown pretraining config {spec!r}: use one of {sorted(CONFIGS)} or a JSON file"
        )
    return config.smoke() if smoke else config


# --------------------------------------------------------------------------- text transforms


def pretokenize(text: str) -> str:
    """Return ``text`` with words and punctuation marks separated by single spaces.

    Every language goes through this before tokenization, so that the tokenizer only splits
    on spaces and treats a shifted (``fake``) text exactly like the original.
    """
    return " ".join(_WORD.findall(text))


def fake_english(text: str, offset: int = FAKE_OFFSET) -> str:
    """Shift every character except whitespace by ``offset`` code points (K et al., 2020).

    The result shares no character with any text written below U+FFFF, keeps every space
    (so word boundaries, word order and lengths are unchanged) and is undone by
    :func:`unfake`.

    Args:
        text: any text.
        offset: the shift, > 0 and small enough that every shifted character stays a code
            point (at most U+10FFFF); 200,000 moves any text below U+FFFF out of every
            script the corpus uses.

    Returns:
        The shifted text, same length as ``text``.

    Used in: lesson 05-multilingual-pretraining, exercise 2.
    """
    top = max(map(ord, text), default=0)
    if offset <= 0 or top + offset > 0x10FFFF:
        raise ValueError(
            f"offset {offset} must be > 0 and keep the largest character U+{top:04X} below U+10FFFF"
        )
    return "".join(c if c.isspace() else chr(ord(c) + offset) for c in text)


def unfake(text: str, offset: int = FAKE_OFFSET) -> str:
    """Undo :func:`fake_english`."""
    return "".join(c if c.isspace() else chr(ord(c) - offset) for c in text)


def anchor_words(texts_a: Sequence[str], texts_b: Sequence[str]) -> frozenset[str]:
    """Return the words and punctuation marks that occur identically in both collections.

    These are the "anchors" of Pires et al. (ACL 2019) at word level: numbers, punctuation,
    names (SELinux, PostgreSQL), loanwords and technical terms, and a few accidental
    homographs (French *a*, *non*, *type*).
    """
    a = {w for t in texts_a for w in _WORD.findall(t)}
    b = {w for t in texts_b for w in _WORD.findall(t)}
    return frozenset(a & b)


def keep_anchors_only(text: str, anchors: frozenset[str], offset: int = FAKE_OFFSET) -> str:
    """Split ``text`` into words and shift every word that is not an anchor."""
    return " ".join(w if w in anchors else fake_english(w, offset) for w in _WORD.findall(text))


# --------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class PretrainCorpus:
    """The monolingual pretraining text of one config, and how to prepare evaluation text.

    Attributes:
        langs: ``("en", second)``: second is the ``other`` language, or ``"en-fake"`` for
            English + Fake-English.
        texts: ``{lang: sentences}`` as the model sees them (split into words; the second
            language transformed by the config's variant).
        ids: ``{lang: item ids}``, disjoint between the two languages.
        variant, offset: the transform of the second language.
        anchors: the words shared by the two raw corpora (used by ``variant="anchors"``).
    """

    langs: tuple[str, str]
    texts: dict[str, list[str]]
    ids: dict[str, list[str]]
    variant: Variant
    offset: int
    anchors: frozenset[str] = field(repr=False)
    other: str = "fr"

    def prepare(self, lang: str, texts: Sequence[str]) -> list[str]:
        """Return ``texts`` of ``lang`` as this corpus writes them (split, maybe shifted)."""
        if lang not in self.langs:
            raise ValueError(f"this corpus has languages {self.langs}, not {lang!r}")
        if lang == "en" or self.variant == "shared":
            return [pretokenize(t) for t in texts]
        if self.variant == "fake":
            return [fake_english(pretokenize(t), self.offset) for t in texts]
        return [keep_anchors_only(t, self.anchors, self.offset) for t in texts]

    def words(self) -> dict[str, int]:
        """Return the number of words (and punctuation marks) per language."""
        return {lang: sum(len(t.split()) for t in ts) for lang, ts in self.texts.items()}


def build_corpus(config: PretrainConfig, *, root: Path | None = None) -> PretrainCorpus:
    """Split the topic dataset's train items into disjoint English and ``other`` corpora.

    Of the train items translated into ``other``, a seeded random ``other_share`` gives its
    ``other`` text; every other train item gives its English text. Labels are not used.

    Args:
        config: the run's configuration.
        root: topic dataset folder (tests point it at a copy).

    Returns:
        A :class:`PretrainCorpus`.
    """
    from xlt_course.data.topics import load_topics

    en = load_topics("train", "en", root=root)
    ot = load_topics("train", config.other, require_translation=True, root=root)
    second = "en-fake" if config.other == "en" else config.other
    other_text = dict(zip(ot.ids, ot.texts, strict=True))
    both = [i for i in en.ids if i in other_text]
    rng = np.random.default_rng(config.seed)
    chosen = {both[j] for j in rng.permutation(len(both))[: round(config.other_share * len(both))]}
    en_ids = [i for i in en.ids if i not in chosen]
    ot_ids = [i for i in ot.ids if i in chosen]
    if set(en_ids) & set(ot_ids):  # the whole point of the lesson: keep it checked
        raise DataError("the English and the second-language corpora share items")
    en_by_id = dict(zip(en.ids, en.texts, strict=True))
    raw = {"en": [en_by_id[i] for i in en_ids], second: [other_text[i] for i in ot_ids]}
    anchors = anchor_words(raw["en"], raw[second])
    corpus = PretrainCorpus(
        ("en", second),
        {},
        {"en": en_ids, second: ot_ids},
        config.variant,
        config.offset,
        anchors,
        config.other,
    )
    corpus.texts.update({lang: corpus.prepare(lang, ts) for lang, ts in raw.items()})
    return corpus


# --------------------------------------------------------------------------- tokenizer


def train_tokenizer(
    texts: Sequence[str], vocab_size: int, *, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train a WordPiece tokenizer on space-separated text and wrap it for transformers.

    No normalisation and a whitespace-only pre-tokenizer, so that Fake text (shifted
    characters, mostly rare CJK ideographs) is segmented exactly like real text. Why not the
    XLM-R tokenizer: its 250,002 pieces would make the embedding matrix (250,002 x 128 = 32M
    parameters) dwarf the rest of the model (about 0.55M), for a corpus of 20,000 words.

    Args:
        texts: the pretraining sentences of every language (already :func:`pretokenize`).
        vocab_size: most pieces, the five special tokens included.
        min_frequency: fewest occurrences of a pair to merge it.

    Returns:
        A fast tokenizer that adds ``[CLS]`` and ``[SEP]`` around each sentence.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = tokenization.wordpiece_vocab(
        texts, vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=min_frequency
    )
    tok = Tokenizer(
        models.WordPiece(
            {piece: i for i, piece in enumerate(vocab)},
            unk_token="[UNK]",
            max_input_chars_per_word=100,
        )
    )
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


# --------------------------------------------------------------------------- training data


class BlockStream:
    """Endless blocks of one language: its sentences reshuffled every pass, packed, cut.

    Each block is ``[CLS] t_1 ... t_{block_size-2} [SEP]``; sentences are separated by
    ``[SEP]`` inside the stream, as in RoBERTa's FULL-SENTENCES packing.
    """

    def __init__(
        self,
        sentences: Sequence[Sequence[int]],
        block_size: int,
        cls_id: int,
        sep_id: int,
        rng: np.random.Generator,
    ) -> None:
        if not sentences:
            raise ValueError("a language with no sentences cannot be sampled")
        self.sentences = [list(s) for s in sentences]
        self.width = block_size - 2
        self.cls_id, self.sep_id, self.rng = cls_id, sep_id, rng
        self.buffer: list[int] = []
        self.passes = 0

    def _refill(self) -> None:
        for j in self.rng.permutation(len(self.sentences)):
            self.buffer.extend(self.sentences[j])
            self.buffer.append(self.sep_id)
        self.passes += 1

    def next_block(self) -> list[int]:
        """Return the next block of token ids (length ``block_size``)."""
        while len(self.buffer) < self.width:
            self._refill()
        chunk, self.buffer = self.buffer[: self.width], self.buffer[self.width :]
        return [self.cls_id, *chunk, self.sep_id]


@dataclass
class PretrainInfo:
    """What a pretraining run did, saved as ``pretrain.json`` next to the checkpoint."""

    config: dict[str, Any]
    tokens: dict[str, int]
    q: dict[str, float]
    sampled_tokens: dict[str, int]
    vocab_size: int
    parameters: int
    loss: list[float]
    seconds: float
    cpu_seconds: float
    device: str
    torch_threads: int
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return dataclasses.asdict(self)


def new_model(config: PretrainConfig, vocab_size: int, pad_id: int) -> PreTrainedModel:
    """Return a freshly initialised BERT masked LM of the config's size (seeded).

    Built with ``AutoModelForMaskedLM.from_config`` (a ``BertForMaskedLM``), like every MLM
    of the course.
    """
    import torch
    from transformers import AutoModelForMaskedLM, BertConfig

    torch.manual_seed(config.seed)
    bert_config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.block_size,
        type_vocab_size=1,
        pad_token_id=pad_id,
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout,
    )
    return AutoModelForMaskedLM.from_config(bert_config)


def pretrain(
    config: PretrainConfig,
    out_dir: Path | None = None,
    *,
    corpus: PretrainCorpus | None = None,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """Pretrain a tiny bilingual BERT with masked language modelling and save it.

    Each training sequence is a block of one language, that language drawn with probability
    q_l ∝ n_l^alpha (n_l: the language's tokens); masking is the course's
    :func:`xlt_course.training.mask_tokens` (15%: 80% [MASK], 10% random, 10% kept; special
    tokens never), with its own seeded generator. The step is the engine's
    (:func:`xlt_course.training.train_loop`): AdamW, linear warm-up then decay, gradients
    clipped to norm 1, mixed precision on CUDA only (bf16 where native, else fp16 with loss
    scaling).

    Args:
        config: the run.
        out_dir: the checkpoint folder (default :func:`checkpoint_dir`); written atomically
            (a temporary folder renamed into place), so a stopped run leaves no checkpoint.
        corpus: the corpus (built from ``config`` when None).
        device: torch device (default: the best available).
        progress: show a tqdm progress bar.

    Returns:
        The checkpoint folder: ``save_pretrained`` model and tokenizer, ``pretrain.json``.
    """
    import torch

    from xlt_course.runtime import default_device

    out_dir = Path(out_dir) if out_dir is not None else checkpoint_dir(config)
    device = device or default_device()
    corpus = corpus or build_corpus(config)
    start, start_cpu = time.perf_counter(), time.process_time()
    tokenizer = train_tokenizer(
        [t for lang in corpus.langs for t in corpus.texts[lang]],
        config.vocab_size,
        min_frequency=config.min_frequency,
    )
    ids = {
        lang: tokenizer(corpus.texts[lang], add_special_tokens=False)["input_ids"]
        for lang in corpus.langs
    }
    tokens = {lang: sum(map(len, s)) for lang, s in ids.items()}
    q = language_probabilities([tokens[lang] for lang in corpus.langs], config.alpha)

    rng = np.random.default_rng(config.seed)
    mask_rng = np.random.default_rng([config.seed, 1])  # masks apart from the block sampling
    streams = [
        BlockStream(
            ids[lang], config.block_size, tokenizer.cls_token_id, tokenizer.sep_token_id, rng
        )
        for lang in corpus.langs
    ]
    model = new_model(config, len(tokenizer), tokenizer.pad_token_id).to(device)
    runtime = tr.make_runtime(device)
    optimizer, schedule = tr.make_optimizer(
        model.parameters(),
        lr=config.learning_rate,
        betas=(0.9, 0.98),
        weight_decay=config.weight_decay,
        total_steps=config.steps,
        warmup_steps=config.warmup_steps,
    )
    special = np.array(sorted(tokenizer.all_special_ids))
    sampled = np.zeros(len(corpus.langs), dtype=np.int64)

    def steps(epoch: int):
        for _ in range(config.steps):
            langs = rng.choice(len(corpus.langs), size=config.batch_size, p=q)
            sampled[:] += np.bincount(langs, minlength=len(corpus.langs))
            yield [np.array([streams[k].next_block() for k in langs])]

    def loss_fn(blocks: np.ndarray):
        corrupted, chosen = tr.mask_tokens(
            blocks, ~np.isin(blocks, special), mask_id=tokenizer.mask_token_id,
            vocab_size=len(tokenizer), rng=mask_rng, mask_prob=config.mlm_probability,
        )  # fmt: skip
        labels = np.where(chosen, blocks, tr.IGNORE_INDEX)
        with runtime.autocast():
            loss = model(
                input_ids=torch.as_tensor(corrupted, device=runtime.device),
                attention_mask=torch.ones(blocks.shape, dtype=torch.long, device=runtime.device),
                labels=torch.as_tensor(labels, device=runtime.device),
            ).loss
        return loss, float(loss.detach()), 1

    step_losses: list[float] = []
    model.train()
    tr.train_loop(
        1, steps, loss_fn, optimizer, schedule, list(model.parameters()), runtime=runtime,
        max_grad_norm=1.0, total_steps=config.steps, desc=f"pretrain {config.name}",
        progress=progress, step_losses=step_losses,
    )  # fmt: skip
    losses = [round(x, 4) for x in step_losses]
    info = PretrainInfo(
        config=config.to_dict(),
        version=PRETRAIN_VERSION,
        tokens=tokens,
        q=dict(zip(corpus.langs, q.round(6).tolist(), strict=True)),
        sampled_tokens={
            lang: int(n) * (config.block_size - 2)
            for lang, n in zip(corpus.langs, sampled, strict=True)
        },
        vocab_size=len(tokenizer),
        parameters=sum(p.numel() for p in model.parameters()),
        loss=losses,
        seconds=round(time.perf_counter() - start, 2),
        cpu_seconds=round(time.process_time() - start_cpu, 2),
        device=device,
        torch_threads=torch.get_num_threads(),
    )
    _save(model, tokenizer, info, out_dir)
    return out_dir


def _save(model: Any, tokenizer: Any, info: PretrainInfo, out_dir: Path) -> None:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        with tr.quiet_transformers():
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "pretrain.json").write_text(json.dumps(info.to_dict(), indent=1), encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- checkpoints


def checkpoint_dir(config: PretrainConfig, root: Path | None = None) -> Path:
    """Return where the checkpoint of ``config`` lives (``cache_dir()/05-.../name``)."""
    return (root if root is not None else paths.cache_dir() / LESSON) / config.name


def read_info(path: Path) -> dict[str, Any] | None:
    """Return the ``pretrain.json`` of a checkpoint folder, or None when there is none."""
    try:
        return json.loads((Path(path) / "pretrain.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_cached(config: PretrainConfig, root: Path | None = None) -> bool:
    """Return True when a complete checkpoint trained with exactly ``config`` (and this
    version of the training code, :data:`PRETRAIN_VERSION`) exists."""
    info = read_info(checkpoint_dir(config, root))
    return (
        info is not None
        and info.get("config") == config.to_dict()
        and info.get("version", 1) == PRETRAIN_VERSION
    )


def load_or_pretrain(
    config: PretrainConfig,
    *,
    root: Path | None = None,
    force: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> tuple[Path, bool]:
    """Return the checkpoint folder of ``config``, training it first unless it is cached.

    A folder whose ``pretrain.json`` records a different config is retrained.

    Returns:
        ``(folder, True when it was loaded from the cache)``.
    """
    path = checkpoint_dir(config, root)
    if not force and is_cached(config, root):
        return path, True
    return pretrain(config, path, device=device, progress=progress), False


def load_checkpoint(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load a saved tiny BERT and its tokenizer (eval mode).

    Returns:
        ``(model, tokenizer)``: ``AutoModelForMaskedLM`` and ``AutoTokenizer`` from the
        folder, in the course's checkpoint order (model first, as
        :func:`xlt_course.training.load_checkpoint`).
    """
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    if read_info(path) is None:
        raise FileNotFoundError(
            f"{path} is not a pretraining checkpoint: run `xlt-course pretrain NAME`"
        )
    with tr.quiet_transformers():
        model = AutoModelForMaskedLM.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    model.eval()
    return model, tokenizer


# --------------------------------------------------------------------------- evaluation


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Average the hidden states of the positions where ``mask`` is 1.

    Args:
        hidden: (n, T, H) hidden states of n padded sequences of T positions.
        mask: (n, T) 1 for the positions to average (real tokens), 0 for padding.

    Returns:
        (n, H) sentence vectors.

    The exercise's formula in NumPy, for students to read and test; the engine's
    :func:`xlt_course.training.pool` computes the same mean on torch tensors inside the
    forward pass (:func:`embed`), where a NumPy round trip would be too slow. An all-zero
    mask is an error here and gives a zero vector there.

    Used in: lesson 05-multilingual-pretraining, exercise 3.
    """
    hidden = np.asarray(hidden, dtype=np.float64)
    mask = np.asarray(mask, dtype=np.float64)
    if hidden.ndim != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"hidden (n, T, H) and mask (n, T) expected, got {hidden.shape}, {mask.shape}"
        )
    counts = mask.sum(axis=1, keepdims=True)
    if np.any(counts == 0):
        raise ValueError("a sequence has no position to average (its mask is all 0)")
    return (hidden * mask[:, :, None]).sum(axis=1) / counts


def retrieval_p_at_1(X_src: np.ndarray, Y_tgt: np.ndarray) -> float:
    """Return the share of rows i of X_src whose cosine nearest row of Y_tgt is row i.

    Args:
        X_src: (n, d) source sentence vectors.
        Y_tgt: (n, d) target vectors, row i the translation of source row i.

    Returns:
        P@1 in [0, 1] (chance: 1/n).

    Used in: lesson 05-multilingual-pretraining, exercise 4.
    """
    X = np.asarray(X_src, dtype=np.float64)
    Y = np.asarray(Y_tgt, dtype=np.float64)
    if X.ndim != 2 or X.shape != Y.shape:
        raise ValueError(f"X_src and Y_tgt must both be (n, d), got {X.shape} and {Y.shape}")
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    Y = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    return float(np.mean(np.argmax(X @ Y.T, axis=1) == np.arange(len(X))))


def embed(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 256,
    device: str = "cpu",
) -> np.ndarray:
    """Return the mean-pooled hidden states of every layer for ``texts``.

    Special tokens ([CLS], [SEP]) and padding are left out of the mean; texts longer than
    the model's positions are truncated.

    Returns:
        (num_layers + 1, n, hidden_size) float32: the embedding layer, then each layer.
    """
    import torch

    encoder = model.base_model.to(device).eval()
    special = torch.as_tensor(sorted(tokenizer.all_special_ids), device=device)
    n_layers = encoder.config.num_hidden_layers + 1

    def pooled_layers(input_ids, attention_mask):
        mask = attention_mask * ~torch.isin(input_ids, special)
        # an all-special sequence (empty text) falls back to averaging [CLS] and [SEP]
        mask = torch.where(mask.sum(1, keepdim=True) > 0, mask, attention_mask)
        states = encoder(input_ids=input_ids, attention_mask=attention_mask,
                         output_hidden_states=True).hidden_states  # fmt: skip
        return torch.cat([tr.pool(h.float(), mask, "mean") for h in states], dim=1)

    enc = tr.EncodedTexts.from_texts(tokenizer, texts, encoder.config.max_position_embeddings)
    flat = tr.batched_forward(pooled_layers, enc, tr.pad_id_of(tokenizer), batch_size,
                              tr.Runtime(device, "fp32"))  # fmt: skip
    return flat.reshape(len(texts), n_layers, -1).transpose(1, 0, 2)


def retrieval_by_layer(
    X_layers: np.ndarray, Y_layers: np.ndarray, *, center: bool = False
) -> np.ndarray:
    """Return en->other P@1 at every layer of (L+1, n, H) stacks of sentence vectors.

    ``center=True`` subtracts each language's mean vector first, removing the constant
    "language direction" (Libovický et al., Findings of EMNLP 2020).
    """
    scores = []
    for X, Y in zip(X_layers, Y_layers, strict=True):
        if center:
            X, Y = X - X.mean(0), Y - Y.mean(0)
        scores.append(retrieval_p_at_1(X, Y))
    return np.asarray(scores)


TransferMode = Literal["probe", "finetune"]


@dataclass(frozen=True)
class EvalConfig:
    """How the checkpoints are evaluated (the same for every run).

    Attributes:
        n_test: test pairs used (None: all 900).
        n_train: English train items used to train the classifier (None: all).
        mode: ``"probe"`` trains a logistic regression on the frozen, mean-pooled last
            layer; ``"finetune"`` fine-tunes the whole model with a new classification head.
        probe_c: inverse L2 strength of the probe.
        epochs, learning_rate, batch_size: fine-tuning settings.
        seed: seeds the subsets and the fine-tuning.
    """

    n_test: int | None = None
    n_train: int | None = None
    mode: TransferMode = "probe"
    probe_c: float = 1.0
    epochs: int = 4
    learning_rate: float = 3e-4
    batch_size: int = 32
    seed: int = 0

    def smoke(self) -> EvalConfig:
        """Return the smoke-size version."""
        return dataclasses.replace(self, n_test=100, n_train=200, epochs=1)


@dataclass(frozen=True)
class EvalData:
    """The evaluation text of one corpus: test pairs and English train labels."""

    en_test: list[str]
    other_test: list[str]
    test_labels: np.ndarray
    en_train: list[str]
    train_labels: np.ndarray
    label_names: tuple[str, ...]


def eval_data(corpus: PretrainCorpus, cfg: EvalConfig, *, root: Path | None = None) -> EvalData:
    """Load the test pairs (parallel, held out) and the English train set, prepared."""
    from xlt_course.data.topics import load_topics

    second = corpus.langs[1]
    en_test = load_topics("test", "en", root=root)
    ot_test = load_topics("test", corpus.other, root=root)
    if en_test.ids != ot_test.ids:
        raise DataError("the test split is not parallel: rebuild data/topics")
    train = load_topics("train", "en", root=root)
    n, m = cfg.n_test or len(en_test.texts), cfg.n_train or len(train.texts)
    # a seeded subset that keeps every class
    pick_test = np.sort(np.random.default_rng(cfg.seed).permutation(len(en_test.texts))[:n])
    pick_train = np.sort(np.random.default_rng(cfg.seed).permutation(len(train.texts))[:m])
    return EvalData(
        en_test=corpus.prepare("en", [en_test.texts[i] for i in pick_test]),
        other_test=corpus.prepare(second, [ot_test.texts[i] for i in pick_test]),
        test_labels=en_test.labels[pick_test],
        en_train=corpus.prepare("en", [train.texts[i] for i in pick_train]),
        train_labels=train.labels[pick_train],
        label_names=train.label_names,
    )


def finetune_zero_shot(
    checkpoint: Path | None,
    data: EvalData,
    cfg: EvalConfig,
    *,
    config: PretrainConfig | None = None,
    tokenizer: Any = None,
    device: str = "cpu",
    progress: bool = False,
) -> dict[str, float]:
    """Fine-tune on English topic labels, then test in English and zero-shot in ``other``.

    Args:
        checkpoint: a pretraining checkpoint; None fine-tunes a randomly initialised model
            of ``config``'s size with ``tokenizer`` (the "no pretraining" control).
        data: from :func:`eval_data`.
        cfg: fine-tuning settings.

    Returns:
        ``{"en": accuracy on the English test, "other": accuracy on its translations}``.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    n_labels = len(data.label_names)
    torch.manual_seed(cfg.seed)
    with tr.quiet_transformers():
        if checkpoint is not None:
            tokenizer = AutoTokenizer.from_pretrained(checkpoint)
            model = AutoModelForSequenceClassification.from_pretrained(
                checkpoint, num_labels=n_labels
            )
        else:
            if config is None or tokenizer is None:
                raise ValueError("without a checkpoint, pass the config and the tokenizer")
            mlm = new_model(config, len(tokenizer), tokenizer.pad_token_id)
            torch.manual_seed(cfg.seed)
            cls_config = type(mlm.config)(**{**mlm.config.to_dict(), "num_labels": n_labels})
            model = AutoModelForSequenceClassification.from_config(cls_config)
            model.base_model.load_state_dict(mlm.base_model.state_dict(), strict=False)
    model.to(device)
    max_length = model.config.max_position_embeddings
    runtime = tr.make_runtime(device)
    pad_id = tr.pad_id_of(tokenizer)

    def encode(texts: list[str]) -> tr.EncodedTexts:
        return tr.EncodedTexts.from_texts(tokenizer, texts, max_length)

    train = encode(data.en_train)
    labels = torch.as_tensor(data.train_labels)
    rng = np.random.default_rng(cfg.seed)
    n_batches = -(-len(data.en_train) // cfg.batch_size)
    optimizer, schedule = tr.make_optimizer(
        model.parameters(), lr=cfg.learning_rate, weight_decay=0.01,
        total_steps=cfg.epochs * n_batches, warmup_steps=cfg.epochs * n_batches // 10,
    )  # fmt: skip

    def steps(epoch: int):
        order = rng.permutation(len(data.en_train))
        return ([order[i : i + cfg.batch_size]] for i in range(0, len(order), cfg.batch_size))

    def loss_fn(idx: np.ndarray):
        ids, mask = tr.pad_batch([train.input_ids[j] for j in idx], pad_id)
        with runtime.autocast():
            loss = model(input_ids=ids.to(runtime.device), attention_mask=mask.to(runtime.device),
                         labels=labels[idx].to(runtime.device)).loss  # fmt: skip
        return loss, float(loss.detach()) * len(idx), len(idx)

    model.train()
    tr.train_loop(
        cfg.epochs, steps, loss_fn, optimizer, schedule, list(model.parameters()),
        runtime=runtime, max_grad_norm=1.0, total_steps=cfg.epochs * n_batches,
        desc="fine-tune (en)", progress=progress,
    )  # fmt: skip
    model.eval()

    def logits(input_ids, attention_mask):
        return model(input_ids=input_ids, attention_mask=attention_mask).logits

    accuracy = {}
    for key, texts in (("en", data.en_test), ("other", data.other_test)):
        pred = tr.batched_forward(logits, encode(texts), pad_id, cfg.batch_size, runtime)
        accuracy[key] = float(np.mean(pred.argmax(axis=1) == data.test_labels))
    return accuracy


def probe_zero_shot(
    X_train: np.ndarray,
    y_train: np.ndarray,
    tests: dict[str, np.ndarray],
    y_test: np.ndarray,
    *,
    c: float = 1.0,
) -> dict[str, float]:
    """Train a logistic regression on English sentence vectors, report accuracy on each test set.

    Features are standardised with the English training statistics only: the classifier
    never sees the other language.

    Args:
        X_train: (n, H) English training vectors; y_train: (n,) labels.
        tests: ``{name: (m, H) vectors}``, every set labelled by y_test (m,).
        c: inverse L2 regularisation strength.

    Returns:
        ``{name: accuracy}``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    # one BLAS thread: the matrices are small, and on a busy 2-core machine a second
    # OpenBLAS thread made this fit 4 times slower (measured), with identical results
    with threadpool_limits(limits=1, user_api="blas"):
        clf.fit(X_train, y_train)
        return {name: float(np.mean(clf.predict(X) == y_test)) for name, X in tests.items()}


def evaluate(
    checkpoint: Path | None,
    corpus: PretrainCorpus,
    cfg: EvalConfig,
    *,
    config: PretrainConfig | None = None,
    tokenizer: Any = None,
    device: str = "cpu",
    root: Path | None = None,
) -> dict[str, Any]:
    """Measure retrieval P@1 by layer (raw and language-centred) and zero-shot accuracy.

    Args:
        checkpoint: a pretraining checkpoint, or None for the randomly initialised control
            (then ``config`` and ``tokenizer`` are required).
        corpus: the checkpoint's corpus (it says how to write the evaluation text).
        cfg: evaluation settings.

    Returns:
        ``{"p1_layers": (L+1,) P@1, "p1_layers_centered": (L+1,), "p1": last layer,
        "p1_centered": last layer centred, "acc_en", "acc_other", "acc_other_centered"
        (the probe applied to the second language's vectors minus their mean, trained on the
        English vectors minus theirs; NaN when fine-tuning), "n_test"}``.
    """
    data = eval_data(corpus, cfg, root=root)
    if checkpoint is not None:
        model, tokenizer = load_checkpoint(checkpoint)
    else:
        if config is None or tokenizer is None:
            raise ValueError("without a checkpoint, pass the config and the tokenizer")
        model = new_model(config, len(tokenizer), tokenizer.pad_token_id)
    X = embed(model, tokenizer, data.en_test, device=device)
    Y = embed(model, tokenizer, data.other_test, device=device)
    p1 = retrieval_by_layer(X, Y)
    p1c = retrieval_by_layer(X, Y, center=True)
    if cfg.mode == "probe":
        T = embed(model, tokenizer, data.en_train, device=device)[-1]
        acc = probe_zero_shot(
            T, data.train_labels, {"en": X[-1], "other": Y[-1]}, data.test_labels, c=cfg.probe_c
        )
        # each set minus its own mean: the language direction removed (no labels used)
        centred = probe_zero_shot(
            T - T.mean(0),
            data.train_labels,
            {"other": Y[-1] - Y[-1].mean(0)},
            data.test_labels,
            c=cfg.probe_c,
        )
        acc["other_centered"] = centred["other"]
    else:
        acc = finetune_zero_shot(
            checkpoint, data, cfg, config=config, tokenizer=tokenizer, device=device
        )
    return {
        "p1_layers": p1.tolist(),
        "p1_layers_centered": p1c.tolist(),
        "p1": float(p1[-1]),
        "p1_centered": float(p1c[-1]),
        "acc_en": acc["en"],
        "acc_other": acc["other"],
        "acc_other_centered": acc.get("other_centered", float("nan")),
        "n_test": len(data.en_test),
    }
