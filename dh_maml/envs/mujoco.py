"""MuJoCo locomotion task families on gymnasium's HalfCheetah-v5 and Ant-v5.

Each single env subclasses gymnasium's own, keeps its physics, observation and
termination, and replaces the reward with the task's (REFERENCE.md). The control
and contact costs come from gymnasium's reward terms with the reference weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import TimeLimit

from dh_maml.envs.base import SyncTaskVectorEnv, TaskFamily


@dataclass(frozen=True)
class VelocityTask:
    velocity: float


@dataclass(frozen=True)
class DirectionTask:
    direction: float


@dataclass(frozen=True)
class GoalTask:
    goal: tuple[float, float]


class _TaskReward:
    """Mixin: the wrapped env's step, with the reward recomputed from its info terms."""

    task: Any = None

    def reset_task(self, task: Any) -> None:
        self.task = task

    def step(self, action):
        if self.task is None:
            raise RuntimeError(f"{type(self).__name__}: call reset_task(task) before step()")
        obs, _, terminated, truncated, info = super().step(action)
        reward = self.task_reward(info)
        info["task_reward"] = reward
        return obs, reward, terminated, truncated, info

    def task_reward(self, info: dict) -> float:
        raise NotImplementedError


class HalfCheetahVelEnv(_TaskReward, HalfCheetahEnv):
    """-|v - v*| - 0.05 ||a||^2."""

    def __init__(self, **kwargs):
        super().__init__(ctrl_cost_weight=0.05, **kwargs)

    def task_reward(self, info: dict) -> float:
        return -abs(info["x_velocity"] - self.task.velocity) + info["reward_ctrl"]


class HalfCheetahDirEnv(_TaskReward, HalfCheetahEnv):
    """d * v - 0.05 ||a||^2."""

    def __init__(self, **kwargs):
        super().__init__(ctrl_cost_weight=0.05, **kwargs)

    def task_reward(self, info: dict) -> float:
        return self.task.direction * info["x_velocity"] + info["reward_ctrl"]


class _AntTaskEnv(_TaskReward, AntEnv):
    """Ant-v5 physics and termination (torso z outside [0.2, 1]); ctrl 0.005, contact 5e-4, survive 0.05."""

    survive_reward: ClassVar[float] = 0.05

    def __init__(self, **kwargs):
        super().__init__(ctrl_cost_weight=5e-3, contact_cost_weight=5e-4, **kwargs)

    def _costs(self, info: dict) -> float:
        return info["reward_ctrl"] + info["reward_contact"] + self.survive_reward


class AntVelEnv(_AntTaskEnv):
    def task_reward(self, info: dict) -> float:
        return -abs(info["x_velocity"] - self.task.velocity) + 1.0 + self._costs(info)


class AntDirEnv(_AntTaskEnv):
    def task_reward(self, info: dict) -> float:
        return self.task.direction * info["x_velocity"] + self._costs(info)


class AntGoalEnv(_AntTaskEnv):
    def task_reward(self, info: dict) -> float:
        gx, gy = self.task.goal
        distance = abs(info["x_position"] - gx) + abs(info["y_position"] - gy)
        return -distance + 4.0 + self._costs(info)


def _velocities(high: float) -> Callable[[int, np.random.Generator], list[VelocityTask]]:
    return lambda n, rng: [VelocityTask(float(v)) for v in rng.uniform(0.0, high, size=n)]


def _directions(n: int, rng: np.random.Generator) -> list[DirectionTask]:
    return [DirectionTask(float(d)) for d in rng.choice([-1.0, 1.0], size=n)]


def _goals(n: int, rng: np.random.Generator) -> list[GoalTask]:
    return [GoalTask((float(x), float(y))) for x, y in rng.uniform(-3.0, 3.0, size=(n, 2))]


class MujocoFamily(TaskFamily):
    """A MuJoCo env class plus its task distribution ``draw(n, rng)``."""

    default_horizon = 100
    env_cls: ClassVar[Callable[[], gym.Env]]
    draw: ClassVar[Callable[[int, np.random.Generator], list]]

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list:
        return type(self).draw(n, rng)

    def make_env(self) -> gym.Env:
        return TimeLimit(self.env_cls(), max_episode_steps=self.horizon)

    def make_vector_env(self, num_envs: int) -> SyncTaskVectorEnv:
        return SyncTaskVectorEnv([self.make_env] * num_envs, autoreset_mode=AutoresetMode.NEXT_STEP)


class HalfCheetahVel(MujocoFamily):
    name, env_cls, draw, Task = "halfcheetah-vel", HalfCheetahVelEnv, staticmethod(_velocities(2.0)), VelocityTask


class HalfCheetahDir(MujocoFamily):
    name, env_cls, draw, Task = "halfcheetah-dir", HalfCheetahDirEnv, staticmethod(_directions), DirectionTask


class AntVel(MujocoFamily):
    name, env_cls, draw, Task = "ant-vel", AntVelEnv, staticmethod(_velocities(3.0)), VelocityTask


class AntDir(MujocoFamily):
    name, env_cls, draw, Task = "ant-dir", AntDirEnv, staticmethod(_directions), DirectionTask


class AntGoal(MujocoFamily):
    name, env_cls, draw, Task = "ant-goal", AntGoalEnv, staticmethod(_goals), GoalTask
