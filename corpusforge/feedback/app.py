"""The feedback web app (Starlette, served by uvicorn): the Rank, Chat and Write pages and the JSON API they and
the scripted labelers use.

Access: it binds 127.0.0.1 unless told otherwise; beyond loopback a token is required, and every request without it
(an `Authorization: Bearer` header, the cookie the page gets from `/?token=...`, or a `token` query) is refused
with 401. Every page, script and style is served by the app itself (no CDN); model output reaches the page only as
JSON and is put there as text (`textContent`), and the Content-Security-Policy allows no inline script.

API (JSON bodies of at most `max_body_bytes`; a bad one is refused with a 4xx and stores nothing):
  POST /api/rank/next        {labeler}                                   -> offer of K answers to the next prompt
  POST /api/rank/submit      {offer_id, ranking, flags, labeler, idempotency_key}
  POST /api/chat/reply       {labeler, messages}                         -> NDJSON stream: {"text"}..., {"offer"}
  POST /api/chat/rate        {offer_id, rating, labeler, idempotency_key}
  POST /api/chat/candidates  {labeler, messages}                         -> offer of K answers in context
  POST /api/write/next       {labeler}                                   -> offer of a prompt to answer
  POST /api/write/submit     {offer_id, reply, labeler, idempotency_key}
A ranking is a best-to-worst list of lists of answer ids (a list of several is a tie); `flags` maps an answer id to
["unusable"] / ["unsafe"].
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import ipaddress
import itertools
import json
import os
import threading
from pathlib import Path
from typing import Any

from corpusforge.errors import UserError
from corpusforge.feedback.answers import RunAnswerer
from corpusforge.feedback.store import FeedbackError, Store, check_messages
from corpusforge.options import option

STATIC = Path(__file__).resolve().parent / "static"
PAGES = ("rank", "chat", "write")
_COOKIE = "corpusforge_token"
_MAX_PROMPT_BYTES = 64 << 10


@dataclasses.dataclass
class ServeConfig:
    """`corpusforge feedback serve` settings."""

    run_dir: str = dataclasses.field(metadata=option("the run whose answers are shown (an SFT run)",
                                                     positional=True))
    prompts: str = dataclasses.field(metadata=option(".txt (one prompt a line) or .jsonl ({prompt} or {messages} a "
                                                     "line)"))
    db: str = dataclasses.field(default="feedback.sqlite", metadata=option("SQLite file or a postgresql:// URL"))
    k: int = dataclasses.field(default=4, metadata=option("answers per prompt to rank (2 to 9)"))
    host: str = dataclasses.field(default="127.0.0.1",
                                  metadata=option("address to bind (beyond loopback needs --token)"))
    port: int = dataclasses.field(default=8000, metadata=option("port to listen on"))
    token: str | None = dataclasses.field(default=None,
                                          metadata=option("the token labelers need (open /?token=TOKEN once)"))
    max_body_bytes: int = dataclasses.field(default=64 << 10, metadata=option("largest request body accepted"))
    seed: int = dataclasses.field(default=0, metadata=option("first sampling seed (each offer takes the next)"))
    # InstructGPT sampled the answers its labelers ranked at T = 1
    temperature: float = dataclasses.field(default=1.0, metadata=option("sampling temperature"))
    max_new_tokens: int = dataclasses.field(default=128, metadata=option("longest answer in tokens"))
    # an offer older than this is stale: its answers may no longer be what is wanted
    offer_ttl_s: float = dataclasses.field(default=6 * 3600, metadata=option("seconds an offer can be answered",
                                                                              flag="--offer-ttl"))

    def validate(self) -> None:
        if not 2 <= self.k <= 9:
            raise UserError(f"--k {self.k}: InstructGPT ranked 4 to 9 answers; give 2 to 9")
        if not is_loopback(self.host) and not self.token:
            raise UserError(f"--host {self.host} is beyond loopback: give --token so only labelers get in")
        if self.token is not None and len(self.token) < 16:
            raise UserError("--token: at least 16 characters")


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_prompts(path: str | os.PathLike) -> list[list[dict[str, str]]]:
    """Prompts as conversations ending with a user turn: a .txt file has one prompt per line; a .jsonl file has
    {"prompt": text} or {"messages": [...]} per line. Bad lines are a UserError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--prompts {path}: no such file")
    prompts = []
    with path.open("rb") as f:
        for line_no, raw in enumerate(iter(lambda: f.readline(_MAX_PROMPT_BYTES + 1), b""), 1):
            if len(raw) > _MAX_PROMPT_BYTES:
                raise UserError(f"{path}:{line_no}: a prompt of more than {_MAX_PROMPT_BYTES:,} bytes")
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            if path.suffix != ".jsonl":
                prompts.append([{"role": "user", "content": text}])
                continue
            try:
                record = json.loads(text)
                messages = record["messages"] if "messages" in record else [
                    {"role": "user", "content": record["prompt"]}]
                prompts.append(check_messages(messages, last_role="user"))
            except (ValueError, KeyError, TypeError) as err:
                raise UserError(f"{path}:{line_no}: {err}") from None
    if not prompts:
        raise UserError(f"--prompts {path}: no prompts in it")
    return prompts


