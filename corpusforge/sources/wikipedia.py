"""Wikipedia: MediaWiki XML dumps -> article documents, streaming, split across Dask workers by byte ranges.

Reads `*-pages-articles*.xml.bz2` (single-stream or multistream), and plain `.xml`, in any encoding the XML
declares (UTF-16 included). A dump is never loaded whole: a worker reads bz2 blocks (corpusforge.bzip2) or 1 MiB
chunks of its byte range, cuts them into `<page>` elements and parses each page on its own with lxml, so a broken
page costs that page only. A range owns the pages whose `<page>` starts inside it and reads past its end to finish
the last one, so ranges cut anywhere give exactly the pages of the whole file. With a multistream dump's index
beside it, ranges start at stream boundaries.

Kept: pages in the configured namespaces (articles, ns 0) that are not redirects or disambiguation pages; their
wikitext becomes plain text (corpusforge.wikitext) with the dump's own namespace names, and the language is
identified and checked against the wiki's. `origin_offset` is the byte offset of the `<page>` in a plain XML file;
in a .bz2 dump it is the offset of the bz2 stream (multistream: the index's offset) or block holding the page's
start, which is where a reader seeks to find it again.

`download` fetches a dump from dumps.wikimedia.org (or a mirror) with its checksum file and verifies it.
"""

from __future__ import annotations

import bisect
import codecs
import dataclasses
import functools
import glob as globlib
import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from corpusforge import bzip2, language, wikitemplates, wikitext
from corpusforge.documents import make_document
from corpusforge.runtime import FileReport, RunContext, ShardWriter, StageSummary, map_files, output_name, resume

SOURCE = "wikipedia"
_CHUNK = 1 << 20
_HEADER_LIMIT = 8 << 20
_RANGE = re.compile(r"^(?P<path>.*)#bytes=(?P<start>\d+)-(?P<end>\d+)$")
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


@dataclasses.dataclass
class WikipediaConfig:
    """`[wikipedia]` / `corpusforge wikipedia`: which dumps, which pages, and how to split the work."""

    inputs: list[str] = dataclasses.field(default_factory=list)
    output: str = "build/wikipedia"
    namespaces: list[int] = dataclasses.field(default_factory=lambda: [0])
    min_chars: int = 200
    split_bytes: int = 64 << 20
    language: str | None = None
    article_url: str | None = None
    drop_lang_mismatch: bool = False
    drop_sections: list[str] = dataclasses.field(default_factory=lambda: list(wikitext.DROP_SECTIONS))
    disambiguation_templates: list[str] = dataclasses.field(
        default_factory=lambda: list(wikitext.DISAMBIGUATION_TEMPLATES))
    # Inline templates to render beyond (or instead of) corpusforge.wikitemplates' table: name -> pattern.
    inline_templates: dict[str, str] = dataclasses.field(default_factory=dict)
    max_page_bytes: int = 16 << 20
    lid_model: str | None = None

    def validate(self) -> None:
        if not self.inputs:
            raise ValueError("inputs: give at least one dump (.xml.bz2 or .xml), glob or folder")
        if self.split_bytes < 1024:
            raise ValueError(f"split_bytes: must be at least 1024, got {self.split_bytes}")
        if self.min_chars < 0:
            raise ValueError(f"min_chars: must be >= 0, got {self.min_chars}")
        if not self.namespaces:
            raise ValueError("namespaces: give at least one namespace number (0 = articles)")
        if self.max_page_bytes < 1 << 16:
            raise ValueError(f"max_page_bytes: must be at least 65536, got {self.max_page_bytes}")
        for name, spec in self.inline_templates.items():
            try:
                wikitemplates.pattern(spec)
            except ValueError as err:
                raise ValueError(f"inline_templates.{name}: {err}") from None


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

    def vocabulary(self, config: WikipediaConfig) -> wikitext.Vocabulary:
        return wikitext.Vocabulary.for_site(self.namespaces, drop_sections=config.drop_sections,
                                            disambiguation_templates=config.disambiguation_templates,
                                            inline_templates=config.inline_templates)


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
    stat = os.stat(path)
    return _read_siteinfo(str(path), stat.st_size, stat.st_mtime_ns, language_override, article_url)


