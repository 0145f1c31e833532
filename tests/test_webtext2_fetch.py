"""The polite fetcher against a real web server on loopback: robots.txt (RFC 9309 wildcards, longest match, agent
groups, fractional Crawl-delay), per-host rate limits (measured), WARC request/response records, redirects and
redirect loops, oversize bodies, retries, private addresses, resume after the process is killed mid-fetch with no
page fetched twice, and re-runs that retry transient failures (`--retry-failed`)."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import io
import json
import multiprocessing
import re
import socket
import statistics
import threading
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from warcio.archiveiterator import ArchiveIterator

from corpusforge import cli, runtime
from corpusforge.sources.webtext2 import fetch, warcs
from corpusforge.sources.webtext2.links import candidate_row
from hostile import bomb_bytes, run_measured
from webtext2_servers import Page, Site, wait_until

HTML = ("<html><head><title>{title}</title></head><body><nav>Home | About</nav><article><h1>{title}</h1>"
        "<p>{text}</p></article><footer>Contact</footer></body></html>")


def page(title: str) -> Page:
    return Page(HTML.format(title=title, text=f"This is the page called {title}. " * 30))


def write_links(path: Path, urls: list[str]) -> str:
    with runtime.ShardWriter(path, schema_name="links") as writer:
        writer.write_rows([candidate_row({"id": f"t{i}", "score": 10 + i, "subreddit": "test"}, url, "test", i)
                           for i, url in enumerate(urls)])
    return str(path)


def warc_responses(warc_dir: Path) -> list[dict]:
    """Every response record of the finished WARCs, with its request's link."""
    out, requests = [], {}
    for warc in sorted(warc_dir.glob("*.warc.gz")):
        with open(warc, "rb") as fh:
            for rec in ArchiveIterator(fh, check_digests="raise"):  # every record's digests are right
                h = rec.rec_headers
                if rec.rec_type == "request":
                    requests[h.get_header("WARC-Concurrent-To")] = rec.http_headers.get_header("User-Agent")
                elif rec.rec_type == "response":
                    out.append({"url": h.get_header("WARC-Target-URI"), "id": h.get_header("WARC-Record-ID"),
                                "ip": h.get_header("WARC-IP-Address"), "truncated": h.get_header("WARC-Truncated"),
                                "status": rec.http_headers.get_statuscode(), "body": rec.content_stream().read()})
    for r in out:
        r["request_user_agent"] = requests.get(r["id"])
    return out


def logged(warc_dir: Path) -> list[dict]:
    """Every outcome of the finished fetch logs, oldest first."""
    return [e for log in sorted(warc_dir.glob("*.fetch.jsonl")) for e in map(json.loads, log.read_text().splitlines())
            if "url" in e]


def outcomes(warc_dir: Path) -> dict[str, dict]:
    """Each URL's latest outcome."""
    return {e["url"]: e for e in logged(warc_dir)}


def config(site: Site, **kw) -> fetch.FetchConfig:
    return fetch.FetchConfig(resolve={"*.test": site.address}, backoff_s=0.05, **kw)


