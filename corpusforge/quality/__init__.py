"""The quality stage: heuristic rules and GPT-3's quality classifier over document shards, between the sources and
dedup.

`run(config, output)` reads each input shard in a Dask task and writes one output shard of the same contract
holding the documents it keeps, atomically (a re-run keeps finished shards). Which documents meet which filter is
config: by default the heuristics (`heuristics`: Gopher's and C4's rules) judge commoncrawl and webtext2 documents
and the classifier (`classifier`: GPT-3's logistic regression and Pareto rule) judges commoncrawl documents only,
as GPT-3 did; documents of other sources pass through unchanged. A document dropped by a rule is counted as
`dropped_<rule>` (the first rule it fails), one dropped by your own filter (`filters`, run after the rules:
quality/custom.py) as `dropped_<its reason>`, one dropped by the classifier as `dropped_classifier`, and the
classifier's score of every document it judged and kept is the `quality_score` column.

Before the shards are filtered, the classifier is trained on a seeded sample of its positive and negative shards
(`classifier.train_model`) and saved as `_classifier.npz` in the output folder, unless that file (or the configured
`model`) exists already. Beside the shards: `_dropped.parquet`, up to `dropped_sample` dropped documents per reason
chosen by a seeded hash of their id, with the reason and the measure that failed (or the score), to see what each
rule removes; `_summary.json` and `_errors.jsonl` as every stage writes them.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from corpusforge import resume, runtime, schema, storage, tasks
from corpusforge.documents import find_shards, read_batches, unit_hash
from corpusforge.options import option
from corpusforge.quality import classifier, custom, heuristics
from corpusforge.quality.classifier import ClassifierConfig
from corpusforge.quality.custom import FilterConfig
from corpusforge.quality.heuristics import HeuristicsConfig
from corpusforge.runtime import DROPPED_FILE

__all__ = ["ClassifierConfig", "FilterConfig", "HeuristicsConfig", "QualityConfig", "filter_shard", "run"]

MODEL_FILE = "_classifier.npz"
DROPPED_PARTS = "_work/dropped"
CLASSIFIER_REASON = "classifier"
# Every document column but the score, which this stage sets (shards written before it existed lack it).
READ_COLUMNS = [c for c in schema.document_schema().names if c != "quality_score"]


@dataclasses.dataclass
class QualityConfig:
    """`[quality]` / `corpusforge quality`: the shards to filter, where the kept documents go, and the filters."""

    inputs: list[str] = dataclasses.field(default_factory=list)
    output: str = "build/quality"
    seed: int = dataclasses.field(default=1234, metadata=option("seed of the samples and Pareto draws"))
    heuristics: HeuristicsConfig = dataclasses.field(default_factory=HeuristicsConfig)
    classifier: ClassifierConfig = dataclasses.field(default_factory=ClassifierConfig)
    dropped_sample: int = dataclasses.field(default=20, metadata=option(
        "dropped documents kept per reason in _dropped.parquet (0: none)"))
    filters: list[FilterConfig] = dataclasses.field(default_factory=list)  # your own: quality/custom.py

    def validate(self) -> None:
        if not self.inputs:
            raise ValueError("inputs: give at least one folder of document shards")
        if self.dropped_sample < 0:
            raise ValueError(f"dropped_sample: must be >= 0, got {self.dropped_sample}")
        self.heuristics.validate()
        self.classifier.validate()
        for f in self.filters:
            f.validate()


@dataclasses.dataclass(frozen=True)
class _Job:
    """What each shard task needs: the rules with their thresholds, the model and the keep rule."""

    rules: list[tuple[heuristics.Rule, float]]
    stop_words: dict[str, list[str]]
    heuristic_sources: list[str]
    classifier_sources: list[str]
    model: str | None
    keep: str
    alpha: float
    seed: int
    dropped_sample: int
    filters: tuple[custom.Packed, ...] = ()


# --------------------------------------------------------------------------------------------------- one batch
def judge(table: pa.Table, job: _Job) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each document of `table` (document columns): the reason it is dropped ("": kept), the value that
    decided it (the failed measure, or the score) and the classifier's score (NaN where it did not judge)."""
    n = table.num_rows
    sources = np.asarray(table.column("source").to_pylist(), dtype=object)
    reason = np.full(n, "", dtype=object)
    value = np.full(n, np.nan)
    score = np.full(n, np.nan)
    judged = np.flatnonzero(np.isin(sources, job.heuristic_sources))
    if len(judged) and job.rules:
        part = table.take(judged)
        measures = heuristics.measure(part.column("text"), part.column("lang"), {r.measure for r, _ in job.rules},
                                      job.stop_words)
        failed = heuristics.first_failed(measures, job.rules, len(judged))
        for i, (rule, _) in enumerate(job.rules):
            hit = failed == i
            reason[judged[hit]] = rule.name
            value[judged[hit]] = measures[rule.measure][hit]
    custom.apply(job.filters, table, sources, reason)
    scored = np.flatnonzero(np.isin(sources, job.classifier_sources) & (reason == ""))
    if len(scored):
        part = table.take(scored)
        score[scored] = classifier.load_model(job.model).score(part.column("text").to_pylist())
        if job.keep == "pareto":
            out = scored[~classifier.pareto_keep(part.column("id").to_pylist(), score[scored], job.seed, job.alpha)]
            reason[out] = CLASSIFIER_REASON
            value[out] = score[out]
    return reason, value, score


