"""Meta-World tasks in one vector env: every sub-env of a task steps with one set of array operations.

Meta-World's own ``step`` spends most of its time in Python around the physics (named accessors, a
Python loop over contacts, one ``scipy`` rotation per object, scalar reward arithmetic). Here the
sub-envs running the same task share one model and their observations and rewards are computed
together by a per-class kernel (``kernels.py``) that ports Meta-World's formulas to arrays; only
the physics runs once per sub-env. A reset restores the state Meta-World's own reset reaches (its
reset is deterministic for a fixed goal), recorded once per task from Meta-World's environment.

The v1 rewards (and a class without a kernel) run on Meta-World's own environments, one per sub-env:
the plain path, also what the fast one is tested against step for step.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from metaworld.env_dict import ALL_V3_ENVIRONMENTS
from metaworld.sawyer_xyz_env import SawyerXYZEnv
from metaworld.types import Task as MWTask

from dh_maml.envs.base import ArrayVectorEnv
from dh_maml.envs.metaworld.kernels import KERNELS, Kernel, Readings, Reads, clip, norm, pads_touch
from dh_maml.envs.metaworld.tasks import MetaWorldTask

STATE = mujoco.mjtState.mjSTATE_INTEGRATION
OBS_DIM = 39
CURRENT = 18  # hand (3), gripper opening (1), objects padded to 14
RESET_CACHE = 64  # distinct tasks whose reset state is kept


def metaworld_task(task: MetaWorldTask) -> MWTask:
    """Meta-World's form of ``task``, partially observable as its ML benchmarks are."""
    cls = ALL_V3_ENVIRONMENTS[task.env_name]
    data = {"rand_vec": np.asarray(task.rand_vec, dtype=np.float64), "env_cls": cls, "partially_observable": True}
    return MWTask(env_name=task.env_name, data=pickle.dumps(data))


def make_metaworld_env(task: MetaWorldTask, reward_version: str) -> SawyerXYZEnv:
    """Meta-World's own environment running ``task``."""
    env = ALL_V3_ENVIRONMENTS[task.env_name](reward_function_version=reward_version)
    env.set_task(metaworld_task(task))
    return env


@dataclass
class ResetState:
    """Where Meta-World's reset leaves a task: its model (resets may move bodies), the physics state,
    the first observation and the per-task constants its reward reads."""

    model: mujoco.MjModel
    state: np.ndarray
    obs: np.ndarray
    mocap: np.ndarray
    constants: dict[str, Any]


def record_reset(env: SawyerXYZEnv, kernel: Kernel) -> ResetState:
    obs, _ = env.reset()
    state = np.empty(mujoco.mj_stateSize(env.model, STATE))
    mujoco.mj_getState(env.model, env.data, state, STATE)
    model = mujoco.MjModel.__copy__(env.model)
    return ResetState(model, state, obs.astype(np.float64), env.data.mocap_pos[0].copy(), kernel.constants(env))


@dataclass
class Views:
    """A sub-env's MjData arrays a step writes and reads, taken once: each attribute access builds a view.
    ``span`` and ``index``: ``Reads.flat_index``, every read value in one ``take``."""

    mocap_pos: np.ndarray
    ctrl: np.ndarray
    span: np.ndarray
    index: np.ndarray

    @classmethod
    def of(cls, data: mujoco.MjData, reads: Reads) -> Views:
        return cls(data.mocap_pos, data.ctrl, *reads.flat_index(data))


@dataclass
class Group:
    """The sub-envs running tasks of one class: one kernel call computes all their observations and rewards."""

    env_name: str
    idx: np.ndarray
    kernel: Kernel | None
    resets: list[ResetState] = field(default_factory=list)  # per sub-env, for its task
    constants: dict[str, np.ndarray] = field(default_factory=dict)  # per sub-env rows
    ids: Reads | None = None
    columns: dict[str, list[int | slice]] = field(default_factory=dict)  # where ``values`` holds each read
    values: np.ndarray | None = None  # [sub-env, read values] after each step
    readings: Readings | None = None  # views of ``values``, for steps of every sub-env of the group
    plan: list[tuple[int, mujoco.MjModel, mujoco.MjData, Views]] = field(default_factory=list)
    fresh: np.ndarray | None = None  # per sub-env: no step yet in this episode
    episode: dict[str, np.ndarray] = field(default_factory=dict)  # values fixed at an episode's first step


