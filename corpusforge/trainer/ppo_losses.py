"""PPO's pieces as pure functions over small tensors (each checked against a hand computation in the tests): the
KL-penalized per-token rewards, generalized advantage estimation, whitening, the clipped policy and value losses,
and the adaptive KL controller. Tensors are (B, T - 1) over the positions where answer tokens are chosen (`actions`,
see `rollouts`)."""

from __future__ import annotations

import numpy as np
import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def kl_rewards(logp: torch.Tensor, ref_logp: torch.Tensor, actions: torch.Tensor, score: torch.Tensor,
               kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token rewards, per-token KL) over action positions (B, T - 1): -kl_coef x (log pi - log pi_ref) at
    every answer token, and the reward model's `score` added at each answer's last token."""
    kl = (logp - ref_logp) * actions
    rewards = -kl_coef * kl
    last = actions.long().cumsum(dim=1).argmax(dim=1)  # the first position where the count of actions peaks
    rewards[torch.arange(len(score), device=score.device), last] += score
    return rewards, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, actions: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) by generalized advantage estimation over each row's answer tokens: delta_t =
    r_t + gamma V_{t+1} - V_t with V = 0 after the answer's last token, A_t = delta_t + gamma lam A_{t+1}; zero
    outside the answer. `values` (B, T - 1) is the value at each action's position."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    mask = actions.float()
    for t in reversed(range(rewards.shape[1])):
        follows = mask[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        next_value = values[:, t + 1] * follows if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running * follows
        advantages[:, t] = running * mask[:, t]
    return advantages, (advantages + values) * mask


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`x` shifted and scaled to mean 0 and variance 1 over the masked entries (zero elsewhere)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(PPO's clipped surrogate loss, the share of tokens where the clip was active): the mean over answer tokens
    of max(-A r, -A clip(r, 1 - clip, 1 + clip)), r = exp(logp - old_logp)."""
    ratio = torch.exp(logp - old_logp)
    unclipped, clipped = -advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip)
    return masked_mean(torch.maximum(unclipped, clipped), mask), masked_mean((clipped > unclipped).float(), mask)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float) -> torch.Tensor:
    """The clipped value loss: the mean over answer tokens of 0.5 max((V - R)^2, (V_old + clip(V - V_old) - R)^2)."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


def adapt_kl_coef(kl_coef: float, kl: float, target: float, answers: int, horizon: int) -> float:
    """Ziegler et al.'s proportional controller: kl_coef x (1 + clip(KL / target - 1, -0.2, 0.2) x n / horizon)."""
    return kl_coef * (1 + float(np.clip(kl / target - 1, -0.2, 0.2)) * answers / horizon)