def _lowest_per_reason(table: pa.Table, k: int, seed: int) -> pa.Table:
    """The `k` rows of each reason with the lowest seeded coin of their id, sorted by reason and coin."""
    if not table.num_rows:
        return table
    coin = unit_hash(table.column("id").to_pylist(), seed, salt="quality-dropped")
    order = np.lexsort((coin, np.asarray(table.column("reason").to_pylist(), dtype=object).astype(str)))
    table = table.take(order)
    reasons = np.asarray(table.column("reason").to_pylist(), dtype=object)
    new = np.ones(len(reasons), dtype=bool)
    new[1:] = reasons[1:] != reasons[:-1]
    rank = np.arange(len(reasons)) - np.maximum.accumulate(np.where(new, np.arange(len(reasons)), 0))
    return table.filter(pa.array(rank < k))


def _as(table: pa.Table, target: pa.Schema) -> pa.Table:
    return table.select(target.names).cast(target)


def _dropped_rows(table: pa.Table, reason: np.ndarray, value: np.ndarray) -> pa.Table:
    out = reason != ""
    rows = table.filter(pa.array(out))
    rows = rows.append_column("quality_score", pa.nulls(rows.num_rows, pa.float32()))
    rows = rows.append_column("reason", pa.array(list(reason[out]), pa.string()))
    return rows.append_column("value", pa.array(value[out], pa.float64(), mask=np.isnan(value[out])))


# --------------------------------------------------------------------------------------------------- one shard
def _output_name(path: str) -> str:
    return runtime.output_name(path.removesuffix(".parquet"))


def filter_shard(item: str, out_dir: str, job: _Job) -> runtime.FileReport:
    """The per-shard task: the kept documents of one input shard -> one output shard (atomic; a finished one is kept
    and its report reused), and its sample of dropped documents (written first, so a finished shard has it)."""
    out_path = storage.join(out_dir, _output_name(item))  # a local path or an object store URL
    fp = resume.resume(out_path, item, job, files=[item] + ([job.model] if job.model else []))
    if fp.done is not None:
        return fp.done
    t0 = time.perf_counter()
    report = runtime.FileReport(input=item, output=str(out_path), bytes_in=storage.size(item),
                                redone=fp.redone)
    report.count("documents", 0)
    report.count("kept", 0)
    dropped = schema.empty_table("dropped")
    with runtime.ShardWriter(out_path, fingerprint=fp) as writer:
        for batch in read_batches(item, READ_COLUMNS, report):
            table = pa.Table.from_batches([batch])
            reason, value, score = judge(table, job)
            kept = reason == ""
            out = table.filter(pa.array(kept))
            writer.write_table(out.append_column("quality_score", pa.array(
                score[kept], pa.float32(), mask=np.isnan(score[kept]))))
            report.count("documents", table.num_rows)
            report.count("kept", int(kept.sum()))
            report.count("scored", int((~np.isnan(score)).sum()))
            for source, lang in zip(out.column("source").to_pylist(), out.column("lang").to_pylist()):
                report.count(f"{source}:kept")
                report.by_lang[lang] = report.by_lang.get(lang, 0) + 1
            for source, lang, why in zip(table.column("source").to_pylist(), table.column("lang").to_pylist(), reason):
                report.count(f"{source}:{lang}:documents")  # per source and language, for the report's shares
                if why:
                    report.count(f"dropped_{why}")
                    report.count(f"{source}:{lang}:dropped_{why}")
            if job.dropped_sample:
                rows = _dropped_rows(table, reason, value)
                dropped = _lowest_per_reason(pa.concat_tables([dropped, _as(rows, dropped.schema)]),
                                             job.dropped_sample, job.seed)
        if job.dropped_sample:
            with runtime.ShardWriter(storage.join(out_dir, DROPPED_PARTS, storage.name(out_path)), "dropped") as part:
                part.write_table(dropped)
        report.seconds = time.perf_counter() - t0
        writer.set_report(report)
    return report


