"""Pretraining: a weighted corpus in, a GPT out. The first user of the training core (`loop`); read it top to bottom.

`train(config, out_dir)` reads token blocks through the corpus's weighted reader (`data.blocks`; the trainer never
mixes sources itself) or, for character-level runs, from plain text files, builds a GPT of the preset's shape with
seeded weights, and hands model, batches, loss and evaluation to `loop.Run`, which does devices and DDP, the
schedule, logging, checkpoints and exact resume (see `loop`). The validation loss is measured per source, on the
same held-out blocks at every evaluation.

What a run leaves in `out_dir`: `checkpoint.safetensors` (see `checkpoint`; what `--resume` continues),
`best.safetensors` (the weights at the lowest mean validation loss so far), `tokenizer.json`, `config.json`,
`metrics.jsonl` (train loss, tokens/s and MFU every `log_interval` steps; validation loss per source every
`eval_interval` steps), `loss.png` and `_summary.json`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar

import torch

from corpusforge.options import option
from corpusforge.trainer import loop
from corpusforge.trainer import model as model_mod
from corpusforge.trainer.data import blocks
from corpusforge.trainer.devices import Distributed
from corpusforge.trainer.loop import TrainError


@dataclasses.dataclass
class TrainConfig(loop.RunConfig):
    """`corpusforge train pretrain` settings: the core's (`loop.RunConfig`) and what to train on and what shape.
    Give `corpus` (a mixed corpus folder) or `text` (plain text files, character level). Model shape fields left at
    None take the preset's value (`model.PRESETS`); the other defaults are the `tiny` preset's, and
    `TRAINING_PRESETS` changes them for the larger presets."""

    corpus: str = dataclasses.field(default="", metadata=option(
        "a mixed corpus folder (manifest.json, shards, tokenizer.json)"))
    text: list[str] = dataclasses.field(default_factory=list, metadata=option(
        "train character-level on these text files (.txt, .txt.gz) instead of a corpus"))
    sets: list[str] | None = None  # train on these sets of the corpus only (weights renormalized)
    preset: str = dataclasses.field(default="tiny", metadata=option(
        "model and training preset: tiny, small, gpt2-124m"))
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    block_size: int | None = None
    dropout: float | None = None
    vocab_size: int | None = None  # default: the tokenizer's; set it higher to pad the embedding for speed
    eval_blocks: int = 96  # validation blocks per source

    RESUMABLE: ClassVar[frozenset[str]] = loop.RunConfig.RESUMABLE | {"eval_blocks"}

    def validate(self) -> None:
        if bool(self.corpus) == bool(self.text):
            raise ValueError("give exactly one of corpus (a mixed corpus folder) or text (plain text files)")
        if self.preset not in model_mod.PRESETS:
            raise ValueError(f"preset: unknown {self.preset!r}; known: {', '.join(model_mod.PRESETS)}")
        if self.eval_blocks < 1:
            raise ValueError(f"eval_blocks: must be >= 1, got {self.eval_blocks}")
        super().validate()

    def block_length(self) -> int:
        return self.block_size or model_mod.PRESETS[self.preset]["block_size"]


# Training settings per preset, over TrainConfig's defaults (model shapes are model.PRESETS). tiny: the defaults,
# sized to train in minutes on a 2-core CPU; small: nanoGPT's shakespeare-char GPU run; gpt2-124m: nanoGPT's GPT-2
# reproduction (~0.5M tokens per step).
TRAINING_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {},
    "small": dict(batch_size=64, max_steps=5000, lr=1e-3, min_lr=1e-4, warmup_steps=100, beta2=0.99, dropout=0.2,
                  eval_interval=250, checkpoint_interval=250, eval_blocks=256),
    "gpt2-124m": dict(batch_size=12, grad_accum=40, max_steps=600_000, lr=6e-4, min_lr=6e-5, warmup_steps=2000,
                      beta2=0.95, eval_interval=1000, checkpoint_interval=1000, eval_blocks=480),
}


def make_config(out_dir: str | os.PathLike, values: dict[str, Any], *, resume: bool = False) -> TrainConfig:
    """The config of a run: the preset's training defaults (`values["preset"]`, else tiny) or, when resuming a run
    with a checkpoint, that run's config; then `values` on top. Raises recipe.RecipeError naming a bad key."""
    defaults = TRAINING_PRESETS.get(values.get("preset", TrainConfig.preset), {})  # unknown: validate() says so
    return loop.make_config(TrainConfig, "pretrain", out_dir, values, defaults, resume=resume)


