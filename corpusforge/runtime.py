"""Running stages: the Dask client, mapping a per-file task over inputs with progress, atomic writes, and the
`_errors.jsonl` / `_summary.json` files every stage leaves in its output folder.

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
import os
import shutil
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from corpusforge import schema as schema_mod
from corpusforge.errors import UserError

ERRORS_FILE = "_errors.jsonl"
SUMMARY_FILE = "_summary.json"
STAGE_FILE = "_stage.json"  # the completion mark: {"stage", "complete"}; readers refuse an unfinished folder
FINGERPRINTS_DIR = "_fingerprints"  # one JSON per output file: the settings and inputs it was made from
REPORT_KEY = b"corpusforge.report"
# FileReport fields that describe one run rather than the input (kept out of a shard's metadata).
_RUN_FIELDS = ("output", "seconds", "resumed", "redone")
# Config fields that do not shape an output file (which inputs a stage reads is decided by the item itself).
_NOT_SHAPING = ("inputs", "output", "limit_files", "task_bytes")


# ---------------------------------------------------------------------------------------------------------- writes
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds.

    Readers never see a partial file: the temporary name starts with a dot and ends in `.tmp`, which no reader globs.
    A temporary file for the same `path` left by an earlier writer that was killed (a lost Dask worker, SIGKILL) is
    removed first: one output has one writer at a time, so any other one is debris.
    """
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
    FileReport (if given to `close`) is stored in the file's metadata so a re-run can skip the input and still
    report its counts.
    """

    def __init__(self, path: str | os.PathLike, schema_name: str = "document", row_group_rows: int = 2048,
                 fingerprint: Fingerprint | None = None):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.schema = schema_mod.arrow_schema(schema_name)
        self.row_group_rows = row_group_rows
        self.rows = 0
        self._buffer: list[dict[str, Any]] = []
        self._ctx = atomic_path(self.path)
        self._writer: pq.ParquetWriter | None = None
        self._report: dict[str, Any] | None = None

    def __enter__(self) -> ShardWriter:
        self._tmp = self._ctx.__enter__()
        return self

    def write_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        self._buffer.extend(rows)
        if len(self._buffer) >= self.row_group_rows:
            self._flush()

    def write_table(self, table: pa.Table) -> None:
        self._flush()
        self._open().write_table(table.select(self.schema.names).cast(self.schema), row_group_size=self.row_group_rows)
        self.rows += table.num_rows

    def set_report(self, report: FileReport) -> None:
        # Only what the input determines: the same input gives a byte-identical file wherever and whenever written.
        self._report = {k: v for k, v in dataclasses.asdict(report).items() if k not in _RUN_FIELDS}

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
                    writer.add_key_value_metadata({REPORT_KEY: json.dumps(self._report, default=str,
                                                                          sort_keys=True).encode()})
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


def read_report(path: str | os.PathLike) -> FileReport | None:
    """The FileReport a ShardWriter stored in a finished Parquet file, or None."""
    try:
        meta = pq.read_metadata(path).metadata or {}
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

    def add(self, report: FileReport) -> None:
        self.files += 1
        self.resumed_files += int(report.resumed)
        self.counts = dict(Counter(self.counts) + Counter(report.counts))
        self.by_lang = dict(Counter(self.by_lang) + Counter(report.by_lang))
        self.errors += len(report.errors)
        self.warnings += len(report.warnings)
        self.bytes_in += report.bytes_in

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["by_lang"] = dict(sorted(self.by_lang.items(), key=lambda kv: (-kv[1], kv[0])))
        out["counts"] = dict(sorted(self.counts.items()))
        return out


def finish_stage(out_dir: str | os.PathLike, summary: StageSummary, errors: list[dict[str, Any]],
                 console: Any = None) -> StageSummary:
    """Write `_errors.jsonl` and `_summary.json` into `out_dir` (atomically) and print the summary table."""
    out_dir = Path(out_dir)
    errors = sorted(errors, key=lambda e: (str(e.get("file")), e.get("offset") or 0, str(e.get("reason"))))
    write_text_atomic(out_dir / ERRORS_FILE, "".join(json.dumps(e, default=str, ensure_ascii=False) + "\n" for e in errors))
    write_json_atomic(out_dir / SUMMARY_FILE, summary.to_json())
    write_json_atomic(out_dir / STAGE_FILE, {"stage": summary.stage, "complete": True})
    print_summary(summary, console=console)
    return summary


def print_summary(summary: StageSummary, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(stderr=True)
    table = Table(title=f"{summary.stage}: summary", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("files", f"{summary.files:,}" + (f" ({summary.resumed_files} resumed)" if summary.resumed_files else ""))
    for key, value in sorted(summary.counts.items()):
        table.add_row(key.replace("_", " "), f"{value:,}")
    table.add_row("errors", f"{summary.errors:,}")
    if summary.warnings:
        table.add_row("warnings", f"{summary.warnings:,}")
    table.add_row("bytes in", f"{summary.bytes_in:,}")
    table.add_row("seconds", f"{summary.seconds:.1f}")
    console.print(table)
    if summary.by_lang:
        langs = ", ".join(f"{k} {v}" for k, v in list(summary.to_json()["by_lang"].items())[:15])
        console.print(f"documents by language: {langs}")


# ------------------------------------------------------------------------------------------------------------ dask
@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None, threads_per_worker: int = 1):
    """A `distributed.Client`: connected to `scheduler` (tcp://host:port) when given, else to a LocalCluster of
    `workers` processes (default: one per core) with one thread each."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    import dask

    n = workers or os.cpu_count() or 1
    # Dask's idle work (the workers' stack sampler for the dashboard's profile, a 20 ms event-loop tick, a 0.5 s
    # system monitor) cost 0.12 CPU-s per second on 2 workers, 0.03 with these; the nannies pass them on.
    with dask.config.set(_QUIET_CLUSTER), \
            LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=True, dashboard_address=":0",
                         silence_logs=40) as cluster, Client(cluster) as client:
        yield client


