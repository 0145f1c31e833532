"""Pushshift submission dumps (`RS_YYYY-MM.zst`: zstandard-compressed NDJSON, one submission per line) as candidate
links, as OpenWebText2 read them: streamed line by line, one Dask task per dump.

Real dumps are compressed with a long window (`zstd --long=31`), so the decompressor needs max_window_size=2**31.
The older `.bz2` and `.xz` dumps, `.gz` and plain `.ndjson` read the same way. A malformed line is counted and
reported with its byte offset in the uncompressed stream, and reading goes on; a damaged or truncated stream is
reported where it broke, keeping what was read before it.
"""

from __future__ import annotations

import bz2
import collections
import contextlib
import glob
import gzip
import itertools
import json
import lzma
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from corpusforge import runtime
from corpusforge.sources.webtext2 import links
from corpusforge.sources.webtext2.urls import LinkFields, LinkFilter, LinkRules

ZSTD_MAX_WINDOW = 2**31
CHUNK = 1 << 16  # compressed bytes per read: the decompressed chunk (ratio x CHUNK) stays small, in cache


class DamagedStream(ValueError):
    """The compressed stream is corrupt or ends inside a frame."""


def expand_inputs(patterns: list[str]) -> list[str]:
    """Paths from paths and globs, sorted, without repeats; a pattern that matches nothing is an error."""
    paths: list[str] = []
    for pattern in patterns:
        if "://" in pattern:
            paths.append(pattern)
            continue
        matched = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matched or not all(Path(p).exists() for p in matched):
            raise FileNotFoundError(f"no Pushshift dump matches {pattern!r}")
        paths.extend(matched)
    return list(dict.fromkeys(paths))


class _Counting:
    """A binary reader that counts the bytes read through it (the compressed size of the input)."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.bytes = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.bytes += len(data)
        return data

    def readable(self) -> bool:
        return True


def _zstd_chunks(raw: _Counting) -> Iterator[bytes]:
    """Decompressed chunks of a zstandard stream of one or more frames; DamagedStream if it ends inside a frame."""
    import zstandard

    dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    dobj, in_frame = dctx.decompressobj(), False
    while data := raw.read(CHUNK):
        while data:
            try:
                out = dobj.decompress(data)
            except zstandard.ZstdError as exc:
                raise DamagedStream(f"zstandard: {exc}") from None
            in_frame = True
            if out:
                yield out
            if dobj.eof:  # a frame ended: the rest of the input starts the next one
                data, dobj, in_frame = dobj.unused_data, dctx.decompressobj(), False
            else:
                data = b""
    if in_frame:
        raise DamagedStream("zstandard: stream ends inside a frame (truncated file)")


def _decompressed_chunks(path: str, raw: _Counting) -> Iterator[bytes]:
    name = path.lower()
    if name.endswith((".zst", ".zstd")):
        yield from _zstd_chunks(raw)
        return
    opener = {".bz2": bz2.open, ".xz": lzma.open, ".lzma": lzma.open, ".gz": gzip.open}.get(Path(name).suffix)
    stream = opener(raw) if opener else raw
    try:
        while data := stream.read(CHUNK):
            yield data
    except (EOFError, OSError, lzma.LZMAError) as exc:
        raise DamagedStream(f"{type(exc).__name__}: {exc}") from None


def read_submissions(path: str, report: runtime.FileReport,
                     fields: type | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (byte offset in the uncompressed stream, record) for each JSON object line of a dump.

    `fields`: a TypedDict of the fields wanted (urls.LinkFields); the rest of each line is skipped without building
    it, several times faster than decoding whole records (None: every field). Malformed lines, non-object lines and
    a damaged stream are reported on `report` (stage "read") and skipped.
    """
    import fsspec
    import msgspec

    decode = msgspec.json.Decoder(fields or dict).decode
    with fsspec.open(path, "rb") as fh:
        raw = _Counting(fh)
        offset, pending = 0, b""  # offset of the first byte of `pending` in the uncompressed stream
        try:
            # The b"\n" ends a last line that has none (a damaged stream stops before it, losing that partial line).
            for chunk in itertools.chain(_decompressed_chunks(path, raw), [b"\n"]):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    try:
                        if not line.isascii():
                            line.decode()  # msgspec does not check the UTF-8 of the fields it skips; json did
                        record = decode(line)
                    except ValueError:
                        record = _parse_strictly(line, offset, report)
                    if record is not None:
                        yield offset, record
                    offset += len(line) + 1
        except DamagedStream as exc:
            report.error(f"damaged stream after {offset + len(pending):,} uncompressed bytes: {exc}",
                         offset=offset + len(pending))
        finally:
            report.bytes_in += raw.bytes


