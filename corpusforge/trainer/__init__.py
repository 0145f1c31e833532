"""The bundled GPT trainer: the model (`model`), one training core (`loop`: schedule, stop, metrics, checkpoints and
exact resume; `devices`: DDP, precision, peak FLOPs) with its users, pretraining (`pretrain`) and supervised
fine-tuning (`sft`), what they read (`data`), checkpoints (`checkpoint`) and sampling (`generate`). See
docs/trainer.md. This module holds the `train` command (`TrainCommand`), light to import: the method's module
is imported only when it runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from corpusforge.options import option, setting


@dataclasses.dataclass
class TrainCommand:
    """`corpusforge train METHOD --out DIR`: the method's config from the `config` file, then `settings` (the
    command line's), on the method's defaults or, with `resume`, on the run's own settings."""

    method: str  # pretrain, sft, reward, ppo or dpo: the module of corpusforge.trainer with make_config and train
    out: str = dataclasses.field(metadata=option("run folder: checkpoint, metrics.jsonl, loss.png, tokenizer.json"))
    resume: bool = setting(False, "continue the checkpoint in --out exactly where it stopped", action="store_true")
    stop_at: int | None = setting(None, "checkpoint and exit after this step (the schedule still runs to "
                                        "--max-steps)")
    config: str | None = setting(None, "TOML file of training settings (keys of the method's config)")
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)


def train_command(command: TrainCommand) -> None:
    """`corpusforge train METHOD`: build the method's config (`make_config`) and train it."""
    import importlib
    import tomllib

    trainer = importlib.import_module(f"corpusforge.trainer.{command.method}")
    values = tomllib.loads(Path(command.config).read_text(encoding="utf-8")) if command.config else {}
    config = trainer.make_config(command.out, {**values, **command.settings}, resume=command.resume)
    trainer.train(config, command.out, resume=command.resume, stop_at=command.stop_at)
