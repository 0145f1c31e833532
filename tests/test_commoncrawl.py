"""The CommonCrawl path over WARC files the tests write with warcio (plain, gzip, and WARC-zstd with and without a
dictionary): record filtering, every kind of bad input, warcio's warnings, charsets, language filters, inputs from
listings and globs over HTTP, Dask runs with atomic, resumable, byte-identical shards, the exit code, and what the
user sees (progress, `_summary.json`, `_errors.jsonl`)."""

from __future__ import annotations

import dataclasses
import gzip
import io
import itertools
import json
import random
import subprocess
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
import zstandard
from cc_fixtures import (ARTICLES, LANGS, Rec, article_html, corrupt, gzip_whole, make_inputs, page, pages,
                         record_bytes, skippable_frame, slow_html, train_dictionary, write_warc, write_warc_zst)
from distributed import Client, LocalCluster
from rich.console import Console
from warcio.archiveiterator import ArchiveIterator

from corpusforge import cli, schema
from corpusforge.inputs import resolve
from corpusforge.runtime import ERRORS_FILE, SUMMARY_FILE, FileReport, RunContext, output_name
from corpusforge.formats import warc
from corpusforge.sources import commoncrawl as cc

def read_file(path: Path, **config) -> tuple[list[dict], FileReport]:
    """Documents and report of one WARC file, in this process (what the per-file task does, minus the shard)."""
    config = cc.CommonCrawlConfig(inputs=[str(path)], **config)
    report = FileReport(input=str(path))
    records = warc.read_records(str(path), report, config.max_html_bytes)
    return list(cc.documents_from_records(records, str(path), config, report)), report


def quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


# ------------------------------------------------------------------------------------------------------- records
def test_html_responses_become_documents_with_lineage_and_the_rest_is_counted(tmp_path):
    records = [
        Rec("urn:warcinfo", b"software: tests\r\n", rec_type="warcinfo"),
        Rec("http://example.org/en", b"", rec_type="request"),
        page("http://example.org/en", "en"),
        Rec("http://example.org/en", b"via: test\r\n", rec_type="metadata"),
        page("http://example.org/missing", "de", status="404 Not Found"),
        Rec("http://example.org/moved", b"", status="301 Moved Permanently", headers=[("Location", "/en")]),
        Rec("http://example.org/logo.png", b"\x89PNG\r\n\x1a\n" + bytes(200), content_type="image/png"),
        Rec("http://example.org/en", b"", rec_type="revisit"),
        Rec("http://example.org/untyped", article_html("fr").encode(), content_type=None),  # sniffed as HTML
        page("<http://example.org/bracketed>", "nl"),  # some crawlers wrap the URI in angle brackets
    ]
    path = tmp_path / "mixed.warc.gz"
    offsets = write_warc(path, records)
    docs, report = read_file(path)
    assert report.counts == {"records": 10, "skipped_warcinfo": 1, "skipped_request": 1, "skipped_metadata": 1,
                             "skipped_status": 2, "skipped_non_html": 1, "skipped_revisit": 1, "html_responses": 3,
                             "documents": 3}
    assert report.errors == []
    assert [(d["url"], d["lang"], d["origin_offset"]) for d in docs] == [
        ("http://example.org/en", "en", offsets[2]), ("http://example.org/untyped", "fr", offsets[8]),
        ("http://example.org/bracketed", "nl", offsets[9])]
    en = docs[0]
    assert en["title"] == ARTICLES["en"][0] and ARTICLES["en"][1][1] in en["text"]
    assert en["source"] == "commoncrawl" and en["origin_file"] == str(path) and en["lang_score"] > 0.9
    assert en["origin_id"] == records[2].record_id and en["crawl_time"].isoformat() == "2024-05-03T12:00:00+00:00"
    assert len(en["id"]) == 32 and len({d["id"] for d in docs}) == 3


