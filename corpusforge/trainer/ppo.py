"""RLHF with PPO: an SFT run, a reward model and prompts in, a policy that earns more reward at a KL cost it shows.
The fourth user of the training core (`loop`); read it top to bottom.

Follow one rollout batch (InstructGPT, Ouyang et al. 2022; Ziegler et al. 2019 for the details):
prompts -> answers sampled from the policy at temperature 1 with the key/value cache (`rollouts.sample`) -> scored:
the reward model's score at the answer's end, minus `kl_coef` x (log pi - log pi_ref) at every answer token (the KL
leash to the frozen SFT reference), the value model's value at every position, the policy's own log-probabilities
-> GAE advantages (gamma = 1, lambda = 0.95), whitened per micro-batch -> `ppo_epochs` passes, each in `minibatches`
optimizer steps, of the clipped policy loss + `vf_coef` x the clipped value loss, + `ptx_coef` x the pretraining
loss on blocks of the corpus's weighted reader when a corpus is given (InstructGPT's PPO-ptx, gamma = 27.8).

The value model is a second network initialized from the reward model (InstructGPT's choice); policy and value
train together (`ActorCritic`). One loop step is one optimizer step; a new rollout batch is sampled when the last
one is used up (`RolloutSource`, the loop's batch source, in the main thread: sampling needs the policy as it is).
Answers are sampled with a generator seeded by (seed, rollout batch, global micro-batch), so the rollouts, and the
run, do not depend on the number of processes; the checkpoint keeps the rollout batch being trained on, so
`--resume` continues bit for bit. Per log step `metrics.jsonl` has the mean reward, KL, entropy, value loss, clip
fraction, ptx loss and answer length, drawn in `rlhf.png`; each evaluation samples the held-out prompts (reward,
KL, a few answers into `samples.jsonl`); `best.safetensors` holds the weights of the highest held-out
reward - kl_coef x KL.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from corpusforge.options import setting
from corpusforge.trainer import checkpoint, loop, rollouts
from corpusforge.trainer.data import blocks, chat, preferences
from corpusforge.trainer.loop import TrainError
from corpusforge.trainer.model import GPT, GPTConfig, ScalarGPT
from corpusforge.trainer.ppo_losses import (adapt_kl_coef, gae, kl_rewards, masked_mean, policy_loss, value_loss,
                                            whiten)

PTX_COEF = 27.8  # InstructGPT's pretraining-loss coefficient (gamma)


@dataclasses.dataclass
class PPOConfig(loop.RunConfig):
    """`corpusforge train ppo` settings: the core's (`loop.RunConfig`, with defaults for RL) and PPO's."""

    policy: str = setting("", "the SFT run folder: the policy starts from it and it stays as the frozen reference")
    reward: str = setting("", "the reward model's run folder (`train reward`); the value model starts from it")
    prompts: str = setting("", ".txt (a prompt a line) or .jsonl ({prompt} or {messages} a line) to answer")
    corpus: str = setting("", "PPO-ptx: a corpus folder whose weighted reader gives the pretraining blocks (or a "
                           "text file, for character-level runs)")
    ptx_coef: float | None = setting(None, f"weight of the pretraining loss (default {PTX_COEF} with a corpus, else 0)")
    ptx_batch_size: int = setting(2, "pretraining blocks per micro-batch (PPO-ptx)")
    kl_coef: float = setting(0.02, "beta: reward - kl_coef x (log pi - log pi_ref) per answer token")
    target_kl: float | None = setting(None, "adaptive KL controller: steer kl_coef so an answer's KL nears this")
    kl_horizon: int = setting(10_000, "adaptive KL controller's horizon, in answers (Ziegler et al. 2019)")
    gamma: float = setting(1.0, "GAE discount")
    lam: float = setting(0.95, "GAE lambda")
    clip_range: float = setting(0.2, "PPO's clip on the probability ratio")
    value_clip: float = setting(0.2, "clip on the value's change from the rollout's")
    vf_coef: float = setting(0.5, "weight of the value loss")
    ppo_epochs: int = setting(4, "passes over each rollout batch")
    minibatches: int = setting(1, "optimizer steps per pass; a rollout batch is batch_size x grad_accum x this")
    max_new_tokens: int = setting(48, "longest answer, in tokens")
    temperature: float = setting(1.0, "sampling temperature of the rollouts (InstructGPT: 1)")
    held_out: float = setting(0.1, "share of the prompts held out for evaluation")
    eval_prompts: int = setting(32, "held-out prompts answered at each evaluation")
    samples: int = setting(3, "held-out answers shown and kept in samples.jsonl at each evaluation")
    policy_checkpoint: Literal["best", "last"] = setting("best", "which weights of the SFT run")
    batch_size: int = setting(8, "answers per micro-batch on each rank")
    max_steps: int = setting(200, "optimizer steps in all")
    lr: float = setting(3e-5, "peak learning rate (policy and value)")
    min_lr: float = setting(3e-6, "learning rate at the end of the cosine decay")
    warmup_steps: int = setting(0, "linear warmup steps")
    weight_decay: float = setting(0.0, "AdamW weight decay")
    eval_interval: int = setting(20, "steps between evaluations")
    checkpoint_interval: int = setting(20, "steps between checkpoints")
    log_interval: int = setting(4, "steps between log lines")
    compile: bool | None = setting(False, "torch.compile (off: rollouts change shape every batch)")

    RESUMABLE: ClassVar[frozenset[str]] = loop.RunConfig.RESUMABLE | {"samples"}

    def validate(self) -> None:
        for name, what in (("policy", "the SFT run folder (--policy)"), ("reward", "the reward model (--reward)"),
                           ("prompts", "a prompts file (--prompts)")):
            if not getattr(self, name):
                raise ValueError(f"{name}: name {what}")
        if self.ptx() and not self.corpus:
            raise ValueError("ptx_coef: PPO-ptx needs a pretraining corpus (--corpus DIR)")
        for name in ("ppo_epochs", "minibatches", "max_new_tokens", "eval_prompts", "ptx_batch_size", "kl_horizon"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.kl_coef < 0 or (self.target_kl is not None and self.target_kl <= 0):
            raise ValueError("kl_coef must be >= 0 and target_kl > 0")
        if not (0 < self.gamma <= 1 and 0 <= self.lam <= 1 and self.clip_range > 0 and self.value_clip > 0
                and self.temperature > 0 and 0 < self.held_out < 1):
            raise ValueError("need 0 < gamma <= 1, 0 <= lam <= 1, clip_range, value_clip, temperature > 0 and "
                             "held_out in (0, 1)")
        super().validate()

    def ptx(self) -> float:
        """The pretraining loss's weight in force."""
        return self.ptx_coef if self.ptx_coef is not None else (PTX_COEF if self.corpus else 0.0)


