"""Bring your own data (corpusforge/sources/imported.py): JSONL, Parquet, CSV and a Hugging Face dataset saved to
disk, with a field mapping, become document shards with the language from lid.176 and lineage from file and row;
bad rows are counted and reported with file and line/row while the rest is kept; a missing or mistyped field is a
one-line error naming it; and two imported sets go through quality (with a custom filter), dedup against each
other and the mix with their own weights, from a recipe."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from shard_io import read_errors

from corpusforge import cli, pipeline, recipe, schema
from corpusforge.documents import find_shards
from corpusforge.mix import manifest
from corpusforge.runtime import SUMMARY_FILE, RunContext
from corpusforge.sources import imported

ROWS = [
    {"body": "The committee met on Tuesday to discuss the budget for the new library and the repairs to the old "
             "town hall, which has needed a new roof for years.", "link": "https://papers.example/1",
     "headline": "Budget talks", "key": 101},
    {"body": "Die Stadtverwaltung hat am Dienstag beschlossen, die alte Brücke über den Fluss im nächsten Jahr zu "
             "erneuern und den Radweg zu verbreitern.", "link": "https://papers.example/2", "headline": "Brücke",
     "key": 102},
    {"body": "A short note on gardening: water the tomatoes in the morning, not at night, and keep the leaves dry "
             "so that mould does not spread between the plants.", "link": None, "headline": None, "key": 103},
]
FIELDS = {"text": "body", "url": "link", "title": "headline", "id": "key"}


def write(fmt: str, folder: Path, rows: list[dict] = ROWS) -> tuple[str, list[int]]:
    """`rows` in format `fmt` under `folder`: the input to name and each row's expected origin_offset (the line's
    byte offset for JSON Lines, the row number otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt in ("jsonl", "jsonl.gz"):
        lines = [json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows]
        path = folder / f"data.{fmt}"
        (gzip.open if fmt.endswith(".gz") else open)(path, "wb").write(b"".join(lines))
        return str(path), [sum(map(len, lines[:i])) for i in range(len(rows))]
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), folder / "data.parquet", row_group_size=2)
        return str(folder / "data.parquet"), list(range(len(rows)))
    if fmt == "csv":
        with open(folder / "data.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return str(folder / "data.csv"), list(range(len(rows)))
    import datasets

    datasets.Dataset.from_list(rows).save_to_disk(str(folder / "saved"))
    return str(folder / "saved"), list(range(len(rows)))


def documents(out: Path) -> list[dict]:
    shards, _ = find_shards([str(out)])
    tables = [pq.read_table(s) for s in shards]
    for table in tables:
        schema.check_table(table)
    return [row for t in tables for row in t.to_pylist()]


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "parquet", "csv", "saved_dataset"])
def test_each_format_with_a_field_mapping(fmt, tmp_path, dask_client):
    spec, offsets = write(fmt, tmp_path / "in")
    config = imported.ImportConfig(inputs=[spec], output=str(tmp_path / "out"), source="papers", fields=FIELDS)
    summary = imported.run(config, RunContext(client=dask_client))
    assert summary.errors == 0 and summary.counts["documents"] == 3 and summary.by_lang == {"en": 2, "de": 1}
    docs = sorted(documents(tmp_path / "out"), key=lambda d: d["origin_id"])
    assert [d["text"] for d in docs] == [r["body"] for r in ROWS]
    # CSV has no nulls: an empty field is an empty string
    assert [d["url"] for d in docs][:2] == [r["link"] for r in ROWS][:2]
    assert [d["title"] for d in docs][:2] == ["Budget talks", "Brücke"]
    assert [d["origin_id"] for d in docs] == ["101", "102", "103"]
    assert [d["lang"] for d in docs] == ["en", "de", "en"] and {d["lang_from"] for d in docs} == {"text"}
    assert {d["source"] for d in docs} == {"papers"}
    assert [d["origin_offset"] for d in docs] == offsets
    origin = {d["origin_file"] for d in docs}
    assert origin == ({str(next(Path(spec).glob("*.arrow")))} if fmt == "saved_dataset" else {spec})
    again = imported.run(config, RunContext(client=dask_client))  # a re-run resumes
    assert again.resumed_files == 1 and again.counts == summary.counts


def test_bad_rows_cost_only_themselves(tmp_path, dask_client):
    good = json.dumps(ROWS[0]).encode() + b"\n"
    lines = [good, b'{"body": "unfinished\n', json.dumps({"link": "x"}).encode() + b"\n",
             json.dumps({"body": 42}).encode() + b"\n", b"[1, 2]\n", json.dumps({**ROWS[2], "lang": "en"}).encode()]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rows.jsonl").write_bytes(b"".join(lines))
    offsets = [sum(map(len, lines[:i])) for i in range(len(lines))]
    rows = [dict(r, key=str(r["key"])) for r in ROWS]
    with open(tmp_path / "in" / "rows.csv", "w", newline="", encoding="utf-8") as fh:
        fh.write("body,link,headline,key\n")
        csv.writer(fh).writerow(list(rows[0].values()))
        fh.write('"one field too many",a,b,c,d\n')
        csv.writer(fh).writerow(list(rows[1].values()))
    config = imported.ImportConfig(inputs=[str(tmp_path / "in")], output=str(tmp_path / "out"), fields=FIELDS)
    summary = imported.run(config, RunContext(client=dask_client))
    assert summary.counts["documents"] == 4 and summary.counts["bad_rows"] == 3, summary.counts
    errors = read_errors(tmp_path / "out")
    by_file = {}
    for e in errors:
        by_file.setdefault(Path(e["file"]).name, []).append((e["offset"], e["reason"].split(":")[0]))
    assert by_file["rows.jsonl"] == [(offsets[1], "malformed JSON line"), (offsets[2], "no text"),
                                     (offsets[3], "field 'body' (text) is a int, not text; skipped"),
                                     (offsets[4], "JSON line is a list, not a record object")]
    assert [reason for _, reason in by_file["rows.csv"]] == ["CSV row with 5 fields, expected 4"]
    kept = {d["origin_id"]: d for d in documents(tmp_path / "out")}
    assert kept["103"]["lang_from"] == "field" and kept["103"]["lang_score"] == 1.0


