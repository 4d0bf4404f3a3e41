"""EpisodeBatch: time-major padded tensors with a mask, plus returns and GAE.

Time-major [T, B] layout keeps the backward recursions of returns and GAE a loop
over T with whole-batch tensor ops, and splits by task are views on B.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor


@dataclass
class EpisodeBatch:
    observations: Tensor  # [T, B, obs_dim] float32
    actions: Tensor  # [T, B, act_dim] float32, or [T, B] int64 for discrete actions
    rewards: Tensor  # [T, B] float32
    mask: Tensor  # [T, B] float32: 1 where the step belongs to an episode
    advantages: Tensor | None = None  # [T, B] float32, filled by the sampler side

    @property
    def lengths(self) -> Tensor:
        return self.mask.sum(0).long()

    @property
    def num_episodes(self) -> int:
        return self.mask.shape[1]

    @property
    def num_steps(self) -> int:
        return int(self.mask.sum().item())

    def episode_returns(self) -> Tensor:
        """Undiscounted return of each episode, [B]."""
        return (self.rewards * self.mask).sum(0)

    def split(self, n: int) -> list["EpisodeBatch"]:
        """``n`` equal batches along the episode axis (task i owns episodes i*B/n ... (i+1)*B/n)."""
        parts = {f.name: getattr(self, f.name) for f in fields(self)}
        chunks = {k: (v.chunk(n, dim=1) if v is not None else [None] * n) for k, v in parts.items()}
        return [EpisodeBatch(**{k: chunks[k][i] for k in parts}).trimmed() for i in range(n)]

    def trimmed(self) -> "EpisodeBatch":
        """Drop trailing time steps where no episode is alive."""
        t = int(self.lengths.max().item()) if self.mask.numel() else 0
        if t == self.mask.shape[0]:
            return self
        return replace(self, **{f.name: getattr(self, f.name)[:t] for f in fields(self)
                                if getattr(self, f.name) is not None})

    def to(self, device: torch.device | str) -> "EpisodeBatch":
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)
                                if getattr(self, f.name) is not None})


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """R_t = sum_k gamma^k r_{t+k} within each episode, zero on padding."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = (rewards[t] + gamma * running) * mask[t]
        returns[t] = running
    return returns


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> Tensor:
    """Generalised advantage estimates; the value after an episode's last step is 0."""
    values = values * mask
    next_values = torch.cat([values[1:], torch.zeros_like(values[:1])], dim=0)
    deltas = (rewards + gamma * next_values - values) * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = (deltas[t] + gamma * lam * running) * mask[t]
        advantages[t] = running
    return advantages


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over time within each episode, then over episodes (as the reference implementation weights it)."""
    per_episode = (x * mask).sum(0) / mask.sum(0).clamp(min=1.0)
    return per_episode.mean()


def normalize(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """Zero mean, unit variance over the unmasked entries; padding stays zero."""
    n = mask.sum().clamp(min=1.0)
    mean = (x * mask).sum() / n
    var = (((x - mean) * mask) ** 2).sum() / n
    return (x - mean) / (var.sqrt() + eps) * mask
