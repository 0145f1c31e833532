"""Benchmark of the Wikipedia path: pages per second per core, where the time goes, and what splitting buys.

    .venv/bin/python -m bench.wikipedia [--repeat N]

Input: the real first chunk of an enwiki pages-articles dump in ../shared/data (206 pages, 100 redirects, 6.1 MB
of XML in a 1.7 MB single-stream bz2). In this process, one core, it measures the CPU time of each step over the
whole dump - bz2 decoding, XML (cutting pages and parsing them with lxml), wikitext -> text, language ID, writing
the shard - and times each against the usual way of doing the same step, on the same data in the same run:

* bz2: our block-by-block decoder (what lets a range start anywhere and read past damage) vs `bz2.BZ2File`;
* XML: a page at a time with lxml vs `lxml.etree.iterparse` over the whole stream (clearing elements);
* wikitext: our token walk vs mwparserfromhell's own `parse(text).strip_code()`, and how much markup each leaves;
* end to end: our path vs that usual pipeline (BZ2File + iterparse + strip_code + the same language ID).

The in-process steps are timed in CPU time, not wall time, so other work on the machine skews them less (each is
the best of 3 runs). What splitting costs: reading the pages of the dump cut into 2 and 7 byte ranges vs whole, in
CPU time. Then the stage itself on a LocalCluster: 1 worker on the whole file vs 2 workers on 2 byte ranges (wall
time, which depends on what else the machine runs). The 65 Gutenberg books give one more row: the books path's
throughput. Results: bench/results/wikipedia.json ("table" feeds the README).
"""

from __future__ import annotations

import dataclasses
import argparse
import bz2
import json
import os
import platform
import re
import tempfile
import time
from pathlib import Path

from corpusforge import language
from corpusforge.inputs import resolve
from corpusforge.formats import bzip2, mediawiki, wikitext
from corpusforge.runtime import FileReport, RunContext, ShardWriter
from corpusforge.sources import books, wikipedia

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CORPUSFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
DUMP = SHARED / "wikipedia" / "gensim-testdata" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
GUTENBERG = SHARED / "books" / "gutenberg-test-corpus"
RESULTS = ROOT / "bench" / "results" / "wikipedia.json"
# Markup that must not reach article text: links, templates, references, tables, entities, image options.
MARKUP = re.compile(r"\[\[|\]\]|\{\{|\}\}|<ref|</ref|\{\||\|\}|\bthumb\||&[a-z]+;|''|\d+px\|")


REPEAT = 3


def cpu(fn):
    """(result, least CPU seconds of this process over REPEAT runs) of fn()."""
    best = float("inf")
    for _ in range(REPEAT):
        t = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t)
    return out, best


def ours(path: str, out_dir: Path) -> tuple[dict[str, float], dict]:
    """Our path, step by step over the whole dump: CPU seconds per step and what came out."""
    site = mediawiki.read_siteinfo(path)
    config = wikipedia.WikipediaConfig(inputs=[path])
    vocab = config.vocabulary(site)
    report = FileReport(input=path)
    blocks, t_bz2 = cpu(lambda: list(bzip2.read_blocks(path)))
    xml_copy = out_dir / "dump.xml"  # the same XML uncompressed: reading pages from it is the XML step alone
    xml_copy.write_bytes(b"".join(b.data for b in blocks))
    pages, t_xml = cpu(lambda: list(mediawiki.iter_pages(str(xml_copy), encoding=site.encoding, report=report)))
    articles = [p for p in pages if p.ns == 0 and not p.redirect and not wikitext.is_redirect(p.text)]
    converted, t_wikitext = cpu(lambda: [wikitext.convert(p.text, vocab) for p in articles])
    kept = [(p, c) for p, c in zip(articles, converted)
            if not wikitext.is_disambiguation(p.title, c.templates, vocab) and len(c.text) >= config.min_chars]
    langs, t_lid = cpu(lambda: [language.identify(c.text) for _, c in kept])

    def write():
        from corpusforge.documents import make_document

        with ShardWriter(out_dir / "bench.parquet", row_group_rows=256) as writer:
            for (p, c), (lang, score) in zip(kept, langs):
                writer.write_rows([make_document(
                    source="wikipedia", text=c.text, lang=lang, lang_score=score, origin_file=path,
                    url=site.article_url(p.title), origin_id=str(p.page_id), title=p.title, origin_offset=p.offset,
                    page_id=p.page_id, revision_id=p.revision_id, crawl_time=p.timestamp)])

    _, t_write = cpu(write)
    steps = {"bz2": t_bz2, "xml": t_xml, "wikitext": t_wikitext, "language_id": t_lid, "write": t_write}
    leaks = sum(1 for _, c in kept if MARKUP.search(c.text))
    return steps, {"pages": len(pages), "articles": len(articles), "documents": len(kept), "markup_leaks": leaks,
                   "texts": {p.page_id: c.text for p, c in kept}}


