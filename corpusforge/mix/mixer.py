"""The mix: document sets -> tokenized, shuffled corpus shards per set, and the manifest that tells a trainer how
much of each set to read.

A recipe's `[mix]` names its sets (`[[mix.sets]]`: name, source, input folders, weight, max epochs, optionally a
hash split so two sets can share a source, like GPT-3's books1 and books2) and a training budget in tokens. The
shuffle is an external sort, so no process ever holds more than one input file or one output shard:

1. encode (a Dask task per input shard): pick each set's rows, tokenize them, give each document its shuffle key
   (a 63-bit hash of seed, set and id) and write them, sorted by set and key, to a spill file under `_work/`.
2. plan: from the per-set token counts choose how many shards each set gets; each shard owns an equal range of the
   key space. The lowest keys (`val_fraction` of it; at least one document per set) are the validation split.
3. write (a Dask task per output shard): read its key range from every spill file (Parquet statistics skip the
   rest), sort by key, and write it with row groups of about `row_group_tokens` tokens, a streaming reader's unit.
4. checksum the shards, move them into place, write `manifest.json` last; a corpus without a manifest is unfinished.

Every step resumes: spill files and shards carry their FileReport, and a finished mix with the same fingerprint
(config, tokenizer, input files) is not redone. The shards are byte-identical for the same inputs and config.

The corpus folder (and its `_work/`, so workers share no file system) may be on an object store (`s3://...`): each
shard is uploaded whole, "moved into place" by the store's copy, and `manifest.json` is still written last.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpusforge import documents, resume, runtime, schema, storage, tasks
from corpusforge.errors import StageFailed
from corpusforge.mix import manifest as manifest_mod, tokenizer as tok_mod

KEY_SPACE = 2**63  # shuffle keys are 63-bit, so they fit Parquet's signed int64 and its statistics
WORK_DIR = "_work"


@dataclasses.dataclass
class MixSet:
    """One `[[mix.sets]]` entry: the documents of `source` found under `inputs`, optionally only those whose
    `split_by` column hashes into `split_range` (so books1 and books2 can be two halves of the books)."""

    name: str
    source: str
    inputs: list[str]
    weight: float
    max_epochs: float | None = None
    split_by: str = "id"
    split_range: list[float] = dataclasses.field(default_factory=lambda: [0.0, 1.0])

    def validate(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ValueError(f"name: {self.name!r} must be letters, digits, '_', '-' or '.' (it names a folder)")
        pattern = schema.load_json_schema("document")["properties"]["source"]["pattern"]
        if not re.fullmatch(pattern, self.source):
            raise ValueError(f"sets.{self.name}.source: {self.source!r} is not a source name (commoncrawl, webtext2, "
                             "books, wikipedia, or an imported set's: letters, digits, '_', '-', '.')")
        if not self.inputs:
            raise ValueError(f"sets.{self.name}.inputs: name at least one folder or glob of document shards")
        if not (self.weight >= 0 and math.isfinite(self.weight)):
            raise ValueError(f"sets.{self.name}.weight: must be a number >= 0, got {self.weight}")
        if self.max_epochs is not None and not self.max_epochs > 0:
            raise ValueError(f"sets.{self.name}.max_epochs: must be > 0, got {self.max_epochs}")
        columns = schema.arrow_schema("document")
        if self.split_by not in columns.names or columns.field(self.split_by).type != pa.string():
            raise ValueError(f"sets.{self.name}.split_by: {self.split_by!r} is not a string column of the document "
                             "schema (e.g. id, book_id, url)")
        if len(self.split_range) != 2 or not 0.0 <= self.split_range[0] < self.split_range[1] <= 1.0:
            raise ValueError(f"sets.{self.name}.split_range: must be [lo, hi] with 0 <= lo < hi <= 1, "
                             f"got {self.split_range}")


@dataclasses.dataclass
class MixConfig:
    """`[mix]`: the sets and their weights, the token budget the epochs are computed for, shard and row-group
    sizes, the validation fraction, the tokenizer file and the seed. Writes the corpus to `output`."""

    sets: list[MixSet] = dataclasses.field(default_factory=list)
    output: str = "build/corpus/corpus"
    tokenizer: str = "build/corpus/tokenizer/tokenizer.json"
    budget_tokens: int = 300_000_000_000
    shard_tokens: int = 100_000_000
    row_group_tokens: int = 1_000_000
    val_fraction: float = 0.0005
    seed: int = 1234

    def validate(self) -> None:
        if not self.sets:
            raise ValueError("sets: add at least one [[mix.sets]] table")
        names = [s.name for s in self.sets]
        if len(set(names)) != len(names):
            raise ValueError(f"sets: names must be unique, got {names}")
        for s in self.sets:
            s.validate()
        if not sum(s.weight for s in self.sets) > 0:
            raise ValueError("sets: at least one weight must be > 0")
        for key in ("budget_tokens", "shard_tokens", "row_group_tokens"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: must be at least 1, got {getattr(self, key)}")
        if not 0.0 <= self.val_fraction < 0.5:
            raise ValueError(f"val_fraction: must be in [0, 0.5), got {self.val_fraction}")


@dataclasses.dataclass
class _EncodeJob:
    """What every encode task needs (scattered to the workers once)."""

    sets: list[MixSet]
    sets_of: dict[str, list[int]]  # input file -> indices of the sets that read it
    tokenizer: str
    seed: int
    val_cutoff: int
    row_group_tokens: int


@dataclasses.dataclass
class _ShardJob:
    """What every shard-writing task needs: each shard's set and key range, and the spill files to read."""

    shards: dict[str, tuple[str, int, int]]  # "set/split-00000-of-00004" -> (set, lo, hi)
    spills: list[str]
    row_group_tokens: int


