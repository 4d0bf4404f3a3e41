"""Vectorised rollouts: every episode of several tasks steps in one vector env, one policy call per step."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch

from dh_maml.envs.base import TaskFamily, TaskVectorEnv
from dh_maml.episodes import EpisodeBatch
from dh_maml.policies import Params, Policy


class Sampler:
    """Runs a policy with given parameters on tasks and returns an EpisodeBatch.

    Vector envs are cached by size because building MuJoCo envs costs far more
    than stepping them. Steps taken after an episode ended (gymnasium's
    next-step autoreset) are masked out and not counted.
    """

    def __init__(self, family: TaskFamily, policy: Policy):
        self.family = family
        self.policy = policy
        self._envs: dict[int, TaskVectorEnv] = {}
        self.discrete = isinstance(family.action_space, gym.spaces.Discrete)

    def _env(self, num_envs: int) -> TaskVectorEnv:
        if num_envs not in self._envs:
            self._envs[num_envs] = self.family.make_vector_env(num_envs)
        return self._envs[num_envs]

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()

    @torch.no_grad()
    def sample(self, params: Params, tasks: list, episodes_per_task: int, seed: int,
               per_task_params: bool = False) -> EpisodeBatch:
        """Episodes of task i occupy columns [i*E, (i+1)*E) of the batch.

        With ``per_task_params`` every tensor in ``params`` has a leading task
        dimension and task i acts with its own slice (vmapped, one call per step).
        """
        n_tasks, eps = len(tasks), episodes_per_task
        batch = n_tasks * eps
        env = self._env(batch)
        env.set_tasks([task for task in tasks for _ in range(eps)])
        horizon = self.family.horizon
        obs_dim = math.prod(env.single_observation_space.shape)
        act_shape = () if self.discrete else env.single_action_space.shape
        obs_buf = np.zeros((horizon, batch, obs_dim), dtype=np.float32)
        act_buf = np.zeros((horizon, batch, *act_shape), dtype=np.int64 if self.discrete else np.float32)
        rew_buf = np.zeros((horizon, batch), dtype=np.float32)
        mask_buf = np.zeros((horizon, batch), dtype=np.float32)
        alive = np.ones(batch, dtype=bool)
        obs, _ = env.reset(seed=seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for t in range(horizon):
                obs_buf[t] = obs.reshape(batch, obs_dim)
                mask_buf[t] = alive
                obs_t = torch.from_numpy(obs_buf[t])
                if per_task_params:
                    outputs = self.policy.outputs_per_task(params, obs_t.view(n_tasks, eps, obs_dim))
                    outputs = tuple(o.reshape(batch, *o.shape[2:]) for o in outputs)
                else:
                    outputs = self.policy.outputs(params, obs_t)
                actions = self.policy.distribution(outputs).sample().numpy()
                act_buf[t] = actions
                obs, rewards, terminated, truncated, _ = env.step(actions)
                rew_buf[t] = rewards * alive
                alive &= ~(terminated | truncated)
                if not alive.any():
                    break
        return EpisodeBatch(
            observations=torch.from_numpy(obs_buf),
            actions=torch.from_numpy(act_buf),
            rewards=torch.from_numpy(rew_buf),
            mask=torch.from_numpy(mask_buf),
        ).trimmed()
