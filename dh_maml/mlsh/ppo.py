"""PPO (clipped surrogate and value regression) as the MLSH paper's code uses it: several epochs of
minibatch Adam steps over one batch of samples, advantages normalised per batch. ``LossWeights`` add what
the A2C setups use (a value weight, an entropy bonus, gradient-norm clipping); their defaults are the
MLSH code's plain sum of surrogate and value loss."""

from __future__ import annotations

from collections.abc import Callable, Iterable
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


@dataclass(frozen=True)
class LossWeights:
    """How an update weighs its loss terms and bounds its step."""

    value: float = 1.0  # weight of the value loss
    entropy: float = 0.0  # weight of the entropy bonus (subtracted from the loss)
    max_grad_norm: float = 0.0  # clip the gradient's norm to this before each step; 0: no clipping


@dataclass
class PPOLoss:
    policy: Tensor  # the negated clipped surrogate
    value: Tensor  # mean squared error of the value prediction
    entropy: Tensor  # mean entropy of the policy's action distributions
    clip_fraction: float  # share of samples whose ratio left [1 - clip, 1 + clip]

    def total(self, weights: LossWeights = LossWeights()) -> Tensor:
        value = self.value if weights.value == 1.0 else weights.value * self.value
        total = self.policy + value
        return total - weights.entropy * self.entropy if weights.entropy else total


def ppo_loss(
    log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    values: Tensor,
    returns: Tensor,
    clip: float,
    entropy: Tensor | None = None,
) -> PPOLoss:
    """-mean(min(r A, clip(r, 1 - ε, 1 + ε) A)) with r = π/π_old, mean((V - R)²) and the mean of ``entropy``."""
    ratio = torch.exp(log_probs - old_log_probs)
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1.0 - clip, 1.0 + clip) * advantages)
    clipped = ((ratio - 1.0).abs() > clip).float().mean().item()
    mean_entropy = torch.zeros(()) if entropy is None else entropy.mean()
    return PPOLoss(-surrogate.mean(), (values - returns).pow(2).mean(), mean_entropy, clipped)


def adam(params: Iterable[Tensor], lr: float) -> torch.optim.Adam:
    """Adam on its multi-tensor (``foreach``) path: the per-tensor loop's arithmetic, bitwise (tested), with
    fewer operator calls; on the CPU torch picks the loop unless asked, and MLSH's small MLPs take hundreds of
    steps per round."""
    return torch.optim.Adam(params, lr=lr, foreach=True)


def normalized(advantages: Tensor, eps: float = 1e-8) -> Tensor:
    return (advantages - advantages.mean()) / (advantages.std(unbiased=False) + eps)


def ppo_update(
    evaluate: Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    samples: Samples,
    clip: float,
    epochs: int,
    minibatch: int,
    generator: torch.Generator,
    weights: LossWeights = LossWeights(),
) -> PPOLoss:
    """``epochs`` passes over ``samples`` in shuffled minibatches of ``minibatch``; ``evaluate(obs, actions)``
    gives (log-probabilities, values, entropies) under the current parameters. Returns the last minibatch's
    loss."""
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
            log_probs, values, entropy = evaluate(part.obs, part.actions)
            loss = ppo_loss(log_probs, part.old_log_probs, part.advantages, values, part.returns, clip, entropy)
            optimizer.zero_grad(set_to_none=True)
            loss.total(weights).backward()
            if weights.max_grad_norm:
                params = [p for group in optimizer.param_groups for p in group["params"]]
                torch.nn.utils.clip_grad_norm_(params, weights.max_grad_norm)
            optimizer.step()
    return loss
