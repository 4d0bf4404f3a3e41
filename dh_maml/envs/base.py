"""Task-family interface and the array-native vector env the cheap families share.

A task family samples tasks from an explicit ``numpy.random.Generator`` and builds
gymnasium vector envs whose sub-envs can each run a different task, so that every
episode of several tasks steps in one call and one batched policy forward.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.vector.utils import batch_space


@dataclass(frozen=True)
class NoOptions:
    """Families without options of their own."""


class TaskVectorEnv(VectorEnv):
    """A gymnasium vector env whose sub-envs each carry a task.

    ``set_tasks`` assigns one task per sub-env; ``reset_task`` gives every sub-env
    the same task. Tasks take effect at the next ``reset``.
    """

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        raise NotImplementedError

    def reset_task(self, task: Any) -> None:
        self.set_tasks([task] * self.num_envs)

    def retire(self, mask: np.ndarray) -> None:
        """Sub-envs (a boolean mask) whose episodes the caller has finished with until the next ``reset``.

        A sampler that keeps one episode per sub-env masks out whatever an ended sub-env does after its end;
        an env that can skip stepping it saves that work (on Ant, where most early episodes end within 40
        of 100 steps, more than half the physics). What a retired sub-env returns from ``step`` is then
        unspecified. This default steps every sub-env as gymnasium's contract says, which is always correct.
        """


class _Retirable(gym.Wrapper):
    """A sub-env that, once retired, neither steps nor resets: it repeats its last observation, reward 0."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.retired = False
        self._last: Any = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        if self.retired:
            return self._last, {}
        self._last, info = self.env.reset(**kwargs)
        return self._last, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        if self.retired:
            return self._last, 0.0, False, False, {}
        self._last, reward, terminated, truncated, info = self.env.step(action)
        return self._last, reward, terminated, truncated, info


class SyncTaskVectorEnv(SyncVectorEnv, TaskVectorEnv):
    """gymnasium's SyncVectorEnv with one task per sub-env, set through each env's ``reset_task`` (found on
    the env or any wrapper around it). Retired sub-envs (``retire``) skip their env's Python ``step``."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], **kwargs: Any):
        super().__init__([partial(_retirable, fn) for fn in env_fns], **kwargs)

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        if len(tasks) != self.num_envs:
            raise ValueError(f"set_tasks: expected {self.num_envs} tasks (one per sub-env), got {len(tasks)}")
        for env, task in zip(self.envs, tasks):
            env.get_wrapper_attr("reset_task")(task)

    def retire(self, mask: np.ndarray) -> None:
        for env, retired in zip(self.envs, np.asarray(mask, dtype=bool)):
            env.retired |= bool(retired)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None) -> tuple[Any, dict]:
        for env in self.envs:
            env.retired = False
        return super().reset(seed=seed, options=options)


def _retirable(make_env: Callable[[], gym.Env]) -> _Retirable:
    return _Retirable(make_env())


class ArrayVectorEnv(TaskVectorEnv):
    """Vector env over numpy state arrays, with time limit and next-step autoreset.

    Subclasses implement the dynamics for all sub-envs at once in ``_reset_envs``
    and ``_step_envs``; this class keeps the gymnasium 1.x contract: an env that
    ended is reset on the *following* ``step`` call, which returns its first
    observation with zero reward and neither flag set.
    """

    metadata: ClassVar[dict] = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, horizon: int, observation_space: gym.Space, action_space: gym.Space):
        self.num_envs = num_envs
        self.horizon = horizon
        self.single_observation_space = observation_space
        self.single_action_space = action_space
        self.observation_space = batch_space(observation_space, num_envs)
        self.action_space = batch_space(action_space, num_envs)
        self._t = np.zeros(num_envs, dtype=np.int64)
        self._needs_reset = np.zeros(num_envs, dtype=bool)
        self._retired = np.zeros(num_envs, dtype=bool)
        self._tasks: list[Any] | None = None

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        if len(tasks) != self.num_envs:
            raise ValueError(f"set_tasks: expected {self.num_envs} tasks (one per sub-env), got {len(tasks)}")
        self._tasks = list(tasks)
        self._load_tasks(self._tasks)

    @abstractmethod
    def _load_tasks(self, tasks: list[Any]) -> None:
        """Copy per-sub-env task parameters into arrays."""

    @abstractmethod
    def _reset_envs(self, idx: np.ndarray) -> None:
        """Reset the state of sub-envs ``idx``."""

    @abstractmethod
    def _observe(self) -> np.ndarray:
        """Observations of all sub-envs."""

    @abstractmethod
    def _step_envs(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance every sub-env; return (rewards, terminated)."""

    def _info(self) -> dict[str, np.ndarray]:
        """Per-sub-env arrays a family reports beside rewards (e.g. Meta-World's ``success``); none by default."""
        return {}

    def retire(self, mask: np.ndarray) -> None:
        """Retired sub-envs are not reset until the next ``reset``, and a family that steps its sub-envs one
        by one (MuJoCo, Meta-World: ``_live``) skips them; ``step`` reports reward 0 and neither flag for
        them. Array families that step every sub-env in one numpy expression gain nothing and skip nothing."""
        self._retired |= np.asarray(mask, dtype=bool)

    def _live(self) -> np.ndarray:
        """The sub-envs this step advances: neither restarting (reset after the step) nor retired."""
        return ~(self._needs_reset | self._retired)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if self._tasks is None:
            raise RuntimeError("call set_tasks(...) or reset_task(...) before reset()")
        if self._np_random is None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(None)
        every = np.arange(self.num_envs)
        self._reset_envs(every)
        self._t[:] = 0
        self._needs_reset[:] = False
        self._retired[:] = False
        return self._observe(), self._info()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        actions = np.asarray(actions)
        restart = np.flatnonzero(self._needs_reset & ~self._retired)
        rewards, terminated = self._step_envs(actions)
        self._t += 1
        truncated = (self._t >= self.horizon) & ~terminated
        if restart.size:
            self._reset_envs(restart)
            self._t[restart] = 0
            rewards[restart] = 0.0
            terminated[restart] = False
            truncated[restart] = False
        rewards[self._retired] = 0.0
        terminated &= ~self._retired
        truncated &= ~self._retired
        self._needs_reset = terminated | truncated
        return self._observe(), rewards, terminated, truncated, self._info()


