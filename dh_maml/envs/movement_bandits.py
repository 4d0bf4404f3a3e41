"""MovementBandits (Frans et al. 2017, MLSH): walk to the one of two goals that pays, never told which.

The agent starts at (200, 200) on a 400 x 400 plane; both goals are drawn
uniformly on the plane at every episode start. The index of the paying goal is
the task: fixed per task and absent from the observation, so a policy can only
learn it from rewards. Reward 1 for each step that ends within distance 50 of
the correct goal. Observation [position, goal 0, goal 1] / 400.

The ``shaped`` option subtracts the distance to the correct goal / 400 from
every step's reward: a gradient towards the paying goal from the first
iteration, for training only (evaluation reports the sparse reward).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from dh_maml.config import bounds
from dh_maml.envs.base import ArrayVectorEnv, TaskFamily

SIZE, START, STEP, RADIUS = 400.0, 200.0, 20.0, 50.0
MOVES = np.array([[0, 0], [STEP, 0], [-STEP, 0], [0, STEP], [0, -STEP]], dtype=np.float64)  # stay, +x, -x, +y, -y


@dataclass(frozen=True)
class MovementBanditsOptions:
    shaped: bool = False  # sparse reward minus distance / 400
    goal: int | None = field(default=None, metadata=bounds(0, 1))  # every task pays here (a per-goal oracle's)


@dataclass(frozen=True)
class MovementBanditsTask:
    correct: int  # 0 or 1: which goal pays


class MovementBanditsVectorEnv(ArrayVectorEnv):
    """Positions stay on the plane (moves are clipped to [0, 400]); episodes only end at the horizon."""

    def __init__(self, num_envs: int, horizon: int, shaped: bool = False):
        obs_space = gym.spaces.Box(0.0, 1.0, shape=(6,), dtype=np.float32)
        super().__init__(num_envs, horizon, obs_space, gym.spaces.Discrete(len(MOVES)))
        self._position = np.zeros((num_envs, 2))
        self._goals = np.zeros((num_envs, 2, 2))
        self._correct = np.zeros(num_envs, dtype=np.int64)
        self.shaped = shaped

    def _load_tasks(self, tasks: list[MovementBanditsTask]) -> None:
        self._correct[:] = [t.correct for t in tasks]

    def _reset_envs(self, idx: np.ndarray) -> None:
        self._position[idx] = START
        self._goals[idx] = self.np_random.uniform(0.0, SIZE, size=(len(idx), 2, 2))

    def _observe(self) -> np.ndarray:
        return np.concatenate([self._position, self._goals.reshape(self.num_envs, 4)], axis=1).astype(np.float32) / SIZE

    def _step_envs(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._position = np.clip(self._position + MOVES[actions.astype(np.int64)], 0.0, SIZE)
        goal = self._goals[np.arange(self.num_envs), self._correct]
        distance = np.linalg.norm(self._position - goal, axis=1)
        rewards = (distance < RADIUS).astype(np.float64)
        if self.shaped:
            rewards -= distance / SIZE
        return rewards, np.zeros(self.num_envs, dtype=bool)


class TwoGoalBandits(TaskFamily):
    """Two goals, one pays: the task is the paying goal's index (``Task(correct)``), drawn with equal odds, or
    always ``options.goal`` where set (what a per-goal oracle trains on). Training may shape the reward
    (``options.shaped``); evaluation reports the sparse one."""

    goal_names: tuple[str, str] | None = None  # how results name each latent goal (its index if None)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list:
        correct = rng.integers(0, 2, size=n)
        if self.options.goal is not None:
            correct[:] = self.options.goal
        return [self.Task(int(c)) for c in correct]

    def latent(self, task: MovementBanditsTask) -> int | str:
        return task.correct if self.goal_names is None else self.goal_names[task.correct]


class MovementBandits(TwoGoalBandits):
    name = "movement-bandits"
    Task = MovementBanditsTask
    default_horizon = 50
    Options = MovementBanditsOptions

    def make_vector_env(self, num_envs: int) -> MovementBanditsVectorEnv:
        return MovementBanditsVectorEnv(num_envs, self.horizon, self.options.shaped)
