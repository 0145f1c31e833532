"""Feedback in and out of the store: export to Parquet by the data contracts, import of preference files.

Export writes `comparisons.parquet` (comparison.schema.json), `ratings.parquet` (rating.schema.json) and
`conversations.parquet` (the demonstrations, conversation.schema.json), each atomically. Import reads TRL-style
preference JSONL (`prompt`, `chosen`, `rejected`, as strings or as message lists) and Anthropic HH pairs (`chosen`,
`rejected` transcripts sharing everything up to the last `Assistant:` turn), as comparisons of two answers, the
chosen one ranked first. A bad line is reported with its file and line and skipped; a re-import adds nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from corpusforge import schema
from corpusforge.errors import UserError
from corpusforge.feedback.store import FeedbackError, Store, check_messages
from corpusforge.options import option, setting
from corpusforge.runtime import FileReport, atomic_path
from corpusforge.trainer.data import chat

# conversation.schema.json records (the demonstrations) in the Parquet shape the chat reader reads: `messages` as
# (role, content) structs, the lineage in `metadata`
CONVERSATION_PARQUET = pa.schema([
    ("id", pa.string()), ("messages", schema.arrow_schema("comparison").field("context").type),
    ("source", pa.string()),
    ("metadata", pa.struct([("labeler", pa.string()), ("model", pa.string()), ("submitted_at", pa.string())]))])

MAX_LINE_BYTES = 4 << 20  # one preference record; a longer line is reported and skipped, never held whole


# ---------------------------------------------------------------------------------------------------- export
def export(store: Store, out_dir: str | os.PathLike) -> dict[str, int]:
    """Write the store's comparisons, ratings and demonstrations as Parquet under `out_dir`; returns the row counts.
    Rows are read in batches, and each file is written a row group per batch."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for what, name in (("comparison", "comparisons"), ("rating", "ratings"), ("demonstration", "conversations")):
        n = 0
        arrow = CONVERSATION_PARQUET if what == "demonstration" else schema.arrow_schema(what)
        with atomic_path(out_dir / f"{name}.parquet") as tmp:
            with pq.ParquetWriter(tmp, arrow) as writer:
                for batch in _batches(store.rows(what), 1000):
                    rows = [_export_row(what, r) for r in batch]
                    if what == "demonstration":
                        for row in rows:
                            chat.check(row)  # conversation.schema.json, and a reply that trains
                        table = pa.Table.from_pylist(rows, schema=arrow)
                    else:
                        table = schema.to_table(rows, what)
                        schema.check_table(table, what)
                    writer.write_table(table)
                    n += len(batch)
        counts[name] = n
    return counts


def _export_row(what: str, row: dict[str, Any]) -> dict[str, Any]:
    times = {k: datetime.fromtimestamp(row[k], timezone.utc) if row.get(k) is not None else None
             for k in ("shown_at", "submitted_at")}
    if what == "demonstration":
        return {"id": row["id"], "messages": row["messages"], "source": "feedback",
                "metadata": {"labeler": row["labeler"], "model": row["model"],
                             "submitted_at": times["submitted_at"].isoformat()}}
    return {**row, **times}


