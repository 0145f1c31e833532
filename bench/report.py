"""Rebuild the README's performance table from bench/results/*.json (each file's "table" rows)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- perf:start -->", "<!-- perf:end -->"


def table_markdown(results_dir: Path = ROOT / "bench" / "results") -> str:
    lines = ["| area | what | result | baseline | ratio |", "|---|---|---|---|---|"]
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for row in data.get("table", []):
            cells = [path.stem] + [str(row.get(k, "")).replace("|", "/") for k in ("what", "result", "baseline", "ratio")]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def update_readme(readme: Path = ROOT / "README.md") -> None:
    text = readme.read_text(encoding="utf-8")
    block = f"{START}\n{table_markdown()}\n{END}"
    new = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    readme.write_text(new, encoding="utf-8")


if __name__ == "__main__":
    update_readme()
    print(table_markdown())
