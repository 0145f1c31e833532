"""WebText2 benchmark: reading Pushshift dumps, and fetching politely from a loopback web server.

1. Link collection, submissions/s on one core: `pushshift.scan_dump` (streaming zstd with the 2 GiB window, byte
   offsets, error reporting, URL normalization, the link rules, candidate rows written to bucketed Parquet) against
   the plain reader OpenWebText2 used (zstandard stream_reader + TextIOWrapper + json.loads + score/self-post test,
   URLs kept in a list), on the same dump: the 5,474 real records of ../shared/data/reddit repeated to ~110,000
   (each copy with its own ids and URLs), written as a long-window dump. Best of a few rounds, alternating.
2. Fetching throughput with politeness off (no delay between requests to a host), pages/s: `fetch.fetch_links`
   (robots.txt per host, address checks, WARC request+response records, the resumable log) against a bare aiohttp
   crawl of the same URLs at the same concurrency that keeps the bodies in memory. Both run in a child process
   while the server runs in this one: an aiohttp server (`serve_site`), so that the clients are what is measured.
   The CPU time `warcs.warc_records` takes for the same pages tells how much of our time the WARC records are.
   The race is run again against the sample's http.server (corpusforge.formats.site.serve) and kept in the JSON
   only (`fetch.sample_server`): each of its answers waits 40 ms and it drops connections past a backlog of 5, so
   the times there are the server's, and they jump by 1 s with each dropped connection.
3. Politeness: 8 hosts x 5 pages with 0.2 s between requests to a host. Our fetcher works on the hosts side by side
   (each host still waits its interval) against the same fetcher taking one host at a time.

Run: `.venv/bin/python -m bench.webtext2 [--rounds 3]`; writes bench/results/webtext2.json.
Needs the Reddit files under ../shared/data (or CORPUSFORGE_SHARED_DATA).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import multiprocessing
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from corpusforge import runtime
from corpusforge.formats.site import serve
from corpusforge.formats import pushshift as dumps
from corpusforge.sources.webtext2 import fetch, pushshift, warcs
from corpusforge.sources.webtext2.links import candidate_row
from corpusforge.sources.webtext2.urls import LinkRules

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CORPUSFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results" / "webtext2.json"
COPIES = 20


# ------------------------------------------------------------------------------------------- 1. link collection
def real_records() -> list[dict]:
    records = []
    for path in sorted((SHARED / "reddit").glob("*.zst")):
        report = runtime.FileReport(input=str(path))
        records.extend(r for _, r in dumps.read_submissions(str(path), report))
    return records


def owt2_reader(path: str, min_score: int = 3) -> list[str]:
    """The baseline: how OpenWebText2's scripts read a dump (no offsets, no normalization, nothing written)."""
    import zstandard

    urls = []
    with open(path, "rb") as fh, zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(fh) as reader:
        for line in io.TextIOWrapper(reader, encoding="utf-8"):
            post = json.loads(line)
            if (post.get("score") or 0) >= min_score and not post.get("is_self"):
                urls.append(post.get("url"))
    return urls


def bench_scan(tmp: Path, rounds: int) -> dict:
    base = real_records()
    records = [{**r, "id": f"{r.get('id')}c{k}", "url": f"{r.get('url')}{'&' if '?' in str(r.get('url')) else '?'}"
                f"copy={k}"} for k in range(COPIES) for r in base]
    dump = tmp / "RS_bench.zst"
    dumps.write_dump(dump, records)
    ours, theirs = [], []
    for i in range(rounds):
        t0 = time.perf_counter()
        report = pushshift.scan_dump(str(dump), str(tmp / f"units{i}"), LinkRules())
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        kept = owt2_reader(str(dump))
        theirs.append(time.perf_counter() - t0)
    n = len(records)
    return {"submissions": n, "dump_bytes": dump.stat().st_size, "candidates": report.counts["candidates"],
            "baseline_urls": len(kept), "ours_s": min(ours), "baseline_s": min(theirs),
            "ours_per_s": n / min(ours), "baseline_per_s": n / min(theirs)}


