"""The numbers behind `corpusforge stats`: per set and overall (documents, tokens, bytes, weights, epochs,
languages, token-length percentiles and histogram), and what each stage of the run removed and why.

Everything is read in a streaming way: document lengths from the shards' `n_tokens` column a row group at a time,
kept as a count per distinct length (bounded by the longest document, not by the corpus), so percentiles are exact;
drop reasons from each stage folder's `_summary.json`, `_errors.jsonl` and `_duplicates.parquet`.
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
import pyarrow.parquet as pq

from corpusforge import recipe, runtime
from corpusforge.dedup import DUPLICATES_FILE
from corpusforge.mix import manifest as manifest_mod

PERCENTILES = (10, 50, 90, 99)
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
        lengths = _length_counts(corpus_dir, s, unreadable)
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
        "stages": stage_reports(Path(run_dir) if run_dir else corpus_dir.parent),
        "warnings": manifest["warnings"],
        "unreadable_shards": unreadable,
    }
    if verify:
        problems = manifest_mod.verify(corpus_dir)
        checked = sum(len(s[split]["shards"]) for s in manifest["sets"] for split in ("train", "val")) + 1
        result["verify"] = {"checked_files": checked, "ok": not problems, "problems": problems}
    return result


def _length_counts(corpus_dir: Path, manifest_set: dict[str, Any], unreadable: list[dict[str, str]]) -> Counter[int]:
    """How many documents of the set have each token length (train and val shards). A shard that cannot be read
    is left out and listed in `unreadable` (`--verify` says whether it is damaged or missing)."""
    counts: Counter[int] = Counter()
    for split in ("train", "val"):
        for shard in manifest_set[split]["shards"]:
            try:
                parquet = pq.ParquetFile(corpus_dir / shard["path"])
                for batch in parquet.iter_batches(columns=["n_tokens"], batch_size=65536):
                    values, n = np.unique(batch.column("n_tokens").to_numpy(), return_counts=True)
                    counts.update(dict(zip(values.tolist(), n.tolist())))
            except (OSError, pa.ArrowException) as exc:
                unreadable.append({"path": shard["path"], "problem": f"{type(exc).__name__}: {exc}"})
    return counts


def describe_lengths(counts: Counter[int]) -> dict[str, float | int | None]:
    """Mean, min, max and nearest-rank percentiles (p10..p99) of document lengths given as {length: documents}."""
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
    (from `_errors.jsonl`) and duplicates by kind and source (from `_duplicates.parquet`)."""
    order = {stage.name: i for i, stage in enumerate(recipe.STAGES)}
    found = []
    for path in sorted(run_dir.glob(f"*/{runtime.SUMMARY_FILE}")):
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            continue  # a summary is written atomically; an unparsable one is not ours
        counts = summary.get("counts", {})
        errors, warnings = _error_reasons(path.parent / runtime.ERRORS_FILE)
        found.append({
            "stage": summary.get("stage", path.parent.name), "folder": path.parent.name,
            "files": summary.get("files", 0), "seconds": summary.get("seconds", 0.0),
            "documents": counts.get("kept", counts.get("documents")),
            "drops": {k: v for k, v in sorted(counts.items()) if DROP_COUNTER.match(k) and v},
            "errors": summary.get("errors", 0),
            "errors_by_reason": errors, "warnings_by_reason": warnings,
            "duplicates": _duplicates(path.parent / DUPLICATES_FILE),
        })
    return sorted(found, key=lambda s: (order.get(s["stage"], len(order)), s["stage"], s["folder"]))


def _error_reasons(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Errors and warnings (lines with `"level": "warning"`: odd input that lost nothing) per reason: the reason's
    text before its first ':', so 'truncated gzip stream: at byte 912' and '...: at byte 77' count together."""
    reasons: dict[str, Counter[str]] = {"error": Counter(), "warning": Counter()}
    if path.exists():
        with path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                    reason, level = str(record.get("reason", "unknown")), record.get("level", "error")
                except (json.JSONDecodeError, AttributeError):
                    reason, level = "unparsable error line", "error"
                reasons["warning" if level == "warning" else "error"][reason.split(":", 1)[0].strip()] += 1
    return dict(reasons["error"].most_common()), dict(reasons["warning"].most_common())


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
