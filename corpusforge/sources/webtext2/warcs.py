"""The fetch's output: each link's HTTP exchanges as WARC request and response records (laid out as warcio writes
them) and `FetchLog`, the resumable WARC segments and outcome logs of one fetch task (see fetch's module doc)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corpusforge import runtime

if TYPE_CHECKING:
    from corpusforge.sources.webtext2.fetch import FetchConfig

# zlib's default. On real pages (140 KB of HTML) warcio's level 9 takes 1.6x as long for files 0.6% smaller.
WARC_GZIP_LEVEL = 6
# Outcomes that mean the page could not be fetched as it should have been; they go to `_errors.jsonl`.
ERROR_OUTCOMES = ("truncated", "redirect_loop", "too_many_redirects", "bad_redirect", "network_error", "failed")


@dataclasses.dataclass
class Exchange:
    """One HTTP request and its response, as fetched."""

    url: str
    status: int
    reason: str
    request_line: str
    request_headers: list[tuple[str, str]]
    headers: list[tuple[str, str]]
    body: bytes = b""
    truncated: bool = False
    peer: str | None = None
    recorded: bool = True

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def content_type(self) -> str:
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()


def warc_records(exchanges: list[Exchange]) -> bytes:
    """Gzipped WARC response+request records for the exchanges, in order. The stored HTTP headers describe the
    stored body: a de-chunked body loses Transfer-Encoding, and a cut body gets its real Content-Length (the sent
    values are kept as X-Crawler-Transfer-Encoding / X-Crawler-Content-Length, as Common Crawl does)."""
    from warcio.statusandheaders import StatusAndHeaders

    out = []
    for ex in exchanges:
        headers = []
        for name, value in ex.headers:
            lower = name.lower()
            if lower == "transfer-encoding" or (lower == "content-length" and value.strip() != str(len(ex.body))):
                headers.append((f"X-Crawler-{name}", value))
            else:
                headers.append((name, value))
        if ex.truncated or any(k.lower() == "x-crawler-content-length" for k, _ in headers):
            headers.append(("Content-Length", str(len(ex.body))))
        # warcio's header blocks: non-ASCII header values percent-encoded as RFC 8187 says
        response_http = StatusAndHeaders(f"{ex.status} {ex.reason}".strip(), headers,
                                         protocol="HTTP/1.1").to_ascii_bytes()
        request_http = StatusAndHeaders(ex.request_line, ex.request_headers, is_http_request=True).to_ascii_bytes()
        response_id, date = _record_id(), _warc_date()
        out.append(_warc_record([
            *([("WARC-IP-Address", ex.peer)] if ex.peer else []),
            *([("WARC-Truncated", "length")] if ex.truncated else []),
            ("WARC-Type", "response"), ("WARC-Record-ID", response_id), ("WARC-Target-URI", ex.url),
            ("WARC-Date", date), ("WARC-Payload-Digest", _sha1(hashlib.sha1(ex.body)))],
            "application/http; msgtype=response", response_http, ex.body))
        out.append(_warc_record([
            ("WARC-Type", "request"), ("WARC-Record-ID", _record_id()), ("WARC-Target-URI", ex.url),
            ("WARC-Date", date), ("WARC-Payload-Digest", EMPTY_DIGEST), ("WARC-Concurrent-To", response_id)],
            "application/http; msgtype=request", request_http))
    return b"".join(out)


def _warc_record(headers: list[tuple[str, str]], content_type: str, *block: bytes) -> bytes:
    """One WARC/1.0 record in a gzip member of its own, laid out as warcio writes it: `headers`, the block digest,
    Content-Type and Content-Length, then the block (`block`'s parts). Not warcio's writer: it took half of the
    fetch's CPU time (gzip level 9, header lists searched and rebuilt per record, payloads copied through streams);
    a test holds these records to be warcio's, byte for byte."""
    digest = hashlib.sha1()
    for part in block:
        digest.update(part)
    headers = [*headers, ("WARC-Block-Digest", _sha1(digest)), ("Content-Type", content_type),
               ("Content-Length", str(sum(map(len, block))))]
    head = "WARC/1.0\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
    gz = zlib.compressobj(WARC_GZIP_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS + 16)
    return b"".join([gz.compress(head.encode()), *map(gz.compress, block), gz.compress(b"\r\n\r\n"), gz.flush()])


def _sha1(digest: Any) -> str:
    """A WARC digest header value from a fed hashlib.sha1 object: "sha1:" and the digest in base32."""
    return "sha1:" + base64.b32encode(digest.digest()).decode("ascii")


EMPTY_DIGEST = _sha1(hashlib.sha1())  # a request record's payload


def _record_id() -> str:
    return f"<urn:uuid:{uuid.uuid4()}>"


def _warc_date() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # WARC/1.0: UTC, whole seconds


class FetchLog:
    """The WARC segments and outcome logs of one fetch task, appended link by link, resumable (module doc)."""

    def __init__(self, warc_dir: str | Path, name: str, config: FetchConfig):
        self.dir = Path(warc_dir)
        self.name = name
        self.config = config
        self.index = 0
        self.round = 0  # the round new outcomes are logged under (module doc)
        self._warc = self._journal = None

    def segment(self, index: int) -> tuple[Path, Path]:
        stem = f"{self.name}-{index:05d}"
        return self.dir / f"{stem}.warc.gz", self.dir / f"{stem}.fetch.jsonl"

    def _parts(self, index: int) -> tuple[Path, Path]:
        warc, log = self.segment(index)
        return warc.with_name(f".{warc.name}.tmp"), log.with_name(f".{log.name}.tmp")

    def finished(self) -> list[tuple[Path, Path]]:
        """(WARC, log) of every finished segment, in order."""
        out, index = [], 0
        while (seg := self.segment(index))[0].exists():
            out.append(seg)
            index += 1
        return out

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every logged outcome: the finished segments', then the open segment's."""
        for _warc, log in self.finished():
            yield from read_log(log)
        if self._journal is not None:
            yield from read_log(self._parts(self.index)[1])

    def open(self) -> list[dict[str, Any]]:
        """Open for appending after whatever an earlier run left; returns the outcomes logged so far, oldest
        first."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.index = len(self.finished())
        warc_final, log_final = self.segment(self.index)
        warc_part, log_part = self._parts(self.index)
        if log_final.exists() and warc_part.exists():  # stopped between the two renames of a finished segment
            os.replace(warc_part, warc_final)
            self.index += 1
            warc_part, log_part = self._parts(self.index)
        kept = list(read_log(log_part)) if warc_part.exists() and log_part.exists() else []
        if kept:
            with open(warc_part, "r+b") as fh:
                fh.truncate(kept[-1]["end"])  # drop records written after the last journaled link
            runtime.write_text_atomic(log_part, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in kept))
            self._warc, self._journal = open(warc_part, "ab"), open(log_part, "a", encoding="utf-8")
        else:
            self._start()
        entries = list(self.entries())
        finished = {e["url"] for e in entries if "url" in e}
        for entry in entries:  # started, never finished: in flight when the last run stopped
            if "started" in entry and entry["started"] not in finished:
                finished.add(entry["started"])
                self._write_entry({"url": entry["started"], "outcome": "interrupted", "requests": 1,
                                   "round": entry["round"], "end": self._warc.tell(), "warc_offset": None,
                                   "error": "the fetch stopped while this page was in flight"})
        return [e for e in self.entries() if "url" in e]

    def _start(self) -> None:
        """Begin segment `index` with a warcinfo record describing the crawl."""
        warc_part, log_part = self._parts(self.index)
        name = self.segment(self.index)[0].name
        info = {"software": "corpusforge webtext2 fetcher", "isPartOf": "webtext2", "robots": "obey",
                "http-header-user-agent": self.config.user_agent, "format": "WARC File Format 1.0"}
        self._warc = open(warc_part, "wb")
        self._warc.write(_warc_record([
            ("WARC-Type", "warcinfo"), ("WARC-Record-ID", _record_id()), ("WARC-Filename", name),
            ("WARC-Date", _warc_date())], "application/warc-fields",
            "".join(f"{key}: {value}\r\n" for key, value in info.items()).encode()))
        self._warc.flush()
        self._journal = open(log_part, "w", encoding="utf-8")
        self._write_entry({"warcinfo": name, "end": self._warc.tell()})

    def _write_entry(self, entry: dict[str, Any]) -> None:
        self._journal.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
        self._journal.flush()

    def begin(self, url: str) -> None:
        """Journal that `url` is about to be requested; if the run stops before its outcome, the next run logs it
        as `interrupted` instead of requesting it again (`retry_failed` does)."""
        self._write_entry({"started": url, "round": self.round, "end": self._warc.tell()})

    def append(self, exchanges: list[Exchange], outcome: dict[str, Any]) -> None:
        """Write a link's records, then its outcome line (which makes them count); rotate a full segment."""
        data = warc_records(exchanges) if exchanges else b""
        start = self._warc.tell()
        self._warc.write(data)
        self._warc.flush()
        outcome["warc_offset"] = start if data else None
        outcome["targets"] = [e.url for e in exchanges]
        outcome["end"] = self._warc.tell()
        outcome["round"] = self.round
        self._write_entry(outcome)
        if self._warc.tell() >= self.config.segment_bytes:
            self._finish()
            self.index += 1
            self._start()

    def _finish(self) -> None:
        warc_part, log_part = self._parts(self.index)
        warc_final, log_final = self.segment(self.index)
        self._warc.close()
        self._journal.close()
        self._warc = self._journal = None
        os.replace(log_part, log_final)  # log first: a WARC under its final name always has its log
        os.replace(warc_part, warc_final)

    def close(self) -> None:
        """Finish the open segment if it holds any link, else remove it."""
        if self._journal is None:
            return
        warc_part, log_part = self._parts(self.index)
        if sum(1 for e in read_log(log_part) if "url" in e):
            self._finish()
        else:
            self._warc.close()
            self._journal.close()
            self._warc = self._journal = None
            warc_part.unlink()
            log_part.unlink()

    def report(self, item: str, links: int, resumed: bool) -> runtime.FileReport:
        """The task's report, computed from the logs alone, so a resumed run reports the same counts. Outcomes and
        errors are each URL's latest; `requests` counts every request made, `retried` every outcome replaced by a
        later one."""
        report = runtime.FileReport(input=item, output=str(self.dir), resumed=resumed)
        report.count("links", links)
        latest: dict[str, tuple[Path, dict[str, Any]]] = {}
        for warc, log in self.finished():
            report.bytes_in += warc.stat().st_size
            for entry in read_log(log):
                if "url" in entry:
                    report.count("requests", entry.get("requests", 0))
                    if entry["url"] in latest:
                        report.count("retried")
                    latest[entry["url"]] = warc, entry
        for warc, entry in latest.values():
            report.count(entry["outcome"])
            if entry["outcome"] in ERROR_OUTCOMES:
                report.errors.append({
                    "file": str(warc) if entry.get("warc_offset") is not None else item,
                    "offset": entry.get("warc_offset"), "stage": "fetch", "url": entry["url"],
                    "reason": entry["outcome"] + (f": {entry['error']}" if entry.get("error") else "")})
                report.count("errors")
        return report


def read_log(path: Path) -> Iterator[dict[str, Any]]:
    """The complete lines of a log or journal (a line cut by an interruption ends it)."""
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    return
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    return
    except FileNotFoundError:
        return
