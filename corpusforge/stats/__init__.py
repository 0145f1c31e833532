"""Corpus statistics: what a mixed corpus holds and why (`collect`), as rich tables (`tables`), JSON, and a
self-contained HTML report (`report`); `--verify` checks the shards against the manifest's checksums."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from corpusforge import runtime
from corpusforge.mix import manifest as manifest_mod
from corpusforge.options import option, setting
from corpusforge.stats.collect import corpus_stats


@dataclasses.dataclass
class StatsConfig:
    """`[stats]`: report on the corpus in `corpus` (and the stage folders in `run_dir`, default its parent): print
    tables, write `html` (and `json`) when set, and check checksums when `verify`."""

    corpus: str = "build/corpus/corpus"
    html: str | None = "build/corpus/report.html"
    json: str | None = None
    run_dir: str | None = None
    verify: bool = True


def report_corpus(config: StatsConfig, console=None, brief: bool = False) -> dict[str, Any]:
    """Collect the statistics, print them (`brief`: the funnel and the checks only), write the HTML/JSON files the
    config names; return the statistics."""
    from rich.console import Console

    from corpusforge.stats import report as html_report, tables

    console = console or Console(stderr=True)
    stats = corpus_stats(config.corpus, config.run_dir, verify=config.verify)
    tables.print_stats(stats, manifest_mod.load(config.corpus), console, brief=brief)
    if config.html:
        runtime.write_text_atomic(config.html, html_report.render(stats))
        console.print(f"report: {config.html}")
    if config.json:
        write_json(config.json, stats)
    return stats


def write_json(path: str | os.PathLike, stats: dict[str, Any]) -> None:
    """Write the statistics as JSON, atomically."""
    runtime.write_text_atomic(path, json.dumps(stats, indent=2, ensure_ascii=False) + "\n")


def run(config: StatsConfig, ctx: runtime.RunContext) -> runtime.StageSummary:
    """The `[stats]` recipe stage: `report_corpus`, printing the funnel (each stage printed its own summary; the
    report and `corpusforge stats` hold the rest); its errors are the files that fail verification."""
    stats = report_corpus(config, console=ctx.console, brief=True)
    damaged = len(stats["verify"]["problems"]) if "verify" in stats else 0
    return runtime.StageSummary(stage="stats", files=len(stats["sets"]), errors=damaged,
                                 counts={"documents": stats["overall"]["documents"],
                                         "tokens": stats["overall"]["tokens"], "damaged_files": damaged})



@dataclasses.dataclass
class StatsCommand:
    """`corpusforge stats CORPUS`: the tables, or the statistics as JSON on stdout (`json`); the HTML report when
    `html` names a file; a checksum check of every shard with `verify`."""

    corpus: str = dataclasses.field(metadata=option("corpus folder (with manifest.json)", positional=True))
    json: bool = setting(False, "print the statistics as JSON on stdout (no tables)", action="store_true")
    html: str | None = setting(None, "write a self-contained HTML report with plots", metavar="FILE")
    verify: bool = setting(False, "check every shard against the manifest's sha256; exit 1 if any is missing or "
                                  "damaged", action="store_true")
    run_dir: str | None = setting(None, "folder with the stage outputs (default: the corpus's parent)")


def stats_command(command: StatsCommand) -> bool:
    """`corpusforge stats`: `report_corpus`; False when `verify` found a missing or damaged shard."""
    from rich.console import Console

    config = StatsConfig(corpus=command.corpus, html=command.html, run_dir=command.run_dir, verify=command.verify)
    result = report_corpus(config, console=Console(stderr=True, quiet=command.json))
    if command.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    return not command.verify or result["verify"]["ok"]
