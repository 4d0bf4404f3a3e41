"""EpisodeBatch: task-major, time-major padded tensors with a mask, plus returns and GAE.

Every tensor is laid out [tasks, T, episodes, ...]: the task axis lets the learner
adapt and score a whole group of tasks in one batched graph, and the time axis
second keeps the backward recursions of returns and GAE a loop over T with
whole-batch tensor operations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

TIME = 1  # the time axis of every [tasks, T, episodes] tensor


@dataclass
class EpisodeBatch:
    observations: Tensor  # [N, T, E, obs_dim] float32
    actions: Tensor  # [N, T, E, act_dim] float32, or [N, T, E] int64 for discrete actions
    rewards: Tensor  # [N, T, E] float32
    mask: Tensor  # [N, T, E] float32: 1 where the step belongs to an episode
    advantages: Tensor | None = None  # [N, T, E] float32, filled on the sampler side
    successes: Tensor | None = None  # [N, T, E] float32: 1 at steps the family reports a success (Meta-World)

    @property
    def num_tasks(self) -> int:
        return self.mask.shape[0]

    @property
    def lengths(self) -> Tensor:
        """Episode lengths, [N, E]."""
        return self.mask.sum(TIME).long()

    @property
    def num_steps(self) -> int:
        return int(self.mask.sum().item())

    def episode_returns(self) -> Tensor:
        """Undiscounted return of each episode, [N, E]."""
        return (self.rewards * self.mask).sum(TIME)

    def task_returns(self) -> Tensor:
        """Mean undiscounted return of each task's episodes, [N]."""
        return self.episode_returns().mean(-1)

    def task_success_rates(self) -> Tensor | None:
        """Share of each task's episodes that succeeded at some step, [N]; None where the family reports none."""
        if self.successes is None:
            return None
        return (self.successes * self.mask).amax(TIME).mean(-1)

    def _map(self, fn: Callable[[Tensor], Tensor]) -> EpisodeBatch:
        return replace(
            self, **{f.name: fn(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None}
        )

    def task(self, i: int) -> EpisodeBatch:
        """Task ``i`` alone, still with a task axis of size 1 and trimmed to its own longest episode."""
        return self.tasks(i, i + 1)

    def tasks(self, start: int, stop: int) -> EpisodeBatch:
        """Tasks ``start`` to ``stop - 1``, trimmed to their longest episode."""
        return self._map(lambda v: v[start:stop]).trimmed()

    def first_episodes(self, fraction: float) -> EpisodeBatch:
        """Each task's first ceil(``fraction`` x episodes) episodes (at least one), trimmed. A batch's episodes
        are independent draws (each sub-environment its own seed and action noise), so its first few are a
        uniform random subsample, and the same one on every rerun."""
        k = max(1, math.ceil(fraction * self.mask.shape[-1]))
        return self if k == self.mask.shape[-1] else self._map(lambda v: v[:, :, :k]).trimmed()

    def trimmed(self) -> EpisodeBatch:
        """Drop trailing time steps where no episode is alive (compact copies, cheap to send)."""
        t = int(self.lengths.max().item()) if self.mask.numel() else 0
        if t == self.mask.shape[TIME]:
            return self
        return self._map(lambda v: v[:, :t].contiguous())

    def to(self, device: torch.device | str) -> EpisodeBatch:
        return self._map(lambda v: v.to(device))


def concat_tasks(batches: list[EpisodeBatch]) -> EpisodeBatch:
    """Join batches along the task axis, padding time to the longest."""
    t = max(b.mask.shape[TIME] for b in batches)

    def pad(v: Tensor) -> Tensor:
        if v.shape[TIME] == t:
            return v
        shape = list(v.shape)
        shape[TIME] = t - v.shape[TIME]
        return torch.cat([v, v.new_zeros(shape)], dim=TIME)

    names = [f.name for f in fields(EpisodeBatch) if getattr(batches[0], f.name) is not None]
    return EpisodeBatch(**{k: torch.cat([pad(getattr(b, k)) for b in batches]) for k in names})


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """R_t = sum_k gamma^k r_{t+k} within each episode, zero on padding."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[TIME] - 1, -1, -1):
        running = (rewards[:, t] + gamma * running) * mask[:, t]
        returns[:, t] = running
    return returns


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> Tensor:
    """Generalised advantage estimates; the value after an episode's last step is 0."""
    values = values * mask
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=TIME)
    deltas = (rewards + gamma * next_values - values) * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[TIME] - 1, -1, -1):
        running = (deltas[:, t] + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages


def episode_weights(mask: Tensor) -> Tensor:
    """Per task, weights summing to 1 that give each episode an equal share, split evenly over its steps:
    the weighting of ``masked_mean``, as one weight per step."""
    return mask / mask.sum(TIME, keepdim=True).clamp(min=1.0) / mask.shape[-1]


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Per task: mean over time within each episode, then over episodes (the reference weighting); [N]."""
    return (episode_weights(mask) * x).sum((TIME, -1))


def normalize(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """Per task: zero mean, unit variance under the episode weighting; padding stays zero.

    Each episode counts equally, as in the losses. Weighting every step equally instead lets an
    episode that ends within a few steps (reaching the goal) barely move the statistics while the
    losses give its steps up to T times the weight: its large advantages then dominate an inner step.
    """
    w = episode_weights(mask)
    dims = tuple(range(1, mask.dim()))
    mean = (w * x).sum(dims, keepdim=True)
    var = (w * (x - mean) ** 2).sum(dims, keepdim=True)
    return (x - mean) / (var.sqrt() + eps) * mask
