"""Pushshift submission dumps as candidate links, as OpenWebText2 read them: streamed line by line
(`corpusforge.formats.pushshift`), one Dask task per dump."""

from __future__ import annotations

import collections
import time
from pathlib import Path

from corpusforge import runtime, storage, tasks
from corpusforge.inputs import resolve
from corpusforge.formats.pushshift import read_submissions
from corpusforge.sources.webtext2 import links
from corpusforge.sources.webtext2.urls import LinkFields, LinkFilter, LinkRules


def scan_dump(item: str, out_dir: str, rules: LinkRules) -> runtime.FileReport:
    """Per-file Dask task: the candidate links of one dump, written as a unit under `out_dir` (resumed if done)."""
    unit_dir = storage.join(out_dir, runtime.output_name(item, ""))
    done = links.load_unit(unit_dir, item)
    if done is not None:
        return done[0]
    t0 = time.perf_counter()
    report = runtime.FileReport(input=item, output=str(unit_dir))
    check = LinkFilter(rules).check
    reasons: collections.Counter[str | None] = collections.Counter()  # drop reasons, None for a candidate
    with links.UnitWriter(unit_dir, rules.buckets) as writer:
        for offset, record in read_submissions(item, report, LinkFields, rules.max_line_bytes):
            try:  # a record whose values are out of range costs only itself
                url, reason = check(record)
                row = links.candidate_row(record, url, item, offset) if url is not None else None
            except (ValueError, TypeError, OverflowError) as exc:
                report.error(f"bad submission: {type(exc).__name__}: {exc}"[:300], offset=offset)
                report.count("dropped_bad_values")
                continue
            reasons[reason] += 1
            if row is not None:
                writer.add(row)
        for reason, n in reasons.items():
            report.count(f"dropped_{reason}" if reason else "candidates", n)
        if reasons:
            report.count("submissions", reasons.total())
        report.seconds = time.perf_counter() - t0
        writer.finish(report)
    return report


def collect(inputs: list[str], links_dir: str | Path, rules: LinkRules,
            ctx: runtime.RunContext) -> runtime.StageSummary:
    """Pushshift dumps (paths or globs) -> the link table in `links_dir`, one Dask task per dump."""
    from rich.console import Console

    files = resolve(inputs, what="Pushshift dump",
                    folder_error="{spec} is a folder; give the dumps in it, e.g. '{spec}/RS_*.zst'")
    unit_root = links.candidates_dir(links_dir, rules)
    with ctx.dask() as client:
        summary, reports = tasks.map_files(scan_dump, files, unit_root, rules, stage="webtext2 links (pushshift)",
                                             ctx=ctx, kept_key="candidates", finish=False)
        # the candidates' own files, without a table: the link table's summary below prints these counts once
        runtime.finish_stage(unit_root, summary, runtime.errors_of(reports), console=Console(quiet=True))
        summary.stage = "webtext2 links"
        return links.build_link_table([r.output or "" for r in reports if r.output], links_dir, rules, summary,
                                      [e for r in reports for e in r.errors], client=client, console=ctx.console)
