"""What the tokenizer and the mixer know of their inputs: fingerprints (config, files, sizes, times), so a re-run
knows when nothing changed, and file checksums for the manifest. Finding and reading document shards, and the
seeded per-document coins, are `corpusforge.documents`'."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


from corpusforge import runtime


def fingerprint(config: Any, files: Iterable[str], *extra: str) -> str:
    """A digest of a stage's config (without its output folder), its input files (path, size, mtime) and `extra`
    strings: equal fingerprints mean a finished output is still current."""
    h = hashlib.sha256()
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k != "output"}
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in files:
        st = os.stat(path)
        h.update(f"\0{path}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    for item in extra:
        h.update(f"\0{item}".encode())
    return h.hexdigest()


def finished(out_dir: str | os.PathLike, fp: str, *outputs: str) -> dict[str, Any] | None:
    """The `_summary.json` of `out_dir` if an earlier run with fingerprint `fp` finished there and its `outputs`
    still exist, else None."""
    out_dir = Path(out_dir)
    try:
        summary = json.loads((out_dir / runtime.SUMMARY_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if summary.get("extra", {}).get("fingerprint") != fp or not all((out_dir / o).exists() for o in outputs):
        return None
    return summary


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


