"""Decompression bombs and endless lines: each stage's per-file task runs in a fresh process on a bomb of 1 GiB
(a few KB to 1 MB on disk) beside good input, keeps the good input, reports the cut with its file and offset, and
stays far below 1 GiB of memory."""

from __future__ import annotations

import io
import json

import pytest
import zstandard
from cc_fixtures import Rec, page, write_warc
from hostile import GIB, bomb_bytes, epub_bomb, run_measured

from corpusforge.sample import books as sample_books

CEILING_MIB = 512  # the whole process, imports included (it measures 120-180 MiB)
LINE = GIB // 4
BOOK_LIMIT = 64 << 20  # a quarter of the default, so the bombs are cut four times sooner


def test_brotli_response_is_cut_at_the_body_limit(tmp_path):
    bomb = bomb_bytes("br")
    warc = tmp_path / "br.warc.gz"
    offsets = write_warc(warc, [Rec("http://bomb.example/", bomb, headers=[("Content-Encoding", "br")]),
                                page("http://good.example/en", "en")])
    result, rss = run_measured(f"""
        from corpusforge.sources.commoncrawl import CommonCrawlConfig, warc_to_shard
        report = warc_to_shard({str(warc)!r}, {str(tmp_path / 'out')!r}, CommonCrawlConfig(inputs=['x']))
        result = {{"counts": report.counts, "errors": report.errors}}
    """)
    assert rss < CEILING_MIB, rss
    assert result["counts"]["documents"] == 1
    assert [(e["offset"], e["reason"]) for e in result["errors"]] == [
        (offsets[0], "HTML body larger than 5000000 bytes; cut")]


def test_pushshift_line_without_newline_is_skipped_unheld(tmp_path):
    good = {"id": "a1", "score": 10, "url": "https://good.example/story", "created_utc": 1_600_000_000,
            "subreddit": "science", "is_self": False}
    head = json.dumps(good).encode() + b"\n"
    dump = tmp_path / "RS_2020-01.zst"
    buf = io.BytesIO()
    with zstandard.ZstdCompressor(level=3).stream_writer(buf, closefd=False) as out:
        out.write(head)
        for _ in range(LINE >> 20):
            out.write(b"x" * (1 << 20))  # one line of 256 MiB, no newline
    dump.write_bytes(buf.getvalue())
    result, rss = run_measured(f"""
        from corpusforge.sources.webtext2.pushshift import scan_dump
        from corpusforge.sources.webtext2.urls import LinkRules
        report = scan_dump({str(dump)!r}, {str(tmp_path / 'units')!r}, LinkRules())
        result = {{"counts": report.counts, "errors": report.errors}}
    """)
    assert rss < CEILING_MIB, rss
    assert result["counts"] == {"candidates": 1, "submissions": 1, "dropped_long_lines": 1}
    assert [(e["offset"], e["reason"]) for e in result["errors"]] == [
        (len(head), f"line of {LINE:,} bytes is longer than max_line_bytes ({16 << 20:,}); skipped")]


@pytest.mark.parametrize("suffix,codec", [(".txt.bz2", "bz2"), (".txt.gz", "gzip"), (".txt.xz", "xz"),
                                          (".txt.zst", "zstd"), (".epub", None)])
def test_compressed_book_bombs_are_refused_at_the_book_limit(tmp_path, suffix, codec):
    good = sample_books.write_gutenberg(tmp_path / "90001-0.txt", **sample_books.LAMPLIGHTER)
    bomb = tmp_path / f"bomb{suffix}"
    if codec:
        bomb.write_bytes(bomb_bytes(codec))
    else:
        epub_bomb(bomb, 100 << 20)  # more than the book limit: its entries are not read
    assert bomb.stat().st_size < 1_100_000
    result, rss = run_measured(f"""
        from corpusforge.sources.books import BooksConfig, books_to_shard
        report = books_to_shard({str(good) + chr(10) + str(bomb)!r}, {str(tmp_path / 'out')!r},
                                BooksConfig(inputs=['x'], min_chars=300, min_part_chars=300,
                                            max_book_bytes={BOOK_LIMIT}))
        result = {{"counts": report.counts, "errors": report.errors}}
    """)
    assert rss < CEILING_MIB, rss
    assert result["counts"]["book_files"] == 2 and result["counts"]["books"] == 1
    (error,) = result["errors"]
    assert error["file"] == str(bomb)
    if codec:
        assert (error["offset"], error["reason"]) == (
            BOOK_LIMIT, "book larger than 67,108,864 bytes uncompressed (max_book_bytes); not read further")
    else:
        assert error["reason"] == ("EPUB entries declare 104,857,620 bytes uncompressed, more than max_book_bytes "
                                   "(67,108,864); not read")
