"""Running stages: the run context and its Dask client, atomic writes, and the `_errors.jsonl` / `_summary.json`
files every stage leaves in its output folder (mapping a task over the inputs with progress is `tasks`).

A stage's per-file task is a plain function `task(item, out_dir, config) -> FileReport`. It runs on a Dask worker,
streams its one input, writes its output atomically and returns a small report (counts and errors, never data), so
memory stays bounded by one input per worker whatever the number of inputs. The same code runs on a LocalCluster or
on a cluster named by `--scheduler tcp://host:8786`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import json
import logging
import os
import socket
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpusforge import schema as schema_mod
from corpusforge import storage
from corpusforge.options import positive_int, setting

if TYPE_CHECKING:
    from corpusforge.resume import Fingerprint

ERRORS_FILE = "_errors.jsonl"
SUMMARY_FILE = "_summary.json"
STAGE_FILE = "_stage.json"  # the completion mark: {"stage", "complete"}; readers refuse an unfinished folder
FINGERPRINTS_DIR = "_fingerprints"  # one JSON per output file: the settings and inputs it was made from
REPORT_KEY = b"corpusforge.report"
LOG_EVERY_S = 30.0  # how often a stage's progress goes to the run's log (a multi-day run's log stays small)
_log = logging.getLogger("corpusforge")
# What stages leave beside their shards, named here so readers (stats) need not import the stages.
DROPPED_FILE = "_dropped.parquet"  # quality: a sample of the dropped documents per reason
DUPLICATES_FILE = "_duplicates.parquet"  # dedup: each removed document and the copy kept
DECONTAMINATION_FILE = "_decontamination.parquet"  # decontaminate: what was cut for which example
DIRTY_FILE = "_dirty_examples.parquet"  # decontaminate: the evaluation examples seen in training
# Beside inputs: the errors they cause on purpose ({file name: [{"offset", "why"}]}; the sample's damaged record).
EXPECTED_ERRORS_FILE = "_expected_errors.json"
# FileReport fields that describe one run rather than the input (kept out of a shard's metadata).
_RUN_FIELDS = ("output", "seconds", "resumed", "redone")


# ---------------------------------------------------------------------------------------------------------- writes
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds.

    Readers never see a partial file: the temporary name starts with a dot and ends in `.tmp`, which no reader globs.
    A temporary file for the same `path` left by an earlier writer that was killed (a lost Dask worker, SIGKILL) is
    removed first: one output has one writer at a time, so any other one is debris. For a URL (`s3://...`) the
    temporary file is local and uploaded whole to `path` (storage.upload_atomic).
    """
    if storage.is_url(path):
        with storage.upload_atomic(str(path)) as tmp:
            yield tmp
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}-{os.getpid()}.tmp")
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if stale != tmp:
            stale.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


