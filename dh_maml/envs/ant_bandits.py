"""AntBandits (the PyTorch MLSH's second setting): the MuJoCo Ant walks to one of two goals, only one pays.

The goals lie 5 units from the start, at (0, 5) ("top") and (5, 0) ("right"); which one pays is the
task, fixed per task and never observed, so a policy learns it from rewards alone (as on
MovementBandits). The Ant is the ant families' (gymnasium's Ant-v5 model and reset noise, stepped in
the batched MuJoCo env). It observes its joint positions including the torso's x and y (a fixed goal
cannot be reached without knowing where one is) and its velocities: the original environment's
observation, without contact forces. Episodes end only at the horizon, as in the original: an Ant that
falls over stays unpaid instead of ending a run of costs early, which would reward falling.

Reward: 1 for each step that ends with the torso within 1 of the paying goal. The ``shaped`` option
(training only) adds the torso's speed towards the paying goal (the decrease of its distance per
second, the signal the ant families learn to walk from) and the Ant's own terms (control and contact
costs, survival bonus). Nothing ends an episode when the Ant turns over, and an Ant on its back can still
push itself along, slowly and off its heading: most of a random policy's episodes turn it over, and without
more a sub-policy can learn to flip first and crawl. ``upright_progress`` counts the speed only while the
torso faces up; ``upright_bonus`` pays that much for each step it does (gymnasium's Ant-v5 pays 1 for each
healthy step).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dh_maml.config import bounds
from dh_maml.envs.movement_bandits import TwoGoalBandits
from dh_maml.envs.mujoco import AntVectorEnv, Motion, MujocoOptions

GOALS = np.array([[0.0, 5.0], [5.0, 0.0]])
GOAL_NAMES = ("top", "right")
RADIUS = 1.0


@dataclass(frozen=True)
class AntBanditsOptions(MujocoOptions):
    shaped: bool = False  # add the speed towards the paying goal and the Ant's own reward terms
    upright_progress: bool = False  # shaped: the speed towards the goal counts only while the torso faces up
    upright_bonus: float = field(default=0.0, metadata=bounds(0.0))  # shaped: paid for each step it faces up
    goal: int | None = field(default=None, metadata=bounds(0, 1))  # every task pays here (a per-goal oracle's)


@dataclass(frozen=True)
class AntBanditsTask:
    correct: int  # 0: the top goal pays, 1: the right goal


class AntBanditsVectorEnv(AntVectorEnv):
    def __init__(
        self,
        num_envs: int,
        horizon: int,
        shaped: bool = False,
        frame_skip: int = 5,
        upright_progress: bool = False,
        upright_bonus: float = 0.0,
    ):
        self.shaped = shaped
        self.upright_progress = upright_progress
        self.upright_bonus = upright_bonus
        super().__init__(num_envs, horizon, frame_skip)

    def _allocate(self, num_envs: int) -> None:
        super()._allocate(num_envs)
        self._goal = np.zeros((num_envs, 2))
        self._before = np.zeros((num_envs, 2))

    def _load_tasks(self, tasks: list[AntBanditsTask]) -> None:
        self._goal = GOALS[[t.correct for t in tasks]]

    def _observe(self) -> np.ndarray:
        return np.concatenate([self._qpos, self._qvel], axis=1)

    def _step_envs(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._before[:] = self._qpos[:, :2]
        return super()._step_envs(actions)

    def _task_reward(self, motion: Motion) -> np.ndarray:
        distance = np.linalg.norm(motion.position - self._goal, axis=1)
        rewards = (distance < RADIUS).astype(np.float64)
        if self.shaped:
            progress = np.linalg.norm(self._before - self._goal, axis=1) - distance
            if self.upright_progress or self.upright_bonus:
                upright = self._torso_up() > 0.0
                if self.upright_progress:
                    progress = np.where(upright, progress, 0.0)
                rewards += self.upright_bonus * upright
            rewards += progress / self.dt - motion.costs
        return rewards

    def _terminated(self) -> np.ndarray:
        return np.zeros(self.num_envs, dtype=bool)


class AntBandits(TwoGoalBandits):
    name = "ant-bandits"
    Task = AntBanditsTask
    default_horizon = 200
    Options = AntBanditsOptions
    goal_names = GOAL_NAMES

    def make_vector_env(self, num_envs: int) -> AntBanditsVectorEnv:
        o = self.options
        return AntBanditsVectorEnv(num_envs, self.horizon, o.shaped, o.frame_skip, o.upright_progress, o.upright_bonus)
