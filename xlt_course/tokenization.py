"""What a multilingual subword vocabulary shares across languages, and what it costs.

The one implementation the course uses (lesson 04-subwords-and-anchors, its tests, later
lessons) for:

- **fertility**: subword pieces per word of a text (:func:`split_words` defines a word in
  every script, :func:`fertility` counts);
- **type overlap**: the Jaccard index of the sets of piece *types* two languages use on
  comparable text (:func:`type_overlap`, :func:`overlap_matrix`), and the anchors they share,
  grouped by what they are (:func:`piece_category`, :func:`shared_anchors`);
- **parameter counts** of BERT-style encoders measured from their configurations alone, on
  PyTorch's meta device (:func:`published_config`, :func:`parameter_breakdown`);
- **small vocabularies**, WordPiece as in mBERT (the course's own reproducible trainer,
  :func:`wordpiece_vocab`, also lesson 05's) and Unigram as in XLM-R's SentencePiece (the
  Hugging Face ``tokenizers`` library) on a corpus whose languages are sampled
  with an exponent ``alpha`` (:func:`sample_corpus`, :func:`train_vocab`, :func:`vocab_sweep`).

Methods follow the papers, not any released code: WordPiece (Schuster & Nakajima 2012; Wu
et al. 2016), the Unigram language-model tokenizer (Kudo 2018, ACL), exponentially smoothed
language sampling (Devlin et al. 2019, mBERT's multilingual README; Conneau & Lample 2019;
Conneau et al. 2020), fertility as subwords per word (Ács 2019; Rust et al. 2021, ACL).

Pieces are the strings a tokenizer returns without special tokens: SentencePiece marks a
word start with ``▁`` (U+2581), WordPiece marks a continuation with ``##``.
Importing this module imports neither torch, transformers nor tokenizers.
"""

from __future__ import annotations

import json
import math
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PretrainedConfig

__all__ = [
    "CATEGORIES",
    "CJK_CHARS",
    "PUBLISHED_MILLIONS",
    "SCRIPTS",
    "VOCAB_SWEEP_VERSION",
    "VocabConfig",
    "fertility",
    "is_cjk",
    "is_content_piece",
    "overlap_matrix",
    "parameter_breakdown",
    "piece_category",
    "published_config",
    "sample_corpus",
    "shared_anchors",
    "split_words",
    "token_coverage",
    "tokenize_corpus",
    "train_vocab",
    "type_overlap",
    "vocab_sweep",
    "wordpiece_vocab",
]

Category = Literal["digit", "punctuation", "latin", "cyrillic", "han", "kana", "other"]
#: Anchor categories, in the order :func:`shared_anchors` returns them.
CATEGORIES: tuple[Category, ...] = (
    "digit", "punctuation", "latin", "cyrillic", "han", "kana", "other",
)  # fmt: skip

#: The script each course language is written in (``ja`` mixes kana and Han characters).
SCRIPTS: dict[str, str] = {
    "en": "Latin", "fr": "Latin", "de": "Latin", "es": "Latin", "it": "Latin", "pt": "Latin",
    "ru": "Cyrillic", "zh": "Han", "ja": "Kana + Han",
}  # fmt: skip

#: Hiragana, katakana, CJK Extension A, CJK Unified Ideographs, CJK Compatibility Ideographs.
CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK = re.compile(f"[{CJK_CHARS}]")
_WORD_RUN = re.compile(r"[^\W_]+")  # maximal runs of letters and digits (no underscore)
_MARKERS = ("▁", "##")

ModelName = Literal[
    "bert-base-uncased",
    "bert-base-multilingual-cased",
    "bert-base-multilingual-uncased",
    "xlm-roberta-base",
    "xlm-roberta-large",
]

#: Parameter counts (millions) counted from the architectures with :func:`parameter_breakdown`
#: (not the sources' own, rounded figures: see ``published.PARAMETERS_STATED_M``).
PUBLISHED_MILLIONS: dict[str, float] = {
    "bert-base-uncased": 109.5,
    "bert-base-multilingual-cased": 177.9,
    "bert-base-multilingual-uncased": 167.4,
    "xlm-roberta-base": 278.0,
    "xlm-roberta-large": 559.9,
}


