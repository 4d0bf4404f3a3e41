"""Vectorised rollouts: every episode of several tasks steps in one vector env, one policy call per step."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch

from dh_maml.envs.base import TaskFamily, VectorEnvCache
from dh_maml.episodes import EpisodeBatch
from dh_maml.policies import Params, Policy


class Sampler:
    """Runs a policy with given parameters on tasks and returns an EpisodeBatch.

    Steps taken after an episode ended (gymnasium's
    next-step autoreset) are masked out and not counted.
    """

    def __init__(self, family: TaskFamily, policy: Policy):
        self.family = family
        self.policy = policy
        self.envs = VectorEnvCache(family)
        self.discrete = isinstance(family.action_space, gym.spaces.Discrete)

    def close(self) -> None:
        self.envs.close()

    @torch.no_grad()
    def sample(
        self,
        params: Params,
        tasks: list,
        episodes_per_task: int,
        seed: int,
        per_task_params: bool = False,
        mode: bool = False,
    ) -> EpisodeBatch:
        """A [tasks, T, episodes] batch: every episode of every task steps in one vector env.

        With ``per_task_params`` every tensor in ``params`` has a leading task
        dimension and task i acts with its own slice (batched matrix products, one call per step).
        With ``mode`` the policy acts with its distribution's mode (a Gaussian's mean) instead of a sample.
        """
        n_tasks, eps = len(tasks), episodes_per_task
        env = self.envs.get(n_tasks * eps)
        env.set_tasks([task for task in tasks for _ in range(eps)])
        horizon = self.family.horizon
        obs_dim = math.prod(env.single_observation_space.shape)
        act_shape = () if self.discrete else env.single_action_space.shape
        obs_buf = np.zeros((n_tasks, horizon, eps, obs_dim), dtype=np.float32)
        act_buf = np.zeros((n_tasks, horizon, eps, *act_shape), dtype=np.int64 if self.discrete else np.float32)
        rew_buf = np.zeros((n_tasks, horizon, eps), dtype=np.float32)
        mask_buf = np.zeros((n_tasks, horizon, eps), dtype=np.float32)
        success_buf = None
        alive = np.ones((n_tasks, eps), dtype=bool)
        obs, _ = env.reset(seed=seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for t in range(horizon):
                obs_t = torch.from_numpy(obs.reshape(n_tasks, eps, obs_dim).astype(np.float32, copy=False))
                obs_buf[:, t] = obs_t.numpy()
                mask_buf[:, t] = alive
                outputs = self.policy.task_outputs(params, obs_t, per_task_params)
                dist = self.policy.distribution(outputs)
                actions = (dist.mode if mode else dist.sample()).numpy()
                act_buf[:, t] = actions
                if not alive.all():  # padding is zero, whatever ended (or retired) sub-envs do after their end
                    obs_buf[:, t][~alive] = 0.0
                    act_buf[:, t][~alive] = 0
                obs, rewards, terminated, truncated, info = env.step(actions.reshape(n_tasks * eps, *act_shape))
                rew_buf[:, t] = rewards.reshape(n_tasks, eps) * alive
                if "success" in info:
                    if success_buf is None:
                        success_buf = np.zeros_like(rew_buf)
                    success_buf[:, t] = info["success"].reshape(n_tasks, eps) * alive
                alive &= ~(terminated | truncated).reshape(n_tasks, eps)
                if not alive.any():
                    break
                env.retire(~alive.reshape(-1))
        return EpisodeBatch(
            observations=torch.from_numpy(obs_buf),
            actions=torch.from_numpy(act_buf),
            rewards=torch.from_numpy(rew_buf),
            mask=torch.from_numpy(mask_buf),
            successes=None if success_buf is None else torch.from_numpy(success_buf),
        ).trimmed()
