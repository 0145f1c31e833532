"""The numbers behind `corpusforge stats`: per set and overall (documents, tokens, bytes, weights, epochs,
languages, token-length percentiles and histogram), per set the quality stage's `quality_score` (quantiles and
histogram), and what each stage of the run removed and why, with examples of what the quality rules dropped and
what decontamination cut for which evaluation set.

Everything is read in a streaming way: document lengths from the shards' `n_tokens` column a row group at a time,
kept as a count per distinct length (bounded by the longest document, not by the corpus), so percentiles are exact;
quality scores the same way, counted to 0.001 (at most 1,001 counts per set); drop reasons from each stage folder's
`_summary.json`, `_errors.jsonl` and `_duplicates.parquet`, and examples from its `_dropped.parquet`.
"""

from __future__ import annotations

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

from corpusforge import recipe, runtime
from corpusforge.mix import manifest as manifest_mod
from corpusforge.runtime import DECONTAMINATION_FILE, DROPPED_FILE, DUPLICATES_FILE

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
    corpus_dir = Path(corpus_dir)
    manifest = manifest_mod.load(corpus_dir)
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
        "stages": (stages := stage_reports(Path(run_dir) if run_dir else corpus_dir.parent)),
        "funnel": corpus_funnel(Path(run_dir) if run_dir else corpus_dir.parent, sets),
        "quality_rules": rule_costs(stages),
        "warnings": manifest["warnings"],
        "unreadable_shards": unreadable,
    }
    if verify:
        problems = manifest_mod.verify(corpus_dir)
        checked = sum(len(s[split]["shards"]) for s in manifest["sets"] for split in ("train", "val")) + 1
        result["verify"] = {"checked_files": checked, "ok": not problems, "problems": problems}
    return result


