"""Near-duplicate candidates by LSH banding, and their verification.

Each document's signature is cut into `bands` bands of `rows` values; a band's hash is its bucket key. Documents
that share a bucket in any band are candidates. Buckets are grouped by a partitioned exchange on the bucket key, so
no worker ever holds an index of the corpus. A bucket of k documents yields its pairs as a star (every member with
the smallest key) plus a chain (each member with the previous one): 2k pairs rather than k^2/2, which keeps a bucket
of ten thousand templated pages cheap, and enough, because members of one true cluster share many buckets.

A shared bucket can be chance (two documents agree on `rows` values), so every candidate pair is verified: the pair
is joined with both signatures (two exchanges keyed by file) and kept as an edge only if the estimated Jaccard
similarity, and with `verify = "shingles"` also the true Jaccard similarity of the shingle sets, reaches the
threshold. The same join gives the Jaccard similarity reported for every removed document.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from corpusforge.dedup.exchange import Exchange, file_partition, hash_partition
from corpusforge.dedup.minhash import MinHashParams, band_hashes, estimated_jaccard, shingle_hashes64
from corpusforge.dedup.normalize import normalize_batch
from corpusforge.dedup.scan import Shard, read_documents, read_keys, signature_matrix
from corpusforge.runtime import FileReport

BAND_SCHEMA = pa.schema([("bucket", pa.uint64()), ("key", pa.int64())])
PAIR_SCHEMA = pa.schema([("a", pa.int64()), ("b", pa.int64())])
_ROW_MASK = np.int64(0xFFFFFFFF)


def emit(keys: np.ndarray, sigs: np.ndarray, shingles: np.ndarray, params: MinHashParams, bands: Exchange,
         writer: str) -> int:
    """Send every (band bucket, document) of a batch to the band exchange; documents without shingles have no
    meaningful signature and take no part."""
    has = shingles > 0
    buckets = band_hashes(sigs[has], params).reshape(-1)
    table = pa.table({"bucket": buckets, "key": np.repeat(keys[has], params.bands)})
    return bands.write(table, hash_partition(buckets, bands.parts), writer)


def reduce_buckets(part: int, bands: Exchange, candidates: Exchange) -> dict[str, int]:
    """Candidate pairs (a < b) from one partition of buckets, sent to the exchange keyed by a's file."""
    table = bands.read(part)
    bucket, key = table.column("bucket").to_numpy(), table.column("key").to_numpy()
    order = np.lexsort((key, bucket))
    bucket, key = bucket[order], key[order]
    n = len(key)
    new = np.ones(n, dtype=bool)
    new[1:] = bucket[1:] != bucket[:-1]
    starts = np.flatnonzero(new)
    head = starts[np.cumsum(new) - 1] if n else np.zeros(0, dtype=np.int64)
    idx = np.arange(n)
    star = idx != head
    chain = idx - 1 > head
    a = np.concatenate((key[head[star]], key[idx[chain] - 1]))
    b = np.concatenate((key[star], key[chain]))
    sizes = np.diff(np.append(starts, n))
    candidates.write(pa.table({"a": a, "b": b}), file_partition(a), f"bands-{part:05d}")
    return {"shared_buckets": int(np.count_nonzero(sizes > 1)), "largest_bucket": int(sizes.max(initial=0)),
            "candidate_pairs_emitted": len(a)}


# ------------------------------------------------------------------------------------------------ the pair join
def _side_schema(schema: pa.Schema, params: MinHashParams, shingles: bool) -> pa.Schema:
    schema = schema.append(pa.field("sig_a", pa.list_(pa.uint32(), params.permutations)))
    return schema.append(pa.field("sh_a", pa.list_(pa.uint64()))) if shingles else schema


def joined(root: str, parts: int, schema: pa.Schema, params: MinHashParams, shingles: bool) -> Exchange:
    """The middle exchange of a pair join: the pairs of `schema` with side a's signature (and shingles) attached."""
    return Exchange(root, parts, _side_schema(schema, params, shingles))


