"""Decontamination, as GPT-3 did it (Brown et al. 2020, appendix C): every region of a training document that shares
an n-gram with an evaluation set is cut out, and the evaluation examples seen in training are listed.

`run(config, output)` reads the document shards of `config.inputs` and writes shards of the same contract, between
dedup and the tokenizer. On Dask, in four steps:

1. index   on the client: the evaluation sets are read (`evals`) and their n-grams indexed (`ngrams`); the lookup
           (8 bytes per distinct n-gram) is sent to every worker once.
2. count   one task per shard: the distinct (document, n-gram) hits, kept in `_work/hits/`, and per n-gram how many
           documents hold it, summed on the client over every shard before anything is cut, so "in more than
           `max_documents` training documents: a common phrase, ignored" is exact whatever the number of workers.
3. cut     one task per shard: a document without a hit (common n-grams aside) is copied as it is; the others are
           cut by GPT-3's rules (`cut`) and their pieces written as documents that name the original (`cut_from`),
           their place among its pieces (`piece`) and where they start in its text (`piece_offset`).
4. report  `_decontamination.parquet` (each n-gram occurrence cut: document, evaluation set, example, the n-gram as
           the document has it, the span cut and what became of the document), `_dirty_examples.parquet` (the
           evaluation examples with an n-gram in training: leave them out for GPT-3's "clean" subset), per-set
           counts and the `dropped_contaminated` / `cut_spans` counters in `_summary.json`, and `_errors.jsonl`
           (damaged evaluation lines with their file and line, damaged shards with their row).

Memory per worker is one shard batch plus the lookup, whatever the corpus size; the client holds the index and one
count per evaluation n-gram.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpusforge import documents, resume, runtime, schema, storage, tasks
from corpusforge.decontaminate.cut import CutRules, cut, window
from corpusforge.decontaminate.evals import EvalSetConfig, read_eval_set
from corpusforge.decontaminate.ngrams import Index, Lookup, build_index, occurrences
from corpusforge.options import option
from corpusforge.runtime import DECONTAMINATION_FILE, DIRTY_FILE

__all__ = ["CutRules", "DecontaminateConfig", "EvalSetConfig", "run"]

STAGE = "decontaminate"
HITS_SCHEMA = pa.schema([("row", pa.int64()), ("key", pa.int64())])
# what one shard task cut, before the client names the evaluation sets and examples of each n-gram
CUT_SCHEMA = pa.schema([("document_id", pa.string()), ("source", pa.string()), ("key", pa.int64()),
                        ("ngram", pa.string()), ("ngram_start", pa.int64()), ("ngram_end", pa.int64()),
                        ("cut_start", pa.int64()), ("cut_end", pa.int64()), ("action", pa.string())])
COUNTERS = ("documents", "kept", "clean", "contaminated", "cut_documents", "pieces", "dropped_contaminated",
            "too_many_pieces", "no_piece_left", "cut_spans", "cut_chars", "ngram_hits", "ignored_common")


@dataclasses.dataclass
class DecontaminateConfig:
    """`[decontaminate]` / `corpusforge decontaminate`: the shards to clean, the evaluation sets, and GPT-3's rules:
    n-grams of `ngram` tokens (a set of short examples gets the `short_percentile` of its lengths, not below
    `min_ngram`); an n-gram in more than `max_documents` training documents is a common phrase and ignored; each
    colliding n-gram is cut with `margin` characters either side; pieces shorter than `min_piece` characters are
    dropped; a document cut into more than `max_pieces` pieces is dropped whole."""

    inputs: list[str] = dataclasses.field(default_factory=list)
    output: str = "build/decontaminate"
    evals: list[EvalSetConfig] = dataclasses.field(default_factory=list)
    ngram: int = dataclasses.field(default=13, metadata=option("tokens per n-gram"))
    min_ngram: int = dataclasses.field(default=8, metadata=option(
        "a set of short examples gets n = the short_percentile of their lengths, not below this"))
    short_percentile: float = dataclasses.field(default=5.0, metadata=option("that percentile"))
    max_documents: int = dataclasses.field(default=10, metadata=option(
        "an n-gram in more training documents than this is a common phrase, ignored"))
    margin: int = dataclasses.field(default=CutRules.margin, metadata=option(
        "characters cut either side of an n-gram"))
    min_piece: int = dataclasses.field(default=CutRules.min_piece, metadata=option("shorter pieces are dropped"))
    max_pieces: int = dataclasses.field(default=CutRules.max_pieces, metadata=option(
        "a document cut into more pieces is dropped whole"))

    def rules(self) -> CutRules:
        return CutRules(margin=self.margin, min_piece=self.min_piece, max_pieces=self.max_pieces)

    def validate(self) -> None:
        if not self.inputs:
            raise ValueError("inputs: give at least one folder of document shards")
        if not self.evals:
            raise ValueError("evals: give at least one evaluation set")
        for eval_set in self.evals:
            eval_set.validate()
        names = [e.set_name() for e in self.evals]
        if len(set(names)) != len(names):
            raise ValueError(f"evals: two sets have the same name in {names}; give them a name")
        if not 1 <= self.min_ngram <= self.ngram:
            raise ValueError(f"need 1 <= min_ngram <= ngram, got {self.min_ngram} and {self.ngram}")
        if not 0 < self.short_percentile <= 100:
            raise ValueError(f"short_percentile must be in (0, 100], got {self.short_percentile}")
        if self.max_documents < 1 or self.max_pieces < 1:
            raise ValueError(f"max_documents and max_pieces must be >= 1, got {self.max_documents}, "
                             f"{self.max_pieces}")
        if self.margin < 0 or self.min_piece < 0:
            raise ValueError(f"margin and min_piece must be >= 0, got {self.margin}, {self.min_piece}")


@dataclasses.dataclass(frozen=True)
class _Shard:
    """One input shard and the files the stage writes for it."""

    path: str
    out_path: str
    hits_path: str
    cut_path: str


# ------------------------------------------------------------------------------------------------ shard tasks
def count_hits(shard: _Shard, lookup: Lookup) -> tuple[np.ndarray, np.ndarray]:
    """Step 2 for one shard: write its distinct (row, n-gram key) hits to `shard.hits_path`; return the keys hit
    and how many of the shard's documents hold each. A damaged shard is read up to the damage (step 3 reads it
    again and reports it)."""
    report = runtime.FileReport(input=shard.path)
    rows, hit_rows, hit_keys = 0, [], []
    for batch in documents.read_batches(shard.path, ["text"], report):
        doc, key = lookup.hits(pc.fill_null(batch.column("text"), "").to_pylist())
        hit_rows.append(doc + rows)
        hit_keys.append(key)
        rows += batch.num_rows
    table = pa.table([pa.array(np.concatenate(hit_rows or [np.zeros(0, np.int64)]), pa.int64()),
                      pa.array(np.concatenate(hit_keys or [np.zeros(0, np.int64)]), pa.int64())],
                     schema=HITS_SCHEMA)
    with runtime.atomic_path(shard.hits_path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return np.unique(table.column("key").to_numpy(), return_counts=True)


def _document_cut(row: dict[str, Any], keys: np.ndarray, lookup: Lookup, rules: CutRules,
                  report: runtime.FileReport) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Step 3 for one document holding the n-grams `keys`: its pieces (document rows) and what was cut."""
    text = row["text"]
    ns = lookup.n_of(keys)
    found = occurrences(text, {int(n): lookup.keys[keys[ns == n]] for n in np.unique(ns)})
    plan = cut(len(text), [(s, e) for s, e, _, _ in found], rules)
    report.count("contaminated")
    report.count("ngram_hits", len(found))
    if plan.outcome == "cut":
        report.count("cut_documents")
        report.count(f"{row['source']}:cut_documents")  # per source, for the corpus funnel
        report.count(f"{row['source']}:pieces", len(plan.kept))
        report.count("cut_spans", len(plan.windows))
        report.count("cut_chars", len(text) - sum(plan.pieces[k][1] - plan.pieces[k][0] for k in plan.kept))
    else:
        report.count("dropped_contaminated")
        report.count(f"{row['source']}:dropped_contaminated")
        report.count(plan.outcome.removeprefix("dropped_"))
    cuts = []
    for start, end, n, h in found:
        block = lookup.ns.index(n)
        lo, hi = lookup.bounds[block], lookup.bounds[block + 1]
        cut_start, cut_end = window(start, end, len(text), rules)
        cuts.append({"document_id": row["id"], "source": row["source"],
                     "key": int(lo + np.searchsorted(lookup.keys[lo:hi], np.uint64(h))),
                     "ngram": text[start:end], "ngram_start": start, "ngram_end": end, "cut_start": cut_start,
                     "cut_end": cut_end, "action": plan.outcome})
    pieces = []
    for k in plan.kept:
        start, end = plan.pieces[k]
        piece = text[start:end]
        pieces.append({**row, "text": piece, "cut_from": row["id"], "piece": k, "piece_offset": start,
                       "id": documents.document_id(row["source"], piece, row["id"], k),
                       "content_hash": documents.content_hash(piece)})
    return pieces, cuts