class MetaWorldVectorEnv(ArrayVectorEnv):
    """Sub-envs each running a Meta-World task (one class and goal); ``info["success"]`` per sub-env.

    ``fast=False`` runs every sub-env on Meta-World's own environment (the reference).
    """

    def __init__(self, num_envs: int, horizon: int, reward_version: str = "v2", fast: bool = True):
        self.reward_version = reward_version
        self.fast = fast
        self._oracles: dict[str, SawyerXYZEnv] = {}  # one Meta-World env per class, to record resets
        self._resets: OrderedDict[MetaWorldTask, ResetState] = OrderedDict()
        self._envs: list[SawyerXYZEnv | None] = [None] * num_envs  # reference path
        self._data: list[mujoco.MjData | None] = [None] * num_envs  # fast path
        self._data_class: list[str | None] = [None] * num_envs
        self._views: list[Views | None] = [None] * num_envs
        self._groups: list[Group] = []
        self._obs = np.zeros((num_envs, OBS_DIM))
        self._current = np.zeros((num_envs, CURRENT))  # the fast path's observed state after the step
        self._prev = np.zeros((num_envs, CURRENT))
        self._mocap = np.zeros((num_envs, 3))  # the hand's mocap target, which only actions move
        self._ctrl = np.zeros((num_envs, 2))  # the gripper's two actuators
        self._fast = np.zeros(num_envs, dtype=bool)  # sub-envs a kernel steps
        self._scale = np.zeros((num_envs, 1), dtype=np.float32)  # Meta-World's action scale, per sub-env's class
        self._mocap_low = np.zeros((num_envs, 3))
        self._mocap_high = np.zeros((num_envs, 3))
        self._success = np.zeros(num_envs, dtype=bool)
        probe = ALL_V3_ENVIRONMENTS["reach-v3"]()
        space = probe.sawyer_observation_space  # the same bounds for every class when the goal is hidden
        self._low, self._high = space.low.copy(), space.high.copy()
        probe.close()
        super().__init__(
            num_envs,
            horizon,
            gym.spaces.Box(self._low, self._high, dtype=np.float64),
            gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32),
        )

    # tasks and resets

    def _kernel(self, env_name: str) -> Kernel | None:
        return KERNELS.get(env_name) if self.fast and self.reward_version == "v2" else None

    def _oracle(self, env_name: str) -> SawyerXYZEnv:
        if env_name not in self._oracles:
            self._oracles[env_name] = ALL_V3_ENVIRONMENTS[env_name](reward_function_version=self.reward_version)
        return self._oracles[env_name]

    def _reset_state(self, task: MetaWorldTask, kernel: Kernel) -> ResetState:
        if task in self._resets:
            self._resets.move_to_end(task)
            return self._resets[task]
        oracle = self._oracle(task.env_name)
        oracle.set_task(metaworld_task(task))
        state = self._resets[task] = record_reset(oracle, kernel)
        if len(self._resets) > RESET_CACHE:
            self._resets.popitem(last=False)
        return state

    def _load_tasks(self, tasks: list[MetaWorldTask]) -> None:
        by_class: dict[str, list[int]] = {}
        for i, task in enumerate(tasks):
            by_class.setdefault(task.env_name, []).append(i)
        self._groups = []
        self._fast[:] = False
        for env_name, idx in by_class.items():
            group = Group(env_name, np.asarray(idx), self._kernel(env_name))
            if group.kernel is not None:
                oracle = self._oracle(env_name)
                self._fast[idx] = True
                self._scale[idx] = oracle.action_scale
                self._mocap_low[idx], self._mocap_high[idx] = oracle.mocap_low, oracle.mocap_high
                self._current[idx] = 0.0  # object columns a class leaves unused stay 0
            if group.kernel is None:
                for i in idx:
                    self._reference_env(i, tasks[i])
            else:
                group.resets = [self._reset_state(tasks[i], group.kernel) for i in idx]
                group.constants = {
                    name: np.stack([reset.constants[name] for reset in group.resets])
                    for name in group.resets[0].constants
                }
                group.ids = group.kernel.ids(group.resets[0].model)
                for i, reset in zip(idx, group.resets):
                    if self._data_class[i] != env_name:
                        self._data[i] = mujoco.MjData(reset.model)
                        self._data_class[i] = env_name
                        self._views[i] = Views.of(self._data[i], group.ids)
                group.fresh = np.ones(len(idx), dtype=bool)
                group.columns = group.ids.columns(self._data[idx[0]])
                group.values = np.empty((len(idx), self._views[idx[0]].index.size))
                group.readings = Readings.of(group.ids, group.columns, group.values)
                for i, reset in zip(idx, group.resets):
                    group.plan.append((i, reset.model, self._data[i], self._views[i]))
            self._groups.append(group)

    def _reference_env(self, i: int, task: MetaWorldTask) -> None:
        env = self._envs[i]
        if env is not None and type(env) is ALL_V3_ENVIRONMENTS[task.env_name]:
            env.set_task(metaworld_task(task))
            return
        if env is not None:
            env.close()
        self._envs[i] = make_metaworld_env(task, self.reward_version)

    def _reset_envs(self, idx: np.ndarray) -> None:
        chosen = np.zeros(self.num_envs, dtype=bool)
        chosen[idx] = True
        for group in self._groups:
            for j in np.flatnonzero(chosen[group.idx]):
                i = group.idx[j]
                if group.kernel is None:
                    obs, _ = self._envs[i].reset()
                    self._obs[i] = obs
                else:
                    reset = group.resets[j]
                    mujoco.mj_setState(reset.model, self._data[i], reset.state, STATE)
                    self._obs[i] = reset.obs
                    self._mocap[i] = reset.mocap
                    group.fresh[j] = True
                self._prev[i] = self._obs[i, :CURRENT]
        self._success[idx] = False

    # stepping

    def _observe(self) -> np.ndarray:
        return self._obs.copy()

    def _info(self) -> dict[str, np.ndarray]:
        return {"success": self._success.copy()}

    def _step_envs(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (self.num_envs, 4):
            raise ValueError(
                f"{type(self).__name__}.step: expected actions of shape ({self.num_envs}, 4), got {actions.shape}"
            )
        rewards = np.zeros(self.num_envs)
        live = self._live()
        fast = live & self._fast
        self._set_inputs(actions, fast)
        stepped = []
        for group in self._groups:
            rows = np.flatnonzero(live[group.idx])
            if rows.size == 0:
                continue
            if group.kernel is None:
                for i in group.idx[rows]:
                    obs, rewards[i], _, _, info = self._envs[i].step(actions[i])
                    self._obs[i] = obs
                    self._success[i] = bool(info["success"])
            else:
                stepped.append((group, rows, self._simulate(group, rows)))
        self._assemble(fast)
        for group, rows, readings in stepped:
            idx = group.idx[rows]
            rewards[idx], self._success[idx] = self._reward(group, rows, readings, actions[idx])
        return rewards, np.zeros(self.num_envs, dtype=bool)

    def _set_inputs(self, actions: np.ndarray, rows: np.ndarray) -> None:
        """``SawyerXYZEnv.set_xyz_action`` and the gripper's controls for the sub-envs ``rows`` (a mask), in
        Meta-World's dtypes. Left out, as it changes nothing observed: re-setting the mocap orientation (it
        stays at the value Meta-World's reset gives it)."""
        delta = clip(actions[:, :3], -1, 1) * self._scale
        mocap = clip(self._mocap + delta, self._mocap_low, self._mocap_high)
        if rows.all():
            self._mocap[:] = mocap
            self._ctrl[:, 0], self._ctrl[:, 1] = actions[:, 3], -actions[:, 3]
        else:
            self._mocap[rows] = mocap[rows]
            self._ctrl[rows, 0], self._ctrl[rows, 1] = actions[rows, 3], -actions[rows, 3]

    def _simulate(self, group: Group, rows: np.ndarray) -> Readings:
        """The physics of Meta-World's ``step`` for rows ``rows`` of a group, its reads and observed state.

        Left out, as it changes nothing observed: ``mj_rnePostConstraint`` (contact forces, which only
        Meta-World's ``grasp_success`` diagnostic reads). ``mj_forward`` stays: it updates the solver's
        warm start, so the next step depends on it.
        """
        reads = group.ids
        step, forward, frame_skip = mujoco.mj_step, mujoco.mj_forward, self._oracles[group.env_name].frame_skip
        mocap, ctrl, touch = self._mocap, self._ctrl, reads.touch
        touching = np.zeros(rows.size, dtype=bool) if touch is not None else None
        values = group.values
        for j, r in enumerate(rows):
            i, model, data, views = group.plan[r]
            views.mocap_pos[0] = mocap[i]
            views.ctrl[:] = ctrl[i]
            step(model, data, frame_skip)
            forward(model, data)
            views.span.take(views.index, 0, values[r])
            if touch is not None:
                touching[j] = pads_touch(data, touch)
        if rows.size == group.idx.size:
            readings = group.readings if touch is None else Readings(group.readings.values, touching)
        else:
            readings = Readings.of(reads, group.columns, values[rows], touching)
        idx = group.idx[rows]
        hand = readings.body("hand")
        opening = norm(readings.body("rightclaw") - readings.body("leftclaw"))
        objects = group.kernel.objects(readings)
        current = self._current
        current[idx, :3] = hand
        current[idx, 3] = clip(opening / 0.1, 0.0, 1.0)
        current[idx, 4 : 4 + objects.shape[1]] = objects
        return readings

    def _assemble(self, rows: np.ndarray) -> None:
        """Meta-World's observation (state now, state before, the hidden goal's zeros), clipped to its
        observation space, for the fast sub-envs ``rows`` (a mask)."""
        if rows.all():
            obs, current = self._obs, self._current
            obs[:, :CURRENT] = current
            obs[:, CURRENT : 2 * CURRENT] = self._prev
            obs[:, 2 * CURRENT :] = 0.0
            np.clip(obs, self._low, self._high, out=obs)
            self._prev[:] = current
        elif rows.any():
            obs = np.zeros((int(rows.sum()), OBS_DIM))
            obs[:, :CURRENT] = self._current[rows]
            obs[:, CURRENT : 2 * CURRENT] = self._prev[rows]
            self._obs[rows] = np.clip(obs, self._low, self._high)
            self._prev[rows] = self._current[rows]

    def _reward(
        self, group: Group, rows: np.ndarray, readings: Readings, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Meta-World's ``evaluate_state`` for rows ``rows`` of a group: (reward, success)."""
        obs = self._obs[group.idx[rows]]
        whole = rows.size == group.idx.size
        constants = group.constants if whole else {name: value[rows] for name, value in group.constants.items()}
        if group.kernel.episode_names:
            constants = {**constants, **self._episode_values(group, rows, readings, obs, constants)}
        return group.kernel.reward(readings, obs, actions, constants)

    @staticmethod
    def _episode_values(
        group: Group, rows: np.ndarray, readings: Readings, obs: np.ndarray, constants: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The kernel's per-episode values for ``rows``: computed now for sub-envs on their first step (as
        Meta-World's rewards fix them at the first reward after a reset), kept from then on."""
        fresh = group.fresh[rows]
        if fresh.any():
            now = group.kernel.episode_values(readings, obs, constants)
            for name, value in now.items():
                group.episode.setdefault(name, np.zeros(group.idx.size))[rows[fresh]] = value[fresh]
            group.fresh[rows] = False
        return {name: group.episode[name][rows] for name in group.kernel.episode_names}

    @property
    def frame_skip(self) -> int:
        return next(iter(self._oracles.values())).frame_skip if self._oracles else 5

    def physics(self) -> list[tuple[mujoco.MjModel, mujoco.MjData]]:
        """Each sub-env's model and data (its task's), for the bare-physics bound the benchmarks measure."""
        out = []
        for group in self._groups:
            for j, i in enumerate(group.idx):
                env = self._envs[i]
                out.append((env.model, env.data) if group.kernel is None else (group.resets[j].model, self._data[i]))
        return out

    def restart_physics(self) -> None:
        """Every sub-env at its task's start state (the benchmarks' bound restarts them untimed)."""
        self._reset_envs(np.arange(self.num_envs))

    def close(self, **kwargs: Any) -> None:
        for env in [*self._envs, *self._oracles.values()]:
            if env is not None:
                env.close()
        super().close(**kwargs)
