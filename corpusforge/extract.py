"""HTML bytes -> main text and title: charset decoding, then trafilatura under a hard per-page time limit.

trafilatura runs in a child process (`python -m corpusforge.extract`) that is killed and restarted when a page
exceeds its time limit: lxml's C code cannot be interrupted in-thread, and Dask runs tasks off the main thread where
signals cannot reach, so a separate process is the only place a hung extraction can really be stopped.
"""

from __future__ import annotations

import codecs
import dataclasses
import os
import pickle
import re
import select
import struct
import subprocess
import sys
import threading
from typing import Any

# WHATWG: labels that browsers decode as a superset encoding.
_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "iso-8859-1": "windows-1252", "latin-1": "windows-1252",
              "ascii": "windows-1252", "us-ascii": "windows-1252", "iso-8859-9": "windows-1254",
              "tis-620": "windows-874", "ks_c_5601-1987": "euc-kr", "x-sjis": "shift_jis", "shift-jis": "shift_jis"}
_HTTP_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.I)
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([\w.:-]+)", re.I)
# An XML declaration (XHTML): `<?xml version="1.0" encoding="..."?>` before anything else but a BOM and blanks.
_XML_DECLARATION = re.compile(r"\A\ufeff?\s*<\?xml\b[^>]*\?>")
_XML_ENCODING = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*<\?xml\b[^>]*?\bencoding\s*=\s*[\"']([\w.:-]+)", re.I)
_HTML_LANG = re.compile(r"<html\b[^>]*?\s(?:xml:)?lang\s*=\s*[\"']?\s*([A-Za-z]{2,3})(?![A-Za-z])", re.I)


class DecodeError(ValueError):
    """No charset decodes the page."""


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    label = _SUPERSETS.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def http_charset(content_type: str | None) -> str | None:
    """The charset named in an HTTP Content-Type header, if any and known."""
    match = _HTTP_CHARSET.search(content_type or "")
    return _codec(match.group(1)) if match else None


