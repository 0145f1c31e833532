"""The quality stage (corpusforge.quality.run) on a real Dask cluster: over the sample crawl it drops exactly the junk
pages, each for the rule `_expected.json` names, and keeps the articles; one output shard per input shard, sources
it does not filter passed through unchanged, a seeded sample of what was dropped; a re-run resumes, a run on
another number of workers writes byte-identical files, a damaged input shard is reported; recipe errors name the
key; the CLI runs it."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from shard_io import read_errors

from corpusforge import cli, recipe, runtime, schema
from corpusforge.documents import make_document
from corpusforge.quality import ClassifierConfig, QualityConfig, heuristics, run
from corpusforge.sample import crawl
from corpusforge.sources import commoncrawl
from corpusforge.runtime import RunContext

SEED = 1234


def _write(path: Path, rows: list[dict]) -> None:
    with runtime.ShardWriter(path) as writer:
        writer.write_rows(rows)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, dask_client) -> dict:
    """The sample crawl through the commoncrawl stage, a webtext2 shard and a wikipedia shard of the sample's
    English articles (plus one spam page), and reference shards for the classifier."""
    root = tmp_path_factory.mktemp("quality-inputs")
    crawl.build(root / "crawl", SEED)
    commoncrawl.run(commoncrawl.CommonCrawlConfig(inputs=[str(root / "crawl" / "*.warc.gz")], min_lang_score=0.5,
                                                  output=str(root / "commoncrawl")),
                    RunContext(client=dask_client))
    texts = crawl.load_texts()
    english = [a for a in texts["article"] if a["site"] in ("courier", "greenthumb", "kitchen")
               and a.get("junk") in (None, "gopher_stop_words")]
    web = [make_document(source="webtext2", url=f"http://blog.example/{a['key']}", text=a["text"].strip(),
                         lang="en", lang_score=0.99, origin_file="links.warc.gz", origin_offset=i, reddit_score=5)
           for i, a in enumerate(english)]
    _write(root / "webtext2" / "web.parquet", web)
    wiki = [make_document(source="wikipedia", url=f"https://en.wikipedia.example/wiki/{a['key']}",
                          text=a["text"].strip(), lang=a.get("lang", "en"), lang_score=0.9, origin_file="dump.xml",
                          page_id=i) for i, a in enumerate(texts["article"])]
    _write(root / "wikipedia" / "wiki.parquet", wiki)
    expected = json.loads((root / "crawl" / "_expected.json").read_text(encoding="utf-8"))
    return {"root": root, "expected": expected, "web": web, "wiki": wiki,
            "inputs": [str(root / "commoncrawl"), str(root / "webtext2"), str(root / "wikipedia")]}


def config(inputs: dict, **changes) -> QualityConfig:
    classifier = ClassifierConfig(positives=[str(inputs["root"] / "wikipedia"), str(inputs["root"] / "webtext2")],
                                  negatives=[str(inputs["root"] / "commoncrawl")], keep="pareto")
    return QualityConfig(**{"inputs": inputs["inputs"], "seed": SEED, "classifier": classifier, "dropped_sample": 5,
                            **changes})


@pytest.fixture(scope="module")
def filtered(inputs, tmp_path_factory, dask_client) -> tuple[Path, runtime.StageSummary]:
    out = tmp_path_factory.mktemp("quality") / "out"
    return out, run(dataclasses.replace(config(inputs), output=str(out)), RunContext(client=dask_client))


def _shards(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("_"))


def read_docs(folder: Path) -> list[dict]:
    """The documents of a stage's shards (not its `_dropped.parquet`), each shard checked against the contract."""
    rows = []
    for shard in _shards(folder):
        table = pq.read_table(shard)
        schema.check_table(table)
        rows += table.to_pylist()
    return rows


