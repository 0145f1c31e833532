"""The `corpusforge` command: parse arguments, call the library, print summaries. No logic lives here."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from corpusforge import options
from corpusforge.options import Command
from corpusforge.recipe import STAGES


CLUSTER = ("workers", "scheduler", "fail_on_error", "force")  # the RunContext options of a command that runs stages
_SHARDS = "folders of document shards (missing ones are skipped), files or globs"


def stage(name: str, help: str, inputs: str, **kw: Any) -> Command:
    """A recipe stage as a command: INPUT... --output DIR, its config's options and the cluster's."""
    spec = next(s for s in STAGES if s.name == name.split()[0])
    return Command(name, help, spec.config, spec.runner, ctx=CLUSTER, inputs=inputs, **kw)


def _trainer(method: str, config: str, fields: tuple[str, ...], help: str) -> Command:
    """`train METHOD`: the run's options, and flags for `fields` of the method's config (--set for the rest)."""
    return Command(f"train {method}", help, "corpusforge.trainer:TrainCommand",
                   "corpusforge.trainer:train_command", fixed={"method": method},
                   tables=((f"corpusforge.trainer.{method}:{config}", dict(
                       prefix="settings.", only=fields + ("max_steps", "device", "compile"), set_option=True)),))


COMMANDS: list[Command] = [
    Command("run", "run a recipe (pipelines/*.toml): every stage it configures, in order",
            "corpusforge.pipeline:RunCommand", "corpusforge.pipeline:run_command", ctx=CLUSTER + ("scheduler_file",)),
    Command("validate", "check a recipe without running it", "corpusforge.pipeline:ValidateCommand",
            "corpusforge.pipeline:validate_command"),
    stage("commoncrawl", "WARC files -> language-tagged document shards",
          "WARC(.gz) paths or URLs, globs, or warc.paths(.gz) listings", nargs="*"),
    Command("train", "train the bundled GPT (see docs/trainer.md)"),
    _trainer("pretrain", "TrainConfig", ("corpus", "text", "preset"),
             "pretrain a GPT on a mixed corpus; under torchrun, data-parallel"),
    _trainer("sft", "SFTConfig", ("base", "data", "epochs", "ptx_fraction", "corpus"),
             "fine-tune a pretrained run on conversations (SFT); under torchrun, data-parallel"),
    _trainer("reward", "RewardConfig", ("base", "feedback", "demos", "epochs"),
             "train a reward model on human feedback (rankings, thumbs) from an SFT run; under torchrun, "
             "data-parallel"),
    _trainer("ppo", "PPOConfig", ("policy", "reward", "prompts", "corpus", "ptx_coef", "kl_coef", "target_kl"),
             "RLHF: PPO (PPO-ptx with --corpus) from an SFT run against a reward model; under torchrun, data-parallel"),
    _trainer("dpo", "DPOConfig", ("policy", "feedback", "beta", "epochs"),
             "RLHF without a reward model: DPO on feedback comparisons from an SFT run"),
    Command("eval", "evaluate trained runs"),
    Command("eval compare", "runs side by side: win rates (reward model, scripted labeler), reward, KL to the SFT "
            "reference, pretraining validation loss", "corpusforge.trainer.compare:CompareCommand",
            "corpusforge.trainer.compare:compare_command"),
    Command("generate", "sample text from a trained run", "corpusforge.trainer.generate:GenerateCommand",
            "corpusforge.trainer.generate:generate_command"),
    Command("chat", "talk to a trained run in the terminal; with stdin not a terminal, each line is a user turn and "
            "each reply is printed on its own line", "corpusforge.trainer.generate:ChatCommand",
            "corpusforge.trainer.generate:chat_command"),
    Command("webtext2", "WebText2: Reddit links with score >= 3, fetched politely, extracted"),
    Command("webtext2 links", "Reddit submissions (API or Pushshift dumps) -> deduplicated link table",
            "corpusforge.sources.webtext2:LinksCommand", "corpusforge.sources.webtext2:links_command", ctx=CLUSTER,
            tables=(("corpusforge.sources.webtext2.urls:LinkRules", dict(prefix="links.", only=(
                "min_score", "score_aggregate", "drop_nsfw", "since", "until", "buckets"))),
                    ("corpusforge.sources.webtext2.reddit:RedditConfig", dict(prefix="reddit.", only=(
                        "listing", "time_filter", "limit", "site", "oauth_url", "reddit_url"))))),
    Command("webtext2 fetch", "link table -> WARCs (polite, resumable) -> document shards",
            "corpusforge.sources.webtext2:FetchCommand", "corpusforge.sources.webtext2:fetch_command", ctx=CLUSTER,
            tables=(("corpusforge.sources.commoncrawl:CommonCrawlConfig", dict(prefix="extract.", only=(
                "languages", "min_lang_score", "lid_model", "mode", "timeout_s"), flags={
                "timeout_s": "--extract-timeout"})),)),
    stage("dedup", "document shards of any sources -> one copy of each URL/exact/near duplicate", _SHARDS),
    Command("tokenizer", "the corpus tokenizer (byte-level BPE)"),
    stage("tokenizer train", "train a byte-level BPE on a seeded sample of document shards, per source",
          "folders or globs of document shards (e.g. build/sample/dedup)", nargs="*"),
    Command("mix", "document sets -> weighted, tokenized, shuffled corpus shards + manifest.json",
            "corpusforge.pipeline:MixCommand", "corpusforge.pipeline:mix_command", ctx=CLUSTER),
    Command("stats", "what a mixed corpus holds and why: tables, --json, --html report, --verify",
            "corpusforge.stats:StatsCommand", "corpusforge.stats:stats_command"),
    stage("wikipedia", "MediaWiki XML dumps -> article documents; `wikipedia download NAME` fetches and verifies a "
          "dump", "dumps (.xml.bz2, multistream with its index beside it, or .xml), folders or globs",
          description="corpusforge wikipedia DUMP... --output DIR  |  corpusforge wikipedia download NAME --output "
                      "DIR [--base-url URL] (see its --help)"),
    Command("wikipedia download", "fetch a Wikipedia dump with its multistream index and verify their checksums",
            "corpusforge.sources.wikipedia:DownloadCommand", "corpusforge.sources.wikipedia:download_command"),
    stage("books", "Gutenberg .txt, plain .txt collections and EPUB -> book-part documents",
          "book files (.txt, .txt.gz/.bz2/.xz/.zst, .epub), folders or globs"),
    stage("import", "your own data (JSONL, Parquet, CSV, a Hugging Face dataset saved to disk) -> document shards of "
          "one set (see docs/import.md)", "files, folders, globs, or a save_to_disk folder"),
    stage("quality", "document shards -> the documents that pass Gopher/C4 rules and GPT-3's quality classifier (see "
          "docs/quality.md)", _SHARDS, tables=(
              ("corpusforge.quality.heuristics:HeuristicsConfig", dict(prefix="heuristics.", only=(
                  "sources", "disable", "enable", "thresholds"))),
              ("corpusforge.quality.classifier:ClassifierConfig", dict(prefix="classifier.", only=(
                  "sources", "positives", "negatives", "model", "keep", "alpha", "train_documents"))))),
    stage("decontaminate", "document shards -> the same without the n-grams of evaluation sets (GPT-3's rules, see "
          "docs/decontaminate.md)", _SHARDS, extra="corpusforge.decontaminate.evals:EvalFiles"),
    Command("feedback", "human feedback: the web app, export/import, scripted labelers (see docs/feedback.md)"),
    Command("feedback serve", "serve the Rank, Chat and Write pages for a trained run",
            "corpusforge.feedback.app:ServeConfig", "corpusforge.feedback.app:serve"),
    Command("feedback export", "the store -> comparisons/ratings/conversations Parquet",
            "corpusforge.feedback.exchange:ExportCommand", "corpusforge.feedback.exchange:export_command"),
    Command("feedback import", "TRL preference JSONL or Anthropic HH pairs -> comparisons in the store",
            "corpusforge.feedback.exchange:ImportCommand", "corpusforge.feedback.exchange:import_command"),
    Command("feedback label", "a scripted labeler: rank offers by a rule through the HTTP API",
            "corpusforge.feedback.labelers:LabelCommand", "corpusforge.feedback.labelers:label_command"),
    # <commands: add new commands above this line>
]


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (`error: ...`) and exit 2, like every other user error, and every
    option's default in its help."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{"formatter_class": options.DefaultsHelpFormatter, **kwargs})

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message}\n")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command in COMMANDS; with `argv`, the options generated from a config only for the
    command `argv` names (importing a stage to read its config costs seconds: numba, trafilatura...), and a
    command's other form (`wikipedia download`) in place of the command when `argv` names that form."""
    words = None if argv is None else [a for a in argv if not a.startswith("-")]
    named = {c.name for c in COMMANDS if words is None or words[:len(c.name.split())] == c.name.split()}
    groups = {c.name for c in COMMANDS if not c.config} | {""}
    # Another form of a command (`wikipedia download` of `wikipedia`) replaces it when `argv` names that form.
    forms = {c.name for c in COMMANDS if c.name.rpartition(" ")[0] not in groups}
    chosen = forms & named if words is not None else set()
    skip = (forms - chosen) | {n.rpartition(" ")[0] for n in chosen}
    parser = _Parser(prog="corpusforge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"corpusforge {_version()}")
    subparsers = {"": parser.add_subparsers(dest="command", required=True)}
    for cmd in (c for c in COMMANDS if c.name not in skip):
        form = cmd.name in chosen
        head, _, last = (cmd.name.rpartition(" ")[0] if form else cmd.name).rpartition(" ")
        kw = {"prog": f"corpusforge {cmd.name}", "description": cmd.help} if form else {}
        p = subparsers[head].add_parser(last, help=cmd.help, **{"description": cmd.description, **kw})
        if not cmd.config:
            subparsers[cmd.name] = p.add_subparsers(dest=f"{last}_command", required=True)
            continue
        p.set_defaults(entry=cmd)
        if form:
            p.add_argument("form", choices=[cmd.name.split()[-1]], metavar=cmd.name.split()[-1])
        if cmd.name in named:
            options.add_command(p, cmd)
    return parser


def _exit_code(outcome: Any, ctx: Any) -> int:
    """A command's outcome as its exit code. Stage summaries (one, or a list): 1 when a stage had inputs and every
    one of them failed, or with the context's `fail_on_error` when any input was damaged; else 0. False: 1; True or
    None: 0."""
    if isinstance(outcome, bool) or outcome is None:
        return 1 if outcome is False else 0
    done = [s for s in (outcome if isinstance(outcome, list) else [outcome]) if s is not None]
    for s in done:
        if s.every_input_failed():
            print(f"error: {s.stage}: every input failed (see its _errors.jsonl)", file=sys.stderr)
            return 1
    return 1 if (ctx and ctx.fail_on_error and sum(s.errors for s in done)) else 0


def _version() -> str:
    """The installed distribution's version (pyproject.toml's), or "unknown" when run from a bare checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("corpusforge")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    from corpusforge.errors import UserError

    argv = sys.argv[1:] if argv is None else argv
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        args = build_parser(argv).parse_args(argv)  # a command's options may import its (optional) libraries
        return _exit_code(*options.call(args.entry, args))
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