class TaskFamily(ABC):
    """A distribution over tasks plus the vector envs that run them."""

    name: ClassVar[str]
    default_horizon: ClassVar[int]
    max_horizon: ClassVar[int | None] = None  # where the family's own environments end every episode
    Options: ClassVar[type] = NoOptions
    Task: ClassVar[type]  # the frozen dataclass of its tasks: ``Task(**dataclasses.asdict(task))`` rebuilds one

    def __init__(self, horizon: int | None = None, options: Any = None):
        self.horizon = horizon or self.default_horizon
        self.options = options if options is not None else self.Options()

    @abstractmethod
    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]:
        """Draw ``n`` tasks; all randomness comes from ``rng``."""

    def held_out_tasks(self, n: int, rng: np.random.Generator) -> list[Any]:
        """Tasks to evaluate adaptation on: fresh draws from the training distribution, unless the family
        keeps a separate test set (Meta-World's test goals and classes)."""
        return self.sample_tasks(n, rng)

    @property
    def tasks_multiple(self) -> int:
        """Task counts a batch draws must be multiples of (a benchmark covering its classes equally)."""
        return 1

    @classmethod
    def option_problems(cls, options: Any) -> list[str]:
        """Problems with option values that field metadata cannot state (empty when valid)."""
        return []

    @abstractmethod
    def make_vector_env(self, num_envs: int) -> TaskVectorEnv:
        """A vector env of ``num_envs`` sub-envs, tasks set later with ``set_tasks``."""

    def for_evaluation(self) -> TaskFamily:
        """The family that evaluation reports on: itself, unless training shapes its reward (an ``Options``
        with ``shaped`` set), then the same family with the reward unshaped."""
        if getattr(self.options, "shaped", False):
            return type(self)(self.horizon, dataclasses.replace(self.options, shaped=False))
        return self

    def latent(self, task: Any) -> Any:
        """What the task asks for, as a label to group results by (the task itself unless a family says)."""
        return task

    def task_kinds(self) -> list[Any] | None:
        """The distinct tasks of a family that draws from finitely many (the two directions of a direction
        family), else None. A meta-test can then hold out equally many of each and report each on its own,
        so that a headline does not depend on how a random draw happened to split."""
        return None

    @cached_property
    def _spaces(self) -> tuple[gym.Space, gym.Space]:
        """Read once from a one-env instance: building a MuJoCo env costs far more than keeping two spaces."""
        env = self.make_vector_env(1)
        spaces = (env.single_observation_space, env.single_action_space)
        env.close()
        return spaces

    @property
    def observation_space(self) -> gym.Space:
        return self._spaces[0]

    @property
    def action_space(self) -> gym.Space:
        return self._spaces[1]


class VectorEnvCache:
    """A family's vector envs by size, built once: building MuJoCo envs costs far more than stepping them."""

    def __init__(self, family: TaskFamily):
        self.family = family
        self._envs: dict[int, TaskVectorEnv] = {}

    def get(self, num_envs: int) -> TaskVectorEnv:
        if num_envs not in self._envs:
            self._envs[num_envs] = self.family.make_vector_env(num_envs)
        return self._envs[num_envs]

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()
