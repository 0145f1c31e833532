"""Text and URL normalization for deduplication: what counts as "the same text" and "the same URL".

Text is normalized in bulk, as bytes, because it runs on every document of the corpus. The canonical form
of a document is: lower case (Unicode-aware), every ASCII digit replaced by `0` (so a changed date or
counter does not make two copies differ), punctuation, symbols and whitespace replaced by a space (ASCII, Latin-1
punctuation U+0080-U+00BF, General Punctuation U+2000-U+206F, CJK punctuation U+3000-U+303F and the full-width
punctuation of U+FF01-U+FF65), runs of spaces collapsed to one, no leading or trailing space. Words are the
space-separated runs of that form; `minhash` builds the shingles from them, and its hash is the exact-duplicate key.

`normalize_text` is that definition for one string; `normalize_batch` is the same code over a batch and also returns
where each word starts and ends, which `minhash` needs, and on request where each canonical byte came from in the
text (what decontamination needs to cut a matched n-gram out of the original). The byte pass is compiled with Numba (one loop instead of a
dozen NumPy passes over the batch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit

import numba
import numpy as np
import xxhash

NORMALIZATION = "corpusforge-text/v2"  # recorded with signatures: change it whenever the canonical form changes

_SPACE = 0x20
_BYTE_MAP = np.arange(256, dtype=np.uint8)
_BYTE_MAP[:128] = _SPACE
_BYTE_MAP[ord("a"):ord("z") + 1] = np.arange(ord("a"), ord("z") + 1)
_BYTE_MAP[ord("A"):ord("Z") + 1] = np.arange(ord("a"), ord("z") + 1)
_BYTE_MAP[ord("0"):ord("9") + 1] = ord("0")


@dataclasses.dataclass
class NormalizedBatch:
    """A batch of documents in canonical form, as one byte buffer.

    `data` holds the documents' canonical bytes separated by single spaces; document d spans
    `data[doc_start[d]:doc_end[d]]` (empty when start == end). Word w spans `data[word_start[w]:word_end[w]]` and
    belongs to document `word_doc[w]`; words are in document order. With `sources` asked for, `source[p]` is the
    index of the character (in the document's lower-cased text, `str.lower()` for non-ASCII text) that canonical byte
    `p` was copied from; otherwise `source` is empty.
    """

    data: np.ndarray
    doc_start: np.ndarray
    doc_end: np.ndarray
    word_start: np.ndarray
    word_end: np.ndarray
    word_doc: np.ndarray
    source: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.doc_start)

    def text(self, d: int) -> str:
        return self.data[self.doc_start[d]:self.doc_end[d]].tobytes().decode("utf-8")

    def text_bytes(self, d: int) -> bytes:
        return self.data[self.doc_start[d]:self.doc_end[d]].tobytes()


@numba.njit(cache=True, nogil=True)
def _fullwidth_punctuation(b1: int, b2: int) -> bool:  # pragma: no cover - compiled
    """Whether EF b1 b2 is a full-width punctuation mark or symbol: U+FF01-FF0F, FF1A-FF20, FF3B-FF40, FF5B-FF65
    (the ，！？：；（） of Chinese and Japanese text, and the half-width ｡｢｣､･)."""
    if b1 == 0xBC:
        return b2 <= 0x8F or 0x9A <= b2 <= 0xA0 or b2 >= 0xBB
    return b1 == 0xBD and (b2 == 0x80 or 0x9B <= b2 <= 0xA5)


@numba.njit(cache=True, nogil=True)
def _canonical(raw: np.ndarray, starts: np.ndarray, byte_map: np.ndarray,
               sources: bool):  # pragma: no cover - compiled
    """One pass over the joined UTF-8 bytes: map, blank punctuation, collapse spaces, find words and documents
    (and with `sources`, the document character each output byte comes from)."""
    n, ndocs = len(raw), len(starts)
    data = np.empty(n, dtype=np.uint8)
    source = np.empty(n if sources else 0, dtype=np.int64)
    word_start = np.empty(n // 2 + 1, dtype=np.int64)
    word_end = np.empty(n // 2 + 1, dtype=np.int64)
    word_doc = np.empty(n // 2 + 1, dtype=np.int64)
    out, words = 0, 0
    for doc in range(ndocs):
        i = starts[doc]
        stop = starts[doc + 1] - 1 if doc + 1 < ndocs else n  # the byte before the next document is the separator
        in_word = False
        char = -1  # the index of the character byte i belongs to, in this document
        while i < stop:
            b = raw[i]
            if (b & 0xC0) != 0x80:  # a lead byte starts a character; continuation bytes stay in it
                char += 1
            width, blank = 1, False
            if b < 128:
                b = byte_map[b]
                blank = b == 0x20
            elif i + 1 < stop and b == 0xC2:  # U+0080-U+00BF: Latin-1 controls, punctuation, no-break space
                width, blank = 2, True
            elif i + 2 < stop and b == 0xE2 and (raw[i + 1] == 0x80 or (raw[i + 1] == 0x81 and raw[i + 2] <= 0xAF)):
                width, blank = 3, True  # U+2000-U+206F: general punctuation
            elif i + 2 < stop and b == 0xE3 and raw[i + 1] == 0x80:  # U+3000-U+303F: CJK punctuation and space
                width, blank = 3, True
            elif i + 2 < stop and b == 0xEF and _fullwidth_punctuation(raw[i + 1], raw[i + 2]):
                width, blank = 3, True
            if blank:
                if in_word:
                    word_end[words - 1] = out
                    in_word = False
            else:
                if not in_word:
                    if words:
                        data[out] = 0x20
                        if sources:
                            source[out] = char
                        out += 1
                    word_start[words] = out
                    word_doc[words] = doc
                    words += 1
                    in_word = True
                data[out] = b
                if sources:
                    source[out] = char
                out += 1
            i += width
        if in_word:
            word_end[words - 1] = out
    doc_start = np.zeros(ndocs, dtype=np.int64)
    doc_end = np.zeros(ndocs, dtype=np.int64)
    for w in range(words - 1, -1, -1):
        doc_start[word_doc[w]] = word_start[w]
    for w in range(words):
        doc_end[word_doc[w]] = word_end[w]
    return data[:out], doc_start, doc_end, word_start[:words], word_end[:words], word_doc[:words], source[:out]


def normalize_batch(texts: Sequence[str], sources: bool = False) -> NormalizedBatch:
    """Canonical forms of `texts` (see the module docstring) with word boundaries, computed in bulk; with `sources`,
    also the text position of every canonical byte (`NormalizedBatch.source`)."""
    # ASCII is lower-cased by the byte map; only other text needs Python's Unicode-aware lower(). No NFKC: it costs
    # more than everything else here together, and what it would fold that matters for duplicates (no-break spaces,
    # ellipses, typographic quotes) is blanked as punctuation anyway.
    encoded = [(t if t.isascii() else t.lower()).encode("utf-8") for t in texts]
    sizes = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
    starts = np.zeros(len(encoded), dtype=np.int64)
    if len(encoded) > 1:
        starts[1:] = np.cumsum(sizes[:-1] + 1)
    raw = np.frombuffer(b" ".join(encoded), dtype=np.uint8)
    data, doc_start, doc_end, word_start, word_end, word_doc, source = _canonical(raw, starts, _BYTE_MAP, sources)
    return NormalizedBatch(data=data, doc_start=doc_start, doc_end=doc_end, word_start=word_start,
                           word_end=word_end, word_doc=word_doc, source=source)


def normalize_text(text: str) -> str:
    """The canonical form of one text: what two documents must share to be exact duplicates."""
    return normalize_batch([text]).text(0)


def text_hashes(batch: NormalizedBatch) -> list[bytes]:
    """The exact-duplicate key of each document: XXH3-128 of its canonical bytes (16 bytes)."""
    return [xxhash.xxh3_128_digest(batch.text_bytes(d)) for d in range(len(batch))]


# URL query keys that only track where a click came from: the same page with other values is the same page
_TRACKING = ("utm_", "fbclid", "gclid", "mc_cid", "mc_eid", "_ga", "ref_src")


def normalize_url(url: str | None) -> str | None:
    """The canonical form of a URL, or None when there is none: no scheme (http and https are the same page),
    lower-case host without `www.` and default port, no fragment, no trailing slash, query keys sorted and tracking
    keys dropped. Angle brackets around the URL (a WARC-Target-URI quirk) are removed."""
    if not url:
        return None
    url = url.strip().strip("<>").strip()
    try:
        parts = urlsplit(url if "//" in url else f"//{url}")
        host = (parts.hostname or "").rstrip(".")
        port = parts.port
    except ValueError:  # a malformed URL (bad port, bad IPv6 literal) is still an identifier; compare it as written
        return url.lower()
    if host.startswith("www."):
        host = host[4:]
    if port and not (port == 80 and parts.scheme in ("http", "")) and not (port == 443 and parts.scheme == "https"):
        host = f"{host}:{port}"
    path = parts.path.rstrip("/") or ""
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                   if not k.lower().startswith(_TRACKING))
    return f"{host}{path}" + (f"?{urlencode(query)}" if query else "")


def url_hash(url: str | None) -> int | None:
    """64-bit key of the normalized URL (None when the document has no URL)."""
    norm = normalize_url(url)
    return None if norm is None else xxhash.xxh3_64_intdigest(norm.encode("utf-8"))
