"""MinHash signatures in bulk, in datasketch's permutation scheme, and the parameters that make them comparable.

A signature is computed the way `datasketch.MinHash(num_perm, seed, hashfunc=shingle_hash, scheme="affine32")`
would after `update_batch` with a document's shingles, but for a whole batch of documents at once:

* shingles come from the canonical text (`normalize`) in two streams, because a "word" means nothing in scripts
  written without spaces. Characters of those scripts (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar,
  Tibetan: `SPACELESS`) form the character stream, and their `char_ngram`-grams (characters joined as they are) are
  shingles; the runs of all other characters form the word stream, and its `ngram`-grams (words joined by single
  spaces) are shingles. Each stream skips the other's characters, so a Chinese page with an English menu, or a
  Japanese one with Latin product names, keeps both its sentences and its words: the choice is made per
  character, never per document, and two copies never disagree about it. Text without such characters has
  exactly the word shingles it always had. A stream shorter than its n is one shingle; an empty document has none
  (its signature is datasketch's empty one);
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
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np

from corpusforge.dedup.normalize import NORMALIZATION, NormalizedBatch, normalize_batch
from corpusforge.errors import UserError

HASH = "corpusforge-poly64-fmix64/v1"
SCHEME = "affine32"
EMPTY = np.uint32(0xFFFFFFFF)  # datasketch's initial (empty) hash value in the affine32 scheme

_POLY = 0x100000001B3  # FNV-1's 64-bit prime: odd, with well-spread bits
_LENGTH_MIX = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1
_BATCH_BYTES = 1 << 20  # text bytes per normalization batch: bounds the batch's arrays


class SignatureMismatch(UserError, ValueError):
    """Signatures made with other settings than the ones asked for: they must not be combined."""


@dataclasses.dataclass(frozen=True)
class MinHashParams:
    """Everything a signature depends on. Two signatures are comparable only if their parameters are equal."""

    ngram: int = 5
    char_ngram: int = 5
    permutations: int = 112
    bands: int = 14
    rows: int = 8
    seed: int = 1
    hash: str = HASH
    scheme: str = SCHEME
    normalization: str = NORMALIZATION

    def validate(self) -> None:
        if self.ngram < 1 or self.char_ngram < 1:
            raise ValueError(f"ngram and char_ngram must be >= 1, got {self.ngram} and {self.char_ngram}")
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
def _shingle_hashes(prefix, powers, word_start, word_end, word_doc, ngram, skip):  # pragma: no cover - compiled
    """`shingle_hash64` of every shingle, in document order, and the document of each. A shingle is `ngram`
    consecutive words of one document (all its words when it has fewer); its polynomial hash is
    prefix[end] - prefix[start] * P^(end - start), then the length and fmix64 are mixed in. Documents marked in
    `skip` are left out (their shingles come from another stream)."""
    nwords = len(word_start)
    out = np.empty(nwords, dtype=np.uint64)  # at most one shingle starts at each word
    docs = np.empty(nwords, dtype=np.int64)
    m, w = 0, 0
    while w < nwords:
        doc, stop = word_doc[w], w
        while stop < nwords and word_doc[stop] == doc:
            stop += 1
        if skip[doc]:
            w = stop
            continue
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


# Code points of the scripts written without spaces between words: their characters are shingled one by one.
# Korean is not among them (Hangul words are separated by spaces).
SPACELESS = np.array([
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK unified ideographs extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana
    (0x20000, 0x3FFFF),  # CJK extensions B and later (planes 2 and 3)
], dtype=np.int64)
_SPACELESS_TABLE = np.zeros(SPACELESS.max() + 1, dtype=np.bool_)  # by code point: one load instead of a range scan
for _lo, _hi in SPACELESS:
    _SPACELESS_TABLE[_lo:_hi + 1] = True
_SPACELESS_CHAR = "[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in SPACELESS) + "]"
_TOKEN = re.compile(f"({_SPACELESS_CHAR})|[^ {_SPACELESS_CHAR[1:]}+")  # one such character, or a run of others
_SPACELESS_SEARCH = re.compile(_SPACELESS_CHAR).search


@numba.njit(cache=True, nogil=True, inline="always")
def _marked(data, i, spaceless):  # pragma: no cover - compiled
    """Whether the character whose lead byte is data[i] >= 0xE0 (3 or 4 bytes) is marked in `spaceless`."""
    width = 3 if data[i] < 0xF0 else 4
    cp = np.int64(data[i]) & (0x0F if width == 3 else 0x07)
    for k in range(1, width):
        cp = (cp << 6) | (np.int64(data[i + k]) & 0x3F)
    return cp < len(spaceless) and spaceless[cp]


@numba.njit(cache=True, nogil=True)
def _split_scripts(data, word_start, word_end, word_doc, split, spaceless, wdata, wtok, cdata,
                   ctok):  # pragma: no cover - compiled
    """Split the words of the documents marked in `split` into two token streams: into `wdata` the runs of
    characters not marked in `spaceless` (by code point), joined by single spaces, with their [start, end,
    document] in `wtok`; into `cdata` the marked characters back to back, one token each in `ctok`. Returns the
    bytes and tokens written to each. Every marked code point is 3 or 4 UTF-8 bytes (lead byte >= 0xE0)."""
    wo, co, nw, nc = 0, 0, 0, 0
    for w in range(len(word_start)):
        i, stop, doc = word_start[w], word_end[w], word_doc[w]
        if not split[doc]:
            continue
        # the common case, even in CJK text (digits, Latin or Korean words): a word without a marked character is
        # one token, copied while checked
        o, k = (wo + 1 if nw else wo), i
        while k < stop and not (data[k] >= 0xE0 and _marked(data, k, spaceless)):
            wdata[o] = data[k]
            o += 1
            k += 1
        if k == stop:
            if nw:
                wdata[wo] = 0x20
            wtok[0, nw], wtok[1, nw], wtok[2, nw] = o - (stop - i), o, doc
            wo = o
            nw += 1
            continue
        in_run = False  # otherwise character by character
        while i < stop:
            b = data[i]
            width = 1 if b < 0xC0 else 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            if b >= 0xE0 and _marked(data, i, spaceless):
                if in_run:
                    wtok[1, nw - 1] = wo
                    in_run = False
                ctok[0, nc], ctok[2, nc] = co, doc
                for k in range(width):
                    cdata[co + k] = data[i + k]
                co += width
                ctok[1, nc] = co
                nc += 1
            else:
                if not in_run:
                    if nw:
                        wdata[wo] = 0x20
                        wo += 1
                    wtok[0, nw], wtok[2, nw] = wo, doc
                    nw += 1
                    in_run = True
                for k in range(width):
                    wdata[wo + k] = data[i + k]
                wo += width
            i += width
        if in_run:
            wtok[1, nw - 1] = wo
    return wo, nw, co, nc


class _Buffers(threading.local):
    """Per-thread arrays reused from batch to batch, grown on demand: fresh memory for each batch would cost more
    in page faults than the hashing itself. A `scratch` array is overwritten by the next batch; the powers P^k (up
    to the longest document) only grow."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.powers = np.ones(1, dtype=np.uint64)

    def scratch(self, name: str, n: int, dtype: type) -> np.ndarray:
        have = self.arrays.get(name)
        if have is None or len(have) < n:
            self.arrays[name] = have = np.empty(max(n, 2 * len(have) if have is not None else 0), dtype=dtype)
        return have[:n]

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


