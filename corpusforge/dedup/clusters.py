"""Clusters of duplicates and their survivors: connected components that scale, then one copy kept per component.

Connected components run as the alternating large-star / small-star algorithm (Kiveris et al., "Connected
Components in MapReduce and Beyond", SoCC 2014) over partitioned edge exchanges. Each step is a group-by on the
source node: large-star links every larger neighbour of u to the smallest node of u's neighbourhood, small-star links
u and its smaller neighbours to the smallest of them. Both keep components intact and shrink them towards stars
centred on their smallest key; the graph is done when no node has neighbours on both sides or two smaller neighbours.
Every step is a partition-local NumPy pass, so no worker ever holds more than one partition of edges, and the number
of steps grows with the logarithm of the cluster size, not with the corpus.

Each component is then resolved by the survivor rule (`priority`), skipping documents already removed as older
captures of their URL.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from corpusforge import storage
from corpusforge.dedup import exchange as ex
from corpusforge.dedup.exact import REMOVAL_SCHEMA
from corpusforge.dedup.minhash import MinHashParams
from corpusforge.dedup.priority import CONTENT_ORDER, group_heads, source_rank
from corpusforge.dedup.scan import Shard, read_keys
from corpusforge.tasks import PhaseBar, run_phase

DIRECTED_SCHEMA = pa.schema([("src", pa.int64()), ("dst", pa.int64())])
LABEL_SCHEMA = pa.schema([("node", pa.int64()), ("root", pa.int64())])
MEMBER_SCHEMA = pa.schema([("root", pa.int64()), ("key", pa.int64()), ("url_removed", pa.bool_()),
                           ("prio", pa.int16()), ("length", pa.int64()), ("id", pa.string()), ("source", pa.string()),
                           ("text_hash0", pa.uint64()), ("text_hash1", pa.uint64())])
MAX_STEPS = 200
_ROW_MASK = np.int64(0xFFFFFFFF)


def _send_both_ways(u: np.ndarray, v: np.ndarray, out: ex.Exchange, writer: str) -> None:
    src, dst = np.concatenate((u, v)), np.concatenate((v, u))
    out.write(pa.table({"src": src, "dst": dst}), ex.hash_partition(src, out.parts), writer)


def directed(part: int, edges: ex.Exchange, out: ex.Exchange) -> None:
    """Undirected edges of one partition, sent both ways keyed by their source node."""
    table = edges.read(part)
    _send_both_ways(table.column("u").to_numpy(), table.column("v").to_numpy(), out, f"in-{part:05d}")


def _neighbourhoods(table: pa.Table) -> dict[str, np.ndarray]:
    """Distinct directed edges sorted by (src, dst), with each edge's source's smallest and largest neighbour and
    number of smaller neighbours."""
    src, dst = table.column("src").to_numpy(), table.column("dst").to_numpy()
    keep = src != dst
    src, dst = src[keep], dst[keep]
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    fresh = np.ones(len(src), dtype=bool)
    fresh[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
    src, dst = src[fresh], dst[fresh]
    new = np.ones(len(src), dtype=bool)
    new[1:] = src[1:] != src[:-1]
    starts = np.flatnonzero(new)
    group = np.cumsum(new) - 1
    ends = np.append(starts[1:], len(src)) - 1
    if len(src) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return {"src": src, "dst": dst, "starts": empty, "min": empty, "max": empty, "smaller": empty}
    smaller = np.add.reduceat((dst < src).astype(np.int64), starts)
    return {"src": src, "dst": dst, "starts": starts, "min": dst[starts][group], "max": dst[ends][group],
            "smaller": smaller}


def star(part: int, current: ex.Exchange, out: ex.Exchange, large: bool) -> int:
    """One large-star (or small-star) step over a partition; returns the partition's nodes that are not yet the
    centre or a leaf of a star (0 everywhere means `current` is already a forest of stars)."""
    g = _neighbourhoods(current.read(part))
    src, dst, low = g["src"], g["dst"], g["min"]
    heads = src[g["starts"]]
    hmin, hmax = low[g["starts"]], g["max"][g["starts"]]
    unfinished = int(np.count_nonzero(((hmin < heads) & (hmax > heads)) | (g["smaller"] >= 2)))
    if large:
        centre = np.minimum(src, low)
        up = dst > src
        u, v = dst[up], centre[up]
    else:
        centre = np.where(low < src, low, src)
        down = (dst < src) & (dst != centre)
        lead = (hmin < heads)
        u = np.concatenate((dst[down], heads[lead]))
        v = np.concatenate((centre[down], hmin[lead]))
    _send_both_ways(u, v, out, f"{'large' if large else 'small'}-{part:05d}")
    return unfinished


def label(part: int, stars: ex.Exchange, labels: ex.Exchange) -> int:
    """Each node of a star forest with its component's root (the star's centre), sent keyed by the node's shard."""
    g = _neighbourhoods(stars.read(part))
    nodes = g["src"][g["starts"]]
    lowest = g["min"][g["starts"]]
    roots = np.where(lowest < nodes, lowest, nodes)
    return labels.write(pa.table({"node": nodes, "root": roots}), ex.file_partition(nodes), f"label-{part:05d}")


