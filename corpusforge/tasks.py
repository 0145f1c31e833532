"""Mapping a task over a stage's inputs on the Dask cluster, with one progress bar per stage: `map_tasks` (the one
submit/progress loop), `map_files` (one task per input file, its reports summed into the stage's summary, inputs
that kill their worker tried again alone, then reported as poison) and `run_phase` (a fail-fast phase of a
group-by, shown on the stage's `PhaseBar`)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from corpusforge import resume, storage
from corpusforge.cluster import task_resources
from corpusforge.runtime import (LOG_EVERY_S, FileReport, RunContext, StageSummary, errors_of, finish_stage,
                                 output_name)

_log = logging.getLogger("corpusforge")


def progress_shown(console: Any) -> bool:
    """Whether a live progress bar is drawn (a terminal, or CORPUSFORGE_PROGRESS set); else stages print lines."""
    return bool(console.is_terminal or os.environ.get("CORPUSFORGE_PROGRESS"))


def _progress(console: Any, transient: bool) -> Any:
    """The rich progress display every bar of a stage uses (drawn only where `progress_shown`)."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("left"), TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=console,
                    transient=transient, disable=not progress_shown(console))


class PhaseBar:
    """One progress bar for a stage made of phases (dedup's shuffle, decontamination's count and cut): each phase
    (`run_phase(..., bar=)`) relabels it `stage: phase` and restarts its count, so the console shows one bar for
    the stage, not one per phase. Use as a context manager around the phases."""

    def __init__(self, console: Any, stage: str):
        self.progress = _progress(console, transient=True)
        self.stage = stage
        self.task: Any = None

    def __enter__(self) -> PhaseBar:
        self.progress.start()
        self.task = self.progress.add_task(self.stage, total=None, status="")
        return self

    def phase(self, label: str, total: int) -> Any:
        """Show phase `label` of `total` tasks on the bar; its task id."""
        self.progress.reset(self.task, total=total, description=f"{self.stage}: {label}", status="")
        return self.task

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()


def map_tasks(client: Any, fn: Callable[..., Any], items: Sequence[Any], *args: Any, title: str, console: Any,
              fail_fast: bool = False, keys: Sequence[str] | None = None,
              kwargs_for: Callable[[Any], dict[str, Any]] | None = None,
              on_result: Callable[[int, Any], str] | None = None, transient: bool = False,
              bar: PhaseBar | None = None) -> list[Any]:
    """Run `fn(item, *args, **kwargs_for(item))` for every item as Dask tasks with a progress bar; return the
    results in item order. The one submit/progress loop under every stage.

    A task that raises becomes its exception in the results (the caller reports it and the other items go on), or
    with `fail_fast` cancels the rest and raises RuntimeError: a failing phase of a group-by would leave the result
    wrong. `on_result(i, result)` is called as each task finishes and returns the progress bar's status text.
    With `bar` the tasks advance that stage's bar (labelled `title`) instead of a bar of their own.
    """
    from distributed import as_completed

    stage = bar.stage if bar is not None else title.split()[0].rstrip(":")
    resources = task_resources(client, stage)  # the stage's memory claim per task
    futures = [client.submit(fn, item, *args, pure=False, resources=resources,
                             **({"key": keys[i]} if keys else {}), **(kwargs_for(item) if kwargs_for else {}))
               for i, item in enumerate(items)]
    index = {f.key: i for i, f in enumerate(futures)}
    results: dict[int, Any] = {}
    progress = bar.progress if bar else _progress(console, transient)
    with contextlib.nullcontext() if bar else progress:
        task = bar.phase(title, len(futures)) if bar else progress.add_task(title, total=len(futures), status="")
        for future in as_completed(futures):
            i = index[future.key]
            try:
                results[i] = future.result()
            except Exception as exc:
                if fail_fast:
                    client.cancel(futures)
                    raise RuntimeError(f"{title}: task for {items[i]!r} failed: {type(exc).__name__}: {exc}") from exc
                results[i] = exc
            progress.update(task, advance=1, status=on_result(i, results[i]) if on_result else "")
    return [results[i] for i in range(len(items))]


