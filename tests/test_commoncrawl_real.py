"""The CommonCrawl path over real data in ../shared/data: every WARC/ARC capture there (odd charsets, revisits,
transfer encodings, truncated records, files warcio cannot read or warns about), and the 990 pages of trafilatura's
evaluation set wrapped into WARC records and scored against their must-contain / must-not-contain snippets."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rich.console import Console
from warcio.archiveiterator import ArchiveIterator

from bench import extract_eval
from corpusforge import schema
from corpusforge.runtime import ERRORS_FILE, RunContext, output_name, read_report
from corpusforge.sources import commoncrawl as cc

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

# What each capture yields: (records, HTML 200 responses, documents, errors, documents by language).
# Zero documents from HTML responses means trafilatura found no main text (tiny hand-made test pages).
EXPECTED = {
    "dolma-testdata/sample-0000.warc.gz": (48, 22, 22, 0, {"en": 22}),
    "dolma-testdata/sample-0001.warc.gz": (34, 15, 15, 0, {"en": 15}),
    # A damaged copy (9 bytes fewer than the ukwa copy, every ARC length off): resyncing at the ARC header lines
    # still finds both of its HTML pages, as in the intact copy.
    "ia-web-commons/IAH-20080430204825-00000-blackbook-truncated.arc": (6, 2, 2, 6, {"en": 2}),
    "ia-web-commons/IAH-urls-wget.warc": (36, 2, 2, 0, {"en": 2}),
    "ia-web-commons/IAH-urls-wget.warc.gz": (36, 2, 2, 0, {"en": 2}),
    "ia-web-commons/html-lang-attribute.warc": (5, 5, 0, 0, {}),
    "ia-web-commons/link-extraction-test.warc": (10, 9, 8, 0, {"en": 8}),
    "ia-web-commons/meta-itemprop.warc": (1, 1, 1, 0, {"en": 1}),
    "ia-web-commons/mutliple-headers.warc": (1, 1, 0, 0, {}),
    "ia-web-commons/text-extraction-test.warc": (4, 1, 1, 0, {"en": 1}),
    "ia-web-commons/title-extraction-embedded-SVG.warc": (1, 1, 1, 0, {"en": 1}),
    "jwarc/cc.warc.gz": (1, 1, 1, 0, {"en": 1}),
    "node-warc/books.toscrape.warc": (60, 1, 1, 0, {"zh": 1}),  # only prices extracted; lid.176 guesses (0.4)
    "node-warc/parseMe.warc.gz": (30, 1, 1, 0, {"en": 1}),
    "pywb-sample-archive/bad.arc": (1, 0, 0, 2, {}),  # lengths -1 and "abc"
    "pywb-sample-archive/dupes.warc.gz": (25, 1, 1, 0, {"en": 1}),
    "pywb-sample-archive/example-bad.warc.gz.bad": (6, 1, 1, 0, {"en": 1}),  # non-chunked gzip, read as one stream
    "pywb-sample-archive/example-extra.warc": (6, 2, 2, 0, {"en": 2}),
    "pywb-sample-archive/example-url-agnostic-orig.warc.gz": (2, 1, 1, 0, {"en": 1}),
    "pywb-sample-archive/example-url-agnostic-revisit.warc.gz": (2, 0, 0, 0, {}),
    "pywb-sample-archive/example-wget-1-14.warc.gz": (6, 1, 1, 0, {"en": 1}),
    "pywb-sample-archive/example-wpull.warc.gz": (4, 1, 1, 0, {"en": 1}),
    "pywb-sample-archive/example.arc": (2, 1, 1, 0, {"en": 1}),
    "pywb-sample-archive/example.arc.gz": (2, 1, 1, 0, {"en": 1}),
    "pywb-sample-archive/example.warc": (6, 1, 1, 0, {"en": 1}),
    "pywb-sample-archive/example.warc.gz": (6, 1, 1, 0, {"en": 1}),
    "pywb-sample-archive/example2.warc.gz": (3, 1, 1, 0, {"en": 1}),
    "pywb-sample-archive/httpbin-resource.warc.gz": (1, 0, 0, 0, {}),
    "pywb-sample-archive/iana.warc.gz": (343, 16, 16, 0, {"en": 16}),
    "pywb-sample-archive/missing-status-text.warc": (1, 0, 0, 0, {}),
    "pywb-sample-archive/post-test.warc.gz": (6, 0, 0, 0, {}),
    "resiliparse-testdata/block-sized-records.warc": (3, 0, 0, 0, {}),
    "resiliparse-testdata/block-sized-records.warc.gz": (3, 0, 0, 0, {}),
    "resiliparse-testdata/block-sized-records.warc.lz4": (0, 0, 0, 1, {}),
    "resiliparse-testdata/clipped.warc.gz": (1, 1, 1, 1, {"en": 1}),  # 13,068 bytes short: kept and reported
    "resiliparse-testdata/clueweb-quirk.warc.gz": (30, 29, 29, 0, {"ja": 29}),
    "resiliparse-testdata/warcfile.warc": (50, 16, 16, 0, {"de": 2, "en": 1, "nl": 1, "ru": 1, "zh": 11}),
    "resiliparse-testdata/warcfile.warc.gz": (50, 16, 16, 0, {"de": 2, "en": 1, "nl": 1, "ru": 1, "zh": 11}),
    "resiliparse-testdata/warcfile.warc.lz4": (0, 0, 0, 1, {}),
    "ukwa-webarchive-discovery/compression/transfer_compression_brotli.warc": (5, 1, 1, 0, {"en": 1}),
    "ukwa-webarchive-discovery/compression/transfer_compression_brotli.warc.gz": (5, 1, 1, 0, {"en": 1}),
    "ukwa-webarchive-discovery/compression/transfer_compression_gzip.warc": (5, 1, 1, 0, {"en": 1}),
    "ukwa-webarchive-discovery/compression/transfer_compression_gzip.warc.gz": (5, 1, 1, 0, {"en": 1}),
    "ukwa-webarchive-discovery/compression/transfer_compression_none.warc": (5, 1, 1, 0, {"en": 1}),
    "ukwa-webarchive-discovery/compression/transfer_compression_none.warc.gz": (5, 1, 1, 0, {"en": 1}),
    "ukwa-webarchive-discovery/gov.uk-revisit-warcs/BL-20140325121225068-00000-32090~opera~8443.warc.gz":
        (190, 32, 32, 0, {"en": 32}),
    "ukwa-webarchive-discovery/gov.uk-revisit-warcs/BL-20140325122341434-00000-32090~opera~8443.warc.gz":
        (190, 6, 6, 0, {"en": 6}),
    "ukwa-webarchive-discovery/ip-host-testcase.warc.gz": (6, 0, 0, 0, {}),
    "ukwa-webarchive-discovery/truncated_datetime.warc": (5, 1, 1, 0, {"en": 1}),
    "ukwa-webarchive-discovery/wikipedia-mona-lisa/flashfrozen-jwat-recompressed.warc.gz": (82, 2, 2, 0, {"en": 2}),
    "ukwa-webarchive-test-suite/small-arcs-and-warcs/IAH-20080430204825-00000-blackbook-truncated.arc":
        (9, 2, 2, 0, {"en": 2}),
    "ukwa-webarchive-test-suite/small-arcs-and-warcs/IAH-20080430204825-00000-blackbook-truncated.arc.gz":
        (9, 2, 2, 0, {"en": 2}),
    "ukwa-webarchive-test-suite/small-arcs-and-warcs/IAH-20080430204825-00000-blackbook-truncated.warc":
        (23, 2, 2, 0, {"en": 2}),
    "ukwa-webarchive-test-suite/small-arcs-and-warcs/IAH-20080430204825-00000-blackbook-truncated.warc.gz":
        (23, 2, 2, 0, {"en": 2}),
    "ukwa-webarchive-test-suite/small-arcs-and-warcs/IAH-urls-wget.warc.gz": (36, 2, 2, 0, {"en": 2}),
    "ukwa-webarchive-test-suite/wikipedia-sopa-blackout-2012/wikipedia-blackout/sopa-wikipedia-homepage.warc.gz":
        (164, 1, 1, 0, {"en": 1}),
    "ukwa-webarchive-test-suite/wikipedia-sopa-blackout-2012/wikipedia-post-blackout/main-page.warc.gz":
        (151, 1, 1, 0, {"en": 1}),
    "ukwa-webarchive-test-suite/wikipedia-sopa-blackout-2012/wikipedia-post-blackout/post-blackout.warc.gz":
        (117, 1, 1, 0, {"en": 1}),
    "warcio-testdata/bad.arc": (1, 0, 0, 2, {}),
    "warcio-testdata/example-bad-non-chunked.warc.gz": (6, 1, 1, 0, {"en": 1}),
    "warcio-testdata/example-bad.warc.gz.bad": (6, 1, 1, 0, {"en": 1}),
    "warcio-testdata/example-digest.warc": (4, 0, 0, 0, {}),
    "warcio-testdata/example-iana.org-chunked.warc": (3, 1, 1, 0, {"en": 1}),
    "warcio-testdata/example-resource.warc.gz": (3, 0, 0, 0, {}),
    "warcio-testdata/example-space-in-target-uri.warc.gz": (2, 0, 0, 0, {}),
    "warcio-testdata/example-space-in-url.arc": (2, 1, 1, 1, {"en": 1}),  # ARC length 12 bytes past the end
    "warcio-testdata/example-trunc.warc": (4, 1, 1, 0, {"en": 1}),
    "warcio-testdata/example-wget-bad-target-uri.warc.gz": (6, 1, 1, 0, {"en": 1}),
    # The body sits in a gzip member of its own: the record reads as empty (reported) and the stray member too.
    "warcio-testdata/example-wrong-chunks.warc.gz": (1, 1, 0, 2, {}),
    "warcio-testdata/example.arc": (2, 1, 1, 0, {"en": 1}),
    "warcio-testdata/example.arc.gz": (2, 1, 1, 0, {"en": 1}),
    "warcio-testdata/example.warc": (6, 1, 1, 0, {"en": 1}),
    "warcio-testdata/example.warc.gz": (6, 1, 1, 0, {"en": 1}),
    "warcio-testdata/post-test.warc.gz": (6, 0, 0, 0, {}),
    "whirlwind-cc-2024-22/whirlwind.warc.gz": (4, 1, 1, 0, {"an": 1}),
    "whirlwind-cc-2024-22/whirlwind.warc.wat.gz": (2, 0, 0, 0, {}),
    "whirlwind-cc-2024-22/whirlwind.warc.wet.gz": (2, 0, 0, 0, {}),
}

# warcio's warnings about a capture (offsets of the records they concern): in `_errors.jsonl` as warnings, not errors.
WARNINGS = {
    # every ARC length of this damaged copy is off, so no record ends where warcio expects
    "ia-web-commons/IAH-20080430204825-00000-blackbook-truncated.arc": [0, 1399, 1515, 2376, 3124, 32203],
    "pywb-sample-archive/example.warc": [4061],  # a Content-Length one byte short
    "warcio-testdata/example-space-in-target-uri.warc.gz": [241],
    "warcio-testdata/example-space-in-url.arc": [151],
    "warcio-testdata/example-trunc.warc": [1197],
}


def captures(root: Path) -> list[Path]:
    """Every WARC/ARC/WET/WAT file under warc/ (READMEs, indexes, licences and the loose HTML page left out)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != "LICENSE"
                  and not p.name.endswith((".md", ".txt", ".json", ".cdxj", ".html")))


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.fixture(scope="module")
def real_run(shared_data, tmp_path_factory, dask_client):
    """Run the path once over every capture; the output folder and the input list."""
    root = shared_data / "warc"
    files = captures(root)
    out = tmp_path_factory.mktemp("real")
    # A generous time limit: these counts must not depend on how busy the machine is (test_extract tests the limit).
    config = cc.CommonCrawlConfig(inputs=[str(p) for p in files], timeout_s=300)
    summary = cc.run(dataclasses.replace(config, output=str(out)),
                     RunContext(client=dask_client, console=Console(file=io.StringIO())))
    return root, files, out, summary


