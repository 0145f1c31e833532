"""Supervised fine-tuning: a pretrained run and conversations in, a chat model out. The second user of the training
core (`loop`); read it top to bottom.

Follow the data: conversation files -> `chat.read_conversations` (a damaged record is reported with its file and
line, counted and skipped) -> a seeded held-out split of whole conversations -> `chat.render` (token ids; targets
only on the assistant's tokens and the `<|end|>` closing each assistant turn) -> `chat.pack` (blocks of
`block_size + 1` tokens with document ids, so no token attends to another conversation) -> `blocks.BlockStream`
(epochs in seeded orders, split over ranks) -> micro-batches in which `ptx_fraction` of the rows are pretraining
blocks from the corpus's weighted reader (InstructGPT mixed pretraining data into fine-tuning so the model keeps
what it learned) -> the loop, from the base run's weights (its best, by default).

The run folder has what a pretraining run has (`checkpoint.safetensors`, `best.safetensors` at the lowest held-out
assistant-token loss, `tokenizer.json`, `config.json`, `metrics.jsonl`, `loss.png`, `_summary.json`) plus
`_errors.jsonl` (the records skipped), so `corpusforge generate` and `corpusforge chat` load it like any run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from rich.markup import escape

from corpusforge.options import option
from corpusforge.runtime import write_text_atomic
from corpusforge.trainer import checkpoint, loop
from corpusforge.trainer.data import blocks, chat
from corpusforge.trainer.loop import TrainError
from corpusforge.trainer.model import GPT, GPTConfig

SHOW_ERRORS = 10  # skipped records printed at the start (all are in _errors.jsonl)


@dataclasses.dataclass
class SFTConfig(loop.RunConfig):
    """`corpusforge train sft` settings: the core's (`loop.RunConfig`, with defaults for fine-tuning) and what to
    fine-tune on. `max_steps` 0 means as many steps as `epochs` passes over the training conversations take."""

    base: str = dataclasses.field(default="", metadata=option(
        "the pretrained run folder to start from (its best weights and tokenizer)"))
    data: list[str] = dataclasses.field(default_factory=list, metadata=option(
        "conversation files or folders: messages JSONL/Parquet, Alpaca/Self-Instruct, Anthropic HH"))
    format: str = "auto"  # messages, alpaca, hh, or auto (told by each file's first record)
    base_checkpoint: Literal["best", "last"] = "best"
    epochs: float = dataclasses.field(default=3.0, metadata=option("passes over the training conversations"))
    val_fraction: float = 0.1  # conversations held out for the validation loss (at least one)
    ptx_fraction: float = dataclasses.field(default=0.0, metadata=option(
        "share of each batch's rows that are pretraining blocks"))
    corpus: str = dataclasses.field(default="", metadata=option(
        "where --ptx-fraction's blocks come from (default: the base run's corpus or text files)"))
    dropout: float | None = None  # default: the base model's
    batch_size: int = 8
    max_steps: int = 0
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 10
    eval_interval: int = 50
    checkpoint_interval: int = 50

    RESUMABLE: ClassVar[frozenset[str]] = loop.RunConfig.RESUMABLE

    def validate(self) -> None:
        if not self.base:
            raise ValueError("base: name the pretrained run folder to fine-tune (--base RUN_DIR)")
        if not self.data:
            raise ValueError("data: name at least one conversation file (--data FILE ...)")
        if self.format not in chat.FORMATS:
            raise ValueError(f"format: one of {', '.join(chat.FORMATS)}, got {self.format!r}")
        if not self.epochs > 0:
            raise ValueError(f"epochs: must be > 0, got {self.epochs}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction: must be in (0, 1), got {self.val_fraction}")
        if not 0 <= self.ptx_fraction < 1:
            raise ValueError(f"ptx_fraction: must be in [0, 1), got {self.ptx_fraction}")
        if self.ptx_fraction and not 1 <= self.ptx_rows() < self.batch_size:
            raise ValueError(f"ptx_fraction: {self.ptx_fraction} of batch_size {self.batch_size} rows is "
                             f"{self.ptx_fraction * self.batch_size:g}; it must round to 1..{self.batch_size - 1}")
        if self.max_steps < 0:
            raise ValueError(f"max_steps: must be >= 0 (0: from epochs), got {self.max_steps}")
        # the core's checks, with max_steps as it will be once the epochs are counted
        loop.RunConfig.validate(dataclasses.replace(self, max_steps=self.max_steps or self.warmup_steps + 1))

    def ptx_rows(self) -> int:
        """Rows of each micro-batch that are pretraining blocks."""
        return round(self.batch_size * self.ptx_fraction)


def make_config(out_dir: str | os.PathLike, values: dict[str, Any], *, resume: bool = False) -> SFTConfig:
    """The config of a run: SFTConfig's defaults or, when resuming a run with a checkpoint, that run's config; then
    `values` on top. Raises recipe.RecipeError naming a bad key."""
    return loop.make_config(SFTConfig, "sft", out_dir, values, {}, resume=resume)


def load_tokenizer(run_dir: str | os.PathLike):
    """A run's tokenizer, encoding special-token spellings in text as plain text (so text cannot inject a turn)."""
    from corpusforge.mix.tokenizer import load

    path = Path(run_dir) / "tokenizer.json"
    if not path.is_file():
        raise TrainError(f"{run_dir} has no tokenizer.json: is it a run folder (`corpusforge train pretrain --out`)?")
    return load(path)


