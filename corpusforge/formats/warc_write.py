"""Writing WARC records: the one writer behind the WebText2 fetcher, the sample crawl and the benchmarks' page sets.

`record` lays out one record as warcio writes it (a test holds the two byte for byte), each in a gzip member of its
own so that a reader can start at any record; it is not warcio's writer, which took half of the fetch's CPU time
(gzip level 9, header lists searched and rebuilt per record, payloads copied through streams). `http_block` is an
HTTP message's header block as warcio stores it. Record ids (`record_id`) are derived from what names the record, so
the same capture written again is the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
import zlib
from datetime import datetime, timezone
from typing import Any

# zlib's default. On real pages (140 KB of HTML) warcio's level 9 takes 1.6x as long for files 0.6% smaller.
GZIP_LEVEL = 6


def record(headers: list[tuple[str, str]], content_type: str, *block: bytes, version: str = "1.0") -> bytes:
    """One gzipped WARC record: the version line, `headers` (WARC-Type first), the block digest, Content-Type and
    Content-Length, then the block (`block`'s parts, joined)."""
    digest = hashlib.sha1()
    for part in block:
        digest.update(part)
    headers = [*headers, ("WARC-Block-Digest", sha1_digest(digest)), ("Content-Type", content_type),
               ("Content-Length", str(sum(map(len, block))))]
    head = f"WARC/{version}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
    gz = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS + 16)
    return b"".join([gz.compress(head.encode()), *map(gz.compress, block), gz.compress(b"\r\n\r\n"), gz.flush()])


def http_block(first_line: str, headers: list[tuple[str, str]], *, request: bool = False) -> bytes:
    """An HTTP message's status or request line and headers as warcio stores them (non-ASCII header values
    percent-encoded as RFC 8187 says)."""
    from warcio.statusandheaders import StatusAndHeaders

    if request:
        return StatusAndHeaders(first_line, headers, is_http_request=True).to_ascii_bytes()
    return StatusAndHeaders(first_line, headers, protocol="HTTP/1.1").to_ascii_bytes()


def sha1_digest(data: bytes | Any) -> str:
    """A WARC digest header value ("sha1:" and base32) of `data`, or of a fed hashlib.sha1 object."""
    hasher = hashlib.sha1(data) if isinstance(data, bytes | bytearray | memoryview) else data
    return "sha1:" + base64.b32encode(hasher.digest()).decode("ascii")


EMPTY_DIGEST = sha1_digest(b"")  # a request record's payload


def record_id(*names: Any) -> str:
    """A WARC-Record-ID derived from `names` (what tells this record from every other: its file, its capture's URL
    and time, its role), so a record written again keeps its id."""
    return f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, chr(31).join(map(str, names)))}>"


def warc_date(when: datetime | None = None, version: str = "1.0") -> str:
    """A WARC-Date: `when` (default now) in UTC; WARC/1.1 keeps microseconds, WARC/1.0 whole seconds."""
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if version == "1.1" else "%Y-%m-%dT%H:%M:%SZ")