def _parse_strictly(line: bytes, offset: int, report: runtime.FileReport) -> dict[str, Any] | None:
    """A line the fast decoder refused, read by the json module as before: the record when it is one (json also
    takes NaN, a BOM, lone surrogates), else None after reporting why it is not. Blank lines are skipped."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except ValueError as exc:
        report.error(f"malformed JSON line: {type(exc).__name__}: {exc}"[:300], offset=offset)
        return None
    if not isinstance(record, dict):
        report.error(f"JSON line is a {type(record).__name__}, not a submission object", offset=offset)
        return None
    return record


def write_dump(path: str | Path, records: list[dict[str, Any]]) -> int:
    """Write `records` as a Pushshift dump: NDJSON compressed like the real ones (zstd with a 2 GiB window, no
    content size, so readers need max_window_size=2**31). Atomic; returns the compressed size."""
    import zstandard

    params = zstandard.ZstdCompressionParameters.from_level(10, window_log=31, write_content_size=0)
    with runtime.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        with zstandard.ZstdCompressor(compression_params=params).stream_writer(fh, closefd=False) as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        return fh.tell()


def scan_dump(item: str, out_dir: str, rules: LinkRules) -> runtime.FileReport:
    """Per-file Dask task: the candidate links of one dump, written as a unit under `out_dir` (resumed if done)."""
    unit_dir = Path(out_dir) / runtime.output_name(item, "")
    done = links.load_unit(unit_dir, item)
    if done is not None:
        return done[0]
    t0 = time.perf_counter()
    report = runtime.FileReport(input=item, output=str(unit_dir))
    check = LinkFilter(rules).check
    reasons: collections.Counter[str | None] = collections.Counter()  # drop reasons, None for a candidate
    with links.UnitWriter(unit_dir, rules.buckets) as writer:
        for offset, record in read_submissions(item, report, LinkFields):
            url, reason = check(record)
            reasons[reason] += 1
            if url is not None:
                writer.add(links.candidate_row(record, url, item, offset))
        for reason, n in reasons.items():
            report.count(f"dropped_{reason}" if reason else "candidates", n)
        if reasons:
            report.count("submissions", reasons.total())
        report.seconds = time.perf_counter() - t0
        writer.finish(report)
    return report


def collect(inputs: list[str], links_dir: str | Path, rules: LinkRules, *, client: Any = None,
            scheduler: str | None = None, workers: int | None = None, console: Any = None) -> runtime.StageSummary:
    """Pushshift dumps (paths or globs) -> the link table in `links_dir`, one Dask task per dump."""
    files = expand_inputs(inputs)
    unit_root = links.candidates_dir(links_dir, rules)
    with runtime.dask_client(scheduler, workers) if client is None else contextlib.nullcontext(client) as client:
        summary, reports = runtime.map_files(scan_dump, files, unit_root, rules, stage="webtext2 links (pushshift)",
                                             client=client, kept_key="candidates", console=console)
        summary.stage = "webtext2 links"
        return links.build_link_table([r.output or "" for r in reports if r.output], links_dir, rules, summary,
                                      [e for r in reports for e in r.errors], client=client, console=console)

