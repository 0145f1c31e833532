"""Quality benchmark: heuristic rules and classifier scoring throughput, and the classifier's held-out quality.

1. Heuristics: `heuristics.measure` + `first_failed` (Arrow/NumPy over a batch) against `plain_measures` below (the
   same measures written the straightforward way, one document at a time in Python) on 697 real CommonCrawl
   documents (dolma's CC-MAIN-2019-30 sample), documents per CPU-second on one core, alternating, best of a few
   rounds. The two must agree on every measure (checked here and in tests/test_quality_heuristics.py).
2. Classifier scoring: `Model.score` (HashingVectorizer + one sparse dot product per batch) on the same documents,
   documents per CPU-second, against scoring one document at a time (the vectorizer and the dot product per
   document), the way a per-document filter step calls a model.
3. Classifier quality: trained as `quality.classifier.train_model` trains (features, logistic regression) on
   Wikipedia articles (the enwiki dump chunk and the wtf_wikipedia articles) and Gutenberg book parts as positives
   and the dolma CommonCrawl documents as negatives, split by a seeded hash; ROC AUC on the held-out part, and
   the fraction of held-out documents of each kind GPT-3's Pareto rule keeps.
4. Scaling: the whole stage (`quality.run`: classifier training on its bounded sample, rules, scoring, Pareto) on a
   fresh 2-worker LocalCluster over 2,000 / 20,000 / 200,000 CommonCrawl documents in shards of 1,000, each the
   real dolma document `i % 697` less one of its lines (so every copy is distinct and real text), trained against
   the reference shards of 3. Wall time, each worker's peak RSS (VmHWM) and the client's peak RSS while the stage
   runs. The training sample stops growing at `train_documents` (20,000), so memory should be flat past that.

Run: `.venv/bin/python -m bench.quality [--rounds 3] [--sizes 2000 20000 200000]`; writes
bench/results/quality.json. Needs ../shared/data (or CORPUSFORGE_SHARED_DATA).
"""

from __future__ import annotations

import dataclasses
import argparse
import gzip
import json
import os
import re
import shutil
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.timing import best_rate, peak_rss_kib, reset_peak_rss
from corpusforge.quality import heuristics
from corpusforge.runtime import RunContext

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CORPUSFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
WEB = SHARED / "webtext" / "dolma-testdata" / "CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
RESULTS = ROOT / "bench" / "results" / "quality.json"


# ------------------------------------------------------------------------------------------- the plain baseline
def _repeats(items: Sequence) -> list[bool]:
    seen: set = set()
    out = []
    for item in items:
        out.append(item in seen)
        seen.add(item)
    return out


