"""Tests of xlt_course.token_transfer, the POS build step, and lesson 11's exercises.

The exercises' hidden tests are proven here: each tests cell is run against the reference,
against correct variants (it must pass) and against plausible mistakes (it must fail).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from cells import run_test_cell
from conftest import run_visible_checks, solution

from xlt_course import token_transfer as tt
from xlt_course.data import pos
from xlt_course.data.manifest import Manifest
from xlt_course.errors import DataError
from xlt_course.training import IGNORE_INDEX, FinetuneConfig, TokenSplit, align_labels

NB = solution("11-token-transfer")


# --------------------------------------------------------------------------- module


def test_import_does_not_pull_torch():
    code = (
        "import sys, xlt_course.token_transfer, xlt_course.data.pos; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_align_labels_three_schemes():
    ids = [None, 0, 0, 0, 1, 1, 2, None]
    tags = [4, 5, 9]
    x = IGNORE_INDEX
    assert align_labels(ids, tags, "first") == [x, 4, x, x, 5, x, 9, x]
    assert align_labels(ids, tags, "last") == [x, x, x, 4, x, 5, 9, x]
    assert align_labels(ids, tags, "every") == [x, 4, 4, 4, 5, 5, 9, x]
    # an ignored word (unaligned after projection) stays ignored
    assert align_labels([None, 0, 1, None], [x, 3]) == [x, x, 3, x]


def test_label_subwords_is_a_checked_choice():
    assert FinetuneConfig(label_subwords="last").label_subwords == "last"
    with pytest.raises(ValueError, match="label_subwords"):
        FinetuneConfig(label_subwords="middle")


def test_mutual_argmax_is_one_to_one_and_symmetric():
    rng = np.random.default_rng(0)
    for _ in range(20):
        sim = rng.normal(size=(rng.integers(1, 8), rng.integers(1, 8)))
        pairs = tt.mutual_argmax_align(sim)
        assert len({i for i, _ in pairs}) == len(pairs) == len({j for _, j in pairs})
        assert sorted((i, j) for j, i in tt.mutual_argmax_align(sim.T)) == pairs
        # the global maximum is always a mutual best match
        assert tuple(int(v) for v in np.unravel_index(sim.argmax(), sim.shape)) in pairs
    assert tt.mutual_argmax_align(np.zeros((0, 4))) == []
    with pytest.raises(ValueError, match="matrix"):
        tt.mutual_argmax_align(np.zeros(3))


def test_project_labels_direction_unaligned_majority_and_ties():
    assert tt.project_labels([5, 10, 7], [(0, 1), (1, 0)], 3) == [10, 5, IGNORE_INDEX]
    assert tt.project_labels([5, 10, 10], [(0, 0), (2, 0), (1, 0)], 1) == [10]
    assert tt.project_labels([5, 10], [(1, 0), (0, 0)], 1) == [5]
    assert tt.project_labels([1, 2], [], 2) == [IGNORE_INDEX, IGNORE_INDEX]
    with pytest.raises(ValueError, match="outside"):
        tt.project_labels([1], [(0, 3)], 2)


def split(words, tags, lang="xx"):
    index = {t: i for i, t in enumerate(pos.UPOS12)}
    return TokenSplit(
        lang, words, [[index[t] for t in row] for row in tags], pos.UPOS12,
        [str(i) for i in range(len(words))],
    )  # fmt: skip


def test_per_tag_accuracy_confusion_and_baselines():
    names = ("A", "B", "C")
    assert tt.per_tag_accuracy([0, 0, 1], [0, 1, 1], names) == {"A": 0.5, "B": 1.0}
    assert tt.confusion([0, 0, 1], [0, 1, 1], 3).tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    train = split([["the", "dog", "runs", "."], ["a", "cat", "."]],
                  [["DET", "NOUN", "VERB", "PUNCT"], ["DET", "NOUN", "PUNCT"]])  # fmt: skip
    test = split([["The", "perro", "."]], [["DET", "NOUN", "PUNCT"]])
    tag, acc = tt.majority_tag_accuracy(train, test)
    assert tag in ("DET", "NOUN", "PUNCT") and acc == pytest.approx(1 / 3)
    # "The" and "." are known strings; "perro" falls back to the majority tag
    expected = (2 + (tag == "NOUN")) / 3
    assert tt.word_identity_accuracy(train, test) == pytest.approx(expected)
    assert set(tt.baselines(train, test)) == {f"majority tag ({tag})", "word identity"}


def test_sentence_bootstrap_resamples_sentences():
    # 40 sentences, each entirely right or entirely wrong: words are not independent
    correct = np.repeat(np.arange(40) % 2 == 0, 10)
    sentence = np.repeat(np.arange(40).astype(str), 10)
    acc, low, high = tt.sentence_bootstrap(correct, sentence, seed=1)
    assert acc == 0.5 and low < 0.5 < high
    _, wlow, whigh = tt.sentence_bootstrap(correct, np.arange(400).astype(str), seed=1)
    assert high - low > 2 * (whigh - wlow)  # per-word resampling would be far too narrow
    assert tt.word_sentences(["s1/0", "s1/1", "a/b/2"]) == ["s1", "s1", "a/b"]


def test_uriel_distance_orders_languages():
    assert tt.uriel_distance("en", "en") == pytest.approx(0.0, abs=1e-12)
    assert tt.uriel_distance("en", "es") < tt.uriel_distance("en", "tr")
    with pytest.raises(ValueError, match="URIEL"):
        tt.uriel_distance("en", "qq")


def test_accuracy_line():
    assert tt.accuracy_line({"en": 0.9, "tr": 0.61234}) == "accuracy en=0.900 tr=0.612"


def test_split_words():
    assert tt.split_words("Dijo: «ven», y l'homme vino.") == [
        "Dijo",
        ":",
        "«",
        "ven",
        "»",
        ",",
        "y",
        "l'homme",
        "vino",
        ".",
    ]


# --------------------------------------------------------------------------- data step

CONLLU = """# sent_id = s1
# text = Açıklanmayan sorular.
1\tAçık\taçık\tNOUN\tNN\t_\t2\tig\t_\tSpaceAfter=No
2\tla\t_\tVERB\tVB\t_\t3\tig\t_\tSpaceAfter=No
3\tnma\t_\tVERB\tVB\t_\t4\tig\t_\tSpaceAfter=No
4\tyan\t_\tADJ\tVJ\t_\t5\tamod\t_\t_
5\tsorular\tsoru\tNOUN\tNN\t_\t0\troot\t_\tSpaceAfter=No
6\t.\t.\tPUNCT\t.\t_\t5\tp\t_\t_