# ---------------------------------------------------------------------------------------------------- bad input
def test_truncated_gzip_stream_keeps_every_record_before_the_cut(tmp_path):
    whole = tmp_path / "whole.warc.gz"
    offsets = write_warc(whole, pages())
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(whole.read_bytes()[: offsets[3] + (offsets[4] - offsets[3]) // 2])  # inside the 4th record
    docs, report = read_file(cut)
    assert [d["lang"] for d in docs[:3]] == ["en", "de", "fr"]
    assert [e["offset"] for e in report.errors] == [offsets[3]]
    assert "record truncated" in report.errors[0]["reason"] and report.errors[0]["url"] == "http://example.org/ru"


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
@pytest.mark.parametrize("where", [5, 300], ids=["header", "body"])
def test_corrupt_record_in_the_middle_loses_only_that_record(tmp_path, compress, where):
    path = tmp_path / ("bad.warc.gz" if compress else "bad.warc")
    offsets = write_warc(path, pages(), compress=compress)
    corrupt(path, offsets[2] + where, 40)
    docs, report = read_file(path)
    assert [(d["lang"], d["origin_offset"]) for d in docs] == [
        (lang, off) for lang, off in zip(LANGS, offsets) if lang != "fr"]
    assert len(report.errors) == 1 and report.errors[0]["offset"] == offsets[2]
    assert report.errors[0]["stage"] == "read" and report.errors[0]["file"] == str(path)


def test_garbage_file_is_reported_not_fatal(tmp_path):
    path = tmp_path / "garbage.warc.gz"
    path.write_bytes(random.Random(7).randbytes(30_000))
    docs, report = read_file(path)
    assert docs == [] and len(report.errors) == 1
    assert report.errors[0]["offset"] == 0 and "unreadable record or stream" in report.errors[0]["reason"]


@pytest.mark.parametrize("name, magic", [("lz4", b"\x04\x22\x4d\x18"), ("bzip2", b"BZh9"), ("xz", b"\xfd7zXZ\x00")])
def test_unsupported_compression_is_named(tmp_path, name, magic):
    path = tmp_path / f"crawl.warc.{name}"
    path.write_bytes(magic + bytes(100))
    docs, report = read_file(path)
    assert docs == [] and [e["reason"] for e in report.errors] == [
        f"{name}-compressed input is not supported; decompress it, or recompress it as gzip or zstd"]


def test_non_chunked_gzip_warc_is_read_as_one_stream(tmp_path):
    plain = tmp_path / "plain.warc"
    offsets = write_warc(plain, pages(), compress=False)
    whole = tmp_path / "whole.warc.gz"
    gzip_whole(plain, whole)
    docs, report = read_file(whole)
    assert report.errors == [] and report.counts["nonchunked_gzip_streams"] == 1
    # Offsets are those of the uncompressed stream: `zcat whole.warc.gz | tail -c +OFFSET+1` starts at the record.
    assert [(d["lang"], d["origin_offset"]) for d in docs] == list(zip(LANGS, offsets))
    # A cut in such a stream: what was before the cut is kept and the break is reported.
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.7)])
    docs_cut, report_cut = read_file(cut)
    assert 1 <= len(docs_cut) < len(LANGS) and [d["lang"] for d in docs_cut] == LANGS[: len(docs_cut)]
    assert len(report_cut.errors) == 1 and report_cut.errors[0]["offset"] in offsets


def test_undecodable_and_empty_pages_are_reported_and_counted(tmp_path):
    records = [page("http://example.org/en", "en"),
               Rec("http://example.org/binary", bytes(range(128, 256)) * 40, content_type="text/html"),
               Rec("http://example.org/empty", b"<html><head><title>x</title></head><body><div></div></body></html>"),
               page("http://example.org/de", "de")]
    path = tmp_path / "pages.warc.gz"
    offsets = write_warc(path, records)
    docs, report = read_file(path)
    assert [d["lang"] for d in docs] == ["en", "de"]
    assert [(e["offset"], e["stage"], e["url"]) for e in report.errors] == [
        (offsets[1], "decode", "http://example.org/binary")]
    assert report.counts["dropped_empty_extraction"] == 1


