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

    def trimmed(self, steps: int, macro_len: int) -> "HierarchyRollout":
        """The first ``steps`` steps (every episode ended by then) and their macro steps."""
        tm = -(-steps // macro_len)
        return HierarchyRollout(*(v[:steps] for v in (self.obs, self.actions, self.log_probs, self.values,
                                                     self.rewards, self.mask)),
                                self.choices[:tm], self.master_log_probs[:tm], self.master_values[:tm])


def sample_hierarchy(env: TaskVectorEnv, policy: MLSHPolicy, task: Any, horizon: int, macro_len: int,
                     epsilon: float, seed: int) -> HierarchyRollout:
    """One episode per sub-env of ``env`` on ``task``, seeded: the env's resets and every policy and
    exploration draw come from ``seed`` (torch's generator in a scope of its own, as in ``Sampler``)."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        return _rollout(env, policy, task, horizon, macro_len, epsilon, seed)


def _rollout(env: TaskVectorEnv, policy: MLSHPolicy, task: Any, horizon: int, macro_len: int, epsilon: float,
             seed: int) -> HierarchyRollout:
    e, tm = env.num_envs, -(-horizon // macro_len)
    env.reset_task(task)
    obs_np, _ = env.reset(seed=seed)
    obs_dim = math.prod(env.single_observation_space.shape)
    discrete = isinstance(env.single_action_space, gym.spaces.Discrete)
    act_shape = () if discrete else env.single_action_space.shape
    roll = HierarchyRollout(
        obs=torch.zeros(horizon, e, obs_dim), actions=torch.zeros(horizon, e, *act_shape,
                                                                  dtype=torch.long if discrete else torch.float32),
        log_probs=torch.zeros(horizon, e), values=torch.zeros(horizon, e), rewards=torch.zeros(horizon, e),
        mask=torch.zeros(horizon, e), choices=torch.zeros(tm, e, dtype=torch.long),
        master_log_probs=torch.zeros(tm, e), master_values=torch.zeros(tm, e))
    alive = torch.ones(e)
    steps = horizon
    for t in range(horizon):
        obs = roll.obs[t]
        obs.copy_(torch.from_numpy(np.asarray(obs_np, dtype=np.float32).reshape(e, obs_dim)))
        if t % macro_len == 0:
            chosen = policy.choose(obs, epsilon)
            m = t // macro_len
            roll.choices[m], roll.master_log_probs[m], roll.master_values[m] = (chosen.actions, chosen.log_probs,
                                                                                chosen.values)
        acted = policy.act(obs, roll.choices[t // macro_len])
        roll.actions[t], roll.log_probs[t], roll.values[t] = acted.actions, acted.log_probs, acted.values
        obs_np, rewards, terminated, truncated, _ = env.step(acted.actions.numpy())
        roll.mask[t] = alive
        roll.rewards[t] = torch.from_numpy(np.asarray(rewards, dtype=np.float32)) * alive
        alive = alive * torch.from_numpy(~(terminated | truncated)).float()
        if not alive.any():
            steps = t + 1
            break
    return roll.trimmed(steps, macro_len)
