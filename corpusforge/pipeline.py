"""Run a recipe: open one Dask client for the whole run and call each configured stage in data-flow order."""

from __future__ import annotations

import time

from corpusforge import recipe as recipe_mod
from corpusforge.cluster import run_log
from corpusforge.runtime import RunContext, StageSummary, write_json_atomic


def run_recipe(rec: recipe_mod.Recipe, only: list[str] | None = None, console=None,
               client=None) -> list[StageSummary | None]:
    """Run the recipe's stages (or just `only`), sharing one Dask client (`client`, e.g. a managed service's, or
    one opened from `[run]`); log to `<output>/_run.log` (appended, so a resumed run continues it) and write
    `<output>/_run.json` at the end. A name in `only` that is not a stage of the recipe is a RecipeError."""
    from rich.console import Console

    names = [s.name for s, _ in rec.stage_configs()]
    unknown = [name for name in only or [] if name not in names]
    if unknown:  # before anything is opened or written
        raise recipe_mod.RecipeError(f"--only {', '.join(unknown)}: no such stage in {rec.path}; its stages: "
                                     f"{', '.join(names)}")
    console = console or Console(stderr=True)
    stages = [(s, c) for s, c in rec.stage_configs() if not only or s.name in only]
    summaries: list[StageSummary | None] = []
    timings: dict[str, float] = {}
    ctx = RunContext(client=client, console=console, scheduler=rec.run.scheduler, workers=rec.run.workers,
                     seed=rec.run.seed, output=rec.run.output, recipe=rec, scheduler_file=rec.run.scheduler_file,
                     cluster=rec.run.cluster)
    with run_log(rec.run.output) as log_path, ctx.dask():
        console.print(f"log: {log_path}", highlight=False, soft_wrap=True)
        for stage, config in stages:
            console.rule(f"[bold]{_label(stage, config)}")
            t0 = time.perf_counter()
            summaries.append(stage.run_function()(config, ctx))
            timings[_label(stage, config)] = round(time.perf_counter() - t0, 2)
    write_json_atomic(ctx.path("_run.json"), {
        "recipe": str(rec.path), "stages": timings,
        "summaries": {_label(s, c): (m.to_json() if m else None) for (s, c), m in zip(stages, summaries)},
    })
    console.print(f"done: {', '.join(f'{k} {v:.1f}s' for k, v in timings.items())}; outputs in {rec.run.output}")
    return summaries


def _label(stage: recipe_mod.Stage, config) -> str:
    """A stage's name, with the set's for a stage a recipe runs once per set (`import code`)."""
    return f"{stage.name} {config.source}" if stage.many else stage.name