def test_hung_page_is_killed_and_the_file_goes_on(tmp_path):
    records = [page("http://example.org/en", "en"), Rec("http://example.org/slow", slow_html().encode()),
               page("http://example.org/de", "de")]
    path = tmp_path / "slow.warc.gz"
    offsets = write_warc(path, records)
    docs, report = read_file(path, timeout_s=1.0)
    assert [d["lang"] for d in docs] == ["en", "de"]  # the page after the hung one is extracted too
    assert [(e["offset"], e["stage"]) for e in report.errors] == [(offsets[1], "extract")]
    assert "exceeded 1s; process killed" in report.errors[0]["reason"]


def test_html_over_the_size_cap_is_cut_and_reported(tmp_path):
    big = article_html("en", extra_paragraphs=40)
    path = tmp_path / "big.warc.gz"
    offsets = write_warc(path, [Rec("http://example.org/big", big.encode())])
    docs, report = read_file(path, max_html_bytes=4000)
    assert len(big.encode()) > 4000
    assert [(e["offset"], e["stage"]) for e in report.errors] == [(offsets[0], "read")]
    assert "larger than 4000 bytes; cut" in report.errors[0]["reason"]
    assert len(docs) == 1 and len(docs[0]["text"]) < 4000  # what was inside the cap is still extracted


# --------------------------------------------------------------------------------------------- warcio's warnings
def warc_with_warnings(path: Path) -> tuple[list[int], list[int]]:
    """An uncompressed WARC whose records warcio warns about: the 2nd is not followed by its blank lines at all (the
    3rd record's header runs straight on), the 4th has stray bytes before them, and the 6th has spaces in its target
    URI. Returns the records' offsets and the offsets of the records that draw a warning."""
    parts = record_bytes(pages() + [page("http://example.org/a page", "es")])
    parts[1] = parts[1].removesuffix(b"\r\n\r\n")
    parts[3] = parts[3].removesuffix(b"\r\n\r\n") + b"stray\r\n\r\n"
    path.write_bytes(b"".join(parts))
    offsets = [sum(map(len, parts[:i])) for i in range(len(parts))]
    return offsets, [offsets[1], offsets[3], offsets[5]]


def test_warcio_warnings_go_to_errors_jsonl_not_stderr(tmp_path, capfd):
    path = tmp_path / "in" / "odd.warc"
    path.parent.mkdir()
    offsets, warned = warc_with_warnings(path)
    out = tmp_path / "out"
    # Dask workers run tasks in threads: two threads in this process, so that stderr is this test's to check.
    with (LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster,
          Client(cluster) as client):
        summary = cc.run(cc.CommonCrawlConfig(inputs=[str(path)], output=str(out)),
                         RunContext(client=client, console=quiet()))
    assert "Record not followed" not in capfd.readouterr().err
    lines = [json.loads(line) for line in (out / ERRORS_FILE).read_text().splitlines()]
    warnings = [e for e in lines if e.get("level") == "warning"]
    assert [(e["file"], e["offset"], e["stage"]) for e in warnings] == [(str(path), off, "read") for off in warned]
    assert [e["reason"] for e in warnings] == [
        "warcio: Record not followed by newline, perhaps Content-Length is invalid; Remainder: b'WARC/1.0\\r\\n'",
        "warcio: Record not followed by newline, perhaps Content-Length is invalid; Remainder: b'stray\\r\\n'",
        "warcio: Replacing spaces in invalid WARC-Target-URI: http://example.org/a page"]
    # Every page is still extracted: the header that ran on is found again (and where warcio broke is an error).
    table = pq.read_table(out / output_name(str(path)))
    assert table.column("lang").to_pylist() == LANGS + ["es"] and table.column("origin_offset").to_pylist() == offsets
    assert table.column("url").to_pylist()[-1] == "http://example.org/a%20page"
    errors = [e for e in lines if "level" not in e]
    assert len(errors) == 1 and offsets[2] < errors[0]["offset"] < offsets[3]
    saved = json.loads((out / SUMMARY_FILE).read_text())
    assert saved["warnings"] == summary.warnings == 3 and saved["errors"] == summary.errors == 1