# ------------------------------------------------------------------------------------------------------- tasks
def shuffle_keys(ids: list[str], set_name: str, seed: int) -> np.ndarray:
    """Each document's place in its set's seeded shuffle: 63-bit keys as int64."""
    return (documents.hash64(ids, seed, salt=f"{set_name}\0") >> np.uint64(1)).astype(np.int64)


def row_group_slices(n_tokens: np.ndarray, target: int) -> list[tuple[int, int]]:
    """(start, stop) row ranges holding about `target` tokens each (a group ends once it reaches the target)."""
    if len(n_tokens) == 0:
        return []
    ends = np.cumsum(n_tokens, dtype=np.int64)
    cuts, start, base = [], 0, 0
    while start < len(n_tokens):
        stop = int(np.searchsorted(ends, base + target, side="left")) + 1
        stop = min(max(stop, start + 1), len(n_tokens))
        cuts.append((start, stop))
        base = int(ends[stop - 1])
        start = stop
    return cuts


def _write_grouped(path: str | os.PathLike, table: pa.Table, schema_name: str, target_tokens: int,
                   report: runtime.FileReport) -> None:
    """Write `table` atomically with row groups of about `target_tokens` tokens and `report` in its metadata."""
    slices = row_group_slices(table.column("n_tokens").to_numpy(), target_tokens)
    most_rows = max((b - a for a, b in slices), default=1)
    with runtime.ShardWriter(path, schema_name, row_group_rows=most_rows) as writer:
        for start, stop in slices:
            writer.write_table(table.slice(start, stop - start))
        if not slices:
            writer.write_table(table)
        writer.set_report(report)


def _set_rows(batch: pa.Table, mix_set: MixSet) -> np.ndarray:
    """Which rows of a document batch belong to a set (its source, and its hash range of `split_by`)."""
    member = pc.equal(batch.column("source"), mix_set.source).to_numpy(zero_copy_only=False)
    lo, hi = mix_set.split_range
    if (lo, hi) != (0.0, 1.0):
        keys = pc.coalesce(batch.column(mix_set.split_by), batch.column("id")).to_pylist()
        # Unseeded on purpose: which half of the books is books1 must not change with the shuffle seed.
        coin = documents.unit_hash(keys, salt=f"split:{mix_set.split_by}\0")
        member &= (coin >= lo) & (coin < hi)
    return member


def _count_sources(report: runtime.FileReport, table: pa.Table, what: str) -> None:
    """Count the rows of `table` per source as `SOURCE:what`."""
    for source, n in Counter(table.column("source").to_pylist()).items():
        report.count(f"{source}:{what}", n)


