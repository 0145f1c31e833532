"""corpusforge.extract: charset decoding order with real bytes, and trafilatura in a killable child process."""

from __future__ import annotations

import os
import threading
import time

import pytest
from cc_fixtures import ARTICLES, article_html, slow_html

from corpusforge.extract import (DecodeError, ExtractionFailed, ExtractionTimeout, ExtractOptions, Extractor,
                                 decode_html, extract_in_process, http_charset)


# ------------------------------------------------------------------------------------------------------ charsets
def test_http_charset_comes_first_even_when_meta_disagrees():
    # windows-1251 bytes also decode (as mojibake) under the meta's latin-1: only the HTTP charset gives Russian.
    html = article_html("ru", meta_charset="iso-8859-1")
    body = html.encode("windows-1251")
    text, codec = decode_html(body, "text/html; charset=windows-1251")
    assert (text, codec) == (html, "cp1251")
    mojibake, meta_codec = decode_html(body, "text/html")
    assert meta_codec == "cp1252" and mojibake != html  # without the HTTP charset the (wrong) meta is used


def test_meta_charset_when_http_has_none_or_fails():
    html = article_html("zh", meta_charset="gb2312")
    body = html.encode("gb2312")
    assert decode_html(body, "text/html") == (html, "gb18030")  # gb2312 read as its WHATWG superset
    # A wrong HTTP charset that does not decode strictly falls through to the meta charset.
    ru = article_html("ru", meta_charset="windows-1251")
    assert decode_html(ru.encode("windows-1251"), "text/html; charset=utf-8") == (ru, "cp1251")


def test_detection_when_nothing_is_declared():
    html = article_html("fr", meta_charset=None)
    text, codec = decode_html(html.encode("latin-1"), "text/html")
    assert text == html and codec in ("cp1252", "latin_1", "iso8859-15")
    ru = article_html("ru", meta_charset=None)
    assert decode_html(ru.encode("windows-1251"), None) == (ru, "cp1251")


def test_utf8_bom_and_unknown_labels():
    html = article_html("de")
    assert decode_html(b"\xef\xbb\xbf" + html.encode("utf-8"), "text/html; charset=nonsense")[0] == html
    assert http_charset("text/html; charset=nonsense") is None
    assert http_charset('text/html; charset="ISO-8859-1"') == "cp1252"


def test_undecodable_bytes_raise_decode_error():
    body = bytes(range(128, 256)) * 40  # no text encoding makes sense of this
    with pytest.raises(DecodeError, match="no charset decodes"):
        decode_html(body, "text/html")


# ---------------------------------------------------------------------------------------------------- extraction
def test_extraction_drops_boilerplate_and_keeps_the_article():
    title, text = extract_in_process(article_html("en"), "http://example.org/en", ExtractOptions())
    assert title == ARTICLES["en"][0]
    for paragraph in ARTICLES["en"][1]:
        assert paragraph in text
    assert "cookie" not in text.lower() and "All rights reserved" not in text


def test_child_process_extraction_matches_in_process():
    html = article_html("nl")
    with Extractor() as extractor:
        assert extractor.extract(html, None, ExtractOptions()) == extract_in_process(html, None, ExtractOptions())


def test_time_limit_kills_a_hung_extraction_and_the_next_page_works():
    slow = slow_html(8000)  # about 2 s of trafilatura
    with Extractor() as extractor:
        extractor.extract(article_html("en"), None, ExtractOptions())  # started and warm
        hung_pid = extractor._proc.pid
        t0 = time.perf_counter()
        with pytest.raises(ExtractionTimeout, match="exceeded 0.3s; process killed"):
            extractor.extract(slow, None, ExtractOptions(timeout_s=0.3))
        waited = time.perf_counter() - t0
        assert extractor.restarts == 1 and extractor._proc is None
        with pytest.raises(ProcessLookupError):  # really gone, not left running in the background
            os.kill(hung_pid, 0)
        # The same page without the limit takes far longer than the time we waited: the kill cut it short.
        t1 = time.perf_counter()
        extractor.extract(slow, None, ExtractOptions(timeout_s=120))
        assert time.perf_counter() - t1 > 3 * waited
        _, text = extractor.extract(article_html("de"), None, ExtractOptions(timeout_s=0.3))
        assert ARTICLES["de"][1][0] in text


def test_a_dying_extraction_process_is_reported_and_replaced():
    with Extractor() as extractor:
        extractor.extract(article_html("en"), None, ExtractOptions())
        pid = extractor._proc.pid
        # The child dies while working on a page (as on a segfault or the OOM killer).
        threading.Timer(0.3, os.kill, (pid, 9)).start()
        with pytest.raises(ExtractionFailed, match="extraction process died"):
            extractor.extract(slow_html(), None, ExtractOptions(timeout_s=60))
        _, text = extractor.extract(article_html("fr"), None, ExtractOptions())
        assert ARTICLES["fr"][1][0] in text and extractor._proc.pid != pid


@pytest.mark.parametrize("lang,codec,text", [
    ("es", "cp1252", "La cocina española tradicional utiliza aceite de oliva, ajo y pimentón. Los niños pequeños "
                     "aprenden canciones en la montaña."),
    ("en", "cp1252", "The caf\u00e9\u2019s na\u00efve owner \u2014 a so-called \u201cexpert\u201d \u2014 served "
                     "cr\u00e8me br\u00fbl\u00e9e every day."),
    ("de", "cp1252", "Die Straße führt über die Brücke zum Rathaus, wo ältere Bürger täglich Zeitung lesen."),
    ("pl", "cp1250", "Zażółć gęślą jaźń. W małym mieście nad rzeką mieszkał stary zegarmistrz, który codziennie "
                     "otwierał swój warsztat."),
    ("cs", "cp1250", "Příliš žluťoučký kůň úpěl ďábelské ódy. Ve městě byla knihovna, kde se děti učily číst."),
    ("ru", "cp1251", "В небольшом городе на берегу реки жил старый часовщик, который каждый день открывал свою "
                     "мастерскую."),
])
def test_undeclared_single_byte_pages_decode_exactly(lang, codec, text):
    # No HTTP or meta charset, not UTF-8: detection must still give back every letter.
    body = f"<html><body><p>{text}</p></body></html>".encode(codec)
    decoded, _ = decode_html(body, "text/html")
    assert text in decoded
