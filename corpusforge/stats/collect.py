"""The numbers behind `corpusforge stats`: per set and overall (documents, tokens, bytes, weights, epochs,
languages, token-length percentiles and histogram), per set the quality stage's `quality_score` (quantiles and
histogram), and what each stage of the run removed and why, with examples of what the quality rules dropped and
what decontamination cut for which evaluation set.

Everything is read in a streaming way: document lengths from the shards' `n_tokens` column a row group at a time,
kept as a count per distinct length (bounded by the longest document, not by the corpus), so percentiles are exact;
quality scores the same way, counted to 0.001 (at most 1,001 counts per set); drop reasons from each stage folder's
`_summary.json`, `_errors.jsonl` and `_duplicates.parquet`, and examples from its `_dropped.parquet`. The corpus and
the run's folders may be local or on an object store (`s3://...`).
"""

from __future__ import annotations

import io
import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpusforge import recipe, runtime, storage
from corpusforge.mix import manifest as manifest_mod
from corpusforge.runtime import DECONTAMINATION_FILE, DROPPED_FILE, DUPLICATES_FILE
from corpusforge.stats.funnel import corpus_funnel, stage_summaries

PERCENTILES = (10, 50, 90, 99)
SCORE_STEPS = 1000  # quality scores are counted to 1/1000: exact enough to judge a threshold, and bounded memory
SCORE_BINS = 20  # histogram bins over [0, 1]
DROPPED_EXAMPLES = 3  # examples per reason from a stage's sample of dropped documents
CUT_EXAMPLES = 3  # examples per evaluation set of the n-grams decontamination cut
EXAMPLE_CHARS = 300  # of each example's text
DUPLICATE_EXAMPLES = 2  # examples per kind of duplicate (url, exact, near), with both texts
ERROR_LINES = 20  # error lines listed per stage (all of them are in its `_errors.jsonl`)
# A stage's counters with these prefixes are documents it removed, by reason (dropped_language, removed_near...).
DROP_COUNTER = re.compile(r"^(dropped|skipped|removed|filtered|rejected)_[^:.]+$")


def corpus_stats(corpus_dir: str | Path, run_dir: str | Path | None = None, verify: bool = False) -> dict[str, Any]:
    """Statistics of the corpus in `corpus_dir` and of the stages whose folders are in `run_dir` (default: the
    corpus folder's parent, where `corpusforge run` puts every stage). With `verify`, also the checksum check."""
    manifest = manifest_mod.load(corpus_dir)
    run_dir = run_dir or storage.parent(corpus_dir)
    total_tokens = manifest["totals"]["tokens"] or 1
    overall_lengths: Counter[int] = Counter()
    overall_languages: Counter[str] = Counter()
    sets = []
    unreadable: list[dict[str, str]] = []
    for s in manifest["sets"]:
        lengths, scores = _set_counts(corpus_dir, s, unreadable)
        overall_lengths.update(lengths)
        overall_languages.update(s["languages"])
        sets.append({
            **{k: s[k] for k in ("name", "source", "documents", "tokens", "text_bytes", "bytes", "recipe_weight",
                                 "weight", "epochs", "max_epochs")},
            "recipe_share": s["recipe_weight"] / manifest["weights"]["recipe_sum"],
            "token_share": s["tokens"] / total_tokens,
            "train_documents": s["train"]["documents"], "val_documents": s["val"]["documents"],
            "shards": len(s["train"]["shards"]) + len(s["val"]["shards"]),
            "languages": dict(sorted(s["languages"].items(), key=lambda kv: (-kv[1], kv[0]))),
            "length": describe_lengths(lengths), "length_histogram": length_histogram(lengths),
            "quality_score": describe_scores(scores),
        })
    result = {
        "corpus": str(corpus_dir),
        "budget_tokens": manifest["budget_tokens"],
        "tokenizer": {k: manifest["tokenizer"][k] for k in ("vocab_size", "eot_id", "sha256")},
        "weights": manifest["weights"],
        "sets": sets,
        "overall": {**manifest["totals"],
                    "languages": dict(sorted(overall_languages.items(), key=lambda kv: (-kv[1], kv[0]))),
                    "length": describe_lengths(overall_lengths)},
        "stages": (stages := stage_reports(run_dir)),
        "funnel": corpus_funnel(run_dir, sets),
        "quality_rules": rule_costs(stages),
        "warnings": manifest["warnings"],
        "unreadable_shards": unreadable,
    }
    if verify:
        problems = manifest_mod.verify(corpus_dir)
        checked = sum(len(s[split]["shards"]) for s in manifest["sets"] for split in ("train", "val")) + 1
        result["verify"] = {"checked_files": checked, "ok": not problems, "problems": problems}
    return result