def _encode_file(path: str, out_dir: str, job: _EncodeJob) -> runtime.FileReport:
    """Dask task: one input shard -> its sets' rows, tokenized and keyed, in one spill file sorted by (set, key)."""
    out = storage.join(out_dir, runtime.output_name(path))
    done = resume.resume_or_none(out, path)
    if done is not None:
        return done
    t0 = time.perf_counter()
    report = runtime.FileReport(input=path, output=str(out), bytes_in=storage.size(path))
    tokenizer = tok_mod.load(job.tokenizer)
    sets = [job.sets[i] for i in job.sets_of[path]]
    doc_schema = schema.document_schema()
    parts: list[pa.Table] = []
    for batch in documents.read_batches(path, doc_schema.names, report):
        table = pa.Table.from_batches([batch]).cast(doc_schema)
        report.count("documents", table.num_rows)
        members = {s.name: _set_rows(table, s) for s in sets}
        wanted = np.logical_or.reduce(list(members.values())) if members else np.zeros(table.num_rows, bool)
        report.count("dropped_not_in_any_set", int(table.num_rows - wanted.sum()))
        _count_sources(report, table, "documents")  # per source, for the corpus funnel
        _count_sources(report, table.filter(pa.array(~wanted)), "dropped_not_in_any_set")
        if not wanted.any():
            continue
        rows = np.flatnonzero(wanted)
        table = table.take(rows)
        tokens = tok_mod.encode(tokenizer, table.column("text").to_pylist())
        table = table.append_column("n_tokens", pc.list_value_length(tokens).cast(pa.int32()))
        table = table.append_column("tokens", tokens)
        empty = (table.column("n_tokens").to_numpy() == 0)
        if empty.any():  # nothing to train on; the reader would yield a bare end-of-text for it
            report.count("dropped_empty_text", int(empty.sum()))
            _count_sources(report, table.filter(pa.array(empty)), "dropped_empty_text")
            keep = ~empty
            table, rows = table.filter(pa.array(keep)), rows[keep]
        _count_sources(report, table, "kept")
        for mix_set in sets:
            part = table.filter(pa.array(members[mix_set.name][rows]))
            if not part.num_rows:
                continue
            keys = shuffle_keys(part.column("id").to_pylist(), mix_set.name, job.seed)
            part = part.append_column("set", pa.array([mix_set.name] * part.num_rows, pa.string()))
            part = part.append_column("shuffle_key", pa.array(keys, pa.int64()))
            parts.append(part)
            n_tokens = part.column("n_tokens").to_numpy()
            held_out = keys < job.val_cutoff
            report.count(f"{mix_set.name}.documents", part.num_rows)
            report.count(f"{mix_set.name}.tokens", int(n_tokens.sum()))
            report.count(f"{mix_set.name}.text_bytes", int(pc.sum(pc.binary_length(part.column("text"))).as_py()))
            report.count(f"{mix_set.name}.val_documents", int(held_out.sum()))
            report.count(f"{mix_set.name}.val_tokens", int(n_tokens[held_out].sum()))
    spill_schema = schema.arrow_schema("mix_spill")
    table = (pa.concat_tables([p.select(spill_schema.names).cast(spill_schema) for p in parts])
             if parts else spill_schema.empty_table())
    table = table.sort_by([("set", "ascending"), ("shuffle_key", "ascending")])
    report.seconds = time.perf_counter() - t0
    _write_grouped(out, table, "mix_spill", job.row_group_tokens, report)
    return report


def _read_spill(path: str, **kwargs: Any) -> pa.Table:
    """pq.read_table of a spill file, local or on a store."""
    local, fs = storage.arrow_path(path)
    return pq.read_table(local, filesystem=fs, **kwargs)


def _write_shard(item: str, out_dir: str, job: _ShardJob) -> runtime.FileReport:
    """Dask task: one output shard = its key range of its set, read from every spill file and sorted by key."""
    out = storage.join(out_dir, f"{item}.parquet")
    done = resume.resume_or_none(out, item)
    if done is not None:
        return done
    t0 = time.perf_counter()
    set_name, lo, hi = job.shards[item]
    where = [("set", "==", set_name), ("shuffle_key", ">=", lo)]
    if hi < KEY_SPACE:  # the last range is open: 2**63 itself does not fit an int64 filter
        where.append(("shuffle_key", "<", hi))
    parts = [_read_spill(spill, filters=where) for spill in job.spills]
    spill_schema = schema.arrow_schema("mix_spill")
    table = pa.concat_tables([p.cast(spill_schema) for p in parts]) if parts else spill_schema.empty_table()
    table = table.sort_by("shuffle_key")
    report = runtime.FileReport(input=item)
    report.count("rows", table.num_rows)
    report.count("tokens", int(pc.sum(table.column("n_tokens")).as_py() or 0))
    report.count("text_bytes", int(pc.sum(pc.binary_length(table.column("text"))).as_py() or 0))
    report.by_lang = {row["values"]: row["counts"] for row in pc.value_counts(table.column("lang")).to_pylist()}
    _write_grouped(out, table, "corpus", job.row_group_tokens, report)
    report.seconds = time.perf_counter() - t0
    return report


