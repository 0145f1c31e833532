"""The feedback store (SQLite and a throwaway PostgreSQL), the app's HTTP API on a real server on loopback (bad
input, token, concurrency, SIGKILL), scripted labelers, export to Parquet and import of preference files."""

from __future__ import annotations

import concurrent.futures
import json
import secrets
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import requests

from corpusforge import schema
from corpusforge.feedback import exchange, labelers
from corpusforge.feedback.app import ServeConfig
from corpusforge.feedback.store import Conflict, FeedbackError, NotFound, Stale, Store
from corpusforge.errors import UserError
from feedback_servers import postgres, postgres_bin, serve, tiny_run

PROMPTS = ["Tell me about cats.", "Why is the sky blue?", "Name a large river.", "<script>window.pwned=1</script>"]
ANSWERS = ["short", "a longer answer", "the longest answer of all", "mid answer"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("feedback") / "run")


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


@pytest.fixture(scope="module")
def pg_server():
    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (no initdb): the store's PostgreSQL tests need postgresql-15")
    with postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> str:
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "feedback.sqlite")
    import psycopg

    url = request.getfixturevalue("pg_server")
    name = f"t{secrets.token_hex(6)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return url.replace("/postgres?", f"/{name}?")


def offer(store: Store, kind: str = "rank", answers=ANSWERS, labeler: str = "ann") -> dict:
    return store.offer(kind, labeler=labeler, model="run", sampling={"temperature": 1.0, "seed": 0},
                       context=[{"role": "user", "content": "Tell me about cats."}], answers=list(answers))


def ids(shown: dict) -> list[str]:
    return [a["id"] for a in shown["answers"]]


def key() -> str:
    return secrets.token_hex(16)


# ------------------------------------------------------------------------------------------------- the store
def test_a_ranking_is_stored_with_what_was_shown_and_ties(db):
    store = Store(db)
    shown = offer(store)
    a = ids(shown)
    result = store.submit_ranking(shown["offer_id"], [[a[2]], [a[0], a[3]], [a[1]]], key=key(), labeler="ann",
                                  flags={a[1]: ["unusable", "unsafe"]})
    (row,) = list(store.rows("comparison"))
    assert row["id"] == result["id"] and not result["duplicate"]
    assert row["answers"] == ANSWERS and row["ranking"] == [1, 2, 0, 1]
    assert row["unusable"] == [False, True, False, False] and row["unsafe"] == [False, True, False, False]
    assert (row["labeler"], row["model"], row["kind"], row["prompt"]) == ("ann", "run", "rank", "Tell me about cats.")
    assert json.loads(row["sampling"]) == {"temperature": 1.0, "seed": 0}
    assert row["context"] == [{"role": "user", "content": "Tell me about cats."}]
    assert row["shown_at"] <= row["submitted_at"] <= time.time()


def test_a_double_submit_is_stored_once_and_a_repeat_or_reused_key_is_refused(db):
    store = Store(db)
    shown = offer(store)
    a, k = ids(shown), key()
    first = store.submit_ranking(shown["offer_id"], [[x] for x in a], key=k, labeler="ann")
    again = store.submit_ranking(shown["offer_id"], [[x] for x in a], key=k, labeler="ann")
    assert again == {"id": first["id"], "duplicate": True}
    with pytest.raises(Conflict, match="already answered"):  # the same offer ranked again
        store.submit_ranking(shown["offer_id"], [[x] for x in a], key=key(), labeler="ann")
    with pytest.raises(Conflict, match="different submission"):  # the same key, another body
        store.submit_ranking(shown["offer_id"], [[x] for x in reversed(a)], key=k, labeler="ann")
    assert store.counts()["comparisons"] == 1


