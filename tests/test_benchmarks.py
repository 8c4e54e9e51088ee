"""Public benchmarks (:mod:`xlt_course.benchmarks`) and ``xlt-course finetune`` on XLM-R.

Everything runs offline on real code: a tiny randomly initialised XLM-R (2 layers, 16 dims)
saved to a folder with the real 250,002-piece XLM-R tokenizer the course ships, and small
datasets written with ``datasets`` in the hub's schema (``save_to_disk`` and parquet), one
folder per language as ``--data DIR`` expects. No mocks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")
torch = pytest.importorskip("torch")

from tiny_models import tiny_xlmr, xlmr_tokenizer  # noqa: E402

from autograder import cli as course_cli  # noqa: E402
from xlt_course import benchmarks as bm  # noqa: E402
from xlt_course import training as tr  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# XNLI-like pairs whose label the hypothesis' last word decides, in two "languages".
CUES = {"en": ("always", "perhaps", "never"), "fr": ("toujours", "peut-être", "jamais")}
SUBJECTS = {"en": ["the cat", "a man", "my friend", "the city", "our team", "the river"],
            "fr": ["le chat", "un homme", "mon ami", "la ville", "notre équipe", "la rivière"]}  # fmt: skip
NAMES = ["Paris", "Berlin", "Alice", "Bob", "Google", "Siemens"]
NAME_TAG = {"Paris": 5, "Berlin": 5, "Alice": 1, "Bob": 1, "Google": 3, "Siemens": 3}
FILLER = {"en": ["lives", "in", "works", "for", "the", "near"],
          "fr": ["habite", "à", "travaille", "pour", "le", "près"]}  # fmt: skip


def xnli_rows(lang: str, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    premise = [str(rng.choice(SUBJECTS[lang])) + " sleeps" for _ in range(n)]
    hypothesis = [f"{rng.choice(SUBJECTS[lang])} {CUES[lang][y]}" for y in labels]
    return {"premise": premise, "hypothesis": hypothesis, "label": labels.tolist()}


def wikiann_rows(lang: str, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    tokens, tags, spans = [], [], []
    for _ in range(n):
        words, labels = [], []
        for _ in range(int(rng.integers(3, 8))):
            if rng.random() < 0.3:
                name = str(rng.choice(NAMES))
                words.append(name)
                labels.append(NAME_TAG[name])
            else:
                words.append(str(rng.choice(FILLER[lang])))
                labels.append(0)
        tokens.append(words)
        tags.append(labels)
        spans.append(
            [f"{bm.WIKIANN_LABELS[t][2:]}: {w}" for w, t in zip(words, labels, strict=True) if t]
        )
    return {"tokens": tokens, "ner_tags": tags, "langs": [[lang] * len(t) for t in tokens],
            "spans": spans}  # fmt: skip


XNLI_FEATURES = datasets.Features({
    "premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
    "label": datasets.ClassLabel(names=list(bm.XNLI_LABELS)),
})  # fmt: skip
WIKIANN_FEATURES = datasets.Features({
    "tokens": datasets.Sequence(datasets.Value("string")),
    "ner_tags": datasets.Sequence(datasets.ClassLabel(names=list(bm.WIKIANN_LABELS))),
    "langs": datasets.Sequence(datasets.Value("string")),
    "spans": datasets.Sequence(datasets.Value("string")),
})  # fmt: skip


def write_language(folder: Path, make, features, lang: str, how: str, n=(48, 24, 24)) -> None:
    """Write one language in the hub's schema: ``save_to_disk`` or the hub's parquet names."""
    dd = datasets.DatasetDict({
        split: datasets.Dataset.from_dict(make(lang, k, seed), features=features)
        for split, k, seed in zip(("train", "validation", "test"), n, (0, 1, 2), strict=True)
    })  # fmt: skip
    if how == "disk":
        dd.save_to_disk(str(folder / lang))
    else:
        (folder / lang).mkdir(parents=True)
        for split, ds in dd.items():
            ds.to_parquet(str(folder / lang / f"{split}-00000-of-00001.parquet"))


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return xlmr_tokenizer(tmp_path_factory.mktemp("xlmr-tokenizer"))


@pytest.fixture(scope="module")
def xlmr(tmp_path_factory, tok) -> str:
    """A tiny random XLMRobertaModel folder (the encoder a benchmark run starts from)."""
    return tiny_xlmr(tmp_path_factory.mktemp("tiny") / "xlmr", tok, "base")


@pytest.fixture(scope="module")
def xnli_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("xnli")
    write_language(root, xnli_rows, XNLI_FEATURES, "en", "disk", n=(96, 24, 24))
    write_language(root, xnli_rows, XNLI_FEATURES, "fr", "parquet")
    return root


@pytest.fixture(scope="module")
def wikiann_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wikiann")
    write_language(root, wikiann_rows, WIKIANN_FEATURES, "en", "parquet")
    write_language(root, wikiann_rows, WIKIANN_FEATURES, "fr", "disk")
    return root


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Each test caches under its own folder (the course's data/cache is left alone)."""
    monkeypatch.setattr(tr.paths, "cache_dir", lambda: tmp_path / "cache")