# sent_id = s2
1-2\tdeneme\t_\t_\t_\t_\t_\t_\t_\t_
1\tde\tde\tONOM\tX\t_\t0\troot\t_\t_
2\tneme\tneme\tNOUN\tNN\t_\t1\tdep\t_\t_
"""


def test_read_conllu_joins_inflectional_groups_and_maps_tags():
    (s1, w1, t1), (s2, w2, t2) = pos.read_conllu(CONLLU)
    assert (s1, w1, t1) == ("s1", ["Açıklanmayan", "sorular", "."], ["ADJ", "NOUN", "PUNCT"])
    assert (s2, w2, t2) == ("s2", ["de", "neme"], ["X", "NOUN"])  # range line skipped


@pytest.mark.parametrize(
    "bad, message",
    [
        ("# sent_id = b\n1\tx\tx\tNOUN\n", "columns"),
        ("# sent_id = b\n1\tx\tx\tFOO\tF\t_\t0\troot\t_\t_\n", "not one of"),
        ("# sent_id = b\n1\tx\tx\tNOUN\tN\t_\t0\tig\t_\tSpaceAfter=No\n", "ends inside a word"),
    ],
)
def test_read_conllu_rejects_bad_input_clearly(bad, message):
    with pytest.raises(DataError, match=message):
        pos.read_conllu(bad, name="bad.conllu")


def test_treebank_split_rule():
    assert [pos.treebank_split(i) for i in range(10)] == ["train"] * 8 + ["dev", "test"]


def test_parse_apertium_units_and_tags():
    line = r"^said/say<vblex><past>$^,/,<cm>$ ^fué/*fué$ ^Al/a<pr>+el<det><def>$^\//\/<sent>$"
    units = pos.parse_apertium(line)
    assert units == [("said", "say<vblex><past>"), (",", ",<cm>"), ("fué", "*fué"),
                     ("Al", "a<pr>+el<det><def>"), ("/", r"\/<sent>")]  # fmt: skip
    assert [pos.apertium_upos(a) for _, a in units] == ["VERB", "PUNCT", None, "ADP", "PUNCT"]
    assert pos.apertium_upos("foo<unknowntag>") == "X"


def test_modernise_keeps_a_map_to_the_original():
    text = "Thou shalt go unto them."
    modern, back = pos.modernise(text, "en")
    assert modern == "You shall go to them."
    start = modern.index("to")
    assert text[back[start] : back[start + 2]] == "unto"
    assert text[back[0] : back[3]] == "Thou"
    assert pos.modernise("Y fué á casa", "es")[0] == "Y fue a casa"
    assert pos.silver_tag([("Jerusalem", None), ("cometh", None), ("xyz", None)], "en") == [
        ("Jerusalem", "NOUN"), ("cometh", "VERB"), ("xyz", None),
    ]  # fmt: skip


def test_apertium_tagger_maps_back_to_the_original_words():
    pytest.importorskip("shutil").which("lt-proc") or pytest.skip("Apertium not installed")
    (units,) = pos.apertium_tag_lines(["And thou shalt see the light."], "en")
    assert [w for w, _ in units] == ["And", "thou", "shalt", "see", "the", "light", "."]
    assert [t for _, t in units][:3] == ["CONJ", "PRON", "VERB"]


def test_load_pos_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="choose one of"):
        pos.load_pos("xx")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="not built yet"):
        pos.load_pos("tr", folder=tmp_path)
    manifest = Manifest(tmp_path)
    (tmp_path / "pos").mkdir()
    (tmp_path / "pos" / "tr-gold.jsonl").write_text(
        json.dumps({"id": "a", "split": "test", "words": ["x"], "tags": ["NOUN", "VERB"]}) + "\n"
    )
    manifest.make("pos-tr", "pos/tr-gold.jsonl", "test", "0", "test")
    with pytest.raises(DataError, match="line 1 is not a POS sentence"):
        pos.load_pos("tr", folder=tmp_path)
    (tmp_path / "pos" / "tr-gold.jsonl").write_text(
        json.dumps({"id": "a", "split": "test", "words": ["x"], "tags": ["NOUN"]}) + "\n"
    )
    manifest.make("pos-tr", "pos/tr-gold.jsonl", "test", "0", "test")
    assert pos.load_pos("tr", "test", folder=tmp_path).tags == [[pos.UPOS12.index("NOUN")]]
    with pytest.raises(DataError, match="no 'train' sentences"):
        pos.load_pos("tr", "train", folder=tmp_path)


def test_missing_treebank_package_is_named(monkeypatch):
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    with pytest.raises(DataError, match="turkish-treebanks"):
        pos.treebank_files()


def test_built_pos_data(built_data):
    if "pos-tr" not in Manifest(built_data).entries:
        pytest.skip("the pos step is not built (`xlt-course data build --only pos`)")
    tr_test = pos.load_pos("tr", "test")
    assert len(tr_test) > 400 and set(tr_test.labels.tolist()) <= set(range(12))
    assert all(w for row in tr_test.words for w in row)
    en = pos.load_rows("en")
    assert Counter(r["split"] for r in en) == {"train": pos.N_TRAIN, "test": pos.N_TEST}
    train_refs = {r["id"] for r in en if r["split"] == "train"}
    assert not train_refs & {r["id"] for r in pos.load_rows("es") if r["split"] == "test"}
    agree, compared, total = pos.silver_agreement()
    assert 0.8 < agree < 1 and compared > total / 2


# --------------------------------------------------------------------------- exercises


def solution_function(grade_id: str, name: str):
    """The notebook's solution of an exercise (its cell alone, with numpy as the lesson has it)."""
    from cells import cell_source

    ns = {"np": np, "__name__": "__solution__"}
    exec(compile(cell_source(NB, grade_id), grade_id, "exec"), ns)
    return ns[name]


