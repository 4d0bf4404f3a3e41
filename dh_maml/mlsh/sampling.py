"""Rollouts of the MLSH hierarchy: the episodes of several tasks in one vector env, one batched call per step.

Each task has its own master and ``episodes`` sub-envs. Every master chooses a
sub-policy for each of its episodes at t = 0, N, 2N, ...; the chosen shared
sub-policy acts until the next choice. Each episode runs once from reset to its
end (no autoreset step is recorded).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from dh_maml.envs.base import TaskVectorEnv
from dh_maml.mlsh.policies import ActorCritic, SubPolicies, choose


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

    def part(self, steps: int, macro_len: int, episodes: slice) -> HierarchyRollout:
        """The first ``steps`` steps (every episode ended by then) of some episodes, with their macro steps."""
        tm = -(-steps // macro_len)
        return HierarchyRollout(
            **{f.name: getattr(self, f.name)[: tm if f.name in _MACRO else steps, episodes] for f in fields(self)}
        )


_MACRO = {"choices", "master_log_probs", "master_values"}


def sample_hierarchy(
    env: TaskVectorEnv,
    subpolicies: SubPolicies,
    masters: Sequence[ActorCritic],
    tasks: Sequence[Any],
    horizon: int,
    macro_len: int,
    epsilon: float,
    seed: int,
    commit: Sequence[float] | None = None,
) -> list[HierarchyRollout]:
    """One episode per sub-env of ``env``, its sub-envs split evenly between ``tasks`` (task i with master i);
    one rollout per task. The master explores with ``epsilon`` at each choice; ``commit[i]`` is the share of
    task i's episodes played from start to end by one sub-policy drawn uniformly (the master's log-probability
    of it is kept, as for ``epsilon``). Seeded: the env's resets and every policy and exploration draw come from
    ``seed`` (torch's generator in a scope of its own, as in ``Sampler``)."""
    if len(masters) != len(tasks) or env.num_envs % len(tasks):
        raise ValueError(
            f"sample_hierarchy: {len(tasks)} tasks and {len(masters)} masters for {env.num_envs} "
            "sub-envs; expected one master per task and the same number of sub-envs for each"
        )
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        return _rollout(
            env,
            subpolicies,
            masters,
            tasks,
            horizon,
            macro_len,
            epsilon,
            seed,
            [0.0] * len(tasks) if commit is None else list(commit),
        )


def _rollout(
    env: TaskVectorEnv,
    subpolicies: SubPolicies,
    masters: Sequence[ActorCritic],
    tasks: Sequence[Any],
    horizon: int,
    macro_len: int,
    epsilon: float,
    seed: int,
    commit: Sequence[float],
) -> list[HierarchyRollout]:
    n, tm = env.num_envs, -(-horizon // macro_len)
    per_task = n // len(tasks)
    slices = [slice(i * per_task, (i + 1) * per_task) for i in range(len(tasks))]
    env.set_tasks([task for task in tasks for _ in range(per_task)])
    obs_np, _ = env.reset(seed=seed)
    obs_dim = math.prod(env.single_observation_space.shape)
    discrete = isinstance(env.single_action_space, gym.spaces.Discrete)
    act_shape = () if discrete else env.single_action_space.shape
    roll = HierarchyRollout(
        obs=torch.zeros(horizon, n, obs_dim),
        actions=torch.zeros(horizon, n, *act_shape, dtype=torch.long if discrete else torch.float32),
        log_probs=torch.zeros(horizon, n),
        values=torch.zeros(horizon, n),
        rewards=torch.zeros(horizon, n),
        mask=torch.zeros(horizon, n),
        choices=torch.zeros(tm, n, dtype=torch.long),
        master_log_probs=torch.zeros(tm, n),
        master_values=torch.zeros(tm, n),
    )
    committed = torch.cat(
        [
            torch.where(torch.rand(per_task) < share, torch.randint(len(subpolicies), (per_task,)), -1)
            for share in commit
        ]
    )  # -1: the master chooses
    alive = torch.ones(n)
    steps = horizon
    for t in range(horizon):
        obs = roll.obs[t]
        obs.copy_(torch.from_numpy(np.asarray(obs_np, dtype=np.float32).reshape(n, obs_dim)))
        obs.mul_(alive.unsqueeze(-1))  # padding is zero, whatever ended (or retired) sub-envs do after their end
        m = t // macro_len
        if t % macro_len == 0:
            for master, part in zip(masters, slices):
                chosen = choose(master, obs[part], epsilon, committed[part])
                roll.choices[m, part], roll.master_log_probs[m, part] = chosen.actions, chosen.log_probs
                roll.master_values[m, part] = chosen.values
        acted = subpolicies.act(obs, roll.choices[m])
        roll.actions[t], roll.log_probs[t], roll.values[t] = acted.actions, acted.log_probs, acted.values
        obs_np, rewards, terminated, truncated, _ = env.step(acted.actions.numpy())
        roll.mask[t] = alive
        roll.rewards[t] = torch.from_numpy(np.asarray(rewards, dtype=np.float32)) * alive
        alive = alive * torch.from_numpy(~(terminated | truncated)).float()
        if not alive.any():
            steps = t + 1
            break
        env.retire(alive.numpy() == 0)
    return [roll.part(steps, macro_len, part) for part in slices]