@pytest.mark.parametrize("make", [
    lambda a: [[x] for x in a[:3]],  # an answer missing
    lambda a: [[x] for x in a] + [[a[0]]],  # one twice
    lambda a: [[x] for x in a[:3]] + [["0" * 16]],  # an answer that was not shown
    lambda a: [a[:2], []],  # an empty group
    lambda a: {"order": a},  # not a list
], ids=["missing", "twice", "foreign", "empty-group", "not-a-list"])
def test_a_ranking_that_is_not_an_order_of_exactly_the_answers_shown_is_refused(db, make):
    store = Store(db)
    shown = offer(store)
    with pytest.raises(FeedbackError, match="ranking") as err:
        store.submit_ranking(shown["offer_id"], make(ids(shown)), key=key(), labeler="ann")
    assert err.value.status == 422
    assert store.counts()["comparisons"] == 0
    # refused cost nothing: the offer can still be answered
    store.submit_ranking(shown["offer_id"], [[x] for x in ids(shown)], key=key(), labeler="ann")


def test_unknown_stale_and_mismatched_offers_are_refused(db):
    store = Store(db, offer_ttl_s=0.05)
    with pytest.raises(NotFound):
        store.submit_ranking("f" * 32, [["a"]], key=key(), labeler="ann")
    write = offer(store, "write", answers=[])
    with pytest.raises(NotFound):  # a write offer is not a ranking's
        store.submit_ranking(write["offer_id"], [], key=key(), labeler="ann")
    shown = offer(store)
    time.sleep(0.1)
    with pytest.raises(Stale) as err:
        store.submit_ranking(shown["offer_id"], [[x] for x in ids(shown)], key=key(), labeler="ann")
    assert err.value.status == 410
    assert store.counts()["comparisons"] == 0


def test_ratings_and_demonstrations(db):
    store = Store(db)
    reply = offer(store, "reply", answers=["Cats purr."])
    store.submit_rating(reply["offer_id"], -1, key=key(), labeler="bob")
    with pytest.raises(FeedbackError):
        store.submit_rating(offer(store, "reply", answers=["x"])["offer_id"], 5, key=key(), labeler="bob")
    write = offer(store, "write", answers=[])
    store.submit_demonstration(write["offer_id"], "Cats are small felines.", key=key(), labeler="bob")
    with pytest.raises(FeedbackError, match="empty"):
        store.submit_demonstration(offer(store, "write", answers=[])["offer_id"], "  ", key=key(), labeler="bob")
    (rating,) = store.rows("rating")
    assert (rating["answer"], rating["rating"], rating["labeler"]) == ("Cats purr.", -1, "bob")
    (demo,) = store.rows("demonstration")
    assert demo["messages"] == [{"role": "user", "content": "Tell me about cats."},
                                {"role": "assistant", "content": "Cats are small felines."}]


def test_concurrent_submissions_and_double_submits_are_each_stored_once(db):
    store = Store(db)
    offers = [offer(store, labeler=f"l{i % 8}") for i in range(40)]
    keys = [key() for _ in offers]

    def submit(i: int) -> str:  # every submission sent twice, as a double click would
        shown = offers[i % len(offers)]
        return store.submit_ranking(shown["offer_id"], [[x] for x in ids(shown)], key=keys[i % len(offers)],
                                    labeler=f"l{i % 8}")["id"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(submit, range(2 * len(offers))))
    assert got[:len(offers)] == got[len(offers):]
    assert store.counts()["comparisons"] == len(offers) == len(set(got))


def test_a_reading_store_pages_through_every_row(db):
    store = Store(db)
    for _ in range(7):
        shown = offer(store)
        store.submit_ranking(shown["offer_id"], [ids(shown)], key=key(), labeler="ann")
    assert len({r["id"] for r in store.rows("comparison", batch=3)}) == 7


