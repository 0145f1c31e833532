"""`corpusforge dedup` end to end on a real Dask cluster: planted near duplicates in real web text (recall,
precision against the true Jaccard, shared boilerplate not merged), cross-source priority, URL captures, a damaged
shard, determinism, the Gutenberg twins, refusing signatures of other settings, the CLI and the recipe stage, and the
connected components on their own."""

from __future__ import annotations

import dataclasses
import random
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpusforge import cli, recipe, schema
from corpusforge.dedup import DedupConfig, MinHashParams, SignatureMismatch, clusters, minhash, run
from corpusforge.dedup import exchange as ex
from corpusforge.dedup.exact import EDGE_SCHEMA
from corpusforge.dedup.normalize import normalize_text
from corpusforge.runtime import RunContext

from dedup_corpus import doc, planted_corpus, web_documents, write_shards

pytestmark = [pytest.mark.shared_data]


def output_rows(out: Path) -> list[dict]:
    tables = [pq.read_table(p) for p in sorted(out.glob("*.parquet")) if not p.name.startswith("_")]
    for table in tables:
        schema.check_table(table)
    return [r for t in tables for r in t.to_pylist()]


def duplicates(out: Path) -> dict[str, dict]:
    table = pq.read_table(out / "_duplicates.parquet")
    schema.check_table(table, "duplicate")
    return {r["removed_id"]: r for r in table.to_pylist()}


def true_jaccard(a: str, b: str) -> float:
    sa, sb = (set(minhash.shingles(normalize_text(t), MinHashParams())) for t in (a, b))
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


@pytest.fixture(scope="module")
def planted(shared_data, tmp_path_factory, dask_client):
    rows, truth = planted_corpus(shared_data)
    base = tmp_path_factory.mktemp("planted")
    write_shards(base / "commoncrawl", [r for r in rows if r["source"] == "commoncrawl"], per_shard=150)
    write_shards(base / "webtext2", [r for r in rows if r["source"] == "webtext2"])
    summary = run(DedupConfig(inputs=[str(base / "commoncrawl"), str(base / "webtext2")], output=str(base / "out")),
                  RunContext(client=dask_client))
    return rows, truth, base / "out", summary


def test_planted_near_duplicates_recall_precision(planted):
    rows, truth, out, summary = planted
    removed = duplicates(out)
    kept = {r["id"] for r in output_rows(out)}
    assert len(kept) + len(removed) == len(rows) == summary.counts["documents"]
    assert kept.isdisjoint(removed) and all(r["kept_id"] in kept for r in removed.values())
    # recall: every planted group is down to one member, and its copies point into the group
    found = sum(1 for g in truth.groups for i in g if i in removed and removed[i]["kept_id"] in g)
    planted_copies = sum(len(g) - 1 for g in truth.groups)
    assert found / planted_copies >= 0.95, [truth.kinds.get(i) for g in truth.groups for i in g if i not in removed]
    assert all(sum(i in kept for i in g) == 1 for g in truth.groups)
    # precision against the true Jaccard of each removed document and its survivor (the real crawl has its own
    # near duplicates: they count as right when they really are similar)
    text = {r["id"]: r["text"] for r in rows}
    similar = [true_jaccard(text[i], text[r["kept_id"]]) >= 0.6 for i, r in removed.items()]
    assert sum(similar) / len(similar) >= 0.95
    # distinct pages that share a long boilerplate block all survive
    assert set(truth.distinct) <= kept
    # `exact` exactly when the canonical texts are equal (an exact copy of a page whose longer variant survived is
    # a near duplicate of that survivor)
    for i, r in removed.items():
        assert (r["kind"] == "exact") == (normalize_text(text[i]) == normalize_text(text[r["kept_id"]]))
    assert {r["kind"] for r in removed.values()} == {"exact", "near"}
    assert all(0.6 <= r["jaccard"] <= 1.0 for r in removed.values() if r["kind"] == "near")
    assert summary.counts["removed_near"] + summary.counts["removed_exact"] == len(removed)
    assert summary.extra["by_source"]["webtext2"]["documents"] == sum(r["source"] == "webtext2" for r in rows)
    assert summary.counts["largest_cluster"] >= 5 and summary.counts["rejected_pairs"] >= 0


