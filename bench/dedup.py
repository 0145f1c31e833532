"""Dedup benchmark: signature throughput against datasketch, recall/precision against the true Jaccard, scaling.

1. Throughput: MinHash signatures (5-grams, 112 permutations) of 697 real CommonCrawl documents, documents per
   CPU-second on one core (CPU time, so other processes on a shared machine do not skew either side), alternating,
   best of a few rounds. Signing: our bulk path (`minhash.signatures` over a normalized batch) against datasketch's
   plain per-document `MinHash.update_batch` (its default SHA-1 hash) over the same shingles with the same
   permutations; target >= 20x. From raw text: `minhash_signatures` against `normalize_text` + shingle strings +
   `update_batch` per document. Signing again for the file's Chinese and Japanese documents alone (the 17 whose
   text is at least 30% characters of scripts written without spaces, repeated 20 times for a measurable time),
   which take the character-shingle path.
2. Quality: the real documents plus copies edited to a spread of true Jaccard similarities (words replaced at
   random), deduplicated by `dedup.run` on a LocalCluster; per planted pair, detected = one removed in favour of the
   other. Recall over pairs with true J >= the threshold, precision over detected pairs (a detected pair counts as
   right when its true J >= threshold - 0.1, the estimator's noise band), and the detection rate per J bin beside
   the S-curve the parameters imply.
3. Scaling: synthetic documents (80 words from a Zipf vocabulary, 10% near copies) in shards of 20,000, for 10^4,
   10^5 and 10^6 documents: wall time of `dedup.run` on a fresh 2-worker LocalCluster and each worker's peak RSS
   (VmHWM of the worker process). `partition_rows` is 200,000 so the largest partitions are already reached at
   10^5 documents: past that, more documents mean more partitions, not bigger ones.

Run: `.venv/bin/python -m bench.dedup [--sizes 10000 100000 1000000] [--rounds 3]`; writes bench/results/dedup.json.
Needs the dolma test file under ../shared/data (or CORPUSFORGE_SHARED_DATA).
"""

from __future__ import annotations

import dataclasses
import argparse
import gzip
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.timing import peak_rss_kib
from corpusforge import documents, runtime, schema
from corpusforge.dedup import DedupConfig, minhash, run
from corpusforge.dedup.normalize import normalize_batch, normalize_text
from corpusforge.runtime import RunContext

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CORPUSFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
WEB = SHARED / "webtext" / "dolma-testdata" / "CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
RESULTS = ROOT / "bench" / "results" / "dedup.json"


def web_texts() -> list[str]:
    with gzip.open(WEB, "rt", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh]


def spaceless_texts(texts: list[str], share: float = 0.3) -> list[str]:
    """The texts of which at least `share` of the characters belong to scripts written without spaces."""
    out = []
    for text in texts:
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        marked = np.zeros(len(points), dtype=bool)
        for lo, hi in minhash.SPACELESS:
            marked |= (points >= lo) & (points <= hi)
        if len(points) and marked.mean() >= share:
            out.append(text)
    return out


