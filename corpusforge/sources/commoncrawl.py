"""CommonCrawl: WARC/ARC files -> language-tagged document shards, one Parquet file per input file.

Per record: HTTP 200 HTML responses are decoded (HTTP charset, meta charset, detection), their main text extracted
with trafilatura under a hard time limit (corpusforge.extract), and their language identified with lid.176
(corpusforge.language). Request, revisit, metadata and warcinfo records, non-200 and non-HTML responses are skipped
and counted. A damaged record or compressed stream is reported with its offset and reading resumes at the next
record that can be found, so nothing before or after the damage is lost.
"""

from __future__ import annotations

import dataclasses
import glob as globlib
import re
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from corpusforge import language
from corpusforge.documents import make_document
from corpusforge.extract import (DecodeError, ExtractionFailed, ExtractionTimeout, ExtractOptions, decode_html,
                                 shared_extractor)
from corpusforge.runtime import FileReport, ShardWriter, StageSummary, map_files, output_name, resume_or_none

SOURCE = "commoncrawl"
_HTML_TYPES = ("text/html", "application/xhtml+xml", "application/xml+html")
_GENERIC_TYPES = ("", "application/octet-stream", "text/plain", "unk", "unknown")
_SCAN_CHUNK = 1 << 20
_SCAN_OVERLAP = 4096
# Where a record can start after damage: a gzip member, or (uncompressed) a WARC version line or an ARC header line
# `URL IP DATE(14 digits) MIME LENGTH`.
_GZIP_MEMBER = re.compile(rb"\x1f\x8b\x08")
_PLAIN_RECORD = re.compile(rb"(?<=\n)(?:WARC/1\.[01]\r?\n|[a-z][a-z0-9+.-]*:\S+ \S+ \d{14} \S+ \d+\r?\n)")
# Compressions warcio cannot read, by magic bytes: named in the error instead of "unknown archive format".
_UNSUPPORTED = {b"\x04\x22\x4d\x18": "lz4", b"\x28\xb5\x2f\xfd": "zstd", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}


@dataclasses.dataclass
class CommonCrawlConfig:
    """`[commoncrawl]` / `corpusforge commoncrawl`: inputs and the extraction and language settings."""

    inputs: list[str] = dataclasses.field(default_factory=list)
    output: str = "build/commoncrawl"
    base_url: str = "https://data.commoncrawl.org/"
    languages: list[str] = dataclasses.field(default_factory=list)
    min_lang_score: float = 0.0
    lid_model: str | None = None
    timeout_s: float = 10.0
    mode: str = "fast"
    min_text_chars: int = 20
    max_html_bytes: int = 5_000_000
    limit_files: int | None = None

    def validate(self) -> None:
        if not self.inputs:
            raise ValueError("inputs: give at least one WARC path, glob or warc.paths listing")
        if self.mode not in ("fast", "balanced", "precision", "recall"):
            raise ValueError(f"mode: must be fast, balanced, precision or recall, got {self.mode!r}")
        if not 0.0 <= self.min_lang_score <= 1.0:
            raise ValueError(f"min_lang_score: must be within [0, 1], got {self.min_lang_score}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s: must be positive, got {self.timeout_s}")

    def extract_options(self) -> ExtractOptions:
        return ExtractOptions(mode=self.mode, timeout_s=self.timeout_s, max_html_bytes=self.max_html_bytes)


# ---------------------------------------------------------------------------------------------------------- inputs
def expand_inputs(inputs: list[str], base_url: str = "https://data.commoncrawl.org/") -> list[str]:
    """Paths/URLs of the WARC files named by `inputs`: plain paths or URLs, globs (local or fsspec), and
    `*.paths` / `*.paths.gz` listings whose relative lines are joined to `base_url`. Order kept, duplicates dropped."""
    import fsspec

    out: list[str] = []
    for spec in inputs:
        name = spec.rstrip("/").rsplit("/", 1)[-1]
        if name.endswith((".paths", ".paths.gz", "paths.txt", "paths.txt.gz")):
            with fsspec.open(spec, "rt", compression="infer") as fh:
                for line in fh:
                    line = line.strip()
                    if line and not line.startswith("#"):
                        out.append(line if "://" in line or line.startswith("/") else base_url.rstrip("/") + "/" + line)
        elif any(c in spec for c in "*?["):
            if "://" in spec:
                fs, _, _ = fsspec.get_fs_token_paths(spec)
                protocol = spec.split("://", 1)[0]
                # s3/gcs globs return bare "bucket/key" paths, http globs return full URLs
                out.extend(p if "://" in p else f"{protocol}://{p}" for p in sorted(fs.glob(spec)))
            else:
                out.extend(sorted(globlib.glob(spec)))
        else:
            out.append(spec)
    return list(dict.fromkeys(out))


