"""Data contracts: load `schemas/*.schema.json` and turn them into Arrow schemas.

Nothing else in corpusforge defines columns. A schema file is JSON Schema; each property carries an `x-arrow` type and
the file's `x-column-order` gives the column order of the Parquet files written from it.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from corpusforge.errors import UserError

SCHEMA_DIR = Path(os.environ.get("CORPUSFORGE_SCHEMAS", Path(__file__).resolve().parent.parent / "schemas"))

_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "large_string": pa.large_string(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "bool": pa.bool_(),
    "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
    "list<uint32>": pa.list_(pa.uint32()),
    "list<int32>": pa.list_(pa.int32()),
    "list<uint64>": pa.list_(pa.uint64()),
    "binary": pa.binary(),
    "list<string>": pa.list_(pa.string()),
    "list<bool>": pa.list_(pa.bool_()),
    "list<message>": pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])),
}


class SchemaError(UserError, ValueError):
    """A table or record does not match its contract."""


@functools.cache
def load_json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema `schemas/<name>.schema.json` as a dict.

    A schema with `"x-extends": "<base>"` gets the base's properties, required columns and column order first, then
    its own, so a derived contract (the corpus shard: document columns plus tokens) never repeats the base's columns.
    """
    path = SCHEMA_DIR / f"{name}.schema.json"
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaError(f"no schema file {path}") from None
    if "x-extends" not in spec:
        return spec
    base = load_json_schema(spec["x-extends"])
    return {**spec,
            "properties": {**base["properties"], **spec.get("properties", {})},
            "required": [*base.get("required", []), *spec.get("required", [])],
            "x-column-order": [*(base.get("x-column-order") or base["properties"]), *spec.get("x-column-order", [])]}


@functools.cache
def arrow_schema(name: str) -> pa.Schema:
    """The Arrow schema built from `schemas/<name>.schema.json` (`x-arrow` types, `x-column-order`)."""
    spec = load_json_schema(name)
    props = spec["properties"]
    required = set(spec.get("required", []))
    order = spec.get("x-column-order") or list(props)
    fields = []
    for col in order:
        arrow = props[col].get("x-arrow")
        if arrow not in _ARROW_TYPES:
            raise SchemaError(f"{name}.schema.json: column {col!r} has unknown x-arrow type {arrow!r}")
        fields.append(pa.field(col, _ARROW_TYPES[arrow], nullable=col not in required))
    return pa.schema(fields, metadata={b"corpusforge.schema": name.encode()})


def document_schema() -> pa.Schema:
    """Arrow schema of a document shard."""
    return arrow_schema("document")


def empty_table(name: str = "document") -> pa.Table:
    return arrow_schema(name).empty_table()


def to_table(rows: list[dict[str, Any]], name: str = "document") -> pa.Table:
    """Rows (dicts; missing nullable keys become null) as a table of the named schema."""
    schema = arrow_schema(name)
    columns = {f.name: [row.get(f.name) for row in rows] for f in schema}
    return pa.Table.from_pydict(columns, schema=schema)


def check_table(table: pa.Table, name: str = "document") -> None:
    """Raise SchemaError unless `table` has exactly the contract's columns and types, required columns have no
    nulls, enum columns hold only allowed values and patterned string columns only matching ones."""
    schema = arrow_schema(name)
    got = [(f.name, f.type) for f in table.schema]
    want = [(f.name, f.type) for f in schema]
    if got != want:
        raise SchemaError(f"columns differ from {name}.schema.json:\n  got  {got}\n  want {want}")
    spec = load_json_schema(name)
    for col in spec.get("required", []):
        if table.column(col).null_count:
            raise SchemaError(f"required column {col!r} has {table.column(col).null_count} nulls")
    for col, prop in spec["properties"].items():
        if "enum" in prop and table.num_rows:
            bad = set(table.column(col).drop_null().unique().to_pylist()) - set(prop["enum"])
            if bad:
                raise SchemaError(f"column {col!r} has values outside its enum: {sorted(bad)}")
        if "pattern" in prop and col in table.column_names and pa.types.is_string(table.schema.field(col).type):
            values = table.column(col).drop_null().unique()
            bad = values.filter(pc.invert(pc.match_substring_regex(values, prop["pattern"]))).to_pylist()
            if bad:
                raise SchemaError(f"column {col!r} has values not matching {prop['pattern']}: {sorted(bad)[:5]}")


@functools.cache
def _validator(name: str):
    """A JSON Schema validator for `schemas/<name>.schema.json`, built once (checking the schema itself is slow)."""
    import jsonschema

    spec = load_json_schema(name)
    return jsonschema.validators.validator_for(spec)(spec)


def validate_record(record: dict[str, Any], name: str) -> None:
    """Validate one JSON-like record (e.g. a manifest, a conversation) against its JSON Schema."""
    import jsonschema

    err = jsonschema.exceptions.best_match(_validator(name).iter_errors(record))
    if err is not None:
        where = "/".join(str(p) for p in err.absolute_path) or "<root>"
        raise SchemaError(f"{name}: {where}: {err.message}")
