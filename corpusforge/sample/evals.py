"""Sample part `evals`: the evaluation sets `[decontaminate]` checks the sample corpus against, from
`texts/evals.toml`, in the three kinds of file the stage reads:

* `reading-qa.jsonl`: question/answer records with an `id`, and one damaged line (a record cut short);
* `cloze.txt`: plain text, one passage per blank-line paragraph;
* `chat.jsonl`: conversations, `{"messages": [{"role", "content"}, ...]}` per line.

A few examples quote the sample's documents (see the TOML file), so the stage visibly cuts and drops something.
"""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path

from corpusforge.runtime import EXPECTED_ERRORS_FILE, write_json_atomic, write_text_atomic

DAMAGED_LINE = 5  # reading-qa.jsonl: this line is a record cut short


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def build(out_dir: Path, seed: int) -> dict:
    """Write the sample's evaluation sets under `out_dir` (the seed is unused: the files are fixed text)."""
    texts = tomllib.loads(resources.files("corpusforge.sample").joinpath("texts/evals.toml").read_text("utf-8"))
    qa = [_jsonl([{k: r[k] for k in ("id", "question", "answer")}]) for r in texts["qa"]]
    qa.insert(DAMAGED_LINE - 1, qa[0][: len(qa[0]) // 2] + "\n")
    write_text_atomic(out_dir / "reading-qa.jsonl", "".join(qa))
    write_json_atomic(out_dir / EXPECTED_ERRORS_FILE, {"reading-qa.jsonl": [{
        "offset": DAMAGED_LINE, "why": "the sample cuts this line short on purpose; the other examples are read"}]})
    write_text_atomic(out_dir / "cloze.txt", "\n\n".join(r["text"] for r in texts["cloze"]) + "\n")
    write_text_atomic(out_dir / "chat.jsonl", _jsonl([{"messages": r["messages"]} for r in texts["chat"]]))
    return {"files": sorted(p.name for p in out_dir.iterdir() if not p.name.startswith(("_", "."))),
            "examples": {"reading-qa": len(texts["qa"]), "cloze": len(texts["cloze"]), "chat": len(texts["chat"])}}