class _TooLarge(FeedbackError):
    status = 413


class _BadJSON(FeedbackError):
    status = 400


def create_app(config: ServeConfig, answerer: RunAnswerer | None = None, store: Store | None = None):
    """The Starlette app for `config` (the answerer and store are made from it unless given)."""
    from starlette.applications import Starlette
    from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
    from starlette.routing import Route

    config.validate()
    if answerer is None:
        from corpusforge.trainer.generate import SamplingConfig

        answerer = RunAnswerer(config.run_dir, SamplingConfig(max_new_tokens=config.max_new_tokens,
                                                              temperature=config.temperature, top_k=None))
    store = store or Store(config.db, offer_ttl_s=config.offer_ttl_s)
    prompts = read_prompts(config.prompts)
    seeds = itertools.count(config.seed)  # each sampling call gets the next seed, stored with its offer
    seed_lock = threading.Lock()

    def next_seed() -> int:
        with seed_lock:
            return next(seeds)

    async def body(request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > config.max_body_bytes):
            raise _TooLarge(f"request body over {config.max_body_bytes:,} bytes")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > config.max_body_bytes:
                raise _TooLarge(f"request body over {config.max_body_bytes:,} bytes")
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise _BadJSON("the body is not JSON") from None
        if not isinstance(value, dict):
            raise _BadJSON("the body must be a JSON object")
        return value

    def labeler_of(data: dict) -> str:
        name = data.get("labeler")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise FeedbackError("labeler: your name (1 to 200 characters)")
        return name.strip()

    def conversation_of(data: dict) -> list[dict[str, str]]:
        return check_messages(data.get("messages"), last_role="user")

    def offer(kind: str, labeler: str, context: list[dict], k: int) -> dict:
        seed = next_seed()
        answers = answerer.sample(context, k, seed) if k else []
        return store.offer(kind, labeler=labeler, model=answerer.model_name, sampling=answerer.settings(seed),
                           context=context, answers=answers)

    def next_prompt(labeler: str, kind: str) -> list[dict]:
        return prompts[store.offers_made(labeler, kind) % len(prompts)]

    async def rank_next(request: Request) -> Response:
        labeler = labeler_of(await body(request))
        return JSONResponse(await run_in_threadpool(
            lambda: offer("rank", labeler, next_prompt(labeler, "rank"), config.k)))

    async def rank_submit(request: Request) -> Response:
        data = await body(request)
        result = await run_in_threadpool(
            store.submit_ranking, data.get("offer_id"), data.get("ranking"), key=data.get("idempotency_key"),
            labeler=labeler_of(data), flags=data.get("flags"))
        return JSONResponse(result, status_code=200 if result["duplicate"] else 201)

    async def chat_candidates(request: Request) -> Response:
        data = await body(request)
        labeler, context = labeler_of(data), conversation_of(data)
        return JSONResponse(await run_in_threadpool(lambda: offer("chat", labeler, context, config.k)))

    async def chat_reply(request: Request) -> Response:
        data = await body(request)
        labeler, context = labeler_of(data), conversation_of(data)
        seed = next_seed()

        def lines():
            pieces = []
            for piece in answerer.stream(context, seed):
                pieces.append(piece)
                yield json.dumps({"text": piece}) + "\n"
            shown = store.offer("reply", labeler=labeler, model=answerer.model_name,
                                sampling=answerer.settings(seed), context=context, answers=["".join(pieces)])
            yield json.dumps({"offer": shown}) + "\n"

        return StreamingResponse(iterate_in_threadpool(lines()), media_type="application/x-ndjson")

    async def chat_rate(request: Request) -> Response:
        data = await body(request)
        result = await run_in_threadpool(store.submit_rating, data.get("offer_id"), data.get("rating"),
                                         key=data.get("idempotency_key"), labeler=labeler_of(data))
        return JSONResponse(result, status_code=200 if result["duplicate"] else 201)

    async def write_next(request: Request) -> Response:
        labeler = labeler_of(await body(request))
        return JSONResponse(await run_in_threadpool(
            lambda: store.offer("write", labeler=labeler, model=answerer.model_name, sampling={},
                                context=next_prompt(labeler, "write"), answers=[])))

    async def write_submit(request: Request) -> Response:
        data = await body(request)
        result = await run_in_threadpool(store.submit_demonstration, data.get("offer_id"), data.get("reply"),
                                         key=data.get("idempotency_key"), labeler=labeler_of(data))
        return JSONResponse(result, status_code=200 if result["duplicate"] else 201)

    async def info(request: Request) -> Response:
        return JSONResponse({"model": answerer.model_name, "k": config.k, "sampling": answerer.settings(-1),
                             "prompts": len(prompts)})

    async def page(request: Request) -> Response:
        name = request.path_params.get("page", "rank")
        if name not in PAGES:
            return JSONResponse({"error": f"no page {name!r}"}, status_code=404)
        return FileResponse(STATIC / f"{name}.html", media_type="text/html; charset=utf-8")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ("app.js", "app.css"):
            return JSONResponse({"error": f"no file {name!r}"}, status_code=404)
        return FileResponse(STATIC / name, media_type="text/javascript" if name.endswith(".js") else "text/css")

    async def home(request: Request) -> Response:
        return RedirectResponse("/rank", status_code=303)

    routes = [Route("/", home), Route("/static/{name}", static), Route("/api/info", info),
              Route("/api/rank/next", rank_next, methods=["POST"]),
              Route("/api/rank/submit", rank_submit, methods=["POST"]),
              Route("/api/chat/reply", chat_reply, methods=["POST"]),
              Route("/api/chat/rate", chat_rate, methods=["POST"]),
              Route("/api/chat/candidates", chat_candidates, methods=["POST"]),
              Route("/api/write/next", write_next, methods=["POST"]),
              Route("/api/write/submit", write_submit, methods=["POST"]),
              Route("/{page}", page)]

    async def refused(request: Request, exc: FeedbackError) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        store.close()

    app = Starlette(routes=routes, exception_handlers={FeedbackError: refused}, lifespan=lifespan)
    app.state.store = store
    return _Guard(app, config.token)


