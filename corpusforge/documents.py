"""Helpers every source uses to make document rows of the `document` contract (schemas/document.schema.json)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any


def document_id(source: str, origin: str | None, text: str) -> str:
    """Stable id from source, origin (URL, or origin id when there is no URL) and text: 32 hex digits.

    The same page captured twice with the same text gets the same id; an edited page or another URL gets another.
    """
    h = hashlib.blake2b(digest_size=16)
    for part in (source, origin or "", text):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def parse_time(value: Any) -> datetime | None:
    """A UTC datetime from an ISO-8601 string (WARC-Date, wiki timestamp), epoch seconds, or a datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    text = str(value).strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def make_document(*, source: str, text: str, lang: str, lang_score: float, origin_file: str,
                  url: str | None = None, origin_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A document row with its id computed; extra keyword fields are other columns of the contract."""
    if "crawl_time" in fields:
        fields["crawl_time"] = parse_time(fields["crawl_time"])
    return {
        "id": document_id(source, url or origin_id or origin_file, text),
        "source": source, "url": url, "text": text, "lang": lang, "lang_score": float(lang_score),
        "origin_file": origin_file, "origin_id": origin_id, **fields,
    }
