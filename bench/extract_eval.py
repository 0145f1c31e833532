"""Extraction quality, two ways. Snippets: an evaluation set in trafilatura's format (`evaldata.json`: pages keyed by
URL, each with `file`, `with` snippets the main text must contain and `without` snippets of boilerplate it must not),
scored with trafilatura's own measure. Full text: pages with their whole expected main text (mozilla's readability
test pages), scored by token precision/recall/F1 and the share of pages that keep under half of a reference text, so
that a cut-off extraction shows even where every snippet is found.

A benchmark helper (not part of the package): the tests, `bench/commoncrawl.py` and `bench/extraction.py` use it,
the first two also to wrap the pages into WARC records (`formats.warc_write`) so that the whole CommonCrawl path runs
over them.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from corpusforge.formats import warc_write


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
    charset, so decoding goes by the page's meta tag or detection, as for most real captures; the record names its
    payload type, as CommonCrawl's do."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in range(files):
        records = []
        for page in pages[f::files]:
            http = warc_write.http_block("200 OK", [("Content-Type", "text/html"),
                                                    ("Content-Length", str(len(page.html)))])
            records.append(warc_write.record([
                ("WARC-Type", "response"), ("WARC-Record-ID", page.record_id), ("WARC-Target-URI", page.url),
                ("WARC-Date", "2024-01-01T00:00:00Z"), ("WARC-Payload-Digest", warc_write.sha1_digest(page.html)),
                ("WARC-Identified-Payload-Type", "text/html")], "application/http; msgtype=response", http, page.html))
        paths.append(folder / f"eval-{f:02d}.warc.gz")
        paths[-1].write_bytes(b"".join(records))
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


# ------------------------------------------------------------------------------------------- full-text measure
# Scripts written without spaces count a character per token, as word tokens would make one token of a sentence.
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0e7f]|[^\W_]+")
_BLOCK_TAGS = frozenset("address article aside blockquote br dd div dl dt figcaption figure footer h1 h2 h3 h4 h5 "
                        "h6 header hr li main nav ol p pre section table td th tr ul".split())


def tokens(text: str | None) -> list[str]:
    """The word tokens of a text, lower-cased (one per character in Chinese, Japanese and Thai)."""
    return _TOKEN.findall((text or "").lower())


def token_scores(extracted: str | None, reference: str | None) -> tuple[int, int, int]:
    """(tokens in common, tokens extracted, tokens in the reference), counting tokens as a multiset."""
    from collections import Counter

    got, want = Counter(tokens(extracted)), Counter(tokens(reference))
    return sum((got & want).values()), sum(got.values()), sum(want.values())


def html_text(html: str) -> str:
    """The visible text of an HTML fragment, a line per block element (the readability pages' expected output)."""
    import lxml.html

    root = lxml.html.fromstring(html)
    for el in list(root.iter("script", "style")):
        el.drop_tree()
    for el in root.iter(*_BLOCK_TAGS):
        el.tail = "\n" + (el.tail or "")
        el.text = "\n" + (el.text or "")
    return _norm_lines(root.text_content())


def _norm_lines(text: str) -> str:
    return "\n".join(line for line in (" ".join(raw.split()) for raw in text.splitlines()) if line)


@dataclasses.dataclass(frozen=True)
class FullTextPage:
    """A page with its whole main text: `html` (raw bytes) and `expected` (plain text), `lang` where known."""

    name: str
    url: str
    html: bytes
    expected: str
    lang: str | None


def load_readability_pages(root: str | Path) -> list[FullTextPage]:
    """Mozilla readability's test pages (`pages/NAME/source.html.gz`, `expected.html.gz`,
    `expected-metadata.json`): the expected article's text is the reference, its metadata `lang` the language."""
    pages = []
    for folder in sorted(Path(root, "pages").iterdir()):
        meta = json.loads((folder / "expected-metadata.json").read_text(encoding="utf-8"))
        expected = html_text(gzip.decompress((folder / "expected.html.gz").read_bytes()).decode("utf-8"))
        pages.append(FullTextPage(name=folder.name, url=f"http://readability.invalid/{quote(folder.name)}/",
                                  html=gzip.decompress((folder / "source.html.gz").read_bytes()), expected=expected,
                                  lang=(meta.get("lang") or None)))
    return pages


def full_text_score(results: Iterable[tuple[str | None, str | None]],
                    reference: Iterable[str | None] | None = None) -> dict[str, float]:
    """Token precision, recall and F1 of extracted texts against their full expected texts (`results`: pairs of
    extracted, expected), micro-averaged over tokens, plus the page-averaged F1 and the share of pages keeping
    under half the tokens of `reference` (a reference extraction, one per page; by default the expected text)."""
    results = list(results)
    refs = list(reference) if reference is not None else [expected for _, expected in results]
    common = got = want = 0
    page_f1, under_half = [], 0
    for (extracted, expected), ref in zip(results, refs, strict=True):
        c, g, w = token_scores(extracted, expected)
        common, got, want = common + c, got + g, want + w
        page_f1.append(2 * c / (g + w) if g + w else 1.0)
        under_half += len(tokens(extracted)) < 0.5 * len(tokens(ref))
    precision = common / got if got else 0.0
    recall = common / want if want else 0.0
    f1 = 2 * common / (got + want) if got + want else 0.0
    n = len(results)
    return {"pages": n, "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "page_f1": round(sum(page_f1) / n, 4) if n else 0.0,
            "under_half": round(under_half / n, 4) if n else 0.0}
