"""The corpus tokenizer: a byte-level BPE (the `tokenizers` library) trained on a seeded sample of the document
sets, with every source represented, or an existing `tokenizer.json` a user names. Nothing is downloaded.

The special tokens the trainer and the chat template need (named in `corpusforge.trainer.data.chat`, beside the
template) are reserved first, in their order, so their ids are 0..5 in a tokenizer trained here: <|endoftext|>,
<|pad|>, <|system|>, <|user|>, <|assistant|>, <|end|>.

Sampling runs in two passes of Dask tasks over the input shards: the first counts each source's characters, the
second keeps each document whose seeded hash falls under `sample_chars_per_source / chars(source)`, so each source
gives about the same number of characters whatever its size, and the sample is the same on every run.
`tokenizer.json` may be read from and written to an object store (`s3://...`) like a local file.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from corpusforge import documents, resume, runtime, storage, tasks
from corpusforge.options import option
from corpusforge.trainer.data.chat import EOT, SPECIAL_TOKENS, special_ids  # noqa: F401 (the tokenizer's API too)

TOKENIZER_FILE = "tokenizer.json"


@dataclasses.dataclass
class TokenizerConfig:
    """`[tokenizer]`: train a byte-level BPE on a seeded sample of the document shards under `inputs`, or adopt
    the tokenizer.json named by `existing`; either way `output/tokenizer.json` is written."""

    inputs: list[str] = dataclasses.field(default_factory=lambda: ["build/corpus/dedup"])
    output: str = "build/corpus/tokenizer"
    existing: str | None = dataclasses.field(default=None, metadata=option(
        "use this tokenizer.json instead of training (special tokens it lacks are added)"))
    vocab_size: int = dataclasses.field(default=50257, metadata=option("tokens in the vocabulary"))
    min_frequency: int = dataclasses.field(default=2, metadata=option("least count for a merge"))
    sample_chars_per_source: int = dataclasses.field(default=50_000_000, metadata=option(
        "characters sampled per source", flag="--sample-chars"))
    max_chars_per_document: int = dataclasses.field(default=20_000, metadata=option(
        "a sampled document is cut to this length", flag="--max-doc-chars"))
    seed: int = dataclasses.field(default=1234, metadata=option("seed of the sample"))

    def validate(self) -> None:
        if self.existing is None and not self.inputs:
            raise ValueError("inputs: name at least one folder or glob of document shards (or set `existing`)")
        if self.vocab_size < 256 + len(SPECIAL_TOKENS) + 1:
            raise ValueError(f"vocab_size: {self.vocab_size} is too small; a byte-level BPE needs more than "
                             f"{256 + len(SPECIAL_TOKENS)} (256 bytes + {len(SPECIAL_TOKENS)} special tokens)")
        for key in ("min_frequency", "sample_chars_per_source", "max_chars_per_document"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: must be at least 1, got {getattr(self, key)}")


# --------------------------------------------------------------------------------------------------- using one
def _read(path: str | os.PathLike):
    """The tokenizer saved at `path`, local or on a store, as the library loads it."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(storage.read_text(path))


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, _version: str, specials_in_text: bool):
    tokenizer = _read(path)
    # Corpus text that happens to contain "<|endoftext|>" must not become the special token (the setting is not
    # saved in tokenizer.json, so it is set on every load).
    tokenizer.encode_special_tokens = not specials_in_text
    return tokenizer


def load(path: str | os.PathLike, *, specials_in_text: bool = False):
    """The tokenizer saved at `path` (cached per process and file version): the one place a tokenizer is loaded.
    Special-token strings in text are plain text, unless `specials_in_text` (text a chat template rendered)."""
    version = storage.identity(path)  # a changed file is loaded again
    if version.get("missing"):
        raise FileNotFoundError(f"no tokenizer at {path}; run `corpusforge tokenizer train` first")
    return _load_cached(str(path), json.dumps(version, sort_keys=True), specials_in_text)


def encode(tokenizer, texts: list[str]) -> pa.ListArray:
    """Token ids of each text (no special tokens added) as a list<uint32> array."""
    encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    offsets = np.zeros(len(encodings) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = (np.concatenate([np.asarray(e.ids, dtype=np.uint32) for e in encodings])
              if encodings else np.empty(0, np.uint32))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, pa.uint32()))


