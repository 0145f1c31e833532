"""Object storage in and out: WARCs, dumps, books and document shards read from and shards written to an
S3-compatible server (moto's server mode on loopback, as s3fs's own tests do) by every stage, complete objects only,
a resumable run, credentials kept out of logs and outputs; a missing bucket, a missing credential and a dropped
connection each give one clear line."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import uuid
from pathlib import Path

import pytest
from cc_fixtures import make_inputs

from rich.console import Console

from corpusforge import cli, quality, resume, runtime, storage
from corpusforge.mix import mixer, tokenizer
from corpusforge.quality.classifier import ClassifierConfig

pytest.importorskip("s3fs", reason="the s3 extra (s3fs) is not installed")
moto_server = pytest.importorskip("moto.server", reason="moto[server] (a test extra) is not installed")

SECRET = "corpusforge-test-secret-8c1f"


@pytest.fixture
def s3(monkeypatch):
    """moto's S3 server on 127.0.0.1 with an empty bucket; the standard AWS_* variables point s3fs at it. Yields
    the filesystem and the bucket's name (moto keeps buckets across servers in one process: each test gets its
    own)."""
    import s3fs

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {"AWS_ACCESS_KEY_ID": "corpusforge-test", "AWS_SECRET_ACCESS_KEY": SECRET,
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}",
                       "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"}.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    bucket = f"corpus-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    yield fs, bucket
    s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


def _bytes(fs, folder: str) -> dict[str, bytes]:
    return {p.rsplit("/", 1)[-1]: fs.cat_file(p) for p in sorted(fs.glob(f"{folder}/*.parquet"))}


def test_warcs_in_and_shards_out_of_an_object_store(tmp_path, s3, capsys):
    fs, bucket = s3
    inputs, _ = make_inputs(tmp_path / "in")
    for path in inputs:
        fs.put_file(str(path), f"{bucket}/in/{path.name}")
    recipe = tmp_path / "s3.toml"
    recipe.write_text(f'[run]\noutput = "s3://{bucket}/run"\n[commoncrawl]\ninputs = ["s3://{bucket}/in/*.warc.gz"]\n'
                      f'output = "s3://{bucket}/run/cc"\nlanguages = ["en", "de", "ru", "zh", "nl"]\n')
    # a worker started with the AWS_* environment, as a cluster's workers would be
    with runtime.dask_client(workers=1) as client:
        scheduler = ["--scheduler", client.scheduler.address]
        assert cli.main(["run", str(recipe), *scheduler]) == 0
        remote = _bytes(fs, f"{bucket}/run/cc")
        assert len(remote) == len(inputs)
        assert storage.listing(f"s3://{bucket}/run/cc", "*.parquet") == [
            f"s3://{bucket}/run/cc/{name}" for name in sorted(remote)]
        assert not [p for p in fs.find(f"{bucket}/run") if p.endswith(".tmp")]  # only whole objects published
        assert b'"complete": true' in fs.cat_file(f"{bucket}/run/cc/_stage.json")
        resume.require_complete(f"s3://{bucket}/run/cc")
        # the same inputs written to a local folder give the same bytes
        local = tmp_path / "local"
        assert cli.main(["commoncrawl", f"s3://{bucket}/in/*.warc.gz", "-o", str(local), "--languages", "en", "de",
                         "ru", "zh", "nl", *scheduler]) == 0
        assert remote == {p.name: p.read_bytes() for p in local.glob("*.parquet")}
        # a re-run resumes from the store's objects, and the run's log went up beside them
        capsys.readouterr()
        assert cli.main(["run", str(recipe), *scheduler]) == 0
    assert b'"resumed_files": 5' in fs.cat_file(f"{bucket}/run/cc/_summary.json")
    log = fs.cat_file(f"{bucket}/run/_run.log").decode()
    assert "commoncrawl: 5/5 files" in log and "commoncrawl: finished" in log
    assert not list(Path.cwd().glob("*_run.log"))  # the local copy lives in the temp folder, not where the user is
    everything = b"".join(fs.cat_file(p) for p in fs.find(f"{bucket}/run")) + log.encode()
    assert SECRET.encode() not in everything and b"corpusforge-test" not in everything
    assert SECRET not in capsys.readouterr().err


def test_a_missing_bucket_is_one_line(s3, tmp_path, capsys):
    (tmp_path / "a.warc.gz").write_bytes(b"")
    assert cli.main(["commoncrawl", str(tmp_path / "a.warc.gz"), "-o", "s3://no-such-bucket/cc"]) == 2
    assert capsys.readouterr().err.strip() == ("error: cannot write s3://no-such-bucket/cc/_stage.json: the bucket "
                                               "no-such-bucket does not exist")


def test_a_missing_credential_is_one_line(s3, monkeypatch):
    import s3fs

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    s3fs.S3FileSystem.clear_instance_cache()
    with pytest.raises(storage.StorageError, match=rf"^cannot write s3://{s3[1]}/cc/_stage.json: no credentials"):
        resume.begin_stage(f"s3://{s3[1]}/cc", "commoncrawl")


def test_a_dropped_connection_is_one_line(s3, monkeypatch):
    import s3fs

    listener = socket.create_server(("127.0.0.1", 0))  # accepts, then drops every connection unanswered

    def drop() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=drop, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's own retries; s3fs still retries a few times
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        with pytest.raises(storage.StorageError) as err:
            runtime.write_json_atomic(f"s3://{s3[1]}/cc/_stage.json", {"complete": False})
    finally:
        listener.close()
    message = str(err.value)
    assert message.startswith(f"cannot write s3://{s3[1]}/cc/_stage.json: ") and "\n" not in message
    assert "Connection" in message and SECRET not in message


def _tables(read, paths: list[str]) -> list:
    import pyarrow.parquet as pq

    return [pq.read_table(read(p)).to_pylist() for p in paths]


def test_dedup_and_decontamination_through_an_object_store_do_what_they_do_locally(tmp_path, s3):
    """Dedup's inputs, its exchange files and its outputs all on the store (workers need no shared file system):
    the same surviving rows and the same `_duplicates.parquet` as the run on local folders; then decontamination
    from the store to the store, its evaluation set on the store too, cuts the same passage."""
    fs, bucket = s3
    inputs, _ = make_inputs(tmp_path / "in")
    local = {name: tmp_path / name for name in ("cc", "copy", "dedup")}
    with runtime.dask_client(workers=1) as client:
        scheduler = ["--scheduler", client.scheduler.address]
        assert cli.main(["commoncrawl", *map(str, inputs), "-o", str(local["cc"]), "--languages", "en", "de", "ru",
                         "zh", "nl", *scheduler]) == 0
        shards = sorted(local["cc"].glob("*.parquet"))
        local["copy"].mkdir()
        for path in shards:  # a second capture of every document: each one is an exact duplicate
            (local["copy"] / f"copy-{path.name}").write_bytes(path.read_bytes())
            fs.put_file(str(path), f"{bucket}/cc/{path.name}")
            fs.put_file(str(path), f"{bucket}/copy/copy-{path.name}")
        assert cli.main(["dedup", str(local["cc"]), str(local["copy"]), "-o", str(local["dedup"]), *scheduler]) == 0
        assert cli.main(["dedup", f"s3://{bucket}/cc", f"s3://{bucket}/copy", "-o", f"s3://{bucket}/dedup",
                         *scheduler]) == 0
        text = max((r["text"] for t in _tables(lambda p: p, list(map(str, shards))) for r in t), key=len)
        passage = " ".join(text.split()[:40])  # an evaluation example copied from a training document
        (tmp_path / "evals.jsonl").write_text(json.dumps({"id": "leak", "text": passage}) + "\n")
        fs.put_file(str(tmp_path / "evals.jsonl"), f"{bucket}/evals.jsonl")
        cuts = {}
        for name, src, evals, out in (("local", str(local["dedup"]), str(tmp_path / "evals.jsonl"),
                                       str(tmp_path / "clean")),
                                      ("s3", f"s3://{bucket}/dedup", f"s3://{bucket}/evals.jsonl",
                                       f"s3://{bucket}/clean")):
            assert cli.main(["decontaminate", src, "--evals", evals, "--name", "qa", "-o", out, *scheduler]) == 0
            read = (lambda p: p) if name == "local" else (lambda p: io.BytesIO(fs.cat_file(p)))
            (cuts[name],) = _tables(read, [storage.join(out, "_decontamination.parquet")])
        assert cuts["s3"] == cuts["local"] and {(c["eval_set"], c["example_id"]) for c in cuts["s3"]} == {("qa", "1")}
        # the quality rules from the store to the store keep and drop what they do locally
        kept = {}
        for name, src, out in (("local", str(local["dedup"]), str(tmp_path / "quality")),
                               ("s3", f"s3://{bucket}/dedup", f"s3://{bucket}/quality")):
            config = quality.QualityConfig(inputs=[src], output=out, classifier=ClassifierConfig(sources=[]))
            kept[name] = quality.run(config, runtime.RunContext(client=client, console=Console(quiet=True))).counts
        assert kept["s3"] == kept["local"] and kept["s3"]["kept"] > 0
        assert fs.exists(f"{bucket}/quality/_dropped.parquet") and fs.exists(f"{bucket}/quality/_stage.json")
        # the tokenizer and the mix read their documents from the store too: the same tokenizer and the same token
        # counts per set as from local folders
        ctx = runtime.RunContext(client=client, console=Console(quiet=True))
        corpora = {}
        for name, src in (("local", str(tmp_path / "clean")), ("s3", f"s3://{bucket}/clean")):
            tok = tokenizer.TokenizerConfig(inputs=[src], vocab_size=300, output=str(tmp_path / f"tok-{name}"))
            tokenizer.run(tok, ctx)
            corpora[name] = mixer.run(mixer.MixConfig(
                sets=[mixer.MixSet("web", "commoncrawl", [src], 1.0)], tokenizer=str(tmp_path / f"tok-{name}" /
                                                                                  "tokenizer.json"),
                budget_tokens=10_000, shard_tokens=5_000, row_group_tokens=1_000, output=str(tmp_path / f"mix-{name}")),
                ctx)
        made = [(tmp_path / f"tok-{name}" / "tokenizer.json").read_bytes() for name in ("s3", "local")]
        assert made[0] == made[1]
        assert corpora["s3"].counts == corpora["local"].counts and corpora["s3"].counts["web.tokens"] > 0
    assert not [p for p in fs.find(f"{bucket}/dedup") if p.endswith(".tmp") or "/shuffle/" in p]
    assert b'"complete": true' in fs.cat_file(f"{bucket}/dedup/_stage.json")
    kept = sorted(p for p in fs.glob(f"{bucket}/dedup/*.parquet") if not p.rsplit("/", 1)[1].startswith("_"))
    local_kept = sorted(str(p) for p in local["dedup"].glob("*.parquet") if not p.name.startswith("_"))
    assert len(kept) == len(local_kept) == 2 * len(shards)
    rows = lambda tables: sorted(r["id"] for table in tables for r in table)  # noqa: E731
    assert rows(_tables(lambda p: io.BytesIO(fs.cat_file(p)), kept)) == rows(_tables(lambda p: p, local_kept))
    (dups,) = _tables(lambda p: io.BytesIO(fs.cat_file(p)), [f"{bucket}/dedup/_duplicates.parquet"])
    (local_dups,) = _tables(lambda p: p, [str(local["dedup"] / "_duplicates.parquet")])
    assert sorted(map(str, dups)) == sorted(map(str, local_dups)) and len(dups) > 0


@pytest.fixture
def s3_client(s3):
    """A Dask client whose worker starts with the s3 fixture's AWS_* environment, as a cluster's workers would."""
    with runtime.dask_client(workers=1) as client:
        yield client


def _store_docs(fs, folder: str, key) -> list[dict]:
    """The documents of a stage's shards on the store, checked against the document contract."""
    import pyarrow.parquet as pq

    from corpusforge import schema

    rows = []
    for path in sorted(p for p in fs.glob(f"{folder}/*.parquet") if not p.rsplit("/", 1)[1].startswith("_")):
        table = pq.read_table(io.BytesIO(fs.cat_file(path)))
        schema.check_table(table)
        rows += table.to_pylist()
    return sorted(rows, key=key)


