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

Run: `.venv/bin/python -m bench.quality [--rounds 3]`; writes bench/results/quality.json. Needs ../shared/data (or
CORPUSFORGE_SHARED_DATA).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.timing import best_rate
from corpusforge.quality import heuristics

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

    lines = [line.strip() for line in text.split("\n") if line.strip()]
    paragraphs = [p.strip() for p in re.split(r"\n[ \t\r\f\v]*\n", text) if p.strip()]
    out = {
        "lorem_ipsum": float(len(re.findall("lorem ipsum", text, flags=re.IGNORECASE))),
        "curly_brackets": float(text.count("{")),
        "bullet_line_fraction": ratio(sum(line.startswith(tuple(heuristics.BULLETS)) for line in lines), len(lines)),
        "ellipsis_line_fraction": ratio(sum(line.endswith(("...", "…")) for line in lines), len(lines)),
        "terminal_punctuation_line_fraction": ratio(
            sum(line.endswith(tuple(heuristics.TERMINAL_PUNCTUATION)) for line in lines), len(lines)),
        "boilerplate_line_fraction": ratio(
            sum(any(p in line.lower() for p in heuristics.BOILERPLATE_PHRASES) for line in lines), len(lines)),
    }
    for name, items in (("line", lines), ("paragraph", paragraphs)):
        repeats = _repeats(items)
        out[f"dup_{name}_fraction"] = ratio(sum(repeats), len(items))
        out[f"dup_{name}_char_fraction"] = ratio(sum(len(x) for x, r in zip(items, repeats) if r), chars)
    words = text.split()
    if lang in heuristics.SPACELESS_LANGUAGES:
        return {**out, **{k: nan for k in heuristics.WORD_MEASURES}}
    out["words"] = float(len(words))
    out["mean_word_length"] = ratio(sum(map(len, words)), len(words))
    out["hashes_per_word"] = ratio(text.count("#"), len(words))
    out["ellipses_per_word"] = ratio(len(re.findall(r"\.\.\.|…", text)), len(words))
    out["alpha_word_fraction"] = ratio(sum(any(c.isalpha() for c in w) for w in words), len(words))
    listed = stop_words.get(lang)
    out["stop_words"] = (float(sum(w.strip(heuristics.PUNCTUATION).lower() in set(listed) for w in words))
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
    from corpusforge import documents, language, runtime, wikitext
    from corpusforge.sources import books, wikipedia

    wikipedia.run(wikipedia.WikipediaConfig(inputs=[str(ENWIKI)]), out / "wikipedia", client=client)
    books.run(books.BooksConfig(inputs=[str(GUTENBERG / b) for b in BOOKS], max_part_chars=20_000),
              out / "books", client=client)

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


def classifier_results(out: Path, rounds: int) -> dict:
    """Train on the real shards (a 2-worker LocalCluster), then time scoring and measure the held-out quality."""
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
            "score_batch_docs_per_cpu_s": batch, "score_one_by_one_docs_per_cpu_s": one, "held_out": kept}


def main() -> None:
    import tempfile

    from corpusforge import language

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    docs = web_documents()
    for d in docs:
        d["lang"] = language.identify(d["text"])[0]
    rules = heuristics_throughput(docs, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        clf = classifier_results(Path(tmp), args.rounds)
    auc = clf["training"]["held_out_auc"]
    held = clf["held_out"]
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
    ]
    result = {"table": table, "heuristics": rules, "classifier": clf, "cpu_count": os.cpu_count()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
