"""Random tabular MDPs: transitions ~ Dirichlet(1), mean rewards ~ N(1, 1), rewards ~ N(mean, 1)."""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from dh_maml.envs.base import ArrayVectorEnv, TaskFamily


@dataclass(frozen=True)
class TabularOptions:
    num_states: int = field(default=10, metadata={"lo": 2})
    num_actions: int = field(default=5, metadata={"lo": 2})


@dataclass(frozen=True, eq=False)
class TabularTask:
    transitions: np.ndarray  # [S, A, S], rows sum to 1
    reward_means: np.ndarray  # [S, A]


class TabularMDPVectorEnv(ArrayVectorEnv):
    """One-hot state observations; every episode starts in state 0."""

    def __init__(self, num_envs: int, horizon: int, num_states: int, num_actions: int):
        obs_space = gym.spaces.Box(0.0, 1.0, shape=(num_states,), dtype=np.float32)
        super().__init__(num_envs, horizon, obs_space, gym.spaces.Discrete(num_actions))
        self._cum_transitions = np.zeros((num_envs, num_states, num_actions, num_states))
        self._reward_means = np.zeros((num_envs, num_states, num_actions))
        self._state = np.zeros(num_envs, dtype=np.int64)
        self._eye = np.eye(num_states, dtype=np.float32)

    def _load_tasks(self, tasks: list[TabularTask]) -> None:
        self._cum_transitions[:] = np.cumsum(np.stack([t.transitions for t in tasks]), axis=-1)
        self._reward_means[:] = np.stack([t.reward_means for t in tasks])

    def _reset_envs(self, idx: np.ndarray) -> None:
        self._state[idx] = 0

    def _observe(self) -> np.ndarray:
        return self._eye[self._state]

    def _step_envs(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        envs = np.arange(self.num_envs)
        actions = actions.astype(np.int64)
        means = self._reward_means[envs, self._state, actions]
        rewards = means + self.np_random.standard_normal(self.num_envs)
        cum = self._cum_transitions[envs, self._state, actions]
        u = self.np_random.random((self.num_envs, 1))
        self._state = np.minimum((u > cum).sum(axis=1), cum.shape[1] - 1)
        return rewards, np.zeros(self.num_envs, dtype=bool)


class TabularMDP(TaskFamily):
    name = "tabular-mdp"
    Task = TabularTask
    default_horizon = 10
    Options = TabularOptions

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[TabularTask]:
        s, a = self.options.num_states, self.options.num_actions
        transitions = rng.dirichlet(np.ones(s), size=(n, s, a))
        means = rng.normal(1.0, 1.0, size=(n, s, a))
        return [TabularTask(transitions=transitions[i], reward_means=means[i]) for i in range(n)]

    def make_vector_env(self, num_envs: int) -> TabularMDPVectorEnv:
        o = self.options
        return TabularMDPVectorEnv(num_envs, self.horizon, o.num_states, o.num_actions)
