"""The polite fetcher: the pages of a link table -> WARC files (request and response records, as warcio writes them).

One Dask task per link file. A link file holds every link of its hosts (links.bucket_of), so one task owns each host
and can be polite to it without talking to other workers: one request at a time per host, at least
`host_interval_s` between request starts (longer when robots.txt asks for a Crawl-delay, fractions of a second
kept), robots.txt obeyed as RFC 9309 and Google read it (protego: `*` and `$` wildcards, the longest matching rule
wins, the most specific user-agent group applies; a missing file allows everything, an unreachable one forbids
everything), a clear User-Agent, timeouts, retries with exponential backoff on 429/5xx and network errors
(Retry-After honoured, host-wide), a bounded number of redirects with loop detection, bodies cut at `max_bytes`
(recorded with `WARC-Truncated: length` and reported), and no connection to a private, loopback, link-local or
otherwise non-global address after DNS resolution unless `allow_private_hosts` (AddressGuard; redirects and IP
literals are checked too; guard.py).

Output and resume (FetchLog, in warcs.py with the WARC records): records are appended to a hidden
`.<name>-00000.warc.gz.tmp` and each link's outcome to a journal beside it, flushed after every link; the journal
names the WARC offset its link's records end at. A segment becomes `<name>-00000.warc.gz` (with its log
`<name>-00000.fetch.jsonl`) when it reaches `segment_bytes` or the task ends, its links' records put in link-file
order on the way (hosts are fetched concurrently, so they finish in the network's order). A record's id derives from
its file, link, round and date, and its date is the capture's (`capture_time` fixes it for a fixed site), so the
same fetch of a fixed site, like the sample's, is the same bytes. Each link is journaled as started before its
first request. After an interruption the next run reads the logs and journal, cuts the WARC back to the last
journaled offset and goes on:
a URL with an outcome is not requested again, and a URL that was started without an outcome (in flight when the
run was killed) is logged as `interrupted` rather than requested again, so no run asks for a page twice;
`retry_failed` fetches the interrupted ones (a transient outcome). On an object store the finished segments are
objects uploaded whole, and the open one lives on the worker's disk until then (warcs.staging_dir).

Retrying failures (`retry_failed`): every outcome is logged with the number of its round. Round 0 is the first pass
over the links; each run with `retry_failed` opens the next round, in which every URL whose latest outcome is
transient (`is_transient`: network errors, 5xx and 429, an unreachable robots.txt) is requested once more, and its
new outcome is appended. A retry run that is interrupted is finished by the next retry run in the same round, so no
URL is asked twice in one round. Successful outcomes are never retried, so each URL has at most one capture that
extraction makes a document of, and the latest outcome of a URL is the one that counts in the report.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
from protego import Protego

from corpusforge import decompress, runtime, storage, tasks
from corpusforge.options import option
from corpusforge.sources.webtext2.guard import AddressGuard, Refused, Unresolvable, parse_target
from corpusforge.sources.webtext2.urls import normalize_url
from corpusforge.sources.webtext2.warcs import Exchange, FetchLog, read_log

# Set `user_agent` to name you: a site owner who sees the crawler should be able to reach whoever runs it.
USER_AGENT = "corpusforge-webtext2/0.1 (research corpus crawler; obeys robots.txt)"
# Content types worth downloading: HTML, and the generic types some servers send HTML as (extraction sniffs them).
FETCHED_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "application/octet-stream", "")
REDIRECTS = (301, 302, 303, 307, 308)
RETRIED = (429, 500, 502, 503, 504, 520, 521, 522, 523, 524)
ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309: crawlers must read at least 500 KiB of robots.txt
# Outcomes a later try may not repeat: they come from the network, the server's load, DNS, or a bug (`failed` is an
# unexpected exception, which an upgrade may fix). Everything else (robots.txt rules, refused addresses, 4xx,
# redirect loops, bodies over `max_bytes`, non-HTML) would come out the same, so `retry_failed` leaves it alone.
TRANSIENT_OUTCOMES = ("network_error", "dns_error", "robots_unreachable", "failed", "http_408", "http_429",
                      "interrupted")


def is_transient(outcome: str) -> bool:
    """True when a re-run with `retry_failed` should request the URL again (TRANSIENT_OUTCOMES and any 5xx)."""
    return outcome in TRANSIENT_OUTCOMES or outcome.startswith("http_5")


@dataclasses.dataclass
class FetchConfig:
    """`[webtext2.fetch]` / `corpusforge webtext2 fetch`: how politely and how far to fetch.

    `resolve` maps host names (exact, or patterns like "*.sample.invalid") to "address:port", like curl --resolve;
    those addresses are trusted as given. Every other address, from DNS, an IP literal or a redirect, must be
    global unless `allow_private_hosts`. `retry_failed`: a re-run also requests again the URLs whose latest outcome
    is transient (module doc), not only the URLs without an outcome.
    """

    user_agent: str = dataclasses.field(default=USER_AGENT, metadata=option("User-Agent header"))
    host_interval_s: float = dataclasses.field(default=1.0, metadata=option(
        "seconds between requests to one host (robots.txt Crawl-delay can raise it)", flag="--host-interval"))
    concurrency: int = dataclasses.field(default=16, metadata=option("hosts fetched at once per task"))
    timeout_s: float = dataclasses.field(default=30.0, metadata=option("seconds per request", flag="--timeout"))
    connect_timeout_s: float = dataclasses.field(default=10.0, metadata=option(
        "seconds to connect", flag="--connect-timeout"))
    max_bytes: int = dataclasses.field(default=2_000_000, metadata=option("cut bodies longer than this"))
    max_redirects: int = dataclasses.field(default=5, metadata=option("redirects followed per URL"))
    retries: int = dataclasses.field(default=3, metadata=option("retries on 429/5xx/network errors"))
    backoff_s: float = dataclasses.field(default=1.0, metadata=option(
        "first wait before a retry, doubled each time", flag="--backoff"))
    max_retry_after_s: float = dataclasses.field(default=120.0, metadata=option(
        "longest Retry-After honoured", flag="--max-retry-after"))
    max_crawl_delay_s: float = dataclasses.field(default=30.0, metadata=option(
        "longest robots.txt Crawl-delay honoured", flag="--max-crawl-delay"))
    allow_private_hosts: bool = dataclasses.field(default=False, metadata=option(
        "also fetch hosts that resolve to private, loopback or link-local addresses (tests)"))
    resolve: dict[str, str] = dataclasses.field(default_factory=dict, metadata=option(
        "connect to ADDR:PORT for HOST (or a pattern like *.example.test), like curl --resolve (repeatable: "
        "HOST=ADDR:PORT)", flag="--resolve"))
    segment_bytes: int = dataclasses.field(default=1_000_000_000, metadata=option(
        "a WARC file is closed past this size"))
    capture_time: str | None = dataclasses.field(default=None, metadata=option(
        "record every capture at this WARC-Date (YYYY-MM-DDTHH:MM:SSZ) instead of when it was fetched: for a fixed "
        "site (the sample's, tests), whose fetch is then the same bytes every time"))
    retry_failed: bool = dataclasses.field(default=False, metadata=option(
        "also fetch again the URLs whose latest outcome was a transient failure (network errors, 5xx, 429, "
        "robots.txt unreachable); their new outcomes are appended to the fetch logs"))

    def validate(self) -> None:
        for key in ("host_interval_s", "backoff_s", "max_retry_after_s", "max_crawl_delay_s"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key}: must not be negative, got {getattr(self, key)}")
        for key in ("concurrency", "timeout_s", "connect_timeout_s", "max_bytes", "segment_bytes"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key}: must be positive, got {getattr(self, key)}")
        if self.max_redirects < 0 or self.retries < 0:
            raise ValueError("max_redirects and retries must not be negative")
        if len(self.user_agent) < 8 or "/" not in self.user_agent:
            raise ValueError(f"user_agent: give a clear product/version token, got {self.user_agent!r}")
        for host, target in self.resolve.items():
            parse_target(target, f"resolve.{host}")
        if self.capture_time is not None and not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", self.capture_time):
            raise ValueError(f"capture_time: expected YYYY-MM-DDTHH:MM:SSZ, got {self.capture_time!r}")

    def robots_agent(self) -> str:
        """The product token robots.txt rules are matched against."""
        return self.user_agent.split("/", 1)[0].strip()


# ---------------------------------------------------------------------------------------------------------- hosts
class Host:
    """Politeness state of one host: one request at a time, request starts at least `interval` apart, and a
    host-wide pause after a 429/5xx."""

    def __init__(self, interval: float):
        self.interval = interval
        self.lock = asyncio.Lock()
        self.next_start = 0.0
        self.robots: Protego | None = None
        self.robots_unreachable = False
        self.robots_lock = asyncio.Lock()

    async def acquire(self) -> None:
        await self.lock.acquire()
        wait = self.next_start - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self.next_start = time.monotonic() + self.interval

    def release(self) -> None:
        self.lock.release()

    def pause(self, seconds: float) -> None:
        self.next_start = max(self.next_start, time.monotonic() + seconds)


class Crawler:
    """Fetch links politely with aiohttp and hand each link's WARC records and outcome to a FetchLog."""

    def __init__(self, config: FetchConfig, log: FetchLog):
        self.config = config
        self.log = log
        self.guard = AddressGuard(config.allow_private_hosts, config.resolve)
        self.hosts: dict[str, Host] = {}

    def host(self, name: str) -> Host:
        if name not in self.hosts:
            self.hosts[name] = Host(self.config.host_interval_s)
        return self.hosts[name]

    async def run(self, links: list[dict[str, Any]]) -> None:
        """Fetch `links` (dicts with url, host and the columns to keep), `concurrency` hosts at a time."""
        by_host: dict[str, list[dict[str, Any]]] = {}
        for link in links:
            by_host.setdefault(link["host"], []).append(link)
        queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
        for group in by_host.values():
            queue.put_nowait(group)
        cfg = self.config
        connector = aiohttp.TCPConnector(resolver=self.guard, use_dns_cache=False, limit=cfg.concurrency * 2)
        timeout = aiohttp.ClientTimeout(total=cfg.timeout_s, sock_connect=cfg.connect_timeout_s)
        headers = {"User-Agent": cfg.user_agent, "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
                   "Accept-Encoding": "gzip, deflate"}  # encodings warcio can decode when extraction reads the WARC
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers, auto_decompress=False,
                                         cookie_jar=aiohttp.DummyCookieJar()) as session:
            self.session = session
            workers = [asyncio.create_task(self._worker(queue)) for _ in range(min(cfg.concurrency, len(by_host)))]
            await asyncio.gather(*workers)

    async def _worker(self, queue: asyncio.Queue) -> None:
        while not queue.empty():
            for link in queue.get_nowait():
                self.log.begin(link["url"])  # journaled first: a page in flight at a kill is not asked again
                records, outcome = await self.fetch_link(link)
                self.log.append(records, outcome)

    async def fetch_link(self, link: dict[str, Any]) -> tuple[list[Exchange], dict[str, Any]]:
        """Follow one link to its page: (exchanges to record, outcome for the log)."""
        outcome: dict[str, Any] = {k: v for k, v in link.items() if k != "host"}
        exchanges: list[Exchange] = []
        requests = [0]
        try:
            result, final, error = await self._follow(link["url"], exchanges, requests, check_robots=True)
        except Exception as exc:  # a bug or an unexpected library error on one page must not stop the others
            result, final, error = "failed", None, f"{type(exc).__name__}: {exc}"
        if result == "truncated":
            error = f"body larger than {self.config.max_bytes:,} bytes; cut (WARC-Truncated: length)"
        outcome.update(outcome=result, requests=requests[0], status=final.status if final else None,
                       final_url=final.url if final else None, error=error[:300] if error else None)
        return [e for e in exchanges if e.recorded], outcome

    async def _follow(self, url: str, exchanges: list[Exchange], requests: list[int], *,
                      check_robots: bool) -> tuple[str, Exchange | None, str | None]:
        """Request `url` and follow its redirects: (outcome, last exchange, error message)."""
        seen: set[str] = set()
        for _hop in range(self.config.max_redirects + 1):
            if url in seen:
                return "redirect_loop", exchanges[-1], f"back to {url}"
            seen.add(url)
            parts = urlsplit(url)
            host = self.host(parts.hostname or "")
            if check_robots:
                verdict = await self._robots_verdict(url, host)
                if verdict:
                    return verdict, None, None
            try:
                addresses = await self.guard.addresses(parts.hostname or "", parts.port or _default_port(parts.scheme))
            except Refused as exc:
                return "refused_address", None, str(exc)
            except Unresolvable as exc:
                return "dns_error", None, str(exc)
            try:
                exchange = await self._request(url, host, requests, peer=addresses[0]["host"])
            except (OSError, asyncio.TimeoutError, aiohttp.ClientError) as exc:
                return "network_error", None, f"{url}: {type(exc).__name__}: {exc}"
            exchanges.append(exchange)
            location = exchange.header("Location")
            if exchange.status in REDIRECTS and location:
                target = normalize_url(urljoin(url, location))
                if target is None:
                    return "bad_redirect", exchange, f"Location {location!r}"
                url = target
                continue
            if exchange.status != 200:
                return f"http_{exchange.status}", exchange, None
            if not exchange.recorded:
                return "non_html", exchange, None
            return ("truncated" if exchange.truncated else "fetched"), exchange, None
        return "too_many_redirects", exchanges[-1], f"more than {self.config.max_redirects} redirects"

    async def _robots_verdict(self, url: str, host: Host) -> str | None:
        """None when robots.txt lets us fetch `url`, else the reason we may not."""
        async with host.robots_lock:
            if host.robots is None:
                host.robots = await self._load_robots(url, host)
                delay = host.robots.crawl_delay(self.config.robots_agent())
                if delay is not None:
                    host.interval = max(host.interval, delay)
        if host.robots_unreachable:
            return "robots_unreachable"
        if host.interval > max(self.config.max_crawl_delay_s, self.config.host_interval_s):
            return "crawl_delay_too_long"
        return None if host.robots.can_fetch(url, self.config.robots_agent()) else "robots_disallowed"

    async def _load_robots(self, url: str, host: Host) -> Protego:
        """The host's robots.txt rules (redirects followed, the first ROBOTS_MAX_BYTES read). A file that is
        "unavailable" (4xx) has no rules; an "unreachable" one (5xx, network error) sets `host.robots_unreachable`."""
        parts = urlsplit(url)
        result, final, _error = await self._follow(f"{parts.scheme}://{parts.netloc}/robots.txt", [], [0],
                                                   check_robots=False)
        if final is not None and 200 <= final.status < 300:
            text = decoded_body(final, ROBOTS_MAX_BYTES)
            if text is not None:
                return Protego.parse(text.decode("utf-8", "replace"))
        if not (final is not None and 400 <= final.status < 500) and result not in ("refused_address", "dns_error"):
            host.robots_unreachable = True  # RFC 9309 "unreachable": assume everything is disallowed
        # No rules: a 4xx, or an address the page's own request fails on with the right reason.
        return Protego.parse("")

    async def _request(self, url: str, host: Host, requests: list[int], peer: str) -> Exchange:
        """GET `url` politely, retrying 429/5xx and network errors with backoff; the last answer wins."""
        cfg = self.config
        attempt = 0
        while True:
            backoff = cfg.backoff_s * 2**attempt
            await host.acquire()
            try:
                requests[0] += 1
                exchange = await self._get(url, peer)
            except (OSError, asyncio.TimeoutError, aiohttp.ClientError):
                if attempt == cfg.retries:
                    raise
                exchange = None
            finally:
                host.release()
            if exchange is not None:
                if exchange.status not in RETRIED or attempt == cfg.retries:
                    return exchange
                backoff = max(backoff, _retry_after(exchange.header("Retry-After")) or 0.0)
                if backoff > cfg.max_retry_after_s:
                    return exchange  # the host asks for a longer pause than we wait for: give up on this URL
            host.pause(backoff)
            attempt += 1

    async def _get(self, url: str, peer: str) -> Exchange:
        """One GET. `peer` is the first address the guard resolved, the one aiohttp connects to unless it fails
        (aiohttp may have released the connection by the time a short body is read, so it cannot be asked)."""
        async with self.session.get(url, allow_redirects=False) as resp:
            info = resp.request_info
            sent = urlsplit(str(info.url))
            path, query = sent.path or "/", sent.query
            exchange = Exchange(
                url=url, status=resp.status, reason=resp.reason or "",
                request_line=f"GET {path}{'?' + query if query else ''} HTTP/1.1",
                request_headers=[("Host", info.headers.get("Host") or urlsplit(url).netloc)]
                + [(k, v) for k, v in info.headers.items() if k.lower() != "host"],
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.raw_headers],
                peer=peer)
            if resp.status == 200 and exchange.content_type() not in FETCHED_TYPES:
                exchange.recorded = False  # not a page: do not download the body
                return exchange
            body = bytearray()
            async for chunk in resp.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) > self.config.max_bytes:
                    exchange.truncated = True
                    del body[self.config.max_bytes:]
                    break
            exchange.body = bytes(body)
            return exchange


