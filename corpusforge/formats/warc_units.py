"""A compressed WARC file as a sequence of units that decompress on their own: gzip members or zstd frames (the IIPC
WARC-zstd format, with its dictionary), each read a bounded piece at a time (a few hundred bytes can decompress to
gigabytes), and `FrameStream`, the units from an offset on as one stream that knows which unit each byte came from.
`formats.warc` reads records through them."""

from __future__ import annotations

import bisect
import dataclasses
import re
import zlib
from collections.abc import Callable
from typing import Any

import zstandard

from corpusforge.runtime import FileReport

READ_CHUNK = 1 << 16  # compressed bytes read at a time
# The IIPC WARC-zstd format: zstd frames, after an optional dictionary frame (a skippable frame, 0x184D2A5D) whose
# data is a zstd dictionary (magic 0xEC30A437), or one zstd frame holding one.
ZSTD_FRAME = b"\x28\xb5\x2f\xfd"
ZSTD_DICTIONARY_FRAME = b"\x5d\x2a\x4d\x18"
ZSTD_DICTIONARY = b"\x37\xa4\x30\xec"
ZSTD_MAX_DICTIONARY = 1 << 26  # 8 times the spec's 8 MiB: a size field beyond it is damage, not a dictionary


def member_complete(fh, start: int, size: int) -> bool:
    """Whether the gzip member at `start` ends before the end of the file (read through, a bounded piece at a
    time)."""
    member = GzipMember(fh, start, size)
    try:
        while member.read(READ_CHUNK):
            pass
    except zlib.error:
        return False
    return member.end is not None


@dataclasses.dataclass(frozen=True)
class Codec:
    """A compressed WARC as a sequence of units that decompress on their own (gzip members, zstd frames)."""

    name: str
    unit: str
    start: re.Pattern[bytes]  # where a unit can start
    open: Callable[[Any, int, int], Any]  # (file, offset, file size) -> the unit there (read(n), end)
    head: Callable[[Any], bytes]  # the first decompressed bytes of the unit at a file's position; raises if damaged
    nonchunked: str  # the counter of units that hold several records


class GzipMember:
    """The gzip member at `start`, decompressed at most `size` bytes per read. `end`: the offset after it, once read
    to its end (None before, and when the file ends inside it)."""

    def __init__(self, fh, start: int, file_size: int) -> None:
        fh.seek(start)
        self._fh = fh
        self._read_to = start  # file offset after the compressed bytes read
        self._decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.end: int | None = None

    def read(self, size: int) -> bytes:
        while not self._decompressor.eof:
            data = self._decompressor.unconsumed_tail
            if not data:
                data = self._fh.read(READ_CHUNK)
                self._read_to += len(data)
            if not data:
                return b""
            out = self._decompressor.decompress(data, size)
            if out:
                return out
        self.end = self._read_to - len(self._decompressor.unused_data)
        return b""


def gzip_head(fh) -> bytes:
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(fh.read(8192), 4096)


GZIP = Codec("gzip", "member", re.compile(rb"\x1f\x8b\x08"), GzipMember, gzip_head, "nonchunked_gzip_streams")


class ZstdFrame:
    """The zstd frame at `start`, decompressed at most `size` bytes per read (zstd's decompressobj has no such limit,
    and a frame of zeros decompresses 30,000-fold), or a skippable frame, which holds nothing. `end`, the offset after
    it, comes from its headers (None when the file ends inside it), so it is read from its own bytes only."""

    def __init__(self, fh, start: int, file_size: int, decompressor: zstandard.ZstdDecompressor) -> None:
        fh.seek(start)
        head = fh.read(18)  # the longest frame header
        if len(head) >= 8 and head[0] & 0xF0 == 0x50 and head[1:4] == b"\x2a\x4d\x18":  # 0x184D2A5?: skippable
            self.end, self._reader = start + 8 + int.from_bytes(head[4:8], "little"), None
        else:
            self.end = zstd_frame_end(fh, start, head)
            fh.seek(start)
            length = min(self.end or file_size, file_size) - start
            self._reader = decompressor.stream_reader(Window(fh, length), read_size=min(length, READ_CHUNK),
                                                      closefd=False)
        if self.end is not None and self.end > file_size:
            self.end = None

    def read(self, size: int) -> bytes:
        return self._reader.read(size) if self._reader is not None else b""


class Window:
    """The next `length` bytes of a file: a zstd frame's own bytes, so that its reader does not go on to the next."""

    def __init__(self, fh, length: int) -> None:
        self._fh = fh
        self._left = length

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(self._left if size < 0 else min(size, self._left))
        self._left -= len(data)
        return data


def zstd_frame_end(fh, start: int, head: bytes) -> int | None:
    """Where the zstd frame at `start` ends, from its header and its blocks' 3-byte headers (RFC 8878 3.1.1: a
    last-block flag, the type, the size; an RLE block holds one byte), then the optional checksum."""
    pos = start + zstandard.frame_header_size(head)  # raises on a damaged header
    while True:
        fh.seek(pos)
        block = fh.read(3)
        if len(block) < 3:
            return None
        header = int.from_bytes(block, "little")
        pos += 3 + (1 if (header >> 1) & 3 == 1 else header >> 3)
        if header & 1:
            return pos + (4 if head[4] & 0x04 else 0)


