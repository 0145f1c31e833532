"""Read one document shard and write its dedup keys: per document the id, source, length, capture time, URL key,
exact-text key and MinHash signature, in input row order, as a Parquet file that records the `MinHashParams` it was
made with. This is the one pass over the text; every later phase works on these keys.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpusforge import storage
from corpusforge.dedup.minhash import MinHashParams, batches_by_size, signatures
from corpusforge.dedup.normalize import normalize_batch, text_hashes, url_hash
from corpusforge.documents import read_batches
from corpusforge.runtime import REPORT_KEY, FileReport, atomic_path, read_report, report_metadata

PARAMS_KEY = b"corpusforge.minhash"


@dataclasses.dataclass(frozen=True)
class Shard:
    """One input shard as the later phases see it: its position (the high half of its documents' keys), its path,
    its keys file and the number of rows read from it."""

    index: int
    path: str
    keys_path: str
    rows: int
READ_COLUMNS = ["id", "source", "url", "text", "crawl_time"]
BATCH_ROWS = 2048


def signature_schema(params: MinHashParams) -> pa.Schema:
    return pa.schema([
        ("id", pa.string()), ("source", pa.string()), ("length", pa.int64()),
        ("crawl_time", pa.timestamp("us", tz="UTC")), ("url_hash", pa.uint64()),
        ("text_hash0", pa.uint64()), ("text_hash1", pa.uint64()), ("shingles", pa.int32()),
        ("signature", pa.list_(pa.uint32(), params.permutations)),
    ])


def read_documents(path: str, report: FileReport, columns: list[str] = READ_COLUMNS,
                   limit: int | None = None) -> Iterator[pa.RecordBatch]:
    """`documents.read_batches` as dedup reads a shard: its batch size, the contract's types, damage as "dedup"."""
    return read_batches(path, columns, report, BATCH_ROWS, limit=limit, contract_types=True, stage="dedup")


def _keys(batch: pa.RecordBatch, params: MinHashParams) -> pa.RecordBatch:
    texts = pc.fill_null(batch.column("text"), "").to_pylist()
    sig_parts, shingle_parts, hash_parts = [], [], []
    for lo, hi in batches_by_size(texts):
        normalized = normalize_batch(texts[lo:hi])
        sig, count = signatures(normalized, params)
        sig_parts.append(sig)
        shingle_parts.append(count)
        hash_parts.extend(text_hashes(normalized))
    sig = np.concatenate(sig_parts) if sig_parts else np.zeros((0, params.permutations), dtype=np.uint32)
    th = np.frombuffer(b"".join(hash_parts), dtype="<u8").reshape(-1, 2)
    urls = [url_hash(u) for u in batch.column("url").to_pylist()]
    return pa.RecordBatch.from_arrays([
        batch.column("id"), batch.column("source"),
        pc.cast(pc.utf8_length(pc.fill_null(batch.column("text"), "")), pa.int64()),
        batch.column("crawl_time"),
        pa.array(urls, type=pa.uint64()), pa.array(th[:, 0]), pa.array(th[:, 1]),
        pa.array(np.concatenate(shingle_parts) if shingle_parts else np.zeros(0, np.int32)),
        pa.FixedSizeListArray.from_arrays(pa.array(sig.reshape(-1)), params.permutations),
    ], schema=signature_schema(params))


def scan(shard: Shard, params_json: str) -> FileReport:
    """Write the dedup keys of `shard.path` to `shard.keys_path` (resumable: a finished file for the same input
    and parameters is kept). The report's `documents` count is the number of rows read, the ones the output
    covers."""
    params = MinHashParams.from_json(params_json)
    if storage.exists(shard.keys_path):
        previous = read_report(shard.keys_path)
        if previous is not None and previous.input == shard.path:
            params.require(signature_params(shard.keys_path), shard.keys_path)
            previous.resumed = True
            return previous
    t0 = time.perf_counter()
    report = FileReport(input=shard.path, output=shard.keys_path)
    report.count("documents", 0)
    with atomic_path(shard.keys_path) as tmp:
        with pq.ParquetWriter(tmp, signature_schema(params), compression="zstd") as writer:
            for batch in read_documents(shard.path, report):
                writer.write_batch(_keys(batch, params), row_group_size=BATCH_ROWS * 4)
                report.count("documents", batch.num_rows)
            report.bytes_in = storage.size(shard.path)
            report.seconds = time.perf_counter() - t0
            writer.add_key_value_metadata({PARAMS_KEY: json.dumps(params.to_json()).encode(),
                                           REPORT_KEY: report_metadata(report)})
    return report


def signature_params(path: str) -> MinHashParams:
    """The MinHashParams a keys file was made with."""
    where, fs = storage.arrow_path(path)
    raw = (pq.read_metadata(where, filesystem=fs).metadata or {}).get(PARAMS_KEY)
    if raw is None:
        raise ValueError(f"{path}: not a corpusforge signature file (no {PARAMS_KEY.decode()} metadata)")
    return MinHashParams.from_json(raw)


def read_keys(path: str, params: MinHashParams, columns: list[str]) -> pa.Table:
    """Columns of a keys file, after checking it was made with `params` (signatures of other settings never mix)."""
    params.require(signature_params(path), path)
    where, fs = storage.arrow_path(path)
    return pq.read_table(where, columns=columns, filesystem=fs)


def signature_matrix(column: pa.ChunkedArray | pa.Array, permutations: int) -> np.ndarray:
    """A `signature` column as uint32 [rows, permutations]."""
    flat = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return flat.flatten().to_numpy().reshape(-1, permutations)
