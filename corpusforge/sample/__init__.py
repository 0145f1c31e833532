"""The embedded sample: small inputs in the real formats (WARC, Pushshift dumps, MediaWiki XML, Gutenberg books,
conversations for fine-tuning), written by the project itself so that `make corpus` runs offline. Each part is a
module with `build(out_dir: Path, seed: int) -> dict` that writes its files under `out_dir` and returns what it
wrote."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

from corpusforge.runtime import write_json_atomic

# part name -> module with build(out_dir, seed)
PARTS = {
    "crawl": "corpusforge.sample.crawl",
    "reddit": "corpusforge.sample.reddit",
    "wikipedia": "corpusforge.sample.wikipedia",
    "books": "corpusforge.sample.books",
    "evals": "corpusforge.sample.evals",
    "chat": "corpusforge.sample.chat",
    # <sample-parts: add new parts above this line>
}


@dataclasses.dataclass
class SampleConfig:
    """`[sample]`: write the embedded sample inputs under `output/<part>/`."""

    output: str = "build/sample/inputs"
    parts: list[str] = dataclasses.field(default_factory=lambda: list(PARTS))
    seed: int = 1234

    def validate(self) -> None:
        unknown = sorted(set(self.parts) - set(PARTS))
        if unknown:
            raise ValueError(f"parts: unknown {unknown}; known: {sorted(PARTS)}")


def build(config: SampleConfig) -> dict:
    """Write every configured part; a part already written (its `_done.json` exists) is kept as it is."""
    written = {}
    for part in config.parts:
        out = Path(config.output) / part
        done = out / "_done.json"
        if done.exists():
            written[part] = "kept"
            continue
        written[part] = importlib.import_module(PARTS[part]).build(out, config.seed)
        write_json_atomic(done, written[part])
    return written


def run(config: SampleConfig, ctx) -> None:
    """The `[sample]` recipe stage: `build`, saying what each part did."""
    written = build(config)
    for part, what in written.items():
        ctx.console.print(f"sample {part}: {'already there' if what == 'kept' else what}")
    return None