def map_files(task: Callable[..., FileReport], items: Sequence[str], out_dir: str | os.PathLike, config: Any, *,
              stage: str, ctx: RunContext, kept_key: str = "documents", finish: bool = True,
              kwargs_for: Callable[[str], dict[str, Any]] | None = None) -> tuple[StageSummary, list[FileReport]]:
    """Run `task(item, out_dir, config, **kwargs_for(item))` for every item on the context's Dask client, with a
    live progress bar, and finish the stage (`_errors.jsonl`, `_summary.json`, summary table).

    Returns the summary and the per-file reports in input order. A stage that adds to the summary afterwards passes
    `finish=False` and calls `finish_stage` itself, once, when it is complete.
    """
    from distributed import KilledWorker

    console = ctx.console
    storage.check_protocols([*items, str(out_dir)])
    resume.begin_stage(out_dir, stage)
    summary = StageSummary(stage=stage)
    t0 = time.perf_counter()
    run_token = uuid.uuid4().hex[:8]  # keys unique per call: a re-run on the same client must not reuse results
    keys = [f"{stage}-{i}-{output_name(item, '')}-{run_token}" for i, item in enumerate(items)]
    done, logged, printed = 0, time.perf_counter(), time.perf_counter()

    def on_result(i: int, report: Any) -> str:
        nonlocal done, logged, printed
        if isinstance(report, Exception):
            exc, report = report, FileReport(input=str(items[i]))
            if isinstance(exc, KilledWorker):  # it lost a worker on every try, alone too (memory, a crash): poison
                tries = re.search(r"on (\d+) different workers", str(exc))
                n = int(tries[1]) if tries else 1
                report.error(f"poison input: its task lost its worker on each of {2 * n} tries, the last {n} alone "
                             "on the cluster (killed for memory or crashed); skipped", stage=stage)
            else:  # the task itself crashed: report it, keep going with the other files
                report.error(f"task failed: {type(exc).__name__}: {exc}", stage=stage)
            reports[i] = report
        done += 1
        summary.add(report)
        if report.redone:
            console.print(f"{stage}: {items[i]}: made again, {report.redone}", highlight=False)
        elapsed = time.perf_counter() - t0
        rate = summary.counts.get(kept_key, 0) / max(elapsed, 1e-9)
        line = (f"{stage}: {done}/{len(items)} files, {kept_key} {summary.counts.get(kept_key, 0):,} "
                f"({rate:,.1f}/s), errors {summary.errors}")
        if time.perf_counter() - logged > LOG_EVERY_S or done == len(items):
            logged = time.perf_counter()
            _log.info("%s, %.0f s elapsed, about %.0f s left", line, elapsed, elapsed / done * (len(items) - done))
        if not progress_shown(console) and (time.perf_counter() - printed > LOG_EVERY_S or done == len(items)):
            printed = time.perf_counter()  # without a bar: a line now and then and the last one, not one per file
            console.print(line, highlight=False)
        return f"{kept_key} {summary.counts.get(kept_key, 0):,} ({rate:,.1f}/s) errors {summary.errors}"

    reports: dict[int, FileReport] = {}
    suspects: list[int] = []

    def on_first_try(i: int, result: Any) -> str:
        if isinstance(result, KilledWorker):  # its own doing, or it waited on a worker another task killed: see below
            suspects.append(i)
            return f"{len(suspects)} to try again alone"
        return on_result(i, result)

    with ctx.dask() as client:
        results = map_tasks(client, task, items, str(out_dir), config, title=stage, console=console, keys=keys,
                            kwargs_for=kwargs_for, on_result=on_first_try)
        for i in suspects:  # one at a time, alone on the cluster: a worker's death is then this input's own doing
            (results[i],) = map_tasks(client, task, [items[i]], str(out_dir), config, title=f"{stage}: {items[i]}",
                                      console=console, keys=[f"{keys[i]}-alone"], kwargs_for=kwargs_for,
                                      on_result=lambda _, result, i=i: on_result(i, result), transient=True)
    ordered = [reports.get(i, r) for i, r in enumerate(results)]
    summary.seconds = time.perf_counter() - t0
    if finish:
        finish_stage(out_dir, summary, errors_of(ordered), console=console)
    return summary, ordered


def run_phase(client: Any, title: str, fn: Callable[..., Any], items: Sequence[Any], *args: Any,
              console: Any, bar: PhaseBar | None = None) -> list[Any]:
    """One phase of a group-by (dedup's shuffle, decontamination's count and cut): `map_tasks` in fail-fast mode,
    on the stage's `bar` when given, and a line in the run's log saying how long it took. Unlike a damaged input
    file (which a task reports and survives), a failing phase would leave the result wrong, so it stops the stage."""
    t0 = time.perf_counter()
    results = map_tasks(client, fn, items, *args, title=title, console=console, fail_fast=True, transient=True,
                        bar=bar)
    _log.info("%s: %d task(s) in %.1fs", f"{bar.stage}: {title}" if bar else title, len(items),
              time.perf_counter() - t0)
    return results