# ---------------------------------------------------------------------------------------------------------- records
@dataclasses.dataclass
class Response:
    """One WARC record of interest, read fully: where it is, its headers and (for responses) its body."""

    offset: int
    rec_type: str
    url: str | None
    date: str | None
    record_id: str | None
    status: int | None
    content_type: str | None
    body: bytes | None
    truncated: bool = False  # body cut at max_body
    missing_bytes: int = 0  # the file ended this many bytes before the record's Content-Length


def _clean_uri(uri: str | None) -> str | None:
    # Some crawlers write WARC-Target-URI as <https://...>.
    return uri.strip().strip("<>").strip() if uri else uri


def _next_record_start(fh, start: int, gzipped: bool) -> int | None:
    """The offset of the next gzip member that decompresses to a record header (gzipped files), or of the next WARC
    or ARC header line (uncompressed files), at or after `start`; None at end of file."""
    pattern = _GZIP_MEMBER if gzipped else _PLAIN_RECORD
    pos = start
    while True:
        fh.seek(pos)
        chunk = fh.read(_SCAN_CHUNK + _SCAN_OVERLAP)
        if not chunk:
            return None
        for match in pattern.finditer(chunk):
            if match.start() >= _SCAN_CHUNK and len(chunk) > _SCAN_CHUNK:
                break  # the next window sees this match with its full context
            if not gzipped or _looks_like_record(fh, pos + match.start()):
                return pos + match.start()
        if len(chunk) <= _SCAN_CHUNK:
            return None
        pos += _SCAN_CHUNK


def _looks_like_record(fh, offset: int) -> bool:
    fh.seek(offset)
    try:
        head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(fh.read(8192), 4096)
    except zlib.error:
        return False
    return head.startswith(b"WARC/") or _PLAIN_RECORD.match(b"\n" + head.split(b"\n", 1)[0] + b"\n", 1) is not None


class _BrotliDecompressor:
    """`Content-Encoding: br` for warcio, which expects zlib's interface (`decompress`, `unused_data`); the brotli
    package's Decompressor has neither, so warcio's own hook fails on it."""

    unused_data = None

    def __init__(self) -> None:
        import brotli

        self._decompressor = brotli.Decompressor()

    def decompress(self, data: bytes) -> bytes:
        return self._decompressor.process(data)


def _register_brotli() -> None:
    from warcio.bufferedreaders import BufferedReader

    BufferedReader.DECOMPRESSORS["br"] = _BrotliDecompressor


def read_records(path: str, report: FileReport, max_body: int) -> Iterator[Response]:
    """Every record of a WARC/ARC(.gz) file, with response bodies read (up to `max_body` bytes).

    A record or stream that cannot be read is reported in `report` with its offset, and reading resumes at the next
    record found after it; records before and after the damage are all yielded. A gzip stream that holds many
    records in one member (non-chunked gzip, which warcio refuses) is read as one stream instead; its records'
    offsets are then the stream's start plus their offset in the uncompressed stream.
    """
    import fsspec
    from warcio.archiveiterator import ArchiveIterator

    _register_brotli()
    with fsspec.open(path, "rb") as fh:
        magic = fh.read(6)
        for prefix, name in _UNSUPPORTED.items():
            if magic.startswith(prefix):
                report.error(f"{name}-compressed input is not supported; decompress it or recompress it as gzip",
                             offset=0, stage="read")
                return
        gzipped = magic.startswith(b"\x1f\x8b")
        size = fh.seek(0, 2)
        pos = 0
        while pos is not None:
            fh.seek(pos)
            iterator = ArchiveIterator(fh, arc2warc=True)
            last = pos
            try:
                for record in iterator:
                    last = iterator.offset  # start of this record (get_record_offset() would consume the body)
                    yield _read_record(record, last, max_body)
                if iterator.offset < size:  # warcio stops quietly at a record cut short by the end of the file
                    report.error("the file ends inside a record, or its last bytes are no record (truncated?)",
                                 offset=iterator.offset, stage="read")
                pos = None
            except Exception as exc:  # damaged input: report it, find the next record, go on
                if gzipped and "non-chunked gzip" in str(exc):
                    report.count("nonchunked_gzip_streams")
                    yield from _read_gzip_stream(fh, last, report, max_body)
                    return
                where = max(last, getattr(iterator, "offset", 0) or 0)
                report.error(f"unreadable record or stream: {type(exc).__name__}: {str(exc).strip()[:300]}",
                             offset=where, stage="read")
                # Look again from just after the last good record's start: a wrong Content-Length can swallow the
                # next record's header into that record, and the header found there starts a record not yet read.
                nxt = _next_record_start(fh, last + 1, gzipped)
                if nxt == where:  # the place that just failed
                    nxt = _next_record_start(fh, where + 1, gzipped)
                pos = nxt if nxt is not None and nxt > last else None


