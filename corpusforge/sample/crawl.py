"""The sample crawl: a few gzipped WARC files in Common Crawl's layout, written offline for `make corpus`.

The pages come from `texts/crawl.toml`: fictional sites on the reserved `.example` domain, articles written for this
sample in eight languages, each site with its own navigation, cookie banner, related links, newsletter box, footer
and charset (HTTP header, `<meta>` only, or undeclared). Each capture is a `request`, a `response` and a `metadata`
record, as Common Crawl writes them, after one `warcinfo` record per file. Besides the articles the crawl holds
near-duplicates (an exact copy, a changed date line, an added banner, a one-phrase edit), junk pages for the quality
stage (keyword spam, a tag page of headlines, a lorem-ipsum template page, an embed-code page), non-HTML responses (PNG,
PDF, CSS, JSON, robots.txt), error responses (404, 301, 500), `revisit` records, and one damaged record: the last
file has a response whose gzip member is overwritten in the middle, between good records, as a bad disk block would.

Building is deterministic for a seed: record ids, dates and the order of captures derive from it, and gzip members
carry no timestamp (`formats.warc_write` compresses with zlib, whose gzip header has mtime 0), so two builds are
byte-identical.
Besides the WARC files, `_expected.json` says what a correct reader gets from them: every article URL with its
language and record offset (and, for the junk pages, the quality rule that should drop them), the records by type,
and where the damage is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import random
import re
import struct
import tomllib
import unicodedata
import zlib
from datetime import date, datetime, timedelta, timezone
from email.utils import format_datetime
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Any

from corpusforge.formats import warc_write
from corpusforge.runtime import EXPECTED_ERRORS_FILE, atomic_path, write_json_atomic

FILES = 4
FILE_NAME = "corpusforge-sample-20241104{hour:02d}0000-{index:05d}.warc.gz"
CRAWL_START = datetime(2024, 11, 4, 6, 0, 0, tzinfo=timezone.utc)
USER_AGENT = "corpusforge-samplebot/1.0 (an offline sample crawl; no request was ever sent)"
SERVERS = ["nginx/1.24.0", "Apache/2.4.57 (Debian)", "LiteSpeed", "cloudflare"]
_DAMAGE = bytes(range(0x20, 0x60))  # 64 printable bytes: no gzip magic in them, so resync skips past the damage


def load_texts() -> dict[str, Any]:
    """The sites, articles and other captures of the sample (`texts/crawl.toml`)."""
    return tomllib.loads(resources.files(__package__).joinpath("texts", "crawl.toml").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------------------- pages
def render_page(site: dict[str, Any], *, title: str, paragraphs: list[str], author: str | None = None,
                day: str | None = None, related: list[tuple[str, str]] = (), banner: str | None = None) -> str:
    """An article page in the site's layout: head with scripts, cookie banner, header and menu, optional notice
    banner, the article, a sidebar of related links and a newsletter box, and the footer."""
    e = html.escape
    meta = ""
    if site["declare"] in ("both", "meta"):
        # Older sites declare a legacy charset the http-equiv way; newer ones use the short form.
        meta = (f'<meta charset="{site["charset"]}">' if site["charset"] == "utf-8" else
                f'<meta http-equiv="Content-Type" content="text/html; charset={site["charset"]}">')
    cookie = (f'<div id="cookie-consent" class="cookie-banner" role="dialog" aria-live="polite"><p>{e(site["cookie"])}'
              f'</p>{"".join(f"<button type=button>{e(b)}</button>" for b in site["cookie_buttons"])}</div>')
    menu = "".join(f'<li><a href="/{_slug(item, i)}/">{e(item)}</a></li>' for i, item in enumerate(site["menu"]))
    byline = []
    if author:
        byline.append(f'<span class="byline">{e(site["by_label"])} <a rel="author">{e(author)}</a></span>')
    if day:
        shown = date.fromisoformat(day).strftime(site["date_format"])
        byline.append(f'<time datetime="{day}">{e(site["date_label"])} {shown}</time>')
    body = "\n".join(f"<p>{e(p)}</p>" for p in paragraphs)
    links = list(related) + [(t, f"/{_slug(t, i)}") for i, t in enumerate(site["extra_links"])]
    sidebar = "".join(f'<li><a href="{e(href)}">{e(t)}</a></li>' for t, href in links)
    footer = "".join(f'<li><a href="/{_slug(t, i)}">{e(t)}</a></li>' for i, t in enumerate(site["footer_links"]))
    return f"""<!DOCTYPE html>