# --------------------------------------------------------------------------- words, fertility


def is_cjk(ch: str) -> bool:
    """Return True for a Han, hiragana or katakana character (one word each, see split_words)."""
    return bool(_CJK.fullmatch(ch))


def split_words(text: str) -> list[str]:
    """Split ``text`` into words, in any of the course's scripts.

    A word is a maximal run of letters and digits (``str.isalnum``; underscores and
    punctuation separate words), except that every Han or kana character is a word of its
    own: Chinese and Japanese are written without spaces, and a character is the only unit
    that needs no dictionary. Latin runs inside Chinese text (``GTK``, ``TRUE``) stay words.

    Args:
        text: one sentence.

    Returns:
        The words, in order.

    Used in: lesson 04-subwords-and-anchors, exercise 1.
    """
    words: list[str] = []
    for run in _WORD_RUN.findall(text):
        start = 0
        for i, ch in enumerate(run):
            if _CJK.match(ch):
                if i > start:
                    words.append(run[start:i])
                words.append(ch)
                start = i + 1
        if start < len(run):
            words.append(run[start:])
    return words


def is_content_piece(piece: str) -> bool:
    """Return True when a piece holds at least one letter or digit (not ``▁``, ``.``, ``▁(``)."""
    return any(ch.isalnum() for ch in piece)


def fertility(texts: Sequence[str], pieces: Sequence[Sequence[str]]) -> float:
    """Return subword pieces per word over a corpus: total content pieces / total words.

    Args:
        texts: n sentences.
        pieces: n piece lists, ``pieces[i]`` the tokenization of ``texts[i]`` without
            special tokens. Only content pieces count (:func:`is_content_piece`), so
            punctuation and bare ``▁`` markers, which are not words either, are left out.

    Returns:
        The ratio of totals (not a mean of per-sentence ratios, which would overweight
        short sentences). For Chinese and Japanese it is pieces per character.

    Raises:
        ValueError: lengths differ, or the texts hold no word.

    Used in: lesson 04-subwords-and-anchors, exercise 1.
    """
    if len(texts) != len(pieces):
        raise ValueError(f"texts has {len(texts)} sentences but pieces {len(pieces)}")
    n_words = sum(len(split_words(t)) for t in texts)
    if n_words == 0:
        raise ValueError("the texts hold no word: fertility is undefined")
    n_pieces = sum(is_content_piece(p) for ps in pieces for p in ps)
    return n_pieces / n_words


