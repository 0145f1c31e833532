"""Real HTTP servers on 127.0.0.1 (ephemeral ports) that stand in for websites and for Reddit's API in the WebText2
tests. Each records what it was asked, so a test can check what the client did."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Page:
    """What a site answers for one path: status, headers, body. `hold` blocks the answer until the event is set;
    `drop` closes the connection without answering."""

    def __init__(self, body: bytes | str = b"", status: int = 200, headers: dict[str, str] | None = None,
                 content_type: str = "text/html; charset=utf-8", hold: threading.Event | None = None,
                 drop: bool = False):
        self.body = body.encode() if isinstance(body, str) else body
        self.status = status
        self.headers = {"Content-Type": content_type, **(headers or {})}
        self.hold = hold
        self.drop = drop


class Request:
    def __init__(self, host: str, path: str, headers: dict[str, str], started: float):
        self.host, self.path, self.headers, self.started = host, path, headers, started
        self.completed = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the default listen backlog of 5 drops some parallel connects (retried after 1 s)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # a client that hangs up (a killed fetcher, a cut body) is part of the tests


class _QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, no request log, and Nagle off (headers and body are separate writes: with Nagle each
    answer waits ~40 ms for a delayed ACK)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        return None


class Site:
    """Virtual hosts by Host header: `routes[(host, path)]` is a Page or a list of Pages answered in turn (the last
    one repeats). Unknown paths get 404. Use as a context manager; `address` is "127.0.0.1:PORT"."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Any] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        site = self

        class Handler(_QuietHandler):

            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").split(":")[0].lower()
                req = Request(host, self.path, dict(self.headers), time.monotonic())
                with site.lock:
                    site.requests.append(req)
                    answer = site.routes.get((host, self.path)) or site.routes.get(("*", self.path))
                    if isinstance(answer, list):
                        page = answer.pop(0) if len(answer) > 1 else answer[0]
                    else:
                        page = answer
                if page is None:
                    page = Page(b"not here", status=404, content_type="text/plain")
                if page.hold is not None:
                    page.hold.wait(30)
                if page.drop:
                    self.close_connection = True
                    return
                try:
                    self.send_response(page.status)
                    for k, v in page.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(page.body)))
                    self.end_headers()
                    self.wfile.write(page.body)
                    self.wfile.flush()
                    req.completed = True
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"

    def route(self, host: str, path: str, *pages: Page) -> None:
        self.routes[(host, path)] = list(pages) if len(pages) > 1 else pages[0]

    def served(self, host: str | None = None, path: str | None = None) -> list[Request]:
        """Requests answered completely, optionally for one host and/or path."""
        with self.lock:
            return [r for r in self.requests if r.completed and (host is None or r.host == host)
                    and (path is None or r.path == path)]

    def __enter__(self) -> Site:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def submission(i: int, score: int, url: str, subreddit: str = "science", **extra: Any) -> dict[str, Any]:
    """A Reddit submission object (the fields Pushshift and the API share) for test data."""
    sid = f"s{i:05d}"
    return {"id": sid, "name": f"t3_{sid}", "score": score, "url": url, "subreddit": subreddit, "is_self": False,
            "over_18": False, "created_utc": 1_600_000_000 + i * 60, "title": f"post {i}",
            "permalink": f"/r/{subreddit}/comments/{sid}/post_{i}/", "author": "someone", **extra}


class RedditAPI:
    """Answers like Reddit's OAuth endpoints: POST /api/v1/access_token (HTTP basic auth with the app's client id
    and secret, password or client_credentials grant) and GET /r/{sub}/{listing} with a bearer token, pages of
    `limit` submissions chained by `after`. `throttle` answers 429 with Retry-After to the listing requests whose
    numbers (0-based) it names; listing request number `hold` is not answered until `release` is set."""

    def __init__(self, client_id: str, client_secret: str, submissions: dict[str, list[dict[str, Any]]],
                 username: str | None = None, password: str | None = None, throttle: dict[int, float] | None = None,
                 hold: int | None = None):
        import base64

        self.expected_auth = "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self.username, self.password = username, password
        self.submissions = submissions
        self.throttle = throttle or {}
        self.hold = hold
        self.release = threading.Event()
        self.token = "tok-" + client_secret[::-1]
        self.listing_calls: list[dict[str, Any]] = []
        self.token_calls = 0
        api = self

        class Handler(_QuietHandler):

            def _send(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                if urlsplit(self.path).path != "/api/v1/access_token":
                    return self._send(404, {"error": 404})
                api.token_calls += 1
                if self.headers.get("Authorization") != api.expected_auth:
                    return self._send(401, {"message": "Unauthorized", "error": 401})
                grant = form.get("grant_type", [""])[0]
                if grant == "password" and (form.get("username", [None])[0] != api.username
                                            or form.get("password", [None])[0] != api.password):
                    return self._send(200, {"error": "invalid_grant"})
                self._send(200, {"access_token": api.token, "token_type": "bearer", "expires_in": 86400,
                                 "scope": "*"})

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                segments = parts.path.strip("/").split("/")
                if len(segments) != 3 or segments[0] != "r":
                    return self._send(404, {"message": "Not Found", "error": 404})
                number = len(api.listing_calls)
                api.listing_calls.append({"path": parts.path, "query": query, "time": time.monotonic(),
                                          "authorization": self.headers.get("Authorization")})
                if self.headers.get("Authorization") != f"bearer {api.token}":
                    return self._send(401, {"message": "Unauthorized", "error": 401})
                if number in api.throttle:
                    return self._send(429, {"message": "Too Many Requests", "error": 429},
                                      {"Retry-After": f"{api.throttle[number]:g}"})
                if number == api.hold:
                    api.release.wait(60)
                sub = segments[1].lower()
                items = api.submissions.get(sub)
                if items is None:
                    return self._send(404, {"message": "Not Found", "error": 404})
                limit = int(query.get("limit", 25))
                start = 0
                if query.get("after"):
                    start = next(i for i, s in enumerate(items) if f"t3_{s['id']}" == query["after"]) + 1
                page = items[start:start + limit]
                after = f"t3_{page[-1]['id']}" if start + limit < len(items) and page else None
                self._send(200, {"kind": "Listing", "data": {
                    "after": after, "before": None, "dist": len(page),
                    "children": [{"kind": "t3", "data": s} for s in page]}},
                    {"x-ratelimit-remaining": "99", "x-ratelimit-used": "1", "x-ratelimit-reset": "60"})

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> RedditAPI:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False
