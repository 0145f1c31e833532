"""The `webtext2` recipe stage and CLI on the embedded sample: a Pushshift dump whose links point at pages served on
loopback during the run, through links, fetch and the CommonCrawl extraction path to document shards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from corpusforge import recipe, schema
from corpusforge.formats import site as site_folder
from corpusforge.sample import reddit as sample_reddit
from corpusforge.sources import webtext2
from corpusforge.runtime import RunContext

ROOT = Path(__file__).resolve().parent.parent


def shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet"))


def documents(folder: Path) -> list[dict]:
    rows = []
    for shard in shards(folder):
        table = pq.read_table(shard)
        schema.check_table(table, "document")
        rows.extend(table.to_pylist())
    return rows


def write_recipe(tmp_path: Path, inputs: Path, **extra_toml: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(f"""
[run]
output = "{tmp_path / 'out'}"

[webtext2]
pushshift = ["{inputs / 'RS_*.zst'}"]
output = "{tmp_path / 'out' / 'webtext2'}"
sample_site = "{inputs / 'site'}"
{extra_toml.get('webtext2', '')}

[webtext2.links]
drop_nsfw = true
buckets = 2

[webtext2.fetch]
host_interval_s = 0.1

[webtext2.extract]
min_lang_score = 0.5
""")
    return path


@pytest.fixture(scope="module")
def sample_inputs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "reddit"
    sample_reddit.build(out, seed=1234)
    return out


def test_sample_build_is_deterministic(sample_inputs, tmp_path):
    again = tmp_path / "reddit"
    sample_reddit.build(again, seed=1234)
    files = sorted(p.relative_to(sample_inputs) for p in sample_inputs.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((sample_inputs / f).read_bytes() == (again / f).read_bytes() for f in files)


def test_stage_on_the_sample(sample_inputs, tmp_path, dask_client):
    rec = recipe.load(write_recipe(tmp_path, sample_inputs))
    config = rec.sections["webtext2"]
    summary = webtext2.run(config, RunContext(client=dask_client))

    # Links: 24 submissions; 2 self posts, 1 NSFW, 2 low scores, 4 blocked domains and 1 image are dropped, and
    # the ferry story submitted twice (once with tracking parameters) is one link.
    links = summary.extra["links"]["counts"]
    assert (links["submissions"], links["candidates"], links["links"]) == (24, 14, 13)
    assert (links["dropped_self_post"], links["dropped_nsfw"], links["dropped_low_score"]) == (2, 1, 2)
    assert (links["dropped_blocked_domain"], links["dropped_non_html"]) == (4, 1)
    fetched = summary.extra["fetch"]["counts"]
    assert fetched["fetched"] == 10 and fetched["robots_disallowed"] == 1
    assert fetched["http_404"] == 1 and fetched["non_html"] == 1

    docs = documents(Path(config.output))
    assert summary.counts["documents"] == len(docs) == 10
    assert summary.by_lang == {"en": 4, "de": 2, "fr": 2, "es": 2}
    by_url = {d["url"]: d for d in docs}
    assert all(d["source"] == "webtext2" and d["origin_file"].endswith(".warc.gz") for d in docs)
    ferry = by_url["http://news.harbourlight.sample.invalid/harbour/2024/03/ferry-timetable-changes"]
    assert (ferry["reddit_score"], ferry["subreddit"]) == (48, "Scotland")  # the best of its two submissions
    lens = by_url["http://news.harbourlight.sample.invalid/harbour/2024/03/volunteers-restore-lighthouse-lens"]
    assert (lens["reddit_score"], lens["subreddit"]) == (231, "lighthouses")  # reached through a 301
    assert "volunteers" in lens["text"] and "cookies" not in lens["text"]  # boilerplate left behind
    assert not any("/drafts/" in u for u in by_url)  # robots.txt said no
    assert json.loads((Path(config.output) / "_summary.json").read_text())["extra"]["fetch"]["counts"]["fetched"] == 10

    # A re-run resumes everything and leaves the shards byte for byte as they were.
    before = {p.name: p.read_bytes() for p in shards(Path(config.output))}
    again = webtext2.run(config, RunContext(client=dask_client))
    assert again.resumed_files == again.files == 2 and again.extra["fetch"]["resumed_files"] == 2
    assert {p.name: p.read_bytes() for p in shards(Path(config.output))} == before


def test_recipe_errors_name_the_key(sample_inputs, tmp_path):
    bad = write_recipe(tmp_path, sample_inputs, webtext2="[webtext2.reddit]\nsubreddits = [\"science\"]")
    with pytest.raises(recipe.RecipeError, match="exactly one link source"):
        recipe.load(bad)
    text = write_recipe(tmp_path, sample_inputs).read_text().replace("min_lang_score = 0.5", "min_lang_score = 'x'")
    (tmp_path / "recipe.toml").write_text(text)
    with pytest.raises(recipe.RecipeError, match="min_lang_score"):
        recipe.load(tmp_path / "recipe.toml")


@pytest.mark.slow
def test_cli_links_then_fetch(sample_inputs, tmp_path):
    """The two commands a user runs, as subprocesses, against the sample served on loopback."""
    env_run = dict(cwd=ROOT, capture_output=True, text=True, timeout=300)
    cli = [sys.executable, "-m", "corpusforge.cli", "webtext2"]
    done = subprocess.run(cli + ["links", "--pushshift", str(sample_inputs / "RS_2024-03.zst"), "--drop-nsfw",
                                 "--output", str(tmp_path / "links"), "--buckets", "2", "--workers", "1"], **env_run)
    assert done.returncode == 0, done.stderr
    assert "links" in done.stderr and json.loads((tmp_path / "links" / "_summary.json").read_text())[
        "counts"]["links"] == 13
    with site_folder.serve(sample_inputs / "site") as address:
        done = subprocess.run(cli + ["fetch", str(tmp_path / "links"), "--output", str(tmp_path / "docs"),
                                     "--resolve", f"*.sample.invalid={address}", "--host-interval", "0.1",
                                     "--min-lang-score", "0.5", "--workers", "1", "--fail-on-error"], **env_run)
    assert done.returncode == 0, done.stderr
    assert len(documents(tmp_path / "docs")) == 10
    assert len(list((tmp_path / "docs" / "warc").glob("*.warc.gz"))) == 2


def test_a_run_from_scratch_gives_the_same_bytes(sample_inputs, tmp_path, dask_client):
    """The sample's site is a fixed snapshot: fetching it again from scratch (hosts concurrently, so pages finish
    in another order) gives the same WARCs, fetch logs, link table and shards. Only the task times in the
    summaries and the resume fingerprints (which hold the inputs' modification times) may differ."""
    config = recipe.load(write_recipe(tmp_path, sample_inputs)).sections["webtext2"]
    out = Path(config.output)
    runs = []
    for name in ("first", "again"):
        webtext2.run(config, RunContext(client=dask_client))
        runs.append(out.rename(tmp_path / name))
    files = sorted(p.relative_to(runs[0]) for p in runs[0].rglob("*") if p.is_file()
                   and "_fingerprints" not in p.parts and p.name not in ("_summary.json", "_report.json"))
    assert files == sorted(p.relative_to(runs[1]) for p in runs[1].rglob("*") if p.is_file()
                           and "_fingerprints" not in p.parts and p.name not in ("_summary.json", "_report.json"))
    assert any(f.name.endswith(".warc.gz") for f in files) and any(f.suffix == ".parquet" for f in files)
    assert [f for f in files if (runs[0] / f).read_bytes() != (runs[1] / f).read_bytes()] == []

    def untimed(value):
        if isinstance(value, dict):
            return {k: untimed(v) for k, v in value.items() if k != "seconds"}
        return [untimed(v) for v in value] if isinstance(value, list) else value

    for summary in [*runs[0].rglob("_summary.json"), *runs[0].rglob("_report.json")]:
        again = runs[1] / summary.relative_to(runs[0])
        assert untimed(json.loads(summary.read_text())) == untimed(json.loads(again.read_text()))
