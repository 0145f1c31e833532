"""Recipes (`pipelines/*.toml`): load, validate once with errors that name the key, and list the stages to run.

A recipe is a TOML file. `[run]` holds settings for the whole run; each other top-level table configures one stage
and is validated against that stage's config dataclass (unknown keys, wrong types and bad values are refused at
load, before any work starts). `corpusforge run RECIPE` runs the stages present in the order of `STAGES`.
Relative paths in a recipe are relative to the directory `corpusforge run` is started from.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from corpusforge.cluster import ClusterConfig
from corpusforge.errors import UserError
from corpusforge.options import resolve


class RecipeError(UserError, ValueError):
    """A recipe is invalid; the message names the file and the key."""


@dataclasses.dataclass
class RunConfig:
    """`[run]`: where outputs go and how the work is scheduled."""

    output: str = "build/corpus"
    workers: int | None = None
    scheduler: str | None = None
    seed: int = 1234
    fail_on_error: bool = False
    scheduler_file: str | None = None  # Dask's scheduler file (dask scheduler --scheduler-file, dask-mpi)
    cluster: ClusterConfig = dataclasses.field(default_factory=ClusterConfig)  # [run.cluster]: docs/cluster.md

    def validate(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers: must be at least 1, got {self.workers}")
        if self.scheduler and self.scheduler_file:
            raise ValueError("scheduler, scheduler_file: give one, not both")


@dataclasses.dataclass(frozen=True)
class Stage:
    """A recipe section: its name, config dataclass and runner (as "module:attr" so loading stays cheap)."""

    name: str
    config: str
    runner: str
    many: bool = False  # `[[name]]`: a list of tables, each run as a stage of its own (one per imported set)

    def config_class(self) -> type:
        return resolve(self.config)

    def run_function(self):
        return resolve(self.runner)


# The order stages run in. Each runner is `run(config, ctx: runtime.RunContext) -> StageSummary | None`.
STAGES: list[Stage] = [
    Stage("sample", "corpusforge.sample:SampleConfig", "corpusforge.sample:run"),
    Stage("commoncrawl", "corpusforge.sources.commoncrawl:CommonCrawlConfig", "corpusforge.sources.commoncrawl:run"),
    Stage("webtext2", "corpusforge.sources.webtext2:WebText2Config", "corpusforge.sources.webtext2:run"),
    Stage("wikipedia", "corpusforge.sources.wikipedia:WikipediaConfig", "corpusforge.sources.wikipedia:run"),
    Stage("books", "corpusforge.sources.books:BooksConfig", "corpusforge.sources.books:run"),
    Stage("import", "corpusforge.sources.imported:ImportConfig", "corpusforge.sources.imported:run", many=True),
    Stage("quality", "corpusforge.quality:QualityConfig", "corpusforge.quality:run"),
    Stage("dedup", "corpusforge.dedup:DedupConfig", "corpusforge.dedup:run"),
    Stage("decontaminate", "corpusforge.decontaminate:DecontaminateConfig", "corpusforge.decontaminate:run"),
    Stage("tokenizer", "corpusforge.mix.tokenizer:TokenizerConfig", "corpusforge.mix.tokenizer:run"),
    Stage("mix", "corpusforge.mix.mixer:MixConfig", "corpusforge.mix.mixer:run"),
    Stage("stats", "corpusforge.stats:StatsConfig", "corpusforge.stats:run"),
    # <stages: add new stages above this line, in data-flow order>
]


@dataclasses.dataclass
class Recipe:
    path: Path
    run: RunConfig
    sections: dict[str, Any]  # stage name -> validated config dataclass instance (a list of them for `many`)
    raw: dict[str, Any]

    def stage_configs(self) -> list[tuple[Stage, Any]]:
        """(stage, config) to run, in STAGES order; a `many` stage once per table."""
        return [(s, c) for s in STAGES if s.name in self.sections
                for c in (self.sections[s.name] if s.many else [self.sections[s.name]])]


def load(path: str | Path) -> Recipe:
    """Read and validate a recipe; raise RecipeError naming the file and key on any problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe") from None
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{path}: not valid TOML: {err}") from None
    known = {s.name: s for s in STAGES}
    unknown = sorted(set(raw) - set(known) - {"run"})
    if unknown:
        raise RecipeError(f"{path}: unknown section(s) {unknown}; known: run, {', '.join(known)}")
    run = from_dict(RunConfig, raw.get("run", {}), f"{path}: [run]")
    sections = {name: (_many(stage, raw[name], path) if stage.many else
                       from_dict(stage.config_class(), raw[name], f"{path}: [{name}]"))
                for name, stage in known.items() if name in raw}
    return Recipe(path=path, run=run, sections=sections, raw=raw)


