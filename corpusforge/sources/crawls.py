"""Which Common Crawl crawls to read: a range of months (GPT-3's 2016-01..2019-12) resolved to crawl ids through Common
Crawl's collection index (`collinfo.json`), each crawl's `warc.paths.gz` listing read, and optionally a seeded,
evenly spread sample of its WARC files.

The index lists every crawl as `{"id": "CC-MAIN-2016-07", "name": "February 2016 Index", "from":
"2016-02-05T...", ...}`; a crawl belongs to a month by when it started (`from`, else its name, else the ISO week in
its id). The listing of crawl ID is `<base_url>crawl-data/<ID>/warc.paths.gz`, its lines relative to `base_url`.
Both URLs are settings, so a mirror (or a test's loopback copy) serves the same files.
"""

from __future__ import annotations

import datetime
import json
import re

from corpusforge import documents, inputs
from corpusforge.errors import UserError

INDEX_URL = "https://index.commoncrawl.org/collinfo.json"
MAX_INDEX_BYTES = 16 * 2**20  # the real index is about 50 KB; more is not an index
_MONTH = r"(\d{4})(?:-(\d{2}))?"
_RANGE = re.compile(rf"{_MONTH}(?:\.\.{_MONTH})?")
_CRAWL_ID = re.compile(r"CC-MAIN-(\d{4})-(\d{2})")
_MONTHS = {name: i for i, name in enumerate(("january", "february", "march", "april", "may", "june", "july",
                                             "august", "september", "october", "november", "december"), 1)}


def check_spec(spec: str) -> None:
    """ValueError unless `spec` is a crawl id (CC-MAIN-2019-35), a month or year (2019-05, 2019), or a range of
    them (2016-01..2019-12, 2016..2019)."""
    if _CRAWL_ID.fullmatch(spec):
        return
    match = _RANGE.fullmatch(spec)
    if not match or any(m is not None and not 1 <= int(m) <= 12 for m in (match.group(2), match.group(4))):
        raise ValueError(f"crawls: {spec!r} is not a crawl id (CC-MAIN-2019-35), a month (2019-05), a year or a "
                         "range of them (2016-01..2019-12)")
    if _bounds(spec)[0] > _bounds(spec)[1]:
        raise ValueError(f"crawls: {spec!r} ends before it starts")


def _bounds(spec: str) -> tuple[str, str]:
    """The first and last month ("YYYY-MM") a range spec covers."""
    y1, m1, y2, m2 = _RANGE.fullmatch(spec).groups()
    if y2 is None:
        y2, m2 = y1, m1
    return f"{y1}-{m1 or '01'}", f"{y2}-{m2 or '12'}"


def read_index(url: str = INDEX_URL) -> list[dict]:
    """The collection index: a list of crawls, each with at least an `id`. UserError in one line when it cannot be
    read or is not such a list."""
    import fsspec

    try:
        with fsspec.open(url, "rb") as fh:
            data = fh.read(MAX_INDEX_BYTES + 1)
    except Exception as exc:  # a server that does not answer, a missing file
        raise UserError(f"crawl index {url}: cannot read it: {type(exc).__name__}: {exc}") from None
    if len(data) > MAX_INDEX_BYTES:
        raise UserError(f"crawl index {url}: larger than {MAX_INDEX_BYTES} bytes; not a collinfo.json")
    try:
        index = json.loads(data)
    except ValueError as exc:
        raise UserError(f"crawl index {url}: not JSON: {exc}") from None
    if not isinstance(index, list) or not all(isinstance(c, dict) and isinstance(c.get("id"), str) for c in index):
        raise UserError(f"crawl index {url}: expected a list of {{\"id\": \"CC-MAIN-...\", ...}} entries")
    return index


def crawl_month(crawl: dict) -> str | None:
    """The month ("YYYY-MM") a crawl started: its `from` date, else the month its name says ("February 2016
    Index"), else the month of the ISO week its id names; None when none says."""
    start = crawl.get("from")
    if isinstance(start, str) and re.match(r"\d{4}-\d{2}", start):
        return start[:7]
    words = str(crawl.get("name", "")).lower().split()
    for month, year in zip(words, words[1:]):
        if month in _MONTHS and year.isdigit():
            return f"{year}-{_MONTHS[month]:02d}"
    match = _CRAWL_ID.fullmatch(crawl["id"])
    if match and 1 <= int(match.group(2)) <= 53:
        try:
            return datetime.date.fromisocalendar(int(match.group(1)), int(match.group(2)), 1).strftime("%Y-%m")
        except ValueError:
            return None
    return None


def crawl_ids(specs: list[str], index: list[dict]) -> list[str]:
    """The ids of the crawls `specs` name (ids, months, years, ranges; see `check_spec`), in the order they were
    crawled, without repeats. UserError when a spec names no crawl of the index."""
    months = {c["id"]: crawl_month(c) for c in index}
    chosen: list[str] = []
    for spec in specs:
        if _CRAWL_ID.fullmatch(spec):
            found = [spec] if spec in months else []
        else:
            lo, hi = _bounds(spec)
            found = [cid for cid, month in months.items() if month and lo <= month <= hi]
        if not found:
            raise UserError(f"crawls: {spec!r} names no crawl of the index")
        chosen.extend(found)
    return sorted(dict.fromkeys(chosen), key=lambda cid: (months[cid] or "", cid))


def sample_evenly(files: list[str], n: int | None, seed: int, salt: str) -> list[str]:
    """`n` of `files` spread evenly over the list (one in each of `n` equal stretches, at a seeded offset within
    it; a crawl's listing is in segment order, so the sample spans the crawl's segments); all when `n` is None or
    not smaller."""
    if n is None or n >= len(files):
        return files
    offset = float(documents.unit_hash([salt], seed, salt="crawl-sample")[0])
    return [files[int((k + offset) * len(files) / n)] for k in range(n)]


def listing_url(base_url: str, crawl_id: str) -> str:
    return f"{base_url.rstrip('/')}/crawl-data/{crawl_id}/warc.paths.gz"


def warc_files(specs: list[str], *, base_url: str, index_url: str = INDEX_URL, sample_files: int | None = None,
               seed: int = 1234) -> list[str]:
    """The WARC file URLs of the crawls `specs` names: each crawl's listing under `base_url`, sampled to
    `sample_files` files per crawl (`sample_evenly`), crawl after crawl."""
    out: list[str] = []
    for crawl_id in crawl_ids(specs, read_index(index_url)):
        files = inputs.resolve([listing_url(base_url, crawl_id)], base_url=base_url)
        out.extend(sample_evenly(files, sample_files, seed, crawl_id))
    return out