# ---------------------------------------------------------------------------------------------------- 2. fetching
def write_site(root: Path, hosts: int, pages: int, words: int = 1500) -> list[str]:
    urls = []
    text = " ".join(f"word{i % 97}" for i in range(words))
    for h in range(hosts):
        host = f"h{h:02d}.bench.invalid"
        for p in range(pages):
            page = root / host / f"article-{p}" / "index.html"
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(f"<html><head><title>{host} {p}</title></head><body><nav>home</nav><article><p>{text}"
                            f"</p></article><footer>contact</footer></body></html>")
            urls.append(f"http://{host}/article-{p}/")
    return urls


def write_links(path: Path, urls: list[str]) -> str:
    with runtime.ShardWriter(path, schema_name="links") as writer:
        writer.write_rows([candidate_row({"id": f"b{i}", "score": 5}, u, "bench", i) for i, u in enumerate(urls)])
    return str(path)


@contextlib.contextmanager
def serve_site(root: Path) -> Iterator[str]:
    """Serve `root/<host>/<path>/index.html` by Host header with aiohttp's server on a loopback port; yields
    "127.0.0.1:PORT". Like production servers it answers in one write with TCP_NODELAY and has a listen backlog of
    128, so the fetchers are measured, not the server (the sample's http.server stalls each answer 40 ms, Nagle
    against delayed ACKs, and drops connections past a backlog of 5, which the kernel retries after 1 s)."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        page = root / request.host.split(":")[0] / request.path.strip("/") / "index.html"
        if not page.is_file():
            return web.Response(status=404, text="not found")
        return web.Response(body=page.read_bytes(), content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    thread = threading.Thread(target=loop.run_forever, name="bench-site", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(runner.cleanup())
        loop.close()


def timed_fetch(item: str, out: str, config: fetch.FetchConfig) -> tuple[float, float, dict]:
    """(wall seconds, CPU seconds of this process, counts) of one fetch task."""
    t0, c0 = time.perf_counter(), time.process_time()
    report = fetch.fetch_links(item, out, config)
    return time.perf_counter() - t0, time.process_time() - c0, report.counts


def timed_bare(urls: list[str], address: str, concurrency: int) -> tuple[float, float, int]:
    """The baseline crawl: aiohttp, a semaphore, bodies kept in memory; the Host header picks the site. Returns
    (wall seconds, CPU seconds of this process, bytes read)."""
    import aiohttp

    async def crawl() -> int:
        limit = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession() as session:
            async def get(url: str) -> int:
                host, path = url[7:].split("/", 1)
                async with limit, session.get(f"http://{address}/{path}", headers={"Host": host}) as resp:
                    return len(await resp.read())

            return sum(await asyncio.gather(*(get(u) for u in urls)))

    t0, c0 = time.perf_counter(), time.process_time()
    size = asyncio.run(crawl())
    return time.perf_counter() - t0, time.process_time() - c0, size


def timed_warc(site: Path, urls: list[str]) -> float:
    """CPU seconds warcs.warc_records takes for the pages of `urls` as the 200 responses our fetch got: the part of
    its work that the bare crawl does not do."""
    exchanges = []
    for url in urls:
        host, path = url[7:].split("/", 1)
        body = (site / host / path / "index.html").read_bytes()
        exchanges.append(warcs.Exchange(
            url=url, status=200, reason="OK", request_line=f"GET /{path} HTTP/1.1",
            request_headers=[("Host", host), ("User-Agent", fetch.USER_AGENT), ("Accept", "text/html"),
                             ("Accept-Encoding", "gzip, deflate")],
            headers=[("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
                     ("Date", "Sat, 01 Jun 2024 12:00:00 GMT"), ("Server", "Python/3.11 aiohttp/3")],
            body=body, peer="127.0.0.1"))
    c0 = time.process_time()
    for exchange in exchanges:
        warcs.warc_records([exchange])
    return time.process_time() - c0


def race(pool: ProcessPoolExecutor, item: str, urls: list[str], address: str, out: Path, rounds: int) -> dict:
    """Our fetch against the bare crawl of the same URLs at the same concurrency, alternating; best of `rounds`."""
    config = fetch.FetchConfig(host_interval_s=0.0, concurrency=16, resolve={"*.bench.invalid": address})
    ours, theirs = [], []
    for i in range(rounds):
        wall, cpu, counts = pool.submit(timed_fetch, item, str(out / f"warc{i}"), config).result()
        assert counts["fetched"] == len(urls), counts
        ours.append((wall, cpu))
        theirs.append(pool.submit(timed_bare, urls, address, 16).result()[:2])
    ours_s, bare_s = min(w for w, _ in ours), min(w for w, _ in theirs)
    return {"ours_s": ours_s, "baseline_s": bare_s, "ours_per_s": len(urls) / ours_s,
            "baseline_per_s": len(urls) / bare_s, "ours_cpu_s": min(c for _, c in ours),
            "baseline_cpu_s": min(c for _, c in theirs)}


def bench_fetch(tmp: Path, rounds: int) -> dict:
    site = tmp / "site"
    urls = write_site(site, hosts=16, pages=40)
    polite_urls = [f"http://h{h:02d}.bench.invalid/article-{p}/" for h in range(8) for p in range(5)]  # a subset
    item = write_links(tmp / "links.parquet", urls)
    polite_item = write_links(tmp / "polite.parquet", polite_urls)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        with serve_site(site) as address:
            result = race(pool, item, urls, address, tmp / "fast", rounds)
            polite = fetch.FetchConfig(host_interval_s=0.2, concurrency=8, resolve={"*.bench.invalid": address})
            side_by_side = pool.submit(timed_fetch, polite_item, str(tmp / "polite8"), polite).result()[0]
            one_at_a_time = pool.submit(timed_fetch, polite_item, str(tmp / "polite1"),
                                        fetch.FetchConfig(**{**polite.__dict__, "concurrency": 1})).result()[0]
        with serve(site) as address:  # the site-folder server the sample uses, for the record (see serve_site)
            result["sample_server"] = race(pool, item, urls, address, tmp / "sample", rounds)
        result["warc_cpu_s"] = min(pool.submit(timed_warc, site, urls).result() for _ in range(rounds))
    return {"pages": len(urls), "hosts": 16, **result,
            "polite_pages": len(polite_urls), "polite_hosts": 8, "host_interval_s": 0.2,
            "polite_side_by_side_s": side_by_side, "polite_one_host_at_a_time_s": one_at_a_time}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scan = bench_scan(Path(tmp), args.rounds)
        fetched = bench_fetch(Path(tmp), args.rounds)
    table = [
        {"what": f"Pushshift dump -> candidate links, submissions/s on 1 core ({scan['submissions']:,} records)",
         "result": f"{scan['ours_per_s']:,.0f}",
         "baseline": f"{scan['baseline_per_s']:,.0f} (OpenWebText2-style reader, nothing written)",
         "ratio": f"{scan['ours_per_s'] / scan['baseline_per_s']:.2f}x"},
        {"what": f"fetch {fetched['pages']} loopback pages on {fetched['hosts']} hosts (aiohttp server), no delay: "
                 "pages/s",
         "result": f"{fetched['ours_per_s']:,.0f} (robots, WARC, log; the WARC records take "
                   f"{fetched['warc_cpu_s'] / fetched['ours_cpu_s']:.0%} of its CPU time)",
         "baseline": f"{fetched['baseline_per_s']:,.0f} (bare aiohttp, same concurrency)",
         "ratio": f"{fetched['ours_per_s'] / fetched['baseline_per_s']:.2f}x"},
        {"what": f"polite fetch, {fetched['polite_hosts']} hosts x 5 pages, {fetched['host_interval_s']} s "
                 "between requests to a host",
         "result": f"{fetched['polite_side_by_side_s']:.1f} s (hosts side by side)",
         "baseline": f"{fetched['polite_one_host_at_a_time_s']:.1f} s (one host at a time)",
         "ratio": f"{fetched['polite_one_host_at_a_time_s'] / fetched['polite_side_by_side_s']:.1f}x faster"},
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"table": table, "scan": scan, "fetch": fetched, "cpu_count": os.cpu_count()},
                                  indent=2) + "\n")
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
