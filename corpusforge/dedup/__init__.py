"""Deduplication across sources: URL, exact and MinHash-LSH near duplicates, one survivor per cluster.

`run(config, output)` reads the document shards of any number of source folders and writes the surviving documents
as shards of the same contract, plus `_duplicates.parquet` (what was removed, in favour of what, why, and the
estimated Jaccard similarity), `_minhash.json` (the signature parameters and the threshold they imply) and the usual
`_summary.json` / `_errors.jsonl`. Every phase is a set of Dask tasks over files or partitions that talk through
partitioned exchanges (`exchange`), so the same call runs on a LocalCluster or on `--scheduler tcp://host:8786`:

1. signatures  one pass over each shard: per document its keys and MinHash signature (`scan`, `minhash`)
2. emit        keys to the URL, exact-text and LSH band exchanges (`exact`, `lsh`)
3. group       URL groups (older captures removed), exact groups (edges), band buckets (candidate pairs)
4. verify      candidate pairs joined with both signatures; pairs under the threshold dropped (`lsh`)
5. components  connected components of exact + near edges (`clusters`)
6. survivors   one copy per component by the survivor rule (`priority`), the others removed as exact or near
7. write       the Jaccard similarity of every removed document to its survivor; the surviving rows of each shard
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from corpusforge import documents, resume, runtime, storage, tasks
from corpusforge.dedup import clusters, exact, lsh, minhash
from corpusforge.dedup import exchange as ex
from corpusforge.dedup.minhash import MinHashParams, SignatureMismatch
from corpusforge.dedup.priority import DEFAULT_PRIORITY, source_rank
from corpusforge.dedup.scan import Shard, read_documents, scan, signature_matrix, signature_params
from corpusforge.options import option
from corpusforge.runtime import DUPLICATES_FILE
from corpusforge.schema import document_schema

__all__ = ["DEFAULT_PRIORITY", "DedupConfig", "MinHashParams", "SignatureMismatch", "run"]

PARAMS_FILE = "_minhash.json"
KINDS = ("url", "exact", "near")


@dataclasses.dataclass
class DedupConfig:
    """`[dedup]`: which shard folders to deduplicate together and how.

    `ngram`, `char_ngram`, `permutations`, `bands`, `rows` and `seed` define the signatures (FineWeb's word 5-grams,
    character 5-grams for scripts written without spaces, and 14 bands x 8 rows by default: candidates from a
    Jaccard similarity of about (1/14)^(1/8) = 0.72); `threshold` is the estimated Jaccard similarity a candidate
    pair must reach to count as a near duplicate; `verify = "shingles"` also requires the true Jaccard similarity
    of the shingle sets to reach it (slower: rereads the pairs' text).
    """

    inputs: list[str] = dataclasses.field(default_factory=list)
    output: str = "build/dedup"
    # the signature settings, defaulting to MinHashParams' (one place for the numbers); params() gathers them
    ngram: int = dataclasses.field(default=MinHashParams.ngram, metadata=option("words per shingle"))
    char_ngram: int = dataclasses.field(default=MinHashParams.char_ngram, metadata=option(
        "characters per shingle in scripts written without spaces (Chinese, Japanese, Thai)"))
    permutations: int = dataclasses.field(default=MinHashParams.permutations, metadata=option(
        "MinHash signature length (= bands x rows)"))
    bands: int = dataclasses.field(default=MinHashParams.bands, metadata=option("LSH bands"))
    rows: int = dataclasses.field(default=MinHashParams.rows, metadata=option("signature values per band"))
    seed: int = dataclasses.field(default=MinHashParams.seed, metadata=option("seed of the MinHash permutations"))
    threshold: float = dataclasses.field(default=0.7, metadata=option(
        "estimated Jaccard similarity a candidate pair needs to count as a near duplicate"))
    verify: Literal["signature", "shingles"] = dataclasses.field(default="signature", metadata=option(
        "shingles: also require the true Jaccard of the shingle sets (rereads the pairs' text)"))
    url_dedup: bool = dataclasses.field(default=True, metadata=option(
        "remove older captures of the same URL", flag="--url"))
    source_priority: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_PRIORITY), metadata=option(
        "which source's copy survives first"))
    partition_rows: int = dataclasses.field(default=1_000_000, metadata=option("rows per shuffle partition"))

    def params(self) -> MinHashParams:
        return MinHashParams(ngram=self.ngram, char_ngram=self.char_ngram, permutations=self.permutations,
                             bands=self.bands, rows=self.rows, seed=self.seed)

    def validate(self) -> None:
        if not self.inputs:
            raise ValueError("inputs: give at least one folder of document shards")
        self.params().validate()
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if len(set(self.source_priority)) != len(self.source_priority):
            raise ValueError(f"source_priority lists a source twice: {self.source_priority}")
        if self.partition_rows < 1000:
            raise ValueError(f"partition_rows must be >= 1000, got {self.partition_rows}")


def _output_name(path: str) -> str:
    return runtime.output_name(path.removesuffix(".parquet"))


# ------------------------------------------------------------------------------------------------- shard tasks
def _emit(shard: Shard, urls: ex.Exchange | None, texts: ex.Exchange, bands: ex.Exchange, params_json: str,
          priority: list[str]) -> int:
    """Phase 2 for one shard: its documents' keys to the URL, exact-text and band exchanges."""
    params = MinHashParams.from_json(params_json)
    params.require(signature_params(shard.keys_path), shard.keys_path)
    offset = 0
    where, fs = storage.arrow_path(shard.keys_path)
    for i, batch in enumerate(pq.ParquetFile(where, filesystem=fs).iter_batches(batch_size=65_536)):
        table = pa.Table.from_batches([batch])
        keys = (np.int64(shard.index) << np.int64(32)) | (offset + np.arange(table.num_rows, dtype=np.int64))
        table = table.append_column("key", pa.array(keys))
        table = table.append_column("prio", pa.array(source_rank(table.column("source"), priority)))
        writer = f"{shard.index:05d}-{i:05d}"
        exact.emit(table, urls, texts, writer)
        lsh.emit(keys, signature_matrix(table.column("signature"), params.permutations),
                 table.column("shingles").to_numpy(), params, bands, writer)
        offset += table.num_rows
    return offset


def _final(shard: Shard, joined: ex.Exchange, final: ex.Exchange, params_json: str) -> int:
    """Phase 7a for one shard: removed documents whose survivor lives here, with their Jaccard similarity, sent
    keyed by the removed document's shard."""
    scored = lsh.score(shard, joined, MinHashParams.from_json(params_json), shingles=False)
    return final.write(scored, ex.file_partition(scored.column("a").to_numpy()), f"{shard.index:05d}")


def _write(shard: Shard, final: ex.Exchange, out_dir: str) -> runtime.FileReport:
    """Phase 7b for one shard: its surviving rows, as a shard of the document contract."""
    t0 = time.perf_counter()
    removed = final.read(shard.index)
    report = runtime.FileReport(input=shard.path, output=str(storage.join(out_dir, _output_name(shard.path))))
    gone = np.zeros(shard.rows, dtype=bool)
    gone[removed.column("a").to_numpy() & np.int64(0xFFFFFFFF)] = True
    for source, kind in zip(removed.column("removed_source").to_pylist(), removed.column("kind").to_pylist()):
        report.count(f"removed_{kind}")
        report.count(f"{source}:removed_{kind}")
    names = document_schema().names
    with runtime.ShardWriter(report.output) as writer:
        offset = 0
        # a shard unreadable from its first row was reported by the scan; reading it again would report it twice
        batches = read_documents(shard.path, report, columns=names, limit=shard.rows) if shard.rows else []
        for batch in batches:
            keep = ~gone[offset:offset + batch.num_rows]
            offset += batch.num_rows
            kept = pa.Table.from_batches([batch]).filter(pa.array(keep))
            writer.write_table(kept)
            counts = kept.group_by(["source", "lang"]).aggregate([([], "count_all")]).to_pylist()
            for row in counts:
                report.count(f"{row['source']}:kept", row["count_all"])
                report.by_lang[row["lang"]] = report.by_lang.get(row["lang"], 0) + row["count_all"]
            report.count("documents", int(batch.num_rows))
            report.count("kept", int(keep.sum()))
        report.seconds = time.perf_counter() - t0
        writer.set_report(report)
    return report


# ---------------------------------------------------------------------------------------------------- the stage
def _partitions(rows: int, per_partition: int, workers: int) -> int:
    return max(workers, math.ceil(rows / per_partition), 1)


def _check_params(keys_dir: str, params: MinHashParams) -> None:
    """Refuse a work folder whose signatures were made with other settings; record ours in a new one."""
    recorded = storage.join(keys_dir, PARAMS_FILE)
    if storage.exists(recorded):
        params.require(MinHashParams.from_json(storage.read_text(recorded)), str(keys_dir))
    else:
        runtime.write_json_atomic(recorded, params.to_json())


def run(config: DedupConfig, ctx: runtime.RunContext) -> runtime.StageSummary:
    """Deduplicate the shards of `config.inputs` into `config.output`; see the module docstring.
    Missing input folders are skipped with a warning (sources may land later); a damaged shard is reported in
    `_errors.jsonl` and the rows read before the damage take part."""
    console = ctx.console
    config.validate()
    out = config.output  # a local folder or an object store URL; the exchanges live under it, seen by every worker
    keys_dir, shuffle = storage.join(out, "_work", "keys"), storage.join(out, "_work", "shuffle")
    params = config.params()
    params_json = json.dumps(params.to_json())
    paths, missing = documents.find_shards(config.inputs, exclude=out)
    resume.begin_stage(out, "dedup")
    for spec in missing:
        console.print(f"[yellow]dedup: warning: input {spec} does not exist; skipped[/yellow]")
    storage.makedirs(keys_dir)
    _check_params(keys_dir, params)
    ex.clear(shuffle)
    summary = runtime.StageSummary(stage="dedup")
    t0 = time.perf_counter()
    shards = [Shard(i, p, str(storage.join(keys_dir, _output_name(p))), -1) for i, p in enumerate(paths)]
    if not minhash.compiled_here():
        console.print("dedup: numba compiles the MinHash kernels on first use (up to a minute, once; cached after)",
                      highlight=False)
    with ctx.dask() as client, tasks.PhaseBar(console, "dedup") as bar:
        nworkers = max(len(client.scheduler_info().get("workers", {})), 1)
        extra, reports = _dedup(client, config, params_json, shards, out, shuffle, nworkers, bar, summary)
    ex.clear(shuffle)
    summary.seconds = time.perf_counter() - t0
    summary.extra.update({"minhash": params.to_json(), "threshold": config.threshold, "verify": config.verify,
                          "lsh_threshold": round(params.threshold(), 4), "inputs": paths,
                          "missing_inputs": missing, "source_priority": config.source_priority, **extra})
    runtime.write_json_atomic(storage.join(out, PARAMS_FILE), {
        **params.to_json(), "lsh_threshold": round(params.threshold(), 4), "verify_threshold": config.threshold,
        "verify": config.verify, "candidate_probability": {f"{j:.1f}": round(params.candidate_probability(j), 4)
                                                           for j in np.arange(0.5, 1.0, 0.1)}})
    errors = [e for r in reports for e in r.errors]
    return runtime.finish_stage(out, summary, errors, console=console)


def _dedup(client: Any, config: DedupConfig, params_json: str, shards: list[Shard], out: str, shuffle: str,
           nworkers: int, bar: tasks.PhaseBar,
           summary: runtime.StageSummary) -> tuple[dict[str, Any], list[runtime.FileReport]]:
    """Phases 1-7 on `client`, shown on the stage's one `bar`; fills `summary` and returns its extra details and the
    per-shard reports."""
    params = config.params()
    phase = lambda label, fn, items, *args: tasks.run_phase(client, label, fn, items, *args,  # noqa: E731
                                                             console=bar.progress.console, bar=bar)
    scans = phase("signatures", scan, shards, params_json)
    shards = [dataclasses.replace(s, rows=r.counts.get("documents", 0)) for s, r in zip(shards, scans)]
    docs = sum(s.rows for s in shards)
    nshards = max(len(shards), 1)
    p_docs = _partitions(docs, config.partition_rows, nworkers)
    p_bands = _partitions(docs * params.bands, config.partition_rows, nworkers)

    def exchange(name: str, parts: int, schema: pa.Schema) -> ex.Exchange:
        return ex.Exchange(str(storage.join(shuffle, name)), parts, schema)

    urls = exchange("urls", p_docs, exact.URL_SCHEMA) if config.url_dedup else None
    texts = exchange("texts", p_docs, exact.TEXT_SCHEMA)
    bands = exchange("bands", p_bands, lsh.BAND_SCHEMA)
    removals = exchange("removals", nshards, exact.REMOVAL_SCHEMA)
    edges = exchange("edges", p_docs, exact.EDGE_SCHEMA)
    candidates = exchange("candidates", nshards, lsh.PAIR_SCHEMA)
    phase("emit", _emit, shards, urls, texts, bands, params_json, config.source_priority)

    stats: dict[str, Any] = {}

    def add(results: list[dict[str, int]], largest: tuple[str, ...] = ()) -> None:
        for r in results:
            for k, v in r.items():
                stats[k] = max(stats.get(k, 0), v) if k in largest else stats.get(k, 0) + v

    if urls is not None:
        add(phase("group: urls", exact.reduce_urls, range(p_docs), urls, removals))
    add(phase("group: exact", exact.reduce_texts, range(p_docs), texts, edges))
    add(phase("group: bands", lsh.reduce_buckets, range(p_bands), bands, candidates), largest=("largest_bucket",))
    for done in (urls, texts, bands):
        if done is not None:
            ex.clear(done.root)

    shingles = config.verify == "shingles"
    joined = lsh.joined(str(storage.join(shuffle, "candidates-joined")), nshards, lsh.PAIR_SCHEMA, params, shingles)
    phase("verify: attach", lsh.attach, shards, candidates, joined, params_json, shingles)
    add(phase("verify: score", lsh.verify, shards, joined, edges, params_json, config.threshold, shingles))

    labels, steps = clusters.components(client, edges, str(storage.join(shuffle, "components")), p_docs, nshards,
                                        bar=bar)
    stats["component_steps"] = steps
    clustered = exchange("clustered", p_docs, clusters.MEMBER_SCHEMA)
    phase("survivors: members", clusters.members, shards, labels, removals, clustered, params_json,
          config.source_priority)
    add(phase("survivors: choose", clusters.survivors, range(p_docs), clustered, removals),
        largest=("largest_cluster",))

    joined_removals = lsh.joined(str(storage.join(shuffle, "removals-joined")), nshards, exact.REMOVAL_SCHEMA,
                                 params, False)
    final = exchange("final", nshards, exact.REMOVAL_SCHEMA.append(pa.field("jaccard", pa.float32())))
    phase("write: similarity", lsh.attach, shards, removals, joined_removals, params_json, False)
    phase("write: pairs", _final, shards, joined_removals, final, params_json)
    reports = phase("write: shards", _write, shards, final, str(out))
    _write_duplicates(storage.join(out, DUPLICATES_FILE), final, len(shards))
    _remove_stale_outputs(out, {storage.name(r.output) for r in reports})

    by_source: dict[str, dict[str, int]] = {}
    for scanned, written in zip(scans, reports):
        written.errors = scanned.errors + written.errors
        written.bytes_in, written.resumed = scanned.bytes_in, scanned.resumed
        for key in list(written.counts):
            if ":" in key:
                source, what = key.split(":", 1)
                by_source.setdefault(source, {}).setdefault(what, 0)
                by_source[source][what] += written.counts.pop(key)
        summary.add(written)
    for source, row in by_source.items():
        row["documents"] = row.get("kept", 0) + sum(row.get(f"removed_{k}", 0) for k in KINDS)
    summary.counts.update({k: stats.get(k, 0) for k in ("candidate_pairs", "verified_pairs", "rejected_pairs",
                                                        "clusters", "largest_cluster")})
    for key in ("documents", "kept", *(f"removed_{kind}" for kind in KINDS)):
        summary.counts.setdefault(key, 0)
    return {"by_source": dict(sorted(by_source.items())), "work": stats}, reports


def _write_duplicates(path: str, final: ex.Exchange, shards: int) -> None:
    """`_duplicates.parquet`, streamed one partition at a time (never the whole list in memory)."""
    with runtime.ShardWriter(path, "duplicate") as writer:
        for part in range(shards):
            table = final.read(part)
            writer.write_table(table.select(["removed_id", "removed_source", "kept_id", "kept_source", "kind",
                                             "jaccard"]))


def _remove_stale_outputs(out: str, written: set[str]) -> None:
    """Shards left in `out` by an earlier run over other inputs would put removed duplicates back: delete them."""
    for path in storage.listing(out, "*.parquet"):
        if not storage.name(path).startswith(("_", ".")) and storage.name(path) not in written:
            storage.remove(path)
