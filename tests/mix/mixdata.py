"""Helpers for the weighted-corpus tests: document rows of all four sources made from real text in shared/data (as
the source stages make them), written as document shards; GPT-3's mix table over them; reading a corpus back."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from corpusforge import language, runtime
from corpusforge.documents import make_document

BOOKS = ["pg42.txt.gz", "1424-0.txt.gz", "244-0.txt.gz", "pg2097.txt.gz"]
BOOK_PART_CHARS = 40_000


def commoncrawl_docs(data: Path, limit: int) -> list[dict]:
    path = data / "webtext/dolma-testdata/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
    docs = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for offset, line in enumerate(f):
            if len(docs) == limit:
                break
            rec = json.loads(line)
            lang, score = language.identify(rec["text"])
            docs.append(make_document(source="commoncrawl", text=rec["text"], lang=lang, lang_score=score,
                                      origin_file=str(path), origin_offset=offset, url=rec.get("metadata", {}).get("url")
                                      or f"https://example.org/cc/{rec['id']}", origin_id=rec["id"]))
    return docs


def webtext2_docs(data: Path, limit: int) -> list[dict]:
    import zstandard

    path = data / "reddit/reddit-api_submissions_praw-cassettes.ndjson.zst"
    docs = []
    with open(path, "rb") as raw:
        text = zstandard.ZstdDecompressor().stream_reader(raw).read().decode("utf-8")
    for offset, line in enumerate(text.splitlines()):
        rec = json.loads(line)
        body = rec.get("selftext") or ""
        if len(body) < 200:
            continue
        lang, score = language.identify(body)
        docs.append(make_document(source="webtext2", text=body, lang=lang, lang_score=score, origin_file=str(path),
                                  origin_offset=offset, url=f"https://www.reddit.com{rec.get('permalink', '/')}",
                                  origin_id=rec["id"], title=rec.get("title"), reddit_score=rec.get("score"),
                                  subreddit=rec.get("subreddit")))
        if len(docs) == limit:
            break
    return docs


def wikipedia_docs(data: Path, limit: int) -> list[dict]:
    import mwparserfromhell

    docs = []
    for page_id, path in enumerate(sorted((data / "wikipedia/wtf_wikipedia-wikitext").glob("*.txt"))[:limit], 1):
        text = mwparserfromhell.parse(path.read_text(encoding="utf-8")).strip_code().strip()
        if len(text) < 200:
            continue
        lang, score = language.identify(text)
        docs.append(make_document(source="wikipedia", text=text, lang=lang, lang_score=score, origin_file=str(path),
                                  url=f"https://en.wikipedia.org/wiki/{path.stem}", title=path.stem.replace("-", " "),
                                  page_id=page_id, origin_id=str(page_id)))
    return docs


def books_docs(data: Path) -> list[dict]:
    docs = []
    for name in BOOKS:
        path = data / "books/gutenberg-test-corpus" / name
        text = gzip.open(path, "rt", encoding="utf-8", errors="replace").read()
        book_id = name.split(".")[0]
        for part, start in enumerate(range(0, len(text), BOOK_PART_CHARS)):
            chunk = text[start:start + BOOK_PART_CHARS]
            lang, score = language.identify(chunk)
            docs.append(make_document(source="books", text=chunk, lang=lang, lang_score=score, origin_file=str(path),
                                      origin_offset=start, origin_id=f"{book_id}:{part}", book_id=book_id, part=part))
    return docs


def write_documents(folder: Path, name: str, docs: list[dict], row_group_rows: int = 64) -> Path:
    path = folder / f"{name}.parquet"
    with runtime.ShardWriter(path, "document", row_group_rows=row_group_rows) as writer:
        writer.write_rows(docs)
    return path


def gpt3_config(documents: Path, tokenizer_file: Path, **overrides):
    """GPT-3's table (sums to 101%) over the test documents, books split in two halves by book id."""
    from corpusforge.mix.mixer import MixConfig, MixSet

    inputs = [str(documents)]
    sets = [MixSet("commoncrawl", "commoncrawl", inputs, 0.60, max_epochs=1.0),
            MixSet("webtext2", "webtext2", inputs, 0.22, max_epochs=4.0),
            MixSet("books1", "books", inputs, 0.08, split_by="book_id", split_range=[0.0, 0.5]),
            MixSet("books2", "books", inputs, 0.08, split_by="book_id", split_range=[0.5, 1.0]),
            MixSet("wikipedia", "wikipedia", inputs, 0.03, max_epochs=3.0)]
    settings = dict(sets=sets, tokenizer=str(tokenizer_file), budget_tokens=3_000_000, shard_tokens=60_000,
                    row_group_tokens=8_000, val_fraction=0.03, seed=7)
    settings.update(overrides)
    return MixConfig(**settings)


def read_corpus(corpus: Path, columns: list[str] | None = None, split: str | None = None):
    """All rows of the corpus's shards (optionally one split) as one table, in manifest order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from corpusforge.mix import manifest

    m = manifest.load(corpus)
    splits = [split] if split else ["train", "val"]
    return pa.concat_tables([pq.read_table(corpus / shard["path"], columns=columns)
                             for sp in splits for _, shard in manifest.shards(m, sp)])