EXERCISES = [
    ("ex1_align", "align_labels"),
    ("ex2_per_tag", "per_tag_accuracy"),
    ("ex3_align", "mutual_argmax_align"),
    ("ex4_project", "project_labels"),
]


@pytest.mark.parametrize("grade_id, name", EXERCISES)
def test_solutions_pass_their_tests_and_visible_checks(grade_id, name):
    fn = solution_function(grade_id, name)
    run_test_cell(NB, f"{grade_id}_tests", **{name: fn})
    run_visible_checks(NB, f"{grade_id}_tests", **{name: fn})


# Exercise 1: labels on sub-words ------------------------------------------------------


def ex1_loop_variant(word_ids, word_tags, scheme="first"):
    out = [-100] * len(word_ids)
    spans = {}
    for t, w in enumerate(word_ids):
        if w is not None:
            spans.setdefault(w, []).append(t)
    for w, toks in spans.items():
        chosen = toks if scheme == "every" else [toks[0] if scheme == "first" else toks[-1]]
        for t in chosen:
            out[t] = word_tags[w]
    return out


def ex1_every_piece_always(word_ids, word_tags, scheme="first"):
    return [-100 if w is None else word_tags[w] for w in word_ids]


def ex1_ignores_scheme(word_ids, word_tags, scheme="first"):
    return align_labels(word_ids, word_tags, "first")


def ex1_zero_not_ignore(word_ids, word_tags, scheme="first"):
    return [0 if x == -100 else x for x in align_labels(word_ids, word_tags, scheme)]


def ex1_previous_tag(word_ids, word_tags, scheme="first"):
    # "a new word starts where the tag changes": merges neighbours with the same tag
    out, prev = [], None
    for w in word_ids:
        tag = None if w is None else word_tags[w]
        out.append(-100 if w is None or tag == prev else tag)
        prev = tag
    return out