def open_reader(config: TrainConfig, split: str, *, rank: int = 0, world_size: int = 1,
                sets: list[str] | None = None):
    """The block stream the config names: the corpus's weighted reader, or character-level text."""
    return blocks.open_reader(corpus=config.corpus, text=config.text, block_size=config.block_length(), split=split,
                              seed=config.seed, rank=rank, world_size=world_size, sets=sets)


def validation_blocks(config: TrainConfig, sets: list[str], dist: Distributed) -> dict[str, torch.Tensor]:
    """For each source, this rank's share of the first `eval_blocks` blocks of its held-out stream."""
    return blocks.validation_blocks(
        lambda name: open_reader(config, "val", rank=dist.rank, world_size=dist.world_size, sets=[name]), sets,
        config.eval_blocks, dist.rank, dist.world_size, config.block_length())


def evaluate(net: model_mod.GPT, val: dict[str, torch.Tensor], batch_size: int, amp, dist: Distributed
             ) -> dict[str, float]:
    """Mean next-token loss (nats) on each source's validation blocks, over all ranks."""
    return {name: loop.token_loss(net, ((b[:, :-1], b[:, 1:]) for b in data.split(batch_size)), amp, dist)
            for name, data in val.items()}


def train(config: TrainConfig, out_dir: str | os.PathLike, *, resume: bool = False, stop_at: int | None = None,
          console: Any = None) -> dict[str, Any]:
    """Train (or with `resume`, continue from `out_dir`'s checkpoint) until `config.max_steps`, or until step
    `stop_at`, or until SIGINT/SIGTERM; leave a checkpoint either way. Run under `torchrun` for DDP.

    Returns the summary also written to `out_dir/_summary.json`: steps, tokens, final train and validation losses,
    tokens/s, MFU and whether the run stopped before max_steps.
    """
    config.validate()
    with loop.Run(config, out_dir, "pretrain", resume=resume, stop_at=stop_at, console=console) as run:
        dist = run.dist
        # data: this rank's part of the training stream, from where the checkpoint left it
        reader = open_reader(config, "train", rank=dist.rank, world_size=dist.world_size, sets=config.sets)
        if run.data_state is not None:
            reader.load_state_dict(run.data_state)
        if config.vocab_size is not None and config.vocab_size < reader.vocab_size:
            raise TrainError(f"vocab_size {config.vocab_size} is smaller than the tokenizer's {reader.vocab_size}")
        sets = config.sets or list(reader.sets)
        val = validation_blocks(config, sets, dist)

        # model: the preset's shape, the same seeded initial weights on every rank
        gpt_config = model_mod.preset(config.preset, config.vocab_size or reader.vocab_size, n_layer=config.n_layer,
                                      n_head=config.n_head, n_embd=config.n_embd, block_size=config.block_length(),
                                      dropout=config.dropout)
        torch.manual_seed(config.seed)
        net = model_mod.GPT(gpt_config)
        run.write_files(blocks.tokenizer_of(reader), {"train": dataclasses.asdict(config),
                                                      "model": dataclasses.asdict(gpt_config)})

        # the loop: next-token loss on every position of every block
        stream = iter(reader)
        batches = loop.ReadAhead(lambda: blocks.stack(stream, config.batch_size), reader.state_dict, dist.device)
        return run.train(
            net, batches, loss=lambda model, b: model(b[:, :-1], b[:, 1:])[1],
            evaluate=lambda net: evaluate(net, val, config.batch_size, run.amp, dist),
            tokens_per_step=config.batch_size * config.grad_accum * gpt_config.block_size,
            title=f"{config.preset}: {net.num_params() / 1e6:.2f}M parameters",
            meta={"eot_id": reader.eot_id, "sets": list(reader.sets)})
