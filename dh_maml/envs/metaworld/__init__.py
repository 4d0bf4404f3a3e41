"""Meta-World's ML1, ML10 and ML45 benchmarks as task families: a task is one class and one of its goals.

Training tasks come from the benchmark's train classes and train goals, held-out tasks from its test
classes (ML10, ML45) or test goals (ML1); the two are never mixed. ``metaworld`` is imported only
when one of these families is used: importing it costs most of a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from dh_maml.config import one_of
from dh_maml.envs.base import TaskFamily
from dh_maml.envs.metaworld.tasks import MetaWorldTask

if TYPE_CHECKING:
    from dh_maml.envs.metaworld.benchmark import GoalSets
    from dh_maml.envs.metaworld.vector_env import MetaWorldVectorEnv

MAX_HORIZON = 500  # Meta-World's episodes end at 500 steps; its environments refuse a step beyond


@dataclass(frozen=True)
class MetaWorldOptions:
    reward_version: str = field(default="v2", metadata=one_of("v2", "v1"))
    goal_seed: int = 0  # the seed Meta-World's benchmark draws its goal sets with (ML1 test goals: seed + 1)


@dataclass(frozen=True)
class ML1Options(MetaWorldOptions):
    env_name: str = "push-v3"


class _MetaWorldFamily(TaskFamily):
    default_horizon = MAX_HORIZON
    max_horizon: ClassVar[int | None] = MAX_HORIZON
    Task = MetaWorldTask
    Options = MetaWorldOptions
    benchmark: ClassVar[str]

    @property
    def _env_name(self) -> str | None:
        return None

    @property
    def train_classes(self) -> tuple[str, ...]:
        from dh_maml.envs.metaworld.benchmark import train_classes

        return train_classes(self.benchmark, self._env_name)

    @property
    def test_classes(self) -> tuple[str, ...]:
        from dh_maml.envs.metaworld.benchmark import test_classes

        return test_classes(self.benchmark, self._env_name)

    @property
    def tasks_multiple(self) -> int:
        """A meta-batch covers every train class equally, as Meta-World's own samplers do."""
        return len(self.train_classes)

    def _goal_sets(self) -> GoalSets:
        from dh_maml.envs.metaworld.benchmark import goal_sets

        return goal_sets(self.benchmark, self.options.goal_seed, self._env_name)

    def _draw(self, split: str, classes: tuple[str, ...], n: int, rng: np.random.Generator) -> list[MetaWorldTask]:
        if n % len(classes):
            raise ValueError(
                f"{self.name}: {n} tasks cannot cover its {len(classes)} {split} classes equally; "
                f"use a multiple of {len(classes)}"
            )
        goals = self._goal_sets().split(split)
        tasks = []
        for name in classes:
            per_class = n // len(classes)
            picks = rng.choice(len(goals[name]), size=per_class, replace=per_class > len(goals[name]))
            tasks += [MetaWorldTask(name, split, int(g), tuple(float(v) for v in goals[name][g])) for g in picks]
        return tasks

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[MetaWorldTask]:
        return self._draw("train", self.train_classes, n, rng)

    def held_out_tasks(self, n: int, rng: np.random.Generator) -> list[MetaWorldTask]:
        return self._draw("test", self.test_classes, n, rng)

    def latent(self, task: MetaWorldTask) -> str:
        return task.env_name

    def make_vector_env(self, num_envs: int) -> MetaWorldVectorEnv:
        from dh_maml.envs.metaworld.vector_env import MetaWorldVectorEnv

        return MetaWorldVectorEnv(num_envs, self.horizon, reward_version=self.options.reward_version)


class MetaWorldML1(_MetaWorldFamily):
    """One Meta-World class (``env_name``), train goals to meta-train, its 50 test goals held out."""

    name = "metaworld-ml1"
    benchmark = "ML1"
    Options = ML1Options

    @property
    def _env_name(self) -> str:
        return self.options.env_name

    @classmethod
    def option_problems(cls, options: ML1Options) -> list[str]:
        from dh_maml.config import unknown_key_message
        from dh_maml.envs.metaworld.benchmark import ENV_NAMES

        if options.env_name in ENV_NAMES:
            return []
        return [unknown_key_message("env.options.env_name", options.env_name, ENV_NAMES, what="Meta-World class")]


class MetaWorldML10(_MetaWorldFamily):
    """Ten train classes, five held-out test classes."""

    name = "metaworld-ml10"
    benchmark = "ML10"


class MetaWorldML45(_MetaWorldFamily):
    """45 train classes, five held-out test classes."""

    name = "metaworld-ml45"
    benchmark = "ML45"


FAMILIES = (MetaWorldML1, MetaWorldML10, MetaWorldML45)