def test_junk_pages_dropped_for_their_rule_and_the_rest_kept_or_scored(inputs, filtered):
    out, summary = filtered
    dropped = pq.read_table(out / "_dropped.parquet")
    schema.check_table(dropped, "dropped")
    reason_of = dict(zip(dropped.column("url").to_pylist(), dropped.column("reason").to_pylist()))
    docs = read_docs(out)
    kept = {d["url"]: d for d in docs}
    for url, page in inputs["expected"]["pages"].items():
        if page["junk"]:
            assert reason_of.get(url) == page["junk"] and url not in kept, url
        else:  # an article: the rules pass it; GPT-3's rule keeps it or drops it by its score
            assert url in kept or reason_of.get(url, "classifier") == "classifier", url
    junk = sum(bool(p["junk"]) for p in inputs["expected"]["pages"].values())
    rules = {k: v for k, v in summary.counts.items() if k.startswith(("dropped_gopher", "dropped_c4"))}
    assert sum(rules.values()) == junk + 1 == 5  # the crawl's four junk pages, and the spam page as webtext2
    assert summary.counts["documents"] == summary.counts["kept"] + sum(
        v for k, v in summary.counts.items() if k.startswith("dropped_"))
    # GPT-3's rule keeps few of the negative class, and which ones is the seeded draw of each id: judge the score of
    # every CommonCrawl document seen, kept or in the classifier's sample of what it removed
    scored = [d["quality_score"] for d in docs if d["source"] == "commoncrawl"] + [
        d["value"] for d in dropped.to_pylist() if d["reason"] == "classifier" and d["source"] == "commoncrawl"]
    assert scored and all(0.0 < score < 1.0 for score in scored)
    assert all(0.0 < d["value"] < 1.0 for d in dropped.to_pylist() if d["reason"] == "classifier")  # the score
    assert summary.extra["classifier"]["documents"]["negatives"] == summary.counts.get("commoncrawl:kept", 0) + \
        summary.counts.get("dropped_classifier", 0) + junk  # every CommonCrawl document was in the training sample


def test_one_shard_per_input_and_unfiltered_sources_pass_unchanged(inputs, filtered):
    out, summary = filtered
    inputs_shards = [s for folder in inputs["inputs"] for s in _shards(Path(folder))]
    assert len(_shards(out)) == len(inputs_shards) == summary.files
    web = [d for d in read_docs(out) if d["source"] == "webtext2"]
    # the articles pass every rule, the spam page does not
    assert {d["id"] for d in web} == {d["id"] for d in inputs["web"] if not d["url"].endswith("seeds-shop")}
    assert all(d["quality_score"] is None for d in web)  # the classifier judges commoncrawl only
    wiki = sorted((d for d in read_docs(out) if d["source"] == "wikipedia"), key=lambda d: d["page_id"])
    original = sorted(read_docs(Path(inputs["inputs"][2])), key=lambda d: d["page_id"])
    assert wiki == original  # not judged at all: the same rows, the score null


def test_dropped_sample_is_seeded_and_bounded(inputs, filtered, tmp_path, dask_client):
    out, _ = filtered
    dropped = pq.read_table(out / "_dropped.parquet").to_pylist()
    assert all(d["reason"] in (*heuristics.RULE_NAMES, "classifier") for d in dropped)
    per_reason = {}
    for d in dropped:
        per_reason[d["reason"]] = per_reason.get(d["reason"], 0) + 1
    assert max(per_reason.values()) <= 5
    smaller = run(dataclasses.replace(config(inputs, dropped_sample=1), output=str(tmp_path / "one")),
                  RunContext(client=dask_client))
    assert smaller.extra["dropped_sample"] == len(per_reason)


