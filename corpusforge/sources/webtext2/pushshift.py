"""Pushshift submission dumps (`RS_YYYY-MM.zst`: zstandard-compressed NDJSON, one submission per line) as candidate
links, as OpenWebText2 read them: streamed line by line, one Dask task per dump.

Real dumps are compressed with a long window (`zstd --long=31`), so the decompressor needs max_window_size=2**31.
The older `.bz2` and `.xz` dumps, `.gz` and plain `.ndjson` read the same way. A malformed line is counted and
reported with its byte offset in the uncompressed stream, and reading goes on; a damaged or truncated stream is
reported where it broke, keeping what was read before it.
"""

from __future__ import annotations

import collections
import glob
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from corpusforge import decompress, runtime
from corpusforge.sources.webtext2 import links
from corpusforge.sources.webtext2.urls import LinkFields, LinkFilter, LinkRules

CHUNK = 1 << 16  # compressed bytes per read


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
        if any(Path(p).is_dir() for p in matched):
            raise IsADirectoryError(f"{pattern} is a folder; give the dumps in it, e.g. '{pattern}/RS_*.zst'")
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


def _decompressed_chunks(path: str, raw: _Counting) -> Iterator[bytes]:
    """The dump's uncompressed bytes in bounded pieces (decompress.decompress_chunks: no piece is larger than
    decompress.CHUNK however well the data compressed); DamagedStream where the stream breaks."""
    chunks = iter(lambda: raw.read(CHUNK), b"")
    codec = decompress.codec_for_name(path)
    return decompress.decompress_chunks(chunks, codec) if codec else chunks


def read_submissions(path: str, report: runtime.FileReport, fields: type | None = None,
                     max_line_bytes: int = LinkRules.max_line_bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (byte offset in the uncompressed stream, record) for each JSON object line of a dump.

    `fields`: a TypedDict of the fields wanted (urls.LinkFields); the rest of each line is skipped without building
    it, several times faster than decoding whole records (None: every field). Malformed lines, non-object lines, a
    line longer than `max_line_bytes` (skipped without being held: a dump of one endless line costs no memory) and
    a damaged stream are reported on `report` (stage "read", with the line's offset) and skipped.
    """
    import fsspec
    import msgspec

    decode = msgspec.json.Decoder(fields or dict).decode
    with fsspec.open(path, "rb") as fh:
        raw = _Counting(fh)
        pos = 0  # offset of the current chunk in the uncompressed stream
        line_start, pending, too_long = 0, bytearray(), False
        try:
            # The b"\n" ends a last line that has none (a damaged stream stops before it, losing that partial line).
            for chunk in itertools.chain(_decompressed_chunks(path, raw), [b"\n"]):
                start = 0
                while (end := chunk.find(b"\n", start)) >= 0:
                    length = pos + end - line_start
                    if too_long or length > max_line_bytes:
                        report.error(f"line of {length:,} bytes is longer than max_line_bytes ({max_line_bytes:,}); "
                                     "skipped", offset=line_start)
                        report.count("dropped_long_lines")
                    else:
                        line = bytes(pending) + chunk[start:end] if pending else chunk[start:end]
                        record = _parse(line, decode, line_start, report)
                        if record is not None:
                            yield line_start, record
                    pending.clear()
                    too_long, start, line_start = False, end + 1, pos + end + 1
                if not too_long:
                    pending += chunk[start:]
                    if len(pending) > max_line_bytes:
                        too_long = True
                        pending.clear()
                pos += len(chunk)
        except decompress.DamagedStream as exc:
            report.error(f"damaged stream after {pos:,} uncompressed bytes: {exc}", offset=pos)
        finally:
            report.bytes_in += raw.bytes
        if pos <= 1 and raw.bytes == 0:
            report.error("empty file: no submission in it", offset=0)


def _parse(line: bytes, decode, offset: int, report: runtime.FileReport) -> dict[str, Any] | None:
    """One line's record, or None (reported) when it is not one."""
    try:
        if not line.isascii():
            line.decode()  # msgspec does not check the UTF-8 of the fields it skips; json did
        return decode(line)
    except ValueError:
        return _parse_strictly(line, offset, report)
    except RecursionError:
        report.error("JSON line nested too deeply", offset=offset)
        return None


def _parse_strictly(line: bytes, offset: int, report: runtime.FileReport) -> dict[str, Any] | None:
    """A line the fast decoder refused, read by the json module as before: the record when it is one (json also
    takes NaN, a BOM, lone surrogates), else None after reporting why it is not. Blank lines are skipped."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except RecursionError:
        report.error("JSON line nested too deeply", offset=offset)
        return None
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
    files = expand_inputs(inputs)
    unit_root = links.candidates_dir(links_dir, rules)
    with ctx.dask() as client:
        summary, reports = runtime.map_files(scan_dump, files, unit_root, rules, stage="webtext2 links (pushshift)",
                                             ctx=ctx, kept_key="candidates")
        summary.stage = "webtext2 links"
        return links.build_link_table([r.output or "" for r in reports if r.output], links_dir, rules, summary,
                                      [e for r in reports for e in r.errors], client=client, console=ctx.console)