def cfg(model: str, **kw) -> tr.FinetuneConfig:
    base = dict(model=model, epochs=2, batch_size=8, learning_rate=3e-3, freeze="none",
                warmup_ratio=0.0, device="cpu", num_threads=1, progress=False, max_length=32)  # fmt: skip
    return tr.FinetuneConfig(**{**base, **kw})


# --------------------------------------------------------------------------- loading


def test_loader_reads_save_to_disk_and_parquet_in_the_hub_schema(xnli_dir, wikiann_dir):
    en = bm.load_language("xnli", "en", "train", data=xnli_dir)  # save_to_disk
    fr = bm.load_language("xnli", "fr", "test", data=xnli_dir)  # parquet
    assert isinstance(en, tr.PairSplit) and len(en) == 96 and len(fr) == 24
    assert en.label_names == ("entailment", "neutral", "contradiction")
    assert en.texts_b[0].split()[-1] == CUES["en"][en.labels[0]]
    ner = bm.load_benchmark("wikiann", ["en", "fr"], "validation", data=wikiann_dir)
    assert isinstance(ner["en"], tr.TokenSplit) and len(ner["fr"]) == 24
    assert ner["en"].label_names[:3] == ("O", "B-PER", "I-PER")
    first = ner["en"].words[0]
    assert [NAME_TAG.get(w, 0) for w in first] == ner["en"].tags[0]


def test_word_labels_sit_on_the_first_subword_only(tok):
    split = tr.TokenSplit("en", [["Siemens", "unbelievably", "x"]], [[3, 0, 0]],
                          bm.WIKIANN_LABELS, ["s0"])  # fmt: skip
    enc = tr.encode_split(tok, split, 32)
    ids, labels = enc.input_ids[0], enc.token_labels[0]
    assert len(ids) == len(labels) and labels[0] == labels[-1] == tr.IGNORE_INDEX  # <s>, </s>
    words = tok([["Siemens", "unbelievably", "x"]], is_split_into_words=True).word_ids(0)
    firsts = [i for i, w in enumerate(words) if w is not None and (i == 0 or words[i - 1] != w)]
    assert [labels[i] for i in firsts] == [3, 0, 0]
    assert sum(x != tr.IGNORE_INDEX for x in labels) == 3 < len(ids) - 2  # sub-words ignored
    pairs = tr.encode_split(tok, tr.PairSplit("en", ["a cat"], ["no dog"], np.array([1]),
                                              bm.XNLI_LABELS, ["p0"]), 32)  # fmt: skip
    assert pairs.input_ids[0] == tok("a cat", "no dog")["input_ids"]  # <s> A </s></s> B </s>


def test_bad_data_gets_one_clear_error(tmp_path, xnli_dir, wikiann_dir):
    with pytest.raises(bm.BenchmarkError, match="no folder for language 'de'.*found: en, fr"):
        bm.load_language("xnli", "de", data=xnli_dir)
    with pytest.raises(bm.BenchmarkError, match="unknown task 'mnli'"):
        bm.load_language("mnli", "en", data=xnli_dir)
    # PAWS-X's columns are sentence1/sentence2: XNLI's files do not pass for it
    with pytest.raises(bm.BenchmarkError, match="lacks the column.*sentence1, sentence2"):
        bm.load_language("pawsx", "en", data=xnli_dir)
    with pytest.raises(bm.BenchmarkError, match="label names"):
        bm.load_language("udpos", "en", data=_renamed(tmp_path, wikiann_dir))
    (tmp_path / "empty" / "en").mkdir(parents=True)
    with pytest.raises(bm.BenchmarkError, match="neither a save_to_disk"):
        bm.load_language("xnli", "en", data=tmp_path / "empty")


def _renamed(tmp_path: Path, wikiann_dir: Path) -> Path:
    """WikiANN files with ner_tags renamed to upos: UD's column, WikiANN's label names."""
    ds = datasets.load_from_disk(str(wikiann_dir / "fr")).rename_column("ner_tags", "upos")
    ds.save_to_disk(str(tmp_path / "ud" / "en"))
    return tmp_path / "ud"