def plain_measures(text: str, lang: str, stop_words: dict[str, Sequence[str]] | None = None) -> dict[str, float]:
    """Every measure `heuristics.measure` computes, for one document, the obvious way (the module docstring of
    corpusforge/quality/heuristics.py defines them)."""
    stop_words = {"en": heuristics.GOPHER_STOP_WORDS} if stop_words is None else stop_words
    nan = float("nan")
    chars = len(text)

    def ratio(num: float, den: float) -> float:
        return num / den if den > 0 else nan

    raw = [line for line in text.split("\n") if line.strip()]
    lines = [line.strip() for line in raw]

    def other(i: int) -> bool:  # heuristics.prose_lines, with RE2's ASCII \w and \s and Unicode letters
        line = lines[i]
        visible = sum(c not in "\t\n\f\r " for c in line)
        letters = sum(unicodedata.category(c).startswith("L") for c in line)
        return (re.search(heuristics.NOT_PROSE, line, flags=re.ASCII) is not None
                or re.match(r"( {2,}|\t)\S+(\s+\S+){0,5}\s*$", raw[i], flags=re.ASCII) is not None
                or re.search(heuristics.COMMAND, line, flags=re.ASCII) is not None
                and not line.endswith(tuple(heuristics.TERMINAL_PUNCTUATION)) or 2 * letters < visible)

    not_prose = [other(i) for i in range(len(lines))]
    prose = [line for i, line in enumerate(lines) if not (not_prose[i] and (
        i > 0 and not_prose[i - 1] or i + 1 < len(lines) and not_prose[i + 1]))]
    paragraphs = [p.strip() for p in re.split(r"\n[ \t\r\f\v]*\n", text) if p.strip()]
    punctuated = sum(len(line) for line in prose if line.endswith(tuple(heuristics.TERMINAL_PUNCTUATION)))
    out = {
        "lorem_ipsum": float(len(re.findall("lorem ipsum", text, flags=re.IGNORECASE))),
        "curly_brackets": float(sum(line.count("{") for line in prose)),
        "bullet_line_fraction": ratio(sum(line.startswith(tuple(heuristics.BULLETS)) for line in prose), len(prose)),
        "ellipsis_line_fraction": ratio(sum(line.endswith(("...", "…")) for line in prose), len(prose)),
        "terminal_punctuation_char_fraction": ratio(punctuated, sum(map(len, prose))),
        "boilerplate_line_fraction": ratio(
            sum(any(p in line.lower() for p in heuristics.BOILERPLATE_PHRASES) for line in prose), len(prose)),
    }
    for name, items in (("line", prose), ("paragraph", paragraphs)):
        repeats = _repeats(items)
        out[f"dup_{name}_fraction"] = ratio(sum(repeats), len(items))
        out[f"dup_{name}_char_fraction"] = ratio(sum(len(x) for x, r in zip(items, repeats) if r), chars)
    if lang in heuristics.SPACELESS_LANGUAGES:
        return {**out, **{k: nan for k in heuristics.WORD_MEASURES}}
    every = text.split()
    words = [w for line in prose for w in line.split()]  # the word measures but the count judge prose
    out["words"] = float(len(every))
    out["mean_word_length"] = ratio(sum(map(len, words)), len(words))
    out["hashes_per_word"] = ratio(sum(line.count("#") for line in prose), len(words))
    out["ellipses_per_word"] = ratio(sum(len(re.findall(r"\.\.\.|…", line)) for line in prose), len(words))
    out["alpha_word_fraction"] = ratio(sum(any(c.isalpha() for c in w) for w in words), len(words))
    listed = stop_words.get(lang)
    out["stop_words"] = (float(sum(w.strip(heuristics.PUNCTUATION).lower() in set(listed) for w in every))
                         if listed is not None else nan)
    for n in heuristics.TOP_NGRAMS:
        grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
        most = max(grams.values(), default=0)
        best = max((sum(map(len, g)) * c for g, c in grams.items() if c == most), default=0) if most > 1 else 0
        out[f"top_{n}gram_char_fraction"] = ratio(best, chars)
    for n in heuristics.DUP_NGRAMS:
        covered = [False] * len(words)
        for i, repeated in enumerate(_repeats([tuple(words[i:i + n]) for i in range(len(words) - n + 1)])):
            if repeated:
                covered[i:i + n] = [True] * n
        out[f"dup_{n}gram_char_fraction"] = ratio(sum(len(w) for w, c in zip(words, covered) if c), chars)
    return out