def usual(path: str) -> tuple[dict[str, float], dict]:
    """The usual pipeline: BZ2File stream, iterparse with clearing, mwparserfromhell strip_code, lid.176."""
    import mwparserfromhell
    from lxml import etree

    data, t_bz2 = cpu(lambda: bz2.BZ2File(path).read())

    def xml():
        import io

        pages = []
        for _, el in etree.iterparse(io.BytesIO(data), events=("end",), tag="{*}page"):
            ns = el.findtext("{*}ns")
            text = el.findtext("{*}revision/{*}text") or ""
            pages.append((int(el.findtext("{*}id")), el.findtext("{*}title"), int(ns or 0),
                          el.find("{*}redirect") is not None, text))
            el.clear()
            while el.getprevious() is not None:
                del el.getparent()[0]
        return pages

    pages, t_xml = cpu(xml)
    articles = [p for p in pages if p[2] == 0 and not p[3]]
    texts, t_wikitext = cpu(lambda: [mwparserfromhell.parse(p[4]).strip_code().strip() for p in articles])
    _, t_lid = cpu(lambda: [language.identify(t) for t in texts])
    steps = {"bz2": t_bz2, "xml": t_xml, "wikitext": t_wikitext, "language_id": t_lid}
    return steps, {"pages": len(pages), "articles": len(articles), "texts": {p[0]: t for p, t in zip(articles, texts)}}


