"""Extraction fidelity: the whole main text, not snippets. The full-text measure (extract_eval) on the real page sets,
the fallback that catches what fast mode cuts, XHTML pages, language labels on short texts, and per-row ids."""

from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest
from cc_fixtures import ARTICLES, Rec, write_warc
from rich.console import Console

from bench import extract_eval
from corpusforge import language
from corpusforge.dedup import DedupConfig
from corpusforge.dedup import run as dedup_run
from corpusforge.extract import (ExtractOptions, decode_html, extract_in_process, html_lang, strip_xml_declaration,
                                 visible_paragraph_chars)
from corpusforge.runtime import FileReport, RunContext
from corpusforge.formats import warc
from corpusforge.sources import commoncrawl as cc

XHTML_DOCTYPE = ('<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
                 '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n')
# A manual page as DocBook writes it: each section its own <div>, inline <code>/<span> markup inside sentences.
MANUAL = [
    'apt is a second command-line based front end provided by <acronym>APT</acronym> which overcomes some design '
    'mistakes of <span class="command"><strong>apt-get</strong></span>.',
    'The <code class="literal">sources.list</code> file lists the <span class="emphasis"><em>repositories</em></span> '
    'from which packages are fetched; each line names an archive, a suite and its components.',
    'Packages are installed with <code class="literal">apt install</code> followed by their names; dependencies are '
    'resolved by <acronym>APT</acronym> and downloaded before anything is unpacked.',
    'Held packages keep their version: <code>apt-mark hold</code> marks them, and an upgrade leaves them as they are '
    'until <code>apt-mark unhold</code> releases them again.',
    'Old package files pile up in <code class="filename">/var/cache/apt/archives</code>; <code>apt clean</code> '
    'removes them all, while <code>apt autoclean</code> removes only those that can no longer be downloaded.',
    'Pinning, set in <code class="filename">/etc/apt/preferences</code>, gives each archive a priority, so that a '
    'package can follow <span class="emphasis"><em>testing</em></span> while the rest of the system stays stable.',
]


def manual_page(paragraphs: list[str] = MANUAL, declaration: str = '<?xml version="1.0" encoding="utf-8"?>\n',
                lang: str = "en", title: str = "Package management") -> str:
    sections = "".join(f'<div class="section"><div class="titlepage"><h2 class="title">{i + 1}. Section</h2></div>'
                       f'<p>{p}</p></div>' for i, p in enumerate(paragraphs))
    return (f'{declaration}{XHTML_DOCTYPE}<html xmlns="http://www.w3.org/1999/xhtml" lang="{lang}" xml:lang="{lang}">'
            f'<head><title>{title}</title></head><body><div class="navheader"><a href="/">Home</a> | '
            f'<a href="/next">Next</a></div><div class="chapter">{sections}</div>'
            '<div class="navfooter">Prev | Up | Next | Home</div></body></html>')


def plain(fragment: str) -> str:
    return extract_eval.html_text(f"<div>{fragment}</div>").replace("\n", "")


def read_file(path, **config) -> list[dict]:
    config = cc.CommonCrawlConfig(inputs=[str(path)], min_text_chars=1, **config)
    report = FileReport(input=str(path))
    docs = list(cc.documents_from_records(warc.read_records(str(path), report, config.max_html_bytes), str(path),
                                          config, report))
    assert report.errors == [], report.errors
    return docs


# ----------------------------------------------------------------------------------------------- the measure
def test_token_measure_counts_the_whole_text():
    words = extract_eval.tokens("Ünïcode words, 12 numbers; 中文字")
    assert words == ["ünïcode", "words", "12", "numbers", "中", "文", "字"]
    assert extract_eval.token_scores("a b b c", "b b b d") == (2, 4, 4)
    half = "one two three four"
    score = extract_eval.full_text_score([(half, half + " five six seven eight nine"), (half, half)])
    assert score["precision"] == 1.0 and score["recall"] == round(8 / 13, 4) and score["under_half"] == 0.5
    assert extract_eval.html_text("<div><p>one<b>two</b></p><p>three</p><script>x()</script></div>") == \
        "onetwo\nthree"


# ---------------------------------------------------------------------------------------------- the fallback
def test_a_page_fast_mode_truncates_is_extracted_whole():
    # Sections that repeat a paragraph (a boilerplate note, a template's placeholder text): fast mode keeps the
    # first occurrences and drops the rest, as on readability's `svg-parsing` and `missing-paragraphs` pages.
    paragraphs = MANUAL[:3] * 3
    html = manual_page(paragraphs)
    expected = [plain(p) for p in paragraphs]
    fast = extract_in_process(html, "http://docs.example/apt", ExtractOptions(mode="fast"))[1]
    assert sum(fast.count(p) for p in expected[:3]) == 3  # a third of the text
    _, text = extract_in_process(html, "http://docs.example/apt", ExtractOptions())  # the default: fallback
    assert [text.count(p) for p in expected[:3]] == [3, 3, 3], text
    assert "Prev | Up" not in text and "mistakes of apt-get." in text