def web_documents() -> list[dict]:
    with gzip.open(WEB, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


# ---------------------------------------------------------------------------------------------- real documents
ENWIKI = (SHARED / "wikipedia" / "gensim-testdata"
          / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
WTF_WIKI = SHARED / "wikipedia" / "wtf_wikipedia-wikitext"
GUTENBERG = SHARED / "books" / "gutenberg-test-corpus"
BOOKS = ("1424-0.txt.gz", "244-0.txt.gz", "pg2097.txt.gz", "1310-0.txt.gz")


def real_shards(out: Path, client) -> dict[str, list[str]]:
    """Real document shards in `out` for the classifier: `positives` (Wikipedia articles of the enwiki dump chunk
    through the wikipedia stage and the wtf_wikipedia articles through `wikitext.to_text`, and the parts of four
    Gutenberg novels through the books stage) and `negatives` (the 697 dolma CommonCrawl documents)."""
    from corpusforge import documents, language, runtime
    from corpusforge.formats import wikitext
    from corpusforge.sources import books, wikipedia

    wikipedia.run(wikipedia.WikipediaConfig(inputs=[str(ENWIKI)], output=str(out / "wikipedia")),
                  RunContext(client=client))
    books.run(books.BooksConfig(inputs=[str(GUTENBERG / b) for b in BOOKS], max_part_chars=20_000,
                                output=str(out / "books")),
              RunContext(client=client))

    def write(path: Path, rows: list[dict]) -> None:
        with runtime.ShardWriter(path) as writer:
            writer.write_rows(rows)

    articles = []
    for f in sorted(WTF_WIKI.glob("*.txt")):
        text = wikitext.to_text(f.read_text(encoding="utf-8"))
        if len(text) >= 200:
            lang, score = language.identify(text)
            articles.append(documents.make_document(source="wikipedia", text=text, lang=lang, lang_score=score,
                                                    origin_file=str(f), origin_id=f.stem))
    write(out / "wtf_wikipedia" / "articles.parquet", articles)
    web = []
    for d in web_documents():
        lang, score = language.identify(d["text"])
        web.append(documents.make_document(source="commoncrawl", url=d["metadata"]["warc_url"],
                                           text=d["text"], lang=lang, lang_score=score, origin_file=str(WEB),
                                           origin_offset=d["metadata"]["uncompressed_offset"]))
    write(out / "dolma" / "web.parquet", web)
    return {"positives": [str(out / "wikipedia"), str(out / "wtf_wikipedia"), str(out / "books")],
            "negatives": [str(out / "dolma")]}


# ---------------------------------------------------------------------------------------------------- measuring
def heuristics_throughput(docs: list[dict], rounds: int) -> dict:
    """Measures and the first failed rule of every document: the batch path against the plain one, alternating."""
    texts = [d["text"] for d in docs]
    langs = [d["lang"] for d in docs]
    rules = heuristics.HeuristicsConfig().rules()

    def ours():
        heuristics.first_failed(heuristics.measure(texts, langs), rules, len(texts))

    def plain():
        for text, lang in zip(texts, langs):
            values = plain_measures(text, lang)
            next((r.name for r, t in rules if r.fails(np.array([values[r.measure]]), t)[0]), None)

    fast, slow = [], []
    for _ in range(rounds):  # alternating, so both see the same machine load
        fast.append(best_rate(ours, len(texts), 1, time.process_time))
        slow.append(best_rate(plain, len(texts), 1, time.process_time))
    return {"documents": len(texts), "chars_per_doc": round(sum(map(len, texts)) / len(texts)),
            "ours_docs_per_cpu_s": max(fast), "plain_docs_per_cpu_s": max(slow)}


def classifier_results(out: Path, rounds: int) -> tuple[dict, dict[str, list[str]]]:
    """Train on the real shards (a 2-worker LocalCluster), then time scoring and measure the held-out quality.
    Returns the results and the real shard folders (left in `out`)."""
    import pyarrow.parquet as pq

    from corpusforge import runtime
    from corpusforge.documents import find_shards, unit_hash
    from corpusforge.quality import classifier

    with runtime.dask_client(workers=2) as client:
        sets = real_shards(out, client)
        shards = {k: find_shards(v)[0] for k, v in sets.items()}
        config = classifier.ClassifierConfig(positives=sets["positives"], negatives=sets["negatives"], holdout=0.25)
        t0 = time.perf_counter()
        model = classifier.train_model(config, 1234, client, shards["positives"], shards["negatives"])
        train_s = time.perf_counter() - t0
    web = [r["text"] for s in shards["negatives"] for r in pq.read_table(s, columns=["text"]).to_pylist()]
    batch = best_rate(lambda: model.score(web), len(web), rounds, time.process_time)
    one = best_rate(lambda: [model.score([t]) for t in web], len(web), rounds, time.process_time)
    kept = {}
    for kind, paths in shards.items():  # GPT-3's rule on the held-out documents of each kind
        rows = [r for s in paths for r in pq.read_table(s, columns=["id", "text"]).to_pylist()]
        held = (unit_hash([r["id"] for r in rows], 1234, salt="quality-train") * 2.0**30) % 1.0 < config.holdout
        rows = [r for r, h in zip(rows, held) if h]
        scores = model.score([r["text"] for r in rows])
        kept[kind] = {"documents": len(rows), "median_score": round(float(np.median(scores)), 4),
                      "pareto_kept": round(float(classifier.pareto_keep([r["id"] for r in rows], scores, 1234)
                                                 .mean()), 4)}
    training = {k: v for k, v in model.settings["training"].items() if k not in ("positives", "negatives")}
    return {"training": training, "train_seconds": round(train_s, 2),
            "score_batch_docs_per_cpu_s": batch, "score_one_by_one_docs_per_cpu_s": one, "held_out": kept}, sets


def web_copies(docs: list[dict], n: int, folder: Path, per_shard: int = 1_000) -> None:
    """`n` CommonCrawl documents in shards of `per_shard` rows: copy `i` is the real document `i % len(docs)` (with
    its language) less its line `i // len(docs)` (modulo its line count), under its own URL."""
    from corpusforge import documents, runtime, schema

    folder.mkdir(parents=True)
    for s, lo in enumerate(range(0, n, per_shard)):
        rows = []
        for i in range(lo, min(lo + per_shard, n)):
            doc = docs[i % len(docs)]
            lines = doc["text"].split("\n")
            del lines[(i // len(docs)) % len(lines)]
            rows.append(documents.make_document(source="commoncrawl", url=f"{doc['metadata']['warc_url']}#copy{i}",
                                                text="\n".join(lines) or doc["text"], lang=doc["lang"],
                                                lang_score=1.0, origin_file=str(WEB), origin_offset=i))
        with runtime.ShardWriter(folder / f"part-{s:05d}.parquet") as writer:
            writer.write_table(schema.to_table(rows))


def scaling(sizes: list[int], docs: list[dict], positives: list[str], work: Path) -> list[dict]:
    """Wall time and peak RSS (each worker's, the client's) of `quality.run` on a fresh 2-worker LocalCluster per
    size, over `web_copies` of `docs`, the classifier trained against `positives`."""
    from distributed import Client, LocalCluster

    from corpusforge import quality

    out = []
    for n in sizes:
        folder = work / f"web-{n}"
        t0 = time.perf_counter()
        web_copies(docs, n, folder / "in")
        made = time.perf_counter() - t0
        config = quality.QualityConfig(inputs=[str(folder / "in")], classifier=quality.ClassifierConfig(
            positives=positives, negatives=[str(folder / "in")]))
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=40) as cluster, Client(cluster) as client:
            idle = sorted(client.run(peak_rss_kib).values())
            reset_peak_rss()
            client_idle = peak_rss_kib()
            t0 = time.perf_counter()
            summary = quality.run(dataclasses.replace(config, output=str(folder / "out")), RunContext(client=client))
            seconds = time.perf_counter() - t0
            client_peak = peak_rss_kib()
            peak = sorted(client.run(peak_rss_kib).values())
        out.append({"documents": n, "shards": len(summary.extra["inputs"]), "seconds": seconds,
                    "docs_per_s": n / seconds, "generate_seconds": made,
                    "worker_peak_rss_mib": [round(p / 1024) for p in peak],
                    "worker_idle_rss_mib": [round(p / 1024) for p in idle],
                    "client_peak_rss_mib": round(client_peak / 1024),
                    "client_idle_rss_mib": round(client_idle / 1024),
                    "kept": summary.counts.get("kept", 0), "dropped_classifier": summary.counts.get(
                        "dropped_classifier", 0), "trained_on": summary.extra["classifier"]["documents"]})
        shutil.rmtree(folder)
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    import tempfile

    from corpusforge import language

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000, 20_000, 200_000],
                        help="documents per scaling run")
    args = parser.parse_args()
    docs = web_documents()
    for d in docs:
        d["lang"] = language.identify(d["text"])[0]
    rules = heuristics_throughput(docs, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        clf, sets = classifier_results(Path(tmp), args.rounds)
        scale = scaling(args.sizes, docs, sets["positives"], Path(tmp))
    auc = clf["training"]["held_out_auc"]
    held = clf["held_out"]
    first, last = scale[0], scale[-1]
    before = scale[-2] if len(scale) > 1 else first  # the last step: fixed costs no longer dominate
    growth = (last["seconds"] / before["seconds"]) / (last["documents"] / before["documents"])
    sizes = " / ".join(f"{s['documents']:,}" for s in scale)
    step = f"({before['documents']:,} -> {last['documents']:,})"
    table = [
        {"what": f"heuristic rules ({len(heuristics.RULES)} Gopher + C4 rules), real CommonCrawl text "
                 f"({rules['chars_per_doc']:,} chars/doc), docs/s per core",
         "result": f"{rules['ours_docs_per_cpu_s']:,.0f}",
         "baseline": f"{rules['plain_docs_per_cpu_s']:,.0f} (the same rules per document in Python)",
         "ratio": f"{rules['ours_docs_per_cpu_s'] / rules['plain_docs_per_cpu_s']:.1f}x"},
        {"what": "quality classifier scoring (hashed features + logistic regression), docs/s per core",
         "result": f"{clf['score_batch_docs_per_cpu_s']:,.0f}",
         "baseline": f"{clf['score_one_by_one_docs_per_cpu_s']:,.0f} (one document per call)",
         "ratio": f"{clf['score_batch_docs_per_cpu_s'] / clf['score_one_by_one_docs_per_cpu_s']:.1f}x"},
        {"what": f"quality classifier, held-out ROC AUC (Wikipedia + Gutenberg vs CommonCrawl, "
                 f"{clf['training']['held_out']} held-out docs)",
         "result": f"{auc:.3f}",
         "baseline": f"Pareto rule keeps {held['positives']['pareto_kept']:.0%} of reference, "
                     f"{held['negatives']['pareto_kept']:.1%} of web",
         "ratio": ""},
        {"what": f"quality stage (training + rules + classifier + Pareto), {sizes} CommonCrawl docs in shards of "
                 f"1,000 (2 workers)",
         "result": " / ".join(f"{s['seconds']:.1f} s" for s in scale),
         "baseline": "linear", "ratio": f"{growth:.2f}x of linear {step}"},
        {"what": f"quality stage, peak RSS per worker, {sizes} docs",
         "result": " / ".join(f"{max(s['worker_peak_rss_mib'])} MiB" for s in scale),
         "baseline": f"{max(first['worker_idle_rss_mib'])} MiB idle worker",
         "ratio": f"{max(last['worker_peak_rss_mib']) / max(before['worker_peak_rss_mib']):.2f}x {step}"},
        {"what": f"quality stage, client peak RSS, {sizes} docs",
         "result": " / ".join(f"{s['client_peak_rss_mib']} MiB" for s in scale),
         "baseline": "rise during the run: " + " / ".join(
             f"+{s['client_peak_rss_mib'] - s['client_idle_rss_mib']} MiB" for s in scale),
         "ratio": f"{last['client_peak_rss_mib'] / before['client_peak_rss_mib']:.2f}x {step}"},
    ]
    result = {"table": table, "heuristics": rules, "classifier": clf, "scaling": scale,
              "cpu_count": os.cpu_count()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
