"""The sample's Reddit part: a Pushshift-format dump of submissions and the web pages they link to.

Everything comes from `texts/reddit.toml`: fictional sites under `.sample.invalid` (a reserved name that never
resolves, so nothing can reach the internet), articles written for this sample in English, German, French and
Spanish, drawn in each site's layout with its boilerplate (corpusforge.sample.crawl.render_page), and the submissions
that link to them: qualifying link posts, a duplicate with tracking parameters, an old URL that redirects, low
scores, self posts, an NSFW post, images, blocked domains, a page robots.txt disallows and a page that is gone.

`build` writes `RS_2024-03.zst` (zstd with a 2 GiB window, like the real dumps) and a site folder
(corpusforge.formats.site: `site/<host>/<path>`, redirects, each site's Content-Type), which the `webtext2` stage
serves on a loopback port while it fetches (`sample_site`). Building is deterministic for a seed.
"""

from __future__ import annotations

import random
import tomllib
import zlib
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from corpusforge.formats import site as site_folder
from corpusforge.formats.pushshift import write_dump
from corpusforge.runtime import write_text_atomic
from corpusforge.sample.crawl import html_content_type, render_page

DOMAIN = "sample.invalid"
DUMP = "RS_2024-03.zst"
MONTH_START = datetime(2024, 3, 1, tzinfo=timezone.utc)
_JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")  # a JPEG header and end marker


def load_texts() -> dict[str, Any]:
    """The sites, articles and posts of the sample (`texts/reddit.toml`)."""
    return tomllib.loads(resources.files(__package__).joinpath("texts", "reddit.toml").read_text(encoding="utf-8"))


def write_site(site_dir: Path, texts: dict[str, Any]) -> int:
    """Write every article page, robots.txt and redirect of the sample's sites; returns the number of pages."""
    sites = {s["key"]: s for s in texts["site"]}
    redirects = {}
    for article in texts["article"]:
        site = sites[article["site"]]
        page = render_page(site, title=article["title"], author=article.get("author"), day=article.get("date"),
                           paragraphs=[p.strip() for p in article["text"].split("\n\n") if p.strip()])
        write_text_atomic(site_folder.page_file(site_dir, site["host"], article["path"]), page)
        if "old_path" in article:
            redirects[f"{site['host']}{article['old_path']}"] = f"http://{site['host']}{article['path']}"
    for site in sites.values():
        if site.get("robots"):
            write_text_atomic(site_dir / site["host"] / "robots.txt", site["robots"].lstrip())
    image = site_folder.page_file(site_dir, f"pix.{DOMAIN}", "/view/8841/index.jpg")
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(_JPEG)
    site_folder.write_meta(site_dir, redirects, {s["host"]: html_content_type(s) for s in sites.values()})
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
