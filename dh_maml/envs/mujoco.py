"""MuJoCo locomotion task families: gymnasium's HalfCheetah-v5 and Ant-v5 physics, stepped in batches.

Each vector env holds one ``MjModel`` (gymnasium's own XML) and an ``MjData``
per sub-env, and steps them in a plain loop of ``mj_step`` calls; observations,
costs, termination and the task rewards (REFERENCE.md) are computed for every
sub-env at once. gymnasium's SyncVectorEnv over its MuJoCo envs spent more time
in per-env Python (reward terms, info dicts, wrappers, info merging) than in
the physics: 135 µs per HalfCheetah step against 49 µs for the ``mj_step``
alone. The dynamics, observations and reset noise are gymnasium's, seeded the
same way (sub-env i of ``reset(seed=s)`` draws from a generator seeded s + i),
so a rollout equals one of gymnasium's vector env step for step
(``tests/test_envs.py`` checks it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import expand_model_path

from dh_maml.config import bounds, one_of
from dh_maml.envs.base import ArrayVectorEnv, TaskFamily


@dataclass(frozen=True)
class VelocityTask:
    velocity: float


@dataclass(frozen=True)
class DirectionTask:
    direction: float


@dataclass(frozen=True)
class GoalTask:
    goal: tuple[float, float]


@dataclass
class Motion:
    """What one step did in every sub-env; the task rewards are functions of it."""

    x_velocity: np.ndarray  # [N], of the robot's main body, finite difference over the step
    position: np.ndarray  # [N, 2], x and y of the root joint after the step
    costs: np.ndarray  # [N], what the robot's reward subtracts whatever the task (control, contact, ...)


class MujocoVectorEnv(ArrayVectorEnv):
    """Copies of one gymnasium MuJoCo model, one task per sub-env, with gymnasium's reset noise and seeding.

    A robot subclass says what it observes and what a step costs; a task
    subclass turns ``Motion`` into rewards.
    """

    xml_file: ClassVar[str]
    reset_noise_scale: ClassVar[float] = 0.1
    ctrl_cost_weight: ClassVar[float]

    def __init__(self, num_envs: int, horizon: int, frame_skip: int = 5):
        self.model = mujoco.MjModel.from_xml_path(expand_model_path(self.xml_file))
        self.data = [mujoco.MjData(self.model) for _ in range(num_envs)]
        self.frame_skip = frame_skip
        self.dt = self.model.opt.timestep * self.frame_skip
        self._init_qpos = self.data[0].qpos.copy()
        self._init_qvel = self.data[0].qvel.copy()
        self._allocate(num_envs)
        self._rngs: list[np.random.Generator] | None = None
        low, high = self.model.actuator_ctrlrange.T.astype(np.float32)
        obs_dim = self._observe().shape[1]  # of the zeroed batch arrays: only the shape is read
        super().__init__(
            num_envs,
            horizon,
            gym.spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float64),
            gym.spaces.Box(low, high, dtype=np.float32),
        )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None or self._rngs is None:
            self._rngs = [
                gym.utils.seeding.np_random(None if seed is None else seed + i)[0] for i in range(self.num_envs)
            ]
        return super().reset(seed=seed, options=options)

    def _reset_envs(self, idx: np.ndarray) -> None:
        nq, nv, scale = self.model.nq, self.model.nv, self.reset_noise_scale
        for i in idx:
            data, rng = self.data[i], self._rngs[i]
            mujoco.mj_resetData(self.model, data)
            data.qpos[:] = self._init_qpos + rng.uniform(-scale, scale, size=nq)
            data.qvel[:] = self._init_qvel + scale * rng.standard_normal(nv)
            mujoco.mj_forward(self.model, data)
            self._read(i)

    def physics(self) -> list[tuple[mujoco.MjModel, mujoco.MjData]]:
        """Each sub-env's model and data, for the bare-physics bound the benchmarks measure."""
        return [(self.model, data) for data in self.data]

    def restart_physics(self) -> None:
        """Every sub-env's physics at an episode start (the benchmarks' bound restarts them untimed)."""
        for data in self.data:
            mujoco.mj_resetData(self.model, data)

    def _allocate(self, num_envs: int) -> None:
        """The batch arrays ``_read`` fills."""
        self._qpos = np.zeros((num_envs, self.model.nq))
        self._qvel = np.zeros((num_envs, self.model.nv))

    def _read(self, i: int) -> None:
        """Copy what observations and rewards need from sub-env ``i``'s MjData into the batch arrays."""
        data = self.data[i]
        self._qpos[i] = data.qpos
        self._qvel[i] = data.qvel

    def _step_envs(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (self.num_envs, self.model.nu):
            raise ValueError(
                f"{type(self).__name__}.step: expected actions of shape ({self.num_envs}, "
                f"{self.model.nu}) (sub-envs, actuators), got {actions.shape}"
            )
        before = self._main_body_x()
        for i in np.flatnonzero(self._live()):
            data = self.data[i]
            data.ctrl[:] = actions[i]
            mujoco.mj_step(self.model, data, nstep=self.frame_skip)
            self._after_step(data)
            self._read(i)
        ctrl_cost = self.ctrl_cost_weight * np.square(actions).sum(axis=1)
        motion = Motion((self._main_body_x() - before) / self.dt, self._qpos[:, :2], self._costs(ctrl_cost))
        return self._task_reward(motion), self._terminated()

    def _after_step(self, data: mujoco.MjData) -> None:
        """Derived quantities the robot reads after stepping (nothing by default)."""

    def _main_body_x(self) -> np.ndarray:
        return self._qpos[:, 0].copy()

    def _costs(self, ctrl_cost: np.ndarray) -> np.ndarray:
        return ctrl_cost

    def _terminated(self) -> np.ndarray:
        return np.zeros(self.num_envs, dtype=bool)

    def _task_reward(self, motion: Motion) -> np.ndarray:
        raise NotImplementedError


class HalfCheetahVectorEnv(MujocoVectorEnv):
    """HalfCheetah-v5: observes qpos without the x position, and qvel; control cost 0.05 ||a||^2."""

    xml_file = "half_cheetah.xml"
    ctrl_cost_weight = 0.05

    def _observe(self) -> np.ndarray:
        return np.concatenate([self._qpos[:, 1:], self._qvel], axis=1)


class AntVectorEnv(MujocoVectorEnv):
    """Ant-v5: observes qpos without x and y (unless ``observes_xy``), qvel and the clipped external contact
    forces of every body but the world; control cost 0.005 ||a||^2, contact cost 5e-4 ||clip(cfrc, -1, 1)||^2,
    survival bonus 0.05; an episode ends when the state is not finite or the torso's z leaves [0.2, 1]. The
    forward velocity is the torso's, from its frame position as MuJoCo left it after stepping (as gymnasium
    reads it)."""

    xml_file = "ant.xml"
    ctrl_cost_weight = 5e-3
    contact_cost_weight: ClassVar[float] = 5e-4
    survive_reward: ClassVar[float] = 0.05
    healthy_z: ClassVar[tuple[float, float]] = (0.2, 1.0)
    main_body: ClassVar[int] = 1
    # gymnasium's exclude_current_positions_from_observation=False: a task whose reward depends on where the
    # Ant is, not how fast it moves, needs it observed
    observes_xy: ClassVar[bool] = False

    def _allocate(self, num_envs: int) -> None:
        super()._allocate(num_envs)
        self._contact = np.zeros((num_envs, self.model.nbody, 6))
        self._torso_x = np.zeros(num_envs)

    def _read(self, i: int) -> None:
        super()._read(i)
        data = self.data[i]
        self._contact[i] = data.cfrc_ext
        self._torso_x[i] = data.xpos[self.main_body, 0]

    def _after_step(self, data: mujoco.MjData) -> None:
        mujoco.mj_rnePostConstraint(self.model, data)  # fills cfrc_ext

    def _main_body_x(self) -> np.ndarray:
        return self._torso_x.copy()

    def _clipped_contact(self) -> np.ndarray:
        return np.clip(self._contact, -1.0, 1.0)

    def _torso_up(self) -> np.ndarray:
        """The world-z part of the torso's z axis, from its quaternion (w, x, y, z): 1 upright, -1 on its back."""
        x, y = self._qpos[:, 4], self._qpos[:, 5]
        return 1.0 - 2.0 * (x * x + y * y)

    def _costs(self, ctrl_cost: np.ndarray) -> np.ndarray:
        contact = self._clipped_contact()
        contact_cost = self.contact_cost_weight * np.square(contact).reshape(self.num_envs, -1).sum(axis=1)
        return ctrl_cost + contact_cost - self.survive_reward

    def _terminated(self) -> np.ndarray:
        finite = np.isfinite(self._qpos).all(axis=1) & np.isfinite(self._qvel).all(axis=1)
        low, high = self.healthy_z
        return ~(finite & (self._qpos[:, 2] >= low) & (self._qpos[:, 2] <= high))

    def _observe(self) -> np.ndarray:
        contact = self._clipped_contact()[:, 1:].reshape(len(self._contact), -1)
        return np.concatenate([self._qpos[:, 0 if self.observes_xy else 2 :], self._qvel, contact], axis=1)


class _Velocity:
    """-|v - v*| plus the family's offset, less the robot's costs."""

    offset: ClassVar[float] = 0.0

    def _load_tasks(self, tasks: list[VelocityTask]) -> None:
        self._target = np.array([t.velocity for t in tasks])

    def _task_reward(self, motion: Motion) -> np.ndarray:
        return -np.abs(motion.x_velocity - self._target) + self.offset - motion.costs


class _Direction:
    """d * v less the robot's costs."""

    def _load_tasks(self, tasks: list[DirectionTask]) -> None:
        self._direction = np.array([t.direction for t in tasks])

    def _task_reward(self, motion: Motion) -> np.ndarray:
        return self._direction * motion.x_velocity - motion.costs


class _Goal:
    """-||xy - goal||_1 + 4 less the robot's costs."""

    def _load_tasks(self, tasks: list[GoalTask]) -> None:
        self._goal = np.array([t.goal for t in tasks], dtype=np.float64).reshape(len(tasks), 2)

    def _task_reward(self, motion: Motion) -> np.ndarray:
        return -np.abs(motion.position - self._goal).sum(axis=1) + 4.0 - motion.costs


class HalfCheetahVelEnv(_Velocity, HalfCheetahVectorEnv):
    """-|v - v*| - 0.05 ||a||^2."""


class HalfCheetahDirEnv(_Direction, HalfCheetahVectorEnv):
    """d * v - 0.05 ||a||^2."""


class AntVelEnv(_Velocity, AntVectorEnv):
    offset = 1.0


class AntDirEnv(_Direction, AntVectorEnv):
    pass


class AntGoalEnv(_Goal, AntVectorEnv):
    """Observes the torso's x and y, as the MAML paper's Ant did: without them a policy cannot tell how far
    it is from the goal, nor stop there."""

    observes_xy = True


def _velocities(high: float) -> Callable[[int, np.random.Generator], list[VelocityTask]]:
    return lambda n, rng: [VelocityTask(float(v)) for v in rng.uniform(0.0, high, size=n)]


def _directions(n: int, rng: np.random.Generator) -> list[DirectionTask]:
    return [DirectionTask(float(d)) for d in rng.choice([-1.0, 1.0], size=n)]


def _goals(n: int, rng: np.random.Generator) -> list[GoalTask]:
    return [GoalTask((float(x), float(y))) for x, y in rng.uniform(-3.0, 3.0, size=(n, 2))]


@dataclass(frozen=True)
class MujocoOptions:
    # physics steps of 0.01 s per env step: gymnasium's 5 acts at 20 Hz; the MAML paper's Ant (rllab's) acted
    # every 0.02 s, which frame_skip 2 gives (docs/ant.md)
    frame_skip: int = field(default=5, metadata=bounds(1, 50))


class MujocoFamily(TaskFamily):
    """A batched MuJoCo vector env class plus its task distribution ``draw(n, rng)``."""

    default_horizon = 100
    Options: ClassVar[type] = MujocoOptions
    env_cls: ClassVar[type[MujocoVectorEnv]]
    draw: ClassVar[Callable[[int, np.random.Generator], list]]

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list:
        return type(self).draw(n, rng)

    def make_vector_env(self, num_envs: int) -> MujocoVectorEnv:
        return self.env_cls(num_envs, self.horizon, self.options.frame_skip)


class HalfCheetahVel(MujocoFamily):
    name, env_cls, draw, Task = "halfcheetah-vel", HalfCheetahVelEnv, staticmethod(_velocities(2.0)), VelocityTask


@dataclass(frozen=True)
class DirectionOptions(MujocoOptions):
    # every task runs this way: a one-direction control run, to tell how fast each direction is learned alone
    direction: str | None = field(default=None, metadata=one_of("forward", "backward"))


class _DirectionFamily(MujocoFamily):
    """Two tasks, forward and backward, drawn with equal odds (or always ``options.direction``): the
    meta-test can balance them and report each."""

    Task = DirectionTask
    Options = DirectionOptions

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[DirectionTask]:
        tasks = super().sample_tasks(n, rng)  # drawn either way, so the task stream is the same
        return tasks if self.options.direction is None else [self.task_kinds()[0]] * n

    def task_kinds(self) -> list[DirectionTask]:
        if self.options.direction is not None:
            return [DirectionTask(1.0 if self.options.direction == "forward" else -1.0)]
        return [DirectionTask(1.0), DirectionTask(-1.0)]

    def latent(self, task: DirectionTask) -> str:
        return "forward" if task.direction > 0 else "backward"


class HalfCheetahDir(_DirectionFamily):
    name, env_cls, draw = "halfcheetah-dir", HalfCheetahDirEnv, staticmethod(_directions)


class AntVel(MujocoFamily):
    name, env_cls, draw, Task = "ant-vel", AntVelEnv, staticmethod(_velocities(3.0)), VelocityTask


class AntDir(_DirectionFamily):
    name, env_cls, draw = "ant-dir", AntDirEnv, staticmethod(_directions)


class AntGoal(MujocoFamily):
    name, env_cls, draw, Task = "ant-goal", AntGoalEnv, staticmethod(_goals), GoalTask
