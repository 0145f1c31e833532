"""The fetch's output: each link's HTTP exchanges as WARC request and response records (laid out as warcio writes
them) and `FetchLog`, the resumable WARC segments and outcome logs of one fetch task (see fetch's module doc).

The finished segments may go to an object store (`s3://...`): the open segment and its journal are then kept in a
local staging folder of the worker (named after the output, so a re-run of the task on that machine resumes
them), and a segment is uploaded whole, its log first, only when it is finished."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corpusforge import runtime, storage
from corpusforge.formats import warc_write

if TYPE_CHECKING:
    from corpusforge.sources.webtext2.fetch import FetchConfig

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


def warc_records(exchanges: list[Exchange], date: str | None = None, capture: str = "") -> bytes:
    """Gzipped WARC response+request records for the exchanges, in order, dated `date` (default now); their ids
    derive from `capture` (what names this fetch of a link) and each exchange's place in it. The stored HTTP headers
    describe the stored body: a de-chunked body loses Transfer-Encoding, and a cut body gets its real Content-Length
    (the sent values are kept as X-Crawler-Transfer-Encoding / X-Crawler-Content-Length, as Common Crawl does)."""
    date = date or warc_write.warc_date()
    out = []
    for i, ex in enumerate(exchanges):
        headers = []
        for name, value in ex.headers:
            lower = name.lower()
            if lower == "transfer-encoding" or (lower == "content-length" and value.strip() != str(len(ex.body))):
                headers.append((f"X-Crawler-{name}", value))
            else:
                headers.append((name, value))
        if ex.truncated or any(k.lower() == "x-crawler-content-length" for k, _ in headers):
            headers.append(("Content-Length", str(len(ex.body))))
        payload = warc_write.sha1_digest(ex.body)
        response_id = warc_write.record_id(capture, i, ex.url, date, payload)
        out.append(warc_write.record([
            *([("WARC-IP-Address", ex.peer)] if ex.peer else []),
            *([("WARC-Truncated", "length")] if ex.truncated else []),
            ("WARC-Type", "response"), ("WARC-Record-ID", response_id), ("WARC-Target-URI", ex.url),
            ("WARC-Date", date), ("WARC-Payload-Digest", payload)],
            "application/http; msgtype=response", warc_write.http_block(f"{ex.status} {ex.reason}".strip(), headers),
            ex.body))
        out.append(warc_write.record([
            ("WARC-Type", "request"), ("WARC-Record-ID", warc_write.record_id(response_id, "request")),
            ("WARC-Target-URI", ex.url), ("WARC-Date", date), ("WARC-Payload-Digest", warc_write.EMPTY_DIGEST),
            ("WARC-Concurrent-To", response_id)],
            "application/http; msgtype=request", warc_write.http_block(ex.request_line, ex.request_headers,
                                                                       request=True)))
    return b"".join(out)


class FetchLog:
    """The WARC segments and outcome logs of one fetch task, appended link by link, resumable (module doc)."""

    def __init__(self, warc_dir: str | Path, name: str, config: FetchConfig):
        self.dir = warc_dir if storage.is_url(warc_dir) else Path(warc_dir)
        self.work = staging_dir(warc_dir)  # where the open segment is written
        self.name = name
        self.config = config
        self.index = 0
        self.round = 0  # the round new outcomes are logged under (module doc)
        self.order: dict[str, int] = {}  # each URL's place in the link file: the order of a finished segment
        self._warc = self._journal = None

    def segment(self, index: int) -> tuple[Any, Any]:
        """The final (WARC, log) of segment `index`: paths, or URLs on a store."""
        stem = f"{self.name}-{index:05d}"
        return storage.join(self.dir, f"{stem}.warc.gz"), storage.join(self.dir, f"{stem}.fetch.jsonl")

    def _parts(self, index: int) -> tuple[Path, Path]:
        warc, log = (storage.name(p) for p in self.segment(index))
        return self.work / f".{warc}.tmp", self.work / f".{log}.tmp"

    def _sorted(self, index: int) -> Path:
        """Where a finishing segment's WARC is written in link order before it takes its final name."""
        return self.work / f".{storage.name(self.segment(index)[0])}.sorted"

    def _date(self) -> str:
        return self.config.capture_time or warc_write.warc_date()

    def finished(self) -> list[tuple[Any, Any]]:
        """(WARC, log) of every finished segment, in order."""
        out, index = [], 0
        while storage.exists((seg := self.segment(index))[0]):
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
        storage.makedirs(self.dir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.index = len(self.finished())
        warc_final, log_final = self.segment(self.index)
        warc_part, log_part = self._parts(self.index)
        if self._sorted(self.index).exists() and storage.exists(log_final):  # stopped while giving it its name
            storage.move(self._sorted(self.index), warc_final)
            warc_part.unlink(missing_ok=True)
            log_part.unlink(missing_ok=True)
            self.index += 1
            warc_part, log_part = self._parts(self.index)
        self._sorted(self.index).unlink(missing_ok=True)  # a sorted copy cut short: the segment is still open
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
        name = storage.name(self.segment(self.index)[0])
        info = {"software": "corpusforge webtext2 fetcher", "isPartOf": "webtext2", "robots": "obey",
                "http-header-user-agent": self.config.user_agent, "format": "WARC File Format 1.0"}
        self._warc = open(warc_part, "wb")
        date = self._date()
        self._warc.write(warc_write.record([
            ("WARC-Type", "warcinfo"), ("WARC-Record-ID", warc_write.record_id(name, date)), ("WARC-Filename", name),
            ("WARC-Date", date)], "application/warc-fields",
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
        capture = (storage.name(self.segment(self.index)[0]), self.round, outcome["url"])
        data = warc_records(exchanges, self._date(), " ".join(map(str, capture))) if exchanges else b""
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
        """Give the open segment its final names, its links' records and log lines in link-file order (round by
        round), not in the order the concurrent fetch happened to finish them: the same fetch is the same bytes.
        The sorted WARC is written beside the open one; the log is renamed first, so a WARC under its final name
        always has its log (`open` completes a segment stopped in between)."""
        warc_part, log_part = self._parts(self.index)
        warc_final, log_final = self.segment(self.index)
        self._warc.close()
        self._journal.close()
        self._warc = self._journal = None
        entries = list(read_log(log_part))
        head, body = entries[0], entries[1:]  # the warcinfo record's line first

        def place(entry: dict[str, Any]) -> tuple[int, int, str, int]:
            url = entry.get("url") or entry["started"]
            return entry.get("round", 0), self.order.get(url, len(self.order)), url, "url" in entry

        lines = [head]
        with open(warc_part, "rb") as source, open(self._sorted(self.index), "wb") as out:
            out.write(source.read(head["end"]))
            for entry in sorted(body, key=place):
                if entry.get("warc_offset") is not None:  # the link's records, [warc_offset, end) in the open file
                    source.seek(entry["warc_offset"])
                    entry["warc_offset"] = out.tell()
                    _copy(source, out, entry["end"] - source.tell())
                entry["end"] = out.tell()
                lines.append(entry)
            out.flush()
            os.fsync(out.fileno())
        runtime.write_text_atomic(log_final, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in lines))
        warc_part.unlink()
        log_part.unlink()
        storage.move(self._sorted(self.index), warc_final)

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
        latest: dict[str, tuple[Any, dict[str, Any]]] = {}
        for warc, log in self.finished():
            report.bytes_in += storage.size(warc)
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


def _copy(source, out, size: int) -> None:
    """Copy `size` bytes from `source` to `out` (1 MiB at a time)."""
    while size > 0:
        chunk = source.read(min(size, 1 << 20))
        if not chunk:
            raise OSError(f"{source.name}: ends {size} bytes before its journal says")
        out.write(chunk)
        size -= len(chunk)


def staging_dir(warc_dir: str | os.PathLike) -> Path:
    """Where a fetch task writes its open segment: the WARC folder itself on a local disk; for a store, a local
    folder named after the store's folder, the same on every run on this machine (so it resumes there)."""
    if not storage.is_url(warc_dir):
        return Path(warc_dir)
    key = hashlib.sha1(str(warc_dir).rstrip("/").encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "corpusforge-fetch" / key


def read_log(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The complete lines of a log or journal, local or on a store (a line cut by an interruption ends it)."""
    if storage.is_url(path) and not storage.exists(path):
        return
    try:
        with storage.open_file(path) as raw, io.TextIOWrapper(raw, encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    return
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    return
    except FileNotFoundError:
        return
