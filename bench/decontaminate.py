"""Decontamination benchmark: how fast training documents are searched for evaluation n-grams, and how the stage
scales.

1. Throughput on real text: the 697 dolma CommonCrawl documents (CC-MAIN-2019-30), 20 of them with a paragraph of a
   Gutenberg novel planted, searched for the 13-grams of an evaluation set made of the paragraphs of four novels.
   Ours is `Lookup.hits` (dedup's canonical text and shingle hashes in bulk, a bit filter, a binary search in the
   sorted hashes), the work of the stage's count step; the baseline is the plain way: per document, lower case,
   punctuation removed with a regular expression, words split, every 13-gram tuple looked up in a Python set of
   the evaluation 13-grams. Documents per CPU-second of one process, best of a few rounds, alternating. Both must
   find the planted documents.
2. Scaling: the whole stage (`decontaminate.run`: index, count, cut, reports) on a fresh 2-worker LocalCluster over
   10^4 / 10^5 / 10^6 short synthetic documents (40 words drawn from a 5,000-word vocabulary, shards of 5,000
   rows), one in a thousand with an evaluation example planted; wall time, documents per second per core, each
   worker's peak RSS (VmHWM) and the client's.

Run: `.venv/bin/python -m bench.decontaminate [--rounds 3] [--sizes 10000 100000 1000000]`; writes
bench/results/decontaminate.json. Needs ../shared/data (or CORPUSFORGE_SHARED_DATA).
"""

from __future__ import annotations

import dataclasses
import argparse
import gzip
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench.timing import best_rate, peak_rss_kib, reset_peak_rss

from corpusforge.runtime import RunContext

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CORPUSFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
WEB = SHARED / "webtext" / "dolma-testdata" / "CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
GUTENBERG = SHARED / "books" / "gutenberg-test-corpus"
BOOKS = ("1424-0.txt.gz", "244-0.txt.gz", "pg2097.txt.gz", "1310-0.txt.gz")
RESULTS = ROOT / "bench" / "results" / "decontaminate.json"
N = 13
SHARD_ROWS = 5_000
PLANT_EVERY = 1_000


# ------------------------------------------------------------------------------------------- the plain baseline
_PUNCTUATION = re.compile(r"[^\w\s]")


def plain_words(text: str) -> list[str]:
    return _PUNCTUATION.sub(" ", text.lower()).split()


def plain_ngrams(texts: list[str], n: int = N) -> set[tuple[str, ...]]:
    return {tuple(w[i:i + n]) for t in texts for w in [plain_words(t)] for i in range(len(w) - n + 1)}


def plain_hits(texts: list[str], ngrams: set[tuple[str, ...]], n: int = N) -> list[int]:
    """The documents holding an evaluation n-gram, one document and one n-gram at a time."""
    found = []
    for d, text in enumerate(texts):
        words = plain_words(text)
        if any(tuple(words[i:i + n]) in ngrams for i in range(len(words) - n + 1)):
            found.append(d)
    return found