class ShardWriter:
    """Write record batches of one schema to a Parquet file atomically, a row group at a time.

    Use as a context manager; the file appears under its final name only when the block exits cleanly. The task's
    FileReport (given to `set_report` after the last write) is stored in the file's metadata so a re-run can skip
    the input and still report its counts. Documents written are tallied per source and `set_report` adds them to
    the report as `out.SOURCE.documents` and `out.SOURCE.bytes` (UTF-8 bytes of their text): the corpus funnel's
    counts at every stage, whichever stage writes the file.
    """

    def __init__(self, path: str | os.PathLike, schema_name: str = "document", row_group_rows: int = 2048,
                 fingerprint: Fingerprint | None = None):
        self.path = path if storage.is_url(path) else Path(path)
        self.fingerprint = fingerprint
        self.schema = schema_mod.arrow_schema(schema_name)
        self.row_group_rows = row_group_rows
        self.rows = 0
        self._buffer: list[dict[str, Any]] = []
        self._ctx = atomic_path(self.path)
        self._writer: pq.ParquetWriter | None = None
        self._report: bytes | None = None
        self._written: Counter[str] = Counter()  # out.SOURCE.documents / out.SOURCE.bytes of a document shard

    def __enter__(self) -> ShardWriter:
        self._tmp = self._ctx.__enter__()
        return self

    def write_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        if "text" in self.schema.names and "source" in self.schema.names:
            for row in rows:
                self._written[f"out.{row.get('source')}.documents"] += 1
                self._written[f"out.{row.get('source')}.bytes"] += len((row.get("text") or "").encode("utf-8"))
        self._buffer.extend(rows)
        if len(self._buffer) >= self.row_group_rows:
            self._flush()

    def write_table(self, table: pa.Table) -> None:
        if "text" in self.schema.names and "source" in self.schema.names and table.num_rows:
            sizes = pa.table({"source": table.column("source"),
                              "bytes": pc.binary_length(table.column("text").cast(pa.large_string()))})
            counted = sizes.group_by("source").aggregate([("bytes", "sum"),
                                                          ("source", "count", pc.CountOptions(mode="all"))])
            for row in counted.to_pylist():
                self._written[f"out.{row['source']}.documents"] += row["source_count"]
                self._written[f"out.{row['source']}.bytes"] += row["bytes_sum"] or 0
        self._flush()
        self._open().write_table(table.select(self.schema.names).cast(self.schema), row_group_size=self.row_group_rows)
        self.rows += table.num_rows

    def set_report(self, report: FileReport) -> None:
        for key, n in self._written.items():
            report.count(key, n)
        self._report = report_metadata(report)

    def _open(self) -> pq.ParquetWriter:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd", write_statistics=True)
        return self._writer

    def _flush(self) -> None:
        if self._buffer:
            table = pa.Table.from_pydict(
                {f.name: [r.get(f.name) for r in self._buffer] for f in self.schema}, schema=self.schema
            )
            self._open().write_table(table, row_group_size=self.row_group_rows)
            self.rows += table.num_rows
            self._buffer = []

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        try:
            if exc_type is None:
                self._flush()
                writer = self._open()
                if self._report is not None:
                    writer.add_key_value_metadata({REPORT_KEY: self._report})
                writer.close()
            elif self._writer is not None:
                self._writer.close()
        except BaseException:
            self._ctx.__exit__(*sys.exc_info())
            raise
        result = self._ctx.__exit__(exc_type, exc, tb)
        if exc_type is None and self.fingerprint is not None:
            self.fingerprint.save(self.path)  # after the file: a file without its fingerprint is redone
        return result


def report_metadata(report: FileReport) -> bytes:
    """A task's report as a finished Parquet file keeps it (under REPORT_KEY): only what the input determines, not
    its time or output path, so the same input gives a byte-identical file wherever and whenever written."""
    kept = {k: v for k, v in dataclasses.asdict(report).items() if k not in _RUN_FIELDS}
    return json.dumps(kept, default=str, sort_keys=True).encode()


def read_report(path: str | os.PathLike) -> FileReport | None:
    """The FileReport a ShardWriter or `report_metadata`'s caller stored in a finished Parquet file, or None."""
    try:
        with storage.open_file(path) as fh:
            meta = pq.read_metadata(fh).metadata or {}
    except Exception:  # an unreadable file is not finished output: redo it
        return None
    raw = meta.get(REPORT_KEY)
    return FileReport(**{**json.loads(raw), "output": str(path)}) if raw else None


def output_name(item: str, suffix: str = ".parquet") -> str:
    """A stable output file name for an input path or URL: its stem plus a short hash of the full name, so two
    inputs with the same base name in different folders never collide."""
    base = str(item).rstrip("/").rsplit("/", 1)[-1]
    for ext in (".gz", ".bz2", ".zst", ".xz", ".lz4", ".warc", ".arc", ".xml", ".txt", ".epub", ".json", ".jsonl"):
        if base.endswith(ext):
            base = base[: -len(ext)]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in base)[:80] or "input"
    return f"{safe}-{hashlib.sha1(str(item).encode()).hexdigest()[:8]}{suffix}"


# --------------------------------------------------------------------------------------------------------- reports
@dataclasses.dataclass
class FileReport:
    """What one per-file task did: counters (records, documents, drop reasons...), documents written by language,
    errors (each a dict with file, offset, stage, reason), warnings (the same, with `level: "warning"`: something odd
    in the input that lost nothing), the output written and the seconds taken."""

    input: str
    output: str | None = None
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    by_lang: dict[str, int] = dataclasses.field(default_factory=dict)
    errors: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    bytes_in: int = 0
    resumed: bool = False
    warnings: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    redone: str | None = None  # why a finished output was made again (its input or settings changed)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def error(self, reason: str, *, offset: int | None = None, stage: str = "read", **extra: Any) -> None:
        self.errors.append({"file": self.input, "offset": offset, "stage": stage, "reason": reason, **extra})

    def warn(self, reason: str, *, offset: int | None = None, stage: str = "read", **extra: Any) -> None:
        # Beside the errors in `_errors.jsonl`, but not counted as errors (nor failing --fail-on-error).
        self.warnings.append({"file": self.input, "offset": offset, "stage": stage, "reason": reason,
                              "level": "warning", **extra})


