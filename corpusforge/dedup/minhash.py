"""MinHash signatures in bulk, in datasketch's permutation scheme, and the parameters that make them comparable.

A signature is computed the way `datasketch.MinHash(num_perm, seed, hashfunc=shingle_hash, scheme="affine32")`
would after `update_batch` with a document's shingles, but for a whole batch of documents at once:

* shingles are the word n-grams of the canonical text (`normalize`), as UTF-8 bytes joined by single spaces; a
  document with fewer than n words is one shingle, an empty one has none (its signature is datasketch's empty one);
* `shingle_hash` is a polynomial (Horner) hash of the shingle bytes modulo 2^64, finished with MurmurHash3's
  fmix64; its top 32 bits are the 32-bit input hash datasketch expects. Being polynomial, the hash of every shingle
  of a batch comes from one prefix sum over the batch's bytes, with no Python call and no string per shingle;
* the permutations are datasketch 2.0's "affine32" scheme (pre-mix with fmix32, then `a*h + b mod 2^32`), with the
  `a`, `b` that datasketch itself draws for the seed. The two loops that touch every byte and every (shingle,
  permutation) are compiled with Numba: NumPy needs a dozen passes and temporary arrays for the same work.

datasketch 2.0 changed its default scheme from "legacy" to "affine32", so signatures made with other settings give
wrong similarities without any error. `MinHashParams` records everything a signature depends on; whatever stores or
reads signatures checks it and refuses to mix.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterator, Sequence
from typing import Any

import numba
import numpy as np

from corpusforge.dedup.normalize import NORMALIZATION, NormalizedBatch, normalize_batch

HASH = "corpusforge-poly64-fmix64/v1"
SCHEME = "affine32"
EMPTY = np.uint32(0xFFFFFFFF)  # datasketch's initial (empty) hash value in the affine32 scheme

_POLY = 0x100000001B3  # FNV-1's 64-bit prime: odd, with well-spread bits
_LENGTH_MIX = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1
_BATCH_BYTES = 1 << 20  # text bytes per normalization batch: bounds the batch's arrays


class SignatureMismatch(ValueError):
    """Signatures made with other settings than the ones asked for: they must not be combined."""


@dataclasses.dataclass(frozen=True)
class MinHashParams:
    """Everything a signature depends on. Two signatures are comparable only if their parameters are equal."""

    ngram: int = 5
    permutations: int = 112
    bands: int = 14
    rows: int = 8
    seed: int = 1
    hash: str = HASH
    scheme: str = SCHEME
    normalization: str = NORMALIZATION

    def validate(self) -> None:
        if self.ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {self.ngram}")
        if self.bands < 1 or self.rows < 1:
            raise ValueError(f"bands and rows must be >= 1, got {self.bands} x {self.rows}")
        if self.bands * self.rows > self.permutations:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds permutations = {self.permutations}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be in [0, 2^32), got {self.seed}")
        if (self.hash, self.scheme, self.normalization) != (HASH, SCHEME, NORMALIZATION):
            raise ValueError(f"this corpusforge computes {HASH} / {SCHEME} / {NORMALIZATION} signatures only")

    def threshold(self) -> float:
        """The Jaccard similarity where the LSH S-curve is steepest, about (1/bands)^(1/rows): pairs above it are
        likely to become candidates, pairs below it unlikely."""
        return (1.0 / self.bands) ** (1.0 / self.rows)

    def candidate_probability(self, jaccard: float) -> float:
        """Probability that two documents of this Jaccard similarity share at least one band: 1 - (1 - J^r)^b."""
        return 1.0 - (1.0 - jaccard ** self.rows) ** self.bands

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | str | bytes) -> MinHashParams:
        return cls(**(json.loads(data) if isinstance(data, (str, bytes)) else data))

    def require(self, other: MinHashParams, where: str) -> None:
        """Raise SignatureMismatch unless `other` (read from `where`) equals these parameters."""
        if other != self:
            diff = {k: (v, getattr(self, k)) for k, v in dataclasses.asdict(other).items() if getattr(self, k) != v}
            raise SignatureMismatch(f"{where} holds signatures made with other settings (found vs wanted: {diff}); "
                                    "signatures of different settings cannot be combined")


# ------------------------------------------------------------------------------------------------- hash functions
def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer, element-wise on a uint64 array: a bijection that spreads every input bit."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def shingle_hash64(data: bytes) -> int:
    """The 64-bit hash of one shingle, written plainly: fmix64(horner(bytes) xor len * C), all mod 2^64, where
    horner(b) = sum(b_k * P^(n-1-k))."""
    h = 0
    for byte in data:
        h = (h * _POLY + byte) & _MASK64
    h ^= (len(data) * _LENGTH_MIX) & _MASK64
    return int(fmix64(np.array([h], dtype=np.uint64))[0])


def shingle_hash(data: bytes) -> int:
    """The 32-bit shingle hash our signatures use: pass it as `hashfunc` to datasketch's MinHash to get the same
    signature the slow way."""
    return shingle_hash64(data) >> 32


@numba.njit(cache=True, nogil=True)
def _horner_prefix(data, prefix):  # pragma: no cover - compiled
    """prefix[i] = the polynomial hash of data[:i] (Horner: h * P + byte, mod 2^64)."""
    acc = np.uint64(0)
    prefix[0] = acc
    for i in range(len(data)):
        acc = acc * np.uint64(_POLY) + np.uint64(data[i])
        prefix[i + 1] = acc


@numba.njit(cache=True, nogil=True)
def _shingle_hashes(prefix, powers, word_start, word_end, word_doc, ngram):  # pragma: no cover - compiled
    """`shingle_hash64` of every shingle, in document order, and the document of each. A shingle is `ngram`
    consecutive words of one document (all its words when it has fewer); its polynomial hash is
    prefix[end] - prefix[start] * P^(end - start), then the length and fmix64 are mixed in."""
    nwords = len(word_start)
    out = np.empty(nwords, dtype=np.uint64)  # at most one shingle starts at each word
    docs = np.empty(nwords, dtype=np.int64)
    m, w = 0, 0
    while w < nwords:
        doc, stop = word_doc[w], w
        while stop < nwords and word_doc[stop] == doc:
            stop += 1
        for j in range(w, w + max(stop - w - ngram + 1, 1)):
            s, e = word_start[j], word_end[min(j + ngram, stop) - 1]
            h = prefix[e] - prefix[s] * powers[e - s]
            h ^= np.uint64(e - s) * np.uint64(_LENGTH_MIX)
            h ^= h >> np.uint64(33)
            h *= np.uint64(0xFF51AFD7ED558CCD)
            h ^= h >> np.uint64(33)
            h *= np.uint64(0xC4CEB9FE1A85EC53)
            out[m] = h ^ (h >> np.uint64(33))
            docs[m] = doc
            m += 1
        w = stop
    return out[:m], docs[:m]


class _Buffers:
    """Per-process arrays reused from batch to batch: the prefix sums (fresh memory for each batch would cost more
    in page faults than the hashing itself) and the powers P^k (up to the longest document), grown on demand."""

    def __init__(self) -> None:
        self.prefix = np.empty(0, dtype=np.uint64)
        self.powers = np.ones(1, dtype=np.uint64)

    def prefix_for(self, n: int) -> np.ndarray:
        if len(self.prefix) < n:
            self.prefix = np.empty(max(n, 2 * len(self.prefix)), dtype=np.uint64)
        return self.prefix

    def powers_upto(self, n: int) -> np.ndarray:
        if len(self.powers) <= n:
            self.powers = np.full(max(n + 1, 2 * len(self.powers)), _POLY, dtype=np.uint64)
            self.powers[0] = 1
            np.cumprod(self.powers, out=self.powers)  # integer overflow wraps: exactly the powers modulo 2^64
        return self.powers


_BUFFERS = _Buffers()


@numba.njit(cache=True, nogil=True)
def _min_permuted(h64, doc, a, b, out):  # pragma: no cover - compiled
    """datasketch's affine32 update for every shingle: fmix32 of the top 32 bits, then a*h + b mod 2^32, kept if
    smaller, in the signature row of the shingle's document (the inner loop over permutations vectorizes)."""
    for j in range(len(h64)):
        x = np.uint32(h64[j] >> np.uint64(32))
        x = np.uint32(x ^ (x >> np.uint32(16)))
        x = np.uint32(x * np.uint32(0x85EBCA6B))
        x = np.uint32(x ^ (x >> np.uint32(13)))
        x = np.uint32(x * np.uint32(0xC2B2AE35))
        x = np.uint32(x ^ (x >> np.uint32(16)))
        row = out[doc[j]]
        for k in range(len(a)):
            v = np.uint32(np.uint32(a[k] * x) + b[k])
            if v < row[k]:
                row[k] = v