def test_warcio_warnings_go_to_the_report_of_the_file_being_read(tmp_path, capfd):
    odd = tmp_path / "odd.warc"
    _, warned = warc_with_warnings(odd)
    clean = tmp_path / "clean.warc"
    write_warc(clean, pages(), compress=False)

    def read_both() -> tuple[FileReport, FileReport]:
        reports = FileReport(input=str(odd)), FileReport(input=str(clean))
        readers = [warc.read_records(str(p), r, 10**6) for p, r in zip((odd, clean), reports)]
        for _ in itertools.zip_longest(*readers):  # a record of each file in turn, in each of several threads
            pass
        return reports

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch all the time, in the middle of reading a record too
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: read_both(), range(128)))
    finally:
        sys.setswitchinterval(interval)
    for odd_report, clean_report in results:
        assert [w["offset"] for w in odd_report.warnings] == warned and clean_report.warnings == []
    assert "Record not followed" not in capfd.readouterr().err


def test_warnings_alone_do_not_fail_the_run(tmp_path, dask_client):
    path = tmp_path / "spaces.warc.gz"
    write_warc(path, [page("http://example.org/a page", "en")])
    out = tmp_path / "out"
    assert cli.main(["commoncrawl", str(path), "-o", str(out), "--fail-on-error",
                     "--scheduler", dask_client.scheduler.address]) == 0
    saved = json.loads((out / SUMMARY_FILE).read_text())
    assert saved["errors"] == 0 and saved["warnings"] == 1 and saved["counts"]["documents"] == 1
    [line] = [json.loads(line) for line in (out / ERRORS_FILE).read_text().splitlines()]
    assert line["level"] == "warning" and line["offset"] == 0 and line["file"] == str(path)


# -------------------------------------------------------------------------------------------------------- zstd
def train_pages() -> list[Rec]:
    """Other pages of the same kind: a dictionary is trained on a crawl's first records, not on what it compresses."""
    return [r for site in ("a", "b", "c") for r in pages(f"http://{site}.train.example")]


def frame_record(path: Path, offset: int, dictionary=None):
    """What a user does with a document's lineage: seek to its offset, decompress that one frame, parse the record."""
    with path.open("rb") as fh:
        fh.seek(offset)
        reader = zstandard.ZstdDecompressor(dict_data=dictionary).stream_reader(fh, read_across_frames=False)
        return next(iter(ArchiveIterator(io.BytesIO(reader.read()))))


@pytest.mark.parametrize("kind", ["plain", "dictionary", "compressed-dictionary"])
def test_zstd_warc_gives_the_documents_of_the_same_records_as_gzip(tmp_path, kind):
    records = [Rec("urn:warcinfo", b"software: tests\r\n", rec_type="warcinfo"), *pages(),
               Rec("http://example.org/en", b"", rec_type="request")]
    dictionary = train_dictionary(train_pages()) if kind != "plain" else None
    gz, zst = tmp_path / "crawl.warc.gz", tmp_path / "crawl.warc.zst"
    write_warc(gz, records)
    offsets = write_warc_zst(zst, records, dictionary, compress_dictionary=kind == "compressed-dictionary",
                             extension_after=2)  # an extension frame between two records is passed over
    docs_gz, report_gz = read_file(gz)
    docs, report = read_file(zst)
    assert report.errors == [] and report.warnings == [] and report.counts == report_gz.counts
    columns = ("content_hash", "url", "title", "text", "lang", "lang_score", "origin_id", "crawl_time")
    assert [{c: d[c] for c in columns} for d in docs] == [{c: d[c] for c in columns} for d in docs_gz]
    assert [d["lang"] for d in docs] == LANGS and [d["origin_offset"] for d in docs] == offsets[1:6]
    for doc in docs:  # each offset is where that record's frame starts
        record = frame_record(zst, doc["origin_offset"], dictionary)
        assert record.rec_headers.get_header("WARC-Target-URI") == doc["url"]
        assert record.rec_headers.get_header("WARC-Record-ID") == doc["origin_id"]