_QUIET_CLUSTER = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "1s",
                  "distributed.admin.system-monitor.interval": "2s"}


_EXTRAS = {"s3": ("s3", "s3fs"), "s3a": ("s3", "s3fs"), "gs": ("gcs", "gcsfs"), "gcs": ("gcs", "gcsfs")}


def check_protocols(items: Sequence[str]) -> None:
    """Refuse (UserError, one line naming the extra to install) inputs whose URL scheme has no fsspec backend
    installed here, before any task runs: otherwise every input fails alike on the workers."""
    import fsspec

    for protocol in sorted({str(i).split("://", 1)[0] for i in items if "://" in str(i)}):
        try:
            fsspec.get_filesystem_class(protocol)
        except ImportError:
            extra, package = _EXTRAS.get(protocol, (None, None))
            hint = f"pip install 'corpusforge[{extra}]' (installs {package})" if extra else "install its fsspec backend"
            raise UserError(f"{protocol}:// inputs need a package that is not installed: {hint}") from None
        except ValueError:
            raise UserError(f"{protocol}:// is not a protocol fsspec knows") from None


def map_files(task: Callable[..., FileReport], items: Sequence[str], out_dir: str | os.PathLike, config: Any, *,
              stage: str, client: Any = None, scheduler: str | None = None, workers: int | None = None,
              kept_key: str = "documents", console: Any = None,
              kwargs_for: Callable[[str], dict[str, Any]] | None = None) -> tuple[StageSummary, list[FileReport]]:
    """Run `task(item, out_dir, config, **kwargs_for(item))` for every item on Dask, with a live progress bar, and
    finish the stage (`_errors.jsonl`, `_summary.json`, summary table).

    Returns the summary and the per-file reports in input order. Pass an existing `client` to reuse it; otherwise one
    is made from `scheduler`/`workers` for this call.
    """
    from distributed import as_completed
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)
    out_dir = Path(out_dir)
    check_protocols(items)
    begin_stage(out_dir, stage)
    summary = StageSummary(stage=stage)
    t0 = time.perf_counter()
    reports: dict[int, FileReport] = {}
    run_token = uuid.uuid4().hex[:8]  # keys unique per call: a re-run on the same client must not reuse results
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(dask_client(scheduler, workers))
        futures = [client.submit(task, item, str(out_dir), config,
                                 key=f"{stage}-{i}-{output_name(item, '')}-{run_token}",
                                 pure=False, **(kwargs_for(item) if kwargs_for else {}))
                   for i, item in enumerate(items)]
        index = {f.key: i for i, f in enumerate(futures)}
        progress = Progress(TextColumn(f"[bold]{stage}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[status]}"), console=console, transient=False,
                            disable=not console.is_terminal and not os.environ.get("CORPUSFORGE_PROGRESS"))
        with progress:
            bar = progress.add_task(stage, total=len(futures), status="")
            for future in as_completed(futures):
                i = index[future.key]
                try:
                    report = future.result()
                except Exception as exc:  # the task itself crashed: report it, keep going with the other files
                    report = FileReport(input=str(items[i]))
                    report.error(f"task failed: {type(exc).__name__}: {exc}", stage=stage)
                reports[i] = report
                summary.add(report)
                if report.redone:
                    console.print(f"{stage}: {items[i]}: made again, {report.redone}", highlight=False)
                rate = summary.counts.get(kept_key, 0) / max(time.perf_counter() - t0, 1e-9)
                progress.update(bar, advance=1, status=f"{kept_key} {summary.counts.get(kept_key, 0):,} "
                                f"({rate:,.1f}/s) errors {summary.errors}")
                if not progress.disable:
                    continue
                console.print(f"{stage}: {len(reports)}/{len(futures)} files, {kept_key} "
                              f"{summary.counts.get(kept_key, 0):,} ({rate:,.1f}/s), errors {summary.errors}",
                              highlight=False)
    summary.seconds = time.perf_counter() - t0
    ordered = [reports[i] for i in range(len(items))]
    errors = [e for r in ordered for e in r.errors + r.warnings]
    finish_stage(out_dir, summary, errors, console=console)
    return summary, ordered


