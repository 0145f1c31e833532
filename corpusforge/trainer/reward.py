"""The reward model: an SFT run and human feedback in, a model that scores answers the way the labelers ranked them.
The third user of the training core (`loop`); read it top to bottom.

Follow the data: feedback stores or exports -> `preferences.read_feedback` -> a split by prompt (held-out prompts
are never trained on) -> batch elements: one comparison = its K answers, each rendered after the conversation by
the chat template -> the loop, from the SFT run's weights with a scalar head (`model.ScalarGPT`) read at each
answer's closing `<|end|>`.

The loss is InstructGPT's (Ouyang et al. 2022, eq. 1): for a comparison, the mean over its pairs of
-log sigmoid(r(x, y_better) - r(x, y_worse)), all K-choose-2 pairs of a prompt in one batch element (tied pairs are
dropped, so the mean is over the untied ones); the batch loss is the mean over elements. A thumbs up/down on a reply
is one more element with a pointwise term, `rating_weight` x -log sigmoid(s x r(x, y)) with s = +1 / -1: a liked
reply is pushed above the reward's zero, a disliked one below it. One epoch by default (InstructGPT: more overfits).

After training, the best weights (lowest held-out pairwise loss) are normalized: the head's bias is shifted so the
demonstrations (SFT data: the stores' written replies, or `--demos` files) score 0 on average; with none at hand, the
top-ranked training answers stand in, and the summary says so. The run folder also holds `accuracy.json` and
`accuracy.png`: held-out pairwise accuracy against the number of training comparisons seen.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from corpusforge.options import option
from corpusforge.runtime import write_json_atomic
from corpusforge.trainer import checkpoint, loop
from corpusforge.trainer.data import chat, preferences
from corpusforge.trainer.loop import TrainError
from corpusforge.trainer.model import GPTConfig, ScalarGPT


@dataclasses.dataclass
class RewardConfig(loop.RunConfig):
    """`corpusforge train reward` settings: the core's and what to learn from. `max_steps` 0: `epochs` passes."""

    base: str = dataclasses.field(default="", metadata=option("the SFT run folder to start from (its best weights)"))
    feedback: list[str] = dataclasses.field(default_factory=list, metadata=option(
        "feedback stores (.sqlite, postgresql://) or `feedback export` folders"))
    demos: list[str] = dataclasses.field(default_factory=list, metadata=option(
        "conversation files whose replies score 0 on average after training (default: the stores' demonstrations)"))
    base_checkpoint: Literal["best", "last"] = "best"
    epochs: float = dataclasses.field(default=1.0, metadata=option("passes over the comparisons"))
    held_out: float = 0.1  # share of prompts held out for the pairwise accuracy
    rating_weight: float = 0.5  # weight of a thumbs up/down's pointwise term against a comparison's loss
    batch_size: int = 8  # batch elements (comparisons or ratings) per micro-batch
    max_steps: int = 0
    lr: float = 1e-4
    min_lr: float = 1e-5
    warmup_steps: int = 5
    eval_interval: int = 10
    checkpoint_interval: int = 50

    RESUMABLE: ClassVar[frozenset[str]] = loop.RunConfig.RESUMABLE

    def validate(self) -> None:
        if not self.base:
            raise ValueError("base: name the SFT run folder the reward model starts from (--base RUN_DIR)")
        if not self.feedback:
            raise ValueError("feedback: name at least one feedback store or export folder (--feedback DB_OR_DIR)")
        if not self.epochs > 0 or not 0 < self.held_out < 1 or self.rating_weight < 0 or self.max_steps < 0:
            raise ValueError("epochs > 0, held_out in (0, 1), rating_weight >= 0 and max_steps >= 0 (0: from epochs)")
        loop.RunConfig.validate(dataclasses.replace(self, max_steps=self.max_steps or self.warmup_steps + 1))


def make_config(out_dir: str | os.PathLike, values: dict[str, Any], *, resume: bool = False) -> RewardConfig:
    """RewardConfig's defaults or, resuming, the run's config; then `values` on top."""
    return loop.make_config(RewardConfig, "reward", out_dir, values, {}, resume=resume)


