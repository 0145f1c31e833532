"""Extraction quality on an evaluation set in trafilatura's format (`evaldata.json`: pages keyed by URL, each with
`file`, `with` snippets the main text must contain and `without` snippets of boilerplate it must not).

The tests and `bench/commoncrawl.py` use it to wrap the pages into WARC records (so the whole CommonCrawl path runs
over them) and to score what comes out with trafilatura's own measure.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote


@dataclasses.dataclass(frozen=True)
class EvalPage:
    url: str  # an http(s) URL (the few keys that are plain names get one under eval.invalid)
    record_id: str  # the WARC-Record-ID it is written under: documents find their page by origin_id
    html: bytes
    with_: tuple[str, ...]
    without: tuple[str, ...]


def load_pages(root: str | Path, limit: int | None = None) -> list[EvalPage]:
    """The pages of `root/evaldata.json`, read from `root/eval/FILE.gz` or else `root/cache/FILE.gz`."""
    root = Path(root)
    pages = []
    for key, item in list(json.loads((root / "evaldata.json").read_text(encoding="utf-8")).items())[:limit]:
        path = root / "eval" / f"{item['file']}.gz"
        if not path.exists():
            path = root / "cache" / f"{item['file']}.gz"
        # warcio reads HTTP headers only under http(s) target URIs; a few keys are names like "hard::site.html".
        url = key if key.startswith(("http://", "https://")) else f"http://eval.invalid/{quote(key)}"
        pages.append(EvalPage(url=url, record_id=f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, key)}>",
                              html=gzip.decompress(path.read_bytes()), with_=tuple(item["with"]),
                              without=tuple(item["without"])))
    return pages


def write_warcs(pages: list[EvalPage], folder: str | Path, files: int) -> list[Path]:
    """Write the pages as gzipped WARC response records, round-robin into `files` files. The HTTP header names no
    charset, so decoding goes by the page's meta tag or detection, as for most real captures."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in range(files):
        buf = io.BytesIO()
        writer = WARCWriter(buf, gzip=True)
        for page in pages[f::files]:
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html"),
                                               ("Content-Length", str(len(page.html)))], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(
                page.url, "response", payload=io.BytesIO(page.html), length=len(page.html), http_headers=http,
                warc_headers_dict={"WARC-Record-ID": page.record_id, "WARC-Date": "2024-01-01T00:00:00Z"}))
        paths.append(folder / f"eval-{f:02d}.warc.gz")
        paths[-1].write_bytes(buf.getvalue())
    return paths


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def score(results: Iterable[tuple[EvalPage, str | None]]) -> dict[str, float]:
    """Precision, recall and F1 as trafilatura's evaluation counts them: whitespace-normalized substring matches;
    a `with` snippet found is a true positive (else a false negative), a `without` snippet found a false positive.
    A page without text (no document, or an error) misses all its `with` snippets."""
    tp = fp = fn = pages = 0
    for page, text in results:
        found = _norm(text) if text else ""
        hits = sum(_norm(s) in found for s in page.with_) if found else 0
        tp, fn = tp + hits, fn + len(page.with_) - hits
        fp += sum(_norm(s) in found for s in page.without) if found else 0
        pages += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {"pages": pages, "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}
