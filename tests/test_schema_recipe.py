"""Recipes validate once at load with errors that name the file, section and key; the shipped recipes validate; the
document contract loads from schemas/ and `check_table` refuses tables that break it."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from corpusforge import cli, recipe, schema
from corpusforge.documents import make_document
from corpusforge.sources.commoncrawl import CommonCrawlConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["sample.toml", "gpt3.toml"])
def test_shipped_recipes_validate(name, capsys):
    path = ROOT / "pipelines" / name
    if not path.exists():
        pytest.skip(f"{path} is not written yet")
    rec = recipe.load(path)
    assert "commoncrawl" in rec.sections and isinstance(rec.sections["commoncrawl"], CommonCrawlConfig)
    assert cli.main(["validate", str(path)]) == 0
    assert "valid; stages: " in capsys.readouterr().out


@pytest.mark.parametrize("body, message", [
    ("[commoncrawl]\ninputs = ['a.warc.gz']\nmode = 'fastest'\n", "[commoncrawl]: mode: must be one of fallback, fast, balanced"),
    ("[commoncrawl]\ninputs = ['a.warc.gz']\nmin_lang_score = 1.5\n", "[commoncrawl]: min_lang_score: must be within"),
    ("[commoncrawl]\ninputs = ['a.warc.gz']\ntimeout_s = 0\n", "[commoncrawl]: timeout_s: must be positive"),
    ("[commoncrawl]\ninputs = ['a.warc.gz']\ntimeout_s = 'ten'\n", "[commoncrawl] timeout_s: expected a number"),
    ("[commoncrawl]\ninputs = 'a.warc.gz'\n", "[commoncrawl] inputs: expected a list"),
    ("[commoncrawl]\ninputs = ['a.warc.gz', 3]\n", "[commoncrawl] inputs[1]: expected a string"),
    ("[commoncrawl]\ninputs = ['a.warc.gz']\nlanguage = ['en']\n", "[commoncrawl]: unknown key(s) ['language']"),
    ("[commoncrawl]\ninputs = []\n", "[commoncrawl]: inputs: give at least one"),
    ("[commoncrawl]\ninputs = ['a.warc.gz']\nlimit_files = 1.5\n", "[commoncrawl] limit_files:"),
    ("[commoncrawls]\ninputs = ['a.warc.gz']\n", "unknown section(s) ['commoncrawls']"),
    ("[run]\nworkers = 'two'\n", "[run] workers:"),
    ("[commoncrawl\n", "not valid TOML"),
])
def test_recipe_errors_name_the_key(tmp_path, body, message, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(recipe.RecipeError) as err:
        recipe.load(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)
    assert cli.main(["validate", str(path)]) == 2 and message in capsys.readouterr().err


def test_missing_recipe_is_a_clear_error(tmp_path):
    with pytest.raises(recipe.RecipeError, match="no such recipe"):
        recipe.load(tmp_path / "nope.toml")


def test_document_contract_and_check_table():
    arrow = schema.document_schema()
    spec = schema.load_json_schema("document")
    assert arrow.names == spec["x-column-order"]
    for column in ("id", "source", "url", "title", "text", "lang", "lang_score", "origin_file", "origin_offset",
                   "crawl_time"):
        assert column in arrow.names
    doc = make_document(source="commoncrawl", url="http://example.org/", text="Hello there.", lang="en",
                        lang_score=0.97, origin_file="a.warc.gz", origin_offset=0, crawl_time="2024-05-01T12:00:00Z")
    table = schema.to_table([doc])
    schema.check_table(table)
    schema.check_table(schema.to_table([{**doc, "source": "usenet"}]))  # an imported set's name
    with pytest.raises(schema.SchemaError, match="'source' has values not matching"):
        schema.check_table(schema.to_table([{**doc, "source": "use net"}]))
    with pytest.raises(schema.SchemaError, match="outside its enum"):
        schema.check_table(schema.to_table([{**doc, "lang_from": "guess"}]))
    with pytest.raises(schema.SchemaError, match="required column 'text'"):
        schema.check_table(schema.to_table([{**doc, "text": None}]))
    with pytest.raises(schema.SchemaError, match="columns differ"):
        schema.check_table(table.drop_columns(["title"]))
    with pytest.raises(schema.SchemaError, match="columns differ"):
        schema.check_table(table.set_column(arrow.get_field_index("origin_offset"), "origin_offset",
                                            pa.array(["0"])))