def cut_shard(shard: _Shard, lookup: Lookup, common: np.ndarray, rules: CutRules) -> runtime.FileReport:
    """Step 3 for one shard: its documents, clean ones as they are and contaminated ones cut, to `shard.out_path`
    (atomic; a finished one from a run with the same fingerprint is kept), and what was cut to `shard.cut_path`."""
    done = resume.resume_or_none(shard.out_path, shard.path)
    if done is not None and storage.exists(shard.cut_path):
        return done
    t0 = time.perf_counter()
    report = runtime.FileReport(input=shard.path, output=shard.out_path, bytes_in=storage.size(shard.path))
    for key in COUNTERS:
        report.count(key, 0)
    hits = _read(shard.hits_path)
    rows, keys = hits.column("row").to_numpy(), hits.column("key").to_numpy()
    report.count("ignored_common", int(common[keys].sum()))
    rows, keys = rows[~common[keys]], keys[~common[keys]]
    hit_rows, first, count = np.unique(rows, return_index=True, return_counts=True)  # hits are sorted by row
    cuts: list[dict[str, Any]] = []
    with runtime.ShardWriter(shard.out_path) as writer:
        offset = 0
        for batch in documents.read_batches(shard.path, schema.document_schema().names, report):
            table = pa.Table.from_batches([batch])
            parts, previous = [], 0
            for h in np.flatnonzero((hit_rows >= offset) & (hit_rows < offset + batch.num_rows)):
                i = int(hit_rows[h]) - offset
                pieces, cut_rows = _document_cut(table.slice(i, 1).to_pylist()[0],
                                                 keys[first[h]:first[h] + count[h]], lookup, rules, report)
                parts += [table.slice(previous, i - previous), schema.to_table(pieces).cast(table.schema)]
                cuts += cut_rows
                previous = i + 1
            out = pa.concat_tables([*parts, table.slice(previous)]) if parts else table
            writer.write_table(out)
            report.count("documents", batch.num_rows)
            for source, n in Counter(table.column("source").to_pylist()).items():
                report.count(f"{source}:documents", n)
            report.count("kept", out.num_rows)
            report.count("pieces", sum(p.num_rows for p in parts[1::2]))
            for lang, n in Counter(out.column("lang").to_pylist()).items():
                report.by_lang[lang] = report.by_lang.get(lang, 0) + n
            offset += batch.num_rows
        report.count("clean", report.counts["documents"] - report.counts["contaminated"])
        with runtime.atomic_path(shard.cut_path) as tmp:
            pq.write_table(pa.Table.from_pylist(cuts, schema=CUT_SCHEMA), tmp, compression="zstd")
        report.seconds = time.perf_counter() - t0
        writer.set_report(report)
    return report


