"""Reading what a stage wrote, for the tests: its document shards (checked against the contract) and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from corpusforge import schema


def read_docs(folder: Path, key=None) -> list[dict]:
    """Every document in the folder's shards, each shard checked against schemas/document.schema.json."""
    rows = []
    for f in sorted(Path(folder).glob("*.parquet")):
        table = pq.read_table(f)
        schema.check_table(table)
        rows += table.to_pylist()
    return sorted(rows, key=key) if key else rows


def read_errors(folder: Path) -> list[dict]:
    """The entries of the folder's `_errors.jsonl`."""
    return [json.loads(line) for line in (Path(folder) / "_errors.jsonl").read_text().splitlines()]