def ex1_last_off_by_one(word_ids, word_tags, scheme="first"):
    if scheme != "last":
        return align_labels(word_ids, word_tags, scheme)
    out = [-100] * len(word_ids)
    for t in range(len(word_ids) - 1):
        if (
            word_ids[t] is not None
            and word_ids[t + 1] != word_ids[t]
            and word_ids[t + 1] is not None
        ):
            out[t] = word_tags[word_ids[t]]
    return out


def ex1_no_boundary_guard(word_ids, word_tags, scheme="first"):
    """Compares with word_ids[t - 1] and word_ids[(t + 1) % n]: wraps around at the ends."""
    out, n = [], len(word_ids)
    for t, w in enumerate(word_ids):
        if w is None:
            out.append(-100)
            continue
        first, last = word_ids[t - 1] != w, word_ids[(t + 1) % n] != w
        keep = scheme == "every" or (first if scheme == "first" else last)
        out.append(word_tags[w] if keep else -100)
    return out


def ex1_word_counter(word_ids, word_tags, scheme="first"):
    """Counts the words seen instead of using the word id: wrong once a word has no pieces."""
    out, k, prev = [], -1, None
    for t, w in enumerate(word_ids):
        if w is None:
            out.append(-100)
            prev = None
            continue
        k += w != prev
        nxt = word_ids[t + 1] if t + 1 < len(word_ids) else None
        keep = scheme == "every" or (w != prev if scheme == "first" else nxt != w)
        out.append(word_tags[k] if keep else -100)
        prev = w
    return out


@pytest.mark.parametrize(
    "fn", [ex1_loop_variant, lambda i, t, s="first": align_labels(tuple(i), np.array(t), s)]
)
def test_ex1_accepts_correct_variants(fn):
    run_test_cell(NB, "ex1_align_tests", align_labels=fn)


@pytest.mark.parametrize(
    "fn", [ex1_every_piece_always, ex1_ignores_scheme, ex1_zero_not_ignore, ex1_previous_tag,
           ex1_last_off_by_one, ex1_no_boundary_guard, ex1_word_counter],
)  # fmt: skip
def test_ex1_rejects_mistakes(fn):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex1_align_tests", align_labels=fn)


# Exercise 2: per-tag accuracy ---------------------------------------------------------


def ex2_loop_variant(gold, pred, label_names):
    out = {}
    for c, name in enumerate(label_names):
        idx = [k for k, g in enumerate(gold) if g == c]
        if idx:
            out[name] = sum(pred[k] == c for k in idx) / len(idx)
    return out


def ex2_precision(gold, pred, label_names):
    g, p = np.asarray(gold), np.asarray(pred)
    return {n: float((g[p == c] == c).mean()) if (p == c).any() else 0.0
            for c, n in enumerate(label_names) if (g == c).any()}  # fmt: skip


def ex2_absent_as_zero(gold, pred, label_names):
    g, p = np.asarray(gold), np.asarray(pred)
    return {n: float((p[g == c] == c).mean()) if (g == c).any() else 0.0
            for c, n in enumerate(label_names)}  # fmt: skip


def ex2_overall(gold, pred, label_names):
    g, p = np.asarray(gold), np.asarray(pred)
    return {n: float((g == p).mean()) for c, n in enumerate(label_names) if (g == c).any()}


def ex2_sorted_by_name(gold, pred, label_names):
    got = tt.per_tag_accuracy(gold, pred, label_names)
    return dict(sorted(got.items(), key=lambda kv: kv[0][::-1]))


def test_ex2_accepts_correct_variants():
    run_test_cell(NB, "ex2_per_tag_tests", per_tag_accuracy=ex2_loop_variant)
    run_test_cell(NB, "ex2_per_tag_tests", per_tag_accuracy=tt.per_tag_accuracy)


@pytest.mark.parametrize("fn", [ex2_precision, ex2_absent_as_zero, ex2_overall, ex2_sorted_by_name])
def test_ex2_rejects_mistakes(fn):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex2_per_tag_tests", per_tag_accuracy=fn)


# Exercise 3: mutual argmax ------------------------------------------------------------


def ex3_loop_variant(sim):
    sim = np.asarray(sim, dtype=float)
    pairs = []
    for i in range(sim.shape[0]):
        for j in range(sim.shape[1]):
            if int(np.argmax(sim[i])) == j and int(np.argmax(sim[:, j])) == i:
                pairs.append((i, j))
    return pairs


def ex3_one_sided(sim):
    sim = np.asarray(sim, dtype=float)
    return [(i, int(j)) for i, j in enumerate(sim.argmax(axis=1))] if sim.size else []


def ex3_swapped(sim):
    return [(j, i) for i, j in tt.mutual_argmax_align(sim)]


