"""WARC and ARC files: every record, read robustly, whatever the compression.

Files are read plain, gzip-compressed or zstd-compressed (the IIPC WARC-zstd format, with or without a dictionary).
A damaged record or compressed stream is reported with its offset and reading resumes at the next record that can be
found, so nothing before or after the damage is lost; warcio's own warnings are reported too. `read_records` yields
one `Response` per record (the body only for 200 responses that may be HTML, up to a limit); `is_html` says whether a
response is a page. The compressed units (gzip members, zstd frames) are `formats.warc_units`; writing is
`formats.warc_write`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import re
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import zstandard

from corpusforge import decompress
from corpusforge.formats import warc_units as units
from corpusforge.runtime import FileReport

MAX_BODY = 5_000_000  # bytes of a response body read by default; a longer one is cut and reported
_HTML_TYPES = ("text/html", "application/xhtml+xml", "application/xml+html")
_GENERIC_TYPES = ("", "application/octet-stream", "text/plain", "unk", "unknown")
_XML_TYPES = ("application/xml", "text/xml")  # XHTML is sometimes served as plain XML: sniffed like generic types
_SCAN_CHUNK = 1 << 20
_SCAN_OVERLAP = 4096
# Where an uncompressed record can start after damage: a WARC version line followed by a header line (a record
# whose trailing blank lines are missing runs straight into it), or an ARC header line `URL IP DATE MIME LENGTH`.
_PLAIN_RECORD = re.compile(rb"WARC/1\.[01]\r?\n(?=[A-Za-z-]+:)|(?<=\n)[a-z][a-z0-9+.-]*:\S+ \S+ \d{14} \S+ \d+\r?\n")
# Compressions warcio cannot read, by magic bytes: named in the error instead of "unknown archive format".
_UNSUPPORTED = {b"\x04\x22\x4d\x18": "lz4", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}


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


def _next_record_start(fh, start: int, codec: units.Codec | None) -> int | None:
    """The offset of the next gzip member or zstd frame that decompresses to a record header (`codec` given), or of
    the next WARC or ARC header line (uncompressed files), at or after `start`; None at end of file."""
    pattern = codec.start if codec else _PLAIN_RECORD
    pos = start
    while True:
        fh.seek(pos)
        chunk = fh.read(_SCAN_CHUNK + _SCAN_OVERLAP)
        if not chunk:
            return None
        for match in pattern.finditer(chunk):
            if match.start() >= _SCAN_CHUNK and len(chunk) > _SCAN_CHUNK:
                break  # the next window sees this match with its full context
            if codec is None or _looks_like_record(fh, pos + match.start(), codec):
                return pos + match.start()
        if len(chunk) <= _SCAN_CHUNK:
            return None
        pos += _SCAN_CHUNK


def _looks_like_record(fh, offset: int, codec: units.Codec) -> bool:
    fh.seek(offset)
    try:
        head = codec.head(fh)
    except (zlib.error, zstandard.ZstdError):
        return False
    return head.startswith(b"WARC/") or _PLAIN_RECORD.match(b"\n" + head.split(b"\n", 1)[0] + b"\n", 1) is not None


class _BrotliDecompressor:
    """`Content-Encoding: br` for warcio, which expects zlib's interface (`decompress`, `unused_data`); the brotli
    package's Decompressor has neither, so warcio's own hook fails on it. A few hundred bytes of brotli can hold
    gigabytes, so a record gives out no more than the body limit of the file being read (plus one byte, so that the
    body reads as cut and is reported so); warcio reads no further than that anyway."""

    unused_data = None

    def __init__(self) -> None:
        self._stream = decompress.stepper("br")
        reading = _WARCIO.reading
        self._left = (reading.max_body if reading is not None else MAX_BODY) + 1

    def decompress(self, data: bytes) -> bytes:
        if self._left <= 0:
            return b""  # past the limit: the body is cut there
        self._stream.feed(data)
        out = bytearray()
        while self._left > len(out) and (piece := self._stream.pull(self._left - len(out))):
            out += piece
        self._left -= len(out)
        return bytes(out)


class _WarcioMessages(threading.local):
    """Where warcio's warnings go. warcio writes them straight to `sys.stderr` ("Record not followed by newline,
    perhaps Content-Length is invalid", a member that stops decompressing) or logs them ("Replacing spaces in invalid
    WARC-Target-URI"): on a Dask worker they would end in the worker's log, apart from the file they concern.
    Installed as warcio's stderr and as a filter on its logger, this turns each into a warning in the report of the
    file that the writing thread is reading, at the record warcio is on. Per thread (Dask runs tasks in threads), so
    no process-wide state is swapped while reading, as `warnings.catch_warnings` or `redirect_stderr` would."""

    reading: _Reading | None = None

    @contextlib.contextmanager
    def reading_file(self, reading: _Reading) -> Iterator[None]:
        saved, self.reading = self.reading, reading
        try:
            yield
        finally:
            self.reading = saved

    def _warn(self, message: str) -> None:
        self.reading.report.warn(f"warcio: {message}", offset=self.reading.where(), stage="read")

    def write(self, text: str) -> int:
        if self.reading is None:
            return sys.stderr.write(text)
        # warcio's own "Offset:" line mixes compressed and decompressed positions; the warning has the record's.
        lines = [line.strip() for line in text.strip().splitlines() if not line.strip().startswith("Offset:")]
        self._warn("; ".join(lines).removeprefix("WARNING: "))
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.reading is None:
            return True
        self._warn(record.getMessage())
        return False


_WARCIO = _WarcioMessages()


class _WarcioSys:
    """`sys` as warcio's modules see it: the real one, with `stderr` going through _WARCIO."""

    stderr = _WARCIO

    def __getattr__(self, name: str) -> Any:
        return getattr(sys, name)