def test_every_real_capture_yields_what_it_holds(real_run):
    root, files, out, summary = real_run
    assert sorted(str(p.relative_to(root)) for p in files) == sorted(EXPECTED)  # no capture left untested
    got, warned = {}, {}
    for path in files:
        shard = out / output_name(str(path))
        report = read_report(shard)
        table = pq.read_table(shard)
        schema.check_table(table)
        assert table.num_rows == report.counts.get("documents", 0)
        got[str(path.relative_to(root))] = (report.counts.get("records", 0), report.counts.get("html_responses", 0),
                                            table.num_rows, len(report.errors), dict(sorted(report.by_lang.items())))
        if report.warnings:
            warned[str(path.relative_to(root))] = [w["offset"] for w in report.warnings]
    assert got == EXPECTED and warned == WARNINGS
    assert summary.files == len(EXPECTED) and summary.errors == sum(v[3] for v in EXPECTED.values())
    lines = [json.loads(line) for line in (out / ERRORS_FILE).read_text().splitlines()]
    errors = [e for e in lines if e.get("level") != "warning"]
    assert len(errors) == summary.errors and all(e["file"] and e["offset"] is not None for e in lines)
    assert sorted((str(Path(e["file"]).relative_to(root)), e["offset"]) for e in lines if e.get("level")) == sorted(
        (name, offset) for name, offsets in WARNINGS.items() for offset in offsets)
    assert summary.warnings == 10 and all(e["reason"].startswith("warcio: ") for e in lines if e.get("level"))
    assert {e["reason"] for e in errors if e["file"].endswith(".lz4")} == {
        "lz4-compressed input is not supported; decompress it, or recompress it as gzip or zstd"}


