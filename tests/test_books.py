"""The books stage: the 65 real Gutenberg books of ../shared/data, header/footer variants, EPUB in spine order,
splitting and reassembling a book, damaged input, resume and the CLI."""

from __future__ import annotations

import dataclasses
import csv
import gzip
import json
import re
from pathlib import Path

import pytest
import shard_io
from shard_io import read_errors

from corpusforge import cli
from corpusforge.runtime import FileReport, RunContext
from corpusforge.sample import books as sample_books
from corpusforge.sources import books

# What the licence, header and footer say: none of it may reach a document.
LICENCE = ("*** START OF", "***START OF", "*** END OF", "***END OF", "Gutenberg-tm", "gutenberg.org/license",
           "SMALL PRINT!", "Character set encoding:", "Release Date:")


def licence_in(text: str) -> list[str]:
    return [mark for mark in LICENCE if mark in text]


def read_docs(folder: Path) -> list[dict]:
    return shard_io.read_docs(folder, key=lambda r: (r["book_id"], r["part"]))


def run(out: Path, inputs, client, **kw):
    config = books.BooksConfig(inputs=[str(i) for i in inputs], **kw)
    config.validate()
    return books.run(dataclasses.replace(config, output=str(out)), RunContext(client=client)), read_docs(out)


def reassemble(docs: list[dict]) -> dict[str, str]:
    """book_id -> the book's text, from its parts put in order."""
    parts: dict[str, list[tuple[int, str]]] = {}
    for d in docs:
        parts.setdefault(d["book_id"], []).append((d["part"], d["text"]))
    return {bid: books.PARAGRAPH_SEPARATOR.join(t for _, t in sorted(ps)) for bid, ps in parts.items()}


def _norm(s: str | None) -> str:
    return re.sub(r"[^a-z0-9]", "", (s or "").lower())


# --------------------------------------------------------------------------------------------------- real books
@pytest.fixture(scope="module")
def gutenberg_run(shared_data, dask_client, tmp_path_factory):
    folder = shared_data / "books" / "gutenberg-test-corpus"
    out = tmp_path_factory.mktemp("gutenberg")
    summary, docs = run(out, [folder], dask_client, task_bytes=4 << 20)
    return folder, out, summary, docs


@pytest.mark.shared_data
@pytest.mark.slow
def test_gutenberg_corpus(gutenberg_run):
    """65 real books: both start-marker variants, 3 file-name styles; metadata as MANIFEST.csv says."""
    folder, out, summary, docs = gutenberg_run
    assert summary.errors == 0 and read_errors(out) == []
    assert summary.counts["book_files"] == summary.counts["books"] == summary.counts["gutenberg_books"] == 65
    # 24 MB of .gz in groups of 4 MiB: a few tasks and shards, not one per book
    assert summary.files == len(books.plan(books.BooksConfig(inputs=[str(folder)], task_bytes=4 << 20))) == 7
    rows = csv.DictReader((folder / "MANIFEST.csv").read_text(encoding="utf-8").splitlines(), skipinitialspace=True)
    manifest = {r["file_name"].strip(): r for r in rows}
    first = {}
    for d in docs:
        first.setdefault(d["book_id"], d)
    assert len(first) == 65
    for name, row in manifest.items():
        if name == "test.txt":
            continue
        number = re.match(r"(?:pg)?(\d+)", name).group(1)
        doc = first[f"gutenberg:{number}"]
        assert Path(doc["origin_file"]).name == name + ".gz"
        assert doc["url"] is None  # parts of one book must not share a URL (URL dedup keeps one per URL)
        if row["title"]:  # the manifest shortens some titles ("Sybil" for "Sybil or the Two Nations")
            assert _norm(row["title"]) in _norm(doc["title"]), (name, doc["title"])
        assert _norm(row["author"]) == _norm(doc["author"]), (name, doc["author"])
        assert row["language"] == "English" and doc["lang"] == "en"
    # 106.txt is 105.txt with another author: the file name keeps the two apart
    assert first["gutenberg:106"]["author"] == "TESTING" and first["gutenberg:105"]["author"] == "Jane Austen"
    variants = {name: (folder / (name + ".gz")) for name in manifest if name != "test.txt"}
    nospace = [n for n, p in variants.items() if b"***START OF THE PROJECT" in gzip.decompress(p.read_bytes())]
    assert len(nospace) == 15  # the second start-marker variant is there and was cut like the first
    for d in docs:
        assert not licence_in(d["text"]), (d["book_id"], d["part"], licence_in(d["text"]))
        assert d["source"] == "books"
        assert len(d["text"]) <= 100_000 or "\n\n" not in d["text"]  # only a single paragraph may be longer