<html lang="{site['lang']}">
<head>
{meta}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} | {e(site['name'])}</title>
<meta name="description" content="{e(paragraphs[0][:150])}">
<meta property="og:title" content="{e(title)}">
<meta property="og:site_name" content="{e(site['name'])}">
<link rel="stylesheet" href="/static/site.css">
<script>window.dataLayer=window.dataLayer||[];function gtag(){{dataLayer.push(arguments);}}gtag('js',new Date());</script>
</head>
<body class="article-page">
{cookie if site['cookie_position'] == 'top' else ''}
<header class="site-header">
<a class="logo" href="/">{e(site['name'])}</a><p class="tagline">{e(site['tagline'])}</p>
<nav class="main-nav" aria-label="main"><ul>{menu}</ul></nav>
</header>
{f'<div class="site-notice" role="status"><p>{e(banner)}</p></div>' if banner else ''}
<div class="container">
<main id="content">
<article class="post">
<h1 class="entry-title">{e(title)}</h1>
<p class="entry-meta">{' · '.join(byline)}</p>
<div class="entry-content">
{body}
</div>
</article>
</main>
<aside class="sidebar">
<section class="related"><h3>{e(site['related_label'])}</h3><ul>{sidebar}</ul></section>
<section class="newsletter"><p>{e(site['newsletter'])}</p><form action="/newsletter" method="post">
<input type="email" name="email" placeholder="name@example.com"><button type="submit">OK</button></form></section>
</aside>
</div>
<footer class="site-footer"><ul>{footer}</ul><p class="copyright">{e(site['copyright'])}</p></footer>
{cookie if site['cookie_position'] == 'bottom' else ''}
</body>
</html>
"""


def _slug(text: str, index: int) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-") or f"item-{index}"


def html_content_type(site: dict[str, Any]) -> str:
    """The HTTP Content-Type a site sends for its pages: with the charset only where the site declares it there."""
    return f"text/html; charset={site['charset']}" if site["declare"] in ("both", "http") else "text/html"


def _encode(site: dict[str, Any], page: str) -> bytes:
    # What a server does with characters its charset lacks: numeric character references.
    return page.encode(site["charset"], errors="xmlcharrefreplace")


# ------------------------------------------------------------------------------------------- non-HTML and errors
def _png(seed_text: str) -> bytes:
    """A small valid PNG (16x16, RGB), its colour taken from `seed_text`."""
    r, g, b = hashlib.sha1(seed_text.encode()).digest()[:3]
    raw = b"".join(b"\x00" + bytes((r, g, b)) * 16 for _ in range(16))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _pdf(title: str) -> bytes:
    """A one-page PDF showing `title` (Latin-1 only), with a correct cross-reference table."""
    text = title.encode("latin-1", "replace").replace(b"(", b"[").replace(b")", b"]")
    stream = b"BT /F1 18 Tf 72 720 Td (" + text + b") Tj ET"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _other_body(spec: dict[str, Any], site: dict[str, Any], articles: list[dict[str, Any]], url: str) -> bytes:
    """The body of a non-article capture, by its `body` kind."""
    kind = spec["body"]
    if kind == "page":
        return _encode(site, render_page(site, title=spec["title"], paragraphs=[spec["text"]]))
    if kind == "server":
        reason = HTTPStatus(spec["status"]).phrase
        detail = (f'<p>The document has moved <a href="{spec["location"]}">here</a>.</p>' if "location" in spec else
                  "<p>The server encountered an internal error and was unable to complete your request.</p>")
        return (f"<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>{spec['status']} {reason}"
                f"</title>\n</head><body>\n<h1>{reason}</h1>\n{detail}\n<hr>\n<address>{_server(site)} Server at "
                f"{site['host']} Port 443</address>\n</body></html>\n").encode("latin-1")
    if kind == "png":
        return _png(url)
    if kind == "pdf":
        return _pdf(f"{site['name']}: {Path(spec['path']).stem.replace('-', ' ')}")
    if kind == "css":
        return (":root{--accent:#2f6f3e;--text:#222}\nbody{margin:0;font:16px/1.6 Georgia,serif;color:var(--text)}\n"
                ".site-header,.site-footer{background:#f4f1ea;padding:1rem 2rem}\n.cookie-banner{position:fixed;"
                "bottom:0;left:0;right:0;background:#111;color:#fff;padding:1rem}\n"
                ".entry-content p{max-width:40em}\n.sidebar{font-size:.9rem}\n").encode()
    if kind == "json":
        events = [{"title": a["title"], "date": a["date"], "url": f"https://{site['host']}{a['path']}"}
                  for a in articles if a["site"] == site["key"]]
        return json.dumps({"site": site["name"], "events": events}, ensure_ascii=False, indent=1).encode()
    if kind == "robots":
        return (f"User-agent: *\nDisallow: /buscar\nDisallow: /admin/\n\nSitemap: https://{site['host']}"
                f"/sitemap.xml\n").encode()
    raise ValueError(f"texts/crawl.toml: other {spec['path']}: unknown body kind {kind!r}")


def _server(site: dict[str, Any]) -> str:
    return SERVERS[zlib.crc32(site["host"].encode()) % len(SERVERS)]


# ------------------------------------------------------------------------------------------------------ captures
@dataclasses.dataclass
class Capture:
    """One fetch: the URL, the HTTP answer, and what a reader should make of it."""

    url: str
    site: dict[str, Any]
    status: int
    content_type: str
    body: bytes
    kind: str  # "html" (an article: becomes a document), "non_html", "error_status", or "revisit"
    location: str | None = None
    revisit_of: Capture | None = None
    damaged: bool = False
    junk: str | None = None  # a junk page: the quality rule expected to drop it


def plan_captures(texts: dict[str, Any]) -> list[Capture]:
    """Every capture of the sample, in data order: articles, their copies, other responses, then revisits."""
    sites = {s["key"]: s for s in texts["site"]}
    articles = {a["key"]: a for a in texts["article"]}
    captures: dict[str, Capture] = {}

    def page(article: dict[str, Any], *, day: str | None = None, banner: str | None = None,
             replace: list[str] | None = None) -> bytes:
        site = sites[article["site"]]
        text = article["text"]
        if replace:
            if replace[0] not in text:
                raise ValueError(f"texts/crawl.toml: copy of {article['key']}: {replace[0]!r} is not in the text")
            text = text.replace(*replace)
        related = [(a["title"], a["path"]) for a in texts["article"]
                   if a["site"] == article["site"] and a["key"] != article["key"]]
        paragraphs = [p.strip() for p in text.strip().split("\n\n")]
        return _encode(site, render_page(site, title=article["title"], paragraphs=paragraphs,
                                         author=article["author"], day=day or article["date"], related=related,
                                         banner=banner))

    for art in texts["article"]:
        site = sites[art["site"]]
        captures[art["key"]] = Capture(url=f"https://{site['host']}{art['path']}", site=site, status=200,
                                       content_type=html_content_type(site), body=page(art), kind="html",
                                       junk=art.get("junk"))
    out = list(captures.values())
    for spec in texts["copy"]:
        art = articles[spec["of"]]
        if spec["change"] not in ("exact", "date", "banner", "edit"):
            raise ValueError(f"texts/crawl.toml: copy {spec['url']}: unknown change {spec['change']!r}")
        body = captures[art["key"]].body if spec["change"] == "exact" else page(
            art, day=spec.get("date"), banner=spec.get("banner"), replace=spec.get("replace"))
        out.append(dataclasses.replace(captures[art["key"]], url=spec["url"], body=body,
                                       damaged=spec.get("damaged", False)))
    for spec in texts["other"]:
        site = sites[spec["site"]]
        url = f"https://{site['host']}{spec['path']}"
        out.append(Capture(url=url, site=site, status=spec["status"], content_type=spec["content_type"],
                           body=_other_body(spec, site, texts["article"], url), location=spec.get("location"),
                           kind="error_status" if spec["status"] != 200 else "non_html"))
    for spec in texts["revisit"]:
        original = captures[spec["of"]]
        out.append(dataclasses.replace(original, kind="revisit", revisit_of=original))
    return out


def assign_files(captures: list[Capture], seed: int, files: int = FILES) -> list[list[Capture]]:
    """Spread the captures over `files` files in a seeded order. The damaged capture goes in the middle of the last
    file, between good records; a revisit goes at the end of the file holding its original, after it."""
    rng = random.Random(seed)
    plain = [c for c in captures if c.kind != "revisit" and not c.damaged]
    rng.shuffle(plain)
    out = [plain[i::files] for i in range(files)]
    for c in captures:
        if c.damaged:
            out[-1].insert(len(out[-1]) // 2, c)
    for c in captures:
        if c.revisit_of is not None:
            next(f for f in out if any(x is c.revisit_of for x in f)).append(c)
    return out


# ---------------------------------------------------------------------------------------------------------- WARC
def write_warc(captures: list[Capture], name: str, version: str, start: datetime, seed: int
               ) -> tuple[bytes, list[dict[str, Any]]]:
    """The bytes of one gzipped WARC file holding `captures`, and a row per record (type, offset, capture). Record
    ids derive from the seed, the file and a running count, so a rebuild writes the same bytes."""
    out: list[bytes] = []
    offset, count = 0, 0
    rng = random.Random(f"{seed}/{name}")
    rows: list[dict[str, Any]] = []
    responses: dict[int, tuple[str, str]] = {}  # id(capture) -> (payload digest, WARC-Date) for revisits

    def next_id() -> str:
        nonlocal count
        count += 1
        return warc_write.record_id(seed, name, count)

    def write(rec_type: str, capture: Capture | None, headers: list[tuple[str, str]], content_type: str,
              *block: bytes) -> None:
        nonlocal offset
        data = warc_write.record([("WARC-Type", rec_type), *headers], content_type, *block, version=version)
        rows.append({"type": rec_type, "offset": offset, "capture": capture, "end": offset + len(data)})
        out.append(data)
        offset += len(data)

    info_id = next_id()
    info = (f"software: corpusforge.sample.crawl\r\nformat: WARC File Format {version}\r\n"
            f"isPartOf: corpusforge-sample\r\ndescription: a small offline sample crawl of fictional sites "
            f"written for corpusforge\r\nrobots: classic\r\n").encode()
    write("warcinfo", None, [("WARC-Record-ID", info_id), ("WARC-Filename", name),
                             ("WARC-Date", warc_write.warc_date(start, version))], "application/warc-fields", info)
    when = start
    for cap in captures:
        when += timedelta(seconds=rng.randint(20, 90), microseconds=rng.randint(0, 999_999))
        host = cap.site["host"]
        path = cap.url.split(host, 1)[1]
        date = warc_write.warc_date(when, version)
        common = [("WARC-Target-URI", cap.url), ("WARC-Date", date), ("WARC-Warcinfo-ID", info_id),
                  ("WARC-IP-Address", f"203.0.113.{zlib.crc32(host.encode()) % 250 + 1}")]
        response_id, request_id = next_id(), next_id()
        request = warc_write.http_block(f"GET {path} HTTP/1.1", [
            ("Host", host), ("User-Agent", USER_AGENT),
            ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            ("Accept-Language", f"{cap.site['lang']},en;q=0.5"), ("Accept-Encoding", "br,gzip"),
            ("Connection", "Keep-Alive")], request=True)
        write("request", cap, [("WARC-Record-ID", request_id), *common, ("WARC-Concurrent-To", response_id),
                               ("WARC-Payload-Digest", warc_write.EMPTY_DIGEST)],
              "application/http; msgtype=request", request)
        headers = [("Date", format_datetime(when, usegmt=True)), ("Server", _server(cap.site)),
                   ("Content-Type", cap.content_type), ("Content-Length", str(len(cap.body)))]
        if cap.location:
            headers.append(("Location", cap.location))
        headers += [("Cache-Control", "max-age=600"), ("Connection", "close")]
        answer = warc_write.http_block(f"{cap.status} {HTTPStatus(cap.status).phrase}", headers)
        if cap.revisit_of is not None:
            digest, first_date = responses[id(cap.revisit_of)]
            write("revisit", cap, [("WARC-Record-ID", response_id), *common,
                                   ("WARC-Profile", f"http://netpreserve.org/warc/{version}/revisit/"
                                                    "identical-payload-digest"),
                                   ("WARC-Refers-To-Target-URI", cap.revisit_of.url),
                                   ("WARC-Refers-To-Date", first_date), ("WARC-Payload-Digest", digest)],
                  "application/http; msgtype=response", answer)
            continue
        digest = warc_write.sha1_digest(cap.body)
        responses[id(cap)] = (digest, date)
        write("response", cap, [("WARC-Record-ID", response_id), *common, ("WARC-Payload-Digest", digest),
                                ("WARC-Identified-Payload-Type", cap.content_type.split(";")[0])],
              "application/http; msgtype=response", answer, cap.body)
        fields = f"fetchTimeMs: {rng.randint(40, 900)}\r\n"
        if cap.kind == "html":
            fields += f"charset-detected: {cap.site['charset'].upper()}\r\n"
        write("metadata", cap, [("WARC-Record-ID", next_id()), *common, ("WARC-Refers-To", response_id)],
              "application/warc-fields", fields.encode())
    return b"".join(out), rows


def damage(data: bytes, start: int, end: int) -> bytes:
    """`data` with the middle of the gzip member [start, end) overwritten, as a bad disk block would leave it."""
    at = start + (end - start) * 2 // 5
    if at + len(_DAMAGE) > end:
        raise ValueError(f"record at {start} is too short ({end - start} bytes) to damage in the middle")
    return data[:at] + _DAMAGE + data[at + len(_DAMAGE):]


# --------------------------------------------------------------------------------------------------------- build
def build(out_dir: Path, seed: int) -> dict[str, Any]:
    """Write the sample crawl into `out_dir` as `FILES` gzipped WARC files and `_expected.json`; return a summary.

    Files alternate WARC/1.1 and WARC/1.0, as crawls written years apart do; the last one holds the damaged record.
    """
    out_dir = Path(out_dir)
    groups = assign_files(plan_captures(load_texts()), seed)
    pages: dict[str, dict[str, Any]] = {}
    records: dict[str, int] = {}
    responses = {"html": 0, "non_html": 0, "error_status": 0}
    damaged: dict[str, Any] = {}
    files, written = [], 0
    for index, captures in enumerate(groups):
        name = FILE_NAME.format(hour=6 + index, index=index)
        data, rows = write_warc(captures, name, "1.1" if index % 2 == 0 else "1.0",
                                CRAWL_START + timedelta(hours=index), seed)
        written += len(rows)
        for row in rows:
            cap = row["capture"]
            if row["type"] == "response" and cap.damaged:
                data = damage(data, row["offset"], row["end"])
                damaged = {"file": name, "offset": row["offset"], "url": cap.url,
                           "pages_before": [u for u, p in pages.items() if p["file"] == name],
                           "pages_after": []}
                continue
            records[row["type"]] = records.get(row["type"], 0) + 1
            if row["type"] != "response":
                continue
            responses[cap.kind] += 1
            if cap.kind == "html":
                pages[cap.url] = {"lang": cap.site["lang"], "file": name, "offset": row["offset"], "junk": cap.junk}
                if damaged.get("file") == name:
                    damaged["pages_after"].append(cap.url)
        with atomic_path(out_dir / name) as tmp:
            tmp.write_bytes(data)
        files.append(name)
    langs = sorted({p["lang"] for p in pages.values()})
    write_json_atomic(out_dir / "_expected.json", {"files": files, "records": records, "responses": responses,
                                                   "pages": pages, "damaged": damaged})
    write_json_atomic(out_dir / EXPECTED_ERRORS_FILE, {damaged["file"]: [{
        "offset": damaged["offset"], "why": "the sample damages this record on purpose; the pages around it are kept"}]})
    return {"files": len(files), "records": written, "html_pages": len(pages),
            "languages": langs, "damaged": f"{damaged['file']} at offset {damaged['offset']}"}
