"""Run a recipe: open one Dask client for the whole run and call each configured stage in data-flow order. Also the
recipe commands: `corpusforge run`, `validate` and `mix`."""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Literal

from corpusforge import recipe as recipe_mod
from corpusforge.cluster import run_log
from corpusforge.options import option, setting
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


_RECIPE = option("a recipe (pipelines/*.toml)", positional=True)


@dataclasses.dataclass
class RunCommand:
    """`corpusforge run RECIPE`: the recipe's stages (or those of `only`), on the cluster the command line names
    (its RunContext options), else the recipe's `[run]`."""

    recipe: str = dataclasses.field(metadata=_RECIPE)
    only: list[str] = setting([], "run only this stage (repeatable): " + ", ".join(s.name for s in recipe_mod.STAGES),
                              action="append", metavar="STAGE")
    cluster: Literal["local", "slurm", "pbs", "sge", "kubernetes"] | None = setting(
        None, "start the workers with this Dask deployer, sized by the recipe's [run.cluster] (docs/cluster.md)")


def run_command(command: RunCommand, ctx: RunContext) -> list[StageSummary | None]:
    """`corpusforge run`: `run_recipe` with the command line's cluster settings in place of the recipe's."""
    rec = recipe_mod.load(command.recipe)
    if ctx.scheduler or ctx.scheduler_file:  # the command line's cluster replaces the recipe's
        rec.run.scheduler, rec.run.scheduler_file = ctx.scheduler, ctx.scheduler_file
        rec.run.validate()
    if command.cluster:
        rec.run.cluster.kind = command.cluster
    rec.run.workers = ctx.workers or rec.run.workers
    ctx.adopt(rec.run)
    return run_recipe(rec, only=command.only or None)


@dataclasses.dataclass
class ValidateCommand:
    """`corpusforge validate RECIPE`: check a recipe (and with `check_inputs` its inputs) without running it."""

    recipe: str = dataclasses.field(metadata=_RECIPE)
    check_inputs: bool = setting(False, "also check that every input the recipe reads (and no earlier stage writes) "
                                        "exists or answers", action="store_true")


def validate_command(command: ValidateCommand) -> bool:
    """`corpusforge validate`: one line for a valid recipe, one error line per missing input; False if any."""
    rec = recipe_mod.load(command.recipe)
    problems = recipe_mod.check_inputs(rec) if command.check_inputs else []
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print(f"{command.recipe}: valid{'; inputs found' if command.check_inputs else ''}; stages: "
              f"{', '.join(s.name for s, _ in rec.stage_configs())}")
    return not problems


@dataclasses.dataclass
class MixCommand:
    """`corpusforge mix RECIPE`: the recipe's `[mix]` section alone (into `output` when given)."""

    recipe: str = dataclasses.field(metadata=option("a recipe with a [mix] section (e.g. pipelines/gpt3.toml)",
                                                    positional=True))
    output: str | None = setting(None, "corpus folder (default: the recipe's [mix] output)", flag="--output -o")


def mix_command(command: MixCommand, ctx: RunContext) -> StageSummary:
    """`corpusforge mix`: the mixer on the recipe's `[mix]` settings, on the command line's cluster, else the
    recipe's `[run]`."""
    from corpusforge.mix import mixer

    rec = recipe_mod.load(command.recipe)
    if "mix" not in rec.sections:
        raise recipe_mod.RecipeError(f"{command.recipe}: no [mix] section")
    ctx.adopt(rec.run)
    return mixer.run(dataclasses.replace(rec.sections["mix"], output=command.output or rec.sections["mix"].output),
                     ctx)
