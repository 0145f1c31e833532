"""DPO: direct preference optimization (Rafailov et al. 2023) on the labelers' comparisons, against the frozen SFT
model; no reward model and no sampling. The fifth user of the training core (`loop`); read it top to bottom.

Follow the data: feedback stores or exports (the app's rankings, and HH or TRL pairs brought in by `feedback
import`) -> `preferences.read_feedback` -> a split by prompt (as the reward model's) -> each comparison's untied
(better, worse) pairs (a K-way ranking gives all of its; ties are dropped) -> micro-batches of pairs -> the loss:
-log sigmoid(beta x ((log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l)))), log-probabilities summed
over the answer's tokens (and its closing `<|end|>`), the reference computed on the fly.

The run folder is a model run like SFT's (`generate`, `chat` and `eval compare` load it); `best.safetensors` has
the lowest held-out DPO loss, and `metrics.jsonl` the held-out pair accuracy (the implicit reward orders the pair
as the labeler did) beside it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from corpusforge.options import setting
from corpusforge.runtime import write_json_atomic
from corpusforge.trainer import loop, rollouts
from corpusforge.trainer.data import chat, preferences
from corpusforge.trainer.loop import TrainError
from corpusforge.trainer.model import GPT
from corpusforge.trainer.ppo import load_gpt
from corpusforge.trainer.reward import ElementStream


@dataclasses.dataclass
class DPOConfig(loop.RunConfig):
    """`corpusforge train dpo` settings: the core's and DPO's. `max_steps` 0: `epochs` passes over the pairs."""

    policy: str = setting("", "the SFT run folder: the policy starts from it and it stays as the frozen reference")
    feedback: list[str] = setting([], "feedback stores (.sqlite, postgresql://) or `feedback export` folders")
    beta: float = setting(0.1, "DPO's beta: how far from the reference the implicit reward lets the policy go")
    policy_checkpoint: Literal["best", "last"] = setting("best", "which weights of the SFT run")
    epochs: float = setting(1.0, "passes over the training pairs")
    held_out: float = setting(0.1, "share of prompts held out for the validation loss and accuracy")
    batch_size: int = setting(8, "pairs per micro-batch on each rank")
    max_steps: int = setting(0, "optimizer steps in all (0: from epochs)")
    lr: float = setting(1e-5, "peak learning rate")
    min_lr: float = setting(1e-6, "learning rate at the end of the cosine decay")
    warmup_steps: int = setting(5, "linear warmup steps")
    weight_decay: float = setting(0.0, "AdamW weight decay")
    eval_interval: int = setting(20, "steps between evaluations")
    checkpoint_interval: int = setting(50, "steps between checkpoints")

    RESUMABLE: ClassVar[frozenset[str]] = loop.RunConfig.RESUMABLE

    def validate(self) -> None:
        if not self.policy:
            raise ValueError("policy: name the SFT run folder (--policy RUN_DIR)")
        if not self.feedback:
            raise ValueError("feedback: name at least one feedback store or export folder (--feedback DB_OR_DIR)")
        if not self.beta > 0 or not self.epochs > 0 or not 0 < self.held_out < 1 or self.max_steps < 0:
            raise ValueError("beta > 0, epochs > 0, held_out in (0, 1) and max_steps >= 0 (0: from epochs)")
        loop.RunConfig.validate(dataclasses.replace(self, max_steps=self.max_steps or self.warmup_steps + 1))


def make_config(out_dir: str | os.PathLike, values: dict[str, Any], *, resume: bool = False) -> DPOConfig:
    """DPOConfig's defaults or, resuming, the run's config; then `values` on top."""
    return loop.make_config(DPOConfig, "dpo", out_dir, values, {}, resume=resume)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(DPO's loss, the share of pairs whose implicit reward margin is positive), from the answers' summed
    log-probabilities under the policy and the reference."""
    margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return -F.logsigmoid(margin).mean(), (margin > 0).float().mean()


def pairs(feedback: preferences.Feedback, tokenizer, block_size: int, held_out: float, seed: int
          ) -> tuple[list[preferences.Element], list[preferences.Element], dict[str, int]]:
    """(train, held-out) pairs, each an Element of (better, worse) sequences with where its answer starts."""
    train, val, counts = [], [], {"comparisons": 0, "pairs_train": 0, "pairs_held_out": 0, "all_tied": 0}
    for c in feedback.comparisons:
        keep = [i for i, bad in enumerate(c["unusable"]) if not bad]
        prompt = len(chat.render(c["context"], tokenizer, for_generation=True)[0])
        ranks = [c["ranking"][i] for i in keep]
        found = [(keep[a], keep[b]) for a in range(len(keep)) for b in range(len(keep)) if ranks[a] < ranks[b]]
        if not found:
            counts["all_tied"] += 1
            continue
        counts["comparisons"] += 1
        side = preferences.prompt_is_held_out(c["context"], held_out, seed)
        for better, worse in found:
            seqs = [preferences.sequence(c["context"], c["answers"][i], tokenizer, block_size) for i in (better, worse)]
            full = [len(chat.render([*c["context"], {"role": "assistant", "content": c["answers"][i]}],
                                    tokenizer)[0]) for i in (better, worse)]
            # where each answer starts in its sequence (a sequence cut to block_size lost its start)
            element = preferences.Element(seqs, ranks=[max(1, prompt - (f - len(s))) for f, s in zip(full, seqs)])
            (val if side else train).append(element)
        counts["pairs_held_out" if side else "pairs_train"] += len(found)
    return train, val, counts