# -------------------------------------------------------------------------------------------------- the loss
def collate(elements: list[preferences.Element], pad_id: int) -> tuple[torch.Tensor, ...]:
    """Batch elements as tensors: ids (N, T) right-padded, last (N,) the position each reward is read at, element
    (N,) which element a sequence belongs to, rank (N,) its rank (-1 for a rating) and rating (N,) (0 for a
    comparison's answers)."""
    rows = [(seq, e, -1 if el.ranks is None else el.ranks[i], el.rating or 0)
            for e, el in enumerate(elements) for i, seq in enumerate(el.sequences)]
    width = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, (seq, *_rest) in enumerate(rows):
        ids[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
    last, element, rank, rating = (torch.tensor(c, dtype=torch.long) for c in zip(
        *[(len(seq) - 1, e, r, s) for seq, e, r, s in rows]))
    return ids, last, element, rank, rating


def preference_loss(rewards: torch.Tensor, element: torch.Tensor, rank: torch.Tensor, rating: torch.Tensor,
                    rating_weight: float) -> torch.Tensor:
    """InstructGPT's loss over a batch: per comparison element the mean over its untied (better, worse) pairs of
    -log sigmoid(r_better - r_worse); per rating element rating_weight x -log sigmoid(s x r); the mean over
    elements. Elements with nothing to learn (only ties) count in neither sum nor mean."""
    same = element[:, None] == element[None, :]
    better = same & (rank[:, None] >= 0) & (rank[:, None] < rank[None, :])  # [i, j]: i ranked above j
    n_elements = int(element.max()) + 1
    pairs_per_element = torch.zeros(n_elements, device=rewards.device).index_add_(
        0, element, better.sum(dim=1).float())
    weight = better.float() / pairs_per_element[element].clamp(min=1)[:, None]
    pair_term = (-F.logsigmoid(rewards[:, None] - rewards[None, :]) * weight).sum()
    rated = rating != 0
    rating_term = rating_weight * (-F.logsigmoid(rating[rated].float() * rewards[rated])).sum()
    counted = int((pairs_per_element > 0).sum()) + int(rated.sum())
    return (pair_term + rating_term) / max(counted, 1)


@torch.no_grad()
def score(net: ScalarGPT, sequences: list[list[int]], pad_id: int, device, batch_size: int = 32) -> torch.Tensor:
    """Rewards of token sequences (each read at its last token), in eval mode."""
    out = []
    for start in range(0, len(sequences), batch_size):
        chunk = [preferences.Element([s], rating=1) for s in sequences[start:start + batch_size]]
        ids, last, *_ = collate(chunk, pad_id)
        out.append(net(ids.to(device), last.to(device)).cpu())
    return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def pairwise(net: ScalarGPT, elements: list[preferences.Element], pad_id: int, device, rating_weight: float
             ) -> dict[str, float]:
    """Held-out pairwise loss, accuracy (share of untied pairs the model orders as the labeler did; a reward tie
    counts half) and the number of pairs."""
    loss_sum, correct, pairs, counted = 0.0, 0.0, 0, 0
    for start in range(0, len(elements), 16):
        chunk = elements[start:start + 16]
        ids, last, element, rank, rating = collate(chunk, pad_id)
        rewards = net(ids.to(device), last.to(device)).cpu()
        n = sum(1 for el in chunk if el.pairs() or el.rating)
        loss_sum += float(preference_loss(rewards, element, rank, rating, rating_weight)) * n
        counted += n
        offset = 0
        for el in chunk:
            r = rewards[offset:offset + len(el.sequences)]
            offset += len(el.sequences)
            for i, j in el.pairs():
                correct += 1.0 if r[i] > r[j] else 0.5 if r[i] == r[j] else 0.0
                pairs += 1
    return {"loss": loss_sum / max(counted, 1), "accuracy": correct / max(pairs, 1), "pairs": pairs}


# ---------------------------------------------------------------------------------------------------- the run
class ElementStream:
    """Training elements in a seeded order per epoch, rank r of `world_size` taking every world_size-th one;
    resumable by its position."""

    def __init__(self, elements: list[preferences.Element], *, seed: int, rank: int = 0, world_size: int = 1):
        self.elements, self.seed, self.rank, self.world_size = elements, seed, rank, world_size
        self.next = 0  # elements this rank has taken
        self.comparisons = 0  # of which comparisons (the rest are ratings)

    def take(self, n: int) -> list[preferences.Element]:
        out = []
        for _ in range(n):
            i = self.rank + self.next * self.world_size
            epoch, at = divmod(i, len(self.elements))
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.elements))
            out.append(self.elements[order[at]])
            self.next += 1
            self.comparisons += out[-1].ranks is not None
        return out

    def state_dict(self) -> dict:
        return {"next": self.next, "comparisons": self.comparisons}

    def load_state_dict(self, state: dict) -> None:
        self.next, self.comparisons = int(state["next"]), int(state["comparisons"])