def decoded_body(exchange: Exchange, limit: int) -> bytes | None:
    """The first `limit` bytes of a body with its Content-Encoding undone (decompress.decompress_chunks: no more
    than `limit` is ever decompressed), or None for an encoding we cannot read. A body cut short keeps what
    decoded before the cut."""
    encoding = (exchange.header("Content-Encoding") or "").strip().lower()
    if encoding not in decompress.CONTENT_ENCODINGS:
        return None
    codec = decompress.CONTENT_ENCODINGS[encoding]
    if codec is None:
        return exchange.body[:limit]
    out = bytearray()
    try:
        for piece in decompress.decompress_chunks([exchange.body], codec, limit=limit):
            out += piece
    except (decompress.OutputLimit, decompress.DamagedStream):
        pass  # RFC 9309 lets a crawler stop at its limit; a cut body's rules are those read
    return bytes(out)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


# ------------------------------------------------------------------------------------------------------ the task
LINK_COLUMNS = ["url", "host", "score", "subreddit", "submission_id"]


def plan(links: list[dict[str, Any]], logged: list[dict[str, Any]],
         retry_failed: bool) -> tuple[list[dict[str, Any]], int]:
    """The links a run fetches, given the outcomes `logged` so far (oldest first), and the round it logs them
    under. A plain run fetches the links without an outcome. A retry run first finishes an interrupted retry round
    (the links it owed and has no outcome for); otherwise it opens a new round of the links whose latest outcome
    is transient or missing."""
    last = max((e.get("round", 0) for e in logged), default=0)
    latest: dict[str, dict[str, Any]] = {}
    before: dict[str, dict[str, Any]] = {}  # each URL's latest outcome from the rounds before `last`
    for entry in logged:
        latest[entry["url"]] = entry
        if entry.get("round", 0) < last:
            before[entry["url"]] = entry
    if not retry_failed:
        return [link for link in links if link["url"] not in latest], last

    def owed(entry: dict[str, Any] | None) -> bool:
        return entry is None or is_transient(entry["outcome"])

    if last > 0:
        unfinished = [link for link in links if owed(before.get(link["url"]))
                      and latest.get(link["url"], {}).get("round", 0) < last]
        if unfinished:
            return unfinished, last
    return [link for link in links if owed(latest.get(link["url"]))], last + 1