def collate(elements: list[preferences.Element], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (2N, T), chosen then rejected of each pair, right-padded; actions (2N, T - 1) True where an answer token
    is chosen. (An Element's `ranks` holds where its two answers start.)"""
    prompts = [el.sequences[i][:el.ranks[i]] for el in elements for i in (0, 1)]
    answers = [el.sequences[i][el.ranks[i]:] for el in elements for i in (0, 1)]
    seqs = rollouts.pack(prompts, answers, pad_id, "cpu")
    return seqs.ids, seqs.actions


def answer_logprobs(net: GPT, ids: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Each sequence's answer log-probability, summed over its tokens (2N,)."""
    return (rollouts.token_logprobs(net(ids)[0], ids) * actions).sum(dim=1)


def train(config: DPOConfig, out_dir: str | os.PathLike, *, resume: bool = False, stop_at: int | None = None,
          console: Any = None) -> dict[str, Any]:
    """DPO from `config.policy` on `config.feedback` into `out_dir` (or continue its checkpoint). Returns the
    summary."""
    from corpusforge.trainer.sft import load_tokenizer

    config.validate()
    tokenizer = load_tokenizer(config.policy)
    special = chat.special_ids(tokenizer)
    reference = load_gpt(config.policy, config.policy_checkpoint)
    train_set, val_set, counts = pairs(preferences.read_feedback(config.feedback), tokenizer,
                                       reference.config.block_size, config.held_out, config.seed)
    if not train_set or not val_set:
        raise TrainError(f"{len(train_set)} training and {len(val_set)} held-out pair(s) in {config.feedback}: "
                         "need both (more comparisons, or another held_out)")
    per_step = config.batch_size * config.grad_accum
    config = loop.with_epoch_steps(config, len(train_set), per_step)
    mean_tokens = sum(len(s) for el in train_set for s in el.sequences) / len(train_set)

    with loop.Run(config, out_dir, "dpo", resume=resume, stop_at=stop_at, console=console) as run:
        dist = run.dist
        reference.to(dist.device)
        stream = ElementStream(train_set, seed=config.seed, rank=dist.rank, world_size=dist.world_size)
        if run.data_state is not None:
            stream.load_state_dict(run.data_state)
        net = GPT(reference.config)
        net.load_state_dict(reference.state_dict())
        run.write_files(tokenizer, {"train": dataclasses.asdict(config), "model": dataclasses.asdict(net.config)})
        batches = loop.ReadAhead(lambda: collate(stream.take(config.batch_size), special[chat.PAD]),
                                 stream.state_dict, dist.device)
        accuracy: list[torch.Tensor] = []

        def loss_of(model, ids, actions) -> tuple[torch.Tensor, torch.Tensor]:
            policy = answer_logprobs(model, ids, actions)
            with torch.no_grad():
                ref = answer_logprobs(reference, ids, actions)
            return dpo_loss(policy[0::2], policy[1::2], ref[0::2], ref[1::2], config.beta)

        def loss(model, batch) -> torch.Tensor:
            value, acc = loss_of(model, *batch)
            accuracy.append(acc.detach())
            return value

        def evaluate(net: GPT) -> dict[str, float]:
            totals = torch.zeros(3, dtype=torch.float64, device=dist.device)
            mine = val_set[dist.rank::dist.world_size]
            with torch.no_grad(), run.amp:
                for start in range(0, len(mine), config.batch_size):
                    ids, actions = (t.to(dist.device) for t in collate(mine[start:start + config.batch_size],
                                                                       special[chat.PAD]))
                    value, acc = loss_of(net, ids, actions)
                    n = len(ids) // 2
                    totals += torch.tensor([float(value) * n, float(acc) * n, n], dtype=torch.float64,
                                           device=dist.device)
            totals = dist.all_reduce(totals)
            held["accuracy"] = float(totals[1] / totals[2])
            return {"dpo": float(totals[0] / totals[2])}

        held: dict[str, float] = {}

        def stats() -> dict[str, float]:
            mean = torch.stack(accuracy).mean().double() if accuracy else torch.zeros((), dtype=torch.float64)
            accuracy.clear()
            return {"pair_accuracy": float(dist.all_reduce(mean.to(dist.device)) / dist.world_size)}

        summary = run.train(
            net, batches, loss=loss, evaluate=evaluate, stats=stats, tokens_per_step=round(per_step * mean_tokens),
            title=f"DPO {Path(config.policy).name} + {counts['pairs_train']:,} pairs (beta {config.beta}): "
                  f"{net.num_params() / 1e6:.2f}M parameters",
            meta={"eot_id": special[chat.EOT], "policy": str(config.policy)}, data=counts)
        summary["held_out_accuracy"] = held["accuracy"]  # at the last evaluation, which follows the last log
        if dist.is_main:
            write_json_atomic(Path(out_dir) / "_summary.json", summary)
            run.say(f"held-out pair accuracy (implicit reward) {held['accuracy']:.3f} on {counts['pairs_held_out']:,} "
                    "pairs")
        return summary
