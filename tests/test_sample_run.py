"""`make corpus` for real: `corpusforge run pipelines/sample.toml` (into a temporary folder) as a user runs it, once
for the module. What its console says stays under a line budget (one line per stage's progress, each summary once,
the sample in plain words, the damaged record called expected); the corpus funnel built from the stages' files
adds up per source from stage to stage and agrees with independent counts (the sample's own list of what it wrote,
the dedup shards' text); the HTML report shows the funnel, the duplicates beside the quality examples and the
errors, and renders in a real headless chromium where one is installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from corpusforge.stats import collect

ROOT = Path(__file__).resolve().parents[1]
LINE_BUDGET = 130  # 106 lines measured (+4 when Dask warns that its dashboard port is taken); 438 before
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """The sample recipe run by the `corpusforge` command into a fresh folder: (folder, console output)."""
    root = tmp_path_factory.mktemp("sample-run")
    recipe = root / "sample.toml"
    recipe.write_text((ROOT / "pipelines" / "sample.toml").read_text(encoding="utf-8")
                      .replace('"build/sample', f'"{root}/build/sample'), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "80"}
    env.pop("CORPUSFORGE_PROGRESS", None)
    proc = subprocess.run([sys.executable, "-m", "corpusforge.cli", "run", str(recipe)], cwd=root, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return root / "build" / "sample", proc.stdout


def test_the_console_stays_under_a_line_budget(sample_run):
    _, output = sample_run
    lines = output.splitlines()
    assert len(lines) <= LINE_BUDGET, "\n".join(lines)
    # Progress lines now and then (every 30 s), not one per file; no per-phase lines; each summary once.
    progress = [line for line in lines if line.startswith("commoncrawl: ") and "/4 files, " in line]
    assert progress[-1].startswith("commoncrawl: 4/4 files") and len(progress) < 4
    assert not [line for line in lines if "task(s) in" in line]
    titles = [line.split(": summary")[0] for line in lines if ": summary: " in line]
    assert len(titles) == len(set(titles)) and "webtext2 links" in titles and "dedup" in titles
    assert "corpus (epochs" in output and output.count("(epochs for a") == 1  # the mix's sets table, once
    # The sample in plain words, and its damaged record called expected where its error is counted.
    assert "{'" not in output and "a crawl of 4 WARC files" in output
    assert "1 (1 expected" in output
    assert "the corpus funnel" in output and "report: " in output


def test_the_funnel_adds_up_per_source_from_stage_to_stage(sample_run):
    out, _ = sample_run
    stats = collect.corpus_stats(out / "corpus")
    funnel = stats["funnel"]
    assert set(funnel) == {"commoncrawl", "webtext2", "wikipedia", "books"}
    for source, steps in funnel.items():
        names = [s["step"] for s in steps]
        assert names[-3:] == ["after dedup", "after decontamination", "tokens in the mix"], (source, names)
        for before, step in zip(steps, steps[1:]):
            # What went in is what came out of the step before, and is what came out plus what was dropped, set
            # apart or failed, less what splitting added.
            assert step["in"] == before["documents"], (source, step)
            assert (step["in"] + step["added"] == step["documents"] + sum(step["dropped"].values())
                    + sum(step["bookkeeping"].values()) + step["failed"]), (source, step)
        mixed = [s for s in stats["sets"] if s["source"] == source]
        assert steps[-1]["documents"] == sum(s["documents"] for s in mixed)
        assert steps[-1]["tokens"] == sum(s["tokens"] for s in mixed) > 0
    web = funnel["commoncrawl"]
    assert [s["step"] for s in web[:5]] == ["records read", "HTML responses", "extracted", "language kept",
                                            "quality kept"]
    assert set(web[1]["bookkeeping"]) >= {"request", "metadata", "warcinfo"}  # apart from the drop reasons
    assert not set(web[1]["bookkeeping"]) & set(web[1]["dropped"])
    assert web[4]["dropped"] and web[5]["dropped"]  # the junk pages and the near-duplicate copies
    # Independent counts: the records and pages the sample says it wrote (less the damaged one, an expected error)
    expected = json.loads((out / "inputs" / "crawl" / "_expected.json").read_text(encoding="utf-8"))
    assert web[0]["documents"] == sum(expected["records"].values())
    assert web[1]["documents"] == len(expected["pages"])
    assert web[0]["errors"] == web[0]["expected_errors"] == 1
    # ... and the text bytes of each source in the dedup stage's shards.
    text_bytes: Counter[str] = Counter()
    for shard in (out / "dedup").glob("*.parquet"):
        if not shard.name.startswith("_"):
            for row in pq.read_table(shard, columns=["source", "text"]).to_pylist():
                text_bytes[row["source"]] += len(row["text"].encode("utf-8"))
    for source, steps in funnel.items():
        assert next(s for s in steps if s["step"] == "after dedup")["bytes"] == text_bytes[source]


def test_the_report_shows_the_funnel_duplicates_thresholds_and_errors(sample_run):
    out, _ = sample_run
    page = (out / "report.html").read_text(encoding="utf-8")
    for text in ('id="funnel"', 'id="plot-funnel"', "records read", "after decontamination", "tokens in the mix",
                 "WARC bookkeeping set apart", 'id="dedup-removed"', "estimated Jaccard similarity",
                 'id="quality-dropped"', "(threshold ", 'id="errors"',
                 "the sample damages this record on purpose"):
        assert text in page, text
    assert page.index('id="quality-dropped"') < page.index('id="dedup-removed"') < page.index('id="errors"')
    assert "<script" not in page  # every text from the corpus and the errors is escaped


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no chromium and chromedriver installed (Debian: apt-get "
                                                      "install chromium chromium-driver)")
def test_the_report_renders_in_a_real_browser(sample_run):
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    out, _ = sample_run
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,1600"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    try:
        driver.get((out / "report.html").as_uri())
        widths = driver.execute_script("return [...document.images].map(i => i.complete ? i.naturalWidth : 0)")
        assert widths and all(w > 300 for w in widths)  # every plot decoded, the funnel's among them
        funnel = driver.find_element("css selector", "#plot-funnel img")
        assert funnel.size["height"] > 100
        text = driver.find_element("tag name", "body").text
        assert "records read" in text and "tokens in the mix" in text and "warcinfo" in text
        assert "unreadable record or stream" in text  # the damaged record's error, listed as text
    finally:
        driver.quit()
