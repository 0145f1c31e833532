"""MediaWiki XML dumps: the header (`read_siteinfo`: wiki, language, encoding, namespace names) and the pages
(`iter_pages`), streamed from a byte range of a `.xml.bz2` (single-stream or multistream) or plain `.xml` dump in any
encoding the XML declares (UTF-16 included).

A dump is never loaded whole: bz2 blocks (corpusforge.formats.bzip2) or 1 MiB chunks of the range are cut into
`<page>` elements and each page is parsed on its own with lxml, so a broken page costs that page only. A range owns
the pages whose `<page>` starts inside it and reads past its end to finish the last one, so ranges cut anywhere give
exactly the pages of the whole file. A dump on an object store (`s3://...`) is read the same way, by ranged reads.
"""

from __future__ import annotations

import bisect
import codecs
import dataclasses
import functools
import json
import re
from collections.abc import Iterator
from urllib.parse import quote

from corpusforge import storage
from corpusforge.formats import bzip2
from corpusforge.runtime import FileReport

_CHUNK = 1 << 20
_HEADER_LIMIT = 8 << 20
_MEDIAWIKI_TAG = re.compile(r"<mediawiki\b[^>]*>", re.S)
_SITEINFO = re.compile(r"<siteinfo>.*?</siteinfo>", re.S)
_XML_DECL_ENCODING = re.compile(rb"^<\?xml[^>]*encoding=[\"']([A-Za-z0-9._-]+)[\"']")
_XML_NS = "{http://www.w3.org/XML/1998/namespace}"
_PROJECTS = re.compile(r"^([a-z_]+?)(?:wiki|wiktionary|wikibooks|wikinews|wikiquote|wikisource|wikiversity|"
                       r"wikivoyage)$")
# Wiki language codes that are not the ISO 639 code lid.176 predicts.
_LANG_CODES = {"simple": "en", "be-tarask": "be", "be-x-old": "be", "zh-yue": "yue", "zh-classical": "lzh",
               "zh-min-nan": "nan", "als": "gsw", "bat-smg": "sgs", "fiu-vro": "vro", "roa-rup": "rup",
               "nds-nl": "nds"}


# ------------------------------------------------------------------------------------------------------- siteinfo
@dataclasses.dataclass(frozen=True)
class SiteInfo:
    """What a dump's header says: its wiki, language, article URL prefix, XML encoding and namespace names."""

    dbname: str | None
    lang: str | None
    base_url: str | None
    encoding: str
    namespaces: dict[int, list[str]]
    problem: str | None = None  # why the header could not be read (the built-in names stand in for it)

    def article_url(self, title: str) -> str | None:
        if not self.base_url:
            return None
        return self.base_url + quote(title.replace(" ", "_"), safe=";@$!*(),/~:")