def _only_whole_objects(fs, folder: str) -> None:
    """Every object under `folder` has its final name (no temporary or partial file was published) and the
    stage's completion mark says it finished; no credential reached any of them."""
    objects = fs.find(folder)
    assert objects and not [p for p in objects if p.endswith((".tmp", ".part", ".sorted"))]
    assert b'"complete": true' in fs.cat_file(f"{folder}/_stage.json")
    assert SECRET.encode() not in b"".join(fs.cat_file(p) for p in objects)


def test_wikipedia_dump_and_index_on_a_store_split_into_ranged_reads(tmp_path, s3, s3_client):
    """A multistream dump and its index on the store, split into byte ranges at its streams: each task reads its
    range from the store and the shards go to the store; the same articles as from a local copy."""
    from corpusforge.sample import wikipedia as sample_wiki
    from corpusforge.sources import wikipedia
    from test_wikipedia import station_pages

    fs, bucket = s3
    name = "testwiki-20240101-pages-articles-multistream"
    info = sample_wiki.write_dump(tmp_path / "in" / f"{name}.xml.bz2", station_pages(120), multistream=True,
                                  pages_per_stream=10, **sample_wiki.EN_SITE)
    for path in (info["dump"], info["index"]):
        fs.put_file(path, f"{bucket}/dumps/{Path(path).name}")
    remote = f"s3://{bucket}/dumps/{name}.xml.bz2"
    assert wikipedia.index_path(remote) == f"s3://{bucket}/dumps/{name}-index.txt.bz2"
    items = wikipedia.plan(wikipedia.WikipediaConfig(inputs=[f"s3://{bucket}/dumps/"], split_bytes=4096))
    assert len(items) > 3 and all(i.startswith(remote + "#bytes=") for i in items)
    ctx = runtime.RunContext(client=s3_client, console=Console(quiet=True))
    runs = {}
    for where, dump, out in (("local", info["dump"], str(tmp_path / "wiki")),
                             ("s3", f"s3://{bucket}/dumps/", f"s3://{bucket}/wiki")):
        config = wikipedia.WikipediaConfig(inputs=[dump], output=out, split_bytes=4096)
        runs[where] = wikipedia.run(config, ctx)
    assert runs["s3"].files == runs["local"].files == len(items)
    assert runs["s3"].counts == runs["local"].counts and runs["s3"].counts["documents"] == 108
    import shard_io

    page = lambda d: (d["page_id"], d["title"], d["text"], d["origin_offset"])  # noqa: E731
    local = [page(d) for d in shard_io.read_docs(tmp_path / "wiki", key=lambda r: r["page_id"])]
    assert [page(d) for d in _store_docs(fs, f"{bucket}/wiki", key=lambda r: r["page_id"])] == local
    _only_whole_objects(fs, f"{bucket}/wiki")
    assert wikipedia.run(config, ctx).resumed_files == len(items)  # a re-run resumes from the store's shards