@functools.cache
def _adapt_warcio() -> None:
    """Once per process: brotli for warcio, and warcio's warnings into the reports (see _WarcioMessages)."""
    from warcio import archiveiterator, bufferedreaders, digestverifyingreader

    bufferedreaders.BufferedReader.DECOMPRESSORS["br"] = _BrotliDecompressor
    for module in (archiveiterator, bufferedreaders, digestverifyingreader):
        module.sys = _WarcioSys()
    logging.getLogger("warcio.recordloader").addFilter(_WARCIO)


def read_records(path: str, report: FileReport, max_body: int) -> Iterator[Response]:
    """Every record of a WARC/ARC file (plain, gzip or zstd), with response bodies read (up to `max_body` bytes).

    A record or stream that cannot be read is reported in `report` with its offset, and reading resumes at the next
    record found after it; records before and after the damage are all yielded. warcio's warnings (a record not
    followed by its blank lines, spaces in a target URI...) are reported as warnings at the record they concern
    instead of being printed. A record's offset is where it starts in the file, in a compressed file where its gzip
    member or zstd frame starts; a member or frame that holds several records (non-chunked gzip, which warcio
    refuses, or a whole file compressed as one zstd frame) is read as one stream, and its records' offsets are the
    unit's start plus their offset in its uncompressed data.
    """
    reading = _Reading(report, max_body)
    records = _read_records(path, reading, max_body)
    with contextlib.closing(records):
        while True:
            with _WARCIO.reading_file(reading):  # only while reading: the caller's code runs between records
                record = next(records, None)
            if record is None:
                return
            yield record


@dataclasses.dataclass
class _Reading:
    """A file being read: its report, and the offset of the record warcio is on (for its warnings)."""

    report: FileReport
    max_body: int
    where: Callable[[], int | None] = lambda: None