@pytest.mark.shared_data
def test_gutenberg_parts_are_chapters_in_order(gutenberg_run):
    folder, _, _, docs = gutenberg_run
    pride = [d for d in docs if d["book_id"] == "gutenberg:1342"]
    assert [d["part"] for d in pride] == list(range(len(pride))) and len(pride) >= 50
    assert "\n\nChapter 1\n\n" in pride[0]["text"][:1000]  # the title page joined the first chapter
    assert [d["text"].split("\n", 1)[0] for d in pride[1:4]] == ["Chapter 2", "Chapter 3", "Chapter 4"]
    assert "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be " \
           "in want of a wife." in pride[0]["text"]  # hard-wrapped lines joined into a paragraph
    # origin_offset points at the part's first paragraph in the uncompressed file
    raw = gzip.decompress((folder / "1342-0.txt.gz").read_bytes())
    for d in pride[:5]:
        first_line = d["text"].split("\n", 1)[0][:30]
        assert raw[d["origin_offset"]:].decode("utf-8").startswith(first_line)
    text = reassemble(pride)["gutenberg:1342"]
    assert text.rstrip().endswith("uniting them.")  # the last words of the novel, then the footer is gone


# ----------------------------------------------------------------------------------------- built books: variants
CHAPTERS = [(f"CHAPTER {n}", [f"Paragraph {i} of chapter {n}: the rain kept falling on the harbour and the "
                              f"boats rocked at their moorings while the keeper counted the lamps again." * 2
                              for i in range(1, 6)]) for n in ("I", "II", "III", "IV")]
BOOK = {"number": 91234, "title": "A Harbour Book", "author": "Jo Tester", "language": "English",
        "chapters": CHAPTERS}


@pytest.mark.parametrize("variant,encoding,crlf,name", [
    ("modern", "utf-8", False, "91234-0.txt"),
    ("nospace", "latin-1", True, "pg91234.txt.gz"),
    ("old", "ascii", False, "91234.txt.bz2"),
])
def test_gutenberg_header_variants(tmp_path, variant, encoding, crlf, name):
    path = tmp_path / name
    if name.endswith(".bz2"):
        import bz2

        plain = sample_books.write_gutenberg(tmp_path / "plain.txt", encoding=encoding, crlf=crlf, variant=variant,
                                             **BOOK)
        path.write_bytes(bz2.compress(plain.read_bytes()))
    else:
        sample_books.write_gutenberg(path, encoding=encoding, crlf=crlf, variant=variant, **BOOK)
    report = FileReport(input=str(path))
    book = books.read_book(str(path), books.BooksConfig(inputs=["x"]), report)
    assert book.book_id == "gutenberg:91234" and book.title == "A Harbour Book" and book.author == "Jo Tester"
    assert book.paragraphs[0] == "A Harbour Book" and book.paragraphs[-1].startswith("Paragraph 5 of chapter IV")
    assert not licence_in(book.text) and "small print" not in book.text.lower()
    assert len(book.chapter_starts) == 4 and report.errors == []


def test_plain_text_and_verse_keep_their_lines(tmp_path):
    path = tmp_path / "verses.txt"
    text = ("Songs of the Road\n\nThe road goes on and on,\nPast the hill and past the pond,\n"
            "And the traveller is gone.\n\nA prose paragraph that was wrapped at seventy columns by its\n"
            "typist, long ago, and should read as one line of text in the end.\n")
    path.write_text(text)
    book = books.read_book(str(path), books.BooksConfig(inputs=["x"]), FileReport(input=str(path)))
    assert book.book_id == "verses" and book.title is None
    assert book.paragraphs == [
        "Songs of the Road",
        "The road goes on and on,\nPast the hill and past the pond,\nAnd the traveller is gone.",
        "A prose paragraph that was wrapped at seventy columns by its typist, long ago, and should read as one "
        "line of text in the end."]
    assert book.offsets == [0, text.index("The road"), text.index("A prose")]


def test_epub_in_spine_order(tmp_path):
    path = sample_books.write_epub(tmp_path / "clock.epub", manifest_order=[2, 0, 1], **sample_books.CLOCKMAKER)
    book = books.read_book(str(path), books.BooksConfig(inputs=["x"]), FileReport(input=str(path)))
    assert book.title == "The Clockmaker's Apprentice" and book.author == "Samuel Pryor" and book.language == "en"
    assert book.book_id == "urn:uuid:5f1c2a9e-corpusforge-sample-0001"
    headings = [book.paragraphs[i] for i in book.chapter_starts]
    assert headings == [h for h, _ in sample_books.CLOCKMAKER["chapters"]]  # spine order, not manifest order
    assert book.paragraphs[1].startswith("The clockmaker's shop stood at the corner of Bell Street")
    assert all("Table of Contents" not in p for p in book.paragraphs)  # the nav page is not text


# ------------------------------------------------------------------------------------------ splitting the book
def _book(n_chapters: int, paragraphs: int, size: int) -> books.Book:
    paras, starts = [], []
    for c in range(n_chapters):
        starts.append(len(paras))
        paras.append(f"CHAPTER {c + 1}")
        paras += [f"c{c}p{i} " + "x" * size for i in range(paragraphs)]
    return books.Book(book_id="b", title="t", author="a", language="en", paragraphs=paras,
                      offsets=[None] * len(paras), chapter_starts=starts)