def train(config: RewardConfig, out_dir: str | os.PathLike, *, resume: bool = False, stop_at: int | None = None,
          console: Any = None) -> dict[str, Any]:
    """Train a reward model from `config.base` on `config.feedback` into `out_dir` (or continue its checkpoint),
    normalize its best weights on the demonstrations, and write the accuracy curve. Returns the summary."""
    from corpusforge.mix.tokenizer import load as load_tokenizer

    config.validate()
    base, out_dir = Path(config.base), Path(out_dir)
    tokenizer = load_tokenizer(base / "tokenizer.json")  # special-token spellings in text stay plain text
    pad_id = chat.special_ids(tokenizer)[chat.PAD]
    base_meta, weights = checkpoint.load_weights(checkpoint.path_in(base, config.base_checkpoint))
    gpt_config = GPTConfig(**base_meta["model_config"])

    # feedback: read, split by prompt, rendered; ties and unusable answers dropped
    feedback = preferences.read_feedback(config.feedback)
    if config.demos:
        feedback.demonstrations += [c["messages"] for c in chat.read_conversations(config.demos)]
    train_set, val_set, counts = preferences.elements(feedback, tokenizer, gpt_config.block_size,
                                                      held_out=config.held_out, seed=config.seed)
    if not train_set or not val_set:
        raise TrainError(f"{len(train_set)} training and {len(val_set)} held-out element(s) in {config.feedback}: "
                         "need both (more comparisons, or another held_out)")
    per_step = config.batch_size * config.grad_accum
    config = loop.with_epoch_steps(config, len(train_set), per_step)
    mean_tokens = sum(len(s) for el in train_set for s in el.sequences) / len(train_set)
    curve: list[dict[str, float]] = []

    with loop.Run(config, out_dir, "reward", resume=resume, stop_at=stop_at, console=console) as run:
        dist = run.dist
        stream = ElementStream(train_set, seed=config.seed, rank=dist.rank, world_size=dist.world_size)
        if run.data_state is not None:
            stream.load_state_dict(run.data_state)
        if resume and (out_dir / "accuracy.json").exists():
            curve = json.loads((out_dir / "accuracy.json").read_text(encoding="utf-8"))["curve"]
        with torch.random.fork_rng():  # the new head's initial weights depend on the seed alone
            torch.manual_seed(config.seed)
            net = ScalarGPT(gpt_config)
        missing = net.load_state_dict(weights, strict=False).missing_keys
        assert set(missing) <= {"head.weight", "head.bias"}, missing
        run.write_files(tokenizer, {"train": dataclasses.asdict(config), "model": dataclasses.asdict(gpt_config)})
        batches = loop.ReadAhead(lambda: collate(stream.take(config.batch_size), pad_id), stream.state_dict,
                                 dist.device)

        def loss(model, batch) -> torch.Tensor:
            ids, last, element, rank, rating = batch
            return preference_loss(model(ids, last), element, rank, rating, config.rating_weight)

        def evaluate(net: ScalarGPT) -> dict[str, float]:
            with run.amp:
                result = pairwise(net, val_set[dist.rank::dist.world_size], pad_id, dist.device,
                                  config.rating_weight)
            sums = dist.all_reduce(torch.tensor([result["loss"] * result["pairs"], result["accuracy"] *
                                                 result["pairs"], result["pairs"]], dtype=torch.float64,
                                                device=dist.device))
            pairs = max(float(sums[2]), 1.0)
            seen = batches.position  # the data position after the last batch trained on
            curve.append({"step": seen["next"] * dist.world_size // per_step,
                          "comparisons_seen": seen["comparisons"] * dist.world_size,
                          "accuracy": float(sums[1]) / pairs})
            return {"pairwise": float(sums[0]) / pairs}

        data = {**counts, "train_elements": len(train_set), "held_out_elements": len(val_set),
                "demonstrations": len(feedback.demonstrations)}
        summary = run.train(
            net, batches, loss=loss, evaluate=evaluate,
            tokens_per_step=round(per_step * mean_tokens),
            title=f"{base.name} + {counts['comparisons']:,} comparisons, {counts['ratings']:,} ratings: "
                  f"{net.num_params() / 1e6:.2f}M parameters",
            meta={"eot_id": chat.special_ids(tokenizer)[chat.EOT], "base": str(base)}, data=data)
        if dist.is_main:
            summary.update(normalize(out_dir, feedback, train_set, tokenizer, gpt_config, pad_id, dist.device))
            at_best = [p for p in curve if p["step"] == summary["best_step"]]  # the weights kept are the best's
            summary["held_out_accuracy"] = (at_best or curve)[-1]["accuracy"]
            write_json_atomic(out_dir / "accuracy.json", {"curve": curve, "held_out_pairs": counts["pairs_held_out"]})
            plot_accuracy(curve, out_dir / "accuracy.png", title=f"reward model on {base.name}")
            write_json_atomic(out_dir / "_summary.json", summary)
            run.say(f"held-out pairwise accuracy {summary['held_out_accuracy']:.3f} on "
                    f"{counts['pairs_held_out']:,} pairs; demonstrations' mean reward "
                    f"{summary['normalization']['mean_before']:+.4f} -> 0 ({summary['normalization']['reference']})")
        return summary


