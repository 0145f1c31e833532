"""`corpusforge stats`: numbers that agree with an independent count of the input documents, drop reasons read from
real stage files, checksum verification that catches a damaged shard, and an HTML report that holds every plot and
needs no network; after a real quality stage, its quality scores per set and (escaped) examples of what its rules
dropped."""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
from collections import Counter
from html.parser import HTMLParser

import numpy as np
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from mixdata import commoncrawl_docs, read_corpus, webtext2_docs, wikipedia_docs, write_documents

from corpusforge import cli, quality, runtime, stats
from corpusforge.dedup import DUPLICATES_FILE
from corpusforge.documents import find_shards, make_document
from corpusforge.mix import manifest, mixer, tokenizer
from corpusforge.sample import crawl
from corpusforge.stats import collect, report, tables
from corpusforge.runtime import RunContext

pytestmark = pytest.mark.shared_data


@pytest.fixture()
def run_dir(corpus, documents, tmp_path):
    """A run folder as `corpusforge run` leaves it: the corpus, and a dedup stage folder written by the real
    writers (summary with removal counters, errors, duplicates list)."""
    run = tmp_path / "run"
    shutil.copytree(corpus, run / "corpus")
    dedup = run / "dedup"
    summary = runtime.StageSummary(stage="dedup", files=3, counts={
        "documents": 640, "removed_exact": 3, "removed_near": 2, "books:removed_near": 2, "removed_url": 0})
    errors = [{"file": "a.parquet", "offset": 7, "stage": "dedup", "reason": "unreadable document shard: OSError: x"},
              {"file": "b.parquet", "offset": 0, "stage": "dedup", "reason": "unreadable document shard: EOF"}]
    runtime.finish_stage(dedup, summary, errors)
    with runtime.ShardWriter(dedup / DUPLICATES_FILE, "duplicate") as writer:
        writer.write_rows([{"removed_id": "a" * 32, "removed_source": "books", "kept_id": "b" * 32,
                            "kept_source": "books", "kind": kind, "jaccard": 0.9}
                           for kind in ("exact", "exact", "exact", "near", "near")])
    return run


def test_numbers_agree_with_an_independent_count(run_dir, documents, tokenizer_file):
    result = stats.corpus_stats(run_dir / "corpus")
    tok = tokenizer.load(tokenizer_file)
    table = pq.read_table(find_shards([str(documents)])[0], columns=["source", "text", "lang"])
    rows = [r for r in table.to_pylist() if r["text"]]
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
    for s in result["sets"]:
        if s["source"] == "books":
            continue  # split between books1 and books2; checked as a pair below
        docs = by_source[s["name"]]
        lengths = np.array([len(tok.encode(d["text"], add_special_tokens=False).ids) for d in docs])
        assert s["documents"] == len(docs) and s["tokens"] == lengths.sum()
        assert s["text_bytes"] == sum(len(d["text"].encode()) for d in docs)
        assert s["languages"] == dict(sorted(Counter(d["lang"] for d in docs).items(), key=lambda kv: (-kv[1], kv[0])))
        for q in collect.PERCENTILES:
            assert s["length"][f"p{q}"] == int(np.percentile(lengths, q, method="inverted_cdf"))
        assert s["length"]["max"] == lengths.max() and s["length"]["mean"] == pytest.approx(lengths.mean())
        assert sum(s["length_histogram"]["counts"]) + s["length_histogram"]["empty"] == len(docs)
    books = [s for s in result["sets"] if s["source"] == "books"]
    assert sum(s["documents"] for s in books) == len(by_source["books"])
    assert result["overall"]["documents"] == len(rows)
    assert sum(s["token_share"] for s in result["sets"]) == pytest.approx(1.0)


