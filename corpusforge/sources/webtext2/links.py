"""The WebText2 link table (schemas/links.schema.json): candidate links from submissions, then one row per URL.

Building it takes two steps, both on Dask. First every unit of input (a Pushshift dump, a page of a Reddit listing)
is turned into candidate rows, one per submission that passed the LinkRules, split by a hash of the host into
`<links_dir>/_candidates/<rules>/<unit>/b00007.parquet`, streaming so memory stays bounded; `_report.json` is
written last, so a unit with a report is finished and a re-run skips it. Then each bucket is reduced on its own:
duplicate submissions are merged, the submissions of a URL aggregated (`max` or `sum` of scores), the threshold
applied, and `<links_dir>/links-00007.parquet` written. Hashing by host puts every link of a host in one file, which
is what the fetcher needs to be polite to that host. The link table may be on an object store (`s3://...`): every
file is an object written whole, and a unit's `_report.json` is still its completion mark.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import xxhash

from corpusforge import runtime, storage
from corpusforge.sources.webtext2.urls import LinkRules, created_time, score_of, url_host

CANDIDATES_DIR = "_candidates"
UNIT_REPORT = "_report.json"
LINKS_GLOB = "links-*.parquet"
REDDIT = "https://www.reddit.com"


def bucket_of(host: str, buckets: int) -> int:
    """The link file a host's links go to: a stable hash of the host, modulo `buckets`."""
    return xxhash.xxh64_intdigest(host.encode("utf-8")) % buckets


def links_file(links_dir: str | Path, bucket: int) -> Any:
    return storage.join(links_dir, f"links-{bucket:05d}.parquet")


def list_link_files(links_dir: str | Path) -> list[str]:
    """The finished link files of a link table, in bucket order."""
    files = storage.listing(links_dir, LINKS_GLOB)
    if not files:
        raise FileNotFoundError(f"no {LINKS_GLOB} in {links_dir}: run `corpusforge webtext2 links` first")
    return files


def candidates_dir(links_dir: str | Path, rules: LinkRules) -> Any:
    """Where the candidate units for these rules live; other rules get another folder, so a re-run with changed
    rules never reuses candidates filtered the old way."""
    digest = hashlib.sha1(json.dumps(dataclasses.asdict(rules), sort_keys=True).encode()).hexdigest()[:10]
    return storage.join(links_dir, CANDIDATES_DIR, f"rules-{digest}")


def candidate_row(record: dict[str, Any], url: str, origin_file: str, origin_offset: int | None) -> dict[str, Any]:
    """One submission as a row of the link table (the aggregate columns describe just this submission)."""
    score = score_of(record)
    permalink = record.get("permalink")
    if isinstance(permalink, str) and permalink.startswith("/"):
        permalink = REDDIT + permalink
    subreddit = record.get("subreddit")
    return {
        "url": url, "host": url_host(url), "score": score, "submissions": 1,
        "submission_id": str(record.get("id") or "").removeprefix("t3_"), "submission_score": score,
        "subreddit": str(subreddit) if subreddit else None, "created_utc": created_time(record),
        "permalink": permalink if isinstance(permalink, str) else None,
        "origin_file": origin_file, "origin_offset": origin_offset,
    }


class UnitWriter:
    """Write one unit's candidate rows, split by host bucket, into `unit_dir`; use as a context manager and call
    `finish(report)` inside it. Each bucket file is written atomically and only buckets with rows exist; the unit
    report comes last, so a unit interrupted half-way has no report and is redone from scratch."""

    def __init__(self, unit_dir: str | Path, buckets: int):
        self.unit_dir = unit_dir
        self.buckets = buckets
        self._writers: dict[int, runtime.ShardWriter] = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> UnitWriter:
        storage.remove_tree(self.unit_dir)  # leftovers of an interrupted attempt
        storage.makedirs(self.unit_dir)
        self._stack.__enter__()
        return self

    def add(self, row: dict[str, Any]) -> None:
        bucket = bucket_of(row["host"], self.buckets)
        writer = self._writers.get(bucket)
        if writer is None:
            writer = self._stack.enter_context(
                runtime.ShardWriter(storage.join(self.unit_dir, _bucket_name(bucket)), schema_name="links"))
            self._writers[bucket] = writer
        writer.write_rows([row])

    def finish(self, report: runtime.FileReport, **extra: Any) -> None:
        """Close the bucket files, then write the unit report (with `extra`, e.g. a listing's next page token)."""
        self._stack.close()
        runtime.write_json_atomic(storage.join(self.unit_dir, UNIT_REPORT),
                                  {"report": dataclasses.asdict(report), **extra})

    def __exit__(self, *exc: Any) -> bool | None:
        return self._stack.__exit__(*exc)