def decode_html(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """Decode an HTML body: the HTTP charset first, then the page's meta charset and XML declaration, then detection.

    Returns (text, codec name used). A declared charset that fails to decode strictly falls through to the next
    rule. Raises DecodeError when nothing decodes the bytes (binary data served as text/html).
    """
    candidates = [http_charset(content_type)]
    meta = _META_CHARSET.search(body[:8192])
    declared = _XML_ENCODING.match(body[:1024])
    in_page = [_codec(m.group(1).decode("ascii", "ignore")) if m else None for m in (meta, declared)]
    # XML rules (application/xhtml+xml) put the XML declaration before a meta tag; HTML rules the other way round.
    candidates += in_page[::-1] if "xml" in (content_type or "").lower() else in_page
    if body.startswith(codecs.BOM_UTF8):
        candidates.insert(0, "utf-8-sig")
    for codec in filter(None, candidates):
        try:
            return body.decode(codec), codec
        except (UnicodeDecodeError, LookupError):
            continue
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    codec = _detect_charset(body)
    if codec is None:
        raise DecodeError("no charset decodes the page (HTTP, meta and detection all failed)")
    text = body.decode(codec, errors="replace")
    if text.count("\ufffd") > max(8, len(text) // 100):
        raise DecodeError(f"page does not decode: {text.count(chr(0xfffd))} undecodable characters as {codec}")
    return text, codec


def strip_xml_declaration(html: str) -> str:
    """`html` without a leading XML declaration: the text is decoded already, and lxml would otherwise decode it
    again by the declared encoding (or refuse a str that has one)."""
    return _XML_DECLARATION.sub("", html, count=1)


def html_lang(html: str) -> str | None:
    """The primary language subtag of the page's `<html lang>` (or `xml:lang`) attribute, lower-cased, if any."""
    match = _HTML_LANG.search(html[:20_000])
    return match.group(1).lower() if match else None


# Another code page must read clearly better than the browsers' Western default to win: lid.176's confidence moves
# by a few hundredths with a handful of wrong accented letters, but by more than 0.1 for a wrong Central-European or
# Cyrillic decoding (measured on es/en/de/it in cp1252, pl/cs in cp1250, ru in cp1251).
_CP1252_PRIOR = 0.1
_TAGS = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]+>", re.S | re.I)


def _detect_charset(body: bytes) -> str | None:
    """The charset of an undeclared, non-UTF-8 page: charset_normalizer's top guesses plus windows-1252 (what
    browsers assume for Western pages), decided by which decoding reads most like a language to lid.176.

    Statistical detection alone confuses the single-byte code pages (Spanish read as cp1250 turns "española"
    into "espańola"); a wrong code page makes the text look less like its language, which lid.176 sees.
    """
    from charset_normalizer import from_bytes

    from corpusforge import language

    sample = body[:200_000]
    guesses = [_codec(m.encoding) or m.encoding for m in list(from_bytes(sample))[:3]]
    candidates = list(dict.fromkeys(g for g in guesses + ["cp1252"] if g))
    best, best_score = None, -1.0
    for codec in candidates:
        try:
            text = sample.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
        _, score = language.identify(_TAGS.sub(" ", text))
        score += _CP1252_PRIOR if codec == "cp1252" else 0.0
        if score > best_score:
            best, best_score = codec, score
    return best if best is not None else (candidates[0] if guesses else None)


# --------------------------------------------------------------------------------------------------- extraction
MODES = ("fallback", "fast", "balanced", "precision", "recall")


@dataclasses.dataclass(frozen=True)
class ExtractOptions:
    """trafilatura settings. `mode`: "fallback" (fast mode, then trafilatura's default mode on the pages where the
    fast output looks truncated, see `looks_truncated`), "fast" (no fallback extractors), "balanced" (trafilatura's
    default), "precision" or "recall"."""

    mode: str = "fallback"
    include_tables: bool = True
    include_comments: bool = False
    timeout_s: float = 10.0
    max_html_bytes: int = 5_000_000


# Paragraphs a reader sees: not hidden, not in the page's navigation, header, footer, asides or forms.
_VISIBLE_PARAGRAPHS = ("//p[not(ancestor-or-self::*[@hidden or @aria-hidden='true' "
                       "or contains(translate(@style, ' ', ''), 'display:none') "
                       "or contains(translate(@style, ' ', ''), 'visibility:hidden')]) "
                       "and not(ancestor::nav or ancestor::header or ancestor::footer or ancestor::aside "
                       "or ancestor::form)]")
# Fast output under this share of the visible paragraph text is taken for truncated: on the readability test pages
# fast mode's cut pages keep 8-20% of it, whole ones 30-100% (portals full of teasers sit at the low end).
TRUNCATED_SHARE = 0.5


def visible_paragraph_chars(tree) -> int:
    """Characters (whitespace collapsed) of the visible `<p>` text of a parsed page: what a reader sees as prose."""
    return sum(len(" ".join(p.text_content().split())) for p in tree.xpath(_VISIBLE_PARAGRAPHS))


def looks_truncated(text: str | None, paragraph_chars: int) -> bool:
    """Whether an extraction looks cut short: much shorter than the page's visible paragraph text."""
    return len(text or "") < TRUNCATED_SHARE * paragraph_chars


def truncated_on_page(text: str | None, tree) -> bool:
    """`looks_truncated` against the page's visible paragraph text, skipping that XPath (a millisecond a page) when
    the text is at least the share of the whole body's text, which the visible paragraphs' text can never exceed."""
    if len(text or "") >= TRUNCATED_SHARE * len(tree.xpath("string(//body)")):
        return False
    return looks_truncated(text, visible_paragraph_chars(tree))


def page_title(tree) -> str | None:
    """The title of a parsed page as trafilatura's metadata finds it (meta tags and OpenGraph, JSON-LD, then `<h1>`
    and `<title>`), without the rest of its metadata search: `with_metadata` also runs htmldate's date search,
    authors, site name, categories and license, which cost more CPU than the extraction itself."""
    from trafilatura.metadata import examine_meta, extract_meta_json, extract_title

    metadata = examine_meta(tree)
    if not metadata.title:  # JSON-LD only fills a title the meta tags left empty: skip parsing it otherwise
        try:
            metadata = extract_meta_json(tree, metadata)
        except Exception:  # trafilatura guards its JSON-LD parser alike: a page's bad JSON-LD only loses that title
            pass
    metadata.title = metadata.title or extract_title(tree)
    metadata.clean_and_trim()  # entities, spaces and control characters, as trafilatura's metadata ends
    return metadata.title or None


def _trafilatura(tree, url: str | None, mode: str, options: ExtractOptions) -> str | None:
    import trafilatura

    doc = trafilatura.bare_extraction(
        tree, url=url, fast=mode == "fast", favor_precision=mode == "precision", favor_recall=mode == "recall",
        include_comments=options.include_comments, include_tables=options.include_tables, with_metadata=False,
        deduplicate=False)
    return (getattr(doc, "text", None) or None) if doc is not None else None


_PARSERS = threading.local()  # an lxml parser is not to be shared between threads: one per thread


def parse_html(html: str):
    """The page's lxml tree as trafilatura's `load_html` parses a decoded page (its parser settings, repairs and
    rejection of what is not HTML), with lxml.html's element classes chosen in C rather than by a Python callback
    per element (lxml.html's per-tag form classes are not used by the extractors): the same trees, 3% less CPU."""
    from lxml import etree, html as lxml_html
    from trafilatura.utils import is_dubious_html, repair_faulty_html

    parser = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = _PARSERS.parser = lxml_html.HTMLParser(collect_ids=False, default_doctype=False, encoding="utf-8",
                                                        remove_comments=True, remove_pis=True)
        parser.set_element_class_lookup(etree.ElementDefaultClassLookup(
            element=lxml_html.HtmlElement, comment=lxml_html.HtmlComment, pi=lxml_html.HtmlProcessingInstruction,
            entity=lxml_html.HtmlEntity))
    html = strip_xml_declaration(html)
    beginning = html[:50].lower()
    html = repair_faulty_html(html, beginning)
    try:
        tree = lxml_html.fromstring(html, parser=parser)
    except (ValueError, etree.LxmlError):  # e.g. an encoding declaration left in the text: parse the bytes
        tree = None
    if tree is None or len(tree) < 1:
        try:
            tree = lxml_html.fromstring(html.encode("utf-8", "surrogatepass"), parser=parser)
        except (ValueError, etree.LxmlError):
            return None
    if is_dubious_html(beginning) and len(tree) < 2:
        return None
    return tree


def extract_in_process(html: str, url: str | None, options: ExtractOptions) -> tuple[str | None, str | None]:
    """(title, main text) of an HTML page with trafilatura, in this process (no time limit)."""
    tree = parse_html(html)  # parsed once; trafilatura extracts from a copy
    if tree is None:
        return None, None
    title = page_title(tree)
    if options.mode != "fallback":
        return title, _trafilatura(tree, url, options.mode, options)
    text = _trafilatura(tree, url, "fast", options)
    if truncated_on_page(text, tree):
        text2 = _trafilatura(tree, url, "balanced", options)
        if len(text2 or "") > len(text or ""):
            return title, text2
    return title, text


class ExtractionTimeout(RuntimeError):
    """A page took longer than the time limit; its extraction process was killed."""


class ExtractionFailed(RuntimeError):
    """trafilatura raised on a page."""


class Extractor:
    """Extraction in a long-lived child process, restarted after a timeout or crash. Thread-safe, one page at a
    time; reuse one per worker process (see `shared_extractor`)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self.restarts = 0

    def _start(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            self._proc = subprocess.Popen([sys.executable, "-m", "corpusforge.extract"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, bufsize=0)
            # Wait for "ready" (trafilatura imported) so start-up never counts against a page's time limit.
            try:
                _read_message(self._proc.stdout, _STARTUP_TIMEOUT_S)
            except (ExtractionTimeout, EOFError, OSError) as exc:
                self._kill()
                raise ExtractionFailed(f"extraction process did not start: {type(exc).__name__}") from None
        return self._proc

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
            self.restarts += 1

    def extract(self, html: str, url: str | None, options: ExtractOptions) -> tuple[str | None, str | None]:
        """(title, text); raises ExtractionTimeout or ExtractionFailed."""
        with self._lock:
            proc = self._start()
            payload = pickle.dumps((html, url, options), protocol=pickle.HIGHEST_PROTOCOL)
            try:
                _write_message(proc.stdin, payload)
                reply = _read_message(proc.stdout, options.timeout_s)
            except ExtractionTimeout:
                self._kill()
                raise ExtractionTimeout(f"extraction exceeded {options.timeout_s:g}s; process killed") from None
            except (BrokenPipeError, EOFError, OSError) as exc:
                self._kill()
                raise ExtractionFailed(f"extraction process died: {exc}") from None
            status, value = pickle.loads(reply)
            if status == "error":
                raise ExtractionFailed(value)
            return value

    def close(self) -> None:
        with self._lock:
            if self._proc is not None:
                self._proc.stdin.close()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                self._proc = None

    def __enter__(self) -> Extractor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_shared: Extractor | None = None
_STARTUP_TIMEOUT_S = 120.0


def shared_extractor() -> Extractor:
    """The process-wide Extractor (one child process per Dask worker process)."""
    global _shared
    if _shared is None:
        _shared = Extractor()
    return _shared


def _read_exact(stream, n: int, deadline_s: float | None) -> bytes:
    import time

    end = None if deadline_s is None else time.monotonic() + deadline_s
    chunks, got = [], 0
    fd = stream.fileno()
    while got < n:
        if end is not None:
            left = end - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                raise ExtractionTimeout()
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_message(stream, deadline_s: float | None) -> bytes:
    (size,) = struct.unpack("<Q", _read_exact(stream, 8, deadline_s))
    return _read_exact(stream, size, deadline_s)


# A page with what sets off trafilatura's lazily loaded parts: a title, a short main text.
_WARM_UP_PAGE = ('<html lang="en"><head><title>Warm-up page</title><meta name="author" content="A. Writer">'
                 '<meta property="article:published_time" content="2024-01-02"></head><body><nav><a href="/">Home</a>'
                 '</nav><article><h1>Warm-up page</h1><p>A sentence to warm up the extractors, on 2 January 2024.</p>'
                 '</article><footer><p>Footer</p></footer></body></html>')


def _serve() -> None:
    """Child-process loop: read (html, url, options), answer ("ok", (title, text)) or ("error", message)."""
    # Before "ready" (see Extractor._start): trafilatura's default mode loads its fallback extractors' word lists on
    # first use (seconds), which must not count against the first page that falls back.
    for mode in ("fast", "balanced"):
        extract_in_process(_WARM_UP_PAGE, "https://www.example.com/2024/01/page.html", ExtractOptions(mode=mode))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    _write_message(stdout, b"ready")
    while True:
        try:
            request = _read_message(stdin, None)
        except EOFError:
            return
        html, url, options = pickle.loads(request)
        try:
            reply = ("ok", extract_in_process(html, url, options))
        except Exception as exc:  # reported per page by the caller; the process stays up
            reply = ("error", f"{type(exc).__name__}: {exc}")
        _write_message(stdout, pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))


def _write_message(stream, data: bytes) -> None:
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


if __name__ == "__main__":
    _serve()
