"""Real good text and junk for measuring the quality rules (`bench/quality_rules.py`,
tests/test_quality_false_drops.py).

Good text, every set from ../shared/data (or CORPUSFORGE_SHARED_DATA) through the project's own readers, each
document tagged with its `set`, `lang` (lid.176, or the page's own metadata where it has one) and `kind`:

* `trafilatura`: the main text of trafilatura's 990 evaluation pages, extracted as the commoncrawl stage extracts
  (`extract.extract_in_process`, fast mode).
* `readability`: the text of Mozilla readability's `expected.html` (hand-checked article HTML, so full ground truth)
  for its real pages: the hand-made test cases (a source under 5 kB, or "lorem ipsum" filler) are left out.
* `wikipedia`: the enwiki dump chunk and the table-markup dump through the wikipedia reader, the Bulgarian dump, and
  the wtf_wikipedia articles through `wikitext.to_text`.
* `gutenberg`: every Gutenberg novel of the test corpus through the books reader, in parts of at most 20,000
  characters.
* `warc`: the articles among the WARC captures (the Mona Lisa and Escopete Wikipedia captures) through the
  commoncrawl reader.
* `docs`: documentation pages written here as trafilatura extracts such pages (`bench/goodtext_docs.toml`: manual
  and man-page text with configuration excerpts, command listings and tables in six languages), the kind of page
  the issue found the rules dropping.

Junk: the sample crawl's four junk pages and pages built here by kind (`junk_pages`).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CORPUSFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
TRAFILATURA = SHARED / "extraction" / "trafilatura-eval"
READABILITY = SHARED / "extraction" / "mozilla-readability-test-pages" / "pages"
WIKIPEDIA_DUMPS = [SHARED / "wikipedia" / "gensim-testdata" / name for name in (
    "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2", "enwiki-table-markup.xml.bz2",
    "bgwiki-latest-pages-articles-shortened.xml.bz2")]
WTF_WIKI = SHARED / "wikipedia" / "wtf_wikipedia-wikitext"
GUTENBERG = SHARED / "books" / "gutenberg-test-corpus"
WARC_ARTICLES = [SHARED / "warc" / "ukwa-webarchive-discovery" / "wikipedia-mona-lisa"
                 / "flashfrozen-jwat-recompressed.warc.gz",
                 SHARED / "warc" / "whirlwind-cc-2024-22" / "whirlwind.warc.gz"]
DOCS = Path(__file__).with_name("goodtext_docs.toml")
SETS = ("trafilatura", "readability", "wikipedia", "gutenberg", "warc", "docs")


def _doc(set_: str, text: str, lang: str | None = None, kind: str = "article", name: str = "") -> dict:
    from corpusforge import language

    return {"set": set_, "text": text, "lang": lang or language.identify(text)[0], "kind": kind, "name": name}


def trafilatura_pages(limit: int | None = None) -> list[dict]:
    """The main text of trafilatura's evaluation pages (the first `limit`), as the commoncrawl stage extracts it;
    pages without a main text are left out."""
    from bench import extract_eval
    from corpusforge import extract

    out = []
    for page in extract_eval.load_pages(TRAFILATURA, limit):
        html, _ = extract.decode_html(page.html)
        _, text = extract.extract_in_process(html, page.url, extract.ExtractOptions())
        if text:
            out.append(_doc("trafilatura", text, name=page.url))
    return out


_BLOCKS = frozenset("p div h1 h2 h3 h4 h5 h6 li ul ol dl dt dd blockquote pre table tr figcaption section article "
                    "header footer aside br hr".split())


def html_text(html: str) -> str:
    """The text of an article's HTML as an extractor writes it: one line per block (paragraph, heading, list item,
    table row with its cells joined by " | "), the lines of `<pre>` kept as they are."""
    import lxml.html

    lines: list[str] = []
    current: list[str] = []

    def flush() -> None:
        line = re.sub(r"\s+", " ", "".join(current)).strip()
        if line:
            lines.append(line)
        current.clear()

    def walk(el, pre: bool) -> None:
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag in ("script", "style", "noscript", "template"):
            return
        if tag in _BLOCKS:
            flush()
        if tag == "pre":
            lines.extend(line.rstrip() for line in el.text_content().split("\n") if line.strip())
        else:
            current.append(el.text or "")
            for child in el:
                walk(child, pre)
                if isinstance(child.tag, str) and child.tag in ("td", "th"):
                    current.append(" | ")
        if tag in _BLOCKS:
            flush()
        current.append(el.tail or "")

    walk(lxml.html.fromstring(html), False)
    flush()
    return "\n".join(lines)


def readability_pages() -> list[dict]:
    """The text of the expected article of each real readability test page, in the page's declared language."""
    out = []
    for page in sorted(p for p in READABILITY.iterdir() if p.is_dir()):
        if len(gzip.decompress((page / "source.html.gz").read_bytes())) < 5_000:
            continue  # a hand-made test case, not a page of a real site
        text = html_text(gzip.decompress((page / "expected.html.gz").read_bytes()).decode("utf-8"))
        if "lorem ipsum" in text.lower() or not text:
            continue
        meta = json.loads((page / "expected-metadata.json").read_text(encoding="utf-8"))
        lang = (meta.get("lang") or "").split("-")[0].lower() or None
        out.append(_doc("readability", text, lang, name=page.name))
    return out


