"""Meta-World's benchmarks as plain data: which classes train and test, and the goals of each.

Meta-World draws each class's 50 goals by resetting its environment 50 times under a seeded global
``np.random`` (restored afterwards); that costs seconds per class, so a benchmark is built once per
process and tasks carry their goal vector, so that observers never build one.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass

import metaworld
import numpy as np
from metaworld.env_dict import ALL_V3_ENVIRONMENTS

ENV_NAMES: tuple[str, ...] = tuple(ALL_V3_ENVIRONMENTS)


@dataclass(frozen=True)
class GoalSets:
    """Each class's goal vectors (Meta-World's ``rand_vec``: object and goal positions), train and test."""

    train: dict[str, np.ndarray]  # class name -> [goals, d]
    test: dict[str, np.ndarray]

    def split(self, name: str) -> dict[str, np.ndarray]:
        return self.train if name == "train" else self.test


def _goal_vectors(tasks: list) -> dict[str, np.ndarray]:
    by_class: dict[str, list[np.ndarray]] = {}
    for task in tasks:
        by_class.setdefault(task.env_name, []).append(np.asarray(pickle.loads(task.data)["rand_vec"], dtype=np.float64))
    return {name: np.stack(vecs) for name, vecs in by_class.items()}


@functools.lru_cache(maxsize=4)
def goal_sets(benchmark: str, seed: int, env_name: str | None = None) -> GoalSets:
    """Meta-World's own ``ML1(env_name, seed)`` / ``ML10(seed)`` / ``ML45(seed)``, reduced to goal vectors.

    ML1 draws its test goals with ``seed + 1`` as Meta-World does, so train and test goals differ.
    """
    built = metaworld.ML1(env_name, seed=seed) if benchmark == "ML1" else getattr(metaworld, benchmark)(seed=seed)
    return GoalSets(train=_goal_vectors(built.train_tasks), test=_goal_vectors(built.test_tasks))


def train_classes(benchmark: str, env_name: str | None = None) -> tuple[str, ...]:
    """The training classes, in Meta-World's order, without building the goals."""
    if benchmark == "ML1":
        return (env_name,)
    return tuple(getattr(metaworld.env_dict, f"{benchmark}_V3")["train"])


def test_classes(benchmark: str, env_name: str | None = None) -> tuple[str, ...]:
    if benchmark == "ML1":
        return (env_name,)
    return tuple(getattr(metaworld.env_dict, f"{benchmark}_V3")["test"])