def zstd_codec(fh, report: FileReport) -> tuple[Codec | None, int]:
    """How to read a zstd WARC: the codec of its frames, with the dictionary of its dictionary frame if it starts
    with one, and where its first frame starts. No codec (reported) when the frames need a dictionary that the file
    does not give in readable form: no record could be read."""
    fh.seek(0)
    head = fh.read(8)
    dictionary, start, problem = None, 0, None
    if head.startswith(ZSTD_DICTIONARY_FRAME):
        size = int.from_bytes(head[4:8], "little")
        start = 8 + size
        try:
            if size > ZSTD_MAX_DICTIONARY:
                raise ValueError(f"it says it holds {size:,} bytes")
            dictionary = zstd_dictionary(fh.read(size))
        except (zstandard.ZstdError, ValueError) as exc:
            problem = f"its dictionary frame is unreadable ({exc})"
    fh.seek(start)
    try:
        needed = zstandard.get_frame_parameters(fh.read(18)).dict_id  # 18: the longest frame header
    except zstandard.ZstdError:
        needed = 0  # no frame header there: reading the frames reports what is there
    have = dictionary.dict_id() if dictionary is not None else 0
    if needed and needed != have:
        why = problem or ("the file has no dictionary frame" if dictionary is None
                          else f"its dictionary frame holds dictionary {have}")
        report.error(f"zstd frames need dictionary {needed}, but {why}: no record can be read", offset=0, stage="read")
        return None, start
    if problem:  # and the frames do not need it
        report.error(f"zstd: {problem}", offset=0, stage="read")
    decompressor = zstandard.ZstdDecompressor(dict_data=dictionary)

    def open_frame(f, offset: int, file_size: int) -> ZstdFrame:
        return ZstdFrame(f, offset, file_size, decompressor)

    def head_of(f) -> bytes:
        return decompressor.stream_reader(f, read_across_frames=False, closefd=False).read(4096)

    return Codec("zstd", "frame", re.compile(re.escape(ZSTD_FRAME)), open_frame, head_of,
                  "nonchunked_zstd_frames"), start


def zstd_dictionary(data: bytes) -> zstandard.ZstdCompressionDict:
    """The dictionary in a dictionary frame's data: a zstd dictionary, or one zstd frame holding one."""
    if data.startswith(ZSTD_FRAME):
        data = zstandard.ZstdDecompressor().decompress(data, max_output_size=ZSTD_MAX_DICTIONARY)
    if not data.startswith(ZSTD_DICTIONARY):
        raise ValueError("it holds no zstd dictionary")
    dictionary = zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_FULLDICT)
    zstandard.ZstdDecompressor(dict_data=dictionary).decompressobj()  # loads it: a damaged one fails here, once
    return dictionary


class FrameStream:
    """The gzip members or zstd frames from `start` on, decompressed as one stream (`read`, `tell`), and where each
    decompressed byte came from (`locate`). A read gives at most the bytes asked for, however well they compressed.
    Where the file ends inside a unit, reading stops after what could be decompressed and `truncated` is set
    (gzip.GzipFile would raise and drop its buffer, and warcio takes that EOFError for a clean end). A unit that
    fails to decompress raises its error (kept in `error`, at `error_frame`) only once everything before it has been
    read, so the records before a damaged frame are kept."""

    def __init__(self, fh, start: int, codec: Codec) -> None:
        self._fh = fh
        self._codec = codec
        self._size = fh.seek(0, 2)
        self._unit = None
        self._next = start  # file offset of the next unit
        self._pos = 0  # decompressed bytes read
        self._units: list[tuple[int, int]] = []  # (decompressed offset, file offset) of the units not yet passed
        self.frame_start = start  # file offset of the unit being read
        self.truncated = False
        self.error: Exception | None = None
        self.error_frame: int | None = None

    def read(self, size: int = READ_CHUNK) -> bytes:
        while self.error is None and not self.truncated:
            try:
                if self._unit is None:
                    if self._next >= self._size:
                        return b""
                    self.frame_start = self._next
                    self._units.append((self._pos, self._next))
                    self._unit = self._codec.open(self._fh, self._next, self._size)
                data = self._unit.read(size)
            except (zlib.error, zstandard.ZstdError) as exc:
                self.error, self.error_frame = exc, self.frame_start
                break
            if data:
                self._pos += len(data)
                return data
            if self._unit.end is None:  # the unit stopped short: the file ends inside it
                self.truncated = True
                return b""
            self._next, self._unit = self._unit.end, None
        if self.error is not None:
            raise self.error
        return b""

    def tell(self) -> int:
        return self._pos

    def locate(self, pos: int) -> tuple[int, int]:
        """The file offset of the unit that decompressed position `pos` came from, and how far into that unit's
        decompressed data it lies (0 for a record that starts its unit, as the WARC-zstd spec has every record).
        Positions are asked in increasing order, so the units before are forgotten."""
        i = max(bisect.bisect_right(self._units, (pos, float("inf"))) - 1, 0)
        del self._units[:i]
        unit_pos, offset = self._units[0] if self._units else (0, self.frame_start)
        return offset, pos - unit_pos