# ------------------------------------------------------------------------------------------------ the reports
def _sets_of(index: Index, key: int) -> list[tuple[int, int, int]]:
    """(set, its first example holding the n-gram `key`, how many of its examples hold it), by set."""
    lo, hi = index.pair_start[key], index.pair_start[key + 1]
    sets, examples = index.pair_set[lo:hi], index.pair_example[lo:hi]
    found = []
    for s in np.unique(sets):
        mine = examples[sets == s]
        found.append((int(s), int(mine[0]), len(mine)))
    return found


def _read(path: str) -> pa.Table:
    where, fs = storage.arrow_path(path)
    return pq.read_table(where, filesystem=fs)


def _write_decontamination(path: str, shards: list[_Shard], index: Index) -> int:
    """`_decontamination.parquet`: each cut occurrence once per evaluation set holding its n-gram, streamed one
    shard's cuts at a time."""
    rows = 0
    with runtime.ShardWriter(path, "decontamination") as writer:
        for shard in shards:
            part = []
            for row in _read(shard.cut_path).to_pylist():
                key = row.pop("key")
                for s, first, count in _sets_of(index, key):
                    part.append({**row, "eval_set": index.sets[s].name, "example_id": index.ids[s][first],
                                 "examples": count})
            writer.write_rows(part)
            rows += len(part)
    return rows


def _write_dirty(path: str, index: Index, found: np.ndarray) -> np.ndarray:
    """`_dirty_examples.parquet`: the examples holding an n-gram `found` in training, by set and example, with how
    many of their n-grams were; returns the dirty examples per set."""
    starts, ends = index.pair_start[found], index.pair_start[found + 1]
    take = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)] or [np.zeros(0, np.int64)])
    pairs = np.stack([index.pair_set[take].astype(np.int64), index.pair_example[take]])
    dirty, ngrams = (np.unique(pairs, axis=1, return_counts=True) if take.size
                     else (np.zeros((2, 0), np.int64), np.zeros(0, np.int64)))
    with runtime.ShardWriter(path, "dirty_example") as writer:
        writer.write_rows([{"eval_set": index.sets[s].name, "example_id": index.ids[s][e], "ngrams": int(c)}
                           for s, e, c in zip(dirty[0].tolist(), dirty[1].tolist(), ngrams.tolist())])
    return np.bincount(dirty[0], minlength=len(index.sets))