def _set_counts(corpus_dir: Path, manifest_set: dict[str, Any],
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
                parquet = pq.ParquetFile(corpus_dir / shard["path"])
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


def stage_reports(run_dir: Path) -> list[dict[str, Any]]:
    """For each stage folder in `run_dir` (one with a `_summary.json`), in pipeline order: files, documents (its
    `kept` counter, else `documents`), seconds, removals by reason (`dropped_*`, `skipped_*`, `removed_*`... counters), errors and warnings by reason
    (from `_errors.jsonl`), duplicates by kind and source (from `_duplicates.parquet`) and examples of dropped
    documents per reason (from `_dropped.parquet`)."""
    order = {stage.name: i for i, stage in enumerate(recipe.STAGES)}
    found = []
    for path in sorted(run_dir.glob(f"*/{runtime.SUMMARY_FILE}")):
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            continue  # a summary is written atomically; an unparsable one is not ours
        counts = summary.get("counts", {})
        errors, warnings, listed = _error_reasons(path.parent / runtime.ERRORS_FILE)
        duplicates = _side_file(_duplicates, path.parent / DUPLICATES_FILE, errors)
        found.append({
            "stage": summary.get("stage", path.parent.name), "folder": path.parent.name,
            "files": summary.get("files", 0), "seconds": summary.get("seconds", 0.0),
            "documents": counts.get("kept", counts.get("documents")),
            "drops": {k: v for k, v in sorted(counts.items()) if DROP_COUNTER.match(k) and v},
            "drops_by_source_lang": drops_by_source_lang(counts),
            "errors": summary.get("errors", 0),
            "errors_by_reason": errors, "warnings_by_reason": warnings, "error_lines": listed,
            "thresholds": summary.get("extra", {}).get("rules"),
            "duplicates": duplicates,
            "duplicate_examples": duplicates and _side_file(duplicate_examples, path.parent / DUPLICATES_FILE,
                                                            errors, summary.get("extra", {}).get("inputs") or []),
            "dropped_sample": _side_file(dropped_sample, path.parent / DROPPED_FILE, errors),
            "decontamination": _side_file(decontamination, path.parent / DECONTAMINATION_FILE, errors,
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


def _error_reasons(path: Path, lines: int = ERROR_LINES) -> tuple[dict[str, int], dict[str, int], list[dict]]:
    """Errors and warnings (lines with `"level": "warning"`: odd input that lost nothing) per reason: the reason's
    text before its first ':', so 'truncated gzip stream: at byte 912' and '...: at byte 77' count together; and
    the first `lines` of them as written (file, offset, stage, reason cut to EXAMPLE_CHARS, level, expected)."""
    reasons: dict[str, Counter[str]] = {"error": Counter(), "warning": Counter()}
    listed: list[dict[str, Any]] = []
    if path.exists():
        with path.open(encoding="utf-8") as f:
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


def duplicate_examples(path: Path, inputs: list[str], examples: int = DUPLICATE_EXAMPLES) -> dict[str, Any] | None:
    """The first `examples` duplicates of each kind in `_duplicates.parquet`, each with the text of the copy removed
    and of the copy kept (their first EXAMPLE_CHARS characters, found by id in the dedup stage's `inputs`, read an
    `id` column at a time until all are found); None without the file."""
    if not path.exists():
        return None
    chosen: dict[str, list[dict[str, Any]]] = {}
    for batch in pq.ParquetFile(path).iter_batches(batch_size=65536):
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
            parquet = pq.ParquetFile(shard)
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


def _side_file(read, path: Path, errors: dict[str, int], *args: Any) -> Any:
    """`read(path, *args)` for a stage's side file (`_duplicates.parquet`, `_dropped.parquet`...); a damaged one is
    counted among the stage's errors (reason "unreadable NAME") and read as absent, so the rest of the report
    stands."""
    try:
        return read(path, *args)
    except (OSError, pa.ArrowException, ValueError, KeyError):
        reason = f"unreadable {path.name}"
        errors[reason] = errors.get(reason, 0) + 1
        return None


def _duplicates(path: Path) -> dict[str, Any] | None:
    """Removed duplicates by kind and by source, read a row group at a time; None without the file."""
    if not path.exists():
        return None
    parquet = pq.ParquetFile(path)
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


def dropped_sample(path: Path, examples: int = DROPPED_EXAMPLES) -> dict[str, Any] | None:
    """A stage's sample of dropped documents (the quality stage's `_dropped.parquet`) per reason, in the file's
    order: how many documents of the reason the sample holds and its first `examples` (id, source, url, origin
    file, offset and id, the value of the measure that failed, the text's first `EXAMPLE_CHARS` characters). Read
    a batch at a time, the text cut in Arrow; None without the file."""
    if not path.exists():
        return None
    columns = ["id", "source", "url", "origin_file", "origin_offset", "origin_id", "reason", "value"]
    by_reason: dict[str, dict[str, Any]] = {}
    for batch in pq.ParquetFile(path).iter_batches(columns=[*columns, "text"], batch_size=256):
        texts = pc.utf8_slice_codeunits(batch.column("text"), 0, EXAMPLE_CHARS).to_pylist()
        for row, text in zip(batch.select(columns).to_pylist(), texts):
            reason = by_reason.setdefault(row.pop("reason"), {"sampled": 0, "examples": []})
            reason["sampled"] += 1
            if len(reason["examples"]) < examples:
                reason["examples"].append({**row, "text": text})
    return by_reason


def decontamination(path: Path, eval_sets: dict[str, dict[str, Any]] | None,
                    examples: int = CUT_EXAMPLES) -> dict[str, Any] | None:
    """What decontamination cut (`_decontamination.parquet`, read a batch at a time) per evaluation set: the
    set's examples, n and dirty examples (from the stage's summary), the n-gram occurrences cut, the documents they
    were in, by what became of the document, and the first `examples` occurrences; None without the file."""
    if not path.exists():
        return None
    sets: dict[str, dict[str, Any]] = {name: {**{k: info.get(k) for k in ("examples", "ngram", "dirty", "clean")},
                                              "occurrences": 0, "documents": set(), "actions": Counter(),
                                              "cut": []} for name, info in (eval_sets or {}).items()}
    columns = ["eval_set", "example_id", "document_id", "source", "ngram", "action"]
    for batch in pq.ParquetFile(path).iter_batches(columns=columns, batch_size=65536):
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
    return {"rows": pq.ParquetFile(path).metadata.num_rows, "eval_sets": sets}


# ------------------------------------------------------------------------------------------------------ the funnel
# WARC records that are the crawl's bookkeeping, not pages: shown apart from what was dropped for a reason.
BOOKKEEPING = ("request", "metadata", "warcinfo", "revisit", "resource", "conversion", "continuation")
# The stages after the sources, in data-flow order, and the funnel step each one ends.
LATER_STEPS = {"quality": "quality kept", "dedup": "after dedup", "decontaminate": "after decontamination",
               "mix": "tokens in the mix"}


FUNNEL_STEPS = ("records read", "HTML responses", "extracted", "language kept", *LATER_STEPS.values())


def funnel_row(step: dict[str, Any]) -> str:
    """The row of FUNNEL_STEPS a source's step belongs to: a source without WARC records reads pages, books or
    rows, and makes documents at once (the row "extracted")."""
    name = step["step"]
    return "records read" if name.endswith(" read") else "extracted" if name == "documents" else name


def _step(name: str, stage: str, documents: int | None, bytes_: int | None, *, into: int | None = None,
          dropped: dict[str, int] | None = None, bookkeeping: dict[str, int] | None = None, failed: int = 0,
          added: int = 0, **extra: Any) -> dict[str, Any]:
    """One step of a source's funnel: what is left after it (documents or records, and bytes), and how it got
    there from what went `into` it: dropped for a reason, bookkeeping records set apart, failed (errors), and
    documents `added` by splitting (a book into parts, a document into pieces). Within a step,
    into + added = documents + dropped + bookkeeping + failed."""
    return {"step": name, "stage": stage, "documents": documents, "bytes": bytes_, "in": into,
            "dropped": {k: v for k, v in (dropped or {}).items() if v}, "bookkeeping": bookkeeping or {},
            "failed": failed, "added": added, **extra}


def _by_prefix(counts: dict[str, int], prefix: str, exclude: tuple[str, ...] = ()) -> dict[str, int]:
    return {k.removeprefix(prefix): v for k, v in sorted(counts.items())
            if k.startswith(prefix) and ":" not in k and "." not in k and k.removeprefix(prefix) not in exclude}


def _source_steps(stage: str, source: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """A source stage's steps: WARC records read -> HTML responses -> extracted -> language kept (CommonCrawl,
    WebText2), or pages/books read -> documents (Wikipedia, books, other sources)."""
    c = summary.get("counts", {})
    out_docs, out_bytes = c.get(f"out.{source}.documents", c.get("documents")), c.get(f"out.{source}.bytes")
    errors = summary.get("errors", 0)
    if "html_responses" in c:
        skipped = _by_prefix(c, "skipped_")
        return [
            _step("records read", stage, c.get("records"), summary.get("bytes_in"), errors=errors,
                  expected_errors=summary.get("expected_errors", 0)),
            _step("HTML responses", stage, c["html_responses"], c.get("html_bytes"), into=c.get("records"),
                  dropped={k: v for k, v in skipped.items() if k not in BOOKKEEPING},
                  bookkeeping={k: v for k, v in skipped.items() if k in BOOKKEEPING}),
            _step("extracted", stage, c.get("extracted"), c.get("extracted_bytes"), into=c["html_responses"],
                  dropped=_by_prefix(c, "dropped_", ("language", "lang_score")),
                  failed=c.get("extraction_failed", 0)),
            _step("language kept", stage, out_docs, out_bytes, into=c.get("extracted"),
                  dropped={k: c.get(f"dropped_{k}", 0) for k in ("language", "lang_score")}),
        ]
    read = next((k for k in ("pages", "books", "records", "rows") if k in c), None)
    dropped = {**_by_prefix(c, "skipped_"), **_by_prefix(c, "dropped_")}
    into = c.get(read) if read else None
    parts = 0
    if read == "books":  # `books` counts the books kept, each split into one or more parts (documents)
        into, parts = c["books"] + sum(dropped.values()), (out_docs or 0) - c["books"]
    return [
        _step(f"{read or 'inputs'} read", stage, into, summary.get("bytes_in"), errors=errors,
              expected_errors=summary.get("expected_errors", 0)),
        _step("documents", stage, out_docs, out_bytes, into=into, dropped=dropped, added=parts,
              failed=c.get("conversion_failed", 0)),
    ]


def _later_step(stage: str, source: str, summary: dict[str, Any], sets: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What `stage` (quality, dedup, decontaminate, mix) did to `source`'s documents; None when it did not see
    them (the quality stage judges the web sources only)."""
    c = summary.get("counts", {})
    name = LATER_STEPS[stage]
    counted = 0 if any(k.startswith("out.") for k in c) else None  # a source not written: 0; an older run: None
    out_docs, out_bytes = c.get(f"out.{source}.documents", counted), c.get(f"out.{source}.bytes", counted)
    if stage == "quality":
        into = sum(v for k, v in c.items() if k.startswith(f"{source}:") and k.endswith(":documents"))
        if not into:
            return None
        dropped: Counter[str] = Counter()
        for key, n in c.items():
            parts = key.split(":")
            if len(parts) == 3 and parts[0] == source and parts[2].startswith("dropped_"):
                dropped[parts[2].removeprefix("dropped_")] += n
        return _step(name, stage, c.get(f"{source}:kept", 0), out_bytes, into=into, dropped=dict(dropped))
    if stage == "dedup":
        row = summary.get("extra", {}).get("by_source", {}).get(source)
        if row is None:
            return None
        return _step(name, stage, row.get("kept", 0), out_bytes, into=row.get("documents", 0),
                     dropped={k.removeprefix("removed_"): v for k, v in row.items() if k.startswith("removed_")})
    if stage == "decontaminate":
        if f"{source}:documents" not in c:
            return None
        return _step(name, stage, out_docs, out_bytes, into=c[f"{source}:documents"],
                     dropped={"contaminated": c.get(f"{source}:dropped_contaminated", 0)},
                     added=c.get(f"{source}:pieces", 0) - c.get(f"{source}:cut_documents", 0))
    mixed = [s for s in sets if s["source"] == source]
    if f"{source}:documents" not in c and not mixed:
        return None
    return _step(name, stage, c.get(f"{source}:kept", sum(s["documents"] for s in mixed)),
                 sum(s["text_bytes"] for s in mixed), into=c.get(f"{source}:documents"),
                 dropped={k: c.get(f"{source}:dropped_{k}", 0) for k in ("not_in_any_set", "empty_text")},
                 tokens=sum(s["tokens"] for s in mixed))


def corpus_funnel(run_dir: Path, sets: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per source, its documents and bytes at every stage of the run in `run_dir`, from the stages'
    `_summary.json` files: records read, HTML responses, extracted, language kept (the source stage), quality
    kept, after dedup, after decontamination and tokens in the mix (`sets`: the corpus's sets). Bytes are the
    input files' for the first step, the HTML bodies', then the UTF-8 text of the documents. Each step says how it
    got there from the step before (see `_step`); a stage that did not see a source adds no step."""
    summaries: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(run_dir.glob(f"*/{runtime.SUMMARY_FILE}")):
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            continue
        summaries.setdefault(summary.get("stage", path.parent.name), []).append(summary)
    funnel: dict[str, list[dict[str, Any]]] = {}
    not_sources = {*LATER_STEPS, "tokenizer", "stats"}
    for stage, found in summaries.items():
        if stage in not_sources or " " in stage:  # "webtext2 links": a step of a source, not one
            continue
        for summary in found:
            counts = summary.get("counts", {})
            sources = sorted({k.split(".")[1] for k in counts if k.startswith("out.") and k.endswith(".documents")})
            for source in sources or [stage]:
                funnel[source] = _source_steps(stage, source, summary)
    for source, steps in funnel.items():
        for stage in LATER_STEPS:
            for summary in summaries.get(stage, []):
                step = _later_step(stage, source, summary, sets)
                if step is not None:
                    steps.append(step)
    order = {s["source"]: i for i, s in enumerate(sets)}
    return dict(sorted(funnel.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