def test_robots_rate_limit_and_warc_records(tmp_path):
    with Site() as site:
        site.route("a.test", "/robots.txt", Page("User-agent: *\nDisallow: /private/\n", content_type="text/plain"))
        site.route("b.test", "/robots.txt", Page("User-agent: corpusforge-webtext2\nCrawl-delay: 0.6\n\n"
                                                 "User-agent: *\nDisallow: /\n", content_type="text/plain"))
        urls = [f"http://a.test/p{i}" for i in range(6)] + ["http://a.test/private/secret"]
        urls += [f"http://b.test/q{i}" for i in range(2)]
        for url in urls:
            host, path = url[7:].split("/", 1)
            site.route(host, "/" + path, page(path))
        item = write_links(tmp_path / "links-00000.parquet", urls)
        # The fetcher runs in its own process so that its work never delays the server's clock.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            report = pool.submit(fetch.fetch_links, item, str(tmp_path / "warc"),
                                 config(site, host_interval_s=0.25)).result()

    assert report.counts["fetched"] == 8 and report.counts["robots_disallowed"] == 1 and not report.errors
    assert site.served(path="/private/secret") == []
    # b.test's Crawl-delay for our agent wins, fraction and all; it applies after robots.txt is read.
    for host, interval in (("a.test", 0.25), ("b.test", 0.6)):
        served = site.served(host)
        assert [r.path for r in served].count("/robots.txt") == 1 and served[0].path == "/robots.txt"
        served = served[1:]
        starts = [r.started for r in served]  # as the server saw them
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        assert min(gaps) >= interval * 0.9, (host, gaps)
    # The two hosts were fetched side by side, not one after the other.
    a_times, b_times = [r.started for r in site.served("a.test")], [r.started for r in site.served("b.test")]
    assert b_times[0] < a_times[-1] and a_times[0] < b_times[-1]
    assert all(r.headers["User-Agent"] == fetch.USER_AGENT for r in site.requests)

    responses = warc_responses(tmp_path / "warc")
    assert sorted(r["url"] for r in responses) == sorted(u for u in urls if "private" not in u)
    for r in responses:
        assert r["status"] == "200" and r["ip"] == "127.0.0.1" and b"<article>" in r["body"]
        assert r["request_user_agent"] == fetch.USER_AGENT  # the request record is linked to its response
    assert list((tmp_path / "warc").glob(".*")) == []  # nothing half-written left behind


def test_redirects_sizes_retries_and_types(tmp_path):
    with Site() as site:
        site.route("r.test", "/loop-a", Page(status=302, headers={"Location": "/loop-b"}))
        site.route("r.test", "/loop-b", Page(status=302, headers={"Location": "http://r.test/loop-a"}))
        for i in range(7):
            site.route("r.test", f"/hop{i}", Page(status=301, headers={"Location": f"/hop{i + 1}"}))
        site.route("r.test", "/old", Page(status=301, headers={"Location": "/new?utm_source=x"}))
        site.route("r.test", "/new", page("new"))
        site.route("s.test", "/huge", Page(b"<html><body><p>" + b"word " * 40_000 + b"</p></body></html>"))
        site.route("s.test", "/busy", Page(status=503, headers={"Retry-After": "0.3"}),
                   Page(status=429, headers={"Retry-After": "0.3"}), page("busy"))
        site.route("s.test", "/slow-down", Page(status=429, headers={"Retry-After": "3600"}))
        site.route("s.test", "/picture", Page(b"\x89PNG" + b"\0" * 5000, content_type="image/png"))
        site.route("s.test", "/reset", Page(drop=True))
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
        closed.close()
        urls = ["http://r.test/loop-a", "http://r.test/hop0", "http://r.test/old", "http://s.test/huge",
                "http://s.test/busy", "http://s.test/slow-down", "http://s.test/picture", "http://s.test/gone",
                "http://s.test/reset", "http://dead.test/x"]
        item = write_links(tmp_path / "links.parquet", urls)
        cfg = fetch.FetchConfig(resolve={"*.test": site.address, "dead.test": f"127.0.0.1:{dead_port}"},
                                backoff_s=0.05, host_interval_s=0.0, max_bytes=50_000, max_redirects=5,
                                max_retry_after_s=60, retries=3)
        report = fetch.fetch_links(item, str(tmp_path / "warc"), cfg)

    got = outcomes(tmp_path / "warc")
    assert {u: got[u]["outcome"] for u in urls} == {
        "http://r.test/loop-a": "redirect_loop", "http://r.test/hop0": "too_many_redirects",
        "http://r.test/old": "fetched", "http://s.test/huge": "truncated", "http://s.test/busy": "fetched",
        "http://s.test/slow-down": "http_429", "http://s.test/picture": "non_html", "http://s.test/gone": "http_404",
        "http://s.test/reset": "network_error",
        "http://dead.test/x": "robots_unreachable"}  # RFC 9309: robots.txt unreachable means nothing is allowed
    assert got["http://r.test/old"]["final_url"] == "http://r.test/new"  # tracking parameter dropped on the way
    assert len(site.served("r.test", "/loop-a")) == 1  # the loop was stopped, not followed again
    assert len([r for r in site.served("r.test") if r.path.startswith("/hop")]) == 6
    busy = site.served("s.test", "/busy")
    assert len(busy) == 3 and all(b.started - a.started >= 0.3 for a, b in zip(busy, busy[1:]))  # Retry-After
    assert len(site.served("s.test", "/slow-down")) == 1  # an hour's Retry-After is more than we wait: give up
    assert got["http://s.test/reset"]["requests"] == 4  # first try and three retries
    assert got["http://dead.test/x"]["requests"] == 0
    # Errors are reported with the WARC file and offset of the record (or the link file when there is none).
    errors = {e["url"]: e for e in report.errors}
    assert set(errors) == {"http://r.test/loop-a", "http://r.test/hop0", "http://s.test/huge", "http://s.test/reset"}
    assert errors["http://s.test/huge"]["file"].endswith(".warc.gz") and errors["http://s.test/huge"]["offset"] > 0
    assert "cut" in errors["http://s.test/huge"]["reason"] and errors["http://s.test/reset"]["file"] == item
    huge = next(r for r in warc_responses(tmp_path / "warc") if r["url"] == "http://s.test/huge")
    assert huge["truncated"] == "length" and len(huge["body"]) == 50_000
    assert not any(r["url"] == "http://s.test/picture" for r in warc_responses(tmp_path / "warc"))


