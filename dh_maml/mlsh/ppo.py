"""PPO (clipped surrogate and value regression) as the MLSH paper's code uses it: several epochs of
minibatch Adam steps over one batch of samples, advantages normalised per batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Samples:
    """Flat samples for one PPO update: what was observed, done, and how good it turned out."""

    obs: Tensor  # [M, obs_dim]
    actions: Tensor  # [M, ...]
    old_log_probs: Tensor  # [M], under the policy that acted
    advantages: Tensor  # [M]
    returns: Tensor  # [M], the value targets (advantage + value prediction, TD(λ))

    def __len__(self) -> int:
        return self.obs.shape[0]

    def take(self, idx: Tensor) -> Samples:
        return Samples(
            self.obs[idx], self.actions[idx], self.old_log_probs[idx], self.advantages[idx], self.returns[idx]
        )


@dataclass
class PPOLoss:
    policy: Tensor  # the negated clipped surrogate
    value: Tensor  # mean squared error of the value prediction
    clip_fraction: float  # share of samples whose ratio left [1 - clip, 1 + clip]

    @property
    def total(self) -> Tensor:
        return self.policy + self.value


def ppo_loss(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, values: Tensor, returns: Tensor, clip: float
) -> PPOLoss:
    """-mean(min(r A, clip(r, 1 - ε, 1 + ε) A)) with r = π/π_old, and mean((V - R)²)."""
    ratio = torch.exp(log_probs - old_log_probs)
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1.0 - clip, 1.0 + clip) * advantages)
    clipped = ((ratio - 1.0).abs() > clip).float().mean().item()
    return PPOLoss(-surrogate.mean(), (values - returns).pow(2).mean(), clipped)


def normalized(advantages: Tensor, eps: float = 1e-8) -> Tensor:
    return (advantages - advantages.mean()) / (advantages.std(unbiased=False) + eps)


def ppo_update(
    evaluate: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    samples: Samples,
    clip: float,
    epochs: int,
    minibatch: int,
    generator: torch.Generator,
) -> PPOLoss:
    """``epochs`` passes over ``samples`` in shuffled minibatches of ``minibatch``; ``evaluate(obs, actions)``
    gives (log-probabilities, values) under the current parameters. Returns the last minibatch's loss."""
    if len(samples) == 0 or epochs < 1 or minibatch < 1:
        raise ValueError(
            f"ppo_update: needs samples, epochs >= 1 and minibatch >= 1 (got {len(samples)} samples, "
            f"{epochs} epochs, minibatch {minibatch})"
        )
    samples = Samples(
        samples.obs, samples.actions, samples.old_log_probs, normalized(samples.advantages), samples.returns
    )
    for _ in range(epochs):
        order = torch.randperm(len(samples), generator=generator)
        for idx in order.split(minibatch):
            part = samples.take(idx)
            log_probs, values = evaluate(part.obs, part.actions)
            loss = ppo_loss(log_probs, part.old_log_probs, part.advantages, values, part.returns, clip)
            optimizer.zero_grad(set_to_none=True)
            loss.total.backward()
            optimizer.step()
    return loss