# --------------------------------------------------------------------------------------- export and import
def test_export_writes_parquet_by_the_contracts(tmp_path):
    store = Store(tmp_path / "f.sqlite")
    shown = offer(store)
    store.submit_ranking(shown["offer_id"], [[x] for x in ids(shown)], key=key(), labeler="ann")
    store.submit_rating(offer(store, "reply", ["ok"])["offer_id"], 1, key=key(), labeler="ann")
    counts = exchange.export(store, tmp_path / "out")
    assert counts["comparisons"] == counts["ratings"] == 1
    comparisons = pq.read_table(tmp_path / "out" / "comparisons.parquet")
    schema.check_table(comparisons, "comparison")
    assert comparisons.column("ranking").to_pylist() == [[0, 1, 2, 3]]
    schema.check_table(pq.read_table(tmp_path / "out" / "ratings.parquet"), "rating")


def test_trl_preference_lines_are_imported_and_bad_lines_reported(tmp_path):
    path = tmp_path / "prefs.jsonl"
    lines = [json.dumps({"prompt": "2+2?", "chosen": "4", "rejected": "5"}),
             "{not json",
             json.dumps({"prompt": [{"role": "user", "content": "Hi"}],
                         "chosen": [{"role": "assistant", "content": "Hello!"}],
                         "rejected": [{"role": "assistant", "content": "Go away."}]}),
             json.dumps({"prompt": "x", "chosen": "y"}),
             json.dumps({"prompt": [{"role": "robot", "content": "x"}], "chosen": "a", "rejected": "b"})]
    path.write_text("\n".join(lines) + "\n")
    store = Store(tmp_path / "f.sqlite")
    report = exchange.import_preferences(store, path)
    assert report.counts == {"lines": 5, "added": 2}
    assert [e["offset"] for e in report.errors] == [2, 4, 5]
    rows = sorted(store.rows("comparison"), key=lambda r: r["prompt"])
    assert [(r["prompt"], r["answers"], r["ranking"]) for r in rows] == [
        ("2+2?", ["4", "5"], [0, 1]), ("Hi", ["Hello!", "Go away."], [0, 1])]
    assert exchange.import_preferences(store, path).counts["added"] == 0  # a re-import adds nothing


def test_real_hh_pairs_are_imported(shared_data, tmp_path):
    path = shared_data / "chat" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    store = Store(tmp_path / "f.sqlite")
    report = exchange.import_preferences(store, path)
    # as measured: 9 transcripts have two Assistant turns in a row and are reported by line, the rest imported
    assert report.counts == {"lines": 2312, "added": 2303} and store.counts()["comparisons"] == 2303
    assert len(report.errors) == 9 and all("two Assistant turns" in e["reason"] for e in report.errors)
    assert report.errors[0]["offset"] == 668
    row = next(store.rows("comparison"))
    assert row["context"][-1]["role"] == "user" and len(row["answers"]) == 2 and row["ranking"] == [0, 1]
    assert row["answers"][0] != row["answers"][1]


# ------------------------------------------------------------------------------------------- the HTTP API
@pytest.fixture(scope="module")
def server(run, prompts, tmp_path_factory):
    db = tmp_path_factory.mktemp("served") / "feedback.sqlite"
    with serve(run, prompts, str(db), "--max-new-tokens", "12", "--offer-ttl", "30") as s:
        s.db = db
        yield s


def post(server, path: str, body, **kw) -> requests.Response:
    return requests.post(server.url + path, json=body, timeout=60, **kw)