# ------------------------------------------------------------------------------------ fingerprints and marks
def _stable(value: Any) -> Any:
    """`value` as plain JSON data with a stable form (dataclasses as dicts, functions by name)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _stable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.name not in _NOT_SHAPING}
    if isinstance(value, dict):
        return {str(k): _stable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_stable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def settings_digest(config: Any) -> str:
    """A digest of the settings in `config` that shape a stage's outputs (not its inputs list or output folder)."""
    data = _stable(config)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def input_identity(path: str) -> dict[str, Any]:
    """How to tell that an input changed without reading it: size and modification time (nanoseconds) of a local
    file; size and ETag or modification time of a remote one (fsspec); `missing` when it is gone."""
    try:
        if "://" not in path:
            st = os.stat(path)
            return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        import fsspec

        fs, fs_path = fsspec.core.url_to_fs(path)
        info = fs.info(fs_path)
        return {"size": info.get("size"), "etag": info.get("ETag") or info.get("etag"),
                "mtime": str(info.get("LastModified") or info.get("mtime") or info.get("updated") or "")}
    except (OSError, ValueError):
        return {"missing": True}


@dataclasses.dataclass
class Fingerprint:
    """What an output file is made from: the digest of the settings that shape it and the identity of each input.
    `done`: the finished output's report when it matches (resume); `redone`: why a finished output is stale."""

    settings: str
    inputs: dict[str, dict[str, Any]]
    done: FileReport | None = None
    redone: str | None = None

    def save(self, out_path: str | os.PathLike) -> None:
        write_json_atomic(_fingerprint_path(out_path), {"settings": self.settings, "inputs": self.inputs})

    def changes(self, old: dict[str, Any]) -> str | None:
        """What differs from the fingerprint `old` was saved as, in words; None when nothing does."""
        if old.get("settings") != self.settings:
            return "its settings changed"
        changed = [path for path, ident in self.inputs.items() if old.get("inputs", {}).get(path) != ident]
        if changed or set(old.get("inputs", {})) != set(self.inputs):
            return f"input changed: {', '.join(changed) or 'the list of inputs'}"
        return None


def _fingerprint_path(out_path: str | os.PathLike) -> Path:
    out_path = Path(out_path)
    return out_path.parent / FINGERPRINTS_DIR / f"{out_path.name}.json"


def resume(out_path: str | os.PathLike, item: str, config: Any, files: Sequence[str] | None = None) -> Fingerprint:
    """The fingerprint of the output `out_path` of `item` made with `config` (the input files are `files`, by
    default the item's lines). Its `done` is the report of a finished output that is still current (marked
    resumed); when a finished output was made from other settings or inputs, `redone` says which, and it is made
    again. Pass the fingerprint to ShardWriter, which saves it beside the finished file."""
    files = list(files) if files is not None else str(item).split("\n")
    fp = Fingerprint(settings=settings_digest(config), inputs={f: input_identity(f) for f in files})
    if not Path(out_path).exists():
        return fp
    report = read_report(out_path)
    if report is None or report.input != str(item):
        return fp
    try:
        old = json.loads(_fingerprint_path(out_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        fp.redone = "no fingerprint (made before fingerprints, or interrupted)"
        return fp
    fp.redone = fp.changes(old)
    if fp.redone is None:
        report.resumed = True
        fp.done = report
    return fp


_FORCE = False


def force_recompute(on: bool = True) -> None:
    """From now on (in this client process) stages forget their outputs' fingerprints and make everything again
    (`--force`)."""
    global _FORCE
    _FORCE = on


def begin_stage(out_dir: str | os.PathLike, stage: str) -> None:
    """Mark `out_dir` as being written by `stage` (readers refuse it until finish_stage marks it complete); under
    `--force` (force_recompute) forget every output's fingerprint there, so that everything is made again."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if _FORCE:
        shutil.rmtree(out_dir / FINGERPRINTS_DIR, ignore_errors=True)
    write_json_atomic(out_dir / STAGE_FILE, {"stage": stage, "complete": False})


def require_complete(folder: str | os.PathLike) -> None:
    """Refuse (IncompleteStage) a folder whose stage started but did not finish: killed, failed or still running."""
    try:
        mark = json.loads((Path(folder) / STAGE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return  # not a stage's folder: shards the user put there
    except ValueError:
        mark = {}
    if not mark.get("complete"):
        raise IncompleteStage(f"{folder}: the {mark.get('stage', 'stage')} stage did not finish writing it (killed "
                              "or still running); run that stage again first")


class IncompleteStage(UserError, ValueError):
    """A folder is the output of a stage that did not finish (see require_complete)."""


def resume_or_none(out_path: str | os.PathLike, item: str, config: Any = None) -> FileReport | None:
    """If `out_path` is a finished, current output of `item` (made with `config`), its report (marked resumed),
    else None. Without `config` only the input name is checked."""
    if config is not None:
        return resume(out_path, item, config).done
    if not Path(out_path).exists():
        return None
    report = read_report(out_path)
    if report is None or report.input != str(item):
        return None
    report.resumed = True
    return report


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
