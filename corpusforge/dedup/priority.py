"""Which copy survives: the one rule every duplicate group (URL, exact, near) is resolved with.

A higher-priority source wins (default wikipedia > books > webtext2 > commoncrawl: GPT-3 removed WebText from
CommonCrawl), then the longer text, then the smaller id; for captures of the same URL the newest capture wins before
length. Ties cannot remain (ids are unique), so the survivor never depends on input order or scheduling.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_PRIORITY = ["wikipedia", "books", "webtext2", "commoncrawl"]

# sort keys: the first row of a group in this order is the survivor
CONTENT_ORDER = [("prio", "ascending"), ("length", "descending"), ("id", "ascending")]
URL_ORDER = [("prio", "ascending"), ("crawl_time", "descending"), ("length", "descending"), ("id", "ascending")]


def source_rank(sources: pa.Array | pa.ChunkedArray, priority: list[str]) -> np.ndarray:
    """Rank of each document's source: its position in `priority`; sources not listed rank after all listed."""
    rank = pc.index_in(sources, value_set=pa.array(priority, type=pa.string()))
    return pc.fill_null(rank, len(priority)).to_numpy(zero_copy_only=False).astype(np.int16)


def group_heads(table: pa.Table, group: list[str], order: list[tuple[str, str]]) -> tuple[pa.Table, np.ndarray]:
    """Sort `table` (no nulls in the sort columns) by the `group` columns, then by `order`; return the sorted table
    and, for each row, the index (in the sorted table) of its group's first row: the survivor of the group."""
    if table.num_rows == 0:
        return table, np.zeros(0, dtype=np.int64)
    indices = pc.sort_indices(table, sort_keys=[(g, "ascending") for g in group] + order)
    table = table.take(indices)
    new_group = np.zeros(table.num_rows, dtype=bool)
    new_group[0] = True
    for col in group:
        values = table.column(col).to_numpy()
        new_group[1:] |= values[1:] != values[:-1]
    heads = np.flatnonzero(new_group)
    return table, heads[np.cumsum(new_group) - 1]
