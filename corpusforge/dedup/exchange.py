"""The shuffle under dedup's group-bys and joins: partitioned Parquet files on shared storage, written and read by
Dask tasks.

An `Exchange` is a folder of `parts` partitions. A map task splits its rows by partition and writes one small file
per partition (`p00007/<writer>.parquet`, atomically); a reduce task reads one partition back, sorted by writer name
so the result never depends on which task finished first. Each task holds one input and one partition at a time, so
memory per worker stays bounded by the partition size whatever the corpus size; the folder has to be on storage
every worker sees (a local disk on one machine, a shared filesystem on a cluster), like every stage's output.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from corpusforge.dedup.minhash import fmix64
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
            with atomic_path(Path(self.root, f"p{p:05d}", f"{writer}.parquet")) as tmp:
                pq.write_table(chunk, tmp, compression="none")
        return table.num_rows

    def read(self, part: int) -> pa.Table:
        """All rows written to partition `part`, in writer-name order."""
        folder = Path(self.root, f"p{part:05d}")
        files = sorted(f for f in os.listdir(folder) if f.endswith(".parquet")) if folder.is_dir() else []
        if not files:
            return self.schema.empty_table()
        return pa.concat_tables([pq.read_table(folder / f, schema=self.schema) for f in files])


def hash_partition(keys: np.ndarray, parts: int) -> np.ndarray:
    """Partition of each 64-bit key: a mixed hash modulo `parts`, so clustered keys still spread evenly."""
    return (fmix64(np.ascontiguousarray(keys).view(np.uint64)) % np.uint64(parts)).astype(np.int64)


def file_partition(keys: np.ndarray) -> np.ndarray:
    """The input file a document key (`file_index << 32 | row`) belongs to: partitions that line up with files."""
    return (np.asarray(keys, dtype=np.int64) >> 32).astype(np.int64)


def clear(root: str | os.PathLike) -> None:
    shutil.rmtree(root, ignore_errors=True)


def run_phase(client: Any, label: str, fn: Callable[..., Any], items: Sequence[Any], *args: Any,
              console: Any = None, stage: str = "dedup") -> list[Any]:
    """Run `fn(item, *args)` for every item as Dask tasks with a progress bar; return the results in item order.

    A task that raises stops the stage: unlike a damaged input file (which a task reports and survives), a failing
    phase of a group-by would leave the survivors wrong.
    """
    from distributed import as_completed
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)
    t0 = time.perf_counter()
    futures = [client.submit(fn, item, *args, pure=False) for item in items]
    index = {f.key: i for i, f in enumerate(futures)}
    results: dict[int, Any] = {}
    progress = Progress(TextColumn(f"[bold]{stage} {label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=True,
                        disable=not console.is_terminal and not os.environ.get("CORPUSFORGE_PROGRESS"))
    with progress:
        bar = progress.add_task(label, total=len(futures))
        for future in as_completed(futures):
            try:
                results[index[future.key]] = future.result()
            except Exception as exc:
                client.cancel(futures)
                item = items[index[future.key]]
                raise RuntimeError(f"{stage} {label}: task for {item!r} failed: {type(exc).__name__}: {exc}") from exc
            progress.update(bar, advance=1)
    console.print(f"{stage} {label}: {len(items)} task(s) in {time.perf_counter() - t0:.1f}s", highlight=False)
    return [results[i] for i in range(len(items))]
