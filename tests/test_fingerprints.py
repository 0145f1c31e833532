"""Fingerprints and completion marks: a re-run makes again exactly the outputs whose input or settings changed and
says so; `--force` makes everything again; a folder whose stage did not finish is refused by the next stage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cc_fixtures import ARTICLES, pages, warc_bytes
from rich.console import Console

from corpusforge import quality, runtime
from corpusforge.documents import make_document
from corpusforge.sources import commoncrawl as cc
from corpusforge.runtime import RunContext

ROOT = Path(__file__).resolve().parent.parent


def crawl(folder: Path, prefixes: list[str], name: str = "crawl.warc.gz") -> tuple[Path, bytes, list[int]]:
    data, offsets = warc_bytes([r for p in prefixes for r in pages(p)])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder / name, data, offsets


def run_cc(path: Path, out: Path, client, **kw) -> tuple[runtime.StageSummary, str]:
    console = Console(record=True, width=400)
    summary = cc.run(cc.CommonCrawlConfig(inputs=[str(path)], **kw, output=str(out)),
                     RunContext(client=client, console=console))
    return summary, console.export_text()


def test_truncated_input_replaced_by_the_full_file_is_made_again(tmp_path, dask_client):
    path, data, offsets = crawl(tmp_path / "in", ["http://a.ex", "http://b.ex", "http://c.ex", "http://d.ex"])
    records = len(offsets)  # 20 pages; the first download stopped inside the sixth
    path.write_bytes(data[: offsets[5] + 40])
    first, _ = run_cc(path, tmp_path / "out", dask_client)
    assert first.counts["documents"] == 5 and first.errors == 1
    path.write_bytes(data)  # the complete download
    second, text = run_cc(path, tmp_path / "out", dask_client)
    assert second.counts["documents"] == records and second.errors == 0 and second.resumed_files == 0
    assert f"{path}: made again, input changed: {path}" in text
    assert (tmp_path / "out" / "_errors.jsonl").read_text() == ""  # the stale error is gone
    third, text = run_cc(path, tmp_path / "out", dask_client)
    assert third.resumed_files == 1 and "made again" not in text


def test_changed_languages_make_the_shards_again(tmp_path, dask_client):
    path, _, _ = crawl(tmp_path / "in", ["http://a.ex"])
    first, _ = run_cc(path, tmp_path / "out", dask_client)
    assert first.counts["documents"] == 5
    second, text = run_cc(path, tmp_path / "out", dask_client, languages=["en"])
    assert second.counts["documents"] == 1 and second.by_lang == {"en": 1}
    assert "made again, its settings changed" in text


def test_force_makes_everything_again(tmp_path):
    path, _, _ = crawl(tmp_path / "in", ["http://a.ex"])
    cmd = [sys.executable, "-m", "corpusforge.cli", "commoncrawl", str(path), "-o", str(tmp_path / "out"),
           "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    again = subprocess.run(cmd + ["--force"], check=True, capture_output=True, text=True, env=env)
    assert "made again, no fingerprint" in again.stderr
    summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
    assert summary["resumed_files"] == 0 and summary["counts"]["documents"] == 5


def test_disabling_a_rule_makes_the_quality_shards_again(tmp_path, dask_client):
    title, paragraphs = ARTICLES["en"]
    text = "\n\n".join(paragraphs)
    docs = [make_document(source="commoncrawl", text=text, lang="en", lang_score=0.99, origin_file="x",
                          url="http://a.ex/good"),
            make_document(source="commoncrawl", text=text + "\n\nLorem ipsum dolor sit amet.", lang="en",
                          lang_score=0.99, origin_file="x", url="http://a.ex/lorem")]
    (tmp_path / "docs").mkdir()
    with runtime.ShardWriter(tmp_path / "docs" / "docs.parquet") as writer:
        writer.write_rows(docs)

    def run(disable: list[str]) -> tuple[runtime.StageSummary, str]:
        console = Console(record=True, width=400)
        config = quality.QualityConfig(
            inputs=[str(tmp_path / "docs")], output=str(tmp_path / "out"),
            heuristics=quality.HeuristicsConfig(disable=disable), classifier=quality.ClassifierConfig(sources=[]))
        return quality.run(config, RunContext(client=dask_client, console=console)), console.export_text()

    first, _ = run([])
    assert first.counts["dropped_c4_lorem_ipsum"] == 1, first.counts
    second, text = run(["c4_lorem_ipsum"])
    assert "dropped_c4_lorem_ipsum" not in second.counts
    assert second.counts["kept"] == first.counts["kept"] + 1
    assert "made again, its settings changed" in text


def test_a_killed_dedup_folder_is_refused_by_the_next_stage(tmp_path):
    path, _, _ = crawl(tmp_path / "in", ["http://a.ex", "http://b.ex"])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "corpusforge.cli"]
    subprocess.run(cli + ["commoncrawl", str(path), "-o", str(tmp_path / "cc"), "--workers", "1"], check=True,
                   capture_output=True, env=env)
    dedup = subprocess.Popen(cli + ["dedup", str(tmp_path / "cc"), "-o", str(tmp_path / "dedup"), "--workers", "1"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    mark = tmp_path / "dedup" / runtime.STAGE_FILE
    deadline = time.monotonic() + 120
    while not mark.exists() and dedup.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(dedup.pid, signal.SIGKILL)  # the whole run dies at once, workers included
    dedup.wait()
    assert json.loads(mark.read_text()) == {"stage": "dedup", "complete": False}
    train = subprocess.run(cli + ["tokenizer", "train", str(tmp_path / "dedup"), "-o", str(tmp_path / "tok")],
                           capture_output=True, text=True, env=env)
    assert train.returncode == 2
    assert train.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'dedup'}: the dedup stage did not finish writing it (killed or still running); run "
        "that stage again first"]
    assert not (tmp_path / "tok" / "tokenizer.json").exists()
