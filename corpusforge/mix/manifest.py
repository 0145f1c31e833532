"""`manifest.json` of a mixed corpus (contract: schemas/manifest.schema.json): writing it, loading it with
validation, checking the shards against its checksums, and showing its sets as a table. The corpus folder may be
local or on an object store (`s3://...`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from corpusforge import runtime, schema, storage

MANIFEST_FILE = "manifest.json"


def write(corpus_dir: str | os.PathLike, manifest: dict[str, Any]) -> Any:
    """Validate `manifest` against its schema and write it atomically to `corpus_dir/manifest.json`."""
    schema.validate_record(manifest, "manifest")
    path = storage.join(corpus_dir, MANIFEST_FILE)
    runtime.write_json_atomic(path, manifest)
    return path


def load(corpus_dir: str | os.PathLike) -> dict[str, Any]:
    """The validated manifest of the corpus in `corpus_dir` (a folder, or the manifest file itself)."""
    path = corpus_dir if str(corpus_dir).endswith(".json") else storage.join(corpus_dir, MANIFEST_FILE)
    try:
        manifest = json.loads(storage.read_text(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"no {MANIFEST_FILE} in {storage.parent(path)}: not a finished corpus "
                                "(run `corpusforge mix`)") from None
    except json.JSONDecodeError as err:
        raise schema.SchemaError(f"{path}: not valid JSON: {err}") from None
    schema.validate_record(manifest, "manifest")
    return manifest


def shards(manifest: dict[str, Any], split: str = "train") -> list[tuple[str, dict[str, Any]]]:
    """(set name, shard entry) for every shard of `split`, in manifest order."""
    return [(s["name"], shard) for s in manifest["sets"] for shard in s[split]["shards"]]


def verify(corpus_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Check every shard and the tokenizer against the manifest (exists, size, sha256). Returns the problems, each
    {path, problem}; an empty list means the corpus is intact."""
    manifest = load(corpus_dir)
    expected = [(shard["path"], shard["bytes"], shard["sha256"])
                for split in ("train", "val") for _, shard in shards(manifest, split)]
    tok = manifest["tokenizer"]
    expected.append((tok["path"], None, tok["sha256"]))
    problems = []
    for rel, size, sha in expected:
        path = storage.join(corpus_dir, rel)
        actual = storage.identity(path).get("size")
        if actual is None:
            problems.append({"path": rel, "problem": "missing"})
        elif size is not None and actual != size:
            problems.append({"path": rel, "problem": f"size {actual:,} bytes, manifest says {size:,}"})
        elif runtime.file_sha256(path) != sha:
            problems.append({"path": rel, "problem": "sha256 differs from the manifest (the file is damaged)"})
    return problems


def human(n: float | int | None) -> str:
    """A count in a few characters: 644, 12.7k, 1.22M, 300B."""
    if n is None:
        return "-"
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}" if isinstance(n, float) else str(n)


def sets_table(manifest: dict[str, Any], title: str = "corpus"):
    """A rich table of the sets (with their source when it differs from the name; documents, tokens, bytes, weight
    used and as written, epochs and the most the recipe allows) with a total row; fits an 80-column terminal."""
    from rich.table import Table

    table = Table(title=f"{title} (epochs for a {human(manifest['budget_tokens'])}-token budget)", header_style="bold")
    for name in ("set", "docs", "tokens", "bytes", "weight (recipe)", "epochs (max)"):
        table.add_column(name, justify="left" if name == "set" else "right", no_wrap=True)

    def epochs(s: dict[str, Any]) -> str:
        used = "-" if s["epochs"] is None else f"{s['epochs']:.2f}"
        return used if s["max_epochs"] is None else f"{used} ({s['max_epochs']:g})"

    for s in manifest["sets"]:
        name = s["name"] if s["name"] == s["source"] else f"{s['name']} ({s['source']})"
        table.add_row(name, human(s["documents"]), human(s["tokens"]), human(s["bytes"]),
                      f"{s['weight']:.3f} ({s['recipe_weight']:g})", epochs(s))
    t = manifest["totals"]
    table.add_row("total", human(t["documents"]), human(t["tokens"]), human(t["bytes"]),
                  f"1.000 ({manifest['weights']['recipe_sum']:g})", "", style="bold")
    return table
