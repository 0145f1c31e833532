"""bzip2 read block by block: split one .bz2 file across workers by byte ranges, and read past damage.

A bzip2 file is one or more streams (`BZh1`..`BZh9` then blocks then an end-of-stream marker); every block starts
with the 48-bit magic 0x314159265359 at any *bit* position and decompresses on its own. So, like bzip2recover and
Hadoop's splittable bzip2 codec, we find block magics with a bit-level scan and decode each block as a one-block
stream. That gives two things the stream decoder cannot:

* a worker can start at any byte of a dump (the first block after it) - one single-stream 20 GB dump splits across a
  cluster, not only the multistream kind;
* a corrupt or truncated block costs that block only: every block before and after it still decodes, and the damage
  is reported with its byte offset.

The file may be local or on an object store (`s3://...`): it is read by seeking and reading bounded byte ranges,
which a store serves as ranged requests, so a worker reads only its share of a remote dump, and about once: the
blocks are decoded from the windows the marker scan read (`_Reader`).
"""

from __future__ import annotations

import bz2
import dataclasses
import io
import os
from collections import deque
from collections.abc import Iterator
from typing import IO

from corpusforge import storage

BLOCK_MAGIC = 0x314159265359
EOS_MAGIC = 0x177245385090  # end of stream, followed by the 32-bit combined CRC
_BLOCK, _EOS = "block", "eos"
# A block holds at most 900k bytes before bzip2's Huffman stage; its worst-case compressed size stays below this.
MAX_BLOCK_BYTES = 1_100_000
_WINDOW = 8 << 20
_OVERLAP = 7  # a 48-bit magic at any bit offset spans at most 7 bytes
_TAIL_WINDOW = 1 << 18  # the window past the caller's expected end, which usually needs one block more
_KEPT_WINDOWS = 2  # a block being decoded mostly lies in the window scanned last or the one before
_READ_AHEAD = 1 << 16  # what a remote read fetches beyond its range: the reads here are ranges already


@dataclasses.dataclass
class Block:
    """A decoded block. `pos` is the byte holding its first bit (what byte ranges are cut by); `offset` is where a
    reader seeks to find it again: the start of its stream when it is a stream's first block (the offset a
    multistream index gives), else `pos`."""

    pos: int
    offset: int
    data: bytes


@dataclasses.dataclass
class Damage:
    """A block that does not decode (corrupt, or cut off by the end of the file), at byte `pos`."""

    pos: int
    reason: str


def is_bzip2(path: str | os.PathLike) -> bool:
    """Whether the file (local or on a store) starts like a bzip2 stream."""
    with storage.open_file(path, block_size=_READ_AHEAD) as fh:
        head = fh.read(4)
    return len(head) == 4 and head[:3] == b"BZh" and head[3:4] in b"123456789"


def _patterns(magic: int) -> list[tuple[int, bytes, int, int, int, int]]:
    """For each bit shift s of the magic inside a byte-aligned buffer: the bytes it fully covers, and the masked
    values of the partial bytes before and after them (shift, middle, head value, head mask, tail value, mask)."""
    out = []
    for s in range(8):
        b = (magic << (8 - s)).to_bytes(7, "big")  # the magic starting at bit s of byte 0
        if s == 0:
            out.append((0, b[:6], 0, 0, 0, 0))
        else:
            head_mask, tail_mask = (1 << (8 - s)) - 1, (0xFF << (8 - s)) & 0xFF
            out.append((s, b[1:6], b[0] & head_mask, head_mask, b[6] & tail_mask, tail_mask))
    return out


_PATTERNS = {_BLOCK: _patterns(BLOCK_MAGIC), _EOS: _patterns(EOS_MAGIC)}


def scan_markers(data: bytes) -> list[tuple[int, str]]:
    """(bit position, "block" | "eos") of every block and end-of-stream magic in `data`, in order."""
    found = []
    for kind, patterns in _PATTERNS.items():
        for s, middle, head, head_mask, tail, tail_mask in patterns:
            i = data.find(middle, 1 if s else 0)
            while i != -1:
                if s == 0:
                    found.append((i * 8, kind))
                elif i + 5 < len(data) and data[i - 1] & head_mask == head and data[i + 5] & tail_mask == tail:
                    found.append(((i - 1) * 8 + s, kind))
                i = data.find(middle, i + 1)
    found.sort()
    return found


class _Reader:
    """Bounded reads at any offset of a file: the marker scan reads it a window at a time, and the reads of the
    blocks found are served from the last `_KEPT_WINDOWS` windows when they lie inside one (a block across two
    windows is read again), so a file on a store is fetched about once, not once for the markers and again per
    block."""

    def __init__(self, fh: IO[bytes]):
        self.fh = fh
        self.windows: deque[tuple[int, bytes]] = deque(maxlen=_KEPT_WINDOWS)

    def window(self, pos: int, size: int) -> bytes:
        data = self.read(size, pos)
        self.windows.append((pos, data))
        return data

    def read(self, size: int, pos: int) -> bytes:
        """Up to `size` bytes at `pos` (a ranged read on a store, unless a kept window holds them)."""
        for start, data in self.windows:
            if start <= pos and pos + size <= start + len(data):
                return data[pos - start:pos - start + size]
        self.fh.seek(pos)
        return self.fh.read(size)


