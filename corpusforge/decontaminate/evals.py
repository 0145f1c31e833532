"""Evaluation sets as users have them, read into examples (an id and a text each).

Three kinds of file, told apart by their name (a `.gz` suffix is decompressed):

* JSON Lines (`.jsonl`, `.ndjson`, `.json`) and Parquet (`.parquet`): each record is an example; its text is the
  chosen `fields` joined by newlines (a list value joins its items, so `choices = [...]` counts). Without `fields`,
  a record's `text`, or a conversation: a record with `messages` (or a record that is itself a list of messages),
  each message a `{role, content}` object (content a string or a list of `{type, text}` parts), the shape of
  schemas/conversation.schema.json. Its text is the messages' contents joined by newlines.
* plain text (anything else): one example per non-blank line, or per paragraph of lines between blank lines
  (`split = "paragraph"`).

An example's id is its `id_field` when given and present, else its line number (text and JSON Lines, 1-based) or
row number (Parquet, 0-based). A damaged line or row (not JSON, not UTF-8, too long, without text) is reported
with the file and line and skipped; the rest of the file is read. Reading is bounded: at most `MAX_LINE_BYTES` per
line and `MAX_FILE_BYTES` of decompressed text per file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from corpusforge import storage
from corpusforge.errors import UserError
from corpusforge.options import like, option, setting
from corpusforge.runtime import FileReport

MAX_LINE_BYTES = 16 << 20  # one example; a longer line is reported and skipped
MAX_FILE_BYTES = 4 << 30  # decompressed text read from one evaluation file
_JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
STAGE = "evals"


@dataclasses.dataclass
class EvalSetConfig:
    """One evaluation set (`[[decontaminate.evals]]`): its file, its name in the reports (default: the file name
    without extensions), the fields holding its text (JSON Lines and Parquet), how a plain-text file is cut into
    examples, and the field that identifies an example."""

    path: str
    name: str | None = None
    fields: list[str] = dataclasses.field(default_factory=list)
    split: Literal["line", "paragraph"] = dataclasses.field(default="line", metadata=option(
        "plain text: one example per line or per blank-line paragraph"))
    id_field: str | None = dataclasses.field(default=None, metadata=option(
        "JSON/Parquet field identifying an example (none: its line or row number)"))

    def set_name(self) -> str:
        if self.name:
            return self.name
        base = Path(self.path).name
        for suffix in (".gz", ".parquet", ".txt", *_JSON_SUFFIXES):
            base = base.removesuffix(suffix)
        return base

    def kind(self) -> str:
        plain = self.path.removesuffix(".gz")
        return "json" if plain.endswith(_JSON_SUFFIXES) else "parquet" if plain.endswith(".parquet") else "text"

    def validate(self) -> None:
        if not self.path:
            raise ValueError("path: name the evaluation set's file")


@dataclasses.dataclass
class EvalFiles:
    """Evaluation sets named on a command line (`corpusforge decontaminate --evals FILE...`): the i-th of `name`
    names the i-th file (the others are named after their files); `field`, `split` and `id_field` apply to all."""

    evals: list[str] = dataclasses.field(metadata=option(
        "evaluation sets: .jsonl/.ndjson/.json (optionally .gz), .parquet, or plain text", nargs="+", metavar="EVAL"))
    name: list[str] = setting([], "name of each evaluation set, in --evals order (default: the file name)",
                              action="append")
    field: list[str] = setting([], "JSON/Parquet field holding the text (repeatable, joined; default: text, or a "
                                   "conversation's messages)", action="append")
    split: Literal["line", "paragraph"] = like(EvalSetConfig, "split")
    id_field: str | None = like(EvalSetConfig, "id_field")

    def settings(self) -> dict[str, Any]:
        """The `evals` tables of the files (settings of a DecontaminateConfig)."""
        if len(self.name) > len(self.evals):
            raise UserError(f"--name: {len(self.name)} names for {len(self.evals)} evaluation sets")
        return {"evals": [{"path": path, "name": self.name[i] if i < len(self.name) else None, "fields": self.field,
                           "split": self.split, "id_field": self.id_field} for i, path in enumerate(self.evals)]}


@dataclasses.dataclass
class EvalSet:
    """The examples of one evaluation set, in file order."""

    name: str
    path: str
    ids: list[str]
    texts: list[str]


def read_eval_set(config: EvalSetConfig, report: FileReport) -> EvalSet:
    """The examples of `config`'s file; damaged lines and rows are reported in `report` (file and line) and
    skipped. A missing file is the user's error."""
    if not storage.exists(config.path) or storage.is_dir(config.path):
        raise UserError(f"evaluation set {config.set_name()!r}: no such file {config.path}")
    report.bytes_in = storage.size(config.path)
    ids: list[str] = []
    texts: list[str] = []
    kind = config.kind()
    records = (_json_records(config, report) if kind == "json" else _parquet_records(config, report)
               if kind == "parquet" else _text_records(config, report))
    for number, text in records:
        if text.strip():
            ids.append(number)
            texts.append(text)
        else:
            report.count("empty_examples")
    report.count("examples", len(texts))
    return EvalSet(name=config.set_name(), path=config.path, ids=ids, texts=texts)


