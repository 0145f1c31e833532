"""WebText2 link collection from Pushshift dumps: URL normalization, the link rules, streaming real-format .zst dumps
(long window) with damaged lines and streams, aggregation and dedup, resume, and the real records in shared data."""

from __future__ import annotations

import io
import json
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest
from shard_io import read_errors
import zstandard

from corpusforge import runtime, schema
from corpusforge.formats import pushshift as dumps
from corpusforge.sources.webtext2 import links, pushshift
from corpusforge.sources.webtext2.urls import LinkFields, LinkFilter, LinkRules, normalize_url, split_url, url_host
from corpusforge.runtime import RunContext
from webtext2_servers import submission


def read_links(links_dir: Path) -> list[dict]:
    files = links.list_link_files(links_dir)
    for f in files:
        schema.check_table(pq.read_table(f), "links")
    return [row for f in files for row in pq.read_table(f).to_pylist()]


@pytest.mark.parametrize("raw, expected", [
    ("HTTP://Example.COM:80/a/b?utm_source=x&id=3&fbclid=y#frag", "http://example.com/a/b?id=3"),
    ("https://example.com:443", "https://example.com/"),
    ("https://example.com:8443/x", "https://example.com:8443/x"),
    ("  <https://user:pw@Example.com./path with space>  ", "https://example.com/path%20with%20space"),
    ("http://example.com/?a=1&amp;b=2&amp;utm_medium=social", "http://example.com/?a=1&b=2"),
    ("https://bücher.example/straße", "https://xn--bcher-kva.example/stra%C3%9Fe"),
    ("/r/science/comments/abc/title/", None),
    ("mailto:someone@example.com", None),
    ("http://example.com:99999/", None),
    (None, None),
])
def test_normalize_url(raw, expected):
    assert normalize_url(raw) == expected
    # The link rules test the host and path split_url returns with the URL, instead of splitting it again.
    assert split_url(raw) == (expected and (expected, url_host(expected), urlsplit(expected).path))


def test_link_rules_say_why_they_drop():
    check = LinkFilter(LinkRules(drop_nsfw=True, since="2020-09-13", until="2021-01-01")).check
    base = dict(score=10, url="https://news.example.org/story")
    assert check(submission(1, **base)) == ("https://news.example.org/story", None)
    assert check(submission(1, **{**base, "score": 2}))[1] == "low_score"
    assert check(submission(1, **{**base, "score": "7"}))[0] is not None  # old dumps store some scores as text
    assert check(submission(1, **base, is_self=True))[1] == "self_post"
    assert check(submission(1, **base, over_18=True))[1] == "nsfw"
    assert check(submission(1, **{**base, "created_utc": 1_500_000_000}))[1] == "out_of_time_range"
    for url in ("https://en.wikipedia.org/wiki/X", "https://i.imgur.com/x", "https://youtu.be/abc",
                "https://old.reddit.com/r/x"):
        assert check(submission(1, **{**base, "url": url}))[1] == "blocked_domain", url
    for url in ("https://news.example.org/chart.PNG", "https://news.example.org/paper.pdf?dl=1"):
        assert check(submission(1, **{**base, "url": url}))[1] == "non_html", url
    assert check(submission(1, **{**base, "url": "javascript:alert(1)"}))[1] == "bad_url"
    # Under "sum" a low score is kept as a candidate: other submissions of the URL may add up.
    assert LinkFilter(LinkRules(score_aggregate="sum")).check(submission(1, **{**base, "score": 1}))[1] is None


def test_dumps_are_long_window_zstd(tmp_path):
    path = tmp_path / "RS_2020-09.zst"
    dumps.write_dump(path, [submission(i, 5, f"https://a.example/{i}") for i in range(3)])
    with pytest.raises(zstandard.ZstdError):  # like the real dumps: a default decompressor refuses the window
        zstandard.ZstdDecompressor().stream_reader(io.BytesIO(path.read_bytes())).read()
    report = runtime.FileReport(input=str(path))
    assert [r["id"] for _, r in dumps.read_submissions(str(path), report)] == ["s00000", "s00001", "s00002"]
    assert report.errors == []