def test_books_from_a_store_folder_and_its_subfolders_to_a_store(tmp_path, s3, s3_client):
    """Gutenberg texts (plain and compressed), an EPUB in a subfolder, a truncated file and a decompression bomb on
    the store: the same parts, counts and reported damage as from the local folder, the size limit holding on the
    store too."""
    import gzip

    from corpusforge.sample import books as sample_books
    from corpusforge.sources import books

    fs, bucket = s3
    folder = tmp_path / "in"
    sample_books.build(folder, 1)
    sample_books.write_epub(folder / "more" / "clock.epub", **sample_books.CLOCKMAKER)
    lamp = next(folder.rglob("90001*"))
    (folder / "more" / "cut.txt.gz").write_bytes(gzip.compress(lamp.read_bytes())[:-200])
    (folder / "more" / "bomb.txt.gz").write_bytes(gzip.compress(b"a" * 3_000_000))
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        fs.put_file(str(path), f"{bucket}/books/{path.relative_to(folder).as_posix()}")
    ctx = runtime.RunContext(client=s3_client, console=Console(quiet=True))
    runs = {}
    for where, src, out in (("local", str(folder), str(tmp_path / "books")),
                            ("s3", f"s3://{bucket}/books", f"s3://{bucket}/out")):
        config = books.BooksConfig(inputs=[src], output=out, min_chars=300, min_part_chars=300,
                                   max_part_chars=1500, task_bytes=20_000, max_book_bytes=2_000_000)
        runs[where] = books.run(config, ctx)
    assert runs["s3"].counts == runs["local"].counts and runs["s3"].files == runs["local"].files > 1
    assert runs["s3"].counts["books"] == 7 and runs["s3"].counts["truncated_files"] == 1
    import shard_io

    part = lambda d: (d["book_id"], d["part"], d["text"], d["origin_offset"], d["title"])  # noqa: E731
    local = [part(d) for d in shard_io.read_docs(tmp_path / "books", key=lambda r: (r["book_id"], r["part"]))]
    remote = _store_docs(fs, f"{bucket}/out", key=lambda r: (r["book_id"], r["part"]))
    assert [part(d) for d in remote] == local
    assert {d["origin_file"].split("/books/", 1)[1] for d in remote} >= {"more/clock.epub", "more/cut.txt.gz"}
    errors = [json.loads(line) for line in fs.cat_file(f"{bucket}/out/_errors.jsonl").decode().splitlines()]
    local_errors = shard_io.read_errors(tmp_path / "books")
    where = lambda es: sorted((e["file"].rsplit("/", 1)[1], e["offset"], e["reason"]) for e in es)  # noqa: E731
    assert where(errors) == where(local_errors) and ("bomb.txt.gz", 2_000_000) in [w[:2] for w in where(errors)]
    _only_whole_objects(fs, f"{bucket}/out")