def split(conversations: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held out): the round(fraction × n) conversations (at least one) whose seeded hash of their id is
    lowest are held out, so the split depends on the seed and the conversations, not on the files' order."""
    import xxhash

    keys = [xxhash.xxh64_intdigest(f"{seed}\x00{c['id']}".encode()) for c in conversations]
    held = set(np.argsort(keys, kind="stable")[:max(1, round(fraction * len(conversations)))].tolist())
    return ([c for i, c in enumerate(conversations) if i not in held],
            [c for i, c in enumerate(conversations) if i in held])


def pack(conversations: list[dict], tokenizer, block_size: int, seed: int) -> tuple[tuple[np.ndarray, ...],
                                                                                       chat.PackStats]:
    """Conversations rendered and packed (in a seeded order, so blocks mix the files) into (ids, targets, doc ids)
    arrays of shape (blocks, block_size + 1), and what packing did."""
    order = np.random.default_rng([seed, 1]).permutation(len(conversations))
    stats = chat.PackStats()
    examples = (chat.render(conversations[i]["messages"], tokenizer) for i in order)
    packed = list(chat.pack(examples, block_size, pad_id=chat.special_ids(tokenizer)[chat.PAD], stats=stats))
    arrays = tuple(np.stack([getattr(b, k) for b in packed]) if packed else np.empty((0, block_size + 1), np.int64)
                   for k in ("ids", "targets", "doc_ids"))
    return arrays, stats


