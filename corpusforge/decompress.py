"""Bounded decompression: gzip, deflate, bzip2, xz, zstd and brotli streams decoded a bounded piece at a time, with
an optional limit on the total output, so that no input of a few hundred bytes can become gigabytes in memory.

Every reader of compressed input that is not a WARC container (book files, Pushshift dumps, HTTP bodies such as
robots.txt and `Content-Encoding: br` pages) goes through `decompress_chunks`. Concatenated streams (gzip members,
zstd frames, bzip2/xz streams) are read one after another; zero bytes after the last stream are padding. A stream
that is corrupt or cut short raises DamagedStream after everything decoded before the damage was yielded; output
beyond `limit` raises OutputLimit after the first `limit` bytes were yielded, so the caller keeps or drops them and
reports the cut.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Iterable, Iterator

CHUNK = 1 << 16  # output bytes per piece
# zstd's decompressobj has no output bound; fed this many input bytes at a time it gives at most 32 MiB (a 4-byte
# RLE block holds 128 KiB), and real data streams through just as fast.
_ZSTD_FEED = 1024
ZSTD_MAX_WINDOW = 2**31  # Pushshift dumps are written with `zstd --long=31`
SUFFIXES = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".lzma": "xz", ".zst": "zstd", ".zstd": "zstd"}
# HTTP Content-Encoding values (RFC 9110; x-gzip as browsers accept it) -> codec.
CONTENT_ENCODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate", "br": "br", "zstd": "zstd",
                     "identity": None, "": None}


class DamagedStream(ValueError):
    """The compressed stream is corrupt or ends inside a stream (a truncated file)."""


class OutputLimit(ValueError):
    """The decompressed output passed its limit; what came before it was yielded."""

    def __init__(self, limit: int):
        super().__init__(f"decompressed output larger than {limit:,} bytes")
        self.limit = limit


def codec_for_name(name: str) -> str | None:
    """The codec of a file by its suffix (.gz .bz2 .xz .lzma .zst .zstd), or None for a plain file."""
    name = name.lower()
    return next((codec for suffix, codec in SUFFIXES.items() if name.endswith(suffix)), None)


class _Zlib:
    """gzip (wbits 16+), zlib or raw deflate: zlib keeps the unconsumed input for the caller."""

    def __init__(self, wbits: int):
        self._d = zlib.decompressobj(wbits)
        self._tail = b""

    def feed(self, data: bytes) -> None:
        self._tail = data

    def pull(self, n: int) -> bytes:
        if self._d.eof:
            return b""
        out = self._d.decompress(self._tail, n)
        self._tail = self._d.unconsumed_tail
        return out

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused(self) -> bytes:
        return self._d.unused_data


class _Buffered:
    """bzip2 and xz: the decompressor keeps the unconsumed input itself (`needs_input`)."""

    def __init__(self, make):
        self._d = make()
        self._pending = b""

    def feed(self, data: bytes) -> None:
        self._pending = data

    def pull(self, n: int) -> bytes:
        if self._d.eof or (self._d.needs_input and not self._pending):
            return b""
        data, self._pending = self._pending, b""
        return self._d.decompress(data, n)

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused(self) -> bytes:
        return self._d.unused_data


class _Brotli:
    """brotli: `output_buffer_limit` bounds each step; new input only once the decompressor asks for it."""

    def __init__(self):
        import brotli

        self._d = brotli.Decompressor()
        self._pending = b""

    def feed(self, data: bytes) -> None:
        self._pending = data

    def pull(self, n: int) -> bytes:
        if self._d.is_finished():
            return b""
        data = b""
        if self._d.can_accept_more_data():
            data, self._pending = self._pending, b""
        return self._d.process(data, output_buffer_limit=n)

    @property
    def eof(self) -> bool:
        return self._d.is_finished()

    @property
    def unused(self) -> bytes:
        return self._pending


class _Zstd:
    """zstd: fed a little input at a time (see _ZSTD_FEED), its output handed out in pieces."""

    def __init__(self):
        import zstandard

        self._d = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).decompressobj()
        self._input = memoryview(b"")
        self._out = b""
        self._at = 0

    def feed(self, data: bytes) -> None:
        self._input = memoryview(data)

    def pull(self, n: int) -> bytes:
        while self._at >= len(self._out) and len(self._input) and not self._d.eof:
            piece, self._input = self._input[:_ZSTD_FEED], self._input[_ZSTD_FEED:]
            self._out, self._at = self._d.decompress(piece), 0
        out = self._out[self._at:self._at + n]  # an offset, not a shorter copy of the rest each time
        self._at += len(out)
        return out

    @property
    def eof(self) -> bool:
        return self._d.eof and self._at >= len(self._out)

    @property
    def unused(self) -> bytes:
        return self._d.unused_data + bytes(self._input)


def stepper(codec: str):
    """One stream's decompressor: `feed(data)`, then `pull(n)` (at most n bytes; b"" when it needs input), `eof`,
    `unused` (input after its end). For readers with their own loop, such as warcio's."""
    if codec == "gzip":
        return _Zlib(16 + zlib.MAX_WBITS)
    if codec == "deflate":
        return _Zlib(zlib.MAX_WBITS)
    if codec == "raw-deflate":
        return _Zlib(-zlib.MAX_WBITS)
    if codec == "bz2":
        return _Buffered(bz2.BZ2Decompressor)
    if codec == "xz":
        return _Buffered(lzma.LZMADecompressor)
    if codec == "zstd":
        return _Zstd()
    if codec == "br":
        return _Brotli()
    raise ValueError(f"unknown compression {codec!r}")