_KEPT = ("documents", "kept", "candidates", "fetched", "links", "shards", "tokens")  # what stages count as kept


@dataclasses.dataclass
class StageSummary:
    """The aggregate of a stage's FileReports, written as `_summary.json` and printed as a table."""

    stage: str
    files: int = 0
    resumed_files: int = 0
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    by_lang: dict[str, int] = dataclasses.field(default_factory=dict)
    errors: int = 0
    bytes_in: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    warnings: int = 0
    expected_errors: int = 0  # errors the inputs' folders say they cause on purpose (mark_expected)

    def add(self, report: FileReport) -> None:
        self.files += 1
        self.resumed_files += int(report.resumed)
        self.counts = dict(Counter(self.counts) + Counter(report.counts))
        self.by_lang = dict(Counter(self.by_lang) + Counter(report.by_lang))
        self.errors += len(report.errors)
        self.warnings += len(report.warnings)
        self.bytes_in += report.bytes_in

    def every_input_failed(self) -> bool:
        """It had inputs and every one of them failed: nothing kept, an error for each."""
        return bool(self.files and self.errors >= self.files and not any(self.counts.get(k) for k in _KEPT))

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["by_lang"] = dict(sorted(self.by_lang.items(), key=lambda kv: (-kv[1], kv[0])))
        out["counts"] = dict(sorted(self.counts.items()))
        return out


def finish_stage(out_dir: str | os.PathLike, summary: StageSummary, errors: list[dict[str, Any]],
                 console: Any = None) -> StageSummary:
    """Write `_errors.jsonl` and `_summary.json` into `out_dir` (atomically), mark it complete and print the
    summary table. Errors that their input's folder expects (mark_expected) are marked so, and counted apart in the
    summary."""
    from corpusforge import resume

    errors = sorted(errors, key=lambda e: (str(e.get("file")), e.get("offset") or 0, str(e.get("reason"))))
    summary.expected_errors = mark_expected(errors)
    write_text_atomic(storage.join(out_dir, ERRORS_FILE),
                      "".join(json.dumps(e, default=str, ensure_ascii=False) + "\n" for e in errors))
    write_json_atomic(storage.join(out_dir, SUMMARY_FILE), summary.to_json())
    resume.end_stage(out_dir, summary.stage)
    _log.info("%s: finished: %s", summary.stage, json.dumps(summary.to_json(), default=str, sort_keys=True))
    print_summary(summary, console=console)
    return summary


