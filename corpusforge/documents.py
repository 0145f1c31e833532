"""Documents of the `document` contract (schemas/document.schema.json): making rows with stable, per-row ids and
content hashes (every source), finding and reading document shards (every stage after the sources), and seeded
per-document coins, so every sample and split (tokenizer sample, set split, shuffle order, quality draws) is
reproducible and needs no coordination between Dask tasks."""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from corpusforge import resume, runtime, storage
from corpusforge import schema as schema_mod


def document_id(source: str, text: str, *origin: object) -> str:
    """A row's id (32 hex digits): a hash of its source, where it came from (`origin`: file name, byte offset,
    record/page/book id, part, URL) and its text. Two captures of the same page are two rows with two ids (their
    offsets or record ids differ); the same input read again gives the same ids. Equal texts are found by
    `content_hash`, not by id."""
    h = hashlib.blake2b(digest_size=16)
    for part in (source, *("" if o is None else str(o) for o in origin), text):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def content_hash(text: str) -> str:
    """Hash of a document's text (32 hex digits): equal texts, equal hash, whatever their source or capture."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def parse_time(value: Any) -> datetime | None:
    """A UTC datetime from an ISO-8601 string (WARC-Date, wiki timestamp), epoch seconds, or a datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    text = str(value).strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def make_document(*, source: str, text: str, lang: str, lang_score: float, origin_file: str,
                  url: str | None = None, origin_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A document row with its id and content hash computed; extra keyword fields are other columns of the
    contract. The id takes the input file's name, not its path, so it does not depend on where the input lies."""
    if "crawl_time" in fields:
        fields["crawl_time"] = parse_time(fields["crawl_time"])
    origin = (os.path.basename(origin_file.rstrip("/")), fields.get("origin_offset"), origin_id, fields.get("part"),
              url)
    return {
        "id": document_id(source, text, *origin), "content_hash": content_hash(text),
        "source": source, "url": url, "text": text, "lang": lang, "lang_score": float(lang_score),
        "origin_file": origin_file, "origin_id": origin_id, **fields,
    }


# ------------------------------------------------------------------------------------------------ document shards
def find_shards(inputs: Iterable[str], exclude: str | os.PathLike | None = None) -> tuple[list[str], list[str]]:
    """The document shards named by `inputs` (folders: their `*.parquet`; globs; files), in a stable order without
    duplicates, and the inputs that do not exist. A folder whose stage did not finish is refused
    (resume.IncompleteStage). In a folder or a glob, names starting with `_` or `.` are skipped:
    a stage's side files (`_duplicates.parquet`, `_dropped.parquet`) and unfinished temporary files. Folders are not
    searched below the top: a stage writes its shards there, and subfolders hold other things (webtext2's
    `links/`, dedup's `_work/`). `exclude` is the caller's output folder, refused as an input."""
    shards: list[str] = []
    missing: list[str] = []
    for spec in inputs:
        if storage.is_url(spec):
            found = _find_remote_shards(spec, exclude)
            if not found and not storage.exists(spec):
                missing.append(spec)
            shards.extend(f for f in found if f not in shards)
            continue
        path = Path(spec)
        if path.is_dir():
            if exclude is not None and path.resolve() == Path(exclude).resolve():
                raise ValueError(f"input {spec} is the output folder itself")
            resume.require_complete(path)
            found = sorted(str(p) for p in path.glob("*.parquet") if not p.name.startswith(("_", ".")))
        elif path.is_file():
            found = [str(path)]
        else:
            found = sorted(p for p in glob.glob(spec) if os.path.isfile(p)
                           and not os.path.basename(p).startswith(("_", "."))) if glob.has_magic(spec) else []
        if not found and not path.exists():
            missing.append(spec)
        shards.extend(f for f in found if f not in shards)
    return shards, missing


def _find_remote_shards(spec: str, exclude: str | os.PathLike | None) -> list[str]:
    """`find_shards` for one object store URL: a folder's (prefix's) shards, one object, or a glob."""
    if storage.is_dir(spec):
        if exclude is not None and spec.rstrip("/") == str(exclude).rstrip("/"):
            raise ValueError(f"input {spec} is the output folder itself")
        resume.require_complete(spec)
        return [p for p in storage.listing(spec, "*.parquet") if not storage.name(p).startswith(("_", "."))]
    if glob.has_magic(spec):
        folder, pattern = spec.rsplit("/", 1)
        return [p for p in storage.listing(folder, pattern) if not storage.name(p).startswith(("_", "."))]
    return [spec] if storage.exists(spec) else []


def read_batches(path: str, columns: list[str], report: runtime.FileReport, batch_rows: int = 1024, *,
                 limit: int | None = None, contract_types: bool = False,
                 stage: str = "read") -> Iterator[pa.RecordBatch]:
    """Record batches of `columns` from one document shard (the one shard reader): at most `limit` rows, cast to
    the document contract's types with `contract_types`. A file that is not a document shard, or that breaks while
    being read, is reported (with the row where it broke, as `stage`) and ends the iteration; rows read before
    stay. An optional column the shard lacks (a shard written before the document contract gained it) reads as
    nulls."""
    row = 0
    try:
        where, fs = storage.arrow_path(path)
        parquet = pq.ParquetFile(where, filesystem=fs)
        missing = [c for c in columns if c not in parquet.schema_arrow.names]
        document = schema_mod.document_schema()
        required = [c for c in missing if c not in document.names or not document.field(c).nullable]
        if required:
            report.error(f"not a document shard: no column(s) {required}", offset=0, stage=stage)
            return
        present = [c for c in columns if c not in missing]
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=present):
            if limit is not None and row + batch.num_rows > limit:
                batch = batch.slice(0, limit - row)
            if contract_types:
                batch = pa.RecordBatch.from_arrays(
                    [batch.column(c).cast(document.field(c).type) if c in present
                     else pa.nulls(batch.num_rows, document.field(c).type) for c in columns], names=columns)
            elif missing:
                arrays = [batch.column(c) if c in present else pa.nulls(batch.num_rows, document.field(c).type)
                          for c in columns]
                batch = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(
                    [batch.schema.field(c) if c in present else document.field(c) for c in columns]))
            yield batch
            row += batch.num_rows
            if limit is not None and row >= limit:
                return
    except (OSError, pa.ArrowException, ValueError) as exc:  # a damaged shard: keep what was read, say where
        report.error(f"unreadable document shard: {type(exc).__name__}: {exc}", offset=row, unit="row", stage=stage)


# ------------------------------------------------------------------------------------------ seeded document coins
def hash64(values: Iterable[str | None], seed: int = 0, salt: str = "") -> np.ndarray:
    """xxh64 of `salt + value` for each value (None hashes as the empty string), as uint64."""
    prefix = salt.encode()
    return np.fromiter((xxhash.xxh64_intdigest(prefix + (v or "").encode("utf-8", "surrogatepass"), seed)
                        for v in values), dtype=np.uint64)


def unit_hash(values: Iterable[str | None], seed: int = 0, salt: str = "") -> np.ndarray:
    """`hash64` as a float in [0, 1): a seeded, uniform coin per value (53 bits, so it never rounds up to 1)."""
    return (hash64(values, seed, salt) >> np.uint64(11)).astype(np.float64) / float(2**53)
