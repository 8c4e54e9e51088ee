"""Published figures the lessons quote, each with its source.

Every number a lesson shows beside its own measurements that comes from a paper or a model's
documentation lives here, once, with its citation (authors, year, venue, table or section).
Lessons import it (``from xlt_course import published``) and print the citation next to the
figure; modules that need a figure (e.g. :mod:`xlt_course.finetune` for the XNLI gaps) import
it from here too.

Two kinds of entries need care:

- A figure read *second-hand* (from a transcription, not from the source itself) says so in
  :attr:`Citation.second_hand`; a lesson quoting it says so too.
- Where a figure is commonly misquoted, :attr:`Figure.note` says what the misquote is and
  where it comes from (e.g. "mBERT has 110M parameters" is what Google's own README says).

:data:`FIGURES` holds every entry by name; the module-level constants (``XNLI_ZERO_SHOT``,
``CC100_GIB``, ...) are the same values, for code that needs the numbers.

Used in: lessons 01-10 (published figures beside measured ones).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = [
    "CC100_GIB",
    "CC100_TOKENS_M",
    "CC100_TOTAL_TB",
    "DUFTER_SCHUTZE_SMALL_BERT",
    "DUFTER_SCHUTZE_OVERPARAM_BERT",
    "DUFTER_SCHUTZE_OVERPARAM_SCORES",
    "DUFTER_SCHUTZE_STANDARD_RESULTS",
    "FAKE_ENGLISH_OFFSET",
    "FIGURES",
    "MBERT_XNLI_STRATEGIES",
    "MUSE_BLI_P1",
    "PARAMETERS_STATED_M",
    "SAMPLING_ALPHA",
    "XNLI_TRANSLATE_TEST_ROBERTA",
    "XNLI_TRANSLATE_TRAIN_ALL",
    "XNLI_ZERO_SHOT",
    "Citation",
    "Figure",
    "cite",
    "figure",
]


@dataclass(frozen=True)
class Citation:
    """Where a published figure comes from.

    Attributes:
        authors: e.g. ``"Conneau et al."``.
        year: year of publication.
        title: title of the paper or document.
        venue: conference, journal, or for documentation the repository and file.
        location: table, figure or section within the source (``"Table 1"``).
        second_hand: how the figure was read when not from the source itself (empty when it
            was checked in the source).
    """

    authors: str
    year: int
    title: str
    venue: str
    location: str
    second_hand: str = ""

    def __str__(self) -> str:
        text = f"{self.authors} ({self.year}), {self.title}, {self.venue}, {self.location}"
        if self.second_hand:
            text += f" (read second-hand: {self.second_hand})"
        return text


@dataclass(frozen=True)
class Figure:
    """A published figure (a number or a table of numbers) with its citation.

    Attributes:
        description: what the figure measures, in one line.
        value: the figure; a number or a (nested) mapping of numbers.
        unit: e.g. ``"% accuracy"``, ``"P@1 (%)"``, ``"millions of parameters"``.
        citation: where it comes from.
        note: the common misquote it corrects and where that comes from, or a caveat.
    """

    description: str
    value: Any
    unit: str
    citation: Citation
    note: str = ""


# --------------------------------------------------------------------------- sources

_XLMR = dict(
    authors="Conneau et al.",
    year=2020,
    title='"Unsupervised cross-lingual representation learning at scale"',
    venue="ACL",
)
XLMR_TABLE1 = Citation(**_XLMR, location="Table 1 (XNLI accuracy)")
XLMR_TABLE6 = Citation(**_XLMR, location="Appendix A, Table 6 (CC-100 statistics)")
XLMR_TABLE7 = Citation(**_XLMR, location="section 3 and Appendix B, Table 7 (model sizes)")
XLMR_SAMPLING = Citation(**_XLMR, location="sections 3 and 5.1 (language sampling)")
XLMR_CONCLUSION = Citation(**_XLMR, location="section 6 (2.5 TB of CommonCrawl text)")
#: The trade-off named in the abstract ("positive transfer and capacity dilution"); its
#: measurements were not verified here, so lessons quote the words and no figure of it.
XLMR_CURSE = Citation(**_XLMR, location="abstract (the curse of multilinguality)")
MUSE = Citation(
    authors="Conneau, Lample, Ranzato, Denoyer, Jégou",
    year=2018,
    title='"Word translation without parallel data"',
    venue="ICLR",
    location="Table 1",
    second_hand="as reproduced in lecture slides; check the paper before quoting",
)
MBERT_README = Citation(
    authors="Devlin et al. (Google Research)",
    year=2018,
    title='"Multilingual BERT" (a README, not a paper)',
    venue="github.com/google-research/bert, multilingual.md",
    location="list of models and XNLI results table",
)
BERT = Citation(
    authors="Devlin, Chang, Lee, Toutanova",
    year=2019,
    title='"BERT: pre-training of deep bidirectional transformers for language understanding"',
    venue="NAACL",
    location="section 3 (BERT-BASE, 110M parameters)",
)
XLM = Citation(
    authors="Lample, Conneau",
    year=2019,
    title='"Cross-lingual language model pretraining"',
    venue="NeurIPS",
    location="section 3.1 (shared sub-word vocabulary)",
)
K_ET_AL = Citation(
    authors="K, Wang, Mayhew, Roth",
    year=2020,
    title='"Cross-lingual ability of multilingual BERT: an empirical study"',
    venue="ICLR",
    location="the Fake-English construction (authors' code)",
    second_hand="the offset of the authors' code as reported in a summary of the paper",
)

PETROV = Citation(
    authors="Petrov, La Malfa, Torr, Bibi",
    year=2023,
    title='"Language model tokenizers introduce unfairness between languages"',
    venue="NeurIPS",
    location="abstract (tokenization lengths of FLORES-200 parallel sentences)",
)

# --------------------------------------------------------------------------- figures

#: The 15 XNLI languages in the column order of Conneau et al. (2020), Table 1.
_XNLI_LANGS = ("en", "fr", "es", "de", "el", "bg", "ru", "tr", "ar", "vi", "th", "zh", "hi", "sw", "ur")  # fmt: skip


def _row(values: str) -> dict[str, float]:
    numbers = [float(v) for v in values.split()]
    if len(numbers) != len(_XNLI_LANGS):
        raise ValueError(f"an XNLI row has {len(_XNLI_LANGS)} values, got {len(numbers)}")
    return dict(zip(_XNLI_LANGS, numbers, strict=True))


#: Zero-shot XNLI accuracy (%): fine-tuned on English MultiNLI only, tested in 15 languages.
#: XNLI is natural-language inference, not topic classification: compare gaps, not accuracies.
XNLI_ZERO_SHOT: dict[str, dict[str, float]] = {
    "mBERT": _row("82.1 73.8 74.3 71.1 66.4 68.9 69.0 61.6 64.9 69.5 55.8 69.3 60.0 50.4 58.0"),
    "XLM-R Base": _row("85.8 79.7 80.7 78.7 77.5 79.6 78.1 74.2 73.8 76.5 74.6 76.7 72.4 66.5 68.3"),
    "XLM-R Large": _row("89.1 84.1 85.1 83.9 82.9 84.0 81.2 79.6 79.8 80.8 78.1 80.2 76.9 73.9 73.8"),
}  # fmt: skip
#: XNLI accuracy (%) fine-tuned on the English training set and its machine translations into
#: all 14 other languages at once ("translate-train-all").
XNLI_TRANSLATE_TRAIN_ALL: dict[str, dict[str, float]] = {
    "XLM-R Base": _row("85.4 81.4 82.2 80.3 80.4 81.3 79.7 78.6 77.3 79.7 77.9 80.2 76.1 73.1 73.0"),
    "XLM-R Large": _row("89.1 85.1 86.6 85.7 85.3 85.9 83.5 83.2 83.1 83.7 81.5 83.7 81.6 78.0 78.1"),
}  # fmt: skip
#: XNLI accuracy (%) of an English RoBERTa on test sets machine-translated into English.
XNLI_TRANSLATE_TEST_ROBERTA: dict[str, float] = _row(
    "91.3 82.9 84.3 81.2 81.7 83.1 78.3 76.8 76.6 74.2 74.1 77.5 70.9 66.7 66.8"
)
#: XNLI accuracy (%) of mBERT with three strategies (google-research/bert, multilingual.md).
MBERT_XNLI_STRATEGIES: dict[str, dict[str, float]] = {
    "translate-train (cased)": {"en": 81.9, "zh": 76.6, "es": 77.8, "de": 75.9, "ar": 70.7, "ur": 61.6},
    "translate-test (uncased)": {"en": 81.4, "zh": 70.1, "es": 74.9, "de": 74.4, "ar": 70.4, "ur": 62.1},
    "zero-shot (uncased)": {"en": 81.4, "zh": 63.8, "es": 74.3, "de": 70.5, "ar": 62.1, "ur": 58.3},
}  # fmt: skip

#: Word-translation P@1 (%) on MUSE's test dictionaries (fastText Wikipedia vectors, 200k
#: words, source words of frequency rank 5,000-6,500, CSLS with k = 10), by method and pair.
MUSE_BLI_P1: dict[str, dict[str, float]] = {
    "Procrustes, NN": {
        "en-es": 77.4, "es-en": 77.3, "en-fr": 74.9, "fr-en": 76.1, "en-de": 68.4,
        "de-en": 67.7, "en-ru": 47.0, "ru-en": 58.2, "en-zh": 40.6, "zh-en": 30.2,
    },
    "Procrustes, CSLS": {
        "en-es": 81.4, "es-en": 82.9, "en-fr": 81.1, "fr-en": 82.4, "en-de": 73.5,
        "de-en": 72.4, "en-ru": 51.7, "ru-en": 63.7, "en-zh": 42.7, "zh-en": 36.7,
    },
    "adversarial + refinement, CSLS (no dictionary)": {
        "en-es": 81.7, "es-en": 83.3, "en-fr": 82.3, "fr-en": 82.1, "en-de": 74.0,
        "de-en": 72.2, "en-ru": 44.0, "ru-en": 59.1, "en-zh": 32.5, "zh-en": 31.4,
    },
}  # fmt: skip

#: Size of each language's CC-100 text in GiB (the corpus XLM-R was trained on); ``zh`` is
#: Simplified Chinese.
CC100_GIB: dict[str, float] = {
    "en": 300.8, "vi": 137.3, "ru": 278.0, "de": 66.6, "fr": 56.8, "es": 53.3, "pt": 49.1,
    "bg": 57.5, "it": 30.2, "el": 46.9, "ar": 28.0, "tr": 20.9, "th": 71.7, "hi": 20.2,
    "ur": 5.7, "ja": 69.3, "sw": 1.6, "zh": 46.9,
}  # fmt: skip
#: The same table's token counts in millions. Those of languages written without spaces (zh,
#: ja, th) are not comparable with the others' (ja: 69.3 GiB but 530M tokens).
CC100_TOKENS_M: dict[str, float] = {
    "en": 55608, "vi": 24757, "ru": 23408, "de": 10297, "fr": 9780, "es": 9374, "pt": 8405,
    "bg": 5487, "it": 4983, "el": 4285, "ar": 2869, "tr": 2736, "th": 1834, "hi": 1715,
    "ur": 730, "ja": 530, "sw": 275, "zh": 259,
}  # fmt: skip

#: Size of all of CC-100 in terabytes ("2.5 TB of newly created clean CommonCrawl data").
CC100_TOTAL_TB = 2.5

#: Exponent alpha of the language-sampling distribution q_l ∝ p_l^alpha of each model.
SAMPLING_ALPHA: dict[str, float] = {"mBERT": 0.7, "XLM": 0.5, "XLM-R": 0.3}

#: Parameter counts (millions) as their sources state them. Counting from the architecture
#: (lesson 04, ``tokenization.parameter_breakdown``) gives 109.5, 177.9, 278.0 and 559.9.
PARAMETERS_STATED_M: dict[str, dict[str, float]] = {
    "BERT-base (English)": {"Devlin et al. 2019": 110.0, "Conneau et al. 2020, Table 7": 110.0},
    "mBERT": {"google-research/bert multilingual.md": 110.0, "Conneau et al. 2020, Table 7": 172.0},
    "XLM-R Base": {"Conneau et al. 2020, Table 7": 270.0},
    "XLM-R Large": {"Conneau et al. 2020, Table 7": 550.0},
}  # fmt: skip

_DS = dict(
    authors="Dufter, Schütze",
    year=2020,
    title='"Identifying Necessary Elements for BERT\'s Multilinguality"',
    venue="EMNLP",
)
DUFTER_SCHUTZE = Citation(
    **_DS,
    location="experimental setup (small BERT on an English Bible plus Fake-English)",
    second_hand=(
        "the sizes and training length of the authors' released code (github.com/pdufter/"
        "minimult, configs/bert-small.json and run.sh), not the paper's text"
    ),
)

#: Their results, as the paper's section 3 states them in its text (Table 1's figures for the
#: standard model; only the two over-parameterised rows the text names). The tables were not
#: read here: a public reader's notes on the paper transcribe these sentences.
DUFTER_SCHUTZE_RESULTS_CITATION = Citation(
    **_DS,
    location="section 3.1, the text on Table 1 (models 0, 15, 16 and 17)",
    second_hand=(
        "the sentences of section 3.1 that quote Table 1, as transcribed in a reader's public "
        "notes on the paper; the table itself was not read here"
    ),
)

#: D&S's standard model (Table 1, model 0): P@1 at layers 0 and 8, the two layers they report.
DUFTER_SCHUTZE_STANDARD_RESULTS = {
    "sentence_retrieval_layer_8": 0.97,
    "word_translation_layer_0": 0.88,
    "word_translation_layer_8": 0.79,
}

#: D&S's multilinguality score (mean of retrieval and word translation over layers 0 and 8)
#: of the over-parameterised model with language-specific positions (model 16) and with all
#: three architectural modifications (model 17).
DUFTER_SCHUTZE_OVERPARAM_SCORES = {
    "overparam_lang_pos": 0.01,
    "overparam_lang_pos_shift_special_no_random": 0.00,
}

#: Dufter & Schütze's standard small BERT and its training (English + Fake-English Bible).
DUFTER_SCHUTZE_SMALL_BERT = {
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_layers": 12,
    "num_heads": 1,
    "vocab_size": 2048,
    "epochs": 100,
    "batch_size": 256,
    "learning_rate": 2e-3,
}

#: Dufter & Schütze's over-parameterised model (BERT-base sizes) and its training, from the same
#: released code (configs/bert-base.json and run.sh: batch 16 with 16 accumulation steps).
DUFTER_SCHUTZE_OVERPARAM_BERT = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_layers": 12,
    "num_heads": 12,
    "vocab_size": 2048,
    "epochs": 100,
    "batch_size": 256,
    "learning_rate": 1e-4,
}

#: Code-point offset of K et al.'s Fake-English: every character is shifted by it, so no
#: word piece is shared with English while the structure is kept.
FAKE_ENGLISH_OFFSET = 200_000

_MBERT_PARAMS_NOTE = (
    '"mBERT has 110M parameters" comes from Google\'s own README (multilingual.md lists '
    "BERT-Base, Multilingual Cased as 12-layer, 768-hidden, 12-heads, 110M parameters): it "
    "repeats English BERT-base's figure (Devlin et al. 2019, 30,522-piece vocabulary). The "
    "XLM-R paper's Table 7 gives mBERT 172M; counting the released architecture (119,547 "
    "pieces cased) gives 177.9M."
)
_XLMR_PARAMS_NOTE = (
    "270M and 550M are the XLM-R paper's own, rounded figures (section 3 and Table 7, whose "
    "caption says encoder sizes can be approximated by 4LH^2 + 2LH*H_ff + VH, a formula "
    "without biases, LayerNorms or position embeddings); counting the released "
    "architectures (250,002 pieces) gives 278.0M and 559.9M."
)

FIGURES: Mapping[str, Figure] = MappingProxyType(
    {
        "xnli_zero_shot": Figure(
            "zero-shot XNLI accuracy, fine-tuned on English only (mBERT, XLM-R Base, XLM-R Large)",
            XNLI_ZERO_SHOT,
            "% accuracy",
            XLMR_TABLE1,
            "The mBERT row is Devlin et al.'s model as reported in this table.",
        ),
        "xnli_translate_train_all": Figure(
            "XNLI accuracy fine-tuned on English plus its translations into all 14 languages",
            XNLI_TRANSLATE_TRAIN_ALL,
            "% accuracy",
            XLMR_TABLE1,
        ),
        "xnli_translate_test_roberta": Figure(
            "XNLI accuracy of an English RoBERTa on test sets machine-translated into English",
            XNLI_TRANSLATE_TEST_ROBERTA,
            "% accuracy",
            XLMR_TABLE1,
        ),
        "mbert_xnli_strategies": Figure(
            "XNLI accuracy of mBERT: translate-train, translate-test, zero-shot",
            MBERT_XNLI_STRATEGIES,
            "% accuracy",
            MBERT_README,
            "A README table, not a peer-reviewed paper.",
        ),
        "muse_bli_p1": Figure(
            "word-translation P@1 on MUSE's test dictionaries (supervised and unsupervised)",
            MUSE_BLI_P1,
            "P@1 (%)",
            MUSE,
        ),
        "cc100_gib": Figure("size of each language's CC-100 text", CC100_GIB, "GiB", XLMR_TABLE6),
        "cc100_tokens_m": Figure(
            "tokens of each language's CC-100 text",
            CC100_TOKENS_M,
            "millions of tokens",
            XLMR_TABLE6,
            "Token counts of unsegmented scripts (zh, ja, th) are not comparable with sizes.",
        ),
        "cc100_total_tb": Figure(
            "size of all of CC-100, 100 languages", CC100_TOTAL_TB, "TB", XLMR_CONCLUSION
        ),
        "sampling_alpha_mbert": Figure(
            "mBERT's language-sampling exponent, also used to build its WordPiece vocabulary",
            SAMPLING_ALPHA["mBERT"],
            "exponent",
            MBERT_README,
        ),
        "sampling_alpha_xlm": Figure(
            "XLM's exponent for sampling the sentences its shared BPE vocabulary is learnt on",
            SAMPLING_ALPHA["XLM"],
            "exponent",
            XLM,
            "In the paper 0.5 is the exponent for sampling sentences to build the BPE "
            "vocabulary (section 3.1), not a stated exponent for sampling training batches.",
        ),
        "sampling_alpha_xlmr": Figure(
            "XLM-R's language-sampling exponent for pretraining",
            SAMPLING_ALPHA["XLM-R"],
            "exponent",
            XLMR_SAMPLING,
            "A text giving XLM-R 0.7 confuses it with mBERT.",
        ),
        "parameters_bert_base": Figure(
            "parameters of English BERT-base, as stated",
            110.0,
            "millions of parameters",
            BERT,
        ),
        "parameters_mbert_readme": Figure(
            "parameters of mBERT, as stated by Google's README",
            110.0,
            "millions of parameters",
            MBERT_README,
            _MBERT_PARAMS_NOTE,
        ),
        "parameters_mbert_xlmr_paper": Figure(
            "parameters of mBERT, as stated in the XLM-R paper",
            172.0,
            "millions of parameters",
            XLMR_TABLE7,
            _MBERT_PARAMS_NOTE,
        ),
        "parameters_xlmr_base": Figure(
            "parameters of XLM-R Base, as stated",
            270.0,
            "millions of parameters",
            XLMR_TABLE7,
            _XLMR_PARAMS_NOTE,
        ),
        "parameters_xlmr_large": Figure(
            "parameters of XLM-R Large, as stated",
            550.0,
            "millions of parameters",
            XLMR_TABLE7,
            _XLMR_PARAMS_NOTE,
        ),
        "dufter_schutze_small_bert": Figure(
            "Dufter & Schütze's standard small BERT (sizes) and its MLM training on the Bible",
            DUFTER_SCHUTZE_SMALL_BERT,
            "units of each field (sizes, epochs, sequences, learning rate)",
            DUFTER_SCHUTZE,
            "A conclusion that cross-lingual structure needs far larger models contradicts this "
            "paper: its multilinguality appears in this under-parameterised model.",
        ),
        "dufter_schutze_overparam_bert": Figure(
            "Dufter & Schütze's over-parameterised model (BERT-base sizes) on the same Bible",
            DUFTER_SCHUTZE_OVERPARAM_BERT,
            "units of each field (sizes, epochs, sequences, learning rate)",
            DUFTER_SCHUTZE,
            "Section 3.1 says that this model alone (model 15) scores lower than the small one "
            "in word translation but higher in sentence retrieval, and lower overall: "
            "over-parameterisation shows in word translation first.",
        ),
        "dufter_schutze_standard_results": Figure(
            "Dufter & Schütze's standard small BERT (12 layers, 100 epochs): P@1 of sentence "
            "retrieval at layer 8 and of word translation at layers 0 and 8, between English "
            "and Fake-English",
            DUFTER_SCHUTZE_STANDARD_RESULTS,
            "P@1 (0-1), mean of the two directions",
            DUFTER_SCHUTZE_RESULTS_CITATION,
            "Their word translation feeds each piece alone ('[CLS] piece [SEP]') through the "
            "model; the lesson's is measured on the input embeddings, a different measure.",
        ),
        "dufter_schutze_overparam_scores": Figure(
            "Dufter & Schütze's multilinguality score of the over-parameterised model with "
            "language-specific positions, and with all three architectural modifications",
            DUFTER_SCHUTZE_OVERPARAM_SCORES,
            "multilinguality score (0-1): mean of retrieval and word translation P@1 at "
            "layers 0 and 8",
            DUFTER_SCHUTZE_RESULTS_CITATION,
        ),
        "tokenization_premium_max": Figure(
            "largest ratio of tokenization lengths between languages for the same text "
            "(subword tokenizers, including multilingual ones)",
            15.0,
            "times",
            PETROV,
            "An upper end over many languages and tokenizers, not a typical ratio.",
        ),
        "byte_level_premium_max": Figure(
            "largest encoding-length ratio between some language pairs for character- and "
            "byte-level models",
            4.0,
            "times (lower bound: 'over 4 times')",
            PETROV,
        ),
        "fake_english_offset": Figure(
            "code-point shift that turns English into Fake-English (no shared word pieces)",
            FAKE_ENGLISH_OFFSET,
            "code points",
            K_ET_AL,
        ),
    }
)


def figure(name: str) -> Figure:
    """Return the published figure called ``name`` (a key of :data:`FIGURES`).

    Raises:
        KeyError: naming the known figures when ``name`` is not one of them.
    """
    if name not in FIGURES:
        raise KeyError(f"no published figure {name!r}; known: {sorted(FIGURES)}")
    return FIGURES[name]


def cite(name: str) -> str:
    """Return the citation of the figure ``name`` as one line (authors, year, venue, table)."""
    return str(figure(name).citation)