def ex3_by_column(sim):
    sim = np.asarray(sim, dtype=float)
    if sim.size == 0:
        return []
    best_i = sim.argmax(axis=0)
    best_j = sim.argmax(axis=1)
    return [(int(i), j) for j, i in enumerate(best_i) if best_j[i] == j]


def ex3_threshold(sim):
    return [(i, j) for i, j in tt.mutual_argmax_align(sim) if np.asarray(sim)[i][j] > 0]


def test_ex3_accepts_correct_variants():
    run_test_cell(NB, "ex3_align_tests", mutual_argmax_align=ex3_loop_variant)
    run_test_cell(NB, "ex3_align_tests", mutual_argmax_align=tt.mutual_argmax_align)


@pytest.mark.parametrize("fn", [ex3_one_sided, ex3_swapped, ex3_by_column, ex3_threshold])
def test_ex3_rejects_mistakes(fn):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex3_align_tests", mutual_argmax_align=fn)


# Exercise 4: label projection ---------------------------------------------------------


def ex4_variant(src_tags, alignment, n_tgt):
    out = []
    for j in range(n_tgt):
        srcs = sorted(int(i) for i, jj in alignment if jj == j)
        if not srcs:
            out.append(-100)
            continue
        tags = [int(src_tags[i]) for i in srcs]
        best = max(tags.count(t) for t in tags)
        out.append(next(t for t in tags if tags.count(t) == best))
    return out


def ex4_swapped(src_tags, alignment, n_tgt):
    return ex4_variant(
        src_tags, [(j, i) for i, j in alignment if j < len(src_tags) and i < n_tgt], n_tgt
    )


def ex4_unaligned_zero(src_tags, alignment, n_tgt):
    return [0 if t == -100 else t for t in tt.project_labels(src_tags, alignment, n_tgt)]


def ex4_last_wins(src_tags, alignment, n_tgt):
    out = [-100] * n_tgt
    for i, j in alignment:
        out[j] = int(src_tags[i])
    return out


def ex4_first_pair_wins(src_tags, alignment, n_tgt):
    out = [-100] * n_tgt
    for i, j in alignment:
        if out[j] == -100:
            out[j] = int(src_tags[i])
    return out


def ex4_tie_by_pair_order(src_tags, alignment, n_tgt):
    out = []
    for j in range(n_tgt):
        tags = [int(src_tags[i]) for i, jj in alignment if jj == j]
        out.append(Counter(tags).most_common(1)[0][0] if tags else -100)
    return out


def ex4_distinct_source_words(src_tags, alignment, n_tgt):
    # correct: counts each aligned source word once (a repeated pair adds nothing)
    return tt.project_labels(src_tags, sorted({(int(i), int(j)) for i, j in alignment}), n_tgt)


def ex4_tie_lowest_of_all(src_tags, alignment, n_tgt):
    # wrong: a tie goes to the lowest source index among ALL aligned words, not the tied ones
    out = []
    for j in range(n_tgt):
        srcs = sorted(int(i) for i, jj in alignment if int(jj) == j)
        if not srcs:
            out.append(-100)
            continue
        counts = Counter(int(src_tags[i]) for i in srcs)
        top = max(counts.values())
        tied = [t for t in counts if counts[t] == top]
        out.append(int(src_tags[srcs[0]]) if len(tied) > 1 else tied[0])
    return out


def test_ex4_accepts_correct_variants():
    run_test_cell(NB, "ex4_project_tests", project_labels=ex4_variant)
    run_test_cell(NB, "ex4_project_tests", project_labels=tt.project_labels)


def test_ex4_accepts_counting_each_source_word_once():
    run_test_cell(NB, "ex4_project_tests", project_labels=ex4_distinct_source_words)


def test_ex4_hidden_message_does_not_give_the_tags():
    with pytest.raises(AssertionError) as err:
        run_test_cell(NB, "ex4_project_tests", project_labels=ex4_tie_lowest_of_all)
    assert "are wrong" in str(err.value) and "expected" not in str(err.value)


@pytest.mark.parametrize(
    "fn", [ex4_swapped, ex4_unaligned_zero, ex4_last_wins, ex4_first_pair_wins,
           ex4_tie_by_pair_order, ex4_tie_lowest_of_all],
)  # fmt: skip
def test_ex4_rejects_mistakes(fn):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex4_project_tests", project_labels=fn)


def test_udpos_offline_refuses_options_that_do_not_apply(capsys):
    from xlt_course.cli import main

    assert main(["finetune", "--task", "udpos-offline", "--model", "xlm-roberta-base"]) == 2
    assert "do not apply" in capsys.readouterr().err


# --------------------------------------------------------------------------- span F1, section 7

NER = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")