def test_a_missing_or_mistyped_field_is_one_line(tmp_path, capsys):
    jsonl, _ = write("jsonl", tmp_path / "j")
    parquet, _ = write("parquet", tmp_path / "p", [{"body": 5, "title": "t"}])
    for argv, says in [
        ([jsonl, "--field", "text=bdy"], f"{jsonl}: no field 'bdy' (--field text=bdy)"),
        ([jsonl], f"{jsonl}: no field 'text' (map it with --field text=FIELD); its fields: body, link, headline, key"),
        ([jsonl, "--field", "text=body", "--field", "url=lnk"], "no field 'lnk' (--field url=lnk)"),
        ([parquet, "--field", "text=body"], f"{parquet}: field 'body' (--field text=body) holds int64, not text"),
        ([jsonl, "--field", "txt=body"], "fields: ['txt'] are not document fields"),
        ([jsonl, "--field", "text"], "--field 'text': expected COLUMN=FIELD"),
        ([jsonl, "--field", "text=body", "--source", "my set"], "source: 'my set' must be"),
    ]:
        code = cli.main(["import", *argv, "-o", str(tmp_path / "out"), "--workers", "1"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and says in err, (argv, err)
    assert not (tmp_path / "out").exists(), "nothing was started"


RECIPE = """
[run]
output = "{run}"

[[import]]
source = "code"
inputs = ["{code}"]
output = "{run}/import-code"
fields = {{text = "content", url = "path"}}

[[import]]
source = "papers"
inputs = ["{papers}"]
output = "{run}/import-papers"
fields = {{text = "body", title = "headline", id = "key"}}

[quality]
inputs = ["{run}/import-code", "{run}/import-papers"]
output = "{run}/quality"
heuristics = {{sources = []}}
classifier = {{sources = []}}

[[quality.filters]]
function = "{filters}:no_shouting"
sources = ["papers"]

[dedup]
inputs = ["{run}/quality"]
output = "{run}/dedup"
source_priority = ["papers", "code"]

[tokenizer]
inputs = ["{run}/dedup"]
output = "{run}/tokenizer"
vocab_size = 400

[mix]
output = "{run}/corpus"
tokenizer = "{run}/tokenizer/tokenizer.json"
budget_tokens = 20000
shard_tokens = 10000
row_group_tokens = 2000

[[mix.sets]]
name = "code"
source = "code"
inputs = ["{run}/dedup"]
weight = 0.7

[[mix.sets]]
name = "papers"
source = "papers"
inputs = ["{run}/dedup"]
weight = 0.3
"""


def test_imported_sets_through_quality_dedup_and_the_mix(tmp_path, dask_client):
    shared = ROWS[0]["body"]  # in both sets: dedup keeps the papers' copy, as source_priority says
    code = [{"content": f"def {name}(items):\n    return {body}  # {why}", "path": f"src/{name}.py"}
            for name, body, why in [("shortest", "min(items, key=len)", "the shortest string wins ties by order"),
                                    ("total", "sum(items)", "adds every number of the list together"),
                                    ("unique", "sorted(set(items))", "drops repeats and sorts what remains"),
                                    ("first", "items[0] if items else None", "nothing when the list is empty"),
                                    ("count_words", "sum(len(i.split()) for i in items)", "words across lines"),
                                    ("reverse", "list(reversed(items))", "a new list from last to first")]]
    code.append({"content": shared, "path": "README.txt"})
    write("jsonl", tmp_path / "code", code)
    papers = ROWS + [{"body": "THIS PAPER SHOUTS ITS WHOLE ABSTRACT AT THE READER IN CAPITAL LETTERS ONLY",
                      "headline": "loud", "key": 104}]
    write("parquet", tmp_path / "papers", papers)
    run = tmp_path / "run"
    recipe_file = tmp_path / "byod.toml"
    recipe_file.write_text(RECIPE.format(run=run, code=tmp_path / "code", papers=tmp_path / "papers",
                                         filters=Path(__file__).with_name("custom_filters.py")))
    rec = recipe.load(recipe_file)
    assert [s.name for s, _ in rec.stage_configs()] == ["import", "import", "quality", "dedup", "tokenizer", "mix"]
    pipeline.run_recipe(rec, client=dask_client)

    quality = json.loads((run / "quality" / SUMMARY_FILE).read_text())
    assert quality["counts"]["dropped_no_shouting"] == 1 and quality["counts"]["papers:en:dropped_no_shouting"] == 1
    duplicates = pq.read_table(run / "dedup" / "_duplicates.parquet").to_pylist()
    assert [(d["removed_source"], d["kept_source"], d["kind"]) for d in duplicates] == [("code", "papers", "exact")]
    sets = {s["name"]: s for s in manifest.load(run / "corpus")["sets"]}
    assert sets["code"]["source"] == "code" and sets["code"]["documents"] == 6
    assert sets["papers"]["documents"] == 3
    assert sets["code"]["recipe_weight"] == 0.7 and sets["papers"]["recipe_weight"] == 0.3
    runs = json.loads((run / "_run.json").read_text())
    assert {"import code", "import papers"} <= set(runs["stages"]) and runs["summaries"]["import code"]["files"] == 1