def _shard_docs(folder: Path, set_: str, kind: str) -> list[dict]:
    import pyarrow.parquet as pq

    out = []
    for shard in sorted(folder.glob("*.parquet")):
        for row in pq.read_table(shard, columns=["text", "lang", "origin_id"]).to_pylist():
            out.append(_doc(set_, row["text"], row["lang"], kind, row["origin_id"] or ""))
    return out


def wikipedia_articles() -> list[dict]:
    """The articles of the Wikipedia dumps through the wikipedia reader, and the wtf_wikipedia articles."""
    from corpusforge.formats import wikitext
    from corpusforge.sources import wikipedia

    with tempfile.TemporaryDirectory() as tmp:
        config = wikipedia.WikipediaConfig(inputs=[str(p) for p in WIKIPEDIA_DUMPS])
        for dump in WIKIPEDIA_DUMPS:
            wikipedia.dump_to_shard(str(dump), tmp, config)
        out = _shard_docs(Path(tmp), "wikipedia", "encyclopedia")
    for f in sorted(WTF_WIKI.glob("*.txt")):
        text = wikitext.to_text(f.read_text(encoding="utf-8"))
        if len(text) >= config.min_chars:
            out.append(_doc("wikipedia", text, kind="encyclopedia", name=f.stem))
    return out


def gutenberg_parts(books: int | None = None) -> list[dict]:
    """The parts (at most 20,000 characters) of the Gutenberg novels (the first `books` files) through the books
    reader."""
    from corpusforge.sources import books as books_source

    paths = sorted(str(p) for p in GUTENBERG.glob("*.txt.gz"))[:books]
    config = books_source.BooksConfig(inputs=paths, max_part_chars=20_000)
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            books_source.books_to_shard(path, tmp, config)
        return _shard_docs(Path(tmp), "gutenberg", "novel")


def warc_articles() -> list[dict]:
    """The Wikipedia articles among the WARC captures, through the commoncrawl reader."""
    from corpusforge.sources import commoncrawl

    config = commoncrawl.CommonCrawlConfig(inputs=[str(p) for p in WARC_ARTICLES])
    with tempfile.TemporaryDirectory() as tmp:
        for path in WARC_ARTICLES:
            commoncrawl.warc_to_shard(str(path), tmp, config)
        return _shard_docs(Path(tmp), "warc", "encyclopedia")


def docs_pages() -> list[dict]:
    """The documentation pages of `goodtext_docs.toml`."""
    pages = tomllib.loads(DOCS.read_text(encoding="utf-8"))["page"]
    return [_doc("docs", p["text"].strip(), p["lang"], "documentation", p["name"]) for p in pages]


def good_sets(trafilatura_limit: int | None = None, books: int | None = None) -> list[dict]:
    """Every good document of every set, in `SETS` order."""
    return (trafilatura_pages(trafilatura_limit) + readability_pages() + wikipedia_articles()
            + gutenberg_parts(books) + warc_articles() + docs_pages())