def _detect_encoding(head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8"
    if head.startswith(codecs.BOM_UTF16_LE) or head.startswith(b"<\x00"):
        return "utf-16-le"
    if head.startswith(codecs.BOM_UTF16_BE) or head.startswith(b"\x00<"):
        return "utf-16-be"
    match = _XML_DECL_ENCODING.match(head)
    if match:
        try:
            return codecs.lookup(match.group(1).decode("ascii")).name
        except LookupError:
            pass
    return "utf-8"


def _lang_of(lang_attr: str | None, dbname: str | None) -> str | None:
    code = lang_attr
    if not code and dbname:
        match = _PROJECTS.match(dbname)
        code = match.group(1).replace("_", "-") if match else None
    return _LANG_CODES.get(code, code) if code else None


def read_siteinfo(path: str, language_override: str | None = None, article_url: str | None = None) -> SiteInfo:
    """The dump header of `path` (read from the first bz2 block or bytes only); `language_override` and
    `article_url` replace what the header says (or supply what it lacks)."""
    version = json.dumps(storage.identity(path), sort_keys=True)  # a changed file is read again
    return _read_siteinfo(str(path), version, language_override, article_url)


@functools.lru_cache(maxsize=64)
def _read_siteinfo(path: str, _version: str, language_override: str | None,
                   article_url: str | None) -> SiteInfo:
    head = bytearray()
    encoding = problem = None
    for unit in _units(path, 0, 0):  # the header is in the first block
        if isinstance(unit, bzip2.Damage):
            problem = unit.reason
            break
        head += unit.data
        encoding = encoding or _detect_encoding(bytes(head[:200]))
        marker = _marker(encoding)
        if "</siteinfo>".encode(marker) in head or "<page>".encode(marker) in head or len(head) > _HEADER_LIMIT:
            break
    encoding = encoding or "utf-8"
    text = bytes(head).decode(encoding, errors="replace").lstrip("\ufeff")
    lang_attr = dbname = base = None
    namespaces: dict[int, list[str]] = {}
    from lxml import etree

    tag = _MEDIAWIKI_TAG.search(text)
    if tag:
        try:
            lang_attr = etree.fromstring(tag.group(0) + "</mediawiki>").get(f"{_XML_NS}lang")
        except etree.XMLSyntaxError:
            pass
    info = _SITEINFO.search(text)
    if info:
        try:
            root = etree.fromstring(info.group(0))
        except etree.XMLSyntaxError as exc:
            problem = f"<siteinfo> is not well-formed XML ({exc})"
        else:
            dbname = root.findtext("dbname")
            base = root.findtext("base")
            for ns in root.iter("namespace"):
                if ns.text and ns.get("key", "").lstrip("-").isdigit():
                    namespaces.setdefault(int(ns.get("key")), []).append(ns.text.strip())
    elif problem is None and head and "<page>".encode(_marker(encoding)) in head:
        problem = "no <siteinfo> before the first page"
    if problem and not dbname:
        dbname = storage.name(path).split("-", 1)[0]  # enwiki-20240601-pages-articles.xml.bz2 -> enwiki
    base_url = article_url or (base.rsplit("/", 1)[0] + "/" if base and "/" in base else None)
    return SiteInfo(dbname=dbname, lang=language_override or _lang_of(lang_attr, dbname), base_url=base_url,
                    encoding=encoding, namespaces=namespaces, problem=problem)


def _marker(encoding: str) -> str:
    """The codec that encodes markup characters as the dump does (UTF-16 without a BOM per string)."""
    return encoding if encoding.startswith("utf-16") else "ascii" if encoding != "utf-8" else "utf-8"


# ---------------------------------------------------------------------------------------------------------- reading
@dataclasses.dataclass
class _Unit:
    """Consecutive bytes of the uncompressed dump. `pos` decides which range owns a page that starts here; `offset`
    is reported as its origin; `exact` when both are the true byte positions (plain XML: add the index)."""

    pos: int
    offset: int
    exact: bool
    data: bytes


def _units(path: str, start: int, end: int | None) -> Iterator[_Unit | bzip2.Damage]:
    """The dump's bytes from `start` on, a bz2 block or a chunk at a time; `end`: where the caller expects to stop
    (bzip2.read_blocks' hint)."""
    if bzip2.is_bzip2(path):
        for block in bzip2.read_blocks(path, start, end):
            if isinstance(block, bzip2.Damage):
                yield block
            else:
                yield _Unit(block.pos, block.offset, False, block.data)
        return
    with storage.open_file(path) as fh:
        if start == 0 and fh.read(2) == b"\x1f\x8b":
            raise ValueError("gzip-compressed dumps are not supported: use the .bz2 or plain .xml dump")
        fh.seek(start)
        pos = start
        while chunk := fh.read(_CHUNK):
            yield _Unit(pos, pos, True, chunk)
            pos += len(chunk)


@dataclasses.dataclass
class Page:
    """One `<page>` of a dump (its last revision)."""

    title: str
    ns: int
    page_id: int
    revision_id: int | None
    timestamp: str | None
    redirect: bool
    model: str | None
    text: str
    offset: int


def _page_slices(units: Iterator[_Unit | bzip2.Damage], encoding: str, end: int | None, report: FileReport,
                 path: str, max_page_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(origin offset, bytes of `<page>...</page>`) of the pages that start before byte `end`, from `units`.

    Bytes before the first `<page>` are skipped (the header, or the tail of a page the previous range owns). A page
    that never closes, grows past `max_page_bytes` or is cut by a damaged block is reported; reading goes on at the
    next `<page>`."""
    marker = _marker(encoding)
    open_tag, close_tag = "<page>".encode(marker), "</page>".encode(marker)
    buf = bytearray()
    starts: list[int] = []  # where each unit's bytes begin in buf
    owners: list[_Unit] = []
    i = 0  # everything before buf[i] is consumed
    in_page = False
    origin = 0

    def locate(j: int) -> tuple[int, int]:
        k = bisect.bisect_right(starts, j) - 1
        unit = owners[k]
        return (unit.pos + j - starts[k], unit.offset + j - starts[k]) if unit.exact else (unit.pos, unit.offset)

    for unit in units:
        if isinstance(unit, bzip2.Damage):
            mine = end is None or unit.pos < end
            if mine:
                report.error(unit.reason, offset=unit.pos, stage="read", file=path)
            if in_page:
                report.error("page lost: the bz2 block after its start is damaged", offset=origin, stage="read",
                             file=path)
            elif not mine:
                return
            buf.clear()
            starts.clear()
            owners.clear()
            i, in_page = 0, False
            continue
        if not in_page and end is not None and unit.pos >= end:
            return
        if i:  # drop consumed bytes before adding more
            del buf[:i]
            keep = [k for k, s in enumerate(starts) if s + len(owners[k].data) > i]
            starts[:] = [starts[k] - i for k in keep]
            owners[:] = [owners[k] for k in keep]
            i = 0
        starts.append(len(buf))
        owners.append(unit)
        buf += unit.data
        while True:
            if not in_page:
                j = buf.find(open_tag, i)
                if j == -1:
                    i = max(i, len(buf) - len(open_tag) + 1)  # keep what may be the start of a split marker
                    break
                pos, origin = locate(j)
                if end is not None and pos >= end:
                    return
                i, in_page = j, True
            k = buf.find(close_tag, i + len(open_tag))
            n = buf.find(open_tag, i + len(open_tag), k if k != -1 else len(buf))
            if n != -1:
                report.error("malformed <page>: no </page> before the next <page>", offset=origin, stage="xml",
                             file=path)
                report.count("malformed_pages")
                i, in_page = n, False
                continue
            if k == -1:
                if len(buf) - i > max_page_bytes:
                    report.error(f"page larger than {max_page_bytes:,} bytes without </page>; skipped",
                                 offset=origin, stage="xml", file=path)
                    i, in_page = len(buf), False
                break
            k += len(close_tag)
            yield origin, bytes(buf[i:k])
            i, in_page = k, False
    if in_page:
        report.error("the dump ends inside a page (truncated?)", offset=origin, stage="read", file=path)


def _parse_page(raw: bytes, encoding: str, offset: int) -> Page:
    """A Page from the bytes of one `<page>` element; raises lxml's XMLSyntaxError or ValueError when malformed."""
    from lxml import etree

    root = etree.fromstring(raw if encoding == "utf-8" else raw.decode(encoding), _parser())
    title = ns = page_id = None
    redirect = False
    revision = None
    for child in root:
        tag = child.tag
        if tag == "title":
            title = child.text or ""
        elif tag == "ns":
            ns = int(child.text)
        elif tag == "id":
            page_id = int(child.text)
        elif tag == "redirect":
            redirect = True
        elif tag == "revision":
            revision = child  # full-history dumps list revisions oldest first: keep the last
    if title is None or page_id is None:
        raise ValueError("page without <title> or <id>")
    rev_id = timestamp = model = None
    text = ""
    if revision is not None:
        for child in revision:
            tag = child.tag
            if tag == "id":
                rev_id = int(child.text)
            elif tag == "timestamp":
                timestamp = child.text
            elif tag == "model":
                model = child.text
            elif tag == "text":
                text = child.text or ""
    return Page(title=title, ns=0 if ns is None else ns, page_id=page_id, revision_id=rev_id, timestamp=timestamp,
                redirect=redirect, model=model, text=text, offset=offset)


@functools.cache
def _parser():
    from lxml import etree

    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)


def iter_pages(path: str, start: int = 0, end: int | None = None, *, encoding: str, report: FileReport,
               max_page_bytes: int = 16 << 20) -> Iterator[Page]:
    """The pages of `path` whose `<page>` starts in bytes [start, end) (to the end of the file when `end` is None).
    Damage and malformed pages are reported in `report` (with file and offset) and skipped."""
    from lxml import etree

    for offset, raw in _page_slices(_units(path, start, end), encoding, end, report, path, max_page_bytes):
        try:
            yield _parse_page(raw, encoding, offset)
        except (etree.XMLSyntaxError, ValueError, TypeError) as exc:
            report.error(f"malformed <page>: {exc}", offset=offset, stage="xml", file=path)
            report.count("malformed_pages")