def mark_expected(errors: list[dict[str, Any]]) -> int:
    """Mark each error (not warning) that the folder of its input file lists in `_expected_errors.json` with
    `"expected": why` (the sample damages a record on purpose, so that a user sees one reported); return how many
    are marked. Only local folders holding a failed input are looked at."""
    listed: dict[str, dict[str, Any]] = {}
    marked = 0
    for error in errors:
        path = str(error.get("file") or "")
        if error.get("level") == "warning" or not path or storage.is_url(path):
            continue
        folder, name = os.path.split(path)
        if folder not in listed:
            try:
                listed[folder] = json.loads(Path(folder, EXPECTED_ERRORS_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                listed[folder] = {}
        why = next((e["why"] for e in listed[folder].get(name, []) if e.get("offset") == error.get("offset")), None)
        if why:
            error["expected"] = why
            marked += 1
    return marked


def print_summary(summary: StageSummary, console: Any = None) -> None:
    """The stage's summary in a few lines: files, errors, bytes and seconds; its counters, those of a kind
    (skipped_, dropped_, removed_) together; its documents by language. Per source or language breakdowns (keys
    with ':' or '.') and byte counters are in `_summary.json` and the report, not here."""
    from rich.console import Console

    console = console or Console(stderr=True)
    expected = f" ({summary.expected_errors:,} expected: see _errors.jsonl)" if summary.expected_errors else ""
    head = [f"{summary.files:,} files" + (f" ({summary.resumed_files} resumed)" if summary.resumed_files else ""),
            f"errors {summary.errors:,}{expected}", *([f"warnings {summary.warnings:,}"] if summary.warnings else []),
            f"{summary.bytes_in:,} bytes in", f"{summary.seconds:.1f} s"]
    plain: list[str] = []
    kinds: dict[str, list[str]] = {}
    for key, value in sorted(summary.counts.items()):
        if ":" in key or "." in key or key.endswith("_bytes"):
            continue
        kind, _, what = key.partition("_")
        if kind in ("skipped", "dropped", "removed") and what:
            kinds.setdefault(kind, []).append(f"{what.replace('_', ' ')} {value:,}")
        else:
            plain.append(f"{key.replace('_', ' ')} {value:,}")
    console.print(f"[bold]{summary.stage}: summary[/bold]: " + ", ".join(head), highlight=False)
    counts = "; ".join([", ".join(plain), *(f"{kind}: {', '.join(v)}" for kind, v in kinds.items())])
    if counts.strip("; "):
        console.print(f"  {counts}", highlight=False)
    if summary.by_lang:
        langs = ", ".join(f"{k} {v}" for k, v in list(summary.to_json()["by_lang"].items())[:15])
        console.print(f"  documents by language: {langs}", highlight=False)


# ------------------------------------------------------------------------------------------------------------ dask
@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None, threads_per_worker: int = 1, *,
                scheduler_file: str | None = None, cluster: Any = None, console: Any = None):
    """A `distributed.Client` (see `corpusforge.cluster.connect`): connected to `scheduler` (tcp://host:port) or the
    one in `scheduler_file` when given, else to the cluster `cluster` (a ClusterConfig) describes, by default a
    LocalCluster of `workers` processes (default: one per core) with `threads_per_worker` threads each."""
    from corpusforge import cluster as cluster_mod

    config = cluster or cluster_mod.ClusterConfig(threads_per_worker=threads_per_worker)
    with cluster_mod.connect(config, scheduler=scheduler, scheduler_file=scheduler_file, workers=workers,
                             console=console) as client:
        yield client


@dataclasses.dataclass
class RunContext:
    """What a stage's `run(config, ctx)` gets besides its config: the Dask client, the console, the run's seed and
    folder (and the recipe, so a stage can find another stage's output). `dask()` is the one place a client is
    borrowed (the run's, or one a caller passed) or opened for the call from `scheduler`/`workers`."""

    client: Any = None
    console: Any = None
    scheduler: str | None = setting(None, "run on an existing Dask cluster, e.g. tcp://host:8786")
    workers: int | None = setting(None, "LocalCluster worker processes (default: one per core)", type=positive_int)
    seed: int = 1234
    output: str = "build/corpus"
    recipe: Any = None
    scheduler_file: str | None = setting(  # Dask's scheduler file (dask-mpi, Slurm batch scripts)
        None, "run on the Dask scheduler this file names (dask scheduler --scheduler-file, dask-mpi)")
    cluster: Any = None  # a cluster.ClusterConfig ([run.cluster]); None: a LocalCluster
    # How a command judges and redoes its stages (`corpusforge.cli.main` reads `fail_on_error` for the exit code).
    fail_on_error: bool = setting(False, "exit 1 if any input was damaged (default: 0)", action="store_true")
    force: bool = setting(False, "make every output again, even those whose inputs and settings did not change",
                          action="store_true")

    def __post_init__(self) -> None:
        if self.console is None:
            from rich.console import Console

            self.console = Console(stderr=True)
        if self.force:
            from corpusforge import resume

            resume.force_recompute()

    def adopt(self, run: Any) -> None:
        """Take what the command line left unset from a recipe's `[run]` (a recipe.RunConfig): the cluster to run
        on, and whether a damaged input fails the command."""
        self.scheduler, self.workers = self.scheduler or run.scheduler, self.workers or run.workers
        self.fail_on_error = self.fail_on_error or run.fail_on_error

    @contextlib.contextmanager
    def dask(self) -> Iterator[Any]:
        """The context's client; without one, a client opened from `scheduler`/`workers` for this block (and lent
        to every stage called inside it)."""
        if self.client is not None:
            yield self.client
            return
        with dask_client(self.scheduler, self.workers, scheduler_file=self.scheduler_file, cluster=self.cluster,
                         console=self.console) as client:
            self.client = client
            try:
                yield client
            finally:
                self.client = None

    def path(self, *parts: str) -> Any:
        """A path (or object store URL) in the run's folder."""
        return storage.join(self.output, *parts)


def errors_of(reports: Sequence[FileReport]) -> list[dict[str, Any]]:
    """The errors and warnings of `reports`, for `_errors.jsonl`."""
    return [e for r in reports for e in r.errors + r.warnings]


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file or object, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with storage.open_file(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