def shingle_sets(shard: Shard, rows: np.ndarray, params: MinHashParams) -> list[np.ndarray]:
    """The sorted distinct 64-bit shingle hashes of rows `rows` of a shard (for the true Jaccard)."""
    wanted = np.unique(rows)
    texts: dict[int, str] = {}
    offset = 0
    for batch in read_documents(shard.path, FileReport(input=shard.path), columns=["text"], limit=shard.rows):
        here = wanted[(wanted >= offset) & (wanted < offset + batch.num_rows)]
        column = batch.column("text")
        texts.update({int(r): column[int(r - offset)].as_py() or "" for r in here})
        offset += batch.num_rows
    order = list(texts)
    h64, doc = shingle_hashes64(normalize_batch([texts[r] for r in order]), params)
    bounds = np.searchsorted(doc, np.arange(len(order) + 1))  # shingles come in document order
    sets = {r: np.unique(h64[bounds[i]:bounds[i + 1]]) for i, r in enumerate(order)}
    return [sets.get(int(r), np.zeros(0, dtype=np.uint64)) for r in rows]


def attach(shard: Shard, pairs: Exchange, out: Exchange, params_json: str, shingles: bool) -> int:
    """First half of the pair join: the distinct pairs whose `a` lives in `shard`, with a's signature (and with
    `shingles`, a's shingle set) attached, sent on keyed by b's shard."""
    params = MinHashParams.from_json(params_json)
    table = pairs.read(shard.index)
    if table.num_rows == 0:
        return 0
    a, b = table.column("a").to_numpy(), table.column("b").to_numpy()
    _, first = np.unique(np.stack([a, b], axis=1), axis=0, return_index=True)
    table = table.take(pa.array(np.sort(first)))
    rows = table.column("a").to_numpy() & _ROW_MASK
    sigs = signature_matrix(read_keys(shard.keys_path, params, ["signature"]).column("signature"),
                            params.permutations)
    table = table.append_column("sig_a", pa.FixedSizeListArray.from_arrays(pa.array(sigs[rows].reshape(-1)),
                                                                           params.permutations))
    if shingles:
        table = table.append_column("sh_a", pa.array(shingle_sets(shard, rows, params), type=pa.list_(pa.uint64())))
    return out.write(table, file_partition(table.column("b").to_numpy()), f"attach-{shard.index:05d}")


def score(shard: Shard, joined_pairs: Exchange, params: MinHashParams, shingles: bool) -> pa.Table:
    """Second half of the pair join: the pairs whose `b` lives in `shard` with `jaccard` (estimated from the
    signatures) and, with `shingles`, `shingle_jaccard` (exact, from the shingle sets) in place of the sides."""
    table = joined_pairs.read(shard.index)
    rows = table.column("b").to_numpy() & _ROW_MASK
    sigs = signature_matrix(read_keys(shard.keys_path, params, ["signature"]).column("signature"),
                            params.permutations)
    sig_a = signature_matrix(table.column("sig_a"), params.permutations)
    result = table.drop_columns(["sig_a"]).append_column(
        "jaccard", pa.array(estimated_jaccard(sig_a, sigs[rows]).astype(np.float32)))
    if shingles:
        sets_b = shingle_sets(shard, rows, params)
        exact = []
        for set_a, set_b in zip(table.column("sh_a").to_numpy(zero_copy_only=False), sets_b):
            inter = len(np.intersect1d(set_a, set_b, assume_unique=True))
            union = len(set_a) + len(set_b) - inter
            exact.append(inter / union if union else 1.0)
        result = result.drop_columns(["sh_a"]).append_column("shingle_jaccard", pa.array(exact, type=pa.float32()))
    return result


def verify(shard: Shard, joined_pairs: Exchange, edges: Exchange, params_json: str, threshold: float,
           shingles: bool) -> dict[str, int]:
    """Keep the candidate pairs whose `b` lives in `shard` that reach the threshold, as edges for the connected
    components."""
    scored = score(shard, joined_pairs, MinHashParams.from_json(params_json), shingles)
    ok = scored.column("jaccard").to_numpy() >= threshold
    if shingles:
        ok &= scored.column("shingle_jaccard").to_numpy() >= threshold
    u, v = scored.column("a").to_numpy()[ok], scored.column("b").to_numpy()[ok]
    edges.write(pa.table({"u": u, "v": v}), hash_partition(u, edges.parts), f"near-{shard.index:05d}")
    return {"candidate_pairs": scored.num_rows, "verified_pairs": int(ok.sum()),
            "rejected_pairs": int(scored.num_rows - ok.sum())}