def _parquet(path: str | Path) -> pq.ParquetFile:
    """A Parquet file, local or on a store, to read a row group or a batch at a time."""
    local, fs = storage.arrow_path(path)
    return pq.ParquetFile(local, filesystem=fs)


def _set_counts(corpus_dir: str | Path, manifest_set: dict[str, Any],
                unreadable: list[dict[str, str]]) -> tuple[Counter[int], Counter[int]]:
    """How many documents of the set (train and val shards) have each token length, and each quality score in
    thousandths (documents with a score only; shards mixed before the quality stage existed have no such column).
    A shard that cannot be read is left out and listed in `unreadable` (`--verify` says whether it is damaged or
    missing)."""
    lengths: Counter[int] = Counter()
    scores: Counter[int] = Counter()
    for split in ("train", "val"):
        for shard in manifest_set[split]["shards"]:
            try:
                parquet = _parquet(storage.join(corpus_dir, shard["path"]))
                columns = [c for c in ("n_tokens", "quality_score") if c in parquet.schema_arrow.names]
                for batch in parquet.iter_batches(columns=columns, batch_size=65536):
                    _count(lengths, batch.column("n_tokens").to_numpy())
                    if "quality_score" in columns:
                        score = batch.column("quality_score").drop_null().to_numpy()
                        _count(scores, np.rint(score * SCORE_STEPS).astype(np.int64))
            except (OSError, pa.ArrowException) as exc:
                unreadable.append({"path": shard["path"], "problem": f"{type(exc).__name__}: {exc}"})
    return lengths, scores


def _count(counts: Counter[int], values: np.ndarray) -> None:
    distinct, n = np.unique(values, return_counts=True)
    counts.update(dict(zip(distinct.tolist(), n.tolist())))


def describe_lengths(counts: Counter[int]) -> dict[str, float | int | None]:
    """Mean, min, max and nearest-rank percentiles (p10..p99) of document lengths (or any integer measure) given
    as {length: documents}."""
    n = sum(counts.values())
    if not n:
        return {"documents": 0, "mean": None, "min": None, "max": None, **{f"p{q}": None for q in PERCENTILES}}
    values = np.array(sorted(counts), dtype=np.int64)
    cumulative = np.cumsum([counts[v] for v in values])
    out: dict[str, float | int | None] = {"documents": n, "mean": float((values * np.diff(cumulative, prepend=0)).sum() / n),
                                          "min": int(values[0]), "max": int(values[-1])}
    for q in PERCENTILES:
        rank = max(1, math.ceil(q / 100 * n))
        out[f"p{q}"] = int(values[np.searchsorted(cumulative, rank)])
    return out