def test_charsets_and_languages_of_the_common_crawl_slice(real_run):
    root, _, out, _ = real_run
    table = pq.read_table(out / output_name(str(root / "resiliparse-testdata/warcfile.warc.gz")))
    docs = {row["url"]: row for row in table.to_pylist()}
    assert docs["http://01spb.ru/company/"]["lang"] == "ru"  # windows-1251 by its HTTP header
    assert "Стратегия пожарной безопасности" in docs["http://01spb.ru/company/"]["text"]
    assert docs["http://0900-hovenier.nl/gelderland/oosterbeek/"]["lang"] == "nl"
    assert docs["http://0760.jxtdw.com/area/sanxiang/"]["lang"] == "zh"  # gb2312 by its HTTP header
    assert "职位名称" in docs["http://0760.jxtdw.com/area/sanxiang/"]["text"]
    assert docs["http://0755krk.com/76104/list_4_1.html"]["lang"] == "zh"  # gbk by its meta tag only
    assert {docs[u]["lang"] for u in docs if "live-radsport.ch" in u} == {"de"}  # Swiss pages, latin-1 meta
    for row in docs.values():
        assert "\ufffd" not in row["text"] and row["crawl_time"].year == 2020 and row["origin_id"].startswith("<urn:")
    # Records are found at their offsets: reading there gives the same record.
    path = root / "resiliparse-testdata/warcfile.warc.gz"
    with path.open("rb") as fh:
        for row in docs.values():
            fh.seek(row["origin_offset"])
            record = next(iter(ArchiveIterator(fh)))
            assert record.rec_headers.get_header("WARC-Target-URI") == row["url"]