@pytest.mark.shared_data
def test_real_pages_fast_mode_truncates_are_extracted_whole(shared_data):
    root = shared_data / "extraction" / "mozilla-readability-test-pages"
    pages = [p for p in extract_eval.load_readability_pages(root)
             if p.name in ("dev418", "svg-parsing", "missing-paragraphs")]
    for page in pages:
        html = decode_html(page.html)[0]
        fast, text = (extract_in_process(html, page.url, ExtractOptions(mode=mode))[1] for mode in ("fast", "fallback"))
        assert extract_eval.full_text_score([(fast, page.expected)])["under_half"] == 1.0, page.name
        assert extract_eval.full_text_score([(text, page.expected)])["f1"] > 0.9, page.name


def test_fallback_keeps_fast_output_that_is_whole():
    html = manual_page(MANUAL[:1])  # one section: fast mode has it all
    fast = extract_in_process(html, None, ExtractOptions(mode="fast"))
    assert extract_in_process(html, None, ExtractOptions()) == fast


@pytest.mark.shared_data
def test_the_parser_and_title_shortcuts_give_trafilaturas_own_trees_and_titles(shared_data):
    """parse_html (element classes chosen in C) and page_title (JSON-LD only for a missing title) against
    trafilatura's load_html and its full meta + JSON-LD title search, on real pages: the same text and title."""
    from trafilatura.metadata import examine_meta, extract_meta_json, extract_title
    from trafilatura.utils import load_html

    from corpusforge.extract import _trafilatura, page_title, parse_html

    pages = extract_eval.load_pages(shared_data / "extraction" / "trafilatura-eval")[::20]
    for page in pages:
        html = decode_html(page.html)[0]
        ours, theirs = parse_html(html), load_html(strip_xml_declaration(html))
        metadata = extract_meta_json(theirs, examine_meta(theirs))
        metadata.title = metadata.title or extract_title(theirs)
        metadata.clean_and_trim()
        assert page_title(ours) == (metadata.title or None), page.url
        options = ExtractOptions(mode="fast")
        assert _trafilatura(ours, page.url, "fast", options) == _trafilatura(theirs, page.url, "fast", options)


def test_hidden_and_navigation_paragraphs_are_not_visible_text():
    from trafilatura.utils import load_html

    page = ('<html><body><nav><p>menu words here</p></nav><p>seen text</p><p hidden="">hidden one</p>'
            '<div style="display: none"><p>hidden two</p></div><footer><p>footer</p></footer></body></html>')
    assert visible_paragraph_chars(load_html(page)) == len("seen text")


# ---------------------------------------------------------------------------------------------------- XHTML
def xhtml_variants(body: str) -> dict[str, Rec]:
    """The same German article as XHTML (XML declaration in ISO-8859-1, DOCTYPE, xmlns) served every way."""
    xhtml = manual_page(body, declaration='<?xml version="1.0" encoding="iso-8859-1"?>\n', lang="de",
                        title=ARTICLES["de"][0]).encode("iso-8859-1")
    return {
        "xhtml+xml": Rec("http://docs.example/a", xhtml, content_type="application/xhtml+xml"),
        "text/html": Rec("http://docs.example/b", xhtml, content_type="text/html"),
        "xml": Rec("http://docs.example/c", xhtml, content_type="application/xml"),
        "untyped": Rec("http://docs.example/d", xhtml, content_type=None),
        "html": Rec("http://docs.example/e", manual_page(body, declaration="", lang="de").replace(
            XHTML_DOCTYPE, "<!DOCTYPE html>\n").replace(' xmlns="http://www.w3.org/1999/xhtml"', "").encode(),
                    content_type="text/html; charset=utf-8"),
    }


def test_xhtml_pages_extract_as_html_pages(tmp_path):
    variants = xhtml_variants(ARTICLES["de"][1])
    write_warc(tmp_path / "x.warc.gz", list(variants.values()))
    docs = read_file(tmp_path / "x.warc.gz")
    assert [d["url"].rsplit("/", 1)[1] for d in docs] == list("abcde")  # every way of serving it is HTML
    texts = {d["text"] for d in docs}
    assert len(texts) == 1  # the XML declaration's charset decodes it; the namespace changes nothing
    (text,) = texts
    assert all(p in text for p in ARTICLES["de"][1]) and "früher" in text
    assert {(d["lang"], d["lang_from"]) for d in docs} == {("de", "text")}