def _read_gzip_stream(fh, start: int, report: FileReport, max_body: int) -> Iterator[Response]:
    """The records of the gzip stream at `start` decompressed as one stream, except the first (already read)."""
    from warcio.archiveiterator import ArchiveIterator

    fh.seek(start)
    stream = _GzipStream(fh)
    iterator = ArchiveIterator(stream, arc2warc=True)
    last = 0
    try:
        for record in iterator:
            last = iterator.offset
            if last:
                yield _read_record(record, start + last, max_body)
    except Exception as exc:  # one stream has no record boundaries to resync at: report where it broke
        report.error(f"unreadable record or stream: {type(exc).__name__}: {str(exc).strip()[:300]}",
                     offset=start + last, stage="read")
        return
    if stream.truncated and not any(e["offset"] == start + last for e in report.errors):  # one error per record
        report.error("gzip stream ends inside a record (truncated file)", offset=start + last, stage="read")


class _GzipStream:
    """Gzip members read as one uncompressed stream (`read`, `tell`). Where the file ends inside a member, reading
    stops after what could be decompressed and `truncated` is set; gzip.GzipFile would raise and drop its buffer,
    and warcio takes that EOFError for a clean end."""

    def __init__(self, fh) -> None:
        self._fh = fh
        self._decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._fed = False
        self._buffer = b""
        self._pos = 0
        self.truncated = False

    def _fill(self, size: int) -> None:
        while size < 0 or len(self._buffer) < size:
            if self._decompressor.eof:  # a member ended; the next one starts in its unused data
                data = self._decompressor.unused_data or self._fh.read(1 << 16)
                self._decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._fed = False
            else:
                data = self._fh.read(1 << 16)
            if not data:
                self.truncated = self._fed and not self._decompressor.eof
                return
            self._fed = True
            self._buffer += self._decompressor.decompress(data)

    def read(self, size: int = -1) -> bytes:
        self._fill(size)
        size = len(self._buffer) if size < 0 else size
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        self._pos += len(data)
        return data

    def tell(self) -> int:
        return self._pos


def _read_record(record, offset: int, max_body: int) -> Response:
    h = record.rec_headers
    if record.format.startswith("warc") and not (h.get_header("Content-Length") or "").strip().isdigit():
        # warcio would read to the end of the file as this record's block, swallowing every record after it.
        raise ValueError("WARC record without a valid Content-Length")
    rec_type = record.rec_type or "unknown"
    status = content_type = body = None
    truncated = False
    missing = 0
    if rec_type == "response" and record.http_headers is not None:
        try:
            status = int(record.http_headers.get_statuscode() or 0)
        except ValueError:
            status = 0
        content_type = record.http_headers.get_header("Content-Type")
        if status == 200 and _maybe_html(content_type):
            body = record.content_stream().read(max_body + 1)
            truncated = len(body) > max_body
            body = body[:max_body]
            if not truncated:
                missing = _missing_bytes(record.raw_stream)
    return Response(offset=offset, rec_type=rec_type, url=_clean_uri(h.get_header("WARC-Target-URI")),
                    date=h.get_header("WARC-Date"), record_id=h.get_header("WARC-Record-ID"), status=status,
                    content_type=content_type, body=body, truncated=truncated, missing_bytes=missing)


