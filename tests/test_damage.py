"""A bad record costs only itself: Pushshift values out of range, a plain WARC record longer than the file, a
.warc.gz cut inside a record that warcio reads quietly, a page with an invalid byte, zero-byte inputs. Each case
asserts exactly what was kept and what was reported, with its offset."""

from __future__ import annotations

import json
import re
import zlib

import pytest
import zstandard
from cc_fixtures import Rec, page, pages, record_bytes, warc_bytes

from corpusforge.sources import commoncrawl as cc
from corpusforge.sources.webtext2 import pushshift
from corpusforge.sources.webtext2.urls import LinkRules


def submission(i: int, **over) -> dict:
    return {"id": f"s{i}", "score": 10, "url": f"https://site{i}.example/story", "created_utc": 1_600_000_000,
            "subreddit": "science", "is_self": False, **over}


def test_pushshift_bad_values_cost_only_their_line(tmp_path):
    lines = [json.dumps(submission(0)),
             json.dumps(submission(1))[:-1] + ', "media": ' + "[" * 5000 + "]" * 5000 + "}",
             json.dumps(submission(2, score=2**63)), json.dumps(submission(3, score=1e300)),
             json.dumps(submission(4, created_utc=1e20)), json.dumps(submission(5, created_utc=-1e15)),
             json.dumps(submission(6, created_utc="nan")), json.dumps(submission(7))]
    data = "".join(line + "\n" for line in lines).encode()
    dump = tmp_path / "RS_2020-01.zst"
    dump.write_bytes(zstandard.ZstdCompressor().compress(data))
    report = pushshift.scan_dump(str(dump), str(tmp_path / "units"), LinkRules())
    starts = [m.end() for m in re.finditer(b"\n", data)][:6]  # lines 1-6, the bad ones
    assert report.counts["candidates"] == 2 and report.counts["dropped_bad_values"] == 5
    assert [e["offset"] for e in report.errors] == starts
    assert report.errors[0]["reason"] == "JSON line nested too deeply"
    assert "score" in report.errors[1]["reason"] and "out of range" in report.errors[2]["reason"]


def test_plain_warc_resyncs_after_a_record_longer_than_the_file(tmp_path):
    records = pages() + pages("http://b.ex")
    chunks = record_bytes(records)
    chunks[1] = re.sub(rb"Content-Length: \d+", b"Content-Length: 99999999", chunks[1], count=1)
    path = tmp_path / "plain.warc"
    path.write_bytes(b"".join(chunks))
    report = cc.warc_to_shard(str(path), str(tmp_path / "out"), cc.CommonCrawlConfig(inputs=["x"]))
    second = len(chunks[0])
    # All ten pages: the long record is read (as far as the file goes) and every record after it again.
    assert report.counts["documents"] == 10
    assert [(e["offset"], e["reason"].split(":")[0]) for e in report.errors] == [
        (second, "record truncated"),
        (second, "record block runs over the next WARC record (wrong Content-Length?); reading resumes at the next "
                 "record header")]


def _http_header_cut(member: bytes) -> int:
    """A length of `member` (one gzip member) that decompresses past the WARC headers but not the HTTP headers."""
    for n in range(20, len(member)):
        out = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(member[:n])
        if out.count(b"\r\n\r\n") == 1 and b"HTTP/1.1 200" in out and b"Content-Type" in out:
            return n
    raise AssertionError("no cut point inside the HTTP headers")


@pytest.mark.parametrize("where", ["warcinfo", "request", "http_headers"])
def test_gz_cut_inside_a_quiet_record_is_reported(tmp_path, where):
    records = [Rec("http://x.example/", b"software: test\r\nformat: WARC/1.1\r\n" * 20, rec_type="warcinfo"),
               Rec("http://x.example/en", rec_type="request"), page("http://x.example/en", "en")]
    data, offsets = warc_bytes(records)
    unit = {"warcinfo": 0, "request": 1, "http_headers": 2}[where]
    end = offsets[unit + 1] if unit + 1 < len(offsets) else len(data)
    cut = (offsets[unit] + _http_header_cut(data[offsets[unit]:end]) if where == "http_headers"
           else end - 10)  # the record is whole, its member is not: warcio reads on quietly
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(data[:cut])
    report = cc.warc_to_shard(str(path), str(tmp_path / "out"), cc.CommonCrawlConfig(inputs=["x"]))
    assert report.counts.get("documents", 0) == 0
    assert [(e["offset"], e["reason"]) for e in report.errors] == [
        (offsets[unit], "the file ends inside a gzip member (truncated file)")]


def test_invalid_byte_in_a_utf8_page_is_replaced_and_warned(tmp_path):
    good = page("http://x.example/ru", "ru")
    at = good.body.index("библиотека".encode())
    broken = Rec(good.url, good.body[:at] + b"\xff" + good.body[at:], content_type=good.content_type)
    path = tmp_path / "in.warc.gz"
    path.write_bytes(warc_bytes([broken])[0])
    report = cc.warc_to_shard(str(path), str(tmp_path / "out"), cc.CommonCrawlConfig(inputs=["x"]))
    assert report.counts["documents"] == 1 and report.counts["pages_with_invalid_bytes"] == 1
    assert report.errors == []
    assert [(w["offset"], w["reason"]) for w in report.warnings] == [
        (0, "1 invalid UTF-8 byte sequence(s) replaced with U+FFFD")]


def test_zero_byte_inputs_are_reported(tmp_path):
    warc, dump = tmp_path / "empty.warc.gz", tmp_path / "RS_2020-01.zst"
    warc.write_bytes(b"")
    dump.write_bytes(b"")
    cc_report = cc.warc_to_shard(str(warc), str(tmp_path / "cc"), cc.CommonCrawlConfig(inputs=["x"]))
    ps_report = pushshift.scan_dump(str(dump), str(tmp_path / "ps"), LinkRules())
    assert [(e["offset"], e["reason"]) for e in cc_report.errors] == [(0, "empty file (0 bytes): no record in it")]
    assert [(e["offset"], e["reason"]) for e in ps_report.errors] == [(0, "empty file: no submission in it")]
