"""The student side of the ``xlt-course`` command line: data, environment, BLI, pretraining.

The ``xlt-course`` entry point adds the instructor's commands (lessons, grade, course) to
these from the grading package; this module knows nothing of them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xlt_course.data.build import STEPS
from xlt_course.errors import XltCourseError


def _data(args: argparse.Namespace) -> int:
    from xlt_course.data import build

    if args.action == "build":
        timings = build.build_all(args.only, force=args.force)
        print("built: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    elif args.action == "topics":
        from xlt_course.data.topics import build_topics

        build_topics(Path(args.out) if args.out else None)
        print("topic dataset written")
    status = build.artefact_status()
    bad = {k: v for k, v in status.items() if not v[0]}
    for name, (ok, detail) in sorted(status.items()):
        print(f"{'ok ' if ok else 'BAD'} {name}: {detail}")
    return 1 if bad else 0


def _env(args: argparse.Namespace) -> int:
    from xlt_course import environment

    checks = environment.environment_report()
    print(environment.format_report(checks))
    return 0 if all(c.ok for c in checks) else 1


def _bli(args: argparse.Namespace) -> int:
    from xlt_course import bli

    result = bli.run_bli(args.src, args.tgt)
    print(bli.format_bli_line(result))
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from xlt_course import pretrain

    settings = args.settings or [*pretrain.DEFAULT_REPORT, *pretrain.CURSE]
    try:
        for name in settings:
            pretrain.get_config(name)
        if args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
    except ValueError as e:
        print(f"xlt-course: error: {e}", file=sys.stderr)
        return 2
    rows = pretrain.report_table(
        settings, args.seeds, steps=args.steps, smoke=args.smoke,
        root=Path(args.root) if args.root else None, train=not args.no_train, jobs=args.jobs,
    )  # fmt: skip
    print(f"{'setting':20} {'seeds':>8} {'P@1 best':>9} {'min-max':>12} {'layer':>5} "
          f"{'word P@1':>8} {'rotated':>7}")  # fmt: skip
    for r in rows:
        if r["retrieval"] is None:
            print(f"{r['setting']:20} {'-':>8} not yet measured")
            continue
        word = "-" if r["word_translation"] is None else f"{r['word_translation']:.3f}"
        print(
            f"{r['setting']:20} {len(r['seeds']):>8} {r['retrieval']:>9.3f} "
            f"{r['retrieval_min']:>5.3f}-{r['retrieval_max']:<5.3f} {r['best_layer']:>5} "
            f"{word:>8} {r['rotation']:>7.3f}"
        )
        if r["setting"] in pretrain.CURSE and r.get("mlm_loss"):
            losses = " ".join(f"{x:.2f}" for x in r["mlm_loss"])
            print(f"{'':20} held-out MLM loss per language (en first): {losses}")
    print(pretrain.PUBLISHED_NOTE)
    if any(r["setting"] in pretrain.EMERGENCE_LINE for r in rows):
        print(pretrain.emergence_line(rows))
    else:  # a line of nan alone says nothing: name what would fill it
        print(f"(no emergence line: it reads {', '.join(pretrain.EMERGENCE_LINE)}; "
              "none of them is in --settings)")  # fmt: skip
    return 0


def _translate(args: argparse.Namespace) -> int:
    from xlt_course.translate import main_translate

    return main_translate(args.rest)


FINETUNE_TASKS = ("topics", "xnli", "pawsx", "wikiann", "udpos", "udpos-offline")
# Default evaluation languages: every language of the benchmark (XNLI, PAWS-X), the
# topic dataset's, and a spread of scripts for the token tasks.
DEFAULT_EVAL_LANGS = {
    "xnli": "en fr es de el bg ru tr ar vi th zh hi sw ur",
    "pawsx": "en de es fr ja ko zh",
    "wikiann": "en fr de es it ru zh ja ar hi",
    "udpos": "en fr de es it ru zh ja ar hi",
}


def _finetune(args: argparse.Namespace) -> int:
    try:
        return _run_finetune(args)
    except ValueError as e:  # a bad setting (learning rate, languages...): one line, no traceback
        print(f"xlt-course: error: {e}", file=sys.stderr)
        return 2


def _run_finetune(args: argparse.Namespace) -> int:
    from xlt_course import training as tr

    task = args.task
    train_langs = tuple(args.train_langs)
    overrides = {
        k: v
        for k, v in dict(
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            max_length=args.max_length,
            seed=args.seed,
            freeze=args.freeze,
            max_train_examples=args.max_train,
            max_eval_examples=args.max_eval,
        ).items()
        if v is not None
    }
    if task == "udpos-offline":
        return _finetune_udpos_offline(args, overrides)
    if task == "topics":
        eval_langs = tuple(args.eval_langs) if args.eval_langs else tr.FinetuneConfig.languages
        base = dict(model=args.model, train_languages=train_langs, languages=eval_langs)
        if args.smoke:
            base.update(epochs=1, max_train_examples=64, max_eval_examples=32, batch_size=16)
        config = tr.FinetuneConfig(**{**base, **overrides})
        if args.data:
            print("xlt-course: --data is for the public benchmarks; topics uses data/topics")
        result = tr.finetune_topics(config)
        metric = "accuracy"
    else:
        from xlt_course import benchmarks

        bench = benchmarks.BENCHMARKS[task]
        eval_langs = tuple(args.eval_langs or DEFAULT_EVAL_LANGS[task].split())
        rows = 64 if args.smoke else None
        eval_rows = 32 if args.smoke else None
        train = [
            benchmarks.load_language(task, lang, "train", data=args.data, max_examples=rows)
            for lang in train_langs
        ]
        evals = benchmarks.load_benchmark(
            task, eval_langs, args.split, data=args.data, max_examples=eval_rows
        )
        base = dict(
            model=args.model, train_languages=train_langs, languages=eval_langs,
            freeze="none", max_length=128, learning_rate=2e-5, epochs=2, batch_size=32,
        )  # fmt: skip
        if args.smoke:
            base.update(epochs=1, batch_size=16, learning_rate=1e-4)
        config = tr.FinetuneConfig(**{**base, **overrides})
        result = tr.finetune(config, train, evals)
        metric = bench.metric
    how = "cached" if result.from_cache else f"trained in {result.stats['train_seconds']:.0f} s"
    print(
        f"{task}: {args.model} trained on {'+'.join(train_langs)}, {how} on "
        f"{result.stats['device']} ({result.stats['precision']}) -> {result.cache_path}"
    )
    scores = result.f1 if metric == "f1" else result.accuracy
    print(metric + " " + " ".join(f"{lang}={scores[lang]:.3f}" for lang in scores))
    return 0


def _finetune_udpos_offline(args: argparse.Namespace, overrides: dict) -> int:
    """Lesson 11's zero-shot POS run: English silver -> es, fr (silver), tr (gold)."""
    from xlt_course import token_transfer as tt
    from xlt_course import training as tr

    if args.data or args.model != "offline" or tuple(args.train_langs) != ("en",):
        print("xlt-course: udpos-offline trains the offline encoder on the built English POS "
              "data (`xlt-course data build --only pos`): --data, --model, --train-langs "
              "do not apply", file=sys.stderr)  # fmt: skip
        return 2
    run = tt.ZeroShotRun()
    if args.max_train is not None:
        run = tt.ZeroShotRun(args.max_train, run.eval_sentences)
    overrides = {k: v for k, v in overrides.items() if k != "max_train_examples"}
    train, evals = tt.load_zero_shot_data(run, smoke=args.smoke)
    if args.eval_langs:
        evals = {lang: evals[lang] for lang in args.eval_langs if lang in evals}
    config = tt.zero_shot_config(smoke=args.smoke, **overrides)
    result = tr.finetune(config, train, evals)
    how = "cached" if result.from_cache else f"trained in {result.stats['train_seconds']:.0f} s"
    print(
        f"udpos-offline: {config.model} trained on {len(train)} English sentences (silver "
        f"Apertium tags), {how} -> {result.cache_path}"
    )
    print("labels: en, es, fr silver (Apertium; spaCy for fr), tr gold (Turkish treebanks)")
    if "tr" in evals:
        base = tt.baselines(train, evals["tr"])
        print("tr baselines from the English training data: "
              + ", ".join(f"{k} {v:.3f}" for k, v in base.items()))  # fmt: skip
    print(tt.accuracy_line(result.accuracy))
    return 0


