"""The corpus funnel: per source, documents and bytes at every stage of a run (records read, HTML responses,
extracted, language kept, quality kept, after dedup, after decontamination, tokens in the mix), built from the
stages' `_summary.json` counters alone."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from corpusforge import runtime, storage

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


def stage_summaries(run_dir: str | Path) -> list[tuple[Any, dict[str, Any]]]:
    """(folder, its `_summary.json`) of every stage folder in `run_dir`, local or on a store, in name order."""
    found = []
    for path in sorted(storage.listing(run_dir, f"*/{runtime.SUMMARY_FILE}"), key=lambda p: str(p).split("/")):
        try:
            found.append((storage.parent(path), json.loads(storage.read_text(path))))
        except json.JSONDecodeError:
            continue  # a summary is written atomically; an unparsable one is not ours
    return found


def corpus_funnel(run_dir: str | Path, sets: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per source, its documents and bytes at every stage of the run in `run_dir`, from the stages'
    `_summary.json` files: records read, HTML responses, extracted, language kept (the source stage), quality
    kept, after dedup, after decontamination and tokens in the mix (`sets`: the corpus's sets). Bytes are the
    input files' for the first step, the HTML bodies', then the UTF-8 text of the documents. Each step says how it
    got there from the step before (see `_step`); a stage that did not see a source adds no step."""
    summaries: dict[str, list[dict[str, Any]]] = {}
    for folder, summary in stage_summaries(run_dir):
        summaries.setdefault(summary.get("stage", storage.name(folder)), []).append(summary)
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