def test_bad_requests_get_clear_4xx_and_store_nothing(server):
    before = Store(server.db).counts()
    shown = post(server, "/api/rank/next", {"labeler": "eve"}).json()
    a = ids(shown)
    good = {"offer_id": shown["offer_id"], "labeler": "eve", "idempotency_key": key(), "ranking": [[x] for x in a]}
    cases = [
        (413, requests.post(server.url + "/api/rank/submit", data=b"{" + b" " * 70_000 + b"}", timeout=30)),
        (400, requests.post(server.url + "/api/rank/submit", data=b"{nope", timeout=30)),
        (422, post(server, "/api/rank/submit", {**good, "ranking": [[x] for x in a[:-1]]})),
        (422, post(server, "/api/rank/submit", {**good, "ranking": [[x] for x in a] + [[a[0]]]})),
        (422, post(server, "/api/rank/submit", {**good, "labeler": ""})),
        (422, post(server, "/api/rank/submit", {**good, "idempotency_key": "k"})),
        (404, post(server, "/api/rank/submit", {**good, "offer_id": "0" * 32})),
        (422, post(server, "/api/chat/candidates", {"labeler": "eve", "messages": [{"role": "user"}]})),
        (422, post(server, "/api/chat/reply", {"labeler": "eve", "messages": [{"role": "assistant",
                                                                             "content": "no user turn"}]})),
    ]
    for want, response in cases:
        assert response.status_code == want, (want, response.text)
        assert response.json()["error"]
    assert Store(server.db).counts() == {**before, "offers": before["offers"] + 1}
    assert post(server, "/api/rank/submit", good).status_code == 201
    assert post(server, "/api/rank/submit", good).status_code == 200  # the double submit: stored once
    assert post(server, "/api/rank/submit", {**good, "idempotency_key": key()}).status_code == 409  # repeated
    assert Store(server.db).counts()["comparisons"] == before["comparisons"] + 1


def test_a_streamed_chat_reply_is_recorded_and_rated(server):
    response = post(server, "/api/chat/reply", {"labeler": "eve", "messages": [{"role": "user", "content": "hi"}]},
                    stream=True)
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.iter_lines()]
    shown = lines[-1]["offer"]
    assert "".join(line["text"] for line in lines[:-1]) == shown["answers"][0]["text"]
    rate = {"offer_id": shown["offer_id"], "labeler": "eve", "rating": 1, "idempotency_key": key()}
    assert post(server, "/api/chat/rate", rate).status_code == 201
    assert post(server, "/api/chat/rate", {**rate, "idempotency_key": key()}).status_code == 409