def _write_documents(folder: Path, n: int) -> None:
    """Two document shards of `n` short articles each for two sources, as a source stage writes them."""
    from corpusforge.documents import make_document
    from test_wikipedia import station_pages

    pages = [p for p in station_pages(2 * n) if "redirect" not in p]
    for k, source in enumerate(("wikipedia", "books")):
        with runtime.ShardWriter(folder / f"{source}.parquet") as writer:
            writer.write_rows([make_document(source=source, text=p["text"], lang="en", lang_score=0.9,
                                             origin_file=f"{source}.xml", origin_offset=i, title=p["title"],
                                             origin_id=f"{source}-{i}")
                               for i, p in enumerate(pages[k::2])])
            writer.set_report(runtime.FileReport(input=source))


def test_tokenizer_and_mix_write_the_corpus_to_a_store(tmp_path, s3, s3_client):
    """Document shards, the tokenizer and the mixed corpus (shards, tokenizer.json, manifest.json) all on the
    store: byte-identical shards and the same manifest as the local run; a stale shard of an earlier mix is gone,
    the work folder too, the manifest's checksums verify against the store's objects, and `stats` reads it there."""
    from corpusforge.mix import manifest as manifest_mod

    fs, bucket = s3
    docs = tmp_path / "docs"
    docs.mkdir()
    _write_documents(docs, 60)
    for path in sorted(docs.glob("*.parquet")):
        fs.put_file(str(path), f"{bucket}/docs/{path.name}")
    fs.pipe_file(f"{bucket}/corpus/wiki/train-99999-of-99999.parquet", b"a shard an earlier mix left")
    ctx = runtime.RunContext(client=s3_client, console=Console(quiet=True))
    made = {}
    for where, base in (("local", str(tmp_path)), ("s3", f"s3://{bucket}")):
        src = str(docs) if where == "local" else f"{base}/docs"
        tokenizer.run(tokenizer.TokenizerConfig(inputs=[src], vocab_size=400, output=f"{base}/tok"), ctx)
        sets = [mixer.MixSet("wiki", "wikipedia", [src], 0.6), mixer.MixSet("books", "books", [src], 0.4)]
        made[where] = mixer.run(mixer.MixConfig(sets=sets, tokenizer=f"{base}/tok/tokenizer.json",
                                                budget_tokens=20_000, shard_tokens=3_000, row_group_tokens=1_000,
                                                output=f"{base}/corpus"), ctx)
    assert made["s3"].counts == made["local"].counts and made["s3"].counts["shards"] > 4
    local = {p.relative_to(tmp_path / "corpus").as_posix(): p.read_bytes()
             for p in (tmp_path / "corpus").rglob("*") if p.is_file() and not p.name.startswith("_")}
    remote = {p.split("/corpus/", 1)[1]: fs.cat_file(p) for p in fs.find(f"{bucket}/corpus")
              if not p.rsplit("/", 1)[1].startswith("_")}
    assert remote.keys() == local.keys() and remote == local  # shards, tokenizer.json and manifest.json
    assert fs.cat_file(f"{bucket}/tok/tokenizer.json") == (tmp_path / "tok" / "tokenizer.json").read_bytes()
    assert manifest_mod.verify(f"s3://{bucket}/corpus") == []
    assert not fs.exists(f"{bucket}/corpus/{mixer.WORK_DIR}")
    _only_whole_objects(fs, f"{bucket}/corpus")
    again = mixer.run(mixer.MixConfig(sets=sets, tokenizer=f"s3://{bucket}/tok/tokenizer.json", budget_tokens=20_000,
                                      shard_tokens=3_000, row_group_tokens=1_000, output=f"s3://{bucket}/corpus"), ctx)
    assert again.resumed_files == again.files  # up to date: nothing is mixed again
    # `stats` reads the corpus and the run's stage folders on the store: the same numbers as locally
    from corpusforge.stats import collect

    stats = {"local": collect.corpus_stats(tmp_path / "corpus", verify=True),
             "s3": collect.corpus_stats(f"s3://{bucket}/corpus", verify=True)}
    for key in ("sets", "overall", "funnel", "verify"):
        assert stats["s3"][key] == stats["local"][key]
    assert [(s["folder"], s["documents"]) for s in stats["s3"]["stages"]] == [
        (s["folder"], s["documents"]) for s in stats["local"]["stages"]] == [("tok", 108), ("corpus", 108)]


