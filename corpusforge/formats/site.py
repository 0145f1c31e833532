"""A site folder: web pages stored as `<site>/<host>/<path>`, with `_redirects.json` ("host/path" -> Location) and
`_content_types.json` (host -> the Content-Type its HTML pages are sent with), and `serve`, which answers for those
hosts on a loopback port. The sample writes one (corpusforge.sample.reddit); the webtext2 fetch serves one
(`sample_site`) and resolves each of its hosts to the server, so the folder, not the code, says what is served.
A site folder is a snapshot: its server says it is `SNAPSHOT` (the Date header), and a fetch of it records its pages
as captured then, so fetching it again gives the same bytes."""

from __future__ import annotations

import contextlib
import email.utils
import json
import mimetypes
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from corpusforge.runtime import write_text_atomic

REDIRECTS = "_redirects.json"
CONTENT_TYPES = "_content_types.json"
SNAPSHOT = datetime(2024, 4, 1, tzinfo=timezone.utc)  # after the sample's Reddit month (March 2024)


def page_file(site_dir: Path, host: str, path: str) -> Path:
    """Where the page for `host` + URL `path` is stored."""
    # Pretty URLs ("/a/b/" or "/a/b") are stored as index files, so the server can tell a page from a folder.
    rel = path.strip("/")
    return site_dir / host / rel if Path(rel).suffix else site_dir / host / rel / "index.html"


def write_meta(site_dir: Path, redirects: dict[str, str], content_types: dict[str, str]) -> None:
    """Write the folder's redirects and per-host HTML content types."""
    for name, table in ((REDIRECTS, redirects), (CONTENT_TYPES, content_types)):
        write_text_atomic(site_dir / name, json.dumps(table, indent=1, sort_keys=True) + "\n")


def hosts(site_dir: str | Path) -> list[str]:
    """The host names the folder has pages for."""
    return sorted(p.name for p in Path(site_dir).iterdir() if p.is_dir())


def _table(root: Path, name: str) -> dict[str, str]:
    return json.loads((root / name).read_text(encoding="utf-8")) if (root / name).exists() else {}


@contextlib.contextmanager
def serve(site_dir: str | Path) -> Iterator[str]:
    """Serve `site_dir/<host>/...` by Host header on an ephemeral loopback port; yields "127.0.0.1:PORT"."""
    root = Path(site_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"site folder {root} not found (the sample's is written by its part \"reddit\")")
    redirects, content_types = _table(root, REDIRECTS), _table(root, CONTENT_TYPES)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "corpusforge-site"
        # headers and body go out in separate writes: with Nagle on, each answer waits ~40 ms for a delayed ACK
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            return None

        def date_time_string(self, timestamp: float | None = None) -> str:
            return email.utils.format_datetime(SNAPSHOT, usegmt=True)

        def do_GET(self) -> None:
            host = (self.headers.get("Host") or "").split(":")[0].lower()
            path = self.path.split("?", 1)[0]
            if f"{host}{path}" in redirects:
                return self._answer(301, b"", "text/html", {"Location": redirects[f"{host}{path}"]})
            file = page_file(root, host, path)
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
    thread = threading.Thread(target=server.serve_forever, name="site", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