def compiled_here() -> bool:
    """Whether numba's cache holds this machine's compiled kernels that every signature runs (normalization,
    shingle hashes, the permuted minimum); when not, the first signatures compile them (seconds to a minute,
    once), which the dedup stage says beforehand."""
    from corpusforge.dedup import normalize

    kernels = (normalize._canonical, _shingle_hashes, _min_permuted)
    return all(Path(k._cache._cache_file._index_path).exists() for k in kernels)


def _streams(batch: NormalizedBatch, params: MinHashParams) -> list[tuple[np.ndarray, ...]]:
    """The token streams of a batch as (bytes, token starts, ends, documents, n-gram, documents to skip), views of
    the batch or of this thread's buffers. The words of a document without a byte >= 0xE0 (no character of a
    spaceless script) are word tokens as they are, in the batch's bytes; those of the other documents are split
    (`_split_scripts`) into a second word stream and the character stream."""
    words = (batch.word_start, batch.word_end, batch.word_doc)
    split = np.zeros(len(batch), dtype=bool)
    nonempty = np.flatnonzero(batch.doc_end > batch.doc_start)
    if len(nonempty):  # the largest byte of each document, up to the next one's start (a space between them)
        split[nonempty] = np.maximum.reduceat(batch.data, batch.doc_start[nonempty]) >= 0xE0
    streams = [] if split.all() else [(batch.data, *words, params.ngram, split)]
    if not split.any():
        return streams
    n = len(batch.data)
    wdata, cdata = _BUFFERS.scratch("wdata", n, np.uint8), _BUFFERS.scratch("cdata", n, np.uint8)
    chars, runs = n // 3, len(batch.word_start) + n // 3  # a character is >= 3 bytes and splits a word at most once
    wtok = _BUFFERS.scratch("wtok", 3 * runs, np.int64).reshape(3, runs)
    ctok = _BUFFERS.scratch("ctok", 3 * chars, np.int64).reshape(3, chars)
    wo, nw, co, nc = _split_scripts(batch.data, *words, split, _SPACELESS_TABLE, wdata, wtok, cdata, ctok)
    none = np.zeros(len(batch), dtype=bool)
    return streams + [(wdata[:wo], wtok[0, :nw], wtok[1, :nw], wtok[2, :nw], params.ngram, none),
                      (cdata[:co], ctok[0, :nc], ctok[1, :nc], ctok[2, :nc], params.char_ngram, none)]


