"""The `corpusforge` command: parse arguments, call the library, print summaries. No logic lives here."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path

from corpusforge import options


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (`error: ...`) and exit 2, like every other user error, and every
    option's default in its help."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{"formatter_class": options.DefaultsHelpFormatter, **kwargs})

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_dask(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="LocalCluster worker processes (default: one per core)")
    p.add_argument("--scheduler", default=None, help="run on an existing Dask cluster, e.g. tcp://host:8786")
    p.add_argument("--fail-on-error", action="store_true", help="exit 1 if any input was damaged (default: 0)")
    p.add_argument("--force", action="store_true",
                   help="make every output again, even those whose inputs and settings did not change")


def _context(args: argparse.Namespace, run=None):
    """The run context of a stage command: its --scheduler/--workers, else those of the recipe's `run`."""
    from corpusforge.runtime import RunContext

    return RunContext(scheduler=args.scheduler or (run and run.scheduler),
                      workers=args.workers or (run and run.workers))


# What a command returns; `main` alone turns it into the exit code (see `_exit_code`): its stages' summaries
# (judged with --fail-on-error, which a recipe's [run] may have set), whether it succeeded, or None (it did).
Outcome = list | bool | None

_KEPT = ("documents", "kept", "candidates", "fetched", "links", "shards", "tokens")


def _exit_code(outcome: Outcome, fail_on_error: bool) -> int:
    """For summaries: 1 when a stage had inputs and every one of them failed (nothing kept, an error per input),
    or with `fail_on_error` when any input was damaged; else 0. False: 1; True or None: 0."""
    if not isinstance(outcome, list):
        return 1 if outcome is False else 0
    summaries = outcome
    done = [s for s in summaries if s is not None]
    for s in done:
        if s.files and s.errors >= s.files and not any(s.counts.get(k) for k in _KEPT):
            print(f"error: {s.stage}: every input failed (see its _errors.jsonl)", file=sys.stderr)
            return 1
    return 1 if (fail_on_error and sum(s.errors for s in done)) else 0


def cmd_run(args: argparse.Namespace) -> Outcome:
    from corpusforge import pipeline, recipe

    rec = recipe.load(args.recipe)
    if args.scheduler or args.scheduler_file:  # the command line's cluster replaces the recipe's
        rec.run.scheduler, rec.run.scheduler_file = args.scheduler, args.scheduler_file
        rec.run.validate()
    if args.cluster:
        rec.run.cluster.kind = args.cluster
    if args.workers:
        rec.run.workers = args.workers
    summaries = pipeline.run_recipe(rec, only=args.only)
    args.fail_on_error = rec.run.fail_on_error or args.fail_on_error
    return summaries


def cmd_validate(args: argparse.Namespace) -> Outcome:
    from corpusforge import recipe

    rec = recipe.load(args.recipe)
    if args.check_inputs:
        problems = recipe.check_inputs(rec)
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if problems:
            return False
    print(f"{args.recipe}: valid{'; inputs found' if args.check_inputs else ''}; stages: "
          f"{', '.join(s.name for s, _ in rec.stage_configs())}")


def cmd_stage(args: argparse.Namespace, **fixed) -> Outcome:
    """A stage command: the stage's config from the flags (its inputs and output, and `fixed`), run by the stage
    module's `run` on the command's cluster."""
    import importlib

    module, _, name = args.stage.partition(":")
    stage = importlib.import_module(module)
    config = options.from_args(getattr(stage, name), args, inputs=args.inputs, output=args.output, **fixed)
    return [stage.run(config, _context(args))]


def cmd_train(args: argparse.Namespace) -> Outcome:
    """Any `train` command: its --config file, then its --set KEY=VALUE items, then its flags, on top of the
    trainer's defaults (or the run's settings when resuming)."""
    import importlib
    import tomllib

    trainer = importlib.import_module(f"corpusforge.trainer.{args.trainer}")
    values = tomllib.loads(args.config.read_text(encoding="utf-8")) if args.config else {}
    config = trainer.make_config(args.out, {**values, **options.settings(args)}, resume=args.resume)
    trainer.train(config, args.out, resume=args.resume, stop_at=args.stop_at)