# ------------------------------------------------------------------------------------------------ real text
def book_paragraphs() -> list[str]:
    paragraphs = []
    for name in BOOKS:
        with gzip.open(GUTENBERG / name, "rt", encoding="utf-8", errors="replace") as f:
            text = f.read()
        body = text[len(text) // 10: len(text) * 9 // 10]  # the novel, not the licence
        paragraphs += [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", body)
                       if len(p.split()) >= 2 * N]
    return paragraphs


def web_texts() -> list[str]:
    with gzip.open(WEB, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def throughput(rounds: int) -> dict:
    from corpusforge.decontaminate.evals import EvalSet
    from corpusforge.decontaminate.ngrams import build_index

    paragraphs = book_paragraphs()
    texts = web_texts()
    planted = list(range(0, len(texts), len(texts) // 20))[:20]
    for k, d in enumerate(planted):
        texts[d] = f"{texts[d][:len(texts[d]) // 2]}\n{paragraphs[k * 7]}\n{texts[d][len(texts[d]) // 2:]}"
    t0 = time.process_time()
    index = build_index([EvalSet("books", "books", [str(i) for i in range(len(paragraphs))], paragraphs)], N, 8, 5.0)
    index_s = time.process_time() - t0
    ngrams = plain_ngrams(paragraphs)
    ours_found = sorted(set(index.lookup.hits(texts)[0].tolist()))
    plain_found = plain_hits(texts, ngrams)
    fast, slow = [], []
    for _ in range(rounds):  # alternating, so both see the same machine load
        fast.append(best_rate(lambda: index.lookup.hits(texts), len(texts), 1, time.process_time))
        slow.append(best_rate(lambda: plain_hits(texts, ngrams), len(texts), 1, time.process_time))
    return {"documents": len(texts), "chars_per_doc": round(sum(map(len, texts)) / len(texts)),
            "eval_examples": len(paragraphs), "eval_ngrams": len(index.lookup.keys), "index_cpu_s": round(index_s, 2),
            "planted": len(planted), "ours_found": len(ours_found), "plain_found": len(plain_found),
            "found_planted": {"ours": len(set(planted) & set(ours_found)),
                              "plain": len(set(planted) & set(plain_found))},
            "ours_docs_per_cpu_s": max(fast), "plain_docs_per_cpu_s": max(slow)}


# ------------------------------------------------------------------------------------------------- scaling
def _words(count: int, first: str) -> np.ndarray:
    """`count` distinct words of letters only (digits would all read as 0 in the canonical text)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = []
    for i in range(count):
        word = first
        while True:
            word += letters[i % 26]
            i //= 26
            if not i:
                break
        words.append(word)
    return np.array(words)


def synthetic(n: int, folder: Path, examples: list[str], seed: int = 1) -> None:
    """`n` short documents in shards of `SHARD_ROWS`: 40 words from a 5,000-word vocabulary; every
    `PLANT_EVERY`-th one has an evaluation example planted in its middle."""
    from corpusforge import runtime, schema

    rng = np.random.default_rng(seed)
    vocabulary = _words(5_000, "w")
    contract = schema.document_schema()
    folder.mkdir(parents=True)
    for s, lo in enumerate(range(0, n, SHARD_ROWS)):
        rows = min(SHARD_ROWS, n - lo)
        words = vocabulary[rng.integers(0, len(vocabulary), size=(rows, 40))]
        texts = [" ".join(w) for w in words]
        for i in range(-lo % PLANT_EVERY, rows, PLANT_EVERY):
            texts[i] = " ".join([*words[i, :20], examples[(lo + i) // PLANT_EVERY % len(examples)], *words[i, 20:]])
        columns = {"id": [f"{lo + i:032x}" for i in range(rows)], "source": ["commoncrawl"] * rows, "text": texts,
                   "lang": ["en"] * rows, "lang_score": [1.0] * rows, "origin_file": ["synthetic"] * rows}
        table = pa.table([pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(rows, f.type)
                          for f in contract], schema=contract)
        with runtime.ShardWriter(folder / f"part-{s:05d}.parquet") as writer:
            writer.write_table(table)


def scaling(sizes: list[int], work: Path) -> list[dict]:
    from distributed import Client, LocalCluster

    from corpusforge import decontaminate

    rng = np.random.default_rng(7)
    vocabulary = _words(50_000, "e")
    examples = [" ".join(vocabulary[rng.integers(0, len(vocabulary), size=20)]) for _ in range(1_000)]
    (work / "evals.txt").write_text("\n".join(examples) + "\n")
    out = []
    for n in sizes:
        folder = work / f"docs-{n}"
        t0 = time.perf_counter()
        synthetic(n, folder / "in", examples)
        made = time.perf_counter() - t0
        config = decontaminate.DecontaminateConfig(
            inputs=[str(folder / "in")], evals=[decontaminate.EvalSetConfig(path=str(work / "evals.txt"))])
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=40) as cluster, Client(cluster) as client:
            idle = sorted(client.run(peak_rss_kib).values())
            reset_peak_rss()
            client_idle = peak_rss_kib()
            t0 = time.perf_counter()
            summary = decontaminate.run(dataclasses.replace(config, output=str(folder / "out")),
                                        RunContext(client=client))
            seconds = time.perf_counter() - t0
            client_peak = peak_rss_kib()
            peak = sorted(client.run(peak_rss_kib).values())
        out.append({"documents": n, "seconds": round(seconds, 2), "docs_per_s_per_core": round(n / seconds / 2),
                    "make_inputs_s": round(made, 1), "contaminated": summary.counts["contaminated"],
                    "cut_documents": summary.counts["cut_documents"], "worker_peak_mib": [p // 1024 for p in peak],
                    "worker_idle_mib": [p // 1024 for p in idle], "client_peak_mib": client_peak // 1024,
                    "client_idle_mib": client_idle // 1024})
        print(json.dumps(out[-1]), flush=True)
        shutil.rmtree(folder)
    return out


def table(tp: dict, scale: list[dict]) -> list[dict]:
    rows = [{"what": f"evaluation 13-gram search, real CommonCrawl text ({tp['chars_per_doc']:,} chars/doc, "
                     f"{tp['eval_ngrams']:,} 13-grams of {tp['eval_examples']:,} book paragraphs), docs/s per core; "
                     f"planted found {tp['found_planted']['ours']}/{tp['planted']}",
             "result": f"{tp['ours_docs_per_cpu_s']:,.0f}",
             "baseline": f"{tp['plain_docs_per_cpu_s']:,.0f} (per-document Python set lookup; found "
                         f"{tp['found_planted']['plain']}/{tp['planted']})",
             "ratio": f"{tp['ours_docs_per_cpu_s'] / tp['plain_docs_per_cpu_s']:.1f}x"}]
    if scale:
        sizes = " / ".join(f"{s['documents']:,}" for s in scale)
        last, prev = scale[-1], scale[-2] if len(scale) > 1 else scale[-1]
        growth = last["documents"] / prev["documents"]
        rows.append({"what": f"decontaminate stage (index, count, cut, reports), {sizes} short synthetic docs "
                             "(2 workers)",
                     "result": " / ".join(f"{s['seconds']:.1f} s" for s in scale),
                     "baseline": "linear",
                     "ratio": f"{last['seconds'] / prev['seconds'] / growth:.2f}x of linear "
                              f"({prev['documents']:,} -> {last['documents']:,}); "
                              f"{last['docs_per_s_per_core']:,} docs/s per core"})
        rows.append({"what": f"decontaminate stage, peak RSS per worker, {sizes} docs",
                     "result": " / ".join(f"{max(s['worker_peak_mib'])} MiB" for s in scale),
                     "baseline": f"{max(scale[0]['worker_idle_mib'])} MiB idle worker",
                     "ratio": f"{max(last['worker_peak_mib']) / max(prev['worker_peak_mib']):.2f}x "
                              f"({prev['documents']:,} -> {last['documents']:,})"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    tp = throughput(args.rounds)
    print(json.dumps(tp), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-decontaminate-") as work:
        scale = scaling(args.sizes, Path(work))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"table": table(tp, scale), "throughput": tp, "scaling": scale}, indent=2) + "\n")
    print(json.dumps(table(tp, scale), indent=2))


if __name__ == "__main__":
    main()
