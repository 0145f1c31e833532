"""Your own quality filters: a recipe names Python functions that judge a batch of documents, and what they drop is
counted, sampled and reported like the built-in rules (`dropped_<reason>` in `_summary.json`, rows in
`_dropped.parquet`, the report's drop tables and examples).

A filter is `function(batch: pyarrow.Table) -> verdict`, the batch holding the document columns of the rows no
built-in rule dropped (of the filter's `sources`). The verdict, one per row in order, is either

- a keep mask (booleans, True: keep): a dropped row's reason is the filter's `name` (default: the function's name);
- reasons (strings; "" or None: keep), so one filter can drop for several reasons;
- or the batch filtered (a table with the kept rows' `id`s): the others are dropped for `name`.

The function is named `module:function` (a module importable on every worker, as corpusforge itself is: it is
pickled by reference) or `path/to/file.py:function` (a local file that need not be installed nor exist on the
workers: the module is loaded from the file and pickled by value with cloudpickle's `register_pickle_by_value`).
It is resolved once on the client, so a bad name is a one-line error before any work, and travels to the workers
inside the stage's job like the built-in rules.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

_REASON = re.compile(r"[^A-Za-z0-9_-]")  # reasons name counters (`dropped_<reason>`, `source:lang:...`)


@dataclasses.dataclass
class FilterConfig:
    """`[[quality.filters]]`: one custom filter, applied after the built-in rules and before the classifier."""

    function: str  # "module:function" or "path/to/file.py:function"
    name: str | None = None  # the drop reason of a keep mask or a filtered batch (default: the function's name)
    sources: list[str] | None = None  # the sources it judges (default: every source)

    def validate(self) -> None:
        load(self.function)
        if self.name is not None and (not self.name or _REASON.search(self.name)):
            raise ValueError(f"name: {self.name!r} must be letters, digits, '_' or '-' (it names a drop reason)")

    def reason(self) -> str:
        return self.name or _REASON.sub("_", self.function.rpartition(":")[2])


def load(spec: str) -> Callable[[pa.Table], Any]:
    """The function `spec` names ("module:function" or "path/to/file.py:function"); ValueError in one line when
    there is no such module, file or function. A file's module is registered to be pickled by value."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"filter {spec!r}: expected module:function or path/to/file.py:function")
    if module_name.endswith(".py"):
        module = _load_file(Path(module_name), spec)
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and module_name.split(".")[0] == err.name.split(".")[0]:
                raise ValueError(f"filter {spec!r}: no module named {err.name!r} (install it, or name its file: "
                                 "path/to/file.py:function)") from None
            raise
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"filter {spec!r}: {module_name} has no function {attr!r}")
    return fn


def _load_file(path: Path, spec: str) -> Any:
    import cloudpickle

    if not path.is_file():
        raise ValueError(f"filter {spec!r}: no such file {path}")
    resolved = path.resolve()
    # One module name per file, so two files named filters.py do not replace each other.
    name = f"corpusforge_filter_{_REASON.sub('_', path.stem)}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
    if name not in sys.modules:
        module_spec = importlib.util.spec_from_file_location(name, resolved)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        cloudpickle.register_pickle_by_value(module)
    return sys.modules[name]


class Packed:
    """A filter as the workers get it: its reason, sources and function (cloudpickled). Its repr, which the
    outputs' fingerprints take, names the function and a digest of its source code, so an edited filter makes its
    shards again."""

    def __init__(self, config: FilterConfig):
        import cloudpickle

        fn = load(config.function)
        try:
            code = inspect.getsource(fn)
        except (OSError, TypeError):
            code = ""
        self.name, self.spec = config.reason(), config.function
        self.sources = None if config.sources is None else list(config.sources)
        self.code = hashlib.sha256(code.encode()).hexdigest()[:16]
        self.pickled = cloudpickle.dumps(fn)

    def __repr__(self) -> str:
        return f"Filter({self.spec}, name={self.name}, sources={self.sources}, code={self.code})"

    def function(self) -> Callable[[pa.Table], Any]:
        return _unpickle(self.pickled)


@functools.lru_cache(maxsize=32)
def _unpickle(data: bytes) -> Callable[[pa.Table], Any]:
    import cloudpickle

    return cloudpickle.loads(data)


def apply(filters: list[Packed], table: pa.Table, sources: np.ndarray, reason: np.ndarray) -> None:
    """Judge with each filter, in order, the rows of `table` still kept (`reason == ""`) among its sources, and
    write the reasons of those it drops into `reason`."""
    for f in filters:
        rows = np.flatnonzero((reason == "") & (np.isin(sources, f.sources) if f.sources is not None else True))
        if len(rows):
            part = table.take(rows)
            reason[rows] = verdict_reasons(f.function()(part), part, f.name, f.spec)


def verdict_reasons(verdict: Any, part: pa.Table, name: str, spec: str) -> np.ndarray:
    """A filter's verdict on `part` as one reason per row ("": kept); ValueError naming the filter when it is not
    a keep mask, reasons or a filtered batch of `part`."""
    n = part.num_rows
    if isinstance(verdict, (pa.Table, pa.RecordBatch)):
        if "id" not in verdict.schema.names:
            raise ValueError(f"filter {spec}: returned a table without the `id` column")
        kept = np.isin(np.asarray(part.column("id").to_pylist(), dtype=object),
                       np.asarray(verdict.column("id").to_pylist(), dtype=object))
        return np.where(kept, "", name).astype(object)
    if isinstance(verdict, (pa.Array, pa.ChunkedArray)):
        verdict = verdict.to_pylist()
    values = np.asarray(verdict, dtype=object) if not isinstance(verdict, np.ndarray) else verdict
    if values.shape != (n,):
        raise ValueError(f"filter {spec}: returned {values.shape[0] if values.ndim else 'a scalar'} verdicts for "
                         f"{n} documents")
    if values.dtype == bool or all(isinstance(v, (bool, np.bool_)) for v in values):
        return np.where(values.astype(bool), "", name).astype(object)
    if not all(v is None or isinstance(v, str) for v in values):
        raise ValueError(f"filter {spec}: expected booleans (keep) or strings (drop reasons), got "
                         f"{sorted({type(v).__name__ for v in values})}")
    return np.array([_REASON.sub("_", v) if v else "" for v in values], dtype=object)