def test_fast_reader_reads_what_the_json_module_reads(tmp_path):
    """The dump reader decodes only the fields the link rules read (msgspec) and falls back to the json module for
    any line msgspec refuses, so its records, drop reasons, candidate rows and errors are those of reading every
    line with json.loads, odd lines included."""
    lines = [json.dumps(submission(i, 5 - i % 3, f"https://site{i % 4}.example/p{i}", selftext="x" * 500,
                                   media={"oembed": {"html": "<iframe>", "list": [1, 2.5, None]}}),
                        ensure_ascii=i % 2 == 0).encode() for i in range(30)]
    lines += [
        json.dumps(submission(40, "12", "https://a.example/texte-für-alle", subreddit="de")).encode(),  # score as text
        b'{"id": "s41", "score": 9, "url": "https://a.example/nan", "is_self": false, "ratio": NaN}',  # json takes NaN
        b'{"id": "s42", "score": 9, "url": "https://a.example/sur", "title": "\\ud800"}',  # a lone surrogate
        b'{"id": "s43", "score": 9, "url": "https://a.example/bad-utf8", "title": "\xff"}',  # not UTF-8
        b"\xef\xbb\xbf" + json.dumps(submission(44, 9, "https://a.example/bom")).encode(),  # a BOM
        b'{"id": "s45", "score": 9, "url": "https://a.example/inf", "ratio": 1e999}',
        b'{"id": "s46", "score": 9, "url": "https://a.example/', b"[1, 2]", b'"text"', b"", b"   \r",
        b'{"id": "s47", "score": 9, "url": "https://a.example/dup", "score": 1}',  # the last key wins
        json.dumps(submission(48, 30, "https://a.example/last-line-without-newline")).encode(),
    ]
    raw = b"\n".join(lines)
    path = tmp_path / "RS_odd.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(raw))

    expected, expected_errors, offset = [], [], 0
    for line in raw.split(b"\n"):
        if line.strip():
            try:
                record = json.loads(line)
            except ValueError as exc:
                expected_errors.append((offset, f"malformed JSON line: {type(exc).__name__}: {exc}"[:300]))
            else:
                if isinstance(record, dict):
                    expected.append((offset, record))
                else:
                    expected_errors.append((offset, f"JSON line is a {type(record).__name__}, not a submission object"))
        offset += len(line) + 1

    for fields in (None, LinkFields):
        report = runtime.FileReport(input=str(path))
        got = list(dumps.read_submissions(str(path), report, fields))
        assert [(e["offset"], e["reason"]) for e in report.errors] == expected_errors
        assert [o for o, _ in got] == [o for o, _ in expected]
        check = LinkFilter(LinkRules()).check
        for (offset, record), (_, full) in zip(got, expected):
            if fields is None:
                assert record == full or record["id"] == "s41"  # NaN != NaN
            assert check(record) == check(full)
            if check(full)[0]:
                url = check(full)[0]
                assert links.candidate_row(record, url, "f", offset) == links.candidate_row(full, url, "f", offset)
    assert len(expected) == 37 and len(expected_errors) == 4