# ---------------------------------------------------------------------------------------------------- the stage
def _fresh_outputs(out: str, fp: str) -> None:
    """Outputs of an earlier run with other inputs, evaluation sets or rules must not be resumed: delete them."""
    recorded = storage.join(out, "_work", "fingerprint")
    if storage.exists(recorded) and storage.read_text(recorded) == fp:
        return
    for path in storage.listing(out, "*.parquet"):
        if not storage.name(path).startswith(("_", ".")):
            storage.remove(path)
    storage.remove_tree(storage.join(out, "_work"))
    runtime.write_text_atomic(recorded, fp)


def run(config: DecontaminateConfig, ctx: runtime.RunContext) -> runtime.StageSummary:
    """Decontaminate the shards of `config.inputs` into `config.output`; see the module
    docstring. Missing input folders are skipped with a warning; a damaged shard or evaluation line is reported in
    `_errors.jsonl` and the rest is used. Skipped when an earlier run with the same config and inputs finished."""
    console = ctx.console
    config.validate()
    t0 = time.perf_counter()
    out = config.output  # a local folder or an object store URL
    paths, missing = documents.find_shards(config.inputs, exclude=out)
    for spec in missing:
        console.print(f"[yellow]{STAGE}: warning: input {spec} does not exist; skipped[/yellow]")
    fp = resume.stage_fingerprint(config, [*paths, *(e.path for e in config.evals if storage.exists(e.path))])
    done = resume.finished_stage(out, fp, DECONTAMINATION_FILE, DIRTY_FILE)
    if done is not None:
        console.print(f"{STAGE}: {out} is up to date")
        return runtime.StageSummary(**{**done, "resumed_files": done["files"]})
    _fresh_outputs(out, fp)
    resume.begin_stage(out, STAGE)  # the next stage refuses this folder until finish_stage marks it complete

    eval_reports = [runtime.FileReport(input=e.path) for e in config.evals]
    sets = [read_eval_set(e, r) for e, r in zip(config.evals, eval_reports)]
    index = build_index(sets, config.ngram, config.min_ngram, config.short_percentile)
    console.print(f"{STAGE}: {len(index.lookup.keys):,} evaluation n-grams from "
                  + ", ".join(f"{s.name} ({s.examples:,} examples, n = {s.ngram})" for s in index.sets))
    names = [runtime.output_name(p.removesuffix(".parquet")) for p in paths]
    shards = [_Shard(p, *(str(storage.join(out, *where, name)) for where in ((), ("_work", "hits"), ("_work", "cuts"))))
              for p, name in zip(paths, names)]
    with ctx.dask() as client, tasks.PhaseBar(console, STAGE) as bar:
        phase = lambda label, fn, *args: tasks.run_phase(client, label, fn, shards, *args,  # noqa: E731
                                                           console=console, bar=bar)
        lookup = client.scatter(index.lookup, broadcast=True, hash=False)
        documents_per_key = np.zeros(len(index.lookup.keys), dtype=np.int64)
        for keys, counts in phase("count", count_hits, lookup):
            documents_per_key[keys] += counts
        common = documents_per_key > config.max_documents
        reports = phase("cut", cut_shard, lookup, client.scatter(common, broadcast=True, hash=False),
                        config.rules())

    rows = _write_decontamination(storage.join(out, DECONTAMINATION_FILE), shards, index)
    dirty = _write_dirty(storage.join(out, DIRTY_FILE), index, np.flatnonzero((documents_per_key > 0) & ~common))
    summary = runtime.StageSummary(stage=STAGE)
    for report in reports:
        summary.add(report)
    for key in COUNTERS:
        summary.counts.setdefault(key, 0)
    errors = [e for r in [*eval_reports, *reports] for e in r.errors + r.warnings]
    summary.errors += sum(len(r.errors) for r in eval_reports)
    summary.warnings += sum(len(r.warnings) for r in eval_reports)
    summary.extra.update({
        "fingerprint": fp, "inputs": paths, "missing_inputs": missing,
        "rules": {k: getattr(config, k) for k in ("ngram", "min_ngram", "short_percentile", "max_documents",
                                                  "margin", "min_piece", "max_pieces")},
        "eval_ngrams": len(index.lookup.keys), "common_ngrams": int(common.sum()),
        "found_ngrams": int(((documents_per_key > 0) & ~common).sum()), "decontamination_rows": rows,
        "eval_sets": {s.name: {**s.to_json(), "errors": len(r.errors), "dirty": int(d), "clean": s.examples - int(d)}
                      for s, r, d in zip(index.sets, eval_reports, dirty)},
    })
    summary.seconds = time.perf_counter() - t0
    return runtime.finish_stage(out, summary, errors, console=console)