def cmd_eval_compare(args: argparse.Namespace) -> Outcome:
    from corpusforge.runtime import write_json_atomic
    from corpusforge.trainer import compare

    config = options.from_args(compare.CompareConfig, args, runs=[str(r) for r in args.runs], prompts=str(args.prompts))
    result = compare.compare(config)
    compare.print_table(result)
    if args.json:
        write_json_atomic(args.json, result)


def cmd_generate(args: argparse.Namespace) -> Outcome:
    from corpusforge.trainer.generate import SamplingConfig, choose_checkpoint, generate_text

    sampling = options.from_args(SamplingConfig, args)
    which, why = (args.checkpoint, None) if args.checkpoint else choose_checkpoint(args.run_dir)
    if why:
        print(why, file=sys.stderr)
    texts = generate_text(args.run_dir, args.prompt, **dataclasses.asdict(sampling), num_samples=args.num_samples,
                          device=args.device, which=which)
    print("\n---------------\n".join(texts))


def cmd_chat(args: argparse.Namespace) -> Outcome:
    from corpusforge.trainer.generate import ChatSession, SamplingConfig, talk

    session = ChatSession(args.run_dir, system=args.system, sampling=options.from_args(SamplingConfig, args),
                          device=args.device, which=args.checkpoint)
    talk(session, sys.stdin, sys.stdout, sys.stderr)


def cmd_feedback_serve(args: argparse.Namespace) -> Outcome:
    from corpusforge.feedback import app

    app.serve(options.from_args(app.ServeConfig, args, run_dir=str(args.run_dir), prompts=str(args.prompts)))


def cmd_feedback_export(args: argparse.Namespace) -> Outcome:
    from corpusforge.feedback import exchange
    from corpusforge.feedback.store import Store

    counts = exchange.export(Store(args.db), args.output)
    print(", ".join(f"{n:,} {name}" for name, n in counts.items()) + f" -> {args.output}")


def cmd_feedback_import(args: argparse.Namespace) -> Outcome:
    from corpusforge.feedback import exchange
    from corpusforge.feedback.store import Store

    store, errors = Store(args.db), 0
    for path in args.inputs:
        report = exchange.import_preferences(store, path)
        for err in report.errors[:20]:
            print(f"{path}: {err['reason']}", file=sys.stderr)
        errors += len(report.errors)
        print(f"{path}: {report.counts.get('lines', 0):,} lines, {report.counts.get('added', 0):,} new comparisons, "
              f"{len(report.errors):,} errors")
    return not (args.fail_on_error and errors)


def cmd_feedback_label(args: argparse.Namespace) -> Outcome:
    from corpusforge.feedback import labelers

    run = labelers.label(args.url.rstrip("/"), rule=args.rule, n=args.n, labeler=args.labeler, token=args.token)
    print(f"{args.labeler}: {len(run.stored)} rankings stored by rule {args.rule!r}")


def cmd_webtext2_links(args: argparse.Namespace) -> Outcome:
    from corpusforge.sources import webtext2
    from corpusforge.sources.webtext2.urls import DEFAULT_BLOCKED_DOMAINS

    fixed = {"links.blocked_domains": DEFAULT_BLOCKED_DOMAINS + args.block_domain} if args.block_domain else {}
    if args.reddit:
        fixed["reddit.subreddits"] = args.subreddit or ["all"]
    config = options.from_args(webtext2.WebText2Config, args, pushshift=args.pushshift or [], **fixed)
    return [webtext2.collect_links(config, _context(args), args.output)]


def cmd_webtext2_fetch(args: argparse.Namespace) -> Outcome:
    from corpusforge.sources import webtext2

    extract = options.take(args, "extract.")
    config = options.from_args(webtext2.FetchConfig, args)
    summary = webtext2.fetch_and_extract(args.links_dir, args.output, config, extract, _context(args))
    return not (args.fail_on_error and (summary.errors or summary.extra["fetch"]["errors"]))