def _read_records(path: str, reading: _Reading, max_body: int) -> Iterator[Response]:
    import fsspec
    from warcio.archiveiterator import ArchiveIterator

    _adapt_warcio()
    report = reading.report
    with fsspec.open(path, "rb") as fh:
        magic = fh.read(6)
        for prefix, name in _UNSUPPORTED.items():
            if magic.startswith(prefix):
                report.error(f"{name}-compressed input is not supported; decompress it, or recompress it as gzip "
                             "or zstd", offset=0, stage="read")
                return
        size = fh.seek(0, 2)
        if size == 0:
            report.error("empty file (0 bytes): no record in it", offset=0, stage="read")
            return
        # gzip and plain files go to warcio as they are; zstd frames (and non-chunked gzip) through a FrameStream.
        if magic.startswith((units.ZSTD_FRAME, units.ZSTD_DICTIONARY_FRAME)):
            codec, pos = units.zstd_codec(fh, report)
            if codec is None:
                return
            framed = True
        else:
            codec, pos = (units.GZIP if magic.startswith(b"\x1f\x8b") else None), 0
            framed = False
        already_read = None  # a record that was yielded before reading switched to frames
        shared = None  # the last frame seen to hold several records (counted once)
        while pos is not None:
            if framed:
                stream = units.FrameStream(fh, pos, codec)
            else:
                stream = fh
                fh.seek(pos)
            iterator = ArchiveIterator(stream, arc2warc=True)
            locate = stream.locate if framed else lambda offset: (offset, 0)
            reading.where = lambda it=iterator, loc=locate: sum(loc(it.offset))
            frame = last = pos  # the unit holding the last record read, and that record's offset
            try:
                for record in iterator:
                    frame, inside = locate(iterator.offset)  # start of this record (get_record_offset() reads it)
                    if inside and frame != shared:
                        shared = frame
                        report.count(codec.nonchunked)
                    last = frame + inside
                    if last != already_read:
                        yield _read_record(record, last, max_body)
                if framed and stream.truncated:
                    _report_cut(report, max(last, stream.frame_start),
                                f"the file ends inside a {codec.name} {codec.unit} (truncated file)")
                elif iterator.offset < (stream.tell() if framed else size):  # warcio stops quietly at a cut record
                    _report_cut(report, sum(locate(iterator.offset)),
                                "the file ends inside a record, or its last bytes are no record (truncated?)")
                elif codec is units.GZIP and not framed and not units.member_complete(fh, frame, size):
                    # warcio reads a cut member as far as it goes: a cut warcinfo, request or HTTP header is quiet
                    _report_cut(report, frame, "the file ends inside a gzip member (truncated file)")
                if codec is None and last != already_read and (nxt := _next_record_start(fh, last + 1, None)):
                    # A plain record whose Content-Length runs past the records after it swallowed them as its
                    # block (warcio reads to the end of the file): read on from the next record header.
                    report.error("record block runs over the next WARC record (wrong Content-Length?); reading "
                                 "resumes at the next record header", offset=last, stage="read")
                    pos, already_read = nxt, None
                    continue
                pos = None
            except Exception as exc:  # damaged input: report it, find the next record, go on
                if not framed and codec is units.GZIP and "non-chunked gzip" in str(exc):
                    pos, framed, already_read = last, True, last  # go on from that member as a stream of members
                    continue
                damaged = framed and exc is stream.error
                where = stream.error_frame if damaged else max(last, sum(locate(iterator.offset)))
                report.error(f"unreadable record or stream: {type(exc).__name__}: {str(exc).strip()[:300]}",
                             offset=where, stage="read")
                # Look again from just after the last good record's start: a wrong Content-Length can swallow the
                # next record's header into that record, and the header found there starts a record not yet read.
                nxt = _next_record_start(fh, frame + 1, codec)
                if nxt == where:  # the place that just failed
                    nxt = _next_record_start(fh, where + 1, codec)
                pos = nxt if nxt is not None and nxt > frame else None


def _report_cut(report: FileReport, offset: int, reason: str) -> None:
    """Report that the file ends at `offset`, unless the record there was already reported (as truncated)."""
    if not any(e["offset"] == offset for e in report.errors):
        report.error(reason, offset=offset, stage="read")


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
    return (content_type or "").split(";")[0].strip().lower() in _HTML_TYPES + _GENERIC_TYPES + _XML_TYPES


def is_html(content_type: str | None, body: bytes | None) -> bool:
    """HTML by its Content-Type, or by sniffing the body when the type is missing, generic or XML (XHTML: an XML
    declaration, comments and a DOCTYPE may come before `<html`)."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in _HTML_TYPES:
        return True
    if ctype in _GENERIC_TYPES + _XML_TYPES:
        head = (body or b"")[:4096].lstrip().lower()
        return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head
    return False