def _missing_bytes(raw_stream) -> int:
    """How many bytes of the record block the file lacks: drain the block (warcio would anyway) and see how much of
    its Content-Length was never there. A clipped record otherwise reads as a silently shorter page."""
    while raw_stream.read(1 << 16):
        pass
    return max(getattr(raw_stream, "limit", 0), 0)


def _maybe_html(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() in _HTML_TYPES + _GENERIC_TYPES


def is_html(content_type: str | None, body: bytes | None) -> bool:
    """HTML by its Content-Type, or by sniffing the body when the type is missing or generic."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in _HTML_TYPES:
        return True
    if ctype in _GENERIC_TYPES:
        head = (body or b"")[:1024].lstrip().lower()
        return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head
    return False


# --------------------------------------------------------------------------------------------------------- documents
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
        if rec.truncated:
            report.error(f"HTML body larger than {config.max_html_bytes} bytes; cut", offset=rec.offset,
                         stage="read", url=rec.url)
        if rec.missing_bytes:
            report.error(f"record truncated: the file ends {rec.missing_bytes} bytes before its Content-Length; "
                         "extracting what is there", offset=rec.offset, stage="read", url=rec.url)
        try:
            html, _codec = decode_html(rec.body or b"", rec.content_type)
            title, text = extractor.extract(html, rec.url, options)
        except DecodeError as exc:
            report.error(str(exc), offset=rec.offset, stage="decode", url=rec.url)
            continue
        except (ExtractionTimeout, ExtractionFailed) as exc:
            report.error(str(exc), offset=rec.offset, stage="extract", url=rec.url)
            continue
        if not text or len(text) < config.min_text_chars:
            report.count("dropped_empty_extraction")
            continue
        lang, score = language.identify(text, config.lid_model)
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
                            origin_file=origin_file, origin_offset=rec.offset, origin_id=rec.record_id,
                            crawl_time=rec.date, **extra)


def warc_to_shard(item: str, out_dir: str, config: CommonCrawlConfig, *, source: str = SOURCE,
                  extra_columns: dict[str, dict[str, Any]] | None = None) -> FileReport:
    """The per-file task: one WARC file -> one Parquet shard in `out_dir` (written atomically), and its report.
    A shard finished by an earlier run is kept and its report reused (resume).

    `extra_columns` maps a record's target URL to extra document columns (WebText2 adds the Reddit score)."""
    out_path = Path(out_dir) / output_name(item)
    done = resume_or_none(out_path, item)
    if done is not None:
        return done
    report = FileReport(input=item, output=str(out_path))
    t0 = time.perf_counter()
    try:
        import fsspec

        fs, fs_path = fsspec.core.url_to_fs(item)
        report.bytes_in = fs.size(fs_path) or 0
    except Exception as exc:
        report.error(f"cannot open input: {type(exc).__name__}: {exc}", stage="read")
        report.output = None
        return report
    with ShardWriter(out_path) as writer:
        records = read_records(item, report, config.max_html_bytes)
        for doc in documents_from_records(records, item, config, report, source=source, extra_columns=extra_columns):
            writer.write_rows([doc])
        report.seconds = time.perf_counter() - t0
        writer.set_report(report)
    return report


def run(config: CommonCrawlConfig, output: str | Path, *, client: Any = None, scheduler: str | None = None,
        workers: int | None = None, source: str = SOURCE, extra_columns_for=None,
        console: Any = None) -> StageSummary:
    """Extract every input WARC into `output` on Dask; write `_summary.json` and `_errors.jsonl` there.

    `extra_columns_for(item)` (run on the client) gives the `extra_columns` for one input file."""
    items = expand_inputs(config.inputs, config.base_url)
    if config.limit_files is not None:
        items = items[: config.limit_files]
    kwargs_for = None
    if extra_columns_for is not None or source != SOURCE:
        def kwargs_for(item: str) -> dict[str, Any]:
            return {"source": source, "extra_columns": extra_columns_for(item) if extra_columns_for else None}
    summary, _ = map_files(warc_to_shard, items, output, config, stage=source, client=client, scheduler=scheduler,
                           workers=workers, console=console, kwargs_for=kwargs_for)
    return summary


def run_stage(config: CommonCrawlConfig, ctx) -> StageSummary:
    return run(config, config.output, client=ctx.client, console=ctx.console)