# ---------------------------------------------------------------------------------------------------- the stage
def _classifier_model(config: QualityConfig, out: str, client: Any, console: Any) -> tuple[str, dict[str, Any]]:
    """The model file to score with: the configured or earlier one if it exists, else one trained now."""
    path = str(config.classifier.model or storage.join(out, MODEL_FILE))
    if not storage.exists(path):
        shards = []
        for key in ("positives", "negatives"):
            found, missing = find_shards(getattr(config.classifier, key))
            if missing or not found:
                raise FileNotFoundError(f"quality: classifier {key}: no document shards in {missing or found}")
            shards.append(found)
        console.print(f"quality: training the classifier on {len(shards[0])} positive and {len(shards[1])} "
                      f"negative shards")
        classifier.train_model(config.classifier, config.seed, client, *shards).save(path)
    model = classifier.load_model(path)
    auc = model.settings.get("training", {}).get("held_out_auc")
    console.print(f"quality: classifier {path}" + (f" (held-out ROC AUC {auc:.3f})" if auc is not None else ""))
    return str(path), {"model": str(path), **model.settings.get("training", {})}


def _merge_dropped(out: str, names: list[str], k: int, seed: int) -> int:
    """Write `_dropped.parquet`: the `k` lowest-coin dropped documents of each reason over all shards' samples."""
    merged = schema.empty_table("dropped")
    for name in names:
        part = storage.join(out, DROPPED_PARTS, name)
        if storage.exists(part):
            where, fs = storage.arrow_path(part)
            table = _as(pq.read_table(where, filesystem=fs), merged.schema)
            merged = _lowest_per_reason(pa.concat_tables([merged, table]), k, seed)
    with runtime.ShardWriter(storage.join(out, DROPPED_FILE), "dropped") as writer:
        writer.write_table(merged)
    return merged.num_rows


def run(config: QualityConfig, ctx: runtime.RunContext) -> runtime.StageSummary:
    """Filter the shards of `config.inputs` into `config.output`; see the module docstring.
    Missing input folders are skipped with a warning (sources may land later); a damaged shard is reported in
    `_errors.jsonl` and the documents read before the damage are judged."""
    console = ctx.console
    config.validate()
    t0 = time.perf_counter()
    out = config.output  # a local folder or an object store URL
    shards, missing = find_shards(config.inputs, exclude=out)
    for spec in missing:
        console.print(f"[yellow]quality: warning: input {spec} does not exist; skipped[/yellow]")
    extra: dict[str, Any] = {"inputs": shards, "missing_inputs": missing,
                             "rules": {r.name: t for r, t in config.heuristics.rules()},
                             "heuristic_sources": config.heuristics.sources,
                             "classifier_sources": config.classifier.sources,
                             "filters": {f.reason(): f.function for f in config.filters}}
    with ctx.dask() as client:
        model = None
        if config.classifier.sources and shards:
            model, extra["classifier"] = _classifier_model(config, out, client, console)
        job = _Job(rules=config.heuristics.rules(), stop_words=config.heuristics.stop_words,
                   heuristic_sources=config.heuristics.sources, classifier_sources=config.classifier.sources,
                   model=model, keep=config.classifier.keep, alpha=config.classifier.alpha, seed=config.seed,
                   dropped_sample=config.dropped_sample,
                   filters=tuple(custom.Packed(f) for f in config.filters))
        summary, reports = tasks.map_files(filter_shard, shards, out, job, stage="quality", ctx=ctx,
                                             kept_key="kept", finish=False)
    if config.dropped_sample:
        extra["dropped_sample"] = _merge_dropped(out, [_output_name(s) for s in shards], config.dropped_sample,
                                                 config.seed)
    summary.extra.update(extra)
    summary.seconds = time.perf_counter() - t0  # with the classifier's training
    return runtime.finish_stage(out, summary, runtime.errors_of(reports), console=console)
