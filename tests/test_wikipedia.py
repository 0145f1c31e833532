"""The Wikipedia stage on real dumps (../shared/data) and on dumps the tests build: splitting by byte ranges and
multistream index, damaged bz2 and malformed pages, resume, byte-identical output, the CLI and `download`."""

from __future__ import annotations

import dataclasses
import bz2
import hashlib
import http.server
import json
import re
import threading
from functools import partial
from pathlib import Path

import pytest
import shard_io
from shard_io import read_errors

from corpusforge import cli
from corpusforge.formats import mediawiki
from corpusforge.runtime import FileReport, RunContext
from corpusforge.sample import wikipedia as sample_wiki
from corpusforge.sources import wikipedia

MARKUP = re.compile(r"\[\[|\]\]|\{\{|\}\}|<ref|</ref|\{\||\|\}|\bthumb\||&[a-z]+;|''")
WEATHER = ["rain", "sleet", "fog", "sunshine", "snow", "wind", "hail", "drizzle"]


def station_pages(n: int, first_id: int = 1000) -> list[dict]:
    """`n` short articles about weather stations (with the usual markup), every 10th a redirect."""
    pages = []
    for i in range(n):
        pid = first_id + i
        if i % 10 == 9:
            pages.append({"title": f"Station {pid} (old name)", "ns": 0, "id": pid, "rev": 50_000 + i,
                          "timestamp": "2022-03-04T05:06:07Z", "redirect": f"Station {pid - 1}",
                          "text": f"#REDIRECT [[Station {pid - 1}]]"})
            continue
        w1, w2 = WEATHER[i % 8], WEATHER[(i * 3 + 1) % 8]
        records = (f"The wettest month on record at station {pid} brought {i % 97 + 20} millimetres of {w1}; the "
                   f"driest brought almost none. ")
        text = (f"{{{{Infobox weather station|name=Station {pid}|elevation={{{{convert|{i}|m}}}}}}}}\n"
                f"[[File:Station {pid}.jpg|thumb|The mast of station {pid}]]\n"
                f"'''Station {pid}''' is a weather station number {pid} on the coast, known for its {w1}.<ref>"
                f"{{{{cite web|title=Records {pid}}}}}</ref> Observers there have written down the {w2} every "
                f"morning since {1850 + i % 150}, and their notebooks fill {i + 3} shelves of the county archive.\n\n"
                f"== Records ==\n{records * 3}\n\n{{| class=\"wikitable\"\n! Month !! {w2}\n|-\n| May || {i}\n|}}\n"
                f"[[Category:Stations]]\n")
        pages.append({"title": f"Station {pid}", "ns": 0, "id": pid, "rev": 50_000 + i,
                      "timestamp": f"2023-{i % 12 + 1:02d}-{i % 28 + 1:02d}T12:00:00Z", "text": text})
    return pages


def write(path: Path, pages: list[dict], **kw) -> dict:
    return sample_wiki.write_dump(path, pages, **sample_wiki.EN_SITE, **kw)


def read_docs(folder: Path) -> list[dict]:
    return shard_io.read_docs(folder, key=lambda r: r["page_id"])


def run(tmp: Path, inputs, client, **kw):
    config = wikipedia.WikipediaConfig(inputs=[str(i) for i in inputs], **kw)
    config.validate()
    summary = wikipedia.run(dataclasses.replace(config, output=str(tmp)), RunContext(client=client))
    return summary, read_docs(tmp)


def page_spans(xml: bytes) -> dict[int, tuple[int, int]]:
    """page id -> [start, end) of its <page> element in the uncompressed XML."""
    spans = {}
    for m in re.finditer(rb"<page>.*?</page>", xml, re.S):
        spans[int(re.search(rb"<id>(\d+)</id>", m.group(0)).group(1))] = (m.start(), m.end())
    return spans