@functools.lru_cache(maxsize=64)
def _read_siteinfo(path: str, _size: int, _mtime: int, language_override: str | None,
                   article_url: str | None) -> SiteInfo:
    head = bytearray()
    encoding = problem = None
    for unit in _units(path, 0):
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
        dbname = Path(path).name.split("-", 1)[0]  # enwiki-20240601-pages-articles.xml.bz2 -> enwiki
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


def _units(path: str, start: int) -> Iterator[_Unit | bzip2.Damage]:
    if bzip2.is_bzip2(path):
        for block in bzip2.read_blocks(path, start):
            if isinstance(block, bzip2.Damage):
                yield block
            else:
                yield _Unit(block.pos, block.offset, False, block.data)
        return
    with open(path, "rb") as fh:
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

    for offset, raw in _page_slices(_units(path, start), encoding, end, report, path, max_page_bytes):
        try:
            yield _parse_page(raw, encoding, offset)
        except (etree.XMLSyntaxError, ValueError, TypeError) as exc:
            report.error(f"malformed <page>: {exc}", offset=offset, stage="xml", file=path)
            report.count("malformed_pages")


# -------------------------------------------------------------------------------------------------------- documents
def page_document(page: Page, path: str, site: SiteInfo, vocab: wikitext.Vocabulary, config: WikipediaConfig,
                  report: FileReport) -> dict[str, Any] | None:
    """The document row of one page, or None (counted under the reason) when the page is not an article kept."""
    report.count("pages")
    if page.redirect or wikitext.is_redirect(page.text):
        report.count("skipped_redirect")
        return None
    if page.ns not in config.namespaces:
        report.count("skipped_namespace")
        return None
    if page.model not in (None, "wikitext"):
        report.count("skipped_not_wikitext")
        return None
    try:
        converted = wikitext.convert(page.text, vocab)
    except Exception as exc:  # a parser failure on one page must not stop the dump
        report.error(f"wikitext conversion failed: {type(exc).__name__}: {exc}", offset=page.offset,
                     stage="wikitext", file=path, page_id=page.page_id)
        return None
    if wikitext.is_disambiguation(page.title, converted.templates, vocab):
        report.count("skipped_disambiguation")
        return None
    if len(converted.text) < config.min_chars:
        report.count("skipped_short")
        return None
    lang, score = language.identify(converted.text, config.lid_model)
    if site.lang and lang != site.lang:
        report.count("lang_mismatch")
        if config.drop_lang_mismatch:
            report.count("skipped_lang_mismatch")
            return None
    report.count("documents")
    report.by_lang[lang] = report.by_lang.get(lang, 0) + 1
    return make_document(source=SOURCE, text=converted.text, lang=lang, lang_score=score, origin_file=path,
                         url=site.article_url(page.title), origin_id=str(page.page_id), title=page.title,
                         origin_offset=page.offset, page_id=page.page_id, revision_id=page.revision_id,
                         crawl_time=page.timestamp)


# ------------------------------------------------------------------------------------------------------ the stage
def expand_inputs(inputs: list[str]) -> list[str]:
    """Dump files named by `inputs` (paths, globs, folders), sorted within each pattern, without index files."""
    out: list[str] = []
    for spec in inputs:
        if os.path.isdir(spec):
            found = [str(p) for p in sorted(Path(spec).iterdir()) if p.name.endswith((".xml", ".bz2"))]
        elif any(c in spec for c in "*?["):
            found = sorted(globlib.glob(spec))
        else:
            found = [spec]
        if not found:
            raise FileNotFoundError(f"no dump matches {spec!r}")
        out.extend(p for p in found if "-index" not in Path(p).name)
    return list(dict.fromkeys(out))


def index_path(path: str) -> str | None:
    """The multistream index beside a `*-multistream.xml.bz2` dump, if there is one."""
    if "multistream" not in path:
        return None
    stem = path[: -len(".xml.bz2")] if path.endswith(".xml.bz2") else path.rsplit(".", 1)[0]
    for candidate in (stem + "-index.txt.bz2", stem + "-index.txt"):
        if os.path.exists(candidate):
            return candidate
    return None