def test_warc_records_are_the_records_warcio_writes(tmp_path):
    """warcs.warc_records writes its records itself (faster than warcio's writer): they must be the records warcio
    writes for the same exchanges, byte for byte once the random record ids and the clock are set aside."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    body = b"<html><body><p>" + "café ".encode() * 3000 + b"</p></body></html>"
    request = {"request_line": "GET /a?b=1 HTTP/1.1", "request_headers": [("Host", "a.test"), ("User-Agent", "x/1")]}
    exchanges = [
        warcs.Exchange(url="http://a.test/a?b=1", status=200, reason="OK", body=body, peer="127.0.0.1",
                       headers=[("Content-Type", "text/html"), ("Content-Length", str(len(body)))], **request),
        warcs.Exchange(url="http://a.test/cut", status=200, reason="OK", body=body[:1000], truncated=True,
                       peer="::1", headers=[("Transfer-Encoding", "chunked"), ("X-Name", "Müller")], **request),
        warcs.Exchange(url="http://a.test/old", status=301, reason="", headers=[("Location", "/new")], **request),
    ]
    # The headers stored describe the stored body: a de-chunked or cut body gets its real length.
    stored = [exchanges[0].headers, [("X-Crawler-Transfer-Encoding", "chunked"), ("X-Name", "Müller"),
                                     ("Content-Length", "1000")], exchanges[2].headers]
    ours = warcs.warc_records(exchanges)

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for ex, headers in zip(exchanges, stored):
        warc_headers = {"WARC-IP-Address": ex.peer} if ex.peer else {}
        if ex.truncated:
            warc_headers["WARC-Truncated"] = "length"
        response = writer.create_warc_record(
            ex.url, "response", payload=io.BytesIO(ex.body), length=len(ex.body), warc_headers_dict=warc_headers,
            http_headers=StatusAndHeaders(f"{ex.status} {ex.reason}".strip(), headers, protocol="HTTP/1.1"))
        req = writer.create_warc_record(ex.url, "request", payload=io.BytesIO(b""), length=0,
                                        http_headers=StatusAndHeaders(ex.request_line, ex.request_headers,
                                                                      is_http_request=True))
        writer.write_request_response_pair(req, response)

    def members(data: bytes) -> list[bytes]:
        out = []
        while data:
            gz = zlib.decompressobj(zlib.MAX_WBITS + 16)
            out.append(re.sub(rb"<urn:uuid:[0-9a-f-]{36}>", b"<id>",
                              re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", b"<date>", gz.decompress(data))))
            data = gz.unused_data
        return out

    assert members(ours) == members(buf.getvalue()) and len(members(ours)) == 6  # one gzip member per record
    records = list(ArchiveIterator(io.BytesIO(ours), check_digests="raise"))
    for resp, req in zip(records[::2], records[1::2]):
        assert req.rec_headers.get_header("WARC-Concurrent-To") == resp.rec_headers.get_header("WARC-Record-ID")
        assert req.rec_headers.get_header("WARC-Date") == resp.rec_headers.get_header("WARC-Date")
    assert records[2].http_headers.get_header("X-Name") == "M%C3%BCller"  # non-ASCII, percent-encoded as warcio does


def test_private_addresses_refused_without_the_flag(tmp_path):
    with Site() as site:
        site.route("*", "/p", page("private"))
        site.route("site.test", "/to-loopback", Page(status=302, headers={"Location": f"http://{site.address}/p"}))
        urls = [f"http://{site.address}/p", f"http://localhost:{site.port}/p", f"http://[::1]:{site.port}/p",
                "http://169.254.169.254/latest/meta-data/", "http://site.test/to-loopback"]
        item = write_links(tmp_path / "links.parquet", urls)
        # `resolve` names site.test's address, so that one is trusted; everything else is checked after DNS.
        fetch.fetch_links(item, str(tmp_path / "strict"), config(site, host_interval_s=0.0))
        strict = outcomes(tmp_path / "strict")
        assert [strict[u]["outcome"] for u in urls] == ["refused_address"] * 4 + ["refused_address"]
        assert "127.0.0.1" in strict["http://site.test/to-loopback"]["error"]  # the redirect target was refused
        assert {r.host for r in site.requests} == {"site.test"}  # nothing reached the loopback names at all

        loopback = write_links(tmp_path / "loopback.parquet", [urls[0], urls[1], urls[4]])  # no metadata service
        fetch.fetch_links(loopback, str(tmp_path / "allowed"),
                          config(site, host_interval_s=0.0, allow_private_hosts=True))
        allowed = outcomes(tmp_path / "allowed")
        assert allowed[f"http://{site.address}/p"]["outcome"] == "fetched"
        assert allowed[f"http://localhost:{site.port}/p"]["outcome"] == "fetched"
        assert allowed["http://site.test/to-loopback"]["outcome"] == "fetched"


def test_resume_after_kill_fetches_no_page_twice(tmp_path):
    release = threading.Event()
    with Site() as site:
        urls = [f"http://h{h}.test/page{i}" for h in range(3) for i in range(4)]
        for url in urls:
            host, path = url[7:].split("/", 1)
            site.route(host, "/" + path, page(path))
        held = "http://h1.test/page2"
        site.route("h1.test", "/page2", Page(page("page2").body, hold=release))
        item = write_links(tmp_path / "links-00000.parquet", urls)
        warc_dir = tmp_path / "warc"
        # One host at a time: when the held page is asked for, no other request is in flight.
        cfg = config(site, concurrency=1, host_interval_s=0.0, segment_bytes=6_000)
        child = multiprocessing.get_context("spawn").Process(target=fetch.fetch_links,
                                                             args=(item, str(warc_dir), cfg))
        child.start()
        assert wait_until(lambda: any(r.path == "/page2" and r.host == "h1.test" for r in site.requests))
        child.kill()  # SIGKILL: no cleanup runs
        child.join()
        release.set()
        before = {(r.host, r.path) for r in site.served()}
        assert ("h1.test", "/page2") not in before and len([p for p in before if p[1] != "/robots.txt"]) >= 4
        assert not any(p.name.endswith(".warc.gz") and not p.name.startswith(".") for p in warc_dir.iterdir()) \
            or all((warc_dir / p.name.replace(".warc.gz", ".fetch.jsonl")).exists() for p in warc_dir.glob("*.warc.gz"))

        report = fetch.fetch_links(item, str(warc_dir), cfg)
        # Every page was asked for once, the one in flight at the kill included: it is logged, not asked again.
        asked = [(r.host, r.path) for r in site.requests if r.path != "/robots.txt"]
        assert sorted(asked) == sorted((u[7:].split("/", 1)[0], "/" + u[7:].split("/", 1)[1]) for u in urls)
        assert report.counts["fetched"] == 11 and report.counts["interrupted"] == 1 and not report.errors
        assert outcomes(warc_dir)[held]["outcome"] == "interrupted"
        responses = warc_responses(warc_dir)  # every segment reads cleanly to its end
        assert sorted(r["url"] for r in responses) == sorted(u for u in urls if u != held)
        assert len(list(warc_dir.glob("*.warc.gz"))) > 1  # segments rotated at segment_bytes
        assert list(warc_dir.glob(".*")) == []
        again = fetch.fetch_links(item, str(warc_dir), cfg)
        assert again.resumed and again.counts == report.counts
        retried = fetch.fetch_links(item, str(warc_dir), dataclasses.replace(cfg, retry_failed=True))
    assert retried.counts["fetched"] == 12 and "interrupted" not in retried.counts
    assert sorted(r["url"] for r in warc_responses(warc_dir)) == sorted(urls)


def test_robots_wildcards_longest_match_agent_group_and_fractional_delay(tmp_path):
    with Site() as site:
        # w.test has a group for our agent beside `*`. urllib.robotparser read `/*.pdf$` literally and let the first
        # matching line win (Disallow: /docs/ over the longer Allow after it).
        site.route("w.test", "/robots.txt", Page(
            "User-agent: *\nDisallow: /\n\nUser-agent: corpusforge-webtext2\nDisallow: /*.pdf$\n"
            "Disallow: /private*\nDisallow: /docs/\nAllow: /docs/public/\nCrawl-delay: 0.3\n",
            content_type="text/plain"))
        # y.test redirects its robots.txt, and only the `*` group there is ours (another bot's is not).
        site.route("y.test", "/robots.txt", Page(status=301, headers={"Location": "/meta/robots.txt"}))
        site.route("y.test", "/meta/robots.txt", Page("User-agent: otherbot\nAllow: /\n\nUser-agent: *\n"
                                                      "Disallow: /closed\n", content_type="text/plain"))
        # z.test's rules after the first 500 KiB are not read.
        site.route("z.test", "/robots.txt", Page("User-agent: *\nDisallow: /early\n# " + "x" * 600_000
                                                 + "\nDisallow: /late\n", content_type="text/plain"))
        allowed = ["http://w.test/about", "http://w.test/report.pdf?download=1", "http://w.test/report.pdfx",
                   "http://w.test/docs/public/guide", "http://w.test/docs/public/faq", "http://y.test/open",
                   "http://z.test/late"]
        disallowed = ["http://w.test/report.pdf", "http://w.test/files/annual.pdf", "http://w.test/privateer",
                      "http://w.test/private/x", "http://w.test/docs/secret", "http://y.test/closed/x",
                      "http://z.test/early"]
        for url in allowed + disallowed:
            host, path = url[7:].split("/", 1)
            site.route(host, "/" + path, page(path))
        item = write_links(tmp_path / "links-00000.parquet", allowed + disallowed)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:  # server's clock
            report = pool.submit(fetch.fetch_links, item, str(tmp_path / "warc"),
                                 config(site, host_interval_s=0.0)).result()

    got = outcomes(tmp_path / "warc")
    assert {u: got[u]["outcome"] for u in allowed + disallowed} == {
        **{u: "fetched" for u in allowed}, **{u: "robots_disallowed" for u in disallowed}}
    assert report.counts["fetched"] == 7 and report.counts["robots_disallowed"] == 7 and not report.errors
    asked = {(r.host, r.path) for r in site.requests}
    assert not any((u[7:].split("/", 1)[0], "/" + u[7:].split("/", 1)[1]) in asked for u in disallowed)
    assert {("y.test", "/robots.txt"), ("y.test", "/meta/robots.txt")} <= asked  # the redirect was followed
    # Crawl-delay 0.3 is kept as 0.3 s: never less (politeness), and not rounded up to a whole second.
    starts = [r.started for r in site.served("w.test") if r.path != "/robots.txt"]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert len(gaps) == 4 and min(gaps) >= 0.3 * 0.9 and statistics.median(gaps) < 1.0, gaps


def test_retry_failed_refetches_transient_failures_only(tmp_path, dask_client):
    """The CLI on one output: a first run, a plain re-run, and `--retry-failed` twice."""
    release = threading.Event()
    with Site() as site:
        site.route("a.test", "/robots.txt", Page("User-agent: *\nDisallow: /private/\n", content_type="text/plain"))
        site.route("a.test", "/flaky", Page(status=503), page("flaky"))  # 503 the first time, then the page
        site.route("a.test", "/slow", Page(page("slow").body, hold=release), page("slow"))  # times out at first
        site.route("a.test", "/ok", page("ok"))
        site.route("a.test", "/gone", Page(status=410))
        site.route("a.test", "/huge", page("huge " * 2000))
        site.route("b.test", "/robots.txt", Page(status=503),  # unreachable the first time: nothing allowed
                   Page("User-agent: *\nAllow: /\n", content_type="text/plain"))
        site.route("b.test", "/later", page("later"))
        transient = ["http://a.test/flaky", "http://a.test/slow", "http://b.test/later"]
        permanent = ["http://a.test/ok", "http://a.test/gone", "http://a.test/missing", "http://a.test/huge",
                     "http://a.test/private/x", f"http://{site.address}/p"]
        write_links(tmp_path / "links" / "links-00000.parquet", transient + permanent)
        out = tmp_path / "out"

        def run_cli(*flags: str) -> int:
            return cli.main(["webtext2", "fetch", str(tmp_path / "links"), "--output", str(out),
                             "--resolve", f"*.test={site.address}", "--host-interval", "0", "--retries", "0",
                             "--timeout", "1", "--max-bytes", "5000", "--min-lang-score", "0.3",
                             "--scheduler", dask_client.scheduler.address, *flags])

        def hits(url: str) -> int:
            host, path = url[7:].split("/", 1)
            return sum(1 for r in site.requests if (r.host, r.path) == (host, "/" + path))

        def shards() -> dict[str, bytes]:
            return {p.name: p.read_bytes() for p in sorted(out.glob("*.parquet"))}

        assert run_cli() == 0
        first = json.loads((out / "warc" / "_summary.json").read_text())["counts"]
        assert (first["http_503"], first["network_error"], first["robots_unreachable"]) == (1, 1, 1)
        assert first["fetched"] == 1
        assert (first["http_410"], first["http_404"], first["truncated"], first["robots_disallowed"],
                first["refused_address"]) == (1, 1, 1, 1, 1)
        errors = [json.loads(line) for line in (out / "warc" / "_errors.jsonl").read_text().splitlines()]
        assert {e["url"] for e in errors} == {"http://a.test/slow", "http://a.test/huge"}  # the failure is reported
        release.set()
        asked, before = len(site.requests), shards()

        assert run_cli() == 0  # a plain re-run resumes: nothing is asked again
        assert len(site.requests) == asked and shards() == before

        assert run_cli("--retry-failed") == 0
        assert all(shards()[name] == data for name, data in before.items())  # new segments, new shards only
        assert [hits(u) for u in transient] == [2, 2, 1] and hits("http://b.test/robots.txt") == 2
        assert [hits(u) for u in permanent] == [1, 1, 1, 1, 0, 0]  # 410, 404, too large once; disallowed, refused never
        summary = json.loads((out / "warc" / "_summary.json").read_text())["counts"]
        assert summary["fetched"] == 4 and summary["retried"] == 3 and "http_503" not in summary
        assert summary["links"] == 9 and summary["truncated"] == 1 and summary["errors"] == 1
        flaky = [e for e in logged(out / "warc") if e["url"] == "http://a.test/flaky"]
        assert [(e["outcome"], e["round"]) for e in flaky] == [("http_503", 0), ("fetched", 1)]  # appended

        docs = [row for shard in sorted(out.glob("*.parquet")) for row in pq.read_table(shard).to_pylist()]
        urls = [d["url"] for d in docs]
        assert len(urls) == len(set(urls)) and set(transient) | {"http://a.test/ok"} <= set(urls)
        assert next(d for d in docs if d["url"] == "http://a.test/flaky")["text"].startswith("flaky")

        asked, before = len(site.requests), shards()
        assert run_cli("--retry-failed") == 0  # nothing transient is left: nothing is asked
        assert len(site.requests) == asked and shards() == before


def test_interrupted_retry_round_asks_no_url_twice(tmp_path):
    release = threading.Event()
    with Site() as site:
        site.route("k.test", "/one", Page(status=503), Page(status=503), page("one"))
        site.route("k.test", "/two", Page(status=503), Page(page("two").body, hold=release), page("two"))
        site.route("k.test", "/three", Page(status=503), page("three"))
        urls = ["http://k.test/one", "http://k.test/two", "http://k.test/three"]
        item = write_links(tmp_path / "links-00000.parquet", urls)
        warc_dir = tmp_path / "warc"
        cfg = config(site, host_interval_s=0.0, retries=0)
        fetch.fetch_links(item, str(warc_dir), cfg)  # round 0: three 503s
        retry = dataclasses.replace(cfg, retry_failed=True)
        child = multiprocessing.get_context("spawn").Process(target=fetch.fetch_links,
                                                             args=(item, str(warc_dir), retry))
        child.start()  # round 1: /one fails again, then the process is killed while /two is being answered
        assert wait_until(lambda: len([r for r in site.requests if r.path == "/two"]) == 2)
        child.kill()
        child.join()
        release.set()

        fetch.fetch_links(item, str(warc_dir), retry)  # finishes round 1: /two and /three, not /one again
        counts = {u: len([r for r in site.requests if r.path == u[13:]]) for u in urls}
        assert counts == {"http://k.test/one": 2, "http://k.test/two": 3, "http://k.test/three": 2}
        assert {u: (e["outcome"], e["round"]) for u, e in outcomes(warc_dir).items()} == {
            "http://k.test/one": ("http_503", 1), "http://k.test/two": ("fetched", 1),
            "http://k.test/three": ("fetched", 1)}

        report = fetch.fetch_links(item, str(warc_dir), retry)  # a new round: /one once more
        assert len([r for r in site.requests if r.path == "/one"]) == 3
        assert outcomes(warc_dir)["http://k.test/one"]["round"] == 2
        assert report.counts["fetched"] == 3 and report.counts["retried"] == 4 and report.counts["requests"] == 7
    assert sorted(r["url"] for r in warc_responses(warc_dir) if r["status"] == "200") == sorted(urls)


def test_gzip_encoded_robots_txt_is_obeyed(tmp_path):
    rules = gzip.compress(b"User-agent: *\nDisallow: /\n")
    with Site() as site:
        site.route("a.test", "/robots.txt", Page(rules, content_type="text/plain",
                                                 headers={"Content-Encoding": "gzip"}))
        site.route("a.test", "/page", page("page"))
        item = write_links(tmp_path / "links-00000.parquet", ["http://a.test/page"])
        report = fetch.fetch_links(item, str(tmp_path / "warc"), config(site))
    assert report.counts["robots_disallowed"] == 1 and site.served(path="/page") == []


def test_ipv4_inside_ipv6_is_refused():
    guard = fetch.AddressGuard(allow_private=False, overrides={})
    for literal in ("64:ff9b::a9fe:a9fe", "64:ff9b:1::a00:1", "2002:a9fe:a9fe::1", "::7f00:1", "::ffff:10.0.0.1",
                    "2001:0:4136:e378:8000:63bf:3fff:fdd2"):  # Teredo: client 192.0.2.45, documentation space
        with pytest.raises(fetch.Refused):
            asyncio.run(guard.addresses(f"[{literal}]", 80))
    assert asyncio.run(guard.addresses("[2606:4700::1111]", 80))[0]["host"] == "2606:4700::1111"


def test_userinfo_is_never_sent_or_stored(tmp_path):
    with Site() as site:
        site.route("a.test", "/page", page("page"))
        item = write_links(tmp_path / "links-00000.parquet", ["http://user:s3cret@a.test/page"])
        report = fetch.fetch_links(item, str(tmp_path / "warc"), config(site))
    assert report.counts["fetched"] == 1
    assert all("Authorization" not in r.headers for r in site.requests)
    assert [r["url"] for r in warc_responses(tmp_path / "warc")] == ["http://a.test/page"]
    stored = b"".join(gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
                      for p in (tmp_path / "warc").iterdir())
    assert b"s3cret" not in stored and b"user:" not in stored


def test_brotli_bomb_from_a_site_is_cut_when_extracted(tmp_path):
    with Site() as site:
        site.route("a.test", "/bomb", Page(bomb_bytes("br"), headers={"Content-Encoding": "br"}))
        item = write_links(tmp_path / "links-00000.parquet", ["http://a.test/bomb"])
        report = fetch.fetch_links(item, str(tmp_path / "warc"), config(site))
    assert report.counts["fetched"] == 1
    (warc,) = (tmp_path / "warc").glob("*.warc.gz")
    result, rss = run_measured(f"""
        from corpusforge.sources.commoncrawl import CommonCrawlConfig, warc_to_shard
        report = warc_to_shard({str(warc)!r}, {str(tmp_path / 'out')!r}, CommonCrawlConfig(inputs=['x']))
        result = [e["reason"] for e in report.errors]
    """)
    assert rss < 512, rss
    assert result == ["HTML body larger than 5000000 bytes; cut"]


def test_a_segment_is_the_same_bytes_whatever_order_its_links_finished_in(tmp_path):
    """Hosts are fetched concurrently, so links finish in the network's order: a finished segment holds its links'
    records and log lines in link-file order, with record ids that derive from the capture and, with
    `capture_time` (a fixed site, like the sample's), dates that do not depend on when it was fetched."""
    urls = [f"http://h{i}.test/p" for i in range(5)]
    cfg = fetch.FetchConfig(capture_time="2024-04-01T00:00:00Z")

    def exchange(url: str) -> warcs.Exchange:
        body = f"<html><body><p>{url}</p></body></html>".encode()
        return warcs.Exchange(url=url, status=200, reason="OK", request_line="GET /p HTTP/1.1", peer="127.0.0.1",
                              request_headers=[("Host", url[7:].split("/")[0])],
                              headers=[("Content-Type", "text/html")], body=body)

    folders = [tmp_path / "first", tmp_path / "again"]
    for folder, finished in zip(folders, ([0, 1, 2, 3, 4], [3, 0, 4, 2, 1])):
        log = warcs.FetchLog(folder, "links-00000", cfg)
        log.order = {url: i for i, url in enumerate(urls)}
        log.open()
        for i in finished:
            log.begin(urls[i])
        for i in finished:  # h2's page was not HTML: no records
            log.append([] if i == 2 else [exchange(urls[i])],
                       {"url": urls[i], "outcome": "non_html" if i == 2 else "fetched"})
        log.close()
    names = sorted(p.name for p in folders[0].iterdir())
    assert names == ["links-00000-00000.fetch.jsonl", "links-00000-00000.warc.gz"]
    assert [(folders[1] / n).read_bytes() for n in names] == [(folders[0] / n).read_bytes() for n in names]
    assert [r["url"] for r in warc_responses(folders[1])] == [u for u in urls if u != urls[2]]
    assert [e["url"] for e in logged(folders[1])] == urls
    with open(folders[1] / names[1], "rb") as fh:  # each logged offset is where its link's records start
        for entry in logged(folders[1]):
            if entry["warc_offset"] is not None:
                fh.seek(entry["warc_offset"])
                assert next(iter(ArchiveIterator(fh))).rec_headers.get_header("WARC-Target-URI") == entry["url"]
