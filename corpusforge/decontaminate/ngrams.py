"""The evaluation n-grams: which n each set gets, the index the workers search, and where a hit lies in a document.

Text is dedup's canonical form (`dedup.normalize`: lower case, punctuation blanked, digits as 0) and its n-grams
are dedup's shingles (`dedup.minhash`): n consecutive words, or n consecutive characters of scripts written without
spaces, hashed to 64 bits by `shingle_hashes64`. So "The Eiffel Tower, in Paris" and "the eiffel tower in paris"
collide, and the same code decides what a word is in every stage.

`build_index` turns evaluation sets into a `Lookup` (per n, the sorted distinct n-gram hashes and a bit filter; all
a worker needs, 8 bytes per n-gram) and, for the client, which examples of which set hold each n-gram. A set whose
examples are short gets a smaller n: the `short_percentile` of its examples' lengths in tokens, within
[min_ngram, ngram] (GPT-3's rule). An example shorter than its set's n has no n-gram and is counted as `short`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from corpusforge.dedup.minhash import MinHashParams, batches_by_size, shingle_hashes64, shingle_spans, tokens
from corpusforge.dedup.normalize import NormalizedBatch, normalize_batch
from corpusforge.decontaminate.evals import EvalSet

_FILTER_BITS_PER_KEY = 16  # a bit filter of 16 bits per n-gram lets ~6% of non-matching n-grams through


def params_for(n: int) -> MinHashParams:
    """The shingle settings of n-grams of n tokens (words, or characters of scripts without spaces)."""
    return MinHashParams(ngram=n, char_ngram=n)


@dataclasses.dataclass(frozen=True)
class Lookup:
    """The evaluation n-grams a worker searches for: for each n in `ns`, its distinct hashes sorted in
    `keys[bounds[i]:bounds[i + 1]]`. A key's position in `keys` names it everywhere (counts, hits, reports)."""

    ns: tuple[int, ...]
    keys: np.ndarray
    bounds: np.ndarray
    bits: np.ndarray
    shift: int

    @classmethod
    def build(cls, by_n: dict[int, np.ndarray]) -> Lookup:
        ns = tuple(sorted(by_n))
        blocks = [np.unique(by_n[n].astype(np.uint64)) for n in ns]
        keys = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.uint64)
        bounds = np.concatenate([[0], np.cumsum([len(b) for b in blocks])]).astype(np.int64)
        width = min(max(math.ceil(math.log2(max(len(keys), 1) * _FILTER_BITS_PER_KEY)), 16), 30)
        shift = 64 - width
        bits = np.zeros(1 << (width - 3), dtype=np.uint8)
        top = keys >> np.uint64(shift)
        np.bitwise_or.at(bits, (top >> np.uint64(3)).astype(np.int64),
                         (np.uint8(1) << (top & np.uint64(7)).astype(np.uint8)))
        return cls(ns=ns, keys=keys, bounds=bounds, bits=bits, shift=shift)

    def n_of(self, key: np.ndarray | int) -> np.ndarray:
        """The n of each key position."""
        return np.asarray(self.ns, dtype=np.int64)[np.searchsorted(self.bounds, key, side="right") - 1]

    def find(self, block: int, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in `hashes`, key positions) of the hashes that are n-grams of block `block` (n = ns[block])."""
        top = hashes >> np.uint64(self.shift)
        maybe = np.flatnonzero((self.bits[(top >> np.uint64(3)).astype(np.int64)]
                                >> (top & np.uint64(7)).astype(np.uint8)) & 1)
        lo, hi = int(self.bounds[block]), int(self.bounds[block + 1])
        if not len(maybe) or lo == hi:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        block_keys = self.keys[lo:hi]
        at = np.minimum(np.searchsorted(block_keys, hashes[maybe]), hi - lo - 1)
        found = block_keys[at] == hashes[maybe]
        return maybe[found], lo + at[found]

    def hits(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The distinct (document, key) pairs of `texts`: which evaluation n-grams each document contains."""
        docs, keys = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
        for lo, hi in batches_by_size(texts):
            batch = normalize_batch(texts[lo:hi])
            for block, n in enumerate(self.ns):
                hashes, doc = shingle_hashes64(batch, params_for(n))
                where, key = self.find(block, hashes)
                docs.append(doc[where] + lo)
                keys.append(key)
        docs, keys = np.concatenate(docs), np.concatenate(keys)
        if not len(docs):
            return docs, keys
        pairs = np.unique(np.stack([docs, keys]), axis=1)
        return pairs[0], pairs[1]


@dataclasses.dataclass
class SetIndex:
    """What the index knows of one evaluation set: its n, its examples' lengths, and which examples are too short
    to have an n-gram."""

    name: str
    path: str
    examples: int
    ngram: int
    length_percentile: int | None
    short: int

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Index:
    """The lookup the workers get, and for the client which (set, example) pairs hold each key: the pairs of key k
    are `pair_set[pair_start[k]:pair_start[k + 1]]`, `pair_example[...]`, by set and example."""

    lookup: Lookup
    sets: list[SetIndex]
    ids: list[list[str]]
    pair_start: np.ndarray
    pair_set: np.ndarray
    pair_example: np.ndarray


def choose_n(lengths: np.ndarray, ngram: int, min_ngram: int, percentile: float) -> tuple[int, int | None]:
    """A set's n: `ngram`, or when the set's examples are short the `percentile` (nearest rank) of their lengths in
    tokens, not below `min_ngram`; and that percentile."""
    if not len(lengths):
        return ngram, None
    ordered = np.sort(lengths)
    rank = max(1, math.ceil(percentile / 100 * len(ordered)))
    p = int(ordered[rank - 1])
    return max(min_ngram, min(ngram, p)), p


