"""The CommonCrawl path over WARC files the tests write with warcio: record filtering, every kind of bad input,
charsets, language filters, inputs from listings and globs over HTTP, Dask runs with atomic, resumable,
byte-identical shards, the exit code, and what the user sees (progress, `_summary.json`, `_errors.jsonl`)."""

from __future__ import annotations

import functools
import gzip
import http.server
import io
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from cc_fixtures import (ARTICLES, LANGS, Rec, article_html, corrupt, gzip_whole, make_inputs, page, pages,
                         slow_html, write_warc)
from rich.console import Console

from corpusforge import cli, schema
from corpusforge.runtime import ERRORS_FILE, SUMMARY_FILE, FileReport, output_name
from corpusforge.sources import commoncrawl as cc

def read_file(path: Path, **config) -> tuple[list[dict], FileReport]:
    """Documents and report of one WARC file, in this process (what the per-file task does, minus the shard)."""
    config = cc.CommonCrawlConfig(inputs=[str(path)], **config)
    report = FileReport(input=str(path))
    records = cc.read_records(str(path), report, config.max_html_bytes)
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


def test_unsupported_compression_is_named(tmp_path):
    path = tmp_path / "crawl.warc.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(100))
    docs, report = read_file(path)
    assert docs == [] and "zstd-compressed input is not supported" in report.errors[0]["reason"]


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
@pytest.fixture
def http_root(tmp_path):
    """A real HTTP server on loopback serving tmp_path/www; yields (root dir, base URL)."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_paths_listing_with_base_url_and_globs_over_http(http_root, tmp_path, dask_client):
    root, base = http_root
    rel = [f"crawl-data/CC-TEST/segments/{i}/warc/CC-TEST-{i}.warc.gz" for i in range(3)]
    for i, name in enumerate(rel):
        write_warc(root / name, pages(f"http://site{i}.example", LANGS[i: i + 2]))
    with gzip.open(root / "warc.paths.gz", "wt") as fh:
        fh.write("\n".join(rel) + "\n")
    assert cc.expand_inputs([base + "warc.paths.gz"], base_url=base) == [base + r for r in rel]
    assert cc.expand_inputs([base + "crawl-data/CC-TEST/segments/1/warc/*.warc.gz"]) == [base + rel[1]]
    local = tmp_path / "local"
    for name in ("b.warc.gz", "a.warc.gz", "c.txt"):
        (local / name).parent.mkdir(exist_ok=True)
        (local / name).write_bytes(b"")
    assert cc.expand_inputs([str(local / "*.warc.gz"), str(local / "a.warc.gz")]) == [
        str(local / "a.warc.gz"), str(local / "b.warc.gz")]

    config = cc.CommonCrawlConfig(inputs=[base + "warc.paths.gz"], base_url=base)
    summary = cc.run(config, tmp_path / "out", client=dask_client, console=quiet())
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
    cc.run(config, out, client=dask_client, console=console)

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
    first = cc.run(config, out, client=dask_client, console=quiet())
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("*.parquet")}

    again = cc.run(config, out, client=dask_client, console=quiet())
    assert again.resumed_files == 5 and again.counts == first.counts and again.errors == first.errors
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("*.parquet")} == before

    for shard in out.glob("*.parquet"):
        shard.unlink()
    redone = cc.run(config, out, client=dask_client, console=quiet())
    assert redone.resumed_files == 0 and redone.counts == first.counts
    assert {p.name: p.read_bytes() for p in out.glob("*.parquet")} == {k: v[0] for k, v in before.items()}


def test_progress_bar_shows_running_counts(tmp_path, dask_client, monkeypatch):
    path = tmp_path / "one.warc.gz"
    write_warc(path, pages())
    monkeypatch.setenv("CORPUSFORGE_PROGRESS", "1")
    console = Console(file=io.StringIO(), width=200)
    cc.run(cc.CommonCrawlConfig(inputs=[str(path)]), tmp_path / "out", client=dask_client, console=console)
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
