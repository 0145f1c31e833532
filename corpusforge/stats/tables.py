"""`corpusforge stats` for people: rich tables of the sets, their quality scores, the stages and the checksum
check."""

from __future__ import annotations

from typing import Any

from corpusforge.mix import manifest as manifest_mod
from corpusforge.mix.manifest import human
from corpusforge.stats.collect import PERCENTILES
from corpusforge.stats.funnel import BOOKKEEPING, FUNNEL_STEPS, LATER_STEPS, funnel_row


def top_languages(languages: dict[str, int], n: int = 3) -> str:
    """'en 91%, de 4%, fr 2%' for the n most common languages."""
    total = sum(languages.values()) or 1
    common = sorted(languages.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return ", ".join(f"{lang} {count / total:.0%}" for lang, count in common)


def length_summary(length: dict[str, Any]) -> str:
    """'512 (40-3.1k)': median tokens per document, with p10-p90."""
    if not length.get("documents"):
        return "-"
    return f"{human(length['p50'])} ({human(length['p10'])}-{human(length['p90'])})"


def score_summary(score: dict[str, Any] | None) -> str:
    """'0.212 / 0.480 / 0.731': a set's quality_score p10 / p50 / p90, '-' without scores."""
    return " / ".join(f"{score[f'p{q}']:.3f}" for q in (10, 50, 90)) if score else "-"


def stage_reasons(stage: dict[str, Any]) -> list[tuple[str, int]]:
    """A stage's removals, errors, warnings and duplicates as (reason, count) rows: 'dropped_language', 'error:
    truncated gzip stream', 'warning: warcio', and from a duplicates list 'duplicates from webtext2' (by source: its kinds are the stage's own
    removed_* counters already)."""
    rows = list(stage["drops"].items())
    rows += [(f"error: {reason}", n) for reason, n in stage["errors_by_reason"].items()]
    rows += [(f"warning: {reason}", n) for reason, n in stage.get("warnings_by_reason", {}).items()]
    if stage["duplicates"]:
        rows += [(f"duplicates from {source}", n) for source, n in stage["duplicates"]["by_source"].items()]
    return rows


def drop_panels(stats: dict[str, Any]) -> list[tuple[str, list[tuple[str, int, bool]]]]:
    """What the stages removed, split by unit so that no axis mixes them: records, pages or books a source set
    aside while reading (WARC bookkeeping flagged, to be shown apart), documents dropped or removed, and errors
    and warnings; each panel's rows are (stage: reason, count, is bookkeeping)."""
    records, docs, errors = [], [], []
    for stage in stats["stages"]:
        source_stage = stage["stage"] not in (*LATER_STEPS, "tokenizer", "stats")
        for reason, n in stage_reasons(stage):
            label = f"{stage['stage']}: {reason}"
            if reason.startswith(("error: ", "warning: ")):
                errors.append((label, n, False))
            elif reason.startswith("duplicates from "):
                continue  # the same documents as the stage's removed_* rows, by source
            elif source_stage and reason.startswith("skipped_"):
                records.append((label, n, reason.removeprefix("skipped_") in BOOKKEEPING))
            else:
                docs.append((label, n, False))
    return [("records, pages or books the sources set aside while reading", records),
            ("documents dropped or removed", docs), ("errors and warnings (inputs, records or lines)", errors)]


DECONTAMINATION_HEADERS = ["evaluation set", "examples", "n", "dirty", "clean", "n-grams cut", "documents",
                           "became of them"]


def decontamination_rows(stats: dict[str, Any]) -> list[list[Any]]:
    """Per evaluation set of the decontamination stage: examples, n, dirty and clean examples, the n-gram
    occurrences cut, the documents they were in and what became of those ('cut 3, dropped_no_piece_left 1')."""
    rows = []
    for stage in stats["stages"]:
        for name, s in ((stage.get("decontamination") or {}).get("eval_sets") or {}).items():
            rows.append([name, human(s["examples"]), s["ngram"] if s["ngram"] is not None else "-",
                         human(s["dirty"]), human(s["clean"]), human(s["occurrences"]), human(s["documents"]),
                         ", ".join(f"{action} {n:,}" for action, n in s["actions"].items()) or "-"])
    return rows


FUNNEL_HEADERS = ["source", "step", "documents", "bytes", "how it got here from the step before"]


def funnel_how(step: dict[str, Any]) -> str:
    """'dropped: status 3, non_html 5; WARC bookkeeping set apart: request 36; failed 1; +9 split off': how a
    funnel step came from the one before (its first step: the errors reading the inputs)."""
    if step["in"] is None:
        expected = f", {step['expected_errors']:,} of them expected" if step.get("expected_errors") else ""
        return f"errors reading the inputs: {step['errors']:,}{expected}" if step.get("errors") else ""
    parts = []
    if step["dropped"]:
        parts.append("dropped: " + ", ".join(f"{k} {v:,}" for k, v in step["dropped"].items()))
    if step["bookkeeping"]:
        parts.append("WARC bookkeeping set apart: " + ", ".join(f"{k} {v:,}" for k, v in step["bookkeeping"].items()))
    if step["failed"]:
        parts.append(f"failed (errors) {step['failed']:,}")
    if step["added"]:
        parts.append(f"+{step['added']:,} split off (parts, pieces)")
    return "; ".join(parts) or "all kept"


def funnel_rows(stats: dict[str, Any]) -> list[list[Any]]:
    """The corpus funnel as table rows: per source and step, documents (records for the first steps of a WARC
    source), bytes (mix: and tokens) and how the step came from the one before."""
    rows = []
    for source, steps in stats.get("funnel", {}).items():
        for i, step in enumerate(steps):
            documents = human(step["documents"]) + (f" ({human(step['tokens'])} tokens)" if "tokens" in step else "")
            rows.append([source if i == 0 else "", step["step"], documents, human(step["bytes"]), funnel_how(step)])
    return rows


def rule_shares(row: dict[str, Any], n: int = 4) -> str:
    """'commoncrawl:en 4.1%, webtext2:en 1.0%': the share of each source and language a rule dropped, highest
    first."""
    common = sorted(row["shares"].items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return ", ".join(f"{k} {v:.1%}" for k, v in common) or "-"


def measured_cost(row: dict[str, Any]) -> tuple[str, str]:
    """The rule's measured false drops on real good text (its worst set) and its catch on junk, or '-'."""
    if row["good_max"] is None:
        return "-", "-"
    return f"{row['good_max']:.1%} ({row['good_set']})", "-" if row["junk"] is None else f"{row['junk']:.0%}"


def funnel_grid(stats: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The funnel at a glance: a row per step (FUNNEL_STEPS) and the tokens in the mix, a column per source, each
    cell 'documents / bytes' ('-' where a stage did not see the source: the quality stage judges the web sources
    only)."""
    funnel = stats.get("funnel", {})
    rows = []
    for name in FUNNEL_STEPS:
        cells = []
        for steps in funnel.values():
            step = next((s for s in steps if funnel_row(s) == name), None)
            cells.append("-" if step is None else f"{human(step['documents'])} / {human(step['bytes'])}")
        if any(c != "-" for c in cells):
            rows.append([name, *cells])
    tokens = [human(next((s["tokens"] for s in steps if "tokens" in s), None)) for steps in funnel.values()]
    if any(t != "-" for t in tokens):
        rows.append(["tokens", *tokens])
    return ["step", *funnel], rows


def print_funnel(stats: dict[str, Any], console) -> None:
    """The corpus funnel at a glance (`funnel_grid`); the report has the reasons."""
    from rich.table import Table

    headers, rows = funnel_grid(stats)
    if not rows:
        return
    table = Table(title="the corpus funnel: documents (records while read) / bytes, per source", header_style="bold")
    for name in headers:
        table.add_column(name, justify="left" if name == "step" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def print_stats(stats: dict[str, Any], manifest: dict[str, Any], console, brief: bool = False) -> None:
    """Print the sets table, what the sets hold, their quality scores (when the corpus has any), the funnel, the
    stages table, the warnings and the verification result. `brief` (the end of `corpusforge run`, whose stages
    printed their own summaries): the funnel, the warnings and the verification result only."""
    from rich.table import Table

    if brief:
        print_funnel(stats, console)
        _print_problems(stats, console)
        return
    console.print(manifest_mod.sets_table(manifest, title=f"corpus {stats['corpus']}"))
    table = Table(title="what the sets hold (tokens per document)", header_style="bold")
    for name in ("set", "languages", "mean", *(f"p{q}" for q in PERCENTILES), "max"):
        table.add_column(name, justify="left" if name in ("set", "languages") else "right", no_wrap=True)
    for name, languages, length in [*((s["name"], s["languages"], s["length"]) for s in stats["sets"]),
                                    ("total", stats["overall"]["languages"], stats["overall"]["length"])]:
        table.add_row(name, top_languages(languages), human(length["mean"] and round(length["mean"])),
                      *(human(length[f"p{q}"]) for q in PERCENTILES), human(length["max"]),
                      style="bold" if name == "total" else None)
    console.print(table)

    scored = [s for s in stats["sets"] if s["quality_score"]]
    if scored:
        table = Table(title="quality_score per set (documents the quality classifier judged)", header_style="bold")
        for name in ("set", "scored", "of documents", "p10 / p50 / p90"):
            table.add_column(name, justify="left" if name == "set" else "right", no_wrap=True)
        for s in scored:
            table.add_row(s["name"], human(s["quality_score"]["documents"]), human(s["documents"]),
                          score_summary(s["quality_score"]))
        console.print(table)

    print_funnel(stats, console)
    if stats["stages"]:
        table = Table(title="what each stage removed, and why", header_style="bold")
        for name in ("stage", "files", "docs", "s", "removed or failed", "count"):
            table.add_column(name, justify="right" if name in ("files", "docs", "s", "count") else "left")
        for stage in stats["stages"]:
            reasons = stage_reasons(stage) or [("-", None)]
            for i, (reason, count) in enumerate(reasons):
                first = i == 0
                table.add_row(stage["stage"] if first else "", human(stage["files"]) if first else "",
                              human(stage["documents"]) if first else "",
                              f"{stage['seconds']:.1f}" if first else "", reason, human(count),
                              end_section=i == len(reasons) - 1)
        console.print(table)
    else:
        console.print("no stage summaries (_summary.json) found beside the corpus")

    if stats.get("quality_rules"):
        table = Table(title="quality rules: what each dropped here, and what it costs on real good text "
                            "(bench/quality_rules.py)", header_style="bold")
        for name in ("rule", "threshold", "dropped", "share per source:language", "good text dropped (worst set)",
                     "junk caught"):
            table.add_column(name, justify="right" if name in ("threshold", "dropped", "junk caught") else "left",
                             no_wrap=name == "rule")
        for row in stats["quality_rules"]:
            table.add_row(row["rule"], human(row.get("threshold")), human(row["dropped"]), rule_shares(row),
                          *measured_cost(row))
        console.print(table)

    rows = decontamination_rows(stats)
    if rows:
        table = Table(title="decontamination: evaluation sets (dirty = an n-gram found in training)",
                      header_style="bold")
        for name in DECONTAMINATION_HEADERS:
            table.add_column(name, justify="left" if name in ("evaluation set", "became of them") else "right")
        for row in rows:
            table.add_row(*(str(c) for c in row))
        console.print(table)

    _print_problems(stats, console)


def _print_problems(stats: dict[str, Any], console) -> None:
    """The corpus's warnings, its unreadable shards and the checksum check."""
    for warning in stats["warnings"]:
        console.print(f"[yellow]warning: {warning}")
    for shard in stats["unreadable_shards"]:
        console.print(f"[red]unreadable shard {shard['path']} (left out of the lengths): {shard['problem']}")
    verify = stats.get("verify")
    if verify is not None:
        if verify["ok"]:
            console.print(f"[green]verify: {verify['checked_files']} files match the manifest's checksums")
        else:
            for problem in verify["problems"]:
                console.print(f"[red]verify: {problem['path']}: {problem['problem']}")
