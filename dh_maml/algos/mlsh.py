"""MLSH's bookkeeping between rollouts and PPO: master macro-steps and the routing of each step to the
sub-policy that took it (Frans et al. 2017; the published code's conventions).

Rollouts are [T, E] (time, episodes); the master acts at t = 0, N, 2N, ...
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dh_maml.algos.ppo import Samples
from dh_maml.episodes import gae
from dh_maml.policies.hierarchy import MLSHPolicy


@dataclass
class MacroSteps:
    """The master's transitions: observation at each macro start, its choice, and the summed reward."""

    obs: Tensor  # [Tm, E, obs_dim]
    choices: Tensor  # [Tm, E]
    rewards: Tensor  # [Tm, E]: plain sum of the N step rewards of the slice
    mask: Tensor  # [Tm, E]: 1 where the slice holds at least one step of the episode


def macro_steps(obs: Tensor, choices: Tensor, rewards: Tensor, mask: Tensor, macro_len: int) -> MacroSteps:
    """Cut [T, E] step data into N-step macro steps (the last may be shorter than N)."""
    if macro_len < 1:
        raise ValueError(f"macro_len: expected at least 1, got {macro_len}")
    t, e = rewards.shape
    tm = -(-t // macro_len)
    pad = tm * macro_len - t
    summed = torch.nn.functional.pad(rewards * mask, (0, 0, 0, pad)).reshape(tm, macro_len, e).sum(1)
    alive = torch.nn.functional.pad(mask, (0, 0, 0, pad)).reshape(tm, macro_len, e).amax(1)
    return MacroSteps(obs[::macro_len], choices, summed, alive)


def advantages_and_returns(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float,
                           lam: float) -> tuple[Tensor, Tensor]:
    """GAE(γ, λ) over [T, E] and the TD(λ) value targets (advantage + prediction)."""
    adv = gae(rewards[None], values[None], mask[None], gamma, lam)[0]
    return adv, (adv + values) * mask


def owners(choices: Tensor, macro_len: int, steps: int) -> Tensor:
    """[T, E]: the sub-policy that acted at each step (the master's choice of that step's slice)."""
    return choices.repeat_interleave(macro_len, dim=0)[:steps]


def split_by_subpolicy(samples: Samples, owner: Tensor, num_subpolicies: int) -> list[Samples]:
    """Each sub-policy's samples: only the steps where it acted (flat samples, ``owner`` flat too)."""
    return [samples.take(torch.nonzero(owner == k).squeeze(-1)) for k in range(num_subpolicies)]


def fresh_master(policy: MLSHPolicy, lr: float, seed: int) -> torch.optim.Optimizer:
    """A new task's master: weights re-drawn from ``seed`` and a new optimiser, so no Adam moment of the
    previous task's master carries over. The sub-policies are left as they are."""
    policy.reset_master(seed)
    return torch.optim.Adam(policy.master.parameters(), lr=lr)
