"""The student side of the ``xlt-course`` command line: data, environment, BLI, pretraining.

The ``xlt-course`` entry point adds the instructor's commands (lessons, grade, course) to
these from the grading package; this module knows nothing of them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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

    names = list(pretrain.CONFIGS) if args.config == ["all"] else args.config
    try:
        configs = [pretrain.get_config(name, smoke=args.smoke) for name in names]
    except ValueError as e:
        print(f"xlt-course: error: {e}", file=sys.stderr)
        return 2
    root = Path(args.root) if args.root else None
    for config in configs:
        path, cached = pretrain.load_or_pretrain(config, root=root, force=args.force)
        info = pretrain.read_info(path) or {}
        how = "cached" if cached else f"trained in {info['seconds']:.0f} s on {info['device']}"
        print(f"{config.name}: {how}, final MLM loss {info['loss'][-1]:.2f} -> {path}")
    return 0


def _translate(args: argparse.Namespace) -> int:
    from xlt_course.translate import main_translate

    return main_translate(args.rest)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the student commands (``python -m xlt_course.cli``)."""
    p = argparse.ArgumentParser(prog="xlt-course", description=__doc__)
    add_commands(p.add_subparsers(dest="command", required=True))
    return p


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the commands a student's environment needs (data, env, bli, pretrain, translate)."""
    d = sub.add_parser("data", help="build or verify the offline data")
    d.add_argument("action", choices=["build", "verify", "topics"])
    d.add_argument("--force", action="store_true", help="rebuild even when current")
    d.add_argument("--only", nargs="+", choices=["vectors", "dictionary", "encoder"])
    d.add_argument("--out", help="with `topics`: write the dataset here instead of data/topics")
    d.set_defaults(func=_data)

    e = sub.add_parser("env", help="check the environment and every data artefact")
    e.set_defaults(func=_env)

    b = sub.add_parser("bli", help="supervised Procrustes BLI on the offline data")
    b.add_argument("--src", default="en")
    b.add_argument("--tgt", default="fr")
    b.set_defaults(func=_bli)

    pt = sub.add_parser("pretrain", help="pretrain a tiny bilingual BERT of lesson 05 (cached)")
    pt.add_argument(
        "config",
        nargs="+",
        help="predefined configs (base, fake, ...; all: every one) or JSON files",
    )
    pt.add_argument("--smoke", action="store_true", help="the smoke-size run (name-smoke)")
    pt.add_argument("--force", action="store_true", help="retrain even when cached")
    pt.add_argument(
        "--root", help="checkpoint folder (default: data/cache/05-multilingual-pretraining)"
    )
    pt.set_defaults(func=_pretrain)

    tr = sub.add_parser(
        "translate",
        help="translate lines of text offline (Apertium, dictionary) or with a hub model",
        add_help=False,
    )
    tr.add_argument("rest", nargs=argparse.REMAINDER, help="SRC TGT [FILE] [--system S]")
    tr.set_defaults(func=_translate)


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
