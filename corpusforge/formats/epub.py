"""EPUB: a book's text blocks in spine order and its Dublin Core metadata, with the archive's declared sizes checked
before anything is read. Local files and object-store URLs alike (through `storage.open_file`)."""

from __future__ import annotations

import dataclasses

from corpusforge import storage

_HTML_BLOCKS = frozenset("p h1 h2 h3 h4 h5 h6 li blockquote pre div dt dd td th caption figcaption".split())


class EpubError(ValueError):
    """Not a readable EPUB, or one whose entries declare more than the size limit."""


@dataclasses.dataclass
class Epub:
    """What an EPUB holds: metadata (None where absent) and its text blocks, with the index of each spine document's
    first block (where a chapter begins)."""

    identifier: str | None
    title: str | None
    creator: str | None
    language: str | None
    paragraphs: list[str]
    chapter_starts: list[int]


def html_paragraphs(content: bytes) -> list[str]:
    """The text blocks of one XHTML document of an EPUB, in order (innermost block elements)."""
    from lxml import etree, html

    try:
        root = html.fromstring(content)
    except (etree.ParserError, ValueError):
        return []
    for bad in root.xpath("//script|//style|//head"):
        bad.drop_tree()
    out = []
    for el in root.iter():
        if not isinstance(el.tag, str) or el.tag.lower() not in _HTML_BLOCKS:
            continue
        if any(isinstance(c.tag, str) and c.tag.lower() in _HTML_BLOCKS for c in el.iterdescendants()):
            continue
        text = " ".join(el.text_content().split())
        if text:
            out.append(text)
    return out


def read_epub(path: str, max_bytes: int, limit_name: str = "the size limit") -> Epub:
    """The spine's documents of the EPUB at `path` in spine order (the table of contents page skipped). Raises
    EpubError when it is not a readable EPUB or its entries declare more than `max_bytes` uncompressed (the message
    calls that limit `limit_name`)."""
    import warnings
    import zipfile

    import ebooklib
    from ebooklib import epub

    try:
        # ebooklib reads every entry into memory: check the sizes the archive declares (zipfile stops an entry at
        # its declared size) before it does, so a small EPUB of huge entries is refused unread. Both read the
        # archive through one seekable file, local or on a store (ranged reads: the central directory, then the
        # entries).
        with storage.open_file(path) as fh:
            with zipfile.ZipFile(fh) as archive:
                declared = sum(info.file_size for info in archive.infolist())
            if declared > max_bytes:
                raise EpubError(f"EPUB entries declare {declared:,} bytes uncompressed, more than {limit_name} "
                                f"({max_bytes:,}); not read")
            fh.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ebooklib warns about options it is about to change the default of
                book = epub.read_epub(fh, options={"ignore_ncx": True})
    except EpubError:
        raise
    except (zipfile.BadZipFile, epub.EpubException, KeyError, OSError, ValueError) as exc:
        raise EpubError(f"unreadable EPUB: {type(exc).__name__}: {exc}") from None

    def meta(name: str) -> str | None:
        values = [v for v, _ in book.get_metadata("DC", name) if v]
        return ", ".join(values) if values else None

    paragraphs: list[str] = []
    chapter_starts: list[int] = []
    for idref, _linear in book.spine:
        item = book.get_item_with_id(idref)
        if (item is None or item.get_type() != ebooklib.ITEM_DOCUMENT or isinstance(item, epub.EpubNav)
                or "nav" in (getattr(item, "properties", None) or [])):
            continue
        blocks = html_paragraphs(item.get_content())
        if blocks:
            chapter_starts.append(len(paragraphs))
            paragraphs.extend(blocks)
    return Epub(identifier=meta("identifier"), title=meta("title"), creator=meta("creator"),
                language=meta("language"), paragraphs=paragraphs, chapter_starts=chapter_starts)