def test_webtext2_link_table_warcs_and_shards_on_a_store(tmp_path, s3, s3_client):
    """The Pushshift dump on the store, the sample's site on loopback: the link table, the fetched WARC segments
    (uploaded whole, with their logs) and the document shards go to the store, with the same links, outcomes and
    documents as a local run; a re-run resumes every fetch task from the store's segments."""
    import dataclasses

    from test_webtext2_stage import write_recipe

    from corpusforge import recipe
    from corpusforge.sample import reddit as sample_reddit
    from corpusforge.sources import webtext2
    from corpusforge.sources.webtext2 import warcs

    fs, bucket = s3
    sample = tmp_path / "reddit"
    sample_reddit.build(sample, seed=1234)
    for dump in sample.glob("RS_*.zst"):
        fs.put_file(str(dump), f"{bucket}/pushshift/{dump.name}")
    local = recipe.load(write_recipe(tmp_path, sample)).sections["webtext2"]
    remote = dataclasses.replace(local, output=f"s3://{bucket}/webtext2",
                                 pushshift=[f"s3://{bucket}/pushshift/RS_*.zst"])
    ctx = runtime.RunContext(client=s3_client, console=Console(quiet=True))
    runs = {"local": webtext2.run(local, ctx), "s3": webtext2.run(remote, ctx)}
    for key in ("links", "fetch"):
        assert runs["s3"].extra[key]["counts"] == runs["local"].extra[key]["counts"]
    assert runs["s3"].counts == runs["local"].counts and runs["s3"].counts["documents"] == 10
    import shard_io

    doc = lambda d: (d["url"], d["text"], d["reddit_score"], d["subreddit"], d["lang"])  # noqa: E731
    local_docs = [doc(d) for d in shard_io.read_docs(Path(local.output), key=lambda r: r["url"])]
    assert [doc(d) for d in _store_docs(fs, f"{bucket}/webtext2", key=lambda r: r["url"])] == local_docs
    assert len(fs.glob(f"{bucket}/webtext2/links/links-*.parquet")) == 2
    segments = fs.glob(f"{bucket}/webtext2/warc/*.warc.gz")
    assert len(segments) == 2 and all(fs.exists(s.removesuffix(".warc.gz") + ".fetch.jsonl") for s in segments)
    outcomes = lambda logs: sorted((e["url"], e["outcome"]) for log in logs for e in warcs.read_log(log)  # noqa: E731
                                   if "url" in e)
    assert outcomes(f"s3://{p.removesuffix('.warc.gz')}.fetch.jsonl" for p in segments) == outcomes(
        p.with_name(p.name.removesuffix(".warc.gz") + ".fetch.jsonl")
        for p in (Path(local.output) / "warc").glob("*.warc.gz"))
    for folder in ("webtext2", "webtext2/links", "webtext2/warc"):
        _only_whole_objects(fs, f"{bucket}/{folder}")
    assert not list(warcs.staging_dir(f"s3://{bucket}/webtext2/warc").glob("*"))  # nothing left half-written
    again = webtext2.run(remote, ctx)
    assert again.resumed_files == again.files == 2 and again.extra["fetch"]["resumed_files"] == 2