# ------------------------------------------------------------------------------------------------- real dumps
@pytest.fixture(scope="module")
def enwiki_run(shared_data, dask_client, tmp_path_factory):
    """The real enwiki chunk, split into ~7 byte ranges of its single bz2 stream, through the stage on Dask."""
    dump = (shared_data / "wikipedia" / "gensim-testdata" /
            "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    out = tmp_path_factory.mktemp("enwiki")
    summary, docs = run(out, [dump], dask_client, split_bytes=256 << 10)
    return dump, out, summary, docs


@pytest.mark.shared_data
@pytest.mark.slow
def test_enwiki_chunk_end_to_end(enwiki_run):
    dump, out, summary, docs = enwiki_run
    assert summary.files == 7  # 1.7 MB in ranges of 256 KiB
    c = summary.counts
    assert c["pages"] == 206 and c["skipped_redirect"] == 100
    assert c["documents"] + c.get("skipped_disambiguation", 0) + c.get("skipped_short", 0) == 106
    assert c["documents"] == len(docs) >= 90 and c.get("skipped_disambiguation", 0) >= 5
    assert summary.errors == 0 and read_errors(out) == []
    assert len({d["page_id"] for d in docs}) == len(docs)
    titles = {d["title"] for d in docs}
    assert "Anarchism" in titles and "AccessibleComputing" not in titles  # a redirect
    assert not any(t.endswith("(disambiguation)") for t in titles)
    anarchism = next(d for d in docs if d["title"] == "Anarchism")
    assert anarchism["url"] == "https://en.wikipedia.org/wiki/Anarchism"
    assert anarchism["source"] == "wikipedia" and anarchism["lang"] == "en" and anarchism["lang_score"] > 0.9
    assert anarchism["origin_id"] == str(anarchism["page_id"]) == "12"
    assert anarchism["revision_id"] > 0 and anarchism["crawl_time"].year == 2016
    assert anarchism["text"].startswith("Anarchism is a political philosophy that advocates self-governed")
    assert anarchism["origin_file"] == str(dump)
    text = {d["title"]: d["text"] for d in docs}  # inline templates keep their text: {{convert}}, {{IPAc-en}}
    assert "with 52,419 square miles of total area" in text["Alabama"]
    assert text["Abraham Lincoln"].startswith("Abraham Lincoln (/ˈeɪbrəhæm ˈlIŋkən/; February 12, 1809 – April 15, "
                                              "1865) was the 16th President of the United States")
    leaks = [d["title"] for d in docs if MARKUP.search(d["text"])]
    assert leaks == [], leaks
    assert all(d["lang"] == "en" for d in docs)


@pytest.mark.shared_data
def test_ranges_give_the_pages_of_the_whole_file(shared_data):
    """Byte ranges cut anywhere (bz2 here: mid-block) read every page exactly once, with the same offsets."""
    dump = (shared_data / "wikipedia" / "gensim-testdata" /
            "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    site = mediawiki.read_siteinfo(str(dump))
    whole = [(p.page_id, p.offset) for p in mediawiki.iter_pages(str(dump), encoding=site.encoding,
                                                                   report=FileReport(input=str(dump)))]
    size = dump.stat().st_size
    for step in (300_000,):
        got = []
        for start in range(0, size, step):
            got += [(p.page_id, p.offset) for p in mediawiki.iter_pages(
                str(dump), start, min(start + step, size), encoding=site.encoding, report=FileReport(input="x"))]
        assert got == whole
    assert len(whole) == 206


@pytest.mark.shared_data
def test_table_markup_articles(shared_data, dask_client, tmp_path):
    dump = shared_data / "wikipedia" / "gensim-testdata" / "enwiki-table-markup.xml.bz2"
    summary, docs = run(tmp_path, [dump], dask_client, article_url="https://en.wikipedia.org/wiki/")
    assert {d["title"] for d in docs} == {"Constructive vote of no confidence", "Brahui language",
                                          "Economy of Estonia", "List of Prison Break characters",
                                          "Academy Award for Best Production Design"}
    text_bytes = summary.counts.pop("out.wikipedia.bytes")  # the corpus funnel's bytes: the documents' text
    assert text_bytes == sum(len(d["text"].encode("utf-8")) for d in docs)
    # no <siteinfo>: no wiki language to check against
    assert summary.counts == {"pages": 5, "documents": 5, "out.wikipedia.documents": 5}
    for d in docs:
        assert not MARKUP.search(d["text"]) and not re.search(r"^\s*[|!]|\|\|", d["text"], re.M), d["title"]
        assert d["url"] == "https://en.wikipedia.org/wiki/" + d["title"].replace(" ", "_")
    estonia = next(d for d in docs if d["title"] == "Economy of Estonia")
    assert len(estonia["text"]) > 5000 and "Estonia" in estonia["text"]


@pytest.mark.shared_data
def test_utf16_bgwiki_dump_split_into_ranges(shared_data, dask_client, tmp_path):
    dump = shared_data / "wikipedia" / "gensim-testdata" / "bgwiki-latest-pages-articles-shortened.xml.bz2"
    site = mediawiki.read_siteinfo(str(dump))
    assert site.encoding == "utf-16-le" and site.lang == "bg" and site.namespaces[6] == ["Файл"]
    summary, docs = run(tmp_path, [dump], dask_client, split_bytes=8192)
    assert summary.files == -(-dump.stat().st_size // 8192) == 10
    assert summary.counts.pop("out.wikipedia.bytes") > 0
    assert summary.counts == {"pages": 3, "skipped_namespace": 2, "documents": 1, "out.wikipedia.documents": 1}
    (doc,) = docs
    assert doc["title"] == "Григориански календар" and doc["lang"] == "bg"
    assert doc["url"] == "https://bg.wikipedia.org/wiki/%D0%93%D1%80%D0%B8%D0%B3%D0%BE%D1%80%D0%B8%D0%B0%D0%BD%D1%81" \
                         "%D0%BA%D0%B8_%D0%BA%D0%B0%D0%BB%D0%B5%D0%BD%D0%B4%D0%B0%D1%80"
    assert doc["text"].startswith("Григорианският календар")
    assert "Файл:" not in doc["text"] and "Категория:" not in doc["text"]


@pytest.mark.shared_data
def test_export_0_9_schema(shared_data, dask_client, tmp_path):
    dump = shared_data / "wikipedia" / "wikipedia2vec-testdata" / "enwiki-pages-articles-sample.xml.bz2"
    summary, docs = run(tmp_path, [dump], dask_client)
    assert summary.counts["pages"] == 3 and summary.counts["skipped_redirect"] == 1
    assert {d["title"] for d in docs} == {"Accessibility", "Computer accessibility"}
    assert all(d["url"].startswith("http://en.wikipedia.org/wiki/") for d in docs)


# --------------------------------------------------------------------------------------- dumps the tests build
def test_sample_dumps_redirect_disambiguation_namespaces(dask_client, tmp_path):
    sample_wiki.build(tmp_path / "in", 1)
    summary, docs = run(tmp_path / "out", [tmp_path / "in"], dask_client)
    c = summary.counts
    assert c["pages"] == 14 and c["skipped_redirect"] == 2 and c["skipped_disambiguation"] == 2
    assert c["skipped_namespace"] == 3 and c["documents"] == 7
    by_title = {d["title"]: d for d in docs}
    assert set(by_title) == {"River", "Lighthouse", "Sourdough", "Tide", "Fluss", "Leuchtturm", "Sauerteig"}
    river = by_title["River"]["text"]
    assert river.startswith("A river is a natural stream of fresh water that flows toward an ocean")
    assert "\nCourse\n" in river and "\nMouth\n" in river  # headings as lines
    for gone in ("footbridge", "Longest rivers", "Nile", "Rivers of the world", "Reflist", "Hydrology",
                 "Rivière", "Stream\n"):
        assert gone not in river
    fluss = by_title["Fluss"]["text"]
    assert "Auenlandschaft" not in fluss and "Einzelnachweise" not in fluss and "Weblinks" not in fluss
    assert by_title["Fluss"]["lang"] == "de" and by_title["Fluss"]["url"] == "https://de.wikipedia.org/wiki/Fluss"
    assert "Nordseeküste" not in by_title["Leuchtturm"]["text"] and "alte Linse" not in by_title["Leuchtturm"]["text"]


def test_multistream_index_splits_at_streams(dask_client, tmp_path):
    pages = station_pages(120)
    info = write(tmp_path / "in" / "testwiki-20240101-pages-articles-multistream.xml.bz2", pages,
                 multistream=True, pages_per_stream=10)
    dump = Path(info["dump"])
    index = {}
    for line in bz2.decompress(Path(info["index"]).read_bytes()).decode().splitlines():
        offset, pid, _ = line.split(":", 2)
        index[int(pid)] = int(offset)
    config = wikipedia.WikipediaConfig(inputs=[str(dump)], split_bytes=4096)
    items = wikipedia.plan(config)
    starts = [wikipedia.parse_item(i)[1] for i in items]
    assert len(items) > 3 and set(starts[1:]) <= set(index.values())  # ranges begin at streams
    summary, docs = run(tmp_path / "split", [dump], dask_client, split_bytes=4096)
    whole_summary, whole = run(tmp_path / "whole", [dump], dask_client)
    assert summary.files == len(items) and whole_summary.files == 1
    assert [(d["page_id"], d["text"], d["origin_offset"]) for d in docs] == \
           [(d["page_id"], d["text"], d["origin_offset"]) for d in whole]
    assert len(docs) == 108 and summary.counts["skipped_redirect"] == 12
    assert all(d["origin_offset"] == index[d["page_id"]] for d in docs)  # where to seek to find the page
    assert all(not MARKUP.search(d["text"]) and "mast of station" not in d["text"] for d in docs)


def test_truncated_bz2_keeps_every_complete_page(dask_client, tmp_path):
    pages = station_pages(300)
    info = write(tmp_path / "full.xml.bz2", pages, compresslevel=1)  # 100 kB blocks: several per file
    data = Path(info["dump"]).read_bytes()
    cut = tmp_path / "in" / "cut-pages-articles.xml.bz2"
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) * 2 // 3])
    prefix = bz2.BZ2Decompressor().decompress(cut.read_bytes())  # what survives: the complete blocks
    complete = {pid for pid, (a, b) in page_spans(prefix).items()}
    expected = {p["id"] for p in pages if p["id"] in complete and not p.get("redirect")}
    summary, docs = run(tmp_path / "out", [cut], dask_client, split_bytes=16384)
    assert {d["page_id"] for d in docs} == expected and len(expected) > 100
    errs = read_errors(tmp_path / "out")
    assert any("ends inside the bz2 block" in e["reason"] and e["file"] == str(cut) for e in errs)
    assert all(e["file"] == str(cut) and isinstance(e["offset"], int) for e in errs)
    assert summary.errors == len(errs) >= 1


def test_corrupt_block_keeps_pages_before_and_after(dask_client, tmp_path):
    pages = station_pages(300)
    info = write(tmp_path / "full.xml.bz2", pages, compresslevel=1)
    data = Path(info["dump"]).read_bytes()
    xml = bz2.decompress(data)
    # Where each block ends, in compressed and uncompressed bytes, by the standard decoder alone.
    dec, marks, out = bz2.BZ2Decompressor(), [], 0
    for i in range(0, len(data), 64):
        got = dec.decompress(data[i:i + 64])
        if got:
            out += len(got)
            marks.append((i + 64, out))
    assert len(marks) >= 4
    damaged = bytearray(data)
    middle = (marks[1][0] + marks[2][0]) // 2
    damaged[middle:middle + 16] = bytes(16)
    bad = tmp_path / "in" / "bad-pages-articles.xml.bz2"
    bad.parent.mkdir()
    bad.write_bytes(bytes(damaged))
    lost_range = (marks[1][1], marks[2][1])  # the third block's bytes of XML
    spans = page_spans(xml)
    lost = {pid for pid, (a, b) in spans.items() if a < lost_range[1] and b > lost_range[0]}
    expected = {p["id"] for p in pages if p["id"] not in lost and not p.get("redirect")}
    summary, docs = run(tmp_path / "out", [bad], dask_client, split_bytes=32768)
    got = {d["page_id"] for d in docs}
    assert got == expected
    assert min(lost) > min(got) and max(lost) < max(got)  # good pages on both sides survive
    errs = read_errors(tmp_path / "out")
    corrupt = [e for e in errs if "corrupt bz2 block" in e["reason"]]
    assert len(corrupt) == 1 and marks[1][0] - 64 <= corrupt[0]["offset"] <= middle
    assert any(e["reason"].startswith("page lost") for e in errs)


@pytest.mark.parametrize("suffix", [".xml", ".xml.bz2"])
def test_malformed_pages_are_reported_and_skipped(dask_client, tmp_path, suffix):
    pages = station_pages(40)
    broken_tag, unclosed = pages[11]["id"], pages[25]["id"]

    def damage(page: dict) -> str:
        xml = sample_wiki.page_xml(page)
        if page["id"] == broken_tag:
            return xml.replace("</title>", "</titel>")
        if page["id"] == unclosed:
            return xml.replace("  </page>\n", "")
        return xml

    info = write(tmp_path / "in" / f"broken-pages-articles{suffix}", pages, page_text=damage,
                 multistream=suffix.endswith("bz2"), pages_per_stream=8)
    summary, docs = run(tmp_path / "out", [info["dump"]], dask_client, split_bytes=2048)
    expected = {p["id"] for p in pages if not p.get("redirect")} - {broken_tag, unclosed}
    assert {d["page_id"] for d in docs} == expected
    errs = read_errors(tmp_path / "out")
    assert summary.counts["malformed_pages"] == 2 and len(errs) == 2
    assert {e["stage"] for e in errs} == {"xml"} and all(e["file"] == info["dump"] for e in errs)
    if suffix == ".xml":  # plain XML: the offset is the page's own byte offset
        raw = Path(info["dump"]).read_bytes()
        for e in errs:
            assert raw[e["offset"]:e["offset"] + 6] == b"<page>"
        assert sorted(int(re.search(rb"<id>(\d+)</id>", raw[e["offset"]:e["offset"] + 200]).group(1))
                      for e in errs) == sorted([broken_tag, unclosed])


def test_resume_and_byte_identical_output(dask_client, tmp_path):
    sample_wiki.build(tmp_path / "in", 1)
    first, _ = run(tmp_path / "a", [tmp_path / "in"], dask_client, split_bytes=2048)
    again, _ = run(tmp_path / "a", [tmp_path / "in"], dask_client, split_bytes=2048)
    assert again.resumed_files == again.files == first.files == 5 and again.counts == first.counts
    run(tmp_path / "b", [tmp_path / "in"], dask_client, split_bytes=2048)
    shards = sorted(p.name for p in (tmp_path / "a").glob("*.parquet"))
    assert shards == sorted(p.name for p in (tmp_path / "b").glob("*.parquet")) and len(shards) == 5
    for name in shards:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_cli_reads_a_dump(tmp_path):
    info = write(tmp_path / "plain.xml", station_pages(12))
    out = tmp_path / "out"
    assert cli.main(["wikipedia", info["dump"], "--output", str(out), "--workers", "1", "--min-chars", "100"]) == 0
    assert json.loads((out / "_summary.json").read_text())["counts"]["documents"] == 11
    assert cli.main(["wikipedia", str(tmp_path / "missing.xml"), "--output", str(out)]) == 2


# ------------------------------------------------------------------------------------------------ download
class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with `Range: bytes=N-` support, as dumps.wikimedia.org serves them."""

    def log_message(self, *args):  # quiet
        pass

    def send_head(self):
        rng = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not rng or not path.is_file():
            return super().send_head()
        start = int(re.match(r"bytes=(\d+)-", rng).group(1))
        size = path.stat().st_size
        if start >= size:
            self.send_error(416)
            return None
        fh = open(path, "rb")
        fh.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        return fh


@pytest.fixture()
def dump_server(tmp_path):
    """A loopback HTTP server with testwiki/20240101/ (multistream dump, index, sha1sums) and latest/."""
    root = tmp_path / "www"
    dated = root / "testwiki" / "20240101"
    info = write(dated / "testwiki-20240101-pages-articles-multistream.xml.bz2", station_pages(30),
                 multistream=True, pages_per_stream=5)
    sums = "".join(f"{hashlib.sha1(Path(p).read_bytes()).hexdigest()}  {Path(p).name}\n"
                   for p in (info["dump"], info["index"]))
    (dated / "testwiki-20240101-sha1sums.txt").write_text(sums)
    latest = root / "testwiki" / "latest"
    latest.mkdir()
    for p in (info["dump"], info["index"]):  # latest/ holds the same files under "latest" names
        (latest / Path(p).name.replace("20240101", "latest")).write_bytes(Path(p).read_bytes())
    (latest / "testwiki-latest-sha1sums.txt").write_text(sums)  # listing the dated names, as Wikimedia's does
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_RangeHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", Path(info["dump"]), Path(info["index"])
    server.shutdown()
    server.server_close()


def test_download_verifies_and_resumes(dump_server, tmp_path, monkeypatch, capsys):
    base, dump, index = dump_server
    out = tmp_path / "dl"
    monkeypatch.setattr(wikipedia, "_LOG_EVERY", 4096)  # progress lines in a log (no terminal here)
    assert cli.main(["wikipedia", "download", "testwiki-20240101", "--output", str(out), "--base-url", base]) == 0
    size = dump.stat().st_size
    assert f"{dump.name}: {size:,} of {size:,} bytes" in capsys.readouterr().err.replace("\n", "")
    assert (out / dump.name).read_bytes() == dump.read_bytes()
    assert (out / index.name).read_bytes() == index.read_bytes()
    assert not list(out.glob(".*.part"))
    # An interrupted download resumes from its partial file (a Range request) and is verified whole.
    (out / dump.name).unlink()
    (out / f".{dump.name}.part").write_bytes(dump.read_bytes()[:1000])
    got = wikipedia.download("testwiki-20240101", out, base_url=base)
    assert (out / dump.name).read_bytes() == dump.read_bytes() and len(got) == 2
    # "latest" names are found in a checksum file that lists the dated names.
    latest = wikipedia.download("testwiki", tmp_path / "latest", base_url=base)
    assert [p.name for p in latest] == ["testwiki-latest-pages-articles-multistream.xml.bz2",
                                        "testwiki-latest-pages-articles-multistream-index.txt.bz2"]
    # The downloaded dump is a dump the stage reads (with its index beside it).
    assert wikipedia.index_path(str(latest[0])) == str(latest[1])


def test_download_refuses_a_bad_checksum(dump_server, tmp_path):
    base, dump, _ = dump_server
    sums = dump.parent / "testwiki-20240101-sha1sums.txt"
    sums.write_text(sums.read_text().replace(hashlib.sha1(dump.read_bytes()).hexdigest(), "0" * 40))
    out = tmp_path / "dl"
    assert cli.main(["wikipedia", "download", "testwiki-20240101", "--output", str(out), "--base-url", base]) == 1
    assert not (out / dump.name).exists() and not list(out.glob(".*.part"))
    with pytest.raises(wikipedia.DownloadError, match="does not match"):
        wikipedia.download("testwiki-20240101", out, base_url=base)
    with pytest.raises(wikipedia.DownloadError, match="no checksum file"):
        wikipedia.download("otherwiki-20240101", out, base_url=base)


def test_dump_names():
    assert wikipedia.dump_files("enwiki") == ("enwiki", "latest", [
        "enwiki-latest-pages-articles-multistream.xml.bz2", "enwiki-latest-pages-articles-multistream-index.txt.bz2"])
    assert wikipedia.dump_files("dewiki-20240601-pages-articles.xml.bz2") == (
        "dewiki", "20240601", ["dewiki-20240601-pages-articles.xml.bz2"])
    with pytest.raises(wikipedia.DownloadError):
        wikipedia.dump_files("not a name")


def test_config_errors_name_the_key():
    from corpusforge import recipe

    with pytest.raises(recipe.RecipeError, match=r"\[wikipedia\]: split_bytes"):
        recipe.from_dict(wikipedia.WikipediaConfig, {"inputs": ["x"], "split_bytes": 10}, "r.toml: [wikipedia]")
    with pytest.raises(recipe.RecipeError, match="unknown key"):
        recipe.from_dict(wikipedia.WikipediaConfig, {"inputs": ["x"], "splitbytes": 10}, "r.toml: [wikipedia]")
    with pytest.raises(recipe.RecipeError, match=r"\[wikipedia\]: inline_templates.Höhe: unbalanced braces"):
        recipe.from_dict(wikipedia.WikipediaConfig, {"inputs": ["x"], "inline_templates": {"Höhe": "{1 m"}},
                         "r.toml: [wikipedia]")


def test_inline_templates_from_the_config_reach_the_vocabulary():
    from corpusforge import recipe
    from corpusforge.formats import wikitext

    config = recipe.from_dict(wikipedia.WikipediaConfig, {"inputs": ["x"], "inline_templates": {"Höhe": "{1} m"}},
                              "r.toml: [wikipedia]")
    site = mediawiki.SiteInfo(dbname="dewiki", lang="de", base_url=None, encoding="utf-8", namespaces={})
    vocab = config.vocabulary(site)
    assert wikitext.to_text("Der Gipfel liegt auf {{Höhe|2962|DE-NHN}}, {{convert|5|km}} entfernt.", vocab) == \
        "Der Gipfel liegt auf 2962 m, 5 kilometres entfernt."


def test_damaged_header_block_falls_back_to_default_namespaces(dask_client, tmp_path):
    pages = station_pages(300)
    info = write(tmp_path / "enwiki-20240101-pages-articles.xml.bz2", pages, compresslevel=1)
    data = Path(info["dump"]).read_bytes()
    xml = bz2.decompress(data)
    dec, first_block_end, out = bz2.BZ2Decompressor(), None, 0
    for i in range(0, len(data), 64):  # the first block's end, in uncompressed bytes, by the standard decoder
        out += len(dec.decompress(data[i:i + 64]))
        if out:
            first_block_end = out
            break
    damaged = bytearray(data)
    damaged[200:216] = bytes(16)  # inside the first block, which holds <siteinfo>
    bad = tmp_path / "in" / "enwiki-20240101-pages-articles.xml.bz2"
    bad.parent.mkdir()
    bad.write_bytes(bytes(damaged))
    lost = {pid for pid, (a, b) in page_spans(xml).items() if a < first_block_end}
    expected = {p["id"] for p in pages if p["id"] not in lost and not p.get("redirect")}
    summary, docs = run(tmp_path / "out", [bad], dask_client, split_bytes=32768)
    assert {d["page_id"] for d in docs} == expected and len(expected) > 150
    assert {d["lang"] for d in docs} == {"en"}
    assert all("[[File:" not in d["text"] and "thumb" not in d["text"] for d in docs)  # namespaces still known
    errs = read_errors(tmp_path / "out")
    warnings = [e for e in errs if e.get("level") == "warning"]
    assert warnings and all(e["reason"].startswith("dump header unreadable (corrupt bz2 block")
                            and e["reason"].endswith("using the built-in namespace names and language en")
                            for e in warnings)


def test_undefined_entity_in_siteinfo_falls_back(dask_client, tmp_path):
    pages = station_pages(20)
    info = write(tmp_path / "src" / "enwiki-20240101-pages-articles.xml", pages)
    xml = Path(info["dump"]).read_text(encoding="utf-8")
    dump = tmp_path / "enwiki-20240101-pages-articles.xml"
    dump.write_text(xml.replace("<sitename>Wikipedia", "<sitename>Wiki&bogus;pedia", 1), encoding="utf-8")
    summary, docs = run(tmp_path / "out", [dump], dask_client)
    assert len(docs) == 18 and {d["lang"] for d in docs} == {"en"}
    (warning,) = read_errors(tmp_path / "out")
    assert warning["level"] == "warning" and "<siteinfo> is not well-formed XML" in warning["reason"]
    assert summary.errors == 0 and summary.warnings == 1


def test_zero_byte_dump_is_reported(tmp_path):
    empty = tmp_path / "enwiki-20240101-pages-articles.xml.bz2"
    empty.write_bytes(b"")
    report = wikipedia.dump_to_shard(str(empty), str(tmp_path / "out"), wikipedia.WikipediaConfig(inputs=["x"]))
    assert [e["reason"] for e in report.errors] == ["cannot read the dump: ValueError: empty file (0 bytes)"]
