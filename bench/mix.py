"""Weighted-corpus benchmark: tokenizer encoding during `mix`, the whole mix, and the weighted reader against what
the trainer consumes.

Inputs: real text from ../shared/data (697 CommonCrawl documents, 12 Gutenberg novels cut into 40,000-character
parts, 70 Wikipedia articles, Reddit self-posts), copied `--copies` times (each copy its own documents) into document
shards, a byte-level BPE tokenizer trained on them (vocab 16,384).

1. Encoding: tokens/s of the mixer's batch encoder (`mix.tokenizer.encode`: `encode_batch_fast` over 1,024
   documents, straight into an Arrow list<uint32> column) against the plain loop a first version would write
   (`tokenizer.encode(text).ids` per document, collected as Python lists), same texts, same process, best of rounds.
2. The mix: tokens/s of `mixer.mix` end to end (encode, spill, shuffle, write, checksum) on a 2-worker LocalCluster.
3. Reading: tokens/s of `WeightedReader` (block 1024, GPT-2's context) on one core, for one rank and for rank 0 of 8,
   against (a) a naive reader that re-tokenizes the text column shard by shard (what reading would cost without
   the stored token ids), and (b) the trainer's own consumption: tokens/s of training steps (forward, backward,
   AdamW) of the bundled `tiny` GPT on this CPU, batch 12 x block 128 (nanoGPT's CPU recipe shape).

Run: `.venv/bin/python -m bench.mix [--copies 4] [--rounds 3]`; writes bench/results/mix.json.
"""

from __future__ import annotations

import dataclasses
import argparse
import gzip
import itertools
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench.timing import best_rate
from corpusforge import language, runtime
from corpusforge.documents import document_id, make_document
from corpusforge.mix import manifest, mixer, tokenizer
from corpusforge.trainer.data.shards import WeightedReader
from corpusforge.runtime import RunContext

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CORPUSFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results" / "mix.json"
BOOKS = ["pg42", "1424-0", "244-0", "pg2097", "105", "122-0", "1310-0", "pg2496", "48020", "48022", "2833-0", "2834-0"]


# --------------------------------------------------------------------------------------------------------- data
def real_documents() -> list[dict]:
    """Document rows of the four sources from shared/data (language by lid.176, as the source stages do)."""
    import mwparserfromhell
    import zstandard

    docs = []

    def add(source: str, text: str, origin: str, **fields) -> None:
        lang, score = language.identify(text)
        docs.append(make_document(source=source, text=text, lang=lang, lang_score=score, origin_file=origin, **fields))

    web = SHARED / "webtext/dolma-testdata/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
    with gzip.open(web, "rt", encoding="utf-8") as f:
        for offset, line in enumerate(f):
            rec = json.loads(line)
            if rec["text"]:
                add("commoncrawl", rec["text"], str(web), origin_offset=offset, origin_id=rec["id"])
    for name in BOOKS:
        path = next((SHARED / "books/gutenberg-test-corpus").glob(f"{name}.txt*"))
        text = gzip.open(path, "rt", encoding="utf-8", errors="replace").read()
        for part, start in enumerate(range(0, len(text), 40_000)):
            add("books", text[start:start + 40_000], str(path), origin_offset=start, book_id=name, part=part)
    for page_id, path in enumerate(sorted((SHARED / "wikipedia/wtf_wikipedia-wikitext").glob("*.txt")), 1):
        text = mwparserfromhell.parse(path.read_text(encoding="utf-8")).strip_code().strip()
        if text:
            add("wikipedia", text, str(path), page_id=page_id, origin_id=str(page_id))
    reddit = SHARED / "reddit/reddit-api_submissions_praw-cassettes.ndjson.zst"
    with open(reddit, "rb") as raw:
        lines = zstandard.ZstdDecompressor().stream_reader(raw).read().decode("utf-8").splitlines()
    for offset, line in enumerate(lines):
        rec = json.loads(line)
        if len(rec.get("selftext") or "") >= 200:
            add("webtext2", rec["selftext"], str(reddit), origin_offset=offset, origin_id=rec["id"])
    return docs


