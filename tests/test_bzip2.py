"""bzip2 read block by block: same bytes as the stream decoder, any start byte, damage costs one block."""

from __future__ import annotations

import bz2
import random

import pytest

from corpusforge.formats import bzip2


@pytest.fixture(scope="module")
def payload() -> bytes:
    """About 600 kB of text that does not compress to nothing (so level 1 gives several 100 kB blocks)."""
    rng = random.Random(7)
    words = "river lamp harbour tide bread clock garden letter winter valley stone bridge".split()
    lines = [" ".join(rng.choice(words) for _ in range(12)) + f" {rng.randrange(10**9)}\n" for _ in range(9000)]
    return "".join(lines).encode()


def _block_boundaries(data: bytes) -> list[tuple[int, int]]:
    """(compressed bytes fed when a block's output appeared, uncompressed bytes so far) per block, found with the
    standard stream decoder alone: it emits a block's bytes only once the whole block has been read."""
    dec, fed, out, marks = bz2.BZ2Decompressor(), 0, 0, []
    for i in range(0, len(data), 64):
        got = dec.decompress(data[i:i + 64])
        fed = i + len(data[i:i + 64])
        if got:
            out += len(got)
            marks.append((fed, out))
    return marks


def test_blocks_decode_to_the_same_bytes_as_the_stream(tmp_path, payload):
    path = tmp_path / "x.bz2"
    path.write_bytes(bz2.compress(payload, 1))
    blocks = list(bzip2.read_blocks(path))
    assert len(blocks) >= 5 and all(isinstance(b, bzip2.Block) for b in blocks)
    assert b"".join(b.data for b in blocks) == payload
    assert blocks[0].offset == 0 and blocks[0].pos == 4  # the first block starts after "BZh1"
    assert bzip2.is_bzip2(path)


def test_reading_from_any_byte_starts_at_the_next_block(tmp_path, payload):
    path = tmp_path / "x.bz2"
    path.write_bytes(bz2.compress(payload, 1))
    everything = list(bzip2.read_blocks(path))
    for cut in (1, 5, everything[2].pos, everything[2].pos + 1, path.stat().st_size - 10):
        got = list(bzip2.read_blocks(path, cut))
        assert [b.pos for b in got] == [b.pos for b in everything if b.pos >= cut]


def test_a_corrupt_block_costs_that_block_only(tmp_path, payload):
    data = bz2.compress(payload, 1)
    marks = _block_boundaries(data)
    damaged = bytearray(data)
    middle = (marks[1][0] + marks[2][0]) // 2  # inside the third block's compressed bytes
    damaged[middle:middle + 8] = bytes(8)
    path = tmp_path / "bad.bz2"
    path.write_bytes(bytes(damaged))
    got = list(bzip2.read_blocks(path))
    assert [type(b).__name__ for b in got].count("Damage") == 1
    bad = next(b for b in got if isinstance(b, bzip2.Damage))
    assert marks[1][0] - 64 <= bad.pos <= middle and "corrupt bz2 block" in bad.reason
    good = b"".join(b.data for b in got if isinstance(b, bzip2.Block))
    assert good == payload[:marks[1][1]] + payload[marks[2][1]:]


def test_a_truncated_file_keeps_every_complete_block(tmp_path, payload):
    data = bz2.compress(payload, 1)
    path = tmp_path / "cut.bz2"
    path.write_bytes(data[: len(data) * 2 // 3])
    got = list(bzip2.read_blocks(path))
    assert isinstance(got[-1], bzip2.Damage) and "ends inside" in got[-1].reason
    prefix = bz2.BZ2Decompressor().decompress(data[: len(data) * 2 // 3])  # what the stream decoder gets
    assert b"".join(b.data for b in got[:-1]) == prefix


def test_multistream_offsets_are_stream_starts(tmp_path):
    streams = [bz2.compress(f"stream {i} ".encode() * 500) for i in range(4)]
    path = tmp_path / "multi.bz2"
    path.write_bytes(b"".join(streams))
    starts = [sum(len(s) for s in streams[:i]) for i in range(4)]
    got = list(bzip2.read_blocks(path))
    assert [b.offset for b in got] == starts
    assert [b.data for b in got] == [f"stream {i} ".encode() * 500 for i in range(4)]
    assert [b.offset for b in bzip2.read_blocks(path, starts[2])] == starts[2:]


def test_not_bzip2(tmp_path):
    path = tmp_path / "plain.xml"
    path.write_bytes(b"<mediawiki></mediawiki>")
    assert not bzip2.is_bzip2(path)
    assert list(bzip2.read_blocks(path)) == []