def cmd_mix(args: argparse.Namespace) -> Outcome:
    from corpusforge import recipe
    from corpusforge.mix import mixer

    rec = recipe.load(args.recipe)
    if "mix" not in rec.sections:
        raise recipe.RecipeError(f"{args.recipe}: no [mix] section")
    config = dataclasses.replace(rec.sections["mix"], output=args.output or rec.sections["mix"].output)
    summary = mixer.run(config, _context(args, rec.run))
    args.fail_on_error = rec.run.fail_on_error or args.fail_on_error
    return [summary]


def cmd_stats(args: argparse.Namespace) -> Outcome:
    import json

    from rich.console import Console

    from corpusforge import stats

    config = stats.StatsConfig(corpus=str(args.corpus), html=args.html, run_dir=args.run_dir, verify=args.verify)
    result = stats.report_corpus(config, console=Console(stderr=True, quiet=args.json))
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    return not args.verify or result["verify"]["ok"]


def cmd_wikipedia(args: argparse.Namespace) -> Outcome:
    from corpusforge.errors import UserError
    from corpusforge.sources import wikipedia

    if args.inputs[0] != "download":
        return cmd_stage(args)
    names = args.inputs[1:] + ([args.name] if getattr(args, "name", None) else [])
    if len(names) != 1:
        raise UserError("usage: corpusforge wikipedia download NAME --output DIR [--base-url URL]")
    wikipedia.download(names[0], args.output, base_url=args.base_url or wikipedia.DUMPS_URL)


def cmd_import(args: argparse.Namespace) -> Outcome:
    from corpusforge.sources import imported

    return cmd_stage(args, **({"fields": imported.parse_fields(args.field)} if args.field else {}))


def cmd_decontaminate(args: argparse.Namespace) -> Outcome:
    from corpusforge.decontaminate import evals

    shared = {"fields": args.field or [], **options.take(args, "evals.")}
    return cmd_stage(args, evals=evals.given_files(args.evals, args.name, **shared))


# <commands: add new `cmd_*` functions above this line>


# The `train` commands: the module (and its make_config/train), its config, the config fields that have flags
# (besides the run's: max_steps, device, compile), and the help line.
_TRAINERS = (
    ("pretrain", "TrainConfig", ("corpus", "text", "preset"),
     "pretrain a GPT on a mixed corpus; under torchrun, data-parallel"),
    ("sft", "SFTConfig", ("base", "data", "epochs", "ptx_fraction", "corpus"),
     "fine-tune a pretrained run on conversations (SFT); under torchrun, data-parallel"),
    ("reward", "RewardConfig", ("base", "feedback", "demos", "epochs"),
     "train a reward model on human feedback (rankings, thumbs) from an SFT run; under torchrun, data-parallel"),
    ("ppo", "PPOConfig", ("policy", "reward", "prompts", "corpus", "ptx_coef", "kl_coef", "target_kl"),
     "RLHF: PPO (PPO-ptx with --corpus) from an SFT run against a reward model; under torchrun, data-parallel"),
    ("dpo", "DPOConfig", ("policy", "feedback", "beta", "epochs"),
     "RLHF without a reward model: DPO on feedback comparisons from an SFT run"),
)
_RUN_FIELDS = ("max_steps", "device", "compile")
_SHARDS = "folders of document shards (missing ones are skipped), files or globs"


