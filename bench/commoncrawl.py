"""Benchmark of the CommonCrawl path: documents per second per core, where the time goes, before and after.

    .venv/bin/python -m bench.commoncrawl [--pages N] [--workers N]

Two inputs: every real capture in ../shared/data/warc (about 260 HTML responses, many tiny test pages) and the 990
pages of trafilatura's evaluation set wrapped as WARC records (real, full-size pages: the representative one).
For each it measures the CPU time of each stage in this process over the same records (read, decode, extract,
language ID, write), runs the full path on a LocalCluster (`commoncrawl.run`, CPU time of all its processes) and
scores the eval pages' text against their snippets. The full path runs twice on the eval pages, in the default mode
(fallback) and in fast mode (the default before it), and is compared with a plain sequential loop as a user would
write it (warcio, `trafilatura.extract` in its default mode, lid.176) and with datatrove's own pipeline on as many
processes (see `datatrove_pipeline`; `pip install 'corpusforge[bench]'`), its texts scored alike, the two in
alternating rounds (`--rounds`) so that the machine's load weighs on both alike. It also compares
reading the eval records as .warc.zst (a frame per record with a trained dictionary, as wget-at writes them) against
reading them as .warc.gz. The modes' fidelity is bench/extraction.py's. CPU time, not wall time, so that other work on
the machine does not skew the comparison; everything compared is measured in this run. Results:
bench/results/commoncrawl.json.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import struct
import tempfile
import time
from pathlib import Path

import zstandard
from warcio.archiveiterator import ArchiveIterator

from bench import extract_eval
from corpusforge import language
from corpusforge.documents import make_document
from corpusforge.extract import DecodeError, ExtractOptions, Extractor, decode_html, extract_in_process
from corpusforge.runtime import FileReport, RunContext, ShardWriter
from corpusforge.formats import warc
from corpusforge.sources import commoncrawl as cc

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CORPUSFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results" / "commoncrawl.json"
MODE = "fallback"  # the path's default mode
BEFORE = "fast"  # the default mode before fallback
STAGES = ("read", "decode", "extract", "language", "write")


def captures() -> list[str]:
    return sorted(str(p) for p in (SHARED / "warc").rglob("*") if p.is_file() and p.name != "LICENSE"
                  and not p.name.endswith((".md", ".txt", ".json", ".cdxj", ".html")))


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) used so far by these processes and all their descendants, the live ones and those
    that ended and were waited for (a pool's finished workers, a killed extraction process)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def stages_in_process(paths: list[str], modes: tuple[str, ...], out_dir: Path) -> dict:
    """Run the path's steps one after another in this process over all records of `paths`, and measure the CPU time
    of each step over all records (CPU time, not wall time: other work on the machine does not inflate it).
    Extraction runs every mode on each page before the next page, so the modes meet the same conditions, and runs
    the first mode once more through the killable child process the path uses, to measure what that costs."""
    cpu = dict.fromkeys(STAGES, 0.0)
    t = time.process_time()
    records = []
    for path in paths:
        report = FileReport(input=path)
        records += [(path, r) for r in warc.read_records(path, report, 5_000_000)]
    cpu["read"] = time.process_time() - t
    html = [(p, r) for p, r in records
            if r.rec_type == "response" and r.status == 200 and warc.is_html(r.content_type, r.body)]

    t = time.process_time()
    decoded = []
    for path, rec in html:
        try:
            decoded.append((path, rec, decode_html(rec.body or b"", rec.content_type)[0]))
        except DecodeError:
            pass
    cpu["decode"] = time.process_time() - t

    extract_cpu = dict.fromkeys(modes, 0.0)
    texts: dict[str, dict] = {mode: {} for mode in modes}
    extracted = []
    with Extractor() as extractor:
        options = {mode: ExtractOptions(mode=mode, timeout_s=300) for mode in modes}
        extractor.extract("<html><body><p>warm up</p></body></html>", None, options[modes[0]])
        child_cpu = 0.0
        for path, rec, html_text in decoded:
            for mode in modes:
                t = time.process_time()
                title, body = extract_in_process(html_text, rec.url, options[mode])
                extract_cpu[mode] += time.process_time() - t
                texts[mode][rec.record_id] = body
                if mode == modes[0]:
                    extracted.append((path, rec, title, body))
            before = cpu_seconds([os.getpid()])  # this process and the extraction process
            extractor.extract(html_text, rec.url, options[modes[0]])
            child_cpu += cpu_seconds([os.getpid()]) - before
    cpu["extract"] = extract_cpu[modes[0]]

    language.identify("warm up the model")
    t = time.process_time()
    identified = [(p, r, title, body, *language.identify(body)) for p, r, title, body in extracted if body]
    cpu["language"] = time.process_time() - t

    t = time.process_time()
    with ShardWriter(out_dir / "bench.parquet") as writer:
        for path, rec, title, body, lang, score in identified:
            writer.write_rows([make_document(source="commoncrawl", url=rec.url, title=title, text=body, lang=lang,
                                             lang_score=score, origin_file=path, origin_offset=rec.offset,
                                             origin_id=rec.record_id, crawl_time=rec.date)])
    cpu["write"] = time.process_time() - t
    total = sum(cpu.values())
    return {"records": len(records), "html": len(html), "documents": len(identified),
            "cpu_s": {k: round(v, 3) for k, v in cpu.items()}, "total_cpu_s": round(total, 2),
            "docs_per_cpu_s": round(len(identified) / total, 2),
            "extract_cpu_s": {k: round(v, 2) for k, v in extract_cpu.items()},
            "extract_cpu_s_child_process": round(child_cpu, 2), "texts": texts}


def write_warc_zst(gz_path: str, out_dir: Path, dictionary: zstandard.ZstdCompressionDict) -> tuple[str, int]:
    """The records of a .warc.gz rewritten as a WARC-zstd file: the dictionary in its dictionary frame, then one zstd
    frame per record (level 3, checksummed). Returns the path and the uncompressed size."""
    data = gzip.decompress(Path(gz_path).read_bytes())
    iterator = ArchiveIterator(io.BytesIO(data))
    offsets = [iterator.offset for _ in iterator] + [len(data)]
    compressor = zstandard.ZstdCompressor(level=3, dict_data=dictionary, write_checksum=True)
    dictionary_bytes = dictionary.as_bytes()
    out = struct.pack("<II", 0x184D2A5D, len(dictionary_bytes)) + dictionary_bytes
    out += b"".join(compressor.compress(data[a:b]) for a, b in zip(offsets, offsets[1:]))
    path = out_dir / (Path(gz_path).name.removesuffix(".gz") + ".zst")
    path.write_bytes(out)
    return str(path), len(data)


def read_formats(gz_paths: list[str], out_dir: Path) -> dict:
    """CPU time of reading every record (warc.read_records) of the same WARC files as .warc.gz and as .warc.zst, the
    zstd dictionary trained on the first 200 records, as a crawler trains it on its first records."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = gzip.decompress(Path(gz_paths[0]).read_bytes())
    iterator = ArchiveIterator(io.BytesIO(data))
    offsets = [iterator.offset for _ in iterator][:201]
    dictionary = zstandard.train_dictionary(112_640, [data[a:b] for a, b in zip(offsets, offsets[1:])],
                                            dict_id=40_000)
    written = [write_warc_zst(p, out_dir, dictionary) for p in gz_paths]
    result = {"uncompressed_mb": round(sum(n for _, n in written) / 1e6, 1)}
    for name, paths in (("gzip", gz_paths), ("zstd", [p for p, _ in written])):
        t = time.process_time()
        records = sum(1 for p in paths for _ in warc.read_records(p, FileReport(input=p), 5_000_000))
        result[name] = {"records": records, "cpu_s": round(time.process_time() - t, 3),
                        "compressed_mb": round(sum(os.path.getsize(p) for p in paths) / 1e6, 1)}
    return result


