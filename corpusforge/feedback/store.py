"""The feedback store: what the model showed (offers) and what labelers submitted (comparisons, ratings,
demonstrations), in SQLite by default or PostgreSQL for a team, through one SQLAlchemy Core code path.

Every answer the app shows is first recorded as an *offer* (its labeler, model run, sampling settings, the
conversation so far and the exact answers, the time). A submission names its offer and an idempotency key and is
stored in one transaction that also marks the offer answered, so:
- a ranking can only order the answers that were shown (they are read back from the offer, never from the client);
- a repeated submission of an answered offer is refused (409), an expired one too (410), an unknown one (404);
- the same request sent twice (a double click, a retry after a lost reply) is stored once: the second gets the first's
  id back; the same key with a different body is refused (409);
- a submission is acknowledged only after its transaction committed (SQLite: WAL, synchronous=FULL), so killing the
  server loses nothing acknowledged and leaves no half row.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa

from corpusforge.errors import UserError

ROLES = ("system", "user", "assistant")
FLAGS = ("unusable", "unsafe")


class FeedbackError(UserError, ValueError):
    """A submission that is refused; `status` is the HTTP status the app answers with."""

    status = 422


class NotFound(FeedbackError):
    status = 404


class Conflict(FeedbackError):
    status = 409


class Stale(FeedbackError):
    status = 410


_meta = sa.MetaData()
_text = sa.Text  # JSON is stored as text: the same on SQLite and PostgreSQL, and exactly what was shown

offers = sa.Table(
    "offers", _meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),  # rank, chat (candidates), reply (one chat reply), write
    sa.Column("labeler", sa.String(200), nullable=False),
    sa.Column("model", _text, nullable=False),
    sa.Column("sampling", _text, nullable=False),
    sa.Column("context", _text, nullable=False),
    sa.Column("answers", _text, nullable=False),
    sa.Column("shown_at", sa.Float, nullable=False),
    sa.Column("answered_at", sa.Float, nullable=True),
)
comparisons = sa.Table(
    "comparisons", _meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("offer_id", sa.String(32), unique=True, nullable=True),
    sa.Column("idempotency_key", sa.String(100), unique=True, nullable=False),
    sa.Column("request_digest", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("prompt", _text, nullable=False),
    sa.Column("context", _text, nullable=False),
    sa.Column("answers", _text, nullable=False),
    sa.Column("ranking", _text, nullable=False),
    sa.Column("unusable", _text, nullable=False),
    sa.Column("unsafe", _text, nullable=False),
    sa.Column("labeler", sa.String(200), nullable=False),
    sa.Column("model", _text, nullable=False),
    sa.Column("sampling", _text, nullable=False),
    sa.Column("shown_at", sa.Float, nullable=True),
    sa.Column("submitted_at", sa.Float, nullable=False),
)
ratings = sa.Table(
    "ratings", _meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("offer_id", sa.String(32), unique=True, nullable=False),
    sa.Column("idempotency_key", sa.String(100), unique=True, nullable=False),
    sa.Column("request_digest", sa.String(64), nullable=False),
    sa.Column("prompt", _text, nullable=False),
    sa.Column("context", _text, nullable=False),
    sa.Column("answer", _text, nullable=False),
    sa.Column("rating", sa.Integer, nullable=False),
    sa.Column("labeler", sa.String(200), nullable=False),
    sa.Column("model", _text, nullable=False),
    sa.Column("sampling", _text, nullable=False),
    sa.Column("shown_at", sa.Float, nullable=False),
    sa.Column("submitted_at", sa.Float, nullable=False),
)
demonstrations = sa.Table(
    "demonstrations", _meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("offer_id", sa.String(32), unique=True, nullable=False),
    sa.Column("idempotency_key", sa.String(100), unique=True, nullable=False),
    sa.Column("request_digest", sa.String(64), nullable=False),
    sa.Column("messages", _text, nullable=False),  # the whole conversation, ending with the written reply
    sa.Column("labeler", sa.String(200), nullable=False),
    sa.Column("model", _text, nullable=False),
    sa.Column("shown_at", sa.Float, nullable=False),
    sa.Column("submitted_at", sa.Float, nullable=False),
)
_TABLES = {"comparison": comparisons, "rating": ratings, "demonstration": demonstrations}


def engine_for(db: str | os.PathLike) -> sa.Engine:
    """A SQLAlchemy engine for `db`: a postgresql:// URL (driven by psycopg 3) or a SQLite file path.

    SQLite runs in WAL mode with synchronous=FULL (a commit is on disk before it is acknowledged) and every
    transaction starts with BEGIN IMMEDIATE, so concurrent writers queue for the lock instead of failing."""
    text = str(db)
    if text.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        url = sa.engine.make_url(text).set(drivername="postgresql+psycopg")
        return sa.create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    if "://" in text:
        raise UserError(f"--db {text!r}: a SQLite file path or a postgresql:// URL")
    path = Path(text)
    if path.parent and not path.parent.exists():
        raise UserError(f"--db {path}: folder {path.parent} does not exist")
    # isolation_level=None: pysqlite's own implicit BEGIN is off; the 'begin' event below issues BEGIN IMMEDIATE
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 60, "isolation_level": None,
                                                                 "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _now() -> float:
    return time.time()


def _new_id() -> str:
    return uuid.uuid4().hex


def digest(obj: Any) -> str:
    """SHA-256 of an object's canonical JSON: equal requests, equal digests."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def check_messages(messages: Any, *, last_role: str | None = None) -> list[dict[str, str]]:
    """`messages` as a clean list of {role, content}; FeedbackError naming what is wrong otherwise."""
    if not isinstance(messages, list):
        raise FeedbackError("messages: a list of {role, content} objects")
    clean = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise FeedbackError(f"messages[{i}]: needs role (one of {', '.join(ROLES)}) and content (text)")
        clean.append({"role": m["role"], "content": m["content"]})
    if last_role is not None and (not clean or clean[-1]["role"] != last_role):
        raise FeedbackError(f"messages: the conversation must end with a {last_role} turn")
    return clean


