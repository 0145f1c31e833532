"""The embedded sample crawl (corpusforge.sample.crawl): it builds byte-identically for a seed, and the CommonCrawl
path reads it as `_expected.json` says: every article in its language, without its boilerplate, every other record
skipped and counted under its reason, and the damaged record reported while the records around it are kept."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest

from corpusforge.runtime import ERRORS_FILE, SUMMARY_FILE, RunContext
from corpusforge.sample import crawl
from corpusforge.schema import check_table
from corpusforge.sources import commoncrawl

SEED = 1234


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    """The sample crawl built once, and its `_expected.json`."""
    out = tmp_path_factory.mktemp("crawl")
    crawl.build(out, SEED)
    return out, json.loads((out / "_expected.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def extracted(sample, tmp_path_factory, dask_client) -> tuple[Path, list[dict]]:
    """The CommonCrawl path run over the sample on the shared 2-worker LocalCluster: output dir and documents."""
    inputs, _ = sample
    out = tmp_path_factory.mktemp("commoncrawl")
    config = commoncrawl.CommonCrawlConfig(inputs=[str(inputs / "*.warc.gz")], min_lang_score=0.5)
    commoncrawl.run(dataclasses.replace(config, output=str(out)), RunContext(client=dask_client))
    docs = [row for shard in sorted(out.glob("*.parquet")) for row in pq.read_table(shard).to_pylist()]
    return out, docs


def _lines(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines()}


def test_build_is_byte_identical_for_a_seed(sample, tmp_path):
    inputs, expected = sample
    again = tmp_path / "again"
    crawl.build(again, SEED)
    names = sorted(p.name for p in inputs.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    assert len(expected["files"]) == crawl.FILES and all(n in names for n in expected["files"])
    for name in names:
        assert (inputs / name).read_bytes() == (again / name).read_bytes(), name
    other = tmp_path / "other-seed"
    crawl.build(other, SEED + 1)
    other_expected = json.loads((other / "_expected.json").read_text(encoding="utf-8"))
    assert set(other_expected["pages"]) == set(expected["pages"])  # same pages, other order and record ids
    assert (other / expected["files"][0]).read_bytes() != (inputs / expected["files"][0]).read_bytes()


def test_every_page_in_its_language_with_lineage(sample, extracted):
    inputs, expected = sample
    _, docs = extracted
    sites = {s["host"]: s for s in crawl.load_texts()["site"]}
    assert {d["url"]: d["lang"] for d in docs} == {url: p["lang"] for url, p in expected["pages"].items()}
    assert {d["lang"] for d in docs} == {s["lang"] for s in sites.values()}  # every language written is found
    for d in docs:
        page = expected["pages"][d["url"]]
        assert d["lang_score"] >= 0.9, (d["url"], d["lang_score"])  # lowest measured: 0.958 (an English recipe)
        assert (Path(d["origin_file"]).name, d["origin_offset"]) == (page["file"], page["offset"])
        assert d["source"] == "commoncrawl" and d["crawl_time"] is not None and d["origin_id"]


def test_article_text_kept_and_boilerplate_removed(extracted):
    _, docs = extracted
    texts = crawl.load_texts()
    sites = {s["host"]: s for s in texts["site"]}
    articles = {a["title"]: a for a in texts["article"]}
    banners = [c["banner"] for c in texts["copy"] if "banner" in c]
    for d in docs:
        site, article = sites[urlsplit(d["url"]).hostname], articles[d["title"]]
        paragraphs = [p.strip() for p in article["text"].strip().split("\n\n")]
        # The opening and closing paragraphs come through whole: charset decoding and extraction are both right.
        assert paragraphs[0] in d["text"] and paragraphs[-1] in d["text"], d["url"]
        for phrase in [site["cookie"], site["newsletter"], site["copyright"], site["tagline"], *site["extra_links"],
                       *banners]:
            assert phrase not in d["text"], (d["url"], phrase)
        labels = set(site["menu"]) | set(site["footer_links"]) | set(site["cookie_buttons"]) | {site["related_label"]}
        assert not labels & _lines(d["text"]), (d["url"], labels & _lines(d["text"]))


def test_every_skipped_record_counted_under_its_reason(sample, extracted):
    _, expected = sample
    out, docs = extracted
    counts = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8"))["counts"]
    records, responses = expected["records"], expected["responses"]
    assert counts == {
        "records": sum(records.values()),
        "skipped_warcinfo": records["warcinfo"],
        "skipped_request": records["request"],
        "skipped_metadata": records["metadata"],
        "skipped_revisit": records["revisit"],
        "skipped_status": responses["error_status"],
        "skipped_non_html": responses["non_html"],
        "html_responses": responses["html"],
        "extracted": responses["html"],
        "documents": responses["html"],
        # the corpus funnel's bytes: HTML bodies (encoded in their charsets), then the documents' text
        "html_bytes": counts["html_bytes"],
        "extracted_bytes": sum(len(d["text"].encode("utf-8")) for d in docs),
        "out.commoncrawl.documents": responses["html"],
        "out.commoncrawl.bytes": sum(len(d["text"].encode("utf-8")) for d in docs),
    }
    assert counts["html_bytes"] > counts["extracted_bytes"]
    assert len(docs) == len(expected["pages"]) == responses["html"]
    assert responses["error_status"] == 3 and responses["non_html"] == 5 and records["revisit"] == 2


def test_damaged_record_reported_and_its_neighbours_kept(sample, extracted):
    _, expected = sample
    out, docs = extracted
    damaged = expected["damaged"]
    errors = [json.loads(line) for line in (out / ERRORS_FILE).read_text(encoding="utf-8").splitlines()]
    assert len(errors) == 1
    assert Path(errors[0]["file"]).name == damaged["file"]
    assert errors[0]["offset"] == damaged["offset"] and errors[0]["stage"] == "read"
    in_damaged_file = {d["url"] for d in docs if Path(d["origin_file"]).name == damaged["file"]}
    assert damaged["pages_before"] and damaged["pages_after"]
    assert in_damaged_file == set(damaged["pages_before"]) | set(damaged["pages_after"])
    assert damaged["url"] not in {d["url"] for d in docs}


def test_one_valid_shard_per_input_file(sample, extracted):
    _, expected = sample
    out, _ = extracted
    shards = sorted(out.glob("*.parquet"))
    assert sorted(s.name.rsplit("-", 1)[0] for s in shards) == sorted(
        f.removesuffix(".warc.gz") for f in expected["files"])
    for shard in shards:
        check_table(pq.read_table(shard))