def _many(stage: Stage, tables: Any, path: Path) -> list[Any]:
    """The configs of a `[[name]]` stage (a single `[name]` table counts as one), each writing its own folder."""
    tables = tables if isinstance(tables, list) else [tables]
    configs = [from_dict(stage.config_class(), t, f"{path}: [[{stage.name}]] #{i + 1}") for i, t in enumerate(tables)]
    outputs = [c.output for c in configs]
    if len(set(outputs)) != len(outputs):
        raise RecipeError(f"{path}: [[{stage.name}]]: each needs an output folder of its own, got {outputs}")
    return configs


def from_dict(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from `data`, checking keys and types; errors say `where` and the key."""
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: expected a table, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where} {name}")
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise RecipeError(f"{where}: missing required key(s) {missing}")
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise RecipeError(f"{where}: {err}") from None
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except ValueError as err:
            raise RecipeError(f"{where}: {err}") from None
    return obj


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except RecipeError as err:
                errors.append(str(err))
        raise RecipeError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {hint}")
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise RecipeError(f"{where}: must be one of {list(typing.get_args(hint))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise RecipeError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (arg, *_) = typing.get_args(hint) or (Any,)
        return [_coerce(arg, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a table, got {type(value).__name__}")
        _, varg = typing.get_args(hint) or (str, Any)
        return {k: _coerce(varg, v, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise RecipeError(f"{where}: expected a string, got {value!r}")
        return value
    raise RecipeError(f"{where}: unsupported type {hint}")


def check_inputs(rec: Recipe) -> list[str]:
    """Problems with the inputs the recipe reads from outside the run (an input under the run's or a stage's output
    folder is written by an earlier stage): a path that does not exist, a glob that matches nothing, a URL that
    does not answer. One line each; empty when all are there."""
    import glob as globlib

    import fsspec

    produced = [Path(rec.run.output).resolve()] + [Path(c.output).resolve() for _, c in rec.stage_configs()
                                                  if isinstance(getattr(c, "output", None), str)]
    problems = []
    for stage, config in rec.stage_configs():
        for spec in _input_specs(config):
            if "://" not in spec and any(Path(spec).resolve().is_relative_to(p) for p in produced):
                continue
            try:
                if "://" in spec:
                    fs, path = fsspec.core.url_to_fs(spec)
                    found = fs.glob(path) if globlib.has_magic(path) else fs.exists(path)
                else:
                    found = globlib.glob(spec) if globlib.has_magic(spec) else Path(spec).exists()
            except ImportError as err:
                problems.append(f"[{stage.name}] {spec}: {err}")
                continue
            except Exception as err:  # a server that does not answer, refused credentials...
                found, err_text = False, f"{type(err).__name__}: {err}"
            else:
                err_text = "glob matches nothing" if globlib.has_magic(spec) else "does not exist"
            if not found:
                problems.append(f"[{stage.name}] {spec}: {err_text}")
    return problems


def _input_specs(config: Any) -> list[str]:
    """The input paths, globs and URLs a stage config names (`inputs`, `pushshift`, and those of nested
    configs such as the quality classifier's `positives`/`negatives`)."""
    out: list[str] = []
    if not dataclasses.is_dataclass(config):
        return out
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name in ("inputs", "pushshift", "positives", "negatives") and isinstance(value, list):
            out.extend(v for v in value if isinstance(v, str))
        elif dataclasses.is_dataclass(value):
            out.extend(_input_specs(value))
    return out
