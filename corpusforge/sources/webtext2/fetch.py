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
literals are checked too).

Output and resume (FetchLog): records are appended to a hidden `.<name>-00000.warc.gz.tmp` and each link's outcome
to a journal beside it, flushed after every link; the journal names the WARC offset its link's records end at. A
segment is renamed to `<name>-00000.warc.gz` (with its log `<name>-00000.fetch.jsonl`) when it reaches
`segment_bytes` or the task ends. Each link is journaled as started before its first request. After an
interruption the next run reads the logs and journal, cuts the WARC back to the last journaled offset and goes on:
a URL with an outcome is not requested again, and a URL that was started without an outcome (in flight when the
run was killed) is logged as `interrupted` rather than requested again, so no run asks for a page twice;
`retry_failed` fetches the interrupted ones (a transient outcome).

Retrying failures (`retry_failed`): every outcome is logged with the number of its round. Round 0 is the first pass
over the links; each run with `retry_failed` opens the next round, in which every URL whose latest outcome is
transient (`is_transient`: network errors, 5xx and 429, an unreachable robots.txt) is requested once more, and its
new outcome is appended. A retry run that is interrupted is finished by the next retry run in the same round, so no
URL is asked twice in one round. Successful outcomes are never retried, so each URL has at most one capture that
extraction makes a document of, and the latest outcome of a URL is the one that counts in the report.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import email.utils
import hashlib
import ipaddress
import json
import os
import socket
import time
import uuid
import zlib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
from protego import Protego

from corpusforge import decompress, runtime
from corpusforge.options import option
from corpusforge.sources.webtext2.urls import normalize_url

# Set `user_agent` to name you: a site owner who sees the crawler should be able to reach whoever runs it.
USER_AGENT = "corpusforge-webtext2/0.1 (research corpus crawler; obeys robots.txt)"
# Content types worth downloading: HTML, and the generic types some servers send HTML as (extraction sniffs them).
FETCHED_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "application/octet-stream", "")
REDIRECTS = (301, 302, 303, 307, 308)
RETRIED = (429, 500, 502, 503, 504, 520, 521, 522, 523, 524)
# zlib's default. On real pages (140 KB of HTML) warcio's level 9 takes 1.6x as long for files 0.6% smaller.
WARC_GZIP_LEVEL = 6
ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309: crawlers must read at least 500 KiB of robots.txt
# Outcomes that mean the page could not be fetched as it should have been; they go to `_errors.jsonl`.
ERROR_OUTCOMES = ("truncated", "redirect_loop", "too_many_redirects", "bad_redirect", "network_error", "failed")
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
    resolve: dict[str, str] = dataclasses.field(default_factory=dict)
    segment_bytes: int = dataclasses.field(default=1_000_000_000, metadata=option(
        "a WARC file is closed past this size"))
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

    def robots_agent(self) -> str:
        """The product token robots.txt rules are matched against."""
        return self.user_agent.split("/", 1)[0].strip()


def parse_target(target: str, where: str = "resolve") -> tuple[str, int]:
    """("address", port) from "address:port" or "[v6 address]:port"; ValueError naming `where` otherwise."""
    host, _, port = target.rpartition(":")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
        return str(address), int(port)
    except ValueError:
        raise ValueError(f"{where}: expected address:port (e.g. 127.0.0.1:8080), got {target!r}") from None


# ----------------------------------------------------------------------------------------------------- addresses
class Refused(Exception):
    """The host resolves to an address the fetcher must not connect to."""