def _index_cuts(index: str, split_bytes: int) -> list[int]:
    """Range starts at stream offsets from a multistream index (`offset:page_id:title` lines), about `split_bytes`
    apart; read as a stream, so only the cuts are kept in memory."""
    import bz2

    cuts = [0]
    opener = bz2.open if index.endswith(".bz2") else open
    with opener(index, "rt", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            head = line.split(":", 1)[0]
            if head.isdigit() and int(head) - cuts[-1] >= split_bytes:
                cuts.append(int(head))
    return cuts


def plan(config: WikipediaConfig) -> list[str]:
    """Work items: a dump path, or `path#bytes=START-END` for each range of a dump larger than `split_bytes`."""
    items = []
    for path in expand_inputs(config.inputs):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such dump: {path}")
        size = os.path.getsize(path)
        if size <= config.split_bytes:
            items.append(path)
            continue
        index = index_path(path)
        cuts = _index_cuts(index, config.split_bytes) if index else list(range(0, size, config.split_bytes))
        items.extend(f"{path}#bytes={s}-{e}" for s, e in zip(cuts, [*cuts[1:], size]))
    if not items:
        raise FileNotFoundError(f"no dump matches {config.inputs}")
    return items


def parse_item(item: str) -> tuple[str, int, int | None]:
    """(path, start, end) of a work item from `plan` (end None: to the end of the file)."""
    match = _RANGE.match(item)
    if match:
        return match.group("path"), int(match.group("start")), int(match.group("end"))
    return item, 0, None


def dump_to_shard(item: str, out_dir: str, config: WikipediaConfig) -> FileReport:
    """The per-range task: the articles of one dump (range) -> one Parquet shard in `out_dir`, and its report.
    A shard finished by an earlier run is kept and its report reused (resume)."""
    out_path = Path(out_dir) / output_name(item)
    path, start, end = parse_item(item)
    fp = resume(out_path, item, config, files=[path])
    if fp.done is not None:
        return fp.done
    t0 = time.perf_counter()
    report = FileReport(input=item, output=str(out_path), redone=fp.redone)
    try:
        if os.path.getsize(path) == 0:
            raise ValueError("empty file (0 bytes)")
        site = read_siteinfo(path, config.language, config.article_url)
        report.bytes_in = (end if end is not None else os.path.getsize(path)) - start
    except (OSError, ValueError) as exc:
        report.error(f"cannot read the dump: {type(exc).__name__}: {exc}", offset=0, stage="read", file=path)
        report.output = None
        return report
    if site.problem:
        report.warn(f"dump header unreadable ({site.problem}); using the built-in namespace names and language "
                    f"{site.lang or 'unknown'}", offset=0, stage="read", file=path)
    vocab = site.vocabulary(config)
    with ShardWriter(out_path, row_group_rows=256, fingerprint=fp) as writer:
        for page in iter_pages(path, start, end, encoding=site.encoding, report=report,
                               max_page_bytes=config.max_page_bytes):
            doc = page_document(page, path, site, vocab, config, report)
            if doc is not None:
                writer.write_rows([doc])
        writer.set_report(report)
    report.seconds = time.perf_counter() - t0
    return report


def run(config: WikipediaConfig, ctx: RunContext) -> StageSummary:
    """The stage: every dump -> article shards in `config.output`, on Dask, with `_summary.json` and
    `_errors.jsonl`."""
    return map_files(dump_to_shard, plan(config), config.output, config, stage=SOURCE, ctx=ctx)[0]


# --------------------------------------------------------------------------------------------------------- download
DUMPS_URL = "https://dumps.wikimedia.org/"
DEFAULT_DUMP = "pages-articles-multistream.xml.bz2"
_LOG_EVERY = 256 << 20
_NAME_WITH_FILE = re.compile(r"^(?P<wiki>[a-z0-9_]+?)-(?P<date>\d{8}|latest)-(?P<file>.+)$")
_NAME = re.compile(r"^(?P<wiki>[a-z0-9_]+?)(?:-(?P<date>\d{8}|latest))?$")


class DownloadError(RuntimeError):
    """A dump could not be fetched or does not match its published checksum."""


def dump_files(name: str) -> tuple[str, str, list[str]]:
    """(wiki, date, file names) for a dump name: `enwiki` (latest multistream dump and its index),
    `enwiki-20240601`, or a full file name such as `enwiki-20240601-pages-articles.xml.bz2`."""
    match = _NAME_WITH_FILE.match(name)
    if match:
        wiki, date, file = match.group("wiki"), match.group("date"), match.group("file")
    else:
        match = _NAME.match(name)
        if not match:
            raise DownloadError(f"not a dump name: {name!r} (try enwiki, enwiki-20240601 or "
                                f"enwiki-20240601-{DEFAULT_DUMP})")
        wiki, date, file = match.group("wiki"), match.group("date") or "latest", DEFAULT_DUMP
    files = [f"{wiki}-{date}-{file}"]
    if file.endswith("multistream.xml.bz2"):
        files.append(f"{wiki}-{date}-{file[: -len('.xml.bz2')]}-index.txt.bz2")
    return wiki, date, files


def _checksums(session, folder: str, wiki: str, date: str, timeout: float) -> tuple[str, dict[str, str]]:
    """(algorithm, {file name: hex digest}) from the dump's sha1sums (else md5sums) file."""
    for algo in ("sha1", "md5"):
        url = f"{folder}{wiki}-{date}-{algo}sums.txt"
        resp = session.get(url, timeout=timeout)
        if resp.status_code == 200:
            sums = {}
            for line in resp.text.splitlines():
                parts = line.split()
                if len(parts) == 2:
                    sums[parts[1].lstrip("*")] = parts[0].lower()
            return algo, sums
    raise DownloadError(f"no checksum file ({wiki}-{date}-sha1sums.txt or -md5sums.txt) under {folder}")


def _expected_digest(sums: dict[str, str], fname: str, wiki: str, date: str) -> str:
    if fname in sums:
        return sums[fname]
    if date == "latest":  # the latest/ checksum file names the dated files
        pattern = re.compile(re.escape(wiki) + r"-\d{8}-" + re.escape(fname[len(f"{wiki}-latest-"):]) + "$")
        for name, digest in sums.items():
            if pattern.match(name):
                return digest
    raise DownloadError(f"{fname} is not listed in the dump's checksum file")


def _file_digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def download(name: str, output: str | Path, *, base_url: str = DUMPS_URL, timeout: float = 60.0,
             console: Any = None) -> list[Path]:
    """Fetch the dump `name` (see `dump_files`) into `output` and verify it against its published checksum.

    A file already there with the right checksum is kept. A download in progress lives in `.NAME.part` (a name no
    reader globs) and resumes from where it stopped when the server supports ranges; only a verified file gets its
    final name. Raises DownloadError on a missing file or a checksum mismatch (the bad partial file is removed).
    """
    import requests
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    console = console or Console(stderr=True)
    wiki, date, files = dump_files(name)
    folder = f"{base_url.rstrip('/')}/{wiki}/{date}/"
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    with requests.Session() as session:
        algo, sums = _checksums(session, folder, wiki, date, timeout)
        for fname in files:
            expected = _expected_digest(sums, fname, wiki, date)
            final = output / fname
            if final.exists() and _file_digest(final, algo) == expected:
                console.print(f"{fname}: already downloaded and verified")
                written.append(final)
                continue
            part = output / f".{fname}.part"
            have = part.stat().st_size if part.exists() else 0
            headers = {"Range": f"bytes={have}-"} if have else {}
            with session.get(folder + fname, headers=headers, stream=True, timeout=timeout) as resp:
                if resp.status_code == 416 and have:  # the partial file is already complete
                    pass
                elif resp.status_code not in (200, 206):
                    raise DownloadError(f"{folder + fname}: HTTP {resp.status_code}")
                else:
                    mode = "ab" if resp.status_code == 206 else "wb"  # 200: the server ignored the range
                    have = have if mode == "ab" else 0
                    total = int(resp.headers.get("Content-Length", 0)) + have or None
                    progress = Progress(TextColumn(fname), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                        console=console, disable=not console.is_terminal)
                    with progress, open(part, mode) as fh:
                        bar = progress.add_task("download", total=total, completed=have)
                        for chunk in resp.iter_content(1 << 20):
                            fh.write(chunk)
                            progress.update(bar, advance=len(chunk))
                            have += len(chunk)
                            if progress.disable and have % _LOG_EVERY < len(chunk):  # a line now and then in logs
                                size = f"{total:,}" if total else "?"
                                console.print(f"{fname}: {have:,} of {size} bytes", highlight=False)
            got = _file_digest(part, algo)
            if got != expected:
                part.unlink()
                raise DownloadError(f"{fname}: {algo} {got} does not match the published {expected}; "
                                    "the download was removed")
            os.replace(part, final)
            console.print(f"{fname}: {final.stat().st_size:,} bytes, {algo} verified")
            written.append(final)
    return written
