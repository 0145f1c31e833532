"""The shuffle under dedup's group-bys and joins: partitioned Parquet files on shared storage, written and read by
Dask tasks.

An `Exchange` is a folder of `parts` partitions. A map task splits its rows by partition and writes one small file
per partition (`p00007/<writer>.parquet`, atomically); a reduce task reads one partition back, sorted by writer name
so the result never depends on which task finished first. Each task holds one input and one partition at a time, so
memory per worker stays bounded by the partition size whatever the corpus size; the folder has to be on storage
every worker sees, like every stage's output: a local disk on one machine; on a cluster, a shared file system or an
object store (`s3://...`: each file is uploaded whole, so a reader never sees part of one).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from corpusforge.dedup.minhash import fmix64
from corpusforge import storage
from corpusforge.runtime import atomic_path


@dataclasses.dataclass(frozen=True)
class Exchange:
    """A partitioned exchange: `parts` partitions of rows of `schema` under the folder `root`."""

    root: str
    parts: int
    schema: pa.Schema

    def write(self, table: pa.Table, part: np.ndarray, writer: str) -> int:
        """Write each row of `table` to partition `part[row]`; files are named after `writer`, which must be unique
        among the writers of this exchange. Returns the rows written."""
        if table.num_rows == 0:
            return 0
        table = table.select(self.schema.names).cast(self.schema)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(self.parts + 1))
        table = table.take(pa.array(order))
        for p in np.flatnonzero(np.diff(bounds)):
            chunk = table.slice(int(bounds[p]), int(bounds[p + 1] - bounds[p]))
            with atomic_path(storage.join(self.root, f"p{p:05d}", f"{writer}.parquet")) as tmp:
                pq.write_table(chunk, tmp, compression="none")
        return table.num_rows

    def read(self, part: int) -> pa.Table:
        """All rows written to partition `part`, in writer-name order."""
        files = storage.listing(storage.join(self.root, f"p{part:05d}"), "*.parquet")  # sorted: by writer name
        if not files:
            return self.schema.empty_table()
        return pa.concat_tables([_read(f, self.schema) for f in files])


def hash_partition(keys: np.ndarray, parts: int) -> np.ndarray:
    """Partition of each 64-bit key: a mixed hash modulo `parts`, so clustered keys still spread evenly."""
    return (fmix64(np.ascontiguousarray(keys).view(np.uint64)) % np.uint64(parts)).astype(np.int64)


def file_partition(keys: np.ndarray) -> np.ndarray:
    """The input file a document key (`file_index << 32 | row`) belongs to: partitions that line up with files."""
    return (np.asarray(keys, dtype=np.int64) >> 32).astype(np.int64)


def _read(path: str, schema: pa.Schema) -> pa.Table:
    where, fs = storage.arrow_path(path)
    return pq.read_table(where, schema=schema, filesystem=fs)


def clear(root: str) -> None:
    storage.remove_tree(root)