def _batches(rows: Iterator[dict], n: int) -> Iterator[list[dict]]:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------------------------------------------- import
def import_preferences(store: Store, path: str | os.PathLike, *, batch: int = 500) -> FileReport:
    """Add the preference pairs of one JSONL file (.gz too; TRL or HH format, told apart per line) to the store as
    comparisons. Returns the file's report: lines read, pairs added, errors with their line numbers. Lines are read
    by the chat reader's bounded line reader (a line over MAX_LINE_BYTES is reported, never held whole)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    report, read = FileReport(input=str(path)), chat.ReadReport()
    rows: list[dict] = []
    try:
        for line_no, record in chat._records(path, read, MAX_LINE_BYTES):
            report.count("lines")
            try:
                rows.append(comparison_from_record(record, source=path.name))
            except (ValueError, FeedbackError) as err:
                report.error(f"line {line_no}: {err}", offset=line_no)
                continue
            if len(rows) >= batch:
                report.count("added", store.add_imported(rows))
                rows = []
    except (OSError, EOFError) as err:  # a damaged .gz: what was read before stands
        report.error(f"damaged file after {report.counts.get('lines', 0)} lines: {type(err).__name__}: {err}")
    report.count("added", store.add_imported(rows))
    for err in read.errors:  # unparsable or overlong lines
        report.count("lines")
        report.error(f"line {err['line']}: {err['reason']}", offset=err["line"])
    report.errors.sort(key=lambda e: e["offset"] or 0)
    return report


def comparison_from_record(record: Any, *, source: str) -> dict[str, Any]:
    """A comparison row (chosen ranked above rejected) from one TRL or HH preference record."""
    if not isinstance(record, dict) or "chosen" not in record or "rejected" not in record:
        raise FeedbackError("not a preference record: needs 'chosen' and 'rejected'")
    if "prompt" in record:  # TRL: the prompt apart, the answers as text or as assistant message lists
        context = _trl_messages(record["prompt"], "prompt")
        answers = [_trl_answer(record[k], k) for k in ("chosen", "rejected")]
        fmt = "trl"
    else:
        chosen, rejected = (_hh_turns(record[k], k) for k in ("chosen", "rejected"))
        if chosen[:-1] != rejected[:-1]:
            raise FeedbackError("HH pair: chosen and rejected differ before their last Assistant turn")
        context, answers, fmt = chosen[:-1], [chosen[-1]["content"], rejected[-1]["content"]], "hh"
    if not context or context[-1]["role"] != "user":
        raise FeedbackError("the conversation before the answers must end with a user turn")
    stable = hashlib.sha256(json.dumps([context, answers], ensure_ascii=False).encode()).hexdigest()[:32]
    return {"id": stable, "prompt": context[-1]["content"], "context": context, "answers": answers,
            "ranking": [0, 1], "unusable": [False, False], "unsafe": [False, False],
            "labeler": f"import:{fmt}:{source}", "model": source}


def _hh_turns(text: Any, field: str) -> list[dict[str, str]]:
    if not isinstance(text, str):
        raise FeedbackError(f"{field}: a transcript string")
    turns = chat.parse_hh_transcript(text)
    if turns[-1]["role"] != "assistant":
        raise FeedbackError(f"{field}: the transcript does not end with an Assistant turn")
    return turns


def _trl_messages(value: Any, field: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    try:
        return check_messages(value)
    except FeedbackError as err:
        raise FeedbackError(f"{field}: {err}") from None


def _trl_answer(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    messages = _trl_messages(value, field)
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        raise FeedbackError(f"{field}: one assistant message (or a string)")
    return messages[0]["content"]


_DB = option("SQLite file or postgresql:// URL")


@dataclasses.dataclass
class ExportCommand:
    """`corpusforge feedback export --db DB --output DIR`."""

    db: str = dataclasses.field(metadata=_DB)
    output: str = dataclasses.field(metadata=option("folder for the Parquet files"))


def export_command(command: ExportCommand) -> None:
    """`corpusforge feedback export`: `export`, and one line of what it wrote."""
    counts = export(Store(command.db), command.output)
    print(", ".join(f"{n:,} {name}" for name, n in counts.items()) + f" -> {command.output}")


@dataclasses.dataclass
class ImportCommand:
    """`corpusforge feedback import FILE... --db DB`."""

    inputs: list[str] = dataclasses.field(metadata=option(".jsonl or .jsonl.gz files", positional=True))
    db: str = dataclasses.field(metadata=_DB)
    fail_on_error: bool = setting(False, "exit 1 if any line was bad (default: 0)", action="store_true")


def import_command(command: ImportCommand) -> bool:
    """`corpusforge feedback import`: `import_preferences` for each file, a line for each (and its first errors);
    False when a line was bad and `fail_on_error`."""
    store, errors = Store(command.db), 0
    for path in command.inputs:
        report = import_preferences(store, path)
        for err in report.errors[:20]:
            print(f"{path}: {err['reason']}", file=sys.stderr)
        errors += len(report.errors)
        print(f"{path}: {report.counts.get('lines', 0):,} lines, {report.counts.get('added', 0):,} new comparisons, "
              f"{len(report.errors):,} errors")
    return not (command.fail_on_error and errors)