def test_transfer_encodings_give_the_same_page(real_run):
    root, _, out, _ = real_run
    texts = {}
    for kind in ("none", "gzip", "brotli"):
        for suffix in (".warc", ".warc.gz"):
            name = f"ukwa-webarchive-discovery/compression/transfer_compression_{kind}{suffix}"
            texts[kind + suffix] = pq.read_table(out / output_name(str(root / name))).column("text")[0].as_py()
    assert set(texts.values()) == {"Simple page\nExtremely simple webpage used for testing GZip and Brotli "
                                   "transmission compression."}


def test_whirlwind_page_is_aragonese_and_matches_common_crawls_own_text(real_run):
    root, _, out, _ = real_run
    table = pq.read_table(out / output_name(str(root / "whirlwind-cc-2024-22/whirlwind.warc.gz")))
    doc = table.to_pylist()[0]
    assert doc["url"] == "https://an.wikipedia.org/wiki/Escopete" and doc["lang"] == "an"
    assert doc["title"].startswith("Escopete")
    with gzip.open(root / "whirlwind-cc-2024-22/whirlwind.warc.wet.gz", "rb") as fh:
        wet = next(r.content_stream().read().decode() for r in ArchiveIterator(fh) if r.rec_type == "conversion")
    # Our prose lines are Common Crawl's text too (tables are rendered differently, so only prose is compared)...
    prose = [line.removeprefix("- ") for line in doc["text"].splitlines() if len(line) >= 40 and "|" not in line]
    assert len(prose) >= 5 and all(norm(line) in norm(wet) for line in prose)
    # ...without the navigation and tool boxes that the WET conversion keeps.
    for boilerplate in ("Menú principal", "Ir al contenido", "Descargar como PDF", "Ferramientas personals"):
        assert boilerplate in wet and boilerplate not in doc["text"]
    assert len(doc["text"]) < 0.6 * len(wet)


