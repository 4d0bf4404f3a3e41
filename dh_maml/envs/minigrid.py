"""MiniGrid task families for MLSH: two coloured goals, four rooms with a goal per task, and plain MiniGrid.

Observations are the agent's 7 x 7 egocentric view (object, colour, state per
cell), flattened and scaled to [0, 1]; the mission string is dropped. Rewards
are MiniGrid's own, 1 - 0.9 * steps / max_steps on success, with max_steps the
family's horizon.

Two goals' ``shaped`` option adds, for training only, each step's progress
towards the paying tile: the drop in grid (Manhattan) distance divided by the
room's largest, so an episode's shaping sums to at most 1 and is negative when
it ends on the wrong tile.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import load_env_creator
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import TimeLimit
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Goal, WorldObj
from minigrid.envs import FourRoomsEnv
from minigrid.minigrid_env import MiniGridEnv

from dh_maml.envs.base import SyncTaskVectorEnv, TaskFamily
from dh_maml.envs.minigrid_view import FastView

GOAL_COLOURS = ("green", "blue")
_SCALE = np.array(
    [max(OBJECT_TO_IDX.values()), max(COLOR_TO_IDX.values()), max(STATE_TO_IDX.values())], dtype=np.float32
)


class FlatView(gym.ObservationWrapper):
    """The image view alone, flattened to float32 in [0, 1]."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        shape = env.observation_space["image"].shape
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(int(np.prod(shape)),), dtype=np.float32)

    def observation(self, observation: dict) -> np.ndarray:
        return (observation["image"].astype(np.float32) / _SCALE).reshape(-1)


@dataclass(frozen=True)
class ColourTask:
    colour: str  # the goal tile that pays; both are always visible, which one pays is never shown


@dataclass(frozen=True)
class GoalCellTask:
    goal: tuple[int, int]


@dataclass(frozen=True)
class MiniGridTask:
    """Plain MiniGrid has one task; every MLSH 'task' is a fresh master on the same env."""


class ColouredGoal(Goal):
    def __init__(self, colour: str):
        WorldObj.__init__(self, "goal", colour)


class TwoGoalsEnv(FastView, MiniGridEnv):
    """An empty room with a green and a blue goal tile, both placed at random each episode, and the agent at
    a random cell. Stepping on either tile ends the episode; only the task's colour pays."""

    def __init__(self, size: int = 7, max_steps: int = 50, shaped: bool = False, **kwargs: Any):
        self.task: ColourTask | None = None
        self.shaped = shaped
        self.goal_cells: dict[str, tuple[int, int]] = {}
        super().__init__(
            mission_space=MissionSpace(mission_func=lambda: "reach the goal that pays"),
            grid_size=size,
            max_steps=max_steps,
            see_through_walls=True,
            **kwargs,
        )

    def reset_task(self, task: ColourTask) -> None:
        self.task = task

    def _gen_grid(self, width: int, height: int) -> None:
        self.grid = Grid(width, height)
        self.grid.wall_rect(0, 0, width, height)
        self.goal_cells = {colour: tuple(self.place_obj(ColouredGoal(colour))) for colour in GOAL_COLOURS}
        self.place_agent()
        self.mission = "reach the goal that pays"

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        if self.task is None:
            raise RuntimeError("TwoGoalsEnv: call reset_task(task) before step()")
        before = self._distance_to_paying_goal() if self.shaped else 0
        obs, reward, terminated, truncated, info = super().step(action)
        if terminated and self.grid.get(*self.agent_pos).color != self.task.colour:
            reward = 0.0
        if self.shaped:
            reward += (before - self._distance_to_paying_goal()) / (2 * (self.width - 3))
        return obs, reward, terminated, truncated, info

    def _distance_to_paying_goal(self) -> int:
        (x, y), (gx, gy) = self.agent_pos, self.goal_cells[self.task.colour]
        return abs(x - gx) + abs(y - gy)


class GoalCellFourRoomsEnv(FastView, FourRoomsEnv):
    """MiniGrid's four rooms (doors and agent placed at random each episode) with the task's goal cell."""

    def reset_task(self, task: GoalCellTask) -> None:
        self._goal_default_pos = task.goal


