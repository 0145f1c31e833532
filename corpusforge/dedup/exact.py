"""URL and exact-text duplicates: partitioned group-bys on the URL key and on the canonical-text key.

Document keys are `file_index << 32 | row`: unique, small, and they say which file a document lives in, so later
phases can join back to the file without a lookup table.

* URL: captures of the same normalized URL; all but the survivor (newest capture, after source priority) are removed
  right here, whatever their text, since a page recrawled later supersedes the earlier capture.
* Exact: documents with the same canonical text; each is linked to its group's survivor by an edge, and the edges
  join the near-duplicate edges in the connected components, so one cluster keeps one copy however it was found.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from corpusforge.dedup.exchange import Exchange, file_partition, hash_partition
from corpusforge.dedup.priority import CONTENT_ORDER, URL_ORDER, group_heads

URL_SCHEMA = pa.schema([("url_hash", pa.uint64()), ("key", pa.int64()), ("prio", pa.int16()),
                        ("crawl_time", pa.timestamp("us", tz="UTC")), ("length", pa.int64()), ("id", pa.string()),
                        ("source", pa.string())])
TEXT_SCHEMA = pa.schema([("text_hash0", pa.uint64()), ("text_hash1", pa.uint64()), ("key", pa.int64()),
                         ("prio", pa.int16()), ("length", pa.int64()), ("id", pa.string())])
EDGE_SCHEMA = pa.schema([("u", pa.int64()), ("v", pa.int64())])
# a removed document and the one kept in its place; `a`/`b` are their keys
REMOVAL_SCHEMA = pa.schema([("a", pa.int64()), ("b", pa.int64()), ("kind", pa.string()),
                            ("removed_id", pa.string()), ("removed_source", pa.string()),
                            ("kept_id", pa.string()), ("kept_source", pa.string())])


def emit(keys: pa.Table, urls: Exchange | None, texts: Exchange, writer: str) -> None:
    """Send a batch of document keys (with `key` and `prio` columns) to the URL (unless None) and exact-text
    exchanges."""
    if urls is not None:
        with_url = keys.filter(keys.column("url_hash").is_valid())
        urls.write(with_url, hash_partition(with_url.column("url_hash").to_numpy(), urls.parts), writer)
    texts.write(keys, hash_partition(keys.column("text_hash0").to_numpy(), texts.parts), writer)


def reduce_urls(part: int, urls: Exchange, removals: Exchange) -> dict[str, int]:
    """Resolve one partition of URL groups: every capture but the survivor is removed (kind `url`)."""
    table = urls.read(part)
    # a capture without a time counts as the oldest
    when = pc.fill_null(table.column("crawl_time"), pa.scalar(0, type=table.schema.field("crawl_time").type))
    table, head = group_heads(table.set_column(table.schema.get_field_index("crawl_time"), "crawl_time", when),
                              ["url_hash"], URL_ORDER)
    loser = head != np.arange(table.num_rows)
    take = pa.array(np.flatnonzero(loser))
    heads = pa.array(head[loser])
    removed = pa.table({
        "a": table.column("key").take(take), "b": table.column("key").take(heads),
        "kind": pa.array(["url"] * len(take), type=pa.string()),
        "removed_id": table.column("id").take(take), "removed_source": table.column("source").take(take),
        "kept_id": table.column("id").take(heads), "kept_source": table.column("source").take(heads),
    })
    removals.write(removed, file_partition(removed.column("a").to_numpy()), f"url-{part:05d}")
    return {"url_groups": len(np.unique(head[loser])), "removed_url": len(take)}


def reduce_texts(part: int, texts: Exchange, edges: Exchange) -> dict[str, int]:
    """Link each document of one partition's exact groups to its group's survivor."""
    table, head = group_heads(texts.read(part), ["text_hash0", "text_hash1"], CONTENT_ORDER)
    loser = np.flatnonzero(head != np.arange(table.num_rows))
    keys = table.column("key").to_numpy()
    u, v = keys[loser], keys[head[loser]]
    edges.write(pa.table({"u": u, "v": v}), hash_partition(u, edges.parts), f"exact-{part:05d}")
    return {"exact_groups": len(np.unique(head[loser])), "exact_edges": len(loser)}