# ------------------------------------------------------------------------------------------------ making one
def new_bpe(vocab_size: int, min_frequency: int):
    """An untrained byte-level BPE tokenizer and its trainer, with the special tokens reserved at ids 0..5. The
    library's own progress bar is off: the stage shows one bar of its own."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    return tokenizer, trainer


def adopt(path: str | os.PathLike):
    """An existing tokenizer.json, with any reserved special token it lacks added (at the end of its vocab)."""
    tokenizer = _read(path)
    missing = [tok for tok in SPECIAL_TOKENS if tokenizer.token_to_id(tok) is None]
    if missing:
        tokenizer.add_special_tokens(missing)
    return tokenizer, missing


def _measure(path: str, out_dir: str, config: TokenizerConfig) -> runtime.FileReport:
    """Dask task: characters each source has in one shard (each document counted up to max_chars_per_document)."""
    report = runtime.FileReport(input=path, bytes_in=storage.size(path))
    for batch in documents.read_batches(path, ["source", "text"], report):
        chars = pc.min_element_wise(pc.utf8_length(batch.column("text")), config.max_chars_per_document)
        table = pa.table({"source": batch.column("source"), "chars": chars})
        for row in table.group_by("source").aggregate([("chars", "sum"), ("chars", "count")]).to_pylist():
            report.count(f"chars.{row['source']}", int(row["chars_sum"]))
            report.count(f"documents.{row['source']}", int(row["chars_count"]))
        report.count("documents", batch.num_rows)
    return report


def _sample_file(path: str, config: TokenizerConfig, rates: dict[str, float]) -> list[str]:
    """Dask task: the sampled texts of one shard (each cut to max_chars_per_document), in file order."""
    texts: list[str] = []
    ignored = runtime.FileReport(input=path)  # damage was already reported by _measure
    for batch in documents.read_batches(path, ["id", "source", "text"], ignored):
        coins = documents.unit_hash(batch.column("id").to_pylist(), config.seed, salt="tokenizer")
        for coin, source, text in zip(coins, batch.column("source").to_pylist(), batch.column("text").to_pylist()):
            if coin < rates.get(source, 0.0):
                texts.append(text[: config.max_chars_per_document])
    return texts


def _sampled_texts(client, files: list[str], config: TokenizerConfig, rates: dict[str, float],
                   sampled: Counter) -> Iterator[str]:
    """The sample, file by file in input order (so training sees the same sequence every run); counts what it
    yields into `sampled`."""
    futures = client.map(_sample_file, files, config=config, rates=rates, pure=False)
    for future in futures:
        texts = future.result()
        future.release()
        sampled.update(documents=len(texts), chars=sum(map(len, texts)))
        yield from texts


def run(config: TokenizerConfig, ctx: runtime.RunContext) -> runtime.StageSummary:
    """The stage: write `config.output/tokenizer.json`, trained on a seeded per-source sample of `config.inputs`,
    or adopted from `config.existing`. Skipped when an earlier run with the same config and inputs finished."""
    console = ctx.console
    config.validate()
    out_dir = config.output
    files = [] if config.existing else documents.find_shards(config.inputs)[0]
    fp = resume.stage_fingerprint(config, files, *([config.existing] if config.existing else []))
    done = resume.finished_stage(out_dir, fp, TOKENIZER_FILE)
    if done is not None:
        console.print(f"tokenizer: {storage.join(out_dir, TOKENIZER_FILE)} is up to date")
        return runtime.StageSummary(**{**done, "resumed_files": done["files"]})

    if config.existing:
        tokenizer, added = adopt(config.existing)
        summary = runtime.StageSummary(stage="tokenizer", extra={"existing": str(config.existing), "added": added})
        reports: list[runtime.FileReport] = []
        if added:
            console.print(f"[yellow]tokenizer: {config.existing} lacked {added}; added them at the end of its vocab")
    else:
        if not files:
            raise FileNotFoundError(f"tokenizer: no document shards under {config.inputs}")
        with ctx.dask() as client:
            summary, reports = tasks.map_files(_measure, files, out_dir, config, stage="tokenizer", ctx=ctx,
                                                 finish=False)
            chars = {k.split(".", 1)[1]: v for k, v in summary.counts.items() if k.startswith("chars.")}
            rates = {source: min(1.0, config.sample_chars_per_source / n) for source, n in chars.items() if n}
            tokenizer, trainer = new_bpe(config.vocab_size, config.min_frequency)
            expected = sum(round(summary.counts[f"documents.{s}"] * r) for s, r in rates.items())
            sampled: Counter = Counter()
            tokenizer.train_from_iterator(_sampled_texts(client, files, config, rates, sampled), trainer=trainer,
                                          length=expected)
        summary.extra = {"sample_rates": dict(sorted(rates.items())), "sample_documents": sampled["documents"],
                         "sample_chars": sampled["chars"]}
    special_ids(tokenizer)  # refuse to write a tokenizer without the reserved tokens
    path = storage.join(out_dir, TOKENIZER_FILE)
    with runtime.atomic_path(path) as tmp:
        tokenizer.save(str(tmp))
    summary.extra.update(fingerprint=fp, vocab_size=tokenizer.get_vocab_size(), path=str(path))
    runtime.finish_stage(out_dir, summary, runtime.errors_of(reports), console=console)
    console.print(f"tokenizer: vocab {tokenizer.get_vocab_size():,} -> {path}")
    return summary