def mixed_corpus(shared_data: Path, folder: Path) -> dict[str, str]:
    """Cross-source copies, captures of one URL and a damaged shard; returns names -> ids."""
    web = [d["text"] for d in web_documents(shared_data) if len(d["text"].split()) > 200][:60]
    t0 = datetime(2020, 1, 1, tzinfo=timezone.utc)
    ids, by_source = {}, {"wikipedia": [], "books": [], "webtext2": [], "commoncrawl": []}

    def add(name, source, text, url=None, when=None):
        row = doc(source, text, url, f"{source}.src", when)
        by_source[source].append(row)
        ids[name] = row["id"]

    for i, text in enumerate(web[:40]):  # filler, all distinct
        add(f"filler{i}", "commoncrawl", text, f"https://filler.example/{i}", t0)
    add("cc-copy", "commoncrawl", web[40] + "\nShare this page", "https://cc.example/a", t0)
    add("wt-copy", "webtext2", web[40] + "\nPosted by admin", "https://wt.example/a", t0)
    add("book-copy", "books", web[40], None)
    add("wiki-copy", "wikipedia", web[40] + "\nFrom Wikipedia, the free encyclopedia", "https://en.wikipedia.org/x")
    add("cc-long", "commoncrawl", web[41] + "\nRead more about this story in our archive", "https://l.example/1", t0)
    add("cc-short", "commoncrawl", web[41], "https://l.example/2", t0)
    add("tie-1", "webtext2", web[42], "https://t.example/1")
    add("tie-2", "webtext2", web[42], "https://t.example/2")
    add("capture-old", "commoncrawl", web[43], "https://www.news.example/story/?utm_source=feed", t0)
    add("capture-new", "commoncrawl", web[44], "<http://news.example/story>", t0 + timedelta(days=30))
    add("capture-mid", "commoncrawl", web[45], "https://news.example/story/", t0 + timedelta(days=3))
    for source, rows in by_source.items():
        write_shards(folder / source, rows, per_shard=25)
    bad = folder / "commoncrawl" / "part-9999.parquet"
    good = (folder / "commoncrawl" / "part-0000.parquet").read_bytes()
    bad.write_bytes(good[: len(good) // 2])  # a truncated upload
    return ids


@pytest.fixture(scope="module")
def mixed(shared_data, tmp_path_factory, dask_client):
    base = tmp_path_factory.mktemp("mixed")
    ids = mixed_corpus(shared_data, base)
    inputs = [str(base / s) for s in ("commoncrawl", "webtext2", "wikipedia", "books", "not-there-yet")]
    summary = run(DedupConfig(inputs=inputs, output=str(base / "out")), RunContext(client=dask_client))
    return base, ids, inputs, summary


def test_cross_source_priority_and_tie_breaks(mixed):
    base, ids, _, summary = mixed
    removed = duplicates(base / "out")
    name = {v: k for k, v in ids.items()}
    for copy in ("cc-copy", "wt-copy", "book-copy"):
        assert name[removed[ids[copy]]["kept_id"]] == "wiki-copy"
    assert removed[ids["book-copy"]]["kept_source"] == "wikipedia"
    assert ids["wiki-copy"] not in removed
    assert name[removed[ids["cc-short"]]["kept_id"]] == "cc-long"  # same source: the longer text
    tie = sorted([ids["tie-1"], ids["tie-2"]])
    assert removed[tie[1]]["kept_id"] == tie[0] and removed[tie[1]]["kind"] == "exact"  # then the smaller id
    assert summary.extra["missing_inputs"] == [base.joinpath("not-there-yet").as_posix()]


def test_same_url_keeps_newest_capture(mixed):
    base, ids, _, _ = mixed
    removed = duplicates(base / "out")
    for old in ("capture-old", "capture-mid"):
        assert removed[ids[old]]["kind"] == "url" and removed[ids[old]]["kept_id"] == ids["capture-new"]
    assert ids["capture-new"] not in removed


def test_damaged_shard_is_reported_and_the_rest_goes_on(mixed):
    base, _, _, summary = mixed
    errors = (base / "out" / "_errors.jsonl").read_text().splitlines()
    assert len(errors) == 1 and "part-9999.parquet" in errors[0] and '"offset": 0' in errors[0]
    assert summary.errors == 1
    assert summary.counts["documents"] == summary.counts["kept"] + sum(
        summary.counts[f"removed_{k}"] for k in ("url", "exact", "near"))
    assert not list((base / "out").glob(".*.tmp")) and not (base / "out" / "_work" / "shuffle").exists()


def test_rerun_resumes_and_gives_identical_output(mixed, dask_client):
    base, _, inputs, first = mixed
    again = run(DedupConfig(inputs=inputs, output=str(base / "out")), RunContext(client=dask_client))
    assert again.resumed_files == first.files
    fresh = run(DedupConfig(inputs=inputs, output=str(base / "fresh")), RunContext(client=dask_client))
    assert fresh.resumed_files == 0
    names = sorted(p.name for p in (base / "out").glob("*.parquet"))
    assert names == sorted(p.name for p in (base / "fresh").glob("*.parquet")) and "_duplicates.parquet" in names
    for name in names:
        assert (base / "out" / name).read_bytes() == (base / "fresh" / name).read_bytes(), name


def test_signatures_of_other_settings_are_refused(mixed, dask_client):
    base, _, inputs, _ = mixed
    with pytest.raises(SignatureMismatch, match="ngram"):
        run(DedupConfig(inputs=inputs, ngram=3, output=str(base / "out")), RunContext(client=dask_client))


@pytest.mark.slow
def test_gutenberg_twins_and_cli(shared_data, tmp_path):
    import gzip

    books = shared_data / "books" / "gutenberg-test-corpus"
    rows = [doc("books", gzip.open(books / f"{n}.txt.gz", "rt", encoding="utf-8", errors="replace").read(), None,
                f"{n}.txt.gz", book_id=n) for n in ("105", "106", "141")]
    write_shards(tmp_path / "books", rows)
    assert cli.main(["dedup", str(tmp_path / "books"), "--output", str(tmp_path / "out"), "--workers", "1"]) == 0
    removed = duplicates(tmp_path / "out")
    assert len(removed) == 1
    (gone,) = removed.values()
    assert {gone["removed_id"], gone["kept_id"]} == {rows[0]["id"], rows[1]["id"]}
    assert gone["kind"] == "near" and gone["jaccard"] > 0.95
    assert rows[2]["id"] in {r["id"] for r in output_rows(tmp_path / "out")}


def test_recipe_stage(tmp_path, dask_client, mixed):
    base, *_ = mixed
    path = tmp_path / "recipe.toml"
    path.write_text(f'[run]\noutput = "{tmp_path}"\n[dedup]\ninputs = ["{base / "books"}", "{tmp_path / "none"}"]\n'
                    f'output = "{tmp_path / "dedup"}"\nbands = 20\nrows = 5\npermutations = 100\n')
    rec = recipe.load(path)
    (stage, config), = rec.stage_configs()
    assert stage.name == "dedup" and config.params().threshold() == pytest.approx((1 / 20) ** (1 / 5))
    ctx = RunContext(client=dask_client, recipe=rec)
    summary = stage.run_function()(config, ctx)
    assert summary.counts["documents"] == 1 and (tmp_path / "dedup" / "_minhash.json").exists()
    # nothing there yet at all: an empty, valid output
    empty = run(DedupConfig(inputs=[str(tmp_path / "none")], output=str(tmp_path / "empty")),
                RunContext(client=dask_client))
    assert empty.counts["documents"] == 0 and duplicates(tmp_path / "empty") == {}
    path.write_text('[dedup]\ninputs = ["x"]\nbands = 20\nrows = 8\n')
    with pytest.raises(recipe.RecipeError, match="bands x rows"):
        recipe.load(path)


def test_connected_components_match_union_find(tmp_path, dask_client):
    rng = random.Random(3)
    nodes = [(f << 32) | r for f in range(3) for r in range(400)]
    edges = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(500)]
    chain = nodes[:300]
    edges += list(zip(chain[::-1][1:], chain[::-1][:-1]))  # a long path, the worst case for label propagation
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for u, v in edges:
        a, b = find(u), find(v)
        parent[max(a, b)] = min(a, b)
    source = ex.Exchange(str(tmp_path / "edges"), 3, EDGE_SCHEMA)
    u, v = np.array([e[0] for e in edges]), np.array([e[1] for e in edges])
    source.write(pa.table({"u": u, "v": v}), ex.hash_partition(u, 3), "test")
    labels, steps = clusters.components(dask_client, source, tmp_path / "cc", parts=4, shards=3)
    got = {}
    for part in range(3):
        table = labels.read(part)
        assert np.all(ex.file_partition(table.column("node").to_numpy()) == part)
        got.update(zip(table.column("node").to_pylist(), table.column("root").to_pylist()))
    want = {n: find(n) for e in edges for n in e if e[0] != e[1]}
    assert got == want and steps < 40
    shutil.rmtree(tmp_path / "cc")


def test_verify_with_true_jaccard(mixed, dask_client):
    base, ids, inputs, first = mixed
    config = DedupConfig(inputs=inputs, verify="shingles")
    summary = run(dataclasses.replace(config, output=str(base / "shingles")), RunContext(client=dask_client))
    # the planted copies are similar by their shingle sets too: the same documents go
    assert duplicates(base / "shingles").keys() == duplicates(base / "out").keys()
    assert summary.counts["verified_pairs"] == first.counts["verified_pairs"]
    # a bar above what the edited copies reach keeps them all; exact copies still go
    strict = run(DedupConfig(inputs=inputs, verify="shingles", threshold=0.995, output=str(base / "strict")),
                 RunContext(client=dask_client))
    removed = duplicates(base / "strict")
    assert not {ids[n] for n in ("cc-copy", "wt-copy", "book-copy", "wiki-copy", "cc-short")} & removed.keys()
    tie = sorted([ids["tie-1"], ids["tie-2"]])
    assert removed[tie[1]]["kind"] == "exact" and strict.counts["rejected_pairs"] > 0