def test_rerun_resumes_and_other_workers_write_identical_files(inputs, filtered, tmp_path, dask_client):
    out, first = filtered
    before = {p.name: p.read_bytes() for p in _shards(out)}
    again = run(dataclasses.replace(config(inputs), output=str(out)), RunContext(client=dask_client))
    assert again.resumed_files == again.files == first.files
    assert {p.name: p.read_bytes() for p in _shards(out)} == before
    assert again.counts == first.counts

    other = tmp_path / "other"
    run(dataclasses.replace(config(inputs), output=str(other)), RunContext(workers=1))  # a fresh one-worker cluster
    assert {p.name: p.read_bytes() for p in _shards(other)} == before
    for name in ("_classifier.npz", "_dropped.parquet"):
        assert (other / name).read_bytes() == (out / name).read_bytes(), name


def test_a_cluster_of_separate_processes_writes_identical_files(inputs, filtered, tmp_path, separate_cluster):
    """`--scheduler tcp://...`: a `dask scheduler` and `dask worker` processes started apart, as a user would, train
    the same model and keep the same documents."""
    out, _ = filtered
    remote = tmp_path / "remote"
    run(dataclasses.replace(config(inputs), output=str(remote)), RunContext(scheduler=separate_cluster))
    assert {p.name: p.read_bytes() for p in _shards(remote)} == {p.name: p.read_bytes() for p in _shards(out)}
    for name in ("_classifier.npz", "_dropped.parquet"):
        assert (remote / name).read_bytes() == (out / name).read_bytes(), name


def test_damaged_shard_is_reported_and_the_others_filtered(inputs, tmp_path, dask_client):
    folder = tmp_path / "in"
    good, *_ = _shards(Path(inputs["inputs"][1]))
    folder.mkdir()
    shutil.copy(good, folder / "good.parquet")
    data = good.read_bytes()
    (folder / "cut.parquet").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    summary = run(QualityConfig(inputs=[str(folder)], classifier=ClassifierConfig(sources=[]), output=str(out)),
                  RunContext(client=dask_client))
    errors = read_errors(out)
    assert len(errors) == 1 and errors[0]["file"] == str(folder / "cut.parquet") and errors[0]["offset"] == 0
    assert "unreadable document shard" in errors[0]["reason"]
    assert summary.errors == 1 and summary.counts["kept"] == len(inputs["web"]) - 1  # all but the spam page
    assert len(_shards(out)) == 2  # the damaged input's output holds what could be read: nothing


@pytest.mark.parametrize("body, message", [
    ("[quality.classifier]\nkeep = 'some'\n", "[quality] classifier keep: must be one of ['pareto', 'all']"),
    ("[quality.classifier]\nsources = ['commoncrawl']\n",
     "[quality] classifier: positives and negatives: give both"),
    ("[quality.classifier]\nmodel = 'm.npz'\nalpha = -1\n", "[quality] classifier: alpha: must be positive"),
    ("dropped_sample = -1\n[quality.classifier]\nmodel = 'm.npz'\n", "[quality]: dropped_sample: must be >= 0"),
    ("threshold = 3\n", "[quality]: unknown key(s) ['threshold']"),
])
def test_recipe_errors_name_the_key(tmp_path, body, message):
    path = tmp_path / "bad.toml"
    path.write_text("[quality]\ninputs = ['x']\n" + body)
    with pytest.raises(recipe.RecipeError) as err:
        recipe.load(path)
    assert message in str(err.value)


def test_cli_runs_the_rules_it_is_given(inputs, tmp_path):
    out = tmp_path / "cli"
    code = cli.main(["quality", inputs["inputs"][0], "--output", str(out), "--classifier-sources",
                     "--disable", "c4_terminal_punctuation", "--threshold", "gopher_stop_words=0", "--workers", "1"])
    assert code == 0
    counts = json.loads((out / runtime.SUMMARY_FILE).read_text())["counts"]
    # the tag page of headlines and the spam page pass the two rules changed; the other junk does not
    assert {k: v for k, v in counts.items() if k.startswith("dropped_")} == {"dropped_c4_curly_bracket": 1,
                                                                            "dropped_c4_lorem_ipsum": 1}
    assert counts["kept"] == counts["documents"] - 2 and "scored" not in counts or counts["scored"] == 0
