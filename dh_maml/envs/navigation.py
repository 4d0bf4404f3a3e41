"""2D navigation: move a point from the origin to a goal drawn per task."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from dh_maml.envs.base import ArrayVectorEnv, TaskFamily


@dataclass(frozen=True)
class NavigationTask:
    goal: tuple[float, float]


class Navigation2DVectorEnv(ArrayVectorEnv):
    """Reward -||s - goal||_2 after the move; actions clipped to [-0.1, 0.1]^2; done within 0.01 of the goal."""

    def __init__(self, num_envs: int, horizon: int):
        obs_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        act_space = gym.spaces.Box(-0.1, 0.1, shape=(2,), dtype=np.float32)
        super().__init__(num_envs, horizon, obs_space, act_space)
        self._state = np.zeros((num_envs, 2), dtype=np.float32)
        self._goal = np.zeros((num_envs, 2), dtype=np.float32)

    def _load_tasks(self, tasks: list[NavigationTask]) -> None:
        self._goal[:] = np.asarray([t.goal for t in tasks], dtype=np.float32)

    def _reset_envs(self, idx: np.ndarray) -> None:
        self._state[idx] = 0.0

    def _observe(self) -> np.ndarray:
        return self._state.copy()

    def _step_envs(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._state += np.clip(actions, -0.1, 0.1).astype(np.float32)
        delta = self._state - self._goal
        rewards = -np.sqrt((delta**2).sum(axis=1)).astype(np.float64)
        terminated = (np.abs(delta) < 0.01).all(axis=1)
        return rewards, terminated


class Navigation2D(TaskFamily):
    name = "navigation-2d"
    Task = NavigationTask
    default_horizon = 100

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[NavigationTask]:
        goals = rng.uniform(-0.5, 0.5, size=(n, 2))
        return [NavigationTask(goal=(float(x), float(y))) for x, y in goals]

    def make_vector_env(self, num_envs: int) -> Navigation2DVectorEnv:
        return Navigation2DVectorEnv(num_envs, self.horizon)
