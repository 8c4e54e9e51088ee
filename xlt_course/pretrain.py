"""Lesson 05-multilingual-pretraining: multilinguality emerging from masked-LM pretraining alone.

The setting of Dufter & Schütze (EMNLP 2020, "Identifying Necessary Elements for BERT's
Multilinguality"): a small BERT trained with masked language modelling (MLM) on an English
Bible (the King James Version, :mod:`xlt_course.data.bible`) plus "Fake-English", the same
text with every token id shifted by the vocabulary size, so that the two languages share no
token at all. Nothing tells the model that a word and its fake twin mean the same; if their
representations end up close, the shared space emerged from the MLM objective and the
architecture alone.

Each :class:`PretrainConfig` changes one knob of the standard setting (:data:`SETTINGS`):
language-specific position embeddings, language-specific special tokens, no random
replacement in masking, an over-parameterised model, the fake language's word order
inverted, non-parallel halves (the two languages see disjoint verses), and a real pair
(English KJV + Spanish Reina-Valera 1909 on disjoint halves, one shared vocabulary) beside
the same pair with Spanish made fake (no shared piece), K et al.'s (ICLR 2020) question.

The measures (:func:`evaluate`) are D&S's: sentence retrieval P@1 between held-out verses and
their twins from mean-pooled, mean-centred hidden states of every layer, and word
translation P@1 between a piece and its fake twin in the input embeddings, beside an untrained
model of the same shape (``steps=0``) and a random-rotation control (the trained model's
other-language vectors rotated at random: the same geometry without a shared space).

``xlt-course pretrain report`` trains what is missing and prints the table; every run is
cached under ``paths.cache_dir() / LESSON / runs`` keyed by :func:`run_key` (a fingerprint of
its config). Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from xlt_course import paths, published, tokenization
from xlt_course import training as tr

if TYPE_CHECKING:
    from transformers import PreTrainedModel

LESSON = "05-multilingual-pretraining"

#: Bump when a change to this module changes what a cached run contains.
PRETRAIN_VERSION = 3

#: The special tokens, ids 0-4 of every vocabulary.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD, UNK, CLS, SEP, MASK = range(5)

Pair = Literal["en-fake", "en-es"]

#: The settings of the report, in table order. ``untrained`` is the standard model before
#: any step; the others change one knob of ``standard`` each.
Setting = Literal[
    "standard",
    "untrained",
    "positions_separate",
    "special_separate",
    "no_random",
    "overparam",
    "inverted",
    "nonparallel",
    "real_en_es",
    "fake_es",
]

_WORD = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class PretrainConfig:
    """One pretraining run: data, architecture, masking, training length, seed.

    Attributes:
        name: the setting's name (:data:`Setting`).
        pair: ``"en-fake"`` (English + Fake-English) or ``"en-es"`` (English + Spanish).
        fake: the second language's ids are shifted by the vocabulary size (always for
            ``en-fake``; for ``en-es``, Spanish gets its own vocabulary, shifted).
        shared_special: the two languages share ``[CLS]``, ``[SEP]``, ``[MASK]``, ``[UNK]``.
        shared_positions: the two languages share the position embeddings.
        random_replacement: 10% of the chosen positions get a random token (BERT's 80/10/10);
            False: 80% ``[MASK]``, 20% kept.
        invert_order: the second language's words in reverse order.
        parallel: both languages see the same training verses (False: disjoint halves).
        n_fake: how many fake languages beside English (``en-fake`` only): language ``j``
            is English with every id shifted by ``j * vocab_size`` (the curse of
            multilinguality, :data:`CURSE`); 1 is D&S's setting.
        hidden_size, num_layers, num_heads, intermediate_size: the BERT's shape.
        vocab_size: WordPiece pieces per language (specials included).
        max_length: longest sequence in pieces, ``[CLS]`` and ``[SEP]`` included.
        batch_size, steps, learning_rate, warmup_steps, weight_decay: optimisation
            (``steps=0``: the untrained control).
        mask_prob: share of the pieces chosen as MLM targets.
        n_eval: held-out verses for retrieval (the same verses for every setting).
        max_verses: use only the first verses of the Bible (None: all; the smoke size).
        seed: model initialisation, batches and masks.
    """

    name: str = "standard"
    pair: Pair = "en-fake"
    fake: bool = True
    shared_special: bool = True
    shared_positions: bool = True
    random_replacement: bool = True
    invert_order: bool = False
    parallel: bool = True
    n_fake: int = 1
    hidden_size: int = 64
    num_layers: int = 1
    num_heads: int = 1
    intermediate_size: int = 256
    vocab_size: int = 2048
    max_length: int = 48
    batch_size: int = 64
    steps: int = 4000
    learning_rate: float = 2e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    mask_prob: float = 0.15
    n_eval: int = 500
    max_verses: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        tr.check_choice("pair", self.pair, Pair)
        tr.check_positive_ints(
            self,
            ("hidden_size", "num_layers", "num_heads", "intermediate_size", "vocab_size",
             "max_length", "batch_size", "n_eval"),
        )  # fmt: skip
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.n_fake < 1 or (self.n_fake > 1 and self.pair != "en-fake"):
            raise ValueError(f"n_fake must be 1, or >= 1 with pair='en-fake'; got {self.n_fake}")
        if self.pair == "en-fake" and not self.fake:
            raise ValueError("pair='en-fake' is the id-shifted copy: fake must be True")
        if self.vocab_size <= len(SPECIAL_TOKENS) + 26:
            raise ValueError(f"vocab_size {self.vocab_size} leaves no room for pieces")
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be a multiple of num_heads")
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")

    def replace(self, **changes: Any) -> PretrainConfig:
        """Return a copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return dataclasses.asdict(self)

    @property
    def n_langs(self) -> int:
        """Return the number of languages (English + the others)."""
        return 1 + self.n_fake


STANDARD = PretrainConfig()

#: One knob each, relative to :data:`STANDARD` (D&S's ablations, and the real pair).
SETTINGS: dict[str, dict[str, Any]] = {
    "standard": {},
    "untrained": {"steps": 0},
    "positions_separate": {"shared_positions": False},
    "special_separate": {"shared_special": False},
    "no_random": {"random_replacement": False},
    # D&S's over-parameterised model is BERT-base; 4x wider and 4 layers here (CPU budget).
    # At the standard 2e-3 with 50 warm-up steps it never left the unigram plateau (loss 6.56
    # at step 2,500 against 5.11 for the standard model, measured), so it trains at 5e-4 with
    # 400 warm-up steps: a step size that trains it, not a second knob of the ablation.
    "overparam": {
        "hidden_size": 256,
        "num_layers": 4,
        "num_heads": 4,
        "intermediate_size": 1024,
        "learning_rate": 5e-4,
        "warmup_steps": 400,
    },
    "inverted": {"invert_order": True},
    "nonparallel": {"parallel": False},
    "real_en_es": {"pair": "en-es", "fake": False, "parallel": False},
    "fake_es": {"pair": "en-es", "fake": True, "parallel": False},
}

#: The curse of multilinguality in miniature: English + 1, 3 and 7 fake languages at fixed
#: capacity and fixed training length (2,000 steps, half the standard: CPU budget), so each
#: added language takes a share of the same steps and the same 64-dimensional model.
CURSE: dict[str, dict[str, Any]] = {
    f"fake_langs_{k}": {"n_fake": k, "steps": 2000} for k in (1, 3, 7)
}

#: The report's default settings: all but the over-parameterised model, which a 2-core CPU
#: cannot train within the report's budget (``--settings overparam`` trains it).
DEFAULT_REPORT = tuple(s for s in SETTINGS if s != "overparam")

#: What the report prints beside its table about Dufter & Schütze's own figures.
PUBLISHED_NOTE = (
    "D&S (EMNLP 2020; 12 layers, 100 epochs; P@1 averaged over both directions): standard "
    "model: retrieval {sentence_retrieval_layer_8:.2f} at layer 8, word translation "
    "{word_translation_layer_0:.2f} at layer 0 ({word_translation_layer_8:.2f} at layer 8).\n"
    "Read second-hand from their section 3.1 (its text, not Table 1): no figure of their "
    "ablations is printed here; compare each ablation's direction (lesson 05, section 8)."
).format(**published.DUFTER_SCHUTZE_STANDARD_RESULTS)

#: The figures of the one line ``pretrain report`` ends with, in order.
EMERGENCE_LINE = (
    "standard", "untrained", "positions_separate", "special_separate", "real_en_es", "fake_es",
)  # fmt: skip

#: The smoke size (``XLT_COURSE_SMOKE=1``, tests): a few seconds per run.
SMOKE = {"steps": 30, "vocab_size": 300, "max_verses": 1500, "n_eval": 60, "batch_size": 16}


def get_config(
    setting: str, *, seed: int = 0, steps: int | None = None, smoke: bool = False
) -> PretrainConfig:
    """Return the config of one setting of :data:`SETTINGS`.

    Args:
        setting: a name of :data:`SETTINGS`.
        seed: the run's seed.
        steps: training steps (None: the default; ignored for ``untrained``).
        smoke: the tiny size of the test suite.
    """
    known = {**SETTINGS, **CURSE}
    if setting not in known:
        raise ValueError(f"unknown setting {setting!r}: choose from {', '.join(known)}")
    changes: dict[str, Any] = {"name": setting, "seed": seed}
    if smoke:
        changes.update(SMOKE)
    if steps is not None:
        changes["steps"] = steps
    fixed = known[setting]
    if steps is not None or smoke:  # an explicit length (or the smoke one) wins over CURSE's
        fixed = {k: v for k, v in fixed.items() if k != "steps" or setting == "untrained"}
    changes.update(fixed)
    return STANDARD.replace(**changes)


# --------------------------------------------------------------------------- text and ids


def pretokenize(text: str, *, invert: bool = False) -> list[str]:
    """Return the lower-cased words and punctuation marks of ``text`` (reversed if ``invert``)."""
    words = _WORD.findall(text.lower())
    return words[::-1] if invert else words


def fake_token_ids(ids: np.ndarray, vocab_size: int, shared_special: bool = True) -> np.ndarray:
    """Return the Fake-English twin of token ids: every id shifted by ``vocab_size``.

    Args:
        ids: (...) int token ids of the real language, in ``[0, vocab_size)``; ids below
            ``len(SPECIAL_TOKENS)`` are the special tokens.
        vocab_size: the real language's vocabulary size.
        shared_special: keep the special tokens' ids (the two languages share them); False
            shifts them too (each language has its own).

    Returns:
        (...) int ids in ``[0, 2 * vocab_size)``, a new array.

    Used in: lesson 05-multilingual-pretraining, exercise 2.
    """
    ids = np.asarray(ids)
    shifted = ids + vocab_size
    if shared_special:
        shifted = np.where(ids < len(SPECIAL_TOKENS), ids, shifted)
    return shifted


@dataclass
class Corpus:
    """The two languages' training and held-out sequences of a config, as token ids.

    Attributes:
        train: ``(ids, lang)`` per training sequence: ``[CLS] ... [SEP]`` in the model's id
            space, ``lang`` 0 (English) or 1 (the other language).
        eval_en, eval_other: the held-out verses and their twins (same order), ids as above.
        eval_refs: the held-out verses' references (``Gen.1.1``).
        total_vocab: ids of the model (``n_langs * vocab_size``).
        pieces: ``(pieces, frequency)``: the English vocabulary and each piece's count in the
            English training text (word translation uses the frequent ones).
    """

    train: list[tuple[list[int], int]]
    eval_en: list[list[int]]
    eval_other: list[list[int]]
    eval_refs: list[str]
    total_vocab: int
    pieces: tuple[list[str], np.ndarray]
    eval_more: list[list[list[int]]] = dataclasses.field(default_factory=list)
    """The held-out verses in fake languages 2, 3, ... (``n_fake > 1``), ids as above."""

    def eval_langs(self) -> list[list[list[int]]]:
        """Return the held-out verses of every language: English, then the others."""
        return [self.eval_en, self.eval_other, *self.eval_more]


def _verses(config: PretrainConfig) -> tuple[list[str], dict[str, str], dict[str, str]]:
    from xlt_course.data.bible import load_bible, parallel_verses

    pairs = parallel_verses()
    en = load_bible("en")
    if config.max_verses is not None:
        pairs = pairs[: config.max_verses]
        en = {ref: en[ref] for ref, _, _ in pairs}
    es = {ref: text for ref, _, text in pairs}
    return [ref for ref, _, _ in pairs], en, es


def split_refs(refs: Sequence[str], n_eval: int) -> tuple[list[str], list[str]]:
    """Return ``(held_out, rest)``: ``n_eval`` verses drawn with a fixed seed, the others.

    The draw does not depend on the run's seed, so every setting is scored on the same verses.
    """
    rng = np.random.default_rng(12345)
    held = set(rng.choice(len(refs), size=min(n_eval, len(refs) // 4), replace=False).tolist())
    return [r for i, r in enumerate(refs) if i in held], [
        r for i, r in enumerate(refs) if i not in held
    ]


def _vocab(texts: list[list[str]], vocab_size: int, cache: Path) -> list[str]:
    """Learn (or read from ``cache``) a WordPiece vocabulary of ``texts`` (word lists)."""
    key = tr.fingerprint([PRETRAIN_VERSION, vocab_size, [" ".join(t) for t in texts]])[:16]
    path = cache / f"vocab-{key}.txt"
    if path.exists():
        return path.read_text(encoding="utf-8").split("\n")
    vocab = tokenization.wordpiece_vocab(
        (" ".join(t) for t in texts), vocab_size, special_tokens=SPECIAL_TOKENS
    )
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(vocab), encoding="utf-8")
    return vocab


def encoder(vocab: list[str]):
    """Return a function: word list -> piece ids (greedy longest-match WordPiece, ``[UNK]``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordPiece({p: i for i, p in enumerate(vocab)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()

    def encode(words: list[str]) -> list[int]:
        return tok.encode(" ".join(words)).ids

    return encode


def build_corpus(config: PretrainConfig, cache: Path | None = None) -> Corpus:
    """Tokenise the Bible(s) of ``config`` into training and held-out sequences."""
    cache = cache or paths.cache_dir() / LESSON / "vocab"
    refs, en, es = _verses(config)
    held, rest = split_refs(refs, config.n_eval)
    held_set = set(held)
    V, n = config.vocab_size, config.max_length - 2
    if config.pair == "en-fake":
        en_train = [r for r in en if r not in held_set]
        other_text = en
    else:
        en_train = list(rest)
        other_text = es
    if config.parallel:
        other_train = list(en_train)
    else:
        order = np.random.default_rng(54321).permutation(len(en_train))
        half = len(order) // 2
        other_train = [en_train[i] for i in sorted(order[half:])]
        en_train = [en_train[i] for i in sorted(order[:half])]
    words_en = {r: pretokenize(en[r]) for r in set(en_train) | held_set}
    words_other = {
        r: pretokenize(other_text[r], invert=config.invert_order)
        for r in set(other_train) | held_set
    }
    if config.pair == "en-fake" or config.fake:
        vocab_en = _vocab([words_en[r] for r in en_train], V, cache)
        vocab_other = (
            vocab_en
            if config.pair == "en-fake"
            else _vocab([words_other[r] for r in other_train], V, cache)
        )
        enc_en, enc_other = encoder(vocab_en), encoder(vocab_other)
        total = 2 * V

        def other_ids(words: list[str]) -> list[int]:
            ids = np.array([CLS, *enc_other(words)[:n], SEP])
            return fake_token_ids(ids, V, shared_special=config.shared_special).tolist()

    else:  # one vocabulary learned on both languages, as large as the two fake ones together
        vocab_en = _vocab(
            [words_en[r] for r in en_train] + [words_other[r] for r in other_train], 2 * V, cache
        )
        enc_en = encoder(vocab_en)
        total = 2 * V

        def other_ids(words: list[str]) -> list[int]:
            return [CLS, *enc_en(words)[:n], SEP]

    def en_ids(words: list[str]) -> list[int]:
        return [CLS, *enc_en(words)[:n], SEP]

    train = [(en_ids(words_en[r]), 0) for r in en_train]
    train += [(other_ids(words_other[r]), 1) for r in other_train]
    eval_en = [en_ids(words_en[r]) for r in held]
    eval_more = []
    for lang in range(2, config.n_langs):  # more fake languages: English shifted by lang * V

        def shift(ids: list[int], lang: int = lang) -> list[int]:
            return fake_token_ids(np.array(ids), lang * V, config.shared_special).tolist()

        train += [(shift(ids), lang) for ids, first in train[: len(en_train)] if first == 0]
        eval_more.append([shift(ids) for ids in eval_en])
    counts = Counter(i for ids, lang in train if lang == 0 for i in ids)
    freq = np.array([counts.get(i, 0) for i in range(len(vocab_en))])
    return Corpus(
        train=train,
        eval_en=eval_en,
        eval_other=[other_ids(words_other[r]) for r in held],
        eval_refs=held,
        total_vocab=config.n_langs * V if config.n_fake > 1 else total,
        pieces=(vocab_en, freq),
        eval_more=eval_more,
    )


# --------------------------------------------------------------------------- model and training


def new_model(config: PretrainConfig, total_vocab: int) -> PreTrainedModel:
    """Return a freshly initialised ``BertForMaskedLM`` of the config's shape (seeded)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(config.seed)
    positions = config.max_length * (1 if config.shared_positions else config.n_langs)
    return BertForMaskedLM(
        BertConfig(
            vocab_size=total_vocab,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            intermediate_size=config.intermediate_size,
            max_position_embeddings=positions,
            type_vocab_size=1,
            pad_token_id=PAD,
        )
    )


def batch_tensors(
    seqs: Sequence[Sequence[int]], langs: Sequence[int], config: PretrainConfig
) -> tuple[Any, Any, Any]:
    """Return padded ``(input_ids, attention_mask, position_ids)`` tensors (batch, seq).

    With language-specific positions the other language's positions start at
    ``max_length``: its own block of position embeddings.
    """
    import torch

    ids, mask = tr.pad_batch(seqs, PAD)
    pos = torch.arange(ids.shape[1]).expand_as(ids).clone()
    if not config.shared_positions:
        pos += torch.as_tensor(langs).view(-1, 1) * config.max_length
    return ids, mask, pos


def _mask_batch(ids: np.ndarray, langs: np.ndarray, config: PretrainConfig, total: int, rng):
    """Corrupt a padded batch with the engine's masker, each language with its own [MASK]."""
    corrupted, chosen = np.array(ids), np.zeros(ids.shape, dtype=bool)
    for lang in range(config.n_langs):
        rows = langs == lang
        if not rows.any():
            continue
        mask_id = MASK if config.shared_special else MASK + lang * config.vocab_size
        sub = ids[rows]
        maskable = sub >= len(SPECIAL_TOKENS)
        if not config.shared_special:  # each language's own specials: ids lang * V + 0..4
            maskable = sub % config.vocab_size >= len(SPECIAL_TOKENS)
        c, ch = tr.mask_tokens(
            sub, maskable, mask_id=mask_id, vocab_size=total, rng=rng,
            mask_prob=config.mask_prob,
            random_prob=0.1 if config.random_replacement else 0.0,
        )  # fmt: skip
        corrupted[rows], chosen[rows] = c, ch
    return corrupted, chosen


def train_model(
    config: PretrainConfig, corpus: Corpus, *, progress: bool = True
) -> tuple[Any, list[float]]:
    """Pretrain a BERT on ``corpus`` with MLM through the course's engine; return it and losses.

    The loss is computed on the masked positions only (the prediction head runs on those
    rows alone, about ten times faster than on every position). AdamW with linear warm-up
    and decay, gradients clipped to norm 1 (:func:`xlt_course.training.train_loop`).
    """
    import torch
    import torch.nn.functional as F

    model = new_model(config, corpus.total_vocab)
    losses: list[float] = []
    if config.steps == 0:
        return model, losses
    runtime = tr.make_runtime("cpu", "fp32")
    # the unfused AdamW: the report's cached runs (hours of training, quoted in lesson 05)
    # were trained with it, and a re-run reproduces them only with the same arithmetic
    optimizer, schedule = tr.make_optimizer(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
        eps=1e-6, total_steps=config.steps, warmup_steps=config.warmup_steps, fused=False,
    )  # fmt: skip
    rng = np.random.default_rng(config.seed)
    mask_rng = np.random.default_rng([config.seed, 1])

    def steps(epoch: int):
        for _ in range(config.steps):
            yield [rng.choice(len(corpus.train), size=config.batch_size, replace=False)]

    def loss_fn(rows: np.ndarray):
        seqs = [corpus.train[i][0] for i in rows]
        langs = np.array([corpus.train[i][1] for i in rows])
        ids, attn, pos = batch_tensors(seqs, langs, config)
        corrupted, chosen = _mask_batch(ids.numpy(), langs, config, corpus.total_vocab, mask_rng)
        hidden = model.bert(
            input_ids=torch.as_tensor(corrupted), attention_mask=attn, position_ids=pos
        ).last_hidden_state
        where = torch.as_tensor(chosen)
        logits = model.cls(hidden[where])
        loss = F.cross_entropy(logits, ids[where])
        return loss, float(loss.detach()), 1

    model.train()
    tr.train_loop(
        1, steps, loss_fn, optimizer, schedule, list(model.parameters()), runtime=runtime,
        total_steps=config.steps, desc=f"pretrain {config.name} s{config.seed}",
        progress=progress, step_losses=losses,
    )  # fmt: skip
    model.eval()
    return model, losses


# --------------------------------------------------------------------------- measures


def layer_vectors(model: Any, seqs: Sequence[Sequence[int]], lang: int, config) -> np.ndarray:
    """Return (layers + 1, n, d): mean-pooled hidden states of every layer, specials excluded.

    Layer 0 is the embedding layer's output (token + position embeddings, layer norm).
    """
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(seqs), 256):
            chunk = seqs[start : start + 256]
            ids, attn, pos = batch_tensors(chunk, [lang] * len(chunk), config)
            hidden = model.bert(
                input_ids=ids, attention_mask=attn, position_ids=pos, output_hidden_states=True
            ).hidden_states
            # content pieces only: [CLS]/[SEP] are identical across languages when shared
            keep = attn.clone()
            keep[:, 0] = 0
            keep[torch.arange(len(chunk)), attn.sum(1) - 1] = 0
            w = keep.unsqueeze(-1).float()
            out.append(np.stack([((h * w).sum(1) / w.sum(1).clamp(min=1)).numpy() for h in hidden]))
    return np.concatenate(out, axis=1)


def centred_p_at_1(X_src: np.ndarray, Y_tgt: np.ndarray) -> float:
    """Return P@1 of retrieving row i of Y_tgt (n, d) for row i of X_src (n, d), cosine, mean-centred.

    Each side's mean is subtracted first: it removes the offset that tells the two languages
    apart (the vectors of one language cluster together), as D&S do.
    """
    X = X_src - X_src.mean(0)
    Y = Y_tgt - Y_tgt.mean(0)
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    Y = Y / np.maximum(np.linalg.norm(Y, axis=1, keepdims=True), 1e-12)
    return float(((X @ Y.T).argmax(1) == np.arange(len(X))).mean())


def word_translation_p_at_1(E: np.ndarray, vocab_size: int, ids: np.ndarray) -> float:
    """Return P@1 of finding the fake twin ``i + vocab_size`` of piece ``i`` among the fake twins.

    Args:
        E: (2 * vocab_size, d) input embeddings of an English + Fake-English model.
        vocab_size: the English vocabulary size.
        ids: (k,) English piece ids to translate (candidates: the twins of the same ids).
    """
    return centred_p_at_1(E[ids], E[ids + vocab_size])


def random_rotation(d: int, seed: int = 0) -> np.ndarray:
    """Return a (d, d) random orthogonal matrix (QR of a Gaussian, signs fixed)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def heldout_mlm_loss(model: Any, seqs: Sequence[Sequence[int]], lang: int, config) -> float:
    """Return the mean MLM cross-entropy on held-out ``seqs`` of language ``lang``.

    The same positions are masked in every language (a fixed seed; every chosen position
    becomes the language's ``[MASK]``), so the languages' losses compare directly.
    """
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(777)
    mask_id = MASK if config.shared_special else MASK + lang * config.vocab_size
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(seqs), 256):
            chunk = seqs[start : start + 256]
            ids, attn, pos = batch_tensors(chunk, [lang] * len(chunk), config)
            content = ids.numpy() >= len(SPECIAL_TOKENS)
            if not config.shared_special:
                content = ids.numpy() % config.vocab_size >= len(SPECIAL_TOKENS)
            chosen = (rng.random(ids.shape) < config.mask_prob) & content
            where = torch.as_tensor(chosen)
            hidden = model.bert(
                input_ids=ids.masked_fill(where, mask_id), attention_mask=attn, position_ids=pos
            ).last_hidden_state
            logits = model.cls(hidden[where])
            total += float(F.cross_entropy(logits, ids[where], reduction="sum"))
            count += int(where.sum())
    return total / max(count, 1)


def evaluate(model: Any, corpus: Corpus, config: PretrainConfig) -> dict[str, Any]:
    """Return D&S's measures of one model: retrieval per layer, word translation, rotation control.

    Returns:
        ``retrieval``: P@1 per layer (layer 0 = embeddings); ``best_layer`` and
        ``retrieval_best``; ``rotation``: the best layer's P@1 after rotating the other
        language's vectors at random (chance level if nothing is shared);
        ``word_translation``: P@1 over the 1,000 most frequent English pieces (en-fake only);
        ``vectors_en``/``vectors_other``: the (layers + 1, n, d) pooled vectors;
        ``retrieval_langs``: English -> each other language, P@1 at the best layer;
        ``mlm_loss``: held-out MLM loss of each language (English first).
        With several fake languages ``retrieval`` is the mean over them.
    """
    X = layer_vectors(model, corpus.eval_en, 0, config)
    others = [layer_vectors(model, seqs, j, config) for j, seqs in enumerate(corpus.eval_langs())]
    Y = others[1]
    per_lang = np.array([[centred_p_at_1(X[i], Z[i]) for i in range(len(X))] for Z in others[1:]])
    retrieval = per_lang.mean(0).tolist()
    best = int(np.argmax(retrieval))
    Q = random_rotation(X.shape[-1], seed=config.seed)
    rotation = centred_p_at_1(X[best], Y[best] @ Q)
    word = None
    if config.pair == "en-fake":
        vocab, freq = corpus.pieces
        candidates = np.argsort(-freq, kind="stable")
        candidates = candidates[candidates >= len(SPECIAL_TOKENS)][:1000]
        candidates = candidates[freq[candidates] > 0]
        E = model.bert.embeddings.word_embeddings.weight.detach().numpy()
        word = word_translation_p_at_1(E, config.vocab_size, candidates)
    return {
        "retrieval": retrieval,
        "retrieval_langs": per_lang[:, best].tolist(),
        "mlm_loss": [
            heldout_mlm_loss(model, seqs, j, config) for j, seqs in enumerate(corpus.eval_langs())
        ],
        "best_layer": best,
        "retrieval_best": retrieval[best],
        "rotation": rotation,
        "word_translation": word,
        "vectors_en": X,
        "vectors_other": Y,
    }


# --------------------------------------------------------------------------- cached runs


@dataclass
class RunResult:
    """The measures and training record of one cached run (see :func:`run`)."""

    config: PretrainConfig
    retrieval: list[float]
    best_layer: int
    retrieval_best: float
    rotation: float
    word_translation: float | None
    losses: list[float]
    seconds: float
    parameters: int
    path: Path
    from_cache: bool = False
    retrieval_langs: list[float] | None = None
    mlm_loss: list[float] | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """Return the stored arrays: pooled vectors and input embeddings."""
        with np.load(self.path / "arrays.npz") as z:
            return {k: z[k] for k in z.files}


def run_key(config: PretrainConfig) -> str:
    """Return the cache folder name of ``config``: name, seed and a fingerprint of it all."""
    fields = config.to_dict()
    if fields["n_fake"] == 1:  # the field came later: D&S's one fake language keeps its keys
        del fields["n_fake"]
    fp = tr.fingerprint([PRETRAIN_VERSION, fields])[:12]
    return f"{config.name}-s{config.seed}-{config.steps}-{fp}"


def runs_dir() -> Path:
    """Return the folder of the cached runs."""
    return paths.cache_dir() / LESSON / "runs"


def load_run(config: PretrainConfig, root: Path | None = None) -> RunResult | None:
    """Return the cached run of ``config``, or None."""
    folder = (root or runs_dir()) / run_key(config)
    path = folder / "metrics.json"
    if not path.exists():
        return None
    m = json.loads(path.read_text(encoding="utf-8"))
    if m.get("cache_version") != PRETRAIN_VERSION:
        return None
    return RunResult(
        config=PretrainConfig(**m["config"]),
        retrieval=m["retrieval"], best_layer=m["best_layer"],
        retrieval_best=m["retrieval_best"], rotation=m["rotation"],
        word_translation=m["word_translation"], losses=m["losses"], seconds=m["seconds"],
        parameters=m["parameters"], path=folder, from_cache=True,
        retrieval_langs=m.get("retrieval_langs"), mlm_loss=m.get("mlm_loss"),
    )  # fmt: skip


def run(
    config: PretrainConfig,
    *,
    root: Path | None = None,
    corpus: Corpus | None = None,
    progress: bool = True,
) -> RunResult:
    """Train (unless cached) and evaluate one run; cache its measures and arrays.

    Args:
        config: the run.
        root: the cache folder (default :func:`runs_dir`).
        corpus: the tokenised corpus (built from ``config`` when None).
        progress: show a progress bar.
    """
    cached = load_run(config, root)
    if cached is not None:
        return cached
    import torch

    start = time.perf_counter()
    corpus = corpus or build_corpus(config)
    model, losses = train_model(config, corpus, progress=progress)
    measures = evaluate(model, corpus, config)
    seconds = round(time.perf_counter() - start, 1)
    folder = (root or runs_dir()) / run_key(config)
    folder.parent.mkdir(parents=True, exist_ok=True)
    params = sum(p.numel() for p in model.parameters())
    metrics = {
        "cache_version": PRETRAIN_VERSION,
        "config": config.to_dict(),
        **{k: v for k, v in measures.items() if not k.startswith("vectors")},
        "losses": [round(x, 4) for x in losses],
        "seconds": seconds,
        "parameters": params,
        "torch_threads": torch.get_num_threads(),
    }
    with tr.atomic_folder(folder) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
        np.savez_compressed(
            tmp / "arrays.npz",
            vectors_en=measures["vectors_en"].astype(np.float32),
            vectors_other=measures["vectors_other"].astype(np.float32),
            embeddings=model.bert.embeddings.word_embeddings.weight.detach().numpy(),
            piece_freq=corpus.pieces[1],
        )
    result = load_run(config, root)
    assert result is not None
    result.from_cache = False
    return result


#: The fields of a config that :func:`build_corpus` reads (not the seed: every seed of a
#: setting trains on the same corpus).
CORPUS_FIELDS = (
    "pair", "fake", "shared_special", "invert_order", "parallel", "n_fake", "vocab_size",
    "max_length", "n_eval", "max_verses",
)  # fmt: skip

#: A report worker's last corpus, reused by its next run of the same corpus (building one
#: takes about 3 s: reading and tokenising both Bibles).
_worker_corpus: dict[tuple[Any, ...], Corpus] = {}


def _run_single_threaded(config: PretrainConfig, root: Path | None) -> str:
    cached = load_run(config, root)
    if cached is not None:
        return str(cached.path)
    key = tuple(getattr(config, f) for f in CORPUS_FIELDS)
    if key not in _worker_corpus:
        _worker_corpus.clear()
        _worker_corpus[key] = build_corpus(config)
    with tr.torch_threads(1):
        return str(run(config, root=root, corpus=_worker_corpus[key], progress=False).path)


def train_parallel(
    configs: Sequence[PretrainConfig], *, jobs: int = 2, root: Path | None = None
) -> list[Path]:
    """Train and cache ``configs`` in ``jobs`` worker processes (one torch thread each).

    Args:
        configs: the runs (the cached ones return at once).
        jobs: worker processes (>= 1).
        root: the cache folder.

    Returns:
        The cache folders of the runs, in the order of ``configs``.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    if not configs:
        return []
    # longest first, so that no worker is left with a long run while the others idle; a
    # stable sort keeps a setting's seeds together (a worker then reuses their corpus)
    order = sorted(range(len(configs)), key=lambda i: -run_cost(configs[i]))
    # spawn: a fresh interpreter per worker (fork after torch's thread pools start can hang)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {i: pool.submit(_run_single_threaded, configs[i], root) for i in order}
        for future in tqdm(as_completed(futures.values()), total=len(futures),
                           desc=f"pretrain runs ({jobs} workers)"):  # fmt: skip
            future.result()
    return [Path(futures[i].result()) for i in range(len(configs))]


def run_cost(config: PretrainConfig) -> float:
    """Return a run's relative training cost: steps, weighted by the output vocabulary.

    Fitted to the measured run times (lesson 05's report, one thread): 2,000 steps took 83 s
    with 2 languages, 112 s with 4 and 177 s with 8 (the prediction head and the embedding
    gradients grow with the vocabulary); 4,000 steps with 2 languages 167 s.
    """
    width = (config.hidden_size / STANDARD.hidden_size) * (config.num_layers / STANDARD.num_layers)
    return config.steps * (3.3 + config.n_langs) * max(width, 1.0)


def report_table(
    settings: Sequence[str],
    seeds: Sequence[int],
    *,
    steps: int | None = None,
    smoke: bool = False,
    root: Path | None = None,
    train: bool = True,
    progress: bool = True,
    jobs: int = 1,
) -> list[dict[str, Any]]:
    """Return one row per setting: mean and spread over the seeds of every measure.

    Args:
        settings: names of :data:`SETTINGS`.
        seeds: the seeds to average.
        steps: training steps (None: the default).
        smoke: the tiny size.
        root: the cache folder.
        train: train the missing runs (False: report only the cached ones).
        progress: progress bars.
        jobs: train the missing runs in this many worker processes, one torch thread each
            (a hidden-64 model gains little from a second thread; two single-threaded
            workers roughly double the throughput on two cores).

    Returns:
        Dicts with ``setting``, ``seeds`` (those measured), ``retrieval`` (mean best-layer
        P@1, None if none measured), ``retrieval_min``/``retrieval_max``, ``best_layer``,
        ``word_translation``, ``rotation``, ``mlm_loss`` (held-out, per language, English
        first) and ``retrieval_langs`` (English -> each other language); those two are None
        for runs cached before they were measured.
    """
    if train and jobs > 1:
        missing = [
            config
            for setting in settings
            for seed in seeds
            if load_run(config := get_config(setting, seed=seed, steps=steps, smoke=smoke), root)
            is None
        ]
        train_parallel(missing, jobs=jobs, root=root)
    rows = []
    for setting in settings:
        results = []
        for seed in seeds:
            config = get_config(setting, seed=seed, steps=steps, smoke=smoke)
            r = run(config, root=root, progress=progress) if train else load_run(config, root)
            if r is not None:
                results.append(r)
        row: dict[str, Any] = {"setting": setting, "seeds": [r.config.seed for r in results]}
        if results:
            p = [r.retrieval_best for r in results]
            words = [r.word_translation for r in results if r.word_translation is not None]
            row.update(
                retrieval=float(np.mean(p)), retrieval_min=min(p), retrieval_max=max(p),
                best_layer=Counter(r.best_layer for r in results).most_common(1)[0][0],
                word_translation=float(np.mean(words)) if words else None,
                rotation=float(np.mean([r.rotation for r in results])),
                mlm_loss=_mean_lists([r.mlm_loss for r in results]),
                retrieval_langs=_mean_lists([r.retrieval_langs for r in results]),
            )  # fmt: skip
        else:
            row.update(retrieval=None, retrieval_min=None, retrieval_max=None, best_layer=None,
                       word_translation=None, rotation=None, mlm_loss=None,
                       retrieval_langs=None)  # fmt: skip
        rows.append(row)
    return rows


def _mean_lists(lists: Sequence[list[float] | None]) -> list[float] | None:
    """Return the element-wise mean of equal-length lists (None if any is missing)."""
    if not lists or any(x is None for x in lists):
        return None
    return np.mean(np.array(lists, dtype=float), axis=0).tolist()


def emergence_line(rows: Sequence[dict[str, Any]]) -> str:
    """Return ``emergence standard=S untrained=U ...``: best-layer P@1, mean of seeds.

    A setting not measured yet reads ``nan``.
    """
    by = {r["setting"]: r["retrieval"] for r in rows}
    parts = [
        f"{name}={by[name]:.3f}" if by.get(name) is not None else f"{name}=nan"
        for name in EMERGENCE_LINE
    ]
    return "emergence " + " ".join(parts)
