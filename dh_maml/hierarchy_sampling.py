"""Rollouts of the MLSH hierarchy: many episodes of one task in one vector env, one batched call per step.

The master chooses a sub-policy for every episode at t = 0, N, 2N, ...; the
chosen sub-policy acts until the next choice. Each episode runs once from reset
to its end (no autoreset step is recorded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from dh_maml.envs.base import TaskVectorEnv
from dh_maml.policies.hierarchy import MLSHPolicy


@dataclass
class HierarchyRollout:
    """[T, E] step data and [Tm, E] master data of E episodes of one task."""

    obs: Tensor
    actions: Tensor
    log_probs: Tensor  # of the acting sub-policy
    values: Tensor  # the acting sub-policy's value prediction
    rewards: Tensor
    mask: Tensor  # 1 while the episode runs
    choices: Tensor  # [Tm, E] sub-policy chosen for each slice
    master_log_probs: Tensor
    master_values: Tensor

    def episode_returns(self) -> Tensor:
        return (self.rewards * self.mask).sum(0)


@torch.no_grad()
def sample_hierarchy(env: TaskVectorEnv, policy: MLSHPolicy, task: Any, horizon: int, macro_len: int,
                     epsilon: float, seed: int) -> HierarchyRollout:
    """One episode per sub-env of ``env`` on ``task``, seeded: the env's resets from ``seed``, every policy
    and exploration draw from a generator seeded with it."""
    gen = torch.Generator().manual_seed(seed)
    e = env.num_envs
    env.reset_task(task)
    obs_np, _ = env.reset(seed=seed)
    obs_dim = math.prod(env.single_observation_space.shape)
    discrete = isinstance(env.single_action_space, gym.spaces.Discrete)
    columns: dict[str, list[Tensor]] = {k: [] for k in ("obs", "actions", "log_probs", "values", "rewards", "mask")}
    masters: dict[str, list[Tensor]] = {k: [] for k in ("choices", "log_probs", "values")}
    alive = torch.ones(e)
    choice = torch.zeros(e, dtype=torch.long)
    for t in range(horizon):
        obs = torch.as_tensor(obs_np, dtype=torch.float32).reshape(e, obs_dim)
        if t % macro_len == 0:
            chosen = policy.choose(obs, epsilon, gen)
            choice = chosen.actions
            masters["choices"].append(choice)
            masters["log_probs"].append(chosen.log_probs)
            masters["values"].append(chosen.values)
        acted = policy.act(obs, choice, gen)
        actions = acted.actions.numpy() if discrete else acted.actions.numpy().astype(np.float32)
        obs_np, rewards, terminated, truncated, _ = env.step(actions)
        for key, value in (("obs", obs), ("actions", acted.actions), ("log_probs", acted.log_probs),
                           ("values", acted.values), ("rewards", torch.as_tensor(rewards, dtype=torch.float32) * alive),
                           ("mask", alive.clone())):
            columns[key].append(value)
        alive = alive * torch.as_tensor(~(terminated | truncated), dtype=torch.float32)
        if not alive.any():
            break
    stack = {k: torch.stack(v) for k, v in columns.items()}
    return HierarchyRollout(**stack, choices=torch.stack(masters["choices"]),
                            master_log_probs=torch.stack(masters["log_probs"]),
                            master_values=torch.stack(masters["values"]))
