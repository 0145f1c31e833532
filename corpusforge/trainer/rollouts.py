"""Answers sampled from a policy and what PPO needs to learn from them: `sample` (a batch of prompts of different
lengths answered at once with the key/value cache), `Sequences` (prompt + answer, right-padded, with the positions
where the answer's tokens are chosen), `token_logprobs` and `scores` (the reward model read at each answer's end).
`eval compare` uses the same pieces, so what PPO optimizes is what the comparison measures.

Layout of a batch of B sequences of length T: `ids` (B, T) is prompt then answer (its closing `<|end|>` included
when sampled), then padding; `actions` (B, T - 1) is True at position t when `ids[:, t + 1]` is an answer token, so
`token_logprobs(logits, ids)[:, t]` is the log-probability of choosing it. Right padding changes nothing before it
(attention is causal), so the policy, the reference, the value model and the reward model read the batch as it is.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from corpusforge.trainer.model import GPT, KVCache, ScalarGPT


@dataclasses.dataclass
class Sequences:
    """Prompts with their sampled answers, right-padded (see the module doc)."""

    ids: torch.Tensor  # (B, T)
    actions: torch.Tensor  # (B, T - 1) bool
    last: torch.Tensor  # (B,) the position of each answer's last token (where the reward model reads it)
    answers: list[list[int]]  # each answer's token ids, without padding

    @property
    def lengths(self) -> torch.Tensor:
        """Answer lengths in tokens (B,)."""
        return self.actions.sum(dim=1)


def prompt_ids(prompts: list[list[int]], limit: int) -> list[list[int]]:
    """Each prompt's last `limit` tokens (a long conversation keeps its end, where the question is)."""
    return [p[-limit:] for p in prompts]


@torch.no_grad()
def sample(policy: GPT, prompts: list[list[int]], *, max_new_tokens: int, stops: tuple[int, ...], pad_id: int,
           generator: torch.Generator, temperature: float = 1.0, use_cache: bool = True) -> Sequences:
    """Answer `prompts` (token ids, each ending with `<|assistant|>`) in one batch: left-padded, with the cache
    told where each row starts (so a row computes what it computes alone), sampled until every row has produced a
    stop token or `max_new_tokens`. `use_cache=False` recomputes the whole context per token (the benchmark's
    baseline; padding is then attended to, so only the speed compares)."""
    device = policy.wte.weight.device
    width = max(len(p) for p in prompts)
    pad = torch.tensor([width - len(p) for p in prompts], device=device)
    idx = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], dtype=torch.long, device=device)
    cache = KVCache(policy.config, len(prompts), device, policy.wte.weight.dtype, left_pad=pad) if use_cache \
        else None
    steps = list(policy.stream(idx, max_new_tokens, temperature=temperature, generator=generator, stop_token=stops,
                               cache=cache))
    new = torch.cat(steps, dim=1).tolist()
    answers = []
    for row in new:
        end = next((i for i, t in enumerate(row) if t in stops), None)
        answers.append(row[:end + 1] if end is not None else row)
    return pack(prompts, answers, pad_id, device)


def pack(prompts: list[list[int]], answers: list[list[int]], pad_id: int, device) -> Sequences:
    """Prompts and answers as one right-padded batch."""
    full = [p + a for p, a in zip(prompts, answers)]
    width = max(len(s) for s in full)
    ids = torch.full((len(full), width), pad_id, dtype=torch.long)
    actions = torch.zeros((len(full), width - 1), dtype=torch.bool)
    for row, (p, s) in enumerate(zip(prompts, full)):
        ids[row, :len(s)] = torch.tensor(s)
        actions[row, len(p) - 1:len(s) - 1] = True
    last = torch.tensor([len(s) - 1 for s in full])
    return Sequences(ids.to(device), actions.to(device), last.to(device), answers)


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[:, t + 1]) under `logits[:, t]`, (B, T - 1), in float32."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    return logp.gather(-1, ids[:, 1:, None]).squeeze(-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the next-token distribution at every position but the last, (B, T - 1)."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def values(value_model: ScalarGPT, ids: torch.Tensor) -> torch.Tensor:
    """The value model's head at every position (B, T), in float32."""
    return value_model.head(value_model.hidden(ids)).squeeze(-1).float()


@torch.no_grad()
def scores(reward_model: ScalarGPT, seqs: Sequences) -> torch.Tensor:
    """The reward model's score of each answer, read at its last token (B,)."""
    return reward_model(seqs.ids, seqs.last)


@torch.no_grad()
def answer_kl(policy: GPT, reference: GPT, seqs: Sequences) -> torch.Tensor:
    """Per answer, the sum over its tokens of log pi(token) - log pi_ref(token): on answers sampled from `policy`,
    an unbiased estimate of KL(policy || reference) for the prompt (B,)."""
    diff = token_logprobs(policy(seqs.ids)[0], seqs.ids) - token_logprobs(reference(seqs.ids)[0], seqs.ids)
    return (diff * seqs.actions).sum(dim=1)