class _Guard:
    """ASGI wrapper: the token check (when one is set) before anything else, and the security headers on every
    response. `/?token=T` on a page sets an HttpOnly cookie, so a labeler opens one link and the page works."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token
        self.state = app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        set_cookie = None
        if self.token is not None:
            given = self._token_of(scope)
            if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
                from starlette.responses import JSONResponse

                response = JSONResponse({"error": "a valid token is required (Authorization: Bearer TOKEN, or "
                                                  "open the link with ?token=TOKEN)"}, status_code=401)
                return await response(scope, receive, self._with_headers(send, None))
            set_cookie = f"{_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
        await self.app(scope, receive, self._with_headers(send, set_cookie))

    @staticmethod
    def _token_of(scope) -> str | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        if auth.startswith("Bearer "):
            return auth[7:]
        from http.cookies import SimpleCookie
        from urllib.parse import parse_qs

        cookie = SimpleCookie(headers.get("cookie", ""))
        if _COOKIE in cookie:
            return cookie[_COOKIE].value
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        return query.get("token", [None])[0]

    @staticmethod
    def _with_headers(send, set_cookie: str | None):
        extra = [(b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; "
                                              b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
                 (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                 (b"cache-control", b"no-store")]
        if set_cookie:
            extra.append((b"set-cookie", set_cookie.encode("latin-1")))

        async def wrapped(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return wrapped


def serve(config: ServeConfig) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    app = create_app(config)
    print(f"feedback: http://{config.host}:{config.port}/rank  (model {config.run_dir}, db {config.db}, "
          f"K={config.k})", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=2)