def ranks_from_groups(groups: Any, answer_ids: list[str]) -> list[int]:
    """Per-answer dense ranks (0 best) from `groups`, a best-to-worst list of lists of answer ids, each inner list a
    tie. Refused unless the groups hold each shown answer exactly once."""
    if not isinstance(groups, list) or not all(isinstance(g, list) and g for g in groups):
        raise FeedbackError("ranking: a best-to-worst list of non-empty lists of answer ids (a list holds ties)")
    flat = [a for g in groups for a in g]
    if sorted(map(str, flat)) != sorted(answer_ids) or len(flat) != len(answer_ids):
        raise FeedbackError(f"ranking: must order exactly the {len(answer_ids)} answers shown, each once; got "
                            f"{len(flat)} ids of which {len(set(map(str, flat)) & set(answer_ids))} were shown")
    rank_of = {a: r for r, g in enumerate(groups) for a in g}
    return [rank_of[a] for a in answer_ids]


def answer_id(offer_id: str, index: int, text: str) -> str:
    """The id the page uses for answer `index` of an offer: tied to the offer and the text, so a ranking made for
    other answers cannot match."""
    return hashlib.sha256(f"{offer_id}\x00{index}\x00{text}".encode()).hexdigest()[:16]


class Store:
    """The feedback database. Thread-safe; one per process (the engine pools connections)."""

    def __init__(self, db: str | os.PathLike, *, offer_ttl_s: float = 6 * 3600):
        self.db = str(db)
        self.engine = engine_for(db)
        self.offer_ttl_s = offer_ttl_s
        _meta.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------------------------------------ offers
    def offer(self, kind: str, *, labeler: str, model: str, sampling: dict, context: list[dict],
              answers: list[str]) -> dict[str, Any]:
        """Record what is about to be shown; returns the offer as the page gets it (with answer ids)."""
        row = {"id": _new_id(), "kind": kind, "labeler": labeler, "model": model,
               "sampling": json.dumps(sampling, sort_keys=True), "context": json.dumps(context, ensure_ascii=False),
               "answers": json.dumps(answers, ensure_ascii=False), "shown_at": _now(), "answered_at": None}
        with self.engine.begin() as c:
            c.execute(offers.insert().values(**row))
        return self._public_offer(row)

    def offers_made(self, labeler: str, kind: str) -> int:
        """How many offers of `kind` this labeler was shown: where their walk through the prompts stands."""
        with self.engine.connect() as c:
            return c.execute(sa.select(sa.func.count()).select_from(offers)
                             .where(offers.c.labeler == labeler, offers.c.kind == kind)).scalar_one()

    @staticmethod
    def _public_offer(row: Any) -> dict[str, Any]:
        row = dict(row._mapping) if hasattr(row, "_mapping") else row
        answers, context = json.loads(row["answers"]), json.loads(row["context"])
        return {"offer_id": row["id"], "kind": row["kind"], "context": context,
                "prompt": next((m["content"] for m in reversed(context) if m["role"] == "user"), ""),
                "answers": [{"id": answer_id(row["id"], i, a), "text": a} for i, a in enumerate(answers)],
                "shown_at": row["shown_at"]}

    # ------------------------------------------------------------------------------------------- submissions
    def submit_ranking(self, offer_id: str, groups: Any, *, key: str, labeler: str,
                       flags: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """Store a ranking of an offer's answers (`groups` as in `ranks_from_groups`; `flags` maps answer id to
        a subset of FLAGS). Returns {"id", "duplicate"}."""
        request = {"offer": offer_id, "groups": groups, "flags": flags or {}, "labeler": labeler}

        def build(offer: dict) -> dict:
            answers = json.loads(offer["answers"])
            ids = [answer_id(offer["id"], i, a) for i, a in enumerate(answers)]
            ranking = ranks_from_groups(groups, ids)
            given = flags or {}
            if not isinstance(given, dict) or set(given) - set(ids) or \
                    any(not isinstance(v, list) or set(v) - set(FLAGS) for v in given.values()):
                raise FeedbackError(f"flags: a map from shown answer ids to a list of {', '.join(FLAGS)}")
            context = json.loads(offer["context"])
            return {"kind": offer["kind"], "prompt": context[-1]["content"], "context": offer["context"],
                    "answers": offer["answers"], "ranking": json.dumps(ranking),
                    "unusable": json.dumps(["unusable" in given.get(i, []) for i in ids]),
                    "unsafe": json.dumps(["unsafe" in given.get(i, []) for i in ids])}

        return self._submit("comparison", ("rank", "chat"), offer_id, key, labeler, request, build)

    def submit_rating(self, offer_id: str, rating: int, *, key: str, labeler: str) -> dict[str, Any]:
        """Store a thumbs up (1) or down (-1) on a chat reply offer."""
        if rating not in (1, -1) or isinstance(rating, bool):
            raise FeedbackError("rating: 1 (thumbs up) or -1 (thumbs down)")
        request = {"offer": offer_id, "rating": rating, "labeler": labeler}

        def build(offer: dict) -> dict:
            context = json.loads(offer["context"])
            return {"prompt": context[-1]["content"], "context": offer["context"],
                    "answer": json.loads(offer["answers"])[0], "rating": rating}

        return self._submit("rating", ("reply",), offer_id, key, labeler, request, build)

    def submit_demonstration(self, offer_id: str, reply: str, *, key: str, labeler: str,
                             max_chars: int = 20_000) -> dict[str, Any]:
        """Store a written reply to a write offer's conversation, as a conversation (conversation.schema.json)."""
        if not isinstance(reply, str) or not reply.strip():
            raise FeedbackError("reply: the demonstration is empty")
        if len(reply) > max_chars:
            raise FeedbackError(f"reply: {len(reply):,} characters; at most {max_chars:,}")
        request = {"offer": offer_id, "reply": reply, "labeler": labeler}

        def build(offer: dict) -> dict:
            messages = json.loads(offer["context"]) + [{"role": "assistant", "content": reply}]
            return {"messages": json.dumps(messages, ensure_ascii=False)}

        return self._submit("demonstration", ("write",), offer_id, key, labeler, request, build)

    def _submit(self, what: str, kinds: tuple[str, ...], offer_id: Any, key: Any, labeler: Any, request: dict,
                build) -> dict[str, Any]:
        """One transaction: check the idempotency key and the offer, build the row from the offer, mark the offer
        answered, insert. A lost race (the same key or offer committed by another request meanwhile) is resolved by
        looking the key up again."""
        if not isinstance(key, str) or not 8 <= len(key) <= 100:
            raise FeedbackError("idempotency_key: a string of 8 to 100 characters, new for each submission")
        if not isinstance(offer_id, str) or not isinstance(labeler, str) or not labeler.strip():
            raise FeedbackError("offer_id and labeler: required strings")
        table, request_digest = _TABLES[what], digest(request)
        try:
            with self.engine.begin() as c:
                done = self._by_key(c, table, key, request_digest)
                if done is not None:
                    return done
                offer = c.execute(sa.select(offers).where(offers.c.id == offer_id)).first()
                if offer is None or offer.kind not in kinds:
                    raise NotFound(f"no {what} offer {offer_id!r}: submit only what this server showed")
                offer = dict(offer._mapping)
                if offer["answered_at"] is not None:
                    raise Conflict(f"offer {offer_id} was already answered: a {what} is stored once per offer")
                if _now() - offer["shown_at"] > self.offer_ttl_s:
                    raise Stale(f"offer {offer_id} expired ({self.offer_ttl_s / 3600:g} h old): load a new one")
                row = {"id": _new_id(), "offer_id": offer_id, "idempotency_key": key,
                       "request_digest": request_digest, "labeler": labeler, "model": offer["model"],
                       "shown_at": offer["shown_at"], "submitted_at": _now(), **build(offer)}
                if what != "demonstration":
                    row["sampling"] = offer["sampling"]
                marked = c.execute(offers.update().where(offers.c.id == offer_id, offers.c.answered_at.is_(None))
                                   .values(answered_at=row["submitted_at"]))
                if marked.rowcount != 1:
                    raise Conflict(f"offer {offer_id} was already answered")
                c.execute(table.insert().values(**row))
                return {"id": row["id"], "duplicate": False}
        except (Conflict, sa.exc.IntegrityError) as err:
            with self.engine.begin() as c:  # the same request committed by a concurrent twin: answer as it did
                done = self._by_key(c, table, key, request_digest)
            if done is not None:
                return done
            if isinstance(err, Conflict):
                raise
            raise Conflict(f"offer {offer_id} was already answered") from None

    @staticmethod
    def _by_key(c: sa.Connection, table: sa.Table, key: str, request_digest: str) -> dict[str, Any] | None:
        found = c.execute(sa.select(table.c.id, table.c.request_digest)
                          .where(table.c.idempotency_key == key)).first()
        if found is None:
            return None
        if found.request_digest != request_digest:
            raise Conflict("idempotency_key was already used for a different submission")
        return {"id": found.id, "duplicate": True}

    # ---------------------------------------------------------------------------------------------- imports
    def add_imported(self, rows: list[dict[str, Any]]) -> int:
        """Insert imported comparisons (dicts with the comparison columns, `id` a stable hash of the record);
        rows whose id is already stored are skipped, so a re-import adds nothing. Returns how many were new."""
        if not rows:
            return 0
        now = _now()
        values = [{"offer_id": None, "idempotency_key": "import:" + r["id"], "request_digest": r["id"],
                   "kind": "import", "shown_at": None, "submitted_at": now, "sampling": "{}",
                   **{k: r[k] for k in ("id", "prompt", "labeler", "model")},
                   **{k: json.dumps(r[k], ensure_ascii=False)
                      for k in ("context", "answers", "ranking", "unusable", "unsafe")}} for r in rows]
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        with self.engine.begin() as c:
            result = c.execute(insert(comparisons).on_conflict_do_nothing(), values)
        return max(result.rowcount, 0)

    # ------------------------------------------------------------------------------------------------- reads
    def counts(self) -> dict[str, int]:
        """Rows per table."""
        with self.engine.connect() as c:
            return {name: c.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                    for name, t in {"offers": offers, **{k + "s": v for k, v in _TABLES.items()}}.items()}

    def rows(self, what: str, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Every stored comparison / rating / demonstration, oldest first, JSON columns decoded, times as epoch
        seconds; read in batches so memory stays bounded."""
        table = _TABLES[what]
        hidden = {"offer_id", "idempotency_key", "request_digest"}
        last = (-1.0, "")
        while True:
            with self.engine.connect() as c:
                page = c.execute(sa.select(table).where(sa.tuple_(table.c.submitted_at, table.c.id) > last)
                                 .order_by(table.c.submitted_at, table.c.id).limit(batch)).all()
            for row in page:
                out = {k: v for k, v in row._mapping.items() if k not in hidden}
                for k in ("context", "answers", "ranking", "unusable", "unsafe", "messages"):
                    if k in out:
                        out[k] = json.loads(out[k])
                yield out
            if len(page) < batch:
                return
            last = (page[-1].submitted_at, page[-1].id)
