"""Feedback in and out of the store: export to Parquet by the data contracts, import of preference files.

Export writes `comparisons.parquet` (comparison.schema.json), `ratings.parquet` (rating.schema.json) and
`conversations.parquet` (the demonstrations, conversation.schema.json), each atomically. Import reads TRL-style
preference JSONL (`prompt`, `chosen`, `rejected`, as strings or as message lists) and Anthropic HH pairs (`chosen`,
`rejected` transcripts sharing everything up to the last `Assistant:` turn), as comparisons of two answers, the
chosen one ranked first. A bad line is reported with its file and line and skipped; a re-import adds nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq

from corpusforge import schema
from corpusforge.errors import UserError
from corpusforge.feedback.store import FeedbackError, Store, check_messages
from corpusforge.runtime import FileReport, atomic_path

MAX_LINE_BYTES = 4 << 20  # one preference record; a longer line is reported and skipped, never held whole
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


# ---------------------------------------------------------------------------------------------------- export
def export(store: Store, out_dir: str | os.PathLike) -> dict[str, int]:
    """Write the store's comparisons, ratings and demonstrations as Parquet under `out_dir`; returns the row counts.
    Rows are read in batches, and each file is written a row group per batch."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for what, name, contract in (("comparison", "comparisons", "comparison"), ("rating", "ratings", "rating"),
                                 ("demonstration", "conversations", "conversation")):
        n = 0
        with atomic_path(out_dir / f"{name}.parquet") as tmp:
            with pq.ParquetWriter(tmp, schema.arrow_schema(contract)) as writer:
                for batch in _batches(store.rows(what), 1000):
                    table = schema.to_table([_export_row(what, r) for r in batch], contract)
                    schema.check_table(table, contract)
                    writer.write_table(table)
                    n += len(batch)
        counts[name] = n
    return counts


def _export_row(what: str, row: dict[str, Any]) -> dict[str, Any]:
    times = {k: datetime.fromtimestamp(row[k], timezone.utc) if row.get(k) is not None else None
             for k in ("shown_at", "submitted_at")}
    if what == "demonstration":
        return {"id": row["id"], "messages": row["messages"], "source": "feedback",
                "metadata": json.dumps({"labeler": row["labeler"], "model": row["model"],
                                        "submitted_at": times["submitted_at"].isoformat()})}
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
    comparisons. Returns the file's report: lines read, pairs added, errors with their line numbers."""
    path = Path(path)
    report = FileReport(input=str(path))
    rows: list[dict] = []
    for line_no, line in _lines(path, report):
        report.count("lines")
        try:
            rows.append(comparison_from_record(json.loads(line), source=path.name))
        except (ValueError, FeedbackError) as err:  # json.JSONDecodeError is a ValueError
            report.error(f"line {line_no}: {err}", offset=line_no)
            continue
        if len(rows) >= batch:
            report.count("added", store.add_imported(rows))
            rows = []
    report.count("added", store.add_imported(rows))
    return report


def _lines(path: Path, report: FileReport) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line) with each line at most MAX_LINE_BYTES; a longer one is reported and skipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            line_no = 0
            while chunk := f.readline(MAX_LINE_BYTES + 1):
                line_no += 1
                if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
                    report.error(f"line {line_no}: longer than {MAX_LINE_BYTES:,} bytes, skipped", offset=line_no)
                    while (rest := f.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                        pass
                    continue
                if chunk.strip():
                    yield line_no, chunk
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, EOFError) as err:  # a damaged .gz: what was read stands
        report.error(f"damaged file after line {line_no}: {type(err).__name__}: {err}", offset=line_no)


def comparison_from_record(record: Any, *, source: str) -> dict[str, Any]:
    """A comparison row (chosen ranked above rejected) from one TRL or HH preference record."""
    if not isinstance(record, dict) or "chosen" not in record or "rejected" not in record:
        raise FeedbackError("not a preference record: needs 'chosen' and 'rejected'")
    if "prompt" in record:  # TRL: the prompt apart, the answers as text or as assistant message lists
        context = _trl_messages(record["prompt"], "prompt")
        answers = [_trl_answer(record[k], k) for k in ("chosen", "rejected")]
        fmt = "trl"
    else:
        chosen, rejected = (parse_hh(record[k], k) for k in ("chosen", "rejected"))
        if chosen[:-1] != rejected[:-1]:
            raise FeedbackError("HH pair: chosen and rejected differ before their last Assistant turn")
        context, answers, fmt = chosen[:-1], [chosen[-1]["content"], rejected[-1]["content"]], "hh"
    if not context or context[-1]["role"] != "user":
        raise FeedbackError("the conversation before the answers must end with a user turn")
    stable = hashlib.sha256(json.dumps([context, answers], ensure_ascii=False).encode()).hexdigest()[:32]
    return {"id": stable, "prompt": context[-1]["content"], "context": context, "answers": answers,
            "ranking": [0, 1], "unusable": [False, False], "unsafe": [False, False],
            "labeler": f"import:{fmt}:{source}", "model": source}


def parse_hh(text: Any, field: str = "transcript") -> list[dict[str, str]]:
    """An Anthropic HH transcript (`\\n\\nHuman: ...\\n\\nAssistant: ...`) as messages; it must end with an
    assistant turn."""
    if not isinstance(text, str):
        raise FeedbackError(f"{field}: a transcript string")
    parts = _HH_TURN.split(text)
    if parts[0].strip() or len(parts) < 3:
        raise FeedbackError(f"{field}: not an HH transcript (no '\\n\\nHuman: ' turn at the start)")
    messages = [{"role": "user" if who == "Human" else "assistant", "content": body.strip()}
                for who, body in zip(parts[1::2], parts[2::2])]
    if messages[-1]["role"] != "assistant":
        raise FeedbackError(f"{field}: the transcript does not end with an Assistant turn")
    return messages


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
