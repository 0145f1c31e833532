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


def describe(part: str, what: dict) -> str:
    """What `build` wrote for `part`, in plain words (the part's own dict for a part not known here)."""
    if part == "crawl":
        return (f"a crawl of {what['files']} WARC files: {what['records']} records, {what['html_pages']} HTML pages "
                f"in {len(what['languages'])} languages, and one record damaged on purpose ({what['damaged']}), "
                "which the commoncrawl stage reports as an expected error")
    if part == "reddit":
        return (f"a Pushshift dump of {what['submissions']} Reddit submissions, and the {what['pages']} pages they "
                "link to, served on loopback while the run fetches them")
    if part == "wikipedia":
        return (f"{len(what)} Wikipedia dumps: " + ", ".join(f"{wiki} ({d['pages']} pages)" for wiki, d in what.items()))
    if part == "books":
        return f"{len(what['books'])} books (Project Gutenberg texts, an EPUB, a plain text)"
    if part == "evals":
        return (f"{len(what['examples'])} evaluation sets to decontaminate against: "
                + ", ".join(f"{name} ({n} examples)" for name, n in what["examples"].items())
                + "; one line of reading-qa is cut short on purpose, an expected error")
    if part == "chat":
        return (f"{what['conversations']} conversations ({what['turns']} turns) for `make sft`")
    return str(what)


def run(config: SampleConfig, ctx) -> None:
    """The `[sample]` recipe stage: `build`, saying in plain words what each part wrote."""
    written = build(config)
    ctx.console.print(f"sample: inputs in {config.output}", highlight=False)
    for part, what in written.items():
        ctx.console.print(f"  {part}: {'already written' if what == 'kept' else describe(part, what)}",
                          highlight=False)
    return None
