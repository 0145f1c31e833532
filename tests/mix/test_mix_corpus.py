"""The mix: manifest against its schema and the shards, every document in exactly one set and split, weights
normalized with epochs computed, shuffled shards with token-sized row groups, byte-identical re-runs, damaged
input reported, and shards that open as they are in pyarrow, polars, DuckDB and Hugging Face datasets."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpusforge import cli, recipe, runtime, schema
from corpusforge.documents import find_shards, read_batches
from corpusforge.mix import manifest, mixer, tokenizer
from corpusforge.runtime import RunContext

from mixdata import gpt3_config, read_corpus, write_documents

pytestmark = pytest.mark.shared_data

SETS = ["commoncrawl", "webtext2", "books1", "books2", "wikipedia"]


def test_manifest_valid_and_true_to_its_shards(corpus):
    m = manifest.load(corpus)  # validates against schemas/manifest.schema.json
    assert [s["name"] for s in m["sets"]] == SETS
    assert m["tokenizer"]["eot_id"] == 0 and m["tokenizer"]["vocab_size"] == 4096
    assert m["tokenizer"]["sha256"] == runtime.file_sha256(corpus / "tokenizer.json")
    for s in m["sets"]:
        for split in ("train", "val"):
            for shard in s[split]["shards"]:
                path = corpus / shard["path"]
                table = pq.read_table(path)
                schema.check_table(table, "corpus")
                assert table.num_rows == shard["rows"]
                assert sum(table.column("n_tokens").to_pylist()) == shard["tokens"]
                assert path.stat().st_size == shard["bytes"]
                assert runtime.file_sha256(path) == shard["sha256"]
                assert set(table.column("set").to_pylist()) == {s["name"]}
            assert s[split]["documents"] == sum(sh["rows"] for sh in s[split]["shards"])
        assert s["val"]["documents"] >= 1, "every set has a validation stream"
        assert s["documents"] == s["train"]["documents"] + s["val"]["documents"]
    assert m["totals"]["tokens"] == sum(s["tokens"] for s in m["sets"])
    assert manifest.verify(corpus) == []


def test_every_document_in_one_set_and_tokens_decode(corpus, documents):
    inputs_table = pq.read_table(find_shards([str(documents)])[0], columns=["id", "source", "book_id", "text"])
    expected = Counter((r["id"], r["source"]) for r in inputs_table.to_pylist() if r["text"])
    rows = read_corpus(corpus, ["id", "source", "set", "book_id", "text", "tokens", "n_tokens"])
    assert Counter(zip(rows.column("id").to_pylist(), rows.column("source").to_pylist())) == expected
    books = [r for r in rows.select(["set", "book_id"]).to_pylist() if r["set"].startswith("books")]
    by_set = {name: {r["book_id"] for r in books if r["set"] == name} for name in ("books1", "books2")}
    assert by_set["books1"] and by_set["books2"] and not by_set["books1"] & by_set["books2"], \
        "books1 and books2 split whole books"
    tok = tokenizer.load(corpus / "tokenizer.json")
    for row in rows.slice(0, 200).to_pylist():
        assert len(row["tokens"]) == row["n_tokens"]
        assert tok.decode(row["tokens"]) == row["text"]


def test_weights_normalized_and_epochs_from_real_counts(corpus):
    m = manifest.load(corpus)
    assert m["weights"] == {"recipe_sum": 1.01, "normalized": True}
    assert sum(s["weight"] for s in m["sets"]) == pytest.approx(1.0)
    for s in m["sets"]:
        assert s["weight"] == pytest.approx(s["recipe_weight"] / 1.01)
        stream = s["train"]["tokens"] + s["train"]["documents"]
        assert s["epochs"] == pytest.approx(m["budget_tokens"] * s["weight"] / stream)
    warnings = "\n".join(m["warnings"])
    assert "sum to 1.01" in warnings
    cc = next(s for s in m["sets"] if s["name"] == "commoncrawl")
    assert cc["epochs"] > cc["max_epochs"] and "set commoncrawl:" in warnings and "max_epochs 1" in warnings
    assert "set wikipedia:" not in warnings  # 0.30 epochs, under its limit


def test_shards_shuffled_by_key_with_token_sized_row_groups(corpus, documents):
    m = manifest.load(corpus)
    target = m["row_group_tokens"]
    for s in m["sets"]:
        for split in ("train", "val"):
            keys = []
            for shard in s[split]["shards"]:
                parquet = pq.ParquetFile(corpus / shard["path"])
                ids = parquet.read(columns=["id"]).column("id").to_pylist()
                keys.extend(mixer.shuffle_keys(ids, s["name"], m["seed"]).tolist())
                groups = [parquet.read_row_group(g, columns=["n_tokens"]).column("n_tokens").to_numpy()
                          for g in range(parquet.num_row_groups)]
                for g in groups[:-1]:
                    assert g.sum() >= target and g[:-1].sum() < target, "a row group closes once it reaches the target"
            assert keys == sorted(keys), "each split is in shuffle-key order across its shards"
    # The shuffle mixes the input order: commoncrawl's documents are no longer in file order.
    cc_in = pq.read_table(documents / "commoncrawl-0.parquet", columns=["id"]).column("id").to_pylist()
    train = read_corpus(corpus, ["id", "set"], split="train").to_pylist()
    position = {r["id"]: i for i, r in enumerate(r for r in train if r["set"] == "commoncrawl")}
    ranks = [position[d] for d in cc_in if d in position]
    assert abs(np.corrcoef(ranks, range(len(ranks)))[0, 1]) < 0.3


@pytest.mark.slow
def test_rerun_is_byte_identical_and_up_to_date(corpus, documents, tokenizer_file, tmp_path, dask_client):
    again = tmp_path / "again"
    mixer.run(dataclasses.replace(gpt3_config(documents, tokenizer_file), output=str(again)),
              RunContext(client=dask_client))
    assert (again / manifest.MANIFEST_FILE).read_bytes() == (corpus / manifest.MANIFEST_FILE).read_bytes()
    for _, shard in manifest.shards(manifest.load(corpus), "train") + manifest.shards(manifest.load(corpus), "val"):
        assert (again / shard["path"]).read_bytes() == (corpus / shard["path"]).read_bytes()
    assert not (again / mixer.WORK_DIR).exists()

    summary = mixer.run(dataclasses.replace(gpt3_config(documents, tokenizer_file), output=str(again)),
                        RunContext(client=dask_client))
    assert summary.resumed_files == summary.files == 3


def test_damaged_input_reported_and_empty_set_gets_no_weight(documents, tokenizer_file, tmp_path, dask_client):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "cc.parquet").write_bytes((documents / "commoncrawl-1.parquet").read_bytes())
    data = (documents / "commoncrawl-0.parquet").read_bytes()
    (folder / "cut.parquet").write_bytes(data[: len(data) // 2])
    write_documents(folder, "notes", [{"id": "0" * 32, "source": "wikipedia", "text": "", "lang": "und",
                                       "lang_score": 0.0, "origin_file": "notes"}])
    (folder / "_work").mkdir()  # another stage's work folder (dedup keeps one): not documents, not an error
    pq.write_table(pa.table({"key": [1, 2]}), folder / "_work" / "keys.parquet")
    config = gpt3_config(folder, tokenizer_file)
    config.sets = [mixer.MixSet("commoncrawl", "commoncrawl", [str(folder)], 0.5),
                   mixer.MixSet("wikipedia", "wikipedia", [str(folder)], 0.5)]
    summary = mixer.run(dataclasses.replace(config, output=str(tmp_path / "corpus")), RunContext(client=dask_client))

    errors = [json.loads(line) for line in (tmp_path / "corpus" / runtime.ERRORS_FILE).read_text().splitlines()]
    assert summary.errors == 1 and Path(errors[0]["file"]).name == "cut.parquet"
    cc_texts = pq.read_table(folder / "cc.parquet", columns=["text"]).column("text").to_pylist()
    assert summary.counts["dropped_empty_text"] == 1 + cc_texts.count("")
    m = manifest.load(tmp_path / "corpus")
    weights = {s["name"]: s["weight"] for s in m["sets"]}
    assert weights == {"commoncrawl": 1.0, "wikipedia": 0.0}
    assert any("['wikipedia'] have no training documents" in w for w in m["warnings"])
    assert m["sets"][0]["documents"] == len(cc_texts) - cc_texts.count("")


def test_recipe_errors_name_the_key(tmp_path):
    base = """[mix]\ntokenizer = "t.json"\n[[mix.sets]]\nname = "books1"\nsource = "books"\ninputs = ["d"]\n"""
    cases = {
        "weight = 0.5\nsplit_range = [0.5, 0.2]\n": "split_range",
        "weight = 0.5\nsplit_by = \"text_length\"\n": "split_by",
        "weight = -1.0\n": "weight",
        "weight = 0.5\nmax_epoch = 2.0\n": "max_epoch",
    }
    for body, key in cases.items():
        path = tmp_path / "r.toml"
        path.write_text(base + body)
        with pytest.raises(recipe.RecipeError, match=key):
            recipe.load(path)
    path.write_text(base.replace('"books"', '"magazines"') + "weight = 1.0\n")  # an imported set's name
    assert recipe.load(path).sections["mix"].sets[0].source == "magazines"
    path.write_text(base.replace('"books"', '"old magazines"') + "weight = 1.0\n")
    with pytest.raises(recipe.RecipeError, match="source: 'old magazines' is not a source name"):
        recipe.load(path)


def test_cli_mix_then_stats_verify(documents, tokenizer_file, tmp_path, dask_client, capsys):
    sets = "".join(f'[[mix.sets]]\nname = "{n}"\nsource = "{n}"\ninputs = ["{documents}"]\nweight = {w}\n'
                   for n, w in (("webtext2", 0.7), ("wikipedia", 0.3)))
    path = tmp_path / "recipe.toml"
    path.write_text(f'[mix]\ntokenizer = "{tokenizer_file}"\nbudget_tokens = 1000000\n{sets}')
    address = dask_client.scheduler.address
    assert cli.main(["mix", str(path), "--output", str(tmp_path / "corpus"), "--scheduler", address]) == 0
    capsys.readouterr()
    assert cli.main(["stats", str(tmp_path / "corpus"), "--verify", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in stats["sets"]] == ["webtext2", "wikipedia"] and stats["verify"]["ok"]
    assert cli.main(["stats", str(tmp_path / "nowhere")]) == 2


def test_shards_open_as_they_are_in_pyarrow_polars_duckdb(corpus):
    import duckdb
    import polars as pl

    m = manifest.load(corpus)
    expected = {s["name"]: (s["documents"], s["tokens"]) for s in m["sets"]}
    files = [str(corpus / shard["path"]) for sp in ("train", "val") for _, shard in manifest.shards(m, sp)]

    table = pq.read_table(files)
    assert table.schema.field("tokens").type.value_type.bit_width == 32
    by_set = table.group_by("set").aggregate([("n_tokens", "count"), ("n_tokens", "sum")]).to_pylist()
    assert {r["set"]: (r["n_tokens_count"], r["n_tokens_sum"]) for r in by_set} == expected

    frame = pl.read_parquet(files)
    assert frame.schema["tokens"] == pl.List(pl.UInt32)
    grouped = frame.group_by("set").agg(pl.len(), pl.col("n_tokens").sum()).rows()
    assert {name: (n, tokens) for name, n, tokens in grouped} == expected
    assert (frame["tokens"].list.len() == frame["n_tokens"]).all()

    rows = duckdb.sql(f"SELECT set, count(*), sum(len(tokens)) FROM read_parquet('{corpus}/*/*.parquet') "
                      "GROUP BY set").fetchall()
    assert {name: (n, tokens) for name, n, tokens in rows} == expected


def test_shards_open_in_hugging_face_datasets(corpus, tmp_path):
    datasets = pytest.importorskip("datasets", reason="Hugging Face `datasets` is not installed (optional)")
    m = manifest.load(corpus)
    data_files = {split: [str(corpus / shard["path"]) for _, shard in manifest.shards(m, split)]
                  for split in ("train", "val")}
    loaded = datasets.load_dataset("parquet", data_files=data_files, cache_dir=str(tmp_path / "hf"))
    assert loaded["train"].num_rows == sum(s["train"]["documents"] for s in m["sets"])
    assert loaded["val"].num_rows == sum(s["val"]["documents"] for s in m["sets"])
    assert loaded["train"][0]["n_tokens"] == len(loaded["train"][0]["tokens"])


def test_interrupted_work_is_resumed_not_redone(documents, tokenizer_file, tmp_path):
    """A mix stopped midway keeps its finished spill files and shards (under _work/); the re-run takes them as
    they are. Here each task runs twice in a row, as a re-run would."""
    config = gpt3_config(documents, tokenizer_file)
    files = find_shards([str(documents)])[0]
    job = mixer._EncodeJob(sets=config.sets, sets_of={f: list(range(len(config.sets))) for f in files},
                           tokenizer=str(tokenizer_file), seed=config.seed, val_cutoff=0,
                           row_group_tokens=config.row_group_tokens)
    first = mixer._encode_file(files[0], str(tmp_path / "spill"), job)
    spill = tmp_path / "spill" / runtime.output_name(files[0])
    written = spill.stat().st_mtime_ns
    again = mixer._encode_file(files[0], str(tmp_path / "spill"), job)
    assert not first.resumed and again.resumed and again.counts == first.counts
    assert spill.stat().st_mtime_ns == written

    shard_job = mixer._ShardJob(shards={"commoncrawl/train-00000-of-00001": ("commoncrawl", 0, mixer.KEY_SPACE)},
                                spills=[str(spill)], row_group_tokens=config.row_group_tokens)
    made = mixer._write_shard("commoncrawl/train-00000-of-00001", str(tmp_path / "shards"), shard_job)
    redo = mixer._write_shard("commoncrawl/train-00000-of-00001", str(tmp_path / "shards"), shard_job)
    assert made.counts["rows"] == first.counts["commoncrawl.documents"] and redo.resumed
    assert redo.counts == made.counts and redo.by_lang == made.by_lang


def test_shards_from_before_an_optional_column_existed_read_with_nulls(documents, tmp_path):
    """A shard written before the document contract gained an optional column (quality_score) still mixes: the
    column reads as nulls. A shard without a required column is refused by name."""
    table = pq.read_table(documents / "commoncrawl-1.parquet")
    pq.write_table(table.drop_columns(["quality_score"]), tmp_path / "old.parquet")
    pq.write_table(table.drop_columns(["text"]), tmp_path / "broken.parquet")
    columns = schema.document_schema().names
    report = runtime.FileReport(input="old.parquet")
    old = pa.Table.from_batches(list(read_batches(str(tmp_path / "old.parquet"), columns, report)))
    assert not report.errors and old.schema.names == columns and old.num_rows == table.num_rows
    assert old.column("quality_score").null_count == table.num_rows
    assert old.drop_columns(["quality_score"]).equals(table.drop_columns(["quality_score"]))
    report = runtime.FileReport(input="broken.parquet")
    assert list(read_batches(str(tmp_path / "broken.parquet"), columns, report)) == []
    assert "no column(s) ['text']" in report.errors[0]["reason"]