def span_f1(gold: list[list[str]], pred: list[list[str]]) -> float:
    """The engine's span F1 on sentences of tag names (one id per word, as the engine keeps them)."""
    from xlt_course.training import entity_f1

    ids = [f"{s}/{k}" for s, sent in enumerate(gold) for k in range(len(sent))]
    flat = [NER.index(t) for sent in gold for t in sent]
    guess = [NER.index(t) for sent in pred for t in sent]
    return entity_f1(flat, guess, ids, NER)


def test_span_f1_needs_both_ends_and_the_type():
    gold = [["B-PER", "I-PER", "O", "B-ORG", "I-ORG", "O", "B-LOC"]]
    assert span_f1(gold, gold) == 1.0
    # a partial span is a wrong entity (no partial credit): P = R = 2/3
    cut = [["B-PER", "I-PER", "O", "B-ORG", "O", "O", "B-LOC"]]
    assert span_f1(gold, cut) == pytest.approx(2 / 3)
    # one word too many is just as wrong
    long = [["B-PER", "I-PER", "B-ORG", "I-ORG", "I-ORG", "O", "B-LOC"]]
    assert span_f1(gold, long) == pytest.approx(2 / 3)
    # the right span with the wrong type counts nothing
    typed = [["B-PER", "I-PER", "O", "B-ORG", "I-ORG", "O", "B-ORG"]]
    assert span_f1(gold, typed) == pytest.approx(2 / 3)
    # an I- of another type inside a span ends it there
    mixed = [["B-PER", "I-LOC", "O", "B-ORG", "I-ORG", "O", "B-LOC"]]
    p, r = 2 / 4, 2 / 3  # PER and LOC predicted where one PER is: 2 of 4 right, 2 of 3 found
    assert span_f1(gold, mixed) == pytest.approx(2 * p * r / (p + r))
    assert span_f1(gold, [["O"] * 7]) == 0.0


def test_span_f1_reads_an_i_without_b_as_the_start_of_an_entity():
    # CoNLL's conlleval (seqeval's default mode): I-PER after O opens a PER entity
    gold = [["O", "B-PER", "I-PER", "O"]]
    assert span_f1(gold, [["O", "I-PER", "I-PER", "O"]]) == 1.0
    assert span_f1([["O", "I-LOC"]], [["O", "B-LOC"]]) == 1.0
    # and B- in the middle of a span splits it into two entities
    assert span_f1(gold, [["O", "B-PER", "B-PER", "O"]]) == 0.0


def test_span_f1_is_micro_averaged_over_sentences():
    gold = [["B-PER", "O"], ["B-LOC", "I-LOC"], ["O", "O"]]
    pred = [["B-PER", "O"], ["B-LOC", "O"], ["B-ORG", "O"]]
    # 1 of 3 predicted entities right, 1 of 2 gold ones found
    p, r = 1 / 3, 1 / 2
    assert span_f1(gold, pred) == pytest.approx(2 * p * r / (p + r))
    assert span_f1([["O", "O"]], [["O", "O"]]) == 0.0  # nothing to find: 0, not an error


def test_benchmark_table_gaps_and_paper_columns():
    table = tt.benchmark_table({"en": 0.8, "de": 0.7, "tr": 0.6})
    assert list(table.columns) == ["score %", "gap to en"]
    assert table.loc["tr", "gap to en"] == pytest.approx(20.0)
    both = tt.benchmark_table({"en": 0.8, "tr": 0.6}, {"en": 85.0, "de": 80.0})
    assert list(both.index) == ["en", "tr"]
    assert np.isnan(both.loc["tr", "paper %"]) and both.loc["en", "paper gap to en"] == 0.0
    with pytest.raises(ValueError, match="English"):
        tt.benchmark_table({"de": 0.7})