def tokenize_corpus(tokenizer: Any, texts: Sequence[str]) -> list[list[str]]:
    """Tokenize ``texts`` into piece strings, without special tokens.

    Args:
        tokenizer: a ``transformers`` tokenizer (from :func:`xlt_course.models.load_tokenizer`,
            e.g. XLM-R offline or ``"bert-base-multilingual-cased"`` on Colab) or a
            ``tokenizers.Tokenizer`` (from :func:`train_vocab`).
        texts: n sentences.

    Returns:
        n lists of pieces (``▁``/``##`` markers kept).
    """
    from tokenizers import Tokenizer

    texts = list(texts)
    if isinstance(tokenizer, Tokenizer):
        return [e.tokens for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [tokenizer.convert_ids_to_tokens(row) for row in ids]


# --------------------------------------------------------------------------- overlap, anchors


def _flat(pieces: Iterable[Any]) -> list[str]:
    """Flatten a list of piece lists (one per sentence) or pass a flat list through."""
    out: list[str] = []
    for p in pieces:
        if isinstance(p, str):
            out.append(p)
        else:
            out.extend(p)
    return out


def type_overlap(pieces_a: Iterable[Any], pieces_b: Iterable[Any]) -> float:
    """Return the Jaccard index of the piece types of two texts: |A ∩ B| / |A ∪ B|.

    Types are distinct strings: a piece used 500 times counts once. Over tokens, the
    frequent punctuation and digits would dominate the figure.

    Args:
        pieces_a, pieces_b: the pieces of each text, flat or one list per sentence.

    Returns:
        A value in [0, 1]; 0.0 when both are empty.

    Used in: lesson 04-subwords-and-anchors, exercise 2.
    """
    a, b = set(_flat(pieces_a)), set(_flat(pieces_b))
    union = a | b
    return len(a & b) / len(union) if union else 0.0


def token_coverage(pieces_a: Iterable[Any], pieces_b: Iterable[Any]) -> float:
    """Return the share of A's piece *tokens* whose type also occurs in B (asymmetric).

    Shown beside :func:`type_overlap` in lesson 04 to make the tokens-vs-types difference
    visible: it is dominated by a few frequent shared pieces.
    """
    a, b = _flat(pieces_a), set(_flat(pieces_b))
    return sum(p in b for p in a) / len(a) if a else 0.0


def overlap_matrix(
    pieces_by_lang: Mapping[str, Iterable[Any]],
) -> tuple[list[str], np.ndarray]:
    """Return the languages and their (L, L) matrix of :func:`type_overlap` values.

    Args:
        pieces_by_lang: ``{lang: pieces}``, comparable texts (e.g. the same parallel items).

    Returns:
        ``(langs, M)`` with ``M[i, j]`` the Jaccard index of languages i and j, 1 on the
        diagonal (for a language with at least one piece), symmetric.
    """
    langs = list(pieces_by_lang)
    types = [set(_flat(pieces_by_lang[lang])) for lang in langs]
    M = np.zeros((len(langs), len(langs)))
    for i, a in enumerate(types):
        for j, b in enumerate(types):
            union = a | b
            M[i, j] = len(a & b) / len(union) if union else 0.0
    return langs, M


def piece_category(piece: str) -> Category | None:
    """Return what a piece is: a digit, punctuation, or letters of which script.

    Rule (first match wins): strip one leading ``▁`` or ``##`` marker (nothing left: None,
    the marker alone is no anchor); any decimal digit -> ``digit``; no letter ->
    ``punctuation``; else the script of its first letter by Unicode name: ``LATIN`` ->
    ``latin``, ``CYRILLIC`` -> ``cyrillic``, ``CJK`` -> ``han``, ``HIRAGANA``/``KATAKANA``
    -> ``kana``, anything else -> ``other``.

    Used in: lesson 04-subwords-and-anchors, exercise 3.
    """
    for marker in _MARKERS:
        if piece.startswith(marker):
            piece = piece[len(marker) :]
            break
    if not piece:
        return None
    if any(ch.isdigit() for ch in piece):
        return "digit"
    letter = next((ch for ch in piece if ch.isalpha()), None)
    if letter is None:
        return "punctuation"
    script = unicodedata.name(letter, "").split(" ")[0]
    return {
        "LATIN": "latin",
        "CYRILLIC": "cyrillic",
        "CJK": "han",
        "HIRAGANA": "kana",
        "KATAKANA": "kana",
    }.get(script, "other")  # type: ignore[return-value]


def shared_anchors(pieces_a: Iterable[Any], pieces_b: Iterable[Any]) -> dict[str, list[str]]:
    """Return the piece types two texts share, grouped by :func:`piece_category`.

    Args:
        pieces_a, pieces_b: the pieces of each text, flat or one list per sentence.

    Returns:
        ``{category: types}`` with every key of :data:`CATEGORIES` (possibly empty lists);
        each list holds distinct shared types, most useful first: by descending
        ``min(count in A, count in B)`` (an anchor is only as frequent as its rarer side),
        ties by the piece string.

    Used in: lesson 04-subwords-and-anchors, exercise 3.
    """
    ca, cb = Counter(_flat(pieces_a)), Counter(_flat(pieces_b))
    out: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    for piece in ca.keys() & cb.keys():
        cat = piece_category(piece)
        if cat is not None:
            out[cat].append(piece)
    for cat in out:
        out[cat].sort(key=lambda p: (-min(ca[p], cb[p]), p))
    return out


# --------------------------------------------------------------------------- parameter counts


def published_config(name: ModelName) -> PretrainedConfig:
    """Build the configuration of a published encoder by hand (no download).

    Hyper-parameters are those of the published ``config.json`` files: BERT-base is 12
    layers, hidden 768, 12 heads, feed-forward 3072, 512 positions, 2 token types (Devlin
    et al. 2019); XLM-R keeps RoBERTa's 514 positions (2 reserved for the padding offset) and
    a single token type (Conneau et al. 2020), Large is 24 layers, hidden 1024, 16 heads,
    feed-forward 4096. Vocabularies: 30,522 (English BERT uncased), 119,547 (mBERT cased),
    105,879 (mBERT uncased), 250,002 (XLM-R).

    Args:
        name: the Hugging Face hub id the configuration stands for.

    Returns:
        A ``BertConfig`` or ``XLMRobertaConfig``.
    """
    from transformers import BertConfig, XLMRobertaConfig

    bert = {"bert-base-uncased": 30522, "bert-base-multilingual-cased": 119547,
            "bert-base-multilingual-uncased": 105879}  # fmt: skip
    if name in bert:
        return BertConfig(
            vocab_size=bert[name],
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=512,
            type_vocab_size=2,
        )
    sizes = {"xlm-roberta-base": (768, 12, 12, 3072), "xlm-roberta-large": (1024, 24, 16, 4096)}
    if name not in sizes:
        raise ValueError(f"name must be one of {sorted([*bert, *sizes])}, got {name!r}")
    hidden, layers, heads, ffn = sizes[name]
    return XLMRobertaConfig(
        vocab_size=250002,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        max_position_embeddings=514,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )


def parameter_breakdown(config: PretrainedConfig) -> dict[str, int]:
    """Count an encoder's parameters by building it on the meta device (no memory, no weights).

    Args:
        config: a ``BertConfig`` or ``XLMRobertaConfig`` (e.g. :func:`published_config`, or
            ``AutoConfig.from_pretrained(hub_id)`` on Colab).

    Returns:
        ``word_embeddings``, ``position_embeddings``, ``token_type_embeddings``,
        ``embedding_layernorm``, their sum ``embeddings``; ``layers`` (all transformer
        layers); ``pooler``; ``total`` (the bare ``AutoModel``: embeddings + layers + pooler);
        ``mlm_head``, what the masked-LM model adds on top of the encoder without pooler
        (its decoder matrix is tied to the word embeddings, so only the transform, its
        LayerNorm and the output bias count).

    Used in: lesson 04-subwords-and-anchors, exercise 4.
    """
    import torch
    from transformers import BertForMaskedLM, BertModel, XLMRobertaForMaskedLM, XLMRobertaModel

    classes = {"bert": (BertModel, BertForMaskedLM),
               "xlm-roberta": (XLMRobertaModel, XLMRobertaForMaskedLM)}  # fmt: skip
    if config.model_type not in classes:
        raise ValueError(
            f"config.model_type must be one of {sorted(classes)}, got {config.model_type!r}"
        )
    base_cls, mlm_cls = classes[config.model_type]
    with torch.device("meta"):
        base = base_cls(config)
        mlm = mlm_cls(config)
    counts: dict[str, int] = {
        "word_embeddings": 0,
        "position_embeddings": 0,
        "token_type_embeddings": 0,
        "embedding_layernorm": 0,
        "layers": 0,
        "pooler": 0,
    }
    for name, p in base.named_parameters():
        head, _, rest = name.partition(".")
        if head == "embeddings":
            key = rest.split(".")[0]
            counts["embedding_layernorm" if key == "LayerNorm" else key] += p.numel()
        elif head == "encoder":
            counts["layers"] += p.numel()
        elif head == "pooler":
            counts["pooler"] += p.numel()
        else:
            raise ValueError(f"unexpected parameter {name!r} in {base_cls.__name__}")
    counts["embeddings"] = sum(
        counts[k]
        for k in ("word_embeddings", "position_embeddings", "token_type_embeddings",
                  "embedding_layernorm")
    )  # fmt: skip
    counts["total"] = counts["embeddings"] + counts["layers"] + counts["pooler"]
    # parameters() yields a tied tensor once: the decoder shares the word-embedding matrix.
    n_mlm = sum(p.numel() for p in mlm.parameters())
    counts["mlm_head"] = n_mlm - (counts["total"] - counts["pooler"])
    return counts


# --------------------------------------------------------------------------- small vocabularies

VocabKind = Literal["wordpiece", "unigram"]

#: Part of every :func:`vocab_sweep` cache key: rows computed by another version of the
#: training code are never read (2: WordPiece by :func:`wordpiece_vocab`, not ``tokenizers``).
VOCAB_SWEEP_VERSION = 2


@dataclass(frozen=True)
class VocabConfig:
    """One small vocabulary to train.

    Attributes:
        kind: ``wordpiece`` (mBERT's algorithm, BERT pre-tokenization that isolates Han
            characters) or ``unigram`` (XLM-R's SentencePiece algorithm, ``▁`` word starts,
            NFKC normalisation).
        vocab_size: the target number of pieces (Unigram may stop below it on a small corpus).
        alpha: language-sampling exponent, q_l ∝ n_l^alpha.
        budget: sentences in the sampled training corpus.
        seed: the sampling seed.
    """

    kind: VocabKind
    vocab_size: int
    alpha: float
    budget: int = 4000
    seed: int = 0


def sample_corpus(
    texts_by_lang: Mapping[str, Sequence[str]], alpha: float, budget: int, seed: int = 0
) -> tuple[list[str], dict[str, int]]:
    """Draw a multilingual training corpus of ``budget`` sentences with q_l ∝ n_l^alpha.

    n_l is the number of sentences available in language l. Language l gets
    ``round(budget * q_l)`` sentences (largest remainders make the total exact): whole
    copies of its texts while it needs more than it has (upsampling, the point of
    alpha < 1), then a random subset without replacement.

    Args:
        texts_by_lang: ``{lang: sentences}``.
        alpha: the sampling exponent (1 = proportional to size, 0 = uniform over languages).
        budget: total sentences to draw.
        seed: the random seed.

    Returns:
        ``(corpus, counts)``: the shuffled sentences and how many each language got.
    """
    from xlt_course.sampling import language_probabilities

    sizes = {lang: len(t) for lang, t in texts_by_lang.items()}
    q = language_probabilities([sizes[lang] for lang in sizes], alpha)
    exact = {lang: budget * float(q_l) for lang, q_l in zip(sizes, q, strict=True)}
    counts = {lang: int(math.floor(x)) for lang, x in exact.items()}
    rest = budget - sum(counts.values())
    for lang in sorted(exact, key=lambda la: counts[la] - exact[la])[:rest]:
        counts[lang] += 1
    rng = np.random.default_rng(seed)
    corpus: list[str] = []
    for lang, k in counts.items():
        texts = list(texts_by_lang[lang])
        if not texts:
            continue
        copies, extra = divmod(k, len(texts))
        corpus += texts * copies
        corpus += [texts[i] for i in rng.choice(len(texts), size=extra, replace=False)]
    order = rng.permutation(len(corpus))
    return [corpus[i] for i in order], counts


def wordpiece_vocab(
    texts: Iterable[str],
    vocab_size: int,
    *,
    special_tokens: Sequence[str] = ("[UNK]",),
    min_frequency: int = 2,
    pre_tokenize: Callable[[str], list[str]] = str.split,
) -> list[str]:
    """Learn a WordPiece vocabulary by merging the most frequent pair of pieces, reproducibly.

    The algorithm of ``tokenizers``' WordPieceTrainer (BPE merges counted over the words,
    continuation pieces marked ``##``), with ties between equally frequent pairs broken
    alphabetically: that trainer breaks them in hash-table order, which changes from one
    process to the next, so two runs on the same corpus would not get the same vocabulary
    (lesson 05's checkpoints and lesson 04's cached sweep must be reproducible).

    Args:
        texts: training sentences.
        vocab_size: most entries, special tokens and single characters included.
        special_tokens: the first entries, in this order (e.g. ``[UNK]``, ``[PAD]``).
        min_frequency: fewest occurrences of a pair to merge it (1: any pair that occurs).
        pre_tokenize: cuts a sentence into the words pieces never cross (default: at
            whitespace); a tokenizer that normalises text must train on normalised words.

    Returns:
        The pieces: ``special_tokens``, the characters (word-initial and ``##``), then the
        merges in the order they were learned.

    Used in: lesson 04-subwords-and-anchors (:func:`train_vocab`), lesson
    05-multilingual-pretraining (``pretrain.train_tokenizer``).
    """
    import heapq
    from collections import defaultdict
    from itertools import pairwise

    if len(set(special_tokens)) != len(special_tokens):
        raise ValueError(f"special_tokens repeat an entry: {list(special_tokens)}")
    counts = Counter(w for t in texts for w in pre_tokenize(t))
    words = sorted(counts)
    freq = [counts[w] for w in words]
    symbols = [[w[0], *("##" + c for c in w[1:])] for w in words]
    alphabet = {s for syms in symbols for s in syms} - set(special_tokens)
    vocab = [*special_tokens, *sorted(alphabet)]
    if len(vocab) > vocab_size:
        raise ValueError(
            f"vocab_size {vocab_size} is smaller than the {len(vocab)} special tokens and "
            "characters of the corpus"
        )
    known = set(vocab)
    pair_count: dict[tuple[str, str], int] = defaultdict(int)
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, syms in enumerate(symbols):
        for pair in pairwise(syms):
            pair_count[pair] += freq[i]
            where[pair].add(i)
    heap = [(-c, a, b) for (a, b), c in pair_count.items()]
    heapq.heapify(heap)
    while heap and len(vocab) < vocab_size:
        neg, a, b = heapq.heappop(heap)
        current = pair_count.get((a, b), 0)
        if current != -neg:  # a stale entry: its count changed since it was pushed
            if current > 0:
                heapq.heappush(heap, (-current, a, b))
            continue
        if current < min_frequency:
            break
        merged = a + b[2:]  # b is always a continuation piece "##..."
        if merged not in known:
            vocab.append(merged)
            known.add(merged)
        for i in sorted(where.pop((a, b))):
            old = symbols[i]
            for pair in pairwise(old):
                pair_count[pair] -= freq[i]
                where[pair].discard(i)
            new: list[str] = []
            j = 0
            while j < len(old):
                if j + 1 < len(old) and old[j] == a and old[j + 1] == b:
                    new.append(merged)
                    j += 2
                else:
                    new.append(old[j])
                    j += 1
            symbols[i] = new
            for pair in pairwise(new):
                pair_count[pair] += freq[i]
                where[pair].add(i)
                heapq.heappush(heap, (-pair_count[pair], *pair))
        pair_count.pop((a, b), None)
        where.pop((a, b), None)
    return vocab


def train_vocab(corpus: Sequence[str], kind: VocabKind, vocab_size: int) -> Tokenizer:
    """Train a WordPiece or Unigram vocabulary on ``corpus``.

    WordPiece is learnt by :func:`wordpiece_vocab` (the same vocabulary in every process),
    Unigram by ``tokenizers``' UnigramTrainer.

    Args:
        corpus: training sentences.
        kind: ``wordpiece`` (mBERT-style: cased, accents kept, Han characters isolated,
            split on whitespace and punctuation, ``##`` continuations, ``[UNK]`` for a word
            it cannot spell) or ``unigram`` (XLM-R-style: NFKC, ``▁`` marks word starts,
            spaces are not required, so Chinese and Japanese pieces may span characters).
        vocab_size: target vocabulary size.

    Returns:
        The trained ``tokenizers.Tokenizer`` (its unknown token is ``[UNK]``/``<unk>``).

    Used in: lesson 04-subwords-and-anchors, section 7.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if kind == "wordpiece":
        normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
        )
        pre_tokenizer = pre_tokenizers.BertPreTokenizer()

        def words(text: str) -> list[str]:
            return [w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))]

        # min_frequency 1: merge any pair that occurs, as tokenizers' trainer does by default
        vocab = wordpiece_vocab(corpus, vocab_size, min_frequency=1, pre_tokenize=words)
        tok = Tokenizer(
            models.WordPiece({piece: i for i, piece in enumerate(vocab)}, unk_token="[UNK]")
        )
        tok.normalizer = normalizer
        tok.pre_tokenizer = pre_tokenizer
        tok.decoder = decoders.WordPiece()
        return tok
    if kind == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=["<unk>"], unk_token="<unk>", show_progress=False
        )
        tok.train_from_iterator(list(corpus), trainer)
        return tok
    raise ValueError(f"kind must be 'wordpiece' or 'unigram', got {kind!r}")


def _unknown_rate(tok: Tokenizer, texts: Sequence[str]) -> float:
    unk = next(u for u in ("[UNK]", "<unk>") if tok.token_to_id(u) is not None)
    unk_id = tok.token_to_id(unk)
    enc = tok.encode_batch(list(texts), add_special_tokens=False)
    n = sum(len(e.ids) for e in enc)
    return sum(i == unk_id for e in enc for i in e.ids) / max(n, 1)


def evaluate_vocab(
    tok: Tokenizer, parallel: Mapping[str, Sequence[str]], pairs: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """Measure a vocabulary on parallel text: fertility, unknown rate and overlaps.

    Returns:
        ``{"vocab": size, "fertility": {lang: f}, "unk": {lang: rate},
        "overlap": {"a-b": jaccard}, "mean_overlap": mean over all language pairs}``.
    """
    pieces = {lang: tokenize_corpus(tok, texts) for lang, texts in parallel.items()}
    langs, M = overlap_matrix(pieces)
    iu = np.triu_indices(len(langs), k=1)
    return {
        "vocab": tok.get_vocab_size(),
        "fertility": {lang: fertility(parallel[lang], pieces[lang]) for lang in langs},
        "unk": {lang: _unknown_rate(tok, parallel[lang]) for lang in langs},
        "overlap": {f"{a}-{b}": type_overlap(pieces[a], pieces[b]) for a, b in pairs},
        "mean_overlap": float(M[iu].mean()) if len(langs) > 1 else float("nan"),
    }


def vocab_sweep(
    configs: Sequence[VocabConfig],
    train_texts: Mapping[str, Sequence[str]],
    parallel: Mapping[str, Sequence[str]],
    *,
    pairs: Sequence[tuple[str, str]] = (("en", "fr"), ("en", "ru"), ("zh", "ja")),
    cache: Path | None = None,
    train: bool = True,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train and evaluate one vocabulary per config, reusing cached results.

    Args:
        configs: the vocabularies to train.
        train_texts: ``{lang: sentences}`` to sample from (their sizes are the n_l).
        parallel: ``{lang: sentences}`` held-out parallel text to measure on.
        pairs: language pairs whose overlap is reported.
        cache: a JSON file of results keyed by a fingerprint of config, data and
            :data:`VOCAB_SWEEP_VERSION`; rows found there are not recomputed, new rows are
            added (written atomically).
        train: False returns only cached rows (the grader never trains).
        progress: show a tqdm bar.

    Returns:
        One row per config (those missing from the cache are left out when ``train`` is
        False): the config's fields, ``counts`` per language, ``seconds`` to train, and the
        fields of :func:`evaluate_vocab`.
    """
    from tqdm.auto import tqdm

    from xlt_course.data.manifest import atomic_path
    from xlt_course.training import fingerprint

    stored: dict[str, Any] = {}
    if cache is not None and cache.exists():
        stored = json.loads(cache.read_text(encoding="utf-8"))
    data_key = fingerprint(
        [{k: list(v) for k, v in train_texts.items()}, {k: list(v) for k, v in parallel.items()},
         [list(p) for p in pairs]]
    )[:16]  # fmt: skip
    rows: list[dict[str, Any]] = []
    dirty = False
    for cfg in tqdm(configs, desc="vocabularies", unit="vocab", disable=not progress):
        key = fingerprint([asdict(cfg), data_key, VOCAB_SWEEP_VERSION])[:16]
        if key not in stored:
            if not train:
                continue
            corpus, counts = sample_corpus(train_texts, cfg.alpha, cfg.budget, cfg.seed)
            t0 = time.perf_counter()
            tok = train_vocab(corpus, cfg.kind, cfg.vocab_size)
            seconds = time.perf_counter() - t0
            stored[key] = {
                **asdict(cfg),
                "counts": counts,
                "seconds": seconds,
                **evaluate_vocab(tok, parallel, pairs),
            }
            dirty = True
        rows.append(stored[key])
    if cache is not None and dirty:
        with atomic_path(cache) as tmp:
            tmp.write_text(json.dumps(stored, indent=1, sort_keys=True), encoding="utf-8")
    return rows