def without_userinfo(url: str) -> str:
    """`url` without a `user:password@` part (the rest unchanged, so the URL still matches its logged outcome)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def fetch_links(item: str, out_dir: str, config: FetchConfig) -> runtime.FileReport:
    """Per-file Dask task: fetch the links of one link file into WARC segments under `out_dir`: those an
    earlier run did not log, and with `retry_failed` those whose latest outcome is transient (`plan`)."""
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    path, fs = storage.arrow_path(item)
    links = pq.read_table(path, filesystem=fs, columns=LINK_COLUMNS).to_pylist()
    for link in links:  # a password in a link is never sent, recorded or logged
        link["url"] = without_userinfo(link["url"])
    log = FetchLog(out_dir, runtime.output_name(item.removesuffix(".parquet"), ""), config)
    log.order = {link["url"]: i for i, link in enumerate(links)}
    todo, log.round = plan(links, log.open(), config.retry_failed)
    try:
        if todo:
            asyncio.run(Crawler(config, log).run(todo))
    finally:
        log.close()
    report = log.report(item, len(links), resumed=not todo)
    report.seconds = time.perf_counter() - t0
    return report


def extra_columns(warc: str) -> dict[str, dict[str, Any]]:
    """WARC-Target-URI -> the document columns WebText2 adds (score, subreddit), from the segment's fetch log."""
    log = str(warc).removesuffix(".warc.gz") + ".fetch.jsonl"
    out = {}
    for entry in read_log(log):
        if entry.get("outcome") in ("fetched", "truncated") and entry.get("final_url"):
            out[entry["final_url"]] = {"reddit_score": entry.get("score"), "subreddit": entry.get("subreddit")}
    return out


def run(links_dir: str | Path, output: str | Path, config: FetchConfig,
        ctx: runtime.RunContext) -> runtime.StageSummary:
    """Fetch every link file of `links_dir` into `output/warc/` on Dask (one task per link file)."""
    from corpusforge.sources.webtext2.links import list_link_files

    return tasks.map_files(fetch_links, list_link_files(links_dir), storage.join(output, "warc"), config,
                             stage="webtext2 fetch", ctx=ctx, kept_key="fetched")[0]
