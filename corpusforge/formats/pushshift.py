"""Pushshift dumps (`RS_YYYY-MM.zst`: zstandard-compressed NDJSON, one submission per line): read line by line with
bounded memory, and written as the real ones are.

Real dumps are compressed with a long window (`zstd --long=31`), so the decompressor needs max_window_size=2**31.
The older `.bz2` and `.xz` dumps, `.gz` and plain `.ndjson` read the same way. A malformed line is counted and
reported with its byte offset in the uncompressed stream, and reading goes on; a damaged or truncated stream is
reported where it broke, keeping what was read before it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from corpusforge import decompress
from corpusforge.runtime import FileReport, atomic_path

CHUNK = 1 << 16  # compressed bytes per read
MAX_LINE_BYTES = 16 << 20  # a longer dump line is reported and skipped unread


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


def read_submissions(path: str, report: FileReport, fields: type | None = None, max_line_bytes: int = MAX_LINE_BYTES,
                     what: str = "submission") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (byte offset in the uncompressed stream, record) for each JSON object line of a dump.

    `fields`: a TypedDict of the fields wanted (e.g. webtext2's urls.LinkFields); the rest of each line is skipped without building
    it, several times faster than decoding whole records (None: every field). Malformed lines, non-object lines, a
    line longer than `max_line_bytes` (skipped without being held: a dump of one endless line costs no memory) and
    a damaged stream are reported on `report` (stage "read", with the line's offset) and skipped. `what` names a
    record in those reports (any JSON Lines file reads the same way: corpusforge import).
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
                        record = _parse(line, decode, line_start, report, what)
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
            report.error(f"empty file: no {what} in it", offset=0)


def _parse(line: bytes, decode, offset: int, report: FileReport, what: str) -> dict[str, Any] | None:
    """One line's record, or None (reported) when it is not one."""
    try:
        if not line.isascii():
            line.decode()  # msgspec does not check the UTF-8 of the fields it skips; json did
        return decode(line)
    except ValueError:
        return _parse_strictly(line, offset, report, what)
    except RecursionError:
        report.error("JSON line nested too deeply", offset=offset)
        return None


def _parse_strictly(line: bytes, offset: int, report: FileReport, what: str) -> dict[str, Any] | None:
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
        report.error(f"JSON line is a {type(record).__name__}, not a {what} object", offset=offset)
        return None
    return record


def write_dump(path: str | Path, records: list[dict[str, Any]]) -> int:
    """Write `records` as a Pushshift dump: NDJSON compressed like the real ones (zstd with a 2 GiB window, no
    content size, so readers need max_window_size=2**31). Atomic; returns the compressed size."""
    import zstandard

    params = zstandard.ZstdCompressionParameters.from_level(10, window_log=31, write_content_size=0)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        with zstandard.ZstdCompressor(compression_params=params).stream_writer(fh, closefd=False) as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        return fh.tell()