# ------------------------------------------------------------------------------------------------- 1. throughput
def throughput(texts: list[str], rounds: int) -> dict:
    """Documents per CPU-second (one core: everything here is single-threaded) of signing and of the whole way
    from raw text, ours against datasketch, alternating, best of `rounds`."""
    from datasketch import MinHash

    params = minhash.MinHashParams()
    clock = time.process_time  # CPU time: other processes sharing the machine do not count against either side
    normalized = [normalize_text(t) for t in texts]
    ranges = list(minhash.batches_by_size(normalized))
    batches = [normalize_batch(normalized[lo:hi]) for lo, hi in ranges]
    shingles = [minhash.shingles(t, params) for t in normalized]
    plain = MinHash(num_perm=params.permutations, seed=params.seed, scheme="affine32")  # datasketch's SHA-1 hash

    def sign_ours() -> np.ndarray:
        return np.concatenate([minhash.signatures(b, params)[0] for b in batches])

    def sign_datasketch() -> None:
        for doc in shingles:
            m = plain.copy()
            m.update_batch(doc)

    def raw_ours() -> None:
        minhash.minhash_signatures(texts, params)

    def raw_datasketch() -> None:
        for text in texts:
            m = plain.copy()
            m.update_batch(minhash.shingles(normalize_text(text), params))

    sigs = sign_ours()  # warm: compiled kernels, buffers, permutations
    raw_ours()
    best = {name: float("inf") for name in ("sign_ours", "sign_datasketch", "raw_ours", "raw_datasketch")}
    for _ in range(rounds):
        for name, fn in (("sign_ours", sign_ours), ("sign_datasketch", sign_datasketch), ("raw_ours", raw_ours),
                         ("raw_datasketch", raw_datasketch)):
            t0 = clock()
            fn()
            best[name] = min(best[name], clock() - t0)
    # the same signatures as datasketch with our hash function (checked on a sample here, fully in the tests)
    template = minhash.datasketch_minhash(params)
    for i in range(0, len(texts), 97):
        m = template.copy()
        m.update_batch(shingles[i])
        assert np.array_equal(m.hashvalues, sigs[i])
    n = len(texts)
    rate = {name: n / seconds for name, seconds in best.items()}
    return {"documents": n, "mean_shingles": sum(map(len, shingles)) / n, "rounds": rounds,
            "docs_per_cpu_s": rate, "sign_ratio": rate["sign_ours"] / rate["sign_datasketch"],
            "raw_ratio": rate["raw_ours"] / rate["raw_datasketch"]}


# --------------------------------------------------------------------------------------------------- 2. quality
def _edited(words: list[str], fraction: float, rng: random.Random) -> list[str]:
    out = list(words)
    for i in rng.sample(range(len(out)), int(len(out) * fraction)):
        out[i] = f"edit{rng.randrange(10**9)}"
    return out


def _true_jaccard(a: str, b: str) -> float:
    sa, sb = (set(minhash.shingles(normalize_text(t), minhash.MinHashParams())) for t in (a, b))
    return len(sa & sb) / len(sa | sb)


def quality(texts: list[str], work: Path, threshold: float) -> dict:
    rng = random.Random(5)
    originals = [t for t in texts if len(t.split()) >= 200]
    rows, pairs = [], []
    t0 = documents.parse_time("2019-07-17T00:00:00Z")
    for i, text in enumerate(originals):
        rows.append(documents.make_document(source="commoncrawl", text=text, url=f"https://o.example/{i}",
                                            lang="en", lang_score=1.0, origin_file="orig", crawl_time=t0))
        # one word in k replaced: Jaccard of 5-gram sets falls fast, so small fractions span the whole S-curve
        fraction = rng.choice([0.0, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.1, 0.15])
        copy = " ".join(_edited(text.split(), fraction, rng))
        rows.append(documents.make_document(source="commoncrawl", text=copy, url=f"https://c.example/{i}",
                                            lang="en", lang_score=1.0, origin_file="copy", crawl_time=t0))
        pairs.append((rows[-2]["id"], rows[-1]["id"], _true_jaccard(text, copy)))
    folder = work / "quality"
    folder.mkdir(parents=True)
    with runtime.ShardWriter(folder / "in.parquet") as writer:
        writer.write_table(schema.to_table(rows))
    config = DedupConfig(inputs=[str(folder / "in.parquet")], threshold=threshold)
    summary = run(dataclasses.replace(config, output=str(folder / "out")), RunContext(workers=2))
    removed = {r["removed_id"]: r["kept_id"] for r in pq.read_table(folder / "out" / "_duplicates.parquet").to_pylist()}
    # detected: both in one cluster (the real crawl has near duplicates of its own, which may survive instead)
    detected = [(a, b, j, removed.get(a, a) == removed.get(b, b)) for a, b, j in pairs]
    positives = [d for d in detected if d[2] >= threshold]
    recall = sum(d[3] for d in positives) / max(len(positives), 1)
    clear = [d for d in detected if d[2] >= threshold + 0.1]  # above the S-curve's steep part
    recall_clear = sum(d[3] for d in clear) / max(len(clear), 1)
    hits = [d for d in detected if d[3]]
    precision = sum(d[2] >= threshold - 0.1 for d in hits) / max(len(hits), 1)
    strict = sum(d[2] >= threshold for d in hits) / max(len(hits), 1)
    params = config.params()
    bins = []
    for lo in np.arange(0.3, 1.0, 0.1):
        inside = [d for d in detected if lo <= d[2] < lo + 0.1 or (lo >= 0.9 and d[2] >= lo)]
        if inside:
            bins.append({"jaccard": f"{lo:.1f}-{lo + 0.1:.1f}", "pairs": len(inside),
                         "detected": round(sum(d[3] for d in inside) / len(inside), 3),
                         "candidate_probability": round(params.candidate_probability(lo + 0.05), 3)})
    return {"pairs": len(pairs), "positives": len(positives), "recall": recall, "precision": precision,
            "recall_above_threshold_plus_0.1": recall_clear,
            "precision_strict": strict, "threshold": threshold, "by_jaccard": bins,
            "removed": {k: summary.counts[f"removed_{k}"] for k in ("url", "exact", "near")}}