def shingle_hashes64(batch: NormalizedBatch, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """`shingle_hash64` of every shingle of the batch, computed in bulk: (hashes, document of each)."""
    prefix = _BUFFERS.prefix_for(len(batch.data) + 1)
    _horner_prefix(batch.data, prefix)
    powers = _BUFFERS.powers_upto(int((batch.doc_end - batch.doc_start).max(initial=0)))  # no shingle is longer
    return _shingle_hashes(prefix, powers, batch.word_start, batch.word_end, batch.word_doc, ngram)


@functools.cache
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The affine32 permutation parameters (a, b) datasketch draws for this seed: taken from datasketch itself."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def signatures(batch: NormalizedBatch, params: MinHashParams) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures of a normalized batch: (signatures uint32 [docs, permutations], shingles per document)."""
    h64, doc = shingle_hashes64(batch, params.ngram)
    a, b = permutations(params.permutations, params.seed)
    out = np.full((len(batch), params.permutations), EMPTY, dtype=np.uint32)
    _min_permuted(h64, doc, a, b, out)
    return out, np.bincount(doc, minlength=len(batch)).astype(np.int32)


def batches_by_size(texts: Sequence[str], max_bytes: int = _BATCH_BYTES) -> Iterator[tuple[int, int]]:
    """Split `texts` into consecutive [lo, hi) ranges of about `max_bytes` characters (a longer text goes alone)."""
    lo, size = 0, 0
    for i, text in enumerate(texts):
        if size and size + len(text) > max_bytes:
            yield lo, i
            lo, size = i, 0
        size += len(text) + 1
    if lo < len(texts):
        yield lo, len(texts)


def minhash_signatures(texts: Sequence[str], params: MinHashParams) -> np.ndarray:
    """Signatures of raw texts (normalized here), uint32 [len(texts), permutations]."""
    parts = [signatures(normalize_batch(texts[lo:hi]), params)[0] for lo, hi in batches_by_size(texts)]
    return np.concatenate(parts) if parts else np.zeros((0, params.permutations), dtype=np.uint32)


# ----------------------------------------------------------------------------------------------------- LSH bands
def band_hashes(sigs: np.ndarray, params: MinHashParams) -> np.ndarray:
    """One 64-bit bucket key per (document, band), uint64 [docs, bands]: a hash of the band's `rows` values and of
    the band number, so buckets of different bands never meet."""
    x = sigs[:, :params.bands * params.rows].reshape(len(sigs), params.bands, params.rows).astype(np.uint64)
    h = np.zeros((len(sigs), params.bands), dtype=np.uint64)
    for r in range(params.rows):
        h = (h ^ x[:, :, r]) * np.uint64(_POLY)
    h ^= np.arange(params.bands, dtype=np.uint64) * np.uint64(_LENGTH_MIX)
    return fmix64(h)


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of equal hash values between signatures, row by row (datasketch's `MinHash.jaccard`)."""
    return (a == b).mean(axis=-1)


# ----------------------------------------------------------------------------------------- datasketch interop
def shingles(normalized: str, ngram: int) -> list[bytes]:
    """The shingles of one canonical text the plain way (what `signatures` hashes in bulk)."""
    words = normalized.split(" ") if normalized else []
    if 0 < len(words) < ngram:
        return [normalized.encode("utf-8")]
    return [" ".join(words[i:i + ngram]).encode("utf-8") for i in range(len(words) - ngram + 1)]


def datasketch_minhash(params: MinHashParams):
    """An empty datasketch MinHash that computes our signatures the slow way (`update` / `update_batch`)."""
    from datasketch import MinHash

    return MinHash(num_perm=params.permutations, seed=params.seed, hashfunc=shingle_hash, scheme=SCHEME)


def to_datasketch(signature: np.ndarray, params: MinHashParams):
    """One of our signatures as a datasketch `LeanMinHash`, usable with `MinHashLSH`, `jaccard`, `merge`."""
    from datasketch import LeanMinHash

    return LeanMinHash(seed=params.seed, hashvalues=np.asarray(signature, dtype=np.uint32), scheme=SCHEME)