def _markers(fh: _Reader, start: int, size: int, end: int | None) -> Iterator[tuple[int, str]]:
    """Markers at or after byte `start` of the file, scanning a window at a time (memory stays bounded); windows
    stop near `end` and go on past it a `_TAIL_WINDOW` at a time, so a range reads little beyond itself."""
    pos, last = start, -1
    while pos < size:
        data = fh.window(pos, _WINDOW if end is None else min(_WINDOW, max(end - pos, 0) + _TAIL_WINDOW))
        if not data:
            return
        for bit, kind in scan_markers(data):
            bit += pos * 8
            if bit > last:  # the windows overlap; each marker once
                last = bit
                yield bit, kind
        if pos + len(data) >= size:
            return
        pos += len(data) - _OVERLAP


def _one_block_stream(fh: _Reader, bit: int, end: int) -> bytes:
    """The bits [bit, end) of the file (one block) wrapped as a complete one-block bzip2 stream."""
    base = bit // 8
    seg = fh.read((end + 7) // 8 - base, base)
    nbits = end - bit
    val = int.from_bytes(seg, "big") >> (len(seg) * 8 - (end - base * 8)) & ((1 << nbits) - 1)
    crc = (val >> (nbits - 80)) & 0xFFFFFFFF  # the block CRC follows the magic; one block's stream CRC equals it
    stream = (((val << 48) | EOS_MAGIC) << 32) | crc
    bits = nbits + 80
    pad = -bits % 8
    return b"BZh9" + (stream << pad).to_bytes((bits + pad) // 8, "big")


def _decode(fh: _Reader, bit: int, end: int) -> tuple[bytes | None, str | None]:
    if end - bit > MAX_BLOCK_BYTES * 8:
        return None, f"no block end within {MAX_BLOCK_BYTES:,} bytes (a marker is damaged)"
    if end - bit < 48 + 32 + 24:
        return None, "block too short"
    try:
        return bz2.decompress(_one_block_stream(fh, bit, end)), None
    except (OSError, ValueError, EOFError) as exc:
        return None, str(exc) or type(exc).__name__


def _stream_offset(fh: _Reader, bit: int) -> int:
    """The stream start when the block at `bit` is the first of its stream (right after `BZh1`..`BZh9`)."""
    pos = bit // 8
    if bit % 8 == 0 and pos >= 4:
        head = fh.read(4, pos - 4)
        if head[:3] == b"BZh" and head[3:4] in b"123456789":
            return pos - 4
    return pos


def read_blocks(path: str | os.PathLike, start: int = 0, end: int | None = None) -> Iterator[Block | Damage]:
    """Every block whose first bit lies at or after byte `start` of the file (local or on a store), decoded, in file
    order, to the end of the file. `end` is where the caller expects to stop: a hint that keeps the reads of a
    range close to it (blocks after it still come, read in smaller windows, for as long as the caller iterates).

    A block that fails to decode yields a Damage (with its byte position) and reading goes on with the next block;
    a file cut inside a block ends with a Damage for that block. Stop iterating whenever you have read enough.
    """
    with storage.open_file(path, block_size=_READ_AHEAD) as raw:
        size = raw.seek(0, io.SEEK_END)
        size_bits = size * 8
        fh = _Reader(raw)
        marks = _markers(fh, start, size, end)
        ahead: deque[tuple[int, str]] = deque()

        def peek(n: int) -> list[tuple[int, str]]:
            while len(ahead) < n:
                nxt = next(marks, None)
                if nxt is None:
                    break
                ahead.append(nxt)
            return list(ahead)[:n]

        while peek(1):
            bit, kind = ahead.popleft()
            if kind != _BLOCK:
                continue
            following = peek(2)
            end = following[0][0] if following else size_bits
            data, reason = _decode(fh, bit, end)
            if reason is not None and following and following[0][1] == _BLOCK:
                # The magic can occur by chance inside compressed data (about once per 2^48 bits): try the block
                # as running across it before calling it damaged.
                data2, _ = _decode(fh, bit, following[1][0] if len(following) > 1 else size_bits)
                if data2 is not None:
                    ahead.popleft()
                    data, reason = data2, None
            if reason is None:
                yield Block(pos=bit // 8, offset=_stream_offset(fh, bit), data=data)
            elif not following:
                yield Damage(pos=bit // 8, reason=f"the file ends inside the bz2 block at byte {bit // 8:,} "
                             f"(truncated at {size:,} bytes?): {reason}")
            else:
                yield Damage(pos=bit // 8, reason=f"corrupt bz2 block at byte {bit // 8:,}: {reason}")