# --------------------------------------------------------------------------------------------------- 3. scaling
def synthetic_shards(folder: Path, n: int, per_shard: int = 20_000, words: int = 80, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(50_000)])
    folder.mkdir(parents=True)
    for s, lo in enumerate(range(0, n, per_shard)):
        m = min(per_shard, n - lo)
        ids = rng.zipf(1.1, size=(m, words)) % len(vocab)  # "the" ~ 9% of words, as in English
        copies = rng.random(m) < 0.1  # a tenth are near copies of the previous document: 5% of words changed
        src = np.maximum(np.arange(m) - 1, 0)
        ids[copies] = ids[src[copies]]
        mask = (rng.random((m, words)) < 0.05) & copies[:, None]
        ids[mask] = rng.integers(0, len(vocab), size=int(mask.sum()))
        texts = [" ".join(row) for row in vocab[ids]]
        keys = [f"{seed:04x}{lo + i:028x}" for i in range(m)]
        table = pa.table({"id": keys, "source": ["commoncrawl"] * m,
                          "url": [f"https://s.example/{lo + i}" for i in range(m)],
                          "text": texts, "lang": ["en"] * m, "lang_score": np.ones(m, dtype=np.float32),
                          "origin_file": ["synthetic"] * m})
        with runtime.ShardWriter(folder / f"part-{s:05d}.parquet") as writer:
            writer.write_table(_complete(table))


def _complete(table: pa.Table) -> pa.Table:
    contract = schema.document_schema()
    return pa.table({f.name: table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
                     for f in contract}, schema=contract)