def write_inputs(docs: list[dict], folder: Path, copies: int) -> None:
    """`copies` copies of the documents (distinct ids: the copy number is part of the origin) in shuffled shards."""
    rows = [{**d, "origin_id": f"{d.get('origin_id')}#{c}", "id": document_id(d["source"], d["text"], d["id"], c)}
            for c in range(copies) for d in docs]
    random.Random(0).shuffle(rows)
    for i in range(0, len(rows), 1000):
        with runtime.ShardWriter(folder / f"docs-{i // 1000:03d}.parquet", row_group_rows=256) as writer:
            writer.write_rows(rows[i:i + 1000])


# --------------------------------------------------------------------------------------------------- measuring
def encoding(tok_path: Path, texts: list[str], rounds: int) -> dict:
    tok = tokenizer.load(tok_path)
    batches = [texts[i:i + 1024] for i in range(0, len(texts), 1024)]
    n_tokens = sum(int(np.sum(np.diff(tokenizer.encode(tok, b).offsets.to_numpy()))) for b in batches)
    ours = best_rate(lambda: [tokenizer.encode(tok, b) for b in batches], n_tokens, rounds)
    plain = best_rate(lambda: [tok.encode(t, add_special_tokens=False).ids for t in texts], n_tokens, rounds)
    return {"tokens": n_tokens, "documents": len(texts), "batch_tokens_per_s": ours, "loop_tokens_per_s": plain}


def reading(corpus: Path, seconds: float = 4.0) -> dict:
    def rate(reader) -> float:
        blocks = iter(reader)
        next(blocks)  # open files, build the schedule
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for _ in range(200):
                next(blocks)
            n += 200
        return n * (reader.block_size + 1) / (time.perf_counter() - t0)

    one = rate(WeightedReader(corpus, 1024, seed=0))
    rank0_of_8 = rate(WeightedReader(corpus, 1024, seed=0, rank=0, world_size=8))
    short = rate(WeightedReader(corpus, 128, seed=0))
    return {"block_1024_tokens_per_s": one, "block_1024_rank0_of_8_tokens_per_s": rank0_of_8,
            "block_128_tokens_per_s": short, "naive_retokenizing_tokens_per_s": naive_reader(corpus, 1024, seconds)}


def naive_reader(corpus: Path, block_size: int, seconds: float) -> float:
    """Blocks from the text column, tokenized while reading (no stored ids, no weights): the cost stored tokens save."""
    tok = tokenizer.load(corpus / "tokenizer.json")
    eot = manifest.load(corpus)["tokenizer"]["eot_id"]
    n, buffer, t0 = 0, [], time.perf_counter()
    for _, shard in itertools.cycle(manifest.shards(manifest.load(corpus))):
        for text in pq.read_table(corpus / shard["path"], columns=["text"]).column("text").to_pylist():
            buffer.extend(tok.encode(text, add_special_tokens=False).ids + [eot])
            while len(buffer) > block_size:
                np.asarray(buffer[: block_size + 1], dtype=np.int64)
                del buffer[: block_size + 1]
                n += block_size + 1
        if time.perf_counter() - t0 > seconds:
            return n / (time.perf_counter() - t0)