def _example_ngrams(batch: NormalizedBatch, counts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, example) of the n-grams of a batch of examples whose streams are long enough: a stream shorter than
    n gives dedup one shingle of all its tokens, which is not an n-gram and is left out here."""
    hashes, doc = shingle_hashes64(batch, params_for(n))
    words, chars = counts[:, 0], counts[:, 1]
    word_shingles = np.where(words >= n, words - n + 1, (words > 0).astype(np.int64))
    start = np.searchsorted(doc, np.arange(len(counts)))  # shingles come grouped by example, words first
    position = np.arange(len(doc)) - start[doc]
    is_word = position < word_shingles[doc]
    keep = np.where(is_word, words[doc] >= n, chars[doc] >= n)
    return hashes[keep], doc[keep]


def build_index(sets: list[EvalSet], ngram: int, min_ngram: int, percentile: float) -> Index:
    """The index of `sets`' n-grams (see the module docstring)."""
    by_n: dict[int, list[np.ndarray]] = {}
    entries: list[tuple[np.ndarray, int, np.ndarray, int]] = []  # (hashes, set, examples, n)
    infos = []
    for s, eval_set in enumerate(sets):
        normalized = [normalize_batch(eval_set.texts[lo:hi]) for lo, hi in batches_by_size(eval_set.texts)]
        counts = np.array([[len(w), len(c)] for batch in normalized for d in range(len(batch))
                           for w, c in [tokens(batch.text(d))]], dtype=np.int64).reshape(-1, 2)
        n, p = choose_n(counts.sum(axis=1), ngram, min_ngram, percentile)
        offset = 0
        for batch in normalized:
            hashes, example = _example_ngrams(batch, counts[offset:offset + len(batch)], n)
            entries.append((hashes, s, example + offset, n))
            by_n.setdefault(n, []).append(hashes)
            offset += len(batch)
        short = int(((counts[:, 0] < n) & (counts[:, 1] < n)).sum())
        infos.append(SetIndex(name=eval_set.name, path=eval_set.path, examples=len(eval_set.texts), ngram=n,
                              length_percentile=p, short=short))
    lookup = Lookup.build({n: np.concatenate(parts) for n, parts in by_n.items()})
    key_parts, set_parts, example_parts = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for hashes, s, example, n in entries:
        block = lookup.ns.index(n)
        lo, hi = lookup.bounds[block], lookup.bounds[block + 1]
        key_parts.append(lo + np.searchsorted(lookup.keys[lo:hi], hashes))
        set_parts.append(np.full(len(hashes), s, dtype=np.int64))
        example_parts.append(example)
    pairs = np.unique(np.stack([np.concatenate(key_parts), np.concatenate(set_parts),
                                np.concatenate(example_parts)]), axis=1)  # sorted by key, set, example
    pair_start = np.searchsorted(pairs[0], np.arange(len(lookup.keys) + 1))
    return Index(lookup=lookup, sets=infos, ids=[s.ids for s in sets], pair_start=pair_start,
                 pair_set=pairs[1].astype(np.int32), pair_example=pairs[2])


# ------------------------------------------------------------------------------------ hits inside a document
def _text_offsets(text: str, batch: NormalizedBatch) -> tuple[np.ndarray, np.ndarray]:
    """For the one document of `batch` (normalized with sources): the byte offset in its canonical bytes of each
    character of its canonical string (plus the end), and the map from lower-cased to original character
    positions (None-like empty array when they are the same)."""
    canonical = batch.data[batch.doc_start[0]:batch.doc_end[0]]
    lead = np.flatnonzero((canonical & 0xC0) != 0x80)
    char_bytes = np.append(lead, len(canonical)).astype(np.int64)
    lowered = text if text.isascii() else text.lower()
    if len(lowered) == len(text):
        return char_bytes, np.zeros(0, dtype=np.int64)
    # str.lower() turned some characters into two (İ -> i̇): lower-cased position j belongs to original character
    # searchsorted(ends, j, "right")
    return char_bytes, np.cumsum([len(c.lower()) for c in text])


def occurrences(text: str, wanted: dict[int, np.ndarray]) -> list[tuple[int, int, int, int]]:
    """Where the n-grams `wanted` ({n: their hashes}) occur in `text`: (start, end, n, hash) in characters of
    `text`, in order of n and then of position. The document is normalized once more, with the position of every
    canonical byte (`normalize_batch(sources=True)`), and the hashes line up with `shingle_spans`."""
    batch = normalize_batch([text], sources=True)
    normalized = batch.text(0)
    char_bytes, lowered_ends = _text_offsets(text, batch)
    base = batch.doc_start[0]
    found = []
    for n in sorted(wanted):
        params = params_for(n)
        hashes, _ = shingle_hashes64(batch, params)
        spans = shingle_spans(normalized, params)
        if len(spans) != len(hashes):
            raise AssertionError(f"{len(spans)} shingle spans for {len(hashes)} shingle hashes")
        for i in np.flatnonzero(np.isin(hashes, wanted[n])):
            first, last = spans[i]
            start = int(batch.source[base + char_bytes[first]])
            end = int(batch.source[base + char_bytes[last] - 1]) + 1
            if len(lowered_ends):
                start = int(np.searchsorted(lowered_ends, start, side="right"))
                end = int(np.searchsorted(lowered_ends, end - 1, side="right")) + 1
            found.append((start, end, n, int(hashes[i])))
    return found