def make_config(out_dir: str | os.PathLike, values: dict[str, Any], *, resume: bool = False) -> PPOConfig:
    """PPOConfig's defaults or, resuming, the run's config; then `values` on top."""
    return loop.make_config(PPOConfig, "ppo", out_dir, values, {}, resume=resume)


# -------------------------------------------------------------------------------------------------- the models
class ActorCritic(nn.Module):
    """The policy (a GPT: what samples and what `generate` loads from the run) and the value model (a ScalarGPT
    whose head is read at every position), trained together by one optimizer."""

    def __init__(self, policy_config: GPTConfig, value_config: GPTConfig):
        super().__init__()
        self.policy = GPT(policy_config)
        self.value = ScalarGPT(value_config)

    @property
    def config(self) -> GPTConfig:
        return self.policy.config

    def forward(self, ids: torch.Tensor, ptx: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """(policy logits, values at every position, the pretraining loss on `ptx` blocks or 0)."""
        logits, _ = self.policy(ids)
        ptx_loss = self.policy(ptx[:, :-1], ptx[:, 1:])[1] if ptx is not None else logits.new_zeros(())
        return logits, rollouts.values(self.value, ids), ptx_loss

    def num_params(self) -> int:
        return self.policy.num_params() + self.value.num_params()

    def flops_per_token(self) -> float:
        return self.policy.flops_per_token() + self.value.flops_per_token()

    optimizer = GPT.optimizer  # AdamW over both networks, decay on matrices only


def load_gpt(run_dir: str | os.PathLike, which: str = "best", cls: type = GPT) -> GPT:
    """A run's model (its `which` weights; a PPO run's policy), frozen, in eval mode, on the CPU."""
    from corpusforge.trainer.generate import sampling_weights

    meta, weights = checkpoint.load_weights(checkpoint.path_in(run_dir, which))
    net = cls(GPTConfig(**{**meta["model_config"], "dropout": 0.0}))
    net.load_state_dict(weights if cls is ScalarGPT else sampling_weights(weights))
    return net.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------- the rollouts
def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


class RolloutSource:
    """The loop's batch source for PPO (`next`, `position`, `close`, like `loop.ReadAhead`), in the main thread.

    This rank owns global micro-batches r, r + W, ... of each minibatch (W ranks; `grad_accum` per minibatch), so
    W processes train on what one process trains on. A micro-batch is (ids, actions, old log-probs, old values,
    advantages, returns[, ptx blocks])."""

    def __init__(self, net: ActorCritic, reference: GPT, reward_model: ScalarGPT, prompts: list[list[int]],
                 config: PPOConfig, dist, pad_id: int, stops: tuple[int, ...], ptx=None):
        self.net, self.reference, self.reward_model, self.prompts = net, reference, reward_model, prompts
        self.config, self.dist, self.pad_id, self.stops, self.ptx = config, dist, pad_id, stops, ptx
        self.micro_steps = config.grad_accum // dist.world_size
        self.per_rollout = config.ppo_epochs * config.minibatches * self.micro_steps  # next() calls per batch
        self.iteration, self.at, self.kl_coef = 0, self.per_rollout, config.kl_coef
        self.buffer: list[tuple[torch.Tensor, ...]] = []
        self.last: dict[str, float] = {}  # the latest rollout batch's statistics, over all ranks
        # where the time goes: sampling, scoring, and the rest between two batches (update; evaluation, if any)
        self.seconds = {"generate_s": 0.0, "score_s": 0.0, "update_s": 0.0}
        self._handed_out: float | None = None
        self._ptx_blocks = None  # opened at the first read, after a resumed position is loaded

    @property
    def steps_done(self) -> int:
        return ((self.iteration - 1) * self.per_rollout + self.at) // self.micro_steps if self.iteration else 0

    @property
    def position(self) -> dict[str, Any]:
        state = {"iteration": self.iteration, "at": self.at, "kl_coef": self.kl_coef, "last": self.last}
        if self.at < self.per_rollout:  # mid-batch: keep the batch, which the policy at resume could not resample
            data = io.BytesIO()
            torch.save([tuple(t.cpu() for t in mb) for mb in self.buffer], data)
            state["buffer"] = base64.b64encode(data.getvalue()).decode("ascii")
        if self.ptx is not None:
            state["ptx"] = self.ptx.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration, self.at, self.kl_coef, self.last = state["iteration"], state["at"], state["kl_coef"], \
            state["last"]
        if "buffer" in state:
            self.buffer = torch.load(io.BytesIO(base64.b64decode(state["buffer"])), weights_only=True)
        if self.ptx is not None:
            self.ptx.load_state_dict(state["ptx"])

    def close(self) -> None:
        pass

    def next(self) -> tuple[torch.Tensor, ...]:
        config = self.config
        if self._handed_out is not None:
            self.seconds["update_s"] += time.perf_counter() - self._handed_out
        if self.at == self.per_rollout:
            self.rollout()
        epoch, within = divmod(self.at, config.minibatches * self.micro_steps)
        order = np.random.default_rng([config.seed, self.iteration, epoch]).permutation(config.minibatches)
        minibatch, micro = order[within // self.micro_steps], within % self.micro_steps
        self.at += 1
        batch = tuple(t.to(self.dist.device) for t in self.buffer[minibatch * self.micro_steps + micro])
        if self.ptx is not None:
            self._ptx_blocks = self._ptx_blocks or iter(self.ptx)
            batch += (blocks.stack(self._ptx_blocks, config.ptx_batch_size).to(self.dist.device),)
        self._handed_out = time.perf_counter()
        return batch

    def prompts_of(self, global_micro: int) -> list[list[int]]:
        """The prompts of a global micro-batch of this rollout batch: seeded passes over the prompts."""
        n, size = len(self.prompts), self.config.batch_size
        per_batch = self.config.minibatches * self.config.grad_accum * size
        out = []
        for g in range(self.iteration * per_batch + global_micro * size, self.iteration * per_batch
                       + (global_micro + 1) * size):
            epoch, at = divmod(g, n)
            out.append(self.prompts[np.random.default_rng([self.config.seed, epoch]).permutation(n)[at]])
        return out

    @torch.no_grad()
    def rollout(self) -> None:
        """Sample and score this rank's micro-batches of the next rollout batch."""
        config, dist, W = self.config, self.dist, self.dist.world_size
        self.buffer, stats = [], torch.zeros(4, dtype=torch.float64, device=dist.device)
        self.net.eval()
        for local in range(config.minibatches * self.micro_steps):
            j = (local // self.micro_steps) * config.grad_accum + dist.rank + W * (local % self.micro_steps)
            t0 = time.perf_counter()
            generator = torch.Generator(device=dist.device).manual_seed(_seed(config.seed, self.iteration, j))
            seqs = rollouts.sample(self.net.policy, self.prompts_of(j), max_new_tokens=config.max_new_tokens,
                                   stops=self.stops, pad_id=self.pad_id, generator=generator,
                                   temperature=config.temperature)
            t1 = time.perf_counter()
            logits, values, _ = self.net(seqs.ids)
            logp = rollouts.token_logprobs(logits, seqs.ids)
            ref_logp = rollouts.token_logprobs(self.reference(seqs.ids)[0], seqs.ids)
            score = rollouts.scores(self.reward_model, seqs)
            rewards, kl = kl_rewards(logp, ref_logp, seqs.actions, score, self.kl_coef)
            old_values = values[:, :-1] * seqs.actions
            advantages, returns = gae(rewards, old_values, seqs.actions, config.gamma, config.lam)
            self.buffer.append((seqs.ids, seqs.actions, logp, old_values, whiten(advantages, seqs.actions.float()),
                                returns))
            stats += torch.tensor([score.sum(), kl.sum(), seqs.lengths.sum(), len(score)], dtype=torch.float64,
                                  device=dist.device)
            self.seconds["generate_s"] += t1 - t0
            self.seconds["score_s"] += time.perf_counter() - t1
        self.net.train()
        total = dist.all_reduce(stats)
        answers = float(total[3])
        self.last = {"reward": float(total[0]) / answers, "kl": float(total[1]) / answers,
                     "answer_tokens": float(total[2]) / answers, "kl_coef": self.kl_coef}
        if config.target_kl is not None:  # the coefficient for the next batch
            self.kl_coef = adapt_kl_coef(self.kl_coef, self.last["kl"], config.target_kl, int(answers),
                                         config.kl_horizon)
        self.iteration += 1
        self.at = 0


# ---------------------------------------------------------------------------------------------------- the run
def open_blocks(corpus: str, block_size: int, split: str, seed: int, tokenizer, rank: int = 0, world_size: int = 1):
    """Pretraining blocks of a corpus folder (its weighted reader) or of a text file (character level), refused
    unless encoded with `tokenizer`."""
    source = {"text": [corpus]} if Path(corpus).is_file() else {"corpus": corpus}
    reader = blocks.open_reader(**source, block_size=block_size, split=split, seed=seed, rank=rank,
                                world_size=world_size)
    if blocks.tokenizer_of(reader).get_vocab() != tokenizer.get_vocab():
        raise TrainError(f"corpus: {corpus} was encoded with another tokenizer than the policy's")
    return reader


def read_prompts(path: str, tokenizer, limit: int, held_out: float, seed: int
                 ) -> tuple[list[tuple[list[dict], list[int]]], list[tuple[list[dict], list[int]]]]:
    """(train, held-out) prompts as (messages, token ids ending with `<|assistant|>`, at most `limit` of them),
    split by a seeded hash of each conversation (as the reward model's comparisons are)."""
    from corpusforge.feedback.app import read_prompts as read

    train, val = [], []
    for messages in read(path):
        ids = chat.render(messages, tokenizer, for_generation=True)[0][-limit:]
        (val if preferences.prompt_is_held_out(messages, held_out, seed) else train).append((messages, ids))
    return train, val


def train(config: PPOConfig, out_dir: str | os.PathLike, *, resume: bool = False, stop_at: int | None = None,
          console: Any = None) -> dict[str, Any]:
    """PPO (PPO-ptx with a corpus) from `config.policy` against `config.reward` on `config.prompts` into `out_dir`
    (or continue its checkpoint). Run under `torchrun` for DDP. Returns the summary."""
    from corpusforge.trainer.sft import load_tokenizer

    config.validate()
    out_dir = Path(out_dir)
    tokenizer = load_tokenizer(config.policy)
    special = chat.special_ids(tokenizer)
    stops, pad_id = (special[chat.END], special[chat.EOT]), special[chat.PAD]
    reference = load_gpt(config.policy, config.policy_checkpoint)
    reward_model = load_gpt(config.reward, "best", ScalarGPT)
    if reward_model.config.vocab_size != reference.config.vocab_size:
        raise TrainError(f"{config.reward} scores another vocabulary than {config.policy}")
    limit = reference.config.block_size - config.max_new_tokens
    if limit < 2:
        raise TrainError(f"max_new_tokens {config.max_new_tokens} leaves no room for a prompt in the policy's "
                         f"block_size {reference.config.block_size}")
    train_prompts, val_prompts = read_prompts(config.prompts, tokenizer, limit, config.held_out, config.seed)
    if not train_prompts or not val_prompts:
        raise TrainError(f"{len(train_prompts)} training and {len(val_prompts)} held-out prompts in "
                         f"{config.prompts}: need both (more prompts, or another held_out)")

    with loop.Run(config, out_dir, "ppo", resume=resume, stop_at=stop_at, console=console) as run:
        dist = run.dist
        reference.to(dist.device)
        reward_model.to(dist.device)
        net = ActorCritic(reference.config, reward_model.config)
        net.policy.load_state_dict(reference.state_dict())
        net.value.load_state_dict(reward_model.state_dict())
        ptx = None
        if config.ptx():
            ptx = open_blocks(config.corpus, reference.config.block_size, "train", config.seed, tokenizer, dist.rank,
                              dist.world_size)
        source = RolloutSource(net, reference, reward_model, [ids for _, ids in train_prompts], config, dist,
                               pad_id, stops, ptx)
        if run.data_state is not None:
            source.load_state_dict(run.data_state)
        run.write_files(tokenizer, {"train": dataclasses.asdict(config), "model": dataclasses.asdict(net.config),
                                    "value_model": dataclasses.asdict(reward_model.config)})
        measured = {"value_loss": [], "clip_fraction": [], "entropy": [], "ptx_loss": [], "policy_loss": []}

        def loss(model, batch) -> torch.Tensor:
            ids, actions, old_logp, old_values, advantages, returns, *ptx_blocks = batch
            logits, values, ptx_loss = model(ids, ptx_blocks[0] if ptx_blocks else None)
            mask = actions.float()
            pg, clip_fraction = policy_loss(rollouts.token_logprobs(logits, ids), old_logp, advantages, mask,
                                            config.clip_range)
            vf = value_loss(values[:, :-1], old_values, returns, mask, config.value_clip)
            with torch.no_grad():
                for name, value in (("value_loss", vf), ("clip_fraction", clip_fraction), ("ptx_loss", ptx_loss),
                                    ("policy_loss", pg), ("entropy", masked_mean(rollouts.entropy(logits), mask))):
                    measured[name].append(value.detach().float())
            return pg + config.vf_coef * vf + config.ptx() * ptx_loss

        def stats() -> dict[str, float]:
            means = torch.stack([torch.stack(v).mean() if v else torch.zeros((), device=dist.device)
                                 for v in measured.values()]).double()
            means = dist.all_reduce(means) / dist.world_size
            for v in measured.values():
                v.clear()
            return {**source.last, **dict(zip(measured, means.tolist())), **source.seconds}

        def evaluate(net: ActorCritic) -> dict[str, float]:
            result = evaluate_prompts(net.policy, reference, reward_model, val_prompts[:config.eval_prompts], tokenizer,
                                      config, dist, source.steps_done)
            if dist.is_main:
                with open(out_dir / "samples.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps(result) + "\n")
                for s in result["answers"]:
                    run.say(f"  [dim]{s['prompt'][-60:]!r}[/dim] -> {s['answer'][:100]!r} (reward {s['reward']:+.3f})")
                plot_rlhf(out_dir / "metrics.jsonl", out_dir / "rlhf.png", f"PPO on {Path(config.policy).name}")
            return {"neg_objective": -(result["reward"] - source.kl_coef * result["kl"])}

        if dist.is_main and not (resume and run.data_state is not None):
            (out_dir / "samples.jsonl").unlink(missing_ok=True)
        summary = run.train(
            net, source, loss=loss, evaluate=evaluate, stats=stats,
            tokens_per_step=config.batch_size * config.grad_accum * (
                round(np.mean([len(ids) for _, ids in train_prompts])) + config.max_new_tokens),
            title=f"PPO{'-ptx' if config.ptx() else ''} {Path(config.policy).name} against "
                  f"{Path(config.reward).name}: {net.policy.num_params() / 1e6:.2f}M + "
                  f"{net.value.num_params() / 1e6:.2f}M (value) parameters",
            meta={"eot_id": special[chat.EOT], "policy": str(config.policy), "reward": str(config.reward)},
            data={"train_prompts": len(train_prompts), "held_out_prompts": len(val_prompts)})
        if dist.is_main:
            plot_rlhf(out_dir / "metrics.jsonl", out_dir / "rlhf.png", f"PPO on {Path(config.policy).name}")
        return summary


@torch.no_grad()
def evaluate_prompts(policy: GPT, reference: GPT, reward_model: ScalarGPT, prompts, tokenizer, config: PPOConfig,
                     dist, step: int) -> dict[str, Any]:
    """This rank's share of the held-out prompts answered at the rollout temperature with a fixed seed: the mean
    reward, KL to the reference and answer length over all ranks, and the first `config.samples` answers."""
    special = chat.special_ids(tokenizer)
    mine = prompts[dist.rank::dist.world_size]
    totals = torch.zeros(4, dtype=torch.float64, device=dist.device)
    shown = []
    for start in range(0, len(mine), config.batch_size):
        chunk = mine[start:start + config.batch_size]
        generator = torch.Generator(device=dist.device).manual_seed(_seed(config.seed, 2**31, dist.rank, start))
        seqs = rollouts.sample(policy, [ids for _, ids in chunk], max_new_tokens=config.max_new_tokens,
                               stops=(special[chat.END], special[chat.EOT]), pad_id=special[chat.PAD],
                               generator=generator, temperature=config.temperature)
        score = rollouts.scores(reward_model, seqs)
        kl = rollouts.answer_kl(policy, reference, seqs)
        totals += torch.tensor([score.sum(), kl.sum(), seqs.lengths.sum(), len(chunk)], dtype=torch.float64,
                               device=dist.device)
        for (messages, _), answer, r in zip(chunk, seqs.answers, score.tolist()):
            if len(shown) < config.samples:
                shown.append({"prompt": messages[-1]["content"], "answer": decode(tokenizer, answer), "reward": r})
    totals = dist.all_reduce(totals)
    n = float(totals[3])
    return {"step": step, "reward": float(totals[0]) / n, "kl": float(totals[1]) / n,
            "answer_tokens": float(totals[2]) / n, "answers": shown}


def decode(tokenizer, answer: list[int]) -> str:
    """An answer's text, without the `<|end|>` or `<|endoftext|>` that closed it."""
    special = chat.special_ids(tokenizer)
    if answer and answer[-1] in (special[chat.END], special[chat.EOT]):
        answer = answer[:-1]
    return tokenizer.decode(answer)


def plot_rlhf(metrics_path: Path, png_path: Path, title: str) -> None:
    """Mean reward, KL to the reference and (PPO-ptx) the pretraining loss against steps, from `metrics.jsonl`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from corpusforge.runtime import atomic_path

    rows = [json.loads(line) for line in Path(metrics_path).read_text(encoding="utf-8").splitlines()
            if line.strip() and '"kind": "train"' in line]
    panels = [k for k in ("reward", "kl", "ptx_loss") if rows and any(r.get(k) for r in rows)]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    labels = {"reward": "mean reward", "kl": "KL to the SFT model (nats/answer)", "ptx_loss": "pretraining loss"}
    for ax, key in zip(axes[0], panels):
        ax.plot([r["step"] for r in rows], [r.get(key) for r in rows], marker=".")
        ax.set(xlabel="step", title=labels[key])
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
