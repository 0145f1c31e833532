"""The document shards the tokenizer and the mixer read: finding them, reading them in batches with damage
reported, fingerprinting them so a re-run knows when nothing changed, and choosing documents by seeded hashes, so
every choice (tokenizer sample, set split, shuffle order, validation hold-out) is reproducible and needs no
coordination between Dask tasks."""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from corpusforge import runtime
from corpusforge import schema as schema_mod


def document_files(patterns: Iterable[str]) -> list[str]:
    """The Parquet shards named by `patterns` (folders, searched recursively; globs; files), sorted, without
    duplicates. Inside a folder, names starting with `_` or `.` (files or folders) are skipped: a stage's side
    files (`_duplicates.parquet`), its work folders (`_work/`) and unfinished temporary files."""
    found: set[str] = set()
    for pattern in patterns:
        if os.path.isdir(pattern):
            root = Path(pattern)
            paths = (str(p) for p in root.rglob("*.parquet")
                     if not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts))
        else:
            paths = (p for p in glob.glob(pattern, recursive=True) if not os.path.basename(p).startswith(("_", ".")))
        found.update(p for p in paths if os.path.isfile(p))
    return sorted(found)


def read_batches(path: str, columns: list[str], report: runtime.FileReport,
                 batch_rows: int = 1024) -> Iterator[pa.RecordBatch]:
    """Record batches of `columns` from one document shard. A file that is not a document shard, or that breaks
    while being read, is reported (with the row where it broke) and ends the iteration; rows read before stay.
    An optional column the shard lacks (a shard written before the document contract gained it) reads as nulls."""
    row = 0
    try:
        parquet = pq.ParquetFile(path)
        missing = [c for c in columns if c not in parquet.schema_arrow.names]
        document = schema_mod.document_schema()
        required = [c for c in missing if c not in document.names or not document.field(c).nullable]
        if required:
            report.error(f"not a document shard: no column(s) {required}", offset=0)
            return
        present = [c for c in columns if c not in missing]
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=present):
            if missing:
                arrays = [batch.column(c) if c in present else pa.nulls(batch.num_rows, document.field(c).type)
                          for c in columns]
                batch = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(
                    [batch.schema.field(c) if c in present else document.field(c) for c in columns]))
            yield batch
            row += batch.num_rows
    except (OSError, pa.ArrowException, ValueError) as exc:  # a damaged shard: keep what was read, say where
        report.error(f"unreadable document shard: {type(exc).__name__}: {exc}", offset=row, unit="row")


def fingerprint(config: Any, files: Iterable[str], *extra: str) -> str:
    """A digest of a stage's config (without its output folder), its input files (path, size, mtime) and `extra`
    strings: equal fingerprints mean a finished output is still current."""
    h = hashlib.sha256()
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k != "output"}
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in files:
        st = os.stat(path)
        h.update(f"\0{path}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    for item in extra:
        h.update(f"\0{item}".encode())
    return h.hexdigest()


def finished(out_dir: str | os.PathLike, fp: str, *outputs: str) -> dict[str, Any] | None:
    """The `_summary.json` of `out_dir` if an earlier run with fingerprint `fp` finished there and its `outputs`
    still exist, else None."""
    out_dir = Path(out_dir)
    try:
        summary = json.loads((out_dir / runtime.SUMMARY_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if summary.get("extra", {}).get("fingerprint") != fp or not all((out_dir / o).exists() for o in outputs):
        return None
    return summary


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash64(values: Iterable[str | None], seed: int = 0, salt: str = "") -> np.ndarray:
    """xxh64 of `salt + value` for each value (None hashes as the empty string), as uint64."""
    prefix = salt.encode()
    return np.fromiter((xxhash.xxh64_intdigest(prefix + (v or "").encode("utf-8", "surrogatepass"), seed)
                        for v in values), dtype=np.uint64)


def unit_hash(values: Iterable[str | None], seed: int = 0, salt: str = "") -> np.ndarray:
    """`hash64` as a float in [0, 1): a seeded, uniform coin per value (53 bits, so it never rounds up to 1)."""
    return (hash64(values, seed, salt) >> np.uint64(11)).astype(np.float64) / float(2**53)