def split_cost(path: str, pieces: int) -> tuple[float, float]:
    """CPU seconds of reading every page of the dump (bz2 + XML) whole, and as `pieces` byte ranges read one after
    another: the extra work of cutting a single-stream dump (each range decodes the block it starts in, and the last
    page of a range is finished from the next range's first block)."""
    site = mediawiki.read_siteinfo(path)
    size = os.path.getsize(path)
    cuts = [size * k // pieces for k in range(pieces + 1)]

    def ranges():
        return [p for a, b in zip(cuts, cuts[1:])
                for p in mediawiki.iter_pages(path, a, b, encoding=site.encoding, report=FileReport(input=path))]

    whole, t_whole = cpu(lambda: list(mediawiki.iter_pages(path, encoding=site.encoding,
                                                           report=FileReport(input=path))))
    split, t_split = cpu(ranges)
    assert [p.page_id for p in split] == [p.page_id for p in whole]
    return t_whole, t_split


def stage_runs(path: str, repeat: int) -> dict[str, float]:
    """Best wall time of the stage on a started LocalCluster: 1 worker on the whole file, then 2 workers on the file
    cut in 2 byte ranges."""
    from corpusforge.runtime import dask_client

    size = os.path.getsize(path)
    out = {}
    for label, workers, split in (("1 worker, whole file", 1, size), ("2 workers, 2 ranges", 2, size // 2 + 1)):
        config = wikipedia.WikipediaConfig(inputs=[path], split_bytes=split)
        best = float("inf")
        with dask_client(workers=workers) as client:
            client.submit(sum, [1]).result()  # workers up
            with tempfile.TemporaryDirectory() as tmp:  # imports done and the model loaded in the workers
                wikipedia.run(dataclasses.replace(config, output=str(tmp)), RunContext(client=client))
            for _ in range(repeat):
                with tempfile.TemporaryDirectory() as tmp:
                    t = time.perf_counter()
                    wikipedia.run(dataclasses.replace(config, output=str(tmp)), RunContext(client=client))
                    best = min(best, time.perf_counter() - t)
        out[label] = best
    return out


def books_rate() -> dict:
    """CPU seconds and uncompressed MB of the 65 Gutenberg books through read, split and language ID."""
    config = books.BooksConfig(inputs=[str(GUTENBERG)])
    paths = resolve(config.inputs, what="book", folder_suffixes=books.BOOK_SUFFIXES, recursive=True)
    total_chars = parts = 0
    t = time.process_time()
    for path in paths:
        report = FileReport(input=path)
        book = books.read_book(path, config, report)
        for doc in books.book_documents(book, path, config, report):
            total_chars += len(doc["text"])
            parts += 1
    return {"books": len(paths), "parts": parts, "chars": total_chars, "cpu_s": time.process_time() - t}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each LocalCluster measurement (best kept)")
    args = parser.parse_args()
    if not DUMP.exists():
        raise SystemExit(f"the enwiki sample is not at {DUMP} (set CORPUSFORGE_SHARED_DATA)")
    path = str(DUMP)
    language.identify("warm up the model")
    with tempfile.TemporaryDirectory() as tmp:
        our_steps, our_out = ours(path, Path(tmp))
    usual_steps, usual_out = usual(path)
    assert our_out["pages"] == usual_out["pages"] == 206
    usual_leaks = sum(1 for pid, text in usual_out["texts"].items()
                      if pid in our_out["texts"] and MARKUP.search(text))
    our_total = sum(our_steps.values())
    usual_total = sum(usual_steps.values())
    pages = our_out["pages"]
    t_whole, t_split2 = split_cost(path, 2)
    _, t_split7 = split_cost(path, 7)
    runs = stage_runs(path, args.repeat)
    one, two = runs["1 worker, whole file"], runs["2 workers, 2 ranges"]
    book = books_rate()

    def share(step: str) -> str:
        return f"{100 * our_steps[step] / our_total:.0f}%"

    table = [
        {"what": "enwiki sample: pages/s per core, end to end (206 pages, 106 articles)",
         "result": f"{pages / our_total:,.1f}", "baseline": f"{pages / usual_total:,.1f} (BZ2File + iterparse + "
         "mwparserfromhell strip_code)", "ratio": f"{usual_total / our_total:.2f}x"},
        {"what": "where the time goes: bz2 / XML / wikitext / language ID / write",
         "result": " / ".join(share(s) for s in ("bz2", "xml", "wikitext", "language_id", "write")),
         "baseline": f"{our_total:.2f} CPU s in all", "ratio": "-"},
        {"what": "wikitext -> text, CPU s (106 articles, 6 MB)", "result": f"{our_steps['wikitext']:.2f}",
         "baseline": f"{usual_steps['wikitext']:.2f} (strip_code)",
         "ratio": f"{usual_steps['wikitext'] / our_steps['wikitext']:.2f}x"},
        {"what": f"articles with markup left (of {our_out['documents']})", "result": str(our_out["markup_leaks"]),
         "baseline": f"{usual_leaks} (strip_code)", "ratio": "-"},
        {"what": "bz2 block-by-block decode (splittable, recovers), CPU s", "result": f"{our_steps['bz2']:.2f}",
         "baseline": f"{usual_steps['bz2']:.2f} (BZ2File)", "ratio": f"{usual_steps['bz2'] / our_steps['bz2']:.2f}x"},
        {"what": "XML page by page (lxml), CPU s", "result": f"{our_steps['xml']:.2f}",
         "baseline": f"{usual_steps['xml']:.2f} (iterparse + clear)",
         "ratio": f"{usual_steps['xml'] / our_steps['xml']:.2f}x"},
        {"what": "reading pages (bz2 + XML) as 2 / 7 byte ranges vs whole, CPU s",
         "result": f"{t_split2:.2f} / {t_split7:.2f}", "baseline": f"{t_whole:.2f}",
         "ratio": f"{t_split2 / t_whole:.2f}x / {t_split7 / t_whole:.2f}x"},
        {"what": "stage wall time: 2 workers on 2 byte ranges vs 1 worker on the whole dump",
         "result": f"{two:.2f} s", "baseline": f"{one:.2f} s", "ratio": f"{one / two:.2f}x"},
        {"what": "books: 65 Gutenberg novels read, cleaned, split, language ID; MB/s per core",
         "result": f"{book['chars'] / 1e6 / book['cpu_s']:.1f}", "baseline": "-", "ratio": "-"},
    ]
    result = {
        "table": table,
        "steps_cpu_s": {"ours": our_steps, "usual": usual_steps},
        "counts": {k: v for k, v in our_out.items() if k != "texts"},
        "split_read_cpu_s": {"whole": t_whole, "2 ranges": t_split2, "7 ranges": t_split7},
        "stage_wall_s": runs,
        "books": book,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for row in table:
        print(f"{row['what']}: {row['result']} (baseline {row['baseline']}, {row['ratio']})")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