def test_xml_declaration_charset_and_stripping():
    body = manual_page(declaration='<?xml version="1.0" encoding="iso-8859-1"?>\n', lang="de").replace(
        "Package management", "Paketverwaltung für Anfänger").encode("iso-8859-1")
    assert decode_html(body, "application/xhtml+xml")[1] == "cp1252"
    assert decode_html(body, None)[0].count("für Anfänger") == 1
    assert strip_xml_declaration('\ufeff <?xml version="1.0"?><html/>') == "<html/>"
    assert html_lang(manual_page(lang="pt-BR")) == "pt" and html_lang("<html><body>x</body></html>") is None


@pytest.mark.shared_data
def test_real_xhtml_pages_extract_the_same_however_served(shared_data, tmp_path):
    pages = [p for p in extract_eval.load_pages(shared_data / "extraction" / "trafilatura-eval")
             if p.html.lstrip().startswith(b"<?xml")]
    assert len(pages) >= 7  # real XHTML pages: XML declaration, XHTML DOCTYPE, xmlns
    records = [Rec(f"{p.url}#{kind}", p.html, content_type=kind) for p in pages
               for kind in ("application/xhtml+xml", "text/html")]
    write_warc(tmp_path / "real.warc.gz", records)
    docs = {d["url"]: d["text"] for d in read_file(tmp_path / "real.warc.gz")}
    for page in pages:
        as_xhtml, as_html = docs[f"{page.url}#application/xhtml+xml"], docs[f"{page.url}#text/html"]
        assert as_xhtml == as_html
        direct = extract_in_process(strip_xml_declaration(decode_html(page.html)[0]), page.url, ExtractOptions())[1]
        assert as_xhtml == direct  # as the page extracts without its XML declaration
    found = extract_eval.score((p, docs[f"{p.url}#text/html"]) for p in pages)
    assert found["recall"] >= XHTML_RECALL_FLOOR, found


# Measured: the 7 real XHTML pages' `with` snippets, all modes alike (fallback, fast, balanced).
XHTML_RECALL_FLOOR = 0.9


# ----------------------------------------------------------------------------------------- the real page sets
# Measured on mozilla's 130 readability test pages (bench/extraction.py): fallback mode full-text token F1 0.9701
# (fast 0.9709, balanced 0.9676, favor_recall 0.973), pages keeping under half their expected text 1.5% (fast 4.6%).
READABILITY_F1_FLOOR, READABILITY_UNDER_HALF_CEILING = 0.965, 0.025
# trafilatura's eval pages (every 5th of 990 here): the share of pages under half of trafilatura's default mode's
# text, measured 1.4% on all 990 and 1.6% on every 2nd page for fallback mode (fast mode: 4.1%, 3.8%).
TRAFILATURA_UNDER_HALF_CEILING = 0.03


@pytest.fixture(scope="module")
def readability(shared_data):
    pages = extract_eval.load_readability_pages(shared_data / "extraction" / "mozilla-readability-test-pages")
    out = {}
    for mode in ("fallback", "balanced"):
        options = ExtractOptions(mode=mode)
        out[mode] = [extract_in_process(decode_html(p.html)[0], p.url, options)[1] for p in pages]
    return pages, out


@pytest.mark.shared_data
@pytest.mark.slow
def test_full_text_floor_on_readability_pages(readability):
    pages, texts = readability
    assert len(pages) == 130
    score = extract_eval.full_text_score(zip(texts["fallback"], [p.expected for p in pages]))
    assert score["f1"] >= READABILITY_F1_FLOOR and score["under_half"] <= READABILITY_UNDER_HALF_CEILING, score
    reference = extract_eval.full_text_score(zip(texts["balanced"], [p.expected for p in pages]))
    assert score["f1"] >= reference["f1"] - 0.01  # within a point of trafilatura's default mode


@pytest.mark.shared_data
@pytest.mark.slow
def test_language_not_below_plain_trafilatura(readability):
    pages, texts = readability
    labelled = [(i, p.lang.split("-")[0].lower()) for i, p in enumerate(pages) if p.lang]
    assert len(labelled) >= 70

    def accuracy(mode: str, hint: bool) -> float:
        right = 0
        for i, want in labelled:
            text = texts[mode][i] or ""
            lang = (language.identify_page(text, html_lang(decode_html(pages[i].html)[0]))[0] if hint
                    else language.identify(text)[0])
            right += lang == want
        return right / len(labelled)

    plain_trafilatura = accuracy("balanced", hint=False)
    assert accuracy("fallback", hint=True) >= plain_trafilatura >= 0.9


