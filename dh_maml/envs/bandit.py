"""Bernoulli multi-armed bandits: one arm probability vector per task, n pulls per episode."""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from dh_maml.envs.base import ArrayVectorEnv, TaskFamily


@dataclass(frozen=True)
class BanditOptions:
    num_arms: int = field(default=5, metadata={"lo": 2})


@dataclass(frozen=True)
class BanditTask:
    probs: tuple[float, ...]


class BernoulliBanditVectorEnv(ArrayVectorEnv):
    """Constant observation (a bandit has no state); reward ~ Bernoulli(p[action])."""

    def __init__(self, num_envs: int, horizon: int, num_arms: int):
        obs_space = gym.spaces.Box(0.0, 0.0, shape=(1,), dtype=np.float32)
        super().__init__(num_envs, horizon, obs_space, gym.spaces.Discrete(num_arms))
        self._probs = np.zeros((num_envs, num_arms))
        self._obs = np.zeros((num_envs, 1), dtype=np.float32)

    def _load_tasks(self, tasks: list[BanditTask]) -> None:
        self._probs[:] = np.asarray([t.probs for t in tasks])

    def _reset_envs(self, idx: np.ndarray) -> None:
        pass

    def _observe(self) -> np.ndarray:
        return self._obs.copy()

    def _step_envs(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self._probs[np.arange(self.num_envs), actions.astype(np.int64)]
        rewards = (self.np_random.random(self.num_envs) < p).astype(np.float64)
        return rewards, np.zeros(self.num_envs, dtype=bool)


class BernoulliBandit(TaskFamily):
    name = "bandit"
    Task = BanditTask
    default_horizon = 10
    Options = BanditOptions

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[BanditTask]:
        probs = rng.uniform(0.0, 1.0, size=(n, self.options.num_arms))
        return [BanditTask(probs=tuple(map(float, p))) for p in probs]

    def make_vector_env(self, num_envs: int) -> BernoulliBanditVectorEnv:
        return BernoulliBanditVectorEnv(num_envs, self.horizon, self.options.num_arms)