def scaling(sizes: list[int], work: Path) -> list[dict]:
    from distributed import Client, LocalCluster

    out = []
    for n in sizes:
        folder = work / f"synthetic-{n}"
        t0 = time.perf_counter()
        synthetic_shards(folder / "in", n)
        made = time.perf_counter() - t0
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=40) as cluster, Client(cluster) as client:
            idle = sorted(client.run(peak_rss_kib).values())
            t0 = time.perf_counter()
            summary = run(DedupConfig(inputs=[str(folder / "in")], partition_rows=200_000, output=str(folder / "out")),
                          RunContext(client=client))
            seconds = time.perf_counter() - t0
            peak = sorted(client.run(peak_rss_kib).values())
        out.append({"documents": n, "seconds": seconds, "docs_per_s": n / seconds, "generate_seconds": made,
                    "worker_peak_rss_mib": [round(p / 1024) for p in peak],
                    "worker_idle_rss_mib": [round(p / 1024) for p in idle],
                    "removed_near": summary.counts["removed_near"], "removed_exact": summary.counts["removed_exact"],
                    "component_steps": summary.extra["work"].get("component_steps")})
        shutil.rmtree(folder)
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=0.7)
    args = parser.parse_args()
    texts = web_texts()
    with tempfile.TemporaryDirectory(prefix="bench-dedup-") as tmp:
        work = Path(tmp)
        speed = throughput(texts, args.rounds)
        print(json.dumps(speed), flush=True)
        cjk = throughput(spaceless_texts(texts) * 20, args.rounds)
        print(json.dumps(cjk), flush=True)
        good = quality(texts, work, args.threshold)
        print(json.dumps(good), flush=True)
        scale = scaling(args.sizes, work)
    first, last = scale[0], scale[-1]
    before = scale[-2] if len(scale) > 1 else first  # the last step: fixed costs no longer dominate
    growth = (last["seconds"] / before["seconds"]) / (last["documents"] / before["documents"])
    rate = speed["docs_per_cpu_s"]
    table = [
        {"what": f"MinHash signing, shingles -> signature, docs/s per core ({speed['mean_shingles']:.0f} "
                 "shingles/doc, 112 perms)",
         "result": f"{rate['sign_ours']:,.0f}", "baseline": f"{rate['sign_datasketch']:,.0f} (datasketch "
         "update_batch per doc)", "ratio": f"{speed['sign_ratio']:.1f}x"},
        {"what": f"MinHash signing, Chinese/Japanese documents ({cjk['documents'] // 20} real pages, character "
                 f"5-grams, {cjk['mean_shingles']:.0f} shingles/doc), docs/s per core",
         "result": f"{cjk['docs_per_cpu_s']['sign_ours']:,.0f}", "baseline":
         f"{cjk['docs_per_cpu_s']['sign_datasketch']:,.0f} (datasketch update_batch per doc)",
         "ratio": f"{cjk['sign_ratio']:.1f}x"},
        {"what": "MinHash from raw text (normalize + shingle + sign), docs/s per core",
         "result": f"{rate['raw_ours']:,.0f}", "baseline": f"{rate['raw_datasketch']:,.0f} (normalize_text + "
         "shingle strings + update_batch)", "ratio": f"{speed['raw_ratio']:.1f}x"},
        {"what": f"near duplicates vs true Jaccard ({good['pairs']} planted pairs): recall J >= {good['threshold']}"
                 f" / recall J >= {good['threshold'] + 0.1:.1f} / precision",
         "result": f"{good['recall']:.3f} / {good['recall_above_threshold_plus_0.1']:.3f} / {good['precision']:.3f}",
         "baseline": "-", "ratio": "-"},
        {"what": "dedup time, " + " / ".join(f"{s['documents']:,}" for s in scale) + " synthetic docs (2 workers)",
         "result": " / ".join(f"{s['seconds']:.1f} s" for s in scale),
         "baseline": "linear", "ratio": f"{growth:.2f}x of linear ({before['documents']:,} -> "
                                        f"{last['documents']:,})"},
        {"what": "peak RSS per worker, " + " / ".join(f"{s['documents']:,}" for s in scale) + " docs",
         "result": " / ".join(f"{max(s['worker_peak_rss_mib'])} MiB" for s in scale),
         "baseline": f"{max(first['worker_idle_rss_mib'])} MiB idle worker", "ratio":
         f"{max(last['worker_peak_rss_mib']) / max(before['worker_peak_rss_mib']):.2f}x "
         f"({before['documents']:,} -> {last['documents']:,})"},
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"table": table, "throughput": speed, "throughput_cjk": cjk, "quality": good,
                                   "scaling": scale, "cpu_count": os.cpu_count()}, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