class PlainMiniGridEnv(gym.Wrapper):
    """A registered MiniGrid env under the task interface: its one task needs no setting."""

    def reset_task(self, task: MiniGridTask) -> None:
        pass


class _MiniGridFamily(TaskFamily):
    def _wrapped(self, env: gym.Env) -> gym.Env:
        return TimeLimit(FlatView(env), max_episode_steps=self.horizon)

    def make_env(self) -> gym.Env:
        raise NotImplementedError

    def make_vector_env(self, num_envs: int) -> SyncTaskVectorEnv:
        return SyncTaskVectorEnv([self.make_env] * num_envs, autoreset_mode=AutoresetMode.NEXT_STEP)


@dataclass(frozen=True)
class TwoGoalsOptions:
    size: int = field(default=7, metadata={"lo": 5})  # walls included
    shaped: bool = False  # training only: plus the progress towards the paying tile
    goal: str | None = field(default=None, metadata={"choices": GOAL_COLOURS})  # every task pays it (an oracle's)


class MiniGridTwoGoals(_MiniGridFamily):
    """Which colour pays is the latent task, drawn green or blue with equal odds, or always ``options.goal``
    where set (what a per-colour oracle trains on)."""

    name = "minigrid-two-goals"
    default_horizon = 50
    Options = TwoGoalsOptions
    Task = ColourTask

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[ColourTask]:
        drawn = [ColourTask(GOAL_COLOURS[int(i)]) for i in rng.integers(0, len(GOAL_COLOURS), size=n)]
        return drawn if self.options.goal is None else [ColourTask(self.options.goal)] * n

    def latent(self, task: ColourTask) -> str:
        return task.colour

    def make_env(self) -> gym.Env:
        return self._wrapped(TwoGoalsEnv(self.options.size, max_steps=self.horizon, shaped=self.options.shaped))


class MiniGridFourRooms(_MiniGridFamily):
    """The goal cell is the task, drawn uniformly from the cells off the walls (19 x 19 grid)."""

    name = "minigrid-fourrooms"
    default_horizon = 100
    Task = GoalCellTask
    SIZE: ClassVar[int] = 19

    @classmethod
    def free_cells(cls) -> list[tuple[int, int]]:
        walls = {0, cls.SIZE // 2, cls.SIZE - 1}
        return [(x, y) for y in range(cls.SIZE) for x in range(cls.SIZE) if x not in walls and y not in walls]

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[GoalCellTask]:
        cells = self.free_cells()
        return [GoalCellTask(cells[int(i)]) for i in rng.integers(0, len(cells), size=n)]

    def latent(self, task: GoalCellTask) -> tuple[int, int]:
        return task.goal

    def make_env(self) -> gym.Env:
        return self._wrapped(GoalCellFourRoomsEnv(max_steps=self.horizon))


PLAIN_ENVS = ("MiniGrid-DoorKey-5x5-v0", "MiniGrid-Empty-Random-5x5-v0", "MiniGrid-FourRooms-v0")


@dataclass(frozen=True)
class PlainOptions:
    env_id: str = field(default="MiniGrid-DoorKey-5x5-v0", metadata={"choices": PLAIN_ENVS})


class MiniGridPlain(_MiniGridFamily):
    """The plain MiniGrid tasks users ran MLSH on before: one env, so one task."""

    name = "minigrid"
    default_horizon = 100
    Options = PlainOptions
    Task = MiniGridTask

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[MiniGridTask]:
        return [MiniGridTask() for _ in range(n)]

    def make_env(self) -> gym.Env:
        spec = gym.spec(self.options.env_id)
        return self._wrapped(PlainMiniGridEnv(fast_view_class(spec.entry_point)(**spec.kwargs, max_steps=self.horizon)))


@functools.cache
def fast_view_class(entry_point: str) -> type[MiniGridEnv]:
    """The registered MiniGrid env class at ``entry_point`` with ``FastView``'s observations."""
    env_class = load_env_creator(entry_point)
    return type(env_class.__name__, (FastView, env_class), {})