def test_benchmark_plan_offline_says_so_and_online_takes_the_languages(monkeypatch):
    main = tt.zero_shot_config()
    monkeypatch.delenv("XLT_COURSE_ONLINE", raising=False)
    for task in ("wikiann", "udpos"):
        plan = tt.benchmark_plan(task, "xlm-roberta-base", offline=main)
        assert plan.task == "offline" and plan.config == main and plan.metric == "accuracy"
        assert plan.note.startswith("OFFLINE STAND-IN, not ")
    monkeypatch.setenv("XLT_COURSE_ONLINE", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    plan = tt.benchmark_plan("wikiann", "bert-base-multilingual-cased", offline=main)
    assert plan.task == "wikiann" and plan.metric == "f1"  # a plan: nothing is downloaded
    assert plan.config.languages == tt.BENCHMARK_LANGUAGES and plan.config.freeze == "none"
    assert plan.config.model == "bert-base-multilingual-cased" and plan.data is None
    assert tt.benchmark_plan("udpos", offline=main).metric == "accuracy"
    with pytest.raises(ValueError, match="wikiann"):
        tt.benchmark_plan("xnli", offline=main)  # type: ignore[arg-type]


def _hub_wikiann(root, lang: str, n: int, seed: int) -> None:
    """Write one language of WikiANN in the hub's exact schema (features, splits, parquet)."""
    import datasets

    from xlt_course.benchmarks import WIKIANN_LABELS

    names = {"en": ["Paris", "Alice", "Google"], "de": ["Berlin", "Bob", "Siemens"]}[lang]
    filler = {"en": ["lives", "in", "the", "near"], "de": ["wohnt", "in", "der", "bei"]}[lang]
    features = datasets.Features({
        "tokens": datasets.Sequence(datasets.Value("string")),
        "ner_tags": datasets.Sequence(datasets.ClassLabel(names=list(WIKIANN_LABELS))),
        "langs": datasets.Sequence(datasets.Value("string")),
        "spans": datasets.Sequence(datasets.Value("string")),
    })  # fmt: skip
    rng = np.random.default_rng(seed)
    for split, k in (("train", n), ("validation", n // 2), ("test", n // 2)):
        rows = {"tokens": [], "ner_tags": [], "langs": [], "spans": []}
        for _ in range(k):
            words, tags, spans = [], [], []
            for _ in range(int(rng.integers(3, 7))):
                if rng.random() < 0.3:
                    w = int(rng.integers(0, 3))
                    words += [names[w], names[w] + "s"]
                    tags += [1 + 2 * w, 2 + 2 * w]  # B-X I-X: a two-word entity
                    spans.append(f"{WIKIANN_LABELS[1 + 2 * w][2:]}: {names[w]} {names[w]}s")
                else:
                    words.append(str(rng.choice(filler)))
                    tags.append(0)
            rows["tokens"].append(words)
            rows["ner_tags"].append(tags)
            rows["langs"].append([lang] * len(words))
            rows["spans"].append(spans)  # the hub's "PER: Ada Lovelace" strings
        (root / lang).mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict(rows, features=features).to_parquet(
            str(root / lang / f"{split}-00000-of-00001.parquet")
        )


def test_lesson11_benchmark_cells_run_a_tiny_xlmr_on_hub_schema_wikiann(
    tmp_path, monkeypatch, capsys
):
    """The lesson's own section-7 cells, on a tiny random XLM-R and a local WikiANN folder."""
    from types import SimpleNamespace

    pytest.importorskip("datasets")
    from tiny_models import tiny_xlmr, xlmr_tokenizer

    from xlt_course import training as tr

    monkeypatch.setattr(tr.paths, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.delenv("XLT_COURSE_ONLINE", raising=False)
    model = tiny_xlmr(tmp_path / "xlmr", xlmr_tokenizer(tmp_path / "tok"), "base")
    data = tmp_path / "wikiann"
    _hub_wikiann(data, "en", 64, 0)
    _hub_wikiann(data, "de", 64, 1)
    cells = {c["id"]: "".join(c["source"]) for c in json.loads(NB.read_text())["cells"]}
    settings = cells["l11-bench-settings"]
    for old, new in (('BENCH_MODEL = "xlm-roberta-base"', f"BENCH_MODEL = {model!r}"),
                     ("BENCH_DATA = None", f"BENCH_DATA = {str(data)!r}")):  # fmt: skip
        assert old in settings
        settings = settings.replace(old, new)
    shown: list = []
    config = tt.zero_shot_config(smoke=True, device="cpu", num_threads=1, progress=False)
    ns = dict(tt=tt, tr=tr, np=np, CONFIG=config, ENV=SimpleNamespace(smoke=True),
              CACHE="use", display=shown.append, train_en=None, test=None)  # fmt: skip
    exec(settings, ns)
    exec(cells["l11-bench-spans"], ns)
    exec(cells["l11-bench-run"], ns)
    out = capsys.readouterr().out
    assert "WikiANN (PAN-X) NER" in out and "OFFLINE" not in out
    assert "missing there: es, fr, tr, ru, ar, hi, zh" in out
    assert "ORG cut short      word accuracy 0.93   span F1 0.67" in out
    assert "no entity at all   word accuracy 0.64   span F1 0.00" in out
    run = ns["bench_run"]
    assert set(run.f1) == {"en", "de"} and run.stats["train_examples"] == 64
    assert run.label_names == tuple(NER) and run.config.model == model
    table = ns["bench_table"]
    assert shown and list(table.index) == ["en", "de"]
    assert table.loc["de", "score %"] == pytest.approx(100 * run.f1["de"])
    assert table.loc["de", "gap to en"] == pytest.approx(100 * (run.f1["en"] - run.f1["de"]))


def test_udpos_runs_through_the_same_code_from_treebank_folders(tmp_path, monkeypatch):
    """UD-POS from folders named like the hub's configs (en_ewt, tr_imst), hub column types."""
    pytest.importorskip("datasets")
    import datasets
    from tiny_models import tiny_xlmr, xlmr_tokenizer

    from xlt_course import benchmarks as bm
    from xlt_course import training as tr

    monkeypatch.setattr(tr.paths, "cache_dir", lambda: tmp_path / "cache")
    features = datasets.Features({
        "idx": datasets.Value("string"), "text": datasets.Value("string"),
        "tokens": datasets.Sequence(datasets.Value("string")),
        "lemmas": datasets.Sequence(datasets.Value("string")),
        "upos": datasets.Sequence(datasets.ClassLabel(names=list(bm.UD_UPOS_LABELS))),
    })  # fmt: skip
    vocab = {"en": [("the", "DET"), ("cat", "NOUN"), ("sleeps", "VERB"), (".", "PUNCT")],
             "tr": [("kedi", "NOUN"), ("uyuyor", "VERB"), (".", "PUNCT")]}  # fmt: skip
    for lang, treebank in (("en", "en_ewt"), ("tr", "tr_imst")):
        (tmp_path / "ud" / treebank).mkdir(parents=True)
        words, tags = zip(*vocab[lang], strict=True)
        n = 40
        rows = {"idx": [f"{lang}-{i}" for i in range(n)], "text": [" ".join(words)] * n,
                "tokens": [list(words)] * n, "lemmas": [list(words)] * n,
                "upos": [[bm.UD_UPOS_LABELS.index(t) for t in tags]] * n}  # fmt: skip
        for split in ("train", "test"):
            datasets.Dataset.from_dict(rows, features=features).to_parquet(
                str(tmp_path / "ud" / treebank / f"{split}-00000-of-00001.parquet")
            )
    model = tiny_xlmr(tmp_path / "xlmr", xlmr_tokenizer(tmp_path / "tok"), "base")
    main = tt.zero_shot_config(smoke=True, device="cpu", num_threads=1, progress=False)
    plan = tt.benchmark_plan("udpos", model, offline=main, data=tmp_path / "ud", smoke=True)
    assert plan.task == "udpos" and plan.config.languages == ("en", "tr")
    assert "UD-POS accuracy" in plan.note and "missing there: es, fr, de" in plan.note
    run = tt.run_benchmark(plan, (None, None), cache="use")
    assert set(run.accuracy) == {"en", "tr"} and not run.f1  # POS: accuracy, no span F1
    assert run.label_names == bm.UD_UPOS_LABELS


def test_few_shot_config_continues_from_the_checkpoint_with_enough_steps(tmp_path):
    from types import SimpleNamespace

    base = tt.zero_shot_config().replace(save_checkpoint=True)
    zs = SimpleNamespace(config=base, checkpoint=tmp_path / "checkpoint")
    ten = tt.few_shot_config(zs, 10)
    assert ten.model == str(tmp_path / "checkpoint") and not ten.save_checkpoint
    assert ten.epochs == 32 and ten.head_learning_rate is None  # 32 steps of 10 sentences
    assert tt.few_shot_config(zs, 100).epochs == 4  # 7 steps an epoch: 28
    assert tt.few_shot_config(zs, 500).epochs == base.epochs  # 32 steps an epoch already
    assert ten.learning_rate == base.learning_rate and ten.label_subwords == base.label_subwords
    with pytest.raises(ValueError, match="save_checkpoint"):
        tt.few_shot_config(SimpleNamespace(config=base, checkpoint=None), 10)
    with pytest.raises(ValueError, match="k must be"):
        tt.few_shot_config(zs, 0)


def test_word_vectors_are_cached_by_sentences_and_model(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from tiny_models import tiny_xlmr, xlmr_tokenizer

    from xlt_course import paths

    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path / "cache")
    model = tiny_xlmr(tmp_path / "xlmr", xlmr_tokenizer(tmp_path / "tok"), "base")
    sents = [["the", "cat", "sleeps"], ["a", "dog"], ["Açıklanmayan", "sorular", "."]]
    first = tt.word_vectors(sents, model=model, layer=1)
    files = list((tmp_path / "cache" / "word-vectors").glob("*.npz"))
    assert len(files) == 1 and [v.shape for v in first] == [(3, 16), (2, 16), (3, 16)]
    again = tt.word_vectors(sents, model=model, layer=1)  # read back from the file
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    fresh = tt.word_vectors(sents, model=model, layer=1, cache=False)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(first, fresh, strict=True))
    tt.word_vectors(sents[:2], model=model, layer=1)  # other sentences: another file
    tt.word_vectors(sents, model=model, layer=2)  # another layer: another file
    assert len(list((tmp_path / "cache" / "word-vectors").glob("*.npz"))) == 3