def describe_scores(counts: Counter[int]) -> dict[str, Any] | None:
    """Quantiles (p10..p99), mean, min and max of quality scores given as {thousandths: documents}, and their
    histogram over [0, 1] (`SCORE_BINS` equal bins, the last one closed); None without scores."""
    if not counts:
        return None
    out: dict[str, Any] = {k: v if k == "documents" else v / SCORE_STEPS for k, v in describe_lengths(counts).items()}
    hist = [0] * SCORE_BINS
    for thousandths, n in counts.items():
        hist[min(thousandths * SCORE_BINS // SCORE_STEPS, SCORE_BINS - 1)] += n
    out["histogram"] = {"edges": [i / SCORE_BINS for i in range(SCORE_BINS + 1)], "counts": hist}
    return out


def length_histogram(counts: Counter[int], bins_per_octave: int = 2) -> dict[str, Any]:
    """Document counts in log-spaced length bins: edges 1, 1.41, 2, 2.83, 4 ... tokens (bin i is [edge i, edge i+1));
    documents with no tokens are counted apart as `empty`."""
    lengths = {k: v for k, v in counts.items() if k >= 1}
    if not lengths:
        return {"edges": [], "counts": [], "empty": counts.get(0, 0)}
    n_bins = int(math.floor(math.log2(max(lengths)) * bins_per_octave)) + 1
    edges = [2 ** (i / bins_per_octave) for i in range(n_bins + 1)]
    hist = [0] * n_bins
    for length, n in lengths.items():
        hist[min(int(math.floor(math.log2(length) * bins_per_octave + 1e-9)), n_bins - 1)] += n
    return {"edges": [round(e, 3) for e in edges], "counts": hist, "empty": counts.get(0, 0)}


def stage_reports(run_dir: str | Path) -> list[dict[str, Any]]:
    """For each stage folder in `run_dir` (one with a `_summary.json`), in pipeline order: files, documents (its
    `kept` counter, else `documents`), seconds, removals by reason (`dropped_*`, `skipped_*`, `removed_*`... counters), errors and warnings by reason
    (from `_errors.jsonl`), duplicates by kind and source (from `_duplicates.parquet`) and examples of dropped
    documents per reason (from `_dropped.parquet`)."""
    order = {stage.name: i for i, stage in enumerate(recipe.STAGES)}
    found = []
    for folder, summary in stage_summaries(run_dir):
        counts = summary.get("counts", {})
        errors, warnings, listed = _error_reasons(storage.join(folder, runtime.ERRORS_FILE))
        duplicates = _side_file(_duplicates, storage.join(folder, DUPLICATES_FILE), errors)
        found.append({
            "stage": summary.get("stage", storage.name(folder)), "folder": storage.name(folder),
            "files": summary.get("files", 0), "seconds": summary.get("seconds", 0.0),
            "documents": counts.get("kept", counts.get("documents")),
            "drops": {k: v for k, v in sorted(counts.items()) if DROP_COUNTER.match(k) and v},
            "drops_by_source_lang": drops_by_source_lang(counts),
            "errors": summary.get("errors", 0),
            "errors_by_reason": errors, "warnings_by_reason": warnings, "error_lines": listed,
            "thresholds": summary.get("extra", {}).get("rules"),
            "duplicates": duplicates,
            "duplicate_examples": duplicates and _side_file(duplicate_examples, storage.join(folder, DUPLICATES_FILE),
                                                            errors, summary.get("extra", {}).get("inputs") or []),
            "dropped_sample": _side_file(dropped_sample, storage.join(folder, DROPPED_FILE), errors),
            "decontamination": _side_file(decontamination, storage.join(folder, DECONTAMINATION_FILE), errors,
                                          summary.get("extra", {}).get("eval_sets")),
        })
    return sorted(found, key=lambda s: (order.get(s["stage"], len(order)), s["stage"], s["folder"]))


def drops_by_source_lang(counts: dict[str, int]) -> dict[str, dict[str, Any]]:
    """From a stage's `SOURCE:LANG:documents` and `SOURCE:LANG:dropped_REASON` counters (the quality stage writes
    them): per "SOURCE:LANG", its documents and per reason the share of them dropped."""
    out: dict[str, dict[str, Any]] = {}
    for key, n in sorted(counts.items()):
        source_lang, _, what = key.rpartition(":")
        if source_lang.count(":") != 1:
            continue
        entry = out.setdefault(source_lang, {"documents": 0, "dropped": {}})
        if what == "documents":
            entry["documents"] = n
        elif DROP_COUNTER.match(what):
            entry["dropped"][what.split("_", 1)[1]] = n
    for entry in out.values():
        entry["shares"] = {r: n / entry["documents"] for r, n in entry["dropped"].items() if entry["documents"]}
    return {k: v for k, v in out.items() if v["documents"]}


def rule_costs(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per quality rule that dropped documents in the run: its threshold, how many, the share per source and
    language, and beside it the share of real good text it drops and of junk it catches as measured
    (`quality.false_drops`)."""
    from corpusforge.quality import false_drops
    from corpusforge.quality.heuristics import RULE_NAMES

    measured = false_drops.per_rule(false_drops.load())
    rows = []
    for stage in stages:
        by = stage.get("drops_by_source_lang") or {}
        for rule in RULE_NAMES:
            dropped = stage["drops"].get(f"dropped_{rule}")
            if not dropped:
                continue
            m = measured.get(rule, {})
            rows.append({"stage": stage["stage"], "rule": rule, "dropped": dropped,
                         "threshold": (stage.get("thresholds") or {}).get(rule),
                         "shares": {k: v["shares"][rule] for k, v in by.items() if rule in v["shares"]},
                         "good_max": m.get("good_max"), "good_set": m.get("good_set"), "junk": m.get("junk")})
    return rows


def _error_reasons(path: str | Path, lines: int = ERROR_LINES) -> tuple[dict[str, int], dict[str, int], list[dict]]:
    """Errors and warnings (lines with `"level": "warning"`: odd input that lost nothing) per reason: the reason's
    text before its first ':', so 'truncated gzip stream: at byte 912' and '...: at byte 77' count together; and
    the first `lines` of them as written (file, offset, stage, reason cut to EXAMPLE_CHARS, level, expected)."""
    reasons: dict[str, Counter[str]] = {"error": Counter(), "warning": Counter()}
    listed: list[dict[str, Any]] = []
    if storage.exists(path):
        with storage.open_file(path) as raw, io.TextIOWrapper(raw, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                    reason, level = str(record.get("reason", "unknown")), record.get("level", "error")
                except (json.JSONDecodeError, AttributeError):
                    record, reason, level = {}, "unparsable error line", "error"
                reasons["warning" if level == "warning" else "error"][reason.split(":", 1)[0].strip()] += 1
                if len(listed) < lines:
                    listed.append({"file": record.get("file"), "offset": record.get("offset"),
                                   "stage": record.get("stage"), "reason": reason[:EXAMPLE_CHARS], "level": level,
                                   "expected": record.get("expected")})
    return dict(reasons["error"].most_common()), dict(reasons["warning"].most_common()), listed


def duplicate_examples(path: str | Path, inputs: list[str],
                       examples: int = DUPLICATE_EXAMPLES) -> dict[str, Any] | None:
    """The first `examples` duplicates of each kind in `_duplicates.parquet`, each with the text of the copy removed
    and of the copy kept (their first EXAMPLE_CHARS characters, found by id in the dedup stage's `inputs`, read an
    `id` column at a time until all are found); None without the file."""
    if not storage.exists(path):
        return None
    chosen: dict[str, list[dict[str, Any]]] = {}
    for batch in _parquet(path).iter_batches(batch_size=65536):
        for row in batch.to_pylist():
            kind = chosen.setdefault(row["kind"], [])
            if len(kind) < examples:
                kind.append({k: row.get(k) for k in ("kind", "jaccard", "removed_id", "removed_source", "kept_id",
                                                     "kept_source")})
        if all(len(v) >= examples for v in chosen.values()):
            break
    wanted = {e[k] for rows in chosen.values() for e in rows for k in ("removed_id", "kept_id")}
    texts: dict[str, dict[str, Any]] = {}
    for shard in inputs:
        if len(texts) == len(wanted):
            break
        try:
            parquet = _parquet(shard)
        except (OSError, pa.ArrowException):
            continue  # an input gone or damaged since: its examples go without text
        for batch in parquet.iter_batches(columns=["id", "url", "text"], batch_size=8192):
            hit = pc.is_in(batch.column("id"), value_set=pa.array(sorted(wanted), pa.string()))
            for row in batch.filter(hit).to_pylist():
                texts[row["id"]] = {"url": row["url"], "text": (row["text"] or "")[:EXAMPLE_CHARS]}
    for rows in chosen.values():
        for e in rows:
            e["removed"], e["kept"] = texts.get(e["removed_id"]), texts.get(e["kept_id"])
    return chosen


def _side_file(read, path: str | Path, errors: dict[str, int], *args: Any) -> Any:
    """`read(path, *args)` for a stage's side file (`_duplicates.parquet`, `_dropped.parquet`...); a damaged one is
    counted among the stage's errors (reason "unreadable NAME") and read as absent, so the rest of the report
    stands."""
    try:
        return read(path, *args)
    except (OSError, pa.ArrowException, ValueError, KeyError):
        reason = f"unreadable {storage.name(path)}"
        errors[reason] = errors.get(reason, 0) + 1
        return None


def _duplicates(path: str | Path) -> dict[str, Any] | None:
    """Removed duplicates by kind and by source, read a row group at a time; None without the file."""
    if not storage.exists(path):
        return None
    parquet = _parquet(path)
    columns = [c for c in ("kind", "removed_source") if c in parquet.schema_arrow.names]
    by_kind: Counter[str] = Counter()
    by_source: Counter[str] = Counter()
    for batch in parquet.iter_batches(columns=columns, batch_size=65536) if columns else ():
        if "kind" in columns:
            by_kind.update(batch.column("kind").to_pylist())
        if "removed_source" in columns:
            by_source.update(batch.column("removed_source").to_pylist())
    rows = parquet.metadata.num_rows
    return {"rows": rows, "by_kind": dict(by_kind.most_common()), "by_source": dict(by_source.most_common())}


def dropped_sample(path: str | Path, examples: int = DROPPED_EXAMPLES) -> dict[str, Any] | None:
    """A stage's sample of dropped documents (the quality stage's `_dropped.parquet`) per reason, in the file's
    order: how many documents of the reason the sample holds and its first `examples` (id, source, url, origin
    file, offset and id, the value of the measure that failed, the text's first `EXAMPLE_CHARS` characters). Read
    a batch at a time, the text cut in Arrow; None without the file."""
    if not storage.exists(path):
        return None
    columns = ["id", "source", "url", "origin_file", "origin_offset", "origin_id", "reason", "value"]
    by_reason: dict[str, dict[str, Any]] = {}
    for batch in _parquet(path).iter_batches(columns=[*columns, "text"], batch_size=256):
        texts = pc.utf8_slice_codeunits(batch.column("text"), 0, EXAMPLE_CHARS).to_pylist()
        for row, text in zip(batch.select(columns).to_pylist(), texts):
            reason = by_reason.setdefault(row.pop("reason"), {"sampled": 0, "examples": []})
            reason["sampled"] += 1
            if len(reason["examples"]) < examples:
                reason["examples"].append({**row, "text": text})
    return by_reason


def decontamination(path: str | Path, eval_sets: dict[str, dict[str, Any]] | None,
                    examples: int = CUT_EXAMPLES) -> dict[str, Any] | None:
    """What decontamination cut (`_decontamination.parquet`, read a batch at a time) per evaluation set: the
    set's examples, n and dirty examples (from the stage's summary), the n-gram occurrences cut, the documents they
    were in, by what became of the document, and the first `examples` occurrences; None without the file."""
    if not storage.exists(path):
        return None
    sets: dict[str, dict[str, Any]] = {name: {**{k: info.get(k) for k in ("examples", "ngram", "dirty", "clean")},
                                              "occurrences": 0, "documents": set(), "actions": Counter(),
                                              "cut": []} for name, info in (eval_sets or {}).items()}
    columns = ["eval_set", "example_id", "document_id", "source", "ngram", "action"]
    parquet = _parquet(path)
    for batch in parquet.iter_batches(columns=columns, batch_size=65536):
        for row in batch.to_pylist():
            entry = sets.setdefault(row["eval_set"], {"examples": None, "ngram": None, "dirty": None,
                                                      "clean": None, "occurrences": 0, "documents": set(),
                                                      "actions": Counter(), "cut": []})
            entry["occurrences"] += 1
            entry["documents"].add(row["document_id"])
            entry["actions"][row["action"]] += 1
            if len(entry["cut"]) < examples:
                entry["cut"].append({k: row[k] for k in ("example_id", "source", "document_id", "ngram", "action")})
    for entry in sets.values():  # the documents of a set are bounded by the n-grams cut, not by the corpus
        entry["documents"] = len(entry["documents"])
        entry["actions"] = dict(entry["actions"].most_common())
    return {"rows": parquet.metadata.num_rows, "eval_sets": sets}