def normalize(out_dir: Path, feedback: preferences.Feedback, train_set: list[preferences.Element], tokenizer,
              gpt_config: GPTConfig, pad_id: int, device) -> dict[str, Any]:
    """Shift the best weights' head bias so the demonstrations score 0 on average (InstructGPT); without
    demonstrations, the top-ranked training answers. Rewrites best.safetensors; returns what was done."""
    meta, weights = checkpoint.load_weights(checkpoint.path_in(out_dir, "best"))
    net = ScalarGPT(gpt_config)
    net.load_state_dict(weights)
    net.to(device).eval()
    sequences = list(preferences.demonstration_sequences(feedback, tokenizer, gpt_config.block_size))
    reference = f"{len(sequences)} demonstrations"
    if not sequences:
        sequences = [el.sequences[el.ranks.index(0)] for el in train_set if el.ranks is not None]
        reference = f"no demonstrations: the top-ranked answers of {len(sequences)} training comparisons"
    mean = float(score(net, sequences, pad_id, device).mean())
    with torch.no_grad():
        net.head.bias -= mean
    info = {"mean_before": mean, "reference": reference}
    checkpoint.save(checkpoint.path_in(out_dir, "best"), net, None, {**meta, "normalization": info})
    return {"normalization": info}


def plot_accuracy(curve: list[dict[str, float]], png: Path, title: str) -> None:
    """Held-out pairwise accuracy against the training comparisons seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from corpusforge.runtime import atomic_path

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot([p["comparisons_seen"] for p in curve], [p["accuracy"] for p in curve], marker="o")
    ax.axhline(0.5, color="grey", linestyle=":", label="chance")
    ax.set(xlabel="training comparisons seen", ylabel="held-out pairwise accuracy", title=title, ylim=(0, 1))
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def load(run_dir: str | os.PathLike, device: str = "cpu") -> tuple[ScalarGPT, dict[str, Any]]:
    """A trained reward model (its normalized best weights), in eval mode, and its metadata."""
    meta, weights = checkpoint.load_weights(checkpoint.path_in(run_dir, "best"))
    net = ScalarGPT(GPTConfig(**meta["model_config"]))
    net.load_state_dict(weights)
    return net.to(device).eval(), meta