def test_zstd_warc_compressed_whole_is_read_as_one_stream(tmp_path):
    plain = tmp_path / "plain.warc"
    offsets = write_warc(plain, pages(), compress=False)
    whole = tmp_path / "whole.warc.zst"  # `zstd plain.warc`: one frame for every record, against the spec
    whole.write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))
    docs, report = read_file(whole)
    assert report.errors == [] and report.counts["nonchunked_zstd_frames"] == 1
    # As for non-chunked gzip, offsets are those of the uncompressed stream (`zstdcat | tail -c +OFFSET+1`).
    assert [(d["lang"], d["origin_offset"]) for d in docs] == list(zip(LANGS, offsets))


@pytest.mark.parametrize("where", [5, 100], ids=["frame-header", "frame-data"])
def test_zstd_damaged_frame_in_the_middle_loses_only_that_record(tmp_path, where):
    dictionary = train_dictionary(train_pages())
    path = tmp_path / "bad.warc.zst"
    offsets = write_warc_zst(path, pages(), dictionary)
    corrupt(path, offsets[2] + where, 40)
    docs, report = read_file(path)
    assert [(d["lang"], d["origin_offset"]) for d in docs] == [
        (lang, off) for lang, off in zip(LANGS, offsets) if lang != "fr"]
    assert [(e["file"], e["offset"], e["stage"]) for e in report.errors] == [(str(path), offsets[2], "read")]
    assert "ZstdError" in report.errors[0]["reason"]


