"""WebText2 link collection through praw, against a loopback server that answers like Reddit's OAuth and listing
endpoints: the score filter, pagination with `after`, a 429 with Retry-After honoured, resume after an interruption,
and credentials that never reach a log, a summary or an output."""

from __future__ import annotations

import logging
import multiprocessing
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from corpusforge.sources.webtext2 import links, reddit
from corpusforge.sources.webtext2.urls import LinkRules
from corpusforge.runtime import RunContext
from webtext2_servers import RedditAPI, submission, wait_until

CLIENT_ID = "corpusforge-test-app"
SECRET = "s3cr3t-Client-Secret-4f9a"
PASSWORD = "pa55-Word-of-Bob-77"


@pytest.fixture
def credentials(monkeypatch, tmp_path):
    """Credentials the way a user gives them to praw: environment variables (no praw.ini in the working dir)."""
    monkeypatch.chdir(tmp_path)
    for key, value in dict(praw_client_id=CLIENT_ID, praw_client_secret=SECRET, praw_username="bob",
                           praw_password=PASSWORD).items():
        monkeypatch.setenv(key, value)


def listing(n: int, sub: str) -> list[dict]:
    """n submissions in listing order; every third one scores below 3, every seventh is a self post."""
    return [submission(i, score=2 if i % 3 == 0 else 10 + i, url=f"https://site{i % 4}.example.org/{sub}/{i}",
                       subreddit=sub, is_self=i % 7 == 0) for i in range(n)]


def all_bytes_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_praw_collection_filters_paginates_and_honours_retry_after(credentials, tmp_path, dask_client, caplog,
                                                                  capfd):
    caplog.set_level(logging.DEBUG)  # praw, prawcore, urllib3 at their most verbose: still no secrets
    subs = {"science": listing(230, "science"), "askhistorians": listing(40, "askhistorians")}
    with RedditAPI(CLIENT_ID, SECRET, subs, username="bob", password=PASSWORD, throttle={1: 1.5}) as api:
        config = reddit.RedditConfig(subreddits=["science", "AskHistorians", "doesnotexist"], limit=None,
                                     oauth_url=api.url, reddit_url=api.url)
        out = tmp_path / "links"
        summary = reddit.collect(config, out, LinkRules(buckets=3), RunContext(client=dask_client))

    calls = api.listing_calls
    science = [c for c in calls if c["path"] == "/r/science/top"]
    # Pagination: 230 submissions in pages of 100, each request naming the last id of the page before.
    assert [c["query"].get("after") for c in science] == [None, "t3_s00099", "t3_s00099", "t3_s00199"]
    assert all(c["query"]["t"] == "all" and c["query"]["limit"] == "100" for c in science)
    # The second request got a 429 with Retry-After: 1.5; the same page was asked again no sooner.
    assert science[2]["time"] - science[1]["time"] >= 1.5
    assert api.token_calls == 1 and all(c["authorization"] == f"bearer {api.token}" for c in calls)

    rows = [r for f in links.list_link_files(out) for r in pq.read_table(f).to_pylist()]
    expected = {s["url"] for sub in subs.values() for s in sub if s["score"] >= 3 and not s["is_self"]}
    assert {r["url"] for r in rows} == expected
    assert all(r["score"] >= 3 and r["origin_file"].startswith("reddit:/r/") for r in rows)
    assert summary.counts["submissions"] == 270
    assert summary.counts["dropped_low_score"] == sum(1 for sub in subs.values() for s in sub if s["score"] < 3)
    # A subreddit that does not exist is reported, and the others are still collected.
    assert summary.errors == 1
    assert "doesnotexist" in (out / "_errors.jsonl").read_text()

    # The credentials and the token never reach the outputs, the summaries or the logs.
    out_text, err_text = capfd.readouterr()
    for secret in (SECRET, PASSWORD, api.token):
        assert secret.encode() not in all_bytes_under(tmp_path)
        assert secret not in caplog.text and secret not in out_text and secret not in err_text


def _collect_pages(config: reddit.RedditConfig, rules: LinkRules, unit_root: str) -> None:
    reddit.Collector(config, rules, unit_root).collect()


def test_praw_collection_resumes_after_interruption(credentials, tmp_path, dask_client):
    subs = {"science": listing(350, "science")}
    out = tmp_path / "links"
    rules = LinkRules(buckets=2)
    # The collection is killed while it waits for the third page.
    with RedditAPI(CLIENT_ID, SECRET, subs, username="bob", password=PASSWORD, hold=2) as api:
        config = reddit.RedditConfig(subreddits=["science"], limit=None, oauth_url=api.url, reddit_url=api.url)
        child = multiprocessing.get_context("spawn").Process(
            target=_collect_pages, args=(config, rules, str(links.candidates_dir(out, rules))))
        child.start()
        assert wait_until(lambda: len(api.listing_calls) == 3)
        child.kill()
        child.join()
        api.release.set()

    with RedditAPI(CLIENT_ID, SECRET, subs, username="bob", password=PASSWORD) as api:
        config = reddit.RedditConfig(subreddits=["science"], limit=None, oauth_url=api.url, reddit_url=api.url)
        summary = reddit.collect(config, out, rules, RunContext(client=dask_client))
    # Only the pages not saved before were asked for: the run went on from the saved `after` token.
    assert [c["query"].get("after") for c in api.listing_calls] == ["t3_s00199", "t3_s00299"]
    assert summary.errors == 0 and summary.counts["submissions"] == 350 and summary.resumed_files == 2
    rows = [r for f in links.list_link_files(out) for r in pq.read_table(f).to_pylist()]
    assert len(rows) == sum(1 for s in subs["science"] if s["score"] >= 3 and not s["is_self"])


def test_missing_credentials_are_a_clear_error(tmp_path, monkeypatch, dask_client):
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.lower().startswith("praw_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no user praw.ini either
    with pytest.raises(reddit.CredentialsMissing, match="praw_client_id"):
        reddit.collect(reddit.RedditConfig(subreddits=["science"]), tmp_path / "links", LinkRules(),
                       RunContext(client=dask_client))