def _damage_types() -> tuple[type[BaseException], ...]:
    import zstandard

    types: list[type[BaseException]] = [zlib.error, OSError, EOFError, lzma.LZMAError, zstandard.ZstdError]
    try:
        import brotli

        types.append(brotli.error)
    except ImportError:  # brotli is a dependency; without it `br` is refused above
        pass
    return tuple(types)


def decompress_chunks(chunks: Iterable[bytes], codec: str, *, limit: int | None = None,
                      piece: int = CHUNK) -> Iterator[bytes]:
    """Decompressed pieces of at most `piece` bytes from the compressed `chunks` (`codec`: gzip, deflate, bz2, xz,
    zstd, br). Raises DamagedStream where the data is corrupt or ends inside a stream, OutputLimit once the output
    passes `limit` bytes (both after yielding everything decoded before)."""
    damage = _damage_types()
    single = codec in ("br", "deflate")  # no concatenation: bytes after the end are not ours
    dec = stepper(codec)
    started = False  # the current stream has been given input
    produced = 0
    for data in chunks:
        if not started and produced:
            data = data.lstrip(b"\0")  # padding after a finished stream
        if not data:
            continue
        dec.feed(data)
        started = True
        while True:
            try:
                out = dec.pull(piece)
            except damage as exc:
                if codec == "deflate" and not produced:
                    # Servers send raw deflate as often as zlib-wrapped: try the other once, from the start.
                    codec, dec = "raw-deflate", stepper("raw-deflate")
                    dec.feed(data)
                    continue
                raise DamagedStream(f"{codec}: {type(exc).__name__}: {exc}") from None
            if out:
                produced += len(out)
                if limit is not None and produced > limit:
                    keep = len(out) - (produced - limit)
                    if keep > 0:
                        yield out[:keep]
                    raise OutputLimit(limit)
                yield out
                continue
            if not dec.eof:
                break  # it needs more input
            rest = dec.unused.lstrip(b"\0")
            if single:
                return
            if not rest:
                dec, started = stepper(codec), False
                break
            dec = stepper(codec)  # the next stream of a concatenation
            dec.feed(rest)
    if started and not dec.eof:
        raise DamagedStream(f"{codec}: the data ends inside a compressed stream (truncated)")