@pytest.mark.shared_data
@pytest.mark.slow
def test_trafilatura_eval_pages_keep_their_text(shared_data):
    pages = extract_eval.load_pages(shared_data / "extraction" / "trafilatura-eval")[::5]
    texts = {mode: [extract_in_process(decode_html(p.html)[0], p.url, ExtractOptions(mode=mode))[1] for p in pages]
             for mode in ("fast", "fallback", "balanced")}
    under = extract_eval.full_text_score(zip(texts["fallback"], texts["balanced"]))["under_half"]
    assert under <= TRAFILATURA_UNDER_HALF_CEILING
    snippets = {mode: extract_eval.score(zip(pages, texts[mode]))["f1"] for mode in texts}
    assert snippets["fallback"] >= max(snippets["fast"], snippets["balanced"]) - 0.01, snippets


# ---------------------------------------------------------------------------------------------- language
def test_html_lang_breaks_ties_only_on_short_unsure_text():
    menu = "Hjem Om oss Kontakt"  # Norwegian; lid.176 says Swedish, unsure, with Norwegian among its top five
    assert language.identify(menu)[0] == "sv"
    lang, score, how = language.identify_page(menu, "no")
    assert (lang, how) == ("no", "html_lang") and 0 < score < language.UNSURE_SCORE
    assert language.identify_page(menu, None)[::2] == ("sv", "text")
    assert language.identify_page(menu, "ja")[::2] == ("sv", "text")  # not a candidate at all
    long_german = " ".join(ARTICLES["de"][1])
    assert language.identify_page(long_german, "en")[::2] == ("de", "text")  # a wrong attribute does not win


# ---------------------------------------------------------------------------------------------------- ids
@pytest.mark.slow
def test_ids_unique_across_repeated_captures_and_dedup_never_removes_x_for_x(tmp_path, dask_client):
    article = manual_page(MANUAL[:1]).encode()
    captures = [Rec("http://docs.example/apt", article) for _ in range(3)]  # same URL, text and WARC-Record-ID
    other = [Rec("http://docs.example/other", manual_page(MANUAL[1:2]).encode())]
    write_warc(tmp_path / "in" / "a.warc.gz", captures + other)
    write_warc(tmp_path / "in" / "b.warc.gz", captures[:2])
    summary = cc.run(cc.CommonCrawlConfig(inputs=[str(tmp_path / "in" / "*.warc.gz")], output=str(tmp_path / "cc")),
                     RunContext(client=dask_client, console=Console(file=io.StringIO())))
    assert summary.counts["documents"] == 6
    rows = [r for s in sorted((tmp_path / "cc").glob("*.parquet")) for r in pq.read_table(s).to_pylist()]
    assert len({r["id"] for r in rows}) == 6  # every row its own id
    assert len({r["content_hash"] for r in rows}) == 2  # the same text, the same content hash
    dedup_run(DedupConfig(inputs=[str(tmp_path / "cc")], output=str(tmp_path / "dedup")), RunContext(client=dask_client))
    removed = pq.read_table(tmp_path / "dedup" / "_duplicates.parquet").to_pylist()
    assert len(removed) == 4 and all(r["removed_id"] != r["kept_id"] for r in removed)
    kept = [r for p in sorted((tmp_path / "dedup").glob("[!_]*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert len(kept) == 2 and {r["kept_id"] for r in removed} <= {r["id"] for r in kept}


def test_id_is_stable_and_content_hash_is_the_text():
    from corpusforge.documents import content_hash, make_document

    a = make_document(source="commoncrawl", text="same", lang="en", lang_score=1.0, origin_file="/x/f.warc.gz",
                      origin_offset=0, origin_id="<urn:uuid:1>", url="http://a.example/")
    b = make_document(source="commoncrawl", text="same", lang="en", lang_score=1.0, origin_file="/y/f.warc.gz",
                      origin_offset=0, origin_id="<urn:uuid:1>", url="http://a.example/")
    c = {**a, **make_document(source="commoncrawl", text="same", lang="en", lang_score=1.0,
                              origin_file="/x/f.warc.gz", origin_offset=512, origin_id="<urn:uuid:1>",
                              url="http://a.example/")}
    assert a["id"] == b["id"]  # the input's place on disk does not change ids
    assert c["id"] != a["id"] and c["content_hash"] == a["content_hash"] == content_hash("same")