def test_zstd_truncated_file_keeps_every_record_before_the_cut(tmp_path):
    whole = tmp_path / "whole.warc.zst"
    offsets = write_warc_zst(whole, pages())
    cut = tmp_path / "cut.warc.zst"
    cut.write_bytes(whole.read_bytes()[: offsets[4] + (whole.stat().st_size - offsets[4]) // 2])
    docs, report = read_file(cut)
    assert [d["lang"] for d in docs] == LANGS[:4]
    assert [(e["file"], e["offset"], e["reason"]) for e in report.errors] == [
        (str(cut), offsets[4], "the file ends inside a zstd frame (truncated file)")]


def test_zstd_record_that_decompresses_a_thousandfold_is_read_in_bounded_memory(tmp_path):
    zeros = Rec("http://example.org/disk.img", bytes(64 << 20), content_type="application/octet-stream")
    path = tmp_path / "zeros.warc.zst"
    offsets = write_warc_zst(path, [page("http://example.org/en", "en"), zeros, page("http://example.org/de", "de")])
    assert path.stat().st_size < 20_000  # 64 MiB of zeros in a few KiB of RLE blocks
    report = FileReport(input=str(path))
    tracemalloc.start()
    try:
        records = [(r.url, r.offset) for r in warc.read_records(str(path), report, 10**6)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert records == [("http://example.org/en", offsets[0]), ("http://example.org/disk.img", offsets[1]),
                       ("http://example.org/de", offsets[2])] and report.errors == []
    assert peak < 8 << 20  # reads of at most what warcio asks for, not the frame's 64 MiB at once


@pytest.mark.parametrize("damage", ["missing", "garbled", "garbled-compressed", "another-dictionary"])
def test_zstd_dictionary_that_cannot_be_used_is_a_clear_error(tmp_path, damage):
    dictionary = train_dictionary(train_pages())
    path = tmp_path / "crawl.warc.zst"
    offsets = write_warc_zst(path, pages(), dictionary, compress_dictionary=damage == "garbled-compressed")
    data = path.read_bytes()
    if damage == "missing":  # the dictionary frame dropped (files with a dictionary cannot be concatenated)
        path.write_bytes(data[offsets[0]:])
    elif damage == "another-dictionary":
        other = train_dictionary(train_pages()[::-1], dict_id=50_000)
        path.write_bytes(skippable_frame(0x184D2A5D, other.as_bytes()) + data[offsets[0]:])
    else:
        corrupt(path, 20, 40)
    docs, report = read_file(path)
    assert docs == [] and len(report.errors) == 1
    error = report.errors[0]
    assert error["file"] == str(path) and error["offset"] == 0
    assert error["reason"].startswith("zstd frames need dictionary 40000, but ")
    assert error["reason"].endswith(": no record can be read")
    assert {"missing": "the file has no dictionary frame", "another-dictionary": "holds dictionary 50000",
            "garbled": "its dictionary frame is unreadable", "garbled-compressed": "its dictionary frame is unreadable",
            }[damage] in error["reason"]


def test_zstd_and_gzip_warcs_give_the_same_shards_on_dask(tmp_path, dask_client):
    records = pages() + pages("http://two.example", ["nl", "es"])
    dictionary = train_dictionary(train_pages())
    write_warc(tmp_path / "in" / "crawl.warc.gz", records)
    offsets = write_warc_zst(tmp_path / "in" / "crawl.warc.zst", records, dictionary, compress_dictionary=True)
    out = tmp_path / "out"
    summary = cc.run(cc.CommonCrawlConfig(inputs=[str(tmp_path / "in" / "crawl.warc.*")], output=str(out)),
                     RunContext(client=dask_client, console=quiet()))
    assert summary.files == 2 and summary.errors == 0 and summary.counts["documents"] == 14
    gz, zst = (pq.read_table(out / output_name(str(tmp_path / "in" / name))) for name in ("crawl.warc.gz",
                                                                                         "crawl.warc.zst"))
    schema.check_table(zst)
    lineage = ["id", "origin_file", "origin_offset"]  # a row's id names its file and offset
    assert zst.drop_columns(lineage).equals(gz.drop_columns(lineage))
    assert zst.column("origin_offset").to_pylist() == offsets


# ------------------------------------------------------------------------------------------ charsets and language
def test_charsets_and_languages_end_to_end(tmp_path):
    records = [
        page("http://example.org/ru", "ru", charset="windows-1251", http_charset="windows-1251", meta_charset=None),
        page("http://example.org/zh", "zh", charset="gb2312", http_charset=None, meta_charset="gb2312"),
        page("http://example.org/fr", "fr", charset="latin-1", http_charset=None, meta_charset=None),
    ]
    path = tmp_path / "charsets.warc.gz"
    write_warc(path, records)
    docs, report = read_file(path)
    assert report.errors == []
    assert [d["lang"] for d in docs] == ["ru", "zh", "fr"]
    for doc in docs:
        assert ARTICLES[doc["lang"]][1][0] in doc["text"] and doc["title"] == ARTICLES[doc["lang"]][0]


def test_language_allow_list_and_min_score(tmp_path):
    mixed = ("<html><body><article><p>Der Hund läuft schnell. The dog runs fast. Le chien court vite. "
             "El perro corre rápido.</p></article></body></html>")
    path = tmp_path / "langs.warc.gz"
    write_warc(path, pages() + [Rec("http://example.org/mixed", mixed.encode())])
    all_docs, _ = read_file(path)
    assert len(all_docs) == 6
    docs, report = read_file(path, languages=["de", "fr"])
    assert [d["url"] for d in docs] == [d["url"] for d in all_docs if d["lang"] in ("de", "fr")]
    assert {"http://example.org/de", "http://example.org/fr"} <= {d["url"] for d in docs}
    assert report.counts["dropped_language"] == 6 - len(docs) and sum(report.by_lang.values()) == len(docs)
    # A threshold between the mixed page's score and the clean pages' scores keeps exactly the clean pages.
    scores = {d["url"]: d["lang_score"] for d in all_docs}
    low, high = scores.pop("http://example.org/mixed"), min(scores.values())
    assert low < high
    docs, report = read_file(path, min_lang_score=(low + high) / 2)
    assert sorted(d["url"] for d in docs) == sorted(scores) and report.counts["dropped_lang_score"] == 1


# ---------------------------------------------------------------------------------------------------- inputs
def test_paths_listing_with_base_url_and_globs_over_http(http_root, tmp_path, dask_client):
    root, base = http_root
    rel = [f"crawl-data/CC-TEST/segments/{i}/warc/CC-TEST-{i}.warc.gz" for i in range(3)]
    for i, name in enumerate(rel):
        write_warc(root / name, pages(f"http://site{i}.example", LANGS[i: i + 2]))
    with gzip.open(root / "warc.paths.gz", "wt") as fh:
        fh.write("\n".join(rel) + "\n")
    assert resolve([base + "warc.paths.gz"], base_url=base) == [base + r for r in rel]
    assert resolve([base + "crawl-data/CC-TEST/segments/1/warc/*.warc.gz"]) == [base + rel[1]]
    local = tmp_path / "local"
    for name in ("b.warc.gz", "a.warc.gz", "c.txt"):
        (local / name).parent.mkdir(exist_ok=True)
        (local / name).write_bytes(b"")
    assert resolve([str(local / "*.warc.gz"), str(local / "a.warc.gz")]) == [
        str(local / "a.warc.gz"), str(local / "b.warc.gz")]

    config = cc.CommonCrawlConfig(inputs=[base + "warc.paths.gz"], base_url=base)
    summary = cc.run(dataclasses.replace(config, output=str(tmp_path / "out")),
                     RunContext(client=dask_client, console=quiet()))
    assert summary.files == 3 and summary.errors == 0 and summary.counts["documents"] == 6
    table = pq.read_table(tmp_path / "out" / output_name(base + rel[2]))
    assert table.column("origin_file").to_pylist() == [base + rel[2]] * 2
    assert table.column("lang").to_pylist() == ["fr", "ru"]


# ------------------------------------------------------------------------------------------------ runs on Dask
def test_run_writes_schema_valid_shards_summary_and_errors(tmp_path, dask_client):
    inputs, offsets = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    console = Console(file=io.StringIO(), width=200)
    config = cc.CommonCrawlConfig(inputs=[str(tmp_path / "in" / "*.warc.gz")])
    cc.run(dataclasses.replace(config, output=str(out)), RunContext(client=dask_client, console=console))

    shards = sorted(out.glob("*.parquet"))
    assert [p.name for p in shards] == sorted(output_name(str(p)) for p in inputs)
    tables = {p.name: pq.read_table(p) for p in shards}
    for table in tables.values():
        schema.check_table(table)
    assert tables[output_name(str(inputs[2]))].column("lang").to_pylist() == ["de", "ru"]  # around the damage
    assert tables[output_name(str(inputs[3]))].column("lang").to_pylist() == ["zh"]
    assert tables[output_name(str(inputs[4]))].num_rows == 0
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    saved = json.loads((out / SUMMARY_FILE).read_text())
    assert saved["stage"] == "commoncrawl" and saved["files"] == 5 and saved["errors"] == 3
    assert saved["counts"]["documents"] == 5 + 2 + 2 + 1 == sum(t.num_rows for t in tables.values())
    assert saved["by_lang"] == {"de": 2, "en": 2, "ru": 2, "zh": 2, "fr": 1, "nl": 1}
    assert saved["counts"]["html_responses"] >= saved["counts"]["documents"] and saved["bytes_in"] > 0
    errors = [json.loads(line) for line in (out / ERRORS_FILE).read_text().splitlines()]
    assert {(Path(e["file"]).name, e["offset"]) for e in errors} == {
        ("damaged.warc.gz", offsets[str(inputs[2])][1]), ("cut.warc.gz", offsets[str(inputs[3])][1]),
        ("garbage.warc.gz", 0)}
    assert all(e["reason"] and e["stage"] == "read" for e in errors)
    # What the user saw: running counts per finished file, then the summary table.
    text = console.file.getvalue()
    assert "commoncrawl: 5/5 files, documents 10" in text and "errors 3" in text
    assert "commoncrawl: summary" in text and "documents by language: de 2, en 2, ru 2" in text


def test_rerun_resumes_and_output_is_byte_identical(tmp_path, dask_client):
    inputs, _ = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    config = cc.CommonCrawlConfig(inputs=[str(p) for p in inputs])
    first = cc.run(dataclasses.replace(config, output=str(out)), RunContext(client=dask_client, console=quiet()))
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("*.parquet")}

    again = cc.run(dataclasses.replace(config, output=str(out)), RunContext(client=dask_client, console=quiet()))
    assert again.resumed_files == 5 and again.counts == first.counts and again.errors == first.errors
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("*.parquet")} == before

    for shard in out.glob("*.parquet"):
        shard.unlink()
    redone = cc.run(dataclasses.replace(config, output=str(out)), RunContext(client=dask_client, console=quiet()))
    assert redone.resumed_files == 0 and redone.counts == first.counts
    assert {p.name: p.read_bytes() for p in out.glob("*.parquet")} == {k: v[0] for k, v in before.items()}


def test_progress_bar_shows_running_counts(tmp_path, dask_client, monkeypatch):
    path = tmp_path / "one.warc.gz"
    write_warc(path, pages())
    monkeypatch.setenv("CORPUSFORGE_PROGRESS", "1")
    console = Console(file=io.StringIO(), width=200)
    cc.run(cc.CommonCrawlConfig(inputs=[str(path)], output=str(tmp_path / "out")),
           RunContext(client=dask_client, console=console))
    text = console.file.getvalue()
    assert "commoncrawl" in text and "1/1" in text and "documents 5" in text and "errors 0" in text


def test_crash_mid_file_leaves_no_visible_output_and_a_rerun_finishes(tmp_path):
    path = tmp_path / "in.warc.gz"
    write_warc(path, pages() + [Rec("http://example.org/slow", slow_html(40_000).encode())] + pages("http://b.ex"))
    out = tmp_path / "out"
    code = ("import sys; from corpusforge.sources import commoncrawl as cc; "
            "cc.warc_to_shard(sys.argv[1], sys.argv[2], cc.CommonCrawlConfig(inputs=[sys.argv[1]], timeout_s=600))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path), str(out)])
    try:
        deadline = time.monotonic() + 60
        while not psutil.Process(proc.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)  # wait until the task is extracting pages...
        time.sleep(1.0)  # ...and inside the slow one
        assert proc.poll() is None, "the task finished before it could be crashed"
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()  # the worker dies mid-file
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    for child in children:
        child.kill()
    assert not out.exists() or not list(out.glob("*.parquet"))
    report = cc.warc_to_shard(str(path), str(out), cc.CommonCrawlConfig(inputs=[str(path)], timeout_s=0.5))
    assert not report.resumed and report.counts["documents"] == 10
    assert [p.name for p in out.glob("*.parquet")] == [output_name(str(path))]


def test_fail_on_error_sets_the_exit_code(tmp_path, dask_client):
    inputs, _ = make_inputs(tmp_path / "in")
    scheduler = ["--scheduler", dask_client.scheduler.address]
    good = [str(p) for p in inputs[:2]]
    damaged = [str(inputs[2])]
    assert cli.main(["commoncrawl", *good, "-o", str(tmp_path / "a"), "--fail-on-error", *scheduler]) == 0
    assert cli.main(["commoncrawl", *damaged, "-o", str(tmp_path / "b"), *scheduler]) == 0
    assert cli.main(["commoncrawl", *damaged, "-o", str(tmp_path / "c"), "--fail-on-error", *scheduler]) == 1
    assert (tmp_path / "c" / ERRORS_FILE).read_text().count("\n") == 1


def test_cli_options_reach_the_config(tmp_path, dask_client):
    path = tmp_path / "in.warc.gz"
    write_warc(path, pages())
    out = tmp_path / "out"
    assert cli.main(["commoncrawl", str(path), "-o", str(out), "--languages", "ru", "zh", "--min-lang-score", "0.5",
                     "--mode", "precision", "--timeout", "5", "--scheduler", dask_client.scheduler.address]) == 0
    assert sorted(pq.read_table(next(out.glob("*.parquet"))).column("lang").to_pylist()) == ["ru", "zh"]
    assert cli.main(["commoncrawl", str(path), "-o", str(out), "--min-lang-score", "2"]) == 2