def train(config: SFTConfig, out_dir: str | os.PathLike, *, resume: bool = False, stop_at: int | None = None,
          console: Any = None) -> dict[str, Any]:
    """Fine-tune `config.base` on `config.data` into `out_dir` (or with `resume`, continue its checkpoint) until
    `max_steps` (default: `epochs` passes), `stop_at` or SIGINT/SIGTERM; leave a checkpoint either way. Run under
    `torchrun` for DDP. Returns the summary also written to `out_dir/_summary.json`."""
    config.validate()
    base = Path(config.base)
    tokenizer = load_tokenizer(base)
    base_meta, weights = checkpoint.load_weights(checkpoint.path_in(base, config.base_checkpoint))
    gpt_config = GPTConfig(**{**base_meta["model_config"],
                              **({} if config.dropout is None else {"dropout": config.dropout})})

    # conversations: read (damaged records reported, counted, skipped), split, rendered and packed
    report = chat.ReadReport()
    try:
        conversations = list(chat.read_conversations(config.data, format=config.format, report=report))
    except (OSError, ValueError) as err:
        raise TrainError(f"cannot read the conversations: {err}") from None
    if len(conversations) < 2:
        raise TrainError(f"{len(conversations)} usable conversation(s) in {config.data}; need at least 2 (one held "
                         f"out), {report.skipped} record(s) skipped")
    train_set, val_set = split(conversations, config.val_fraction, config.seed)
    train_blocks, train_stats = pack(train_set, tokenizer, gpt_config.block_size, config.seed)
    val_blocks, _ = pack(val_set, tokenizer, gpt_config.block_size, config.seed)
    if not len(train_blocks[0]) or not len(val_blocks[0]):
        raise TrainError("no conversation has an assistant token within the model's block_size "
                         f"({gpt_config.block_size})")
    chat_rows = config.batch_size - config.ptx_rows()
    config = loop.with_epoch_steps(config, len(train_blocks[0]), chat_rows * config.grad_accum)

    with loop.Run(config, out_dir, "sft", resume=resume, stop_at=stop_at, console=console) as run:
        dist = run.dist
        for error in report.errors[:SHOW_ERRORS]:
            run.say(f"[yellow]skipped[/yellow] {escape(error['file'])}:{error['line']}: {escape(error['reason'])}")
        if report.skipped > SHOW_ERRORS:
            run.say(f"... and {report.skipped - SHOW_ERRORS} more skipped record(s), in _errors.jsonl")

        # data: this rank's part of the packed conversations, and of the pretraining stream for ptx rows
        stream = blocks.BlockStream(train_blocks, seed=config.seed, rank=dist.rank, world_size=dist.world_size)
        ptx = open_ptx(config, base, tokenizer, gpt_config.block_size, dist) if config.ptx_rows() else None
        if run.data_state is not None:
            stream.load_state_dict(run.data_state["chat"])
            if ptx is not None:
                ptx.load_state_dict(run.data_state["ptx"])
        val = tuple(a[dist.rank::dist.world_size] for a in val_blocks)

        # model: the base run's weights
        net = GPT(gpt_config)
        net.load_state_dict(weights)
        run.write_files(tokenizer, {"train": dataclasses.asdict(config), "model": dataclasses.asdict(gpt_config)})
        if dist.is_main:
            write_text_atomic(Path(out_dir) / "_errors.jsonl", "".join(json.dumps(e) + "\n" for e in report.errors))

        # the loop: next-token loss on the assistant's tokens (and on every token of the ptx rows)
        rows, pretraining = iter(stream), iter(ptx) if ptx is not None else None

        def read() -> tuple[torch.Tensor, ...]:
            batch = [next(rows) for _ in range(chat_rows)]
            batch += [(b, b, np.zeros_like(b)) for b in (next(pretraining) for _ in range(config.ptx_rows()))]
            return tuple(torch.from_numpy(np.stack(column).astype(np.int64)) for column in zip(*batch))

        def position() -> dict:
            return {"chat": stream.state_dict(), **({"ptx": ptx.state_dict()} if ptx is not None else {})}

        def evaluate(net: GPT) -> dict[str, float]:
            ids, targets, docs = (torch.from_numpy(a) for a in val)
            return {"chat": loop.token_loss(net, zip(ids[:, :-1].split(config.batch_size),
                                                      targets[:, 1:].split(config.batch_size),
                                                      docs[:, :-1].split(config.batch_size)), run.amp, dist)}

        data = {"conversations": len(conversations), "train_conversations": len(train_set),
                "held_out_conversations": len(val_set), "skipped_records": report.skipped,
                "train_blocks": len(train_blocks[0]), "truncated_conversations": train_stats.truncated,
                "padding_share": round(train_stats.padding_share, 4), "ptx_rows_per_batch": config.ptx_rows()}
        return run.train(
            net, loop.ReadAhead(read, position, dist.device),
            loss=lambda model, b: model(b[0][:, :-1], b[1][:, 1:], doc_ids=b[2][:, :-1])[1],
            evaluate=evaluate, tokens_per_step=config.batch_size * config.grad_accum * gpt_config.block_size,
            title=f"{base.name} + {len(train_set):,} conversations: {net.num_params() / 1e6:.2f}M parameters",
            meta={"eot_id": chat.special_ids(tokenizer)[chat.EOT], "base": str(base), "sets": ["chat"]}, data=data)


def open_ptx(config: SFTConfig, base: Path, tokenizer, block_size: int, dist):
    """This rank's stream of pretraining blocks: `config.corpus`, else what the base run was trained on; its
    tokenizer must be the base run's."""
    source = {"corpus": config.corpus, "text": []}
    if not config.corpus:
        trained_on = json.loads((base / "config.json").read_text(encoding="utf-8")).get("train", {})
        source = {"corpus": trained_on.get("corpus") or "", "text": trained_on.get("text") or []}
        if not (source["corpus"] or source["text"]):
            raise TrainError(f"ptx_fraction: {base} names no pretraining corpus; give one with --corpus DIR")
    reader = blocks.open_reader(**source, block_size=block_size, split="train", seed=config.seed, rank=dist.rank,
                                world_size=dist.world_size)
    if blocks.tokenizer_of(reader).get_vocab() != tokenizer.get_vocab():
        raise TrainError(f"ptx_fraction: {config.corpus or source} was encoded with another tokenizer than {base}")
    return reader