def test_hub_needs_the_online_opt_in(monkeypatch):
    monkeypatch.delenv("XLT_COURSE_ONLINE", raising=False)
    with pytest.raises(bm.BenchmarkError, match="XLT_COURSE_ONLINE=1"):
        bm.load_language("xnli", "en")
    monkeypatch.setenv("XLT_COURSE_ONLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not bm.hub_allowed()  # an offline lesson's HF_HUB_OFFLINE=1 wins
    assert bm.BENCHMARKS["xnli"].hub_id == "facebook/xnli"
    assert bm.BENCHMARKS["udpos"].config("en") == "en_ewt"


# --------------------------------------------------------------------------- fine-tuning


def test_pairs_are_learned_by_the_engine(xlmr, xnli_dir):
    train = bm.load_language("xnli", "en", "train", data=xnli_dir)
    evals = {"en": bm.load_language("xnli", "en", "validation", data=xnli_dir)}
    # frozen (random) embeddings keep the run short; mean pooling sees the cue word
    c = cfg(xlmr, epochs=15, pooling="mean", freeze="embeddings", learning_rate=2e-2)
    res = tr.finetune(c, train, evals, cache="off")
    assert res.accuracy["en"] >= 0.6, res.accuracy  # chance is 1/3; the cue word decides
    assert res.probs["en"].shape == (24, 3) and not res.f1
    assert res.history[-1]["loss"] < res.history[0]["loss"]


def test_linear_probe_and_mlm_checkpoint_on_pairs(tmp_path, tok, xnli_dir):
    mlm = tiny_xlmr(tmp_path / "mlm", tok, "mlm")  # an XLMRobertaForMaskedLM checkpoint
    train = bm.load_language("xnli", "en", "train", data=xnli_dir)
    evals = bm.load_benchmark("xnli", ["en", "fr"], "test", data=xnli_dir)
    res = tr.finetune(cfg(mlm, freeze="encoder", learning_rate=1e-2), train, evals, cache="off")
    assert set(res.accuracy) == {"en", "fr"} and res.stats["trainable_params"] < 1000


def test_tokens_are_learned_with_entity_f1(xlmr, wikiann_dir):
    train = bm.load_language("wikiann", "en", "train", data=wikiann_dir)
    evals = bm.load_benchmark("wikiann", ["en", "fr"], "test", data=wikiann_dir)
    res = tr.finetune(cfg(xlmr, epochs=10), train, evals, cache="off")
    words = sum(len(w) for w in evals["en"].words)
    assert res.probs["en"].shape == (words, 7) and res.ids["en"][0] == "0/0"
    assert res.f1["en"] >= 0.8 and res.accuracy["en"] >= 0.9, (res.f1, res.accuracy)
    assert 0 <= res.f1["fr"] <= 1


def test_entity_f1_counts_whole_entities():
    names = bm.WIKIANN_LABELS  # O B-PER I-PER B-ORG I-ORG B-LOC I-LOC
    ids = ["0/0", "0/1", "0/2", "1/0"]
    gold = [1, 2, 0, 5]  # PER(2 words), LOC
    assert tr.entity_f1(gold, gold, ids, names) == 1.0
    half = [1, 0, 0, 5]  # the PER entity is cut short: wrong; LOC right
    assert tr.entity_f1(gold, half, ids, names) == pytest.approx(0.5)


# --------------------------------------------------------------------------- the command


def test_finetune_command_xnli_prints_the_accuracy_line(xlmr, xnli_dir, capsys):
    argv = ["finetune", "--model", xlmr, "--task", "xnli", "--data", str(xnli_dir), "--smoke",
            "--eval-langs", "en", "fr", "--max-length", "32"]  # fmt: skip
    assert course_cli.main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("accuracy en=") and " fr=" in out[-1]
    assert course_cli.main(argv) == 0  # the second run is the cached result
    again = capsys.readouterr().out.strip().splitlines()
    assert "cached" in again[-2] and again[-1] == out[-1]


def test_finetune_command_runs_offline_in_a_fresh_process(xlmr, wikiann_dir, tmp_path):
    """`xlt-course finetune --task wikiann --smoke` offline, as a user runs it: an f1 line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "XLT_COURSE_DATA": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}  # fmt: skip
    env.pop("XLT_COURSE_ONLINE", None)
    cmd = [sys.executable, "-m", "autograder.cli", "finetune", "--model", xlmr, "--task",
           "wikiann", "--data", str(wikiann_dir), "--smoke", "--eval-langs", "en", "fr",
           "--max-length", "32"]  # fmt: skip
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("f1 en=") and " fr=" in last, run.stdout
    assert "fine-tuning" in run.stderr  # the progress bar


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "xnli", "--eval-langs", "de"], "no folder for language 'de'"),
        (["--task", "pawsx", "--eval-langs", "en"], "lacks the column"),
        (["--task", "xnli", "--eval-langs", "en", "--learning-rate", "5"], "learning_rate"),
    ],
)
def test_finetune_command_bad_input_is_one_error_line(xlmr, xnli_dir, capsys, args, message):
    code = course_cli.main(["finetune", "--model", xlmr, "--data", str(xnli_dir), "--smoke", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("xlt-course: error:")
    assert message in err[0]


def test_finetune_command_rejects_an_unknown_task(capsys):
    with pytest.raises(SystemExit) as e:
        course_cli.main(["finetune", "--task", "mnli"])
    assert e.value.code == 2 and "invalid choice: 'mnli'" in capsys.readouterr().err


def test_token_checkpoint_reloads_as_a_token_classifier(tmp_path, tok, wikiann_dir):
    start = tiny_xlmr(tmp_path / "tok", tok, "tok")  # an XLMRobertaForTokenClassification
    train = bm.load_language("wikiann", "en", "train", data=wikiann_dir)
    evals = {"en": bm.load_language("wikiann", "en", "test", data=wikiann_dir)}
    res = tr.finetune(cfg(start, epochs=1, save_checkpoint=True), train, evals)
    model, tokenizer, config = tr.load_checkpoint(res.checkpoint, device="cpu")
    assert type(model).__name__ == "XLMRobertaForTokenClassification"
    assert model.config.id2label[1] == "B-PER" and config.model == start
    again = tr.finetune(cfg(start, epochs=1, save_checkpoint=True), train, evals)
    assert again.from_cache and again.f1 == res.f1 and again.ids == res.ids


def test_sequence_classifier_checkpoint_fine_tunes_on_pairs(tmp_path, tok, xnli_dir):
    start = tiny_xlmr(tmp_path / "seq", tok, "seq")  # XLMRobertaForSequenceClassification
    train = bm.load_language("xnli", "en", "train", data=xnli_dir)
    evals = {"fr": bm.load_language("xnli", "fr", "test", data=xnli_dir)}
    res = tr.finetune(cfg(start, epochs=1, freeze="embeddings"), train, evals, cache="off")
    assert res.probs["fr"].shape == (24, 3)


def test_finetune_command_topics_on_the_course_data(xlmr, capsys, built_data):
    argv = ["finetune", "--model", xlmr, "--task", "topics", "--smoke", "--eval-langs", "en", "fr"]
    assert course_cli.main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("accuracy en=") and " fr=" in last


def test_pawsx_and_ud_in_their_hub_schemas(tmp_path, xlmr, capsys):
    paws = datasets.Features({
        "id": datasets.Value("int32"), "sentence1": datasets.Value("string"),
        "sentence2": datasets.Value("string"), "label": datasets.ClassLabel(names=["0", "1"]),
    })  # fmt: skip
    rows = {"id": [0, 1, 2], "sentence1": ["a b", "c d", "e f"],
            "sentence2": ["b a", "d c", "x y"], "label": [1, -1, 0]}  # fmt: skip
    # PAWS-X marks missing labels -1 (ClassLabel allows it): such rows are dropped
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows, features=paws)}).save_to_disk(
        str(tmp_path / "paws" / "de")
    )
    de = bm.load_language("pawsx", "de", data=tmp_path / "paws")
    assert de.texts == ["a b", "e f"] and de.labels.tolist() == [1, 0]

    ud = datasets.Features({
        "idx": datasets.Value("string"), "text": datasets.Value("string"),
        "tokens": datasets.Sequence(datasets.Value("string")),
        "upos": datasets.Sequence(datasets.ClassLabel(names=list(bm.UD_UPOS_LABELS))),
    })  # fmt: skip
    tag = {
        "the": "DET",
        "cat": "NOUN",
        "dog": "NOUN",
        "sleeps": "VERB",
        "runs": "VERB",
        ".": "PUNCT",
    }
    sents = [["the", "cat", "sleeps", "."], ["the", "dog", "runs", "."]] * 12
    rows = {"idx": [str(i) for i in range(len(sents))], "text": [" ".join(s) for s in sents],
            "tokens": sents,
            "upos": [[bm.UD_UPOS_LABELS.index(tag[w]) for w in s] for s in sents]}  # fmt: skip
    ds = datasets.Dataset.from_dict(rows, features=ud)
    folder = tmp_path / "ud" / "en_ewt"  # the hub's config name (the treebank) works too
    folder.mkdir(parents=True)
    for split in ("train", "test"):
        ds.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
    en = bm.load_language("udpos", "en", "train", data=tmp_path / "ud")
    assert en.tags[0] == [8, 0, 16, 1] and len(en.label_names) == 18
    argv = ["finetune", "--model", xlmr, "--task", "udpos", "--data", str(tmp_path / "ud"),
            "--smoke", "--eval-langs", "en", "--max-length", "32"]  # fmt: skip
    assert course_cli.main(argv) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("accuracy en=")


# --------------------------------------------------------------------------- lesson 06, section 10


def _lesson06_cells(*cell_ids: str) -> list[str]:
    """The sources of lesson 06's XNLI cells, by notebook cell id."""
    import json

    nb = json.loads(
        (ROOT / "solutions/06-zero-shot-transfer/06-zero-shot-transfer.ipynb").read_text()
    )
    by_id = {c["id"]: "".join(c["source"]) for c in nb["cells"]}
    return [by_id[i] for i in cell_ids]


def _offline_main() -> tr.FinetuneConfig:
    return tr.FinetuneConfig(model="offline", device="cpu", num_threads=1, progress=False)


def test_lesson06_xnli_cells_run_xlmr_on_a_hub_schema_folder(xlmr, xnli_dir, capsys):
    """The lesson's own cells, settings pointed at a tiny random XLM-R and a local XNLI folder."""
    from types import SimpleNamespace

    from xlt_course import zero_shot_transfer as zst

    settings, run = _lesson06_cells("perf-06-xnli-settings", "perf-06-xnli-run")
    for old, new in (('XNLI_MODEL = "xlm-roberta-base"', f"XNLI_MODEL = {xlmr!r}"),
                     ("XNLI_DATA = None", f"XNLI_DATA = {str(xnli_dir)!r}")):  # fmt: skip
        assert old in settings
        settings = settings.replace(old, new)
    shown = []
    ns = dict(zst=zst, MAIN=_offline_main(), ENV=SimpleNamespace(smoke=True), CACHE="use",
              display=shown.append)  # fmt: skip
    exec(settings, ns)
    exec(run, ns)
    out = capsys.readouterr().out
    assert "XNLI zero-shot" in out and "OFFLINE" not in out
    assert "missing: es, de" in out  # the folder holds en and fr only, and says so
    assert ns["xnli"].config.pooling == "cls" and ns["xnli"].config.freeze == "none"
    table = ns["xnli_table"]
    assert list(table.index) == ["en", "fr"] and shown
    assert table.loc["fr", "paper Δ(en→l)"] == pytest.approx(85.8 - 79.7)  # Table 1, XLM-R Base
    acc = ns["xnli_run"].accuracy
    assert table.loc["fr", "Δ(en→l)"] == pytest.approx(100 * (acc["en"] - acc["fr"]))
    assert ns["xnli_run"].stats["train_examples"] == 64  # smoke size: 64 English pairs


def test_lesson06_xnli_plan_offline_says_so_and_online_takes_all_15_languages(monkeypatch):
    from xlt_course import zero_shot_transfer as zst

    main = _offline_main()
    monkeypatch.delenv("XLT_COURSE_ONLINE", raising=False)
    offline = zst.xnli_plan("xlm-roberta-base", offline=main)
    assert offline.task == "topics" and offline.config == main
    assert offline.note.startswith("OFFLINE STAND-IN, not XNLI")
    monkeypatch.setenv("XLT_COURSE_ONLINE", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    online = zst.xnli_plan("xlm-roberta-base", offline=main)  # a plan: nothing is downloaded
    assert online.task == "xnli" and online.config.model == "xlm-roberta-base"
    assert online.config.languages == zst.XNLI_LANGUAGES and len(zst.XNLI_LANGUAGES) == 15
    assert "all 15 XNLI languages" in online.note


def test_lesson06_gap_table_sits_beside_table_1():
    from xlt_course import zero_shot_transfer as zst

    table = zst.gap_table({"en": 0.9, "fr": 0.8, "it": 0.7})
    assert list(table.columns) == ["accuracy %", "Δ(en→l)", "paper accuracy %", "paper Δ(en→l)"]
    assert table.loc["fr", "Δ(en→l)"] == pytest.approx(10.0)
    assert np.isnan(table.loc["it", "paper Δ(en→l)"])  # XNLI has no Italian
    with pytest.raises(ValueError, match="XLM-R Base"):
        zst.gap_table({"en": 0.9}, "XLM-R Huge")