def _hashes_by_stream(batch: NormalizedBatch, params: MinHashParams) -> list[tuple[np.ndarray, np.ndarray]]:
    """`shingle_hash64` of every shingle of the batch, as (hashes, document of each) per token stream."""
    powers = _BUFFERS.powers_upto(int((batch.doc_end - batch.doc_start).max(initial=0)))  # no shingle is longer
    parts = []
    for data, start, end, doc, n, skip in _streams(batch, params):
        prefix = _BUFFERS.scratch("prefix", len(data) + 1, np.uint64)
        _horner_prefix(data, prefix)
        parts.append(_shingle_hashes(prefix, powers, start, end, doc, n, skip))
    return parts


def shingle_hashes64(batch: NormalizedBatch, params: MinHashParams) -> tuple[np.ndarray, np.ndarray]:
    """`shingle_hash64` of every shingle of the batch, computed in bulk: (hashes, document of each), grouped by
    document, each document's word shingles before its character shingles (the order of `shingles`)."""
    parts = _hashes_by_stream(batch, params)
    if len(parts) <= 1:
        return parts[0] if parts else (np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64))
    docs = np.concatenate([p[1] for p in parts])
    order = np.argsort(docs, kind="stable")  # sorted runs: timsort merges them in linear time
    return np.concatenate([p[0] for p in parts])[order], docs[order]


@functools.cache
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The affine32 permutation parameters (a, b) datasketch draws for this seed: taken from datasketch itself."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def signatures(batch: NormalizedBatch, params: MinHashParams) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures of a normalized batch: (signatures uint32 [docs, permutations], shingles per document)."""
    a, b = permutations(params.permutations, params.seed)
    out = np.full((len(batch), params.permutations), EMPTY, dtype=np.uint32)
    counts = np.zeros(len(batch), dtype=np.int32)
    for h64, doc in _hashes_by_stream(batch, params):  # a minimum needs no order: the streams go as they are
        _min_permuted(h64, doc, a, b, out)
        counts += np.bincount(doc, minlength=len(batch)).astype(np.int32)
    return out, counts


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
def shingles(normalized: str, params: MinHashParams) -> list[bytes]:
    """The shingles of one canonical text the plain way (what `signatures` hashes in bulk): the `ngram`-grams of its
    word stream, then the `char_ngram`-grams of its character stream."""
    if not _SPACELESS_SEARCH(normalized):  # the common case: words only
        return _ngrams(normalized.split(" ") if normalized else [], params.ngram, " ")
    words: list[str] = []
    chars: list[str] = []
    for token in _TOKEN.finditer(normalized):
        (chars if token.group(1) else words).append(token.group())
    return _ngrams(words, params.ngram, " ") + _ngrams(chars, params.char_ngram, "")


def _ngrams(tokens: list[str], n: int, sep: str) -> list[bytes]:
    if 0 < len(tokens) < n:
        return [sep.join(tokens).encode("utf-8")]
    return [sep.join(tokens[i:i + n]).encode("utf-8") for i in range(len(tokens) - n + 1)]


_WORD = re.compile("[^ ]+")


def tokens(normalized: str) -> tuple[list[re.Match], list[re.Match]]:
    """The tokens of one canonical text as matches (text and position): its word stream and its character stream
    (the characters of scripts written without spaces), the tokens `shingles` joins into n-grams."""
    if not _SPACELESS_SEARCH(normalized):
        return list(_WORD.finditer(normalized)), []
    words: list[re.Match] = []
    chars: list[re.Match] = []
    for token in _TOKEN.finditer(normalized):
        (chars if token.group(1) else words).append(token)
    return words, chars


def shingle_spans(normalized: str, params: MinHashParams) -> list[tuple[int, int]]:
    """Where each shingle of `shingles(normalized, params)` lies in `normalized`, in the same order (so also the
    order of `shingle_hashes64`): the (start, end) character offsets from its first token's start to its last
    token's end. The character stream's shingles span whatever lies between their characters."""
    words, chars = tokens(normalized)
    return _spans(words, params.ngram) + _spans(chars, params.char_ngram)


def _spans(tokens: list[re.Match], n: int) -> list[tuple[int, int]]:
    if 0 < len(tokens) < n:
        return [(tokens[0].start(), tokens[-1].end())]
    return [(tokens[i].start(), tokens[i + n - 1].end()) for i in range(len(tokens) - n + 1)]


def datasketch_minhash(params: MinHashParams):
    """An empty datasketch MinHash that computes our signatures the slow way (`update` / `update_batch`)."""
    from datasketch import MinHash

    return MinHash(num_perm=params.permutations, seed=params.seed, hashfunc=shingle_hash, scheme=SCHEME)


def to_datasketch(signature: np.ndarray, params: MinHashParams):
    """One of our signatures as a datasketch `LeanMinHash`, usable with `MinHashLSH`, `jaccard`, `merge`."""
    from datasketch import LeanMinHash

    return LeanMinHash(seed=params.seed, hashvalues=np.asarray(signature, dtype=np.uint32), scheme=SCHEME)
