"""Custom quality filters (corpusforge/quality/custom.py): functions named in the recipe, loaded from a file in
tests/, run on a Dask cluster of separate processes; their drop reasons reach `_summary.json`, `_dropped.parquet`
and the HTML report like the built-in rules'; a bad name is a one-line error; a filter's verdict may be a keep mask,
reasons or the filtered batch."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpusforge import cli, quality, recipe, runtime, stats
from corpusforge.documents import make_document
from corpusforge.mix import mixer, tokenizer
from corpusforge.quality import custom
from corpusforge.runtime import RunContext

FILTERS = Path(__file__).with_name("custom_filters.py")
PROSE = ("The river town kept its old stone bridge, and every spring the council argued about whether to widen it "
         "for the carts that came down from the hill farms with apples and cheese.")


def _documents() -> list[dict]:
    texts = ([f"{PROSE} Story {i}." for i in range(8)]
             + ["THIS IS THE BEST OFFER EVER, CLICK NOW AND WIN BIG TODAY " * 3,
                f"{PROSE} Visit our casino tonight.", f"{PROSE} Buy a lottery ticket.", "Too short."])
    return [make_document(source="webtext2" if i % 2 else "wikipedia", url=f"http://site.example/{i}", text=t,
                          lang="en", lang_score=0.99, origin_file="docs.jsonl", origin_offset=i)
            for i, t in enumerate(texts)]


def _config(inputs: Path, output: Path, filters: list[dict]) -> quality.QualityConfig:
    return recipe.from_dict(quality.QualityConfig, {
        "inputs": [str(inputs)], "output": str(output), "filters": filters,
        "heuristics": {"sources": []}, "classifier": {"sources": []}}, "[quality]")


def test_custom_filters_on_a_separate_cluster_reach_summary_and_report(tmp_path, separate_cluster):
    shards = tmp_path / "docs"
    with runtime.ShardWriter(shards / "docs.parquet") as writer:
        writer.write_rows(_documents())
    run = tmp_path / "run"
    filters = [{"function": f"{FILTERS}:no_shouting"},
               {"function": f"{FILTERS}:by_topic", "sources": ["webtext2", "wikipedia"]},
               {"function": f"{FILTERS}:long_only", "name": "too_short", "sources": ["webtext2"]}]
    ctx = RunContext(scheduler=separate_cluster)
    summary = quality.run(_config(shards, run / "quality", filters), ctx)

    expected = {"dropped_no_shouting": 1, "dropped_casino": 1, "dropped_lottery": 1, "dropped_too_short": 1}
    written = json.loads((run / "quality" / runtime.SUMMARY_FILE).read_text())
    assert {k: v for k, v in written["counts"].items() if k.startswith("dropped_")} == expected
    assert written["counts"]["kept"] == 8 and summary.counts["kept"] == 8
    assert written["extra"]["filters"]["too_short"] == f"{FILTERS}:long_only"
    dropped = pq.read_table(run / "quality" / runtime.DROPPED_FILE).to_pylist()
    assert sorted(r["reason"] for r in dropped) == ["casino", "lottery", "no_shouting", "too_short"]
    assert next(r for r in dropped if r["reason"] == "too_short")["text"] == "Too short."

    # The kept documents through a tokenizer and the mix, then the report of the run.
    tokenizer.run(tokenizer.TokenizerConfig(inputs=[str(run / "quality")], output=str(run / "tokenizer"),
                                            vocab_size=300, min_frequency=1), ctx)
    mixer.run(mixer.MixConfig(sets=[mixer.MixSet("web", "webtext2", [str(run / "quality")], 1.0),
                                    mixer.MixSet("wiki", "wikipedia", [str(run / "quality")], 1.0)],
                              output=str(run / "corpus"), tokenizer=str(run / "tokenizer" / "tokenizer.json"),
                              budget_tokens=10_000, shard_tokens=5_000, row_group_tokens=1_000), ctx)
    stats.report_corpus(stats.StatsConfig(corpus=str(run / "corpus"), html=str(run / "report.html")))
    page = (run / "report.html").read_text(encoding="utf-8")
    for reason in ("no_shouting", "casino", "lottery", "too_short"):
        assert f"dropped_{reason} 1" in page, reason
        assert f"quality: {reason}: 1 dropped" in page, reason

    # A re-run resumes: the same filters (same code) leave the finished shard alone.
    again = quality.run(_config(shards, run / "quality", filters), ctx)
    assert again.resumed_files == 1


@pytest.mark.parametrize("spec, says", [
    ("nomodule:fn", "no module named 'nomodule'"),
    (f"{FILTERS}:missing", "has no function 'missing'"),
    ("no/such/file.py:fn", "no such file"),
    ("justaname", "expected module:function"),
])
def test_a_bad_filter_name_is_one_line(tmp_path, capsys, spec, says):
    shards = tmp_path / "docs"
    with runtime.ShardWriter(shards / "docs.parquet") as writer:
        writer.write_rows(_documents()[:2])
    code = cli.main(["quality", str(shards), "-o", str(tmp_path / "out"), "--set",
                     f'filters=[{{function="{spec}"}}]'])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and says in err, err
    recipe_file = tmp_path / "r.toml"
    recipe_file.write_text(f'[quality]\ninputs = ["{shards}"]\n[[quality.filters]]\nfunction = "{spec}"\n')
    with pytest.raises(recipe.RecipeError, match=r"\[quality\] filters\[0\].*" + says.split("'")[0]):
        recipe.load(recipe_file)


def test_verdicts_a_mask_reasons_or_the_filtered_batch():
    part = pa.table({"id": ["a", "b", "c"], "text": ["x", "y", "z"]})
    assert custom.verdict_reasons([True, False, True], part, "f", "m:f").tolist() == ["", "f", ""]
    assert custom.verdict_reasons(["", None, "bad:one"], part, "f", "m:f").tolist() == ["", "", "bad_one"]
    assert custom.verdict_reasons(part.slice(1, 1), part, "f", "m:f").tolist() == ["f", "", "f"]
    with pytest.raises(ValueError, match="returned 2 verdicts for 3 documents"):
        custom.verdict_reasons([True, False], part, "f", "m:f")
    with pytest.raises(ValueError, match="booleans .* or strings"):
        custom.verdict_reasons([1, 0, 1], part, "f", "m:f")
