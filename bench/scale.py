"""Scale in simulation: the CommonCrawl path and dedup on 1, 2 and 4 local worker processes, and what a real crawl
would cost projected from the measured per-core rates.

    .venv/bin/python -m bench.scale [--pages N] [--docs N] [--workers 1 2 4]

CommonCrawl: the trafilatura eval pages (real, full-size pages) as WARC files, one Dask task per file. Dedup:
synthetic shards (bench/dedup.py's: Zipf words, a tenth near copies) in 4 files. For each number of workers it
measures wall and CPU time (all processes), documents per CPU-second, each worker's peak resident memory (VmHWM),
and for dedup the exchange files and bytes its shuffle writes (the shuffle folder sampled every 0.05 s: files are
written whole and stay until their group-by phase ends, so this is a close lower bound). The projection for a crawl
of 90,000 WARC files (CC-MAIN-2024-22: about 2.7 billion pages, 30,000 per file) is printed and written with the
measurements to bench/results/scale.json; the README's scale section quotes it.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

from bench.commoncrawl import SHARED, cpu_seconds
from bench.dedup import synthetic_shards
from bench.timing import peak_rss_kib
from bench import extract_eval
from corpusforge.dedup import DedupConfig
from corpusforge.dedup import run as dedup_run
from corpusforge.runtime import RunContext, dask_client
from corpusforge.sources import commoncrawl as cc

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "scale.json"
CRAWL_FILES = 90_000
PAGES_PER_FILE = 30_000  # CC-MAIN-2024-22: about 2.7 billion pages in about 90,000 WARC files
DEFAULT_PARTITION_ROWS = DedupConfig.partition_rows
SYNTHETIC_WORDS = 80  # bench/dedup.py's synthetic documents
WORDS_PER_DOC = 600  # an assumption for extracted web pages, not measured here


class ShuffleWatch:
    """Sample a folder's files in a thread: every file seen once (name and size) and the largest total at a time."""

    def __init__(self, folder: Path, every_s: float = 0.05):
        self.folder, self.every_s = folder, every_s
        self.seen: dict[str, int] = {}
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            total = 0
            for root, _, files in os.walk(self.folder):
                for name in files:
                    if name.endswith(".parquet") and not name.startswith("."):
                        path = os.path.join(root, name)
                        try:
                            size = os.path.getsize(path)
                        except OSError:
                            continue
                        self.seen.setdefault(path, size)
                        total += size
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.every_s)

    def __enter__(self) -> ShuffleWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def measure(workers: int, run) -> dict:
    """Run `run(client)` on a fresh LocalCluster of `workers` processes; wall, CPU and per-worker peak memory."""
    with dask_client(workers=workers) as client:
        client.wait_for_workers(workers)
        idle = sorted(client.run(peak_rss_kib).values())
        cpu0, t0 = cpu_seconds([os.getpid()]), time.perf_counter()
        summary = run(client)
        wall, cpu = time.perf_counter() - t0, cpu_seconds([os.getpid()]) - cpu0
        peak = sorted(client.run(peak_rss_kib).values())
    return {"workers": workers, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "summary": summary,
            "worker_idle_rss_mib": [round(p / 1024) for p in idle],
            "worker_peak_rss_mib": [round(p / 1024) for p in peak]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=160, help="eval pages for the CommonCrawl path")
    parser.add_argument("--docs", type=int, default=80_000, help="synthetic documents for dedup")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--project-only", action="store_true",
                        help="recompute the projection from the measurements in bench/results/scale.json")
    args = parser.parse_args(argv)
    if args.project_only:
        results = json.loads(RESULTS.read_text(encoding="utf-8"))
        results["projection"] = project(results["measured"])
        results["table"][-1] = projection_row(results["measured"], results["projection"])
        RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(results["projection"], indent=2))
        return results
    quiet = lambda: __import__("rich.console").console.Console(file=io.StringIO())  # noqa: E731
    pages = extract_eval.load_pages(SHARED / "extraction" / "trafilatura-eval", limit=args.pages)
    load_before = os.getloadavg()
    rows: dict[str, list[dict]] = {"commoncrawl": [], "dedup": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        warcs = [str(p) for p in extract_eval.write_warcs(pages, tmp / "eval", files=8)]
        synthetic_shards(tmp / "synthetic", args.docs, per_shard=args.docs // 4)
        for n in args.workers:
            config = cc.CommonCrawlConfig(inputs=warcs, min_text_chars=1, timeout_s=300, output=str(tmp / f"cc-{n}"))
            r = measure(n, lambda client: cc.run(config, RunContext(client=client, console=quiet())))
            s = r.pop("summary")
            r.update(files=s.files, pages=s.counts.get("html_responses", 0), documents=s.counts.get("documents", 0),
                     pages_per_cpu_s=round(s.counts.get("html_responses", 0) / r["cpu_s"], 2))
            rows["commoncrawl"].append(r)
            print("commoncrawl", json.dumps(r), flush=True)
            out = tmp / f"dedup-{n}"
            with ShuffleWatch(out / "_work" / "shuffle") as watch:
                dedup = DedupConfig(inputs=[str(tmp / "synthetic")], partition_rows=20_000, output=str(out))
                r = measure(n, lambda client: dedup_run(dedup, RunContext(client=client, console=quiet())))
            s = r.pop("summary")
            r.update(shards=s.files, documents=s.counts["documents"], removed=s.counts["documents"] - s.counts["kept"],
                     docs_per_cpu_s=round(s.counts["documents"] / r["cpu_s"], 1),
                     exchange_files=len(watch.seen), exchange_bytes=sum(watch.seen.values()),
                     shuffle_peak_bytes=watch.peak_bytes, partition_rows=dedup.partition_rows,
                     bands=dedup.bands)
            rows["dedup"].append(r)
            print("dedup", json.dumps(r), flush=True)
    projection = project(rows)
    print(json.dumps(projection, indent=2))
    one, most = rows["commoncrawl"][0], rows["commoncrawl"][-1]
    table = [
        {"what": f"CommonCrawl path on {most['workers']} vs {one['workers']} local worker processes, "
                 f"{len(pages)} eval pages in 8 WARC files (wall; {os.cpu_count()} cores at load "
                 f"{load_before[0]:.0f}: no room to scale here)",
         "result": f"{most['wall_s']} s ({most['pages_per_cpu_s']} pages/CPU-s)",
         "baseline": f"{one['wall_s']} s ({one['pages_per_cpu_s']} pages/CPU-s)",
         "ratio": f"{one['wall_s'] / most['wall_s']:.2f}"},
        {"what": f"dedup on {rows['dedup'][-1]['workers']} vs {rows['dedup'][0]['workers']} workers, "
                 f"{args.docs:,} synthetic docs in 4 shards (wall, same machine)",
         "result": f"{rows['dedup'][-1]['wall_s']} s", "baseline": f"{rows['dedup'][0]['wall_s']} s",
         "ratio": f"{rows['dedup'][0]['wall_s'] / rows['dedup'][-1]['wall_s']:.2f}"},
        projection_row(rows, projection),
    ]
    results = {"table": table, "measured": rows, "projection": projection,
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "load_average_before": [round(x, 2) for x in load_before]}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def projection_row(rows: dict[str, list[dict]], projection: dict) -> dict:
    cc_rate = projection["commoncrawl"]["pages_per_cpu_s"]
    return {"what": f"projection, {CRAWL_FILES:,} WARC files ({CRAWL_FILES * PAGES_PER_FILE / 1e9:.1f}B pages) at "
                    f"the measured {cc_rate} pages/CPU-s (README: Scale)",
            "result": f"CommonCrawl path {projection['commoncrawl']['core_hours']:,} core-hours, dedup "
                      f"{projection['dedup']['core_hours']:,} core-hours, "
                      f"{projection['dedup']['bytes_shuffled'] / 1e12:.1f} TB shuffled",
            "baseline": "", "ratio": ""}


def project(rows: dict[str, list[dict]]) -> dict:
    """A crawl of CRAWL_FILES WARC files at the measured per-core rates: tasks, exchange files, bytes shuffled,
    memory and core-hours. Dedup's signing cost grows with words per document: the synthetic documents have
    SYNTHETIC_WORDS, real extracted pages an assumed WORDS_PER_DOC (not measured here)."""
    cc_row = max(rows["commoncrawl"], key=lambda r: r["pages_per_cpu_s"])
    pages = CRAWL_FILES * PAGES_PER_FILE
    docs = pages * cc_row["documents"] / max(cc_row["pages"], 1)  # the eval pages are all articles: an upper bound
    d = max(rows["dedup"], key=lambda r: r["docs_per_cpu_s"])
    shards, measured_parts = d["shards"], _partitions(d["documents"], d["partition_rows"], d["bands"])
    files_per_pair = d["exchange_files"] / (shards * sum(measured_parts))  # exchange files per (shard x partition)
    parts = _partitions(docs, DEFAULT_PARTITION_ROWS, d["bands"])
    words_rate = d["docs_per_cpu_s"] * SYNTHETIC_WORDS  # words signed and shuffled per CPU-second
    return {
        "assumptions": {"warc_files": CRAWL_FILES, "pages_per_file": PAGES_PER_FILE,
                        "documents_per_page": round(docs / pages, 3), "dedup_shards": CRAWL_FILES,
                        "partition_rows": DEFAULT_PARTITION_ROWS, "words_per_document": WORDS_PER_DOC},
        "commoncrawl": {"tasks": CRAWL_FILES, "pages": pages, "documents": round(docs),
                        "pages_per_cpu_s": cc_row["pages_per_cpu_s"],
                        "core_hours": round(pages / cc_row["pages_per_cpu_s"] / 3600),
                        "peak_rss_mib_per_worker": max(max(r["worker_peak_rss_mib"]) for r in rows["commoncrawl"])},
        "dedup": {"shard_tasks_per_phase": CRAWL_FILES, "shard_phases": 8, "document_partitions": parts[0], "band_partitions": parts[1],
                  "exchange_files": round(files_per_pair * CRAWL_FILES * sum(parts)),
                  "bytes_shuffled": round(docs * d["exchange_bytes"] / d["documents"]),
                  "bytes_shuffled_per_document": round(d["exchange_bytes"] / d["documents"], 1),
                  "core_hours": round(docs * WORDS_PER_DOC / words_rate / 3600),
                  "peak_rss_mib_per_worker_measured": max(max(r["worker_peak_rss_mib"]) for r in rows["dedup"]),
                  "measured_partition_rows": d["partition_rows"]},
    }


def _partitions(docs: float, partition_rows: int, bands: int) -> tuple[int, int]:
    """Dedup's document and band partitions for `docs` documents (dedup._partitions, with enough workers)."""
    return math.ceil(docs / partition_rows), math.ceil(docs * bands / partition_rows)


if __name__ == "__main__":
    main()