def trainer_consumption(vocab_size: int, steps: int = 12) -> dict:
    """Tokens/s of the bundled tiny GPT training on this CPU (forward, backward, AdamW step)."""
    import torch

    from corpusforge.trainer import model

    torch.set_num_threads(os.cpu_count() or 1)  # a Dask LocalCluster leaves OMP_NUM_THREADS=1 in this process
    torch.manual_seed(0)
    net = model.GPT(model.preset("tiny", vocab_size))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    batch, block = 12, 128
    x = torch.randint(0, vocab_size, (batch, block))

    def step():
        _, loss = net(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return {"tiny_gpt_tokens_per_s": steps * batch * block / (time.perf_counter() - t0), "batch": batch,
            "block": block, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-mix-"))
    try:
        docs = real_documents()
        write_inputs(docs, work / "docs", args.copies)
        tok_config = tokenizer.TokenizerConfig(inputs=[str(work / "docs")], vocab_size=16_384,
                                               sample_chars_per_source=4_000_000)
        with runtime.dask_client(workers=2) as client:
            tokenizer.run(dataclasses.replace(tok_config, output=str(work / "tok")), RunContext(client=client))
            tok_path = work / "tok" / tokenizer.TOKENIZER_FILE
            enc = encoding(tok_path, [d["text"] for d in docs], args.rounds)

            sets = [mixer.MixSet(name, source, [str(work / "docs")], weight, split_by=split, split_range=rng)
                    for name, source, weight, split, rng in (
                        ("commoncrawl", "commoncrawl", 0.60, "id", [0.0, 1.0]),
                        ("webtext2", "webtext2", 0.22, "id", [0.0, 1.0]),
                        ("books1", "books", 0.08, "book_id", [0.0, 0.5]),
                        ("books2", "books", 0.08, "book_id", [0.5, 1.0]),
                        ("wikipedia", "wikipedia", 0.03, "id", [0.0, 1.0]))]
            config = mixer.MixConfig(sets=sets, tokenizer=str(tok_path), budget_tokens=100_000_000,
                                     shard_tokens=2_000_000, row_group_tokens=262_144, val_fraction=0.005)
            t0 = time.perf_counter()
            mixer.run(dataclasses.replace(config, output=str(work / "corpus")), RunContext(client=client))
            mix_seconds = time.perf_counter() - t0
        corpus_tokens = manifest.load(work / "corpus")["totals"]["tokens"]
        read = reading(work / "corpus")
        train = trainer_consumption(16_384)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    need = train["tiny_gpt_tokens_per_s"]
    result = {
        "inputs": {"documents": len(docs) * args.copies, "copies": args.copies, "corpus_tokens": corpus_tokens},
        "encoding": enc, "mix": {"seconds": mix_seconds, "tokens_per_s": corpus_tokens / mix_seconds, "workers": 2},
        "reading": read, "trainer": train,
        "table": [
            {"what": "tokenizer encode during mix (batch -> Arrow), tokens/s, 1 process",
             "result": f"{enc['batch_tokens_per_s']:,.0f}", "baseline": f"{enc['loop_tokens_per_s']:,.0f} (encode per doc)",
             "ratio": f"{enc['batch_tokens_per_s'] / enc['loop_tokens_per_s']:.1f}x"},
            {"what": f"mix end to end ({corpus_tokens / 1e6:.1f}M tokens, 2 workers), tokens/s",
             "result": f"{corpus_tokens / mix_seconds:,.0f}", "baseline": "-", "ratio": "-"},
            {"what": "weighted reader, block 1024, tokens/s, 1 core",
             "result": f"{read['block_1024_tokens_per_s']:,.0f}",
             "baseline": f"{read['naive_retokenizing_tokens_per_s']:,.0f} (re-tokenizing reader)",
             "ratio": f"{read['block_1024_tokens_per_s'] / read['naive_retokenizing_tokens_per_s']:.0f}x"},
            {"what": "weighted reader vs the tiny GPT training on this CPU, tokens/s",
             "result": f"{read['block_1024_tokens_per_s']:,.0f}", "baseline": f"{need:,.0f} (tiny GPT train step)",
             "ratio": f"{read['block_1024_tokens_per_s'] / need:.0f}x"},
            {"what": "weighted reader, rank 0 of 8 (reads past the other ranks' blocks), tokens/s",
             "result": f"{read['block_1024_rank0_of_8_tokens_per_s']:,.0f}", "baseline": f"{need:,.0f} (tiny GPT)",
             "ratio": f"{read['block_1024_rank0_of_8_tokens_per_s'] / need:.0f}x"},
        ],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    runtime.write_json_atomic(RESULTS, result)
    for row in result["table"]:
        print(f"{row['what']}: {row['result']} vs {row['baseline']} -> {row['ratio']}")


if __name__ == "__main__":
    main()
