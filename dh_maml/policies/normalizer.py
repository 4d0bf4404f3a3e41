"""Observations standardised by running statistics of the observations a policy has learned from.

Why: the MLSH code's sub-policies see their inputs this way (baselines'
running mean and standard deviation, clipped to ±5). Without it a MuJoCo
body's inputs span very different scales (the Ant's torso position runs to 5
and beyond, its joint velocities to ±10, its joint angles stay within ±1), and
a tanh network starts out driven by the largest of them.

The statistics are buffers: they travel with the weights to the observers and
into checkpoints, and only whoever updates the policy changes them
(``fold``), after its update, so that an update computes its ratios under the
statistics its samples were drawn with.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

CLIP = 5.0
MIN_VAR = 1e-2  # baselines' floor: a dimension that barely varies (reset noise) is not blown up to unit noise


class RunningNormalizer(nn.Module):
    """(x - mean) / std, clipped to ±5; before any ``fold`` mean 0 and std 1 (only the clip acts)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    def forward(self, obs: Tensor) -> Tensor:
        std = self.var.clamp(min=MIN_VAR).sqrt()
        return ((obs - self.mean.to(obs.dtype)) / std.to(obs.dtype)).clamp(-CLIP, CLIP)

    @torch.no_grad()
    def fold(self, obs: Tensor) -> None:
        """Merge a batch [M, dim] into the statistics (Chan et al.'s pairwise update: the same as computing them
        over every observation folded so far at once, to float64 rounding)."""
        batch = obs.reshape(-1, self.mean.numel()).to(torch.float64)
        n = batch.shape[0]
        if n == 0:
            return
        mean, var = batch.mean(0), batch.var(0, unbiased=False)
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta.square() * self.count * n / total
        self.mean += delta * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)