def components(client: Any, edges: ex.Exchange, root: str, parts: int, shards: int,
               bar: PhaseBar | None = None) -> tuple[ex.Exchange, int]:
    """Connected components of the undirected graph in `edges`: an exchange of (node, root) keyed by the node's
    shard, where root is the smallest key of the node's component. Returns it and the number of star steps. Its
    phases show on the dedup stage's `bar` (else a bar of their own)."""
    from rich.console import Console

    console = bar.progress.console if bar else Console(stderr=True)
    current = ex.Exchange(storage.join(root, "cc-0"), parts, DIRECTED_SCHEMA)
    run_phase(client, "components: edges", directed, range(edges.parts), edges, current, console=console, bar=bar)
    for step in range(1, MAX_STEPS + 1):
        following = ex.Exchange(storage.join(root, f"cc-{step}"), parts, DIRECTED_SCHEMA)
        large = step % 2 == 1
        unfinished = sum(run_phase(client, f"components: {'large' if large else 'small'}-star {step}", star,
                                   range(parts), current, following, large, console=console, bar=bar))
        if unfinished == 0:
            break
        ex.clear(current.root)
        current = following
    else:
        raise RuntimeError(f"connected components did not converge in {MAX_STEPS} steps")
    labels = ex.Exchange(storage.join(root, "labels"), shards, LABEL_SCHEMA)
    run_phase(client, "components: labels", label, range(parts), current, labels, console=console, bar=bar)
    ex.clear(current.root)
    ex.clear(following.root)
    return labels, step


def members(shard: Shard, labels: ex.Exchange, removals: ex.Exchange, out: ex.Exchange, params_json: str,
            priority: list[str]) -> int:
    """The clustered documents of one shard with what the survivor rule needs, sent keyed by their component."""
    params = MinHashParams.from_json(params_json)
    table = labels.read(shard.index)
    if table.num_rows == 0:
        return 0
    nodes = table.column("node").to_numpy()
    url_removed = np.isin(nodes, removals.read(shard.index).column("a").to_numpy())
    keys = read_keys(shard.keys_path, params, ["id", "source", "length", "text_hash0", "text_hash1"])
    rows = keys.take(pa.array(nodes & _ROW_MASK))
    rows = rows.append_column("prio", pa.array(source_rank(rows.column("source"), priority)))
    rows = rows.append_column("root", table.column("root")).append_column("key", table.column("node"))
    rows = rows.append_column("url_removed", pa.array(url_removed))
    return out.write(rows, ex.hash_partition(table.column("root").to_numpy(), out.parts), f"{shard.index:05d}")


def survivors(part: int, clustered: ex.Exchange, removals: ex.Exchange) -> dict[str, int]:
    """Resolve one partition of components: the best document not removed by URL survives, every other one is
    removed as `exact` (same canonical text as the survivor) or `near`."""
    table, head = group_heads(clustered.read(part), ["root"], [("url_removed", "ascending")] + CONTENT_ORDER)
    if table.num_rows == 0:
        return {"clusters": 0, "largest_cluster": 0}
    url_removed = table.column("url_removed").to_numpy(zero_copy_only=False)
    eligible = ~url_removed & ~url_removed[head]  # a component made only of superseded captures keeps none of them
    loser = np.flatnonzero(eligible & (head != np.arange(table.num_rows)))
    winner = head[loser]
    h0, h1 = table.column("text_hash0").to_numpy(), table.column("text_hash1").to_numpy()
    same = (h0[loser] == h0[winner]) & (h1[loser] == h1[winner])
    take, heads = pa.array(loser), pa.array(winner)
    removed = pa.table({
        "a": table.column("key").take(take), "b": table.column("key").take(heads),
        "kind": pa.array(np.where(same, "exact", "near").tolist(), type=pa.string()),
        "removed_id": table.column("id").take(take), "removed_source": table.column("source").take(take),
        "kept_id": table.column("id").take(heads), "kept_source": table.column("source").take(heads),
    }, schema=REMOVAL_SCHEMA)
    removals.write(removed, ex.file_partition(removed.column("a").to_numpy()), f"cluster-{part:05d}")
    sizes = np.bincount(head[eligible], minlength=table.num_rows)
    return {"clusters": int(np.count_nonzero(sizes > 1)), "largest_cluster": int(sizes.max(initial=0))}