def test_a_fetch_segment_reaches_the_store_only_when_finished_and_resumes_after_a_kill(tmp_path, s3):
    """A fetch task killed mid-segment (its open segment and journal on the worker's disk): nothing under a final
    name on the store; the next run on that machine resumes the journal (the in-flight page logged `interrupted`,
    not asked again) and uploads the finished segment, the same bytes as the same fetch into a local folder."""
    from corpusforge.sources.webtext2 import fetch, warcs

    fs, bucket = s3
    cfg = fetch.FetchConfig(capture_time="2024-04-01T00:00:00Z")
    urls = [f"http://h{i}.test/p" for i in range(3)]
    page = lambda url: warcs.Exchange(  # noqa: E731
        url=url, status=200, reason="OK", request_line="GET /p HTTP/1.1", request_headers=[("Host", url[7:-2])],
        headers=[("Content-Type", "text/html")], body=f"<html><body><p>{url}</p></body></html>".encode())
    made = {}
    for where, folder in (("local", str(tmp_path / "warc")), ("s3", f"s3://{bucket}/warc")):
        log = warcs.FetchLog(folder, "links-00000", cfg)
        log.order = {url: i for i, url in enumerate(urls)}
        log.open()
        log.begin(urls[0])
        log.append([page(urls[0])], {"url": urls[0], "outcome": "fetched"})
        log.begin(urls[1])  # killed here: the files stay open and unfinished
        assert not fs.exists(f"{bucket}/warc/links-00000-00000.warc.gz")
        resumed = warcs.FetchLog(folder, "links-00000", cfg)
        resumed.order = log.order
        assert [(e["url"], e["outcome"]) for e in resumed.open()] == [(urls[0], "fetched"), (urls[1], "interrupted")]
        resumed.begin(urls[2])
        resumed.append([page(urls[2])], {"url": urls[2], "outcome": "fetched"})
        resumed.close()
        made[where] = [storage.read_text(storage.join(folder, "links-00000-00000.fetch.jsonl")).encode(),
                       storage.open_file(storage.join(folder, "links-00000-00000.warc.gz")).read()]
    assert made["s3"] == made["local"]
    assert sorted(p.rsplit("/", 1)[1] for p in fs.find(f"{bucket}/warc")) == [
        "links-00000-00000.fetch.jsonl", "links-00000-00000.warc.gz"]
    assert resumed.report("links", 3, resumed=False).counts == {"links": 3, "fetched": 2, "interrupted": 1,
                                                                "requests": 1}