def test_beyond_loopback_a_token_is_required_and_every_request_without_it_refused_and_stale_offers_410(run, prompts, tmp_path):
    with pytest.raises(UserError, match="--token"):
        ServeConfig(run_dir=str(run), prompts=str(prompts), host="0.0.0.0").validate()
    ServeConfig(run_dir=str(run), prompts=str(prompts), host="::1").validate()
    token = secrets.token_hex(16)
    with serve(run, prompts, str(tmp_path / "f.sqlite"), "--max-new-tokens", "4", "--offer-ttl", "0.5",
               token=token) as s:
        for path in ("/rank", "/static/app.js", "/api/info"):
            assert requests.get(s.url + path, timeout=30).status_code == 401
        assert post(s, "/api/rank/next", {"labeler": "eve"}).status_code == 401
        assert post(s, "/api/rank/next", {"labeler": "eve"},
                    headers={"Authorization": "Bearer " + "x" * 32}).status_code == 401
        assert post(s, "/api/rank/next", {"labeler": "eve"},
                    headers={"Authorization": f"Bearer {token}"}).status_code == 200
        with requests.Session() as browser:  # the link a labeler is given sets a cookie the page then uses
            assert browser.get(f"{s.url}/rank?token={token}", timeout=30).status_code == 200
            assert browser.post(s.url + "/api/write/next", json={"labeler": "eve"}, timeout=30).status_code == 200
        # an offer older than --offer-ttl is stale: 410, nothing stored
        shown = post(s, "/api/rank/next", {"labeler": "eve"}, headers={"Authorization": f"Bearer {token}"}).json()
        time.sleep(0.6)
        response = post(s, "/api/rank/submit", {"offer_id": shown["offer_id"], "labeler": "eve",
                                                "idempotency_key": key(), "ranking": [ids(shown)]},
                        headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 410 and "expired" in response.json()["error"]
    assert Store(tmp_path / "f.sqlite").counts()["offers"] == 3
    assert Store(tmp_path / "f.sqlite").counts()["comparisons"] == 0


def test_eight_concurrent_scripted_labelers_each_submission_stored_once(server):
    before = Store(server.db).counts()["comparisons"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        runs = list(pool.map(lambda i: labelers.label(server.url, rule="shorter", n=3, labeler=f"bot{i}"), range(8)))
    stored = [i for r in runs for i in r.stored]
    assert len(stored) == len(set(stored)) == 24
    rows = {r["id"]: r for r in Store(server.db).rows("comparison")}
    assert len(rows) == before + 24 and set(stored) <= set(rows)
    for i in stored:  # each ranking is the rule's: shorter answers ranked better, equal lengths tied
        lengths, ranks = [len(a.strip()) for a in rows[i]["answers"]], rows[i]["ranking"]
        assert all((ranks[x] < ranks[y]) == (lengths[x] < lengths[y]) for x in range(4) for y in range(4))


def test_sigkill_mid_submission_loses_no_acknowledged_submission(run, prompts, tmp_path):
    db = tmp_path / "f.sqlite"
    acknowledged: list[str] = []
    stop = threading.Event()
    with serve(run, prompts, str(db), "--max-new-tokens", "2") as s:
        def labeler(i: int) -> None:
            while not stop.is_set():
                try:
                    acknowledged.extend(labelers.label(s.url, rule="longer", n=1, labeler=f"k{i}",
                                                       timeout_s=10).stored)
                except (requests.RequestException, UserError):
                    return

        threads = [threading.Thread(target=labeler, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 12 and time.monotonic() < deadline:
            time.sleep(0.02)
        s.process.send_signal(signal.SIGKILL)  # while the labelers are submitting
        s.process.wait()
        stop.set()
        for t in threads:
            t.join()
    assert len(acknowledged) >= 12
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {row[0] for row in conn.execute("SELECT id FROM comparisons")}
        assert set(acknowledged) <= stored
        # no half row: every stored ranking's offer is marked answered, and every answered offer has its ranking
        assert conn.execute("SELECT count(*) FROM offers WHERE answered_at IS NOT NULL").fetchone()[0] == len(stored)


def test_demonstrations_read_as_conversations_from_the_store_and_the_export(tmp_path):
    from corpusforge.trainer.data.chat import read_conversations

    store = Store(tmp_path / "f.sqlite")
    for reply in ("Cats are small felines.", "They purr."):
        store.submit_demonstration(offer(store, "write", answers=[])["offer_id"], reply, key=key(), labeler="ann")
    assert exchange.export(store, tmp_path / "out")["conversations"] == 2
    want = [[{"role": "user", "content": "Tell me about cats."}, {"role": "assistant", "content": reply}]
            for reply in ("Cats are small felines.", "They purr.")]
    for source in (tmp_path / "f.sqlite", tmp_path / "out" / "conversations.parquet"):
        read = list(read_conversations([source]))
        assert [c["messages"] for c in read] == want
        assert read[0]["metadata"]["labeler"] == "ann"


def test_the_cli_imports_labels_and_exports(run, prompts, tmp_path):
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "corpusforge.cli", *args], capture_output=True, text=True,
                              env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parent.parent)})

    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text(json.dumps({"prompt": "2+2?", "chosen": "4", "rejected": "5"}) + "\n{bad\n")
    db = tmp_path / "f.sqlite"
    done = cli("feedback", "import", str(prefs), "--db", str(db))
    assert done.returncode == 0 and "1 new comparisons, 1 errors" in done.stdout and "line 2" in done.stderr
    assert cli("feedback", "import", str(prefs), "--db", str(db), "--fail-on-error").returncode == 1
    with serve(run, prompts, str(db), "--max-new-tokens", "4") as s:
        done = cli("feedback", "label", s.url, "--rule", "mentions", "--n", "2", "--labeler", "cli-bot")
        assert done.returncode == 0 and "2 rankings stored" in done.stdout
    done = cli("feedback", "export", "--db", str(db), "--output", str(tmp_path / "out"))
    assert done.returncode == 0 and "3 comparisons" in done.stdout
    bad = cli("feedback", "export", "--db", "mysql://x/y", "--output", str(tmp_path / "o2"))
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.splitlines()) == 1