# ------------------------------------------------------------------------------------------------------------ junk
_PRODUCTS = ["cheap flights", "car insurance", "payday loans", "casino bonus", "weight loss pills", "replica watches",
             "cheap hotels", "best vpn", "crypto signals", "seo services"]
_PLACES = ["London", "Paris", "Berlin", "Madrid", "Rome", "New York", "Dubai", "Sydney", "Toronto", "Tokyo"]


def junk_pages(seed: int = 0) -> list[dict]:
    """Junk by kind, five pages each: keyword stuffing, link farms, boilerplate-only pages, lorem ipsum templates,
    machine-translated spam (word-salad sentences built from a phrase table, as spinners produce), stub pages (not
    found, under construction), snippet listings, hashtag dumps and number dumps; plus the sample crawl's four junk
    pages."""
    from corpusforge.sample import crawl

    rng = random.Random(seed)
    out = []
    for i in range(5):
        product = _PRODUCTS[i]
        words = [f"{product} {rng.choice(_PLACES)}" if j % 3 else product for j in range(90)]
        text = "\n\n".join(", ".join(words[k:k + 15]) for k in range(0, 90, 15))
        out.append({"kind": "keyword stuffing", "text": text, "lang": "en"})
        links = [f"{rng.choice(_PRODUCTS).title()} in {rng.choice(_PLACES)} - Click Here" for _ in range(40)]
        out.append({"kind": "link farm", "text": "Related links\n" + "\n".join(links), "lang": "en"})
        boiler = ["Home", "About us", "Contact", "Login", "Register", "Cart (0)", "Search",
                  "We use cookies to improve your experience. By using this site you accept our cookie policy.",
                  "Privacy policy", "Terms of use", "This site requires JavaScript to be enabled.",
                  "© 2024 All rights reserved", "Follow us on Facebook", "Subscribe to our newsletter"]
        rng.shuffle(boiler)
        out.append({"kind": "boilerplate only", "text": "\n".join(boiler), "lang": "en"})
        lorem = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore "
                 "et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris.")
        out.append({"kind": "lorem ipsum", "text": f"Welcome to our new website about {_PRODUCTS[i]}.\n\n"
                    + "\n\n".join([lorem] * 3), "lang": "en"})
        phrases = ["the best quality of {p}", "very cheap {p} for you", "we are offering {p} in {c}",
                   "{p} is most good solution", "buy now {p} with fast delivery to {c}", "our {p} is number one",
                   "you can get {p} at {c} very easy", "it is {p} that make happy customer"]
        sentences = [rng.choice(phrases).format(p=product, c=rng.choice(_PLACES)).capitalize() + "."
                     for _ in range(30)]
        out.append({"kind": "machine-translated spam", "text": " ".join(sentences), "lang": "en"})
        out.append({"kind": "stub page", "lang": "en", "text": rng.choice([
            "Page not found. The page you are looking for might have been removed. Return to the home page.",
            "Coming soon! Our new website is under construction. Check back later.",
            "Access denied. Please log in to view this content.",
            "This domain is for sale. Contact the owner for more information."])})
        snippets = [f"{rng.choice(_PRODUCTS).title()} in {rng.choice(_PLACES)}: the best deals and offers for {p}..."
                    for p in rng.sample(_PRODUCTS, 8)]
        out.append({"kind": "snippet listing", "lang": "en", "text": "Search results\n" + "\n".join(
            f"{s}\nRead more …" for s in snippets)})
        tags = " ".join(f"#{p.replace(' ', '')}{rng.choice(_PLACES).replace(' ', '')}" for p in _PRODUCTS * 3)
        out.append({"kind": "hashtag dump", "lang": "en", "text": f"Follow us for the best {product} deals! {tags}"})
        numbers = "\n".join(" ".join(f"{rng.randint(0, 99999):05d}" for _ in range(12)) for _ in range(10))
        out.append({"kind": "number dump", "lang": "en", "text": f"Lottery results {product}\n{numbers}"})
    texts = crawl.load_texts()
    for art in texts["article"]:
        if art.get("junk"):
            out.append({"kind": f"sample: {art['key']}", "text": art["text"].strip(), "lang": "en"})
    return out