class Unresolvable(Exception):
    """DNS has no address for the host."""


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, which is where a packet to it ends up: IPv4-mapped
    (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), 6to4 (2002:AABB:CCDD::), Teredo's client, NAT64 (64:ff9b::/96
    and the local-use 64:ff9b:1::/48). None for an IPv4 address or a plain IPv6 one."""
    if address.version != 6:
        return None
    if address.ipv4_mapped or address.sixtofour:
        return address.ipv4_mapped or address.sixtofour
    if address.teredo:
        return address.teredo[1]
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in net for net in _NAT64) or (int(address) >> 32 == 0 and int(low) > 1):
        return low
    return None


class AddressGuard:
    """Resolves hosts once per task and refuses non-global addresses; also the resolver aiohttp connects with, so
    the address checked is the address used (a second DNS answer cannot swap in a private one)."""

    def __init__(self, allow_private: bool, overrides: dict[str, str]):
        self.allow_private = allow_private
        self.overrides = {pattern.lower(): parse_target(t) for pattern, t in overrides.items()}
        self._cache: dict[tuple[str, int], list[dict[str, Any]] | Exception] = {}

    def override(self, host: str) -> tuple[str, int] | None:
        host = host.lower()
        if host in self.overrides:
            return self.overrides[host]
        return next((t for p, t in self.overrides.items() if fnmatch(host, p)), None)

    async def addresses(self, host: str, port: int) -> list[dict[str, Any]]:
        """aiohttp resolve results for host:port; raises Refused for a forbidden address, Unresolvable for a host
        DNS does not know."""
        key = (host.lower(), port)
        if key not in self._cache:
            try:
                self._cache[key] = await self._lookup(*key)
            except (Refused, Unresolvable) as exc:
                self._cache[key] = exc
        found = self._cache[key]
        if isinstance(found, Exception):
            raise found
        return found

    async def _lookup(self, host: str, port: int) -> list[dict[str, Any]]:
        forced = self.override(host)
        if forced is not None:
            return [_result(host, forced[0], forced[1])]
        try:
            infos = [(ipaddress.ip_address(host.strip("[]")), port)]
        except ValueError:
            try:
                found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise Unresolvable(f"cannot resolve {host}: {exc}") from None
            infos = [(ipaddress.ip_address(info[4][0].split("%")[0]), port) for info in found]
        results = []
        for address, p in dict.fromkeys(infos):
            forms = [address] + [v4 for v4 in [embedded_ipv4(address)] if v4 is not None]
            if not self.allow_private and any(not a.is_global or a.is_multicast for a in forms):
                raise Refused(f"{host} resolves to {address}, a private, loopback, link-local or reserved address "
                              "(pass --allow-private-hosts to fetch such hosts)")
            results.append(_result(host, str(address), p))
        return results

    # aiohttp.abc.AbstractResolver
    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        try:
            return await self.addresses(host, port)
        except (Refused, Unresolvable) as exc:
            raise OSError(str(exc)) from None

    async def close(self) -> None:
        return None


def _result(hostname: str, address: str, port: int) -> dict[str, Any]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return {"hostname": hostname, "host": address, "port": port, "family": family, "proto": 0,
            "flags": socket.AI_NUMERICHOST}


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


@dataclasses.dataclass
class Exchange:
    """One HTTP request and its response, as fetched."""

    url: str
    status: int
    reason: str
    request_line: str
    request_headers: list[tuple[str, str]]
    headers: list[tuple[str, str]]
    body: bytes = b""
    truncated: bool = False
    peer: str | None = None
    recorded: bool = True

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def content_type(self) -> str:
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()


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


# ------------------------------------------------------------------------------------------------------- the WARCs
def warc_records(exchanges: list[Exchange]) -> bytes:
    """Gzipped WARC response+request records for the exchanges, in order. The stored HTTP headers describe the
    stored body: a de-chunked body loses Transfer-Encoding, and a cut body gets its real Content-Length (the sent
    values are kept as X-Crawler-Transfer-Encoding / X-Crawler-Content-Length, as Common Crawl does)."""
    from warcio.statusandheaders import StatusAndHeaders

    out = []
    for ex in exchanges:
        headers = []
        for name, value in ex.headers:
            lower = name.lower()
            if lower == "transfer-encoding" or (lower == "content-length" and value.strip() != str(len(ex.body))):
                headers.append((f"X-Crawler-{name}", value))
            else:
                headers.append((name, value))
        if ex.truncated or any(k.lower() == "x-crawler-content-length" for k, _ in headers):
            headers.append(("Content-Length", str(len(ex.body))))
        # warcio's header blocks: non-ASCII header values percent-encoded as RFC 8187 says
        response_http = StatusAndHeaders(f"{ex.status} {ex.reason}".strip(), headers,
                                         protocol="HTTP/1.1").to_ascii_bytes()
        request_http = StatusAndHeaders(ex.request_line, ex.request_headers, is_http_request=True).to_ascii_bytes()
        response_id, date = _record_id(), _warc_date()
        out.append(_warc_record([
            *([("WARC-IP-Address", ex.peer)] if ex.peer else []),
            *([("WARC-Truncated", "length")] if ex.truncated else []),
            ("WARC-Type", "response"), ("WARC-Record-ID", response_id), ("WARC-Target-URI", ex.url),
            ("WARC-Date", date), ("WARC-Payload-Digest", _sha1(hashlib.sha1(ex.body)))],
            "application/http; msgtype=response", response_http, ex.body))
        out.append(_warc_record([
            ("WARC-Type", "request"), ("WARC-Record-ID", _record_id()), ("WARC-Target-URI", ex.url),
            ("WARC-Date", date), ("WARC-Payload-Digest", EMPTY_DIGEST), ("WARC-Concurrent-To", response_id)],
            "application/http; msgtype=request", request_http))
    return b"".join(out)


def _warc_record(headers: list[tuple[str, str]], content_type: str, *block: bytes) -> bytes:
    """One WARC/1.0 record in a gzip member of its own, laid out as warcio writes it: `headers`, the block digest,
    Content-Type and Content-Length, then the block (`block`'s parts). Not warcio's writer: it took half of the
    fetch's CPU time (gzip level 9, header lists searched and rebuilt per record, payloads copied through streams);
    a test holds these records to be warcio's, byte for byte."""
    digest = hashlib.sha1()
    for part in block:
        digest.update(part)
    headers = [*headers, ("WARC-Block-Digest", _sha1(digest)), ("Content-Type", content_type),
               ("Content-Length", str(sum(map(len, block))))]
    head = "WARC/1.0\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
    gz = zlib.compressobj(WARC_GZIP_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS + 16)
    return b"".join([gz.compress(head.encode()), *map(gz.compress, block), gz.compress(b"\r\n\r\n"), gz.flush()])


def _sha1(digest: Any) -> str:
    """A WARC digest header value from a fed hashlib.sha1 object: "sha1:" and the digest in base32."""
    return "sha1:" + base64.b32encode(digest.digest()).decode("ascii")


EMPTY_DIGEST = _sha1(hashlib.sha1())  # a request record's payload


def _record_id() -> str:
    return f"<urn:uuid:{uuid.uuid4()}>"


def _warc_date() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # WARC/1.0: UTC, whole seconds


class FetchLog:
    """The WARC segments and outcome logs of one fetch task, appended link by link, resumable (module doc)."""

    def __init__(self, warc_dir: str | Path, name: str, config: FetchConfig):
        self.dir = Path(warc_dir)
        self.name = name
        self.config = config
        self.index = 0
        self.round = 0  # the round new outcomes are logged under (module doc)
        self._warc = self._journal = None

    def segment(self, index: int) -> tuple[Path, Path]:
        stem = f"{self.name}-{index:05d}"
        return self.dir / f"{stem}.warc.gz", self.dir / f"{stem}.fetch.jsonl"

    def _parts(self, index: int) -> tuple[Path, Path]:
        warc, log = self.segment(index)
        return warc.with_name(f".{warc.name}.tmp"), log.with_name(f".{log.name}.tmp")

    def finished(self) -> list[tuple[Path, Path]]:
        """(WARC, log) of every finished segment, in order."""
        out, index = [], 0
        while (seg := self.segment(index))[0].exists():
            out.append(seg)
            index += 1
        return out

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every logged outcome: the finished segments', then the open segment's."""
        for _warc, log in self.finished():
            yield from _read_log(log)
        if self._journal is not None:
            yield from _read_log(self._parts(self.index)[1])

    def open(self) -> list[dict[str, Any]]:
        """Open for appending after whatever an earlier run left; returns the outcomes logged so far, oldest
        first."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.index = len(self.finished())
        warc_final, log_final = self.segment(self.index)
        warc_part, log_part = self._parts(self.index)
        if log_final.exists() and warc_part.exists():  # stopped between the two renames of a finished segment
            os.replace(warc_part, warc_final)
            self.index += 1
            warc_part, log_part = self._parts(self.index)
        kept = list(_read_log(log_part)) if warc_part.exists() and log_part.exists() else []
        if kept:
            with open(warc_part, "r+b") as fh:
                fh.truncate(kept[-1]["end"])  # drop records written after the last journaled link
            runtime.write_text_atomic(log_part, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in kept))
            self._warc, self._journal = open(warc_part, "ab"), open(log_part, "a", encoding="utf-8")
        else:
            self._start()
        entries = list(self.entries())
        finished = {e["url"] for e in entries if "url" in e}
        for entry in entries:  # started, never finished: in flight when the last run stopped
            if "started" in entry and entry["started"] not in finished:
                finished.add(entry["started"])
                self._write_entry({"url": entry["started"], "outcome": "interrupted", "requests": 1,
                                   "round": entry["round"], "end": self._warc.tell(), "warc_offset": None,
                                   "error": "the fetch stopped while this page was in flight"})
        return [e for e in self.entries() if "url" in e]

    def _start(self) -> None:
        """Begin segment `index` with a warcinfo record describing the crawl."""
        warc_part, log_part = self._parts(self.index)
        name = self.segment(self.index)[0].name
        info = {"software": "corpusforge webtext2 fetcher", "isPartOf": "webtext2", "robots": "obey",
                "http-header-user-agent": self.config.user_agent, "format": "WARC File Format 1.0"}
        self._warc = open(warc_part, "wb")
        self._warc.write(_warc_record([
            ("WARC-Type", "warcinfo"), ("WARC-Record-ID", _record_id()), ("WARC-Filename", name),
            ("WARC-Date", _warc_date())], "application/warc-fields",
            "".join(f"{key}: {value}\r\n" for key, value in info.items()).encode()))
        self._warc.flush()
        self._journal = open(log_part, "w", encoding="utf-8")
        self._write_entry({"warcinfo": name, "end": self._warc.tell()})

    def _write_entry(self, entry: dict[str, Any]) -> None:
        self._journal.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
        self._journal.flush()

    def begin(self, url: str) -> None:
        """Journal that `url` is about to be requested; if the run stops before its outcome, the next run logs it
        as `interrupted` instead of requesting it again (`retry_failed` does)."""
        self._write_entry({"started": url, "round": self.round, "end": self._warc.tell()})

    def append(self, exchanges: list[Exchange], outcome: dict[str, Any]) -> None:
        """Write a link's records, then its outcome line (which makes them count); rotate a full segment."""
        data = warc_records(exchanges) if exchanges else b""
        start = self._warc.tell()
        self._warc.write(data)
        self._warc.flush()
        outcome["warc_offset"] = start if data else None
        outcome["targets"] = [e.url for e in exchanges]
        outcome["end"] = self._warc.tell()
        outcome["round"] = self.round
        self._write_entry(outcome)
        if self._warc.tell() >= self.config.segment_bytes:
            self._finish()
            self.index += 1
            self._start()

    def _finish(self) -> None:
        warc_part, log_part = self._parts(self.index)
        warc_final, log_final = self.segment(self.index)
        self._warc.close()
        self._journal.close()
        self._warc = self._journal = None
        os.replace(log_part, log_final)  # log first: a WARC under its final name always has its log
        os.replace(warc_part, warc_final)

    def close(self) -> None:
        """Finish the open segment if it holds any link, else remove it."""
        if self._journal is None:
            return
        warc_part, log_part = self._parts(self.index)
        if sum(1 for e in _read_log(log_part) if "url" in e):
            self._finish()
        else:
            self._warc.close()
            self._journal.close()
            self._warc = self._journal = None
            warc_part.unlink()
            log_part.unlink()

    def report(self, item: str, links: int, resumed: bool) -> runtime.FileReport:
        """The task's report, computed from the logs alone, so a resumed run reports the same counts. Outcomes and
        errors are each URL's latest; `requests` counts every request made, `retried` every outcome replaced by a
        later one."""
        report = runtime.FileReport(input=item, output=str(self.dir), resumed=resumed)
        report.count("links", links)
        latest: dict[str, tuple[Path, dict[str, Any]]] = {}
        for warc, log in self.finished():
            report.bytes_in += warc.stat().st_size
            for entry in _read_log(log):
                if "url" in entry:
                    report.count("requests", entry.get("requests", 0))
                    if entry["url"] in latest:
                        report.count("retried")
                    latest[entry["url"]] = warc, entry
        for warc, entry in latest.values():
            report.count(entry["outcome"])
            if entry["outcome"] in ERROR_OUTCOMES:
                report.errors.append({
                    "file": str(warc) if entry.get("warc_offset") is not None else item,
                    "offset": entry.get("warc_offset"), "stage": "fetch", "url": entry["url"],
                    "reason": entry["outcome"] + (f": {entry['error']}" if entry.get("error") else "")})
                report.count("errors")
        return report