@pytest.mark.parametrize("mode", ["chapter", "size", "none"])
def test_split_and_reassemble_in_order(mode):
    book = _book(n_chapters=6, paragraphs=12, size=300)
    ranges = books.split_parts(book, mode, max_chars=2500, min_chars=1000)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(book.paragraphs)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))  # contiguous, in order, nothing twice
    texts = [books.PARAGRAPH_SEPARATOR.join(book.paragraphs[a:b]) for a, b in ranges]
    assert books.PARAGRAPH_SEPARATOR.join(texts) == book.text
    if mode == "none":
        assert len(ranges) == 1
    else:
        assert all(len(t) <= 2500 for t in texts) and len(ranges) >= 9
    if mode == "chapter":  # every chapter starts a part
        assert {a for a, _ in ranges} >= set(book.chapter_starts)


def test_short_chapters_join_the_next_and_a_long_paragraph_is_never_cut():
    book = _book(n_chapters=5, paragraphs=1, size=100)  # five chapters of 116 characters
    # two chapters reach 200; the last one, short, joins the part before it
    assert books.split_parts(book, "chapter", max_chars=5000, min_chars=200) == [(0, 4), (4, 10)]
    huge = _book(n_chapters=1, paragraphs=3, size=4000)
    # heading + first paragraph would be 4016 characters: each paragraph is a part, however long
    assert books.split_parts(huge, "size", max_chars=3000, min_chars=0) == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_stage_splits_books_and_parts_reassemble(dask_client, tmp_path):
    sample_books.build(tmp_path / "in", 1)
    summary, docs = run(tmp_path / "out", [tmp_path / "in"], dask_client, max_part_chars=1500, min_part_chars=300,
                        min_chars=300)
    assert summary.counts["books"] == 5 and summary.errors == 0
    whole, _ = run(tmp_path / "whole", [tmp_path / "in"], dask_client, split="none", min_chars=300)
    unsplit = {d["book_id"]: d["text"] for d in read_docs(tmp_path / "whole")}
    assert reassemble(docs) == unsplit  # parts in order give the book back
    lamp = [d for d in docs if d["book_id"] == "gutenberg:90001"]
    assert len(lamp) == 4 and [d["part"] for d in lamp] == [0, 1, 2, 3]
    assert [d["text"].split("\n")[0] for d in lamp[1:]] == ["CHAPTER II.", "CHAPTER III.", "CHAPTER IV."]
    assert "Produced by" not in unsplit["gutenberg:90001"]
    assert {d["lang"] for d in docs if d["book_id"] == "gutenberg:90003"} == {"de"}
    harbour = unsplit["gutenberg:90002"]  # Latin-1, CRLF, gzip
    assert "café" in harbour and "naïve" in harbour and "\r" not in harbour
    assert {d["author"] for d in docs if d["book_id"] == "gutenberg:90002"} == {"Edith Carrow"}


# ---------------------------------------------------------------------------------------------- damaged input
def test_undecodable_truncated_and_broken_books_are_reported(dask_client, tmp_path):
    good = sample_books.write_gutenberg(tmp_path / "in" / "90001-0.txt", **sample_books.LAMPLIGHTER)
    (tmp_path / "in" / "noise.txt").write_bytes(bytes(range(256)) * 40)  # binary, no charset decodes it
    full = gzip.compress(good.read_bytes())
    (tmp_path / "in" / "cut.txt.gz").write_bytes(full[: len(full) * 3 // 4])
    (tmp_path / "in" / "broken.epub").write_bytes(b"PK\x03\x04 not really a zip")
    summary, docs = run(tmp_path / "out", [tmp_path / "in"], dask_client, min_chars=300, min_part_chars=300)
    errs = {Path(e["file"]).name: e for e in read_errors(tmp_path / "out")}
    assert set(errs) == {"noise.txt", "cut.txt.gz", "broken.epub"}
    assert "undecodable" in errs["noise.txt"]["reason"] and "EPUB" in errs["broken.epub"]["reason"]
    assert "truncated" in errs["cut.txt.gz"]["reason"] and errs["cut.txt.gz"]["offset"] > 0
    ids = {d["origin_file"].rsplit("/", 1)[1] for d in docs}
    assert ids == {"90001-0.txt", "cut.txt.gz"}  # the truncated book keeps the text before the cut
    assert summary.counts["truncated_files"] == 1 and summary.errors == 3


def test_resume_and_cli(tmp_path):
    sample_books.build(tmp_path / "in", 1)
    out = tmp_path / "out"
    args = ["books", str(tmp_path / "in"), "--output", str(out), "--workers", "1", "--min-chars", "300",
            "--min-part-chars", "300", "--max-part-chars", "1500"]
    assert cli.main(args) == 0
    shards = {p.name: p.read_bytes() for p in out.glob("*.parquet")}
    assert cli.main(args) == 0
    summary = json.loads((out / "_summary.json").read_text())
    assert summary["resumed_files"] == summary["files"] == 1 and summary["counts"]["documents"] == 14
    assert {p.name: p.read_bytes() for p in out.glob("*.parquet")} == shards
    assert cli.main(["books", str(tmp_path / "nothing-here"), "--output", str(out)]) == 2