def test_a_missing_input_on_a_store_is_one_line_naming_it(s3, tmp_path, capsys):
    """One rule for inputs wherever they are: an object that is not there, a folder with no file the source reads
    and a folder given to a source that reads none each stop the stage before any work, in one line."""
    fs, bucket = s3
    fs.pipe_file(f"{bucket}/notes/readme.md", b"not a book")
    out = ["-o", str(tmp_path / "out")]
    for args, line in (
            (["books", f"s3://{bucket}/books/missing.txt"], f"no such book: s3://{bucket}/books/missing.txt"),
            (["books", f"s3://{bucket}/notes"], f"no book in the folder s3://{bucket}/notes"),
            (["wikipedia", f"s3://{bucket}/notes/"], f"no dump in the folder s3://{bucket}/notes/")):
        assert cli.main([*args, *out]) == 2
        assert capsys.readouterr().err.strip() == f"error: {line}"
    assert not (tmp_path / "out").exists()  # stopped before any work


def test_a_range_of_a_dump_on_a_store_fetches_about_its_own_bytes(tmp_path, s3, monkeypatch):
    """Each byte-range task reads its range of a remote dump, not the whole object: the blocks are decoded from the
    windows the marker scan fetched, and a read fetches little beyond what it asks for (a store's default read-ahead
    is tens of MB). Over every range of the dump, about the dump's size is fetched, and the same pages come out."""
    import base64
    import random

    import s3fs

    from corpusforge.formats import mediawiki
    from corpusforge.sample import wikipedia as sample_wiki
    from corpusforge.sources import wikipedia

    fs, bucket = s3
    rng = random.Random(0)  # text that does not compress: a dump of a few MB made in a moment
    pages = [{"title": f"Page {i}", "ns": 0, "id": i, "rev": i, "timestamp": "2024-01-01T00:00:00Z",
              "text": base64.b64encode(rng.randbytes(20_000)).decode()} for i in range(200)]
    info = sample_wiki.write_dump(tmp_path / "x-multistream.xml.bz2", pages, multistream=True, pages_per_stream=10,
                                  compresslevel=1, **sample_wiki.EN_SITE)
    for path in (info["dump"], info["index"]):
        fs.put_file(path, f"{bucket}/{Path(path).name}")
    size = Path(info["dump"]).stat().st_size
    fetched = []
    fetch = s3fs.core.S3File._fetch_range
    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range",
                        lambda self, start, end: fetched.append(len(data := fetch(self, start, end))) or data)
    config = wikipedia.WikipediaConfig(inputs=[f"s3://{bucket}/x-multistream.xml.bz2"], split_bytes=size // 4)
    items = wikipedia.plan(config)
    seen = {}
    for where, dump in (("s3", f"s3://{bucket}/x-multistream.xml.bz2"), ("local", info["dump"])):
        seen[where] = []
        for item in items:
            _, start, end = wikipedia.parse_item(item)
            site = mediawiki.read_siteinfo(dump)
            seen[where] += [p.page_id for p in mediawiki.iter_pages(dump, start, end, encoding=site.encoding,
                                                                    report=runtime.FileReport(input=item))]
    assert len(items) >= 4 and seen["s3"] == seen["local"] == list(range(200))
    assert size > 3_000_000 and sum(fetched) < 1.5 * size, (sum(fetched), size)