def test_stage_removals_errors_and_duplicates(run_dir):
    stages = {s["stage"]: s for s in stats.corpus_stats(run_dir / "corpus")["stages"]}
    assert list(stages) == ["dedup", "mix"], "pipeline order"
    dedup = stages["dedup"]
    assert dedup["drops"] == {"removed_exact": 3, "removed_near": 2}
    assert dedup["errors_by_reason"] == {"unreadable document shard": 2}
    assert dedup["duplicates"] == {"rows": 5, "by_kind": {"exact": 3, "near": 2}, "by_source": {"books": 5}}
    assert stages["mix"]["drops"] == {"dropped_empty_text": 12}  # the sample's empty web pages
    assert stages["mix"]["documents"] == 644
    # Without a quality stage: no dropped samples, no scores, and the report leaves the section out.
    assert all(s["dropped_sample"] is None for s in stages.values())
    result = stats.corpus_stats(run_dir / "corpus")
    assert all(s["quality_score"] is None for s in result["sets"])
    assert "What the quality rules removed" not in report.render(result)


def test_verify_catches_a_damaged_shard(run_dir, capsys):
    corpus = run_dir / "corpus"
    assert cli.main(["stats", str(corpus), "--verify"]) == 0
    shard = manifest.load(corpus)["sets"][1]["train"]["shards"][0]["path"]
    data = bytearray((corpus / shard).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (corpus / shard).write_bytes(bytes(data))
    assert cli.main(["stats", str(corpus), "--verify", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["verify"]["problems"] == [{"path": shard, "problem":
                                            "sha256 differs from the manifest (the file is damaged)"}]
    (corpus / shard).unlink()
    result = stats.corpus_stats(corpus, verify=True)
    assert result["verify"]["problems"] == [{"path": shard, "problem": "missing"}]
    assert [u["path"] for u in result["unreadable_shards"]] == [shard]


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_html_report_has_every_plot_and_needs_no_network(run_dir, tmp_path):
    out = tmp_path / "report.html"
    assert cli.main(["stats", str(run_dir / "corpus"), "--html", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    parser = _Page()
    parser.feed(page)
    figures = [attrs["id"] for tag, attrs in parser.tags if tag == "figure"]
    assert figures == [f"plot-{name}" for name in report.PLOTS]
    images = [attrs["src"] for tag, attrs in parser.tags if tag == "img"]
    assert len(images) == len(report.PLOTS)
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # Self-contained: nothing to fetch (no scripts, stylesheets, frames or remote URLs in any attribute or CSS).
    assert not [tag for tag, _ in parser.tags if tag in ("script", "link", "iframe", "object", "embed")]
    for _, attrs in parser.tags:
        for name, value in attrs.items():
            assert not (value or "").startswith(("http:", "https:", "//")), (name, value)
    assert "url(" not in page and "@import" not in page
    for name in ("commoncrawl", "webtext2", "books1", "books2", "wikipedia", "removed_exact",
                 "unreadable document shard"):
        assert name in page


def test_json_file_from_recipe_stage(run_dir, tmp_path):
    config = stats.StatsConfig(corpus=str(run_dir / "corpus"), html=None, json=str(tmp_path / "stats.json"))
    summary = stats.run(config, RunContext(console=Console(quiet=True)))
    saved = json.loads((tmp_path / "stats.json").read_text())
    assert saved["verify"]["ok"] and summary.errors == 0
    assert saved["overall"]["tokens"] == manifest.load(run_dir / "corpus")["totals"]["tokens"] == summary.counts["tokens"]


def test_empty_and_single_length_histograms():
    assert collect.length_histogram(Counter()) == {"edges": [], "counts": [], "empty": 0}
    assert collect.length_histogram(Counter({0: 2, 1: 3})) == {"edges": [1.0, 1.414], "counts": [3], "empty": 2}
    hist = collect.length_histogram(Counter({0: 2, 1: 3, 5: 1, 1000: 4}))
    assert hist["empty"] == 2 and sum(hist["counts"]) == 8 and hist["counts"][0] == 3
    assert collect.describe_lengths(Counter({10: 1, 20: 1, 30: 2}))["p50"] == 20
    assert collect.describe_scores(Counter()) is None
    scores = collect.describe_scores(Counter({0: 1, 500: 2, 1000: 1}))  # thousandths: 0.0, 0.5 twice, 1.0
    assert scores["histogram"]["counts"][0] == scores["histogram"]["counts"][-1] == 1  # 1.0 is in the last bin
    assert scores["histogram"]["counts"][10] == 2 and scores["p50"] == 0.5 and scores["max"] == 1.0



def test_warnings_are_counted_apart_from_errors(tmp_path):
    """`_errors.jsonl` lines marked `"level": "warning"` (odd input that lost nothing) are not errors."""
    from corpusforge.stats import collect
    from corpusforge.stats.tables import stage_reasons

    stage = tmp_path / "commoncrawl"
    stage.mkdir()
    (stage / "_summary.json").write_text(json.dumps({"stage": "commoncrawl", "files": 1, "errors": 1, "counts": {}}))
    lines = [{"file": "a.warc.gz", "offset": 0, "reason": "truncated gzip stream: at byte 912"},
             {"file": "a.warc.gz", "offset": 77, "reason": "warcio: Record not followed by newline", "level": "warning"},
             {"file": "a.warc.gz", "offset": 99, "reason": "warcio: Record not followed by newline", "level": "warning"}]
    (stage / "_errors.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    [report] = collect.stage_reports(tmp_path)
    assert report["errors_by_reason"] == {"truncated gzip stream": 1}
    assert report["warnings_by_reason"] == {"warcio": 2}
    assert stage_reasons(report) == [("error: truncated gzip stream", 1), ("warning: warcio", 2)]


SCRIPT = "<script>alert('owned')</script>"


@pytest.fixture(scope="module")
def quality_run(shared_data, tokenizer_file, tmp_path_factory, dask_client):
    """A run folder as `corpusforge run` leaves it with a quality stage: real CommonCrawl and WebText2 documents,
    plus the sample crawl's lorem-ipsum page with a `<script>` tag in its text, through the real quality stage
    (Gopher's and C4's rules; a classifier trained on Wikipedia against CommonCrawl that scores commoncrawl only,
    keep = "all"), then mixed. Returns the run folder and the input documents by id."""
    root = tmp_path_factory.mktemp("quality-run")
    [page] = [a for a in crawl.load_texts()["article"] if a.get("junk") == "c4_lorem_ipsum"]
    junk = make_document(source="commoncrawl", text=f"{SCRIPT}\n{page['text'].strip()}", lang="en", lang_score=0.9,
                         origin_file="crawl.warc.gz", origin_offset=0, url="https://www.kitchen-notes.example/x/")
    cc, web = commoncrawl_docs(shared_data, 120) + [junk], webtext2_docs(shared_data, 40)
    write_documents(root / "inputs" / "commoncrawl", "cc", cc)
    write_documents(root / "inputs" / "webtext2", "web", web)
    write_documents(root / "wikipedia", "wiki", wikipedia_docs(shared_data, 40))
    run = root / "run"
    classifier = quality.ClassifierConfig(positives=[str(root / "wikipedia")],
                                          negatives=[str(root / "inputs" / "commoncrawl")], keep="all")
    quality.run(quality.QualityConfig(inputs=[str(root / "inputs" / source) for source in ("commoncrawl", "webtext2")],
                                      classifier=classifier, dropped_sample=5, output=str(run / "quality")),
                RunContext(client=dask_client))
    inputs = [str(run / "quality")]
    sets = [mixer.MixSet("commoncrawl", "commoncrawl", inputs, 0.7), mixer.MixSet("webtext2", "webtext2", inputs, 0.3)]
    mixer.run(mixer.MixConfig(sets=sets, tokenizer=str(tokenizer_file), budget_tokens=1_000_000, shard_tokens=60_000,
                              row_group_tokens=8_000, val_fraction=0.03, seed=7, output=str(run / "corpus")),
              RunContext(client=dask_client))
    return run, {d["id"]: d for d in cc + web}


def test_quality_drops_and_scores_in_the_json(quality_run, capsys):
    run, docs = quality_run
    assert cli.main(["stats", str(run / "corpus"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    [stage] = [s for s in result["stages"] if s["stage"] == "quality"]
    sample = stage["dropped_sample"]
    # Every reason the stage counted is in the sample, with as many documents as it keeps (5 per reason).
    assert {f"dropped_{reason}" for reason in sample} == set(stage["drops"])
    for reason, entry in sample.items():
        assert entry["sampled"] == min(stage["drops"][f"dropped_{reason}"], 5)
        assert 0 < len(entry["examples"]) == min(entry["sampled"], collect.DROPPED_EXAMPLES)
        for example in entry["examples"]:
            doc = docs[example["id"]]
            assert example["text"] == doc["text"][:collect.EXAMPLE_CHARS]
            assert (example["source"], example["url"], example["origin_file"]) == (doc["source"], doc["url"],
                                                                                   doc["origin_file"])
    [junk] = sample["c4_lorem_ipsum"]["examples"]
    assert junk["text"].startswith(SCRIPT)
    assert junk["value"] == docs[junk["id"]]["text"].lower().count("lorem ipsum") > 0

    scored = read_corpus(run / "corpus", columns=["set", "quality_score"]).to_pylist()
    cc_scores = np.array([r["quality_score"] for r in scored if r["set"] == "commoncrawl"])
    sets = {s["name"]: s for s in result["sets"]}
    assert sets["webtext2"]["quality_score"] is None, "the classifier scores commoncrawl only"
    score = sets["commoncrawl"]["quality_score"]
    assert score["documents"] == len(cc_scores) == sets["commoncrawl"]["documents"]
    assert sum(score["histogram"]["counts"]) == len(cc_scores)
    for q in (10, 50, 90):
        assert score[f"p{q}"] == pytest.approx(np.percentile(np.rint(cc_scores * 1000) / 1000, q,
                                                             method="inverted_cdf"))


def test_quality_sections_of_the_html_and_the_console(quality_run, tmp_path):
    run, _ = quality_run
    console = Console(record=True, width=120, file=io.StringIO())
    result = stats.report_corpus(stats.StatsConfig(corpus=str(run / "corpus"), html=str(tmp_path / "report.html"),
                                                verify=False), console=console)
    commoncrawl = next(s for s in result["sets"] if s["name"] == "commoncrawl")
    text = console.export_text()
    assert "quality_score per set" in text and tables.score_summary(commoncrawl["quality_score"]) in text

    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    parser = _Page()
    parser.feed(page)
    assert not [tag for tag, _ in parser.tags if tag == "script"], "example text is escaped, never markup"
    assert html.escape(SCRIPT) in page and "What the quality rules removed" in page
    [stage] = [s for s in result["stages"] if s["stage"] == "quality"]
    assert [tag for tag, _ in parser.tags].count("details") == len(stage["dropped_sample"])
    for reason, entry in stage["dropped_sample"].items():
        threshold = (stage["thresholds"] or {}).get(reason)
        assert f"quality: {reason}{'' if threshold is None else f' (threshold {threshold:g})'}:" in page
        for example in entry["examples"]:
            assert html.escape(example["text"]) in page
    figures = [attrs["id"] for tag, attrs in parser.tags if tag == "figure"]
    assert figures == [f"plot-{name}" for name in report.PLOTS] and "plot-quality-scores" in figures



def test_damaged_side_files_are_reported_and_the_rest_of_the_report_stands(quality_run, tmp_path):
    """A cut `_dropped.parquet` or `_duplicates.parquet` is one error of its stage, not a failed report."""
    run = tmp_path / "run"
    shutil.copytree(quality_run[0], run)
    dropped = next(run.glob("*/_dropped.parquet"))
    dropped.write_bytes(dropped.read_bytes()[:100])
    (run / "dedup").mkdir(exist_ok=True)
    (run / "dedup" / "_summary.json").write_text(json.dumps({"stage": "dedup", "files": 1, "counts": {}}))
    (run / "dedup" / "_duplicates.parquet").write_bytes(b"PAR1 not really")
    stages = {s["stage"]: s for s in stats.corpus_stats(run / "corpus")["stages"]}
    quality = stages[dropped.parent.name]
    assert quality["dropped_sample"] is None and quality["errors_by_reason"]["unreadable _dropped.parquet"] == 1
    assert quality["drops"]  # the counters from _summary.json still stand
    assert stages["dedup"]["duplicates"] is None
    assert stages["dedup"]["errors_by_reason"] == {"unreadable _duplicates.parquet": 1}