def _read_log(path: Path) -> Iterator[dict[str, Any]]:
    """The complete lines of a log or journal (a line cut by an interruption ends it)."""
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    return
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    return
    except FileNotFoundError:
        return


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
    links = pq.read_table(item, columns=LINK_COLUMNS).to_pylist()
    for link in links:  # a password in a link is never sent, recorded or logged
        link["url"] = without_userinfo(link["url"])
    log = FetchLog(out_dir, runtime.output_name(str(Path(item).with_suffix("")), ""), config)
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
    log = Path(warc).with_name(Path(warc).name.removesuffix(".warc.gz") + ".fetch.jsonl")
    out = {}
    for entry in _read_log(log):
        if entry.get("outcome") in ("fetched", "truncated") and entry.get("final_url"):
            out[entry["final_url"]] = {"reddit_score": entry.get("score"), "subreddit": entry.get("subreddit")}
    return out


def run(links_dir: str | Path, output: str | Path, config: FetchConfig,
        ctx: runtime.RunContext) -> runtime.StageSummary:
    """Fetch every link file of `links_dir` into `output/warc/` on Dask (one task per link file)."""
    from corpusforge.sources.webtext2.links import list_link_files

    return runtime.map_files(fetch_links, list_link_files(links_dir), Path(output) / "warc", config,
                             stage="webtext2 fetch", ctx=ctx, kept_key="fetched")[0]