def load_unit(unit_dir: str | Path, item: str) -> tuple[runtime.FileReport, dict[str, Any]] | None:
    """(report marked resumed, the other saved fields) of a finished unit of `item`, or None."""
    try:
        saved = json.loads(storage.read_text(storage.join(unit_dir, UNIT_REPORT)))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    report = runtime.FileReport(**saved.pop("report"))
    if report.input != item:
        return None
    report.resumed = True
    return report, saved


def _bucket_name(bucket: int) -> str:
    return f"b{bucket:05d}.parquet"


def reduce_bucket(bucket: int, files: list[str], links_dir: str, rules: LinkRules) -> dict[str, int]:
    """Merge the candidate files of one bucket (one per unit that has any) into `links-<bucket>.parquet`; returns
    its counts.

    A submission seen twice (overlapping listings) counts once, with its highest score. The row of a URL describes
    its best submission (highest score, then earliest, then lowest id, so the choice is stable); its score is that
    submission's (rule `max`) or the sum over its submissions (rule `sum`).
    """
    import polars as pl

    import pyarrow.parquet as pq

    out = links_file(links_dir, bucket)
    report = runtime.FileReport(input=f"bucket {bucket:05d}", output=str(out))
    if files:
        best_first = ["url", "submission_score", "created_utc", "submission_id", "origin_file", "origin_offset"]
        descending = [False, True, False, False, False, False]
        _, fs = storage.arrow_path(files[0])  # every unit of a link table is in one place
        frame = (pl.from_arrow(pq.read_table([storage.arrow_path(f)[0] for f in files], filesystem=fs))
                 .sort(best_first, descending=descending, nulls_last=True)
                 .unique(subset=["url", "submission_id"], keep="first", maintain_order=True))
        score = pl.col("submission_score").max() if rules.score_aggregate == "max" else pl.col("submission_score").sum()
        grouped = (frame.group_by("url", maintain_order=True)
                   .agg(pl.all().exclude("score", "submissions").first(), score.alias("score"),
                        pl.len().cast(pl.Int32).alias("submissions")))
        kept = grouped.filter(pl.col("score") >= rules.min_score).sort(["host", "url"])
        report.count("candidates", frame.height)
        report.count("links", kept.height)
        report.count("links_below_min_score", grouped.height - kept.height)
        table = kept.to_arrow()
    else:
        table = None
    with runtime.ShardWriter(out, schema_name="links") as writer:
        if table is not None and table.num_rows:
            writer.write_table(table)
        writer.set_report(report)
    return report.counts


def build_link_table(unit_dirs: list[str], links_dir: str | Path, rules: LinkRules, summary: runtime.StageSummary,
                     errors: list[dict[str, Any]], *, client: Any, console: Any = None) -> runtime.StageSummary:
    """Reduce every bucket on Dask, drop link files of an earlier run with more buckets, and finish the stage with
    `summary` (the candidate step's counts) plus the link counts."""
    by_bucket: dict[str, list[str]] = {}  # each unit's bucket files, listed once
    for unit_dir in unit_dirs:
        for path in storage.listing(unit_dir, "b*.parquet"):
            by_bucket.setdefault(storage.name(path), []).append(path)
    buckets = list(range(rules.buckets))
    futures = client.map(reduce_bucket, buckets, [by_bucket.get(_bucket_name(b), []) for b in buckets],
                         links_dir=str(links_dir), rules=rules, pure=False)
    for counts in client.gather(futures):
        for key in ("links", "links_below_min_score"):
            summary.counts[key] = summary.counts.get(key, 0) + counts.get(key, 0)
    wanted = {storage.name(links_file(links_dir, b)) for b in buckets}
    for stale in storage.listing(links_dir, LINKS_GLOB):
        if storage.name(stale) not in wanted:
            storage.remove(stale)
    summary.extra.update({"buckets": rules.buckets, "min_score": rules.min_score,
                          "score_aggregate": rules.score_aggregate})
    return runtime.finish_stage(links_dir, summary, errors, console=console)
