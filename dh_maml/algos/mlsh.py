"""MLSH (Frans et al. 2017, the published code's conventions): master macro-steps, the routing of each
step to the sub-policy that took it, and the per-task loop of master warm-up then joint updates.

Rollouts are [T, E] (time, episodes); the master acts at t = 0, N, 2N, ...
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dh_maml.algos.ppo import Samples, ppo_update
from dh_maml.envs.base import TaskVectorEnv
from dh_maml.episodes import gae
from dh_maml.hierarchy_sampling import HierarchyRollout, sample_hierarchy
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


def master_samples(roll: HierarchyRollout, macro_len: int, gamma: float, lam: float) -> Samples:
    """The master's PPO samples: one per macro step that an episode reached, GAE over macro steps."""
    macro = macro_steps(roll.obs, roll.choices, roll.rewards, roll.mask, macro_len)
    adv, ret = advantages_and_returns(macro.rewards, roll.master_values, macro.mask, gamma, lam)
    keep = macro.mask.reshape(-1) > 0
    return Samples(macro.obs.reshape(keep.numel(), -1)[keep], macro.choices.reshape(-1)[keep],
                   roll.master_log_probs.reshape(-1)[keep], adv.reshape(-1)[keep], ret.reshape(-1)[keep])


def subpolicy_samples(roll: HierarchyRollout, macro_len: int, num_subpolicies: int, gamma: float,
                      lam: float) -> list[Samples]:
    """Each sub-policy's PPO samples: the steps it took, with GAE over steps against the acting
    sub-policy's value predictions (the published code's convention)."""
    adv, ret = advantages_and_returns(roll.rewards, roll.values, roll.mask, gamma, lam)
    keep = roll.mask.reshape(-1) > 0
    n = keep.numel()
    flat = Samples(roll.obs.reshape(n, -1)[keep], roll.actions.reshape(n, *roll.actions.shape[2:])[keep],
                   roll.log_probs.reshape(-1)[keep], adv.reshape(-1)[keep], ret.reshape(-1)[keep])
    owner = owners(roll.choices, macro_len, roll.rewards.shape[0]).reshape(-1)[keep]
    return split_by_subpolicy(flat, owner, num_subpolicies)


class MLSHLearner:
    """Shared sub-policies with their optimisers, and the per-task loop: a fresh master, ``warmup``
    iterations updating it alone, then ``joint`` iterations updating it and then, on the same batch, each
    sub-policy from the steps it took."""

    def __init__(self, policy: MLSHPolicy, spec, seed: int):
        self.policy, self.spec = policy, spec
        self.sub_optimizers = [torch.optim.Adam(sub.parameters(), lr=spec.sub_lr) for sub in policy.subpolicies]
        self.generator = torch.Generator().manual_seed(seed)

    def train_task(self, env: TaskVectorEnv, task: Any, horizon: int, seed: int,
                   joint: int | None = None) -> list[float]:
        """Mean episode return of each iteration on ``task``; ``joint`` overrides the spec's count (0 keeps
        the sub-policies frozen, as adapting to a held-out task does)."""
        spec, policy = self.spec, self.policy
        master_optimizer = fresh_master(policy, spec.master_lr, seed)
        joint = spec.joint if joint is None else joint
        returns = []
        for i in range(spec.warmup + joint):
            rollout_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
            roll = sample_hierarchy(env, policy, task, horizon, spec.macro_len, spec.epsilon, rollout_seed)
            ppo_update(policy.master.evaluate, master_optimizer,
                       master_samples(roll, spec.macro_len, spec.gamma, spec.gae_lambda), spec.clip, spec.epochs,
                       spec.master_minibatch, self.generator)
            if i >= spec.warmup:
                parts = subpolicy_samples(roll, spec.macro_len, policy.num_subpolicies, spec.gamma, spec.gae_lambda)
                for sub, optimizer, samples in zip(policy.subpolicies, self.sub_optimizers, parts):
                    if len(samples):
                        ppo_update(sub.evaluate, optimizer, samples, spec.clip, spec.epochs,
                                   math.ceil(len(samples) / spec.sub_minibatches), self.generator)
            returns.append(roll.episode_returns().mean().item())
        return returns