def _dev_sweep(args: argparse.Namespace) -> int:
    from xlt_course import zero_shot_transfer as zst

    grid = zst.dev_grid(args.model, smoke=args.smoke)
    if args.record:
        path = zst.record_dev_sweep(grid, Path(args.out) if args.out else None)
        print(f"recorded in {path}")
    sweep = zst.dev_sweep(grid, train=not args.no_train, cache="only" if args.no_train else "use")
    if sweep is None:
        print("xlt-course: no cached or recorded dev sweep for these candidates "
              "(run without --no-train to train them)", file=sys.stderr)  # fmt: skip
        return 1
    width = max(len(name) for name in sweep.rows)
    print(f"{'candidate':{width}}  " + "  ".join(zst.DEV_COLUMNS))
    for name, row in sweep.rows.items():
        print(f"{name:{width}}  " + "  ".join(
            f"{row[c]:>{len(c)}.3f}" for c in zst.DEV_COLUMNS))  # fmt: skip
    chosen = max(sweep.rows, key=lambda n: sweep.rows[n][zst.DEV_COLUMNS[1]])
    print(sweep.note)
    print(f"chosen by English dev accuracy alone: {chosen}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the student commands (``python -m xlt_course.cli``)."""
    p = argparse.ArgumentParser(prog="xlt-course", description=__doc__)
    add_commands(p.add_subparsers(dest="command", required=True))
    return p


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the commands a student's environment needs (data, env, bli, pretrain, translate,
    finetune, dev-sweep)."""
    d = sub.add_parser("data", help="build or verify the offline data")
    d.add_argument("action", choices=["build", "verify", "topics"])
    d.add_argument("--force", action="store_true", help="rebuild even when current")
    d.add_argument("--only", nargs="+", choices=list(STEPS))
    d.add_argument("--out", help="with `topics`: write the dataset here instead of data/topics")
    d.set_defaults(func=_data)

    e = sub.add_parser("env", help="check the environment and every data artefact")
    e.set_defaults(func=_env)

    b = sub.add_parser("bli", help="supervised Procrustes BLI on the offline data")
    b.add_argument("--src", default="en")
    b.add_argument("--tgt", default="fr")
    b.set_defaults(func=_bli)

    pt = sub.add_parser(
        "pretrain", help="lesson 05: train (cached) and report the tiny BERTs of Dufter & Schütze"
    )
    pt.add_argument("action", choices=["report"])
    pt.add_argument("--settings", nargs="+", help="settings to report (default: all)")
    pt.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    pt.add_argument("--steps", type=int, help="training steps (default: the config's 4,000)")
    pt.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    pt.add_argument(
        "--jobs", type=int, default=1,
        help="train missing runs in this many single-threaded worker processes",
    )  # fmt: skip
    pt.add_argument("--smoke", action="store_true", help="the smoke size")
    pt.add_argument("--no-train", action="store_true", help="report the cached runs only")
    pt.add_argument("--root", help="cache folder (default: data/cache/05-.../runs)")
    pt.set_defaults(func=_pretrain)

    tr = sub.add_parser(
        "translate",
        help="translate lines of text offline (Apertium, dictionary) or with a hub model",
        add_help=False,
    )
    tr.add_argument("rest", nargs=argparse.REMAINDER, help="SRC TGT [FILE] [--system S]")
    tr.set_defaults(func=_translate)

    ft = sub.add_parser(
        "finetune",
        help="fine-tune a model on a task in some languages and evaluate it in others (cached)",
        description="Fine-tune MODEL on TASK in the training languages and evaluate it "
        "zero-shot in the evaluation languages; the last line is `accuracy en=A fr=B ...` "
        "(`f1 ...` for NER). Benchmarks come from --data DIR (one folder per language in the "
        "hub's schema) or, with XLT_COURSE_ONLINE=1, from the Hugging Face hub.",
    )
    ft.add_argument(
        "--model",
        default="offline",
        help="'offline', a local folder or a hub id (xlm-roberta-base, ...)",
    )
    ft.add_argument("--task", required=True, choices=FINETUNE_TASKS)
    ft.add_argument("--data", help="folder with one sub-folder per language (hub schema)")
    ft.add_argument("--train-langs", nargs="+", default=["en"], metavar="LANG")
    ft.add_argument(
        "--eval-langs",
        nargs="+",
        metavar="LANG",
        help="default: every XNLI / PAWS-X language; en fr de es it ru zh ja ar hi for WikiANN and UD; the lesson languages for topics",
    )
    ft.add_argument(
        "--split",
        default="test",
        choices=["validation", "test"],
        help="benchmark split to evaluate on",
    )
    ft.add_argument(
        "--smoke",
        action="store_true",
        help="a seconds-long run: 64 training rows per language, 32 evaluation rows",
    )
    ft.add_argument("--epochs", type=int)
    ft.add_argument("--batch-size", type=int)
    ft.add_argument("--learning-rate", type=float)
    ft.add_argument("--max-length", type=int)
    ft.add_argument("--seed", type=int)
    ft.add_argument("--freeze", choices=["none", "embeddings", "encoder"])
    ft.add_argument("--max-train", type=int, help="train on this many examples")
    ft.add_argument("--max-eval", type=int, help="evaluate on this many examples per language")
    ft.set_defaults(func=_finetune)

    ds = sub.add_parser(
        "dev-sweep",
        help="lesson 06: fine-tune the candidates (cached), print their dev accuracy; --record "
        "writes the record the lesson shows when it does not train them",
    )
    ds.add_argument("--model", default="offline", help="'offline', a local folder or a hub id")
    ds.add_argument(
        "--record", action="store_true", help="write the record (trains what is missing)"
    )
    ds.add_argument(
        "--out", help="with --record: the record file (default data/recorded/06-dev-sweep.json)"
    )
    ds.add_argument("--no-train", action="store_true", help="read the cache or the record only")
    ds.add_argument("--smoke", action="store_true", help="the test suite's tiny size")
    ds.set_defaults(func=_dev_sweep)


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Run the command line; errors the course raises on purpose print without a traceback."""
    args = (parser or build_parser()).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (XltCourseError, FileNotFoundError) as e:
        print(f"xlt-course: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