# ------------------------------------------------------------------------------------------------ the records
@contextlib.contextmanager
def _open(path: str) -> Iterator[BinaryIO]:
    with storage.open_file(path) as raw:
        yield gzip.open(raw, "rb") if path.endswith(".gz") else raw


def _lines(path: str, report: FileReport) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of a text file; a line that is too long or not UTF-8 is reported and skipped,
    a damaged compressed stream ends the file (reported)."""
    total, number = 0, 0
    try:
        with _open(path) as f:
            while total < MAX_FILE_BYTES:
                raw = f.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    return
                number += 1
                total += len(raw)
                if len(raw) > MAX_LINE_BYTES:
                    report.error(f"line longer than {MAX_LINE_BYTES} bytes: skipped", offset=number, stage=STAGE,
                                 unit="line")
                    while raw and not raw.endswith(b"\n") and total < MAX_FILE_BYTES:  # the rest of that line
                        raw = f.readline(MAX_LINE_BYTES)
                        total += len(raw)
                    continue
                try:
                    yield number, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    report.error(f"not UTF-8: {exc.reason} at byte {exc.start}", offset=number, stage=STAGE,
                                 unit="line")
            report.error(f"more than {MAX_FILE_BYTES} bytes of text: the rest is not read", offset=number,
                         stage=STAGE, unit="line")
    except (OSError, EOFError) as exc:  # a truncated or corrupt gzip stream: keep what was read before
        report.error(f"unreadable: {type(exc).__name__}: {exc}", offset=number + 1, stage=STAGE, unit="line")


def _text_records(config: EvalSetConfig, report: FileReport) -> Iterator[tuple[str, str]]:
    if config.split == "line":
        for number, line in _lines(config.path, report):
            yield str(number), line
        return
    start, paragraph = 0, []
    for number, line in _lines(config.path, report):
        if line.strip():
            start = start or number
            paragraph.append(line)
        elif paragraph:
            yield str(start), "\n".join(paragraph)
            start, paragraph = 0, []
    if paragraph:
        yield str(start), "\n".join(paragraph)


def _json_records(config: EvalSetConfig, report: FileReport) -> Iterator[tuple[str, str]]:
    for number, line in _lines(config.path, report):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            text = record_text(record, config.fields)
        except (json.JSONDecodeError, ValueError) as exc:
            report.error(f"bad record: {exc}", offset=number, stage=STAGE, unit="line")
            continue
        yield _example_id(record, config.id_field, number), text


def _parquet_records(config: EvalSetConfig, report: FileReport) -> Iterator[tuple[str, str]]:
    row = 0
    try:
        where, fs = storage.arrow_path(config.path)
        parquet = pq.ParquetFile(where, filesystem=fs)
        names = parquet.schema_arrow.names
        wanted = config.fields or [c for c in ("text", "messages") if c in names][:1]
        columns = [c for c in (*wanted, config.id_field) if c and c in names]
        if not any(c in names for c in wanted):
            report.error(f"no column {wanted or ['text', 'messages']}: name the text with --field / fields",
                         offset=0, stage=STAGE, unit="row")
            return
        for batch in parquet.iter_batches(columns=list(dict.fromkeys(columns)), batch_size=4096):
            for record in batch.to_pylist():
                try:
                    yield _example_id(record, config.id_field, row), record_text(record, wanted)
                except ValueError as exc:
                    report.error(f"bad record: {exc}", offset=row, stage=STAGE, unit="row")
                row += 1
    except (OSError, pa.ArrowException) as exc:
        report.error(f"unreadable Parquet file: {type(exc).__name__}: {exc}", offset=row, stage=STAGE, unit="row")


def _example_id(record: Any, id_field: str | None, number: int) -> str:
    if id_field and isinstance(record, dict) and record.get(id_field) is not None:
        return str(record[id_field])
    return str(number)


# ------------------------------------------------------------------------------------------------- the text
def is_conversation(value: Any) -> bool:
    """Whether `value` has the conversation shape: a non-empty list of `{role, content}` objects."""
    return (isinstance(value, list) and bool(value)
            and all(isinstance(m, dict) and "role" in m and "content" in m for m in value))


def record_text(record: Any, fields: list[str]) -> str:
    """The text of one JSON or Parquet record (see the module docstring); ValueError says why there is none."""
    if is_conversation(record):
        return _value_text(record)
    if not isinstance(record, dict):
        raise ValueError(f"expected an object, got {type(record).__name__}")
    if not fields:
        fields = ["messages"] if is_conversation(record.get("messages")) else ["text"]
    present = [f for f in fields if record.get(f) is not None]
    if not present:
        raise ValueError(f"no field {fields if len(fields) > 1 else fields[0]!r} (choose the text with --field)")
    return "\n".join(_value_text(record[f]) for f in present)


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # a message ({role, content}) or a content part ({type, text})
        return _value_text(value.get("content", value.get("text", "")))
    if isinstance(value, list):
        return "\n".join(t for t in (_value_text(v) for v in value) if t)
    return "" if value is None else str(value)