# -------------------------------------------------------------------------------------------------------- plan
def effective_weights(config: MixConfig, train_tokens: dict[str, int]) -> tuple[dict[str, float], list[str]]:
    """Each set's share of training tokens: the recipe's weights, without sets that have no training tokens,
    normalized to sum to 1; and the warnings that tell the user what was changed."""
    warnings = []
    total = sum(s.weight for s in config.sets)
    if abs(total - 1.0) > 1e-9:
        warnings.append(f"set weights sum to {total:g}, not 1: each is divided by {total:g}")
    empty = [s.name for s in config.sets if s.weight > 0 and not train_tokens.get(s.name)]
    if empty:
        warnings.append(f"set(s) {empty} have no training documents: their weight is 0, the others are renormalized")
    usable = {s.name: s.weight for s in config.sets if s.name not in empty}
    if not sum(usable.values()) > 0:
        raise ValueError(f"no set with weight > 0 has any documents (sets: {[s.name for s in config.sets]})")
    return {s.name: usable.get(s.name, 0.0) / sum(usable.values()) for s in config.sets}, warnings


def _plan_shards(config: MixConfig, counts: dict[str, int], spills: list[str]) -> dict[str, tuple[str, int, int]]:
    """Each output shard's name, set and key range. Training keys start at the set's validation cutoff."""
    plan: dict[str, tuple[str, int, int]] = {}
    default_cutoff = int(config.val_fraction * KEY_SPACE)
    for s in config.sets:
        docs, tokens = counts.get(f"{s.name}.documents", 0), counts.get(f"{s.name}.tokens", 0)
        val_docs, val_tokens = counts.get(f"{s.name}.val_documents", 0), counts.get(f"{s.name}.val_tokens", 0)
        cutoff = default_cutoff
        if config.val_fraction > 0 and val_docs == 0 and docs >= 2:
            # Too small a set for the fraction to catch a document: hold out its first one (lowest key), so every
            # set has a validation stream. Row-group statistics make this read only the set's first rows.
            firsts = [pc.min(_read_spill(p, columns=["shuffle_key"], filters=[("set", "==", s.name)])
                             .column("shuffle_key")).as_py() for p in spills]
            cutoff, val_docs = min(k for k in firsts if k is not None) + 1, 1
        for split, (lo, hi), n_docs, n_tokens in (("val", (0, cutoff), val_docs, val_tokens),
                                                  ("train", (cutoff, KEY_SPACE), docs - val_docs, tokens - val_tokens)):
            n = max(1, round(n_tokens / config.shard_tokens)) if n_docs > 0 else 0
            for b in range(n):
                plan[f"{s.name}/{split}-{b:05d}-of-{n:05d}"] = (s.name, lo + (hi - lo) * b // n,
                                                                 lo + (hi - lo) * (b + 1) // n)
    return plan


# --------------------------------------------------------------------------------------------------------- run
def run(config: MixConfig, ctx: runtime.RunContext) -> runtime.StageSummary:
    """The stage: write the mixed corpus (per-set shards, tokenizer.json, manifest.json) to `config.output`; see
    the module doc."""
    from rich.console import Console

    console = ctx.console
    config.validate()
    out_dir = config.output
    set_files = {s.name: documents.find_shards(s.inputs)[0] for s in config.sets}
    files = sorted({f for fs in set_files.values() for f in fs})
    tokenizer_sha = runtime.file_sha256(config.tokenizer) if storage.exists(config.tokenizer) else None
    if tokenizer_sha is None:
        raise FileNotFoundError(f"mix: no tokenizer at {config.tokenizer}; run `corpusforge tokenizer train` "
                                "(recipe section [tokenizer]) or name an existing tokenizer.json")
    fp = resume.stage_fingerprint(config, files, tokenizer_sha)
    done = resume.finished_stage(out_dir, fp, manifest_mod.MANIFEST_FILE)
    if done is not None:
        console.print(f"mix: {storage.join(out_dir, manifest_mod.MANIFEST_FILE)} is up to date")
        return runtime.StageSummary(**{**done, "resumed_files": done["files"]})
    for s in config.sets:
        if not set_files[s.name]:
            console.print(f"[yellow]mix: set {s.name}: no document shards under {s.inputs}")
    if not files:
        raise FileNotFoundError(f"mix: no document shards under any set's inputs "
                                f"({sorted({i for s in config.sets for i in s.inputs})})")

    t0 = time.perf_counter()
    storage.remove(storage.join(out_dir, manifest_mod.MANIFEST_FILE))  # unfinished until it is rewritten
    work = storage.join(out_dir, WORK_DIR, fp[:16])
    with ctx.dask() as client:
        members = [set(set_files[s.name]) for s in config.sets]
        encode_job = _EncodeJob(sets=config.sets, tokenizer=str(config.tokenizer), seed=config.seed,
                                sets_of={f: [i for i, m in enumerate(members) if f in m] for f in files},
                                val_cutoff=int(config.val_fraction * KEY_SPACE),
                                row_group_tokens=config.row_group_tokens)
        encoded, encode_reports = tasks.map_files(
            _encode_file, files, storage.join(work, "spill"), client.scatter(encode_job, broadcast=True),
            stage="mix-encode", ctx=ctx, finish=False)
        written_spills = set(storage.listing(storage.join(work, "spill"), "*.parquet"))
        spills = [p for f in files if (p := str(storage.join(work, "spill", runtime.output_name(f)))) in written_spills]
        plan = _plan_shards(config, encoded.counts, spills)
        shard_job = _ShardJob(shards=plan, spills=spills, row_group_tokens=config.row_group_tokens)
        written, shard_reports = tasks.map_files(
            _write_shard, list(plan), storage.join(work, "shards"), client.scatter(shard_job, broadcast=True),
            stage="mix", ctx=ctx, kept_key="rows", finish=False)
        done_paths = [str(storage.join(work, "shards", f"{item}.parquet")) for item in plan]
        shards_written = set(storage.listing(storage.join(work, "shards"), "*/*.parquet"))
        failed = [item for item, path in zip(plan, done_paths) if path not in shards_written]
        if failed:
            runtime.finish_stage(out_dir, written, [e for r in shard_reports for e in r.errors], console=console)
            raise StageFailed(f"mix: {len(failed)} shard(s) could not be written ({failed[:3]}...); see "
                               f"{storage.join(out_dir, runtime.ERRORS_FILE)}; a re-run resumes")
        checksums = dict(zip(plan, client.gather(client.map(runtime.file_sha256, done_paths, pure=False))))

    _move_into_place(storage.join(work, "shards"), out_dir, list(plan))
    with runtime.atomic_path(storage.join(out_dir, tok_mod.TOKENIZER_FILE)) as tmp, \
            storage.open_file(config.tokenizer) as source, open(tmp, "wb") as copy:
        shutil.copyfileobj(source, copy)
    manifest = _manifest(config, plan, shard_reports, checksums, out_dir)
    manifest_mod.write(out_dir, manifest)
    storage.remove_tree(storage.join(out_dir, WORK_DIR))

    summary = runtime.StageSummary(stage="mix", files=encoded.files, resumed_files=encoded.resumed_files,
                                   counts={**encoded.counts, "shards": len(plan)}, by_lang=encoded.by_lang,
                                   errors=encoded.errors + written.errors, bytes_in=encoded.bytes_in,
                                   seconds=time.perf_counter() - t0)
    summary.extra = {"fingerprint": fp, "warnings": manifest["warnings"],
                     "sets": {s["name"]: {k: s[k] for k in ("documents", "tokens", "weight", "epochs")}
                              for s in manifest["sets"]}}
    errors = [e for r in encode_reports + shard_reports for e in r.errors]
    runtime.finish_stage(out_dir, summary, errors, console=Console(quiet=True))
    console.print(manifest_mod.sets_table(manifest))
    for warning in manifest["warnings"]:
        console.print(f"[yellow]warning: {warning}")
    return summary


def _move_into_place(work_shards: str, out_dir: str, items: list[str]) -> None:
    """Move the finished shards into `out_dir` (a rename on disk, a copy within a store) and remove shards an earlier
    mix left there that this one did not write (so a glob over the corpus folder sees only this corpus)."""
    keep = {f"{item}.parquet" for item in items}
    for old in storage.listing(out_dir, "*/*.parquet"):
        if "/".join(Path(old).parts[-2:]) not in keep:  # SET/NAME.parquet
            storage.remove(old)
    for rel in sorted(keep):
        storage.move(storage.join(work_shards, rel), storage.join(out_dir, rel))
    if not storage.is_url(out_dir):  # a store has no empty folders to leave behind
        for folder in Path(out_dir).iterdir():
            if folder.is_dir() and folder.name != WORK_DIR and not any(folder.iterdir()):
                folder.rmdir()


def _manifest(config: MixConfig, plan: dict[str, tuple[str, int, int]], reports: list[runtime.FileReport],
              checksums: dict[str, str], out_dir: str) -> dict[str, Any]:
    """The manifest: per set its shards (path, rows, tokens, bytes, sha256), totals, weight and epochs."""
    tokenizer = tok_mod.load(storage.join(out_dir, tok_mod.TOKENIZER_FILE))
    specials = tok_mod.special_ids(tokenizer)
    by_item = dict(zip(plan, reports))

    def split_entry(name: str, split: str) -> dict[str, Any]:
        shards = []
        for item, report in by_item.items():
            if item.startswith(f"{name}/{split}-"):
                shards.append({"path": f"{item}.parquet", "rows": report.counts.get("rows", 0),
                               "tokens": report.counts.get("tokens", 0),
                               "text_bytes": report.counts.get("text_bytes", 0),
                               "bytes": storage.size(storage.join(out_dir, f"{item}.parquet")),
                               "sha256": checksums[item]})
        return {"documents": sum(s["rows"] for s in shards), "tokens": sum(s["tokens"] for s in shards),
                "text_bytes": sum(s["text_bytes"] for s in shards), "bytes": sum(s["bytes"] for s in shards),
                "shards": shards}

    splits = {s.name: {split: split_entry(s.name, split) for split in ("train", "val")} for s in config.sets}
    # The reader puts an end-of-text token after each document: an epoch is tokens + documents long.
    stream = {name: sp["train"]["tokens"] + sp["train"]["documents"] for name, sp in splits.items()}
    weights, warnings = effective_weights(config, stream)
    sets = []
    for s in config.sets:
        train, val = splits[s.name]["train"], splits[s.name]["val"]
        languages = Counter()
        for item, report in by_item.items():
            if item.startswith(f"{s.name}/"):
                languages.update(report.by_lang)
        epochs = config.budget_tokens * weights[s.name] / stream[s.name] if stream[s.name] else None
        if epochs is not None and s.max_epochs is not None and epochs > s.max_epochs:
            warnings.append(f"set {s.name}: a budget of {config.budget_tokens:,} tokens at weight "
                            f"{weights[s.name]:.4f} repeats it {epochs:.2f} times, more than its max_epochs "
                            f"{s.max_epochs:g}")
        if s.weight > 0 and not val["documents"] and config.val_fraction > 0:
            warnings.append(f"set {s.name}: no validation documents (it has {train['documents']} in all)")
        sets.append({
            "name": s.name, "source": s.source, "weight": weights[s.name], "recipe_weight": s.weight,
            "max_epochs": s.max_epochs, "epochs": epochs,
            **{k: train[k] + val[k] for k in ("documents", "tokens", "text_bytes", "bytes")},
            "languages": dict(sorted(languages.items(), key=lambda kv: (-kv[1], kv[0]))),
            "train": train, "val": val,
        })
    recipe_sum = round(sum(s.weight for s in config.sets), 12)  # 1.01, not 1.0099999999999998
    return {
        "format": "corpusforge-corpus", "version": 1, "schema": "corpus", "seed": config.seed,
        "budget_tokens": config.budget_tokens, "shard_tokens": config.shard_tokens,
        "row_group_tokens": config.row_group_tokens, "val_fraction": config.val_fraction,
        "tokenizer": {"path": tok_mod.TOKENIZER_FILE,
                      "sha256": runtime.file_sha256(storage.join(out_dir, tok_mod.TOKENIZER_FILE)),
                      "vocab_size": tokenizer.get_vocab_size(), "eot_id": specials[tok_mod.EOT],
                      "special_tokens": specials},
        "weights": {"recipe_sum": recipe_sum, "normalized": abs(recipe_sum - 1.0) > 1e-9},
        "sets": sets,
        "totals": {k: sum(s[k] for s in sets) for k in ("documents", "tokens", "text_bytes", "bytes")},
        "warnings": warnings,
    }
