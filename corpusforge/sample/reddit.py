"""The sample's Reddit part: a Pushshift-format dump of submissions and the web pages they link to.

Everything comes from `texts/reddit.toml`: fictional sites under `.sample.invalid` (a reserved name that never
resolves, so nothing can reach the internet), articles written for this sample in English, German, French and
Spanish, drawn in each site's layout with its boilerplate (corpusforge.sample.crawl.render_page), and the submissions
that link to them: qualifying link posts, a duplicate with tracking parameters, an old URL that redirects, low
scores, self posts, an NSFW post, images, blocked domains, a page robots.txt disallows and a page that is gone.

`build` writes `RS_2024-03.zst` (zstd with a 2 GiB window, like the real dumps) and `site/<host>/<path>` files;
`serve(site)` answers for those hosts on a loopback port while the `webtext2` stage fetches, with the fetcher told to
resolve `*.sample.invalid` to that port. Building is deterministic for a seed.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import random
import threading
import tomllib
import zlib
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from corpusforge.formats.pushshift import write_dump
from corpusforge.runtime import write_text_atomic
from corpusforge.sample.crawl import html_content_type, render_page

DOMAIN = "sample.invalid"
DUMP = "RS_2024-03.zst"
REDIRECTS = "_redirects.json"
MONTH_START = datetime(2024, 3, 1, tzinfo=timezone.utc)
_JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")  # a JPEG header and end marker


def load_texts() -> dict[str, Any]:
    """The sites, articles and posts of the sample (`texts/reddit.toml`)."""
    return tomllib.loads(resources.files(__package__).joinpath("texts", "reddit.toml").read_text(encoding="utf-8"))


def _page_file(site_dir: Path, host: str, path: str) -> Path:
    # Pretty URLs ("/a/b/" or "/a/b") are stored as index files, so the server can tell a page from a folder.
    rel = path.strip("/")
    return site_dir / host / rel if Path(rel).suffix else site_dir / host / rel / "index.html"


def write_site(site_dir: Path, texts: dict[str, Any]) -> int:
    """Write every article page, robots.txt and redirect of the sample's sites; returns the number of pages."""
    sites = {s["key"]: s for s in texts["site"]}
    redirects = {}
    for article in texts["article"]:
        site = sites[article["site"]]
        page = render_page(site, title=article["title"], author=article.get("author"), day=article.get("date"),
                           paragraphs=[p.strip() for p in article["text"].split("\n\n") if p.strip()])
        write_text_atomic(_page_file(site_dir, site["host"], article["path"]), page)
        if "old_path" in article:
            redirects[f"{site['host']}{article['old_path']}"] = f"http://{site['host']}{article['path']}"
    for site in sites.values():
        if site.get("robots"):
            write_text_atomic(site_dir / site["host"] / "robots.txt", site["robots"].lstrip())
    image = _page_file(site_dir, f"pix.{DOMAIN}", "/view/8841/index.jpg")
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(_JPEG)
    write_text_atomic(site_dir / REDIRECTS, json.dumps(redirects, indent=1, sort_keys=True) + "\n")
    return len(texts["article"])


def submissions(texts: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """The posts as Pushshift submission records, sorted by creation time as in the real dumps."""
    rng = random.Random(seed)
    sites = {s["key"]: s for s in texts["site"]}
    articles = {a["key"]: a for a in texts["article"]}
    records = []
    times = sorted(rng.sample(range(31 * 86400), len(texts["post"])))
    for n, (post, offset) in enumerate(zip(texts["post"], rng.sample(times, len(times)))):
        sid = _base36(rng.randrange(36**5, 36**6))
        subreddit = post["subreddit"]
        if "article" in post:
            article = articles[post["article"]]
            host = sites[article["site"]]["host"]
            path = article["old_path"] if post.get("old_url") else article["path"]
            url, title = f"http://{host}{path}{post.get('url_suffix', '')}", article["title"]
        else:
            url, title = post["url"], f"Link {n} in r/{subreddit}"
        created = int(MONTH_START.timestamp()) + offset
        permalink = f"/r/{subreddit}/comments/{sid}/{'_'.join(title.lower().split()[:6])}/"
        is_self = post.get("is_self", False)
        records.append({
            "id": sid, "name": f"t3_{sid}", "title": title, "author": f"sample_user_{rng.randrange(1000):03d}",
            "subreddit": subreddit, "subreddit_id": f"t5_{_base36(zlib.crc32(subreddit.encode()) % 36**6)}",
            "url": f"https://www.reddit.com{permalink}" if is_self else url,
            "domain": f"self.{subreddit}" if is_self else url.split("/")[2], "permalink": permalink,
            "is_self": is_self, "selftext": "What do you all think?" if is_self else "",
            "over_18": post.get("over_18", False), "score": post["score"], "num_comments": rng.randrange(200),
            "created_utc": created, "retrieved_on": created + 86400 * 30, "stickied": False,
        })
    return sorted(records, key=lambda r: (r["created_utc"], r["id"]))


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


def build(out_dir: Path, seed: int) -> dict[str, Any]:
    """Write the dump and the site under `out_dir`; returns what was written."""
    texts = load_texts()
    records = submissions(texts, seed)
    dump_bytes = write_dump(out_dir / DUMP, records)
    pages = write_site(out_dir / "site", texts)
    return {"dump": str(out_dir / DUMP), "submissions": len(records), "dump_bytes": dump_bytes,
            "site": str(out_dir / "site"), "pages": pages}


# ------------------------------------------------------------------------------------------------------ serving
@contextlib.contextmanager
def serve(site_dir: str | Path) -> Iterator[str]:
    """Serve `site_dir/<host>/...` by Host header on an ephemeral loopback port; yields "127.0.0.1:PORT"."""
    root = Path(site_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"sample site {root} not found: run the sample stage (part \"reddit\") first")
    redirects = json.loads((root / REDIRECTS).read_text(encoding="utf-8")) if (root / REDIRECTS).exists() else {}
    content_types = {s["host"]: html_content_type(s) for s in load_texts()["site"]}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "corpusforge-sample"
        # headers and body go out in separate writes: with Nagle on, each answer waits ~40 ms for a delayed ACK
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            host = (self.headers.get("Host") or "").split(":")[0].lower()
            path = self.path.split("?", 1)[0]
            if f"{host}{path}" in redirects:
                return self._answer(301, b"", "text/html", {"Location": redirects[f"{host}{path}"]})
            file = _page_file(root, host, path)
            if not file.is_file() and file.parent.is_dir():
                file = next(iter(sorted(file.parent.glob("index.*"))), file)
            if not file.resolve().is_relative_to(root / host) or not file.is_file():
                return self._answer(404, b"<html><body><h1>Not Found</h1></body></html>", "text/html")
            if file.suffix == ".html":
                ctype = content_types.get(host, "text/html")
            else:
                ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            self._answer(200, file.read_bytes(), ctype)

        def _answer(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128  # the default listen backlog of 5 drops some of 16 parallel connects

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="sample-site", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