def _version() -> str:
    """The installed distribution's version (pyproject.toml's), or "unknown" when run from a bare checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("corpusforge")
    except PackageNotFoundError:
        return "unknown"


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with `argv`, the options generated from a config only for the command `argv` names (importing a
    stage to read its config costs seconds: numba, trafilatura...)."""
    words = None if argv is None else [a for a in argv if not a.startswith("-")]

    def config_options(p: argparse.ArgumentParser, command: str, config: str, **kw) -> None:
        if words is None or words[:len(command.split())] == command.split():
            options.add_options(p, options.resolve(config), **kw)

    def stage(sub, name: str, config: str, help: str, inputs: str, *, nargs: str = "+", command: str = "",
              func=cmd_stage, **kw) -> argparse.ArgumentParser:
        """A stage command: INPUT... -o DIR, the options of the stage's config ("module:Config", whose module's
        `run` runs it) and of the cluster."""
        p = sub.add_parser(name, help=help, **kw)
        p.add_argument("inputs", nargs=nargs, help=inputs)
        p.add_argument("--output", "-o", required=True)
        config_options(p, command or name, config)
        _add_dask(p)
        p.set_defaults(func=func, stage=config)
        return p

    parser = _Parser(prog="corpusforge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"corpusforge {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a recipe (pipelines/*.toml): every stage it configures, in order")
    p.add_argument("recipe", type=Path)
    from corpusforge.recipe import STAGES

    p.add_argument("--only", action="append", metavar="STAGE",
                   help=f"run only this stage (repeatable): {', '.join(s.name for s in STAGES)}")
    _add_dask(p)
    p.add_argument("--scheduler-file", default=None,
                   help="run on the Dask scheduler this file names (dask scheduler --scheduler-file, dask-mpi)")
    p.add_argument("--cluster", choices=["local", "slurm", "pbs", "sge", "kubernetes"], default=None,
                   help="start the workers with this Dask deployer, sized by the recipe's [run.cluster] "
                        "(docs/cluster.md)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check a recipe without running it")
    p.add_argument("recipe", type=Path)
    p.add_argument("--check-inputs", action="store_true",
                   help="also check that every input the recipe reads (and no earlier stage writes) exists or "
                        "answers")
    p.set_defaults(func=cmd_validate)

    stage(sub, "commoncrawl", "corpusforge.sources.commoncrawl:CommonCrawlConfig",
          "WARC files -> language-tagged document shards",
          "WARC(.gz) paths or URLs, globs, or warc.paths(.gz) listings", nargs="*")

    p = sub.add_parser("train", help="train the bundled GPT (see docs/trainer.md)")
    train_sub = p.add_subparsers(dest="train_command", required=True)
    for name, config_class, fields, help_text in _TRAINERS:
        t = train_sub.add_parser(name, help=help_text)
        config_options(t, f"train {name}", f"corpusforge.trainer.{name}:{config_class}", only=fields + _RUN_FIELDS)
        t.add_argument("--out", required=True, help="run folder: checkpoint, metrics.jsonl, loss.png, tokenizer.json")
        t.add_argument("--resume", action="store_true", help="continue the checkpoint in --out exactly where it "
                       "stopped")
        t.add_argument("--stop-at", type=int, default=None,
                       help="checkpoint and exit after this step (the schedule still runs to --max-steps)")
        t.add_argument("--config", type=Path, default=None, help=f"TOML file of training settings ({config_class} "
                       "keys)")
        t.set_defaults(func=cmd_train, trainer=name)
    # <train-parsers: add `train` subcommands (sft, rlhf) above this line>

    p = sub.add_parser("eval", help="evaluate trained runs")
    e = p.add_subparsers(dest="eval_command", required=True)
    t = e.add_parser("compare", help="runs side by side: win rates (reward model, scripted labeler), reward, KL to "
                                     "the SFT reference, pretraining validation loss")
    t.add_argument("runs", nargs="+", type=Path, help="run folders; wins are counted against the first")
    t.add_argument("--prompts", type=Path, required=True, help="held-out prompts (.txt or .jsonl)")
    config_options(t, "eval compare", "corpusforge.trainer.compare:CompareConfig", skip=("runs", "prompts"))
    t.add_argument("--json", type=Path, default=None, help="also write the result here")
    t.set_defaults(func=cmd_eval_compare)

    for name, help_text in (("generate", "sample text from a trained run"),
                            ("chat", "talk to a trained run in the terminal; with stdin not a terminal, each line is "
                                     "a user turn and each reply is printed on its own line")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("run_dir", type=Path)
        if name == "generate":
            p.add_argument("--prompt", default="", help="text to continue (default: start a new document)")
            p.add_argument("--num-samples", type=int, default=1)
        else:
            p.add_argument("--system", default=None, help="a system turn that starts the conversation")
        config_options(p, name, "corpusforge.trainer.generate:SamplingConfig")
        p.add_argument("--device", default="cpu")
        p.add_argument("--checkpoint", choices=("best", "last"), default=None, help=(
            "best: the weights at the lowest validation loss; last: the latest checkpoint (default: best when the "
            "run has them, unless they come from the first half of the run: then last)") if name == "generate" else
            "best: the weights at the lowest validation loss (the default when the run has them); last: the latest "
            "checkpoint")
        p.set_defaults(func=cmd_generate if name == "generate" else cmd_chat)

    p = sub.add_parser("webtext2", help="WebText2: Reddit links with score >= 3, fetched politely, extracted")
    w = p.add_subparsers(dest="webtext2_command", required=True)
    t = w.add_parser("links", help="Reddit submissions (API or Pushshift dumps) -> deduplicated link table")
    source = t.add_mutually_exclusive_group(required=True)
    source.add_argument("--reddit", action="store_true",
                        help="read Reddit's API with praw; credentials from praw_* environment variables or praw.ini")
    source.add_argument("--pushshift", nargs="+", metavar="FILE", help="Pushshift dumps (RS_YYYY-MM.zst), globs")
    t.add_argument("--output", "-o", required=True, help="link table folder (LINKS_DIR)")
    config_options(t, "webtext2 links", "corpusforge.sources.webtext2.urls:LinkRules", prefix="links.",
                   only=("min_score", "score_aggregate", "drop_nsfw", "since", "until", "buckets"), set_option=False)
    t.add_argument("--block-domain", action="append", metavar="DOMAIN",
                   help="block this domain and its subdomains too (repeatable; added to the default list)")
    t.add_argument("--subreddit", action="append", help="--reddit: a subreddit to read (repeatable; default all)")
    config_options(t, "webtext2 links", "corpusforge.sources.webtext2.reddit:RedditConfig", prefix="reddit.",
                   only=("listing", "time_filter", "limit", "site", "oauth_url", "reddit_url"), set_option=False)
    _add_dask(t)
    t.set_defaults(func=cmd_webtext2_links)
    t = w.add_parser("fetch", help="link table -> WARCs (polite, resumable) -> document shards")
    t.add_argument("links_dir", help="folder written by `corpusforge webtext2 links`")
    t.add_argument("--output", "-o", required=True, help="shards here, WARCs and fetch logs in OUTPUT/warc/")
    config_options(t, "webtext2 fetch", "corpusforge.sources.webtext2.fetch:FetchConfig")
    config_options(t, "webtext2 fetch", "corpusforge.sources.commoncrawl:CommonCrawlConfig", prefix="extract.",
                   only=("languages", "min_lang_score", "lid_model", "mode", "timeout_s"), set_option=False,
                   flags={"timeout_s": "--extract-timeout"})
    _add_dask(t)
    t.set_defaults(func=cmd_webtext2_fetch)

    stage(sub, "dedup", "corpusforge.dedup:DedupConfig",
          "document shards of any sources -> one copy of each URL/exact/near duplicate", _SHARDS)

    p = sub.add_parser("tokenizer", help="the corpus tokenizer (byte-level BPE)")
    stage(p.add_subparsers(dest="tokenizer_command", required=True), "train",
          "corpusforge.mix.tokenizer:TokenizerConfig",
          "train a byte-level BPE on a seeded sample of document shards, per source",
          "folders or globs of document shards (e.g. build/sample/dedup)", nargs="*", command="tokenizer train")

    p = sub.add_parser("mix", help="document sets -> weighted, tokenized, shuffled corpus shards + manifest.json")
    p.add_argument("recipe", type=Path, help="a recipe with a [mix] section (e.g. pipelines/gpt3.toml)")
    p.add_argument("--output", "-o", default=None, help="corpus folder (default: the recipe's [mix] output)")
    _add_dask(p)
    p.set_defaults(func=cmd_mix)

    p = sub.add_parser("stats", help="what a mixed corpus holds and why: tables, --json, --html report, --verify")
    p.add_argument("corpus", type=Path, help="corpus folder (with manifest.json)")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON on stdout (no tables)")
    p.add_argument("--html", default=None, metavar="FILE", help="write a self-contained HTML report with plots")
    p.add_argument("--verify", action="store_true", help="check every shard against the manifest's sha256; "
                   "exit 1 if any is missing or damaged")
    p.add_argument("--run-dir", default=None, help="folder with the stage outputs (default: the corpus's parent)")
    p.set_defaults(func=cmd_stats)

    if words is not None and words[:2] == ["wikipedia", "download"]:  # its own arguments, and its own --help
        p = sub.add_parser("wikipedia", prog="corpusforge wikipedia download",
                           description="fetch a Wikipedia dump with its multistream index and verify their checksums")
        p.add_argument("inputs", nargs=1, choices=["download"], metavar="download")
        p.add_argument("name", metavar="NAME",
                       help="a wiki (enwiki), a wiki and date (enwiki-20240601) or a dump file name")
        p.add_argument("--output", "-o", required=True, help="folder the files are written to")
        p.set_defaults(func=cmd_wikipedia)
    else:
        p = stage(sub, "wikipedia", "corpusforge.sources.wikipedia:WikipediaConfig",
                  "MediaWiki XML dumps -> article documents; `wikipedia download NAME` fetches and verifies a dump",
                  "dumps (.xml.bz2, multistream with its index beside it, or .xml), folders or globs; or `download "
                  "NAME` (enwiki, enwiki-20240601, or a dump file name)", func=cmd_wikipedia,
                  description="corpusforge wikipedia DUMP... --output DIR  |  "
                              "corpusforge wikipedia download NAME --output DIR [--base-url URL] (see its --help)")
    p.add_argument("--base-url", default=None, help="download: the dump server (default: https://dumps.wikimedia.org/)")

    stage(sub, "books", "corpusforge.sources.books:BooksConfig",
          "Gutenberg .txt, plain .txt collections and EPUB -> book-part documents",
          "book files (.txt, .txt.gz/.bz2/.xz/.zst, .epub), folders or globs")

    p = stage(sub, "import", "corpusforge.sources.imported:ImportConfig", "your own data (JSONL, Parquet, CSV, a "
              "Hugging Face dataset saved to disk) -> document shards of one set (see docs/import.md)",
              "files, folders, globs, or a save_to_disk folder", func=cmd_import)
    p.add_argument("--field", action="append", metavar="COLUMN=FIELD", help="fill a document column (text, url, "
                   "title, id, lang) from this field of the input, e.g. text=body (repeatable; default: the field "
                   "of the same name)")

    p = stage(sub, "quality", "corpusforge.quality:QualityConfig", "document shards -> the documents that pass "
              "Gopher/C4 rules and GPT-3's quality classifier (see docs/quality.md)", _SHARDS)
    config_options(p, "quality", "corpusforge.quality.heuristics:HeuristicsConfig", prefix="heuristics.",
                   only=("sources",), set_option=False)
    p.add_argument("--disable", action="append", metavar="RULE", dest=options.dest("heuristics.disable"),
                   help="do not apply this rule (repeatable)")
    p.add_argument("--enable", action="append", metavar="RULE", dest=options.dest("heuristics.enable"),
                   help="apply this rule that is off by default, e.g. gopher_alpha_words (repeatable)")
    p.add_argument("--threshold", action=options.key_value(float), metavar="RULE=NUMBER",
                   dest=options.dest("heuristics.thresholds"),
                   help="replace a rule's threshold, e.g. gopher_min_words=100 (repeatable)")
    config_options(p, "quality", "corpusforge.quality.classifier:ClassifierConfig", prefix="classifier.",
                   only=("sources", "positives", "negatives", "model", "keep", "alpha", "train_documents"),
                   set_option=False)

    p = stage(sub, "decontaminate", "corpusforge.decontaminate:DecontaminateConfig", "document shards -> the same "
              "without the n-grams of evaluation sets (GPT-3's rules, see docs/decontaminate.md)", _SHARDS,
              func=cmd_decontaminate)
    p.add_argument("--evals", nargs="+", required=True, metavar="EVAL",
                   help="evaluation sets: .jsonl/.ndjson/.json (optionally .gz), .parquet, or plain text")
    p.add_argument("--name", action="append", help="name of each evaluation set, in --evals order (default: the "
                   "file name)")
    p.add_argument("--field", action="append", help="JSON/Parquet field holding the text (repeatable, joined; "
                   "default: text, or a conversation's messages)")
    config_options(p, "decontaminate", "corpusforge.decontaminate.evals:EvalSetConfig", prefix="evals.",
                   only=("split", "id_field"), set_option=False)

    p = sub.add_parser("feedback", help="human feedback: the web app, export/import, scripted labelers "
                                        "(see docs/feedback.md)")
    f = p.add_subparsers(dest="feedback_command", required=True)
    t = f.add_parser("serve", help="serve the Rank, Chat and Write pages for a trained run")
    t.add_argument("run_dir", type=Path, help="the run whose answers are shown (an SFT run)")
    t.add_argument("--prompts", type=Path, required=True, help=".txt (one prompt a line) or .jsonl "
                                                                 "({prompt} or {messages} a line)")
    config_options(t, "feedback serve", "corpusforge.feedback.app:ServeConfig", skip=("run_dir", "prompts"))
    t.set_defaults(func=cmd_feedback_serve)
    t = f.add_parser("export", help="the store -> comparisons/ratings/conversations Parquet")
    t.add_argument("--db", required=True, help="SQLite file or postgresql:// URL")
    t.add_argument("--output", required=True, type=Path, help="folder for the Parquet files")
    t.set_defaults(func=cmd_feedback_export)
    t = f.add_parser("import", help="TRL preference JSONL or Anthropic HH pairs -> comparisons in the store")
    t.add_argument("inputs", nargs="+", type=Path, help=".jsonl or .jsonl.gz files")
    t.add_argument("--db", required=True, help="SQLite file or postgresql:// URL")
    t.add_argument("--fail-on-error", action="store_true", help="exit 1 if any line was bad (default: 0)")
    t.set_defaults(func=cmd_feedback_import)
    t = f.add_parser("label", help="a scripted labeler: rank offers by a rule through the HTTP API")
    t.add_argument("url", help="the app, e.g. http://127.0.0.1:8000")
    t.add_argument("--rule", default="shorter", help="shorter, longer or mentions (see feedback/labelers.py)")
    t.add_argument("--n", type=int, default=10, help="rankings to submit")
    t.add_argument("--labeler", default="script", help="the name stored with each ranking")
    t.add_argument("--token", default=None)
    t.set_defaults(func=cmd_feedback_label)

    # <parsers: add new subcommands above this line>
    return parser


def main(argv: list[str] | None = None) -> int:
    from corpusforge.errors import UserError

    argv = sys.argv[1:] if argv is None else argv
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        args = build_parser(argv).parse_args(argv)  # a command's options may import its (optional) libraries
        if getattr(args, "force", False):
            from corpusforge import resume

            resume.force_recompute()
        return _exit_code(args.func(args), getattr(args, "fail_on_error", False))
    except BaseException as err:
        if _interrupted:  # Ctrl-C or SIGTERM, whatever a library raised while closing: outputs are resumable
            print("interrupted; run the same command again to resume", file=sys.stderr, flush=True)
            # What the Dask cluster's own exit hooks say about being stopped mid-start is noise after that line.
            sys.stderr = open(os.devnull, "w")
            return 130
        if isinstance(err, ModuleNotFoundError) and (err.name or "").split(".")[0] in _EXTRA_OF:
            extra = _EXTRA_OF[err.name.split(".")[0]]  # an optional part installed without its extra
            print(f"error: this command needs {err.name}: pip install 'corpusforge[{extra}]'", file=sys.stderr)
            return 2
        if isinstance(err, (UserError, ValueError, OSError)):  # bad settings or inputs, or work that failed
            print(f"error: {err}", file=sys.stderr)
            return err.exit_code if isinstance(err, UserError) else 2
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_interrupted = False
# The extra (pyproject.toml) that installs each optional top-level package.
_EXTRA_OF = {"torch": "train", "safetensors": "train", "starlette": "feedback", "uvicorn": "feedback",
             "sqlalchemy": "feedback", "psycopg": "feedback"}


def _interrupt(signum, frame) -> None:
    """Ctrl-C and SIGTERM: stop the command where it is (clusters are closed on the way out); a second signal
    while closing does not cut that short."""
    global _interrupted
    if not _interrupted:
        _interrupted = True
        raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