def plain_loop(paths: list[str]) -> dict:
    """The baseline: what a user writes without corpusforge, one page after another in one process: warcio's
    iterator, `trafilatura.extract` on the raw HTML bytes (its default mode; it decodes them itself), lid.176 on the
    text. Documents per CPU-second."""
    import trafilatura

    trafilatura.extract(b"<html><body><p>warm up</p></body></html>", url="https://www.example.com/")
    language.identify("warm up the model")
    t, docs = time.process_time(), 0
    for path in paths:
        with open(path, "rb") as fh:
            for record in ArchiveIterator(fh):
                if record.rec_type != "response" or record.http_headers.get_statuscode() != "200":
                    continue
                text = trafilatura.extract(record.content_stream().read(),
                                           url=record.rec_headers.get_header("WARC-Target-URI"))
                if text:
                    language.identify(text)
                    docs += 1
    cpu = time.process_time() - t
    return {"documents": docs, "cpu_s": round(cpu, 2), "docs_per_cpu_s": round(docs / cpu, 2)}


def datatrove_pipeline(paths: list[str], out_dir: Path, workers: int) -> dict:
    """The peer: datatrove's own extraction pipeline as FineWeb runs it, WarcReader -> Trafilatura (its defaults:
    favour_precision, each page in a killable child process) -> language ID -> ParquetWriter (zstd, as corpusforge writes), on its
    LocalPipelineExecutor with one task per file and `workers` processes (its pool starts within the run, so its
    start-up counts; the Dask cluster's does not). The language step is datatrove's LanguageFilter(label_only=True)
    done over (`datatrove_language`): datatrove's own checks for the `fasttext-numpy2-wheel` distribution, which would
    replace the `fasttext` module corpusforge uses. CPU time of this process and all its descendants; the texts are
    kept to score them."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import ParquetWriter

    pipeline = [WarcReader(str(Path(paths[0]).parent), glob_pattern="*.warc.gz"), Trafilatura(timeout=300),
                datatrove_language, ParquetWriter(str(out_dir / "output"), compression="zstd")]
    executor = LocalPipelineExecutor(pipeline, tasks=len(paths), workers=workers, logging_dir=str(out_dir / "logs"))
    cpu0, t = cpu_seconds([os.getpid()]), time.perf_counter()
    executor.run()
    wall, cpu = time.perf_counter() - t, cpu_seconds([os.getpid()]) - cpu0
    texts = _texts(out_dir / "output", "id")
    docs = len(texts)
    return {"workers": workers, "tasks": len(paths), "documents": docs, "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "docs_per_s_wall": round(docs / wall, 2), "docs_per_cpu_s": round(docs / cpu, 2),
            "texts": texts}


def datatrove_language(data, rank: int = 0, world_size: int = 1):
    """What datatrove's LanguageFilter(label_only=True) does to each document: lid.176's scores for every label
    (k=-1) of the text with newlines as spaces, the best as `language` and `language_score`; drops nothing."""
    model = language.load_model()
    for doc in data:
        labels, scores = model.predict(doc.text.replace("\n", " "), k=-1)
        doc.metadata["language"] = labels[0].removeprefix("__label__")
        doc.metadata["language_score"] = float(scores[0])
        yield doc


def full_path(paths: list[str], out_dir: Path, workers: int, mode: str = MODE) -> dict:
    """The real thing: commoncrawl.run on a LocalCluster of `workers` processes (cluster start-up excluded). Wall
    time depends on what else runs on the machine; CPU time much less, so documents per CPU-second of all the
    processes involved is the number compared with the in-process stages."""
    from rich.console import Console

    from corpusforge.runtime import dask_client

    with dask_client(workers=workers) as client:
        # This process and its descendants: scheduler and client, nannies, workers, their extraction processes.
        cpu0, t = cpu_seconds([os.getpid()]), time.perf_counter()
        summary = cc.run(cc.CommonCrawlConfig(inputs=paths, min_text_chars=1, timeout_s=300, mode=mode,
                                              output=str(out_dir)),
                         RunContext(client=client, console=Console(file=io.StringIO())))
        wall, cpu = time.perf_counter() - t, cpu_seconds([os.getpid()]) - cpu0
    texts = _texts(out_dir, "origin_id")
    docs = summary.counts.get("documents", 0)
    return {"mode": mode, "workers": workers, "files": summary.files, "documents": docs, "errors": summary.errors,
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "docs_per_s_wall": round(docs / wall, 2),
            "docs_per_cpu_s": round(docs / cpu, 2), "texts": texts}


def combine(runs: list[dict]) -> dict:
    """Rounds of one pipeline as one: documents, CPU and wall seconds summed, rates over the sums, each round's rate
    kept; the texts of the first round (every round extracts the same pages)."""
    docs, cpu, wall = (sum(r[k] for r in runs) for k in ("documents", "cpu_s", "wall_s"))
    return {**runs[0], "rounds": len(runs), "documents": docs, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
            "docs_per_cpu_s": round(docs / cpu, 2), "docs_per_s_wall": round(docs / wall, 2),
            "docs_per_cpu_s_by_round": [r["docs_per_cpu_s"] for r in runs]}


def _texts(folder: Path, id_column: str) -> dict[str, str]:
    """{record id: text} of the Parquet shards in `folder`."""
    import pyarrow.parquet as pq

    texts = {}
    for shard in folder.glob("*.parquet"):
        table = pq.read_table(shard, columns=[id_column, "text"])
        texts.update(zip(table.column(id_column).to_pylist(), table.column("text").to_pylist()))
    return texts


def shares(seconds: dict) -> str:
    total = sum(seconds.values())
    return " · ".join(f"{k} {100 * v / total:.1f}%" for k, v in seconds.items())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="bench.commoncrawl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=None, help="use only the first N eval pages")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the path and datatrove's pipeline")
    args = parser.parse_args(argv)
    pages = extract_eval.load_pages(SHARED / "extraction" / "trafilatura-eval", limit=args.pages)
    floors = json.loads((SHARED / "extraction" / "trafilatura-eval" / "eval_baseline.json").read_text())["floors"]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        eval_paths = [str(p) for p in extract_eval.write_warcs(pages, tmp / "eval", files=8)]
        print(f"eval pages: {len(pages)} in {len(eval_paths)} WARC files; captures: {len(captures())} files")
        stages = stages_in_process(eval_paths, (MODE,), tmp)
        quality = extract_eval.score((p, stages["texts"][MODE].get(p.record_id)) for p in pages)
        print(f"  in process, eval pages: {stages['cpu_s']}; {quality}")
        caps = stages_in_process(captures(), (MODE,), tmp)
        print(f"  in process, captures: {caps['documents']} documents, {caps['cpu_s']}")
        formats = read_formats(eval_paths, tmp / "zstd")
        print(f"  reading .warc.gz vs .warc.zst: {formats}")
        # The path and datatrove's pipeline in alternating rounds, so that a change in the machine's load between
        # two runs weighs on both alike; each side's rate is its documents over its CPU seconds, all rounds summed.
        runs, peers = [], []
        for r in range(args.rounds):
            runs.append(full_path(eval_paths, tmp / f"run-eval-{r}", args.workers))
            peers.append(datatrove_pipeline(eval_paths, tmp / f"datatrove-{r}", args.workers))
            print(f"  round {r + 1}: path {runs[-1]['docs_per_cpu_s']}, datatrove {peers[-1]['docs_per_cpu_s']} "
                  "docs/CPU-s")
        eval_run, peer = combine(runs), combine(peers)
        eval_run["quality"] = extract_eval.score((p, eval_run["texts"].get(p.record_id)) for p in pages)
        print(f"  full path, eval pages: {eval_run['docs_per_cpu_s']} docs/CPU-s, {eval_run['quality']}")
        before_run = full_path(eval_paths, tmp / "run-eval-before", args.workers, mode=BEFORE)
        before_run["quality"] = extract_eval.score((p, before_run["texts"].get(p.record_id)) for p in pages)
        print(f"  full path, eval pages, mode {BEFORE}: {before_run['docs_per_cpu_s']} docs/CPU-s, "
              f"{before_run['quality']}")
        loop = plain_loop(eval_paths)
        loop["quality"] = None  # its texts are not kept: the loop is timed as a user would run it
        print(f"  plain trafilatura loop, eval pages: {loop['docs_per_cpu_s']} docs/CPU-s")
        peer["quality"] = extract_eval.score((p, peer["texts"].get(p.record_id)) for p in pages)
        print(f"  datatrove's pipeline, eval pages: {peer['docs_per_cpu_s']} docs/CPU-s, {peer['quality']}")
        caps_run = full_path(captures(), tmp / "run-captures", args.workers)
        print(f"  full path, captures: {caps_run['docs_per_cpu_s']} docs/CPU-s")
    for result in (stages, caps, eval_run, before_run, caps_run, peer):
        result.pop("texts")

    extract = stages["extract_cpu_s"]
    table = [
        {"what": f"CommonCrawl path on {args.workers} Dask workers (mode {MODE}) vs datatrove's pipeline (WarcReader, "
                 f"Trafilatura, lid.176, ParquetWriter) on {args.workers} processes, {len(pages)} trafilatura eval "
                 f"pages as WARC, CPU of all processes, {args.rounds} alternating rounds",
         "result": f"{eval_run['docs_per_cpu_s']} docs/s/core, F1 {eval_run['quality']['f1']}",
         "baseline": f"datatrove: {peer['docs_per_cpu_s']} docs/s/core ({peer['documents'] // args.rounds} docs), "
                     f"F1 {peer['quality']['f1']}",
         "ratio": f"{eval_run['docs_per_cpu_s'] / peer['docs_per_cpu_s']:.2f}"},
        {"what": f"CommonCrawl path on {args.workers} Dask workers (mode {MODE}) vs a plain sequential loop (warcio, "
                 f"trafilatura.extract default mode, lid.176), {len(pages)} trafilatura eval pages as WARC",
         "result": f"{eval_run['docs_per_cpu_s']} docs/s/core",
         "baseline": f"plain loop: {loop['docs_per_cpu_s']} docs/s/core",
         "ratio": f"{eval_run['docs_per_cpu_s'] / loop['docs_per_cpu_s']:.2f}"},
        {"what": f"CommonCrawl path, mode {MODE} (after) vs {BEFORE} (before), same run, {len(pages)} eval pages",
         "result": f"{eval_run['docs_per_cpu_s']} docs/s/core, {eval_run['docs_per_s_wall']} docs/s wall, "
                   f"F1 {eval_run['quality']['f1']}",
         "baseline": f"{BEFORE}: {before_run['docs_per_cpu_s']} docs/s/core, {before_run['docs_per_s_wall']} docs/s "
                     f"wall, F1 {before_run['quality']['f1']}",
         "ratio": f"{eval_run['docs_per_cpu_s'] / before_run['docs_per_cpu_s']:.2f}"},
        {"what": f"CommonCrawl path on {args.workers} Dask workers, trafilatura eval pages as WARC "
                 f"({eval_run['documents'] // args.rounds} docs per round)",
         "result": f"{eval_run['docs_per_cpu_s']} docs/s/core",
         "baseline": f"same stages in one process: {stages['docs_per_cpu_s']} docs/s",
         "ratio": f"{eval_run['docs_per_cpu_s'] / stages['docs_per_cpu_s']:.2f}"},
        {"what": f"CommonCrawl path on {args.workers} Dask workers, real captures in shared/data/warc "
                 f"({caps_run['documents']} docs)",
         "result": f"{caps_run['docs_per_cpu_s']} docs/s/core",
         "baseline": f"same stages in one process: {caps['docs_per_cpu_s']} docs/s",
         "ratio": f"{caps_run['docs_per_cpu_s'] / caps['docs_per_cpu_s']:.2f}"},
        {"what": f"CPU time by stage (eval pages, {MODE})", "result": shares(stages["cpu_s"]), "baseline": "",
         "ratio": ""},
        {"what": f"extraction in the killable child process vs in process (eval pages, {MODE}, CPU)",
         "result": f"{stages['extract_cpu_s_child_process']:.1f} s", "baseline": f"{extract[MODE]:.1f} s",
         "ratio": f"{stages['extract_cpu_s_child_process'] / extract[MODE]:.2f}"},
        {"what": f"eval-set F1 through the full path (mode {MODE}, {len(pages)} pages)",
         "result": f"F1 {eval_run['quality']['f1']} (P {eval_run['quality']['precision']}, "
                   f"R {eval_run['quality']['recall']})",
         "baseline": f"trafilatura's own gate for its default mode, on raw bytes: {floors['fallback']}",
         "ratio": f"{eval_run['quality']['f1'] / floors['fallback']:.3f}"},
    ]
    mb_per_s = {name: formats["uncompressed_mb"] / formats[name]["cpu_s"] for name in ("gzip", "zstd")}
    table.append({
        "what": f"reading .warc.zst (a frame per record, trained dictionary) vs .warc.gz, the same "
                f"{formats['zstd']['records']} eval records, CPU",
        "result": f"{mb_per_s['zstd']:.0f} MB/s ({formats['zstd']['compressed_mb']} MB)",
        "baseline": f"gzip: {mb_per_s['gzip']:.0f} MB/s ({formats['gzip']['compressed_mb']} MB)",
        "ratio": f"{mb_per_s['zstd'] / mb_per_s['gzip']:.2f}"})
    results = {
        "table": table, "quality_in_process": quality, "stages_eval": stages, "stages_captures": caps,
        "read_formats": formats, "full_path_eval": eval_run, "full_path_eval_before": before_run,
        "plain_loop_eval": loop, "datatrove_eval": peer, "full_path_captures": caps_run, "trafilatura_floors": floors,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)  # the rows say how many pages were used
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    for row in table:
        print(f"  {row['what']}: {row['result']} | {row['baseline']} | {row['ratio']}")
    return results


if __name__ == "__main__":
    main()
