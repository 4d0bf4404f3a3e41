"""PPO (clipped surrogate and value regression) as the MLSH paper's code uses it: several epochs of
minibatch Adam steps over one batch of samples, advantages normalised per batch. ``LossWeights`` add what
the A2C setups use (a value weight, an entropy bonus, gradient-norm clipping); their defaults are the
MLSH code's plain sum of surrogate and value loss."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from dh_maml.mlsh import ppo_grads

if TYPE_CHECKING:
    from dh_maml.mlsh.policies import ActorCritic


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
    """Adam on its fused path: one kernel per tensor for the whole step, against about ten operator calls per
    step on the multi-tensor path and ten per tensor on the loop torch picks on a CPU unless asked; MLSH's
    small MLPs take hundreds of steps per round, where those calls cost more than the arithmetic (2x on a
    sub-policy's step). The same update rule, to float rounding (tested)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def normalized(advantages: Tensor, eps: float = 1e-8) -> Tensor:
    return (advantages - advantages.mean()) / (advantages.std(unbiased=False) + eps)


def autograd_gradients(model: ActorCritic, part: Samples, clip: float, weights: LossWeights) -> None:
    """Every parameter's ``grad`` := the gradient of PPO's loss on ``part``, by autograd on
    ``ActorCritic.evaluate``: the reference for ``ppo_grads.set_gradients``, and the path of any network that
    one cannot take apart."""
    log_probs, values, entropy = model.evaluate(part.obs, part.actions)
    loss = ppo_loss(log_probs, part.old_log_probs, part.advantages, values, part.returns, clip, entropy)
    model.zero_grad(set_to_none=True)
    loss.total(weights).backward()


def ppo_update(
    model: ActorCritic,
    optimizer: torch.optim.Optimizer,
    samples: Samples,
    clip: float,
    epochs: int,
    minibatch: int,
    generator: torch.Generator,
    weights: LossWeights = LossWeights(),
) -> None:
    """``epochs`` passes over ``samples`` in shuffled minibatches of ``minibatch``, one optimizer step each on
    PPO's loss under ``model``'s current parameters (``optimizer`` holds them). The gradient is computed by
    hand where ``ppo_grads`` can take the model apart, else by autograd."""
    if len(samples) == 0 or epochs < 1 or minibatch < 1:
        raise ValueError(
            f"ppo_update: needs samples, epochs >= 1 and minibatch >= 1 (got {len(samples)} samples, "
            f"{epochs} epochs, minibatch {minibatch})"
        )
    gradients = autograd_gradients if ppo_grads.unsupported(model) else ppo_grads.set_gradients
    params = [p for group in optimizer.param_groups for p in group["params"]]
    samples = Samples(
        samples.obs, samples.actions, samples.old_log_probs, normalized(samples.advantages), samples.returns
    )
    for _ in range(epochs):
        order = torch.randperm(len(samples), generator=generator)
        for idx in order.split(minibatch):
            gradients(model, samples.take(idx), clip, weights)
            if weights.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, weights.max_grad_norm)
            optimizer.step()