def test_pushshift_links_dedup_aggregate_and_report_damage(tmp_path, dask_client):
    month1 = [
        submission(1, 12, "https://news.example.org/a?utm_source=reddit", subreddit="worldnews"),
        submission(2, 40, "https://NEWS.example.org/a#comments", subreddit="news"),  # same page, higher score
        submission(3, 1, "https://blog.example.net/low"),
        submission(4, 1, "https://blog.example.net/summed"),
        submission(5, 2, "https://blog.example.net/summed"),
        submission(6, 9, "https://www.reddit.com/r/science/comments/s00006/x/", is_self=True),
        submission(7, 50, "https://i.redd.it/cat.png"),
    ]
    path1 = tmp_path / "RS_2020-09.zst"
    dumps.write_dump(path1, month1)
    # Month 2: the real format plus damage: a malformed line, a line that is not an object, and a second zstd
    # frame cut short (a truncated download).
    good = [submission(10, 2, "https://blog.example.net/summed"), submission(11, 5, "https://c.example.com/x"),
            submission(12, 30, "https://news.example.org/a", subreddit="europe")]
    lines = [json.dumps(good[0]), '{"id": "broken", "score": 7, "url": "https://', "[1, 2, 3]",
             json.dumps(good[1]), json.dumps(good[2])]
    compress = zstandard.ZstdCompressor(level=3).compress
    lost = compress(json.dumps(submission(13, 99, "https://lost.example.com/")).encode() + b"\n")
    path2 = tmp_path / "RS_2020-10.zst"
    path2.write_bytes(compress(("\n".join(lines) + "\n").encode()) + lost[:-6])

    out = tmp_path / "links"
    summary = pushshift.collect([str(tmp_path / "RS_*.zst")], out, LinkRules(buckets=4),
                                RunContext(client=dask_client))
    rows = {r["url"]: r for r in read_links(out)}
    assert sorted(rows) == ["https://c.example.com/x", "https://news.example.org/a"]
    best = rows["https://news.example.org/a"]
    assert (best["score"], best["submissions"], best["submission_id"], best["subreddit"]) == (40, 3, "s00002", "news")
    assert best["permalink"] == "https://www.reddit.com/r/news/comments/s00002/post_2/"
    assert best["origin_file"] == str(path1) and best["origin_offset"] > 0
    assert summary.counts["dropped_low_score"] == 4
    assert summary.counts["dropped_self_post"] == 1 and summary.counts["dropped_blocked_domain"] == 1
    errors = read_errors(out)
    reasons = [e["reason"] for e in errors]
    assert any(r.startswith("malformed JSON line") for r in reasons)
    assert any("not a submission object" in r for r in reasons)
    assert any(r.startswith("damaged stream") for r in reasons)
    first_line = len(lines[0]) + 1
    bad = next(e for e in errors if e["reason"].startswith("malformed"))
    assert bad["file"] == str(path2) and bad["offset"] == first_line  # offset in the uncompressed stream
    assert summary.errors == len(errors) == 3
    # Every host's links sit in the one file its hash picks: what the fetcher's politeness relies on.
    for f in links.list_link_files(out):
        bucket = int(Path(f).stem.split("-")[1])
        assert all(links.bucket_of(h, 4) == bucket for h in pq.read_table(f, columns=["host"]).column(0).to_pylist())

    # OpenWebText2's rule: scores of all submissions of a URL add up (1 + 2 + 2 >= 3); the max rule drops it.
    summed = tmp_path / "summed"
    pushshift.collect([str(path1), str(path2)], summed, LinkRules(score_aggregate="sum", buckets=2),
                      RunContext(client=dask_client))
    rows = {r["url"]: r for r in read_links(summed)}
    summed_row = rows["https://blog.example.net/summed"]
    assert (summed_row["score"], summed_row["submissions"], summed_row["submission_score"]) == (5, 3, 2)
    assert summed_row["submission_id"] == "s00005"  # a tie on score goes to the earliest submission
    assert "https://blog.example.net/low" not in rows

    # A re-run resumes every dump and writes the same link table.
    before = {f: Path(f).read_bytes() for f in links.list_link_files(out)}
    again = pushshift.collect([str(tmp_path / "RS_*.zst")], out, LinkRules(buckets=4), RunContext(client=dask_client))
    assert again.resumed_files == 2 and again.counts == summary.counts
    assert [pq.read_table(f).to_pylist() for f in before] == [pq.read_table(f).to_pylist() for f in
                                                               links.list_link_files(out)]


def test_missing_dump_is_a_clear_error(tmp_path, dask_client):
    with pytest.raises(FileNotFoundError, match="no Pushshift dump matches"):
        pushshift.collect([str(tmp_path / "RS_1999-*.zst")], tmp_path / "links", LinkRules(),
                          RunContext(client=dask_client))


@pytest.mark.shared_data
def test_real_pushshift_records(shared_data, tmp_path, dask_client):
    """The real records in shared data, with the counts their README states."""
    api = shared_data / "reddit" / "pushshift-api_submissions_2020-11_2022-12.ndjson.zst"
    cassettes = shared_data / "reddit" / "reddit-api_submissions_praw-cassettes.ndjson.zst"
    summary = pushshift.collect([str(api)], tmp_path / "api", LinkRules(), RunContext(client=dask_client))
    assert summary.counts["submissions"] == 2057
    assert summary.counts["submissions"] - summary.counts["dropped_low_score"] == 13  # "only 13 have score >= 3"
    assert summary.counts["links"] == 13 and summary.errors == 0
    rows = read_links(tmp_path / "api")
    assert {r["subreddit"] for r in rows} == {"science"}
    assert "https://www.cam.ac.uk/stories/london-underground-pollution" in {r["url"] for r in rows}

    summary = pushshift.collect([str(cassettes)], tmp_path / "cassettes", LinkRules(), RunContext(client=dask_client))
    counts = summary.counts
    assert counts["submissions"] == 3417
    assert counts["submissions"] - counts["dropped_low_score"] == 2174  # "2,174 with score >= 3"
    assert 2174 - counts["dropped_self_post"] == 1560  # "1,560 of them link posts"
    kept = 1560 - counts["dropped_blocked_domain"] - counts["dropped_non_html"] - counts["dropped_bad_url"]
    assert counts["candidates"] == kept
    assert counts["dropped_blocked_domain"] > 500  # youtube, imgur, i.redd.it dominate Reddit's links
    rows = read_links(tmp_path / "cassettes")
    assert counts["links"] == len(rows) <= kept
    hosts = {r["host"] for r in rows}
    assert not any(h.endswith(("wikipedia.org", "youtube.com", "imgur.com", "redd.it")) for h in hosts)
    assert all(r["score"] >= 3 for r in rows)
    assert len({r["url"] for r in rows}) == len(rows)