# ------------------------------------------------------------------------------------------ trafilatura eval set
# Measured in the default mode, fallback (bench/extraction.py): F1 0.9229, precision 0.9054, recall 0.941 (fast mode
# 0.9191, the same as trafilatura's own gate for fast mode on raw bytes, 0.9195). The run is deterministic; the
# floors leave room for a trafilatura or lid.176 update, not for a broken pipeline.
EVAL_F1_FLOOR, EVAL_PRECISION_FLOOR, EVAL_RECALL_FLOOR = 0.91, 0.90, 0.92


def test_trafilatura_eval_set_through_the_full_path(shared_data, tmp_path, dask_client):
    pages = extract_eval.load_pages(shared_data / "extraction" / "trafilatura-eval")
    assert len(pages) == 990
    extract_eval.write_warcs(pages, tmp_path / "in", files=8)
    config = cc.CommonCrawlConfig(inputs=[str(tmp_path / "in" / "*.warc.gz")], min_text_chars=1, timeout_s=300)
    summary = cc.run(dataclasses.replace(config, output=str(tmp_path / "out")),
                     RunContext(client=dask_client, console=Console(file=io.StringIO())))
    assert summary.files == 8 and summary.counts["html_responses"] == 990 and summary.errors == 0
    # One page's URL has a space, which warcio replaces (and says so); five pages are UTF-8 but for a few invalid
    # bytes, which are replaced (and reported) instead of decoding the page as another code page.
    assert summary.warnings == 6
    texts = {}
    for shard in (tmp_path / "out").glob("*.parquet"):
        table = pq.read_table(shard, columns=["origin_id", "text"])
        texts.update(zip(table.column("origin_id").to_pylist(), table.column("text").to_pylist()))
    assert len(texts) >= 980  # a handful of pages have no main text at all
    result = extract_eval.score((page, texts.get(page.record_id)) for page in pages)
    assert result["f1"] >= EVAL_F1_FLOOR, result
    assert result["precision"] >= EVAL_PRECISION_FLOOR and result["recall"] >= EVAL_RECALL_FLOOR, result
